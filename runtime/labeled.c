/* labeled.c — labelled per-line text: classification ("LABEL<TAB>TEXT", one
 * example per line) and tagging ("TOKEN<TAB>TAG", one token per line, a blank
 * line between sequences), their class sets and their data sets.
 *
 * require: a vocabulary (vocab.c) built from labeled_text's column. produce:
 * Classes (sorted distinct labels) and a DS_LINES Dataset with lab set. Every
 * message names the file and the line. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

static void *xrealloc(void *p, size_t n)
{
  p = realloc(p, n ? n : 1);
  if (!p)
    die("out of memory (needed %zu bytes)", n);
  return p;
}

/* One parsed line: LAB_CLASS a label (a) and its text (b); LAB_TAG a token
 * (a) and its tag (b), or a sequence break (a == NULL). */
typedef struct Item {
  const char *a, *b;
  size_t alen, blen;
  size_t line;       /* 1-based line in the file */
} Item;

static int has_space(const char *s, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (s[i] == ' ' || s[i] == '\t' || s[i] == '\v' || s[i] == '\f' || s[i] == '\r')
      return 1;
  return 0;
}

/* Nothing but spaces (a tab is not blank: it separates two empty fields). */
static int blank(const char *s, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (s[i] != ' ' && s[i] != '\r' && s[i] != '\v' && s[i] != '\f')
      return 0;
  return 1;
}

/* Split text into items (malloc'ed, *n of them), checking each line's form. */
static int parse_lines(int lab, const char *name, const char *text, size_t len, Item **out, size_t *n, char *err,
                 size_t errlen)
{
  Item *it = NULL;
  size_t cnt = 0, cap = 0, line = 0, nreal = 0;
  *out = NULL;
  *n = 0;
  for (size_t a = 0; a < len;) {
    const char *nl = memchr(text + a, '\n', len - a);
    size_t b = nl ? (size_t)(nl - text) : len, e = b;
    line++;
    if (e > a && text[e - 1] == '\r')
      e--;
    const char *s = text + a;
    size_t m = e - a;
    a = b + 1;
    Item x = {.line = line};
    if (blank(s, m)) {
      if (lab == LAB_CLASS)
        continue;           /* a blank line */
      if (cnt == 0 || !it[cnt - 1].a)
        continue;           /* breaks collapse */
    } else {
      const char *tab = memchr(s, '\t', m);
      const char *what = lab == LAB_CLASS ? "label" : "token", *other = lab == LAB_CLASS ? "text" : "tag";
      int st = RNNC_OK;
      if (!tab)
        st = errorf(RNNC_EINPUT, err, errlen, "%s: line %zu: no tab between the %s and the %s", name, line, what,
                  other);
      else if (tab == s)
        st = errorf(RNNC_EINPUT, err, errlen, "%s: line %zu: empty %s", name, line, what);
      else if (tab + 1 == s + m)
        st = errorf(RNNC_EINPUT, err, errlen, "%s: line %zu: empty %s", name, line, other);
      else if (lab == LAB_TAG && has_space(s, (size_t)(tab - s)))
        st = errorf(RNNC_EINPUT, err, errlen, "%s: line %zu: token '%.*s' has white space", name, line,
                  (int)(tab - s), s);
      if (st) {
        free(it);
        return st;
      }
      x.a = s, x.alen = (size_t)(tab - s);
      x.b = tab + 1, x.blen = m - x.alen - 1;
      nreal++;
    }
    if (cnt == cap) {
      cap = cap ? 2 * cap : 256;
      it = xrealloc(it, cap * sizeof *it);
    }
    it[cnt++] = x;
  }
  if (nreal == 0) {
    free(it);
    return errorf(RNNC_EINPUT, err, errlen, "%s: no %s", name,
                lab == LAB_CLASS ? "line holds an example (LABEL<TAB>TEXT)" : "line holds a token (TOKEN<TAB>TAG)");
  }
  *out = it;
  *n = cnt;
  return RNNC_OK;
}

int labeled_text(int lab, const char *name, const char *text, size_t len, char **out, size_t *outlen, char *err,
                 size_t errlen)
{
  Item *it;
  size_t n;
  *out = NULL;
  *outlen = 0;
  int st = parse_lines(lab, name, text, len, &it, &n, err, errlen);
  if (st)
    return st;
  size_t total = 0;
  for (size_t i = 0; i < n; i++)
    total += it[i].a ? (lab == LAB_CLASS ? it[i].blen : it[i].alen) + 1 : 0;
  char *buf = xrealloc(NULL, total + 1), *p = buf;
  for (size_t i = 0; i < n; i++) {
    if (!it[i].a)
      continue;
    const char *s = lab == LAB_CLASS ? it[i].b : it[i].a;
    size_t m = lab == LAB_CLASS ? it[i].blen : it[i].alen;
    memcpy(p, s, m);
    p += m;
    *p++ = '\n';
  }
  *p = 0;
  free(it);
  *out = buf;
  *outlen = total;
  return RNNC_OK;
}

/* Bytewise order of (s, n) strings, a prefix first. */
static int bytecmp(const char *s, size_t n, const char *t, size_t m)
{
  int c = memcmp(s, t, n < m ? n : m);
  return c ? c : (n > m) - (n < m);
}

static int cmp_label(const void *x, const void *y)
{
  const Item *a = x, *b = y;
  return bytecmp(a->b, a->blen, b->b, b->blen);
}

void classes_free(Classes *c)
{
  for (int i = 0; i < c->n; i++)
    free(c->name[i]);
  free(c->name);
  memset(c, 0, sizeof *c);
}

/* The label (LAB_CLASS) or tag (LAB_TAG) of every item, moved to b/blen so
 * that one sort serves both kinds. */
int classes_build(Classes *c, int lab, const char *name, const char *text, size_t len, char *err, size_t errlen)
{
  memset(c, 0, sizeof *c);
  Item *it;
  size_t n, k = 0;
  int st = parse_lines(lab, name, text, len, &it, &n, err, errlen);
  if (st)
    return st;
  for (size_t i = 0; i < n; i++) {
    if (!it[i].a)
      continue;
    Item x = it[i];
    if (lab == LAB_CLASS)
      x.b = x.a, x.blen = x.alen;
    it[k++] = x;
  }
  qsort(it, k, sizeof *it, cmp_label);
  c->name = xrealloc(NULL, k * sizeof *c->name);
  for (size_t i = 0; i < k && st == RNNC_OK; i++) {
    if (i > 0 && cmp_label(&it[i - 1], &it[i]) == 0)
      continue;
    json_t *j = json_stringn(it[i].b, it[i].blen);
    if (!j || memchr(it[i].b, 0, it[i].blen)) {
      st = errorf(RNNC_EINPUT, err, errlen, "%s: line %zu: the %s is not valid UTF-8 text", name, it[i].line,
                lab == LAB_CLASS ? "label" : "tag");
    } else {
      c->name[c->n] = xrealloc(NULL, it[i].blen + 1);
      memcpy(c->name[c->n], it[i].b, it[i].blen);
      c->name[c->n++][it[i].blen] = 0;
    }
    json_decref(j);
  }
  free(it);
  if (st)
    classes_free(c);
  return st;
}

char *classes_to_json(const Classes *c)
{
  json_t *a = json_array();
  for (int i = 0; i < c->n; i++)
    json_array_append_new(a, json_string(c->name[i]));
  char *s = json_dumps(a, JSON_COMPACT);
  json_decref(a);
  if (!s)
    die("classes_to_json: out of memory");
  return s;
}

int classes_from_json(Classes *c, const char *json, char *err, size_t errlen)
{
  memset(c, 0, sizeof *c);
  json_error_t je;
  json_t *a = json_loads(json, 0, &je);
  if (!a || !json_is_array(a) || json_array_size(a) == 0) {
    json_decref(a);
    return errorf(RNNC_EFORMAT, err, errlen, "classes: not a non-empty JSON array of strings");
  }
  size_t n = json_array_size(a);
  c->name = xrealloc(NULL, n * sizeof *c->name);
  int st = RNNC_OK;
  for (size_t i = 0; i < n && st == RNNC_OK; i++) {
    json_t *s = json_array_get(a, i);
    if (!json_is_string(s)) {
      st = errorf(RNNC_EFORMAT, err, errlen, "classes: entry %zu is not a string", i);
      break;
    }
    c->name[c->n] = strdup(json_string_value(s));
    if (!c->name[c->n])
      die("classes_from_json: out of memory");
    c->n++;
    if (i > 0 && strcmp(c->name[i - 1], c->name[i]) >= 0)
      st = errorf(RNNC_EFORMAT, err, errlen, "classes: '%s' and '%s' are not sorted and distinct", c->name[i - 1],
                c->name[i]);
  }
  json_decref(a);
  if (st)
    classes_free(c);
  return st;
}

int classes_lookup(const Classes *c, const char *s, size_t len)
{
  int lo = 0, hi = c->n - 1;
  while (lo <= hi) {
    int mid = lo + (hi - lo) / 2;
    int r = bytecmp(s, len, c->name[mid], strlen(c->name[mid]));
    if (r == 0)
      return mid;
    if (r < 0)
      hi = mid - 1;
    else
      lo = mid + 1;
  }
  return -1;
}

static int class_of(const Classes *c, const char *from, const char *name, const Item *x, const char *s, size_t n,
                    int32_t *id, char *err, size_t errlen)
{
  int k = classes_lookup(c, s, n);
  if (k < 0)
    return errorf(RNNC_EINPUT, err, errlen, "%s: line %zu: class '%.*s' is not in %s classes", name, x->line,
                (int)(n < 200 ? n : 200), s, from);
  *id = k;
  return RNNC_OK;
}

/* Append the ids of one sequence, growing the arrays. */
typedef struct Grow {
  Dataset *d;
  size_t cap, scap;
} Grow;

static void push_id(Grow *g, int32_t id, int32_t tag)
{
  Dataset *d = g->d;
  if (d->nids == g->cap) {
    g->cap = g->cap ? 2 * g->cap : 1024;
    d->ids = xrealloc(d->ids, g->cap * sizeof *d->ids);
    if (d->lab == LAB_TAG)
      d->tag = xrealloc(d->tag, g->cap * sizeof *d->tag);
  }
  if (d->lab == LAB_TAG)
    d->tag[d->nids] = tag;
  d->ids[d->nids++] = id;
}

/* End the sequence being built (if it has a token), with label. */
static void push_seq(Grow *g, int32_t label)
{
  Dataset *d = g->d;
  if (d->nids == d->off[d->nseq])
    return;
  if (d->nseq + 2 > g->scap) {
    g->scap = 2 * g->scap + 64;
    d->off = xrealloc(d->off, g->scap * sizeof *d->off);
    if (d->lab == LAB_CLASS)
      d->label = xrealloc(d->label, g->scap * sizeof *d->label);
  }
  if (d->lab == LAB_CLASS)
    d->label[d->nseq] = label;
  d->off[++d->nseq] = d->nids;
}

int dataset_labeled(Dataset *d, int lab, const Vocab *v, const Classes *c, const char *from, const char *name,
                    const char *text, size_t len, char *err, size_t errlen)
{
  memset(d, 0, sizeof *d);
  if (lab != LAB_CLASS && lab != LAB_TAG)
    die("dataset_labeled: lab %d", lab);
  if (lab == LAB_TAG && v->kind != VOCAB_WORD)
    return errorf(RNNC_EINPUT, err, errlen, "%s: tagged data needs a word-level vocabulary", name);
  Item *it;
  size_t n;
  int st = parse_lines(lab, name, text, len, &it, &n, err, errlen);
  if (st)
    return st;
  d->kind = DS_LINES;
  d->lab = lab;
  d->nclass = c->n;
  Grow g = {d, 0, 64};
  d->off = xrealloc(NULL, g.scap * sizeof *d->off);
  d->off[0] = 0;
  if (lab == LAB_CLASS)
    d->label = xrealloc(NULL, g.scap * sizeof *d->label);
  char where[300];
  for (size_t i = 0; i < n && st == RNNC_OK; i++) {
    const Item *x = &it[i];
    if (lab == LAB_TAG) {
      int32_t tag = -1;
      if (!x->a) {
        push_seq(&g, -1);
      } else if ((st = class_of(c, from, name, x, x->b, x->blen, &tag, err, errlen)) == RNNC_OK) {
        int id = vocab_lookup(v, x->a, (int)x->alen);
        push_id(&g, id >= 0 ? id : v->unk, tag);
      }
      continue;
    }
    int32_t label = -1, *ids;
    size_t m;
    if ((st = class_of(c, from, name, x, x->a, x->alen, &label, err, errlen)))
      break;
    snprintf(where, sizeof where, "%s: line %zu", name, x->line);
    if ((st = vocab_encode(v, where, x->b, x->blen, &ids, &m, NULL, err, errlen)))
      break;
    if (m == 0)
      st = errorf(RNNC_EINPUT, err, errlen, "%s: line %zu: empty text", name, x->line);
    for (size_t k = 0; k < m; k++)
      push_id(&g, ids[k], 0);
    free(ids);
    push_seq(&g, label);
  }
  if (st == RNNC_OK && lab == LAB_TAG)
    push_seq(&g, -1);
  free(it);
  if (st)
    dataset_free(d);
  return st;
}

/* The vocabulary of the text column; invalid UTF-8 is reported at its line
 * (the column's byte offsets mean nothing to the user): on that error each
 * text is tried alone, "t.txt: line 3: invalid UTF-8 at byte 5 (...)". */
int labeled_vocab(Vocab *v, int lab, int kind, const char *name, const char *text, size_t len, int mincount,
                  char *err, size_t errlen)
{
  char *col;
  size_t ncol;
  memset(v, 0, sizeof *v);
  int st = labeled_text(lab, name, text, len, &col, &ncol, err, errlen);
  if (st)
    return st;
  st = vocab_build(v, kind, name, col, ncol, mincount, err, errlen);
  free(col);
  if (st != RNNC_EINPUT || !strstr(err, "invalid UTF-8"))
    return st;
  Item *it;
  size_t n;
  if (parse_lines(lab, name, text, len, &it, &n, NULL, 0))
    die("labeled_vocab: the text parsed once and not twice");
  char where[300], msg[512];
  for (size_t i = 0; i < n; i++) {
    if (!it[i].a)
      continue;
    Vocab one;
    snprintf(where, sizeof where, "%s: line %zu", name, it[i].line);
    const char *s = lab == LAB_CLASS ? it[i].b : it[i].a;
    size_t m = lab == LAB_CLASS ? it[i].blen : it[i].alen;
    int bad = vocab_build(&one, kind, where, s, m, 1, msg, sizeof msg) == RNNC_EINPUT && strstr(msg, "invalid UTF-8");
    vocab_free(&one);
    if (bad) {
      snprintf(err, errlen, "%s", msg);
      break;
    }
  }
  free(it);
  return st;
}
