/* pipeline.c — the passes of rnnc in order, each checked before the next, and
 * the IR after any of them (rnnc print --after PASS).
 *
 *   parse     text -> cells and models            frontends/parse.c
 *   verify    names, arity, shapes, dims, params  ir/verify_cell.c, verify_model.c
 *   autodiff  a backward cell per cell,           compiler/autodiff.c
 *             a BPTT plan per model               compiler/bptt.c
 *   schedule  per cell: what runs before, in and   compiler/schedule.c
 *             after the time loop, what is a GEMM
 */
#include <string.h>

#include "ir.h"

const char *const pass_name[NPASS] = {"parse", "verify", "autodiff", "schedule"};

int pass_lookup(const char *name)
{
  for (int i = 0; i < NPASS; i++)
    if (strcmp(pass_name[i], name) == 0)
      return i;
  return -1;
}

/* require: a verified module. produce: md->grad for the chosen models. */
static int differentiate(Module *m, const char *only)
{
  for (int k = 0; k < m->nmodel; k++) {
    Model *md = m->model[k];
    if (only ? strcmp(md->name, only) != 0 : md->loss < 0)
      continue;
    if (!(md->grad = autodiff(m, md)))
      return RNNC_EVERIFY;
  }
  return RNNC_OK;
}

int pipeline(Module *m, const Source *src, int upto, const char *only)
{
  int st = parse(m, src);
  if (st != RNNC_OK || m->diags.nerror || upto == PASS_PARSE)
    return st != RNNC_OK ? st : m->diags.nerror ? RNNC_ESYNTAX : RNNC_OK;
  if ((st = verify(m)) != RNNC_OK || upto == PASS_VERIFY)
    return st;
  if ((st = differentiate(m, only)) != RNNC_OK || upto == PASS_AUTODIFF)
    return st;
  return schedule(m);
}

void print_after(FILE *f, const Module *m, int pass, int withprelude)
{
  print_module(f, m, withprelude);
  if (pass < PASS_AUTODIFF)
    return;
  for (int k = 0; k < m->nmodel; k++) {
    const Model *md = m->model[k];
    if (md->grad) {
      fprintf(f, "\n# ---- BPTT schedule of model %s ----\n", md->name);
      print_schedule(f, md->grad);
    }
  }
  if (pass < PASS_SCHEDULE)
    return;
  for (int k = 0; k < m->ncell; k++)
    if (m->cell[k]->sched)
      print_cellsched(f, m->cell[k]->sched);
}
