/* safetensors.c — the reader and writer of safetensors.h: a compiled model's
 * parameters from and to one file, by the model's parameter table. */
#include "safetensors.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c reads and writes the data as it lies in memory: a little-endian host only"
#endif

/* The largest header the reference implementation accepts. */
#define ST_MAX_HEADER 100000000u

struct st_file {
  char *path;
  unsigned char *bytes;   /* the whole file */
  size_t size;
  const unsigned char *data; /* the data buffer after the header */
  size_t datalen;
  json_t *header;         /* the JSON object */
};

/* A message into err; returns status. */
static int fail(int status, char *err, size_t errlen, const char *fmt, ...)
{
  if (err && errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return status;
}

/* "F32 [128, 16]" into buf. */
static const char *shape_str(char *buf, size_t len, const char *dtype, int64_t rank, const int64_t *dim)
{
  size_t n = (size_t)snprintf(buf, len, "%s [", dtype);
  for (int64_t i = 0; i < rank && n < len; i++)
    n += (size_t)snprintf(buf + n, len - n, "%s%" PRId64, i ? ", " : "", dim[i]);
  if (n < len)
    snprintf(buf + n, len - n, "]");
  return buf;
}

/* The whole file into *bytes (malloc'ed); RNNC_OK, RNNC_EIO or RNNC_ENOMEM. */
static int read_all(const char *path, unsigned char **bytes, size_t *size, char *err, size_t errlen)
{
  FILE *fp = fopen(path, "rb");
  if (!fp)
    return fail(RNNC_EIO, err, errlen, "%s: cannot open: %s", path, strerror(errno));
  size_t cap = 1 << 16, n = 0;
  unsigned char *buf = malloc(cap);
  int st = RNNC_OK;
  while (buf) {
    if (n == cap) {
      unsigned char *nb = realloc(buf, cap *= 2);
      if (!nb) {
        free(buf);
        buf = NULL;
        break;
      }
      buf = nb;
    }
    size_t got = fread(buf + n, 1, cap - n, fp);
    n += got;
    if (got == 0) {
      if (ferror(fp))
        st = fail(RNNC_EIO, err, errlen, "%s: cannot read: %s", path, strerror(errno));
      break;
    }
  }
  fclose(fp);
  if (!buf)
    return fail(RNNC_ENOMEM, err, errlen, "%s: out of memory reading it", path);
  if (st != RNNC_OK) {
    free(buf);
    return st;
  }
  *bytes = buf;
  *size = n;
  return RNNC_OK;
}

st_file *st_open(const char *path, int *status, char *err, size_t errlen)
{
  int dummy;
  if (!status)
    status = &dummy;
  st_file *f = calloc(1, sizeof *f);
  size_t plen = strlen(path) + 1;
  if (f && (f->path = malloc(plen)))
    memcpy(f->path, path, plen);
  if (!f || !f->path) {
    free(f);
    *status = fail(RNNC_ENOMEM, err, errlen, "%s: out of memory", path);
    return NULL;
  }
  if ((*status = read_all(path, &f->bytes, &f->size, err, errlen)) != RNNC_OK) {
    st_close(f);
    return NULL;
  }
  *status = RNNC_EFORMAT;
  if (f->size < 8) {
    fail(RNNC_EFORMAT, err, errlen, "%s: file is %zu bytes, too short for the 8-byte header length", path, f->size);
    st_close(f);
    return NULL;
  }
  uint64_t n = 0;
  for (int i = 7; i >= 0; i--)
    n = n << 8 | f->bytes[i];
  if (n > ST_MAX_HEADER || n > f->size - 8) {
    fail(RNNC_EFORMAT, err, errlen, "%s: header length %" PRIu64 " runs past the end of the file (%zu bytes follow it)",
         path, n, f->size - 8);
    st_close(f);
    return NULL;
  }
  json_error_t je;
  f->header = json_loadb((const char *)f->bytes + 8, (size_t)n, JSON_REJECT_DUPLICATES, &je);
  if (!f->header || !json_is_object(f->header)) {
    if (f->header)
      fail(RNNC_EFORMAT, err, errlen, "%s: header is not a JSON object", path);
    else
      fail(RNNC_EFORMAT, err, errlen, "%s: header is not valid JSON: line %d, column %d: %s", path, je.line,
           je.column, je.text);
    st_close(f);
    return NULL;
  }
  json_t *meta = json_object_get(f->header, "__metadata__");
  if (meta && !json_is_object(meta)) {
    fail(RNNC_EFORMAT, err, errlen, "%s: \"__metadata__\" is not an object", path);
    st_close(f);
    return NULL;
  }
  f->data = f->bytes + 8 + n;
  f->datalen = f->size - 8 - (size_t)n;
  *status = RNNC_OK;
  return f;
}

void st_close(st_file *f)
{
  if (!f)
    return;
  json_decref(f->header);
  free(f->bytes);
  free(f->path);
  free(f);
}

const char *st_meta(const st_file *f, const char *key)
{
  json_t *v = json_object_get(json_object_get(f->header, "__metadata__"), key);
  return json_is_string(v) ? json_string_value(v) : NULL;
}

/* Check parameter p's entry in f; on success *src its bytes. */
static int check_param(const st_file *f, const rnnc_aot_model *m, const rnnc_aot_param *p, const unsigned char **src,
                       char *err, size_t errlen)
{
  char want[128], got[128];
  shape_str(want, sizeof want, "F32", p->rank, p->dim);
  json_t *e = json_object_get(f->header, p->name);
  if (!e)
    return fail(RNNC_EINPUT, err, errlen, "%s: no tensor '%s' (a parameter of model '%s')", f->path, p->name,
                m->name);
  json_t *dt = json_object_get(e, "dtype"), *sh = json_object_get(e, "shape"), *off = json_object_get(e, "data_offsets");
  if (!json_is_object(e) || !json_is_string(dt) || !json_is_array(sh) || !json_is_array(off) ||
      json_array_size(off) != 2 || !json_is_integer(json_array_get(off, 0)) || !json_is_integer(json_array_get(off, 1)))
    return fail(RNNC_EFORMAT, err, errlen, "%s: tensor '%s': its entry is not {\"dtype\", \"shape\", \"data_offsets\"}",
                f->path, p->name);
  int64_t dim[8];
  size_t rank = json_array_size(sh);
  int sameshape = rank == (size_t)p->rank;
  for (size_t i = 0; i < rank; i++) {
    json_t *d = json_array_get(sh, i);
    if (!json_is_integer(d) || json_integer_value(d) < 0)
      return fail(RNNC_EFORMAT, err, errlen, "%s: tensor '%s': shape element %zu is not a non-negative integer",
                  f->path, p->name, i);
    if (i < 8)
      dim[i] = json_integer_value(d);
    sameshape = sameshape && json_integer_value(d) == p->dim[i]; /* rank == p->rank <= 4 here */
  }
  const char *dtype = json_string_value(dt);
  if (strcmp(dtype, "F32") != 0 || !sameshape) {
    if (rank > 8)
      snprintf(got, sizeof got, "%s of rank %zu", dtype, rank);
    else
      shape_str(got, sizeof got, dtype, (int64_t)rank, dim);
    return fail(RNNC_ESHAPE, err, errlen, "%s: tensor '%s' is %s; the model wants %s", f->path, p->name, got, want);
  }
  json_int_t b = json_integer_value(json_array_get(off, 0)), end = json_integer_value(json_array_get(off, 1));
  if (b < 0 || end < b || (uint64_t)end > f->datalen || (uint64_t)(end - b) != (uint64_t)p->numel * 4)
    return fail(RNNC_EFORMAT, err, errlen,
                "%s: tensor '%s': data_offsets [%" JSON_INTEGER_FORMAT ", %" JSON_INTEGER_FORMAT
                "] are not the %" PRId64 " bytes of %s within the %zu-byte data buffer",
                f->path, p->name, b, end, p->numel * 4, want, f->datalen);
  *src = f->data + b;
  return RNNC_OK;
}

int st_load_params(const st_file *f, const rnnc_aot_model *m, float *params, char *err, size_t errlen)
{
  for (int pass = 0; pass < 2; pass++) /* check all, then copy: a failure changes nothing */
    for (int64_t i = 0; i < m->nparam; i++) {
      const rnnc_aot_param *p = &m->param[i];
      const unsigned char *src;
      int st = check_param(f, m, p, &src, err, errlen);
      if (st != RNNC_OK)
        return st;
      if (pass == 1)
        memcpy(params + p->offset, src, (size_t)p->numel * sizeof *params);
    }
  return RNNC_OK;
}

/* ---- writing ----------------------------------------------------------------- */

/* order[0 .. n) the parameters of m sorted by name, bytewise (an insertion
 * sort: models have tens of parameters). */
static void sort_by_name(const rnnc_aot_model *m, int64_t *order)
{
  for (int64_t i = 0; i < m->nparam; i++) {
    int64_t x = i, k = i - 1;
    for (; k >= 0 && strcmp(m->param[order[k]].name, m->param[x].name) > 0; k--)
      order[k + 1] = order[k];
    order[k + 1] = x;
  }
}

/* The header: metadata first, then the tensors in order[], back to back. */
static char *header_json(const rnnc_aot_model *m, const int64_t *order, int nmeta, const char *const *meta)
{
  json_t *root = json_object();
  int ok = root != NULL;
  if (ok && nmeta > 0) {
    json_t *md = json_object();
    ok = md && json_object_set_new(root, "__metadata__", md) == 0;
    for (int i = 0; ok && i < nmeta; i++) {
      json_t *v = json_string(meta[2 * i + 1]);
      ok = v && json_object_set_new(md, meta[2 * i], v) == 0;
    }
  }
  json_int_t at = 0;
  for (int64_t k = 0; ok && k < m->nparam; k++) {
    const rnnc_aot_param *p = &m->param[order[k]];
    json_t *shape = json_array();
    for (int64_t d = 0; shape && d < p->rank; d++)
      json_array_append_new(shape, json_integer(p->dim[d]));
    json_int_t end = at + (json_int_t)p->numel * 4;
    json_t *e = shape ? json_pack("{s:s,s:o,s:[I,I]}", "dtype", "F32", "shape", shape, "data_offsets", at, end) : NULL;
    ok = e && json_object_set_new(root, p->name, e) == 0;
    at = end;
  }
  char *s = ok ? json_dumps(root, JSON_COMPACT) : NULL;
  json_decref(root);
  return s;
}

int st_save_params(const char *path, const rnnc_aot_model *m, const float *params, int nmeta,
                   const char *const *meta, char *err, size_t errlen)
{
  int64_t *order = malloc((size_t)(m->nparam ? m->nparam : 1) * sizeof *order);
  size_t plen = strlen(path);
  char *tmp = malloc(plen + 5);
  if (!order || !tmp) {
    free(order);
    free(tmp);
    return fail(RNNC_ENOMEM, err, errlen, "%s: cannot write: out of memory", path);
  }
  sort_by_name(m, order);
  char *h = header_json(m, order, nmeta, meta);
  if (!h) {
    free(order);
    free(tmp);
    return fail(RNNC_EINPUT, err, errlen, "%s: cannot write: a metadata string or name is not UTF-8 (or out of memory)",
                path);
  }
  size_t hlen = strlen(h), padded = (hlen + 7) / 8 * 8;
  unsigned char len8[8];
  for (int i = 0; i < 8; i++)
    len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
  memcpy(tmp, path, plen);
  memcpy(tmp + plen, ".tmp", 5);
  FILE *fp = fopen(tmp, "wb");
  int ok = fp && fwrite(len8, 1, 8, fp) == 8 && fwrite(h, 1, hlen, fp) == hlen;
  for (size_t i = hlen; ok && i < padded; i++)
    ok = fputc(' ', fp) != EOF;
  for (int64_t k = 0; ok && k < m->nparam; k++) {
    const rnnc_aot_param *p = &m->param[order[k]];
    ok = fwrite(params + p->offset, sizeof *params, (size_t)p->numel, fp) == (size_t)p->numel;
  }
  int e = errno;
  if (fp && fclose(fp) != 0 && ok) {
    ok = 0;
    e = errno;
  }
  if (ok && rename(tmp, path) != 0) {
    ok = 0;
    e = errno;
  }
  if (!ok && fp)
    remove(tmp);
  free(h);
  free(order);
  free(tmp);
  return ok ? RNNC_OK : fail(RNNC_EIO, err, errlen, "%s: cannot write: %s", path, strerror(e));
}
