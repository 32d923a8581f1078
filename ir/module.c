/* module.c — modules, cells and models: creation, lookup, the prelude. */
#include <string.h>

#include "ir.h"

const char *const mkind_name[NMKIND] = {
    [M_INPUT] = "input",   [M_EMBEDDING] = "embedding", [M_CELL] = "cell",
    [M_CONCAT] = "concat", [M_LAST] = "last",           [M_FINAL] = "final",
    [M_SOFTMAX] = "softmax", [M_LOGITS] = "logits",     [M_PROBS] = "probs",
    [M_SUM] = "sum",       [M_ONEHOT] = "onehot",
};

Source *source_new(Module *m, const char *name, const char *text)
{
  Source *s = aalloc(m->arena, sizeof *s);
  s->name = astrdup(m->arena, name);
  s->text = astrdup(m->arena, text);
  return s;
}

Module *module_new(void)
{
  Arena *a = arena_new();
  Module *m = aalloc(a, sizeof *m);
  m->arena = a;
  m->names = names_new(a);
  m->diags.arena = a;
  const Source *src = source_new(m, "<prelude>", prelude_text);
  if (parse(m, src) != RNNC_OK || verify(m) != RNNC_OK) {
    diags_print(stderr, &m->diags);
    die("the prelude does not verify");
  }
  for (int i = 0; i < m->ncell; i++)
    m->cell[i]->builtin = 1;
  return m;
}

void module_free(Module *m)
{
  if (m)
    arena_free(m->arena);
}

Cell *cell_find(Module *m, const char *name)
{
  for (int i = m->ncell - 1; i >= 0; i--)
    if (strcmp(m->cell[i]->name, name) == 0)
      return m->cell[i];
  return NULL;
}

Model *model_find(Module *m, const char *name)
{
  if (!name)
    return m->nmodel == 1 ? m->model[0] : NULL;
  for (int i = 0; i < m->nmodel; i++)
    if (strcmp(m->model[i]->name, name) == 0)
      return m->model[i];
  return NULL;
}

Cell *cell_new(Module *m, const char *name, Loc loc)
{
  Cell *c = aalloc(m->arena, sizeof *c);
  c->name = intern(m->names, name, strlen(name));
  c->loc = loc;
  APUSH(m->arena, m->cell, m->ncell, m->capcell, c);
  return c;
}

int cell_add(Module *m, Cell *c, int op, const char *name, Loc loc, const int *args, int narg)
{
  Node n = {0};
  n.op = op;
  n.name = name ? intern(m->names, name, strlen(name)) : NULL;
  n.loc = loc;
  n.narg = narg;
  if (narg) {
    n.arg = aalloc(m->arena, (size_t)narg * sizeof *n.arg);
    memcpy(n.arg, args, (size_t)narg * sizeof *n.arg);
  }
  APUSH(m->arena, c->node, c->nnode, c->capnode, n);
  return c->nnode - 1;
}

Model *model_new(Module *m, const char *name, Loc loc)
{
  Model *md = aalloc(m->arena, sizeof *md);
  md->name = intern(m->names, name, strlen(name));
  md->loc = loc;
  md->loss = -1;
  APUSH(m->arena, m->model, m->nmodel, m->capmodel, md);
  return md;
}

int model_add(Module *m, Model *md, int kind, const char *name, Loc loc)
{
  MNode n = {0};
  n.kind = kind;
  n.name = name ? intern(m->names, name, strlen(name)) : NULL;
  n.loc = loc;
  n.initfrom = -1;
  n.target = -1;
  n.stateidx = -1;
  APUSH(m->arena, md->node, md->nnode, md->capnode, n);
  return md->nnode - 1;
}

/* Declare a leaf (OP_INPUT, OP_STATE or OP_PARAM) with its shape; keeps the
 * parallel per-state (next, nextloc) and per-param (grad) arrays in step. */
int cell_decl(Module *m, Cell *c, int op, const char *name, Loc loc, const Shape *shape)
{
  int id = cell_add(m, c, op, name, loc, NULL, 0);
  c->node[id].shape = *shape;
  switch (op) {
  case OP_INPUT:
    APUSH(m->arena, c->input, c->ninput, c->capinput, id);
    break;
  case OP_STATE: {
    int cap = c->capstate;
    agrow(m->arena, (void **)&c->next, &cap, c->nstate + 1, sizeof *c->next);
    cap = c->capstate;
    agrow(m->arena, (void **)&c->nextloc, &cap, c->nstate + 1, sizeof *c->nextloc);
    c->next[c->nstate] = -1;
    c->nextloc[c->nstate] = (Loc){0};
    APUSH(m->arena, c->state, c->nstate, c->capstate, id);
    break;
  }
  case OP_PARAM: {
    int cap = c->capparam;
    agrow(m->arena, (void **)&c->grad, &cap, c->nparam + 1, sizeof *c->grad);
    c->grad[c->nparam] = -1;
    APUSH(m->arena, c->param, c->nparam, c->capparam, id);
    break;
  }
  default:
    die("cell_decl: op %d is not a declaration", op);
  }
  return id;
}

void cell_addout(Module *m, Cell *c, int node, Loc loc)
{
  int cap = c->capout;
  agrow(m->arena, (void **)&c->outloc, &cap, c->nout + 1, sizeof *c->outloc);
  c->outloc[c->nout] = loc;
  APUSH(m->arena, c->out, c->nout, c->capout, node);
}
