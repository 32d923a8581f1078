/* test_gemm.c — generated GEMMs (compiler/gemm.c) against a naive triple
 * loop in double.
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
