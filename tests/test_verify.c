/* test_verify.c — well-formed cells and models verify, with the shapes, dims,
 * parameters and loss the verifier infers. (Malformed ones: test_errors.c.) */
#include <criterion/criterion.h>
#include <string.h>

#include "testutil.h"

/* Parse and verify text; fails the test with the diagnostics on an error. */
static Module *load(const char *text)
{
  Module *m = module_new();
  const Source *src = source_new(m, "<test>", text);
  int st = parse(m, src);
  if (st == RNNC_OK)
    st = verify(m);
  cr_assert_eq(st, RNNC_OK, "does not verify:\n%s", diags_string(m->arena, &m->diags));
  cr_assert_eq(m->diags.n, 0, "unexpected diagnostics:\n%s", diags_string(m->arena, &m->diags));
  return m;
}

static const char *shp(Module *m, const Shape *s) { return shape_str(m->arena, s); }

static int cnode(const Cell *c, const char *name)
{
  for (int i = 0; i < c->nnode; i++)
    if (c->node[i].name && strcmp(c->node[i].name, name) == 0)
      return i;
  cr_assert_fail("cell %s has no node %s", c->name, name);
  return -1;
}

static MNode *mnode(Model *md, const char *name)
{
  for (int i = 0; i < md->nnode; i++)
    if (md->node[i].name && strcmp(md->node[i].name, name) == 0)
      return &md->node[i];
  cr_assert_fail("model %s has no node %s", md->name, name);
  return NULL;
}

static const MParam *mparam(const MNode *n, const char *name)
{
  for (int i = 0; i < n->nparam; i++)
    if (strcmp(n->param[i].name, name) == 0)
      return &n->param[i];
  cr_assert_fail("node %s has no param %s", n->name, name);
  return NULL;
}

#define SHAPE_IS(m, s, want) cr_assert_str_eq(shp((m), (s)), (want))

Test(verify, prelude_cells)
{
  Module *m = module_new();
  Cell *lstm = cell_find(m, "lstm"), *gru = cell_find(m, "gru"), *rnn = cell_find(m, "rnn");
  cr_assert(lstm && gru && rnn);
  cr_assert_eq(lstm->verified, 1);
  cr_assert_eq(lstm->ndim, 2);
  cr_assert_str_eq(lstm->dim[0], "I");
  cr_assert_str_eq(lstm->dim[1], "H");
  SHAPE_IS(m, &lstm->node[cnode(lstm, "W_ih")].shape, "[4*H, I]");
  SHAPE_IS(m, &lstm->node[cnode(lstm, "W_hh")].shape, "[4*H, H]");
  SHAPE_IS(m, &lstm->node[cnode(lstm, "gates")].shape, "[4*H]");
  SHAPE_IS(m, &lstm->node[cnode(lstm, "g")].shape, "[H]");
  SHAPE_IS(m, &lstm->node[lstm->next[1]].shape, "[H]");
  SHAPE_IS(m, &lstm->node[lstm->out[0]].shape, "[H]");
  SHAPE_IS(m, &gru->node[cnode(gru, "gi")].shape, "[3*H]");
  SHAPE_IS(m, &gru->node[cnode(gru, "n")].shape, "[H]");
  SHAPE_IS(m, &rnn->node[rnn->next[0]].shape, "[H]");
  cr_assert_eq(m->diags.n, 0);
  module_free(m);
}

Test(verify, bidirectional_tagger)
{
  Module *m = load("model tagger(V, E = 8, H = 4, K) {\n"
                   "  input tokens: i32[T, B], tags: i32[T, B]\n"
                   "  x = embedding(tokens, V, E)\n"
                   "  enc.fwd = lstm(x, H = H)\n"
                   "  enc.bwd = lstm(x, H = H, backward)\n"
                   "  both = concat(enc.fwd, enc.bwd)\n"
                   "  loss = softmax(both, K, target = tags, ignore = 0)\n"
                   "  output loss\n"
                   "}\n");
  Model *md = model_find(m, "tagger");
  MNode *x = mnode(md, "x"), *fwd = mnode(md, "enc.fwd"), *bwd = mnode(md, "enc.bwd");
  MNode *both = mnode(md, "both"), *loss = mnode(md, "loss");
  SHAPE_IS(m, &x->shape, "[T, B, E]");
  cr_assert(x->hastime);
  SHAPE_IS(m, &mparam(x, "weight")->shape, "[V, E]");
  cr_assert_str_eq(mparam(x, "weight")->full, "x.weight");
  SHAPE_IS(m, &fwd->shape, "[T, B, H]");
  cr_assert_eq(fwd->cell, cell_find(m, "lstm"));
  cr_assert_str_eq(dim_str(m->arena, fwd->dimval[0]), "E"); /* I */
  cr_assert_str_eq(dim_str(m->arena, fwd->dimval[1]), "H");
  cr_assert_eq(fwd->nparam, 4);
  cr_assert_str_eq(mparam(fwd, "W_ih")->full, "enc.fwd.W_ih");
  SHAPE_IS(m, &mparam(fwd, "W_ih")->shape, "[4*H, E]");
  SHAPE_IS(m, &mparam(bwd, "W_hh")->shape, "[4*H, H]");
  cr_assert_str_eq(mparam(bwd, "b_hh")->full, "enc.bwd.b_hh");
  cr_assert(bwd->backward);
  SHAPE_IS(m, &both->shape, "[T, B, 2*H]");
  SHAPE_IS(m, &loss->shape, "[]");
  SHAPE_IS(m, &mparam(loss, "weight")->shape, "[K, 2*H]");
  SHAPE_IS(m, &mparam(loss, "bias")->shape, "[K]");
  cr_assert_eq(md->loss, (int)(loss - md->node));
  module_free(m);
}

Test(verify, stacked_lm_with_probs)
{
  Module *m = load("model lm(V, E = 8, H = 4) {\n"
                   "  input tokens: i32[T, B]\n"
                   "  x = embedding(tokens, V, E)\n"
                   "  l1 = gru(x, H = H)\n"
                   "  l2 = gru(l1, H = 2*H)\n"
                   "  s = softmax(l2, V)\n"
                   "  z = logits(s)\n"
                   "  output s, z\n"
                   "}\n");
  Model *md = model_find(m, "lm");
  MNode *l2 = mnode(md, "l2");
  SHAPE_IS(m, &l2->shape, "[T, B, 2*H]");
  SHAPE_IS(m, &mparam(l2, "W_ih")->shape, "[6*H, H]");
  SHAPE_IS(m, &mnode(md, "s")->shape, "[T, B, V]");
  SHAPE_IS(m, &mnode(md, "z")->shape, "[T, B, V]");
  cr_assert_eq(md->loss, -1);
  module_free(m);
}

Test(verify, many_to_one_classifier)
{
  Module *m = load("model cls(V, E = 8, H = 4, K = 3) {\n"
                   "  input tokens: i32[T, B], label: i32[B]\n"
                   "  x = embedding(tokens, V, E)\n"
                   "  h = gru(x, H = H)\n"
                   "  loss = softmax(last(h), K, target = label)\n"
                   "  output loss\n"
                   "}\n");
  Model *md = model_find(m, "cls");
  MNode *loss = mnode(md, "loss");
  SHAPE_IS(m, &md->node[loss->arg[0]].shape, "[B, H]");
  SHAPE_IS(m, &mparam(loss, "weight")->shape, "[K, H]");
  cr_assert_eq(md->loss, (int)(loss - md->node));
  module_free(m);
}

Test(verify, seq2seq_init_and_final)
{
  Module *m = load("model s2s(V, E = 8, H = 4) {\n"
                   "  input src: i32[S, B], tgt: i32[T, B], h0: f32[B, H], c0: f32[B, H]\n"
                   "  xs = embedding(src, V, E)\n"
                   "  xt = embedding(tgt, V, E)\n"
                   "  enc = lstm(xs, H = H, init = (h0, c0))\n"
                   "  dec = lstm(xt, H = H, init = enc)\n"
                   "  c = final(enc, c)\n"
                   "  output dec, c\n"
                   "}\n");
  Model *md = model_find(m, "s2s");
  MNode *enc = mnode(md, "enc"), *dec = mnode(md, "dec"), *c = mnode(md, "c");
  SHAPE_IS(m, &enc->shape, "[S, B, H]");
  SHAPE_IS(m, &dec->shape, "[T, B, H]");
  cr_assert_eq(dec->initfrom, (int)(enc - md->node));
  cr_assert_eq(enc->ninit, 2);
  SHAPE_IS(m, &c->shape, "[B, H]");
  cr_assert_eq(c->stateidx, 1);
  cr_assert_eq(c->hastime, 0);
  module_free(m);
}

/* A user cell: the signature's dims in order of appearance, a dim solved
 * from an input of size 2*H, slices and concat. */
Test(verify, user_cell_dims_and_solving)
{
  Module *m = load("cell halves(x: [2*H]) state(h: [H]) {\n"
                   "  param W: [H, 2*H], U: [H, H], s: [H]\n"
                   "  lo = slice(x, 0, H)\n"
                   "  hi = slice(x, H, H)\n"
                   "  v = concat(lo * hi, h)\n"
                   "  h' = tanh(W @ v + U @ h) * s\n"
                   "  out h'\n"
                   "}\n"
                   "model d(E = 3) {\n"
                   "  input x: f32[T, B, 2*E]\n"
                   "  y = halves(x)\n"
                   "  loss = sum(y)\n"
                   "  output loss\n"
                   "}\n");
  Cell *c = cell_find(m, "halves");
  cr_assert_eq(c->ndim, 1);
  cr_assert_str_eq(c->dim[0], "H");
  SHAPE_IS(m, &c->node[cnode(c, "v")].shape, "[2*H]");
  SHAPE_IS(m, &c->node[cnode(c, "hi")].shape, "[H]");
  Model *md = model_find(m, "d");
  MNode *y = mnode(md, "y");
  cr_assert_str_eq(dim_str(m->arena, y->dimval[0]), "E");
  SHAPE_IS(m, &y->shape, "[T, B, E]");
  SHAPE_IS(m, &mparam(y, "W")->shape, "[E, 2*E]");
  cr_assert_eq(md->loss, (int)(mnode(md, "loss") - md->node));
  module_free(m);
}

/* Matvec_t, outer and grad statements: a hand-written backward cell. */
Test(verify, backward_cell_shapes)
{
  Module *m = load("cell lin.backward(x: [I], dy: [H]) state(dh: [H]) {\n"
                   "  param W: [H, I]\n"
                   "  dh' = dh + dy\n"
                   "  grad W = outer(dh', x)\n"
                   "  out matvec_t(W, dh')\n"
                   "}\n");
  Cell *c = cell_find(m, "lin.backward");
  SHAPE_IS(m, &c->node[c->grad[0]].shape, "[H, I]");
  SHAPE_IS(m, &c->node[c->out[0]].shape, "[I]");
  cr_assert_eq(c->ndim, 2);
  cr_assert_str_eq(c->dim[0], "I");
  cr_assert_str_eq(c->dim[1], "H");
  module_free(m);
}
