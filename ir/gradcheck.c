/* gradcheck.c — check the reference interpreter's gradients against finite
 * differences. require: a verified model with a loss. produce: a report per
 * parameter and float input; changes nothing in the module but the Grad
 * cache that autodiff fills.
 *
 * The point checked, all drawn from one seed:
 *   sizes   the dims of env; T = 5 and B = 3 unless env binds them; header
 *           defaults; every other dim still unbound (a header dim without a
 *           default, a time dim such as S) = 4.
 *   params  init_params (PyTorch's default init) with the seed, in float64.
 *   inputs  token ids uniform in [0, V) of the embedding (or onehot) reading them;
 *           targets uniform in [0, K) of their softmax, and where the softmax
 *           has an ignore index, about one position in four set to it (never
 *           position 0, so some position always counts); float inputs N(0, 1).
 * The analytic gradient is interp_run's in float64. The numeric one is a
 * fourth-order central difference, also in float64,
 *     D(h) = (L(x - 2h) - 8 L(x - h) + 8 L(x + h) - L(x + 2h)) / 12h,
 * on up to ncoord coordinates of each tensor (all of them when it has no
 * more), chosen by a seeded draw without repeats. Its truncation error is
 * O(h^4), so a step of h = 1e-4·max(1, |x|) is exact to well below the
 * tolerance while rounding the loss costs only ~ε·|L|/h ≈ 2e-12·|L|.
 *
 * A kink (relu, step) within the stencil makes the difference meaningless.
 * So D is taken at h and at h/2: when the two disagree by more than the
 * tolerance, the loss is not smooth there and h shrinks tenfold, down to
 * 1e-5·max(1, |x|); a coordinate still not smooth is skipped (counted in the
 * report, not compared). This test does not look at the analytic gradient,
 * so it cannot hide a wrong derivative of a smooth loss. D(h) is compared.
 *
 * The error of a coordinate with analytic a and numeric n is
 *     |a - n| / max(|a|, |n|, floor),   floor = 1e-4 · max(1, |L|)
 * a relative error, except that gradients much smaller than the loss are
 * compared in absolute terms: the difference quotient's own absolute error
 * (rounding, ~1e-12·|L| at h = 1e-4; ~1e-11·|L| at 1e-5) must stay well below
 * tol·floor. A derivative wrong by more than 1e-10·max(1, |L|) in absolute
 * terms, or by more than 1e-6 relative where it exceeds the floor, fails.
 * On every model of examples/ and tests/models/ the error measured with
 * correct derivatives is below 5e-8. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

enum { GC_NCOORD = 16 };
#define GC_STEP 1e-4
#define GC_MINSTEP 1e-5
#define GC_TOL 1e-6
#define GC_FLOOR 1e-4

static int gfail(int st, char *err, size_t errlen, const char *fmt, const char *a, const char *b)
{
  if (err && errlen)
    snprintf(err, errlen, fmt, a, b);
  return st;
}

/* Bind every symbol of d that is still unbound to 4. */
static void bind_rest(Module *m, Env *e, Dim d)
{
  for (int k = 0; k < d.nterm; k++) {
    long v;
    if (!env_get(e, d.t[k].sym, &v))
      env_set(m->arena, e, d.t[k].sym, 4);
  }
}

static void bind_sizes(Module *m, Model *md, const Env *env, Env *e)
{
  if (env)
    for (int i = 0; i < env->n; i++)
      env_set(m->arena, e, env->sym[i], env->val[i]);
  long v;
  const char *T = intern(m->names, "T", 1), *B = intern(m->names, "B", 1);
  if (!env_get(e, T, &v))
    env_set(m->arena, e, T, 5);
  if (!env_get(e, B, &v))
    env_set(m->arena, e, B, 3);
  for (int i = 0; i < md->ndim; i++)
    if (!env_get(e, md->dim[i].name, &v))
      env_set(m->arena, e, md->dim[i].name, md->dim[i].hasdefault ? md->dim[i].def : 4);
  for (int i = 0; i < md->nnode; i++) {
    const MNode *n = &md->node[i];
    for (int k = 0; k < n->shape.rank; k++)
      bind_rest(m, e, n->shape.d[k]);
    for (int p = 0; p < n->nparam; p++)
      for (int k = 0; k < n->param[p].shape.rank; k++)
        bind_rest(m, e, n->param[p].shape.d[k]);
  }
}

/* Add an F64 tensor of the given model shape; NULL when out of memory. */
static Tensor *add64(TensorSet *s, const char *name, const Shape *shape, const Env *e, int dtype)
{
  int64_t dim[TENSOR_MAXRANK];
  for (int k = 0; k < shape->rank; k++) {
    long v = 0;
    dim_eval(shape->d[k], e, &v, NULL);
    dim[k] = v;
  }
  return tset_add(s, name, dtype, shape->rank, dim);
}

void gradcheck_rng(Rng *rng, uint64_t seed) { rng_seed(rng, seed ^ 0x9e3779b97f4a7c15u); }

/* Random inputs as described at the top. */
int gradcheck_inputs(const Model *md, const Env *e, Rng *rng, TensorSet *in, char *err, size_t errlen)
{
  for (int i = 0; i < md->nnode; i++) {
    const MNode *n = &md->node[i];
    if (n->kind != M_INPUT)
      continue;
    Tensor *t = add64(in, n->name, &n->shape, e, n->dtype == DT_I32 ? DT_I64 : DT_F64);
    if (!t)
      return gfail(RNNC_ENOMEM, err, errlen, "out of memory for input '%s'%s", n->name, "");
    int64_t ne = tensor_numel(t);
    if (n->dtype != DT_I32) {
      for (int64_t k = 0; k < ne; k++)
        ((double *)t->data)[k] = rng_normal(rng);
      continue;
    }
    /* the range its readers accept; the ignore index of a softmax reading it */
    long hi = -1, ignore = 0;
    int hasignore = 0;
    for (int j = 0; j < md->nnode; j++) {
      const MNode *u = &md->node[j];
      long v = -1;
      if ((u->kind == M_EMBEDDING || u->kind == M_ONEHOT) && u->arg[0] == i)
        dim_eval(u->size[0], e, &v, NULL);
      if (u->kind == M_SOFTMAX && u->target == i) {
        dim_eval(u->size[0], e, &v, NULL);
        if (u->hasignore) {
          hasignore = 1;
          ignore = u->ignore;
        }
      }
      if (v >= 0 && (hi < 0 || v < hi))
        hi = v;
    }
    if (hi <= 0)
      hi = 1;
    for (int64_t k = 0; k < ne; k++) {
      long v = (long)(rng_uniform(rng) * (double)hi);
      if (hasignore && k > 0 && rng_uniform(rng) < 0.25)
        v = ignore;
      ((int64_t *)t->data)[k] = v;
    }
  }
  return RNNC_OK;
}

/* The loss at the current point (float64, no gradients). */
static int loss_at(Module *m, Model *md, const ModelGrad *g, Env *e, const TensorSet *p,
                   const TensorSet *in, double *L, char *err, size_t errlen)
{
  TensorSet out;
  tset_init(&out);
  InterpOpts o = {.prec = PREC_F64, .wantloss = 1};
  int st = interp_run(m, md, g, e, p, in, &o, &out, err, errlen);
  if (!st) {
    const Tensor *t = tset_find(&out, md->node[md->loss].name);
    if (!t)
      die("gradcheck: interp_run wrote no loss");
    *L = ((const double *)t->data)[0];
  }
  tset_clear(&out);
  return st;
}

/* Indices to check in a tensor of ne elements: all, or nc drawn without
 * repeats, in increasing order. Returns how many. */
static long pick(Rng *rng, long ne, long nc, long *idx)
{
  if (ne <= nc) {
    for (long k = 0; k < ne; k++)
      idx[k] = k;
    return ne;
  }
  long n = 0;
  while (n < nc) {
    long c = (long)(rng_uniform(rng) * (double)ne), k = n;
    int dup = 0;
    for (long j = 0; j < n; j++)
      dup |= idx[j] == c;
    if (dup)
      continue;
    while (k > 0 && idx[k - 1] > c) { /* insertion */
      idx[k] = idx[k - 1];
      k--;
    }
    idx[k] = c;
    n++;
  }
  return n;
}

/* The fourth-order central difference of the loss in coordinate i of x
 * with step h: (L(x-2h) - 8 L(x-h) + 8 L(x+h) - L(x+2h)) / 12h. */
static int numeric(Module *m, Model *md, const ModelGrad *g, Env *e, TensorSet *p, TensorSet *in,
                   double *xv, long i, double h, double *d, char *err, size_t errlen)
{
  double x0 = xv[i], L[4];
  const double off[4] = {-2, -1, 1, 2};
  int st = RNNC_OK;
  for (int j = 0; j < 4 && !st; j++) {
    xv[i] = x0 + off[j] * h;
    st = loss_at(m, md, g, e, p, in, &L[j], err, errlen);
  }
  xv[i] = x0;
  *d = (L[0] - 8 * L[1] + 8 * L[2] - L[3]) / (12 * h);
  return st;
}

/* |a - b| / max(|a|, |b|, floor), infinite for a NaN. */
static double relerr(double a, double b, double floor)
{
  double er = fabs(a - b) / fmax(fmax(fabs(a), fabs(b)), floor);
  return isnan(er) ? INFINITY : er;
}

/* Check one float64 tensor x (a parameter or an input) of the point. */
static int check_tensor(Module *m, Model *md, const ModelGrad *g, Env *e, TensorSet *p,
                        TensorSet *in, Tensor *x, const Tensor *grad, Rng *rng,
                        const GradcheckOpts *o, double floor, GradcheckTensor *rt, char *err,
                        size_t errlen)
{
  long ne = (long)tensor_numel(x), idx[256];
  long nc = pick(rng, ne, o->ncoord, idx);
  double *xv = x->data;
  const double *gv = grad->data;
  snprintf(rt->name, sizeof rt->name, "%s", grad->name);
  rt->numel = ne;
  rt->worst = -1;
  for (long k = 0; k < nc; k++) {
    long i = idx[k];
    double scale = fmax(1.0, fabs(xv[i])), n = 0;
    int smooth = 0;
    for (double h = o->step * scale; !smooth && h >= GC_MINSTEP * scale * 0.99; h /= 10) {
      double d1, d2;
      int st = numeric(m, md, g, e, p, in, xv, i, h, &d1, err, errlen);
      if (!st)
        st = numeric(m, md, g, e, p, in, xv, i, h / 2, &d2, err, errlen);
      if (st)
        return st;
      smooth = relerr(d1, d2, floor) <= o->tol;
      n = d1;
    }
    if (!smooth) {
      rt->skipped++;
      continue;
    }
    double a = gv[i], er = relerr(a, n, floor);
    rt->checked++;
    if (rt->worst < 0 || er > rt->maxerr) {
      rt->maxerr = er;
      rt->worst = i;
      rt->analytic = a;
      rt->numeric = n;
    }
  }
  return RNNC_OK;
}

int gradcheck(Module *m, Model *md, const Env *env, uint64_t seed, const GradcheckOpts *opts,
              GradcheckReport *r, char *err, size_t errlen)
{
  memset(r, 0, sizeof *r);
  if (err && errlen)
    err[0] = 0;
  GradcheckOpts o = opts ? *opts : (GradcheckOpts){0};
  if (o.ncoord <= 0)
    o.ncoord = GC_NCOORD;
  if (o.ncoord > 256)
    o.ncoord = 256;
  if (o.step <= 0)
    o.step = GC_STEP;
  if (o.tol <= 0)
    o.tol = GC_TOL;
  if (md->loss < 0)
    return gfail(RNNC_EMISUSE, err, errlen, "model '%s' has no loss to check%s", md->name, "");
  const ModelGrad *g = o.grad;
  if (!g) {
    int nerr = m->diags.nerror;
    g = autodiff(m, md);
    if (!g || m->diags.nerror > nerr)
      return gfail(RNNC_EVERIFY, err, errlen, "cannot differentiate model '%s'%s", md->name, "");
  }

  Env *e = &r->env;
  bind_sizes(m, md, env, e);
  TensorSet p32, p, in, out;
  tset_init(&p32);
  tset_init(&p);
  tset_init(&in);
  tset_init(&out);
  Rng rng;
  gradcheck_rng(&rng, seed);
  int st = init_params(md, e, seed, &p32, err, errlen);
  /* float64 copies of the parameters, so small steps are representable */
  for (int k = 0; !st && k < p32.n; k++) {
    const Tensor *s = &p32.t[k];
    Tensor *t = tset_add(&p, s->name, DT_F64, s->rank, s->dim);
    if (!t) {
      st = gfail(RNNC_ENOMEM, err, errlen, "out of memory for '%s'%s", s->name, "");
      break;
    }
    for (int64_t i = 0; i < tensor_numel(s); i++)
      ((double *)t->data)[i] = ((const float *)s->data)[i];
  }
  if (!st)
    st = gradcheck_inputs(md, e, &rng, &in, err, errlen);
  InterpOpts io = {.prec = PREC_F64, .wantgrad = 1};
  if (!st)
    st = interp_run(m, md, g, e, &p, &in, &io, &out, err, errlen);
  if (!st) {
    r->loss = ((const double *)tset_find(&out, md->node[md->loss].name)->data)[0];
    r->floor = GC_FLOOR * fmax(1.0, fabs(r->loss));
  }

  /* The tensors checked: every parameter, then every float input. */
  int ncheck = 0;
  for (int i = 0; i < md->nnode; i++)
    ncheck += md->node[i].nparam + (md->node[i].kind == M_INPUT && md->node[i].dtype != DT_I32 &&
                                    !mnode_is_mask(&md->node[i]));
  r->t = calloc((size_t)ncheck + 1, sizeof *r->t);
  if (!r->t && !st)
    st = gfail(RNNC_ENOMEM, err, errlen, "out of memory%s%s", "", "");
  for (int i = 0; !st && i < md->nnode; i++) {
    const MNode *n = &md->node[i];
    for (int k = 0; !st && k <= n->nparam; k++) {
      const char *name;
      TensorSet *set;
      if (k < n->nparam) {
        name = n->param[k].full;
        set = &p;
      } else if (n->kind == M_INPUT && n->dtype != DT_I32 && !mnode_is_mask(n)) {
        name = n->name;
        set = &in;
      } else {
        break;
      }
      char gname[160];
      snprintf(gname, sizeof gname, "grad.%s", name);
      Tensor *x = tset_find(set, name);
      const Tensor *gt = tset_find(&out, gname);
      if (!x || !gt)
        die("gradcheck: no tensor '%s' or '%s'", name, gname);
      st = check_tensor(m, md, g, e, &p, &in, x, gt, &rng, &o, r->floor, &r->t[r->n], err,
                        errlen);
      if (!st && r->t[r->n].maxerr > r->maxerr)
        r->maxerr = r->t[r->n].maxerr;
      r->skipped += r->t[r->n].skipped;
      r->n++;
    }
  }
  r->pass = !st && r->maxerr <= o.tol;
  tset_clear(&p32);
  tset_clear(&p);
  tset_clear(&in);
  tset_clear(&out);
  return st;
}

void gradcheck_report_free(GradcheckReport *r)
{
  free(r->t);
  r->t = NULL;
  r->n = 0;
}
