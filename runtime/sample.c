/* sample.c — drawing the next token from a probability row (greedy,
 * temperature, top-k) and beam search over a step callback.
 *
 * Both are plain C over numbers the compiled generation model gives
 * (ir/genmodel.c): probabilities [V] per row for sample_token, log-
 * probabilities [K, V] for beam_search. Everything is deterministic: ties
 * are broken by ids, a draw uses exactly one rng_uniform.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

/* ---- sample_token ---------------------------------------------------------- */

/* A probability as a sort key: anything not > 0 (0, negative, NaN) is 0. */
static double pkey(float p) { return p > 0 ? (double)p : 0; }

/* Whether token a ranks before token b: more probable, then lower id. */
static int pbefore(const float *p, int a, int b)
{
  double x = pkey(p[a]), y = pkey(p[b]);
  return x > y || (x == y && a < b);
}

/* Rearrange idx[0 .. n) so that idx[k] is the token of rank k (pbefore's
 * order, a total order) and every token before it ranks before it. */
static void topk_select(const float *p, int *idx, int n, int k)
{
  int lo = 0, hi = n - 1;
  while (lo < hi) {
    int piv = idx[lo + (hi - lo) / 2], i = lo, j = hi;
    while (i <= j) {
      while (pbefore(p, idx[i], piv))
        i++;
      while (pbefore(p, piv, idx[j]))
        j--;
      if (i <= j) {
        int t = idx[i];
        idx[i++] = idx[j];
        idx[j--] = t;
      }
    }
    if (k <= j)
      hi = j;
    else if (k >= i)
      lo = i;
    else
      return;
  }
}

/* Temperature 0: the first largest p (no draw; r may be NULL). Else one
 * rng_uniform u, and the token where the cumulative sum, in id order, of the
 * kept tokens' weights w_i = (p_i / p_max)^(1/temperature) (computed as
 * exp((log p_i - log p_max) / temperature) in double) first exceeds u · Σ w.
 * Kept: the topk tokens of highest p (ties: lower id), all when topk <= 0 or
 * >= V; a token with p <= 0 is never drawn. A row with no positive entry
 * gives token 0's greedy answer. */
int sample_token(const float *p, int V, double temperature, int topk, Rng *r)
{
  if (V < 1)
    die("sample_token: V = %d", V);
  int best = 0;
  for (int i = 1; i < V; i++)
    if (pkey(p[i]) > pkey(p[best]))
      best = i;
  if (temperature <= 0)
    return best;
  double u = rng_uniform(r);
  if (!(pkey(p[best]) > 0))
    return best;

  /* the last kept token in rank order: i is kept when it ranks no later */
  int last = -1;
  if (topk > 0 && topk < V) {
    int stackidx[512], *idx = V <= 512 ? stackidx : malloc((size_t)V * sizeof *idx);
    if (!idx)
      die("out of memory");
    for (int i = 0; i < V; i++)
      idx[i] = i;
    topk_select(p, idx, V, topk - 1);
    last = idx[topk - 1];
    if (idx != stackidx)
      free(idx);
  }
  double lmax = log(pkey(p[best])), total = 0;
  for (int i = 0; i < V; i++)
    if (pkey(p[i]) > 0 && (last < 0 || !pbefore(p, last, i)))
      total += exp((log(pkey(p[i])) - lmax) / temperature);
  double target = u * total, acc = 0;
  int pick = best;
  for (int i = 0; i < V; i++) {
    if (!(pkey(p[i]) > 0) || (last >= 0 && pbefore(p, last, i)))
      continue;
    acc += exp((log(pkey(p[i])) - lmax) / temperature);
    pick = i;
    if (target < acc)
      break;
  }
  return pick;
}

/* ---- beam_search ------------------------------------------------------------ */

typedef struct Beam {
  int V;
  const double *cs;  /* [nalive·V] candidate scores: row score + log p */
} Beam;

/* Candidate a = row·V + token ranks before b: higher score, then lower
 * token, then lower row (a total order). */
static int cbefore(const Beam *bm, int a, int b)
{
  double x = bm->cs[a], y = bm->cs[b];
  if (x != y)
    return x > y;
  int ta = a % bm->V, tb = b % bm->V;
  return ta != tb ? ta < tb : a < b;
}

/* idx[0 .. k) the k best of idx[0 .. n) in rank order: a quickselect for the
 * k-th, then a sort of the first k. */
static void beam_select(const Beam *bm, int *idx, int n, int k)
{
  int lo = 0, hi = n - 1, want = k - 1;
  while (lo < hi) {
    int piv = idx[lo + (hi - lo) / 2], i = lo, j = hi;
    while (i <= j) {
      while (cbefore(bm, idx[i], piv))
        i++;
      while (cbefore(bm, piv, idx[j]))
        j--;
      if (i <= j) {
        int t = idx[i];
        idx[i++] = idx[j];
        idx[j--] = t;
      }
    }
    if (want <= j)
      hi = j;
    else if (want >= i)
      lo = i;
    else
      break;
  }
  for (int a = 1; a < k; a++) { /* insertion sort: k is small */
    int x = idx[a], b = a - 1;
    while (b >= 0 && cbefore(bm, x, idx[b])) {
      idx[b + 1] = idx[b];
      b--;
    }
    idx[b + 1] = x;
  }
}

/* The score a hypothesis of len tokens is ranked by at the end. */
static double normalized(double sum, int len, double lenpen)
{
  return lenpen > 0 && len > 0 ? sum / pow((double)len, lenpen) : sum;
}

/* The tokens of alive row r after step t (0-based), from the back pointers
 * tokh/parh [length, K], into seq[0 .. t]. */
static void trace(const int32_t *tokh, const int32_t *parh, int K, int t, int r, int32_t *seq)
{
  for (; t >= 0; t--) {
    seq[t] = tokh[(size_t)t * K + r];
    r = parh[(size_t)t * K + r];
  }
}

/* Steps t = 0 .. length-1. Alive rows are hypotheses of t tokens with no eos
 * (one row, the prefix, before step 0); the candidates are their extensions
 * by every token, scored by summed log-probability. An extension by eos ends
 * a hypothesis of t + 1 tokens: it is compared (normalized) with the best
 * finished one so far and kept if strictly better. The K best other
 * candidates (cbefore's order) are the next alive rows, fed to f unless t is
 * the last step; rows past the alive ones (fewer than K candidates) repeat
 * row 0 and are ignored. At the end the best alive row (length tokens)
 * competes with the best finished one, which wins ties. Without length
 * normalization the search stops as soon as the best finished sum is at
 * least the best alive one (extending never raises a sum). */
int beam_search(BeamStepFn f, void *ctx, int V, int K, int32_t first, int length, int eos, double lenpen,
                int32_t *out, double *score)
{
  if (V < 1 || K < 1 || length < 0 || first < 0 || first >= V || eos >= V)
    return RNNC_EINPUT;
  if (length == 0) {
    if (score)
      *score = 0;
    return RNNC_OK;
  }
  size_t KV = (size_t)K * V;
  float *logp = malloc(KV * sizeof *logp);
  double *cs = malloc(KV * sizeof *cs), *sc = calloc((size_t)K, sizeof *sc);
  int *idx = malloc(KV * sizeof *idx);
  int32_t *tok = malloc((size_t)K * sizeof *tok), *par = malloc((size_t)K * sizeof *par);
  int32_t *tokh = malloc((size_t)length * K * sizeof *tokh), *parh = malloc((size_t)length * K * sizeof *parh);
  int32_t *fin = malloc((size_t)length * sizeof *fin);
  if (!logp || !cs || !sc || !idx || !tok || !par || !tokh || !parh || !fin)
    die("out of memory");

  int nalive = 1, finlen = 0, st = RNNC_OK, t = 0;
  double finsum = -INFINITY, finnorm = -INFINITY;
  for (int k = 0; k < K; k++)
    tok[k] = first;
  st = f(ctx, tok, NULL, K, logp);
  for (t = 0; st == RNNC_OK && t < length; t++) {
    int n = 0;
    for (int r = 0; r < nalive; r++)
      for (int v = 0; v < V; v++) {
        double lp = logp[(size_t)r * V + v];
        cs[(size_t)r * V + v] = sc[r] + (isnan(lp) ? -INFINITY : lp);
        if (v == eos) {
          double s = cs[(size_t)r * V + v], nm = normalized(s, t + 1, lenpen);
          if (finlen == 0 || nm > finnorm) {
            finnorm = nm, finsum = s, finlen = t + 1;
            if (t > 0)
              trace(tokh, parh, K, t - 1, r, fin);
            fin[t] = eos;
          }
        } else
          idx[n++] = r * V + v;
      }
    if (n == 0) {
      nalive = 0;
      break;
    }
    Beam bm = {V, cs};
    int keep = n < K ? n : K;
    beam_select(&bm, idx, n, keep);
    for (int k = 0; k < K; k++) {
      int c = idx[k < keep ? k : 0];
      tok[k] = c % V;
      par[k] = k < keep ? c / V : 0;
      tokh[(size_t)t * K + k] = tok[k];
      parh[(size_t)t * K + k] = par[k];
    }
    for (int k = 0; k < keep; k++)
      sc[k] = cs[idx[k]];
    nalive = keep;
    if (lenpen <= 0 && finlen > 0 && finsum >= sc[0]) {
      nalive = 0; /* nothing alive can beat the finished one */
      break;
    }
    if (t + 1 < length)
      st = f(ctx, tok, par, K, logp);
  }
  if (st == RNNC_OK) {
    if (nalive > 0 && (finlen == 0 || normalized(sc[0], length, lenpen) > finnorm)) {
      trace(tokh, parh, K, length - 1, 0, out);
      if (score)
        *score = sc[0];
    } else {
      memcpy(out, fin, (size_t)finlen * sizeof *out);
      for (int i = finlen; i < length; i++)
        out[i] = eos;
      if (score)
        *score = finsum;
    }
  }
  free(logp), free(cs), free(sc), free(idx), free(tok), free(par), free(tokh), free(parh), free(fin);
  return st;
}
