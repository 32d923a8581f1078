/* test_safetensors.c — safetensors read/write: round trips, byte-exact
 * compatibility with the reference implementation's own test vectors, every
 * refusal with its exact message, truncation and fuzzing (run under ASan). */
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

/* ---- helpers ---- */

static void setup(void) { tmpdir_make("st"); }

TestSuite(safetensors, .init = setup, .fini = tmpdir_remove);



static unsigned char *slurp(const char *path, size_t *n)
{
  FILE *f = fopen(path, "rb");
  cr_assert_not_null(f, "cannot open %s", path);
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *p = malloc(len ? (size_t)len : 1);
  cr_assert_eq(fread(p, 1, (size_t)len, f), (size_t)len);
  fclose(f);
  *n = (size_t)len;
  return p;
}

/* A file: 8-byte LE length of hdr (taken as is, no padding), hdr, data. */
typedef struct { unsigned char *p; size_t n; } Bytes;
static Bytes make_file(const char *hdr, const void *data, size_t ndata)
{
  size_t h = strlen(hdr);
  Bytes b = {malloc(8 + h + ndata + 1), 8 + h + ndata};
  for (int i = 0; i < 8; i++)
    b.p[i] = (unsigned char)((uint64_t)h >> (8 * i));
  memcpy(b.p + 8, hdr, h);
  if (ndata)
    memcpy(b.p + 8 + h, data, ndata);
  return b;
}

/* Reading bytes b from file name must fail with status and "<path>: msg". */
static void expect_refused_bytes(const char *name, Bytes b, int status, const char *msg)
{
  const char *path = tmp_path(name);
  write_bytes(path, b.p, b.n);
  TensorSet s;
  tset_init(&s);
  char err[512] = "";
  int st = safetensors_read(path, &s, err, sizeof err);
  char want[1024];
  snprintf(want, sizeof want, "%s: %s", path, msg);
  cr_assert_eq(st, status, "%s: status %d, want %d (%s)", name, st, status, err);
  cr_assert_str_eq(err, want);
  cr_assert_eq(s.n, 0);
  cr_assert_eq(s.nmeta, 0);
  tset_clear(&s);
}

static void expect_refused(const char *name, const char *hdr, size_t ndata, const char *msg)
{
  unsigned char data[256] = {0};
  cr_assert(ndata <= sizeof data);
  Bytes b = make_file(hdr, data, ndata);
  expect_refused_bytes(name, b, RNNC_EFORMAT, msg);
  free(b.p);
}

static int64_t dims_of(int rank, int64_t *d, int seed)
{
  int64_t n = 1;
  for (int i = 0; i < rank; i++) {
    d[i] = 1 + (seed + 3 * i) % 4;
    n *= d[i];
  }
  return n;
}

static void fill(Tensor *t, int seed)
{
  int64_t n = tensor_numel(t);
  for (int64_t i = 0; i < n; i++) {
    double v = (seed + 1) * 0.37 * (double)(i - n / 2) + (double)i / 7;
    switch (t->dtype) {
    case DT_F32: ((float *)t->data)[i] = (float)v; break;
    case DT_F64: ((double *)t->data)[i] = v; break;
    case DT_I32: ((int32_t *)t->data)[i] = (int32_t)(i * 1000003 - 7 * seed); break;
    case DT_I64: ((int64_t *)t->data)[i] = (int64_t)i * -123456789012345 + seed; break;
    }
  }
}

static void assert_same(const TensorSet *a, const TensorSet *b)
{
  cr_assert_eq(a->n, b->n);
  for (int i = 0; i < a->n; i++) {
    const Tensor *x = &a->t[i], *y = tset_find(b, x->name);
    cr_assert_not_null(y, "tensor %s missing", x->name);
    cr_assert_eq(x->dtype, y->dtype, "%s dtype", x->name);
    cr_assert_eq(x->rank, y->rank, "%s rank", x->name);
    for (int k = 0; k < x->rank; k++)
      cr_assert_eq(x->dim[k], y->dim[k], "%s dim %d", x->name, k);
    size_t bytes = (size_t)tensor_numel(x) * dtype_size(x->dtype);
    cr_assert_eq(memcmp(x->data, y->data, bytes), 0, "%s data", x->name);
  }
  cr_assert_eq(a->nmeta, b->nmeta);
  for (int i = 0; i < a->nmeta; i++) {
    const char *v = tset_getmeta(b, a->metakey[i]);
    cr_assert_not_null(v, "metadata %s missing", a->metakey[i]);
    cr_assert_str_eq(v, a->metaval[i]);
  }
}

static void roundtrip(const TensorSet *s, const char *name)
{
  char err[512] = "";
  const char *path = tmp_path(name);
  cr_assert_eq(safetensors_write(path, s, err, sizeof err), RNNC_OK, "%s", err);
  TensorSet r;
  tset_init(&r);
  cr_assert_eq(safetensors_read(path, &r, err, sizeof err), RNNC_OK, "%s", err);
  assert_same(s, &r);
  tset_clear(&r);
}

static const int alldt[] = {DT_F32, DT_F64, DT_I32, DT_I64};

/* ---- tensor sets ---- */

Test(safetensors, tset_add_replaces_and_meta)
{
  TensorSet s;
  tset_init(&s);
  int64_t d[2] = {2, 3};
  Tensor *a = tset_add(&s, "a", DT_F32, 2, d);
  cr_assert_not_null(a);
  cr_assert_eq(tensor_numel(a), 6);
  cr_assert_eq(((float *)a->data)[5], 0.0f);
  tset_add(&s, "b", DT_I64, 0, NULL);
  cr_assert_eq(tensor_numel(tset_find(&s, "b")), 1);
  int64_t e[1] = {4};
  Tensor *a2 = tset_add(&s, "a", DT_F64, 1, e);
  cr_assert_eq(s.n, 2);
  cr_assert_str_eq(s.t[0].name, "a");
  cr_assert_eq(a2->dtype, DT_F64);
  cr_assert_eq(a2->dim[0], 4);
  cr_assert_eq(tset_setmeta(&s, "k", "v1"), RNNC_OK);
  cr_assert_eq(tset_setmeta(&s, "k", "v2"), RNNC_OK);
  cr_assert_eq(s.nmeta, 1);
  cr_assert_str_eq(tset_getmeta(&s, "k"), "v2");
  cr_assert_null(tset_getmeta(&s, "x"));
  int64_t huge[2] = {INT64_C(1) << 40, INT64_C(1) << 40};
  cr_assert_null(tset_add(&s, "huge", DT_F32, 2, huge), "a 2^82-byte tensor is refused");
  cr_assert_eq(s.n, 2);
  cr_assert_str_eq(dtype_name(DT_I32), "I32");
  cr_assert_eq(dtype_size(DT_I64), 8);
  tset_clear(&s);
  cr_assert_eq(s.n, 0);
}

Test(safetensors, tset_move_replaces_same_names)
{
  TensorSet a, b;
  tset_init(&a);
  tset_init(&b);
  int64_t d[1] = {2};
  ((float *)tset_add(&a, "x", DT_F32, 1, d)->data)[0] = 1;
  tset_add(&a, "y", DT_F32, 1, d);
  ((float *)tset_add(&b, "x", DT_F32, 1, d)->data)[0] = 2;
  tset_add(&b, "z", DT_F32, 1, d);
  tset_setmeta(&a, "m", "1");
  tset_setmeta(&b, "m", "2");
  tset_setmeta(&b, "n", "3");
  cr_assert_eq(tset_move(&a, &b), RNNC_OK);
  cr_assert_eq(a.n, 3);
  cr_assert_eq(b.n, 0);
  cr_assert_eq(((float *)tset_find(&a, "x")->data)[0], 2.0f);
  cr_assert_str_eq(a.t[2].name, "z");
  cr_assert_eq(a.nmeta, 2);
  cr_assert_str_eq(tset_getmeta(&a, "m"), "2");
  cr_assert_str_eq(tset_getmeta(&a, "n"), "3");
  tset_clear(&a);
  tset_clear(&b);
}

/* ---- round trips ---- */

Test(safetensors, roundtrip_every_dtype_and_rank)
{
  TensorSet s;
  tset_init(&s);
  for (int k = 0; k < 4; k++)
    for (int rank = 0; rank <= 4; rank++) {
      int64_t d[4];
      dims_of(rank, d, k + rank);
      char name[32];
      snprintf(name, sizeof name, "t.%s.r%d", dtype_name(alldt[k]), rank);
      Tensor *t = tset_add(&s, name, alldt[k], rank, d);
      cr_assert_not_null(t);
      fill(t, k * 5 + rank);
    }
  /* values that must survive bit for bit */
  int64_t one[1] = {6};
  float *f = tset_add(&s, "special.f32", DT_F32, 1, one)->data;
  f[0] = -0.0f, f[1] = INFINITY, f[2] = -INFINITY, f[3] = NAN, f[4] = 1e-45f, f[5] = 3.4028235e38f;
  int64_t *i = tset_add(&s, "special.i64", DT_I64, 1, one)->data;
  i[0] = INT64_MIN, i[1] = INT64_MAX, i[2] = -1, i[3] = 0, i[4] = 1, i[5] = INT64_C(0x0102030405060708);
  roundtrip(&s, "dtypes.safetensors");
  tset_clear(&s);
}

Test(safetensors, roundtrip_empty_tensors_and_empty_file)
{
  TensorSet s;
  tset_init(&s);
  roundtrip(&s, "none.safetensors"); /* no tensors at all */
  int64_t d0[3] = {0, 3, 2}, d1[2] = {5, 0}, d2[1] = {0}, d3[1] = {3};
  tset_add(&s, "e0", DT_F32, 3, d0);
  tset_add(&s, "e1", DT_I64, 2, d1);
  fill(tset_add(&s, "full", DT_F32, 1, d3), 1);
  tset_add(&s, "e2", DT_F64, 1, d2);
  tset_add(&s, "e3", DT_I32, 1, d2);
  roundtrip(&s, "empty.safetensors");
  tset_clear(&s);
}

Test(safetensors, roundtrip_metadata)
{
  TensorSet s;
  tset_init(&s);
  tset_setmeta(&s, "format", "pt");
  tset_setmeta(&s, "empty", "");
  tset_setmeta(&s, "quotes \"and\" \\ back\nslash", "line1\nline2\ttab \xc3\xa9t\xc3\xa9");
  tset_setmeta(&s, "model", "charlm");
  int64_t d[1] = {2};
  fill(tset_add(&s, "w", DT_F32, 1, d), 3);
  roundtrip(&s, "meta.safetensors");
  tset_clear(&s);
}

Test(safetensors, roundtrip_many_tensors)
{
  TensorSet s;
  tset_init(&s);
  for (int k = 0; k < 300; k++) {
    int64_t d[4];
    int rank = k % 5;
    dims_of(rank, d, k);
    char name[32];
    snprintf(name, sizeof name, "layer%03d.%c", 299 - k, "WUbx"[k % 4]);
    fill(tset_add(&s, name, alldt[(k / 5) % 4], rank, d), k);
  }
  cr_assert_eq(s.n, 300);
  roundtrip(&s, "many.safetensors");
  tset_clear(&s);
}

Test(safetensors, read_replaces_same_names_in_a_nonempty_set)
{
  TensorSet s, r;
  tset_init(&s);
  tset_init(&r);
  int64_t d[1] = {2};
  ((float *)tset_add(&s, "a", DT_F32, 1, d)->data)[1] = 7;
  char err[512];
  cr_assert_eq(safetensors_write(tmp_path("a.safetensors"), &s, err, sizeof err), RNNC_OK);
  tset_add(&r, "a", DT_I32, 0, NULL);
  tset_add(&r, "keep", DT_I32, 0, NULL);
  cr_assert_eq(safetensors_read(tmp_path("a.safetensors"), &r, err, sizeof err), RNNC_OK, "%s", err);
  cr_assert_eq(r.n, 2);
  cr_assert_eq(tset_find(&r, "a")->dtype, DT_F32);
  cr_assert_eq(((float *)tset_find(&r, "a")->data)[1], 7.0f);
  cr_assert_not_null(tset_find(&r, "keep"));
  tset_clear(&s);
  tset_clear(&r);
}

/* ---- byte-exact compatibility ---- */

/* Our writer's bytes must equal expected (8-byte length, header, data). */
static void expect_written(const TensorSet *s, const char *name, const unsigned char *want,
                           size_t nwant)
{
  char err[512];
  const char *path = tmp_path(name);
  cr_assert_eq(safetensors_write(path, s, err, sizeof err), RNNC_OK, "%s", err);
  size_t n;
  unsigned char *got = slurp(path, &n);
  cr_assert_eq(n, nwant, "%s: %zu bytes, want %zu", name, n, nwant);
  cr_assert_eq(memcmp(got, want, n), 0, "%s: bytes differ; header %.*s", name, (int)(n - 8),
               (const char *)got + 8);
  free(got);
}

static const unsigned char f32_0to5[24] = {0, 0, 0, 0, 0, 0, 128, 63, 0, 0, 0, 64,
                                           0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64};

/* The reference implementation's tests (safetensors/src/tensor.rs):
 * test_serialization, test_empty, test_serialization_forced_alignement. */
Test(safetensors, writes_the_reference_bytes)
{
  TensorSet s;
  tset_init(&s);
  {
    /* {} padded with 6 spaces: N = 8 */
    static const unsigned char want[] = {8, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' ', ' ', ' ', ' ', ' '};
    expect_written(&s, "ref_empty.safetensors", want, sizeof want);
  }
  {
    tset_setmeta(&s, "framework", "pt");
    const char *h = "{\"__metadata__\":{\"framework\":\"pt\"}}     ";
    Bytes want = make_file(h, NULL, 0);
    cr_assert_eq(want.p[0], 40);
    expect_written(&s, "ref_meta.safetensors", want.p, want.n);
    free(want.p);
    tset_clear(&s);
  }
  {
    int64_t d[3] = {1, 2, 3};
    memcpy(tset_add(&s, "attn.0", DT_F32, 3, d)->data, f32_0to5, 24);
    /* exactly 64 bytes: no padding */
    Bytes want = make_file("{\"attn.0\":{\"dtype\":\"F32\",\"shape\":[1,2,3],\"data_offsets\":[0,24]}}",
                           f32_0to5, 24);
    cr_assert_eq(want.p[0], 64);
    expect_written(&s, "ref_attn.safetensors", want.p, want.n);
    free(want.p);
    tset_clear(&s);
  }
  {
    int64_t d[4] = {1, 1, 2, 3};
    memcpy(tset_add(&s, "attn0", DT_F32, 4, d)->data, f32_0to5, 24);
    Bytes want = make_file(
        "{\"attn0\":{\"dtype\":\"F32\",\"shape\":[1,1,2,3],\"data_offsets\":[0,24]}}       ",
        f32_0to5, 24);
    cr_assert_eq(want.p[0], 72);
    expect_written(&s, "ref_align.safetensors", want.p, want.n);
    free(want.p);
    tset_clear(&s);
  }
}

/* Ordering: __metadata__ first, then tensors widest dtype first (I64, F64,
 * F32, I32, the reference's order), then by name; the data in that order. */
Test(safetensors, writes_metadata_first_then_dtype_then_name)
{
  TensorSet s;
  tset_init(&s);
  int64_t d1[1] = {1}, d2[1] = {2};
  ((int32_t *)tset_add(&s, "a", DT_I32, 1, d1)->data)[0] = 0x11111111;
  ((float *)tset_add(&s, "z", DT_F32, 1, d1)->data)[0] = 1.0f;
  ((float *)tset_add(&s, "b", DT_F32, 1, d1)->data)[0] = 2.0f;
  ((int64_t *)tset_add(&s, "c", DT_I64, 1, d1)->data)[0] = 3;
  double *c = tset_add(&s, "d", DT_F64, 1, d2)->data;
  c[0] = 1.0, c[1] = -2.0;
  tset_setmeta(&s, "k", "v");
  const char *h = "{\"__metadata__\":{\"k\":\"v\"},"
                  "\"c\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]},"
                  "\"d\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[8,24]},"
                  "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[24,28]},"
                  "\"z\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[28,32]},"
                  "\"a\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[32,36]}}";
  size_t hl = strlen(h);
  cr_assert_eq(hl, 298); /* padded with 6 spaces to 304 */
  char padded[512];
  snprintf(padded, sizeof padded, "%s      ", h);
  static const unsigned char data[36] = {
      3, 0, 0, 0, 0, 0, 0, 0,                /* c = 3 */
      0, 0, 0, 0, 0, 0, 0xf0, 0x3f,          /* d = 1.0 */
      0, 0, 0, 0, 0, 0, 0, 0xc0,             /* -2.0 */
      0, 0, 0, 0x40,                         /* b = 2.0f */
      0, 0, 0x80, 0x3f,                      /* z = 1.0f */
      0x11, 0x11, 0x11, 0x11};               /* a */
  Bytes want = make_file(padded, data, sizeof data);
  expect_written(&s, "order.safetensors", want.p, want.n);
  free(want.p);
  tset_clear(&s);
}

/* Files written by hand as bytes, as other writers produce them. */
Test(safetensors, reads_known_files)
{
  /* the reference's doc example: unpadded 60-byte header, I32 [2, 2] zeros */
  {
    unsigned char zero[16] = {0};
    Bytes b = make_file("{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", zero, 16);
    cr_assert_eq(b.p[0], 60);
    const char *path = tmp_path("doc.safetensors");
    write_bytes(path, b.p, b.n);
    free(b.p);
    TensorSet s;
    tset_init(&s);
    char err[512];
    cr_assert_eq(safetensors_read(path, &s, err, sizeof err), RNNC_OK, "%s", err);
    cr_assert_eq(s.n, 1);
    cr_assert_str_eq(s.t[0].name, "test");
    cr_assert_eq(s.t[0].dtype, DT_I32);
    cr_assert_eq(s.t[0].rank, 2);
    cr_assert_eq(s.t[0].dim[0], 2);
    cr_assert_eq(((int32_t *)s.t[0].data)[3], 0);
    tset_clear(&s);
  }
  /* spaced JSON, keys in any order, offsets not in header order, scalar, metadata last */
  {
    unsigned char data[4 + 8 + 24];
    int32_t iv = -5;
    double dv[3] = {0.5, -1.25, 1e300};
    float fv = 3.5f;
    memcpy(data, &fv, 4);
    memcpy(data + 4, &iv, 4);
    memcpy(data + 8, &iv, 4);
    memcpy(data + 12, dv, 24);
    Bytes b = make_file("{ \"w\" : { \"data_offsets\" : [12, 36], \"shape\" : [3], \"dtype\" : \"F64\" },\n"
                        "  \"s\": {\"shape\": [], \"dtype\": \"F32\", \"data_offsets\": [0, 4]},\n"
                        "  \"i\": {\"dtype\": \"I32\", \"shape\": [2, 1], \"data_offsets\": [4, 12], \"extra\": 1},\n"
                        "  \"__metadata__\": {\"format\": \"pt\"} }\n   ",
                        data, sizeof data);
    const char *path = tmp_path("spaced.safetensors");
    write_bytes(path, b.p, b.n);
    free(b.p);
    TensorSet s;
    tset_init(&s);
    char err[512];
    cr_assert_eq(safetensors_read(path, &s, err, sizeof err), RNNC_OK, "%s", err);
    cr_assert_eq(s.n, 3);
    cr_assert_str_eq(s.t[0].name, "w"); /* header order */
    Tensor *w = tset_find(&s, "w"), *sc = tset_find(&s, "s"), *i = tset_find(&s, "i");
    cr_assert_eq(((double *)w->data)[1], -1.25);
    cr_assert_eq(((double *)w->data)[2], 1e300);
    cr_assert_eq(sc->rank, 0);
    cr_assert_eq(((float *)sc->data)[0], 3.5f);
    cr_assert_eq(((int32_t *)i->data)[1], -5);
    cr_assert_str_eq(tset_getmeta(&s, "format"), "pt");
    tset_clear(&s);
  }
}

/* ---- refusals, each with its exact message ---- */

Test(safetensors, refuses_short_files)
{
  Bytes b = {(unsigned char *)"\x10\0\0\0\0", 0};
  expect_refused_bytes("empty", b, RNNC_EFORMAT,
                       "file is 0 bytes, too short for the 8-byte header length");
  b.n = 5;
  expect_refused_bytes("five", b, RNNC_EFORMAT,
                       "file is 5 bytes, too short for the 8-byte header length");
}

Test(safetensors, refuses_header_length_past_end)
{
  unsigned char p[28] = {100};
  memcpy(p + 8, "{}                  ", 20);
  Bytes b = {p, sizeof p};
  expect_refused_bytes("pastend", b, RNNC_EFORMAT,
                       "header length 100 runs past the end of the file (20 bytes follow the "
                       "length)");
}

Test(safetensors, refuses_absurd_header_length)
{
  unsigned char p[16] = {0, 0, 0, 0, 0, 1, 0, 0, '{', '}'};
  Bytes b = {p, sizeof p};
  expect_refused_bytes("absurd", b, RNNC_EFORMAT,
                       "header length 1099511627776 is over the limit of 100000000 bytes");
  unsigned char q[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '{', '}'};
  b.p = q;
  expect_refused_bytes("absurd2", b, RNNC_EFORMAT,
                       "header length 18446744073709551615 is over the limit of 100000000 bytes");
}

Test(safetensors, refuses_bad_json)
{
  expect_refused("truncated_json", "{\"a\": {\"dtype\": ", 0,
                 "header is not valid JSON: line 1, column 16: unexpected token near end of file");
  expect_refused("trailing_comma", "{\"a\": 1,}", 0,
                 "header is not valid JSON: line 1, column 9: string or '}' expected near '}'");
  expect_refused("garbage_after", "{}x", 0,
                 "header is not valid JSON: line 1, column 3: end of file expected near 'x'");
  expect_refused("empty_header", "", 0,
                 "header is not valid JSON: line 1, column 0: unexpected token near end of file");
  expect_refused("bad_utf8", "{\"\xff\": 1}", 0,
                 "header is not valid JSON: line 1, column 2: unable to decode byte 0xff near '\"'");
  expect_refused("nul_byte", "{\"a\\u0000b\": 1}", 0,
                 "header is not valid JSON: line 1, column 11: NUL byte in object key not "
                 "supported near '\"a\\u0000b\"'");
  expect_refused("newline_in_token", "{\n\n  \"a\" 1}", 0,
                 "header is not valid JSON: line 3, column 7: ':' expected near '1'");
}

/* Nesting deep enough to overflow a naive recursive parser's stack. */
Test(safetensors, refuses_deep_nesting)
{
  enum { DEPTH = 200000 };
  char *h = malloc(2 * DEPTH + 3);
  h[0] = '{';
  h[1] = 0;
  strcat(h, "\"a\":");
  size_t n = strlen(h);
  memset(h + n, '[', DEPTH);
  h[n + DEPTH] = 0;
  Bytes b = make_file(h, NULL, 0);
  free(h);
  expect_refused_bytes("deep", b, RNNC_EFORMAT,
                       "header is not valid JSON: line 1, column 2053: maximum parsing depth "
                       "reached near '['");
  free(b.p);
}

Test(safetensors, refuses_duplicate_names)
{
  expect_refused("dup",
                 "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                 "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                 8, "header is not valid JSON: line 1, column 57: duplicate object key near '\"a\"'");
}

Test(safetensors, refuses_header_not_an_object)
{
  expect_refused("array", "[1, 2]", 0, "header is an array, not a JSON object");
  expect_refused("string", "\"x\"", 0, "header is a string, not a JSON object");
}

Test(safetensors, refuses_bad_entries)
{
  expect_refused("entry_int", "{\"a\": 3}", 0, "tensor \"a\": entry is an integer, not an object");
  expect_refused("no_dtype", "{\"a\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", 4,
                 "tensor \"a\": no \"dtype\"");
  expect_refused("dtype_int", "{\"a\": {\"dtype\": 4, \"shape\": [1], \"data_offsets\": [0, 4]}}", 4,
                 "tensor \"a\": \"dtype\" is an integer, not a string");
  expect_refused("bf16",
                 "{\"a\": {\"dtype\": \"BF16\", \"shape\": [2], \"data_offsets\": [0, 4]}}", 4,
                 "tensor \"a\": unsupported dtype \"BF16\" (rnnc reads F32, F64, I32, I64)");
  expect_refused("lower_f32",
                 "{\"a\": {\"dtype\": \"f32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4,
                 "tensor \"a\": unsupported dtype \"f32\" (rnnc reads F32, F64, I32, I64)");
  expect_refused("no_shape", "{\"a\": {\"dtype\": \"F32\", \"data_offsets\": [0, 4]}}", 4,
                 "tensor \"a\": no \"shape\"");
  expect_refused("shape_obj",
                 "{\"a\": {\"dtype\": \"F32\", \"shape\": {}, \"data_offsets\": [0, 4]}}", 4,
                 "tensor \"a\": \"shape\" is an object, not an array");
  expect_refused("shape_neg",
                 "{\"a\": {\"dtype\": \"F32\", \"shape\": [2, -1], \"data_offsets\": [0, 4]}}", 4,
                 "tensor \"a\": \"shape\" element 1 is not a non-negative integer");
  expect_refused("shape_real",
                 "{\"a\": {\"dtype\": \"F32\", \"shape\": [1.0], \"data_offsets\": [0, 4]}}", 4,
                 "tensor \"a\": \"shape\" element 0 is not a non-negative integer");
  expect_refused("rank5",
                 "{\"a\": {\"dtype\": \"F32\", \"shape\": [1,1,1,1,1], \"data_offsets\": [0, 4]}}", 4,
                 "tensor \"a\": rank 5 is over rnnc's limit of 4");
  expect_refused("no_offsets", "{\"a\": {\"dtype\": \"F32\", \"shape\": [1]}}", 4,
                 "tensor \"a\": no \"data_offsets\"");
  expect_refused("offsets_one",
                 "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4]}}", 4,
                 "tensor \"a\": \"data_offsets\" is not an array of two non-negative integers");
  expect_refused("offsets_neg",
                 "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [-4, 0]}}", 4,
                 "tensor \"a\": \"data_offsets\" is not an array of two non-negative integers");
  expect_refused("offsets_str",
                 "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": \"0-4\"}}", 4,
                 "tensor \"a\": \"data_offsets\" is not an array of two non-negative integers");
  expect_refused("offsets_reversed",
                 "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 0]}}", 4,
                 "tensor \"a\": data_offsets [4, 0] end before they begin");
}

Test(safetensors, refuses_offsets_out_of_range)
{
  expect_refused("range",
                 "{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}}", 8,
                 "tensor \"a\": data_offsets [0, 16] run past the end of the 8-byte data buffer");
  expect_refused("range_huge",
                 "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], "
                 "\"data_offsets\": [9223372036854775803, 9223372036854775807]}}",
                 8,
                 "tensor \"a\": data_offsets [9223372036854775803, 9223372036854775807] run past "
                 "the end of the 8-byte data buffer");
}

Test(safetensors, refuses_byte_count_mismatch)
{
  expect_refused("count",
                 "{\"a\": {\"dtype\": \"F32\", \"shape\": [2, 3], \"data_offsets\": [0, 20]}}", 20,
                 "tensor \"a\": F32 [2, 3] needs 24 bytes but data_offsets [0, 20] hold 20");
  expect_refused("count_f64",
                 "{\"a\": {\"dtype\": \"F64\", \"shape\": [], \"data_offsets\": [0, 4]}}", 4,
                 "tensor \"a\": F64 [] needs 8 bytes but data_offsets [0, 4] hold 4");
  expect_refused("count_overflow",
                 "{\"a\": {\"dtype\": \"I64\", \"shape\": [4294967296, 4294967296], "
                 "\"data_offsets\": [0, 8]}}",
                 8, "tensor \"a\": I64 [4294967296, 4294967296] is too large (more than 2^64 bytes)");
}

Test(safetensors, refuses_overlaps_gaps_and_trailing_bytes)
{
  expect_refused("overlap",
                 "{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]},"
                 " \"b\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [8, 24]}}",
                 24, "tensors \"a\" [0, 16] and \"b\" [8, 24] overlap");
  expect_refused("same_place",
                 "{\"b\": {\"dtype\": \"I32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
                 " \"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}",
                 8, "tensors \"b\" [0, 8] and \"a\" [0, 8] overlap");
  expect_refused("gap",
                 "{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]},"
                 " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [24, 32]}}",
                 32, "bytes [16, 24) of the data buffer belong to no tensor");
  expect_refused("leading_gap",
                 "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}", 8,
                 "bytes [0, 4) of the data buffer belong to no tensor");
  expect_refused("trailing",
                 "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 12,
                 "the tensors end at byte 8 of the 12-byte data buffer (4 trailing bytes)");
  expect_refused("no_tensors_but_data", "{}", 3,
                 "the tensors end at byte 0 of the 3-byte data buffer (3 trailing bytes)");
}

Test(safetensors, refuses_bad_metadata)
{
  expect_refused("meta_array", "{\"__metadata__\": [\"a\"]}", 0,
                 "\"__metadata__\" is an array, not an object");
  expect_refused("meta_int", "{\"__metadata__\": {\"epoch\": 3}}", 0,
                 "\"__metadata__\" entry \"epoch\" is an integer, not a string");
  expect_refused("meta_nested", "{\"__metadata__\": {\"a\": \"x\", \"b\": {}}}", 0,
                 "\"__metadata__\" entry \"b\" is an object, not a string");
}

/* Names in messages are cut and control characters shown as '?'. */
Test(safetensors, messages_stay_on_one_line)
{
  expect_refused("ctl", "{\"a\\nb\": 1}", 0, "tensor \"a?b\": entry is an integer, not an object");
  char hdr[512];
  snprintf(hdr, sizeof hdr, "{\"%0100d\": 1}", 7);
  char want[256];
  snprintf(want, sizeof want, "tensor \"%060d...\": entry is an integer, not an object", 0);
  expect_refused("long", hdr, 0, want);
}

Test(safetensors, refuses_missing_files_and_directories)
{
  TensorSet s;
  tset_init(&s);
  char err[512], want[600];
  const char *path = tmp_path("does-not-exist.safetensors");
  cr_assert_eq(safetensors_read(path, &s, err, sizeof err), RNNC_EIO);
  snprintf(want, sizeof want, "%s: cannot open: No such file or directory", path);
  cr_assert_str_eq(err, want);
  cr_assert_eq(safetensors_read(tmp_dir(), &s, err, sizeof err), RNNC_EIO);
  snprintf(want, sizeof want, "%s: is a directory", tmp_dir());
  cr_assert_str_eq(err, want);
  cr_assert_eq(s.n, 0);
}

/* A message buffer too small for the message is cut, never overrun. */
Test(safetensors, small_error_buffer)
{
  TensorSet s;
  tset_init(&s);
  char err[8] = "xxxxxxx";
  cr_assert_eq(safetensors_read("/no/such/file", &s, err, sizeof err), RNNC_EIO);
  cr_assert_str_eq(err, "/no/suc");
  cr_assert_eq(safetensors_read("/no/such/file", &s, NULL, 0), RNNC_EIO);
}

/* ---- robustness ---- */

/* A valid file of several dtypes and metadata, as bytes. */
static Bytes valid_file(void)
{
  TensorSet s;
  tset_init(&s);
  for (int k = 0; k < 4; k++) {
    int64_t d[4];
    dims_of(k % 3 + 1, d, k);
    char name[16];
    snprintf(name, sizeof name, "n%d.w", k);
    fill(tset_add(&s, name, alldt[k], k % 3 + 1, d), k);
  }
  tset_add(&s, "scalar", DT_F32, 0, NULL);
  tset_setmeta(&s, "format", "pt");
  char err[512];
  const char *path = tmp_path("valid.safetensors");
  cr_assert_eq(safetensors_write(path, &s, err, sizeof err), RNNC_OK, "%s", err);
  tset_clear(&s);
  Bytes b;
  b.p = slurp(path, &b.n);
  return b;
}

static int read_bytes(const char *path, const unsigned char *p, size_t n, char *err, size_t errlen)
{
  write_bytes(path, p, n);
  TensorSet s;
  tset_init(&s);
  int st = safetensors_read(path, &s, err, errlen);
  if (st != RNNC_OK)
    cr_assert_eq(s.n, 0);
  tset_clear(&s);
  return st;
}

Test(safetensors, truncation_at_every_byte_is_refused)
{
  Bytes b = valid_file();
  cr_assert_gt(b.n, 200);
  const char *path = tmp_path("trunc.safetensors");
  char err[512];
  for (size_t n = 0; n < b.n; n++) {
    int st = read_bytes(path, b.p, n, err, sizeof err);
    cr_assert_eq(st, RNNC_EFORMAT, "truncated to %zu of %zu bytes: status %d", n, b.n, st);
    cr_assert_eq(strncmp(err, path, strlen(path)), 0, "%s", err);
  }
  cr_assert_eq(read_bytes(path, b.p, b.n, err, sizeof err), RNNC_OK, "%s", err);
  free(b.p);
}

static uint64_t lcg(uint64_t *x)
{
  *x = *x * 6364136223846793005u + 1442695040888963407u;
  return *x >> 33;
}

/* Flip, overwrite or insert bytes of a valid file; then pure noise with a
 * plausible header length. Never a crash (ASan checks every access). */
Test(safetensors, fuzz_never_crashes)
{
  Bytes b = valid_file();
  const char *path = tmp_path("fuzz.safetensors");
  unsigned char *p = malloc(b.n + 64);
  uint64_t x = 12345;
  char err[512];
  int ok = 0, refused = 0;
  for (int it = 0; it < 3000; it++) {
    memcpy(p, b.p, b.n);
    size_t n = b.n;
    int edits = 1 + (int)(lcg(&x) % 4);
    for (int e = 0; e < edits; e++) {
      size_t at = lcg(&x) % n;
      switch (lcg(&x) % 4) {
      case 0: p[at] ^= (unsigned char)(1u << (lcg(&x) % 8)); break;
      case 1: p[at] = "{}[]\",:0123456789 -eE.\\"[lcg(&x) % 23]; break;
      case 2: p[at] = (unsigned char)lcg(&x); break;
      case 3: n = at; break; /* truncate */
      }
      if (n == 0)
        break;
    }
    int st = read_bytes(path, p, n, err, sizeof err);
    if (st == RNNC_OK)
      ok++;
    else {
      refused++;
      cr_assert(st == RNNC_EFORMAT || st == RNNC_EIO, "status %d", st);
      cr_assert_eq(strncmp(err, path, strlen(path)), 0, "%s", err);
      cr_assert_null(strchr(err, '\n'));
    }
  }
  for (int it = 0; it < 1000; it++) {
    size_t n = 8 + lcg(&x) % 200;
    unsigned char q[256];
    for (size_t i = 0; i < n; i++)
      q[i] = (unsigned char)lcg(&x);
    uint64_t h = lcg(&x) % (n + 4);
    for (int i = 0; i < 8; i++)
      q[i] = (unsigned char)(h >> (8 * i));
    if (n > 8 && it % 2)
      q[8] = '{';
    cr_assert_neq(read_bytes(path, q, n, err, sizeof err), RNNC_OK);
    refused++;
  }
  cr_assert_gt(refused, 3000, "ok %d refused %d", ok, refused);
  free(p);
  free(b.p);
}

/* ---- writing errors ---- */

static int count_entries(const char *d)
{
  DIR *dd = opendir(d);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(dd)))
    n += e->d_name[0] != '.';
  closedir(dd);
  return n;
}

Test(safetensors, write_to_unwritable_path)
{
  TensorSet s;
  tset_init(&s);
  tset_add(&s, "a", DT_F32, 0, NULL);
  char err[512], want[600];
  cr_assert_eq(safetensors_write("/nonexistent-rnnc-dir/x.safetensors", &s, err, sizeof err),
               RNNC_EIO);
  cr_assert_str_eq(err, "/nonexistent-rnnc-dir/x.safetensors: cannot write: No such file or directory");
  cr_assert_eq(safetensors_write("/dev/null/x.safetensors", &s, err, sizeof err), RNNC_EIO);
  cr_assert_str_eq(err, "/dev/null/x.safetensors: cannot write: Not a directory");
  /* renaming onto a directory fails after the data is written: the temporary
   * file is removed and nothing else is left behind */
  const char *sub = tmp_path("adir");
  cr_assert_eq(mkdir(sub, 0777), 0);
  int before = count_entries(tmp_dir());
  cr_assert_eq(safetensors_write(sub, &s, err, sizeof err), RNNC_EIO);
  snprintf(want, sizeof want, "%s: cannot write: Is a directory", sub);
  cr_assert_str_eq(err, want);
  cr_assert_eq(count_entries(tmp_dir()), before);
  tset_clear(&s);
}

Test(safetensors, write_refuses_unwritable_names)
{
  TensorSet s;
  tset_init(&s);
  char err[512], want[600];
  const char *path = tmp_path("names.safetensors");
  tset_add(&s, "__metadata__", DT_F32, 0, NULL);
  cr_assert_eq(safetensors_write(path, &s, err, sizeof err), RNNC_EFORMAT);
  snprintf(want, sizeof want, "%s: tensor name \"__metadata__\" is reserved by the format", path);
  cr_assert_str_eq(err, want);
  tset_clear(&s);
  tset_add(&s, "bad\xff", DT_F32, 0, NULL);
  cr_assert_eq(safetensors_write(path, &s, err, sizeof err), RNNC_EFORMAT);
  snprintf(want, sizeof want, "%s: tensor \"bad\xff\": name is not valid UTF-8", path);
  cr_assert_str_eq(err, want);
  tset_clear(&s);
  tset_setmeta(&s, "k", "v\xc3");
  cr_assert_eq(safetensors_write(path, &s, err, sizeof err), RNNC_EFORMAT);
  snprintf(want, sizeof want, "%s: metadata entry \"k\": key or value is not valid UTF-8", path);
  cr_assert_str_eq(err, want);
  cr_assert_eq(access(path, F_OK), -1, "no file written");
  tset_clear(&s);
}

/* Overwriting an existing file replaces it whole. */
Test(safetensors, overwrite_replaces_the_file)
{
  TensorSet s, r;
  tset_init(&s);
  tset_init(&r);
  int64_t big[1] = {1000}, small[1] = {1};
  tset_add(&s, "x", DT_F64, 1, big);
  char err[512];
  const char *path = tmp_path("over.safetensors");
  cr_assert_eq(safetensors_write(path, &s, err, sizeof err), RNNC_OK);
  tset_clear(&s);
  ((float *)tset_add(&s, "y", DT_F32, 1, small)->data)[0] = 4.0f;
  cr_assert_eq(safetensors_write(path, &s, err, sizeof err), RNNC_OK);
  cr_assert_eq(safetensors_read(path, &r, err, sizeof err), RNNC_OK, "%s", err);
  assert_same(&s, &r);
  cr_assert_eq(count_entries(tmp_dir()), 1);
  tset_clear(&s);
  tset_clear(&r);
}
