/* api_gen.c — the public generation API (include/rnnc.h, "generation and
 * evaluation"): a language model's next-token model (ir/genmodel.c) compiled
 * for one token at a time with its states carried, once for one row and once
 * for the beam's rows; sampling and beam search on top (runtime/sample.c).
 *
 * The two nets share their parameters: the beam net uses the one-row net's.
 * A beam step reorders the carried states' rows by the beam's parents before
 * feeding the next tokens.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

struct rnnc_generator {
  rnnc_ctx *ctx;
  rnnc_net *one, *beam;  /* B = 1 and B = width (NULL when width is 1) */
  int width, V;
  const char *tokname;   /* the token input of the generation model */
  const char *outname;   /* its probabilities [1, B, V] */
  float *gather;         /* scratch: one state tensor of the beam net */
};

/* The generation model's only i32 input and only output. */
static void gen_names(const Model *g, const char **tok, const char **out)
{
  *tok = *out = NULL;
  for (int i = 0; i < g->nnode; i++)
    if (g->node[i].kind == M_INPUT && g->node[i].dtype == DT_I32)
      *tok = g->node[i].name;
  if (g->noutput == 1)
    *out = g->node[g->output[0]].name;
  if (!*tok || !*out)
    die("generation model '%s' has no token input or not one output", g->name);
}

int rnnc_generator_new(rnnc_ctx *ctx, const char *model, int ndims, const rnnc_dim *dims, int width,
                       rnnc_generator **out)
{
  if (!ctx)
    return RNNC_EMISUSE;
  if (!model || !out || ndims < 0 || (ndims > 0 && !dims))
    return api_net_fail(ctx, RNNC_EMISUSE, "rnnc_generator_new: %s", !model ? "model is NULL"
                                                                     : !out ? "out is NULL" : "bad dims");
  *out = NULL;
  if (width < 1)
    return api_net_fail(ctx, RNNC_EMISUSE, "rnnc_generator_new: width is %d; it must be at least 1", width);
  for (int i = 0; i < ndims; i++)
    if (dims[i].name && (strcmp(dims[i].name, "T") == 0 || strcmp(dims[i].name, "B") == 0))
      return api_net_fail(ctx, RNNC_EMISUSE, "rnnc_generator_new: the generator binds %s itself", dims[i].name);
  Model *md = NULL;
  for (int i = ctx->m->nmodel - 1; i >= 0 && !md; i--)
    if (strcmp(ctx->m->model[i]->name, model) == 0)
      md = ctx->m->model[i];
  if (!md)
    return api_net_fail(ctx, RNNC_EINPUT, "rnnc_generator_new: no model '%s' in this context", model);
  Model *gm = NULL;
  char err[1024] = "";
  int st = model_for_generation(ctx->m, md, &gm, err, sizeof err);
  if (st != RNNC_OK) /* the model is fine, but not one a generator can run */
    return api_net_fail(ctx, st == RNNC_EVERIFY ? RNNC_EINPUT : st, "%s", err);

  rnnc_generator *g = calloc(1, sizeof *g);
  rnnc_dim *d = malloc(((size_t)ndims + 2) * sizeof *d);
  if (!g || !d) {
    free(g);
    free(d);
    return api_net_fail(ctx, RNNC_ENOMEM, "rnnc_generator_new: out of memory");
  }
  if (ndims)
    memcpy(d, dims, (size_t)ndims * sizeof *d);
  d[ndims] = (rnnc_dim){"T", 1};
  d[ndims + 1] = (rnnc_dim){"B", 1};
  g->ctx = ctx;
  g->width = width;
  gen_names(gm, &g->tokname, &g->outname);
  st = rnnc_compile(ctx, gm->name, ndims + 2, d, RNNC_CARRY, &g->one);
  if (st == RNNC_OK && width > 1) {
    d[ndims + 1].value = width;
    st = rnnc_compile(ctx, gm->name, ndims + 2, d, RNNC_CARRY, &g->beam);
    if (st == RNNC_OK)
      st = rnnc_share_params(g->beam, g->one);
  }
  free(d);
  /* a masked model's mask reads 1: every generated step is a real step */
  for (int i = 0; st == RNNC_OK && i < gm->nnode; i++)
    if (mnode_is_mask(&gm->node[i]))
      for (int k = 0; k < 2; k++) {
        rnnc_net *net = k ? g->beam : g->one;
        float *m = net ? rnnc_data(net, gm->node[i].name) : NULL;
        for (long b = 0; m && b < (k ? width : 1); b++)
          m[b] = 1.0f;
      }
  if (st == RNNC_OK) {
    int64_t dim[4];
    int rank;
    rnnc_tensor_shape(g->one, g->outname, NULL, &rank, dim);
    g->V = (int)dim[rank - 1];
    size_t most = 0;
    rnnc_net *bn = g->beam ? g->beam : g->one;
    for (int i = 0; i < cmodel_ntensor(bn->cm); i++) {
      const CTensor *t = cmodel_tensor(bn->cm, i);
      if (t->role == CT_STATE && (size_t)t->numel > most)
        most = (size_t)t->numel;
    }
    if (most && !(g->gather = malloc(most * sizeof(float))))
      st = api_net_fail(ctx, RNNC_ENOMEM, "rnnc_generator_new: out of memory");
  }
  if (st != RNNC_OK) {
    rnnc_generator_free(g);
    return st;
  }
  *out = g;
  return api_net_ok(ctx);
}

void rnnc_generator_free(rnnc_generator *g)
{
  if (!g)
    return;
  rnnc_net_free(g->beam);
  rnnc_net_free(g->one);
  free(g->gather);
  free(g);
}

int rnnc_generator_load_params(rnnc_generator *g, const char *path)
{
  return g ? rnnc_load_params(g->one, path) : RNNC_EMISUSE;
}

int rnnc_generator_share_params(rnnc_generator *g, rnnc_net *src)
{
  if (!g)
    return RNNC_EMISUSE;
  int st = rnnc_share_params(g->one, src);
  /* the beam net reads the one-row net's parameters, which now are src's */
  if (st == RNNC_OK && g->beam)
    st = rnnc_share_params(g->beam, g->one);
  return st;
}

int rnnc_generator_threads(rnnc_generator *g, int nthreads)
{
  if (!g)
    return RNNC_EMISUSE;
  int st = rnnc_set_threads(g->one, nthreads);
  if (st == RNNC_OK && g->beam)
    st = rnnc_set_threads(g->beam, nthreads);
  return st;
}

/* Feed one token per row of net (tok[B]) and run one step: probabilities in
 * the net's output. */
static int step(rnnc_generator *g, rnnc_net *net, const int32_t *tok, int B)
{
  int st = rnnc_set(net, g->tokname, tok, (size_t)B * sizeof *tok);
  return st == RNNC_OK ? rnnc_forward(net) : st;
}

/* A zero state, then prefix[0 .. n-2] fed to every row of net (the last
 * prefix token is fed by the caller, with what follows it). */
static int feed_prefix(rnnc_generator *g, rnnc_net *net, const int32_t *prefix, int n, int B, int32_t *rowtok)
{
  int st = rnnc_reset_state(net);
  for (int i = 0; st == RNNC_OK && i < n - 1; i++) {
    for (int b = 0; b < B; b++)
      rowtok[b] = prefix[i];
    st = step(g, net, rowtok, B);
  }
  return st;
}

static int args_ok(rnnc_generator *g, const char *fn, const int32_t *ids, int n, int min, const void *out)
{
  if (!g)
    return RNNC_EMISUSE;
  if (!ids || n < min || !out)
    return api_net_fail(g->ctx, RNNC_EMISUSE, "%s: %s", fn,
                        !ids ? "the token ids are NULL" : !out ? "out is NULL" : "too few token ids");
  for (int i = 0; i < n; i++)
    if (ids[i] < 0 || ids[i] >= g->V)
      return api_net_fail(g->ctx, RNNC_EINPUT, "%s: token id %d at %d is outside [0, %d)", fn, ids[i], i, g->V);
  return RNNC_OK;
}

int rnnc_generate(rnnc_generator *g, const int32_t *prefix, int n, int length, double temperature, int topk,
                  uint64_t seed, int32_t *out)
{
  int st = args_ok(g, "rnnc_generate", prefix, n, 1, out);
  if (st != RNNC_OK)
    return st;
  if (length < 0 || !(temperature >= 0))
    return api_net_fail(g->ctx, RNNC_EMISUSE, "rnnc_generate: %s",
                        length < 0 ? "length < 0" : "temperature must be >= 0");
  Rng r;
  rng_seed(&r, seed);
  int32_t tok = prefix[n - 1];
  if ((st = feed_prefix(g, g->one, prefix, n, 1, &tok)) != RNNC_OK)
    return st;
  tok = prefix[n - 1];
  const float *p = rnnc_data(g->one, g->outname);
  for (int i = 0; i < length; i++) {
    if ((st = step(g, g->one, &tok, 1)) != RNNC_OK)
      return st;
    tok = out[i] = sample_token(p, g->V, temperature, topk, &r);
  }
  return api_net_ok(g->ctx);
}

/* beam_search's step on the beam net (BeamStepFn). */
typedef struct BeamCtx {
  rnnc_generator *g;
  int32_t *tok;   /* [width of the net] */
} BeamCtx;

static int beam_step(void *vctx, const int32_t *tok, const int32_t *parent, int K, float *logp)
{
  BeamCtx *bc = vctx;
  rnnc_generator *g = bc->g;
  rnnc_net *net = g->beam ? g->beam : g->one;
  int B = g->beam ? g->width : 1;
  if (parent) /* row k continues row parent[k]: gather every carried state's rows */
    for (int i = 0; i < cmodel_ntensor(net->cm); i++) {
      CTensor *t = cmodel_tensor(net->cm, i);
      if (t->role != CT_STATE)
        continue;
      int64_t d = t->dim[1];
      float *s = t->data;
      for (int k = 0; k < K; k++)
        memcpy(g->gather + k * d, s + (int64_t)parent[k] * d, (size_t)d * sizeof(float));
      memcpy(s, g->gather, (size_t)(K * d) * sizeof(float));
    }
  for (int b = 0; b < B; b++)
    bc->tok[b] = tok[b < K ? b : 0];
  int st = step(g, net, bc->tok, B);
  if (st != RNNC_OK)
    return st;
  const float *p = rnnc_data(net, g->outname);
  for (int64_t e = 0; e < (int64_t)K * g->V; e++)
    logp[e] = p[e] > 0 ? logf(p[e]) : -INFINITY;
  return RNNC_OK;
}

int rnnc_beam_search(rnnc_generator *g, const int32_t *prefix, int n, int length, int width, double lenpen,
                     int eos, int32_t *out, double *score)
{
  int st = args_ok(g, "rnnc_beam_search", prefix, n, 1, out);
  if (st != RNNC_OK)
    return st;
  if (width < 1 || width > g->width)
    return api_net_fail(g->ctx, RNNC_EMISUSE, "rnnc_beam_search: width %d is outside [1, %d] (the generator's)",
                        width, g->width);
  if (length < 0 || eos >= g->V)
    return api_net_fail(g->ctx, RNNC_EMISUSE, "rnnc_beam_search: %s", length < 0 ? "length < 0" : "eos >= V");
  rnnc_net *net = g->beam ? g->beam : g->one;
  int B = g->beam ? g->width : 1;
  int32_t *tok = malloc((size_t)B * sizeof *tok);
  if (!tok)
    return api_net_fail(g->ctx, RNNC_ENOMEM, "rnnc_beam_search: out of memory");
  BeamCtx bc = {g, tok};
  double sc = 0;
  if ((st = feed_prefix(g, net, prefix, n, B, tok)) == RNNC_OK && length > 0)
    st = beam_search(beam_step, &bc, g->V, width, prefix[n - 1], length, eos, lenpen, out, &sc);
  free(tok);
  if (st != RNNC_OK)
    return api_net_fail(g->ctx, st, "rnnc_beam_search: %s", rnnc_errmsg(g->ctx));
  if (score)
    *score = sc;
  return api_net_ok(g->ctx);
}

int rnnc_log_prob(rnnc_generator *g, const int32_t *ids, int n, double *logp)
{
  int st = args_ok(g, "rnnc_log_prob", ids, n, 2, logp);
  if (st != RNNC_OK)
    return st;
  if ((st = rnnc_reset_state(g->one)) != RNNC_OK)
    return st;
  const float *p = rnnc_data(g->one, g->outname);
  double sum = 0;
  for (int i = 0; i < n - 1; i++) {
    if ((st = step(g, g->one, &ids[i], 1)) != RNNC_OK)
      return st;
    sum += log((double)p[ids[i + 1]]);
  }
  *logp = sum;
  return api_net_ok(g->ctx);
}
