/* interp_forward.c — the reference interpreter's forward pass: each model
 * node's value from its operands (and, with wantgrad, what backward reads). */
#include <math.h>
#include <string.h>

#include "interp.h"

/* ---- values -------------------------------------------------------------- */

/* The layout of node i from its shape: positions × d. */
static int layout(Run *r, int i)
{
  const MNode *n = &r->md->node[i];
  Val *v = &r->v[i];
  long dv[SHAPE_MAXRANK];
  for (int k = 0; k < n->shape.rank; k++) {
    int st = interp_mdim(r, n->shape.d[k], &dv[k]);
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

int interp_param_index(const MNode *n, const char *name)
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
  int st = interp_mdim(r, n->size[0], &V);
  if (st)
    return st;
  const double *W = v->pv[interp_param_index(n, "weight")];
  v->x = dalloc(r, v->npos * E);
  for (long p = 0; p < v->npos; p++) {
    long id = r->v[tok].id[p];
    if (id < 0 || id >= V)
      return interp_fail(r, RNNC_EINPUT, "input '%s' has token id %ld at %s, outside [0, %ld)",
                         nodename(r, tok), id, posstr(r, tok, p), V);
    for (long e = 0; e < E; e++)
      v->x[p * E + e] = W[id * E + e];
  }
  return RNNC_OK;
}

/* x[p, e] = (e == tokens[p]): tokens (T, B) -> x (T, B, V) */
static int fwd_onehot(Run *r, int i)
{
  const MNode *n = &r->md->node[i];
  Val *v = &r->v[i];
  int tok = n->arg[0];
  long V = v->d;
  v->x = dalloc(r, v->npos * V);
  for (long p = 0; p < v->npos; p++) {
    long id = r->v[tok].id[p];
    if (id < 0 || id >= V)
      return interp_fail(r, RNNC_EINPUT, "input '%s' has token id %ld at %s, outside [0, %ld)",
                         nodename(r, tok), id, posstr(r, tok, p), V);
    v->x[p * V + id] = 1;
  }
  return RNNC_OK;
}

/* Buffers for one step of cell c: val[k] of node_numel doubles for every
 * node that is not a leaf the caller points elsewhere. */
double **interp_cell_bufs(Run *r, const Cell *c, const Env *cenv)
{
  double **val = aalloc(r->a, (size_t)c->nnode * sizeof *val);
  for (int k = 0; k < c->nnode; k++)
    val[k] = dalloc(r, node_numel(c, k, cenv));
  return val;
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
    int st = interp_mdim(r, n->dimval[k], &x);
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

  double **val = interp_cell_bufs(r, c, &v->cenv);
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
  int st = interp_mdim(r, n->size[0], &v->K);
  if (st)
    return st;
  long K = v->K, d = a->d, np = a->npos;
  const double *W = v->pv[interp_param_index(n, "weight")];
  const double *bias = v->pv[interp_param_index(n, "bias")];
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
      return interp_fail(r, RNNC_EINPUT, "input '%s' has target %ld at %s, outside [0, %ld)%s",
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

int interp_forward(Run *r, const TensorSet *params, const TensorSet *inputs)
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
    case M_ONEHOT: st = fwd_onehot(r, i); break;
    default: die("interp: node kind %d", n->kind);
    }
    if (st)
      return st;
    if (r->wantgrad && n->dtype != DT_I32)
      v->adj = dalloc(r, v->npos * v->d);
  }
  return RNNC_OK;
}
