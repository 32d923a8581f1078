/* rng.c — the seeded random generator: xoshiro256** (Blackman & Vigna),
 * its state filled from the seed by splitmix64. Integer arithmetic only up to
 * rng_uniform, so a seed gives the same stream on every platform; rng_normal
 * adds libm's log, sqrt and cos. */
#include <math.h>

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
