/* train.c — trains the character language model examples/charlm.rnn in
 * process with the training step compiled ahead of time (charlm_train_step:
 * forward, backward through time, clipping and the optimizer's update, all in
 * charlm.o), on text at byte level, and feeds it exactly what
 * `rnnc train --level byte` feeds the JIT's training step, so that with the
 * same data, seed and settings it prints the same losses and ends with the
 * same parameters — bitwise when charlm.o was compiled for this CPU
 * (--cpu native): the same kernels and the same optimizer driver run.
 *
 *   rnnc compile examples/charlm.rnn -o charlm.o --header charlm.h --prefix charlm \
 *       --train --batch 32 --seq 64 --cpu native --dim V=256
 *   cc -O2 train.c safetensors.c charlm.o -I. -Iinclude -Lbuild \
 *       -lrnnc_rt -lsleef -lm -ljansson -fopenmp -o train
 *   rnnc init examples/charlm.rnn --out init.st --seed 1 --dim V=256
 *   ./train DATA --init init.st [--steps N | --epochs N] [--valid PATH | --valid-frac F]
 *           [--optim sgd|adam|adamw] [--lr X] [--momentum X] [--beta1 X] [--beta2 X]
 *           [--eps X] [--weight-decay X] [--clip-norm X] [--clip-value X] [--seed N]
 *           [--no-shuffle] [--threads N] [--log-every N] [--metrics PATH] [--save CKPT]
 *
 * What it reproduces of rnnc train (frontends/cli/cmd_train.c, runtime/batch.c,
 * runtime/corpus.c), for a language model on one stream of text:
 * - ids are the bytes of DATA (--level byte: V = 256, id = byte value);
 * - the last round(F * n) bytes are held out for validation (--valid-frac,
 *   default 0.05), or none when --valid names a separate file;
 * - an epoch cuts L = nbatch * T bytes for each of B parallel parts, part b
 *   starting at offset + b * L, nbatch = (n - 1) / B / T; batch k holds steps
 *   k*T .. k*T+T-1 of every part, the targets one byte later; the offset is
 *   0, or with shuffling (the default) drawn per epoch from (seed, epoch) in
 *   [0, min(T - 1, slack)] by rng.h's generator;
 * - the LSTM states carry from batch to batch, zeroed at each epoch's start;
 * - the optimizer's configuration is rnnc train's (rnnc_optim_defaults, then
 *   the options; a constant learning rate), the step count starts at 0;
 * - the initial parameters are `rnnc init --seed S` with the sizes rnnc train
 *   uses, which are the values rnnc train draws with --seed S (both are
 *   runtime/init.c's init_params: they depend on the seed and sizes only);
 * - a log line per --log-every steps, and --metrics appends rnnc train's JSON
 *   lines (step, epoch, loss, lr, grad_norm; at the end valid_loss,
 *   valid_ppl, valid_bpc from the compiled forward program over the
 *   validation stream, states carried, as rnnc train validates).
 * B and T are the ones charlm.o was compiled with (--batch, --seq). --save
 * writes the parameters with the metadata rnnc sample needs ("rnnc.vocab").
 */
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "charlm.h"
#include "rng.h"
#include "safetensors.h"

enum { B = CHARLM_TRAIN_B, T = CHARLM_TRAIN_T };
_Static_assert(CHARLM_FORWARD_B == B && CHARLM_FORWARD_T == T, "forward and train share B and T");

static void usage(void)
{
  fputs("usage: train DATA --init PARAMS [--steps N | --epochs N] [--valid PATH | --valid-frac F]\n"
        "             [--optim sgd|adam|adamw] [--lr X] [--momentum X] [--beta1 X] [--beta2 X] [--eps X]\n"
        "             [--weight-decay X] [--clip-norm X] [--clip-value X] [--seed N] [--no-shuffle]\n"
        "             [--threads N] [--log-every N] [--metrics PATH] [--save CKPT]\n",
        stderr);
  exit(2);
}

static double now_s(void)
{
  struct timespec ts;
  timespec_get(&ts, TIME_UTC);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A file's bytes as token ids; NULL with a message printed. */
static int32_t *read_ids(const char *path, size_t *n)
{
  FILE *fp = fopen(path, "rb");
  if (!fp) {
    fprintf(stderr, "train: cannot open '%s': %s\n", path, strerror(errno));
    return NULL;
  }
  size_t cap = 1 << 16, len = 0, got;
  int32_t *ids = malloc(cap * sizeof *ids);
  unsigned char buf[1 << 14];
  while (ids && (got = fread(buf, 1, sizeof buf, fp)) > 0) {
    if (len + got > cap) {
      int32_t *nb = realloc(ids, (cap *= 2) * sizeof *ids);
      if (!nb)
        free(ids);
      ids = nb;
    }
    for (size_t i = 0; ids && i < got; i++)
      ids[len++] = buf[i];
  }
  int bad = ferror(fp);
  fclose(fp);
  if (!ids || bad || len == 0) {
    fprintf(stderr, "train: %s '%s'\n", !ids ? "out of memory reading" : bad ? "cannot read" : "empty file:", path);
    free(ids);
    return NULL;
  }
  *n = len;
  return ids;
}

/* ---- batches of a stream: runtime/batch.c for DS_STREAM ---- */

typedef struct Stream {
  const int32_t *ids;
  size_t n;               /* tokens */
  int64_t nbatch, epoch, pos, offset;
  int shuffle;
  uint64_t seed;
  int32_t tokens[T * B], targets[T * B]; /* [T, B] */
} Stream;

/* Epoch e from its first batch: the offset from (seed, e). */
static void start_epoch(Stream *s, int64_t e)
{
  ex_rng r;
  ex_rng_seed(&r, s->seed ^ (0x9e3779b97f4a7c15u * ((uint64_t)e + 1)));
  uint64_t slack = s->n - 1 - (uint64_t)B * (uint64_t)s->nbatch * T, most = slack < T - 1 ? slack : T - 1;
  s->epoch = e;
  s->pos = 0;
  s->offset = s->shuffle ? (int64_t)(ex_rng_next(&r) % (most + 1)) : 0;
}

/* 0 when the stream is too short for one batch (message printed). */
static int stream_init(Stream *s, const char *what, const int32_t *ids, size_t n, int shuffle, uint64_t seed)
{
  if (n < (size_t)B * T + 1) {
    fprintf(stderr, "train: %s: %zu tokens, fewer than B*T+1 = %d\n", what, n, B * T + 1);
    return 0;
  }
  s->ids = ids, s->n = n, s->shuffle = shuffle, s->seed = seed;
  s->nbatch = (int64_t)((n - 1) / B / T);
  start_epoch(s, 0);
  return 1;
}

/* The next batch into s->tokens, s->targets; 1 when it starts an epoch
 * (the carried states must be zeroed). */
static int stream_next(Stream *s)
{
  if (s->pos >= s->nbatch)
    start_epoch(s, s->epoch + 1);
  int64_t k = s->pos++;
  size_t L = (size_t)s->nbatch * T;
  for (int t = 0; t < T; t++)
    for (int r = 0; r < B; r++) {
      size_t i = (size_t)s->offset + (size_t)r * L + (size_t)k * T + (size_t)t;
      s->tokens[t * B + r] = s->ids[i];
      s->targets[t * B + r] = s->ids[i + 1];
    }
  return k == 0;
}

/* ---- the run ---- */

/* One JSON line into the metrics file (obj consumed), as rnnc train writes it. */
static void metric(FILE *fp, json_t *obj)
{
  if (fp && obj) {
    json_dumpf(obj, fp, JSON_COMPACT | JSON_REAL_PRECISION(8));
    fputc('\n', fp);
    fflush(fp);
  }
  json_decref(obj);
}

/* The mean loss per target over the validation stream: the compiled forward
 * program batch by batch, states carried (rnnc train's evaluate). */
static int validate(const float *params, Stream *vs, int nth, double *mean, long long *ntarget)
{
  size_t bytes = (CHARLM_FORWARD_WS_BYTES(nth) + 63) / 64 * 64;
  void *ws = aligned_alloc(64, bytes);
  if (!ws || charlm_forward_init(ws, bytes, nth) != RNNC_OK) {
    fprintf(stderr, "train: %s\n", ws ? rnnc_aot_message(NULL) : "out of memory");
    free(ws);
    return 0;
  }
  float loss;
  charlm_forward_io io = {.tokens = vs->tokens, .targets = vs->targets, .loss = &loss};
  double sum = 0;
  int64_t n = 0;
  for (int64_t k = 0; k < vs->nbatch; k++) {
    if (stream_next(vs))
      charlm_forward_reset(ws);
    if (charlm_forward(ws, params, &io) != RNNC_OK) {
      fprintf(stderr, "train: validation: %s\n", charlm_message(ws));
      free(ws);
      return 0;
    }
    sum += (double)loss * (double)(B * T);
    n += B * T;
  }
  free(ws);
  *mean = sum / (double)n;
  *ntarget = n;
  return 1;
}

static double num(const char *s, const char *opt)
{
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (!*s || *end || errno || !(v >= 0)) {
    fprintf(stderr, "train: %s wants a number >= 0, not '%s'\n", opt, s);
    exit(2);
  }
  return v;
}

static uint64_t u64(const char *s, const char *opt)
{
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (*s < '0' || *s > '9' || *end || errno) {
    fprintf(stderr, "train: %s wants an integer >= 0, not '%s'\n", opt, s);
    exit(2);
  }
  return (uint64_t)v;
}

int main(int argc, char **argv)
{
  const char *data = NULL, *init = NULL, *valid = NULL, *metrics = NULL, *save = NULL, *optim = "adam";
  double frac = -1, steps = 0, epochs = 0, threads = 0, logevery = 1;
  uint64_t seed = 1;
  int shuffle = 1;
  rnnc_optim_config c;
  /* first pass: the optimizer's kind, whose defaults the other options change */
  for (int i = 1; i + 1 < argc; i++)
    if (strcmp(argv[i], "--optim") == 0)
      optim = argv[i + 1];
  int kind = strcmp(optim, "adam") == 0 ? RNNC_ADAM : strcmp(optim, "sgd") == 0 ? RNNC_SGD
             : strcmp(optim, "adamw") == 0 ? RNNC_ADAMW : -1;
  if (kind < 0)
    usage();
  rnnc_optim_defaults(&c, kind); /* then rnnc train's option defaults: */
  c.momentum = 0, c.clip_norm = 5, c.clip_value = 0, c.schedule = RNNC_LR_CONSTANT;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--no-shuffle") == 0) {
      shuffle = 0;
      continue;
    }
    if (a[0] != '-') {
      if (data)
        usage();
      data = a;
      continue;
    }
    if (!v)
      usage();
    i++;
    if (strcmp(a, "--init") == 0) init = v;
    else if (strcmp(a, "--valid") == 0) valid = v;
    else if (strcmp(a, "--metrics") == 0) metrics = v;
    else if (strcmp(a, "--save") == 0) save = v;
    else if (strcmp(a, "--optim") == 0) continue;
    else if (strcmp(a, "--valid-frac") == 0) frac = num(v, a);
    else if (strcmp(a, "--steps") == 0) steps = num(v, a);
    else if (strcmp(a, "--epochs") == 0) epochs = num(v, a);
    else if (strcmp(a, "--seed") == 0) seed = u64(v, a);
    else if (strcmp(a, "--threads") == 0) threads = num(v, a);
    else if (strcmp(a, "--log-every") == 0) logevery = num(v, a);
    else if (strcmp(a, "--lr") == 0) c.lr = num(v, a);
    else if (strcmp(a, "--momentum") == 0) c.momentum = num(v, a);
    else if (strcmp(a, "--beta1") == 0) c.beta1 = num(v, a);
    else if (strcmp(a, "--beta2") == 0) c.beta2 = num(v, a);
    else if (strcmp(a, "--eps") == 0) c.eps = num(v, a);
    else if (strcmp(a, "--weight-decay") == 0) c.weight_decay = num(v, a);
    else if (strcmp(a, "--clip-norm") == 0) c.clip_norm = num(v, a);
    else if (strcmp(a, "--clip-value") == 0) c.clip_value = num(v, a);
    else usage();
  }
  if (!data || logevery < 1 || frac >= 1)
    usage();
  if (!init) {
    fprintf(stderr, "train: give the initial parameters with --init PARAMS, from rnnc init MODEL --out PARAMS "
                    "--seed N (rnnc train's --seed) and the model's --dim options\n");
    return 2;
  }
  if (frac < 0)
    frac = valid ? 0 : 0.05;
  long maxsteps = (long)steps, maxepochs = (long)epochs;
  if (!maxsteps && !maxepochs)
    maxepochs = 1;

  /* data: the training stream, and the validation stream (a file, or the tail) */
  size_t n = 0, nv = 0;
  int32_t *ids = read_ids(data, &n), *vids = NULL;
  if (!ids)
    return 1;
  if (valid && !(vids = read_ids(valid, &nv))) {
    free(ids);
    return 1;
  }
  if (!valid && frac > 0) {
    nv = (size_t)llround(frac * (double)n);
    if (nv < 2 || n - nv < 2) {
      fprintf(stderr, "train: cannot split %zu tokens with validation fraction %g\n", n, frac);
      free(ids);
      return 1;
    }
    n -= nv;
    vids = ids + n; /* the tail: training uses ids[0 .. n) */
  }
  Stream *tr = calloc(1, sizeof *tr), *va = calloc(1, sizeof *va);
  int nth = threads > 0 ? (int)threads : omp_get_max_threads(), status = 1;
  size_t pbytes = ((size_t)CHARLM_PARAM_FLOATS * sizeof(float) + 63) / 64 * 64;
  size_t obytes = (CHARLM_OPT_FLOATS * sizeof(float) + 63) / 64 * 64;
  size_t wsbytes = (CHARLM_TRAIN_WS_BYTES(nth) + 63) / 64 * 64;
  float *params = aligned_alloc(64, pbytes), *opt = aligned_alloc(64, obytes);
  void *ws = aligned_alloc(64, wsbytes);
  st_file *f = NULL;
  FILE *mf = NULL;
  char err[1024];
  if (!tr || !va || !params || !opt || !ws) {
    fprintf(stderr, "train: out of memory\n");
    goto done;
  }
  memset(params, 0, pbytes);
  memset(opt, 0, obytes); /* Adam's moments, SGD's momentum: zero before the first step */
  if (!stream_init(tr, "training data", ids, n, shuffle, seed) ||
      (vids && !stream_init(va, "validation data", vids, nv, 0, 0)))
    goto done;

  /* the initial parameters, the workspace, the optimizer */
  if (!(f = st_open(init, NULL, err, sizeof err)) || st_load_params(f, &charlm_model, params, err, sizeof err)) {
    fprintf(stderr, "train: %s\n", err);
    goto done;
  }
  if (charlm_train_init(ws, wsbytes, nth, &c, 0, NULL) != RNNC_OK) {
    fprintf(stderr, "train: %s\n", rnnc_aot_message(NULL)[0] ? rnnc_aot_message(NULL) : charlm_message(ws));
    goto done;
  }
  if (metrics && !(mf = fopen(metrics, "a"))) {
    fprintf(stderr, "train: cannot open '%s' for writing\n", metrics);
    goto done;
  }
  printf("training charlm (compiled for %s) on %s: %lld batches per epoch (B = %d, T = %d), %d threads\n",
         charlm_model.cpu, data, (long long)tr->nbatch, B, T, nth);

  charlm_train_io io = {.tokens = tr->tokens, .targets = tr->targets};
  long step = 0;
  float loss = NAN;
  double t0 = now_s();
  for (;;) {
    if (maxsteps && step >= maxsteps)
      break;
    if (maxepochs && tr->epoch + (tr->pos >= tr->nbatch) >= maxepochs)
      break;
    if (stream_next(tr))
      charlm_train_reset(ws); /* an epoch's first batch: zero states */
    double gnorm;
    if (charlm_train_step(ws, params, opt, step, &io, &loss, &gnorm) != RNNC_OK) {
      fprintf(stderr, "train: %s; stopped\n", charlm_message(ws));
      goto done;
    }
    step++;
    double el = now_s() - t0;
    if (step % (long)logevery == 0) {
      printf("step %ld  epoch %lld  loss %.4f  lr %g\n", step, (long long)tr->epoch + 1, (double)loss, c.lr);
      metric(mf, json_pack("{s:I,s:I,s:f,s:f,s:f,s:f,s:f}", "step", (json_int_t)step, "epoch",
                           (json_int_t)(tr->epoch + 1), "loss", (double)loss, "lr", c.lr, "grad_norm", gnorm,
                           "tokens_per_s", (double)step * B * T / el, "time_s", el));
    }
  }
  printf("trained %ld steps in %.1f s; last training loss %.4f\n", step, now_s() - t0, (double)loss);
  if (vids) {
    double vl;
    long long nt;
    if (!validate(params, va, nth, &vl, &nt))
      goto done;
    printf("validation (%lld targets): loss %.4f, perplexity %.3f, %.4f bits per byte\n", nt, vl, exp(vl),
           vl / log(2.0));
    metric(mf, json_pack("{s:I,s:I,s:f,s:f,s:f}", "step", (json_int_t)step, "epoch", (json_int_t)(tr->epoch + 1),
                         "valid_loss", vl, "valid_ppl", exp(vl), "valid_bpc", vl / log(2.0)));
  }
  if (save) {
    char stepstr[32];
    snprintf(stepstr, sizeof stepstr, "%ld", step);
    const char *meta[] = {"model", charlm_model.name, "rnnc.step", stepstr, "rnnc.vocab", "{\"kind\":\"byte\"}"};
    if (st_save_params(save, &charlm_model, params, 3, meta, err, sizeof err) != RNNC_OK) {
      fprintf(stderr, "train: %s\n", err);
      goto done;
    }
    printf("saved: %s (step %ld)\n", save, step);
  }
  status = 0;
done:
  if (mf)
    fclose(mf);
  st_close(f);
  free(params);
  free(opt);
  free(ws);
  free(tr);
  free(va);
  free(ids);
  if (valid)
    free(vids);
  return status;
}
