/* test_api_net.c — the public JIT API (include/rnnc.h, "compiling and running
 * a model"): misuse gives a status and an exact message; a compiled
 * forward + backward matches the reference interpreter; tensors, parameter
 * files, shared parameters and carried states round-trip; any number of
 * threads gives the same bits; docs/api.md's JIT example and examples/host
 * build with the lines their pages give, and run. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rnnc.h"
#include "testutil.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

/* A small LSTM language model, a model without a loss (probabilities and a
 * final state, two stacked cells), one with a dim without default, and one
 * whose cell runs backward in time. */
static const char models[] =
    "model tiny(V = 7, E = 5, H = 6) {\n"
    "  input tokens: i32[T, B], targets: i32[T, B]\n"
    "  x = embedding(tokens, V, E)\n"
    "  h = lstm(x, H = H)\n"
    "  loss = softmax(h, V, target = targets)\n"
    "  output loss\n"
    "}\n"
    "model gen(V = 9, E = 4, H = 5) {\n"
    "  input tokens: i32[T, B]\n"
    "  x = embedding(tokens, V, E)\n"
    "  h = lstm(x, H = H)\n"
    "  g = gru(h, H = H)\n"
    "  s = softmax(g, V)\n"
    "  c_T = final(h, c)\n"
    "  output s, c_T\n"
    "}\n"
    "model nodef(V, E = 3) {\n"
    "  input tokens: i32[T, B], targets: i32[T, B]\n"
    "  x = embedding(tokens, V, E)\n"
    "  h = rnn(x, H = E)\n"
    "  loss = softmax(h, V, target = targets)\n"
    "  output loss\n"
    "}\n"
    "model rev(V = 5, H = 3) {\n"
    "  input tokens: i32[T, B], targets: i32[T, B]\n"
    "  x = embedding(tokens, V, H)\n"
    "  bw = rnn(x, H = H, backward)\n"
    "  loss = softmax(bw, V, target = targets)\n"
    "  output loss\n"
    "}\n";

static rnnc_ctx *open_models(void)
{
  rnnc_ctx *ctx = rnnc_open();
  cr_assert(ctx);
  cr_assert_eq(rnnc_load(ctx, "models.rnn", models), RNNC_OK, "%s", rnnc_errmsg(ctx));
  return ctx;
}

static rnnc_net *compile(rnnc_ctx *ctx, const char *model, long T, long B, int flags)
{
  rnnc_net *net = NULL;
  rnnc_dim dims[] = {{"T", T}, {"B", B}};
  cr_assert_eq(rnnc_compile(ctx, model, 2, dims, flags, &net), RNNC_OK, "%s", rnnc_errmsg(ctx));
  cr_assert(net);
  cr_assert_str_eq(rnnc_errmsg(ctx), "");
  return net;
}

/* Status st and exactly the message msg. */
#define EXPECT(ctx, call, st, msg)                                                                 \
  do {                                                                                             \
    int st_ = (call);                                                                              \
    cr_expect_eq(st_, (st), "%s: status %d, expected %d (%s)", #call, st_, (st), rnnc_errmsg(ctx)); \
    cr_expect_str_eq(rnnc_errmsg(ctx), (msg), "%s", #call);                                        \
  } while (0)

static uint64_t rs;
static double uni(void) /* [-1, 1), splitmix64 */
{
  uint64_t z = (rs += 0x9e3779b97f4a7c15u);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  z ^= z >> 31;
  return (double)(z >> 11) / 9007199254740992.0 * 2 - 1;
}

/* Every input of md in net: token ids and targets uniform in [0, range) of
 * their consumer (checked through the model: embedding V, softmax K), floats
 * uniform in [-1, 1). */
static void fill_inputs(rnnc_ctx *ctx, rnnc_net *net, Model *md, const Env *env)
{
  for (int i = 0; i < md->nnode; i++) {
    const MNode *n = &md->node[i];
    if (n->kind != M_INPUT)
      continue;
    int dtype, rank;
    int64_t dim[4], numel = 1;
    cr_assert_eq(rnnc_tensor_shape(net, n->name, &dtype, &rank, dim), RNNC_OK, "%s", rnnc_errmsg(ctx));
    for (int k = 0; k < rank; k++)
      numel *= dim[k];
    void *p = rnnc_data(net, n->name);
    cr_assert(p, "%s", rnnc_errmsg(ctx));
    if (dtype == RNNC_F32) {
      for (int64_t e = 0; e < numel; e++)
        ((float *)p)[e] = (float)uni();
      continue;
    }
    long range = 0;
    for (int j = 0; j < md->nnode && !range; j++) {
      const MNode *u = &md->node[j];
      if ((u->kind == M_EMBEDDING && u->arg[0] == i) || (u->kind == M_SOFTMAX && u->target == i))
        cr_assert(dim_eval(u->size[0], env, &range, NULL));
    }
    cr_assert(range > 0, "input %s: no range", n->name);
    for (int64_t e = 0; e < numel; e++)
      ((int32_t *)p)[e] = (int32_t)((uni() + 1) / 2 * (double)range);
  }
}

/* The net's tensors named like md's params / inputs, copied into a set. */
static void take(rnnc_net *net, Model *md, int params, TensorSet *out)
{
  for (int i = 0; i < md->nnode; i++) {
    const MNode *n = &md->node[i];
    int cnt = params ? n->nparam : n->kind == M_INPUT;
    for (int p = 0; p < cnt; p++) {
      const char *name = params ? n->param[p].full : n->name;
      int dtype, rank;
      int64_t dim[4];
      cr_assert_eq(rnnc_tensor_shape(net, name, &dtype, &rank, dim), RNNC_OK);
      Tensor *t = tset_add(out, name, dtype == RNNC_I32 ? DT_I32 : DT_F32, rank, dim);
      cr_assert(t);
      cr_assert_eq(rnnc_get(net, name, t->data, (size_t)tensor_numel(t) * 4), RNNC_OK);
    }
  }
}

/* max |a - b| / max(max |ref|, 1e-6) over the elements of ref. */
static double relerr(const Tensor *ref, const float *got)
{
  double num = 0, den = 1e-6;
  for (int64_t e = 0; e < tensor_numel(ref); e++) {
    double r = ref->dtype == DT_F64 ? ((double *)ref->data)[e] : ((float *)ref->data)[e];
    num = fmax(num, fabs(r - got[e]));
    den = fmax(den, fabs(r));
  }
  return num / den;
}

/* Bind T, B and the header dims of md (defaults) in m's names. */
static Env bind_env(Module *m, Model *md, long T, long B)
{
  Env env = {0};
  env_set(m->arena, &env, intern(m->names, "T", 1), T);
  env_set(m->arena, &env, intern(m->names, "B", 1), B);
  for (int i = 0; i < md->ndim; i++)
    if (md->dim[i].hasdefault)
      env_set(m->arena, &env, md->dim[i].name, md->dim[i].def);
  return env;
}

/* ---- misuse: a status and an exact message ------------------------------- */

Test(api_net, compile_misuse)
{
  rnnc_ctx *ctx = open_models();
  rnnc_net *net = (rnnc_net *)&net;
  EXPECT(ctx, rnnc_compile(ctx, "tiny", 3, (rnnc_dim[]){{"T", 4}, {"B", 3}, {"Q", 2}}, 0, &net),
         RNNC_EINPUT, "model 'tiny' has no dimension 'Q'");
  cr_expect_null(net, "*out is NULL after a failed compile");
  EXPECT(ctx, rnnc_compile(ctx, "tiny", 1, (rnnc_dim[]){{"B", 3}}, 0, &net), RNNC_EINPUT,
         "rnnc_compile: dimension 'T' is not bound; give it in dims");
  EXPECT(ctx, rnnc_compile(ctx, "tiny", 1, (rnnc_dim[]){{"T", 3}}, 0, &net), RNNC_EINPUT,
         "rnnc_compile: dimension 'B' is not bound; give it in dims");
  EXPECT(ctx, rnnc_compile(ctx, "tiny", 2, (rnnc_dim[]){{"T", 4}, {"B", 0}}, 0, &net), RNNC_ESHAPE,
         "rnnc_compile: dimension B = 0; it must be at least 1");
  EXPECT(ctx, rnnc_compile(ctx, "tiny", 3, (rnnc_dim[]){{"T", 4}, {"B", 3}, {"T", 2}}, 0, &net),
         RNNC_EINPUT, "rnnc_compile: dimension 'T' is bound twice");
  EXPECT(ctx, rnnc_compile(ctx, "nodef", 2, (rnnc_dim[]){{"T", 4}, {"B", 3}}, 0, &net), RNNC_EINPUT,
         "rnnc_compile: dimension 'V' of model 'nodef' has no default; give it in dims");
  EXPECT(ctx, rnnc_compile(ctx, "nosuch", 2, (rnnc_dim[]){{"T", 4}, {"B", 3}}, 0, &net), RNNC_EINPUT,
         "rnnc_compile: no model 'nosuch' in this context");
  EXPECT(ctx, rnnc_compile(ctx, "gen", 2, (rnnc_dim[]){{"T", 4}, {"B", 3}}, RNNC_GRAD, &net),
         RNNC_EINPUT,
         "rnnc_compile: RNNC_GRAD: model 'gen' has no loss to differentiate (a softmax with a "
         "target, or a sum)");
  EXPECT(ctx, rnnc_compile(ctx, "rev", 2, (rnnc_dim[]){{"T", 1}, {"B", 1}}, RNNC_CARRY, &net), RNNC_EINPUT,
         "node 'bw' runs backward in time: its state cannot be carried from run to run");
  EXPECT(ctx, rnnc_compile(ctx, "tiny", 2, (rnnc_dim[]){{"T", 4}, {"B", 3}}, 4, &net), RNNC_EMISUSE,
         "rnnc_compile: unknown flags 0x4");
  EXPECT(ctx, rnnc_compile(ctx, NULL, 0, NULL, 0, &net), RNNC_EMISUSE, "rnnc_compile: model is NULL");
  EXPECT(ctx, rnnc_compile(ctx, "tiny", 2, NULL, 0, &net), RNNC_EMISUSE, "rnnc_compile: dims is NULL");
  EXPECT(ctx, rnnc_compile(ctx, "tiny", 0, NULL, 0, NULL), RNNC_EMISUSE, "rnnc_compile: out is NULL");
  EXPECT(ctx, rnnc_compile(ctx, "tiny", 1, (rnnc_dim[]){{NULL, 4}}, 0, &net), RNNC_EMISUSE,
         "rnnc_compile: dims[0].name is NULL");
  cr_expect_eq(rnnc_compile(NULL, "tiny", 0, NULL, 0, &net), RNNC_EMISUSE);

  rnnc_cell_builder *cb;
  cr_assert_eq(rnnc_cell_begin(ctx, "open", &cb), RNNC_OK);
  EXPECT(ctx, rnnc_compile(ctx, "tiny", 2, (rnnc_dim[]){{"T", 4}, {"B", 3}}, 0, &net), RNNC_EMISUSE,
         "rnnc_compile: a cell builder is open on this context; end it first");
  rnnc_close(ctx); /* with the builder open */
}

Test(api_net, net_misuse)
{
  rnnc_ctx *ctx = open_models();
  rnnc_net *net = compile(ctx, "tiny", 4, 3, 0);
  int32_t tok[4][3] = {{0}};
  EXPECT(ctx, rnnc_set(net, "foo", tok, sizeof tok), RNNC_EINPUT, "net has no tensor 'foo'");
  EXPECT(ctx, rnnc_set(net, "tokens", tok, 100), RNNC_ESHAPE, "tensor 'tokens' is 48 bytes, got 100");
  EXPECT(ctx, rnnc_set(net, "tokens", tok, sizeof tok), RNNC_OK, ""); /* a success clears it */
  EXPECT(ctx, rnnc_get(net, "loss", tok, sizeof tok), RNNC_ESHAPE, "tensor 'loss' is 4 bytes, got 48");
  EXPECT(ctx, rnnc_set(net, "tokens", NULL, sizeof tok), RNNC_EMISUSE, "rnnc_set: data is NULL");
  EXPECT(ctx, rnnc_set(net, NULL, tok, sizeof tok), RNNC_EMISUSE, "rnnc_set: name is NULL");
  EXPECT(ctx, rnnc_get(net, "grad.x.weight", tok, sizeof tok), RNNC_EINPUT,
         "net has no tensor 'grad.x.weight' (compiled without RNNC_GRAD: no grad.*)");
  EXPECT(ctx, rnnc_get(net, "state.h.h", tok, sizeof tok), RNNC_EINPUT,
         "net has no tensor 'state.h.h' (compiled without RNNC_CARRY: no state.*)");
  cr_expect_null(rnnc_data(net, "foo"));
  cr_expect_str_eq(rnnc_errmsg(ctx), "net has no tensor 'foo'");
  EXPECT(ctx, rnnc_tensor_shape(net, "foo", NULL, NULL, NULL), RNNC_EINPUT, "net has no tensor 'foo'");
  int ntensor = rnnc_tensor_count(net);
  cr_expect_eq(ntensor, 10, "7 parameters, 2 inputs, the loss");
  cr_expect_null(rnnc_tensor_name(net, ntensor));
  char want[128];
  snprintf(want, sizeof want, "rnnc_tensor_name: index %d is outside [0, %d)", ntensor, ntensor);
  cr_expect_str_eq(rnnc_errmsg(ctx), want);
  EXPECT(ctx, rnnc_forward_backward(net), RNNC_EMISUSE,
         "rnnc_forward_backward: net was compiled without RNNC_GRAD");
  EXPECT(ctx, rnnc_reset_state(net), RNNC_EMISUSE, "rnnc_reset_state: net was compiled without RNNC_CARRY");
  EXPECT(ctx, rnnc_set_threads(net, -1), RNNC_EMISUSE,
         "rnnc_set_threads: nthreads is -1; give 1 or more (0: OpenMP's default)");
  EXPECT(ctx, rnnc_load_params(net, NULL), RNNC_EMISUSE, "rnnc_load_params: path is NULL");
  EXPECT(ctx, rnnc_share_params(net, net), RNNC_EMISUSE, "rnnc_share_params: dst and src are the same net");
  EXPECT(ctx, rnnc_share_params(net, NULL), RNNC_EMISUSE, "rnnc_share_params: src is NULL");

  /* a token id out of range: the run checks before it starts */
  tok[3][1] = 70;
  cr_assert_eq(rnnc_set(net, "tokens", tok, sizeof tok), RNNC_OK);
  cr_expect_eq(rnnc_forward(net), RNNC_EINPUT);
  cr_expect(strstr(rnnc_errmsg(ctx), "input 'tokens' has token id 70 at [3, 1], outside [0, 7)"), "%s",
            rnnc_errmsg(ctx));

  /* NULL nets: a status, no context to hold a message */
  cr_expect_eq(rnnc_forward(NULL), RNNC_EMISUSE);
  cr_expect_eq(rnnc_set(NULL, "tokens", tok, sizeof tok), RNNC_EMISUSE);
  cr_expect_null(rnnc_data(NULL, "tokens"));
  cr_expect_eq(rnnc_tensor_count(NULL), -1);
  cr_expect_lt(rnnc_compile_ms(NULL), 0);
  rnnc_net_free(NULL);

  /* use after free: the header stays until rnnc_close */
  rnnc_net_free(net);
  EXPECT(ctx, rnnc_forward(net), RNNC_EMISUSE, "rnnc_forward: net used after rnnc_net_free");
  EXPECT(ctx, rnnc_set(net, "tokens", tok, sizeof tok), RNNC_EMISUSE, "rnnc_set: net used after rnnc_net_free");
  EXPECT(ctx, rnnc_init_params(net, 1), RNNC_EMISUSE, "rnnc_init_params: net used after rnnc_net_free");
  cr_expect_null(rnnc_data(net, "tokens"));
  cr_expect_str_eq(rnnc_errmsg(ctx), "rnnc_data: net used after rnnc_net_free");
  cr_expect_eq(rnnc_tensor_count(net), -1);
  cr_expect_str_eq(rnnc_errmsg(ctx), "rnnc_tensor_count: net used after rnnc_net_free");
  rnnc_net_free(net);
  cr_expect_str_eq(rnnc_errmsg(ctx), "rnnc_net_free: net freed twice");

  /* a net sharing a freed net's parameters */
  rnnc_net *a = compile(ctx, "tiny", 4, 3, 0), *b = compile(ctx, "tiny", 1, 1, RNNC_CARRY);
  cr_assert_eq(rnnc_share_params(b, a), RNNC_OK, "%s", rnnc_errmsg(ctx));
  EXPECT(ctx, rnnc_share_params(a, b), RNNC_EMISUSE, "rnnc_share_params: src shares dst's parameters already");
  rnnc_net_free(a);
  EXPECT(ctx, rnnc_forward(b), RNNC_EMISUSE,
         "rnnc_forward: the net whose parameters this net shares (rnnc_share_params) was freed");
  rnnc_net *c = compile(ctx, "tiny", 1, 1, 0);
  EXPECT(ctx, rnnc_share_params(c, a), RNNC_EMISUSE, "rnnc_share_params: src used after rnnc_net_free");
  EXPECT(ctx, rnnc_share_params(c, b), RNNC_EMISUSE,
         "rnnc_share_params: the net whose parameters src shares was freed");
  rnnc_net_free(b);
  /* c is left for rnnc_close to free */
  rnnc_close(ctx);
}

Test(api_net, param_file_errors)
{
  rnnc_ctx *ctx = open_models();
  rnnc_net *net = compile(ctx, "tiny", 2, 2, 0);
  rnnc_net *other = NULL;
  cr_assert_eq(rnnc_compile(ctx, "tiny", 3, (rnnc_dim[]){{"T", 2}, {"B", 2}, {"E", 3}}, 0, &other), RNNC_OK);
  char dir[] = "/tmp/rnnc_api_net_XXXXXX", path[256], miss[256], bad[256];
  cr_assert(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/other.safetensors", dir);
  snprintf(miss, sizeof miss, "%s/nosuch.safetensors", dir);
  snprintf(bad, sizeof bad, "%s/bad.safetensors", dir);
  cr_assert_eq(rnnc_init_params(other, 3), RNNC_OK);
  cr_assert_eq(rnnc_save_params(other, path), RNNC_OK, "%s", rnnc_errmsg(ctx));
  cr_assert_eq(rnnc_init_params(net, 1), RNNC_OK);
  float before[7 * 5], after[7 * 5];
  cr_assert_eq(rnnc_get(net, "x.weight", before, sizeof before), RNNC_OK);

  char want[512];
  snprintf(want, sizeof want, "parameter 'x.weight' is [7, 5] in the net but [7, 3] in '%s'", path);
  EXPECT(ctx, rnnc_load_params(net, path), RNNC_ESHAPE, want);
  cr_expect_eq(rnnc_load_params(net, miss), RNNC_EIO);
  cr_expect(strstr(rnnc_errmsg(ctx), miss), "%s", rnnc_errmsg(ctx));

  /* a file without loss.bias, and one where it is int32 */
  TensorSet ts;
  tset_init(&ts);
  cr_assert_eq(safetensors_read(path, &ts, want, sizeof want), RNNC_OK);
  cr_assert_eq(rnnc_save_params(net, path), RNNC_OK);
  tset_clear(&ts);
  cr_assert_eq(safetensors_read(path, &ts, want, sizeof want), RNNC_OK);
  TensorSet part;
  tset_init(&part);
  for (int i = 0; i < ts.n; i++)
    if (strcmp(ts.t[i].name, "loss.bias") != 0) {
      Tensor *t = tset_add(&part, ts.t[i].name, ts.t[i].dtype, ts.t[i].rank, ts.t[i].dim);
      memcpy(t->data, ts.t[i].data, (size_t)tensor_numel(t) * 4);
    }
  cr_assert_eq(safetensors_write(bad, &part, want, sizeof want), RNNC_OK);
  snprintf(want, sizeof want, "'%s' has no tensor 'loss.bias' (a parameter of model 'tiny')", bad);
  EXPECT(ctx, rnnc_load_params(net, bad), RNNC_EINPUT, want);
  Tensor *lb = tset_find(&ts, "loss.bias");
  cr_assert(tset_add(&part, "loss.bias", DT_I32, lb->rank, lb->dim));
  cr_assert_eq(safetensors_write(bad, &part, want, sizeof want), RNNC_OK);
  snprintf(want, sizeof want, "parameter 'loss.bias' in '%s' is I32; it must be F32 or F64", bad);
  EXPECT(ctx, rnnc_load_params(net, bad), RNNC_ESHAPE, want);
  cr_assert_eq(rnnc_get(net, "x.weight", after, sizeof after), RNNC_OK);
  cr_expect_eq(memcmp(before, after, sizeof before), 0, "a failed load changed the parameters");
  tset_clear(&ts);
  tset_clear(&part);

  unlink(path);
  unlink(bad);
  rmdir(dir);
  rnnc_net_free(net);
  rnnc_net_free(other);
  rnnc_close(ctx);
}

/* ---- compiled vs the reference interpreter ------------------------------------ */

/* Compile md (from file path, or of ctx) with gradients at T, B; run it on
 * random inputs and compare every output and gradient with interp_run. */
static void vs_interp(rnnc_ctx *ctx, const char *model, long T, long B)
{
  Module *m = ctx->m;
  Model *md = model_find(m, model);
  cr_assert(md);
  rnnc_net *net = compile(ctx, model, T, B, RNNC_GRAD);
  Env env = bind_env(m, md, T, B);
  rs = 7;
  cr_assert_eq(rnnc_init_params(net, 5), RNNC_OK, "%s", rnnc_errmsg(ctx));
  fill_inputs(ctx, net, md, &env);
  cr_assert_eq(rnnc_forward_backward(net), RNNC_OK, "%s", rnnc_errmsg(ctx));

  TensorSet params, inputs, out;
  tset_init(&params);
  tset_init(&inputs);
  tset_init(&out);
  take(net, md, 1, &params);
  take(net, md, 0, &inputs);
  InterpOpts io = {.prec = PREC_F32, .wantgrad = 1};
  char err[512];
  cr_assert_eq(interp_run(m, md, md->grad, &env, &params, &inputs, &io, &out, err, sizeof err), RNNC_OK,
               "%s", err);
  int ngrad = 0;
  for (int i = 0; i < rnnc_tensor_count(net); i++)
    ngrad += strncmp(rnnc_tensor_name(net, i), "grad.", 5) == 0;
  int ncmp = 0, nrefgrad = 0;
  for (int i = 0; i < out.n; i++) {
    const Tensor *ref = &out.t[i];
    nrefgrad += strncmp(ref->name, "grad.", 5) == 0;
    const float *got = rnnc_data(net, ref->name);
    cr_assert(got, "%s: %s", model, rnnc_errmsg(ctx));
    int rank;
    int64_t dim[4];
    cr_assert_eq(rnnc_tensor_shape(net, ref->name, NULL, &rank, dim), RNNC_OK);
    cr_assert(rank == ref->rank && !memcmp(dim, ref->dim, (size_t)rank * sizeof *dim), "%s: %s shape",
              model, ref->name);
    double e = relerr(ref, got);
    cr_expect_leq(e, 1e-5, "%s: %s differs from the interpreter by %.3g (relative)", model, ref->name, e);
    ncmp++;
  }
  cr_expect_eq(ngrad, nrefgrad, "%s: %d grad tensors in the net, %d from the interpreter", model, ngrad,
               nrefgrad);
  cr_expect_gt(ncmp, 0);
  tset_clear(&params);
  tset_clear(&inputs);
  tset_clear(&out);
  rnnc_net_free(net);
}

Test(api_net, forward_backward_matches_interpreter, .timeout = 300)
{
  rnnc_ctx *ctx = open_models();
  char *before = NULL, *after = NULL;
  cr_assert_eq(rnnc_print_string(ctx, &before), RNNC_OK);
  /* compiled forward only first: the cell's schedule, made before its backward
   * cell existed, must be made again for the gradients */
  rnnc_net *fwd = compile(ctx, "tiny", 5, 3, 0);
  rnnc_net_free(fwd);
  vs_interp(ctx, "tiny", 5, 3);
  /* the backward cells autodiff derived are not the caller's: not printed */
  cr_assert_eq(rnnc_print_string(ctx, &after), RNNC_OK);
  cr_expect_str_eq(after, before);
  rnnc_free(before);
  rnnc_free(after);
  cr_assert_eq(rnnc_load_file(ctx, srcpath("examples/features_lstm.rnn")), RNNC_OK, "%s", rnnc_errmsg(ctx));
  vs_interp(ctx, "features_lstm", 4, 2);
  cr_assert_eq(rnnc_load_file(ctx, srcpath("examples/charlm_lstm.rnn")), RNNC_OK, "%s", rnnc_errmsg(ctx));
  vs_interp(ctx, "charlm_lstm", 6, 3);
  rnnc_close(ctx);
}

/* ---- tensors and parameter files ----------------------------------------------- */

Test(api_net, set_get_round_trip)
{
  rnnc_ctx *ctx = open_models();
  rnnc_net *net = compile(ctx, "tiny", 4, 3, RNNC_GRAD);
  int32_t tok[4][3], back[4][3];
  for (int i = 0; i < 12; i++)
    tok[i / 3][i % 3] = i % 7;
  cr_assert_eq(rnnc_set(net, "tokens", tok, sizeof tok), RNNC_OK);
  cr_assert_eq(rnnc_get(net, "tokens", back, sizeof back), RNNC_OK);
  cr_expect_eq(memcmp(tok, back, sizeof tok), 0);
  cr_expect_eq(memcmp(rnnc_data(net, "tokens"), tok, sizeof tok), 0);

  int dtype, rank;
  int64_t dim[4];
  cr_assert_eq(rnnc_tensor_shape(net, "h.W_ih", &dtype, &rank, dim), RNNC_OK);
  cr_expect(dtype == RNNC_F32 && rank == 2 && dim[0] == 24 && dim[1] == 5);
  cr_assert_eq(rnnc_tensor_shape(net, "tokens", &dtype, &rank, dim), RNNC_OK);
  cr_expect(dtype == RNNC_I32 && rank == 2 && dim[0] == 4 && dim[1] == 3);
  cr_assert_eq(rnnc_tensor_shape(net, "loss", &dtype, &rank, dim), RNNC_OK);
  cr_expect(dtype == RNNC_F32 && rank == 0);
  cr_assert_eq(rnnc_tensor_shape(net, "grad.h.W_hh", &dtype, &rank, dim), RNNC_OK);
  cr_expect(dtype == RNNC_F32 && rank == 2 && dim[0] == 24 && dim[1] == 6);

  float w[24 * 5], wb[24 * 5];
  for (int i = 0; i < 24 * 5; i++)
    w[i] = (float)i / 7;
  cr_assert_eq(rnnc_set(net, "h.W_ih", w, sizeof w), RNNC_OK);
  cr_assert_eq(rnnc_get(net, "h.W_ih", wb, sizeof wb), RNNC_OK);
  cr_expect_eq(memcmp(w, wb, sizeof w), 0);
  cr_expect_eq(memcmp(rnnc_data(net, "h.W_ih"), w, sizeof w), 0);

  /* every name listed is found, with its own buffer */
  int n = rnnc_tensor_count(net);
  cr_expect_gt(n, 10);
  for (int i = 0; i < n; i++) {
    const char *name = rnnc_tensor_name(net, i);
    cr_assert(name);
    cr_expect(rnnc_data(net, name), "%s: %s", name, rnnc_errmsg(ctx));
  }
  cr_expect_gt(rnnc_compile_ms(net), 0);
  rnnc_net_free(net);
  rnnc_close(ctx);
}

Test(api_net, save_load_round_trip)
{
  rnnc_ctx *ctx = open_models();
  rnnc_net *a = compile(ctx, "tiny", 3, 2, 0), *b = compile(ctx, "tiny", 5, 1, RNNC_GRAD);
  char dir[] = "/tmp/rnnc_api_net_XXXXXX", path[256];
  cr_assert(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/p.safetensors", dir);
  cr_assert_eq(rnnc_init_params(a, 11), RNNC_OK);
  cr_assert_eq(rnnc_init_params(b, 12), RNNC_OK);
  cr_assert_eq(rnnc_save_params(a, path), RNNC_OK, "%s", rnnc_errmsg(ctx));
  cr_assert_eq(rnnc_load_params(b, path), RNNC_OK, "%s", rnnc_errmsg(ctx));
  Model *md = model_find(ctx->m, "tiny");
  int nparam = 0;
  for (int i = 0; i < md->nnode; i++)
    for (int p = 0; p < md->node[i].nparam; p++, nparam++) {
      const char *name = md->node[i].param[p].full;
      int rank;
      int64_t dim[4], numel = 1;
      cr_assert_eq(rnnc_tensor_shape(a, name, NULL, &rank, dim), RNNC_OK);
      for (int k = 0; k < rank; k++)
        numel *= dim[k];
      cr_expect_eq(memcmp(rnnc_data(a, name), rnnc_data(b, name), (size_t)numel * 4), 0, "%s", name);
    }
  cr_expect_eq(nparam, 7);
  TensorSet ts;
  tset_init(&ts);
  char err[256];
  cr_assert_eq(safetensors_read(path, &ts, err, sizeof err), RNNC_OK, "%s", err);
  cr_expect_eq(ts.n, nparam);
  cr_expect_str_eq(tset_getmeta(&ts, "model"), "tiny");
  /* the same seed gives the same parameters as rnnc init */
  TensorSet ref;
  tset_init(&ref);
  Env env = bind_env(ctx->m, md, 3, 2);
  cr_assert_eq(init_params(md, &env, 11, &ref, err, sizeof err), RNNC_OK);
  for (int i = 0; i < ref.n; i++)
    cr_expect_eq(memcmp(tset_find(&ts, ref.t[i].name)->data, ref.t[i].data, (size_t)tensor_numel(&ref.t[i]) * 4),
                 0, "%s", ref.t[i].name);
  tset_clear(&ts);
  tset_clear(&ref);
  unlink(path);
  rmdir(dir);
  rnnc_net_free(a);
  rnnc_net_free(b);
  rnnc_close(ctx);
}

/* ---- shared parameters, carried state ----------------------------------------- */

/* T steps of a T = 1 RNNC_CARRY net sharing a T-step net's parameters give
 * the T-step net's outputs step by step, and its final state. */
Test(api_net, carry_steps_equal_one_run, .timeout = 300)
{
  enum { TT = 6, BB = 2, V = 9, H = 5 };
  rnnc_ctx *ctx = open_models();
  rnnc_net *full = compile(ctx, "gen", TT, BB, 0), *step = compile(ctx, "gen", 1, BB, RNNC_CARRY);
  cr_assert_eq(rnnc_init_params(full, 3), RNNC_OK);
  cr_assert_eq(rnnc_init_params(step, 4), RNNC_OK); /* replaced by sharing */
  cr_assert_eq(rnnc_share_params(step, full), RNNC_OK, "%s", rnnc_errmsg(ctx));
  cr_expect_eq(rnnc_data(step, "h.W_ih"), rnnc_data(full, "h.W_ih"), "shared, not copied");

  int32_t tok[TT][BB];
  for (int t = 0; t < TT; t++)
    for (int b = 0; b < BB; b++)
      tok[t][b] = (3 * t + 5 * b + 1) % V;
  cr_assert_eq(rnnc_set(full, "tokens", tok, sizeof tok), RNNC_OK);
  cr_assert_eq(rnnc_forward(full), RNNC_OK, "%s", rnnc_errmsg(ctx));
  float s[TT][BB][V], cT[BB][H];
  cr_assert_eq(rnnc_get(full, "s", s, sizeof s), RNNC_OK, "%s", rnnc_errmsg(ctx));
  cr_assert_eq(rnnc_get(full, "c_T", cT, sizeof cT), RNNC_OK, "%s", rnnc_errmsg(ctx));

  for (int round = 0; round < 2; round++) { /* again after rnnc_reset_state */
    double err = 0;
    float s1[BB][V], c1[BB][H], st[BB][H];
    for (int t = 0; t < TT; t++) {
      cr_assert_eq(rnnc_set(step, "tokens", tok[t], sizeof tok[t]), RNNC_OK);
      cr_assert_eq(rnnc_forward(step), RNNC_OK, "%s", rnnc_errmsg(ctx));
      cr_assert_eq(rnnc_get(step, "s", s1, sizeof s1), RNNC_OK);
      for (int b = 0; b < BB; b++)
        for (int v = 0; v < V; v++)
          err = fmax(err, fabs(s1[b][v] - s[t][b][v]));
    }
    cr_assert_eq(rnnc_get(step, "c_T", c1, sizeof c1), RNNC_OK);
    cr_assert_eq(rnnc_get(step, "state.h.c", st, sizeof st), RNNC_OK, "%s", rnnc_errmsg(ctx));
    for (int b = 0; b < BB; b++)
      for (int k = 0; k < H; k++) {
        err = fmax(err, fabs(c1[b][k] - cT[b][k]));
        err = fmax(err, fabs(st[b][k] - cT[b][k]));
      }
    cr_expect_leq(err, 1e-6, "round %d: stepping differs from one run by %.3g", round, err);
    cr_assert_eq(rnnc_reset_state(step), RNNC_OK);
    cr_assert_eq(rnnc_get(step, "state.h.c", st, sizeof st), RNNC_OK);
    for (int b = 0; b < BB; b++)
      for (int k = 0; k < H; k++)
        cr_assert_eq(st[b][k], 0.0f, "reset_state left state.h.c[%d, %d] = %g", b, k, st[b][k]);
  }

  /* parameters written through one net are the other's */
  float w0 = ((float *)rnnc_data(full, "s.bias"))[0];
  ((float *)rnnc_data(full, "s.bias"))[0] = w0 + 1;
  cr_expect_eq(((float *)rnnc_data(step, "s.bias"))[0], w0 + 1);
  rnnc_net_free(step);
  rnnc_net_free(full);
  rnnc_close(ctx);
}

/* ---- threads ------------------------------------------------------------------ */

Test(api_net, threads_give_the_same_bits, .timeout = 300)
{
  rnnc_ctx *ctx = open_models();
  cr_assert_eq(rnnc_load_file(ctx, srcpath("examples/charlm_lstm.rnn")), RNNC_OK);
  rnnc_net *net = NULL;
  rnnc_dim dims[] = {{"T", 7}, {"B", 5}, {"V", 33}, {"E", 16}, {"H", 40}};
  cr_assert_eq(rnnc_compile(ctx, "charlm_lstm", 5, dims, RNNC_GRAD, &net), RNNC_OK, "%s", rnnc_errmsg(ctx));
  cr_assert_eq(rnnc_init_params(net, 9), RNNC_OK);
  Model *md = model_find(ctx->m, "charlm_lstm");
  Env env = bind_env(ctx->m, md, 7, 5);
  env_set(ctx->m->arena, &env, md->dim[0].name, 33);
  rs = 3;
  fill_inputs(ctx, net, md, &env);
  int n = rnnc_tensor_count(net);
  char **first = calloc((size_t)n, sizeof *first);
  size_t *size = calloc((size_t)n, sizeof *size);
  for (int nth = 1; nth <= 3; nth++) {
    cr_assert_eq(rnnc_set_threads(net, nth), RNNC_OK);
    cr_assert_eq(rnnc_forward_backward(net), RNNC_OK, "%s", rnnc_errmsg(ctx));
    for (int i = 0; i < n; i++) {
      const char *name = rnnc_tensor_name(net, i);
      int rank;
      int64_t dim[4];
      cr_assert_eq(rnnc_tensor_shape(net, name, NULL, &rank, dim), RNNC_OK);
      size_t bytes = 4;
      for (int k = 0; k < rank; k++)
        bytes *= (size_t)dim[k];
      const void *p = rnnc_data(net, name);
      if (nth == 1) {
        first[i] = malloc(bytes);
        memcpy(first[i], p, bytes);
        size[i] = bytes;
      } else {
        cr_expect_eq(memcmp(first[i], p, size[i]), 0, "%s differs with %d threads", name, nth);
      }
    }
  }
  for (int i = 0; i < n; i++)
    free(first[i]);
  free(first);
  free(size);
  rnnc_net_free(net);
  rnnc_close(ctx);
}

/* ---- leaks ------------------------------------------------------------------- */

/* Nets compiled, failed, freed, used after free and left live for rnnc_close:
 * nothing leaks. Under ASan (RNNC_SANITIZE) LeakSanitizer is asked. */
Test(api_net, no_leaks, .timeout = 300)
{
  rnnc_ctx *ctx = open_models();
  rnnc_net *a = compile(ctx, "tiny", 3, 2, RNNC_GRAD), *b = compile(ctx, "tiny", 1, 2, RNNC_CARRY), *c;
  cr_assert_eq(rnnc_init_params(a, 1), RNNC_OK);
  cr_assert_eq(rnnc_share_params(b, a), RNNC_OK);
  cr_assert_eq(rnnc_forward_backward(a), RNNC_OK, "%s", rnnc_errmsg(ctx));
  cr_assert_eq(rnnc_forward(b), RNNC_OK, "%s", rnnc_errmsg(ctx));
  cr_assert_eq(rnnc_compile(ctx, "tiny", 1, (rnnc_dim[]){{"Q", 1}}, 0, &c), RNNC_EINPUT);
  cr_assert_eq(rnnc_load_params(a, "/nonexistent/p.safetensors"), RNNC_EIO);
  rnnc_net_free(b);
  cr_assert_eq(rnnc_forward(b), RNNC_EMISUSE);
  rnnc_close(ctx); /* frees a, live, and b's header */
#if defined(__SANITIZE_ADDRESS__)
  cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "LeakSanitizer found leaks (above)");
#endif
}

/* ---- pages: docs/api.md's JIT example, examples/host with README's line --------- */

/* The build directory (RNNC_BINARY's) and the sanitizer flags of this build. */
static const char *bindir(void)
{
  static char dir[1024];
  snprintf(dir, sizeof dir, "%s", RNNC_BINARY);
  *strrchr(dir, '/') = 0;
  return dir;
}
#if defined(__SANITIZE_ADDRESS__)
static const char san[] = "-fsanitize=address,undefined";
#else
static const char san[] = "";
#endif

/* The text from marker (skip bytes into it) to the next fence line (malloc'ed). */
static char *block(const char *md, const char *marker, size_t skip)
{
  const char *a = strstr(md, marker);
  cr_assert(a, "no block at %s", marker);
  a += skip;
  const char *b = strstr(a, "\n```\n");
  cr_assert(b);
  return strndup(a, (size_t)(b - a) + 1);
}

Test(api_net, docs_jit_example_runs, .timeout = 300)
{
  char *md = read_file(srcpath("docs/api.md"));
  cr_assert(md);
  char *prog = block(md, "```c\n/* jit_lm.c", strlen("```c\n"));
  char *want = block(md, "It prints:\n\n```\n", strlen("It prints:\n\n```\n"));
  char dir[] = "/tmp/rnnc_api_net_XXXXXX", path[256], cmd[4096];
  cr_assert(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/jit_lm.c", dir);
  FILE *f = fopen(path, "w");
  cr_assert(f);
  fputs(prog, f);
  fclose(f);
  snprintf(cmd, sizeof cmd,
           "cd %s && cc -std=c17 -Wall -Wextra -Wpedantic -Werror %s -I%s/include jit_lm.c "
           "%s/librnnc.a %s/librnnc_rt.a $(llvm-config-19 --ldflags --libs) -lsleef -ljansson -lz -fopenmp -lm "
           "-o jit_lm",
           dir, san, RNNC_SOURCE_DIR, bindir(), bindir());
  char *out = NULL;
  int rc = run_cmd(cmd, &out);
  cr_assert_eq(rc, 0, "%s\n%s", cmd, out);
  free(out);
  snprintf(cmd, sizeof cmd, "cd %s && ./jit_lm %s/examples/charlm_lstm.rnn 2>/dev/null", dir,
           RNNC_SOURCE_DIR);
  rc = run_cmd(cmd, &out);
  cr_assert_eq(rc, 0, "%s", out);
  cr_expect_str_eq(out, want);
  free(out);
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  run_cmd(cmd, NULL);
  free(prog);
  free(want);
  free(md);
}

Test(api_net, host_example_builds_with_readme_line_and_runs, .timeout = 600)
{
  /* README.md's line, run in the source tree with build/ this build and the
   * program written to a temporary directory */
  char *readme = read_file(srcpath("README.md"));
  cr_assert(readme);
  const char *a = strstr(readme, "cc -std=c17 -O2 examples/host/host.c");
  cr_assert(a, "README.md has no build line for examples/host/host.c");
  char *line = strndup(a, strcspn(a, "\n"));
  char *o = strstr(line, " -o host");
  cr_assert(o && strstr(line, " build/librnnc.a") && strstr(line, " build/librnnc_rt.a"), "README.md's host line: %s",
            line);
  *o = 0;
  /* the line with this build's directory for build/ */
  char dir[] = "/tmp/rnnc_api_net_XXXXXX", cmd[4096], built[3072] = "";
  for (const char *p = line; *p;) {
    const char *q = strstr(p, " build/");
    size_t n = q ? (size_t)(q - p) : strlen(p);
    snprintf(built + strlen(built), sizeof built - strlen(built), "%.*s%s%s", (int)n, p, q ? " " : "",
             q ? bindir() : "");
    p += n + (q ? strlen(" build") : 0);
  }
  cr_assert(mkdtemp(dir));
  snprintf(cmd, sizeof cmd, "cd %s && %s %s -o %s/host", RNNC_SOURCE_DIR, built, san, dir);
  char *out = NULL;
  int rc = run_cmd(cmd, &out);
  cr_assert_eq(rc, 0, "%s\n%s", cmd, out);
  free(out);
  snprintf(cmd, sizeof cmd, "cd %s && %s/host", RNNC_SOURCE_DIR, dir);
  rc = run_cmd(cmd, &out);
  cr_assert_eq(rc, 0, "%s", out);
  /* it trains (the loss falls well below log 65 = 4.17) and generates */
  double first = 0, last = 0;
  int nloss = 0;
  for (const char *p = out; (p = strstr(p, "loss ")); p += 5, nloss++) {
    last = atof(p + 5);
    first = nloss ? first : last;
  }
  cr_expect_eq(nloss, 6, "%s", out);
  cr_expect(first > 3.5 && first < 4.6, "first loss %g\n%s", first, out);
  cr_expect_lt(last, 0.7 * first, "the loss did not fall: %g -> %g\n%s", first, last, out);
  const char *g = strstr(out, "generated: the ");
  cr_expect(g && strlen(g) > strlen("generated: the ") + 50, "%s", out);
  free(out);
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  run_cmd(cmd, NULL);
  free(line);
  free(readme);
}
