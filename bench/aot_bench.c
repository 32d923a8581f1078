/* aot_bench.c — a model compiled ahead of time (`rnnc compile`, run by
 * librnnc_rt.a) against the JIT (include/rnnc.h) in the same process, on the
 * same parameters and inputs (bench/README.md, "Ahead of time vs JIT";
 * bench/aot.sh builds the objects and runs this).
 *
 *   aot_bench --model FILE.rnn --object X.so --prefix P --what train|step
 *             [--dim NAME=N ...] [--threads N] [--rounds R] [--warmup W]
 *             [--block K] [--optim sgd|adam] [--lr X] [--label NAME]
 *
 * X.so is the object of `rnnc compile FILE.rnn --prefix P` linked with
 * `cc -shared X.o -lsleef -lm -fopenmp`; it is dlopen'ed and its descriptor
 * P_model (const rnnc_aot_model) run through the generic calls of
 * rnnc_aot.h. The JIT compiles the same model (the descriptor's name) with
 * the same dims (B and T from the program, the header's from --dim):
 *   - train: the training step, rnnc_compile(RNNC_GRAD | RNNC_CARRY) +
 *     rnnc_optim_new + rnnc_train_step against rnnc_aot_train_step, the same
 *     optimizer configuration (default SGD lr 0.01, clip by global norm 5:
 *     rnnc_bench's C2 step), the same batch every step;
 *   - step: one token of generation (rnnc_bench's C6): a T = 1 net with
 *     RNNC_CARRY and rnnc_forward against rnnc_aot_run of the step program,
 *     the next token the argmax of the probabilities, chosen outside the
 *     timed region.
 * Validation before timing: the parameters (rnnc_init_params, seed 1) and
 * inputs (fixed seed) are the JIT's, copied into the AOT side's buffers; two
 * training steps (train) or eight tokens (step) run on both, and every
 * output, carried state, loss, gradient norm and updated parameter must be
 * bitwise the same (an object compiled for this CPU runs the JIT's code);
 * the run stops with a message otherwise.
 * Timing: warm-up (--warmup per side: train 1 step, step 20 tokens), then
 * --rounds rounds; a round runs --block runs on each side (train 1, step 200
 * tokens), the side going first alternating, so that drift hits both. Each
 * run is timed alone (CLOCK_MONOTONIC); per side the median and min over all
 * runs, and ratio = AOT median / JIT median (the median of the per-round
 * ratios of medians too).
 *
 * Output: one JSON line on stdout (a line with "error" and exit status 1 on
 * a failure); a short human summary on stderr.
 */
#include <dlfcn.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "benchutil.h"
#include "rnnc.h"
#include "rnnc_aot.h"

enum { MAXDIMS = 16 };

typedef struct Opts {
  const char *model, *object, *prefix, *what, *label, *optim;
  rnnc_dim dim[MAXDIMS];
  int ndim, threads, rounds, warmup, block;
  double lr;
} Opts;

typedef struct Bench {
  const Opts *o;
  const rnnc_aot_model *m;
  const rnnc_aot_prog *p;
  rnnc_ctx *ctx;
  rnnc_net *net;
  rnnc_optim *opt;
  void *ws, **io;
  float *params, *optstate;
  size_t wsbytes;
  int64_t aot_steps; /* training steps the AOT side took: rnnc_aot_train_step's step */
  double compile_ms;
  char err[1024];
} Bench;

/* ---- small helpers -------------------------------------------------------- */

static double minimum(const double *v, int n) {
  double x = v[0];
  for (int i = 1; i < n; i++) x = v[i] < x ? v[i] : x;
  return x;
}

/* splitmix64: the inputs' fixed-seed generator (rnnc_bench's). */
static uint64_t splitmix64(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/* Set b->err to the formatted message; returns -1. */
__attribute__((format(printf, 2, 3))) static int failf(Bench *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(b->err, sizeof b->err, fmt, ap);
  va_end(ap);
  size_t n = strlen(b->err);
  while (n && b->err[n - 1] == '\n') b->err[--n] = 0;
  return -1;
}

/* A JIT call failed: its status and the context's message. */
static int jitfail(Bench *b, const char *what, int st) {
  return failf(b, "%s: status %d: %s", what, st, rnnc_errmsg(b->ctx));
}

/* An AOT call failed: its status and the workspace's message. */
static int aotfail(Bench *b, const char *what, int st) {
  return failf(b, "%s: status %d: %s", what, st, rnnc_aot_message(b->ws));
}

static int64_t jit_numel(rnnc_net *net, const char *name, int *dtype) {
  int rank;
  int64_t dim[4], n = 1;
  if (rnnc_tensor_shape(net, name, dtype, &rank, dim) != RNNC_OK) return -1;
  for (int i = 0; i < rank; i++) n *= dim[i];
  return n;
}

/* s as a JSON string literal on f. */
static void json_str(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
    else if (c < 0x20) fprintf(f, "\\u%04x", c);
    else fputc(c, f);
  }
  fputc('"', f);
}

/* ---- the two sides, on the same parameters and inputs ---------------------- */

/* dlopen the object, find <prefix>_model, check its ABI and program. */
static int load_object(Bench *b, int prog) {
  char sym[256];
  void *h = dlopen(b->o->object, RTLD_NOW | RTLD_LOCAL);
  if (!h) return failf(b, "dlopen: %s", dlerror());
  snprintf(sym, sizeof sym, "%s_model", b->o->prefix);
  b->m = dlsym(h, sym);
  if (!b->m) return failf(b, "'%s' has no symbol '%s' (--prefix)", b->o->object, sym);
  if (b->m->abi != RNNC_AOT_ABI)
    return failf(b, "'%s': descriptor ABI %lld, this runtime's %d", b->o->object, (long long)b->m->abi, RNNC_AOT_ABI);
  if (!(b->p = b->m->prog[prog]))
    return failf(b, "'%s' has no %s program (rnnc compile %s)", b->o->object, prog == RNNC_AOT_TRAIN ? "train" : "step",
                 prog == RNNC_AOT_TRAIN ? "--train" : "without --no-step");
  return 0; /* the handle stays open: the descriptor lives in it */
}

/* The JIT net of the same model and sizes: T and B the program's, the
 * header's dims from --dim (else the model's defaults). */
static int jit_compile(Bench *b, int flags) {
  rnnc_dim dims[MAXDIMS + 2];
  int nd = 0;
  dims[nd++] = (rnnc_dim){"T", (long)b->p->T};
  dims[nd++] = (rnnc_dim){"B", (long)b->p->B};
  for (int i = 0; i < b->o->ndim; i++) dims[nd++] = b->o->dim[i];
  int st = rnnc_compile(b->ctx, b->m->name, nd, dims, flags, &b->net);
  if (st != RNNC_OK) return jitfail(b, "rnnc_compile", st);
  if ((st = rnnc_set_threads(b->net, b->o->threads)) != RNNC_OK) return jitfail(b, "rnnc_set_threads", st);
  b->compile_ms = rnnc_compile_ms(b->net);
  return 0;
}

/* The JIT's parameters (rnnc_init_params seed 1) and inputs (token ids in
 * [0, bound), features in [-1, 1), seed 42), copied to the AOT side: the
 * parameter buffer in the descriptor's layout, an io buffer per input and
 * output (the same size as the JIT's tensor of that name). The workspace
 * for o->threads threads. */
static int setup(Bench *b, int prog) {
  int st, dt;
  if ((st = rnnc_init_params(b->net, 1)) != RNNC_OK) return jitfail(b, "rnnc_init_params", st);
  /* the parameters */
  if (!(b->params = aligned_alloc(64, ((size_t)b->m->param_floats * 4 + 63) / 64 * 64)))
    return failf(b, "out of memory");
  memset(b->params, 0, (size_t)b->m->param_floats * 4);
  for (int64_t i = 0; i < b->m->nparam; i++) {
    const rnnc_aot_param *q = &b->m->param[i];
    const float *src = rnnc_data(b->net, q->name);
    if (!src || jit_numel(b->net, q->name, &dt) != q->numel)
      return failf(b, "parameter '%s' (%lld floats) is not the JIT net's", q->name, (long long)q->numel);
    memcpy(b->params + q->offset, src, (size_t)q->numel * 4);
  }
  /* inputs and outputs, by name */
  if (!(b->io = calloc((size_t)(b->p->nio > 0 ? b->p->nio : 1), sizeof *b->io))) return failf(b, "out of memory");
  uint64_t seed = 42;
  for (int64_t k = 0; k < b->p->ntensor; k++) {
    const rnnc_aot_tensor *t = &b->p->tensor[k];
    if (t->io < 0) continue;
    void *jit = rnnc_data(b->net, t->name);
    if (!jit || jit_numel(b->net, t->name, &dt) != t->numel)
      return failf(b, "%s '%s' (%lld elements) is not the JIT net's", t->role == RNNC_AOT_INPUT ? "input" : "output",
                   t->name, (long long)t->numel);
    if (!(b->io[t->io] = calloc((size_t)(t->numel > 0 ? t->numel : 1), 4))) return failf(b, "out of memory");
    if (t->role != RNNC_AOT_INPUT) continue;
    int64_t bound = 1; /* token ids and targets: within the program's check of the input */
    for (int64_t c = 0; c < b->p->ncheck; c++)
      if (b->p->check[c].tensor == k) bound = b->p->check[c].bound;
    for (int64_t e = 0; e < t->numel; e++) {
      uint64_t u = splitmix64(&seed);
      if (t->dtype == RNNC_I32) ((int32_t *)jit)[e] = (int32_t)(u % (uint64_t)bound);
      else ((float *)jit)[e] = (float)((double)(u >> 11) * 0x1.0p-53 * 2.0 - 1.0);
    }
    memcpy(b->io[t->io], jit, (size_t)t->numel * 4);
  }
  /* the workspace */
  b->wsbytes = rnnc_aot_ws_bytes(b->m, prog, b->o->threads);
  if (!(b->ws = aligned_alloc(64, (b->wsbytes + 63) / 64 * 64))) return failf(b, "out of memory");
  if ((st = rnnc_aot_init(b->m, prog, b->ws, b->wsbytes, b->o->threads)) != RNNC_OK)
    return failf(b, "rnnc_aot_init: status %d: %s", st, rnnc_aot_message(NULL));
  return 0;
}

/* 0 when the JIT tensor name and the AOT area at `aot` hold the same bits
 * (n elements); else b->err names the first difference. */
static int same_bits(Bench *b, const char *name, const void *aot, int64_t n, const char *when) {
  int dt;
  const uint32_t *j = rnnc_data(b->net, name), *a = aot;
  if (!j || !a || jit_numel(b->net, name, &dt) != n) return failf(b, "validate: no tensor '%s' on both sides", name);
  for (int64_t e = 0; e < n; e++)
    if (j[e] != a[e]) {
      float fj, fa;
      memcpy(&fj, &j[e], 4), memcpy(&fa, &a[e], 4);
      return failf(b, "validate: %s, '%s'[%lld] differs: JIT %.9g, AOT %.9g (not bitwise the same)", when, name,
                   (long long)e, fj, fa);
    }
  return 0;
}

/* Every output and carried state of the program, bitwise. */
static int same_io_states(Bench *b, const char *when) {
  for (int64_t k = 0; k < b->p->ntensor; k++) {
    const rnnc_aot_tensor *t = &b->p->tensor[k];
    const void *aot = t->role == RNNC_AOT_OUTPUT ? b->io[t->io]
                      : t->role == RNNC_AOT_STATE ? rnnc_aot_area(b->m, b->ws, t->name)
                                                  : NULL;
    if (aot && same_bits(b, t->name, aot, t->numel, when)) return -1;
  }
  return 0;
}

/* ---- train ------------------------------------------------------------------ */

static int jit_train(Bench *b, float *loss, double *gnorm) {
  int st = rnnc_train_step(b->opt, loss, gnorm);
  return st == RNNC_OK ? 0 : jitfail(b, "rnnc_train_step", st);
}

static int aot_train(Bench *b, float *loss, double *gnorm) {
  int st = rnnc_aot_train_step(b->m, b->ws, b->params, b->optstate, b->aot_steps, b->io, loss, gnorm);
  if (st != RNNC_OK) return aotfail(b, "rnnc_aot_train_step", st);
  b->aot_steps++;
  return 0;
}

static int train_setup(Bench *b, rnnc_optim_config *c) {
  int st;
  rnnc_optim_defaults(c, !strcmp(b->o->optim, "adam") ? RNNC_ADAM : RNNC_SGD);
  if (b->o->lr > 0) c->lr = b->o->lr;
  else if (c->kind == RNNC_SGD) c->lr = 0.01; /* rnnc_bench's C2 step */
  c->clip_norm = 5;
  if ((st = rnnc_optim_new(b->net, c, 0, NULL, &b->opt)) != RNNC_OK) return jitfail(b, "rnnc_optim_new", st);
  if ((st = rnnc_aot_train_init(b->m, b->ws, c, 0, NULL)) != RNNC_OK) return aotfail(b, "rnnc_aot_train_init", st);
  size_t nopt = rnnc_aot_opt_floats(b->m);
  if (!(b->optstate = calloc(nopt ? nopt : 1, sizeof(float)))) return failf(b, "out of memory");
  return 0;
}

/* Two steps on each side: the losses, norms, outputs, carried states and
 * updated parameters bitwise the same. */
static int train_validate(Bench *b, float *loss0) {
  char when[64];
  for (int s = 0; s < 2; s++) {
    float lj, la;
    double gj, ga;
    if (jit_train(b, &lj, &gj) || aot_train(b, &la, &ga)) return -1;
    snprintf(when, sizeof when, "after training step %d", s + 1);
    if (memcmp(&lj, &la, sizeof lj) || memcmp(&gj, &ga, sizeof gj))
      return failf(b, "validate: %s: loss JIT %.9g AOT %.9g, gradient norm JIT %.17g AOT %.17g (not bitwise the same)",
                   when, lj, la, gj, ga);
    if (!isfinite(lj) || !(gj > 0)) return failf(b, "validate: loss %g, gradient norm %g", lj, gj);
    if (s == 0) *loss0 = lj;
    if (same_io_states(b, when)) return -1;
    for (int64_t i = 0; i < b->m->nparam; i++) {
      const rnnc_aot_param *q = &b->m->param[i];
      if (same_bits(b, q->name, b->params + q->offset, q->numel, when)) return -1;
    }
  }
  return 0;
}

/* ---- step (generation) ------------------------------------------------------ */

typedef struct Gen {
  int32_t *jtok, *atok;      /* [1, B] each side's token input */
  const float *jprob, *aprob; /* [1, B, V] */
  int64_t V, rows;
} Gen;

static int gen_setup(Bench *b, Gen *g) {
  int n_in = 0, n_out = 0;
  for (int64_t k = 0; k < b->p->ntensor; k++) {
    const rnnc_aot_tensor *t = &b->p->tensor[k];
    if (t->role == RNNC_AOT_INPUT && t->dtype == RNNC_I32) {
      g->jtok = rnnc_data(b->net, t->name), g->atok = b->io[t->io], g->rows = t->numel;
      n_in++;
    } else if (t->role == RNNC_AOT_INPUT) {
      n_in += 2; /* a float input: not a generation step */
    } else if (t->role == RNNC_AOT_OUTPUT) {
      g->jprob = rnnc_data(b->net, t->name), g->aprob = b->io[t->io];
      g->V = t->dim[t->rank - 1];
      n_out++;
    }
  }
  if (n_in != 1 || n_out != 1 || !g->jtok || !g->jprob || g->V < 1)
    return failf(b, "the step program of '%s' is not one of token ids in, probabilities out", b->m->name);
  return 0;
}

static int argmax(const float *p, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; i++)
    if (p[i] > p[best]) best = i;
  return (int)best;
}

static int jit_gen(Bench *b, Gen *g) {
  (void)g;
  int st = rnnc_forward(b->net);
  return st == RNNC_OK ? 0 : jitfail(b, "rnnc_forward", st);
}

static int aot_gen(Bench *b, Gen *g) {
  (void)g;
  int st = rnnc_aot_run(b->m, RNNC_AOT_STEP, b->ws, b->params, b->io);
  return st == RNNC_OK ? 0 : aotfail(b, "rnnc_aot_run", st);
}

/* The next tokens: each row's argmax (outside the timed region). */
static void next_tokens(int32_t *tok, const float *prob, const Gen *g) {
  for (int64_t r = 0; r < g->rows; r++) tok[r] = argmax(prob + r * g->V, g->V);
}

/* Eight tokens on each side, each fed its own argmax: the probabilities and
 * carried states bitwise the same after each; they sum to 1. */
static int gen_validate(Bench *b, Gen *g) {
  char when[64];
  for (int s = 0; s < 8; s++) {
    if (jit_gen(b, g) || aot_gen(b, g)) return -1;
    snprintf(when, sizeof when, "after token %d", s + 1);
    if (same_io_states(b, when)) return -1;
    double sum = 0;
    for (int64_t v = 0; v < g->V; v++) sum += g->aprob[v];
    if (!(fabs(sum - 1) < 1e-4)) return failf(b, "validate: the probabilities sum to %g", sum);
    next_tokens(g->jtok, g->jprob, g);
    next_tokens(g->atok, g->aprob, g);
  }
  return 0;
}

/* ---- timing ------------------------------------------------------------------ */

/* One timed run of a side: train step or generation token. */
static int run_once(Bench *b, int aot, Gen *g, double *secs) {
  int train = g == NULL;
  float loss;
  double gn, t0 = now_s();
  int rc = train ? (aot ? aot_train(b, &loss, &gn) : jit_train(b, &loss, &gn)) : (aot ? aot_gen(b, g) : jit_gen(b, g));
  *secs = now_s() - t0;
  if (rc) return -1;
  if (train && !isfinite(loss)) return failf(b, "%s: the loss is not finite", aot ? "AOT" : "JIT");
  if (!train) next_tokens(aot ? g->atok : g->jtok, aot ? g->aprob : g->jprob, g);
  return 0;
}

typedef struct Times {
  double *t[2]; /* [0] JIT, [1] AOT: every timed run, seconds */
  double *ratio; /* per round: AOT median / JIT median */
  int n;
} Times;

/* Warm-up, then o->rounds rounds of o->block runs per side, the side going
 * first alternating. */
static int timed(Bench *b, Gen *g, Times *T) {
  const Opts *o = b->o;
  double s, *blk[2];
  int nr = o->rounds * o->block;
  T->t[0] = malloc((size_t)nr * sizeof(double));
  T->t[1] = malloc((size_t)nr * sizeof(double));
  T->ratio = malloc((size_t)o->rounds * sizeof(double));
  blk[0] = malloc((size_t)o->block * sizeof(double));
  blk[1] = malloc((size_t)o->block * sizeof(double));
  int rc = -1;
  if (!T->t[0] || !T->t[1] || !T->ratio || !blk[0] || !blk[1]) {
    failf(b, "out of memory");
    goto out;
  }
  for (int w = 0; w < o->warmup; w++)
    if (run_once(b, 0, g, &s) || run_once(b, 1, g, &s)) goto out;
  T->n = 0;
  for (int r = 0; r < o->rounds; r++) {
    for (int half = 0; half < 2; half++) {
      int side = (r + half) % 2; /* round 0: JIT then AOT; round 1: AOT then JIT */
      for (int k = 0; k < o->block; k++) {
        if (run_once(b, side, g, &s)) goto out;
        T->t[side][T->n + k] = s;
        blk[side][k] = s;
      }
    }
    double mj = median(blk[0], o->block), ma = median(blk[1], o->block);
    T->ratio[r] = ma / mj;
    T->n += o->block;
  }
  rc = 0;
out:
  free(blk[0]);
  free(blk[1]);
  return rc;
}

/* ---- one benchmark ------------------------------------------------------------ */

static void put_side(FILE *f, const char *key, double *t, int n, double scale, const char *unit) {
  double mn = minimum(t, n), med = median(t, n);
  fprintf(f, ", \"%s\": {\"n\": %d, \"%s_median\": %.4f, \"%s_min\": %.4f}", key, n, unit, med * scale, unit,
          mn * scale);
}

static int bench(Bench *b, FILE *f) {
  const Opts *o = b->o;
  int train = !strcmp(o->what, "train"), prog = train ? RNNC_AOT_TRAIN : RNNC_AOT_STEP, st;
  rnnc_optim_config c;
  Gen g = {0};
  Times T = {{NULL, NULL}, NULL, 0};
  float loss0 = NAN;
  int rc = -1;
  if (load_object(b, prog)) return -1;
  if (!(b->ctx = rnnc_open())) return failf(b, "rnnc_open: out of memory");
  if ((st = rnnc_load_file(b->ctx, o->model)) != RNNC_OK) return jitfail(b, o->model, st);
  if (jit_compile(b, train ? RNNC_GRAD | RNNC_CARRY : RNNC_CARRY) || setup(b, prog)) return -1;
  if (train ? train_setup(b, &c) || train_validate(b, &loss0) : gen_setup(b, &g) || gen_validate(b, &g)) return -1;
  if (timed(b, train ? NULL : &g, &T)) goto out;

  double scale = train ? 1e3 : 1e6;
  const char *unit = train ? "ms" : "us";
  double mj = median(T.t[0], T.n), ma = median(T.t[1], T.n);
  double rr = median(T.ratio, o->rounds);
  fprintf(f, "{\"config\": ");
  json_str(f, o->label ? o->label : b->m->name);
  fprintf(f, ", \"what\": \"%s\", \"model\": ", o->what);
  json_str(f, b->m->name);
  fprintf(f, ", \"cpu\": ");
  json_str(f, b->m->cpu);
  fprintf(f, ", \"B\": %lld, \"T\": %lld, \"threads\": %d, \"rounds\": %d, \"block\": %d, \"warmup\": %d",
          (long long)b->p->B, (long long)b->p->T, o->threads, o->rounds, o->block, o->warmup);
  const char *wp = getenv("OMP_WAIT_POLICY");
  fprintf(f, ", \"omp_wait_policy\": ");
  json_str(f, wp ? wp : "(default)");
  if (train)
    fprintf(f, ", \"optim\": \"%s\", \"lr\": %g, \"clip_norm\": %g, \"loss_first\": %.6g", o->optim, c.lr, c.clip_norm,
            loss0);
  fprintf(f, ", \"validate\": {\"%s\": %d, \"bitwise\": true}", train ? "steps" : "tokens", train ? 2 : 8);
  put_side(f, "jit", T.t[0], T.n, scale, unit);
  put_side(f, "aot", T.t[1], T.n, scale, unit);
  fprintf(f, ", \"ratio_aot_jit\": %.4f, \"ratio_rounds_median\": %.4f", ma / mj, rr);
  fprintf(f, ", \"jit_compile_ms\": %.1f, \"aot_ws_bytes\": %zu, \"param_floats\": %lld}\n", b->compile_ms, b->wsbytes,
          (long long)b->m->param_floats);
  fprintf(stderr, "aot_bench %s (%s, B=%lld T=%lld, %d threads): JIT %.4g %s, AOT %.4g %s (medians of %d), AOT/JIT %.3f\n",
          o->label ? o->label : b->m->name, o->what, (long long)b->p->B, (long long)b->p->T, o->threads, mj * scale,
          unit, ma * scale, unit, T.n, ma / mj);
  rc = 0;
out:
  free(T.t[0]);
  free(T.t[1]);
  free(T.ratio);
  return rc;
}

static void cleanup(Bench *b) {
  rnnc_optim_free(b->opt);
  rnnc_net_free(b->net);
  rnnc_close(b->ctx);
  if (b->io)
    for (int64_t i = 0; b->p && i < b->p->nio; i++) free(b->io[i]);
  free(b->io);
  free(b->ws);
  free(b->params);
  free(b->optstate);
}

static void usage(FILE *f) {
  fputs("usage: aot_bench --model FILE.rnn --object X.so --prefix P --what train|step\n"
        "                 [--dim NAME=N ...] [--threads N] [--rounds R] [--warmup W] [--block K]\n"
        "                 [--optim sgd|adam] [--lr X] [--label NAME]\n"
        "X.so: `rnnc compile FILE.rnn --prefix P -o X.o` then `cc -shared -o X.so X.o -lsleef -lm -fopenmp`.\n"
        "train: the training step (rnnc compile --train) against the JIT's rnnc_train_step;\n"
        "step: one token of the step program against a T = 1 RNNC_CARRY net's rnnc_forward.\n"
        "Validates bitwise first; prints one JSON line (bench/README.md, \"Ahead of time vs JIT\").\n",
        f);
}

int main(int argc, char **argv) {
  Opts o = {.threads = 2, .rounds = -1, .warmup = -1, .block = -1, .optim = "sgd", .lr = 0};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help")) {
      usage(stdout);
      return 0;
    }
    if (!v) {
      usage(stderr);
      return 2;
    }
    i++;
    if (!strcmp(a, "--model")) o.model = v;
    else if (!strcmp(a, "--object")) o.object = v;
    else if (!strcmp(a, "--prefix")) o.prefix = v;
    else if (!strcmp(a, "--what")) o.what = v;
    else if (!strcmp(a, "--label")) o.label = v;
    else if (!strcmp(a, "--optim")) o.optim = v;
    else if (!strcmp(a, "--threads")) o.threads = atoi(v);
    else if (!strcmp(a, "--rounds")) o.rounds = atoi(v);
    else if (!strcmp(a, "--warmup")) o.warmup = atoi(v);
    else if (!strcmp(a, "--block")) o.block = atoi(v);
    else if (!strcmp(a, "--lr")) o.lr = atof(v);
    else if (!strcmp(a, "--dim") && o.ndim < MAXDIMS && strchr(v, '=') && atol(strchr(v, '=') + 1) > 0) {
      size_t k = (size_t)(strchr(v, '=') - v);
      char *name = malloc(k + 1);
      if (!name) return 1;
      memcpy(name, v, k), name[k] = 0;
      o.dim[o.ndim++] = (rnnc_dim){name, atol(v + k + 1)};
    } else {
      fprintf(stderr, "aot_bench: bad option '%s %s'\n", a, v);
      usage(stderr);
      return 2;
    }
  }
  int train = o.what && !strcmp(o.what, "train");
  if (!o.model || !o.object || !o.prefix || !o.what || (!train && strcmp(o.what, "step")) || o.threads < 1 ||
      (strcmp(o.optim, "sgd") && strcmp(o.optim, "adam"))) {
    usage(stderr);
    return 2;
  }
  if (o.rounds < 0) o.rounds = train ? 10 : 20;
  if (o.warmup < 0) o.warmup = train ? 1 : 20;
  if (o.block < 0) o.block = train ? 1 : 200;
  if (o.rounds < 1 || o.block < 1) {
    usage(stderr);
    return 2;
  }
  Bench b = {.o = &o};
  int rc = bench(&b, stdout);
  if (rc) {
    printf("{\"config\": ");
    json_str(stdout, o.label ? o.label : o.prefix);
    printf(", \"what\": \"%s\", \"error\": ", o.what);
    json_str(stdout, b.err);
    printf("}\n");
    fprintf(stderr, "aot_bench: %s\n", b.err);
  }
  cleanup(&b);
  for (int i = 0; i < o.ndim; i++) free((char *)o.dim[i].name);
  return rc ? 1 : 0;
}
