/* main.c — the `rnnc` command: dispatch to one command per file (cmd_*.c).
 * docs/cli.md describes every command, option and exit status. */
#include <string.h>

#include "cli.h"

static const struct {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *what;
} commands[] = {
    {"check", cmd_check, "parse and verify a model; show its nodes, shapes and parameters"},
    {"print", cmd_print, "print the canonical IR text, after parsing, verifying or autodiff"},
    {"init", cmd_init, "write freshly initialized parameters (and random example inputs)"},
    {"run", cmd_run, "run a model forward (and backward with --grad) on safetensors files"},
    {"gradcheck", cmd_gradcheck, "check the model's gradients against finite differences"},
    {"train", cmd_train, "train a model on text or IDX data, with validation and checkpoints"},
    {"eval", cmd_eval, "loss, perplexity, bits per character, accuracy, sentence log-probabilities"},
    {"sample", cmd_sample, "generate text: greedy, temperature, top-k or beam search"},
    {"compile", cmd_compile, "compile a model ahead of time: an object file and its C header"},
};
enum { NCOMMANDS = sizeof commands / sizeof commands[0] };

static void help(FILE *f)
{
  fputs("usage: rnnc COMMAND MODEL.rnn [OPTIONS]\n"
        "\n"
        "rnnc checks, runs and differentiates recurrent neural networks written in\n"
        "its IR (docs/ir.md). A model file named - is read from standard input.\n"
        "\n"
        "commands:\n",
        f);
  for (int i = 0; i < NCOMMANDS; i++)
    fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].what);
  fputs("\n"
        "options:\n"
        "  --help     this text; 'rnnc COMMAND --help' describes one command\n"
        "  --version  print the version\n"
        "\n"
        "exit status: 0 success, 1 an error in the model or the files, 2 bad usage\n",
        f);
}

int main(int argc, char **argv)
{
  if (argc < 2) {
    fputs("rnnc: missing the command\ntry 'rnnc --help'\n", stderr);
    return EXIT_USAGE;
  }
  const char *cmd = argv[1];
  if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
    help(stdout);
    return EXIT_OK;
  }
  if (strcmp(cmd, "--version") == 0) {
    printf("rnnc %s\n", RNNC_VERSION);
    return EXIT_OK;
  }
  for (int i = 0; i < NCOMMANDS; i++)
    if (strcmp(cmd, commands[i].name) == 0) {
      int st = commands[i].run(argc - 1, argv + 1);
      if (fflush(stdout) != 0 || ferror(stdout)) {
        fputs("rnnc: cannot write the standard output\n", stderr);
        return EXIT_USER;
      }
      return st;
    }
  if (cmd[0] == '-')
    fprintf(stderr, "rnnc: unknown option '%s'\ntry 'rnnc --help'\n", cmd);
  else
    fprintf(stderr, "rnnc: unknown command '%s'\ntry 'rnnc --help'\n", cmd);
  return EXIT_USAGE;
}
