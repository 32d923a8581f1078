/* test_train.c — `rnnc train`, `rnnc eval` and `rnnc sample` end to end on
 * real text (Debian's fortunes, when installed; a built-in text otherwise):
 * resume is bitwise exact, log lines and the metrics file, a non-finite loss
 * stops training and keeps the last good checkpoint, data errors are one-line
 * messages, eval's loss agrees with the log-probability of the same text,
 * sampling is seeded and greedy equals a beam of width 1, and the
 * Fashion-MNIST classifier learns. Runs the built binary (RNNC_BINARY). */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

static void setup(void) { tmpdir_make("test-train"); }

TestSuite(train, .init = setup, .fini = tmpdir_remove);


/* About n bytes of English text into dir/name: the start of the fortunes
 * file when installed, else a fixed paragraph repeated. */
static const char *corpus(const char *name, size_t n)
{
  static const char para[] = "The quick brown fox jumps over the lazy dog. A journey of a thousand miles "
                             "begins with a single step. All that glitters is not gold.\n";
  char *t = read_file("/usr/share/games/fortunes/fortunes");
  char *buf = malloc(n + 1);
  cr_assert(buf);
  for (size_t i = 0; i < n; i++)
    buf[i] = t && strlen(t) >= n ? t[i] : para[i % (sizeof para - 1)];
  /* cut at a whole line so the text stays valid UTF-8 */
  size_t len = n;
  while (len > 0 && buf[len - 1] != '\n')
    len--;
  write_bytes(tmp_path(name), buf, len ? len : n);
  free(buf);
  free(t);
  return tmp_path(name);
}

static const char *charlm(void) { return srcpath("examples/charlm.rnn"); }

/* Small sizes so each run compiles and trains in about a second. */
#define SMALL "--dim E=8 --dim H=16 --seq 16 --batch 4 --quiet"

/* Every tensor of two safetensors files equal byte for byte. */
static void assert_same_tensors(const char *a, const char *b)
{
  TensorSet x, y;
  tset_init(&x);
  tset_init(&y);
  char err[512];
  cr_assert_eq(safetensors_read(a, &x, err, sizeof err), RNNC_OK, "%s", err);
  cr_assert_eq(safetensors_read(b, &y, err, sizeof err), RNNC_OK, "%s", err);
  cr_assert_eq(x.n, y.n);
  cr_assert_gt(x.n, 10, "parameters, optimizer state and states");
  for (int i = 0; i < x.n; i++) {
    const Tensor *u = &x.t[i], *v = tset_find(&y, u->name);
    cr_assert(v, "%s missing in %s", u->name, b);
    size_t bytes = (size_t)tensor_numel(u) * dtype_size(u->dtype);
    cr_assert_eq(memcmp(u->data, v->data, bytes), 0, "tensor %s differs", u->name);
  }
  cr_assert_str_eq(tset_getmeta(&x, "rnnc.step"), tset_getmeta(&y, "rnnc.step"));
  cr_assert_str_eq(tset_getmeta(&x, "rnnc.data"), tset_getmeta(&y, "rnnc.data"));
  tset_clear(&x);
  tset_clear(&y);
}

Test(train, resume_is_bitwise_exact_across_an_epoch)
{
  const char *data = corpus("d.txt", 2600); /* ~30 batches per epoch: 60 steps cross one */
  char *out;
  const char *o = SMALL " --optim sgd --momentum 0.9 --schedule step --step-size 10 --gamma 0.5 --eval-every 7";
  cr_assert_eq(rnnc_cmd(&out, "train '%s' --data '%s' %s --steps 60 --checkpoint '%s'", charlm(), data, o, tmp_path("a.st")), 0,
               "%s", out);
  free(out);
  cr_assert_eq(rnnc_cmd(&out, "train '%s' --data '%s' %s --steps 33 --checkpoint '%s'", charlm(), data, o, tmp_path("b.st")), 0,
               "%s", out);
  free(out);
  cr_assert_eq(rnnc_cmd(&out, "train '%s' --data '%s' %s --steps 60 --checkpoint '%s' --resume '%s'", charlm(), data, o,
                    tmp_path("b.st"), tmp_path("b.st")),
               0, "%s", out);
  cr_assert(strstr(out, "trained 60 steps"), "%s", out);
  free(out);
  assert_same_tensors(tmp_path("a.st"), tmp_path("b.st"));
}

Test(train, adam_resume_is_bitwise_exact)
{
  const char *data = corpus("d.txt", 6000);
  char *out;
  const char *o = SMALL " --optim adamw --lr 0.003 --clip-value 0.5 --eval-every 0";
  cr_assert_eq(rnnc_cmd(&out, "train '%s' --data '%s' %s --steps 24 --checkpoint '%s'", charlm(), data, o, tmp_path("a.st")), 0,
               "%s", out);
  free(out);
  cr_assert_eq(rnnc_cmd(&out, "train '%s' --data '%s' %s --steps 12 --checkpoint '%s'", charlm(), data, o, tmp_path("b.st")), 0,
               "%s", out);
  free(out);
  cr_assert_eq(rnnc_cmd(&out, "train '%s' --data '%s' %s --steps 24 --checkpoint '%s' --resume '%s'", charlm(), data, o,
                    tmp_path("b.st"), tmp_path("b.st")),
               0, "%s", out);
  free(out);
  assert_same_tensors(tmp_path("a.st"), tmp_path("b.st"));
}

Test(train, log_lines_validation_and_metrics_file)
{
  const char *data = corpus("d.txt", 6000);
  char *out;
  cr_assert_eq(rnnc_cmd(&out, "train '%s' --data '%s' --dim E=8 --dim H=16 --seq 16 --batch 4 --steps 10 --log-every 5 "
                          "--eval-every 10 --metrics '%s' --checkpoint '%s'",
                    charlm(), data, tmp_path("m.jsonl"), tmp_path("c.st")),
               0, "%s", out);
  cr_assert(strstr(out, "\nstep 5  epoch 1  loss "), "%s", out);
  cr_assert(strstr(out, "\nstep 10  validation: loss "), "%s", out);
  cr_assert(strstr(out, "bits per character"), "%s", out);
  cr_assert(strstr(out, "trained 10 steps in "), "%s", out);
  free(out);
  char *m = read_file(tmp_path("m.jsonl"));
  cr_assert(m);
  int lines = 0, valid = 0;
  for (char *line = strtok(m, "\n"); line; line = strtok(NULL, "\n"), lines++) {
    json_error_t e;
    json_t *j = json_loads(line, 0, &e);
    cr_assert(j, "metrics line %d is not JSON: %s", lines + 1, line);
    cr_assert(json_is_integer(json_object_get(j, "step")));
    if (json_object_get(j, "valid_loss")) {
      valid++;
      double l = json_real_value(json_object_get(j, "valid_loss"));
      double bpc = json_real_value(json_object_get(j, "valid_bpc"));
      cr_assert(l > 0 && l < 10, "%g", l);
      cr_assert_float_eq(bpc, l / log(2.0), 1e-6);
    } else {
      cr_assert(json_is_real(json_object_get(j, "loss")), "%s", line);
      cr_assert(json_is_real(json_object_get(j, "grad_norm")), "%s", line);
    }
    json_decref(j);
  }
  cr_assert_eq(lines, 3, "steps 5 and 10, validation at 10");
  cr_assert_eq(valid, 1);
  free(m);
}

/* A cell whose output is exp(A h'): fine at the start, but a large learning
 * rate makes A grow until exp overflows, so the loss stops being finite a
 * few steps in. */
static const char explm[] = "cell expc(x: [I]) state(h: [H]) {\n"
                            "  param W: [H, I], U: [H, H], A: [H, H]\n"
                            "  h' = tanh(W @ x + U @ h)\n"
                            "  y = exp(A @ h')\n"
                            "  out y\n"
                            "}\n"
                            "model explm(V, E = 8, H = 16) {\n"
                            "  input tokens: i32[T, B], targets: i32[T, B]\n"
                            "  x    = embedding(tokens, V, E)\n"
                            "  h    = expc(x, H = H)\n"
                            "  loss = softmax(h, V, target = targets)\n"
                            "  output loss\n"
                            "}\n";

Test(train, non_finite_loss_stops_and_keeps_the_last_good_checkpoint)
{
  const char *data = corpus("d.txt", 6000);
  write_bytes(tmp_path("explm.rnn"), explm, sizeof explm - 1);
  char *out;
  int rc = rnnc_cmd(&out, "train '%s' --data '%s' " SMALL " --optim sgd --lr 1e6 --clip-norm 0 --steps 50 "
                      "--save-every 1 --checkpoint '%s'",
                tmp_path("explm.rnn"), data, tmp_path("c.st"));
  cr_assert_eq(rc, 1, "%s", out);
  long step = -1, saved = -1;
  const char *s = strstr(out, "rnnc: step ");
  cr_assert(s, "%s", out);
  cr_assert_eq(sscanf(s, "rnnc: step %ld:", &step), 1, "%s", out);
  cr_assert(strstr(out, " is not finite"), "%s", out);
  const char *k = strstr(out, "; stopped. The last good checkpoint is '");
  cr_assert(k, "%s", out);
  cr_assert(strstr(k, tmp_path("c.st")), "%s", out);
  cr_assert_eq(sscanf(strstr(k, "(step "), "(step %ld)", &saved), 1, "%s", out);
  cr_assert_eq(saved, step - 1, "%s", out);
  free(out);
  TensorSet ck;
  tset_init(&ck);
  char err[512];
  cr_assert_eq(safetensors_read(tmp_path("c.st"), &ck, err, sizeof err), RNNC_OK, "%s", err);
  cr_assert_eq(atol(tset_getmeta(&ck, "rnnc.step")), saved);
  for (int i = 0; i < ck.n; i++)
    if (ck.t[i].dtype == DT_F32)
      for (int64_t e = 0; e < tensor_numel(&ck.t[i]); e++)
        cr_assert(isfinite(((float *)ck.t[i].data)[e]), "%s[%ld] is not finite", ck.t[i].name, (long)e);
  tset_clear(&ck);
}

/* `rnnc <args>` exits 1 with exactly want (printf-style, then a newline). */
static void expect_error(const char *args, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void expect_error(const char *args, const char *fmt, ...)
{
  char want[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(want, sizeof want - 1, fmt, ap);
  va_end(ap);
  strcat(want, "\n");
  char *out;
  int rc = rnnc_cmd(&out, "%s", args);
  cr_assert_eq(rc, 1, "rnnc %s: exit %d\n%s", args, rc, out);
  cr_assert_str_eq(out, want, "rnnc %s", args);
  free(out);
}

Test(train, data_errors_are_one_line_messages)
{
  char args[4096];
  write_bytes(tmp_path("empty.txt"), "", 0);
  snprintf(args, sizeof args, "train '%s' --data '%s' " SMALL, charlm(), tmp_path("empty.txt"));
  expect_error(args, "rnnc: '%s' is empty", tmp_path("empty.txt"));

  snprintf(args, sizeof args, "train '%s' --data '%s' " SMALL, charlm(), tmp_path("missing.txt"));
  expect_error(args, "rnnc: cannot open '%s': No such file or directory", tmp_path("missing.txt"));

  write_bytes(tmp_path("short.txt"), "a short text, shorter than B*T + 1\n", 35);
  snprintf(args, sizeof args, "train '%s' --data '%s' " SMALL, charlm(), tmp_path("short.txt"));
  expect_error(args, "rnnc: training data: 33 tokens, fewer than B*T+1 = 65");

  write_bytes(tmp_path("bad.txt"), "abc\xff\xfe" "def\n", 8);
  snprintf(args, sizeof args, "train '%s' --data '%s' " SMALL, charlm(), tmp_path("bad.txt"));
  expect_error(args, "rnnc: %s: invalid UTF-8 at byte 3 (invalid byte 0xff)", tmp_path("bad.txt"));

  /* a checkpoint's vocabulary does not cover the data it is evaluated on */
  const char *data = corpus("d.txt", 3000);
  char *out;
  cr_assert_eq(rnnc_cmd(&out, "train '%s' --data '%s' " SMALL " --steps 2 --checkpoint '%s'", charlm(), data, tmp_path("c.st")),
               0, "%s", out);
  free(out);
  write_bytes(tmp_path("uni.txt"), "h\xc3\xa9llo\n", 7);
  snprintf(args, sizeof args, "eval '%s' --params '%s' --data '%s' --dim E=8 --dim H=16", charlm(), tmp_path("c.st"),
           tmp_path("uni.txt"));
  expect_error(args, "rnnc: %s: character U+00E9 at byte 1 is not in the vocabulary", tmp_path("uni.txt"));
}

/* The mean loss eval reports over one batch covering a whole text equals
 * minus its log-probability (from the single-step generator) per token: the
 * fused softmax + cross-entropy kernels and the step-by-step probabilities
 * agree. */
Test(train, eval_loss_agrees_with_sentence_log_probability)
{
  const char *data = corpus("d.txt", 4000);
  char *out;
  cr_assert_eq(rnnc_cmd(&out, "train '%s' --data '%s' " SMALL " --steps 20 --checkpoint '%s'", charlm(), data, tmp_path("c.st")),
               0, "%s", out);
  free(out);
  const char *sent = "The fox is not gold.";
  int n = (int)strlen(sent);
  write_bytes(tmp_path("s.txt"), sent, (size_t)n);
  cr_assert_eq(rnnc_cmd(&out, "eval '%s' --params '%s' --data '%s' --dim E=8 --dim H=16 --batch 1 --seq %d --sentence '%s'",
                    charlm(), tmp_path("c.st"), tmp_path("s.txt"), n - 1, sent),
               0, "%s", out);
  double loss, lp;
  long targets;
  const char *a = strstr(out, ": "), *b = strstr(out, "log p = ");
  cr_assert(a && b, "%s", out);
  cr_assert_eq(sscanf(a, ": %ld targets, loss %lf", &targets, &loss), 2, "%s", out);
  cr_assert_eq(sscanf(b, "log p = %lf", &lp), 1, "%s", out);
  cr_assert_eq(targets, n - 1);
  cr_assert(fabs(loss * (n - 1) + lp) <= 1e-4 * fabs(lp), "eval %.6f x %d vs log p %.6f\n%s", loss, n - 1, lp, out);
  free(out);
}

/* Sampling: a seed reproduces a sample, another seed changes it; greedy is a
 * beam of width 1. */
Test(train, sampling_is_seeded_and_greedy_is_beam_one)
{
  const char *data = corpus("d.txt", 4000);
  char *out, *out2;
  cr_assert_eq(rnnc_cmd(&out, "train '%s' --data '%s' " SMALL " --steps 30 --checkpoint '%s'", charlm(), data, tmp_path("c.st")),
               0, "%s", out);
  free(out);
  const char *g = "--dim E=8 --dim H=16 --length 40 --prefix 'The '";
  cr_assert_eq(rnnc_cmd(&out, "sample '%s' --params '%s' %s --temperature 0.9 --seed 7", charlm(), tmp_path("c.st"), g), 0);
  cr_assert_eq(rnnc_cmd(&out2, "sample '%s' --params '%s' %s --temperature 0.9 --seed 7", charlm(), tmp_path("c.st"), g), 0);
  cr_assert_str_eq(out, out2);
  cr_assert(strncmp(out, "The ", 4) == 0, "%s", out);
  free(out2);
  cr_assert_eq(rnnc_cmd(&out2, "sample '%s' --params '%s' %s --temperature 0.9 --seed 8", charlm(), tmp_path("c.st"), g), 0);
  cr_assert_str_neq(out, out2);
  free(out);
  free(out2);
  cr_assert_eq(rnnc_cmd(&out, "sample '%s' --params '%s' %s --greedy", charlm(), tmp_path("c.st"), g), 0, "%s", out);
  cr_assert_eq(rnnc_cmd(&out2, "sample '%s' --params '%s' %s --beam 1", charlm(), tmp_path("c.st"), g), 0, "%s", out2);
  cr_assert(strstr(out2, "--- beam 1: log p = "), "%s", out2);
  *strstr(out2, "--- beam") = 0;
  cr_assert_str_eq(out, out2);
  free(out);
  free(out2);
}

/* Fashion-MNIST row by row: a few dozen Adam steps already classify far
 * better than chance (10%). */
Test(train, fashion_mnist_classifier_learns, .timeout = 600)
{
  const char *fm = "/usr/share/datasets/fashion-mnist";
  char img[256];
  snprintf(img, sizeof img, "%s/train-images-idx3-ubyte.gz", fm);
  if (access(img, R_OK) != 0)
    cr_skip_test("dataset-fashion-mnist is not installed");
  char *out;
  int rc = rnnc_cmd(&out, "train '%s' --data %s/train-images-idx3-ubyte.gz --labels %s/train-labels-idx1-ubyte.gz "
                      "--valid %s/t10k-images-idx3-ubyte.gz --valid-labels %s/t10k-labels-idx1-ubyte.gz "
                      "--dim H=32 --batch 32 --steps 60 --lr 0.005 --valid-batches 16 --quiet",
                srcpath("examples/fashion_lstm.rnn"), fm, fm, fm, fm);
  cr_assert_eq(rc, 0, "%s", out);
  double loss, acc;
  const char *v = strstr(out, "validation (512 targets): loss ");
  cr_assert(v, "%s", out);
  cr_assert_eq(sscanf(v, "validation (512 targets): loss %lf, accuracy %lf%%", &loss, &acc), 2, "%s", out);
  cr_assert_gt(acc, 45.0, "%s", out);
  cr_assert_lt(loss, 1.8, "%s", out);
  free(out);
}

/* Word level with pretrained vectors in the embedding, frozen: the rows of
 * the words the file has are its vectors, before and after training. */
Test(train, word_vectors_frozen_in_the_embedding)
{
  const char *data = corpus("d.txt", 6000);
  const char glove[] = "the 1 2 3 4 5 6 7 8\n"
                       "of 0.5 0.5 0.5 0.5 0.5 0.5 0.5 0.5\n"
                       "zzzz 9 9 9 9 9 9 9 9\n";
  write_bytes(tmp_path("g.txt"), glove, sizeof glove - 1);
  char *out;
  cr_assert_eq(rnnc_cmd(&out, "train '%s' --data '%s' --level word --dim E=8 --dim H=16 --seq 8 --batch 2 --steps 5 "
                          "--vectors '%s' --freeze x.weight --checkpoint '%s'",
                    charlm(), data, tmp_path("g.txt"), tmp_path("c.st")),
               0, "%s", out);
  long found, words, missing;
  const char *v = strstr(out, "vectors: ");
  cr_assert(v, "%s", out);
  cr_assert_eq(sscanf(v, "vectors: %ld of %ld words found in", &found, &words), 2, "%s", out);
  cr_assert_eq(found, 2, "'the' and 'of' are in the text, 'zzzz' is not");
  cr_assert(strstr(v, "keep their random initialization"), "%s", out);
  cr_assert_eq(sscanf(strstr(v, "; "), "; %ld keep", &missing), 1);
  cr_assert_eq(missing, words - 2);
  free(out);

  TensorSet ck;
  tset_init(&ck);
  char err[512];
  cr_assert_eq(safetensors_read(tmp_path("c.st"), &ck, err, sizeof err), RNNC_OK, "%s", err);
  Vocab voc = {0};
  cr_assert_eq(vocab_from_json(&voc, tset_getmeta(&ck, "rnnc.vocab"), err, sizeof err), RNNC_OK, "%s", err);
  const Tensor *w = tset_find(&ck, "x.weight");
  cr_assert(w && w->dim[0] == voc.n && w->dim[1] == 8);
  int the = vocab_lookup(&voc, "the", 3), of = vocab_lookup(&voc, "of", 2);
  cr_assert(the >= 0 && of >= 0);
  const float *row = (const float *)w->data;
  for (int e = 0; e < 8; e++) {
    cr_assert_eq(row[the * 8 + e], (float)(e + 1), "x.weight['the'][%d]", e);
    cr_assert_eq(row[of * 8 + e], 0.5f, "x.weight['of'][%d]", e);
  }
  vocab_free(&voc);
  tset_clear(&ck);
}

/* On a terminal (script(1) gives it one): one status line redrawn in place,
 * with a bar, the step, the loss and the ETA, and no log lines. */
Test(train, progress_bar_on_a_terminal)
{
  const char *data = corpus("d.txt", 6000);
  char cmd[4096], *out;
  snprintf(cmd, sizeof cmd,
           "script -qec \"'%s' train '%s' --data '%s' --dim E=8 --dim H=16 --seq 16 --batch 4 --steps 20 "
           "--eval-every 0\" /dev/null",
           RNNC_BINARY, charlm(), data);
  cr_assert_eq(run_cmd(cmd, &out), 0, "%s", out);
  cr_assert(strstr(out, "\r\033[K[####################] step 20  epoch 1  loss "), "%s", out);
  cr_assert(strstr(out, "ETA 0:00"), "%s", out);
  cr_assert(!strstr(out, "\nstep 20  epoch"), "no log lines on a terminal: %s", out);
  cr_assert(strstr(out, "trained 20 steps in "), "%s", out);
  free(out);
}

/* ---- labelled lines: text classification and tagging ------------------------------ */

static const char *text_classifier(void) { return srcpath("examples/text_classifier.rnn"); }

/* Labelled lines made from the lines of the corpus text (at most nline):
 * "cN<TAB>LINE", N the line's length mod 3, so lines of many lengths share
 * every batch. */
static const char *labelled(const char *name, int nline)
{
  char *t = read_file(corpus("src.txt", 6000));
  cr_assert(t);
  FILE *f = fopen(tmp_path(name), "wb");
  cr_assert(f);
  int n = 0;
  for (char *line = strtok(t, "\n"); line && n < nline; line = strtok(NULL, "\n")) {
    size_t len = strlen(line);
    if (len == 0 || strchr(line, '\t'))
      continue;
    fprintf(f, "c%zu\t%s\n", len % 3, line);
    n++;
  }
  cr_assert_eq(fclose(f), 0);
  free(t);
  return tmp_path(name);
}

/* `rnnc eval ... --json`: the loss, accuracy (acc NULL: a language model,
 * none) and count. */
static void eval_json(const char *args, double *loss, double *acc, long *n)
{
  char *out;
  int rc = rnnc_cmd(&out, "eval %s --json", args);
  cr_assert_eq(rc, 0, "eval %s: %s", args, out);
  json_error_t je;
  json_t *j = json_loads(out, 0, &je);
  cr_assert(j, "not JSON: %s", out);
  int bad = acc ? json_unpack(j, "{s:F,s:F,s:I}", "loss", loss, "accuracy", acc, "n", n)
                : json_unpack(j, "{s:F,s:I}", "loss", loss, "n", n);
  cr_assert_eq(bad, 0, "%s", out);
  json_decref(j);
  free(out);
}

/* `rnnc eval` on text scores every target but the last (chars - 1) % B, the
 * states carried into a last chunk shorter than --seq: the loss and the
 * count do not depend on --seq, and --batch 1 scores every target, in many
 * chunks or in one shorter than --seq. */
Test(train, eval_scores_the_whole_stream)
{
  const char *data = corpus("d.txt", 3000);
  char *out;
  cr_assert_eq(rnnc_cmd(&out, "train '%s' --data '%s' " SMALL " --steps 10 --checkpoint '%s'", charlm(), data,
                        tmp_path("c.st")),
               0, "%s", out);
  free(out);
  char *text = read_file(data);
  long chars = 0;
  for (const char *c = text; *c; c++)
    chars += (*c & 0xc0) != 0x80; /* UTF-8: not a continuation byte */
  free(text);
  double ref = 0, loss;
  long n;
  char args[800];
  static const int runs[][2] = {{3, 64}, {3, 7}, {3, 1000}, {1, 5000}, {1, 333}};
  for (int i = 0; i < 5; i++) {
    snprintf(args, sizeof args, "'%s' --params '%s' --data '%s' --dim E=8 --dim H=16 --batch %d --seq %d", charlm(),
             tmp_path("c.st"), data, runs[i][0], runs[i][1]);
    eval_json(args, &loss, NULL, &n);
    cr_assert_eq(n, chars - 1 - (chars - 1) % runs[i][0], "--batch %d --seq %d: %ld targets of %ld", runs[i][0],
                 runs[i][1], n, chars - 1);
    if (i == 0 || i == 3)
      ref = loss;
    cr_assert(fabs(loss - ref) <= 1e-5 * ref, "--batch %d --seq %d: loss %.9f, not %.9f", runs[i][0], runs[i][1],
              loss, ref);
  }
  /* fewer than --seq steps in each part: one short chunk */
  write_bytes(tmp_path("short.txt"), "The fox.", 8);
  snprintf(args, sizeof args, "'%s' --params '%s' --data '%s' --dim E=8 --dim H=16 --batch 2", charlm(),
           tmp_path("c.st"), tmp_path("short.txt"));
  eval_json(args, &loss, NULL, &n);
  cr_assert_eq(n, 6);
  cr_assert(loss > 0 && isfinite(loss), "%g", loss);
  cr_assert_neq(rnnc_cmd(&out, "eval '%s' --params '%s' --data '%s' --dim E=8 --dim H=16 --batch 8", charlm(),
                         tmp_path("c.st"), tmp_path("short.txt")),
                0);
  cr_assert(strstr(out, "8 tokens, fewer than B+1 = 9"), "%s", out);
  free(out);
}

/* The key property of masked batches: a trained classifier's loss and
 * accuracy over a data set are the same whether lines share padded, masked
 * batches of 4 or 7 or each is alone in a batch of 1 (and the classes are
 * saved in the checkpoint). */
Test(train, text_classifier_masked_batches_equal_single_lines, .timeout = 300)
{
  const char *data = labelled("l.txt", 61); /* 61 = 15 * 4 + 1: a padding row too */
  char *out;
  cr_assert_eq(rnnc_cmd(&out, "train '%s' --data '%s' --dim E=8 --dim H=16 --batch 4 --steps 40 --lr 0.01 --quiet "
                          "--checkpoint '%s'",
                    text_classifier(), data, tmp_path("c.st")),
               0, "%s", out);
  free(out);
  TensorSet ck;
  tset_init(&ck);
  char err[512];
  cr_assert_eq(safetensors_read(tmp_path("c.st"), &ck, err, sizeof err), RNNC_OK, "%s", err);
  cr_assert_str_eq(tset_getmeta(&ck, "rnnc.classes"), "[\"c0\",\"c1\",\"c2\"]");
  const Tensor *w = tset_find(&ck, "loss.weight");
  cr_assert(w);
  cr_assert_eq(w->dim[0], 3, "K bound to the data's 3 classes");
  tset_clear(&ck);
  double loss[3], acc[3];
  long n[3];
  const int batch[3] = {1, 4, 7};
  for (int i = 0; i < 3; i++) {
    char args[2048];
    snprintf(args, sizeof args, "'%s' --params '%s' --data '%s' --dim E=8 --dim H=16 --batch %d", text_classifier(),
             tmp_path("c.st"), data, batch[i]);
    eval_json(args, &loss[i], &acc[i], &n[i]);
  }
  fprintf(stderr, "text_classifier eval: batch 1 loss %.9f acc %.4f; batch 4 %.9f (rel %.2e); batch 7 %.9f (rel %.2e)\n",
          loss[0], acc[0], loss[1], fabs(loss[1] - loss[0]) / loss[0], loss[2], fabs(loss[2] - loss[0]) / loss[0]);
  for (int i = 1; i < 3; i++) {
    cr_assert_eq(n[i], 61);
    cr_assert(fabs(loss[i] - loss[0]) <= 1e-5 * fabs(loss[0]), "batch %d: loss %.9f, alone %.9f", batch[i], loss[i],
              loss[0]);
    cr_assert_eq(acc[i], acc[0], "batch %d: accuracy %.6f, alone %.6f", batch[i], acc[i], acc[0]);
  }
  cr_assert_eq(n[0], 61);
  cr_assert(loss[0] > 0 && loss[0] < 5, "loss %f", loss[0]);

  /* and with no padding at all: three lines of different lengths, each in
   * a file of its own (T = its length, B = 1), against the three in one
   * padded batch of 4 */
  char *t = read_file(data);
  cr_assert(t);
  FILE *all = fopen(tmp_path("three.txt"), "wb");
  cr_assert(all);
  double sum = 0, three, a3;
  long n3;
  int k = 0;
  size_t lastlen = 0;
  for (char *line = strtok(t, "\n"); line && k < 3; line = strtok(NULL, "\n")) {
    if (strlen(line) == lastlen)
      continue;
    lastlen = strlen(line);
    fprintf(all, "%s\n", line);
    char one[32], args[2048];
    snprintf(one, sizeof one, "one%d.txt", k);
    FILE *f = fopen(tmp_path(one), "wb");
    cr_assert(f);
    fprintf(f, "%s\n", line);
    cr_assert_eq(fclose(f), 0);
    double l, a;
    long m;
    snprintf(args, sizeof args, "'%s' --params '%s' --data '%s' --dim E=8 --dim H=16 --batch 1", text_classifier(),
             tmp_path("c.st"), tmp_path(one));
    eval_json(args, &l, &a, &m);
    cr_assert_eq(m, 1);
    sum += l;
    k++;
  }
  cr_assert_eq(fclose(all), 0);
  free(t);
  cr_assert_eq(k, 3);
  char args[2048];
  snprintf(args, sizeof args, "'%s' --params '%s' --data '%s' --dim E=8 --dim H=16 --batch 4", text_classifier(),
           tmp_path("c.st"), tmp_path("three.txt"));
  eval_json(args, &three, &a3, &n3);
  cr_assert_eq(n3, 3);
  fprintf(stderr, "three lines alone, unpadded: mean loss %.9f; in one padded batch %.9f\n", sum / 3, three);
  cr_assert(fabs(three - sum / 3) <= 1e-5 * fabs(three), "alone %.9f, batched %.9f", sum / 3, three);
}

/* Fortunes labelled by their file (computers, politics, art: 300 each, so
 * chance is 1/3): the classifier learns to tell them apart. */
Test(train, text_classifier_learns_fortunes_by_file, .timeout = 300)
{
  const char *F = "/usr/share/games/fortunes";
  char cmd[2048];
  snprintf(cmd, sizeof cmd, "%s/computers", F);
  if (access(cmd, R_OK) != 0)
    cr_skip_test("fortunes are not installed");
  snprintf(cmd, sizeof cmd, "sh '%s' --count 300 %s/computers %s/politics %s/art > '%s'",
           srcpath("tools/fortune_lines.sh"), F, F, F, tmp_path("f.txt"));
  cr_assert_eq(system(cmd), 0);
  char *out;
  int rc = rnnc_cmd(&out, "train '%s' --data '%s' --level word --min-count 2 --epochs 6 --batch 16 --lr 0.003 "
                      "--dim E=32 --dim H=32 --valid-frac 0.2 --eval-every 1000 --quiet --checkpoint '%s'",
                text_classifier(), tmp_path("f.txt"), tmp_path("c.st"));
  cr_assert_eq(rc, 0, "%s", out);
  double loss, acc;
  const char *v = strstr(out, "validation (180 targets): loss ");
  cr_assert(v, "%s", out);
  cr_assert_eq(sscanf(v, "validation (180 targets): loss %lf, accuracy %lf%%", &loss, &acc), 2, "%s", out);
  fprintf(stderr, "fortunes by file: validation accuracy %.2f%% (chance 33.3%%), loss %.4f\n", acc, loss);
  cr_assert_gt(acc, 45.0, "%s", out); /* 33.3% +- 3.5% by chance over 180 lines */
  free(out);
  /* eval reads the same file with the checkpoint's vocabulary and classes */
  char args[2048];
  double l2, a2;
  long n;
  snprintf(args, sizeof args, "'%s' --params '%s' --data '%s' --dim E=32 --dim H=32", text_classifier(), tmp_path("c.st"),
           tmp_path("f.txt"));
  eval_json(args, &l2, &a2, &n);
  cr_assert_eq(n, 900);
  cr_assert_gt(a2, 0.45);
}

/* A tagger (a masked LSTM, one tag per word) on TOKEN<TAB>TAG sentences: the
 * fortunes' words tagged by their form. Per-token accuracy, the same alone
 * as in padded batches, and above the most frequent tag's share. */
Test(train, tagger_on_tagged_lines, .timeout = 300)
{
  static const char model[] = "model tagger(V = 20, E = 16, H = 16, K = 4) {\n"
                              "  input words: i32[T, B], tags: i32[T, B], m: f32[T, B]\n"
                              "  x    = embedding(words, V, E)\n"
                              "  h    = lstm(x, H = H, mask = m)\n"
                              "  loss = softmax(h, K, target = tags, ignore = -1)\n"
                              "  p    = probs(loss)\n"
                              "  output loss, p\n"
                              "}\n";
  write_bytes(tmp_path("tagger.rnn"), model, sizeof model - 1);
  char *t = read_file(corpus("src.txt", 8000));
  cr_assert(t);
  FILE *f = fopen(tmp_path("tags.txt"), "wb");
  cr_assert(f);
  long count[4] = {0}, total = 0;
  static const char *const tagname[] = {"CAP", "LOW", "NUM", "OTHER"};
  for (char *line = strtok(t, "\n"); line; line = strtok(NULL, "\n")) {
    int words = 0;
    for (char *w = line; *w;) {
      size_t n = strcspn(w, " \t");
      if (n) {
        int k = w[0] >= 'A' && w[0] <= 'Z' ? 0 : strspn(w, "abcdefghijklmnopqrstuvwxyz") == n ? 1
                : strcspn(w, "0123456789") < n                                        ? 2
                                                                                      : 3;
        fprintf(f, "%.*s\t%s\n", (int)n, w, tagname[k]);
        count[k]++, total++, words++;
      }
      w += n;
      w += strspn(w, " \t");
    }
    if (words)
      fputc('\n', f);
  }
  cr_assert_eq(fclose(f), 0);
  free(t);
  long most = 0;
  for (int k = 0; k < 4; k++)
    most = count[k] > most ? count[k] : most;
  char *out;
  int rc = rnnc_cmd(&out, "train '%s' --data '%s' --tagged --epochs 3 --batch 8 --lr 0.01 --quiet --checkpoint '%s'",
                tmp_path("tagger.rnn"), tmp_path("tags.txt"), tmp_path("c.st"));
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  double loss[2], acc[2];
  long n[2];
  for (int i = 0; i < 2; i++) {
    char args[2048];
    snprintf(args, sizeof args, "'%s' --params '%s' --data '%s' --batch %d", tmp_path("tagger.rnn"), tmp_path("c.st"),
             tmp_path("tags.txt"), i ? 5 : 1);
    eval_json(args, &loss[i], &acc[i], &n[i]);
  }
  fprintf(stderr, "tagger: %ld tokens, accuracy %.4f (most frequent tag %.4f), loss %.6f / %.6f in batches of 5\n",
          n[0], acc[0], (double)most / (double)total, loss[0], loss[1]);
  cr_assert_eq(n[0], total);
  cr_assert_eq(n[1], total);
  cr_assert(fabs(loss[1] - loss[0]) <= 1e-5 * loss[0], "%.9f vs %.9f", loss[1], loss[0]);
  cr_assert_eq(acc[1], acc[0]);
  cr_assert_gt(acc[0], (double)most / (double)total + 0.05);
}

Test(train, labelled_line_errors_are_one_line_messages)
{
  char args[4096];
  const char *tc = text_classifier();
  write_bytes(tmp_path("notab.txt"), "pos\tgood\nneg bad\n", 17);
  snprintf(args, sizeof args, "train '%s' --data '%s' --quiet", tc, tmp_path("notab.txt"));
  expect_error(args, "rnnc: %s: line 2: no tab between the label and the text", tmp_path("notab.txt"));

  write_bytes(tmp_path("empty.txt"), "pos\tgood\nneg\t\n", 14);
  snprintf(args, sizeof args, "train '%s' --data '%s' --quiet", tc, tmp_path("empty.txt"));
  expect_error(args, "rnnc: %s: line 2: empty text", tmp_path("empty.txt"));

  write_bytes(tmp_path("a.txt"), "pos\tgood\nneg\tbad\npos\tfine\nneg\tpoor\n", 34);
  write_bytes(tmp_path("v.txt"), "pos\tgood\nmeh\tso so\n", 19);
  snprintf(args, sizeof args, "train '%s' --data '%s' --valid '%s' --quiet", tc, tmp_path("a.txt"), tmp_path("v.txt"));
  expect_error(args, "rnnc: %s: line 2: class 'meh' is not in the training data's classes", tmp_path("v.txt"));

  snprintf(args, sizeof args, "train '%s' --data '%s' --tagged --quiet", tc, tmp_path("a.txt"));
  expect_error(args, "rnnc: --tagged: model 'text_classifier' has no token ids with targets [T, B] to tag");

  snprintf(args, sizeof args, "train '%s' --data '%s' --dim K=5 --valid-frac 0.5 --quiet", tc, tmp_path("a.txt"));
  expect_error(args, "rnnc: --dim K=5: the data has 2 classes, not 5");

  static const char fixedk[] = "model fixedk(V = 9, K = 3) {\n"
                               "  input tokens: i32[T, B], labels: i32[B], m: f32[T, B]\n"
                               "  x    = embedding(tokens, V, 4)\n"
                               "  h    = rnn(x, H = 4, mask = m)\n"
                               "  loss = softmax(final(h, h), K, target = labels, ignore = -1)\n"
                               "  output loss\n"
                               "}\n";
  write_bytes(tmp_path("fixedk.rnn"), fixedk, sizeof fixedk - 1);
  snprintf(args, sizeof args, "train '%s' --data '%s' --valid-frac 0.5 --quiet", tmp_path("fixedk.rnn"), tmp_path("a.txt"));
  char *out;
  cr_assert_eq(rnnc_cmd(&out, "%s --steps 1", args), 0, "K = 3 written as a default is bound to the data's 2: %s", out);
  free(out);
  static const char litk[] = "model litk(V = 9) {\n"
                             "  input tokens: i32[T, B], labels: i32[B], m: f32[T, B]\n"
                             "  x    = embedding(tokens, V, 4)\n"
                               "  h    = rnn(x, H = 4, mask = m)\n"
                             "  loss = softmax(final(h, h), 3, target = labels, ignore = -1)\n"
                             "  output loss\n"
                             "}\n";
  write_bytes(tmp_path("litk.rnn"), litk, sizeof litk - 1);
  snprintf(args, sizeof args, "train '%s' --data '%s' --valid-frac 0.5 --quiet", tmp_path("litk.rnn"), tmp_path("a.txt"));
  expect_error(args, "rnnc: model 'litk' has 3 classes written in it, the data 2: write softmax(h, K, ...) with a "
                     "dimension K to take it from the data");

  /* eval: a class the checkpoint does not know, and a checkpoint without classes */
  cr_assert_eq(rnnc_cmd(&out, "train '%s' --data '%s' --steps 1 --valid-frac 0.5 --quiet --checkpoint '%s'", tc, tmp_path("a.txt"), tmp_path("c.st")),
               0, "%s", out);
  free(out);
  write_bytes(tmp_path("e.txt"), "neg\tbad\nx\tgood\n", 15);
  snprintf(args, sizeof args, "eval '%s' --params '%s' --data '%s'", tc, tmp_path("c.st"), tmp_path("e.txt"));
  expect_error(args, "rnnc: %s: line 2: class 'x' is not in the checkpoint's classes", tmp_path("e.txt"));
  const char *lm = corpus("d.txt", 3000);
  cr_assert_eq(rnnc_cmd(&out, "train '%s' --data '%s' " SMALL " --steps 1 --checkpoint '%s'", charlm(), lm, tmp_path("lm.st")),
               0, "%s", out);
  free(out);
  snprintf(args, sizeof args, "eval '%s' --params '%s' --data '%s'", tc, tmp_path("lm.st"), tmp_path("a.txt"));
  expect_error(args, "rnnc: '%s' holds no classes (rnnc.classes): evaluate a checkpoint that rnnc train wrote on "
                     "labelled lines",
               tmp_path("lm.st"));
}

/* Resume on labelled lines: the vocabulary and classes come back from the
 * checkpoint, and 12 steps then 12 more are bitwise 24 in one run (across
 * an epoch of 8 batches). */
Test(train, text_classifier_resume_is_bitwise_exact, .timeout = 300)
{
  const char *data = labelled("l.txt", 35);
  const char *o = "--dim E=8 --dim H=16 --batch 4 --valid-frac 0.1 --eval-every 5 --quiet";
  char *out;
  cr_assert_eq(rnnc_cmd(&out, "train '%s' --data '%s' %s --steps 24 --checkpoint '%s'", text_classifier(), data, o,
                    tmp_path("one.st")),
               0, "%s", out);
  free(out);
  cr_assert_eq(rnnc_cmd(&out, "train '%s' --data '%s' %s --steps 12 --checkpoint '%s'", text_classifier(), data, o,
                    tmp_path("two.st")),
               0, "%s", out);
  free(out);
  cr_assert_eq(rnnc_cmd(&out, "train '%s' --data '%s' %s --steps 24 --resume '%s' --checkpoint '%s'", text_classifier(),
                    data, o, tmp_path("two.st"), tmp_path("two.st")),
               0, "%s", out);
  free(out);
  assert_same_tensors(tmp_path("one.st"), tmp_path("two.st"));
  TensorSet ck;
  tset_init(&ck);
  char err[512];
  cr_assert_eq(safetensors_read(tmp_path("two.st"), &ck, err, sizeof err), RNNC_OK, "%s", err);
  cr_assert_str_eq(tset_getmeta(&ck, "rnnc.classes"), "[\"c0\",\"c1\",\"c2\"]");
  cr_assert_str_eq(tset_getmeta(&ck, "rnnc.data"), "2 8"); /* 31 training lines: 8 batches per epoch, 3 epochs */
  tset_clear(&ck);
}
