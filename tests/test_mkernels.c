/* test_mkernels.c — the model-level kernels (compiler/mkernels.c), JIT-compiled,
 * against straightforward references in double.
 *
 * The harness. Every value lives in a slot of its own (buf[slot]), at an
 * offset of 3 floats, followed by a pad; with a time step, the slot holds 4
 * steps and the kernel runs at t = 3 (tstride = one step). Every slot is
 * filled with random values first. Each kernel runs over its whole range in
 * one call, then from the same initial buffers split into 2 and into 3 parts
 * (called last part first): every buffer must come out bytewise identical.
 * Everything outside the kernel's outputs at step t (offsets, pads, other
 * steps) must be unchanged.
 *
 * The error of an output is max |got - ref| / max(max |ref|, 1e-6) over its
 * elements (relative to its largest value), at most 1e-5; copies are exact.
 * GEMMs: max |C - ref| <= 1e-6 · (K + 1) (values in [-1, 1)), and the modes
 * (rows, column panels, self-packing columns) agree bitwise.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/Core.h>

#include "testutil.h"

enum { MAXSLOT = 16, OFF = 3, PAD = 5, NT = 4 };

static uint64_t rs;
static double uni(void) /* [-1, 1), splitmix64 */
{
  uint64_t z = (rs += 0x9e3779b97f4a7c15u);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  z ^= z >> 31;
  return (double)(z >> 11) / 9007199254740992.0 * 2 - 1;
}

/* ---- JIT ------------------------------------------------------------------- */

static Jit *J;
static int nsym;

static void setup(void)
{
  char err[512];
  cr_assert_eq(jit_new(&J, err, sizeof err), RNNC_OK, "%s", err);
}
static void teardown(void) { jit_free(J); }

TestSuite(mkernels, .init = setup, .fini = teardown);

static LLVMModuleRef newmod(char *sym, size_t n)
{
  snprintf(sym, n, "mk%d", nsym++);
  return LLVMModuleCreateWithNameInContext(sym, jit_context(J));
}

/* Add mod (whose generator returned rc) and look sym up. */
static KernFn finish(LLVMModuleRef mod, const char *sym, int rc, const char *err)
{
  char e2[1024];
  uintptr_t a;
  cr_assert_eq(rc, RNNC_OK, "%s: %s", sym, err);
  cr_assert_eq(jit_add(J, mod, e2, sizeof e2), RNNC_OK, "%s", e2);
  cr_assert_eq(jit_lookup(J, sym, &a, e2, sizeof e2), RNNC_OK, "%s", e2);
  return (KernFn)a;
}

/* ---- buffers ----------------------------------------------------------------- */

typedef struct Run {
  int n;
  float *buf[MAXSLOT];
  int64_t len[MAXSLOT];      /* floats */
  int64_t lo[MAXSLOT], hi[MAXSLOT]; /* the output region at step t: [lo, hi) may change */
  float *init[MAXSLOT];      /* contents before the run */
  int tt;                    /* 1: 4 steps, run at t = 3 */
} Run;

static int64_t step(const Run *R) { return R->tt ? NT - 1 : 0; }

/* A slot of `per` floats per step (rows of ld floats), random contents. */
static Addr slot(Run *R, int64_t per, int64_t ld)
{
  cr_assert(R->n < MAXSLOT);
  int s = R->n++;
  int64_t len = OFF + (R->tt ? NT : 1) * per + PAD;
  R->buf[s] = malloc(sizeof(float) * (size_t)len);
  R->len[s] = len;
  cr_assert(R->buf[s]);
  for (int64_t i = 0; i < len; i++)
    R->buf[s][i] = (float)uni();
  return (Addr){s, OFF, R->tt ? per : 0, ld};
}

/* Element e of row r of a at the run's step. */
static float *el(Run *R, Addr a, int64_t r, int64_t e)
{
  return R->buf[a.slot] + a.off + step(R) * a.tstride + r * a.ld + e;
}
static int32_t *eli(Run *R, Addr a, int64_t r) { return (int32_t *)el(R, a, r, 0); }
/* The same element before the run. */
static float init(Run *R, Addr a, int64_t r, int64_t e)
{
  return R->init[a.slot][a.off + step(R) * a.tstride + r * a.ld + e];
}

/* Mark a's first n floats (at step t) as an output. */
static void output(Run *R, Addr a, int64_t n)
{
  int64_t lo = a.off + step(R) * a.tstride;
  R->lo[a.slot] = lo;
  R->hi[a.slot] = lo + n;
}

static void run_free(Run *R)
{
  for (int s = 0; s < R->n; s++)
    free(R->buf[s]), free(R->init[s]);
}

static void snapshot(Run *R, float **to)
{
  for (int s = 0; s < R->n; s++) {
    to[s] = malloc(sizeof(float) * (size_t)R->len[s]);
    cr_assert(to[s]);
    memcpy(to[s], R->buf[s], sizeof(float) * (size_t)R->len[s]);
  }
}

static void restore(Run *R, float *const *from)
{
  for (int s = 0; s < R->n; s++)
    memcpy(R->buf[s], from[s], sizeof(float) * (size_t)R->len[s]);
}

/* Run f over [0, n) in parts pieces, last first; scratch floats each. */
static void call_parts(Run *R, KernFn f, int64_t n, int parts, size_t scratch)
{
  size_t sz = (scratch * sizeof(float) + 63) / 64 * 64 + 64;
  float *scr = aligned_alloc(64, sz);
  cr_assert(scr);
  for (int i = parts - 1; i >= 0; i--) {
    int64_t lo = n * i / parts, hi = n * (i + 1) / parts;
    if (lo < hi)
      f((void *const *)R->buf, step(R), lo, hi, scr);
  }
  free(scr);
}

/* Run f over [0, n) whole, then split into 2 and 3 parts from the same
 * buffers: identical bits. Leaves the whole run's results in R. */
static void run(Run *R, KernFn f, int64_t n, size_t scratch, const char *what)
{
  float *whole[MAXSLOT];
  for (int s = 0; s < R->n; s++)
    free(R->init[s]);
  snapshot(R, R->init);
  call_parts(R, f, n, 1, scratch);
  snapshot(R, whole);
  for (int parts = 2; parts <= 3; parts++) {
    restore(R, R->init);
    call_parts(R, f, n, parts, scratch);
    for (int s = 0; s < R->n; s++)
      cr_assert(memcmp(R->buf[s], whole[s], sizeof(float) * (size_t)R->len[s]) == 0,
                "%s: slot %d differs between 1 and %d parts", what, s, parts);
  }
  for (int s = 0; s < R->n; s++) {
    for (int64_t i = 0; i < R->len[s]; i++)
      if (i < R->lo[s] || i >= R->hi[s])
        cr_assert(memcmp(&R->buf[s][i], &R->init[s][i], sizeof(float)) == 0,
                  "%s: slot %d element %lld (outside [%lld, %lld)) changed", what, s, (long long)i,
                  (long long)R->lo[s], (long long)R->hi[s]);
    free(whole[s]);
  }
}

/* max |got - ref| / max(max |ref|, 1e-6) over n elements of rows r of a */
static double relerr(Run *R, Addr a, int64_t nrows, int64_t n, const double *ref)
{
  double d = 0, m = 1e-6;
  for (int64_t r = 0; r < nrows; r++)
    for (int64_t e = 0; e < n; e++) {
      double x = *el(R, a, r, e), y = ref[r * n + e];
      m = fmax(m, fabs(y));
      double dd = fabs(x - y);
      d = dd > d || dd != dd ? dd : d;
    }
  return d / m;
}

#define CHECK_REL(R, a, nrows, n, ref, what)                                                                    \
  do {                                                                                                         \
    double err_ = relerr((R), (a), (nrows), (n), (ref));                                                        \
    cr_assert(err_ <= 1e-5, "%s: relative error %.3g", (what), err_);                                          \
  } while (0)

/* ---- embedding ---------------------------------------------------------------- */

static void check_embed(int64_t npos, int64_t V, int64_t E, int64_t ldo, int tt)
{
  char sym[32], err[512], what[128];
  snprintf(what, sizeof what, "embed npos=%lld V=%lld E=%lld tt=%d", (long long)npos, (long long)V, (long long)E, tt);
  rs = (uint64_t)(npos * 31 + V * 7 + E + tt);
  Run R = {.tt = tt};
  Addr ids = slot(&R, npos, 1), w = slot(&R, V * E, E), out = slot(&R, npos * ldo, ldo);
  for (int64_t p = 0; p < npos; p++)
    *eli(&R, ids, p) = (int32_t)((p * 7 + 3) % V);
  output(&R, out, npos * ldo); /* only [0, E) of each row may change: checked below */
  LLVMModuleRef mod = newmod(sym, sizeof sym);
  KernFn f = finish(mod, sym, mk_embed(jit_context(J), mod, sym, npos, V, E, ids, w, out, err, sizeof err), err);
  run(&R, f, npos, 0, what);
  for (int64_t p = 0; p < npos; p++)
    for (int64_t e = 0; e < ldo; e++) {
      float want = e < E ? init(&R, w, *eli(&R, ids, p), e) : init(&R, out, p, e);
      cr_assert(memcmp(el(&R, out, p, e), &want, sizeof want) == 0, "%s: out[%lld, %lld]", what, (long long)p,
                (long long)e);
    }
  run_free(&R);
}

Test(mkernels, embed)
{
  check_embed(7, 5, 13, 13, 0);
  check_embed(1, 2, 1, 1, 0);
  check_embed(9, 3, 37, 40, 1); /* out rows wider than E: a view of a concat */
  check_embed(64, 65, 64, 64, 0);
}

static void check_embed_grad(int64_t npos, int64_t V, int64_t E, int tt)
{
  char sym[32], err[512], what[128];
  snprintf(what, sizeof what, "embed_grad npos=%lld V=%lld E=%lld tt=%d", (long long)npos, (long long)V,
           (long long)E, tt);
  rs = (uint64_t)(npos * 37 + V * 3 + E + tt);
  Run R = {.tt = tt};
  Addr ids = slot(&R, npos, 1), dout = slot(&R, npos * E, E), dw = slot(&R, V * E, E);
  for (int64_t p = 0; p < npos; p++)
    *eli(&R, ids, p) = (int32_t)((p * p + 1) % V); /* repeated ids */
  output(&R, dw, V * E);
  LLVMModuleRef mod = newmod(sym, sizeof sym);
  KernFn f =
      finish(mod, sym, mk_embed_grad(jit_context(J), mod, sym, npos, V, E, ids, dout, dw, err, sizeof err), err);
  run(&R, f, E, 0, what);
  double *ref = malloc(sizeof(double) * (size_t)(V * E));
  for (int64_t v = 0; v < V; v++)
    for (int64_t e = 0; e < E; e++)
      ref[v * E + e] = init(&R, dw, v, e);
  for (int64_t p = 0; p < npos; p++)
    for (int64_t e = 0; e < E; e++)
      ref[*eli(&R, ids, p) * E + e] += init(&R, dout, p, e);
  CHECK_REL(&R, dw, V, E, ref, what);
  free(ref);
  run_free(&R);
}

Test(mkernels, embed_grad)
{
  check_embed_grad(11, 4, 13, 0);
  check_embed_grad(1, 2, 1, 0);
  check_embed_grad(50, 7, 37, 1);
  check_embed_grad(300, 65, 64, 0);
}

/* ---- softmax and cross-entropy ------------------------------------------------ */

enum {
  SM_BIAS = 1, SM_LSE = 2, SM_PROBS = 4, SM_NLL = 8, SM_DZ = 16, SM_INPLACE = 32, /* dz over z */
  SM_IGNORE = 64, SM_ALLIGN = 128, SM_TT = 256,
};

static void check_softmax(int64_t npos, int64_t K, int fl)
{
  char sym[32], err[512], what[128];
  snprintf(what, sizeof what, "softmax npos=%lld K=%lld flags=%#x", (long long)npos, (long long)K, fl);
  rs = (uint64_t)(npos * 131 + K * 17 + fl);
  Run R = {.tt = !!(fl & SM_TT)};
  long ignore = -100;
  Addr z = slot(&R, npos * K, K);
  Addr bias = fl & SM_BIAS ? slot(&R, K, 0) : addr_none();
  Addr lse = fl & SM_LSE ? slot(&R, npos, 1) : addr_none();
  Addr probs = fl & SM_PROBS ? slot(&R, npos * K, K) : addr_none();
  int hastgt = !!(fl & (SM_NLL | SM_DZ));
  Addr tgt = hastgt ? slot(&R, npos, 1) : addr_none();
  Addr nll = fl & SM_NLL ? slot(&R, npos, 1) : addr_none();
  Addr dz = fl & SM_INPLACE ? z : fl & SM_DZ ? slot(&R, npos * K, K) : addr_none();
  Addr scale = fl & SM_DZ ? slot(&R, 1, 0) : addr_none();
  /* logits over a wider range than [-1, 1) */
  for (int64_t p = 0; p < npos; p++)
    for (int64_t k = 0; k < K; k++)
      *el(&R, z, p, k) *= 4;
  if (fl & SM_DZ)
    *el(&R, scale, 0, 0) = 0.37f;
  for (int64_t p = 0; hastgt && p < npos; p++) {
    int ign = fl & SM_ALLIGN || (fl & SM_IGNORE && p % 3 == 1);
    *eli(&R, tgt, p) = ign ? (int32_t)ignore : (int32_t)((p * 5 + 2) % K);
  }
  if (!(fl & SM_INPLACE) && (fl & SM_BIAS))
    output(&R, z, npos * K);
  if (fl & SM_INPLACE)
    output(&R, z, npos * K);
  if (fl & SM_LSE)
    output(&R, lse, npos);
  if (fl & SM_PROBS)
    output(&R, probs, npos * K);
  if (fl & SM_NLL)
    output(&R, nll, npos);
  if ((fl & SM_DZ) && !(fl & SM_INPLACE))
    output(&R, dz, npos * K);

  LLVMModuleRef mod = newmod(sym, sizeof sym);
  int rc = mk_softmax(jit_context(J), mod, sym, npos, K, z, bias, lse, probs, tgt, !!(fl & (SM_IGNORE | SM_ALLIGN)),
                      ignore, nll, dz, scale, err, sizeof err);
  KernFn f = finish(mod, sym, rc, err);
  run(&R, f, npos, 0, what);

  double *rz = malloc(sizeof(double) * (size_t)(npos * K)), *rp = malloc(sizeof(double) * (size_t)(npos * K));
  double *rd = malloc(sizeof(double) * (size_t)(npos * K)), *rl = malloc(sizeof(double) * (size_t)npos);
  double *rn = malloc(sizeof(double) * (size_t)npos);
  for (int64_t p = 0; p < npos; p++) {
    double mx = -INFINITY, sum = 0;
    for (int64_t k = 0; k < K; k++) {
      float zf = init(&R, z, p, k);
      if (fl & SM_BIAS)
        zf = zf + init(&R, bias, 0, k); /* in float, as the kernel */
      rz[p * K + k] = zf;
      mx = fmax(mx, zf);
    }
    for (int64_t k = 0; k < K; k++)
      sum += exp(rz[p * K + k] - mx);
    rl[p] = mx + log(sum);
    int64_t y = hastgt ? *eli(&R, tgt, p) : -1;
    int ign = hastgt && y == ignore && (fl & (SM_IGNORE | SM_ALLIGN));
    rn[p] = ign || !hastgt ? 0 : rl[p] - rz[p * K + y];
    for (int64_t k = 0; k < K; k++) {
      rp[p * K + k] = exp(rz[p * K + k] - rl[p]);
      rd[p * K + k] = ign ? 0 : (rp[p * K + k] - (k == y)) * 0.37f;
    }
  }
  if ((fl & SM_BIAS) && !(fl & SM_INPLACE))
    for (int64_t p = 0; p < npos; p++)
      for (int64_t k = 0; k < K; k++)
        cr_assert_eq(*el(&R, z, p, k), (float)rz[p * K + k], "%s: z + bias at [%lld, %lld]", what, (long long)p,
                     (long long)k);
  if (fl & SM_LSE)
    CHECK_REL(&R, lse, npos, 1, rl, what);
  if (fl & SM_PROBS)
    CHECK_REL(&R, probs, npos, K, rp, what);
  if (fl & SM_NLL)
    CHECK_REL(&R, nll, npos, 1, rn, what);
  if (fl & SM_DZ)
    CHECK_REL(&R, dz, npos, K, rd, what);
  if (fl & SM_ALLIGN) /* exact zeros */
    for (int64_t p = 0; p < npos; p++) {
      if (fl & SM_NLL)
        cr_assert_eq(*el(&R, nll, p, 0), 0.0f, "%s: nll[%lld] ignored", what, (long long)p);
      for (int64_t k = 0; fl & SM_DZ && k < K; k++)
        cr_assert_eq(*el(&R, dz, p, k), 0.0f, "%s: dz[%lld, %lld] ignored", what, (long long)p, (long long)k);
    }
  free(rz), free(rp), free(rd), free(rl), free(rn);
  run_free(&R);
}

static const int64_t classes[] = {1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 65, 256, 300};

Test(mkernels, softmax_forward)
{
  for (size_t i = 0; i < sizeof classes / sizeof classes[0]; i++) {
    check_softmax(5, classes[i], SM_BIAS | SM_PROBS);
    check_softmax(4, classes[i], SM_LSE | SM_NLL);
    check_softmax(7, classes[i], SM_BIAS | SM_LSE | SM_PROBS | SM_NLL | SM_IGNORE);
  }
  check_softmax(1, 2, SM_PROBS); /* V = 2, one position */
  check_softmax(6, 65, SM_BIAS | SM_PROBS | SM_NLL | SM_TT);
}

Test(mkernels, softmax_grad)
{
  for (size_t i = 0; i < sizeof classes / sizeof classes[0]; i++) {
    check_softmax(5, classes[i], SM_BIAS | SM_NLL | SM_DZ);
    check_softmax(7, classes[i], SM_BIAS | SM_NLL | SM_DZ | SM_INPLACE | SM_IGNORE);
    check_softmax(4, classes[i], SM_PROBS | SM_DZ | SM_IGNORE);
  }
  check_softmax(6, 9, SM_BIAS | SM_LSE | SM_PROBS | SM_NLL | SM_DZ | SM_IGNORE | SM_TT);
  check_softmax(5, 17, SM_BIAS | SM_NLL | SM_DZ | SM_INPLACE | SM_TT);
}

Test(mkernels, softmax_all_ignored)
{
  check_softmax(5, 2, SM_NLL | SM_DZ | SM_ALLIGN);
  check_softmax(4, 19, SM_BIAS | SM_PROBS | SM_NLL | SM_DZ | SM_INPLACE | SM_ALLIGN);
}

/* xent_loss (scale, before the softmax), softmax (nll and dz), xent_loss
 * (the loss): the mean cross-entropy and its gradient; ign: which positions
 * are ignored (0 none, 1 some, 2 all). */
static void check_xent(int64_t npos, int64_t K, int ign, int withdloss, int tt)
{
  char s1[32], s2[32], s3[32], err[512], what[128];
  snprintf(what, sizeof what, "xent npos=%lld K=%lld ign=%d dloss=%d tt=%d", (long long)npos, (long long)K, ign,
           withdloss, tt);
  rs = (uint64_t)(npos * 7 + K + ign * 1000 + withdloss + tt * 10);
  Run R = {.tt = tt};
  long ignore = 3;
  Addr z = slot(&R, npos * K, K), bias = slot(&R, K, 0), tgt = slot(&R, npos, 1), nll = slot(&R, npos, 1);
  Addr loss = slot(&R, 1, 0), dloss = withdloss ? slot(&R, 1, 0) : addr_none(), scale = slot(&R, 1, 0);
  Addr dz = slot(&R, npos * K, K);
  if (withdloss)
    *el(&R, dloss, 0, 0) = 2.5f;
  int64_t count = 0;
  for (int64_t p = 0; p < npos; p++) {
    int ig = ign == 2 || (ign == 1 && p % 4 == 0);
    int32_t y = (int32_t)((p * 3 + 1) % K);
    if (y == ignore)
      y = 0;
    *eli(&R, tgt, p) = ig ? (int32_t)ignore : y;
    count += !ig;
  }
  output(&R, z, npos * K);
  output(&R, nll, npos);
  output(&R, loss, 1);
  output(&R, scale, 1);
  output(&R, dz, npos * K);
  LLVMModuleRef mod = newmod(s1, sizeof s1);
  KernFn fscale = finish(mod, s1,
                         mk_xent_loss(jit_context(J), mod, s1, npos, tgt, 1, ignore, addr_none(), addr_none(), dloss,
                                      scale, err, sizeof err),
                         err);
  mod = newmod(s2, sizeof s2);
  KernFn fsm = finish(mod, s2,
                      mk_softmax(jit_context(J), mod, s2, npos, K, z, bias, addr_none(), addr_none(), tgt, 1, ignore,
                                 nll, dz, scale, err, sizeof err),
                      err);
  mod = newmod(s3, sizeof s3);
  KernFn floss = finish(
      mod, s3,
      mk_xent_loss(jit_context(J), mod, s3, npos, tgt, 1, ignore, nll, loss, dloss, addr_none(), err, sizeof err),
      err);
  float *orig[MAXSLOT];
  snapshot(&R, orig);
  run(&R, fscale, 1, 0, what);
  run(&R, fsm, npos, 0, what);
  run(&R, floss, 1, 0, what);
  for (int s = 0; s < R.n; s++) /* compare with the values before the first kernel */
    free(R.init[s]), R.init[s] = orig[s];
  double g = withdloss ? 2.5 : 1, total = 0;
  double *rd = malloc(sizeof(double) * (size_t)(npos * K));
  for (int64_t p = 0; p < npos; p++) {
    int32_t y = *eli(&R, tgt, p);
    double mx = -INFINITY, sum = 0, zz[512];
    for (int64_t k = 0; k < K; k++)
      zz[k] = (float)(init(&R, z, p, k) + init(&R, bias, 0, k)), mx = fmax(mx, zz[k]);
    for (int64_t k = 0; k < K; k++)
      sum += exp(zz[k] - mx);
    double lse = mx + log(sum);
    if (y != ignore)
      total += lse - zz[y];
    for (int64_t k = 0; k < K; k++)
      rd[p * K + k] = y == ignore ? 0 : g * (exp(zz[k] - lse) - (k == y)) / (double)count;
  }
  double rloss = count ? total / (double)count : 0;
  float l = *el(&R, loss, 0, 0);
  cr_assert(fabs(l - rloss) <= 1e-5 * fmax(fabs(rloss), 1e-6), "%s: loss %.9g, ref %.9g", what, l, rloss);
  CHECK_REL(&R, dz, npos, K, rd, what);
  if (!count) {
    cr_assert_eq(l, 0.0f, "%s: loss with no counted position", what);
    cr_assert_eq(*el(&R, scale, 0, 0), 0.0f, "%s: scale with no counted position", what);
    for (int64_t e = 0; e < npos * K; e++)
      cr_assert_eq(*el(&R, dz, 0, e), 0.0f, "%s: dz[%lld]", what, (long long)e);
  }
  free(rd);
  run_free(&R);
}

Test(mkernels, xent_loss)
{
  check_xent(9, 5, 0, 0, 0);
  check_xent(13, 65, 1, 1, 0);
  check_xent(6, 2, 1, 0, 1);
  check_xent(7, 300, 1, 1, 1);
  check_xent(5, 11, 2, 1, 0); /* every position ignored: loss 0, dz 0 */
  check_xent(1, 2, 2, 0, 1);
}

/* ---- softmax Jacobian ----------------------------------------------------------- */

static void check_jvp(int64_t npos, int64_t K, int bcast, int tt)
{
  char sym[32], err[512], what[128];
  snprintf(what, sizeof what, "softmax_jvp npos=%lld K=%lld bcast=%d tt=%d", (long long)npos, (long long)K, bcast,
           tt);
  rs = (uint64_t)(npos * 3 + K * 11 + bcast + tt);
  Run R = {.tt = tt};
  Addr pr = slot(&R, npos * K, K), dp = slot(&R, bcast ? K : npos * K, bcast ? 0 : K), dz = slot(&R, npos * K, K);
  for (int64_t p = 0; p < npos; p++) { /* a probability row */
    double s = 0;
    for (int64_t k = 0; k < K; k++)
      s += *el(&R, pr, p, k) = (float)exp(2 * uni());
    for (int64_t k = 0; k < K; k++)
      *el(&R, pr, p, k) = (float)(*el(&R, pr, p, k) / s);
  }
  output(&R, dz, npos * K);
  LLVMModuleRef mod = newmod(sym, sizeof sym);
  KernFn f = finish(mod, sym, mk_softmax_jvp(jit_context(J), mod, sym, npos, K, pr, dp, dz, err, sizeof err), err);
  run(&R, f, npos, 0, what);
  double *ref = malloc(sizeof(double) * (size_t)(npos * K));
  for (int64_t p = 0; p < npos; p++) {
    double s = 0;
    for (int64_t k = 0; k < K; k++)
      s += (double)init(&R, pr, p, k) * init(&R, dp, p, k);
    for (int64_t k = 0; k < K; k++)
      ref[p * K + k] = init(&R, dz, p, k) + init(&R, pr, p, k) * (init(&R, dp, p, k) - s);
  }
  CHECK_REL(&R, dz, npos, K, ref, what);
  free(ref);
  run_free(&R);
}

Test(mkernels, softmax_jvp)
{
  for (size_t i = 0; i < sizeof classes / sizeof classes[0]; i++)
    check_jvp(5, classes[i], 0, 0);
  check_jvp(4, 13, 1, 0); /* dp broadcast (ld 0) */
  check_jvp(6, 33, 0, 1);
}

/* The 4-wide path (mk_portable), the one hosts without AVX2 get. */
Test(mkernels, softmax_portable)
{
  cr_assert_eq(mk_portable(1), 0);
  static const int64_t kk[] = {1, 3, 4, 5, 8, 13, 65};
  for (size_t i = 0; i < sizeof kk / sizeof kk[0]; i++) {
    check_softmax(5, kk[i], SM_BIAS | SM_LSE | SM_PROBS | SM_NLL | SM_IGNORE);
    check_softmax(6, kk[i], SM_BIAS | SM_NLL | SM_DZ | SM_INPLACE | SM_IGNORE | SM_TT);
    check_jvp(4, kk[i], 0, 0);
  }
  cr_assert_eq(mk_portable(0), 1);
}

/* ---- column sums, axpy, sum, broadcast ------------------------------------------ */

/* With two, the same sums into a second output too (each added to its own
 * values with acc). */
static void check_colsum(int64_t nrows, int64_t n, int acc, int tt, int two)
{
  char sym[32], err[512], what[128];
  snprintf(what, sizeof what, "colsum nrows=%lld n=%lld acc=%d tt=%d two=%d", (long long)nrows, (long long)n, acc,
           tt, two);
  rs = (uint64_t)(nrows * 5 + n * 3 + acc + tt + 7 * two);
  Run R = {.tt = tt};
  Addr x = slot(&R, nrows * (n + 2), n + 2), out = slot(&R, n, 1), out2 = two ? slot(&R, n, 1) : addr_none();
  output(&R, out, n);
  if (two)
    output(&R, out2, n);
  LLVMModuleRef mod = newmod(sym, sizeof sym);
  KernFn f =
      finish(mod, sym, mk_colsum(jit_context(J), mod, sym, nrows, n, x, out, out2, acc, err, sizeof err), err);
  run(&R, f, n, 0, what);
  double *ref = malloc(sizeof(double) * (size_t)n);
  for (int k = 0; k <= two; k++) {
    Addr o = k ? out2 : out;
    for (int64_t e = 0; e < n; e++) {
      ref[e] = acc ? init(&R, o, e, 0) : 0;
      for (int64_t r = 0; r < nrows; r++)
        ref[e] += init(&R, x, r, e);
    }
    CHECK_REL(&R, o, n, 1, ref, what);
  }
  free(ref);
  run_free(&R);
}

Test(mkernels, colsum)
{
  check_colsum(1, 1, 0, 0, 0);
  check_colsum(5, 13, 1, 0, 0);
  check_colsum(300, 300, 0, 0, 0); /* more than one block of columns */
  check_colsum(17, 129, 1, 1, 0);
  check_colsum(2048, 65, 0, 0, 0);
  check_colsum(7, 300, 1, 0, 1); /* two outputs: an LSTM's b_ih and b_hh */
  check_colsum(40, 17, 0, 1, 1);
}

enum { AX_X = 1, AX_X2 = 2, AX_ACC = 4, AX_TT = 8 };

static void check_axpy(int64_t nrows, int64_t n, float alpha, int fl)
{
  char sym[32], err[512], what[128];
  snprintf(what, sizeof what, "axpy nrows=%lld n=%lld alpha=%g flags=%d", (long long)nrows, (long long)n, alpha, fl);
  rs = (uint64_t)(nrows * 5 + n * 3 + fl);
  Run R = {.tt = !!(fl & AX_TT)};
  int64_t ldy = n + 3; /* y a view into wider rows */
  Addr x = fl & AX_X ? slot(&R, nrows * n, n) : addr_none();
  Addr x2 = fl & AX_X2 ? slot(&R, n, 0) : addr_none(); /* broadcast */
  Addr y = slot(&R, nrows * ldy, ldy);
  output(&R, y, nrows * ldy);
  LLVMModuleRef mod = newmod(sym, sizeof sym);
  KernFn f = finish(
      mod, sym, mk_axpy(jit_context(J), mod, sym, nrows, n, alpha, x, x2, y, !!(fl & AX_ACC), err, sizeof err), err);
  run(&R, f, nrows, 0, what);
  for (int64_t r = 0; r < nrows; r++)
    for (int64_t e = 0; e < ldy; e++) {
      float want = init(&R, y, r, e);
      if (e < n) {
        float v = fl & AX_X ? alpha * init(&R, x, r, e) : alpha;
        if (fl & AX_X2)
          v = v + init(&R, x2, r, e);
        want = fl & AX_ACC ? want + v : v;
      }
      cr_assert(memcmp(el(&R, y, r, e), &want, sizeof want) == 0, "%s: y[%lld, %lld] = %.9g, want %.9g", what,
                (long long)r, (long long)e, *el(&R, y, r, e), want);
    }
  run_free(&R);
}

Test(mkernels, axpy)
{
  for (int fl = 0; fl < 16; fl++) {
    check_axpy(4, 13, 0.5f, fl); /* fl without AX_X: a fill */
    check_axpy(1, 1, 1.0f, fl);
    check_axpy(7, 37, -2.0f, fl);
  }
}

static void check_sum(int64_t nrows, int64_t n, int tt)
{
  char s1[32], s2[32], err[512], what[128];
  snprintf(what, sizeof what, "sum nrows=%lld n=%lld tt=%d", (long long)nrows, (long long)n, tt);
  rs = (uint64_t)(nrows * 5 + n + tt);
  Run R = {.tt = tt};
  Addr x = slot(&R, nrows * n, n), y = slot(&R, 1, 0);
  output(&R, y, 1);
  LLVMModuleRef mod = newmod(s1, sizeof s1);
  KernFn f = finish(mod, s1, mk_sum(jit_context(J), mod, s1, nrows, n, x, y, err, sizeof err), err);
  run(&R, f, 1, 0, what);
  double ref = 0;
  for (int64_t r = 0; r < nrows; r++)
    for (int64_t e = 0; e < n; e++)
      ref += init(&R, x, r, e);
  CHECK_REL(&R, y, 1, 1, &ref, what);
  run_free(&R);

  /* its backward: x += y[0] */
  Run B = {.tt = tt};
  x = slot(&B, nrows * n, n), y = slot(&B, 1, 0);
  output(&B, x, nrows * n);
  mod = newmod(s2, sizeof s2);
  f = finish(mod, s2, mk_bcast_acc(jit_context(J), mod, s2, nrows, n, y, x, err, sizeof err), err);
  run(&B, f, nrows, 0, what);
  for (int64_t r = 0; r < nrows; r++)
    for (int64_t e = 0; e < n; e++) {
      float want = init(&B, x, r, e) + init(&B, y, 0, 0);
      cr_assert(memcmp(el(&B, x, r, e), &want, sizeof want) == 0, "%s: bcast_acc [%lld, %lld]", what, (long long)r,
                (long long)e);
    }
  run_free(&B);
}

Test(mkernels, sum_and_bcast)
{
  check_sum(1, 1, 0);
  check_sum(3, 37, 0);
  check_sum(64, 129, 1);
}

/* ---- GEMM ------------------------------------------------------------------------ */

/* pack (panels), then rows, column panels and self-packing columns from the
 * same C: identical bits, and within the bound of a double reference. */
static void check_gemm(int64_t M, int64_t N, int64_t K, int flags, int tt)
{
  char sp[32], sr[32], sc[32], sx[32], err[1024], what[128];
  snprintf(what, sizeof what, "gemm M=%lld N=%lld K=%lld flags=%d tt=%d", (long long)M, (long long)N, (long long)K,
           flags, tt);
  rs = (uint64_t)(M * 1009 + N * 31 + K + flags * 7 + tt);
  GemmSpec s = {M, N, K, 0, 0, 0, flags};
  s.lda = (flags & GEMM_AT ? M : K) + (M % 2);
  s.ldb = (flags & GEMM_BT ? K : N) + (N % 3 == 1);
  s.ldc = N + 1;
  int64_t arows = flags & GEMM_AT ? K : M, brows = flags & GEMM_BT ? N : K;
  Run R = {.tt = tt};
  Addr a = slot(&R, arows * s.lda, s.lda), b = slot(&R, brows * s.ldb, s.ldb), c = slot(&R, M * s.ldc, s.ldc);
  int64_t np = gemm_npanels(&s);
  Addr pack = slot(&R, (int64_t)gemm_packsize(&s), 0);
  size_t scr[4];
  KernFn f[4];
  char *syms[4] = {sp, sr, sc, sx};
  for (int mode = MK_PACK; mode <= MK_COLS; mode++) {
    LLVMModuleRef mod = newmod(syms[mode], 32);
    int rc = mk_gemm(jit_context(J), mod, NULL, syms[mode], &s, mode, mode == MK_PACK ? addr_none() : a,
                     mode == MK_PACK || mode == MK_COLS ? b : addr_none(), mode == MK_PACK ? addr_none() : c,
                     mode == MK_COLS ? addr_none() : pack, &scr[mode], err, sizeof err);
    f[mode] = finish(mod, syms[mode], rc, err);
  }
  output(&R, pack, (int64_t)gemm_packsize(&s));
  run(&R, f[MK_PACK], np, scr[MK_PACK], what);
  output(&R, c, M * s.ldc);
  float *c0 = malloc(sizeof(float) * (size_t)R.len[c.slot]);
  memcpy(c0, R.buf[c.slot], sizeof(float) * (size_t)R.len[c.slot]);
  float *results[3];
  for (int mode = MK_ROWS; mode <= MK_COLS; mode++) {
    memcpy(R.buf[c.slot], c0, sizeof(float) * (size_t)R.len[c.slot]);
    run(&R, f[mode], mode == MK_ROWS ? M : np, scr[mode], what);
    results[mode - 1] = malloc(sizeof(float) * (size_t)R.len[c.slot]);
    memcpy(results[mode - 1], R.buf[c.slot], sizeof(float) * (size_t)R.len[c.slot]);
  }
  for (int i = 1; i < 3; i++)
    cr_assert(memcmp(results[0], results[i], sizeof(float) * (size_t)R.len[c.slot]) == 0,
              "%s: mode %d differs from rows", what, i + 1);
  double maxerr = 0;
  for (int64_t i = 0; i < M; i++)
    for (int64_t j = 0; j < N; j++) {
      double ref = flags & GEMM_ACC ? init(&R, c, i, j) : 0;
      for (int64_t k = 0; k < K; k++) {
        double av = flags & GEMM_AT ? init(&R, a, k, i) : init(&R, a, i, k);
        double bv = flags & GEMM_BT ? init(&R, b, j, k) : init(&R, b, k, j);
        ref += av * bv;
      }
      maxerr = fmax(maxerr, fabs(*el(&R, c, i, j) - ref));
    }
  cr_assert(maxerr <= 1e-6 * (double)(K + 1), "%s: max |C - ref| = %.3g", what, maxerr);
  for (int i = 0; i < 3; i++)
    free(results[i]);
  free(c0);
  run_free(&R);
}

Test(mkernels, gemm)
{
  static const int64_t shapes[][3] = {{1, 1, 1}, {7, 13, 17}, {13, 33, 1}, {5, 17, 300}, {33, 40, 129}, {2, 9, 3}};
  /* two of the 8 combinations of GEMM_ACC, GEMM_BT, GEMM_AT per shape: all 8 over the shapes */
  for (int i = 0; i < (int)(sizeof shapes / sizeof shapes[0]); i++)
    for (int v = 0; v < 2; v++) {
      int c = (2 * i + 5 * v) % 8;
      int fl = (c & 1 ? GEMM_ACC : 0) | (c & 2 ? GEMM_BT : 0) | (c & 4 ? GEMM_AT : 0);
      check_gemm(shapes[i][0], shapes[i][1], shapes[i][2], fl, (i + v) % 2);
    }
  check_gemm(7, 13, 11, GEMM_PORTABLE | GEMM_BT, 1);
}

/* GEMMs shared by spec (gemm_share_fn), here across two modules as a
 * compile's modules call them: the second module's kernels declare the
 * first's functions, which alone stay external, and compute the same bits.
 * A pack whose spec differs only in M, lda, ldc, GEMM_ACC and GEMM_AT is the
 * same pack. */
Test(mkernels, gemm_shared)
{
  char s0[32], s1[32], sp[32], sq[32], err[1024], name[64];
  GemmSpec s = {.M = 13, .N = 37, .K = 19, .lda = 19, .ldb = 19, .ldc = 40, .flags = GEMM_BT};
  GemmSpec s2 = s; /* the same pack */
  s2.M = 1, s2.lda = 21, s2.ldc = 37, s2.flags |= GEMM_ACC | GEMM_AT;
  Run R = {.tt = 0};
  Addr a = slot(&R, s.M * s.lda, s.lda), b = slot(&R, s.N * s.ldb, s.ldb), c = slot(&R, s.M * s.ldc, s.ldc);
  Addr pack = slot(&R, (int64_t)gemm_packsize(&s), 0);
  Arena *ar = arena_new();
  GemmShare *sh = gemm_share_new(ar);
  size_t scr[4];
  LLVMModuleRef m0 = newmod(s0, sizeof s0), m1 = newmod(s1, sizeof s1);
  LLVMModuleRef mp = newmod(sp, sizeof sp), mq = newmod(sq, sizeof sq);
  LLVMContextRef cx = jit_context(J);
  cr_assert_eq(mk_gemm(cx, m0, sh, s0, &s, MK_ROWS, a, addr_none(), c, pack, &scr[0], err, sizeof err), RNNC_OK,
               "%s", err);
  cr_assert_eq(mk_gemm(cx, mp, sh, sp, &s, MK_PACK, addr_none(), b, addr_none(), pack, &scr[2], err, sizeof err),
               RNNC_OK, "%s", err);
  cr_assert_eq(mk_gemm(cx, m1, sh, s1, &s, MK_ROWS, a, addr_none(), c, pack, &scr[1], err, sizeof err), RNNC_OK,
               "%s", err);
  cr_assert_eq(mk_gemm(cx, mq, sh, sq, &s2, MK_PACK, addr_none(), b, addr_none(), pack, &scr[3], err, sizeof err),
               RNNC_OK, "%s", err);
  snprintf(name, sizeof name, "%s.g_rows", s0);
  LLVMValueRef def = LLVMGetNamedFunction(m0, name), use = LLVMGetNamedFunction(m1, name);
  cr_assert(def && !LLVMIsDeclaration(def), "%s is not defined where it was first asked for", name);
  cr_assert(use && LLVMIsDeclaration(use), "%s is not declared in the second module", name);
  cr_assert_eq(LLVMGetLinkage(def), LLVMExternalLinkage);
  cr_assert(gemm_share_exported(sh, m0, name), "%s is not exported", name);
  snprintf(name, sizeof name, "%s.g_colsp", s0);
  cr_assert_eq(LLVMGetLinkage(LLVMGetNamedFunction(m0, name)), LLVMInternalLinkage, "%s is external", name);
  cr_assert(!gemm_share_exported(sh, m0, name), "%s is exported", name);
  snprintf(name, sizeof name, "%s.g_rows", s1);
  cr_assert_null(LLVMGetNamedFunction(m1, name), "the second module generated %s", name);
  snprintf(name, sizeof name, "%s.g_pack", sp);
  LLVMValueRef pk = LLVMGetNamedFunction(mq, name);
  cr_assert(pk && LLVMIsDeclaration(pk), "the second pack is not %s", name);
  /* a bad spec: an error, nothing shared */
  GemmSpec bad = s;
  bad.ldc = 3;
  LLVMValueRef f;
  cr_assert_eq(gemm_share_fn(sh, cx, m1, "bad", &bad, "_rows", &f, err, sizeof err), RNNC_ESHAPE);
  cr_assert_str_eq(err, "gemm 'bad': ldc = 3 is less than a row's 37 floats (C is [M, N])");
  cr_assert_null(f);
  KernFn f0 = finish(m0, s0, RNNC_OK, ""), fp = finish(mp, sp, RNNC_OK, "");
  KernFn f1 = finish(m1, s1, RNNC_OK, ""), fq = finish(mq, sq, RNNC_OK, "");
  /* each kernel from the same buffers: the same bits */
  float *before[MAXSLOT], *first[MAXSLOT];
  output(&R, pack, (int64_t)gemm_packsize(&s));
  snapshot(&R, before);
  run(&R, fp, gemm_npanels(&s), scr[2], "shared pack, first");
  snapshot(&R, first);
  restore(&R, before);
  run(&R, fq, gemm_npanels(&s), scr[3], "shared pack, second");
  cr_assert(memcmp(first[pack.slot], R.buf[pack.slot], sizeof(float) * (size_t)R.len[pack.slot]) == 0,
            "the packs differ");
  for (int i = 0; i < R.n; i++)
    free(before[i]), free(first[i]);
  output(&R, c, s.M * s.ldc);
  snapshot(&R, before);
  run(&R, f0, s.M, scr[0], "shared rows, first module");
  snapshot(&R, first);
  restore(&R, before);
  run(&R, f1, s.M, scr[1], "shared rows, second module");
  cr_assert(memcmp(first[c.slot], R.buf[c.slot], sizeof(float) * (size_t)R.len[c.slot]) == 0,
            "the products differ");
  for (int i = 0; i < R.n; i++)
    free(before[i]), free(first[i]);
  double ref = 0;
  for (int64_t k = 0; k < s.K; k++)
    ref += (double)init(&R, a, 5, k) * init(&R, b, 7, k);
  cr_assert_float_eq(*el(&R, c, 5, 7), ref, 1e-5, "C[5, 7] = %g, expected %g", *el(&R, c, 5, 7), ref);
  run_free(&R);
  arena_free(ar);
}

/* ---- sizes --------------------------------------------------------------------------- */

Test(mkernels, bad_sizes)
{
  char sym[32], err[512];
  Addr a = {0, 0, 0, 1}, none = addr_none();
  LLVMModuleRef mod = newmod(sym, sizeof sym);
  LLVMContextRef cx = jit_context(J);
  cr_assert_eq(mk_softmax(cx, mod, sym, 4, 0, a, none, none, a, none, 0, 0, none, none, none, err, sizeof err),
               RNNC_ESHAPE);
  cr_assert_str_eq(err, "kernel 'mk0': K = 0, must be at least 1");
  cr_assert_eq(mk_embed(cx, mod, sym, 0, 3, 4, a, a, a, err, sizeof err), RNNC_ESHAPE);
  cr_assert_str_eq(err, "kernel 'mk0': npos = 0, must be at least 1");
  cr_assert_eq(mk_colsum(cx, mod, sym, 3, -1, a, a, addr_none(), 0, err, sizeof err), RNNC_ESHAPE);
  cr_assert_str_eq(err, "kernel 'mk0': n = -1, must be at least 1");
  cr_assert_eq(mk_axpy(cx, mod, sym, 0, 3, 1, a, none, a, 0, err, sizeof err), RNNC_ESHAPE);
  cr_assert_str_eq(err, "kernel 'mk0': nrows = 0, must be at least 1");
  cr_assert_eq(LLVMGetFirstFunction(mod), NULL, "a failed generator added a function");
  LLVMDisposeModule(mod);
}
