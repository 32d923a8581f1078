/* verify_cell.c — check one cell: arity and shape of every op, the signature's
 * dims, states updated with their own shape, outputs, gradients, unused params.
 *
 * require: a parsed cell, operands before users (the parser resolved names and
 *          rejected cycles). produce: node.shape of every node (leaves keep the
 *          declared shape), c->dim, c->verified. Errors and warnings to m->diags.
 */
#include <stdlib.h>
#include <string.h>

#include "ir.h"

static const char *sstr(Module *m, const Shape *s) { return shape_str(m->arena, s); }

static const char *plural(long n, const char *one, const char *many) { return n == 1 ? one : many; }

/* Append the symbols of d to c->dim, keeping first appearance order. */
static void adddims(Module *m, Cell *c, Dim d)
{
  for (int i = 0; i < d.nterm; i++) {
    int j = 0;
    while (j < c->ndim && c->dim[j] != d.t[i].sym)
      j++;
    if (j == c->ndim)
      APUSH(m->arena, c->dim, c->ndim, c->capdim, d.t[i].sym);
  }
}

/* 1 when every symbol of d is a dim of the signature; else an error at loc. */
static int insig(Module *m, Cell *c, Dim d, Loc loc)
{
  for (int i = 0; i < d.nterm; i++) {
    int j = 0;
    while (j < c->ndim && c->dim[j] != d.t[i].sym)
      j++;
    if (j == c->ndim) {
      error_at(&m->diags, loc,
               "dimension '%s' does not appear in the inputs, states or parameters of cell '%s'",
               d.t[i].sym, c->name);
      return 0;
    }
  }
  return 1;
}

/* A constant dimension must be positive: an error at loc naming what. */
static int positive(Module *m, const Shape *s, const char *what, Loc loc)
{
  for (int i = 0; i < s->rank; i++)
    if (dim_isconst(s->d[i]) && s->d[i].c <= 0) {
      error_at(&m->diags, loc, "%s has shape %s: a dimension must be positive", what, sstr(m, s));
      return 0;
    }
  return 1;
}

/* Check a declared leaf (input, state, param): its rank, positive sizes. */
static int checkleaf(Module *m, Cell *c, int id)
{
  Node *n = &c->node[id];
  const char *kind = n->op == OP_INPUT ? "input" : n->op == OP_STATE ? "state" : "parameter";
  char *what = aprintf(m->arena, "%s '%s'", kind, n->name);
  if (n->op == OP_PARAM && (n->shape.rank < 1 || n->shape.rank > 2)) {
    error_at(&m->diags, n->loc, "parameter '%s' must be a vector or a matrix, got %s", n->name,
             sstr(m, &n->shape));
    return 0;
  }
  if (n->op != OP_PARAM && n->shape.rank != 1) {
    error_at(&m->diags, n->loc, "%s must be a vector, got %s", what, sstr(m, &n->shape));
    return 0;
  }
  return positive(m, &n->shape, what, n->loc);
}

/* [1]: a one-element vector, broadcast by elementwise ops like a scalar */
static int onevec(const Shape *s) { return s->rank == 1 && dim_isconst(s->d[0]) && s->d[0].c == 1; }

/* The shape of node id from its operands' (already computed) shapes, by the
 * op's rule in rnnc_ops.h; 0 with an error when the operands do not fit. */
static int infer(Module *m, Cell *c, int id)
{
  Node *n = &c->node[id];
  const char *sp = opinfo[n->op].spelling;
  Shape *a = n->narg > 0 ? &c->node[n->arg[0]].shape : NULL;
  Shape *b = n->narg > 1 ? &c->node[n->arg[1]].shape : NULL;
  Shape r = {0};
  switch (opinfo[n->op].shape_rule) {
  case SH_LEAF:
    if (n->op == OP_CONST)
      n->shape.rank = 0;
    else if (n->op == OP_ZEROS) {
      if (n->shape.rank < 1 || n->shape.rank > 2) {
        error_at(&m->diags, n->loc, "'zeros' needs a vector or matrix shape, got %s",
                 sstr(m, &n->shape));
        return 0;
      }
      for (int i = 0; i < n->shape.rank; i++)
        if (!insig(m, c, n->shape.d[i], n->loc))
          return 0;
      return positive(m, &n->shape, "'zeros'", n->loc);
    } else
      die("verify: leaf op %s outside the declarations", sp);
    return 1;
  case SH_EW:
    /* a scalar, or a one-element vector [1] beside a vector, is broadcast */
    if (!b || a->rank == 0 || shape_eq(a, b))
      r = b && a->rank == 0 ? *b : *a;
    else if (b->rank == 0 || (onevec(b) && a->rank == 1))
      r = *a;
    else if (onevec(a) && b->rank == 1)
      r = *b;
    else {
      error_at(&m->diags, n->loc, "shape mismatch in '%s': %s and %s", sp, sstr(m, a), sstr(m, b));
      return 0;
    }
    break;
  case SH_MATVEC:
  case SH_MATVECT: {
    if (a->rank != 2) {
      error_at(&m->diags, n->loc, "'%s' needs a matrix on the left, got %s", sp, sstr(m, a));
      return 0;
    }
    if (b->rank != 1) {
      error_at(&m->diags, n->loc, "'%s' needs a vector on the right, got %s", sp, sstr(m, b));
      return 0;
    }
    /* matvec: [m, n] @ [n] -> [m]; matvec_t: [m, n], [m] -> [n] */
    int t = opinfo[n->op].shape_rule == SH_MATVECT;
    if (!dim_eq(a->d[t ? 0 : 1], b->d[0])) {
      error_at(&m->diags, n->loc, "shape mismatch in '%s': %s and %s", sp, sstr(m, a), sstr(m, b));
      return 0;
    }
    r.rank = 1;
    r.d[0] = a->d[t ? 1 : 0];
    break;
  }
  case SH_OUTER:
    if (a->rank != 1 || b->rank != 1) {
      error_at(&m->diags, n->loc, "'outer' needs two vectors, got %s and %s", sstr(m, a),
               sstr(m, b));
      return 0;
    }
    r.rank = 2;
    r.d[0] = a->d[0];
    r.d[1] = b->d[0];
    break;
  case SH_SPLIT:
    if (a->rank != 1) {
      error_at(&m->diags, n->loc, "'split' needs a vector, got %s", sstr(m, a));
      return 0;
    }
    if (n->n < 1 || !dim_div(a->d[0], n->n, &r.d[0])) {
      error_at(&m->diags, n->loc, "cannot split %s into %d equal parts", sstr(m, a), n->n);
      return 0;
    }
    if (n->k < 0 || n->k >= n->n) {
      error_at(&m->diags, n->loc, "part %d of a split into %d does not exist (parts are 0 to %d)",
               n->k, n->n, n->n - 1);
      return 0;
    }
    r.rank = 1;
    break;
  case SH_SLICE: {
    /* the parser gives the size as shape.d[0] and the first element as start */
    if (a->rank != 1) {
      error_at(&m->diags, n->loc, "'slice' needs a vector, got %s", sstr(m, a));
      return 0;
    }
    Dim size = n->shape.d[0], end, room;
    if (!insig(m, c, n->start, n->loc) || !insig(m, c, size, n->loc))
      return 0;
    if ((dim_isconst(n->start) && n->start.c < 0) || (dim_isconst(size) && size.c <= 0)) {
      error_at(&m->diags, n->loc, "slice(v, %s, %s): the start must be >= 0 and the size > 0",
               dim_str(m->arena, n->start), dim_str(m->arena, size));
      return 0;
    }
    /* room = d - (start + size): decidable when it is a constant */
    if (dim_add(n->start, size, &end) && dim_add(a->d[0], dim_scale(end, -1), &room) &&
        dim_isconst(room) && room.c < 0) {
      error_at(&m->diags, n->loc, "slice(v, %s, %s) runs past the end of v, which is %s",
               dim_str(m->arena, n->start), dim_str(m->arena, size), sstr(m, a));
      return 0;
    }
    r.rank = 1;
    r.d[0] = size;
    break;
  }
  case SH_CONCAT:
    r.rank = 1;
    r.d[0] = dim_const(0);
    for (int i = 0; i < n->narg; i++) {
      Shape *s = &c->node[n->arg[i]].shape;
      if (s->rank != 1) {
        error_at(&m->diags, n->loc, "'concat' needs vectors, got %s", sstr(m, s));
        return 0;
      }
      if (!dim_add(r.d[0], s->d[0], &r.d[0])) {
        error_at(&m->diags, n->loc, "'concat': the size of the result has too many terms");
        return 0;
      }
    }
    break;
  default:
    die("verify: op %s has no shape rule", sp);
  }
  n->shape = r;
  return 1;
}

/* Arity per opinfo (variadic: at least 2); 0 with an error. */
static int checkarity(Module *m, Cell *c, int id)
{
  Node *n = &c->node[id];
  int ar = opinfo[n->op].arity;
  const char *sp = opinfo[n->op].spelling;
  if (ar >= 0 && n->narg != ar) {
    error_at(&m->diags, n->loc, "'%s' takes %d %s, got %d", sp, ar,
             plural(ar, "operand", "operands"), n->narg);
    return 0;
  }
  if (ar < 0 && n->narg < 2) {
    error_at(&m->diags, n->loc, "'%s' takes at least 2 operands, got %d", sp, n->narg);
    return 0;
  }
  return 1;
}

/* `a, b = split(v, 2)` is one SPLIT node per part: a part whose sibling was
 * already found bad is bad without a second message. */
static int repeated_split(const Cell *c, const char *bad, int id)
{
  const Node *n = &c->node[id];
  if (n->op != OP_SPLIT || n->narg != 1)
    return 0;
  for (int j = id - 1; j >= 0; j--) {
    const Node *o = &c->node[j];
    if (o->op == OP_SPLIT && o->narg == 1 && o->arg[0] == n->arg[0] && o->n == n->n)
      return bad[j];
  }
  return 0;
}

int verify_cell(Module *m, Cell *c)
{
  int nerr0 = m->diags.nerror;
  char *bad = calloc((size_t)c->nnode + 1, 1); /* per node: its shape is unknown */
  int *used = calloc((size_t)c->nnode + 1, sizeof *used);
  if (!bad || !used)
    die("out of memory");

  /* the signature: leaf ranks, and its dims in order of first appearance */
  c->ndim = 0;
  int *const *lists[] = {&c->input, &c->state, &c->param};
  const int counts[] = {c->ninput, c->nstate, c->nparam};
  for (int l = 0; l < 3; l++)
    for (int i = 0; i < counts[l]; i++) {
      int id = (*lists[l])[i];
      if (!checkleaf(m, c, id))
        bad[id] = 1;
      for (int k = 0; k < c->node[id].shape.rank; k++)
        adddims(m, c, c->node[id].shape.d[k]);
    }

  for (int id = 0; id < c->nnode; id++) {
    Node *n = &c->node[id];
    if (n->op < 0 || n->op >= NOPS)
      die("verify: node %d of cell %s has op %d", id, c->name, n->op);
    if (n->op == OP_INPUT || n->op == OP_STATE || n->op == OP_PARAM)
      continue;
    int argbad = 0;
    for (int i = 0; i < n->narg; i++) {
      if (n->arg[i] < 0 || n->arg[i] >= id)
        die("verify: node %d of cell %s uses node %d (operands come first)", id, c->name,
            n->arg[i]);
      used[n->arg[i]]++;
      argbad |= bad[n->arg[i]];
    }
    if (argbad || repeated_split(c, bad, id) || !checkarity(m, c, id) || !infer(m, c, id))
      bad[id] = 1;
  }

  /* states: each updated, with the state's own shape */
  for (int s = 0; s < c->nstate; s++) {
    Node *st = &c->node[c->state[s]];
    int nx = c->next[s];
    if (nx < 0) {
      error_at(&m->diags, st->loc, "state '%s' is never updated", st->name);
      continue;
    }
    used[nx]++;
    if (!bad[nx] && !bad[c->state[s]] && !shape_eq(&c->node[nx].shape, &st->shape))
      error_at(&m->diags, c->nextloc[s].src ? c->nextloc[s] : c->node[nx].loc,
               "new value of state '%s' has shape %s, the state is %s", st->name,
               sstr(m, &c->node[nx].shape), sstr(m, &st->shape));
  }

  for (int i = 0; i < c->nout; i++) {
    int o = c->out[i];
    used[o]++;
    if (!bad[o] && c->node[o].shape.rank != 1)
      error_at(&m->diags, c->outloc[i], "an output of a cell must be a vector, got %s",
               sstr(m, &c->node[o].shape));
  }

  /* gradients (backward cells): each shaped like its parameter */
  int hasgrad = 0;
  for (int p = 0; p < c->nparam; p++) {
    int g = c->grad[p];
    if (g < 0)
      continue;
    hasgrad = 1;
    used[g]++;
    Node *pn = &c->node[c->param[p]];
    if (!bad[g] && !bad[c->param[p]] && !shape_eq(&c->node[g].shape, &pn->shape))
      error_at(&m->diags, c->node[g].loc, "gradient of parameter '%s' has shape %s, the parameter is %s",
               pn->name, sstr(m, &c->node[g].shape), sstr(m, &pn->shape));
  }

  /* a derived backward cell need not use every parameter (a bias has no
   * part in the adjoint equations); a written forward cell should */
  if (!hasgrad && !c->primal)
    for (int p = 0; p < c->nparam; p++)
      if (!used[c->param[p]] && !bad[c->param[p]])
        warn_at(&m->diags, c->node[c->param[p]].loc, "parameter '%s' is never used",
                c->node[c->param[p]].name);

  free(bad);
  free(used);
  c->verified = m->diags.nerror > nerr0 ? 2 : 1;
  return c->verified == 1 ? RNNC_OK : RNNC_EVERIFY;
}
