/* fma_peak.c — this machine's fp32 FMA peak, GFLOP/s, for 1..N threads
 * (bench/README.md: the "% of peak" column divides by it).
 *
 * Each thread runs NACC independent chains acc[i] = acc[i] * m + a of 256-bit
 * FMAs (8 lanes x 2 flops each). NACC = 12 covers latency x pipes (Zen 3:
 * 4 cycles x 2 FMA pipes = 8 chains in flight), so the loop is bound by FMA
 * throughput, not latency. All threads start together (barrier) and the time
 * is the slowest thread's; each thread count is run REPS times after one
 * warm-up, and the best and the median are reported.
 *
 * Built by CMake on x86-64 (target fma_peak, -mavx2 -mfma -fopenmp); refuses
 * to run on a CPU without AVX2 + FMA.
 *
 * Usage: fma_peak [MAX_THREADS [REPS]]    (default 2 and 5)
 * Output: one JSON line per thread count 1..MAX_THREADS:
 *   {"threads": 2, "reps": 5, "gflops_best": ..., "gflops_median": ..., "gflops_all": [...]}
 */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

enum { NACC = 12, MAXREPS = 64 };
#define ITERS 20000000L /* per thread and run: 12 * 8 * 2 * 2e7 = 3.84 GFLOP */

/* ITERS rounds of NACC independent vector FMAs; returns a value that depends
 * on every chain, so that none is optimized away. */
static float fma_chains(long iters, float seed) {
  __m256 m = _mm256_set1_ps(0.999999f), a = _mm256_set1_ps(1e-7f);
  __m256 acc[NACC];
  for (int i = 0; i < NACC; i++) acc[i] = _mm256_set1_ps(seed + (float)i);
  for (long it = 0; it < iters; it++) {
#pragma GCC unroll 12
    for (int i = 0; i < NACC; i++) acc[i] = _mm256_fmadd_ps(acc[i], m, a);
  }
  __m256 s = acc[0];
  for (int i = 1; i < NACC; i++) s = _mm256_add_ps(s, acc[i]);
  float out[8];
  _mm256_storeu_ps(out, s);
  return out[0] + out[7];
}

static int cmp_double(const void *x, const void *y) {
  double a = *(const double *)x, b = *(const double *)y;
  return (a > b) - (a < b);
}

/* GFLOP/s of one run of nt threads, all starting at a barrier. */
static double run_once(int nt, volatile float *sink) {
  double t0 = 0, t1 = 0;
  float s = 0;
#pragma omp parallel num_threads(nt) reduction(+ : s)
  {
#pragma omp barrier
#pragma omp single
    t0 = omp_get_wtime();
    s += fma_chains(ITERS, (float)omp_get_thread_num());
#pragma omp barrier
#pragma omp single
    t1 = omp_get_wtime();
  }
  *sink += s;
  return (double)nt * ITERS * NACC * 8 * 2 / (t1 - t0) / 1e9;
}

int main(int argc, char **argv) {
  int maxt = argc > 1 ? atoi(argv[1]) : 2;
  int reps = argc > 2 ? atoi(argv[2]) : 5;
  if (maxt < 1 || reps < 1 || reps > MAXREPS) {
    fprintf(stderr, "usage: fma_peak [MAX_THREADS >= 1 [REPS 1..%d]]\n", MAXREPS);
    return 2;
  }
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
    fprintf(stderr, "fma_peak: this CPU has no AVX2 + FMA\n");
    return 1;
  }
  volatile float sink = 0;
  for (int nt = 1; nt <= maxt; nt++) {
    double g[MAXREPS], sorted[MAXREPS];
    run_once(nt, &sink); /* warm-up: clocks up, threads created */
    for (int r = 0; r < reps; r++) g[r] = sorted[r] = run_once(nt, &sink);
    qsort(sorted, (size_t)reps, sizeof *sorted, cmp_double);
    printf("{\"threads\": %d, \"reps\": %d, \"gflops_best\": %.2f, \"gflops_median\": %.2f, "
           "\"gflops_all\": [",
           nt, reps, sorted[reps - 1], sorted[reps / 2]);
    for (int r = 0; r < reps; r++) printf("%s%.2f", r ? ", " : "", g[r]);
    printf("]}\n");
    fflush(stdout);
  }
  return sink == 12345.0f; /* never: keeps sink alive */
}
