/* test_optim.c — the compiled optimizer step (compiler/optgen.c,
 * runtime/optim.c).
 *
 * Against PyTorch: tests/fixtures/optim.safetensors (tools/gen_optim_fixtures.py)
 * holds 3 steps of SGD, SGD with momentum, Adam and AdamW, with and without
 * clipping by global norm (once also by value, once with a step schedule and
 * weight decay in several), on parameters of 7x13, 33 and 1 elements. Each
 * step's norm must be within 1e-6 (relative) of clip_grad_norm_'s, and each
 * parameter within 1e-6 of PyTorch's, relative to the tensor's largest value.
 *
 * Then properties PyTorch cannot check: learning rates of each schedule at
 * chosen steps (exact where the formula is exact), bitwise identical results
 * for 1, 2 and 3 threads on parameters of several chunks, a bitwise C
 * reference for SGD over every element of multi-chunk parameters, frozen
 * parameters, a non-finite gradient (index, message, nothing changed), a save
 * and restore that continues bitwise like an uninterrupted run, restore and
 * config errors (exact messages), and the generated module verifying.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <llvm-c/Analysis.h>
#include <llvm-c/Core.h>

#include "testutil.h"

static uint64_t rs;
static double uni(void) /* [-1, 1), splitmix64 */
{
  uint64_t z = (rs += 0x9e3779b97f4a7c15u);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  z ^= z >> 31;
  return (double)(z >> 11) / 9007199254740992.0 * 2 - 1;
}

/* ---- a set of parameters with their own buffers ------------------------------- */

enum { MAXP = 8 };
typedef struct PSet {
  int np;
  OptParam p[MAXP];
  char name[MAXP][32];
} PSet;

static void pset_init(PSet *s, int np, const int64_t *numel, const int *frozen)
{
  memset(s, 0, sizeof *s);
  s->np = np;
  for (int i = 0; i < np; i++) {
    snprintf(s->name[i], sizeof s->name[i], "p%d.w", i);
    s->p[i].name = s->name[i];
    s->p[i].numel = numel[i];
    s->p[i].frozen = frozen ? frozen[i] : 0;
    s->p[i].w = malloc(sizeof(float) * (size_t)numel[i]);
    s->p[i].g = malloc(sizeof(float) * (size_t)numel[i]);
    cr_assert(s->p[i].w && s->p[i].g);
  }
}

static void pset_copy(PSet *dst, const PSet *src)
{
  int64_t n[MAXP];
  int fr[MAXP];
  for (int i = 0; i < src->np; i++)
    n[i] = src->p[i].numel, fr[i] = src->p[i].frozen;
  pset_init(dst, src->np, n, fr);
  for (int i = 0; i < src->np; i++) {
    memcpy(dst->p[i].w, src->p[i].w, sizeof(float) * (size_t)n[i]);
    memcpy(dst->p[i].g, src->p[i].g, sizeof(float) * (size_t)n[i]);
  }
}

static void pset_free(PSet *s)
{
  for (int i = 0; i < s->np; i++)
    free(s->p[i].w), free(s->p[i].g);
}

/* Weights uniform in [-1, 1); gradients uniform times gscale (seeded). */
static void fill_w(PSet *s, uint64_t seed)
{
  rs = seed;
  for (int i = 0; i < s->np; i++)
    for (int64_t e = 0; e < s->p[i].numel; e++)
      s->p[i].w[e] = (float)uni();
}
static void fill_g(PSet *s, uint64_t seed, double gscale)
{
  rs = seed;
  for (int i = 0; i < s->np; i++)
    for (int64_t e = 0; e < s->p[i].numel; e++)
      s->p[i].g[e] = (float)(uni() * gscale);
}

static int same_w(const PSet *a, const PSet *b)
{
  for (int i = 0; i < a->np; i++)
    if (memcmp(a->p[i].w, b->p[i].w, sizeof(float) * (size_t)a->p[i].numel))
      return 0;
  return 1;
}

static Optim *mkopt(const OptConfig *c, const PSet *s)
{
  char err[512];
  Optim *o = NULL;
  int rc = optim_new(c, s->p, s->np, &o, err, sizeof err);
  cr_assert_eq(rc, RNNC_OK, "optim_new: %s", err);
  return o;
}

static double step1(Optim *o, int nthreads)
{
  char err[512];
  double norm;
  int bad;
  int rc = optim_step(o, nthreads, &norm, &bad, err, sizeof err);
  cr_assert_eq(rc, RNNC_OK, "optim_step: %s", err);
  cr_assert_eq(bad, -1);
  return norm;
}

static OptConfig config(int kind)
{
  OptConfig c = {0};
  c.kind = kind;
  c.lr = kind == OPT_SGD ? 0.1 : 1e-3;
  c.beta1 = 0.9, c.beta2 = 0.999, c.eps = 1e-8;
  c.sched = LR_CONSTANT;
  return c;
}

/* ---- PyTorch fixtures ----------------------------------------------------------- */

static double jnum(json_t *o, const char *key)
{
  json_t *v = json_object_get(o, key);
  cr_assert(v && json_is_number(v), "config has no number '%s'", key);
  return json_number_value(v);
}

static OptConfig config_from_json(const char *text)
{
  json_error_t je;
  json_t *j = json_loads(text, 0, &je);
  cr_assert(j, "config: %s", je.text);
  OptConfig c = {0};
  const char *kind = json_string_value(json_object_get(j, "kind"));
  const char *sched = json_string_value(json_object_get(j, "sched"));
  cr_assert(kind && sched);
  c.kind = !strcmp(kind, "sgd") ? OPT_SGD : !strcmp(kind, "adam") ? OPT_ADAM : OPT_ADAMW;
  cr_assert(c.kind != OPT_ADAMW || !strcmp(kind, "adamw"), "kind '%s'", kind);
  c.lr = jnum(j, "lr");
  c.momentum = jnum(j, "momentum");
  c.beta1 = jnum(j, "beta1");
  c.beta2 = jnum(j, "beta2");
  c.eps = jnum(j, "eps");
  c.weight_decay = jnum(j, "weight_decay");
  c.clip_norm = jnum(j, "clip_norm");
  c.clip_value = jnum(j, "clip_value");
  cr_assert(!strcmp(sched, "constant") || !strcmp(sched, "step"), "sched '%s'", sched);
  c.sched = !strcmp(sched, "step") ? LR_STEP : LR_CONSTANT;
  c.step_size = (int64_t)jnum(j, "step_size");
  c.gamma = jnum(j, "gamma");
  json_decref(j);
  return c;
}

static const float *fixture(const TensorSet *ts, const char *name, int64_t numel)
{
  Tensor *t = tset_find(ts, name);
  cr_assert(t, "fixture has no '%s'", name);
  cr_assert_eq(t->dtype, DT_F32);
  cr_assert_eq(tensor_numel(t), numel, "'%s'", name);
  return t->data;
}

Test(optim, pytorch_fixtures)
{
  char err[512], key[1024];
  TensorSet ts;
  tset_init(&ts);
  int rc = safetensors_read(srcpath("tests/fixtures/optim.safetensors"), &ts, err, sizeof err);
  cr_assert_eq(rc, RNNC_OK, "%s", err);
  const char *cases = tset_getmeta(&ts, "cases"), *pnames = tset_getmeta(&ts, "params");
  cr_assert(cases && pnames);
  /* the parameters, in the fixture's order */
  char pn[MAXP][32];
  int np = 0;
  for (const char *q = pnames; *q; np++) {
    size_t n = strcspn(q, ",");
    cr_assert(np < MAXP && n < sizeof pn[0]);
    memcpy(pn[np], q, n), pn[np][n] = 0;
    q += n + (q[n] == ',');
  }
  cr_assert_eq(np, 3);
  int64_t numel[MAXP];
  for (int i = 0; i < np; i++) {
    snprintf(key, sizeof key, "w0.%s", pn[i]);
    Tensor *t = tset_find(&ts, key);
    cr_assert(t, "no '%s'", key);
    numel[i] = tensor_numel(t);
  }
  int ncase = 0;
  double worst = 0, worstnorm = 0;
  long nel = 0, nexact = 0; /* parameter elements, and those bitwise PyTorch's */
  for (const char *q = cases; *q; ncase++) {
    char name[64];
    size_t n = strcspn(q, ",");
    cr_assert(n < sizeof name);
    memcpy(name, q, n), name[n] = 0;
    q += n + (q[n] == ',');
    snprintf(key, sizeof key, "%s.config", name);
    const char *cj = tset_getmeta(&ts, key);
    cr_assert(cj, "no '%s'", key);
    OptConfig c = config_from_json(cj);
    PSet s;
    pset_init(&s, np, numel, NULL);
    for (int i = 0; i < np; i++) {
      strcpy(s.name[i], pn[i]);
      snprintf(key, sizeof key, "w0.%s", pn[i]);
      memcpy(s.p[i].w, fixture(&ts, key, numel[i]), sizeof(float) * (size_t)numel[i]);
    }
    Optim *o = mkopt(&c, &s);
    for (int k = 1; k <= 3; k++) {
      for (int i = 0; i < np; i++) {
        snprintf(key, sizeof key, "g%d.%s", k, pn[i]);
        memcpy(s.p[i].g, fixture(&ts, key, numel[i]), sizeof(float) * (size_t)numel[i]);
      }
      double norm = step1(o, 2);
      snprintf(key, sizeof key, "%s.norm%d", name, k);
      const char *nv = tset_getmeta(&ts, key);
      cr_assert(nv, "no '%s'", key);
      double want = strtod(nv, NULL), ne = fabs(norm - want) / want;
      cr_expect(ne <= 1e-6, "%s step %d: norm %.9g, PyTorch %.9g", name, k, norm, want);
      worstnorm = fmax(worstnorm, ne);
      for (int i = 0; i < np; i++) {
        snprintf(key, sizeof key, "g%d.%s", k, pn[i]);
        cr_expect(!memcmp(s.p[i].g, fixture(&ts, key, numel[i]), sizeof(float) * (size_t)numel[i]),
                  "%s: the gradient of %s changed", name, pn[i]);
        snprintf(key, sizeof key, "%s.w%d.%s", name, k, pn[i]);
        const float *ref = fixture(&ts, key, numel[i]);
        double big = 1e-6, diff = 0;
        int64_t at = 0;
        for (int64_t e = 0; e < numel[i]; e++) {
          big = fmax(big, fabs(ref[e]));
          nel++, nexact += s.p[i].w[e] == ref[e];
          if (fabs((double)s.p[i].w[e] - ref[e]) > diff)
            diff = fabs((double)s.p[i].w[e] - ref[e]), at = e;
        }
        cr_expect(diff / big <= 1e-6, "%s step %d %s: max difference %.3g at %lld (%.9g vs PyTorch %.9g), relative %.3g",
                  name, k, pn[i], diff, (long long)at, s.p[i].w[at], ref[at], diff / big);
        worst = fmax(worst, diff / big);
      }
    }
    cr_expect_eq(optim_steps(o), 3);
    optim_free(o);
    pset_free(&s);
  }
  cr_assert_eq(ncase, 10);
  cr_log_info("optim fixtures: %d cases x 3 steps, largest relative difference %.3g (parameters), %.3g (norms); "
              "%ld of %ld parameter values bitwise PyTorch's",
              ncase, worst, worstnorm, nexact, nel);
  tset_clear(&ts);
}

/* ---- schedules ------------------------------------------------------------------- */

Test(optim, schedules)
{
  OptConfig c = config(OPT_SGD);
  c.lr = 0.1;
  cr_expect_eq(optim_lr(&c, 0), 0.1);
  cr_expect_eq(optim_lr(&c, 123456), 0.1);
  c.sched = LR_STEP, c.step_size = 10, c.gamma = 0.5;
  cr_expect_eq(optim_lr(&c, 0), 0.1);
  cr_expect_eq(optim_lr(&c, 9), 0.1);
  cr_expect_eq(optim_lr(&c, 10), 0.05);
  cr_expect_eq(optim_lr(&c, 29), 0.025);
  cr_expect_eq(optim_lr(&c, 30), 0.0125);
  c.gamma = 0.1;
  cr_expect(fabs(optim_lr(&c, 25) - 0.001) <= 1e-18, "%.17g", optim_lr(&c, 25));
  c = config(OPT_ADAM);
  c.sched = LR_COSINE, c.lr = 1, c.min_lr = 0, c.warmup = 4, c.total = 104;
  cr_expect_eq(optim_lr(&c, 0), 0.25); /* (step + 1) / warmup */
  cr_expect_eq(optim_lr(&c, 1), 0.5);
  cr_expect_eq(optim_lr(&c, 3), 1.0);
  cr_expect_eq(optim_lr(&c, 4), 1.0);  /* the cosine's start */
  cr_expect_eq(optim_lr(&c, 54), 0.5); /* halfway: 1 + cos(pi/2) rounds to 1 */
  cr_expect_eq(optim_lr(&c, 104), 0.0);
  cr_expect_eq(optim_lr(&c, 1000), 0.0);
  double q = optim_lr(&c, 29); /* a quarter: 0.5 (1 + cos(pi/4)) */
  cr_expect(fabs(q - 0.5 * (1 + sqrt(0.5))) <= 1e-15, "%.17g", q);
  c.min_lr = 0.5;
  cr_expect_eq(optim_lr(&c, 54), 0.75);
  cr_expect_eq(optim_lr(&c, 104), 0.5);
  c.warmup = 0;
  cr_expect_eq(optim_lr(&c, 0), 1.0);
  cr_expect_eq(optim_lr(&c, 52), 0.75);
}

/* The schedule reaches the kernels: SGD without momentum moves w by exactly
 * -lr(step) * g, checked bitwise against the same float arithmetic in C. */
Test(optim, schedule_in_steps)
{
  int64_t n = 5;
  PSet s;
  pset_init(&s, 1, &n, NULL);
  fill_w(&s, 1);
  OptConfig c = config(OPT_SGD);
  c.sched = LR_STEP, c.step_size = 2, c.gamma = 0.25;
  Optim *o = mkopt(&c, &s);
  for (int k = 0; k < 5; k++) {
    fill_g(&s, 100 + (uint64_t)k, 1);
    float want[5];
    float neglr = (float)-optim_lr(&c, k);
    for (int e = 0; e < 5; e++)
      want[e] = s.p[0].w[e] + neglr * (s.p[0].g[e] * 1.0f);
    step1(o, 1);
    cr_expect(!memcmp(want, s.p[0].w, sizeof want), "step %d", k);
  }
  optim_free(o);
  pset_free(&s);
}

/* ---- threads, chunks ------------------------------------------------------------- */

/* sizes around the chunk (4096) and below a vector */
static const int64_t big[] = {10000, 4096, 4097, 7, 1, 8193};

/* One config, 3 steps from the same start with 1, 2 and 3 threads (and 8,
 * more than some parameters' chunks): weights, norms and the saved state
 * bitwise the same. */
static void threads_case(OptConfig c)
{
  PSet s[4];
  int nth[4] = {1, 2, 3, 8};
  double norm[4][3];
  TensorSet st[4];
  for (int r = 0; r < 4; r++) {
    pset_init(&s[r], 6, big, NULL);
    fill_w(&s[r], 7);
    Optim *o = mkopt(&c, &s[r]);
    for (int k = 0; k < 3; k++) {
      fill_g(&s[r], 50 + (uint64_t)k, k == 0 ? 0.1 : 0.01);
      norm[r][k] = step1(o, nth[r]);
    }
    tset_init(&st[r]);
    cr_assert_eq(optim_save(o, &st[r]), RNNC_OK);
    optim_free(o);
  }
  for (int r = 1; r < 4; r++) {
    cr_expect(same_w(&s[0], &s[r]), "kind %d: weights with %d threads differ from 1 thread", c.kind, nth[r]);
    for (int k = 0; k < 3; k++)
      cr_expect(norm[r][k] == norm[0][k], "kind %d step %d: norm %.17g with %d threads, %.17g with 1", c.kind, k,
                norm[r][k], nth[r], norm[0][k]);
    cr_assert_eq(st[r].n, st[0].n);
    for (int i = 0; i < st[0].n; i++)
      cr_expect(!memcmp(st[r].t[i].data, st[0].t[i].data, (size_t)tensor_numel(&st[0].t[i]) * sizeof(float)),
                "state '%s' with %d threads", st[0].t[i].name, nth[r]);
  }
  /* the norm against a double reference, for the last gradients */
  double ref = 0;
  for (int i = 0; i < s[0].np; i++)
    for (int64_t e = 0; e < s[0].p[i].numel; e++) {
      double g = s[0].p[i].g[e];
      if (c.clip_value > 0)
        g = fmin(fmax(g, -(double)(float)c.clip_value), (double)(float)c.clip_value);
      ref += g * g;
    }
  cr_expect(fabs(norm[0][2] - sqrt(ref)) <= 1e-12 * sqrt(ref), "norm %.17g, reference %.17g", norm[0][2], sqrt(ref));
  for (int r = 0; r < 4; r++)
    pset_free(&s[r]), tset_clear(&st[r]);
}

Test(optim, threads_bitwise)
{
  OptConfig c = config(OPT_SGD);
  c.momentum = 0.9, c.weight_decay = 1e-3, c.clip_norm = 1.0;
  threads_case(c);
  c = config(OPT_ADAM);
  c.clip_norm = 0.5, c.clip_value = 0.005, c.weight_decay = 1e-2;
  threads_case(c);
  c = config(OPT_ADAMW);
  c.weight_decay = 0.1, c.sched = LR_COSINE, c.warmup = 1, c.total = 3;
  threads_case(c);
}

/* SGD over every element of multi-chunk parameters: clamp, clip scale, weight
 * decay and momentum in C float arithmetic give the same bits. */
Test(optim, sgd_reference_bitwise)
{
  PSet s;
  pset_init(&s, 6, big, NULL);
  fill_w(&s, 3);
  OptConfig c = config(OPT_SGD);
  c.momentum = 0.5, c.weight_decay = 0.01, c.clip_value = 0.3, c.clip_norm = 2.0;
  Optim *o = mkopt(&c, &s);
  float *w[6], *buf[6];
  for (int i = 0; i < 6; i++) {
    w[i] = malloc(sizeof(float) * (size_t)big[i]);
    buf[i] = calloc((size_t)big[i], sizeof(float));
    memcpy(w[i], s.p[i].w, sizeof(float) * (size_t)big[i]);
  }
  for (int k = 0; k < 2; k++) {
    fill_g(&s, 30 + (uint64_t)k, 1);
    double norm = step1(o, 3), ss = 0;
    for (int i = 0; i < 6; i++)
      for (int64_t e = 0; e < big[i]; e++) {
        double g = fmin(fmax(s.p[i].g[e], -0.3f), 0.3f); /* the clip value in float */
        ss += g * g;
      }
    cr_expect(fabs(norm - sqrt(ss)) <= 1e-12 * sqrt(ss));
    float scale = (1.0f / ((float)norm + (float)1e-6)) * 2.0f;
    cr_assert(scale < 1, "the clip must act: norm %g", norm);
    int bad = 0;
    for (int i = 0; i < 6; i++)
      for (int64_t e = 0; e < big[i]; e++) {
        float g = s.p[i].g[e];
        g = g > 0.3f ? 0.3f : g < -0.3f ? -0.3f : g;
        float d = g * scale + 0.01f * w[i][e];
        buf[i][e] = k == 0 ? d : buf[i][e] * 0.5f + d;
        w[i][e] = w[i][e] + (float)-0.1 * buf[i][e];
        bad += w[i][e] != s.p[i].w[e];
      }
    cr_expect_eq(bad, 0, "step %d: %d elements differ from the C reference", k, bad);
  }
  for (int i = 0; i < 6; i++)
    free(w[i]), free(buf[i]);
  optim_free(o);
  pset_free(&s);
}

/* ---- frozen, non-finite ------------------------------------------------------------ */

Test(optim, frozen)
{
  int64_t n[3] = {100, 5000, 3};
  int fr[3] = {0, 1, 0};
  PSet s;
  pset_init(&s, 3, n, fr);
  fill_w(&s, 9);
  fill_g(&s, 10, 1);
  s.p[1].g[17] = NAN; /* a frozen gradient is never read */
  float *w1 = malloc(sizeof(float) * 5000);
  memcpy(w1, s.p[1].w, sizeof(float) * 5000);
  OptConfig c = config(OPT_ADAM);
  c.clip_norm = 1;
  Optim *o = mkopt(&c, &s);
  double norm = step1(o, 2), ref = 0;
  for (int i = 0; i < 3; i += 2)
    for (int64_t e = 0; e < n[i]; e++)
      ref += (double)s.p[i].g[e] * s.p[i].g[e];
  cr_expect(fabs(norm - sqrt(ref)) <= 1e-12 * sqrt(ref), "norm %.17g, without the frozen %.17g", norm, sqrt(ref));
  cr_expect(!memcmp(w1, s.p[1].w, sizeof(float) * 5000), "a frozen parameter changed");
  TensorSet st;
  tset_init(&st);
  cr_assert_eq(optim_save(o, &st), RNNC_OK);
  cr_expect_null(tset_find(&st, "optim.p1.w.m"), "a frozen parameter has no state");
  cr_expect_not_null(tset_find(&st, "optim.p0.w.m"));
  cr_expect_not_null(tset_find(&st, "optim.p2.w.v"));
  tset_clear(&st);
  free(w1);
  optim_free(o);
  pset_free(&s);
}

/* A non-finite gradient in the second parameter's third chunk: with and
 * without clipping by value (which would turn an Inf into the clip value). */
static void nonfinite_case(OptConfig c, float poison, int nthreads)
{
  char err[256];
  int64_t n[3] = {50, 9000, 20};
  PSet s, s0;
  pset_init(&s, 3, n, NULL);
  fill_w(&s, 11);
  Optim *o = mkopt(&c, &s);
  fill_g(&s, 12, 1);
  step1(o, nthreads); /* state to keep */
  TensorSet before, after;
  tset_init(&before), tset_init(&after);
  cr_assert_eq(optim_save(o, &before), RNNC_OK);
  fill_g(&s, 13, 1);
  s.p[1].g[8500] = poison;
  s.p[2].g[0] = NAN; /* a later one is not the first */
  pset_copy(&s0, &s);
  double norm;
  int bad = 7;
  int rc = optim_step(o, nthreads, &norm, &bad, err, sizeof err);
  cr_expect_eq(rc, RNNC_EINPUT);
  cr_expect_eq(bad, 1);
  cr_expect_str_eq(err, "gradient of 'p1.w' is not finite");
  cr_expect(!isfinite(norm), "norm %g", norm);
  cr_expect(same_w(&s, &s0), "weights changed");
  cr_expect_eq(optim_steps(o), 1);
  cr_assert_eq(optim_save(o, &after), RNNC_OK);
  cr_assert_eq(after.n, before.n);
  for (int i = 0; i < before.n; i++)
    cr_expect(!memcmp(after.t[i].data, before.t[i].data, (size_t)tensor_numel(&before.t[i]) * sizeof(float)),
              "state '%s' changed", before.t[i].name);
  /* the next good step goes on */
  fill_g(&s, 14, 1);
  step1(o, nthreads);
  cr_expect_eq(optim_steps(o), 2);
  tset_clear(&before), tset_clear(&after);
  optim_free(o);
  pset_free(&s), pset_free(&s0);
}

Test(optim, nonfinite_gradient)
{
  OptConfig c = config(OPT_SGD);
  c.momentum = 0.9;
  nonfinite_case(c, INFINITY, 1);
  nonfinite_case(c, NAN, 3);
  c = config(OPT_ADAMW);
  c.clip_value = 0.5, c.clip_norm = 1;
  nonfinite_case(c, -INFINITY, 2);
}

/* ---- checkpoints ---------------------------------------------------------------- */

/* 2 steps, save (through a safetensors file), a new optimizer on the saved
 * weights restores and takes 2 more: bitwise the 4-step run. */
static void resume_case(OptConfig c)
{
  char err[512], path[] = "/tmp/rnnc_test_optim_XXXXXX";
  int64_t n[3] = {91, 5000, 1};
  PSet a, b;
  pset_init(&a, 3, n, NULL);
  fill_w(&a, 21);
  Optim *oa = mkopt(&c, &a);
  for (int k = 0; k < 4; k++) {
    fill_g(&a, 40 + (uint64_t)k, 0.5);
    step1(oa, 2);
    if (k == 1) { /* the checkpoint */
      pset_copy(&b, &a);
      TensorSet st;
      tset_init(&st);
      cr_assert_eq(optim_save(oa, &st), RNNC_OK);
      int fd = mkstemp(path);
      cr_assert(fd >= 0);
      close(fd);
      cr_assert_eq(safetensors_write(path, &st, err, sizeof err), RNNC_OK, "%s", err);
      tset_clear(&st);
    }
  }
  Optim *ob = mkopt(&c, &b);
  TensorSet st;
  tset_init(&st);
  cr_assert_eq(safetensors_read(path, &st, err, sizeof err), RNNC_OK, "%s", err);
  remove(path);
  cr_expect_str_eq(tset_getmeta(&st, "optim.step"), "2");
  int rc = optim_restore(ob, &st, err, sizeof err);
  cr_assert_eq(rc, RNNC_OK, "%s", err);
  cr_expect_eq(optim_steps(ob), 2);
  for (int k = 2; k < 4; k++) {
    fill_g(&b, 40 + (uint64_t)k, 0.5);
    step1(ob, 3);
  }
  cr_expect(same_w(&a, &b), "kind %d: resumed run differs from the uninterrupted one", c.kind);
  cr_expect_eq(optim_steps(ob), 4);
  tset_clear(&st);
  optim_free(oa), optim_free(ob);
  pset_free(&a), pset_free(&b);
}

Test(optim, save_restore_resume)
{
  OptConfig c = config(OPT_SGD);
  c.momentum = 0.9, c.clip_norm = 1, c.sched = LR_STEP, c.step_size = 1, c.gamma = 0.7;
  resume_case(c);
  c = config(OPT_ADAM);
  c.sched = LR_COSINE, c.warmup = 2, c.total = 6, c.clip_norm = 2;
  resume_case(c);
  c = config(OPT_ADAMW);
  c.weight_decay = 0.05;
  resume_case(c);
}

Test(optim, restore_errors)
{
  char err[256];
  int64_t n[2] = {10, 3};
  PSet s;
  pset_init(&s, 2, n, NULL);
  fill_w(&s, 5);
  fill_g(&s, 6, 1);
  OptConfig c = config(OPT_ADAM);
  Optim *o = mkopt(&c, &s);
  step1(o, 1);
  TensorSet good, t;
  tset_init(&good);
  cr_assert_eq(optim_save(o, &good), RNNC_OK);
  cr_expect_eq(good.n, 4);
  cr_expect_not_null(tset_find(&good, "optim.p0.w.m"));
  cr_expect_not_null(tset_find(&good, "optim.p1.w.v"));
  cr_expect_str_eq(tset_getmeta(&good, "optim.step"), "1");
  step1(o, 1);

  tset_init(&t); /* no step */
  cr_expect_eq(optim_restore(o, &t, err, sizeof err), RNNC_EFORMAT);
  cr_expect_str_eq(err, "checkpoint has no 'optim.step'");
  cr_assert_eq(tset_setmeta(&t, "optim.step", "x1"), RNNC_OK);
  cr_expect_eq(optim_restore(o, &t, err, sizeof err), RNNC_EFORMAT);
  cr_expect_str_eq(err, "checkpoint's optim.step 'x1' is not a step count");
  cr_assert_eq(tset_setmeta(&t, "optim.step", "1"), RNNC_OK);
  Tensor *m0 = tset_add(&t, "optim.p0.w.m", DT_F32, 1, &n[0]);
  cr_assert_not_null(m0);
  cr_expect_eq(optim_restore(o, &t, err, sizeof err), RNNC_EFORMAT);
  cr_expect_str_eq(err, "checkpoint has no 'optim.p0.w.v'");
  cr_assert_not_null(tset_add(&t, "optim.p0.w.v", DT_F32, 1, &n[0]));
  cr_assert_not_null(tset_add(&t, "optim.p1.w.m", DT_F32, 1, &n[0])); /* 10, not 3 */
  cr_expect_eq(optim_restore(o, &t, err, sizeof err), RNNC_EFORMAT);
  cr_expect_str_eq(err, "checkpoint's 'optim.p1.w.m' has 10 elements, the parameter 3");
  cr_assert_not_null(tset_add(&t, "optim.p1.w.m", DT_I32, 1, &n[1]));
  cr_expect_eq(optim_restore(o, &t, err, sizeof err), RNNC_EFORMAT);
  cr_expect_str_eq(err, "checkpoint's 'optim.p1.w.m' is I32, not F32");
  /* nothing changed by the failures: the state is still that of step 2 */
  cr_expect_eq(optim_steps(o), 2);
  TensorSet now;
  tset_init(&now);
  cr_assert_eq(optim_save(o, &now), RNNC_OK);
  cr_expect(memcmp(tset_find(&now, "optim.p0.w.m")->data, m0->data, 10 * sizeof(float)),
            "a failed restore wrote state");
  /* the good one restores step and state */
  cr_expect_eq(optim_restore(o, &good, err, sizeof err), RNNC_OK, "%s", err);
  cr_expect_eq(optim_steps(o), 1);
  tset_clear(&now);
  tset_init(&now);
  cr_assert_eq(optim_save(o, &now), RNNC_OK);
  for (int i = 0; i < good.n; i++)
    cr_expect(!memcmp(tset_find(&now, good.t[i].name)->data, good.t[i].data,
                      (size_t)tensor_numel(&good.t[i]) * sizeof(float)),
              "'%s' not restored", good.t[i].name);
  tset_clear(&now), tset_clear(&good), tset_clear(&t);
  optim_free(o);
  pset_free(&s);
}

/* SGD without momentum has no state: only the step is saved. */
Test(optim, sgd_plain_state)
{
  char err[256];
  int64_t n = 4;
  PSet s;
  pset_init(&s, 1, &n, NULL);
  fill_w(&s, 1), fill_g(&s, 2, 1);
  OptConfig c = config(OPT_SGD);
  Optim *o = mkopt(&c, &s);
  step1(o, 1);
  TensorSet st;
  tset_init(&st);
  cr_assert_eq(optim_save(o, &st), RNNC_OK);
  cr_expect_eq(st.n, 0);
  cr_expect_str_eq(tset_getmeta(&st, "optim.step"), "1");
  cr_expect_eq(optim_restore(o, &st, err, sizeof err), RNNC_OK, "%s", err);
  tset_clear(&st);
  optim_free(o);
  pset_free(&s);
}

/* ---- config errors ---------------------------------------------------------------- */

Test(optim, bad_config)
{
  int64_t n[2] = {3, 4};
  PSet s;
  pset_init(&s, 2, n, NULL);
  char err[256];
  Optim *o;
  OptConfig c;
#define BAD(kind_, stmt, msg)                                                            \
  do {                                                                                   \
    c = config(kind_);                                                                   \
    stmt;                                                                                \
    o = (Optim *)1;                                                                      \
    cr_expect_eq(optim_new(&c, s.p, s.np, &o, err, sizeof err), RNNC_EINPUT, "%s", msg); \
    cr_expect_str_eq(err, msg);                                                          \
    cr_expect_null(o);                                                                   \
  } while (0)
  BAD(OPT_SGD, c.kind = 7, "unknown optimizer kind 7");
  BAD(OPT_SGD, c.lr = -1, "learning rate must be > 0, got -1");
  BAD(OPT_ADAM, c.lr = 0, "learning rate must be > 0, got 0");
  BAD(OPT_ADAM, c.lr = NAN, "learning rate must be > 0, got nan");
  BAD(OPT_ADAM, c.lr = INFINITY, "learning rate must be finite, got inf");
  BAD(OPT_SGD, c.momentum = 1, "momentum must be in [0, 1), got 1");
  BAD(OPT_SGD, c.momentum = -0.5, "momentum must be in [0, 1), got -0.5");
  BAD(OPT_ADAM, c.beta1 = 1.5, "beta1 must be in [0, 1), got 1.5");
  BAD(OPT_ADAMW, c.beta2 = 1, "beta2 must be in [0, 1), got 1");
  BAD(OPT_ADAM, c.eps = 0, "eps must be > 0 and finite, got 0");
  BAD(OPT_ADAMW, c.weight_decay = -0.1, "weight decay must be >= 0 and finite, got -0.1");
  BAD(OPT_SGD, c.clip_norm = NAN, "clip norm must be a number, got nan");
  BAD(OPT_SGD, c.clip_value = NAN, "clip value must be a number, got nan");
  BAD(OPT_SGD, c.sched = 9, "unknown learning-rate schedule 9");
  BAD(OPT_SGD, (c.sched = LR_STEP, c.step_size = 0, c.gamma = 0.5), "step decay needs a step size >= 1, got 0");
  BAD(OPT_SGD, (c.sched = LR_STEP, c.step_size = 3, c.gamma = 0), "step decay's gamma must be > 0 and finite, got 0");
  BAD(OPT_ADAM, (c.sched = LR_COSINE, c.warmup = -1, c.total = 10), "cosine schedule needs warmup >= 0, got -1");
  BAD(OPT_ADAM, (c.sched = LR_COSINE, c.warmup = 10, c.total = 10),
      "cosine schedule needs total steps > warmup (10), got 10");
  BAD(OPT_ADAM, (c.sched = LR_COSINE, c.total = 10, c.min_lr = 0.01),
      "cosine schedule's min_lr must be in [0, lr = 0.001], got 0.01");
  s.p[1].name = "p0.w";
  BAD(OPT_SGD, (void)0, "parameter 'p0.w' appears twice");
  s.p[1].name = "";
  BAD(OPT_SGD, (void)0, "parameter 1 has no name");
  s.p[1].name = s.name[1];
  float *g = s.p[1].g;
  s.p[1].g = NULL;
  BAD(OPT_SGD, (void)0, "parameter 'p1.w' has no gradient");
  s.p[1].frozen = 1; /* a frozen parameter needs none */
  c = config(OPT_SGD);
  o = NULL;
  cr_expect_eq(optim_new(&c, s.p, s.np, &o, err, sizeof err), RNNC_OK, "%s", err);
  optim_free(o);
  s.p[1].g = g;
  pset_free(&s);
#undef BAD
}

/* ---- the kernels on their own ------------------------------------------------------ */

/* Over a parameter of 10003 elements between guards: a range in chunk-aligned
 * parts (last part first) gives the bits of the whole range, and nothing
 * outside [lo, hi) is touched. */
Test(optim, kernel_ranges)
{
  char err[512];
  Jit *j = NULL;
  OptKernels k;
  cr_assert_eq(optgen_jit(&j, &k, err, sizeof err), RNNC_OK, "%s", err);
  enum { N = 10003, G = 16, NC = (N + OPT_CHUNK - 1) / OPT_CHUNK };
  float *buf[2][4];
  double part[2][NC + 1];
  rs = 77;
  for (int r = 0; r < 2; r++)
    for (int b = 0; b < 4; b++) {
      buf[r][b] = malloc(sizeof(float) * (N + 2 * G));
      cr_assert(buf[r][b]);
    }
  for (int b = 0; b < 4; b++)
    for (int e = 0; e < N + 2 * G; e++)
      buf[0][b][e] = buf[1][b][e] = (float)(b == 3 ? fabs(uni()) : uni()); /* v >= 0 */
  float *w[2], *g[2], *m[2], *v[2];
  for (int r = 0; r < 2; r++)
    w[r] = buf[r][0] + G, g[r] = buf[r][1] + G, m[r] = buf[r][2] + G, v[r] = buf[r][3] + G;
  /* run 0 whole, run 1 in parts [2 chunks, N), [1 chunk, 2), [0, 1 chunk) */
  const int64_t cut[4] = {N, 2 * OPT_CHUNK, OPT_CHUNK, 0};
  for (int i = 0; i <= NC; i++)
    part[0][i] = part[1][i] = -1;
  k.sumsq(g[0], 0, N, 0.7f, part[0]);
  for (int p = 0; p < 3; p++)
    k.sumsq(g[1], cut[p + 1], cut[p], 0.7f, part[1]);
  cr_expect(!memcmp(part[0], part[1], sizeof part[0]), "sum of squares in parts");
  cr_expect_eq(part[0][NC], -1, "a chunk past the range was written");
  double ref = 0;
  for (int e = 2 * OPT_CHUNK; e < N; e++) {
    double x = fmin(fmax(g[0][e], -0.7f), 0.7f);
    ref += x * x;
  }
  cr_expect(fabs(part[0][2] - ref) <= 1e-13 * ref, "last chunk %.17g, reference %.17g", part[0][2], ref);
  for (int mode = 0; mode < 3; mode++) {
    k.sgd(w[0], g[0], m[0], 0, N, 0.7f, 0.9f, -0.1f, 0.01f, 0.9f, mode);
    for (int p = 0; p < 3; p++)
      k.sgd(w[1], g[1], m[1], cut[p + 1], cut[p], 0.7f, 0.9f, -0.1f, 0.01f, 0.9f, mode);
  }
  k.adam(w[0], g[0], m[0], v[0], 0, N, INFINITY, 1, 0, 0.999f, 0.9f, 0.1f, 0.999f, 0.001f, -0.01f, 0.3f, 1e-8f);
  for (int p = 0; p < 3; p++)
    k.adam(w[1], g[1], m[1], v[1], cut[p + 1], cut[p], INFINITY, 1, 0, 0.999f, 0.9f, 0.1f, 0.999f, 0.001f, -0.01f,
           0.3f, 1e-8f);
  for (int b = 0; b < 4; b++)
    cr_expect(!memcmp(buf[0][b], buf[1][b], sizeof(float) * (N + 2 * G)), "buffer %d differs in parts", b);
  /* the guards: both runs started from the same values there */
  rs = 77;
  for (int b = 0; b < 4; b++)
    for (int e = 0; e < N + 2 * G; e++) {
      float x = (float)(b == 3 ? fabs(uni()) : uni());
      if (e < G || e >= N + G)
        cr_expect_eq(buf[0][b][e], x, "buffer %d element %d outside the range changed", b, e - G);
    }
  for (int r = 0; r < 2; r++)
    for (int b = 0; b < 4; b++)
      free(buf[r][b]);
  jit_free(j);
}

/* ---- the generated module ------------------------------------------------------ */

Test(optim, module_verifies)
{
  LLVMContextRef cx = LLVMContextCreate();
  LLVMModuleRef mod = LLVMModuleCreateWithNameInContext("optim", cx);
  optgen(cx, mod, "k");
  char *msg = NULL;
  int bad = LLVMVerifyModule(mod, LLVMReturnStatusAction, &msg);
  cr_expect(!bad, "%s", msg);
  LLVMDisposeMessage(msg);
  const char *const fn[3] = {"k_sumsq", "k_sgd", "k_adam"};
  for (int i = 0; i < 3; i++)
    cr_expect_not_null(LLVMGetNamedFunction(mod, fn[i]), "%s", fn[i]);
  cr_expect_str_eq(LLVMGetTarget(mod), "", "the module has a triple");
  LLVMDisposeModule(mod);
  LLVMContextDispose(cx);
}
