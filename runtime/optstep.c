/* optstep.c — the optimizer's step over the caller's memory: the config
 * check, learning-rate schedules, the chunk tables, and one update as
 * compiled kernels (compiler/optgen.c) in one OpenMP parallel region.
 * require: parameters, gradients, state buffers and tables (OptStep).
 * produce: per rnnc_opt_step, the global norm of the gradients and the
 * update of every parameter that is not frozen, in place, as torch.optim
 * 1.13 computes it after torch.nn.utils.clip_grad_value_ and
 * clip_grad_norm_ (gradients themselves are left as they are).
 *
 * The JIT's optimizer (optim.c) and a compiled training step
 * (aot_rt.c) both run this code: their updates are bitwise the same.
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
 * Plain C, libm and OpenMP: part of librnnc_rt.a, so every global here is
 * rnnc_-prefixed. */
#include <math.h>
#include <omp.h>
#include <stdio.h>

#include "ir.h"

_Static_assert((int)OPT_SGD == (int)RNNC_SGD && (int)OPT_ADAM == (int)RNNC_ADAM &&
                   (int)OPT_ADAMW == (int)RNNC_ADAMW,
               "optimizer kinds");
_Static_assert((int)LR_CONSTANT == (int)RNNC_LR_CONSTANT && (int)LR_STEP == (int)RNNC_LR_STEP &&
                   (int)LR_COSINE == (int)RNNC_LR_COSINE,
               "schedules");

/* The scalar arguments of one step's kernels. */
typedef struct StepArgs {
  float clipv, scale;
  float neglr, wd, momentum; /* SGD */
  int32_t mode;
  float decay, beta1, omb1, beta2, omb2, negstep, bc2sqrt, eps; /* Adam(W) */
} StepArgs;

/* ---- the config -------------------------------------------------------------- */

void rnnc_optim_defaults(rnnc_optim_config *c, int kind)
{
  if (!c)
    return;
  *c = (rnnc_optim_config){.kind = kind, .lr = kind == RNNC_SGD ? 0.1 : 1e-3, .beta1 = 0.9, .beta2 = 0.999,
                           .eps = 1e-8, .weight_decay = kind == RNNC_ADAMW ? 0.01 : 0, .clip_norm = 5,
                           .schedule = RNNC_LR_CONSTANT, .step_size = 1, .gamma = 1};
}

OptConfig rnnc_opt_config(const rnnc_optim_config *c)
{
  /* the kinds and schedules have the same numbers (asserted above) */
  return (OptConfig){.kind = c->kind, .lr = c->lr, .momentum = c->momentum, .beta1 = c->beta1,
                     .beta2 = c->beta2, .eps = c->eps, .weight_decay = c->weight_decay,
                     .clip_norm = c->clip_norm, .clip_value = c->clip_value, .sched = c->schedule,
                     .step_size = c->step_size, .gamma = c->gamma, .warmup = c->warmup, .total = c->total,
                     .min_lr = c->min_lr};
}

int rnnc_opt_check(const OptConfig *c, char *err, size_t errlen)
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
  return RNNC_OK;
#undef BAD
}

/* ---- schedules ------------------------------------------------------------ */

double rnnc_opt_lr(const OptConfig *c, int64_t step)
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

/* ---- chunks ---------------------------------------------------------------- */

int64_t rnnc_opt_nchunk(const OptParam *p, int np)
{
  int64_t n = 0;
  for (int i = 0; i < np; i++)
    n += p[i].frozen ? 0 : (p[i].numel + OPT_CHUNK - 1) / OPT_CHUNK;
  return n;
}

void rnnc_opt_tables(const OptParam *p, int np, int64_t *cfirst, int64_t *cstart)
{
  cfirst[0] = 0;
  cstart[0] = 0;
  for (int i = 0; i < np; i++) {
    int64_t nc = p[i].frozen ? 0 : (p[i].numel + OPT_CHUNK - 1) / OPT_CHUNK;
    cfirst[i + 1] = cfirst[i] + nc;
    for (int64_t ch = cfirst[i]; ch < cfirst[i + 1]; ch++) {
      int64_t left = p[i].numel - (ch - cfirst[i]) * OPT_CHUNK;
      cstart[ch + 1] = cstart[ch] + (left < OPT_CHUNK ? left : OPT_CHUNK);
    }
  }
}

/* ---- one step ------------------------------------------------------------------ */

/* The first chunk that starts at or after trainable element e. */
static int64_t first_chunk_from(const OptStep *s, int64_t e)
{
  int64_t lo = 0, hi = s->nchunk;
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (s->cstart[mid] < e)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

/* Thread t of nt: chunks [*c0, *c1), from the first chunk starting at or
 * after t/nt of the trainable elements. */
static void share(const OptStep *s, int t, int nt, int64_t *c0, int64_t *c1)
{
  int64_t total = s->cstart[s->nchunk];
  *c0 = t == 0 ? 0 : first_chunk_from(s, total / nt * t + total % nt * t / nt);
  *c1 = t == nt - 1 ? s->nchunk : first_chunk_from(s, total / nt * (t + 1) + total % nt * (t + 1) / nt);
}

/* phase 0: the sums of squares of chunks [c0, c1); 1: their update. */
static void run(const OptStep *s, int phase, int64_t c0, int64_t c1, const StepArgs *a)
{
  for (int i = 0; i < s->np; i++) {
    int64_t f = s->cfirst[i], l = s->cfirst[i + 1];
    int64_t b = c0 > f ? c0 : f, e = c1 < l ? c1 : l;
    if (b >= e)
      continue;
    const OptParam *p = &s->p[i];
    int64_t lo = (b - f) * OPT_CHUNK, hi = (e - f) * OPT_CHUNK;
    if (hi > p->numel)
      hi = p->numel;
    if (phase == 0)
      s->k.sumsq(p->g, lo, hi, a->clipv, s->part + f);
    else if (s->c->kind == OPT_SGD)
      s->k.sgd(p->w, p->g, s->s1[i], lo, hi, a->clipv, a->scale, a->neglr, a->wd, a->momentum, a->mode);
    else
      s->k.adam(p->w, p->g, s->s1[i], s->s2[i], lo, hi, a->clipv, a->scale, a->wd, a->decay, a->beta1, a->omb1,
                a->beta2, a->omb2, a->negstep, a->bc2sqrt, a->eps);
  }
}

/* The scalars of step, as PyTorch rounds them (Python floats in double,
 * cast to float where they meet a float32 tensor). */
static StepArgs step_args(const OptConfig *c, int64_t step)
{
  double lr = rnnc_opt_lr(c, step);
  StepArgs a = {0};
  a.clipv = c->clip_value > 0 ? (float)c->clip_value : INFINITY;
  a.scale = 1;
  a.wd = (float)c->weight_decay;
  if (c->kind == OPT_SGD) {
    a.neglr = (float)-lr;
    a.momentum = (float)c->momentum;
    a.mode = c->momentum == 0 ? OPT_SGD_PLAIN : step == 0 ? OPT_SGD_FIRST : OPT_SGD_MOMENTUM;
    return a;
  }
  double t = (double)(step + 1); /* PyTorch's step_t after += 1 */
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

int rnnc_opt_step(const OptStep *s, int64_t step, int nthreads, double *gnorm, int *bad)
{
  *gnorm = 0;
  *bad = -1;
  StepArgs a = step_args(s->c, step);
  int n = nthreads > 0 ? nthreads : omp_get_max_threads();
  if (n > s->nchunk)
    n = s->nchunk > 0 ? (int)s->nchunk : 1;
  double total = 0;
  int badi = -1;
  if (s->nchunk > 0) {
#pragma omp parallel num_threads(n)
    {
      int t = omp_get_thread_num(), nt = omp_get_num_threads();
      int64_t c0, c1;
      share(s, t, nt, &c0, &c1);
      run(s, 0, c0, c1, &a);
#pragma omp barrier
      /* every thread reduces the partials itself, in the same order, to
       * the same bits: no second barrier */
      double tot = 0;
      int b = -1;
      for (int i = 0; i < s->np && b < 0; i++) {
        double sum = 0;
        for (int64_t ch = s->cfirst[i]; ch < s->cfirst[i + 1]; ch++)
          sum += s->part[ch];
        if (!isfinite(sum))
          b = i;
        tot += sum;
      }
      StepArgs mine = a;
      mine.scale = clip_scale(s->c->clip_norm, sqrt(tot));
      if (b < 0)
        run(s, 1, c0, c1, &mine);
      if (t == 0)
        total = tot, badi = b;
    }
  }
  *gnorm = sqrt(total); /* Inf or NaN when a gradient is not */
  if (badi >= 0) {
    *bad = badi;
    return RNNC_EINPUT;
  }
  return RNNC_OK;
}
