/* exec.c — the plan executor: one OpenMP team runs a whole plan.
 * require: a plan (compiler/compile.c) and its kernels. produce: the run.
 *
 * Every thread walks the same list of ops. A call runs the kernel on the
 * thread's share of the op's range (rnnc_plan_share: contiguous, split at
 * multiples of the grain, so a share never cuts a vector or a micro-tile);
 * a barrier after an op (barrier_wait) makes its results visible to every
 * thread before the next op reads them. A loop runs its body once per time step, in order or
 * reversed: the team stays up across the whole time loop, with a barrier
 * between the steps that need one, never a fork/join per op. Which thread
 * computes an element never changes what it computes (the kernels' contract),
 * so results do not depend on the number of threads.
 *
 * Plain C and OpenMP only: this file is part of librnnc_rt.a, the runtime
 * an object compiled ahead of time links (with libgomp); it needs nothing of
 * the compiler. Its symbols are rnnc_-prefixed for that reason: a static
 * archive's globals share the user's namespace. */
#include <omp.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

void rnnc_plan_share(int64_t n, int64_t g, int tid, int nth, int64_t *lo, int64_t *hi)
{
  if (g < 1)
    g = 1;
  int64_t ng = (n + g - 1) / g; /* grains */
  int64_t a = ng * tid / nth, b = ng * (tid + 1) / nth;
  *lo = a * g;
  *hi = b * g < n ? b * g : n;
  if (*lo > n)
    *lo = n;
}

/* The team's barrier: the last thread to arrive starts a new generation,
 * the others spin on it (yielding the core after a while: another process
 * may need it). Its latency does not depend on OMP_WAIT_POLICY, and a step
 * of generation has several. The release/acquire pair makes every write
 * before the barrier visible after it. */
typedef struct Barrier {
  _Atomic int count, gen;
} Barrier;

static void barrier_wait(Barrier *b, int nth)
{
  int g = atomic_load_explicit(&b->gen, memory_order_acquire);
  if (atomic_fetch_add_explicit(&b->count, 1, memory_order_acq_rel) == nth - 1) {
    atomic_store_explicit(&b->count, 0, memory_order_relaxed);
    atomic_store_explicit(&b->gen, g + 1, memory_order_release);
    return;
  }
  for (long spin = 0; atomic_load_explicit(&b->gen, memory_order_acquire) == g; spin++) {
    if (spin >= 4000)
      sched_yield();
#if defined(__x86_64__) || defined(__i386__)
    else
      __builtin_ia32_pause();
#endif
  }
}

/* Run ops [k0, k1) of op at step t; loops recurse. A NULL kernel is a
 * barrier only. */
static void run_ops(const PlanOp *op, const KernFn *fn, void *const *buf, float *scratch, Barrier *bar, int tid,
                    int nth, int k0, int k1, int64_t t)
{
  for (int k = k0; k < k1; k++) {
    const PlanOp *o = &op[k];
    if (o->kind == PK_LOOP) {
      for (int64_t s = 0; s < o->T; s++)
        run_ops(op, fn, buf, scratch, bar, tid, nth, k + 1, k + 1 + o->nbody, o->reverse ? o->T - 1 - s : s);
      k += o->nbody;
      continue;
    }
    int64_t lo, hi;
    rnnc_plan_share(o->n, o->grain, tid, nth, &lo, &hi);
    if (lo < hi && fn[o->fn])
      fn[o->fn](buf, t, lo, hi, scratch);
    if (o->barrier && nth > 1)
      barrier_wait(bar, nth);
  }
}

void rnnc_plan_exec(const PlanOp *op, int nop, const KernFn *fn, void *const *buf, float *scratch, size_t per,
                    int nthreads)
{
  int nth = nthreads > 0 ? nthreads : omp_get_max_threads();
  Barrier bar = {0, 0};
  if (nth == 1) {
    run_ops(op, fn, buf, scratch, &bar, 0, 1, 0, nop, 0);
    return;
  }
#pragma omp parallel num_threads(nth)
  {
    /* the team may be smaller than asked (OMP_THREAD_LIMIT, nesting) */
    int tid = omp_get_thread_num(), n = omp_get_num_threads();
    run_ops(op, fn, buf, scratch ? scratch + per * (size_t)tid : NULL, &bar, tid, n, 0, nop, 0);
  }
}

int rnnc_plan_run(const Plan *p, const KernFn *fn, void *const *buf, int nthreads)
{
  int nth = nthreads > 0 ? nthreads : omp_get_max_threads();
  size_t per = (p->scratch + 15) / 16 * 16; /* floats, a multiple of 64 bytes */
  float *scratch = NULL;
  if (per && !(scratch = aligned_alloc(64, per * sizeof(float) * (size_t)nth)))
    return RNNC_ENOMEM;
  rnnc_plan_exec(p->op, p->nop, fn, buf, scratch, per, nth);
  free(scratch);
  return RNNC_OK;
}
