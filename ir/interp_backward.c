/* interp_backward.c — the reference interpreter's backward pass (BPTT):
 * nodes in reverse order, each adding into its operands' adjoints (+=). */
#include <string.h>

#include "interp.h"

/* ---- backward, per node kind: each adds into its operands' adjoints ------ */

/* weight[tokens[p]] += adj[p]: a scatter-add of rows into grad weight (V, E) */
static void bwd_embedding(Run *r, int i)
{
  const MNode *n = &r->md->node[i];
  Val *v = &r->v[i];
  const long *tok = r->v[n->arg[0]].id;
  double *dW = v->pg[interp_param_index(n, "weight")];
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

  double **val = interp_cell_bufs(r, bc, &v->cenv);
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
      /* last: a gradient or an input adjoint may be a state's adjoint itself */
      for (int s = 0; s < ns; s++)
        memcpy(dh[s] + b * v->sd[s], tmp[s], (size_t)v->sd[s] * sizeof(double));
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
  const double *W = v->pv[interp_param_index(n, "weight")];
  double *dW = v->pg[interp_param_index(n, "weight")], *db = v->pg[interp_param_index(n, "bias")];
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

void interp_backward(Run *r)
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
    case M_ONEHOT: break; /* a function of token ids: nothing to pass on */
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
