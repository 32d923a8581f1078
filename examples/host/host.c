/* host.c — a C program that trains and runs a recurrent model through rnnc's
 * JIT API (include/rnnc.h).
 *
 * It loads examples/charlm_lstm.rnn (embedding -> LSTM -> softmax, a
 * character language model), compiles it for T = 32 steps of B = 8 sequences
 * with gradients, initializes the parameters and trains it on a short text
 * by SGD (gradients clipped to global norm 5), printing the loss. Then a
 * second net of the same model, compiled for one step (T = 1, B = 1) with the
 * LSTM's state carried from call to call (RNNC_CARRY), shares the trained
 * parameters and generates text greedily: after each step the next character
 * is the argmax of the softmax layer's logits, loss.weight · h_T + loss.bias,
 * computed here from the net's tensors.
 *
 * Build it from the top of the rnnc tree, after building rnnc into build/:
 *
 *   cc -std=c17 -O2 examples/host/host.c -Iinclude build/librnnc.a build/librnnc_rt.a \
 *      $(llvm-config-19 --ldflags --libs) -lsleef -ljansson -lz -fopenmp -lm -o host
 *   ./host [MODEL.rnn]          (default: examples/charlm_lstm.rnn)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rnnc.h"

enum { T = 32, B = 8, STEPS = 150, GEN = 60 };
static const float LR = 1.0f, CLIP = 5.0f;

static const char text[] =
    "the quick brown fox jumps over the lazy dog. "
    "the lazy dog sleeps in the sun. the quick fox runs home. ";

/* Characters and token ids: id i is alphabet[i] (V = 65 covers it). */
static const char alphabet[] = " .abcdefghijklmnopqrstuvwxyz";
static int32_t id_of(char ch)
{
  const char *p = strchr(alphabet, ch);
  return p && ch ? (int32_t)(p - alphabet) : 0;
}

/* On a failed call: print the call and the context's message, and stop. */
#define CHECK(call)                                                            \
  do {                                                                         \
    if ((call) != RNNC_OK) {                                                   \
      fprintf(stderr, "host: %s failed:\n%s\n", #call, rnnc_errmsg(ctx));      \
      exit(1);                                                                 \
    }                                                                          \
  } while (0)

/* The number of elements of a net's tensor. */
static size_t numel(rnnc_ctx *ctx, rnnc_net *net, const char *name)
{
  int rank;
  int64_t dim[4];
  CHECK(rnnc_tensor_shape(net, name, NULL, &rank, dim));
  size_t n = 1;
  for (int i = 0; i < rank; i++)
    n *= (size_t)dim[i];
  return n;
}

/* One SGD step on every parameter, its gradient clipped to global norm CLIP. */
static void sgd(rnnc_ctx *ctx, rnnc_net *net)
{
  double sq = 0;
  int n = rnnc_tensor_count(net);
  for (int pass = 0; pass < 2; pass++) {
    float scale = LR * (sq > (double)CLIP * CLIP ? CLIP / (float)sqrt(sq) : 1.0f);
    for (int i = 0; i < n; i++) {
      const char *gname = rnnc_tensor_name(net, i);
      if (strncmp(gname, "grad.", 5) != 0)
        continue;
      const float *g = rnnc_data(net, gname);
      float *p = rnnc_data(net, gname + 5); /* "grad.h.W_ih" -> "h.W_ih" */
      size_t k = numel(ctx, net, gname);
      for (size_t e = 0; e < k; e++) {
        if (pass == 0)
          sq += (double)g[e] * g[e];
        else
          p[e] -= scale * g[e];
      }
    }
  }
}

/* The argmax over V of loss.weight [V, H] · h [H] + loss.bias [V]. */
static int32_t greedy(rnnc_ctx *ctx, rnnc_net *net)
{
  const float *W = rnnc_data(net, "loss.weight"), *b = rnnc_data(net, "loss.bias");
  const float *h = rnnc_data(net, "h_T");
  size_t V = numel(ctx, net, "loss.bias"), H = numel(ctx, net, "h_T");
  int32_t best = 0;
  float bestz = -INFINITY;
  for (size_t v = 0; v < V; v++) {
    float z = b[v];
    for (size_t k = 0; k < H; k++)
      z += W[v * H + k] * h[k];
    if (z > bestz) {
      bestz = z;
      best = (int32_t)v;
    }
  }
  return best;
}

int main(int argc, char **argv)
{
  const char *path = argc > 1 ? argv[1] : "examples/charlm_lstm.rnn";
  rnnc_ctx *ctx = rnnc_open();
  if (!ctx)
    return 1;
  CHECK(rnnc_load_file(ctx, path));

  /* training: T steps of B sequences, forward + backward */
  rnnc_net *train;
  rnnc_dim dims[] = {{"T", T}, {"B", B}};
  CHECK(rnnc_compile(ctx, "charlm_lstm", 2, dims, RNNC_GRAD, &train));
  printf("compiled charlm_lstm for T = %d, B = %d with gradients in %.0f ms\n", T, B,
         rnnc_compile_ms(train));
  CHECK(rnnc_init_params(train, 42));

  /* tokens[t, b] and targets[t, b] = the next character; sequence b starts at
   * a different place in the text every step */
  int32_t tokens[T][B], targets[T][B];
  size_t len = strlen(text);
  unsigned seed = 1;
  for (int step = 0; step <= STEPS; step++) {
    for (int b = 0; b < B; b++) {
      seed = seed * 1103515245u + 12345u;
      size_t start = (seed >> 8) % (len - T - 1);
      for (int t = 0; t < T; t++) {
        tokens[t][b] = id_of(text[start + t]);
        targets[t][b] = id_of(text[start + t + 1]);
      }
    }
    CHECK(rnnc_set(train, "tokens", tokens, sizeof tokens));
    CHECK(rnnc_set(train, "targets", targets, sizeof targets));
    CHECK(rnnc_forward_backward(train));
    float loss;
    CHECK(rnnc_get(train, "loss", &loss, sizeof loss));
    if (step % 30 == 0)
      printf("step %3d  loss %.4f\n", step, loss);
    if (step < STEPS)
      sgd(ctx, train);
  }

  /* generation: one step at a time, the LSTM state carried between calls,
   * with the training net's parameters */
  rnnc_net *gen;
  rnnc_dim one[] = {{"T", 1}, {"B", 1}};
  CHECK(rnnc_compile(ctx, "charlm_lstm", 2, one, RNNC_CARRY, &gen));
  CHECK(rnnc_share_params(gen, train));
  const char *prefix = "the ";
  printf("generated: %s", prefix);
  int32_t tok = 0, tgt = 0; /* targets are an input of the model; unused here */
  CHECK(rnnc_set(gen, "targets", &tgt, sizeof tgt));
  for (int i = 0; i < (int)strlen(prefix) + GEN; i++) {
    tok = i < (int)strlen(prefix) ? id_of(prefix[i]) : tok;
    CHECK(rnnc_set(gen, "tokens", &tok, sizeof tok));
    CHECK(rnnc_forward(gen));
    tok = greedy(ctx, gen);
    if (i >= (int)strlen(prefix) - 1 && i < (int)strlen(prefix) + GEN - 1)
      putchar(alphabet[tok]);
  }
  putchar('\n');

  rnnc_net_free(gen); /* before the net whose parameters it shares */
  rnnc_net_free(train);
  rnnc_close(ctx);
  return 0;
}
