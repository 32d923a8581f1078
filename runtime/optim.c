/* optim.c — the JIT's optimizer: its state buffers and tables, its kernels
 * compiled by compiler/optgen.c, its step count, and checkpoints of its
 * state. The step itself (config check, schedules, chunk tables, the
 * parallel region) is runtime/optstep.c's, which a compiled training step
 * runs too.
 * require: parameters and their gradients (the caller's buffers). produce:
 * per optim_step, the global norm of the gradients and the update of every
 * parameter that is not frozen, in place (optstep.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

struct Optim {
  OptConfig c;
  int np;
  OptParam *p;        /* [np] the caller's pointers; names copied */
  float **s1, **s2;   /* [np] state: SGD momentum buffer, or Adam's m and v;
                         NULL for a frozen parameter and where the kind has none */
  int64_t step;       /* steps taken */
  Jit *jit;
  OptKernels k;
  int64_t *cfirst;    /* [np + 1] parameter i's chunks are cfirst[i] .. cfirst[i+1]-1 */
  int64_t nchunk;
  int64_t *cstart;    /* [nchunk + 1] trainable elements before each chunk */
  double *part;       /* [nchunk] per chunk: the sum of squares */
};

double optim_lr(const OptConfig *c, int64_t step) { return rnnc_opt_lr(c, step); }

/* ---- config ------------------------------------------------------------------ */

/* RNNC_EINPUT with a message unless c and p are usable. */
static int check(const OptConfig *c, const OptParam *p, int np, char *err, size_t errlen)
{
#define BAD(...) return snprintf(err, errlen, __VA_ARGS__), RNNC_EINPUT
  int rc = rnnc_opt_check(c, err, errlen);
  if (rc != RNNC_OK)
    return rc;
  if (np < 0)
    BAD("%d parameters", np);
  for (int i = 0; i < np; i++) {
    if (!p[i].name || !*p[i].name)
      BAD("parameter %d has no name", i);
    if (p[i].numel < 0)
      BAD("parameter '%s' has %lld elements", p[i].name, (long long)p[i].numel);
    if (!p[i].frozen && p[i].numel > 0 && (!p[i].w || !p[i].g))
      BAD("parameter '%s' has no %s", p[i].name, p[i].w ? "gradient" : "data");
    for (int j = 0; j < i; j++)
      if (!strcmp(p[i].name, p[j].name))
        BAD("parameter '%s' appears twice", p[i].name);
  }
  return RNNC_OK;
#undef BAD
}

/* ---- lifetime ---------------------------------------------------------------- */

/* The state buffers of a kind: SGD 1 with momentum (else 0), Adam(W) 2. */
static int nstate(const OptConfig *c) { return c->kind == OPT_SGD ? c->momentum != 0 : 2; }

int optim_new(const OptConfig *c, const OptParam *p, int np, Optim **out, char *err, size_t errlen)
{
  *out = NULL;
  int rc = check(c, p, np, err, errlen);
  if (rc != RNNC_OK)
    return rc;
  Optim *o = calloc(1, sizeof *o);
  if (!o)
    return snprintf(err, errlen, "optimizer: out of memory"), RNNC_ENOMEM;
  o->c = *c;
  o->np = np;
  size_t n = np > 0 ? (size_t)np : 1;
  o->p = calloc(n, sizeof *o->p);
  o->s1 = calloc(n, sizeof *o->s1);
  o->s2 = calloc(n, sizeof *o->s2);
  o->cfirst = calloc(n + 1, sizeof *o->cfirst);
  int ok = o->p && o->s1 && o->s2 && o->cfirst;
  int ns = nstate(c);
  for (int i = 0; ok && i < np; i++) {
    o->p[i] = p[i];
    o->p[i].name = strdup(p[i].name);
    ok = o->p[i].name != NULL;
    int trained = !p[i].frozen && p[i].numel > 0;
    if (ok && trained && ns >= 1)
      ok = (o->s1[i] = calloc((size_t)p[i].numel, sizeof(float))) != NULL;
    if (ok && trained && ns >= 2)
      ok = (o->s2[i] = calloc((size_t)p[i].numel, sizeof(float))) != NULL;
  }
  if (ok) {
    o->nchunk = rnnc_opt_nchunk(o->p, np);
    o->cstart = calloc((size_t)o->nchunk + 1, sizeof *o->cstart);
    o->part = calloc((size_t)o->nchunk + 1, sizeof *o->part);
    ok = o->cstart && o->part;
  }
  if (!ok) {
    optim_free(o);
    return snprintf(err, errlen, "optimizer: out of memory"), RNNC_ENOMEM;
  }
  rnnc_opt_tables(o->p, np, o->cfirst, o->cstart);
  rc = optgen_jit(&o->jit, &o->k, err, errlen);
  if (rc != RNNC_OK) {
    optim_free(o);
    return rc;
  }
  *out = o;
  return RNNC_OK;
}

void optim_free(Optim *o)
{
  if (!o)
    return;
  for (int i = 0; i < o->np; i++) {
    if (o->p)
      free((char *)o->p[i].name);
    if (o->s1)
      free(o->s1[i]);
    if (o->s2)
      free(o->s2[i]);
  }
  free(o->p);
  free(o->s1);
  free(o->s2);
  free(o->cfirst);
  free(o->cstart);
  free(o->part);
  jit_free(o->jit);
  free(o);
}

int64_t optim_steps(const Optim *o) { return o->step; }

/* ---- one step ------------------------------------------------------------------ */

int optim_step(Optim *o, int nthreads, double *gnorm, int *bad, char *err, size_t errlen)
{
  OptStep s = {.c = &o->c, .np = o->np, .p = o->p, .s1 = o->s1, .s2 = o->s2, .cfirst = o->cfirst,
               .nchunk = o->nchunk, .cstart = o->cstart, .part = o->part, .k = o->k};
  int rc = rnnc_opt_step(&s, o->step, nthreads, gnorm, bad);
  if (rc != RNNC_OK) {
    snprintf(err, errlen, "gradient of '%s' is not finite", o->p[*bad].name);
    return rc;
  }
  o->step++;
  return RNNC_OK;
}

/* ---- checkpoints ------------------------------------------------------------------ */

static const char *const bufname[2][2] = {{"momentum", NULL}, {"m", "v"}};

/* "optim.<name>.<buf>", malloc'ed (NULL when out of memory). */
static char *statename(const char *name, const char *buf)
{
  size_t n = strlen(name) + strlen(buf) + 8;
  char *s = malloc(n);
  if (s)
    snprintf(s, n, "optim.%s.%s", name, buf);
  return s;
}

int optim_save(const Optim *o, TensorSet *out)
{
  int adam = o->c.kind != OPT_SGD;
  for (int i = 0; i < o->np; i++)
    for (int k = 0; k < 2; k++) {
      float *s = k ? o->s2[i] : o->s1[i];
      if (!s)
        continue;
      char *name = statename(o->p[i].name, bufname[adam][k]);
      Tensor *t = name ? tset_add(out, name, DT_F32, 1, &o->p[i].numel) : NULL;
      free(name);
      if (!t)
        return RNNC_ENOMEM;
      memcpy(t->data, s, (size_t)o->p[i].numel * sizeof(float));
    }
  char buf[32];
  snprintf(buf, sizeof buf, "%lld", (long long)o->step);
  return tset_setmeta(out, "optim.step", buf);
}

int optim_restore(Optim *o, const TensorSet *in, char *err, size_t errlen)
{
  int adam = o->c.kind != OPT_SGD;
  const char *sv = tset_getmeta(in, "optim.step");
  if (!sv)
    return snprintf(err, errlen, "checkpoint has no 'optim.step'"), RNNC_EFORMAT;
  char *end;
  long long step = strtoll(sv, &end, 10);
  if (end == sv || *end || step < 0)
    return snprintf(err, errlen, "checkpoint's optim.step '%s' is not a step count", sv), RNNC_EFORMAT;
  /* check everything, then copy: a failure changes nothing */
  for (int pass = 0; pass < 2; pass++)
    for (int i = 0; i < o->np; i++)
      for (int k = 0; k < 2; k++) {
        float *s = k ? o->s2[i] : o->s1[i];
        if (!s)
          continue;
        char *name = statename(o->p[i].name, bufname[adam][k]);
        if (!name)
          return snprintf(err, errlen, "optimizer: out of memory"), RNNC_ENOMEM;
        Tensor *t = tset_find(in, name);
        int rc = t && t->dtype == DT_F32 && tensor_numel(t) == o->p[i].numel ? RNNC_OK : RNNC_EFORMAT;
        if (!t)
          snprintf(err, errlen, "checkpoint has no '%s'", name);
        else if (t->dtype != DT_F32)
          snprintf(err, errlen, "checkpoint's '%s' is %s, not F32", name, dtype_name(t->dtype));
        else if (rc != RNNC_OK)
          snprintf(err, errlen, "checkpoint's '%s' has %lld elements, the parameter %lld", name,
                   (long long)tensor_numel(t), (long long)o->p[i].numel);
        free(name);
        if (rc != RNNC_OK)
          return rc;
        if (pass == 1)
          memcpy(s, t->data, (size_t)o->p[i].numel * sizeof(float));
      }
  o->step = step;
  return RNNC_OK;
}
