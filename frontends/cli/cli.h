/* cli.h — what the `rnnc` commands share: exit codes, option parsing, loading a
 * model file, --dim bindings, one-line errors and aligned tables.
 *
 * Only the command line prints or exits; the library (rnnc_core) never does.
 * Exit status: 0 success, 1 a user error (a one-line reason, or the model's
 * diagnostics), 2 bad usage (a one-line message and "try 'rnnc CMD --help'").
 */
#ifndef RNNC_CLI_H
#define RNNC_CLI_H

#include "ir.h"

#ifndef RNNC_VERSION
#define RNNC_VERSION "0.1.0"
#endif

enum { EXIT_OK = 0, EXIT_USER = 1, EXIT_USAGE = 2 };

/* ---- options (cli_util.c) ------------------------------------------------ */

/* One option a command accepts. Those with an argument take it as the next
 * word or after '=' (`--seed 3`, `--seed=3`); `many` ones may repeat. */
typedef struct OptSpec {
  const char *name; /* "--params" */
  int hasarg;
  int many;
} OptSpec;

enum { OPT_MAXVAL = 64 };

typedef struct Opts {
  const char *cmd;           /* "run": for messages */
  const OptSpec *spec;
  int nspec;
  /* per spec entry: how often given, and its values in order */
  int count[32];
  const char *val[32][OPT_MAXVAL];
  const char *pos[8];        /* positional arguments */
  int npos;
  int help;                  /* --help or -h was given */
} Opts;

/* Parse argv[1..argc-1] (argv[0] is the command name). A lone `-` is a
 * positional (stdin); `--` ends the options. On bad usage prints the message
 * and the hint and returns EXIT_USAGE; otherwise EXIT_OK. */
int opts_parse(Opts *o, const char *cmd, const OptSpec *spec, int nspec, int argc, char **argv);
int opt_given(const Opts *o, const char *name);
const char *opt_str(const Opts *o, const char *name); /* last value or NULL */
/* Exactly one positional MODEL.rnn argument; else a usage error (EXIT_USAGE). */
int opts_model_path(const Opts *o, const char **path);
/* A required option; prints the usage error when missing. */
int opts_require(const Opts *o, const char *name);
/* A non-negative integer option (default def); usage error when malformed. */
int opt_u64(const Opts *o, const char *name, uint64_t def, uint64_t *out);

/* ---- messages (cli_util.c) ----------------------------------------------- */

/* "rnnc: <message>\n" on stderr. Returns EXIT_USER. */
int user_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "rnnc CMD: <message>\ntry 'rnnc CMD --help'\n" on stderr. Returns EXIT_USAGE. */
int usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- loading a model file (cli_util.c) ------------------------------------ */

typedef struct Loaded {
  Module *m;
  int d0;           /* diagnostics before this index belong to the prelude */
  const char *path; /* as given; "-" is stdin */
  const char *name; /* the name in diagnostics: path, or "<stdin>" */
} Loaded;

/* Read path ("-": stdin) and run the pipeline over it up to pass upto
 * (PASS_PARSE, PASS_VERIFY or PASS_AUTODIFF; autodiff: of model only, or of
 * every model with a loss when only is NULL). Prints the diagnostics
 * (warnings too) to stderr. EXIT_OK, or EXIT_USER with the reason printed and
 * ld->m freed. */
int load_model(Loaded *ld, const char *path, int upto, const char *only);
void loaded_free(Loaded *ld);
/* Print diagnostics recorded since index *from, and advance *from. */
void print_diags_since(Loaded *ld, int *from);
/* The model named by --model, or the only one; prints why not and returns NULL. */
Model *pick_model(Loaded *ld, const char *name);

/* Apply each --dim NAME=N to env (names interned in ld's module). Usage error
 * for a malformed binding; user error for a name the model does not have. */
int parse_dims(Loaded *ld, const Model *md, const Opts *o, Env *env);
/* Bind every header dimension of md that env leaves unbound to its default. */
void bind_defaults(Loaded *ld, const Model *md, Env *env);

/* ---- the JIT engine (cli_util.c) ------------------------------------------- */

/* Schedule md's cells (with grad: autodiff first, into md->grad). Prints the
 * reason (no loss, autodiff's diagnostics) and returns EXIT_USER on an error. */
int jit_prepare(Loaded *ld, Model *md, int grad);
/* jit_prepare, then compile md for env (every dim bound) into *cm. Prints
 * the reason and returns EXIT_USER on an error; EXIT_OK. */
int jit_compile(Loaded *ld, Model *md, const Env *env, int grad, CModel **cm);
/* Copy every parameter ("<node>.<param>", F32 or F64) and every input (token
 * ids I32 or I64, floats F32 or F64) from the sets into cm's tensors,
 * converted to its float32 / int32; shapes as bind_dims checked them.
 * RNNC_EINPUT with a message for a token id or target that int32 cannot hold
 * (*bad names that input); RNNC_OK. */
int jit_load(CModel *cm, const TensorSet *params, const TensorSet *inputs, const char **bad, char *err,
             size_t errlen);
/* The tensors interp_run writes, from cm after cmodel_run, in its order:
 * every declared output, then per node grad.<node>.<param> and grad.<input>
 * (with grad). RNNC_ENOMEM or RNNC_OK (out changed only then). */
int jit_results(CModel *cm, const Model *md, int grad, TensorSet *out, char *err, size_t errlen);
/* --threads N: 0 when not given (OpenMP's default); a usage error for N < 1. */
int opt_threads(const Opts *o, int *n);

/* ---- aligned tables (cli_util.c) ------------------------------------------ */

enum { TABLE_MAXCOL = 8 };
typedef struct Table {
  Arena *a;
  int ncol;
  char **cell; /* row-major, nrow * ncol */
  int nrow, cap;
  int right[TABLE_MAXCOL]; /* right-align this column (numbers) */
} Table;

void table_init(Table *t, Arena *a, int ncol);
/* Append a row of ncol strings (copied; NULL is empty). */
void table_row(Table *t, const char *const *cols);
/* Print with columns padded to their widest cell, each line prefixed by indent. */
void table_print(FILE *f, const Table *t, const char *indent);

/* Format helpers, strings in a. */
char *fmt_count(Arena *a, long long n); /* 99137 -> "99,137" */
char *fmt_dims(Arena *a, const int64_t *dim, int rank); /* "[512, 64]" */

/* ---- commands -------------------------------------------------------------- */

int cmd_check(int argc, char **argv);
int cmd_print(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_gradcheck(int argc, char **argv);
int cmd_init(int argc, char **argv);

#endif
