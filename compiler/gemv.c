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
#include <llvm-c/DebugInfo.h>

#include "ir.h"

typedef struct V {
  LLVMContextRef cx;
  LLVMModuleRef mod;
  LLVMBuilderRef b;
  LLVMValueRef fn;
  LLVMTypeRef f32, i64, ptr, vty;
  LLVMValueRef fma, sfma;
  LLVMTypeRef fmaty, sfmaty;
  int W;
} V;

static LLVMValueRef ci(V *v, int64_t x) { return LLVMConstInt(v->i64, (unsigned long long)x, 1); }

typedef struct Loop {
  LLVMBasicBlockRef head, exit;
  LLVMValueRef iv;
  int64_t step;
} Loop;

static LLVMValueRef loop_begin(V *v, Loop *l, LLVMValueRef lo, LLVMValueRef hi, int64_t step)
{
  LLVMBasicBlockRef pre = LLVMGetInsertBlock(v->b);
  l->step = step;
  l->head = LLVMAppendBasicBlockInContext(v->cx, v->fn, "head");
  LLVMBasicBlockRef body = LLVMAppendBasicBlockInContext(v->cx, v->fn, "body");
  l->exit = LLVMAppendBasicBlockInContext(v->cx, v->fn, "exit");
  LLVMBuildBr(v->b, l->head);
  LLVMPositionBuilderAtEnd(v->b, l->head);
  l->iv = LLVMBuildPhi(v->b, v->i64, "");
  LLVMAddIncoming(l->iv, &lo, &pre, 1);
  LLVMBuildCondBr(v->b, LLVMBuildICmp(v->b, LLVMIntSLT, l->iv, hi, ""), body, l->exit);
  LLVMPositionBuilderAtEnd(v->b, body);
  return l->iv;
}

static void loop_end(V *v, Loop *l)
{
  LLVMValueRef next = LLVMBuildNSWAdd(v->b, l->iv, ci(v, l->step), "");
  LLVMBasicBlockRef latch = LLVMGetInsertBlock(v->b);
  LLVMValueRef br = LLVMBuildBr(v->b, l->head);
  LLVMAddIncoming(l->iv, &next, &latch, 1);
  LLVMMetadataRef self = LLVMTemporaryMDNode(v->cx, NULL, 0);
  LLVMMetadataRef s = LLVMMDStringInContext2(v->cx, "llvm.loop.unroll.disable", 24);
  LLVMMetadataRef ops[2] = {self, LLVMMDNodeInContext2(v->cx, &s, 1)};
  LLVMMetadataRef md = LLVMMDNodeInContext2(v->cx, ops, 2);
  LLVMMetadataReplaceAllUsesWith(self, md);
  LLVMSetMetadata(br, LLVMGetMDKindIDInContext(v->cx, "llvm.loop", 9), LLVMMetadataAsValue(v->cx, md));
  LLVMPositionBuilderAtEnd(v->b, l->exit);
}

static LLVMValueRef gep(V *v, LLVMValueRef base, LLVMValueRef off)
{
  return LLVMBuildInBoundsGEP2(v->b, v->f32, base, &off, 1, "");
}

static LLVMValueRef vload(V *v, LLVMValueRef p)
{
  LLVMValueRef x = LLVMBuildLoad2(v->b, v->vty, p, "");
  LLVMSetAlignment(x, 4);
  return x;
}

/* base + off + t*tstride (floats) of an Addr */
static LLVMValueRef origin(V *v, LLVMValueRef buf, LLVMValueRef t, Addr a)
{
  LLVMValueRef slot = ci(v, a.slot);
  LLVMValueRef base = LLVMBuildLoad2(v->b, v->ptr, LLVMBuildInBoundsGEP2(v->b, v->ptr, buf, &slot, 1, ""), "");
  LLVMValueRef off = LLVMBuildNSWAdd(v->b, ci(v, a.off), LLVMBuildNSWMul(v->b, t, ci(v, a.tstride), ""), "");
  return gep(v, base, off);
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
  V v = {.cx = cx, .mod = mod, .W = nr == 16 ? 8 : 4};
  v.b = LLVMCreateBuilderInContext(cx);
  v.f32 = LLVMFloatTypeInContext(cx);
  v.i64 = LLVMInt64TypeInContext(cx);
  v.ptr = LLVMPointerTypeInContext(cx, 0);
  v.vty = LLVMVectorType(v.f32, (unsigned)v.W);
  const char *in = v.W == 8 ? "llvm.fma" : "llvm.fmuladd";
  unsigned id = LLVMLookupIntrinsicID(in, strlen(in));
  v.fma = LLVMGetIntrinsicDeclaration(mod, id, &v.vty, 1);
  v.fmaty = LLVMIntrinsicGetType(cx, id, &v.vty, 1);
  v.sfma = LLVMGetIntrinsicDeclaration(mod, id, &v.f32, 1);
  v.sfmaty = LLVMIntrinsicGetType(cx, id, &v.f32, 1);

  LLVMTypeRef pt[5] = {v.ptr, v.i64, v.i64, v.i64, v.ptr};
  v.fn = LLVMAddFunction(mod, sym, LLVMFunctionType(LLVMVoidTypeInContext(cx), pt, 5, 0));
  LLVMPositionBuilderAtEnd(v.b, LLVMAppendBasicBlockInContext(cx, v.fn, "entry"));
  LLVMValueRef buf = LLVMGetParam(v.fn, 0), t = LLVMGetParam(v.fn, 1);
  LLVMValueRef lo = LLVMGetParam(v.fn, 2), hi = LLVMGetParam(v.fn, 3);
  LLVMValueRef A = origin(&v, buf, t, a), Wp = origin(&v, buf, t, w), Cp = origin(&v, buf, t, c);

  int64_t step = 4 * (int64_t)v.W, kv = K / step * step, kw = K / v.W * v.W;
  Loop ln, lk;
  LLVMValueRef n = loop_begin(&v, &ln, lo, hi, 1);
  LLVMValueRef wrow = gep(&v, Wp, LLVMBuildNSWMul(v.b, n, ci(&v, w.ld), ""));
  for (int64_t m = 0; m < M; m++) {
    LLVMValueRef arow = gep(&v, A, ci(&v, m * a.ld));
    LLVMValueRef zero = LLVMConstNull(v.vty);
    LLVMValueRef s[4];
    LLVMBasicBlockRef pre = LLVMGetInsertBlock(v.b);
    if (kv > 0) {
      LLVMValueRef k = loop_begin(&v, &lk, ci(&v, 0), ci(&v, kv), step);
      LLVMValueRef phi[4];
      /* the accumulators: phis of the loop head, after its iv */
      LLVMPositionBuilderBefore(v.b, LLVMGetNextInstruction(lk.iv));
      for (int q = 0; q < 4; q++) {
        phi[q] = LLVMBuildPhi(v.b, v.vty, "");
        LLVMAddIncoming(phi[q], &zero, &pre, 1);
      }
      LLVMPositionBuilderAtEnd(v.b, LLVMGetPreviousBasicBlock(lk.exit)); /* the body */
      for (int q = 0; q < 4; q++) {
        LLVMValueRef kq = LLVMBuildNSWAdd(v.b, k, ci(&v, q * (int64_t)v.W), "");
        LLVMValueRef args[3] = {vload(&v, gep(&v, arow, kq)), vload(&v, gep(&v, wrow, kq)), phi[q]};
        s[q] = LLVMBuildCall2(v.b, v.fmaty, v.fma, args, 3, "");
      }
      LLVMBasicBlockRef latch = LLVMGetInsertBlock(v.b);
      for (int q = 0; q < 4; q++)
        LLVMAddIncoming(phi[q], &s[q], &latch, 1);
      loop_end(&v, &lk);
      for (int q = 0; q < 4; q++) /* the loop's results: the phis as they exit */
        s[q] = phi[q];
    } else {
      for (int q = 0; q < 4; q++)
        s[q] = zero;
    }
    /* whole vectors past the unrolled part, into s[0] */
    for (int64_t k = kv; k < kw; k += v.W) {
      LLVMValueRef args[3] = {vload(&v, gep(&v, arow, ci(&v, k))), vload(&v, gep(&v, wrow, ci(&v, k))), s[0]};
      s[0] = LLVMBuildCall2(v.b, v.fmaty, v.fma, args, 3, "");
    }
    LLVMValueRef tot = LLVMBuildFAdd(v.b, LLVMBuildFAdd(v.b, s[0], s[1], ""), LLVMBuildFAdd(v.b, s[2], s[3], ""), "");
    LLVMValueRef r = LLVMBuildExtractElement(v.b, tot, ci(&v, 0), "");
    for (int e = 1; e < v.W; e++)
      r = LLVMBuildFAdd(v.b, r, LLVMBuildExtractElement(v.b, tot, ci(&v, e), ""), "");
    for (int64_t k = kw; k < K; k++) {
      LLVMValueRef args[3] = {LLVMBuildLoad2(v.b, v.f32, gep(&v, arow, ci(&v, k)), ""),
                              LLVMBuildLoad2(v.b, v.f32, gep(&v, wrow, ci(&v, k)), ""), r};
      r = LLVMBuildCall2(v.b, v.sfmaty, v.sfma, args, 3, "");
    }
    LLVMValueRef cp = gep(&v, Cp, LLVMBuildNSWAdd(v.b, ci(&v, m * c.ld), n, ""));
    if (acc)
      r = LLVMBuildFAdd(v.b, LLVMBuildLoad2(v.b, v.f32, cp, ""), r, "");
    LLVMBuildStore(v.b, r, cp);
  }
  loop_end(&v, &ln);
  LLVMBuildRetVoid(v.b);
  LLVMDisposeBuilder(v.b);
  return RNNC_OK;
}
