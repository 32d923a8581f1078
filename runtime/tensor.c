/* tensor.c — named tensors (malloc'ed, row-major) and sets of them with
 * safetensors-style string metadata. Never prints; out of memory is a NULL
 * or RNNC_ENOMEM return, never an abort. */
#include <stdlib.h>
#include <string.h>

#include "ir.h"

size_t dtype_size(int dtype)
{
  switch (dtype) {
  case DT_F32: return 4;
  case DT_F64: return 8;
  case DT_I32: return 4;
  case DT_I64: return 8;
  }
  die("bad dtype %d", dtype);
}

const char *dtype_name(int dtype)
{
  switch (dtype) {
  case DT_F32: return "F32";
  case DT_F64: return "F64";
  case DT_I32: return "I32";
  case DT_I64: return "I64";
  }
  die("bad dtype %d", dtype);
}

int64_t tensor_numel(const Tensor *t)
{
  int64_t n = 1;
  for (int i = 0; i < t->rank; i++)
    n *= t->dim[i];
  return n;
}

void tset_init(TensorSet *s) { memset(s, 0, sizeof *s); }

void tset_clear(TensorSet *s)
{
  for (int i = 0; i < s->n; i++) {
    free(s->t[i].name);
    free(s->t[i].data);
  }
  for (int i = 0; i < s->nmeta; i++) {
    free(s->metakey[i]);
    free(s->metaval[i]);
  }
  free(s->t);
  free(s->metakey);
  free(s->metaval);
  tset_init(s);
}

Tensor *tset_find(const TensorSet *s, const char *name)
{
  for (int i = 0; i < s->n; i++)
    if (strcmp(s->t[i].name, name) == 0)
      return &s->t[i];
  return NULL;
}

/* Make room for n tensors / n metadata entries; 0 when out of memory. */
static int reserve(TensorSet *s, int n)
{
  if (n <= s->cap)
    return 1;
  int nc = s->cap ? s->cap : 8;
  while (nc < n)
    nc *= 2;
  Tensor *t = realloc(s->t, (size_t)nc * sizeof *t);
  if (!t)
    return 0;
  s->t = t;
  s->cap = nc;
  return 1;
}

static int reserve_meta(TensorSet *s, int n)
{
  if (n <= s->capmeta)
    return 1;
  int nc = s->capmeta ? s->capmeta : 4;
  while (nc < n)
    nc *= 2;
  char **k = realloc(s->metakey, (size_t)nc * sizeof *k);
  if (!k)
    return 0;
  s->metakey = k;
  char **v = realloc(s->metaval, (size_t)nc * sizeof *v);
  if (!v)
    return 0; /* metakey grew, capmeta not yet: harmless */
  s->metaval = v;
  s->capmeta = nc;
  return 1;
}

Tensor *tset_add(TensorSet *s, const char *name, int dtype, int rank, const int64_t *dim)
{
  if (rank < 0 || rank > TENSOR_MAXRANK)
    die("tset_add: rank %d", rank);
  /* bytes = Π dim · size, refused (NULL) when it does not fit in size_t */
  size_t bytes = dtype_size(dtype);
  for (int i = 0; i < rank; i++) {
    if (dim[i] < 0)
      die("tset_add: negative dimension %lld", (long long)dim[i]);
    if (dim[i] && bytes > SIZE_MAX / (uint64_t)dim[i])
      return NULL;
    bytes *= (size_t)dim[i];
  }
  void *data = calloc(bytes ? bytes : 1, 1);
  if (!data)
    return NULL;
  Tensor *t = tset_find(s, name);
  char *nm = NULL;
  if (!t) {
    nm = strdup(name);
    if (!nm || !reserve(s, s->n + 1)) {
      free(nm);
      free(data);
      return NULL;
    }
    t = &s->t[s->n++];
    t->name = nm;
  } else {
    free(t->data);
  }
  t->dtype = dtype;
  t->rank = rank;
  for (int i = 0; i < TENSOR_MAXRANK; i++)
    t->dim[i] = i < rank ? dim[i] : 0;
  t->data = data;
  return t;
}

int tset_setmeta(TensorSet *s, const char *key, const char *val)
{
  char *v = strdup(val);
  if (!v)
    return RNNC_ENOMEM;
  for (int i = 0; i < s->nmeta; i++)
    if (strcmp(s->metakey[i], key) == 0) {
      free(s->metaval[i]);
      s->metaval[i] = v;
      return RNNC_OK;
    }
  char *k = strdup(key);
  if (!k || !reserve_meta(s, s->nmeta + 1)) {
    free(k);
    free(v);
    return RNNC_ENOMEM;
  }
  s->metakey[s->nmeta] = k;
  s->metaval[s->nmeta++] = v;
  return RNNC_OK;
}

const char *tset_getmeta(const TensorSet *s, const char *key)
{
  for (int i = 0; i < s->nmeta; i++)
    if (strcmp(s->metakey[i], key) == 0)
      return s->metaval[i];
  return NULL;
}

int tset_move(TensorSet *dst, TensorSet *src)
{
  /* Reserve first, so nothing below can fail halfway. */
  if (!reserve(dst, dst->n + src->n) || !reserve_meta(dst, dst->nmeta + src->nmeta))
    return RNNC_ENOMEM;
  for (int i = 0; i < src->n; i++) {
    Tensor *t = tset_find(dst, src->t[i].name);
    if (t) {
      free(t->name);
      free(t->data);
      *t = src->t[i];
    } else {
      dst->t[dst->n++] = src->t[i];
    }
  }
  for (int i = 0; i < src->nmeta; i++) {
    int j = 0;
    while (j < dst->nmeta && strcmp(dst->metakey[j], src->metakey[i]) != 0)
      j++;
    if (j < dst->nmeta) {
      free(dst->metakey[j]);
      free(dst->metaval[j]);
    } else {
      dst->nmeta++;
    }
    dst->metakey[j] = src->metakey[i];
    dst->metaval[j] = src->metaval[i];
  }
  src->n = src->nmeta = 0;
  tset_clear(src);
  return RNNC_OK;
}
