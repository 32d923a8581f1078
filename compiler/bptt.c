/* bptt.c — the model-level plan of backpropagation through time.
 *
 * require: a verified model. produce: a ModelGrad — per cell node the Grad of
 * its cell (autodiff_cell: one backward cell per cell, however many nodes
 * apply it), per node whether the loss depends on it through floats.
 * breaks nothing. print_schedule writes the plan as comment lines: what the
 * forward pass saves, then the backward pass node by node, from the loss back.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

/* The model nodes node i reads: operands, explicit initial states and the cell
 * node whose final states seed it. deps must hold narg + ninit + 1 ids. */
static int deps(const MNode *n, int *d)
{
  int k = 0;
  for (int i = 0; i < n->narg; i++)
    d[k++] = n->arg[i];
  for (int i = 0; i < n->ninit; i++)
    d[k++] = n->init[i];
  if (n->initfrom >= 0)
    d[k++] = n->initfrom;
  return k;
}

ModelGrad *autodiff(Module *m, Model *md)
{
  if (md->verified != 1)
    die("autodiff: model '%s' is not verified", md->name);
  if (md->loss < 0) {
    error_at(&m->diags, md->loc,
             "model '%s' has no loss to differentiate (no softmax with a target, no sum)",
             md->name);
    return NULL;
  }
  Arena *ar = m->arena;
  ModelGrad *g = aalloc(ar, sizeof *g);
  g->model = md;
  g->cellgrad = aalloc(ar, ((size_t)md->nnode + 1) * sizeof *g->cellgrad);
  g->needgrad = aalloc(ar, ((size_t)md->nnode + 1) * sizeof *g->needgrad);
  for (int i = 0; i < md->nnode; i++)
    if (md->node[i].kind == M_CELL && !(g->cellgrad[i] = autodiff_cell(m, md->node[i].cell)))
      return NULL;

  /* what the loss reads, transitively (a target is read, not differentiated) */
  char *dep = aalloc(ar, (size_t)md->nnode + 1);
  int *stack = aalloc(ar, ((size_t)md->nnode + 1) * sizeof *stack), sp = 0;
  dep[md->loss] = 1;
  stack[sp++] = md->loss;
  while (sp > 0) {
    const MNode *n = &md->node[stack[--sp]];
    int *d = aalloc(ar, ((size_t)n->narg + (size_t)n->ninit + 1) * sizeof *d);
    int nd = deps(n, d);
    for (int k = 0; k < nd; k++)
      if (!dep[d[k]]) {
        dep[d[k]] = 1;
        stack[sp++] = d[k];
      }
  }
  /* a mask (read through step(): no adjoint) and a onehot (a function of
   * token ids) carry no adjoint either */
  for (int i = 0; i < md->nnode; i++)
    g->needgrad[i] = dep[i] && (md->node[i].dtype == DT_F32 || md->node[i].dtype == DT_F64) &&
                     !mnode_is_mask(&md->node[i]) && md->node[i].kind != M_ONEHOT;
  return g;
}

/* ---- print_schedule -------------------------------------------------------- */

typedef struct Buf {
  char s[2048];
  size_t n;
} Buf;

static void put(Buf *b, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  if (b->n < sizeof b->s)
    b->n += (size_t)vsnprintf(b->s + b->n, sizeof b->s - b->n, fmt, ap);
  va_end(ap);
  if (b->n >= sizeof b->s)
    b->n = sizeof b->s - 1;
}

typedef struct S {
  FILE *f;
  Arena *a;
  const ModelGrad *g;
  const Model *md;
} S;

/* Node i as written: its name, or its expression when anonymous (or top). */
static void expr(S *s, Buf *b, int i, int top)
{
  const MNode *n = &s->md->node[i];
  if (n->name && !top) {
    put(b, "%s", n->name);
    return;
  }
  const char *kind = n->kind == M_CELL ? n->cellname : mkind_name[n->kind];
  put(b, "%s(", kind);
  for (int k = 0; k < n->narg; k++) {
    put(b, "%s", k ? ", " : "");
    expr(s, b, n->arg[k], 0);
  }
  if (n->kind == M_FINAL)
    put(b, ", %s", n->statename);
  put(b, ")");
}

static const char *ename(S *s, int i)
{
  Buf b = {.n = 0};
  expr(s, &b, i, 0);
  return astrdup(s->a, b.s);
}

static const char *sh(S *s, const Shape *x) { return shape_str(s->a, x); }

/* The time dim of a sequence node, as text ("T", "S"). */
static const char *tdim(S *s, int i) { return dim_str(s->a, s->md->node[i].shape.d[0]); }

/* A cell dim-expression in model dims (the node's bindings substituted). */
static const char *cdim(S *s, const MNode *n, Dim d)
{
  Dim r;
  if (!n->dimval || !dim_subst(d, n->cell->ndim, n->cell->dim, n->dimval, &r))
    r = d;
  return dim_str(s->a, r);
}

/* "h, c": the states of node n's cell, with a prefix ("d_"). */
static const char *states(S *s, const Cell *c, const char *pre)
{
  Buf b = {.n = 0};
  for (int k = 0; k < c->nstate; k++)
    put(&b, "%s%s%s", k ? ", " : "", pre, c->node[c->state[k]].name);
  return astrdup(s->a, b.s);
}

/* Steps in the order the forward pass (fwd 1) or backward pass runs them. */
static const char *steps(S *s, int i, int fwd)
{
  const char *t = tdim(s, i);
  int up = fwd != s->md->node[i].backward;
  return up ? aprintf(s->a, "t = 1..%s", t) : aprintf(s->a, "t = %s..1", t);
}

static void forward_line(S *s, int i)
{
  const Model *md = s->md;
  const MNode *n = &md->node[i];
  FILE *f = s->f;
  const char *name = ename(s, i);
  switch (n->kind) {
  case M_INPUT:
    fprintf(f, "#   input %s: %s%s\n", name, n->dtype == DT_I32 ? "i32" : "f32", sh(s, &n->shape));
    break;
  case M_EMBEDDING:
    fprintf(f, "#   %s = embedding(%s): rows of %s.weight %s; keeps %s for the row updates\n",
            name, ename(s, n->arg[0]), name, sh(s, &n->shape), ename(s, n->arg[0]));
    break;
  case M_CELL: {
    const Cell *c = n->cell;
    const Grad *gr = s->g->cellgrad[i];
    Buf in = {.n = 0};
    for (int k = 0; k < n->narg; k++)
      put(&in, "%s%s[t]", k ? ", " : "", ename(s, n->arg[k]));
    fprintf(f, "#   %s = %s(%s), %s%s: %s %s", name, c->name, in.s, steps(s, i, 1),
            n->backward ? " (backward direction)" : "", states(s, c, ""),
            c->nstate == 1 ? "starts" : "start");
    if (n->initfrom >= 0)
      fprintf(f, " from the final states of %s", ename(s, n->initfrom));
    else if (n->ninit > 0) {
      fprintf(f, " from ");
      for (int k = 0; k < n->ninit; k++)
        fprintf(f, "%s%s", k ? ", " : "", ename(s, n->init[k]));
    } else
      fprintf(f, " from zeros");
    fprintf(f, "; out -> %s[t] %s\n", name, sh(s, &n->shape));
    if (!gr)
      break;
    fprintf(f, "#       saves per step and example, for %s:", gr->bwd->name);
    if (gr->nsaved == 0)
      fprintf(f, " nothing");
    for (int k = 0; k < gr->nsaved; k++) {
      const Node *v = &c->node[gr->saved[k]];
      const Node *in = &gr->bwd->node[gr->bwd->input[k]];
      fprintf(f, "%s %s [%s]", k ? "," : "", in->name, cdim(s, n, v->shape.d[0]));
      for (int r = 1; r < v->shape.rank; r++)
        fprintf(f, "[%s]", cdim(s, n, v->shape.d[r]));
    }
    fprintf(f, "\n");
    break;
  }
  case M_SOFTMAX:
    fprintf(f, "#   %s = softmax(%s.weight @ %s + %s.bias) over %s classes", name, name,
            ename(s, n->arg[0]), name, dim_str(s->a, n->size[0]));
    if (n->target >= 0) {
      fprintf(f, ", mean cross-entropy against %s", ename(s, n->target));
      if (n->hasignore)
        fprintf(f, " (targets equal to %ld ignored)", n->ignore);
    }
    fprintf(f, "; keeps the probabilities\n");
    break;
  default: {
    Buf b = {.n = 0};
    expr(s, &b, i, 1);
    if (n->name)
      fprintf(f, "#   %s = %s %s\n", name, b.s, sh(s, &n->shape));
    else
      fprintf(f, "#   %s %s\n", b.s, sh(s, &n->shape));
    break;
  }
  }
}

/* Whether any node that carries an adjoint reads node i as an operand. */
static int hasadjuser(S *s, int i)
{
  for (int j = 0; j < s->md->nnode; j++) {
    const MNode *u = &s->md->node[j];
    if (!s->g->needgrad[j] && j != s->md->loss)
      continue;
    for (int k = 0; k < u->narg; k++)
      if (u->arg[k] == i && u->kind != M_FINAL)
        return 1;
  }
  return 0;
}

static void cell_backward(S *s, int i)
{
  const Model *md = s->md;
  const MNode *n = &md->node[i];
  const Grad *gr = s->g->cellgrad[i];
  const Cell *c = n->cell, *bc = gr->bwd;
  FILE *f = s->f;
  const char *name = ename(s, i);
  const char *dst = states(s, bc, ""), *first = n->backward ? "1" : tdim(s, i);
  int one = bc->nstate == 1;
  /* "its" is the backward cell: its states and outs are cell-level names */
  fprintf(f, "#   %s: %s: %s(saved values of step t, d_out = %s), carrying its state%s %s\n",
          name, steps(s, i, 0), bc->name,
          hasadjuser(s, i) ? aprintf(s->a, "d_%s[t]", name) : "0", one ? "" : "s", dst);
  /* where the carried adjoints start: zero, or another node's initial-state
   * adjoints (init = this node); plus the adjoints of final(this, state) */
  Buf from = {.n = 0};
  for (int j = 0; j < md->nnode; j++) {
    const MNode *u = &md->node[j];
    if (u->kind == M_CELL && u->initfrom == i && s->g->needgrad[j])
      put(&from, "%sthe adjoints of %s's initial states (init = %s)", from.n ? " + " : "",
          ename(s, j), name);
  }
  fprintf(f, "#       before t = %s, its %s start%s %s", first, dst, one ? "s" : "",
          from.n ? aprintf(s->a, "as %s", from.s) : "at zero");
  for (int j = 0; j < md->nnode; j++) {
    const MNode *u = &md->node[j];
    if (u->kind == M_FINAL && u->arg[0] == i && s->g->needgrad[j])
      fprintf(f, "; its %s += d_%s", bc->node[bc->state[u->stateidx]].name, ename(s, j));
  }
  fprintf(f, "\n");
  /* parameters */
  Buf acc = {.n = 0}, zero = {.n = 0};
  for (int p = 0; p < c->nparam; p++) {
    Buf *b = bc->grad[p] >= 0 ? &acc : &zero;
    put(b, "%sgrad.%s", b->n ? ", " : "", n->param[p].full);
  }
  if (acc.n)
    fprintf(f, "#       accumulates %s over t and the batch\n", acc.s);
  if (zero.n)
    fprintf(f, "#       leaves %s at zero (no influence on the loss)\n", zero.s);
  /* inputs */
  for (int k = 0; k < n->narg; k++) {
    int x = n->arg[k];
    if (!s->g->needgrad[x])
      continue;
    const Node *o = &bc->node[bc->out[k]];
    fprintf(f, "#       d_%s[t] += %s\n", ename(s, x),
            o->op == OP_ZEROS ? "0 (input unused)"
            : o->name ? aprintf(s->a, "its out %s (the adjoint of input %s)", o->name,
                                c->node[c->input[k]].name)
                      : aprintf(s->a, "its out %d (the adjoint of input %s)", k + 1,
                                c->node[c->input[k]].name));
  }
  /* initial states */
  const char *after = n->backward ? tdim(s, i) : "1";
  if (n->initfrom >= 0)
    fprintf(f, "#       after t = %s: its %s %s the adjoint%s of %s's final state%s (init = %s)\n",
            after, dst, one ? "is" : "are", one ? "" : "s", ename(s, n->initfrom), one ? "" : "s",
            ename(s, n->initfrom));
  else if (n->ninit > 0) {
    for (int k = 0; k < n->ninit; k++)
      if (s->g->needgrad[n->init[k]])
        fprintf(f, "#       after t = %s: d_%s += its %s (initial state %s)\n", after,
                ename(s, n->init[k]), bc->node[bc->state[k]].name, c->node[c->state[k]].name);
  } else
    fprintf(f, "#       after t = %s: its %s, the adjoint%s of the zero initial state%s, %s dropped\n",
            after, dst, one ? "" : "s", one ? "" : "s", one ? "is" : "are");
}

static void backward_line(S *s, int i)
{
  const Model *md = s->md;
  const MNode *n = &md->node[i];
  FILE *f = s->f;
  const char *name = ename(s, i);
  switch (n->kind) {
  case M_INPUT:
    fprintf(f, "#   %s: grad.%s = d_%s\n", name, name, name);
    break;
  case M_EMBEDDING:
    fprintf(f, "#   %s: row updates, for every t, b: grad.%s.weight[%s[t, b]] += d_%s[t, b]\n",
            name, name, ename(s, n->arg[0]), name);
    break;
  case M_CELL:
    cell_backward(s, i);
    break;
  case M_CONCAT: {
    Dim off = dim_const(0);
    fprintf(f, "#   %s:", name);
    for (int k = 0; k < n->narg; k++) {
      const MNode *a = &md->node[n->arg[k]];
      Dim d = a->shape.d[a->shape.rank - 1], end;
      if (!dim_add(off, d, &end))
        die("bptt: concat offsets of model '%s' have too many terms", md->name);
      if (s->g->needgrad[n->arg[k]])
        fprintf(f, " d_%s += d_%s[.., %s : %s];", ename(s, n->arg[k]), name, dim_str(s->a, off),
                dim_str(s->a, end));
      off = end;
    }
    fprintf(f, " (slices of the last dim)\n");
    break;
  }
  case M_LAST:
    fprintf(f, "#   %s: d_%s[%s] += d_%s (the other steps get nothing)\n", name,
            ename(s, n->arg[0]), tdim(s, n->arg[0]), name);
    break;
  case M_FINAL:
    fprintf(f, "#   %s: seeds d_%s of %s before its backward pass (see there)\n", name,
            n->statename, ename(s, n->arg[0]));
    break;
  case M_SOFTMAX: {
    const char *x = ename(s, n->arg[0]);
    if (i == md->loss) {
      const MNode *t = &md->node[n->target];
      const char *cnt = n->hasignore ? aprintf(s->a, "the number of targets not equal to %ld", n->ignore)
                        : t->shape.rank == 2 ? "T*B" : "B";
      fprintf(f, "#   %s: fused softmax + cross-entropy: d_logits = (probs - onehot(%s)) / N,"
                 " N = %s%s\n",
              name, ename(s, n->target), cnt,
              n->hasignore ? aprintf(s->a, " (rows whose target is %ld get 0)", n->ignore) : "");
    } else
      fprintf(f, "#   %s: softmax backward: d_logits = probs * (d_%s - sum_k(d_%s * probs))\n",
              name, name, name);
    for (int j = 0; j < md->nnode; j++)
      if (md->node[j].kind == M_LOGITS && md->node[j].arg[0] == i && s->g->needgrad[j])
        fprintf(f, "#       d_logits += d_%s\n", ename(s, j));
    fprintf(f, "#       grad.%s.weight += sum over rows of outer(d_logits, %s); grad.%s.bias +="
               " sum over rows of d_logits\n",
            name, x, name);
    if (s->g->needgrad[n->arg[0]])
      fprintf(f, "#       d_%s += matvec_t(%s.weight, d_logits) per row\n", x, name);
    break;
  }
  case M_LOGITS:
    fprintf(f, "#   %s: joins the logits' adjoint of %s (there)\n", name, ename(s, n->arg[0]));
    break;
  case M_PROBS:
    fprintf(f, "#   %s: d_%s += d_%s (the probabilities' adjoint)\n", name,
            ename(s, n->arg[0]), name);
    break;
  case M_SUM:
    fprintf(f, "#   %s: d_%s += 1, every element\n", name, ename(s, n->arg[0]));
    break;
  default:
    die("bptt: node kind %d", n->kind);
  }
}

/* Operands before users, from every node (depth first). */
static void topo(const Model *md, int i, char *seen, int *order, int *no)
{
  if (seen[i])
    return;
  seen[i] = 1;
  const MNode *n = &md->node[i];
  int d[64];
  if (n->narg + n->ninit + 1 > 64)
    die("bptt: node with %d operands", n->narg + n->ninit);
  int nd = deps(n, d);
  for (int k = 0; k < nd; k++)
    topo(md, d[k], seen, order, no);
  if (n->target >= 0)
    topo(md, n->target, seen, order, no);
  order[(*no)++] = i;
}

void print_schedule(FILE *f, const ModelGrad *g)
{
  const Model *md = g->model;
  S s = {.f = f, .a = arena_new(), .g = g, .md = md};
  char *seen = aalloc(s.a, (size_t)md->nnode + 1);
  int *order = aalloc(s.a, ((size_t)md->nnode + 1) * sizeof *order), no = 0;
  for (int i = 0; i < md->nnode; i++)
    topo(md, i, seen, order, &no);

  const MNode *ln = &md->node[md->loss];
  if (ln->kind == M_SUM)
    fprintf(f, "# loss: %s = sum(%s), every element", ename(&s, md->loss), ename(&s, ln->arg[0]));
  else
    fprintf(f, "# loss: %s, the mean cross-entropy of softmax(%s) against %s", ename(&s, md->loss),
            ename(&s, ln->arg[0]), ename(&s, ln->target));
  fprintf(f, ".\n# Every adjoint d_<node> starts at zero; the examples of the batch are\n"
             "# independent rows, and parameter gradients sum over them.\n");
  fprintf(f, "#\n# forward, saving what the backward pass reads:\n");
  for (int k = 0; k < no; k++)
    forward_line(&s, order[k]);
  fprintf(f, "#\n# backward, from the loss back (nodes the loss does not depend on are skipped):\n");
  for (int k = no - 1; k >= 0; k--)
    if (g->needgrad[order[k]])
      backward_line(&s, order[k]);
  arena_free(s.a);
}
