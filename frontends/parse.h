/* parse.h — private to the parser (parse.c, parse_cell.c, lower.c,
 * parse_model.c): its state, token and error helpers, and a cell body's
 * syntax tree. The token helpers carry p_ now that they are global: a bare
 * accept() would take libc's place in every program linking the library. */
#ifndef RNNC_PARSE_H
#define RNNC_PARSE_H

#include <setjmp.h>

#include "ir.h"

enum { MAXDEPTH = EXPR_MAXDEPTH, MAXREC = 2 * EXPR_MAXDEPTH + 8 };
enum { MAXDIMVAL = 1 << 30 }; /* integers inside shapes and dimensions */

/* ---- a small map from interned names to ints (parse.c) ---- */

typedef struct Map {
  const char **key;
  int *val;
  size_t cap, n;
} Map;

int map_get(const Map *mp, const char *k, int *val);
void map_put(Arena *a, Map *mp, const char *k, int v);

/* ---- parser state, tokens, errors (parse.c) ---- */

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

Token *p_peekat(P *p, int k);
/* The next token (newlines skipped inside brackets); a lexical error there
 * is reported and abandons the statement. */
Token *p_peek(P *p);
Token *p_advance(P *p);
int p_isid(const Token *t, const char *s);
const char *p_tokstr(P *p, const Token *t);
/* Report at loc, then abandon the statement (longjmp to p->jb). */
_Noreturn void p_fail_at(P *p, Loc loc, const char *fmt, ...);
/* "expected WHAT, found TOKEN", then abandon the statement. */
_Noreturn void p_expected(P *p, const char *what);
/* Report at loc and go on. */
void p_err_at(P *p, Loc loc, const char *fmt, ...);
int p_accept(P *p, int kind);
Token *p_expect(P *p, int kind, const char *what);
Token *p_opentok(P *p, int kind, const char *what); /* '(' or '[': nest++ */
void p_closetok(P *p, int kind, const char *what);  /* its match: nest-- */
void p_enter(P *p); /* expression recursion depth, checked */
void p_leave(P *p);
void p_recover(P *p); /* skip the rest of a broken statement */
Token *p_plainname(P *p, const char *what);
void p_endstmt(P *p);

/* ---- dimensions and shapes (parse.c) ---- */

long p_dimint(P *p, Token *t);
Dim parse_dim(P *p);
Shape parse_shape_(P *p);
long parse_count(P *p, const char *what);

/* ---- cells: syntax tree (built by parse_cell.c, lowered by lower.c) ---- */

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

void parse_cell(P *p);              /* parse_cell.c: at 'cell' */
void lower_cell(P *p, CellAst *ca); /* lower.c */

/* ---- models (parse_model.c) ---- */

void parse_model(P *p); /* at 'model' */

#endif
