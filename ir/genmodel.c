/* genmodel.c — the model for generation: from a language model, the model
 * that gives the next-token probabilities, to be compiled for T = 1 with its
 * cells' states carried from run to run (CompileOpts.carry).
 *
 * require: a verified model md of m.
 * produce: a verified model "<md>_gen" in m: the nodes the loss's softmax
 *          reads (transitively, in md's order; every other node dropped, the
 *          target input with them), the same names, dims and parameters, the
 *          softmax without its target or ignore index as the only output
 *          (probabilities [T, B, K]). The caller runs schedule(m) before
 *          compiling it (its cells are md's, often scheduled already).
 *
 * A language model here: its loss is a softmax with a target over a sequence
 * [T, B, d], which reads one model input, token ids i32[T, B] through an
 * embedding or onehot (and perhaps masks, f32[T, B], which the caller sets
 * to 1), and runs no cell backward in time (a state carried from step to
 * step cannot see the future).
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
  if (err && errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return RNNC_EVERIFY;
}

/* Mark node i and every node it reads (operands, initial states), not the
 * softmax's target. */
static void mark(const Model *md, int i, char *need)
{
  if (need[i])
    return;
  need[i] = 1;
  const MNode *n = &md->node[i];
  for (int k = 0; k < n->narg; k++)
    mark(md, n->arg[k], need);
  for (int k = 0; k < n->ninit; k++)
    mark(md, n->init[k], need);
  if (n->kind == M_CELL && n->initfrom >= 0)
    mark(md, n->initfrom, need);
}

/* Whether md is one of ours: a single output, a softmax without a target. */
static int isgen(const Model *md)
{
  return md->noutput == 1 && md->node[md->output[0]].kind == M_SOFTMAX && md->node[md->output[0]].target < 0;
}

/* The checks of a language model on the needed nodes; RNNC_OK or
 * RNNC_EVERIFY with the message. */
static int check(const Model *md, const char *need, char *err, size_t errlen)
{
  int tokens = -1, nin = 0, in[2] = {-1, -1};
  for (int i = 0; i < md->nnode; i++) {
    const MNode *n = &md->node[i];
    if (!need[i])
      continue;
    if (n->kind == M_CELL && n->backward)
      return fail(err, errlen, "cannot generate with '%s': it runs backward in time", n->name);
    if (n->kind == M_EMBEDDING || n->kind == M_ONEHOT) {
      const MNode *a = &md->node[n->arg[0]];
      if (a->kind == M_INPUT && a->dtype == DT_I32 && a->hastime)
        tokens = n->arg[0];
    }
    if (n->kind == M_INPUT && !mnode_is_mask(n) && nin++ < 2)
      in[nin - 1] = i;
  }
  if (tokens < 0)
    return fail(err, errlen, "model '%s' has no token input i32[T, B] read by an embedding or onehot", md->name);
  if (nin > 2)
    return fail(err, errlen, "model '%s' reads inputs '%s', '%s' and %d more: generation feeds one input, the tokens",
                md->name, md->node[in[0]].name, md->node[in[1]].name, nin - 2);
  if (nin == 2)
    return fail(err, errlen, "model '%s' reads inputs '%s' and '%s': generation feeds one input, the tokens",
                md->name, md->node[in[0]].name, md->node[in[1]].name);
  return RNNC_OK;
}

int model_for_generation(Module *m, const Model *md, Model **out, char *err, size_t errlen)
{
  *out = NULL;
  if (md->verified != 1)
    die("model_for_generation: model '%s' is not verified", md->name);
  int s = md->loss;
  if (s < 0 || md->node[s].kind != M_SOFTMAX || md->node[s].target < 0)
    return fail(err, errlen, "model '%s' has no softmax with a target", md->name);
  const MNode *sn = &md->node[s];
  if (!md->node[sn->arg[0]].hastime)
    return fail(err, errlen,
                "model '%s' is not a language model: softmax '%s' gives one class per sequence, "
                "not the next token",
                md->name, sn->name);

  char *need = calloc((size_t)md->nnode + 1, 1);
  int *map = malloc(((size_t)md->nnode + 1) * sizeof *map);
  if (!need || !map)
    die("out of memory");
  mark(md, s, need);
  int st = check(md, need, err, errlen);
  if (st) {
    free(need), free(map);
    return st;
  }

  const char *name = aprintf(m->arena, "%s_gen", md->name);
  Model *old = model_find(m, name);
  if (old) {
    free(need), free(map);
    if (old->verified == 1 && isgen(old)) {
      *out = old;
      return RNNC_OK;
    }
    return fail(err, errlen, "cannot make the generation model '%s': a model of that name exists", name);
  }

  Model *g = model_new(m, name, md->loc);
  for (int i = 0; i < md->ndim; i++)
    APUSH(m->arena, g->dim, g->ndim, g->capdim, md->dim[i]);
  for (int i = 0, k = 0; i < md->nnode; i++) /* first: operands may come later in md */
    map[i] = need[i] ? k++ : -1;
  for (int i = 0; i < md->nnode; i++) {
    if (!need[i])
      continue;
    MNode n = md->node[i];
    n.arg = aalloc(m->arena, ((size_t)n.narg + 1) * sizeof *n.arg);
    for (int k = 0; k < n.narg; k++)
      n.arg[k] = map[md->node[i].arg[k]];
    n.init = aalloc(m->arena, ((size_t)n.ninit + 1) * sizeof *n.init);
    for (int k = 0; k < n.ninit; k++)
      n.init[k] = map[md->node[i].init[k]];
    if (n.initfrom >= 0)
      n.initfrom = map[n.initfrom];
    if (i == s)
      n.target = -1, n.hasignore = 0, n.ignore = 0;
    n.cell = NULL, n.dimval = NULL, n.param = NULL, n.nparam = 0; /* verify fills them */
    n.shape = n.kind == M_INPUT ? n.shape : (Shape){0};
    n.hastime = 0;
    APUSH(m->arena, g->node, g->nnode, g->capnode, n);
  }
  Loc oloc = md->loc;
  for (int k = 0; k < md->noutput; k++)
    if (md->output[k] == s)
      oloc = md->outputloc[k];
  APUSH(m->arena, g->output, g->noutput, g->capoutput, map[s]);
  g->outputloc = aalloc(m->arena, sizeof *g->outputloc);
  g->outputloc[0] = oloc;
  free(need), free(map);

  int n0 = m->diags.n, nerr0 = m->diags.nerror;
  if (verify_model(m, g) != RNNC_OK) {
    /* not expected (md verified): report it and leave m as it was */
    fail(err, errlen, "the generation model '%s' does not verify: %s", name,
         m->diags.n > n0 ? m->diags.d[n0].msg : "(no message)");
    m->diags.n = n0, m->diags.nerror = nerr0;
    m->nmodel--;
    return RNNC_EVERIFY;
  }
  *out = g;
  return RNNC_OK;
}
