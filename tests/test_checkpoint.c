/* test_checkpoint.c — what checkpoints rest on: the model hash, the RNG
 * state as text, and atomic saves (a writer killed at random moments always
 * leaves a loadable, consistent file; leftovers of killed writers and
 * concurrent writers do not break a save; corrupt files are refused with a
 * message naming them). */
#include <criterion/criterion.h>
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

static void setup(void) { tmpdir_make("ckpt"); }

TestSuite(checkpoint, .init = setup, .fini = tmpdir_remove);


/* ---- model_hash ---- */

static Module *parse_text(const char *text)
{
  Module *m = module_new();
  const Source *src = source_new(m, "<test>", text);
  if (parse(m, src) != RNNC_OK || verify(m) != RNNC_OK) {
    diags_print(stderr, &m->diags);
    cr_assert_fail("the test model does not parse");
  }
  return m;
}

/* model_hash of the model called name in text. */
static uint64_t hash_of(const char *text, const char *name)
{
  Module *m = parse_text(text);
  Model *md = model_find(m, name);
  cr_assert_not_null(md, "no model %s", name);
  uint64_t h = model_hash(m, md);
  module_free(m);
  return h;
}

static const char *mgu_lm =
    "cell mgu(x: [I]) state(h: [H]) {\n"
    "  param W_f: [H, I], U_f: [H, H], b_f: [H]\n"
    "  param W_h: [H, I], U_h: [H, H], b_h: [H]\n"
    "  f  = sigmoid(W_f @ x + U_f @ h + b_f)\n"
    "  n  = tanh(W_h @ x + U_h @ (f * h) + b_h)\n"
    "  h' = (1 - f) * h + f * n\n"
    "  out h'\n"
    "}\n"
    "model lm(V, E = 16, H = 32) {\n"
    "  input tokens: i32[T, B], targets: i32[T, B]\n"
    "  x    = embedding(tokens, V, E)\n"
    "  h    = mgu(x, H = H)\n"
    "  loss = softmax(h, V, target = targets)\n"
    "  output loss\n"
    "}\n";

/* The same, spaced and commented differently, with an unrelated model. */
static const char *mgu_lm_respaced =
    "# a minimal gated unit\n"
    "cell   mgu( x : [I] )   state( h:[H] ) {\n"
    "  param W_f: [H, I],U_f: [H, H],  b_f: [H]   # forget gate\n"
    "\n"
    "  param W_h: [H,I], U_h: [H,H], b_h: [H]\n"
    "  f  =   sigmoid(W_f@x + U_f@h + b_f)\n"
    "  n  = tanh(W_h @ x + U_h @ (f*h) + b_h)   # candidate\n"
    "  h' = (1 - f)*h + f*n\n"
    "  out   h'\n"
    "}\n"
    "\n"
    "model other(V) {\n"
    "  input tokens: i32[T, B], targets: i32[T, B]\n"
    "  x = embedding(tokens, V, 8)\n"
    "  h = lstm(x, H = 8)\n"
    "  loss = softmax(h, V, target = targets)\n"
    "  output loss\n"
    "}\n"
    "model lm( V,E=16,  H=32 ) {\n"
    "  input tokens: i32[T, B],    targets: i32[T, B]   # two inputs\n"
    "  x    =embedding(tokens,V,E)\n"
    "  h    = mgu(x,H=H)\n"
    "  loss = softmax(h,V,target=targets)\n"
    "  output  loss\n"
    "}\n";

/* text with the first occurrence of from replaced by to (malloc'ed). */
static char *replaced(const char *text, const char *from, const char *to)
{
  const char *at = strstr(text, from);
  cr_assert_not_null(at, "'%s' not in the text", from);
  size_t n = strlen(text) - strlen(from) + strlen(to) + 1;
  char *s = malloc(n);
  snprintf(s, n, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
  return s;
}

Test(checkpoint, model_hash_ignores_spacing_comments_and_other_models)
{
  uint64_t a = hash_of(mgu_lm, "lm"), b = hash_of(mgu_lm_respaced, "lm");
  cr_assert_eq(a, b, "%016llx vs %016llx", (unsigned long long)a, (unsigned long long)b);
  cr_assert_eq(hash_of(mgu_lm, "lm"), a, "deterministic");
  cr_assert_neq(hash_of(mgu_lm_respaced, "other"), a);
}

Test(checkpoint, model_hash_changes_with_the_model)
{
  uint64_t a = hash_of(mgu_lm, "lm");
  const char *edits[][2] = {
      {"E = 16", "E = 17"},                  /* a dim default */
      {"H = 32)", "H = 33)"},                /* another */
      {"f  = sigmoid", "f  = tanh"},         /* the cell's equations */
      {"(1 - f) * h", "(1 - f) * n"},        /* ... */
      {"h    = mgu(x, H = H)", "h    = mgu(x, H = H, backward)"}, /* a node */
      {"target = targets", "target = tokens"},                      /* an edge */
      {"model lm(", "model lm2("},            /* the model's name */
  };
  for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
    char *t = replaced(mgu_lm, edits[i][0], edits[i][1]);
    const char *name = strstr(t, "model lm2(") ? "lm2" : "lm";
    cr_assert_neq(hash_of(t, name), a, "edit '%s' -> '%s' kept the hash", edits[i][0], edits[i][1]);
    free(t);
  }
  /* a built-in cell instead of the user's: the cell's text is hashed */
  char *t = replaced(mgu_lm, "h    = mgu(x, H = H)", "h    = gru(x, H = H)");
  uint64_t g = hash_of(t, "lm");
  free(t);
  t = replaced(mgu_lm, "h    = mgu(x, H = H)", "h    = lstm(x, H = H)");
  cr_assert_neq(g, a);
  cr_assert_neq(hash_of(t, "lm"), g);
  free(t);
}

/* The hash does not depend on how far the module went through the
 * pipeline, nor on the generation model added next to it: a checkpoint
 * saved after training compiled the model matches a fresh parse. */
Test(checkpoint, model_hash_is_stable_through_the_passes)
{
  uint64_t a = hash_of(mgu_lm, "lm");
  char *t = replaced(mgu_lm, "loss = softmax(h, V", "h2   = lstm(h, H = H)\n  loss = softmax(h2, V");
  uint64_t b = hash_of(t, "lm");
  for (int k = 0; k < 2; k++) {
    Module *m = module_new();
    const Source *src = source_new(m, "<test>", k ? t : mgu_lm);
    cr_assert_eq(pipeline(m, src, PASS_SCHEDULE, NULL), RNNC_OK);
    Model *md = model_find(m, "lm");
    cr_assert_not_null(md->grad, "autodiff ran");
    cr_assert_eq(model_hash(m, md), k ? b : a);
    Model *gen;
    char err[256];
    cr_assert_eq(model_for_generation(m, md, &gen, err, sizeof err), RNNC_OK, "%s", err);
    cr_assert_eq(model_hash(m, md), k ? b : a);
    cr_assert_neq(model_hash(m, gen), k ? b : a);
    module_free(m);
  }
  free(t);
}

/* ---- the RNG state as text ---- */

Test(checkpoint, rng_string_round_trip_continues_the_stream)
{
  Rng a, b;
  rng_seed(&a, 1234);
  for (int i = 0; i < 7; i++)
    rng_next(&a);
  char s[80];
  rng_to_string(&a, s, sizeof s);
  cr_assert_eq(strlen(s), 64);
  cr_assert_eq(strspn(s, "0123456789abcdef"), 64, "%s", s);
  memset(&b, 0, sizeof b);
  cr_assert_eq(rng_from_string(&b, s), RNNC_OK);
  for (int i = 0; i < 1000; i++)
    cr_assert_eq(rng_next(&a), rng_next(&b), "draw %d", i);
  cr_assert_eq(rng_uniform(&a), rng_uniform(&b));
  cr_assert_eq(rng_normal(&a), rng_normal(&b));
}

Test(checkpoint, rng_string_layout)
{
  Rng r = {{1, 0xfedcba9876543210u, 0, UINT64_MAX}};
  char s[65];
  rng_to_string(&r, s, sizeof s);
  cr_assert_str_eq(s, "0000000000000001fedcba98765432100000000000000000ffffffffffffffff");
  Rng u;
  cr_assert_eq(rng_from_string(&u, "0000000000000001FEDCBA98765432100000000000000000ffffffffffffffff"),
               RNNC_OK, "upper case digits are fine");
  cr_assert_eq(memcmp(&u, &r, sizeof r), 0);
  char small[9];
  rng_to_string(&r, small, sizeof small);
  cr_assert_str_eq(small, "00000000", "cut, NUL-terminated");
}

Test(checkpoint, rng_from_string_rejects_malformed)
{
  const char *good = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
  char s[128];
  const char *bad[] = {
      "",
      "0123",
      "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde",   /* 63 */
      "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0", /* 65 */
      "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeg",
      " 123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
      "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n",
      "0x23456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
      "0000000000000000000000000000000000000000000000000000000000000000", /* all zero */
  };
  Rng r, keep;
  rng_seed(&r, 9);
  keep = r;
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    cr_assert_eq(rng_from_string(&r, bad[i]), RNNC_EFORMAT, "'%s' accepted", bad[i]);
    cr_assert_eq(memcmp(&r, &keep, sizeof r), 0, "'%s' changed the state", bad[i]);
  }
  cr_assert_eq(rng_from_string(&r, NULL), RNNC_EFORMAT);
  snprintf(s, sizeof s, "%s", good);
  cr_assert_eq(rng_from_string(&r, s), RNNC_OK);
  cr_assert_eq(r.s[0], 0x0123456789abcdefu);
}

/* ---- atomic saves ---- */

enum { NFLOAT = 2 * 1024 * 1024 }; /* 8 MB of F32 */

/* A checkpoint-like set: tensor "w" [NFLOAT] filled with step, metadata
 * "rnnc.step" = step, and a small second tensor "b" = -step. */
static void make_set(TensorSet *s, long step)
{
  tset_init(s);
  int64_t d[1] = {NFLOAT}, d2[1] = {3};
  Tensor *w = tset_add(s, "w", DT_F32, 1, d);
  cr_assert_not_null(w);
  float *p = w->data;
  for (int i = 0; i < NFLOAT; i++)
    p[i] = (float)step;
  float *q = tset_add(s, "b", DT_F32, 1, d2)->data;
  q[0] = q[1] = q[2] = -(float)step;
  char v[32];
  snprintf(v, sizeof v, "%ld", step);
  cr_assert_eq(tset_setmeta(s, "rnnc.step", v), RNNC_OK);
}

/* Read path; it must load and be internally consistent. Returns its step. */
static long check_consistent(const char *path)
{
  TensorSet r;
  tset_init(&r);
  char err[512] = "";
  int st = safetensors_read(path, &r, err, sizeof err);
  cr_assert_eq(st, RNNC_OK, "%s", err);
  const char *m = tset_getmeta(&r, "rnnc.step");
  cr_assert_not_null(m);
  long step = atol(m);
  Tensor *w = tset_find(&r, "w"), *b = tset_find(&r, "b");
  cr_assert(w && b && tensor_numel(w) == NFLOAT && tensor_numel(b) == 3);
  const float *p = w->data;
  for (int i = 0; i < NFLOAT; i++)
    if (p[i] != (float)step)
      cr_assert_fail("w[%d] = %g in a checkpoint of step %ld", i, p[i], step);
  for (int i = 0; i < 3; i++)
    cr_assert_eq(((float *)b->data)[i], -(float)step);
  tset_clear(&r);
  return step;
}

/* Temporary files of path's writers left in dir. */
static int count_temps(const char *base)
{
  DIR *d = opendir(tmp_dir());
  struct dirent *e;
  int n = 0;
  char pre[300];
  snprintf(pre, sizeof pre, "%s.tmp-", base);
  while ((e = readdir(d)))
    n += strncmp(e->d_name, pre, strlen(pre)) == 0;
  closedir(d);
  return n;
}

/* A child that saves checkpoints of steps first, first + 1, ... to path
 * until it is killed (or its parent is gone). */
static pid_t spawn_writer(const char *path, long first)
{
  pid_t parent = getpid();
  pid_t pid = fork();
  cr_assert_neq(pid, -1);
  if (pid == 0) {
    char err[512];
    for (long step = first; getppid() == parent; step++) {
      TensorSet s;
      make_set(&s, step);
      if (safetensors_write(path, &s, err, sizeof err) != RNNC_OK)
        _exit(3);
      tset_clear(&s);
    }
    _exit(0);
  }
  return pid;
}

static void sleep_us(long us)
{
  struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
  while (nanosleep(&ts, &ts) != 0)
    ;
}

Test(checkpoint, killed_writer_leaves_a_loadable_checkpoint, .timeout = 120)
{
  const char *path = tmp_path("ck.safetensors");
  char err[512];
  TensorSet s;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  make_set(&s, 0);
  cr_assert_eq(safetensors_write(path, &s, err, sizeof err), RNNC_OK, "%s", err);
  tset_clear(&s);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  /* one save's time (as slow as the build: ASan), so the kills fall at
   * every phase of the first few saves */
  long save_us = (t1.tv_sec - t0.tv_sec) * 1000000 + (t1.tv_nsec - t0.tv_nsec) / 1000;
  uint64_t x = 20261127; /* the delays: seeded, 0.2 to 3 saves */
  long last = 0, advanced = 0;
  int trial;
  /* on a loaded machine a save may take far longer than the one timed: if
   * no kill has let a save through, go on with doubling delays */
  for (trial = 0; trial < 20 || (advanced == 0 && trial < 30); trial++) {
    x = x * 6364136223846793005u + 1442695040888963407u;
    long delay = 500 + save_us / 5 + (long)((x >> 33) % 1000) * save_us * 14 / 5000;
    if (trial >= 20)
      delay <<= trial - 19;
    pid_t pid = spawn_writer(path, last + 1);
    sleep_us(delay);
    cr_assert_eq(kill(pid, SIGKILL), 0);
    int ws;
    cr_assert_eq(waitpid(pid, &ws, 0), pid);
    cr_assert(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL,
              "the writer exited by itself (status %d): a save failed", ws);
    long step = check_consistent(path);
    cr_assert_geq(step, last, "trial %d: step went back from %ld to %ld", trial, last, step);
    advanced += step > last;
    last = step;
  }
  cr_assert_gt(advanced, 0, "no writer ever completed a save: the test tested nothing");
  /* the killed writers' temporary files: whatever is left does not matter */
  cr_log_info("%d kills (a save takes %ld us): %ld advanced the checkpoint, %d temporary files "
              "left", trial, save_us, advanced, count_temps("ck.safetensors"));
  make_set(&s, 1000);
  cr_assert_eq(safetensors_write(path, &s, err, sizeof err), RNNC_OK, "%s", err);
  tset_clear(&s);
  cr_assert_eq(check_consistent(path), 1000);
}

/* A dead writer whose pid this process has now left temporary files under
 * the very names this process would pick: the save goes around them. */
Test(checkpoint, leftover_temporary_files_do_not_break_a_save)
{
  const char *path = tmp_path("ck.safetensors");
  char err[512];
  for (int n = 0; n < 10; n++) {
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld-%d", path, (long)getpid(), n);
    FILE *f = fopen(tmp, "wb");
    cr_assert_not_null(f);
    fputs("half a checkpoint", f);
    fclose(f);
  }
  TensorSet s;
  make_set(&s, 42);
  cr_assert_eq(safetensors_write(path, &s, err, sizeof err), RNNC_OK, "%s", err);
  tset_clear(&s);
  cr_assert_eq(check_consistent(path), 42);
  cr_assert_eq(count_temps("ck.safetensors"), 10, "the leftovers are not ours to remove");
  make_set(&s, 43);
  cr_assert_eq(safetensors_write(path, &s, err, sizeof err), RNNC_OK, "%s", err);
  tset_clear(&s);
  cr_assert_eq(check_consistent(path), 43);
}

/* A relative path (the directory synced is ".") and an absolute one. */
Test(checkpoint, save_to_a_relative_path)
{
  char cwd[512];
  cr_assert_not_null(getcwd(cwd, sizeof cwd));
  cr_assert_eq(chdir(tmp_dir()), 0);
  TensorSet s;
  make_set(&s, 5);
  char err[512];
  int st = safetensors_write("rel.safetensors", &s, err, sizeof err);
  tset_clear(&s);
  cr_assert_eq(chdir(cwd), 0);
  cr_assert_eq(st, RNNC_OK, "%s", err);
  cr_assert_eq(check_consistent(tmp_path("rel.safetensors")), 5);
}

typedef struct { const char *path; int id; int st; } Job;

static void *writer_thread(void *p)
{
  Job *j = p;
  char err[512];
  for (int i = 0; i < 4 && j->st == RNNC_OK; i++) {
    TensorSet s;
    make_set(&s, j->id * 100 + i);
    j->st = safetensors_write(j->path, &s, err, sizeof err);
    tset_clear(&s);
  }
  return NULL;
}

/* Threads and processes saving to one path at once: every save succeeds,
 * the file is one of them, whole, and no temporary file is left. */
Test(checkpoint, concurrent_writers_never_collide, .timeout = 120)
{
  const char *path = tmp_path("ck.safetensors");
  Job j[3] = {{path, 1, RNNC_OK}, {path, 2, RNNC_OK}, {path, 3, RNNC_OK}};
  pthread_t t[3];
  pid_t pid = fork();
  cr_assert_neq(pid, -1);
  if (pid == 0) { /* a second process doing the same */
    Job k = {path, 4, RNNC_OK};
    writer_thread(&k);
    _exit(k.st == RNNC_OK ? 0 : 1);
  }
  for (int i = 0; i < 3; i++)
    cr_assert_eq(pthread_create(&t[i], NULL, writer_thread, &j[i]), 0);
  for (int i = 0; i < 3; i++) {
    pthread_join(t[i], NULL);
    cr_assert_eq(j[i].st, RNNC_OK, "thread %d", i);
  }
  int ws;
  cr_assert_eq(waitpid(pid, &ws, 0), pid);
  cr_assert(WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "the other process's saves failed");
  long step = check_consistent(path);
  cr_assert(step % 100 < 4 && step / 100 >= 1 && step / 100 <= 4, "step %ld", step);
  cr_assert_eq(count_temps("ck.safetensors"), 0);
}

/* ---- corrupt checkpoints ---- */

static void expect_refused(const char *path, int status, const char *msg)
{
  TensorSet r;
  tset_init(&r);
  char err[512] = "", want[1024];
  cr_assert_eq(safetensors_read(path, &r, err, sizeof err), status, "%s", err);
  snprintf(want, sizeof want, "%s: %s", path, msg);
  cr_assert_str_eq(err, want);
  cr_assert_eq(r.n, 0);
  tset_clear(&r);
}

Test(checkpoint, corrupt_checkpoints_are_refused_naming_the_file)
{
  const char *path = tmp_path("ck.safetensors");
  char err[512];
  TensorSet s;
  make_set(&s, 7);
  cr_assert_eq(safetensors_write(path, &s, err, sizeof err), RNNC_OK, "%s", err);
  tset_clear(&s);
  FILE *f = fopen(path, "rb");
  unsigned char lb[8];
  cr_assert_eq(fread(lb, 1, 8, f), 8);
  fclose(f);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--)
    hlen = hlen << 8 | lb[i];
  cr_assert_lt(hlen, 1000);

  /* truncated in the data: the first tensor in the header runs past the end */
  cr_assert_eq(truncate(path, (off_t)(8 + hlen + 1000)), 0);
  expect_refused(path, RNNC_EFORMAT,
                 "tensor \"w\": data_offsets [12, 8388620] run past the end of the 1000-byte data "
                 "buffer");
  /* truncated in the header */
  cr_assert_eq(truncate(path, 20), 0);
  char msg[256];
  snprintf(msg, sizeof msg,
           "header length %llu runs past the end of the file (12 bytes follow the length)",
           (unsigned long long)hlen);
  expect_refused(path, RNNC_EFORMAT, msg);
  /* truncated in the length */
  cr_assert_eq(truncate(path, 5), 0);
  expect_refused(path, RNNC_EFORMAT, "file is 5 bytes, too short for the 8-byte header length");
  /* a header that is not JSON */
  make_set(&s, 7);
  cr_assert_eq(safetensors_write(path, &s, err, sizeof err), RNNC_OK, "%s", err);
  tset_clear(&s);
  f = fopen(path, "r+b");
  fseek(f, 8, SEEK_SET);
  fputc('[', f);
  fclose(f);
  expect_refused(path, RNNC_EFORMAT, "header is not valid JSON: line 1, column 16: ']' expected near ':'");
  /* a missing checkpoint */
  const char *none = tmp_path("none.safetensors");
  expect_refused(none, RNNC_EIO, "cannot open: No such file or directory");
}
