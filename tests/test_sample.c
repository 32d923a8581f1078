/* test_sample.c — sampling and beam search (runtime/sample.c) and the model
 * for generation (ir/genmodel.c).
 *
 *  - sample_token: greedy takes the first largest; top-k = 1 and a tiny
 *    temperature equal greedy; top-k never draws outside the top k (ties by
 *    lower id); one rng_uniform per draw; a seed reproduces the draws; over
 *    20000 draws the counts match softmax(logits / temperature) by a
 *    chi-square test at p = 0.001 (and a wrong temperature fails it), with
 *    and without top-k.
 *  - beam_search on a tiny LSTM language model (V = 4, random parameters)
 *    compiled from model_for_generation for T = 1 and B = K with its states
 *    carried, the callback gathering the state rows by parent: with K = 4^4
 *    it must find the best of all 4^5 continuations (no eos; and with eos
 *    and length normalization), as an exhaustive search with the same model
 *    compiled at B = 1 finds it; width 1 equals greedy decoding; on a
 *    constructed chain, length normalization changes the winner; ties and
 *    errors.
 *  - model_for_generation: its probabilities over T steps give the training
 *    model's loss, and T = 1 steps with carried states give the same
 *    probabilities as one run over T; the nodes and parameters it keeps; the
 *    exact messages for models it cannot serve.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* ---- sample_token ------------------------------------------------------------ */

static void softmax_d(const double *l, int V, double tau, double *out)
{
  double mx = l[0], s = 0;
  for (int i = 1; i < V; i++)
    mx = fmax(mx, l[i]);
  for (int i = 0; i < V; i++)
    s += out[i] = exp((l[i] - mx) / tau);
  for (int i = 0; i < V; i++)
    out[i] /= s;
}

static void probs_f(const double *l, int V, float *p)
{
  double d[64];
  softmax_d(l, V, 1, d);
  for (int i = 0; i < V; i++)
    p[i] = (float)d[i];
}

static int argmax_first(const float *p, int V)
{
  int b = 0;
  for (int i = 1; i < V; i++)
    if (p[i] > p[b])
      b = i;
  return b;
}

Test(sample, greedy_is_first_max)
{
  float p[5] = {0.1f, 0.3f, 0.05f, 0.3f, 0.25f};
  cr_assert_eq(sample_token(p, 5, 0, 0, NULL), 1);
  cr_assert_eq(sample_token(p, 5, 0, 2, NULL), 1);
  cr_assert_eq(sample_token(p, 5, -1, 0, NULL), 1, "a negative temperature is greedy too");
  Rng r, r0;
  rng_seed(&r, 3);
  r0 = r;
  cr_assert_eq(sample_token(p, 5, 0, 0, &r), 1);
  cr_assert_eq(memcmp(&r, &r0, sizeof r), 0, "greedy draws nothing");
  float z[3] = {0, 0, 0};
  cr_assert_eq(sample_token(z, 3, 1, 0, &r), 0, "no positive entry: token 0");
}

Test(sample, one_uniform_per_draw)
{
  float p[4] = {0.1f, 0.2f, 0.3f, 0.4f};
  for (int k = 0; k <= 4; k++) {
    Rng r, r0;
    rng_seed(&r, 77);
    rng_seed(&r0, 77);
    sample_token(p, 4, 0.8, k, &r);
    rng_uniform(&r0);
    cr_assert_eq(memcmp(&r, &r0, sizeof r), 0, "topk %d: not exactly one rng_uniform", k);
  }
}

Test(sample, topk1_and_small_temperature_are_greedy)
{
  Rng r, g;
  rng_seed(&r, 1);
  rng_seed(&g, 2);
  for (int it = 0; it < 500; it++) {
    double l[10];
    float p[10];
    for (int i = 0; i < 10; i++)
      l[i] = 2 * rng_normal(&g);
    probs_f(l, 10, p);
    int want = argmax_first(p, 10);
    cr_assert_eq(sample_token(p, 10, 1.0, 1, &r), want, "top-1 at draw %d", it);
    cr_assert_eq(sample_token(p, 10, 3.0, 1, &r), want, "top-1, temperature 3, at draw %d", it);
    /* the runner-up's weight is (p2 / p1)^(1/tau): tiny unless nearly tied */
    float p2 = 0;
    for (int i = 0; i < 10; i++)
      if (i != want && p[i] > p2)
        p2 = p[i];
    if (p2 < 0.9f * p[want])
      cr_assert_eq(sample_token(p, 10, 1e-3, 0, &r), want, "temperature 1e-3 at draw %d", it);
  }
}

Test(sample, topk_stays_in_top_k)
{
  Rng r, g;
  rng_seed(&r, 5);
  rng_seed(&g, 6);
  for (int it = 0; it < 200; it++) {
    double l[12];
    float p[12];
    for (int i = 0; i < 12; i++)
      l[i] = rng_normal(&g);
    probs_f(l, 12, p);
    int k = 1 + it % 5;
    for (int d = 0; d < 20; d++) {
      int t = sample_token(p, 12, 1.5, k, &r), rank = 0;
      for (int i = 0; i < 12; i++)
        rank += p[i] > p[t] || (p[i] == p[t] && i < t);
      cr_assert_lt(rank, k, "token %d of rank %d drawn with top-%d", t, rank, k);
    }
  }
  /* ties at the cut: the lower ids are kept */
  float q[5] = {0.1f, 0.2f, 0.2f, 0.2f, 0.3f};
  int seen[5] = {0};
  for (int d = 0; d < 2000; d++)
    seen[sample_token(q, 5, 1.0, 3, &r)]++;
  cr_assert(seen[4] > 0 && seen[1] > 0 && seen[2] > 0, "kept tokens drawn: %d %d %d", seen[4], seen[1], seen[2]);
  cr_assert_eq(seen[0] + seen[3], 0, "tokens 0 and 3 are cut (token 3 ties token 1 and 2 but has a higher id)");
}

Test(sample, seeded_draws_reproduce)
{
  float p[6] = {0.05f, 0.1f, 0.15f, 0.2f, 0.25f, 0.25f};
  int a[1000], b[1000], c[1000];
  Rng r;
  rng_seed(&r, 42);
  for (int i = 0; i < 1000; i++)
    a[i] = sample_token(p, 6, 0.9, 0, &r);
  rng_seed(&r, 42);
  for (int i = 0; i < 1000; i++)
    b[i] = sample_token(p, 6, 0.9, 0, &r);
  rng_seed(&r, 43);
  for (int i = 0; i < 1000; i++)
    c[i] = sample_token(p, 6, 0.9, 0, &r);
  cr_assert_eq(memcmp(a, b, sizeof a), 0, "same seed, same draws");
  cr_assert_neq(memcmp(a, c, sizeof a), 0, "another seed, other draws");
}

/* Σ (observed - expected)^2 / expected over the tokens with expected > 0. */
static double chi2(const int *count, const double *prob, int V, int N)
{
  double s = 0;
  for (int i = 0; i < V; i++)
    if (prob[i] > 0)
      s += (count[i] - N * prob[i]) * (count[i] - N * prob[i]) / (N * prob[i]);
  return s;
}

enum { NDRAW = 20000 };
static const double logits6[6] = {1.0, 0.2, -0.5, 2.0, 0.0, -1.2};

static void draw_counts(double tau, int topk, uint64_t seed, int *count)
{
  float p[6];
  probs_f(logits6, 6, p);
  Rng r;
  rng_seed(&r, seed);
  memset(count, 0, 6 * sizeof *count);
  for (int i = 0; i < NDRAW; i++)
    count[sample_token(p, 6, tau, topk, &r)]++;
}

Test(sample, temperature_matches_softmax_chi_square)
{
  int count[6];
  double want[6], wrong[6];
  draw_counts(0.6, 0, 1234, count);
  softmax_d(logits6, 6, 0.6, want);
  double s = chi2(count, want, 6, NDRAW);
  /* 5 degrees of freedom: P(X > 20.515) = 0.001 */
  cr_assert_lt(s, 20.515, "chi-square %.3f against softmax(l / 0.6), counts %d %d %d %d %d %d", s, count[0],
               count[1], count[2], count[3], count[4], count[5]);
  softmax_d(logits6, 6, 0.75, wrong);
  double w = chi2(count, wrong, 6, NDRAW);
  cr_log_info("chi-square, 5 dof: %.3f at tau 0.6, %.3f against tau 0.75", s, w);
  cr_assert_gt(w, 20.515, "the wrong temperature 0.75 passes: chi-square %.3f", w);
  softmax_d(logits6, 6, 1.0, wrong);
  cr_assert_gt(chi2(count, wrong, 6, NDRAW), 20.515, "temperature 1 passes");

  /* temperature 1.5 and top-3: the 3 most probable (ids 3, 0, 1), renormalized */
  draw_counts(1.5, 3, 99, count);
  softmax_d(logits6, 6, 1.5, want);
  double top = want[3] + want[0] + want[1];
  for (int i = 0; i < 6; i++)
    want[i] = i == 3 || i == 0 || i == 1 ? want[i] / top : 0;
  cr_assert_eq(count[2] + count[4] + count[5], 0);
  s = chi2(count, want, 6, NDRAW);
  /* 2 degrees of freedom: P(X > 13.816) = 0.001 */
  cr_assert_lt(s, 13.816, "top-3 chi-square %.3f", s);
  softmax_d(logits6, 6, 1.0, wrong);
  top = wrong[3] + wrong[0] + wrong[1];
  for (int i = 0; i < 6; i++)
    wrong[i] = i == 3 || i == 0 || i == 1 ? wrong[i] / top : 0;
  cr_log_info("top-3 chi-square, 2 dof: %.3f at tau 1.5, %.3f against tau 1", s, chi2(count, wrong, 6, NDRAW));
  cr_assert_gt(chi2(count, wrong, 6, NDRAW), 13.816, "top-3 at the wrong temperature 1 passes");
}

/* ---- beam_search on constructed step functions ------------------------------- */

/* A Markov chain: the next token's log-probabilities depend on the last one
 * (table [V, V]); parents need no reordering. */
typedef struct Chain {
  int V, calls, failat;
  const double *prob;
} Chain;

static int chain_step(void *ctx, const int32_t *tok, const int32_t *parent, int K, float *logp)
{
  Chain *c = ctx;
  cr_assert_eq(parent == NULL, c->calls == 0, "parent is NULL on the first call only");
  if (++c->calls == c->failat)
    return RNNC_EINPUT;
  for (int k = 0; k < K; k++)
    for (int v = 0; v < c->V; v++)
      logp[k * c->V + v] = (float)log(c->prob[tok[k] * c->V + v]);
  return RNNC_OK;
}

Test(beam, length_normalization_changes_the_winner)
{
  /* eos = 0. From 3: eos 0.5, 1 0.45. Then 1 -> 2 (0.9) -> eos (0.9):
   * [eos] scores log 0.5 = -0.69; [1, 2, eos] log 0.3645 = -1.01, which is
   * -0.34 per token: the winner once divided by length. */
  static const double P[16] = {
      0.97, 0.01, 0.01, 0.01, /* after eos (not reached) */
      0.03, 0.03, 0.9, 0.04,  /* after 1 */
      0.9, 0.04, 0.03, 0.03,  /* after 2 */
      0.5, 0.45, 0.03, 0.02,  /* after 3 */
  };
  Chain c = {4, 0, -1, P};
  int32_t out[3];
  double score;
  cr_assert_eq(beam_search(chain_step, &c, 4, 2, 3, 3, 0, 0, out, &score), RNNC_OK);
  cr_assert(out[0] == 0 && out[1] == 0 && out[2] == 0, "no normalization: [eos] (padded), got %d %d %d", out[0],
            out[1], out[2]);
  cr_assert_float_eq(score, log(0.5f), 1e-6);
  cr_assert_eq(c.calls, 1, "stops once nothing alive can beat the finished [eos]: %d calls", c.calls);

  c.calls = 0;
  cr_assert_eq(beam_search(chain_step, &c, 4, 2, 3, 3, 0, 1.0, out, &score), RNNC_OK);
  cr_assert(out[0] == 1 && out[1] == 2 && out[2] == 0, "lenpen 1: [1, 2, eos], got %d %d %d", out[0], out[1],
            out[2]);
  cr_assert_float_eq(score, (double)logf(0.45f) + logf(0.9f) + logf(0.9f), 1e-6, "the summed log-probability");
  cr_assert_eq(c.calls, 3, "length 3: the first call and two more (the last step's tokens are not fed)");

  /* without eos, every hypothesis has the length: normalization changes nothing */
  c.calls = 0;
  int32_t a[3], b[3];
  double sa, sb;
  cr_assert_eq(beam_search(chain_step, &c, 4, 2, 3, 3, -1, 0, a, &sa), RNNC_OK);
  c.calls = 0;
  cr_assert_eq(beam_search(chain_step, &c, 4, 2, 3, 3, -1, 2.0, b, &sb), RNNC_OK);
  cr_assert(memcmp(a, b, sizeof a) == 0 && sa == sb);
  cr_assert(a[0] == 0 && a[1] == 0 && a[2] == 0, "no eos: 3 -> 0 -> 0 -> 0 (0.5 · 0.97 · 0.97), got %d %d %d",
            a[0], a[1], a[2]);
}

Test(beam, ties_by_token_then_row_and_errors)
{
  static const double U[9] = {1 / 3., 1 / 3., 1 / 3., 1 / 3., 1 / 3., 1 / 3., 1 / 3., 1 / 3., 1 / 3.};
  Chain c = {3, 0, -1, U};
  int32_t out[4];
  double score;
  cr_assert_eq(beam_search(chain_step, &c, 3, 2, 1, 4, -1, 0, out, &score), RNNC_OK);
  cr_assert(out[0] == 0 && out[1] == 0 && out[2] == 0 && out[3] == 0, "all tied: the lowest ids, got %d %d %d %d",
            out[0], out[1], out[2], out[3]);
  cr_assert_float_eq(score, 4.0 * logf(1 / 3.f), 1e-6);

  c.calls = 0;
  c.failat = 3;
  cr_assert_eq(beam_search(chain_step, &c, 3, 2, 1, 4, -1, 0, out, &score), RNNC_EINPUT,
               "the callback's status is returned");
  cr_assert_eq(c.calls, 3, "and nothing is called after it");
  cr_assert_eq(beam_search(chain_step, &c, 3, 0, 1, 4, -1, 0, out, &score), RNNC_EINPUT, "K = 0");
  cr_assert_eq(beam_search(chain_step, &c, 3, 2, 3, 4, -1, 0, out, &score), RNNC_EINPUT, "first out of range");
  c.calls = 0;
  cr_assert_eq(beam_search(chain_step, &c, 3, 2, 1, 0, -1, 0, out, &score), RNNC_OK);
  cr_assert(score == 0 && c.calls == 0, "length 0: nothing to do");
}

/* ---- a tiny language model, compiled ----------------------------------------- */

static const char *tiny_text =
    "model tiny(V = 4, E = 3, H = 5) {\n"
    "  input tokens: i32[T, B], targets: i32[T, B]\n"
    "  x    = embedding(tokens, V, E)\n"
    "  h    = lstm(x, H = H)\n"
    "  loss = softmax(h, V, target = targets)\n"
    "  h_T  = final(h, h)\n"
    "  output loss, h_T\n"
    "}\n";

static Module *load_text(const char *text)
{
  Module *m = module_new();
  const Source *src = source_new(m, "<test>", text);
  int st = parse(m, src);
  if (st == RNNC_OK)
    st = verify(m);
  if (st != RNNC_OK)
    diags_print(stderr, &m->diags);
  cr_assert_eq(st, RNNC_OK);
  return m;
}

typedef struct Lm {
  Module *m;
  Model *md, *gm;
  TensorSet params;
} Lm;

static void env_for(Lm *lm, Model *md, long T, long B, Env *env)
{
  *env = (Env){0};
  env_set(lm->m->arena, env, intern(lm->m->names, "T", 1), T);
  env_set(lm->m->arena, env, intern(lm->m->names, "B", 1), B);
  for (int i = 0; i < md->ndim; i++) /* a dim without a default (charlm's V): 20 */
    env_set(lm->m->arena, env, md->dim[i].name, md->dim[i].hasdefault ? md->dim[i].def : 20);
}

/* Parameters as init_params draws them, times scale (a larger scale makes
 * the tiny model's predictions less uniform). */
static void lm_open(Lm *lm, const char *text, uint64_t seed, double scale)
{
  char err[512];
  lm->m = text[0] == '/' ? load_module(text) : load_text(text);
  cr_assert_not_null(lm->m, "%s", text);
  lm->md = model_find(lm->m, NULL);
  cr_assert_eq(model_for_generation(lm->m, lm->md, &lm->gm, err, sizeof err), RNNC_OK, "%s", err);
  cr_assert_eq(schedule(lm->m), RNNC_OK);
  Env env;
  env_for(lm, lm->md, 1, 1, &env);
  tset_init(&lm->params);
  cr_assert_eq(init_params(lm->md, &env, seed, &lm->params, err, sizeof err), RNNC_OK, "%s", err);
  for (int i = 0; i < lm->params.n; i++) {
    float *w = lm->params.t[i].data;
    for (int64_t e = 0; e < tensor_numel(&lm->params.t[i]); e++)
      w[e] = (float)(w[e] * scale);
  }
}

static void lm_close(Lm *lm)
{
  tset_clear(&lm->params);
  module_free(lm->m);
}

static CModel *lm_compile(Lm *lm, Model *md, long T, long B, int carry)
{
  char err[512];
  Env env;
  env_for(lm, md, T, B, &env);
  CompileOpts o = {.carry = carry};
  CModel *cm;
  cr_assert_eq(cmodel_compile(lm->m, md, &env, &o, &cm, err, sizeof err), RNNC_OK, "%s", err);
  for (int i = 0; i < cmodel_ntensor(cm); i++) {
    CTensor *t = cmodel_tensor(cm, i);
    if (t->role != CT_PARAM)
      continue;
    Tensor *p = tset_find(&lm->params, t->name);
    cr_assert(p && tensor_numel(p) == t->numel, "parameter '%s'", t->name);
    memcpy(t->data, p->data, (size_t)t->numel * sizeof(float));
  }
  return cm;
}

/* The generation model compiled for T = 1 and B rows, as a beam step. */
typedef struct Step {
  CModel *cm;
  CTensor *tok, *probs;
  int V, runs;
} Step;

static void step_open(Step *s, CModel *cm, int V)
{
  *s = (Step){cm, cmodel_find(cm, "tokens"), cmodel_find(cm, "loss"), V, 0};
  cr_assert(s->tok && s->probs && s->probs->numel == s->tok->numel * V);
}

/* Feed one token per row (the states carried), probabilities in s->probs. */
static void step_run(Step *s, const int32_t *tok)
{
  char err[256];
  memcpy(s->tok->data, tok, (size_t)s->tok->numel * sizeof *tok);
  cr_assert_eq(cmodel_run(s->cm, 0, 1, err, sizeof err), RNNC_OK, "%s", err);
  s->runs++;
}

/* Row k of every carried state := row parent[k] of it. */
static void gather_states(CModel *cm, const int32_t *parent, int K)
{
  for (int i = 0; i < cmodel_ntensor(cm); i++) {
    CTensor *t = cmodel_tensor(cm, i);
    if (t->role != CT_STATE)
      continue;
    cr_assert_eq(t->dim[0], K);
    int64_t d = t->dim[1];
    float *old = malloc((size_t)t->numel * sizeof *old), *x = t->data;
    memcpy(old, x, (size_t)t->numel * sizeof *old);
    for (int k = 0; k < K; k++)
      memcpy(x + k * d, old + parent[k] * d, (size_t)d * sizeof *x);
    free(old);
  }
}

static int beam_step(void *ctx, const int32_t *tok, const int32_t *parent, int K, float *logp)
{
  Step *s = ctx;
  if (parent)
    gather_states(s->cm, parent, K);
  step_run(s, tok);
  const float *p = s->probs->data;
  for (int i = 0; i < K * s->V; i++)
    logp[i] = logf(p[i]);
  return RNNC_OK;
}

/* Every state tensor of cm, copied out or back. */
static float *save_states(CModel *cm)
{
  size_t n = 0;
  for (int i = 0; i < cmodel_ntensor(cm); i++)
    if (cmodel_tensor(cm, i)->role == CT_STATE)
      n += (size_t)cmodel_tensor(cm, i)->numel;
  float *buf = malloc((n + 1) * sizeof *buf), *q = buf;
  for (int i = 0; i < cmodel_ntensor(cm); i++) {
    CTensor *t = cmodel_tensor(cm, i);
    if (t->role == CT_STATE) {
      memcpy(q, t->data, (size_t)t->numel * sizeof *q);
      q += t->numel;
    }
  }
  return buf;
}

static void restore_states(CModel *cm, const float *buf)
{
  for (int i = 0; i < cmodel_ntensor(cm); i++) {
    CTensor *t = cmodel_tensor(cm, i);
    if (t->role == CT_STATE) {
      memcpy(t->data, buf, (size_t)t->numel * sizeof *buf);
      buf += t->numel;
    }
  }
}

typedef struct Best {
  double norm, sum;
  int32_t seq[8];
  long count;
} Best;

/* Every continuation of up to L tokens (ending at eos, or L tokens without
 * one) from the state s holds, its next-token probabilities in s->probs. */
static void exhaustive(Step *s, int L, int depth, double sum, int32_t *seq, int eos, double lenpen, Best *b)
{
  int V = s->V;
  float p[8];
  memcpy(p, s->probs->data, (size_t)V * sizeof *p);
  for (int v = 0; v < V; v++) {
    double sv = sum + logf(p[v]);
    seq[depth] = v;
    if (v == eos || depth + 1 == L) {
      int len = depth + 1;
      double nm = lenpen > 0 ? sv / pow(len, lenpen) : sv;
      b->count++;
      if (nm > b->norm) {
        b->norm = nm, b->sum = sv;
        for (int i = 0; i < L; i++)
          b->seq[i] = i < len ? seq[i] : eos;
      }
      continue;
    }
    float *st = save_states(s->cm);
    step_run(s, &seq[depth]);
    exhaustive(s, L, depth + 1, sv, seq, eos, lenpen, b);
    restore_states(s->cm, st);
    memcpy(s->probs->data, p, (size_t)V * sizeof *p);
    free(st);
  }
}

static const int32_t prefix[3] = {2, 0, 1};
/* the beam tests' parameter scale: with 4, the best continuation ends at
 * eos after 1, 2 or 5 tokens depending on eos and lenpen */
#define SCALE 4

/* Feed the prefix but its last token to every row of a fresh model. */
static void feed_prefix(Step *s, int K)
{
  cmodel_reset_state(s->cm);
  int32_t tok[256];
  for (int i = 0; i < 2; i++) {
    for (int k = 0; k < K; k++)
      tok[k] = prefix[i];
    step_run(s, tok);
  }
}

static void check_exact(Step *one, Step *wide, int K, int L, int eos, double lenpen)
{
  int32_t seq[8], out[8];
  Best b = {-INFINITY, 0, {0}, 0};
  feed_prefix(one, 1);
  step_run(one, &prefix[2]);
  exhaustive(one, L, 0, 0, seq, eos, lenpen, &b);
  long want = 1;
  for (int i = 0; i < L; i++)
    want *= 4;
  if (eos < 0)
    cr_assert_eq(b.count, want, "exhaustive: %ld sequences, expected %ld", b.count, want);

  double score;
  feed_prefix(wide, K);
  cr_assert_eq(beam_search(beam_step, wide, 4, K, prefix[2], L, eos, lenpen, out, &score), RNNC_OK);
  cr_assert(memcmp(out, b.seq, (size_t)L * sizeof *out) == 0,
            "eos %d lenpen %g: beam %d %d %d %d %d, exhaustive %d %d %d %d %d", eos, lenpen, out[0], out[1], out[2],
            out[3], out[4], b.seq[0], b.seq[1], b.seq[2], b.seq[3], b.seq[4]);
  int len = 0;
  while (len < L && b.seq[len] != eos)
    len++;
  cr_log_info("eos %d lenpen %g: best of %ld has %d tokens, score %.6f", eos, lenpen, b.count,
              len + (len < L), b.sum);
  cr_assert_float_eq(score, b.sum, 1e-5, "eos %d lenpen %g: beam score %.9g, exhaustive %.9g", eos, lenpen, score,
                     b.sum);
}

Test(beam, tiny_lstm_equals_exhaustive_search, .timeout = 120)
{
  Lm lm;
  lm_open(&lm, tiny_text, 7, SCALE);
  enum { K = 256, L = 5 }; /* K = V^(L-1): the beam keeps every prefix */
  CModel *c1 = lm_compile(&lm, lm.gm, 1, 1, 1), *ck = lm_compile(&lm, lm.gm, 1, K, 1);
  Step one, wide;
  step_open(&one, c1, 4);
  step_open(&wide, ck, 4);
  check_exact(&one, &wide, K, L, -1, 0);
  cr_assert_eq(wide.runs, 2 + L, "the prefix, then one run per step but the last after the first");
  for (int eos = 0; eos < 4; eos++)
    for (int j = 0; j < 4; j++)
      check_exact(&one, &wide, K, L, eos, (double[]){0, 0.5, 1, 2}[j]);
  cmodel_free(c1);
  cmodel_free(ck);
  lm_close(&lm);
}

Test(beam, width_one_is_greedy, .timeout = 120)
{
  enum { L = 12 };
  int changing = 0;
  for (uint64_t seed = 11; seed < 19; seed++) {
    Lm lm;
    lm_open(&lm, tiny_text, seed, SCALE);
    CModel *c1 = lm_compile(&lm, lm.gm, 1, 1, 1);
    Step one;
    step_open(&one, c1, 4);
    int32_t greedy[L], out[L];
    double sum = 0, score;
    feed_prefix(&one, 1);
    int32_t t = prefix[2];
    for (int i = 0; i < L; i++) {
      step_run(&one, &t);
      const float *p = one.probs->data;
      t = greedy[i] = sample_token(p, 4, 0, 0, NULL);
      sum += logf(p[t]);
    }
    feed_prefix(&one, 1);
    cr_assert_eq(beam_search(beam_step, &one, 4, 1, prefix[2], L, -1, 0, out, &score), RNNC_OK);
    cr_assert_eq(memcmp(out, greedy, sizeof out), 0, "seed %d: beam width 1 differs from greedy", (int)seed);
    cr_assert_eq(score, sum, "seed %d: score %.9g, greedy %.9g", (int)seed, score, sum);
    int distinct = 0;
    for (int i = 1; i < L; i++)
      distinct += greedy[i] != greedy[0];
    changing += distinct > 0;
    cmodel_free(c1);
    lm_close(&lm);
  }
  cr_log_info("greedy runs that change token: %d of 8 seeds", changing);
  cr_assert_gt(changing, 0, "no seed gives a greedy run that changes token: the test compares little");
}

/* ---- model_for_generation ----------------------------------------------------- */

Test(genmodel, nodes_params_and_inputs)
{
  Lm lm;
  lm_open(&lm, tiny_text, 3, 1);
  Model *g = lm.gm;
  cr_assert_str_eq(g->name, "tiny_gen");
  cr_assert_eq(g->verified, 1);
  cr_assert_eq(g->nnode, 4, "tokens, x, h, loss (targets and h_T dropped), got %d", g->nnode);
  const char *names[4] = {"tokens", "x", "h", "loss"};
  for (int i = 0; i < 4; i++)
    cr_assert_str_eq(g->node[i].name, names[i]);
  cr_assert_eq(g->noutput, 1);
  const MNode *s = &g->node[g->output[0]];
  cr_assert(s->kind == M_SOFTMAX && s->target < 0 && s->hastime && s->shape.rank == 3);
  cr_assert_eq(g->loss, -1);
  int np = 0;
  for (int i = 0; i < g->nnode; i++)
    for (int p = 0; p < g->node[i].nparam; p++, np++)
      cr_assert(tset_find(&lm.params, g->node[i].param[p].full), "'%s' is not a parameter of the training model",
                g->node[i].param[p].full);
  cr_assert_eq(np, lm.params.n, "%d parameters, the training model has %d", np, lm.params.n);
  Model *again;
  char err[256];
  cr_assert_eq(model_for_generation(lm.m, lm.md, &again, err, sizeof err), RNNC_OK);
  cr_assert_eq(again, g, "asked again: the same model");
  cr_assert_eq(lm.m->nmodel, 2);
  cr_assert_eq(model_for_generation(lm.m, g, &again, err, sizeof err), RNNC_EVERIFY);
  cr_assert_str_eq(err, "model 'tiny_gen' has no softmax with a target");
  lm_close(&lm);
}

/* The size of dim d under md's bindings at T = B = 1. */
static long dimval(Lm *lm, Dim d)
{
  Env env;
  long v;
  const char *bad;
  env_for(lm, lm->md, 1, 1, &env);
  cr_assert(dim_eval(d, &env, &v, &bad));
  return v;
}

/* The generation model of lm over T steps of B rows: its probabilities give
 * the training model's loss (-mean log p of the targets, within 1e-5
 * relative), and T runs of one step with the states carried give the same
 * probabilities (within 1e-6), also after cmodel_reset_state. */
static void check_probs(Lm *lm, const char *tag)
{
  enum { T = 5, B = 2 };
  const MNode *sm_ = &lm->gm->node[lm->gm->output[0]];
  const char *tokname = NULL, *tgtname = lm->md->node[lm->md->node[lm->md->loss].target].name;
  long Vin = 0, V = dimval(lm, sm_->size[0]);
  for (int i = 0; i < lm->gm->nnode; i++)
    if (lm->gm->node[i].kind == M_EMBEDDING) {
      tokname = lm->gm->node[lm->gm->node[i].arg[0]].name;
      Vin = dimval(lm, lm->gm->node[i].size[0]);
    }
  cr_assert(tokname && Vin > 0);
  int32_t tok[T * B], tgt[T * B];
  Rng r;
  rng_seed(&r, 8);
  for (int i = 0; i < T * B; i++)
    tok[i] = (int32_t)(rng_next(&r) % (uint64_t)Vin), tgt[i] = (int32_t)(rng_next(&r) % (uint64_t)V);
  char err[256];

  CModel *tm = lm_compile(lm, lm->md, T, B, 0);
  memcpy(cmodel_find(tm, tokname)->data, tok, sizeof tok);
  memcpy(cmodel_find(tm, tgtname)->data, tgt, sizeof tgt);
  cr_assert_eq(cmodel_run(tm, 0, 1, err, sizeof err), RNNC_OK, "%s", err);
  double loss = *(float *)cmodel_find(tm, lm->md->node[lm->md->loss].name)->data;

  CModel *gm = lm_compile(lm, lm->gm, T, B, 0);
  cr_assert_null(cmodel_find(gm, tgtname), "%s: the target input is dropped", tag);
  CTensor *pt = cmodel_find(gm, sm_->name);
  cr_assert(pt && pt->rank == 3 && pt->dim[0] == T && pt->dim[1] == B && pt->dim[2] == V);
  memcpy(cmodel_find(gm, tokname)->data, tok, sizeof tok);
  cr_assert_eq(cmodel_run(gm, 0, 1, err, sizeof err), RNNC_OK, "%s", err);
  const float *p = pt->data;
  double nll = 0;
  for (int i = 0; i < T * B; i++) {
    double rs = 0;
    for (int v = 0; v < V; v++)
      rs += p[i * V + v];
    cr_assert_float_eq(rs, 1.0, 1e-5, "%s: row %d sums to %.7f", tag, i, rs);
    nll -= log(p[i * V + tgt[i]]);
  }
  nll /= T * B;
  cr_log_info("%s: training loss %.8f, -mean log p %.8f", tag, loss, nll);
  cr_assert(fabs(nll - loss) <= 1e-5 * fabs(loss), "%s: -mean log p = %.8f, the training loss %.8f", tag, nll,
            loss);

  /* T = 1 steps, states carried: the same probabilities */
  CModel *sm = lm_compile(lm, lm->gm, 1, B, 1);
  CTensor *sp = cmodel_find(sm, sm_->name);
  int nstate = 0, want = 0;
  for (int i = 0; i < cmodel_ntensor(sm); i++)
    nstate += cmodel_tensor(sm, i)->role == CT_STATE;
  for (int i = 0; i < lm->gm->nnode; i++)
    want += lm->gm->node[i].kind == M_CELL ? lm->gm->node[i].cell->nstate : 0;
  cr_assert_eq(nstate, want, "%s: %d carried states, the cells have %d", tag, nstate, want);
  double maxd = 0;
  for (int t = 0; t < T; t++) {
    memcpy(cmodel_find(sm, tokname)->data, tok + t * B, B * sizeof *tok);
    cr_assert_eq(cmodel_run(sm, 0, 1, err, sizeof err), RNNC_OK, "%s", err);
    for (int i = 0; i < B * V; i++)
      maxd = fmax(maxd, fabs(((float *)sp->data)[i] - p[t * B * V + i]));
  }
  cr_assert_leq(maxd, 1e-6, "%s: stepwise probabilities differ by %.3g", tag, maxd);
  cmodel_reset_state(sm);
  memcpy(cmodel_find(sm, tokname)->data, tok, B * sizeof *tok);
  cr_assert_eq(cmodel_run(sm, 0, 1, err, sizeof err), RNNC_OK, "%s", err);
  maxd = 0;
  for (int i = 0; i < B * V; i++)
    maxd = fmax(maxd, fabs(((float *)sp->data)[i] - p[i]));
  cr_assert_leq(maxd, 1e-6, "%s: after cmodel_reset_state, step 0 again: differs by %.3g", tag, maxd);
  cmodel_free(tm);
  cmodel_free(gm);
  cmodel_free(sm);
}

Test(genmodel, probabilities_give_the_training_loss, .timeout = 120)
{
  Lm lm;
  lm_open(&lm, tiny_text, 21, 1);
  check_probs(&lm, "tiny");
  CModel *cm = lm_compile(&lm, lm.gm, 1, 1, 1);
  cr_assert_not_null(cmodel_find(cm, "state.h.c"));
  cr_assert_not_null(cmodel_find(cm, "state.h.h"));
  cmodel_free(cm);
  lm_close(&lm);
}

/* Every language model of examples/ (a single layer of each built-in cell,
 * two stacked layers, user cells). */
Test(genmodel, example_language_models, .timeout = 300)
{
  static const char *const files[] = {"examples/charlm.rnn",     "examples/charlm_lstm.rnn",
                                      "examples/charlm_gru.rnn", "examples/charlm_rnn.rnn",
                                      "examples/lstm2_lm.rnn",   "examples/indrnn.rnn",
                                      "examples/peephole_lstm.rnn"};
  for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
    Lm lm;
    lm_open(&lm, srcpath(files[i]), 30 + i, 1);
    check_probs(&lm, files[i]);
    lm_close(&lm);
  }
}

/* model_for_generation's message for a model (text, or a file of examples/). */
static void expect_error(const char *text, const char *file, const char *msg)
{
  Module *m = file ? load_module(srcpath(file)) : load_text(text);
  cr_assert_not_null(m);
  Model *md = m->model[m->nmodel - 1], *g = (Model *)1;
  int nmodel = m->nmodel;
  char err[512] = "";
  cr_assert_eq(model_for_generation(m, md, &g, err, sizeof err), RNNC_EVERIFY);
  cr_assert_str_eq(err, msg);
  cr_assert_null(g);
  cr_assert_eq(m->nmodel, nmodel, "nothing added");
  module_free(m);
}

Test(genmodel, errors)
{
  expect_error(NULL, "examples/bilstm_tagger.rnn", "cannot generate with 'enc.bwd': it runs backward in time");
  expect_error(NULL, "examples/mgu.rnn", "cannot generate with 'bw': it runs backward in time");
  expect_error(NULL, "examples/gru_classifier.rnn",
               "model 'gru_classifier' is not a language model: softmax 'loss' gives one class per sequence, not "
               "the next token");
  expect_error(NULL, "examples/seq2seq.rnn",
               "model 'seq2seq' reads inputs 'src' and 'tgt_in': generation feeds one input, the tokens");
  expect_error(NULL, "examples/features_lstm.rnn",
               "model 'features_lstm' has no token input i32[T, B] read by an embedding or onehot");
  expect_error("model nolm(V = 4, H = 3) {\n"
               "  input tokens: i32[T, B]\n"
               "  x = embedding(tokens, V, H)\n"
               "  p = softmax(x, V)\n"
               "  output p\n"
               "}\n",
               NULL, "model 'nolm' has no softmax with a target");
  expect_error("model sumlm(V = 4, H = 3) {\n"
               "  input tokens: i32[T, B]\n"
               "  x = embedding(tokens, V, H)\n"
               "  h = rnn(x, H = H)\n"
               "  s = sum(h)\n"
               "  output s\n"
               "}\n",
               NULL, "model 'sumlm' has no softmax with a target");
  /* a model of that name exists and is not a generation model */
  expect_error("model tiny_gen(V = 4, H = 3) {\n"
               "  input a: i32[T, B]\n"
               "  x = embedding(a, V, H)\n"
               "  s = sum(x)\n"
               "  output s\n"
               "}\n"
               "model tiny(V = 4, H = 3) {\n"
               "  input tokens: i32[T, B], targets: i32[T, B]\n"
               "  x = embedding(tokens, V, H)\n"
               "  loss = softmax(x, V, target = targets)\n"
               "  output loss\n"
               "}\n",
               NULL, "cannot make the generation model 'tiny_gen': a model of that name exists");
}

Test(genmodel, charlm_example_compiles_for_generation, .timeout = 120)
{
  Module *m = load_module(srcpath("examples/charlm_lstm.rnn"));
  cr_assert_not_null(m);
  Model *md = model_find(m, "charlm_lstm"), *g;
  char err[512];
  cr_assert_eq(model_for_generation(m, md, &g, err, sizeof err), RNNC_OK, "%s", err);
  cr_assert_eq(schedule(m), RNNC_OK);
  Lm lm = {m, md, g, {0}};
  Env env;
  env_for(&lm, md, 1, 1, &env);
  tset_init(&lm.params);
  cr_assert_eq(init_params(md, &env, 5, &lm.params, err, sizeof err), RNNC_OK, "%s", err);
  CModel *cm = lm_compile(&lm, g, 1, 3, 1);
  Step s;
  step_open(&s, cm, 65);
  int32_t out[6];
  double score;
  cr_assert_eq(beam_search(beam_step, &s, 65, 3, 10, 6, -1, 0, out, &score), RNNC_OK);
  cr_assert(score < 0 && score > 6 * log(1e-6), "score %.6g", score);
  for (int i = 0; i < 6; i++)
    cr_assert(out[i] >= 0 && out[i] < 65);
  cmodel_free(cm);
  lm_close(&lm);
}
