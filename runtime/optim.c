/* optim.c — the optimizer: config checks, state buffers, learning-rate
 * schedules, and one step as compiled kernels (compiler/optgen.c) in one
 * OpenMP parallel region.
 * require: parameters and their gradients (the caller's buffers). produce:
 * per optim_step, the global norm of the gradients and the update of every
 * parameter that is not frozen, in place, as torch.optim 1.13 computes it
 * after torch.nn.utils.clip_grad_value_ and clip_grad_norm_ (gradients
 * themselves are left as they are).
 *
 * Work is cut into chunks of OPT_CHUNK elements of each trainable
 * parameter, listed parameter by parameter. A step is one parallel region:
 *   1. each thread computes the sums of squares of its share of the chunks
 *      (optgen's _sumsq: a double per chunk, in an order fixed by the chunk);
 *   2. a barrier; then every thread adds, per parameter, its chunks' sums
 *      in chunk order, checks them (the first parameter whose sum is not
 *      finite makes the step an error, and nothing is written), then the
 *      parameters' sums in parameter order: norm = sqrt of that; and the
 *      clip scale (the same bits in every thread: one barrier, not two);
 *   3. each thread updates its share (_sgd or _adam).
 * A thread's share is a run of whole chunks with about as many elements as
 * the others'; which thread computes an element never changes what it
 * computes, so the results are bitwise the same for any number of threads.
 *
 * Everything here is plain C and OpenMP; the kernels come as OptKernels. */
#include <math.h>
#include <omp.h>
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

/* The scalar arguments of one step's kernels. */
typedef struct StepArgs {
  float clipv, scale;
  float neglr, wd, momentum; /* SGD */
  int32_t mode;
  float decay, beta1, omb1, beta2, omb2, negstep, bc2sqrt, eps; /* Adam(W) */
} StepArgs;

/* ---- schedules ------------------------------------------------------------ */

double optim_lr(const OptConfig *c, int64_t step)
{
  switch (c->sched) {
  case LR_STEP:
    if (c->step_size < 1)
      return c->lr;
    return c->lr * pow(c->gamma, (double)(step / c->step_size));
  case LR_COSINE:
    if (step < c->warmup)
      return c->lr * (double)(step + 1) / (double)c->warmup;
    if (step >= c->total)
      return c->min_lr;
    {
      double p = (double)(step - c->warmup) / (double)(c->total - c->warmup);
      return c->min_lr + (c->lr - c->min_lr) * 0.5 * (1.0 + cos(M_PI * p));
    }
  default:
    return c->lr;
  }
}

/* ---- config ------------------------------------------------------------------ */

/* RNNC_EINPUT with a message unless c and p are usable. */
static int check(const OptConfig *c, const OptParam *p, int np, char *err, size_t errlen)
{
#define BAD(...) return snprintf(err, errlen, __VA_ARGS__), RNNC_EINPUT
  if (c->kind != OPT_SGD && c->kind != OPT_ADAM && c->kind != OPT_ADAMW)
    BAD("unknown optimizer kind %d", c->kind);
  if (isinf(c->lr))
    BAD("learning rate must be finite, got %g", c->lr);
  if (!(c->lr > 0))
    BAD("learning rate must be > 0, got %g", c->lr);
  if (!(c->weight_decay >= 0) || isinf(c->weight_decay))
    BAD("weight decay must be >= 0 and finite, got %g", c->weight_decay);
  if (c->kind == OPT_SGD && !(c->momentum >= 0 && c->momentum < 1))
    BAD("momentum must be in [0, 1), got %g", c->momentum);
  if (c->kind != OPT_SGD) {
    if (!(c->beta1 >= 0 && c->beta1 < 1))
      BAD("beta1 must be in [0, 1), got %g", c->beta1);
    if (!(c->beta2 >= 0 && c->beta2 < 1))
      BAD("beta2 must be in [0, 1), got %g", c->beta2);
    if (!(c->eps > 0) || isinf(c->eps))
      BAD("eps must be > 0 and finite, got %g", c->eps);
  }
  if (isnan(c->clip_norm))
    BAD("clip norm must be a number, got %g", c->clip_norm);
  if (isnan(c->clip_value))
    BAD("clip value must be a number, got %g", c->clip_value);
  switch (c->sched) {
  case LR_CONSTANT:
    break;
  case LR_STEP:
    if (c->step_size < 1)
      BAD("step decay needs a step size >= 1, got %lld", (long long)c->step_size);
    if (!(c->gamma > 0) || isinf(c->gamma))
      BAD("step decay's gamma must be > 0 and finite, got %g", c->gamma);
    break;
  case LR_COSINE:
    if (c->warmup < 0)
      BAD("cosine schedule needs warmup >= 0, got %lld", (long long)c->warmup);
    if (c->total <= c->warmup)
      BAD("cosine schedule needs total steps > warmup (%lld), got %lld", (long long)c->warmup,
          (long long)c->total);
    if (!(c->min_lr >= 0 && c->min_lr <= c->lr))
      BAD("cosine schedule's min_lr must be in [0, lr = %g], got %g", c->lr, c->min_lr);
    break;
  default:
    BAD("unknown learning-rate schedule %d", c->sched);
  }
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
    int64_t nc = p[i].frozen ? 0 : (p[i].numel + OPT_CHUNK - 1) / OPT_CHUNK;
    o->cfirst[i + 1] = o->cfirst[i] + nc;
    if (ok && nc && ns >= 1)
      ok = (o->s1[i] = calloc((size_t)p[i].numel, sizeof(float))) != NULL;
    if (ok && nc && ns >= 2)
      ok = (o->s2[i] = calloc((size_t)p[i].numel, sizeof(float))) != NULL;
  }
  if (ok) {
    o->nchunk = o->cfirst[np > 0 ? np : 0];
    o->cstart = calloc((size_t)o->nchunk + 1, sizeof *o->cstart);
    o->part = calloc((size_t)o->nchunk + 1, sizeof *o->part);
    ok = o->cstart && o->part;
  }
  if (!ok) {
    optim_free(o);
    return snprintf(err, errlen, "optimizer: out of memory"), RNNC_ENOMEM;
  }
  for (int i = 0; i < np; i++)
    for (int64_t ch = o->cfirst[i]; ch < o->cfirst[i + 1]; ch++) {
      int64_t left = o->p[i].numel - (ch - o->cfirst[i]) * OPT_CHUNK;
      o->cstart[ch + 1] = o->cstart[ch] + (left < OPT_CHUNK ? left : OPT_CHUNK);
    }
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

/* Thread t of nt: chunks [*c0, *c1), from the first chunk starting at or
 * after t/nt of the trainable elements. */
static int64_t first_chunk_from(const Optim *o, int64_t e)
{
  int64_t lo = 0, hi = o->nchunk; /* the first ch with cstart[ch] >= e */
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (o->cstart[mid] < e)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

static void share(const Optim *o, int t, int nt, int64_t *c0, int64_t *c1)
{
  int64_t total = o->cstart[o->nchunk];
  *c0 = t == 0 ? 0 : first_chunk_from(o, total / nt * t + total % nt * t / nt);
  *c1 = t == nt - 1 ? o->nchunk : first_chunk_from(o, total / nt * (t + 1) + total % nt * (t + 1) / nt);
}

/* phase 0: the sums of squares of chunks [c0, c1); 1: their update. */
static void run(const Optim *o, int phase, int64_t c0, int64_t c1, const StepArgs *a)
{
  for (int i = 0; i < o->np; i++) {
    int64_t f = o->cfirst[i], l = o->cfirst[i + 1];
    int64_t s = c0 > f ? c0 : f, e = c1 < l ? c1 : l;
    if (s >= e)
      continue;
    const OptParam *p = &o->p[i];
    int64_t lo = (s - f) * OPT_CHUNK, hi = (e - f) * OPT_CHUNK;
    if (hi > p->numel)
      hi = p->numel;
    if (phase == 0)
      o->k.sumsq(p->g, lo, hi, a->clipv, o->part + f);
    else if (o->c.kind == OPT_SGD)
      o->k.sgd(p->w, p->g, o->s1[i], lo, hi, a->clipv, a->scale, a->neglr, a->wd, a->momentum, a->mode);
    else
      o->k.adam(p->w, p->g, o->s1[i], o->s2[i], lo, hi, a->clipv, a->scale, a->wd, a->decay, a->beta1, a->omb1,
                a->beta2, a->omb2, a->negstep, a->bc2sqrt, a->eps);
  }
}

/* The scalars of this step, as PyTorch rounds them (Python floats in
 * double, cast to float where they meet a float32 tensor). */
static StepArgs step_args(const Optim *o)
{
  const OptConfig *c = &o->c;
  double lr = optim_lr(c, o->step);
  StepArgs a = {0};
  a.clipv = c->clip_value > 0 ? (float)c->clip_value : INFINITY;
  a.scale = 1;
  a.wd = (float)c->weight_decay;
  if (c->kind == OPT_SGD) {
    a.neglr = (float)-lr;
    a.momentum = (float)c->momentum;
    a.mode = c->momentum == 0 ? OPT_SGD_PLAIN : o->step == 0 ? OPT_SGD_FIRST : OPT_SGD_MOMENTUM;
    return a;
  }
  double t = (double)(o->step + 1); /* PyTorch's step_t after += 1 */
  double bc1 = 1 - pow(c->beta1, t), bc2 = 1 - pow(c->beta2, t);
  a.decay = 1;
  if (c->kind == OPT_ADAMW) {
    a.decay = (float)(1 - lr * c->weight_decay);
    a.wd = 0;
  }
  a.beta1 = (float)c->beta1;
  a.omb1 = (float)(1 - c->beta1);
  a.beta2 = (float)c->beta2;
  a.omb2 = (float)(1 - c->beta2);
  a.negstep = (float)-(lr / bc1);
  a.bc2sqrt = (float)sqrt(bc2);
  a.eps = (float)c->eps;
  return a;
}

/* clip_grad_norm_'s factor in float32, as PyTorch 1.13 evaluates it:
 * clip_coef = max_norm / (total_norm + 1e-6) is reciprocal(total + 1e-6) *
 * max_norm (Tensor.__rtruediv__), then clamped to at most 1. */
static float clip_scale(double clip_norm, double norm)
{
  if (!(clip_norm > 0))
    return 1;
  float den = (float)norm + (float)1e-6;
  float coef = (1.0f / den) * (float)clip_norm;
  return coef < 1.0f ? coef : 1.0f;
}

int optim_step(Optim *o, int nthreads, double *gnorm, int *bad, char *err, size_t errlen)
{
  *gnorm = 0;
  *bad = -1;
  StepArgs a = step_args(o);
  int n = nthreads > 0 ? nthreads : omp_get_max_threads();
  if (n > o->nchunk)
    n = o->nchunk > 0 ? (int)o->nchunk : 1;
  double total = 0;
  int badi = -1;
  if (o->nchunk > 0) {
#pragma omp parallel num_threads(n)
    {
      int t = omp_get_thread_num(), nt = omp_get_num_threads();
      int64_t c0, c1;
      share(o, t, nt, &c0, &c1);
      run(o, 0, c0, c1, &a);
#pragma omp barrier
      /* every thread reduces the partials itself, in the same order, to
       * the same bits: no second barrier */
      double tot = 0;
      int b = -1;
      for (int i = 0; i < o->np && b < 0; i++) {
        double s = 0;
        for (int64_t ch = o->cfirst[i]; ch < o->cfirst[i + 1]; ch++)
          s += o->part[ch];
        if (!isfinite(s))
          b = i;
        tot += s;
      }
      StepArgs mine = a;
      mine.scale = clip_scale(o->c.clip_norm, sqrt(tot));
      if (b < 0)
        run(o, 1, c0, c1, &mine);
      if (t == 0)
        total = tot, badi = b;
    }
  }
  if (badi >= 0) {
    *bad = badi;
    *gnorm = sqrt(total); /* Inf or NaN */
    snprintf(err, errlen, "gradient of '%s' is not finite", o->p[badi].name);
    return RNNC_EINPUT;
  }
  *gnorm = sqrt(total);
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
