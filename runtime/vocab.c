/* vocab.c — vocabularies: byte, character (UTF-8 code points) and word level,
 * with a hash table from token bytes to ids, and their JSON form.
 *
 * require: nothing. produce: a Vocab built from training text or from JSON;
 * text <-> ids. Byte offsets in messages are 0-based. */
#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

static void *xmalloc(size_t n)
{
  void *p = malloc(n ? n : 1);
  if (!p)
    die("out of memory (needed %zu bytes)", n);
  return p;
}

static void *xrealloc(void *p, size_t n)
{
  p = realloc(p, n ? n : 1);
  if (!p)
    die("out of memory (needed %zu bytes)", n);
  return p;
}

/* ---- a hash table of byte strings: open addressing, FNV-1a ---- */

/* Slots hold entry numbers (-1: empty); entry e's key is key[e], klen[e]
 * (owned by the caller, so the vocabulary's tok/len arrays serve as keys). */
typedef struct Table {
  int32_t *slot;
  size_t mask; /* capacity - 1, a power of two minus one */
} Table;

static uint64_t fnv1a(const char *s, int n)
{
  uint64_t h = 0xcbf29ce484222325u;
  for (int i = 0; i < n; i++)
    h = (h ^ (unsigned char)s[i]) * 0x100000001b3u;
  return h;
}

/* The slot holding key s, or the empty slot where it would go. */
static size_t table_find(const Table *t, char *const *key, const int *klen, const char *s, int n)
{
  size_t i = (size_t)fnv1a(s, n) & t->mask;
  for (;; i = (i + 1) & t->mask) {
    int32_t e = t->slot[i];
    if (e < 0 || (klen[e] == n && memcmp(key[e], s, (size_t)n) == 0))
      return i;
  }
}

/* A table with room for n entries at load <= 1/2, filled with entries 0..n-1. */
static void table_build(Table *t, char *const *key, const int *klen, int n, size_t room)
{
  size_t cap = 16;
  while (cap < 2 * room)
    cap *= 2;
  t->slot = xmalloc(cap * sizeof *t->slot);
  t->mask = cap - 1;
  memset(t->slot, 0xff, cap * sizeof *t->slot);
  for (int e = 0; e < n; e++)
    t->slot[table_find(t, key, klen, key[e], klen[e])] = e;
}

/* ---- UTF-8 ---- */

/* Decode the sequence at s[i] (i < n): its length, *cp its code point; 0 on
 * invalid UTF-8 with *why the reason (strict: no overlong forms, surrogates
 * or code points above U+10FFFF). */
static int utf8_decode(const unsigned char *s, size_t n, size_t i, uint32_t *cp, char *why, size_t whylen)
{
  unsigned c = s[i];
  int len;
  uint32_t v;
  if (c < 0x80) {
    *cp = c;
    return 1;
  } else if (c < 0xc0) {
    snprintf(why, whylen, "unexpected continuation byte 0x%02x", c);
    return 0;
  } else if (c < 0xe0) {
    len = 2, v = c & 0x1f;
  } else if (c < 0xf0) {
    len = 3, v = c & 0x0f;
  } else if (c < 0xf8) {
    len = 4, v = c & 0x07;
  } else {
    snprintf(why, whylen, "invalid byte 0x%02x", c);
    return 0;
  }
  for (int k = 1; k < len; k++) {
    if (i + (size_t)k >= n || (s[i + k] & 0xc0) != 0x80) {
      snprintf(why, whylen, "truncated %d-byte sequence", len);
      return 0;
    }
    v = v << 6 | (s[i + k] & 0x3f);
  }
  static const uint32_t least[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (v < least[len])
    snprintf(why, whylen, "overlong encoding of U+%04X", (unsigned)v);
  else if (v >= 0xd800 && v <= 0xdfff)
    snprintf(why, whylen, "surrogate U+%04X", (unsigned)v);
  else if (v > 0x10ffff)
    snprintf(why, whylen, "code point above U+10FFFF");
  else {
    *cp = v;
    return len;
  }
  return 0;
}

/* The first invalid sequence of text: RNNC_EINPUT with file and offset. */
static int utf8_check(const char *name, const char *text, size_t len, char *err, size_t errlen)
{
  const unsigned char *s = (const unsigned char *)text;
  char why[64];
  uint32_t cp;
  for (size_t i = 0; i < len;) {
    int k = utf8_decode(s, len, i, &cp, why, sizeof why);
    if (!k)
      return errorf(RNNC_EINPUT, err, errlen, "%s: invalid UTF-8 at byte %zu (%s)", name, i, why);
    i += (size_t)k;
  }
  return RNNC_OK;
}

static int utf8_encode(uint32_t cp, char *out)
{
  if (cp < 0x80) {
    out[0] = (char)cp;
    return 1;
  } else if (cp < 0x800) {
    out[0] = (char)(0xc0 | cp >> 6);
    out[1] = (char)(0x80 | (cp & 0x3f));
    return 2;
  } else if (cp < 0x10000) {
    out[0] = (char)(0xe0 | cp >> 12);
    out[1] = (char)(0x80 | (cp >> 6 & 0x3f));
    out[2] = (char)(0x80 | (cp & 0x3f));
    return 3;
  }
  out[0] = (char)(0xf0 | cp >> 18);
  out[1] = (char)(0x80 | (cp >> 12 & 0x3f));
  out[2] = (char)(0x80 | (cp >> 6 & 0x3f));
  out[3] = (char)(0x80 | (cp & 0x3f));
  return 4;
}

/* ---- building ---- */

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

/* The next whitespace-separated word at or after *i: its start and length
 * (0 at the end of the text). */
static int next_word(const char *text, size_t len, size_t *i, size_t *start)
{
  while (*i < len && is_space(text[*i]))
    (*i)++;
  *start = *i;
  while (*i < len && !is_space(text[*i]))
    (*i)++;
  return (int)(*i - *start);
}

/* Append token (s, n) as the next id of v (tok NUL-terminated). */
static void vocab_add(Vocab *v, int *cap, const char *s, int n)
{
  if (v->n == *cap) {
    *cap = *cap ? 2 * *cap : 64;
    v->tok = xrealloc(v->tok, (size_t)*cap * sizeof *v->tok);
    v->len = xrealloc(v->len, (size_t)*cap * sizeof *v->len);
  }
  char *t = xmalloc((size_t)n + 1);
  memcpy(t, s, (size_t)n);
  t[n] = 0;
  v->tok[v->n] = t;
  v->len[v->n++] = n;
}

/* Index the tokens (byte level needs none: the id is the byte). */
static void vocab_index(Vocab *v)
{
  if (v->kind == VOCAB_BYTE)
    return;
  Table *t = xmalloc(sizeof *t);
  table_build(t, v->tok, v->len, v->n, (size_t)v->n);
  v->index = t;
}

static void build_bytes(Vocab *v)
{
  int cap = 0;
  for (int b = 0; b < 256; b++) {
    char c = (char)b;
    vocab_add(v, &cap, &c, 1);
  }
}

static int build_chars(Vocab *v, const char *name, const char *text, size_t len, char *err, size_t errlen)
{
  int st = utf8_check(name, text, len, err, errlen);
  if (st)
    return st;
  unsigned char *seen = calloc(0x110000 / 8, 1); /* a bit per code point */
  if (!seen)
    die("out of memory");
  uint32_t cp;
  char why[64];
  for (size_t i = 0; i < len;) {
    i += (size_t)utf8_decode((const unsigned char *)text, len, i, &cp, why, sizeof why);
    seen[cp >> 3] |= (unsigned char)(1u << (cp & 7));
  }
  int cap = 0;
  for (uint32_t c = 0; c < 0x110000; c++)
    if (seen[c >> 3] >> (c & 7) & 1) {
      char buf[4];
      vocab_add(v, &cap, buf, utf8_encode(c, buf));
    }
  free(seen);
  return RNNC_OK;
}

/* Word counts during a build: distinct words (pointing into the text). */
typedef struct Counts {
  char **w;
  int *wlen;
  long *count;
  int n, cap;
  Table t;
} Counts;

static void count_word(Counts *c, const char *s, int n)
{
  size_t i = table_find(&c->t, c->w, c->wlen, s, n);
  if (c->t.slot[i] >= 0) {
    c->count[c->t.slot[i]]++;
    return;
  }
  if (c->n == c->cap) {
    c->cap = c->cap ? 2 * c->cap : 1024;
    c->w = xrealloc(c->w, (size_t)c->cap * sizeof *c->w);
    c->wlen = xrealloc(c->wlen, (size_t)c->cap * sizeof *c->wlen);
    c->count = xrealloc(c->count, (size_t)c->cap * sizeof *c->count);
  }
  c->w[c->n] = (char *)s;
  c->wlen[c->n] = n;
  c->count[c->n] = 1;
  c->t.slot[i] = c->n++;
  if ((size_t)c->n * 2 > c->t.mask + 1) {
    free(c->t.slot);
    table_build(&c->t, c->w, c->wlen, c->n, (size_t)c->n * 2);
  }
}

typedef struct Word {
  long count;
  const char *w;
  int len;
} Word;

/* Descending count, then bytewise (a prefix first). */
static int by_count(const void *pa, const void *pb)
{
  const Word *a = pa, *b = pb;
  if (a->count != b->count)
    return a->count > b->count ? -1 : 1;
  int r = memcmp(a->w, b->w, (size_t)(a->len < b->len ? a->len : b->len));
  return r ? r : (a->len > b->len) - (a->len < b->len);
}

static int build_words(Vocab *v, const char *name, const char *text, size_t len, int mincount, char *err,
                       size_t errlen)
{
  int st = utf8_check(name, text, len, err, errlen);
  if (st)
    return st;
  Counts c = {0};
  table_build(&c.t, c.w, c.wlen, 0, 1024);
  size_t i = 0, start;
  int n;
  while ((n = next_word(text, len, &i, &start)) > 0)
    count_word(&c, text + start, n);
  Word *ord = xmalloc((size_t)c.n * sizeof *ord);
  int nkeep = 0;
  for (int e = 0; e < c.n; e++)
    if (c.count[e] >= mincount && !(c.wlen[e] == 5 && memcmp(c.w[e], "<unk>", 5) == 0))
      ord[nkeep++] = (Word){c.count[e], c.w[e], c.wlen[e]};
  qsort(ord, (size_t)nkeep, sizeof *ord, by_count);
  if (nkeep == 0)
    st = errorf(RNNC_EINPUT, err, errlen, "%s: no word occurs %d or more times (%d distinct words)", name,
              mincount, c.n);
  else {
    int cap = 0;
    vocab_add(v, &cap, "<unk>", 5);
    for (int k = 0; k < nkeep; k++)
      vocab_add(v, &cap, ord[k].w, ord[k].len);
    v->unk = 0;
  }
  free(ord);
  free(c.w);
  free(c.wlen);
  free(c.count);
  free(c.t.slot);
  return st;
}

int vocab_build(Vocab *v, int kind, const char *name, const char *text, size_t len, int mincount,
                char *err, size_t errlen)
{
  memset(v, 0, sizeof *v);
  v->kind = kind;
  v->unk = -1;
  if (len == 0)
    return errorf(RNNC_EINPUT, err, errlen, "%s: no text to build a vocabulary from", name);
  int st = RNNC_OK;
  switch (kind) {
  case VOCAB_BYTE: build_bytes(v); break;
  case VOCAB_CHAR: st = build_chars(v, name, text, len, err, errlen); break;
  case VOCAB_WORD: st = build_words(v, name, text, len, mincount < 1 ? 1 : mincount, err, errlen); break;
  default: die("vocab_build: kind %d", kind);
  }
  if (st) {
    vocab_free(v);
    return st;
  }
  vocab_index(v);
  return RNNC_OK;
}

/* ---- using ---- */

int vocab_lookup(const Vocab *v, const char *tok, int len)
{
  if (v->kind == VOCAB_BYTE)
    return len == 1 ? (unsigned char)tok[0] : -1;
  const Table *t = v->index;
  return t->slot[table_find(t, v->tok, v->len, tok, len)];
}

int vocab_encode(const Vocab *v, const char *name, const char *text, size_t len, int32_t **ids, size_t *n,
                 size_t *nunk, char *err, size_t errlen)
{
  int32_t *out = xmalloc(len * sizeof *out); /* at most one id per byte */
  size_t k = 0, unk = 0;
  const unsigned char *s = (const unsigned char *)text;
  if (v->kind == VOCAB_BYTE) {
    for (; k < len; k++)
      out[k] = s[k];
  } else if (v->kind == VOCAB_CHAR) {
    char why[64];
    uint32_t cp;
    for (size_t i = 0; i < len;) {
      int m = utf8_decode(s, len, i, &cp, why, sizeof why);
      if (!m) {
        free(out);
        return errorf(RNNC_EINPUT, err, errlen, "%s: invalid UTF-8 at byte %zu (%s)", name, i, why);
      }
      int id = vocab_lookup(v, text + i, m);
      if (id < 0) {
        free(out);
        return errorf(RNNC_EINPUT, err, errlen, "%s: character U+%04X at byte %zu is not in the vocabulary",
                    name, (unsigned)cp, i);
      }
      out[k++] = id;
      i += (size_t)m;
    }
  } else {
    size_t i = 0, start;
    int m;
    if (utf8_check(name, text, len, err, errlen)) {
      free(out);
      return RNNC_EINPUT;
    }
    while ((m = next_word(text, len, &i, &start)) > 0) {
      int id = vocab_lookup(v, text + start, m);
      if (id < 0)
        id = v->unk, unk++;
      out[k++] = id;
    }
  }
  *ids = out;
  *n = k;
  if (nunk)
    *nunk = unk;
  return RNNC_OK;
}

char *vocab_decode(const Vocab *v, const int32_t *ids, size_t n)
{
  static const char bad[] = "\xef\xbf\xbd"; /* U+FFFD for an id out of range */
  size_t total = 1;
  for (size_t i = 0; i < n; i++)
    total += (ids[i] >= 0 && ids[i] < v->n ? (size_t)v->len[ids[i]] : 3) + 1;
  char *out = xmalloc(total), *p = out;
  for (size_t i = 0; i < n; i++) {
    if (v->kind == VOCAB_WORD && i > 0)
      *p++ = ' ';
    int ok = ids[i] >= 0 && ids[i] < v->n;
    size_t m = ok ? (size_t)v->len[ids[i]] : 3;
    memcpy(p, ok ? v->tok[ids[i]] : bad, m);
    p += m;
  }
  *p = 0;
  return out;
}

/* ---- JSON ---- */

static const char *kind_name[] = {"byte", "char", "word"};

char *vocab_to_json(const Vocab *v)
{
  json_t *o = json_object();
  json_object_set_new(o, "kind", json_string(kind_name[v->kind]));
  if (v->kind != VOCAB_BYTE) { /* byte level is all 256 bytes: nothing to list */
    json_t *a = json_array();
    for (int i = 0; i < v->n; i++) {
      json_t *s = json_stringn(v->tok[i], (size_t)v->len[i]);
      if (!s)
        die("vocab_to_json: token %d is not UTF-8", i);
      json_array_append_new(a, s);
    }
    json_object_set_new(o, "tokens", a);
  }
  char *s = json_dumps(o, JSON_COMPACT);
  json_decref(o);
  if (!s)
    die("vocab_to_json: out of memory");
  return s;
}

/* Check token i of a vocabulary read from JSON. */
static int check_token(const Vocab *v, int i, char *err, size_t errlen)
{
  const char *s = v->tok[i];
  int n = v->len[i];
  if (v->kind == VOCAB_CHAR) {
    uint32_t cp, prev;
    char why[64];
    if (n == 0 || utf8_decode((const unsigned char *)s, (size_t)n, 0, &cp, why, sizeof why) != n)
      return errorf(RNNC_EFORMAT, err, errlen, "vocabulary: token %d is not one character", i);
    if (i > 0 && (utf8_decode((const unsigned char *)v->tok[i - 1], (size_t)v->len[i - 1], 0, &prev, why,
                              sizeof why),
                  prev >= cp))
      return errorf(RNNC_EFORMAT, err, errlen, "vocabulary: characters are not in increasing order at token %d",
                  i);
    return RNNC_OK;
  }
  if (i == 0 && (n != 5 || memcmp(s, "<unk>", 5) != 0))
    return errorf(RNNC_EFORMAT, err, errlen, "vocabulary: word level token 0 must be \"<unk>\"");
  if (n == 0)
    return errorf(RNNC_EFORMAT, err, errlen, "vocabulary: token %d is empty", i);
  for (int k = 0; k < n; k++)
    if (is_space(s[k]))
      return errorf(RNNC_EFORMAT, err, errlen, "vocabulary: token %d contains white space", i);
  return RNNC_OK;
}

int vocab_from_json(Vocab *v, const char *json, char *err, size_t errlen)
{
  memset(v, 0, sizeof *v);
  v->unk = -1;
  json_error_t je;
  json_t *o = json_loads(json, JSON_ALLOW_NUL, &je);
  if (!o)
    return errorf(RNNC_EFORMAT, err, errlen, "vocabulary: not valid JSON: line %d, column %d: %s", je.line,
                je.column, je.text);
  int st = RNNC_OK;
  json_t *k = json_object_get(o, "kind"), *a = json_object_get(o, "tokens");
  v->kind = -1;
  for (int i = 0; i < 3; i++)
    if (json_is_string(k) && strcmp(json_string_value(k), kind_name[i]) == 0)
      v->kind = i;
  if (!json_is_object(o) || v->kind < 0)
    st = errorf(RNNC_EFORMAT, err, errlen, "vocabulary: no \"kind\" of \"byte\", \"char\" or \"word\"");
  else if (v->kind == VOCAB_BYTE)
    build_bytes(v);
  else if (!json_is_array(a) || json_array_size(a) == 0 || json_array_size(a) > INT32_MAX)
    st = errorf(RNNC_EFORMAT, err, errlen, "vocabulary: no \"tokens\" array");
  else {
    int cap = 0;
    for (size_t i = 0; i < json_array_size(a) && !st; i++) {
      json_t *s = json_array_get(a, i);
      if (!json_is_string(s)) {
        st = errorf(RNNC_EFORMAT, err, errlen, "vocabulary: token %zu is not a string", i);
        break;
      }
      vocab_add(v, &cap, json_string_value(s), (int)json_string_length(s));
      st = check_token(v, (int)i, err, errlen);
    }
    if (v->kind == VOCAB_WORD)
      v->unk = 0;
  }
  json_decref(o);
  if (!st) {
    vocab_index(v);
    for (int i = 0; i < v->n && v->kind == VOCAB_WORD && !st; i++) {
      int j = vocab_lookup(v, v->tok[i], v->len[i]); /* the last of equal tokens */
      if (j != i)
        st = errorf(RNNC_EFORMAT, err, errlen, "vocabulary: tokens %d and %d are the same", i, j);
    }
  }
  if (st)
    vocab_free(v);
  return st;
}

int vocab_equal(const Vocab *a, const Vocab *b)
{
  if (a->kind != b->kind || a->n != b->n)
    return 0;
  for (int i = 0; i < a->n; i++)
    if (a->len[i] != b->len[i] || memcmp(a->tok[i], b->tok[i], (size_t)a->len[i]) != 0)
      return 0;
  return 1;
}

void vocab_free(Vocab *v)
{
  for (int i = 0; v->tok && i < v->n; i++)
    free(v->tok[i]);
  free(v->tok);
  free(v->len);
  if (v->index)
    free(((Table *)v->index)->slot);
  free(v->index);
  memset(v, 0, sizeof *v);
}
