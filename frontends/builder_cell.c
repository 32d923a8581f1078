/* builder_cell.c — the cell builder (rnnc_cell_begin .. rnnc_cell_end): a
 * cell's leaves, ops and updates, verified and kept at rnnc_cell_end. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "builder.h"

static const char *const opid[NOPS] = {
#define X(id, sp, ar, sh, pr, ev) [OP_##id] = "RNNC_OP_" #id,
    OPS(X)
#undef X
};

struct rnnc_cell_builder {
  rnnc_ctx *ctx;
  Cell *c;
  int *uses, capuses; /* per node: how many times it is used so far */
};

static int cellname_taken(rnnc_cell_builder *cb, const char *fn, const char *name)
{
  Cell *c = cb->c;
  for (int i = 0; i < c->nnode; i++)
    if (c->node[i].name && strcmp(c->node[i].name, name) == 0) {
      api_fail(cb->ctx, RNNC_EMISUSE, "%s: duplicate definition of '%s' in cell '%s'", fn, name,
               c->name);
      return 1;
    }
  return 0;
}

/* A new value name: NULL is fine when anon; else valid and not yet defined. */
static int newvalue(rnnc_cell_builder *cb, const char *fn, const char *name, int anon)
{
  if (!name && anon)
    return 1;
  return b_checkname(cb->ctx, fn, name) && !cellname_taken(cb, fn, name);
}

/* Check operands: ids of this cell; an anonymous one not used yet (nor twice
 * here). Counts the uses only when all are fine. */
static int useargs(rnnc_cell_builder *cb, const char *fn, int n, const rnnc_value *args)
{
  Cell *c = cb->c;
  if (n > 0 && !args)
    return api_fail(cb->ctx, RNNC_EMISUSE, "%s: the operands are NULL", fn), 0;
  for (int i = 0; i < n; i++) {
    int a = args[i];
    if (a < 0 || a >= c->nnode)
      return api_fail(cb->ctx, RNNC_EMISUSE, "%s: %d is not a value of cell '%s'", fn, a, c->name), 0;
    int again = 0;
    for (int j = 0; j < i; j++)
      again += args[j] == a;
    if (!c->node[a].name && cb->uses[a] + again > 0)
      return api_fail(cb->ctx, RNNC_EMISUSE,
                      "%s: value %d has no name and is already used; name it to use it twice", fn,
                      a),
             0;
  }
  for (int i = 0; i < n; i++)
    cb->uses[args[i]]++;
  return 1;
}

static int addnode(rnnc_cell_builder *cb, int op, const char *name, Loc loc, int narg,
                   const int *args)
{
  Module *m = cb->ctx->m;
  int id = cell_add(m, cb->c, op, name, loc, args, narg);
  b_track(m->arena, &cb->uses, &cb->capuses, id);
  return id;
}

int rnnc_cell_begin(rnnc_ctx *ctx, const char *name, rnnc_cell_builder **cb)
{
  if (!ctx)
    return RNNC_EMISUSE;
  Loc loc = b_call(ctx, "rnnc_cell_begin(%s)", b_q(ctx, name));
  const char *fn = "rnnc_cell_begin";
  if (!cb)
    return api_fail(ctx, RNNC_EMISUSE, "%s: cb is NULL", fn);
  *cb = NULL;
  if (ctx->open)
    return api_fail(ctx, RNNC_EMISUSE, "%s: a %s builder is already open on this context", fn,
                    ctx->openkind == 'c' ? "cell" : "model");
  if (!b_checkname(ctx, fn, name))
    return RNNC_EMISUSE;
  for (int k = 0; k < NMKIND; k++)
    if (k != M_INPUT && k != M_CELL && strcmp(name, mkind_name[k]) == 0)
      return api_fail(ctx, RNNC_EMISUSE, "%s: '%s' is a model operation and cannot name a cell", fn,
                      name);
  Cell *old = cell_find(ctx->m, name);
  if (old)
    return api_fail(ctx, RNNC_EMISUSE, "%s: duplicate definition of cell '%s'%s", fn, name,
                    old->builtin ? " (a built-in cell)" : "");
  rnnc_cell_builder *b = calloc(1, sizeof *b);
  if (!b)
    return api_fail(ctx, RNNC_ENOMEM, "%s: out of memory", fn);
  b->ctx = ctx;
  b->c = cell_new(ctx->m, name, loc);
  ctx->open = b;
  ctx->openkind = 'c';
  *cb = b;
  return b_ok(ctx);
}

static int decl(rnnc_cell_builder *cb, int op, const char *fn, const char *name, const char *shape,
                rnnc_value *v)
{
  if (!cb)
    return RNNC_EMISUSE;
  rnnc_ctx *ctx = cb->ctx;
  Loc loc = b_call(ctx, "%s(%s, %s)", fn, b_q(ctx, name), b_q(ctx, shape));
  if (!v)
    return api_fail(ctx, RNNC_EMISUSE, "%s: v is NULL", fn);
  if (!newvalue(cb, fn, name, 0))
    return RNNC_EMISUSE;
  const char *kind = op == OP_INPUT ? "input" : op == OP_STATE ? "state" : "parameter";
  Shape s;
  int rc = b_getshape(ctx, fn, aprintf(ctx->m->arena, "%s '%s'", kind, name), shape, &s);
  if (rc != RNNC_OK)
    return rc;
  *v = cell_decl(ctx->m, cb->c, op, name, loc, &s);
  b_track(ctx->m->arena, &cb->uses, &cb->capuses, *v);
  return b_ok(ctx);
}

int rnnc_cell_input(rnnc_cell_builder *cb, const char *name, const char *shape, rnnc_value *v)
{
  return decl(cb, OP_INPUT, "rnnc_cell_input", name, shape, v);
}

int rnnc_cell_state(rnnc_cell_builder *cb, const char *name, const char *shape, rnnc_value *v)
{
  return decl(cb, OP_STATE, "rnnc_cell_state", name, shape, v);
}

int rnnc_cell_param(rnnc_cell_builder *cb, const char *name, const char *shape, rnnc_value *v)
{
  return decl(cb, OP_PARAM, "rnnc_cell_param", name, shape, v);
}

int rnnc_op(rnnc_cell_builder *cb, int op, const char *name, int nargs, const rnnc_value *args,
            rnnc_value *v)
{
  if (!cb)
    return RNNC_EMISUSE;
  rnnc_ctx *ctx = cb->ctx;
  const char *fn = "rnnc_op";
  Loc loc = b_call(ctx, "rnnc_op(%s, %s, %s)", op >= 0 && op < NOPS ? opid[op] : "?",
                   b_q(ctx, name), b_ids(ctx, nargs > 0 ? nargs : 0, args));
  if (!v)
    return api_fail(ctx, RNNC_EMISUSE, "%s: v is NULL", fn);
  if (op < 0 || op >= NOPS)
    return api_fail(ctx, RNNC_EMISUSE, "%s: unknown op %d", fn, op);
  static const char *const maker[NOPS] = {
      [OP_INPUT] = "rnnc_cell_input", [OP_STATE] = "rnnc_cell_state", [OP_PARAM] = "rnnc_cell_param",
      [OP_CONST] = "rnnc_const",      [OP_ZEROS] = "rnnc_zeros",      [OP_SPLIT] = "rnnc_split",
      [OP_SLICE] = "rnnc_slice",
  };
  if (maker[op])
    return api_fail(ctx, RNNC_EMISUSE, "%s: %s values are made by %s", fn, opid[op], maker[op]);
  const char *sp = opinfo[op].spelling;
  int ar = opinfo[op].arity;
  if (ar >= 0 && nargs != ar)
    return api_fail(ctx, RNNC_EMISUSE, "%s: '%s' takes %d operand%s, got %d", fn, sp, ar,
                    ar == 1 ? "" : "s", nargs);
  if (ar < 0 && nargs < 2)
    return api_fail(ctx, RNNC_EMISUSE, "%s: '%s' takes at least 2 operands, got %d", fn, sp, nargs);
  if (!newvalue(cb, fn, name, 1) || !useargs(cb, fn, nargs, args))
    return RNNC_EMISUSE;
  *v = addnode(cb, op, name, loc, nargs, args);
  return b_ok(ctx);
}

int rnnc_const(rnnc_cell_builder *cb, const char *name, double x, rnnc_value *v)
{
  if (!cb)
    return RNNC_EMISUSE;
  rnnc_ctx *ctx = cb->ctx;
  const char *fn = "rnnc_const";
  Loc loc = b_call(ctx, "rnnc_const(%s, %.17g)", b_q(ctx, name), x);
  if (!v)
    return api_fail(ctx, RNNC_EMISUSE, "%s: v is NULL", fn);
  if (!isfinite(x))
    return api_fail(ctx, RNNC_EMISUSE, "%s: %g is not a finite number", fn, x);
  if (!newvalue(cb, fn, name, 1))
    return RNNC_EMISUSE;
  *v = addnode(cb, OP_CONST, name, loc, 0, NULL);
  cb->c->node[*v].cval = x;
  return b_ok(ctx);
}

int rnnc_zeros(rnnc_cell_builder *cb, const char *name, const char *shape, rnnc_value *v)
{
  if (!cb)
    return RNNC_EMISUSE;
  rnnc_ctx *ctx = cb->ctx;
  const char *fn = "rnnc_zeros";
  Loc loc = b_call(ctx, "rnnc_zeros(%s, %s)", b_q(ctx, name), b_q(ctx, shape));
  if (!v)
    return api_fail(ctx, RNNC_EMISUSE, "%s: v is NULL", fn);
  if (!newvalue(cb, fn, name, 1))
    return RNNC_EMISUSE;
  Shape s;
  int rc = b_getshape(ctx, fn, "zeros", shape, &s);
  if (rc != RNNC_OK)
    return rc;
  *v = addnode(cb, OP_ZEROS, name, loc, 0, NULL);
  cb->c->node[*v].shape = s;
  return b_ok(ctx);
}

int rnnc_split(rnnc_cell_builder *cb, rnnc_value v, int n, const char *const *names,
               rnnc_value *parts)
{
  if (!cb)
    return RNNC_EMISUSE;
  rnnc_ctx *ctx = cb->ctx;
  const char *fn = "rnnc_split";
  char *nl = "NULL";
  if (names && n > 0) {
    nl = "{";
    for (int i = 0; i < n; i++)
      nl = aprintf(ctx->m->arena, "%s%s%s", nl, i ? ", " : "", b_q(ctx, names[i]));
    nl = aprintf(ctx->m->arena, "%s}", nl);
  }
  Loc loc = b_call(ctx, "rnnc_split(%d, %d, %s)", v, n, nl);
  if (!parts)
    return api_fail(ctx, RNNC_EMISUSE, "%s: parts is NULL", fn);
  if (n < 1)
    return api_fail(ctx, RNNC_EMISUSE, "%s: the number of parts must be positive, got %d", fn, n);
  if (!names)
    return api_fail(ctx, RNNC_EMISUSE, "%s: names is NULL; name every part (rnnc_split_part makes one part)", fn);
  for (int i = 0; i < n; i++) {
    if (!newvalue(cb, fn, names[i], 0))
      return RNNC_EMISUSE;
    for (int j = 0; j < i; j++)
      if (strcmp(names[i], names[j]) == 0)
        return api_fail(ctx, RNNC_EMISUSE, "%s: '%s' names two parts", fn, names[i]);
  }
  if (!useargs(cb, fn, 1, &v))
    return RNNC_EMISUSE;
  for (int k = 0; k < n; k++) {
    parts[k] = addnode(cb, OP_SPLIT, names[k], loc, 1, &v);
    cb->c->node[parts[k]].k = k;
    cb->c->node[parts[k]].n = n;
  }
  return b_ok(ctx);
}

int rnnc_split_part(rnnc_cell_builder *cb, const char *name, rnnc_value v, int n, int k,
                    rnnc_value *part)
{
  if (!cb)
    return RNNC_EMISUSE;
  rnnc_ctx *ctx = cb->ctx;
  const char *fn = "rnnc_split_part";
  Loc loc = b_call(ctx, "rnnc_split_part(%s, %d, %d, %d)", b_q(ctx, name), v, n, k);
  if (!part)
    return api_fail(ctx, RNNC_EMISUSE, "%s: part is NULL", fn);
  if (n < 1 || k < 0 || k >= n)
    return api_fail(ctx, RNNC_EMISUSE, "%s: part %d of %d does not exist", fn, k, n);
  if (!newvalue(cb, fn, name, 1) || !useargs(cb, fn, 1, &v))
    return RNNC_EMISUSE;
  *part = addnode(cb, OP_SPLIT, name, loc, 1, &v);
  cb->c->node[*part].k = k;
  cb->c->node[*part].n = n;
  return b_ok(ctx);
}

int rnnc_slice(rnnc_cell_builder *cb, const char *name, rnnc_value v, const char *start,
               const char *size, rnnc_value *part)
{
  if (!cb)
    return RNNC_EMISUSE;
  rnnc_ctx *ctx = cb->ctx;
  const char *fn = "rnnc_slice";
  Loc loc = b_call(ctx, "rnnc_slice(%s, %d, %s, %s)", b_q(ctx, name), v, b_q(ctx, start),
                   b_q(ctx, size));
  if (!part)
    return api_fail(ctx, RNNC_EMISUSE, "%s: part is NULL", fn);
  Dim d0, dn;
  int rc;
  if ((rc = b_getdim(ctx, fn, "the start", start, &d0)) != RNNC_OK ||
      (rc = b_getdim(ctx, fn, "the size", size, &dn)) != RNNC_OK)
    return rc;
  if (!newvalue(cb, fn, name, 1) || !useargs(cb, fn, 1, &v))
    return RNNC_EMISUSE;
  *part = addnode(cb, OP_SLICE, name, loc, 1, &v);
  cb->c->node[*part].start = d0;
  cb->c->node[*part].shape = (Shape){1, {dn}};
  return b_ok(ctx);
}

int rnnc_cell_update(rnnc_cell_builder *cb, const char *state, rnnc_value v)
{
  if (!cb)
    return RNNC_EMISUSE;
  rnnc_ctx *ctx = cb->ctx;
  Cell *c = cb->c;
  const char *fn = "rnnc_cell_update";
  Loc loc = b_call(ctx, "rnnc_cell_update(%s, %d)", b_q(ctx, state), v);
  if (!state)
    return api_fail(ctx, RNNC_EMISUSE, "%s: state is NULL", fn);
  int s = 0;
  while (s < c->nstate && strcmp(c->node[c->state[s]].name, state) != 0)
    s++;
  if (s == c->nstate)
    return api_fail(ctx, RNNC_EMISUSE, "%s: cell '%s' has no state '%s'", fn, c->name, state);
  if (c->next[s] >= 0)
    return api_fail(ctx, RNNC_EMISUSE, "%s: state '%s' is already updated", fn, state);
  if (v < 0 || v >= c->nnode)
    return api_fail(ctx, RNNC_EMISUSE, "%s: %d is not a value of cell '%s'", fn, v, c->name);
  Node *n = &c->node[v];
  if (!n->name) { /* h' = expr: the expression takes the name h' */
    const char *nm = aprintf(ctx->m->arena, "%s'", state);
    n->name = intern(ctx->m->names, nm, strlen(nm));
  }
  c->next[s] = v;
  c->nextloc[s] = loc;
  cb->uses[v]++;
  return b_ok(ctx);
}

int rnnc_cell_out(rnnc_cell_builder *cb, rnnc_value v)
{
  if (!cb)
    return RNNC_EMISUSE;
  rnnc_ctx *ctx = cb->ctx;
  Loc loc = b_call(ctx, "rnnc_cell_out(%d)", v);
  if (!useargs(cb, "rnnc_cell_out", 1, &v))
    return RNNC_EMISUSE;
  cell_addout(ctx->m, cb->c, v, loc);
  return b_ok(ctx);
}

void b_cell_drop(rnnc_cell_builder *cb)
{
  Module *m = cb->ctx->m;
  if (m->ncell == 0 || m->cell[m->ncell - 1] != cb->c)
    die("builder: cell '%s' is not the module's last", cb->c->name);
  m->ncell--;
  cb->ctx->open = NULL;
  free(cb);
}

int rnnc_cell_end(rnnc_cell_builder *cb)
{
  if (!cb)
    return RNNC_EMISUSE;
  rnnc_ctx *ctx = cb->ctx;
  Cell *c = cb->c;
  b_call(ctx, "rnnc_cell_end()");
  for (int i = 0; i < c->nnode; i++)
    if (!c->node[i].name && cb->uses[i] == 0) {
      const char *what = opinfo[c->node[i].op].spelling;
      b_cell_drop(cb);
      return api_fail(ctx, RNNC_EMISUSE,
                      "rnnc_cell_end: value %d ('%s') of cell '%s' has no name and is never used",
                      i, what, c->name);
    }
  int mark = ctx->m->diags.n;
  int rc = verify_cell(ctx->m, c);
  if (rc != RNNC_OK) {
    b_cell_drop(cb);
    return api_diags(ctx, mark, rc);
  }
  ctx->open = NULL;
  free(cb);
  return api_diags(ctx, mark, RNNC_OK);
}
