/* rng.h — the examples' seeded random generator: xoshiro256** (Blackman and
 * Vigna) with its state filled by four outputs of splitmix64 from a 64-bit
 * seed. It is the generator rnnc itself uses (docs/formats.md, "Random
 * numbers"), so with the same seed generate.c draws the tokens `rnnc sample`
 * draws, and train.c the stream offsets `rnnc train` draws. Integer
 * arithmetic only: the same stream on every platform. */
#ifndef EX_RNG_H
#define EX_RNG_H

#include <stdint.h>

typedef struct ex_rng {
  uint64_t s[4];
} ex_rng;

static inline uint64_t ex_splitmix64(uint64_t *x)
{
  uint64_t z = (*x += 0x9e3779b97f4a7c15u);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  return z ^ (z >> 31);
}

static inline void ex_rng_seed(ex_rng *r, uint64_t seed)
{
  for (int i = 0; i < 4; i++)
    r->s[i] = ex_splitmix64(&seed);
}

static inline uint64_t ex_rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/* The next 64 random bits. */
static inline uint64_t ex_rng_next(ex_rng *r)
{
  uint64_t *s = r->s;
  uint64_t result = ex_rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = ex_rotl(s[3], 45);
  return result;
}

/* Uniform in [0, 1): the top 53 bits times 2^-53. */
static inline double ex_rng_uniform(ex_rng *r) { return (double)(ex_rng_next(r) >> 11) * 0x1.0p-53; }

#endif
