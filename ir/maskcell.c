/* maskcell.c — the masked variant of a cell, for variable-length sequences
 * padded into one batch: an IR -> IR pass.
 *
 * require: a verified cell with one out. produce: the ordinary cell
 * <cell>.masked (appended to m->cell, verified, cached in c->masked): c's
 * nodes unchanged, then an input `mask: [1]` after c's inputs and
 *   real = step(mask)                       1 at a real step, 0 at padding
 *   pad  = 1 - real
 *   s'   = real * s_new + pad * s           every state s (s_new: c's update)
 *   out real * out_c
 * so a padded step leaves every state as it was and outputs zeros. The mask
 * enters only through step(), which carries no adjoint: autodiff gives the
 * mask none, and the interpreter, autodiff and the compiler need no special
 * case. c's state updates, named s' there, are renamed s_new (a prime ends
 * only a state's update). breaks nothing: c is not changed. */
#include <string.h>

#include "ir.h"

/* name, or name2, name3, ... when a node of c already has it (interned) */
static const char *fresh(Module *m, const Cell *c, const char *name)
{
  const char *s = intern(m->names, name, strlen(name));
  for (int k = 2;; k++) {
    int taken = 0;
    for (int i = 0; i < c->nnode && !taken; i++)
      taken = c->node[i].name == s;
    if (!taken)
      return s;
    const char *t = aprintf(m->arena, "%s%d", name, k);
    s = intern(m->names, t, strlen(t));
  }
}

/* n ints copied into the arena (at least one) */
static int *icopy(Module *m, const int *src, int n, int extra)
{
  int *d = aalloc(m->arena, (size_t)(n + extra + 1) * sizeof *d);
  if (n)
    memcpy(d, src, (size_t)n * sizeof *d);
  return d;
}

Cell *mask_cell(Module *m, Cell *c)
{
  if (c->masked)
    return c->masked;
  if (c->verified != 1 || c->nout != 1)
    die("mask_cell: cell '%s' is not a verified cell with one out", c->name);
  const char *name = aprintf(m->arena, "%s.masked", c->name);
  Cell *old = cell_find(m, name);
  if (old) {
    error_at(&m->diags, old->loc, "cell '%s' takes the name of the masked variant that 'mask =' derives for '%s'",
             old->name, c->name);
    return NULL;
  }
  Cell *mc = cell_new(m, name, c->loc);
  Loc l = c->loc;

  /* c's nodes, same ids; a state's update loses its prime */
  for (int i = 0; i < c->nnode; i++) {
    const Node *n = &c->node[i];
    const char *nm = n->name;
    size_t len = nm ? strlen(nm) : 0;
    if (len > 1 && nm[len - 1] == '\'')
      nm = fresh(m, c, aprintf(m->arena, "%.*s_new", (int)len - 1, nm));
    int id = cell_add(m, mc, n->op, nm, n->loc, n->arg, n->narg);
    Node *d = &mc->node[id];
    d->shape = n->shape;
    d->cval = n->cval;
    d->k = n->k;
    d->n = n->n;
    d->start = n->start;
  }
  /* the signature: c's, then the mask input */
  mc->input = icopy(m, c->input, c->ninput, 1);
  mc->ninput = mc->capinput = c->ninput;
  mc->state = icopy(m, c->state, c->nstate, 0);
  mc->nstate = mc->capstate = c->nstate;
  mc->next = icopy(m, c->next, c->nstate, 0);
  mc->nextloc = aalloc(m->arena, (size_t)(c->nstate + 1) * sizeof *mc->nextloc);
  mc->param = icopy(m, c->param, c->nparam, 0);
  mc->nparam = mc->capparam = c->nparam;
  mc->grad = aalloc(m->arena, (size_t)(c->nparam + 1) * sizeof *mc->grad);
  for (int p = 0; p < c->nparam; p++)
    mc->grad[p] = -1;
  mc->capinput = c->ninput + 1;
  int mask = cell_decl(m, mc, OP_INPUT, fresh(m, c, "mask"), l, &(Shape){1, {dim_const(1)}});

  int real = cell_add(m, mc, OP_STEP, fresh(m, c, "real"), l, &mask, 1);
  int one = cell_add(m, mc, OP_CONST, NULL, l, NULL, 0);
  mc->node[one].cval = 1;
  int pad = cell_add(m, mc, OP_SUB, fresh(m, c, "pad"), l, (int[]){one, real}, 2);
  for (int s = 0; s < c->nstate; s++) {
    int keep = cell_add(m, mc, OP_MUL, NULL, l, (int[]){real, c->next[s]}, 2);
    int held = cell_add(m, mc, OP_MUL, NULL, l, (int[]){pad, c->state[s]}, 2);
    const char *sn = c->node[c->state[s]].name;
    mc->next[s] = cell_add(m, mc, OP_ADD, aprintf(m->arena, "%s'", sn), l, (int[]){keep, held}, 2);
    mc->nextloc[s] = l;
  }
  int out = cell_add(m, mc, OP_MUL, NULL, l, (int[]){real, c->out[0]}, 2);
  cell_addout(m, mc, out, l);

  int nd = m->diags.n;
  if (verify_cell(m, mc) != RNNC_OK)
    die("mask_cell: the masked variant of '%s' does not verify", c->name);
  m->diags.n = nd; /* c's warnings (an unused parameter) were reported at c */
  if (mc->ndim != c->ndim)
    die("mask_cell: the masked variant of '%s' has other dims", c->name);
  for (int k = 0; k < c->ndim; k++)
    if (mc->dim[k] != c->dim[k])
      die("mask_cell: the masked variant of '%s' has other dims", c->name);
  mc->unmasked = c;
  c->masked = mc;
  return mc;
}
