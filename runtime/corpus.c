/* corpus.c — data sets in memory: reading files (plain or gzip), text to
 * token streams or per-line sequences, and the train/validation split.
 *
 * require: a vocabulary (vocab.c) for text. produce: a Dataset (owned; free
 * with dataset_free). Every message names the file it is about. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "ir.h"

static void *xmalloc(size_t n)
{
  void *p = malloc(n ? n : 1);
  if (!p)
    die("out of memory (needed %zu bytes)", n);
  return p;
}

void dataset_free(Dataset *d)
{
  free(d->ids);
  free(d->off);
  free(d->x);
  free(d->label);
  free(d->tag);
  memset(d, 0, sizeof *d);
}

/* zlib's message for g without its "<fd:3>: " prefix. */
static const char *gz_message(gzFile g, int *zerr)
{
  const char *msg = gzerror(g, zerr), *colon = strstr(msg, ": ");
  return strncmp(msg, "<fd:", 4) == 0 && colon ? colon + 2 : msg;
}

/* Read through zlib, which passes a file that is not gzip through unchanged
 * (and decompresses one that is, by its magic 1f 8b, members concatenated). */
int data_read_file(const char *path, char **text, size_t *len, char *err, size_t errlen)
{
  *text = NULL;
  *len = 0;
  int fd = open(path, O_RDONLY);
  if (fd < 0)
    return errorf(RNNC_EIO, err, errlen, "cannot open '%s': %s", path, strerror(errno));
  struct stat sb;
  int e = fstat(fd, &sb) != 0 ? errno : S_ISDIR(sb.st_mode) ? EISDIR : 0;
  if (e) {
    close(fd);
    return errorf(RNNC_EIO, err, errlen, "cannot read '%s': %s", path, strerror(e));
  }
  gzFile g = gzdopen(fd, "rb");
  if (!g) {
    close(fd);
    return errorf(RNNC_ENOMEM, err, errlen, "cannot read '%s': out of memory", path);
  }
  gzbuffer(g, 1 << 17);
  size_t cap = sb.st_size > 0 ? (size_t)sb.st_size + 1 : 4096, n = 0;
  char *buf = malloc(cap);
  int st = RNNC_OK;
  for (;;) {
    if (!buf) {
      st = errorf(RNNC_ENOMEM, err, errlen, "cannot read '%s': out of memory (%zu bytes)", path, cap);
      break;
    }
    if (cap - n < 2) {
      char *nb = realloc(buf, cap * 2);
      if (!nb)
        free(buf);
      buf = nb;
      cap *= 2;
      continue;
    }
    size_t want = cap - n - 1 < INT_MAX ? cap - n - 1 : INT_MAX;
    int got = gzread(g, buf + n, (unsigned)want);
    if (got < 0) {
      int zerr;
      const char *msg = gz_message(g, &zerr);
      st = zerr == Z_ERRNO ? errorf(RNNC_EIO, err, errlen, "cannot read '%s': %s", path, strerror(errno))
                           : errorf(RNNC_EFORMAT, err, errlen, "'%s': bad gzip data: %s", path, msg);
      break;
    }
    if (got == 0)
      break;
    n += (size_t)got;
  }
  int zerr;
  const char *msg = gz_message(g, &zerr);
  if (st == RNNC_OK && zerr == Z_BUF_ERROR) /* gzread ends a truncated file quietly */
    st = errorf(RNNC_EFORMAT, err, errlen, "'%s': bad gzip data: %s", path, msg);
  gzclose(g);
  if (st == RNNC_OK && n == 0)
    st = errorf(RNNC_EINPUT, err, errlen, "'%s' is empty", path);
  if (st) {
    free(buf);
    return st;
  }
  buf[n] = 0;
  *text = buf;
  *len = n;
  return RNNC_OK;
}

/* One sequence per non-empty line ('\n'-separated; a '\r' before it is
 * dropped too). The whole text is encoded first so that an error names its
 * byte offset in the file; lines that encode to nothing are skipped. */
static int text_lines(Dataset *d, const Vocab *v, const char *name, const char *text, size_t len, char *err,
                      size_t errlen)
{
  int32_t *all;
  size_t nall, nline = 0;
  int st = vocab_encode(v, name, text, len, &all, &nall, NULL, err, errlen);
  if (st)
    return st;
  free(all);
  for (size_t i = 0; i < len; i++)
    nline += text[i] == '\n';
  d->ids = xmalloc(nall * sizeof *d->ids); /* lines hold no more ids than the text */
  d->off = xmalloc((nline + 2) * sizeof *d->off);
  d->off[0] = 0;
  size_t nids = 0;
  for (size_t a = 0; a < len;) {
    const char *nl = memchr(text + a, '\n', len - a);
    size_t b = nl ? (size_t)(nl - text) : len, e = b;
    if (e > a && text[e - 1] == '\r')
      e--;
    int32_t *ids;
    size_t n;
    if (vocab_encode(v, name, text + a, e - a, &ids, &n, NULL, err, errlen))
      die("text_lines: a line failed to encode after the text did");
    if (n > 0) {
      memcpy(d->ids + nids, ids, n * sizeof *ids);
      nids += n;
      d->off[++d->nseq] = nids;
    }
    free(ids);
    a = b + 1;
  }
  d->nids = nids;
  if (d->nseq == 0)
    return errorf(RNNC_EINPUT, err, errlen, "%s: no line has a token", name);
  return RNNC_OK;
}

int dataset_text(Dataset *d, int kind, const Vocab *v, const char *name, const char *text, size_t len,
                 char *err, size_t errlen)
{
  memset(d, 0, sizeof *d);
  d->kind = kind;
  int st;
  if (kind == DS_STREAM) {
    st = vocab_encode(v, name, text, len, &d->ids, &d->nids, NULL, err, errlen);
    if (!st && d->nids == 0)
      st = errorf(RNNC_EINPUT, err, errlen, "%s: no tokens", name);
  } else if (kind == DS_LINES) {
    st = text_lines(d, v, name, text, len, err, errlen);
  } else {
    die("dataset_text: kind %d", kind);
  }
  if (st)
    dataset_free(d);
  return st;
}

/* Copy the sequences or examples listed in pick[n] (in that order) of a into out. */
static void pick_rows(const Dataset *a, const size_t *pick, size_t n, Dataset *out)
{
  out->kind = a->kind;
  out->nseq = n;
  if (a->kind == DS_IDX) {
    size_t row = (size_t)a->steps * (size_t)a->feat;
    out->steps = a->steps, out->feat = a->feat, out->nclass = a->nclass;
    out->x = xmalloc(n * row * sizeof *out->x);
    out->label = xmalloc(n * sizeof *out->label);
    for (size_t i = 0; i < n; i++) {
      memcpy(out->x + i * row, a->x + pick[i] * row, row * sizeof *out->x);
      out->label[i] = a->label[pick[i]];
    }
    return;
  }
  size_t total = 0;
  for (size_t i = 0; i < n; i++)
    total += a->off[pick[i] + 1] - a->off[pick[i]];
  out->lab = a->lab, out->nclass = a->nclass;
  out->ids = xmalloc(total * sizeof *out->ids);
  out->off = xmalloc((n + 1) * sizeof *out->off);
  if (a->label)
    out->label = xmalloc(n * sizeof *out->label);
  if (a->tag)
    out->tag = xmalloc(total * sizeof *out->tag);
  out->off[0] = 0;
  for (size_t i = 0; i < n; i++) {
    size_t s = a->off[pick[i]], m = a->off[pick[i] + 1] - s;
    memcpy(out->ids + out->off[i], a->ids + s, m * sizeof *out->ids);
    if (a->tag)
      memcpy(out->tag + out->off[i], a->tag + s, m * sizeof *out->tag);
    if (a->label)
      out->label[i] = a->label[pick[i]];
    out->off[i + 1] = out->off[i] + m;
  }
  out->nids = total;
}

static int cmp_size(const void *a, const void *b)
{
  size_t x = *(const size_t *)a, y = *(const size_t *)b;
  return (x > y) - (x < y);
}

/* Streams: the last round(frac * nids) tokens are valid (each part needs 2
 * tokens: one input and its target). Sequences and examples: after a shuffle
 * seeded by seed, the last round(frac * nseq) are valid; each part keeps the
 * file order of its members. */
int dataset_split(Dataset *all, double frac, uint64_t seed, Dataset *train, Dataset *valid, char *err,
                  size_t errlen)
{
  memset(train, 0, sizeof *train);
  memset(valid, 0, sizeof *valid);
  if (!(frac > 0 && frac < 1))
    return errorf(RNNC_EINPUT, err, errlen, "the validation fraction must be between 0 and 1, got %g", frac);
  int stream = all->kind == DS_STREAM;
  size_t n = stream ? all->nids : all->nseq, least = stream ? 2 : 1;
  size_t nv = (size_t)llround(frac * (double)n), nt = n - nv;
  const char *what = stream ? "tokens" : all->kind == DS_LINES ? "sequences" : "examples";
  if (nv < least || nt < least)
    return errorf(RNNC_EINPUT, err, errlen,
                "cannot split %zu %s with validation fraction %g: %zu for training, %zu for validation "
                "(each needs at least %zu)",
                n, what, frac, nt, nv, least);
  if (stream) {
    train->kind = valid->kind = DS_STREAM;
    train->nids = nt, valid->nids = nv;
    train->ids = xmalloc(nt * sizeof *train->ids);
    valid->ids = xmalloc(nv * sizeof *valid->ids);
    memcpy(train->ids, all->ids, nt * sizeof *train->ids);
    memcpy(valid->ids, all->ids + nt, nv * sizeof *valid->ids);
    return RNNC_OK;
  }
  size_t *perm = xmalloc(n * sizeof *perm);
  for (size_t i = 0; i < n; i++)
    perm[i] = i;
  Rng r;
  rng_seed(&r, seed ^ 0x5851f42d4c957f2du); /* a stream apart from the batcher's */
  for (size_t i = n - 1; i > 0; i--) {
    size_t j = (size_t)(rng_next(&r) % (i + 1));
    size_t t = perm[i];
    perm[i] = perm[j], perm[j] = t;
  }
  qsort(perm, nt, sizeof *perm, cmp_size);
  qsort(perm + nt, nv, sizeof *perm, cmp_size);
  pick_rows(all, perm, nt, train);
  pick_rows(all, perm + nt, nv, valid);
  free(perm);
  return RNNC_OK;
}
