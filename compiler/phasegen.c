/* phasegen.c — LLVM IR for a fused kernel that computes part of a cell's step
 * (one phase: PRE over T·B rows, LOOP over the B rows of a step, POST) over a
 * range of rows.
 * require: a verified cell, its dims bound; a PhaseSpec (ir.h,
 * "compiler/phasegen.c"). produce: in the caller's module, the kernel
 *   void sym(void *const *buf, int64_t t, int64_t lo, int64_t hi, float *scratch)
 * (KernFn) and, per GEMM node i, the GEMM functions sym_g<i>_* (gemm_share_fn:
 * unless a GEMM of the same spec was generated before).
 *
 * Rows [lo, hi) run in blocks of RB rows (chosen from the sizes: the block's
 * values stay in L2; a multiple of the GEMM's register rows when the kernel
 * has GEMM nodes); within a block every masked node in node order, each a
 * loop over the rows of the block and its elements.
 *
 * Where values are. Element e of node i in row r (absolute, in [0, nrows)):
 *   at[i].slot >= 0   (float *)buf[slot] + off + t·tstride + r·ld + e
 *                     (ld 0: a param or a broadcast, the same for every row)
 *   temporary         a masked node with at[i].slot < 0: scratch + toff[i] +
 *                     (r - r0)·numel + e, where r0 is the block's first row;
 *                     RB·numel floats, reused once its last reader has run
 *   constant          a const or zeros leaf is read as its value, never from
 *                     memory (a masked one with a slot is also written there)
 * Reading any other node without a slot is an internal error (die).
 *
 * Views cost nothing. A masked split or slice i of a with at[i].slot >= 0 is
 * a view when at[i].slot == at[a].slot, at[i].ld == at[a].ld, at[i].tstride
 * == at[a].tstride and at[i].off == at[a].off + s (s: the first element it
 * takes, k·numel for part k of a split); no code is emitted for it. Likewise
 * an operand j of a masked concat i (both with slots) that lies at offset o
 * of the concat (at[j] as at[i] but off == at[i].off + o) was written in
 * place and is not copied. Any other split, slice or concat is a copy.
 *
 * Overlap. A node's storage may be an elementwise operand's own (same
 * element, same row: computed in place); nothing else a node writes may
 * overlap what it reads. acc[i] must not overlap anything node i reads.
 *
 * Operations, per row of the block:
 *   elementwise   vectors of W floats (irb_isa: W = 16 with AVX-512F on the
 *                 target, 8 with AVX2 + FMA, 4 with ps->portable or without
 *                 them), SLEEF's vector u10 tanh, exp and log of that width
 *                 (Sleef_*f16_u10avx512f, Sleef_*f8_u10avx2,
 *                 Sleef_*f4_u10sse2); with W = 16, one vector of 8 for the
 *                 next 8 elements of a row left; the last n % 8 (n % W)
 *                 one by one, scalar SLEEF (Sleef_*f_u10); sigmoid = 1 / (1 +
 *                 exp(-x)). A one-element operand is broadcast. Which
 *                 function computes an element depends only on its index e:
 *                 results do not depend on rows. The 16-wide functions make
 *                 C1's forward step 0.85-0.9x the time on Zen 4 (tanh: 1.45
 *                 against 2.14 ns an element, exp 0.28 against 0.54).
 *   matvec        loops: y[o] = Σ_k A[o, k] v[k], k increasing, as the
 *                 interpreter sums (ir/interp.c)
 *   matvec_t      y[j] = Σ_i A[i, j] v[i], i increasing: y is zeroed, then
 *                 y[j] += A[i, j] v[i] for each i, vectorized over j
 *   outer         Y[i, j] = a[i] b[j], vectorized over j
 *   GEMM nodes    gemm[i]: the rows [r0, r1) of one GEMM over all nrows rows
 *                 (gemm_gen2's _rows, M = nrows, W packed at pack[i]), so
 *                 the value of a row does not depend on the blocks. A
 *                 temporary's GEMM origin is its region shifted back by r0
 *                 rows (only rows [r0, r1) are touched). A GEMM node whose
 *                 vector is a constant or has ld 0 runs as loops instead.
 *   acc[i]        after node i in the block: acc[r, e] += value[r, e]
 * Scratch: the temporaries' regions (64-byte aligned), then the largest
 * scratch of the kernel's GEMMs.
 *
 * Measured (LSTM at H = 512, B = 64, one thread, a loaded 2-core machine):
 * the LOOP kernel takes 1.70-1.75 ms with RB = 6, 12 or 24 and 1.92 ms with
 * RB = 64 (the GEMM dominates). Computing runs of same-size elementwise
 * nodes in one loop, values in registers, was slower (0.29 -> 0.32 ms for the
 * elementwise work alone, 0.08-0.10 -> 0.11 ms in backward): every SLEEF call
 * clobbers the vector registers, so the live values spill anyway.
 * Nothing here is JIT-specific: no addresses, no triple, scratch from the
 * caller. */
#include <string.h>

#include <llvm-c/Core.h>

#include "ir.h"

enum {
  ROWFLOATS = 65536, /* floats of the nodes of one block: 256 KiB, in L2 */
  MAXRB = 64,        /* rows per block at most */
  MAXW = 16,         /* floats per vector at most (AVX-512) */
  ALIGNF = 16,       /* scratch regions start at multiples of 64 bytes */
};

enum { W_NONE, W_STORE, W_TEMP, W_CONST };
enum { V_PTR, V_BCAST, V_CONST, V_ABSENT };

/* An operand of an elementwise row loop: a pointer to its first element of
 * the row, a pointer to one element broadcast, or a constant. */
typedef struct Val {
  int kind;
  LLVMValueRef p;
  double k;
} Val;

typedef struct G {
  IRB ir;
  int W; /* floats per vector: 4, 8 or MAXW (the widest piece, Pieces) */
  const PhaseSpec *ps;
  const Cell *c;
  const char *sym;
  Arena *ar;
  long *numel, *start;
  int *where;            /* per node: W_* */
  LLVMValueRef *base;    /* W_STORE: float * of row 0 at step t */
  LLVMValueRef *accbase; /* acc[i].slot >= 0: the same for acc[i] */
  LLVMValueRef *packbase; /* gemm[i]: W packed, pack[i] */
  int64_t *toff;         /* W_TEMP: floats into scratch */
  int64_t RB, gemmoff;   /* rows per block; where the GEMM scratch starts */
  LLVMValueRef scratch, r0, r1, nb; /* the kernel's scratch; the current block */
} G;

static int isleaf(int op) { return op == OP_INPUT || op == OP_STATE || op == OP_PARAM; }
static int isconstleaf(int op) { return op == OP_CONST || op == OP_ZEROS; }

static LLVMValueRef gepc(G *g, LLVMValueRef base, int64_t off)
{
  IRB *ir = &g->ir;
  return off ? irb_gep(ir, base, irb_i64(ir, off)) : base;
}

/* ---- values ---------------------------------------------------------------- */

/* Lanes of ty: 1 for f32, else its vector's. */
static unsigned lanes(G *g, LLVMTypeRef ty) { return ty == g->ir.f32 ? 1 : LLVMGetVectorSize(ty); }

/* f32 for width 1, else a vector of width floats. */
static LLVMTypeRef vtype(G *g, int width)
{
  return width == 1 ? g->ir.f32 : LLVMVectorType(g->ir.f32, (unsigned)width);
}

/* A float constant of type ty (f32, or a vector splatted). */
static LLVMValueRef cst(G *g, LLVMTypeRef ty, double v)
{
  IRB *ir = &g->ir;
  LLVMValueRef s = LLVMConstReal(ir->f32, v);
  if (ty == ir->f32)
    return s;
  LLVMValueRef e[MAXW];
  unsigned n = lanes(g, ty);
  for (unsigned k = 0; k < n; k++)
    e[k] = s;
  return LLVMConstVector(e, n);
}

/* s in every lane of the vector type ty. Not irb_splat: the lane index is an
 * i64 and the shuffle is named, as this file always emitted them. */
static LLVMValueRef splat(G *g, LLVMValueRef s, LLVMTypeRef ty)
{
  IRB *ir = &g->ir;
  LLVMValueRef poison = LLVMGetPoison(ty);
  LLVMValueRef v = LLVMBuildInsertElement(ir->b, poison, s, LLVMConstInt(ir->i64, 0, 0), "");
  LLVMValueRef mask = LLVMConstNull(LLVMVectorType(LLVMInt32TypeInContext(ir->cx), lanes(g, ty)));
  return LLVMBuildShuffleVector(ir->b, v, poison, mask, "splat");
}

/* The pieces a row of n elements runs in: vectors of W, then (W = 16) at most
 * one of 8, then single elements. Piece k: cnt[k] runs of w[k] elements from
 * element lo[k]. */
typedef struct Pieces {
  int n, w[3];
  long lo[3], cnt[3];
} Pieces;

static Pieces pieces(const G *g, long n)
{
  Pieces p = {0};
  int ws[3] = {g->W, g->W == 16 ? 8 : 0, 1};
  long done = 0;
  for (int k = 0; k < 3; k++) {
    long c = ws[k] ? (n - done) / ws[k] : 0;
    if (c > 0) {
      p.w[p.n] = ws[k], p.lo[p.n] = done, p.cnt[p.n] = c;
      p.n++;
      done += c * ws[k];
    }
  }
  return p;
}

/* The first element of run iv of piece k. */
static LLVMValueRef at_piece(G *g, LLVMValueRef iv, const Pieces *p, int k)
{
  LLVMValueRef e = irb_mulc(&g->ir, iv, p->w[k]);
  return p->lo[k] ? irb_add(&g->ir, e, irb_i64(&g->ir, p->lo[k])) : e;
}

/* Elements [e, e + lanes(ty)) of v. */
static LLVMValueRef vload(G *g, Val v, LLVMValueRef e, LLVMTypeRef ty)
{
  IRB *ir = &g->ir;
  if (v.kind == V_CONST)
    return cst(g, ty, v.k);
  if (v.kind == V_BCAST) {
    LLVMValueRef s = LLVMBuildLoad2(ir->b, ir->f32, v.p, "");
    return ty == ir->f32 ? s : splat(g, s, ty);
  }
  return irb_loadu(ir, ty, irb_gep(ir, v.p, e));
}

static void vstore(G *g, LLVMValueRef x, LLVMValueRef p, LLVMValueRef e)
{
  IRB *ir = &g->ir;
  irb_storeu(ir, x, irb_gep(ir, p, e));
}

/* name(x) for x of type ty: SLEEF's u10 function of that width, declared once
 * per module (pure: memory(none)). */
static LLVMValueRef sleef(G *g, const char *fn, LLVMValueRef x, LLVMTypeRef ty)
{
  IRB *ir = &g->ir;
  char name[64];
  if (ty == ir->f32)
    snprintf(name, sizeof name, "Sleef_%sf_u10", fn);
  else
    snprintf(name, sizeof name, "Sleef_%sf%u_u10%s", fn, lanes(g, ty),
             lanes(g, ty) == 16 ? "avx512f" : lanes(g, ty) == 8 ? "avx2" : "sse2");
  return irb_call1(ir, name, ty, x);
}

/* op on a (and b), of type ty; op < 0 is the identity (a copy). */
static LLVMValueRef apply(G *g, int op, LLVMValueRef a, LLVMValueRef b, LLVMTypeRef ty)
{
  IRB *ir = &g->ir;
  LLVMBuilderRef B = ir->b;
  switch (op) {
  case -1: return a;
  case OP_ADD: return LLVMBuildFAdd(B, a, b, "");
  case OP_SUB: return LLVMBuildFSub(B, a, b, "");
  case OP_MUL: return LLVMBuildFMul(B, a, b, "");
  case OP_DIV: return LLVMBuildFDiv(B, a, b, "");
  case OP_NEG: return LLVMBuildFNeg(B, a, "");
  case OP_SIGMOID: {
    LLVMValueRef ex = sleef(g, "exp", LLVMBuildFNeg(B, a, ""), ty);
    return LLVMBuildFDiv(B, cst(g, ty, 1), LLVMBuildFAdd(B, cst(g, ty, 1), ex, ""), "");
  }
  case OP_TANH: return sleef(g, "tanh", a, ty);
  case OP_EXP: return sleef(g, "exp", a, ty);
  case OP_LOG: return sleef(g, "log", a, ty);
  case OP_RELU: /* a > 0 ? a : 0, NaN -> 0 as in C */
    return LLVMBuildSelect(B, LLVMBuildFCmp(B, LLVMRealOGT, a, cst(g, ty, 0), ""), a, cst(g, ty, 0), "");
  case OP_STEP:
    return LLVMBuildSelect(B, LLVMBuildFCmp(B, LLVMRealOGT, a, cst(g, ty, 0), ""), cst(g, ty, 1), cst(g, ty, 0),
                           "");
  }
  die("phasegen: op '%s' is not elementwise", opinfo[op].spelling);
}

/* y[e] = op(a[e], b[e]) for e < n, one row, in pieces: a loop of vectors,
 * the elements left one by one (b.kind V_ABSENT for a unary op). */
static void ew_row(G *g, int op, LLVMValueRef y, Val a, Val b, long n)
{
  IRB *ir = &g->ir;
  Pieces p = pieces(g, n);
  for (int k = 0; k < p.n; k++) {
    LLVMTypeRef ty = vtype(g, p.w[k]);
    if (p.w[k] > 1) {
      IRLoop l;
      LLVMValueRef iv = irb_loop_begin(ir, &l, irb_i64(ir, 0), irb_i64(ir, p.cnt[k]), 1, "v");
      LLVMValueRef e = at_piece(g, iv, &p, k);
      LLVMValueRef va = vload(g, a, e, ty), vb = b.kind == V_ABSENT ? NULL : vload(g, b, e, ty);
      vstore(g, apply(g, op, va, vb, ty), y, e);
      irb_loop_end(ir, &l);
      continue;
    }
    for (long j = p.lo[k]; j < p.lo[k] + p.cnt[k]; j++) {
      LLVMValueRef e = irb_i64(ir, j);
      LLVMValueRef va = vload(g, a, e, ty), vb = b.kind == V_ABSENT ? NULL : vload(g, b, e, ty);
      LLVMBuildStore(ir->b, apply(g, op, va, vb, ty), irb_gep(ir, y, e));
    }
  }
}

/* ---- where nodes are -------------------------------------------------------- */

static const char *nodename(Arena *a, const Node *nd)
{
  return nd->name ? aprintf(a, "node '%s'", nd->name) : aprintf(a, "an anonymous '%s'", opinfo[nd->op].spelling);
}

/* &node i [row r0 + rr][0]. */
static LLVMValueRef rowptr(G *g, int i, LLVMValueRef rr)
{
  IRB *ir = &g->ir;
  if (g->where[i] == W_TEMP)
    return irb_gep(ir, gepc(g, g->scratch, g->toff[i]), irb_mulc(ir, rr, g->numel[i]));
  if (g->where[i] != W_STORE)
    die("phasegen: cell '%s': %s is read but has no storage", g->c->name, nodename(g->ar, &g->c->node[i]));
  int64_t ld = g->ps->at[i].ld;
  if (ld == 0)
    return g->base[i];
  return irb_gep(ir, g->base[i], irb_mulc(ir, irb_add(ir, g->r0, rr), ld));
}

/* Node i as an operand, from element off of row rr; bcast: a one-element
 * operand broadcast. */
static Val operand(G *g, int i, LLVMValueRef rr, long off, int bcast)
{
  const Node *nd = &g->c->node[i];
  if (isconstleaf(nd->op))
    return (Val){V_CONST, NULL, nd->op == OP_CONST ? (double)(float)nd->cval : 0.0};
  return (Val){bcast ? V_BCAST : V_PTR, gepc(g, rowptr(g, i, rr), off), 0};
}

/* The origin (row 0) of node i for a GEMM and its leading dimension: a
 * temporary's region shifted back by r0 rows (a plain GEP: only rows of the
 * block are touched through it). */
static LLVMValueRef origin(G *g, int i, int64_t *ld)
{
  IRB *ir = &g->ir;
  if (g->where[i] == W_STORE) {
    *ld = g->ps->at[i].ld;
    return g->base[i];
  }
  if (g->where[i] != W_TEMP)
    die("phasegen: GEMM operand %d has no storage", i);
  *ld = g->numel[i];
  LLVMValueRef off = LLVMBuildNSWSub(ir->b, irb_i64(ir, g->toff[i]), irb_mulc(ir, g->r0, g->numel[i]), "");
  return LLVMBuildGEP2(ir->b, ir->f32, g->scratch, &off, 1, "");
}

/* node j lies in node i's storage at element offset o (a view) */
static int isview(G *g, int i, int j, long o)
{
  const Addr *a = &g->ps->at[i], *b = &g->ps->at[j];
  return a->slot >= 0 && b->slot == a->slot && b->ld == a->ld && b->tstride == a->tstride && b->off == a->off + o;
}

/* ---- one emitter per op kind ------------------------------------------------- */

/* for rr in [0, nb): body(rr), with the builder in the loop */
#define ROWS(g, rr, ...)                                                                           \
  do {                                                                                             \
    IRLoop lr_;                                                                                    \
    LLVMValueRef rr = irb_loop_begin(&(g)->ir, &lr_, irb_i64(&(g)->ir, 0), (g)->nb, 1, "row");     \
    __VA_ARGS__;                                                                                   \
    irb_loop_end(&(g)->ir, &lr_);                                                                  \
  } while (0)

static void gen_ew(G *g, int i)
{
  const Node *nd = &g->c->node[i];
  int a = nd->arg[0], b = nd->narg == 2 ? nd->arg[1] : -1;
  long n = g->numel[i];
  ROWS(g, rr, {
    Val va = operand(g, a, rr, 0, g->numel[a] == 1);
    Val vb = b < 0 ? (Val){V_ABSENT, NULL, 0} : operand(g, b, rr, 0, g->numel[b] == 1);
    ew_row(g, nd->op, rowptr(g, i, rr), va, vb, n);
  });
}

/* y[r, dst + e] = a[r, src + e] for e < n */
static void gen_copy(G *g, int y, long dst, int a, long src, long n)
{
  ROWS(g, rr, {
    Val va = operand(g, a, rr, src, 0);
    ew_row(g, -1, gepc(g, rowptr(g, y, rr), dst), va, (Val){V_ABSENT, NULL, 0}, n);
  });
}

/* A float load of v at element index e (a constant or a pointer). */
static LLVMValueRef sload(G *g, Val v, LLVMValueRef e) { return vload(g, v, e, g->ir.f32); }

/* A [m, n] @ v [n] -> y [m]: y[o] = Σ_k A[o, k] v[k], k increasing */
static void gen_matvec(G *g, int i)
{
  IRB *ir = &g->ir;
  const Node *nd = &g->c->node[i];
  int A = nd->arg[0], v = nd->arg[1];
  long m = g->numel[i], n = g->numel[v];
  ROWS(g, rr, {
    LLVMValueRef pa = rowptr(g, A, rr), py = rowptr(g, i, rr);
    Val vv = operand(g, v, rr, 0, 0);
    IRLoop lo, lk;
    LLVMValueRef o = irb_loop_begin(ir, &lo, irb_i64(ir, 0), irb_i64(ir, m), 1, "o");
    LLVMBasicBlockRef pre = LLVMGetInsertBlock(ir->b);
    LLVMValueRef k = irb_loop_begin(ir, &lk, irb_i64(ir, 0), irb_i64(ir, n), 1, "k");
    /* the sum is a phi of the k loop's header */
    LLVMPositionBuilderBefore(ir->b, LLVMGetFirstInstruction(lk.head));
    LLVMValueRef s = LLVMBuildPhi(ir->b, ir->f32, "s");
    LLVMValueRef zero = cst(g, ir->f32, 0);
    LLVMAddIncoming(s, &zero, &pre, 1);
    LLVMPositionBuilderAtEnd(ir->b, LLVMGetNextBasicBlock(lk.head));
    LLVMValueRef ok = irb_add(ir, irb_mulc(ir, o, n), k);
    LLVMValueRef a = LLVMBuildLoad2(ir->b, ir->f32, irb_gep(ir, pa, ok), "");
    LLVMValueRef s1 = LLVMBuildFAdd(ir->b, s, LLVMBuildFMul(ir->b, a, sload(g, vv, k), ""), "");
    LLVMBasicBlockRef latch = LLVMGetInsertBlock(ir->b);
    irb_loop_end(ir, &lk);
    LLVMAddIncoming(s, &s1, &latch, 1);
    LLVMBuildStore(ir->b, s, irb_gep(ir, py, o));
    irb_loop_end(ir, &lo);
  });
}

/* matvec_t(A [m, n], v [m]) -> y [n]: y = 0, then y[j] += A[i, j] v[i] for
 * i = 0 .. m-1 (each y[j] summed in increasing i), vectorized over j */
static void gen_matvect(G *g, int i)
{
  IRB *ir = &g->ir;
  const Node *nd = &g->c->node[i];
  int A = nd->arg[0], v = nd->arg[1];
  long n = g->numel[i], m = g->numel[v];
  ROWS(g, rr, {
    LLVMValueRef pa = rowptr(g, A, rr), py = rowptr(g, i, rr);
    Val vv = operand(g, v, rr, 0, 0), none = {V_ABSENT, NULL, 0};
    ew_row(g, -1, py, (Val){V_CONST, NULL, 0}, none, n);
    IRLoop li;
    LLVMValueRef k = irb_loop_begin(ir, &li, irb_i64(ir, 0), irb_i64(ir, m), 1, "i");
    Val vi = vv.kind == V_CONST ? vv : (Val){V_BCAST, irb_gep(ir, vv.p, k), 0};
    /* y += A[k, :] * v[k]: ew_row with a MUL then an ADD per element */
    LLVMValueRef arow = irb_gep(ir, pa, irb_mulc(ir, k, n));
    Pieces p = pieces(g, n);
    for (int q = 0; q < p.n; q++) {
      LLVMTypeRef ty = vtype(g, p.w[q]);
      IRLoop le;
      LLVMValueRef iv = irb_loop_begin(ir, &le, irb_i64(ir, 0), irb_i64(ir, p.cnt[q]), 1, "j");
      LLVMValueRef e = at_piece(g, iv, &p, q);
      LLVMValueRef ae = vload(g, (Val){V_PTR, arow, 0}, e, ty);
      LLVMValueRef ye = vload(g, (Val){V_PTR, py, 0}, e, ty);
      LLVMValueRef x = LLVMBuildFAdd(ir->b, ye, LLVMBuildFMul(ir->b, ae, vload(g, vi, e, ty), ""), "");
      vstore(g, x, py, e);
      irb_loop_end(ir, &le);
    }
    irb_loop_end(ir, &li);
  });
}

/* outer(a [m], b [n]) -> Y [m, n]: Y[i, j] = a[i] b[j] */
static void gen_outer(G *g, int i)
{
  IRB *ir = &g->ir;
  const Node *nd = &g->c->node[i];
  int a = nd->arg[0], b = nd->arg[1];
  long m = g->numel[a], n = g->numel[b];
  ROWS(g, rr, {
    LLVMValueRef py = rowptr(g, i, rr);
    Val va = operand(g, a, rr, 0, 0), vb = operand(g, b, rr, 0, n == 1);
    IRLoop li;
    LLVMValueRef k = irb_loop_begin(ir, &li, irb_i64(ir, 0), irb_i64(ir, m), 1, "i");
    Val vk = va.kind == V_CONST ? va : (Val){V_BCAST, irb_gep(ir, va.p, k), 0};
    ew_row(g, OP_MUL, irb_gep(ir, py, irb_mulc(ir, k, n)), vk, vb, n);
    irb_loop_end(ir, &li);
  });
}

/* C rows [r0, r1) = v · W^T (matvec) or v · W (matvec_t) by gemm_gen2's
 * _rows, the GEMM over all nrows rows; W packed at pack[i]. */
static int gen_gemm(G *g, int i, size_t *gscratch, char *err, size_t errlen)
{
  IRB *ir = &g->ir;
  const Node *nd = &g->c->node[i];
  int v = nd->arg[1];
  const Addr *pk = &g->ps->pack[i];
  if (pk->slot < 0)
    die("phasegen: GEMM node %d has no packed matrix", i);
  int64_t lda, ldc;
  LLVMValueRef A = origin(g, v, &lda), C = origin(g, i, &ldc);
  GemmSpec s = {.M = g->ps->nrows, .N = g->numel[i], .K = g->numel[v], .lda = lda, .ldb = g->numel[i],
                .ldc = ldc, .flags = g->ps->portable ? GEMM_PORTABLE : 0};
  if (nd->op == OP_MATVEC) {
    s.flags |= GEMM_BT;
    s.ldb = s.K; /* W [N, K] row-major */
  }
  LLVMValueRef rows;
  int rc = gemm_share_fn(g->ps->share, ir->cx, ir->mod, aprintf(g->ar, "%s_g%d", g->sym, i), &s, "_rows", &rows,
                         err, errlen);
  if (rc != RNNC_OK)
    return rc;
  size_t need = gemm_scratchsize(&s);
  if (need > *gscratch)
    *gscratch = need;
  LLVMValueRef args[6] = {A, g->packbase[i], C, g->r0, g->r1,
                          gepc(g, g->scratch, g->gemmoff)};
  LLVMBuildCall2(ir->b, LLVMGlobalGetValueType(rows), rows, args, 6, "");
  return RNNC_OK;
}

/* A GEMM node whose vector is per-row data (not a constant, not ld 0). */
static int gemmable(G *g, int i)
{
  int v = g->c->node[i].arg[1];
  return g->where[v] == W_TEMP || (g->where[v] == W_STORE && g->ps->at[v].ld != 0);
}

/* Node i over the rows of the block, then its acc. */
static int gen_node(G *g, int i, size_t *gscratch, char *err, size_t errlen)
{
  IRB *ir = &g->ir;
  const Node *nd = &g->c->node[i];
  const PhaseSpec *ps = g->ps;
  long n = g->numel[i];
  Val none = {V_ABSENT, NULL, 0};
  switch (opinfo[nd->op].shape_rule) {
  case SH_LEAF:
    if (!isconstleaf(nd->op))
      die("phasegen: cell '%s': leaf %d is in the mask", g->c->name, i);
    if (ps->at[i].slot >= 0) /* a constant given storage: fill it */
      ROWS(g, rr, ew_row(g, -1, rowptr(g, i, rr), operand(g, i, rr, 0, 0), none, n));
    break;
  case SH_EW: gen_ew(g, i); break;
  case SH_MATVEC:
  case SH_MATVECT:
    if (ps->gemm && ps->gemm[i] && gemmable(g, i)) {
      int rc = gen_gemm(g, i, gscratch, err, errlen);
      if (rc != RNNC_OK)
        return rc;
    } else if (nd->op == OP_MATVEC) {
      gen_matvec(g, i);
    } else {
      gen_matvect(g, i);
    }
    break;
  case SH_OUTER: gen_outer(g, i); break;
  case SH_SPLIT:
  case SH_SLICE: {
    long s = nd->op == OP_SPLIT ? nd->k * n : g->start[i];
    if (!isview(g, nd->arg[0], i, s))
      gen_copy(g, i, 0, nd->arg[0], s, n);
    break;
  }
  case SH_CONCAT: {
    long off = 0;
    for (int j = 0; j < nd->narg; j++) {
      int a = nd->arg[j];
      if (!isview(g, i, a, off))
        gen_copy(g, i, off, a, 0, g->numel[a]);
      off += g->numel[a];
    }
    if (off != n)
      die("phasegen: concat of %ld elements into %ld", off, n);
    break;
  }
  default: die("phasegen: op '%s' has no code generator", opinfo[nd->op].spelling);
  }
  if (ps->acc && ps->acc[i].slot >= 0) {
    int64_t ld = ps->acc[i].ld;
    ROWS(g, rr, {
      LLVMValueRef pa =
          ld ? irb_gep(ir, g->accbase[i], irb_mulc(ir, irb_add(ir, g->r0, rr), ld)) : g->accbase[i];
      ew_row(g, OP_ADD, pa, (Val){V_PTR, pa, 0}, operand(g, i, rr, 0, n == 1), n);
    });
  }
  return RNNC_OK;
}

/* ---- sizes ------------------------------------------------------------------ */

static int evaldim(const Cell *c, Dim d, const Env *env, long *v, char *err, size_t errlen)
{
  const char *bad = NULL;
  if (!dim_eval(d, env, v, &bad)) {
    snprintf(err, errlen, "cell '%s': dimension '%s' is not bound", c->name, bad);
    return RNNC_EINPUT;
  }
  return RNNC_OK;
}

/* numel of every node, and each slice's start; RNNC_ESHAPE on a negative
 * size or a slice past the end of its operand (as cellgen checks). */
static int sizes(Arena *a, const Cell *c, const Env *env, long *numel, long *start, char *err, size_t errlen)
{
  for (int i = 0; i < c->nnode; i++) {
    const Node *nd = &c->node[i];
    long n = 1, v;
    for (int k = 0; k < nd->shape.rank; k++) {
      int rc = evaldim(c, nd->shape.d[k], env, &v, err, errlen);
      if (rc != RNNC_OK)
        return rc;
      if (v < 0) {
        snprintf(err, errlen, "cell '%s': %s has a dimension of size %ld", c->name, nodename(a, nd), v);
        return RNNC_ESHAPE;
      }
      n *= v;
    }
    numel[i] = n;
    start[i] = 0;
    if (nd->op == OP_SLICE) {
      int rc = evaldim(c, nd->start, env, &start[i], err, errlen);
      if (rc != RNNC_OK)
        return rc;
      if (start[i] < 0 || start[i] + n > numel[nd->arg[0]]) {
        snprintf(err, errlen, "cell '%s': slice [%ld, %ld) of %s past its %ld elements", c->name, start[i],
                 start[i] + n, nodename(a, &c->node[nd->arg[0]]), numel[nd->arg[0]]);
        return RNNC_ESHAPE;
      }
    }
  }
  return RNNC_OK;
}

/* ---- layout: where each node is, the block, the temporaries ------------------ */

/* where[], the rows per block and each temporary's region (first fit, a
 * region free again once its last reader in the kernel has run). Returns the
 * floats of scratch the temporaries need. */
static int64_t layout(G *g)
{
  const PhaseSpec *ps = g->ps;
  const Cell *c = g->c;
  int nn = c->nnode, hasgemm = 0;
  long rowfloats = 1;
  for (int i = 0; i < nn; i++) {
    int op = c->node[i].op;
    if (ps->mask[i]) {
      if (isleaf(op))
        die("phasegen: cell '%s': leaf %d is in the mask", c->name, i);
      g->where[i] = ps->at[i].slot >= 0 ? W_STORE : isconstleaf(op) ? W_CONST : W_TEMP;
      rowfloats += g->numel[i];
      hasgemm |= ps->gemm && ps->gemm[i];
    } else {
      g->where[i] = isconstleaf(op) ? W_CONST : ps->at[i].slot >= 0 ? W_STORE : W_NONE;
    }
  }
  int64_t rb = ROWFLOATS / rowfloats;
  rb = rb < 1 ? 1 : rb > MAXRB ? MAXRB : rb;
  if (hasgemm) { /* whole register blocks of the GEMM's micro-kernel */
    int mr, nr;
    gemm_block(ps->portable ? GEMM_PORTABLE : 0, &mr, &nr);
    rb = rb < mr ? mr : rb - rb % mr;
  }
  g->RB = rb < ps->nrows ? rb : ps->nrows;

  /* last reader of each temporary */
  int *last = aalloc(g->ar, sizeof *last * (size_t)(nn + 1));
  for (int i = 0; i < nn; i++) {
    last[i] = i;
    if (ps->mask[i])
      for (int k = 0; k < c->node[i].narg; k++)
        last[c->node[i].arg[k]] = i;
  }
  int *live = aalloc(g->ar, sizeof *live * (size_t)(nn + 1)), nlive = 0;
  int64_t top = 0;
  for (int i = 0; i < nn; i++) {
    if (g->where[i] != W_TEMP || !ps->mask[i])
      continue;
    int keep = 0;
    for (int k = 0; k < nlive; k++)
      if (last[live[k]] >= i)
        live[keep++] = live[k];
    nlive = keep;
    int64_t size = (g->RB * g->numel[i] + ALIGNF - 1) / ALIGNF * ALIGNF;
    /* the lowest of 0 and the ends of live regions where size fits */
    int64_t best = -1;
    for (int k = -1; k < nlive; k++) {
      int64_t o = k < 0 ? 0 : g->toff[live[k]] + (g->RB * g->numel[live[k]] + ALIGNF - 1) / ALIGNF * ALIGNF;
      int fits = 1;
      for (int q = 0; q < nlive && fits; q++) {
        int64_t qo = g->toff[live[q]], qe = qo + (g->RB * g->numel[live[q]] + ALIGNF - 1) / ALIGNF * ALIGNF;
        fits = o + size <= qo || o >= qe;
      }
      if (fits && (best < 0 || o < best))
        best = o;
    }
    g->toff[i] = best;
    live[nlive++] = i;
    if (best + size > top)
      top = best + size;
  }
  return top;
}

/* ---- the kernel ---------------------------------------------------------------- */

/* A pointer param of the kernel's buffers: (float *)buf[a.slot] + off + t·tstride. */
static LLVMValueRef slotbase(G *g, LLVMValueRef buf, LLVMValueRef t, const Addr *a)
{
  IRB *ir = &g->ir;
  LLVMValueRef slot = LLVMBuildInBoundsGEP2(ir->b, ir->ptr, buf, (LLVMValueRef[]){irb_i64(ir, a->slot)}, 1, "");
  LLVMValueRef p = LLVMBuildLoad2(ir->b, ir->ptr, slot, "");
  LLVMValueRef off = irb_i64(ir, a->off);
  if (a->tstride)
    off = irb_add(ir, off, irb_mulc(ir, t, a->tstride));
  return irb_gep(ir, p, off);
}

int phasegen(LLVMContextRef cx, LLVMModuleRef mod, const char *sym, const PhaseSpec *ps, size_t *scratch, char *err,
             size_t errlen)
{
  const Cell *c = ps->c;
  *scratch = 0;
  if (c->verified != 1)
    die("phasegen: cell '%s' is not verified", c->name);
  if (ps->nrows < 1) {
    snprintf(err, errlen, "cell '%s': a kernel over %lld rows", c->name, (long long)ps->nrows);
    return RNNC_ESHAPE;
  }
  Arena *ar = arena_new();
  size_t nn = (size_t)c->nnode + 1;
  G g = {.ps = ps, .c = c, .sym = sym, .ar = ar};
  g.numel = aalloc(ar, sizeof *g.numel * nn);
  g.start = aalloc(ar, sizeof *g.start * nn);
  int rc = sizes(ar, c, ps->env, g.numel, g.start, err, errlen);
  if (rc != RNNC_OK) {
    arena_free(ar);
    return rc;
  }
  g.where = aalloc(ar, sizeof *g.where * nn);
  g.base = aalloc(ar, sizeof *g.base * nn);
  g.accbase = aalloc(ar, sizeof *g.accbase * nn);
  g.packbase = aalloc(ar, sizeof *g.packbase * nn);
  g.toff = aalloc(ar, sizeof *g.toff * nn);
  irb_init(&g.ir, cx, mod);
  IRB *ir = &g.ir;
  g.W = ps->portable ? 4 : irb_isa() >= ISA_AVX512 ? MAXW : irb_avx2_fma() ? 8 : 4;
  int64_t temps = layout(&g);
  g.gemmoff = temps;

  /* void sym(ptr buf, i64 t, i64 lo, i64 hi, ptr noalias scratch) */
  irb_kernfn(ir, sym);
  LLVMValueRef buf = LLVMGetParam(ir->fn, 0), t = LLVMGetParam(ir->fn, 1);
  LLVMValueRef lo = LLVMGetParam(ir->fn, 2), hi = LLVMGetParam(ir->fn, 3);
  g.scratch = LLVMGetParam(ir->fn, 4);

  /* the base of every node the kernel touches, of each acc and pack */
  char *used = aalloc(ar, nn);
  for (int i = 0; i < c->nnode; i++)
    if (ps->mask[i]) {
      used[i] = 1;
      for (int k = 0; k < c->node[i].narg; k++)
        used[c->node[i].arg[k]] = 1;
    }
  for (int i = 0; i < c->nnode; i++) {
    if (used[i] && g.where[i] == W_STORE)
      g.base[i] = slotbase(&g, buf, t, &ps->at[i]);
    if (ps->mask[i] && ps->acc && ps->acc[i].slot >= 0)
      g.accbase[i] = slotbase(&g, buf, t, &ps->acc[i]);
    if (ps->mask[i] && ps->gemm && ps->gemm[i] && gemmable(&g, i)) {
      if (!ps->pack || ps->pack[i].slot < 0)
        die("phasegen: cell '%s': GEMM node %d has no packed matrix", c->name, i);
      g.packbase[i] = slotbase(&g, buf, t, &ps->pack[i]);
    }
  }

  /* for r0 in [lo, hi) step RB: r1 = min(r0 + RB, hi), every node */
  IRLoop lb;
  g.r0 = irb_loop_begin(ir, &lb, lo, hi, g.RB, "block");
  LLVMValueRef end = irb_add(ir, g.r0, irb_i64(ir, g.RB));
  g.r1 = LLVMBuildSelect(ir->b, LLVMBuildICmp(ir->b, LLVMIntSLT, end, hi, ""), end, hi, "r1");
  g.nb = LLVMBuildNSWSub(ir->b, g.r1, g.r0, "nb");
  size_t gscratch = 0;
  for (int i = 0; i < c->nnode && rc == RNNC_OK; i++)
    if (ps->mask[i])
      rc = gen_node(&g, i, &gscratch, err, errlen);
  if (rc == RNNC_OK) {
    irb_loop_end(ir, &lb);
    LLVMBuildRetVoid(ir->b);
    *scratch = (size_t)g.gemmoff + gscratch;
  }
  irb_free(ir);
  arena_free(ar);
  return rc;
}
