/* cmodel.c — running a compiled model: its tensors by name, the checks of
 * integer inputs before a run (the interpreter's messages), and the plans.
 * require: a CModel from cmodel_compile. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "compile.h"

int cmodel_ntensor(const CModel *cm) { return cm->nt; }
CTensor *cmodel_tensor(CModel *cm, int i) { return i >= 0 && i < cm->nt ? &cm->t[i] : NULL; }
double cmodel_compile_ms(const CModel *cm) { return cm->compile_ms; }
const Plan *cmodel_plan(const CModel *cm) { return &cm->plan; }
const Plan *cmodel_bplan(const CModel *cm) { return &cm->bplan; }

CTensor *cmodel_find(CModel *cm, const char *name)
{
  for (int k = 0; k < cm->nt; k++)
    if (strcmp(cm->t[k].name, name) == 0)
      return &cm->t[k];
  return NULL;
}

size_t cmodel_bytes(const CModel *cm)
{
  size_t b = (cm->wsfloats + cm->twsfloats) * sizeof(float);
  for (int k = 0; k < cm->nt; k++)
    if (!cm->t[k].shared)
      b += (size_t)cm->t[k].numel * 4;
  return b;
}

int cmodel_share_params(CModel *dst, CModel *src, char *err, size_t errlen)
{
  for (int k = 0; k < dst->nt; k++) { /* check every one before changing any */
    CTensor *d = &dst->t[k];
    if (d->role != CT_PARAM)
      continue;
    CTensor *s = cmodel_find(src, d->name);
    if (!s || s->role != CT_PARAM || s->numel != d->numel) {
      snprintf(err, errlen, "parameter '%s' %s", d->name, s ? "has another shape in the source" : "is not in the source");
      return s ? RNNC_ESHAPE : RNNC_EINPUT;
    }
  }
  for (int k = 0; k < dst->nt; k++) {
    CTensor *d = &dst->t[k];
    if (d->role != CT_PARAM)
      continue;
    if (!d->shared)
      ctensor_free(d);
    d->data = cmodel_find(src, d->name)->data;
    d->shared = 1;
    dst->buf[d->slot] = d->data;
  }
  return RNNC_OK;
}

void cmodel_reset_state(CModel *cm)
{
  for (int k = 0; k < cm->nt; k++)
    if (cm->t[k].role == CT_STATE)
      memset(cm->t[k].data, 0, (size_t)cm->t[k].numel * 4);
}

/* The interpreter's messages for a token id or target out of range
 * (runtime/aot_rt.c's check, which a compiled model's runs use too). */
static int check(const CModel *cm, char *err, size_t errlen)
{
  for (int c = 0; c < cm->ncheck; c++) {
    const Check *ch = &cm->check[c];
    const CTensor *t = &cm->t[ch->tensor];
    rnnc_aot_check ac = {.tensor = ch->tensor, .bound = ch->bound, .target = ch->target,
                         .hasignore = ch->hasignore, .ignore = ch->ignore, .hastime = ch->hastime, .B = ch->B};
    int st = rnnc_check_input(t->name, t->data, t->numel, &ac, err, errlen);
    if (st)
      return st;
  }
  return RNNC_OK;
}

int cmodel_run(CModel *cm, int grad, int nthreads, char *err, size_t errlen)
{
  return cmodel_run_prof(cm, grad, nthreads, NULL, NULL, err, errlen);
}

int cmodel_run_prof(CModel *cm, int grad, int nthreads, PlanProf *fwd, PlanProf *bwd, char *err, size_t errlen)
{
  if (grad && !cm->grad) {
    snprintf(err, errlen, "the model was compiled without its backward pass");
    return RNNC_EMISUSE;
  }
  int st = check(cm, err, errlen);
  if (st)
    return st;
  /* the threads' scratch, kept from run to run (a multiple of 64 bytes each) */
  int nth = nthreads > 0 ? nthreads : omp_get_max_threads();
  size_t per = (cm->plan.scratch > cm->bplan.scratch ? cm->plan.scratch : cm->bplan.scratch);
  per = (per + 15) / 16 * 16;
  size_t need = per * sizeof(float) * (size_t)nth;
  if (need > cm->scratchbytes) {
    rnnc_mem_free(cm->scratch, cm->scratchbytes);
    cm->scratchbytes = 0;
    if (!(cm->scratch = rnnc_mem_alloc(need))) {
      snprintf(err, errlen, "out of memory for the threads' scratch (%zu MB)", need >> 20);
      return RNNC_ENOMEM;
    }
    cm->scratchbytes = need;
  }
  rnnc_plan_exec_prof(cm->plan.op, cm->plan.nop, cm->fn, cm->buf, cm->scratch, per, nth, fwd);
  if (grad)
    rnnc_plan_exec_prof(cm->bplan.op, cm->bplan.nop, cm->bfn, cm->buf, cm->scratch, per, nth, bwd);
  return RNNC_OK;
}
