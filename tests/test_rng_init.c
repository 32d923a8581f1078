/* test_rng_init.c — the seeded RNG (golden values, moments) and parameter
 * initialization (PyTorch's default distributions, draw order, determinism,
 * errors). Models are built by hand here, as verify leaves them. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

/* ---- the generator ---- */

/* Golden values from an independent implementation of splitmix64 and
 * xoshiro256** (the reference C code's arithmetic, redone in Python). */
Test(rng, golden_sequences)
{
  Rng r;
  rng_seed(&r, 0);
  cr_assert_eq(r.s[0], UINT64_C(0xe220a8397b1dcdaf), "splitmix64(0)'s first output");
  cr_assert_eq(r.s[3], UINT64_C(0xf88bb8a8724c81ec));
  static const uint64_t want0[4] = {0x99ec5f36cb75f2b4u, 0xbf6e1f784956452au,
                                    0x1a5f849d4933e6e0u, 0x6aa594f1262d2d2cu};
  for (int i = 0; i < 4; i++)
    cr_assert_eq(rng_next(&r), want0[i], "seed 0, draw %d", i);
  rng_seed(&r, 42);
  static const uint64_t want42[4] = {0x15780b2e0c2ec716u, 0x6104d9866d113a7eu,
                                     0xae17533239e499a1u, 0xecb8ad4703b360a1u};
  for (int i = 0; i < 4; i++)
    cr_assert_eq(rng_next(&r), want42[i], "seed 42, draw %d", i);
  rng_seed(&r, 42);
  cr_assert_eq(rng_uniform(&r), 0.08386297105988216);
  cr_assert_eq(rng_uniform(&r), 0.3789802506626686);
  cr_assert_eq(rng_uniform(&r), 0.6800434110281394);
  rng_seed(&r, 7);
  static const double wantn[3] = {-0.2790239910251981, 1.8997685786889567, 2.136306014732201};
  for (int i = 0; i < 3; i++) {
    double v = rng_normal(&r);
    cr_assert_float_eq(v, wantn[i], 1e-14, "normal %d: %.17g, want %.17g", i, v, wantn[i]);
  }
}

Test(rng, same_seed_same_stream)
{
  Rng a, b;
  rng_seed(&a, 123456789);
  rng_seed(&b, 123456789);
  for (int i = 0; i < 1000; i++)
    cr_assert_eq(rng_next(&a), rng_next(&b));
  rng_seed(&b, 123456790);
  int same = 0;
  for (int i = 0; i < 1000; i++)
    same += rng_next(&a) == rng_next(&b);
  cr_assert_eq(same, 0);
  /* the normal stream is a pure function of the state: no cached value */
  rng_seed(&a, 5);
  (void)rng_normal(&a);
  Rng c = a;
  cr_assert_eq(rng_normal(&a), rng_normal(&c));
}

Test(rng, uniform_moments)
{
  Rng r;
  rng_seed(&r, 2024);
  enum { N = 100000 };
  double sum = 0, sum2 = 0, lo = 1, hi = 0;
  for (int i = 0; i < N; i++) {
    double u = rng_uniform(&r);
    cr_assert(u >= 0 && u < 1, "draw %d: %g", i, u);
    sum += u;
    sum2 += u * u;
    lo = fmin(lo, u);
    hi = fmax(hi, u);
  }
  double mean = sum / N, var = sum2 / N - mean * mean;
  /* σ(mean) = 0.29/√N = 0.0009; σ(var) ≈ 0.0002 */
  cr_assert_float_eq(mean, 0.5, 0.005, "mean %g", mean);
  cr_assert_float_eq(var, 1.0 / 12, 0.002, "variance %g", var);
  cr_assert_lt(lo, 1e-3);
  cr_assert_gt(hi, 1 - 1e-3);
}

Test(rng, normal_moments)
{
  Rng r;
  rng_seed(&r, 99);
  enum { N = 100000 };
  double sum = 0, sum2 = 0, sum4 = 0;
  int beyond2 = 0;
  for (int i = 0; i < N; i++) {
    double z = rng_normal(&r);
    cr_assert(isfinite(z));
    sum += z;
    sum2 += z * z;
    sum4 += z * z * z * z;
    beyond2 += fabs(z) > 2;
  }
  double mean = sum / N, var = sum2 / N - mean * mean;
  cr_assert_float_eq(mean, 0, 0.016, "mean %g", mean);         /* 5σ */
  cr_assert_float_eq(var, 1, 0.025, "variance %g", var);       /* 5σ */
  cr_assert_float_eq(sum4 / N, 3, 0.15, "fourth moment %g", sum4 / N);
  /* P(|z| > 2) = 0.0455 */
  cr_assert_float_eq(beyond2 / (double)N, 0.0455, 0.004, "tail %g", beyond2 / (double)N);
}

/* ---- init_params on a hand-built, verified-looking model ----
 *
 *   model lm(V, E = 16, H, K) {
 *     input tokens: i32[T, B]
 *     emb  = embedding(tokens, V, E)       weight [V, E]
 *     enc  = lstm(emb, H = H)              W_ih [4H, E] W_hh [4H, H] b_ih [4H] b_hh [4H]
 *     out  = softmax(enc, K)               weight [K, H] bias [K]
 *   }
 * The lstm cell's dims are (I, H); its state h: [H]. dimval maps cell I -> E,
 * cell H -> 2*Hc so the substitution is visible (model H is written 2*Hc). */

typedef struct Fixture {
  Arena *a;
  Names *names;
  Cell cell;
  Model md;
  MNode node[4];
  Env env;
} Fixture;

static const char *in(Fixture *f, const char *s) { return intern(f->names, s, strlen(s)); }

static Dim sym(Fixture *f, const char *s) { return dim_sym(in(f, s)); }

static MParam mparam(Fixture *f, const char *node, const char *name, int rank, Dim d0, Dim d1)
{
  MParam p = {0};
  p.name = in(f, name);
  p.full = aprintf(f->a, "%s.%s", node, name);
  p.shape.rank = rank;
  p.shape.d[0] = d0;
  p.shape.d[1] = d1;
  return p;
}

/* stateless: the cell has no state, only an input x: [I] */
static void build(Fixture *f, int stateless)
{
  memset(f, 0, sizeof *f);
  f->a = arena_new();
  f->names = names_new(f->a);
  Cell *c = &f->cell;
  c->name = in(f, stateless ? "dense" : "lstm");
  c->node = aalloc(f->a, 2 * sizeof *c->node);
  c->nnode = 2;
  c->node[0] = (Node){.op = OP_INPUT, .name = in(f, "x"), .shape = {1, {sym(f, "I")}}};
  c->node[1] = (Node){.op = OP_STATE, .name = in(f, "h"), .shape = {1, {sym(f, "H")}}};
  static int input0[1] = {0}, state0[1] = {1};
  c->input = input0;
  c->ninput = 1;
  if (!stateless) {
    c->state = state0;
    c->nstate = 1;
  }
  c->dim = aalloc(f->a, 2 * sizeof *c->dim);
  c->dim[0] = in(f, "I");
  c->dim[1] = in(f, "H");
  c->ndim = 2;

  Model *md = &f->md;
  md->name = in(f, "lm");
  md->dim = aalloc(f->a, 5 * sizeof *md->dim);
  const char *dn[5] = {"V", "E", "H", "K", "Hc"};
  for (int i = 0; i < 5; i++)
    md->dim[i].name = in(f, dn[i]);
  md->dim[1].hasdefault = 1;
  md->dim[1].def = 16;
  md->ndim = 5;
  md->node = f->node;
  md->nnode = 4;
  Dim H = sym(f, "H"), E = sym(f, "E"), K = sym(f, "K"), Hc2 = dim_scale(sym(f, "Hc"), 2);
  Dim H4 = dim_scale(Hc2, 4), none = dim_const(0);
  (void)H;

  f->node[0] = (MNode){.kind = M_INPUT, .name = in(f, "tokens"), .dtype = DT_I32};
  MNode *emb = &f->node[1];
  *emb = (MNode){.kind = M_EMBEDDING, .name = in(f, "emb"), .nparam = 1};
  emb->param = aalloc(f->a, sizeof *emb->param);
  emb->param[0] = mparam(f, "emb", "weight", 2, sym(f, "V"), E);

  MNode *enc = &f->node[2];
  *enc = (MNode){.kind = M_CELL, .name = in(f, "enc"), .cell = c, .nparam = 4};
  enc->dimval = aalloc(f->a, 2 * sizeof *enc->dimval);
  enc->dimval[0] = E;   /* I -> E */
  enc->dimval[1] = Hc2; /* H -> 2*Hc */
  enc->param = aalloc(f->a, 4 * sizeof *enc->param);
  enc->param[0] = mparam(f, "enc", "W_ih", 2, H4, E);
  enc->param[1] = mparam(f, "enc", "W_hh", 2, H4, Hc2);
  enc->param[2] = mparam(f, "enc", "b_ih", 1, H4, none);
  enc->param[3] = mparam(f, "enc", "b_hh", 1, H4, none);

  MNode *out = &f->node[3];
  *out = (MNode){.kind = M_SOFTMAX, .name = in(f, "out"), .nparam = 2};
  out->param = aalloc(f->a, 2 * sizeof *out->param);
  out->param[0] = mparam(f, "out", "weight", 2, K, Hc2);
  out->param[1] = mparam(f, "out", "bias", 1, K, none);
}

static void bind(Fixture *f, const char *s, long v) { env_set(f->a, &f->env, in(f, s), v); }

static void standard(Fixture *f, int stateless)
{
  build(f, stateless);
  bind(f, "V", 1000);
  bind(f, "Hc", 64); /* cell H = 128 */
  bind(f, "K", 50);
}

static const char *expect_names[8] = {"emb.weight", "enc.W_ih", "enc.W_hh", "enc.b_ih",
                                      "enc.b_hh",   "out.weight", "out.bias"};

Test(init, names_shapes_and_defaults)
{
  Fixture f;
  standard(&f, 0);
  TensorSet s;
  tset_init(&s);
  char err[256] = "";
  cr_assert_eq(init_params(&f.md, &f.env, 1, &s, err, sizeof err), RNNC_OK, "%s", err);
  cr_assert_eq(s.n, 7);
  static const int64_t shapes[7][2] = {{1000, 16}, {512, 16}, {512, 128}, {512, 0},
                                       {512, 0},   {50, 128}, {50, 0}};
  for (int i = 0; i < 7; i++) {
    cr_assert_str_eq(s.t[i].name, expect_names[i]);
    cr_assert_eq(s.t[i].dtype, DT_F32);
    cr_assert_eq(s.t[i].rank, shapes[i][1] ? 2 : 1);
    cr_assert_eq(s.t[i].dim[0], shapes[i][0], "%s", s.t[i].name);
    if (shapes[i][1])
      cr_assert_eq(s.t[i].dim[1], shapes[i][1], "%s", s.t[i].name); /* E from its default 16 */
  }
  tset_clear(&s);
  arena_free(f.a);
}

static void moments(const Tensor *t, double *mean, double *sd, double *amax)
{
  const float *w = t->data;
  int64_t n = tensor_numel(t);
  double s = 0, s2 = 0, m = 0;
  for (int64_t i = 0; i < n; i++) {
    s += w[i];
    s2 += (double)w[i] * w[i];
    m = fmax(m, fabs(w[i]));
  }
  *mean = s / (double)n;
  *sd = sqrt(s2 / (double)n - *mean * *mean);
  *amax = m;
}

Test(init, pytorch_default_distributions)
{
  Fixture f;
  standard(&f, 0);
  TensorSet s;
  tset_init(&s);
  char err[256] = "";
  cr_assert_eq(init_params(&f.md, &f.env, 7, &s, err, sizeof err), RNNC_OK, "%s", err);
  double mean, sd, amax;
  /* nn.Embedding: N(0, 1), 16000 values */
  moments(tset_find(&s, "emb.weight"), &mean, &sd, &amax);
  cr_assert_float_eq(mean, 0, 0.04, "embedding mean %g", mean);
  cr_assert_float_eq(sd, 1, 0.03, "embedding std %g", sd);
  cr_assert_gt(amax, 3, "a normal has tails: max |w| %g", amax);
  /* LSTM (H = 128): every weight and bias U(-1/√128, 1/√128) */
  float kc = (float)(1 / sqrt(128.0));
  for (int i = 1; i <= 4; i++) {
    const Tensor *t = tset_find(&s, expect_names[i]);
    moments(t, &mean, &sd, &amax);
    cr_assert_leq(amax, kc, "%s: max |w| %.9g over the bound %.9g", t->name, amax, kc);
    cr_assert_gt(amax, 0.98 * kc, "%s: max |w| %g, bound %g", t->name, amax, kc);
    double want = kc / sqrt(3.0), tol = t->rank == 2 ? 0.03 : 0.12; /* biases: 512 values */
    cr_assert_float_eq(sd / want, 1, tol, "%s: std %g, want %g", t->name, sd, want);
    cr_assert_float_eq(mean / kc, 0, t->rank == 2 ? 0.02 : 0.1, "%s: mean %g", t->name, mean);
  }
  /* nn.Linear (fan-in 128): weight and bias U(-1/√128, 1/√128) */
  for (int i = 5; i <= 6; i++) {
    const Tensor *t = tset_find(&s, expect_names[i]);
    moments(t, &mean, &sd, &amax);
    cr_assert_leq(amax, kc, "%s: max |w| %g", t->name, amax);
    double want = kc / sqrt(3.0);
    cr_assert_float_eq(sd / want, 1, t->rank == 2 ? 0.03 : 0.3, "%s: std %g, want %g", t->name,
                       sd, want);
  }
  tset_clear(&s);
  arena_free(f.a);
}

/* The draws follow node order, param order, row-major, from one stream. */
Test(init, draw_order)
{
  Fixture f;
  standard(&f, 0);
  TensorSet s;
  tset_init(&s);
  char err[256] = "";
  cr_assert_eq(init_params(&f.md, &f.env, 31, &s, err, sizeof err), RNNC_OK, "%s", err);
  Rng r;
  rng_seed(&r, 31);
  double k = 1 / sqrt(128.0);
  for (int i = 0; i < s.n; i++) {
    const Tensor *t = &s.t[i];
    const float *w = t->data;
    for (int64_t x = 0; x < tensor_numel(t); x++) {
      float want = (float)(i == 0 ? rng_normal(&r) : k * (2 * rng_uniform(&r) - 1));
      cr_assert_eq(w[x], want, "%s[%lld]: %.9g, want %.9g", t->name, (long long)x, w[x], want);
    }
  }
  tset_clear(&s);
  arena_free(f.a);
}

Test(init, same_seed_same_params)
{
  Fixture f;
  standard(&f, 0);
  TensorSet a, b, c;
  tset_init(&a);
  tset_init(&b);
  tset_init(&c);
  char err[256];
  cr_assert_eq(init_params(&f.md, &f.env, 2024, &a, err, sizeof err), RNNC_OK);
  cr_assert_eq(init_params(&f.md, &f.env, 2024, &b, err, sizeof err), RNNC_OK);
  cr_assert_eq(init_params(&f.md, &f.env, 2025, &c, err, sizeof err), RNNC_OK);
  for (int i = 0; i < a.n; i++) {
    size_t bytes = (size_t)tensor_numel(&a.t[i]) * 4;
    cr_assert_eq(memcmp(a.t[i].data, b.t[i].data, bytes), 0, "%s", a.t[i].name);
    cr_assert_neq(memcmp(a.t[i].data, c.t[i].data, bytes), 0, "%s", a.t[i].name);
  }
  /* the first embedding value is the seed's first normal */
  Rng r;
  rng_seed(&r, 2024);
  cr_assert_eq(((float *)a.t[0].data)[0], (float)rng_normal(&r));
  tset_clear(&a);
  tset_clear(&b);
  tset_clear(&c);
  arena_free(f.a);
}

/* A cell with no state is scaled by its first input's size (like nn.Linear). */
Test(init, stateless_cell_uses_its_input)
{
  Fixture f;
  standard(&f, 1);
  TensorSet s;
  tset_init(&s);
  char err[256] = "";
  cr_assert_eq(init_params(&f.md, &f.env, 3, &s, err, sizeof err), RNNC_OK, "%s", err);
  double mean, sd, amax, k = 1 / sqrt(16.0); /* I -> E = 16 */
  moments(tset_find(&s, "enc.W_ih"), &mean, &sd, &amax);
  cr_assert_leq(amax, k);
  cr_assert_gt(amax, 0.98 * k, "max %g, bound %g", amax, k);
  tset_clear(&s);
  arena_free(f.a);
}

Test(init, unbound_dimension_is_an_error)
{
  Fixture f;
  build(&f, 0);
  bind(&f, "V", 10);
  bind(&f, "Hc", 4);
  TensorSet s;
  tset_init(&s);
  int64_t d[1] = {1};
  tset_add(&s, "keep", DT_F32, 1, d);
  char err[256] = "";
  cr_assert_eq(init_params(&f.md, &f.env, 1, &s, err, sizeof err), RNNC_EINPUT);
  cr_assert_str_eq(err, "cannot initialize out.weight: dimension K has no value");
  cr_assert_eq(s.n, 1, "out is unchanged on failure");
  tset_clear(&s);
  arena_free(f.a);

  build(&f, 0);
  bind(&f, "K", 3);
  bind(&f, "V", 10);
  cr_assert_eq(init_params(&f.md, &f.env, 1, &s, err, sizeof err), RNNC_EINPUT);
  cr_assert_str_eq(err, "cannot initialize enc.W_ih: dimension Hc has no value");
  cr_assert_eq(s.n, 0);
  arena_free(f.a);

  build(&f, 0);
  bind(&f, "K", 3);
  bind(&f, "V", 10);
  bind(&f, "Hc", -2);
  cr_assert_eq(init_params(&f.md, &f.env, 1, &s, err, sizeof err), RNNC_EINPUT);
  cr_assert_str_eq(err, "cannot initialize enc.W_ih: dimension 2*Hc is -4");
  arena_free(f.a);
}

/* The caller's binding wins over the model's default. */
Test(init, env_overrides_defaults)
{
  Fixture f;
  standard(&f, 0);
  bind(&f, "E", 3);
  TensorSet s;
  tset_init(&s);
  char err[256] = "";
  cr_assert_eq(init_params(&f.md, &f.env, 1, &s, err, sizeof err), RNNC_OK, "%s", err);
  cr_assert_eq(tset_find(&s, "emb.weight")->dim[1], 3);
  cr_assert_eq(tset_find(&s, "enc.W_ih")->dim[1], 3);
  tset_clear(&s);
  arena_free(f.a);
}

/* Parameters survive a safetensors round trip bit for bit. */
Test(init, params_roundtrip_through_safetensors)
{
  Fixture f;
  standard(&f, 0);
  TensorSet s, r;
  tset_init(&s);
  tset_init(&r);
  char err[256] = "", path[64];
  snprintf(path, sizeof path, "/tmp/rnnc-test-init-%d.safetensors", (int)getpid());
  cr_assert_eq(init_params(&f.md, &f.env, 11, &s, err, sizeof err), RNNC_OK, "%s", err);
  cr_assert_eq(safetensors_write(path, &s, err, sizeof err), RNNC_OK, "%s", err);
  cr_assert_eq(safetensors_read(path, &r, err, sizeof err), RNNC_OK, "%s", err);
  unlink(path);
  cr_assert_eq(r.n, s.n);
  for (int i = 0; i < s.n; i++) {
    Tensor *t = tset_find(&r, s.t[i].name);
    cr_assert_not_null(t);
    cr_assert_eq(memcmp(t->data, s.t[i].data, (size_t)tensor_numel(t) * 4), 0);
  }
  tset_clear(&s);
  tset_clear(&r);
  arena_free(f.a);
}

/* ---- init_params on parsed and verified models ---- */

static Module *load_text(const char *text)
{
  char path[64];
  snprintf(path, sizeof path, "/tmp/rnnc-test-init-%d.rnn", (int)getpid());
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f);
  fputs(text, f);
  fclose(f);
  Module *m = load_module(path);
  unlink(path);
  cr_assert_not_null(m, "model does not load");
  return m;
}

/* The largest |w| over a tensor. */
static double absmax(const Tensor *t)
{
  double m = 0;
  for (int64_t i = 0; i < tensor_numel(t); i++)
    m = fmax(m, fabs(((const float *)t->data)[i]));
  return m;
}

/* The cell's H bound to an expression of model dims: k follows the value. */
Test(init, parsed_gru_with_expression_binding)
{
  Module *m = load_text("model m(V = 20, E = 8, H = 6) {\n"
                        "  input tokens: i32[T, B], y: i32[T, B]\n"
                        "  x = embedding(tokens, V, E)\n"
                        "  h = gru(x, H = 2*H)\n"
                        "  loss = softmax(h, V, target = y)\n"
                        "  output loss\n"
                        "}\n");
  TensorSet s;
  tset_init(&s);
  char err[256] = "";
  cr_assert_eq(init_params(model_find(m, NULL), NULL, 5, &s, err, sizeof err), RNNC_OK, "%s", err);
  static const char *names[] = {"x.weight", "h.W_ih", "h.W_hh", "h.b_ih", "h.b_hh",
                                "loss.weight", "loss.bias"};
  static const int64_t d0[] = {20, 36, 36, 36, 36, 20, 20}, d1[] = {8, 8, 12, 0, 0, 12, 0};
  cr_assert_eq(s.n, 7);
  for (int i = 0; i < 7; i++) {
    cr_assert_str_eq(s.t[i].name, names[i]);
    cr_assert_eq(s.t[i].dim[0], d0[i], "%s", names[i]);
    cr_assert_eq(s.t[i].dim[1], d1[i], "%s", names[i]);
  }
  float k = (float)(1 / sqrt(12.0));
  for (int i = 1; i < 7; i++) {
    double a = absmax(&s.t[i]);
    cr_assert_leq(a, k, "%s: %g > %g", names[i], a, k);
    cr_assert_gt(a, (i == 4 || i == 6 ? 0.7 : 0.9) * k, "%s: %g, bound %g", names[i], a, k);
  }
  cr_assert_gt(absmax(&s.t[0]), 2.0, "the embedding is N(0, 1)");
  tset_clear(&s);
  module_free(m);
}

Test(init, parsed_unbound_dimension)
{
  Module *m = load_text("model m(V, E = 8, H = 6) {\n"
                        "  input tokens: i32[T, B], y: i32[T, B]\n"
                        "  x = embedding(tokens, V, E)\n"
                        "  h = rnn(x, H = H)\n"
                        "  loss = softmax(h, 5, target = y)\n"
                        "  output loss\n"
                        "}\n");
  TensorSet s;
  tset_init(&s);
  char err[256] = "";
  cr_assert_eq(init_params(model_find(m, NULL), NULL, 5, &s, err, sizeof err), RNNC_EINPUT);
  cr_assert_str_eq(err, "cannot initialize x.weight: dimension V has no value");
  cr_assert_eq(s.n, 0);
  Env env = {0};
  env_set(m->arena, &env, intern(m->names, "V", 1), 11);
  cr_assert_eq(init_params(model_find(m, NULL), &env, 5, &s, err, sizeof err), RNNC_OK, "%s", err);
  cr_assert_eq(tset_find(&s, "x.weight")->dim[0], 11);
  tset_clear(&s);
  module_free(m);
}

/* Every example initializes: one tensor per parameter, of its shape, within
 * its bound; the bidirectional tagger's two directions differ. */
Test(init, every_example)
{
  static const char *ex[] = {"bilstm_tagger", "charlm_gru", "charlm_lstm", "charlm_rnn",
                             "concat_cell",   "gru_classifier", "indrnn",  "lstm2_lm",
                             "mgu",           "peephole_lstm",  "seq2seq"};
  int checked = 0;
  for (size_t e = 0; e < sizeof ex / sizeof ex[0]; e++) {
    char rel[128];
    snprintf(rel, sizeof rel, "examples/%s.rnn", ex[e]);
    if (access(srcpath(rel), R_OK) != 0)
      continue; /* examples are another helper's; those present are checked */
    Module *m = load_module(srcpath(rel));
    cr_assert_not_null(m, "%s does not load", rel);
    Model *md = model_find(m, NULL);
    TensorSet s;
    tset_init(&s);
    char err[256] = "";
    Env env = {0};
    env_set(m->arena, &env, intern(m->names, "S", 1), 3);
    cr_assert_eq(init_params(md, &env, 1, &s, err, sizeof err), RNNC_OK, "%s: %s", rel, err);
    Env full = {0}; /* env plus the header's defaults, to check shapes */
    env_set(m->arena, &full, intern(m->names, "S", 1), 3);
    for (int i = 0; i < md->ndim; i++)
      if (md->dim[i].hasdefault)
        env_set(m->arena, &full, md->dim[i].name, md->dim[i].def);
    int np = 0;
    for (int i = 0; i < md->nnode; i++)
      for (int p = 0; p < md->node[i].nparam; p++, np++) {
        const MParam *mp = &md->node[i].param[p];
        Tensor *t = tset_find(&s, mp->full);
        cr_assert_not_null(t, "%s: %s missing", rel, mp->full);
        cr_assert_eq(t->rank, mp->shape.rank, "%s: %s", rel, mp->full);
        for (int d = 0; d < t->rank; d++) {
          long v;
          cr_assert(dim_eval(mp->shape.d[d], &full, &v, NULL));
          cr_assert_eq(t->dim[d], v, "%s: %s dim %d", rel, mp->full, d);
        }
        const MNode *n = &md->node[i];
        double k = 0;
        if (n->kind == M_CELL && n->cell->nstate) { /* 1/sqrt(first state's size) */
          const Cell *c = n->cell;
          Dim h;
          long hv;
          cr_assert(dim_subst(c->node[c->state[0]].shape.d[0], c->ndim, c->dim, n->dimval, &h));
          cr_assert(dim_eval(h, &full, &hv, NULL));
          k = 1 / sqrt((double)hv);
        } else if (n->kind == M_SOFTMAX) {
          k = 1 / sqrt((double)tset_find(&s, n->param[0].full)->dim[1]);
        }
        if (k > 0) {
          double a = absmax(t);
          cr_assert_leq(a, (float)k, "%s: %s: max %g over the bound %g", rel, mp->full, a, k);
          if (tensor_numel(t) >= 32)
            cr_assert_gt(a, 0.8 * k, "%s: %s: max %g, bound %g", rel, mp->full, a, k);
        }
      }
    cr_assert_eq(s.n, np, "%s", rel);
    Tensor *f = tset_find(&s, "enc.fwd.W_ih"), *b = tset_find(&s, "enc.bwd.W_ih");
    if (f && b)
      cr_assert_neq(memcmp(f->data, b->data, (size_t)tensor_numel(f) * 4), 0);
    tset_clear(&s);
    module_free(m);
    checked++;
  }
  cr_assert_gt(checked, 0, "no example found");
}
