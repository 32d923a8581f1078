/* cmd_print.c — `rnnc print MODEL.rnn [--after PASS]`: the canonical IR text
 * after a pass of the pipeline (parse, verify, autodiff, schedule); and
 * `rnnc print MODEL.rnn --emit llvm|asm|plan`: the code the JIT makes for
 * the model at given sizes, as optimized LLVM IR or host assembly, or the
 * plan that calls it. */
#include <string.h>

#include <llvm-c/Core.h>

#include "cli.h"

static const OptSpec spec[] = {
    {"--after", 1, 0}, {"--model", 1, 0}, {"--prelude", 0, 0},
    {"--emit", 1, 0},  {"--dim", 1, 1},   {"--grad", 0, 0},
};

static void help(void)
{
  fputs("usage: rnnc print MODEL.rnn [--after PASS] [--model NAME] [--prelude]\n"
        "       rnnc print MODEL.rnn --emit llvm|asm|plan [--dim NAME=N ...] [--grad]\n"
        "                  [--model NAME]\n"
        "\n"
        "Print MODEL.rnn (- reads standard input) as canonical IR text: one statement\n"
        "per line, canonical spacing and parentheses, comments dropped. The text parses\n"
        "back to the same graph.\n"
        "\n"
        "options:\n"
        "  --after PASS  the IR after this pass of the pipeline (default verify):\n"
        "                  parse     as parsed, before any check\n"
        "                  verify    parsed and verified\n"
        "                  autodiff  also the backward cell derived for each cell a model\n"
        "                            applies (<cell>.backward), and each model's BPTT\n"
        "                            schedule as # comments\n"
        "                  schedule  also, per cell a model applies (and its backward\n"
        "                            cell), what runs before the time loop over all\n"
        "                            T*B rows, per step, and after the loop, and which\n"
        "                            matmuls are GEMMs, as # comments\n"
        "  --model NAME  with --after autodiff or schedule: differentiate only model NAME;\n"
        "                with --emit: the model to compile when the file has several\n"
        "  --prelude     also print the built-in cells (rnn, gru, lstm)\n"
        "  --emit WHAT   instead of the IR, the model's generated kernels for this CPU,\n"
        "                optimized as the jit engine runs them: llvm (LLVM IR) or asm\n"
        "                (assembly); or plan: the forward pass's kernels in the order\n"
        "                they run, with the time loop and the barriers (and with\n"
        "                --grad the backward pass's)\n"
        "  --dim NAME=N  with --emit: the size to compile for; T = 8, B = 4 and the\n"
        "                header's defaults otherwise; repeatable\n"
        "  --grad        with --emit: the backward pass's kernels too\n"
        "\n"
        "exit status: 0 printed, 1 the model has errors (or cannot be read), 2 bad usage\n",
        stdout);
}

/* T and B when --emit is given no --dim for them (as `rnnc init`'s). */
enum { EMIT_T = 8, EMIT_B = 4 };

/* Ops [k0, k1) of p, loops indented; *fenced: the op before ended with a
 * barrier (updated). A loop's first ops are dynamic at every step only when
 * they are both after the op before the loop and after the body's last. */
static void print_ops(FILE *f, const Plan *p, int k0, int k1, int depth, int *fenced, long T)
{
  for (int k = k0; k < k1; k++) {
    const PlanOp *o = &p->op[k];
    if (o->kind == PK_LOOP) {
      if (o->T == T) /* a time loop */
        fprintf(f, "#   %*sloop t = %s (%lld steps, %d ops)\n", 2 * depth, "",
                o->reverse ? "T-1 .. 0" : "0 .. T-1", (long long)o->T, o->nbody);
      else /* over slices of the T·B rows (a weight gradient's) */
        fprintf(f, "#   %*sloop s = 0 .. %lld (%lld slices of the rows, %d ops)\n", 2 * depth, "",
                (long long)o->T - 1, (long long)o->T, o->nbody);
      int last = k + o->nbody; /* the body's last op, a call or a loop's barrier */
      int looped = p->op[last].kind == PK_CALL && p->op[last].barrier;
      int in = *fenced && looped;
      print_ops(f, p, k + 1, k + 1 + o->nbody, depth + 1, &in, T);
      *fenced = in;
      k += o->nbody;
      continue;
    }
    if (o->n == 0) {
      fprintf(f, "#   %*s%s\n", 2 * depth, "", o->barrier ? "-- barrier --" : "(nothing)");
    } else {
      int dyn = rnnc_plan_dynamic(p->op, k, k1, *fenced);
      fprintf(f, "#   %*s%-28s [0, %lld) in grains of %lld%s", 2 * depth, "", p->fnname[o->fn],
              (long long)o->n, (long long)o->grain, o->barrier ? ", then a barrier" : "");
      if (dyn)
        fprintf(f, ", dynamic (chunks a multiple of %d)", o->chunk);
      fputc('\n', f);
    }
    *fenced = o->barrier;
  }
}

/* print --emit plan: the kernels in the order the plan calls them. */
static void print_plan(FILE *f, const Model *md, const Env *env, CModel *cm)
{
  const Plan *p = cmodel_plan(cm);
  int nk = 0; /* kernels, not counting the name the barriers go under */
  for (int k = 0; k < p->nfn; k++)
    nk += strcmp(p->fnname[k], "barrier") != 0;
  fprintf(f, "# plan of model %s at", md->name);
  for (int i = 0; i < env->n; i++)
    fprintf(f, " %s=%ld", env->sym[i], env->val[i]);
  fprintf(f, " (forward pass): %d ops, %d kernels, %zu floats of scratch per thread\n", p->nop, nk,
          p->scratch);
  fputs("# each thread runs every op on its share of the op's range, one OpenMP team\n"
        "# for the whole plan; a dynamic op, between barriers, the threads take in\n"
        "# chunks of grains as they come free\n",
        f);
  long T = -1;
  for (int i = 0; i < env->n; i++)
    if (strcmp(env->sym[i], "T") == 0)
      T = env->val[i];
  int fenced = 1;
  print_ops(f, p, 0, p->nop, 0, &fenced, T);
  const Plan *b = cmodel_bplan(cm);
  if (b->nop) {
    fprintf(f, "# backward pass: %d ops\n", b->nop);
    fenced = 1;
    print_ops(f, b, 0, b->nop, 0, &fenced, T);
  }
}

/* print --emit: the model's kernels as optimized LLVM IR or assembly, or its plan. */
static int emit(Loaded *ld, const Opts *o, const char *what)
{
  Model *md = pick_model(ld, opt_str(o, "--model"));
  if (!md)
    return EXIT_USER;
  Env env = {0};
  int grad = opt_given(o, "--grad");
  int st = bind_all_dims(ld, md, o, &env, EMIT_T, EMIT_B);
  if (!st)
    st = jit_prepare(ld, md, grad);
  if (st)
    return st;
  if (strcmp(what, "plan") == 0) {
    CModel *cm;
    if ((st = jit_compile(ld, md, &env, grad, &cm)))
      return st;
    print_plan(stdout, md, &env, cm);
    cmodel_free(cm);
    return EXIT_OK;
  }
  int asm_ = strcmp(what, "asm") == 0;
  char err[512];
  CompileOpts co = {.grad = grad};
  LLVMContextRef cx = LLVMContextCreate();
  LLVMModuleRef mod = NULL;
  if (cmodel_module(ld->m, md, &env, &co, cx, &mod, err, sizeof err) != RNNC_OK ||
      emit_module(mod, asm_, stdout, err, sizeof err) != RNNC_OK)
    st = user_error("%s", err);
  if (mod)
    LLVMDisposeModule(mod);
  LLVMContextDispose(cx);
  return st;
}

int cmd_print(int argc, char **argv)
{
  Opts o;
  const char *path;
  int st = opts_parse(&o, "print", spec, sizeof spec / sizeof spec[0], argc, argv);
  if (st)
    return st;
  if (o.help) {
    help();
    return EXIT_OK;
  }
  if ((st = opts_model_path(&o, &path)))
    return st;
  const char *after = opt_str(&o, "--after");
  const char *what = opt_str(&o, "--emit");
  const char *only = opt_str(&o, "--model");
  if (what) {
    if (strcmp(what, "llvm") != 0 && strcmp(what, "asm") != 0 && strcmp(what, "plan") != 0)
      return usage_error("print", "unknown --emit '%s' (llvm, asm or plan)", what);
    if (after || opt_given(&o, "--prelude"))
      return usage_error("print", "--emit prints code, not the IR: it takes no --after or --prelude");
    Loaded ld;
    if ((st = load_model(&ld, path, PASS_VERIFY, NULL)))
      return st;
    st = emit(&ld, &o, what);
    loaded_free(&ld);
    return st;
  }
  if (opt_given(&o, "--dim") || opt_given(&o, "--grad"))
    return usage_error("print", "--dim and --grad go with --emit");
  int pass = pass_lookup(after ? after : "verify");
  if (pass < 0)
    return usage_error("print", "unknown pass '%s' (passes: parse, verify, autodiff, schedule)", after);
  if (only && pass < PASS_AUTODIFF)
    return usage_error("print", "--model goes with --after autodiff or schedule");

  Loaded ld;
  if ((st = load_model(&ld, path, pass, only)))
    return st;
  if (only && !pick_model(&ld, only)) {
    loaded_free(&ld);
    return EXIT_USER;
  }
  print_after(stdout, ld.m, pass, opt_given(&o, "--prelude"));
  loaded_free(&ld);
  return EXIT_OK;
}
