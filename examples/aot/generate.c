/* generate.c — text from the character language model examples/charlm.rnn,
 * compiled ahead of time: no LLVM and no rnnc compiler at run time, only the
 * object `rnnc compile` wrote, its header charlm.h and the runtime librnnc_rt.
 *
 *   rnnc compile examples/charlm.rnn -o charlm.o --header charlm.h --prefix charlm \
 *       --train --batch 32 --seq 64 --cpu native --dim V=96
 *   cc -O2 generate.c safetensors.c charlm.o -I. -Iinclude -Lbuild \
 *       -lrnnc_rt -lsleef -lm -ljansson -fopenmp -o generate
 *   ./generate CKPT [--prefix TEXT] [--length N] [--greedy | --temperature X] [--seed N] [--threads N]
 *
 * CKPT is a checkpoint of `rnnc train` (or train.c's --save): the parameters
 * and the vocabulary (metadata "rnnc.vocab"). The compiled model's sizes (V,
 * E, H) must be the checkpoint's. The prefix is fed one token at a time
 * through the compiled step program (charlm_step: one token in, the next
 * token's probabilities out, the LSTM states carried in the workspace); then
 * --length tokens follow, each the most probable (--greedy) or drawn from
 * p^(1/X) renormalized (--temperature X, default 1) with the seeded generator
 * of rng.h. It prints the prefix and what follows, as `rnnc sample` does —
 * and the same text: the same step computation (bitwise, for --cpu native),
 * the same rule for picking a token (runtime/sample.c without top-k) and the
 * same generator and seed (default 1). Without --prefix generation starts
 * from token 0, which is not printed.
 */
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "charlm.h"
#include "rng.h"
#include "safetensors.h"

_Static_assert(CHARLM_STEP_B == 1, "generate.c feeds one row: compile with --step-batch 1 (the default)");

static void usage(void)
{
  fputs("usage: generate CKPT [--prefix TEXT] [--length N] [--greedy | --temperature X] [--seed N] [--threads N]\n",
        stderr);
  exit(2);
}

/* ---- the vocabulary of a checkpoint (rnnc.vocab: {"kind", "tokens"}) ---- */

enum { VOC_BYTE, VOC_CHAR, VOC_WORD };
typedef struct Vocab {
  int kind, n;
  char **tok;   /* [n] token i's bytes (NUL-terminated) */
  size_t *len;  /* [n] */
} Vocab;

static void vocab_free(Vocab *v)
{
  for (int i = 0; v->tok && i < v->n; i++)
    free(v->tok[i]);
  free(v->tok);
  free(v->len);
}

/* Token i of v is s[0 .. n). */
static int vocab_add(Vocab *v, int i, const char *s, size_t n)
{
  if (!(v->tok[i] = malloc(n + 1)))
    return 0;
  memcpy(v->tok[i], s, n);
  v->tok[i][n] = 0;
  v->len[i] = n;
  return 1;
}

/* v from the JSON text of rnnc.vocab; 0 with a message in err. */
static int vocab_read(Vocab *v, const char *json, char *err, size_t errlen)
{
  memset(v, 0, sizeof *v);
  json_error_t je;
  json_t *o = json_loads(json, 0, &je), *k = json_object_get(o, "kind"), *a = json_object_get(o, "tokens");
  const char *kind = json_string_value(k);
  int ok = 0;
  if (!kind)
    snprintf(err, errlen, "rnnc.vocab is not {\"kind\": ...}");
  else if (strcmp(kind, "byte") != 0 && !json_is_array(a))
    snprintf(err, errlen, "rnnc.vocab of kind '%s' has no \"tokens\" array", kind);
  else {
    v->kind = strcmp(kind, "byte") == 0 ? VOC_BYTE : strcmp(kind, "char") == 0 ? VOC_CHAR : VOC_WORD;
    v->n = v->kind == VOC_BYTE ? 256 : (int)json_array_size(a);
    v->tok = calloc((size_t)v->n, sizeof *v->tok);
    v->len = calloc((size_t)v->n, sizeof *v->len);
    ok = v->tok && v->len;
    for (int i = 0; ok && i < v->n; i++) {
      char c = (char)i;
      json_t *s = v->kind == VOC_BYTE ? NULL : json_array_get(a, (size_t)i);
      ok = v->kind == VOC_BYTE ? vocab_add(v, i, &c, 1)
                               : json_is_string(s) && vocab_add(v, i, json_string_value(s), json_string_length(s));
    }
    if (!ok)
      snprintf(err, errlen, "rnnc.vocab: a token is not a string (or out of memory)");
  }
  json_decref(o);
  return ok;
}

/* The id of token s[0 .. n), or -1. */
static int vocab_find(const Vocab *v, const char *s, size_t n)
{
  if (v->kind == VOC_BYTE)
    return n == 1 ? (unsigned char)s[0] : -1;
  for (int i = 0; i < v->n; i++)
    if (v->len[i] == n && memcmp(v->tok[i], s, n) == 0)
      return i;
  return -1;
}

/* The length of the UTF-8 sequence at s (1 for a byte that starts none). */
static size_t utf8_len(const unsigned char *s, size_t left)
{
  size_t n = s[0] < 0xc0 ? 1 : s[0] < 0xe0 ? 2 : s[0] < 0xf0 ? 3 : 4;
  return n <= left ? n : 1;
}

/* text as token ids (*ids malloc'ed, *n of them); 0 with a message in err. */
static int encode(const Vocab *v, const char *text, int32_t **ids, size_t *n, char *err, size_t errlen)
{
  size_t len = strlen(text), k = 0;
  int32_t *out = malloc((len + 1) * sizeof *out);
  if (!out) {
    snprintf(err, errlen, "out of memory");
    return 0;
  }
  for (size_t i = 0; i < len;) {
    size_t m;
    if (v->kind == VOC_WORD) { /* whitespace-separated words; unknown ones are <unk> (id 0) */
      while (i < len && strchr(" \t\n\r\v\f", text[i]))
        i++;
      for (m = 0; i + m < len && !strchr(" \t\n\r\v\f", text[i + m]); m++)
        ;
      if (m > 0) {
        int id = vocab_find(v, text + i, m);
        out[k++] = id < 0 ? 0 : id;
      }
    } else {
      m = v->kind == VOC_BYTE ? 1 : utf8_len((const unsigned char *)text + i, len - i);
      int id = vocab_find(v, text + i, m);
      if (id < 0) {
        snprintf(err, errlen, "--prefix: the character '%.*s' at byte %zu is not in the vocabulary", (int)m, text + i, i);
        free(out);
        return 0;
      }
      out[k++] = id;
    }
    i += m;
  }
  *ids = out;
  *n = k;
  return 1;
}

/* The text of ids (words joined by spaces) to stdout. */
static void print_tokens(const Vocab *v, const int32_t *ids, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    if (v->kind == VOC_WORD && i > 0)
      putchar(' ');
    fwrite(v->tok[ids[i]], 1, v->len[ids[i]], stdout);
  }
}

/* ---- picking the next token ---- */

static double pkey(float p) { return p > 0 ? (double)p : 0; }

/* Temperature <= 0: the first most probable token. Else one uniform draw u
 * and the token where the running sum, in id order, of the weights
 * w_i = (p_i / p_max)^(1/temperature) first exceeds u * sum(w) (tokens with
 * p <= 0 never drawn): rnnc's sample_token. */
static int pick(const float *p, int V, double temperature, ex_rng *r)
{
  int best = 0;
  for (int i = 1; i < V; i++)
    if (pkey(p[i]) > pkey(p[best]))
      best = i;
  if (temperature <= 0)
    return best;
  double u = ex_rng_uniform(r);
  if (!(pkey(p[best]) > 0))
    return best;
  double lmax = log(pkey(p[best])), total = 0, acc = 0;
  for (int i = 0; i < V; i++)
    if (pkey(p[i]) > 0)
      total += exp((log(pkey(p[i])) - lmax) / temperature);
  int chosen = best;
  for (int i = 0; i < V; i++) {
    if (!(pkey(p[i]) > 0))
      continue;
    acc += exp((log(pkey(p[i])) - lmax) / temperature);
    chosen = i;
    if (u * total < acc)
      break;
  }
  return chosen;
}

/* The size of the step program's output: its last dimension (V). */
static int step_vocab(void)
{
  const rnnc_aot_prog *p = charlm_model.prog[RNNC_AOT_STEP];
  for (int64_t i = 0; i < p->ntensor; i++)
    if (p->tensor[i].role == RNNC_AOT_OUTPUT)
      return (int)p->tensor[i].dim[p->tensor[i].rank - 1];
  return 0;
}

static long number(const char *s, const char *opt)
{
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (!*s || *end || errno || v < 0) {
    fprintf(stderr, "generate: %s wants a number >= 0, not '%s'\n", opt, s);
    exit(2);
  }
  return v;
}

int main(int argc, char **argv)
{
  const char *ckpt = NULL, *prefix = NULL;
  long length = 200, threads = 0;
  double temperature = 1;
  uint64_t seed = 1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--greedy") == 0)
      temperature = 0;
    else if (a[0] == '-' && a[1] == '-' && !val)
      usage();
    else if (strcmp(a, "--prefix") == 0)
      prefix = argv[++i];
    else if (strcmp(a, "--length") == 0)
      length = number(argv[++i], a);
    else if (strcmp(a, "--seed") == 0)
      seed = (uint64_t)number(argv[++i], a);
    else if (strcmp(a, "--threads") == 0)
      threads = number(argv[++i], a);
    else if (strcmp(a, "--temperature") == 0) {
      char *end;
      temperature = strtod(argv[++i], &end);
      if (*end || !(temperature >= 0))
        usage();
    } else if (a[0] == '-' || ckpt)
      usage();
    else
      ckpt = a;
  }
  if (!ckpt)
    usage();

  /* the parameters and the vocabulary from the checkpoint */
  char err[1024];
  st_file *f = st_open(ckpt, NULL, err, sizeof err);
  if (!f) {
    fprintf(stderr, "generate: %s\n", err);
    return 1;
  }
  const char *vj = st_meta(f, "rnnc.vocab");
  Vocab v;
  if (!vj) {
    fprintf(stderr, "generate: %s holds no vocabulary (rnnc.vocab): use a checkpoint of rnnc train\n", ckpt);
    st_close(f);
    return 1;
  }
  if (!vocab_read(&v, vj, err, sizeof err)) {
    fprintf(stderr, "generate: %s: %s\n", ckpt, err);
    vocab_free(&v);
    st_close(f);
    return 1;
  }
  int V = step_vocab(), status = 1;
  int nth = threads > 0 ? (int)threads : omp_get_max_threads();
  size_t pbytes = ((size_t)CHARLM_PARAM_FLOATS * sizeof(float) + 63) / 64 * 64;
  size_t wsbytes = (CHARLM_STEP_WS_BYTES(nth) + 63) / 64 * 64;
  float *params = aligned_alloc(64, pbytes), *probs = malloc((size_t)V * sizeof *probs);
  void *ws = aligned_alloc(64, wsbytes);
  int32_t *pre = NULL, *out = malloc((size_t)(length ? length : 1) * sizeof *out);
  size_t npre = 0;
  if (!params || !probs || !ws || !out) {
    fprintf(stderr, "generate: out of memory\n");
    goto done;
  }
  memset(params, 0, pbytes);
  if (v.n != V) {
    fprintf(stderr, "generate: %s has a vocabulary of %d tokens, but charlm.o was compiled for V = %d: "
                    "compile it with --dim V=%d\n", ckpt, v.n, V, v.n);
    goto done;
  }
  if (st_load_params(f, &charlm_model, params, err, sizeof err) != RNNC_OK) {
    fprintf(stderr, "generate: %s\n", err);
    goto done;
  }
  if (charlm_step_init(ws, wsbytes, nth) != RNNC_OK) {
    fprintf(stderr, "generate: %s\n", rnnc_aot_message(NULL));
    goto done;
  }
  if (prefix && *prefix && !encode(&v, prefix, &pre, &npre, err, sizeof err)) {
    fprintf(stderr, "generate: %s\n", err);
    goto done;
  }
  if (npre == 0) { /* no prefix: start from token 0, not printed */
    free(pre);
    if (!(pre = calloc(1, sizeof *pre)))
      goto done;
    npre = 1;
    prefix = NULL;
  }

  /* the prefix but its last token, then each chosen token in turn */
  int32_t tok;
  charlm_step_io io = {.tokens = &tok, .loss = probs}; /* probs [1, 1, V] */
  ex_rng r;
  ex_rng_seed(&r, seed);
  charlm_step_reset(ws);
  for (size_t i = 0; i + 1 < npre; i++) {
    tok = pre[i];
    if (charlm_step(ws, params, &io) != RNNC_OK) {
      fprintf(stderr, "generate: %s\n", charlm_message(ws));
      goto done;
    }
  }
  tok = pre[npre - 1];
  for (long i = 0; i < length; i++) {
    if (charlm_step(ws, params, &io) != RNNC_OK) {
      fprintf(stderr, "generate: %s\n", charlm_message(ws));
      goto done;
    }
    tok = out[i] = pick(probs, V, temperature, &r);
  }
  printf("%s%s", prefix ? prefix : "", prefix && v.kind == VOC_WORD ? " " : "");
  print_tokens(&v, out, (size_t)length);
  putchar('\n');
  status = 0;
done:
  free(params);
  free(probs);
  free(ws);
  free(pre);
  free(out);
  vocab_free(&v);
  st_close(f);
  return status;
}
