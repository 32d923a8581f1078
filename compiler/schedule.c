/* schedule.c — where each node of a cell runs relative to the time loop, found
 * by dependency analysis on the IR, so a user's cell is hoisted exactly like the
 * built-in lstm.
 *
 * require: verified cells; for backward cells, the Grad that autodiff made.
 * produce: c->sched for every cell a model applies and, for models with
 * md->grad, its backward cell. breaks nothing: an analysis, the IR is unchanged.
 *
 * A cell runs over a sequence of T steps of B rows each. Its inputs (x in
 * forward; the saved forward values and d_out in backward) are known for all
 * T*B rows before the loop; its states (h in forward; the carried adjoints d_h
 * in backward) are the recurrence. With
 *   S(n)  n is a state or reads one, transitively;
 *   N(n)  a state update (next) reads n, transitively (the updates included);
 *   live  an update, an out, a grad or a value saved for backward reads n;
 * a live node is
 *   PRE   when !S(n): before the loop, over all T*B rows at once;
 *   LOOP  when S(n) and N(n): per step, on the B rows of the step;
 *   POST  when S(n) and !N(n): after the loop, over all T*B rows at once
 *         (the LOOP values it reads are stored per step: store).
 * A matrix per row ([m, n] for each row, e.g. outer(s, c) in backward) is never
 * kept for all T*B rows: in PRE it moves to the first phase that reads it, and a
 * POST node reading one from LOOP moves into LOOP when its operands allow.
 * A matvec or matvec_t with a time- and row-invariant matrix (a parameter) and a
 * per-row vector is a GEMM: over T*B rows in PRE and POST, over B rows per step
 * in LOOP. A grad is summed over time and batch after the loop: an outer(a, b)
 * that only feeds grads (through + and -) is one GEMM [m, T*B] x [T*B, n]; any
 * other grad is a sum of its T*B rows (a column sum for a bias).
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

static int isleaf(int op)
{
  return op == OP_INPUT || op == OP_STATE || op == OP_PARAM || op == OP_CONST || op == OP_ZEROS;
}

static int isgrad(const Cell *c, int id)
{
  if (!c->grad)
    return 0;
  for (int p = 0; p < c->nparam; p++)
    if (c->grad[p] == id)
      return 1;
  return 0;
}

/* Mark in mark[] the nodes of the + / - tree of grad g, down to its other
 * nodes (the leaves). 1 when every leaf is an outer of two per-row vectors that
 * feeds only grads (R). */
static int sumtree(const Cell *c, const int *R, const int *V, int g, int *mark)
{
  const Node *n = &c->node[g];
  mark[g] = 1;
  if ((n->op == OP_ADD || n->op == OP_SUB) && n->shape.rank == 2 && R[g]) {
    int a = sumtree(c, R, V, n->arg[0], mark);
    int b = sumtree(c, R, V, n->arg[1], mark);
    return a && b;
  }
  return n->op == OP_OUTER && R[g] && V[n->arg[0]] && V[n->arg[1]];
}

/* Node i is a matrix that differs per row, computed (not only summed). */
static int permatrix(const Cell *c, const int *V, const CellSched *s, int i)
{
  return c->node[i].shape.rank == 2 && V[i] && !isleaf(c->node[i].op) && !s->sumonly[i];
}

CellSched *schedule_cell(Module *m, Cell *c)
{
  if (c->sched)
    return c->sched;
  if (c->verified != 1)
    die("schedule: cell '%s' is not verified", c->name);
  Arena *ar = m->arena;
  int nn = c->nnode;
  size_t sz = ((size_t)nn + 1) * sizeof(int);
  CellSched *s = aalloc(ar, sizeof *s);
  s->c = c;
  s->phase = aalloc(ar, sz);
  s->gemm = aalloc(ar, sz);
  s->store = aalloc(ar, sz);
  s->sumonly = aalloc(ar, sz);
  s->gsum = aalloc(ar, ((size_t)c->nparam + 1) * sizeof(int));
  int *S = aalloc(ar, sz), *V = aalloc(ar, sz), *N = aalloc(ar, sz), *L = aalloc(ar, sz);
  int *R = aalloc(ar, sz), *nuser = aalloc(ar, sz), *nonlin = aalloc(ar, sz);

  /* forward: S (reads a state), V (varies per row: reads an input or a state) */
  for (int i = 0; i < nn; i++) {
    const Node *n = &c->node[i];
    S[i] = n->op == OP_STATE;
    V[i] = n->op == OP_STATE || n->op == OP_INPUT;
    for (int k = 0; k < n->narg; k++) {
      S[i] |= S[n->arg[k]];
      V[i] |= V[n->arg[k]];
      nuser[n->arg[k]]++;
    }
  }
  /* backward: N (an update reads it) and live (anything the step produces does) */
  for (int k = 0; k < c->nstate; k++)
    if (c->next[k] >= 0)
      N[c->next[k]] = L[c->next[k]] = 1;
  for (int k = 0; k < c->nout; k++)
    L[c->out[k]] = 1;
  for (int p = 0; c->grad && p < c->nparam; p++)
    if (c->grad[p] >= 0)
      L[c->grad[p]] = 1;
  if (c->derived)
    for (int k = 0; k < c->derived->nsaved; k++)
      L[c->derived->saved[k]] = 1;
  for (int i = nn - 1; i >= 0; i--) {
    const Node *n = &c->node[i];
    for (int k = 0; k < n->narg; k++) {
      N[n->arg[k]] |= N[i];
      L[n->arg[k]] |= L[i];
    }
  }
  /* R: only summed into grads, through + and - of matrices */
  for (int i = nn - 1; i >= 0; i--) {
    R[i] = (isgrad(c, i) || nuser[i] > 0) && !nonlin[i];
    const Node *n = &c->node[i];
    int lin = (n->op == OP_ADD || n->op == OP_SUB) && n->shape.rank == 2 && R[i];
    for (int k = 0; k < n->narg; k++)
      if (!lin)
        nonlin[n->arg[k]] = 1;
  }

  for (int i = 0; i < nn; i++) {
    const Node *n = &c->node[i];
    if (isleaf(n->op))
      s->phase[i] = n->op == OP_STATE ? SCHED_LOOP : SCHED_PRE;
    else if (!L[i])
      s->phase[i] = SCHED_DEAD;
    else
      s->phase[i] = !S[i] ? SCHED_PRE : N[i] ? SCHED_LOOP : SCHED_POST;
  }
  /* grads: a + / - tree of outers is summed by GEMMs; its nodes are not
   * computed per row unless a grad summed by rows reads them too */
  int *ingemm = aalloc(ar, sz), *inrows = aalloc(ar, sz), *mark = aalloc(ar, sz);
  for (int p = 0; c->grad && p < c->nparam; p++) {
    int g = c->grad[p];
    if (g < 0) {
      s->gsum[p] = GSUM_NONE;
      continue;
    }
    memset(mark, 0, sz);
    s->gsum[p] = sumtree(c, R, V, g, mark) ? GSUM_GEMM : GSUM_ROWS;
    for (int i = 0; i < nn; i++)
      if (mark[i])
        (s->gsum[p] == GSUM_GEMM ? ingemm : inrows)[i] = 1;
  }
  for (int i = 0; i < nn; i++)
    s->sumonly[i] = ingemm[i] && !inrows[i];
  /* Elementwise work that only the loop reads runs in the loop: hoisted, its
   * result would be written for all T*B rows and read back at each step —
   * the same arithmetic, more memory and traffic. Matvecs stay hoisted (they
   * are the GEMMs); chains move together (readers first). */
  for (int i = nn - 1; i >= 0; i--) {
    const Node *n = &c->node[i];
    int sh = opinfo[n->op].shape_rule;
    if (s->phase[i] != SCHED_PRE || isleaf(n->op) || !V[i] || s->sumonly[i] || n->shape.rank == 2 ||
        !(sh == SH_EW || sh == SH_SPLIT || sh == SH_SLICE || sh == SH_CONCAT))
      continue;
    int readers = 0, inloop = 1;
    for (int j = i + 1; j < nn; j++)
      for (int k = 0; k < c->node[j].narg; k++)
        if (c->node[j].arg[k] == i && s->phase[j] != SCHED_DEAD) {
          readers++;
          inloop &= s->phase[j] == SCHED_LOOP && !s->sumonly[j];
        }
    int live_other = 0; /* an out, a grad or a saved value is read after the loop */
    for (int k = 0; k < c->nout; k++)
      live_other |= c->out[k] == i;
    for (int p = 0; c->grad && p < c->nparam; p++)
      live_other |= c->grad[p] == i;
    if (c->derived)
      for (int k = 0; k < c->derived->nsaved; k++)
        live_other |= c->derived->saved[k] == i;
    if (readers && inloop && !live_other)
      s->phase[i] = SCHED_LOOP;
  }
  /* A matrix per row ([m, n] for each of the T*B rows) is not materialized for
   * the whole sequence: one in PRE runs in the first phase that reads it, and a
   * POST node that reads one from LOOP runs in LOOP when it can (its operands
   * are all PRE or LOOP), so that only its result is stored. */
  for (int i = nn - 1; i >= 0; i--) {
    if (!permatrix(c, V, s, i) || s->phase[i] != SCHED_PRE)
      continue;
    int first = SCHED_DEAD;
    for (int j = i + 1; j < nn; j++)
      for (int k = 0; k < c->node[j].narg; k++)
        if (c->node[j].arg[k] == i && s->phase[j] != SCHED_DEAD &&
            (first == SCHED_DEAD || s->phase[j] < first))
          first = s->phase[j];
    if (first != SCHED_DEAD)
      s->phase[i] = first;
  }
  for (int i = 0; i < nn; i++) {
    const Node *n = &c->node[i];
    if (s->phase[i] != SCHED_POST || s->sumonly[i])
      continue;
    int reads = 0, early = 1;
    for (int k = 0; k < n->narg; k++) {
      reads |= permatrix(c, V, s, n->arg[k]) && s->phase[n->arg[k]] == SCHED_LOOP;
      early &= s->phase[n->arg[k]] <= SCHED_LOOP;
    }
    if (reads && early)
      s->phase[i] = SCHED_LOOP;
  }
  for (int i = 0; i < nn; i++) {
    const Node *n = &c->node[i];
    if (s->phase[i] != SCHED_DEAD && (n->op == OP_MATVEC || n->op == OP_MATVECT) &&
        !V[n->arg[0]] && V[n->arg[1]])
      s->gemm[i] = s->phase[i] == SCHED_LOOP ? GEMM_B : GEMM_TB;
    if (ingemm[i] && n->op == OP_OUTER)
      s->gemm[i] = GEMM_TB;
  }
  /* store: a LOOP value that POST reads, or a LOOP grad summed after the loop */
  for (int i = 0; i < nn; i++) {
    const Node *n = &c->node[i];
    if (s->phase[i] != SCHED_POST)
      continue;
    for (int k = 0; k < n->narg; k++)
      if (s->phase[n->arg[k]] == SCHED_LOOP)
        s->store[n->arg[k]] = 1;
  }
  for (int p = 0; c->grad && p < c->nparam; p++)
    if (s->gsum[p] == GSUM_ROWS && s->phase[c->grad[p]] == SCHED_LOOP)
      s->store[c->grad[p]] = 1;
  c->sched = s;
  return s;
}

int schedule(Module *m)
{
  for (int k = 0; k < m->nmodel; k++) {
    Model *md = m->model[k];
    for (int i = 0; i < md->nnode; i++) {
      if (md->node[i].kind != M_CELL)
        continue;
      schedule_cell(m, md->node[i].cell);
      if (md->grad && md->grad->cellgrad[i])
        schedule_cell(m, md->grad->cellgrad[i]->bwd);
    }
  }
  return RNNC_OK;
}

/* ---- print_cellsched ------------------------------------------------------ */

typedef struct Buf {
  char s[4096];
  size_t n;
} Buf;

static void put(Buf *b, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  if (b->n < sizeof b->s)
    b->n += (size_t)vsnprintf(b->s + b->n, sizeof b->s - b->n, fmt, ap);
  va_end(ap);
  if (b->n >= sizeof b->s)
    b->n = sizeof b->s - 1;
}

static void num(Buf *b, double v)
{
  char t[64];
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(t, sizeof t, "%.*g", prec, v);
    if (strtod(t, NULL) == v || v != v)
      break;
  }
  put(b, "%s", t);
}

/* Node id as text: its name (depth > 0 or top 0), or its expression with
 * named operands by name; an anonymous operand deeper than 6 is written "...". */
static void text(Buf *b, Arena *a, const Cell *c, int id, int depth, int ctxprec, int right)
{
  const Node *n = &c->node[id];
  if (n->name && (depth > 0 || isleaf(n->op))) {
    put(b, "%s", n->name);
    return;
  }
  if (depth >= 6 && !isleaf(n->op)) {
    put(b, "...");
    return;
  }
  int prec = opinfo[n->op].prec;
  switch (n->op) {
  case OP_CONST:
    num(b, n->cval);
    return;
  case OP_ZEROS:
    put(b, "zeros([%s])", dim_str(a, n->shape.d[0]));
    return;
  case OP_NEG:
    put(b, "-");
    text(b, a, c, n->arg[0], depth + 1, 4, 0);
    return;
  case OP_SPLIT:
    put(b, "split(");
    text(b, a, c, n->arg[0], depth + 1, 0, 0);
    put(b, ", %d)[%d]", n->n, n->k);
    return;
  default:
    break;
  }
  if (prec > 0) {
    int paren = prec < ctxprec || (prec == ctxprec && right);
    put(b, "%s", paren ? "(" : "");
    text(b, a, c, n->arg[0], depth + 1, prec, 0);
    put(b, " %s ", opinfo[n->op].spelling);
    text(b, a, c, n->arg[1], depth + 1, prec, 1);
    put(b, "%s", paren ? ")" : "");
    return;
  }
  put(b, "%s(", opinfo[n->op].spelling);
  for (int k = 0; k < n->narg; k++) {
    put(b, "%s", k ? ", " : "");
    text(b, a, c, n->arg[k], depth + 1, 0, 0);
  }
  put(b, ")");
}

typedef struct P {
  FILE *f;
  Arena *a;
  const CellSched *s;
  const Cell *c;
} P;

/* Its name, or its expression when anonymous. */
static const char *ntext(P *p, int id)
{
  Buf b = {.n = 0};
  text(&b, p->a, p->c, id, 1, 0, 0);
  return astrdup(p->a, b.s);
}

/* "name = expr" when named, else "expr". */
static const char *deftext(P *p, int id)
{
  Buf b = {.n = 0};
  if (p->c->node[id].name)
    put(&b, "%s = ", p->c->node[id].name);
  text(&b, p->a, p->c, id, 0, 0, 0);
  return astrdup(p->a, b.s);
}

static const char *dstr(P *p, Dim d) { return dim_str(p->a, d); }

/* "[T*B, I] x [I, 4*H]": the GEMM of matvec / matvec_t / outer node id. */
static const char *gemmtext(P *p, int id)
{
  const Node *n = &p->c->node[id];
  const char *rows = p->s->gemm[id] == GEMM_B ? "B" : "T*B";
  const Shape *w = &p->c->node[n->arg[0]].shape;
  if (n->op == OP_MATVEC) /* [rows, n] x W^T [n, m] */
    return aprintf(p->a, "[%s, %s] x [%s, %s]", rows, dstr(p, w->d[1]), dstr(p, w->d[1]),
                   dstr(p, w->d[0]));
  if (n->op == OP_MATVECT) /* [rows, m] x W [m, n] */
    return aprintf(p->a, "[%s, %s] x [%s, %s]", rows, dstr(p, w->d[0]), dstr(p, w->d[0]),
                   dstr(p, w->d[1]));
  return aprintf(p->a, "[%s, %s] x [%s, %s]", dstr(p, n->shape.d[0]), rows, rows,
                 dstr(p, n->shape.d[1]));
}

/* A comma-separated list after a lead, wrapped at 90 columns. */
typedef struct List {
  P *p;
  const char *ind; /* after the "#" */
  const char *lead;
  int col, n;
} List;

static void item(List *l, const char *s)
{
  FILE *f = l->p->f;
  int len = (int)strlen(s);
  if (l->n == 0) {
    fprintf(f, "#%s%s%s", l->ind, l->lead, s);
    l->col = 1 + (int)strlen(l->ind) + (int)strlen(l->lead) + len;
  } else if (l->col + 2 + len > 90) {
    fprintf(f, ",\n#%s  %s", l->ind, s);
    l->col = 3 + (int)strlen(l->ind) + len;
  } else {
    fprintf(f, ", %s", s);
    l->col += 2 + len;
  }
  l->n++;
}

static void endlist(List *l)
{
  if (l->n)
    fprintf(l->p->f, "\n");
}

/* A GEMM line: a matvec or matvec_t done as a GEMM (outers summed into grads
 * are written with their grad). */
static int gemmline(const P *p, int i) { return p->s->gemm[i] && p->c->node[i].op != OP_OUTER; }

/* The non-leaf nodes of one phase: GEMMs a line each, the rest as one list. */
static int phase(P *p, int ph, const char *restlead)
{
  const Cell *c = p->c;
  int any = 0;
  for (int i = 0; i < c->nnode; i++)
    if (p->s->phase[i] == ph && gemmline(p, i)) {
      fprintf(p->f, "#     %s: GEMM %s\n", deftext(p, i), gemmtext(p, i));
      any = 1;
    }
  List l = {p, "     ", restlead, 0, 0};
  for (int i = 0; i < c->nnode; i++)
    if (p->s->phase[i] == ph && !isleaf(c->node[i].op) && !gemmline(p, i) && !p->s->sumonly[i])
      item(&l, ntext(p, i));
  endlist(&l);
  return any || l.n;
}

/* The GEMMs of grad tree g, joined by + and -. */
static void gemmterms(P *p, int g, const char *sign)
{
  const Node *n = &p->c->node[g];
  if (n->op == OP_OUTER) {
    fprintf(p->f, "%s%s: GEMM %s", sign, deftext(p, g), gemmtext(p, g));
    return;
  }
  gemmterms(p, n->arg[0], sign);
  gemmterms(p, n->arg[1], n->op == OP_SUB ? "; - " : "; + ");
}

void print_cellsched(FILE *f, const CellSched *s)
{
  Arena *a = arena_new();
  const Cell *c = s->c;
  P p = {f, a, s, c};
  fprintf(f, "\n# ---- schedule of cell %s ----\n", c->name);
  fprintf(f, "#   before the loop, over all T*B rows at once:\n");
  if (!phase(&p, SCHED_PRE, "elementwise: "))
    fprintf(f, "#     nothing\n");

  fprintf(f, "#   per step t, over the B rows of the step:\n");
  if (!phase(&p, SCHED_LOOP, "fused: "))
    fprintf(f, "#     nothing\n");
  List l = {&p, "     ", "carries: ", 0, 0};
  for (int k = 0; k < c->nstate; k++)
    if (c->next[k] >= 0)
      item(&l, aprintf(a, "%s -> %s", ntext(&p, c->next[k]), c->node[c->state[k]].name));
  endlist(&l);
  l = (List){&p, "     ", "stores per step for after the loop: ", 0, 0};
  for (int i = 0; i < c->nnode; i++)
    if (s->store[i])
      item(&l, ntext(&p, i));
  endlist(&l);

  fprintf(f, "#   after the loop, over all T*B rows at once:\n");
  int any = phase(&p, SCHED_POST, "elementwise: ");
  for (int k = 0; c->grad && k < c->nparam; k++) {
    int g = c->grad[k];
    if (g < 0)
      continue;
    const char *pn = c->node[c->param[k]].name;
    if (s->gsum[k] == GSUM_ROWS) {
      fprintf(f, "#     grad %s = sum over T*B rows of %s\n", pn, ntext(&p, g));
    } else {
      fprintf(f, "#     grad %s = ", pn);
      gemmterms(&p, g, "");
      fprintf(f, "\n");
    }
    any = 1;
  }
  if (!any)
    fprintf(f, "#     nothing\n");

  l = (List){&p, "   ", "not computed (nothing reads them): ", 0, 0};
  for (int i = 0; i < c->nnode; i++)
    if (s->phase[i] == SCHED_DEAD)
      item(&l, ntext(&p, i));
  endlist(&l);
  l = (List){&p, "   ", "outs: ", 0, 0};
  for (int k = 0; k < c->nout; k++) {
    int o = c->out[k];
    const char *when = s->phase[o] == SCHED_LOOP ? "per step" : s->phase[o] == SCHED_PRE
                                                                    ? "before the loop"
                                                                    : "after the loop";
    item(&l, aprintf(a, "%s (%s)", ntext(&p, o), when));
  }
  endlist(&l);
  if (c->derived) {
    const Grad *g = c->derived;
    l = (List){&p, "   ", aprintf(a, "saves per step for %s: ", g->bwd->name), 0, 0};
    for (int k = 0; k < g->nsaved; k++)
      item(&l, ntext(&p, g->saved[k]));
    if (g->nsaved == 0)
      item(&l, "nothing");
    endlist(&l);
  }
  arena_free(a);
}
