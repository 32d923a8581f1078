/* test_schedule.c — the schedule pass: which nodes run before the time loop
 * (PRE), per step (LOOP) or after it (POST), which matmuls are GEMMs over all
 * T*B rows, what LOOP stores for POST; on the prelude cells, their backward
 * cells, user cells (MGU, IndRNN, a concat cell, a separate output) and every
 * example; and `rnnc print --after schedule`. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* A module with text parsed and verified after the prelude; NULL asserts. */
static Module *mod(const char *text)
{
  Module *m = module_new();
  cr_assert(m);
  if (text) {
    const Source *src = source_new(m, "<test>", text);
    int st = pipeline(m, src, PASS_SCHEDULE, NULL);
    if (st != RNNC_OK)
      diags_print(stderr, &m->diags);
    cr_assert_eq(st, RNNC_OK);
  }
  return m;
}

/* Cell name of m, differentiated, both it and its backward cell scheduled. */
static Cell *cell(Module *m, const char *name)
{
  Cell *c = cell_find(m, name);
  cr_assert(c, "no cell %s", name);
  Grad *g = autodiff_cell(m, c);
  cr_assert(g);
  cr_assert(schedule_cell(m, c) && c->sched->c == c);
  cr_assert(schedule_cell(m, g->bwd) && g->bwd->sched->c == g->bwd);
  return c;
}

static Cell *bwd(Cell *c) { return c->derived->bwd; }

/* The node named name. */
static int named(const Cell *c, const char *name)
{
  for (int i = 0; i < c->nnode; i++)
    if (c->node[i].name && strcmp(c->node[i].name, name) == 0)
      return i;
  cr_assert_fail("cell %s has no node %s", c->name, name);
  return -1;
}

static const char *nm(const Cell *c, int id) { return id >= 0 ? c->node[id].name : NULL; }

/* The node op(a, b) whose operands are named a and b (NULL: any operand). */
static int find(const Cell *c, int op, const char *a, const char *b)
{
  for (int i = 0; i < c->nnode; i++) {
    const Node *n = &c->node[i];
    if (n->op != op || n->narg < 2)
      continue;
    const char *na = nm(c, n->arg[0]), *nb = nm(c, n->arg[1]);
    if ((!a || (na && strcmp(na, a) == 0)) && (!b || (nb && strcmp(nb, b) == 0)))
      return i;
  }
  cr_assert_fail("cell %s has no %s(%s, %s)", c->name, opinfo[op].spelling, a ? a : "_",
                 b ? b : "_");
  return -1;
}

static int param(const Cell *c, const char *name)
{
  for (int p = 0; p < c->nparam; p++)
    if (strcmp(c->node[c->param[p]].name, name) == 0)
      return p;
  cr_assert_fail("cell %s has no param %s", c->name, name);
  return -1;
}

static const char *phname(int ph)
{
  static const char *const s[] = {"DEAD", "PRE", "LOOP", "POST"};
  return ph >= 0 && ph < 4 ? s[ph] : "?";
}

#define PHASE(c, id, ph)                                                                     \
  cr_assert_eq((c)->sched->phase[id], ph, "%s: node %d is %s, not %s", (c)->name, id,        \
               phname((c)->sched->phase[id]), phname(ph))
#define GEMM(c, id, g)                                                                       \
  cr_assert_eq((c)->sched->gemm[id], g, "%s: node %d gemm %d, not %d", (c)->name, id,        \
               (c)->sched->gemm[id], g)

/* ---- prelude cells ---------------------------------------------------------- */

Test(schedule, lstm_input_projection_hoisted)
{
  Module *m = mod(NULL);
  Cell *c = cell(m, "lstm");
  int wx = find(c, OP_MATVEC, "W_ih", "x"), wh = find(c, OP_MATVEC, "W_hh", "h");
  PHASE(c, wx, SCHED_PRE);
  GEMM(c, wx, GEMM_TB);
  /* W_ih @ x + b_ih: only the loop reads it, so the bias is added there (a
   * hoisted sum would be written for all T*B rows and read back per step) */
  PHASE(c, find(c, OP_ADD, NULL, "b_ih"), SCHED_LOOP);
  PHASE(c, wh, SCHED_LOOP);
  GEMM(c, wh, GEMM_B);
  PHASE(c, named(c, "gates"), SCHED_LOOP);
  PHASE(c, named(c, "c'"), SCHED_LOOP);
  PHASE(c, named(c, "h'"), SCHED_LOOP);
  PHASE(c, named(c, "x"), SCHED_PRE);
  PHASE(c, named(c, "h"), SCHED_LOOP);
  PHASE(c, named(c, "W_ih"), SCHED_PRE);
  for (int i = 0; i < c->nnode; i++) {
    cr_assert_neq(c->sched->phase[i], SCHED_POST, "lstm has nothing after the loop");
    cr_assert_neq(c->sched->phase[i], SCHED_DEAD, "lstm has no dead node");
    cr_assert_eq(c->sched->store[i], 0, "lstm stores nothing for after the loop");
  }
  module_free(m);
}

Test(schedule, lstm_backward_input_and_weight_gradients_after_the_loop)
{
  Module *m = mod(NULL);
  Cell *b = bwd(cell(m, "lstm"));
  const CellSched *s = b->sched;
  int dx = named(b, "d_x"), dh = named(b, "d_h'"), dg = named(b, "d_gates");
  cr_assert_eq(b->node[dx].op, OP_MATVECT);
  PHASE(b, dx, SCHED_POST);
  GEMM(b, dx, GEMM_TB);
  cr_assert_eq(b->node[dh].op, OP_MATVECT);
  cr_assert_str_eq(nm(b, b->node[dh].arg[0]), "W_hh");
  PHASE(b, dh, SCHED_LOOP); /* matvec_t(W_hh, d_gates) carries the recurrence */
  GEMM(b, dh, GEMM_B);
  PHASE(b, named(b, "d_c'"), SCHED_LOOP);
  PHASE(b, dg, SCHED_LOOP);
  cr_assert_eq(s->store[dg], 1, "d_gates is kept per step for the GEMMs after the loop");
  for (int i = 0; i < b->nnode; i++)
    if (i != dg)
      cr_assert_eq(s->store[i], 0, "only d_gates is stored, not node %d", i);
  const char *w[] = {"W_ih", "W_hh"};
  for (int k = 0; k < 2; k++) {
    int p = param(b, w[k]), g = b->grad[p];
    cr_assert_eq(b->node[g].op, OP_OUTER);
    PHASE(b, g, SCHED_POST);
    GEMM(b, g, GEMM_TB);
    cr_assert_eq(s->sumonly[g], 1, "grad %s is never formed per row", w[k]);
    cr_assert_eq(s->gsum[p], GSUM_GEMM);
  }
  cr_assert_eq(s->gsum[param(b, "b_ih")], GSUM_ROWS);
  cr_assert_eq(s->gsum[param(b, "b_hh")], GSUM_ROWS);
  cr_assert_eq(s->sumonly[dg], 0);
  /* 1 - sigmoid_o and friends read only saved values, and only the loop reads
   * them: computed in the loop, not stored for all T*B rows before it */
  PHASE(b, find(b, OP_SUB, NULL, "sigmoid_o"), SCHED_LOOP);
  module_free(m);
}

Test(schedule, gru_input_matvec_hoisted_reset_gate_product_in_loop)
{
  Module *m = mod(NULL);
  Cell *c = cell(m, "gru");
  int wx = find(c, OP_MATVEC, "W_ih", "x");
  PHASE(c, wx, SCHED_PRE);
  GEMM(c, wx, GEMM_TB);
  PHASE(c, named(c, "gi"), SCHED_LOOP); /* elementwise, only the loop reads it */
  PHASE(c, named(c, "i_n"), SCHED_LOOP);
  PHASE(c, find(c, OP_MATVEC, "W_hh", "h"), SCHED_LOOP);
  PHASE(c, find(c, OP_MUL, "r", "h_n"), SCHED_LOOP);
  PHASE(c, named(c, "n"), SCHED_LOOP);
  int dx = named(bwd(c), "d_x");
  PHASE(bwd(c), dx, SCHED_POST);
  GEMM(bwd(c), dx, GEMM_TB);
  module_free(m);
}

Test(schedule, rnn_backward_every_weight_gradient_one_gemm)
{
  Module *m = mod(NULL);
  Cell *b = bwd(cell(m, "rnn"));
  for (int p = 0; p < b->nparam; p++)
    cr_assert_eq(b->sched->gsum[p], b->node[b->param[p]].shape.rank == 2 ? GSUM_GEMM : GSUM_ROWS,
                 "rnn.backward param %s", b->node[b->param[p]].name);
  module_free(m);
}

/* ---- user cells ------------------------------------------------------------- */

Test(schedule, mgu_two_input_gemms_gated_recurrent_matvec_in_loop)
{
  Module *m = load_module(srcpath("examples/mgu.rnn"));
  cr_assert(m);
  Cell *c = cell(m, "mgu");
  int wf = find(c, OP_MATVEC, "W_f", "x"), wh = find(c, OP_MATVEC, "W_h", "x");
  PHASE(c, wf, SCHED_PRE);
  GEMM(c, wf, GEMM_TB);
  PHASE(c, wh, SCHED_PRE);
  GEMM(c, wh, GEMM_TB);
  int uh = find(c, OP_MATVEC, "U_h", NULL);
  cr_assert_eq(c->node[c->node[uh].arg[1]].op, OP_MUL); /* U_h @ (f * h) */
  PHASE(c, uh, SCHED_LOOP);
  GEMM(c, uh, GEMM_B);
  PHASE(c, find(c, OP_MATVEC, "U_f", "h"), SCHED_LOOP);
  PHASE(c, named(c, "f"), SCHED_LOOP);
  module_free(m);
}

Test(schedule, indrnn_elementwise_recurrence)
{
  Module *m = load_module(srcpath("examples/indrnn.rnn"));
  cr_assert(m);
  Cell *c = cell(m, "indrnn");
  int wx = find(c, OP_MATVEC, "W", "x"), uh = find(c, OP_MUL, "u", "h");
  PHASE(c, wx, SCHED_PRE);
  GEMM(c, wx, GEMM_TB);
  PHASE(c, uh, SCHED_LOOP);
  GEMM(c, uh, GEMM_NONE);
  PHASE(c, named(c, "h'"), SCHED_LOOP);
  Cell *b = bwd(c);
  cr_assert_eq(b->sched->gsum[param(b, "W")], GSUM_GEMM);
  cr_assert_eq(b->sched->gsum[param(b, "u")], GSUM_ROWS);
  module_free(m);
}

Test(schedule, concat_cell_matvec_cannot_be_hoisted)
{
  /* W @ concat(x, h): the one matmul reads the state through its operand, so
   * it stays in the loop, a GEMM over the B rows of each step. (Splitting W's
   * columns would hoist the x half; the schedule does not rewrite the IR.) */
  Module *m = load_module(srcpath("examples/concat_cell.rnn"));
  cr_assert(m);
  Cell *c = cell(m, "concat_rnn");
  int w = find(c, OP_MATVEC, "W", NULL);
  cr_assert_eq(c->node[c->node[w].arg[1]].op, OP_CONCAT);
  PHASE(c, w, SCHED_LOOP);
  GEMM(c, w, GEMM_B);
  PHASE(c, c->node[w].arg[1], SCHED_LOOP);
  for (int i = 0; i < c->nnode; i++)
    cr_assert_neq(c->sched->gemm[i], GEMM_TB, "nothing of concat_rnn is a T*B GEMM");
  module_free(m);
}

Test(schedule, output_apart_from_the_state_goes_after_the_loop)
{
  /* The output reads the new state but no state reads it: POST, one GEMM over
   * all T*B rows, from h' stored per step. In backward, its adjoint chain reads
   * only d_out and saved values: hoisted before the loop. */
  Module *m = mod("cell sep(x: [I]) state(h: [H]) {\n"
                  "  param W: [H, I], U: [H, H], W_o: [K, H]\n"
                  "  h' = tanh(W @ x + U @ h)\n"
                  "  y = tanh(W_o @ h')\n"
                  "  out y\n"
                  "}\n");
  Cell *c = cell(m, "sep");
  int wo = find(c, OP_MATVEC, "W_o", "h'"), hn = named(c, "h'");
  PHASE(c, wo, SCHED_POST);
  GEMM(c, wo, GEMM_TB);
  PHASE(c, named(c, "y"), SCHED_POST);
  PHASE(c, hn, SCHED_LOOP);
  cr_assert_eq(c->sched->store[hn], 1, "h' is stored per step for W_o @ h'");
  PHASE(c, find(c, OP_MATVEC, "U", "h"), SCHED_LOOP);

  Cell *b = bwd(c);
  int p = param(b, "W_o"), g = b->grad[p];
  cr_assert_eq(b->node[g].op, OP_OUTER);
  PHASE(b, g, SCHED_PRE); /* outer(d_y_pre, h_next): both operands known before the loop */
  GEMM(b, g, GEMM_TB);
  cr_assert_eq(b->sched->gsum[p], GSUM_GEMM);
  int back = -1; /* matvec_t(W_o, ...): the adjoint of h' from the output */
  for (int i = 0; i < b->nnode; i++)
    if (b->node[i].op == OP_MATVECT && strcmp(nm(b, b->node[i].arg[0]), "W_o") == 0)
      back = i;
  cr_assert_geq(back, 0);
  PHASE(b, back, SCHED_PRE);
  GEMM(b, back, GEMM_TB);
  module_free(m);
}

Test(schedule, constant_update_and_dead_node)
{
  Module *m = mod("cell cu(x: [I]) state(h: [H]) {\n"
                  "  param W: [H, I]\n"
                  "  unused = tanh(x)\n"
                  "  h' = tanh(W @ x)\n"
                  "  out h\n"
                  "}\n");
  Cell *c = cell_find(m, "cu");
  cr_assert(schedule_cell(m, c));
  PHASE(c, named(c, "h'"), SCHED_PRE); /* reads no state: all steps at once */
  GEMM(c, find(c, OP_MATVEC, "W", "x"), GEMM_TB);
  PHASE(c, named(c, "unused"), SCHED_DEAD);
  PHASE(c, named(c, "h"), SCHED_LOOP);
  module_free(m);
}

Test(schedule, per_row_matrix_is_no_gemm)
{
  Module *m = load_module(srcpath("tests/models/outer_cell.rnn"));
  cr_assert(m);
  Cell *c = cell(m, "outer_cell");
  int oh = find(c, OP_MATVEC, "o", "h");
  PHASE(c, oh, SCHED_LOOP);
  GEMM(c, oh, GEMM_NONE); /* o = outer(s, c) differs per row */
  Cell *b = bwd(c);
  cr_assert_eq(b->sched->gsum[param(b, "W")], GSUM_GEMM);
  int p = param(b, "s"), g = b->grad[p], dO = named(b, "d_o");
  cr_assert_eq(b->sched->gsum[p], GSUM_ROWS); /* d_o @ c, per row */
  /* No [H, H] matrix is kept for all T*B rows: o = outer(s, c) reads only saved
   * values but runs in the loop that reads it; d_o @ c, which no state needs,
   * runs in the loop too, so only that [H] vector is stored, not d_o. */
  PHASE(b, named(b, "o"), SCHED_LOOP);
  PHASE(b, g, SCHED_LOOP);
  cr_assert_eq(b->sched->store[dO], 0);
  cr_assert_eq(b->sched->store[g], 1);
  module_free(m);
}

/* ---- every example ------------------------------------------------------------- */

static char **files(const char *dir, int *n)
{
  DIR *d = opendir(srcpath(dir));
  cr_assert(d, "no %s", dir);
  char **v = NULL;
  *n = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    size_t len = strlen(e->d_name);
    if (len > 4 && strcmp(e->d_name + len - 4, ".rnn") == 0) {
      v = realloc(v, (size_t)(*n + 1) * sizeof *v);
      v[*n] = malloc(strlen(dir) + len + 2);
      sprintf(v[(*n)++], "%s/%s", dir, e->d_name);
    }
  }
  closedir(d);
  return v;
}

/* The phases are consistent: operands run no later than their users, PRE
 * reads only PRE, updates are never POST, stores are LOOP values. */
static void consistent(const Cell *c)
{
  const CellSched *s = c->sched;
  cr_assert(s, "cell %s is not scheduled", c->name);
  for (int i = 0; i < c->nnode; i++) {
    const Node *n = &c->node[i];
    if (s->phase[i] == SCHED_DEAD)
      continue;
    for (int k = 0; k < n->narg; k++) {
      int a = s->phase[n->arg[k]];
      cr_assert(a != SCHED_DEAD, "%s: node %d reads a dead node", c->name, i);
      cr_assert(a <= s->phase[i], "%s: node %d (%s) reads node %d (%s)", c->name, i, phname(s->phase[i]),
                n->arg[k], phname(a));
    }
    if (s->store[i])
      cr_assert_eq(s->phase[i], SCHED_LOOP);
    if (s->gemm[i] == GEMM_B)
      cr_assert_eq(s->phase[i], SCHED_LOOP);
  }
  for (int k = 0; k < c->nstate; k++)
    if (c->next[k] >= 0)
      cr_assert(s->phase[c->next[k]] == SCHED_PRE || s->phase[c->next[k]] == SCHED_LOOP);
}

Test(schedule, every_example_and_test_model)
{
  const char *dirs[] = {"examples", "tests/models"};
  for (int d = 0; d < 2; d++) {
    int n;
    char **v = files(dirs[d], &n);
    cr_assert_gt(n, 0);
    for (int i = 0; i < n; i++) {
      char *text = read_file(srcpath(v[i]));
      cr_assert(text, "%s", v[i]);
      Module *m = mod(text);
      free(text);
      int ncell = 0;
      for (int k = 0; k < m->nmodel; k++) {
        const Model *md = m->model[k];
        for (int j = 0; j < md->nnode; j++) {
          if (md->node[j].kind != M_CELL)
            continue;
          consistent(md->node[j].cell);
          ncell++;
          if (md->grad)
            consistent(md->grad->cellgrad[j]->bwd);
        }
      }
      cr_assert_gt(ncell, 0, "%s applies no cell", v[i]);
      module_free(m);
      free(v[i]);
    }
    free(v);
  }
}

/* ---- the printed schedule ------------------------------------------------------- */

static char *printed(const CellSched *s)
{
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  cr_assert(f);
  print_cellsched(f, s);
  fclose(f);
  return buf;
}

Test(schedule, lstm_printed_as_golden)
{
  Module *m = mod(NULL);
  Cell *c = cell(m, "lstm");
  char *a = printed(c->sched), *b = printed(bwd(c)->sched);
  char *want = read_file(srcpath("tests/golden/lstm.schedule"));
  cr_assert(want);
  size_t n = strlen(a) + strlen(b) + 1;
  char *got = malloc(n);
  snprintf(got, n, "%s%s", a, b);
  cr_assert_str_eq(got, want);
  free(got);
  free(want);
  free(a);
  free(b);
  module_free(m);
}

Test(schedule, print_after_schedule_on_every_example_parses_back)
{
  int n;
  char **v = files("examples", &n);
  for (int i = 0; i < n; i++) {
    char cmd[4096], *out;
    snprintf(cmd, sizeof cmd, "'%s' print '%s' --after schedule", RNNC_BINARY, srcpath(v[i]));
    cr_assert_eq(run_cmd(cmd, &out), 0, "%s:\n%s", v[i], out);
    cr_assert(strstr(out, "\n# ---- schedule of cell "), "%s:\n%s", v[i], out);
    free(out);
    snprintf(cmd, sizeof cmd, "'%s' print '%s' --after schedule | '%s' check - >/dev/null",
             RNNC_BINARY, srcpath(v[i]), RNNC_BINARY);
    cr_assert_eq(run_cmd(cmd, &out), 0, "%s: the printed schedule does not parse:\n%s", v[i],
                 out);
    free(out);
    free(v[i]);
  }
  free(v);
}
