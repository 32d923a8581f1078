/* print.c — canonical text of cells and models.
 * require: a cell or model (verified or not). produce: text that parses back
 * to the same graph and prints again byte for byte (docs/ir.md, "Canonical
 * form"). Anonymous single-use nodes are inlined with minimal parentheses;
 * anonymous nodes used more or less than once get a fresh name _t<N>. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

/* An integer below 1e15 in plain digits; otherwise the shortest %g form that
 * reads back as the same double (0.5, 1e-08, 1e+300). */
static void printnum(FILE *f, double v)
{
  char buf[64];
  if (v == floor(v) && fabs(v) < 1e15 && !(v == 0 && signbit(v))) {
    fprintf(f, "%.0f", v);
    return;
  }
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(buf, sizeof buf, "%.*g", prec, v);
    if (strtod(buf, NULL) == v || isnan(v))
      break;
  }
  fputs(buf, f);
}

static void printshape(FILE *f, Arena *a, const Shape *s) { fputs(shape_str(a, s), f); }

/* A fresh name _t<id> (or _t<id>_<k>) that no node of the graph has. */
static const char *freshname(Arena *a, const char *const *taken, int ntaken, int id)
{
  for (int k = 0;; k++) {
    char *s = k ? aprintf(a, "_t%d_%d", id, k) : aprintf(a, "_t%d", id);
    int clash = 0;
    for (int i = 0; i < ntaken && !clash; i++)
      clash = taken[i] && strcmp(taken[i], s) == 0;
    if (!clash)
      return s;
  }
}

/* ---- cells ---- */

typedef struct CP {
  FILE *f;
  const Cell *c;
  Arena *a;
  int *uses;
  const char **pname; /* the name a node is printed by; NULL: inlined */
  int *run;           /* first node of a split run: its length; inside a run: -1 */
  int *inrunsrc;      /* a split source printed inside its run's statement */
} CP;

static int isleaf(int op) { return op == OP_INPUT || op == OP_STATE || op == OP_PARAM; }

static void cexpr(CP *cp, int id, int ctxprec, int right);

/* The node's own operation, operands by name or inlined. */
static void cop(CP *cp, int id, int ctxprec, int right)
{
  FILE *f = cp->f;
  const Node *n = &cp->c->node[id];
  const OpInfo *oi = &opinfo[n->op];
  if (oi->prec > 0) {
    if (n->narg != 2)
      die("print: '%s' with %d operands", oi->spelling, n->narg);
    int paren = oi->prec < ctxprec || (oi->prec == ctxprec && right);
    if (paren)
      fputc('(', f);
    cexpr(cp, n->arg[0], oi->prec, 0);
    fprintf(f, " %s ", oi->spelling);
    cexpr(cp, n->arg[1], oi->prec, 1);
    if (paren)
      fputc(')', f);
    return;
  }
  switch (n->op) {
  case OP_CONST:
    printnum(f, n->cval);
    return;
  case OP_ZEROS:
    fputs("zeros(", f);
    printshape(f, cp->a, &n->shape);
    fputc(')', f);
    return;
  case OP_SPLIT:
    fputs("split(", f);
    cexpr(cp, n->arg[0], 0, 0);
    fprintf(f, ", %d)[%d]", n->n, n->k);
    return;
  case OP_SLICE:
    fputs("slice(", f);
    cexpr(cp, n->arg[0], 0, 0);
    fprintf(f, ", %s, %s)", dim_str(cp->a, n->start), dim_str(cp->a, n->shape.d[0]));
    return;
  case OP_NEG:
    if (n->narg == 1) {
      int a = n->arg[0];
      const Node *an = &cp->c->node[a];
      int paren = !cp->pname[a] &&
                  (opinfo[an->op].prec > 0 || an->op == OP_CONST || an->op == OP_NEG);
      fputs(paren ? "-(" : "-", f);
      cexpr(cp, a, 0, 0);
      if (paren)
        fputc(')', f);
      return;
    }
    break;
  case OP_INPUT:
  case OP_STATE:
  case OP_PARAM:
    die("print: leaf %d has no name", id);
  }
  fprintf(f, "%s(", oi->spelling);
  for (int i = 0; i < n->narg; i++) {
    if (i)
      fputs(", ", f);
    cexpr(cp, n->arg[i], 0, 0);
  }
  fputc(')', f);
}

static void cexpr(CP *cp, int id, int ctxprec, int right)
{
  if (cp->pname[id])
    fputs(cp->pname[id], cp->f);
  else
    cop(cp, id, ctxprec, right);
}

static void cdecls(CP *cp, const int *ids, int n)
{
  for (int i = 0; i < n; i++) {
    fprintf(cp->f, "%s%s: ", i ? ", " : "", cp->pname[ids[i]]);
    printshape(cp->f, cp->a, &cp->c->node[ids[i]].shape);
  }
}

void print_cell(FILE *f, const Cell *c)
{
  Arena *a = arena_new();
  CP cp = {f, c, a, NULL, NULL, NULL, NULL};
  int nn = c->nnode;
  cp.uses = aalloc(a, (size_t)(nn + 1) * sizeof *cp.uses);
  cp.pname = aalloc(a, (size_t)(nn + 1) * sizeof *cp.pname);
  cp.run = aalloc(a, (size_t)(nn + 1) * sizeof *cp.run);
  cp.inrunsrc = aalloc(a, (size_t)(nn + 1) * sizeof *cp.inrunsrc);
  int *onlyuse = aalloc(a, (size_t)(nn + 1) * sizeof *onlyuse); /* 1: by an operand */
  int *height = aalloc(a, (size_t)(nn + 1) * sizeof *height);
  const char **taken = aalloc(a, (size_t)(nn + 1) * sizeof *taken);

  for (int i = 0; i < nn; i++) {
    taken[i] = c->node[i].name;
    for (int j = 0; j < c->node[i].narg; j++) {
      int u = c->node[i].arg[j];
      if (u < 0 || u >= i)
        die("print: node %d of cell '%s' reads node %d", i, c->name, u);
      cp.uses[u]++;
      onlyuse[u] = 1;
    }
  }
  for (int s = 0; s < c->nstate; s++)
    if (c->next[s] >= 0)
      cp.uses[c->next[s]]++;
  for (int i = 0; i < c->nout; i++)
    cp.uses[c->out[i]]++;
  for (int p = 0; p < c->nparam; p++)
    if (c->grad && c->grad[p] >= 0)
      cp.uses[c->grad[p]]++;

  /* runs of named split parts 0..n-1 of one source: a, b = split(v, 2) */
  for (int i = 0; i < nn; i++) {
    const Node *n = &c->node[i];
    if (n->op != OP_SPLIT || n->k != 0 || !n->name || n->narg != 1 || n->n < 1 || i + n->n > nn)
      continue;
    int ok = 1;
    for (int k = 0; k < n->n && ok; k++) {
      const Node *m = &c->node[i + k];
      ok = m->op == OP_SPLIT && m->name && m->narg == 1 && m->arg[0] == n->arg[0] &&
           m->k == k && m->n == n->n;
    }
    if (!ok)
      continue;
    cp.run[i] = n->n;
    for (int k = 1; k < n->n; k++)
      cp.run[i + k] = -1;
    int src = n->arg[0];
    if (!c->node[src].name && !isleaf(c->node[src].op) && cp.uses[src] == n->n)
      cp.inrunsrc[src] = 1;
    i += n->n - 1;
  }

  /* printed names: the node's own, X' for an anonymous update, or fresh */
  for (int i = 0; i < nn; i++) {
    const Node *n = &c->node[i];
    if (n->name)
      cp.pname[i] = n->name;
    else if (isleaf(n->op) || (cp.uses[i] != 1 && !cp.inrunsrc[i]))
      cp.pname[i] = freshname(a, taken, nn, i);
  }
  for (int s = 0; s < c->nstate; s++) {
    int x = c->next[s];
    if (x < 0 || cp.pname[x] || onlyuse[x])
      continue;
    const char *pn = aprintf(a, "%s'", cp.pname[c->state[s]]);
    for (int i = 0; i < nn && pn; i++)
      if (taken[i] && strcmp(taken[i], pn) == 0)
        pn = NULL;
    cp.pname[x] = pn ? pn : freshname(a, taken, nn, x);
  }
  /* Deep inline expressions are cut into named pieces the parser accepts:
   * height[i] is the height of node i written inline (a name counts 1, as
   * in the parser); an operand that would make it too deep gets a name. */
  for (int i = 0; i < nn; i++) {
    const Node *n = &c->node[i];
    int h = 1;
    for (int j = 0; j < n->narg; j++) {
      int x = n->arg[j];
      if (!cp.pname[x] && height[x] + 1 > EXPR_MAXDEPTH)
        cp.pname[x] = freshname(a, taken, nn, x);
      int hx = cp.pname[x] ? 1 : height[x];
      if (hx + 1 > h)
        h = hx + 1;
    }
    height[i] = h;
  }

  fprintf(f, "cell %s(", c->name);
  cdecls(&cp, c->input, c->ninput);
  fputc(')', f);
  if (c->nstate) {
    fputs(" state(", f);
    cdecls(&cp, c->state, c->nstate);
    fputc(')', f);
  }
  fputs(" {\n", f);
  if (c->nparam) {
    fputs("  param ", f);
    cdecls(&cp, c->param, c->nparam);
    fputc('\n', f);
  }
  for (int i = 0; i < nn; i++) {
    const Node *n = &c->node[i];
    if (isleaf(n->op) || !cp.pname[i] || cp.run[i] < 0)
      continue;
    if (cp.run[i] > 0) {
      fputs("  ", f);
      for (int k = 0; k < cp.run[i]; k++)
        fprintf(f, "%s%s", k ? ", " : "", cp.pname[i + k]);
      fputs(" = split(", f);
      cexpr(&cp, n->arg[0], 0, 0);
      fprintf(f, ", %d)\n", n->n);
      continue;
    }
    fprintf(f, "  %s = ", cp.pname[i]);
    cop(&cp, i, 0, 0);
    fputc('\n', f);
  }
  for (int s = 0; s < c->nstate; s++) {
    int x = c->next[s];
    if (x < 0)
      continue;
    const char *pn = aprintf(a, "%s'", cp.pname[c->state[s]]);
    if (!isleaf(c->node[x].op) && strcmp(cp.pname[x], pn) == 0)
      continue; /* printed above as X' = ... */
    fprintf(f, "  %s = %s\n", pn, cp.pname[x]);
  }
  for (int i = 0; i < c->nout; i++) {
    fputs("  out ", f);
    cexpr(&cp, c->out[i], 0, 0);
    fputc('\n', f);
  }
  for (int p = 0; p < c->nparam; p++)
    if (c->grad && c->grad[p] >= 0) {
      fprintf(f, "  grad %s = ", cp.pname[c->param[p]]);
      cexpr(&cp, c->grad[p], 0, 0);
      fputc('\n', f);
    }
  fputs("}\n", f);
  arena_free(a);
}

/* ---- models ---- */

typedef struct MP {
  FILE *f;
  const Model *md;
  Arena *a;
  const char **pname;
} MP;

static void mexpr(MP *mp, int id);

static void mnode(MP *mp, int id)
{
  FILE *f = mp->f;
  const MNode *n = &mp->md->node[id];
  switch (n->kind) {
  case M_EMBEDDING:
    fputs("embedding(", f);
    if (n->narg > 0)
      mexpr(mp, n->arg[0]);
    fprintf(f, ", %s, %s)", dim_str(mp->a, n->size[0]), dim_str(mp->a, n->size[1]));
    return;
  case M_ONEHOT:
    fputs("onehot(", f);
    if (n->narg > 0)
      mexpr(mp, n->arg[0]);
    fprintf(f, ", %s)", dim_str(mp->a, n->size[0]));
    return;
  case M_CELL: {
    fprintf(f, "%s(", n->cellname);
    const char *sep = "";
    int nin = n->narg - (n->hasmask && n->narg > 0 ? 1 : 0);
    for (int i = 0; i < nin; i++, sep = ", ") {
      fputs(sep, f);
      mexpr(mp, n->arg[i]);
    }
    for (int i = 0; i < n->nbind; i++, sep = ", ")
      fprintf(f, "%s%s = %s", sep, n->bindname[i], dim_str(mp->a, n->bindval[i]));
    if (n->backward) {
      fprintf(f, "%sbackward", sep);
      sep = ", ";
    }
    if (n->initfrom >= 0) {
      fprintf(f, "%sinit = ", sep);
      mexpr(mp, n->initfrom);
      sep = ", ";
    } else if (n->ninit > 0) {
      fprintf(f, "%sinit = (", sep);
      for (int i = 0; i < n->ninit; i++) {
        if (i)
          fputs(", ", f);
        mexpr(mp, n->init[i]);
      }
      fputc(')', f);
      sep = ", ";
    }
    if (nin < n->narg) {
      fprintf(f, "%smask = ", sep);
      mexpr(mp, n->arg[nin]);
    }
    fputc(')', f);
    return;
  }
  case M_SOFTMAX:
    fputs("softmax(", f);
    if (n->narg > 0)
      mexpr(mp, n->arg[0]);
    fprintf(f, ", %s", dim_str(mp->a, n->size[0]));
    if (n->target >= 0) {
      fputs(", target = ", f);
      mexpr(mp, n->target);
    }
    if (n->hasignore)
      fprintf(f, ", ignore = %ld", n->ignore);
    fputc(')', f);
    return;
  case M_FINAL:
    fputs("final(", f);
    if (n->narg > 0)
      mexpr(mp, n->arg[0]);
    fprintf(f, ", %s)", n->statename ? n->statename : "?");
    return;
  case M_CONCAT:
  case M_LAST:
  case M_LOGITS:
  case M_PROBS:
  case M_SUM:
    fprintf(f, "%s(", mkind_name[n->kind]);
    for (int i = 0; i < n->narg; i++) {
      if (i)
        fputs(", ", f);
      mexpr(mp, n->arg[i]);
    }
    fputc(')', f);
    return;
  default:
    die("print: model node kind %d", n->kind);
  }
}

static void mexpr(MP *mp, int id)
{
  if (mp->pname[id])
    fputs(mp->pname[id], mp->f);
  else
    mnode(mp, id);
}

static const char *dtname(int dt)
{
  switch (dt) {
  case DT_F32:
    return "f32";
  case DT_F64:
    return "f64";
  case DT_I32:
    return "i32";
  default:
    return "i64";
  }
}

void print_model(FILE *f, const Model *md)
{
  Arena *a = arena_new();
  int nn = md->nnode;
  MP mp = {f, md, a, aalloc(a, (size_t)(nn + 1) * sizeof(const char *))};
  int *uses = aalloc(a, (size_t)(nn + 1) * sizeof *uses);
  const char **taken = aalloc(a, (size_t)(nn + 1) * sizeof *taken);
  for (int i = 0; i < nn; i++) {
    const MNode *n = &md->node[i];
    taken[i] = n->name;
    for (int j = 0; j < n->narg; j++)
      uses[n->arg[j]]++;
    for (int j = 0; j < n->ninit; j++)
      uses[n->init[j]]++;
    if (n->initfrom >= 0)
      uses[n->initfrom]++;
    if (n->target >= 0)
      uses[n->target]++;
  }
  int *isout = aalloc(a, (size_t)(nn + 1) * sizeof *isout);
  for (int i = 0; i < md->noutput; i++) {
    uses[md->output[i]]++;
    isout[md->output[i]] = 1;
  }
  for (int i = 0; i < nn; i++) {
    const MNode *n = &md->node[i];
    if (n->name)
      mp.pname[i] = n->name;
    else if (n->kind == M_INPUT || n->kind == M_EMBEDDING || n->kind == M_CELL ||
             n->kind == M_SOFTMAX || uses[i] != 1 || isout[i])
      mp.pname[i] = freshname(a, taken, nn, i);
  }

  fprintf(f, "model %s(", md->name);
  for (int i = 0; i < md->ndim; i++) {
    fprintf(f, "%s%s", i ? ", " : "", md->dim[i].name);
    if (md->dim[i].hasdefault)
      fprintf(f, " = %ld", md->dim[i].def);
  }
  fputs(") {\n", f);
  for (int i = 0; i < nn; i++) {
    const MNode *n = &md->node[i];
    if (!mp.pname[i])
      continue;
    if (n->kind == M_INPUT) {
      fprintf(f, "  input %s: %s", mp.pname[i], dtname(n->dtype));
      printshape(f, a, &n->shape);
      fputc('\n', f);
      continue;
    }
    fprintf(f, "  %s = ", mp.pname[i]);
    mnode(&mp, i);
    fputc('\n', f);
  }
  if (md->noutput) {
    fputs("  output ", f);
    for (int i = 0; i < md->noutput; i++)
      fprintf(f, "%s%s", i ? ", " : "", mp.pname[md->output[i]]);
    fputc('\n', f);
  }
  fputs("}\n", f);
  arena_free(a);
}

void print_module(FILE *f, const Module *m, int withprelude)
{
  int first = 1;
  for (int i = 0; i < m->ncell; i++) {
    if (m->cell[i]->builtin && !withprelude)
      continue;
    /* a masked variant is implied by the model text (`mask = m`), and
     * verify derives it again from that text: printed, it would not parse
     * back (its name is taken). Its backward cell and schedule are shown. */
    if (m->cell[i]->unmasked)
      continue;
    if (!first)
      fputc('\n', f);
    first = 0;
    print_cell(f, m->cell[i]);
  }
  for (int i = 0; i < m->nmodel; i++) {
    if (!first)
      fputc('\n', f);
    first = 0;
    print_model(f, m->model[i]);
  }
}
