/* batch.c — batches of [T, B] from a data set, deterministic in (seed, epoch,
 * pos) so that a checkpoint's position ("epoch pos") restores the exact batches.
 *
 * Streams (truncated BPTT): an epoch uses L = nbatch * T steps of each of B
 * contiguous parts, part b starting at offset + b * L; chunk k is steps
 * k*T .. k*T+T-1 of every part, targets one token later, so chunk k+1 of part
 * b continues where chunk k ended. nbatch = (nids - 1) / B / T; the slack
 * S = nids - 1 - B * L tokens leave room for the offset: 0, or with shuffle
 * drawn in [0, min(T - 1, S)] per epoch. batcher_whole (evaluation) makes
 * the parts L = (nids - 1) / B long instead, so only the last (nids - 1) % B
 * targets go unscored: nbatch - 1 chunks of T steps and, when T does not
 * divide L, a last chunk of L % T (bt->tail).
 * Lines and IDX: batch k holds sequences order[k*B .. k*B+B-1] (order: file
 * order, or a seeded shuffle per epoch), each cut to T steps; rows past the
 * end of a last partial batch are padding. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

static void *xcalloc(size_t n, size_t sz)
{
  void *p = calloc(n ? n : 1, sz);
  if (!p)
    die("out of memory (needed %zu x %zu bytes)", n, sz);
  return p;
}

/* This epoch's generator: a pure function of (seed, epoch). */
static Rng epoch_rng(const Batcher *bt, int64_t epoch)
{
  Rng r;
  rng_seed(&r, bt->seed ^ (0x9e3779b97f4a7c15u * ((uint64_t)epoch + 1)));
  return r;
}

/* Set up epoch e at its first batch: the stream offset or the order. */
static void start_epoch(Batcher *bt, int64_t e)
{
  const Dataset *d = bt->d;
  Rng r = epoch_rng(bt, e);
  bt->epoch = e;
  bt->pos = 0;
  if (d->kind == DS_STREAM) {
    uint64_t slack = d->nids - 1 - (uint64_t)bt->B * (uint64_t)bt->span;
    uint64_t most = slack < (uint64_t)bt->T - 1 ? slack : (uint64_t)bt->T - 1;
    bt->offset = bt->shuffle ? (int64_t)(rng_next(&r) % (most + 1)) : 0;
  } else if (bt->shuffle) {
    size_t n = d->nseq, *p = bt->perm;
    for (size_t i = 0; i < n; i++)
      p[i] = i;
    for (size_t i = n - 1; i > 0; i--) { /* Fisher-Yates */
      size_t j = (size_t)(rng_next(&r) % (i + 1)), t = p[i];
      p[i] = p[j], p[j] = t;
    }
  }
}

/* bt's fields and buffers for d in [T, B] batches, nbatch and span set. */
static void setup(Batcher *bt, const Dataset *d, int T, int B, int shuffle, uint64_t seed)
{
  bt->d = d;
  bt->T = T, bt->B = B, bt->shuffle = shuffle;
  bt->seed = seed;
  size_t tb = (size_t)T * (size_t)B;
  if (d->kind != DS_STREAM && shuffle)
    bt->perm = xcalloc(d->nseq, sizeof *bt->perm);
  Batch *b = &bt->b;
  b->T = T, b->B = B;
  if (d->kind == DS_IDX) {
    b->x = xcalloc(tb * (size_t)d->feat, sizeof *b->x);
    b->label = xcalloc((size_t)B, sizeof *b->label);
  } else {
    b->tokens = xcalloc(tb, sizeof *b->tokens);
    b->targets = xcalloc(tb, sizeof *b->targets);
    if (d->kind == DS_LINES)
      b->mask = xcalloc(tb, sizeof *b->mask);
    if (d->kind == DS_LINES && d->lab == LAB_CLASS)
      b->label = xcalloc((size_t)B, sizeof *b->label);
  }
  start_epoch(bt, 0);
}

static int bad_size(int T, int B, char *err, size_t errlen)
{
  return errorf(RNNC_EINPUT, err, errlen, "batch size and sequence length must be >= 1, got B = %d, T = %d", B, T);
}

int batcher_init(Batcher *bt, const Dataset *d, int T, int B, int shuffle, uint64_t seed, char *err,
                 size_t errlen)
{
  memset(bt, 0, sizeof *bt);
  if (T < 1 || B < 1)
    return bad_size(T, B, err, errlen);
  if (d->kind == DS_STREAM) {
    int64_t need = (int64_t)B * T + 1;
    if (d->nids < (size_t)need)
      return errorf(RNNC_EINPUT, err, errlen, "%zu tokens, fewer than B*T+1 = %" PRId64, d->nids, need);
    bt->nbatch = (int64_t)((d->nids - 1) / (size_t)B / (size_t)T);
    bt->span = bt->nbatch * T;
  } else if (d->nseq == 0) {
    return errorf(RNNC_EINPUT, err, errlen, "no sequences");
  } else if (d->kind == DS_IDX && T > d->steps) {
    return errorf(RNNC_EINPUT, err, errlen, "the examples have %d steps, fewer than T = %d", d->steps, T);
  } else {
    bt->nbatch = (int64_t)((d->nseq + (size_t)B - 1) / (size_t)B);
  }
  setup(bt, d, T, B, shuffle, seed);
  return RNNC_OK;
}

int stream_tail(const Dataset *d, int T, int B)
{
  if (d->kind != DS_STREAM || T < 1 || B < 1 || d->nids <= (size_t)B)
    return 0;
  return (int)((d->nids - 1) / (size_t)B % (size_t)T);
}

int batcher_whole(Batcher *bt, const Dataset *d, int T, int B, char *err, size_t errlen)
{
  memset(bt, 0, sizeof *bt);
  if (d->kind != DS_STREAM)
    die("batcher_whole: the data set is not a stream");
  if (T < 1 || B < 1)
    return bad_size(T, B, err, errlen);
  if (d->nids < (size_t)B + 1)
    return errorf(RNNC_EINPUT, err, errlen, "%zu tokens, fewer than B+1 = %d", d->nids, B + 1);
  bt->span = (int64_t)((d->nids - 1) / (size_t)B);
  bt->nbatch = (bt->span + T - 1) / T;
  bt->tail = stream_tail(d, T, B);
  setup(bt, d, T, B, 0, 0);
  return RNNC_OK;
}

/* Chunk k of a stream: tokens[t, b] = ids[offset + b*L + k*T + t], for the T
 * steps of a chunk or the tail's. */
static void fill_stream(Batcher *bt, int64_t k)
{
  const Dataset *d = bt->d;
  Batch *b = &bt->b;
  size_t L = (size_t)bt->span;
  b->T = k == bt->nbatch - 1 && bt->tail ? bt->tail : bt->T;
  for (int t = 0; t < b->T; t++)
    for (int r = 0; r < bt->B; r++) {
      size_t i = (size_t)bt->offset + (size_t)r * L + (size_t)k * (size_t)bt->T + (size_t)t;
      b->tokens[t * bt->B + r] = d->ids[i];
      b->targets[t * bt->B + r] = d->ids[i + 1];
    }
  b->ntarget = (int64_t)b->T * bt->B;
  b->reset = k == 0;
}

/* Row r of batch k holds sequence order[k*B + r], or is padding (-1). */
static int64_t row_seq(const Batcher *bt, int64_t k, int r)
{
  size_t i = (size_t)k * (size_t)bt->B + (size_t)r;
  if (i >= bt->d->nseq)
    return -1;
  return (int64_t)(bt->perm ? bt->perm[i] : i);
}

/* Batch k of lines: a sequence of n tokens gives min(n - 1, T) steps
 * (token, next token); the rest of its row is padding. Labelled lines give
 * min(n, T) steps of their own tokens, the targets their tags (LAB_TAG) or
 * -1 and label[r] the line's class (LAB_CLASS; -1 for a padding row). */
static void fill_lines(Batcher *bt, int64_t k)
{
  const Dataset *d = bt->d;
  Batch *b = &bt->b;
  int B = bt->B, lm = d->lab == LAB_NONE;
  b->ntarget = 0;
  for (int r = 0; r < B; r++) {
    int64_t s = row_seq(bt, k, r);
    size_t n = s < 0 ? 0 : d->off[s + 1] - d->off[s], steps = lm && n > 0 ? n - 1 : n;
    if (steps > (size_t)bt->T)
      steps = (size_t)bt->T;
    const int32_t *seq = s < 0 ? NULL : d->ids + d->off[s];
    const int32_t *tag = s < 0 || !d->tag ? NULL : d->tag + d->off[s];
    for (int t = 0; t < bt->T; t++) {
      int real = (size_t)t < steps;
      b->tokens[t * B + r] = real ? seq[t] : 0;
      b->targets[t * B + r] = !real ? -1 : lm ? seq[t + 1] : tag ? tag[t] : -1;
      b->mask[t * B + r] = real ? 1.0f : 0.0f;
    }
    if (d->lab == LAB_CLASS) {
      b->label[r] = s < 0 ? -1 : d->label[s];
      b->ntarget += s >= 0;
    } else {
      b->ntarget += (int64_t)steps;
    }
  }
  b->reset = 1;
}

/* Batch k of IDX examples: x[t, r, :] is row t of the example; padding rows
 * are zeros with label -1. */
static void fill_idx(Batcher *bt, int64_t k)
{
  const Dataset *d = bt->d;
  Batch *b = &bt->b;
  int B = bt->B, F = d->feat;
  b->ntarget = 0;
  for (int r = 0; r < B; r++) {
    int64_t s = row_seq(bt, k, r);
    for (int t = 0; t < bt->T; t++) {
      float *dst = b->x + ((size_t)t * (size_t)B + (size_t)r) * (size_t)F;
      if (s < 0)
        memset(dst, 0, (size_t)F * sizeof *dst);
      else
        memcpy(dst, d->x + ((size_t)s * (size_t)d->steps + (size_t)t) * (size_t)F, (size_t)F * sizeof *dst);
    }
    b->label[r] = s < 0 ? -1 : d->label[s];
    b->ntarget += s >= 0;
  }
  b->reset = 1;
}

const Batch *batcher_next(Batcher *bt)
{
  if (bt->pos >= bt->nbatch)
    start_epoch(bt, bt->epoch + 1);
  int64_t k = bt->pos++;
  switch (bt->d->kind) {
  case DS_STREAM: fill_stream(bt, k); break;
  case DS_LINES: fill_lines(bt, k); break;
  case DS_IDX: fill_idx(bt, k); break;
  default: die("batcher_next: data set kind %d", bt->d->kind);
  }
  return &bt->b;
}

void batcher_tell(const Batcher *bt, char *buf, size_t len)
{
  snprintf(buf, len, "%" PRId64 " %" PRId64, bt->epoch, bt->pos);
}

int batcher_seek(Batcher *bt, const char *pos, char *err, size_t errlen)
{
  long long e, p;
  int used = -1;
  if (sscanf(pos, "%lld %lld%n", &e, &p, &used) != 2 || used < 0 || pos[used] != 0 || e < 0 || p < 0)
    return errorf(RNNC_EFORMAT, err, errlen, "data position '%.40s' is not 'EPOCH POS' (two integers >= 0)", pos);
  if (p > bt->nbatch)
    return errorf(RNNC_EFORMAT, err, errlen, "data position '%.40s' is past the end of an epoch of %" PRId64 " batches",
                pos, bt->nbatch);
  start_epoch(bt, e);
  bt->pos = p;
  return RNNC_OK;
}

void batcher_free(Batcher *bt)
{
  free(bt->perm);
  free(bt->b.tokens);
  free(bt->b.targets);
  free(bt->b.mask);
  free(bt->b.x);
  free(bt->b.label);
  memset(bt, 0, sizeof *bt);
}
