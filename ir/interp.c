/* interp.c — the reference interpreter, cell level: one step of a cell for one
 * example. require: a verified cell (node shapes filled), its dims bound.
 * produce: the value of every non-leaf node. Plain loops over doubles, in
 * definition order; in PREC_F32 every element of every result is rounded to
 * float, so the values match a float32 implementation op by op.
 * The model level (time, batch, softmax, backward through time) is in
 * interp_model.c, interp_forward.c and interp_backward.c. */
#include <math.h>
#include <string.h>

#include "ir.h"

/* The value of dimension d with the cell's dims bound in cenv. */
static long evaldim(const Cell *c, Dim d, const Env *cenv)
{
  long v;
  const char *bad = NULL;
  if (!dim_eval(d, cenv, &v, &bad))
    die("cell '%s': dimension '%s' is not bound", c->name, bad);
  if (v < 0)
    die("cell '%s': a dimension evaluates to %ld", c->name, v);
  return v;
}

long node_numel(const Cell *c, int i, const Env *cenv)
{
  const Shape *s = &c->node[i].shape;
  long n = 1;
  for (int k = 0; k < s->rank; k++)
    n *= evaldim(c, s->d[k], cenv);
  return n;
}

/* The scalar value of elementwise op `op` on operands a (and b): one case per
 * SH_EW op, generated from the eval column of the op table (include/rnnc_ops.h). */
static double ew(int op, double a, double b)
{
  if (opinfo[op].shape_rule != SH_EW)
    die("ew: op '%s' is not elementwise", opinfo[op].spelling);
  switch (op) {
#define X(id, sp, ar, sh, pr, ev) \
  case OP_##id:                   \
    return (ev);
    OPS(X)
#undef X
  }
  die("ew: unknown op %d", op);
}

static double rnd(double v, int prec) { return prec == PREC_F32 ? (double)(float)v : v; }

void cell_eval(const Cell *c, const Env *cenv, double **val, int prec)
{
  for (int i = 0; i < c->nnode; i++) {
    const Node *nd = &c->node[i];
    double *y = val[i];
    long n = node_numel(c, i, cenv);
    switch (opinfo[nd->op].shape_rule) {
    case SH_LEAF:
      if (nd->op == OP_CONST) { /* [] */
        y[0] = rnd(nd->cval, prec);
      } else if (nd->op == OP_ZEROS) { /* [d] */
        for (long e = 0; e < n; e++)
          y[e] = 0;
      }
      /* input, state, param: filled by the caller */
      break;
    case SH_EW: {
      /* y[e] = op(a[e], b[e]); an operand with one element (a scalar) is
       * broadcast to every e. */
      const double *a = val[nd->arg[0]];
      long na = node_numel(c, nd->arg[0], cenv);
      const double *b = a;
      long nb = na;
      if (nd->narg == 2) {
        b = val[nd->arg[1]];
        nb = node_numel(c, nd->arg[1], cenv);
      }
      for (long e = 0; e < n; e++)
        y[e] = rnd(ew(nd->op, a[na == 1 ? 0 : e], b[nb == 1 ? 0 : e]), prec);
      break;
    }
    case SH_MATVEC: {
      /* A [m, n] @ v [n] -> y [m]: y[i] = Σ_j A[i, j] v[j] */
      const Shape *sa = &c->node[nd->arg[0]].shape;
      long m = evaldim(c, sa->d[0], cenv), k = evaldim(c, sa->d[1], cenv);
      const double *A = val[nd->arg[0]], *v = val[nd->arg[1]];
      for (long r = 0; r < m; r++) {
        double s = 0;
        for (long j = 0; j < k; j++)
          s += A[r * k + j] * v[j];
        y[r] = rnd(s, prec);
      }
      break;
    }
    case SH_MATVECT: {
      /* matvec_t(A [m, n], v [m]) -> y [n]: y[j] = Σ_i A[i, j] v[i] */
      const Shape *sa = &c->node[nd->arg[0]].shape;
      long m = evaldim(c, sa->d[0], cenv), k = evaldim(c, sa->d[1], cenv);
      const double *A = val[nd->arg[0]], *v = val[nd->arg[1]];
      for (long j = 0; j < k; j++) {
        double s = 0;
        for (long r = 0; r < m; r++)
          s += A[r * k + j] * v[r];
        y[j] = rnd(s, prec);
      }
      break;
    }
    case SH_OUTER: {
      /* outer(a [m], b [n]) -> Y [m, n]: Y[i, j] = a[i] b[j] */
      long m = node_numel(c, nd->arg[0], cenv), k = node_numel(c, nd->arg[1], cenv);
      const double *a = val[nd->arg[0]], *b = val[nd->arg[1]];
      for (long r = 0; r < m; r++)
        for (long j = 0; j < k; j++)
          y[r * k + j] = rnd(a[r] * b[j], prec);
      break;
    }
    case SH_SPLIT: {
      /* split(a [d], n)[k] -> y [d/n] = a[k*d/n .. (k+1)*d/n) */
      const double *a = val[nd->arg[0]];
      for (long e = 0; e < n; e++)
        y[e] = a[nd->k * n + e];
      break;
    }
    case SH_SLICE: {
      /* slice(a [d], start, size) -> y [size] = a[start .. start+size) */
      const double *a = val[nd->arg[0]];
      long start = evaldim(c, nd->start, cenv);
      if (start + n > node_numel(c, nd->arg[0], cenv))
        die("cell '%s': slice past the end", c->name);
      for (long e = 0; e < n; e++)
        y[e] = a[start + e];
      break;
    }
    case SH_CONCAT: {
      /* concat(a1 [d1], a2 [d2], ...) -> y [d1 + d2 + ...] */
      long off = 0;
      for (int j = 0; j < nd->narg; j++) {
        long nj = node_numel(c, nd->arg[j], cenv);
        memcpy(y + off, val[nd->arg[j]], (size_t)nj * sizeof *y);
        off += nj;
      }
      if (off != n)
        die("cell '%s': concat of %ld elements into %ld", c->name, off, n);
      break;
    }
    default:
      die("cell_eval: op '%s' has no kernel", opinfo[nd->op].spelling);
    }
  }
}
