/* parse.c — .rnn text to IR: cells and models appended to a module.
 * require: a module (its names and arena). produce: cells whose nodes are in
 * topological order (operands first) and models whose nodes are declared before
 * use; no shapes are inferred (verify does that). Errors go to m->diags; after
 * one the parser skips to the end of the statement and goes on.
 *
 * Cell bodies are dataflow: equations may come in any order, so a cell body is
 * parsed into a small syntax tree (Expr, Item; parse_cell.c) and then lowered
 * (lower.c): names resolved, cycles reported, nodes emitted in dependency
 * order. Model statements are in order and build nodes directly
 * (parse_model.c). This file holds the parser's state, its token and error
 * helpers, dimensions and shapes, and the entry points. */
#include <setjmp.h>
#include <stdarg.h>
#include <string.h>

#include "parse.h"

/* ---- a small map from interned names to ints ---- */

static size_t ptrhash(const char *k) { return ((uintptr_t)k >> 4) * 0x9E3779B97F4A7C15u; }

int map_get(const Map *mp, const char *k, int *val)
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

void map_put(Arena *a, Map *mp, const char *k, int v)
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

Token *p_peekat(P *p, int k)
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

/* The next token (newlines skipped inside brackets). A lexical error is
 * reported here, where the parser meets it, and abandons the statement. */
Token *p_peek(P *p)
{
  if (p->nest > 0)
    while (p->tok[p->pos].kind == TK_NL)
      p->pos++;
  Token *t = &p->tok[p->pos];
  if (t->kind == TK_BAD)
    p_fail_at(p, t->loc, "%s", t->name);
  return t;
}

Token *p_advance(P *p)
{
  Token *t = p_peek(p);
  if (t->kind != TK_EOF)
    p->pos++;
  return t;
}

int p_isid(const Token *t, const char *s) { return t->kind == TK_IDENT && strcmp(t->name, s) == 0; }

const char *p_tokstr(P *p, const Token *t)
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
_Noreturn void p_fail_at(P *p, Loc loc, const char *fmt, ...)
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
_Noreturn void p_expected(P *p, const char *what)
{
  Token *t = p_peek(p);
  if (p->nest > 0 && p->pos > 0 && p->tok[p->pos - 1].kind == TK_NL && stmtstart(p, p->pos)) {
    int i = p->pos - 1;
    while (i > 0 && p->tok[i].kind == TK_NL)
      i--;
    const Token *prev = &p->tok[i];
    if (prev->kind != TK_NL) {
      Loc eol = prev->loc;
      eol.col += prev->len;
      p_fail_at(p, eol, "expected %s, found end of line", what);
    }
  }
  p_fail_at(p, t->loc, "expected %s, found %s", what, p_tokstr(p, t));
}

void p_err_at(P *p, Loc loc, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  verror(p, loc, fmt, ap);
  va_end(ap);
}

int p_accept(P *p, int kind)
{
  if (p_peek(p)->kind != kind)
    return 0;
  p_advance(p);
  return 1;
}

Token *p_expect(P *p, int kind, const char *what)
{
  if (p_peek(p)->kind != kind)
    p_expected(p, what);
  return p_advance(p);
}

/* An opening bracket: newlines are insignificant until its match. */
Token *p_opentok(P *p, int kind, const char *what)
{
  Token *t = p_expect(p, kind, what);
  p->nest++;
  return t;
}

void p_closetok(P *p, int kind, const char *what)
{
  p_expect(p, kind, what);
  p->nest--;
}

void p_enter(P *p)
{
  if (++p->depth > MAXREC)
    p_fail_at(p, p_peek(p)->loc, "expression nested too deeply (at most %d levels)", MAXDEPTH);
}

void p_leave(P *p) { p->depth--; }

/* Skip the rest of a broken statement: to the newline that ends it (brackets
 * counted), or up to a '}' or the end of file. When the error token is a new
 * statement at the start of a line inside unclosed brackets, the broken one
 * most likely ended at that line break (a missing ')'): parsing resumes there. */
void p_recover(P *p)
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
      if (p_isid(n, "cell") || p_isid(n, "model"))
        return;
    }
  }
}

/* A name that does not end in a prime. */
Token *p_plainname(P *p, const char *what)
{
  Token *t = p_peek(p);
  if (t->kind != TK_IDENT)
    p_expected(p, what);
  if (t->s[t->len - 1] == '\'')
    p_fail_at(p, t->loc, "'%s' cannot end in ''' (only a state's new value does)", t->name);
  return p_advance(p);
}

/* The end of a statement: a newline, or a '}' / end of file left for the caller. */
void p_endstmt(P *p)
{
  Token *t = p_peek(p);
  if (t->kind == TK_NL)
    p_advance(p);
  else if (t->kind != TK_RBRACE && t->kind != TK_EOF)
    p_expected(p, "end of line after the statement");
}

/* ---- dimensions and shapes ---- */

long p_dimint(P *p, Token *t)
{
  if (!t->isint || t->ival > MAXDIMVAL)
    p_fail_at(p, t->loc, "dimension %s is too large", p_tokstr(p, t));
  return t->ival;
}

/* dim := ['-'] term { ('+' | '-') term };  term := INT | NAME | INT '*' NAME */
Dim parse_dim(P *p)
{
  Dim d = dim_const(0);
  long sign = p_accept(p, TK_MINUS) ? -1 : 1;
  for (;;) {
    Token *t = p_peek(p);
    Dim term;
    if (t->kind == TK_NUM) {
      p_advance(p);
      long k = p_dimint(p, t);
      if (p_accept(p, TK_STAR))
        term = dim_scale(dim_sym(p_plainname(p, "a dimension name after '*'")->name), k);
      else
        term = dim_const(k);
    } else if (t->kind == TK_IDENT) {
      term = dim_sym(p_plainname(p, "a dimension")->name);
      if (p_peek(p)->kind == TK_STAR)
        p_fail_at(p, p_peek(p)->loc, "a dimension is written with its coefficient first, like 4*%s",
                t->name);
    } else
      p_expected(p, "a dimension (a number, a name like H, or 4*H)");
    if (!dim_add(d, dim_scale(term, sign), &d))
      p_fail_at(p, t->loc, "a dimension may have at most %d named terms", DIM_MAXTERM);
    if (p_accept(p, TK_PLUS))
      sign = 1;
    else if (p_accept(p, TK_MINUS))
      sign = -1;
    else
      return d;
  }
}

Shape parse_shape_(P *p)
{
  Shape s = {0};
  if (p_peek(p)->kind != TK_LBRACK)
    p_expected(p, "a shape like [H] or [4*H, I]");
  p_opentok(p, TK_LBRACK, "'['");
  if (p_peek(p)->kind != TK_RBRACK)
    for (;;) {
      if (s.rank == SHAPE_MAXRANK)
        p_fail_at(p, p_peek(p)->loc, "a shape has at most %d dimensions", SHAPE_MAXRANK);
      s.d[s.rank++] = parse_dim(p);
      if (!p_accept(p, TK_COMMA))
        break;
    }
  p_closetok(p, TK_RBRACK, "',' or ']' in the shape");
  return s;
}

/* A non-negative integer (split counts and parts). */
long parse_count(P *p, const char *what)
{
  Token *t = p_peek(p);
  if (t->kind != TK_NUM || !t->isint)
    p_expected(p, what);
  p_advance(p);
  if (t->ival > MAXDIMVAL)
    p_fail_at(p, t->loc, "%s is too large", p_tokstr(p, t));
  return t->ival;
}

/* ---- entry points ---- */

static void parse_file(P *p)
{
  for (;;) {
    if (setjmp(p->jb)) {
      recover_item(p);
      continue;
    }
    Token *t = p_peek(p);
    if (p->afteritem) {
      p->afteritem = 0;
      if (t->kind != TK_NL && t->kind != TK_EOF && !p_isid(t, "cell") && !p_isid(t, "model"))
        p_expected(p, "end of line after '}'");
    }
    if (t->kind == TK_NL) {
      p_advance(p);
      continue;
    }
    if (t->kind == TK_EOF)
      return;
    if (p_isid(t, "cell"))
      parse_cell(p);
    else if (p_isid(t, "model"))
      parse_model(p);
    else
      p_expected(p, "'cell' or 'model'");
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
  while (p_peek(p)->kind == TK_NL)
    p_advance(p);
  if (p_peek(p)->kind != TK_EOF)
    p_expected(p, "end of text after the shape");
  *out = s;
  return RNNC_OK;
}
