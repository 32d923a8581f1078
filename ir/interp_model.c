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
 * is rounded to float. */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

/* Per model node. */
typedef struct Val {
  long T;        /* time steps when the node has a time axis, else 0 */
  long npos, d;  /* positions and elements per position */
  double *x;     /* float value: npos*d (softmax with a target: the loss) */
  long *id;      /* integer value (token ids, targets): npos */
  double *adj;   /* adjoint of x (wantgrad) */
  /* parameters, in MNode.param order */
  double **pv;   /* values */
  double **pg;   /* gradients (wantgrad) */
  long *pn;      /* element counts */
  /* M_SOFTMAX: z, p and dz are (npos, K) */
  long K;
  double *z, *p, *dz;
  /* M_CELL */
  Env cenv;      /* the cell's dims */
  double **fin;  /* per state: (B, d_s), the state after the last step applied */
  double **finadj; /* per state: adjoint of fin */
  long *sd;      /* per state: d_s */
  double *saved; /* (T, B, savesz): what the backward cell reads, per step */
  long savesz;
  long *saveoff; /* per Grad saved[i]: offset within one step's record */
} Val;

typedef struct Run {
  Module *m;
  Model *md;
  const ModelGrad *g;
  Arena *a;      /* everything of this run; freed at the end */
  Env env;       /* model dims */
  int prec, wantgrad;
  Val *v;
  int *order;    /* node ids, each after its operands */
  char *err;
  size_t errlen;
} Run;

static int fail(Run *r, int code, const char *fmt, ...)
{
  if (r->err && r->errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err, r->errlen, fmt, ap);
    va_end(ap);
  }
  return code;
}

static double rnd(const Run *r, double v) { return r->prec == PREC_F32 ? (double)(float)v : v; }

static void rndbuf(const Run *r, double *x, long n)
{
  for (long e = 0; e < n; e++)
    x[e] = rnd(r, x[e]);
}

static double *dalloc(Run *r, long n) { return aalloc(r->a, (size_t)(n > 0 ? n : 1) * sizeof(double)); }

static const char *nodename(const Run *r, int i)
{
  const MNode *n = &r->md->node[i];
  return n->name ? n->name : mkind_name[n->kind];
}

/* The value of a model dim; RNNC_EINPUT when a symbol is unbound. */
static int mdim(Run *r, Dim d, long *out)
{
  const char *bad = NULL;
  if (!dim_eval(d, &r->env, out, &bad))
    return fail(r, RNNC_EINPUT, "dimension '%s' is not bound: give it a value", bad);
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
      return fail(r, RNNC_EINPUT, "missing input '%s'", n->name);
    if (n->dtype == DT_I32 ? !isint(t->dtype) : isint(t->dtype))
      return fail(r, RNNC_ESHAPE, "input '%s' has dtype %s, expected %s", n->name,
                  dtype_name(t->dtype), n->dtype == DT_I32 ? "I32 or I64" : "F32 or F64");
    APUSH(r->a, bd, nb, cap, ((Bound){"input", n->name, &n->shape, t}));
  }
  for (int i = 0; i < md->nnode; i++) {
    const MNode *n = &md->node[i];
    for (int p = 0; p < n->nparam; p++) {
      const Tensor *t = params ? tset_find(params, n->param[p].full) : NULL;
      if (!t)
        return fail(r, RNNC_EINPUT, "missing parameter '%s'", n->param[p].full);
      if (isint(t->dtype))
        return fail(r, RNNC_ESHAPE, "parameter '%s' has dtype %s, expected F32 or F64",
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
        return fail(r, RNNC_EINPUT,
                    "dimension '%s' of %s '%s' is not bound: give it a value", bad,
                    bd[k].what, bd[k].name);
      ok = v == t->dim[j];
    }
    if (!ok)
      return fail(r, RNNC_ESHAPE, "%s '%s' has shape %s, expected %s", bd[k].what, bd[k].name,
                  tshape_str(r->a, t), expected_str(r, s));
  }
  return RNNC_OK;
}

/* ---- values -------------------------------------------------------------- */

/* The layout of node i from its shape: positions × d. */
static int layout(Run *r, int i)
{
  const MNode *n = &r->md->node[i];
  Val *v = &r->v[i];
  long dv[SHAPE_MAXRANK];
  for (int k = 0; k < n->shape.rank; k++) {
    int st = mdim(r, n->shape.d[k], &dv[k]);
    if (st)
      return st;
  }
  v->T = 0;
  v->npos = 1;
  v->d = 1;
  if (n->hastime) {
    v->T = dv[0];
    v->npos = dv[0] * dv[1];
    v->d = n->shape.rank == 3 ? dv[2] : 1;
  } else if (n->shape.rank >= 1) {
    v->npos = dv[0];
    v->d = n->shape.rank == 2 ? dv[1] : 1;
  }
  return RNNC_OK;
}

/* Copy a tensor into doubles (rounded to float in PREC_F32). */
static void load_float(const Run *r, const Tensor *t, double *dst, long n)
{
  for (long e = 0; e < n; e++) {
    double x = t->dtype == DT_F32 ? (double)((const float *)t->data)[e] : ((const double *)t->data)[e];
    dst[e] = rnd(r, x);
  }
}

static long load_int(const Tensor *t, long e)
{
  return t->dtype == DT_I32 ? (long)((const int32_t *)t->data)[e] : (long)((const int64_t *)t->data)[e];
}

/* "[3, 1]" for position p of an integer node with a time axis, else "[1]". */
static char *posstr(Run *r, int i, long p)
{
  const Val *v = &r->v[i];
  if (v->T) {
    long B = v->npos / v->T;
    return aprintf(r->a, "[%ld, %ld]", p / B, p % B);
  }
  return aprintf(r->a, "[%ld]", p);
}

static int param_index(const MNode *n, const char *name)
{
  for (int p = 0; p < n->nparam; p++)
    if (strcmp(n->param[p].name, name) == 0)
      return p;
  die("node '%s' has no parameter '%s'", n->name ? n->name : "?", name);
}

static int load_params(Run *r, int i, const TensorSet *params)
{
  const MNode *n = &r->md->node[i];
  Val *v = &r->v[i];
  if (!n->nparam)
    return RNNC_OK;
  v->pv = aalloc(r->a, (size_t)n->nparam * sizeof *v->pv);
  v->pg = aalloc(r->a, (size_t)n->nparam * sizeof *v->pg);
  v->pn = aalloc(r->a, (size_t)n->nparam * sizeof *v->pn);
  for (int p = 0; p < n->nparam; p++) {
    const Tensor *t = tset_find(params, n->param[p].full);
    v->pn[p] = (long)tensor_numel(t);
    v->pv[p] = dalloc(r, v->pn[p]);
    load_float(r, t, v->pv[p], v->pn[p]);
    if (r->wantgrad)
      v->pg[p] = dalloc(r, v->pn[p]);
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

/* ---- forward, per node kind ---------------------------------------------- */

static int fwd_input(Run *r, int i, const TensorSet *inputs)
{
  const MNode *n = &r->md->node[i];
  Val *v = &r->v[i];
  const Tensor *t = tset_find(inputs, n->name);
  long ne = v->npos * v->d;
  if (n->dtype == DT_I32) {
    v->id = aalloc(r->a, (size_t)(ne > 0 ? ne : 1) * sizeof *v->id);
    for (long e = 0; e < ne; e++)
      v->id[e] = load_int(t, e);
  } else {
    v->x = dalloc(r, ne);
    load_float(r, t, v->x, ne);
  }
  return RNNC_OK;
}

/* x[p] = weight[tokens[p]]: tokens (T, B) -> x (T, B, E); weight (V, E) */
static int fwd_embedding(Run *r, int i)
{
  const MNode *n = &r->md->node[i];
  Val *v = &r->v[i];
  int tok = n->arg[0];
  long V, E = v->d;
  int st = mdim(r, n->size[0], &V);
  if (st)
    return st;
  const double *W = v->pv[param_index(n, "weight")];
  v->x = dalloc(r, v->npos * E);
  for (long p = 0; p < v->npos; p++) {
    long id = r->v[tok].id[p];
    if (id < 0 || id >= V)
      return fail(r, RNNC_EINPUT, "input '%s' has token id %ld at %s, outside [0, %ld)",
                  nodename(r, tok), id, posstr(r, tok, p), V);
    for (long e = 0; e < E; e++)
      v->x[p * E + e] = W[id * E + e];
  }
  return RNNC_OK;
}

/* Buffers for one step of cell c: val[k] of node_numel doubles for every
 * node that is not a leaf the caller points elsewhere. */
static double **cell_bufs(Run *r, const Cell *c, const Env *cenv)
{
  double **val = aalloc(r->a, (size_t)c->nnode * sizeof *val);
  for (int k = 0; k < c->nnode; k++)
    val[k] = dalloc(r, node_numel(c, k, cenv));
  return val;
}

/* Position of step t, example b of operand node j (broadcast over time when
 * the operand has no time axis). */
static long opos(const Run *r, int j, long t, long b, long B)
{
  return r->v[j].T ? t * B + b : b;
}

/* Apply a cell over time. x_j (T, B, I_j) are the operands; h is the state:
 * for each state s, h_s starts as zeros / init[s] (B, d_s) / the final state
 * s of node initfrom, and after step t it is the cell's update next[s].
 * Forward direction processes t = 1..T, backward t = T..1; out (T, B, d) at
 * step t is the cell's out[0] there, whatever the direction. With wantgrad
 * the Grad's saved nodes are kept per step in saved (T, B, savesz). */
static int fwd_cell(Run *r, int i)
{
  const MNode *n = &r->md->node[i];
  Val *v = &r->v[i];
  const Cell *c = n->cell;
  long T = v->T, B = T ? v->npos / T : 0, D = v->d;

  for (int k = 0; k < c->ndim; k++) {
    long x;
    int st = mdim(r, n->dimval[k], &x);
    if (st)
      return st;
    env_set(r->a, &v->cenv, c->dim[k], x);
  }
  if (n->narg != c->ninput || c->nout < 1)
    die("node '%s': %d operands for cell '%s' with %d inputs", nodename(r, i), n->narg,
        c->name, c->ninput);
  if (node_numel(c, c->out[0], &v->cenv) != D)
    die("node '%s': output size mismatch", nodename(r, i));
  for (int j = 0; j < c->ninput; j++)
    if (node_numel(c, c->input[j], &v->cenv) != r->v[n->arg[j]].d)
      die("node '%s': operand %d size mismatch", nodename(r, i), j);

  double **val = cell_bufs(r, c, &v->cenv);
  for (int p = 0; p < c->nparam; p++) {
    if (c->node[c->param[p]].name != n->param[p].name)
      die("node '%s': parameter %d is '%s', the cell's is '%s'", nodename(r, i), p,
          n->param[p].name, c->node[c->param[p]].name);
    val[c->param[p]] = v->pv[p];
  }

  /* State per example: h[s] is (B, d_s). */
  int ns = c->nstate;
  v->sd = aalloc(r->a, (size_t)(ns ? ns : 1) * sizeof *v->sd);
  v->fin = aalloc(r->a, (size_t)(ns ? ns : 1) * sizeof *v->fin);
  v->finadj = aalloc(r->a, (size_t)(ns ? ns : 1) * sizeof *v->finadj);
  double **tmp = aalloc(r->a, (size_t)(ns ? ns : 1) * sizeof *tmp);
  for (int s = 0; s < ns; s++) {
    v->sd[s] = node_numel(c, c->state[s], &v->cenv);
    v->fin[s] = dalloc(r, B * v->sd[s]);
    v->finadj[s] = dalloc(r, B * v->sd[s]);
    tmp[s] = dalloc(r, v->sd[s]);
    if (c->next[s] < 0)
      die("cell '%s': state %d is never updated", c->name, s);
    /* the initial state, into fin (which holds the current state from here) */
    const double *src = NULL;
    if (n->ninit) {
      src = r->v[n->init[s]].x;
      if (r->v[n->init[s]].npos != B || r->v[n->init[s]].d != v->sd[s])
        die("node '%s': initial state %d has the wrong size", nodename(r, i), s);
    } else if (n->initfrom >= 0) {
      const Val *f = &r->v[n->initfrom];
      if (!f->fin || s >= r->md->node[n->initfrom].cell->nstate)
        die("node '%s': init node has no state %d", nodename(r, i), s);
      src = f->fin[s];
    }
    if (src)
      memcpy(v->fin[s], src, (size_t)(B * v->sd[s]) * sizeof(double));
  }

  /* What the backward cell reads, per step. */
  const Grad *gr = r->wantgrad ? r->g->cellgrad[i] : NULL;
  if (r->wantgrad) {
    if (!gr)
      die("node '%s': no Grad for cell '%s'", nodename(r, i), c->name);
    v->saveoff = aalloc(r->a, (size_t)(gr->nsaved ? gr->nsaved : 1) * sizeof *v->saveoff);
    v->savesz = 0;
    for (int k = 0; k < gr->nsaved; k++) {
      v->saveoff[k] = v->savesz;
      v->savesz += node_numel(c, gr->saved[k], &v->cenv);
    }
    v->saved = dalloc(r, T * B * v->savesz);
  }

  v->x = dalloc(r, v->npos * D);
  for (long step = 0; step < T; step++) {
    long t = n->backward ? T - 1 - step : step;
    for (long b = 0; b < B; b++) {
      for (int j = 0; j < c->ninput; j++) {
        int a = n->arg[j];
        val[c->input[j]] = r->v[a].x + opos(r, a, t, b, B) * r->v[a].d;
      }
      for (int s = 0; s < ns; s++)
        val[c->state[s]] = v->fin[s] + b * v->sd[s];
      cell_eval(c, &v->cenv, val, r->prec);
      memcpy(v->x + (t * B + b) * D, val[c->out[0]], (size_t)D * sizeof(double));
      if (gr)
        for (int k = 0; k < gr->nsaved; k++)
          memcpy(v->saved + (t * B + b) * v->savesz + v->saveoff[k], val[gr->saved[k]],
                 (size_t)node_numel(c, gr->saved[k], &v->cenv) * sizeof(double));
      /* h = h' (through tmp: an update may be another state's old value) */
      for (int s = 0; s < ns; s++)
        memcpy(tmp[s], val[c->next[s]], (size_t)v->sd[s] * sizeof(double));
      for (int s = 0; s < ns; s++)
        memcpy(v->fin[s] + b * v->sd[s], tmp[s], (size_t)v->sd[s] * sizeof(double));
    }
  }
  return RNNC_OK;
}

/* concat along the last dim: x_j (npos, d_j) -> y (npos, Σ d_j) */
static void fwd_concat(Run *r, int i)
{
  const MNode *n = &r->md->node[i];
  Val *v = &r->v[i];
  v->x = dalloc(r, v->npos * v->d);
  long off = 0;
  for (int j = 0; j < n->narg; j++) {
    const Val *a = &r->v[n->arg[j]];
    for (long p = 0; p < v->npos; p++)
      memcpy(v->x + p * v->d + off, a->x + p * a->d, (size_t)a->d * sizeof(double));
    off += a->d;
  }
  if (off != v->d)
    die("concat '%s': %ld of %ld elements", nodename(r, i), off, v->d);
}

/* last: x (T, B, d) -> y (B, d) = x[T-1] */
static void fwd_last(Run *r, int i)
{
  Val *v = &r->v[i];
  const Val *a = &r->v[r->md->node[i].arg[0]];
  v->x = dalloc(r, v->npos * v->d);
  if (a->T)
    memcpy(v->x, a->x + (a->T - 1) * v->npos * v->d, (size_t)(v->npos * v->d) * sizeof(double));
}

/* final(node, s): y (B, d_s) = the state s after node's last step */
static void fwd_final(Run *r, int i)
{
  const MNode *n = &r->md->node[i];
  Val *v = &r->v[i];
  const Val *a = &r->v[n->arg[0]];
  if (!a->fin || n->stateidx < 0 || a->sd[n->stateidx] != v->d)
    die("final '%s': no such state", nodename(r, i));
  v->x = dalloc(r, v->npos * v->d);
  memcpy(v->x, a->fin[n->stateidx], (size_t)(v->npos * v->d) * sizeof(double));
}

/* softmax(x, K [, target]): x (npos, d); weight (K, d), bias (K)
 *   z[p, k] = Σ_j weight[k, j] x[p, j] + bias[k]          logits (npos, K)
 *   p[p, k] = exp(z[p, k] - lse_p), lse_p = log Σ_k exp(z[p, k])   (max-shifted)
 * With a target y (npos): loss = -(1/count) Σ_{p counted} (z[p, y_p] - lse_p),
 * count = positions whose target is not the ignore index; 0 when count = 0. */
static int fwd_softmax(Run *r, int i)
{
  const MNode *n = &r->md->node[i];
  Val *v = &r->v[i];
  const Val *a = &r->v[n->arg[0]];
  int st = mdim(r, n->size[0], &v->K);
  if (st)
    return st;
  long K = v->K, d = a->d, np = a->npos;
  const double *W = v->pv[param_index(n, "weight")], *bias = v->pv[param_index(n, "bias")];
  v->z = dalloc(r, np * K);
  v->p = dalloc(r, np * K);
  if (r->wantgrad)
    v->dz = dalloc(r, np * K);
  double *lse = dalloc(r, np);
  for (long p = 0; p < np; p++) {
    double *z = v->z + p * K, *pr = v->p + p * K;
    for (long k = 0; k < K; k++) {
      double s = 0;
      for (long j = 0; j < d; j++)
        s += W[k * d + j] * a->x[p * d + j];
      z[k] = rnd(r, s + bias[k]);
    }
    double mx = -INFINITY, sum = 0;
    for (long k = 0; k < K; k++)
      mx = z[k] > mx ? z[k] : mx;
    for (long k = 0; k < K; k++)
      sum += exp(z[k] - mx);
    lse[p] = mx + log(sum);
    for (long k = 0; k < K; k++)
      pr[k] = rnd(r, exp(z[k] - lse[p]));
  }
  if (n->target < 0) {
    v->x = v->p; /* probs [.., K] */
    return RNNC_OK;
  }
  const Val *y = &r->v[n->target];
  if (y->npos != np)
    die("softmax '%s': %ld targets for %ld positions", nodename(r, i), y->npos, np);
  double total = 0;
  long count = 0;
  for (long p = 0; p < np; p++) {
    long t = y->id[p];
    if (n->hasignore && t == n->ignore)
      continue;
    if (t < 0 || t >= K) {
      char ign[64] = "";
      if (n->hasignore)
        snprintf(ign, sizeof ign, " and not the ignore index %ld", n->ignore);
      return fail(r, RNNC_EINPUT, "input '%s' has target %ld at %s, outside [0, %ld)%s",
                  nodename(r, n->target), t, posstr(r, n->target, p), K, ign);
    }
    total += -(v->z[p * K + t] - lse[p]);
    count++;
  }
  v->x = dalloc(r, 1);
  v->x[0] = count ? rnd(r, total / (double)count) : 0.0;
  return RNNC_OK;
}

/* sum(x): y [] = Σ_e x[e] */
static void fwd_sum(Run *r, int i)
{
  Val *v = &r->v[i];
  const Val *a = &r->v[r->md->node[i].arg[0]];
  double s = 0;
  for (long e = 0; e < a->npos * a->d; e++)
    s += a->x[e];
  v->x = dalloc(r, 1);
  v->x[0] = rnd(r, s);
}

static int forward(Run *r, const TensorSet *params, const TensorSet *inputs)
{
  Model *md = r->md;
  for (int k = 0; k < md->nnode; k++) {
    int i = r->order[k];
    const MNode *n = &md->node[i];
    Val *v = &r->v[i];
    int st = layout(r, i);
    if (!st)
      st = load_params(r, i, params);
    if (st)
      return st;
    switch (n->kind) {
    case M_INPUT: st = fwd_input(r, i, inputs); break;
    case M_EMBEDDING: st = fwd_embedding(r, i); break;
    case M_CELL: st = fwd_cell(r, i); break;
    case M_CONCAT: fwd_concat(r, i); break;
    case M_LAST: fwd_last(r, i); break;
    case M_FINAL: fwd_final(r, i); break;
    case M_SOFTMAX: st = fwd_softmax(r, i); break;
    case M_LOGITS: v->x = r->v[n->arg[0]].z; break;
    case M_PROBS: v->x = r->v[n->arg[0]].p; break;
    case M_SUM: fwd_sum(r, i); break;
    default: die("interp: node kind %d", n->kind);
    }
    if (st)
      return st;
    if (r->wantgrad && n->dtype != DT_I32)
      v->adj = dalloc(r, v->npos * v->d);
  }
  return RNNC_OK;
}

/* ---- backward, per node kind: each adds into its operands' adjoints ------ */

/* weight[tokens[p]] += adj[p]: a scatter-add of rows into grad weight (V, E) */
static void bwd_embedding(Run *r, int i)
{
  const MNode *n = &r->md->node[i];
  Val *v = &r->v[i];
  const long *tok = r->v[n->arg[0]].id;
  double *dW = v->pg[param_index(n, "weight")];
  for (long p = 0; p < v->npos; p++)
    for (long e = 0; e < v->d; e++)
      dW[tok[p] * v->d + e] += v->adj[p * v->d + e];
}

/* Backward through time of a cell node, with its Grad's backward cell bwd:
 * the state adjoints dh (per state (B, d_s)) start as the adjoint of the
 * final states; steps run in the reverse of the forward processing order
 * (forward direction t = T..1, backward direction t = 1..T). At each step and
 * example bwd reads the saved values, the adjoint of the output at t and dh
 * (the adjoint of h'), and gives dh for the old h, the adjoints of the inputs
 * at t and each parameter's gradient, summed over steps and examples. What is
 * left in dh at the end is the adjoint of the initial state. */
static void bwd_cell(Run *r, int i)
{
  const MNode *n = &r->md->node[i];
  Val *v = &r->v[i];
  const Cell *c = n->cell;
  const Grad *gr = r->g->cellgrad[i];
  const Cell *bc = gr->bwd;
  long T = v->T, B = T ? v->npos / T : 0, D = v->d;
  int ns = c->nstate;
  if (bc->ninput != gr->nsaved + c->nout || bc->nstate != ns || bc->nparam != c->nparam ||
      bc->nout != c->ninput)
    die("backward cell '%s' does not match cell '%s'", bc->name, c->name);

  double **val = cell_bufs(r, bc, &v->cenv);
  for (int p = 0; p < bc->nparam; p++)
    val[bc->param[p]] = v->pv[p];
  /* adjoints of outputs other than out[0]: not model values, zero */
  for (int j = 1; j < c->nout; j++)
    val[bc->input[gr->nsaved + j]] = dalloc(r, node_numel(bc, bc->input[gr->nsaved + j], &v->cenv));

  double **dh = v->finadj; /* (B, d_s) per state, from here the running adjoint */
  double **tmp = aalloc(r->a, (size_t)(ns ? ns : 1) * sizeof *tmp);
  for (int s = 0; s < ns; s++) {
    rndbuf(r, dh[s], B * v->sd[s]);
    tmp[s] = dalloc(r, v->sd[s]);
  }

  for (long step = T - 1; step >= 0; step--) {
    long t = n->backward ? T - 1 - step : step;
    for (long b = 0; b < B; b++) {
      for (int k = 0; k < gr->nsaved; k++)
        val[bc->input[k]] = v->saved + (t * B + b) * v->savesz + v->saveoff[k];
      val[bc->input[gr->nsaved]] = v->adj + (t * B + b) * D;
      for (int s = 0; s < ns; s++)
        val[bc->state[s]] = dh[s] + b * v->sd[s];
      cell_eval(bc, &v->cenv, val, r->prec);
      for (int s = 0; s < ns; s++) {
        if (bc->next[s] >= 0)
          memcpy(tmp[s], val[bc->next[s]], (size_t)v->sd[s] * sizeof(double));
        else
          memset(tmp[s], 0, (size_t)v->sd[s] * sizeof(double));
      }
      for (int s = 0; s < ns; s++)
        memcpy(dh[s] + b * v->sd[s], tmp[s], (size_t)v->sd[s] * sizeof(double));
      for (int p = 0; p < bc->nparam; p++)
        if (bc->grad[p] >= 0) {
          const double *gp = val[bc->grad[p]];
          for (long e = 0; e < v->pn[p]; e++)
            v->pg[p][e] += gp[e];
        }
      for (int j = 0; j < c->ninput; j++) {
        Val *a = &r->v[n->arg[j]];
        const double *dx = val[bc->out[j]];
        double *ax = a->adj + opos(r, n->arg[j], t, b, B) * a->d;
        for (long e = 0; e < a->d; e++)
          ax[e] += dx[e];
      }
    }
  }

  /* dh is now the adjoint of the initial state */
  for (int s = 0; s < ns; s++) {
    double *to = NULL;
    if (n->ninit)
      to = r->v[n->init[s]].adj;
    else if (n->initfrom >= 0)
      to = r->v[n->initfrom].finadj[s];
    if (to)
      for (long e = 0; e < B * v->sd[s]; e++)
        to[e] += dh[s][e];
  }
}

/* concat: y (npos, Σ d_j) -> adjoint slices to x_j (npos, d_j) */
static void bwd_concat(Run *r, int i)
{
  const MNode *n = &r->md->node[i];
  Val *v = &r->v[i];
  long off = 0;
  for (int j = 0; j < n->narg; j++) {
    Val *a = &r->v[n->arg[j]];
    for (long p = 0; p < v->npos; p++)
      for (long e = 0; e < a->d; e++)
        a->adj[p * a->d + e] += v->adj[p * v->d + off + e];
    off += a->d;
  }
}

/* Softmax backward. dz (npos, K) already holds what logits(s) and probs(s)
 * views added; with a target, the loss adds g (p - onehot(y)) / count at
 * counted positions; without, the probs adjoint goes through the softmax
 * Jacobian. Then x, weight and bias from dz:
 *   dx[p, j] += Σ_k weight[k, j] dz[p, k]
 *   dweight[k, j] += Σ_p dz[p, k] x[p, j]      dbias[k] += Σ_p dz[p, k] */
static void softmax_jvp_t(long K, const double *pr, const double *dp, double *dz)
{
  /* dz_k += p_k (dp_k - Σ_j p_j dp_j) */
  double s = 0;
  for (long k = 0; k < K; k++)
    s += pr[k] * dp[k];
  for (long k = 0; k < K; k++)
    dz[k] += pr[k] * (dp[k] - s);
}

static void bwd_softmax(Run *r, int i)
{
  const MNode *n = &r->md->node[i];
  Val *v = &r->v[i];
  Val *a = &r->v[n->arg[0]];
  long K = v->K, d = a->d, np = a->npos;
  if (n->target >= 0) {
    const long *y = r->v[n->target].id;
    long count = 0;
    for (long p = 0; p < np; p++)
      count += !(n->hasignore && y[p] == n->ignore);
    double g = v->adj[0];
    for (long p = 0; count && p < np; p++) {
      if (n->hasignore && y[p] == n->ignore)
        continue;
      for (long k = 0; k < K; k++)
        v->dz[p * K + k] += g * (v->p[p * K + k] - (k == y[p])) / (double)count;
    }
  } else {
    for (long p = 0; p < np; p++)
      softmax_jvp_t(K, v->p + p * K, v->adj + p * K, v->dz + p * K);
  }
  rndbuf(r, v->dz, np * K);
  const double *W = v->pv[param_index(n, "weight")];
  double *dW = v->pg[param_index(n, "weight")], *db = v->pg[param_index(n, "bias")];
  for (long p = 0; p < np; p++) {
    const double *dz = v->dz + p * K, *x = a->x + p * d;
    for (long j = 0; j < d; j++) {
      double s = 0;
      for (long k = 0; k < K; k++)
        s += W[k * d + j] * dz[k];
      a->adj[p * d + j] += s;
    }
    for (long k = 0; k < K; k++) {
      for (long j = 0; j < d; j++)
        dW[k * d + j] += dz[k] * x[j];
      db[k] += dz[k];
    }
  }
}

static void backward(Run *r)
{
  Model *md = r->md;
  Val *L = &r->v[md->loss];
  for (long e = 0; e < L->npos * L->d; e++)
    L->adj[e] = 1;
  /* Nodes that do not lead to the loss have zero adjoints: harmless. */
  for (int k = md->nnode - 1; k >= 0; k--) {
    int i = r->order[k];
    const MNode *n = &md->node[i];
    Val *v = &r->v[i];
    if (n->dtype == DT_I32)
      continue;
    rndbuf(r, v->adj, v->npos * v->d); /* every consumer has added to it */
    switch (n->kind) {
    case M_INPUT: break;
    case M_EMBEDDING: bwd_embedding(r, i); break;
    case M_CELL: bwd_cell(r, i); break;
    case M_CONCAT: bwd_concat(r, i); break;
    case M_LAST: {
      /* y (B, d) = x[T-1] */
      Val *a = &r->v[n->arg[0]];
      if (a->T)
        for (long e = 0; e < v->npos * v->d; e++)
          a->adj[(a->T - 1) * v->npos * v->d + e] += v->adj[e];
      break;
    }
    case M_FINAL: {
      Val *a = &r->v[n->arg[0]];
      for (long e = 0; e < v->npos * v->d; e++)
        a->finadj[n->stateidx][e] += v->adj[e];
      break;
    }
    case M_SOFTMAX: bwd_softmax(r, i); break;
    case M_LOGITS: {
      Val *s = &r->v[n->arg[0]];
      for (long e = 0; e < v->npos * v->d; e++)
        s->dz[e] += v->adj[e];
      break;
    }
    case M_PROBS: {
      Val *s = &r->v[n->arg[0]];
      for (long p = 0; p < v->npos; p++)
        softmax_jvp_t(s->K, s->p + p * s->K, v->adj + p * s->K, s->dz + p * s->K);
      break;
    }
    case M_SUM: {
      /* y = Σ x: dx[e] += dy */
      Val *a = &r->v[n->arg[0]];
      for (long e = 0; e < a->npos * a->d; e++)
        a->adj[e] += v->adj[0];
      break;
    }
    default: die("interp: node kind %d", n->kind);
    }
  }
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
    int st = mdim(r, shape->d[k], &dv);
    if (st)
      return st;
    dim[k] = dv;
  }
  int dt = id ? DT_I32 : r->prec == PREC_F32 ? DT_F32 : DT_F64;
  Tensor *t = tset_add(out, name, dt, rank, dim);
  if (!t)
    return fail(r, RNNC_ENOMEM, "out of memory for tensor '%s'", name);
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
    st = fail(r, RNNC_ENOMEM, "out of memory for the results");
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
    return fail(r, RNNC_EMISUSE, "model '%s' has no loss to differentiate", md->name);
  if (o->wantgrad && (!g || g->model != md))
    return fail(r, RNNC_EMISUSE, "gradients of model '%s' need its autodiff plan", md->name);
  r->a = arena_new();
  r->v = aalloc(r->a, (size_t)(md->nnode ? md->nnode : 1) * sizeof *r->v);
  order(r);
  int st = bind_dims(r, env, params, inputs);
  if (!st)
    st = forward(r, params, inputs);
  if (!st && o->wantgrad)
    backward(r);
  if (!st)
    st = results(r, o, out);
  arena_free(r->a);
  return st;
}
