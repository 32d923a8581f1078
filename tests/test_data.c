/* test_data.c — the data layer of training: vocabularies (byte, char, word;
 * JSON), reading files (plain, gzip, errors), text data sets and splits,
 * batches (streams with carried state, padded lines, IDX), exact resume. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "testutil.h"

/* ---- helpers ---- */

static void setup(void) { tmpdir_make("test-data"); }

TestSuite(data, .init = setup, .fini = tmpdir_remove);



static void write_gz(const char *path, const void *p, size_t n)
{
  gzFile g = gzopen(path, "wb");
  cr_assert_not_null(g);
  cr_assert_eq(gzwrite(g, p, (unsigned)n), (int)n);
  cr_assert_eq(gzclose(g), Z_OK);
}

static Vocab build(int kind, const char *text, int mincount)
{
  Vocab v;
  char err[256] = "";
  int st = vocab_build(&v, kind, "t.txt", text, strlen(text), mincount, err, sizeof err);
  cr_assert_eq(st, RNNC_OK, "%s", err);
  return v;
}

/* Encode then decode text: the same bytes back. */
static void roundtrip(const Vocab *v, const char *text, size_t len)
{
  int32_t *ids;
  size_t n;
  char err[256] = "";
  cr_assert_eq(vocab_encode(v, "t.txt", text, len, &ids, &n, NULL, err, sizeof err), RNNC_OK, "%s", err);
  char *back = vocab_decode(v, ids, n);
  cr_assert_eq(memcmp(back, text, len), 0);
  cr_assert_eq(back[len], 0);
  free(back);
  free(ids);
}

/* ---- vocabularies ---- */

Test(data, vocab_byte)
{
  static const char text[] = "h\xc3\xa9llo\0\xff!";
  size_t len = sizeof text - 1;
  Vocab v;
  char err[256];
  cr_assert_eq(vocab_build(&v, VOCAB_BYTE, "t.txt", text, len, 1, err, sizeof err), RNNC_OK);
  cr_assert_eq(v.n, 256);
  cr_assert_eq(v.unk, -1);
  cr_assert_eq(v.len[0], 1);
  cr_assert_eq(v.tok[0][0], 0);
  cr_assert_eq((unsigned char)v.tok[0xff][0], 0xff);
  int32_t *ids;
  size_t n;
  cr_assert_eq(vocab_encode(&v, "t.txt", text, len, &ids, &n, NULL, err, sizeof err), RNNC_OK);
  cr_assert_eq(n, len);
  cr_assert_eq(ids[1], 0xc3);
  cr_assert_eq(ids[6], 0);
  cr_assert_eq(ids[7], 0xff);
  free(ids);
  roundtrip(&v, text, len);
  cr_assert_eq(vocab_lookup(&v, "A", 1), 65);
  cr_assert_eq(vocab_lookup(&v, "AB", 2), -1);
  vocab_free(&v);
  cr_assert_null(v.tok);
}

Test(data, vocab_char)
{
  const char *text = "b\xc3\xa9 a\n\xe2\x98\x83\xf0\x9f\x98\x80 b"; /* b é ␠ a ⏎ ☃ 😀 */
  Vocab v = build(VOCAB_CHAR, text, 1);
  static const char *want[] = {"\n", " ", "a", "b", "\xc3\xa9", "\xe2\x98\x83", "\xf0\x9f\x98\x80"};
  cr_assert_eq(v.n, 7);
  for (int i = 0; i < 7; i++) {
    cr_assert_str_eq(v.tok[i], want[i]);
    cr_assert_eq(v.len[i], (int)strlen(want[i]));
    cr_assert_eq(vocab_lookup(&v, want[i], (int)strlen(want[i])), i);
  }
  cr_assert_eq(vocab_lookup(&v, "z", 1), -1);
  int32_t *ids;
  size_t n;
  char err[256];
  cr_assert_eq(vocab_encode(&v, "t.txt", text, strlen(text), &ids, &n, NULL, err, sizeof err), RNNC_OK);
  static const int32_t wid[] = {3, 4, 1, 2, 0, 5, 6, 1, 3};
  cr_assert_eq(n, 9);
  cr_assert_arr_eq(ids, wid, sizeof wid);
  free(ids);
  roundtrip(&v, text, strlen(text));
  vocab_free(&v);
}

Test(data, vocab_word_unk)
{
  Vocab v = build(VOCAB_WORD, "the cat\tthe  dog\nthe cat a ab ab a\n", 2);
  /* the 3, a 2, ab 2, cat 2 (ties bytewise, a prefix first); dog 1 dropped */
  static const char *want[] = {"<unk>", "the", "a", "ab", "cat"};
  cr_assert_eq(v.n, 5);
  cr_assert_eq(v.unk, 0);
  for (int i = 0; i < 5; i++)
    cr_assert_str_eq(v.tok[i], want[i]);
  int32_t *ids;
  size_t n, nunk = 99;
  char err[256];
  const char *s = " the dog cat bird ab\n";
  cr_assert_eq(vocab_encode(&v, "t.txt", s, strlen(s), &ids, &n, &nunk, err, sizeof err), RNNC_OK);
  static const int32_t wid[] = {1, 0, 4, 0, 3};
  cr_assert_eq(n, 5);
  cr_assert_arr_eq(ids, wid, sizeof wid);
  cr_assert_eq(nunk, 2);
  char *back = vocab_decode(&v, ids, n);
  cr_assert_str_eq(back, "the <unk> cat <unk> ab");
  free(back);
  free(ids);
  roundtrip(&v, "the a ab", 8);
  cr_assert_eq(vocab_lookup(&v, "cat", 3), 4);
  cr_assert_eq(vocab_lookup(&v, "dog", 3), -1);
  vocab_free(&v);
}

Test(data, vocab_word_many)
{
  /* enough distinct words to grow the counting table several times */
  size_t cap = 400000, len = 0;
  char *text = malloc(cap);
  for (int i = 0; i < 20000; i++)
    len += (size_t)snprintf(text + len, cap - len, "w%d w%d ", i, i % 100);
  Vocab v = build(VOCAB_WORD, text, 2);
  cr_assert_eq(v.n, 101); /* <unk> + w0 .. w99 */
  cr_assert_str_eq(v.tok[1], "w0"); /* w0 .. w99: 201 times each, bytewise */
  cr_assert_str_eq(v.tok[2], "w1");
  cr_assert_str_eq(v.tok[3], "w10");
  cr_assert_eq(vocab_lookup(&v, "w57", 3), 54); /* w0 w1 w10..w19 w2 w20..w29 w3 ... w5 w50 .. */
  vocab_free(&v);
  free(text);
}

Test(data, vocab_word_mincount_error)
{
  Vocab v;
  char err[256];
  cr_assert_eq(vocab_build(&v, VOCAB_WORD, "t.txt", "a b c", 5, 2, err, sizeof err), RNNC_EINPUT);
  cr_assert_str_eq(err, "t.txt: no word occurs 2 or more times (3 distinct words)");
  cr_assert_eq(vocab_build(&v, VOCAB_CHAR, "t.txt", "", 0, 1, err, sizeof err), RNNC_EINPUT);
  cr_assert_str_eq(err, "t.txt: no text to build a vocabulary from");
}

Test(data, vocab_json_roundtrip)
{
  Vocab v[3];
  v[0] = build(VOCAB_BYTE, "x", 1);
  v[1] = build(VOCAB_CHAR, "z\"\\\xc3\xa9 \n\t", 1);
  v[2] = build(VOCAB_WORD, "x y x y z \xe2\x98\x83 \xe2\x98\x83", 2);
  const char *want[3] = {"{\"kind\":\"byte\"}", "{\"kind\":\"char\",\"tokens\":[\"\\t\",\"\\n\",\" \",\"\\\"\",\"\\\\\",\"z\",\"\xc3\xa9\"]}",
                         "{\"kind\":\"word\",\"tokens\":[\"<unk>\",\"x\",\"y\",\"\xe2\x98\x83\"]}"};
  for (int i = 0; i < 3; i++) {
    char *j = vocab_to_json(&v[i]);
    cr_assert_str_eq(j, want[i]);
    Vocab w;
    char err[256] = "";
    cr_assert_eq(vocab_from_json(&w, j, err, sizeof err), RNNC_OK, "%s", err);
    cr_assert(vocab_equal(&v[i], &w));
    cr_assert_eq(w.unk, v[i].unk);
    cr_assert_eq(vocab_lookup(&w, v[i].tok[v[i].n - 1], v[i].len[v[i].n - 1]), v[i].n - 1);
    for (int k = 0; k < 3; k++)
      cr_assert_eq(vocab_equal(&v[k], &w), k == i);
    vocab_free(&w);
    free(j);
  }
  /* a NUL character survives */
  Vocab c;
  char err[256];
  cr_assert_eq(vocab_build(&c, VOCAB_CHAR, "t", "a\0b", 3, 1, err, sizeof err), RNNC_OK);
  char *j = vocab_to_json(&c);
  Vocab w;
  cr_assert_eq(vocab_from_json(&w, j, err, sizeof err), RNNC_OK, "%s", err);
  cr_assert(vocab_equal(&c, &w));
  cr_assert_eq(w.len[0], 1);
  free(j);
  vocab_free(&w);
  vocab_free(&c);
  Vocab d = build(VOCAB_CHAR, "ab", 1), e = build(VOCAB_CHAR, "ac", 1);
  cr_assert_not(vocab_equal(&d, &e));
  vocab_free(&d);
  vocab_free(&e);
  for (int i = 0; i < 3; i++)
    vocab_free(&v[i]);
}

Test(data, vocab_json_errors)
{
  static const struct { const char *json, *msg; } c[] = {
    {"{\"kind\":", "vocabulary: not valid JSON: line 1, column 8: unexpected token near end of file"},
    {"[1]", "vocabulary: no \"kind\" of \"byte\", \"char\" or \"word\""},
    {"{\"kind\":\"bytes\"}", "vocabulary: no \"kind\" of \"byte\", \"char\" or \"word\""},
    {"{\"kind\":\"char\"}", "vocabulary: no \"tokens\" array"},
    {"{\"kind\":\"char\",\"tokens\":[]}", "vocabulary: no \"tokens\" array"},
    {"{\"kind\":\"char\",\"tokens\":[\"a\",3]}", "vocabulary: token 1 is not a string"},
    {"{\"kind\":\"char\",\"tokens\":[\"ab\"]}", "vocabulary: token 0 is not one character"},
    {"{\"kind\":\"char\",\"tokens\":[\"b\",\"a\"]}", "vocabulary: characters are not in increasing order at token 1"},
    {"{\"kind\":\"word\",\"tokens\":[\"a\"]}", "vocabulary: word level token 0 must be \"<unk>\""},
    {"{\"kind\":\"word\",\"tokens\":[\"<unk>\",\"a b\"]}", "vocabulary: token 1 contains white space"},
    {"{\"kind\":\"word\",\"tokens\":[\"<unk>\",\"\"]}", "vocabulary: token 1 is empty"},
    {"{\"kind\":\"word\",\"tokens\":[\"<unk>\",\"a\",\"b\",\"a\"]}", "vocabulary: tokens 1 and 3 are the same"},
  };
  for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
    Vocab v;
    char err[256] = "";
    cr_assert_eq(vocab_from_json(&v, c[i].json, err, sizeof err), RNNC_EFORMAT, "%s", c[i].json);
    cr_assert_str_eq(err, c[i].msg, "%s", c[i].json);
    cr_assert_null(v.tok);
  }
}

Test(data, invalid_utf8)
{
  static const struct { const char *text, *msg; } c[] = {
    {"ab\x80", "t.txt: invalid UTF-8 at byte 2 (unexpected continuation byte 0x80)"},
    {"a\xc0\xaf", "t.txt: invalid UTF-8 at byte 1 (overlong encoding of U+002F)"},
    {"\xe0\x80\xaf", "t.txt: invalid UTF-8 at byte 0 (overlong encoding of U+002F)"},
    {"\xf0\x8f\xbf\xbf", "t.txt: invalid UTF-8 at byte 0 (overlong encoding of U+FFFF)"},
    {"xy\xed\xa0\x80z", "t.txt: invalid UTF-8 at byte 2 (surrogate U+D800)"},
    {"\xf4\x90\x80\x80", "t.txt: invalid UTF-8 at byte 0 (code point above U+10FFFF)"},
    {"abc\xe2\x82", "t.txt: invalid UTF-8 at byte 3 (truncated 3-byte sequence)"},
    {"\xc3" "a", "t.txt: invalid UTF-8 at byte 0 (truncated 2-byte sequence)"},
    {"ab\xff", "t.txt: invalid UTF-8 at byte 2 (invalid byte 0xff)"},
  };
  for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
    Vocab v;
    char err[256] = "";
    cr_assert_eq(vocab_build(&v, VOCAB_CHAR, "t.txt", c[i].text, strlen(c[i].text), 1, err, sizeof err),
                 RNNC_EINPUT, "case %zu", i);
    cr_assert_str_eq(err, c[i].msg);
    cr_assert_eq(v.n, 0);
    /* encoding with a valid vocabulary meets the same error */
    Vocab ok = build(VOCAB_CHAR, "abcxyz", 1);
    int32_t *ids = NULL;
    size_t n;
    cr_assert_eq(vocab_encode(&ok, "t.txt", c[i].text, strlen(c[i].text), &ids, &n, NULL, err, sizeof err),
                 RNNC_EINPUT);
    cr_assert_str_eq(err, c[i].msg);
    vocab_free(&ok);
    /* word level text is UTF-8 too */
    cr_assert_eq(vocab_build(&v, VOCAB_WORD, "t.txt", c[i].text, strlen(c[i].text), 1, err, sizeof err),
                 RNNC_EINPUT, "case %zu", i);
    cr_assert_str_eq(err, c[i].msg);
  }
  /* the largest code point and the edges of the surrogates are fine */
  Vocab v = build(VOCAB_CHAR, "\xf4\x8f\xbf\xbf\xed\x9f\xbf\xee\x80\x80", 1);
  cr_assert_eq(v.n, 3);
  vocab_free(&v);
}

Test(data, unknown_char)
{
  Vocab v = build(VOCAB_CHAR, "abc", 1);
  int32_t *ids = NULL;
  size_t n;
  char err[256];
  cr_assert_eq(vocab_encode(&v, "valid.txt", "ab\xc3\xa9", 4, &ids, &n, NULL, err, sizeof err), RNNC_EINPUT);
  cr_assert_str_eq(err, "valid.txt: character U+00E9 at byte 2 is not in the vocabulary");
  cr_assert_null(ids);
  vocab_free(&v);
}

/* ---- files ---- */

Test(data, missing_and_empty_files)
{
  char *text;
  size_t len;
  char err[512], want[512];
  const char *p = tmp_path("missing.txt");
  cr_assert_eq(data_read_file(p, &text, &len, err, sizeof err), RNNC_EIO);
  snprintf(want, sizeof want, "cannot open '%s': No such file or directory", p);
  cr_assert_str_eq(err, want);
  cr_assert_null(text);
  p = tmp_path("empty.txt");
  write_bytes(p, "", 0);
  cr_assert_eq(data_read_file(p, &text, &len, err, sizeof err), RNNC_EINPUT);
  snprintf(want, sizeof want, "'%s' is empty", p);
  cr_assert_str_eq(err, want);
  p = tmp_path("empty.gz"); /* empty once decompressed */
  write_gz(p, "", 0);
  cr_assert_eq(data_read_file(p, &text, &len, err, sizeof err), RNNC_EINPUT);
  snprintf(want, sizeof want, "'%s' is empty", p);
  cr_assert_str_eq(err, want);
  cr_assert_eq(data_read_file(tmp_dir(), &text, &len, err, sizeof err), RNNC_EIO);
  snprintf(want, sizeof want, "cannot read '%s': Is a directory", tmp_dir());
  cr_assert_str_eq(err, want);
}

Test(data, gzip_and_plain)
{
  size_t n = 300000;
  char *big = malloc(n);
  for (size_t i = 0; i < n; i++)
    big[i] = (char)('a' + (i * 7 + i / 13) % 26);
  const char *pg = tmp_path("t.txt.gz"), *pp = tmp_path("t.txt");
  write_gz(pg, big, n);
  write_bytes(pp, big, n);
  struct stat sb;
  cr_assert_eq(stat(pg, &sb), 0);
  cr_assert_lt((size_t)sb.st_size, n / 4); /* really compressed */
  const char *paths[2] = {pg, pp};
  for (int i = 0; i < 2; i++) {
    char *text, err[512] = "";
    size_t len;
    cr_assert_eq(data_read_file(paths[i], &text, &len, err, sizeof err), RNNC_OK, "%s", err);
    cr_assert_eq(len, n);
    cr_assert_eq(memcmp(text, big, n), 0);
    cr_assert_eq(text[n], 0);
    free(text);
  }
  /* a truncated gzip file is an error, not a short text */
  FILE *f = fopen(pg, "rb");
  unsigned char *gz = malloc((size_t)sb.st_size);
  cr_assert_eq(fread(gz, 1, (size_t)sb.st_size, f), (size_t)sb.st_size);
  fclose(f);
  const char *pt = tmp_path("cut.gz");
  write_bytes(pt, gz, (size_t)sb.st_size / 2);
  char *text, err[512], want[512];
  size_t len;
  cr_assert_eq(data_read_file(pt, &text, &len, err, sizeof err), RNNC_EFORMAT);
  snprintf(want, sizeof want, "'%s': bad gzip data: unexpected end of file", pt);
  cr_assert_str_eq(err, want);
  /* corrupt deflate data too */
  for (long i = 20; i < sb.st_size - 8; i++)
    gz[i] ^= 0x55;
  write_bytes(pt, gz, (size_t)sb.st_size);
  cr_assert_eq(data_read_file(pt, &text, &len, err, sizeof err), RNNC_EFORMAT);
  snprintf(want, sizeof want, "'%s': bad gzip data: ", pt);
  cr_assert_eq(strncmp(err, want, strlen(want)), 0, "%s", err);
  cr_assert_gt(strlen(err), strlen(want));
  free(gz);
  free(big);
}

Test(data, fortunes_char_level)
{
  const char *p = "/usr/share/games/fortunes/fortunes";
  if (access(p, R_OK) != 0)
    cr_skip_test("fortunes is not installed (Debian fortunes)");
  char *text, err[512] = "";
  size_t len;
  cr_assert_eq(data_read_file(p, &text, &len, err, sizeof err), RNNC_OK, "%s", err);
  Vocab v;
  cr_assert_eq(vocab_build(&v, VOCAB_CHAR, p, text, len, 1, err, sizeof err), RNNC_OK, "%s", err);
  cr_assert_gt(v.n, 60);
  cr_assert_geq(vocab_lookup(&v, "\n", 1), 0);
  cr_assert_geq(vocab_lookup(&v, "%", 1), 0); /* the separator of fortunes */
  roundtrip(&v, text, len);
  vocab_free(&v);
  free(text);
}

/* ---- text data sets and splits ---- */

Test(data, too_short_for_a_batch)
{
  char text[301];
  memset(text, 'x', 300);
  text[300] = 0;
  const char *p = tmp_path("short.txt");
  write_bytes(p, text, 300);
  char *t, err[256];
  size_t len;
  cr_assert_eq(data_read_file(p, &t, &len, err, sizeof err), RNNC_OK);
  Vocab v = build(VOCAB_BYTE, t, 1);
  Dataset d;
  cr_assert_eq(dataset_text(&d, DS_STREAM, &v, p, t, len, err, sizeof err), RNNC_OK);
  cr_assert_eq(d.nids, 300);
  Batcher bt;
  cr_assert_eq(batcher_init(&bt, &d, 64, 32, 1, 1, err, sizeof err), RNNC_EINPUT);
  cr_assert_str_eq(err, "300 tokens, fewer than B*T+1 = 2049");
  cr_assert_eq(batcher_init(&bt, &d, 0, 32, 1, 1, err, sizeof err), RNNC_EINPUT);
  cr_assert_str_eq(err, "batch size and sequence length must be >= 1, got B = 32, T = 0");
  /* exactly B*T+1 tokens: one batch */
  cr_assert_eq(batcher_init(&bt, &d, 23, 13, 1, 1, err, sizeof err), RNNC_OK, "%s", err); /* 13*23+1 = 300 */
  cr_assert_eq(bt.nbatch, 1);
  batcher_free(&bt);
  dataset_free(&d);
  vocab_free(&v);
  free(t);
}

Test(data, lines_dataset)
{
  const char *text = "abc\n\nde\r\nf\n\xc3\xa9x";
  Vocab v = build(VOCAB_CHAR, text, 1);
  Dataset d;
  char err[256];
  cr_assert_eq(dataset_text(&d, DS_LINES, &v, "t.txt", text, strlen(text), err, sizeof err), RNNC_OK, "%s",
               err);
  cr_assert_eq(d.nseq, 4);
  static const size_t off[] = {0, 3, 5, 6, 8};
  cr_assert_arr_eq(d.off, off, sizeof off);
  cr_assert_eq(d.nids, 8);
  cr_assert_eq(d.ids[5], vocab_lookup(&v, "f", 1));
  cr_assert_eq(d.ids[6], vocab_lookup(&v, "\xc3\xa9", 2));
  dataset_free(&d);
  /* an error on a later line names its offset in the file */
  cr_assert_eq(dataset_text(&d, DS_LINES, &v, "t.txt", "ab\ncq\n", 6, err, sizeof err), RNNC_EINPUT);
  cr_assert_str_eq(err, "t.txt: character U+0071 at byte 4 is not in the vocabulary");
  cr_assert_eq(dataset_text(&d, DS_LINES, &v, "t.txt", "\n\r\n\n", 4, err, sizeof err), RNNC_EINPUT);
  cr_assert_str_eq(err, "t.txt: no line has a token");
  vocab_free(&v);
  v = build(VOCAB_WORD, "a b", 1);
  cr_assert_eq(dataset_text(&d, DS_STREAM, &v, "t.txt", " \n ", 3, err, sizeof err), RNNC_EINPUT);
  cr_assert_str_eq(err, "t.txt: no tokens");
  vocab_free(&v);
}

static Dataset stream_of(size_t n)
{
  Dataset d = {.kind = DS_STREAM, .nids = n};
  d.ids = malloc(n * sizeof *d.ids);
  for (size_t i = 0; i < n; i++)
    d.ids[i] = (int32_t)i;
  return d;
}

static Dataset lines_of(size_t nseq)
{
  Dataset d = {.kind = DS_LINES, .nseq = nseq};
  d.off = malloc((nseq + 1) * sizeof *d.off);
  d.off[0] = 0;
  for (size_t i = 0; i < nseq; i++)
    d.off[i + 1] = d.off[i] + 1 + i % 7; /* lengths 1 .. 7 */
  d.nids = d.off[nseq];
  d.ids = malloc(d.nids * sizeof *d.ids);
  for (size_t i = 0; i < nseq; i++)
    for (size_t k = d.off[i]; k < d.off[i + 1]; k++)
      d.ids[k] = (int32_t)(1000 * i + (k - d.off[i])); /* sequence i, position k */
  return d;
}

Test(data, split)
{
  Dataset all = stream_of(100), tr, va;
  char err[256];
  cr_assert_eq(dataset_split(&all, 0.1, 7, &tr, &va, err, sizeof err), RNNC_OK);
  cr_assert_eq(tr.nids, 90);
  cr_assert_eq(va.nids, 10);
  cr_assert_eq(tr.ids[89], 89);
  cr_assert_eq(va.ids[0], 90);
  dataset_free(&tr);
  dataset_free(&va);
  cr_assert_eq(dataset_split(&all, 0.01, 7, &tr, &va, err, sizeof err), RNNC_EINPUT);
  cr_assert_str_eq(err, "cannot split 100 tokens with validation fraction 0.01: 99 for training, 1 for "
                        "validation (each needs at least 2)");
  cr_assert_eq(dataset_split(&all, 1, 7, &tr, &va, err, sizeof err), RNNC_EINPUT);
  cr_assert_str_eq(err, "the validation fraction must be between 0 and 1, got 1");
  dataset_free(&all);

  all = lines_of(50);
  Dataset tr2, va2;
  cr_assert_eq(dataset_split(&all, 0.2, 7, &tr, &va, err, sizeof err), RNNC_OK);
  cr_assert_eq(dataset_split(&all, 0.2, 7, &tr2, &va2, err, sizeof err), RNNC_OK);
  cr_assert_eq(tr.nseq, 40);
  cr_assert_eq(va.nseq, 10);
  cr_assert_eq(tr.nids + va.nids, all.nids);
  cr_assert_arr_eq(va.ids, va2.ids, va.nids * sizeof *va.ids); /* seeded */
  /* every sequence lands in one part, whole, in file order */
  int seen[50] = {0};
  const Dataset *part[2] = {&tr, &va};
  for (int p = 0; p < 2; p++)
    for (size_t i = 0; i < part[p]->nseq; i++) {
      int s = part[p]->ids[part[p]->off[i]] / 1000;
      seen[s]++;
      cr_assert_eq(part[p]->off[i + 1] - part[p]->off[i], all.off[s + 1] - all.off[s]);
      if (i > 0)
        cr_assert_gt(s, part[p]->ids[part[p]->off[i - 1]] / 1000);
    }
  for (int s = 0; s < 50; s++)
    cr_assert_eq(seen[s], 1);
  int contiguous = 1; /* a shuffle, not the last 10 */
  for (size_t i = 0; i < 10; i++)
    contiguous &= va.ids[va.off[i]] / 1000 == (int)(40 + i);
  cr_assert_not(contiguous);
  dataset_free(&tr2);
  dataset_free(&va2);
  cr_assert_eq(dataset_split(&all, 0.2, 8, &tr2, &va2, err, sizeof err), RNNC_OK);
  cr_assert(va.nids != va2.nids || memcmp(va.ids, va2.ids, va.nids * sizeof *va.ids) != 0);
  dataset_free(&tr2);
  dataset_free(&va2);
  dataset_free(&tr);
  dataset_free(&va);
  cr_assert_eq(dataset_split(&all, 0.001, 7, &tr, &va, err, sizeof err), RNNC_EINPUT);
  cr_assert_str_eq(err, "cannot split 50 sequences with validation fraction 0.001: 50 for training, 0 for "
                        "validation (each needs at least 1)");
  dataset_free(&all);
}

/* ---- batches ---- */

/* batcher_whole: every target of the stream scored once, but the last
 * (nids - 1) % B; a last chunk of fewer steps; fewer than T steps in all. */
Test(data, stream_batches_whole)
{
  Dataset d = stream_of(1000);
  Batcher bt;
  char err[256];
  int T = 7, B = 4;
  cr_assert_eq(batcher_whole(&bt, &d, T, B, err, sizeof err), RNNC_OK, "%s", err);
  cr_assert_eq(bt.span, 249); /* 999 / 4: 3 targets left over */
  cr_assert_eq(bt.nbatch, 36);
  cr_assert_eq(bt.tail, 4); /* 249 = 35 * 7 + 4 */
  char *seen = calloc(1000, 1);
  for (int64_t k = 0; k < 36; k++) {
    const Batch *b = batcher_next(&bt);
    cr_assert_eq(b->T, k < 35 ? 7 : 4);
    cr_assert_eq(b->ntarget, (int64_t)b->T * B);
    cr_assert_eq(b->reset, k == 0);
    for (int t = 0; t < b->T; t++)
      for (int r = 0; r < B; r++) {
        cr_assert_eq(b->tokens[t * B + r], r * 249 + k * T + t, "k %ld t %d b %d", (long)k, t, r);
        cr_assert_eq(b->targets[t * B + r], b->tokens[t * B + r] + 1);
        cr_assert_eq(seen[b->targets[t * B + r]]++, 0, "target %d twice", b->targets[t * B + r]);
      }
  }
  int scored = 0;
  for (int i = 0; i < 1000; i++)
    scored += seen[i];
  cr_assert_eq(scored, 996);
  cr_assert_eq(seen[0] + seen[997] + seen[998] + seen[999], 0);
  const Batch *b = batcher_next(&bt); /* the next pass starts over with T steps */
  cr_assert_eq(b->T, 7);
  cr_assert_eq(b->tokens[0], 0);
  batcher_free(&bt);
  free(seen);

  /* 999 targets in 4 parts of 249: T = 300 gives one chunk of 249 */
  cr_assert_eq(batcher_whole(&bt, &d, 300, B, err, sizeof err), RNNC_OK, "%s", err);
  cr_assert_eq(bt.nbatch, 1);
  cr_assert_eq(bt.tail, 249);
  cr_assert_eq(batcher_next(&bt)->T, 249);
  batcher_free(&bt);
  /* T divides the parts: no tail */
  cr_assert_eq(batcher_whole(&bt, &d, 83, 12, err, sizeof err), RNNC_OK, "%s", err);
  cr_assert_eq(bt.span, 83);
  cr_assert_eq(bt.nbatch, 1);
  cr_assert_eq(bt.tail, 0);
  batcher_free(&bt);
  dataset_free(&d);

  Dataset s = stream_of(5);
  cr_assert_eq(batcher_whole(&bt, &s, 2, 4, err, sizeof err), RNNC_OK, "%s", err);
  batcher_free(&bt);
  cr_assert_eq(batcher_whole(&bt, &s, 2, 5, err, sizeof err), RNNC_EINPUT);
  cr_assert_str_eq(err, "5 tokens, fewer than B+1 = 6");
  cr_assert_eq(batcher_whole(&bt, &s, 0, 2, err, sizeof err), RNNC_EINPUT);
  cr_assert_str_eq(err, "batch size and sequence length must be >= 1, got B = 2, T = 0");
  dataset_free(&s);
}

Test(data, stream_batches)
{
  Dataset d = stream_of(1000);
  Batcher bt;
  char err[256];
  int T = 7, B = 4;
  cr_assert_eq(batcher_init(&bt, &d, T, B, 0, 1, err, sizeof err), RNNC_OK);
  cr_assert_eq(bt.nbatch, 35); /* 999 / 4 / 7 */
  cr_assert_null(bt.b.mask);
  int64_t L = 35 * 7;
  for (int epoch = 0; epoch < 2; epoch++)
    for (int64_t k = 0; k < 35; k++) {
      const Batch *b = batcher_next(&bt);
      cr_assert_eq(bt.epoch, epoch);
      cr_assert_eq(bt.pos, k + 1);
      cr_assert_eq(b->reset, k == 0);
      cr_assert_eq(b->ntarget, T * B);
      for (int t = 0; t < T; t++)
        for (int r = 0; r < B; r++) {
          cr_assert_eq(b->tokens[t * B + r], r * L + k * T + t, "k %ld t %d b %d", (long)k, t, r);
          cr_assert_eq(b->targets[t * B + r], b->tokens[t * B + r] + 1);
        }
    }
  batcher_free(&bt);

  /* shuffled: a seeded offset per epoch; within an epoch each chunk
   * continues the previous one's part */
  cr_assert_eq(batcher_init(&bt, &d, T, B, 1, 5, err, sizeof err), RNNC_OK);
  int32_t last[4];
  int offsets[7] = {0}, distinct = 0;
  for (int64_t i = 0; i < 35 * 40; i++) {
    const Batch *b = batcher_next(&bt);
    int64_t k = bt.pos - 1;
    cr_assert_eq(b->reset, k == 0);
    for (int r = 0; r < B; r++) {
      if (k > 0)
        cr_assert_eq(b->tokens[r], last[r], "state continuity at chunk %ld part %d", (long)k, r);
      else
        cr_assert_eq(b->tokens[r], bt.offset + r * L);
      for (int t = 0; t < T; t++)
        cr_assert_eq(b->targets[t * B + r], b->tokens[t * B + r] + 1);
      last[r] = b->targets[(T - 1) * B + r];
    }
    if (k == 0) {
      cr_assert(bt.offset >= 0 && bt.offset < T); /* slack 19: [0, 6] */
      distinct += offsets[bt.offset]++ == 0;
    }
  }
  cr_assert_eq(bt.epoch, 39);
  cr_assert_eq(distinct, 7);
  batcher_free(&bt);
  dataset_free(&d);
}

Test(data, lines_batches)
{
  const char *text = "abc\nde\nf\nghijkl\n";
  Vocab v = build(VOCAB_CHAR, text, 1); /* \n a b ... l: a = 1 */
  Dataset d;
  char err[256];
  cr_assert_eq(dataset_text(&d, DS_LINES, &v, "t.txt", text, strlen(text), err, sizeof err), RNNC_OK);
  Batcher bt;
  cr_assert_eq(batcher_init(&bt, &d, 3, 3, 0, 1, err, sizeof err), RNNC_OK);
  cr_assert_eq(bt.nbatch, 2);
  /* [T=3, B=3]: rows abc (2 steps), de (1), f (0) */
  const Batch *b = batcher_next(&bt);
  static const int32_t tok0[] = {1, 4, 0, 2, 0, 0, 0, 0, 0};
  static const int32_t tgt0[] = {2, 5, -1, 3, -1, -1, -1, -1, -1};
  static const float m0[] = {1, 1, 0, 1, 0, 0, 0, 0, 0};
  cr_assert_arr_eq(b->tokens, tok0, sizeof tok0);
  cr_assert_arr_eq(b->targets, tgt0, sizeof tgt0);
  cr_assert_arr_eq(b->mask, m0, sizeof m0);
  cr_assert_eq(b->ntarget, 3);
  cr_assert_eq(b->reset, 1);
  /* ghijkl cut to T = 3 steps; two padding rows */
  b = batcher_next(&bt);
  static const int32_t tok1[] = {7, 0, 0, 8, 0, 0, 9, 0, 0};
  static const int32_t tgt1[] = {8, -1, -1, 9, -1, -1, 10, -1, -1};
  static const float m1[] = {1, 0, 0, 1, 0, 0, 1, 0, 0};
  cr_assert_arr_eq(b->tokens, tok1, sizeof tok1);
  cr_assert_arr_eq(b->targets, tgt1, sizeof tgt1);
  cr_assert_arr_eq(b->mask, m1, sizeof m1);
  cr_assert_eq(b->ntarget, 3);
  b = batcher_next(&bt);
  cr_assert_eq(bt.epoch, 1);
  cr_assert_arr_eq(b->tokens, tok0, sizeof tok0);
  batcher_free(&bt);
  dataset_free(&d);
  vocab_free(&v);
}

/* The first sequence of each row of every batch of an epoch, as one order. */
static void epoch_order(Batcher *bt, size_t *order)
{
  size_t n = 0;
  for (int64_t k = 0; k < bt->nbatch; k++) {
    const Batch *b = batcher_next(bt);
    for (int r = 0; r < b->B; r++)
      if (b->targets[r] >= 0)
        order[n++] = (size_t)(b->tokens[r] / 1000);
  }
}

Test(data, lines_shuffle_seeded)
{
  Dataset d = lines_of(64); /* the 10 sequences of 1 token have no step: 54 counted */
  Batcher a, b;
  char err[256];
  size_t oa[64], ob[64], oa1[64], plain[64];
  cr_assert_eq(batcher_init(&a, &d, 8, 5, 1, 42, err, sizeof err), RNNC_OK);
  cr_assert_eq(batcher_init(&b, &d, 8, 5, 1, 42, err, sizeof err), RNNC_OK);
  epoch_order(&a, oa);
  epoch_order(&b, ob);
  cr_assert_arr_eq(oa, ob, 54 * sizeof *oa); /* same seed, same order */
  epoch_order(&a, oa1);
  cr_assert_neq(memcmp(oa, oa1, 54 * sizeof *oa), 0); /* another epoch, another order */
  batcher_free(&b);
  cr_assert_eq(batcher_init(&b, &d, 8, 5, 1, 43, err, sizeof err), RNNC_OK);
  epoch_order(&b, ob);
  cr_assert_neq(memcmp(oa, ob, 54 * sizeof *oa), 0); /* another seed, another order */
  int seen[64] = {0};
  for (int i = 0; i < 64; i++)
    seen[a.perm[i]]++;
  for (int i = 0; i < 64; i++)
    cr_assert_eq(seen[i], 1);
  batcher_free(&b);
  cr_assert_eq(batcher_init(&b, &d, 8, 5, 0, 42, err, sizeof err), RNNC_OK);
  epoch_order(&b, plain);
  for (size_t i = 0, s = 0; i < 54; i++, s++) {
    while (s % 7 == 0) /* length 1: no step */
      s++;
    cr_assert_eq(plain[i], s);
  }
  batcher_free(&a);
  batcher_free(&b);
  dataset_free(&d);
}

/* Values per batch in a record: tokens and targets, or x and labels; reset. */
static int per_batch(const Batcher *bt)
{
  int tb = bt->T * bt->B;
  return bt->d->kind == DS_IDX ? tb * bt->d->feat + bt->B + 1 : 2 * tb + 1;
}

/* n batches of bt into a flat record, for comparison. */
static void record(Batcher *bt, int n, float *rec)
{
  int tb = bt->T * bt->B;
  for (int i = 0; i < n; i++) {
    const Batch *b = batcher_next(bt);
    if (b->tokens) {
      for (int k = 0; k < tb; k++)
        *rec++ = (float)b->tokens[k], *rec++ = (float)b->targets[k];
    } else {
      for (int k = 0; k < tb * bt->d->feat; k++)
        *rec++ = b->x[k];
      for (int r = 0; r < b->B; r++)
        *rec++ = (float)b->label[r];
    }
    *rec++ = (float)b->reset;
  }
}

static void check_resume(const Dataset *d, int T, int B)
{
  Batcher a, b;
  char err[256], pos[64];
  cr_assert_eq(batcher_init(&a, d, T, B, 1, 9, err, sizeof err), RNNC_OK, "%s", err);
  int n = 5, skip = (int)a.nbatch - 2, per = per_batch(&a);
  float *ra = malloc((size_t)(n * per) * sizeof *ra), *rb = malloc((size_t)(n * per) * sizeof *rb);
  for (int i = 0; i < skip; i++)
    batcher_next(&a);
  batcher_tell(&a, pos, sizeof pos);
  char want[64];
  snprintf(want, sizeof want, "0 %d", skip);
  cr_assert_str_eq(pos, want);
  record(&a, n, ra); /* over the epoch boundary */
  cr_assert_eq(a.epoch, 1);
  cr_assert_eq(batcher_init(&b, d, T, B, 1, 9, err, sizeof err), RNNC_OK);
  batcher_next(&b); /* a restored batcher forgets where it was */
  cr_assert_eq(batcher_seek(&b, pos, err, sizeof err), RNNC_OK, "%s", err);
  record(&b, n, rb);
  cr_assert_arr_eq(ra, rb, (size_t)(n * per) * sizeof *ra);
  batcher_tell(&b, pos, sizeof pos);
  snprintf(want, sizeof want, "1 %d", skip + n - (int)a.nbatch);
  cr_assert_str_eq(pos, want);
  /* at the end of an epoch: the next batch starts the next one */
  snprintf(pos, sizeof pos, "3 %ld", (long)a.nbatch);
  cr_assert_eq(batcher_seek(&b, pos, err, sizeof err), RNNC_OK);
  record(&b, 1, rb);
  cr_assert_eq(batcher_seek(&a, "4 0", err, sizeof err), RNNC_OK);
  record(&a, 1, ra);
  cr_assert_arr_eq(ra, rb, (size_t)per * sizeof *ra);
  cr_assert_eq(a.epoch, 4);
  cr_assert_eq(b.epoch, 4);
  free(ra);
  free(rb);
  batcher_free(&a);
  batcher_free(&b);
}

Test(data, resume_exact)
{
  Dataset s = stream_of(1000), l = lines_of(40);
  check_resume(&s, 7, 4);
  check_resume(&l, 5, 3);
  dataset_free(&s);
  dataset_free(&l);
  Dataset d = stream_of(100);
  Batcher bt;
  char err[256];
  cr_assert_eq(batcher_init(&bt, &d, 5, 2, 1, 1, err, sizeof err), RNNC_OK);
  static const char *bad[] = {"", "1", "1 x", "1 2 3", "-1 0", "x 1"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    cr_assert_eq(batcher_seek(&bt, bad[i], err, sizeof err), RNNC_EFORMAT);
    char want[128];
    snprintf(want, sizeof want, "data position '%s' is not 'EPOCH POS' (two integers >= 0)", bad[i]);
    cr_assert_str_eq(err, want);
  }
  cr_assert_eq(batcher_seek(&bt, "0 10", err, sizeof err), RNNC_EFORMAT);
  cr_assert_str_eq(err, "data position '0 10' is past the end of an epoch of 9 batches");
  batcher_free(&bt);
  dataset_free(&d);
}

/* ---- IDX ---- */

static void put32(unsigned char *p, uint32_t v)
{
  p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16), p[2] = (unsigned char)(v >> 8),
  p[3] = (unsigned char)v;
}

/* A synthetic IDX pair: n images of 3 x 4, pixel j of image i = 12 i + j,
 * label i % 3. Returns the sizes; buffers malloc'ed. */
static void make_idx(int n, unsigned char **img, size_t *ni, unsigned char **lab, size_t *nl)
{
  *ni = 16 + (size_t)n * 12;
  *img = malloc(*ni);
  put32(*img, 0x803), put32(*img + 4, (uint32_t)n), put32(*img + 8, 3), put32(*img + 12, 4);
  for (int i = 0; i < n * 12; i++)
    (*img)[16 + i] = (unsigned char)i;
  *nl = 8 + (size_t)n;
  *lab = malloc(*nl);
  put32(*lab, 0x801), put32(*lab + 4, (uint32_t)n);
  for (int i = 0; i < n; i++)
    (*lab)[8 + i] = (unsigned char)(i % 3);
}

Test(data, idx_synthetic)
{
  unsigned char *img, *lab;
  size_t ni, nl;
  make_idx(5, &img, &ni, &lab, &nl);
  write_bytes(tmp_path("i.idx"), img, ni);
  write_bytes(tmp_path("l.idx"), lab, nl);
  write_gz(tmp_path("i.idx.gz"), img, ni);
  write_gz(tmp_path("l.idx.gz"), lab, nl);
  for (int gz = 0; gz < 2; gz++) {
    Dataset d;
    char err[512] = "";
    cr_assert_eq(dataset_idx(&d, tmp_path(gz ? "i.idx.gz" : "i.idx"), tmp_path(gz ? "l.idx.gz" : "l.idx"), err,
                             sizeof err),
                 RNNC_OK, "%s", err);
    cr_assert_eq(d.kind, DS_IDX);
    cr_assert_eq(d.nseq, 5);
    cr_assert_eq(d.steps, 3);
    cr_assert_eq(d.feat, 4);
    cr_assert_eq(d.nclass, 3);
    for (int i = 0; i < 60; i++)
      cr_assert_float_eq(d.x[i], (float)i / 255.0f, 1e-7);
    cr_assert_eq(d.label[4], 1);
    /* batches [T=3, B=2, 4]: the last one padded */
    Batcher bt;
    cr_assert_eq(batcher_init(&bt, &d, 3, 2, 0, 1, err, sizeof err), RNNC_OK);
    cr_assert_eq(bt.nbatch, 3);
    batcher_next(&bt);
    const Batch *b = batcher_next(&bt);
    cr_assert_eq(b->label[0], 2);
    cr_assert_eq(b->label[1], 0);
    cr_assert_eq(b->ntarget, 2);
    cr_assert_float_eq(b->x[(1 * 2 + 1) * 4 + 2], (float)(3 * 12 + 4 + 2) / 255.0f, 1e-7); /* t 1, row 1 */
    b = batcher_next(&bt);
    cr_assert_eq(b->label[0], 1);
    cr_assert_eq(b->label[1], -1);
    cr_assert_eq(b->ntarget, 1);
    cr_assert_float_eq(b->x[(2 * 2 + 0) * 4 + 3], (float)(4 * 12 + 8 + 3) / 255.0f, 1e-7);
    cr_assert_float_eq(b->x[(2 * 2 + 1) * 4 + 3], 0.0f, 0);
    cr_assert_null(b->tokens);
    cr_assert_eq(b->reset, 1);
    batcher_free(&bt);
    cr_assert_eq(batcher_init(&bt, &d, 4, 2, 0, 1, err, sizeof err), RNNC_EINPUT);
    cr_assert_str_eq(err, "the examples have 3 steps, fewer than T = 4");
    check_resume(&d, 3, 2);
    dataset_free(&d);
  }
  free(img);
  free(lab);
}

/* dataset_idx on these bytes (images plain, labels gzip'ed) must fail with
 * RNNC_EFORMAT and "<path>: <msg>", path the images' (which 0) or the labels'. */
static void expect_idx_error(const void *img, size_t ni, const void *lab, size_t nl, int which, const char *msg)
{
  const char *pi = tmp_path("bi.idx"), *pl = tmp_path("bl.idx.gz");
  write_bytes(pi, img, ni);
  write_gz(pl, lab, nl);
  char err[512], want[512];
  Dataset d;
  cr_assert_eq(dataset_idx(&d, pi, pl, err, sizeof err), RNNC_EFORMAT, "%s", err);
  snprintf(want, sizeof want, "%s: %s", which ? pl : pi, msg);
  cr_assert_str_eq(err, want);
  cr_assert_null(d.x);
}

Test(data, idx_errors)
{
  unsigned char *img, *lab, *i4, *l4;
  size_t ni, nl, ni4, nl4;
  make_idx(5, &img, &ni, &lab, &nl);
  make_idx(4, &i4, &ni4, &l4, &nl4);
  expect_idx_error(img, ni, img, ni, 1, "bad magic 0x00000803, expected 0x00000801 (an IDX label file)");
  expect_idx_error(lab, nl, lab, nl, 0, "bad magic 0x00000801, expected 0x00000803 (an IDX image file)");
  expect_idx_error(img, 2, lab, nl, 0, "bad magic 0x00000000, expected 0x00000803 (an IDX image file)");
  expect_idx_error(img, 10, lab, nl, 0, "truncated header (10 bytes, an IDX image file has 16)");
  expect_idx_error(img, ni - 1, lab, nl, 0, "truncated: the header's dims need 60 data bytes, the file has 59");
  expect_idx_error(img, ni, l4, nl4 - 1, 1, "truncated: the header's dims need 4 data bytes, the file has 3");
  unsigned char *more = malloc(ni + 1);
  memcpy(more, img, ni);
  more[ni] = 0;
  expect_idx_error(more, ni + 1, lab, nl, 0, "size mismatch: the header's dims need 60 data bytes, the file has 61");
  /* a count mismatch names both files */
  write_bytes(tmp_path("bi.idx"), img, ni);
  write_bytes(tmp_path("bl.idx"), l4, nl4);
  char err[512], want[1024];
  Dataset d;
  cr_assert_eq(dataset_idx(&d, tmp_path("bi.idx"), tmp_path("bl.idx"), err, sizeof err), RNNC_EFORMAT);
  snprintf(want, sizeof want, "%s has 5 images but %s has 4 labels", tmp_path("bi.idx"), tmp_path("bl.idx"));
  cr_assert_str_eq(err, want);
  /* every truncation of the images file is refused (no crash, no leak under ASan) */
  for (size_t cut = 0; cut < ni; cut++) {
    write_bytes(tmp_path("bi.idx"), img, cut);
    int st = dataset_idx(&d, tmp_path("bi.idx"), tmp_path("bl.idx"), err, sizeof err);
    cr_assert_eq(st, cut == 0 ? RNNC_EINPUT : RNNC_EFORMAT, "cut %zu: %s", cut, err);
  }
  free(more);
  free(img);
  free(lab);
  free(i4);
  free(l4);
}

Test(data, fashion_mnist)
{
  const char *base = "/usr/share/datasets/fashion-mnist/";
  char ti[256], tl[256];
  snprintf(ti, sizeof ti, "%strain-images-idx3-ubyte.gz", base);
  snprintf(tl, sizeof tl, "%strain-labels-idx1-ubyte.gz", base);
  if (access(ti, R_OK) != 0 || access(tl, R_OK) != 0)
    cr_skip_test("Fashion-MNIST is not installed (Debian dataset-fashion-mnist)");
  Dataset d;
  char err[512] = "";
  cr_assert_eq(dataset_idx(&d, ti, tl, err, sizeof err), RNNC_OK, "%s", err);
  cr_assert_eq(d.nseq, 60000);
  cr_assert_eq(d.steps, 28);
  cr_assert_eq(d.feat, 28);
  cr_assert_eq(d.nclass, 10);
  cr_assert_eq(d.label[0], 9);
  long count[10] = {0};
  double sum = 0;
  for (size_t i = 0; i < d.nseq; i++)
    count[d.label[i]]++;
  for (size_t i = 0; i < 28 * 28; i++) {
    cr_assert(d.x[i] >= 0 && d.x[i] <= 1);
    sum += d.x[i];
  }
  for (int c = 0; c < 10; c++)
    cr_assert_eq(count[c], 6000); /* balanced classes */
  cr_assert_gt(sum, 10);
  dataset_free(&d);
  snprintf(ti, sizeof ti, "%st10k-images-idx3-ubyte.gz", base);
  cr_assert_eq(dataset_idx(&d, ti, tl, err, sizeof err), RNNC_EFORMAT);
  char want[600];
  snprintf(want, sizeof want, "%s has 10000 images but %s has 60000 labels", ti, tl);
  cr_assert_str_eq(err, want);
}

/* ---- labelled lines: classification and tagging (labeled.c) ---- */

static Classes classes_of(int lab, const char *text)
{
  Classes c;
  char err[256] = "";
  cr_assert_eq(classes_build(&c, lab, "t.txt", text, strlen(text), err, sizeof err), RNNC_OK, "%s", err);
  return c;
}

Test(data, classify_lines_parse_classes_labels)
{
  /* blank lines skipped, \r\n ends a line, the text keeps its tabs */
  const char *text = "pos\tab a\nneg\tb\n\r\n\nzz\tb\tc\r\npos\tcab\n";
  char *col;
  size_t ncol;
  char err[256] = "";
  cr_assert_eq(labeled_text(LAB_CLASS, "t.txt", text, strlen(text), &col, &ncol, err, sizeof err), RNNC_OK, "%s",
               err);
  cr_assert_str_eq(col, "ab a\nb\nb\tc\ncab\n");
  cr_assert_eq(ncol, strlen(col));
  Vocab v = build(VOCAB_CHAR, col, 1); /* \t \n space a b c */
  free(col);
  Classes c = classes_of(LAB_CLASS, text);
  cr_assert_eq(c.n, 3);
  cr_assert_str_eq(c.name[0], "neg");
  cr_assert_str_eq(c.name[1], "pos");
  cr_assert_str_eq(c.name[2], "zz");
  cr_assert_eq(classes_lookup(&c, "pos", 3), 1);
  cr_assert_eq(classes_lookup(&c, "po", 2), -1);
  cr_assert_eq(classes_lookup(&c, "zzz", 3), -1);
  char *json = classes_to_json(&c);
  cr_assert_str_eq(json, "[\"neg\",\"pos\",\"zz\"]");
  Classes c2;
  cr_assert_eq(classes_from_json(&c2, json, err, sizeof err), RNNC_OK, "%s", err);
  cr_assert_eq(c2.n, 3);
  cr_assert_str_eq(c2.name[2], "zz");
  classes_free(&c2);
  free(json);

  Dataset d;
  cr_assert_eq(dataset_labeled(&d, LAB_CLASS, &v, &c, "the training data's", "t.txt", text, strlen(text), err,
                               sizeof err),
               RNNC_OK, "%s", err);
  cr_assert_eq(d.kind, DS_LINES);
  cr_assert_eq(d.lab, LAB_CLASS);
  cr_assert_eq(d.nclass, 3);
  cr_assert_eq(d.nseq, 4);
  static const size_t off[] = {0, 4, 5, 8, 11};
  cr_assert_arr_eq(d.off, off, sizeof off);
  static const int32_t label[] = {1, 0, 2, 1};
  cr_assert_arr_eq(d.label, label, sizeof label);
  cr_assert_eq(d.ids[0], vocab_lookup(&v, "a", 1));
  cr_assert_eq(d.ids[2], vocab_lookup(&v, " ", 1));
  cr_assert_eq(d.ids[6], vocab_lookup(&v, "\t", 1));
  cr_assert_null(d.tag);

  /* batches: all of a line's tokens (no shift), its label, padding rows -1 */
  Batcher bt;
  cr_assert_eq(batcher_init(&bt, &d, 3, 3, 0, 1, err, sizeof err), RNNC_OK);
  cr_assert_eq(bt.nbatch, 2);
  const Batch *b = batcher_next(&bt);
  int a = vocab_lookup(&v, "a", 1), bb = vocab_lookup(&v, "b", 1), sp = vocab_lookup(&v, " ", 1),
      tab = vocab_lookup(&v, "\t", 1), cc = vocab_lookup(&v, "c", 1);
  /* rows: "ab a" cut to 3, "b", "b\tc" */
  const int32_t tok0[] = {a, bb, bb, bb, 0, tab, sp, 0, cc};
  static const float m0[] = {1, 1, 1, 1, 0, 1, 1, 0, 1};
  static const int32_t lab0[] = {1, 0, 2}, none[9] = {-1, -1, -1, -1, -1, -1, -1, -1, -1};
  cr_assert_arr_eq(b->tokens, tok0, sizeof tok0);
  cr_assert_arr_eq(b->mask, m0, sizeof m0);
  cr_assert_arr_eq(b->label, lab0, sizeof lab0);
  cr_assert_arr_eq(b->targets, none, sizeof none);
  cr_assert_eq(b->ntarget, 3);
  cr_assert_eq(b->reset, 1);
  b = batcher_next(&bt);
  const int32_t tok1[] = {cc, 0, 0, a, 0, 0, bb, 0, 0};
  static const float m1[] = {1, 0, 0, 1, 0, 0, 1, 0, 0};
  static const int32_t lab1[] = {1, -1, -1};
  cr_assert_arr_eq(b->tokens, tok1, sizeof tok1);
  cr_assert_arr_eq(b->mask, m1, sizeof m1);
  cr_assert_arr_eq(b->label, lab1, sizeof lab1);
  cr_assert_eq(b->ntarget, 1);
  batcher_free(&bt);

  /* the split keeps each line's label */
  Dataset tr, va;
  cr_assert_eq(dataset_split(&d, 0.5, 7, &tr, &va, err, sizeof err), RNNC_OK, "%s", err);
  cr_assert_eq(tr.nseq + va.nseq, 4);
  cr_assert_eq(tr.lab, LAB_CLASS);
  cr_assert_eq(va.nclass, 3);
  const Dataset *parts[] = {&tr, &va};
  int seen[4] = {0};
  for (int p = 0; p < 2; p++)
    for (size_t i = 0; i < parts[p]->nseq; i++) {
      size_t len = parts[p]->off[i + 1] - parts[p]->off[i];
      int orig = len == 1 ? 1 : parts[p]->ids[parts[p]->off[i]] == a ? 0 : parts[p]->ids[parts[p]->off[i]] == bb ? 2 : 3;
      seen[orig]++;
      cr_assert_eq(parts[p]->label[i], label[orig], "line %d", orig);
    }
  for (int i = 0; i < 4; i++)
    cr_assert_eq(seen[i], 1);
  dataset_free(&tr);
  dataset_free(&va);
  dataset_free(&d);
  classes_free(&c);
  vocab_free(&v);
}

Test(data, tagged_lines_tokens_tags_padding)
{
  /* blank lines (several, or spaces only) separate sentences */
  const char *text = "the\tDT\ndog\tNN\nran\tVB\n\n \n\na\tDT\ncat\tNN\n\nran\tVB\r\n";
  char *col;
  size_t ncol;
  char err[256] = "";
  cr_assert_eq(labeled_text(LAB_TAG, "t.txt", text, strlen(text), &col, &ncol, err, sizeof err), RNNC_OK, "%s",
               err);
  cr_assert_str_eq(col, "the\ndog\nran\na\ncat\nran\n");
  Vocab v = build(VOCAB_WORD, col, 2); /* <unk>, ran */
  free(col);
  cr_assert_eq(v.n, 2);
  Classes c = classes_of(LAB_TAG, text);
  cr_assert_eq(c.n, 3);
  cr_assert_str_eq(c.name[0], "DT");
  cr_assert_str_eq(c.name[1], "NN");
  cr_assert_str_eq(c.name[2], "VB");
  Dataset d;
  cr_assert_eq(dataset_labeled(&d, LAB_TAG, &v, &c, "the checkpoint's", "t.txt", text, strlen(text), err,
                               sizeof err),
               RNNC_OK, "%s", err);
  cr_assert_eq(d.nseq, 3);
  static const size_t off[] = {0, 3, 5, 6};
  cr_assert_arr_eq(d.off, off, sizeof off);
  static const int32_t ids[] = {0, 0, 1, 0, 0, 1}, tag[] = {0, 1, 2, 0, 1, 2};
  cr_assert_arr_eq(d.ids, ids, sizeof ids);
  cr_assert_arr_eq(d.tag, tag, sizeof tag);
  cr_assert_null(d.label);
  Batcher bt;
  cr_assert_eq(batcher_init(&bt, &d, 4, 2, 0, 1, err, sizeof err), RNNC_OK);
  const Batch *b = batcher_next(&bt);
  /* [T=4, B=2]: "the dog ran", "a cat" */
  static const int32_t tok0[] = {0, 0, 0, 0, 1, 0, 0, 0}, tgt0[] = {0, 0, 1, 1, 2, -1, -1, -1};
  static const float m0[] = {1, 1, 1, 1, 1, 0, 0, 0};
  cr_assert_arr_eq(b->tokens, tok0, sizeof tok0);
  cr_assert_arr_eq(b->targets, tgt0, sizeof tgt0);
  cr_assert_arr_eq(b->mask, m0, sizeof m0);
  cr_assert_eq(b->ntarget, 5);
  cr_assert_null(b->label);
  b = batcher_next(&bt);
  static const int32_t tgt1[] = {2, -1, -1, -1, -1, -1, -1, -1};
  cr_assert_arr_eq(b->targets, tgt1, sizeof tgt1);
  cr_assert_eq(b->ntarget, 1);
  batcher_free(&bt);
  dataset_free(&d);
  /* a character vocabulary cannot read tagged tokens */
  Vocab cv = build(VOCAB_CHAR, "abc", 1);
  cr_assert_eq(dataset_labeled(&d, LAB_TAG, &cv, &c, "the checkpoint's", "t.txt", text, strlen(text), err,
                               sizeof err),
               RNNC_EINPUT);
  cr_assert_str_eq(err, "t.txt: tagged data needs a word-level vocabulary");
  vocab_free(&cv);
  classes_free(&c);
  vocab_free(&v);
}

/* The message of a labelled text that does not load (lab, its classes from
 * "a\tx\nb\tx" / "w\ta\nw\tb"). */
static void expect_labeled_error(int lab, const char *text, const char *msg)
{
  char err[256] = "", *col = NULL;
  size_t ncol;
  Classes c;
  int st = labeled_text(lab, "t.txt", text, strlen(text), &col, &ncol, err, sizeof err);
  if (st == RNNC_OK) {
    free(col);
    Vocab v = build(lab == LAB_TAG ? VOCAB_WORD : VOCAB_CHAR, "x y", 1);
    c = classes_of(lab, lab == LAB_CLASS ? "a\tx\nb\tx" : "w\ta\nw\tb");
    Dataset d;
    st = dataset_labeled(&d, lab, &v, &c, "the checkpoint's", "t.txt", text, strlen(text), err, sizeof err);
    if (st == RNNC_OK)
      dataset_free(&d);
    classes_free(&c);
    vocab_free(&v);
  } else {
    cr_assert_eq(classes_build(&c, lab, "t.txt", text, strlen(text), err, sizeof err), st);
  }
  cr_assert_eq(st, RNNC_EINPUT, "'%s' loaded", text);
  cr_assert_str_eq(err, msg);
}

Test(data, labeled_errors)
{
  expect_labeled_error(LAB_CLASS, "a\tx\n\nb x\n", "t.txt: line 3: no tab between the label and the text");
  expect_labeled_error(LAB_CLASS, "a\tx\nb\t\r\n", "t.txt: line 2: empty text");
  expect_labeled_error(LAB_CLASS, "\tx\n", "t.txt: line 1: empty label");
  expect_labeled_error(LAB_CLASS, "a\tx\nb\tyq\n", "t.txt: line 2: character U+0071 at byte 1 is not in the vocabulary");
  expect_labeled_error(LAB_CLASS, "a\tx\nb\ty\nq\tx\n", "t.txt: line 3: class 'q' is not in the checkpoint's classes");
  expect_labeled_error(LAB_CLASS, "\n \n", "t.txt: no line holds an example (LABEL<TAB>TEXT)");
  expect_labeled_error(LAB_TAG, "x\ta\ny b\n", "t.txt: line 2: no tab between the token and the tag");
  expect_labeled_error(LAB_TAG, "x y\ta\n", "t.txt: line 1: token 'x y' has white space");
  expect_labeled_error(LAB_TAG, "x\ta\n\ty\n", "t.txt: line 2: empty token");
  expect_labeled_error(LAB_TAG, "x\t\n", "t.txt: line 1: empty tag");
  expect_labeled_error(LAB_TAG, "x\ta\n\ny\tc\n", "t.txt: line 3: class 'c' is not in the checkpoint's classes");
  char err[256];
  Classes c;
  cr_assert_eq(classes_from_json(&c, "[\"b\",\"a\"]", err, sizeof err), RNNC_EFORMAT);
  cr_assert_str_eq(err, "classes: 'b' and 'a' are not sorted and distinct");
  cr_assert_eq(classes_from_json(&c, "{}", err, sizeof err), RNNC_EFORMAT);
  cr_assert_str_eq(err, "classes: not a non-empty JSON array of strings");
  cr_assert_eq(classes_from_json(&c, "[\"a\",3]", err, sizeof err), RNNC_EFORMAT);
  cr_assert_str_eq(err, "classes: entry 1 is not a string");
  cr_assert_eq(classes_build(&c, LAB_CLASS, "t.txt", "\xff\tx\n", 4, err, sizeof err), RNNC_EINPUT);
  cr_assert_str_eq(err, "t.txt: line 1: the label is not valid UTF-8 text");
}

Test(data, labeled_resume_and_shuffle)
{
  /* 23 lines of 3 classes: seeded shuffle per epoch, exact resume */
  char text[2048] = "";
  for (int i = 0; i < 23; i++) {
    char line[64];
    snprintf(line, sizeof line, "c%d\t%.*s\n", i % 3, 1 + i % 5, "abcde");
    strcat(text, line);
  }
  Vocab v = build(VOCAB_CHAR, "abcde", 1);
  Classes c = classes_of(LAB_CLASS, text);
  Dataset d;
  char err[256];
  cr_assert_eq(dataset_labeled(&d, LAB_CLASS, &v, &c, "x", "t.txt", text, strlen(text), err, sizeof err), RNNC_OK,
               "%s", err);
  Batcher a, b;
  cr_assert_eq(batcher_init(&a, &d, 5, 4, 1, 9, err, sizeof err), RNNC_OK);
  cr_assert_eq(batcher_init(&b, &d, 5, 4, 1, 9, err, sizeof err), RNNC_OK);
  int count[3] = {0};
  int32_t rec[6][4];
  for (int k = 0; k < 6; k++) { /* one epoch: every line once */
    const Batch *x = batcher_next(&a);
    memcpy(rec[k], x->label, sizeof rec[k]);
    for (int r = 0; r < 4; r++)
      if (x->label[r] >= 0)
        count[x->label[r]]++;
  }
  cr_assert_eq(count[0], 8);
  cr_assert_eq(count[1], 8);
  cr_assert_eq(count[2], 7);
  static const int32_t pad[] = {-1};
  cr_assert_arr_eq(&rec[5][3], pad, sizeof pad); /* 23 = 5 * 4 + 3 */
  char pos[64];
  for (int k = 0; k < 3; k++)
    batcher_next(&a);
  batcher_tell(&a, pos, sizeof pos);
  cr_assert_str_eq(pos, "1 3");
  cr_assert_eq(batcher_seek(&b, pos, err, sizeof err), RNNC_OK);
  for (int k = 0; k < 8; k++) {
    const Batch *x = batcher_next(&a), *y = batcher_next(&b);
    cr_assert_arr_eq(x->label, y->label, 4 * sizeof *x->label);
    cr_assert_arr_eq(x->tokens, y->tokens, 20 * sizeof *x->tokens);
    cr_assert_arr_eq(x->mask, y->mask, 20 * sizeof *x->mask);
  }
  batcher_free(&a);
  batcher_free(&b);
  dataset_free(&d);
  classes_free(&c);
  vocab_free(&v);
}

Test(data, labeled_vocab_names_the_line)
{
  Vocab v;
  char err[256] = "";
  const char *text = "a\tok\nb\tfine\n\nc\tba\xff" "d\n";
  cr_assert_eq(labeled_vocab(&v, LAB_CLASS, VOCAB_CHAR, "t.txt", text, strlen(text), 1, err, sizeof err),
               RNNC_EINPUT);
  cr_assert_str_eq(err, "t.txt: line 4: invalid UTF-8 at byte 2 (invalid byte 0xff)");
  cr_assert_eq(labeled_vocab(&v, LAB_TAG, VOCAB_WORD, "t.txt", "x\ta\n\xc3\tb\n", 8, 1, err, sizeof err),
               RNNC_EINPUT);
  cr_assert_str_eq(err, "t.txt: line 2: invalid UTF-8 at byte 0 (truncated 2-byte sequence)");
  /* the texts only: labels are not tokens */
  cr_assert_eq(labeled_vocab(&v, LAB_CLASS, VOCAB_CHAR, "t.txt", "zz\tab\nyy\tba\n", 12, 1, err, sizeof err),
               RNNC_OK, "%s", err);
  cr_assert_eq(v.n, 3); /* \n a b */
  cr_assert_eq(vocab_lookup(&v, "z", 1), -1);
  vocab_free(&v);
  cr_assert_eq(labeled_vocab(&v, LAB_TAG, VOCAB_WORD, "t.txt", "the\tDT\ncat\tNN\n\nthe\tDT\n", 22, 2, err,
                             sizeof err),
               RNNC_OK, "%s", err);
  cr_assert_eq(v.n, 2); /* <unk> the */
  cr_assert_eq(vocab_lookup(&v, "the", 3), 1);
  vocab_free(&v);
}
