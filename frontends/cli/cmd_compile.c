/* cmd_compile.c — `rnnc compile MODEL.rnn -o OUT.o [--header OUT.h]`: the
 * model ahead of time, as an object file and its C header (compiler/aot.c):
 * the forward pass over T steps, a single step with carried states, and with
 * --train the whole training step, for a chosen CPU. The object needs no LLVM
 * at run time: only librnnc_rt.a, SLEEF, libm and OpenMP (docs/aot.md). */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const OptSpec spec[] = {
    {"-o", 1, 0},     {"--header", 1, 0}, {"--batch", 1, 0},      {"--seq", 1, 0},    {"--train", 0, 0},
    {"--prefix", 1, 0}, {"--cpu", 1, 0},  {"--emit", 1, 0},       {"--dim", 1, 1},    {"--model", 1, 0},
    {"--step-batch", 1, 0}, {"--no-carry", 0, 0}, {"--no-step", 0, 0},
};

static void help(void)
{
  fputs("usage: rnnc compile MODEL.rnn -o OUT.o [--header OUT.h] [options]\n"
        "\n"
        "Compile a model ahead of time into an object file and a C header: the\n"
        "forward pass over T steps of B rows, a single step with the cell states\n"
        "carried from call to call (generation), and with --train the whole training\n"
        "step (forward, backward, clipping, the optimizer's update). The object links\n"
        "with no LLVM at run time:\n"
        "  cc prog.c OUT.o -lrnnc_rt -lsleef -lm -fopenmp\n"
        "\n"
        "options:\n"
        "  -o PATH           the object file (required)\n"
        "  --header PATH     write the model's C header there\n"
        "  --batch B         rows of the forward and training programs (default 32)\n"
        "  --seq T           their time steps (default 64)\n"
        "  --train           also the training step (the model needs a loss)\n"
        "  --prefix NAME     C prefix of the header's names (default: the model's name)\n"
        "  --cpu CPU         native (default: this machine's CPU, the JIT's code), x86-64\n"
        "                    (any x86-64: SSE2), x86-64-v2, x86-64-v3 (AVX2 + FMA),\n"
        "                    x86-64-v4, or an LLVM CPU name (haswell, skylake, znver3, ...)\n"
        "  --emit WHAT       obj (default), asm or llvm: what -o holds\n"
        "  --step-batch K    rows of the single-step program (default 1)\n"
        "  --no-step         no single-step program\n"
        "  --no-carry        forward and training programs start every call from zero\n"
        "                    states (by default they carry the states from call to\n"
        "                    call when every cell runs forward in time, as rnnc train\n"
        "                    does on a stream; _reset zeroes them)\n"
        "  --dim NAME=N      bind a model dimension; repeatable\n"
        "  --model NAME      the model when the file has several\n"
        "\n"
        "exit status: 0 compiled, 1 an error in the model or the options' values, 2 bad usage\n",
        stdout);
}

/* The prefix: --prefix, else the model's name; a C identifier. */
static int prefix_of(const Opts *o, const Model *md, const char **out)
{
  const char *p = opt_str(o, "--prefix");
  if (!p)
    p = md->name;
  int ok = *p && (isalpha((unsigned char)*p) || *p == '_') && strlen(p) < 100;
  for (const char *c = p; ok && *c; c++)
    ok = isalnum((unsigned char)*c) || *c == '_';
  if (!ok)
    return user_error("prefix '%s' is not a C identifier (letters, digits and _, not starting with a digit)%s", p,
                      opt_str(o, "--prefix") ? "" : "; give one with --prefix NAME");
  if (!strcmp(p, "rnnc") || !strncmp(p, "rnnc_", 5) || !strncmp(p, "RNNC", 4))
    return user_error("prefix '%s' would clash with rnnc's own names (rnnc_forward, RNNC_OK, ...); give another "
                      "with --prefix NAME",
                      p);
  *out = p;
  return EXIT_OK;
}

/* The command line as one string (for the header's comment). */
static const char *command_line(Arena *a, int argc, char **argv)
{
  size_t n = 16;
  for (int i = 0; i < argc; i++)
    n += strlen(argv[i]) + 1;
  char *s = aalloc(a, n);
  strcpy(s, "rnnc");
  for (int i = 0; i < argc; i++) {
    strcat(s, " ");
    strcat(s, argv[i]);
  }
  for (char *c = s; *c; c++) /* keep the comment a comment */
    if (*c == '*' && c[1] == '/')
      *c = '_';
  return s;
}

/* Program k of spec: md at T, B (the forward and training programs share env's
 * bindings; the step program binds T = 1 and B = its own). */
static void program(AotSpec *s, int k, Model *md, Loaded *ld, const Env *env, long T, long B, int grad, int carry)
{
  AotProg *p = &s->prog[k];
  p->md = md;
  p->T = T;
  p->B = B;
  p->o = (CompileOpts){.grad = grad, .carry = carry};
  const char *sT = intern(ld->m->names, "T", 1), *sB = intern(ld->m->names, "B", 1);
  for (int i = 0; i < env->n; i++)
    if (env->sym[i] != sT && env->sym[i] != sB)
      env_set(ld->m->arena, &p->env, env->sym[i], env->val[i]);
  env_set(ld->m->arena, &p->env, sT, T);
  env_set(ld->m->arena, &p->env, sB, B);
}

static int compile(Loaded *ld, const Opts *o, int argc, char **argv)
{
  Model *md = pick_model(ld, opt_str(o, "--model"));
  if (!md)
    return EXIT_USER;
  uint64_t T, B, K;
  int st;
  if ((st = opt_u64(o, "--seq", 64, &T)) || (st = opt_u64(o, "--batch", 32, &B)) ||
      (st = opt_u64(o, "--step-batch", 1, &K)))
    return st;
  if (T < 1 || B < 1 || K < 1)
    return usage_error("compile", "--%s must be at least 1", T < 1 ? "seq" : B < 1 ? "batch" : "step-batch");
  AotSpec s = {.m = ld->m, .out = opt_str(o, "-o"), .header = opt_str(o, "--header")};
  const char *emit = opt_str(o, "--emit");
  if (!emit || !strcmp(emit, "obj"))
    s.emit = EMIT_OBJ;
  else if (!strcmp(emit, "asm"))
    s.emit = EMIT_ASM;
  else if (!strcmp(emit, "llvm"))
    s.emit = EMIT_LLVM;
  else
    return usage_error("compile", "unknown --emit '%s' (obj, asm or llvm)", emit);
  char err[1024];
  if (aot_target(opt_str(o, "--cpu"), &s.target, err, sizeof err) != RNNC_OK)
    return user_error("%s", err);
  if ((st = prefix_of(o, md, &s.prefix)))
    return st;
  Env env = {0};
  if ((st = bind_all_dims(ld, md, o, &env, (long)T, (long)B)))
    return st;
  const char *sT = intern(ld->m->names, "T", 1), *sB = intern(ld->m->names, "B", 1);
  long vT, vB;
  env_get(&env, sT, &vT);
  env_get(&env, sB, &vB);
  int train = opt_given(o, "--train");
  if (train && md->loss < 0)
    return user_error("--train: model '%s' has no loss to differentiate (a softmax with a target, or a sum)",
                      md->name);
  if ((st = jit_prepare(ld, md, train)))
    return st;
  int backward = 0;
  for (int i = 0; i < md->nnode; i++)
    backward |= md->node[i].kind == M_CELL && md->node[i].backward;
  int carry = !backward && !opt_given(o, "--no-carry");
  program(&s, RNNC_AOT_FORWARD, md, ld, &env, vT, vB, 0, carry);
  if (train)
    program(&s, RNNC_AOT_TRAIN, md, ld, &env, vT, vB, 1, carry);
  if (!backward && !opt_given(o, "--no-step")) {
    /* a language model steps as its next-token model; any other model as itself */
    Model *gm = NULL;
    if (model_for_generation(ld->m, md, &gm, err, sizeof err) == RNNC_OK)
      schedule(ld->m);
    else
      gm = md;
    program(&s, RNNC_AOT_STEP, gm, ld, &env, 1, (long)K, 0, 1);
  }
  s.command = command_line(ld->m->arena, argc, argv);
  if (aot_compile(&s, err, sizeof err) != RNNC_OK)
    return user_error("%s", err);
  return EXIT_OK;
}

int cmd_compile(int argc, char **argv)
{
  Opts o;
  const char *path;
  int st = opts_parse(&o, "compile", spec, sizeof spec / sizeof spec[0], argc, argv);
  if (st)
    return st;
  if (o.help) {
    help();
    return EXIT_OK;
  }
  if ((st = opts_model_path(&o, &path)) || (st = opts_require(&o, "-o")))
    return st;
  if (opt_given(&o, "--step-batch") && opt_given(&o, "--no-step"))
    return usage_error("compile", "--step-batch and --no-step do not go together");
  Loaded ld;
  if ((st = load_model(&ld, path, PASS_VERIFY, NULL)))
    return st;
  st = compile(&ld, &o, argc, argv);
  loaded_free(&ld);
  return st;
}
