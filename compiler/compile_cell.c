/* compile_cell.c — the kernels of a cell node: its forward cell over the
 * sequence, and the backward cell that autodiff derived, through time.
 *
 * A cell's nodes run where the schedule (schedule.c) puts them: row-invariant
 * nodes (reading neither input nor state) once, in a kernel of one row; PRE
 * over all T*B rows; LOOP per step over the B rows of the step, inside the
 * time loop; POST over all T*B rows. Each phase is one fused kernel
 * (phasegen.c) that runs its nodes over blocks of rows. A node gets a home in
 * the workspace, [T*B, numel] in rows form, when another phase reads it, when
 * it is an output, saved for backward, or a gradient summed after the loop;
 * a state update lives in its state's sequence; a split or slice of a value
 * with a home is a view of it; anything else is a temporary of its kernel.
 * In backward, the adjoints of the cell's inputs are added into the operands'
 * adjoints by the kernel that computes them, parameter gradients are GEMMs
 * over all T*B rows (sums of outers) or column sums, after the loop. */
#include <string.h>

#include "compile.h"

typedef struct CC {
  Comp *C;
  const Cell *c;
  const CellSched *s;
  int node;          /* the model node */
  int64_t T, B, TB;
  long *numel, *start;
  char *V;           /* reads an input or a state */
  Addr *sa;          /* rows form; slot < 0: none (a temporary) */
  Addr *acc;         /* backward: outs added into operands' adjoints */
  Addr *pack;
  char *gemm;
  char *colgemm;     /* a GEMM split by columns in a kernel of its own, before
                        its phase's kernel (few rows, or a big weight) */
  char *tailgemm;    /* ... after its phase's kernel: a step's GEMM with a big
                        weight whose vector the step computes and whose value
                        no other node of the step reads (backward's d_h') */
  int *tailsum;      /* a tail GEMM's only reader when an add that nothing in
                        the step reads (a masked backward's d_h' = d_h·pad +
                        W_hhᵀ·d_gates), computed with it: the GEMM writes the
                        add's home, then adds the other operand; else -1 */
  char *lateacc;     /* col_gemms: add this GEMM's home into its acc after it */
  char *gemv;        /* ... with so few rows that the weight is read unpacked */
  char *bigemm;      /* a GEMM over all T*B rows (PRE, POST) in a kernel of its
                        own: blocked for the caches over every row, not
                        called per block of the phase's rows */
  char *steptmp;     /* its home holds one step: [B, numel], the same at every t */
  Addr *stnew;       /* per state: where the step's update goes (rows form) */
  char *skip;        /* backward: an input's adjoint that goes nowhere (its
                        operand carries none, e.g. a onehot) and nothing else
                        reads: not computed */
  const Grad *gr;    /* backward: the cell's Grad; forward: NULL */
  Addr *sum, *sumids; /* backward: a node's rows summed by embedding id
                        (scatter_rows), and the ids; slot < 0: not yet */
} CC;

static int isleaf(int op)
{
  return op == OP_INPUT || op == OP_STATE || op == OP_PARAM || op == OP_CONST || op == OP_ZEROS;
}

static int cc_begin(Comp *C, CC *cc, int node, const Cell *c)
{
  const MNode *n = &C->md->node[node];
  MV *v = &C->v[node];
  *cc = (CC){.C = C, .c = c, .s = c->sched, .node = node, .T = v->T, .B = v->B, .TB = v->T * v->B};
  if (!cc->s)
    die("compile: cell '%s' has no schedule", c->name);
  if (v->cenv.n == 0)
    for (int k = 0; k < n->cell->ndim; k++) {
      int64_t x;
      int st = comp_mdim(C, n->dimval[k], &x);
      if (st)
        return st;
      env_set(C->a, &v->cenv, n->cell->dim[k], (long)x);
    }
  size_t nn = (size_t)c->nnode + 1;
  cc->numel = aalloc(C->a, nn * sizeof *cc->numel);
  cc->start = aalloc(C->a, nn * sizeof *cc->start);
  cc->V = aalloc(C->a, nn);
  cc->sa = aalloc(C->a, nn * sizeof *cc->sa);
  cc->acc = aalloc(C->a, nn * sizeof *cc->acc);
  cc->pack = aalloc(C->a, nn * sizeof *cc->pack);
  cc->gemm = aalloc(C->a, nn);
  cc->colgemm = aalloc(C->a, nn);
  cc->tailgemm = aalloc(C->a, nn);
  cc->tailsum = aalloc(C->a, nn * sizeof *cc->tailsum);
  cc->lateacc = aalloc(C->a, nn);
  cc->gemv = aalloc(C->a, nn);
  cc->bigemm = aalloc(C->a, nn);
  cc->steptmp = aalloc(C->a, nn);
  cc->skip = aalloc(C->a, nn);
  cc->sum = aalloc(C->a, nn * sizeof *cc->sum);
  cc->sumids = aalloc(C->a, nn * sizeof *cc->sumids);
  cc->stnew = aalloc(C->a, ((size_t)c->nstate + 1) * sizeof *cc->stnew);
  for (int i = 0; i < c->nnode; i++) {
    const Node *nd = &c->node[i];
    cc->numel[i] = node_numel(c, i, &v->cenv);
    if (cc->numel[i] < 1)
      return comp_fail(C, RNNC_ESHAPE, "cell '%s' of node '%s': a value of %ld elements", c->name,
                       n->name ? n->name : "?", cc->numel[i]);
    if (nd->op == OP_SLICE) {
      long st;
      if (!dim_eval(nd->start, &v->cenv, &st, NULL))
        die("compile: slice start unbound");
      cc->start[i] = st;
    } else if (nd->op == OP_SPLIT) {
      cc->start[i] = nd->k * cc->numel[i];
    }
    cc->V[i] = nd->op == OP_INPUT || nd->op == OP_STATE;
    for (int k = 0; k < nd->narg; k++)
      cc->V[i] |= cc->V[nd->arg[k]];
    cc->sa[i] = cc->acc[i] = cc->pack[i] = cc->sum[i] = addr_none();
    cc->tailsum[i] = -1;
  }
  return RNNC_OK;
}

static Addr param_addr(Comp *C, const MNode *n, int p)
{
  for (int k = 0; k < C->cm->nt; k++)
    if (C->cm->t[k].role == CT_PARAM && strcmp(C->cm->t[k].name, n->param[p].full) == 0)
      return (Addr){C->cm->t[k].slot, 0, 0, 0};
  die("compile: no tensor for parameter '%s'", n->param[p].full);
}

static Addr grad_addr(Comp *C, const MNode *n, int p)
{
  const char *g = aprintf(C->a, "grad.%s", n->param[p].full);
  for (int k = 0; k < C->cm->nt; k++)
    if (C->cm->t[k].role == CT_GRAD && strcmp(C->cm->t[k].name, g) == 0)
      return (Addr){C->cm->t[k].slot, 0, 0, 0};
  die("compile: no tensor for '%s'", g);
}

static int computed(const CC *cc, int i)
{
  return !isleaf(cc->c->node[i].op) && cc->s->phase[i] != SCHED_DEAD && !cc->s->sumonly[i] && !cc->skip[i];
}

/* Whether node i is read or written by a column GEMM of its step, which
 * takes every row of the step from its home: the GEMM's product, or the
 * vector of one run after the step's kernel. */
static int by_step(const CC *cc, int i)
{
  if (cc->colgemm[i] || cc->tailgemm[i])
    return 1;
  for (int j = 0; j < cc->c->nnode; j++) {
    int a = cc->tailsum[j];
    if (cc->tailgemm[j] && (cc->c->node[j].arg[1] == i || a == i))
      return 1;
    if (a >= 0 && cc->c->node[a].arg[cc->c->node[a].arg[0] == j] == i) /* the add's other operand */
      return 1;
  }
  return 0;
}

/* Homes for the computed nodes; need[i] says who must have one, keep[i]
 * (NULL: none) whose home outlives the node's kernels (an output, a value
 * saved for backward): the others are in the transient area. */
static void assign(CC *cc, char *need, const char *keep)
{
  const Cell *c = cc->c;
  const CellSched *s = cc->s;
  for (int j = 0; j < c->nnode; j++) {
    if (s->phase[j] == SCHED_DEAD)
      continue;
    const Node *nd = &c->node[j];
    for (int k = 0; k < nd->narg; k++) {
      int a = nd->arg[k];
      if (s->sumonly[j] || (s->phase[a] != s->phase[j] && !isleaf(c->node[a].op)) || (!cc->V[a] && cc->V[j]))
        need[a] = 1;
    }
  }
  for (int i = 0; i < c->nnode; i++)
    if (s->store[i] || (computed(cc, i) && !cc->V[i]))
      need[i] = 1;
  for (int j = 0; j < c->nnode; j++) /* a GEMM of its own: every reader reads its home */
    for (int k = 0; s->phase[j] != SCHED_DEAD && k < c->node[j].narg; k++)
      if (cc->bigemm[c->node[j].arg[k]])
        need[c->node[j].arg[k]] = 1;
  for (int i = 0; i < c->nnode; i++) {
    const Node *nd = &c->node[i];
    if (!computed(cc, i))
      continue;
    int st = -1;
    for (int k = 0; k < c->nstate; k++)
      if (c->next[k] == i && st < 0 && s->phase[i] == SCHED_LOOP)
        st = k;
    if (st >= 0) {
      cc->sa[i] = cc->stnew[st];
    } else if ((nd->op == OP_SPLIT || nd->op == OP_SLICE) && cc->sa[nd->arg[0]].slot >= 0 &&
               !(keep && keep[i] && !keep[nd->arg[0]]) && !(cc->steptmp[nd->arg[0]] && need[i])) {
      /* a view; not of a transient home when it must outlive its kernels
       * (saved for backward): it gets a kept home of its own instead. A
       * view of a one-step home is one too (the same rows at every step),
       * unless it is needed beyond the step (stored per step for after the
       * loop): then it is copied into a home of every step */
      cc->sa[i] = cc->sa[nd->arg[0]];
      cc->sa[i].off += cc->start[i];
      cc->steptmp[i] = cc->steptmp[nd->arg[0]];
    } else if (need[i] && !cc->V[i]) {
      cc->sa[i] = keep && keep[i] ? ws_alloc(cc->C, cc->numel[i], 0) : ws_tmp(cc->C, cc->numel[i], 0);
    } else if (by_step(cc, i) && s->phase[i] == SCHED_LOOP && !need[i]) {
      cc->sa[i] = ws_tmp(cc->C, cc->B * cc->numel[i], cc->numel[i]);
      cc->steptmp[i] = 1;
    } else if (need[i] || cc->colgemm[i]) {
      int64_t n = cc->TB * cc->numel[i];
      cc->sa[i] = keep && keep[i] ? ws_alloc(cc->C, n, cc->numel[i]) : ws_tmp(cc->C, n, cc->numel[i]);
    }
  }
}

/* Rows below which a step's GEMMs are split by columns over the threads (in
 * kernels of their own, a barrier after them) rather than by rows. */
enum { FEWROWS = 16 };
/* Rows below which such a GEMM reads its weight unpacked (mk_gemv). */
enum { GEMVROWS = 4 };
/* Floats of a weight from which a step's GEMM runs by columns whatever the
 * rows (CompileOpts.colweight, 0: this). Within the step's kernel, every
 * block of rows (RB, a few micro-tiles: phasegen.c) streams the whole packed
 * weight; one of 8 MiB or more is not kept by the caches between blocks, so
 * C5's 16 MiB weight was read from memory 3 to 6 times a step. By columns,
 * each thread reads its share once a step (bench/README.md: C5's forward
 * 0.72x the time). Smaller weights stay in the caches and gain nothing. */
enum { BIGWEIGHT = 1 << 21 };

/* Whether a node of the loop phase other than node i reads node i. */
static int read_in_loop(const CC *cc, int i)
{
  const Cell *c = cc->c;
  for (int j = 0; j < c->nnode; j++)
    if (j != i && cc->s->phase[j] == SCHED_LOOP && computed(cc, j))
      for (int k = 0; k < c->node[j].narg; k++)
        if (c->node[j].arg[k] == i)
          return 1;
  return 0;
}

/* The add that is the only reader of node i in the whole cell, when nothing
 * of the step reads it, it is no out, and its other operand varies by row
 * and is no product (a value the step's kernel computes, a state or an
 * input; a product could be a tail GEMM itself, run after that kernel):
 * node i, a GEMM after the step's kernel, can compute it. Else -1. */
static int sole_sum(const CC *cc, int i)
{
  const Cell *c = cc->c;
  int j = -1;
  for (int k = 0; k < c->nnode; k++)
    for (int a = 0; cc->s->phase[k] != SCHED_DEAD && a < c->node[k].narg; a++)
      if (c->node[k].arg[a] == i) {
        if (j >= 0 || c->node[k].op != OP_ADD || c->node[k].arg[0] == c->node[k].arg[1])
          return -1;
        j = k;
      }
  if (j < 0 || !computed(cc, j) || cc->s->phase[j] != SCHED_LOOP || read_in_loop(cc, j) || cc->s->store[i])
    return -1;
  for (int k = 0; k < c->nout; k++)
    if (c->out[k] == i || c->out[k] == j)
      return -1;
  for (int k = 0; k < c->nstate; k++)
    if (c->next[k] == i)
      return -1;
  for (int k = 0; k < c->nparam; k++)
    if (c->grad[k] == i)
      return -1;
  int o = c->node[j].arg[c->node[j].arg[0] == i], op = c->node[o].op;
  return cc->V[o] && op != OP_PARAM && op != OP_MATVEC && op != OP_MATVECT ? j : -1;
}

/* GEMM nodes: a matvec / matvec_t of a parameter by a per-row value. With
 * few rows, those whose vector comes from outside their phase run by
 * columns (generation at B = 1: every thread takes a share of the weights);
 * so do a step's GEMMs with a big weight, before the step's kernel when
 * their vector comes from outside the step, after it when the step computes
 * the vector and nothing else in the step reads the product, or only an add
 * that nothing in the step reads (sole_sum), which it then computes. */
static void mark_gemms(CC *cc, int bwd)
{
  const Cell *c = cc->c;
  int64_t big = cc->C->o->colweight > 0 ? cc->C->o->colweight : BIGWEIGHT;
  for (int i = 0; i < c->nnode; i++) {
    const Node *nd = &c->node[i];
    if (!computed(cc, i) || !cc->s->gemm[i] || (nd->op != OP_MATVEC && nd->op != OP_MATVECT))
      continue;
    int W = nd->arg[0], x = nd->arg[1];
    if (c->node[W].op != OP_PARAM || !cc->V[x])
      continue;
    cc->gemm[i] = 1;
    int ph = cc->s->phase[i];
    int64_t rows = ph == SCHED_LOOP ? cc->B : cc->TB;
    int outside = isleaf(c->node[x].op) || cc->s->phase[x] != ph;
    int isout = 0;
    for (int j = 0; bwd && j < c->nout; j++)
      isout |= c->out[j] == i;
    int bigw = ph == SCHED_LOOP && cc->numel[i] * cc->numel[x] >= big;
    cc->colgemm[i] = (rows < FEWROWS || bigw) && outside && !isout;
    cc->tailgemm[i] = bigw && !outside && !isout && !read_in_loop(cc, i);
    if (bigw && !outside && !isout && !cc->tailgemm[i] && (cc->tailsum[i] = sole_sum(cc, i)) >= 0)
      cc->tailgemm[i] = 1;
    cc->gemv[i] = cc->colgemm[i] && rows < GEMVROWS && nd->op == OP_MATVEC;
    cc->bigemm[i] = !cc->colgemm[i] && ph != SCHED_LOOP && outside;
  }
}

/* Each weight packed once per run (per mode). */
static int packs(CC *cc, const MNode *n)
{
  const Cell *c = cc->c;
  for (int i = 0; i < c->nnode; i++) {
    const Node *nd = &c->node[i];
    if (!cc->gemm[i] || cc->gemv[i])
      continue;
    int W = nd->arg[0], x = nd->arg[1];
    int bt = nd->op == OP_MATVEC;
    for (int j = 0; j < i; j++) /* the same weight, the same way: one pack */
      if (cc->gemm[j] && !cc->gemv[j] && c->node[j].arg[0] == W && c->node[j].op == nd->op) {
        cc->pack[i] = cc->pack[j];
        break;
      }
    if (cc->pack[i].slot >= 0)
      continue;
    int p = -1;
    for (int k = 0; k < c->nparam; k++)
      if (c->param[k] == W)
        p = k;
    /* W [m, n]: matvec C = x·W^T (N = m, K = n, B given as [N, K]);
     * matvec_t(W, x) C = x·W (K = m, N = n) */
    int64_t N = cc->numel[i], K = cc->numel[x], ldb = bt ? K : N;
    int st = k_pack(cc->C, param_addr(cc->C, n, p), N, K, ldb, bt, &cc->pack[i]);
    if (st)
      return st;
  }
  plan_call(cc->C, "barrier", 0, 1, 1);
  return RNNC_OK;
}

static Addr where(const CC *cc, int i, int inloop)
{
  return inloop && !cc->steptmp[i] ? at_step(cc->sa[i], cc->B) : cc->sa[i];
}

/* A step's GEMM by columns (colgemm, tailgemm) of a batch of rows: op(A),
 * the step's rows, is packed once (by rows, MK_PACKA) before the GEMMs,
 * which then run on it (MK_COLSPA) in chunks of a few panels; else each
 * chunk would pack all of it again. Not for a few rows (generation): there
 * the pack is small and the barrier after it would show. */
static int prepacked(const CC *cc, int i, int64_t nrows, int inloop)
{
  return inloop && nrows >= FEWROWS && !cc->gemv[i] && !cc->bigemm[i];
}

/* GEMM node i over nrows rows: A its vector's rows (lda), C its home's (ldc). */
static GemmSpec spec_of(const CC *cc, int i, int64_t nrows, Addr A, Addr Cm)
{
  const Node *nd = &cc->c->node[i];
  int bt = nd->op == OP_MATVEC;
  int64_t N = cc->numel[i], K = cc->numel[nd->arg[1]];
  return (GemmSpec){.M = nrows, .N = N, .K = K, .lda = A.ld, .ldb = bt ? K : N, .ldc = Cm.ld,
                    .flags = (bt ? GEMM_BT : 0) | comp_flags(cc->C)};
}

/* The packs of op(A) that the GEMMs of col_gemms(mask, tail) read, in apk
 * (per node: the pack of that node's rows; one per operand), then a barrier. */
static int pack_as(CC *cc, const char *mask, int64_t nrows, int inloop, int tail, Addr *apk)
{
  Comp *C = cc->C;
  const Cell *c = cc->c;
  int any = 0;
  for (int i = 0; i < c->nnode; i++) {
    if (!mask[i] || !(tail ? cc->tailgemm[i] : cc->colgemm[i]) || !prepacked(cc, i, nrows, inloop))
      continue;
    int x = c->node[i].arg[1];
    if (apk[x].slot >= 0)
      continue;
    Addr A = where(cc, x, inloop);
    GemmSpec gs = spec_of(cc, i, nrows, A, where(cc, i, inloop));
    apk[x] = ws_tmp(C, (int64_t)gemm_apacksize(&gs), 0);
    const char *s = ksym(C, "packa");
    size_t scr = 0;
    int st = mk_gemm(C->cx, C->mod, C->share, s, &gs, MK_PACKA, A, addr_none(), addr_none(), apk[x], &scr, C->err,
                     C->errlen);
    if (st)
      return st;
    plan_call(C, s, nrows, gemm_apack_grain(), 0);
    any = 1;
  }
  if (any)
    plan_call(C, "barrier", 0, 1, 1);
  return RNNC_OK;
}

/* Whether cell node x is read from an embedding's rows that a GEMM over them
 * can take from the table instead (embed_fold): in forward an input of the
 * cell, in backward a saved input of the forward cell. */
static int fold_in(const CC *cc, int x, EmbedFold *f)
{
  const MNode *n = &cc->C->md->node[cc->node];
  const Cell *c = cc->c;
  int j = -1;
  for (int k = 0; k < c->ninput; k++)
    if (c->input[k] == x)
      j = k;
  if (j >= 0 && cc->gr) { /* the forward input it saves */
    int fx = j < cc->gr->nsaved ? cc->gr->saved[j] : -1;
    j = -1;
    for (int k = 0; fx >= 0 && k < n->cell->ninput; k++)
      if (n->cell->input[k] == fx)
        j = k;
  }
  return j >= 0 && embed_fold(cc->C, n->arg[j], cc->TB, f);
}

/* *S [V, numel]: S[v] = the sum of node d's rows r with f->ids[r] = v, in
 * row order (mk_embed_grad, by columns); computed once per node and ids, a
 * fill and the sum each followed by a barrier. */
static int scatter_rows(CC *cc, int d, const EmbedFold *f, Addr *S)
{
  Comp *C = cc->C;
  if (cc->sum[d].slot >= 0 && memcmp(&cc->sumids[d], &f->ids, sizeof f->ids) == 0) {
    *S = cc->sum[d];
    return RNNC_OK;
  }
  Addr D = where(cc, d, 0);
  int64_t n = cc->numel[d];
  if (D.slot < 0)
    die("compile: cell '%s': node %d is summed by id but has no home", cc->c->name, d);
  *S = ws_tmp(C, f->V * n, n);
  int st = k_fill(C, f->V, n, *S, 0, 1);
  if (st)
    return st;
  const char *s = ksym(C, "scatter");
  if ((st = mk_embed_grad(C->cx, C->mod, s, cc->TB, f->V, n, f->ids, D, *S, C->err, C->errlen)))
    return st;
  plan_call(C, s, n, 8, 1);
  cc->sum[d] = *S;
  cc->sumids[d] = f->ids;
  return RNNC_OK;
}

/* GEMM node i over all T·B rows (bigemm, spec gs, its home Cm) when those
 * rows come from an embedding, x = weight[ids], with V <= T·B / 2 rows in
 * the table (embed_fold): in forward W·x, x an input of the cell, is the
 * table's GEMM weight·Wᵀ over V rows, its rows gathered by ids into node i's
 * home: each element is the sum the GEMM over x's rows gives, the same bits
 * (gemm.c: they depend on N, K and the flags). In backward the adjoint of
 * such an input, Wᵀ·d added straight into x's adjoint, becomes the
 * embedding's weight gradient += S·W, S the rows of d summed by id
 * (scatter_rows): V rows multiplied instead of T·B, and nothing goes to x's
 * adjoint to be scattered. Returns 1 when node i was so compiled (*st its
 * status), 0 when it is not such a GEMM. */
static int fold_gemm(CC *cc, int i, GemmSpec gs, Addr Cm, int *st)
{
  Comp *C = cc->C;
  const Cell *c = cc->c;
  int x = c->node[i].arg[1], j = -1;
  EmbedFold f;
  size_t scr = 0;
  const char *s;
  if (!cc->gr) {
    if (Cm.slot < 0 || c->node[i].op != OP_MATVEC || !fold_in(cc, x, &f))
      return 0;
    s = ksym(C, "gemm");
    Addr tab = ws_tmp(C, f.V * gs.N, gs.N);
    gs.M = f.V, gs.lda = f.weight.ld, gs.ldc = gs.N;
    if ((*st = mk_gemm(C->cx, C->mod, C->share, s, &gs, MK_ROWS, f.weight, addr_none(), tab, cc->pack[i], &scr,
                       C->err, C->errlen)))
      return 1;
    need_scratch(C, scr);
    plan_call(C, s, f.V, 6, 1);
    plan_gemm_chunk(C, &gs, MK_ROWS);
    s = ksym(C, "gather");
    if (!(*st = mk_embed(C->cx, C->mod, s, cc->TB, f.V, gs.N, f.ids, tab, Cm, C->err, C->errlen)))
      plan_call(C, s, cc->TB, 1, 0);
    return 1;
  }
  for (int k = 0; k < c->nout; k++)
    if (c->out[k] == i)
      j = k;
  if (Cm.slot >= 0 || j < 0 || c->node[i].op != OP_MATVECT ||
      !embed_fold(C, C->md->node[cc->node].arg[j], cc->TB, &f) || f.grad.slot < 0)
    return 0;
  Addr S;
  if ((*st = scatter_rows(cc, x, &f, &S)))
    return 1;
  s = ksym(C, "gemm");
  gs.M = f.V, gs.lda = S.ld, gs.ldc = f.grad.ld, gs.flags |= GEMM_ACC;
  if (!(*st = mk_gemm(C->cx, C->mod, C->share, s, &gs, MK_ROWS, S, addr_none(), f.grad, cc->pack[i], &scr, C->err,
                      C->errlen))) {
    need_scratch(C, scr);
    plan_call(C, s, f.V, 6, 0);
    plan_gemm_chunk(C, &gs, MK_ROWS);
  }
  return 1;
}

/* The GEMMs of a phase in kernels of their own, then a barrier; they leave
 * mask. tail 0: those run before the phase's kernel (colgemm, bigemm); 1:
 * those run after it (tailgemm). */
static int col_gemms(CC *cc, char *mask, int64_t nrows, int inloop, int tail)
{
  Comp *C = cc->C;
  const Cell *c = cc->c;
  int any = 0;
  Addr *apk = aalloc(C->a, ((size_t)c->nnode + 1) * sizeof *apk);
  for (int i = 0; i <= c->nnode; i++)
    apk[i] = addr_none();
  int st = pack_as(cc, mask, nrows, inloop, tail, apk);
  if (st)
    return st;
  for (int i = 0; i < c->nnode; i++) {
    if (!mask[i] || !(tail ? cc->tailgemm[i] : cc->colgemm[i] || cc->bigemm[i]))
      continue;
    const Node *nd = &c->node[i];
    int x = nd->arg[1];
    Addr A = where(cc, x, inloop), Cm = where(cc, i, inloop);
    int64_t N = cc->numel[i], K = cc->numel[x];
    GemmSpec gs = spec_of(cc, i, nrows, A, Cm);
    int colmode = MK_COLSP;
    if (apk[x].slot >= 0 && prepacked(cc, i, nrows, inloop)) {
      colmode = MK_COLSPA;
      A = apk[x];
    }
    if (cc->bigemm[i] && fold_gemm(cc, i, gs, Cm, &st)) { /* over an embedding's table */
      if (st)
        return st;
      mask[i] = 0;
      any = 1;
      continue;
    }
    const char *s = ksym(C, cc->gemv[i] ? "gemv" : cc->bigemm[i] ? "gemm" : "colgemm");
    size_t scr = 0;
    if (cc->bigemm[i]) {
      /* into its home, or (an input's adjoint nothing else reads) added
       * straight into the operand's adjoint */
      int direct = Cm.slot < 0;
      if (direct) {
        Cm = cc->acc[i];
        if (Cm.slot < 0)
          die("compile: cell '%s': GEMM node %d has no home", c->name, i);
        gs.ldc = Cm.ld;
        gs.flags |= GEMM_ACC;
      }
      st = mk_gemm(C->cx, C->mod, C->share, s, &gs, MK_ROWS, A, addr_none(), Cm, cc->pack[i], &scr, C->err, C->errlen);
      if (!st) {
        plan_call(C, s, nrows, 6, 0);
        plan_gemm_chunk(C, &gs, MK_ROWS);
      }
      if (!st && !direct && cc->acc[i].slot >= 0)
        cc->lateacc[i] = 1;
    } else if (cc->gemv[i]) {
      Addr W = cc->sa[nd->arg[0]];
      W.ld = K;
      st = mk_gemv(C->cx, C->mod, s, nrows, N, K, A, W, Cm, 0, C->o->portable, C->err, C->errlen);
      if (!st)
        plan_call(C, s, N, 8, 0);
    } else if (tail && cc->tailsum[i] >= 0) { /* into the add's home, then its other operand added */
      int j = cc->tailsum[i], o = c->node[j].arg[c->node[j].arg[0] == i];
      Cm = where(cc, j, inloop);
      gs.ldc = Cm.ld;
      st = mk_colgemm_sum(C->cx, C->mod, C->share, s, &gs, colmode, A, Cm, cc->pack[i], where(cc, o, inloop), &scr, C->err,
                          C->errlen);
      if (!st) {
        plan_call(C, s, gemm_npanels(&gs), 1, 0);
        plan_gemm_chunk(C, &gs, colmode);
      }
    } else {
      st = mk_gemm(C->cx, C->mod, C->share, s, &gs, colmode, A, addr_none(), Cm, cc->pack[i], &scr, C->err, C->errlen);
      if (!st) {
        plan_call(C, s, gemm_npanels(&gs), 1, 0);
        plan_gemm_chunk(C, &gs, colmode);
      }
    }
    if (st)
      return st;
    need_scratch(C, scr);
    mask[i] = 0;
    any = 1;
  }
  if (any)
    plan_call(C, "barrier", 0, 1, 1);
  int late = 0;
  for (int i = 0; i < c->nnode; i++) /* a GEMM's home added into an adjoint */
    if (cc->lateacc[i]) {
      cc->lateacc[i] = 0;
      st = k_copy(C, nrows, cc->numel[i], cc->sa[i], cc->acc[i], 1, 1, 0);
      if (st)
        return st;
      late = 1;
    }
  if (late)
    plan_call(C, "barrier", 0, 1, 1);
  return RNNC_OK;
}

/* The fused kernel of the nodes in mask (phasegen.c). */
static int fused_kernel(CC *cc, const char *what, char *mask, int64_t nrows, int inloop, int64_t grain)
{
  Comp *C = cc->C;
  const Cell *c = cc->c;
  int st;
  Addr *at = aalloc(C->a, ((size_t)c->nnode + 1) * sizeof *at);
  Addr *acc = aalloc(C->a, ((size_t)c->nnode + 1) * sizeof *acc);
  for (int i = 0; i < c->nnode; i++) {
    at[i] = where(cc, i, inloop);
    acc[i] = mask[i] && cc->acc[i].slot >= 0 ? (inloop ? at_step(cc->acc[i], cc->B) : cc->acc[i]) : addr_none();
  }
  PhaseSpec ps = {.c = c, .env = &C->v[cc->node].cenv, .nrows = nrows, .mask = mask, .at = at, .acc = acc,
                  .pack = cc->pack, .gemm = cc->gemm, .portable = C->o->portable, .share = C->share};
  const char *sym = ksym(C, aprintf(C->a, "%s_%s", c->name, what));
  for (char *q = (char *)sym; *q; q++)
    if (!((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9') || *q == '_'))
      *q = '_';
  size_t scr = 0;
  if ((st = phasegen(C->cx, C->mod, sym, &ps, &scr, C->err, C->errlen)))
    return st;
  need_scratch(C, scr);
  plan_call(C, sym, nrows, grain, !inloop);
  /* shared dynamically for its fused GEMMs, a micro-tile's rows a call or
   * more: each block of rows streams their packed weights */
  double flops = 0;
  for (int i = 0; i < c->nnode; i++)
    if (mask[i] && cc->gemm[i])
      flops += 2.0 * (double)cc->numel[i] * (double)cc->numel[c->node[i].arg[1]];
  plan_chunk(C, (6 + grain - 1) / grain, flops * (double)grain);
  return RNNC_OK;
}

/* A phase's kernels: the fused kernel of the nodes in mask (none: no kernel)
 * and the GEMMs that run in kernels of their own before and after it. */
static int phase_kernel(CC *cc, const char *what, char *mask, int64_t nrows, int inloop, int64_t grain)
{
  Comp *C = cc->C;
  const Cell *c = cc->c;
  int st = col_gemms(cc, mask, nrows, inloop, 0);
  if (st)
    return st;
  char *tail = NULL;
  int any = 0;
  for (int i = 0; i < c->nnode; i++) {
    if (mask[i] && cc->tailgemm[i]) {
      if (!tail)
        tail = aalloc(C->a, (size_t)c->nnode + 1);
      tail[i] = 1, mask[i] = 0;
      if (cc->tailsum[i] >= 0) /* the add it computes */
        mask[cc->tailsum[i]] = 0;
    }
  }
  for (int i = 0; i < c->nnode; i++)
    any |= mask[i];
  if (any && (st = fused_kernel(cc, what, mask, nrows, inloop, grain)))
    return st;
  if (!tail)
    return RNNC_OK;
  plan_call(C, "barrier", 0, 1, 1); /* their vectors: every row of the step */
  return col_gemms(cc, tail, nrows, inloop, 1);
}

/* The masks of the four kernels: invariant, PRE, LOOP, POST. */
static void masks(CC *cc, char *inv, char *pre, char *loop, char *post)
{
  for (int i = 0; i < cc->c->nnode; i++) {
    if (!computed(cc, i))
      continue;
    int ph = cc->s->phase[i];
    if (!cc->V[i])
      inv[i] = 1;
    else if (ph == SCHED_PRE)
      pre[i] = 1;
    else if (ph == SCHED_LOOP)
      loop[i] = 1;
    else
      post[i] = 1;
  }
}

/* Copy (or fill) a value that is not already where it must go: y += / = x,
 * over rows; x of a constant leaf is a fill. */
static int move(CC *cc, int node, Addr y, int64_t rows, int inloop, int acc)
{
  const Node *nd = &cc->c->node[node];
  if (nd->op == OP_ZEROS && acc)
    return RNNC_OK;
  Addr x = where(cc, node, inloop);
  if (inloop)
    y = at_step(y, cc->B);
  if (nd->op == OP_CONST || nd->op == OP_ZEROS) {
    const char *s = ksym(cc->C, "const");
    int st = mk_axpy(cc->C->cx, cc->C->mod, s, rows, cc->numel[node], nd->op == OP_CONST ? (float)nd->cval : 0,
                     addr_none(), acc ? y : addr_none(), y, 0, cc->C->err, cc->C->errlen);
    if (!st)
      plan_call(cc->C, s, rows, 1, !inloop);
    return st;
  }
  if (x.slot < 0)
    die("compile: cell '%s': node %d has no home to copy from", cc->c->name, node);
  return k_copy(cc->C, rows, cc->numel[node], x, y, acc, 1, !inloop);
}

/* The end of a step: the next step's column GEMMs read every row of this
 * one, so with any of them the threads wait here. */
static void step_end(CC *cc)
{
  for (int i = 0; i < cc->c->nnode; i++)
    if ((cc->colgemm[i] || cc->tailgemm[i]) && cc->s->phase[i] == SCHED_LOOP) {
      plan_call(cc->C, "barrier", 0, 1, 1);
      return;
    }
}

/* move() in a time loop into y as given (the same slot at every step). */
static int move_to(CC *cc, int node, Addr y, int64_t rows, int acc)
{
  const Node *nd = &cc->c->node[node];
  if (nd->op == OP_CONST || nd->op == OP_ZEROS) {
    const char *s = ksym(cc->C, "const");
    int st = mk_axpy(cc->C->cx, cc->C->mod, s, rows, cc->numel[node], nd->op == OP_CONST ? (float)nd->cval : 0,
                     addr_none(), acc ? y : addr_none(), y, 0, cc->C->err, cc->C->errlen);
    if (!st)
      plan_call(cc->C, s, rows, 1, 0);
    return st;
  }
  return k_copy(cc->C, rows, cc->numel[node], where(cc, node, 1), y, acc, 1, 0);
}

/* Whether backward cell bc reads node L anywhere but in the loop's own
 * kernel: a store for after the loop, a POST node, a GEMM-summed gradient's
 * outer, a gradient summed by rows, an out. */
static int node_read_after(const Cell *bc, int L)
{
  const CellSched *bs = bc->sched;
  if (!bs || bs->store[L])
    return 1;
  for (int j = 0; j < bc->nnode; j++) {
    const Node *nd = &bc->node[j];
    for (int k = 0; k < nd->narg; k++)
      if (nd->arg[k] == L && bs->phase[j] != SCHED_DEAD && (bs->phase[j] != SCHED_LOOP || bs->sumonly[j]))
        return 1;
  }
  for (int p = 0; bc->grad && p < bc->nparam; p++)
    if (bc->grad[p] == L)
      return 1;
  for (int j = 0; j < bc->nout; j++)
    if (bc->out[j] == L)
      return 1;
  return 0;
}

/* Whether the adjoint of state s must be kept for every step (T + 1 slots,
 * not two): backward cell bc reads it after the loop, or reads its update
 * there — e.g. d_s1' = d_v5 that a GEMM after the loop also reads as d_v5
 * (grad P0 = outer(d_v5, x0)): that update is written in the state's slot of
 * the step, which two slots would overwrite at the next step. */
static int read_after(const Cell *bc, int s)
{
  return node_read_after(bc, bc->state[s]) || (bc->next[s] >= 0 && node_read_after(bc, bc->next[s]));
}

Addr dhs_final(const Comp *C, int node, int s)
{
  const MV *v = &C->v[node];
  Addr a = v->dhs[s];
  if (v->dseq[s] && !C->md->node[node].backward)
    a.off += v->T * v->B * v->sd[s];
  return a;
}

Addr dhs_initial(const Comp *C, int node, int s)
{
  const MV *v = &C->v[node];
  Addr a = v->dhs[s];
  if (v->dseq[s] && C->md->node[node].backward)
    a.off += v->T * v->B * v->sd[s];
  return a;
}

/* ---- forward -------------------------------------------------------------- */

int cell_forward(Comp *C, int i)
{
  const MNode *n = &C->md->node[i];
  const Cell *c = n->cell;
  MV *v = &C->v[i];
  CC cc;
  int st = cc_begin(C, &cc, i, c);
  if (st)
    return st;
  int rev = n->backward, ns = c->nstate;
  if (C->o->carry && rev)
    return comp_fail(C, RNNC_EINPUT, "node '%s' runs backward in time: its state cannot be carried from run to run",
                     n->name ? n->name : "?");
  v->hs = aalloc(C->a, ((size_t)ns + 1) * sizeof *v->hs);
  v->dhs = aalloc(C->a, ((size_t)ns + 1) * sizeof *v->dhs);
  v->sd = aalloc(C->a, ((size_t)ns + 1) * sizeof *v->sd);
  v->dseq = aalloc(C->a, (size_t)ns + 1);
  int64_t B = cc.B, T = cc.T;
  for (int s = 0; s < ns; s++) {
    int64_t d = cc.numel[c->state[s]];
    v->sd[s] = d;
    v->hs[s] = ws_alloc(C, (T + 1) * B * d, d);
    /* the state adjoints need two slots of [B, d]: the adjoint of the update
     * (slot 0: read by a step, where the final states' adjoint starts and the
     * initial states' ends) and of the old state (slot 1: written by a step,
     * then copied to slot 0 for the next); all T + 1 when the backward cell
     * reads the update's adjoint after the loop too */
    v->dseq[s] = C->o->grad && C->g->cellgrad[i] && read_after(C->g->cellgrad[i]->bwd, s);
    v->dhs[s] = C->o->grad ? ws_alloc(C, (v->dseq[s] ? T + 1 : 2) * B * d, d) : addr_none();
    /* step t reads slot t and writes t + 1 (backward in time: t + 1, then t) */
    Addr old = v->hs[s], nw = v->hs[s];
    if (rev)
      old.off += B * d;
    else
      nw.off += B * d;
    cc.sa[c->state[s]] = old;
    cc.stnew[s] = nw;
  }
  for (int j = 0; j < c->ninput; j++)
    cc.sa[c->input[j]] = C->v[n->arg[j]].val;
  for (int p = 0; p < c->nparam; p++)
    cc.sa[c->param[p]] = param_addr(C, n, p);

  char *need = aalloc(C->a, (size_t)c->nnode + 1), *keep = aalloc(C->a, (size_t)c->nnode + 1);
  need[c->out[0]] = keep[c->out[0]] = 1;
  for (int s = 0; s < ns; s++)
    if (c->next[s] >= 0)
      need[c->next[s]] = 1;
  const Grad *gr = C->o->grad && C->g ? C->g->cellgrad[i] : NULL;
  for (int k = 0; gr && k < gr->nsaved; k++)
    need[gr->saved[k]] = keep[gr->saved[k]] = 1;
  mark_gemms(&cc, 0);
  assign(&cc, need, keep);
  v->fsa = cc.sa;

  if ((st = packs(&cc, n)))
    return st;
  /* the initial states */
  for (int s = 0; s < ns; s++) {
    Addr init = v->hs[s];
    if (rev)
      init.off += T * B * v->sd[s];
    if (C->o->carry) {
      int t = -1;
      const char *name = aprintf(C->a, "state.%s.%s", n->name, c->node[c->state[s]].name);
      int64_t dim[2] = {B, v->sd[s]};
      for (int k = 0; k < C->cm->nt; k++)
        if (strcmp(C->cm->t[k].name, name) == 0)
          t = k;
      if (t < 0) {
        CTensor ct = {.name = astrdup(C->cm->a, name), .role = CT_STATE, .dtype = DT_F32, .rank = 2,
                      .dim = {dim[0], dim[1]}, .numel = B * v->sd[s], .slot = C->cm->nt + SLOT_TENSOR0};
        APUSH(C->cm->a, C->cm->t, C->cm->nt, C->cm->capt, ct);
        t = C->cm->nt - 1;
      }
      if ((st = k_copy(C, B, v->sd[s], (Addr){t + SLOT_TENSOR0, 0, 0, v->sd[s]}, init, 0, 1, 0)))
        return st;
    } else if (n->ninit) {
      if ((st = k_copy(C, B, v->sd[s], C->v[n->init[s]].val, init, 0, 1, 0)))
        return st;
    } else if (n->initfrom >= 0) {
      const MV *f = &C->v[n->initfrom];
      Addr fin = f->hs[s];
      if (!C->md->node[n->initfrom].backward)
        fin.off += f->T * f->B * f->sd[s];
      if ((st = k_copy(C, B, v->sd[s], fin, init, 0, 1, 0)))
        return st;
    }
  }
  plan_call(C, "barrier", 0, 1, 1);

  size_t nn = (size_t)c->nnode + 1;
  char *inv = aalloc(C->a, nn), *pre = aalloc(C->a, nn), *loop = aalloc(C->a, nn), *post = aalloc(C->a, nn);
  masks(&cc, inv, pre, loop, post);
  if ((st = phase_kernel(&cc, "inv", inv, 1, 0, 1)) || (st = phase_kernel(&cc, "pre", pre, cc.TB, 0, 8)))
    return st;
  int lp = plan_loop(C, T, rev);
  if ((st = phase_kernel(&cc, "step", loop, B, 1, 1)))
    return st;
  for (int s = 0; s < ns; s++) /* updates that are not computed into their state */
    if (c->next[s] >= 0 && memcmp(&cc.sa[c->next[s]], &cc.stnew[s], sizeof(Addr)) != 0)
      if ((st = move(&cc, c->next[s], cc.stnew[s], B, 1, 0)))
        return st;
  step_end(&cc);
  plan_endloop(C, lp);
  if ((st = phase_kernel(&cc, "post", post, cc.TB, 0, 8)))
    return st;

  int o = c->out[0];
  if (cc.sa[o].slot >= 0 && cc.sa[o].ld > 0) {
    v->val = cc.sa[o];
  } else {
    v->val = ws_alloc(C, cc.TB * v->d, v->d);
    if ((st = move(&cc, o, v->val, cc.TB, 0, 0)))
      return st;
  }
  v->adj = C->o->grad ? ws_alloc(C, v->npos * v->d, v->d) : addr_none();
  if (C->o->carry) { /* leave the final states for the next run */
    for (int s = 0; s < ns; s++) {
      const char *name = aprintf(C->a, "state.%s.%s", n->name, c->node[c->state[s]].name);
      int t = -1;
      for (int k = 0; k < C->cm->nt; k++)
        if (strcmp(C->cm->t[k].name, name) == 0)
          t = k;
      Addr fin = v->hs[s];
      fin.off += T * B * v->sd[s];
      if ((st = k_copy(C, B, v->sd[s], fin, (Addr){t + SLOT_TENSOR0, 0, 0, v->sd[s]}, 0, 1, s == ns - 1)))
        return st;
    }
  }
  return RNNC_OK;
}

/* ---- backward ------------------------------------------------------------- */

/* Parameter gradient p from its tree of outers, + and -: a GEMM each. */
static int gemm_terms(CC *cc, const MNode *n, int p, int g, int sign)
{
  Comp *C = cc->C;
  const Node *nd = &cc->c->node[g];
  if (nd->op == OP_ADD || nd->op == OP_SUB) {
    int st = gemm_terms(cc, n, p, nd->arg[0], sign);
    return st ? st : gemm_terms(cc, n, p, nd->arg[1], nd->op == OP_SUB ? -sign : sign);
  }
  if (nd->op != OP_OUTER)
    die("compile: cell '%s': a gradient summed by GEMMs has a '%s' term", cc->c->name, opinfo[nd->op].spelling);
  int a = nd->arg[0], b = nd->arg[1];
  Addr A = cc->sa[a], Bm = cc->sa[b];
  if (A.slot < 0 || Bm.slot < 0)
    die("compile: cell '%s': an outer's operands have no home", cc->c->name);
  int64_t M = cc->numel[a], N = cc->numel[b], K = cc->TB;
  Addr G = grad_addr(C, n, p);
  G.ld = N;
  Addr dst = sign > 0 ? G : ws_tmp(C, M * N, N);
  EmbedFold f;
  int st;
  if (fold_in(cc, b, &f)) { /* Σ_r a_r x_rᵀ with x_r = weight[ids[r]]: Σ_v S_v weight_vᵀ */
    if ((st = scatter_rows(cc, a, &f, &A)))
      return st;
    Bm = f.weight, K = f.V;
  }
  st = k_wgrad(C, ksym(C, "wgrad"), M, N, K, A, Bm, dst, sign > 0);
  if (st)
    return st;
  if (sign < 0)
    return k_copy(C, M, N, dst, G, 1, -1, 0);
  return RNNC_OK;
}

int cell_backward(Comp *C, int i)
{
  const MNode *n = &C->md->node[i];
  const Grad *gr = C->g->cellgrad[i];
  const Cell *fc = n->cell, *c = gr->bwd;
  MV *v = &C->v[i];
  CC cc;
  int st = cc_begin(C, &cc, i, c);
  if (st)
    return st;
  cc.gr = gr;
  int rev = n->backward, ns = c->nstate;
  int64_t B = cc.B, T = cc.T;
  for (int k = 0; k < gr->nsaved; k++) {
    cc.sa[c->input[k]] = v->fsa[gr->saved[k]];
    if (cc.sa[c->input[k]].slot < 0)
      die("compile: cell '%s': saved value %d has no home", fc->name, k);
  }
  cc.sa[c->input[gr->nsaved]] = v->adj;
  for (int j = 1; j < fc->nout; j++) /* adjoints of other outs: zero */
    cc.sa[c->input[gr->nsaved + j]] = ws_alloc(C, cc.numel[c->input[gr->nsaved + j]], 0);
  for (int s = 0; s < ns; s++) {
    Addr nwadj = v->dhs[s], oldadj = v->dhs[s];
    if (v->dseq[s]) { /* like hs: step t reads slot t + 1, writes slot t */
      if (rev)
        oldadj.off += B * v->sd[s];
      else
        nwadj.off += B * v->sd[s];
    } else { /* in slot 0, out slot 1, the same slots at every step */
      oldadj.off += B * v->sd[s];
      cc.steptmp[c->state[s]] = 1;
    }
    cc.sa[c->state[s]] = nwadj;
    cc.stnew[s] = oldadj;
  }
  for (int p = 0; p < c->nparam; p++)
    cc.sa[c->param[p]] = param_addr(C, n, p);

  char *need = aalloc(C->a, (size_t)c->nnode + 1);
  char *nout = aalloc(C->a, (size_t)c->nnode + 1);
  for (int s = 0; s < ns; s++)
    if (c->next[s] >= 0)
      need[c->next[s]] = 1;
  for (int p = 0; p < c->nparam; p++)
    if (cc.s->gsum[p] == GSUM_ROWS)
      need[c->grad[p]] = 1;
  for (int j = 0; j < c->nout; j++)
    if (++nout[c->out[j]] > 1)
      need[c->out[j]] = 1;
  /* an out whose operand takes no adjoint, read by nothing else: skipped */
  for (int j = 0; j < c->nout; j++) {
    int o = c->out[j], other = 0;
    if (C->v[n->arg[j]].adj.slot >= 0 || isleaf(c->node[o].op))
      continue;
    for (int k = 0; k < c->nnode && !other; k++)
      for (int a = 0; a < c->node[k].narg; a++)
        other |= c->node[k].arg[a] == o;
    for (int s = 0; s < ns; s++)
      other |= c->next[s] == o;
    for (int p = 0; p < c->nparam; p++)
      other |= c->grad[p] == o;
    for (int k = 0; k < c->nout; k++)
      other |= k != j && c->out[k] == o;
    cc.skip[o] = !other;
  }
  mark_gemms(&cc, 1);
  assign(&cc, need, NULL);
  for (int s = 0; s < ns; s++)
    if (!v->dseq[s] && c->next[s] >= 0 && memcmp(&cc.sa[c->next[s]], &cc.stnew[s], sizeof(Addr)) == 0)
      cc.steptmp[c->next[s]] = 1;
  /* each input's adjoint is added into its operand's by the kernel computing it */
  char *done = aalloc(C->a, (size_t)c->nout + 1);
  for (int j = 0; j < c->nout; j++) {
    int o = c->out[j];
    Addr to = C->v[n->arg[j]].adj;
    if (to.slot < 0) {
      done[j] = 1;
      continue;
    }
    if (computed(&cc, o) && cc.acc[o].slot < 0) {
      cc.acc[o] = to;
      done[j] = 1;
    }
  }

  if ((st = packs(&cc, n)))
    return st;
  size_t nn = (size_t)c->nnode + 1;
  char *inv = aalloc(C->a, nn), *pre = aalloc(C->a, nn), *loop = aalloc(C->a, nn), *post = aalloc(C->a, nn);
  masks(&cc, inv, pre, loop, post);
  if ((st = phase_kernel(&cc, "inv", inv, 1, 0, 1)) || (st = phase_kernel(&cc, "pre", pre, cc.TB, 0, 8)))
    return st;
  int lp = plan_loop(C, T, !rev);
  if ((st = phase_kernel(&cc, "step", loop, B, 1, 1)))
    return st;
  for (int s = 0; s < ns; s++) {
    if (v->dseq[s]) {
      if (c->next[s] >= 0 && memcmp(&cc.sa[c->next[s]], &cc.stnew[s], sizeof(Addr)) != 0)
        if ((st = move(&cc, c->next[s], cc.stnew[s], B, 1, 0)))
          return st;
      continue;
    }
    if (c->next[s] >= 0 && memcmp(&cc.sa[c->next[s]], &cc.stnew[s], sizeof(Addr)) != 0)
      if ((st = move_to(&cc, c->next[s], cc.stnew[s], B, 0)))
        return st;
    /* the old state's adjoint is the next step's update's (zero when no
     * update reads the state: slot 1 is never written) */
    if ((st = k_copy(C, B, v->sd[s], cc.stnew[s], v->dhs[s], 0, 1, 0)))
      return st;
  }
  step_end(&cc);
  plan_endloop(C, lp);
  if ((st = phase_kernel(&cc, "post", post, cc.TB, 0, 8)))
    return st;
  for (int j = 0; j < c->nout; j++)
    if (!done[j] && (st = move(&cc, c->out[j], C->v[n->arg[j]].adj, cc.TB, 0, 1)))
      return st;

  /* parameter gradients, summed over time and batch */
  char *summed = aalloc(C->a, (size_t)c->nparam + 1);
  for (int p = 0; p < c->nparam; p++) {
    int g = c->grad[p];
    if (g < 0 || cc.s->gsum[p] == GSUM_NONE || c->node[g].op == OP_ZEROS || summed[p])
      continue;
    if (cc.s->gsum[p] == GSUM_GEMM) {
      st = gemm_terms(&cc, n, p, g, 1);
    } else {
      if (cc.sa[g].slot < 0)
        die("compile: cell '%s': gradient %d has no home", c->name, p);
      Addr two = addr_none(); /* another parameter with the same gradient (b_ih, b_hh): one pass */
      for (int q = p + 1; q < c->nparam && two.slot < 0; q++)
        if (c->grad[q] == g && cc.s->gsum[q] == GSUM_ROWS) {
          two = grad_addr(C, n, q);
          summed[q] = 1;
        }
      const char *s = ksym(C, "colsum");
      st = mk_colsum(C->cx, C->mod, s, cc.TB, cc.numel[g], cc.sa[g], grad_addr(C, n, p), two, 1, C->err,
                     C->errlen);
      if (!st)
        plan_call(C, s, cc.numel[g], 8, 0);
    }
    if (st)
      return st;
  }
  plan_call(C, "barrier", 0, 1, 1);

  /* the adjoint of the initial states */
  for (int s = 0; s < ns; s++) {
    Addr init = dhs_initial(C, i, s);
    Addr to = addr_none();
    if (n->ninit)
      to = C->v[n->init[s]].adj;
    else if (n->initfrom >= 0 && !C->o->carry)
      to = dhs_final(C, n->initfrom, s);
    if (to.slot >= 0 && (st = k_copy(C, B, v->sd[s], init, to, 1, 1, 1)))
      return st;
  }
  return RNNC_OK;
}
