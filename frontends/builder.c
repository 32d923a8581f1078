/* builder.c — the C builder API (include/rnnc.h): cells and models made by
 * calls instead of text, into the same IR the parser makes.
 *
 * require: an open context. produce: a verified cell or model appended to the
 * context's module at rnnc_cell_end / rnnc_model_end.
 *
 * Each call checks at once what needs no shapes (names, ids, arity, the syntax
 * of shape strings, single use of anonymous values) and fails with no effect;
 * shapes are checked by the verifier when the cell or model ends. Every node's
 * Loc is its builder call: line n of the context's "<builder>" source, which
 * is a transcript of the builder calls, so diagnostics show the call.
 */
#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

/* One source of truth for ops and dtypes: the public constants must mirror
 * ir/ops.h and ir.h exactly; adding an op without its RNNC_OP_ fails here. */
#define X(id, sp, ar, sh, pr, ev) \
  static_assert((int)RNNC_OP_##id == (int)OP_##id, "RNNC_OP_" #id " differs from OP_" #id " (ir/ops.h)");
OPS(X)
#undef X
static_assert((int)RNNC_NOPS == (int)NOPS, "include/rnnc.h's RNNC_OP_ list differs from ir/ops.h");
static_assert((int)RNNC_F32 == (int)DT_F32 && (int)RNNC_F64 == (int)DT_F64 &&
                  (int)RNNC_I32 == (int)DT_I32 && (int)RNNC_I64 == (int)DT_I64,
              "RNNC_ dtypes differ from DT_");

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

struct rnnc_model_builder {
  rnnc_ctx *ctx;
  Model *md;
  int *uses, capuses; /* per node */
};

/* ---- the transcript, names, shapes ---------------------------------------- */

/* Append one line (the call) to the context's "<builder>" source; its Loc. */
static Loc bcall(rnnc_ctx *ctx, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (ctx->blen + (size_t)n + 2 > ctx->bcap) {
    size_t cap = 2 * (ctx->blen + (size_t)n + 2);
    char *p = realloc(ctx->btext, cap);
    if (!p)
      die("out of memory");
    ctx->btext = p;
    ctx->bcap = cap;
    ctx->bsrc->text = p;
  }
  va_start(ap, fmt);
  vsnprintf(ctx->btext + ctx->blen, (size_t)n + 1, fmt, ap);
  va_end(ap);
  ctx->blen += (size_t)n;
  ctx->btext[ctx->blen++] = '\n';
  ctx->btext[ctx->blen] = 0;
  return (Loc){ctx->bsrc, ++ctx->bline, 1};
}

/* A string argument as the transcript shows it: "x", or NULL; escaped as in C,
 * so that each call stays one line. */
static const char *q(rnnc_ctx *ctx, const char *s)
{
  if (!s)
    return "NULL";
  char *r = aalloc(ctx->m->arena, 4 * strlen(s) + 3), *p = r;
  *p++ = '"';
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\')
      p += sprintf(p, "\\%c", ch);
    else if (ch < 0x20 || ch == 0x7f)
      p += sprintf(p, "\\%03o", ch);
    else
      *p++ = (char)ch;
  }
  *p++ = '"';
  *p = 0;
  return r;
}

/* Ids as the transcript shows them: "{3, 5}". */
static const char *qids(rnnc_ctx *ctx, int n, const int *ids)
{
  if (!ids)
    return "NULL";
  char *s = "{";
  for (int i = 0; i < n; i++)
    s = aprintf(ctx->m->arena, "%s%s%d", s, i ? ", " : "", ids[i]);
  return aprintf(ctx->m->arena, "%s}", s);
}

static int ok(rnnc_ctx *ctx) { return api_fail(ctx, RNNC_OK, ""); }

static int isid0(int ch) { return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_'; }
static int isid(int ch) { return isid0(ch) || (ch >= '0' && ch <= '9'); }

/* A name the parser reads back as the same name (docs/ir.md, lexical
 * structure): letters, digits and '_', parts joined by single dots, no
 * trailing '; else an EMISUSE message naming fn. */
static int checkname(rnnc_ctx *ctx, const char *fn, const char *name)
{
  if (!name || !*name)
    return api_fail(ctx, RNNC_EMISUSE, "%s: a name is required", fn), 0;
  const char *p = name;
  int good = isid0((unsigned char)*p);
  while (good && *p) {
    while (isid((unsigned char)*p))
      p++;
    if (*p == '.')
      good = isid((unsigned char)*++p);
    else if (*p)
      good = 0;
  }
  if (!good && strcmp(p, "'") == 0)
    return api_fail(ctx, RNNC_EMISUSE,
                    "%s: '%s' cannot end in ''' (rnnc_cell_update sets a state's new value)", fn,
                    name),
           0;
  if (!good)
    return api_fail(ctx, RNNC_EMISUSE, "%s: '%s' is not a valid name", fn, name), 0;
  return 1;
}

/* Parse a shape string such as "[4*H, I]" for what (e.g. "parameter 'W'");
 * RNNC_ESYNTAX with the parser's message on an error. */
static int getshape(rnnc_ctx *ctx, const char *fn, const char *what, const char *text, Shape *out)
{
  if (!text)
    return api_fail(ctx, RNNC_EMISUSE, "%s: the shape of %s is NULL", fn, what);
  Module *m = ctx->m;
  int mark = m->diags.n;
  int rc = parse_shape(m, source_new(m, "<shape>", text), out);
  if (rc == RNNC_OK)
    return api_diags(ctx, mark, RNNC_OK);
  const Diag *d = mark < m->diags.n ? &m->diags.d[mark] : NULL;
  char *msg = d ? aprintf(m->arena, "%s (column %d)", d->msg, d->loc.col) : "syntax error";
  api_diags(ctx, mark, rc);
  return api_fail(ctx, RNNC_ESYNTAX, "%s: bad shape \"%s\" for %s: %s", fn, text, what, msg);
}

/* Parse one dimension such as "2*H + 1". */
static int getdim(rnnc_ctx *ctx, const char *fn, const char *what, const char *text, Dim *out)
{
  if (!text)
    return api_fail(ctx, RNNC_EMISUSE, "%s: %s is NULL", fn, what);
  Module *m = ctx->m;
  int mark = m->diags.n;
  Shape s;
  int rc = parse_shape(m, source_new(m, "<dim>", aprintf(m->arena, "[%s]", text)), &s);
  const Diag *d = mark < m->diags.n ? &m->diags.d[mark] : NULL;
  char *msg = rc != RNNC_OK && d ? aprintf(m->arena, ": %s (column %d)", d->msg, d->loc.col - 1)
                                 : "";
  api_diags(ctx, mark, rc);
  if (rc != RNNC_OK || s.rank != 1)
    return api_fail(ctx, RNNC_ESYNTAX, "%s: bad dimension \"%s\" for %s%s", fn, text, what, msg);
  *out = s.d[0];
  return RNNC_OK;
}

/* Make room for a per-node use count of node n. */
static void track(Arena *a, int **uses, int *cap, int n)
{
  agrow(a, (void **)uses, cap, n + 1, sizeof **uses);
  (*uses)[n] = 0;
}

/* ---- cells ----------------------------------------------------------------- */

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
  return checkname(cb->ctx, fn, name) && !cellname_taken(cb, fn, name);
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
  track(m->arena, &cb->uses, &cb->capuses, id);
  return id;
}

int rnnc_cell_begin(rnnc_ctx *ctx, const char *name, rnnc_cell_builder **cb)
{
  if (!ctx)
    return RNNC_EMISUSE;
  Loc loc = bcall(ctx, "rnnc_cell_begin(%s)", q(ctx, name));
  const char *fn = "rnnc_cell_begin";
  if (!cb)
    return api_fail(ctx, RNNC_EMISUSE, "%s: cb is NULL", fn);
  *cb = NULL;
  if (ctx->open)
    return api_fail(ctx, RNNC_EMISUSE, "%s: a %s builder is already open on this context", fn,
                    ctx->openkind == 'c' ? "cell" : "model");
  if (!checkname(ctx, fn, name))
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
  return ok(ctx);
}

static int decl(rnnc_cell_builder *cb, int op, const char *fn, const char *name, const char *shape,
                rnnc_value *v)
{
  if (!cb)
    return RNNC_EMISUSE;
  rnnc_ctx *ctx = cb->ctx;
  Loc loc = bcall(ctx, "%s(%s, %s)", fn, q(ctx, name), q(ctx, shape));
  if (!v)
    return api_fail(ctx, RNNC_EMISUSE, "%s: v is NULL", fn);
  if (!newvalue(cb, fn, name, 0))
    return RNNC_EMISUSE;
  const char *kind = op == OP_INPUT ? "input" : op == OP_STATE ? "state" : "parameter";
  Shape s;
  int rc = getshape(ctx, fn, aprintf(ctx->m->arena, "%s '%s'", kind, name), shape, &s);
  if (rc != RNNC_OK)
    return rc;
  *v = cell_decl(ctx->m, cb->c, op, name, loc, &s);
  track(ctx->m->arena, &cb->uses, &cb->capuses, *v);
  return ok(ctx);
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
  Loc loc = bcall(ctx, "rnnc_op(%s, %s, %s)", op >= 0 && op < NOPS ? opid[op] : "?", q(ctx, name),
                  qids(ctx, nargs > 0 ? nargs : 0, args));
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
  return ok(ctx);
}

int rnnc_const(rnnc_cell_builder *cb, const char *name, double x, rnnc_value *v)
{
  if (!cb)
    return RNNC_EMISUSE;
  rnnc_ctx *ctx = cb->ctx;
  const char *fn = "rnnc_const";
  Loc loc = bcall(ctx, "rnnc_const(%s, %.17g)", q(ctx, name), x);
  if (!v)
    return api_fail(ctx, RNNC_EMISUSE, "%s: v is NULL", fn);
  if (!isfinite(x))
    return api_fail(ctx, RNNC_EMISUSE, "%s: %g is not a finite number", fn, x);
  if (!newvalue(cb, fn, name, 1))
    return RNNC_EMISUSE;
  *v = addnode(cb, OP_CONST, name, loc, 0, NULL);
  cb->c->node[*v].cval = x;
  return ok(ctx);
}

int rnnc_zeros(rnnc_cell_builder *cb, const char *name, const char *shape, rnnc_value *v)
{
  if (!cb)
    return RNNC_EMISUSE;
  rnnc_ctx *ctx = cb->ctx;
  const char *fn = "rnnc_zeros";
  Loc loc = bcall(ctx, "rnnc_zeros(%s, %s)", q(ctx, name), q(ctx, shape));
  if (!v)
    return api_fail(ctx, RNNC_EMISUSE, "%s: v is NULL", fn);
  if (!newvalue(cb, fn, name, 1))
    return RNNC_EMISUSE;
  Shape s;
  int rc = getshape(ctx, fn, "zeros", shape, &s);
  if (rc != RNNC_OK)
    return rc;
  *v = addnode(cb, OP_ZEROS, name, loc, 0, NULL);
  cb->c->node[*v].shape = s;
  return ok(ctx);
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
      nl = aprintf(ctx->m->arena, "%s%s%s", nl, i ? ", " : "", q(ctx, names[i]));
    nl = aprintf(ctx->m->arena, "%s}", nl);
  }
  Loc loc = bcall(ctx, "rnnc_split(%d, %d, %s)", v, n, nl);
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
  return ok(ctx);
}

int rnnc_split_part(rnnc_cell_builder *cb, const char *name, rnnc_value v, int n, int k,
                    rnnc_value *part)
{
  if (!cb)
    return RNNC_EMISUSE;
  rnnc_ctx *ctx = cb->ctx;
  const char *fn = "rnnc_split_part";
  Loc loc = bcall(ctx, "rnnc_split_part(%s, %d, %d, %d)", q(ctx, name), v, n, k);
  if (!part)
    return api_fail(ctx, RNNC_EMISUSE, "%s: part is NULL", fn);
  if (n < 1 || k < 0 || k >= n)
    return api_fail(ctx, RNNC_EMISUSE, "%s: part %d of %d does not exist", fn, k, n);
  if (!newvalue(cb, fn, name, 1) || !useargs(cb, fn, 1, &v))
    return RNNC_EMISUSE;
  *part = addnode(cb, OP_SPLIT, name, loc, 1, &v);
  cb->c->node[*part].k = k;
  cb->c->node[*part].n = n;
  return ok(ctx);
}

int rnnc_slice(rnnc_cell_builder *cb, const char *name, rnnc_value v, const char *start,
               const char *size, rnnc_value *part)
{
  if (!cb)
    return RNNC_EMISUSE;
  rnnc_ctx *ctx = cb->ctx;
  const char *fn = "rnnc_slice";
  Loc loc = bcall(ctx, "rnnc_slice(%s, %d, %s, %s)", q(ctx, name), v, q(ctx, start), q(ctx, size));
  if (!part)
    return api_fail(ctx, RNNC_EMISUSE, "%s: part is NULL", fn);
  Dim d0, dn;
  int rc;
  if ((rc = getdim(ctx, fn, "the start", start, &d0)) != RNNC_OK ||
      (rc = getdim(ctx, fn, "the size", size, &dn)) != RNNC_OK)
    return rc;
  if (!newvalue(cb, fn, name, 1) || !useargs(cb, fn, 1, &v))
    return RNNC_EMISUSE;
  *part = addnode(cb, OP_SLICE, name, loc, 1, &v);
  cb->c->node[*part].start = d0;
  cb->c->node[*part].shape = (Shape){1, {dn}};
  return ok(ctx);
}

int rnnc_cell_update(rnnc_cell_builder *cb, const char *state, rnnc_value v)
{
  if (!cb)
    return RNNC_EMISUSE;
  rnnc_ctx *ctx = cb->ctx;
  Cell *c = cb->c;
  const char *fn = "rnnc_cell_update";
  Loc loc = bcall(ctx, "rnnc_cell_update(%s, %d)", q(ctx, state), v);
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
  return ok(ctx);
}

int rnnc_cell_out(rnnc_cell_builder *cb, rnnc_value v)
{
  if (!cb)
    return RNNC_EMISUSE;
  rnnc_ctx *ctx = cb->ctx;
  Loc loc = bcall(ctx, "rnnc_cell_out(%d)", v);
  if (!useargs(cb, "rnnc_cell_out", 1, &v))
    return RNNC_EMISUSE;
  cell_addout(ctx->m, cb->c, v, loc);
  return ok(ctx);
}

static void cell_drop(rnnc_cell_builder *cb)
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
  bcall(ctx, "rnnc_cell_end()");
  for (int i = 0; i < c->nnode; i++)
    if (!c->node[i].name && cb->uses[i] == 0) {
      const char *what = opinfo[c->node[i].op].spelling;
      cell_drop(cb);
      return api_fail(ctx, RNNC_EMISUSE,
                      "rnnc_cell_end: value %d ('%s') of cell '%s' has no name and is never used",
                      i, what, c->name);
    }
  int mark = ctx->m->diags.n;
  int rc = verify_cell(ctx->m, c);
  if (rc != RNNC_OK) {
    cell_drop(cb);
    return api_diags(ctx, mark, rc);
  }
  ctx->open = NULL;
  free(cb);
  return api_diags(ctx, mark, RNNC_OK);
}

/* ---- models ---------------------------------------------------------------- */

static int mname_taken(rnnc_model_builder *mb, const char *fn, const char *name)
{
  Model *md = mb->md;
  for (int i = 0; i < md->nnode; i++)
    if (md->node[i].name && strcmp(md->node[i].name, name) == 0) {
      api_fail(mb->ctx, RNNC_EMISUSE, "%s: duplicate definition of '%s' in model '%s'", fn, name,
               md->name);
      return 1;
    }
  return 0;
}

/* A new node name. Nodes with parameters (needname) must be named. */
static int newnode(rnnc_model_builder *mb, const char *fn, const char *name, const char *needname)
{
  if (!name && !needname)
    return 1;
  if (!name)
    return api_fail(mb->ctx, RNNC_EMISUSE,
                    "%s: %s node has parameters (named <node>.<param>) and needs a name", fn,
                    needname),
           0;
  if (!checkname(mb->ctx, fn, name))
    return 0;
  if (strcmp(name, "backward") == 0)
    return api_fail(mb->ctx, RNNC_EMISUSE, "%s: 'backward' is a keyword and cannot name a node", fn),
           0;
  return !mname_taken(mb, fn, name);
}

/* Model operands: as useargs for cells. */
static int usenodes(rnnc_model_builder *mb, const char *fn, int n, const rnnc_node *args)
{
  Model *md = mb->md;
  if (n > 0 && !args)
    return api_fail(mb->ctx, RNNC_EMISUSE, "%s: the operands are NULL", fn), 0;
  for (int i = 0; i < n; i++) {
    int a = args[i];
    if (a < 0 || a >= md->nnode)
      return api_fail(mb->ctx, RNNC_EMISUSE, "%s: %d is not a node of model '%s'", fn, a, md->name), 0;
    int again = 0;
    for (int j = 0; j < i; j++)
      again += args[j] == a;
    if (!md->node[a].name && mb->uses[a] + again > 0)
      return api_fail(mb->ctx, RNNC_EMISUSE,
                      "%s: node %d has no name and is already used; name it to use it twice", fn, a),
             0;
  }
  for (int i = 0; i < n; i++)
    mb->uses[args[i]]++;
  return 1;
}

static int addmnode(rnnc_model_builder *mb, int kind, const char *name, Loc loc, int narg,
                    const int *args)
{
  Module *m = mb->ctx->m;
  int id = model_add(m, mb->md, kind, name, loc);
  MNode *n = &mb->md->node[id];
  n->narg = narg;
  if (narg) {
    n->arg = aalloc(m->arena, (size_t)narg * sizeof *n->arg);
    memcpy(n->arg, args, (size_t)narg * sizeof *n->arg);
  }
  track(m->arena, &mb->uses, &mb->capuses, id);
  return id;
}

int rnnc_model_begin(rnnc_ctx *ctx, const char *name, rnnc_model_builder **mb)
{
  if (!ctx)
    return RNNC_EMISUSE;
  Loc loc = bcall(ctx, "rnnc_model_begin(%s)", q(ctx, name));
  const char *fn = "rnnc_model_begin";
  if (!mb)
    return api_fail(ctx, RNNC_EMISUSE, "%s: mb is NULL", fn);
  *mb = NULL;
  if (ctx->open)
    return api_fail(ctx, RNNC_EMISUSE, "%s: a %s builder is already open on this context", fn,
                    ctx->openkind == 'c' ? "cell" : "model");
  if (!checkname(ctx, fn, name))
    return RNNC_EMISUSE;
  if (model_find(ctx->m, name))
    return api_fail(ctx, RNNC_EMISUSE, "%s: duplicate definition of model '%s'", fn, name);
  rnnc_model_builder *b = calloc(1, sizeof *b);
  if (!b)
    return api_fail(ctx, RNNC_ENOMEM, "%s: out of memory", fn);
  b->ctx = ctx;
  b->md = model_new(ctx->m, name, loc);
  ctx->open = b;
  ctx->openkind = 'm';
  *mb = b;
  return ok(ctx);
}

int rnnc_model_dim(rnnc_model_builder *mb, const char *name, long def)
{
  if (!mb)
    return RNNC_EMISUSE;
  rnnc_ctx *ctx = mb->ctx;
  Model *md = mb->md;
  const char *fn = "rnnc_model_dim";
  Loc loc = bcall(ctx, "rnnc_model_dim(%s, %ld)", q(ctx, name), def);
  if (!checkname(ctx, fn, name))
    return RNNC_EMISUSE;
  for (int i = 0; i < md->ndim; i++)
    if (strcmp(md->dim[i].name, name) == 0)
      return api_fail(ctx, RNNC_EMISUSE, "%s: duplicate definition of dimension '%s'", fn, name);
  if (def <= 0 && def != RNNC_NODEFAULT)
    return api_fail(ctx, RNNC_EMISUSE,
                    "%s: the default of dimension '%s' must be positive (or RNNC_NODEFAULT), got %ld",
                    fn, name, def);
  MDim d = {intern(ctx->m->names, name, strlen(name)), loc, def != RNNC_NODEFAULT,
            def != RNNC_NODEFAULT ? def : 0};
  APUSH(ctx->m->arena, md->dim, md->ndim, md->capdim, d);
  return ok(ctx);
}

int rnnc_model_input(rnnc_model_builder *mb, const char *name, int dtype, const char *shape,
                     rnnc_node *n)
{
  if (!mb)
    return RNNC_EMISUSE;
  rnnc_ctx *ctx = mb->ctx;
  const char *fn = "rnnc_model_input";
  Loc loc = bcall(ctx, "rnnc_model_input(%s, %s, %s)", q(ctx, name),
                  dtype == RNNC_I32 ? "RNNC_I32" : dtype == RNNC_F32 ? "RNNC_F32" : "?",
                  q(ctx, shape));
  if (!n)
    return api_fail(ctx, RNNC_EMISUSE, "%s: n is NULL", fn);
  if (!newnode(mb, fn, name, "an input"))
    return RNNC_EMISUSE;
  if (dtype != RNNC_I32 && dtype != RNNC_F32)
    return api_fail(ctx, RNNC_EMISUSE, "%s: the type of input '%s' must be RNNC_I32 or RNNC_F32",
                    fn, name);
  Shape s;
  int rc = getshape(ctx, fn, aprintf(ctx->m->arena, "input '%s'", name), shape, &s);
  if (rc != RNNC_OK)
    return rc;
  *n = addmnode(mb, M_INPUT, name, loc, 0, NULL);
  mb->md->node[*n].dtype = dtype;
  mb->md->node[*n].shape = s;
  return ok(ctx);
}

int rnnc_embedding(rnnc_model_builder *mb, const char *name, rnnc_node tokens, const char *vocab,
                   const char *size, rnnc_node *n)
{
  if (!mb)
    return RNNC_EMISUSE;
  rnnc_ctx *ctx = mb->ctx;
  const char *fn = "rnnc_embedding";
  Loc loc = bcall(ctx, "rnnc_embedding(%s, %d, %s, %s)", q(ctx, name), tokens, q(ctx, vocab),
                  q(ctx, size));
  if (!n)
    return api_fail(ctx, RNNC_EMISUSE, "%s: n is NULL", fn);
  Dim v, e;
  int rc;
  if (!newnode(mb, fn, name, "an embedding"))
    return RNNC_EMISUSE;
  if ((rc = getdim(ctx, fn, "the vocabulary", vocab, &v)) != RNNC_OK ||
      (rc = getdim(ctx, fn, "the embedding size", size, &e)) != RNNC_OK)
    return rc;
  if (!usenodes(mb, fn, 1, &tokens))
    return RNNC_EMISUSE;
  *n = addmnode(mb, M_EMBEDDING, name, loc, 1, &tokens);
  mb->md->node[*n].size[0] = v;
  mb->md->node[*n].size[1] = e;
  return ok(ctx);
}

/* Parse bindings "H = 128, I = 2*E" into n (none for NULL or blanks). */
static int getbinds(rnnc_model_builder *mb, const char *fn, const char *bind, MNode *n, Loc loc)
{
  rnnc_ctx *ctx = mb->ctx;
  Module *m = ctx->m;
  n->nbind = 0;
  if (!bind || bind[strspn(bind, " \t")] == 0)
    return RNNC_OK;
  int cap = 0;
  for (const char *p = bind;; p++) {
    const char *e = p + strcspn(p, ",");
    const char *eq = memchr(p, '=', (size_t)(e - p));
    const char *s = p, *t = eq ? eq : e;
    while (s < t && (*s == ' ' || *s == '\t'))
      s++;
    while (t > s && (t[-1] == ' ' || t[-1] == '\t'))
      t--;
    if (!eq || s == t)
      return api_fail(ctx, RNNC_ESYNTAX, "%s: bad binding \"%.*s\" in \"%s\": write NAME = dim",
                      fn, (int)(e - p), p, bind);
    char *name = astrndup(m->arena, s, (size_t)(t - s));
    if (!checkname(ctx, fn, name))
      return RNNC_EMISUSE;
    for (int b = 0; b < n->nbind; b++)
      if (strcmp(n->bindname[b], name) == 0)
        return api_fail(ctx, RNNC_EMISUSE, "%s: '%s' is bound twice in \"%s\"", fn, name, bind);
    Dim d;
    int rc = getdim(ctx, fn, aprintf(m->arena, "'%s'", name),
                    astrndup(m->arena, eq + 1, (size_t)(e - eq - 1)), &d);
    if (rc != RNNC_OK)
      return rc;
    int c2 = cap, c3 = cap;
    agrow(m->arena, (void **)&n->bindname, &cap, n->nbind + 1, sizeof *n->bindname);
    agrow(m->arena, (void **)&n->bindval, &c2, n->nbind + 1, sizeof *n->bindval);
    agrow(m->arena, (void **)&n->bindloc, &c3, n->nbind + 1, sizeof *n->bindloc);
    n->bindname[n->nbind] = intern(m->names, name, strlen(name));
    n->bindval[n->nbind] = d;
    n->bindloc[n->nbind] = loc;
    n->nbind++;
    if (!*e)
      return RNNC_OK;
    p = e;
  }
}

int rnnc_apply(rnnc_model_builder *mb, const char *name, const char *cell, int nin,
               const rnnc_node *in, const char *bind, int flags, rnnc_node *n)
{
  if (!mb)
    return RNNC_EMISUSE;
  rnnc_ctx *ctx = mb->ctx;
  Module *m = ctx->m;
  const char *fn = "rnnc_apply";
  Loc loc = bcall(ctx, "rnnc_apply(%s, %s, %s, %s, %d)", q(ctx, name), q(ctx, cell),
                  qids(ctx, nin > 0 ? nin : 0, in), q(ctx, bind), flags);
  if (!n)
    return api_fail(ctx, RNNC_EMISUSE, "%s: n is NULL", fn);
  if (!newnode(mb, fn, name, "a cell"))
    return RNNC_EMISUSE;
  if (!cell)
    return api_fail(ctx, RNNC_EMISUSE, "%s: cell is NULL", fn);
  if (!cell_find(m, cell))
    return api_fail(ctx, RNNC_EMISUSE, "%s: unknown cell '%s'", fn, cell);
  if (flags & ~RNNC_BACKWARD)
    return api_fail(ctx, RNNC_EMISUSE, "%s: unknown flags %#x", fn, (unsigned)(flags & ~RNNC_BACKWARD));
  if (nin < 1)
    return api_fail(ctx, RNNC_EMISUSE, "%s: a cell needs at least one input, got %d", fn, nin);
  MNode tmp = {0};
  int rc = getbinds(mb, fn, bind, &tmp, loc);
  if (rc != RNNC_OK)
    return rc;
  if (!usenodes(mb, fn, nin, in))
    return RNNC_EMISUSE;
  *n = addmnode(mb, M_CELL, name, loc, nin, in);
  MNode *nd = &mb->md->node[*n];
  nd->cellname = intern(m->names, cell, strlen(cell));
  nd->cellloc = loc;
  nd->nbind = tmp.nbind;
  nd->bindname = tmp.bindname;
  nd->bindval = tmp.bindval;
  nd->bindloc = tmp.bindloc;
  nd->backward = (flags & RNNC_BACKWARD) != 0;
  return ok(ctx);
}

/* Node n of this builder, of kind kind, for fn's first argument. */
static MNode *thenode(rnnc_model_builder *mb, const char *fn, rnnc_node n, int kind)
{
  Model *md = mb->md;
  if (n < 0 || n >= md->nnode)
    return api_fail(mb->ctx, RNNC_EMISUSE, "%s: %d is not a node of model '%s'", fn, n, md->name),
           NULL;
  if (md->node[n].kind != kind)
    return api_fail(mb->ctx, RNNC_EMISUSE, "%s: node %d ('%s') is not a %s node", fn, n,
                    md->node[n].name ? md->node[n].name : mkind_name[md->node[n].kind],
                    mkind_name[kind]),
           NULL;
  return &md->node[n];
}

/* Operands made after their user n are refused: the graph reads in order. */
static int before(rnnc_model_builder *mb, const char *fn, rnnc_node n, int cnt, const rnnc_node *a)
{
  for (int i = 0; i < cnt; i++)
    if (a && a[i] >= n && a[i] < mb->md->nnode)
      return api_fail(mb->ctx, RNNC_EMISUSE, "%s: node %d is not made before node %d; make it first",
                      fn, a[i], n),
             0;
  return 1;
}

int rnnc_apply_init(rnnc_model_builder *mb, rnnc_node n, int ninit, const rnnc_node *init)
{
  if (!mb)
    return RNNC_EMISUSE;
  rnnc_ctx *ctx = mb->ctx;
  const char *fn = "rnnc_apply_init";
  bcall(ctx, "rnnc_apply_init(%d, %s)", n, qids(ctx, ninit > 0 ? ninit : 0, init));
  MNode *nd = thenode(mb, fn, n, M_CELL);
  if (!nd)
    return RNNC_EMISUSE;
  if (nd->ninit || nd->initfrom >= 0)
    return api_fail(ctx, RNNC_EMISUSE, "%s: '%s' already has an initial state", fn, nd->name);
  if (ninit < 1)
    return api_fail(ctx, RNNC_EMISUSE, "%s: init needs one node per state, got %d", fn, ninit);
  if (!before(mb, fn, n, ninit, init) || !usenodes(mb, fn, ninit, init))
    return RNNC_EMISUSE;
  nd->init = aalloc(ctx->m->arena, (size_t)ninit * sizeof *nd->init);
  memcpy(nd->init, init, (size_t)ninit * sizeof *nd->init);
  nd->ninit = ninit;
  return ok(ctx);
}

int rnnc_apply_init_from(rnnc_model_builder *mb, rnnc_node n, rnnc_node from)
{
  if (!mb)
    return RNNC_EMISUSE;
  rnnc_ctx *ctx = mb->ctx;
  const char *fn = "rnnc_apply_init_from";
  bcall(ctx, "rnnc_apply_init_from(%d, %d)", n, from);
  MNode *nd = thenode(mb, fn, n, M_CELL);
  if (!nd)
    return RNNC_EMISUSE;
  if (nd->ninit || nd->initfrom >= 0)
    return api_fail(ctx, RNNC_EMISUSE, "%s: '%s' already has an initial state", fn, nd->name);
  if (!before(mb, fn, n, 1, &from) || !thenode(mb, fn, from, M_CELL) ||
      !usenodes(mb, fn, 1, &from))
    return RNNC_EMISUSE;
  nd->initfrom = from;
  return ok(ctx);
}

/* A node with operands and no other field: concat, last, logits, probs, sum. */
static int simple(rnnc_model_builder *mb, const char *fn, int kind, const char *name, int nargs,
                  const rnnc_node *args, rnnc_node *n)
{
  if (!mb)
    return RNNC_EMISUSE;
  rnnc_ctx *ctx = mb->ctx;
  Loc loc = bcall(ctx, "%s(%s, %s)", fn, q(ctx, name), qids(ctx, nargs > 0 ? nargs : 0, args));
  if (!n)
    return api_fail(ctx, RNNC_EMISUSE, "%s: n is NULL", fn);
  if (kind == M_CONCAT && nargs < 2)
    return api_fail(ctx, RNNC_EMISUSE, "%s: 'concat' takes at least 2 operands, got %d", fn, nargs);
  if (!newnode(mb, fn, name, NULL) || !usenodes(mb, fn, nargs, args))
    return RNNC_EMISUSE;
  *n = addmnode(mb, kind, name, loc, nargs, args);
  return ok(ctx);
}

int rnnc_concat(rnnc_model_builder *mb, const char *name, int nargs, const rnnc_node *args,
                rnnc_node *n)
{
  return simple(mb, "rnnc_concat", M_CONCAT, name, nargs, args, n);
}

int rnnc_last(rnnc_model_builder *mb, const char *name, rnnc_node x, rnnc_node *n)
{
  return simple(mb, "rnnc_last", M_LAST, name, 1, &x, n);
}

int rnnc_logits(rnnc_model_builder *mb, const char *name, rnnc_node s, rnnc_node *n)
{
  return simple(mb, "rnnc_logits", M_LOGITS, name, 1, &s, n);
}

int rnnc_probs(rnnc_model_builder *mb, const char *name, rnnc_node s, rnnc_node *n)
{
  return simple(mb, "rnnc_probs", M_PROBS, name, 1, &s, n);
}

int rnnc_sum(rnnc_model_builder *mb, const char *name, rnnc_node x, rnnc_node *n)
{
  return simple(mb, "rnnc_sum", M_SUM, name, 1, &x, n);
}

int rnnc_final(rnnc_model_builder *mb, const char *name, rnnc_node cellnode, const char *state,
               rnnc_node *n)
{
  if (!mb)
    return RNNC_EMISUSE;
  rnnc_ctx *ctx = mb->ctx;
  const char *fn = "rnnc_final";
  Loc loc = bcall(ctx, "rnnc_final(%s, %d, %s)", q(ctx, name), cellnode, q(ctx, state));
  if (!n)
    return api_fail(ctx, RNNC_EMISUSE, "%s: n is NULL", fn);
  if (!newnode(mb, fn, name, NULL) || !thenode(mb, fn, cellnode, M_CELL) ||
      !checkname(ctx, fn, state) || !usenodes(mb, fn, 1, &cellnode))
    return RNNC_EMISUSE;
  *n = addmnode(mb, M_FINAL, name, loc, 1, &cellnode);
  mb->md->node[*n].statename = intern(ctx->m->names, state, strlen(state));
  return ok(ctx);
}

int rnnc_softmax(rnnc_model_builder *mb, const char *name, rnnc_node x, const char *classes,
                 rnnc_node target, rnnc_node *n)
{
  if (!mb)
    return RNNC_EMISUSE;
  rnnc_ctx *ctx = mb->ctx;
  const char *fn = "rnnc_softmax";
  Loc loc = bcall(ctx, "rnnc_softmax(%s, %d, %s, %d)", q(ctx, name), x, q(ctx, classes), target);
  if (!n)
    return api_fail(ctx, RNNC_EMISUSE, "%s: n is NULL", fn);
  if (!newnode(mb, fn, name, "a softmax"))
    return RNNC_EMISUSE;
  Dim k;
  int rc = getdim(ctx, fn, "the number of classes", classes, &k);
  if (rc != RNNC_OK)
    return rc;
  rnnc_node args[2] = {x, target};
  if (!usenodes(mb, fn, target == -1 ? 1 : 2, args))
    return RNNC_EMISUSE;
  *n = addmnode(mb, M_SOFTMAX, name, loc, 1, &x);
  mb->md->node[*n].size[0] = k;
  mb->md->node[*n].target = target;
  return ok(ctx);
}

int rnnc_softmax_ignore(rnnc_model_builder *mb, rnnc_node n, long index)
{
  if (!mb)
    return RNNC_EMISUSE;
  rnnc_ctx *ctx = mb->ctx;
  bcall(ctx, "rnnc_softmax_ignore(%d, %ld)", n, index);
  MNode *nd = thenode(mb, "rnnc_softmax_ignore", n, M_SOFTMAX);
  if (!nd)
    return RNNC_EMISUSE;
  nd->hasignore = 1;
  nd->ignore = index;
  return ok(ctx);
}

int rnnc_model_output(rnnc_model_builder *mb, rnnc_node n)
{
  if (!mb)
    return RNNC_EMISUSE;
  rnnc_ctx *ctx = mb->ctx;
  Model *md = mb->md;
  const char *fn = "rnnc_model_output";
  Loc loc = bcall(ctx, "rnnc_model_output(%d)", n);
  if (n < 0 || n >= md->nnode)
    return api_fail(ctx, RNNC_EMISUSE, "%s: %d is not a node of model '%s'", fn, n, md->name);
  if (!md->node[n].name)
    return api_fail(ctx, RNNC_EMISUSE, "%s: node %d ('%s') has no name; an output must be named",
                    fn, n, mkind_name[md->node[n].kind]);
  for (int i = 0; i < md->noutput; i++)
    if (md->output[i] == n)
      return api_fail(ctx, RNNC_EMISUSE, "%s: '%s' is already an output", fn, md->node[n].name);
  int cap = md->capoutput;
  agrow(ctx->m->arena, (void **)&md->outputloc, &cap, md->noutput + 1, sizeof *md->outputloc);
  md->outputloc[md->noutput] = loc;
  APUSH(ctx->m->arena, md->output, md->noutput, md->capoutput, n);
  mb->uses[n]++;
  return ok(ctx);
}

static void model_drop(rnnc_model_builder *mb)
{
  Module *m = mb->ctx->m;
  if (m->nmodel == 0 || m->model[m->nmodel - 1] != mb->md)
    die("builder: model '%s' is not the module's last", mb->md->name);
  m->nmodel--;
  mb->ctx->open = NULL;
  free(mb);
}

int rnnc_model_end(rnnc_model_builder *mb)
{
  if (!mb)
    return RNNC_EMISUSE;
  rnnc_ctx *ctx = mb->ctx;
  Model *md = mb->md;
  bcall(ctx, "rnnc_model_end()");
  for (int i = 0; i < md->nnode; i++)
    if (!md->node[i].name && mb->uses[i] == 0) {
      const char *what = mkind_name[md->node[i].kind];
      model_drop(mb);
      return api_fail(ctx, RNNC_EMISUSE,
                      "rnnc_model_end: node %d ('%s') of model '%s' has no name and is never used",
                      i, what, md->name);
    }
  int mark = ctx->m->diags.n;
  int rc = verify_model(ctx->m, md);
  if (rc != RNNC_OK) {
    model_drop(mb);
    return api_diags(ctx, mark, rc);
  }
  ctx->open = NULL;
  free(mb);
  return api_diags(ctx, mark, RNNC_OK);
}

void builder_close(rnnc_ctx *ctx)
{
  if (!ctx->open)
    return;
  if (ctx->openkind == 'c')
    cell_drop(ctx->open);
  else
    model_drop(ctx->open);
}
