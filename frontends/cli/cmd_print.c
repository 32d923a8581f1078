/* cmd_print.c — `rnnc print MODEL.rnn [--after PASS]`: the canonical IR text
 * after a pass of the pipeline (parse, verify, autodiff). */
#include <string.h>

#include "cli.h"

static const OptSpec spec[] = {
    {"--after", 1, 0},
    {"--model", 1, 0},
    {"--prelude", 0, 0},
};

static void help(void)
{
  fputs("usage: rnnc print MODEL.rnn [--after PASS] [--model NAME] [--prelude]\n"
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
        "  --model NAME  with --after autodiff: differentiate only model NAME\n"
        "  --prelude     also print the built-in cells (rnn, gru, lstm)\n"
        "\n"
        "exit status: 0 printed, 1 the model has errors (or cannot be read), 2 bad usage\n",
        stdout);
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
  if (!after)
    after = "verify";
  enum { PARSE, VERIFY, AUTODIFF } pass;
  if (strcmp(after, "parse") == 0)
    pass = PARSE;
  else if (strcmp(after, "verify") == 0)
    pass = VERIFY;
  else if (strcmp(after, "autodiff") == 0)
    pass = AUTODIFF;
  else
    return usage_error("print", "unknown pass '%s' (passes: parse, verify, autodiff)", after);
  if (opt_given(&o, "--model") && pass != AUTODIFF)
    return usage_error("print", "--model goes with --after autodiff");

  Loaded ld;
  if ((st = load_model(&ld, path, pass == PARSE ? LOAD_PARSE : LOAD_VERIFY)))
    return st;
  Module *m = ld.m;
  int withprelude = opt_given(&o, "--prelude");
  if (pass != AUTODIFF) {
    print_module(stdout, m, withprelude);
    loaded_free(&ld);
    return EXIT_OK;
  }

  /* autodiff: differentiate the chosen model (default: every model) */
  const Model *only = NULL;
  if (opt_given(&o, "--model") && !(only = pick_model(&ld, opt_str(&o, "--model")))) {
    loaded_free(&ld);
    return EXIT_USER;
  }
  if (only && only->loss < 0) {
    user_error("model '%s' has no loss to differentiate (a softmax with a target, or a sum)",
               only->name);
    loaded_free(&ld);
    return EXIT_USER;
  }
  int nmodel = m->nmodel;
  ModelGrad **g = aalloc(m->arena, (size_t)(nmodel ? nmodel : 1) * sizeof *g);
  int from = m->diags.n;
  for (int k = 0; k < nmodel; k++) {
    if ((only && m->model[k] != only) || m->model[k]->loss < 0)
      continue;
    g[k] = autodiff(m, m->model[k]);
    if (!g[k] || m->diags.nerror) {
      print_diags_since(&ld, &from);
      if (!g[k] && !m->diags.nerror)
        user_error("cannot differentiate model '%s'", m->model[k]->name);
      loaded_free(&ld);
      return EXIT_USER;
    }
  }
  print_diags_since(&ld, &from);
  print_module(stdout, m, withprelude);
  for (int k = 0; k < nmodel; k++) {
    if (g[k]) {
      printf("\n# ---- BPTT schedule of model %s ----\n", m->model[k]->name);
      print_schedule(stdout, g[k]);
    } else if (!only && m->model[k]->loss < 0) {
      printf("\n# model %s has no loss: nothing to differentiate\n", m->model[k]->name);
    }
  }
  loaded_free(&ld);
  return EXIT_OK;
}
