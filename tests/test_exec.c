/* test_exec.c — the plan executor (runtime/exec.c) on plans of C kernels
 * that record what each call covered: static shares are rnnc_plan_share's;
 * an op fenced by barriers is shared out in chunks (rnnc_plan_chunk: every
 * grain exactly once, multiples of op.chunk grains but the last), at every
 * step of a loop, with 2 and 3 threads; an op not fenced, or with chunk 0 (an
 * object compiled before chunks), keeps the static shares; and a thread held
 * up in one chunk leaves the rest of the range to the others. */
#include <criterion/criterion.h>
#include <omp.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "testutil.h"

enum { MAXN = 4096, MAXCALL = 4096 };

/* What the kernels record; buf[0] points to it. */
typedef struct Rec {
  _Atomic int count[MAXN];     /* calls that covered each element */
  int owner[MAXN];             /* the thread that covered it last */
  _Atomic int ncall;
  int64_t lo[MAXCALL], hi[MAXCALL];
  int tid[MAXCALL];
  int64_t sleep_at;            /* the call covering this element sleeps 200 ms (-1: none) */
} Rec;

static void record(void *const *buf, int64_t t, int64_t lo, int64_t hi, float *scratch)
{
  (void)t, (void)scratch;
  Rec *r = buf[0];
  int c = atomic_fetch_add(&r->ncall, 1);
  cr_assert(c < MAXCALL);
  r->lo[c] = lo, r->hi[c] = hi, r->tid[c] = omp_get_thread_num();
  for (int64_t i = lo; i < hi; i++) {
    atomic_fetch_add(&r->count[i], 1);
    r->owner[i] = omp_get_thread_num();
  }
  if (r->sleep_at >= lo && r->sleep_at < hi)
    nanosleep(&(struct timespec){0, 200000000}, NULL);
}

static void nothing(void *const *buf, int64_t t, int64_t lo, int64_t hi, float *scratch)
{
  (void)buf, (void)t, (void)lo, (void)hi, (void)scratch;
}

static PlanOp call(int64_t n, int64_t grain, int barrier, int chunk)
{
  return (PlanOp){.kind = PK_CALL, .fn = 0, .n = n, .grain = grain, .barrier = barrier, .chunk = chunk};
}

static const PlanOp bar = {.kind = PK_CALL, .fn = 1, .n = 0, .grain = 1, .barrier = 1};

static Rec *run_prof(const PlanOp *op, int nop, int nth, int64_t sleep_at, PlanProf *prof)
{
  static Rec r;
  memset(&r, 0, sizeof r);
  r.sleep_at = sleep_at;
  KernFn fn[3] = {record, NULL, nothing};
  void *buf[1] = {&r};
  rnnc_plan_exec_prof(op, nop, fn, buf, NULL, 0, nth, prof);
  return &r;
}

static Rec *run(const PlanOp *op, int nop, int nth, int64_t sleep_at)
{
  return run_prof(op, nop, nth, sleep_at, NULL);
}

/* the chunks of a range: contiguous from 0, each a multiple of chunk grains
 * but the last, none past the end */
Test(exec, chunks_partition_the_range)
{
  const int64_t ngs[] = {1, 2, 5, 17, 134, 683, 4096};
  const int64_t chunks[] = {1, 4, 20, 32};
  for (int a = 0; a < 7; a++)
    for (int b = 0; b < 4; b++)
      for (int nth = 1; nth <= 4; nth++) {
        int64_t ng = ngs[a], at = 0, lo, sz, c = 0;
        for (; (sz = rnnc_plan_chunk(ng, chunks[b], nth, c, &lo)); c++) {
          cr_assert_eq(lo, at, "ng %lld chunk %lld: chunk %lld starts at %lld, not %lld", (long long)ng,
                       (long long)chunks[b], (long long)c, (long long)lo, (long long)at);
          cr_assert(sz % chunks[b] == 0 || at + sz == ng, "chunk %lld of %lld grains", (long long)c, (long long)sz);
          at += sz;
        }
        cr_assert_eq(at, ng, "ng %lld: the chunks cover %lld", (long long)ng, (long long)at);
        cr_assert(c >= 1);
      }
  /* guided: the first chunk of 800 grains on 2 threads is a quarter, of
   * 134 a quarter rounded up to a multiple of 20 */
  int64_t lo;
  cr_assert_eq(rnnc_plan_chunk(800, 4, 2, 0, &lo), 200);
  cr_assert_eq(rnnc_plan_chunk(134, 20, 2, 0, &lo), 40);
  cr_assert_eq(rnnc_plan_chunk(134, 20, 2, 4, &lo), 14);
  cr_assert_eq(lo, 120);
  cr_assert_eq(rnnc_plan_chunk(800, 4, 2, 1000, &lo), 0);
}

/* op 1 fenced (a barrier before, its own after), op 3 fenced by a barrier
 * op, op 4 not (no barrier after), op 5 not (op 4 before it has none) */
Test(exec, fenced_ops_are_shared_dynamically)
{
  PlanOp op[] = {bar, call(1000, 3, 1, 2), bar, call(999, 3, 0, 2), bar, call(100, 1, 0, 1), call(100, 1, 1, 1)};
  cr_assert(rnnc_plan_dynamic(op, 1, 7, 1));
  cr_assert(rnnc_plan_dynamic(op, 3, 7, 1));
  cr_assert(!rnnc_plan_dynamic(op, 3, 7, 0), "not after a barrier");
  cr_assert(!rnnc_plan_dynamic(op, 5, 7, 1), "no barrier after");
  cr_assert(!rnnc_plan_dynamic(op, 6, 7, 0), "no barrier before");
  cr_assert(!rnnc_plan_dynamic(op, 0, 7, 1), "a barrier only");
  PlanOp small = call(8, 1, 1, 8), old = call(1000, 3, 1, 0);
  cr_assert(!rnnc_plan_dynamic(&small, 0, 1, 1), "one chunk");
  cr_assert(!rnnc_plan_dynamic(&old, 0, 1, 1), "chunk 0");
}

/* a loop of 5 steps of one fenced op: every element covered once per step,
 * calls at grain multiples, at least chunk grains but the range's last */
Test(exec, dynamic_op_covers_every_grain_once_per_step)
{
  for (int nth = 2; nth <= 3; nth++) {
    PlanOp op[] = {{.kind = PK_LOOP, .T = 5, .nbody = 2}, call(1000, 3, 0, 2), bar};
    cr_assert(rnnc_plan_dynamic(op, 1, 3, 1));
    Rec *r = run(op, 3, nth, -1);
    for (int i = 0; i < 1000; i++)
      cr_assert_eq(r->count[i], 5, "%d threads: element %d covered %d times", nth, i, r->count[i]);
    for (int c = 0; c < r->ncall; c++) {
      cr_assert_eq(r->lo[c] % 3, 0, "a call starts at %lld", (long long)r->lo[c]);
      cr_assert(r->hi[c] - r->lo[c] >= 6 || r->hi[c] == 1000, "a call of [%lld, %lld)", (long long)r->lo[c],
                (long long)r->hi[c]);
    }
    cr_assert(r->ncall > 5 * nth, "%d calls: not chunked", r->ncall);
  }
}

/* not fenced, or chunk 0: each thread's share is rnnc_plan_share's */
Test(exec, unfenced_and_chunkless_ops_keep_static_shares)
{
  PlanOp other = call(7, 1, 1, 1);
  other.fn = 2;
  PlanOp plans[2][3] = {{bar, call(1000, 3, 0, 2), other}, {bar, call(1000, 3, 1, 0), bar}};
  for (int p = 0; p < 2; p++)
    for (int nth = 2; nth <= 3; nth++) {
      Rec *r = run(plans[p], 3, nth, -1);
      for (int t = 0; t < nth; t++) {
        int64_t lo, hi;
        rnnc_plan_share(1000, 3, t, nth, &lo, &hi);
        for (int64_t i = lo; i < hi; i++)
          cr_assert_eq(r->owner[i], t, "plan %d, %d threads: element %lld by thread %d, not %d", p, nth,
                       (long long)i, r->owner[i], t);
      }
      for (int i = 0; i < 1000; i++)
        cr_assert_eq(r->count[i], 1);
    }
}

/* the thread whose chunk sleeps 200 ms takes no other: the rest of the
 * range (3/4 of it on 2 threads) is the other's */
Test(exec, a_held_up_thread_leaves_the_rest_to_the_others)
{
  PlanOp op[] = {call(800, 1, 1, 4)};
  Rec *r = run(op, 1, 2, 0);
  int slept = r->owner[0];
  int64_t lo, first = rnnc_plan_chunk(800, 4, 2, 0, &lo), mine = 0;
  for (int i = 0; i < 800; i++) {
    cr_assert_eq(r->count[i], 1);
    mine += r->owner[i] == slept;
  }
  cr_assert_eq(mine, first, "the held-up thread covered %lld elements, not just its first chunk's %lld",
               (long long)mine, (long long)first);
}

/* The profile (rnnc_plan_exec_prof): per op and thread, calls as the
 * executor made them (a loop's body once per step, a dynamic op per chunk),
 * the 200 ms a call sleeps in its thread's busy time, and the other
 * thread's wait for it at the barrier after; the whole run in wall. */
Test(exec, profile_times_calls_and_waits)
{
  enum { NOP = 5, NTH = 2 };
  /* op 1: static, thread 0's share sleeps; ops 2-4: a loop of 3 steps of a
   * static op and a barrier */
  PlanOp op[NOP] = {bar, call(100, 1, 1, 0), {.kind = PK_LOOP, .T = 3, .nbody = 2}, call(10, 1, 0, 0), bar};
  double busy[NOP * NTH] = {0}, wait[NOP * NTH] = {0};
  int64_t calls[NOP * NTH] = {0};
  PlanProf p = {.nth = NTH, .busy = busy, .wait = wait, .calls = calls};
  Rec *r = run_prof(op, NOP, NTH, 0, &p);
  cr_assert_eq(r->ncall, 2 + 3 * 2);
  for (int t = 0; t < NTH; t++) {
    cr_assert_eq(calls[1 * NTH + t], 1, "op 1, thread %d: %lld calls", t, (long long)calls[1 * NTH + t]);
    cr_assert_eq(calls[3 * NTH + t], 3, "op 3, thread %d: %lld calls", t, (long long)calls[3 * NTH + t]);
    cr_assert_eq(calls[0 * NTH + t] + calls[2 * NTH + t] + calls[4 * NTH + t], 0, "a barrier or loop called");
    cr_assert_eq(wait[3 * NTH + t], 0, "op 3 has no barrier, yet a wait");
  }
  int slept = r->owner[0], other = 1 - slept;
  cr_assert(busy[1 * NTH + slept] >= 0.19, "the sleeping call took %g s", busy[1 * NTH + slept]);
  cr_assert(busy[1 * NTH + other] < 0.1, "the other call took %g s", busy[1 * NTH + other]);
  cr_assert(wait[1 * NTH + other] >= 0.15, "the other thread waited %g s", wait[1 * NTH + other]);
  cr_assert(wait[1 * NTH + slept] < 0.1, "the sleeping thread waited %g s", wait[1 * NTH + slept]);
  cr_assert(p.wall >= 0.19 && p.wall < 10, "the run took %g s", p.wall);
  /* a second run adds; a dynamic op counts its chunks */
  PlanOp dyn[] = {call(800, 1, 1, 4)};
  double b2[NTH] = {0}, w2[NTH] = {0};
  int64_t c2[NTH] = {0};
  PlanProf q = {.nth = NTH, .busy = b2, .wait = w2, .calls = c2};
  for (int k = 0; k < 2; k++) {
    r = run_prof(dyn, 1, NTH, -1, &q);
    cr_assert_eq(c2[0] + c2[1], (k + 1) * (int64_t)r->ncall, "run %d: %lld chunks counted, %d called", k,
                 (long long)(c2[0] + c2[1]), r->ncall);
  }
}
