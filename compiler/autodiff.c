/* autodiff.c — reverse mode as an IR -> IR pass: each cell's backward cell.
 *
 * require: a verified cell. produce: the cell <cell>.backward (an ordinary cell,
 * appended to m->cell, verified) and the Grad linking it to the forward cell,
 * cached in c->derived. breaks nothing: the forward cell is not changed.
 *
 * The backward cell is built by walking the forward nodes in reverse order.
 * Every node collects the contributions its users make to its adjoint; when
 * the walk reaches it, they are summed with `+` (or `-`), and the node's one
 * derivative rule (the switch in rule()) hands contributions to its operands.
 * Forward values a rule reads become inputs of the backward cell (saved by the
 * forward pass per step), named as in the forward cell (h' as h_next: only a
 * state's update may end in a prime); parameters are the backward cell's own
 * parameters; constant expressions are copied. The model-level plan (ModelGrad, the BPTT schedule) is
 * in bptt.c.
 */
#include <stdlib.h>
#include <string.h>

#include "ir.h"

typedef struct Term {
  int node; /* backward node id */
  int sign; /* +1 or -1 */
} Term;

typedef struct Terms {
  Term *t;
  int n, cap;
} Terms;

typedef struct AD {
  Module *m;
  Cell *f, *b;      /* forward cell, backward cell */
  char *reach;      /* per fwd node: an input, state or param lies below it along
                       differentiable operands (it can carry an adjoint) */
  char *isconst;    /* per fwd node: no input, state or param lies below it */
  int *val;         /* per fwd node: the bwd node holding its forward value, -1 */
  int *adj;         /* per fwd node: the bwd node holding its adjoint, -1 none */
  Terms *terms;     /* per fwd node: contributions to its adjoint so far */
  int *pidx, *sidx, *iidx; /* per fwd node: its param / state / input index, -1 */
  const char **used;       /* names given in the backward cell */
  int nused, capused;
  int *saved, nsaved, capsaved; /* fwd node ids read by the rules, first use first */
  const char **supdate;    /* per state s: the name of bwd state s's update ("d_h'") */
} AD;

/* ---- names -------------------------------------------------------------- */

static const char *nm(AD *a, const char *s) { return intern(a->m->names, s, strlen(s)); }

static int taken(AD *a, const char *s)
{
  for (int i = 0; i < a->f->nnode; i++)
    if (a->f->node[i].name == s)
      return 1;
  for (int i = 0; i < a->nused; i++)
    if (a->used[i] == s)
      return 1;
  return 0;
}

static void use(AD *a, const char *s) { APUSH(a->m->arena, a->used, a->nused, a->capused, s); }

/* base, or base with 2, 3, ... before its prime if taken (by a forward name
 * or a name already given in the backward cell); marks the result used. */
static const char *uniq(AD *a, const char *base)
{
  const char *s = nm(a, base);
  size_t len = strlen(base);
  int prime = len > 0 && base[len - 1] == '\'';
  for (int k = 2; taken(a, s); k++)
    s = nm(a, aprintf(a->m->arena, "%.*s%d%s", (int)(len - (size_t)prime), base, k,
                      prime ? "'" : ""));
  use(a, s);
  return s;
}

/* A forward name in a generated name: a state's new value h' reads h_next
 * (a prime may only end a name, and ends the name of a state's update). */
static const char *flat(AD *a, const char *name)
{
  size_t len = strlen(name);
  if (len > 0 && name[len - 1] == '\'')
    return aprintf(a->m->arena, "%.*s_next", (int)len - 1, name);
  return name;
}

/* The adjoint's name for forward value `name`: d_x, d_gates, d_h_next (for h'). */
static const char *adjname(AD *a, const char *name)
{
  return uniq(a, aprintf(a->m->arena, "d_%s", flat(a, name)));
}

/* A word for a forward operand inside a saved value's name, or NULL. */
static const char *word(AD *a, int v)
{
  const Node *n = &a->f->node[v];
  if (n->name)
    return flat(a, n->name);
  if (n->op == OP_CONST) {
    if (n->cval == 1)
      return "one";
    char *s = aprintf(a->m->arena, "c%g", n->cval);
    for (char *p = s; *p; p++)
      if (!(*p >= '0' && *p <= '9') && !(*p >= 'a' && *p <= 'z'))
        *p = *p == '.' ? 'p' : *p == '-' ? 'm' : '_';
    return s;
  }
  return NULL;
}

/* A short name for the expression of anonymous forward value v (sigmoid_f,
 * tanh_c_next, one_minus_z, f_times_h), or NULL. */
static const char *exprname(AD *a, int v)
{
  const Node *n = &a->f->node[v];
  static const char *const infix[NOPS] = {
      [OP_ADD] = "plus", [OP_SUB] = "minus", [OP_MUL] = "times", [OP_DIV] = "over",
      [OP_MATVEC] = "at"};
  const char *w0 = n->narg > 0 ? word(a, n->arg[0]) : NULL;
  const char *w1 = n->narg > 1 ? word(a, n->arg[1]) : NULL;
  if (n->narg == 1 && opinfo[n->op].prec == 0 && opinfo[n->op].shape_rule == SH_EW && w0)
    return aprintf(a->m->arena, "%s_%s", opinfo[n->op].spelling, w0);
  if (n->narg == 2 && infix[n->op] && w0 && w1)
    return aprintf(a->m->arena, "%s_%s_%s", w0, infix[n->op], w1);
  return NULL;
}

/* The name of anonymous forward value v saved for the backward cell. */
static const char *savedname(AD *a, int v)
{
  const char *e = exprname(a, v);
  return uniq(a, e ? e : "saved");
}

/* ---- emitting backward nodes -------------------------------------------- */

static int mk(AD *a, int op, Loc loc, int narg, const int *args)
{
  return cell_add(a->m, a->b, op, NULL, loc, args, narg);
}

static int mk1(AD *a, int op, Loc loc, int x) { return mk(a, op, loc, 1, &x); }

static int mk2(AD *a, int op, Loc loc, int x, int y)
{
  int args[2] = {x, y};
  return mk(a, op, loc, 2, args);
}

static int mkconst(AD *a, double c, Loc loc)
{
  int id = mk(a, OP_CONST, loc, 0, NULL);
  a->b->node[id].cval = c;
  return id;
}

static int mkzeros(AD *a, Dim d, Loc loc)
{
  int id = mk(a, OP_ZEROS, loc, 0, NULL);
  a->b->node[id].shape = (Shape){1, {d}};
  return id;
}

static int mkslice(AD *a, int x, Dim start, Dim size, Loc loc)
{
  int id = mk1(a, OP_SLICE, loc, x);
  a->b->node[id].start = start;
  a->b->node[id].shape = (Shape){1, {size}};
  return id;
}

/* concat of n parts (one part: itself; the verifier wants two or more). */
static int mkconcat(AD *a, int n, const int *parts, Loc loc)
{
  return n == 1 ? parts[0] : mk(a, OP_CONCAT, loc, n, parts);
}

/* The backward node holding the forward value of v: a parameter is the
 * backward cell's parameter; a constant expression, and a matrix (cell inputs
 * are vectors: outer(a, b) * W and the like), is computed again from its
 * operands; anything else is saved by the forward pass and read as an input. */
static int value(AD *a, int v)
{
  if (a->val[v] >= 0)
    return a->val[v];
  const Node *n = &a->f->node[v];
  int id;
  if (n->op == OP_PARAM)
    die("autodiff: parameter '%s' has no backward node", n->name);
  if (a->isconst[v] || n->shape.rank == 2) {
    int args[64];
    if (n->narg > 64)
      die("autodiff: a recomputed value with %d operands", n->narg);
    for (int i = 0; i < n->narg; i++)
      args[i] = value(a, n->arg[i]);
    n = &a->f->node[v];
    const char *name = n->name && !strchr(n->name, '\'') ? n->name : NULL;
    id = cell_add(a->m, a->b, n->op, name, n->loc, args, n->narg);
    Node *c = &a->b->node[id];
    c->shape = n->shape;
    c->cval = n->cval;
    c->k = n->k;
    c->n = n->n;
    c->start = n->start;
  } else {
    /* a forward name, but a state's new value h' reads h_next: only a state's
     * update may end in a prime */
    const char *name = !n->name ? savedname(a, v)
                       : strchr(n->name, '\'') ? uniq(a, flat(a, n->name)) : n->name;
    id = cell_decl(a->m, a->b, OP_INPUT, name, a->f->node[v].loc, &a->f->node[v].shape);
    APUSH(a->m->arena, a->saved, a->nsaved, a->capsaved, v);
  }
  return a->val[v] = id;
}

/* Add sign * node to the adjoint of forward node v (nothing when v cannot
 * carry an adjoint: constants, values below step()). */
static void contrib(AD *a, int v, int node, int sign)
{
  if (!a->reach[v])
    return;
  Term t = {node, sign};
  APUSH(a->m->arena, a->terms[v].t, a->terms[v].n, a->terms[v].cap, t);
}

/* [1]: a one-element vector (broadcast by elementwise ops) */
static int node_isone(const Shape *s) { return s->rank == 1 && dim_isconst(s->d[0]) && s->d[0].c == 1; }

/* ---- the derivative rules ------------------------------------------------ */

/* The adjoint of v is dy (a backward node): hand each operand its share.
 * p and q are v's operands, y its value. Every emitted node is made in its
 * own statement, so the node order does not depend on the compiler's order
 * of evaluating arguments. */
static void rule(AD *a, int v, int dy)
{
  Node n = a->f->node[v]; /* a copy: emitting may move the node arrays */
  Loc l = n.loc;
  int p = n.narg > 0 ? n.arg[0] : -1, q = n.narg > 1 ? n.arg[1] : -1;
  int y, t, u, one;
  switch (n.op) {
  case OP_INPUT:
  case OP_STATE:
  case OP_PARAM:
    break; /* leaves: the adjoint is the result (an out, a state's update, a grad) */
  case OP_CONST:
  case OP_ZEROS:
    break; /* constants: never reached */
  case OP_ADD: /* y = p + q */
    contrib(a, p, dy, +1);
    contrib(a, q, dy, +1);
    break;
  case OP_SUB: /* y = p - q */
    contrib(a, p, dy, +1);
    contrib(a, q, dy, -1);
    break;
  case OP_MUL: /* y = p * q: dp += dy * q, dq += dy * p */
    if (a->reach[p]) {
      t = value(a, q);
      contrib(a, p, mk2(a, OP_MUL, l, dy, t), +1);
    }
    if (a->reach[q]) {
      t = value(a, p);
      contrib(a, q, mk2(a, OP_MUL, l, dy, t), +1);
    }
    break;
  case OP_DIV: /* y = p / q: dp += dy / q, dq -= dy * y / q */
    if (a->reach[p]) {
      t = value(a, q);
      contrib(a, p, mk2(a, OP_DIV, l, dy, t), +1);
    }
    if (a->reach[q]) {
      y = value(a, v);
      t = mk2(a, OP_MUL, l, dy, y);
      u = value(a, q);
      contrib(a, q, mk2(a, OP_DIV, l, t, u), -1);
    }
    break;
  case OP_MATVEC: /* y [m] = W [m, n] @ x [n]: dW += outer(dy, x), dx += matvec_t(W, dy) */
    if (a->reach[p]) {
      t = value(a, q);
      contrib(a, p, mk2(a, OP_OUTER, l, dy, t), +1);
    }
    if (a->reach[q]) {
      t = value(a, p);
      contrib(a, q, mk2(a, OP_MATVECT, l, t, dy), +1);
    }
    break;
  case OP_MATVECT: /* y [n] = matvec_t(W [m, n], u [m]): dW += outer(u, dy), du += W @ dy */
    if (a->reach[p]) {
      t = value(a, q);
      contrib(a, p, mk2(a, OP_OUTER, l, t, dy), +1);
    }
    if (a->reach[q]) {
      t = value(a, p);
      contrib(a, q, mk2(a, OP_MATVEC, l, t, dy), +1);
    }
    break;
  case OP_OUTER: /* Y [m, n] = outer(a [m], b [n]): da += dY @ b, db += matvec_t(dY, a) */
    if (a->reach[p]) {
      t = value(a, q);
      contrib(a, p, mk2(a, OP_MATVEC, l, dy, t), +1);
    }
    if (a->reach[q]) {
      t = value(a, p);
      contrib(a, q, mk2(a, OP_MATVECT, l, dy, t), +1);
    }
    break;
  case OP_NEG: /* y = -p */
    contrib(a, p, dy, -1);
    break;
  case OP_SIGMOID: /* dp += dy * y * (1 - y) */
    y = value(a, v);
    t = mk2(a, OP_MUL, l, dy, y);
    one = mkconst(a, 1, l);
    u = mk2(a, OP_SUB, l, one, y);
    contrib(a, p, mk2(a, OP_MUL, l, t, u), +1);
    break;
  case OP_TANH: /* dp += dy * (1 - y * y) */
    y = value(a, v);
    one = mkconst(a, 1, l);
    t = mk2(a, OP_MUL, l, y, y);
    u = mk2(a, OP_SUB, l, one, t);
    contrib(a, p, mk2(a, OP_MUL, l, dy, u), +1);
    break;
  case OP_RELU: /* dp += dy * step(p) */
    t = value(a, p);
    u = mk1(a, OP_STEP, l, t);
    contrib(a, p, mk2(a, OP_MUL, l, dy, u), +1);
    break;
  case OP_STEP:
    break; /* not differentiable: zero almost everywhere (p gets nothing) */
  case OP_EXP: /* dp += dy * y */
    y = value(a, v);
    contrib(a, p, mk2(a, OP_MUL, l, dy, y), +1);
    break;
  case OP_LOG: /* dp += dy / p */
    t = value(a, p);
    contrib(a, p, mk2(a, OP_DIV, l, dy, t), +1);
    break;
  case OP_SPLIT: {
    /* y = split(p [d], n)[k]: the adjoints of the n parts of one source go back
     * as ONE concat, zeros([d/n]) for a part without adjoint. Built when the
     * walk reaches the group's first part (the others come later, so are done). */
    int parts[64], any = 0;
    if (n.n > 64)
      die("autodiff: split into %d parts", n.n);
    for (int w = 0; w < v; w++)
      if (a->f->node[w].op == OP_SPLIT && a->f->node[w].arg[0] == p && a->f->node[w].n == n.n)
        return; /* not the first part of its group */
    for (int k = 0; k < n.n; k++)
      parts[k] = -1;
    for (int w = v; w < a->f->nnode; w++) {
      const Node *s = &a->f->node[w];
      if (s->op != OP_SPLIT || s->arg[0] != p || s->n != n.n || a->adj[w] < 0)
        continue;
      int k = s->k;
      parts[k] = parts[k] < 0 ? a->adj[w] : mk2(a, OP_ADD, l, parts[k], a->adj[w]);
      any = 1;
    }
    if (!any)
      break;
    for (int k = 0; k < n.n; k++)
      if (parts[k] < 0)
        parts[k] = mkzeros(a, n.shape.d[0], l);
    contrib(a, p, mkconcat(a, n.n, parts, l), +1);
    break;
  }
  case OP_SLICE: {
    /* y [size] = slice(p [d], start, size): dp += concat(zeros([start]), dy,
     * zeros([d - start - size])), empty parts left out */
    Dim d = a->f->node[p].shape.d[0], end, rest;
    if (!dim_add(n.start, n.shape.d[0], &end) || !dim_add(d, dim_scale(end, -1), &rest))
      die("autodiff: slice bounds of cell '%s' have too many terms", a->f->name);
    int parts[3], np = 0;
    if (!dim_isconst(n.start) || n.start.c != 0)
      parts[np++] = mkzeros(a, n.start, l);
    parts[np++] = dy;
    if (!dim_isconst(rest) || rest.c != 0)
      parts[np++] = mkzeros(a, rest, l);
    contrib(a, p, mkconcat(a, np, parts, l), +1);
    break;
  }
  case OP_CONCAT: { /* y = concat(p1 [d1], p2 [d2], ...): dp_i += slice(dy, d1 + .. + d(i-1), di) */
    Dim off = dim_const(0);
    for (int i = 0; i < n.narg; i++) {
      Dim di = a->f->node[n.arg[i]].shape.d[0];
      if (a->reach[n.arg[i]])
        contrib(a, n.arg[i], mkslice(a, dy, off, di, l), +1);
      if (!dim_add(off, di, &off))
        die("autodiff: concat offsets of cell '%s' have too many terms", a->f->name);
    }
    break;
  }
  default:
    die("autodiff: op %d has no derivative rule", n.op);
  }
}

/* ---- the walk ------------------------------------------------------------ */

/* Whether backward node id may take a name: an anonymous computed value. */
static int nameable(AD *a, int id)
{
  const Node *n = &a->b->node[id];
  return !n->name && n->op != OP_INPUT && n->op != OP_STATE && n->op != OP_PARAM;
}

/* The one node that reads forward node v, when v is not also an out or a
 * state's new value; else -1. */
static int soleuser(AD *a, int v)
{
  const Cell *f = a->f;
  int user = -1, nuse = 0;
  for (int j = 0; j < f->nout; j++)
    nuse += f->out[j] == v;
  for (int s = 0; s < f->nstate; s++)
    nuse += f->next[s] == v;
  for (int u = v + 1; u < f->nnode; u++)
    for (int k = 0; k < f->node[u].narg; k++)
      if (f->node[u].arg[k] == v) {
        nuse++;
        user = u;
      }
  return nuse == 1 ? user : -1;
}

/* Sum the contributions to v's adjoint (positive terms first, `+`/`-`) into
 * a->adj[v] and name it; -1 when there are none. */
static int finish(AD *a, int v)
{
  Terms *t = &a->terms[v];
  if (t->n == 0)
    return -1;
  Loc l = a->f->node[v].loc;
  Term *s = aalloc(a->m->arena, (size_t)t->n * sizeof *s);
  int ns = 0;
  for (int pass = 0; pass < 2; pass++)
    for (int i = 0; i < t->n; i++)
      if ((t->t[i].sign > 0) == (pass == 0))
        s[ns++] = t->t[i];
  int sum = s[0].sign > 0 ? s[0].node : mk1(a, OP_NEG, l, s[0].node);
  for (int i = 1; i < ns; i++)
    sum = mk2(a, s[i].sign > 0 ? OP_ADD : OP_SUB, l, sum, s[i].node);
  a->adj[v] = sum;

  const Node *n = &a->f->node[v];
  if (nameable(a, sum)) {
    const char *name = NULL;
    if (n->op == OP_STATE)
      name = a->supdate[a->sidx[v]];
    else if (n->op != OP_PARAM && n->name)
      name = adjname(a, n->name);

    if (name)
      a->b->node[sum].name = name;
  }
  return sum;
}

/* The adjoint of an anonymous forward value, when the backward cell reads it
 * more than once (a single use is printed inline): named after what it is —
 * d_y_pre for the operand of a named y = tanh(...), d_<prefix> for a value
 * split into parts <prefix>_i, <prefix>_f, ..., else d_<short expression>
 * (d_f_times_h); left to the printer when none applies. */
static void nameshared(AD *a)
{
  Cell *f = a->f, *b = a->b;
  int *uses = aalloc(a->m->arena, ((size_t)b->nnode + 1) * sizeof *uses);
  for (int i = 0; i < b->nnode; i++)
    for (int k = 0; k < b->node[i].narg; k++)
      uses[b->node[i].arg[k]]++;
  for (int s = 0; s < b->nstate; s++)
    uses[b->next[s]]++;
  for (int j = 0; j < b->nout; j++)
    uses[b->out[j]]++;
  for (int p = 0; p < b->nparam; p++)
    if (b->grad[p] >= 0)
      uses[b->grad[p]]++;
  for (int v = f->nnode - 1; v >= 0; v--) {
    int d = a->adj[v];
    if (f->node[v].name || d < 0 || !nameable(a, d) || uses[d] < 2)
      continue;
    const char *name = NULL;
    int y = soleuser(a, v);
    const Node *yn = y >= 0 ? &f->node[y] : NULL;
    if (yn && yn->name && yn->narg == 1 && opinfo[yn->op].shape_rule == SH_EW &&
        opinfo[yn->op].prec == 0)
      name = aprintf(a->m->arena, "d_%s_pre", flat(a, yn->name));
    if (!name) {
      /* every user a named split part: their common prefix, without a final '_' */
      const char *first = NULL;
      size_t len = 0;
      int allsplit = 1;
      for (int u = v + 1; u < f->nnode && allsplit; u++)
        for (int k = 0; k < f->node[u].narg; k++) {
          if (f->node[u].arg[k] != v)
            continue;
          const char *un = f->node[u].name;
          if (f->node[u].op != OP_SPLIT || !un) {
            allsplit = 0;
            break;
          }
          if (!first) {
            first = un;
            len = strlen(un);
          }
          size_t l = 0;
          while (l < len && un[l] == first[l])
            l++;
          len = l;
        }
      while (len > 0 && (first[len - 1] == '_' || first[len - 1] == '\''))
        len--;
      if (allsplit && first && len > 0)
        name = aprintf(a->m->arena, "d_%.*s", (int)len, first);
    }
    if (!name && exprname(a, v))
      name = aprintf(a->m->arena, "d_%s", exprname(a, v));
    if (name)
      b->node[d].name = uniq(a, name);
  }
}

/* Per fwd node: reach and isconst (operands come before users). */
static void classify(AD *a)
{
  Cell *f = a->f;
  for (int v = 0; v < f->nnode; v++) {
    const Node *n = &f->node[v];
    int leaf = n->op == OP_INPUT || n->op == OP_STATE || n->op == OP_PARAM;
    int r = leaf, c = !leaf;
    for (int i = 0; i < n->narg; i++) {
      r |= a->reach[n->arg[i]];
      c &= a->isconst[n->arg[i]];
    }
    a->reach[v] = (char)(r && n->op != OP_STEP && n->op != OP_CONST && n->op != OP_ZEROS);
    a->isconst[v] = (char)c;
  }
}

/* Sort the saved inputs by forward node id (then the output adjoints) so the
 * backward cell's signature lists them in the forward cell's order. */
static void order_inputs(AD *a, int nadjin, const int *adjin)
{
  for (int i = 1; i < a->nsaved; i++)
    for (int j = i; j > 0 && a->saved[j - 1] > a->saved[j]; j--) {
      int t = a->saved[j];
      a->saved[j] = a->saved[j - 1];
      a->saved[j - 1] = t;
    }
  Cell *b = a->b;
  if (b->ninput != a->nsaved + nadjin)
    die("autodiff: %d backward inputs for %d saved values and %d adjoints", b->ninput, a->nsaved,
        nadjin);
  for (int i = 0; i < a->nsaved; i++)
    b->input[i] = a->val[a->saved[i]];
  for (int j = 0; j < nadjin; j++)
    b->input[a->nsaved + j] = adjin[j];
}

/* A dim of the forward signature that no backward leaf carries (an input's
 * size seen nowhere else): save that input so the backward cell has the dim. */
static void keepdims(AD *a)
{
  Cell *f = a->f, *b = a->b;
  for (int d = 0; d < f->ndim; d++) {
    int found = 0;
    for (int id = 0; id < b->nnode && !found; id++) {
      const Node *n = &b->node[id];
      if (n->op != OP_INPUT && n->op != OP_STATE && n->op != OP_PARAM)
        continue;
      for (int k = 0; k < n->shape.rank; k++)
        for (int t = 0; t < n->shape.d[k].nterm; t++)
          found |= n->shape.d[k].t[t].sym == f->dim[d];
    }
    for (int i = 0; i < f->ninput && !found; i++) {
      const Shape *s = &f->node[f->input[i]].shape;
      for (int t = 0; t < s->d[0].nterm; t++)
        found |= s->d[0].t[t].sym == f->dim[d];
      if (found)
        value(a, f->input[i]);
    }
  }
}

Grad *autodiff_cell(Module *m, Cell *c)
{
  if (c->derived)
    return c->derived;
  if (c->verified != 1)
    die("autodiff: cell '%s' is not verified", c->name);
  if (c->primal)
    die("autodiff: cell '%s' is itself a backward cell", c->name);

  AD ad = {.m = m, .f = c}, *a = &ad;
  Arena *ar = m->arena;
  int nn = c->nnode;
  a->reach = aalloc(ar, (size_t)nn + 1);
  a->isconst = aalloc(ar, (size_t)nn + 1);
  a->val = aalloc(ar, ((size_t)nn + 1) * sizeof *a->val);
  a->adj = aalloc(ar, ((size_t)nn + 1) * sizeof *a->adj);
  a->terms = aalloc(ar, ((size_t)nn + 1) * sizeof *a->terms);
  a->pidx = aalloc(ar, ((size_t)nn + 1) * sizeof *a->pidx);
  a->sidx = aalloc(ar, ((size_t)nn + 1) * sizeof *a->sidx);
  a->iidx = aalloc(ar, ((size_t)nn + 1) * sizeof *a->iidx);
  for (int v = 0; v < nn; v++)
    a->val[v] = a->adj[v] = a->pidx[v] = a->sidx[v] = a->iidx[v] = -1;
  for (int p = 0; p < c->nparam; p++)
    a->pidx[c->param[p]] = p;
  for (int s = 0; s < c->nstate; s++)
    a->sidx[c->state[s]] = s;
  for (int i = 0; i < c->ninput; i++)
    a->iidx[c->input[i]] = i;
  classify(a);

  /* the verifier makes every leaf a vector or matrix, so a scalar is a
   * constant expression: it never carries an adjoint */
  for (int v = 0; v < nn; v++)
    if (a->reach[v] && c->node[v].shape.rank == 0)
      die("autodiff: scalar node %d of cell '%s' depends on a leaf", v, c->name);
  /* a one-element operand [1] broadcast over a vector would need its adjoint
   * summed over the vector, which no op does: only a value that carries no
   * adjoint (a constant, a step()) may be broadcast so */
  for (int v = 0; v < nn; v++) {
    const Node *n = &c->node[v];
    if (opinfo[n->op].shape_rule != SH_EW || n->shape.rank != 1 || node_isone(&n->shape))
      continue;
    for (int i = 0; i < n->narg; i++)
      if (a->reach[n->arg[i]] && node_isone(&c->node[n->arg[i]].shape)) {
        error_at(&m->diags, n->loc,
                 "cannot differentiate cell '%s': a one-element value is broadcast over a vector here and "
                 "carries an adjoint (broadcast only constants or step() of a value)",
                 c->name);
        return NULL;
      }
  }
  const char *bname = aprintf(ar, "%s.backward", c->name);
  if (cell_find(m, bname)) {
    error_at(&m->diags, cell_find(m, bname)->loc,
             "cell '%s' takes the name of the backward cell that autodiff derives for '%s'",
             bname, c->name);
    return NULL;
  }

  Cell *b = a->b = cell_new(m, bname, c->loc);
  b->primal = c;

  /* the signature: output adjoints (inputs), state adjoints, params */
  int *adjin = aalloc(ar, ((size_t)c->nout + 1) * sizeof *adjin);
  int *bstate = aalloc(ar, ((size_t)c->nstate + 1) * sizeof *bstate);
  a->supdate = aalloc(ar, ((size_t)c->nstate + 1) * sizeof *a->supdate);
  const char **sname = aalloc(ar, ((size_t)c->nstate + 1) * sizeof *sname);
  for (int s = 0; s < c->nstate; s++) {
    const char *base = aprintf(ar, "d_%s", c->node[c->state[s]].name);
    const char *st = nm(a, base), *up = nm(a, aprintf(ar, "%s'", base));
    for (int k = 2; taken(a, st) || taken(a, up); k++) {
      st = nm(a, aprintf(ar, "%s%d", base, k));
      up = nm(a, aprintf(ar, "%s%d'", base, k));
    }
    use(a, st);
    use(a, up);
    sname[s] = st;
    a->supdate[s] = up;
  }
  for (int j = 0; j < c->nout; j++) {
    const char *on = c->node[c->out[j]].name;
    size_t len = on ? strlen(on) : 0;
    const char *base = on && on[len - 1] != '\'' ? aprintf(ar, "d_%s", on) : "d_out";
    adjin[j] = cell_decl(m, b, OP_INPUT, uniq(a, base), c->outloc[j], &c->node[c->out[j]].shape);
  }
  for (int s = 0; s < c->nstate; s++) {
    const Node *sn = &c->node[c->state[s]];
    bstate[s] = cell_decl(m, b, OP_STATE, sname[s], sn->loc, &sn->shape);
  }
  for (int p = 0; p < c->nparam; p++) {
    const Node *pn = &c->node[c->param[p]];
    a->val[c->param[p]] = cell_decl(m, b, OP_PARAM, pn->name, pn->loc, &pn->shape);
  }

  /* seeds: each state's new value gets the carried adjoint, each out d_out */
  for (int s = 0; s < c->nstate; s++)
    contrib(a, c->next[s], bstate[s], +1);
  for (int j = 0; j < c->nout; j++)
    contrib(a, c->out[j], adjin[j], +1);

  /* the walk, users before operands */
  for (int v = nn - 1; v >= 0; v--) {
    int dy = finish(a, v);
    if (dy >= 0 || c->node[v].op == OP_SPLIT)
      rule(a, v, dy);
  }

  /* results: adjoints of the old states, of the inputs, of the params */
  for (int s = 0; s < c->nstate; s++) {
    int d = a->adj[c->state[s]];
    if (d < 0) {
      d = mkzeros(a, c->node[c->state[s]].shape.d[0], c->node[c->state[s]].loc);
      b->node[d].name = a->supdate[s];
    }
    b->next[s] = d;
    b->nextloc[s] = c->node[c->state[s]].loc;
  }
  for (int i = 0; i < c->ninput; i++) {
    const Node *in = &c->node[c->input[i]];
    int d = a->adj[c->input[i]];
    if (d < 0)
      d = mkzeros(a, in->shape.d[0], in->loc);
    cell_addout(m, b, d, in->loc);
  }
  for (int p = 0; p < c->nparam; p++)
    b->grad[p] = a->adj[c->param[p]];

  nameshared(a);
  keepdims(a);
  order_inputs(a, c->nout, adjin);

  int nd = m->diags.n;
  if (verify_cell(m, b) != RNNC_OK)
    die("autodiff: the backward cell of '%s' does not verify:\n%s", c->name,
        diags_string(ar, &m->diags));
  m->diags.n = nd; /* no warning about a derived cell is the user's business */
  b->ndim = 0; /* the forward cell's dims, in its order (a copy) */
  for (int d = 0; d < c->ndim; d++)
    APUSH(ar, b->dim, b->ndim, b->capdim, c->dim[d]);

  Grad *g = aalloc(ar, sizeof *g);
  g->fwd = c;
  g->bwd = b;
  g->saved = a->saved;
  g->nsaved = a->nsaved;
  return c->derived = g;
}
