/* test_aot_examples.c — the programs of examples/aot/ built with plain cc
 * against a model from `rnnc compile`, run, and compared with rnnc itself:
 *
 * - `rnnc train` trains a small examples/charlm.rnn (byte level) with a
 *   metrics line per step and a checkpoint; `rnnc compile` compiles the same
 *   model (forward, step and training step) for this CPU; generate.c and
 *   train.c are built with the README's cc line (plus -Werror, and the
 *   sanitizers when this test is built with them: librnnc_rt.a is then
 *   instrumented);
 * - generate's text equals `rnnc sample`'s from the same checkpoint, greedy
 *   and with a temperature and seed;
 * - train, started from `rnnc init` with the same seed, writes the same
 *   metrics as rnnc train (step, epoch, loss, lr, grad_norm per step and
 *   the validation loss, all as rnnc prints them: 8 significant digits),
 *   and its saved parameters equal rnnc train's checkpoint bit for bit;
 * - rnnc sample reads train's saved checkpoint, and the safetensors helper's
 *   errors are one line naming the file, the tensor and what is wrong.
 * Runs the built binary (RNNC_BINARY) and the cc on the PATH. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static void setup(void) { tmpdir_make("test-aot-examples"); }

TestSuite(aot_examples, .init = setup, .fini = tmpdir_remove, .timeout = 600);

/* The sanitizers the test (and so librnnc_rt.a) was built with: RNNC_SANITIZE
 * compiles everything with -fsanitize=address,undefined, which GCC announces
 * by __SANITIZE_ADDRESS__ and clang by __has_feature(address_sanitizer). */
#if defined(__SANITIZE_ADDRESS__)
#define SANITIZE " -fsanitize=address,undefined"
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZE " -fsanitize=address,undefined"
#endif
#endif
#ifndef SANITIZE
#define SANITIZE ""
#endif

/* The model's sizes: every command below uses them. */
#define DIMS "--dim E=16 --dim H=32"
#define BT "--batch 4 --seq 16"

/* About n bytes of a paragraph repeated, cut at a line's end: text a small
 * model learns within a few hundred steps, so that greedy generation gives
 * more than one character repeated. */
static const char *corpus(const char *name, size_t n)
{
  static const char para[] = "The quick brown fox jumps over the lazy dog. A journey of a thousand miles "
                             "begins with a single step. All that glitters is not gold.\n";
  char *buf = malloc(n);
  cr_assert(buf);
  for (size_t i = 0; i < n; i++)
    buf[i] = para[i % (sizeof para - 1)];
  size_t len = n;
  while (len > 0 && buf[len - 1] != '\n')
    len--;
  write_bytes(tmp_path(name), buf, len);
  free(buf);
  return tmp_path(name);
}

/* Run a shell command; its output (malloc'ed) when it exits 0, else the
 * test fails with the command and its output. */
static char *must(const char *cmd)
{
  char *out;
  int st = run_cmd(cmd, &out);
  cr_assert_eq(st, 0, "exit %d: %s\n%s", st, cmd, out);
  return out;
}

/* Build examples/aot/<name>.c with the README's line into the temp dir. */
static void build_example(const char *name)
{
  char cmd[4096], bindir[4096];
  snprintf(bindir, sizeof bindir, "%s", RNNC_BINARY);
  snprintf(cmd, sizeof cmd,
           "cd '%s' && cc -std=c17 -O2 -Wall -Wextra -Wpedantic -Werror '%s/examples/aot/%s.c' "
           "'%s/examples/aot/safetensors.c' charlm.o -I. -I'%s/include' -L'%s' -lrnnc_rt -lsleef -lm -ljansson "
           "-fopenmp" SANITIZE " -o %s",
           tmp_dir(), RNNC_SOURCE_DIR, name, RNNC_SOURCE_DIR, RNNC_SOURCE_DIR, dirname(bindir), name);
  free(must(cmd));
}

/* The JSON objects of a metrics file, one per line (a JSON array). */
static json_t *metrics(const char *path)
{
  char *text = read_file(path);
  cr_assert(text, "no metrics file %s", path);
  json_t *a = json_array();
  for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
    json_error_t e;
    json_t *o = json_loads(line, 0, &e);
    cr_assert(json_is_object(o), "%s: not JSON: %s", path, line);
    json_array_append_new(a, o);
  }
  free(text);
  return a;
}

/* Field key of metrics lines a[i] and b[i] the same number. */
static void same_field(json_t *a, json_t *b, size_t i, const char *key)
{
  json_t *x = json_object_get(json_array_get(a, i), key), *y = json_object_get(json_array_get(b, i), key);
  cr_assert(json_is_number(x) && json_is_number(y), "line %zu: '%s' missing", i + 1, key);
  cr_assert_eq(json_number_value(x), json_number_value(y), "line %zu: %s %.9g (rnnc train) vs %.9g (train.c)", i + 1,
               key, json_number_value(x), json_number_value(y));
}

Test(aot_examples, generate_and_train_match_rnnc)
{
  char model[1024], data[1024], cmd[16384], *out; /* srcpath and tmp_path rotate their buffers: copies */
  snprintf(model, sizeof model, "%s", srcpath("examples/charlm.rnn"));
  snprintf(data, sizeof data, "%s", corpus("text.txt", 3000)); /* 43 batches of 4 x 16 per epoch */

  /* rnnc train: 300 steps (7 epochs), a metrics line each, validation on the last 5% */
  snprintf(cmd, sizeof cmd,
           "'%s' train '%s' --data '%s' --level byte " DIMS " " BT " --steps 300 --seed 5 --lr 0.02 "
           "--log-every 1 --metrics '%s' --checkpoint '%s' --threads 2 --quiet",
           RNNC_BINARY, model, data, tmp_path("rnnc.jsonl"), tmp_path("ck.st"));
  free(must(cmd));

  /* rnnc compile: the same model, every program, for this CPU */
  snprintf(cmd, sizeof cmd,
           "cd '%s' && '%s' compile '%s' -o charlm.o --header charlm.h --prefix charlm --train " BT
           " --cpu native --dim V=256 " DIMS,
           tmp_dir(), RNNC_BINARY, model);
  free(must(cmd));
  build_example("generate");
  build_example("train");

  /* generate == rnnc sample: greedy, then a temperature and a seed */
  const char *modes[] = {"--greedy", "--temperature 0.8 --seed 7"};
  for (int k = 0; k < 2; k++) {
    char *want, *got;
    snprintf(cmd, sizeof cmd, "'%s' sample '%s' --params '%s' " DIMS " --prefix 'The ' --length 120 %s --threads 2",
             RNNC_BINARY, model, tmp_path("ck.st"), modes[k]);
    want = must(cmd);
    snprintf(cmd, sizeof cmd, "'%s' '%s' --prefix 'The ' --length 120 %s --threads 2", tmp_path("generate"),
             tmp_path("ck.st"), modes[k]);
    got = must(cmd);
    cr_assert_gt(strlen(want), 120, "rnnc sample printed: %s", want);
    int seen[256] = {0}, distinct = 0;
    for (const unsigned char *c = (const unsigned char *)want + 4; *c; c++)
      distinct += !seen[*c]++;
    cr_assert_geq(distinct, 8, "a trained model writes more than a character repeated: %s", want);
    cr_assert_str_eq(got, want, "%s: generate printed\n%s\nrnnc sample\n%s", modes[k], got, want);
    free(want);
    free(got);
  }

  /* train == rnnc train, from rnnc init's parameters with the same seed */
  snprintf(cmd, sizeof cmd, "'%s' init '%s' --out '%s' --seed 5 --dim V=256 " DIMS, RNNC_BINARY, model,
           tmp_path("init.st"));
  free(must(cmd));
  snprintf(cmd, sizeof cmd,
           "'%s' '%s' --init '%s' --steps 300 --seed 5 --lr 0.02 --metrics '%s' --save '%s' --threads 2",
           tmp_path("train"), data, tmp_path("init.st"), tmp_path("ex.jsonl"), tmp_path("ex.st"));
  out = must(cmd);
  cr_assert(strstr(out, "\nstep 300  epoch 7  loss "), "train printed:\n%s", out);
  free(out);
  json_t *a = metrics(tmp_path("rnnc.jsonl")), *b = metrics(tmp_path("ex.jsonl"));
  cr_assert_eq(json_array_size(a), 301, "300 steps and a validation");
  cr_assert_eq(json_array_size(b), json_array_size(a));
  for (size_t i = 0; i < 300; i++) {
    const char *keys[] = {"step", "epoch", "loss", "lr", "grad_norm"};
    for (int k = 0; k < 5; k++)
      same_field(a, b, i, keys[k]);
  }
  const char *vkeys[] = {"step", "valid_loss", "valid_ppl", "valid_bpc"};
  for (int k = 0; k < 4; k++)
    same_field(a, b, 300, vkeys[k]);
  double first = json_number_value(json_object_get(json_array_get(a, 0), "loss"));
  double last = json_number_value(json_object_get(json_array_get(a, 299), "loss"));
  cr_assert_lt(last, first - 2.0, "the loss falls: %g to %g", first, last);
  json_decref(a);
  json_decref(b);

  /* the parameters: bit for bit */
  TensorSet x, y;
  tset_init(&x);
  tset_init(&y);
  char err[512];
  cr_assert_eq(safetensors_read(tmp_path("ck.st"), &x, err, sizeof err), RNNC_OK, "%s", err);
  cr_assert_eq(safetensors_read(tmp_path("ex.st"), &y, err, sizeof err), RNNC_OK, "%s", err);
  cr_assert_eq(y.n, 11, "charlm's 11 parameters, got %d tensors", y.n);
  for (int i = 0; i < y.n; i++) {
    const Tensor *v = &y.t[i], *u = tset_find(&x, v->name);
    cr_assert(u && u->dtype == DT_F32 && tensor_numel(u) == tensor_numel(v), "%s", v->name);
    cr_assert_eq(memcmp(u->data, v->data, (size_t)tensor_numel(v) * sizeof(float)), 0,
                 "%s differs from rnnc train's", v->name);
  }
  cr_assert_str_eq(tset_getmeta(&y, "rnnc.vocab"), "{\"kind\":\"byte\"}");
  tset_clear(&x);
  tset_clear(&y);

  /* rnnc sample reads train's checkpoint: the same text as from rnnc's */
  char *want, *got;
  snprintf(cmd, sizeof cmd, "'%s' sample '%s' --params '%s' " DIMS " --greedy --length 60", RNNC_BINARY, model,
           tmp_path("ck.st"));
  want = must(cmd);
  snprintf(cmd, sizeof cmd, "'%s' sample '%s' --params '%s' " DIMS " --greedy --length 60", RNNC_BINARY, model,
           tmp_path("ex.st"));
  got = must(cmd);
  cr_assert_str_eq(got, want);
  free(want);
  free(got);

  /* the helper's errors: one line, the file, the tensor, what is wrong */
  snprintf(cmd, sizeof cmd, "'%s' init '%s' --out '%s' --dim V=256 --dim E=16 --dim H=24", RNNC_BINARY, model,
           tmp_path("h24.st"));
  free(must(cmd));
  snprintf(cmd, sizeof cmd, "'%s' '%s' --init '%s'", tmp_path("train"), data, tmp_path("h24.st"));
  cr_assert_eq(run_cmd(cmd, &out), 1);
  char line[1024];
  snprintf(line, sizeof line, "train: %s: tensor 'h1.W_ih' is F32 [96, 16]; the model wants F32 [128, 16]\n",
           tmp_path("h24.st"));
  cr_assert_str_eq(out, line);
  free(out);
  snprintf(cmd, sizeof cmd, "'%s' '%s'", tmp_path("generate"), tmp_path("init.st"));
  cr_assert_eq(run_cmd(cmd, &out), 1);
  snprintf(line, sizeof line, "generate: %s holds no vocabulary (rnnc.vocab): use a checkpoint of rnnc train\n",
           tmp_path("init.st"));
  cr_assert_str_eq(out, line);
  free(out);
  snprintf(cmd, sizeof cmd, "'%s' '%s' --init '%s'", tmp_path("train"), data, tmp_path("none.st"));
  cr_assert_eq(run_cmd(cmd, &out), 1);
  snprintf(line, sizeof line, "train: %s: cannot open: No such file or directory\n", tmp_path("none.st"));
  cr_assert_str_eq(out, line);
  free(out);
}
