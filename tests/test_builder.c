/* test_builder.c — the public API (include/rnnc.h): models built from C print
 * exactly like their text versions; errors give a status and an exact message;
 * a context with failed calls and an open builder closes without a leak. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "rnnc.h"
#include "testutil.h"

/* The canonical text of ctx's module (malloc'ed). */
static char *printed(rnnc_ctx *ctx)
{
  char *s = NULL;
  cr_assert_eq(rnnc_print_string(ctx, &s), RNNC_OK, "%s", rnnc_errmsg(ctx));
  cr_assert(s);
  return s;
}

/* ---- the same graph: node by node, not only the same text ---- */

static const char *dstr(Module *m, Dim d) { return dim_str(m->arena, d); }
static const char *sstr(Module *m, const Shape *s) { return shape_str(m->arena, s); }
static int samename(const char *a, const char *b) { return a == b || (a && b && !strcmp(a, b)); }
static int sameids(const int *a, const int *b, int n) { return n == 0 || !memcmp(a, b, (size_t)n * sizeof *a); }

static void same_cell(Module *ma, const Cell *a, Module *mb, const Cell *b)
{
  cr_assert_str_eq(a->name, b->name);
  cr_assert_eq(a->nnode, b->nnode, "cell %s: %d nodes built, %d from text", a->name, a->nnode, b->nnode);
  for (int i = 0; i < a->nnode; i++) {
    const Node *x = &a->node[i], *y = &b->node[i];
    cr_assert(x->op == y->op && samename(x->name, y->name) && x->narg == y->narg &&
                  sameids(x->arg, y->arg, x->narg) && x->cval == y->cval && x->k == y->k &&
                  x->n == y->n && !strcmp(sstr(ma, &x->shape), sstr(mb, &y->shape)) &&
                  !strcmp(dstr(ma, x->start), dstr(mb, y->start)),
              "cell %s: node %d differs (%s '%s' vs %s '%s')", a->name, i,
              opinfo[x->op].spelling, x->name ? x->name : "", opinfo[y->op].spelling,
              y->name ? y->name : "");
  }
  cr_assert(a->ninput == b->ninput && sameids(a->input, b->input, a->ninput));
  cr_assert(a->nstate == b->nstate && sameids(a->state, b->state, a->nstate) &&
            sameids(a->next, b->next, a->nstate));
  cr_assert(a->nparam == b->nparam && sameids(a->param, b->param, a->nparam));
  cr_assert(a->nout == b->nout && sameids(a->out, b->out, a->nout));
  cr_assert(a->ndim == b->ndim);
  for (int i = 0; i < a->ndim; i++)
    cr_assert_str_eq(a->dim[i], b->dim[i]);
}

static void same_model(Module *ma, const Model *a, Module *mb, const Model *b)
{
  cr_assert_str_eq(a->name, b->name);
  cr_assert_eq(a->ndim, b->ndim);
  for (int i = 0; i < a->ndim; i++)
    cr_assert(!strcmp(a->dim[i].name, b->dim[i].name) && a->dim[i].hasdefault == b->dim[i].hasdefault &&
              a->dim[i].def == b->dim[i].def);
  cr_assert_eq(a->nnode, b->nnode, "model %s: %d nodes built, %d from text", a->name, a->nnode, b->nnode);
  for (int i = 0; i < a->nnode; i++) {
    const MNode *x = &a->node[i], *y = &b->node[i];
    int same = x->kind == y->kind && samename(x->name, y->name) && x->narg == y->narg &&
               sameids(x->arg, y->arg, x->narg) && x->dtype == y->dtype &&
               !strcmp(sstr(ma, &x->shape), sstr(mb, &y->shape)) &&
               !strcmp(dstr(ma, x->size[0]), dstr(mb, y->size[0])) &&
               !strcmp(dstr(ma, x->size[1]), dstr(mb, y->size[1])) &&
               samename(x->cellname, y->cellname) && x->nbind == y->nbind &&
               x->backward == y->backward && x->initfrom == y->initfrom && x->ninit == y->ninit &&
               sameids(x->init, y->init, x->ninit) && samename(x->statename, y->statename) &&
               x->target == y->target && x->hasignore == y->hasignore && x->ignore == y->ignore &&
               x->nparam == y->nparam;
    for (int k = 0; same && k < x->nbind; k++)
      same = !strcmp(x->bindname[k], y->bindname[k]) &&
             !strcmp(dstr(ma, x->bindval[k]), dstr(mb, y->bindval[k]));
    for (int k = 0; same && k < x->nparam; k++)
      same = !strcmp(x->param[k].full, y->param[k].full) &&
             !strcmp(sstr(ma, &x->param[k].shape), sstr(mb, &y->param[k].shape));
    cr_assert(same, "model %s: node %d ('%s') differs", a->name, i, x->name ? x->name : "");
  }
  cr_assert(a->noutput == b->noutput && sameids(a->output, b->output, a->noutput));
  cr_assert_eq(a->loss, b->loss);
}

/* Every cell and model of the two contexts' modules, field by field. */
static void same_graph(rnnc_ctx *built, rnnc_ctx *text)
{
  Module *ma = built->m, *mb = text->m;
  cr_assert_eq(ma->ncell, mb->ncell);
  cr_assert_eq(ma->nmodel, mb->nmodel);
  for (int i = 0; i < ma->ncell; i++)
    same_cell(ma, ma->cell[i], mb, mb->cell[i]);
  for (int i = 0; i < ma->nmodel; i++)
    same_model(ma, ma->model[i], mb, mb->model[i]);
}

/* Load text into a fresh context and print it; with built, check that the
 * two modules hold the same graph. */
static char *printed_text(const char *name, const char *text, rnnc_ctx *built)
{
  rnnc_ctx *ctx = rnnc_open();
  cr_assert(ctx);
  cr_assert_eq(rnnc_load(ctx, name, text), RNNC_OK, "%s", rnnc_errmsg(ctx));
  char *s = printed(ctx);
  if (built)
    same_graph(built, ctx);
  rnnc_close(ctx);
  return s;
}

static char *printed_file(const char *rel, rnnc_ctx *built)
{
  char *text = read_file(srcpath(rel));
  cr_assert(text, "cannot read %s", rel);
  char *s = printed_text(srcpath(rel), text, built);
  free(text);
  return s;
}

#define OK(call) cr_assert_eq((call), RNNC_OK, "%s: %s", #call, rnnc_errmsg(ctx))

/* The same text, or a failure showing both. */
static void same_text(const char *built, const char *text)
{
  cr_assert(strcmp(built, text) == 0, "built from C:\n%s\nfrom text:\n%s", built, text);
}

/* examples/charlm_lstm.rnn, with the cell named cell (the prelude's lstm, or a
 * copy built from C). */
static void build_charlm(rnnc_ctx *ctx, const char *cell)
{
  rnnc_model_builder *mb;
  rnnc_node tokens, targets, x, h, loss, hT, cT;
  OK(rnnc_model_begin(ctx, "charlm_lstm", &mb));
  OK(rnnc_model_dim(mb, "V", 65));
  OK(rnnc_model_dim(mb, "E", 64));
  OK(rnnc_model_dim(mb, "H", 128));
  OK(rnnc_model_input(mb, "tokens", RNNC_I32, "[T, B]", &tokens));
  OK(rnnc_model_input(mb, "targets", RNNC_I32, "[T, B]", &targets));
  OK(rnnc_embedding(mb, "x", tokens, "V", "E", &x));
  OK(rnnc_apply(mb, "h", cell, 1, &x, "H = H", 0, &h));
  OK(rnnc_softmax(mb, "loss", h, "V", targets, &loss));
  OK(rnnc_final(mb, "h_T", h, "h", &hT));
  OK(rnnc_final(mb, "c_T", h, "c", &cT));
  OK(rnnc_model_output(mb, loss));
  OK(rnnc_model_output(mb, hT));
  OK(rnnc_model_output(mb, cT));
  OK(rnnc_model_end(mb));
}

Test(builder, lstm_language_model_prints_like_its_text)
{
  rnnc_ctx *ctx = rnnc_open();
  cr_assert(ctx);
  build_charlm(ctx, "lstm");
  char *built = printed(ctx);
  char *text = printed_file("examples/charlm_lstm.rnn", ctx);
  same_text(built, text);
  cr_assert(strstr(built, "model charlm_lstm(") != NULL, "%s", built);

  /* and the printed text loads back to the same text */
  char *again = printed_text("built.rnn", built, ctx);
  same_text(again, built);
  free(again);
  free(built);
  free(text);
  rnnc_close(ctx);
}

/* The prelude's LSTM cell, built from C under another name. */
static void build_lstm_cell(rnnc_ctx *ctx, const char *name)
{
  rnnc_cell_builder *cb;
  rnnc_value x, h, c, Wih, Whh, bih, bhh, t[16], g[4];
  OK(rnnc_cell_begin(ctx, name, &cb));
  OK(rnnc_cell_input(cb, "x", "[I]", &x));
  OK(rnnc_cell_state(cb, "h", "[H]", &h));
  OK(rnnc_cell_state(cb, "c", "[H]", &c));
  OK(rnnc_cell_param(cb, "W_ih", "[4*H, I]", &Wih));
  OK(rnnc_cell_param(cb, "W_hh", "[4*H, H]", &Whh));
  OK(rnnc_cell_param(cb, "b_ih", "[4*H]", &bih));
  OK(rnnc_cell_param(cb, "b_hh", "[4*H]", &bhh));
  /* gates = W_ih @ x + b_ih + W_hh @ h + b_hh */
  OK(rnnc_op(cb, RNNC_OP_MATVEC, NULL, 2, (rnnc_value[]){Wih, x}, &t[0]));
  OK(rnnc_op(cb, RNNC_OP_ADD, NULL, 2, (rnnc_value[]){t[0], bih}, &t[1]));
  OK(rnnc_op(cb, RNNC_OP_MATVEC, NULL, 2, (rnnc_value[]){Whh, h}, &t[2]));
  OK(rnnc_op(cb, RNNC_OP_ADD, NULL, 2, (rnnc_value[]){t[1], t[2]}, &t[3]));
  OK(rnnc_op(cb, RNNC_OP_ADD, "gates", 2, (rnnc_value[]){t[3], bhh}, &t[4]));
  /* i, f, g, o = split(gates, 4) */
  OK(rnnc_split(cb, t[4], 4, (const char *[]){"i", "f", "g", "o"}, g));
  /* c' = sigmoid(f) * c + sigmoid(i) * tanh(g) */
  OK(rnnc_op(cb, RNNC_OP_SIGMOID, NULL, 1, &g[1], &t[5]));
  OK(rnnc_op(cb, RNNC_OP_MUL, NULL, 2, (rnnc_value[]){t[5], c}, &t[6]));
  OK(rnnc_op(cb, RNNC_OP_SIGMOID, NULL, 1, &g[0], &t[7]));
  OK(rnnc_op(cb, RNNC_OP_TANH, NULL, 1, &g[2], &t[8]));
  OK(rnnc_op(cb, RNNC_OP_MUL, NULL, 2, (rnnc_value[]){t[7], t[8]}, &t[9]));
  OK(rnnc_op(cb, RNNC_OP_ADD, NULL, 2, (rnnc_value[]){t[6], t[9]}, &t[10]));
  OK(rnnc_cell_update(cb, "c", t[10]));
  /* h' = sigmoid(o) * tanh(c') */
  OK(rnnc_op(cb, RNNC_OP_SIGMOID, NULL, 1, &g[3], &t[11]));
  OK(rnnc_op(cb, RNNC_OP_TANH, NULL, 1, &t[10], &t[12]));
  OK(rnnc_op(cb, RNNC_OP_MUL, NULL, 2, (rnnc_value[]){t[11], t[12]}, &t[13]));
  OK(rnnc_cell_update(cb, "h", t[13]));
  OK(rnnc_cell_out(cb, t[13]));
  OK(rnnc_cell_end(cb));
}

static const char lstm_b_text[] =
    "cell lstm_b(x: [I]) state(h: [H], c: [H]) {\n"
    "  param W_ih: [4*H, I], W_hh: [4*H, H], b_ih: [4*H], b_hh: [4*H]\n"
    "  gates = W_ih @ x + b_ih + W_hh @ h + b_hh\n"
    "  i, f, g, o = split(gates, 4)\n"
    "  c' = sigmoid(f) * c + sigmoid(i) * tanh(g)\n"
    "  h' = sigmoid(o) * tanh(c')\n"
    "  out h'\n"
    "}\n";

Test(builder, lstm_cell_and_model_built_from_c_print_like_text)
{
  rnnc_ctx *ctx = rnnc_open();
  cr_assert(ctx);
  build_lstm_cell(ctx, "lstm_b");
  build_charlm(ctx, "lstm_b");
  char *built = printed(ctx);

  /* the text: the same cell, then charlm_lstm.rnn applying it */
  char *model = read_file(srcpath("examples/charlm_lstm.rnn"));
  cr_assert(model);
  char *at = strstr(model, "= lstm(");
  cr_assert(at, "charlm_lstm.rnn no longer applies lstm");
  size_t len = strlen(lstm_b_text) + strlen(model) + 8;
  char *text = malloc(len);
  snprintf(text, len, "%s%.*slstm_b(%s", lstm_b_text, (int)(at + 2 - model), model,
           at + strlen("= lstm("));
  char *fromtext = printed_text("lstm_b.rnn", text, ctx);
  same_text(built, fromtext);
  cr_assert(strstr(built, "= lstm_b(x, H = H)") != NULL, "%s", built);
  free(fromtext);
  free(text);
  free(model);
  free(built);
  rnnc_close(ctx);
}

/* examples/mgu.rnn: the minimal gated unit and a bidirectional tagger. */
static void build_mgu(rnnc_ctx *ctx)
{
  rnnc_cell_builder *cb;
  rnnc_value x, h, Wf, Uf, bf, Wh, Uh, bh, f, n, one, t[16];
  OK(rnnc_cell_begin(ctx, "mgu", &cb));
  OK(rnnc_cell_input(cb, "x", "[I]", &x));
  OK(rnnc_cell_state(cb, "h", "[H]", &h));
  OK(rnnc_cell_param(cb, "W_f", "[H, I]", &Wf));
  OK(rnnc_cell_param(cb, "U_f", "[H, H]", &Uf));
  OK(rnnc_cell_param(cb, "b_f", "[H]", &bf));
  OK(rnnc_cell_param(cb, "W_h", "[H, I]", &Wh));
  OK(rnnc_cell_param(cb, "U_h", "[H, H]", &Uh));
  OK(rnnc_cell_param(cb, "b_h", "[H]", &bh));
  /* f = sigmoid(W_f @ x + U_f @ h + b_f) */
  OK(rnnc_op(cb, RNNC_OP_MATVEC, NULL, 2, (rnnc_value[]){Wf, x}, &t[0]));
  OK(rnnc_op(cb, RNNC_OP_MATVEC, NULL, 2, (rnnc_value[]){Uf, h}, &t[1]));
  OK(rnnc_op(cb, RNNC_OP_ADD, NULL, 2, (rnnc_value[]){t[0], t[1]}, &t[2]));
  OK(rnnc_op(cb, RNNC_OP_ADD, NULL, 2, (rnnc_value[]){t[2], bf}, &t[3]));
  OK(rnnc_op(cb, RNNC_OP_SIGMOID, "f", 1, &t[3], &f));
  /* n = tanh(W_h @ x + U_h @ (f * h) + b_h) */
  OK(rnnc_op(cb, RNNC_OP_MATVEC, NULL, 2, (rnnc_value[]){Wh, x}, &t[4]));
  OK(rnnc_op(cb, RNNC_OP_MUL, NULL, 2, (rnnc_value[]){f, h}, &t[5]));
  OK(rnnc_op(cb, RNNC_OP_MATVEC, NULL, 2, (rnnc_value[]){Uh, t[5]}, &t[6]));
  OK(rnnc_op(cb, RNNC_OP_ADD, NULL, 2, (rnnc_value[]){t[4], t[6]}, &t[7]));
  OK(rnnc_op(cb, RNNC_OP_ADD, NULL, 2, (rnnc_value[]){t[7], bh}, &t[8]));
  OK(rnnc_op(cb, RNNC_OP_TANH, "n", 1, &t[8], &n));
  /* h' = (1 - f) * h + f * n */
  OK(rnnc_const(cb, NULL, 1.0, &one));
  OK(rnnc_op(cb, RNNC_OP_SUB, NULL, 2, (rnnc_value[]){one, f}, &t[9]));
  OK(rnnc_op(cb, RNNC_OP_MUL, NULL, 2, (rnnc_value[]){t[9], h}, &t[10]));
  OK(rnnc_op(cb, RNNC_OP_MUL, NULL, 2, (rnnc_value[]){f, n}, &t[11]));
  OK(rnnc_op(cb, RNNC_OP_ADD, NULL, 2, (rnnc_value[]){t[10], t[11]}, &t[12]));
  OK(rnnc_cell_update(cb, "h", t[12]));
  OK(rnnc_cell_out(cb, t[12]));
  OK(rnnc_cell_end(cb));

  rnnc_model_builder *mb;
  rnnc_node tokens, tags, xs, fw, bw, both, loss;
  OK(rnnc_model_begin(ctx, "mgu_tagger", &mb));
  OK(rnnc_model_dim(mb, "V", 30));
  OK(rnnc_model_dim(mb, "E", 12));
  OK(rnnc_model_dim(mb, "H", 16));
  OK(rnnc_model_dim(mb, "K", 6));
  OK(rnnc_model_input(mb, "tokens", RNNC_I32, "[T, B]", &tokens));
  OK(rnnc_model_input(mb, "tags", RNNC_I32, "[T, B]", &tags));
  OK(rnnc_embedding(mb, "x", tokens, "V", "E", &xs));
  OK(rnnc_apply(mb, "fw", "mgu", 1, &xs, "H = H", 0, &fw));
  OK(rnnc_apply(mb, "bw", "mgu", 1, &xs, "H = H", RNNC_BACKWARD, &bw));
  OK(rnnc_concat(mb, NULL, 2, (rnnc_node[]){fw, bw}, &both));
  OK(rnnc_softmax(mb, "loss", both, "K", tags, &loss));
  OK(rnnc_model_output(mb, loss));
  OK(rnnc_model_end(mb));
}

Test(builder, mgu_cell_and_tagger_print_like_their_text)
{
  rnnc_ctx *ctx = rnnc_open();
  cr_assert(ctx);
  build_mgu(ctx);
  char *built = printed(ctx);
  char *text = printed_file("examples/mgu.rnn", ctx);
  same_text(built, text);
  cr_assert(strstr(built, "cell mgu(") != NULL, "%s", built);
  free(built);
  free(text);
  rnnc_close(ctx);
}

/* seq2seq: init = enc, ignore = -1, a second sequence dim S. */
Test(builder, seq2seq_prints_like_its_text)
{
  rnnc_ctx *ctx = rnnc_open();
  cr_assert(ctx);
  rnnc_model_builder *mb;
  rnnc_node src, tin, tout, xs, enc, xt, dec, loss;
  OK(rnnc_model_begin(ctx, "seq2seq", &mb));
  OK(rnnc_model_dim(mb, "S", RNNC_NODEFAULT));
  OK(rnnc_model_dim(mb, "V_src", 30));
  OK(rnnc_model_dim(mb, "V_tgt", 30));
  OK(rnnc_model_dim(mb, "E", 16));
  OK(rnnc_model_dim(mb, "H", 32));
  OK(rnnc_model_input(mb, "src", RNNC_I32, "[S, B]", &src));
  OK(rnnc_model_input(mb, "tgt_in", RNNC_I32, "[T, B]", &tin));
  OK(rnnc_model_input(mb, "tgt_out", RNNC_I32, "[T, B]", &tout));
  OK(rnnc_embedding(mb, "xs", src, "V_src", "E", &xs));
  OK(rnnc_apply(mb, "enc", "lstm", 1, &xs, "H = H", 0, &enc));
  OK(rnnc_embedding(mb, "xt", tin, "V_tgt", "E", &xt));
  OK(rnnc_apply(mb, "dec", "lstm", 1, &xt, "H = H", 0, &dec));
  OK(rnnc_apply_init_from(mb, dec, enc));
  OK(rnnc_softmax(mb, "loss", dec, "V_tgt", tout, &loss));
  OK(rnnc_softmax_ignore(mb, loss, -1));
  OK(rnnc_model_output(mb, loss));
  OK(rnnc_model_end(mb));
  char *built = printed(ctx);
  char *text = printed_file("examples/seq2seq.rnn", ctx);
  same_text(built, text);
  free(built);
  free(text);
  rnnc_close(ctx);
}

/* Nested anonymous nodes, init = (a, b), last, sum, probs, slice, zeros,
 * split parts, a named constant: built and written by hand, same text. */
Test(builder, every_builder_call_prints_like_text)
{
  static const char text[] =
      "cell odd(x: [2*I]) state(h: [H]) {\n"
      "  param W: [H, I], v: [H]\n"
      "  half = 0.5\n"
      "  a = slice(x, I, I)\n"
      "  h' = tanh(W @ (split(x, 2)[0] * a) + half * h) + zeros([H]) - neg(v) / exp(v)\n"
      "  out concat(h', relu(h))\n"
      "}\n"
      "\n"
      "model m(H = 8) {\n"
      "  input feats: f32[T, B, 6], h0: f32[B, H]\n"
      "  enc = odd(feats, H = H)\n"
      "  dec = odd(feats, H = H, backward, init = (final(enc, h)))\n"
      "  s = softmax(last(dec), 5)\n"
      "  p = probs(s)\n"
      "  total = sum(concat(last(enc), h0))\n"
      "  output p, total\n"
      "}\n";
  rnnc_ctx *ctx = rnnc_open();
  cr_assert(ctx);
  rnnc_cell_builder *cb;
  rnnc_value x, h, W, v, half, a, s0, t[16];
  OK(rnnc_cell_begin(ctx, "odd", &cb));
  OK(rnnc_cell_input(cb, "x", "[2*I]", &x));
  OK(rnnc_cell_state(cb, "h", "[H]", &h));
  OK(rnnc_cell_param(cb, "W", "[H, I]", &W));
  OK(rnnc_cell_param(cb, "v", "[H]", &v));
  OK(rnnc_const(cb, "half", 0.5, &half));
  OK(rnnc_slice(cb, "a", x, "I", "I", &a));
  OK(rnnc_split_part(cb, NULL, x, 2, 0, &s0));
  OK(rnnc_op(cb, RNNC_OP_MUL, NULL, 2, (rnnc_value[]){s0, a}, &t[0]));
  OK(rnnc_op(cb, RNNC_OP_MATVEC, NULL, 2, (rnnc_value[]){W, t[0]}, &t[1]));
  OK(rnnc_op(cb, RNNC_OP_MUL, NULL, 2, (rnnc_value[]){half, h}, &t[2]));
  OK(rnnc_op(cb, RNNC_OP_ADD, NULL, 2, (rnnc_value[]){t[1], t[2]}, &t[3]));
  OK(rnnc_op(cb, RNNC_OP_TANH, NULL, 1, &t[3], &t[4]));
  OK(rnnc_zeros(cb, NULL, "[H]", &t[5]));
  OK(rnnc_op(cb, RNNC_OP_ADD, NULL, 2, (rnnc_value[]){t[4], t[5]}, &t[6]));
  OK(rnnc_op(cb, RNNC_OP_NEG, NULL, 1, &v, &t[7]));
  OK(rnnc_op(cb, RNNC_OP_EXP, NULL, 1, &v, &t[8]));
  OK(rnnc_op(cb, RNNC_OP_DIV, NULL, 2, (rnnc_value[]){t[7], t[8]}, &t[9]));
  OK(rnnc_op(cb, RNNC_OP_SUB, NULL, 2, (rnnc_value[]){t[6], t[9]}, &t[10]));
  OK(rnnc_cell_update(cb, "h", t[10]));
  OK(rnnc_op(cb, RNNC_OP_RELU, NULL, 1, &h, &t[11]));
  OK(rnnc_op(cb, RNNC_OP_CONCAT, NULL, 2, (rnnc_value[]){t[10], t[11]}, &t[12]));
  OK(rnnc_cell_out(cb, t[12]));
  OK(rnnc_cell_end(cb));

  rnnc_model_builder *mb;
  rnnc_node feats, h0, enc, fin, dec, ld, s, p, le, cat, total;
  OK(rnnc_model_begin(ctx, "m", &mb));
  OK(rnnc_model_dim(mb, "H", 8));
  OK(rnnc_model_input(mb, "feats", RNNC_F32, "[T, B, 6]", &feats));
  OK(rnnc_model_input(mb, "h0", RNNC_F32, "[B, H]", &h0));
  OK(rnnc_apply(mb, "enc", "odd", 1, &feats, "H = H", 0, &enc));
  OK(rnnc_final(mb, NULL, enc, "h", &fin));
  OK(rnnc_apply(mb, "dec", "odd", 1, &feats, "H = H", RNNC_BACKWARD, &dec));
  OK(rnnc_apply_init(mb, dec, 1, &fin));
  OK(rnnc_last(mb, NULL, dec, &ld));
  OK(rnnc_softmax(mb, "s", ld, "5", -1, &s));
  OK(rnnc_probs(mb, "p", s, &p));
  OK(rnnc_last(mb, NULL, enc, &le));
  OK(rnnc_concat(mb, NULL, 2, (rnnc_node[]){le, h0}, &cat));
  OK(rnnc_sum(mb, "total", cat, &total));
  OK(rnnc_model_output(mb, p));
  OK(rnnc_model_output(mb, total));
  OK(rnnc_model_end(mb));
  char *built = printed(ctx);
  char *fromtext = printed_text("odd.rnn", text, ctx);
  same_text(built, fromtext);
  free(built);
  free(fromtext);
  rnnc_close(ctx);
}

/* `h' = n` with a named n: the state's new value is n itself, as in the text. */
Test(builder, update_with_a_named_value_prints_like_text)
{
  static const char text[] = "cell alias(x: [H]) state(h: [H]) {\n"
                             "  n = tanh(x + h)\n"
                             "  h' = n\n"
                             "  out n\n"
                             "}\n";
  rnnc_ctx *ctx = rnnc_open();
  cr_assert(ctx);
  rnnc_cell_builder *cb;
  rnnc_value x, h, s, n;
  OK(rnnc_cell_begin(ctx, "alias", &cb));
  OK(rnnc_cell_input(cb, "x", "[H]", &x));
  OK(rnnc_cell_state(cb, "h", "[H]", &h));
  OK(rnnc_op(cb, RNNC_OP_ADD, NULL, 2, (rnnc_value[]){x, h}, &s));
  OK(rnnc_op(cb, RNNC_OP_TANH, "n", 1, &s, &n));
  OK(rnnc_cell_update(cb, "h", n));
  OK(rnnc_cell_out(cb, n));
  OK(rnnc_cell_end(cb));
  char *built = printed(ctx);
  char *fromtext = printed_text("alias.rnn", text, ctx);
  same_text(built, fromtext);
  same_text(built, text);
  free(built);
  free(fromtext);
  rnnc_close(ctx);
}

/* A warning does not fail the call; it is the message after it. */
Test(builder, warnings_are_the_message_after_success)
{
  rnnc_ctx *ctx = rnnc_open();
  cr_assert(ctx);
  rnnc_cell_builder *cb;
  rnnc_value x, b;
  OK(rnnc_cell_begin(ctx, "w", &cb));
  OK(rnnc_cell_input(cb, "x", "[H]", &x));
  OK(rnnc_cell_param(cb, "b", "[H]", &b));
  OK(rnnc_cell_out(cb, x));
  cr_assert_eq(rnnc_cell_end(cb), RNNC_OK);
  cr_assert_str_eq(rnnc_errmsg(ctx), "<builder>:3:1: warning: parameter 'b' is never used\n"
                                     " rnnc_cell_param(\"b\", \"[H]\")\n"
                                     " ^\n");
  cr_assert_eq(rnnc_load(ctx, "u.rnn", "cell u(x: [H]) {\n  param c: [H]\n  out x\n}\n"), RNNC_OK);
  cr_assert_str_eq(rnnc_errmsg(ctx), "u.rnn:2:9: warning: parameter 'c' is never used\n"
                                     "   param c: [H]\n"
                                     "         ^\n");
  char *s = printed(ctx);
  cr_assert_str_eq(rnnc_errmsg(ctx), "");
  free(s);
  rnnc_close(ctx);
}

/* ---- errors: a status and the exact message; a failed call changes nothing -- */

#define FAILS(call, code, msg)                                                         \
  do {                                                                                 \
    cr_assert_eq((call), (code), "%s", #call);                                         \
    cr_assert_str_eq(rnnc_errmsg(ctx), (msg));                                         \
  } while (0)

Test(builder, cell_call_errors)
{
  rnnc_ctx *ctx = rnnc_open();
  cr_assert(ctx);
  rnnc_cell_builder *cb;
  rnnc_value x, h, W, v, t;
  OK(rnnc_cell_begin(ctx, "c1", &cb));
  OK(rnnc_cell_input(cb, "x", "[I]", &x));
  OK(rnnc_cell_state(cb, "h", "[H]", &h));
  FAILS(rnnc_cell_param(cb, "W", "[H, I", &W), RNNC_ESYNTAX,
        "rnnc_cell_param: bad shape \"[H, I\" for parameter 'W': expected ',' or ']' in the "
        "shape, found end of file (column 6)");
  FAILS(rnnc_cell_param(cb, "W", "H, I", &W), RNNC_ESYNTAX,
        "rnnc_cell_param: bad shape \"H, I\" for parameter 'W': expected a shape like [H] or "
        "[4*H, I], found 'H' (column 1)");
  OK(rnnc_cell_param(cb, "W", "[H, I]", &W));
  FAILS(rnnc_op(cb, RNNC_OP_TANH, NULL, 2, (rnnc_value[]){x, h}, &v), RNNC_EMISUSE,
        "rnnc_op: 'tanh' takes 1 operand, got 2");
  FAILS(rnnc_op(cb, RNNC_OP_MATVEC, NULL, 1, &W, &v), RNNC_EMISUSE,
        "rnnc_op: '@' takes 2 operands, got 1");
  FAILS(rnnc_op(cb, RNNC_OP_CONCAT, NULL, 1, &x, &v), RNNC_EMISUSE,
        "rnnc_op: 'concat' takes at least 2 operands, got 1");
  FAILS(rnnc_op(cb, 99, NULL, 1, &x, &v), RNNC_EMISUSE, "rnnc_op: unknown op 99");
  FAILS(rnnc_op(cb, RNNC_OP_CONST, NULL, 0, NULL, &v), RNNC_EMISUSE,
        "rnnc_op: RNNC_OP_CONST values are made by rnnc_const");
  FAILS(rnnc_op(cb, RNNC_OP_TANH, NULL, 1, (rnnc_value[]){42}, &v), RNNC_EMISUSE,
        "rnnc_op: 42 is not a value of cell 'c1'");
  FAILS(rnnc_op(cb, RNNC_OP_TANH, "h", 1, &x, &v), RNNC_EMISUSE,
        "rnnc_op: duplicate definition of 'h' in cell 'c1'");
  FAILS(rnnc_op(cb, RNNC_OP_TANH, "h'", 1, &x, &v), RNNC_EMISUSE,
        "rnnc_op: 'h'' cannot end in ''' (rnnc_cell_update sets a state's new value)");
  FAILS(rnnc_op(cb, RNNC_OP_TANH, "a b", 1, &x, &v), RNNC_EMISUSE,
        "rnnc_op: 'a b' is not a valid name");
  /* an anonymous value is used once */
  OK(rnnc_op(cb, RNNC_OP_MATVEC, NULL, 2, (rnnc_value[]){W, x}, &t));
  OK(rnnc_op(cb, RNNC_OP_ADD, NULL, 2, (rnnc_value[]){t, h}, &v));
  FAILS(rnnc_op(cb, RNNC_OP_TANH, NULL, 1, &t, &v), RNNC_EMISUSE,
        "rnnc_op: value 3 has no name and is already used; name it to use it twice");
  FAILS(rnnc_cell_update(cb, "c", v), RNNC_EMISUSE, "rnnc_cell_update: cell 'c1' has no state 'c'");
  OK(rnnc_cell_update(cb, "h", v));
  FAILS(rnnc_cell_update(cb, "h", v), RNNC_EMISUSE, "rnnc_cell_update: state 'h' is already updated");
  FAILS(rnnc_split(cb, x, 2, NULL, (rnnc_value[2]){0}), RNNC_EMISUSE,
        "rnnc_split: names is NULL; name every part (rnnc_split_part makes one part)");
  FAILS(rnnc_split_part(cb, NULL, x, 2, 2, &t), RNNC_EMISUSE,
        "rnnc_split_part: part 2 of 2 does not exist");
  FAILS(rnnc_slice(cb, NULL, x, "0", "2*", &t), RNNC_ESYNTAX,
        "rnnc_slice: bad dimension \"2*\" for the size: expected a dimension name after '*', "
        "found ']' (column 3)");
  OK(rnnc_cell_out(cb, v));
  /* a builder is open: the context refuses to print or to start another */
  char *s = NULL;
  FAILS(rnnc_print_string(ctx, &s), RNNC_EMISUSE,
        "rnnc_print_string: a cell builder is open on this context; end it first");
  cr_assert_null(s);
  rnnc_model_builder *mb;
  FAILS(rnnc_model_begin(ctx, "m", &mb), RNNC_EMISUSE,
        "rnnc_model_begin: a cell builder is already open on this context");
  OK(rnnc_cell_end(cb));
  cr_assert_str_eq(rnnc_errmsg(ctx), "");

  /* the failed calls left nothing behind */
  s = printed(ctx);
  cr_assert_str_eq(s, "cell c1(x: [I]) state(h: [H]) {\n"
                      "  param W: [H, I]\n"
                      "  h' = W @ x + h\n"
                      "  out h'\n"
                      "}\n");
  free(s);
  FAILS(rnnc_cell_begin(ctx, "c1", &cb), RNNC_EMISUSE,
        "rnnc_cell_begin: duplicate definition of cell 'c1'");
  FAILS(rnnc_cell_begin(ctx, "gru", &cb), RNNC_EMISUSE,
        "rnnc_cell_begin: duplicate definition of cell 'gru' (a built-in cell)");
  FAILS(rnnc_cell_begin(ctx, "softmax", &cb), RNNC_EMISUSE,
        "rnnc_cell_begin: 'softmax' is a model operation and cannot name a cell");
  rnnc_close(ctx);
}

/* Shape errors are the verifier's, at rnnc_cell_end, pointing at the call. */
Test(builder, cell_verify_error_points_at_the_builder_call)
{
  rnnc_ctx *ctx = rnnc_open();
  cr_assert(ctx);
  rnnc_cell_builder *cb;
  rnnc_value x, h, W, t, v;
  OK(rnnc_cell_begin(ctx, "bad", &cb));
  OK(rnnc_cell_input(cb, "x", "[I\n]", &x)); /* one transcript line all the same */
  OK(rnnc_cell_state(cb, "h", "[H]", &h));
  OK(rnnc_cell_param(cb, "W", "[H, 2*I]", &W));
  OK(rnnc_op(cb, RNNC_OP_MATVEC, NULL, 2, (rnnc_value[]){W, x}, &t));
  OK(rnnc_op(cb, RNNC_OP_TANH, NULL, 1, &t, &v));
  OK(rnnc_cell_update(cb, "h", v));
  OK(rnnc_cell_out(cb, v));
  cr_assert_eq(rnnc_cell_end(cb), RNNC_EVERIFY);
  cr_assert_str_eq(rnnc_errmsg(ctx),
                   "<builder>:5:1: error: shape mismatch in '@': [H, 2*I] and [I]\n"
                   " rnnc_op(RNNC_OP_MATVEC, NULL, {2, 0})\n"
                   " ^\n");
  /* not added: the name is free again, and the module prints empty */
  char *s = printed(ctx);
  cr_assert_str_eq(s, "");
  free(s);
  OK(rnnc_cell_begin(ctx, "bad", &cb));
  OK(rnnc_cell_input(cb, "x", "[I]", &x));
  OK(rnnc_cell_state(cb, "h", "[H]", &h));
  FAILS(rnnc_cell_end(cb), RNNC_EVERIFY,
        "<builder>:12:1: error: state 'h' is never updated\n"
        " rnnc_cell_state(\"h\", \"[H]\")\n"
        " ^\n");
  /* an anonymous value nobody uses cannot be printed: refused */
  OK(rnnc_cell_begin(ctx, "lost", &cb));
  OK(rnnc_cell_input(cb, "x", "[I]", &x));
  OK(rnnc_op(cb, RNNC_OP_TANH, NULL, 1, &x, &v));
  OK(rnnc_op(cb, RNNC_OP_RELU, "r", 1, &x, &t));
  OK(rnnc_cell_out(cb, t));
  FAILS(rnnc_cell_end(cb), RNNC_EMISUSE,
        "rnnc_cell_end: value 1 ('tanh') of cell 'lost' has no name and is never used");
  rnnc_close(ctx);
}

Test(builder, model_call_errors)
{
  rnnc_ctx *ctx = rnnc_open();
  cr_assert(ctx);
  rnnc_model_builder *mb;
  rnnc_node tok, x, h, n;
  OK(rnnc_model_begin(ctx, "lm", &mb));
  OK(rnnc_model_dim(mb, "V", RNNC_NODEFAULT));
  FAILS(rnnc_model_dim(mb, "V", 3), RNNC_EMISUSE, "rnnc_model_dim: duplicate definition of dimension 'V'");
  FAILS(rnnc_model_dim(mb, "E", 0), RNNC_EMISUSE,
        "rnnc_model_dim: the default of dimension 'E' must be positive (or RNNC_NODEFAULT), got 0");
  FAILS(rnnc_model_input(mb, "tok", RNNC_F64, "[T, B]", &tok), RNNC_EMISUSE,
        "rnnc_model_input: the type of input 'tok' must be RNNC_I32 or RNNC_F32");
  OK(rnnc_model_input(mb, "tok", RNNC_I32, "[T, B]", &tok));
  FAILS(rnnc_embedding(mb, NULL, tok, "V", "8", &x), RNNC_EMISUSE,
        "rnnc_embedding: an embedding node has parameters (named <node>.<param>) and needs a name");
  FAILS(rnnc_embedding(mb, "x", tok, "V", "8 8", &x), RNNC_ESYNTAX,
        "rnnc_embedding: bad dimension \"8 8\" for the embedding size: expected ',' or ']' in "
        "the shape, found '8' (column 3)");
  OK(rnnc_embedding(mb, "x", tok, "V", "8", &x));
  FAILS(rnnc_apply(mb, "h", "nosuch", 1, &x, NULL, 0, &h), RNNC_EMISUSE,
        "rnnc_apply: unknown cell 'nosuch'");
  FAILS(rnnc_apply(mb, "h", "lstm", 1, &x, "H 4", 0, &h), RNNC_ESYNTAX,
        "rnnc_apply: bad binding \"H 4\" in \"H 4\": write NAME = dim");
  FAILS(rnnc_apply(mb, "h", "lstm", 1, &x, "H = 4, H = 5", 0, &h), RNNC_EMISUSE,
        "rnnc_apply: 'H' is bound twice in \"H = 4, H = 5\"");
  FAILS(rnnc_apply(mb, "backward", "lstm", 1, &x, "H = 4", 0, &h), RNNC_EMISUSE,
        "rnnc_apply: 'backward' is a keyword and cannot name a node");
  FAILS(rnnc_apply(mb, "h", "lstm", 1, &x, "H = 4", 8, &h), RNNC_EMISUSE,
        "rnnc_apply: unknown flags 0x8");
  FAILS(rnnc_apply(mb, "x", "lstm", 1, &x, "H = 4", 0, &h), RNNC_EMISUSE,
        "rnnc_apply: duplicate definition of 'x' in model 'lm'");
  OK(rnnc_apply(mb, "h", "lstm", 1, &x, "H = 4", 0, &h));
  FAILS(rnnc_apply_init_from(mb, x, h), RNNC_EMISUSE,
        "rnnc_apply_init_from: node 1 ('x') is not a cell node");
  FAILS(rnnc_apply_init_from(mb, h, h), RNNC_EMISUSE,
        "rnnc_apply_init_from: node 2 is not made before node 2; make it first");
  FAILS(rnnc_softmax_ignore(mb, h, 0), RNNC_EMISUSE,
        "rnnc_softmax_ignore: node 2 ('h') is not a softmax node");
  OK(rnnc_last(mb, NULL, h, &n));
  FAILS(rnnc_sum(mb, NULL, 7, &n), RNNC_EMISUSE, "rnnc_sum: 7 is not a node of model 'lm'");
  FAILS(rnnc_model_output(mb, n), RNNC_EMISUSE,
        "rnnc_model_output: node 3 ('last') has no name; an output must be named");
  OK(rnnc_sum(mb, "total", n, &n));
  FAILS(rnnc_concat(mb, NULL, 2, (rnnc_node[]){3, 3}, &n), RNNC_EMISUSE,
        "rnnc_concat: node 3 has no name and is already used; name it to use it twice");
  OK(rnnc_model_output(mb, n));
  FAILS(rnnc_model_output(mb, n), RNNC_EMISUSE, "rnnc_model_output: 'total' is already an output");
  OK(rnnc_model_end(mb));
  char *s = printed(ctx);
  cr_assert_str_eq(s, "model lm(V) {\n"
                      "  input tok: i32[T, B]\n"
                      "  x = embedding(tok, V, 8)\n"
                      "  h = lstm(x, H = 4)\n"
                      "  total = sum(last(h))\n"
                      "  output total\n"
                      "}\n");
  free(s);
  rnnc_close(ctx);
}

Test(builder, model_verify_error_points_at_the_builder_call)
{
  rnnc_ctx *ctx = rnnc_open();
  cr_assert(ctx);
  rnnc_model_builder *mb;
  rnnc_node tok, x, h, loss;
  OK(rnnc_model_begin(ctx, "lm", &mb));
  OK(rnnc_model_input(mb, "tok", RNNC_I32, "[T, B]", &tok));
  OK(rnnc_embedding(mb, "x", tok, "10", "8", &x));
  OK(rnnc_apply(mb, "h", "gru", 1, &x, "K = 4", 0, &h));
  OK(rnnc_softmax(mb, "loss", h, "10", tok, &loss));
  OK(rnnc_model_output(mb, loss));
  FAILS(rnnc_model_end(mb), RNNC_EVERIFY,
        "<builder>:4:1: error: cell 'gru' has no dimension 'K'\n"
        " rnnc_apply(\"h\", \"gru\", {1}, \"K = 4\", 0)\n"
        " ^\n");
  char *s = printed(ctx);
  cr_assert_str_eq(s, "");
  free(s);
  rnnc_close(ctx);
}

Test(builder, load_errors_leave_the_context_usable)
{
  rnnc_ctx *ctx = rnnc_open();
  cr_assert(ctx);
  FAILS(rnnc_load(ctx, "a.rnn",
                  "cell ok1(x: [H]) state(h: [H]) {\n  h' = tanh(x)\n  out h'\n}\n"
                  "model m() {\n  input t: i32[T, B]\n  y = nosuch(t)\n  output y\n}\n"),
        RNNC_EVERIFY,
        "a.rnn:7:7: error: unknown cell 'nosuch'\n"
        "   y = nosuch(t)\n"
        "       ^\n");
  /* all or nothing: cell ok1 was dropped with the model, so it can be loaded again */
  FAILS(rnnc_load(ctx, "b.rnn", "cell c(x: [I]) {\n  out tanh(x\n}\n"), RNNC_ESYNTAX,
        "b.rnn:2:13: error: expected ',' or ')' after arguments, found end of line\n"
        "   out tanh(x\n"
        "             ^\n");
  OK(rnnc_load(ctx, "c.rnn", "cell ok1(x: [I]) {\n  out tanh(x)\n}\n"));
  FAILS(rnnc_load_file(ctx, "/nonexistent/x.rnn"), RNNC_EIO,
        "cannot open '/nonexistent/x.rnn': No such file or directory");
  char *s = printed(ctx);
  cr_assert_str_eq(s, "cell ok1(x: [I]) {\n  out tanh(x)\n}\n");
  free(s);
  rnnc_close(ctx);
}

/* A context closed with failed calls behind it and a builder still open frees
 * everything. Criterion does not fail a test on LeakSanitizer's exit report,
 * so under ASan (RNNC_SANITIZE, as CI runs it) the test asks LeakSanitizer
 * itself; glibc's own counters cannot tell a leak from its per-thread cache. */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

/* One context through failing calls, closed with a builder open (kind 0:
 * cell, 1: model); returns how many calls did not give the expected status. */
static int churn(int kind)
{
  int bad = 0;
  rnnc_ctx *ctx = rnnc_open();
  if (!ctx)
    return 1;
  bad += rnnc_load(ctx, "bad.rnn", "cell (\n") != RNNC_ESYNTAX;
  bad += rnnc_load_file(ctx, "/nonexistent") != RNNC_EIO;
  bad += rnnc_load(ctx, "v.rnn", "model m() {\n  y = lstm(z)\n}\n") != RNNC_ESYNTAX;
  rnnc_cell_builder *cb;
  rnnc_value x, v;
  bad += rnnc_cell_begin(ctx, "c", &cb) != RNNC_OK;
  bad += rnnc_cell_input(cb, "x", "[I]", &x) != RNNC_OK;
  bad += rnnc_cell_param(cb, "W", "[", &v) != RNNC_ESYNTAX;
  bad += rnnc_op(cb, RNNC_OP_ADD, NULL, 1, &x, &v) != RNNC_EMISUSE;
  if (kind == 1) {
    rnnc_model_builder *mb;
    rnnc_node in, h;
    bad += rnnc_cell_out(cb, x) != RNNC_OK;
    bad += rnnc_cell_end(cb) != RNNC_OK;
    bad += rnnc_model_begin(ctx, "m", &mb) != RNNC_OK;
    bad += rnnc_model_input(mb, "f", RNNC_F32, "[T, B, 3]", &in) != RNNC_OK;
    bad += rnnc_apply(mb, "h", "gru", 1, &in, "H = 2*", 0, &h) != RNNC_ESYNTAX;
  }
  rnnc_close(ctx);
  return bad;
}

Test(builder, close_with_errors_and_open_builder_leaks_nothing)
{
  int bad = 0;
  for (int round = 0; round < 3; round++)
    bad += churn(0) + churn(1);
  cr_assert_eq(bad, 0, "%d calls gave an unexpected status", bad);
#if defined(__SANITIZE_ADDRESS__)
  cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "LeakSanitizer found leaks (above)");
#endif
  rnnc_close(NULL);
  cr_assert_str_eq(rnnc_errmsg(NULL), "out of memory (no context)");
}

/* ---- docs/api.md: its example program compiles, runs and prints what the
 * page shows. The link line is the page's; when rnnc_core gains libraries
 * (LLVM for the JIT), both change together. */

/* The fenced block whose text begins skip bytes into marker (malloc'ed). */
static char *mdblock(const char *md, const char *marker, size_t skip)
{
  const char *a = strstr(md, marker);
  cr_assert(a, "docs/api.md has no block at %s", marker);
  a += skip;
  const char *b = strstr(a, "\n```\n");
  cr_assert(b);
  return strndup(a, (size_t)(b - a) + 1);
}

Test(builder, docs_example_compiles_runs_and_prints_what_the_page_shows, .timeout = 120)
{
  char *md = read_file(srcpath("docs/api.md"));
  cr_assert(md);
  char *prog = mdblock(md, "```c\n/* irnn_lm.c", strlen("```c\n"));
  char *want = mdblock(md, "Its output:\n\n```\n", strlen("Its output:\n\n```\n"));
  char dir[] = "/tmp/rnnc_api_XXXXXX";
  cr_assert(mkdtemp(dir));
  char path[256], cmd[4096];
  snprintf(path, sizeof path, "%s/irnn_lm.c", dir);
  FILE *f = fopen(path, "w");
  cr_assert(f);
  fputs(prog, f);
  fclose(f);
  char bindir[1024];
  snprintf(bindir, sizeof bindir, "%s", RNNC_BINARY);
  *strrchr(bindir, '/') = 0;
#if defined(__SANITIZE_ADDRESS__)
  const char *san = "-fsanitize=address,undefined";
#else
  const char *san = "";
#endif
  snprintf(cmd, sizeof cmd,
           "cd %s && cc -std=c17 -Wall -Wextra -Wpedantic -Werror %s -I%s/include irnn_lm.c "
           "%s/librnnc.a %s/librnnc_rt.a -ljansson -lz -lsleef -lm -fopenmp -L/usr/lib/llvm-19/lib -lLLVM-19 "
           "-o irnn_lm",
           dir, san, RNNC_SOURCE_DIR, bindir, bindir);
  char *out = NULL;
  int rc = run_cmd(cmd, &out);
  cr_assert_eq(rc, 0, "%s\n%s", cmd, out);
  free(out);
  snprintf(cmd, sizeof cmd, "cd %s && ./irnn_lm 2>/dev/null", dir);
  rc = run_cmd(cmd, &out);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert_str_eq(out, want);
  free(out);
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  run_cmd(cmd, NULL);
  free(prog);
  free(want);
  free(md);
}
