/* cmd_run.c — `rnnc run MODEL.rnn --params P --inputs I --out O [--grad]`:
 * forward (and backward) on tensors from safetensors files, by the model
 * compiled to machine code (--engine jit, the default) or by the reference
 * interpreter (--engine interp); writes every declared output and, with
 * --grad, every gradient, with the same names, shapes and order either way. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "cli.h"

static const OptSpec spec[] = {
    {"--params", 1, 0}, {"--inputs", 1, 0}, {"--out", 1, 0},   {"--grad", 0, 0},
    {"--engine", 1, 0}, {"--dim", 1, 1},    {"--f64", 0, 0},   {"--model", 1, 0},
    {"--quiet", 0, 0},  {"--threads", 1, 0}, {"--profile", 1, 0},
};

static void help(void)
{
  fputs("usage: rnnc run MODEL.rnn --params PARAMS --inputs INPUTS --out OUT [--grad]\n"
        "                [--engine jit|interp] [--threads N] [--dim NAME=N ...] [--f64]\n"
        "                [--model NAME] [--quiet] [--profile RUNS]\n"
        "\n"
        "Run the model forward on the tensors of INPUTS (one per model input, named\n"
        "after it) with the parameters of PARAMS (<node>.<param>), and write every\n"
        "declared output, named after its node, to OUT. All three files are\n"
        "safetensors. `rnnc init MODEL.rnn --out PARAMS --inputs INPUTS` makes the two\n"
        "inputs. T, B and the model's dimensions are bound from the tensors' shapes.\n"
        "\n"
        "options:\n"
        "  --params PARAMS  the parameters (required)\n"
        "  --inputs INPUTS  the inputs (required)\n"
        "  --out OUT        where to write the outputs (required)\n"
        "  --grad           also run backward through time and write the gradient of\n"
        "                   the loss with respect to every parameter (grad.<node>.<param>)\n"
        "                   and every float input and initial state (grad.<input>)\n"
        "  --engine E       jit (default): compile the model for this CPU (LLVM) and run\n"
        "                   the machine code, float32, multithreaded; interp: the\n"
        "                   reference interpreter, plain C\n"
        "  --threads N      threads of the jit engine (default: OMP_NUM_THREADS or every\n"
        "                   core); results are bitwise the same for any N\n"
        "  --dim NAME=N     bind dimension NAME to N; repeatable\n"
        "  --f64            compute in float64 with the interpreter (--f64 alone implies\n"
        "                   --engine interp; it computes in float32 otherwise, rounded op\n"
        "                   by op)\n"
        "  --model NAME     the model to run when the file has several\n"
        "  --quiet          print nothing on success but the profile\n"
        "  --profile RUNS   jit: after the run, run RUNS more times with every kernel call\n"
        "                   and barrier timed per thread, and print per op of the plans\n"
        "                   (forward, then backward with --grad) its calls, its time and\n"
        "                   the time threads waited after it, per run\n"
        "\n"
        "exit status: 0 written, 1 an error in the model or the files, 2 bad usage\n",
        stdout);
}

/* Element e of t as a double. */
static double elem(const Tensor *t, int64_t e)
{
  switch (t->dtype) {
  case DT_F32: return ((const float *)t->data)[e];
  case DT_F64: return ((const double *)t->data)[e];
  case DT_I32: return ((const int32_t *)t->data)[e];
  case DT_I64: return (double)((const int64_t *)t->data)[e];
  }
  die("tensor %s has dtype %d", t->name, t->dtype);
}

/* A table of what was written: scalars with their value, others with their
 * mean and largest magnitude. */
static void show_outputs(Arena *a, const TensorSet *s)
{
  Table t;
  table_init(&t, a, 4);
  table_row(&t, (const char *[]){"tensor", "dtype", "shape", "value"});
  for (int i = 0; i < s->n; i++) {
    const Tensor *x = &s->t[i];
    int64_t n = tensor_numel(x);
    char *v;
    if (n == 1) {
      v = aprintf(a, "%.7g", elem(x, 0));
    } else {
      double sum = 0, amax = 0;
      for (int64_t e = 0; e < n; e++) {
        double y = elem(x, e);
        sum += y;
        amax = fmax(amax, fabs(y));
      }
      v = aprintf(a, "mean %.4g, max |x| %.4g", n ? sum / (double)n : 0.0, amax);
    }
    table_row(&t, (const char *[]){x->name, dtype_name(x->dtype), fmt_dims(a, x->dim, x->rank), v});
  }
  table_print(stdout, &t, "  ");
}

/* The jit engine: bind the dims from the tensors, compile, copy the tensors
 * in, run, and collect the results into out. Prints the reason on an error. */
static int run_jit(Loaded *ld, Model *md, Env *env, const TensorSet *params, const TensorSet *inputs,
                   int wantgrad, int nthreads, int profile, TensorSet *out, double *ms)
{
  char err[512];
  if (bind_dims(ld->m, md, env, params, inputs, ld->m->arena, err, sizeof err) != RNNC_OK)
    return user_error("%s", err);
  CModel *cm;
  int st = jit_compile(ld, md, env, wantgrad, &cm);
  if (st)
    return st;
  *ms = cmodel_compile_ms(cm);
  const char *bad = NULL;
  if (jit_load(cm, params, inputs, &bad, err, sizeof err) != RNNC_OK) {
    /* an id int32 cannot hold is out of range too: say so as the
     * interpreter does (it reads ids as 64-bit) */
    char ierr[512];
    TensorSet tmp;
    tset_init(&tmp);
    InterpOpts io = {.prec = PREC_F32};
    if (interp_run(ld->m, md, NULL, env, params, inputs, &io, &tmp, ierr, sizeof ierr) != RNNC_OK)
      snprintf(err, sizeof err, "%s", ierr);
    tset_clear(&tmp);
    st = user_error("%s", err);
  } else if (cmodel_run(cm, wantgrad, nthreads, err, sizeof err) != RNNC_OK ||
             jit_results(cm, md, wantgrad, out, err, sizeof err) != RNNC_OK) {
    st = user_error("%s", err);
  } else if (profile) {
    st = jit_profile(cm, ld->m->arena, wantgrad, nthreads, profile);
  }
  cmodel_free(cm);
  return st;
}

int cmd_run(int argc, char **argv)
{
  Opts o;
  const char *path;
  int st = opts_parse(&o, "run", spec, sizeof spec / sizeof spec[0], argc, argv);
  if (st)
    return st;
  if (o.help) {
    help();
    return EXIT_OK;
  }
  int nthreads;
  if ((st = opts_model_path(&o, &path)) || (st = opts_require(&o, "--params")) ||
      (st = opts_require(&o, "--inputs")) || (st = opts_require(&o, "--out")) ||
      (st = opt_threads(&o, &nthreads)))
    return st;
  const char *engine = opt_str(&o, "--engine");
  if (engine && strcmp(engine, "jit") != 0 && strcmp(engine, "interp") != 0)
    return usage_error("run", "unknown engine '%s' (engines: interp, jit)", engine);
  /* --f64 alone picks the interpreter: the jit engine computes in float32 */
  int jit = engine ? strcmp(engine, "jit") == 0 : !opt_given(&o, "--f64");
  if (jit && opt_given(&o, "--f64"))
    return usage_error("run", "--f64 goes with --engine interp (the jit engine computes in float32)");
  if (!jit && nthreads)
    return usage_error("run", "--threads goes with --engine jit (the interpreter runs on one thread)");
  int wantgrad = opt_given(&o, "--grad");
  uint64_t profile;
  if ((st = opt_u64(&o, "--profile", 0, &profile)))
    return st;
  if (opt_given(&o, "--profile") && (profile < 1 || profile > 100000))
    return usage_error("run", "--profile wants a number of runs from 1 to 100000, not %llu",
                       (unsigned long long)profile);
  if (!jit && profile)
    return usage_error("run", "--profile goes with --engine jit (it times the compiled kernels)");

  Loaded ld;
  if ((st = load_model(&ld, path, PASS_VERIFY, NULL)))
    return st;
  Model *md = pick_model(&ld, opt_str(&o, "--model"));
  Env env = {0};
  if (!md || (st = parse_dims(&ld, md, &o, &env))) {
    loaded_free(&ld);
    return md ? st : EXIT_USER;
  }
  if (wantgrad && md->loss < 0) {
    loaded_free(&ld);
    return user_error("--grad: model '%s' has no loss to differentiate (a softmax with a "
                      "target, or a sum)",
                      md->name);
  }

  char err[512];
  TensorSet params, inputs, out;
  tset_init(&params);
  tset_init(&inputs);
  tset_init(&out);
  const char *outpath = opt_str(&o, "--out");
  int prec = opt_given(&o, "--f64") ? PREC_F64 : PREC_F32;
  double ms = 0;
  if (safetensors_read(opt_str(&o, "--params"), &params, err, sizeof err) != RNNC_OK ||
      safetensors_read(opt_str(&o, "--inputs"), &inputs, err, sizeof err) != RNNC_OK) {
    st = user_error("%s", err);
    goto done;
  }
  if (jit) {
    if ((st = run_jit(&ld, md, &env, &params, &inputs, wantgrad, nthreads, (int)profile, &out, &ms)))
      goto done;
  } else {
    ModelGrad *g = NULL;
    if (wantgrad) {
      int from = ld.m->diags.n;
      g = autodiff(ld.m, md);
      print_diags_since(&ld, &from);
      if (!g || ld.m->diags.nerror) {
        st = g ? EXIT_USER : user_error("cannot differentiate model '%s'", md->name);
        goto done;
      }
    }
    InterpOpts io = {.prec = prec, .wantgrad = wantgrad};
    if (interp_run(ld.m, md, g, &env, &params, &inputs, &io, &out, err, sizeof err) != RNNC_OK) {
      st = user_error("%s", err);
      goto done;
    }
  }
  if (tset_setmeta(&out, "model", md->name) ||
      tset_setmeta(&out, "precision", prec == PREC_F64 ? "f64" : "f32") ||
      tset_setmeta(&out, "engine", jit ? "jit" : "interp")) {
    st = user_error("out of memory");
    goto done;
  }
  if (safetensors_write(outpath, &out, err, sizeof err) != RNNC_OK) {
    st = user_error("%s", err);
    goto done;
  }
  if (!opt_given(&o, "--quiet")) {
    const char *how = "interp";
    if (jit) {
      int nth = nthreads ? nthreads : omp_get_max_threads();
      how = aprintf(ld.m->arena, "jit compiled in %.0f ms, %d thread%s", ms, nth, nth == 1 ? "" : "s");
    }
    printf("wrote %s: %d tensors of model %s (%s, %s%s)\n", outpath, out.n, md->name,
           prec == PREC_F64 ? "float64" : "float32", how, wantgrad ? ", with gradients" : "");
    show_outputs(ld.m->arena, &out);
  }
  st = EXIT_OK;
done:
  tset_clear(&params);
  tset_clear(&inputs);
  tset_clear(&out);
  loaded_free(&ld);
  return st;
}
