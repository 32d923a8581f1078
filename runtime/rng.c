/* rng.c — the seeded random generator: xoshiro256** (Blackman & Vigna),
 * its state filled from the seed by splitmix64. Integer arithmetic only up to
 * rng_uniform, so a seed gives the same stream on every platform; rng_normal
 * adds libm's log, sqrt and cos. A checkpoint keeps the state as 64 hex
 * digits (rng_to_string), so a resumed run continues the same stream. */
#include <math.h>
#include <stdio.h>

#include "ir.h"

static uint64_t splitmix64(uint64_t *x)
{
  uint64_t z = (*x += 0x9e3779b97f4a7c15u);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  return z ^ (z >> 31);
}

void rng_seed(Rng *r, uint64_t seed)
{
  /* splitmix64 never yields four zero words in a row, so the state is valid */
  for (int i = 0; i < 4; i++)
    r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t rng_next(Rng *r)
{
  uint64_t *s = r->s;
  uint64_t result = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

/* The top 53 bits as a multiple of 2^-53: every value k/2^53, k < 2^53. */
double rng_uniform(Rng *r) { return (double)(rng_next(r) >> 11) * 0x1.0p-53; }

/* Box-Muller, cosine half only: two uniforms per normal, no cached second
 * value, so the stream is a pure function of the state. u1 is in (0, 1]. */
double rng_normal(Rng *r)
{
  double u1 = 1.0 - rng_uniform(r);
  double u2 = rng_uniform(r);
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586476925 * u2);
}

/* The state as 64 lowercase hex digits, s[0] first, each word most
 * significant digit first (cut to len - 1 characters when len < 65). */
void rng_to_string(const Rng *r, char *buf, size_t len)
{
  if (!buf || len == 0)
    return;
  snprintf(buf, len, "%016llx%016llx%016llx%016llx", (unsigned long long)r->s[0],
           (unsigned long long)r->s[1], (unsigned long long)r->s[2], (unsigned long long)r->s[3]);
}

/* Exactly 64 hex digits (either case) and nothing else, not all zero (a
 * state xoshiro never leaves). RNNC_EFORMAT leaves r unchanged. */
int rng_from_string(Rng *r, const char *s)
{
  uint64_t w[4] = {0, 0, 0, 0};
  if (!s)
    return RNNC_EFORMAT;
  for (int i = 0; i < 64; i++) {
    char ch = s[i];
    int d;
    if (ch >= '0' && ch <= '9')
      d = ch - '0';
    else if (ch >= 'a' && ch <= 'f')
      d = ch - 'a' + 10;
    else if (ch >= 'A' && ch <= 'F')
      d = ch - 'A' + 10;
    else
      return RNNC_EFORMAT; /* also the end of a short string */
    w[i / 16] = w[i / 16] << 4 | (uint64_t)d;
  }
  if (s[64] != '\0' || (w[0] | w[1] | w[2] | w[3]) == 0)
    return RNNC_EFORMAT;
  for (int i = 0; i < 4; i++)
    r->s[i] = w[i];
  return RNNC_OK;
}
