/* test_gradcheck.c — the interpreter's float64 gradients against central
 * finite differences (max error <= 1e-6, as gradcheck.c defines it) on every
 * example model and on the small models in tests/models/; and a corrupted
 * backward cell, which the check must catch. */
#include <criterion/criterion.h>
#include <glob.h>
#include <math.h>
#include <string.h>

#include "testutil.h"

/* Gradcheck every model of a file; returns how many were checked. */
static int check_file(const char *path, uint64_t seed)
{
  Module *m = load_module(path);
  cr_assert(m, "%s does not load", path);
  int n = 0;
  for (int k = 0; k < m->nmodel; k++) {
    Model *md = m->model[k];
    if (md->loss < 0)
      continue;
    GradcheckReport r;
    char err[256];
    int st = gradcheck(m, md, NULL, seed, NULL, &r, err, sizeof err);
    cr_assert_eq(st, RNNC_OK, "%s: %s", path, err);
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    fprintf(stderr, "gradcheck %-22s %-18s loss %.6f  max err %.2e over %d tensors\n", base,
            md->name, r.loss, r.maxerr, r.n);
    for (int i = 0; i < r.n; i++) {
      const GradcheckTensor *t = &r.t[i];
      cr_expect(t->maxerr <= 1e-6, "%s %s: %s[%ld] analytic %.12g numeric %.12g err %.3g", base,
                md->name, t->name, t->worst, t->analytic, t->numeric, t->maxerr);
      /* 16 coordinates drawn (all of a smaller tensor); at most one may sit
       * on a kink of a relu or step and be skipped */
      cr_assert(t->checked + t->skipped == (t->numel < 16 ? t->numel : 16), "%s", t->name);
      cr_assert(t->checked > 0 && t->skipped <= 1, "%s: %ld skipped", t->name, t->skipped);
    }
    cr_assert(r.pass, "%s %s: max error %.3g", base, md->name, r.maxerr);
    cr_assert(r.n > 0);
    gradcheck_report_free(&r);
    n++;
  }
  module_free(m);
  return n;
}

Test(gradcheck, every_example_model, .timeout = 600)
{
  glob_t g;
  int rc = glob(srcpath("examples/*.rnn"), 0, NULL, &g);
  cr_assert_eq(rc, 0, "no examples/*.rnn");
  int n = 0;
  for (size_t i = 0; i < g.gl_pathc; i++)
    n += check_file(g.gl_pathv[i], 1);
  globfree(&g);
  cr_assert(n >= 1);
}

#define MODEL_TEST(name)                                                \
  Test(gradcheck, name, .timeout = 300)                                 \
  {                                                                     \
    cr_assert_eq(check_file(srcpath("tests/models/" #name ".rnn"), 1), 1); \
  }

MODEL_TEST(rnn_lm)
MODEL_TEST(gru_lm)
MODEL_TEST(lstm_lm)
MODEL_TEST(lstm2_lm)
MODEL_TEST(bilstm_tagger)
MODEL_TEST(gru_classifier)
MODEL_TEST(seq2seq)
MODEL_TEST(sum_loss)
MODEL_TEST(allops)
MODEL_TEST(outer_cell)

/* Initial states given as inputs: their gradients are checked, and are not
 * all zero. */
Test(gradcheck, float_inputs_and_initial_states, .timeout = 300)
{
  Module *m = load_module(srcpath("tests/models/features_init.rnn"));
  cr_assert(m);
  GradcheckReport r;
  char err[256];
  cr_assert_eq(gradcheck(m, m->model[0], NULL, 3, NULL, &r, err, sizeof err), RNNC_OK, "%s", err);
  const char *want[] = {"grad.feats", "grad.h0", "grad.c0"};
  for (int k = 0; k < 3; k++) {
    const GradcheckTensor *t = NULL;
    for (int i = 0; i < r.n; i++)
      if (strcmp(r.t[i].name, want[k]) == 0)
        t = &r.t[i];
    cr_assert(t, "no %s in the report", want[k]);
    cr_assert_gt(t->checked, 0);
    cr_assert(t->maxerr <= 1e-6, "%s: %.3g", want[k], t->maxerr);
    cr_assert(fabs(t->analytic) > 0, "%s: zero gradient", want[k]);
  }
  cr_assert(r.pass, "max error %.3g", r.maxerr);
  gradcheck_report_free(&r);
  module_free(m);
}

/* Replace node q's use as `which` (a parameter's gradient, or the input
 * adjoint out[0]) in backward cell bc by q * 1.01: a wrong derivative. */
static void corrupt(Module *m, Cell *bc, int *which)
{
  int q = *which;
  Loc loc = {0};
  int c = cell_add(m, bc, OP_CONST, NULL, loc, NULL, 0);
  bc->node[c].cval = 1.01;
  bc->node[c].shape = (Shape){0};
  int y = cell_add(m, bc, OP_MUL, NULL, loc, (int[]){q, c}, 2);
  bc->node[y].shape = bc->node[q].shape;
  *which = y;
}

static const GradcheckTensor *tensor(const GradcheckReport *r, const char *name)
{
  for (int i = 0; i < r->n; i++)
    if (strcmp(r->t[i].name, name) == 0)
      return &r->t[i];
  cr_assert_fail("no %s in the report", name);
  return NULL;
}

/* The check can fail: scale the backward cell's W_hh gradient by 1.01 and
 * only grad.h.W_hh fails, with an error of 0.01/1.01; scale the input adjoint
 * and the embedding's gradient (upstream of it) fails. */
Test(gradcheck, a_corrupted_derivative_fails, .timeout = 300)
{
  for (int mode = 0; mode < 2; mode++) {
    Module *m = load_module(srcpath("tests/models/rnn_lm.rnn"));
    cr_assert(m);
    Model *md = m->model[0];
    ModelGrad *g = autodiff(m, md);
    cr_assert(g);
    int h = -1;
    for (int i = 0; i < md->nnode; i++)
      if (md->node[i].kind == M_CELL)
        h = i;
    Cell *bc = g->cellgrad[h]->bwd;
    if (mode == 0) {
      int p = 0;
      while (p < bc->nparam && strcmp(bc->node[bc->param[p]].name, "W_hh") != 0)
        p++;
      cr_assert(p < bc->nparam && bc->grad[p] >= 0);
      corrupt(m, bc, &bc->grad[p]);
    } else {
      corrupt(m, bc, &bc->out[0]);
    }
    GradcheckOpts o = {.grad = g};
    GradcheckReport r;
    char err[256];
    cr_assert_eq(gradcheck(m, md, NULL, 1, &o, &r, err, sizeof err), RNNC_OK, "%s", err);
    cr_assert_not(r.pass, "a wrong derivative passed the check");
    if (mode == 0) {
      const GradcheckTensor *t = tensor(&r, "grad.h.W_hh");
      cr_assert(fabs(t->maxerr - 0.01 / 1.01) < 1e-5, "grad.h.W_hh error %.6g", t->maxerr);
      for (int i = 0; i < r.n; i++)
        if (&r.t[i] != t)
          cr_assert(r.t[i].maxerr <= 1e-6, "%s: %.3g", r.t[i].name, r.t[i].maxerr);
    } else {
      cr_assert_gt(tensor(&r, "grad.x.weight")->maxerr, 1e-3);
      cr_assert_leq(tensor(&r, "grad.loss.weight")->maxerr, 1e-6);
    }
    gradcheck_report_free(&r);
    module_free(m);
  }
}
