/* checkpoint.c — what identifies a training checkpoint: the hash of the
 * model it was saved from.
 *
 * require: a parsed (preferably verified) model. produce: model_hash.
 * The checkpoint file itself is a safetensors file written atomically by
 * safetensors_write; the RNG state travels as rng_to_string (rng.c). */
#include <stdlib.h>
#include <string.h>

#include "ir.h"

/* FNV-1a, 64 bits, over n bytes, continuing from h. */
static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++) {
    h ^= b[i];
    h *= 0x100000001b3u;
  }
  return h;
}

/* The cell a model node applies: resolved by verify, else looked up. */
static Cell *node_cell(Module *m, const MNode *n)
{
  if (n->cell)
    return n->cell;
  return n->cellname ? cell_find(m, n->cellname) : NULL;
}

/* FNV-1a 64 of the canonical text of every cell md applies (each once, in
 * order of first use, prelude cells included: a changed built-in changes
 * what the parameters mean), then of md itself. The printer's canonical
 * text drops comments and spacing, so only a change in meaning (a cell's
 * equations, a dim default, a node) changes the hash. */
uint64_t model_hash(Module *m, const Model *md)
{
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  if (!f)
    die("model_hash: out of memory");
  const Cell **seen = calloc((size_t)md->nnode + 1, sizeof *seen);
  if (!seen)
    die("model_hash: out of memory");
  int nseen = 0;
  for (int i = 0; i < md->nnode; i++) {
    if (md->node[i].kind != M_CELL)
      continue;
    const Cell *c = node_cell(m, &md->node[i]);
    int dup = c == NULL;
    for (int k = 0; k < nseen && !dup; k++)
      dup = seen[k] == c;
    if (dup)
      continue;
    seen[nseen++] = c;
    print_cell(f, c);
  }
  print_model(f, md);
  if (fclose(f) != 0)
    die("model_hash: out of memory");
  uint64_t h = fnv1a(0xcbf29ce484222325u, text, len);
  free(text);
  free(seen);
  return h;
}
