/* test_parity.c — PyTorch parity of the reference interpreter in float32.
 *
 * Each case in tests/fixtures/ (written by tools/gen_fixtures.py with
 * python3-torch; the test itself never needs PyTorch) is an nn.Embedding ->
 * nn.RNN / 2-layer nn.LSTM / nn.GRU / bidirectional nn.LSTM -> nn.Linear ->
 * nn.CrossEntropyLoss model together with its rnnc text. We parse and verify
 * the .rnn, differentiate it, run it with the interpreter in PREC_F32 on the
 * same parameters and inputs, and require every declared output (hidden
 * sequence, logits, loss) and the gradient of every parameter to agree with
 * PyTorch's within relative 1e-5 (definition at rel_error).
 */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "testutil.h"

#define PARITY_TOL 1e-5

/* The relative error of ours against ref, norm-wise:
 *
 *   rel = max_i |a_i - b_i| / max(max_i |b_i|, FLT_MIN)
 *
 * Why the tensor's max and not each element's own magnitude: both sides are
 * float32 computations, so an element carries an absolute error of a few ulps
 * of the terms it was summed from, and those are on the scale of the tensor's
 * large entries. An element that is near zero because terms cancel (a gradient
 * summed over time steps and batch, a logit close to 0) has a tiny value but
 * not a tiny error, and an element-wise ratio would judge rounding luck. The
 * norm-wise bound is the usual one for float results (Higham, "Accuracy and
 * Stability of Numerical Algorithms", 1.2) and still fails on any element that
 * is off by more than 1e-5 of the tensor's scale. FLT_MIN keeps an all-zero
 * reference well defined: then any nonzero difference fails. A NaN anywhere
 * gives NaN, which fails `rel <= tol`.
 * *worst is the index of the element with the largest |a - b|. */
static double rel_error(const float *a, const float *b, int64_t n, int64_t *worst)
{
  double maxdiff = 0, maxref = 0;
  *worst = 0;
  for (int64_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - (double)b[i]);
    if (isnan(d))
      return NAN;
    if (d > maxdiff) {
      maxdiff = d;
      *worst = i;
    }
    if (fabs((double)b[i]) > maxref)
      maxref = fabs((double)b[i]);
  }
  return maxdiff / fmax(maxref, FLT_MIN);
}

static void shape_text(const Tensor *t, char *buf, size_t n)
{
  size_t k = (size_t)snprintf(buf, n, "[");
  for (int i = 0; i < t->rank && k < n; i++)
    k += (size_t)snprintf(buf + k, n - k, i ? ", %lld" : "%lld", (long long)t->dim[i]);
  if (k < n)
    snprintf(buf + k, n - k, "]");
}

/* Compare one tensor by name, llm.c check_tensor style: print a line for it
 * when it fails (or always when verbose). Returns its relative error, or
 * INFINITY when either side lacks it or the dtype or shape differ. */
static double check_tensor(const char *tag, const char *name, const TensorSet *ours,
                           const TensorSet *ref, int verbose)
{
  const Tensor *a = tset_find(ours, name), *b = tset_find(ref, name);
  char sa[64], sb[64];
  if (!a || !b) {
    fprintf(stderr, "%s: %s: missing in %s\n", tag, name,
            !a && !b ? "both" : !a ? "ours" : "the reference");
    return INFINITY;
  }
  shape_text(a, sa, sizeof sa);
  shape_text(b, sb, sizeof sb);
  if (a->dtype != DT_F32 || b->dtype != DT_F32 || strcmp(sa, sb)) {
    fprintf(stderr, "%s: %s: ours %s %s, reference %s %s\n", tag, name,
            dtype_name(a->dtype), sa, dtype_name(b->dtype), sb);
    return INFINITY;
  }
  int64_t worst;
  double rel = rel_error(a->data, b->data, tensor_numel(b), &worst);
  if (verbose || !(rel <= PARITY_TOL))
    fprintf(stderr, "%s: %-18s %-9s rel %.2e%s (worst [%lld]: ours %.9g, ref %.9g)\n", tag,
            name, sb, rel, rel <= PARITY_TOL ? "" : "  FAIL", (long long)worst,
            ((const float *)a->data)[worst], ((const float *)b->data)[worst]);
  return rel;
}

/* Every declared output of md and the gradient of every parameter of every
 * node, looked up by the names the model itself gives them (so a parameter
 * whose gradient is missing on either side fails, and so does an expected
 * file that lacks one). Returns the worst relative error (INFINITY when
 * something is missing); *ntensor counts the tensors compared. */
static double check_all(const char *tag, const Model *md, const TensorSet *ours,
                        const TensorSet *ref, int verbose, int *ntensor)
{
  double worst = 0;
  char name[256];
  *ntensor = 0;
  for (int i = 0; i < md->noutput; i++) {
    double r = check_tensor(tag, md->node[md->output[i]].name, ours, ref, verbose);
    worst = !(r <= worst) ? r : worst;
    ++*ntensor;
  }
  for (int i = 0; i < md->nnode; i++)
    for (int p = 0; p < md->node[i].nparam; p++) {
      snprintf(name, sizeof name, "grad.%s", md->node[i].param[p].full);
      double r = check_tensor(tag, name, ours, ref, verbose);
      worst = !(r <= worst) ? r : worst;
      ++*ntensor;
    }
  return worst;
}

static int count_params(const Model *md)
{
  int n = 0;
  for (int i = 0; i < md->nnode; i++)
    n += md->node[i].nparam;
  return n;
}

/* One fixture case, loaded and run. */
typedef struct Case {
  Module *m;
  Model *md;
  ModelGrad *g;
  TensorSet params, inputs, expected, ours;
} Case;

static void case_load(Case *c, const char *name)
{
  char rel[256], err[512];
  memset(c, 0, sizeof *c);
  tset_init(&c->params);
  tset_init(&c->inputs);
  tset_init(&c->expected);
  tset_init(&c->ours);
  snprintf(rel, sizeof rel, "tests/fixtures/%s.rnn", name);
  c->m = load_module(srcpath(rel));
  cr_assert_not_null(c->m, "%s does not parse and verify", rel);
  c->md = model_find(c->m, NULL);
  cr_assert_not_null(c->md, "%s: no model", rel);
  c->g = autodiff(c->m, c->md);
  if (!c->g)
    diags_print(stderr, &c->m->diags);
  cr_assert_not_null(c->g, "%s: autodiff failed", rel);
  static const char *const kind[] = {"params", "inputs", "expected"};
  TensorSet *set[] = {&c->params, &c->inputs, &c->expected};
  for (int i = 0; i < 3; i++) {
    snprintf(rel, sizeof rel, "tests/fixtures/%s.%s.safetensors", name, kind[i]);
    int st = safetensors_read(srcpath(rel), set[i], err, sizeof err);
    cr_assert_eq(st, RNNC_OK, "%s", err);
  }
  /* The parameter file holds exactly the model's parameters. */
  cr_assert_eq(c->params.n, count_params(c->md), "%s: %d tensors in the params file, %d params",
               name, c->params.n, count_params(c->md));
}

static void case_run(Case *c)
{
  char err[512] = "";
  Env env = {0};
  InterpOpts o = {.prec = PREC_F32, .wantgrad = 1};
  tset_clear(&c->ours);
  tset_init(&c->ours);
  int st = interp_run(c->m, c->md, c->g, &env, &c->params, &c->inputs, &o, &c->ours, err,
                      sizeof err);
  cr_assert_eq(st, RNNC_OK, "interp_run: %s", err);
}

static void case_free(Case *c)
{
  tset_clear(&c->params);
  tset_clear(&c->inputs);
  tset_clear(&c->expected);
  tset_clear(&c->ours);
  module_free(c->m);
}

static void parity(const char *name)
{
  Case c;
  int n;
  case_load(&c, name);
  case_run(&c);
  double worst = check_all(name, c.md, &c.ours, &c.expected, 0, &n);
  /* Every tensor of the expected file was compared: none is left unchecked. */
  cr_expect_eq(n, c.expected.n, "%s: compared %d tensors, the expected file has %d", name, n,
               c.expected.n);
  fprintf(stderr, "parity %-7s %2d tensors, max relative error %.2e\n", name, n, worst);
  cr_expect(worst <= PARITY_TOL, "%s: relative error %.3g > %g", name, worst, PARITY_TOL);
  case_free(&c);
}

Test(parity, rnn) { parity("rnn"); }
Test(parity, lstm2) { parity("lstm2"); }
Test(parity, gru) { parity("gru"); }
Test(parity, bilstm) { parity("bilstm"); }

/* The comparison can fail: nudge one parameter by ten times the tolerance of
 * the logits it feeds (out.bias[0] moves every class-0 logit by exactly that),
 * rerun, and the logits, the loss and the gradients no longer match. */
Test(parity, perturbed_parameter_fails)
{
  Case c;
  int n;
  case_load(&c, "lstm2");
  Tensor *bias = tset_find(&c.params, "out.bias");
  const Tensor *scores = tset_find(&c.expected, "scores");
  cr_assert(bias && scores);
  double scale = 0;
  for (int64_t i = 0; i < tensor_numel(scores); i++)
    scale = fmax(scale, fabs(((const float *)scores->data)[i]));
  ((float *)bias->data)[0] += (float)(10 * PARITY_TOL * scale);
  case_run(&c);
  fprintf(stderr, "(the failures below are expected: out.bias[0] was perturbed)\n");
  double r = check_tensor("perturbed", "scores", &c.ours, &c.expected, 1);
  cr_expect(r > PARITY_TOL && r < 20 * PARITY_TOL, "scores rel %.3g, want about %g", r,
            10 * PARITY_TOL);
  double all = check_all("perturbed", c.md, &c.ours, &c.expected, 0, &n);
  cr_expect(all > PARITY_TOL, "a perturbed parameter went unnoticed: rel %.3g", all);
  case_free(&c);
}

/* A missing gradient fails: drop one from our results (by renaming it). */
Test(parity, missing_gradient_fails)
{
  Case c;
  int n;
  case_load(&c, "bilstm");
  case_run(&c);
  Tensor *t = tset_find(&c.ours, "grad.enc.bwd.W_hh");
  cr_assert_not_null(t, "no grad.enc.bwd.W_hh in the interpreter's results");
  t->name[0] = 'x';
  double r = check_all("missing", c.md, &c.ours, &c.expected, 0, &n);
  cr_expect(isinf(r), "a missing gradient went unnoticed: rel %.3g", r);
  case_free(&c);
}

/* The comparison itself: one element off by 2e-5 of the tensor's scale fails,
 * by 5e-6 passes; a NaN fails; an all-zero reference accepts only zeros. */
Test(parity, rel_error_definition)
{
  float ref[4] = {0.5f, -2.0f, 1e-9f, 1.0f}, a[4];
  int64_t w;
  memcpy(a, ref, sizeof a);
  cr_expect_float_eq(rel_error(a, ref, 4, &w), 0.0, 0.0);
  a[2] += 4e-5f; /* 2e-5 of max|ref| = 2 */
  double r = rel_error(a, ref, 4, &w);
  cr_expect(r > PARITY_TOL && w == 2, "rel %.3g at %lld", r, (long long)w);
  a[2] = ref[2] + 1e-5f; /* 5e-6 of the scale, though 1e4 times the element */
  r = rel_error(a, ref, 4, &w);
  cr_expect(r <= PARITY_TOL, "rel %.3g", r);
  a[1] = NAN;
  cr_expect(!(rel_error(a, ref, 4, &w) <= PARITY_TOL));
  float z[2] = {0, 0}, nz[2] = {0, 1e-30f};
  cr_expect(rel_error(z, z, 2, &w) == 0);
  cr_expect(rel_error(nz, z, 2, &w) > PARITY_TOL);
}
