/* parse_model.c — a model definition: dims, inputs, outputs and named node
 * statements, built into model nodes in order (declared before use). */
#include <setjmp.h>
#include <string.h>

#include "parse.h"

typedef struct ModelAst {
  Model *md;
  Map names;  /* node name -> node id, or -1: a node whose statement failed */
  Map dims;
  const char *current; /* the name being defined by the current statement */
} ModelAst;

static const char *const mbuiltin[] = {
    [M_EMBEDDING] = "embedding", [M_CONCAT] = "concat", [M_LAST] = "last",
    [M_FINAL] = "final",         [M_SOFTMAX] = "softmax", [M_LOGITS] = "logits",
    [M_PROBS] = "probs",         [M_SUM] = "sum",         [M_ONEHOT] = "onehot",
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
      p_fail_at(p, t->loc, "'%s' is a dimension, not a node (bind a cell dimension with %s = %s)",
              t->name, t->name, t->name);
    p_fail_at(p, t->loc, "undefined name '%s'", t->name);
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
  } while (p_accept(p, TK_COMMA));
  *n = na;
  return ids;
}

/* A model expression; def is the token of NAME in `NAME = mexpr`, or NULL
 * when nested. Returns the node id. */
static int mexpr(P *p, ModelAst *ma, Token *def)
{
  Module *m = p->m;
  Model *md = ma->md;
  p_enter(p);
  Token *t = p_peek(p);
  if (t->kind != TK_IDENT)
    p_expected(p, def ? "a model expression after '='" : "a model expression");
  if (p_peekat(p, 1)->kind != TK_LPAREN) {
    p_advance(p);
    if (def)
      p_fail_at(p, t->loc, "'%s = %s' would only rename a node; a statement must build one",
              def->name, t->name);
    int id = mref(p, ma, t);
    p_leave(p);
    return id;
  }
  p_advance(p);
  int kind = mkind_of(t->name);
  if (!def && (kind == M_EMBEDDING || kind == M_SOFTMAX || kind == M_CELL))
    p_fail_at(p, t->loc,
            "a node with parameters must be named: write NAME = %s(...) on its own line",
            t->name);
  MNode n = {0};
  n.initfrom = -1;
  n.target = -1;
  int *ids = NULL, cap = 0, capb = 0, capv = 0, capl = 0;
  p_opentok(p, TK_LPAREN, "'('");
  switch (kind) {
  case M_EMBEDDING:
    ids = aalloc(p->a, sizeof *ids);
    ids[0] = mexpr(p, ma, NULL);
    n.narg = 1;
    p_expect(p, TK_COMMA, "',' and the vocabulary size in embedding(tokens, V, E)");
    n.size[0] = parse_dim(p);
    p_expect(p, TK_COMMA, "',' and the embedding size in embedding(tokens, V, E)");
    n.size[1] = parse_dim(p);
    break;
  case M_ONEHOT:
    ids = aalloc(p->a, sizeof *ids);
    ids[0] = mexpr(p, ma, NULL);
    n.narg = 1;
    p_expect(p, TK_COMMA, "',' and the vocabulary size in onehot(tokens, V)");
    n.size[0] = parse_dim(p);
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
      p_expect(p, TK_COMMA, "',' and a state name in final(node, state)");
      n.statename = p_plainname(p, "a state name in final(node, state)")->name;
    }
    break;
  case M_SOFTMAX: {
    ids = aalloc(p->a, sizeof *ids);
    ids[0] = mexpr(p, ma, NULL);
    n.narg = 1;
    p_expect(p, TK_COMMA, "',' and the number of classes in softmax(x, K)");
    n.size[0] = parse_dim(p);
    while (p_accept(p, TK_COMMA)) {
      Token *o = p_peek(p);
      if (p_isid(o, "target") && p_peekat(p, 1)->kind == TK_EQ) {
        p_advance(p);
        p_advance(p);
        if (n.target >= 0)
          p_fail_at(p, o->loc, "target given twice");
        n.target = mexpr(p, ma, NULL);
      } else if (p_isid(o, "ignore") && p_peekat(p, 1)->kind == TK_EQ) {
        p_advance(p);
        p_advance(p);
        if (n.hasignore)
          p_fail_at(p, o->loc, "ignore given twice");
        long sign = p_accept(p, TK_MINUS) ? -1 : 1;
        n.ignore = sign * parse_count(p, "an integer class index after 'ignore ='");
        n.hasignore = 1;
      } else
        p_expected(p, "'target = NODE' or 'ignore = N' in softmax(...)");
    }
    break;
  }
  case M_CELL: {
    n.cellname = t->name;
    n.cellloc = t->loc;
    int keywords = 0, mask = -1;
    if (p_peek(p)->kind != TK_RPAREN)
      for (;;) {
        Token *a = p_peek(p);
        Token *a2 = p_peekat(p, 1);
        if (p_isid(a, "backward") && (a2->kind == TK_COMMA || a2->kind == TK_RPAREN)) {
          p_advance(p);
          if (n.backward)
            p_fail_at(p, a->loc, "backward given twice");
          n.backward = 1;
          keywords = 1;
        } else if (p_isid(a, "init") && a2->kind == TK_EQ) {
          p_advance(p);
          p_advance(p);
          if (n.initfrom >= 0 || n.ninit)
            p_fail_at(p, a->loc, "init given twice");
          if (p_peek(p)->kind == TK_LPAREN) {
            p_opentok(p, TK_LPAREN, "'('");
            n.init = mlist(p, ma, &n.ninit);
            p_closetok(p, TK_RPAREN, "',' or ')' after the initial states");
          } else
            n.initfrom = mexpr(p, ma, NULL);
          keywords = 1;
        } else if (p_isid(a, "mask") && a2->kind == TK_EQ) {
          p_advance(p);
          p_advance(p);
          if (mask >= 0)
            p_fail_at(p, a->loc, "mask given twice");
          mask = mexpr(p, ma, NULL);
          keywords = 1;
        } else if (a->kind == TK_IDENT && a2->kind == TK_EQ) {
          p_advance(p);
          p_advance(p);
          for (int i = 0; i < n.nbind; i++)
            if (n.bindname[i] == a->name)
              p_fail_at(p, a->loc, "dimension '%s' bound twice", a->name);
          Dim d = parse_dim(p);
          int nb = n.nbind;
          APUSH(p->a, n.bindval, nb, capv, d);
          nb = n.nbind;
          APUSH(p->a, n.bindloc, nb, capl, a->loc);
          APUSH(p->a, n.bindname, n.nbind, capb, a->name);
          keywords = 1;
        } else {
          if (keywords)
            p_fail_at(p, a->loc, "cell inputs must come before dimension bindings, backward and init");
          int id = mexpr(p, ma, NULL);
          APUSH(p->a, ids, n.narg, cap, id);
        }
        if (!p_accept(p, TK_COMMA))
          break;
      }
    if (mask >= 0) { /* the last operand */
      APUSH(p->a, ids, n.narg, cap, mask);
      n.hasmask = 1;
    }
    break;
  }
  default:
    die("mexpr: kind %d", kind);
  }
  p_closetok(p, TK_RPAREN, "',' or ')' after arguments");
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
  mn->hasmask = n.hasmask;
  p_leave(p);
  return id;
}

/* A name for a new node or input; reports a duplicate (1 when it is one). */
static int mdefine_dup(P *p, ModelAst *ma, Token *t)
{
  int id;
  if (!map_get(&ma->names, t->name, &id))
    return 0;
  p_err_at(p, t->loc, "duplicate definition of '%s'", t->name);
  if (id >= 0)
    diag(&p->m->diags, DIAG_NOTE, ma->md->node[id].loc, "previous definition is here");
  return 1;
}

static Token *mnodename(P *p)
{
  Token *t = p_plainname(p, "a node name");
  if (strcmp(t->name, "backward") == 0)
    p_fail_at(p, t->loc, "'backward' is a keyword and cannot name a node");
  return t;
}

/* One statement of a model body. */
static void mstmt(P *p, ModelAst *ma)
{
  Module *m = p->m;
  Model *md = ma->md;
  Token *t = p_peek(p);
  Token *t2 = p_peekat(p, 1);
  ma->current = NULL;
  if (t->kind == TK_IDENT && t2->kind == TK_EQ) {
    p_advance(p);
    p_advance(p);
    if (t->s[t->len - 1] == '\'')
      p_fail_at(p, t->loc, "'%s' cannot end in ''' (only a state's new value does)", t->name);
    if (strcmp(t->name, "backward") == 0)
      p_fail_at(p, t->loc, "'backward' is a keyword and cannot name a node");
    int dup = mdefine_dup(p, ma, t);
    if (!dup)
      ma->current = t->name;
    int id = mexpr(p, ma, t);
    p_endstmt(p);
    if (!dup)
      map_put(p->a, &ma->names, t->name, id);
    ma->current = NULL;
  } else if (p_isid(t, "input") && t2->kind != TK_EQ) {
    p_advance(p);
    do {
      Token *nt = mnodename(p);
      p_expect(p, TK_COLON, "':' and a type after the input name");
      Token *ty = p_peek(p);
      int dt;
      if (p_isid(ty, "i32"))
        dt = DT_I32;
      else if (p_isid(ty, "f32"))
        dt = DT_F32;
      else
        p_expected(p, "a type i32 or f32");
      p_advance(p);
      Shape s = parse_shape_(p);
      if (!mdefine_dup(p, ma, nt)) {
        int id = model_add(m, md, M_INPUT, nt->name, nt->loc);
        md->node[id].dtype = dt;
        md->node[id].shape = s;
        map_put(p->a, &ma->names, nt->name, id);
      }
    } while (p_accept(p, TK_COMMA));
    p_endstmt(p);
  } else if (p_isid(t, "output") && t2->kind != TK_EQ) {
    p_advance(p);
    do {
      Token *nt = p_peek(p);
      if (nt->kind != TK_IDENT)
        p_expected(p, "a node name after 'output'");
      p_advance(p);
      int id;
      if (!map_get(&ma->names, nt->name, &id)) {
        p_err_at(p, nt->loc, "undefined name '%s'", nt->name);
        continue;
      }
      if (id < 0)
        continue;
      int dup = 0;
      for (int i = 0; i < md->noutput; i++)
        dup |= md->output[i] == id;
      if (dup) {
        p_err_at(p, nt->loc, "'%s' is already an output", nt->name);
        continue;
      }
      int cap = md->capoutput;
      agrow(m->arena, (void **)&md->outputloc, &cap, md->noutput + 1, sizeof *md->outputloc);
      md->outputloc[md->noutput] = nt->loc;
      APUSH(m->arena, md->output, md->noutput, md->capoutput, id);
    } while (p_accept(p, TK_COMMA));
    p_endstmt(p);
  } else
    p_expected(p, "a statement (input, output or NAME = ...)");
}

/* model := 'model' NAME '(' [ mdim { ',' mdim } ] ')' '{' { mstmt } '}' */
void parse_model(P *p)
{
  Module *m = p->m;
  p_advance(p);
  Token *nt = p_plainname(p, "a model name after 'model'");
  for (int i = 0; i < m->nmodel; i++)
    if (m->model[i]->name == nt->name) {
      p_err_at(p, nt->loc, "duplicate definition of model '%s'", nt->name);
      diag(&m->diags, DIAG_NOTE, m->model[i]->loc, "previous definition is here");
      break;
    }
  ModelAst *ma = aalloc(p->a, sizeof *ma);
  Model *md = ma->md = model_new(m, nt->name, nt->loc);
  p_opentok(p, TK_LPAREN, "'(' and the dimensions after the model name");
  if (p_peek(p)->kind != TK_RPAREN)
    do {
      Token *d = p_plainname(p, "a dimension name");
      MDim md_ = {d->name, d->loc, 0, 0};
      if (p_accept(p, TK_EQ)) {
        Token *v = p_peek(p);
        if (v->kind != TK_NUM || !v->isint)
          p_expected(p, "a positive integer default after '='");
        p_advance(p);
        md_.hasdefault = 1;
        md_.def = p_dimint(p, v);
      }
      int prev;
      if (map_get(&ma->dims, d->name, &prev)) {
        p_err_at(p, d->loc, "duplicate definition of dimension '%s'", d->name);
        diag(&m->diags, DIAG_NOTE, md->dim[prev].loc, "previous definition is here");
        continue;
      }
      map_put(p->a, &ma->dims, d->name, md->ndim);
      APUSH(m->arena, md->dim, md->ndim, md->capdim, md_);
    } while (p_accept(p, TK_COMMA));
  p_closetok(p, TK_RPAREN, "',' or ')' after the dimensions");
  p_expect(p, TK_LBRACE, "'{' to start the model body");
  for (;;) {
    if (setjmp(p->jb)) {
      if (ma->current) { /* its later uses fail quietly */
        map_put(p->a, &ma->names, ma->current, -1);
        ma->current = NULL;
      }
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
      p_err_at(p, t->loc, "expected '}' at the end of model '%s', found %s", nt->name, p_tokstr(p, t));
      break;
    }
    mstmt(p, ma);
  }
}
