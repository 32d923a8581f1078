/* irbuild.c — the small LLVM IR building helpers every code generator uses
 * (cellgen.c, phasegen.c, mkernels.c, gemm.c, gemv.c, optgen.c): counted
 * loops that are never unrolled, attributes, constants, NSW arithmetic on
 * i64 indices, float GEPs, entry-block slots, splats, SLEEF declarations and
 * the host's vector width.
 * require: an IRB set up by irb_init. produce: instructions at the builder's
 * position, in ir->fn; nothing else is kept between calls. Each helper emits
 * exactly what the generators wrote by hand before, instruction for
 * instruction and name for name, so a generator's output does not depend on
 * whether it goes through here. */
#include <stdatomic.h>
#include <string.h>

#include <llvm-c/Core.h>
#include <llvm-c/DebugInfo.h> /* LLVMTemporaryMDNode */
#include <llvm-c/TargetMachine.h> /* LLVMGetHostCPUFeatures */

#include "ir.h"

void irb_init(IRB *ir, LLVMContextRef cx, LLVMModuleRef mod)
{
  *ir = (IRB){.cx = cx, .mod = mod};
  ir->b = LLVMCreateBuilderInContext(cx);
  ir->f32 = LLVMFloatTypeInContext(cx);
  ir->f64 = LLVMDoubleTypeInContext(cx);
  ir->i1 = LLVMInt1TypeInContext(cx);
  ir->i32 = LLVMInt32TypeInContext(cx);
  ir->i64 = LLVMInt64TypeInContext(cx);
  ir->ptr = LLVMPointerTypeInContext(cx, 0);
  ir->voidty = LLVMVoidTypeInContext(cx);
}

void irb_free(IRB *ir)
{
  LLVMDisposeBuilder(ir->b);
  ir->b = NULL;
}

/* -1: the host's; else what irb_target_isa set (rnnc compile --cpu). */
static _Thread_local int target_isa = -1;

int irb_target_isa(int v)
{
  int old = target_isa;
  target_isa = v;
  return old;
}

/* Whether the comma-separated feature list f enables feature name ("+avx2"). */
static int has_feature(const char *f, const char *name)
{
  size_t len = strlen(name);
  for (const char *p = f; p && *p;) {
    size_t n = strcspn(p, ",");
    if (n == len && !strncmp(p, name, n))
      return 1;
    p += n + (p[n] == ',');
  }
  return 0;
}

static int host_isa(void)
{
  static _Atomic int isa = -1; /* computed once; two threads computing it agree */
  int v = atomic_load_explicit(&isa, memory_order_relaxed);
  if (v >= 0)
    return v;
  char *f = LLVMGetHostCPUFeatures();
  v = !has_feature(f, "+avx2") || !has_feature(f, "+fma") ? ISA_SSE2
      : has_feature(f, "+avx512f")                         ? ISA_AVX512
                                                           : ISA_AVX2;
  LLVMDisposeMessage(f);
  atomic_store_explicit(&isa, v, memory_order_relaxed);
  return v;
}

int irb_isa(void) { return target_isa >= 0 ? target_isa : host_isa(); }

int irb_avx2_fma(void) { return irb_isa() >= ISA_AVX2; }

/* ---- functions ----------------------------------------------------------- */

void irb_attr(IRB *ir, LLVMValueRef fn, unsigned idx, const char *name)
{
  unsigned kind = LLVMGetEnumAttributeKindForName(name, strlen(name));
  LLVMAddAttributeAtIndex(fn, idx, LLVMCreateEnumAttribute(ir->cx, kind, 0));
}

LLVMValueRef irb_fn(IRB *ir, const char *name, LLVMTypeRef *pt, unsigned n, const char *names)
{
  if (LLVMGetNamedFunction(ir->mod, name))
    die("irbuild: function '%s' already in the module", name);
  ir->fn = LLVMAddFunction(ir->mod, name, LLVMFunctionType(ir->voidty, pt, n, 0));
  irb_attr(ir, ir->fn, LLVMAttributeFunctionIndex, "nounwind");
  for (unsigned i = 0; i < n; i++) {
    if (pt[i] == ir->ptr)
      irb_attr(ir, ir->fn, i + 1, "noalias");
    size_t len = strcspn(names, " ");
    LLVMSetValueName2(LLVMGetParam(ir->fn, i), names, len);
    names += len + (names[len] == ' ');
  }
  ir->entry = LLVMAppendBasicBlockInContext(ir->cx, ir->fn, "entry");
  LLVMPositionBuilderAtEnd(ir->b, ir->entry);
  return ir->fn;
}

LLVMValueRef irb_kernfn(IRB *ir, const char *sym)
{
  LLVMTypeRef pt[5] = {ir->ptr, ir->i64, ir->i64, ir->i64, ir->ptr};
  ir->fn = LLVMAddFunction(ir->mod, sym, LLVMFunctionType(ir->voidty, pt, 5, 0));
  irb_attr(ir, ir->fn, LLVMAttributeFunctionIndex, "nounwind");
  irb_attr(ir, ir->fn, 5, "noalias");
  static const char *const names[5] = {"buf", "t", "lo", "hi", "scratch"};
  for (unsigned i = 0; i < 5; i++)
    LLVMSetValueName2(LLVMGetParam(ir->fn, i), names[i], strlen(names[i]));
  ir->entry = LLVMAppendBasicBlockInContext(ir->cx, ir->fn, "entry");
  LLVMPositionBuilderAtEnd(ir->b, ir->entry);
  return ir->fn;
}

LLVMValueRef irb_call1(IRB *ir, const char *name, LLVMTypeRef ty, LLVMValueRef x)
{
  LLVMTypeRef ft = LLVMFunctionType(ty, &ty, 1, 0);
  LLVMValueRef f = LLVMGetNamedFunction(ir->mod, name);
  if (!f) {
    f = LLVMAddFunction(ir->mod, name, ft);
    irb_attr(ir, f, LLVMAttributeFunctionIndex, "nounwind");
    irb_attr(ir, f, LLVMAttributeFunctionIndex, "willreturn");
    irb_attr(ir, f, LLVMAttributeFunctionIndex, "memory"); /* 0: memory(none) */
  }
  return LLVMBuildCall2(ir->b, ft, f, &x, 1, "");
}

/* ---- loops --------------------------------------------------------------- */

LLVMValueRef irb_loop_named(IRB *ir, IRLoop *l, LLVMValueRef lo, LLVMValueRef hi, int64_t step, const char *head,
                            const char *iv, const char *exit)
{
  LLVMBasicBlockRef pre = LLVMGetInsertBlock(ir->b);
  l->step = step;
  l->head = LLVMAppendBasicBlockInContext(ir->cx, ir->fn, head);
  LLVMBasicBlockRef body = LLVMAppendBasicBlockInContext(ir->cx, ir->fn, "body");
  l->exit = LLVMAppendBasicBlockInContext(ir->cx, ir->fn, exit);
  LLVMBuildBr(ir->b, l->head);
  LLVMPositionBuilderAtEnd(ir->b, l->head);
  l->iv = LLVMBuildPhi(ir->b, ir->i64, iv);
  LLVMAddIncoming(l->iv, &lo, &pre, 1);
  LLVMBuildCondBr(ir->b, LLVMBuildICmp(ir->b, LLVMIntSLT, l->iv, hi, ""), body, l->exit);
  LLVMPositionBuilderAtEnd(ir->b, body);
  return l->iv;
}

LLVMValueRef irb_loop_begin(IRB *ir, IRLoop *l, LLVMValueRef lo, LLVMValueRef hi, int64_t step, const char *name)
{
  return irb_loop_named(ir, l, lo, hi, step, name, name, "done");
}

void irb_nounroll(IRB *ir, LLVMValueRef br)
{
  LLVMMetadataRef self = LLVMTemporaryMDNode(ir->cx, NULL, 0);
  LLVMMetadataRef s = LLVMMDStringInContext2(ir->cx, "llvm.loop.unroll.disable", 24);
  LLVMMetadataRef ops[2] = {self, LLVMMDNodeInContext2(ir->cx, &s, 1)};
  LLVMMetadataRef md = LLVMMDNodeInContext2(ir->cx, ops, 2);
  LLVMMetadataReplaceAllUsesWith(self, md);
  LLVMSetMetadata(br, LLVMGetMDKindIDInContext(ir->cx, "llvm.loop", 9), LLVMMetadataAsValue(ir->cx, md));
}

void irb_loop_end(IRB *ir, IRLoop *l)
{
  LLVMValueRef next = irb_add(ir, l->iv, irb_i64(ir, l->step));
  LLVMBasicBlockRef latch = LLVMGetInsertBlock(ir->b);
  irb_nounroll(ir, LLVMBuildBr(ir->b, l->head));
  LLVMAddIncoming(l->iv, &next, &latch, 1);
  LLVMPositionBuilderAtEnd(ir->b, l->exit);
}

LLVMValueRef irb_alloca(IRB *ir, LLVMTypeRef ty, const char *name)
{
  LLVMBuilderRef eb = LLVMCreateBuilderInContext(ir->cx);
  LLVMValueRef first = LLVMGetFirstInstruction(ir->entry);
  if (first)
    LLVMPositionBuilderBefore(eb, first);
  else
    LLVMPositionBuilderAtEnd(eb, ir->entry);
  LLVMValueRef a = LLVMBuildAlloca(eb, ty, name);
  LLVMDisposeBuilder(eb);
  return a;
}

/* ---- values ---------------------------------------------------------------- */

LLVMValueRef irb_i64(IRB *ir, int64_t v) { return LLVMConstInt(ir->i64, (unsigned long long)v, 1); }
LLVMValueRef irb_f32(IRB *ir, double v) { return LLVMConstReal(ir->f32, v); }
LLVMValueRef irb_f64(IRB *ir, double v) { return LLVMConstReal(ir->f64, v); }
LLVMValueRef irb_add(IRB *ir, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildNSWAdd(ir->b, a, b, ""); }
LLVMValueRef irb_mulc(IRB *ir, LLVMValueRef a, int64_t c) { return LLVMBuildNSWMul(ir->b, a, irb_i64(ir, c), ""); }

LLVMValueRef irb_gep(IRB *ir, LLVMValueRef p, LLVMValueRef e)
{
  return LLVMBuildInBoundsGEP2(ir->b, ir->f32, p, &e, 1, "");
}

LLVMValueRef irb_loadu(IRB *ir, LLVMTypeRef ty, LLVMValueRef p)
{
  LLVMValueRef v = LLVMBuildLoad2(ir->b, ty, p, "");
  LLVMSetAlignment(v, 4);
  return v;
}

void irb_storeu(IRB *ir, LLVMValueRef v, LLVMValueRef p) { LLVMSetAlignment(LLVMBuildStore(ir->b, v, p), 4); }

LLVMValueRef irb_splat(IRB *ir, LLVMTypeRef vt, LLVMValueRef x)
{
  LLVMValueRef v = LLVMBuildInsertElement(ir->b, LLVMGetPoison(vt), x, LLVMConstInt(ir->i32, 0, 0), "");
  LLVMValueRef mask = LLVMConstNull(LLVMVectorType(ir->i32, LLVMGetVectorSize(vt)));
  return LLVMBuildShuffleVector(ir->b, v, LLVMGetPoison(vt), mask, "");
}

LLVMValueRef irb_hsum(IRB *ir, LLVMValueRef v)
{
  LLVMValueRef s = NULL;
  unsigned n = LLVMGetVectorSize(LLVMTypeOf(v));
  for (unsigned i = 0; i < n; i++) {
    LLVMValueRef x = LLVMBuildExtractElement(ir->b, v, LLVMConstInt(ir->i32, i, 0), "");
    s = s ? LLVMBuildFAdd(ir->b, s, x, "") : x;
  }
  return s;
}
