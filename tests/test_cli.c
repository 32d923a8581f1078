/* test_cli.c — the rnnc command line: exit statuses and exact messages, check
 * and print on every example, init + run (+ --grad) tensors, gradcheck PASS,
 * --help of every command. Runs the built binary (RNNC_BINARY). */
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

/* The path of examples/<name>. */
static const char *ex(const char *name)
{
  char rel[256];
  snprintf(rel, sizeof rel, "examples/%s", name);
  return srcpath(rel);
}

/* Every example file name, sorted; their count in *n. */
static int cmpstr(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}
static char **examples(int *n)
{
  DIR *d = opendir(srcpath("examples"));
  cr_assert(d, "no examples directory");
  char **v = NULL;
  *n = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    size_t len = strlen(e->d_name);
    if (len > 4 && strcmp(e->d_name + len - 4, ".rnn") == 0) {
      v = realloc(v, (size_t)(*n + 1) * sizeof *v);
      v[(*n)++] = strdup(e->d_name);
    }
  }
  closedir(d);
  qsort(v, (size_t)*n, sizeof *v, cmpstr);
  return v;
}
static void free_examples(char **v, int n)
{
  for (int i = 0; i < n; i++)
    free(v[i]);
  free(v);
}

/* A scratch directory per test, removed afterwards. */
static char tmpdir[64];
static void mktmp(void)
{
  strcpy(tmpdir, "/tmp/rnnc_test_cli_XXXXXX");
  cr_assert(mkdtemp(tmpdir));
}
static void rmtmp(void)
{
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  cr_assert_eq(system(cmd), 0);
}
static const char *tmp(const char *name)
{
  static char buf[8][256];
  static int k;
  char *p = buf[k++ & 7];
  snprintf(p, sizeof buf[0], "%s/%s", tmpdir, name);
  return p;
}
static void write_text(const char *path, const char *text)
{
  FILE *f = fopen(path, "w");
  cr_assert(f, "cannot write %s", path);
  fputs(text, f);
  fclose(f);
}

/* Read a safetensors file that must be valid. */
static void read_set(const char *path, TensorSet *s)
{
  char err[512];
  tset_init(s);
  cr_assert_eq(safetensors_read(path, s, err, sizeof err), RNNC_OK, "%s", err);
}

/* Assert tensor name exists in s with the given shape (rank dims). */
static const Tensor *expect(const TensorSet *s, const char *name, int rank, ...)
{
  const Tensor *t = tset_find(s, name);
  cr_assert(t, "no tensor '%s'", name);
  cr_assert_eq(t->rank, rank, "%s: rank %d, expected %d", name, t->rank, rank);
  va_list ap;
  va_start(ap, rank);
  for (int k = 0; k < rank; k++) {
    int64_t d = va_arg(ap, int);
    cr_assert_eq(t->dim[k], d, "%s: dim %d is %lld, expected %lld", name, k,
                 (long long)t->dim[k], (long long)d);
  }
  va_end(ap);
  return t;
}

static double scalar(const Tensor *t)
{
  cr_assert_eq(tensor_numel(t), 1);
  return t->dtype == DT_F64 ? ((const double *)t->data)[0] : ((const float *)t->data)[0];
}

static int count_grads(const TensorSet *s)
{
  int n = 0;
  for (int i = 0; i < s->n; i++)
    n += strncmp(s->t[i].name, "grad.", 5) == 0;
  return n;
}

/* ---- exit statuses and exact messages ---------------------------------------- */

Test(cli, no_command_is_bad_usage)
{
  char *out;
  cr_assert_eq(rnnc_cmd(&out, "%s", ""), 2);
  cr_assert_str_eq(out, "rnnc: missing the command\ntry 'rnnc --help'\n");
  free(out);
}

Test(cli, unknown_command)
{
  char *out;
  cr_assert_eq(rnnc_cmd(&out, "frobnicate x.rnn"), 2);
  cr_assert_str_eq(out, "rnnc: unknown command 'frobnicate'\ntry 'rnnc --help'\n");
  free(out);
}

Test(cli, unknown_option)
{
  char *out;
  cr_assert_eq(rnnc_cmd(&out, "check --bogus '%s'", ex("mgu.rnn")), 2);
  cr_assert_str_eq(out, "rnnc check: unknown option '--bogus'\ntry 'rnnc check --help'\n");
  free(out);
  cr_assert_eq(rnnc_cmd(&out, "run '%s' --params=p --inputs i --out o --fast", ex("mgu.rnn")), 2);
  cr_assert_str_eq(out, "rnnc run: unknown option '--fast'\ntry 'rnnc run --help'\n");
  free(out);
}

Test(cli, missing_file)
{
  char *out;
  cr_assert_eq(rnnc_cmd(&out, "check /nonexistent/x.rnn"), 1);
  cr_assert_str_eq(out, "rnnc: cannot open '/nonexistent/x.rnn': No such file or directory\n");
  free(out);
  cr_assert_eq(rnnc_cmd(&out, "gradcheck /nonexistent/x.rnn"), 1);
  cr_assert_str_eq(out, "rnnc: cannot open '/nonexistent/x.rnn': No such file or directory\n");
  free(out);
}

Test(cli, missing_params)
{
  char *out;
  cr_assert_eq(rnnc_cmd(&out, "run '%s' --inputs i.safetensors --out o.safetensors",
                    ex("charlm_lstm.rnn")),
               2);
  cr_assert_str_eq(out, "rnnc run: missing --params\ntry 'rnnc run --help'\n");
  free(out);
}

Test(cli, missing_model_and_option_value)
{
  char *out;
  cr_assert_eq(rnnc_cmd(&out, "check"), 2);
  cr_assert_str_eq(out, "rnnc check: missing the model file (MODEL.rnn, or - for stdin)\n"
                        "try 'rnnc check --help'\n");
  free(out);
  cr_assert_eq(rnnc_cmd(&out, "run '%s' --inputs i --out o --params", ex("mgu.rnn")), 2);
  cr_assert_str_eq(out, "rnnc run: option '--params' needs a value\ntry 'rnnc run --help'\n");
  free(out);
  cr_assert_eq(rnnc_cmd(&out, "check a.rnn b.rnn"), 2);
  cr_assert_str_eq(out, "rnnc check: unexpected argument 'b.rnn'\ntry 'rnnc check --help'\n");
  free(out);
}

Test(cli, engine_options)
{
  char *out;
  const char *m = ex("mgu.rnn");
  cr_assert_eq(rnnc_cmd(&out, "run '%s' --params p --inputs i --out o --engine gpu", m), 2);
  cr_assert_str_eq(out, "rnnc run: unknown engine 'gpu' (engines: interp, jit)\n"
                        "try 'rnnc run --help'\n");
  free(out);
  cr_assert_eq(rnnc_cmd(&out, "run '%s' --params p --inputs i --out o --engine jit --f64", m), 2);
  cr_assert_str_eq(out, "rnnc run: --f64 goes with --engine interp (the jit engine computes in "
                        "float32)\ntry 'rnnc run --help'\n");
  free(out);
  cr_assert_eq(rnnc_cmd(&out, "run '%s' --params p --inputs i --out o --engine interp --threads 2", m), 2);
  cr_assert_str_eq(out, "rnnc run: --threads goes with --engine jit (the interpreter runs on one "
                        "thread)\ntry 'rnnc run --help'\n");
  free(out);
  cr_assert_eq(rnnc_cmd(&out, "run '%s' --params p --inputs i --out o --threads 0", m), 2);
  cr_assert_str_eq(out, "rnnc run: --threads wants a count from 1 to 4096, not 0\n"
                        "try 'rnnc run --help'\n");
  free(out);
  cr_assert_eq(rnnc_cmd(&out, "run '%s' --params p --inputs i --out o --profile 0", m), 2);
  cr_assert_str_eq(out, "rnnc run: --profile wants a number of runs from 1 to 100000, not 0\n"
                        "try 'rnnc run --help'\n");
  free(out);
  cr_assert_eq(rnnc_cmd(&out, "run '%s' --params p --inputs i --out o --f64 --profile 2", m), 2);
  cr_assert_str_eq(out, "rnnc run: --profile goes with --engine jit (it times the compiled kernels)\n"
                        "try 'rnnc run --help'\n");
  free(out);
  cr_assert_eq(rnnc_cmd(&out, "gradcheck '%s' --engine interp --jit-tol 1e-3", m), 2);
  cr_assert_str_eq(out, "rnnc gradcheck: --threads and --jit-tol go with --engine jit\n"
                        "try 'rnnc gradcheck --help'\n");
  free(out);
  cr_assert_eq(rnnc_cmd(&out, "gradcheck '%s' --engine fast", m), 2);
  cr_assert_str_eq(out, "rnnc gradcheck: unknown engine 'fast' (engines: interp, jit)\n"
                        "try 'rnnc gradcheck --help'\n");
  free(out);
}

Test(cli, bad_dims_and_passes)
{
  char *out;
  cr_assert_eq(rnnc_cmd(&out, "gradcheck '%s' --dim Q=3", ex("charlm_rnn.rnn")), 1);
  cr_assert_str_eq(out, "rnnc: model 'charlm_rnn' has no dimension 'Q'\n");
  free(out);
  cr_assert_eq(rnnc_cmd(&out, "gradcheck '%s' --dim H=abc", ex("charlm_rnn.rnn")), 2);
  cr_assert_str_eq(out, "rnnc gradcheck: --dim wants NAME=N with N a positive integer, not "
                        "'H=abc'\ntry 'rnnc gradcheck --help'\n");
  free(out);
  cr_assert_eq(rnnc_cmd(&out, "print '%s' --after codegen", ex("mgu.rnn")), 2);
  cr_assert_str_eq(out, "rnnc print: unknown pass 'codegen' (passes: parse, verify, autodiff, "
                        "schedule)\n"
                        "try 'rnnc print --help'\n");
  free(out);
  cr_assert_eq(rnnc_cmd(&out, "gradcheck '%s' --seed -1", ex("mgu.rnn")), 2);
  cr_assert_str_eq(out, "rnnc gradcheck: --seed wants a non-negative integer, not '-1'\n"
                        "try 'rnnc gradcheck --help'\n");
  free(out);
}

Test(cli, version)
{
  char *out;
  cr_assert_eq(rnnc_cmd(&out, "--version"), 0);
  cr_assert_str_eq(out, "rnnc 0.1.0\n");
  free(out);
}

/* A model error: exit 1, file:line:col: error: message, the line and a caret. */
Test(cli, model_error_is_a_diagnostic)
{
  mktmp();
  const char *p = tmp("bad.rnn");
  write_text(p, "model m(H = 4) {\n"
                "  input x: f32[T, B, H]\n"
                "  y = nosuchcell(x, H = H)\n"
                "  output y\n"
                "}\n");
  char *out, want[512];
  cr_assert_eq(rnnc_cmd(&out, "check '%s'", p), 1);
  snprintf(want, sizeof want, "%s:3:", p);
  cr_assert(strncmp(out, want, strlen(want)) == 0, "got: %s", out);
  cr_assert(strstr(out, ": error: "), "got: %s", out);
  cr_assert(strstr(out, "nosuchcell"), "got: %s", out);
  cr_assert(strstr(out, "\n   y = nosuchcell(x, H = H)\n"), "got: %s", out);
  cr_assert(strstr(out, "^\n"), "got: %s", out);
  free(out);
  /* the same from standard input names <stdin> */
  cr_assert_eq(rnnc_cmd(&out, "check - < '%s'", p), 1);
  cr_assert(strncmp(out, "<stdin>:3:", 10) == 0, "got: %s", out);
  free(out);
  rmtmp();
}

Test(cli, several_models_need_model_option)
{
  mktmp();
  char *out;
  cr_assert_eq(rnnc_cmd(&out, "init - --out '%s' < /dev/null", tmp("p.safetensors")), 1);
  cr_assert_str_eq(out, "rnnc: '<stdin>' has no model, only cells\n");
  free(out);
  char cmd[2048];
  snprintf(cmd, sizeof cmd, "cat '%s' '%s' | '%s' init - --out '%s'", ex("charlm_rnn.rnn"),
           ex("charlm_gru.rnn"), RNNC_BINARY, tmp("p.safetensors"));
  cr_assert_eq(run_cmd(cmd, &out), 1);
  cr_assert_str_eq(out, "rnnc: '<stdin>' has 2 models (charlm_rnn, charlm_gru); choose one "
                        "with --model NAME\n");
  free(out);
  snprintf(cmd, sizeof cmd, "cat '%s' '%s' | '%s' init - --model charlm_gru --out '%s'",
           ex("charlm_rnn.rnn"), ex("charlm_gru.rnn"), RNNC_BINARY, tmp("p.safetensors"));
  cr_assert_eq(run_cmd(cmd, &out), 0, "%s", out);
  free(out);
  TensorSet s;
  read_set(tmp("p.safetensors"), &s);
  expect(&s, "h.W_ih", 2, 3 * 128, 64); /* the GRU's: [3*H, E] */
  tset_clear(&s);
  rmtmp();
}

/* ---- --help ---------------------------------------------------------------- */

Test(cli, help_of_every_command)
{
  static const struct {
    const char *cmd, *opts[8];
  } c[] = {
      {"check", {"--model"}},
      {"print", {"--after", "parse", "verify", "autodiff", "schedule", "--model", "--prelude"}},
      {"init", {"--out", "--inputs", "--seed", "--dim", "--model"}},
      {"run", {"--params", "--inputs", "--out", "--grad", "--engine", "--dim", "--f64", "--model"}},
      {"gradcheck", {"--seed", "--dim", "--coords", "--tol", "--model"}},
  };
  char *out;
  cr_assert_eq(rnnc_cmd(&out, "--help"), 0);
  for (size_t i = 0; i < sizeof c / sizeof c[0]; i++)
    cr_assert(strstr(out, c[i].cmd), "rnnc --help does not list %s", c[i].cmd);
  free(out);
  for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
    cr_assert_eq(rnnc_cmd(&out, "%s --help", c[i].cmd), 0);
    char usage[64];
    snprintf(usage, sizeof usage, "usage: rnnc %s MODEL.rnn", c[i].cmd);
    cr_assert(strncmp(out, usage, strlen(usage)) == 0, "%s --help: %s", c[i].cmd, out);
    for (int k = 0; k < 8 && c[i].opts[k]; k++)
      cr_assert(strstr(out, c[i].opts[k]), "%s --help does not mention %s", c[i].cmd,
                c[i].opts[k]);
    free(out);
  }
}

/* ---- check and print on every example ---------------------------------------- */

Test(cli, check_every_example)
{
  int n;
  char **v = examples(&n);
  cr_assert_geq(n, 12, "only %d examples", n);
  for (int i = 0; i < n; i++) {
    char *out, want[300];
    cr_assert_eq(rnnc_cmd(&out, "check '%s'", ex(v[i])), 0, "%s:\n%s", v[i], out);
    snprintf(want, sizeof want, "%s: ok (1 model", ex(v[i]));
    cr_assert(strstr(out, want), "%s:\n%s", v[i], out);
    cr_assert(!strstr(out, "warning"), "%s has warnings:\n%s", v[i], out);
    free(out);
  }
  free_examples(v, n);
}

Test(cli, check_shows_shapes_and_params)
{
  char *out;
  cr_assert_eq(rnnc_cmd(&out, "check '%s'", ex("charlm_lstm.rnn")), 0);
  /* the node table, the parameter table at the default sizes, the cell */
  cr_assert(strstr(out, "model charlm_lstm(V = 65, E = 64, H = 128)\n"), "%s", out);
  cr_assert(strstr(out, "[T, B, E]"), "%s", out);
  cr_assert(strstr(out, "h.W_ih"), "%s", out);
  cr_assert(strstr(out, "[4*H, E]"), "%s", out);
  cr_assert(strstr(out, "[512, 64]"), "%s", out);
  /* 65*64 + 512*64 + 512*128 + 2*512 + 65*128 + 65 */
  cr_assert(strstr(out, "7 parameter tensors, 111,873 numbers at the default sizes"), "%s",
            out);
  cr_assert(strstr(out, "cell lstm(x: [I]) state(h: [H], c: [H])  (built in)"), "%s", out);
  free(out);
}

/* print | check - and print | print - give back the same text. */
Test(cli, print_reparses_every_example)
{
  int n;
  char **v = examples(&n);
  for (int i = 0; i < n; i++) {
    char *a, *b, *c, cmd[2048];
    cr_assert_eq(rnnc_cmd(&a, "print '%s'", ex(v[i])), 0, "%s", v[i]);
    snprintf(cmd, sizeof cmd, "'%s' print '%s' | '%s' print -", RNNC_BINARY, ex(v[i]),
             RNNC_BINARY);
    cr_assert_eq(run_cmd(cmd, &b), 0, "%s: %s", v[i], b);
    cr_assert_str_eq(a, b, "%s: printing the printed text changed it", v[i]);
    snprintf(cmd, sizeof cmd, "'%s' print '%s' | '%s' check -", RNNC_BINARY, ex(v[i]),
             RNNC_BINARY);
    cr_assert_eq(run_cmd(cmd, &c), 0, "%s: %s", v[i], c);
    cr_assert(strstr(c, "<stdin>: ok"), "%s: %s", v[i], c);
    free(a);
    free(b);
    free(c);
  }
  free_examples(v, n);
}

Test(cli, print_after_passes)
{
  char *a, *b;
  cr_assert_eq(rnnc_cmd(&a, "print '%s' --after parse", ex("mgu.rnn")), 0);
  cr_assert_eq(rnnc_cmd(&b, "print '%s' --after verify", ex("mgu.rnn")), 0);
  cr_assert_str_eq(a, b);
  cr_assert(strstr(a, "cell mgu(x: [I]) state(h: [H]) {"), "%s", a);
  cr_assert(!strstr(a, "cell lstm"), "%s", a);
  free(a);
  free(b);
  cr_assert_eq(rnnc_cmd(&a, "print '%s' --after autodiff", ex("mgu.rnn")), 0);
  cr_assert(strstr(a, "cell mgu.backward("), "%s", a);
  cr_assert(strstr(a, "# ---- BPTT schedule of model mgu_tagger ----\n#"), "%s", a);
  free(a);
  cr_assert_eq(rnnc_cmd(&a, "print '%s' --prelude", ex("mgu.rnn")), 0);
  cr_assert(strstr(a, "cell lstm(x: [I]) state(h: [H], c: [H]) {"), "%s", a);
  free(a);
}

/* ---- init, run, run --grad ----------------------------------------------------- */

Test(cli, init_run_grad_charlm_lstm)
{
  mktmp();
  char *out;
  const char *m = ex("charlm_lstm.rnn");
  cr_assert_eq(rnnc_cmd(&out, "init '%s' --out '%s' --inputs '%s' --seed 7 --dim T=5 --dim B=3", m,
                    tmp("p.st"), tmp("i.st")),
               0, "%s", out);
  free(out);
  TensorSet p, in;
  read_set(tmp("p.st"), &p);
  cr_assert_eq(p.n, 7);
  expect(&p, "x.weight", 2, 65, 64);
  expect(&p, "h.W_ih", 2, 512, 64);
  expect(&p, "h.W_hh", 2, 512, 128);
  expect(&p, "h.b_ih", 1, 512);
  expect(&p, "h.b_hh", 1, 512);
  expect(&p, "loss.weight", 2, 65, 128);
  expect(&p, "loss.bias", 1, 65);
  /* PyTorch's default init: the LSTM's weights within 1/sqrt(H) */
  const Tensor *w = tset_find(&p, "h.W_hh");
  for (int64_t k = 0; k < tensor_numel(w); k++)
    cr_assert_leq(fabsf(((const float *)w->data)[k]), 1 / sqrtf(128.0f) + 1e-7f);
  read_set(tmp("i.st"), &in);
  const Tensor *tok = expect(&in, "tokens", 2, 5, 3);
  expect(&in, "targets", 2, 5, 3);
  cr_assert_eq(tok->dtype, DT_I32);
  for (int k = 0; k < 15; k++)
    cr_assert(((const int32_t *)tok->data)[k] >= 0 && ((const int32_t *)tok->data)[k] < 65);
  tset_clear(&in);
  tset_clear(&p);

  cr_assert_eq(rnnc_cmd(&out, "run '%s' --params '%s' --inputs '%s' --out '%s'", m, tmp("p.st"),
                    tmp("i.st"), tmp("o.st")),
               0, "%s", out);
  free(out);
  TensorSet o;
  read_set(tmp("o.st"), &o);
  double loss = scalar(expect(&o, "loss", 0));
  /* near-uniform predictions at init: the loss is about log(65) = 4.174 */
  cr_assert(fabs(loss - log(65.0)) < 0.3, "loss %g", loss);
  expect(&o, "h_T", 2, 3, 128);
  expect(&o, "c_T", 2, 3, 128);
  cr_assert_eq(count_grads(&o), 0);
  tset_clear(&o);

  cr_assert_eq(rnnc_cmd(&out, "run '%s' --params '%s' --inputs '%s' --out '%s' --grad", m,
                    tmp("p.st"), tmp("i.st"), tmp("g.st")),
               0, "%s", out);
  cr_assert(strstr(out, "grad.h.W_ih"), "%s", out);
  free(out);
  read_set(tmp("g.st"), &o);
  cr_assert_float_eq(scalar(expect(&o, "loss", 0)), loss, 1e-6);
  expect(&o, "grad.x.weight", 2, 65, 64);
  expect(&o, "grad.h.W_ih", 2, 512, 64);
  expect(&o, "grad.h.W_hh", 2, 512, 128);
  expect(&o, "grad.h.b_ih", 1, 512);
  expect(&o, "grad.h.b_hh", 1, 512);
  expect(&o, "grad.loss.weight", 2, 65, 128);
  expect(&o, "grad.loss.bias", 1, 65);
  cr_assert_eq(count_grads(&o), 7);
  /* the softmax bias gradient of a mean cross-entropy sums to zero */
  const Tensor *gb = tset_find(&o, "grad.loss.bias");
  double sum = 0;
  for (int k = 0; k < 65; k++)
    sum += gb->dtype == DT_F64 ? ((const double *)gb->data)[k] : ((const float *)gb->data)[k];
  cr_assert(fabs(sum) < 1e-5, "sum of grad.loss.bias %g", sum);
  tset_clear(&o);

  /* float64 agrees with float32 */
  cr_assert_eq(rnnc_cmd(&out, "run '%s' --params '%s' --inputs '%s' --out '%s' --f64 --quiet", m,
                    tmp("p.st"), tmp("i.st"), tmp("d.st")),
               0, "%s", out);
  cr_assert_str_eq(out, "");
  free(out);
  read_set(tmp("d.st"), &o);
  cr_assert(fabs(scalar(expect(&o, "loss", 0)) - loss) < 1e-5 * loss);
  tset_clear(&o);
  rmtmp();
}

/* Float inputs and initial states get gradients too. */
Test(cli, run_grad_features_lstm)
{
  mktmp();
  char *out;
  const char *m = ex("features_lstm.rnn");
  cr_assert_eq(rnnc_cmd(&out, "init '%s' --out '%s' --inputs '%s' --dim T=4 --dim B=2", m,
                    tmp("p.st"), tmp("i.st")),
               0, "%s", out);
  free(out);
  cr_assert_eq(rnnc_cmd(&out, "run '%s' --params '%s' --inputs '%s' --out '%s' --grad", m,
                    tmp("p.st"), tmp("i.st"), tmp("g.st")),
               0, "%s", out);
  free(out);
  TensorSet o;
  read_set(tmp("g.st"), &o);
  expect(&o, "loss", 0);
  expect(&o, "h_T", 2, 2, 12);
  expect(&o, "c_T", 2, 2, 12);
  expect(&o, "grad.feats", 3, 4, 2, 6);
  expect(&o, "grad.h0", 2, 2, 12);
  expect(&o, "grad.c0", 2, 2, 12);
  expect(&o, "grad.h.W_ih", 2, 48, 6);
  expect(&o, "grad.loss.weight", 2, 4, 12);
  tset_clear(&o);
  rmtmp();
}

/* A bidirectional layer's parameters are <node>.fwd/.bwd; a many-to-one model
 * outputs per-sequence probabilities; a seq2seq model binds S from its input. */
Test(cli, run_grad_tagger_classifier_seq2seq)
{
  mktmp();
  char *out;
  cr_assert_eq(rnnc_cmd(&out, "init '%s' --out '%s' --inputs '%s' --dim T=6 --dim B=2",
                    ex("bilstm_tagger.rnn"), tmp("p.st"), tmp("i.st")),
               0, "%s", out);
  free(out);
  cr_assert_eq(rnnc_cmd(&out, "run '%s' --params '%s' --inputs '%s' --out '%s' --grad",
                    ex("bilstm_tagger.rnn"), tmp("p.st"), tmp("i.st"), tmp("g.st")),
               0, "%s", out);
  free(out);
  TensorSet o;
  read_set(tmp("g.st"), &o);
  expect(&o, "grad.enc.fwd.W_ih", 2, 96, 16);
  expect(&o, "grad.enc.bwd.W_hh", 2, 96, 24);
  expect(&o, "grad.loss.weight", 2, 7, 48);
  tset_clear(&o);

  cr_assert_eq(rnnc_cmd(&out, "init '%s' --out '%s' --inputs '%s' --dim T=5 --dim B=3",
                    ex("gru_classifier.rnn"), tmp("p2.st"), tmp("i2.st")),
               0, "%s", out);
  free(out);
  cr_assert_eq(rnnc_cmd(&out, "run '%s' --params '%s' --inputs '%s' --out '%s'",
                    ex("gru_classifier.rnn"), tmp("p2.st"), tmp("i2.st"), tmp("o2.st")),
               0, "%s", out);
  free(out);
  read_set(tmp("o2.st"), &o);
  const Tensor *pr = expect(&o, "p", 2, 3, 5);
  for (int b = 0; b < 3; b++) {
    double s = 0;
    for (int k = 0; k < 5; k++)
      s += pr->dtype == DT_F64 ? ((const double *)pr->data)[b * 5 + k]
                               : ((const float *)pr->data)[b * 5 + k];
    cr_assert(fabs(s - 1) < 1e-5, "probabilities of example %d sum to %g", b, s);
  }
  tset_clear(&o);

  cr_assert_eq(rnnc_cmd(&out, "init '%s' --out '%s' --inputs '%s'", ex("seq2seq.rnn"),
                    tmp("p3.st"), tmp("i3.st")),
               1);
  cr_assert_str_eq(out, "rnnc: dimension 'S' of input 'src' has no value; give it with --dim "
                        "S=N\n");
  free(out);
  cr_assert_eq(rnnc_cmd(&out, "init '%s' --out '%s' --inputs '%s' --dim S=7 --dim T=4",
                    ex("seq2seq.rnn"), tmp("p3.st"), tmp("i3.st")),
               0, "%s", out);
  free(out);
  cr_assert_eq(rnnc_cmd(&out, "run '%s' --params '%s' --inputs '%s' --out '%s' --grad",
                    ex("seq2seq.rnn"), tmp("p3.st"), tmp("i3.st"), tmp("o3.st")),
               0, "%s", out);
  free(out);
  read_set(tmp("i3.st"), &o);
  expect(&o, "src", 2, 7, 4);
  expect(&o, "tgt_in", 2, 4, 4);
  tset_clear(&o);
  read_set(tmp("o3.st"), &o);
  expect(&o, "grad.enc.W_hh", 2, 128, 32);
  expect(&o, "grad.xs.weight", 2, 30, 16);
  tset_clear(&o);
  rmtmp();
}

/* init and run on every example, with gradients. */
Test(cli, init_run_grad_every_example)
{
  mktmp();
  int n;
  char **v = examples(&n);
  for (int i = 0; i < n; i++) {
    char *out;
    cr_assert_eq(rnnc_cmd(&out, "init '%s' --out '%s' --inputs '%s' --dim T=3 --dim B=2%s",
                      ex(v[i]), tmp("p.st"), tmp("i.st"),
                      strcmp(v[i], "seq2seq.rnn") == 0 ? " --dim S=4" : ""),
                 0, "%s: %s", v[i], out);
    free(out);
    cr_assert_eq(rnnc_cmd(&out, "run '%s' --params '%s' --inputs '%s' --out '%s' --grad --quiet",
                      ex(v[i]), tmp("p.st"), tmp("i.st"), tmp("o.st")),
                 0, "%s: %s", v[i], out);
    free(out);
    TensorSet p, o;
    read_set(tmp("p.st"), &p);
    read_set(tmp("o.st"), &o);
    /* a gradient for every parameter, and a finite loss */
    for (int k = 0; k < p.n; k++) {
      char g[256];
      snprintf(g, sizeof g, "grad.%s", p.t[k].name);
      const Tensor *t = tset_find(&o, g);
      cr_assert(t, "%s: no %s", v[i], g);
      cr_assert_eq(t->rank, p.t[k].rank);
      for (int d = 0; d < t->rank; d++)
        cr_assert_eq(t->dim[d], p.t[k].dim[d], "%s: %s", v[i], g);
    }
    cr_assert(isfinite(scalar(tset_find(&o, "loss"))), "%s", v[i]);
    tset_clear(&p);
    tset_clear(&o);
  }
  free_examples(v, n);
  rmtmp();
}

Test(cli, init_is_deterministic)
{
  mktmp();
  char *out, cmd[1024];
  const char *m = ex("mgu.rnn");
  cr_assert_eq(rnnc_cmd(&out, "init '%s' --out '%s' --seed 3", m, tmp("a.st")), 0);
  free(out);
  cr_assert_eq(rnnc_cmd(&out, "init '%s' --out '%s' --seed 3", m, tmp("b.st")), 0);
  free(out);
  cr_assert_eq(rnnc_cmd(&out, "init '%s' --out '%s' --seed 4", m, tmp("c.st")), 0);
  free(out);
  snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", tmp("a.st"), tmp("b.st"));
  cr_assert_eq(run_cmd(cmd, NULL), 0, "the same seed gave different files");
  snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", tmp("a.st"), tmp("c.st"));
  cr_assert_eq(run_cmd(cmd, NULL), 1, "different seeds gave the same file");
  rmtmp();
}

Test(cli, run_reports_bad_tensor_files)
{
  mktmp();
  char *out;
  const char *m = ex("mgu.rnn");
  write_text(tmp("junk.st"), "not a safetensors file at all");
  cr_assert_eq(rnnc_cmd(&out, "run '%s' --params '%s' --inputs '%s' --out '%s'", m, tmp("junk.st"),
                    tmp("junk.st"), tmp("o.st")),
               1);
  cr_assert(strncmp(out, "rnnc: ", 6) == 0 && strstr(out, tmp("junk.st")), "%s", out);
  cr_assert_eq(strchr(out, '\n') - out + 1, (long)strlen(out), "not one line: %s", out);
  free(out);
  /* parameters of another model: a one-line shape or missing-tensor error */
  cr_assert_eq(rnnc_cmd(&out, "init '%s' --out '%s' --inputs '%s'", ex("charlm_rnn.rnn"),
                    tmp("p.st"), tmp("i.st")),
               0);
  free(out);
  cr_assert_eq(rnnc_cmd(&out, "run '%s' --params '%s' --inputs '%s' --out '%s'", m, tmp("p.st"),
                    tmp("i.st"), tmp("o.st")),
               1);
  cr_assert(strncmp(out, "rnnc: ", 6) == 0, "%s", out);
  cr_assert_eq(strchr(out, '\n') - out + 1, (long)strlen(out), "not one line: %s", out);
  free(out);
  rmtmp();
}

/* ---- gradcheck ----------------------------------------------------------------- */

Test(cli, gradcheck_every_example, .timeout = 600)
{
  int n;
  char **v = examples(&n);
  for (int i = 0; i < n; i++) {
    char *out;
    /* the finite differences; the jit part on every example is
     * test_jit_model's (at a tighter tolerance), here on a few (gradcheck_jit) */
    cr_assert_eq(rnnc_cmd(&out, "gradcheck '%s' --engine interp", ex(v[i])), 0, "%s:\n%s", v[i], out);
    size_t len = strlen(out);
    cr_assert(len > 5 && strcmp(out + len - 5, "PASS\n") == 0, "%s:\n%s", v[i], out);
    cr_assert(!strstr(out, "FAIL"), "%s:\n%s", v[i], out);
    free(out);
  }
  free_examples(v, n);
}

Test(cli, gradcheck_table)
{
  char *out;
  cr_assert_eq(rnnc_cmd(&out, "gradcheck '%s' --dim H=8 --seed 2 --coords 4 --engine interp",
                    ex("charlm_lstm.rnn")),
               0, "%s", out);
  cr_assert(strstr(out, "H=8"), "%s", out);
  cr_assert(strstr(out, "gradient"), "%s", out);
  cr_assert(strstr(out, "max rel err"), "%s", out);
  cr_assert(strstr(out, "grad.h.W_ih"), "%s", out);
  cr_assert(strstr(out, "4/256"), "%s", out); /* W_hh [4*8, 8]: 4 of 256 checked */
  cr_assert(strstr(out, "grad.x.weight"), "%s", out);
  free(out);
  /* a tolerance nothing meets fails with status 1 */
  cr_assert_eq(rnnc_cmd(&out, "gradcheck '%s' --dim H=8 --coords 2 --tol 1e-300 --engine interp",
                    ex("mgu.rnn")),
               1, "%s", out);
  size_t len = strlen(out);
  cr_assert(len > 5 && strcmp(out + len - 5, "FAIL\n") == 0, "%s", out);
  free(out);
}

/* ---- the jit engine ------------------------------------------------------------- */

/* Element k of a float tensor as a double. */
static double fval(const Tensor *t, int64_t k)
{
  return t->dtype == DT_F64 ? ((const double *)t->data)[k] : ((const float *)t->data)[k];
}

/* `run` with the jit engine (the default) writes the tensors the interpreter
 * writes, in its order, with its dtypes and shapes, within 1e-5 norm-wise
 * (test_jit_model.c has the thorough comparison); the engine is in the
 * metadata and the summary line. */
static void jit_vs_interp(const char *model, const char *dims)
{
  mktmp();
  char *out;
  cr_assert_eq(rnnc_cmd(&out, "init '%s' --out '%s' --inputs '%s' %s", ex(model), tmp("p.st"), tmp("i.st"), dims),
               0, "%s", out);
  free(out);
  cr_assert_eq(rnnc_cmd(&out, "run '%s' --params '%s' --inputs '%s' --out '%s' --grad %s", ex(model), tmp("p.st"),
                    tmp("i.st"), tmp("j.st"), dims),
               0, "%s", out);
  cr_assert(strstr(out, "(float32, jit compiled in "), "%s", out);
  cr_assert(strstr(out, "with gradients)\n"), "%s", out);
  free(out);
  cr_assert_eq(rnnc_cmd(&out, "run '%s' --params '%s' --inputs '%s' --out '%s' --grad --engine interp --quiet %s",
                    ex(model), tmp("p.st"), tmp("i.st"), tmp("r.st"), dims),
               0, "%s", out);
  free(out);
  TensorSet j, r;
  read_set(tmp("j.st"), &j);
  read_set(tmp("r.st"), &r);
  cr_assert_str_eq(tset_getmeta(&j, "engine"), "jit");
  cr_assert_str_eq(tset_getmeta(&r, "engine"), "interp");
  cr_assert_eq(j.n, r.n, "%s: jit wrote %d tensors, interp %d", model, j.n, r.n);
  for (int i = 0; i < r.n; i++) {
    const Tensor *a = &j.t[i], *b = &r.t[i];
    cr_assert_str_eq(a->name, b->name, "%s: tensor %d", model, i);
    cr_assert(a->dtype == b->dtype && a->rank == b->rank, "%s: %s", model, a->name);
    for (int d = 0; d < a->rank; d++)
      cr_assert_eq(a->dim[d], b->dim[d], "%s: %s", model, a->name);
    double maxdiff = 0, maxref = 0;
    for (int64_t k = 0; k < tensor_numel(b); k++) {
      maxdiff = fmax(maxdiff, fabs(fval(a, k) - fval(b, k)));
      maxref = fmax(maxref, fabs(fval(b, k)));
    }
    cr_expect(maxdiff <= 1e-5 * fmax(maxref, 1e-30), "%s: %s: jit vs interp rel %.3g", model, a->name,
              maxdiff / maxref);
  }
  tset_clear(&j);
  tset_clear(&r);
  rmtmp();
}

Test(cli, run_jit_matches_interp)
{
  jit_vs_interp("charlm_lstm.rnn", "--dim T=5 --dim B=3 --dim H=16");
  jit_vs_interp("features_lstm.rnn", "--dim T=4 --dim B=2"); /* grad.feats, grad.h0, grad.c0 */
  jit_vs_interp("gru_classifier.rnn", "--dim T=3 --dim B=2"); /* probabilities [B, K] */
}

/* --threads 1 and --threads 3 write the same bytes; --f64 alone runs the
 * interpreter. */
Test(cli, run_jit_threads_bitwise)
{
  mktmp();
  char *out, cmd[1024];
  const char *m = ex("bilstm_tagger.rnn");
  cr_assert_eq(rnnc_cmd(&out, "init '%s' --out '%s' --inputs '%s' --dim T=6 --dim B=5", m, tmp("p.st"), tmp("i.st")),
               0, "%s", out);
  free(out);
  for (int n = 1; n <= 3; n += 2) {
    char name[16];
    snprintf(name, sizeof name, "o%d.st", n);
    cr_assert_eq(rnnc_cmd(&out, "run '%s' --params '%s' --inputs '%s' --out '%s' --grad --threads %d", m, tmp("p.st"),
                      tmp("i.st"), tmp(name), n),
                 0, "%s", out);
    cr_assert(strstr(out, n == 1 ? " 1 thread, " : " 3 threads, "), "%s", out);
    free(out);
  }
  snprintf(cmd, sizeof cmd, "cmp '%s' '%s'", tmp("o1.st"), tmp("o3.st"));
  cr_assert_eq(run_cmd(cmd, &out), 0, "1 and 3 threads wrote different files: %s", out);
  free(out);
  cr_assert_eq(rnnc_cmd(&out, "run '%s' --params '%s' --inputs '%s' --out '%s' --f64", m, tmp("p.st"), tmp("i.st"),
                    tmp("d.st")),
               0, "%s", out);
  cr_assert(strstr(out, "(float64, interp)"), "%s", out);
  free(out);
  rmtmp();
}

/* --profile 3: the outputs as without it, then a line per op of both plans
 * (the step kernels inside their loops, called once per step per thread
 * with rows for each), and --quiet keeps the profile. */
Test(cli, run_profile)
{
  mktmp();
  char *out, cmd[1024];
  const char *m = ex("charlm_lstm.rnn");
  cr_assert_eq(rnnc_cmd(&out, "init '%s' --out '%s' --inputs '%s' --dim T=5 --dim B=4 --dim H=16", m, tmp("p.st"),
                        tmp("i.st")),
               0, "%s", out);
  free(out);
  cr_assert_eq(rnnc_cmd(&out, "run '%s' --params '%s' --inputs '%s' --out '%s' --grad --threads 2 --dim H=16", m, tmp("p.st"),
                        tmp("i.st"), tmp("a.st")),
               0, "%s", out);
  free(out);
  cr_assert_eq(rnnc_cmd(&out, "run '%s' --params '%s' --inputs '%s' --out '%s' --grad --threads 2 --dim H=16 --profile 3 --quiet",
                        m, tmp("p.st"), tmp("i.st"), tmp("b.st")),
               0, "%s", out);
  static const char head[] = "profile: 3 runs, 2 threads; per op: ";
  cr_assert(strncmp(out, head, strlen(head)) == 0, "%s", out);
  cr_assert(strstr(out, "\nforward: "), "%s", out);
  cr_assert(strstr(out, "\nbackward: "), "%s", out);
  cr_assert(strstr(out, "  loop over 5 steps\n"), "%s", out);
  cr_assert(strstr(out, "  loop over 5 steps, reversed\n"), "%s", out);
  /* 5 steps, 2 threads: 10 calls per run */
  const char *step = strstr(out, "_lstm_step ");
  cr_assert(step && strtol(step + strlen("_lstm_step "), NULL, 10) == 10, "%s", out);
  cr_assert(strstr(out, "  all ops "), "%s", out);
  cr_assert_null(strstr(out, "wrote "), "%s", out);
  free(out);
  snprintf(cmd, sizeof cmd, "cmp '%s' '%s'", tmp("a.st"), tmp("b.st"));
  cr_assert_eq(run_cmd(cmd, &out), 0, "--profile changed the outputs: %s", out);
  free(out);
  rmtmp();
}

/* A token id or target out of range: both engines give the same one-line
 * message, also for an I64 id that int32 cannot hold. */
Test(cli, run_bad_ids_same_message)
{
  mktmp();
  char *out, err[512];
  const char *m = ex("charlm_rnn.rnn");
  cr_assert_eq(rnnc_cmd(&out, "init '%s' --out '%s' --inputs '%s' --dim T=4 --dim B=2", m, tmp("p.st"), tmp("i.st")),
               0, "%s", out);
  free(out);
  static const struct {
    const char *input;
    int64_t bad;
    int i64;
    const char *msg;
  } cases[] = {
      {"tokens", 70, 0, "rnnc: input 'tokens' has token id 70 at [2, 1], outside [0, 65)\n"},
      {"targets", -3, 0, "rnnc: input 'targets' has target -3 at [2, 1], outside [0, 65)\n"},
      {"tokens", 5000000000, 1, "rnnc: input 'tokens' has token id 5000000000 at [2, 1], outside [0, 65)\n"},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    TensorSet in;
    read_set(tmp("i.st"), &in);
    Tensor *t = tset_find(&in, cases[k].input);
    cr_assert(t && t->dtype == DT_I32 && tensor_numel(t) == 8);
    if (cases[k].i64) {
      int32_t v[8];
      memcpy(v, t->data, sizeof v);
      t = tset_add(&in, cases[k].input, DT_I64, 2, (const int64_t[]){4, 2});
      for (int e = 0; e < 8; e++)
        ((int64_t *)t->data)[e] = v[e];
      ((int64_t *)t->data)[5] = cases[k].bad;
    } else {
      ((int32_t *)t->data)[5] = (int32_t)cases[k].bad;
    }
    cr_assert_eq(safetensors_write(tmp("bad.st"), &in, err, sizeof err), RNNC_OK, "%s", err);
    tset_clear(&in);
    for (int e = 0; e < 2; e++) {
      cr_assert_eq(rnnc_cmd(&out, "run '%s' --params '%s' --inputs '%s' --out '%s' --grad --engine %s", m,
                        tmp("p.st"), tmp("bad.st"), tmp("o.st"), e ? "interp" : "jit"),
                   1, "%s", out);
      cr_expect_str_eq(out, cases[k].msg, "engine %s", e ? "interp" : "jit");
      free(out);
    }
  }
  rmtmp();
}

/* gradcheck's second check: the compiled float32 gradients against the
 * float64 ones, at the same point; --jit-tol decides, and FAIL exits 1. */
Test(cli, gradcheck_jit)
{
  char *out;
  const char *m = ex("features_lstm.rnn");
  cr_assert_eq(rnnc_cmd(&out, "gradcheck '%s' --coords 2 --threads 2", m), 0, "%s", out);
  cr_assert(strstr(out, "jit: compiled in "), "%s", out);
  cr_assert(strstr(out, ", float32, 2 threads; against the float64 interpreter\n"), "%s", out);
  cr_assert(strstr(out, "  grad.h0 "), "%s", out);
  cr_assert(strstr(out, "jit worst error "), "%s", out);
  cr_assert(strstr(out, "tolerance 1e-04: PASS\n"), "%s", out);
  size_t len = strlen(out);
  const char *end = "finite differences PASS, jit PASS: PASS\n";
  cr_assert(len > strlen(end) && strcmp(out + len - strlen(end), end) == 0, "%s", out);
  free(out);
  cr_assert_eq(rnnc_cmd(&out, "gradcheck '%s' --coords 2 --jit-tol 1e-300", m), 1, "%s", out);
  end = "finite differences PASS, jit FAIL: FAIL\n";
  len = strlen(out);
  cr_assert(len > strlen(end) && strcmp(out + len - strlen(end), end) == 0, "%s", out);
  free(out);
  cr_assert_eq(rnnc_cmd(&out, "gradcheck '%s' --coords 2 --engine interp", m), 0, "%s", out);
  cr_assert(!strstr(out, "jit"), "%s", out);
  free(out);
  /* seq2seq: two cells, init = enc, S bound by gradcheck */
  cr_assert_eq(rnnc_cmd(&out, "gradcheck '%s' --coords 1 --dim H=5", ex("seq2seq.rnn")), 0, "%s", out);
  len = strlen(out);
  cr_assert(len > 5 && strcmp(out + len - 5, "PASS\n") == 0, "%s", out);
  free(out);
}

/* print --emit: the kernels as LLVM IR and as assembly, at the sizes asked. */
Test(cli, print_emit)
{
  char *out;
  cr_assert_eq(rnnc_cmd(&out, "print '%s' --emit llvm --dim H=16", ex("charlm_rnn.rnn")), 0, "%s", out);
  cr_assert(strstr(out, "target triple = "), "%.400s", out);
  cr_assert(strstr(out, "define void @"), "%.400s", out);
  free(out);
  cr_assert_eq(rnnc_cmd(&out, "print '%s' --emit asm --grad --dim T=3", ex("charlm_rnn.rnn")), 0, "%.400s", out);
  cr_assert(strstr(out, "\t.text\n"), "%.400s", out);
  cr_assert(strstr(out, "\tret"), "%.400s", out);
  free(out);
  /* the plan: the hoisted input GEMM before the loop, one step per iteration;
   * a bidirectional layer also runs its time loop backward */
  cr_assert_eq(rnnc_cmd(&out, "print '%s' --emit plan --dim T=6", ex("mgu.rnn")), 0, "%s", out);
  cr_assert(strncmp(out, "# plan of model mgu_tagger at T=6 B=4 ", 38) == 0, "%s", out);
  cr_assert(strstr(out, "#   loop t = 0 .. T-1 (6 steps, "), "%s", out);
  cr_assert(strstr(out, "#   loop t = T-1 .. 0 (6 steps, "), "%s", out);
  cr_assert(strstr(out, "#   -- barrier --\n"), "%s", out);
  cr_assert(strstr(out, "#     k"), "%s", out); /* a kernel in the loop */
  free(out);
  /* big enough, between barriers: the hoisted GEMM and the logits are
   * shared dynamically; the step (rows kept through the loop) is not. The
   * hoisted GEMM reads the embedding's rows: it runs over the table's 65
   * rows, gathered by id into the 256 (embed_fold) */
  cr_assert_eq(rnnc_cmd(&out, "print '%s' --emit plan --dim H=256 --dim B=32", ex("charlm_lstm.rnn")), 0, "%s",
               out);
  cr_assert(strstr(out, "#   k3_gemm                      [0, 65) in grains of 6, then a barrier, "
                        "dynamic (chunks a multiple of 5)\n"
                        "#   k4_gather                    [0, 256) in grains of 1\n"),
            "%s", out);
  cr_assert(strstr(out, "#   k7_logits                    [0, 256) in grains of 6, "
                        "dynamic (chunks a multiple of 10)\n"),
            "%s", out);
  cr_assert(strstr(out, "#     k5_lstm_step                 [0, 32) in grains of 1\n"), "%s", out);
  free(out);
  /* weight gradients: by rows of the gradient, op(B) packed per slice of
   * 1024 of the T·B rows (a loop over slices when there are several), each
   * GEMM shared dynamically (W_ih's over the embedding's 65 table rows, one
   * slice); with fewer row tiles than panels, by panels */
  cr_assert_eq(rnnc_cmd(&out, "print '%s' --emit plan --grad --dim H=256 --dim B=32 --dim T=64",
                        ex("charlm_lstm.rnn")),
               0, "%s", out);
  cr_assert(strstr(out, "#   loop s = 0 .. 1 (2 slices of the rows, 3 ops)\n"
                        "#     k43_pack                     [0, 16) in grains of 1\n"
                        "#     -- barrier --\n"
                        "#     k42_wgrad                    [0, 1024) in grains of 6, then a barrier, "
                        "dynamic (chunks a multiple of 5)\n"),
            "%s", out);
  free(out);
  cr_assert_eq(rnnc_cmd(&out, "print '%s' --emit plan --grad --dim H=2 --dim E=64 --dim B=32 --dim T=8",
                        ex("charlm_lstm.rnn")),
               0, "%s", out);
  cr_assert(strstr(out, "_wgrad                    [0, 4) in grains of 1, then a barrier\n"), "%s", out);
  cr_assert(!strstr(out, "slices of the rows"), "%s", out);
  free(out);
  cr_assert_eq(rnnc_cmd(&out, "print '%s' --emit wasm", ex("mgu.rnn")), 2);
  cr_assert_str_eq(out, "rnnc print: unknown --emit 'wasm' (llvm, asm or plan)\ntry 'rnnc print --help'\n");
  free(out);
  cr_assert_eq(rnnc_cmd(&out, "print '%s' --emit llvm --after schedule", ex("mgu.rnn")), 2);
  cr_assert_str_eq(out, "rnnc print: --emit prints code, not the IR: it takes no --after or --prelude\n"
                        "try 'rnnc print --help'\n");
  free(out);
  cr_assert_eq(rnnc_cmd(&out, "print '%s' --dim H=3", ex("mgu.rnn")), 2);
  cr_assert_str_eq(out, "rnnc print: --dim and --grad go with --emit\ntry 'rnnc print --help'\n");
  free(out);
  cr_assert_eq(rnnc_cmd(&out, "print '%s' --emit asm", ex("seq2seq.rnn")), 1);
  cr_assert_str_eq(out, "rnnc: dimension 'S' of input 'src' has no value; give it with --dim S=N\n");
  free(out);
}
