/* wordvec.c — pretrained word vectors into an embedding's rows.
 *
 * Formats, told apart by content (gzip'ed files are read through zlib):
 *   GloVe text     "word x1 .. xE" per line, no header
 *   word2vec text  "N E" on the first line, then N lines as GloVe's
 *   word2vec binary "N E\n", then N times: the word, ' ', E float32 little
 *                  endian, an optional '\n'
 * A first line of exactly two unsigned integers is word2vec's header; the
 * file is binary unless the bytes after the first word, up to the first
 * newline, look like numbers written as text.
 *
 * require: a vocabulary and an embedding weight [V, E] with V = v->n.
 * produce: the rows of words that have a vector, the count of those that
 * do not. Nothing changes on an error: rows are staged and copied at the end.
 * Messages: "<path>:<line>: ..." for text, "<path>: ... vector k of N" for
 * binary, every one a single line. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "ir.h"

enum { WORD_MAX = 4096 }; /* a binary word longer than this is a broken file */

static int fail(int status, char *err, size_t errlen, const char *fmt, ...)
{
  if (!err || errlen == 0)
    return status;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  for (char *p = err; *p; p++)
    if ((unsigned char)*p < 0x20 || *p == 0x7f)
      *p = '?';
  return status;
}

/* A word or token for a message: cut to 40 bytes. */
typedef struct { char s[48]; } Quoted;
static Quoted quote(const char *w, size_t n)
{
  Quoted q;
  if (n <= 40)
    snprintf(q.s, sizeof q.s, "%.*s", (int)n, w);
  else
    snprintf(q.s, sizeof q.s, "%.37s...", w);
  return q;
}

/* ---- a buffered reader over zlib (plain files pass through) ---- */

typedef struct Rd {
  gzFile gz;
  unsigned char *buf; /* bytes [pos, end) not yet consumed; one spare byte */
  size_t cap, pos, end;
  int eof, error; /* error: see read_error */
} Rd;

/* Make at least n bytes available unless the file ends first; the count
 * available. An I/O or zlib error sets r->error. */
static size_t rd_need(Rd *r, size_t n)
{
  if (r->end - r->pos >= n || r->eof || r->error)
    return r->end - r->pos;
  if (r->pos) {
    memmove(r->buf, r->buf + r->pos, r->end - r->pos);
    r->end -= r->pos;
    r->pos = 0;
  }
  if (n + 1 > r->cap) {
    size_t cap = r->cap ? r->cap : 65536;
    while (cap < n + 1)
      cap *= 2;
    unsigned char *b = realloc(r->buf, cap);
    if (!b) {
      r->error = ENOMEM;
      return r->end - r->pos;
    }
    r->buf = b;
    r->cap = cap;
  }
  while (r->end < n) {
    size_t want = r->cap - 1 - r->end;
    if (want > (1u << 30))
      want = 1u << 30;
    int k = gzread(r->gz, r->buf + r->end, (unsigned)want);
    if (k < 0) {
      r->error = EIO;
      break;
    }
    if (k == 0) {
      int zerr;
      gzerror(r->gz, &zerr);
      if (zerr == Z_BUF_ERROR) /* the file ends inside a gzip stream */
        r->error = EPIPE;
      r->eof = 1;
      break;
    }
    r->end += (size_t)k;
  }
  return r->end - r->pos;
}

/* The next line, without its '\n' (and a '\r' before it), NUL-terminated in
 * place; NULL at the end of the file or on an error. Valid until the next
 * read. */
static char *rd_line(Rd *r, size_t *len)
{
  size_t scanned = 0;
  for (;;) {
    unsigned char *p = r->buf ? memchr(r->buf + r->pos + scanned, '\n', r->end - r->pos - scanned) : NULL;
    if (p || r->eof || r->error) {
      if (!p && (r->error || r->end == r->pos))
        return NULL;
      char *s = (char *)r->buf + r->pos;
      size_t n = p ? (size_t)(p - (r->buf + r->pos)) : r->end - r->pos;
      r->pos += p ? n + 1 : n;
      if (n && s[n - 1] == '\r')
        n--;
      s[n] = '\0'; /* over the '\n', or the spare byte */
      *len = n;
      return s;
    }
    scanned = r->end - r->pos;
    rd_need(r, scanned + 65536);
  }
}

/* ---- parsing ---- */

static int is_blank(char c) { return c == ' ' || c == '\t'; }

/* Split s in place at blanks into at most max tokens; the count of tokens
 * (which may exceed max: the rest are counted, not stored). */
static int64_t tokens(char *s, char **tok, int64_t max)
{
  int64_t n = 0;
  while (*s) {
    while (is_blank(*s))
      s++;
    if (!*s)
      break;
    if (n < max)
      tok[n] = s;
    n++;
    while (*s && !is_blank(*s))
      s++;
    if (*s)
      *s++ = '\0';
  }
  return n;
}

/* An unsigned decimal integer token, at most lim; -1 if it is not one. */
static int64_t uint_token(const char *s, int64_t lim)
{
  if (!*s)
    return -1;
  int64_t v = 0;
  for (; *s; s++) {
    if (*s < '0' || *s > '9')
      return -1;
    v = v * 10 + (*s - '0');
    if (v > lim)
      return -1;
  }
  return v;
}

/* May this byte appear in numbers written as text? */
static int numeric_byte(unsigned char c)
{
  return (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '+' || c == 'e' || c == 'E' ||
         is_blank((char)c) || c == '\r' || (c && strchr("infatyINFATY", c) != NULL);
}

/* After a word2vec header: do the next bytes look like a text vector? The
 * part after the first word up to the newline must be numeric bytes with a
 * digit (and a blank when E > 1): float32 bytes almost never are. */
static int looks_like_text(Rd *r, int64_t E)
{
  size_t window = (size_t)E * 32 + WORD_MAX;
  size_t n = rd_need(r, window);
  if (!r->buf)
    return 1; /* out of memory: the caller reports r->error */
  const unsigned char *p = r->buf + r->pos, *end = p + n;
  while (p < end && (*p == '\n' || *p == '\r'))
    p++;
  while (p < end && *p != ' ' && *p != '\t' && *p != '\n')
    p++; /* the word */
  if (p == end) /* a word the file ends in (text's parser says so), or too long for text */
    return n < window;
  if (*p == '\n')
    return 1; /* a line with no values: let the text parser say so */
  int digit = 0, blank = 0;
  for (p++; p < end && *p != '\n'; p++) {
    if (!numeric_byte(*p))
      return 0;
    digit |= *p >= '0' && *p <= '9';
    blank |= is_blank((char)*p);
  }
  return digit && (blank || E == 1);
}

typedef struct Load {
  const char *path;
  const Vocab *v;
  int64_t V, E;
  float *stage;   /* [V, E]: the rows read */
  uint8_t *have;  /* [V]: row filled */
  char **tok;     /* [E + 1] token pointers */
} Load;

/* The word of w[0 .. n) has vector x[E]: stage it if it is in the
 * vocabulary and not seen before (the first vector of a word wins). */
static void take(Load *L, const char *w, size_t n, const float *x)
{
  if (n > (size_t)INT32_MAX)
    return;
  int id = vocab_lookup(L->v, w, (int)n);
  if (id < 0 || id >= L->V || L->have[id])
    return;
  memcpy(L->stage + (int64_t)id * L->E, x, (size_t)L->E * sizeof(float));
  L->have[id] = 1;
}

/* One text line "word x1 .. xE" (already split: nt tokens in L->tok). */
static int text_vector(Load *L, int64_t line, int64_t nt, float *x, char *err, size_t errlen)
{
  const char *w = L->tok[0];
  if (nt - 1 != L->E) {
    Quoted qw = quote(w, strlen(w));
    return fail(RNNC_EFORMAT, err, errlen, "%s:%lld: '%s' has %lld values, expected %lld", L->path,
                (long long)line, qw.s, (long long)(nt - 1), (long long)L->E);
  }
  for (int64_t i = 0; i < L->E; i++) {
    const char *s = L->tok[i + 1];
    char *end;
    float f = strtof(s, &end);
    if (end == s || *end || !isfinite(f)) {
      Quoted qw = quote(w, strlen(w)), qs = quote(s, strlen(s));
      return fail(RNNC_EFORMAT, err, errlen, "%s:%lld: '%s': value %lld '%s' is not %s", L->path,
                  (long long)line, qw.s, (long long)(i + 1), qs.s,
                  end == s || *end ? "a number" : "finite");
    }
    x[i] = f;
  }
  take(L, w, strlen(w), x);
  return RNNC_OK;
}

static int dims_check(Load *L, int64_t line, int64_t E, char *err, size_t errlen)
{
  if (E != L->E)
    return fail(RNNC_ESHAPE, err, errlen, "%s:%lld: vectors have %lld dims, the embedding %lld",
                L->path, (long long)line, (long long)E, (long long)L->E);
  return RNNC_OK;
}

/* r->error: ENOMEM, EPIPE (a gzip stream cut short) or EIO (zlib's error). */
static int read_error(Rd *r, const char *path, char *err, size_t errlen)
{
  if (r->error == ENOMEM)
    return fail(RNNC_ENOMEM, err, errlen, "%s: out of memory", path);
  if (r->error == EPIPE)
    return fail(RNNC_EFORMAT, err, errlen, "%s: the gzip data is truncated", path);
  int zerr;
  const char *m = gzerror(r->gz, &zerr);
  if (zerr == Z_ERRNO)
    return fail(RNNC_EIO, err, errlen, "%s: read error: %s", path, strerror(errno));
  size_t n = strlen(path); /* zlib's message starts "<path>: " */
  if (strncmp(m, path, n) == 0 && m[n] == ':' && m[n + 1] == ' ')
    m += n + 2;
  return fail(RNNC_EFORMAT, err, errlen, "%s: corrupt gzip data: %s", path, m);
}

/* GloVe or word2vec text after the first line, number line: a vector
 * (already split into nt tokens) when nheader < 0, else word2vec's header of
 * nheader vectors. */
static int load_text(Load *L, Rd *r, int64_t line, int64_t nt, int64_t nheader, float *x, char *err,
                     size_t errlen)
{
  int64_t nvec = 0;
  if (nheader < 0) { /* GloVe: the first line is a vector and fixes E */
    if (nt < 2)
      return fail(RNNC_EFORMAT, err, errlen,
                  "%s:%lld: expected a word and its vector, or word2vec's header 'N E'", L->path,
                  (long long)line);
    int st = dims_check(L, line, nt - 1, err, errlen);
    if (st == RNNC_OK)
      st = text_vector(L, line, nt, x, err, errlen);
    if (st != RNNC_OK)
      return st;
    nvec = 1;
  }
  size_t len;
  char *s;
  while ((s = rd_line(r, &len))) {
    line++;
    int64_t n = tokens(s, L->tok, L->E + 1);
    if (n == 0)
      continue; /* blank line */
    if (nheader >= 0 && nvec == nheader)
      return fail(RNNC_EFORMAT, err, errlen, "%s:%lld: more vectors than the header's %lld",
                  L->path, (long long)line, (long long)nheader);
    int st = text_vector(L, line, n, x, err, errlen);
    if (st != RNNC_OK)
      return st;
    nvec++;
  }
  if (r->error)
    return read_error(r, L->path, err, errlen);
  if (nheader >= 0 && nvec < nheader)
    return fail(RNNC_EFORMAT, err, errlen, "%s: truncated after %lld of the header's %lld vectors",
                L->path, (long long)nvec, (long long)nheader);
  return RNNC_OK;
}

static int host_is_le(void)
{
  const uint16_t one = 1;
  unsigned char b;
  memcpy(&b, &one, 1);
  return b == 1;
}

/* word2vec binary after its header. */
static int load_binary(Load *L, Rd *r, int64_t N, float *x, char *err, size_t errlen)
{
  size_t vb = (size_t)L->E * 4;
  for (int64_t k = 0; k < N; k++) {
    /* skip the newline that ends the previous vector (or the header) */
    while (rd_need(r, 1) && (r->buf[r->pos] == '\n' || r->buf[r->pos] == '\r'))
      r->pos++;
    if (r->error)
      return read_error(r, L->path, err, errlen);
    if (r->end == r->pos)
      return fail(RNNC_EFORMAT, err, errlen, "%s: truncated after %lld of the header's %lld vectors",
                  L->path, (long long)k, (long long)N);
    size_t n = rd_need(r, WORD_MAX + 1 + vb);
    if (r->error)
      return read_error(r, L->path, err, errlen);
    const char *w = (const char *)r->buf + r->pos;
    const char *sp = memchr(w, ' ', n < WORD_MAX + 1 ? n : WORD_MAX + 1);
    if (!sp) {
      if (n <= WORD_MAX)
        return fail(RNNC_EFORMAT, err, errlen,
                    "%s: truncated in vector %lld of %lld: the file ends inside its word", L->path,
                    (long long)(k + 1), (long long)N);
      return fail(RNNC_EFORMAT, err, errlen,
                  "%s: vector %lld of %lld: no space within %d bytes after the word's start",
                  L->path, (long long)(k + 1), (long long)N, WORD_MAX);
    }
    size_t wl = (size_t)(sp - w);
    Quoted qw = quote(w, wl);
    size_t have = n - wl - 1;
    if (have < vb)
      return fail(RNNC_EFORMAT, err, errlen,
                  "%s: truncated in vector %lld of %lld ('%s'): %zu of its %zu bytes", L->path,
                  (long long)(k + 1), (long long)N, qw.s, have, vb);
    const unsigned char *p = (const unsigned char *)sp + 1;
    for (int64_t i = 0; i < L->E; i++) {
      unsigned char b[4];
      memcpy(b, p + 4 * i, 4);
      if (!host_is_le()) {
        unsigned char t = b[0];
        b[0] = b[3], b[3] = t, t = b[1], b[1] = b[2], b[2] = t;
      }
      memcpy(&x[i], b, 4);
      if (!isfinite(x[i]))
        return fail(RNNC_EFORMAT, err, errlen, "%s: vector %lld of %lld ('%s'): value %lld is not finite",
                    L->path, (long long)(k + 1), (long long)N, qw.s, (long long)(i + 1));
    }
    take(L, w, wl, x);
    r->pos += wl + 1 + vb;
  }
  /* only whitespace may follow */
  while (rd_need(r, 1)) {
    unsigned char c = r->buf[r->pos];
    if (c != '\n' && c != '\r' && c != ' ' && c != '\t')
      return fail(RNNC_EFORMAT, err, errlen, "%s: data after the header's %lld vectors", L->path,
                  (long long)N);
    r->pos++;
  }
  if (r->error)
    return read_error(r, L->path, err, errlen);
  return RNNC_OK;
}

/* Detect the format from the first line that is not blank, and load. */
static int load(Load *L, Rd *r, float *x, char *err, size_t errlen)
{
  size_t len;
  char *s;
  int64_t line = 0, nt = 0;
  while (nt == 0) {
    if (!(s = rd_line(r, &len))) {
      if (r->error)
        return read_error(r, L->path, err, errlen);
      return fail(RNNC_EFORMAT, err, errlen, "%s: the file is empty", L->path);
    }
    line++;
    /* either a header (2 tokens) or a vector (E + 1 tokens): room for both */
    nt = tokens(s, L->tok, L->E + 1);
  }
  if (nt == 2) {
    int64_t N = uint_token(L->tok[0], INT64_C(1) << 40), Ef = uint_token(L->tok[1], 1 << 24);
    if (N >= 0 && Ef >= 0) {
      if (Ef == 0)
        return fail(RNNC_EFORMAT, err, errlen, "%s:%lld: word2vec header says 0 dims", L->path,
                    (long long)line);
      int st = dims_check(L, line, Ef, err, errlen);
      if (st != RNNC_OK)
        return st;
      if (looks_like_text(r, Ef))
        return load_text(L, r, line, 0, N, x, err, errlen);
      if (r->error)
        return read_error(r, L->path, err, errlen);
      return load_binary(L, r, N, x, err, errlen);
    }
  }
  return load_text(L, r, line, nt, -1, x, err, errlen);
}

int wordvec_load(const char *path, const Vocab *v, float *weight, int64_t V, int64_t E, int64_t *missing,
                 char *err, size_t errlen)
{
  if (V != v->n)
    return fail(RNNC_ESHAPE, err, errlen, "%s: the embedding has %lld rows, the vocabulary %d words",
                path, (long long)V, v->n);
  if (E < 1 || E > (1 << 24))
    return fail(RNNC_ESHAPE, err, errlen, "%s: the embedding has %lld dims", path, (long long)E);
  struct stat sb;
  if (stat(path, &sb) != 0)
    return fail(RNNC_EIO, err, errlen, "%s: cannot open: %s", path, strerror(errno));
  if (S_ISDIR(sb.st_mode))
    return fail(RNNC_EIO, err, errlen, "%s: is a directory", path);
  Load L = {path, v, V, E, NULL, NULL, NULL};
  Rd r = {0};
  float *x = NULL;
  int st;
  L.stage = malloc((size_t)(V ? V : 1) * (size_t)E * sizeof(float));
  L.have = calloc((size_t)(V ? V : 1), 1);
  L.tok = malloc((size_t)(E + 1) * sizeof *L.tok);
  x = malloc((size_t)E * sizeof *x);
  if (!L.stage || !L.have || !L.tok || !x) {
    st = fail(RNNC_ENOMEM, err, errlen, "%s: out of memory for %lld x %lld floats", path,
              (long long)V, (long long)E);
    goto out;
  }
  r.gz = gzopen(path, "rb");
  if (!r.gz) {
    st = fail(RNNC_EIO, err, errlen, "%s: cannot open: %s", path,
              errno ? strerror(errno) : "out of memory");
    goto out;
  }
  st = load(&L, &r, x, err, errlen);
  if (st == RNNC_OK) {
    int64_t miss = 0;
    for (int64_t i = 0; i < V; i++) {
      if (L.have[i])
        memcpy(weight + i * E, L.stage + i * E, (size_t)E * sizeof(float));
      else
        miss++;
    }
    if (missing)
      *missing = miss;
  }
out:
  if (r.gz)
    gzclose(r.gz);
  free(r.buf);
  free(L.stage);
  free(L.have);
  free(L.tok);
  free(x);
  return st;
}
