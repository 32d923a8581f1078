/* lower.c — a cell's syntax tree to nodes: names resolved, cycles reported,
 * statements emitted in dependency order (operands before users). */
#include <stdio.h>

#include "parse.h"

/* Resolve the names an expression reads into the item's deps; undefined ones
 * are reported. */
static void collect(P *p, CellAst *ca, Item *it, Expr *e)
{
  if (e->kind == E_NAME) {
    int r;
    if (!map_get(&ca->names, e->name, &r)) {
      p_err_at(p, e->loc, "undefined name '%s'", e->name);
      return;
    }
    if (ca->ref[r].item >= 0)
      APUSH(p->a, it->dep, it->ndep, it->capdep, ca->ref[r].item);
    return;
  }
  for (int i = 0; i < e->narg; i++)
    collect(p, ca, it, e->arg[i]);
}

static int lower_expr(P *p, CellAst *ca, Expr *e)
{
  Module *m = p->m;
  Cell *c = ca->c;
  if (e->node >= 0)
    return e->node;
  int id, args[1];
  switch (e->kind) {
  case E_NUM:
    id = cell_add(m, c, OP_CONST, NULL, e->loc, NULL, 0);
    c->node[id].cval = e->num;
    break;
  case E_NAME: {
    int r;
    if (!map_get(&ca->names, e->name, &r))
      die("lower: unresolved name '%s'", e->name);
    Ref *ref = &ca->ref[r];
    id = ref->item < 0 ? ref->part : ca->item[ref->item].node[ref->part];
    if (id < 0)
      die("lower: '%s' used before it was lowered", e->name);
    break;
  }
  case E_OP: {
    int *a = aalloc(p->a, (size_t)(e->narg ? e->narg : 1) * sizeof *a);
    for (int i = 0; i < e->narg; i++)
      a[i] = lower_expr(p, ca, e->arg[i]);
    id = cell_add(m, c, e->op, NULL, e->loc, a, e->narg);
    break;
  }
  case E_SPLIT:
    args[0] = lower_expr(p, ca, e->arg[0]);
    id = cell_add(m, c, OP_SPLIT, NULL, e->loc, args, 1);
    c->node[id].k = e->k;
    c->node[id].n = e->n;
    break;
  case E_SLICE:
    args[0] = lower_expr(p, ca, e->arg[0]);
    id = cell_add(m, c, OP_SLICE, NULL, e->loc, args, 1);
    c->node[id].start = e->start;
    c->node[id].shape = e->shape;
    break;
  case E_ZEROS:
    id = cell_add(m, c, OP_ZEROS, NULL, e->loc, NULL, 0);
    c->node[id].shape = e->shape;
    break;
  default:
    die("lower: bad expr kind %d", e->kind);
  }
  e->node = id;
  return id;
}

/* Emit one statement's nodes; everything it reads is already emitted. */
static void emit(P *p, CellAst *ca, Item *it)
{
  Module *m = p->m;
  Cell *c = ca->c;
  it->node = aalloc(p->a, (size_t)(it->nname ? it->nname : 1) * sizeof *it->node);
  switch (it->kind) {
  case I_DEF: {
    int fresh = c->nnode;
    int id = lower_expr(p, ca, it->e);
    if (id >= fresh) /* a new node, not an alias of an existing value */
      c->node[id].name = it->name[0];
    it->node[0] = id;
    break;
  }
  case I_SPLIT: {
    int src = lower_expr(p, ca, it->e);
    for (int k = 0; k < it->n; k++) {
      int id = cell_add(m, c, OP_SPLIT, it->name[k], it->nameloc[k], &src, 1);
      c->node[id].k = k;
      c->node[id].n = it->n;
      it->node[k] = id;
    }
    break;
  }
  case I_OUT:
    cell_addout(m, c, lower_expr(p, ca, it->e), it->loc);
    break;
  case I_GRAD:
    c->grad[it->param] = lower_expr(p, ca, it->e);
    break;
  }
}

/* The name an item is known by in a cycle message. */
static const char *itemname(const Item *it) { return it->nname ? it->name[0] : "?"; }

/* Dependency order by an explicit-stack DFS from each statement in source
 * order, so long chains of forward references cannot overflow the C stack. */
void lower_cell(P *p, CellAst *ca)
{
  int nerr = p->m->diags.nerror;
  for (int i = 0; i < ca->nitem; i++)
    collect(p, ca, &ca->item[i], ca->item[i].e);
  if (p->m->diags.nerror != nerr)
    return;
  int *stack = aalloc(p->a, (size_t)(ca->nitem ? ca->nitem : 1) * sizeof *stack);
  int *edge = aalloc(p->a, (size_t)(ca->nitem ? ca->nitem : 1) * sizeof *edge);
  int cycles = 0;
  for (int root = 0; root < ca->nitem; root++) {
    if (ca->item[root].mark)
      continue;
    int sp = 0;
    stack[sp] = root;
    edge[sp++] = 0;
    ca->item[root].mark = 1;
    while (sp > 0) {
      Item *it = &ca->item[stack[sp - 1]];
      if (edge[sp - 1] < it->ndep) {
        int d = it->dep[edge[sp - 1]++];
        Item *di = &ca->item[d];
        if (di->mark == 0) {
          di->mark = 1;
          stack[sp] = d;
          edge[sp++] = 0;
        } else if (di->mark == 1) {
          /* d is on the stack: the cycle is d -> ... -> it -> d */
          int from = sp - 1;
          while (stack[from] != d)
            from--;
          char buf[1024];
          size_t n = 0;
          for (int j = from; j < sp && n < sizeof buf - 64; j++)
            n += (size_t)snprintf(buf + n, sizeof buf - n, "%s -> ",
                                  itemname(&ca->item[stack[j]]));
          snprintf(buf + n, sizeof buf - n, "%s", itemname(di));
          p_err_at(p, di->loc, "cycle inside a step: %s", buf);
          cycles++;
        }
      } else {
        if (!cycles)
          emit(p, ca, it);
        it->mark = 2;
        sp--;
      }
    }
  }
  if (cycles)
    return;
  for (int i = 0; i < ca->nitem; i++) {
    Item *it = &ca->item[i];
    if (it->kind == I_DEF && it->state >= 0) {
      ca->c->next[it->state] = it->node[0];
      ca->c->nextloc[it->state] = it->loc;
    }
  }
}
