/* gemm.c — LLVM IR for C[M, N] (+)= op(A) · op(B), float32, row-major, with
 * every size, leading dimension and flag a compile-time constant.
 * require: a module of cx. produce: in it, gemm_gen2's sym_pack, sym_rows,
 * sym_colsp and sym_cols, or gemm_gen's sym, sym_pack and sym_packed (see
 * ir.h, "compiler/gemm.c").
 *
 * op(B) is packed into column panels of NR columns, panel p holding
 * pack[(p·K + k)·NR + j] = op(B)[k, p·NR + j] (zero past column N), so the
 * micro-kernel reads it contiguously. One KC slice of k over rows [m0, m1)
 * and panels [p0, p1) (blk) runs as
 *   for each NC block of columns    (its KC·NC floats of panels, in L3)
 *     for each MC block of rows     (op(A)'s block packed in scratch: MC·KC
 *                                    floats, MR-row micro-panels, k-major)
 *       for each panel p of the column block:
 *         for each MR rows: micro-kernel MR x NR over the slice, then the
 *         rows left (1 .. MR-1) by kernels of 4, 2 and 1 rows
 * and every function runs the slices in increasing order: _rows and _colsp
 * over B packed once (by _pack), _cols packing each slice of a chunk of NCS
 * columns of op(B) into its scratch first. KC, MC and NC were tuned against
 * OpenBLAS on the benchmark shapes (bench/README.md); KC = 1024 keeps C5's K
 * in one slice, so C is read and written once.
 * The micro-kernel keeps an MR x NR block of C in MR·NR/W vector registers
 * (W = 8 floats with AVX2 + FMA on the host, else 4), and per k broadcasts
 * one float of each A row against NR/W vectors of the panel with llvm.fma;
 * its rows and vectors are unrolled in the IR, its k loop is a loop. Row
 * tails get kernels of fewer rows, which compute each element exactly as
 * the full kernel does; the last panel, when NR does not divide N, is
 * computed into an MR x NR tile in scratch and its columns added to C as
 * the kernel adds them. Kernels are not inlined (one copy each: compile
 * time). So every element of C is summed in increasing k within a
 * slice, from 0, with one fma per k, and the slices are added to C in
 * increasing order: its bits depend on M, N, K and the flags only, not on
 * the function, the range, or where a range starts. Nothing here is
 * JIT-specific: no addresses, no triple, scratch from the caller. */
#include <string.h>

#include <llvm-c/Core.h>
#include <llvm-c/DebugInfo.h> /* LLVMTemporaryMDNode */
#include <llvm-c/TargetMachine.h>

#include "ir.h"

enum {
  MR = 6,     /* rows of the register block */
  KC = 1024,  /* k per slice: a panel slice (KC·NR floats) in L2 */
  MC = 120,   /* rows per block, a multiple of MR */
  NC = 4096,  /* columns per block, a multiple of every NR */
  NCS = 512,  /* columns of op(B) that _cols packs at a time, a multiple of every NR */
  MAXNR = 16, /* the widest NR */
  PFD = 32,   /* k steps before the end of a slice at which C is prefetched */
  PFA = 8,    /* rows of A ahead that GEMM_AT's packing prefetches */
};

typedef struct G {
  LLVMContextRef cx;
  LLVMModuleRef mod;
  LLVMBuilderRef b;
  LLVMValueRef fn;
  LLVMTypeRef f32, i64, i1, ptr, vty, voidty;
  LLVMValueRef fma;
  LLVMTypeRef fmaty;
  int W, NR, flags;
  int64_t M, N, K, lda, ldb, ldc;
  int64_t np, npf, nt;    /* panels, whole panels, columns of the partial one */
  int linkage;            /* of the entry points: 0 external, 1 internal */
  LLVMValueRef kern[MR + 1]; /* by rows: MR, 4, 2, 1 */
  LLVMValueRef packb, blk;
  const char *sym;
} G;

/* Whether the host CPU has AVX2 and FMA (LLVMGetHostCPUFeatures). */
static int host_avx2_fma(void)
{
  char *f = LLVMGetHostCPUFeatures();
  int avx2 = 0, fma = 0;
  for (const char *p = f; p && *p;) {
    size_t n = strcspn(p, ",");
    avx2 |= n == 5 && !strncmp(p, "+avx2", 5);
    fma |= n == 4 && !strncmp(p, "+fma", 4);
    p += n + (p[n] == ',');
  }
  LLVMDisposeMessage(f);
  return avx2 && fma;
}

void gemm_block(int flags, int *mr, int *nr)
{
  *mr = MR;
  *nr = !(flags & GEMM_PORTABLE) && host_avx2_fma() ? 16 : 8;
}

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t up16(int64_t n) { return (n + 15) / 16 * 16; } /* 64 bytes */

/* Floats of one block of op(A) packed: up to MC rows (rounded up to MR, a
 * partial micro-panel takes a whole one) by up to KC columns. */
static int64_t ablock(int64_t M, int64_t K) { return min64((M + MR - 1) / MR * MR, MC) * min64(K, KC); }

/* Floats of B's panels for the widest NR (gemm_gen's pack). */
static int64_t bpanels(int64_t N, int64_t K) { return (N + MAXNR - 1) / MAXNR * MAXNR * K; }

/* The scratch of _rows and _colsp: op(A)'s block, then an MR x NR tile (for
 * the last panel when NR does not divide N). */
static int64_t rowscratch(int64_t M, int64_t K) { return up16(ablock(M, K)) + MR * MAXNR; }

size_t gemm_pack_size(int64_t M, int64_t N, int64_t K) { return (size_t)(bpanels(N, K) + rowscratch(M, K)); }

static int spec_nr(const GemmSpec *s)
{
  int mr, nr;
  gemm_block(s->flags, &mr, &nr);
  return nr;
}

int64_t gemm_npanels(const GemmSpec *s) { return (s->N + spec_nr(s) - 1) / spec_nr(s); }

size_t gemm_packsize(const GemmSpec *s) { return (size_t)(gemm_npanels(s) * spec_nr(s) * s->K); }

/* _cols' scratch: a chunk of op(B) (the panels of NCS columns, one KC
 * slice), then rowscratch. */
static int64_t bchunk(const GemmSpec *s)
{
  int nr = spec_nr(s);
  return up16(min64(NCS / nr, gemm_npanels(s)) * nr * min64(s->K, KC));
}

size_t gemm_scratchsize(const GemmSpec *s) { return (size_t)(bchunk(s) + rowscratch(s->M, s->K)); }

static LLVMValueRef ci64(G *g, int64_t v) { return LLVMConstInt(g->i64, (unsigned long long)v, 1); }

static void addattr(G *g, LLVMValueRef fn, unsigned idx, const char *name)
{
  unsigned kind = LLVMGetEnumAttributeKindForName(name, strlen(name));
  LLVMAddAttributeAtIndex(fn, idx, LLVMCreateEnumAttribute(g->cx, kind, 0));
}

/* A function of the module named sym + suffix: nounwind, every pointer
 * parameter noalias, parameters named after names (space-separated). */
static LLVMValueRef newfn(G *g, const char *suffix, LLVMTypeRef *pt, unsigned n, int internal, const char *names)
{
  char name[256];
  snprintf(name, sizeof name, "%s%s", g->sym, suffix);
  if (LLVMGetNamedFunction(g->mod, name))
    die("gemm: function '%s' already in the module", name);
  LLVMValueRef fn = LLVMAddFunction(g->mod, name, LLVMFunctionType(g->voidty, pt, n, 0));
  if (internal)
    LLVMSetLinkage(fn, LLVMInternalLinkage);
  addattr(g, fn, LLVMAttributeFunctionIndex, "nounwind");
  for (unsigned i = 0; i < n; i++) {
    if (pt[i] == g->ptr)
      addattr(g, fn, i + 1, "noalias");
    size_t len = strcspn(names, " ");
    LLVMSetValueName2(LLVMGetParam(fn, i), names, len);
    names += len + (names[len] == ' ');
  }
  g->fn = fn;
  LLVMPositionBuilderAtEnd(g->b, LLVMAppendBasicBlockInContext(g->cx, fn, "entry"));
  return fn;
}

/* ---- loops --------------------------------------------------------------- */

/* for (iv = lo; iv < hi; iv += step) { body }: loop_begin returns iv and
 * leaves the builder in the body; loop_end closes it. */
typedef struct Loop {
  LLVMBasicBlockRef head, exit;
  LLVMValueRef iv;
  int64_t step;
} Loop;

static LLVMValueRef loop_begin(G *g, Loop *l, LLVMValueRef lo, LLVMValueRef hi, int64_t step, const char *name)
{
  LLVMBasicBlockRef pre = LLVMGetInsertBlock(g->b);
  l->step = step;
  l->head = LLVMAppendBasicBlockInContext(g->cx, g->fn, name);
  LLVMBasicBlockRef body = LLVMAppendBasicBlockInContext(g->cx, g->fn, "body");
  l->exit = LLVMAppendBasicBlockInContext(g->cx, g->fn, "done");
  LLVMBuildBr(g->b, l->head);
  LLVMPositionBuilderAtEnd(g->b, l->head);
  l->iv = LLVMBuildPhi(g->b, g->i64, name);
  LLVMAddIncoming(l->iv, &lo, &pre, 1);
  LLVMBuildCondBr(g->b, LLVMBuildICmp(g->b, LLVMIntSLT, l->iv, hi, ""), body, l->exit);
  LLVMPositionBuilderAtEnd(g->b, body);
  return l->iv;
}

/* !llvm.loop !{self, !{"llvm.loop.unroll.disable"}} on a latch branch: the
 * loops that matter are unrolled here, by hand. */
static void nounroll(G *g, LLVMValueRef br)
{
  LLVMMetadataRef self = LLVMTemporaryMDNode(g->cx, NULL, 0);
  LLVMMetadataRef s = LLVMMDStringInContext2(g->cx, "llvm.loop.unroll.disable", 24);
  LLVMMetadataRef ops[2] = {self, LLVMMDNodeInContext2(g->cx, &s, 1)};
  LLVMMetadataRef md = LLVMMDNodeInContext2(g->cx, ops, 2);
  LLVMMetadataReplaceAllUsesWith(self, md);
  LLVMSetMetadata(br, LLVMGetMDKindIDInContext(g->cx, "llvm.loop", 9), LLVMMetadataAsValue(g->cx, md));
}

static void loop_end(G *g, Loop *l)
{
  LLVMValueRef next = LLVMBuildNSWAdd(g->b, l->iv, ci64(g, l->step), "");
  LLVMBasicBlockRef latch = LLVMGetInsertBlock(g->b);
  nounroll(g, LLVMBuildBr(g->b, l->head));
  LLVMAddIncoming(l->iv, &next, &latch, 1);
  LLVMPositionBuilderAtEnd(g->b, l->exit);
}

static LLVMValueRef gep(G *g, LLVMValueRef base, LLVMValueRef off)
{
  return LLVMBuildInBoundsGEP2(g->b, g->f32, base, &off, 1, "");
}

static LLVMValueRef mul(G *g, LLVMValueRef a, int64_t c) { return LLVMBuildNSWMul(g->b, a, ci64(g, c), ""); }
static LLVMValueRef add(G *g, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildNSWAdd(g->b, a, b, ""); }

static LLVMValueRef sub(G *g, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildNSWSub(g->b, a, b, ""); }
static LLVMValueRef mulv(G *g, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildNSWMul(g->b, a, b, ""); }

static LLVMValueRef smin(G *g, LLVMValueRef a, LLVMValueRef b)
{
  return LLVMBuildSelect(g->b, LLVMBuildICmp(g->b, LLVMIntSLT, a, b, ""), a, b, "");
}

static LLVMValueRef call(G *g, LLVMValueRef fn, LLVMValueRef *args, unsigned n)
{
  return LLVMBuildCall2(g->b, LLVMGlobalGetValueType(fn), fn, args, n, "");
}

/* if (cond) { ... }: if_begin leaves the builder in the then block,
 * returns the block after; if_end closes it. */
static LLVMBasicBlockRef if_begin(G *g, LLVMValueRef cond, const char *name)
{
  LLVMBasicBlockRef then = LLVMAppendBasicBlockInContext(g->cx, g->fn, name);
  LLVMBasicBlockRef after = LLVMAppendBasicBlockInContext(g->cx, g->fn, "after");
  LLVMBuildCondBr(g->b, cond, then, after);
  LLVMPositionBuilderAtEnd(g->b, then);
  return after;
}

static void if_end(G *g, LLVMBasicBlockRef after)
{
  LLVMBuildBr(g->b, after);
  LLVMPositionBuilderAtEnd(g->b, after);
}

static LLVMValueRef load(G *g, LLVMTypeRef ty, LLVMValueRef p)
{
  LLVMValueRef v = LLVMBuildLoad2(g->b, ty, p, "");
  LLVMSetAlignment(v, 4);
  return v;
}

static void store(G *g, LLVMValueRef v, LLVMValueRef p) { LLVMSetAlignment(LLVMBuildStore(g->b, v, p), 4); }

/* ---- packing ----------------------------------------------------------------- */

/* The element (k, n) of op(B): B[k·ldb + n], or with GEMM_BT B[n·ldb + k]. */
static LLVMValueRef opb(G *g, LLVMValueRef B, LLVMValueRef k, LLVMValueRef n)
{
  LLVMValueRef off = g->flags & GEMM_BT ? add(g, mul(g, n, g->ldb), k) : add(g, mul(g, k, g->ldb), n);
  return load(g, g->f32, gep(g, B, off));
}

/* void packb(B, dst, c0, c1, k0, kc, ps), internal: panels [c0, c1) of
 * op(B), rows [k0, k0 + kc), with panel p at dst + (p - c0)·ps:
 *   dst[(p - c0)·ps + k·NR + j] = op(B)[k0 + k, p·NR + j], 0 past column N */
static void gen_packb(G *g)
{
  LLVMTypeRef pt[7] = {g->ptr, g->ptr, g->i64, g->i64, g->i64, g->i64, g->i64};
  g->packb = newfn(g, ".packb", pt, 7, 1, "B dst c0 c1 k0 kc ps");
  LLVMValueRef B = LLVMGetParam(g->packb, 0), dst = LLVMGetParam(g->packb, 1), c0 = LLVMGetParam(g->packb, 2);
  LLVMValueRef c1 = LLVMGetParam(g->packb, 3), k0 = LLVMGetParam(g->packb, 4), kc = LLVMGetParam(g->packb, 5);
  LLVMValueRef ps = LLVMGetParam(g->packb, 6);
  Loop lp, lk, lj;
  if (g->npf) { /* whole panels */
    LLVMValueRef p = loop_begin(g, &lp, c0, smin(g, c1, ci64(g, g->npf)), 1, "panel");
    LLVMValueRef d = gep(g, dst, mulv(g, sub(g, p, c0), ps));
    if (g->flags & GEMM_BT) { /* B's rows are the panel's columns: read them contiguously */
      LLVMValueRef j = loop_begin(g, &lj, ci64(g, 0), ci64(g, g->NR), 1, "j");
      LLVMValueRef src = gep(g, B, add(g, mul(g, add(g, mul(g, p, g->NR), j), g->ldb), k0));
      LLVMValueRef k = loop_begin(g, &lk, ci64(g, 0), kc, 1, "k");
      store(g, load(g, g->f32, gep(g, src, k)), gep(g, d, add(g, mul(g, k, g->NR), j)));
      loop_end(g, &lk);
      loop_end(g, &lj);
    } else { /* a row of the panel is NR contiguous floats of B */
      LLVMTypeRef rowty = LLVMVectorType(g->f32, (unsigned)g->NR);
      LLVMValueRef k = loop_begin(g, &lk, ci64(g, 0), kc, 1, "k");
      LLVMValueRef src = gep(g, B, add(g, mul(g, add(g, k0, k), g->ldb), mul(g, p, g->NR)));
      store(g, load(g, rowty, src), gep(g, d, mul(g, k, g->NR)));
      loop_end(g, &lk);
    }
    loop_end(g, &lp);
  }
  if (g->nt) { /* the partial panel, if in range */
    LLVMBasicBlockRef after = if_begin(g, LLVMBuildICmp(g->b, LLVMIntSGT, c1, ci64(g, g->npf), ""), "tail");
    LLVMValueRef d = gep(g, dst, mulv(g, sub(g, ci64(g, g->npf), c0), ps));
    LLVMValueRef k = loop_begin(g, &lk, ci64(g, 0), kc, 1, "k");
    LLVMValueRef row = mul(g, k, g->NR);
    for (int64_t j = 0; j < g->NR; j++) {
      LLVMValueRef v = j < g->nt ? opb(g, B, add(g, k0, k), ci64(g, g->npf * g->NR + j)) : LLVMConstReal(g->f32, 0);
      store(g, v, gep(g, d, add(g, row, ci64(g, j))));
    }
    loop_end(g, &lk);
    if_end(g, after);
  }
  LLVMBuildRetVoid(g->b);
}

/* Ap[(q·kc + k)·MR + r] = op(A)[i0 + q·MR + r, k0 + k] for the rows·kc
 * elements of a block (rows = nq·MR + rem): MR-row micro-panels, read
 * contiguously by the kernel. */
static void gen_packa(G *g, LLVMValueRef A, LLVMValueRef Ap, LLVMValueRef i0, LLVMValueRef rows, LLVMValueRef nq,
                      LLVMValueRef rem, LLVMValueRef k0, LLVMValueRef kc)
{
  Loop li, lk, lq;
  if (!(g->flags & GEMM_AT)) { /* A's rows are contiguous in k */
    LLVMValueRef i = loop_begin(g, &li, ci64(g, 0), rows, 1, "ai");
    LLVMValueRef q = LLVMBuildUDiv(g->b, i, ci64(g, MR), "");
    LLVMValueRef dst = add(g, mul(g, mulv(g, q, kc), MR), sub(g, i, mul(g, q, MR)));
    LLVMValueRef src = gep(g, A, add(g, mul(g, add(g, i0, i), g->lda), k0));
    LLVMValueRef k = loop_begin(g, &lk, ci64(g, 0), kc, 1, "ak");
    store(g, load(g, g->f32, gep(g, src, k)), gep(g, Ap, add(g, dst, mul(g, k, MR))));
    loop_end(g, &lk);
    loop_end(g, &li);
    return;
  }
  /* GEMM_AT: A's rows are contiguous in i, MR of them one micro-panel row;
   * each k reads a few cache lines of a row lda floats after the last, so
   * the lines PFA rows ahead are prefetched (without: 5-10% slower on the
   * weight gradient [2048 x 4096] x [4096 x 512], behind OpenBLAS) */
  LLVMValueRef k = loop_begin(g, &lk, ci64(g, 0), kc, 1, "ak");
  LLVMValueRef src = gep(g, A, add(g, mul(g, add(g, k0, k), g->lda), i0));
  {
    /* the rows PFA ahead, read at (prefetch: no fault past the end) */
    unsigned pid = LLVMLookupIntrinsicID("llvm.prefetch", 13);
    LLVMValueRef pf = LLVMGetIntrinsicDeclaration(g->mod, pid, &g->ptr, 1);
    LLVMTypeRef pfty = LLVMIntrinsicGetType(g->cx, pid, &g->ptr, 1);
    LLVMTypeRef i32 = LLVMInt32TypeInContext(g->cx);
    for (int64_t l = 0; l <= min64(MC, g->M); l += 16) {
      LLVMValueRef off = ci64(g, PFA * g->lda + l);
      LLVMValueRef pa[4] = {LLVMBuildGEP2(g->b, g->f32, src, &off, 1, ""), LLVMConstInt(i32, 0, 0),
                            LLVMConstInt(i32, 3, 0), LLVMConstInt(i32, 1, 0)};
      LLVMBuildCall2(g->b, pfty, pf, pa, 4, "");
    }
  }
  if (g->M >= MR) {
    LLVMTypeRef mrty = LLVMVectorType(g->f32, MR);
    LLVMValueRef q = loop_begin(g, &lq, ci64(g, 0), nq, 1, "aq");
    LLVMValueRef v = load(g, mrty, gep(g, src, mul(g, q, MR)));
    store(g, v, gep(g, Ap, mul(g, add(g, mulv(g, q, kc), k), MR)));
    loop_end(g, &lq);
  }
  LLVMValueRef tsrc = gep(g, src, mul(g, nq, MR)), tdst = gep(g, Ap, mul(g, add(g, mulv(g, nq, kc), k), MR));
  LLVMValueRef r = loop_begin(g, &li, ci64(g, 0), rem, 1, "ar");
  store(g, load(g, g->f32, gep(g, tsrc, r)), gep(g, tdst, r));
  loop_end(g, &li);
  loop_end(g, &lk);
}

/* ---- the micro-kernel -------------------------------------------------------- */

/* for (k = lo; k < hi; k++) acc[r][v] = fma(A[k·MR + r], Bp[k·NR + v·W ..], acc[r][v])
 * for r < mr, v < nv; out gets the accumulators after the loop (out may be
 * in). */
static void gen_kloop(G *g, int mr, int nv, LLVMValueRef A, LLVMValueRef Bp, LLVMValueRef lo, LLVMValueRef hi,
                      LLVMValueRef in[MR][MAXNR / 4], LLVMValueRef out[MR][MAXNR / 4])
{
  LLVMBasicBlockRef pre = LLVMGetInsertBlock(g->b);
  LLVMBasicBlockRef head = LLVMAppendBasicBlockInContext(g->cx, g->fn, "k");
  LLVMBasicBlockRef body = LLVMAppendBasicBlockInContext(g->cx, g->fn, "kbody");
  LLVMBasicBlockRef exit = LLVMAppendBasicBlockInContext(g->cx, g->fn, "kdone");
  LLVMBuildBr(g->b, head);
  LLVMPositionBuilderAtEnd(g->b, head);
  LLVMValueRef k = LLVMBuildPhi(g->b, g->i64, "k"), acc[MR][MAXNR / 4], next[MR][MAXNR / 4];
  LLVMAddIncoming(k, &lo, &pre, 1);
  for (int r = 0; r < mr; r++)
    for (int v = 0; v < nv; v++) {
      acc[r][v] = LLVMBuildPhi(g->b, g->vty, "acc");
      LLVMAddIncoming(acc[r][v], &in[r][v], &pre, 1);
    }
  LLVMBuildCondBr(g->b, LLVMBuildICmp(g->b, LLVMIntSLT, k, hi, ""), body, exit);
  LLVMPositionBuilderAtEnd(g->b, body);
  LLVMValueRef bv[MAXNR / 4];
  LLVMValueRef brow = mul(g, k, g->NR);
  for (int v = 0; v < nv; v++)
    bv[v] = load(g, g->vty, gep(g, Bp, add(g, brow, ci64(g, (int64_t)v * g->W))));
  LLVMValueRef mask = LLVMConstNull(LLVMVectorType(LLVMInt32TypeInContext(g->cx), (unsigned)g->W));
  LLVMValueRef poison = LLVMGetPoison(g->vty);
  for (int r = 0; r < mr; r++) {
    LLVMValueRef a = LLVMBuildLoad2(g->b, g->f32, gep(g, A, add(g, mul(g, k, MR), ci64(g, r))), "a");
    LLVMValueRef s = LLVMBuildInsertElement(g->b, poison, a, LLVMConstInt(g->i64, 0, 0), "");
    s = LLVMBuildShuffleVector(g->b, s, poison, mask, "splat");
    for (int v = 0; v < nv; v++) {
      LLVMValueRef args[3] = {s, bv[v], acc[r][v]};
      next[r][v] = LLVMBuildCall2(g->b, g->fmaty, g->fma, args, 3, "");
    }
  }
  LLVMValueRef k1 = LLVMBuildNSWAdd(g->b, k, ci64(g, 1), "");
  LLVMAddIncoming(k, &k1, &body, 1);
  for (int r = 0; r < mr; r++)
    for (int v = 0; v < nv; v++)
      LLVMAddIncoming(acc[r][v], &next[r][v], &body, 1);
  nounroll(g, LLVMBuildBr(g->b, head));
  LLVMPositionBuilderAtEnd(g->b, exit);
  for (int r = 0; r < mr; r++)
    for (int v = 0; v < nv; v++)
      out[r][v] = acc[r][v];
}

/* void kern(Ap, Bp, C, ldc, kc, first), internal: for r < mr, j < NR,
 *   C[r·ldc + j] = (first ? 0 : C[r·ldc + j]) + Σ_{k < kc} Ap[k·MR + r] Bp[k·NR + j]
 * with the sum in increasing k from 0 (the same bits for every mr); kc >= 1.
 * The MR-row kernel prefetches its C tile near the end of the slice. */
static LLVMValueRef gen_kernel(G *g, int mr)
{
  /* the micro-kernel depends on mr, NR and the vector type only: one copy
   * per module serves every GEMM in it (compile time) */
  char name[64];
  snprintf(name, sizeof name, "rnnc.gemm.k%dx%d.w%d", mr, g->NR, g->W);
  LLVMValueRef have = LLVMGetNamedFunction(g->mod, name);
  if (have)
    return have;
  const char *sym = g->sym;
  g->sym = "";
  LLVMTypeRef pt[6] = {g->ptr, g->ptr, g->ptr, g->i64, g->i64, g->i1};
  LLVMValueRef fn = newfn(g, name, pt, 6, 1, "Ap Bp C ldc kc first");
  g->sym = sym;
  addattr(g, fn, LLVMAttributeFunctionIndex, "noinline"); /* one copy: compile time */
  LLVMValueRef A = LLVMGetParam(fn, 0), Bp = LLVMGetParam(fn, 1), C = LLVMGetParam(fn, 2);
  LLVMValueRef ldc = LLVMGetParam(fn, 3), kc = LLVMGetParam(fn, 4), first = LLVMGetParam(fn, 5);
  int nv = g->NR / g->W;
  LLVMValueRef acc[MR][MAXNR / 4], next[MR][MAXNR / 4];
  for (int r = 0; r < mr; r++)
    for (int v = 0; v < nv; v++)
      acc[r][v] = LLVMConstNull(g->vty);
  if (mr < MR) {
    gen_kloop(g, mr, nv, A, Bp, ci64(g, 0), kc, acc, next);
  } else {
    /* acc = Σ over k in [0, split), prefetch the C tile for writing
     * (llvm.prefetch(p, rw 1, locality 3, data 1), the first and last float
     * of each row), then k in [split, kc): the tile arrives while the last
     * PFD steps run and is not evicted by the panel streaming through L1 */
    LLVMValueRef split = LLVMBuildNSWSub(g->b, kc, ci64(g, PFD), "");
    split = LLVMBuildSelect(g->b, LLVMBuildICmp(g->b, LLVMIntSLT, split, ci64(g, 0), ""), ci64(g, 0), split, "split");
    gen_kloop(g, mr, nv, A, Bp, ci64(g, 0), split, acc, next);
    unsigned pid = LLVMLookupIntrinsicID("llvm.prefetch", 13);
    LLVMValueRef pf = LLVMGetIntrinsicDeclaration(g->mod, pid, &g->ptr, 1);
    LLVMTypeRef pfty = LLVMIntrinsicGetType(g->cx, pid, &g->ptr, 1);
    LLVMTypeRef i32 = LLVMInt32TypeInContext(g->cx);
    for (int r = 0; r < mr; r++)
      for (int e = 0; e < 2; e++) {
        LLVMValueRef pa[4] = {gep(g, C, add(g, mul(g, ldc, r), ci64(g, e ? g->NR - 1 : 0))), LLVMConstInt(i32, 1, 0),
                              LLVMConstInt(i32, 3, 0), LLVMConstInt(i32, 1, 0)};
        LLVMBuildCall2(g->b, pfty, pf, pa, 4, "");
      }
    gen_kloop(g, mr, nv, A, Bp, split, kc, next, next);
  }
  /* C += acc (or C = acc on the first slice) */
  for (int r = 0; r < mr; r++)
    for (int v = 0; v < nv; v++) {
      LLVMValueRef p = gep(g, C, add(g, mul(g, ldc, r), ci64(g, (int64_t)v * g->W)));
      LLVMValueRef old = load(g, g->vty, p);
      store(g, LLVMBuildSelect(g->b, first, next[r][v], LLVMBuildFAdd(g->b, old, next[r][v], ""), ""), p);
    }
  LLVMBuildRetVoid(g->b);
  return fn;
}

/* ---- one slice of the blocked product ----------------------------------------- */

/* Rows [i, i + h) of one panel: kernel kern (h rows) on the micro-panel
 * rows at Ap; with partial (the last panel, nt < NR columns), into the
 * tile (MR x NR, in scratch), then its nt columns into C, added as the
 * kernel adds: the same bits. */
static void gen_call(G *g, LLVMValueRef kern, LLVMValueRef h, int partial, LLVMValueRef Ap, LLVMValueRef Bpan,
                     LLVMValueRef Cp, LLVMValueRef i, LLVMValueRef kc, LLVMValueRef first, LLVMValueRef tile)
{
  LLVMValueRef c = gep(g, Cp, mul(g, i, g->ldc));
  if (!partial) {
    LLVMValueRef args[6] = {Ap, Bpan, c, ci64(g, g->ldc), kc, first};
    call(g, kern, args, 6);
    return;
  }
  LLVMValueRef args[6] = {Ap, Bpan, tile, ci64(g, g->NR), kc, LLVMConstInt(g->i1, 1, 0)};
  call(g, kern, args, 6);
  Loop lr;
  LLVMValueRef r = loop_begin(g, &lr, ci64(g, 0), h, 1, "tr");
  LLVMValueRef src = gep(g, tile, mul(g, r, g->NR)), dst = gep(g, c, mul(g, r, g->ldc));
  for (int64_t j = 0; j < g->nt; j++) {
    LLVMValueRef x = load(g, g->f32, gep(g, src, ci64(g, j))), p = gep(g, dst, ci64(g, j));
    LLVMValueRef old = load(g, g->f32, p);
    store(g, LLVMBuildSelect(g->b, first, x, LLVMBuildFAdd(g->b, old, x, ""), ""), p);
  }
  loop_end(g, &lr);
}

/* One panel against the rows i0 .. i0 + nq·MR + rem of a block, packed at
 * Ap: MR rows at a time, then the rem rows left (rem < MR, or <= M when
 * M < MR) as 4 + 2 + 1 rows, each part there when rem has its bit. */
static void gen_rows(G *g, int partial, LLVMValueRef Bpan, LLVMValueRef Cp, LLVMValueRef Ap, LLVMValueRef tile,
                     LLVMValueRef i0, LLVMValueRef nq, LLVMValueRef rem, LLVMValueRef kc, LLVMValueRef first)
{
  LLVMValueRef qstride = mul(g, kc, MR);
  if (g->M >= MR) {
    Loop lq;
    LLVMValueRef q = loop_begin(g, &lq, ci64(g, 0), nq, 1, "q");
    gen_call(g, g->kern[MR], ci64(g, MR), partial, gep(g, Ap, mulv(g, q, qstride)), Bpan, Cp,
             add(g, i0, mul(g, q, MR)), kc, first, tile);
    loop_end(g, &lq);
  }
  LLVMValueRef Aq = gep(g, Ap, mulv(g, nq, qstride)), iq = add(g, i0, mul(g, nq, MR));
  for (int h = 4; h >= 1; h /= 2) {
    if (!g->kern[h])
      continue;
    LLVMValueRef r0 = LLVMBuildAnd(g->b, rem, ci64(g, 7 & ~(2 * h - 1)), ""); /* rows of the bigger parts */
    LLVMValueRef has = LLVMBuildICmp(g->b, LLVMIntNE, LLVMBuildAnd(g->b, rem, ci64(g, h), ""), ci64(g, 0), "");
    LLVMBasicBlockRef after = if_begin(g, has, "mtail");
    gen_call(g, g->kern[h], ci64(g, h), partial, gep(g, Aq, r0), Bpan, Cp, add(g, iq, r0), kc, first, tile);
    if_end(g, after);
  }
}

/* void blk(A, Bp, C, Ap, ps, m0, m1, p0, p1, k0, kc, first), internal: the
 * slice [k0, k0 + kc) of C's rows [m0, m1) and panels [p0, p1) (the loop
 * nest of the header comment); panel p of the slice packed at Bp + (p -
 * p0)·ps, scratch at Ap (op(A)'s block, then the tile); first: C = the
 * slice's sum, else C += it. */
static void gen_blk(G *g)
{
  LLVMTypeRef pt[12] = {g->ptr, g->ptr, g->ptr, g->ptr, g->i64, g->i64,
                        g->i64, g->i64, g->i64, g->i64, g->i64, g->i1};
  g->blk = newfn(g, ".blk", pt, 12, 1, "A Bp C Ap ps m0 m1 p0 p1 k0 kc first");
  LLVMValueRef P[12];
  LLVMGetParams(g->blk, P);
  LLVMValueRef A = P[0], Bp = P[1], C = P[2], Ap = P[3], ps = P[4], m0 = P[5], m1 = P[6], p0 = P[7], p1 = P[8];
  LLVMValueRef k0 = P[9], kc = P[10], first = P[11];
  int64_t ncp = NC / g->NR;
  LLVMValueRef tile = gep(g, Ap, ci64(g, up16(ablock(g->M, g->K))));
  Loop lj, li, lp;
  LLVMValueRef pb0 = loop_begin(g, &lj, p0, p1, ncp, "jb");
  LLVMValueRef pb1 = smin(g, add(g, pb0, ci64(g, ncp)), p1);
  LLVMValueRef i0 = loop_begin(g, &li, m0, m1, MC, "ib");
  LLVMValueRef rows = sub(g, smin(g, add(g, i0, ci64(g, MC)), m1), i0);
  LLVMValueRef nq = LLVMBuildSDiv(g->b, rows, ci64(g, MR), "nq");
  LLVMValueRef rem = sub(g, rows, mul(g, nq, MR));
  gen_packa(g, A, Ap, i0, rows, nq, rem, k0, kc);
  if (g->npf) {
    LLVMValueRef p = loop_begin(g, &lp, pb0, smin(g, pb1, ci64(g, g->npf)), 1, "p");
    gen_rows(g, 0, gep(g, Bp, mulv(g, sub(g, p, p0), ps)), gep(g, C, mul(g, p, g->NR)), Ap, tile, i0, nq, rem, kc,
             first);
    loop_end(g, &lp);
  }
  if (g->nt) { /* the partial panel, with the last column block */
    LLVMBasicBlockRef after = if_begin(g, LLVMBuildICmp(g->b, LLVMIntSGT, pb1, ci64(g, g->npf), ""), "ntail");
    gen_rows(g, 1, gep(g, Bp, mulv(g, sub(g, ci64(g, g->npf), p0), ps)), gep(g, C, ci64(g, g->npf * g->NR)), Ap,
             tile, i0, nq, rem, kc, first);
    if_end(g, after);
  }
  loop_end(g, &li);
  loop_end(g, &lj);
  LLVMBuildRetVoid(g->b);
}

/* ---- the entry points ---------------------------------------------------------- */

/* for kb over the KC slices: *k0, *kc and *first (C = the first slice's
 * sum, unless GEMM_ACC) for the body; close with loop_end(g, l). */
static void slices_begin(G *g, Loop *l, LLVMValueRef *k0, LLVMValueRef *kc, LLVMValueRef *first)
{
  LLVMValueRef kb = loop_begin(g, l, ci64(g, 0), ci64(g, (g->K + KC - 1) / KC), 1, "kb");
  *k0 = mul(g, kb, KC);
  *kc = smin(g, sub(g, ci64(g, g->K), *k0), ci64(g, KC));
  *first = g->flags & GEMM_ACC ? LLVMConstInt(g->i1, 0, 0) : LLVMBuildICmp(g->b, LLVMIntEQ, kb, ci64(g, 0), "first");
}

/* blk's arguments */
static void blk(G *g, LLVMValueRef A, LLVMValueRef Bp, LLVMValueRef C, LLVMValueRef Ap, LLVMValueRef ps,
                LLVMValueRef m0, LLVMValueRef m1, LLVMValueRef p0, LLVMValueRef p1, LLVMValueRef k0, LLVMValueRef kc,
                LLVMValueRef first)
{
  LLVMValueRef args[12] = {A, Bp, C, Ap, ps, m0, m1, p0, p1, k0, kc, first};
  call(g, g->blk, args, 12);
}

/* The micro-kernels that some range can reach, packb, blk, then _pack,
 * _rows, _colsp and _cols (see ir.h). */
static void gen_all(G *g)
{
  for (int h = 1; h <= MR; h *= 2)
    if (h <= g->M)
      g->kern[h] = gen_kernel(g, h);
  if (g->M >= MR)
    g->kern[MR] = gen_kernel(g, MR);
  gen_packb(g);
  gen_blk(g);
  LLVMValueRef P[6], ps = ci64(g, g->K * g->NR), k0, kc, first;
  Loop lk, lc;

  LLVMTypeRef pt[6] = {g->ptr, g->ptr, g->i64, g->i64};
  LLVMGetParams(newfn(g, "_pack", pt, 4, g->linkage, "B pack p0 p1"), P);
  LLVMValueRef pargs[7] = {P[0], gep(g, P[1], mulv(g, P[2], ps)), P[2], P[3], ci64(g, 0), ci64(g, g->K), ps};
  call(g, g->packb, pargs, 7);
  LLVMBuildRetVoid(g->b);

  LLVMTypeRef pt6[6] = {g->ptr, g->ptr, g->ptr, g->i64, g->i64, g->ptr};
  LLVMGetParams(newfn(g, "_rows", pt6, 6, g->linkage, "A pack C m0 m1 scratch"), P);
  slices_begin(g, &lk, &k0, &kc, &first);
  blk(g, P[0], gep(g, P[1], mul(g, k0, g->NR)), P[2], P[5], ps, P[3], P[4], ci64(g, 0), ci64(g, g->np), k0, kc,
      first);
  loop_end(g, &lk);
  LLVMBuildRetVoid(g->b);

  LLVMGetParams(newfn(g, "_colsp", pt6, 6, g->linkage, "A pack C p0 p1 scratch"), P);
  slices_begin(g, &lk, &k0, &kc, &first);
  LLVMValueRef Bp = gep(g, P[1], add(g, mulv(g, P[3], ps), mul(g, k0, g->NR)));
  blk(g, P[0], Bp, P[2], P[5], ps, ci64(g, 0), ci64(g, g->M), P[3], P[4], k0, kc, first);
  loop_end(g, &lk);
  LLVMBuildRetVoid(g->b);

  /* _cols: per chunk of NCS columns, per slice: pack, multiply */
  LLVMGetParams(newfn(g, "_cols", pt6, 6, g->linkage, "A B C p0 p1 scratch"), P);
  GemmSpec s = {g->M, g->N, g->K, g->lda, g->ldb, g->ldc, g->flags};
  LLVMValueRef Ap = gep(g, P[5], ci64(g, bchunk(&s)));
  LLVMValueRef c0 = loop_begin(g, &lc, P[3], P[4], NCS / g->NR, "chunk");
  LLVMValueRef c1 = smin(g, add(g, c0, ci64(g, NCS / g->NR)), P[4]);
  slices_begin(g, &lk, &k0, &kc, &first);
  LLVMValueRef cps = mul(g, kc, g->NR);
  LLVMValueRef cargs[7] = {P[1], P[5], c0, c1, k0, kc, cps};
  call(g, g->packb, cargs, 7);
  blk(g, P[0], P[5], P[2], Ap, cps, ci64(g, 0), ci64(g, g->M), c0, c1, k0, kc, first);
  loop_end(g, &lk);
  loop_end(g, &lc);
  LLVMBuildRetVoid(g->b);
}

/* ---- the generators ----------------------------------------------------------- */

/* RNNC_ESHAPE with a message for sizes < 1, leading dimensions below the
 * rows' widths, or sizes past 2^40 elements. */
static int check_spec(const char *sym, const GemmSpec *s, char *err, size_t errlen)
{
  const int64_t big = (int64_t)1 << 40;
  if (s->M < 1 || s->N < 1 || s->K < 1) {
    snprintf(err, errlen, "gemm '%s': sizes M = %lld, N = %lld, K = %lld must be at least 1", sym, (long long)s->M,
             (long long)s->N, (long long)s->K);
    return RNNC_ESHAPE;
  }
  if (s->M > big / s->K || s->K > big / s->N || s->M > big / s->N) {
    snprintf(err, errlen, "gemm '%s': sizes M = %lld, N = %lld, K = %lld are too large", sym, (long long)s->M,
             (long long)s->N, (long long)s->K);
    return RNNC_ESHAPE;
  }
  int at = !!(s->flags & GEMM_AT), bt = !!(s->flags & GEMM_BT);
  const struct {
    const char *name, *shape;
    int64_t ld, width, rows;
  } ld[3] = {
      {"lda", at ? "A is [K, M]" : "A is [M, K]", s->lda, at ? s->M : s->K, at ? s->K : s->M},
      {"ldb", bt ? "B is [N, K]" : "B is [K, N]", s->ldb, bt ? s->K : s->N, bt ? s->N : s->K},
      {"ldc", "C is [M, N]", s->ldc, s->N, s->M},
  };
  for (int i = 0; i < 3; i++) {
    if (ld[i].ld < ld[i].width) {
      snprintf(err, errlen, "gemm '%s': %s = %lld is less than a row's %lld floats (%s)", sym, ld[i].name,
               (long long)ld[i].ld, (long long)ld[i].width, ld[i].shape);
      return RNNC_ESHAPE;
    }
    if (ld[i].ld > big / ld[i].rows) {
      snprintf(err, errlen, "gemm '%s': %s = %lld is too large", sym, ld[i].name, (long long)ld[i].ld);
      return RNNC_ESHAPE;
    }
  }
  if (s->flags & ~(GEMM_ACC | GEMM_BT | GEMM_PORTABLE | GEMM_AT))
    die("gemm: unknown flags %#x", (unsigned)s->flags);
  if (strlen(sym) > 200)
    die("gemm: symbol name '%.40s...' too long", sym);
  return RNNC_OK;
}

/* g's types, vector width, panel width and fma for s. */
static void g_init(G *g, LLVMContextRef cx, LLVMModuleRef mod, const char *sym, const GemmSpec *s, int linkage)
{
  *g = (G){.cx = cx, .mod = mod, .flags = s->flags, .M = s->M, .N = s->N, .K = s->K, .lda = s->lda,
           .ldb = s->ldb, .ldc = s->ldc, .sym = sym, .linkage = linkage};
  g->NR = spec_nr(s);
  int fused = g->NR == 16; /* AVX2 + FMA */
  g->W = fused ? 8 : 4;
  g->np = gemm_npanels(s);
  g->npf = s->N / g->NR;
  g->nt = s->N % g->NR;
  g->b = LLVMCreateBuilderInContext(cx);
  g->f32 = LLVMFloatTypeInContext(cx);
  g->i64 = LLVMInt64TypeInContext(cx);
  g->i1 = LLVMInt1TypeInContext(cx);
  g->ptr = LLVMPointerTypeInContext(cx, 0);
  g->voidty = LLVMVoidTypeInContext(cx);
  g->vty = LLVMVectorType(g->f32, (unsigned)g->W);
  /* llvm.fma where the host fuses in hardware; elsewhere llvm.fmuladd, which
   * the back end fuses or not, fixed per target */
  const char *in = fused ? "llvm.fma" : "llvm.fmuladd";
  unsigned id = LLVMLookupIntrinsicID(in, strlen(in));
  g->fma = LLVMGetIntrinsicDeclaration(mod, id, &g->vty, 1);
  g->fmaty = LLVMIntrinsicGetType(cx, id, &g->vty, 1);
}

int gemm_gen2(LLVMContextRef cx, LLVMModuleRef mod, const char *sym, const GemmSpec *s, char *err, size_t errlen)
{
  int rc = check_spec(sym, s, err, errlen);
  if (rc != RNNC_OK)
    return rc;
  G g;
  g_init(&g, cx, mod, sym, s, 0);
  gen_all(&g);
  LLVMDisposeBuilder(g.b);
  return RNNC_OK;
}

/* gemm_gen: gemm_gen2's functions (internal, under sym.g) behind the old
 * entry points; pack holds the panels, then _rows' scratch. */
int gemm_gen(LLVMContextRef cx, LLVMModuleRef mod, const char *sym, int64_t M, int64_t N, int64_t K, int flags,
             char *err, size_t errlen)
{
  GemmSpec s = {M, N, K, K, flags & GEMM_BT ? K : N, N, flags & (GEMM_ACC | GEMM_BT | GEMM_PORTABLE)};
  int rc = check_spec(sym, &s, err, errlen);
  if (rc != RNNC_OK)
    return rc;
  char inner[256];
  snprintf(inner, sizeof inner, "%s.g", sym);
  G g;
  g_init(&g, cx, mod, inner, &s, 1);
  gen_all(&g);
  char name[256];
  snprintf(name, sizeof name, "%s.g_pack", sym);
  LLVMValueRef fpack = LLVMGetNamedFunction(mod, name);
  snprintf(name, sizeof name, "%s.g_rows", sym);
  LLVMValueRef frows = LLVMGetNamedFunction(mod, name);
  g.sym = sym;
  LLVMValueRef P[4];

  LLVMTypeRef pt[4] = {g.ptr, g.ptr, g.ptr, g.ptr};
  LLVMGetParams(newfn(&g, "_pack", pt, 2, 0, "B pack"), P);
  LLVMValueRef pargs[4] = {P[0], P[1], ci64(&g, 0), ci64(&g, g.np)};
  call(&g, fpack, pargs, 4);
  LLVMBuildRetVoid(g.b);

  LLVMGetParams(newfn(&g, "_packed", pt, 3, 0, "A pack C"), P);
  LLVMValueRef rargs[6] = {P[0], P[1], P[2], ci64(&g, 0), ci64(&g, M), gep(&g, P[1], ci64(&g, bpanels(N, K)))};
  call(&g, frows, rargs, 6);
  LLVMBuildRetVoid(g.b);

  LLVMGetParams(newfn(&g, "", pt, 4, 0, "A B C pack"), P);
  LLVMValueRef a1[4] = {P[1], P[3], ci64(&g, 0), ci64(&g, g.np)};
  call(&g, fpack, a1, 4);
  LLVMValueRef a2[6] = {P[0], P[3], P[2], ci64(&g, 0), ci64(&g, M), gep(&g, P[3], ci64(&g, bpanels(N, K)))};
  call(&g, frows, a2, 6);
  LLVMBuildRetVoid(g.b);
  LLVMDisposeBuilder(g.b);
  return RNNC_OK;
}
