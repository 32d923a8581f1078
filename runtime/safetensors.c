/* safetensors.c — read and write safetensors files (F32, F64, I32, I64).
 *
 * File: u64 little-endian N, then N bytes of JSON header
 *   {"__metadata__": {"k": "v", ...},
 *    "name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...}
 * then the data buffer; offsets are relative to its start, data little-endian.
 *
 * require: nothing. produce: a TensorSet from a file, or a file from a set.
 * Reading trusts nothing in the file: every check is listed in docs/formats.md
 * and each failure is a one-line message "<path>: <problem>" in err. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ir.h"

enum { HEADER_MAX = 100000000 }; /* the reference implementation's limit */

/* Write "<path>: <message>" into err, with control characters (from names or
 * JSON text in the file) shown as '?' so the message stays on one line.
 * Returns status. */
static int fail(int status, char *err, size_t errlen, const char *path, const char *fmt, ...)
{
  if (!err || errlen == 0)
    return status;
  int n = snprintf(err, errlen, "%s: ", path);
  if (n >= 0 && (size_t)n < errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
    va_end(ap);
  }
  for (char *p = err; *p; p++)
    if ((unsigned char)*p < 0x20 || *p == 0x7f)
      *p = '?';
  return status;
}

/* A tensor name for a message: quoted, cut to 64 bytes. */
typedef struct { char s[80]; } Quoted;
static Quoted quote(const char *name)
{
  Quoted q;
  size_t n = strlen(name);
  if (n <= 64)
    snprintf(q.s, sizeof q.s, "\"%s\"", name);
  else
    snprintf(q.s, sizeof q.s, "\"%.60s...\"", name);
  return q;
}

static int host_is_le(void)
{
  const uint16_t one = 1;
  unsigned char b;
  memcpy(&b, &one, 1);
  return b == 1;
}

/* Reverse the bytes of each of n elements of size sz (big-endian hosts). */
static void byteswap(unsigned char *p, size_t n, size_t sz)
{
  for (size_t i = 0; i < n; i++, p += sz)
    for (size_t a = 0, b = sz - 1; a < b; a++, b--) {
      unsigned char t = p[a];
      p[a] = p[b];
      p[b] = t;
    }
}

static int dtype_parse(const char *s)
{
  static const int all[] = {DT_F32, DT_F64, DT_I32, DT_I64};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
    if (strcmp(s, dtype_name(all[i])) == 0)
      return all[i];
  return -1;
}

/* "[2, 3]" into buf. */
static const char *shape_text(char *buf, size_t len, int rank, const int64_t *dim)
{
  size_t n = (size_t)snprintf(buf, len, "[");
  for (int i = 0; i < rank && n < len; i++)
    n += (size_t)snprintf(buf + n, len - n, "%s%lld", i ? ", " : "", (long long)dim[i]);
  if (n < len)
    snprintf(buf + n, len - n, "]");
  return buf;
}

static const char *json_kind(const json_t *v)
{
  switch (json_typeof(v)) {
  case JSON_OBJECT: return "an object";
  case JSON_ARRAY: return "an array";
  case JSON_STRING: return "a string";
  case JSON_INTEGER: return "an integer";
  case JSON_REAL: return "a real number";
  case JSON_TRUE:
  case JSON_FALSE: return "a boolean";
  case JSON_NULL: return "null";
  }
  return "?";
}

/* ---- reading ------------------------------------------------------------ */

typedef struct Entry {
  const char *name; /* owned by the JSON tree */
  int dtype, rank;
  int64_t dim[TENSOR_MAXRANK];
  uint64_t begin, end; /* within the data buffer */
  int index;           /* header order, for stable sorting */
} Entry;

static int by_offsets(const void *pa, const void *pb)
{
  const Entry *a = *(Entry *const *)pa, *b = *(Entry *const *)pb;
  if (a->begin != b->begin)
    return a->begin < b->begin ? -1 : 1;
  if (a->end != b->end)
    return a->end < b->end ? -1 : 1;
  return a->index - b->index;
}

/* Check one tensor entry against a data buffer of buflen bytes; fill e. */
static int check_entry(const char *path, const char *name, json_t *v, uint64_t buflen, Entry *e,
                       char *err, size_t errlen)
{
  Quoted qn = quote(name);
  const char *q = qn.s;
  if (!json_is_object(v))
    return fail(RNNC_EFORMAT, err, errlen, path, "tensor %s: entry is %s, not an object", q,
                json_kind(v));
  e->name = name;

  json_t *dt = json_object_get(v, "dtype");
  if (!dt)
    return fail(RNNC_EFORMAT, err, errlen, path, "tensor %s: no \"dtype\"", q);
  if (!json_is_string(dt))
    return fail(RNNC_EFORMAT, err, errlen, path, "tensor %s: \"dtype\" is %s, not a string", q,
                json_kind(dt));
  e->dtype = dtype_parse(json_string_value(dt));
  if (e->dtype < 0) {
    Quoted qd = quote(json_string_value(dt));
    return fail(RNNC_EFORMAT, err, errlen, path,
                "tensor %s: unsupported dtype %s (rnnc reads F32, F64, I32, I64)", q, qd.s);
  }

  json_t *sh = json_object_get(v, "shape");
  if (!sh)
    return fail(RNNC_EFORMAT, err, errlen, path, "tensor %s: no \"shape\"", q);
  if (!json_is_array(sh))
    return fail(RNNC_EFORMAT, err, errlen, path, "tensor %s: \"shape\" is %s, not an array", q,
                json_kind(sh));
  size_t rank = json_array_size(sh);
  if (rank > TENSOR_MAXRANK)
    return fail(RNNC_EFORMAT, err, errlen, path, "tensor %s: rank %zu is over rnnc's limit of %d",
                q, rank, TENSOR_MAXRANK);
  e->rank = (int)rank;
  for (size_t i = 0; i < rank; i++) {
    json_t *d = json_array_get(sh, i);
    if (!json_is_integer(d) || json_integer_value(d) < 0)
      return fail(RNNC_EFORMAT, err, errlen, path,
                  "tensor %s: \"shape\" element %zu is not a non-negative integer", q, i);
    e->dim[i] = json_integer_value(d);
  }

  json_t *off = json_object_get(v, "data_offsets");
  if (!off)
    return fail(RNNC_EFORMAT, err, errlen, path, "tensor %s: no \"data_offsets\"", q);
  json_t *b = json_array_get(off, 0), *en = json_array_get(off, 1);
  if (!json_is_array(off) || json_array_size(off) != 2 || !json_is_integer(b) ||
      !json_is_integer(en) || json_integer_value(b) < 0 || json_integer_value(en) < 0)
    return fail(RNNC_EFORMAT, err, errlen, path,
                "tensor %s: \"data_offsets\" is not an array of two non-negative integers", q);
  e->begin = (uint64_t)json_integer_value(b);
  e->end = (uint64_t)json_integer_value(en);
  if (e->begin > e->end)
    return fail(RNNC_EFORMAT, err, errlen, path,
                "tensor %s: data_offsets [%llu, %llu] end before they begin", q,
                (unsigned long long)e->begin, (unsigned long long)e->end);
  if (e->end > buflen)
    return fail(RNNC_EFORMAT, err, errlen, path,
                "tensor %s: data_offsets [%llu, %llu] run past the end of the %llu-byte data "
                "buffer",
                q, (unsigned long long)e->begin, (unsigned long long)e->end,
                (unsigned long long)buflen);

  /* bytes = Π dim · size; a product past buflen cannot match, stop there */
  uint64_t bytes = dtype_size(e->dtype);
  int big = 0;
  for (int i = 0; i < e->rank; i++) {
    uint64_t d = (uint64_t)e->dim[i];
    if (d && bytes > UINT64_MAX / d)
      big = 1;
    else
      bytes *= d;
  }
  if (big || bytes != e->end - e->begin) {
    char sbuf[128];
    shape_text(sbuf, sizeof sbuf, e->rank, e->dim);
    if (big)
      return fail(RNNC_EFORMAT, err, errlen, path,
                  "tensor %s: %s %s is too large (more than 2^64 bytes)", q,
                  dtype_name(e->dtype), sbuf);
    return fail(RNNC_EFORMAT, err, errlen, path,
                "tensor %s: %s %s needs %llu bytes but data_offsets [%llu, %llu] hold %llu", q,
                dtype_name(e->dtype), sbuf, (unsigned long long)bytes,
                (unsigned long long)e->begin, (unsigned long long)e->end,
                (unsigned long long)(e->end - e->begin));
  }
  return RNNC_OK;
}

static int check_metadata(const char *path, json_t *v, char *err, size_t errlen)
{
  if (!json_is_object(v))
    return fail(RNNC_EFORMAT, err, errlen, path, "\"__metadata__\" is %s, not an object",
                json_kind(v));
  const char *k;
  json_t *x;
  json_object_foreach(v, k, x) {
    if (!json_is_string(x)) {
      Quoted qk = quote(k);
      return fail(RNNC_EFORMAT, err, errlen, path,
                  "\"__metadata__\" entry %s is %s, not a string", qk.s, json_kind(x));
    }
  }
  return RNNC_OK;
}

/* Check that the tensors, sorted by offsets, tile the data buffer exactly:
 * no overlap, no gap, nothing after the last one (as the reference
 * implementation requires). */
static int check_tiling(const char *path, Entry **by, size_t n, uint64_t buflen, char *err,
                        size_t errlen)
{
  uint64_t pos = 0;
  for (size_t i = 0; i < n; i++) {
    Entry *e = by[i];
    if (e->begin < pos) {
      Entry *p = by[i - 1];
      Quoted qp = quote(p->name), qe = quote(e->name);
      return fail(RNNC_EFORMAT, err, errlen, path,
                  "tensors %s [%llu, %llu] and %s [%llu, %llu] overlap", qp.s,
                  (unsigned long long)p->begin, (unsigned long long)p->end, qe.s,
                  (unsigned long long)e->begin, (unsigned long long)e->end);
    }
    if (e->begin > pos)
      return fail(RNNC_EFORMAT, err, errlen, path,
                  "bytes [%llu, %llu) of the data buffer belong to no tensor",
                  (unsigned long long)pos, (unsigned long long)e->begin);
    pos = e->end;
  }
  if (pos != buflen)
    return fail(RNNC_EFORMAT, err, errlen, path,
                "the tensors end at byte %llu of the %llu-byte data buffer (%llu trailing "
                "bytes)",
                (unsigned long long)pos, (unsigned long long)buflen,
                (unsigned long long)(buflen - pos));
  return RNNC_OK;
}

static int read_exact(FILE *f, void *p, size_t n)
{
  return fread(p, 1, n, f) == n;
}

static int read_error(FILE *f, const char *path, char *err, size_t errlen)
{
  if (ferror(f))
    return fail(RNNC_EIO, err, errlen, path, "read error: %s", strerror(errno));
  return fail(RNNC_EIO, err, errlen, path, "unexpected end of file (did it change while read?)");
}

/* The header's tensors, checked, into tmp; the file positioned anywhere. */
static int read_header(FILE *f, const char *path, uint64_t size, TensorSet *tmp, char *err,
                       size_t errlen)
{
  if (size < 8)
    return fail(RNNC_EFORMAT, err, errlen, path,
                "file is %llu bytes, too short for the 8-byte header length",
                (unsigned long long)size);
  unsigned char lb[8];
  if (!read_exact(f, lb, 8))
    return read_error(f, path, err, errlen);
  uint64_t n = 0;
  for (int i = 7; i >= 0; i--)
    n = n << 8 | lb[i];
  if (n > HEADER_MAX)
    return fail(RNNC_EFORMAT, err, errlen, path,
                "header length %llu is over the limit of %d bytes", (unsigned long long)n,
                HEADER_MAX);
  if (n > size - 8)
    return fail(RNNC_EFORMAT, err, errlen, path,
                "header length %llu runs past the end of the file (%llu bytes follow the "
                "length)",
                (unsigned long long)n, (unsigned long long)(size - 8));
  uint64_t buflen = size - 8 - n;

  char *text = malloc(n ? (size_t)n : 1);
  if (!text)
    return fail(RNNC_ENOMEM, err, errlen, path, "out of memory for a %llu-byte header",
                (unsigned long long)n);
  if (!read_exact(f, text, (size_t)n)) {
    free(text);
    return read_error(f, path, err, errlen);
  }
  json_error_t je;
  json_t *root = json_loadb(text, (size_t)n, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
  free(text);
  if (!root)
    return fail(RNNC_EFORMAT, err, errlen, path, "header is not valid JSON: line %d, column %d: %s",
                je.line, je.column, je.text);
  if (!json_is_object(root)) {
    int st = fail(RNNC_EFORMAT, err, errlen, path, "header is %s, not a JSON object",
                  json_kind(root));
    json_decref(root);
    return st;
  }

  size_t cnt = json_object_size(root);
  Entry *ent = calloc(cnt ? cnt : 1, sizeof *ent);
  Entry **by = calloc(cnt ? cnt : 1, sizeof *by);
  int st = RNNC_OK;
  if (!ent || !by)
    st = fail(RNNC_ENOMEM, err, errlen, path, "out of memory for %zu header entries", cnt);
  size_t ne = 0;
  json_t *meta = NULL;
  const char *key;
  json_t *v;
  json_object_foreach(root, key, v) {
    if (st != RNNC_OK)
      break;
    if (strcmp(key, "__metadata__") == 0) {
      meta = v;
      st = check_metadata(path, v, err, errlen);
      continue;
    }
    ent[ne].index = (int)ne;
    st = check_entry(path, key, v, buflen, &ent[ne], err, errlen);
    by[ne] = &ent[ne];
    ne++;
  }
  if (st == RNNC_OK) {
    qsort(by, ne, sizeof *by, by_offsets);
    st = check_tiling(path, by, ne, buflen, err, errlen);
  }

  /* Everything checked: allocate and read the data, header order. */
  for (size_t i = 0; st == RNNC_OK && i < ne; i++) {
    Entry *e = &ent[i];
    Tensor *t = tset_add(tmp, e->name, e->dtype, e->rank, e->dim);
    if (!t) {
      Quoted qn = quote(e->name);
      st = fail(RNNC_ENOMEM, err, errlen, path, "out of memory for tensor %s (%llu bytes)", qn.s,
                (unsigned long long)(e->end - e->begin));
      break;
    }
    size_t bytes = (size_t)(e->end - e->begin);
    if (fseeko(f, (off_t)(8 + n + e->begin), SEEK_SET) != 0) {
      st = fail(RNNC_EIO, err, errlen, path, "seek error: %s", strerror(errno));
      break;
    }
    if (!read_exact(f, t->data, bytes)) {
      st = read_error(f, path, err, errlen);
      break;
    }
    if (!host_is_le())
      byteswap(t->data, bytes / dtype_size(e->dtype), dtype_size(e->dtype));
  }
  if (st == RNNC_OK && meta) {
    const char *k;
    json_t *x;
    json_object_foreach(meta, k, x) {
      if (tset_setmeta(tmp, k, json_string_value(x)) != RNNC_OK) {
        st = fail(RNNC_ENOMEM, err, errlen, path, "out of memory for metadata");
        break;
      }
    }
  }
  free(ent);
  free(by);
  json_decref(root);
  return st;
}

int safetensors_read(const char *path, TensorSet *out, char *err, size_t errlen)
{
  FILE *f = fopen(path, "rb");
  if (!f)
    return fail(RNNC_EIO, err, errlen, path, "cannot open: %s", strerror(errno));
  struct stat st;
  if (fstat(fileno(f), &st) != 0) {
    int e = errno;
    fclose(f);
    return fail(RNNC_EIO, err, errlen, path, "cannot stat: %s", strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    fclose(f);
    return fail(RNNC_EIO, err, errlen, path, "%s",
                S_ISDIR(st.st_mode) ? "is a directory" : "not a regular file");
  }
  TensorSet tmp;
  tset_init(&tmp);
  int s = read_header(f, path, (uint64_t)st.st_size, &tmp, err, errlen);
  fclose(f);
  if (s == RNNC_OK && tset_move(out, &tmp) != RNNC_OK)
    s = fail(RNNC_ENOMEM, err, errlen, path, "out of memory");
  tset_clear(&tmp);
  return s;
}

/* ---- writing ------------------------------------------------------------ */

/* The reference implementation orders tensors by dtype, widest alignment
 * first (its enum order: I64, F64, F32, I32 among ours), then by name; with
 * the header padded to 8 bytes every tensor is then aligned to its size. */
static int dtype_rank(int dt)
{
  switch (dt) {
  case DT_I64: return 0;
  case DT_F64: return 1;
  case DT_F32: return 2;
  case DT_I32: return 3;
  }
  die("bad dtype %d", dt);
}

static int by_dtype_name(const void *pa, const void *pb)
{
  const Tensor *a = *(const Tensor *const *)pa, *b = *(const Tensor *const *)pb;
  int ra = dtype_rank(a->dtype), rb = dtype_rank(b->dtype);
  if (ra != rb)
    return ra - rb;
  return strcmp(a->name, b->name);
}

/* The JSON header for tensors in order ord, unpadded; NULL with err set. */
static char *make_header(const char *path, const TensorSet *s, const Tensor **ord, int *status,
                         char *err, size_t errlen)
{
  json_t *root = json_object();
  char *text = NULL;
  *status = RNNC_ENOMEM;
  if (!root)
    goto oom;
  if (s->nmeta) {
    json_t *m = json_object();
    if (!m || json_object_set_new(root, "__metadata__", m) != 0)
      goto oom;
    for (int i = 0; i < s->nmeta; i++) {
      json_t *v = json_string(s->metaval[i]);
      if (!v || json_object_set_new(m, s->metakey[i], v) != 0) {
        Quoted qk = quote(s->metakey[i]);
        *status = fail(RNNC_EFORMAT, err, errlen, path,
                       "metadata entry %s: key or value is not valid UTF-8", qk.s);
        goto out;
      }
    }
  }
  uint64_t off = 0;
  for (int i = 0; i < s->n; i++) {
    const Tensor *t = ord[i];
    Quoted qn = quote(t->name);
    if (strcmp(t->name, "__metadata__") == 0) {
      *status = fail(RNNC_EFORMAT, err, errlen, path,
                     "tensor name \"__metadata__\" is reserved by the format");
      goto out;
    }
    uint64_t bytes = (uint64_t)tensor_numel(t) * dtype_size(t->dtype);
    json_t *e = json_object(), *sh = json_array(), *of = json_array();
    if (!e || !sh || !of) {
      json_decref(e);
      json_decref(sh);
      json_decref(of);
      goto oom;
    }
    int bad = json_object_set_new(e, "dtype", json_string(dtype_name(t->dtype))) |
              json_object_set_new(e, "shape", sh) | json_object_set_new(e, "data_offsets", of);
    for (int k = 0; k < t->rank; k++)
      bad |= json_array_append_new(sh, json_integer((json_int_t)t->dim[k]));
    bad |= json_array_append_new(of, json_integer((json_int_t)off));
    bad |= json_array_append_new(of, json_integer((json_int_t)(off + bytes)));
    if (bad) {
      json_decref(e);
      goto oom;
    }
    if (json_object_set_new(root, t->name, e) != 0) {
      /* jansson refuses a key that is not UTF-8 (and has freed e) */
      *status = fail(RNNC_EFORMAT, err, errlen, path, "tensor %s: name is not valid UTF-8", qn.s);
      goto out;
    }
    off += bytes;
  }
  text = json_dumps(root, JSON_COMPACT);
  if (!text)
    goto oom;
  *status = RNNC_OK;
  goto out;
oom:
  *status = fail(RNNC_ENOMEM, err, errlen, path, "out of memory building the header");
out:
  json_decref(root);
  return text;
}

/* Open a fresh temporary file next to path; its name into *tmpname. The
 * name holds the process id and a per-process counter (atomic: threads
 * writing at once draw different numbers), and O_EXCL refuses a name that
 * exists (a leftover of a killed writer whose pid came round again), so two
 * writers never share a temporary file. */
static int open_temp(const char *path, char **tmpname)
{
  static atomic_uint counter;
  size_t len = strlen(path) + 48;
  char *name = malloc(len);
  if (!name) {
    errno = ENOMEM;
    return -1;
  }
  for (int tries = 0; tries < 100; tries++) {
    snprintf(name, len, "%s.tmp-%ld-%u", path, (long)getpid(), atomic_fetch_add(&counter, 1));
    int fd = open(name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd >= 0) {
      *tmpname = name;
      return fd;
    }
    if (errno != EEXIST)
      break;
  }
  int e = errno;
  free(name);
  errno = e;
  return -1;
}

/* fsync the directory holding path, so a rename into it survives a crash.
 * 0, or -1 with errno; file systems that cannot sync a directory (EINVAL,
 * ENOTSUP) count as done. */
static int sync_dir(const char *path)
{
  const char *slash = strrchr(path, '/');
  char *d;
  if (!slash)
    d = strdup(".");
  else if (slash == path)
    d = strdup("/");
  else
    d = strndup(path, (size_t)(slash - path));
  if (!d) {
    errno = ENOMEM;
    return -1;
  }
  int fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  free(d);
  if (fd < 0)
    return -1;
  int r = fsync(fd);
  int e = errno;
  close(fd);
  if (r != 0 && (e == EINVAL || e == ENOTSUP))
    r = 0;
  errno = e;
  return r;
}

static int write_data(FILE *f, const Tensor *t)
{
  size_t sz = dtype_size(t->dtype);
  size_t bytes = (size_t)tensor_numel(t) * sz;
  if (host_is_le())
    return fwrite(t->data, 1, bytes, f) == bytes;
  unsigned char chunk[65536];
  for (size_t o = 0; o < bytes; o += sizeof chunk) {
    size_t k = bytes - o < sizeof chunk ? bytes - o : sizeof chunk;
    memcpy(chunk, (const unsigned char *)t->data + o, k);
    byteswap(chunk, k / sz, sz);
    if (fwrite(chunk, 1, k, f) != k)
      return 0;
  }
  return 1;
}

int safetensors_write(const char *path, const TensorSet *s, char *err, size_t errlen)
{
  const Tensor **ord = malloc((s->n ? (size_t)s->n : 1) * sizeof *ord);
  if (!ord)
    return fail(RNNC_ENOMEM, err, errlen, path, "out of memory");
  for (int i = 0; i < s->n; i++)
    ord[i] = &s->t[i];
  qsort(ord, (size_t)s->n, sizeof *ord, by_dtype_name);
  int st;
  char *hdr = make_header(path, s, ord, &st, err, errlen);
  if (!hdr) {
    free(ord);
    return st;
  }
  size_t hlen = strlen(hdr), pad = (8 - hlen % 8) % 8;
  uint64_t n = hlen + pad;
  unsigned char lb[8];
  for (int i = 0; i < 8; i++)
    lb[i] = (unsigned char)(n >> (8 * i));

  char *tmp = NULL;
  int fd = open_temp(path, &tmp);
  if (fd < 0) {
    st = fail(RNNC_EIO, err, errlen, path, "cannot write: %s", strerror(errno));
    goto done;
  }
  FILE *f = fdopen(fd, "wb");
  if (!f) {
    st = fail(RNNC_EIO, err, errlen, path, "cannot write: %s", strerror(errno));
    close(fd);
    unlink(tmp);
    goto done;
  }
  int ok = fwrite(lb, 1, 8, f) == 8 && fwrite(hdr, 1, hlen, f) == hlen &&
           fwrite("        ", 1, pad, f) == pad;
  for (int i = 0; ok && i < s->n; i++)
    ok = write_data(f, ord[i]);
  ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
  int e = errno;
  if (fclose(f) != 0 && ok) {
    ok = 0;
    e = errno;
  }
  if (ok && rename(tmp, path) != 0) {
    ok = 0;
    e = errno;
  }
  if (!ok) {
    unlink(tmp);
    st = fail(RNNC_EIO, err, errlen, path, "cannot write: %s", strerror(e));
  } else if (sync_dir(path) != 0) {
    /* the new file is in place but its directory entry may not be durable */
    st = fail(RNNC_EIO, err, errlen, path, "cannot sync its directory: %s", strerror(errno));
  }
done:
  free(tmp);
  free(hdr);
  free(ord);
  return st;
}
