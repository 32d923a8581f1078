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
 * A call fenced by barriers — the op run before it ended with one, and it
 * ends with one or the next op of its list is a barrier only — is shared
 * out dynamically instead, when its range holds more than op->chunk grains
 * (0 keeps the op static): each thread takes the next chunk until none is
 * left, guided (a chunk is 1/(2·nthreads) of what is left, rounded up to a
 * multiple of op->chunk grains, so a GEMM's chunks are whole blocks). Between
 * barriers no thread reads what another writes, so which thread runs a chunk
 * is free; and a thread that another process took the core from no longer
 * holds up the whole team at the barrier. The chunks are numbered by one
 * counter that only grows: each fenced call takes its chunks' numbers and
 * one per thread (the call that finds none left), so every thread knows
 * where the next call's numbers start without resetting anything.
 *
 * Plain C and OpenMP only: this file is part of librnnc_rt.a, the runtime
 * an object compiled ahead of time links (with libgomp); it needs nothing of
 * the compiler. Its symbols are rnnc_-prefixed for that reason: a static
 * archive's globals share the user's namespace. */
#include <omp.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

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

int64_t rnnc_plan_chunk(int64_t ng, int64_t chunk, int nth, int64_t c, int64_t *lo)
{
  int64_t at = 0;
  chunk = chunk < 1 ? 1 : chunk;
  for (int64_t i = 0; at < ng; i++) {
    int64_t left = ng - at, sz = (left + 2 * nth - 1) / (2 * nth);
    sz = (sz + chunk - 1) / chunk * chunk;
    sz = sz < left ? sz : left;
    if (i == c) {
      *lo = at;
      return sz;
    }
    at += sz;
  }
  return 0;
}

int rnnc_plan_dynamic(const PlanOp *op, int k, int k1, int fenced)
{
  const PlanOp *o = &op[k];
  if (o->kind != PK_CALL || o->chunk < 1 || !fenced)
    return 0;
  int64_t g = o->grain < 1 ? 1 : o->grain;
  if ((o->n + g - 1) / g <= o->chunk)
    return 0;
  return o->barrier || (k + 1 < k1 && op[k + 1].kind == PK_CALL && op[k + 1].n == 0 && op[k + 1].barrier);
}

/* What the team shares; and a thread's own: where its next fenced call's
 * chunk numbers start, and whether the op it ran last ended with a barrier. */
typedef struct Team {
  Barrier bar;
  _Atomic int64_t ticket;
} Team;
typedef struct Own {
  int64_t base;
  int fenced;
} Own;

static double seconds(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Call kernel f on [lo, hi); with a profile, time it into op k's entry. */
static void call(KernFn f, void *const *buf, int64_t t, int64_t lo, int64_t hi, float *scratch, PlanProf *pr,
                 int k, int tid)
{
  if (!pr || tid >= pr->nth) {
    f(buf, t, lo, hi, scratch);
    return;
  }
  double t0 = seconds();
  f(buf, t, lo, hi, scratch);
  size_t i = (size_t)k * (size_t)pr->nth + (size_t)tid;
  pr->busy[i] += seconds() - t0;
  pr->calls[i]++;
}

/* Run ops [k0, k1) of op at step t; loops recurse. A NULL kernel is a
 * barrier only. */
static void run_ops(const PlanOp *op, const KernFn *fn, void *const *buf, float *scratch, Team *tm, Own *me,
                    int tid, int nth, int k0, int k1, int64_t t, PlanProf *pr)
{
  for (int k = k0; k < k1; k++) {
    const PlanOp *o = &op[k];
    if (o->kind == PK_LOOP) {
      for (int64_t s = 0; s < o->T; s++)
        run_ops(op, fn, buf, scratch, tm, me, tid, nth, k + 1, k + 1 + o->nbody, o->reverse ? o->T - 1 - s : s,
                pr);
      k += o->nbody;
      continue;
    }
    if (nth > 1 && fn[o->fn] && rnnc_plan_dynamic(op, k, k1, me->fenced)) {
      int64_t g = o->grain < 1 ? 1 : o->grain, ng = (o->n + g - 1) / g, lo, sz, nc;
      for (;;) {
        int64_t c = atomic_fetch_add_explicit(&tm->ticket, 1, memory_order_relaxed) - me->base;
        if (!(sz = rnnc_plan_chunk(ng, o->chunk, nth, c, &lo)))
          break;
        int64_t hi = (lo + sz) * g;
        call(fn[o->fn], buf, t, lo * g, hi < o->n ? hi : o->n, scratch, pr, k, tid);
      }
      for (nc = 0; rnnc_plan_chunk(ng, o->chunk, nth, nc, &lo); nc++)
        ;
      me->base += nc + nth;
    } else {
      int64_t lo, hi;
      rnnc_plan_share(o->n, o->grain, tid, nth, &lo, &hi);
      if (lo < hi && fn[o->fn])
        call(fn[o->fn], buf, t, lo, hi, scratch, pr, k, tid);
    }
    me->fenced = o->barrier;
    if (o->barrier && nth > 1) {
      if (pr && tid < pr->nth) {
        double t0 = seconds();
        barrier_wait(&tm->bar, nth);
        pr->wait[(size_t)k * (size_t)pr->nth + (size_t)tid] += seconds() - t0;
      } else {
        barrier_wait(&tm->bar, nth);
      }
    }
  }
}

void rnnc_plan_exec_prof(const PlanOp *op, int nop, const KernFn *fn, void *const *buf, float *scratch,
                         size_t per, int nthreads, PlanProf *prof)
{
  int nth = nthreads > 0 ? nthreads : omp_get_max_threads();
  Team tm = {{0, 0}, 0};
  double t0 = prof ? seconds() : 0;
  if (nth == 1) {
    Own me = {0, 1};
    run_ops(op, fn, buf, scratch, &tm, &me, 0, 1, 0, nop, 0, prof);
  } else {
#pragma omp parallel num_threads(nth)
    {
      /* the team may be smaller than asked (OMP_THREAD_LIMIT, nesting) */
      int tid = omp_get_thread_num(), n = omp_get_num_threads();
      Own me = {0, 1};
      run_ops(op, fn, buf, scratch ? scratch + per * (size_t)tid : NULL, &tm, &me, tid, n, 0, nop, 0, prof);
    }
  }
  if (prof)
    prof->wall += seconds() - t0;
}

void rnnc_plan_exec(const PlanOp *op, int nop, const KernFn *fn, void *const *buf, float *scratch, size_t per,
                    int nthreads)
{
  rnnc_plan_exec_prof(op, nop, fn, buf, scratch, per, nthreads, NULL);
}
