/* lex.c — the tokens of a .rnn file, each with its file:line:col.
 * require: NUL-terminated text. produce: tokens ending in TK_EOF; a run of bad
 * bytes becomes one TK_BAD token carrying its message (the parser reports it). */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

/* ASCII classes of a byte, whatever the locale. */
static int isdig(char c) { return c >= '0' && c <= '9'; }
static int isident0(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static int isident(char c) { return isident0(c) || isdig(c); }

/* The printable form of one byte for a message. */
static const char *bytestr(char *buf, size_t n, unsigned char c)
{
  if (c >= 0x20 && c < 0x7f)
    snprintf(buf, n, "'%c'", c);
  else
    snprintf(buf, n, "byte 0x%02x", c);
  return buf;
}

Token *lex(Module *m, const Source *src, int *ntok)
{
  Token *tok = NULL;
  int n = 0, cap = 0;
  const char *p = src->text, *linestart = p;
  int line = 1, badrun = 0;

  for (;;) {
    Token t = {0};
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\f' || *p == '\v')
      p++;
    if (*p == '#')
      while (*p && *p != '\n')
        p++;
    t.loc = (Loc){src, line, (int)(p - linestart) + 1};
    t.s = p;
    int c = (unsigned char)*p;
    if (c == 0) {
      t.kind = TK_EOF;
      APUSH(m->arena, tok, n, cap, t);
      break;
    }
    if (c == '\n') {
      t.kind = TK_NL;
      t.len = 1;
      p++;
      line++;
      linestart = p;
      badrun = 0;
      APUSH(m->arena, tok, n, cap, t);
      continue;
    }
    if (isident0((char)c)) {
      const char *q = p;
      for (;;) {
        while (isident(*q))
          q++;
        if (q[0] == '.' && isident(q[1]))
          q++;
        else
          break;
      }
      if (*q == '\'')
        q++;
      t.kind = TK_IDENT;
      t.len = (int)(q - p);
      t.name = intern(m->names, p, (size_t)t.len);
      p = q;
      badrun = 0;
      APUSH(m->arena, tok, n, cap, t);
      continue;
    }
    if (isdig((char)c)) {
      const char *q = p;
      int isint = 1;
      while (isdig(*q))
        q++;
      if (q[0] == '.' && isdig(q[1])) {
        isint = 0;
        q++;
        while (isdig(*q))
          q++;
      }
      if ((q[0] == 'e' || q[0] == 'E') &&
          (isdig(q[1]) || ((q[1] == '+' || q[1] == '-') && isdig(q[2])))) {
        isint = 0;
        q += 2;
        while (isdig(*q))
          q++;
      }
      t.kind = TK_NUM;
      t.len = (int)(q - p);
      char *text = astrndup(m->arena, p, (size_t)t.len);
      t.num = strtod(text, NULL);
      if (isinf(t.num)) {
        t.kind = TK_BAD;
        t.name = aprintf(m->arena, "number '%.40s' is out of range", text);
      }
      if (isint) {
        errno = 0;
        t.ival = strtol(text, NULL, 10);
        t.isint = errno == 0;
      }
      p = q;
      badrun = 0;
      APUSH(m->arena, tok, n, cap, t);
      continue;
    }
    static const char punct[] = "()[]{},:=+-*/@";
    static const int kinds[] = {TK_LPAREN, TK_RPAREN, TK_LBRACK, TK_RBRACK, TK_LBRACE,
                                TK_RBRACE, TK_COMMA,  TK_COLON,  TK_EQ,     TK_PLUS,
                                TK_MINUS,  TK_STAR,   TK_SLASH,  TK_AT};
    const char *k = strchr(punct, c);
    if (k) {
      t.kind = kinds[k - punct];
      t.len = 1;
      p++;
      badrun = 0;
      APUSH(m->arena, tok, n, cap, t);
      continue;
    }
    if (badrun) { /* one token for a run of bad bytes */
      tok[n - 1].len++;
      p++;
      continue;
    }
    char buf[32];
    t.kind = TK_BAD;
    t.len = 1;
    if (c == '\'')
      t.name = "unexpected ''' (only a name may end in one ')";
    else if (c == '.')
      t.name = "unexpected '.' (a dot may only join two parts of a name)";
    else
      t.name = aprintf(m->arena, "unexpected character %s", bytestr(buf, sizeof buf, (unsigned char)c));
    APUSH(m->arena, tok, n, cap, t);
    badrun = 1;
    p++;
  }
  *ntok = n;
  return tok;
}
