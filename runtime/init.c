/* init.c — parameter initialization as PyTorch's defaults do it.
 *
 * require: a verified model (n->param filled in model dims, cells resolved,
 * n->dimval set). produce: one F32 tensor per MParam, named by its full name.
 *   embedding (nn.Embedding)          N(0, 1)
 *   cell (nn.RNN / nn.GRU / nn.LSTM)  U(-k, k), k = 1/sqrt(H), H = size of the
 *                                     cell's first state (a stateless cell: of
 *                                     its first input, as nn.Linear would)
 *   softmax (nn.Linear)               weight and bias U(-k, k), k = 1/sqrt(d),
 *                                     d = fan-in (the weight's second dim)
 * One stream from the seed, drawn in node order, param order, row-major, on
 * one thread: the result depends on the seed and the sizes only. */
#include <math.h>
#include <stdarg.h>
#include <string.h>

#include "ir.h"

/* Evaluate d; on failure a message "<what>: ..." and RNNC_EINPUT. */
static int eval(Arena *a, Dim d, const Env *env, const char *what, long *v, char *err,
                size_t errlen)
{
  const char *bad = NULL;
  if (!dim_eval(d, env, v, &bad))
    return errorf(RNNC_EINPUT, err, errlen, "cannot initialize %s: dimension %s has no value", what,
                bad);
  if (*v < 0)
    return errorf(RNNC_EINPUT, err, errlen, "cannot initialize %s: dimension %s is %ld", what,
                dim_str(a, d), *v);
  return RNNC_OK;
}

/* The scale k of a cell node's U(-k, k): 1/sqrt of its first state's size
 * (or first input's), in model dims through n->dimval. */
static int cell_bound(Arena *a, const MNode *n, const Env *env, double *k, char *err,
                      size_t errlen)
{
  const Cell *c = n->cell;
  int leaf = c->nstate ? c->state[0] : c->ninput ? c->input[0] : -1;
  const char *what = n->nparam ? n->param[0].full : "a cell";
  if (leaf < 0)
    return errorf(RNNC_EINPUT, err, errlen, "cannot initialize %s: cell %s has no state or input "
                "to size it", what, c->name);
  const Shape *s = &c->node[leaf].shape;
  long size = 1;
  for (int i = 0; i < s->rank; i++) {
    Dim d;
    long v;
    if (!dim_subst(s->d[i], c->ndim, c->dim, n->dimval, &d))
      return errorf(RNNC_EINPUT, err, errlen, "cannot initialize %s: the size of %s %s is too "
                  "complex a dimension", what, c->nstate ? "state" : "input",
                  c->node[leaf].name);
    int st = eval(a, d, env, what, &v, err, errlen);
    if (st != RNNC_OK)
      return st;
    size *= v;
  }
  *k = size > 0 ? 1.0 / sqrt((double)size) : 0.0;
  return RNNC_OK;
}

/* The scale k of a softmax node: 1/sqrt(fan-in), the weight [K, d]'s d. */
static int softmax_bound(Arena *a, const MNode *n, const Env *env, double *k, char *err,
                         size_t errlen)
{
  for (int i = 0; i < n->nparam; i++) {
    const MParam *p = &n->param[i];
    if (strcmp(p->name, "weight") != 0)
      continue;
    if (p->shape.rank != 2)
      die("softmax weight %s has rank %d", p->full, p->shape.rank);
    long d;
    int st = eval(a, p->shape.d[1], env, p->full, &d, err, errlen);
    if (st != RNNC_OK)
      return st;
    *k = d > 0 ? 1.0 / sqrt((double)d) : 0.0;
    return RNNC_OK;
  }
  die("softmax node without a weight parameter");
}

/* The caller's bindings, then the model's defaults for dims still unbound. */
static Env with_defaults(Arena *a, const Model *md, const Env *env)
{
  Env e = {0};
  for (int i = 0; env && i < env->n; i++)
    env_set(a, &e, env->sym[i], env->val[i]);
  for (int i = 0; i < md->ndim; i++) {
    long v;
    if (md->dim[i].hasdefault && !env_get(&e, md->dim[i].name, &v))
      env_set(a, &e, md->dim[i].name, md->dim[i].def);
  }
  return e;
}

int init_params(const Model *md, const Env *env, uint64_t seed, TensorSet *out, char *err,
                size_t errlen)
{
  Arena *a = arena_new();
  Env e = with_defaults(a, md, env);
  TensorSet tmp;
  tset_init(&tmp);
  Rng r;
  rng_seed(&r, seed);
  int st = RNNC_OK;
  for (int i = 0; st == RNNC_OK && i < md->nnode; i++) {
    const MNode *n = &md->node[i];
    if (n->nparam == 0)
      continue;
    int normal = 0;
    double k = 0;
    switch (n->kind) {
    case M_EMBEDDING: normal = 1; break;
    case M_CELL: st = cell_bound(a, n, &e, &k, err, errlen); break;
    case M_SOFTMAX: st = softmax_bound(a, n, &e, &k, err, errlen); break;
    default: die("no init rule for %s parameters", mkind_name[n->kind]);
    }
    for (int j = 0; st == RNNC_OK && j < n->nparam; j++) {
      const MParam *p = &n->param[j];
      int64_t dim[TENSOR_MAXRANK];
      for (int d = 0; st == RNNC_OK && d < p->shape.rank; d++) {
        long v = 0;
        st = eval(a, p->shape.d[d], &e, p->full, &v, err, errlen);
        dim[d] = v;
      }
      if (st != RNNC_OK)
        break;
      Tensor *t = tset_add(&tmp, p->full, DT_F32, p->shape.rank, dim);
      if (!t) {
        st = errorf(RNNC_ENOMEM, err, errlen, "out of memory for parameter %s", p->full);
        break;
      }
      float *w = t->data; /* row-major, shape dim[0..rank) */
      int64_t m = tensor_numel(t);
      for (int64_t x = 0; x < m; x++)
        w[x] = (float)(normal ? rng_normal(&r) : k * (2.0 * rng_uniform(&r) - 1.0));
    }
  }
  if (st == RNNC_OK && tset_move(out, &tmp) != RNNC_OK)
    st = errorf(RNNC_ENOMEM, err, errlen, "out of memory for the parameters");
  tset_clear(&tmp);
  arena_free(a);
  return st;
}
