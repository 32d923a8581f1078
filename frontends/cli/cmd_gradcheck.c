/* cmd_gradcheck.c — `rnnc gradcheck MODEL.rnn`: the model's analytic float64
 * gradients (autodiff + the reference interpreter) against central finite
 * differences, per parameter and float input; then the compiled model's
 * float32 gradients (the jit engine) against those float64 ones at the same
 * point; PASS or FAIL. */
#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const OptSpec spec[] = {
    {"--seed", 1, 0},   {"--dim", 1, 1},     {"--model", 1, 0},  {"--coords", 1, 0},
    {"--tol", 1, 0},    {"--engine", 1, 0},  {"--threads", 1, 0}, {"--jit-tol", 1, 0},
};

/* The jit check's default tolerance on the norm-wise relative error. */
#define JIT_TOL 1e-4

static void help(void)
{
  fputs("usage: rnnc gradcheck MODEL.rnn [--seed N] [--dim NAME=N ...] [--coords N]\n"
        "                      [--tol X] [--engine jit|interp] [--threads N] [--jit-tol X]\n"
        "                      [--model NAME]\n"
        "\n"
        "Check the gradient of the model's loss with respect to every parameter and\n"
        "every float input, as autodiff and the reference interpreter compute it in\n"
        "float64, against central finite differences of the loss (docs/cli.md gives the\n"
        "formula, the step and the error measure). The point is random: parameters as\n"
        "`rnnc init` makes them, token ids and targets uniform over their range, float\n"
        "inputs N(0, 1), all from the seed; T = 5, B = 3 and the model's default sizes\n"
        "unless --dim says otherwise (a dimension without a default is 4). The error of\n"
        "a coordinate is relative, |a - n| / max(|a|, |n|, floor), with a floor that\n"
        "grows with the loss. Coordinates where the loss is not smooth (a relu switching\n"
        "within the step) are skipped and counted. Prints one row per tensor and the\n"
        "worst error.\n"
        "\n"
        "Then the compiled model (the jit engine, float32) runs forward and backward at\n"
        "the same point, and its loss and every gradient are compared with the float64\n"
        "ones: per tensor, max |jit - f64| / max |f64| must be at most --jit-tol.\n"
        "\n"
        "options:\n"
        "  --seed N      random seed of the point and of the coordinates (default 0)\n"
        "  --dim NAME=N  give dimension NAME the size N; repeatable\n"
        "  --coords N    coordinates checked per tensor (default 16, at most 256)\n"
        "  --tol X       pass when every error is at most X (default 1e-6)\n"
        "  --engine E    jit (default): both checks; interp: the finite differences only\n"
        "  --threads N   threads of the jit engine (default: OpenMP's)\n"
        "  --jit-tol X   the jit check passes when every error is at most X (default 1e-4)\n"
        "  --model NAME  the model to check when the file has several\n"
        "\n"
        "exit status: 0 PASS (both checks), 1 FAIL or an error in the model, 2 bad usage\n",
        stdout);
}

/* The flat index k of tensor `name` ("grad.<param>" or "grad.<input>") as a
 * multi-index "[i, j]", its shape evaluated with env; "[k]" when unknown. */
static char *where(Arena *a, const Model *md, const Env *env, const char *name, long k)
{
  const Shape *sh = NULL;
  const char *x = strncmp(name, "grad.", 5) == 0 ? name + 5 : name;
  for (int i = 0; i < md->nnode && !sh; i++) {
    const MNode *n = &md->node[i];
    if (n->kind == M_INPUT && n->name && strcmp(n->name, x) == 0)
      sh = &n->shape;
    for (int p = 0; p < n->nparam && !sh; p++)
      if (strcmp(n->param[p].full, x) == 0)
        sh = &n->param[p].shape;
  }
  long d[SHAPE_MAXRANK], idx[SHAPE_MAXRANK];
  for (int r = 0; sh && r < sh->rank; r++) {
    const char *bad;
    if (!dim_eval(sh->d[r], env, &d[r], &bad) || d[r] <= 0)
      sh = NULL;
  }
  if (!sh || k < 0)
    return aprintf(a, "[%ld]", k);
  for (int r = sh->rank - 1; r >= 0; r--) {
    idx[r] = k % d[r];
    k /= d[r];
  }
  char *s = "[";
  for (int r = 0; r < sh->rank; r++)
    s = aprintf(a, "%s%s%ld", s, r ? ", " : "", idx[r]);
  return aprintf(a, "%s]", s);
}

/* "ok" or "FAIL", and how many coordinates were skipped at kinks. */
static char *ok(Arena *a, const GradcheckTensor *x, double tol)
{
  const char *v = x->maxerr <= tol ? "ok" : "FAIL";
  if (x->skipped)
    return aprintf(a, "%s (%ld skipped: not smooth)", v, x->skipped);
  return (char *)v;
}

/* A positive number option (default def); usage error when malformed. */
static int opt_pos(const Opts *o, const char *name, double def, double *out)
{
  const char *v = opt_str(o, name);
  *out = def;
  if (!v)
    return EXIT_OK;
  char *end;
  *out = strtod(v, &end);
  if (!*v || *end || !(*out > 0))
    return usage_error(o->cmd, "%s wants a positive number, not '%s'", name, v);
  return EXIT_OK;
}

/* ---- the jit check ----------------------------------------------------------- */

/* Norm-wise relative error of a (F32) against ref (F64):
 * max_i |a_i - r_i| / max(max_i |r_i|, FLT_MIN), infinite with a NaN;
 * *worst the index of the largest difference. */
static double rel_error(const Tensor *a, const Tensor *ref, long *worst)
{
  const float *x = a->data;
  const double *r = ref->data;
  double maxdiff = 0, maxref = 0;
  *worst = 0;
  for (int64_t i = 0; i < tensor_numel(ref); i++) {
    double d = fabs((double)x[i] - r[i]);
    if (isnan(d))
      return INFINITY;
    if (d > maxdiff) {
      maxdiff = d;
      *worst = (long)i;
    }
    maxref = fmax(maxref, fabs(r[i]));
  }
  return maxdiff / fmax(maxref, FLT_MIN);
}

/* Compile md with gradients, run it at the point of report r and compare its
 * loss and gradients with the float64 interpreter's there. Prints the table
 * and its verdict line; *pass. EXIT_OK, or EXIT_USER with the reason printed. */
static int jit_check(Loaded *ld, Model *md, GradcheckReport *r, uint64_t seed, int nthreads, double tol,
                     int *pass)
{
  char err[512];
  Arena *a = ld->m->arena;
  Env *e = &r->env;
  TensorSet p, in, ref, got;
  tset_init(&p);
  tset_init(&in);
  tset_init(&ref);
  tset_init(&got);
  CModel *cm = NULL;
  int st = jit_prepare(ld, md, 1);
  if (st)
    goto done;
  InterpOpts io = {.prec = PREC_F64, .wantgrad = 1};
  /* the point gradcheck() checked (jit_check verifies it by the loss) */
  Rng rng;
  gradcheck_rng(&rng, seed);
  if (gradcheck_inputs(md, e, &rng, &in, err, sizeof err) != RNNC_OK) {
    st = user_error("%s", err);
    goto done;
  }
  if (init_params(md, e, seed, &p, err, sizeof err) != RNNC_OK ||
      interp_run(ld->m, md, md->grad, e, &p, &in, &io, &ref, err, sizeof err) != RNNC_OK) {
    st = user_error("%s", err);
    goto done;
  }
  const Tensor *lref = tset_find(&ref, md->node[md->loss].name);
  if (((const double *)lref->data)[0] != r->loss)
    die("gradcheck: the jit check's point (loss %.17g) is not gradcheck's (loss %.17g)",
        ((const double *)lref->data)[0], r->loss);
  if ((st = jit_compile(ld, md, e, 1, &cm)))
    goto done;
  const char *bad;
  if (jit_load(cm, &p, &in, &bad, err, sizeof err) != RNNC_OK ||
      cmodel_run(cm, 1, nthreads, err, sizeof err) != RNNC_OK ||
      jit_results(cm, md, 1, &got, err, sizeof err) != RNNC_OK) {
    st = user_error("%s", err);
    goto done;
  }

  int nth = nthreads ? nthreads : omp_get_max_threads();
  printf("jit: compiled in %.0f ms, float32, %d thread%s; against the float64 interpreter\n",
         cmodel_compile_ms(cm), nth, nth == 1 ? "" : "s");
  Table t;
  table_init(&t, a, 6);
  t.right[1] = t.right[3] = t.right[4] = 1;
  table_row(&t, (const char *[]){"tensor", "rel err", "at", "jit", "float64", "ok"});
  double maxerr = 0;
  const char *worstname = NULL;
  /* the loss, then every gradient, in the interpreter's order */
  for (int i = 0; i < ref.n; i++) {
    const Tensor *x = &ref.t[i];
    int isloss = strcmp(x->name, md->node[md->loss].name) == 0;
    if (!isloss && strncmp(x->name, "grad.", 5) != 0)
      continue;
    const Tensor *y = tset_find(&got, x->name);
    if (!y || y->dtype != DT_F32 || tensor_numel(y) != tensor_numel(x))
      die("gradcheck: the jit engine wrote no tensor '%s' of its shape", x->name);
    long w;
    double er = rel_error(y, x, &w);
    if (!worstname || !(er <= maxerr)) {
      maxerr = er;
      worstname = x->name;
    }
    table_row(&t, (const char *[]){x->name, aprintf(a, "%.2e", er),
                                   isloss ? "" : where(a, md, e, x->name, w),
                                   aprintf(a, "%.9g", ((const float *)y->data)[w]),
                                   aprintf(a, "%.9g", ((const double *)x->data)[w]),
                                   er <= tol ? "ok" : "FAIL"});
  }
  table_print(stdout, &t, "  ");
  *pass = maxerr <= tol;
  printf("jit worst error %.2e (%s), tolerance %.0e: %s\n", maxerr, worstname, tol,
         *pass ? "PASS" : "FAIL");
done:
  cmodel_free(cm);
  tset_clear(&p);
  tset_clear(&in);
  tset_clear(&ref);
  tset_clear(&got);
  return st;
}

int cmd_gradcheck(int argc, char **argv)
{
  Opts o;
  const char *path;
  int st = opts_parse(&o, "gradcheck", spec, sizeof spec / sizeof spec[0], argc, argv);
  if (st)
    return st;
  if (o.help) {
    help();
    return EXIT_OK;
  }
  uint64_t seed, ncoord;
  if ((st = opts_model_path(&o, &path)) || (st = opt_u64(&o, "--seed", 0, &seed)) ||
      (st = opt_u64(&o, "--coords", 16, &ncoord)))
    return st;
  if (ncoord < 1 || ncoord > 256)
    return usage_error("gradcheck", "--coords wants a count from 1 to 256, not %llu",
                       (unsigned long long)ncoord);
  double tol, jtol;
  int nthreads;
  if ((st = opt_pos(&o, "--tol", 1e-6, &tol)) || (st = opt_pos(&o, "--jit-tol", JIT_TOL, &jtol)) ||
      (st = opt_threads(&o, &nthreads)))
    return st;
  const char *engine = opt_str(&o, "--engine");
  if (engine && strcmp(engine, "jit") != 0 && strcmp(engine, "interp") != 0)
    return usage_error("gradcheck", "unknown engine '%s' (engines: interp, jit)", engine);
  int jit = !engine || strcmp(engine, "jit") == 0;
  if (!jit && (nthreads || opt_given(&o, "--jit-tol")))
    return usage_error("gradcheck", "--threads and --jit-tol go with --engine jit");

  Loaded ld;
  if ((st = load_model(&ld, path, PASS_VERIFY, NULL)))
    return st;
  Model *md = pick_model(&ld, opt_str(&o, "--model"));
  Env env = {0};
  if (!md || (st = parse_dims(&ld, md, &o, &env))) {
    loaded_free(&ld);
    return md ? st : EXIT_USER;
  }
  if (md->loss < 0) {
    loaded_free(&ld);
    return user_error("model '%s' has no loss to check (a softmax with a target, or a sum)",
                      md->name);
  }

  char err[512];
  GradcheckOpts go = {.ncoord = (int)ncoord, .tol = tol};
  GradcheckReport r;
  int from = ld.m->diags.n;
  int gst = gradcheck(ld.m, md, &env, seed, &go, &r, err, sizeof err);
  print_diags_since(&ld, &from);
  if (gst != RNNC_OK) {
    gradcheck_report_free(&r);
    loaded_free(&ld);
    return user_error("%s", err);
  }

  Arena *a = ld.m->arena;
  char *sizes = "";
  for (int i = 0; i < r.env.n; i++)
    sizes = aprintf(a, "%s%s%s=%ld", sizes, i ? " " : "", r.env.sym[i], r.env.val[i]);
  printf("gradcheck %s, model %s: float64, seed %llu, %s\n", ld.name, md->name,
         (unsigned long long)seed, sizes);
  printf("  loss %.10g; error floor %.3g\n", r.loss, r.floor);
  Table t;
  table_init(&t, a, 7);
  t.right[1] = t.right[2] = t.right[4] = t.right[5] = 1;
  table_row(&t, (const char *[]){"gradient", "checked", "max rel err", "at", "analytic",
                                 "numeric", "ok"});
  int worst = -1;
  for (int i = 0; i < r.n; i++) {
    const GradcheckTensor *x = &r.t[i];
    if (worst < 0 || x->maxerr > r.t[worst].maxerr)
      worst = i;
    table_row(&t, (const char *[]){
                      x->name, aprintf(a, "%ld/%ld", x->checked, x->numel),
                      aprintf(a, "%.2e", x->maxerr), where(a, md, &r.env, x->name, x->worst),
                      aprintf(a, "%.9g", x->analytic), aprintf(a, "%.9g", x->numeric),
                      ok(a, x, tol)});
  }
  table_print(stdout, &t, "  ");
  if (worst >= 0)
    printf("worst error %.2e (%s), tolerance %.0e: %s\n", r.maxerr, r.t[worst].name, tol,
           r.pass ? "PASS" : "FAIL");
  else
    printf("nothing to check (no parameter or float input): %s\n", r.pass ? "PASS" : "FAIL");
  int jpass = 1;
  st = jit ? jit_check(&ld, md, &r, seed, nthreads, jtol, &jpass) : EXIT_OK;
  if (!st && jit)
    printf("finite differences %s, jit %s: %s\n", r.pass ? "PASS" : "FAIL", jpass ? "PASS" : "FAIL",
           r.pass && jpass ? "PASS" : "FAIL");
  if (!st)
    st = r.pass && jpass ? EXIT_OK : EXIT_USER;
  gradcheck_report_free(&r);
  loaded_free(&ld);
  return st;
}
