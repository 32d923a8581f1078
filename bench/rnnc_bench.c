/* rnnc_bench.c — rnnc's side of the benchmark (bench/README.md): the
 * configurations of DESIGN.md (C1–C6) and the MGU custom-cell row, compiled
 * through the public JIT API (include/rnnc.h) and timed; bench/torch_bench.py
 * times the same models in PyTorch and bench/run.sh puts both in one table.
 *
 * For each configuration, in a child process of its own (so that its memory
 * figures are its own):
 *   - load bench/models/<file>.rnn, rnnc_compile it with every dim bound
 *     (RNNC_GRAD), rnnc_init_params(seed 1), random inputs (fixed seed);
 *   - train: rnnc_forward_backward + clip by global norm 5 + SGD (lr 0.01),
 *     the clip and the update in plain C loops, one thread, on the param /
 *     grad buffers from rnnc_data (issue 4 will compile them into the model);
 *   - fwd: a second net compiled without RNNC_GRAD sharing the parameters
 *     (rnnc_share_params), rnnc_forward — what inference runs;
 *   - C6: a T = 1, B = 1 RNNC_CARRY net, rnnc_forward per token, the states
 *     carried, the next token the argmax of the probabilities (outside the
 *     timed region, as torch_bench.py does);
 *   - C2-compile: compile times of C2 (RNNC_GRAD) at T = 1, 64 and 1024.
 * Validation before timing (--no-validate skips the first):
 *   - a T = 2 copy of the net (same B and sizes) against the reference
 *     interpreter (ir/interp*.c, float32) on the same parameters and inputs:
 *     the loss and every gradient within relative 1e-4 (validate() below);
 *   - the timed net's first loss is finite (a softmax loss within
 *     [0.5, 2] x ln V at initialization) and its gradient norm finite, > 0;
 *   - the forward-only net, compiled separately, gives the training net's loss;
 *   - C6: the probabilities sum to 1.
 *
 * Timings: wall clock (CLOCK_MONOTONIC), warm-up runs first, then at least
 * --steps runs and --min-time seconds; median and min.
 * FLOPs (matmuls only; G = gates: LSTM 4, GRU 3, RNN 1, MGU 2):
 *   fwd   = T * ( sum_l 2*B*G*H*(I_l + H) + 2*B*H*V )   (I_1 = E, I_l = H; C5 no V term)
 *   train = 3 * fwd   (backward = 2x forward: input- and weight-gradient GEMMs)
 * Memory (from /proc/self): rss_base_mib before the first compile;
 * run_peak_mib the resident set's high-water mark (VmHWM) over the timed
 * training runs (C6: the generation runs): after compiling, the heap's free
 * pages go back to the OS (malloc_trim) and VmHWM is reset
 * (/proc/self/clear_refs; rss_run_start_mib is the resident set then);
 * run_peak_delta_mib = run_peak_mib - rss_base_mib;
 * peak_mib = ru_maxrss of the whole child (compilation included);
 * tensor_mib = the bytes of the net's named tensors (rnnc_tensor_shape).
 *
 * Output: one JSON line per configuration on stdout; on a failure a line with
 * "error" and exit status 1.
 */
#include <errno.h>
#include <malloc.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "benchutil.h"
#include "ir.h" /* the reference interpreter, for the check before timing */
#include "rnnc.h"

#ifndef RNNC_BENCH_MODELS
#define RNNC_BENCH_MODELS "bench/models"
#endif

enum { K_TOKENS, K_FEATURES, K_GEN, K_COMPILE };

typedef struct Config {
  const char *key, *name;
  const char *file, *model; /* bench/models/<file>, the model in it */
  const char *cell;         /* for the record */
  int gates, kind;
  long V, E, H, L, B, T;    /* C5: E is I */
} Config;

static const Config configs[] = {
    {"C1", "charlm-small", "c1_charlm_small.rnn", "c1_charlm_small", "LSTM", 4, K_TOKENS, 65, 64, 128, 1, 32, 64},
    {"C2", "charlm-medium", "c2_charlm_medium.rnn", "c2_charlm_medium", "LSTM", 4, K_TOKENS, 256, 128, 512, 2, 64, 64},
    {"C3", "gru-medium", "c3_gru_medium.rnn", "c3_gru_medium", "GRU", 3, K_TOKENS, 256, 128, 512, 2, 64, 64},
    {"MGU", "mgu-medium (custom cell)", "mgu_medium.rnn", "mgu_medium", "MGU", 2, K_TOKENS, 256, 128, 512, 2, 64, 64},
    {"C4", "rnn-medium", "c4_rnn_medium.rnn", "c4_rnn_medium", "RNN", 1, K_TOKENS, 256, 128, 512, 2, 64, 64},
    {"C5", "deepbench-lstm", "c5_deepbench_lstm.rnn", "c5_deepbench_lstm", "LSTM", 4, K_FEATURES, 0, 1024, 1024, 1, 32, 25},
    {"C6", "generation", "c6_generate.rnn", "c6_generate", "LSTM", 4, K_GEN, 256, 128, 512, 2, 1, 1},
    {"C2-compile", "C2 compile time at T = 1, 64, 1024", "c2_charlm_medium.rnn", "c2_charlm_medium", "LSTM", 4,
     K_COMPILE, 256, 128, 512, 2, 64, 64},
};
/* --quick: a tiny C1 (the ctest bench_quick, and torch_bench.py's "quick") */
static const Config quick = {"quick", "tiny charlm (quick)", "c1_charlm_small.rnn", "c1_charlm_small", "LSTM", 4,
                             K_TOKENS, 65, 8, 16, 1, 4, 8};

typedef struct Opts {
  int threads, steps, warmup, gen_steps, fork, validate;
  double min_time;
  const char *models;
} Opts;

/* ---- small helpers -------------------------------------------------------- */

/* splitmix64: the inputs' fixed-seed generator. */
static uint64_t splitmix64(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static double rss_mib(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long size = 0, res = 0;
  if (!f) return -1;
  if (fscanf(f, "%ld %ld", &size, &res) != 2) res = -1;
  fclose(f);
  return res < 0 ? -1 : (double)res * (double)sysconf(_SC_PAGESIZE) / 1048576.0;
}

/* VmHWM, MiB; -1 when unreadable. */
static double hwm_mib(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  double v = -1;
  if (!f) return -1;
  while (fgets(line, sizeof line, f))
    if (!strncmp(line, "VmHWM:", 6)) v = atof(line + 6) / 1024.0;
  fclose(f);
  return v;
}

/* Give the heap's free pages back to the OS (what compiling and validating
 * freed), then reset VmHWM to the resident set; 0 where the kernel refuses. */
static int reset_hwm(void) {
  malloc_trim(0);
  FILE *f = fopen("/proc/self/clear_refs", "w");
  if (!f) return 0;
  int ok = fputs("5", f) >= 0;
  return fclose(f) == 0 && ok;
}

static double maxrss_mib(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_maxrss / 1024.0;
}

/* s as a JSON string literal on f. */
static void json_str(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
    else if (c == '\n') fputs("\\n", f);
    else if (c < 0x20) fprintf(f, "\\u%04x", c);
    else fputc(c, f);
  }
  fputc('"', f);
}

/* Matmul FLOPs of one forward pass of c at T steps (formula at the top). */
static double fwd_flops(const Config *c, long T) {
  double f = 0;
  for (long l = 0; l < c->L; l++) {
    long in = l == 0 ? c->E : c->H;
    f += 2.0 * (double)c->B * c->gates * (double)c->H * (double)(in + c->H);
  }
  if (c->kind != K_FEATURES) f += 2.0 * (double)c->B * (double)c->H * (double)c->V;
  return (double)T * f;
}

/* ---- one configuration, in the child ------------------------------------- */

typedef struct Run {
  const Config *c;
  const Opts *o;
  rnnc_ctx *ctx;
  char err[1024];
} Run;

/* Fail with the context's message (or msg): sets r->err, returns -1. */
static int fail(Run *r, const char *what, int st) {
  snprintf(r->err, sizeof r->err, "%.200s: status %d: %.700s", what, st, r->ctx ? rnnc_errmsg(r->ctx) : "");
  size_t n = strlen(r->err);
  while (n && r->err[n - 1] == '\n') r->err[--n] = 0;
  return -1;
}

/* Compile c's model with T steps, B from c, and flags; the wall time in *wall_ms. */
static int compile(Run *r, long T, long B, int flags, rnnc_net **net, double *wall_ms) {
  const Config *c = r->c;
  rnnc_dim dims[5];
  int nd = 0;
  dims[nd++] = (rnnc_dim){"T", T};
  dims[nd++] = (rnnc_dim){"B", B};
  if (c->kind == K_FEATURES) {
    dims[nd++] = (rnnc_dim){"I", c->E};
  } else {
    dims[nd++] = (rnnc_dim){"V", c->V};
    dims[nd++] = (rnnc_dim){"E", c->E};
  }
  dims[nd++] = (rnnc_dim){"H", c->H};
  double t0 = now_s();
  int st = rnnc_compile(r->ctx, c->model, nd, dims, flags, net);
  if (wall_ms) *wall_ms = (now_s() - t0) * 1e3;
  if (st != RNNC_OK) return fail(r, "rnnc_compile", st);
  if ((st = rnnc_set_threads(*net, r->o->threads)) != RNNC_OK) return fail(r, "rnnc_set_threads", st);
  return 0;
}

static int64_t numel_of(rnnc_net *net, const char *name, int *dtype) {
  int rank;
  int64_t dim[4], n = 1;
  if (rnnc_tensor_shape(net, name, dtype, &rank, dim) != RNNC_OK) return -1;
  for (int i = 0; i < rank; i++) n *= dim[i];
  return n;
}

/* Fill the model's inputs (names without a '.': token ids and targets
 * uniform in [0, V), features uniform in [-1, 1)) from a fixed seed; outputs
 * (also dot-free) are written too, harmlessly, and overwritten by a run. */
static int fill_inputs(Run *r, rnnc_net *net, uint64_t seed) {
  for (int i = 0; i < rnnc_tensor_count(net); i++) {
    const char *name = rnnc_tensor_name(net, i);
    int dt;
    if (strchr(name, '.')) continue;
    int64_t n = numel_of(net, name, &dt);
    void *p = rnnc_data(net, name);
    if (n < 0 || !p) return fail(r, name, RNNC_EINPUT);
    for (int64_t k = 0; k < n; k++) {
      uint64_t u = splitmix64(&seed);
      if (dt == RNNC_I32) ((int32_t *)p)[k] = (int32_t)(u % (uint64_t)(r->c->V > 0 ? r->c->V : 1));
      else ((float *)p)[k] = (float)((double)(u >> 11) * 0x1.0p-53 * 2.0 - 1.0);
    }
  }
  return 0;
}

/* A piece of a parameter and of its gradient, n floats each. */
typedef struct PG {
  float *p, *g;
  int64_t n;
} PG;
enum { CHUNK = 1 << 16 };

/* Every parameter ("<node>.<param>": a '.', not grad.* nor state.*) with its
 * grad.<node>.<param>, cut into pieces of at most CHUNK floats; the count of
 * pieces, or -1. *out malloc'ed. */
static int param_grads(Run *r, rnnc_net *net, PG **out) {
  int nt = rnnc_tensor_count(net), np = 0, cap = 0;
  PG *pg = NULL;
  char gname[512];
  for (int i = 0; i < nt; i++) {
    const char *name = rnnc_tensor_name(net, i);
    int dt;
    if (!strchr(name, '.') || !strncmp(name, "grad.", 5) || !strncmp(name, "state.", 6)) continue;
    snprintf(gname, sizeof gname, "grad.%s", name);
    int64_t n = numel_of(net, name, &dt);
    float *p = rnnc_data(net, name), *g = rnnc_data(net, gname);
    if (!p || !g || n < 0) {
      free(pg);
      return fail(r, gname, RNNC_EINPUT);
    }
    for (int64_t k = 0; k < n; k += CHUNK) {
      if (np == cap) {
        PG *q = realloc(pg, (size_t)(cap = cap ? 2 * cap : 64) * sizeof *pg);
        if (!q) {
          free(pg);
          return fail(r, "out of memory", RNNC_ENOMEM);
        }
        pg = q;
      }
      pg[np++] = (PG){p + k, g + k, n - k < CHUNK ? n - k : CHUNK};
    }
  }
  *out = pg;
  return np;
}

/* The global L2 norm of every parameter's gradient (the sum of squares in
 * double). */
static double grad_norm(const PG *pg, int np) {
  double ss = 0;
  for (int i = 0; i < np; i++) {
    const float *g = pg[i].g;
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t k = 0; k < pg[i].n; k++) s += (double)g[k] * g[k];
    ss += s;
  }
  return sqrt(ss);
}

/* clip_grad_norm_(max_norm) as PyTorch does it (scale by max_norm /
 * (norm + 1e-6) when that is < 1), then SGD p -= lr g; plain C vector loops,
 * one thread: on this shared 2-core machine an OpenMP region here cost a
 * scheduler time slice whenever the other core was busy (C2: 30 ms against
 * 6 ms on one thread). Issue 4 compiles the optimizer into the model. The
 * gradients' global norm. */
static double clip_sgd(PG *pg, int np, float max_norm, float lr) {
  double norm = grad_norm(pg, np);
  double coef = max_norm / (norm + 1e-6);
  float step = (float)(lr * (coef < 1 ? coef : 1));
  for (int i = 0; i < np; i++) {
    float *p = pg[i].p;
    const float *g = pg[i].g;
#pragma omp simd
    for (int64_t k = 0; k < pg[i].n; k++) p[k] -= step * g[k];
  }
  return norm;
}

/* Summary of a timed run: {"n", "ms_median", "ms_min", "tokens_per_s", "gflops", "gflop_per_step"}. */
static void put_times(FILE *f, const char *key, double *t, int n, double flops, double tokens) {
  double mn = t[0];
  for (int i = 1; i < n; i++) mn = t[i] < mn ? t[i] : mn;
  double med = median(t, n);
  fprintf(f,
          ", \"%s\": {\"n\": %d, \"ms_median\": %.4f, \"ms_min\": %.4f, \"tokens_per_s\": %.1f, "
          "\"gflops\": %.3f, \"gflop_per_step\": %.5f",
          key, n, med * 1e3, mn * 1e3, tokens / med, flops / med / 1e9, flops / 1e9);
}

enum { MAXRUNS = 100000 };

/* Runs of fn: o->warmup, then at least o->steps and o->min_time seconds;
 * times (s) into t (MAXRUNS), the count or -1. */
typedef int (*RunFn)(Run *r, void *arg, double *extra_s);
static int timed(Run *r, RunFn fn, void *arg, int warmup, int steps, double min_time, double *t, double *extra) {
  double x;
  for (int i = 0; i < warmup; i++)
    if (fn(r, arg, &x)) return -1;
  int n = 0;
  double start = now_s();
  while (n < MAXRUNS && (n < steps || now_s() - start < min_time)) {
    double t0 = now_s();
    x = 0;
    if (fn(r, arg, &x)) return -1;
    t[n] = now_s() - t0;
    if (extra) extra[n] = x;
    n++;
  }
  return n;
}

typedef struct TrainArg {
  rnnc_net *net;
  PG *pg;
  int np;
  double norm;
} TrainArg;

/* One training step; the clip + SGD time in *extra_s. */
static int train_step(Run *r, void *arg, double *extra_s) {
  TrainArg *a = arg;
  int st = rnnc_forward_backward(a->net);
  if (st != RNNC_OK) return fail(r, "rnnc_forward_backward", st);
  double t0 = now_s();
  a->norm = clip_sgd(a->pg, a->np, 5.0f, 0.01f);
  *extra_s = now_s() - t0;
  return 0;
}

static int fwd_step(Run *r, void *arg, double *extra_s) {
  (void)extra_s;
  int st = rnnc_forward(arg);
  return st == RNNC_OK ? 0 : fail(r, "rnnc_forward", st);
}

static int argmax(const float *p, long n) {
  int best = 0;
  for (long i = 1; i < n; i++)
    if (p[i] > p[best]) best = (int)i;
  return best;
}

/* The scalar output "loss" of net, or NAN. */
static float loss_of(rnnc_net *net) {
  float v = NAN;
  if (rnnc_get(net, "loss", &v, sizeof v) != RNNC_OK) return NAN;
  return v;
}

static double tensor_mib(rnnc_net *net) {
  double bytes = 0;
  for (int i = 0; i < rnnc_tensor_count(net); i++) {
    int dt;
    int64_t n = numel_of(net, rnnc_tensor_name(net, i), &dt);
    if (n > 0) bytes += 4.0 * (double)n; /* f32 and i32 */
  }
  return bytes / 1048576.0;
}

/* The memory fields (MiB) and the line's end. */
static void put_memory(FILE *f, double base, double start, double run_peak, double tensors) {
  fprintf(f,
          ", \"rss_base_mib\": %.1f, \"rss_run_start_mib\": %.1f, \"run_peak_mib\": %.1f, "
          "\"run_peak_delta_mib\": %.1f, \"peak_mib\": %.1f, \"tensor_mib\": %.3f}\n",
          base, start, run_peak, run_peak >= 0 ? run_peak - base : -1, maxrss_mib(), tensors);
}

static void put_header(FILE *f, const Config *c, const Opts *o) {
  fprintf(f, "{\"config\": ");
  json_str(f, c->key);
  fprintf(f, ", \"engine\": \"rnnc\", \"name\": ");
  json_str(f, c->name);
  fprintf(f, ", \"cell\": \"%s\", \"V\": %ld, \"E\": %ld, \"H\": %ld, \"L\": %ld, \"B\": %ld, \"T\": %ld, "
             "\"threads\": %d",
          c->cell, c->V, c->E, c->H, c->L, c->B, c->T, o->threads);
  const char *wp = getenv("OMP_WAIT_POLICY");
  fprintf(f, ", \"omp_wait_policy\": ");
  json_str(f, wp ? wp : "(default)");
}

enum { VAL_T = 2 };
#define VAL_TOL 1e-4

/* Validate before timing: a VAL_T-step copy of the configuration's net (same
 * B, same sizes, RNNC_GRAD) against the reference interpreter (ir/interp*.c,
 * float32 mode) on the same parameters and inputs. Compares the loss and
 * every grad.* tensor; a tensor's error is max |rnnc - interp| / max |interp|
 * (1 when both are 0 elsewhere); all must be <= VAL_TOL. The largest error
 * in *maxerr, the tensors compared in *ncmp; 0 or -1 (r->err says which). */
static int validate(Run *r, double *maxerr, int *ncmp) {
  const Config *c = r->c;
  rnnc_net *net = NULL;
  TensorSet params, inputs, out;
  Arena *a = arena_new();
  Env env = {0};
  char err[512];
  int rc = -1, st;
  tset_init(&params), tset_init(&inputs), tset_init(&out);
  *maxerr = 0, *ncmp = 0;
  if (compile(r, VAL_T, c->B, RNNC_GRAD, &net, NULL)) goto out;
  if ((st = rnnc_init_params(net, 7)) != RNNC_OK) {
    fail(r, "rnnc_init_params", st);
    goto out;
  }
  if (fill_inputs(r, net, 43)) goto out;
  if ((st = rnnc_forward_backward(net)) != RNNC_OK) {
    fail(r, "rnnc_forward_backward", st);
    goto out;
  }
  Module *m = r->ctx->m;
  Model *md = model_find(m, c->model);
  const ModelGrad *g = md ? (md->grad ? md->grad : autodiff(m, md)) : NULL;
  if (!g) {
    snprintf(r->err, sizeof r->err, "validate: model '%s' has no gradient plan", c->model);
    goto out;
  }
  /* the header dims as compiled, the parameters, and the model's inputs */
  for (int i = 0; i < md->ndim; i++) {
    const char *d = md->dim[i].name;
    long v = !strcmp(d, "V") ? c->V : !strcmp(d, "E") || !strcmp(d, "I") ? c->E : !strcmp(d, "H") ? c->H : -1;
    if (v > 0) env_set(a, &env, d, v);
  }
  for (int i = 0; i < rnnc_tensor_count(net); i++) {
    const char *name = rnnc_tensor_name(net, i);
    int dt, rank, isinput = 0;
    int64_t dim[4];
    for (int k = 0; k < md->nnode; k++)
      if (md->node[k].kind == M_INPUT && md->node[k].name && !strcmp(md->node[k].name, name)) isinput = 1;
    int isparam = strchr(name, '.') && strncmp(name, "grad.", 5) && strncmp(name, "state.", 6);
    if (!isinput && !isparam) continue;
    if (rnnc_tensor_shape(net, name, &dt, &rank, dim) != RNNC_OK) {
      fail(r, "rnnc_tensor_shape", RNNC_EINPUT);
      goto out;
    }
    Tensor *t = tset_add(isinput ? &inputs : &params, name, dt == RNNC_I32 ? DT_I32 : DT_F32, rank, dim);
    if (!t) {
      snprintf(r->err, sizeof r->err, "validate: out of memory");
      goto out;
    }
    memcpy(t->data, rnnc_data(net, name), (size_t)tensor_numel(t) * 4);
  }
  InterpOpts io = {.prec = PREC_F32, .wantgrad = 1};
  if (interp_run(m, md, g, &env, &params, &inputs, &io, &out, err, sizeof err) != RNNC_OK) {
    snprintf(r->err, sizeof r->err, "validate: interpreter: %s", err);
    goto out;
  }
  for (int i = 0; i < out.n; i++) {
    Tensor *t = &out.t[i];
    const char *name = t->name;
    if (t->dtype != DT_F32 || (strncmp(name, "grad.", 5) && strcmp(name, "loss"))) continue;
    const float *want = t->data, *got = rnnc_data(net, name);
    int64_t n = tensor_numel(t);
    if (!got) {
      fail(r, name, RNNC_EINPUT);
      goto out;
    }
    double scale = 0, diff = 0;
    int64_t at = 0;
    for (int64_t k = 0; k < n; k++) {
      double d = fabs((double)got[k] - want[k]);
      scale = fmax(scale, fabs((double)want[k]));
      if (d > diff || isnan(d)) diff = isnan(d) ? INFINITY : d, at = k;
    }
    double e = scale > 0 ? diff / scale : diff > 0 ? 1 : 0;
    (*ncmp)++;
    if (e > *maxerr) *maxerr = e;
    if (!(e <= VAL_TOL)) {
      snprintf(r->err, sizeof r->err,
               "validate: %s differs from the interpreter: relative error %.3g at [%lld] (rnnc %.9g, interp %.9g)",
               name, e, (long long)at, got[at], want[at]);
      goto out;
    }
  }
  if (*ncmp < 2) {
    snprintf(r->err, sizeof r->err, "validate: only %d tensors compared", *ncmp);
    goto out;
  }
  rc = 0;
out:
  rnnc_net_free(net);
  tset_clear(&params), tset_clear(&inputs), tset_clear(&out);
  arena_free(a);
  return rc;
}

/* A training configuration (K_TOKENS, K_FEATURES): the JSON line into f. */
static int bench_train(Run *r, FILE *f, double base) {
  const Config *c = r->c;
  const Opts *o = r->o;
  rnnc_net *net = NULL, *fnet = NULL;
  PG *pg = NULL;
  double *t = malloc(MAXRUNS * sizeof *t), *x = malloc(MAXRUNS * sizeof *x), wall, fwall;
  int rc = -1, n, st;
  double verr = -1;
  int vn = 0;
  if (!t || !x) goto out;
  if (o->validate && validate(r, &verr, &vn)) goto out;
  if (compile(r, c->T, c->B, RNNC_GRAD, &net, &wall)) goto out;
  if ((st = rnnc_init_params(net, 1)) != RNNC_OK) {
    fail(r, "rnnc_init_params", st);
    goto out;
  }
  if (fill_inputs(r, net, 42)) goto out;
  TrainArg ta = {net, NULL, 0, 0};
  if ((ta.np = param_grads(r, net, &pg)) < 0) goto out;
  ta.pg = pg;

  /* checks before timing: the first step's loss and gradient norm */
  if ((st = rnnc_forward_backward(net)) != RNNC_OK) {
    fail(r, "rnnc_forward_backward", st);
    goto out;
  }
  float loss0 = loss_of(net);
  double norm0 = grad_norm(pg, ta.np);
  double lnv = c->kind == K_TOKENS ? log((double)c->V) : 0;
  if (!isfinite(loss0) || !isfinite(norm0) || norm0 <= 0 ||
      (c->kind == K_TOKENS && (loss0 < 0.5 * lnv || loss0 > 2 * lnv))) {
    snprintf(r->err, sizeof r->err, "check failed: initial loss %g (ln V = %g), gradient norm %g", loss0, lnv,
             norm0);
    goto out;
  }

  double tensors = tensor_mib(net);
  int hwm_ok = reset_hwm();
  double start = rss_mib();
  if ((n = timed(r, train_step, &ta, o->warmup, o->steps, o->min_time, t, x)) < 0) goto out;
  double run_peak = hwm_ok ? hwm_mib() : -1;
  float loss_last = loss_of(net);
  double clip_ms = median(x, n) * 1e3;

  put_header(f, c, o);
  fprintf(f, ", \"compile_ms\": %.1f, \"compile_wall_ms\": %.1f", rnnc_compile_ms(net), wall);
  put_times(f, "train", t, n, 3 * fwd_flops(c, c->T), (double)c->B * (double)c->T);
  fprintf(f, ", \"clip_sgd_ms_median\": %.4f}", clip_ms);
  fprintf(f, ", \"loss_first\": %.6g, \"loss_last\": %.6g, \"grad_norm_first\": %.6g", loss0, loss_last, norm0);
  if (o->validate)
    fprintf(f, ", \"validate\": {\"T\": %d, \"tensors\": %d, \"max_rel_err\": %.3g, \"tol\": %g}", VAL_T, vn, verr,
            VAL_TOL);

  /* forward only, on a net without backward sharing the parameters */
  if (compile(r, c->T, c->B, 0, &fnet, &fwall)) goto out;
  if ((st = rnnc_share_params(fnet, net)) != RNNC_OK) {
    fail(r, "rnnc_share_params", st);
    goto out;
  }
  if (fill_inputs(r, fnet, 42)) goto out;
  if ((st = rnnc_forward_backward(net)) != RNNC_OK || (st = rnnc_forward(fnet)) != RNNC_OK) {
    fail(r, "forward check", st);
    goto out;
  }
  float lt = loss_of(net), lf = loss_of(fnet);
  if (!(fabsf(lt - lf) <= 1e-5f * fmaxf(1.0f, fabsf(lt)))) {
    snprintf(r->err, sizeof r->err, "check failed: forward-only loss %.9g, training net's %.9g", lf, lt);
    goto out;
  }
  if ((n = timed(r, fwd_step, fnet, o->warmup, o->steps, o->min_time, t, NULL)) < 0) goto out;
  fprintf(f, ", \"compile_fwd_ms\": %.1f, \"compile_fwd_wall_ms\": %.1f", rnnc_compile_ms(fnet), fwall);
  put_times(f, "fwd", t, n, fwd_flops(c, c->T), (double)c->B * (double)c->T);
  fputc('}', f);
  put_memory(f, base, start, run_peak, tensors);
  rc = 0;
out:
  rnnc_net_free(fnet);
  rnnc_net_free(net);
  free(pg);
  free(t);
  free(x);
  return rc;
}

/* C6: per-token latency of a T = 1, B = 1 RNNC_CARRY net. */
static int bench_gen(Run *r, FILE *f, double base) {
  const Config *c = r->c;
  const Opts *o = r->o;
  rnnc_net *net = NULL;
  double *t = malloc(MAXRUNS * sizeof *t), wall;
  int rc = -1, st;
  if (!t) goto out;
  if (compile(r, 1, 1, RNNC_CARRY, &net, &wall)) goto out;
  if ((st = rnnc_init_params(net, 1)) != RNNC_OK) {
    fail(r, "rnnc_init_params", st);
    goto out;
  }
  struct {
    int32_t *tok;      /* [1, 1] */
    const float *probs; /* [1, 1, V] */
  } ga = {rnnc_data(net, "tokens"), rnnc_data(net, "probs")};
  if (!ga.tok || !ga.probs) {
    fail(r, "rnnc_data", RNNC_EINPUT);
    goto out;
  }
  ga.tok[0] = 0;
  /* check: probabilities sum to 1 after a step, and the state moves it */
  if ((st = rnnc_forward(net)) != RNNC_OK) {
    fail(r, "rnnc_forward", st);
    goto out;
  }
  double s = 0;
  for (long i = 0; i < c->V; i++) s += ga.probs[i];
  if (!(fabs(s - 1) < 1e-4)) {
    snprintf(r->err, sizeof r->err, "check failed: the probabilities sum to %g", s);
    goto out;
  }
  rnnc_reset_state(net);
  int hwm_ok = reset_hwm();
  double start = rss_mib();
  int warm = 20, n = 0;
  double t1;
  for (int i = 0; i < warm + o->gen_steps; i++) {
    double t0 = now_s();
    if ((st = rnnc_forward(net)) != RNNC_OK) {
      fail(r, "rnnc_forward", st);
      goto out;
    }
    t1 = now_s();
    ga.tok[0] = argmax(ga.probs, c->V); /* greedy, outside the timed region */
    if (i >= warm) t[n++] = t1 - t0;
  }
  double run_peak = hwm_ok ? hwm_mib() : -1;
  put_header(f, c, o);
  fprintf(f, ", \"compile_ms\": %.1f, \"compile_wall_ms\": %.1f", rnnc_compile_ms(net), wall);
  double mn = t[0];
  for (int i = 1; i < n; i++) mn = t[i] < mn ? t[i] : mn;
  double med = median(t, n);
  put_times(f, "gen", t, n, fwd_flops(c, 1), 1);
  fprintf(f, ", \"us_median\": %.2f, \"us_min\": %.2f}", med * 1e6, mn * 1e6);
  put_memory(f, base, start, run_peak, tensor_mib(net));
  rc = 0;
out:
  rnnc_net_free(net);
  free(t);
  return rc;
}

/* C2-compile: compile times of C2 with RNNC_GRAD at T = 1, 64 and 1024. */
static int bench_compile(Run *r, FILE *f) {
  static const long Ts[] = {1, 64, 1024};
  double ms[3], wall[3];
  for (int i = 0; i < 3; i++) {
    rnnc_net *net;
    if (compile(r, Ts[i], r->c->B, RNNC_GRAD, &net, &wall[i])) return -1;
    ms[i] = rnnc_compile_ms(net);
    rnnc_net_free(net);
  }
  put_header(f, r->c, r->o);
  fprintf(f, ", \"compile\": [");
  for (int i = 0; i < 3; i++)
    fprintf(f, "%s{\"T\": %ld, \"compile_ms\": %.1f, \"compile_wall_ms\": %.1f}", i ? ", " : "", Ts[i], ms[i],
            wall[i]);
  fprintf(f, "], \"peak_mib\": %.1f}\n", maxrss_mib());
  return 0;
}

/* Run configuration c in this process: its JSON line on stdout; 0 or -1
 * (then an error line). */
static int bench_one(const Config *c, const Opts *o) {
  Run r = {c, o, NULL, ""};
  char path[4096];
  char *buf = NULL;
  size_t len = 0;
  FILE *mem = open_memstream(&buf, &len);
  int rc = -1;
  double base = rss_mib();
  if (!mem) {
    snprintf(r.err, sizeof r.err, "open_memstream: %s", strerror(errno));
    goto out;
  }
  if (!(r.ctx = rnnc_open())) {
    snprintf(r.err, sizeof r.err, "rnnc_open: out of memory");
    goto out;
  }
  snprintf(path, sizeof path, "%s/%s", o->models, c->file);
  int st = rnnc_load_file(r.ctx, path);
  if (st != RNNC_OK) {
    fail(&r, path, st);
    goto out;
  }
  rc = c->kind == K_GEN ? bench_gen(&r, mem, base) : c->kind == K_COMPILE ? bench_compile(&r, mem)
                                                                         : bench_train(&r, mem, base);
out:
  if (mem) fclose(mem);
  if (rc == 0) {
    fputs(buf, stdout);
  } else {
    printf("{\"config\": ");
    json_str(stdout, c->key);
    printf(", \"engine\": \"rnnc\", \"error\": ");
    json_str(stdout, r.err);
    printf("}\n");
  }
  fflush(stdout);
  free(buf);
  rnnc_close(r.ctx);
  return rc;
}

/* bench_one in a child process; 0 when it succeeded. */
static int bench_child(const Config *c, const Opts *o) {
  fflush(stdout);
  pid_t pid = fork();
  if (pid < 0) {
    perror("rnnc_bench: fork");
    return -1;
  }
  if (pid == 0) exit(bench_one(c, o) ? 1 : 0); /* exit: LeakSanitizer runs at exit */
  int ws;
  while (waitpid(pid, &ws, 0) < 0)
    if (errno != EINTR) return -1;
  if (WIFEXITED(ws)) return WEXITSTATUS(ws) ? -1 : 0;
  printf("{\"config\": ");
  json_str(stdout, c->key);
  printf(", \"engine\": \"rnnc\", \"error\": \"killed by signal %d\"}\n", WIFSIGNALED(ws) ? WTERMSIG(ws) : 0);
  fflush(stdout);
  return -1;
}

static void usage(FILE *f) {
  fprintf(f, "usage: rnnc_bench [--threads N] [--configs C1,C2,...] [--quick] [--steps N] [--warmup N]\n"
             "                  [--min-time S] [--gen-steps N] [--models DIR] [--no-fork] [--no-validate]\n"
             "configurations:");
  for (size_t i = 0; i < sizeof configs / sizeof *configs; i++) fprintf(f, " %s", configs[i].key);
  fprintf(f, " (default: all); --quick: one tiny charlm, 3 steps\n"
             "prints one JSON line per configuration (bench/README.md)\n");
}

int main(int argc, char **argv) {
  Opts o = {2, 10, 2, 300, 1, 1, 1.0, RNNC_BENCH_MODELS};
  const char *list = NULL;
  int quick_run = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NUM(flag, field, conv)                \
  if (!strcmp(a, flag) && v) {                \
    o.field = conv(v);                        \
    i++;                                      \
    continue;                                 \
  }
    NUM("--threads", threads, atoi)
    NUM("--steps", steps, atoi)
    NUM("--warmup", warmup, atoi)
    NUM("--gen-steps", gen_steps, atoi)
    NUM("--min-time", min_time, atof)
#undef NUM
    if (!strcmp(a, "--models") && v) {
      o.models = v;
      i++;
    } else if (!strcmp(a, "--configs") && v) {
      list = v;
      i++;
    } else if (!strcmp(a, "--quick")) {
      quick_run = 1;
    } else if (!strcmp(a, "--no-fork")) {
      o.fork = 0;
    } else if (!strcmp(a, "--no-validate")) {
      o.validate = 0;
    } else if (!strcmp(a, "--help")) {
      usage(stdout);
      return 0;
    } else {
      usage(stderr);
      return 2;
    }
  }
  if (o.threads < 1 || o.steps < 1 || o.warmup < 0 || o.gen_steps < 1 || o.min_time < 0) {
    usage(stderr);
    return 2;
  }
  for (const char *p = list; p && *p; p += strcspn(p, ","), p += *p == ',') {
    size_t k = strcspn(p, ","), found = 0;
    for (size_t i = 0; i < sizeof configs / sizeof *configs; i++)
      found |= strlen(configs[i].key) == k && !strncmp(p, configs[i].key, k);
    if (!found) {
      fprintf(stderr, "rnnc_bench: unknown configuration '%.*s'\n", (int)k, p);
      usage(stderr);
      return 2;
    }
  }
  int failed = 0;
  if (quick_run) {
    o.steps = 3, o.warmup = 1, o.min_time = 0;
    return (o.fork ? bench_child(&quick, &o) : bench_one(&quick, &o)) ? 1 : 0;
  }
  for (size_t i = 0; i < sizeof configs / sizeof *configs; i++) {
    const Config *c = &configs[i];
    if (list) { /* c->key an element of the comma-separated list */
      size_t k = strlen(c->key);
      const char *p = list;
      int found = 0;
      for (; *p; p += strcspn(p, ","), p += *p == ',')
        if (!strncmp(p, c->key, k) && (p[k] == ',' || !p[k])) found = 1;
      if (!found) continue;
    }
    if (o.fork ? bench_child(c, &o) : bench_one(c, &o)) failed = 1;
  }
  return failed;
}
