/* cmd_gradcheck.c — `rnnc gradcheck MODEL.rnn`: the model's analytic float64
 * gradients (autodiff + the reference interpreter) against central finite
 * differences, per parameter and float input; PASS or FAIL. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const OptSpec spec[] = {
    {"--seed", 1, 0}, {"--dim", 1, 1}, {"--model", 1, 0}, {"--coords", 1, 0}, {"--tol", 1, 0},
};

static void help(void)
{
  fputs("usage: rnnc gradcheck MODEL.rnn [--seed N] [--dim NAME=N ...] [--coords N]\n"
        "                      [--tol X] [--model NAME]\n"
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
        "options:\n"
        "  --seed N      random seed of the point and of the coordinates (default 0)\n"
        "  --dim NAME=N  give dimension NAME the size N; repeatable\n"
        "  --coords N    coordinates checked per tensor (default 16, at most 256)\n"
        "  --tol X       pass when every error is at most X (default 1e-6)\n"
        "  --model NAME  the model to check when the file has several\n"
        "\n"
        "exit status: 0 PASS, 1 FAIL or an error in the model, 2 bad usage\n",
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
  double tol = 1e-6;
  const char *tols = opt_str(&o, "--tol");
  if (tols) {
    char *end;
    tol = strtod(tols, &end);
    if (!*tols || *end || !(tol > 0))
      return usage_error("gradcheck", "--tol wants a positive number, not '%s'", tols);
  }

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
  st = r.pass ? EXIT_OK : EXIT_USER;
  gradcheck_report_free(&r);
  loaded_free(&ld);
  return st;
}
