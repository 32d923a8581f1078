/* cmd_run.c — `rnnc run MODEL.rnn --params P --inputs I --out O [--grad]`:
 * forward (and backward) on tensors from safetensors files, by the reference
 * interpreter; writes every declared output and, with --grad, every gradient. */
#include <math.h>
#include <string.h>

#include "cli.h"

static const OptSpec spec[] = {
    {"--params", 1, 0}, {"--inputs", 1, 0}, {"--out", 1, 0},   {"--grad", 0, 0},
    {"--engine", 1, 0}, {"--dim", 1, 1},    {"--f64", 0, 0},   {"--model", 1, 0},
    {"--quiet", 0, 0},
};

static void help(void)
{
  fputs("usage: rnnc run MODEL.rnn --params PARAMS --inputs INPUTS --out OUT [--grad]\n"
        "                [--engine interp] [--dim NAME=N ...] [--f64] [--model NAME]\n"
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
        "  --engine E       interp: the reference interpreter (default). The jit engine\n"
        "                   is not in this build yet.\n"
        "  --dim NAME=N     bind dimension NAME to N; repeatable\n"
        "  --f64            compute in float64 (default: float32, rounded op by op)\n"
        "  --model NAME     the model to run when the file has several\n"
        "  --quiet          print nothing on success\n"
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
  if ((st = opts_model_path(&o, &path)) || (st = opts_require(&o, "--params")) ||
      (st = opts_require(&o, "--inputs")) || (st = opts_require(&o, "--out")))
    return st;
  const char *engine = opt_str(&o, "--engine");
  if (engine && strcmp(engine, "jit") == 0)
    return user_error("the jit engine is not available in this build; use --engine interp");
  if (engine && strcmp(engine, "interp") != 0)
    return usage_error("run", "unknown engine '%s' (engines: interp, jit)", engine);
  int wantgrad = opt_given(&o, "--grad");

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
  if (safetensors_read(opt_str(&o, "--params"), &params, err, sizeof err) != RNNC_OK ||
      safetensors_read(opt_str(&o, "--inputs"), &inputs, err, sizeof err) != RNNC_OK) {
    st = user_error("%s", err);
    goto done;
  }
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
  InterpOpts io = {.prec = opt_given(&o, "--f64") ? PREC_F64 : PREC_F32, .wantgrad = wantgrad};
  if (interp_run(ld.m, md, g, &env, &params, &inputs, &io, &out, err, sizeof err) != RNNC_OK) {
    st = user_error("%s", err);
    goto done;
  }
  if (tset_setmeta(&out, "model", md->name) ||
      tset_setmeta(&out, "precision", io.prec == PREC_F64 ? "f64" : "f32")) {
    st = user_error("out of memory");
    goto done;
  }
  if (safetensors_write(outpath, &out, err, sizeof err) != RNNC_OK) {
    st = user_error("%s", err);
    goto done;
  }
  if (!opt_given(&o, "--quiet")) {
    printf("wrote %s: %d tensors of model %s (%s, interp%s)\n", outpath, out.n, md->name,
           io.prec == PREC_F64 ? "float64" : "float32", wantgrad ? ", with gradients" : "");
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
