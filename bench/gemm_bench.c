/* gemm_bench.c — rnnc's generated GEMM (compiler/gemm.c) against OpenBLAS
 * sgemm, one thread, on the GEMM shapes of the benchmark configurations.
 *
 *   gemm_bench [RUNS [M K N]]   (default 21 runs per shape; the shapes
 *                               below, or the one given)
 *
 * For each shape C[M, N] = A[M, K] · B[K, N]: first validate (rnnc vs
 * OpenBLAS on the same inputs, max |difference| <= 1e-6 · (K + 1) · max|A| ·
 * max|B|; exit 1 on a mismatch), then time. A run is enough calls back to
 * back to last >= 10 ms of the thread's CPU time (CLOCK_THREAD_CPUTIME_ID:
 * time the shared machine gives other processes is not counted); the
 * figure is the median over RUNS runs of the time per call, rnnc and
 * OpenBLAS runs interleaved; the ratio is the median over runs of OpenBLAS
 * time / rnnc time of the same run. rnnc is timed with packing (sym: packs
 * B then multiplies, as OpenBLAS does) and without (sym_packed, B packed
 * once, as for weights reused across time steps).
 * GFLOP/s = 2·M·N·K / time. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <llvm-c/Core.h>

#include "ir.h"

/* OpenBLAS's own (its cblas.h declares them too; another cblas.h may not) */
void openblas_set_num_threads(int num_threads);
char *openblas_get_config(void);

typedef void (*GemmFn)(const float *A, const float *B, float *C, float *pack);
typedef void (*PackedFn)(const float *A, float *pack, float *C);

static const struct {
  const char *what;
  int64_t M, K, N;
} shapes[] = {
    {"C1 input projection (hoisted)", 2048, 64, 512},
    {"C2 layer 1 input projection (hoisted)", 4096, 128, 2048},
    {"C2 layer 2 input projection (hoisted)", 4096, 512, 2048},
    {"C5 input projection (hoisted)", 800, 1024, 4096},
    {"C1 recurrent, per step", 32, 128, 512},
    {"C2 recurrent, per step", 64, 512, 2048},
};

static double now_s(void)
{
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmpd(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static uint64_t rs = 42;
static float uni(void) /* [-1, 1), splitmix64 */
{
  uint64_t z = (rs += 0x9e3779b97f4a7c15u);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  z ^= z >> 31;
  return (float)((double)(z >> 11) / 9007199254740992.0 * 2 - 1);
}

typedef struct Case {
  int which; /* 0 rnnc (sym), 1 rnnc (sym_packed), 2 OpenBLAS */
  GemmFn f;
  PackedFn fp;
  int64_t M, N, K;
  const float *A, *B;
  float *C, *P;
} Case;

static void call(const Case *c)
{
  if (c->which == 0)
    c->f(c->A, c->B, c->C, c->P);
  else if (c->which == 1)
    c->fp(c->A, c->P, c->C);
  else
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)c->M, (int)c->N, (int)c->K, 1.0f, c->A, (int)c->K,
                c->B, (int)c->N, 0.0f, c->C, (int)c->N);
}

/* Seconds per call over one run of reps calls. */
static double run(const Case *c, int reps)
{
  double t = now_s();
  for (int r = 0; r < reps; r++)
    call(c);
  return (now_s() - t) / reps;
}

static void *xmalloc(size_t n)
{
  void *p = malloc(n);
  if (!p) {
    fprintf(stderr, "gemm_bench: out of memory\n");
    exit(1);
  }
  return p;
}

int main(int argc, char **argv)
{
  int runs = argc > 1 ? atoi(argv[1]) : 21;
  int64_t one[3] = {0, 0, 0}; /* M K N of a shape given on the command line */
  for (int a = 2; a < argc && a < 5; a++)
    one[a - 2] = atoll(argv[a]);
  if (runs < 1 || (argc != 2 && argc != 5 && argc != 1) || (argc == 5 && (one[0] < 1 || one[1] < 1 || one[2] < 1))) {
    fprintf(stderr, "usage: gemm_bench [RUNS [M K N]]\n");
    return 2;
  }
  openblas_set_num_threads(1);
  char err[1024];
  Jit *j;
  if (jit_new(&j, err, sizeof err) != RNNC_OK) {
    fprintf(stderr, "gemm_bench: %s\n", err);
    return 1;
  }
  int mr, nr;
  gemm_block(0, &mr, &nr);
  printf("rnnc micro-kernel %d x %d; OpenBLAS %s; 1 thread; medians of %d runs\n\n", mr, nr, openblas_get_config(),
         runs);
  printf("| GEMM [M x K] x [K x N] | what | rnnc GFLOP/s | rnnc, B prepacked | OpenBLAS GFLOP/s | rnnc / OpenBLAS "
         "|\n|---|---|---|---|---|---|\n");
  size_t nshape = argc == 5 ? 1 : sizeof shapes / sizeof shapes[0];
  for (size_t s = 0; s < nshape; s++) {
    int64_t M = shapes[s].M, N = shapes[s].N, K = shapes[s].K;
    const char *what = shapes[s].what;
    if (argc == 5)
      M = one[0], K = one[1], N = one[2], what = "given";
    char sym[64];
    snprintf(sym, sizeof sym, "bench%zu", s);
    LLVMModuleRef mod = LLVMModuleCreateWithNameInContext(sym, jit_context(j));
    uintptr_t a0 = 0, a1 = 0;
    char psym[80];
    snprintf(psym, sizeof psym, "%s_packed", sym);
    if (gemm_gen(jit_context(j), mod, sym, M, N, K, 0, err, sizeof err) != RNNC_OK ||
        jit_add(j, mod, err, sizeof err) != RNNC_OK || jit_lookup(j, sym, &a0, err, sizeof err) != RNNC_OK ||
        jit_lookup(j, psym, &a1, err, sizeof err) != RNNC_OK) {
      fprintf(stderr, "gemm_bench: %s\n", err);
      return 1;
    }
    float *A = xmalloc(sizeof(float) * (size_t)(M * K)), *B = xmalloc(sizeof(float) * (size_t)(K * N));
    float *C = xmalloc(sizeof(float) * (size_t)(M * N)), *Cr = xmalloc(sizeof(float) * (size_t)(M * N));
    float *P = xmalloc(sizeof(float) * gemm_pack_size(M, N, K));
    for (int64_t i = 0; i < M * K; i++)
      A[i] = uni();
    for (int64_t i = 0; i < K * N; i++)
      B[i] = uni();
    Case c[3];
    for (int w = 0; w < 3; w++)
      c[w] = (Case){w, (GemmFn)a0, (PackedFn)a1, M, N, K, A, B, w == 2 ? Cr : C, P};

    /* validate */
    call(&c[0]);
    call(&c[2]);
    double maxd = 0, bound = 1e-6 * (double)(K + 1);
    for (int64_t i = 0; i < M * N; i++)
      maxd = fmax(maxd, fabs((double)C[i] - Cr[i]));
    if (!(maxd <= bound)) {
      fprintf(stderr, "gemm_bench: [%lld x %lld] x [%lld x %lld]: rnnc and OpenBLAS differ by %.3g (bound %.3g)\n",
              (long long)M, (long long)K, (long long)K, (long long)N, maxd, bound);
      return 1;
    }

    /* time: reps per run for >= 10 ms, runs interleaved */
    double t1 = run(&c[2], 1);
    int reps = t1 >= 0.01 ? 1 : (int)(0.01 / fmax(t1, 1e-7)) + 1;
    double *t = xmalloc(sizeof(double) * (size_t)runs * 3);
    for (int r = 0; r < runs; r++)
      for (int w = 0; w < 3; w++)
        t[w * runs + r] = run(&c[w], reps);
    /* ratio: per run, OpenBLAS time / rnnc time, then the median, so a
     * slow spell of the machine shared by both runs cancels */
    double *ratio = xmalloc(sizeof(double) * (size_t)runs);
    for (int r = 0; r < runs; r++)
      ratio[r] = t[2 * runs + r] / t[r];
    qsort(ratio, (size_t)runs, sizeof(double), cmpd);
    double gf[3];
    for (int w = 0; w < 3; w++) {
      qsort(t + w * runs, (size_t)runs, sizeof(double), cmpd);
      gf[w] = 2.0 * (double)M * (double)N * (double)K / t[w * runs + runs / 2] * 1e-9;
    }
    printf("| [%lld x %lld] x [%lld x %lld] | %s | %.1f | %.1f | %.1f | %.2f |\n", (long long)M, (long long)K,
           (long long)K, (long long)N, what, gf[0], gf[1], gf[2], ratio[runs / 2]);
    free(ratio);
    fflush(stdout);
    free(t), free(A), free(B), free(C), free(Cr), free(P);
  }
  jit_free(j);
  return 0;
}
