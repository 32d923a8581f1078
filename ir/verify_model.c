/* verify_model.c — check a model: resolve and bind its cells, infer the dtype
 * and shape of every node, name the parameters, find the loss; and verify(),
 * which checks every cell and model of a module not yet checked.
 *
 * require: a parsed model (names resolved to node ids), its cells verified.
 * produce: node dtype/shape/hastime, M_CELL cell/dimval/stateidx, MParams
 *          "<node>.<param>" with shapes in model dims, md->loss, md->verified.
 *
 * Model values: [T, B, d] sequences (hastime, T any dim, B always the batch),
 * [B, d] per sequence, [] a loss; i32 token ids [T, B] or [B]; an f32 [T, B]
 * input is a mask, read only by a cell application's `mask = m`.
 */
#include <stdlib.h>
#include <string.h>

#include "ir.h"

typedef struct V {
  Module *m;
  Model *md;
  char *st;            /* per node: 0 unseen, 1 being checked, 2 ok, 3 bad */
  const char **known;  /* header dims and the symbols of input shapes */
  int nknown, capknown;
  const char *B;       /* the batch dim's symbol */
} V;

static const char *const dtname[] = {"f32", "f64", "i32", "i64"};

/* "f32[T, B, H]" */
static const char *vstr(V *v, const MNode *n)
{
  return aprintf(v->m->arena, "%s%s", dtname[n->dtype], shape_str(v->m->arena, &n->shape));
}

static const char *sstr(V *v, const Shape *s) { return shape_str(v->m->arena, s); }

static const char *nname(const MNode *n) { return n->name ? n->name : mkind_name[n->kind]; }

/* The cell as the model names it (a masked variant's, the cell it wraps). */
static const char *ucell(const Cell *c) { return c->unmasked ? c->unmasked->name : c->name; }

static void addknown(V *v, const char *sym)
{
  for (int i = 0; i < v->nknown; i++)
    if (v->known[i] == sym)
      return;
  APUSH(v->m->arena, v->known, v->nknown, v->capknown, sym);
}

/* A model-level dim: every symbol known, positive when constant. */
static int checkdim(V *v, Dim d, Loc loc)
{
  for (int i = 0; i < d.nterm; i++) {
    int j = 0;
    while (j < v->nknown && v->known[j] != d.t[i].sym)
      j++;
    if (j == v->nknown) {
      error_at(&v->m->diags, loc, "unknown dimension '%s'", d.t[i].sym);
      return 0;
    }
  }
  if (dim_isconst(d) && d.c <= 0) {
    error_at(&v->m->diags, loc, "dimension %ld is not positive", d.c);
    return 0;
  }
  return 1;
}

/* d in model dims: the cell's dims replaced by their values dimval. */
static int subst(V *v, const Cell *c, const Dim *dimval, Dim d, Dim *out, Loc loc)
{
  if (dim_subst(d, c->ndim, c->dim, dimval, out))
    return 1;
  error_at(&v->m->diags, loc, "dimension %s of cell '%s' has more than %d terms in model dims",
           dim_str(v->m->arena, d), c->name, DIM_MAXTERM);
  return 0;
}

static void addparam(V *v, MNode *n, const char *name, Shape s)
{
  MParam *p = &n->param[n->nparam++];
  p->name = intern(v->m->names, name, strlen(name));
  p->full = aprintf(v->m->arena, "%s.%s", n->name, name);
  p->shape = s;
}

/* A node with parameters needs a name, since they are named after it. */
static int named(V *v, MNode *n)
{
  if (n->name)
    return 1;
  error_at(&v->m->diags, n->loc, "%s node has parameters and must be named",
           n->kind == M_EMBEDDING ? "an embedding" : n->kind == M_CELL ? "a cell" : "a softmax");
  return 0;
}

static int vinput(V *v, MNode *n)
{
  Shape *s = &n->shape;
  if (n->dtype == DT_F32) {
    if (s->rank == 3 && s->d[1].nterm == 1 && dim_eq(s->d[1], dim_sym(v->B)))
      n->hastime = 1;
    else if (s->rank == 2 && dim_eq(s->d[0], dim_sym(v->B)))
      n->hastime = 0;
    else if (s->rank == 2 && dim_eq(s->d[1], dim_sym(v->B)))
      n->hastime = 1; /* a mask */
    else {
      error_at(&v->m->diags, n->loc,
               "input '%s' must be f32[T, B, d] (a sequence), f32[B, d] or f32[T, B] (a mask), got %s",
               n->name, vstr(v, n));
      return 0;
    }
  } else if (n->dtype == DT_I32) {
    if (s->rank == 2 && dim_eq(s->d[1], dim_sym(v->B)))
      n->hastime = 1;
    else if (s->rank == 1 && dim_eq(s->d[0], dim_sym(v->B)))
      n->hastime = 0;
    else {
      error_at(&v->m->diags, n->loc, "input '%s' must be i32[T, B] (a sequence) or i32[B], got %s",
               n->name, vstr(v, n));
      return 0;
    }
  } else {
    error_at(&v->m->diags, n->loc, "input '%s' must be i32 or f32, got %s", n->name, vstr(v, n));
    return 0;
  }
  for (int i = 0; i < s->rank; i++)
    if (!checkdim(v, s->d[i], n->loc))
      return 0;
  return 1;
}

static int vembedding(V *v, MNode *n)
{
  MNode *tok = &v->md->node[n->arg[0]];
  if (tok->dtype != DT_I32) {
    error_at(&v->m->diags, n->loc, "'embedding' needs i32 token ids, got %s", vstr(v, tok));
    return 0;
  }
  if (!checkdim(v, n->size[0], n->loc) || !checkdim(v, n->size[1], n->loc) || !named(v, n))
    return 0;
  n->dtype = DT_F32;
  n->hastime = tok->hastime;
  n->shape = tok->shape; /* [T, B] or [B], then E */
  n->shape.d[n->shape.rank++] = n->size[1];
  n->param = aalloc(v->m->arena, sizeof *n->param);
  addparam(v, n, "weight", (Shape){2, {n->size[0], n->size[1]}});
  return 1;
}

/* onehot(tokens, V): i32 [T, B] or [B] -> f32 [.., V], no parameters */
static int vonehot(V *v, MNode *n)
{
  MNode *tok = &v->md->node[n->arg[0]];
  if (tok->dtype != DT_I32) {
    error_at(&v->m->diags, n->loc, "'onehot' needs i32 token ids, got %s", vstr(v, tok));
    return 0;
  }
  if (!checkdim(v, n->size[0], n->loc))
    return 0;
  n->dtype = DT_F32;
  n->hastime = tok->hastime;
  n->shape = tok->shape; /* [T, B] or [B], then V */
  n->shape.d[n->shape.rank++] = n->size[0];
  return 1;
}

/* Bind the cell's dims for application n: from the inputs' feature dims and
 * the explicit `D = dim` bindings. Fills n->dimval; 0 with an error. */
static int bindcell(V *v, MNode *n, Cell *c)
{
  Module *m = v->m;
  Dim *val = aalloc(m->arena, ((size_t)c->ndim + 1) * sizeof *val);
  char *bound = aalloc(m->arena, (size_t)c->ndim + 1); /* 0 no, 1 by an input, 2 by a binding */
  int ok = 1;

  /* an input whose size is a bare dim binds it to the feature dim */
  for (int k = 0; k < c->ninput; k++) {
    Dim want = c->node[c->input[k]].shape.d[0];
    if (want.nterm != 1 || want.t[0].k != 1 || want.c != 0)
      continue;
    for (int j = 0; j < c->ndim; j++)
      if (c->dim[j] == want.t[0].sym && !bound[j]) {
        val[j] = v->md->node[n->arg[k]].shape.d[2];
        bound[j] = 1;
      }
  }

  for (int b = 0; b < n->nbind; b++) {
    int j = 0;
    while (j < c->ndim && strcmp(c->dim[j], n->bindname[b]) != 0)
      j++;
    if (j == c->ndim) {
      error_at(&m->diags, n->bindloc[b], "cell '%s' has no dimension '%s'", c->name,
               n->bindname[b]);
      ok = 0;
      continue;
    }
    if (!checkdim(v, n->bindval[b], n->bindloc[b])) {
      ok = 0;
      continue;
    }
    if (bound[j] == 2) {
      error_at(&m->diags, n->bindloc[b], "dimension %s of cell '%s' is bound twice", c->dim[j],
               c->name);
      ok = 0;
    } else if (bound[j] == 1 && !dim_eq(val[j], n->bindval[b])) {
      error_at(&m->diags, n->bindloc[b],
               "dimension %s of cell '%s' is %s, fixed by its input; it cannot be %s", c->dim[j],
               c->name, dim_str(m->arena, val[j]), dim_str(m->arena, n->bindval[b]));
      ok = 0;
    } else {
      val[j] = n->bindval[b];
      bound[j] = 2;
    }
  }
  if (!ok)
    return 0;

  /* every input: solve a dim it alone leaves open, then compare */
  for (int k = 0; k < c->ninput; k++) {
    MNode *a = &v->md->node[n->arg[k]];
    Dim want = c->node[c->input[k]].shape.d[0], got = a->shape.d[2], rest = dim_const(want.c);
    int open = -1, nopen = 0;
    long coef = 0;
    for (int t = 0; t < want.nterm; t++) {
      int j = 0;
      while (c->dim[j] != want.t[t].sym)
        j++;
      if (bound[j]) {
        if (!dim_add(rest, dim_scale(val[j], want.t[t].k), &rest)) {
          error_at(&m->diags, n->loc, "dimension %s of cell '%s' has more than %d terms in model dims",
                   dim_str(m->arena, want), c->name, DIM_MAXTERM);
          return 0;
        }
      } else
        open = j, coef = want.t[t].k, nopen++;
    }
    if (nopen > 1)
      continue; /* reported as unbound below */
    if (nopen == 1) {
      Dim diff, x;
      if (coef < 0)
        coef = -coef, rest = dim_scale(rest, -1), got = dim_scale(got, -1);
      if (dim_add(got, dim_scale(rest, -1), &diff) && dim_div(diff, coef, &x)) {
        val[open] = x;
        bound[open] = 1;
        continue;
      }
      error_at(&m->diags, n->loc,
               "input '%s' of cell '%s' is [%s]: dimension %s cannot be found from %s; write %s = ...",
               c->node[c->input[k]].name, c->name, dim_str(m->arena, want), c->dim[open],
               vstr(v, a), c->dim[open]);
      return 0;
    }
    if (!dim_eq(rest, got)) {
      Shape need = a->shape;
      need.d[2] = rest;
      error_at(&m->diags, n->loc, "input '%s' of cell '%s' must be %s, got %s",
               c->node[c->input[k]].name, c->name, sstr(v, &need), vstr(v, a));
      return 0;
    }
  }

  for (int j = 0; j < c->ndim; j++)
    if (!bound[j]) {
      error_at(&m->diags, n->cellloc.src ? n->cellloc : n->loc,
               "dimension %s of cell '%s' is not bound; write %s = ...", c->dim[j], c->name,
               c->dim[j]);
      ok = 0;
    }
  n->dimval = val;
  return ok;
}

/* The initial state of cell node n: another cell node's final states, or one
 * [B, d] value per state. */
static int vinit(V *v, MNode *n, Cell *c)
{
  Module *m = v->m;
  if (n->initfrom >= 0) {
    MNode *src = &v->md->node[n->initfrom];
    if (src->kind != M_CELL) {
      error_at(&m->diags, n->loc, "init = '%s' must name a cell node, not %s %s node", nname(src),
               src->kind == M_INPUT || src->kind == M_EMBEDDING ? "an" : "a", mkind_name[src->kind]);
      return 0;
    }
    Cell *sc = src->cell;
    if (sc->nstate != c->nstate) {
      error_at(&m->diags, n->loc, "init = '%s': cell '%s' has %d state%s, cell '%s' needs %d",
               nname(src), ucell(sc), sc->nstate, sc->nstate == 1 ? "" : "s", c->name, c->nstate);
      return 0;
    }
    for (int s = 0; s < c->nstate; s++) {
      Dim have, need;
      if (!subst(v, sc, src->dimval, sc->node[sc->state[s]].shape.d[0], &have, n->loc) ||
          !subst(v, c, n->dimval, c->node[c->state[s]].shape.d[0], &need, n->loc))
        return 0;
      if (!dim_eq(have, need)) {
        error_at(&m->diags, n->loc, "init = '%s': its state '%s' is [B, %s], state '%s' here is [B, %s]",
                 nname(src), sc->node[sc->state[s]].name, dim_str(m->arena, have),
                 c->node[c->state[s]].name, dim_str(m->arena, need));
        return 0;
      }
    }
  }
  if (n->ninit == 0)
    return 1;
  if (n->ninit != c->nstate) {
    error_at(&m->diags, n->loc, "cell '%s' has %d state%s, init gives %d", c->name, c->nstate,
             c->nstate == 1 ? "" : "s", n->ninit);
    return 0;
  }
  for (int s = 0; s < c->nstate; s++) {
    MNode *a = &v->md->node[n->init[s]];
    Shape need = {2, {dim_sym(v->B)}};
    if (!subst(v, c, n->dimval, c->node[c->state[s]].shape.d[0], &need.d[1], n->loc))
      return 0;
    if (a->dtype != DT_F32 || a->hastime || !shape_eq(&a->shape, &need)) {
      error_at(&m->diags, n->loc, "initial state '%s' of cell '%s' must be f32%s, got %s",
               c->node[c->state[s]].name, c->name, sstr(v, &need), vstr(v, a));
      return 0;
    }
  }
  return 1;
}

static int vcell(V *v, MNode *n)
{
  Module *m = v->m;
  Loc cl = n->cellloc.src ? n->cellloc : n->loc;
  Cell *c = n->cell = cell_find(m, n->cellname);
  if (!c) {
    error_at(&m->diags, cl, "unknown cell '%s'", n->cellname);
    return 0;
  }
  if (!c->verified)
    verify_cell(m, c);
  if (c->verified != 1)
    return 0; /* its errors are reported at the cell */
  int hasgrad = 0;
  for (int p = 0; p < c->nparam; p++)
    hasgrad |= c->grad[p] >= 0;
  if (hasgrad || c->primal) {
    error_at(&m->diags, cl, "cell '%s' is a backward cell (it has 'grad' statements); a model cannot apply it",
             c->name);
    return 0;
  }
  if (c->nout != 1) {
    error_at(&m->diags, cl, "cell '%s' has %d outputs; a model applies a cell with exactly one 'out'",
             c->name, c->nout);
    return 0;
  }
  if (c->ninput == 0) {
    error_at(&m->diags, cl, "cell '%s' has no input to run over time", c->name);
    return 0;
  }
  int nin = n->narg - (n->hasmask ? 1 : 0);
  if (nin != c->ninput) {
    error_at(&m->diags, n->loc, "cell '%s' takes %d input%s, got %d", c->name, c->ninput,
             c->ninput == 1 ? "" : "s", nin);
    return 0;
  }
  for (int k = 0; k < nin; k++) {
    MNode *a = &v->md->node[n->arg[k]];
    if (a->dtype != DT_F32 || !a->hastime || a->shape.rank != 3) {
      error_at(&m->diags, n->loc, "input '%s' of cell '%s' must be an f32 sequence [T, B, d], got %s",
               c->node[c->input[k]].name, c->name, vstr(v, a));
      return 0;
    }
    MNode *a0 = &v->md->node[n->arg[0]];
    if (!dim_eq(a->shape.d[0], a0->shape.d[0])) {
      error_at(&m->diags, n->loc, "inputs of cell '%s' run over different time dims: %s and %s",
               c->name, vstr(v, a0), vstr(v, a));
      return 0;
    }
  }
  if (n->hasmask) {
    MNode *mk = &v->md->node[n->arg[nin]], *a0 = &v->md->node[n->arg[0]];
    Shape need = {2, {a0->shape.d[0], dim_sym(v->B)}};
    if (!mnode_is_mask(mk) || !shape_eq(&mk->shape, &need)) {
      error_at(&m->diags, n->loc, "mask of '%s' must be an f32%s input (1 a real step, 0 padding) to match %s, got %s",
               nname(n), sstr(v, &need), vstr(v, a0), vstr(v, mk));
      return 0;
    }
  }
  if (!bindcell(v, n, c) || !vinit(v, n, c) || !named(v, n))
    return 0;
  if (n->hasmask && !(n->cell = mask_cell(m, c)))
    return 0;
  Dim o;
  if (!subst(v, c, n->dimval, c->node[c->out[0]].shape.d[0], &o, n->loc))
    return 0;
  n->dtype = DT_F32;
  n->hastime = 1;
  n->shape = (Shape){3, {v->md->node[n->arg[0]].shape.d[0], dim_sym(v->B), o}};
  n->param = aalloc(m->arena, ((size_t)c->nparam + 1) * sizeof *n->param);
  for (int p = 0; p < c->nparam; p++) {
    const Node *pn = &c->node[c->param[p]];
    Shape s = pn->shape;
    for (int i = 0; i < s.rank; i++)
      if (!subst(v, c, n->dimval, pn->shape.d[i], &s.d[i], n->loc))
        return 0;
    addparam(v, n, pn->name, s);
  }
  return 1;
}

static int vfinal(V *v, MNode *n)
{
  MNode *src = &v->md->node[n->arg[0]];
  if (src->kind != M_CELL) {
    error_at(&v->m->diags, n->loc, "'final' needs a cell node, got '%s' (%s)", nname(src),
             mkind_name[src->kind]);
    return 0;
  }
  Cell *c = src->cell;
  n->stateidx = -1;
  for (int s = 0; s < c->nstate; s++)
    if (strcmp(c->node[c->state[s]].name, n->statename) == 0)
      n->stateidx = s;
  if (n->stateidx < 0) {
    error_at(&v->m->diags, n->loc, "'%s' (cell '%s') has no state '%s'", nname(src), ucell(c),
             n->statename);
    return 0;
  }
  n->dtype = DT_F32;
  n->hastime = 0;
  n->shape = (Shape){2, {dim_sym(v->B)}};
  return subst(v, c, src->dimval, c->node[c->state[n->stateidx]].shape.d[0], &n->shape.d[1],
               n->loc);
}

static int vconcat(V *v, MNode *n)
{
  if (n->narg < 2) {
    error_at(&v->m->diags, n->loc, "'concat' takes at least 2 operands, got %d", n->narg);
    return 0;
  }
  MNode *a0 = &v->md->node[n->arg[0]];
  Shape r = a0->shape;
  for (int k = 0; k < n->narg; k++) {
    MNode *a = &v->md->node[n->arg[k]];
    if (a->dtype != DT_F32 || a->shape.rank < 2) {
      error_at(&v->m->diags, n->loc, "'concat' needs f32[T, B, d] or f32[B, d] values, got %s",
               vstr(v, a));
      return 0;
    }
    int lead = a->shape.rank == r.rank && a->hastime == a0->hastime;
    for (int i = 0; lead && i < r.rank - 1; i++)
      lead = dim_eq(a->shape.d[i], r.d[i]);
    if (!lead) {
      error_at(&v->m->diags, n->loc, "shape mismatch in 'concat': %s and %s", vstr(v, a0),
               vstr(v, a));
      return 0;
    }
    if (k && !dim_add(r.d[r.rank - 1], a->shape.d[r.rank - 1], &r.d[r.rank - 1])) {
      error_at(&v->m->diags, n->loc, "'concat': the size of the result has more than %d terms",
               DIM_MAXTERM);
      return 0;
    }
  }
  n->dtype = DT_F32;
  n->hastime = a0->hastime;
  n->shape = r;
  return 1;
}

static int vlast(V *v, MNode *n)
{
  MNode *x = &v->md->node[n->arg[0]];
  if (x->dtype != DT_F32 || !x->hastime || x->shape.rank != 3) {
    error_at(&v->m->diags, n->loc, "'last' needs a sequence f32[T, B, d], got %s", vstr(v, x));
    return 0;
  }
  n->dtype = DT_F32;
  n->hastime = 0;
  n->shape = (Shape){2, {x->shape.d[1], x->shape.d[2]}};
  return 1;
}

/* x's shape with its last dim replaced by K: the logits/probs of a softmax. */
static Shape withlast(const Shape *x, Dim k)
{
  Shape r = *x;
  r.d[r.rank - 1] = k;
  return r;
}

static int vsoftmax(V *v, MNode *n)
{
  MNode *x = &v->md->node[n->arg[0]];
  int seq = x->hastime && x->shape.rank == 3, per = !x->hastime && x->shape.rank == 2;
  if (x->dtype != DT_F32 || !(seq || per)) {
    error_at(&v->m->diags, n->loc, "'softmax' needs f32[T, B, d] or f32[B, d], got %s", vstr(v, x));
    return 0;
  }
  if (!checkdim(v, n->size[0], n->loc) || !named(v, n))
    return 0;
  Dim d = x->shape.d[x->shape.rank - 1];
  if (n->target >= 0) {
    MNode *t = &v->md->node[n->target];
    Shape need = x->shape;
    need.rank--;
    if (t->dtype != DT_I32 || !shape_eq(&t->shape, &need)) {
      error_at(&v->m->diags, n->loc, "target of '%s' must be i32%s to match its input %s, got %s",
               nname(n), sstr(v, &need), vstr(v, x), vstr(v, t));
      return 0;
    }
    n->shape = (Shape){0};
    n->hastime = 0;
  } else {
    if (n->hasignore) {
      error_at(&v->m->diags, n->loc, "'ignore' needs a target: write softmax(x, K, target = y, ignore = %ld)",
               n->ignore);
      return 0;
    }
    n->shape = withlast(&x->shape, n->size[0]);
    n->hastime = x->hastime;
  }
  n->dtype = DT_F32;
  n->param = aalloc(v->m->arena, 2 * sizeof *n->param);
  addparam(v, n, "weight", (Shape){2, {n->size[0], d}});
  addparam(v, n, "bias", (Shape){1, {n->size[0]}});
  return 1;
}

static int vlogits(V *v, MNode *n)
{
  MNode *s = &v->md->node[n->arg[0]];
  if (s->kind != M_SOFTMAX) {
    error_at(&v->m->diags, n->loc, "'%s' needs a softmax node, got '%s' (%s)", mkind_name[n->kind],
             nname(s), mkind_name[s->kind]);
    return 0;
  }
  MNode *x = &v->md->node[s->arg[0]];
  n->dtype = DT_F32;
  n->hastime = x->hastime;
  n->shape = withlast(&x->shape, s->size[0]);
  return 1;
}

static int vsum(V *v, MNode *n)
{
  MNode *x = &v->md->node[n->arg[0]];
  if (x->dtype != DT_F32) {
    error_at(&v->m->diags, n->loc, "'sum' needs an f32 value, got %s", vstr(v, x));
    return 0;
  }
  n->dtype = DT_F32;
  n->hastime = 0;
  n->shape = (Shape){0};
  return 1;
}

static const int nargs[NMKIND] = {
    [M_INPUT] = 0, [M_EMBEDDING] = 1, [M_CELL] = -1,  [M_CONCAT] = -1, [M_LAST] = 1,
    [M_FINAL] = 1, [M_SOFTMAX] = 1,   [M_LOGITS] = 1, [M_PROBS] = 1,   [M_SUM] = 1,
    [M_ONEHOT] = 1,
};

/* Check node i after its operands (in any order; a cycle is an error). */
static int visit(V *v, int i)
{
  MNode *n = &v->md->node[i];
  if (v->st[i] >= 2)
    return v->st[i] == 2;
  if (v->st[i] == 1) {
    error_at(&v->m->diags, n->loc, "'%s' depends on itself", nname(n));
    return 0;
  }
  v->st[i] = 1;
  if (n->kind < 0 || n->kind >= NMKIND || (nargs[n->kind] >= 0 && n->narg != nargs[n->kind]))
    die("verify: model %s node %d: kind %d with %d operands", v->md->name, i, n->kind, n->narg);
  int ok = 1;
  int deps[4] = {n->target, n->initfrom, -1, -1};
  for (int k = 0; k < n->narg + 2 + n->ninit; k++) {
    int d = k < n->narg ? n->arg[k] : k < n->narg + 2 ? deps[k - n->narg] : n->init[k - n->narg - 2];
    if (d < -1 || d >= v->md->nnode)
      die("verify: model %s node %d uses node %d", v->md->name, i, d);
    if (d >= 0 && !visit(v, d))
      ok = 0;
    else if (d >= 0 && ok && k < n->narg && mnode_is_mask(&v->md->node[d]) &&
             !(n->kind == M_CELL && n->hasmask && k == n->narg - 1)) {
      error_at(&v->m->diags, n->loc, "'%s' is a mask (f32%s); use it as 'mask = %s' of a cell", nname(&v->md->node[d]),
               sstr(v, &v->md->node[d].shape), nname(&v->md->node[d]));
      ok = 0;
    }
  }
  if (ok) {
    switch (n->kind) {
    case M_INPUT: ok = vinput(v, n); break;
    case M_EMBEDDING: ok = vembedding(v, n); break;
    case M_CELL: ok = vcell(v, n); break;
    case M_CONCAT: ok = vconcat(v, n); break;
    case M_LAST: ok = vlast(v, n); break;
    case M_FINAL: ok = vfinal(v, n); break;
    case M_SOFTMAX: ok = vsoftmax(v, n); break;
    case M_LOGITS:
    case M_PROBS: ok = vlogits(v, n); break;
    case M_SUM: ok = vsum(v, n); break;
    case M_ONEHOT: ok = vonehot(v, n); break;
    }
  }
  v->st[i] = ok ? 2 : 3;
  return ok;
}

/* The loss: the one output that is a softmax with a target, or a sum. */
static void findloss(V *v)
{
  Model *md = v->md;
  md->loss = -1;
  for (int k = 0; k < md->noutput; k++) {
    MNode *n = &md->node[md->output[k]];
    if (v->st[md->output[k]] != 2 || !((n->kind == M_SOFTMAX && n->target >= 0) || n->kind == M_SUM))
      continue;
    if (md->loss >= 0 && md->loss != md->output[k]) {
      error_at(&v->m->diags, md->outputloc[k], "model has two losses: '%s' and '%s'",
               nname(&md->node[md->loss]), nname(n));
      return;
    }
    md->loss = md->output[k];
  }
}

int verify_model(Module *m, Model *md)
{
  int nerr0 = m->diags.nerror;
  V v = {.m = m, .md = md, .B = intern(m->names, "B", 1)};
  v.st = calloc((size_t)md->nnode + 1, 1);
  if (!v.st)
    die("out of memory");
  for (int i = 0; i < md->ndim; i++) {
    addknown(&v, md->dim[i].name);
    if (md->dim[i].hasdefault && md->dim[i].def <= 0)
      error_at(&m->diags, md->dim[i].loc, "dimension '%s' must be positive, got %ld",
               md->dim[i].name, md->dim[i].def);
  }
  for (int i = 0; i < md->nnode; i++) {
    md->node[i].nparam = 0;
    if (md->node[i].kind == M_INPUT)
      for (int k = 0; k < md->node[i].shape.rank; k++)
        for (int t = 0; t < md->node[i].shape.d[k].nterm; t++)
          addknown(&v, md->node[i].shape.d[k].t[t].sym);
  }
  for (int i = 0; i < md->nnode; i++)
    visit(&v, i);
  if (md->noutput == 0)
    error_at(&m->diags, md->loc, "model '%s' declares no output", md->name);
  findloss(&v);
  free(v.st);
  md->verified = m->diags.nerror > nerr0 ? 2 : 1;
  return md->verified == 1 ? RNNC_OK : RNNC_EVERIFY;
}

int verify(Module *m)
{
  int bad = 0;
  for (int i = 0; i < m->ncell; i++) {
    if (!m->cell[i]->verified)
      verify_cell(m, m->cell[i]);
    bad |= m->cell[i]->verified != 1;
  }
  for (int i = 0; i < m->nmodel; i++) {
    if (!m->model[i]->verified)
      verify_model(m, m->model[i]);
    bad |= m->model[i]->verified != 1;
  }
  return bad ? RNNC_EVERIFY : RNNC_OK;
}
