/* test_interp.c — the reference interpreter against values computed by hand:
 * a 1-unit RNN over two steps, softmax + cross-entropy, the ignore index,
 * the backward direction, initial states, concat/last/final, the error
 * messages, and float32 against float64. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* Parse and verify a model from text; the module's only model. */
static Module *mod(const char *text, Model **md)
{
  Module *m = module_new();
  const Source *src = source_new(m, "<test>", text);
  if (parse(m, src) != RNNC_OK || verify(m) != RNNC_OK) {
    diags_print(stderr, &m->diags);
    cr_assert_fail("the test model does not verify");
  }
  *md = m->model[m->nmodel - 1];
  return m;
}

static Tensor *put(TensorSet *s, const char *name, int dtype, int rank, const int64_t *dim,
                   const double *v)
{
  Tensor *t = tset_add(s, name, dtype, rank, dim);
  cr_assert(t);
  for (int64_t i = 0; i < tensor_numel(t); i++) {
    if (dtype == DT_F32)
      ((float *)t->data)[i] = (float)v[i];
    else if (dtype == DT_F64)
      ((double *)t->data)[i] = v[i];
    else if (dtype == DT_I32)
      ((int32_t *)t->data)[i] = (int32_t)v[i];
    else
      ((int64_t *)t->data)[i] = (int64_t)v[i];
  }
  return t;
}

#define PUT(s, name, dt, v, ...) \
  put((s), (name), (dt), sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t), (int64_t[]){__VA_ARGS__}, (v))

static double at(const TensorSet *s, const char *name, long i)
{
  const Tensor *t = tset_find(s, name);
  cr_assert(t, "no tensor '%s'", name);
  cr_assert(i < tensor_numel(t), "'%s' has %lld elements", name, (long long)tensor_numel(t));
  return t->dtype == DT_F32 ? ((float *)t->data)[i] : ((double *)t->data)[i];
}

static const Tensor *find(const TensorSet *s, const char *name)
{
  const Tensor *t = tset_find(s, name);
  cr_assert(t, "no tensor '%s'", name);
  return t;
}

static int run(Module *m, Model *md, const TensorSet *p, const TensorSet *in, int prec,
               int wantgrad, TensorSet *out, char *err)
{
  ModelGrad *g = wantgrad ? autodiff(m, md) : NULL;
  if (wantgrad)
    cr_assert(g);
  InterpOpts o = {.prec = prec, .wantgrad = wantgrad};
  return interp_run(m, md, g, NULL, p, in, &o, out, err, 256);
}

#define EQ(a, b) cr_assert(fabs((a) - (b)) <= 1e-14 * (1 + fabs(b)), "%s = %.17g, expected %.17g", #a, (double)(a), (double)(b))

/* h_t = tanh(w_ih x_t + b_ih + w_hh h_{t-1} + b_hh), h_0 = 0, L = h_1 + h_2:
 * values and every gradient by hand. */
Test(interp, rnn_one_unit_two_steps_by_hand)
{
  Model *md;
  Module *m = mod("model m(I = 1, H = 1) {\n"
                  "  input x: f32[T, B, I]\n"
                  "  h = rnn(x, H = H)\n"
                  "  s = sum(h)\n"
                  "  output h, s\n"
                  "}\n",
                  &md);
  double wih = 0.5, whh = -0.8, bih = 0.1, bhh = 0.2, x1 = 0.3, x2 = -0.7;
  TensorSet p, in, out;
  tset_init(&p), tset_init(&in), tset_init(&out);
  PUT(&p, "h.W_ih", DT_F64, &wih, 1, 1);
  PUT(&p, "h.W_hh", DT_F64, &whh, 1, 1);
  PUT(&p, "h.b_ih", DT_F64, &bih, 1);
  PUT(&p, "h.b_hh", DT_F64, &bhh, 1);
  PUT(&in, "x", DT_F64, ((double[]){x1, x2}), 2, 1, 1);
  char err[256];
  cr_assert_eq(run(m, md, &p, &in, PREC_F64, 1, &out, err), RNNC_OK, "%s", err);

  double h1 = tanh(wih * x1 + bih + bhh);
  double h2 = tanh(wih * x2 + bih + whh * h1 + bhh);
  EQ(at(&out, "h", 0), h1);
  EQ(at(&out, "h", 1), h2);
  EQ(at(&out, "s", 0), h1 + h2);
  /* backward: dpre_t is the adjoint of step t's pre-activation */
  double dpre2 = 1 - h2 * h2;
  double dpre1 = (1 - h1 * h1) * (1 + dpre2 * whh);
  EQ(at(&out, "grad.h.W_ih", 0), dpre1 * x1 + dpre2 * x2);
  EQ(at(&out, "grad.h.W_hh", 0), dpre2 * h1);
  EQ(at(&out, "grad.h.b_ih", 0), dpre1 + dpre2);
  EQ(at(&out, "grad.h.b_hh", 0), dpre1 + dpre2);
  EQ(at(&out, "grad.x", 0), dpre1 * wih);
  EQ(at(&out, "grad.x", 1), dpre2 * wih);
  cr_assert_eq(find(&out, "h")->dtype, DT_F64);
  tset_clear(&p), tset_clear(&in), tset_clear(&out);
  module_free(m);
}

static const char *softmax_model = "model sm(I = 3, K = 4) {\n"
                                   "  input x: f32[T, B, I], y: i32[T, B]\n"
                                   "  loss = softmax(x, K, target = y%s)\n"
                                   "  output loss\n"
                                   "}\n";

/* The data of the softmax tests: x (2, 2, 3), weight (4, 3), bias (4). */
static const double sx[12] = {0.5, -1.0, 0.25, 1.5, 0.0, -0.5, -0.3, 0.8, 1.1, 0.2, 0.2, -2.0};
static const double sw[12] = {0.1, -0.2, 0.3, 0.4, 0.5, -0.6, -0.7, 0.8, 0.9, 1.0, -1.1, 0.0};
static const double sb[4] = {0.05, -0.1, 0.0, 0.3};

/* Direct formula: loss = mean over counted p of -log softmax(W x_p + b)[y_p];
 * grad bias = Σ_p (softmax_p - onehot(y_p)) / count. */
static void softmax_direct(const double *y, double *loss, double *gbias)
{
  double total = 0;
  int count = 0;
  for (int k = 0; k < 4; k++)
    gbias[k] = 0;
  for (int p = 0; p < 4; p++) {
    if (y[p] < 0)
      continue;
    double z[4], se = 0;
    for (int k = 0; k < 4; k++) {
      z[k] = sb[k];
      for (int j = 0; j < 3; j++)
        z[k] += sw[k * 3 + j] * sx[p * 3 + j];
      se += exp(z[k]);
    }
    total += log(se) - z[(int)y[p]];
    count++;
  }
  *loss = count ? total / count : 0;
  for (int p = 0; p < 4; p++) {
    if (y[p] < 0)
      continue;
    double z[4], se = 0;
    for (int k = 0; k < 4; k++) {
      z[k] = sb[k];
      for (int j = 0; j < 3; j++)
        z[k] += sw[k * 3 + j] * sx[p * 3 + j];
      se += exp(z[k]);
    }
    for (int k = 0; k < 4; k++)
      gbias[k] += (exp(z[k]) / se - (k == (int)y[p])) / count;
  }
}

static void softmax_case(const char *ignore, const double *y, int check_grad_zero)
{
  char text[512];
  snprintf(text, sizeof text, softmax_model, ignore);
  Model *md;
  Module *m = mod(text, &md);
  TensorSet p, in, out;
  tset_init(&p), tset_init(&in), tset_init(&out);
  PUT(&p, "loss.weight", DT_F64, sw, 4, 3);
  PUT(&p, "loss.bias", DT_F64, sb, 4);
  PUT(&in, "x", DT_F64, sx, 2, 2, 3);
  PUT(&in, "y", DT_I64, y, 2, 2);
  char err[256];
  cr_assert_eq(run(m, md, &p, &in, PREC_F64, 1, &out, err), RNNC_OK, "%s", err);
  double loss, gb[4];
  softmax_direct(y, &loss, gb);
  EQ(at(&out, "loss", 0), loss);
  for (int k = 0; k < 4; k++)
    EQ(at(&out, "grad.loss.bias", k), gb[k]);
  if (check_grad_zero) {
    cr_assert_eq(loss, 0.0);
    for (int k = 0; k < 12; k++) {
      cr_assert_eq(at(&out, "grad.x", k), 0.0);
      cr_assert_eq(at(&out, "grad.loss.weight", k), 0.0);
    }
  }
  tset_clear(&p), tset_clear(&in), tset_clear(&out);
  module_free(m);
}

Test(interp, softmax_cross_entropy_matches_direct_formula)
{
  softmax_case("", (double[]){2, 0, 3, 1}, 0);
}

Test(interp, ignore_index_leaves_positions_out_of_the_mean)
{
  softmax_case(", ignore = -1", (double[]){1, -1, -1, 3}, 0);
}

Test(interp, every_position_ignored_gives_zero_loss_and_gradient)
{
  softmax_case(", ignore = -1", (double[]){-1, -1, -1, -1}, 1);
}

/* Deterministic parameters for a model: init_params with a seed. */
static void params(Model *md, const Env *env, uint64_t seed, TensorSet *p)
{
  char err[256];
  cr_assert_eq(init_params(md, env, seed, p, err, sizeof err), RNNC_OK, "%s", err);
}

static void fill(double *v, int n, double scale)
{
  for (int i = 0; i < n; i++)
    v[i] = scale * sin(1.7 * i + 0.3);
}

/* A backward layer over x equals a forward layer over x reversed in time,
 * read backwards. */
Test(interp, backward_direction_reverses_time)
{
  Model *md;
  Module *m = mod("model bd(I = 2, H = 3) {\n"
                  "  input x: f32[T, B, I], xr: f32[T, B, I]\n"
                  "  f = gru(x, H = H)\n"
                  "  r = gru(xr, H = H, backward)\n"
                  "  output f, r\n"
                  "}\n",
                  &md);
  TensorSet p, in, out;
  tset_init(&p), tset_init(&in), tset_init(&out);
  params(md, NULL, 7, &p);
  /* the same weights for both layers */
  const char *names[] = {"W_ih", "W_hh", "b_ih", "b_hh"};
  for (int k = 0; k < 4; k++) {
    char fn[32], rn[32];
    snprintf(fn, sizeof fn, "f.%s", names[k]);
    snprintf(rn, sizeof rn, "r.%s", names[k]);
    Tensor *f = tset_find(&p, fn), *r = tset_find(&p, rn);
    memcpy(r->data, f->data, (size_t)tensor_numel(f) * sizeof(float));
  }
  enum { T = 4, B = 2, I = 2, H = 3 };
  double x[T * B * I], xr[T * B * I];
  fill(x, T * B * I, 1.0);
  for (int t = 0; t < T; t++)
    memcpy(xr + t * B * I, x + (T - 1 - t) * B * I, B * I * sizeof(double));
  PUT(&in, "x", DT_F64, x, T, B, I);
  PUT(&in, "xr", DT_F64, xr, T, B, I);
  char err[256];
  cr_assert_eq(run(m, md, &p, &in, PREC_F64, 0, &out, err), RNNC_OK, "%s", err);
  for (int t = 0; t < T; t++)
    for (int e = 0; e < B * H; e++)
      EQ(at(&out, "r", t * B * H + e), at(&out, "f", (T - 1 - t) * B * H + e));
  /* and it is not the forward result */
  cr_assert(fabs(at(&out, "r", 0) - at(&out, "f", 0)) > 1e-3);
  tset_clear(&p), tset_clear(&in), tset_clear(&out);
  module_free(m);
}

/* h_1 of an rnn by hand: tanh(W_ih x_1 + b_ih + W_hh h0 + b_hh), one example. */
static double rnn_step1(const TensorSet *p, const char *node, const double *x, const double *h0,
                        int i)
{
  enum { I = 2, H = 3 };
  char n[4][32];
  snprintf(n[0], 32, "%s.W_ih", node), snprintf(n[1], 32, "%s.W_hh", node);
  snprintf(n[2], 32, "%s.b_ih", node), snprintf(n[3], 32, "%s.b_hh", node);
  double s = at(p, n[2], i) + at(p, n[3], i);
  for (int j = 0; j < I; j++)
    s += at(p, n[0], i * I + j) * x[j];
  for (int j = 0; j < H; j++)
    s += at(p, n[1], i * H + j) * h0[j];
  return tanh(s);
}

Test(interp, initial_state_from_inputs_and_from_another_node)
{
  Model *md;
  Module *m = mod("model init(I = 2, H = 3) {\n"
                  "  input x: f32[T, B, I], h0: f32[B, H]\n"
                  "  a  = rnn(x, H = H, init = (h0))\n"
                  "  z  = rnn(x, H = H)\n"
                  "  c  = rnn(x, H = H, init = a)\n"
                  "  fa = final(a, h)\n"
                  "  output a, z, c, fa\n"
                  "}\n",
                  &md);
  enum { T = 3, B = 2, I = 2, H = 3 };
  TensorSet p, in, out;
  tset_init(&p), tset_init(&in), tset_init(&out);
  params(md, NULL, 11, &p);
  double x[T * B * I], h0[B * H], zero[H] = {0};
  fill(x, T * B * I, 0.9);
  fill(h0, B * H, -0.6);
  PUT(&in, "x", DT_F32, x, T, B, I);
  PUT(&in, "h0", DT_F32, h0, B, H);
  char err[256];
  cr_assert_eq(run(m, md, &p, &in, PREC_F64, 0, &out, err), RNNC_OK, "%s", err);
  const Tensor *tx = find(&in, "x"), *th = find(&in, "h0");
  for (int b = 0; b < B; b++) {
    double xb[I], hb[H], fb[H];
    for (int j = 0; j < I; j++)
      xb[j] = ((float *)tx->data)[b * I + j];
    for (int j = 0; j < H; j++) {
      hb[j] = ((float *)th->data)[b * H + j];
      fb[j] = at(&out, "fa", b * H + j);
      /* final(a) is a's output at the last step */
      EQ(fb[j], at(&out, "a", (T - 1) * B * H + b * H + j));
    }
    for (int i = 0; i < H; i++) {
      EQ(at(&out, "a", b * H + i), rnn_step1(&p, "a", xb, hb, i));
      EQ(at(&out, "z", b * H + i), rnn_step1(&p, "z", xb, zero, i));
      EQ(at(&out, "c", b * H + i), rnn_step1(&p, "c", xb, fb, i));
    }
  }
  tset_clear(&p), tset_clear(&in), tset_clear(&out);
  module_free(m);
}

Test(interp, concat_last_final_shapes_and_values)
{
  Model *md;
  Module *m = mod("model shapes(I = 2, H = 3) {\n"
                  "  input x: f32[T, B, I]\n"
                  "  f    = rnn(x, H = H)\n"
                  "  g    = lstm(x, H = H, backward)\n"
                  "  both = concat(f, g)\n"
                  "  l    = last(both)\n"
                  "  gc   = final(g, c)\n"
                  "  gh   = final(g, h)\n"
                  "  output both, l, gc, gh\n"
                  "}\n",
                  &md);
  enum { T = 4, B = 2, I = 2, H = 3 };
  TensorSet p, in, out;
  tset_init(&p), tset_init(&in), tset_init(&out);
  params(md, NULL, 3, &p);
  double x[T * B * I];
  fill(x, T * B * I, 1.2);
  PUT(&in, "x", DT_F32, x, T, B, I);
  char err[256];
  cr_assert_eq(run(m, md, &p, &in, PREC_F32, 0, &out, err), RNNC_OK, "%s", err);
  const Tensor *both = find(&out, "both"), *l = find(&out, "l"), *gc = find(&out, "gc");
  cr_assert_eq(both->dtype, DT_F32);
  cr_assert_eq(both->rank, 3);
  cr_assert(both->dim[0] == T && both->dim[1] == B && both->dim[2] == 2 * H);
  cr_assert(l->rank == 2 && l->dim[0] == B && l->dim[1] == 2 * H);
  cr_assert(gc->rank == 2 && gc->dim[0] == B && gc->dim[1] == H);
  for (int b = 0; b < B; b++)
    for (int j = 0; j < 2 * H; j++)
      cr_assert_eq(at(&out, "l", b * 2 * H + j), at(&out, "both", ((T - 1) * B + b) * 2 * H + j));
  /* the backward layer's final h is its output at t = 1, its last step */
  for (int e = 0; e < B * H; e++)
    cr_assert_eq(at(&out, "gh", e), at(&out, "both", (e / H) * 2 * H + H + e % H));
  tset_clear(&p), tset_clear(&in), tset_clear(&out);
  module_free(m);
}

static const char *lm_text = "model lm(V, E, H) {\n"
                             "  input tokens: i32[T, B], targets: i32[T, B]\n"
                             "  x    = embedding(tokens, V, E)\n"
                             "  h    = lstm(x, H = H)\n"
                             "  loss = softmax(h, V, target = targets)\n"
                             "  output loss\n"
                             "}\n";

/* Parameters for lm with V = 10, E = 6, H = 4, tokens and targets (6, 2). */
static void lm_data(Model *md, Module *m, TensorSet *p, TensorSet *in, double *tok, double *tgt)
{
  Env e = {0};
  env_set(m->arena, &e, intern(m->names, "V", 1), 10);
  env_set(m->arena, &e, intern(m->names, "E", 1), 6);
  env_set(m->arena, &e, intern(m->names, "H", 1), 4);
  params(md, &e, 5, p);
  PUT(in, "tokens", DT_I32, tok, 6, 2);
  PUT(in, "targets", DT_I32, tgt, 6, 2);
}

static char *run_err(const char *text, void (*edit)(TensorSet *p, TensorSet *in), int *status)
{
  Model *md;
  Module *m = mod(text, &md);
  TensorSet p, in, out;
  tset_init(&p), tset_init(&in), tset_init(&out);
  double tok[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2}, tgt[12] = {2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2, 3};
  lm_data(md, m, &p, &in, tok, tgt);
  edit(&p, &in);
  static char err[256];
  *status = run(m, md, &p, &in, PREC_F32, 0, &out, err);
  cr_assert_eq(out.n, 0, "out must stay empty on an error");
  tset_clear(&p), tset_clear(&in), tset_clear(&out);
  module_free(m);
  return err;
}

static void token_70(TensorSet *p, TensorSet *in)
{
  (void)p;
  ((int32_t *)tset_find(in, "tokens")->data)[3 * 2 + 1] = 70;
}

Test(interp, token_out_of_range_message)
{
  int st;
  char *err = run_err(lm_text, token_70, &st);
  cr_assert_eq(st, RNNC_EINPUT);
  cr_assert_str_eq(err, "input 'tokens' has token id 70 at [3, 1], outside [0, 10)");
}

static void target_12(TensorSet *p, TensorSet *in)
{
  (void)p;
  ((int32_t *)tset_find(in, "targets")->data)[1] = 12;
}

Test(interp, target_out_of_range_message)
{
  int st;
  char *err = run_err(lm_text, target_12, &st);
  cr_assert_eq(st, RNNC_EINPUT);
  cr_assert_str_eq(err, "input 'targets' has target 12 at [0, 1], outside [0, 10)");
}

static void wih_narrow(TensorSet *p, TensorSet *in)
{
  (void)in;
  PUT(p, "h.W_ih", DT_F32, (double[80]){0}, 16, 5);
}

Test(interp, parameter_shape_mismatch_message)
{
  int st;
  char *err = run_err(lm_text, wih_narrow, &st);
  cr_assert_eq(st, RNNC_ESHAPE);
  cr_assert_str_eq(err, "parameter 'h.W_ih' has shape [16, 5], expected [4*H, E] = [16, 6]");
}

static void targets_wide(TensorSet *p, TensorSet *in)
{
  (void)p;
  PUT(in, "targets", DT_I32, (double[18]){0}, 6, 3);
}

Test(interp, input_shape_mismatch_message)
{
  int st;
  char *err = run_err(lm_text, targets_wide, &st);
  cr_assert_eq(st, RNNC_ESHAPE);
  cr_assert_str_eq(err, "input 'targets' has shape [6, 3], expected [T, B] with T = 6, B = 2");
}

static void drop_whh(TensorSet *p, TensorSet *in)
{
  (void)in;
  TensorSet q;
  tset_init(&q);
  for (int i = 0; i < p->n; i++)
    if (strcmp(p->t[i].name, "h.W_hh") != 0)
      put(&q, p->t[i].name, DT_F32, p->t[i].rank, p->t[i].dim, (double[1024]){0});
  tset_clear(p);
  *p = q;
}

Test(interp, missing_parameter_message)
{
  int st;
  char *err = run_err(lm_text, drop_whh, &st);
  cr_assert_eq(st, RNNC_EINPUT);
  cr_assert_str_eq(err, "missing parameter 'h.W_hh'");
}

static void tokens_float(TensorSet *p, TensorSet *in)
{
  (void)p;
  PUT(in, "tokens", DT_F32, (double[12]){0}, 6, 2);
}

Test(interp, token_ids_must_be_integers)
{
  int st;
  char *err = run_err(lm_text, tokens_float, &st);
  cr_assert_eq(st, RNNC_ESHAPE);
  cr_assert_str_eq(err, "input 'tokens' has dtype F32, expected I32 or I64");
}

static double rel(double a, double b) { return fabs(a - b) / fmax(fabs(b), 1e-30); }

/* The same LSTM LM in float32 and float64 mode: loss and gradients agree to
 * 1e-6 relative (gradients in norm: tiny entries carry float32's absolute
 * error). */
Test(interp, float32_and_float64_agree)
{
  Model *md;
  Module *m = mod(lm_text, &md);
  TensorSet p, in, o32, o64;
  tset_init(&p), tset_init(&in), tset_init(&o32), tset_init(&o64);
  double tok[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2}, tgt[12] = {2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2, 3};
  lm_data(md, m, &p, &in, tok, tgt);
  char err[256];
  cr_assert_eq(run(m, md, &p, &in, PREC_F32, 1, &o32, err), RNNC_OK, "%s", err);
  cr_assert_eq(run(m, md, &p, &in, PREC_F64, 1, &o64, err), RNNC_OK, "%s", err);
  cr_assert_eq(find(&o32, "loss")->dtype, DT_F32);
  cr_assert_eq(find(&o64, "loss")->dtype, DT_F64);
  double l32 = at(&o32, "loss", 0), l64 = at(&o64, "loss", 0);
  cr_assert(rel(l32, l64) < 1e-6, "loss %.9g vs %.9g", l32, l64);
  cr_assert(l32 != l64, "float32 mode must round");
  int ngrad = 0;
  for (int k = 0; k < o64.n; k++) {
    const Tensor *t = &o64.t[k];
    if (strncmp(t->name, "grad.", 5) != 0)
      continue;
    ngrad++;
    double dn = 0, nn = 0;
    for (int64_t i = 0; i < tensor_numel(t); i++) {
      double a = at(&o32, t->name, i), b = at(&o64, t->name, i);
      dn += (a - b) * (a - b);
      nn += b * b;
    }
    cr_assert(sqrt(dn) <= 1e-6 * sqrt(nn), "%s: |g32 - g64| = %g, |g64| = %g", t->name, sqrt(dn),
              sqrt(nn));
  }
  cr_assert_eq(ngrad, 7); /* x.weight, 4 lstm, 2 softmax */
  tset_clear(&p), tset_clear(&in), tset_clear(&o32), tset_clear(&o64);
  module_free(m);
}

/* grad.<input> is written for every float input, zero when the loss does not
 * depend on it; probs and logits views are outputs. */
Test(interp, unused_float_input_gets_a_zero_gradient)
{
  Model *md;
  Module *m = mod("model u(I = 2, H = 3, K = 2) {\n"
                  "  input x: f32[T, B, I], h0: f32[B, H], y: i32[B]\n"
                  "  h    = rnn(x, H = H)\n"
                  "  loss = softmax(last(h), K, target = y)\n"
                  "  p    = probs(loss)\n"
                  "  z    = logits(loss)\n"
                  "  output loss, p, z\n"
                  "}\n",
                  &md);
  enum { T = 3, B = 2, I = 2, H = 3 };
  TensorSet p, in, out;
  tset_init(&p), tset_init(&in), tset_init(&out);
  params(md, NULL, 1, &p);
  double x[T * B * I], h0[B * H];
  fill(x, T * B * I, 1.0);
  fill(h0, B * H, 1.0);
  PUT(&in, "x", DT_F64, x, T, B, I);
  PUT(&in, "h0", DT_F64, h0, B, H);
  PUT(&in, "y", DT_I64, ((double[]){1, 0}), B);
  char err[256];
  cr_assert_eq(run(m, md, &p, &in, PREC_F64, 1, &out, err), RNNC_OK, "%s", err);
  for (int e = 0; e < B * H; e++)
    cr_assert_eq(at(&out, "grad.h0", e), 0.0);
  double gx = 0;
  for (int e = 0; e < T * B * I; e++)
    gx += fabs(at(&out, "grad.x", e));
  cr_assert(gx > 0);
  /* loss = mean_b -log p[b, y_b]; p = softmax(z) */
  double l = -(log(at(&out, "p", 0 * 2 + 1)) + log(at(&out, "p", 1 * 2 + 0))) / 2;
  EQ(at(&out, "loss", 0), l);
  double z0 = at(&out, "z", 0), z1 = at(&out, "z", 1);
  EQ(at(&out, "p", 0), exp(z0) / (exp(z0) + exp(z1)));
  tset_clear(&p), tset_clear(&in), tset_clear(&out);
  module_free(m);
}

static void targets_flat(TensorSet *p, TensorSet *in)
{
  (void)p;
  PUT(in, "targets", DT_I32, (double[6]){0}, 6);
}

Test(interp, input_rank_mismatch_message)
{
  int st;
  char *err = run_err(lm_text, targets_flat, &st);
  cr_assert_eq(st, RNNC_ESHAPE);
  cr_assert_str_eq(err, "input 'targets' has shape [6], expected [T, B] with T = 6, B = 2");
}

static void drop_tokens(TensorSet *p, TensorSet *in)
{
  (void)p;
  TensorSet q;
  tset_init(&q);
  const Tensor *t = tset_find(in, "targets");
  put(&q, "targets", DT_I32, t->rank, t->dim, (double[12]){0});
  tset_clear(in);
  *in = q;
}

Test(interp, missing_input_message)
{
  int st;
  char *err = run_err(lm_text, drop_tokens, &st);
  cr_assert_eq(st, RNNC_EINPUT);
  cr_assert_str_eq(err, "missing input 'tokens'");
}
