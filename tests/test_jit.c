/* test_jit.c — JIT-compiled cell steps (compiler/cellgen.c + compiler/jit.c)
 * against the reference interpreter.
 *
 * The check. For a cell with its dims bound (the k-th dim of the signature
 * gets 3 + 2k: I = 3, H = 5, N = 7, ...; or every dim 1), draw every input,
 * state and param element uniformly in [-1, 1) (seeded), run the generated
 * step on nrows = 3 rows, and run cell_eval(PREC_F32) on each row. The error
 * of a computed node (every node that is not an input, state or param) is
 *     max over rows r and elements e of |jit[r, e] - ref[r, e]|
 *     / max(max over r, e of |ref[r, e]|, 1e-6)
 * — relative to the node's largest value, so a near-zero element of a node
 * compares at the node's scale. A cell passes when every node's error is
 * <= 1e-5. Values are redrawn (up to 100 times) until every relu/step operand
 * is at least 1e-3 from the kink and every value is finite, so a rounding
 * difference cannot flip a branch.
 */
#include <criterion/criterion.h>
#include <glob.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <llvm-c/Core.h>

#include "testutil.h"

enum { NROWS = 3 };

static uint64_t rs;
static double uni(void) /* [-1, 1), splitmix64 */
{
  uint64_t z = (rs += 0x9e3779b97f4a7c15u);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  z ^= z >> 31;
  return (double)(z >> 11) / 9007199254740992.0 * 2 - 1;
}

static double now_ms(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* Bind every dim of c: the k-th gets 3 + 2k, or 1 with ones. */
static Env bind(Module *m, const Cell *c, int ones)
{
  Env env = {0};
  for (int d = 0; d < c->ndim; d++)
    env_set(m->arena, &env, c->dim[d], ones ? 1 : 3 + 2 * d);
  return env;
}

/* Bind the dims of c to vals[0], vals[1], ... in signature order. */
static Env bindv(Module *m, const Cell *c, const long *vals)
{
  Env env = {0};
  for (int d = 0; d < c->ndim; d++)
    env_set(m->arena, &env, c->dim[d], vals[d]);
  return env;
}

static int isleaf(int op) { return op == OP_INPUT || op == OP_STATE || op == OP_PARAM; }

typedef struct Result {
  int rc;             /* cellgen's status */
  double maxerr;
  char where[1024];   /* the worst node, or cellgen's message */
  double tgen, tadd, tlookup; /* ms: IR generation, verify + O3, machine code */
} Result;

static int nsym;
static int opseen[NOPS];

/* Compile c in j, run it on NROWS rows and compare with cell_eval. */
static Result check(Jit *j, const Cell *c, const Env *env, uint64_t seed)
{
  Result res = {0};
  char err[1024], sym[256];
  snprintf(sym, sizeof sym, "step%d_%s", nsym++, c->name);
  LLVMModuleRef mod = NULL;
  double t0 = now_ms();
  res.rc = cellgen(jit_context(j), c, env, sym, &mod, err, sizeof err);
  if (res.rc != RNNC_OK) {
    snprintf(res.where, sizeof res.where, "%s", err);
    cr_assert_null(mod);
    return res;
  }
  double t1 = now_ms();
  cr_assert_eq(jit_add(j, mod, err, sizeof err), RNNC_OK, "%s: %s", c->name, err);
  double t2 = now_ms();
  uintptr_t addr = 0;
  cr_assert_eq(jit_lookup(j, sym, &addr, err, sizeof err), RNNC_OK, "%s: %s", c->name, err);
  cr_assert_neq(addr, 0);
  double t3 = now_ms();
  res.tgen = t1 - t0, res.tadd = t2 - t1, res.tlookup = t3 - t2;
  CellStepFn step = (CellStepFn)addr;

  int nin = cellgen_nin(c), nout = cellgen_nout(c);
  long *numel = calloc((size_t)c->nnode, sizeof *numel);
  int *slot = calloc((size_t)c->nnode, sizeof *slot); /* in[] or out[] index */
  for (int i = 0, k = 0; i < c->nnode; i++) {
    numel[i] = node_numel(c, i, env);
    if (!isleaf(c->node[i].op))
      slot[i] = k++;
    opseen[c->node[i].op] = 1;
  }
  const int *leaves[3] = {c->input, c->state, c->param};
  int nleaves[3] = {c->ninput, c->nstate, c->nparam};
  float **in = calloc((size_t)nin + 1, sizeof *in), **out = calloc((size_t)nout + 1, sizeof *out);
  for (int l = 0, k = 0; l < 3; l++)
    for (int q = 0; q < nleaves[l]; q++, k++) {
      slot[leaves[l][q]] = k;
      in[k] = calloc((size_t)(numel[leaves[l][q]] * NROWS) + 1, sizeof **in);
    }
  for (int i = 0; i < c->nnode; i++)
    if (!isleaf(c->node[i].op))
      out[slot[i]] = calloc((size_t)(numel[i] * NROWS) + 1, sizeof **out);
  /* ref[r][i]: cell_eval's values of node i in row r */
  double **ref[NROWS];
  for (int r = 0; r < NROWS; r++) {
    ref[r] = calloc((size_t)c->nnode, sizeof **ref);
    for (int i = 0; i < c->nnode; i++)
      ref[r][i] = calloc((size_t)numel[i] + 1, sizeof ***ref);
  }

  rs = seed;
  for (int tries = 0;; tries++) {
    cr_assert(tries < 100, "cannot draw values away from the kinks of %s", c->name);
    for (int i = 0; i < c->nnode; i++)
      if (isleaf(c->node[i].op)) {
        long rows = c->node[i].op == OP_PARAM ? 1 : NROWS;
        for (long e = 0; e < numel[i] * rows; e++)
          in[slot[i]][e] = (float)uni();
      }
    int ok = 1;
    for (int r = 0; r < NROWS; r++) {
      for (int i = 0; i < c->nnode; i++)
        if (isleaf(c->node[i].op)) {
          const float *src = in[slot[i]] + (c->node[i].op == OP_PARAM ? 0 : r * numel[i]);
          for (long e = 0; e < numel[i]; e++)
            ref[r][i][e] = src[e];
        }
      cell_eval(c, env, ref[r], PREC_F32);
      for (int i = 0; i < c->nnode; i++) {
        int kink = c->node[i].op == OP_RELU || c->node[i].op == OP_STEP;
        for (long e = 0; e < numel[i]; e++) {
          ok &= isfinite(ref[r][i][e]);
          if (kink)
            ok &= fabs(ref[r][c->node[i].arg[0]][e]) >= 1e-3;
        }
      }
    }
    if (ok)
      break;
  }

  step((const float *const *)in, out, NROWS);

  for (int i = 0; i < c->nnode; i++) {
    if (isleaf(c->node[i].op))
      continue;
    double dmax = 0, bmax = 0;
    long worst = 0;
    for (int r = 0; r < NROWS; r++)
      for (long e = 0; e < numel[i]; e++) {
        double a = out[slot[i]][r * numel[i] + e], b = ref[r][i][e];
        double d = fabs(a - b);
        if (!(d <= dmax))
          dmax = d, worst = r * numel[i] + e;
        bmax = fmax(bmax, fabs(b));
      }
    double errn = dmax / fmax(bmax, 1e-6);
    if (!(errn <= res.maxerr)) {
      res.maxerr = errn;
      long r = numel[i] ? worst / numel[i] : 0, e = numel[i] ? worst % numel[i] : 0;
      snprintf(res.where, sizeof res.where, "node %d '%s' (%s), row %ld element %ld: jit %.9g, interp %.9g", i,
               c->node[i].name ? c->node[i].name : "", opinfo[c->node[i].op].spelling, r, e,
               numel[i] ? out[slot[i]][worst] : 0.0, numel[i] ? ref[r][i][e] : 0.0);
    }
  }

  for (int r = 0; r < NROWS; r++) {
    for (int i = 0; i < c->nnode; i++)
      free(ref[r][i]);
    free(ref[r]);
  }
  for (int k = 0; k < nin; k++)
    free(in[k]);
  for (int k = 0; k < nout; k++)
    free(out[k]);
  free(in);
  free(out);
  free(slot);
  free(numel);
  return res;
}

/* Check c and, unless it is itself a backward or hand-written gradient cell,
 * the backward cell autodiff derives for it. Returns the cells checked (0
 * when cellgen rejected the dims, which only ones may cause). */
static int check_with_backward(Jit *j, Module *m, Cell *c, int ones, const char *file)
{
  int hasgrad = 0;
  for (int p = 0; p < c->nparam; p++)
    hasgrad |= c->grad[p] >= 0;
  Cell *cells[2] = {c, NULL};
  if (!hasgrad && !c->primal) {
    Grad *g = autodiff_cell(m, c);
    cr_assert(g, "autodiff_cell(%s) failed", c->name);
    cells[1] = g->bwd;
  }
  int n = 0;
  for (int k = 0; k < 2 && cells[k]; k++) {
    Env env = bind(m, cells[k], ones);
    Result r = check(j, cells[k], &env, 1234 + (uint64_t)k);
    if (r.rc != RNNC_OK) {
      cr_assert(ones, "%s (%s): cellgen failed: %s", cells[k]->name, file, r.where);
      cr_assert_eq(r.rc, RNNC_ESHAPE, "%s: %s", cells[k]->name, r.where);
      cr_log_info("%-22s %s: dims of 1 rejected: %s", cells[k]->name, file, r.where);
      continue;
    }
    cr_log_info("%-22s %-32s max error %.2g; compile ms: IR %.2f, verify+O3 %.2f, codegen %.2f",
                cells[k]->name, file, r.maxerr, r.tgen, r.tadd, r.tlookup);
    cr_expect(r.maxerr <= 1e-5, "%s (%s, dims %s): max relative error %.3g at %s", cells[k]->name, file,
              ones ? "1" : "3, 5, 7, ...", r.maxerr, r.where);
    n++;
  }
  return n;
}

static Jit *newjit(void)
{
  Jit *j = NULL;
  char err[512];
  cr_assert_eq(jit_new(&j, err, sizeof err), RNNC_OK, "%s", err);
  return j;
}

/* Every cell of the prelude, the examples, the test models and the round-trip
 * files, and their backward cells. */
static int check_all(int ones)
{
  Jit *j = newjit();
  int ncells = 0;
  Module *pm = module_new();
  cr_assert(pm);
  int np = pm->ncell;
  for (int i = 0; i < np; i++)
    ncells += check_with_backward(j, pm, pm->cell[i], ones, "<prelude>");
  module_free(pm);
  const char *pats[] = {"examples/*.rnn", "tests/models/*.rnn", "tests/roundtrip/*.rnn"};
  for (int k = 0; k < 3; k++) {
    glob_t gl;
    cr_assert_eq(glob(srcpath(pats[k]), 0, NULL, &gl), 0);
    for (size_t f = 0; f < gl.gl_pathc; f++) {
      Module *m = load_module(gl.gl_pathv[f]);
      cr_assert(m, "%s does not load", gl.gl_pathv[f]);
      int nc = m->ncell;
      for (int i = 0; i < nc; i++)
        if (!m->cell[i]->builtin)
          ncells += check_with_backward(j, m, m->cell[i], ones, strrchr(gl.gl_pathv[f], '/') + 1);
      module_free(m);
    }
    globfree(&gl);
  }
  jit_free(j);
  return ncells;
}

Test(jit, every_cell_and_its_backward_matches_the_interpreter)
{
  int n = check_all(0);
  cr_log_info("%d cells checked", n);
  cr_assert_geq(n, 25, "only %d cells", n);
  for (int op = 0; op < NOPS; op++)
    cr_expect(opseen[op], "no checked cell uses op '%s'", opinfo[op].spelling);
}

Test(jit, every_cell_with_dims_of_one)
{
  int n = check_all(1);
  cr_log_info("%d cells checked with every dim 1", n);
  cr_assert_geq(n, 23, "only %d cells", n);
}

/* A module the verifier rejects (a block without a terminator) is an error with the verifier's message, and
 * jit_add disposes it. */
Test(jit, malformed_module_is_an_error)
{
  Jit *j = newjit();
  LLVMContextRef cx = jit_context(j);
  LLVMModuleRef mod = LLVMModuleCreateWithNameInContext("bad", cx);
  LLVMTypeRef f32 = LLVMFloatTypeInContext(cx);
  LLVMValueRef fn = LLVMAddFunction(mod, "f", LLVMFunctionType(f32, &f32, 1, 0));
  LLVMBuilderRef b = LLVMCreateBuilderInContext(cx);
  LLVMPositionBuilderAtEnd(b, LLVMAppendBasicBlockInContext(cx, fn, "entry"));
  LLVMBuildFAdd(b, LLVMGetParam(fn, 0), LLVMGetParam(fn, 0), "x"); /* no ret */
  LLVMDisposeBuilder(b);
  char err[1024];
  int rc = jit_add(j, mod, err, sizeof err);
  cr_assert_eq(rc, RNNC_EVERIFY, "rc %d: %s", rc, err);
  cr_assert(strstr(err, "module 'bad' does not verify"), "%s", err);
  cr_assert(strstr(err, "does not have terminator"), "%s", err);
  jit_free(j);
}

Test(jit, missing_symbol_and_unbound_dim_are_errors)
{
  Jit *j = newjit();
  char err[1024];
  uintptr_t a = 1;
  int rc = jit_lookup(j, "no_such_step", &a, err, sizeof err);
  cr_assert_eq(rc, RNNC_EINPUT);
  cr_assert_eq(a, 0);
  cr_assert(strstr(err, "no_such_step"), "%s", err);

  Module *m = module_new();
  Cell *c = cell_find(m, "lstm");
  Env env = {0};
  env_set(m->arena, &env, c->dim[0], 4); /* I only */
  LLVMModuleRef mod = (LLVMModuleRef)1;
  rc = cellgen(jit_context(j), c, &env, "lstm_step", &mod, err, sizeof err);
  cr_assert_eq(rc, RNNC_EINPUT);
  cr_assert_null(mod);
  cr_assert_str_eq(err, "cell 'lstm': dimension 'H' is not bound");
  module_free(m);
  jit_free(j);
}

/* The generated code's rows are independent and params are shared: the same
 * row given twice gives the same values (bitwise), in any row. */
Test(jit, rows_are_independent)
{
  Jit *j = newjit();
  Module *m = module_new();
  Cell *c = cell_find(m, "gru");
  Env env = bind(m, c, 0); /* I = 3, H = 5 */
  LLVMModuleRef mod;
  char err[1024];
  cr_assert_eq(cellgen(jit_context(j), c, &env, "gru_step", &mod, err, sizeof err), RNNC_OK, "%s", err);
  cr_assert_eq(jit_add(j, mod, err, sizeof err), RNNC_OK, "%s", err);
  uintptr_t a;
  cr_assert_eq(jit_lookup(j, "gru_step", &a, err, sizeof err), RNNC_OK, "%s", err);
  CellStepFn step = (CellStepFn)a;
  /* in: x [2, 3], h [2, 5], W_ih [15, 3], W_hh [15, 5], b_ih [15], b_hh [15] */
  float x[6], h[10], Wi[45], Wh[75], bi[15], bh[15];
  float *bufs[] = {x, h, Wi, Wh, bi, bh};
  int lens[] = {6, 10, 45, 75, 15, 15};
  rs = 99;
  for (int k = 0; k < 6; k++)
    for (int e = 0; e < lens[k]; e++)
      bufs[k][e] = (float)uni();
  memcpy(x + 3, x, 3 * sizeof *x);
  memcpy(h + 5, h, 5 * sizeof *h);
  int nout = cellgen_nout(c);
  float **out = calloc((size_t)nout, sizeof *out);
  for (int i = 0, k = 0; i < c->nnode; i++)
    if (!isleaf(c->node[i].op))
      out[k++] = calloc((size_t)node_numel(c, i, &env) * 2, sizeof **out);
  step((const float *const *)bufs, out, 2);
  for (int i = 0, k = 0; i < c->nnode; i++)
    if (!isleaf(c->node[i].op)) {
      long n = node_numel(c, i, &env);
      cr_assert(memcmp(out[k], out[k] + n, (size_t)n * sizeof(float)) == 0, "node %d differs between rows", i);
      free(out[k++]);
    }
  free(out);
  module_free(m);
  jit_free(j);
}

/* Sizes where the vectorized loops run with remainders (I = 19, H = 37), and
 * the sizes of benchmark C2 (I = 128, H = 512), for the prelude cells and
 * their backward cells; compile times are logged. */
Test(jit, larger_sizes)
{
  static const long dims[][2] = {{19, 37}, {128, 512}};
  Jit *j = newjit();
  Module *m = module_new();
  const char *names[] = {"rnn", "gru", "lstm"};
  for (int s = 0; s < 2; s++)
    for (int k = 0; k < 3; k++) {
      Cell *c = cell_find(m, names[k]);
      Cell *cells[2] = {c, autodiff_cell(m, c)->bwd};
      for (int q = 0; q < 2; q++) {
        Env env = bindv(m, cells[q], dims[s]);
        Result r = check(j, cells[q], &env, 77);
        cr_assert_eq(r.rc, RNNC_OK, "%s: %s", cells[q]->name, r.where);
        cr_log_info("%-14s I=%ld H=%ld: max error %.2g; compile ms: IR %.2f, verify+O3 %.2f, codegen %.2f",
                    cells[q]->name, dims[s][0], dims[s][1], r.maxerr, r.tgen, r.tadd, r.tlookup);
        cr_expect(r.maxerr <= 1e-5, "%s at I=%ld H=%ld: max relative error %.3g at %s", cells[q]->name,
                  dims[s][0], dims[s][1], r.maxerr, r.where);
      }
    }
  module_free(m);
  jit_free(j);
}
