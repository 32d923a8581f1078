/* parse_cell.c — a cell definition into its syntax tree (Expr, Item), handed
 * to lower_cell once the cell body parsed without error. */
#include <setjmp.h>
#include <string.h>

#include "parse.h"

static Expr *mkexpr(P *p, int kind, Loc loc)
{
  Expr *e = aalloc(p->a, sizeof *e);
  e->kind = kind;
  e->loc = loc;
  e->height = 1;
  e->node = -1;
  return e;
}

static void setargs(P *p, Expr *e, Expr **args, int n)
{
  e->narg = n;
  e->arg = args;
  for (int i = 0; i < n; i++)
    if (args[i]->height + 1 > e->height)
      e->height = args[i]->height + 1;
  if (e->height > MAXDEPTH)
    p_fail_at(p, e->loc, "expression nested too deeply (at most %d levels)", MAXDEPTH);
}

static Expr *cexpr(P *p, int minprec);

static int binop(const Token *t)
{
  static const char ch[] = {[TK_PLUS] = '+', [TK_MINUS] = '-', [TK_STAR] = '*',
                            [TK_SLASH] = '/', [TK_AT] = '@'};
  if (t->kind < 0 || t->kind >= (int)sizeof ch || !ch[t->kind])
    return -1;
  for (int i = 0; i < NOPS; i++)
    if (opinfo[i].prec > 0 && opinfo[i].spelling[0] == ch[t->kind] && !opinfo[i].spelling[1])
      return i;
  return -1;
}

/* args := expr { ',' expr }, up to ')' */
static Expr **cargs(P *p, int *n)
{
  Expr **args = NULL;
  int na = 0, cap = 0;
  if (p_peek(p)->kind != TK_RPAREN)
    for (;;) {
      Expr *e = cexpr(p, 1);
      APUSH(p->a, args, na, cap, e);
      if (!p_accept(p, TK_COMMA))
        break;
    }
  *n = na;
  return args;
}

static Expr *ccall(P *p, Token *t)
{
  Expr *e;
  if (strcmp(t->name, "split") == 0) {
    e = mkexpr(p, E_SPLIT, t->loc);
    p_opentok(p, TK_LPAREN, "'('");
    Expr *src = cexpr(p, 1);
    p_expect(p, TK_COMMA, "',' and the number of parts in split(v, n)");
    e->n = (int)parse_count(p, "the number of parts in split(v, n)");
    if (e->n < 1)
      p_fail_at(p, t->loc, "split needs at least 1 part");
    p_closetok(p, TK_RPAREN, "')' after split(v, n)");
    if (p_peek(p)->kind != TK_LBRACK)
      p_expected(p, "'[k]' after split(v, n) (one part is split(v, n)[k]; all parts: a, b = split(v, 2))");
    p_opentok(p, TK_LBRACK, "'['");
    Token *kt = p_peek(p);
    e->k = (int)parse_count(p, "a part number");
    if (e->k >= e->n)
      p_fail_at(p, kt->loc, "split part %d out of range: split(v, %d) has parts 0 to %d", e->k, e->n,
              e->n - 1);
    p_closetok(p, TK_RBRACK, "']' after the part number");
    Expr **args = aalloc(p->a, sizeof *args);
    args[0] = src;
    setargs(p, e, args, 1);
  } else if (strcmp(t->name, "slice") == 0) {
    e = mkexpr(p, E_SLICE, t->loc);
    p_opentok(p, TK_LPAREN, "'('");
    Expr **args = aalloc(p->a, sizeof *args);
    args[0] = cexpr(p, 1);
    p_expect(p, TK_COMMA, "',' and the start in slice(v, start, size)");
    e->start = parse_dim(p);
    p_expect(p, TK_COMMA, "',' and the size in slice(v, start, size)");
    e->shape.rank = 1;
    e->shape.d[0] = parse_dim(p);
    p_closetok(p, TK_RPAREN, "')' after slice(v, start, size)");
    setargs(p, e, args, 1);
  } else if (strcmp(t->name, "zeros") == 0) {
    e = mkexpr(p, E_ZEROS, t->loc);
    p_opentok(p, TK_LPAREN, "'('");
    e->shape = parse_shape_(p);
    p_closetok(p, TK_RPAREN, "')' after zeros([d])");
  } else {
    int op = op_lookup(t->name);
    if (op < 0)
      p_fail_at(p, t->loc, "unknown op '%s'", t->name);
    e = mkexpr(p, E_OP, t->loc);
    e->op = op;
    p_opentok(p, TK_LPAREN, "'('");
    int n;
    Expr **args = cargs(p, &n);
    p_closetok(p, TK_RPAREN, "',' or ')' after arguments");
    setargs(p, e, args, n);
  }
  return e;
}

/* unary := '-' unary | primary;  a '-' right before a number is part of it */
static Expr *cunary(P *p)
{
  p_enter(p);
  Token *t = p_peek(p);
  Expr *e;
  if (t->kind == TK_MINUS) {
    p_advance(p);
    Token *n = p_peek(p);
    if (n->kind == TK_NUM) {
      p_advance(p);
      e = mkexpr(p, E_NUM, t->loc);
      e->num = -n->num;
    } else {
      e = mkexpr(p, E_OP, t->loc);
      e->op = OP_NEG;
      Expr **args = aalloc(p->a, sizeof *args);
      args[0] = cunary(p);
      setargs(p, e, args, 1);
    }
  } else if (t->kind == TK_NUM) {
    p_advance(p);
    e = mkexpr(p, E_NUM, t->loc);
    e->num = t->num;
  } else if (t->kind == TK_IDENT) {
    p_advance(p);
    if (p_peek(p)->kind == TK_LPAREN)
      e = ccall(p, t);
    else {
      e = mkexpr(p, E_NAME, t->loc);
      e->name = t->name;
    }
  } else if (t->kind == TK_LPAREN) {
    p_opentok(p, TK_LPAREN, "'('");
    e = cexpr(p, 1);
    p_closetok(p, TK_RPAREN, "')'");
  } else
    p_expected(p, "an expression");
  p_leave(p);
  return e;
}

/* Precedence climbing over the infix ops of the op table; all left-assoc. */
static Expr *cexpr(P *p, int minprec)
{
  Expr *lhs = cunary(p);
  for (;;) {
    Token *t = p_peek(p);
    int op = binop(t);
    if (op < 0 || opinfo[op].prec < minprec)
      break;
    p_advance(p);
    Expr *rhs = cexpr(p, opinfo[op].prec + 1);
    Expr *e = mkexpr(p, E_OP, t->loc);
    e->op = op;
    Expr **args = aalloc(p->a, 2 * sizeof *args);
    args[0] = lhs;
    args[1] = rhs;
    setargs(p, e, args, 2);
    lhs = e;
  }
  return lhs;
}

/* ---- cells: statements ---- */

static Item *newitem(P *p, CellAst *ca, int kind, Loc loc)
{
  Item it = {0};
  it.kind = kind;
  it.loc = loc;
  it.state = -1;
  it.param = -1;
  APUSH(p->a, ca->item, ca->nitem, ca->capitem, it);
  return &ca->item[ca->nitem - 1];
}

/* Define name (item's part, or a leaf node with item -1); a duplicate is reported. */
static void define(P *p, CellAst *ca, const char *name, Loc loc, int item, int part)
{
  int r;
  if (map_get(&ca->names, name, &r)) {
    p_err_at(p, loc, "duplicate definition of '%s'", name);
    diag(&p->m->diags, DIAG_NOTE, ca->ref[r].loc, "previous definition is here");
    return;
  }
  Ref ref = {item, part, loc};
  APUSH(p->a, ca->ref, ca->nref, ca->capref, ref);
  map_put(p->a, &ca->names, name, ca->nref - 1);
}

/* The state index of X for a name X', or -1 (reported) when X is no state. */
static int primed_state(P *p, CellAst *ca, Token *t)
{
  const char *base = intern(p->m->names, t->s, (size_t)t->len - 1);
  int r;
  if (map_get(&ca->names, base, &r) && ca->ref[r].item < 0) {
    int id = ca->ref[r].part;
    for (int s = 0; s < ca->c->nstate; s++)
      if (ca->c->state[s] == id)
        return s;
  }
  p_err_at(p, t->loc, "cannot assign '%s': '%s' is not a state", t->name, base);
  return -1;
}

/* decl := NAME ':' shape, declared as a leaf of op */
static void cdecl(P *p, CellAst *ca, int op)
{
  Token *t = p_plainname(p, op == OP_PARAM ? "a parameter name" : "a name");
  p_expect(p, TK_COLON, "':' and a shape after the name");
  Shape s = parse_shape_(p);
  int r;
  if (map_get(&ca->names, t->name, &r)) {
    define(p, ca, t->name, t->loc, -1, -1); /* reports the duplicate */
    return;
  }
  int id = cell_decl(p->m, ca->c, op, t->name, t->loc, &s);
  define(p, ca, t->name, t->loc, -1, id);
}

static void cdecls(P *p, CellAst *ca, int op)
{
  do
    cdecl(p, ca, op);
  while (p_accept(p, TK_COMMA));
}

/* NAME { ',' NAME } '=' split(expr, n) */
static void csplitstmt(P *p, CellAst *ca)
{
  const char **names = NULL;
  Loc *locs = NULL;
  Token **toks = NULL;
  int n = 0, cap = 0, capl = 0, capt = 0;
  do {
    Token *t = p_peek(p);
    if (t->kind != TK_IDENT)
      p_expected(p, "a name in the list of split parts");
    p_advance(p);
    int nn = n;
    APUSH(p->a, toks, nn, capt, t);
    nn = n;
    APUSH(p->a, locs, nn, capl, t->loc);
    APUSH(p->a, names, n, cap, t->name);
  } while (p_accept(p, TK_COMMA));
  p_expect(p, TK_EQ, "'=' after the names");
  Token *st = p_peek(p);
  if (!p_isid(st, "split") || p_peekat(p, 1)->kind != TK_LPAREN)
    p_expected(p, "split(v, n) after a list of names");
  p_advance(p);
  p_opentok(p, TK_LPAREN, "'('");
  Expr *src = cexpr(p, 1);
  p_expect(p, TK_COMMA, "',' and the number of parts in split(v, n)");
  Token *nt = p_peek(p);
  long parts = parse_count(p, "the number of parts in split(v, n)");
  p_closetok(p, TK_RPAREN, "')' after split(v, n)");
  p_endstmt(p);
  if (parts != n) {
    p_err_at(p, nt->loc, "split into %ld parts needs %ld names, found %d", parts, parts, n);
    return;
  }
  Item *it = newitem(p, ca, I_SPLIT, toks[0]->loc);
  int idx = ca->nitem - 1;
  it->name = names;
  it->nameloc = locs;
  it->nname = n;
  it->n = n;
  it->e = src;
  for (int k = 0; k < n; k++) {
    if (toks[k]->s[toks[k]->len - 1] == '\'') {
      p_err_at(p, toks[k]->loc, "'%s': a split part cannot be a state's new value", toks[k]->name);
      continue;
    }
    define(p, ca, names[k], locs[k], idx, k);
  }
}

/* One statement of a cell body. */
static void cstmt(P *p, CellAst *ca)
{
  Token *t = p_peek(p);
  Token *t2 = p_peekat(p, 1);
  if (t->kind == TK_IDENT && t2->kind == TK_EQ) {
    p_advance(p);
    p_advance(p);
    int s = -1;
    if (t->s[t->len - 1] == '\'' && (s = primed_state(p, ca, t)) < 0) {
      /* reported; still parse the expression for its own errors */
    }
    Expr *e = cexpr(p, 1);
    p_endstmt(p);
    Item *it = newitem(p, ca, I_DEF, t->loc);
    it->name = aalloc(p->a, sizeof *it->name);
    it->nameloc = aalloc(p->a, sizeof *it->nameloc);
    it->name[0] = t->name;
    it->nameloc[0] = t->loc;
    it->nname = 1;
    it->e = e;
    it->state = s;
    define(p, ca, t->name, t->loc, ca->nitem - 1, 0);
  } else if (t->kind == TK_IDENT && t2->kind == TK_COMMA) {
    csplitstmt(p, ca);
  } else if (p_isid(t, "param")) {
    p_advance(p);
    cdecls(p, ca, OP_PARAM);
    p_endstmt(p);
  } else if (p_isid(t, "out")) {
    p_advance(p);
    Expr *e = cexpr(p, 1);
    p_endstmt(p);
    Item *it = newitem(p, ca, I_OUT, t->loc);
    it->e = e;
  } else if (p_isid(t, "grad")) {
    p_advance(p);
    Token *w = p_plainname(p, "a parameter name after 'grad'");
    p_expect(p, TK_EQ, "'=' after grad NAME");
    Expr *e = cexpr(p, 1);
    p_endstmt(p);
    int r, pi = -1, prev;
    if (map_get(&ca->names, w->name, &r) && ca->ref[r].item < 0)
      for (int i = 0; i < ca->c->nparam; i++)
        if (ca->c->param[i] == ca->ref[r].part)
          pi = i;
    if (pi < 0) {
      p_err_at(p, w->loc, "grad of '%s': '%s' is not a parameter", w->name, w->name);
      return;
    }
    if (map_get(&ca->grads, w->name, &prev)) {
      p_err_at(p, w->loc, "duplicate gradient of '%s'", w->name);
      diag(&p->m->diags, DIAG_NOTE, ca->item[prev].loc, "previous definition is here");
      return;
    }
    Item *it = newitem(p, ca, I_GRAD, w->loc);
    it->e = e;
    it->param = pi;
    map_put(p->a, &ca->grads, w->name, ca->nitem - 1);
  } else
    p_expected(p, "a statement (NAME = expr, param, out or grad)");
}

/* cell := 'cell' NAME '(' decls ')' [ 'state' '(' decls ')' ] '{' { cstmt } '}' */
void parse_cell(P *p)
{
  p_advance(p);
  Token *nt = p_plainname(p, "a cell name after 'cell'");
  static const char *const reserved[] = {"embedding", "concat", "last", "final", "softmax",
                                         "logits",    "probs",  "sum",  "onehot"};
  for (size_t i = 0; i < sizeof reserved / sizeof *reserved; i++)
    if (strcmp(nt->name, reserved[i]) == 0)
      p_fail_at(p, nt->loc, "'%s' is a model operation and cannot name a cell", nt->name);
  for (int i = 0; i < p->m->ncell; i++)
    if (p->m->cell[i]->name == nt->name) {
      p_err_at(p, nt->loc, "duplicate definition of cell '%s'", nt->name);
      diag(&p->m->diags, DIAG_NOTE, p->m->cell[i]->loc, "previous definition is here");
      break;
    }
  CellAst *ca = aalloc(p->a, sizeof *ca);
  ca->nerr0 = p->m->diags.nerror;
  ca->c = cell_new(p->m, nt->name, nt->loc);
  p_opentok(p, TK_LPAREN, "'(' and the inputs after the cell name");
  if (p_peek(p)->kind != TK_RPAREN)
    cdecls(p, ca, OP_INPUT);
  p_closetok(p, TK_RPAREN, "',' or ')' after the inputs");
  if (p_isid(p_peek(p), "state")) {
    p_advance(p);
    p_opentok(p, TK_LPAREN, "'(' after 'state'");
    cdecls(p, ca, OP_STATE);
    p_closetok(p, TK_RPAREN, "',' or ')' after the states");
  }
  p_expect(p, TK_LBRACE, "'{' to start the cell body");
  for (;;) {
    if (setjmp(p->jb)) {
      p_recover(p);
      continue;
    }
    Token *t = p_peek(p);
    if (t->kind == TK_NL) {
      p_advance(p);
      continue;
    }
    if (t->kind == TK_RBRACE) {
      p_advance(p);
      break;
    }
    if (t->kind == TK_EOF || ((p_isid(t, "cell") || p_isid(t, "model")) && p_peekat(p, 1)->kind == TK_IDENT)) {
      p_err_at(p, t->loc, "expected '}' at the end of cell '%s', found %s", nt->name, p_tokstr(p, t));
      break;
    }
    cstmt(p, ca);
  }
  if (p->m->diags.nerror == ca->nerr0)
    lower_cell(p, ca);
}
