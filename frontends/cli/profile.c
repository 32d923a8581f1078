/* profile.c — `rnnc run --profile N`: the compiled plans run N more times
 * with every kernel call and barrier timed per thread (rnnc_plan_exec_prof),
 * printed as one table per plan in plan order: where a step's time goes,
 * and which thread waited for which. */
#include <omp.h>
#include <stdlib.h>

#include "cli.h"

static int prof_alloc(PlanProf *p, const Plan *pl, int nth)
{
  size_t n = (size_t)(pl->nop > 0 ? pl->nop : 1) * (size_t)nth;
  p->nth = nth;
  p->busy = calloc(n, sizeof *p->busy);
  p->wait = calloc(n, sizeof *p->wait);
  p->calls = calloc(n, sizeof *p->calls);
  return p->busy && p->wait && p->calls;
}

static void prof_free(PlanProf *p)
{
  free(p->busy);
  free(p->wait);
  free(p->calls);
}

/* Per-thread milliseconds per run of x[k·nth ...], "a / b / ..." (the
 * smallest and largest past 4 threads). */
static char *per_thread(Arena *a, const double *x, int nth, int runs)
{
  if (nth > 4) {
    double lo = x[0], hi = x[0];
    for (int i = 1; i < nth; i++)
      lo = x[i] < lo ? x[i] : lo, hi = x[i] > hi ? x[i] : hi;
    return aprintf(a, "%.3f .. %.3f", lo * 1e3 / runs, hi * 1e3 / runs);
  }
  char *s = aprintf(a, "%.3f", x[0] * 1e3 / runs);
  for (int i = 1; i < nth; i++)
    s = aprintf(a, "%s / %.3f", s, x[i] * 1e3 / runs);
  return s;
}

static double largest(const double *x, int n)
{
  double m = 0;
  for (int i = 0; i < n; i++)
    m = x[i] > m ? x[i] : m;
  return m;
}

static void print_plan(Arena *a, const char *what, const Plan *pl, const PlanProf *p, int runs)
{
  int nth = p->nth;
  double wall = p->wall > 0 ? p->wall : 1e-9;
  printf("%s: %.2f ms per run\n", what, wall * 1e3 / runs);
  Table t;
  table_init(&t, a, 5);
  t.right[1] = t.right[2] = t.right[3] = t.right[4] = 1;
  table_row(&t, (const char *[]){"op", "calls", "busy ms", "%", "wait ms"});
  double *busy = calloc((size_t)nth, sizeof *busy), *wait = calloc((size_t)nth, sizeof *wait);
  if (!busy || !wait)
    die("out of memory");
  int endloop = -1;
  for (int k = 0; k < pl->nop; k++) {
    const PlanOp *o = &pl->op[k];
    const char *in = k <= endloop ? "  " : "";
    if (o->kind == PK_LOOP) {
      table_row(&t, (const char *[]){aprintf(a, "loop over %lld steps%s", (long long)o->T,
                                             o->reverse ? ", reversed" : ""),
                                     NULL, NULL, NULL, NULL});
      endloop = k + o->nbody;
      continue;
    }
    const double *b = p->busy + (size_t)k * nth, *w = p->wait + (size_t)k * nth;
    long long calls = 0;
    for (int i = 0; i < nth; i++) {
      calls += p->calls[(size_t)k * nth + i];
      busy[i] += b[i];
      wait[i] += w[i];
    }
    const char *name = o->n == 0 ? "(barrier)" : pl->fnname[o->fn];
    table_row(&t, (const char *[]){aprintf(a, "%s%s", in, name), fmt_count(a, (calls + runs / 2) / runs),
                                   per_thread(a, b, nth, runs),
                                   aprintf(a, "%.1f", 100 * largest(b, nth) / wall),
                                   o->barrier && nth > 1 ? per_thread(a, w, nth, runs) : NULL});
  }
  table_row(&t, (const char *[]){"all ops", NULL, per_thread(a, busy, nth, runs),
                                 aprintf(a, "%.1f", 100 * largest(busy, nth) / wall),
                                 nth > 1 ? per_thread(a, wait, nth, runs) : NULL});
  table_print(stdout, &t, "  ");
  free(busy);
  free(wait);
}

int jit_profile(CModel *cm, Arena *a, int grad, int nthreads, int runs)
{
  int nth = nthreads > 0 ? nthreads : omp_get_max_threads();
  const Plan *fp = cmodel_plan(cm), *bp = cmodel_bplan(cm);
  PlanProf f = {0}, b = {0};
  char err[512];
  int st = EXIT_OK;
  if (!prof_alloc(&f, fp, nth) || !prof_alloc(&b, bp, nth)) {
    st = user_error("out of memory for the profile");
    goto done;
  }
  for (int r = 0; r < runs && !st; r++)
    if (cmodel_run_prof(cm, grad, nthreads, &f, grad ? &b : NULL, err, sizeof err) != RNNC_OK)
      st = user_error("%s", err);
  if (st)
    goto done;
  printf("profile: %d run%s, %d thread%s; per op: its calls per run (all threads), the ms per run in\n"
         "its calls (busy) and in the barrier after it (wait), thread 0 / 1 / ..., and the busiest thread's\n"
         "busy time in %% of the run\n",
         runs, runs == 1 ? "" : "s", nth, nth == 1 ? "" : "s");
  print_plan(a, "forward", fp, &f, runs);
  if (grad)
    print_plan(a, "backward", bp, &b, runs);
done:
  prof_free(&f);
  prof_free(&b);
  return st;
}
