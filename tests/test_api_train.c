/* test_api_train.c — the training and generation API (include/rnnc.h):
 * rnnc_train_step is forward + backward + the optimizer's update (checked
 * against the net's own gradients and SGD's formula), it refuses a
 * non-finite loss without changing anything, checkpoints round-trip and
 * refuse another model, the generator's log-probability equals the training
 * net's loss, greedy generation equals a width-1 beam, misuse messages. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rnnc.h"
#include "testutil.h"

static const char lm[] = "model lm(V = 7, E = 5, H = 6) {\n"
                         "  input tokens: i32[T, B], targets: i32[T, B]\n"
                         "  x    = embedding(tokens, V, E)\n"
                         "  h    = lstm(x, H = H)\n"
                         "  loss = softmax(h, V, target = targets)\n"
                         "  output loss\n"
                         "}\n";

enum { T = 5, B = 3, V = 7 };

static rnnc_ctx *open_lm(void)
{
  rnnc_ctx *ctx = rnnc_open();
  cr_assert(ctx);
  cr_assert_eq(rnnc_load(ctx, "lm.rnn", lm), RNNC_OK, "%s", rnnc_errmsg(ctx));
  return ctx;
}

static rnnc_net *compile_lm(rnnc_ctx *ctx, int flags)
{
  rnnc_net *net;
  rnnc_dim d[] = {{"T", T}, {"B", B}};
  cr_assert_eq(rnnc_compile(ctx, "lm", 2, d, flags, &net), RNNC_OK, "%s", rnnc_errmsg(ctx));
  return net;
}

static void set_tokens(rnnc_net *net, unsigned seed)
{
  int32_t tok[T * B], tgt[T * B];
  for (int i = 0; i < T * B; i++) {
    tok[i] = (int32_t)((seed * 7 + (unsigned)i * 3) % V);
    tgt[i] = (int32_t)((seed * 5 + (unsigned)i * 2 + 1) % V);
  }
  cr_assert_eq(rnnc_set(net, "tokens", tok, sizeof tok), RNNC_OK);
  cr_assert_eq(rnnc_set(net, "targets", tgt, sizeof tgt), RNNC_OK);
}

/* One SGD step (no momentum, no clipping) is w - lr * grad, with grad what
 * rnnc_forward_backward computes on a second net with the same weights. */
Test(api_train, sgd_step_is_forward_backward_then_update)
{
  rnnc_ctx *ctx = open_lm();
  rnnc_net *net = compile_lm(ctx, RNNC_GRAD), *ref = compile_lm(ctx, RNNC_GRAD);
  cr_assert_eq(rnnc_init_params(net, 3), RNNC_OK);
  cr_assert_eq(rnnc_init_params(ref, 3), RNNC_OK);
  set_tokens(net, 1);
  set_tokens(ref, 1);
  rnnc_optim_config c;
  rnnc_optim_defaults(&c, RNNC_SGD);
  c.lr = 0.5;
  c.clip_norm = 0;
  rnnc_optim *opt;
  cr_assert_eq(rnnc_optim_new(net, &c, 0, NULL, &opt), RNNC_OK, "%s", rnnc_errmsg(ctx));
  cr_assert_eq(rnnc_optim_steps(opt), 0);
  cr_assert_float_eq(rnnc_optim_lr(opt), 0.5, 1e-12);
  float loss, refloss;
  double gnorm;
  cr_assert_eq(rnnc_train_step(opt, &loss, &gnorm), RNNC_OK, "%s", rnnc_errmsg(ctx));
  cr_assert_eq(rnnc_forward_backward(ref), RNNC_OK);
  cr_assert_eq(rnnc_get(ref, "loss", &refloss, sizeof refloss), RNNC_OK);
  cr_assert_eq(loss, refloss, "the step's loss is the forward pass's");
  cr_assert_eq(rnnc_optim_steps(opt), 1);
  double sq = 0;
  int nparam = 0;
  for (int i = 0; i < rnnc_tensor_count(net); i++) {
    const char *name = rnnc_tensor_name(net, i);
    if (strncmp(name, "grad.", 5) == 0 || strcmp(name, "loss") == 0 || strcmp(name, "tokens") == 0 ||
        strcmp(name, "targets") == 0)
      continue;
    char gname[128];
    snprintf(gname, sizeof gname, "grad.%s", name);
    int64_t dim[4];
    int rank;
    cr_assert_eq(rnnc_tensor_shape(net, name, NULL, &rank, dim), RNNC_OK);
    int64_t n = 1;
    for (int k = 0; k < rank; k++)
      n *= dim[k];
    const float *w = rnnc_data(net, name), *w0 = rnnc_data(ref, name), *g = rnnc_data(ref, gname);
    for (int64_t e = 0; e < n; e++) {
      float want = w0[e] - 0.5f * g[e];
      cr_assert(fabsf(w[e] - want) <= 1e-7f * (1 + fabsf(want)), "%s[%ld]: %g vs %g", name, (long)e, w[e], want);
      sq += (double)g[e] * g[e];
    }
    nparam++;
  }
  cr_assert_eq(nparam, 7, "x.weight, 4 lstm tensors, softmax weight and bias");
  cr_assert(fabs(gnorm - sqrt(sq)) <= 1e-5 * sqrt(sq), "gnorm %g vs %g", gnorm, sqrt(sq));
  rnnc_optim_free(opt);
  rnnc_close(ctx);
}

/* A NaN weight makes the loss NaN: the step says so and changes nothing. */
Test(api_train, non_finite_loss_changes_nothing)
{
  rnnc_ctx *ctx = open_lm();
  rnnc_net *net = compile_lm(ctx, RNNC_GRAD);
  cr_assert_eq(rnnc_init_params(net, 1), RNNC_OK);
  set_tokens(net, 2);
  rnnc_optim_config c;
  rnnc_optim_defaults(&c, RNNC_ADAM);
  rnnc_optim *opt;
  cr_assert_eq(rnnc_optim_new(net, &c, 0, NULL, &opt), RNNC_OK);
  cr_assert_eq(rnnc_train_step(opt, NULL, NULL), RNNC_OK);
  float *b = rnnc_data(net, "loss.bias");
  b[2] = NAN;
  float before[6 * 4 * 6];
  memcpy(before, rnnc_data(net, "h.W_hh"), sizeof before);
  cr_assert_eq(rnnc_train_step(opt, NULL, NULL), RNNC_EINPUT);
  cr_assert_str_eq(rnnc_errmsg(ctx), "step 2: the loss is not finite (nan)");
  cr_assert_eq(memcmp(before, rnnc_data(net, "h.W_hh"), sizeof before), 0);
  cr_assert_eq(rnnc_optim_steps(opt), 1);
  rnnc_optim_free(opt);
  rnnc_close(ctx);
}

Test(api_train, checkpoint_round_trip_and_another_model)
{
  char path[] = "/tmp/rnnc_api_train_XXXXXX";
  int fd = mkstemp(path);
  cr_assert(fd >= 0);
  close(fd);
  rnnc_ctx *ctx = open_lm();
  rnnc_net *net = compile_lm(ctx, RNNC_GRAD | RNNC_CARRY);
  cr_assert_eq(rnnc_init_params(net, 5), RNNC_OK);
  rnnc_optim_config c;
  rnnc_optim_defaults(&c, RNNC_ADAMW);
  rnnc_optim *opt, *opt2;
  cr_assert_eq(rnnc_optim_new(net, &c, 0, NULL, &opt), RNNC_OK);
  for (unsigned s = 0; s < 3; s++) {
    set_tokens(net, s);
    cr_assert_eq(rnnc_train_step(opt, NULL, NULL), RNNC_OK);
  }
  const char *kv[] = {"my.key", "my value"};
  cr_assert_eq(rnnc_checkpoint_save(opt, path, 1, kv), RNNC_OK, "%s", rnnc_errmsg(ctx));
  cr_assert_str_eq(rnnc_checkpoint_meta(opt, "my.key"), "my value");
  cr_assert_str_eq(rnnc_checkpoint_meta(opt, "rnnc.step"), "3");

  /* a fresh net restored from the checkpoint continues exactly */
  rnnc_net *net2 = compile_lm(ctx, RNNC_GRAD | RNNC_CARRY);
  cr_assert_eq(rnnc_init_params(net2, 99), RNNC_OK);
  cr_assert_eq(rnnc_optim_new(net2, &c, 0, NULL, &opt2), RNNC_OK);
  cr_assert_eq(rnnc_checkpoint_load(opt2, path), RNNC_OK, "%s", rnnc_errmsg(ctx));
  cr_assert_eq(rnnc_optim_steps(opt2), 3);
  cr_assert_str_eq(rnnc_checkpoint_meta(opt2, "my.key"), "my value");
  set_tokens(net, 9);
  set_tokens(net2, 9);
  float l1, l2;
  cr_assert_eq(rnnc_train_step(opt, &l1, NULL), RNNC_OK);
  cr_assert_eq(rnnc_train_step(opt2, &l2, NULL), RNNC_OK);
  cr_assert_eq(l1, l2);
  cr_assert_eq(memcmp(rnnc_data(net, "h.W_ih"), rnnc_data(net2, "h.W_ih"), 24 * 5 * sizeof(float)), 0);
  cr_assert_eq(memcmp(rnnc_data(net, "state.h.c"), rnnc_data(net2, "state.h.c"), B * 6 * sizeof(float)), 0);

  /* another model (H = 6 written differently is the same; a GRU is not) */
  rnnc_ctx *ctx2 = rnnc_open();
  char other[sizeof lm + 8];
  snprintf(other, sizeof other, "%s", lm);
  memcpy(strstr(other, "lstm"), "gru ", 4);
  cr_assert_eq(rnnc_load(ctx2, "gru.rnn", other), RNNC_OK, "%s", rnnc_errmsg(ctx2));
  rnnc_net *g;
  rnnc_dim d[] = {{"T", T}, {"B", B}};
  cr_assert_eq(rnnc_compile(ctx2, "lm", 2, d, RNNC_GRAD, &g), RNNC_OK);
  rnnc_optim *og;
  cr_assert_eq(rnnc_optim_new(g, &c, 0, NULL, &og), RNNC_OK);
  cr_assert_eq(rnnc_checkpoint_load(og, path), RNNC_EINPUT);
  char want[512];
  snprintf(want, sizeof want, "'%s' was saved from a different model (hash ", path);
  cr_assert(strncmp(rnnc_errmsg(ctx2), want, strlen(want)) == 0, "%s", rnnc_errmsg(ctx2));
  rnnc_optim_free(og);
  rnnc_close(ctx2);
  rnnc_optim_free(opt);
  rnnc_optim_free(opt2);
  rnnc_close(ctx);
  unlink(path);
}

/* The generator's log-probability of a sequence is minus the training net's
 * loss times its length (one row, T = n - 1 steps); greedy generation is a
 * beam of width 1. */
Test(api_train, generator_agrees_with_the_training_net)
{
  rnnc_ctx *ctx = open_lm();
  rnnc_net *net;
  rnnc_dim d[] = {{"T", 8}, {"B", 1}};
  cr_assert_eq(rnnc_compile(ctx, "lm", 2, d, 0, &net), RNNC_OK);
  cr_assert_eq(rnnc_init_params(net, 11), RNNC_OK);
  int32_t ids[9] = {1, 4, 2, 6, 0, 3, 3, 5, 1};
  cr_assert_eq(rnnc_set(net, "tokens", ids, 8 * sizeof *ids), RNNC_OK);
  cr_assert_eq(rnnc_set(net, "targets", ids + 1, 8 * sizeof *ids), RNNC_OK);
  cr_assert_eq(rnnc_forward(net), RNNC_OK);
  float loss;
  cr_assert_eq(rnnc_get(net, "loss", &loss, sizeof loss), RNNC_OK);

  rnnc_generator *g;
  cr_assert_eq(rnnc_generator_new(ctx, "lm", 0, NULL, 3, &g), RNNC_OK, "%s", rnnc_errmsg(ctx));
  cr_assert_eq(rnnc_generator_share_params(g, net), RNNC_OK, "%s", rnnc_errmsg(ctx));
  double lp;
  cr_assert_eq(rnnc_log_prob(g, ids, 9, &lp), RNNC_OK, "%s", rnnc_errmsg(ctx));
  cr_assert(fabs(lp + 8 * (double)loss) <= 1e-5 * fabs(lp), "log p %.7f vs -8 x loss %.7f", lp, -8.0 * loss);

  int32_t greedy[10], beam[10];
  double score;
  cr_assert_eq(rnnc_generate(g, ids, 2, 10, 0, 0, 1, greedy), RNNC_OK);
  cr_assert_eq(rnnc_beam_search(g, ids, 2, 10, 1, 0, -1, beam, &score), RNNC_OK, "%s", rnnc_errmsg(ctx));
  for (int i = 0; i < 10; i++)
    cr_assert_eq(greedy[i], beam[i], "token %d: greedy %d, beam %d", i, greedy[i], beam[i]);
  /* the greedy sequence's score is its log-probability after the prefix */
  int32_t all[12] = {ids[0], ids[1]};
  memcpy(all + 2, greedy, sizeof greedy);
  double lpall, lpre;
  cr_assert_eq(rnnc_log_prob(g, all, 12, &lpall), RNNC_OK);
  cr_assert_eq(rnnc_log_prob(g, all, 2, &lpre), RNNC_OK);
  cr_assert(fabs(score - (lpall - lpre)) <= 1e-4 * fabs(score), "%g vs %g", score, lpall - lpre);
  /* a wider beam never finds a less probable continuation */
  double score3;
  cr_assert_eq(rnnc_beam_search(g, ids, 2, 10, 3, 0, -1, beam, &score3), RNNC_OK);
  cr_assert_geq(score3, score - 1e-6);

  /* misuse */
  cr_assert_eq(rnnc_beam_search(g, ids, 2, 10, 4, 0, -1, beam, NULL), RNNC_EMISUSE);
  cr_assert_str_eq(rnnc_errmsg(ctx), "rnnc_beam_search: width 4 is outside [1, 3] (the generator's)");
  int32_t bad[2] = {1, 7};
  cr_assert_eq(rnnc_log_prob(g, bad, 2, &lp), RNNC_EINPUT);
  cr_assert_str_eq(rnnc_errmsg(ctx), "rnnc_log_prob: token id 7 at 1 is outside [0, 7)");
  rnnc_generator *g2;
  cr_assert_eq(rnnc_generator_new(ctx, "lm", 1, (rnnc_dim[]){{"T", 2}}, 1, &g2), RNNC_EMISUSE);
  cr_assert_str_eq(rnnc_errmsg(ctx), "rnnc_generator_new: the generator binds T itself");
  rnnc_generator_free(g);
  rnnc_close(ctx);
}

Test(api_train, optimizer_misuse)
{
  rnnc_ctx *ctx = open_lm();
  rnnc_net *fwd = compile_lm(ctx, 0), *net = compile_lm(ctx, RNNC_GRAD);
  rnnc_optim_config c;
  rnnc_optim_defaults(&c, RNNC_ADAM);
  rnnc_optim *opt;
  cr_assert_eq(rnnc_optim_new(fwd, &c, 0, NULL, &opt), RNNC_EMISUSE);
  cr_assert_str_eq(rnnc_errmsg(ctx), "rnnc_optim_new: net was compiled without RNNC_GRAD");
  const char *fz[] = {"h.W_xx"};
  cr_assert_eq(rnnc_optim_new(net, &c, 1, fz, &opt), RNNC_EINPUT);
  cr_assert_str_eq(rnnc_errmsg(ctx), "cannot freeze 'h.W_xx': model 'lm' has no such parameter");
  c.lr = -1;
  cr_assert_eq(rnnc_optim_new(net, &c, 0, NULL, &opt), RNNC_EINPUT);
  cr_assert_str_eq(rnnc_errmsg(ctx), "learning rate must be > 0, got -1");
  /* a frozen parameter stays as it is */
  rnnc_optim_defaults(&c, RNNC_SGD);
  const char *fz2[] = {"x.weight"};
  cr_assert_eq(rnnc_init_params(net, 1), RNNC_OK);
  set_tokens(net, 3);
  cr_assert_eq(rnnc_optim_new(net, &c, 1, fz2, &opt), RNNC_OK);
  float before[V * 5];
  memcpy(before, rnnc_data(net, "x.weight"), sizeof before);
  cr_assert_eq(rnnc_train_step(opt, NULL, NULL), RNNC_OK);
  cr_assert_eq(memcmp(before, rnnc_data(net, "x.weight"), sizeof before), 0);
  rnnc_optim_free(opt);
  rnnc_close(ctx);
}

/* Generation from a one-hot LM and from a masked LM (the generator sets the
 * mask to 1): the log-probability again equals the training net's loss. */
static void gen_matches_loss(const char *text, const char *model, int masked)
{
  rnnc_ctx *ctx = rnnc_open();
  cr_assert_eq(rnnc_load(ctx, "m.rnn", text), RNNC_OK, "%s", rnnc_errmsg(ctx));
  rnnc_net *net;
  rnnc_dim d[] = {{"T", 6}, {"B", 1}};
  cr_assert_eq(rnnc_compile(ctx, model, 2, d, 0, &net), RNNC_OK, "%s", rnnc_errmsg(ctx));
  cr_assert_eq(rnnc_init_params(net, 4), RNNC_OK);
  int32_t ids[7] = {3, 1, 4, 1, 5, 2, 6};
  cr_assert_eq(rnnc_set(net, "tokens", ids, 6 * sizeof *ids), RNNC_OK);
  cr_assert_eq(rnnc_set(net, "targets", ids + 1, 6 * sizeof *ids), RNNC_OK);
  if (masked) {
    float ones[6] = {1, 1, 1, 1, 1, 1};
    cr_assert_eq(rnnc_set(net, "m", ones, sizeof ones), RNNC_OK);
  }
  cr_assert_eq(rnnc_forward(net), RNNC_OK);
  float loss;
  cr_assert_eq(rnnc_get(net, "loss", &loss, sizeof loss), RNNC_OK);
  rnnc_generator *g;
  cr_assert_eq(rnnc_generator_new(ctx, model, 0, NULL, 2, &g), RNNC_OK, "%s", rnnc_errmsg(ctx));
  cr_assert_eq(rnnc_generator_share_params(g, net), RNNC_OK, "%s", rnnc_errmsg(ctx));
  double lp;
  cr_assert_eq(rnnc_log_prob(g, ids, 7, &lp), RNNC_OK, "%s", rnnc_errmsg(ctx));
  cr_assert(fabs(lp + 6 * (double)loss) <= 1e-5 * fabs(lp), "%s: log p %.7f vs -6 x loss %.7f", model, lp,
            -6.0 * loss);
  int32_t out[8], beam[8];
  cr_assert_eq(rnnc_generate(g, ids, 1, 8, 0, 0, 1, out), RNNC_OK);
  cr_assert_eq(rnnc_beam_search(g, ids, 1, 8, 1, 0, -1, beam, NULL), RNNC_OK);
  for (int i = 0; i < 8; i++)
    cr_assert_eq(out[i], beam[i], "%s: token %d", model, i);
  rnnc_generator_free(g);
  rnnc_close(ctx);
}

Test(api_train, generation_from_onehot_and_masked_models)
{
  char *onehot = read_file(srcpath("tests/models/onehot_lm.rnn"));
  cr_assert(onehot);
  gen_matches_loss(onehot, "onehot_lm", 0);
  free(onehot);
  gen_matches_loss("model mlm(V = 7, E = 4, H = 5) {\n"
                   "  input tokens: i32[T, B], targets: i32[T, B], m: f32[T, B]\n"
                   "  x    = embedding(tokens, V, E)\n"
                   "  h    = lstm(x, H = H, mask = m)\n"
                   "  loss = softmax(h, V, target = targets, ignore = -1)\n"
                   "  output loss\n"
                   "}\n",
                   "mlm", 1);
}
