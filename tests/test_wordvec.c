/* test_wordvec.c — pretrained word vectors: GloVe text, word2vec text and
 * binary (and gzip'ed) files generated here, loaded into an embedding over a
 * word-level vocabulary: the rows filled, the missing count, untouched rows,
 * each error's exact message (the weight unchanged then), truncation at
 * every byte and random corruption (never a crash under ASan). */
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "testutil.h"

static void setup(void) { tmpdir_make("wv"); }

TestSuite(wordvec, .init = setup, .fini = tmpdir_remove);



static void write_text(const char *path, const char *s) { write_bytes(path, s, strlen(s)); }

/* The vocabulary of "the cat sat on the mat": <unk>, the, cat, mat, on, sat
 * (V = 6); ids through vocab_lookup. */
static Vocab vocab(void)
{
  static const char text[] = "the cat sat on the mat";
  Vocab v;
  char err[256];
  cr_assert_eq(vocab_build(&v, VOCAB_WORD, "corpus", text, strlen(text), 1, err, sizeof err), RNNC_OK,
               "%s", err);
  cr_assert_eq(v.n, 6);
  return v;
}

static int id(const Vocab *v, const char *w)
{
  int i = vocab_lookup(v, w, (int)strlen(w));
  cr_assert_geq(i, 0, "'%s' not in the vocabulary", w);
  return i;
}

enum { E = 3, V = 6 };
static const float SENTINEL = 7.5f;

static void fill_sentinel(float *w, int n)
{
  for (int i = 0; i < n; i++)
    w[i] = SENTINEL + (float)i;
}

/* Row of word is x; every row not in `filled` still has its sentinel. */
static void expect_row(const Vocab *v, const float *w, const char *word, const float *x)
{
  int r = id(v, word);
  for (int k = 0; k < E; k++)
    cr_assert_eq(w[r * E + k], x[k], "%s[%d] = %g, want %g", word, k, w[r * E + k], x[k]);
}

static void expect_untouched(const Vocab *v, const float *w, const char *word)
{
  int r = id(v, word);
  for (int k = 0; k < E; k++)
    cr_assert_eq(w[r * E + k], SENTINEL + (float)(r * E + k), "%s[%d] changed", word, k);
}

static const float v_the[E] = {0.25f, -1.5f, 3.0f}, v_cat[E] = {1e-3f, 2.5e2f, -0.125f},
                   v_mat[E] = {-7.0f, 0.0f, 1.0f / 3.0f}, v_dog[E] = {9, 9, 9};

/* The rows the, cat and mat filled, <unk>, on and sat untouched: 3 missing. */
static void expect_loaded(const char *path)
{
  Vocab v = vocab();
  float w[V * E];
  fill_sentinel(w, V * E);
  int64_t missing = -1;
  char err[512] = "";
  cr_assert_eq(wordvec_load(path, &v, w, V, E, &missing, err, sizeof err), RNNC_OK, "%s", err);
  cr_assert_eq(missing, 3);
  expect_row(&v, w, "the", v_the);
  expect_row(&v, w, "cat", v_cat);
  expect_row(&v, w, "mat", v_mat);
  expect_untouched(&v, w, "<unk>");
  expect_untouched(&v, w, "on");
  expect_untouched(&v, w, "sat");
  vocab_free(&v);
}

/* "word x1 x2 x3\n" lines with %.9g (exact for float32). The second "cat"
 * is ignored: a word's first vector wins. */
static char *text_lines(const char *eol)
{
  static char buf[1024];
  const struct { const char *w; const float *x; } L[] = {
      {"the", v_the}, {"dog", v_dog}, {"cat", v_cat}, {"mat", v_mat}, {"cat", v_dog}};
  size_t n = 0;
  for (int i = 0; i < 5; i++)
    n += (size_t)snprintf(buf + n, sizeof buf - n, "%s %.9g %.9g %.9g%s", L[i].w, (double)L[i].x[0],
                          (double)L[i].x[1], (double)L[i].x[2], eol);
  return buf;
}

Test(wordvec, glove_text)
{
  const char *p = tmp_path("glove.txt");
  write_text(p, text_lines("\n"));
  expect_loaded(p);
  /* CRLF, tabs, blank lines, no final newline */
  char s[1200];
  snprintf(s, sizeof s, "\n%s", text_lines("\r\n"));
  s[strlen(s) - 2] = '\0';
  for (char *c = strchr(s, ' '); c; c = strchr(c + 1, ' '))
    if ((c - s) % 3 == 0)
      *c = '\t';
  write_text(p, s);
  expect_loaded(p);
}

Test(wordvec, word2vec_text)
{
  const char *p = tmp_path("w2v.txt");
  char s[1200];
  snprintf(s, sizeof s, "5 3\n%s", text_lines("\n"));
  write_text(p, s);
  expect_loaded(p);
}

/* "N E\n" then per word "word " + E float32 LE, a '\n' after some. */
static size_t binary_file(unsigned char *buf, int nwords, const char *const *w, const float *const *x,
                          const char *header)
{
  size_t n = (size_t)sprintf((char *)buf, "%s", header);
  for (int i = 0; i < nwords; i++) {
    n += (size_t)sprintf((char *)buf + n, "%s ", w[i]);
    for (int k = 0; k < E; k++) {
      uint32_t b;
      memcpy(&b, &x[i][k], 4);
      for (int j = 0; j < 4; j++)
        buf[n++] = (unsigned char)(b >> (8 * j));
    }
    if (i % 2 == 0)
      buf[n++] = '\n';
  }
  return n;
}

static const char *const bw[] = {"the", "dog", "cat", "mat", "cat"};
static const float *const bx[] = {v_the, v_dog, v_cat, v_mat, v_dog};

Test(wordvec, word2vec_binary)
{
  unsigned char buf[512];
  size_t n = binary_file(buf, 5, bw, bx, "5 3\n");
  const char *p = tmp_path("w2v.bin");
  write_bytes(p, buf, n);
  expect_loaded(p);
}

/* A binary vector whose first byte is '\n' and whose bytes look like text
 * ('0' then ' ') is still binary. */
Test(wordvec, word2vec_binary_that_starts_like_text)
{
  float odd[E], odd2[E];
  uint32_t b1 = 0x3f80000au, b2 = 0x40002030u; /* bytes 0a 00 80 3f; 30 20 00 40 */
  memcpy(&odd[0], &b1, 4);
  memcpy(&odd2[0], &b2, 4);
  odd[1] = odd2[1] = 1.0f;
  odd[2] = odd2[2] = -2.0f;
  for (int t = 0; t < 2; t++) {
    const char *const w[] = {"the", "cat", "mat"};
    const float *const x[] = {t ? odd2 : odd, v_cat, v_mat};
    unsigned char buf[256];
    size_t n = binary_file(buf, 3, w, x, "3 3\n");
    const char *p = tmp_path("odd.bin");
    write_bytes(p, buf, n);
    Vocab v = vocab();
    float wt[V * E];
    fill_sentinel(wt, V * E);
    int64_t missing;
    char err[512] = "";
    cr_assert_eq(wordvec_load(p, &v, wt, V, E, &missing, err, sizeof err), RNNC_OK, "%s", err);
    expect_row(&v, wt, "the", x[0]);
    expect_row(&v, wt, "mat", v_mat);
    vocab_free(&v);
  }
}

Test(wordvec, gzip_files)
{
  const char *p = tmp_path("glove.txt.gz");
  gzFile gz = gzopen(p, "wb");
  cr_assert_not_null(gz);
  const char *s = text_lines("\n");
  cr_assert_eq(gzwrite(gz, s, (unsigned)strlen(s)), (int)strlen(s));
  cr_assert_eq(gzclose(gz), Z_OK);
  expect_loaded(p);
  unsigned char buf[512];
  size_t n = binary_file(buf, 5, bw, bx, "5 3\n");
  p = tmp_path("w2v.bin.gz");
  gz = gzopen(p, "wb");
  cr_assert_eq(gzwrite(gz, buf, (unsigned)n), (int)n);
  cr_assert_eq(gzclose(gz), Z_OK);
  expect_loaded(p);
}

/* No word of the vocabulary in the file: all 6 missing, nothing changed;
 * missing may be NULL. */
Test(wordvec, no_word_found)
{
  const char *p = tmp_path("none.txt");
  write_text(p, "dog 1 2 3\nbird 4 5 6\n");
  Vocab v = vocab();
  float w[V * E], w0[V * E];
  fill_sentinel(w, V * E);
  memcpy(w0, w, sizeof w);
  int64_t missing;
  char err[512];
  cr_assert_eq(wordvec_load(p, &v, w, V, E, &missing, err, sizeof err), RNNC_OK, "%s", err);
  cr_assert_eq(missing, 6);
  cr_assert_eq(memcmp(w, w0, sizeof w), 0);
  cr_assert_eq(wordvec_load(p, &v, w, V, E, NULL, err, sizeof err), RNNC_OK, "%s", err);
  write_text(p, "0 3\n");
  cr_assert_eq(wordvec_load(p, &v, w, V, E, &missing, err, sizeof err), RNNC_OK, "%s", err);
  cr_assert_eq(missing, 6, "an empty word2vec file");
  vocab_free(&v);
}

/* A line longer than the reader's 64 KiB buffer, E = 10000. */
Test(wordvec, long_lines)
{
  enum { BIGE = 10000 };
  static const char text[] = "a b b";
  Vocab v;
  char err[512];
  cr_assert_eq(vocab_build(&v, VOCAB_WORD, "c", text, strlen(text), 1, err, sizeof err), RNNC_OK);
  size_t cap = 2 * BIGE * 12 + 64, n = 0;
  char *s = malloc(cap);
  for (int line = 0; line < 2; line++) {
    n += (size_t)snprintf(s + n, cap - n, "%s", line ? "b" : "a");
    for (int k = 0; k < BIGE; k++)
      n += (size_t)snprintf(s + n, cap - n, " %.6f", (line + 1) * 0.001 * k);
    s[n++] = '\n';
  }
  s[n] = '\0';
  cr_assert_gt(n / 2, 65536);
  const char *p = tmp_path("long.txt");
  write_text(p, s);
  free(s);
  float *w = calloc((size_t)v.n * BIGE, sizeof *w);
  int64_t missing;
  cr_assert_eq(wordvec_load(p, &v, w, v.n, BIGE, &missing, err, sizeof err), RNNC_OK, "%s", err);
  cr_assert_eq(missing, 1);
  int b = vocab_lookup(&v, "b", 1);
  cr_assert_float_eq(w[b * BIGE + 9999], 0.002f * 9999, 1e-3);
  cr_assert_float_eq(w[vocab_lookup(&v, "a", 1) * BIGE + 1234], 1.234f, 1e-6);
  free(w);
  vocab_free(&v);
}

/* ---- errors: exact messages, the weight unchanged ---- */

static void expect_error_at(const char *p, int64_t rows, int64_t dims, int status, const char *msg)
{
  Vocab v = vocab();
  float w[V * 64], w0[V * 64];
  cr_assert(dims <= 64);
  fill_sentinel(w, V * 64);
  memcpy(w0, w, sizeof w);
  int64_t missing = -7;
  char err[512] = "", want[1024];
  int st = wordvec_load(p, &v, w, rows, dims, &missing, err, sizeof err);
  snprintf(want, sizeof want, "%s%s", p, msg);
  cr_assert_eq(st, status, "status %d, want %d (%s)", st, status, err);
  cr_assert_str_eq(err, want);
  cr_assert_eq(memcmp(w, w0, sizeof w), 0, "the weight changed");
  cr_assert_eq(missing, -7);
  vocab_free(&v);
}

static void expect_text_error(const char *text, int status, const char *msg)
{
  const char *p = tmp_path("bad.txt");
  write_text(p, text);
  expect_error_at(p, V, E, status, msg);
}

static void expect_bytes_error(const void *b, size_t n, int status, const char *msg)
{
  const char *p = tmp_path("bad.bin");
  write_bytes(p, b, n);
  expect_error_at(p, V, E, status, msg);
}

Test(wordvec, text_errors)
{
  expect_text_error("the 1 2 3\ncat 1 2 3\nmat 1 2\n", RNNC_EFORMAT, ":3: 'mat' has 2 values, expected 3");
  expect_text_error("the 1 2 3\ncat 1 2 3 4\n", RNNC_EFORMAT, ":2: 'cat' has 4 values, expected 3");
  expect_text_error("the 1 2 3\ncat\n", RNNC_EFORMAT, ":2: 'cat' has 0 values, expected 3");
  expect_text_error("the 1 2 3 4\ncat 1 2 3 4\n", RNNC_ESHAPE, ":1: vectors have 4 dims, the embedding 3");
  expect_text_error("the 1\n", RNNC_ESHAPE, ":1: vectors have 1 dims, the embedding 3");
  expect_text_error("the 1 2 3\ncat 1 0.x 3\n", RNNC_EFORMAT, ":2: 'cat': value 2 '0.x' is not a number");
  expect_text_error("the 1 2 3\n\ncat nan 2 3\n", RNNC_EFORMAT, ":3: 'cat': value 1 'nan' is not finite");
  expect_text_error("the 1 2 1e39\n", RNNC_EFORMAT, ":1: 'the': value 3 '1e39' is not finite");
  expect_text_error("the\n", RNNC_EFORMAT,
                    ":1: expected a word and its vector, or word2vec's header 'N E'");
  expect_text_error("", RNNC_EFORMAT, ": the file is empty");
  /* word2vec text */
  expect_text_error("2 50\nthe 1 2 3\n", RNNC_ESHAPE, ":1: vectors have 50 dims, the embedding 3");
  expect_text_error("3 3\nthe 1 2 3\n", RNNC_EFORMAT, ": truncated after 1 of the header's 3 vectors");
  expect_text_error("2 3\nthe 1 2 3\ncat 1 2 3\n\nmat 1 2 3\n", RNNC_EFORMAT,
                    ":5: more vectors than the header's 2");
  expect_text_error("2 0\n", RNNC_EFORMAT, ":1: word2vec header says 0 dims");
  expect_text_error("2 3\nthe 1 2 3\ncat 1 2\n", RNNC_EFORMAT, ":3: 'cat' has 2 values, expected 3");
  /* a word cut to 40 bytes, control characters shown as '?' */
  expect_text_error("the 1 2 3\nabcdefghijabcdefghijabcdefghijabcdefghij_and_more\x01 1\n", RNNC_EFORMAT,
                    ":2: 'abcdefghijabcdefghijabcdefghijabcdefg...' has 1 values, expected 3");
  expect_text_error("the 1 2 3\nc\x01t 1 2\n", RNNC_EFORMAT, ":2: 'c?t' has 2 values, expected 3");
}

Test(wordvec, the_message_of_the_contract)
{
  const char *p = tmp_path("g50.txt");
  char s[1024];
  size_t n = (size_t)sprintf(s, "the");
  for (int k = 0; k < 50; k++)
    n += (size_t)sprintf(s + n, " 0.5");
  strcpy(s + n, "\n");
  write_text(p, s);
  expect_error_at(p, V, 64, RNNC_ESHAPE, ":1: vectors have 50 dims, the embedding 64");
}

Test(wordvec, binary_errors)
{
  unsigned char buf[512];
  size_t n = binary_file(buf, 5, bw, bx, "5 3\n"); /* "5 3\n" + the 13 + 1, dog 13, cat 13 + 1, ... */
  /* cut inside vector 2 ("dog ", then 12 bytes): 5 of its bytes */
  size_t at2 = 4 + 17;
  cr_assert_eq(memcmp(buf + at2, "dog ", 4), 0);
  expect_bytes_error(buf, at2 + 4 + 5, RNNC_EFORMAT, ": truncated in vector 2 of 5 ('dog'): 5 of its 12 bytes");
  expect_bytes_error(buf, at2 + 4, RNNC_EFORMAT, ": truncated in vector 2 of 5 ('dog'): 0 of its 12 bytes");
  expect_bytes_error(buf, at2 + 2, RNNC_EFORMAT, ": truncated in vector 2 of 5: the file ends inside its word");
  expect_bytes_error(buf, at2, RNNC_EFORMAT, ": truncated after 1 of the header's 5 vectors");
  expect_bytes_error(buf, at2 - 1, RNNC_EFORMAT, ": truncated after 1 of the header's 5 vectors");
  expect_bytes_error(buf, n - 2, RNNC_EFORMAT, ": truncated in vector 5 of 5 ('cat'): 11 of its 12 bytes");
  /* more data than the header says */
  memcpy(buf + n, "x", 1);
  expect_bytes_error(buf, n + 1, RNNC_EFORMAT, ": data after the header's 5 vectors");
  /* dims */
  n = binary_file(buf, 5, bw, bx, "5 4\n");
  expect_bytes_error(buf, n, RNNC_ESHAPE, ":1: vectors have 4 dims, the embedding 3");
  /* a value that is not finite */
  float inf[E] = {1, INFINITY, 2};
  const char *const w[] = {"the", "cat"};
  const float *const x[] = {v_the, inf};
  n = binary_file(buf, 2, w, x, "2 3\n");
  expect_bytes_error(buf, n, RNNC_EFORMAT, ": vector 2 of 2 ('cat'): value 2 is not finite");
  /* a word with no space within 4096 bytes */
  unsigned char *big = malloc(6000);
  memcpy(big, "1 3\n", 4);
  memset(big + 4, 'a', 5996);
  expect_bytes_error(big, 6000, RNNC_EFORMAT, ": vector 1 of 1: no space within 4096 bytes after the word's start");
  free(big);
}

Test(wordvec, other_errors)
{
  const char *p = tmp_path("glove.txt");
  write_text(p, text_lines("\n"));
  expect_error_at(p, 5, E, RNNC_ESHAPE, ": the embedding has 5 rows, the vocabulary 6 words");
  expect_error_at(p, V, 0, RNNC_ESHAPE, ": the embedding has 0 dims");
  const char *none = tmp_path("none.txt");
  expect_error_at(none, V, E, RNNC_EIO, ": cannot open: No such file or directory");
  expect_error_at(tmp_dir(), V, E, RNNC_EIO, ": is a directory");
  /* a gzip file cut short */
  const char *gp = tmp_path("cut.gz");
  gzFile gz = gzopen(gp, "wb");
  char s[4096];
  size_t n = 0;
  for (int i = 0; i < 100; i++)
    n += (size_t)sprintf(s + n, "w%d %d.5 %d.25 -%d\n", i, i, i * 7, i * 3);
  gzwrite(gz, s, (unsigned)n);
  gzclose(gz);
  FILE *f = fopen(gp, "rb");
  unsigned char b[4096];
  size_t gn = fread(b, 1, sizeof b, f);
  fclose(f);
  write_bytes(gp, b, gn / 2);
  expect_error_at(gp, V, E, RNNC_EFORMAT, ": the gzip data is truncated");
  /* corrupt compressed data: zlib's own words after ours */
  b[gn / 2] ^= 0xff;
  b[gn / 2 + 1] ^= 0x55;
  write_bytes(gp, b, gn);
  Vocab v = vocab();
  float w[V * E];
  char err[512], want[600];
  cr_assert_eq(wordvec_load(gp, &v, w, V, E, NULL, err, sizeof err), RNNC_EFORMAT, "%s", err);
  snprintf(want, sizeof want, "%s: corrupt gzip data: ", gp);
  cr_assert_eq(strncmp(err, want, strlen(want)), 0, "%s", err);
  cr_assert_null(strstr(err + strlen(want), gp), "the path twice: %s", err);
  vocab_free(&v);
}

/* ---- robustness ---- */

static uint64_t lcg(uint64_t *x)
{
  *x = *x * 6364136223846793005u + 1442695040888963407u;
  return *x >> 33;
}

/* Load bytes b[0..n); on failure the message names the file, is one line. */
static int try_load(const char *p, const unsigned char *b, size_t n)
{
  write_bytes(p, b, n);
  Vocab v = vocab();
  float w[V * E];
  fill_sentinel(w, V * E);
  char err[512] = "";
  int64_t missing;
  int st = wordvec_load(p, &v, w, V, E, &missing, err, sizeof err);
  if (st != RNNC_OK) {
    cr_assert(st == RNNC_EFORMAT || st == RNNC_ESHAPE, "status %d: %s", st, err);
    cr_assert_eq(strncmp(err, p, strlen(p)), 0, "%s", err);
    cr_assert_null(strchr(err, '\n'));
  } else {
    cr_assert(missing >= 0 && missing <= V);
  }
  vocab_free(&v);
  return st;
}

/* Every strict prefix of a binary file fails, but the one that drops only
 * the last newline; every prefix of a text file is handled. */
Test(wordvec, truncation_at_every_byte)
{
  unsigned char buf[512];
  size_t n = binary_file(buf, 5, bw, bx, "5 3\n");
  cr_assert_eq(buf[n - 1], '\n');
  const char *p = tmp_path("t.bin");
  for (size_t k = 0; k < n - 1; k++)
    cr_assert_neq(try_load(p, buf, k), RNNC_OK, "a binary file cut to %zu of %zu bytes loads", k, n);
  cr_assert_eq(try_load(p, buf, n - 1), RNNC_OK);
  cr_assert_eq(try_load(p, buf, n), RNNC_OK);
  char s[1200];
  snprintf(s, sizeof s, "5 3\n%s", text_lines("\n"));
  for (size_t k = 0; k <= strlen(s); k++)
    try_load(p, (const unsigned char *)s, k);
}

Test(wordvec, fuzz_never_crashes)
{
  unsigned char bin[512], txt[1200], q[1300];
  size_t nb = binary_file(bin, 5, bw, bx, "5 3\n");
  size_t nt = (size_t)snprintf((char *)txt, sizeof txt, "5 3\n%s", text_lines("\n"));
  uint64_t x = 777;
  const char *p = tmp_path("f");
  int ok = 0;
  for (int it = 0; it < 1500; it++) {
    const unsigned char *src = it % 2 ? bin : txt;
    size_t n = it % 2 ? nb : nt;
    memcpy(q, src, n);
    int edits = 1 + (int)(lcg(&x) % 3);
    for (int e = 0; e < edits && n; e++) {
      size_t at = lcg(&x) % n;
      switch (lcg(&x) % 3) {
      case 0: q[at] ^= (unsigned char)(1u << (lcg(&x) % 8)); break;
      case 1: q[at] = (unsigned char)" \n\t0123456789.-e"[lcg(&x) % 16]; break;
      case 2: q[at] = (unsigned char)lcg(&x); break;
      }
    }
    ok += try_load(p, q, n) == RNNC_OK;
  }
  cr_log_info("fuzz: %d of 1500 loaded", ok);
  cr_assert_lt(ok, 1500);
}
