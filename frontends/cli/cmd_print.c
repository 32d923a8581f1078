/* cmd_print.c — `rnnc print MODEL.rnn [--after PASS]`: the canonical IR text
 * after a pass of the pipeline (parse, verify, autodiff, schedule). */
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
        "                  schedule  also, per cell a model applies (and its backward\n"
        "                            cell), what runs before the time loop over all\n"
        "                            T*B rows, per step, and after the loop, and which\n"
        "                            matmuls are GEMMs, as # comments\n"
        "  --model NAME  with --after autodiff or schedule: differentiate only model NAME\n"
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
  int pass = pass_lookup(after ? after : "verify");
  if (pass < 0)
    return usage_error("print", "unknown pass '%s' (passes: parse, verify, autodiff, schedule)", after);
  const char *only = opt_str(&o, "--model");
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
