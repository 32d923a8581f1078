/* test_autodiff.c — the backward cells autodiff derives, checked against
 * float64 finite differences of the forward cell; the golden LSTM backward
 * cell; the model-level plan (ModelGrad, print_schedule).
 *
 * The check. For a cell, draw inputs x, states h, params θ and weights w_j,
 * u_s in [-1, 1] and take the scalar
 *     L = Σ_j <w_j, out_j> + Σ_s <u_s, h'_s>.
 * The backward cell, fed the saved forward values, d_out_j = w_j and the
 * carried state adjoints u_s, must give dL/dx (its outs), dL/dh (its states'
 * updates) and dL/dθ (its grads). The numeric derivative of each element is
 * the fourth-order central difference
 *     (8 (L(+e) - L(-e)) - (L(+2e) - L(-2e))) / (12 e),  e = 1e-3,
 * whose truncation error is O(e^4) ~ 1e-12 and rounding error ~ 1e-13 here.
 * The error of one element is
 *     |a - n| / max(|a|, |n|, 1e-3)
 * — relative where the derivative is not tiny, absolute (scaled by 1e3)
 * below 1e-3, so an exact zero (an unused input) compares soundly. Every
 * element of every input, state and parameter is checked; the cell passes
 * when the largest error is <= 1e-6. Operands of relu and step are kept at
 * least 1e-2 from 0 (redrawing otherwise), log's operand is positive by
 * construction.
 */
#include <criterion/criterion.h>
#include <glob.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static Module *load_text(const char *text)
{
  Module *m = module_new();
  const Source *src = source_new(m, "<test>", text);
  if (parse(m, src) != RNNC_OK || verify(m) != RNNC_OK) {
    char *d = diags_string(m->arena, &m->diags);
    cr_log_error("%s", d);
    module_free(m);
    return NULL;
  }
  return m;
}

/* ---- a deterministic generator (splitmix64) ---- */

static uint64_t rs;
static double uni(void) /* [-1, 1) */
{
  uint64_t z = (rs += 0x9e3779b97f4a7c15u);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  z ^= z >> 31;
  return (double)(z >> 11) / 9007199254740992.0 * 2 - 1;
}

typedef struct Check {
  double maxerr;   /* largest element error */
  char where[256]; /* "param W, element 3: analytic ..., numeric ..." */
  long nchecked;
} Check;

/* Values of every node of c, one buffer each. */
static double **vals(const Cell *c, const Env *env)
{
  double **v = calloc((size_t)c->nnode, sizeof *v);
  for (int i = 0; i < c->nnode; i++)
    v[i] = calloc((size_t)node_numel(c, i, env) + 1, sizeof **v);
  return v;
}

static void freevals(const Cell *c, double **v)
{
  for (int i = 0; i < c->nnode; i++)
    free(v[i]);
  free(v);
}

/* L = Σ_j <w_j, out_j> + Σ_s <u_s, next_s> after a forward step. */
static double loss(const Cell *c, const Env *env, double **v, double **w, double **u)
{
  cell_eval(c, env, v, PREC_F64);
  double L = 0;
  for (int j = 0; j < c->nout; j++)
    for (long e = 0; e < node_numel(c, c->out[j], env); e++)
      L += w[j][e] * v[c->out[j]][e];
  for (int s = 0; s < c->nstate; s++)
    for (long e = 0; e < node_numel(c, c->next[s], env); e++)
      L += u[s][e] * v[c->next[s]][e];
  return L;
}

/* 1 when every relu/step operand is at least 1e-2 from its kink. */
static int awayfromkinks(const Cell *c, const Env *env, double **v)
{
  for (int i = 0; i < c->nnode; i++)
    if (c->node[i].op == OP_RELU || c->node[i].op == OP_STEP) {
      int a = c->node[i].arg[0];
      for (long e = 0; e < node_numel(c, a, env); e++)
        if (fabs(v[a][e]) < 1e-2)
          return 0;
    }
  return 1;
}

/* Check cell c (dims bound in env) with seed; scale multiplies the analytic
 * gradients (1 normally; the self-test uses another value to see it fail). */
static Check fdcheck(Module *m, Cell *c, const Env *env, uint64_t seed, double scale)
{
  Check ck = {0};
  Grad *g = autodiff_cell(m, c);
  cr_assert(g, "autodiff_cell(%s) failed", c->name);
  const Cell *b = g->bwd;
  cr_assert_eq(b->ninput, g->nsaved + c->nout);
  cr_assert_eq(b->nstate, c->nstate);
  cr_assert_eq(b->nout, c->ninput);
  cr_assert_eq(b->nparam, c->nparam);

  double **v = vals(c, env), **bv = vals(b, env);
  double **w = calloc((size_t)c->nout + 1, sizeof *w), **u = calloc((size_t)c->nstate + 1, sizeof *u);
  rs = seed;
  for (int tries = 0;; tries++) {
    cr_assert(tries < 100, "cannot draw values away from the kinks of %s", c->name);
    int *leaves[3] = {c->input, c->state, c->param};
    int nleaves[3] = {c->ninput, c->nstate, c->nparam};
    for (int l = 0; l < 3; l++)
      for (int k = 0; k < nleaves[l]; k++)
        for (long e = 0; e < node_numel(c, leaves[l][k], env); e++)
          v[leaves[l][k]][e] = uni();
    cell_eval(c, env, v, PREC_F64);
    if (awayfromkinks(c, env, v))
      break;
  }
  for (int j = 0; j < c->nout; j++) {
    w[j] = calloc((size_t)node_numel(c, c->out[j], env), sizeof **w);
    for (long e = 0; e < node_numel(c, c->out[j], env); e++)
      w[j][e] = uni();
  }
  for (int s = 0; s < c->nstate; s++) {
    u[s] = calloc((size_t)node_numel(c, c->state[s], env), sizeof **u);
    for (long e = 0; e < node_numel(c, c->state[s], env); e++)
      u[s][e] = uni();
  }
  double L0 = loss(c, env, v, w, u);
  cr_assert(isfinite(L0));

  /* the backward step */
  for (int k = 0; k < g->nsaved; k++)
    memcpy(bv[b->input[k]], v[g->saved[k]], (size_t)node_numel(c, g->saved[k], env) * sizeof(double));
  for (int j = 0; j < c->nout; j++)
    memcpy(bv[b->input[g->nsaved + j]], w[j], (size_t)node_numel(c, c->out[j], env) * sizeof(double));
  for (int s = 0; s < c->nstate; s++)
    memcpy(bv[b->state[s]], u[s], (size_t)node_numel(c, c->state[s], env) * sizeof(double));
  for (int p = 0; p < c->nparam; p++)
    memcpy(bv[b->param[p]], v[c->param[p]], (size_t)node_numel(c, c->param[p], env) * sizeof(double));
  cell_eval(b, env, bv, PREC_F64);

  /* every element of every leaf: analytic vs numeric */
  const double eps = 1e-3;
  for (int l = 0; l < 3; l++) {
    int n = l == 0 ? c->ninput : l == 1 ? c->nstate : c->nparam;
    for (int k = 0; k < n; k++) {
      int leaf = l == 0 ? c->input[k] : l == 1 ? c->state[k] : c->param[k];
      int an = l == 0 ? b->out[k] : l == 1 ? b->next[k] : b->grad[k];
      for (long e = 0; e < node_numel(c, leaf, env); e++) {
        double x0 = v[leaf][e], Ld[4];
        const double off[4] = {eps, -eps, 2 * eps, -2 * eps};
        for (int q = 0; q < 4; q++) {
          v[leaf][e] = x0 + off[q];
          Ld[q] = loss(c, env, v, w, u);
        }
        v[leaf][e] = x0;
        double num = (8 * (Ld[0] - Ld[1]) - (Ld[2] - Ld[3])) / (12 * eps);
        double ana = an >= 0 ? scale * bv[an][e] : 0;
        double den = fmax(fmax(fabs(ana), fabs(num)), 1e-3);
        double err = fabs(ana - num) / den;
        ck.nchecked++;
        if (!(err <= ck.maxerr)) {
          ck.maxerr = err;
          snprintf(ck.where, sizeof ck.where, "%s '%s' element %ld: analytic %.12g, numeric %.12g",
                   l == 0 ? "input" : l == 1 ? "state" : "param", c->node[leaf].name, e, ana, num);
        }
      }
    }
  }
  loss(c, env, v, w, u);
  for (int j = 0; j < c->nout; j++)
    free(w[j]);
  for (int s = 0; s < c->nstate; s++)
    free(u[s]);
  free(w);
  free(u);
  freevals(c, v);
  freevals(b, bv);
  return ck;
}

/* Bind every dim of c: the k-th gets 3 + k (different sizes catch a swapped
 * transpose). */
static Env bind(Module *m, const Cell *c)
{
  Env env = {0};
  for (int d = 0; d < c->ndim; d++)
    env_set(m->arena, &env, c->dim[d], 3 + d);
  return env;
}

/* Load text, check cell `name`, assert the tolerance; returns the error. */
static double check_cell(const char *text, const char *name)
{
  Module *m = load_text(text);
  cr_assert(m, "%s does not load", name);
  Cell *c = cell_find(m, name);
  cr_assert(c, "no cell %s", name);
  Env env = bind(m, c);
  double worst = 0;
  for (uint64_t seed = 1; seed <= 3; seed++) {
    Check ck = fdcheck(m, c, &env, seed * 7919, 1.0);
    cr_expect(ck.maxerr <= 1e-6, "%s (seed %lu): max relative error %.3g at %s", name,
              (unsigned long)seed, ck.maxerr, ck.where);
    cr_assert(ck.nchecked > 0);
    cr_log_info("%-14s seed %lu: %4ld elements, max error %.2g", name, (unsigned long)seed,
                ck.nchecked, ck.maxerr);
    worst = fmax(worst, ck.maxerr);
  }
  cr_assert_eq(verify_cell(m, c->derived->bwd), RNNC_OK, "%s.backward does not verify", name);
  module_free(m);
  return worst;
}

/* ---- one cell per op ---- */

Test(autodiff_ops, add)
{
  check_cell("cell op_add(x: [N]) state(h: [N]) {\n  param b: [N]\n"
             "  h' = tanh(x + h + b + 1 + zeros([N]))\n  out h'\n}\n", "op_add");
}

Test(autodiff_ops, sub)
{
  check_cell("cell op_sub(x: [N]) state(h: [N]) {\n  param b: [N]\n"
             "  h' = tanh(x - h - b - 0.5) - (1 - x)\n  out h'\n}\n", "op_sub");
}

Test(autodiff_ops, mul)
{
  check_cell("cell op_mul(x: [N]) state(h: [N]) {\n  param b: [N]\n"
             "  h' = x * h * b * 2 + 0.5 * h * h\n  out h'\n}\n", "op_mul");
}

Test(autodiff_ops, div)
{
  check_cell("cell op_div(x: [N]) state(h: [N]) {\n  param b: [N]\n"
             "  h' = x / (h * h + 1) + b / 2 + 1 / (b * b + 1)\n  out h'\n}\n", "op_div");
}

Test(autodiff_ops, matvec)
{
  check_cell("cell op_matvec(x: [I]) state(h: [H]) {\n  param W: [H, I], U: [H, H]\n"
             "  h' = tanh(W @ x + U @ h)\n  out h'\n}\n", "op_matvec");
}

Test(autodiff_ops, matvec_t)
{
  check_cell("cell op_matvec_t(x: [H]) state(h: [I]) {\n  param W: [H, I]\n"
             "  h' = matvec_t(W, x * x) * h\n  out h'\n}\n", "op_matvec_t");
}

Test(autodiff_ops, outer)
{
  check_cell("cell op_outer(x: [I]) state(h: [H]) {\n  param v: [I], W: [H, I]\n"
             "  h' = (outer(h, x) * W) @ v + outer(h, x) @ x\n  out h'\n}\n", "op_outer");
}

Test(autodiff_ops, neg)
{
  check_cell("cell op_neg(x: [N]) state(h: [N]) {\n  h' = neg(x) * h + -h\n  out h'\n}\n", "op_neg");
}

Test(autodiff_ops, sigmoid)
{
  check_cell("cell op_sigmoid(x: [N]) state(h: [N]) {\n  h' = sigmoid(x * h + x)\n  out h'\n}\n", "op_sigmoid");
}

Test(autodiff_ops, tanh)
{
  check_cell("cell op_tanh(x: [N]) state(h: [N]) {\n  h' = tanh(x * h + h)\n  out h'\n}\n", "op_tanh");
}

Test(autodiff_ops, relu)
{
  check_cell("cell op_relu(x: [N]) state(h: [N]) {\n  param b: [N]\n"
             "  h' = relu(x * h + b) + relu(x)\n  out h'\n}\n", "op_relu");
}

Test(autodiff_ops, step)
{
  /* step has no gradient: x reaches h' only through step, so d_x is zero */
  double e = check_cell("cell op_step(x: [N]) state(h: [N]) {\n  h' = step(x) * h\n  out h'\n}\n", "op_step");
  cr_assert(e <= 1e-6);
  Module *m = load_text("cell op_step(x: [N]) state(h: [N]) {\n  h' = step(x) * h\n  out h'\n}\n");
  Grad *g = autodiff_cell(m, cell_find(m, "op_step"));
  cr_assert_eq(g->bwd->node[g->bwd->out[0]].op, OP_ZEROS, "d_x should be zeros([N])");
  module_free(m);
}

Test(autodiff_ops, exp)
{
  check_cell("cell op_exp(x: [N]) state(h: [N]) {\n  h' = exp(x * h) - exp(h)\n  out h'\n}\n", "op_exp");
}

Test(autodiff_ops, log)
{
  check_cell("cell op_log(x: [N]) state(h: [N]) {\n  h' = log(x * x + h * h + 0.5) + log(sigmoid(x))\n"
             "  out h'\n}\n", "op_log");
}

Test(autodiff_ops, split)
{
  /* part b is unused: its slot in the concat is zeros */
  check_cell("cell op_split(x: [N]) state(h: [3*N]) {\n  a, b, c = split(h, 3)\n"
             "  h' = concat(a * x, tanh(c), x * split(h, 3)[0])\n  out h'\n}\n", "op_split");
  Module *m = load_text("cell op_split(x: [N]) state(h: [3*N]) {\n  a, b, c = split(h, 3)\n"
                        "  h' = concat(a * x, tanh(c), x)\n  out h'\n}\n");
  Grad *g = autodiff_cell(m, cell_find(m, "op_split"));
  const Cell *b = g->bwd;
  const Node *dh = &b->node[b->next[0]];
  cr_assert_eq(dh->op, OP_CONCAT, "d_h' should be one concat of the parts");
  cr_assert_eq(dh->narg, 3);
  cr_assert_eq(b->node[dh->arg[1]].op, OP_ZEROS, "part b has no adjoint");
  module_free(m);
}

Test(autodiff_ops, slice)
{
  check_cell("cell op_slice(x: [N + 2]) state(h: [N]) {\n"
             "  h' = slice(x, 1, N) * h + slice(x, 0, N) + tanh(slice(x, 2, N))\n  out h'\n}\n",
             "op_slice");
}

Test(autodiff_ops, concat)
{
  check_cell("cell op_concat(x: [I]) state(h: [H]) {\n  param W: [H, I + H]\n"
             "  h' = tanh(W @ concat(x, h))\n  out h'\n}\n", "op_concat");
}

Test(autodiff_ops, input_unused_and_separate_output)
{
  /* x does not influence anything (d_x = 0); the out is not a state */
  check_cell("cell op_input_unused_and_separate_output(x: [N], y: [N]) state(h: [N], c: [N]) {\n  param b: [N]\n"
             "  h' = tanh(h + b * y)\n  c' = c * h'\n  o = h' * c + 2\n  out o\n}\n", "op_input_unused_and_separate_output");
}

/* Updates that alias a leaf or another state, a constant update, a named
 * constant, an output that is an old state: FD-checked, and the printed
 * backward cell re-parses to the same text. */
static const char *const edges[] = {
    "cell e(x: [N]) state(h: [N], c: [N]) {\n  h' = c\n  c' = h * x\n  out h\n}\n",
    "cell e(x: [N]) state(h: [N]) {\n  h' = h\n  out x * h\n}\n",
    "cell e(x: [N]) state(h: [N], c: [N]) {\n  h' = zeros([N]) + 1\n  c' = x\n  out c * 2\n}\n",
    "cell e(x: [N]) state(h: [N]) {\n  k = 0.5\n  d_x = k * x\n  h' = d_x * h + d_x\n  out h'\n}\n",
    "cell e(d_h: [N]) state(h: [N]) {\n  h' = tanh(d_h * h)\n  out h\n}\n",
};

static char *cell_text(const Cell *c);

Test(autodiff_ops, edge_cells)
{
  for (size_t k = 0; k < sizeof edges / sizeof *edges; k++) {
    Module *m = load_text(edges[k]);
    cr_assert(m, "edge cell %zu does not load", k);
    Cell *c = cell_find(m, "e");
    Env env = bind(m, c);
    Check ck = fdcheck(m, c, &env, 99, 1.0);
    cr_expect(ck.maxerr <= 1e-6, "edge cell %zu: max relative error %.3g at %s", k, ck.maxerr,
              ck.where);
    char *got = cell_text(c->derived->bwd);
    Module *m2 = load_text(got);
    cr_assert(m2, "edge cell %zu: the backward cell does not re-parse:\n%s", k, got);
    char *again = cell_text(cell_find(m2, "e.backward"));
    cr_expect_str_eq(again, got);
    free(again);
    free(got);
    module_free(m2);
    module_free(m);
  }
}

Test(autodiff_ops, checker_fails_on_a_wrong_gradient)
{
  /* the same check with the analytic gradient off by 1e-4 must fail */
  Module *m = load_text("cell t(x: [N]) state(h: [N]) {\n  h' = tanh(x * h)\n  out h'\n}\n");
  Cell *c = cell_find(m, "t");
  Env env = bind(m, c);
  Check ok = fdcheck(m, c, &env, 5, 1.0), bad = fdcheck(m, c, &env, 5, 1.0001);
  cr_assert(ok.maxerr <= 1e-6, "max error %g", ok.maxerr);
  cr_assert(bad.maxerr > 5e-5, "a 1e-4 error went unseen (max error %g)", bad.maxerr);
  module_free(m);
}

/* ---- whole cells ---- */

static const char *const peephole =
    "cell peephole_lstm(x: [I]) state(h: [H], c: [H]) {\n"
    "  param W_ih: [4*H, I], W_hh: [4*H, H], b: [4*H]\n"
    "  param p_i: [H], p_f: [H], p_o: [H]\n"
    "  a_i, a_f, a_g, a_o = split(W_ih @ x + W_hh @ h + b, 4)\n"
    "  i  = sigmoid(a_i + p_i * c)\n"
    "  f  = sigmoid(a_f + p_f * c)\n"
    "  c' = f * c + i * tanh(a_g)\n"
    "  o  = sigmoid(a_o + p_o * c')\n"
    "  h' = o * tanh(c')\n"
    "  out h'\n"
    "}\n";

static const char *const mgu =
    "cell mgu(x: [I]) state(h: [H]) {\n"
    "  param W_f: [H, I], U_f: [H, H], b_f: [H]\n"
    "  param W_h: [H, I], U_h: [H, H], b_h: [H]\n"
    "  f  = sigmoid(W_f @ x + U_f @ h + b_f)\n"
    "  n  = tanh(W_h @ x + U_h @ (f * h) + b_h)\n"
    "  h' = (1 - f) * h + f * n\n"
    "  out h'\n"
    "}\n";

static const char *const indrnn =
    "cell indrnn(x: [I]) state(h: [H]) {\n"
    "  param W: [H, I], u: [H], b: [H]\n"
    "  h' = relu(W @ x + u * h + b)\n"
    "  out h'\n"
    "}\n";

Test(autodiff_cells, rnn) { check_cell("", "rnn"); }
Test(autodiff_cells, gru) { check_cell("", "gru"); }
Test(autodiff_cells, lstm) { check_cell("", "lstm"); }
Test(autodiff_cells, peephole_lstm) { check_cell(peephole, "peephole_lstm"); }
Test(autodiff_cells, mgu) { check_cell(mgu, "mgu"); }
Test(autodiff_cells, indrnn) { check_cell(indrnn, "indrnn"); }

/* Every forward cell written in the examples and the test models. */
Test(autodiff_cells, every_cell_in_the_examples_and_test_models)
{
  const char *pats[] = {"examples/*.rnn", "tests/models/*.rnn", "tests/roundtrip/*.rnn"};
  int ncells = 0;
  for (int k = 0; k < 3; k++) {
    glob_t gl;
    if (glob(srcpath(pats[k]), 0, NULL, &gl) != 0)
      continue;
    for (size_t i = 0; i < gl.gl_pathc; i++) {
      Module *m = load_module(gl.gl_pathv[i]);
      if (!m)
        continue; /* not every test model is meant to verify */
      int nc = m->ncell;
      for (int j = 0; j < nc; j++) {
        Cell *c = m->cell[j];
        int hasgrad = 0;
        for (int p = 0; p < c->nparam; p++)
          hasgrad |= c->grad[p] >= 0;
        if (c->builtin || hasgrad || c->primal)
          continue;
        Env env = bind(m, c);
        Check ck = fdcheck(m, c, &env, 4242, 1.0);
        cr_log_info("%-14s %s: %ld elements, max error %.2g", c->name, gl.gl_pathv[i], ck.nchecked,
                    ck.maxerr);
        cr_expect(ck.maxerr <= 1e-6, "cell %s of %s: max relative error %.3g at %s", c->name,
                  gl.gl_pathv[i], ck.maxerr, ck.where);
        ncells++;
      }
      module_free(m);
    }
    globfree(&gl);
  }
  cr_assert_geq(ncells, 8, "only %d cells found", ncells);
}

Test(autodiff_cells, every_prelude_backward_verifies)
{
  Module *m = module_new();
  const char *names[] = {"rnn", "gru", "lstm"};
  for (int k = 0; k < 3; k++) {
    Cell *c = cell_find(m, names[k]);
    Grad *g = autodiff_cell(m, c);
    cr_assert(g);
    cr_assert_eq(g->bwd->primal, c);
    cr_assert_str_eq(g->bwd->name, aprintf(m->arena, "%s.backward", names[k]));
    cr_assert_eq(verify_cell(m, g->bwd), RNNC_OK);
    cr_assert_eq(m->diags.n, 0, "autodiff left diagnostics");
    cr_assert_eq(autodiff_cell(m, c), g, "the Grad is cached");
    /* same params, in order */
    for (int p = 0; p < c->nparam; p++) {
      cr_assert_eq(g->bwd->node[g->bwd->param[p]].name, c->node[c->param[p]].name);
      cr_assert(shape_eq(&g->bwd->node[g->bwd->param[p]].shape, &c->node[c->param[p]].shape));
    }
    /* the dims are the forward cell's */
    cr_assert_eq(g->bwd->ndim, c->ndim);
    for (int d = 0; d < c->ndim; d++)
      cr_assert_eq(g->bwd->dim[d], c->dim[d]);
  }
  module_free(m);
}

Test(autodiff_cells, lstm_saves_what_the_rules_read)
{
  Module *m = module_new();
  Grad *g = autodiff_cell(m, cell_find(m, "lstm"));
  const char *want[] = {"x", "h", "c", "sigmoid_f", "sigmoid_i", "tanh_g", "sigmoid_o", "tanh_c_next", "d_out"};
  cr_assert_eq(g->bwd->ninput, 9);
  for (int k = 0; k < 9; k++)
    cr_assert_str_eq(g->bwd->node[g->bwd->input[k]].name, want[k]);
  cr_assert_str_eq(g->bwd->node[g->bwd->state[0]].name, "d_h");
  cr_assert_str_eq(g->bwd->node[g->bwd->state[1]].name, "d_c");
  module_free(m);
}

/* ---- golden: the printed LSTM backward cell ---- */

static char *cell_text(const Cell *c)
{
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  print_cell(f, c);
  fclose(f);
  return buf;
}

Test(autodiff_golden, lstm_backward)
{
  Module *m = module_new();
  Grad *g = autodiff_cell(m, cell_find(m, "lstm"));
  char *got = cell_text(g->bwd);
  char *want = read_file(srcpath("tests/golden/lstm.backward.rnn"));
  cr_assert(want, "tests/golden/lstm.backward.rnn is missing");
  /* the golden file may start with comment lines */
  const char *body = strstr(want, "cell lstm.backward");
  cr_assert(body);
  cr_assert_str_eq(got, body, "printed:\n%s", got);

  /* it re-parses, verifies and prints the same */
  Module *m2 = load_text(got);
  cr_assert(m2, "the printed backward cell does not re-parse:\n%s", got);
  Cell *c2 = cell_find(m2, "lstm.backward");
  cr_assert(c2);
  char *again = cell_text(c2);
  cr_assert_str_eq(again, got);
  free(again);
  free(got);
  free(want);
  module_free(m2);
  module_free(m);
}

Test(autodiff_golden, every_backward_cell_reparses)
{
  const char *texts[] = {"", "", "", peephole, mgu, indrnn};
  const char *names[] = {"rnn", "gru", "lstm", "peephole_lstm", "mgu", "indrnn"};
  for (int k = 0; k < 6; k++) {
    Module *m = load_text(texts[k]);
    Grad *g = autodiff_cell(m, cell_find(m, names[k]));
    char *got = cell_text(g->bwd);
    Module *m2 = load_text(got);
    cr_assert(m2, "%s.backward does not re-parse:\n%s", names[k], got);
    char *again = cell_text(cell_find(m2, g->bwd->name));
    cr_assert_str_eq(again, got);
    free(again);
    free(got);
    module_free(m2);
    module_free(m);
  }
}

Test(autodiff_cells, backward_name_taken)
{
  Module *m = load_text("cell t.backward(x: [N]) state(h: [N]) {\n  h' = tanh(x + h)\n  out h'\n}\n"
                        "cell t(x: [N]) state(h: [N]) {\n  h' = tanh(x * h)\n  out h'\n}\n");
  cr_assert(m);
  int ncell = m->ncell;
  cr_assert_null(autodiff_cell(m, cell_find(m, "t")));
  cr_assert_eq(m->ncell, ncell, "no cell is added on error");
  cr_assert_eq(m->diags.nerror, 1);
  cr_assert_str_eq(m->diags.d[0].msg,
                   "cell 't.backward' takes the name of the backward cell that autodiff derives for 't'");
  cr_assert_eq(m->diags.d[0].loc.line, 1);
  module_free(m);
}

/* ---- models ---- */

Test(autodiff_model, no_loss)
{
  Module *m = load_text("model p(V = 5, H = 4) {\n  input tokens: i32[T, B]\n"
                        "  x = embedding(tokens, V, H)\n  h = rnn(x, H = H)\n"
                        "  s = softmax(h, V)\n  output s\n}\n");
  cr_assert(m);
  cr_assert_null(autodiff(m, m->model[0]));
  cr_assert_eq(m->diags.nerror, 1);
  cr_assert_str_eq(m->diags.d[0].msg,
                   "model 'p' has no loss to differentiate (no softmax with a target, no sum)");
  module_free(m);
}

Test(autodiff_model, stacked_layers_share_one_backward_cell)
{
  Module *m = load_module(srcpath("tests/fixtures/lstm2.rnn"));
  cr_assert(m);
  Model *md = m->model[0];
  ModelGrad *g = autodiff(m, md);
  cr_assert(g);
  int l1 = -1, l2 = -1, tok = -1, scores = -1, emb = -1;
  for (int i = 0; i < md->nnode; i++) {
    const char *n = md->node[i].name ? md->node[i].name : "";
    if (!strcmp(n, "l1")) l1 = i;
    if (!strcmp(n, "l2")) l2 = i;
    if (!strcmp(n, "tokens")) tok = i;
    if (!strcmp(n, "scores")) scores = i;
    if (!strcmp(n, "emb")) emb = i;
  }
  cr_assert(l1 >= 0 && l2 >= 0 && tok >= 0 && scores >= 0 && emb >= 0);
  cr_assert(g->cellgrad[l1]);
  cr_assert_eq(g->cellgrad[l1], g->cellgrad[l2]);
  cr_assert_null(g->cellgrad[emb]);
  cr_assert_eq(g->needgrad[l1], 1);
  cr_assert_eq(g->needgrad[emb], 1);
  cr_assert_eq(g->needgrad[md->loss], 1);
  cr_assert_eq(g->needgrad[tok], 0, "token ids are not differentiated");
  cr_assert_eq(g->needgrad[scores], 0, "logits(out) is not on the loss's path");
  int nbackward = 0;
  for (int i = 0; i < m->ncell; i++)
    nbackward += m->cell[i]->primal != NULL;
  cr_assert_eq(nbackward, 1);
  module_free(m);
}

static char *bptt_schedule(const char *path)
{
  Module *m = load_module(srcpath(path));
  cr_assert(m, "%s does not load", path);
  ModelGrad *g = autodiff(m, m->model[m->nmodel - 1]);
  cr_assert(g);
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  print_schedule(f, g);
  fclose(f);
  module_free(m);
  for (char *p = buf; *p; p = strchr(p, '\n') + 1) {
    cr_assert_eq(*p, '#', "a schedule line is not a comment:\n%s", buf);
    if (!strchr(p, '\n'))
      break;
  }
  return buf;
}

#define HAS(text, s) cr_assert(strstr((text), (s)), "missing \"%s\" in:\n%s", (s), (text))

Test(autodiff_model, schedule_bidirectional)
{
  char *s = bptt_schedule("tests/fixtures/bilstm.rnn");
  HAS(s, "enc.fwd = lstm(emb[t]), t = 1..T: h, c start from zeros");
  HAS(s, "enc.bwd = lstm(emb[t]), t = T..1 (backward direction)");
  HAS(s, "saves per step and example, for lstm.backward: x [E], h [H], c [H], sigmoid_f [H]");
  HAS(s, "out: fused softmax + cross-entropy: d_logits = (probs - onehot(tags)) / N,"
         " N = the number of targets not equal to -1");
  HAS(s, "hs: d_enc.fwd += d_hs[.., 0 : H]; d_enc.bwd += d_hs[.., H : 2*H];");
  HAS(s, "enc.bwd: t = 1..T: lstm.backward(saved values of step t, d_out = d_enc.bwd[t]),"
         " carrying its states d_h, d_c");
  HAS(s, "enc.fwd: t = T..1: lstm.backward(saved values of step t, d_out = d_enc.fwd[t]),");
  HAS(s, "d_emb[t] += its out d_x (the adjoint of input x)");
  HAS(s, "after t = T: its d_h, d_c, the adjoints of the zero initial states, are dropped");
  HAS(s, "accumulates grad.enc.fwd.W_ih, grad.enc.fwd.W_hh, grad.enc.fwd.b_ih, grad.enc.fwd.b_hh");
  HAS(s, "emb: row updates, for every t, b: grad.emb.weight[tokens[t, b]] += d_emb[t, b]");
  /* backward order: loss first, embedding last */
  cr_assert(strstr(s, "out: fused") < strstr(s, "enc.bwd: t = 1..T"));
  cr_assert(strstr(s, "enc.fwd: t = T..1") < strstr(s, "emb: row updates"));
  free(s);
}

Test(autodiff_model, schedule_seq2seq)
{
  char *s = bptt_schedule("examples/seq2seq.rnn");
  HAS(s, "dec = lstm(xt[t]), t = 1..T: h, c start from the final states of enc");
  HAS(s, "enc = lstm(xs[t]), t = 1..S: h, c start from zeros");
  HAS(s, "before t = S, its d_h, d_c start as the adjoints of dec's initial states (init = enc)");
  HAS(s, "before t = T, its d_h, d_c start at zero");
  HAS(s, "# loss: loss, the mean cross-entropy of softmax(dec) against tgt_out.");
  HAS(s, "after t = 1: its d_h, d_c are the adjoints of enc's final states (init = enc)");
  HAS(s, "enc: t = S..1: lstm.backward(saved values of step t, d_out = 0), carrying its states");
  cr_assert(strstr(s, "dec: t = T..1") < strstr(s, "enc: t = S..1"));
  free(s);
}

Test(autodiff_model, schedule_many_to_one)
{
  char *s = bptt_schedule("examples/gru_classifier.rnn");
  HAS(s, "last(h): d_h[T] += d_last(h) (the other steps get nothing)");
  HAS(s, "N = B");
  free(s);
}
