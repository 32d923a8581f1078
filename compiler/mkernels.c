/* mkernels.c — the model-level kernels: GEMM as a kernel, embedding gather
 * and its gradient, softmax + cross-entropy (forward and fused gradient), the
 * softmax Jacobian, column sums, axpy copies and fills, sum and its backward.
 * require: a module of cx. produce: in it, one kernel per call with the KernFn
 * ABI (ir.h, "the kernels' ABI and where values live")
 *   void sym(void *const *buf, int64_t t, int64_t lo, int64_t hi, float *scratch)
 * that works on its share [lo, hi) of its range only; every size is a
 * compile-time constant. Every element is computed the same way whatever the
 * range, so results do not depend on how a range is split over threads: sums
 * run in an order fixed by the sizes alone. Semantics follow the reference
 * interpreter (ir/interp_forward.c fwd_embedding, fwd_softmax, fwd_sum;
 * ir/interp_backward.c bwd_embedding, bwd_softmax, softmax_jvp_t).
 *
 * The softmax rows run on explicit vectors of W floats (8 with AVX2 and FMA
 * on the host unless mk_portable, else 4) with SLEEF's vector ≤ 1-ulp exp
 * (Sleef_expf8_u10avx2 / Sleef_expf4_u10sse2, as phasegen.c) and a scalar
 * tail; the sum of exponentials and the Jacobian's dot product accumulate in
 * double, lane by lane, the lanes then added in order. The other kernels are
 * plain loops that O3 vectorizes; column sums, sum and the loss accumulate in
 * double too and round once.
 * Nothing here is JIT-specific: buffers come from buf, no addresses are baked
 * in, and the module has no triple until a back end gives it one. */
#include <math.h>
#include <string.h>

#include <llvm-c/Core.h>
#include <llvm-c/DebugInfo.h> /* LLVMTemporaryMDNode */
#include <llvm-c/TargetMachine.h>

#include "ir.h"

enum {
  CB = 128, /* mk_colsum: columns summed at once (a double per column on the stack) */
  MAXW = 8, /* the widest vector */
};

typedef struct MK {
  LLVMContextRef cx;
  LLVMModuleRef mod;
  LLVMBuilderRef b;
  LLVMValueRef fn;
  LLVMBasicBlockRef entry;
  LLVMValueRef buf, t, lo, hi, scratch; /* the KernFn parameters */
  LLVMTypeRef f32, f64, i32, i64, i1, ptr, voidty;
  LLVMTypeRef vf, vd, vi; /* <W x float>, <W x double>, <W x i64> */
  int W;
} MK;

/* Whether the host CPU has AVX2 and FMA (LLVMGetHostCPUFeatures), as
 * SLEEF's AVX2 functions need. */
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

/* mk_portable's setting, per thread: kernels are generated on one thread. */
static _Thread_local int portable;

int mk_portable(int on)
{
  int was = portable;
  portable = on;
  return was;
}

static void addattr(MK *k, LLVMValueRef fn, unsigned idx, const char *name)
{
  unsigned kind = LLVMGetEnumAttributeKindForName(name, strlen(name));
  LLVMAddAttributeAtIndex(fn, idx, LLVMCreateEnumAttribute(k->cx, kind, 0));
}

static LLVMValueRef ci64(MK *k, int64_t v) { return LLVMConstInt(k->i64, (unsigned long long)v, 1); }
static LLVMValueRef cf32(MK *k, double v) { return LLVMConstReal(k->f32, v); }
static LLVMValueRef cf64(MK *k, double v) { return LLVMConstReal(k->f64, v); }
static LLVMValueRef add(MK *k, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildNSWAdd(k->b, a, b, ""); }
static LLVMValueRef mul(MK *k, LLVMValueRef a, int64_t c) { return LLVMBuildNSWMul(k->b, a, ci64(k, c), ""); }

/* Start the kernel sym (KernFn) in k->mod: the builder is left in its entry. */
static void kern_begin(MK *k, LLVMContextRef cx, LLVMModuleRef mod, const char *sym)
{
  k->cx = cx;
  k->mod = mod;
  k->b = LLVMCreateBuilderInContext(cx);
  k->f32 = LLVMFloatTypeInContext(cx);
  k->f64 = LLVMDoubleTypeInContext(cx);
  k->i32 = LLVMInt32TypeInContext(cx);
  k->i64 = LLVMInt64TypeInContext(cx);
  k->i1 = LLVMInt1TypeInContext(cx);
  k->ptr = LLVMPointerTypeInContext(cx, 0);
  k->voidty = LLVMVoidTypeInContext(cx);
  k->W = !portable && host_avx2_fma() ? 8 : 4;
  k->vf = LLVMVectorType(k->f32, (unsigned)k->W);
  k->vd = LLVMVectorType(k->f64, (unsigned)k->W);
  k->vi = LLVMVectorType(k->i64, (unsigned)k->W);
  LLVMTypeRef pt[5] = {k->ptr, k->i64, k->i64, k->i64, k->ptr};
  k->fn = LLVMAddFunction(mod, sym, LLVMFunctionType(k->voidty, pt, 5, 0));
  addattr(k, k->fn, LLVMAttributeFunctionIndex, "nounwind");
  addattr(k, k->fn, 5, "noalias");
  static const char *const names[5] = {"buf", "t", "lo", "hi", "scratch"};
  LLVMValueRef *slot[5] = {&k->buf, &k->t, &k->lo, &k->hi, &k->scratch};
  for (unsigned i = 0; i < 5; i++) {
    *slot[i] = LLVMGetParam(k->fn, i);
    LLVMSetValueName2(*slot[i], names[i], strlen(names[i]));
  }
  k->entry = LLVMAppendBasicBlockInContext(cx, k->fn, "entry");
  LLVMPositionBuilderAtEnd(k->b, k->entry);
}

static int kern_end(MK *k)
{
  LLVMBuildRetVoid(k->b);
  LLVMDisposeBuilder(k->b);
  return RNNC_OK;
}

/* RNNC_ESHAPE with a message unless every size is >= 1. */
static int checksizes(const char *sym, int n, const int64_t *v, const char *const *name, char *err, size_t errlen)
{
  for (int i = 0; i < n; i++)
    if (v[i] < 1) {
      snprintf(err, errlen, "kernel '%s': %s = %lld, must be at least 1", sym, name[i], (long long)v[i]);
      return RNNC_ESHAPE;
    }
  return RNNC_OK;
}

/* ---- loops --------------------------------------------------------------- */

/* for (iv = lo; iv < hi; iv += step) { body }: loop_begin returns iv and
 * leaves the builder in the body; loop_end closes it. */
typedef struct Loop {
  LLVMBasicBlockRef head, exit;
  LLVMValueRef iv;
  int64_t step;
} Loop;

static LLVMValueRef loop_begin(MK *k, Loop *l, LLVMValueRef lo, LLVMValueRef hi, int64_t step, const char *name)
{
  LLVMBasicBlockRef pre = LLVMGetInsertBlock(k->b);
  l->step = step;
  l->head = LLVMAppendBasicBlockInContext(k->cx, k->fn, name);
  LLVMBasicBlockRef body = LLVMAppendBasicBlockInContext(k->cx, k->fn, "body");
  l->exit = LLVMAppendBasicBlockInContext(k->cx, k->fn, "done");
  LLVMBuildBr(k->b, l->head);
  LLVMPositionBuilderAtEnd(k->b, l->head);
  l->iv = LLVMBuildPhi(k->b, k->i64, name);
  LLVMAddIncoming(l->iv, &lo, &pre, 1);
  LLVMBuildCondBr(k->b, LLVMBuildICmp(k->b, LLVMIntSLT, l->iv, hi, ""), body, l->exit);
  LLVMPositionBuilderAtEnd(k->b, body);
  return l->iv;
}

/* The latch carries !llvm.loop !{self, !{"llvm.loop.unroll.disable"}}:
 * trip counts are constants, and fully unrolled loops cost compile time. */
static void loop_end(MK *k, Loop *l)
{
  LLVMValueRef next = add(k, l->iv, ci64(k, l->step));
  LLVMBasicBlockRef latch = LLVMGetInsertBlock(k->b);
  LLVMValueRef br = LLVMBuildBr(k->b, l->head);
  LLVMAddIncoming(l->iv, &next, &latch, 1);
  LLVMMetadataRef self = LLVMTemporaryMDNode(k->cx, NULL, 0);
  LLVMMetadataRef s = LLVMMDStringInContext2(k->cx, "llvm.loop.unroll.disable", 24);
  LLVMMetadataRef ops[2] = {self, LLVMMDNodeInContext2(k->cx, &s, 1)};
  LLVMMetadataRef md = LLVMMDNodeInContext2(k->cx, ops, 2);
  LLVMMetadataReplaceAllUsesWith(self, md);
  LLVMSetMetadata(br, LLVMGetMDKindIDInContext(k->cx, "llvm.loop", 9), LLVMMetadataAsValue(k->cx, md));
  LLVMPositionBuilderAtEnd(k->b, l->exit);
}

/* A slot of type ty in the entry block, where mem2reg/SROA promote it. */
static LLVMValueRef entry_alloca(MK *k, LLVMTypeRef ty, const char *name)
{
  LLVMBuilderRef eb = LLVMCreateBuilderInContext(k->cx);
  LLVMValueRef first = LLVMGetFirstInstruction(k->entry);
  if (first)
    LLVMPositionBuilderBefore(eb, first);
  else
    LLVMPositionBuilderAtEnd(eb, k->entry);
  LLVMValueRef a = LLVMBuildAlloca(eb, ty, name);
  LLVMDisposeBuilder(eb);
  return a;
}

/* ---- addressing ------------------------------------------------------------ */

/* Row 0 of a at step t: (float *)buf[slot] + off + t·tstride (the same byte
 * offsets for int32); NULL when a.slot < 0. */
static LLVMValueRef base(MK *k, Addr a, const char *name)
{
  if (a.slot < 0)
    return NULL;
  LLVMValueRef idx = ci64(k, a.slot);
  LLVMValueRef p = LLVMBuildLoad2(k->b, k->ptr, LLVMBuildInBoundsGEP2(k->b, k->ptr, k->buf, &idx, 1, ""), name);
  LLVMValueRef off = ci64(k, a.off);
  if (a.tstride)
    off = add(k, off, mul(k, k->t, a.tstride));
  return LLVMBuildGEP2(k->b, k->f32, p, &off, 1, name);
}

/* Row r of a value at base (r NULL or ld 0: row 0). */
static LLVMValueRef row(MK *k, LLVMValueRef base, int64_t ld, LLVMValueRef r)
{
  if (!r || !ld)
    return base;
  LLVMValueRef off = mul(k, r, ld);
  return LLVMBuildGEP2(k->b, k->f32, base, &off, 1, "");
}

/* &p[e] for a float (or int32) p; e an i64 value. */
static LLVMValueRef at(MK *k, LLVMValueRef p, LLVMValueRef e)
{
  return LLVMBuildGEP2(k->b, k->f32, p, &e, 1, "");
}

static LLVMValueRef ld32(MK *k, LLVMValueRef p, LLVMValueRef e) { return LLVMBuildLoad2(k->b, k->f32, at(k, p, e), ""); }
static void st32(MK *k, LLVMValueRef v, LLVMValueRef p, LLVMValueRef e) { LLVMBuildStore(k->b, v, at(k, p, e)); }
/* int32 element e of p, sign-extended to i64 (token ids and targets). */
static LLVMValueRef ldid(MK *k, LLVMValueRef p, LLVMValueRef e)
{
  LLVMValueRef q = LLVMBuildGEP2(k->b, k->i32, p, &e, 1, "");
  return LLVMBuildSExt(k->b, LLVMBuildLoad2(k->b, k->i32, q, ""), k->i64, "id");
}

/* W floats at p[e] (a float's alignment). */
static LLVMValueRef vload(MK *k, LLVMValueRef p, LLVMValueRef e)
{
  LLVMValueRef v = LLVMBuildLoad2(k->b, k->vf, at(k, p, e), "");
  LLVMSetAlignment(v, 4);
  return v;
}

static void vstore(MK *k, LLVMValueRef v, LLVMValueRef p, LLVMValueRef e)
{
  LLVMSetAlignment(LLVMBuildStore(k->b, v, at(k, p, e)), 4);
}

/* x in every lane of a vector of type vt. */
static LLVMValueRef splat(MK *k, LLVMTypeRef vt, LLVMValueRef x)
{
  LLVMValueRef v = LLVMBuildInsertElement(k->b, LLVMGetPoison(vt), x, LLVMConstInt(k->i32, 0, 0), "");
  LLVMValueRef mask = LLVMConstNull(LLVMVectorType(k->i32, (unsigned)k->W));
  return LLVMBuildShuffleVector(k->b, v, LLVMGetPoison(vt), mask, "");
}

/* Lane 0 + lane 1 + ... + lane W-1 of a double vector, in that order. */
static LLVMValueRef hsum(MK *k, LLVMValueRef v)
{
  LLVMValueRef s = NULL;
  for (int i = 0; i < k->W; i++) {
    LLVMValueRef x = LLVMBuildExtractElement(k->b, v, LLVMConstInt(k->i32, (unsigned)i, 0), "");
    s = s ? LLVMBuildFAdd(k->b, s, x, "") : x;
  }
  return s;
}

/* The largest lane of a float vector, as select(x > m, x, m) in lane order. */
static LLVMValueRef hmax(MK *k, LLVMValueRef v, LLVMValueRef m)
{
  for (int i = 0; i < k->W; i++) {
    LLVMValueRef x = LLVMBuildExtractElement(k->b, v, LLVMConstInt(k->i32, (unsigned)i, 0), "");
    m = LLVMBuildSelect(k->b, LLVMBuildFCmp(k->b, LLVMRealOGT, x, m, ""), x, m, "");
  }
  return m;
}

/* ty name(ty), declared once per module (readnone: SLEEF is pure). */
static LLVMValueRef call1(MK *k, const char *name, LLVMTypeRef ty, LLVMValueRef x)
{
  LLVMTypeRef ft = LLVMFunctionType(ty, &ty, 1, 0);
  LLVMValueRef f = LLVMGetNamedFunction(k->mod, name);
  if (!f) {
    f = LLVMAddFunction(k->mod, name, ft);
    addattr(k, f, LLVMAttributeFunctionIndex, "nounwind");
    addattr(k, f, LLVMAttributeFunctionIndex, "willreturn");
    addattr(k, f, LLVMAttributeFunctionIndex, "memory"); /* 0: memory(none) */
  }
  return LLVMBuildCall2(k->b, ft, f, &x, 1, "");
}

static LLVMValueRef vexp(MK *k, LLVMValueRef v)
{
  return call1(k, k->W == 8 ? "Sleef_expf8_u10avx2" : "Sleef_expf4_u10sse2", k->vf, v);
}

/* Return early unless lo == 0: a kernel whose range is [0, 1) (one thread). */
static void only_first(MK *k)
{
  LLVMBasicBlockRef body = LLVMAppendBasicBlockInContext(k->cx, k->fn, "first");
  LLVMBasicBlockRef skip = LLVMAppendBasicBlockInContext(k->cx, k->fn, "skip");
  LLVMBuildCondBr(k->b, LLVMBuildICmp(k->b, LLVMIntEQ, k->lo, ci64(k, 0), ""), body, skip);
  LLVMPositionBuilderAtEnd(k->b, skip);
  LLVMBuildRetVoid(k->b);
  LLVMPositionBuilderAtEnd(k->b, body);
}

/* ---- GEMM ------------------------------------------------------------------ */

/* range: panels (MK_PACK, MK_COLSP, MK_COLS) or rows (MK_ROWS) of the GEMM
 * generated as sym.g; the matrices' origins at step t. */
int mk_gemm(LLVMContextRef cx, LLVMModuleRef mod, const char *sym, const GemmSpec *s, int mode, Addr a, Addr b,
            Addr c, Addr pack, size_t *scratch, char *err, size_t errlen)
{
  static const char *const suffix[] = {"_pack", "_rows", "_colsp", "_cols"};
  if (mode < MK_PACK || mode > MK_COLS)
    die("mk_gemm '%s': mode %d", sym, mode);
  char gsym[256], fname[300];
  snprintf(gsym, sizeof gsym, "%s.g", sym);
  int rc = gemm_gen2(cx, mod, gsym, s, err, errlen);
  if (rc != RNNC_OK)
    return rc;
  *scratch = gemm_scratchsize(s);
  snprintf(fname, sizeof fname, "%s%s", gsym, suffix[mode]);
  LLVMValueRef g = LLVMGetNamedFunction(mod, fname);
  if (!g)
    die("mk_gemm '%s': gemm_gen2 made no %s", sym, fname);
  MK k = {0};
  kern_begin(&k, cx, mod, sym);
  LLVMValueRef null = LLVMConstNull(k.ptr);
  LLVMValueRef A = base(&k, a, "A"), B = base(&k, b, "B"), C = base(&k, c, "C"), P = base(&k, pack, "pack");
  A = A ? A : null;
  B = B ? B : null;
  C = C ? C : null;
  P = P ? P : null;
  LLVMValueRef args[6];
  unsigned n = 0;
  switch (mode) {
  case MK_PACK: /* (B, pack, p0, p1) */
    args[n++] = B, args[n++] = P, args[n++] = k.lo, args[n++] = k.hi;
    break;
  case MK_ROWS: /* (A, pack, C, m0, m1, scratch) */
  case MK_COLSP:
    args[n++] = A, args[n++] = P, args[n++] = C, args[n++] = k.lo, args[n++] = k.hi, args[n++] = k.scratch;
    break;
  case MK_COLS: /* (A, B, C, p0, p1, scratch) */
    args[n++] = A, args[n++] = B, args[n++] = C, args[n++] = k.lo, args[n++] = k.hi, args[n++] = k.scratch;
    break;
  }
  LLVMTypeRef ft = LLVMGlobalGetValueType(g);
  if (LLVMCountParamTypes(ft) != n)
    die("mk_gemm '%s': %s takes %u arguments, not %u", sym, fname, LLVMCountParamTypes(ft), n);
  LLVMBuildCall2(k.b, ft, g, args, n, "");
  /* sym.g's functions are this kernel's own: internal, the three it does
   * not call are dropped by the optimizer (a quarter of the compile time) */
  for (int i = 0; i < 4; i++) {
    snprintf(fname, sizeof fname, "%s%s", gsym, suffix[i]);
    LLVMValueRef f = LLVMGetNamedFunction(mod, fname);
    if (f)
      LLVMSetLinkage(f, LLVMInternalLinkage);
  }
  return kern_end(&k);
}

/* ---- embedding ------------------------------------------------------------- */

/* range positions: out[p, :] = weight[ids[p], :] (ids checked before the run) */
int mk_embed(LLVMContextRef cx, LLVMModuleRef mod, const char *sym, int64_t npos, int64_t V, int64_t E, Addr ids,
             Addr weight, Addr out, char *err, size_t errlen)
{
  int64_t sz[3] = {npos, V, E};
  int rc = checksizes(sym, 3, sz, (const char *const[]){"npos", "V", "E"}, err, errlen);
  if (rc != RNNC_OK)
    return rc;
  MK k = {0};
  kern_begin(&k, cx, mod, sym);
  LLVMValueRef I = base(&k, ids, "ids"), Wt = base(&k, weight, "weight"), O = base(&k, out, "out");
  if (!I || !Wt || !O)
    die("mk_embed '%s': ids, weight and out need slots", sym);
  Loop lp;
  LLVMValueRef p = loop_begin(&k, &lp, k.lo, k.hi, 1, "pos");
  LLVMValueRef id = ldid(&k, I, mul(&k, p, ids.ld));
  LLVMValueRef src = row(&k, Wt, weight.ld, id), dst = row(&k, O, out.ld, p);
  LLVMBuildMemCpy(k.b, dst, 4, src, 4, ci64(&k, E * 4));
  loop_end(&k, &lp);
  return kern_end(&k);
}

/* range columns [lo, hi) of E: dweight[ids[p], e] += dout[p, e], p in order */
int mk_embed_grad(LLVMContextRef cx, LLVMModuleRef mod, const char *sym, int64_t npos, int64_t V, int64_t E,
                  Addr ids, Addr dout, Addr dweight, char *err, size_t errlen)
{
  int64_t sz[3] = {npos, V, E};
  int rc = checksizes(sym, 3, sz, (const char *const[]){"npos", "V", "E"}, err, errlen);
  if (rc != RNNC_OK)
    return rc;
  MK k = {0};
  kern_begin(&k, cx, mod, sym);
  LLVMValueRef I = base(&k, ids, "ids"), D = base(&k, dout, "dout"), G = base(&k, dweight, "dweight");
  if (!I || !D || !G)
    die("mk_embed_grad '%s': ids, dout and dweight need slots", sym);
  Loop lp, le;
  LLVMValueRef p = loop_begin(&k, &lp, ci64(&k, 0), ci64(&k, npos), 1, "pos");
  LLVMValueRef id = ldid(&k, I, mul(&k, p, ids.ld));
  LLVMValueRef g = row(&k, G, dweight.ld, id), d = row(&k, D, dout.ld, p);
  LLVMValueRef e = loop_begin(&k, &le, k.lo, k.hi, 1, "e");
  st32(&k, LLVMBuildFAdd(k.b, ld32(&k, g, e), ld32(&k, d, e), ""), g, e);
  loop_end(&k, &le);
  loop_end(&k, &lp);
  return kern_end(&k);
}

/* range positions [lo, hi): out[p, e] = (e == ids[p]) for e < V */
int mk_onehot(LLVMContextRef cx, LLVMModuleRef mod, const char *sym, int64_t npos, int64_t V, Addr ids, Addr out,
              char *err, size_t errlen)
{
  int64_t sz[2] = {npos, V};
  int rc = checksizes(sym, 2, sz, (const char *const[]){"npos", "V"}, err, errlen);
  if (rc != RNNC_OK)
    return rc;
  MK k = {0};
  kern_begin(&k, cx, mod, sym);
  LLVMValueRef I = base(&k, ids, "ids"), O = base(&k, out, "out");
  if (!I || !O)
    die("mk_onehot '%s': ids and out need slots", sym);
  Loop lp;
  LLVMValueRef p = loop_begin(&k, &lp, k.lo, k.hi, 1, "pos");
  LLVMValueRef id = ldid(&k, I, mul(&k, p, ids.ld));
  LLVMValueRef dst = row(&k, O, out.ld, p);
  LLVMBuildMemSet(k.b, dst, LLVMConstInt(LLVMInt8TypeInContext(cx), 0, 0), ci64(&k, V * 4), 4);
  st32(&k, LLVMConstReal(LLVMFloatTypeInContext(cx), 1.0), dst, id);
  loop_end(&k, &lp);
  return kern_end(&k);
}

/* ---- softmax ------------------------------------------------------------------ */

/* One softmax row: see ir.h. Three passes over the K classes, W at a time
 * then a scalar tail:
 *   1. z += bias (stored), mx = max z
 *   2. e = exp(z - mx), sum += e in double; e kept in probs (or dz) if wanted
 *   3. pr = e · (1 / sum) to probs; dz = (pr - onehot(y)) · scale
 * lse = mx + log(sum), nll = log(sum) + (mx - z[y]) (z[y] read before pass 2
 * may overwrite z with dz). */
int mk_softmax(LLVMContextRef cx, LLVMModuleRef mod, const char *sym, int64_t npos, int64_t K, Addr z, Addr bias,
               Addr lse, Addr probs, Addr tgt, int hasignore, long ignore, Addr nll, Addr dz, Addr scale, char *err,
               size_t errlen)
{
  int64_t sz[2] = {npos, K};
  int rc = checksizes(sym, 2, sz, (const char *const[]){"npos", "K"}, err, errlen);
  if (rc != RNNC_OK)
    return rc;
  if (z.slot < 0)
    die("mk_softmax '%s': z needs a slot", sym);
  if ((dz.slot >= 0 || nll.slot >= 0) && tgt.slot < 0)
    die("mk_softmax '%s': nll or dz without targets", sym);
  if (dz.slot >= 0 && scale.slot < 0)
    die("mk_softmax '%s': dz without scale", sym);
  MK k = {0};
  kern_begin(&k, cx, mod, sym);
  LLVMBuilderRef b = k.b;
  int W = k.W;
  int64_t nv = K / W * W; /* classes done by vectors */
  LLVMValueRef Z = base(&k, z, "z"), Bi = base(&k, bias, "bias"), L = base(&k, lse, "lse");
  LLVMValueRef P = base(&k, probs, "probs"), Y = base(&k, tgt, "tgt"), N = base(&k, nll, "nll");
  LLVMValueRef D = base(&k, dz, "dz"), S = base(&k, scale, "scale");
  LLVMValueRef sc = S ? LLVMBuildLoad2(b, k.f32, S, "scale") : NULL;
  LLVMValueRef vmax = entry_alloca(&k, k.vf, "vmax"), vsum = entry_alloca(&k, k.vd, "vsum");
  LLVMValueRef lane[MAXW];
  for (int i = 0; i < W; i++)
    lane[i] = ci64(&k, i);
  LLVMValueRef iota = LLVMConstVector(lane, (unsigned)W);

  Loop lp, lk;
  LLVMValueRef p = loop_begin(&k, &lp, k.lo, k.hi, 1, "pos");
  LLVMValueRef zr = row(&k, Z, z.ld, p);
  LLVMValueRef pr = P ? row(&k, P, probs.ld, p) : NULL, dr = D ? row(&k, D, dz.ld, p) : NULL;
  LLVMValueRef er = pr ? pr : dr; /* where pass 2 keeps exp(z - mx) */

  /* pass 1: bias, max */
  LLVMValueRef mx = cf32(&k, -INFINITY);
  if (nv) {
    LLVMBuildStore(b, splat(&k, k.vf, mx), vmax);
    LLVMValueRef c = loop_begin(&k, &lk, ci64(&k, 0), ci64(&k, nv), W, "k");
    LLVMValueRef v = vload(&k, zr, c);
    if (Bi) {
      v = LLVMBuildFAdd(b, v, vload(&k, Bi, c), "");
      vstore(&k, v, zr, c);
    }
    LLVMValueRef m = LLVMBuildLoad2(b, k.vf, vmax, "");
    LLVMBuildStore(b, LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOGT, v, m, ""), v, m, ""), vmax);
    loop_end(&k, &lk);
    mx = hmax(&k, LLVMBuildLoad2(b, k.vf, vmax, ""), mx);
  }
  for (int64_t c = nv; c < K; c++) {
    LLVMValueRef v = ld32(&k, zr, ci64(&k, c));
    if (Bi) {
      v = LLVMBuildFAdd(b, v, ld32(&k, Bi, ci64(&k, c)), "");
      st32(&k, v, zr, ci64(&k, c));
    }
    mx = LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOGT, v, mx, ""), v, mx, "");
  }

  /* the target and its logit, before pass 2 may overwrite z */
  LLVMValueRef y = NULL, ign = LLVMConstInt(k.i1, 0, 0), zy = NULL;
  if (Y) {
    y = ldid(&k, Y, mul(&k, p, tgt.ld));
    if (hasignore)
      ign = LLVMBuildICmp(b, LLVMIntEQ, y, ci64(&k, (int64_t)ignore), "ignored");
    zy = ld32(&k, zr, LLVMBuildSelect(b, ign, ci64(&k, 0), y, ""));
  }

  /* pass 2: exp(z - mx) and its sum */
  LLVMValueRef sum = cf64(&k, 0);
  if (nv) {
    LLVMBuildStore(b, LLVMConstNull(k.vd), vsum);
    LLVMValueRef vmx = splat(&k, k.vf, mx);
    LLVMValueRef c = loop_begin(&k, &lk, ci64(&k, 0), ci64(&k, nv), W, "k");
    LLVMValueRef e = vexp(&k, LLVMBuildFSub(b, vload(&k, zr, c), vmx, ""));
    if (er)
      vstore(&k, e, er, c);
    LLVMValueRef s = LLVMBuildLoad2(b, k.vd, vsum, "");
    LLVMBuildStore(b, LLVMBuildFAdd(b, s, LLVMBuildFPExt(b, e, k.vd, ""), ""), vsum);
    loop_end(&k, &lk);
    sum = hsum(&k, LLVMBuildLoad2(b, k.vd, vsum, ""));
  }
  for (int64_t c = nv; c < K; c++) {
    LLVMValueRef e = call1(&k, "Sleef_expf_u10", k.f32, LLVMBuildFSub(b, ld32(&k, zr, ci64(&k, c)), mx, ""));
    if (er)
      st32(&k, e, er, ci64(&k, c));
    sum = LLVMBuildFAdd(b, sum, LLVMBuildFPExt(b, e, k.f64, ""), "");
  }
  LLVMValueRef logsum = call1(&k, "Sleef_logf_u10", k.f32, LLVMBuildFPTrunc(b, sum, k.f32, ""));
  if (L)
    st32(&k, LLVMBuildFAdd(b, mx, logsum, "lse"), row(&k, L, lse.ld, p), ci64(&k, 0));
  if (N) {
    LLVMValueRef v = LLVMBuildFAdd(b, logsum, LLVMBuildFSub(b, mx, zy, ""), "");
    st32(&k, LLVMBuildSelect(b, ign, cf32(&k, 0), v, "nll"), row(&k, N, nll.ld, p), ci64(&k, 0));
  }

  /* pass 3: probabilities and the loss gradient */
  if (er) {
    LLVMValueRef inv = LLVMBuildFPTrunc(b, LLVMBuildFDiv(b, cf64(&k, 1), sum, ""), k.f32, "inv");
    LLVMValueRef zero = LLVMConstNull(k.vf), one = splat(&k, k.vf, cf32(&k, 1));
    LLVMValueRef vinv = splat(&k, k.vf, inv), vsc = sc ? splat(&k, k.vf, sc) : NULL;
    LLVMValueRef vy = y ? splat(&k, k.vi, y) : NULL;
    if (nv) {
      LLVMValueRef c = loop_begin(&k, &lk, ci64(&k, 0), ci64(&k, nv), W, "k");
      LLVMValueRef q = LLVMBuildFMul(b, vload(&k, er, c), vinv, "");
      if (pr)
        vstore(&k, q, pr, c);
      if (dr) {
        LLVMValueRef kv = LLVMBuildAdd(b, splat(&k, k.vi, c), iota, "");
        LLVMValueRef oh = LLVMBuildSelect(b, LLVMBuildICmp(b, LLVMIntEQ, kv, vy, ""), one, zero, "");
        LLVMValueRef d = LLVMBuildFMul(b, LLVMBuildFSub(b, q, oh, ""), vsc, "");
        vstore(&k, LLVMBuildSelect(b, ign, zero, d, ""), dr, c);
      }
      loop_end(&k, &lk);
    }
    for (int64_t c = nv; c < K; c++) {
      LLVMValueRef q = LLVMBuildFMul(b, ld32(&k, er, ci64(&k, c)), inv, "");
      if (pr)
        st32(&k, q, pr, ci64(&k, c));
      if (dr) {
        LLVMValueRef oh = LLVMBuildSelect(b, LLVMBuildICmp(b, LLVMIntEQ, y, ci64(&k, c), ""), cf32(&k, 1),
                                          cf32(&k, 0), "");
        LLVMValueRef d = LLVMBuildFMul(b, LLVMBuildFSub(b, q, oh, ""), sc, "");
        st32(&k, LLVMBuildSelect(b, ign, cf32(&k, 0), d, ""), dr, ci64(&k, c));
      }
    }
  }
  loop_end(&k, &lp);
  return kern_end(&k);
}

/* One thread: count the positions whose target is not ignored; loss =
 * Σ_p nll[p] / count (in p order, in double), scale = dloss / count. */
int mk_xent_loss(LLVMContextRef cx, LLVMModuleRef mod, const char *sym, int64_t npos, Addr tgt, int hasignore,
                 long ignore, Addr nll, Addr loss, Addr dloss, Addr scale, char *err, size_t errlen)
{
  int rc = checksizes(sym, 1, &npos, (const char *const[]){"npos"}, err, errlen);
  if (rc != RNNC_OK)
    return rc;
  if (tgt.slot < 0 || (nll.slot >= 0) != (loss.slot >= 0))
    die("mk_xent_loss '%s': needs targets, and nll with loss", sym);
  MK k = {0};
  kern_begin(&k, cx, mod, sym);
  LLVMBuilderRef b = k.b;
  only_first(&k);
  LLVMValueRef Y = base(&k, tgt, "tgt"), N = base(&k, nll, "nll"), Lo = base(&k, loss, "loss");
  LLVMValueRef DL = base(&k, dloss, "dloss"), S = base(&k, scale, "scale");
  LLVMValueRef cnt = entry_alloca(&k, k.i64, "count"), tot = entry_alloca(&k, k.f64, "total");
  LLVMBuildStore(b, ci64(&k, 0), cnt);
  LLVMBuildStore(b, cf64(&k, 0), tot);
  Loop lp;
  LLVMValueRef p = loop_begin(&k, &lp, ci64(&k, 0), ci64(&k, npos), 1, "pos");
  LLVMValueRef counted = LLVMConstInt(k.i1, 1, 0);
  if (hasignore)
    counted = LLVMBuildICmp(b, LLVMIntNE, ldid(&k, Y, mul(&k, p, tgt.ld)), ci64(&k, (int64_t)ignore), "");
  LLVMValueRef c = LLVMBuildLoad2(b, k.i64, cnt, "");
  LLVMBuildStore(b, add(&k, c, LLVMBuildZExt(b, counted, k.i64, "")), cnt);
  if (N) {
    LLVMValueRef v = LLVMBuildFPExt(b, ld32(&k, row(&k, N, nll.ld, p), ci64(&k, 0)), k.f64, "");
    LLVMBuildStore(b, LLVMBuildFAdd(b, LLVMBuildLoad2(b, k.f64, tot, ""), v, ""), tot);
  }
  loop_end(&k, &lp);
  c = LLVMBuildLoad2(b, k.i64, cnt, "count");
  LLVMValueRef none = LLVMBuildICmp(b, LLVMIntEQ, c, ci64(&k, 0), "");
  LLVMValueRef dc = LLVMBuildSIToFP(b, c, k.f64, "");
  if (Lo) {
    LLVMValueRef l = LLVMBuildFPTrunc(b, LLVMBuildFDiv(b, LLVMBuildLoad2(b, k.f64, tot, ""), dc, ""), k.f32, "");
    st32(&k, LLVMBuildSelect(b, none, cf32(&k, 0), l, "loss"), Lo, ci64(&k, 0));
  }
  if (S) {
    LLVMValueRef g = DL ? LLVMBuildFPExt(b, ld32(&k, DL, ci64(&k, 0)), k.f64, "") : cf64(&k, 1);
    LLVMValueRef s = LLVMBuildFPTrunc(b, LLVMBuildFDiv(b, g, dc, ""), k.f32, "");
    st32(&k, LLVMBuildSelect(b, none, cf32(&k, 0), s, "scale"), S, ci64(&k, 0));
  }
  return kern_end(&k);
}

/* range positions: dz[p, k] += p[p, k] (dp[p, k] - Σ_j p[p, j] dp[p, j]);
 * the dot product in double, W lanes then the lanes and the tail in order. */
int mk_softmax_jvp(LLVMContextRef cx, LLVMModuleRef mod, const char *sym, int64_t npos, int64_t K, Addr probs,
                   Addr dp, Addr dz, char *err, size_t errlen)
{
  int64_t sz[2] = {npos, K};
  int rc = checksizes(sym, 2, sz, (const char *const[]){"npos", "K"}, err, errlen);
  if (rc != RNNC_OK)
    return rc;
  if (probs.slot < 0 || dp.slot < 0 || dz.slot < 0)
    die("mk_softmax_jvp '%s': probs, dp and dz need slots", sym);
  MK k = {0};
  kern_begin(&k, cx, mod, sym);
  LLVMBuilderRef b = k.b;
  int W = k.W;
  int64_t nv = K / W * W;
  LLVMValueRef P = base(&k, probs, "probs"), G = base(&k, dp, "dp"), D = base(&k, dz, "dz");
  LLVMValueRef vdot = entry_alloca(&k, k.vd, "vdot");
  Loop lp, lk;
  LLVMValueRef p = loop_begin(&k, &lp, k.lo, k.hi, 1, "pos");
  LLVMValueRef pr = row(&k, P, probs.ld, p), gr = row(&k, G, dp.ld, p), dr = row(&k, D, dz.ld, p);
  LLVMValueRef dot = cf64(&k, 0);
  if (nv) {
    LLVMBuildStore(b, LLVMConstNull(k.vd), vdot);
    LLVMValueRef c = loop_begin(&k, &lk, ci64(&k, 0), ci64(&k, nv), W, "k");
    LLVMValueRef x = LLVMBuildFMul(b, LLVMBuildFPExt(b, vload(&k, pr, c), k.vd, ""),
                                   LLVMBuildFPExt(b, vload(&k, gr, c), k.vd, ""), "");
    LLVMBuildStore(b, LLVMBuildFAdd(b, LLVMBuildLoad2(b, k.vd, vdot, ""), x, ""), vdot);
    loop_end(&k, &lk);
    dot = hsum(&k, LLVMBuildLoad2(b, k.vd, vdot, ""));
  }
  for (int64_t c = nv; c < K; c++) {
    LLVMValueRef x = LLVMBuildFMul(b, LLVMBuildFPExt(b, ld32(&k, pr, ci64(&k, c)), k.f64, ""),
                                   LLVMBuildFPExt(b, ld32(&k, gr, ci64(&k, c)), k.f64, ""), "");
    dot = LLVMBuildFAdd(b, dot, x, "");
  }
  LLVMValueRef s = LLVMBuildFPTrunc(b, dot, k.f32, "dot");
  if (nv) {
    LLVMValueRef vs = splat(&k, k.vf, s);
    LLVMValueRef c = loop_begin(&k, &lk, ci64(&k, 0), ci64(&k, nv), W, "k");
    LLVMValueRef x = LLVMBuildFMul(b, vload(&k, pr, c), LLVMBuildFSub(b, vload(&k, gr, c), vs, ""), "");
    vstore(&k, LLVMBuildFAdd(b, vload(&k, dr, c), x, ""), dr, c);
    loop_end(&k, &lk);
  }
  for (int64_t c = nv; c < K; c++) {
    LLVMValueRef e = ci64(&k, c);
    LLVMValueRef x = LLVMBuildFMul(b, ld32(&k, pr, e), LLVMBuildFSub(b, ld32(&k, gr, e), s, ""), "");
    st32(&k, LLVMBuildFAdd(b, ld32(&k, dr, e), x, ""), dr, e);
  }
  loop_end(&k, &lp);
  return kern_end(&k);
}

/* ---- sums, copies, fills ------------------------------------------------------ */

/* range columns [lo, hi) of n: out[e] (+)= Σ_r x[r, e], r in order, summed
 * in double CB columns at a time (x read row by row), rounded once. */
int mk_colsum(LLVMContextRef cx, LLVMModuleRef mod, const char *sym, int64_t nrows, int64_t n, Addr x, Addr out,
              int acc, char *err, size_t errlen)
{
  int64_t sz[2] = {nrows, n};
  int rc = checksizes(sym, 2, sz, (const char *const[]){"nrows", "n"}, err, errlen);
  if (rc != RNNC_OK)
    return rc;
  if (x.slot < 0 || out.slot < 0)
    die("mk_colsum '%s': x and out need slots", sym);
  MK k = {0};
  kern_begin(&k, cx, mod, sym);
  LLVMBuilderRef b = k.b;
  LLVMValueRef X = base(&k, x, "x"), O = base(&k, out, "out");
  LLVMTypeRef at = LLVMArrayType2(k.f64, CB);
  LLVMValueRef s = entry_alloca(&k, at, "colsum");
  Loop lb, lr, lj;
  LLVMValueRef e0 = loop_begin(&k, &lb, k.lo, k.hi, CB, "block");
  LLVMValueRef left = LLVMBuildNSWSub(b, k.hi, e0, "");
  LLVMValueRef nb = LLVMBuildSelect(b, LLVMBuildICmp(b, LLVMIntSLT, left, ci64(&k, CB), ""), left, ci64(&k, CB), "nb");
  LLVMValueRef j = loop_begin(&k, &lj, ci64(&k, 0), nb, 1, "j");
  LLVMBuildStore(b, cf64(&k, 0), LLVMBuildGEP2(b, k.f64, s, &j, 1, ""));
  loop_end(&k, &lj);
  LLVMValueRef r = loop_begin(&k, &lr, ci64(&k, 0), ci64(&k, nrows), 1, "row");
  LLVMValueRef xr = row(&k, X, x.ld, r);
  j = loop_begin(&k, &lj, ci64(&k, 0), nb, 1, "j");
  LLVMValueRef sp = LLVMBuildGEP2(b, k.f64, s, &j, 1, "");
  LLVMValueRef v = LLVMBuildFPExt(b, ld32(&k, xr, add(&k, e0, j)), k.f64, "");
  LLVMBuildStore(b, LLVMBuildFAdd(b, LLVMBuildLoad2(b, k.f64, sp, ""), v, ""), sp);
  loop_end(&k, &lj);
  loop_end(&k, &lr);
  j = loop_begin(&k, &lj, ci64(&k, 0), nb, 1, "j");
  LLVMValueRef e = add(&k, e0, j);
  LLVMValueRef sum = LLVMBuildLoad2(b, k.f64, LLVMBuildGEP2(b, k.f64, s, &j, 1, ""), "");
  if (acc)
    sum = LLVMBuildFAdd(b, LLVMBuildFPExt(b, ld32(&k, O, e), k.f64, ""), sum, "");
  st32(&k, LLVMBuildFPTrunc(b, sum, k.f32, ""), O, e);
  loop_end(&k, &lj);
  loop_end(&k, &lb);
  return kern_end(&k);
}

/* range rows: y[r, e] (+)= alpha·x[r, e] + x2[r, e]; no x: alpha (a fill). */
int mk_axpy(LLVMContextRef cx, LLVMModuleRef mod, const char *sym, int64_t nrows, int64_t n, float alpha, Addr x,
            Addr x2, Addr y, int acc, char *err, size_t errlen)
{
  int64_t sz[2] = {nrows, n};
  int rc = checksizes(sym, 2, sz, (const char *const[]){"nrows", "n"}, err, errlen);
  if (rc != RNNC_OK)
    return rc;
  if (y.slot < 0)
    die("mk_axpy '%s': y needs a slot", sym);
  MK k = {0};
  kern_begin(&k, cx, mod, sym);
  LLVMBuilderRef b = k.b;
  LLVMValueRef X = base(&k, x, "x"), X2 = base(&k, x2, "x2"), Yb = base(&k, y, "y");
  LLVMValueRef a = cf32(&k, alpha);
  Loop lr, le;
  LLVMValueRef r = loop_begin(&k, &lr, k.lo, k.hi, 1, "row");
  LLVMValueRef xr = X ? row(&k, X, x.ld, r) : NULL, x2r = X2 ? row(&k, X2, x2.ld, r) : NULL;
  LLVMValueRef yr = row(&k, Yb, y.ld, r);
  LLVMValueRef e = loop_begin(&k, &le, ci64(&k, 0), ci64(&k, n), 1, "e");
  LLVMValueRef v = a;
  if (xr)
    v = alpha == 1.0f ? ld32(&k, xr, e) : LLVMBuildFMul(b, a, ld32(&k, xr, e), "");
  if (x2r)
    v = LLVMBuildFAdd(b, v, ld32(&k, x2r, e), "");
  if (acc)
    v = LLVMBuildFAdd(b, ld32(&k, yr, e), v, "");
  st32(&k, v, yr, e);
  loop_end(&k, &le);
  loop_end(&k, &lr);
  return kern_end(&k);
}

/* One thread: y[0] = Σ x[r, e] in row-major order, in double. */
int mk_sum(LLVMContextRef cx, LLVMModuleRef mod, const char *sym, int64_t nrows, int64_t n, Addr x, Addr y,
           char *err, size_t errlen)
{
  int64_t sz[2] = {nrows, n};
  int rc = checksizes(sym, 2, sz, (const char *const[]){"nrows", "n"}, err, errlen);
  if (rc != RNNC_OK)
    return rc;
  if (x.slot < 0 || y.slot < 0)
    die("mk_sum '%s': x and y need slots", sym);
  MK k = {0};
  kern_begin(&k, cx, mod, sym);
  LLVMBuilderRef b = k.b;
  only_first(&k);
  LLVMValueRef X = base(&k, x, "x"), Yb = base(&k, y, "y");
  LLVMValueRef s = entry_alloca(&k, k.f64, "sum");
  LLVMBuildStore(b, cf64(&k, 0), s);
  Loop lr, le;
  LLVMValueRef r = loop_begin(&k, &lr, ci64(&k, 0), ci64(&k, nrows), 1, "row");
  LLVMValueRef xr = row(&k, X, x.ld, r);
  LLVMValueRef e = loop_begin(&k, &le, ci64(&k, 0), ci64(&k, n), 1, "e");
  LLVMValueRef v = LLVMBuildFPExt(b, ld32(&k, xr, e), k.f64, "");
  LLVMBuildStore(b, LLVMBuildFAdd(b, LLVMBuildLoad2(b, k.f64, s, ""), v, ""), s);
  loop_end(&k, &le);
  loop_end(&k, &lr);
  st32(&k, LLVMBuildFPTrunc(b, LLVMBuildLoad2(b, k.f64, s, ""), k.f32, ""), Yb, ci64(&k, 0));
  return kern_end(&k);
}

/* range rows: y[r, e] += g[0] */
int mk_bcast_acc(LLVMContextRef cx, LLVMModuleRef mod, const char *sym, int64_t nrows, int64_t n, Addr g, Addr y,
                 char *err, size_t errlen)
{
  int64_t sz[2] = {nrows, n};
  int rc = checksizes(sym, 2, sz, (const char *const[]){"nrows", "n"}, err, errlen);
  if (rc != RNNC_OK)
    return rc;
  if (g.slot < 0 || y.slot < 0)
    die("mk_bcast_acc '%s': g and y need slots", sym);
  MK k = {0};
  kern_begin(&k, cx, mod, sym);
  LLVMBuilderRef b = k.b;
  LLVMValueRef G = base(&k, g, "g"), Yb = base(&k, y, "y");
  LLVMValueRef gv = ld32(&k, G, ci64(&k, 0));
  Loop lr, le;
  LLVMValueRef r = loop_begin(&k, &lr, k.lo, k.hi, 1, "row");
  LLVMValueRef yr = row(&k, Yb, y.ld, r);
  LLVMValueRef e = loop_begin(&k, &le, ci64(&k, 0), ci64(&k, n), 1, "e");
  st32(&k, LLVMBuildFAdd(b, ld32(&k, yr, e), gv, ""), yr, e);
  loop_end(&k, &le);
  loop_end(&k, &lr);
  return kern_end(&k);
}
