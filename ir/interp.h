/* interp.h — private to the reference interpreter's model level
 * (interp_model.c, interp_forward.c, interp_backward.c): one run's state and
 * the helpers the three files share. interp_model.c describes the layout. */
#ifndef RNNC_INTERP_H
#define RNNC_INTERP_H

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

/* The run's error: the message (printf-style) into r->err; returns code
 * (interp_model.c). */
int interp_fail(Run *r, int code, const char *fmt, ...);
/* The value of a model dim; RNNC_EINPUT when a symbol is unbound (interp_model.c). */
int interp_mdim(Run *r, Dim d, long *out);
/* The index of n's parameter name; dies when it has none (interp_forward.c). */
int interp_param_index(const MNode *n, const char *name);
/* Buffers for one step of cell c: val[k] of node_numel doubles for every
 * node that is not a leaf the caller points elsewhere (interp_forward.c). */
double **interp_cell_bufs(Run *r, const Cell *c, const Env *cenv);
/* Every node's value, in r->order; RNNC_EINPUT on an unbound dim, a token
 * id or a target out of range (interp_forward.c). */
int interp_forward(Run *r, const TensorSet *params, const TensorSet *inputs);
/* Adjoints from the loss back, into each node's adj and each parameter's
 * gradient (interp_backward.c). */
void interp_backward(Run *r);

/* ---- small helpers ---- */

/* v rounded to float in PREC_F32 */
static inline double rnd(const Run *r, double v)
{
  return r->prec == PREC_F32 ? (double)(float)v : v;
}

static inline void rndbuf(const Run *r, double *x, long n)
{
  for (long e = 0; e < n; e++)
    x[e] = rnd(r, x[e]);
}

/* n zeroed doubles (at least one) in the run's arena */
static inline double *dalloc(Run *r, long n)
{
  return aalloc(r->a, (size_t)(n > 0 ? n : 1) * sizeof(double));
}

static inline const char *nodename(const Run *r, int i)
{
  const MNode *n = &r->md->node[i];
  return n->name ? n->name : mkind_name[n->kind];
}

/* Position of step t, example b of operand node j (broadcast over time when
 * the operand has no time axis). */
static inline long opos(const Run *r, int j, long t, long b, long B)
{
  return r->v[j].T ? t * B + b : b;
}

#endif
