/* test_aot.c — `rnnc compile` (compiler/aot.c, frontends/cli/cmd_compile.c)
 * and the runtime of compiled models (runtime/aot_rt.c, include/rnnc_aot.h),
 * against the JIT (include/rnnc.h) on the same parameters and inputs:
 *  - an object compiled for the host CPU (the default, --cpu native), linked
 *    into a shared library with cc and opened with dlopen, gives bitwise the
 *    JIT's outputs and carried states over several calls (forward program),
 *    the JIT's next-token model over 10 carried steps (step program), its
 *    gradients (rnnc_aot_backward vs rnnc_forward_backward) and, over 5
 *    training steps with Adam + clipping, SGD + momentum on a cosine schedule
 *    and AdamW with a frozen parameter on a step schedule, its losses,
 *    norms and parameters (rnnc_aot_train_step vs rnnc_train_step), for a
 *    two-layer LSTM, a GRU, a user cell run both ways, a bidirectional
 *    tagger, a masked classifier with final(), a last() classifier, an
 *    LSTM over features with given initial states and an encoder-decoder;
 *  - an object for the generic x86-64 target: within relative 1e-5 (the max
 *    relative difference per tensor, max|a - b| / max|b|, printed);
 *  - 1 and 2 threads: bitwise the same; two workspaces run at once from two
 *    threads; inputs and outputs in the workspace (io NULL); a bad token id;
 *  - nm: the object needs only SLEEF, libm/libc and OpenMP, and defines
 *    <prefix>_model; two models link into one library;
 *  - --emit asm / llvm and --header (compiles as C17 with -Werror);
 *  - a consumer program built with plain cc against the header and
 *    librnnc_rt.a prints the JIT's losses (%a);
 *  - the errors of rnnc compile: exact one-line messages, status 1.
 * Runs the built binary (RNNC_BINARY); the runtime is linked in from
 * rnnc_core. */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rnnc.h"
#include "rnnc_aot.h"
#include "testutil.h"

static void setup(void) { tmpdir_make("test-aot"); }
TestSuite(aot, .init = setup, .fini = tmpdir_remove);

/* ---- the models ------------------------------------------------------------ */

typedef struct Case {
  const char *file, *model;
  int ndim;
  rnnc_dim dim[3];   /* header dims bound (the rest take their defaults) */
  int T, B;
  const char *mask;  /* the f32 [T, B] mask input, or NULL */
  int lm;            /* a language model: the step program is its next-token model */
} Case;

static const Case charlm = {"examples/charlm.rnn", "charlm", 3, {{"V", 24}, {"E", 8}, {"H", 16}}, 6, 3, NULL, 1};
static const Case gru_lm = {"examples/charlm_gru.rnn", "charlm_gru", 3, {{"V", 20}, {"E", 8}, {"H", 24}}, 7, 2,
                            NULL, 1};
static const Case mgu = {"examples/mgu.rnn", "mgu_tagger", 0, {{0}}, 5, 2, NULL, 0};
static const Case bilstm = {"examples/bilstm_tagger.rnn", "bilstm_tagger", 3, {{"V", 30}, {"E", 8}, {"H", 16}}, 6, 3,
                            "m", 0};
static const Case textcls = {"examples/text_classifier.rnn", "text_classifier", 3, {{"V", 25}, {"E", 8}, {"H", 16}},
                             8, 3, "m", 0};
static const Case grucls = {"examples/gru_classifier.rnn", "gru_classifier", 2, {{"E", 8}, {"H", 16}}, 5, 2, NULL, 0};
static const Case feats = {"examples/features_lstm.rnn", "features_lstm", 0, {{0}}, 5, 2, NULL, 0};
static const Case s2s = {"examples/seq2seq.rnn", "seq2seq", 3, {{"S", 5}, {"E", 8}, {"H", 16}}, 4, 2, NULL, 0};

/* ---- random values (xorshift64) --------------------------------------------- */

static uint64_t rnd(uint64_t *s)
{
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}
/* Uniform in [-a, a). */
static float unif(uint64_t *s, float a)
{
  return a * (2.0f * (float)(rnd(s) >> 40) / 16777216.0f - 1.0f);
}

static void *zalloc64(size_t bytes)
{
  size_t n = (bytes + 63) / 64 * 64;
  void *p = aligned_alloc(64, n ? n : 64);
  cr_assert(p);
  memset(p, 0, n ? n : 64);
  return p;
}

/* ---- building an object ----------------------------------------------------- */

/* " --dim V=24 --dim E=8 ..." of c. */
static const char *dim_args(const Case *c)
{
  static char buf[256];
  char *p = buf;
  *p = 0;
  for (int i = 0; i < c->ndim; i++)
    p += sprintf(p, " --dim %s=%ld", c->dim[i].name, c->dim[i].value);
  return buf;
}

/* rnnc compile c's model -o TMP/<prefix>.o --prefix <prefix> (B, T, dims of
 * c, then extra); the test fails unless it exits 0. */
static void obj_compile(const Case *c, const char *prefix, const char *extra)
{
  char oname[96], *out;
  snprintf(oname, sizeof oname, "%s.o", prefix);
  int st = rnnc_cmd(&out, "compile '%s' -o '%s' --prefix %s --batch %d --seq %d%s %s", srcpath(c->file),
                    tmp_path(oname), prefix, c->B, c->T, dim_args(c), extra);
  cr_assert_eq(st, 0, "rnnc compile %s %s: status %d:\n%s", c->file, extra, st, out);
  free(out);
}

/* TMP/<prefix>.o linked into TMP/<prefix>.so with cc, opened; its descriptor
 * <prefix>_model (checked: ABI, programs' B and T). *so: the handle. */
static const rnnc_aot_model *obj_open(const Case *c, const char *prefix, void **so)
{
  char oname[96], soname[96], cmd[1024], *out;
  snprintf(oname, sizeof oname, "%s.o", prefix);
  snprintf(soname, sizeof soname, "%s.so", prefix);
  snprintf(cmd, sizeof cmd, "cc -shared -o '%s' '%s' -lsleef -lm -fopenmp", tmp_path(soname), tmp_path(oname));
  int st = run_cmd(cmd, &out);
  cr_assert_eq(st, 0, "%s: status %d:\n%s", cmd, st, out);
  free(out);
  *so = dlopen(tmp_path(soname), RTLD_NOW | RTLD_LOCAL);
  cr_assert(*so, "dlopen: %s", dlerror());
  char sym[96];
  snprintf(sym, sizeof sym, "%s_model", prefix);
  const rnnc_aot_model *m = dlsym(*so, sym);
  cr_assert(m, "no symbol %s: %s", sym, dlerror());
  cr_assert_eq(m->abi, RNNC_AOT_ABI);
  cr_assert_str_eq(m->name, c->model);
  const rnnc_aot_prog *f = m->prog[RNNC_AOT_FORWARD];
  cr_assert(f, "no forward program");
  cr_assert_str_eq(f->name, "forward");
  cr_assert(f->B == c->B && f->T == c->T, "forward B %ld T %ld, want %d %d", (long)f->B, (long)f->T, c->B, c->T);
  if (m->prog[RNNC_AOT_TRAIN]) {
    const rnnc_aot_prog *t = m->prog[RNNC_AOT_TRAIN];
    cr_assert_str_eq(t->name, "train");
    cr_assert(t->B == c->B && t->T == c->T && t->loss >= 0 && t->loss < t->ntensor && t->nbop > 0);
    cr_assert(m->opt_sumsq && m->opt_sgd && m->opt_adam, "a training object without the optimizer's kernels");
  }
  if (m->prog[RNNC_AOT_STEP]) {
    cr_assert_str_eq(m->prog[RNNC_AOT_STEP]->name, "step");
    cr_assert(m->prog[RNNC_AOT_STEP]->T == 1 && m->prog[RNNC_AOT_STEP]->carry == 1);
  }
  return m;
}

static const rnnc_aot_model *obj_build(const Case *c, const char *prefix, const char *extra, void **so)
{
  obj_compile(c, prefix, extra);
  return obj_open(c, prefix, so);
}

/* ---- the JIT ---------------------------------------------------------------- */

static rnnc_ctx *jit_open(const Case *c)
{
  rnnc_ctx *ctx = rnnc_open();
  cr_assert(ctx);
  cr_assert_eq(rnnc_load_file(ctx, srcpath(c->file)), RNNC_OK, "%s", rnnc_errmsg(ctx));
  return ctx;
}

/* model of ctx compiled for T, B and c's dims, with flags. */
static rnnc_net *jit_net(rnnc_ctx *ctx, const Case *c, const char *model, int T, int B, int flags)
{
  rnnc_dim d[5];
  int n = 0;
  for (int i = 0; i < c->ndim; i++)
    d[n++] = c->dim[i];
  d[n++] = (rnnc_dim){"T", T};
  d[n++] = (rnnc_dim){"B", B};
  rnnc_net *net;
  cr_assert_eq(rnnc_compile(ctx, model, n, d, flags, &net), RNNC_OK, "%s", rnnc_errmsg(ctx));
  return net;
}

/* ---- parameters ------------------------------------------------------------- */

/* m's parameter buffer: every parameter uniform in [-0.4, 0.4) from seed at
 * its offset, the padding zero; the table checked (offsets aligned, in range,
 * not overlapping in order). */
static float *make_params(const rnnc_aot_model *m, uint64_t seed)
{
  cr_assert(m->nparam > 0 && m->param_floats > 0);
  float *p = zalloc64((size_t)m->param_floats * sizeof(float));
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  int64_t end = 0;
  for (int64_t i = 0; i < m->nparam; i++) {
    const rnnc_aot_param *q = &m->param[i];
    int64_t n = 1;
    for (int k = 0; k < q->rank; k++)
      n *= q->dim[k];
    cr_assert(q->rank >= 1 && q->rank <= 4 && n == q->numel, "parameter '%s': rank %ld numel %ld", q->name,
              (long)q->rank, (long)q->numel);
    cr_assert(q->offset % 16 == 0 && q->offset >= end && q->offset + q->numel <= m->param_floats,
              "parameter '%s' at %ld (+%ld) of %ld floats", q->name, (long)q->offset, (long)q->numel,
              (long)m->param_floats);
    end = q->offset + q->numel;
    for (int64_t e = 0; e < q->numel; e++)
      p[q->offset + e] = unif(&s, 0.4f);
  }
  return p;
}

/* The number of parameters of net (its CT_PARAM tensors). */
static int jit_nparam(rnnc_net *net)
{
  int n = 0;
  for (int i = 0; i < cmodel_ntensor(net->cm); i++)
    n += cmodel_tensor(net->cm, i)->role == CT_PARAM;
  return n;
}

/* net's parameters set from m's buffer params: the same names and shapes. */
static void set_params(rnnc_net *net, const rnnc_aot_model *m, const float *params)
{
  cr_assert_eq(jit_nparam(net), m->nparam, "the JIT has %d parameters, the object %ld", jit_nparam(net),
               (long)m->nparam);
  for (int64_t i = 0; i < m->nparam; i++) {
    const rnnc_aot_param *q = &m->param[i];
    int dtype, rank;
    int64_t dim[4];
    cr_assert_eq(rnnc_tensor_shape(net, q->name, &dtype, &rank, dim), RNNC_OK, "JIT: %s", rnnc_errmsg(net->ctx));
    cr_assert(dtype == RNNC_F32 && rank == q->rank, "'%s': rank %d vs %ld", q->name, rank, (long)q->rank);
    for (int k = 0; k < rank; k++)
      cr_assert_eq(dim[k], q->dim[k], "'%s' dim %d: %ld vs %ld", q->name, k, (long)dim[k], (long)q->dim[k]);
    cr_assert_eq(rnnc_set(net, q->name, params + q->offset, (size_t)q->numel * sizeof(float)), RNNC_OK, "%s",
                 rnnc_errmsg(net->ctx));
  }
}

/* ---- a program's io ----------------------------------------------------------- */

enum { MAXIO = 32 };
typedef struct Io {
  const rnnc_aot_prog *p;
  void *io[MAXIO];     /* the program's io array: inputs, then outputs */
} Io;

/* Buffers for every input and output of p, zeroed; io checked: each tensor
 * with io >= 0 is an INPUT or OUTPUT, the indices a permutation of [0, nio)
 * with the inputs first. */
static void io_alloc(Io *x, const rnnc_aot_prog *p)
{
  memset(x, 0, sizeof *x);
  x->p = p;
  cr_assert(p->nio > 0 && p->nio <= MAXIO);
  int64_t ninput = 0;
  for (int64_t k = 0; k < p->ntensor; k++)
    ninput += p->tensor[k].role == RNNC_AOT_INPUT;
  for (int64_t k = 0; k < p->ntensor; k++) {
    const rnnc_aot_tensor *t = &p->tensor[k];
    int isio = t->role == RNNC_AOT_INPUT || t->role == RNNC_AOT_OUTPUT;
    cr_assert_eq(isio, t->io >= 0, "program '%s' tensor '%s': role %ld, io %ld", p->name, t->name, (long)t->role,
                 (long)t->io);
    if (!isio)
      continue;
    cr_assert(t->io < p->nio && !x->io[t->io], "program '%s': io index %ld of '%s'", p->name, (long)t->io, t->name);
    cr_assert_eq(t->role == RNNC_AOT_INPUT, t->io < ninput, "'%s': inputs come first", t->name);
    x->io[t->io] = zalloc64((size_t)(t->numel ? t->numel : 1) * 4);
  }
  for (int64_t i = 0; i < p->nio; i++)
    cr_assert(x->io[i], "program '%s': io index %ld has no tensor", p->name, (long)i);
}

static void io_free(Io *x)
{
  for (int i = 0; i < MAXIO; i++)
    free(x->io[i]);
}

/* Fresh inputs from seed into x and the same into net (by name): token ids
 * and targets in [0, bound) of their check (now and then a target's ignore
 * index), c's mask with row b's last (b * 3) % T steps padding (all ones
 * at T = 1), other floats uniform in [-1, 1). */
static void io_fill(Io *x, const Case *c, rnnc_net *net, uint64_t seed)
{
  const rnnc_aot_prog *p = x->p;
  uint64_t s = seed * 0x2545F4914F6CDD1Dull + 7;
  for (int64_t k = 0; k < p->ntensor; k++) {
    const rnnc_aot_tensor *t = &p->tensor[k];
    if (t->role != RNNC_AOT_INPUT)
      continue;
    void *buf = x->io[t->io];
    if (t->dtype == RNNC_I32) {
      const rnnc_aot_check *ck = NULL;
      for (int64_t j = 0; j < p->ncheck; j++)
        if (p->check[j].tensor == k)
          ck = &p->check[j];
      cr_assert(ck, "program '%s': i32 input '%s' has no check", p->name, t->name);
      cr_assert(ck->bound > 0);
      int32_t *v = buf;
      for (int64_t e = 0; e < t->numel; e++) {
        v[e] = (int32_t)(rnd(&s) % (uint64_t)ck->bound);
        if (ck->target && ck->hasignore && e > 0 && rnd(&s) % 4 == 0)
          v[e] = (int32_t)ck->ignore;
      }
    } else {
      cr_assert_eq(t->dtype, RNNC_F32);
      float *v = buf;
      if (c->mask && strcmp(t->name, c->mask) == 0) {
        cr_assert(t->rank == 2 && t->dim[0] == p->T && t->dim[1] == p->B);
        for (int64_t tt = 0; tt < p->T; tt++)
          for (int64_t b = 0; b < p->B; b++)
            v[tt * p->B + b] = tt < p->T - (b * 3) % p->T ? 1.0f : 0.0f;
      } else
        for (int64_t e = 0; e < t->numel; e++)
          v[e] = unif(&s, 1.0f);
    }
    if (net)
      cr_assert_eq(rnnc_set(net, t->name, buf, (size_t)t->numel * 4), RNNC_OK, "JIT: %s", rnnc_errmsg(net->ctx));
  }
}

/* ---- comparing ---------------------------------------------------------------- */

static double worst; /* the largest relative difference of a test so far */

/* a (AOT) against b (JIT), n floats: bitwise when exact (the first
 * difference reported), else returned: max|a - b| / max|b|. */
static double cmp_floats(const char *what, const char *name, const float *a, const float *b, int64_t n, int exact)
{
  cr_assert(a && b, "%s: '%s' missing (%s)", what, name, a ? "JIT" : "AOT");
  double maxd = 0, maxb = 0;
  int64_t first = -1;
  for (int64_t e = 0; e < n; e++) {
    if (memcmp(&a[e], &b[e], sizeof(float)) != 0 && first < 0)
      first = e;
    double d = fabs((double)a[e] - (double)b[e]);
    if (isnan(a[e]) != isnan(b[e]) || isinf(a[e]) != isinf(b[e]))
      d = INFINITY;
    if (d > maxd)
      maxd = d;
    if (fabs((double)b[e]) > maxb)
      maxb = fabs((double)b[e]);
  }
  double rel = maxd / (maxb > 0 ? maxb : 1);
  if (exact)
    cr_assert(first < 0, "%s: '%s' differs at [%ld] of %ld: %a (AOT) vs %a (JIT); max relative difference %g", what,
              name, (long)first, (long)n, (double)a[first < 0 ? 0 : first], (double)b[first < 0 ? 0 : first], rel);
  if (rel > worst)
    worst = rel;
  return rel;
}

/* Every output of x (and carried state of ws) against net's. */
static double cmp_outputs(const rnnc_aot_model *m, const Io *x, void *ws, rnnc_net *net, int exact, const char *what)
{
  const rnnc_aot_prog *p = x->p;
  double rel = 0;
  int nout = 0;
  for (int64_t k = 0; k < p->ntensor; k++) {
    const rnnc_aot_tensor *t = &p->tensor[k];
    const float *a;
    if (t->role == RNNC_AOT_OUTPUT)
      a = x->io[t->io];
    else if (t->role == RNNC_AOT_STATE)
      a = rnnc_aot_area(m, ws, t->name);
    else
      continue;
    cr_assert_eq(t->dtype, RNNC_F32);
    const float *b = rnnc_data(net, t->name);
    cr_assert(b, "JIT has no '%s': %s", t->name, rnnc_errmsg(net->ctx));
    for (int64_t e = 0; e < t->numel; e++)
      cr_assert(isfinite(b[e]), "%s: JIT's '%s'[%ld] is %g", what, t->name, (long)e, b[e]);
    double r = cmp_floats(what, t->name, a, b, t->numel, exact);
    rel = r > rel ? r : rel;
    nout += t->role == RNNC_AOT_OUTPUT;
  }
  cr_assert(nout > 0, "program '%s' has no output", p->name);
  return rel;
}

/* A workspace of program prog for nthreads. */
static void *ws_new(const rnnc_aot_model *m, int prog, int nthreads)
{
  size_t bytes = rnnc_aot_ws_bytes(m, prog, nthreads);
  cr_assert(bytes > 0, "no workspace size for program %d", prog);
  void *ws = zalloc64(bytes);
  cr_assert_eq(rnnc_aot_init(m, prog, ws, bytes, nthreads), RNNC_OK, "rnnc_aot_init: %s", rnnc_aot_message(NULL));
  return ws;
}

/* ncall runs of program prog (AOT, nthreads) and of net on the same inputs
 * (fresh each call, from seed); outputs and carried states compared after
 * each. Returns the largest relative difference. */
static double run_vs_jit(const rnnc_aot_model *m, int prog, const float *params, rnnc_net *net, const Case *c,
                         int ncall, int nthreads, int exact, uint64_t seed)
{
  const rnnc_aot_prog *p = m->prog[prog];
  cr_assert(p, "no program %d", prog);
  void *ws = ws_new(m, prog, nthreads);
  Io x;
  io_alloc(&x, p);
  double rel = 0;
  for (int k = 0; k < ncall; k++) {
    io_fill(&x, c, net, seed + (uint64_t)k);
    cr_assert_eq(rnnc_aot_run(m, prog, ws, params, x.io), RNNC_OK, "rnnc_aot_run: %s", rnnc_aot_message(ws));
    cr_assert_eq(rnnc_forward(net), RNNC_OK, "rnnc_forward: %s", rnnc_errmsg(net->ctx));
    char what[96];
    snprintf(what, sizeof what, "%s %s call %d", m->name, p->name, k);
    double r = cmp_outputs(m, &x, ws, net, exact, what);
    rel = r > rel ? r : rel;
  }
  io_free(&x);
  free(ws);
  return rel;
}

/* "grad.<name>" */
static const char *gradname(const char *name)
{
  static char buf[4][160];
  static int k;
  char *p = buf[k++ & 3];
  snprintf(p, sizeof buf[0], "grad.%s", name);
  return p;
}

/* ncall rnnc_aot_backward of the training program against
 * rnnc_forward_backward of net (RNNC_GRAD, and RNNC_CARRY when the program
 * carries): outputs, states, every parameter's gradient and every float
 * input's. Returns the largest relative difference. */
static double grads_vs_jit(const rnnc_aot_model *m, const float *params, rnnc_net *net, const Case *c, int ncall,
                           int nthreads, int exact, uint64_t seed)
{
  const rnnc_aot_prog *p = m->prog[RNNC_AOT_TRAIN];
  cr_assert(p, "no training program");
  void *ws = ws_new(m, RNNC_AOT_TRAIN, nthreads);
  Io x;
  io_alloc(&x, p);
  double rel = 0;
  for (int k = 0; k < ncall; k++) {
    io_fill(&x, c, net, seed + (uint64_t)k);
    cr_assert_eq(rnnc_aot_backward(m, ws, params, x.io), RNNC_OK, "rnnc_aot_backward: %s", rnnc_aot_message(ws));
    cr_assert_eq(rnnc_forward_backward(net), RNNC_OK, "%s", rnnc_errmsg(net->ctx));
    char what[96];
    snprintf(what, sizeof what, "%s backward call %d", m->name, k);
    double r = cmp_outputs(m, &x, ws, net, exact, what);
    rel = r > rel ? r : rel;
    const float *g = rnnc_aot_grads(m, ws);
    cr_assert(g, "rnnc_aot_grads is NULL on a training workspace");
    for (int64_t i = 0; i < m->nparam; i++) {
      const rnnc_aot_param *q = &m->param[i];
      const float *b = rnnc_data(net, gradname(q->name));
      cr_assert(b, "%s", rnnc_errmsg(net->ctx));
      r = cmp_floats(what, gradname(q->name), g + q->offset, b, q->numel, exact);
      rel = r > rel ? r : rel;
    }
    int ngrad = 0;
    for (int64_t t = 0; t < p->ntensor; t++) {
      const rnnc_aot_tensor *tt = &p->tensor[t];
      if (tt->role != RNNC_AOT_GRAD)
        continue;
      ngrad++;
      if (tt->param >= 0) {
        cr_assert(tt->param < m->nparam);
        cr_assert_str_eq(tt->name, gradname(m->param[tt->param].name));
        continue;
      }
      const float *a = rnnc_aot_area(m, ws, tt->name), *b = rnnc_data(net, tt->name);
      cr_assert(b, "%s", rnnc_errmsg(net->ctx));
      r = cmp_floats(what, tt->name, a, b, tt->numel, exact);
      rel = r > rel ? r : rel;
    }
    cr_assert(ngrad >= m->nparam, "training program has %d gradients for %ld parameters", ngrad, (long)m->nparam);
  }
  io_free(&x);
  free(ws);
  return rel;
}

/* nstep training steps with config cfg (frozen: a parameter left as it is,
 * or NULL) from params0: rnnc_aot_train_step
 * (nthreads) against rnnc_train_step on net (RNNC_GRAD [| RNNC_CARRY], its
 * parameters set from params0 here): losses, norms and parameters after every
 * step. When net is NULL, the same with 1 and 2 threads of the object. */
static double train_vs_jit(const rnnc_aot_model *m, const float *params0, rnnc_net *net, const Case *c,
                           const rnnc_optim_config *cfg, const char *frozen, int nstep, int exact, uint64_t seed)
{
  const rnnc_aot_prog *p = m->prog[RNNC_AOT_TRAIN];
  cr_assert(p, "no training program");
  size_t pbytes = (size_t)m->param_floats * sizeof(float);
  size_t of = rnnc_aot_opt_floats(m);
  cr_assert_eq(of, 2 * (size_t)m->param_floats);
  float *w[2], *opt[2];
  void *ws[2];
  for (int k = 0; k < 2; k++) {
    w[k] = zalloc64(pbytes);
    memcpy(w[k], params0, pbytes);
    opt[k] = zalloc64(of * sizeof(float));
    ws[k] = ws_new(m, RNNC_AOT_TRAIN, net ? 2 : k + 1);
    cr_assert_eq(rnnc_aot_train_init(m, ws[k], cfg, frozen != NULL, &frozen), RNNC_OK, "rnnc_aot_train_init: %s",
                 rnnc_aot_message(ws[k]));
  }
  rnnc_optim *o = NULL;
  if (net) {
    set_params(net, m, params0);
    cr_assert_eq(rnnc_optim_new(net, cfg, frozen != NULL, &frozen, &o), RNNC_OK, "%s", rnnc_errmsg(net->ctx));
  }
  Io x;
  io_alloc(&x, p);
  double rel = 0;
  for (int s = 0; s < nstep; s++) {
    io_fill(&x, c, net, seed + (uint64_t)s);
    float loss[2];
    double gnorm[2];
    for (int k = 0; k < (net ? 1 : 2); k++)
      cr_assert_eq(rnnc_aot_train_step(m, ws[k], w[k], opt[k], s, x.io, &loss[k], &gnorm[k]), RNNC_OK,
                   "rnnc_aot_train_step: %s", rnnc_aot_message(ws[k]));
    char what[96];
    snprintf(what, sizeof what, "%s train step %d", m->name, s);
    if (net) {
      cr_assert_eq(rnnc_train_step(o, &loss[1], &gnorm[1]), RNNC_OK, "%s", rnnc_errmsg(net->ctx));
      for (int64_t i = 0; i < m->nparam; i++) {
        const rnnc_aot_param *q = &m->param[i];
        double r = cmp_floats(what, q->name, w[0] + q->offset, rnnc_data(net, q->name), q->numel, exact);
        rel = r > rel ? r : rel;
      }
    } else {
      cr_assert_eq(memcmp(w[0], w[1], pbytes), 0, "%s: parameters differ with 1 and 2 threads", what);
      cr_assert_eq(memcmp(opt[0], opt[1], of * sizeof(float)), 0, "%s: optimizer state differs", what);
    }
    double r = cmp_floats(what, "loss", &loss[0], &loss[1], 1, exact);
    rel = r > rel ? r : rel;
    if (exact)
      cr_assert(memcmp(&gnorm[0], &gnorm[1], sizeof(double)) == 0, "%s: gradient norm %a (AOT) vs %a", what,
                gnorm[0], gnorm[1]);
    else
      cr_assert(fabs(gnorm[0] - gnorm[1]) <= 1e-5 * fabs(gnorm[1]), "%s: gradient norm %g vs %g", what, gnorm[0],
                gnorm[1]);
  }
  for (int64_t i = 0; frozen && i < m->nparam; i++)
    if (strcmp(m->param[i].name, frozen) == 0)
      cr_assert_eq(memcmp(w[0] + m->param[i].offset, params0 + m->param[i].offset,
                          (size_t)m->param[i].numel * sizeof(float)),
                   0, "frozen '%s' changed", frozen);
  io_free(&x);
  rnnc_optim_free(o);
  for (int k = 0; k < 2; k++) {
    free(w[k]);
    free(opt[k]);
    free(ws[k]);
  }
  return rel;
}

static void adam_cfg(rnnc_optim_config *c)
{
  rnnc_optim_defaults(c, RNNC_ADAM);
  c->lr = 1e-2;
  c->clip_norm = 0.5; /* small: the clipping acts */
  c->clip_value = 0.2;
  c->weight_decay = 1e-3;
}

static void sgd_cfg(rnnc_optim_config *c)
{
  rnnc_optim_defaults(c, RNNC_SGD);
  c->lr = 0.3;
  c->momentum = 0.9;
  c->clip_norm = 1.0;
  c->schedule = RNNC_LR_COSINE;
  c->warmup = 2;
  c->total = 5;
  c->min_lr = 0.01;
}

/* ---- the host CPU: bitwise the JIT ------------------------------------------------ */

/* Compile c for the host with --train, then: forward (3 calls, carried when
 * the program carries: exactly when every cell runs forward in time), the
 * step program over 10 steps (a language model's: its next-token model; else
 * the model at T = 1 with carry; none when a cell runs backward in time), the
 * gradients (2 calls) and 5 training steps with Adam (and when sgd, with SGD
 * and with AdamW with a frozen parameter), each bitwise the JIT's. */
static void native_vs_jit(const Case *c, const char *prefix, int carries, int sgd)
{
  void *so;
  const rnnc_aot_model *m = obj_build(c, prefix, "--train", &so);
  float *params = make_params(m, 11);
  rnnc_ctx *ctx = jit_open(c);
  const rnnc_aot_prog *f = m->prog[RNNC_AOT_FORWARD], *st = m->prog[RNNC_AOT_STEP];
  cr_assert_eq(f->carry, carries, "%s: forward carry %ld, want %d", c->model, (long)f->carry, carries);
  cr_assert_eq(m->prog[RNNC_AOT_TRAIN]->carry, carries);
  cr_assert_eq(st != NULL, carries, "%s: a step program %s", c->model, st ? "with a backward cell" : "missing");
  int carry = carries ? RNNC_CARRY : 0;

  rnnc_net *net = jit_net(ctx, c, c->model, c->T, c->B, carry);
  set_params(net, m, params);
  run_vs_jit(m, RNNC_AOT_FORWARD, params, net, c, 3, 2, 1, 100);
  rnnc_net_free(net);

  if (st) {
    const char *model = c->model;
    char gname[96];
    if (c->lm) { /* the generator adds <model>_gen, its next-token model, to ctx */
      rnnc_generator *g;
      cr_assert_eq(rnnc_generator_new(ctx, c->model, c->ndim, c->dim, 1, &g), RNNC_OK, "%s", rnnc_errmsg(ctx));
      rnnc_generator_free(g);
      snprintf(gname, sizeof gname, "%s_gen", c->model);
      model = gname;
    }
    net = jit_net(ctx, c, model, 1, (int)st->B, RNNC_CARRY);
    set_params(net, m, params);
    run_vs_jit(m, RNNC_AOT_STEP, params, net, c, 10, 2, 1, 200);
    rnnc_net_free(net);
  }

  /* one training net for the gradients and the training runs, its carried
   * states zeroed before each (the object's start from a fresh workspace) */
  net = jit_net(ctx, c, c->model, c->T, c->B, RNNC_GRAD | carry);
  set_params(net, m, params);
  grads_vs_jit(m, params, net, c, 2, 2, 1, 300);
  rnnc_optim_config cfg;
  adam_cfg(&cfg);
  if (carry)
    cr_assert_eq(rnnc_reset_state(net), RNNC_OK);
  train_vs_jit(m, params, net, c, &cfg, NULL, 5, 1, 400);
  if (sgd) {
    sgd_cfg(&cfg);
    if (carry)
      cr_assert_eq(rnnc_reset_state(net), RNNC_OK);
    train_vs_jit(m, params, net, c, &cfg, NULL, 5, 1, 500);
    /* AdamW on a step schedule, the first parameter frozen */
    rnnc_optim_defaults(&cfg, RNNC_ADAMW);
    cfg.lr = 2e-2;
    cfg.schedule = RNNC_LR_STEP;
    cfg.step_size = 2;
    cfg.gamma = 0.5;
    if (carry)
      cr_assert_eq(rnnc_reset_state(net), RNNC_OK);
    train_vs_jit(m, params, net, c, &cfg, m->param[0].name, 5, 1, 550);
  }
  rnnc_net_free(net);
  rnnc_close(ctx);
  free(params);
  dlclose(so);
}

/* A two-layer LSTM language model: the forward program carries its states,
 * the step program is the next-token model; Adam, SGD and AdamW. */
Test(aot, charlm_native_bitwise_jit)
{
  native_vs_jit(&charlm, "lm", 1, 1);
}

Test(aot, gru_lm_native_bitwise_jit)
{
  native_vs_jit(&gru_lm, "glm", 1, 0);
}

/* A user cell run in both directions: nothing carried, no step program. */
Test(aot, mgu_tagger_native_bitwise_jit)
{
  native_vs_jit(&mgu, "mgu", 0, 1);
}

Test(aot, bilstm_tagger_native_bitwise_jit)
{
  native_vs_jit(&bilstm, "bi", 0, 0);
}

/* A masked LSTM, final() classified, two outputs (loss, probabilities). */
Test(aot, text_classifier_native_bitwise_jit)
{
  native_vs_jit(&textcls, "tc", 1, 0);
}

Test(aot, gru_classifier_native_bitwise_jit)
{
  native_vs_jit(&grucls, "gc", 1, 0);
}

/* Float features, initial states as inputs: their gradients too. */
Test(aot, features_lstm_native_bitwise_jit)
{
  native_vs_jit(&feats, "fl", 1, 1);
}

/* An encoder over S steps whose final states start the decoder over T. */
Test(aot, seq2seq_native_bitwise_jit)
{
  native_vs_jit(&s2s, "s2s", 1, 0);
}

/* ---- the generic x86-64 target: within relative 1e-5 ----------------------------- */

static void generic_vs_jit(const Case *c, const char *prefix)
{
  void *so;
  const rnnc_aot_model *m = obj_build(c, prefix, "--train --cpu x86-64", &so);
  cr_assert(strstr(m->cpu, "x86-64"), "compiled for '%s'", m->cpu);
  float *params = make_params(m, 21);
  rnnc_ctx *ctx = jit_open(c);
  int carry = m->prog[RNNC_AOT_FORWARD]->carry ? RNNC_CARRY : 0;
  rnnc_net *net = jit_net(ctx, c, c->model, c->T, c->B, carry);
  set_params(net, m, params);
  double rf = run_vs_jit(m, RNNC_AOT_FORWARD, params, net, c, 2, 2, 0, 600);
  rnnc_net_free(net);
  net = jit_net(ctx, c, c->model, c->T, c->B, RNNC_GRAD | carry);
  set_params(net, m, params);
  double rg = grads_vs_jit(m, params, net, c, 1, 2, 0, 700);
  rnnc_net_free(net);
  rnnc_optim_config cfg;
  adam_cfg(&cfg);
  cfg.lr = 1e-3;
  net = jit_net(ctx, c, c->model, c->T, c->B, RNNC_GRAD | carry);
  double rt = train_vs_jit(m, params, net, c, &cfg, NULL, 5, 0, 800);
  rnnc_net_free(net);
  fprintf(stderr, "test_aot: %s --cpu x86-64 vs the JIT: max relative difference forward %.3g, gradients %.3g, "
                  "5 Adam steps %.3g\n", c->model, rf, rg, rt);
  cr_assert(rf <= 1e-5 && rg <= 1e-5 && rt <= 1e-5, "%s --cpu x86-64: relative differences %g %g %g > 1e-5",
            c->model, rf, rg, rt);
  rnnc_close(ctx);
  free(params);
  dlclose(so);
}

Test(aot, generic_x86_64_charlm_within_1e5)
{
  generic_vs_jit(&charlm, "gen");
}

Test(aot, generic_x86_64_features_within_1e5)
{
  generic_vs_jit(&feats, "genf");
}

/* ---- threads ------------------------------------------------------------------------ */

/* Two workspaces of one program run at once from two threads (each with a
 * team of 2): each gives what it gives alone. */
typedef struct Job {
  const rnnc_aot_model *m;
  void *ws;
  const float *params;
  Io x;
  int st;
} Job;

static void *job_run(void *arg)
{
  Job *j = arg;
  for (int k = 0; k < 4 && j->st == RNNC_OK; k++)
    j->st = rnnc_aot_run(j->m, RNNC_AOT_FORWARD, j->ws, j->params, j->x.io);
  return NULL;
}

static void two_workspaces_at_once(const rnnc_aot_model *m, const float *params)
{
  Job j[2];
  float want[2];
  for (int k = 0; k < 2; k++) { /* alone: 4 carried calls */
    j[k] = (Job){m, ws_new(m, RNNC_AOT_FORWARD, 2), params, {0}, RNNC_OK};
    io_alloc(&j[k].x, m->prog[RNNC_AOT_FORWARD]);
    io_fill(&j[k].x, &charlm, NULL, 990 + (uint64_t)k);
    job_run(&j[k]);
    cr_assert_eq(j[k].st, RNNC_OK, "%s", rnnc_aot_message(j[k].ws));
    const rnnc_aot_prog *p = m->prog[RNNC_AOT_FORWARD];
    for (int64_t t = 0; t < p->ntensor; t++)
      if (strcmp(p->tensor[t].name, "loss") == 0)
        want[k] = *(float *)j[k].x.io[p->tensor[t].io];
    rnnc_aot_reset(m, j[k].ws); /* from zero states again */
  }
  cr_assert(memcmp(&want[0], &want[1], 4) != 0, "two inputs, two losses");
  pthread_t th[2];
  for (int k = 0; k < 2; k++)
    cr_assert_eq(pthread_create(&th[k], NULL, job_run, &j[k]), 0);
  for (int k = 0; k < 2; k++)
    cr_assert_eq(pthread_join(th[k], NULL), 0);
  const rnnc_aot_prog *p = m->prog[RNNC_AOT_FORWARD];
  for (int k = 0; k < 2; k++) {
    cr_assert_eq(j[k].st, RNNC_OK, "%s", rnnc_aot_message(j[k].ws));
    for (int64_t t = 0; t < p->ntensor; t++)
      if (strcmp(p->tensor[t].name, "loss") == 0)
        cr_assert(memcmp(j[k].x.io[p->tensor[t].io], &want[k], 4) == 0, "workspace %d: loss %a at once, %a alone",
                  k, (double)*(float *)j[k].x.io[p->tensor[t].io], (double)want[k]);
    io_free(&j[k].x);
    free(j[k].ws);
  }
}

/* The forward and step programs, the gradients and 3 training steps of one
 * object on 1 thread and on 2: bitwise the same; two workspaces at once. */
Test(aot, one_and_two_threads_bitwise)
{
  void *so;
  const rnnc_aot_model *m = obj_build(&charlm, "thr", "--train --step-batch 2", &so);
  cr_assert_eq(m->prog[RNNC_AOT_STEP]->B, 2, "--step-batch 2");
  float *params = make_params(m, 31);
  for (int prog = RNNC_AOT_FORWARD; prog <= RNNC_AOT_TRAIN; prog++) {
    const rnnc_aot_prog *p = m->prog[prog];
    int split = 0; /* calls whose range 2 threads share: else the test shows nothing */
    for (int64_t i = 0; i < p->nop + p->nbop; i++) {
      const rnnc_plan_op *op = i < p->nop ? &p->op[i] : &p->bop[i - p->nop];
      split += op->kind == RNNC_PLAN_CALL && op->n > op->grain;
    }
    cr_assert(split > 0, "program '%s': no call splits over 2 threads", p->name);
    void *ws[2] = {ws_new(m, prog, 1), ws_new(m, prog, 2)};
    cr_assert(rnnc_aot_ws_bytes(m, prog, 2) >= rnnc_aot_ws_bytes(m, prog, 1));
    Io x[2];
    for (int k = 0; k < 2; k++)
      io_alloc(&x[k], p);
    for (int call = 0; call < 3; call++) {
      for (int k = 0; k < 2; k++) {
        io_fill(&x[k], &charlm, NULL, 900 + (uint64_t)call);
        int st = prog == RNNC_AOT_TRAIN ? rnnc_aot_backward(m, ws[k], params, x[k].io)
                                        : rnnc_aot_run(m, prog, ws[k], params, x[k].io);
        cr_assert_eq(st, RNNC_OK, "%s", rnnc_aot_message(ws[k]));
      }
      for (int64_t t = 0; t < p->ntensor; t++) {
        const rnnc_aot_tensor *tt = &p->tensor[t];
        if (tt->role == RNNC_AOT_OUTPUT)
          cr_assert_eq(memcmp(x[0].io[tt->io], x[1].io[tt->io], (size_t)tt->numel * 4), 0,
                       "program '%s' call %d: '%s' differs with 1 and 2 threads", p->name, call, tt->name);
        if (tt->role == RNNC_AOT_STATE)
          cr_assert_eq(memcmp(rnnc_aot_area(m, ws[0], tt->name), rnnc_aot_area(m, ws[1], tt->name),
                              (size_t)tt->numel * 4),
                       0, "program '%s' call %d: state '%s' differs", p->name, call, tt->name);
      }
      if (prog == RNNC_AOT_TRAIN)
        cr_assert_eq(memcmp(rnnc_aot_grads(m, ws[0]), rnnc_aot_grads(m, ws[1]), (size_t)m->param_floats * 4), 0,
                     "call %d: gradients differ with 1 and 2 threads", call);
    }
    for (int k = 0; k < 2; k++) {
      io_free(&x[k]);
      free(ws[k]);
    }
  }
  rnnc_optim_config cfg;
  adam_cfg(&cfg);
  train_vs_jit(m, params, NULL, &charlm, &cfg, NULL, 3, 1, 950);
  /* the step program of 2 rows against the JIT's next-token model of 2 rows */
  rnnc_ctx *ctx = jit_open(&charlm);
  rnnc_generator *g;
  cr_assert_eq(rnnc_generator_new(ctx, "charlm", charlm.ndim, charlm.dim, 2, &g), RNNC_OK, "%s", rnnc_errmsg(ctx));
  rnnc_generator_free(g);
  rnnc_net *net = jit_net(ctx, &charlm, "charlm_gen", 1, 2, RNNC_CARRY);
  set_params(net, m, params);
  run_vs_jit(m, RNNC_AOT_STEP, params, net, &charlm, 6, 1, 1, 960);
  rnnc_close(ctx);
  two_workspaces_at_once(m, params);
  free(params);
  dlclose(so);
}

/* io NULL (or an entry NULL): inputs and outputs live in the workspace
 * (rnnc_aot_area), the same results; a token id out of range is the JIT's
 * message, RNNC_EINPUT, and leaves the carried states as they were. */
Test(aot, workspace_io_and_bad_token)
{
  void *so;
  const rnnc_aot_model *m = obj_build(&charlm, "wio", "", &so);
  const rnnc_aot_prog *p = m->prog[RNNC_AOT_FORWARD];
  float *params = make_params(m, 61);
  rnnc_ctx *ctx = jit_open(&charlm);
  rnnc_net *net = jit_net(ctx, &charlm, "charlm", charlm.T, charlm.B, RNNC_CARRY);
  set_params(net, m, params);
  void *ws = ws_new(m, RNNC_AOT_FORWARD, 2);
  Io x;
  io_alloc(&x, p);
  for (int call = 0; call < 3; call++) {
    io_fill(&x, &charlm, net, 70 + (uint64_t)call);
    void *io[MAXIO] = {0};
    for (int64_t k = 0; k < p->ntensor; k++) {
      const rnnc_aot_tensor *t = &p->tensor[k];
      if (t->role != RNNC_AOT_INPUT)
        continue;
      void *area = rnnc_aot_area(m, ws, t->name);
      cr_assert(area, "no workspace area for input '%s'", t->name);
      if (call == 1) /* inputs through io, outputs in the workspace */
        io[t->io] = x.io[t->io];
      else
        memcpy(area, x.io[t->io], (size_t)t->numel * 4);
    }
    cr_assert_eq(rnnc_aot_run(m, RNNC_AOT_FORWARD, ws, params, call == 1 ? io : NULL), RNNC_OK, "%s", rnnc_aot_message(ws));
    cr_assert_eq(rnnc_forward(net), RNNC_OK);
    const float *loss = rnnc_aot_area(m, ws, "loss");
    cr_assert(loss, "no workspace area for output 'loss'");
    cmp_floats("workspace io", "loss", loss, rnnc_data(net, "loss"), 1, 1);
    cmp_floats("workspace io", "state.h2.c", rnnc_aot_area(m, ws, "state.h2.c"), rnnc_data(net, "state.h2.c"),
               charlm.B * 16, 1);
  }
  cr_assert_null(rnnc_aot_area(m, ws, "h1.W_ih"), "a parameter has no workspace area");
  cr_assert_null(rnnc_aot_area(m, ws, "nosuch"));
  cr_assert_eq(rnnc_aot_message(ws)[0], 0, "no failure yet: '%s'", rnnc_aot_message(ws));

  /* token id 70 at [3, 1] */
  size_t sb = (size_t)charlm.B * 16 * sizeof(float);
  float *before = malloc(sb);
  memcpy(before, rnnc_aot_area(m, ws, "state.h1.h"), sb);
  int32_t *tok = NULL;
  for (int64_t k = 0; k < p->ntensor; k++)
    if (strcmp(p->tensor[k].name, "tokens") == 0)
      tok = x.io[p->tensor[k].io];
  cr_assert(tok);
  tok[3 * charlm.B + 1] = 70;
  cr_assert_eq(rnnc_set(net, "tokens", tok, sizeof(int32_t) * charlm.T * charlm.B), RNNC_OK);
  cr_assert_eq(rnnc_aot_run(m, RNNC_AOT_FORWARD, ws, params, x.io), RNNC_EINPUT);
  cr_assert_eq(rnnc_forward(net), RNNC_EINPUT);
  cr_assert_str_eq(rnnc_aot_message(ws), "input 'tokens' has token id 70 at [3, 1], outside [0, 24)");
  cr_assert(strstr(rnnc_errmsg(ctx), rnnc_aot_message(ws)), "the JIT says '%s'", rnnc_errmsg(ctx));
  cr_assert_eq(memcmp(before, rnnc_aot_area(m, ws, "state.h1.h"), sb), 0, "a refused run changed the states");
  free(before);
  io_free(&x);
  free(ws);
  rnnc_close(ctx);
  free(params);
  dlclose(so);
}

/* ---- what the object needs -------------------------------------------------------- */

/* Whether an undefined symbol of the object is one of SLEEF, libm/libc or
 * OpenMP's. */
static int allowed_undefined(const char *s)
{
  static const char *const prefix[] = {"Sleef_", "GOMP_", "omp_"};
  static const char *const name[] = {
      "memcpy", "memset", "memmove", "expf", "exp", "logf", "log", "log1pf", "expm1f", "tanhf", "tanh",
      "sqrtf", "sqrt", "powf", "pow", "fabsf", "fmaf", "fma", "floorf", "ceilf", "fmaxf", "fminf",
      "_GLOBAL_OFFSET_TABLE_"};
  for (size_t i = 0; i < sizeof prefix / sizeof *prefix; i++)
    if (strncmp(s, prefix[i], strlen(prefix[i])) == 0)
      return 1;
  for (size_t i = 0; i < sizeof name / sizeof *name; i++)
    if (strcmp(s, name[i]) == 0)
      return 1;
  return 0;
}

/* nm -u: SLEEF, libm/libc, OpenMP only (no LLVM, no rnnc); nm: <prefix>_model
 * defined, every global symbol the object defines starts with the prefix. */
Test(aot, object_needs_only_sleef_libm_openmp)
{
  obj_compile(&charlm, "nmx", "--train");
  char cmd[600], *out;
  snprintf(cmd, sizeof cmd, "nm -u '%s'", tmp_path("nmx.o"));
  cr_assert_eq(run_cmd(cmd, &out), 0, "%s", out);
  int n = 0, nsleef = 0;
  for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
    char *s = strrchr(line, ' ');
    s = s ? s + 1 : line;
    cr_assert(allowed_undefined(s), "the object needs '%s'; nm -u:\n%s", s, line);
    n++;
    nsleef += strncmp(s, "Sleef_", 6) == 0;
  }
  free(out);
  cr_assert(nsleef > 0, "an LSTM's object calls SLEEF (%d undefined symbols)", n);
  snprintf(cmd, sizeof cmd, "nm -g --defined-only '%s'", tmp_path("nmx.o"));
  cr_assert_eq(run_cmd(cmd, &out), 0, "%s", out);
  int model = 0;
  for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
    char addr[64], type[8], name[256];
    cr_assert_eq(sscanf(line, "%63s %7s %255s", addr, type, name), 3, "nm line '%s'", line);
    if (strcmp(name, "nmx_model") == 0) {
      model = 1;
      cr_assert(strchr("DR", type[0]), "nmx_model is '%s': data", type);
    }
    cr_assert(strncmp(name, "nmx_", 4) == 0, "the object defines global '%s' (not prefixed nmx_): two models "
                                              "in one program would clash", name);
  }
  free(out);
  cr_assert(model, "the object does not define nmx_model");
}

/* Two models (two prefixes) in one shared library, each runs (no --train:
 * no training program; --no-carry: nothing carried, no step program). */
Test(aot, two_models_link_into_one_library)
{
  obj_compile(&charlm, "one", "--no-carry");
  obj_compile(&grucls, "two", "");
  char cmd[1024], *out;
  snprintf(cmd, sizeof cmd, "cc -shared -o '%s' '%s' '%s' -lsleef -lm -fopenmp", tmp_path("both.so"),
           tmp_path("one.o"), tmp_path("two.o"));
  int st = run_cmd(cmd, &out);
  cr_assert_eq(st, 0, "%s:\n%s", cmd, out);
  free(out);
  void *so = dlopen(tmp_path("both.so"), RTLD_NOW | RTLD_LOCAL);
  cr_assert(so, "%s", dlerror());
  const rnnc_aot_model *m[2] = {dlsym(so, "one_model"), dlsym(so, "two_model")};
  const Case *c[2] = {&charlm, &grucls};
  for (int k = 0; k < 2; k++) {
    cr_assert(m[k]);
    cr_assert_str_eq(m[k]->name, c[k]->model);
    cr_assert_null(m[k]->prog[RNNC_AOT_TRAIN], "no --train: no training program");
    cr_assert_null(m[k]->opt_adam);
    cr_assert_eq(m[k]->prog[RNNC_AOT_FORWARD]->carry, k == 1, "--no-carry on the first only");
    float *params = make_params(m[k], 41);
    rnnc_ctx *ctx = jit_open(c[k]);
    rnnc_net *net = jit_net(ctx, c[k], c[k]->model, c[k]->T, c[k]->B, m[k]->prog[0]->carry ? RNNC_CARRY : 0);
    set_params(net, m[k], params);
    run_vs_jit(m[k], RNNC_AOT_FORWARD, params, net, c[k], 2, 2, 1, 42);
    rnnc_close(ctx);
    free(params);
  }
  dlclose(so);
}

/* ---- --emit and --header ----------------------------------------------------------- */

Test(aot, emit_asm_llvm_and_header)
{
  char *out, cmd[1024];
  const char *src = srcpath(grucls.file);
  int st = rnnc_cmd(&out, "compile '%s' -o '%s' --prefix em --batch 2 --seq 5 --emit asm", src, tmp_path("em.s"));
  cr_assert_eq(st, 0, "%s", out);
  free(out);
  char *s = read_file(tmp_path("em.s"));
  cr_assert(s, "no em.s");
  cr_assert(strstr(s, ".text"), "--emit asm: no .text");
  cr_assert(strstr(s, "em_model:"), "--emit asm: no em_model label");
  cr_assert(strstr(s, "ret"), "--emit asm: no function returns");
  free(s);
  /* the assembly assembles into an object that defines em_model */
  snprintf(cmd, sizeof cmd, "cc -c -o '%s' '%s' && nm '%s'", tmp_path("ems.o"), tmp_path("em.s"),
           tmp_path("ems.o"));
  cr_assert_eq(run_cmd(cmd, &out), 0, "%s", out);
  cr_assert(strstr(out, " em_model"), "%s", out);
  free(out);

  st = rnnc_cmd(&out, "compile '%s' -o '%s' --prefix em --batch 2 --seq 5 --emit llvm", src, tmp_path("em.ll"));
  cr_assert_eq(st, 0, "%s", out);
  free(out);
  s = read_file(tmp_path("em.ll"));
  cr_assert(s, "no em.ll");
  cr_assert(strstr(s, "define "), "--emit llvm: no function");
  cr_assert(strstr(s, "@em_model = "), "--emit llvm: no @em_model");
  cr_assert(strstr(s, "target triple"), "--emit llvm: no target triple");
  free(s);

  st = rnnc_cmd(&out, "compile '%s' -o '%s' --header '%s' --prefix em --batch 2 --seq 5 --train", src,
                tmp_path("em.o"), tmp_path("em.h"));
  cr_assert_eq(st, 0, "%s", out);
  free(out);
  s = read_file(tmp_path("em.h"));
  cr_assert(s, "no em.h");
  static const char *const want[] = {
      "#ifndef EM_H", "#include <rnnc_aot.h>", "extern const rnnc_aot_model em_model;", "#define EM_PARAM_FLOATS ",
      "#define EM_NPARAM 7", "EM_PARAM_x_weight = 0", "EM_PARAM_h_W_ih = ", "EM_PARAM_loss_bias = ",
      "#define EM_FORWARD_B 2", "#define EM_FORWARD_T 5", "typedef struct em_forward_io {",
      "const int32_t *tokens;", "const int32_t *labels;", "float *loss;", "float *p;", "} em_forward_io;",
      "#define EM_FORWARD_WS_BYTES(nthreads)",
      "static inline int em_forward_init(void *ws, size_t bytes, int nthreads)",
      "static inline int em_forward(void *ws, const float *params, const em_forward_io *io)",
      "typedef struct em_step_io {", "#define EM_STEP_WS_BYTES(nthreads)", "typedef struct em_train_io {",
      "#define EM_TRAIN_WS_BYTES(nthreads)", "#define EM_OPT_FLOATS", "static inline int em_train_init(",
      "static inline int em_train_step(", "static inline int em_backward(", "static inline float *em_grads(void *ws)",
      "static inline const char *em_message(const void *ws)"};
  for (size_t i = 0; i < sizeof want / sizeof *want; i++)
    cr_assert(strstr(s, want[i]), "em.h lacks '%s':\n%s", want[i], s);
  /* every cell runs forward in time: forward and train carry their states */
  cr_assert(strstr(s, "static inline void em_forward_reset(void *ws)"), "em.h lacks em_forward_reset");
  cr_assert(strstr(s, "static inline void em_train_reset(void *ws)"), "em.h lacks em_train_reset");
  free(s);
  snprintf(cmd, sizeof cmd, "cc -std=c17 -Wall -Wextra -Wpedantic -Werror -fsyntax-only -I '%s' -x c '%s'",
           srcpath("include"), tmp_path("em.h"));
  st = run_cmd(cmd, &out);
  cr_assert_eq(st, 0, "%s:\n%s", cmd, out);
  free(out);
}

/* ---- a consumer program: plain cc, the header, librnnc_rt.a ----------------------- */

static const char consumer[] =
    "#include <stdio.h>\n"
    "#include <stdlib.h>\n"
    "#include <string.h>\n"
    "#include \"cons.h\"\n"
    "\n"
    "static void *load(const char *path, size_t bytes)\n"
    "{\n"
    "  void *p = aligned_alloc(64, (bytes + 63) / 64 * 64);\n"
    "  FILE *f = fopen(path, \"rb\");\n"
    "  if (!p || !f || fread(p, 1, bytes, f) != bytes) {\n"
    "    fprintf(stderr, \"cannot read %s\\n\", path);\n"
    "    exit(1);\n"
    "  }\n"
    "  fclose(f);\n"
    "  return p;\n"
    "}\n"
    "\n"
    "int main(int argc, char **argv)\n"
    "{\n"
    "  if (argc != 3)\n"
    "    return 2;\n"
    "  enum { N = CONS_FORWARD_T * CONS_FORWARD_B };\n"
    "  float *params = load(argv[1], CONS_PARAM_FLOATS * sizeof(float));\n"
    "  int32_t *data = load(argv[2], 4 * N * sizeof(int32_t));\n"
    "  size_t bytes = CONS_FORWARD_WS_BYTES(2);\n"
    "  void *ws = aligned_alloc(64, (bytes + 63) / 64 * 64);\n"
    "  if (cons_forward_init(ws, bytes, 2) != RNNC_OK) {\n"
    "    fprintf(stderr, \"%s\\n\", cons_message(NULL));\n"
    "    return 1;\n"
    "  }\n"
    "  float loss;\n"
    "  for (int k = 0; k < 2; k++) {\n"
    "    cons_forward_io io = {.tokens = data + 2 * k * N, .targets = data + (2 * k + 1) * N, .loss = &loss};\n"
    "    if (cons_forward(ws, params, &io) != RNNC_OK) {\n"
    "      fprintf(stderr, \"%s\\n\", cons_message(ws));\n"
    "      return 1;\n"
    "    }\n"
    "    printf(\"forward %a\\n\", loss);\n"
    "  }\n"
    "  free(ws);\n"
    "  bytes = CONS_TRAIN_WS_BYTES(1);\n"
    "  ws = aligned_alloc(64, (bytes + 63) / 64 * 64);\n"
    "  float *opt = calloc(CONS_OPT_FLOATS, sizeof(float));\n"
    "  rnnc_optim_config c;\n"
    "  rnnc_optim_defaults(&c, RNNC_SGD);\n"
    "  c.lr = 0.5;\n"
    "  c.momentum = 0.9;\n"
    "  if (cons_train_init(ws, bytes, 1, &c, 0, NULL) != RNNC_OK) {\n"
    "    fprintf(stderr, \"%s\\n\", cons_message(ws));\n"
    "    return 1;\n"
    "  }\n"
    "  for (int k = 0; k < 2; k++) {\n"
    "    cons_train_io io = {.tokens = data + 2 * k * N, .targets = data + (2 * k + 1) * N, .loss = NULL};\n"
    "    double gnorm;\n"
    "    if (cons_train_step(ws, params, opt, k, &io, &loss, &gnorm) != RNNC_OK) {\n"
    "      fprintf(stderr, \"%s\\n\", cons_message(ws));\n"
    "      return 1;\n"
    "    }\n"
    "    printf(\"train %a %a\\n\", loss, gnorm);\n"
    "  }\n"
    "  printf(\"w0 %a\\n\", params[cons_model.param[CONS_PARAM_loss_bias].offset]);\n"
    "  free(ws);\n"
    "  free(opt);\n"
    "  free(params);\n"
    "  free(data);\n"
    "  return 0;\n"
    "}\n";

/* Whether this test (and so librnnc_rt.a: RNNC_SANITIZE) is built with
 * AddressSanitizer: GCC's macro, clang's feature. */
#if defined(__SANITIZE_ADDRESS__)
static const int sanitize = 1;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
static const int sanitize = 1;
#else
static const int sanitize = 0;
#endif
#else
static const int sanitize = 0;
#endif

/* The build directory (RNNC_BINARY's). */
static const char *build_dir(void)
{
  static char buf[4096];
  snprintf(buf, sizeof buf, "%s", RNNC_BINARY);
  char *slash = strrchr(buf, '/');
  if (slash)
    *slash = 0;
  return buf;
}

Test(aot, consumer_program_with_plain_cc)
{
  char *out, cmd[24576];
  int st = rnnc_cmd(&out, "compile '%s' -o '%s' --header '%s' --prefix cons --batch %d --seq %d%s --train",
                    srcpath(charlm.file), tmp_path("cons.o"), tmp_path("cons.h"), charlm.B, charlm.T,
                    dim_args(&charlm));
  cr_assert_eq(st, 0, "%s", out);
  free(out);
  write_bytes(tmp_path("prog.c"), consumer, strlen(consumer));
  const char *san = sanitize ? " -fsanitize=address,undefined" : ""; /* librnnc_rt.a is instrumented too */
  snprintf(cmd, sizeof cmd,
           "cc -std=c17 -Wall -Wextra -Wpedantic -Werror%s -I '%s' -I '%s' -o '%s' '%s' '%s' -L '%s' -lrnnc_rt "
           "-lsleef -lm -fopenmp",
           san, srcpath("include"), tmp_dir(), tmp_path("prog"), tmp_path("prog.c"), tmp_path("cons.o"), build_dir());
  st = run_cmd(cmd, &out);
  cr_assert_eq(st, 0, "%s:\n%s", cmd, out);
  free(out);

  /* the descriptor for the parameter buffer, from the same object */
  void *so;
  const rnnc_aot_model *m = obj_open(&charlm, "cons", &so);
  float *params = make_params(m, 51);
  write_bytes(tmp_path("params.bin"), params, (size_t)m->param_floats * sizeof(float));
  enum { N = 6 * 3 };
  cr_assert_eq(charlm.T * charlm.B, N);
  int32_t data[4 * N];
  uint64_t s = 77;
  for (int i = 0; i < 4 * N; i++)
    data[i] = (int32_t)(rnd(&s) % 24);
  write_bytes(tmp_path("data.bin"), data, sizeof data);
  snprintf(cmd, sizeof cmd, "'%s' '%s' '%s'", tmp_path("prog"), tmp_path("params.bin"), tmp_path("data.bin"));
  st = run_cmd(cmd, &out);
  cr_assert_eq(st, 0, "%s:\n%s", cmd, out);

  /* the JIT: 2 carried forward calls, 2 SGD steps from the same parameters */
  char want[1024], *w = want;
  rnnc_ctx *ctx = jit_open(&charlm);
  rnnc_net *net = jit_net(ctx, &charlm, "charlm", charlm.T, charlm.B, RNNC_CARRY);
  set_params(net, m, params);
  for (int k = 0; k < 2; k++) {
    cr_assert_eq(rnnc_set(net, "tokens", data + 2 * k * N, sizeof(int32_t) * N), RNNC_OK);
    cr_assert_eq(rnnc_set(net, "targets", data + (2 * k + 1) * N, sizeof(int32_t) * N), RNNC_OK);
    cr_assert_eq(rnnc_forward(net), RNNC_OK, "%s", rnnc_errmsg(ctx));
    w += sprintf(w, "forward %a\n", (double)*(float *)rnnc_data(net, "loss"));
  }
  rnnc_net_free(net);
  net = jit_net(ctx, &charlm, "charlm", charlm.T, charlm.B, RNNC_CARRY | RNNC_GRAD);
  set_params(net, m, params);
  rnnc_optim_config c;
  rnnc_optim_defaults(&c, RNNC_SGD);
  c.lr = 0.5;
  c.momentum = 0.9;
  rnnc_optim *o;
  cr_assert_eq(rnnc_optim_new(net, &c, 0, NULL, &o), RNNC_OK);
  for (int k = 0; k < 2; k++) {
    cr_assert_eq(rnnc_set(net, "tokens", data + 2 * k * N, sizeof(int32_t) * N), RNNC_OK);
    cr_assert_eq(rnnc_set(net, "targets", data + (2 * k + 1) * N, sizeof(int32_t) * N), RNNC_OK);
    float loss;
    double gnorm;
    cr_assert_eq(rnnc_train_step(o, &loss, &gnorm), RNNC_OK, "%s", rnnc_errmsg(ctx));
    w += sprintf(w, "train %a %a\n", (double)loss, gnorm);
  }
  w += sprintf(w, "w0 %a\n", (double)*(float *)rnnc_data(net, "loss.bias"));
  cr_assert_str_eq(out, want, "the consumer printed\n%s\nthe JIT\n%s", out, want);
  free(out);
  rnnc_optim_free(o);
  rnnc_close(ctx);
  free(params);
  dlclose(so);
}

/* ---- errors of rnnc compile: one line, status 1, nothing written ------------------- */

static void compile_fails(const char *args, const char *want, const char *outfile)
{
  char *out;
  int st = rnnc_cmd(&out, "compile %s", args);
  cr_assert_eq(st, 1, "rnnc compile %s: status %d, want 1:\n%s", args, st, out);
  cr_assert_str_eq(out, want, "rnnc compile %s", args);
  free(out);
  if (outfile)
    cr_assert_neq(access(outfile, F_OK), 0, "'%s' was written", outfile);
}

Test(aot, error_unbound_dimension)
{
  static const char lm[] = "model lm(V, E = 4, H = 8) {\n"
                           "  input tokens: i32[T, B], targets: i32[T, B]\n"
                           "  x    = embedding(tokens, V, E)\n"
                           "  h    = gru(x, H = H)\n"
                           "  loss = softmax(h, V, target = targets)\n"
                           "  output loss\n"
                           "}\n";
  write_bytes(tmp_path("lm.rnn"), lm, strlen(lm));
  char args[1024];
  snprintf(args, sizeof args, "'%s' -o '%s' --batch 2 --seq 3", tmp_path("lm.rnn"), tmp_path("u.o"));
  /* docs/cli.md's wording, as the other commands say it (AOT_HEADER.md had
   * "dimension 'V' is not bound: give it with --dim V=N") */
  compile_fails(args, "rnnc: dimension 'V' of parameter 'x.weight' has no value; give it with --dim V=N\n",
                tmp_path("u.o"));
  /* bound, it compiles */
  char *out;
  int st = rnnc_cmd(&out, "compile %s --dim V=9", args);
  cr_assert_eq(st, 0, "with --dim V=9: status %d:\n%s", st, out);
  free(out);
  cr_assert_eq(access(tmp_path("u.o"), F_OK), 0);
}

Test(aot, error_unknown_cpu)
{
  char args[1024];
  snprintf(args, sizeof args, "'%s' -o '%s' --batch 2 --seq 3 --cpu pentium9", srcpath(mgu.file), tmp_path("c.o"));
  compile_fails(args,
                "rnnc: unknown CPU 'pentium9' (known: native, x86-64, x86-64-v2, x86-64-v3, x86-64-v4, and LLVM's "
                "x86 CPU names such as haswell, skylake, znver3)\n",
                tmp_path("c.o"));
}

Test(aot, error_unwritable_output)
{
  char args[1024], want[1024];
  const char *o = tmp_path("nodir/m.o");
  snprintf(args, sizeof args, "'%s' -o '%s' --batch 2 --seq 3", srcpath(mgu.file), o);
  snprintf(want, sizeof want, "rnnc: cannot write '%s': No such file or directory\n", o);
  compile_fails(args, want, NULL);
  /* the header's path too */
  const char *h = tmp_path("nodir/m.h");
  snprintf(args, sizeof args, "'%s' -o '%s' --header '%s' --batch 2 --seq 3", srcpath(mgu.file), tmp_path("m.o"), h);
  snprintf(want, sizeof want, "rnnc: cannot write '%s': No such file or directory\n", h);
  compile_fails(args, want, NULL);
}

/* A model that does not parse: rnnc check's diagnostics, status 1. */
Test(aot, error_model_does_not_parse)
{
  static const char bad[] = "model m(V = 4) {\n"
                            "  input tokens: i32[T, B\n"
                            "}\n";
  write_bytes(tmp_path("bad.rnn"), bad, strlen(bad));
  char *want;
  int st = rnnc_cmd(&want, "check '%s'", tmp_path("bad.rnn"));
  cr_assert_eq(st, 1, "rnnc check: %d", st);
  char prefix[600];
  snprintf(prefix, sizeof prefix, "%s:2:", tmp_path("bad.rnn"));
  cr_assert(strncmp(want, prefix, strlen(prefix)) == 0 && strstr(want, ": error: "), "rnnc check says\n%s", want);
  char args[1024];
  snprintf(args, sizeof args, "'%s' -o '%s' --batch 2 --seq 3", tmp_path("bad.rnn"), tmp_path("b.o"));
  compile_fails(args, want, tmp_path("b.o"));
  free(want);
}

Test(aot, error_prefix_not_identifier)
{
  char args[1024];
  snprintf(args, sizeof args, "'%s' -o '%s' --batch 2 --seq 3 --prefix my-model", srcpath(mgu.file),
           tmp_path("p.o"));
  compile_fails(args,
                "rnnc: prefix 'my-model' is not a C identifier (letters, digits and _, not starting with a "
                "digit)\n",
                tmp_path("p.o"));
  snprintf(args, sizeof args, "'%s' -o '%s' --batch 2 --seq 3 --prefix rnnc_lm", srcpath(mgu.file),
           tmp_path("p.o"));
  compile_fails(args,
                "rnnc: prefix 'rnnc_lm' would clash with rnnc's own names (rnnc_forward, RNNC_OK, ...); give "
                "another with --prefix NAME\n",
                tmp_path("p.o"));
}

/* A NaN parameter: the compiled training step refuses with the JIT's
 * message (RNNC_EINPUT) and changes no parameter and no optimizer state; a
 * bad configuration is refused with the JIT's message too. */
Test(aot, non_finite_loss_and_bad_config_as_the_jit)
{
  void *so;
  const rnnc_aot_model *m = obj_build(&gru_lm, "nan", "--train", &so);
  float *params = make_params(m, 71);
  rnnc_ctx *ctx = jit_open(&gru_lm);
  rnnc_net *net = jit_net(ctx, &gru_lm, "charlm_gru", gru_lm.T, gru_lm.B, RNNC_GRAD | RNNC_CARRY);
  rnnc_optim_config cfg;
  adam_cfg(&cfg);
  void *ws = ws_new(m, RNNC_AOT_TRAIN, 2);

  cfg.lr = -1;
  rnnc_optim *o = NULL;
  cr_assert_eq(rnnc_optim_new(net, &cfg, 0, NULL, &o), RNNC_EINPUT);
  cr_assert_eq(rnnc_aot_train_init(m, ws, &cfg, 0, NULL), RNNC_EINPUT);
  cr_assert(strstr(rnnc_errmsg(ctx), rnnc_aot_message(ws)) && rnnc_aot_message(ws)[0], "AOT '%s', JIT '%s'",
            rnnc_aot_message(ws), rnnc_errmsg(ctx));
  const char *nope = "no.such";
  cfg.lr = 1e-2;
  cr_assert_eq(rnnc_optim_new(net, &cfg, 1, &nope, &o), RNNC_EINPUT);
  cr_assert_eq(rnnc_aot_train_init(m, ws, &cfg, 1, &nope), RNNC_EINPUT);
  cr_assert(strstr(rnnc_errmsg(ctx), rnnc_aot_message(ws)) && rnnc_aot_message(ws)[0], "AOT '%s', JIT '%s'",
            rnnc_aot_message(ws), rnnc_errmsg(ctx));

  cr_assert_eq(rnnc_aot_train_init(m, ws, &cfg, 0, NULL), RNNC_OK, "%s", rnnc_aot_message(ws));
  set_params(net, m, params);
  cr_assert_eq(rnnc_optim_new(net, &cfg, 0, NULL, &o), RNNC_OK, "%s", rnnc_errmsg(ctx));
  size_t pbytes = (size_t)m->param_floats * sizeof(float), of = rnnc_aot_opt_floats(m) * sizeof(float);
  float *opt = zalloc64(of), *w0 = malloc(pbytes), *o0 = malloc(of);
  Io x;
  io_alloc(&x, m->prog[RNNC_AOT_TRAIN]);
  for (int s = 0; s < 3; s++) {
    io_fill(&x, &gru_lm, net, 80 + (uint64_t)s);
    if (s == 2) { /* a NaN in the last parameter, both sides */
      const rnnc_aot_param *q = &m->param[m->nparam - 1];
      params[q->offset] = NAN;
      ((float *)rnnc_data(net, q->name))[0] = NAN;
      memcpy(w0, params, pbytes);
      memcpy(o0, opt, of);
    }
    float loss[2];
    int st = rnnc_aot_train_step(m, ws, params, opt, s, x.io, &loss[0], NULL);
    int jst = rnnc_train_step(o, &loss[1], NULL);
    cr_assert_eq(st, jst, "step %d: status %d (AOT) vs %d (JIT): %s", s, st, jst, rnnc_aot_message(ws));
    if (s < 2) {
      cr_assert_eq(st, RNNC_OK, "%s", rnnc_aot_message(ws));
      cr_assert(memcmp(&loss[0], &loss[1], 4) == 0);
      continue;
    }
    cr_assert_eq(st, RNNC_EINPUT);
    cr_assert_str_eq(rnnc_aot_message(ws), "step 3: the loss is not finite (nan)");
    cr_assert_str_eq(rnnc_aot_message(ws), rnnc_errmsg(ctx), "step %d: AOT '%s', JIT '%s'", s,
                     rnnc_aot_message(ws), rnnc_errmsg(ctx));
    cr_assert_eq(memcmp(w0, params, pbytes), 0, "a refused step changed the parameters");
    cr_assert_eq(memcmp(o0, opt, of), 0, "a refused step changed the optimizer's state");
  }
  io_free(&x);
  rnnc_optim_free(o);
  rnnc_close(ctx);
  free(ws);
  free(opt);
  free(w0);
  free(o0);
  free(params);
  dlclose(so);
}

/* --train on a model with no loss: status 1, one line naming the model. */
Test(aot, error_train_without_loss)
{
  static const char probs[] = "model p(V = 10, E = 4, H = 8) {\n"
                              "  input tokens: i32[T, B]\n"
                              "  x     = embedding(tokens, V, E)\n"
                              "  h     = gru(x, H = H)\n"
                              "  probs = softmax(h, V)\n"
                              "  output probs\n"
                              "}\n";
  write_bytes(tmp_path("p.rnn"), probs, strlen(probs));
  char *out;
  int st = rnnc_cmd(&out, "compile '%s' -o '%s' --batch 2 --seq 3 --train", tmp_path("p.rnn"), tmp_path("p.o"));
  cr_assert_eq(st, 1, "status %d: %s", st, out);
  cr_assert(strncmp(out, "rnnc: ", 6) == 0 && strchr(out, '\n') == out + strlen(out) - 1, "one line: %s", out);
  cr_assert(strstr(out, "model 'p' has no loss to differentiate (a softmax with a target, or a sum)\n"), "%s", out);
  free(out);
  cr_assert_neq(access(tmp_path("p.o"), F_OK), 0, "p.o was written");
}
