/* safetensors.h — a small reader and writer of safetensors files for
 * programs that link a model compiled by `rnnc compile` (rnnc_aot.h).
 *
 * It moves a compiled model's parameters between one file and the model's
 * parameter buffer, by the model's parameter table (rnnc_aot_model.param:
 * name, rank, dim, numel, offset): every parameter must be in the file, F32,
 * with the shape the model was compiled for. Other tensors of the file (an
 * optimizer's state, carried states in a checkpoint of `rnnc train`) are
 * ignored. Metadata strings (a checkpoint's "rnnc.vocab", "model", ...) are
 * read by key.
 *
 * The format (docs/formats.md): a u64 little-endian header length N, N bytes
 * of a JSON object (jansson parses it), then the tensors' bytes. Each JSON key
 * is a tensor name with {"dtype", "shape", "data_offsets": [begin, end]}
 * (offsets relative to the data after the header), except "__metadata__",
 * an object of strings. This helper reads only what it needs and checks that
 * much: each parameter's dtype, shape and byte range. Little-endian hosts
 * only (x86-64, AArch64).
 *
 * Errors are status codes (rnnc_base.h) with a one-line message in err, which
 * names the file, the tensor and what is wrong:
 *   "ck.st: no tensor 'h1.W_ih' (a parameter of model 'charlm')"
 *   "ck.st: tensor 'h1.W_ih' is F32 [128, 16]; the model wants F32 [1024, 64]"
 *
 * Plain C17 and jansson (-ljansson); nothing of rnnc but rnnc_aot.h.
 */
#ifndef ST_SAFETENSORS_H
#define ST_SAFETENSORS_H

#include <stddef.h>

#include <rnnc_aot.h>

/* A file read into memory with its parsed header. */
typedef struct st_file st_file;

/* Read and parse path. NULL on failure with the reason in err
 * ("x.st: cannot open: No such file or directory", "x.st: header is not
 * valid JSON: line 1, column 9: ..."); *status (may be NULL) the status:
 * RNNC_EIO, RNNC_EFORMAT or RNNC_ENOMEM. */
st_file *st_open(const char *path, int *status, char *err, size_t errlen);

/* Free f (NULL is fine). */
void st_close(st_file *f);

/* The metadata string under key, or NULL when the file has none. The
 * pointer lives as long as f. */
const char *st_meta(const st_file *f, const char *key);

/* Copy every parameter of m from f into params (m->param_floats floats,
 * parameter i at m->param[i].offset). Every parameter is checked before any
 * is copied, so a failure leaves params as it was: RNNC_EINPUT for a missing
 * tensor, RNNC_ESHAPE for a wrong dtype or shape, RNNC_EFORMAT for a byte
 * range outside the file. */
int st_load_params(const st_file *f, const rnnc_aot_model *m, float *params, char *err, size_t errlen);

/* Write m's parameters from params to path as F32 tensors, in the order and
 * layout rnnc writes (sorted by name, header padded to 8 bytes), with the
 * metadata pairs meta[0], meta[1], ... (nmeta pairs: key, value), so that
 * `rnnc sample`, `rnnc eval` and `rnnc run` read it. It goes to path.tmp
 * first and is renamed over path when complete. RNNC_EIO ("out.st: cannot
 * write: ...") or RNNC_ENOMEM on failure. */
int st_save_params(const char *path, const rnnc_aot_model *m, const float *params, int nmeta,
                   const char *const *meta, char *err, size_t errlen);

#endif
