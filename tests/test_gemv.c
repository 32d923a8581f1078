/* test_gemv.c — mk_gemv (compiler/gemv.c): C[m, n] (+)= Σ_k A[m, k] W[n, k]
 * for a few rows, W unpacked, JIT-compiled, against a double reference
 * (|C - ref| <= 1e-6·(K + 1), values in [-1, 1)); the column range split in
 * one, two and three parts (last part first) gives the same bytes; a t-stride
 * is applied (the kernel runs at t = 2 of 3 steps); nothing outside C's rows
 * changes. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/Core.h>

#include "testutil.h"

static uint64_t rs = 1;
static float uni(void)
{
  rs = rs * 6364136223846793005u + 1442695040888963407u;
  return (float)((double)(rs >> 11) / 9007199254740992.0 * 2 - 1);
}

static KernFn compile(Jit *j, int64_t M, int64_t N, int64_t K, Addr a, Addr w, Addr c, int acc, int portable)
{
  char err[1024];
  static int n;
  char sym[32];
  snprintf(sym, sizeof sym, "gemv%d", n++);
  LLVMModuleRef mod = LLVMModuleCreateWithNameInContext(sym, jit_context(j));
  cr_assert_eq(mk_gemv(jit_context(j), mod, sym, M, N, K, a, w, c, acc, portable, err, sizeof err), RNNC_OK, "%s",
               err);
  cr_assert_eq(jit_add(j, mod, err, sizeof err), RNNC_OK, "%s", err);
  uintptr_t addr;
  cr_assert_eq(jit_lookup(j, sym, &addr, err, sizeof err), RNNC_OK, "%s", err);
  return (KernFn)addr;
}

/* One shape: A [M, K] (ld K + 2), W [N, K] (ld K + 1), C [M, N] (ld N + 3),
 * three steps each, run at t = 2. */
static void check(Jit *j, int64_t M, int64_t N, int64_t K, int acc, int portable)
{
  int64_t lda = K + 2, ldw = K + 1, ldc = N + 3, T = 3, t = 2;
  Addr a = {0, 1, M * lda, lda}, w = {1, 2, 0, ldw}, c = {2, 5, M * ldc, ldc};
  size_t na = (size_t)(1 + T * M * lda), nw = (size_t)(2 + N * ldw), nc = (size_t)(5 + T * M * ldc);
  float *A = malloc(na * 4), *W = malloc(nw * 4), *C0 = malloc(nc * 4), *C = malloc(nc * 4), *C1 = malloc(nc * 4);
  for (size_t e = 0; e < na; e++)
    A[e] = uni();
  for (size_t e = 0; e < nw; e++)
    W[e] = uni();
  for (size_t e = 0; e < nc; e++)
    C0[e] = uni();
  KernFn f = compile(j, M, N, K, a, w, c, acc, portable);
  for (int parts = 1; parts <= 3; parts++) {
    memcpy(C, C0, nc * 4);
    void *buf[3] = {A, W, C};
    for (int p = parts - 1; p >= 0; p--) {
      int64_t lo, hi;
      rnnc_plan_share(N, 8, p, parts, &lo, &hi);
      if (lo < hi)
        f(buf, t, lo, hi, NULL);
    }
    if (parts == 1) {
      memcpy(C1, C, nc * 4);
      for (size_t e = 0; e < nc; e++) {
        size_t r = e < 5 ? 0 : (e - 5) / (size_t)ldc, col = e < 5 ? 0 : (e - 5) % (size_t)ldc;
        int inside = e >= 5 && (int64_t)r >= t * M && (int64_t)r < (t + 1) * M && (int64_t)col < N;
        if (!inside) {
          cr_assert_eq(C[e], C0[e], "element %zu outside C changed", e);
          continue;
        }
        int64_t m = (int64_t)r - t * M, n = (int64_t)col;
        double ref = acc ? C0[e] : 0;
        for (int64_t k = 0; k < K; k++)
          ref += (double)A[1 + t * M * lda + m * lda + k] * W[2 + n * ldw + k];
        cr_assert(fabs(C[e] - ref) <= 1e-6 * (double)(K + 1), "M=%lld N=%lld K=%lld C[%lld, %lld] = %g, want %g",
                  (long long)M, (long long)N, (long long)K, (long long)m, (long long)n, C[e], ref);
      }
    } else {
      cr_assert(memcmp(C, C1, nc * 4) == 0, "M=%lld N=%lld K=%lld: %d parts differ from one", (long long)M,
                (long long)N, (long long)K, parts);
    }
  }
  free(A), free(W), free(C0), free(C), free(C1);
}

Test(gemv, shapes_splits_and_tails)
{
  Jit *j;
  char err[512];
  cr_assert_eq(jit_new(&j, err, sizeof err), RNNC_OK, "%s", err);
  const int64_t shapes[][3] = {{1, 1, 1}, {1, 7, 5}, {1, 33, 31}, {2, 16, 32}, {3, 40, 67}, {1, 256, 512},
                               {2, 2048, 128}, {1, 9, 100}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
    for (int acc = 0; acc < 2; acc++)
      check(j, shapes[s][0], shapes[s][1], shapes[s][2], acc, 0);
  check(j, 2, 37, 45, 1, 1); /* 4-wide */
  jit_free(j);
}

Test(gemv, bad_size)
{
  Jit *j;
  char err[512];
  cr_assert_eq(jit_new(&j, err, sizeof err), RNNC_OK, "%s", err);
  LLVMModuleRef mod = LLVMModuleCreateWithNameInContext("bad", jit_context(j));
  Addr a = {0, 0, 0, 4};
  cr_assert_eq(mk_gemv(jit_context(j), mod, "bad", 1, 0, 4, a, a, a, 0, 0, err, sizeof err), RNNC_ESHAPE);
  cr_assert_str_eq(err, "kernel 'bad': M = 1, N = 0, K = 4 must be at least 1");
  LLVMDisposeModule(mod);
  jit_free(j);
}
