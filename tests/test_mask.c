/* test_mask.c — masked cell application (`mask = m`, ir/maskcell.c) and
 * one-hot inputs (`onehot(tokens, V)`).
 *
 * Masks: a batch of B sequences of different lengths, right-padded to T and
 * masked, against each sequence run alone (B = 1, T = its length) by the same
 * model without masks and the same parameters, in the interpreter (float32)
 * and the JIT: a forward LSTM, a backward-direction GRU (a bidirectional
 * layer), and a masked LSTM stacked on both. For each sequence the final
 * states (final(h, s)) must agree; the loss of the batch is the per-sequence
 * losses combined (cross-entropy: weighted by their counts of targets, the
 * mean over all; a sum: summed), and so is every parameter gradient. Padded
 * steps hold random token ids, so the padding really is ignored. Errors are
 * norm-wise, max|a - b| / max|b|, and must be <= 1e-5.
 *
 * Also: a mask of ones gives the unmasked model's loss exactly (interpreter);
 * the mask gets no gradient; the builder's rnnc_apply_mask and rnnc_onehot
 * print as the text; onehot equals an embedding whose weight is the identity
 * (interpreter and JIT); out-of-range token ids in onehot give the message
 * embedding gives; autodiff refuses a broadcast [1] that carries an adjoint.
 */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define TOL 1e-5

enum { NB = 4, TT = 6 };
static const int lens[NB] = {6, 3, 1, 4};

/* The masked model and the same without masks; loss: "xent" or "sum". */
static char *models_text(int sum)
{
  const char *loss = sum ? "  loss = sum(concat(top, f, b))\n"
                         : "  loss = softmax(concat(top, f, b), K, target = tags, ignore = -1)\n";
  const char *fmt =
      "model %s(V = 7, E = 4, H = 5, K = 3) {\n"
      "  input words: i32[T, B]%s%s\n"
      "  x = embedding(words, V, E)\n"
      "  f = lstm(x, H = H%s)\n"
      "  b = gru(x, H = H, backward%s)\n"
      "  top = lstm(concat(f, b), H = H%s)\n"
      "%s"
      "  hf = final(f, h)\n"
      "  cf = final(f, c)\n"
      "  hb = final(b, h)\n"
      "  ht = final(top, h)\n"
      "  output loss, hf, cf, hb, ht\n"
      "}\n";
  const char *tg = sum ? "" : ", tags: i32[T, B]";
  char *a = NULL, *b = NULL, *all = NULL;
  cr_assert(asprintf(&a, fmt, "padded", tg, ", mask: f32[T, B]", ", mask = mask", ", mask = mask",
                     ", mask = mask", loss) > 0);
  cr_assert(asprintf(&b, fmt, "alone", tg, "", "", "", "", loss) > 0);
  cr_assert(asprintf(&all, "%s\n%s", a, b) > 0);
  free(a);
  free(b);
  return all;
}

static Module *load_text(const char *text)
{
  Module *m = module_new();
  const Source *src = source_new(m, "<test>", text);
  int st = parse(m, src);
  if (st == RNNC_OK)
    st = verify(m);
  if (st != RNNC_OK)
    diags_print(stderr, &m->diags);
  cr_assert_eq(st, RNNC_OK, "the test models do not verify");
  return m;
}

/* Differentiate every model and schedule the module. */
static void prepare(Module *m)
{
  for (int i = 0; i < m->nmodel; i++) {
    m->model[i]->grad = autodiff(m, m->model[i]);
    cr_assert_not_null(m->model[i]->grad);
  }
  cr_assert_eq(schedule(m), RNNC_OK);
}

/* T, B and the header's defaults of md */
static void dims(Module *m, const Model *md, Arena *a, Env *env, long T, long B)
{
  env_set(a, env, intern(m->names, "T", 1), T);
  env_set(a, env, intern(m->names, "B", 1), B);
  for (int i = 0; i < md->ndim; i++)
    if (md->dim[i].hasdefault)
      env_set(a, env, md->dim[i].name, md->dim[i].def);
}

static Tensor *addt(TensorSet *s, const char *name, int dtype, int rank, int64_t d0, int64_t d1)
{
  int64_t dim[2] = {d0, d1};
  Tensor *t = tset_add(s, name, dtype, rank, dim);
  cr_assert_not_null(t);
  return t;
}

/* Run md on params and inputs: the interpreter (float32), or the JIT at
 * T, B. Every output and gradient into out. */
static void run_model(Module *m, Model *md, int jit, long T, long B, const TensorSet *params,
                      const TensorSet *inputs, TensorSet *out)
{
  char err[512] = "";
  tset_init(out);
  if (!jit) {
    InterpOpts io = {.prec = PREC_F32, .wantgrad = 1};
    int st = interp_run(m, md, md->grad, NULL, params, inputs, &io, out, err, sizeof err);
    cr_assert_eq(st, RNNC_OK, "%s: interp_run: %s", md->name, err);
    return;
  }
  Arena *a = arena_new();
  Env env = {0};
  dims(m, md, a, &env, T, B);
  CModel *cm = NULL;
  CompileOpts co = {.grad = 1};
  int st = cmodel_compile(m, md, &env, &co, &cm, err, sizeof err);
  cr_assert_eq(st, RNNC_OK, "%s: cmodel_compile: %s", md->name, err);
  for (int i = 0; i < cmodel_ntensor(cm); i++) {
    CTensor *x = cmodel_tensor(cm, i);
    if (x->role != CT_PARAM && x->role != CT_INPUT)
      continue;
    const Tensor *t = tset_find(x->role == CT_PARAM ? params : inputs, x->name);
    cr_assert(t && tensor_numel(t) == x->numel && t->dtype == x->dtype, "%s: tensor '%s'", md->name, x->name);
    memcpy(x->data, t->data, (size_t)x->numel * dtype_size(x->dtype));
  }
  st = cmodel_run(cm, 1, 2, err, sizeof err);
  cr_assert_eq(st, RNNC_OK, "%s: cmodel_run: %s", md->name, err);
  for (int i = 0; i < cmodel_ntensor(cm); i++) {
    CTensor *x = cmodel_tensor(cm, i);
    if (x->role != CT_OUTPUT && x->role != CT_GRAD)
      continue;
    Tensor *t = tset_add(out, x->name, x->dtype, x->rank, x->dim);
    cr_assert_not_null(t);
    memcpy(t->data, x->data, (size_t)x->numel * dtype_size(x->dtype));
  }
  cmodel_free(cm);
  arena_free(a);
}

static const float *f32(const TensorSet *s, const char *name)
{
  const Tensor *t = tset_find(s, name);
  cr_assert(t && t->dtype == DT_F32, "no float tensor '%s'", name);
  return t->data;
}

/* max|a - b| / max|b| */
static double relerr(const double *a, const double *b, long n)
{
  double d = 0, r = 0;
  for (long i = 0; i < n; i++) {
    d = fmax(d, fabs(a[i] - b[i]));
    r = fmax(r, fabs(b[i]));
  }
  return isnan(d) ? INFINITY : d / fmax(r, FLT_MIN);
}

/* The parity test for one loss kind and engine. */
static void parity(int sum, int jit)
{
  char *text = models_text(sum);
  Module *m = load_text(text);
  free(text);
  Model *pad = model_find(m, "padded"), *alone = model_find(m, "alone");
  cr_assert(pad && alone);
  prepare(m);
  char err[512] = "";
  Env env = {0};
  Arena *a = arena_new();
  dims(m, pad, a, &env, TT, NB);
  TensorSet params;
  tset_init(&params);
  cr_assert_eq(init_params(pad, &env, 7, &params, err, sizeof err), RNNC_OK, "%s", err);

  /* the padded batch: real steps t < len[b], random words everywhere */
  Rng rng;
  rng_seed(&rng, 11);
  TensorSet in;
  tset_init(&in);
  int32_t *w = addt(&in, "words", DT_I32, 2, TT, NB)->data;
  int32_t *tg = sum ? NULL : addt(&in, "tags", DT_I32, 2, TT, NB)->data;
  float *mk = addt(&in, "mask", DT_F32, 2, TT, NB)->data;
  long ntarget = 0;
  for (int t = 0; t < TT; t++)
    for (int b = 0; b < NB; b++) {
      int real = t < lens[b];
      w[t * NB + b] = (int32_t)(rng_uniform(&rng) * 7);
      if (tg)
        tg[t * NB + b] = real ? (int32_t)(rng_uniform(&rng) * 3) : -1;
      mk[t * NB + b] = (float)real;
      ntarget += real;
    }
  TensorSet bout;
  run_model(m, pad, jit, TT, NB, &params, &in, &bout);
  cr_assert_null(tset_find(&bout, "grad.mask"), "the mask got a gradient");

  /* each sequence alone, combined as the batch combines them */
  int ng = 0;
  const char *gname[64];
  long gn[64];
  for (int i = 0; i < pad->nnode; i++)
    for (int p = 0; p < pad->node[i].nparam; p++) {
      gname[ng] = aprintf(a, "grad.%s", pad->node[i].param[p].full);
      gn[ng] = (long)tensor_numel(tset_find(&bout, gname[ng]));
      ng++;
    }
  double loss = 0;
  double **gsum = calloc((size_t)ng, sizeof *gsum);
  for (int k = 0; k < ng; k++)
    gsum[k] = calloc((size_t)gn[k], sizeof **gsum);
  static const char *const fins[] = {"hf", "cf", "hb", "ht"};
  double worst = 0;
  for (int b = 0; b < NB; b++) {
    int L = lens[b];
    TensorSet sin, sout;
    tset_init(&sin);
    int32_t *sw = addt(&sin, "words", DT_I32, 2, L, 1)->data;
    int32_t *st = sum ? NULL : addt(&sin, "tags", DT_I32, 2, L, 1)->data;
    for (int t = 0; t < L; t++) {
      sw[t] = w[t * NB + b];
      if (st)
        st[t] = tg[t * NB + b];
    }
    run_model(m, alone, jit, L, 1, &params, &sin, &sout);
    double wt = sum ? 1.0 : (double)L / (double)ntarget;
    loss += wt * f32(&sout, "loss")[0];
    for (int k = 0; k < ng; k++) {
      const float *g = f32(&sout, gname[k]);
      for (long e = 0; e < gn[k]; e++)
        gsum[k][e] += wt * g[e];
    }
    /* final states: row b of the batch against the sequence's */
    for (int f = 0; f < 4; f++) {
      const Tensor *bt = tset_find(&bout, fins[f]);
      long H = (long)bt->dim[1];
      double x[64], y[64];
      for (long e = 0; e < H; e++) {
        x[e] = ((const float *)bt->data)[b * H + e];
        y[e] = f32(&sout, fins[f])[e];
      }
      double r = relerr(x, y, H);
      cr_expect(r <= TOL, "%s %s: final state %s of sequence %d (length %d): error %.2e", jit ? "jit" : "interp",
                sum ? "sum" : "xent", fins[f], b, L, r);
      worst = fmax(worst, r);
    }
    tset_clear(&sin);
    tset_clear(&sout);
  }
  double bl = f32(&bout, "loss")[0];
  double r = relerr(&bl, &loss, 1);
  cr_expect(r <= TOL, "%s %s: batch loss %.9g, combined per-sequence %.9g", jit ? "jit" : "interp",
            sum ? "sum" : "xent", bl, loss);
  worst = fmax(worst, r);
  for (int k = 0; k < ng; k++) {
    const float *g = f32(&bout, gname[k]);
    double *x = malloc((size_t)gn[k] * sizeof *x);
    for (long e = 0; e < gn[k]; e++)
      x[e] = g[e];
    r = relerr(x, gsum[k], gn[k]);
    cr_expect(r <= TOL, "%s %s: %s error %.2e", jit ? "jit" : "interp", sum ? "sum" : "xent", gname[k], r);
    worst = fmax(worst, r);
    free(x);
    free(gsum[k]);
  }
  free(gsum);
  fprintf(stderr, "mask parity %-6s %-4s: loss %.6f, %d gradients and 4 final states, worst error %.2e\n",
          jit ? "jit" : "interp", sum ? "sum" : "xent", bl, ng, worst);
  tset_clear(&bout);
  tset_clear(&in);
  tset_clear(&params);
  arena_free(a);
  module_free(m);
}

Test(mask, parity_interp_xent) { parity(0, 0); }
Test(mask, parity_interp_sum) { parity(1, 0); }
Test(mask, parity_jit_xent) { parity(0, 1); }
Test(mask, parity_jit_sum) { parity(1, 1); }

/* A mask of ones is the unmasked model, exactly (the interpreter: 1*x + 0*y). */
Test(mask, ones_is_unmasked)
{
  char *text = models_text(0);
  Module *m = load_text(text);
  free(text);
  Model *pad = model_find(m, "padded"), *alone = model_find(m, "alone");
  prepare(m);
  char err[512] = "";
  TensorSet params, in, o1, o2;
  tset_init(&params);
  tset_init(&in);
  Arena *a = arena_new();
  Env env = {0};
  dims(m, pad, a, &env, 5, 3);
  cr_assert_eq(init_params(pad, &env, 3, &params, err, sizeof err), RNNC_OK, "%s", err);
  int32_t *w = addt(&in, "words", DT_I32, 2, 5, 3)->data, *tg = addt(&in, "tags", DT_I32, 2, 5, 3)->data;
  for (int e = 0; e < 15; e++) {
    w[e] = (e * 5) % 7;
    tg[e] = e % 3;
  }
  run_model(m, alone, 0, 5, 3, &params, &in, &o2);
  float *mk = addt(&in, "mask", DT_F32, 2, 5, 3)->data;
  for (int e = 0; e < 15; e++)
    mk[e] = 1;
  run_model(m, pad, 0, 5, 3, &params, &in, &o1);
  cr_assert_eq(o1.n, o2.n);
  for (int i = 0; i < o2.n; i++) {
    const Tensor *t = &o2.t[i], *u = tset_find(&o1, t->name);
    cr_assert(u && tensor_numel(u) == tensor_numel(t), "%s", t->name);
    cr_expect_eq(memcmp(u->data, t->data, (size_t)tensor_numel(t) * 4), 0, "%s differs", t->name);
  }
  tset_clear(&o1);
  tset_clear(&o2);
  tset_clear(&in);
  tset_clear(&params);
  arena_free(a);
  module_free(m);
}

/* The derived cell reads as its equations. */
Test(mask, masked_cell_text)
{
  Module *m = load_text("model r(E = 2, H = 3) {\n  input x: f32[T, B, E], m: f32[T, B]\n"
                        "  h = rnn(x, H = H, mask = m)\n  output h\n}\n");
  Cell *c = cell_find(m, "rnn.masked");
  cr_assert(c && c->unmasked == cell_find(m, "rnn") && cell_find(m, "rnn")->masked == c);
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  print_cell(f, c);
  fclose(f);
  cr_expect_str_eq(buf, "cell rnn.masked(x: [I], mask: [1]) state(h: [H]) {\n"
                        "  param W_ih: [H, I], W_hh: [H, H], b_ih: [H], b_hh: [H]\n"
                        "  h_new = tanh(W_ih @ x + b_ih + W_hh @ h + b_hh)\n"
                        "  real = step(mask)\n"
                        "  pad = 1 - real\n"
                        "  h' = real * h_new + pad * h\n"
                        "  out real * h_new\n"
                        "}\n");
  free(buf);
  module_free(m);
}

/* A [1] value broadcast over a vector is fine forward; autodiff refuses it
 * when it carries an adjoint. */
Test(mask, broadcast_adjoint_refused)
{
  Module *m = load_text("cell sc(x: [I], s: [1]) state(h: [I]) {\n  h' = tanh(s * x + h)\n  out h'\n}\n");
  Cell *c = cell_find(m, "sc");
  cr_assert_null(autodiff_cell(m, c));
  char *d = diags_string(m->arena, &m->diags);
  cr_expect(strstr(d, "<test>:2:15: error: cannot differentiate cell 'sc': a one-element value is broadcast over "
                      "a vector here and carries an adjoint (broadcast only constants or step() of a value)") != NULL,
            "%s", d);
  module_free(m);
}

/* onehot(tokens, V) then a cell = an embedding with weight I then the same cell. */
static const char *onehot_text =
    "model oh(V = 6, H = 4) {\n"
    "  input tokens: i32[T, B], targets: i32[T, B]\n"
    "  x = onehot(tokens, V)\n"
    "  h = lstm(x, H = H)\n"
    "  loss = softmax(h, V, target = targets)\n"
    "  output loss\n"
    "}\n\n"
    "model em(V = 6, H = 4) {\n"
    "  input tokens: i32[T, B], targets: i32[T, B]\n"
    "  x = embedding(tokens, V, V)\n"
    "  h = lstm(x, H = H)\n"
    "  loss = softmax(h, V, target = targets)\n"
    "  output loss\n"
    "}\n";

Test(onehot, equals_identity_embedding)
{
  Module *m = load_text(onehot_text);
  Model *oh = model_find(m, "oh"), *em = model_find(m, "em");
  prepare(m);
  char err[512] = "";
  Arena *a = arena_new();
  Env env = {0};
  dims(m, em, a, &env, 7, 5);
  TensorSet params, in;
  tset_init(&params);
  tset_init(&in);
  cr_assert_eq(init_params(em, &env, 5, &params, err, sizeof err), RNNC_OK, "%s", err);
  float *W = tset_find(&params, "x.weight")->data;
  for (int i = 0; i < 36; i++)
    W[i] = i % 7 == 0; /* the identity [6, 6] */
  int32_t *tok = addt(&in, "tokens", DT_I32, 2, 7, 5)->data, *tg = addt(&in, "targets", DT_I32, 2, 7, 5)->data;
  for (int e = 0; e < 35; e++) {
    tok[e] = (e * 7 + 3) % 6;
    tg[e] = (e * 5 + 1) % 6;
  }
  TensorSet ro, re, jo;
  run_model(m, oh, 0, 7, 5, &params, &in, &ro);
  run_model(m, em, 0, 7, 5, &params, &in, &re);
  run_model(m, oh, 1, 7, 5, &params, &in, &jo);
  cr_assert_null(tset_find(&ro, "grad.x.weight"));
  int n = 0;
  for (int i = 0; i < ro.n; i++) {
    const Tensor *t = &ro.t[i], *u = tset_find(&re, t->name), *j = tset_find(&jo, t->name);
    cr_assert(u && j && tensor_numel(u) == tensor_numel(t) && tensor_numel(j) == tensor_numel(t), "%s", t->name);
    cr_expect_eq(memcmp(u->data, t->data, (size_t)tensor_numel(t) * 4), 0, "%s: onehot and embedding differ",
                 t->name);
    double *x = malloc((size_t)tensor_numel(t) * sizeof *x), *y = malloc((size_t)tensor_numel(t) * sizeof *y);
    for (long e = 0; e < tensor_numel(t); e++) {
      x[e] = ((const float *)j->data)[e];
      y[e] = ((const float *)t->data)[e];
    }
    double r = relerr(x, y, (long)tensor_numel(t));
    cr_expect(r <= TOL, "%s: jit against interp %.2e", t->name, r);
    free(x);
    free(y);
    n++;
  }
  cr_expect_eq(n, 7, "the loss and 6 gradients, got %d tensors", n); /* loss, h.* (4), loss.weight, loss.bias */
  tset_clear(&ro);
  tset_clear(&re);
  tset_clear(&jo);
  tset_clear(&in);
  tset_clear(&params);
  arena_free(a);
  module_free(m);
}

/* Token ids out of range: the embedding's message, from both engines. */
Test(onehot, id_out_of_range)
{
  Module *m = load_text(onehot_text);
  Model *oh = model_find(m, "oh");
  prepare(m);
  char err[512] = "";
  Arena *a = arena_new();
  Env env = {0};
  dims(m, oh, a, &env, 3, 2);
  TensorSet params, in, out;
  tset_init(&params);
  tset_init(&in);
  tset_init(&out);
  cr_assert_eq(init_params(oh, &env, 5, &params, err, sizeof err), RNNC_OK, "%s", err);
  int32_t *tok = addt(&in, "tokens", DT_I32, 2, 3, 2)->data;
  addt(&in, "targets", DT_I32, 2, 3, 2);
  tok[3] = 9; /* [1, 1] */
  InterpOpts io = {.prec = PREC_F32, .wantgrad = 1};
  cr_assert_eq(interp_run(m, oh, oh->grad, NULL, &params, &in, &io, &out, err, sizeof err), RNNC_EINPUT);
  cr_expect_str_eq(err, "input 'tokens' has token id 9 at [1, 1], outside [0, 6)");
  CModel *cm = NULL;
  CompileOpts co = {.grad = 1};
  cr_assert_eq(cmodel_compile(m, oh, &env, &co, &cm, err, sizeof err), RNNC_OK, "%s", err);
  memcpy(cmodel_find(cm, "tokens")->data, tok, 6 * sizeof *tok);
  err[0] = 0;
  cr_assert_eq(cmodel_run(cm, 1, 1, err, sizeof err), RNNC_EINPUT);
  cr_expect_str_eq(err, "input 'tokens' has token id 9 at [1, 1], outside [0, 6)");
  cmodel_free(cm);
  tset_clear(&out);
  tset_clear(&in);
  tset_clear(&params);
  arena_free(a);
  module_free(m);
}

/* The builder's rnnc_onehot and rnnc_apply_mask print as the text. */
Test(builder, onehot_and_mask)
{
  rnnc_ctx *ctx = rnnc_open();
  rnnc_model_builder *mb;
  rnnc_node w, mk, x, h, s;
  cr_assert_eq(rnnc_model_begin(ctx, "b", &mb), RNNC_OK);
  cr_assert_eq(rnnc_model_dim(mb, "V", 5), RNNC_OK);
  cr_assert_eq(rnnc_model_input(mb, "words", RNNC_I32, "[T, B]", &w), RNNC_OK);
  cr_assert_eq(rnnc_model_input(mb, "m", RNNC_F32, "[T, B]", &mk), RNNC_OK);
  cr_assert_eq(rnnc_onehot(mb, "x", w, "V", &x), RNNC_OK, "%s", rnnc_errmsg(ctx));
  cr_assert_eq(rnnc_apply(mb, "h", "gru", 1, &x, "H = 3", RNNC_BACKWARD, &h), RNNC_OK);
  cr_assert_eq(rnnc_apply_mask(mb, h, mk), RNNC_OK, "%s", rnnc_errmsg(ctx));
  cr_assert_eq(rnnc_apply_mask(mb, h, mk), RNNC_EMISUSE);
  cr_expect_str_eq(rnnc_errmsg(ctx), "rnnc_apply_mask: 'h' already has a mask");
  cr_assert_eq(rnnc_sum(mb, "s", h, &s), RNNC_OK);
  cr_assert_eq(rnnc_model_output(mb, s), RNNC_OK);
  cr_assert_eq(rnnc_model_end(mb), RNNC_OK, "%s", rnnc_errmsg(ctx));
  char *p = NULL;
  cr_assert_eq(rnnc_print_string(ctx, &p), RNNC_OK);
  cr_expect_str_eq(p, "model b(V = 5) {\n"
                      "  input words: i32[T, B]\n"
                      "  input m: f32[T, B]\n"
                      "  x = onehot(words, V)\n"
                      "  h = gru(x, H = 3, backward, mask = m)\n"
                      "  s = sum(h)\n"
                      "  output s\n"
                      "}\n");
  rnnc_free(p);
  rnnc_close(ctx);
}

/* Gradients of the masked and one-hot models against finite differences
 * (gradcheck.c: float64, max error <= 1e-6; its random float inputs make a
 * random mask, read as m > 0), and no gradient tensor for a mask. */
static void check_model(const char *rel, int ntensor)
{
  Module *m = load_module(srcpath(rel));
  cr_assert(m, "%s does not load", rel);
  Model *md = model_find(m, NULL);
  GradcheckReport r;
  char err[256] = "";
  cr_assert_eq(gradcheck(m, md, NULL, 1, NULL, &r, err, sizeof err), RNNC_OK, "%s: %s", rel, err);
  fprintf(stderr, "gradcheck %-36s loss %.6f  max err %.2e over %d tensors\n", rel, r.loss, r.maxerr, r.n);
  for (int i = 0; i < r.n; i++) {
    cr_expect(r.t[i].maxerr <= 1e-6, "%s: %s err %.3g", rel, r.t[i].name, r.t[i].maxerr);
    cr_expect(strcmp(r.t[i].name, "grad.mask") != 0, "%s: the mask was checked", rel);
  }
  cr_expect(r.pass);
  cr_expect_eq(r.n, ntensor, "%s: %d tensors checked", rel, r.n);
  gradcheck_report_free(&r);
  module_free(m);
}

Test(mask, gradcheck_models, .timeout = 300)
{
  check_model("tests/models/masked_tagger.rnn", 11);
  check_model("tests/models/masked_classifier.rnn", 7); /* gru 4, softmax 2, x */
  check_model("tests/models/onehot_lm.rnn", 6);
  check_model("tests/roundtrip/masks.rnn", 15); /* 3 cells 4 each, softmax 2, h0 */
}
