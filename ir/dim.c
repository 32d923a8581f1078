/* dim.c — linear-form dimensions (c + Σ k·sym), shapes and their bindings. */
#include <string.h>

#include "ir.h"

Dim dim_const(long c) { return (Dim){.c = c}; }

Dim dim_sym(const char *sym)
{
  Dim d = {0};
  d.nterm = 1;
  d.t[0].sym = sym;
  d.t[0].k = 1;
  return d;
}

/* Add k·sym into d keeping terms sorted and nonzero; 0 on overflow of terms. */
static int addterm(Dim *d, const char *sym, long k)
{
  int i = 0;
  while (i < d->nterm && strcmp(d->t[i].sym, sym) < 0)
    i++;
  if (i < d->nterm && d->t[i].sym == sym) {
    d->t[i].k += k;
    if (d->t[i].k == 0) {
      memmove(&d->t[i], &d->t[i + 1], (size_t)(d->nterm - i - 1) * sizeof d->t[0]);
      d->nterm--;
    }
    return 1;
  }
  if (k == 0)
    return 1;
  if (d->nterm == DIM_MAXTERM)
    return 0;
  memmove(&d->t[i + 1], &d->t[i], (size_t)(d->nterm - i) * sizeof d->t[0]);
  d->t[i].sym = sym;
  d->t[i].k = k;
  d->nterm++;
  return 1;
}

int dim_add(Dim a, Dim b, Dim *out)
{
  a.c += b.c;
  for (int i = 0; i < b.nterm; i++)
    if (!addterm(&a, b.t[i].sym, b.t[i].k))
      return 0;
  *out = a;
  return 1;
}

Dim dim_scale(Dim a, long k)
{
  if (k == 0)
    return dim_const(0);
  a.c *= k;
  for (int i = 0; i < a.nterm; i++)
    a.t[i].k *= k;
  return a;
}

int dim_div(Dim a, long n, Dim *out)
{
  if (n <= 0 || a.c % n)
    return 0;
  for (int i = 0; i < a.nterm; i++)
    if (a.t[i].k % n)
      return 0;
  a.c /= n;
  for (int i = 0; i < a.nterm; i++)
    a.t[i].k /= n;
  *out = a;
  return 1;
}

int dim_eq(Dim a, Dim b)
{
  if (a.c != b.c || a.nterm != b.nterm)
    return 0;
  for (int i = 0; i < a.nterm; i++)
    if (a.t[i].sym != b.t[i].sym || a.t[i].k != b.t[i].k)
      return 0;
  return 1;
}

int dim_isconst(Dim a) { return a.nterm == 0; }

int dim_subst(Dim a, int n, const char *const *names, const Dim *val, Dim *out)
{
  Dim r = dim_const(a.c);
  for (int i = 0; i < a.nterm; i++) {
    int j = 0;
    while (j < n && names[j] != a.t[i].sym)
      j++;
    Dim term = j < n ? dim_scale(val[j], a.t[i].k) : dim_scale(dim_sym(a.t[i].sym), a.t[i].k);
    if (!dim_add(r, term, &r))
      return 0;
  }
  *out = r;
  return 1;
}

char *dim_str(Arena *a, Dim d)
{
  char buf[512];
  size_t n = 0;
  buf[0] = 0;
  for (int i = 0; i < d.nterm; i++) {
    long k = d.t[i].k;
    const char *sep = i == 0 ? (k < 0 ? "-" : "") : (k < 0 ? " - " : " + ");
    long ak = k < 0 ? -k : k;
    if (ak == 1)
      n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%s", sep, d.t[i].sym);
    else
      n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%ld*%s", sep, ak, d.t[i].sym);
    if (n >= sizeof buf)
      die("dimension too long to print");
  }
  if (d.nterm == 0)
    snprintf(buf, sizeof buf, "%ld", d.c);
  else if (d.c)
    snprintf(buf + n, sizeof buf - n, " %c %ld", d.c < 0 ? '-' : '+', d.c < 0 ? -d.c : d.c);
  return astrdup(a, buf);
}

char *shape_str(Arena *a, const Shape *s)
{
  char buf[1024];
  size_t n = 0;
  buf[n++] = '[';
  for (int i = 0; i < s->rank; i++)
    n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%s", i ? ", " : "", dim_str(a, s->d[i]));
  snprintf(buf + n, sizeof buf - n, "]");
  return astrdup(a, buf);
}

int shape_eq(const Shape *a, const Shape *b)
{
  if (a->rank != b->rank)
    return 0;
  for (int i = 0; i < a->rank; i++)
    if (!dim_eq(a->d[i], b->d[i]))
      return 0;
  return 1;
}

void env_set(Arena *a, Env *e, const char *sym, long val)
{
  for (int i = 0; i < e->n; i++)
    if (e->sym[i] == sym) {
      e->val[i] = val;
      return;
    }
  int cap = e->cap;
  agrow(a, (void **)&e->sym, &cap, e->n + 1, sizeof *e->sym);
  cap = e->cap;
  agrow(a, (void **)&e->val, &cap, e->n + 1, sizeof *e->val);
  e->cap = cap;
  e->sym[e->n] = sym;
  e->val[e->n++] = val;
}

int env_get(const Env *e, const char *sym, long *val)
{
  for (int i = 0; i < e->n; i++)
    if (e->sym[i] == sym) {
      *val = e->val[i];
      return 1;
    }
  return 0;
}

int dim_eval(Dim d, const Env *e, long *out, const char **bad)
{
  long v = d.c;
  for (int i = 0; i < d.nterm; i++) {
    long x;
    if (!env_get(e, d.t[i].sym, &x)) {
      if (bad)
        *bad = d.t[i].sym;
      return 0;
    }
    v += d.t[i].k * x;
  }
  *out = v;
  return 1;
}
