/* interp_model.c — the reference interpreter, model level: interp_run.
 * require: a verified model (node shapes, cells, params, md->loss) and, for
 * gradients, its ModelGrad from autodiff. produce: the declared outputs and,
 * with wantgrad, the loss and grad.<node>.<param> / grad.<input> tensors.
 *
 * Every model value is kept as doubles laid out as positions × d:
 *   [T, B, d]  position p = t*B + b (t = 0 is step 1), npos = T*B
 *   [B, d]     position p = b, npos = B
 *   []         npos = 1, d = 1
 * and, with wantgrad, an adjoint of the same layout. The forward pass runs the
 * nodes operands first; the backward pass runs them in the reverse order, each
 * node adding into its operands' adjoints (+=). Accumulations are in
 * double in a fixed order; in PREC_F32 every value and every finished adjoint
 * is rounded to float.
 *
 * This file binds the dims, checks the tensors, orders the nodes and writes
 * the results; interp_forward.c runs each node kind forward and
 * interp_backward.c backward. */
#include <stdarg.h>
#include <string.h>

#include "interp.h"

int interp_fail(Run *r, int code, const char *fmt, ...)
{
  if (r->err && r->errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err, r->errlen, fmt, ap);
    va_end(ap);
  }
  return code;
}

/* The value of a model dim; RNNC_EINPUT when a symbol is unbound. */
int interp_mdim(Run *r, Dim d, long *out)
{
  const char *bad = NULL;
  if (!dim_eval(d, &r->env, out, &bad))
    return interp_fail(r, RNNC_EINPUT, "dimension '%s' is not bound: give it a value", bad);
  return RNNC_OK;
}

/* ---- binding the dims ---------------------------------------------------- */

/* A tensor the model reads, with its declared shape (in model dims). */
typedef struct Bound {
  const char *what;  /* "input", "parameter" */
  const char *name;
  const Shape *shape;
  const Tensor *t;
} Bound;

/* If d has exactly one unbound symbol, bind it so that d == val (when the
 * division is exact and the value not negative). Returns 1 when it bound. */
static int solve(Run *r, Dim d, long val)
{
  long rest = d.c, k = 0;
  const char *sym = NULL;
  for (int i = 0; i < d.nterm; i++) {
    long x;
    if (env_get(&r->env, d.t[i].sym, &x)) {
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
  env_set(r->a, &r->env, sym, (val - rest) / k);
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
static char *expected_str(Run *r, const Shape *s)
{
  char buf[512];
  size_t n = (size_t)snprintf(buf, sizeof buf, "%s", shape_str(r->a, s));
  int simple = 1, allbound = 1;
  for (int i = 0; i < s->rank; i++) {
    const Dim *d = &s->d[i];
    long v;
    if (!(d->nterm == 0 || (d->nterm == 1 && d->c == 0 && d->t[0].k == 1)))
      simple = 0;
    if (!dim_eval(*d, &r->env, &v, NULL))
      allbound = 0;
  }
  if (!allbound)
    return astrdup(r->a, buf);
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
      env_get(&r->env, d->t[0].sym, &v);
      n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%s = %ld", first ? " with " : ", ",
                            d->t[0].sym, v);
      first = 0;
    }
  } else {
    n += (size_t)snprintf(buf + n, sizeof buf - n, " = [");
    for (int i = 0; i < s->rank; i++) {
      long v;
      dim_eval(s->d[i], &r->env, &v, NULL);
      n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%ld", i ? ", " : "", v);
    }
    snprintf(buf + n, sizeof buf - n, "]");
  }
  return astrdup(r->a, buf);
}

static int isint(int dt) { return dt == DT_I32 || dt == DT_I64; }

/* env (caller), then header defaults, then the tensors' shapes. */
static int bind_dims(Run *r, const Env *env, const TensorSet *params, const TensorSet *inputs)
{
  Model *md = r->md;
  if (env)
    for (int i = 0; i < env->n; i++)
      env_set(r->a, &r->env, env->sym[i], env->val[i]);
  for (int i = 0; i < md->ndim; i++) {
    long v;
    if (md->dim[i].hasdefault && !env_get(&r->env, md->dim[i].name, &v))
      env_set(r->a, &r->env, md->dim[i].name, md->dim[i].def);
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
      return interp_fail(r, RNNC_EINPUT, "missing input '%s'", n->name);
    if (n->dtype == DT_I32 ? !isint(t->dtype) : isint(t->dtype))
      return interp_fail(r, RNNC_ESHAPE, "input '%s' has dtype %s, expected %s", n->name,
                         dtype_name(t->dtype), n->dtype == DT_I32 ? "I32 or I64" : "F32 or F64");
    APUSH(r->a, bd, nb, cap, ((Bound){"input", n->name, &n->shape, t}));
  }
  for (int i = 0; i < md->nnode; i++) {
    const MNode *n = &md->node[i];
    for (int p = 0; p < n->nparam; p++) {
      const Tensor *t = params ? tset_find(params, n->param[p].full) : NULL;
      if (!t)
        return interp_fail(r, RNNC_EINPUT, "missing parameter '%s'", n->param[p].full);
      if (isint(t->dtype))
        return interp_fail(r, RNNC_ESHAPE, "parameter '%s' has dtype %s, expected F32 or F64",
                           n->param[p].full, dtype_name(t->dtype));
      APUSH(r->a, bd, nb, cap, ((Bound){"parameter", n->param[p].full, &n->param[p].shape, t}));
    }
  }

  /* Unify to a fixed point: a dim with one unbound symbol binds it. */
  for (int changed = 1; changed;) {
    changed = 0;
    for (int k = 0; k < nb; k++)
      if (bd[k].t->rank == bd[k].shape->rank)
        for (int j = 0; j < bd[k].shape->rank; j++)
          changed |= solve(r, bd[k].shape->d[j], (long)bd[k].t->dim[j]);
  }

  /* Check every tensor against its bound shape. */
  for (int k = 0; k < nb; k++) {
    const Shape *s = bd[k].shape;
    const Tensor *t = bd[k].t;
    int ok = t->rank == s->rank;
    for (int j = 0; ok && j < s->rank; j++) {
      long v;
      const char *bad = NULL;
      if (!dim_eval(s->d[j], &r->env, &v, &bad))
        return interp_fail(r, RNNC_EINPUT,
                           "dimension '%s' of %s '%s' is not bound: give it a value", bad,
                           bd[k].what, bd[k].name);
      ok = v == t->dim[j];
    }
    if (!ok)
      return interp_fail(r, RNNC_ESHAPE, "%s '%s' has shape %s, expected %s", bd[k].what,
                         bd[k].name, tshape_str(r->a, t), expected_str(r, s));
  }
  return RNNC_OK;
}

/* ---- order --------------------------------------------------------------- */

/* Node ids in an order where each comes after everything it reads (operands,
 * target, init nodes): depth first, as verify visits them. */
static void visit(Run *r, int i, char *seen, int *n)
{
  if (seen[i])
    return;
  seen[i] = 1;
  const MNode *nd = &r->md->node[i];
  for (int k = 0; k < nd->narg; k++)
    visit(r, nd->arg[k], seen, n);
  if (nd->target >= 0)
    visit(r, nd->target, seen, n);
  if (nd->initfrom >= 0)
    visit(r, nd->initfrom, seen, n);
  for (int k = 0; k < nd->ninit; k++)
    visit(r, nd->init[k], seen, n);
  r->order[(*n)++] = i;
}

static void order(Run *r)
{
  int n = 0;
  char *seen = aalloc(r->a, (size_t)r->md->nnode + 1);
  r->order = aalloc(r->a, ((size_t)r->md->nnode + 1) * sizeof *r->order);
  for (int i = 0; i < r->md->nnode; i++)
    visit(r, i, seen, &n);
}

/* ---- results ------------------------------------------------------------- */

/* Add tensor name with node i's shape; data from x (or the ids). */
static int put(Run *r, TensorSet *out, const char *name, const Shape *shape, const double *x,
               const long *id, long n)
{
  int64_t dim[TENSOR_MAXRANK];
  int rank = shape->rank;
  for (int k = 0; k < rank; k++) {
    long dv;
    int st = interp_mdim(r, shape->d[k], &dv);
    if (st)
      return st;
    dim[k] = dv;
  }
  int dt = id ? DT_I32 : r->prec == PREC_F32 ? DT_F32 : DT_F64;
  Tensor *t = tset_add(out, name, dt, rank, dim);
  if (!t)
    return interp_fail(r, RNNC_ENOMEM, "out of memory for tensor '%s'", name);
  if (tensor_numel(t) != n)
    die("tensor '%s': %lld elements, value has %ld", name, (long long)tensor_numel(t), n);
  for (long e = 0; e < n; e++) {
    if (id)
      ((int32_t *)t->data)[e] = (int32_t)id[e];
    else if (dt == DT_F32)
      ((float *)t->data)[e] = (float)x[e];
    else
      ((double *)t->data)[e] = x[e];
  }
  return RNNC_OK;
}

/* Write into a scratch set first, so out changes only on success. */
static int results(Run *r, const InterpOpts *o, TensorSet *out)
{
  Model *md = r->md;
  TensorSet res;
  tset_init(&res);
  int st = RNNC_OK;
  for (int k = 0; !st && k < md->noutput; k++) {
    int i = md->output[k];
    const Val *v = &r->v[i];
    st = put(r, &res, md->node[i].name, &md->node[i].shape, v->x, v->id, v->npos * v->d);
  }
  if (!st && md->loss >= 0 && (o->wantgrad || o->wantloss)) {
    const Val *v = &r->v[md->loss];
    st = put(r, &res, md->node[md->loss].name, &md->node[md->loss].shape, v->x, NULL, v->npos * v->d);
  }
  for (int i = 0; !st && o->wantgrad && i < md->nnode; i++) {
    const MNode *n = &md->node[i];
    const Val *v = &r->v[i];
    for (int p = 0; !st && p < n->nparam; p++) {
      rndbuf(r, v->pg[p], v->pn[p]);
      st = put(r, &res, aprintf(r->a, "grad.%s", n->param[p].full), &n->param[p].shape,
               v->pg[p], NULL, v->pn[p]);
    }
    if (!st && n->kind == M_INPUT && n->dtype != DT_I32)
      st = put(r, &res, aprintf(r->a, "grad.%s", n->name), &n->shape, v->adj, NULL,
               v->npos * v->d);
  }
  if (!st && tset_move(out, &res) != RNNC_OK)
    st = interp_fail(r, RNNC_ENOMEM, "out of memory for the results");
  tset_clear(&res);
  return st;
}

int interp_run(Module *m, Model *md, const ModelGrad *g, Env *env, const TensorSet *params,
               const TensorSet *inputs, const InterpOpts *o, TensorSet *out, char *err,
               size_t errlen)
{
  Run run = {0}, *r = &run;
  r->m = m;
  r->md = md;
  r->g = g;
  r->prec = o->prec;
  r->wantgrad = o->wantgrad;
  r->err = err;
  r->errlen = errlen;
  if (err && errlen)
    err[0] = 0;
  if (o->wantgrad && md->loss < 0)
    return interp_fail(r, RNNC_EMISUSE, "model '%s' has no loss to differentiate", md->name);
  if (o->wantgrad && (!g || g->model != md))
    return interp_fail(r, RNNC_EMISUSE, "gradients of model '%s' need its autodiff plan", md->name);
  r->a = arena_new();
  r->v = aalloc(r->a, (size_t)(md->nnode ? md->nnode : 1) * sizeof *r->v);
  order(r);
  int st = bind_dims(r, env, params, inputs);
  if (!st)
    st = interp_forward(r, params, inputs);
  if (!st && o->wantgrad)
    interp_backward(r);
  if (!st)
    st = results(r, o, out);
  arena_free(r->a);
  return st;
}
