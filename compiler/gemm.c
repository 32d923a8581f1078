/* gemm.c — LLVM IR for C[M, N] (+)= A[M, K] · B, float32, row-major, with
 * M, N, K compile-time constants.
 * require: a module of cx. produce: in it, sym (pack B, then multiply),
 * sym_pack and sym_packed (see ir.h, "compiler/gemm.c").
 *
 * B is packed into column panels of NR columns, panel p holding
 * pack[(p·K + k)·NR + j] = B[k, p·NR + j] (zero past column N), so the
 * micro-kernel reads B contiguously. The product runs in blocks:
 *   for each KC slice of k
 *     for each NC block of columns  (its KC·NC floats of panels, in L3)
 *       for each MC block of rows   (A's block packed after B: MC·KC floats,
 *                                    MR-row micro-panels, k-major)
 *         for each panel p of the column block:
 *           for each MR rows: micro-kernel MR x NR over the slice
 * KC, MC and NC were tuned against OpenBLAS on the benchmark shapes
 * (bench/README.md); KC = 1024 keeps C5's K in one slice, so C is read and
 * written once.
 * The micro-kernel keeps an MR x NR block of C in MR·NR/W vector registers
 * (W = 8 floats with AVX2 + FMA on the host, else 4), and per k broadcasts
 * one float of each A row against NR/W vectors of the panel with llvm.fma;
 * its rows and vectors are unrolled in the IR, its k loop is a loop. Row and
 * column tails get their own kernels (fewer rows; fewer vectors, the last
 * one stored lane by lane). Every element of C is summed in increasing k
 * within a slice, and the slices are added to C in increasing order: the
 * order depends on M, N, K and the flags only. Nothing here is JIT-specific:
 * no addresses, no triple, scratch from the caller. */
#include <string.h>

#include <llvm-c/Core.h>
#include <llvm-c/DebugInfo.h> /* LLVMTemporaryMDNode */
#include <llvm-c/TargetMachine.h>

#include "ir.h"

enum {
  MR = 6,    /* rows of the register block */
  KC = 1024, /* k per slice: a panel slice (KC·NR floats) in L2 */
  MC = 120,  /* rows per block, a multiple of MR */
  NC = 4096, /* columns per block, a multiple of every NR */
  MAXNR = 16, /* the widest NR */
  PFD = 32,   /* k steps before the end of a slice at which C is prefetched */
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
  int64_t M, N, K;
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

/* Floats of B's panels for the widest NR, and of one block of A packed
 * (up to MC rows, rounded up to MR, by up to KC columns). */
static int64_t bpanels(int64_t N, int64_t K) { return (N + MAXNR - 1) / MAXNR * MAXNR * K; }
static int64_t ablock(int64_t M, int64_t K)
{
  int64_t rows = (M + MR - 1) / MR * MR;
  return (rows < MC ? rows : MC) * (K < KC ? K : KC);
}

size_t gemm_pack_size(int64_t M, int64_t N, int64_t K) { return (size_t)(bpanels(N, K) + ablock(M, K)); }

static LLVMValueRef ci64(G *g, int64_t v) { return LLVMConstInt(g->i64, (unsigned long long)v, 1); }

static void addattr(G *g, LLVMValueRef fn, unsigned idx, const char *name)
{
  unsigned kind = LLVMGetEnumAttributeKindForName(name, strlen(name));
  LLVMAddAttributeAtIndex(fn, idx, LLVMCreateEnumAttribute(g->cx, kind, 0));
}

/* A function of the module: nounwind, every pointer parameter noalias. */
static LLVMValueRef newfn(G *g, const char *suffix, LLVMTypeRef *pt, unsigned n, int internal)
{
  char name[256];
  snprintf(name, sizeof name, "%s%s", g->sym, suffix);
  LLVMValueRef fn = LLVMAddFunction(g->mod, name, LLVMFunctionType(g->voidty, pt, n, 0));
  if (internal)
    LLVMSetLinkage(fn, LLVMInternalLinkage);
  addattr(g, fn, LLVMAttributeFunctionIndex, "nounwind");
  for (unsigned i = 0; i < n; i++)
    if (pt[i] == g->ptr)
      addattr(g, fn, i + 1, "noalias");
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

/* ---- packing ----------------------------------------------------------------- */

/* pack[(p·K + k)·NR + j] = B[k, p·NR + j] for columns < N, else 0 */
static void gen_pack(G *g)
{
  LLVMTypeRef pt[2] = {g->ptr, g->ptr};
  LLVMValueRef fn = newfn(g, "_pack", pt, 2, 0);
  LLVMValueRef B = LLVMGetParam(fn, 0), pack = LLVMGetParam(fn, 1);
  LLVMSetValueName2(B, "B", 1);
  LLVMSetValueName2(pack, "pack", 4);
  int64_t np = g->N / g->NR, nt = g->N % g->NR;
  for (int tail = 0; tail < 2; tail++) {
    if (tail ? nt == 0 : np == 0)
      continue;
    Loop lp, lk, lj;
    LLVMValueRef p = loop_begin(g, &lp, ci64(g, tail ? np : 0), ci64(g, tail ? np + 1 : np), 1, "panel");
    LLVMValueRef k = loop_begin(g, &lk, ci64(g, 0), ci64(g, g->K), 1, "k");
    LLVMValueRef row = mul(g, add(g, mul(g, p, g->K), k), g->NR); /* pack row (p, k) */
    LLVMValueRef j = loop_begin(g, &lj, ci64(g, 0), ci64(g, tail ? nt : g->NR), 1, "j");
    LLVMValueRef n = add(g, mul(g, p, g->NR), j);
    LLVMValueRef src = g->flags & GEMM_BT ? add(g, mul(g, n, g->K), k) : add(g, mul(g, k, g->N), n);
    LLVMValueRef v = LLVMBuildLoad2(g->b, g->f32, gep(g, B, src), "");
    LLVMBuildStore(g->b, v, gep(g, pack, add(g, row, j)));
    loop_end(g, &lj);
    if (tail) {
      LLVMValueRef z = loop_begin(g, &lj, ci64(g, nt), ci64(g, g->NR), 1, "zero");
      LLVMBuildStore(g->b, LLVMConstReal(g->f32, 0), gep(g, pack, add(g, row, z)));
      loop_end(g, &lj);
    }
    loop_end(g, &lk);
    loop_end(g, &lp);
  }
  LLVMBuildRetVoid(g->b);
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
  for (int v = 0; v < nv; v++) {
    bv[v] = LLVMBuildLoad2(g->b, g->vty, gep(g, Bp, add(g, brow, ci64(g, (int64_t)v * g->W))), "b");
    LLVMSetAlignment(bv[v], 4);
  }
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

/* void kern(A, Bp, C, i64 kc, i1 first), internal: for r < mr, j < nr,
 *   C[r·N + j] = (first ? 0 : C[r·N + j]) + Σ_{k < kc} Ap[k·MR + r] Bp[k·NR + j]
 * with the sum in increasing k; kc >= 1. */
static LLVMValueRef gen_kernel(G *g, int mr, int nr)
{
  char suffix[32];
  snprintf(suffix, sizeof suffix, "_k%dx%d", mr, nr);
  LLVMTypeRef pt[5] = {g->ptr, g->ptr, g->ptr, g->i64, g->i1};
  LLVMValueRef fn = newfn(g, suffix, pt, 5, 1);
  LLVMValueRef A = LLVMGetParam(fn, 0), Bp = LLVMGetParam(fn, 1), C = LLVMGetParam(fn, 2);
  LLVMValueRef kc = LLVMGetParam(fn, 3), first = LLVMGetParam(fn, 4);
  int nv = (nr + g->W - 1) / g->W;
  /* acc = Σ over k in [0, split), prefetch the C tile for writing
   * (llvm.prefetch(p, rw 1, locality 3, data 1), the first and last float of
   * each row), then k in [split, kc): the tile arrives while the last PFD
   * steps run and is not evicted by the panel streaming through L1 */
  LLVMValueRef acc[MR][MAXNR / 4], next[MR][MAXNR / 4];
  for (int r = 0; r < mr; r++)
    for (int v = 0; v < nv; v++)
      acc[r][v] = LLVMConstNull(g->vty);
  LLVMValueRef split = LLVMBuildNSWSub(g->b, kc, ci64(g, PFD), "");
  split = LLVMBuildSelect(g->b, LLVMBuildICmp(g->b, LLVMIntSLT, split, ci64(g, 0), ""), ci64(g, 0), split, "split");
  gen_kloop(g, mr, nv, A, Bp, ci64(g, 0), split, acc, next);
  unsigned pid = LLVMLookupIntrinsicID("llvm.prefetch", 13);
  LLVMValueRef pf = LLVMGetIntrinsicDeclaration(g->mod, pid, &g->ptr, 1);
  LLVMTypeRef pfty = LLVMIntrinsicGetType(g->cx, pid, &g->ptr, 1);
  LLVMTypeRef i32 = LLVMInt32TypeInContext(g->cx);
  for (int r = 0; r < mr; r++)
    for (int e = 0; e < 2; e++) {
      LLVMValueRef pa[4] = {gep(g, C, ci64(g, (int64_t)r * g->N + (e ? nr - 1 : 0))), LLVMConstInt(i32, 1, 0),
                            LLVMConstInt(i32, 3, 0), LLVMConstInt(i32, 1, 0)};
      LLVMBuildCall2(g->b, pfty, pf, pa, 4, "");
    }
  gen_kloop(g, mr, nv, A, Bp, split, kc, next, next);

  /* C += acc (or C = acc on the first slice): whole vectors, then the lanes
   * of a last partial vector one by one */
  for (int r = 0; r < mr; r++)
    for (int v = 0; v < nv; v++) {
      int lanes = nr - v * g->W < g->W ? nr - v * g->W : g->W;
      int64_t off = (int64_t)r * g->N + (int64_t)v * g->W;
      if (lanes == g->W) {
        LLVMValueRef p = gep(g, C, ci64(g, off));
        LLVMValueRef old = LLVMBuildLoad2(g->b, g->vty, p, "c");
        LLVMSetAlignment(old, 4);
        LLVMValueRef sum = LLVMBuildSelect(g->b, first, next[r][v], LLVMBuildFAdd(g->b, old, next[r][v], ""), "");
        LLVMSetAlignment(LLVMBuildStore(g->b, sum, p), 4);
        continue;
      }
      for (int e = 0; e < lanes; e++) {
        LLVMValueRef p = gep(g, C, ci64(g, off + e));
        LLVMValueRef x = LLVMBuildExtractElement(g->b, next[r][v], LLVMConstInt(g->i64, (unsigned)e, 0), "");
        LLVMValueRef old = LLVMBuildLoad2(g->b, g->f32, p, "c");
        LLVMBuildStore(g->b, LLVMBuildSelect(g->b, first, x, LLVMBuildFAdd(g->b, old, x, ""), ""), p);
      }
    }
  LLVMBuildRetVoid(g->b);
  return fn;
}

/* ---- the blocked product ----------------------------------------------------- */

static LLVMValueRef call(G *g, LLVMValueRef fn, LLVMValueRef *args, unsigned n)
{
  return LLVMBuildCall2(g->b, LLVMGlobalGetValueType(fn), fn, args, n, "");
}

static LLVMValueRef smin(G *g, LLVMValueRef a, LLVMValueRef b)
{
  return LLVMBuildSelect(g->b, LLVMBuildICmp(g->b, LLVMIntSLT, a, b, ""), a, b, "");
}

/* One panel p against the rows [i0, iend) of a block, whose A slice is
 * packed at Ap: MR rows at a time, then, in the last block, the M % MR rows
 * left (kern[1]). */
static void gen_rows(G *g, LLVMValueRef *kern, LLVMValueRef p, LLVMValueRef Ap, LLVMValueRef pack, LLVMValueRef C,
                     LLVMValueRef k0, LLVMValueRef kc, LLVMValueRef first, LLVMValueRef ib, LLVMValueRef i0,
                     LLVMValueRef nq)
{
  LLVMValueRef Bp = gep(g, pack, mul(g, add(g, mul(g, p, g->K), k0), g->NR)); /* panel p, row k0 */
  LLVMValueRef Cp = gep(g, C, mul(g, p, g->NR));                                /* column p·NR */
  LLVMValueRef qstride = mul(g, kc, MR);
  Loop lq;
  LLVMValueRef q = loop_begin(g, &lq, ci64(g, 0), nq, 1, "q");
  LLVMValueRef i = add(g, i0, mul(g, q, MR));
  LLVMValueRef args[5] = {gep(g, Ap, LLVMBuildNSWMul(g->b, q, qstride, "")), Bp, gep(g, Cp, mul(g, i, g->N)), kc,
                          first};
  call(g, kern[0], args, 5);
  loop_end(g, &lq);
  int64_t mt = g->M % MR, nib = (g->M + MC - 1) / MC;
  if (mt) {
    LLVMBasicBlockRef tail = LLVMAppendBasicBlockInContext(g->cx, g->fn, "mtail");
    LLVMBasicBlockRef after = LLVMAppendBasicBlockInContext(g->cx, g->fn, "after");
    LLVMBuildCondBr(g->b, LLVMBuildICmp(g->b, LLVMIntEQ, ib, ci64(g, nib - 1), ""), tail, after);
    LLVMPositionBuilderAtEnd(g->b, tail);
    LLVMValueRef r = ci64(g, g->M - mt);
    LLVMValueRef targs[5] = {gep(g, Ap, LLVMBuildNSWMul(g->b, nq, qstride, "")), Bp, gep(g, Cp, mul(g, r, g->N)),
                             kc, first};
    call(g, kern[1], targs, 5);
    LLVMBuildBr(g->b, after);
    LLVMPositionBuilderAtEnd(g->b, after);
  }
}

/* Ap[(q·kc + k)·MR + r] = A[i0 + q·MR + r, k0 + k] for the rows [i0, iend):
 * MR-row micro-panels read contiguously by the kernel. */
static void gen_pack_a(G *g, LLVMValueRef A, LLVMValueRef Ap, LLVMValueRef i0, LLVMValueRef iend, LLVMValueRef k0,
                       LLVMValueRef kc)
{
  Loop li, lk;
  LLVMValueRef i = loop_begin(g, &li, i0, iend, 1, "ai");
  LLVMValueRef ir = LLVMBuildNSWSub(g->b, i, i0, "");
  LLVMValueRef q = LLVMBuildUDiv(g->b, ir, ci64(g, MR), ""), r = LLVMBuildURem(g->b, ir, ci64(g, MR), "");
  LLVMValueRef dst = add(g, mul(g, LLVMBuildNSWMul(g->b, q, kc, ""), MR), r);
  LLVMValueRef src = add(g, mul(g, i, g->K), k0);
  LLVMValueRef k = loop_begin(g, &lk, ci64(g, 0), kc, 1, "ak");
  LLVMValueRef v = LLVMBuildLoad2(g->b, g->f32, gep(g, A, add(g, src, k)), "");
  LLVMBuildStore(g->b, v, gep(g, Ap, add(g, dst, mul(g, k, MR))));
  loop_end(g, &lk);
  loop_end(g, &li);
}

/* void sym_packed(A, pack, C): the loop nest of the header comment. */
static void gen_packed(G *g)
{
  int64_t np = g->N / g->NR, nt = g->N % g->NR, mt = g->M % MR;
  LLVMValueRef kfull[2] = {gen_kernel(g, MR, g->NR), mt ? gen_kernel(g, (int)mt, g->NR) : NULL};
  LLVMValueRef ktail[2] = {NULL, NULL};
  if (nt) {
    ktail[0] = gen_kernel(g, MR, (int)nt);
    ktail[1] = mt ? gen_kernel(g, (int)mt, (int)nt) : NULL;
  }
  LLVMTypeRef pt[3] = {g->ptr, g->ptr, g->ptr};
  LLVMValueRef fn = newfn(g, "_packed", pt, 3, 0);
  LLVMValueRef A = LLVMGetParam(fn, 0), pack = LLVMGetParam(fn, 1), C = LLVMGetParam(fn, 2);
  LLVMSetValueName2(A, "A", 1);
  LLVMSetValueName2(pack, "pack", 4);
  LLVMSetValueName2(C, "C", 1);
  LLVMValueRef Ap = gep(g, pack, ci64(g, bpanels(g->N, g->K)));
  /* column blocks of NC columns: the panels of one block and one k slice
   * (KC·NC floats) stay in L3 while every row block passes over them */
  int64_t ncp = NC / g->NR, njb = np ? (np + ncp - 1) / ncp : 1;
  Loop lk, lj, li, lp;
  LLVMValueRef kb = loop_begin(g, &lk, ci64(g, 0), ci64(g, (g->K + KC - 1) / KC), 1, "kb");
  LLVMValueRef k0 = mul(g, kb, KC);
  LLVMValueRef kc = smin(g, LLVMBuildNSWSub(g->b, ci64(g, g->K), k0, ""), ci64(g, KC));
  LLVMValueRef first = g->flags & GEMM_ACC ? LLVMConstInt(g->i1, 0, 0)
                                           : LLVMBuildICmp(g->b, LLVMIntEQ, kb, ci64(g, 0), "first");
  LLVMValueRef jb = loop_begin(g, &lj, ci64(g, 0), ci64(g, njb), 1, "jb");
  LLVMValueRef p0 = mul(g, jb, ncp), p1 = smin(g, add(g, p0, ci64(g, ncp)), ci64(g, np));
  LLVMValueRef ib = loop_begin(g, &li, ci64(g, 0), ci64(g, (g->M + MC - 1) / MC), 1, "ib");
  LLVMValueRef i0 = mul(g, ib, MC);
  LLVMValueRef iend = smin(g, add(g, i0, ci64(g, MC)), ci64(g, g->M));
  LLVMValueRef nq = LLVMBuildSDiv(g->b, LLVMBuildNSWSub(g->b, iend, i0, ""), ci64(g, MR), "nq"); /* whole MR blocks */
  gen_pack_a(g, A, Ap, i0, iend, k0, kc);
  if (np) {
    LLVMValueRef p = loop_begin(g, &lp, p0, p1, 1, "p");
    gen_rows(g, kfull, p, Ap, pack, C, k0, kc, first, ib, i0, nq);
    loop_end(g, &lp);
  }
  if (nt) { /* the last panel, partial, with the last column block */
    LLVMBasicBlockRef tail = LLVMAppendBasicBlockInContext(g->cx, g->fn, "ntail");
    LLVMBasicBlockRef after = LLVMAppendBasicBlockInContext(g->cx, g->fn, "after");
    LLVMBuildCondBr(g->b, LLVMBuildICmp(g->b, LLVMIntEQ, jb, ci64(g, njb - 1), ""), tail, after);
    LLVMPositionBuilderAtEnd(g->b, tail);
    gen_rows(g, ktail, ci64(g, np), Ap, pack, C, k0, kc, first, ib, i0, nq);
    LLVMBuildBr(g->b, after);
    LLVMPositionBuilderAtEnd(g->b, after);
  }
  loop_end(g, &li);
  loop_end(g, &lj);
  loop_end(g, &lk);
  LLVMBuildRetVoid(g->b);
}

int gemm_gen(LLVMContextRef cx, LLVMModuleRef mod, const char *sym, int64_t M, int64_t N, int64_t K, int flags,
             char *err, size_t errlen)
{
  const int64_t big = (int64_t)1 << 40;
  if (M < 1 || N < 1 || K < 1) {
    snprintf(err, errlen, "gemm '%s': sizes M = %lld, N = %lld, K = %lld must be at least 1", sym, (long long)M,
             (long long)N, (long long)K);
    return RNNC_ESHAPE;
  }
  if (M > big / K || K > big / N || M > big / N) {
    snprintf(err, errlen, "gemm '%s': sizes M = %lld, N = %lld, K = %lld are too large", sym, (long long)M,
             (long long)N, (long long)K);
    return RNNC_ESHAPE;
  }
  if (strlen(sym) > 200)
    die("gemm: symbol name '%.40s...' too long", sym);
  G g = {.cx = cx, .mod = mod, .flags = flags, .M = M, .N = N, .K = K, .sym = sym};
  int mr;
  gemm_block(flags, &mr, &g.NR);
  int fused = g.NR == 16; /* AVX2 + FMA */
  g.W = fused ? 8 : 4;
  g.b = LLVMCreateBuilderInContext(cx);
  g.f32 = LLVMFloatTypeInContext(cx);
  g.i64 = LLVMInt64TypeInContext(cx);
  g.i1 = LLVMInt1TypeInContext(cx);
  g.ptr = LLVMPointerTypeInContext(cx, 0);
  g.voidty = LLVMVoidTypeInContext(cx);
  g.vty = LLVMVectorType(g.f32, (unsigned)g.W);
  /* llvm.fma where the host fuses in hardware; elsewhere llvm.fmuladd, which
   * the back end fuses or not, fixed per target */
  const char *in = fused ? "llvm.fma" : "llvm.fmuladd";
  unsigned id = LLVMLookupIntrinsicID(in, strlen(in));
  g.fma = LLVMGetIntrinsicDeclaration(mod, id, &g.vty, 1);
  g.fmaty = LLVMIntrinsicGetType(cx, id, &g.vty, 1);

  gen_pack(&g);
  gen_packed(&g);
  LLVMTypeRef pt[4] = {g.ptr, g.ptr, g.ptr, g.ptr};
  LLVMValueRef fn = newfn(&g, "", pt, 4, 0);
  const char *names[4] = {"A", "B", "C", "pack"};
  for (unsigned i = 0; i < 4; i++)
    LLVMSetValueName2(LLVMGetParam(fn, i), names[i], strlen(names[i]));
  char name[256];
  snprintf(name, sizeof name, "%s_pack", sym);
  LLVMValueRef pk[2] = {LLVMGetParam(fn, 1), LLVMGetParam(fn, 3)};
  call(&g, LLVMGetNamedFunction(mod, name), pk, 2);
  snprintf(name, sizeof name, "%s_packed", sym);
  LLVMValueRef pd[3] = {LLVMGetParam(fn, 0), LLVMGetParam(fn, 3), LLVMGetParam(fn, 2)};
  call(&g, LLVMGetNamedFunction(mod, name), pd, 3);
  LLVMBuildRetVoid(g.b);
  LLVMDisposeBuilder(g.b);
  return RNNC_OK;
}
