/* util.c — die, arenas, interned names and the op table's data. */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

_Noreturn void die_(const char *file, int line, const char *fmt, ...)
{
  va_list ap;
  fprintf(stderr, "%s:%d: rnnc internal error: ", file, line);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  abort();
}

int errorf(int status, char *err, size_t errlen, const char *fmt, ...)
{
  if (err && errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return status;
}

/* ---- arena: a list of blocks, bump allocation, freed whole ---- */

typedef struct Block {
  struct Block *prev;
  size_t size, used;
  _Alignas(16) unsigned char mem[];
} Block;

struct Arena {
  Block *top;
};

Arena *arena_new(void)
{
  Arena *a = calloc(1, sizeof *a);
  if (!a)
    die("out of memory");
  return a;
}

void arena_free(Arena *a)
{
  if (!a)
    return;
  for (Block *b = a->top, *p; b; b = p) {
    p = b->prev;
    free(b);
  }
  free(a);
}

void *aalloc(Arena *a, size_t n)
{
  n = (n + 15) & ~(size_t)15;
  if (!a->top || a->top->size - a->top->used < n) {
    size_t size = n > 65536 ? n : 65536;
    Block *b = malloc(sizeof *b + size);
    if (!b)
      die("out of memory (needed %zu bytes)", n);
    b->prev = a->top;
    b->size = size;
    b->used = 0;
    a->top = b;
  }
  void *p = a->top->mem + a->top->used;
  a->top->used += n;
  memset(p, 0, n);
  return p;
}

char *astrndup(Arena *a, const char *s, size_t n)
{
  char *p = aalloc(a, n + 1);
  memcpy(p, s, n);
  p[n] = 0;
  return p;
}

char *astrdup(Arena *a, const char *s) { return astrndup(a, s, strlen(s)); }

char *aprintf(Arena *a, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  char *p = aalloc(a, (size_t)n + 1);
  va_start(ap, fmt);
  vsnprintf(p, (size_t)n + 1, fmt, ap);
  va_end(ap);
  return p;
}

void agrow(Arena *a, void **arr, int *cap, int n, size_t sz)
{
  if (n <= *cap)
    return;
  int nc = *cap ? *cap * 2 : 8;
  while (nc < n)
    nc *= 2;
  void *p = aalloc(a, (size_t)nc * sz);
  if (*cap)
    memcpy(p, *arr, (size_t)*cap * sz);
  *arr = p;
  *cap = nc;
}

/* ---- interned names: open hashing ---- */

struct Names {
  Arena *arena;
  const char **slot;
  size_t cap, n;
};

static size_t hash(const char *s, size_t n)
{
  size_t h = 1469598103934665603u;
  for (size_t i = 0; i < n; i++)
    h = (h ^ (unsigned char)s[i]) * 1099511628211u;
  return h;
}

Names *names_new(Arena *a)
{
  Names *t = aalloc(a, sizeof *t);
  t->arena = a;
  return t;
}

const char *intern(Names *t, const char *s, size_t n)
{
  if (2 * (t->n + 1) > t->cap) {
    size_t nc = t->cap ? 2 * t->cap : 256;
    const char **ns = aalloc(t->arena, nc * sizeof *ns);
    for (size_t i = 0; i < t->cap; i++) {
      if (!t->slot[i])
        continue;
      size_t j = hash(t->slot[i], strlen(t->slot[i])) & (nc - 1);
      while (ns[j])
        j = (j + 1) & (nc - 1);
      ns[j] = t->slot[i];
    }
    t->slot = ns;
    t->cap = nc;
  }
  size_t j = hash(s, n) & (t->cap - 1);
  for (; t->slot[j]; j = (j + 1) & (t->cap - 1))
    if (strncmp(t->slot[j], s, n) == 0 && t->slot[j][n] == 0)
      return t->slot[j];
  t->n++;
  return t->slot[j] = astrndup(t->arena, s, n);
}

/* ---- the op table ---- */

const OpInfo opinfo[NOPS] = {
#define X(id, sp, ar, sh, pr, ev) [OP_##id] = {sp, ar, sh, pr},
    OPS(X)
#undef X
};

int op_lookup(const char *spelling)
{
  for (int i = 0; i < NOPS; i++)
    if (opinfo[i].prec == 0 && opinfo[i].shape_rule != SH_LEAF &&
        strcmp(opinfo[i].spelling, spelling) == 0)
      return i;
  return -1;
}
