/* interp_model.c — the reference interpreter, model level: interp_run.
 * require: a verified model (node shapes, cells, params, md->loss) and, for
 * gradients, its ModelGrad from autodiff. produce: the declared outputs and,
 * with wantgrad, the loss and grad.<node>.<param> / grad.<input> tensors
 * (float inputs but masks).
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
 * This file orders the nodes and writes the results; bind.c binds the dims
 * and checks the tensors, interp_forward.c runs each node kind forward and
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
    if (!st && n->kind == M_INPUT && n->dtype != DT_I32 && !mnode_is_mask(n))
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
  if (env)
    for (int i = 0; i < env->n; i++)
      env_set(r->a, &r->env, env->sym[i], env->val[i]);
  int st = bind_dims(m, md, &r->env, params, inputs, r->a, err, errlen);
  if (!st)
    st = interp_forward(r, params, inputs);
  if (!st && o->wantgrad)
    interp_backward(r);
  if (!st)
    st = results(r, o, out);
  arena_free(r->a);
  return st;
}
