/* gemm_bench.c — rnnc's generated GEMM (compiler/gemm.c, gemm_gen2)
 * against OpenBLAS sgemm, one thread, on the GEMM shapes of the benchmark
 * configurations, with the operands laid out as the model has them.
 *
 *   gemm_bench [RUNS [M K N [FLAGS]]]   (default 21 runs per shape; the
 *                                       shapes below, or the one given;
 *                                       FLAGS: n, bt or at)
 *
 * For each shape C[M, N] = op(A)[M, K] · op(B)[K, N] (bt: B given as [N, K],
 * as a weight W in x · W^T; at: A given as [K, M], as d in d^T · x): first
 * validate (each rnnc variant vs OpenBLAS on the same inputs, max
 * |difference| <= 1e-6 · (K + 1) with inputs in [-1, 1); exit 1 on a
 * mismatch), then time. A run is enough calls back to back to last >= 10 ms
 * of the thread's CPU time (CLOCK_THREAD_CPUTIME_ID: time the shared machine
 * gives other processes is not counted); a figure is the median over RUNS
 * runs of the time per call, the variants' runs interleaved; a ratio is the
 * median over runs of OpenBLAS time / rnnc time of the same run. rnnc runs
 * as the model runs it, on one thread:
 *   _pack + _rows   B packed, then every row (a GEMM whose B changes)
 *   _rows           B packed once beforehand (a weight reused every step)
 *   _cols           every panel, packing B a slice at a time in scratch
 *                   (weight gradients, split over threads by panels)
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

typedef void (*PackFn)(const float *B, float *pack, int64_t p0, int64_t p1);
typedef void (*RangeFn)(const float *A, const float *Bp, float *C, int64_t lo, int64_t hi, float *scratch);

static const struct {
  const char *what;
  int64_t M, K, N;
  int flags;
} shapes[] = {
    {"C1 input projection x·W^T (hoisted)", 2048, 64, 512, GEMM_BT},
    {"C2 layer 1 input projection x·W^T (hoisted)", 4096, 128, 2048, GEMM_BT},
    {"C2 layer 2 input projection x·W^T (hoisted)", 4096, 512, 2048, GEMM_BT},
    {"C5 input projection x·W^T (hoisted)", 800, 1024, 4096, GEMM_BT},
    {"C1 recurrent h·U^T, per step", 32, 128, 512, GEMM_BT},
    {"C2 recurrent h·U^T, per step", 64, 512, 2048, GEMM_BT},
    {"C2 layer 2 backward dx = d·W (hoisted)", 4096, 2048, 512, 0},
    {"C2 layer 2 weight gradient dW = d^T·x", 2048, 4096, 512, GEMM_AT},
    {"C5 weight gradient dW = d^T·x", 4096, 800, 1024, GEMM_AT},
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

enum { V_PACKROWS, V_ROWS, V_COLS, V_BLAS, NV };

typedef struct Case {
  int which; /* V_* */
  PackFn pack;
  RangeFn rows, cols;
  const GemmSpec *s;
  int64_t np;
  const float *A, *B;
  float *C, *P, *S;
} Case;

static void call(const Case *c)
{
  const GemmSpec *s = c->s;
  switch (c->which) {
  case V_PACKROWS:
    c->pack(c->B, c->P, 0, c->np);
    c->rows(c->A, c->P, c->C, 0, s->M, c->S);
    break;
  case V_ROWS:
    c->rows(c->A, c->P, c->C, 0, s->M, c->S);
    break;
  case V_COLS:
    c->cols(c->A, c->B, c->C, 0, c->np, c->S);
    break;
  default:
    cblas_sgemm(CblasRowMajor, s->flags & GEMM_AT ? CblasTrans : CblasNoTrans,
                s->flags & GEMM_BT ? CblasTrans : CblasNoTrans, (int)s->M, (int)s->N, (int)s->K, 1.0f, c->A,
                (int)s->lda, c->B, (int)s->ldb, 0.0f, c->C, (int)s->ldc);
  }
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
  void *p = aligned_alloc(64, (n + 63) / 64 * 64);
  if (!p) {
    fprintf(stderr, "gemm_bench: out of memory\n");
    exit(1);
  }
  return p;
}

static uintptr_t lookup(Jit *j, const char *sym, const char *suffix)
{
  char name[96], err[1024];
  uintptr_t a = 0;
  snprintf(name, sizeof name, "%s%s", sym, suffix);
  if (jit_lookup(j, name, &a, err, sizeof err) != RNNC_OK) {
    fprintf(stderr, "gemm_bench: %s\n", err);
    exit(1);
  }
  return a;
}

static const char *flagname(int flags) { return flags & GEMM_AT ? "at" : flags & GEMM_BT ? "bt" : "n"; }

int main(int argc, char **argv)
{
  int runs = argc > 1 ? atoi(argv[1]) : 21;
  int64_t one[3] = {0, 0, 0}; /* M K N of a shape given on the command line */
  for (int a = 2; a < argc && a < 5; a++)
    one[a - 2] = atoll(argv[a]);
  int oneflags = argc < 6 ? 0 : !strcmp(argv[5], "at") ? GEMM_AT : !strcmp(argv[5], "bt") ? GEMM_BT : 0;
  if (runs < 1 || argc == 3 || argc == 4 || argc > 6 || (argc >= 5 && (one[0] < 1 || one[1] < 1 || one[2] < 1)) ||
      (argc == 6 && strcmp(argv[5], "at") && strcmp(argv[5], "bt") && strcmp(argv[5], "n"))) {
    fprintf(stderr, "usage: gemm_bench [RUNS [M K N [n|bt|at]]]\n");
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
  printf("| GEMM [M x K] x [K x N] | op | what | rnnc _pack + _rows | rnnc _rows, B prepacked | rnnc _cols | OpenBLAS "
         "| _pack + _rows / OpenBLAS | _cols / OpenBLAS |\n|---|---|---|---|---|---|---|---|---|\n");
  size_t nshape = argc >= 5 ? 1 : sizeof shapes / sizeof shapes[0];
  for (size_t sh = 0; sh < nshape; sh++) {
    int64_t M = shapes[sh].M, N = shapes[sh].N, K = shapes[sh].K;
    int flags = shapes[sh].flags;
    const char *what = shapes[sh].what;
    if (argc >= 5)
      M = one[0], K = one[1], N = one[2], flags = oneflags, what = "given";
    int at = !!(flags & GEMM_AT), bt = !!(flags & GEMM_BT);
    GemmSpec s = {M, N, K, at ? M : K, bt ? K : N, N, flags};
    char sym[64];
    snprintf(sym, sizeof sym, "bench%zu", sh);
    LLVMModuleRef mod = LLVMModuleCreateWithNameInContext(sym, jit_context(j));
    if (gemm_gen2(jit_context(j), mod, sym, &s, err, sizeof err) != RNNC_OK ||
        jit_add(j, mod, err, sizeof err) != RNNC_OK) {
      fprintf(stderr, "gemm_bench: %s\n", err);
      return 1;
    }
    PackFn pack = (PackFn)lookup(j, sym, "_pack");
    RangeFn rows = (RangeFn)lookup(j, sym, "_rows"), cols = (RangeFn)lookup(j, sym, "_cols");
    float *A = xmalloc(sizeof(float) * (size_t)(M * K)), *B = xmalloc(sizeof(float) * (size_t)(K * N));
    float *C = xmalloc(sizeof(float) * (size_t)(M * N)), *Cr = xmalloc(sizeof(float) * (size_t)(M * N));
    float *P = xmalloc(sizeof(float) * gemm_packsize(&s)), *S = xmalloc(sizeof(float) * gemm_scratchsize(&s));
    for (int64_t i = 0; i < M * K; i++)
      A[i] = uni();
    for (int64_t i = 0; i < K * N; i++)
      B[i] = uni();
    Case c[NV];
    for (int w = 0; w < NV; w++)
      c[w] = (Case){w, pack, rows, cols, &s, gemm_npanels(&s), A, B, w == V_BLAS ? Cr : C, P, S};

    /* validate every variant against OpenBLAS */
    call(&c[V_BLAS]);
    for (int w = 0; w < V_BLAS; w++) {
      memset(C, 0xff, sizeof(float) * (size_t)(M * N)); /* NaN: every element must be written */
      call(&c[w]);
      double maxd = 0, bound = 1e-6 * (double)(K + 1);
      for (int64_t i = 0; i < M * N; i++) {
        double d = fabs((double)C[i] - Cr[i]);
        if (!(d <= maxd))
          maxd = d;
      }
      if (!(maxd <= bound)) {
        fprintf(stderr, "gemm_bench: [%lld x %lld] x [%lld x %lld] %s: rnnc variant %d and OpenBLAS differ by %.3g "
                        "(bound %.3g)\n",
                (long long)M, (long long)K, (long long)K, (long long)N, flagname(flags), w, maxd, bound);
        return 1;
      }
    }

    /* time: reps per run for >= 10 ms, runs interleaved */
    double t1 = run(&c[V_BLAS], 1);
    int reps = t1 >= 0.01 ? 1 : (int)(0.01 / fmax(t1, 1e-7)) + 1;
    double *t = xmalloc(sizeof(double) * (size_t)runs * NV);
    for (int r = 0; r < runs; r++)
      for (int w = 0; w < NV; w++)
        t[w * runs + r] = run(&c[w], reps);
    /* ratios: per run, OpenBLAS time / rnnc time, then the median, so a
     * slow spell of the machine shared by both runs cancels */
    double ratio[2];
    double *rr = xmalloc(sizeof(double) * (size_t)runs);
    for (int v = 0; v < 2; v++) {
      int w = v ? V_COLS : V_PACKROWS;
      for (int r = 0; r < runs; r++)
        rr[r] = t[V_BLAS * runs + r] / t[w * runs + r];
      qsort(rr, (size_t)runs, sizeof(double), cmpd);
      ratio[v] = rr[runs / 2];
    }
    double gf[NV];
    for (int w = 0; w < NV; w++) {
      qsort(t + w * runs, (size_t)runs, sizeof(double), cmpd);
      gf[w] = 2.0 * (double)M * (double)N * (double)K / t[w * runs + runs / 2] * 1e-9;
    }
    printf("| [%lld x %lld] x [%lld x %lld] | %s | %s | %.1f | %.1f | %.1f | %.1f | %.2f | %.2f |\n", (long long)M,
           (long long)K, (long long)K, (long long)N, flagname(flags), what, gf[V_PACKROWS], gf[V_ROWS], gf[V_COLS],
           gf[V_BLAS], ratio[0], ratio[1]);
    fflush(stdout);
    free(rr), free(t), free(A), free(B), free(C), free(Cr), free(P), free(S);
  }
  jit_free(j);
  return 0;
}
