/* idx.c — IDX files (LeCun's MNIST format, as Fashion-MNIST ships): images
 * and labels into a DS_IDX data set.
 *
 * File: magic 00 00 08 nd (unsigned bytes, nd dims), nd big-endian u32 dims,
 * then the bytes, row-major. Images: nd = 3 [N, rows, cols]; labels: nd = 1
 * [N]. gzip or plain (data_read_file). require: nothing. produce: d->x
 * [N, rows, cols] floats byte / 255, d->label [N]. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

static uint32_t be32(const unsigned char *p)
{
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Check an IDX file of nd dims (its bytes buf[len]): dim[] filled, *data at
 * the first element. RNNC_EFORMAT for a bad magic, a truncated header, or a
 * size other than the header's. */
static int idx_header(const char *path, const unsigned char *buf, size_t len, int nd, uint32_t *dim,
                      const unsigned char **data, char *err, size_t errlen)
{
  uint32_t want = 0x800u | (uint32_t)nd;
  const char *what = nd == 3 ? "an IDX image file" : "an IDX label file";
  if (len < 4 || be32(buf) != want)
    return errorf(RNNC_EFORMAT, err, errlen, "%s: bad magic 0x%08x, expected 0x%08x (%s)", path,
                len < 4 ? 0u : be32(buf), want, what);
  size_t head = 4 + 4 * (size_t)nd;
  if (len < head)
    return errorf(RNNC_EFORMAT, err, errlen, "%s: truncated header (%zu bytes, %s has %zu)", path, len, what,
                head);
  uint64_t size = 1;
  for (int i = 0; i < nd; i++) {
    dim[i] = be32(buf + 4 + 4 * i);
    if (dim[i] && size > ((uint64_t)1 << 40) / dim[i])
      return errorf(RNNC_EFORMAT, err, errlen, "%s: dims too large (over 2^40 bytes)", path);
    size *= dim[i];
  }
  if (len - head != size)
    return errorf(RNNC_EFORMAT, err, errlen, "%s: %s: the header's dims need %llu data bytes, the file has %zu",
                path, len - head < size ? "truncated" : "size mismatch", (unsigned long long)size, len - head);
  *data = buf + head;
  return RNNC_OK;
}

int dataset_idx(Dataset *d, const char *images, const char *labels, char *err, size_t errlen)
{
  memset(d, 0, sizeof *d);
  char *ib = NULL, *lb = NULL;
  size_t il, ll;
  uint32_t idim[3] = {0}, ldim[1] = {0}; /* set on success (GCC -O3 cannot tell) */
  const unsigned char *ip = NULL, *lp = NULL;
  int st = data_read_file(images, &ib, &il, err, errlen);
  if (!st)
    st = idx_header(images, (unsigned char *)ib, il, 3, idim, &ip, err, errlen);
  if (!st)
    st = data_read_file(labels, &lb, &ll, err, errlen);
  if (!st)
    st = idx_header(labels, (unsigned char *)lb, ll, 1, ldim, &lp, err, errlen);
  if (!st && idim[0] != ldim[0])
    st = errorf(RNNC_EFORMAT, err, errlen, "%s has %u images but %s has %u labels", images, idim[0], labels,
              ldim[0]);
  if (!st && (idim[0] == 0 || idim[1] == 0 || idim[2] == 0 || idim[1] > INT32_MAX || idim[2] > INT32_MAX))
    st = errorf(RNNC_EFORMAT, err, errlen, "%s: no data (dims %u x %u x %u)", images, idim[0], idim[1], idim[2]);
  if (!st) {
    size_t n = idim[0], row = (size_t)idim[1] * idim[2];
    d->kind = DS_IDX;
    d->nseq = n;
    d->steps = (int)idim[1];
    d->feat = (int)idim[2];
    d->x = malloc(n * row * sizeof *d->x);
    d->label = malloc(n * sizeof *d->label);
    if (!d->x || !d->label) {
      st = errorf(RNNC_ENOMEM, err, errlen, "%s: out of memory for %zu images", images, n);
    } else {
      for (size_t i = 0; i < n * row; i++)
        d->x[i] = (float)ip[i] / 255.0f;
      for (size_t i = 0; i < n; i++) {
        d->label[i] = lp[i];
        if (lp[i] >= d->nclass)
          d->nclass = lp[i] + 1;
      }
    }
  }
  free(ib);
  free(lb);
  if (st)
    dataset_free(d);
  return st;
}
