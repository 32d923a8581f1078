/* parse.c — .rnn text to IR: cells and models appended to a module.
 * require: a module (its names and arena). produce: cells whose nodes are in
 * topological order (operands first) and models whose nodes are declared before
 * use; no shapes are inferred (verify does that). Errors go to m->diags; after
 * one the parser skips to the end of the statement and goes on.
 *
 * Cell bodies are dataflow: equations may come in any order, so a cell body is
 * parsed into a small syntax tree (Expr, Item) and then lowered (lower.c-style,
 * at the end of this file): names resolved, cycles reported, nodes emitted in
 * dependency order. Model statements are in order and build nodes directly. */
#include <setjmp.h>
#include <stdarg.h>
#include <string.h>

#include "ir.h"

enum { MAXDEPTH = EXPR_MAXDEPTH, MAXREC = 2 * EXPR_MAXDEPTH + 8 };
enum { MAXDIMVAL = 1 << 30 }; /* integers inside shapes and dimensions */

/* ---- a small map from interned names to ints ---- */

typedef struct Map {
  const char **key;
  int *val;
  size_t cap, n;
} Map;

static size_t ptrhash(const char *k) { return ((uintptr_t)k >> 4) * 0x9E3779B97F4A7C15u; }

static int map_get(const Map *mp, const char *k, int *val)
{
  if (!mp->cap)
    return 0;
  for (size_t j = ptrhash(k) & (mp->cap - 1); mp->key[j]; j = (j + 1) & (mp->cap - 1))
    if (mp->key[j] == k) {
      *val = mp->val[j];
      return 1;
    }
  return 0;
}

static void map_put(Arena *a, Map *mp, const char *k, int v)
{
  if (2 * (mp->n + 1) > mp->cap) {
    Map nm = {0};
    nm.cap = mp->cap ? 2 * mp->cap : 64;
    nm.key = aalloc(a, nm.cap * sizeof *nm.key);
    nm.val = aalloc(a, nm.cap * sizeof *nm.val);
    for (size_t i = 0; i < mp->cap; i++)
      if (mp->key[i])
        map_put(a, &nm, mp->key[i], mp->val[i]);
    *mp = nm;
  }
  size_t j = ptrhash(k) & (mp->cap - 1);
  while (mp->key[j] && mp->key[j] != k)
    j = (j + 1) & (mp->cap - 1);
  if (!mp->key[j])
    mp->n++;
  mp->key[j] = k;
  mp->val[j] = v;
}

/* ---- parser state, tokens, errors ---- */

typedef struct P {
  Module *m;
  Arena *a;
  Token *tok;
  int ntok, pos;
  int nest;   /* open ( and [: newlines inside them are skipped */
  int depth;  /* recursion depth of expressions */
  int errpos; /* token position where the last error was found */
  jmp_buf jb; /* statement-level recovery point */
  int afteritem; /* a cell or model just ended: the line must end too */
} P;

static Token *peekat(P *p, int k)
{
  int i = p->pos;
  for (;;) {
    if (p->nest > 0)
      while (p->tok[i].kind == TK_NL)
        i++;
    if (k == 0 || p->tok[i].kind == TK_EOF)
      return &p->tok[i];
    i++;
    k--;
  }
}

_Noreturn static void fail_at(P *p, Loc loc, const char *fmt, ...);

/* The next token (newlines skipped inside brackets). A lexical error is
 * reported here, where the parser meets it, and abandons the statement. */
static Token *peek(P *p)
{
  if (p->nest > 0)
    while (p->tok[p->pos].kind == TK_NL)
      p->pos++;
  Token *t = &p->tok[p->pos];
  if (t->kind == TK_BAD)
    fail_at(p, t->loc, "%s", t->name);
  return t;
}

static Token *advance(P *p)
{
  Token *t = peek(p);
  if (t->kind != TK_EOF)
    p->pos++;
  return t;
}

static int isid(const Token *t, const char *s) { return t->kind == TK_IDENT && strcmp(t->name, s) == 0; }

static const char *tokstr(P *p, const Token *t)
{
  switch (t->kind) {
  case TK_EOF:
    return "end of file";
  case TK_NL:
    return "end of line";
  default:
    return aprintf(p->a, "'%.*s'", t->len > 40 ? 40 : t->len, t->s);
  }
}

static void verror(P *p, Loc loc, const char *fmt, va_list ap)
{
  char buf[512];
  vsnprintf(buf, sizeof buf, fmt, ap);
  error_at(&p->m->diags, loc, "%s", buf);
}

/* Report at loc, then abandon the statement. */
_Noreturn static void fail_at(P *p, Loc loc, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  verror(p, loc, fmt, ap);
  va_end(ap);
  p->errpos = p->pos;
  longjmp(p->jb, 1);
}

/* Whether the raw token at i starts a new statement or ends a block: a sign,
 * inside brackets, that the line before it ended with a bracket unclosed. */
static int stmtstart(const P *p, int i)
{
  const Token *t = &p->tok[i], *n = t->kind == TK_EOF ? t : &p->tok[i + 1];
  if (t->kind == TK_RBRACE || t->kind == TK_EOF)
    return 1;
  if (t->kind != TK_IDENT)
    return 0;
  if (n->kind == TK_EQ || n->kind == TK_COMMA)
    return 1;
  static const char *const kw[] = {"out", "param", "grad", "input", "output", "cell", "model"};
  for (size_t k = 0; k < sizeof kw / sizeof *kw; k++)
    if (strcmp(t->name, kw[k]) == 0)
      return 1;
  return 0;
}

/* "expected WHAT, found TOKEN" at the next token, then abandon the statement.
 * Inside brackets, a new statement on a later line means the line ended too
 * early (an unclosed '('): that is reported at the end of the line. */
_Noreturn static void expected(P *p, const char *what)
{
  Token *t = peek(p);
  if (p->nest > 0 && p->pos > 0 && p->tok[p->pos - 1].kind == TK_NL && stmtstart(p, p->pos)) {
    int i = p->pos - 1;
    while (i > 0 && p->tok[i].kind == TK_NL)
      i--;
    const Token *prev = &p->tok[i];
    if (prev->kind != TK_NL) {
      Loc eol = prev->loc;
      eol.col += prev->len;
      fail_at(p, eol, "expected %s, found end of line", what);
    }
  }
  fail_at(p, t->loc, "expected %s, found %s", what, tokstr(p, t));
}

static void err_at(P *p, Loc loc, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  verror(p, loc, fmt, ap);
  va_end(ap);
}

static int accept(P *p, int kind)
{
  if (peek(p)->kind != kind)
    return 0;
  advance(p);
  return 1;
}

static Token *expect(P *p, int kind, const char *what)
{
  if (peek(p)->kind != kind)
    expected(p, what);
  return advance(p);
}

/* An opening bracket: newlines are insignificant until its match. */
static Token *opentok(P *p, int kind, const char *what)
{
  Token *t = expect(p, kind, what);
  p->nest++;
  return t;
}

static void closetok(P *p, int kind, const char *what)
{
  expect(p, kind, what);
  p->nest--;
}

static void enter(P *p)
{
  if (++p->depth > MAXREC)
    fail_at(p, peek(p)->loc, "expression nested too deeply (at most %d levels)", MAXDEPTH);
}

static void leave(P *p) { p->depth--; }

/* Skip the rest of a broken statement: to the newline that ends it (brackets
 * counted), or up to a '}' or the end of file. When the error token is a new
 * statement at the start of a line inside unclosed brackets, the broken one
 * most likely ended at that line break (a missing ')'): parsing resumes there. */
static void recover(P *p)
{
  int depth = p->nest;
  p->nest = 0;
  p->depth = 0;
  int ek = p->tok[p->errpos].kind;
  if (depth > 0 && p->errpos > 0 && p->tok[p->errpos - 1].kind == TK_NL && ek == TK_IDENT &&
      stmtstart(p, p->errpos)) {
    p->pos = p->errpos;
    return;
  }
  for (;;) {
    Token *t = &p->tok[p->pos];
    switch (t->kind) {
    case TK_EOF:
    case TK_RBRACE:
      return;
    case TK_NL:
      p->pos++;
      if (depth == 0)
        return;
      break;
    case TK_LPAREN:
    case TK_LBRACK:
      depth++;
      p->pos++;
      break;
    case TK_RPAREN:
    case TK_RBRACK:
      if (depth > 0)
        depth--;
      p->pos++;
      break;
    default:
      p->pos++;
    }
  }
}

/* Skip a whole broken cell or model: past its matching '}', or to a line
 * that starts another one. */
static void recover_item(P *p)
{
  int braces = 0;
  p->nest = 0;
  p->depth = 0;
  for (;;) {
    Token *t = &p->tok[p->pos];
    if (t->kind == TK_EOF)
      return;
    p->pos++;
    if (t->kind == TK_LBRACE)
      braces++;
    else if (t->kind == TK_RBRACE) {
      if (--braces <= 0)
        return;
    } else if (t->kind == TK_NL && braces == 0) {
      Token *n = &p->tok[p->pos];
      if (isid(n, "cell") || isid(n, "model"))
        return;
    }
  }
}

/* A name that does not end in a prime. */
static Token *plainname(P *p, const char *what)
{
  Token *t = peek(p);
  if (t->kind != TK_IDENT)
    expected(p, what);
  if (t->s[t->len - 1] == '\'')
    fail_at(p, t->loc, "'%s' cannot end in ''' (only a state's new value does)", t->name);
  return advance(p);
}

/* ---- dimensions and shapes ---- */

static long dimint(P *p, Token *t)
{
  if (!t->isint || t->ival > MAXDIMVAL)
    fail_at(p, t->loc, "dimension %s is too large", tokstr(p, t));
  return t->ival;
}

/* dim := ['-'] term { ('+' | '-') term };  term := INT | NAME | INT '*' NAME */
static Dim parse_dim(P *p)
{
  Dim d = dim_const(0);
  long sign = accept(p, TK_MINUS) ? -1 : 1;
  for (;;) {
    Token *t = peek(p);
    Dim term;
    if (t->kind == TK_NUM) {
      advance(p);
      long k = dimint(p, t);
      if (accept(p, TK_STAR))
        term = dim_scale(dim_sym(plainname(p, "a dimension name after '*'")->name), k);
      else
        term = dim_const(k);
    } else if (t->kind == TK_IDENT) {
      term = dim_sym(plainname(p, "a dimension")->name);
      if (peek(p)->kind == TK_STAR)
        fail_at(p, peek(p)->loc, "a dimension is written with its coefficient first, like 4*%s",
                t->name);
    } else
      expected(p, "a dimension (a number, a name like H, or 4*H)");
    if (!dim_add(d, dim_scale(term, sign), &d))
      fail_at(p, t->loc, "a dimension may have at most %d named terms", DIM_MAXTERM);
    if (accept(p, TK_PLUS))
      sign = 1;
    else if (accept(p, TK_MINUS))
      sign = -1;
    else
      return d;
  }
}

static Shape parse_shape_(P *p)
{
  Shape s = {0};
  if (peek(p)->kind != TK_LBRACK)
    expected(p, "a shape like [H] or [4*H, I]");
  opentok(p, TK_LBRACK, "'['");
  if (peek(p)->kind != TK_RBRACK)
    for (;;) {
      if (s.rank == SHAPE_MAXRANK)
        fail_at(p, peek(p)->loc, "a shape has at most %d dimensions", SHAPE_MAXRANK);
      s.d[s.rank++] = parse_dim(p);
      if (!accept(p, TK_COMMA))
        break;
    }
  closetok(p, TK_RBRACK, "',' or ']' in the shape");
  return s;
}

/* A non-negative integer (split counts and parts). */
static long parse_count(P *p, const char *what)
{
  Token *t = peek(p);
  if (t->kind != TK_NUM || !t->isint)
    expected(p, what);
  advance(p);
  if (t->ival > MAXDIMVAL)
    fail_at(p, t->loc, "%s is too large", tokstr(p, t));
  return t->ival;
}

/* ---- cells: syntax tree ---- */

enum { E_NUM, E_NAME, E_OP, E_SPLIT, E_SLICE, E_ZEROS };

typedef struct Expr Expr;
struct Expr {
  int kind;
  int op;        /* E_OP */
  Loc loc;
  int height;    /* 1 for a leaf */
  double num;    /* E_NUM */
  const char *name; /* E_NAME */
  Expr **arg;    /* E_OP: operands; E_SPLIT, E_SLICE: arg[0] the source */
  int narg;
  int k, n;      /* E_SPLIT */
  Dim start;     /* E_SLICE */
  Shape shape;   /* E_SLICE: [size]; E_ZEROS */
  int node;      /* once lowered (a split source is shared), else -1 */
};

enum { I_DEF, I_SPLIT, I_OUT, I_GRAD };

/* One statement of a cell body. */
typedef struct Item {
  int kind;
  Loc loc;           /* of the statement */
  const char **name; /* I_DEF: 1 name; I_SPLIT: n names */
  Loc *nameloc;
  int nname;
  Expr *e;           /* I_SPLIT: the source */
  int n;             /* I_SPLIT: parts */
  int state;         /* I_DEF of X': the state's index, else -1 */
  int param;         /* I_GRAD: the param's index */
  int *node;         /* per name, after lowering */
  int *dep, ndep, capdep; /* items this one reads */
  int mark;          /* 0 new, 1 being lowered, 2 done */
} Item;

/* What a name in a cell body stands for. */
typedef struct Ref {
  int item, part; /* a statement's value, or item -1 and part = leaf node id */
  Loc loc;        /* where it was defined */
} Ref;

typedef struct CellAst {
  Cell *c;
  Item *item;
  int nitem, capitem;
  Ref *ref;
  int nref, capref;
  Map names; /* name -> index into ref */
  Map grads; /* param name -> I_GRAD item */
  int nerr0; /* errors before this cell: lowering only when none were added */
} CellAst;

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
    fail_at(p, e->loc, "expression nested too deeply (at most %d levels)", MAXDEPTH);
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
  if (peek(p)->kind != TK_RPAREN)
    for (;;) {
      Expr *e = cexpr(p, 1);
      APUSH(p->a, args, na, cap, e);
      if (!accept(p, TK_COMMA))
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
    opentok(p, TK_LPAREN, "'('");
    Expr *src = cexpr(p, 1);
    expect(p, TK_COMMA, "',' and the number of parts in split(v, n)");
    e->n = (int)parse_count(p, "the number of parts in split(v, n)");
    if (e->n < 1)
      fail_at(p, t->loc, "split needs at least 1 part");
    closetok(p, TK_RPAREN, "')' after split(v, n)");
    if (peek(p)->kind != TK_LBRACK)
      expected(p, "'[k]' after split(v, n) (one part is split(v, n)[k]; all parts: a, b = split(v, 2))");
    opentok(p, TK_LBRACK, "'['");
    Token *kt = peek(p);
    e->k = (int)parse_count(p, "a part number");
    if (e->k >= e->n)
      fail_at(p, kt->loc, "split part %d out of range: split(v, %d) has parts 0 to %d", e->k, e->n,
              e->n - 1);
    closetok(p, TK_RBRACK, "']' after the part number");
    Expr **args = aalloc(p->a, sizeof *args);
    args[0] = src;
    setargs(p, e, args, 1);
  } else if (strcmp(t->name, "slice") == 0) {
    e = mkexpr(p, E_SLICE, t->loc);
    opentok(p, TK_LPAREN, "'('");
    Expr **args = aalloc(p->a, sizeof *args);
    args[0] = cexpr(p, 1);
    expect(p, TK_COMMA, "',' and the start in slice(v, start, size)");
    e->start = parse_dim(p);
    expect(p, TK_COMMA, "',' and the size in slice(v, start, size)");
    e->shape.rank = 1;
    e->shape.d[0] = parse_dim(p);
    closetok(p, TK_RPAREN, "')' after slice(v, start, size)");
    setargs(p, e, args, 1);
  } else if (strcmp(t->name, "zeros") == 0) {
    e = mkexpr(p, E_ZEROS, t->loc);
    opentok(p, TK_LPAREN, "'('");
    e->shape = parse_shape_(p);
    closetok(p, TK_RPAREN, "')' after zeros([d])");
  } else {
    int op = op_lookup(t->name);
    if (op < 0)
      fail_at(p, t->loc, "unknown op '%s'", t->name);
    e = mkexpr(p, E_OP, t->loc);
    e->op = op;
    opentok(p, TK_LPAREN, "'('");
    int n;
    Expr **args = cargs(p, &n);
    closetok(p, TK_RPAREN, "',' or ')' after arguments");
    setargs(p, e, args, n);
  }
  return e;
}

/* unary := '-' unary | primary;  a '-' right before a number is part of it */
static Expr *cunary(P *p)
{
  enter(p);
  Token *t = peek(p);
  Expr *e;
  if (t->kind == TK_MINUS) {
    advance(p);
    Token *n = peek(p);
    if (n->kind == TK_NUM) {
      advance(p);
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
    advance(p);
    e = mkexpr(p, E_NUM, t->loc);
    e->num = t->num;
  } else if (t->kind == TK_IDENT) {
    advance(p);
    if (peek(p)->kind == TK_LPAREN)
      e = ccall(p, t);
    else {
      e = mkexpr(p, E_NAME, t->loc);
      e->name = t->name;
    }
  } else if (t->kind == TK_LPAREN) {
    opentok(p, TK_LPAREN, "'('");
    e = cexpr(p, 1);
    closetok(p, TK_RPAREN, "')'");
  } else
    expected(p, "an expression");
  leave(p);
  return e;
}

/* Precedence climbing over the infix ops of the op table; all left-assoc. */
static Expr *cexpr(P *p, int minprec)
{
  Expr *lhs = cunary(p);
  for (;;) {
    Token *t = peek(p);
    int op = binop(t);
    if (op < 0 || opinfo[op].prec < minprec)
      break;
    advance(p);
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
    err_at(p, loc, "duplicate definition of '%s'", name);
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
  err_at(p, t->loc, "cannot assign '%s': '%s' is not a state", t->name, base);
  return -1;
}

/* decl := NAME ':' shape, declared as a leaf of op */
static void cdecl(P *p, CellAst *ca, int op)
{
  Token *t = plainname(p, op == OP_PARAM ? "a parameter name" : "a name");
  expect(p, TK_COLON, "':' and a shape after the name");
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
  while (accept(p, TK_COMMA));
}

/* The end of a statement: a newline, or a '}' / end of file left for the caller. */
static void endstmt(P *p)
{
  Token *t = peek(p);
  if (t->kind == TK_NL)
    advance(p);
  else if (t->kind != TK_RBRACE && t->kind != TK_EOF)
    expected(p, "end of line after the statement");
}

/* NAME { ',' NAME } '=' split(expr, n) */
static void csplitstmt(P *p, CellAst *ca)
{
  const char **names = NULL;
  Loc *locs = NULL;
  Token **toks = NULL;
  int n = 0, cap = 0, capl = 0, capt = 0;
  do {
    Token *t = peek(p);
    if (t->kind != TK_IDENT)
      expected(p, "a name in the list of split parts");
    advance(p);
    int nn = n;
    APUSH(p->a, toks, nn, capt, t);
    nn = n;
    APUSH(p->a, locs, nn, capl, t->loc);
    APUSH(p->a, names, n, cap, t->name);
  } while (accept(p, TK_COMMA));
  expect(p, TK_EQ, "'=' after the names");
  Token *st = peek(p);
  if (!isid(st, "split") || peekat(p, 1)->kind != TK_LPAREN)
    expected(p, "split(v, n) after a list of names");
  advance(p);
  opentok(p, TK_LPAREN, "'('");
  Expr *src = cexpr(p, 1);
  expect(p, TK_COMMA, "',' and the number of parts in split(v, n)");
  Token *nt = peek(p);
  long parts = parse_count(p, "the number of parts in split(v, n)");
  closetok(p, TK_RPAREN, "')' after split(v, n)");
  endstmt(p);
  if (parts != n) {
    err_at(p, nt->loc, "split into %ld parts needs %ld names, found %d", parts, parts, n);
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
      err_at(p, toks[k]->loc, "'%s': a split part cannot be a state's new value", toks[k]->name);
      continue;
    }
    define(p, ca, names[k], locs[k], idx, k);
  }
}

/* One statement of a cell body. */
static void cstmt(P *p, CellAst *ca)
{
  Token *t = peek(p);
  Token *t2 = peekat(p, 1);
  if (t->kind == TK_IDENT && t2->kind == TK_EQ) {
    advance(p);
    advance(p);
    int s = -1;
    if (t->s[t->len - 1] == '\'' && (s = primed_state(p, ca, t)) < 0) {
      /* reported; still parse the expression for its own errors */
    }
    Expr *e = cexpr(p, 1);
    endstmt(p);
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
  } else if (isid(t, "param")) {
    advance(p);
    cdecls(p, ca, OP_PARAM);
    endstmt(p);
  } else if (isid(t, "out")) {
    advance(p);
    Expr *e = cexpr(p, 1);
    endstmt(p);
    Item *it = newitem(p, ca, I_OUT, t->loc);
    it->e = e;
  } else if (isid(t, "grad")) {
    advance(p);
    Token *w = plainname(p, "a parameter name after 'grad'");
    expect(p, TK_EQ, "'=' after grad NAME");
    Expr *e = cexpr(p, 1);
    endstmt(p);
    int r, pi = -1, prev;
    if (map_get(&ca->names, w->name, &r) && ca->ref[r].item < 0)
      for (int i = 0; i < ca->c->nparam; i++)
        if (ca->c->param[i] == ca->ref[r].part)
          pi = i;
    if (pi < 0) {
      err_at(p, w->loc, "grad of '%s': '%s' is not a parameter", w->name, w->name);
      return;
    }
    if (map_get(&ca->grads, w->name, &prev)) {
      err_at(p, w->loc, "duplicate gradient of '%s'", w->name);
      diag(&p->m->diags, DIAG_NOTE, ca->item[prev].loc, "previous definition is here");
      return;
    }
    Item *it = newitem(p, ca, I_GRAD, w->loc);
    it->e = e;
    it->param = pi;
    map_put(p->a, &ca->grads, w->name, ca->nitem - 1);
  } else
    expected(p, "a statement (NAME = expr, param, out or grad)");
}

static void lower_cell(P *p, CellAst *ca);

/* cell := 'cell' NAME '(' decls ')' [ 'state' '(' decls ')' ] '{' { cstmt } '}' */
static void parse_cell(P *p)
{
  advance(p);
  Token *nt = plainname(p, "a cell name after 'cell'");
  static const char *const reserved[] = {"embedding", "concat", "last", "final",
                                         "softmax",   "logits", "probs", "sum"};
  for (size_t i = 0; i < sizeof reserved / sizeof *reserved; i++)
    if (strcmp(nt->name, reserved[i]) == 0)
      fail_at(p, nt->loc, "'%s' is a model operation and cannot name a cell", nt->name);
  for (int i = 0; i < p->m->ncell; i++)
    if (p->m->cell[i]->name == nt->name) {
      err_at(p, nt->loc, "duplicate definition of cell '%s'", nt->name);
      diag(&p->m->diags, DIAG_NOTE, p->m->cell[i]->loc, "previous definition is here");
      break;
    }
  CellAst *ca = aalloc(p->a, sizeof *ca);
  ca->nerr0 = p->m->diags.nerror;
  ca->c = cell_new(p->m, nt->name, nt->loc);
  opentok(p, TK_LPAREN, "'(' and the inputs after the cell name");
  if (peek(p)->kind != TK_RPAREN)
    cdecls(p, ca, OP_INPUT);
  closetok(p, TK_RPAREN, "',' or ')' after the inputs");
  if (isid(peek(p), "state")) {
    advance(p);
    opentok(p, TK_LPAREN, "'(' after 'state'");
    cdecls(p, ca, OP_STATE);
    closetok(p, TK_RPAREN, "',' or ')' after the states");
  }
  expect(p, TK_LBRACE, "'{' to start the cell body");
  for (;;) {
    if (setjmp(p->jb)) {
      recover(p);
      continue;
    }
    Token *t = peek(p);
    if (t->kind == TK_NL) {
      advance(p);
      continue;
    }
    if (t->kind == TK_RBRACE) {
      advance(p);
      break;
    }
    if (t->kind == TK_EOF || ((isid(t, "cell") || isid(t, "model")) && peekat(p, 1)->kind == TK_IDENT)) {
      err_at(p, t->loc, "expected '}' at the end of cell '%s', found %s", nt->name, tokstr(p, t));
      break;
    }
    cstmt(p, ca);
  }
  if (p->m->diags.nerror == ca->nerr0)
    lower_cell(p, ca);
}

/* ---- cells: lowering the syntax tree to nodes ---- */

/* Resolve the names an expression reads into the item's deps; undefined ones
 * are reported. */
static void collect(P *p, CellAst *ca, Item *it, Expr *e)
{
  if (e->kind == E_NAME) {
    int r;
    if (!map_get(&ca->names, e->name, &r)) {
      err_at(p, e->loc, "undefined name '%s'", e->name);
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
static void lower_cell(P *p, CellAst *ca)
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
          err_at(p, di->loc, "cycle inside a step: %s", buf);
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

/* ---- models ---- */

typedef struct ModelAst {
  Model *md;
  Map names;  /* node name -> node id, or -1: a node whose statement failed */
  Map dims;
  const char *current; /* the name being defined by the current statement */
} ModelAst;

static const char *const mbuiltin[] = {
    [M_EMBEDDING] = "embedding", [M_CONCAT] = "concat", [M_LAST] = "last",
    [M_FINAL] = "final",         [M_SOFTMAX] = "softmax", [M_LOGITS] = "logits",
    [M_PROBS] = "probs",         [M_SUM] = "sum",
};

static int mkind_of(const char *name)
{
  for (int k = 0; k < NMKIND; k++)
    if (mbuiltin[k] && strcmp(mbuiltin[k], name) == 0)
      return k;
  return M_CELL;
}

/* Abandon the statement without a new message (the name's own error was reported). */
_Noreturn static void fail_quiet(P *p)
{
  p->errpos = p->pos;
  longjmp(p->jb, 1);
}

static int mref(P *p, ModelAst *ma, Token *t)
{
  int id;
  if (!map_get(&ma->names, t->name, &id)) {
    int dummy;
    if (map_get(&ma->dims, t->name, &dummy))
      fail_at(p, t->loc, "'%s' is a dimension, not a node (bind a cell dimension with %s = %s)",
              t->name, t->name, t->name);
    fail_at(p, t->loc, "undefined name '%s'", t->name);
  }
  if (id < 0)
    fail_quiet(p);
  return id;
}

static int mexpr(P *p, ModelAst *ma, Token *def);

static int *mlist(P *p, ModelAst *ma, int *n)
{
  int *ids = NULL, na = 0, cap = 0;
  do {
    int id = mexpr(p, ma, NULL);
    APUSH(p->a, ids, na, cap, id);
  } while (accept(p, TK_COMMA));
  *n = na;
  return ids;
}

/* A model expression; def is the token of NAME in `NAME = mexpr`, or NULL
 * when nested. Returns the node id. */
static int mexpr(P *p, ModelAst *ma, Token *def)
{
  Module *m = p->m;
  Model *md = ma->md;
  enter(p);
  Token *t = peek(p);
  if (t->kind != TK_IDENT)
    expected(p, def ? "a model expression after '='" : "a model expression");
  if (peekat(p, 1)->kind != TK_LPAREN) {
    advance(p);
    if (def)
      fail_at(p, t->loc, "'%s = %s' would only rename a node; a statement must build one",
              def->name, t->name);
    int id = mref(p, ma, t);
    leave(p);
    return id;
  }
  advance(p);
  int kind = mkind_of(t->name);
  if (!def && (kind == M_EMBEDDING || kind == M_SOFTMAX || kind == M_CELL))
    fail_at(p, t->loc,
            "a node with parameters must be named: write NAME = %s(...) on its own line",
            t->name);
  MNode n = {0};
  n.initfrom = -1;
  n.target = -1;
  int *ids = NULL, cap = 0, capb = 0, capv = 0, capl = 0;
  opentok(p, TK_LPAREN, "'('");
  switch (kind) {
  case M_EMBEDDING:
    ids = aalloc(p->a, sizeof *ids);
    ids[0] = mexpr(p, ma, NULL);
    n.narg = 1;
    expect(p, TK_COMMA, "',' and the vocabulary size in embedding(tokens, V, E)");
    n.size[0] = parse_dim(p);
    expect(p, TK_COMMA, "',' and the embedding size in embedding(tokens, V, E)");
    n.size[1] = parse_dim(p);
    break;
  case M_CONCAT:
    ids = mlist(p, ma, &n.narg);
    break;
  case M_LAST:
  case M_SUM:
  case M_LOGITS:
  case M_PROBS:
  case M_FINAL:
    ids = aalloc(p->a, sizeof *ids);
    ids[0] = mexpr(p, ma, NULL);
    n.narg = 1;
    if (kind == M_FINAL) {
      expect(p, TK_COMMA, "',' and a state name in final(node, state)");
      n.statename = plainname(p, "a state name in final(node, state)")->name;
    }
    break;
  case M_SOFTMAX: {
    ids = aalloc(p->a, sizeof *ids);
    ids[0] = mexpr(p, ma, NULL);
    n.narg = 1;
    expect(p, TK_COMMA, "',' and the number of classes in softmax(x, K)");
    n.size[0] = parse_dim(p);
    while (accept(p, TK_COMMA)) {
      Token *o = peek(p);
      if (isid(o, "target") && peekat(p, 1)->kind == TK_EQ) {
        advance(p);
        advance(p);
        if (n.target >= 0)
          fail_at(p, o->loc, "target given twice");
        n.target = mexpr(p, ma, NULL);
      } else if (isid(o, "ignore") && peekat(p, 1)->kind == TK_EQ) {
        advance(p);
        advance(p);
        if (n.hasignore)
          fail_at(p, o->loc, "ignore given twice");
        long sign = accept(p, TK_MINUS) ? -1 : 1;
        n.ignore = sign * parse_count(p, "an integer class index after 'ignore ='");
        n.hasignore = 1;
      } else
        expected(p, "'target = NODE' or 'ignore = N' in softmax(...)");
    }
    break;
  }
  case M_CELL: {
    n.cellname = t->name;
    n.cellloc = t->loc;
    int keywords = 0;
    if (peek(p)->kind != TK_RPAREN)
      for (;;) {
        Token *a = peek(p);
        Token *a2 = peekat(p, 1);
        if (isid(a, "backward") && (a2->kind == TK_COMMA || a2->kind == TK_RPAREN)) {
          advance(p);
          if (n.backward)
            fail_at(p, a->loc, "backward given twice");
          n.backward = 1;
          keywords = 1;
        } else if (isid(a, "init") && a2->kind == TK_EQ) {
          advance(p);
          advance(p);
          if (n.initfrom >= 0 || n.ninit)
            fail_at(p, a->loc, "init given twice");
          if (peek(p)->kind == TK_LPAREN) {
            opentok(p, TK_LPAREN, "'('");
            n.init = mlist(p, ma, &n.ninit);
            closetok(p, TK_RPAREN, "',' or ')' after the initial states");
          } else
            n.initfrom = mexpr(p, ma, NULL);
          keywords = 1;
        } else if (a->kind == TK_IDENT && a2->kind == TK_EQ) {
          advance(p);
          advance(p);
          for (int i = 0; i < n.nbind; i++)
            if (n.bindname[i] == a->name)
              fail_at(p, a->loc, "dimension '%s' bound twice", a->name);
          Dim d = parse_dim(p);
          int nb = n.nbind;
          APUSH(p->a, n.bindval, nb, capv, d);
          nb = n.nbind;
          APUSH(p->a, n.bindloc, nb, capl, a->loc);
          APUSH(p->a, n.bindname, n.nbind, capb, a->name);
          keywords = 1;
        } else {
          if (keywords)
            fail_at(p, a->loc, "cell inputs must come before dimension bindings, backward and init");
          int id = mexpr(p, ma, NULL);
          APUSH(p->a, ids, n.narg, cap, id);
        }
        if (!accept(p, TK_COMMA))
          break;
      }
    break;
  }
  default:
    die("mexpr: kind %d", kind);
  }
  closetok(p, TK_RPAREN, "',' or ')' after arguments");
  int id = model_add(m, md, kind, def ? def->name : NULL, t->loc);
  MNode *mn = &md->node[id];
  mn->arg = ids;
  mn->narg = n.narg;
  mn->size[0] = n.size[0];
  mn->size[1] = n.size[1];
  mn->cellname = n.cellname;
  mn->cellloc = n.cellloc;
  mn->nbind = n.nbind;
  mn->bindname = n.bindname;
  mn->bindval = n.bindval;
  mn->bindloc = n.bindloc;
  mn->backward = n.backward;
  mn->initfrom = n.initfrom;
  mn->init = n.init;
  mn->ninit = n.ninit;
  mn->statename = n.statename;
  mn->target = n.target;
  mn->hasignore = n.hasignore;
  mn->ignore = n.ignore;
  leave(p);
  return id;
}

/* A name for a new node or input; reports a duplicate (1 when it is one). */
static int mdefine_dup(P *p, ModelAst *ma, Token *t)
{
  int id;
  if (!map_get(&ma->names, t->name, &id))
    return 0;
  err_at(p, t->loc, "duplicate definition of '%s'", t->name);
  if (id >= 0)
    diag(&p->m->diags, DIAG_NOTE, ma->md->node[id].loc, "previous definition is here");
  return 1;
}

static Token *mnodename(P *p)
{
  Token *t = plainname(p, "a node name");
  if (strcmp(t->name, "backward") == 0)
    fail_at(p, t->loc, "'backward' is a keyword and cannot name a node");
  return t;
}

/* One statement of a model body. */
static void mstmt(P *p, ModelAst *ma)
{
  Module *m = p->m;
  Model *md = ma->md;
  Token *t = peek(p);
  Token *t2 = peekat(p, 1);
  ma->current = NULL;
  if (t->kind == TK_IDENT && t2->kind == TK_EQ) {
    advance(p);
    advance(p);
    if (t->s[t->len - 1] == '\'')
      fail_at(p, t->loc, "'%s' cannot end in ''' (only a state's new value does)", t->name);
    if (strcmp(t->name, "backward") == 0)
      fail_at(p, t->loc, "'backward' is a keyword and cannot name a node");
    int dup = mdefine_dup(p, ma, t);
    if (!dup)
      ma->current = t->name;
    int id = mexpr(p, ma, t);
    endstmt(p);
    if (!dup)
      map_put(p->a, &ma->names, t->name, id);
    ma->current = NULL;
  } else if (isid(t, "input") && t2->kind != TK_EQ) {
    advance(p);
    do {
      Token *nt = mnodename(p);
      expect(p, TK_COLON, "':' and a type after the input name");
      Token *ty = peek(p);
      int dt;
      if (isid(ty, "i32"))
        dt = DT_I32;
      else if (isid(ty, "f32"))
        dt = DT_F32;
      else
        expected(p, "a type i32 or f32");
      advance(p);
      Shape s = parse_shape_(p);
      if (!mdefine_dup(p, ma, nt)) {
        int id = model_add(m, md, M_INPUT, nt->name, nt->loc);
        md->node[id].dtype = dt;
        md->node[id].shape = s;
        map_put(p->a, &ma->names, nt->name, id);
      }
    } while (accept(p, TK_COMMA));
    endstmt(p);
  } else if (isid(t, "output") && t2->kind != TK_EQ) {
    advance(p);
    do {
      Token *nt = peek(p);
      if (nt->kind != TK_IDENT)
        expected(p, "a node name after 'output'");
      advance(p);
      int id;
      if (!map_get(&ma->names, nt->name, &id)) {
        err_at(p, nt->loc, "undefined name '%s'", nt->name);
        continue;
      }
      if (id < 0)
        continue;
      int dup = 0;
      for (int i = 0; i < md->noutput; i++)
        dup |= md->output[i] == id;
      if (dup) {
        err_at(p, nt->loc, "'%s' is already an output", nt->name);
        continue;
      }
      int cap = md->capoutput;
      agrow(m->arena, (void **)&md->outputloc, &cap, md->noutput + 1, sizeof *md->outputloc);
      md->outputloc[md->noutput] = nt->loc;
      APUSH(m->arena, md->output, md->noutput, md->capoutput, id);
    } while (accept(p, TK_COMMA));
    endstmt(p);
  } else
    expected(p, "a statement (input, output or NAME = ...)");
}

/* model := 'model' NAME '(' [ mdim { ',' mdim } ] ')' '{' { mstmt } '}' */
static void parse_model(P *p)
{
  Module *m = p->m;
  advance(p);
  Token *nt = plainname(p, "a model name after 'model'");
  for (int i = 0; i < m->nmodel; i++)
    if (m->model[i]->name == nt->name) {
      err_at(p, nt->loc, "duplicate definition of model '%s'", nt->name);
      diag(&m->diags, DIAG_NOTE, m->model[i]->loc, "previous definition is here");
      break;
    }
  ModelAst *ma = aalloc(p->a, sizeof *ma);
  Model *md = ma->md = model_new(m, nt->name, nt->loc);
  opentok(p, TK_LPAREN, "'(' and the dimensions after the model name");
  if (peek(p)->kind != TK_RPAREN)
    do {
      Token *d = plainname(p, "a dimension name");
      MDim md_ = {d->name, d->loc, 0, 0};
      if (accept(p, TK_EQ)) {
        Token *v = peek(p);
        if (v->kind != TK_NUM || !v->isint)
          expected(p, "a positive integer default after '='");
        advance(p);
        md_.hasdefault = 1;
        md_.def = dimint(p, v);
      }
      int prev;
      if (map_get(&ma->dims, d->name, &prev)) {
        err_at(p, d->loc, "duplicate definition of dimension '%s'", d->name);
        diag(&m->diags, DIAG_NOTE, md->dim[prev].loc, "previous definition is here");
        continue;
      }
      map_put(p->a, &ma->dims, d->name, md->ndim);
      APUSH(m->arena, md->dim, md->ndim, md->capdim, md_);
    } while (accept(p, TK_COMMA));
  closetok(p, TK_RPAREN, "',' or ')' after the dimensions");
  expect(p, TK_LBRACE, "'{' to start the model body");
  for (;;) {
    if (setjmp(p->jb)) {
      if (ma->current) { /* its later uses fail quietly */
        map_put(p->a, &ma->names, ma->current, -1);
        ma->current = NULL;
      }
      recover(p);
      continue;
    }
    Token *t = peek(p);
    if (t->kind == TK_NL) {
      advance(p);
      continue;
    }
    if (t->kind == TK_RBRACE) {
      advance(p);
      break;
    }
    if (t->kind == TK_EOF || ((isid(t, "cell") || isid(t, "model")) && peekat(p, 1)->kind == TK_IDENT)) {
      err_at(p, t->loc, "expected '}' at the end of model '%s', found %s", nt->name, tokstr(p, t));
      break;
    }
    mstmt(p, ma);
  }
}

/* ---- entry points ---- */

static void parse_file(P *p)
{
  for (;;) {
    if (setjmp(p->jb)) {
      recover_item(p);
      continue;
    }
    Token *t = peek(p);
    if (p->afteritem) {
      p->afteritem = 0;
      if (t->kind != TK_NL && t->kind != TK_EOF && !isid(t, "cell") && !isid(t, "model"))
        expected(p, "end of line after '}'");
    }
    if (t->kind == TK_NL) {
      advance(p);
      continue;
    }
    if (t->kind == TK_EOF)
      return;
    if (isid(t, "cell"))
      parse_cell(p);
    else if (isid(t, "model"))
      parse_model(p);
    else
      expected(p, "'cell' or 'model'");
    p->afteritem = 1;
  }
}

int parse(Module *m, const Source *src)
{
  int nerr = m->diags.nerror;
  P *p = aalloc(m->arena, sizeof *p);
  p->m = m;
  p->a = m->arena;
  p->tok = lex(m, src, &p->ntok);
  parse_file(p);
  return m->diags.nerror > nerr ? RNNC_ESYNTAX : RNNC_OK;
}

int parse_shape(Module *m, const Source *src, Shape *out)
{
  P *p = aalloc(m->arena, sizeof *p);
  p->m = m;
  p->a = m->arena;
  p->tok = lex(m, src, &p->ntok);
  if (setjmp(p->jb))
    return RNNC_ESYNTAX;
  Shape s = parse_shape_(p);
  while (peek(p)->kind == TK_NL)
    advance(p);
  if (peek(p)->kind != TK_EOF)
    expected(p, "end of text after the shape");
  *out = s;
  return RNNC_OK;
}
