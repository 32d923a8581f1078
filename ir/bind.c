/* bind.c — binding a model's dimensions for a run: bind_dims.
 * require: a verified model (node shapes, params). produce: every dim the
 * model's inputs and params use, bound in env: first what env already holds
 * (the caller's, e.g. --dim), then the header defaults, then the values that
 * make the given tensors' shapes match (a dim with one unbound symbol binds
 * it), and every tensor checked against its bound shape. The interpreter
 * (interp_run) and the JIT path of `rnnc run` share it, so both say the same
 * thing about the same bad tensor. */
#include <stdarg.h>
#include <string.h>

#include "ir.h"

/* One binding's state: where env's entries and message strings live. */
typedef struct Binder {
  Env *env;
  Arena *a;
  char *err;
  size_t errlen;
} Binder;

/* A tensor the model reads, with its declared shape (in model dims). */
typedef struct Bound {
  const char *what; /* "input", "parameter" */
  const char *name;
  const Shape *shape;
  const Tensor *t;
} Bound;

static int bfail(Binder *b, int code, const char *fmt, ...)
{
  if (b->err && b->errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->err, b->errlen, fmt, ap);
    va_end(ap);
  }
  return code;
}

/* If d has exactly one unbound symbol, bind it so that d == val (when the
 * division is exact and the value not negative). Returns 1 when it bound. */
static int solve(Binder *b, Dim d, long val)
{
  long rest = d.c, k = 0;
  const char *sym = NULL;
  for (int i = 0; i < d.nterm; i++) {
    long x;
    if (env_get(b->env, d.t[i].sym, &x)) {
      rest += d.t[i].k * x;
    } else if (sym) {
      return 0; /* two unknowns */
    } else {
      sym = d.t[i].sym;
      k = d.t[i].k;
    }
  }
  if (!sym || (val - rest) % k || (val - rest) / k < 0)
    return 0;
  env_set(b->a, b->env, sym, (val - rest) / k);
  return 1;
}

static char *tshape_str(Arena *a, const Tensor *t)
{
  char buf[256];
  size_t n = 0;
  buf[n++] = '[';
  for (int i = 0; i < t->rank; i++)
    n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%lld", i ? ", " : "", (long long)t->dim[i]);
  snprintf(buf + n, sizeof buf - n, "]");
  return astrdup(a, buf);
}

/* "[T, B] with T = 64, B = 16" when every dim is a symbol or a constant,
 * "[4*H, I] = [512, 65]" otherwise; bare "[4*H, I]" while a symbol is unbound. */
static char *expected_str(Binder *b, const Shape *s)
{
  char buf[512];
  size_t n = (size_t)snprintf(buf, sizeof buf, "%s", shape_str(b->a, s));
  int simple = 1, allbound = 1;
  for (int i = 0; i < s->rank; i++) {
    const Dim *d = &s->d[i];
    long v;
    if (!(d->nterm == 0 || (d->nterm == 1 && d->c == 0 && d->t[0].k == 1)))
      simple = 0;
    if (!dim_eval(*d, b->env, &v, NULL))
      allbound = 0;
  }
  if (!allbound)
    return astrdup(b->a, buf);
  if (simple) {
    int first = 1;
    for (int i = 0; i < s->rank; i++) {
      const Dim *d = &s->d[i];
      if (d->nterm == 0)
        continue;
      int seen = 0; /* listed already */
      for (int j = 0; j < i; j++)
        if (s->d[j].nterm == 1 && s->d[j].t[0].sym == d->t[0].sym)
          seen = 1;
      if (seen)
        continue;
      long v;
      env_get(b->env, d->t[0].sym, &v);
      n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%s = %ld", first ? " with " : ", ",
                            d->t[0].sym, v);
      first = 0;
    }
  } else {
    n += (size_t)snprintf(buf + n, sizeof buf - n, " = [");
    for (int i = 0; i < s->rank; i++) {
      long v;
      dim_eval(s->d[i], b->env, &v, NULL);
      n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%ld", i ? ", " : "", v);
    }
    snprintf(buf + n, sizeof buf - n, "]");
  }
  return astrdup(b->a, buf);
}

static int isint(int dt) { return dt == DT_I32 || dt == DT_I64; }

int bind_dims(Module *m, Model *md, Env *env, const TensorSet *params, const TensorSet *inputs,
              Arena *a, char *err, size_t errlen)
{
  (void)m; /* the dims' names are interned in m already */
  Binder bb = {env, a, err, errlen}, *b = &bb;
  for (int i = 0; i < md->ndim; i++) {
    long v;
    if (md->dim[i].hasdefault && !env_get(env, md->dim[i].name, &v))
      env_set(a, env, md->dim[i].name, md->dim[i].def);
  }

  /* The tensors, inputs in declaration order then parameters in node order. */
  Bound *bd = NULL;
  int nb = 0, cap = 0;
  for (int i = 0; i < md->nnode; i++) {
    const MNode *n = &md->node[i];
    if (n->kind != M_INPUT)
      continue;
    const Tensor *t = inputs ? tset_find(inputs, n->name) : NULL;
    if (!t)
      return bfail(b, RNNC_EINPUT, "missing input '%s'", n->name);
    if (n->dtype == DT_I32 ? !isint(t->dtype) : isint(t->dtype))
      return bfail(b, RNNC_ESHAPE, "input '%s' has dtype %s, expected %s", n->name,
                   dtype_name(t->dtype), n->dtype == DT_I32 ? "I32 or I64" : "F32 or F64");
    APUSH(a, bd, nb, cap, ((Bound){"input", n->name, &n->shape, t}));
  }
  for (int i = 0; i < md->nnode; i++) {
    const MNode *n = &md->node[i];
    for (int p = 0; p < n->nparam; p++) {
      const Tensor *t = params ? tset_find(params, n->param[p].full) : NULL;
      if (!t)
        return bfail(b, RNNC_EINPUT, "missing parameter '%s'", n->param[p].full);
      if (isint(t->dtype))
        return bfail(b, RNNC_ESHAPE, "parameter '%s' has dtype %s, expected F32 or F64",
                     n->param[p].full, dtype_name(t->dtype));
      APUSH(a, bd, nb, cap, ((Bound){"parameter", n->param[p].full, &n->param[p].shape, t}));
    }
  }

  /* Unify to a fixed point: a dim with one unbound symbol binds it. */
  for (int changed = 1; changed;) {
    changed = 0;
    for (int k = 0; k < nb; k++)
      if (bd[k].t->rank == bd[k].shape->rank)
        for (int j = 0; j < bd[k].shape->rank; j++)
          changed |= solve(b, bd[k].shape->d[j], (long)bd[k].t->dim[j]);
  }

  /* Check every tensor against its bound shape. */
  for (int k = 0; k < nb; k++) {
    const Shape *s = bd[k].shape;
    const Tensor *t = bd[k].t;
    int ok = t->rank == s->rank;
    for (int j = 0; ok && j < s->rank; j++) {
      long v;
      const char *bad = NULL;
      if (!dim_eval(s->d[j], env, &v, &bad))
        return bfail(b, RNNC_EINPUT, "dimension '%s' of %s '%s' is not bound: give it a value",
                     bad, bd[k].what, bd[k].name);
      ok = v == t->dim[j];
    }
    if (!ok)
      return bfail(b, RNNC_ESHAPE, "%s '%s' has shape %s, expected %s", bd[k].what, bd[k].name,
                   tshape_str(a, t), expected_str(b, s));
  }
  return RNNC_OK;
}
