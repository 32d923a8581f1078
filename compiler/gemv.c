/* gemv.c — C[m, n] (+)= Σ_k A[m, k] · W[n, k] for a few rows m: x·W^T with W
 * read where it is, unpacked (one token of generation: packing the weights
 * would cost more than the product).
 * require: a module of cx. produce: the kernel sym (KernFn ABI, ir.h), over
 * the range of columns n in [0, N) given as [lo, hi).
 *
 * Each C[m, n] is one dot product of A's row m and W's row n: four vector
 * accumulators over k in strides of 4·VW, added in a fixed order, then the
 * lanes in order, then the scalar tail. The order depends on K and the
 * vector width only: results do not depend on how columns are split over
 * threads. Nothing here is JIT-specific. */
#include <string.h>

#include <llvm-c/Core.h>

#include "ir.h"

typedef struct V {
  IRB ir;
  LLVMTypeRef vty;
  LLVMValueRef fma, sfma;
  LLVMTypeRef fmaty, sfmaty;
  int W;
} V;

/* base + off + t*tstride (floats) of an Addr */
static LLVMValueRef origin(V *v, LLVMValueRef buf, LLVMValueRef t, Addr a)
{
  IRB *ir = &v->ir;
  LLVMValueRef slot = irb_i64(ir, a.slot);
  LLVMValueRef base = LLVMBuildLoad2(ir->b, ir->ptr, LLVMBuildInBoundsGEP2(ir->b, ir->ptr, buf, &slot, 1, ""), "");
  LLVMValueRef off =
      LLVMBuildNSWAdd(ir->b, irb_i64(ir, a.off), LLVMBuildNSWMul(ir->b, t, irb_i64(ir, a.tstride), ""), "");
  return irb_gep(ir, base, off);
}

int mk_gemv(LLVMContextRef cx, LLVMModuleRef mod, const char *sym, int64_t M, int64_t N, int64_t K, Addr a,
            Addr w, Addr c, int acc, int portable, char *err, size_t errlen)
{
  if (M < 1 || N < 1 || K < 1) {
    snprintf(err, errlen, "kernel '%s': M = %lld, N = %lld, K = %lld must be at least 1", sym, (long long)M,
             (long long)N, (long long)K);
    return RNNC_ESHAPE;
  }
  int mr, nr;
  gemm_block(portable ? GEMM_PORTABLE : 0, &mr, &nr);
  V v = {.W = nr == 16 ? 8 : 4};
  irb_init(&v.ir, cx, mod);
  IRB *ir = &v.ir;
  v.vty = LLVMVectorType(ir->f32, (unsigned)v.W);
  const char *in = v.W == 8 ? "llvm.fma" : "llvm.fmuladd";
  unsigned id = LLVMLookupIntrinsicID(in, strlen(in));
  v.fma = LLVMGetIntrinsicDeclaration(mod, id, &v.vty, 1);
  v.fmaty = LLVMIntrinsicGetType(cx, id, &v.vty, 1);
  v.sfma = LLVMGetIntrinsicDeclaration(mod, id, &ir->f32, 1);
  v.sfmaty = LLVMIntrinsicGetType(cx, id, &ir->f32, 1);

  LLVMTypeRef pt[5] = {ir->ptr, ir->i64, ir->i64, ir->i64, ir->ptr};
  ir->fn = LLVMAddFunction(mod, sym, LLVMFunctionType(LLVMVoidTypeInContext(cx), pt, 5, 0));
  LLVMPositionBuilderAtEnd(ir->b, LLVMAppendBasicBlockInContext(cx, ir->fn, "entry"));
  LLVMValueRef buf = LLVMGetParam(ir->fn, 0), t = LLVMGetParam(ir->fn, 1);
  LLVMValueRef lo = LLVMGetParam(ir->fn, 2), hi = LLVMGetParam(ir->fn, 3);
  LLVMValueRef A = origin(&v, buf, t, a), Wp = origin(&v, buf, t, w), Cp = origin(&v, buf, t, c);

  int64_t step = 4 * (int64_t)v.W, kv = K / step * step, kw = K / v.W * v.W;
  IRLoop ln, lk;
  LLVMValueRef n = irb_loop_named(ir, &ln, lo, hi, 1, "head", "", "exit");
  LLVMValueRef wrow = irb_gep(ir, Wp, LLVMBuildNSWMul(ir->b, n, irb_i64(ir, w.ld), ""));
  for (int64_t m = 0; m < M; m++) {
    LLVMValueRef arow = irb_gep(ir, A, irb_i64(ir, m * a.ld));
    LLVMValueRef zero = LLVMConstNull(v.vty);
    LLVMValueRef s[4];
    LLVMBasicBlockRef pre = LLVMGetInsertBlock(ir->b);
    if (kv > 0) {
      LLVMValueRef k = irb_loop_named(ir, &lk, irb_i64(ir, 0), irb_i64(ir, kv), step, "head", "", "exit");
      LLVMValueRef phi[4];
      /* the accumulators: phis of the loop head, after its iv */
      LLVMPositionBuilderBefore(ir->b, LLVMGetNextInstruction(lk.iv));
      for (int q = 0; q < 4; q++) {
        phi[q] = LLVMBuildPhi(ir->b, v.vty, "");
        LLVMAddIncoming(phi[q], &zero, &pre, 1);
      }
      LLVMPositionBuilderAtEnd(ir->b, LLVMGetPreviousBasicBlock(lk.exit)); /* the body */
      for (int q = 0; q < 4; q++) {
        LLVMValueRef kq = LLVMBuildNSWAdd(ir->b, k, irb_i64(ir, q * (int64_t)v.W), "");
        LLVMValueRef args[3] = {irb_loadu(ir, v.vty, irb_gep(ir, arow, kq)),
                                irb_loadu(ir, v.vty, irb_gep(ir, wrow, kq)), phi[q]};
        s[q] = LLVMBuildCall2(ir->b, v.fmaty, v.fma, args, 3, "");
      }
      LLVMBasicBlockRef latch = LLVMGetInsertBlock(ir->b);
      for (int q = 0; q < 4; q++)
        LLVMAddIncoming(phi[q], &s[q], &latch, 1);
      irb_loop_end(ir, &lk);
      for (int q = 0; q < 4; q++) /* the loop's results: the phis as they exit */
        s[q] = phi[q];
    } else {
      for (int q = 0; q < 4; q++)
        s[q] = zero;
    }
    /* whole vectors past the unrolled part, into s[0] */
    for (int64_t k = kv; k < kw; k += v.W) {
      LLVMValueRef args[3] = {irb_loadu(ir, v.vty, irb_gep(ir, arow, irb_i64(ir, k))),
                              irb_loadu(ir, v.vty, irb_gep(ir, wrow, irb_i64(ir, k))), s[0]};
      s[0] = LLVMBuildCall2(ir->b, v.fmaty, v.fma, args, 3, "");
    }
    LLVMValueRef tot =
        LLVMBuildFAdd(ir->b, LLVMBuildFAdd(ir->b, s[0], s[1], ""), LLVMBuildFAdd(ir->b, s[2], s[3], ""), "");
    LLVMValueRef r = LLVMBuildExtractElement(ir->b, tot, irb_i64(ir, 0), "");
    for (int e = 1; e < v.W; e++)
      r = LLVMBuildFAdd(ir->b, r, LLVMBuildExtractElement(ir->b, tot, irb_i64(ir, e), ""), "");
    for (int64_t k = kw; k < K; k++) {
      LLVMValueRef args[3] = {LLVMBuildLoad2(ir->b, ir->f32, irb_gep(ir, arow, irb_i64(ir, k)), ""),
                              LLVMBuildLoad2(ir->b, ir->f32, irb_gep(ir, wrow, irb_i64(ir, k)), ""), r};
      r = LLVMBuildCall2(ir->b, v.sfmaty, v.sfma, args, 3, "");
    }
    LLVMValueRef cp = irb_gep(ir, Cp, LLVMBuildNSWAdd(ir->b, irb_i64(ir, m * c.ld), n, ""));
    if (acc)
      r = LLVMBuildFAdd(ir->b, LLVMBuildLoad2(ir->b, ir->f32, cp, ""), r, "");
    LLVMBuildStore(ir->b, r, cp);
  }
  irb_loop_end(ir, &ln);
  LLVMBuildRetVoid(ir->b);
  irb_free(ir);
  return RNNC_OK;
}
