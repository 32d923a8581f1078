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

enum { OPT_MAXVAL = 64, OPT_MAXSPEC = 48 };

typedef struct Opts {
  const char *cmd;           /* "run": for messages */
  const OptSpec *spec;
  int nspec;
  /* per spec entry: how often given, and its values in order */
  int count[OPT_MAXSPEC];
  const char *val[OPT_MAXSPEC][OPT_MAXVAL];
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
/* A number option >= lo (default def); usage error when malformed or below. */
int opt_double(const Opts *o, const char *name, double def, double lo, double *out);

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
/* --dim, then T and B (defT, defB when no --dim gives them) and the header
 * defaults; a user error names a dimension of an input or a parameter left
 * unbound: "dimension 'V' of input 'tokens' has no value; give it with --dim
 * V=N". */
int bind_all_dims(Loaded *ld, Model *md, const Opts *o, Env *env, long defT, long defB);

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
/* `rnnc run --profile`: run cm (loaded, run once) runs more times, forward
 * (and backward with grad) on nthreads (0: OpenMP's default), every call and
 * barrier timed per thread, and print a table per plan (profile.c). Prints
 * the reason and returns EXIT_USER on an error; EXIT_OK. */
int jit_profile(CModel *cm, Arena *a, int grad, int nthreads, int runs);
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

/* ---- training sessions (session.c) ---------------------------------------- */

/* A model opened for train / eval / sample through the public API, with the
 * roles of its inputs found from the graph. */
typedef struct Session {
  rnnc_ctx *ctx;
  Model *md;             /* in ctx's module */
  const char *path;      /* the model file */
  /* input node names by role (NULL: the model has none) */
  const char *tokens;    /* i32 [T, B] read by an embedding or onehot */
  const char *targets;   /* i32 [T, B] softmax target */
  const char *labels;    /* i32 [B] softmax target (a classifier) */
  const char *mask;      /* f32 [T, B] cell mask */
  const char *features;  /* f32 [T, B, d] */
  const char *vocabdim;  /* the header dim the token vocabulary is ("V"), or NULL */
  long vocabn;           /* the vocabulary size written as a number, or 0 */
  int backward;          /* a cell runs backward in time: no state carried between batches */
  int ignore;            /* the loss softmax ignores target -1 */
  const char *probs;     /* an output: probs() of the loss softmax, or NULL */
  const char *classdim;  /* the header dim the loss softmax's classes are ("K"), or NULL */
  long classn;           /* the class count written as a number, or 0 */
  long nclass;           /* set by the caller before session_dims: the data's
                          * classes (labelled lines), bound to classdim; 0: none */
} Session;
/* Open path's model (--model NAME, or its only model). Prints the error and
 * returns EXIT_USER / EXIT_USAGE; EXIT_OK. */
int session_open(Session *s, const char *path, const char *model);
void session_close(Session *s);
/* The dims to compile with: --dim NAME=N, the vocabulary size V (bound to
 * vocabdim; checked against a fixed vocabulary size), T and B. Entries in
 * dims[] (at most cap); *n their number. Prints and returns EXIT_* on error. */
int session_dims(Session *s, const Opts *o, long V, long T, long B, rnnc_dim *dims, int cap, int *n);

/* Text data for train / eval: the vocabulary (built from the training split,
 * or given), the training and validation sets. */
typedef struct TextData {
  Vocab vocab;
  Dataset train, valid;
  int hasvalid;
  int lab;               /* LAB_NONE, or labelled lines (labeldata_load) */
  Classes classes;       /* their classes */
} TextData;
/* Load --data (and --valid, or the last frac of --data held out) as text at
 * --level (--min-count), one stream or (lines) one sequence per line; the
 * vocabulary from vocabjson (a checkpoint's) or built from --data. Prints and
 * returns EXIT_* on error. */
int textdata_load(const Opts *o, const char *vocabjson, int lines, double frac, uint64_t seed, TextData *d);
void textdata_free(TextData *d);
/* Labelled lines (lab: LAB_CLASS "LABEL<TAB>TEXT" per line at --level, or
 * LAB_TAG "TOKEN<TAB>TAG" per line at word level) as textdata_load loads
 * text; the classes from classesjson (a checkpoint's "rnnc.classes") or
 * built from --data. Prints and returns EXIT_* on error. */
int labeldata_load(const Opts *o, const char *vocabjson, const char *classesjson, int lab, double frac,
                   uint64_t seed, TextData *d);
/* The longest sequence of d's sets, in tokens (the default --seq of
 * labelled lines). */
long textdata_longest(const TextData *d);

/* Set net's inputs from a batch (a mask input reads 1 where the batch has none). */
int feed_batch(const Session *s, rnnc_net *net, const Batch *b);
/* The mean loss per target of a forward-only net over d's batches in order
 * (at most maxb; <= 0: all), from a zero state (carried from batch to batch
 * with carry); with probsname on IDX data or labelled lines also the
 * accuracy (per example; tagging: per token). A stream is cut into chunks
 * of T steps (batcher_init: training's validation, the same chunks as
 * examples/aot/train.c), or with whole as batcher_whole cuts it (rnnc eval),
 * every target but the last (nids - 1) % B scored: its last chunk, when
 * shorter than T, runs on tail (eval_tail_net), the states carried from
 * net. what names the data in messages ("validation data"). Prints and
 * returns EXIT_* on error. */
typedef struct Score {
  double loss;           /* mean cross-entropy per target */
  double acc;            /* fraction of labels predicted; -1 when not measured */
  int64_t n;             /* targets counted */
} Score;
int evaluate(const Session *s, rnnc_net *net, int whole, rnnc_net *tail, const Dataset *d, const char *what,
             int carry, long T, long B, int64_t maxb, const char *probsname, Score *sc);
/* *tail: for a stream d whose last chunk in evaluate is shorter than T, net's
 * model compiled with dims (which bind T) and flags at that chunk's steps,
 * sharing net's parameters; else NULL. Prints and returns EXIT_* on error. */
int eval_tail_net(const Session *s, rnnc_net *net, const Dataset *d, int ndims, const rnnc_dim *dims, long T,
                  long B, int flags, int nth, rnnc_net **tail);
/* "loss 1.2345, perplexity 3.437, 1.7813 bits per character[, accuracy 88.10%]";
 * vocabkind -1 (a classifier): the loss and accuracy only. */
void score_text(const Score *sc, int vocabkind, char *buf, size_t len);

/* ---- progress and metrics (progress.c) -------------------------------------- */

typedef struct Progress {
  FILE *f;
  int tty, quiet, shown;
  int64_t logevery;
  double drawn;
} Progress;
typedef struct ProgressInfo {
  int64_t step, epoch;
  double loss, lr, tokps, elapsed;
  double frac;           /* of the run done, 0 when unknown */
  const char *unit;      /* of tokps: "tok/s", "examples/s" */
} ProgressInfo;
double now_s(void);      /* a monotonic clock, seconds */
void progress_init(Progress *p, FILE *f, int quiet, int64_t logevery);
/* After each step: redraw the status line (a terminal, at most 10 times a
 * second) or print a log line every logevery steps. */
void progress_step(Progress *p, const ProgressInfo *in);
/* A line of its own (a validation result), above the status line. */
void progress_line(Progress *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void progress_done(Progress *p);

/* ---- commands -------------------------------------------------------------- */

int cmd_check(int argc, char **argv);
int cmd_print(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_gradcheck(int argc, char **argv);
int cmd_init(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_compile(int argc, char **argv);

#endif
