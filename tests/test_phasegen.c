/* test_phasegen.c — fused phase kernels (compiler/phasegen.c) against the
 * reference interpreter.
 *
 * The check. A cell with its dims bound runs on R rows as KernFn kernels of
 * one module, in one of two layouts:
 *   all      one kernel computes every non-leaf node, each in its own buffer
 *            (rows ld = numel + 3 apart, params ld 0), consts given storage;
 *   phases   the cell's schedule (schedule.c): a kernel for the PRE nodes,
 *            one for LOOP and POST; a node read only in its own kernel is a
 *            temporary (two in three of them), splits and slices of stored
 *            values are views (every other one), concat operands are written
 *            in place in the concat, every fourth computed node is also
 *            accumulated (acc) into a buffer of random values, and the
 *            schedule's GEMM matvecs run as GEMM rows on packed weights.
 * Every buffer but params has a time stride; the kernels run at t = 1, the
 * t = 0 half stays NaN. Each layout runs over [0, R) split into ranges in
 * several ways (one call; 1 + rest; 5, 1, rest; blocks of 3; a random cut;
 * blocks of 3 on 3 threads at once): every buffer must be bitwise the same
 * after each. Then each stored node is
 * compared with cell_eval(PREC_F32) per row: its error is
 *     max over rows r and elements e of |kernel[r, e] - ref[r, e]|
 *     / max(max over r, e of |ref[r, e]|, 1e-6)
 * and an acc buffer's the same for acc - init against ref (the denominator
 * also at least max |init|); all must be <= 1e-5. Leaves are uniform in
 * [-1, 1), redrawn until every relu/step operand is at least 1e-3 from 0.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/Core.h>

#include "testutil.h"

static uint64_t rs;
static double uni(void) /* [-1, 1), splitmix64 */
{
  uint64_t z = (rs += 0x9e3779b97f4a7c15u);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  z ^= z >> 31;
  return (double)(z >> 11) / 9007199254740992.0 * 2 - 1;
}

static const char cells_text[] =
    "cell mgu(x: [I]) state(h: [H]) {\n"
    "  param W_f: [H, I], U_f: [H, H], b_f: [H]\n"
    "  param W_h: [H, I], U_h: [H, H], b_h: [H]\n"
    "  f  = sigmoid(W_f @ x + U_f @ h + b_f)\n"
    "  n  = tanh(W_h @ x + U_h @ (f * h) + b_h)\n"
    "  h' = (1 - f) * h + f * n\n"
    "  out h'\n"
    "}\n"
    "cell mix(x: [I]) state(h: [H], c: [H]) {\n"
    "  param W: [2*H, I], U: [2*H, H], b: [2*H], A: [H, H]\n"
    "  g = W @ x + U @ h + b\n"
    "  g1, g2 = split(g, 2)\n"
    "  s = slice(concat(g1, c, h), H, H)\n"
    "  q = exp(neg(g1 * g1)) / (2 + relu(g2))\n"
    "  k = step(g2) * log(1 + exp(g1))\n"
    "  m = matvec_t(A, tanh(s))\n"
    "  c' = q * s + k - 0.5 * m\n"
    "  h' = tanh(c') * sigmoid(slice(concat(g2, g1), 1, H)) + 0.25 * h\n"
    "  out h'\n"
    "}\n";

/* ---- layouts ---------------------------------------------------------------- */

enum { K_OWN, K_TEMP, K_VIEW, K_INCONCAT, K_INPLACE }; /* where a node's value is */

typedef struct Lay {
  int nk;             /* kernels */
  int *kern;          /* per node: its kernel (0-based), -1 not computed (leaves) */
  int *kind;          /* K_* */
  int *of;            /* K_VIEW: the node it views; K_INCONCAT: the concat;
                         K_INPLACE: the operand whose storage it overwrites */
  char *clobbered;    /* per node: overwritten by a K_INPLACE reader */
  long *at0;          /* K_VIEW, K_INCONCAT: element offset in that node */
  char **mask;        /* per kernel, per node */
  Addr *at, *acc, *pack;
  char *gemm;
} Lay;

typedef struct Bufs {
  int nslot;
  float **p;          /* per slot */
  long *len;          /* floats */
  int *leaf;          /* slot holds a leaf (random, never reset) */
  float **init;       /* acc slots: their initial values */
} Bufs;

typedef struct Case {
  Module *m;
  Cell *c;
  Env env;
  long R;
  long *numel;
  long *start;        /* slices */
  int portable;       /* PhaseSpec.portable */
} Case;

/* What the layouts of a test exercised, summed over its checks. */
static struct {
  int temps, views, inconcat, inplace, accs, gemms;
  int sleef[3]; /* modules that call SLEEF's 4-, 8- and 16-wide tanh */
} seen;

static int isleafop(int op) { return op == OP_INPUT || op == OP_STATE || op == OP_PARAM; }
static int isconstop(int op) { return op == OP_CONST || op == OP_ZEROS; }

static int isresult(const Cell *c, int i)
{
  for (int k = 0; k < c->nout; k++)
    if (c->out[k] == i)
      return 1;
  for (int k = 0; k < c->nstate; k++)
    if (c->next[k] == i)
      return 1;
  for (int k = 0; c->grad && k < c->nparam; k++)
    if (c->grad[k] == i)
      return 1;
  return 0;
}

/* The Addr of node i, following views and in-concat placements. */
static Addr addr_of(const Lay *L, int i)
{
  if (L->kind[i] == K_VIEW || L->kind[i] == K_INCONCAT || L->kind[i] == K_INPLACE) {
    Addr a = addr_of(L, L->of[i]);
    a.off += L->at0[i];
    return a;
  }
  return L->at[i];
}

/* Decide the layout (phases: by the schedule) and allocate the buffers. */
static void make_layout(Case *k, int phases, Lay *L, Bufs *B)
{
  const Cell *c = k->c;
  int nn = c->nnode;
  const CellSched *s = phases ? schedule_cell(k->m, k->c) : NULL;
  memset(L, 0, sizeof *L);
  L->nk = phases ? 2 : 1;
  L->kern = calloc((size_t)nn, sizeof *L->kern);
  L->kind = calloc((size_t)nn, sizeof *L->kind);
  L->of = calloc((size_t)nn, sizeof *L->of);
  L->at0 = calloc((size_t)nn, sizeof *L->at0);
  L->at = calloc((size_t)nn, sizeof *L->at);
  L->acc = calloc((size_t)nn, sizeof *L->acc);
  L->pack = calloc((size_t)nn, sizeof *L->pack);
  L->gemm = calloc((size_t)nn, 1);
  L->mask = calloc((size_t)L->nk, sizeof *L->mask);
  for (int q = 0; q < L->nk; q++)
    L->mask[q] = calloc((size_t)nn, 1);
  for (int i = 0; i < nn; i++) {
    int op = c->node[i].op;
    L->kern[i] = -1;
    if (isleafop(op) || (phases && isconstop(op)))
      continue;
    if (phases && s->phase[i] == SCHED_DEAD)
      continue;
    L->kern[i] = phases && s->phase[i] != SCHED_PRE ? 1 : 0;
    L->mask[L->kern[i]][i] = 1;
  }
  /* views: every other split or slice (its operand then keeps storage) */
  char *pinned = calloc((size_t)nn, 1); /* never a temporary */
  for (int i = 0; i < nn; i++) {
    L->kind[i] = K_OWN;
    const Node *nd = &c->node[i];
    if (phases && L->kern[i] >= 0 && (nd->op == OP_SPLIT || nd->op == OP_SLICE) && i % 2 == 0 &&
        !isconstop(c->node[nd->arg[0]].op)) {
      L->kind[i] = K_VIEW;
      L->of[i] = nd->arg[0];
      L->at0[i] = nd->op == OP_SPLIT ? nd->k * k->numel[i] : k->start[i];
      pinned[nd->arg[0]] = 1;
    }
  }
  /* concat operands in place: every eligible one, or only the first for odd concats */
  for (int i = 0; phases && i < nn; i++) {
    const Node *nd = &c->node[i];
    if (nd->op != OP_CONCAT || L->kern[i] < 0)
      continue;
    pinned[i] = 1;
    long off = 0;
    for (int q = 0; q < nd->narg; q++) {
      int a = nd->arg[q];
      if (L->kern[a] >= 0 && L->kind[a] == K_OWN && !isconstop(c->node[a].op) && !(i % 2 && q > 0)) {
        L->kind[a] = K_INCONCAT;
        L->of[a] = i;
        L->at0[a] = off;
      }
      off += k->numel[a];
    }
  }
  /* elementwise in place: over an operand of its size that has storage,
   * is no result and is read by it alone (that operand is then not compared) */
  L->clobbered = calloc((size_t)nn, 1);
  for (int i = 0; phases && i < nn; i++) {
    const Node *nd = &c->node[i];
    int a = nd->arg ? nd->arg[0] : -1;
    if (opinfo[nd->op].shape_rule != SH_EW || L->kern[i] < 0 || L->kind[i] != K_OWN || pinned[i] ||
        L->kern[a] != L->kern[i] || L->kind[a] != K_OWN || pinned[a] || isresult(c, a) ||
        k->numel[a] != k->numel[i] || L->clobbered[a])
      continue;
    int readers = 0;
    for (int j = a + 1; j < nn; j++)
      for (int q = 0; q < c->node[j].narg; q++)
        readers += c->node[j].arg[q] == a;
    if (readers == 1) {
      L->kind[i] = K_INPLACE;
      L->of[i] = a;
      L->at0[i] = 0;
      L->clobbered[a] = 1;
      pinned[i] = pinned[a] = 1;
    }
  }
  /* temporaries: two in three of the nodes read only in their own kernel */
  for (int i = 0; phases && i < nn; i++) {
    if (L->kern[i] < 0 || L->kind[i] != K_OWN || pinned[i] || isresult(c, i) || i % 3 == 0)
      continue;
    int local = 1;
    for (int j = i + 1; j < nn && local; j++)
      for (int q = 0; q < c->node[j].narg; q++)
        if (c->node[j].arg[q] == i && L->kern[j] != L->kern[i])
          local = 0;
    if (local)
      L->kind[i] = K_TEMP;
  }
  free(pinned);
  /* slots: every leaf and K_OWN node; acc every fourth computed node */
  int cap = 2 * nn + 1;
  B->p = calloc((size_t)cap, sizeof *B->p);
  B->len = calloc((size_t)cap, sizeof *B->len);
  B->leaf = calloc((size_t)cap, sizeof *B->leaf);
  B->init = calloc((size_t)cap, sizeof *B->init);
  B->nslot = 0;
  long R = k->R;
  for (int i = 0; i < nn; i++) {
    int op = c->node[i].op;
    L->at[i] = addr_none();
    L->acc[i] = addr_none();
    L->pack[i] = addr_none();
    if (op == OP_PARAM) {
      L->at[i] = (Addr){B->nslot, 0, 0, 0};
      B->leaf[B->nslot] = 1;
      B->len[B->nslot++] = k->numel[i] + 1;
    } else if (isleafop(op) || (L->kern[i] >= 0 && L->kind[i] == K_OWN)) {
      long ld = k->numel[i] + 3;
      L->at[i] = (Addr){B->nslot, 2, R * ld + 5, ld};
      B->leaf[B->nslot] = isleafop(op);
      B->len[B->nslot++] = 2 * (R * ld + 5) + 2;
    }
    if (phases && L->kern[i] >= 0 && i % 4 == 1) {
      long ld = k->numel[i] + 1;
      L->acc[i] = (Addr){B->nslot, 1, R * ld, ld};
      B->init[B->nslot] = calloc((size_t)(2 * R * ld + 1), sizeof(float));
      B->len[B->nslot++] = 2 * R * ld + 1;
    }
  }
  for (int i = 0; i < nn; i++)
    if (L->kind[i] == K_VIEW || L->kind[i] == K_INCONCAT || L->kind[i] == K_INPLACE)
      L->at[i] = addr_of(L, i);
  for (int q = 0; q < B->nslot; q++) {
    B->p[q] = malloc((size_t)B->len[q] * sizeof(float));
    for (long e = 0; e < B->len[q]; e++)
      B->p[q][e] = NAN;
    if (B->init[q])
      for (long e = 0; e < B->len[q]; e++)
        B->init[q][e] = B->p[q][e] = (float)uni();
  }
  /* GEMM matvecs: a parameter matrix and a per-row vector */
  for (int i = 0; phases && i < nn; i++) {
    const Node *nd = &c->node[i];
    if ((nd->op == OP_MATVEC || nd->op == OP_MATVECT) && s->gemm[i] != GEMM_NONE && L->kern[i] >= 0 &&
        c->node[nd->arg[0]].op == OP_PARAM && !isconstop(c->node[nd->arg[1]].op)) {
      L->gemm[i] = 1;
      L->pack[i] = (Addr){B->nslot, 0, 0, 0};
      B->p[B->nslot] = NULL; /* sized when packed */
      B->nslot++;
    }
  }
}

static void free_layout(Lay *L, Bufs *B)
{
  for (int q = 0; q < L->nk; q++)
    free(L->mask[q]);
  free(L->mask);
  free(L->clobbered);
  free(L->kern), free(L->kind), free(L->of), free(L->at0), free(L->at), free(L->acc), free(L->pack), free(L->gemm);
  for (int q = 0; q < B->nslot; q++)
    free(B->p[q]), free(B->init[q]);
  free(B->p), free(B->len), free(B->leaf), free(B->init);
}

/* ---- running ------------------------------------------------------------------ */

static int nmod;

/* Compile the layout's kernels (and the packing GEMMs) in one module; fill
 * fn[q] and the scratch size. */
static void compile(Jit *j, Case *k, Lay *L, Bufs *B, KernFn *fn, size_t *scratch)
{
  char err[1024], name[64];
  LLVMContextRef cx = jit_context(j);
  int id = nmod++;
  snprintf(name, sizeof name, "pg%d", id);
  LLVMModuleRef mod = LLVMModuleCreateWithNameInContext(name, cx);
  *scratch = 0;
  for (int q = 0; q < L->nk; q++) {
    PhaseSpec ps = {.c = k->c, .env = &k->env, .nrows = k->R, .mask = L->mask[q], .at = L->at, .acc = L->acc,
                    .pack = L->pack, .gemm = L->gemm, .portable = k->portable};
    size_t sc = 0;
    snprintf(name, sizeof name, "pg%d_k%d", id, q);
    int rc = phasegen(cx, mod, name, &ps, &sc, err, sizeof err);
    cr_assert_eq(rc, RNNC_OK, "%s: phasegen: %s", k->c->name, err);
    if (sc > *scratch)
      *scratch = sc;
  }
  /* pack W of each GEMM node with the same spec's _pack */
  GemmSpec *spec = calloc((size_t)k->c->nnode, sizeof *spec);
  for (int i = 0; i < k->c->nnode; i++) {
    if (!L->gemm[i])
      continue;
    const Node *nd = &k->c->node[i];
    long n = k->numel[i], v = k->numel[nd->arg[1]];
    spec[i] = (GemmSpec){.M = k->R, .N = n, .K = v, .lda = v, .ldb = n, .ldc = n,
                         .flags = k->portable ? GEMM_PORTABLE : 0};
    if (nd->op == OP_MATVEC)
      spec[i].flags |= GEMM_BT, spec[i].ldb = v;
    snprintf(name, sizeof name, "pg%d_pack%d", id, i);
    cr_assert_eq(gemm_gen2(cx, mod, name, &spec[i], err, sizeof err), RNNC_OK, "%s", err);
  }
  static const char *const tanhs[3] = {"Sleef_tanhf4_u10sse2", "Sleef_tanhf8_u10avx2", "Sleef_tanhf16_u10avx512f"};
  for (int w = 0; w < 3; w++)
    seen.sleef[w] += LLVMGetNamedFunction(mod, tanhs[w]) != NULL;
  cr_assert_eq(jit_add(j, mod, err, sizeof err), RNNC_OK, "%s: %s", k->c->name, err);
  for (int q = 0; q < L->nk; q++) {
    uintptr_t a = 0;
    snprintf(name, sizeof name, "pg%d_k%d", id, q);
    cr_assert_eq(jit_lookup(j, name, &a, err, sizeof err), RNNC_OK, "%s", err);
    fn[q] = (KernFn)a;
  }
  for (int i = 0; i < k->c->nnode; i++) {
    if (!L->gemm[i])
      continue;
    uintptr_t a = 0;
    snprintf(name, sizeof name, "pg%d_pack%d_pack", id, i);
    cr_assert_eq(jit_lookup(j, name, &a, err, sizeof err), RNNC_OK, "%s", err);
    int q = L->pack[i].slot;
    B->len[q] = (long)gemm_packsize(&spec[i]) + 1;
    free(B->p[q]);
    B->p[q] = calloc((size_t)B->len[q], sizeof(float));
    void (*pack)(const float *, float *, int64_t, int64_t) = (void (*)(const float *, float *, int64_t, int64_t))a;
    pack(B->p[L->at[k->c->node[i].arg[0]].slot], B->p[q], 0, gemm_npanels(&spec[i]));
  }
  free(spec);
}

/* Reset every computed buffer (NaN; accs to their initial values). */
static void reset(Bufs *B, const Lay *L, const Case *k)
{
  for (int q = 0; q < B->nslot; q++) {
    if (B->leaf[q])
      continue;
    int ispack = 0;
    for (int i = 0; i < k->c->nnode; i++)
      ispack |= L->gemm[i] && L->pack[i].slot == q;
    if (ispack)
      continue;
    for (long e = 0; e < B->len[q]; e++)
      B->p[q][e] = B->init[q] ? B->init[q][e] : NAN;
  }
}

/* Run each kernel over the ranges cut[0] = 0 < cut[1] < ... < cut[n] = R, at
 * t = 1; threads: the ranges of a kernel at once on 3 OpenMP threads, each
 * range with its own scratch. */
static void run(KernFn *fn, int nk, Bufs *B, size_t scratch, const long *cut, int n, int threads)
{
  float **sc = calloc((size_t)n, sizeof *sc);
  for (int p = 0; p < n; p++) {
    sc[p] = aligned_alloc(64, (scratch + 16) * sizeof(float));
    for (size_t e = 0; e < scratch + 16; e++) /* a read before a write shows */
      sc[p][e] = NAN;
  }
  for (int q = 0; q < nk; q++) {
#pragma omp parallel for num_threads(3) schedule(static, 1) if (threads)
    for (int p = 0; p < n; p++)
      fn[q]((void *const *)B->p, 1, cut[p], cut[p + 1], sc[p]);
  }
  for (int p = 0; p < n; p++)
    free(sc[p]);
  free(sc);
}

/* ---- the check ------------------------------------------------------------------- */

static float *elem(const Bufs *B, Addr a, long r, long e)
{
  return B->p[a.slot] + a.off + a.tstride + r * a.ld + e;
}

/* Draw the leaves and compute the reference; ref[r][i] per row and node. */
static double ***reference(Case *k, const Lay *L, Bufs *B)
{
  const Cell *c = k->c;
  double ***ref = calloc((size_t)k->R, sizeof *ref);
  for (long r = 0; r < k->R; r++) {
    ref[r] = calloc((size_t)c->nnode, sizeof **ref);
    for (int i = 0; i < c->nnode; i++)
      ref[r][i] = calloc((size_t)k->numel[i] + 1, sizeof ***ref);
  }
  for (int tries = 0;; tries++) {
    cr_assert(tries < 100, "cannot draw values away from the kinks of %s", c->name);
    for (int i = 0; i < c->nnode; i++)
      if (isleafop(c->node[i].op)) {
        Addr a = L->at[i];
        for (long r = 0; r < (a.ld ? k->R : 1); r++)
          for (long e = 0; e < k->numel[i]; e++)
            *elem(B, a, r, e) = (float)uni();
      }
    int ok = 1;
    for (long r = 0; r < k->R; r++) {
      for (int i = 0; i < c->nnode; i++)
        if (isleafop(c->node[i].op))
          for (long e = 0; e < k->numel[i]; e++)
            ref[r][i][e] = *elem(B, L->at[i], r, e);
      cell_eval(c, &k->env, ref[r], PREC_F32);
      for (int i = 0; i < c->nnode; i++) {
        int kink = c->node[i].op == OP_RELU || c->node[i].op == OP_STEP;
        for (long e = 0; e < k->numel[i]; e++) {
          ok &= isfinite(ref[r][i][e]);
          if (kink)
            ok &= fabs(ref[r][c->node[i].arg[0]][e]) >= 1e-3;
        }
      }
    }
    if (ok)
      return ref;
  }
}

typedef struct Err {
  double max;
  char where[512];
  int ncmp, nacc;
} Err;

static void note(Err *E, double err, const Cell *c, int i, const char *what, long r, long e, double got, double want)
{
  if (!(err <= E->max)) {
    E->max = err;
    snprintf(E->where, sizeof E->where, "%s of node %d '%s' (%s), row %ld element %ld: kernel %.9g, interp %.9g",
             what, i, c->node[i].name ? c->node[i].name : "", opinfo[c->node[i].op].spelling, r, e, got, want);
  }
}

static Err compare(const Case *k, const Lay *L, const Bufs *B, double ***ref)
{
  const Cell *c = k->c;
  Err E = {0};
  for (int i = 0; i < c->nnode; i++) {
    if (L->kern[i] < 0)
      continue;
    long n = k->numel[i];
    double big = 1e-6;
    for (long r = 0; r < k->R; r++)
      for (long e = 0; e < n; e++)
        big = fmax(big, fabs(ref[r][i][e]));
    if (L->at[i].slot >= 0 && !L->clobbered[i]) {
      E.ncmp++;
      for (long r = 0; r < k->R; r++)
        for (long e = 0; e < n; e++) {
          double got = *elem(B, L->at[i], r, e), d = fabs(got - ref[r][i][e]) / big;
          note(&E, d, c, i, "value", r, e, got, ref[r][i][e]);
        }
    }
    Addr a = L->acc[i];
    if (a.slot >= 0) {
      E.nacc++;
      double bigi = big;
      for (long r = 0; r < k->R; r++)
        for (long e = 0; e < n; e++)
          bigi = fmax(bigi, fabs(B->init[a.slot][a.off + a.tstride + r * a.ld + e]));
      for (long r = 0; r < k->R; r++)
        for (long e = 0; e < n; e++) {
          double init = B->init[a.slot][a.off + a.tstride + r * a.ld + e];
          double got = *elem(B, a, r, e), d = fabs(got - (init + ref[r][i][e])) / bigi;
          note(&E, d, c, i, "acc", r, e, got - init, ref[r][i][e]);
        }
    }
  }
  return E;
}

/* Compile, run over several splits of [0, R) (bitwise equal), compare. */
static void check(Jit *j, Case *k, int phases)
{
  Lay L;
  Bufs B;
  make_layout(k, phases, &L, &B);
  double ***ref = reference(k, &L, &B);
  KernFn fn[2];
  size_t scratch;
  compile(j, k, &L, &B, fn, &scratch);

  long R = k->R;
  long cuts[6][64];
  int ncut[6] = {0}, threaded[6] = {0};
  cuts[0][0] = 0, cuts[0][1] = R, ncut[0] = 1;
  int nsplit = 1;
  if (R > 1) {
    cuts[1][0] = 0, cuts[1][1] = 1, cuts[1][2] = R, ncut[1] = 2;
    nsplit = 2;
  }
  if (R > 6) {
    long c5[] = {0, 5, 6, R};
    memcpy(cuts[2], c5, sizeof c5), ncut[2] = 3;
    int n = 0;
    cuts[3][0] = 0;
    for (long r = 3; r < R && n < 60; r += 3)
      cuts[3][++n] = r;
    cuts[3][++n] = R, ncut[3] = n;
    long x = 1 + (long)((uni() + 1) / 2 * (double)(R - 2));
    cuts[4][0] = 0, cuts[4][1] = x, cuts[4][2] = R, ncut[4] = 2;
    memcpy(cuts[5], cuts[3], sizeof cuts[3]), ncut[5] = ncut[3], threaded[5] = 1;
    nsplit = 6;
  }
  float **first = calloc((size_t)B.nslot, sizeof *first);
  for (int s = 0; s < nsplit; s++) {
    reset(&B, &L, k);
    run(fn, L.nk, &B, scratch, cuts[s], ncut[s], threaded[s]);
    for (int q = 0; q < B.nslot; q++) {
      size_t sz = (size_t)B.len[q] * sizeof(float);
      if (s == 0) {
        first[q] = malloc(sz);
        memcpy(first[q], B.p[q], sz);
      } else {
        long e = 0;
        while (e < B.len[q] && !memcmp(&first[q][e], &B.p[q][e], sizeof(float)))
          e++;
        int owner = -1;
        for (int i = 0; i < k->c->nnode && owner < 0; i++)
          if (L.at[i].slot == q || L.acc[i].slot == q || (L.gemm[i] && L.pack[i].slot == q))
            owner = i;
        cr_assert(e == B.len[q], "%s (%s): slot %d (node %d) differs between splits 0 and %d at float %ld: %.9g, %.9g",
                  k->c->name, phases ? "phases" : "all", q, owner, s, e, e < B.len[q] ? first[q][e] : 0.0,
                  e < B.len[q] ? B.p[q][e] : 0.0);
      }
    }
  }
  Err E = compare(k, &L, &B, ref);
  int ngemm = 0, ntemp = 0, nview = 0, nin = 0, nplace = 0;
  for (int i = 0; i < k->c->nnode; i++) {
    ngemm += L.gemm[i];
    ntemp += L.kern[i] >= 0 && L.kind[i] == K_TEMP;
    nview += L.kern[i] >= 0 && L.kind[i] == K_VIEW;
    nin += L.kern[i] >= 0 && L.kind[i] == K_INCONCAT;
    nplace += L.kern[i] >= 0 && L.kind[i] == K_INPLACE;
  }
  seen.temps += ntemp, seen.views += nview, seen.inconcat += nin, seen.inplace += nplace, seen.accs += E.nacc;
  seen.gemms += ngemm;
  cr_log_info("%-14s %-6s R=%-2ld n=%-2ld: %2d values, %2d temps, %d views, %d in concat, %d in place, %2d accs, "
              "%d GEMMs, scratch %5zu floats, max error %.2g",
              k->c->name, phases ? "phases" : "all", R, k->numel[k->c->state[0]], E.ncmp, ntemp, nview, nin, nplace,
              E.nacc, ngemm, scratch, E.max);
  cr_expect(E.max <= 1e-5, "%s (%s, R=%ld): max relative error %.3g at %s", k->c->name, phases ? "phases" : "all",
            R, E.max, E.where);

  for (int q = 0; q < B.nslot; q++)
    free(first[q]);
  free(first);
  for (long r = 0; r < R; r++) {
    for (int i = 0; i < k->c->nnode; i++)
      free(ref[r][i]);
    free(ref[r]);
  }
  free(ref);
  free_layout(&L, &B);
}

static Jit *newjit(void)
{
  Jit *j = NULL;
  char err[512];
  cr_assert_eq(jit_new(&j, err, sizeof err), RNNC_OK, "%s", err);
  return j;
}

static Module *cells_module(void)
{
  Module *m = module_new();
  const Source *src = source_new(m, "<test>", cells_text);
  if (parse(m, src) != RNNC_OK || verify(m) != RNNC_OK) {
    diags_print(stderr, &m->diags);
    cr_assert_fail("the test cells do not verify");
  }
  return m;
}

/* c and its backward cell, every dim = size (or dims[] in order), R rows, both layouts. */
static void check_cell(Jit *j, Module *m, const char *name, const long *dims, long R, int portable)
{
  Cell *c = cell_find(m, name);
  cr_assert(c, "no cell %s", name);
  Grad *gr = autodiff_cell(m, c);
  cr_assert(gr, "autodiff_cell(%s)", name);
  Cell *cells[2] = {c, gr->bwd};
  for (int q = 0; q < 2; q++) {
    Case k = {.m = m, .c = cells[q], .R = R, .portable = portable};
    for (int d = 0; d < k.c->ndim; d++)
      env_set(m->arena, &k.env, k.c->dim[d], dims[d < 2 ? d : 1]);
    k.numel = calloc((size_t)k.c->nnode, sizeof *k.numel);
    k.start = calloc((size_t)k.c->nnode, sizeof *k.start);
    for (int i = 0; i < k.c->nnode; i++) {
      k.numel[i] = node_numel(k.c, i, &k.env);
      if (k.c->node[i].op == OP_SLICE) {
        const char *bad;
        cr_assert(dim_eval(k.c->node[i].start, &k.env, &k.start[i], &bad));
      }
    }
    rs = 1000 + (uint64_t)(dims[0] * 31 + dims[1] * 7 + q);
    check(j, &k, 0);
    check(j, &k, 1);
    free(k.numel);
    free(k.start);
  }
}

/* names at every size, both layouts, and their backward cells. */
static void check_sizes(const char *const *names, int n)
{
  static const long sizes[][2] = {{1, 1}, {7, 7}, {13, 13}, {33, 33}, {13, 33}};
  static const long rows[] = {1, 37, 37, 21, 37};
  Jit *j = newjit();
  for (int s = 0; s < 5; s++) {
    Module *m = cells_module();
    for (int q = 0; q < n; q++)
      check_cell(j, m, names[q], sizes[s], rows[s], 0);
    module_free(m);
  }
  jit_free(j);
}

Test(phasegen, lstm_and_backward)
{
  const char *n[] = {"lstm"};
  check_sizes(n, 1);
  /* d_gates = concat(d_i, d_f, d_g, d_o): its operands written in place */
  cr_expect(seen.temps > 0 && seen.views > 0 && seen.inconcat > 0 && seen.inplace > 0 && seen.accs > 0 &&
                seen.gemms > 0,
            "temps %d views %d in concat %d in place %d accs %d GEMMs %d", seen.temps, seen.views, seen.inconcat,
            seen.inplace, seen.accs, seen.gemms);
}

Test(phasegen, gru_and_backward)
{
  const char *n[] = {"gru"};
  check_sizes(n, 1);
}

Test(phasegen, rnn_and_backward)
{
  const char *n[] = {"rnn"};
  check_sizes(n, 1);
}

Test(phasegen, mgu_and_backward)
{
  const char *n[] = {"mgu"};
  check_sizes(n, 1);
}

Test(phasegen, concat_slice_split_relu_step_log_exp_div)
{
  const char *n[] = {"mix"};
  check_sizes(n, 1);
  cr_expect(seen.temps > 0 && seen.views > 0 && seen.inconcat > 0 && seen.inplace > 0 && seen.accs > 0 &&
                seen.gemms > 0,
            "temps %d views %d in concat %d in place %d accs %d GEMMs %d", seen.temps, seen.views, seen.inconcat,
            seen.inplace, seen.accs, seen.gemms);
}

/* PhaseSpec.portable: 4-wide SSE2 vectors and portable GEMMs, whatever the host. */
Test(phasegen, portable)
{
  static const long dims[2] = {13, 11};
  Jit *j = newjit();
  Module *m = cells_module();
  const char *names[] = {"lstm", "gru", "mix"};
  for (int q = 0; q < 3; q++)
    check_cell(j, m, names[q], dims, 29, 1);
  module_free(m);
  jit_free(j);
}

/* Each vector level up to the host's (irb_target_isa), the one rnnc compile
 * --cpu sets: 4-wide (SSE2); 8-wide with AVX2; with AVX-512F 16-wide
 * vectors, then one of 8 (25 = 16 + 8 + 1 and 24 = 16 + 8 elements a row)
 * and single elements. Against the interpreter, and which SLEEF widths each
 * level's kernels call. */
Test(phasegen, vector_widths)
{
  static const long dims[2] = {25, 24};
  const char *names[] = {"lstm", "gru", "mix"};
  int host = irb_isa();
  Jit *j = newjit();
  Module *m = cells_module();
  for (int isa = ISA_SSE2; isa <= host; isa++) {
    memset(seen.sleef, 0, sizeof seen.sleef);
    int old = irb_target_isa(isa);
    for (int q = 0; q < 3; q++)
      check_cell(j, m, names[q], dims, 29, 0);
    irb_target_isa(old);
    cr_expect(isa == ISA_SSE2 ? seen.sleef[0] > 0 : seen.sleef[0] == 0, "ISA %d: %d modules call the 4-wide tanh",
              isa, seen.sleef[0]);
    cr_expect(isa == ISA_SSE2 ? seen.sleef[1] == 0 : seen.sleef[1] > 0, "ISA %d: %d modules call the 8-wide tanh",
              isa, seen.sleef[1]);
    cr_expect(isa == ISA_AVX512 ? seen.sleef[2] > 0 : seen.sleef[2] == 0, "ISA %d: %d modules call the 16-wide tanh",
              isa, seen.sleef[2]);
  }
  module_free(m);
  jit_free(j);
}

/* An unbound dim and a slice past the end are errors with a message. */
Test(phasegen, unbound_dim_is_an_error)
{
  Jit *j = newjit();
  Module *m = module_new();
  Cell *c = cell_find(m, "lstm");
  Env env = {0};
  env_set(m->arena, &env, c->dim[0], 4); /* I only */
  char *mask = calloc((size_t)c->nnode, 1);
  Addr *at = calloc((size_t)c->nnode, sizeof *at);
  for (int i = 0; i < c->nnode; i++)
    at[i] = addr_none();
  PhaseSpec ps = {.c = c, .env = &env, .nrows = 4, .mask = mask, .at = at};
  LLVMModuleRef mod = LLVMModuleCreateWithNameInContext("bad", jit_context(j));
  char err[512];
  size_t sc = 1;
  int rc = phasegen(jit_context(j), mod, "k", &ps, &sc, err, sizeof err);
  cr_assert_eq(rc, RNNC_EINPUT);
  cr_assert_str_eq(err, "cell 'lstm': dimension 'H' is not bound");
  cr_assert_eq(sc, 0);
  LLVMDisposeModule(mod);
  free(mask);
  free(at);
  module_free(m);
  jit_free(j);
}
