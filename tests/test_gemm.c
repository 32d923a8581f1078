/* test_gemm.c — generated GEMMs (compiler/gemm.c) against a naive triple
 * loop in double: gemm_gen's whole-matrix functions, and gemm_gen2's
 * functions on sub-ranges, which must agree bitwise whatever the split.
 *
 * The check. A, B (and C's initial values, for GEMM_ACC) are drawn uniformly
 * in [-1, 1) (seeded); ref = Σ_k A[i, k] B[k, j] in double (+ C0[i, j]).
 * The error is max |C − ref| over all elements and must be at most
 *     1e-6 · (K + 1) · max|A| · max|B|
 * — float32 rounding of a K-term sum grows with K; the +1 covers the
 * accumulated C0. C is followed by a guard of canary floats, and so is the
 * pack scratch, which must survive (tails write nothing past their end).
 * Determinism: the same call twice, and sym_pack + sym_packed, must give
 * identical bits.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/Core.h>

#include "testutil.h"

typedef void (*GemmFn)(const float *A, const float *B, float *C, float *pack);
typedef void (*PackFn)(const float *B, float *pack);
typedef void (*PackedFn)(const float *A, float *pack, float *C);

enum { GUARD = 37 };
static const float CANARY = 12345.0f;

static uint64_t rs;
static double uni(void) /* [-1, 1), splitmix64 */
{
  uint64_t z = (rs += 0x9e3779b97f4a7c15u);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  z ^= z >> 31;
  return (double)(z >> 11) / 9007199254740992.0 * 2 - 1;
}

static Jit *newjit(void)
{
  Jit *j;
  char err[512];
  cr_assert_eq(jit_new(&j, err, sizeof err), RNNC_OK, "%s", err);
  return j;
}

static uintptr_t lookup(Jit *j, const char *sym)
{
  uintptr_t a;
  char err[1024];
  cr_assert_eq(jit_lookup(j, sym, &a, err, sizeof err), RNNC_OK, "%s", err);
  return a;
}

/* Generate, compile and check one GEMM; returns the max error / bound. */
static double check(Jit *j, int64_t M, int64_t N, int64_t K, int flags)
{
  char sym[64], err[1024];
  snprintf(sym, sizeof sym, "g%lldx%lldx%lld_%d", (long long)M, (long long)N, (long long)K, flags);
  LLVMModuleRef mod = LLVMModuleCreateWithNameInContext(sym, jit_context(j));
  cr_assert_eq(gemm_gen(jit_context(j), mod, sym, M, N, K, flags, err, sizeof err), RNNC_OK, "%s", err);
  cr_assert_eq(jit_add(j, mod, err, sizeof err), RNNC_OK, "%s", err);
  GemmFn f = (GemmFn)lookup(j, sym);
  char name[80];
  snprintf(name, sizeof name, "%s_pack", sym);
  PackFn pack = (PackFn)lookup(j, name);
  snprintf(name, sizeof name, "%s_packed", sym);
  PackedFn packed = (PackedFn)lookup(j, name);

  size_t np = gemm_pack_size(M, N, K);
  float *A = malloc(sizeof(float) * (size_t)(M * K)), *B = malloc(sizeof(float) * (size_t)(K * N));
  float *C0 = malloc(sizeof(float) * (size_t)(M * N));
  float *C = malloc(sizeof(float) * (size_t)(M * N + GUARD)), *C2 = malloc(sizeof(float) * (size_t)(M * N + GUARD));
  float *P = malloc(sizeof(float) * (np + GUARD));
  double *ref = malloc(sizeof(double) * (size_t)(M * N));
  cr_assert(A && B && C0 && C && C2 && P && ref);
  rs = (uint64_t)(M * 1000003 + N * 1009 + K * 7 + flags);
  double amax = 0, bmax = 0;
  for (int64_t i = 0; i < M * K; i++)
    A[i] = (float)uni(), amax = fmax(amax, fabs(A[i]));
  for (int64_t i = 0; i < K * N; i++)
    B[i] = (float)uni(), bmax = fmax(bmax, fabs(B[i]));
  for (int64_t i = 0; i < M * N; i++)
    C0[i] = (float)uni();
  for (int64_t i = 0; i < M; i++)
    for (int64_t n = 0; n < N; n++) {
      double s = flags & GEMM_ACC ? C0[i * N + n] : 0;
      for (int64_t k = 0; k < K; k++)
        s += (double)A[i * K + k] * (flags & GEMM_BT ? B[n * K + k] : B[k * N + n]);
      ref[i * N + n] = s;
    }
  /* without GEMM_ACC, C starts as canaries too: every element must be written */
  for (int run = 0; run < 2; run++) {
    float *c = run ? C2 : C;
    for (int64_t i = 0; i < M * N + GUARD; i++)
      c[i] = i < M * N && (flags & GEMM_ACC) ? C0[i] : CANARY;
    for (size_t i = 0; i < np + GUARD; i++)
      P[i] = CANARY;
    f(A, B, c, P);
    for (size_t i = np; i < np + GUARD; i++)
      cr_assert_eq(P[i], CANARY, "%s: pack[%zu] (size %zu) overwritten", sym, i, np);
  }
  for (int64_t i = M * N; i < M * N + GUARD; i++)
    cr_assert_eq(C[i], CANARY, "%s: C[%lld] past the end overwritten", sym, (long long)i);
  cr_assert(memcmp(C, C2, sizeof(float) * (size_t)(M * N)) == 0, "%s: two runs differ", sym);
  for (int64_t i = 0; i < M * N; i++)
    C2[i] = flags & GEMM_ACC ? C0[i] : CANARY;
  pack(B, P);
  packed(A, P, C2);
  cr_assert(memcmp(C, C2, sizeof(float) * (size_t)(M * N)) == 0, "%s: sym_pack + sym_packed differ from sym", sym);

  double maxerr = 0;
  int64_t at = 0;
  for (int64_t i = 0; i < M * N; i++) {
    double e = fabs(C[i] - ref[i]);
    if (!(e <= maxerr)) /* NaN too */
      maxerr = e, at = i;
  }
  double bound = 1e-6 * (double)(K + 1) * amax * bmax;
  cr_assert(maxerr <= bound, "%s: max |C - ref| = %.3g at [%lld, %lld] (C %.9g, ref %.9g), bound %.3g", sym, maxerr,
            (long long)(at / N), (long long)(at % N), C[at], ref[at], bound);
  free(A), free(B), free(C0), free(C), free(C2), free(P), free(ref);
  return maxerr / bound;
}

static const int64_t small[][3] = {
    {1, 1, 1},    {1, 17, 13},  {7, 1, 13},    {13, 17, 1},  {7, 13, 17},  {17, 33, 7},
    {33, 7, 33},  {6, 16, 256}, {5, 15, 257},  {12, 32, 513}, {2, 9, 3},   {121, 47, 300},
    {241, 24, 5}, {6, 8, 4},    {11, 31, 100}, {4, 4, 4},    {7, 20, 1100}, {7, 4100, 3}, {5, 9, 2100},
};

/* Edge and odd shapes (M, N, K of 1; 7, 13, 17, 33; tails in M, N and K
 * slices; more than one row block, k slice and column block), with every
 * combination of flags. */
Test(gemm, small_shapes_all_flags)
{
  Jit *j = newjit();
  double worst = 0;
  for (size_t s = 0; s < sizeof small / sizeof small[0]; s++)
    for (int flags = 0; flags < 4; flags++)
      worst = fmax(worst, check(j, small[s][0], small[s][1], small[s][2], flags));
  cr_log_info("small shapes: worst error %.3g of the bound", worst);
  jit_free(j);
}

/* The same on the portable path (4-wide vectors, fmuladd). */
Test(gemm, portable_path)
{
  int mr, nr;
  gemm_block(GEMM_PORTABLE, &mr, &nr);
  cr_assert_eq(mr, 6);
  cr_assert_eq(nr, 8);
  Jit *j = newjit();
  for (size_t s = 0; s < sizeof small / sizeof small[0]; s++)
    check(j, small[s][0], small[s][1], small[s][2], GEMM_PORTABLE | (s % 4 == 1 ? GEMM_BT : 0) | (s % 3 == 2));
  jit_free(j);
}

/* The benchmark shapes: C1's hoisted input projection over T·B = 2048 rows
 * ([2048, 64] x [64, 512]), C1's and C2's per-step GEMMs ([32, 128] x
 * [128, 512], [64, 512] x [512, 2048], two K slices). */
Test(gemm, benchmark_shapes)
{
  static const int64_t shapes[][3] = {{2048, 512, 64}, {32, 512, 128}, {64, 2048, 512}};
  Jit *j = newjit();
  for (size_t s = 0; s < 3; s++)
    for (int flags = 0; flags < 4; flags += 3) {
      double r = check(j, shapes[s][0], shapes[s][1], shapes[s][2], flags);
      cr_log_info("[%lld x %lld] x [%lld x %lld] flags %d: max error %.3g of the bound", (long long)shapes[s][0],
                  (long long)shapes[s][2], (long long)shapes[s][2], (long long)shapes[s][1], flags, r);
    }
  jit_free(j);
}

/* Sizes below 1 are a shape error with a message; nothing is added. */
Test(gemm, bad_sizes)
{
  Jit *j = newjit();
  char err[256];
  LLVMModuleRef mod = LLVMModuleCreateWithNameInContext("bad", jit_context(j));
  cr_assert_eq(gemm_gen(jit_context(j), mod, "bad", 4, 0, 3, 0, err, sizeof err), RNNC_ESHAPE);
  cr_assert_str_eq(err, "gemm 'bad': sizes M = 4, N = 0, K = 3 must be at least 1");
  cr_assert_eq(gemm_gen(jit_context(j), mod, "bad", (int64_t)1 << 30, (int64_t)1 << 30, 3, 0, err, sizeof err),
               RNNC_ESHAPE);
  cr_assert_str_eq(err, "gemm 'bad': sizes M = 1073741824, N = 1073741824, K = 3 are too large");
  cr_assert_null(LLVMGetFirstFunction(mod));
  LLVMDisposeModule(mod);
  jit_free(j);
}

/* ---- gemm_gen2: GEMMs on sub-ranges ----------------------------------------- */

typedef void (*Pack2Fn)(const float *B, float *pack, int64_t p0, int64_t p1);
typedef void (*RangeFn)(const float *A, const float *Bp, float *C, int64_t lo, int64_t hi, float *scratch);

/* A buffer of n floats + GUARD canaries, 64-byte aligned, filled with CANARY. */
static float *canaries(size_t n)
{
  size_t bytes = (sizeof(float) * (n + GUARD) + 63) / 64 * 64;
  float *p = aligned_alloc(64, bytes);
  cr_assert(p);
  for (size_t i = 0; i < n + GUARD; i++)
    p[i] = CANARY;
  return p;
}

static void guard_ok(const float *p, size_t n, const char *sym, const char *what)
{
  for (size_t i = n; i < n + GUARD; i++)
    cr_assert_eq(p[i], CANARY, "%s: %s[%zu] past its %zu floats overwritten", sym, what, i, n);
}

/* Up to 3 cut points splitting [0, n) into nparts non-empty ranges at
 * random places (cut[0] = 0, cut[nparts] = n; fewer parts when n is small). */
static int split(int64_t n, int nparts, int64_t *cut)
{
  if (nparts > n)
    nparts = (int)n;
  cut[0] = 0, cut[nparts] = n;
  for (int i = 1; i < nparts; i++) {
    int64_t lo = cut[i - 1] + 1, hi = n - (nparts - i); /* leave one for each later part */
    cut[i] = lo + (int64_t)((uni() + 1) / 2 * (double)(hi - lo + 1));
    if (cut[i] > hi)
      cut[i] = hi;
  }
  return nparts;
}

typedef struct Shape2 {
  int64_t M, N, K, pa, pb, pc; /* pa, pb, pc: leading dimension - row width */
} Shape2;

/* Generate sym's functions for s and check them: C from _rows over [0, M)
 * (B packed by one _pack call) against the double reference, then bitwise
 * against B packed in pieces, op(A) packed by _packa whole and in pieces,
 * _rows over rows split in 2 and 3 random parts, _colsp, _cols and _colspa
 * over panels split in 1, 2 and 3 parts,
 * and each function over 3 parts run at once on 3 threads (OpenMP).
 * C's padding columns (ldc > N) and every buffer's guard must survive.
 * Returns the max error / bound. */
static double check2(Jit *j, Shape2 sh, int flags)
{
  int64_t M = sh.M, N = sh.N, K = sh.K;
  int at = !!(flags & GEMM_AT), bt = !!(flags & GEMM_BT);
  GemmSpec s = {M, N, K, (at ? M : K) + sh.pa, (bt ? K : N) + sh.pb, N + sh.pc, flags};
  char sym[96], err[1024], name[128];
  snprintf(sym, sizeof sym, "h%lldx%lldx%lld_%lld_%lld_%lld_%d", (long long)M, (long long)N, (long long)K,
           (long long)s.lda, (long long)s.ldb, (long long)s.ldc, flags);
  LLVMModuleRef mod = LLVMModuleCreateWithNameInContext(sym, jit_context(j));
  cr_assert_eq(gemm_gen2(jit_context(j), mod, sym, &s, err, sizeof err), RNNC_OK, "%s", err);
  cr_assert_eq(jit_add(j, mod, err, sizeof err), RNNC_OK, "%s", err);
  snprintf(name, sizeof name, "%s_pack", sym);
  Pack2Fn pack = (Pack2Fn)lookup(j, name);
  snprintf(name, sizeof name, "%s_packa", sym);
  Pack2Fn packa = (Pack2Fn)lookup(j, name);
  RangeFn fn[4];
  const char *fname[4] = {"_rows", "_colsp", "_cols", "_colspa"};
  for (int f = 0; f < 4; f++) {
    snprintf(name, sizeof name, "%s%s", sym, fname[f]);
    fn[f] = (RangeFn)lookup(j, name);
  }

  int64_t arows = at ? K : M, brows = bt ? N : K, np = gemm_npanels(&s);
  size_t na = (size_t)(arows * s.lda), nb = (size_t)(brows * s.ldb), nc = (size_t)(M * s.ldc);
  size_t npk = gemm_packsize(&s), nsc = gemm_scratchsize(&s), napk = gemm_apacksize(&s);
  int mr, nr;
  gemm_block(flags, &mr, &nr);
  cr_assert_eq(np, (N + nr - 1) / nr);
  cr_assert_geq(npk, (size_t)(np * nr * K));
  float *A = canaries(na), *B = canaries(nb), *C0 = canaries(nc), *C = canaries(nc), *C2 = canaries(nc);
  float *P = canaries(npk), *P2 = canaries(npk), *S = canaries(nsc), *AP = canaries(napk), *AP2 = canaries(napk);
  double *ref = malloc(sizeof(double) * (size_t)(M * N));
  cr_assert(ref);
  rs = (uint64_t)(M * 1000003 + N * 1009 + K * 7 + flags * 31 + s.lda + s.ldb + s.ldc);
  /* padding elements (ld > width) are NaN: reading one would show */
  double amax = 0, bmax = 0;
  for (int64_t r = 0; r < arows; r++)
    for (int64_t c = 0; c < s.lda; c++)
      A[r * s.lda + c] = c < (at ? M : K) ? (float)uni() : NAN, amax = fmax(amax, fabs(A[r * s.lda + c]));
  for (int64_t r = 0; r < brows; r++)
    for (int64_t c = 0; c < s.ldb; c++)
      B[r * s.ldb + c] = c < (bt ? K : N) ? (float)uni() : NAN, bmax = fmax(bmax, fabs(B[r * s.ldb + c]));
  for (int64_t i = 0; i < M; i++)
    for (int64_t n = 0; n < s.ldc; n++)
      C0[i * s.ldc + n] = n < N && (flags & GEMM_ACC) ? (float)uni() : CANARY;
  for (int64_t i = 0; i < M; i++)
    for (int64_t n = 0; n < N; n++) {
      double sum = flags & GEMM_ACC ? C0[i * s.ldc + n] : 0;
      for (int64_t k = 0; k < K; k++)
        sum += (double)(at ? A[k * s.lda + i] : A[i * s.lda + k]) * (bt ? B[n * s.ldb + k] : B[k * s.ldb + n]);
      ref[i * N + n] = sum;
    }

  /* the reference run: one _pack, one _rows */
  pack(B, P, 0, np);
  guard_ok(P, npk, sym, "pack");
  memcpy(C, C0, sizeof(float) * nc);
  fn[0](A, P, C, 0, M, S);
  guard_ok(C, nc, sym, "C");
  guard_ok(S, nsc, sym, "scratch");
  double maxerr = 0;
  int64_t ati = 0, atn = 0;
  for (int64_t i = 0; i < M; i++)
    for (int64_t n = 0; n < s.ldc; n++) {
      if (n >= N) {
        cr_assert_eq(C[i * s.ldc + n], CANARY, "%s: C[%lld, %lld] (padding) written", sym, (long long)i, (long long)n);
        continue;
      }
      double e = fabs(C[i * s.ldc + n] - ref[i * N + n]);
      if (!(e <= maxerr)) /* NaN too */
        maxerr = e, ati = i, atn = n;
    }
  double bound = 1e-6 * (double)(K + 1) * amax * bmax;
  cr_assert(maxerr <= bound, "%s: max |C - ref| = %.3g at [%lld, %lld] (C %.9g, ref %.9g), bound %.3g", sym, maxerr,
            (long long)ati, (long long)atn, C[ati * s.ldc + atn], ref[ati * N + atn], bound);

  /* B packed in pieces: the same panels */
  int64_t cut[4];
  for (int parts = 2; parts <= 3; parts++) {
    int n = split(np, parts, cut);
    for (int q = n - 1; q >= 0; q--) /* in reverse: nothing depends on order */
      pack(B, P2, cut[q], cut[q + 1]);
    cr_assert(memcmp(P, P2, sizeof(float) * (npk + GUARD)) == 0, "%s: _pack in %d pieces differs", sym, n);
  }
  /* op(A) packed whole (_colspa's), by one call and in pieces cut at
   * multiples of the grain (MR rows) */
  int64_t ag = gemm_apack_grain(), nag = (M + ag - 1) / ag;
  packa(A, AP, 0, M);
  guard_ok(AP, napk, sym, "apack");
  for (int parts = 2; parts <= 3; parts++) {
    int n = split(nag, parts, cut);
    for (int q = n - 1; q >= 0; q--)
      packa(A, AP2, cut[q] * ag, cut[q + 1] == nag ? M : cut[q + 1] * ag);
    cr_assert(memcmp(AP, AP2, sizeof(float) * (napk + GUARD)) == 0, "%s: _packa in %d pieces differs", sym, n);
  }
  /* every function, every split: the same bits (padding and guards too) */
  const float *Aof[4] = {A, A, A, AP}; /* each function's A */
  for (int f = 0; f < 4; f++)
    for (int parts = 1; parts <= 3; parts++) {
      if (f == 0 && parts == 1)
        continue;
      for (int rep = 0; rep < (parts == 1 ? 1 : 2); rep++) {
        int n = split(f == 0 ? M : np, parts, cut);
        memcpy(C2, C0, sizeof(float) * nc);
        for (int q = 0; q < n; q++) {
          for (size_t i = 0; i < nsc; i++) /* each range as on a fresh thread */
            S[i] = CANARY;
          fn[f](Aof[f], f == 2 ? B : P, C2, cut[q], cut[q + 1], S);
          guard_ok(S, nsc, sym, "scratch");
        }
        if (memcmp(C, C2, sizeof(float) * (nc + GUARD))) {
          int64_t d = 0;
          while (!memcmp(&C[d], &C2[d], sizeof(float)))
            d++;
          cr_assert_fail("%s: %s over %d ranges (cuts %lld %lld %lld %lld) differs at [%lld, %lld]: %.9g vs %.9g",
                         sym, fname[f], n, (long long)cut[0], (long long)cut[1], (long long)cut[n > 1 ? 2 : 1],
                         (long long)cut[n], (long long)(d / s.ldc), (long long)(d % s.ldc), C[d], C2[d]);
        }
      }
    }
  /* the ranges at once, on 3 threads, each with its own scratch, as the
   * model runs them */
  float *S3[3] = {S, canaries(nsc), canaries(nsc)};
  for (int f = 0; f < 4; f++) {
    int n = split(f == 0 ? M : np, 3, cut);
    memcpy(C2, C0, sizeof(float) * nc);
#pragma omp parallel for num_threads(3) schedule(static, 1)
    for (int q = 0; q < n; q++)
      fn[f](Aof[f], f == 2 ? B : P, C2, cut[q], cut[q + 1], S3[q]);
    cr_assert(memcmp(C, C2, sizeof(float) * (nc + GUARD)) == 0, "%s: %s over %d ranges on %d threads differs", sym,
              fname[f], n, n);
    for (int q = 0; q < 3; q++)
      guard_ok(S3[q], nsc, sym, "scratch");
  }
  free(S3[1]), free(S3[2]);
  free(A), free(B), free(C0), free(C), free(C2), free(P), free(P2), free(S), free(AP), free(AP2), free(ref);
  return maxerr / bound;
}

/* Edge and odd shapes: sizes 1; M below, at and past MR and MC (120); N
 * below, at and past NR and past NCS (512) and NC (4096); K past KC (1024:
 * two and three slices); leading dimensions wider than the rows. */
static const Shape2 shapes2[] = {
    {1, 1, 1, 0, 0, 0},      {1, 17, 13, 3, 0, 1},  {7, 1, 13, 0, 2, 0},    {13, 17, 1, 1, 1, 1},
    {7, 13, 17, 0, 0, 0},    {17, 33, 7, 5, 0, 3},  {5, 15, 257, 0, 1, 0},  {6, 16, 64, 0, 0, 0},
    {12, 32, 33, 2, 2, 2},   {121, 47, 30, 1, 0, 0}, {125, 40, 9, 0, 3, 7}, {64, 100, 50, 0, 0, 0},
    {7, 20, 1100, 3, 1, 2},  {3, 21, 2100, 0, 0, 1}, {9, 530, 5, 0, 0, 0},   {5, 4100, 3, 1, 1, 1},
};

/* Every shape with every combination of GEMM_ACC, GEMM_BT and GEMM_AT. */
Test(gemm2, shapes_all_flags_all_splits)
{
  Jit *j = newjit();
  double worst = 0;
  for (size_t i = 0; i < sizeof shapes2 / sizeof shapes2[0]; i++)
    for (int flags = 0; flags < 4; flags++) {
      worst = fmax(worst, check2(j, shapes2[i], flags));
      worst = fmax(worst, check2(j, shapes2[i], flags | GEMM_AT));
    }
  cr_log_info("gemm_gen2 shapes: worst error %.3g of the bound", worst);
  jit_free(j);
}

/* The portable path (4-wide, fmuladd, NR = 8), every flag combination over
 * some of the shapes. */
Test(gemm2, portable_path)
{
  Jit *j = newjit();
  for (size_t i = 0; i < sizeof shapes2 / sizeof shapes2[0]; i += 2)
    check2(j, shapes2[i], GEMM_PORTABLE | (int)(i / 2 % 8) * GEMM_ACC);
  jit_free(j);
}

/* The model's shapes, scaled down where the double reference would be slow:
 * a forward input projection x · W^T (BT), per-step recurrent GEMMs of 1 to
 * 64 rows (BT), the backward dx = d · W, and the weight gradient d^T · x
 * (AT, K = T·B past two slices), accumulated (ACC) as the model does. */
Test(gemm2, model_shapes)
{
  static const struct {
    Shape2 s;
    int flags;
  } m[] = {
      {{256, 512, 128, 0, 0, 0}, GEMM_BT},           {{1, 512, 128, 0, 0, 0}, GEMM_BT},
      {{32, 512, 128, 0, 0, 0}, GEMM_BT | GEMM_ACC}, {{64, 2048, 512, 0, 0, 0}, GEMM_BT},
      {{256, 128, 512, 0, 0, 0}, 0},                 {{512, 64, 2100, 0, 0, 0}, GEMM_AT | GEMM_ACC},
      {{37, 300, 4, 0, 0, 0}, GEMM_BT},             {{512, 128, 2048, 0, 0, 0}, GEMM_AT},
  };
  Jit *j = newjit();
  for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
    double r = check2(j, m[i].s, m[i].flags);
    cr_log_info("[%lld x %lld x %lld] flags %d: max error %.3g of the bound", (long long)m[i].s.M, (long long)m[i].s.N,
                (long long)m[i].s.K, m[i].flags, r);
  }
  jit_free(j);
}

/* Whether gemm_gen2 for s put the micro-kernel named name into a module. */
static int has_kernel(Jit *j, GemmSpec s, const char *name)
{
  char err[512];
  LLVMModuleRef mod = LLVMModuleCreateWithNameInContext("k", jit_context(j));
  cr_assert_eq(gemm_gen2(jit_context(j), mod, "k", &s, err, sizeof err), RNNC_OK, "%s", err);
  int has = LLVMGetNamedFunction(mod, name) != NULL;
  LLVMDisposeModule(mod);
  return has;
}

/* With op(B) over 2^18 floats (K·N; larger than L2) the micro-kernels are
 * the variants that prefetch the next panel (`.pf`), below it the plain
 * ones; the prefetching kernels of every row count (M = 7: 6 + 1 rows, 11:
 * 6 + 4 + 1, 2: the 2-row kernel alone) and a partial last panel (N = 450,
 * 530) are right against the double reference, on every split. */
Test(gemm2, large_b_prefetching_kernels)
{
  Jit *j = newjit();
  if (irb_avx2_fma()) {
    cr_assert(has_kernel(j, (GemmSpec){7, 450, 600, 600, 600, 450, GEMM_BT}, "rnnc.gemm.k6x16.w8.pf"));
    cr_assert(has_kernel(j, (GemmSpec){7, 450, 600, 600, 600, 450, GEMM_BT}, "rnnc.gemm.k1x16.w8.pf"));
    cr_assert(!has_kernel(j, (GemmSpec){7, 450, 600, 600, 600, 450, GEMM_BT}, "rnnc.gemm.k6x16.w8"));
    cr_assert(!has_kernel(j, (GemmSpec){7, 512, 512, 512, 512, 512, GEMM_BT}, "rnnc.gemm.k6x16.w8.pf"),
              "K·N = 2^18 exactly: no prefetch");
    cr_assert(has_kernel(j, (GemmSpec){7, 512, 512, 512, 512, 512, GEMM_BT}, "rnnc.gemm.k6x16.w8"));
  }
  static const struct {
    Shape2 s;
    int flags;
  } m[] = {
      {{7, 450, 600, 0, 0, 0}, GEMM_BT | GEMM_ACC},
      {{11, 530, 520, 1, 2, 3}, GEMM_AT},
      {{2, 600, 450, 0, 0, 0}, 0},
  };
  for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
    check2(j, m[i].s, m[i].flags);
  jit_free(j);
}

/* The 2 and 1 rows left after 6-row tiles run two whole panels at a time
 * (the p2 kernels) when M >= MR and there are two whole panels; right
 * against the double reference on every split (panel splits start pairs on
 * odd panels too) for rows left 1, 2, 3 and 5, an odd number of whole
 * panels with a partial one, two k slices, each flag. */
Test(gemm2, pair_kernels)
{
  Jit *j = newjit();
  if (irb_avx2_fma()) {
    cr_assert(has_kernel(j, (GemmSpec){32, 64, 128, 128, 128, 64, GEMM_BT}, "rnnc.gemm.k2x16p2.w8"));
    cr_assert(has_kernel(j, (GemmSpec){32, 64, 128, 128, 128, 64, GEMM_BT}, "rnnc.gemm.k1x16p2.w8"));
    cr_assert(!has_kernel(j, (GemmSpec){32, 16, 128, 128, 128, 16, GEMM_BT}, "rnnc.gemm.k2x16p2.w8"),
              "one whole panel: no pairs");
    cr_assert(!has_kernel(j, (GemmSpec){2, 64, 128, 128, 128, 64, GEMM_BT}, "rnnc.gemm.k2x16p2.w8"),
              "M < MR: no pairs");
  }
  static const struct {
    Shape2 s;
    int flags;
  } m[] = {
      {{32, 90, 1100, 0, 0, 0}, GEMM_BT},  {{31, 96, 70, 1, 2, 3}, 0},         {{33, 90, 64, 0, 1, 0}, GEMM_ACC},
      {{35, 80, 50, 2, 0, 1}, GEMM_AT},    {{8, 48, 300, 0, 0, 0}, GEMM_BT | GEMM_ACC},
  };
  for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
    check2(j, m[i].s, m[i].flags);
    check2(j, m[i].s, m[i].flags | GEMM_PORTABLE);
  }
  jit_free(j);
}

/* Bad sizes and leading dimensions are shape errors with a message; nothing
 * is added to the module. */
Test(gemm2, bad_specs)
{
  Jit *j = newjit();
  char err[256];
  LLVMModuleRef mod = LLVMModuleCreateWithNameInContext("bad", jit_context(j));
  LLVMContextRef cx = jit_context(j);
  GemmSpec s = {4, 0, 3, 3, 0, 0, 0};
  cr_assert_eq(gemm_gen2(cx, mod, "bad", &s, err, sizeof err), RNNC_ESHAPE);
  cr_assert_str_eq(err, "gemm 'bad': sizes M = 4, N = 0, K = 3 must be at least 1");
  s = (GemmSpec){4, 5, 3, 2, 5, 5, 0};
  cr_assert_eq(gemm_gen2(cx, mod, "bad", &s, err, sizeof err), RNNC_ESHAPE);
  cr_assert_str_eq(err, "gemm 'bad': lda = 2 is less than a row's 3 floats (A is [M, K])");
  s = (GemmSpec){4, 5, 3, 3, 5, 5, GEMM_AT};
  cr_assert_eq(gemm_gen2(cx, mod, "bad", &s, err, sizeof err), RNNC_ESHAPE);
  cr_assert_str_eq(err, "gemm 'bad': lda = 3 is less than a row's 4 floats (A is [K, M])");
  s = (GemmSpec){4, 5, 3, 3, 2, 5, GEMM_BT};
  cr_assert_eq(gemm_gen2(cx, mod, "bad", &s, err, sizeof err), RNNC_ESHAPE);
  cr_assert_str_eq(err, "gemm 'bad': ldb = 2 is less than a row's 3 floats (B is [N, K])");
  s = (GemmSpec){4, 5, 3, 3, 4, 5, 0};
  cr_assert_eq(gemm_gen2(cx, mod, "bad", &s, err, sizeof err), RNNC_ESHAPE);
  cr_assert_str_eq(err, "gemm 'bad': ldb = 4 is less than a row's 5 floats (B is [K, N])");
  s = (GemmSpec){4, 5, 3, 3, 5, 4, 0};
  cr_assert_eq(gemm_gen2(cx, mod, "bad", &s, err, sizeof err), RNNC_ESHAPE);
  cr_assert_str_eq(err, "gemm 'bad': ldc = 4 is less than a row's 5 floats (C is [M, N])");
  s = (GemmSpec){4, 5, 3, 3, 5, (int64_t)1 << 39, 0};
  cr_assert_eq(gemm_gen2(cx, mod, "bad", &s, err, sizeof err), RNNC_ESHAPE);
  cr_assert_str_eq(err, "gemm 'bad': ldc = 549755813888 is too large");
  cr_assert_null(LLVMGetFirstFunction(mod));
  LLVMDisposeModule(mod);
  jit_free(j);
}
