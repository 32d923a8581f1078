/* optgen.c — LLVM IR for the optimizer step: the gradients' sum of squares
 * per chunk (for the global norm) and the SGD and Adam(W) updates with
 * clipping and weight decay folded in.
 * require: a module of cx. produce: in it, prefix_sumsq, prefix_sgd and
 * prefix_adam with the ABI of ir.h ("compiler/optgen.c"), each over a range
 * [lo, hi) of one parameter's elements, so runtime/optim.c can split a
 * parameter over threads at OPT_CHUNK boundaries.
 *
 * Every scalar (clip value, clip scale, learning rate, bias corrections) is
 * an argument, so the kernels are compiled once for any step and any
 * parameter. Nothing is JIT-specific: no addresses are baked in, the module
 * has no triple until a back end gives it one, and no choice depends on the
 * host (the sum of squares uses 8 double lanes everywhere; LLVM legalizes
 * them to the host's vectors), so an AOT object computes the same bits.
 *
 * Summation order of a chunk's sum of squares (fixed by the chunk alone, so
 * the same for any thread count): element e of the chunk's vector part goes
 * to lane e mod 8, each lane summed in element order in double; then lanes
 * 0 .. 7 in order; then the tail elements (fewer than 8) in order. Squares of
 * floats are exact in double, so only the additions round.
 * The updates are elementwise float32 loops (O3 vectorizes them; no fused
 * multiply-add, since the IR carries no contract flags), so any split of a
 * range gives the same bits. */
#include <string.h>

#include <llvm-c/Core.h>

#include "ir.h"

enum { L = 8 }; /* lanes of the sum of squares */

typedef struct OG {
  IRB ir;
  LLVMTypeRef vf, vd; /* <8 x float>, <8 x double> */
} OG;

/* The function prefix + suffix: void (pt...), nounwind, pointer parameters
 * noalias, parameters named after names (space-separated); the builder is
 * left in its entry block. */
static void fn_begin(OG *g, const char *prefix, const char *suffix, LLVMTypeRef *pt, unsigned n, const char *names)
{
  IRB *ir = &g->ir;
  char name[256];
  if ((size_t)snprintf(name, sizeof name, "%s%s", prefix, suffix) >= sizeof name)
    die("optgen: prefix '%s' too long", prefix);
  irb_fn(ir, name, pt, n, names);
}

/* ---- values ---------------------------------------------------------------- */

static LLVMValueRef ld(OG *g, LLVMValueRef p, LLVMValueRef e)
{
  IRB *ir = &g->ir;
  return LLVMBuildLoad2(ir->b, ir->f32, irb_gep(ir, p, e), "");
}
static void st(OG *g, LLVMValueRef v, LLVMValueRef p, LLVMValueRef e)
{
  IRB *ir = &g->ir;
  LLVMBuildStore(ir->b, v, irb_gep(ir, p, e));
}

static LLVMValueRef fadd(OG *g, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFAdd(g->ir.b, a, b, ""); }
static LLVMValueRef fmul(OG *g, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFMul(g->ir.b, a, b, ""); }

/* x clamped to [-v, v] as clamp_ does (x > v: v; then x < -v: -v; NaN
 * stays NaN); x and v scalars or vectors alike. */
static LLVMValueRef clamp(OG *g, LLVMValueRef x, LLVMValueRef v, LLVMValueRef negv)
{
  IRB *ir = &g->ir;
  x = LLVMBuildSelect(ir->b, LLVMBuildFCmp(ir->b, LLVMRealOGT, x, v, ""), v, x, "");
  return LLVMBuildSelect(ir->b, LLVMBuildFCmp(ir->b, LLVMRealOLT, x, negv, ""), negv, x, "clamped");
}

/* ---- the sum of squares ------------------------------------------------------ */

/* void prefix_sumsq(const float *g, i64 lo, i64 hi, float clipv, double *part):
 * per chunk [cs, ce) of the range, part[cs / OPT_CHUNK] = Σ clamp(g)^2 (the
 * order in the file's comment) + Σ g·0 (0, or NaN when a g is Inf or NaN:
 * clamping would hide an Inf). */
static void gen_sumsq(OG *g, const char *prefix)
{
  IRB *ir = &g->ir;
  LLVMTypeRef pt[5] = {ir->ptr, ir->i64, ir->i64, ir->f32, ir->ptr};
  fn_begin(g, prefix, "_sumsq", pt, 5, "g lo hi clipv part");
  LLVMBuilderRef b = ir->b;
  LLVMValueRef G = LLVMGetParam(ir->fn, 0), lo = LLVMGetParam(ir->fn, 1), hi = LLVMGetParam(ir->fn, 2);
  LLVMValueRef cv = LLVMGetParam(ir->fn, 3), P = LLVMGetParam(ir->fn, 4);
  LLVMValueRef ncv = LLVMBuildFNeg(b, cv, "negclipv");
  LLVMValueRef vcv = irb_splat(ir, g->vf, cv), vncv = irb_splat(ir, g->vf, ncv);
  LLVMValueRef acc = irb_alloca(ir, g->vd, "acc"), nfv = irb_alloca(ir, g->vf, "nfv");
  LLVMValueRef sum = irb_alloca(ir, ir->f64, "sum"), nf = irb_alloca(ir, ir->f32, "nf");
  LLVMValueRef vzero = LLVMConstNull(g->vf), zero = irb_f32(ir, 0);

  IRLoop lc, le;
  LLVMValueRef cs = irb_loop_begin(ir, &lc, lo, hi, OPT_CHUNK, "chunk");
  LLVMValueRef cend = LLVMBuildNSWAdd(b, cs, irb_i64(ir, OPT_CHUNK), "");
  LLVMValueRef ce = LLVMBuildSelect(b, LLVMBuildICmp(b, LLVMIntSLT, cend, hi, ""), cend, hi, "ce");
  LLVMValueRef n = LLVMBuildNSWSub(b, ce, cs, "");
  LLVMValueRef nv = LLVMBuildNSWAdd(b, cs, LLVMBuildAnd(b, n, irb_i64(ir, -L), ""), "nv");
  LLVMBuildStore(b, LLVMConstNull(g->vd), acc);
  LLVMBuildStore(b, vzero, nfv);
  /* the vector part: lane e mod 8 */
  LLVMValueRef e = irb_loop_begin(ir, &le, cs, nv, L, "e");
  LLVMValueRef x = LLVMBuildLoad2(b, g->vf, irb_gep(ir, G, e), "");
  LLVMSetAlignment(x, 4);
  LLVMValueRef c = LLVMBuildFPExt(b, clamp(g, x, vcv, vncv), g->vd, "");
  LLVMBuildStore(b, fadd(g, LLVMBuildLoad2(b, g->vd, acc, ""), fmul(g, c, c)), acc);
  LLVMBuildStore(b, fadd(g, LLVMBuildLoad2(b, g->vf, nfv, ""), fmul(g, x, vzero)), nfv);
  irb_loop_end(ir, &le);
  LLVMBuildStore(b, irb_hsum(ir, LLVMBuildLoad2(b, g->vd, acc, "")), sum);
  LLVMBuildStore(b, irb_hsum(ir, LLVMBuildLoad2(b, g->vf, nfv, "")), nf);
  /* the tail, in order */
  e = irb_loop_begin(ir, &le, nv, ce, 1, "tail");
  LLVMValueRef xs = ld(g, G, e);
  LLVMValueRef cd = LLVMBuildFPExt(b, clamp(g, xs, cv, ncv), ir->f64, "");
  LLVMBuildStore(b, fadd(g, LLVMBuildLoad2(b, ir->f64, sum, ""), fmul(g, cd, cd)), sum);
  LLVMBuildStore(b, fadd(g, LLVMBuildLoad2(b, ir->f32, nf, ""), fmul(g, xs, zero)), nf);
  irb_loop_end(ir, &le);
  LLVMValueRef s = fadd(g, LLVMBuildLoad2(b, ir->f64, sum, ""),
                        LLVMBuildFPExt(b, LLVMBuildLoad2(b, ir->f32, nf, ""), ir->f64, ""));
  LLVMValueRef ci = LLVMBuildSDiv(b, cs, irb_i64(ir, OPT_CHUNK), "c");
  LLVMBuildStore(b, s, LLVMBuildInBoundsGEP2(b, ir->f64, P, &ci, 1, ""));
  irb_loop_end(ir, &lc);
  LLVMBuildRetVoid(b);
}

/* ---- the updates ----------------------------------------------------------------- */

/* d = clamp(g[e]) * scale (+ wd * w[e] when wd is given) */
static LLVMValueRef grad(OG *g, LLVMValueRef G, LLVMValueRef e, LLVMValueRef cv, LLVMValueRef ncv,
                         LLVMValueRef scale, LLVMValueRef wd, LLVMValueRef w)
{
  LLVMValueRef d = fmul(g, clamp(g, ld(g, G, e), cv, ncv), scale);
  return wd ? fadd(g, d, fmul(g, wd, w)) : d;
}

/* void prefix_sgd(float *w, const float *g, float *buf, i64 lo, i64 hi,
 *                 float clipv, float scale, float neglr, float wd,
 *                 float momentum, i32 mode):
 * torch.optim.SGD (dampening 0, not Nesterov) over [lo, hi): d = grad() (+
 * wd·w, PyTorch's d_p.add(p, alpha=wd)); mode PLAIN: w += neglr·d; FIRST
 * (buf is None in PyTorch): buf = d, w += neglr·buf; MOMENTUM: buf = buf·
 * momentum + d, w += neglr·buf. One loop per mode, chosen before the loop. */
static void gen_sgd(OG *g, const char *prefix)
{
  IRB *ir = &g->ir;
  LLVMTypeRef pt[11] = {ir->ptr, ir->ptr, ir->ptr, ir->i64, ir->i64, ir->f32,
                        ir->f32, ir->f32, ir->f32, ir->f32, ir->i32};
  fn_begin(g, prefix, "_sgd", pt, 11, "w g buf lo hi clipv scale neglr wd momentum mode");
  LLVMBuilderRef b = ir->b;
  LLVMValueRef W = LLVMGetParam(ir->fn, 0), G = LLVMGetParam(ir->fn, 1), B = LLVMGetParam(ir->fn, 2);
  LLVMValueRef lo = LLVMGetParam(ir->fn, 3), hi = LLVMGetParam(ir->fn, 4), cv = LLVMGetParam(ir->fn, 5);
  LLVMValueRef scale = LLVMGetParam(ir->fn, 6), neglr = LLVMGetParam(ir->fn, 7), wd = LLVMGetParam(ir->fn, 8);
  LLVMValueRef mom = LLVMGetParam(ir->fn, 9), mode = LLVMGetParam(ir->fn, 10);
  LLVMValueRef ncv = LLVMBuildFNeg(b, cv, "negclipv");
  LLVMBasicBlockRef blk[3], done = LLVMAppendBasicBlockInContext(ir->cx, ir->fn, "ret");
  static const char *const bname[3] = {"plain", "first", "momentum"};
  for (int i = 0; i < 3; i++)
    blk[i] = LLVMAppendBasicBlockInContext(ir->cx, ir->fn, bname[i]);
  LLVMValueRef sw = LLVMBuildSwitch(b, mode, done, 3);
  for (int i = 0; i < 3; i++)
    LLVMAddCase(sw, LLVMConstInt(ir->i32, (unsigned)i, 0), blk[i]);
  for (int i = 0; i < 3; i++) {
    LLVMPositionBuilderAtEnd(b, blk[i]);
    IRLoop l;
    LLVMValueRef e = irb_loop_begin(ir, &l, lo, hi, 1, "e");
    LLVMValueRef w = ld(g, W, e);
    LLVMValueRef d = grad(g, G, e, cv, ncv, scale, wd, w);
    if (i == OPT_SGD_FIRST)
      st(g, d, B, e);
    else if (i == OPT_SGD_MOMENTUM) {
      d = fadd(g, fmul(g, ld(g, B, e), mom), d);
      st(g, d, B, e);
    }
    st(g, fadd(g, w, fmul(g, neglr, d)), W, e);
    irb_loop_end(ir, &l);
    LLVMBuildBr(b, done);
  }
  LLVMPositionBuilderAtEnd(b, done);
  LLVMBuildRetVoid(b);
}

/* void prefix_adam(float *w, const float *g, float *m, float *v, i64 lo,
 *                  i64 hi, float clipv, float scale, float wd, float decay,
 *                  float beta1, float omb1, float beta2, float omb2,
 *                  float negstep, float bc2sqrt, float eps):
 * torch.optim.Adam / AdamW (amsgrad off) over [lo, hi), in PyTorch 1.13's
 * order of float32 operations:
 *   w = w · decay                          AdamW: p.mul_(1 - lr·wd)
 *   d = grad() (+ wd·w)                    Adam: grad.add(p, alpha=wd)
 *   m = m · beta1 + omb1 · d               exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
 *   v = v · beta2 + (omb2 · d) · d         exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
 *   w = w + (negstep · m) / (sqrt(v) / bc2sqrt + eps)   p.addcdiv_(exp_avg, denom, value=-step_size) */
static void gen_adam(OG *g, const char *prefix)
{
  IRB *ir = &g->ir;
  LLVMTypeRef pt[17] = {ir->ptr, ir->ptr, ir->ptr, ir->ptr, ir->i64, ir->i64,
                        ir->f32, ir->f32, ir->f32, ir->f32, ir->f32, ir->f32,
                        ir->f32, ir->f32, ir->f32, ir->f32, ir->f32};
  fn_begin(g, prefix, "_adam", pt, 17,
           "w g m v lo hi clipv scale wd decay beta1 omb1 beta2 omb2 negstep bc2sqrt eps");
  LLVMBuilderRef b = ir->b;
  LLVMValueRef a[17];
  for (unsigned i = 0; i < 17; i++)
    a[i] = LLVMGetParam(ir->fn, i);
  LLVMValueRef W = a[0], G = a[1], M = a[2], V = a[3], lo = a[4], hi = a[5], cv = a[6], scale = a[7];
  LLVMValueRef wd = a[8], decay = a[9], b1 = a[10], omb1 = a[11], b2 = a[12], omb2 = a[13];
  LLVMValueRef negstep = a[14], bc2 = a[15], eps = a[16];
  LLVMValueRef ncv = LLVMBuildFNeg(b, cv, "negclipv");
  unsigned sid = LLVMLookupIntrinsicID("llvm.sqrt", 9);
  LLVMValueRef sqrtf_ = LLVMGetIntrinsicDeclaration(ir->mod, sid, &ir->f32, 1);
  LLVMTypeRef sqrtty = LLVMIntrinsicGetType(ir->cx, sid, &ir->f32, 1);
  IRLoop l;
  LLVMValueRef e = irb_loop_begin(ir, &l, lo, hi, 1, "e");
  LLVMValueRef w = fmul(g, ld(g, W, e), decay);
  LLVMValueRef d = grad(g, G, e, cv, ncv, scale, wd, w);
  LLVMValueRef m = fadd(g, fmul(g, ld(g, M, e), b1), fmul(g, omb1, d));
  LLVMValueRef v = fadd(g, fmul(g, ld(g, V, e), b2), fmul(g, fmul(g, omb2, d), d));
  st(g, m, M, e);
  st(g, v, V, e);
  LLVMValueRef sq = LLVMBuildCall2(b, sqrtty, sqrtf_, &v, 1, "");
  LLVMValueRef den = fadd(g, LLVMBuildFDiv(b, sq, bc2, ""), eps);
  st(g, fadd(g, w, LLVMBuildFDiv(b, fmul(g, negstep, m), den, "")), W, e);
  irb_loop_end(ir, &l);
  LLVMBuildRetVoid(b);
}

void optgen(LLVMContextRef cx, LLVMModuleRef mod, const char *prefix)
{
  OG g = {0};
  irb_init(&g.ir, cx, mod);
  IRB *ir = &g.ir;
  g.vf = LLVMVectorType(ir->f32, L);
  g.vd = LLVMVectorType(ir->f64, L);
  gen_sumsq(&g, prefix);
  gen_sgd(&g, prefix);
  gen_adam(&g, prefix);
  irb_free(ir);
}

int optgen_jit(Jit **j, OptKernels *k, char *err, size_t errlen)
{
  memset(k, 0, sizeof *k);
  int rc = jit_new(j, err, errlen);
  if (rc != RNNC_OK)
    return rc;
  LLVMModuleRef mod = LLVMModuleCreateWithNameInContext("rnnc_optim", jit_context(*j));
  optgen(jit_context(*j), mod, "rnnc_optim");
  rc = jit_add(*j, mod, err, errlen); /* takes mod */
  uintptr_t a[3] = {0};
  static const char *const sym[3] = {"rnnc_optim_sumsq", "rnnc_optim_sgd", "rnnc_optim_adam"};
  for (int i = 0; i < 3 && rc == RNNC_OK; i++)
    rc = jit_lookup(*j, sym[i], &a[i], err, errlen);
  if (rc != RNNC_OK) {
    jit_free(*j);
    *j = NULL;
    return rc;
  }
  k->sumsq = (OptSumsqFn)a[0];
  k->sgd = (OptSgdFn)a[1];
  k->adam = (OptAdamFn)a[2];
  return RNNC_OK;
}
