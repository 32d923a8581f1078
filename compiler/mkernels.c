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

#include "ir.h"

enum {
  CB = 128, /* mk_colsum: columns summed at once (a double per column on the stack) */
  MAXW = 8, /* the widest vector */
};

typedef struct MK {
  IRB ir;
  LLVMValueRef buf, t, lo, hi, scratch; /* the KernFn parameters */
  LLVMTypeRef vf, vd, vi; /* <W x float>, <W x double>, <W x i64> */
  int W;
} MK;

/* mk_portable's setting, per thread: kernels are generated on one thread. */
static _Thread_local int portable;

int mk_portable(int on)
{
  int was = portable;
  portable = on;
  return was;
}

/* Start the kernel sym (KernFn) in k->ir.mod: the builder is left in its entry. */
static void kern_begin(MK *k, LLVMContextRef cx, LLVMModuleRef mod, const char *sym)
{
  IRB *ir = &k->ir;
  irb_init(ir, cx, mod);
  k->W = !portable && irb_avx2_fma() ? 8 : 4;
  k->vf = LLVMVectorType(ir->f32, (unsigned)k->W);
  k->vd = LLVMVectorType(ir->f64, (unsigned)k->W);
  k->vi = LLVMVectorType(ir->i64, (unsigned)k->W);
  irb_kernfn(ir, sym);
  LLVMValueRef *slot[5] = {&k->buf, &k->t, &k->lo, &k->hi, &k->scratch};
  for (unsigned i = 0; i < 5; i++)
    *slot[i] = LLVMGetParam(ir->fn, i);
}

static int kern_end(MK *k)
{
  IRB *ir = &k->ir;
  LLVMBuildRetVoid(ir->b);
  irb_free(ir);
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

/* ---- addressing ------------------------------------------------------------ */

/* Row 0 of a at step t: (float *)buf[slot] + off + t·tstride (the same byte
 * offsets for int32); NULL when a.slot < 0. */
static LLVMValueRef base(MK *k, Addr a, const char *name)
{
  IRB *ir = &k->ir;
  if (a.slot < 0)
    return NULL;
  LLVMValueRef idx = irb_i64(ir, a.slot);
  LLVMValueRef slot = LLVMBuildInBoundsGEP2(ir->b, ir->ptr, k->buf, &idx, 1, "");
  LLVMValueRef p = LLVMBuildLoad2(ir->b, ir->ptr, slot, name);
  LLVMValueRef off = irb_i64(ir, a.off);
  if (a.tstride)
    off = irb_add(ir, off, irb_mulc(ir, k->t, a.tstride));
  return LLVMBuildGEP2(ir->b, ir->f32, p, &off, 1, name);
}

/* Row r of a value at base (r NULL or ld 0: row 0). */
static LLVMValueRef row(MK *k, LLVMValueRef base, int64_t ld, LLVMValueRef r)
{
  IRB *ir = &k->ir;
  if (!r || !ld)
    return base;
  LLVMValueRef off = irb_mulc(ir, r, ld);
  return LLVMBuildGEP2(ir->b, ir->f32, base, &off, 1, "");
}

/* &p[e] for a float (or int32) p; e an i64 value. */
static LLVMValueRef at(MK *k, LLVMValueRef p, LLVMValueRef e)
{
  IRB *ir = &k->ir;
  return LLVMBuildGEP2(ir->b, ir->f32, p, &e, 1, "");
}

static LLVMValueRef ld32(MK *k, LLVMValueRef p, LLVMValueRef e)
{
  IRB *ir = &k->ir;
  return LLVMBuildLoad2(ir->b, ir->f32, at(k, p, e), "");
}
static void st32(MK *k, LLVMValueRef v, LLVMValueRef p, LLVMValueRef e) { LLVMBuildStore(k->ir.b, v, at(k, p, e)); }
/* int32 element e of p, sign-extended to i64 (token ids and targets). */
static LLVMValueRef ldid(MK *k, LLVMValueRef p, LLVMValueRef e)
{
  IRB *ir = &k->ir;
  LLVMValueRef q = LLVMBuildGEP2(ir->b, ir->i32, p, &e, 1, "");
  return LLVMBuildSExt(ir->b, LLVMBuildLoad2(ir->b, ir->i32, q, ""), ir->i64, "id");
}

/* W floats at p[e] (a float's alignment). */
static LLVMValueRef vload(MK *k, LLVMValueRef p, LLVMValueRef e) { return irb_loadu(&k->ir, k->vf, at(k, p, e)); }
static void vstore(MK *k, LLVMValueRef v, LLVMValueRef p, LLVMValueRef e) { irb_storeu(&k->ir, v, at(k, p, e)); }

/* The largest lane of a float vector, as select(x > m, x, m) in lane order. */
static LLVMValueRef hmax(MK *k, LLVMValueRef v, LLVMValueRef m)
{
  IRB *ir = &k->ir;
  for (int i = 0; i < k->W; i++) {
    LLVMValueRef x = LLVMBuildExtractElement(ir->b, v, LLVMConstInt(ir->i32, (unsigned)i, 0), "");
    m = LLVMBuildSelect(ir->b, LLVMBuildFCmp(ir->b, LLVMRealOGT, x, m, ""), x, m, "");
  }
  return m;
}

static LLVMValueRef vexp(MK *k, LLVMValueRef v)
{
  IRB *ir = &k->ir;
  return irb_call1(ir, k->W == 8 ? "Sleef_expf8_u10avx2" : "Sleef_expf4_u10sse2", k->vf, v);
}

/* Return early unless lo == 0: a kernel whose range is [0, 1) (one thread). */
static void only_first(MK *k)
{
  IRB *ir = &k->ir;
  LLVMBasicBlockRef body = LLVMAppendBasicBlockInContext(ir->cx, ir->fn, "first");
  LLVMBasicBlockRef skip = LLVMAppendBasicBlockInContext(ir->cx, ir->fn, "skip");
  LLVMBuildCondBr(ir->b, LLVMBuildICmp(ir->b, LLVMIntEQ, k->lo, irb_i64(ir, 0), ""), body, skip);
  LLVMPositionBuilderAtEnd(ir->b, skip);
  LLVMBuildRetVoid(ir->b);
  LLVMPositionBuilderAtEnd(ir->b, body);
}

/* ---- GEMM ------------------------------------------------------------------ */

/* range: panels (MK_PACK, MK_COLSP, MK_COLS, MK_COLSPA) or rows (MK_ROWS,
 * MK_PACKA) of the GEMM of spec s (gemm_share_fn: generated as sym.g
 * the first time s is asked for); the matrices' origins at step
 * t. With x (MK_COLSP, MK_COLSPA), then C = x + C over the range's columns. */
static int gemm_kernel(LLVMContextRef cx, LLVMModuleRef mod, GemmShare *sh, const char *sym, const GemmSpec *s,
                       int mode, Addr a, Addr b, Addr c, Addr pack, Addr x, size_t *scratch, char *err, size_t errlen)
{
  static const char *const suffix[] = {"_pack", "_rows", "_colsp", "_cols", "_packa", "_colspa"};
  if (mode < MK_PACK || mode > MK_COLSPA)
    die("mk_gemm '%s': mode %d", sym, mode);
  char gsym[256];
  snprintf(gsym, sizeof gsym, "%s.g", sym);
  LLVMValueRef g;
  int rc = gemm_share_fn(sh, cx, mod, gsym, s, suffix[mode], &g, err, errlen);
  if (rc != RNNC_OK)
    return rc;
  *scratch = gemm_scratchsize(s);
  MK k = {0};
  kern_begin(&k, cx, mod, sym);
  IRB *ir = &k.ir;
  LLVMValueRef null = LLVMConstNull(ir->ptr);
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
  case MK_PACKA: /* (A, apack, m0, m1) */
    args[n++] = A, args[n++] = P, args[n++] = k.lo, args[n++] = k.hi;
    break;
  case MK_ROWS: /* (A, pack, C, m0, m1, scratch); MK_COLSPA: A is the apack */
  case MK_COLSP:
  case MK_COLSPA:
    args[n++] = A, args[n++] = P, args[n++] = C, args[n++] = k.lo, args[n++] = k.hi, args[n++] = k.scratch;
    break;
  case MK_COLS: /* (A, B, C, p0, p1, scratch) */
    args[n++] = A, args[n++] = B, args[n++] = C, args[n++] = k.lo, args[n++] = k.hi, args[n++] = k.scratch;
    break;
  }
  LLVMTypeRef ft = LLVMGlobalGetValueType(g);
  if (LLVMCountParamTypes(ft) != n)
    die("mk_gemm '%s': %s takes %u arguments, not %u", sym, suffix[mode], LLVMCountParamTypes(ft), n);
  LLVMBuildCall2(ir->b, ft, g, args, n, "");
  if (x.slot >= 0) { /* C[r, e] = x[r, e] + C[r, e] for the panels' columns */
    if ((mode != MK_COLSP && mode != MK_COLSPA) || c.slot < 0)
      die("mk_gemm '%s': a sum after the product needs MK_COLSP and C", sym);
    int mr, nr;
    gemm_block(s->flags, &mr, &nr);
    LLVMBuilderRef bd = ir->b;
    LLVMValueRef X = base(&k, x, "x");
    LLVMValueRef e0 = irb_mulc(ir, k.lo, nr), e1 = irb_mulc(ir, k.hi, nr), nn = irb_i64(ir, s->N);
    e1 = LLVMBuildSelect(bd, LLVMBuildICmp(bd, LLVMIntSLT, e1, nn, ""), e1, nn, "e1");
    IRLoop lr, le;
    LLVMValueRef r = irb_loop_begin(ir, &lr, irb_i64(ir, 0), irb_i64(ir, s->M), 1, "r");
    LLVMValueRef xr = row(&k, X, x.ld, r), cr = row(&k, C, s->ldc, r);
    LLVMValueRef e = irb_loop_begin(ir, &le, e0, e1, 1, "e");
    st32(&k, LLVMBuildFAdd(bd, ld32(&k, xr, e), ld32(&k, cr, e), ""), cr, e);
    irb_loop_end(ir, &le);
    irb_loop_end(ir, &lr);
  }
  return kern_end(&k);
}

int mk_gemm(LLVMContextRef cx, LLVMModuleRef mod, GemmShare *sh, const char *sym, const GemmSpec *s, int mode,
            Addr a, Addr b, Addr c, Addr pack, size_t *scratch, char *err, size_t errlen)
{
  return gemm_kernel(cx, mod, sh, sym, s, mode, a, b, c, pack, addr_none(), scratch, err, errlen);
}

/* A call of _rows reads all of packed op(B) once per block of rows. Its
 * chunks are a quarter block (30 rows with MC = 120): with whole blocks,
 * the last chunks of a big hoisted GEMM (C5's input projection: 7 blocks)
 * left one thread waiting at the barrier for the other's last block; 30
 * rows still do 15 flops per byte of op(B) they stream (about 7 GB/s at a
 * core's peak, from L3). One of _colsp packs op(A), the step's rows, which
 * costs about half a panel's product: 16 panels keep it near 3%. _colspa
 * packs nothing (the step packed op(A) once, MK_PACKA), so its chunks are
 * a few panels: the prefetch of the next panel stops at a call's last one.
 * _cols packs all of op(A) for every chunk of op(B) it packs: one such
 * chunk at least. */
enum { ROWS_CHUNK_DIV = 4, COLSPA_CHUNK = 4 };

int64_t mk_gemm_chunk(const GemmSpec *s, int mode, double *flops)
{
  int mr, nr;
  gemm_block(s->flags, &mr, &nr);
  *flops = 2.0 * (double)s->K * (mode == MK_ROWS ? (double)mr * (double)s->N : (double)s->M * nr);
  switch (mode) {
  case MK_ROWS:
    return gemm_rows_chunk() / ROWS_CHUNK_DIV;
  case MK_COLSP:
    return 16;
  case MK_COLSPA:
    return COLSPA_CHUNK;
  case MK_COLS:
    return gemm_cols_chunk(s);
  }
  return 1;
}

int mk_colgemm_sum(LLVMContextRef cx, LLVMModuleRef mod, GemmShare *sh, const char *sym, const GemmSpec *s,
                   int mode, Addr a, Addr c, Addr pack, Addr x, size_t *scratch, char *err, size_t errlen)
{
  return gemm_kernel(cx, mod, sh, sym, s, mode, a, addr_none(), c, pack, x, scratch, err, errlen);
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
  IRB *ir = &k.ir;
  LLVMValueRef I = base(&k, ids, "ids"), Wt = base(&k, weight, "weight"), O = base(&k, out, "out");
  if (!I || !Wt || !O)
    die("mk_embed '%s': ids, weight and out need slots", sym);
  IRLoop lp;
  LLVMValueRef p = irb_loop_begin(ir, &lp, k.lo, k.hi, 1, "pos");
  LLVMValueRef id = ldid(&k, I, irb_mulc(ir, p, ids.ld));
  LLVMValueRef src = row(&k, Wt, weight.ld, id), dst = row(&k, O, out.ld, p);
  LLVMBuildMemCpy(ir->b, dst, 4, src, 4, irb_i64(ir, E * 4));
  irb_loop_end(ir, &lp);
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
  IRB *ir = &k.ir;
  LLVMValueRef I = base(&k, ids, "ids"), D = base(&k, dout, "dout"), G = base(&k, dweight, "dweight");
  if (!I || !D || !G)
    die("mk_embed_grad '%s': ids, dout and dweight need slots", sym);
  IRLoop lp, le;
  LLVMValueRef p = irb_loop_begin(ir, &lp, irb_i64(ir, 0), irb_i64(ir, npos), 1, "pos");
  LLVMValueRef id = ldid(&k, I, irb_mulc(ir, p, ids.ld));
  LLVMValueRef g = row(&k, G, dweight.ld, id), d = row(&k, D, dout.ld, p);
  LLVMValueRef e = irb_loop_begin(ir, &le, k.lo, k.hi, 1, "e");
  st32(&k, LLVMBuildFAdd(ir->b, ld32(&k, g, e), ld32(&k, d, e), ""), g, e);
  irb_loop_end(ir, &le);
  irb_loop_end(ir, &lp);
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
  IRB *ir = &k.ir;
  LLVMValueRef I = base(&k, ids, "ids"), O = base(&k, out, "out");
  if (!I || !O)
    die("mk_onehot '%s': ids and out need slots", sym);
  IRLoop lp;
  LLVMValueRef p = irb_loop_begin(ir, &lp, k.lo, k.hi, 1, "pos");
  LLVMValueRef id = ldid(&k, I, irb_mulc(ir, p, ids.ld));
  LLVMValueRef dst = row(&k, O, out.ld, p);
  LLVMBuildMemSet(ir->b, dst, LLVMConstInt(LLVMInt8TypeInContext(cx), 0, 0), irb_i64(ir, V * 4), 4);
  st32(&k, LLVMConstReal(LLVMFloatTypeInContext(cx), 1.0), dst, id);
  irb_loop_end(ir, &lp);
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
  IRB *ir = &k.ir;
  LLVMBuilderRef b = ir->b;
  int W = k.W;
  int64_t nv = K / W * W; /* classes done by vectors */
  LLVMValueRef Z = base(&k, z, "z"), Bi = base(&k, bias, "bias"), L = base(&k, lse, "lse");
  LLVMValueRef P = base(&k, probs, "probs"), Y = base(&k, tgt, "tgt"), N = base(&k, nll, "nll");
  LLVMValueRef D = base(&k, dz, "dz"), S = base(&k, scale, "scale");
  LLVMValueRef sc = S ? LLVMBuildLoad2(b, ir->f32, S, "scale") : NULL;
  LLVMValueRef vmax = irb_alloca(ir, k.vf, "vmax"), vsum = irb_alloca(ir, k.vd, "vsum");
  LLVMValueRef lane[MAXW];
  for (int i = 0; i < W; i++)
    lane[i] = irb_i64(ir, i);
  LLVMValueRef iota = LLVMConstVector(lane, (unsigned)W);

  IRLoop lp, lk;
  LLVMValueRef p = irb_loop_begin(ir, &lp, k.lo, k.hi, 1, "pos");
  LLVMValueRef zr = row(&k, Z, z.ld, p);
  LLVMValueRef pr = P ? row(&k, P, probs.ld, p) : NULL, dr = D ? row(&k, D, dz.ld, p) : NULL;
  LLVMValueRef er = pr ? pr : dr; /* where pass 2 keeps exp(z - mx) */

  /* pass 1: bias, max */
  LLVMValueRef mx = irb_f32(ir, -INFINITY);
  if (nv) {
    LLVMBuildStore(b, irb_splat(ir, k.vf, mx), vmax);
    LLVMValueRef c = irb_loop_begin(ir, &lk, irb_i64(ir, 0), irb_i64(ir, nv), W, "k");
    LLVMValueRef v = vload(&k, zr, c);
    if (Bi) {
      v = LLVMBuildFAdd(b, v, vload(&k, Bi, c), "");
      vstore(&k, v, zr, c);
    }
    LLVMValueRef m = LLVMBuildLoad2(b, k.vf, vmax, "");
    LLVMBuildStore(b, LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOGT, v, m, ""), v, m, ""), vmax);
    irb_loop_end(ir, &lk);
    mx = hmax(&k, LLVMBuildLoad2(b, k.vf, vmax, ""), mx);
  }
  for (int64_t c = nv; c < K; c++) {
    LLVMValueRef v = ld32(&k, zr, irb_i64(ir, c));
    if (Bi) {
      v = LLVMBuildFAdd(b, v, ld32(&k, Bi, irb_i64(ir, c)), "");
      st32(&k, v, zr, irb_i64(ir, c));
    }
    mx = LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOGT, v, mx, ""), v, mx, "");
  }

  /* the target and its logit, before pass 2 may overwrite z */
  LLVMValueRef y = NULL, ign = LLVMConstInt(ir->i1, 0, 0), zy = NULL;
  if (Y) {
    y = ldid(&k, Y, irb_mulc(ir, p, tgt.ld));
    if (hasignore)
      ign = LLVMBuildICmp(b, LLVMIntEQ, y, irb_i64(ir, (int64_t)ignore), "ignored");
    zy = ld32(&k, zr, LLVMBuildSelect(b, ign, irb_i64(ir, 0), y, ""));
  }

  /* pass 2: exp(z - mx) and its sum */
  LLVMValueRef sum = irb_f64(ir, 0);
  if (nv) {
    LLVMBuildStore(b, LLVMConstNull(k.vd), vsum);
    LLVMValueRef vmx = irb_splat(ir, k.vf, mx);
    LLVMValueRef c = irb_loop_begin(ir, &lk, irb_i64(ir, 0), irb_i64(ir, nv), W, "k");
    LLVMValueRef e = vexp(&k, LLVMBuildFSub(b, vload(&k, zr, c), vmx, ""));
    if (er)
      vstore(&k, e, er, c);
    LLVMValueRef s = LLVMBuildLoad2(b, k.vd, vsum, "");
    LLVMBuildStore(b, LLVMBuildFAdd(b, s, LLVMBuildFPExt(b, e, k.vd, ""), ""), vsum);
    irb_loop_end(ir, &lk);
    sum = irb_hsum(ir, LLVMBuildLoad2(b, k.vd, vsum, ""));
  }
  for (int64_t c = nv; c < K; c++) {
    LLVMValueRef e =
        irb_call1(ir, "Sleef_expf_u10", ir->f32, LLVMBuildFSub(b, ld32(&k, zr, irb_i64(ir, c)), mx, ""));
    if (er)
      st32(&k, e, er, irb_i64(ir, c));
    sum = LLVMBuildFAdd(b, sum, LLVMBuildFPExt(b, e, ir->f64, ""), "");
  }
  LLVMValueRef logsum = irb_call1(ir, "Sleef_logf_u10", ir->f32, LLVMBuildFPTrunc(b, sum, ir->f32, ""));
  if (L)
    st32(&k, LLVMBuildFAdd(b, mx, logsum, "lse"), row(&k, L, lse.ld, p), irb_i64(ir, 0));
  if (N) {
    LLVMValueRef v = LLVMBuildFAdd(b, logsum, LLVMBuildFSub(b, mx, zy, ""), "");
    st32(&k, LLVMBuildSelect(b, ign, irb_f32(ir, 0), v, "nll"), row(&k, N, nll.ld, p), irb_i64(ir, 0));
  }

  /* pass 3: probabilities and the loss gradient */
  if (er) {
    LLVMValueRef inv = LLVMBuildFPTrunc(b, LLVMBuildFDiv(b, irb_f64(ir, 1), sum, ""), ir->f32, "inv");
    LLVMValueRef zero = LLVMConstNull(k.vf), one = irb_splat(ir, k.vf, irb_f32(ir, 1));
    LLVMValueRef vinv = irb_splat(ir, k.vf, inv), vsc = sc ? irb_splat(ir, k.vf, sc) : NULL;
    LLVMValueRef vy = y ? irb_splat(ir, k.vi, y) : NULL;
    if (nv) {
      LLVMValueRef c = irb_loop_begin(ir, &lk, irb_i64(ir, 0), irb_i64(ir, nv), W, "k");
      LLVMValueRef q = LLVMBuildFMul(b, vload(&k, er, c), vinv, "");
      if (pr)
        vstore(&k, q, pr, c);
      if (dr) {
        LLVMValueRef kv = LLVMBuildAdd(b, irb_splat(ir, k.vi, c), iota, "");
        LLVMValueRef oh = LLVMBuildSelect(b, LLVMBuildICmp(b, LLVMIntEQ, kv, vy, ""), one, zero, "");
        LLVMValueRef d = LLVMBuildFMul(b, LLVMBuildFSub(b, q, oh, ""), vsc, "");
        vstore(&k, LLVMBuildSelect(b, ign, zero, d, ""), dr, c);
      }
      irb_loop_end(ir, &lk);
    }
    for (int64_t c = nv; c < K; c++) {
      LLVMValueRef q = LLVMBuildFMul(b, ld32(&k, er, irb_i64(ir, c)), inv, "");
      if (pr)
        st32(&k, q, pr, irb_i64(ir, c));
      if (dr) {
        LLVMValueRef oh = LLVMBuildSelect(b, LLVMBuildICmp(b, LLVMIntEQ, y, irb_i64(ir, c), ""), irb_f32(ir, 1),
                                          irb_f32(ir, 0), "");
        LLVMValueRef d = LLVMBuildFMul(b, LLVMBuildFSub(b, q, oh, ""), sc, "");
        st32(&k, LLVMBuildSelect(b, ign, irb_f32(ir, 0), d, ""), dr, irb_i64(ir, c));
      }
    }
  }
  irb_loop_end(ir, &lp);
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
  IRB *ir = &k.ir;
  LLVMBuilderRef b = ir->b;
  only_first(&k);
  LLVMValueRef Y = base(&k, tgt, "tgt"), N = base(&k, nll, "nll"), Lo = base(&k, loss, "loss");
  LLVMValueRef DL = base(&k, dloss, "dloss"), S = base(&k, scale, "scale");
  LLVMValueRef cnt = irb_alloca(ir, ir->i64, "count"), tot = irb_alloca(ir, ir->f64, "total");
  LLVMBuildStore(b, irb_i64(ir, 0), cnt);
  LLVMBuildStore(b, irb_f64(ir, 0), tot);
  IRLoop lp;
  LLVMValueRef p = irb_loop_begin(ir, &lp, irb_i64(ir, 0), irb_i64(ir, npos), 1, "pos");
  LLVMValueRef counted = LLVMConstInt(ir->i1, 1, 0);
  if (hasignore)
    counted = LLVMBuildICmp(b, LLVMIntNE, ldid(&k, Y, irb_mulc(ir, p, tgt.ld)), irb_i64(ir, (int64_t)ignore), "");
  LLVMValueRef c = LLVMBuildLoad2(b, ir->i64, cnt, "");
  LLVMBuildStore(b, irb_add(ir, c, LLVMBuildZExt(b, counted, ir->i64, "")), cnt);
  if (N) {
    LLVMValueRef v = LLVMBuildFPExt(b, ld32(&k, row(&k, N, nll.ld, p), irb_i64(ir, 0)), ir->f64, "");
    LLVMBuildStore(b, LLVMBuildFAdd(b, LLVMBuildLoad2(b, ir->f64, tot, ""), v, ""), tot);
  }
  irb_loop_end(ir, &lp);
  c = LLVMBuildLoad2(b, ir->i64, cnt, "count");
  LLVMValueRef none = LLVMBuildICmp(b, LLVMIntEQ, c, irb_i64(ir, 0), "");
  LLVMValueRef dc = LLVMBuildSIToFP(b, c, ir->f64, "");
  if (Lo) {
    LLVMValueRef l = LLVMBuildFPTrunc(b, LLVMBuildFDiv(b, LLVMBuildLoad2(b, ir->f64, tot, ""), dc, ""), ir->f32, "");
    st32(&k, LLVMBuildSelect(b, none, irb_f32(ir, 0), l, "loss"), Lo, irb_i64(ir, 0));
  }
  if (S) {
    LLVMValueRef g = DL ? LLVMBuildFPExt(b, ld32(&k, DL, irb_i64(ir, 0)), ir->f64, "") : irb_f64(ir, 1);
    LLVMValueRef s = LLVMBuildFPTrunc(b, LLVMBuildFDiv(b, g, dc, ""), ir->f32, "");
    st32(&k, LLVMBuildSelect(b, none, irb_f32(ir, 0), s, "scale"), S, irb_i64(ir, 0));
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
  IRB *ir = &k.ir;
  LLVMBuilderRef b = ir->b;
  int W = k.W;
  int64_t nv = K / W * W;
  LLVMValueRef P = base(&k, probs, "probs"), G = base(&k, dp, "dp"), D = base(&k, dz, "dz");
  LLVMValueRef vdot = irb_alloca(ir, k.vd, "vdot");
  IRLoop lp, lk;
  LLVMValueRef p = irb_loop_begin(ir, &lp, k.lo, k.hi, 1, "pos");
  LLVMValueRef pr = row(&k, P, probs.ld, p), gr = row(&k, G, dp.ld, p), dr = row(&k, D, dz.ld, p);
  LLVMValueRef dot = irb_f64(ir, 0);
  if (nv) {
    LLVMBuildStore(b, LLVMConstNull(k.vd), vdot);
    LLVMValueRef c = irb_loop_begin(ir, &lk, irb_i64(ir, 0), irb_i64(ir, nv), W, "k");
    LLVMValueRef x = LLVMBuildFMul(b, LLVMBuildFPExt(b, vload(&k, pr, c), k.vd, ""),
                                   LLVMBuildFPExt(b, vload(&k, gr, c), k.vd, ""), "");
    LLVMBuildStore(b, LLVMBuildFAdd(b, LLVMBuildLoad2(b, k.vd, vdot, ""), x, ""), vdot);
    irb_loop_end(ir, &lk);
    dot = irb_hsum(ir, LLVMBuildLoad2(b, k.vd, vdot, ""));
  }
  for (int64_t c = nv; c < K; c++) {
    LLVMValueRef x = LLVMBuildFMul(b, LLVMBuildFPExt(b, ld32(&k, pr, irb_i64(ir, c)), ir->f64, ""),
                                   LLVMBuildFPExt(b, ld32(&k, gr, irb_i64(ir, c)), ir->f64, ""), "");
    dot = LLVMBuildFAdd(b, dot, x, "");
  }
  LLVMValueRef s = LLVMBuildFPTrunc(b, dot, ir->f32, "dot");
  if (nv) {
    LLVMValueRef vs = irb_splat(ir, k.vf, s);
    LLVMValueRef c = irb_loop_begin(ir, &lk, irb_i64(ir, 0), irb_i64(ir, nv), W, "k");
    LLVMValueRef x = LLVMBuildFMul(b, vload(&k, pr, c), LLVMBuildFSub(b, vload(&k, gr, c), vs, ""), "");
    vstore(&k, LLVMBuildFAdd(b, vload(&k, dr, c), x, ""), dr, c);
    irb_loop_end(ir, &lk);
  }
  for (int64_t c = nv; c < K; c++) {
    LLVMValueRef e = irb_i64(ir, c);
    LLVMValueRef x = LLVMBuildFMul(b, ld32(&k, pr, e), LLVMBuildFSub(b, ld32(&k, gr, e), s, ""), "");
    st32(&k, LLVMBuildFAdd(b, ld32(&k, dr, e), x, ""), dr, e);
  }
  irb_loop_end(ir, &lp);
  return kern_end(&k);
}

/* ---- sums, copies, fills ------------------------------------------------------ */

/* range columns [lo, hi) of n: out[e] (+)= Σ_r x[r, e], r in order, summed
 * in double CB columns at a time (x read row by row), rounded once; the same
 * into out2 when it has a slot. */
int mk_colsum(LLVMContextRef cx, LLVMModuleRef mod, const char *sym, int64_t nrows, int64_t n, Addr x, Addr out,
              Addr out2, int acc, char *err, size_t errlen)
{
  int64_t sz[2] = {nrows, n};
  int rc = checksizes(sym, 2, sz, (const char *const[]){"nrows", "n"}, err, errlen);
  if (rc != RNNC_OK)
    return rc;
  if (x.slot < 0 || out.slot < 0)
    die("mk_colsum '%s': x and out need slots", sym);
  MK k = {0};
  kern_begin(&k, cx, mod, sym);
  IRB *ir = &k.ir;
  LLVMBuilderRef b = ir->b;
  LLVMValueRef X = base(&k, x, "x"), O = base(&k, out, "out"), O2 = base(&k, out2, "out2");
  LLVMTypeRef at = LLVMArrayType2(ir->f64, CB);
  LLVMValueRef s = irb_alloca(ir, at, "colsum");
  IRLoop lb, lr, lj;
  LLVMValueRef e0 = irb_loop_begin(ir, &lb, k.lo, k.hi, CB, "block");
  LLVMValueRef left = LLVMBuildNSWSub(b, k.hi, e0, "");
  LLVMValueRef cb = irb_i64(ir, CB);
  LLVMValueRef nb = LLVMBuildSelect(b, LLVMBuildICmp(b, LLVMIntSLT, left, cb, ""), left, cb, "nb");
  LLVMValueRef j = irb_loop_begin(ir, &lj, irb_i64(ir, 0), nb, 1, "j");
  LLVMBuildStore(b, irb_f64(ir, 0), LLVMBuildGEP2(b, ir->f64, s, &j, 1, ""));
  irb_loop_end(ir, &lj);
  LLVMValueRef r = irb_loop_begin(ir, &lr, irb_i64(ir, 0), irb_i64(ir, nrows), 1, "row");
  LLVMValueRef xr = row(&k, X, x.ld, r);
  j = irb_loop_begin(ir, &lj, irb_i64(ir, 0), nb, 1, "j");
  LLVMValueRef sp = LLVMBuildGEP2(b, ir->f64, s, &j, 1, "");
  LLVMValueRef v = LLVMBuildFPExt(b, ld32(&k, xr, irb_add(ir, e0, j)), ir->f64, "");
  LLVMBuildStore(b, LLVMBuildFAdd(b, LLVMBuildLoad2(b, ir->f64, sp, ""), v, ""), sp);
  irb_loop_end(ir, &lj);
  irb_loop_end(ir, &lr);
  j = irb_loop_begin(ir, &lj, irb_i64(ir, 0), nb, 1, "j");
  LLVMValueRef e = irb_add(ir, e0, j);
  LLVMValueRef sum = LLVMBuildLoad2(b, ir->f64, LLVMBuildGEP2(b, ir->f64, s, &j, 1, ""), "");
  LLVMValueRef outs[2] = {O, O2};
  for (int q = 0; q < 2 && outs[q]; q++) {
    LLVMValueRef v = sum;
    if (acc)
      v = LLVMBuildFAdd(b, LLVMBuildFPExt(b, ld32(&k, outs[q], e), ir->f64, ""), v, "");
    st32(&k, LLVMBuildFPTrunc(b, v, ir->f32, ""), outs[q], e);
  }
  irb_loop_end(ir, &lj);
  irb_loop_end(ir, &lb);
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
  IRB *ir = &k.ir;
  LLVMBuilderRef b = ir->b;
  LLVMValueRef X = base(&k, x, "x"), X2 = base(&k, x2, "x2"), Yb = base(&k, y, "y");
  LLVMValueRef a = irb_f32(ir, alpha);
  IRLoop lr, le;
  LLVMValueRef r = irb_loop_begin(ir, &lr, k.lo, k.hi, 1, "row");
  LLVMValueRef xr = X ? row(&k, X, x.ld, r) : NULL, x2r = X2 ? row(&k, X2, x2.ld, r) : NULL;
  LLVMValueRef yr = row(&k, Yb, y.ld, r);
  LLVMValueRef e = irb_loop_begin(ir, &le, irb_i64(ir, 0), irb_i64(ir, n), 1, "e");
  LLVMValueRef v = a;
  if (xr)
    v = alpha == 1.0f ? ld32(&k, xr, e) : LLVMBuildFMul(b, a, ld32(&k, xr, e), "");
  if (x2r)
    v = LLVMBuildFAdd(b, v, ld32(&k, x2r, e), "");
  if (acc)
    v = LLVMBuildFAdd(b, ld32(&k, yr, e), v, "");
  st32(&k, v, yr, e);
  irb_loop_end(ir, &le);
  irb_loop_end(ir, &lr);
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
  IRB *ir = &k.ir;
  LLVMBuilderRef b = ir->b;
  only_first(&k);
  LLVMValueRef X = base(&k, x, "x"), Yb = base(&k, y, "y");
  LLVMValueRef s = irb_alloca(ir, ir->f64, "sum");
  LLVMBuildStore(b, irb_f64(ir, 0), s);
  IRLoop lr, le;
  LLVMValueRef r = irb_loop_begin(ir, &lr, irb_i64(ir, 0), irb_i64(ir, nrows), 1, "row");
  LLVMValueRef xr = row(&k, X, x.ld, r);
  LLVMValueRef e = irb_loop_begin(ir, &le, irb_i64(ir, 0), irb_i64(ir, n), 1, "e");
  LLVMValueRef v = LLVMBuildFPExt(b, ld32(&k, xr, e), ir->f64, "");
  LLVMBuildStore(b, LLVMBuildFAdd(b, LLVMBuildLoad2(b, ir->f64, s, ""), v, ""), s);
  irb_loop_end(ir, &le);
  irb_loop_end(ir, &lr);
  st32(&k, LLVMBuildFPTrunc(b, LLVMBuildLoad2(b, ir->f64, s, ""), ir->f32, ""), Yb, irb_i64(ir, 0));
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
  IRB *ir = &k.ir;
  LLVMBuilderRef b = ir->b;
  LLVMValueRef G = base(&k, g, "g"), Yb = base(&k, y, "y");
  LLVMValueRef gv = ld32(&k, G, irb_i64(ir, 0));
  IRLoop lr, le;
  LLVMValueRef r = irb_loop_begin(ir, &lr, k.lo, k.hi, 1, "row");
  LLVMValueRef yr = row(&k, Yb, y.ld, r);
  LLVMValueRef e = irb_loop_begin(ir, &le, irb_i64(ir, 0), irb_i64(ir, n), 1, "e");
  st32(&k, LLVMBuildFAdd(b, ld32(&k, yr, e), gv, ""), yr, e);
  irb_loop_end(ir, &le);
  irb_loop_end(ir, &lr);
  return kern_end(&k);
}
