/* test_parse.c — the parser and the printer: exact round trips over every
 * model file, canonical text (parentheses, numbers, split runs), the graph the
 * parser builds, exact diagnostics with their carets, and robustness against
 * truncated, corrupted and deeply nested input. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* A module without the prelude, so that the prelude itself parses into it. */
static Module *bare(void)
{
  Arena *a = arena_new();
  Module *m = aalloc(a, sizeof *m);
  m->arena = a;
  m->names = names_new(a);
  m->diags.arena = a;
  return m;
}

static Module *parse_text(Module *m, const char *name, const char *text, int *st)
{
  *st = parse(m, source_new(m, name, text));
  return m;
}

/* The printed module (malloc'ed). Not inlined: GCC's -Wdangling-pointer
 * mistakes the open_memstream buffer for a local. */
__attribute__((noinline)) static char *print_str(const Module *m)
{
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  print_module(f, m, 1);
  fclose(f);
  return buf;
}

/* The rendered diagnostics (malloc'ed). */
__attribute__((noinline)) static char *diag_str(const Module *m)
{
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  diags_print(f, &m->diags);
  fclose(f);
  return buf;
}

/* ---- structural comparison of two modules (names compared as strings) ---- */

static int streq(const char *a, const char *b) { return a == b || (a && b && strcmp(a, b) == 0); }

static int dimsame(Dim a, Dim b)
{
  if (a.c != b.c || a.nterm != b.nterm)
    return 0;
  for (int i = 0; i < a.nterm; i++)
    if (a.t[i].k != b.t[i].k || strcmp(a.t[i].sym, b.t[i].sym))
      return 0;
  return 1;
}

static int shapesame(const Shape *a, const Shape *b)
{
  if (a->rank != b->rank)
    return 0;
  for (int i = 0; i < a->rank; i++)
    if (!dimsame(a->d[i], b->d[i]))
      return 0;
  return 1;
}

/* A bijection between the nodes of two cells, built while matching. */
typedef struct Iso {
  const Cell *a, *b;
  int *ab, *ba;
} Iso;

static int eqnode(Iso *s, int i, int j)
{
  if (i < 0 || j < 0)
    return i == j;
  if (s->ab[i] >= 0 || s->ba[j] >= 0)
    return s->ab[i] == j && s->ba[j] == i;
  s->ab[i] = j;
  s->ba[j] = i;
  const Node *x = &s->a->node[i], *y = &s->b->node[j];
  if (x->op != y->op || x->narg != y->narg || !streq(x->name, y->name) ||
      !shapesame(&x->shape, &y->shape))
    return 0;
  if (x->op == OP_CONST && memcmp(&x->cval, &y->cval, sizeof x->cval) != 0)
    return 0;
  if (x->op == OP_SPLIT && (x->k != y->k || x->n != y->n))
    return 0;
  if (x->op == OP_SLICE && !dimsame(x->start, y->start))
    return 0;
  for (int k = 0; k < x->narg; k++)
    if (!eqnode(s, x->arg[k], y->arg[k]))
      return 0;
  return 1;
}

/* NULL when the cells are the same graph; with exact, node ids must agree too. */
static const char *cellsame(const Cell *a, const Cell *b, int exact)
{
  if (!streq(a->name, b->name))
    return "cell names differ";
  if (a->nnode != b->nnode || a->ninput != b->ninput || a->nstate != b->nstate ||
      a->nparam != b->nparam || a->nout != b->nout)
    return "node, input, state, param or out counts differ";
  Iso s = {a, b, calloc((size_t)a->nnode + 1, sizeof(int)), calloc((size_t)a->nnode + 1, sizeof(int))};
  for (int i = 0; i < a->nnode; i++)
    s.ab[i] = s.ba[i] = -1;
  const char *why = NULL;
  for (int i = 0; i < a->ninput && !why; i++)
    if (!eqnode(&s, a->input[i], b->input[i]))
      why = "inputs differ";
  for (int i = 0; i < a->nstate && !why; i++)
    if (!eqnode(&s, a->state[i], b->state[i]) || !eqnode(&s, a->next[i], b->next[i]))
      why = "states or their updates differ";
  for (int i = 0; i < a->nparam && !why; i++)
    if (!eqnode(&s, a->param[i], b->param[i]) || !eqnode(&s, a->grad[i], b->grad[i]))
      why = "params or their gradients differ";
  for (int i = 0; i < a->nout && !why; i++)
    if (!eqnode(&s, a->out[i], b->out[i]))
      why = "outputs differ";
  for (int i = 0; i < a->nnode && !why; i++) {
    if (!a->node[i].name)
      continue;
    int j = 0;
    while (j < b->nnode && !streq(b->node[j].name, a->node[i].name))
      j++;
    if (j == b->nnode || !eqnode(&s, i, j))
      why = "a named value differs";
  }
  for (int i = 0; i < a->nnode && !why; i++)
    if (s.ab[i] < 0)
      why = "a node is not reachable from any name, output, update or gradient";
    else if (exact && s.ab[i] != i)
      why = "node order differs";
  free(s.ab);
  free(s.ba);
  return why;
}

static const char *modelsame(const Model *a, const Model *b)
{
  if (!streq(a->name, b->name) || a->ndim != b->ndim || a->nnode != b->nnode ||
      a->noutput != b->noutput)
    return "model name, dims, node or output counts differ";
  for (int i = 0; i < a->ndim; i++)
    if (!streq(a->dim[i].name, b->dim[i].name) || a->dim[i].hasdefault != b->dim[i].hasdefault ||
        a->dim[i].def != b->dim[i].def)
      return "model dims differ";
  for (int i = 0; i < a->nnode; i++) {
    const MNode *x = &a->node[i], *y = &b->node[i];
    if (x->kind != y->kind || !streq(x->name, y->name) || x->narg != y->narg)
      return "node kind, name or operand count differs";
    for (int k = 0; k < x->narg; k++)
      if (x->arg[k] != y->arg[k])
        return "operands differ";
    if (x->kind == M_INPUT && (x->dtype != y->dtype || !shapesame(&x->shape, &y->shape)))
      return "input types differ";
    if (!dimsame(x->size[0], y->size[0]) || !dimsame(x->size[1], y->size[1]))
      return "sizes differ";
    if (!streq(x->cellname, y->cellname) || x->nbind != y->nbind || x->backward != y->backward ||
        x->initfrom != y->initfrom || x->ninit != y->ninit)
      return "cell applications differ";
    for (int k = 0; k < x->nbind; k++)
      if (!streq(x->bindname[k], y->bindname[k]) || !dimsame(x->bindval[k], y->bindval[k]))
        return "bindings differ";
    for (int k = 0; k < x->ninit; k++)
      if (x->init[k] != y->init[k])
        return "initial states differ";
    if (!streq(x->statename, y->statename) || x->target != y->target ||
        x->hasignore != y->hasignore || x->ignore != y->ignore)
      return "final or softmax options differ";
  }
  for (int i = 0; i < a->noutput; i++)
    if (a->output[i] != b->output[i])
      return "outputs differ";
  return NULL;
}

static const char *modulesame(const Module *a, const Module *b, int exact)
{
  if (a->ncell != b->ncell || a->nmodel != b->nmodel)
    return "cell or model counts differ";
  for (int i = 0; i < a->ncell; i++) {
    const char *why = cellsame(a->cell[i], b->cell[i], exact);
    if (why)
      return why;
  }
  for (int i = 0; i < a->nmodel; i++) {
    const char *why = modelsame(a->model[i], b->model[i]);
    if (why)
      return why;
  }
  return NULL;
}

/* Operands come before their users in every cell. */
static int topological(const Module *m)
{
  for (int i = 0; i < m->ncell; i++)
    for (int j = 0; j < m->cell[i]->nnode; j++)
      for (int k = 0; k < m->cell[i]->node[j].narg; k++)
        if (m->cell[i]->node[j].arg[k] >= j || m->cell[i]->node[j].arg[k] < 0)
          return 0;
  return 1;
}

/* print(parse(x)) == print(parse(print(parse(x)))), the same graph each time
 * (node for node from the second parse on). NULL or the reason it fails. */
static const char *roundtrip(const char *name, const char *text, char **printed)
{
  static char why[256];
  int st;
  const char *r = NULL;
  Module *m1 = parse_text(bare(), name, text, &st), *m2 = NULL, *m3 = NULL;
  char *p1 = NULL, *p2 = NULL, *p3 = NULL;
  if (st != RNNC_OK) {
    char *d = diag_str(m1);
    snprintf(why, sizeof why, "does not parse:\n%.200s", d);
    free(d);
    r = why;
    goto out;
  }
  p1 = print_str(m1);
  m2 = parse_text(bare(), "<printed>", p1, &st);
  if (st != RNNC_OK) {
    char *d = diag_str(m2);
    snprintf(why, sizeof why, "printed text does not parse:\n%.200s", d);
    free(d);
    r = why;
    goto out;
  }
  p2 = print_str(m2);
  m3 = parse_text(bare(), "<printed>", p2, &st);
  p3 = print_str(m3);
  if (strcmp(p1, p2) != 0)
    r = "printing the reparsed text gives different text";
  else if (strcmp(p2, p3) != 0)
    r = "the third print differs";
  else if (!topological(m1) || !topological(m2))
    r = "a node comes before its operand";
  else if ((r = modulesame(m1, m2, 0)) || (r = modulesame(m2, m3, 1))) {
    snprintf(why, sizeof why, "the reparsed graph differs: %s", r);
    r = why;
  }
out:
  if (printed && p1)
    *printed = strdup(p1);
  free(p1);
  free(p2);
  free(p3);
  module_free(m1);
  module_free(m2);
  module_free(m3);
  return r;
}

/* Every *.rnn of a source directory (malloc'ed paths, sorted), count in *n. */
static char **rnnfiles(const char *dir, int *n)
{
  char **v = NULL;
  int cnt = 0;
  DIR *d = opendir(srcpath(dir));
  struct dirent *e;
  while (d && (e = readdir(d))) {
    size_t l = strlen(e->d_name);
    if (l > 4 && strcmp(e->d_name + l - 4, ".rnn") == 0) {
      v = realloc(v, (size_t)(cnt + 1) * sizeof *v);
      v[cnt] = malloc(strlen(dir) + l + 2);
      sprintf(v[cnt++], "%s/%s", dir, e->d_name);
    }
  }
  if (d)
    closedir(d);
  for (int i = 1; i < cnt; i++)
    for (int j = i; j > 0 && strcmp(v[j - 1], v[j]) > 0; j--) {
      char *t = v[j];
      v[j] = v[j - 1];
      v[j - 1] = t;
    }
  *n = cnt;
  return v;
}

static void freefiles(char **v, int n)
{
  for (int i = 0; i < n; i++)
    free(v[i]);
  free(v);
}

static const char *const rtdirs[] = {"examples", "tests/roundtrip", "tests/models", "tests/fixtures"};

static int roundtrip_dir(const char *dir)
{
  int n;
  char **files = rnnfiles(dir, &n);
  for (int i = 0; i < n; i++) {
    char *text = read_file(srcpath(files[i]));
    cr_assert(text, "cannot read %s", files[i]);
    const char *why = roundtrip(files[i], text, NULL);
    cr_expect(why == NULL, "%s: %s", files[i], why);
    free(text);
  }
  freefiles(files, n);
  return n;
}

Test(roundtrip, prelude)
{
  char *text = read_file(srcpath("ir/prelude.rnn"));
  cr_assert(text);
  char *printed = NULL;
  const char *why = roundtrip("ir/prelude.rnn", text, &printed);
  cr_assert(why == NULL, "prelude: %s", why);
  /* the prelude is written canonically, apart from its comments */
  cr_assert(strstr(printed, "cell lstm(x: [I]) state(h: [H], c: [H]) {\n"
                            "  param W_ih: [4*H, I], W_hh: [4*H, H], b_ih: [4*H], b_hh: [4*H]\n"
                            "  gates = W_ih @ x + b_ih + W_hh @ h + b_hh\n"
                            "  i, f, g, o = split(gates, 4)\n"
                            "  c' = sigmoid(f) * c + sigmoid(i) * tanh(g)\n"
                            "  h' = sigmoid(o) * tanh(c')\n"
                            "  out h'\n"
                            "}\n"),
            "printed:\n%s", printed);
  free(printed);
  free(text);
}

Test(roundtrip, examples) { roundtrip_dir("examples"); }

Test(roundtrip, own_inputs)
{
  /* tests/roundtrip covers every syntax form; it must not be empty */
  cr_assert_geq(roundtrip_dir("tests/roundtrip"), 3);
}

Test(roundtrip, test_models)
{
  roundtrip_dir("tests/models");
  roundtrip_dir("tests/fixtures");
}

/* tests/roundtrip/X.rnn prints exactly as tests/roundtrip/X.out; the inputs
 * are also valid models (parse and verify with the prelude). */
Test(roundtrip, golden_print)
{
  int n, checked = 0;
  char **files = rnnfiles("tests/roundtrip", &n);
  for (int i = 0; i < n; i++) {
    char *text = read_file(srcpath(files[i]));
    char outpath[4096];
    snprintf(outpath, sizeof outpath, "%.*s.out", (int)strlen(files[i]) - 4, files[i]);
    char *want = read_file(srcpath(outpath));
    cr_assert(want, "%s has no golden %s", files[i], outpath);
    int st;
    Module *m = parse_text(bare(), files[i], text, &st);
    cr_assert_eq(st, RNNC_OK, "%s does not parse", files[i]);
    char *got = print_str(m);
    cr_expect_str_eq(got, want, "%s: printed text differs from %s", files[i], outpath);
    Module *v = load_module(srcpath(files[i]));
    cr_expect(v != NULL, "%s does not verify", files[i]);
    module_free(v);
    module_free(m);
    free(got);
    free(want);
    free(text);
    checked++;
  }
  freefiles(files, n);
  cr_assert_geq(checked, 3);
}

/* ---- canonical text: parentheses, unary minus, numbers ---- */

/* The printed line of value `a` in a cell whose body is `stmt`. */
static char *canon_line(const char *stmt)
{
  char text[1024];
  snprintf(text, sizeof text,
           "cell t(x: [H], y: [H], z: [H]) state(h: [H]) {\n"
           "  param W: [H, H], V: [H, H]\n"
           "  %s\n"
           "}\n",
           stmt);
  int st;
  Module *m = parse_text(bare(), "t.rnn", text, &st);
  cr_assert_eq(st, RNNC_OK, "'%s' does not parse", stmt);
  char *p = print_str(m);
  char *line = strstr(p, "\n  a = ");
  cr_assert(line, "no line for a in:\n%s", p);
  line += 3;
  char *end = strchr(line, '\n');
  char *r = strndup(line, (size_t)(end - line));
  free(p);
  module_free(m);
  return r;
}

static const char *const canon_cases[][2] = {
    {"a = (x - y) - z", "a = x - y - z"},
    {"a = x - (y - z)", "a = x - (y - z)"},
    {"a = x - (y + z)", "a = x - (y + z)"},
    {"a = (x + y) + z", "a = x + y + z"},
    {"a = x + (y + z)", "a = x + (y + z)"},
    {"a = (x * y) + z", "a = x * y + z"},
    {"a = x * (y + z)", "a = x * (y + z)"},
    {"a = (x + y) * z", "a = (x + y) * z"},
    {"a = x / (y * z)", "a = x / (y * z)"},
    {"a = x / y * z", "a = x / y * z"},
    {"a = (W @ x) * y", "a = W @ x * y"},
    {"a = W @ (x * y)", "a = W @ (x * y)"},
    {"a = (W + V) @ x", "a = (W + V) @ x"},
    {"a = W @ (V @ x)", "a = W @ (V @ x)"},
    {"a = -(x + y)", "a = -(x + y)"},
    {"a = -x * y", "a = -x * y"},
    {"a = -(x * y)", "a = -(x * y)"},
    {"a = neg(x)", "a = -x"},
    {"a = -(W @ x)", "a = -(W @ x)"},
    {"a = - -x", "a = -(-x)"},
    {"a = -(1)", "a = -(1)"},
    {"a = -tanh(x)", "a = -tanh(x)"},
    {"a = -1 * x", "a = -1 * x"},
    {"a = x - -1", "a = x - -1"},
    {"a = x * -2.5", "a = x * -2.5"},
    {"a = 1 - (1 - x)", "a = 1 - (1 - x)"},
    {"a = 1e-8 * x", "a = 1e-08 * x"},
    {"a = 0.1 + x", "a = 0.1 + x"},
    {"a = 1.0 * x", "a = 1 * x"},
    {"a = 2.5e3 * x", "a = 2500 * x"},
    {"a = 1e20 * x", "a = 1e+20 * x"},
    {"a = -0.0 * x", "a = -0 * x"},
    {"a = 1e300 * x", "a = 1e+300 * x"},
    {"a = 0.30000000000000004 * x", "a = 0.30000000000000004 * x"},
    {"a = tanh(((x)))", "a = tanh(x)"},
    {"a = split(x, 2)[1] + (y)", "a = split(x, 2)[1] + y"},
    {"a = slice(x, 2*H - 1, 1)", "a = slice(x, 2*H - 1, 1)"},
    {"a = slice(x, -H + 2*H, H)", "a = slice(x, H, H)"},
    {"a = zeros([2*H + 1])", "a = zeros([2*H + 1])"},
    {"a = concat(x, y, z) * (sigmoid(h))", "a = concat(x, y, z) * sigmoid(h)"},
    {"a = matvec_t(W, x) + outer(x, y) @ z", "a = matvec_t(W, x) + outer(x, y) @ z"},
    {"a = (\n  x +\n  y\n)", "a = x + y"},
};

Test(canonical, parentheses_and_numbers)
{
  for (size_t i = 0; i < sizeof canon_cases / sizeof *canon_cases; i++) {
    char *got = canon_line(canon_cases[i][0]);
    cr_expect(strcmp(got, canon_cases[i][1]) == 0, "'%s' printed as '%s', want '%s'",
              canon_cases[i][0], got, canon_cases[i][1]);
    free(got);
  }
}

/* Shared anonymous values (as autodiff makes) print with a fresh name, and
 * update nodes without a name print as X' = ...; deep expressions are cut. */
Test(canonical, fresh_names_for_shared_nodes)
{
  Module *m = bare();
  Loc l = {0};
  Cell *c = cell_new(m, "shared", l);
  Shape v = {1, {dim_sym(intern(m->names, "H", 1))}};
  int x = cell_decl(m, c, OP_INPUT, "x", l, &v);
  int h = cell_decl(m, c, OP_STATE, "h", l, &v);
  int args[2] = {x, h};
  int t = cell_add(m, c, OP_ADD, NULL, l, args, 2); /* used twice */
  cell_add(m, c, OP_CONST, "_t2", l, NULL, 0);        /* takes the first fresh name */
  c->node[3].cval = 2;
  int a2[2] = {t, t};
  int u = cell_add(m, c, OP_MUL, NULL, l, a2, 2);     /* used once, by h' */
  c->next[0] = u;
  int a3[1] = {t};
  int o = cell_add(m, c, OP_TANH, NULL, l, a3, 1);
  cell_addout(m, c, o, l);
  char *p = print_str(m);
  cr_assert_str_eq(p, "cell shared(x: [H]) state(h: [H]) {\n"
                      "  _t2_1 = x + h\n"
                      "  _t2 = 2\n"
                      "  h' = _t2_1 * _t2_1\n"
                      "  out tanh(_t2_1)\n"
                      "}\n");
  const char *why = roundtrip("shared", p, NULL);
  cr_assert(why == NULL, "%s", why);
  free(p);
  module_free(m);

  /* a chain deeper than the parser accepts is printed in named pieces */
  m = bare();
  v.d[0] = dim_sym(intern(m->names, "H", 1));
  c = cell_new(m, "deep", l);
  x = cell_decl(m, c, OP_INPUT, "x", l, &v);
  int prev = x;
  for (int i = 0; i < 3 * EXPR_MAXDEPTH; i++)
    prev = cell_add(m, c, OP_TANH, NULL, l, &prev, 1);
  cell_addout(m, c, prev, l);
  p = print_str(m);
  cr_assert(strstr(p, " = tanh(tanh("), "%.200s", p);
  why = roundtrip("deep", p, NULL);
  cr_assert(why == NULL, "%s", why);
  free(p);
  module_free(m);
}

/* The backward cells autodiff derives are ordinary IR: printed with the
 * prelude and the models, they parse back to the same graph. */
Test(roundtrip, after_autodiff)
{
  int n, nbackward = 0;
  char **files = rnnfiles("examples", &n);
  for (int i = 0; i < n; i++) {
    Module *m = load_module(srcpath(files[i]));
    cr_assert(m, "%s does not load", files[i]);
    int ncell = m->ncell;
    for (int k = 0; k < m->nmodel; k++)
      cr_assert(autodiff(m, m->model[k]), "%s: autodiff failed", files[i]);
    nbackward += m->ncell - ncell;
    char *p = print_str(m);
    const char *why = roundtrip(files[i], p, NULL);
    cr_expect(why == NULL, "%s after autodiff: %s", files[i], why);
    free(p);
    module_free(m);
  }
  freefiles(files, n);
  cr_assert_geq(nbackward, n, "every example has at least one backward cell");
}

/* ---- the graph the parser builds ---- */

static Module *parse_ok(const char *text)
{
  int st;
  Module *m = parse_text(bare(), "t.rnn", text, &st);
  if (st != RNNC_OK) {
    char *d = diag_str(m);
    cr_assert_fail("does not parse:\n%s", d);
  }
  return m;
}

static int findnode(const Cell *c, const char *name)
{
  for (int i = 0; i < c->nnode; i++)
    if (streq(c->node[i].name, name))
      return i;
  return -1;
}

Test(graph, cell_nodes)
{
  Module *m = parse_ok("cell c(x: [2*H]) state(h: [H]) {\n"
                       "  param W: [H, 2*H]\n"
                       "  b = a * -2 - -h\n"
                       "  a = W @ x\n"
                       "  p, q = split(x, 2)\n"
                       "  r = split(x, 2)[1]\n"
                       "  s = slice(x, H, H - 1)\n"
                       "  h' = b\n"
                       "  out h' + p + q + r + concat(s, zeros([1]))\n"
                       "}\n");
  Cell *c = m->cell[0];
  cr_assert_eq(c->ninput, 1);
  cr_assert_eq(c->nstate, 1);
  cr_assert_eq(c->nparam, 1);
  int a = findnode(c, "a"), b = findnode(c, "b");
  cr_assert(a >= 0 && b > a, "a = %d must come before b = %d", a, b);
  /* b = SUB(MUL(a, const -2), NEG(h)) */
  const Node *nb = &c->node[b];
  cr_assert_eq(nb->op, OP_SUB);
  const Node *mul = &c->node[nb->arg[0]], *neg = &c->node[nb->arg[1]];
  cr_assert_eq(mul->op, OP_MUL);
  cr_assert_eq(mul->arg[0], a);
  cr_assert_eq(c->node[mul->arg[1]].op, OP_CONST);
  cr_assert_eq(c->node[mul->arg[1]].cval, -2.0);
  cr_assert_eq(c->node[mul->arg[1]].shape.rank, 0);
  cr_assert_eq(neg->op, OP_NEG);
  cr_assert_eq(neg->arg[0], c->state[0]);
  /* h' = b: the state's update is b itself, no copy */
  cr_assert_eq(c->next[0], b);
  cr_assert_eq(c->nextloc[0].line, 8);
  /* split statement: parts 0 and 1 of one source, consecutive */
  int p = findnode(c, "p"), q = findnode(c, "q"), r = findnode(c, "r");
  cr_assert_eq(q, p + 1);
  cr_assert_eq(c->node[p].op, OP_SPLIT);
  cr_assert_eq(c->node[p].k, 0);
  cr_assert_eq(c->node[q].k, 1);
  cr_assert_eq(c->node[q].n, 2);
  cr_assert_eq(c->node[p].arg[0], c->input[0]);
  cr_assert_eq(c->node[r].k, 1);
  /* slice keeps its start and size */
  const Node *s = &c->node[findnode(c, "s")];
  cr_assert_eq(s->op, OP_SLICE);
  cr_assert_eq(s->start.nterm, 1);
  cr_assert_str_eq(s->start.t[0].sym, "H");
  cr_assert_eq(s->shape.rank, 1);
  cr_assert_eq(s->shape.d[0].c, -1);
  cr_assert_eq(c->nout, 1);
  cr_assert_eq(c->outloc[0].line, 9);
  cr_assert(topological(m));
  module_free(m);
}

Test(graph, grad_statements)
{
  Module *m = parse_ok("cell g(x: [I], d: [H]) {\n"
                       "  param W: [H, I], b: [H]\n"
                       "  grad b = d\n"
                       "  grad W = outer(d, x)\n"
                       "  out matvec_t(W, d)\n"
                       "}\n");
  Cell *c = m->cell[0];
  cr_assert_eq(c->grad[1], c->input[1]);
  cr_assert_eq(c->node[c->grad[0]].op, OP_OUTER);
  cr_assert_eq(c->node[c->out[0]].op, OP_MATVECT);
  module_free(m);
}

Test(graph, model_nodes)
{
  Module *m = parse_ok("model m(V, E = 8, H = 16, K) {\n"
                       "  input tokens: i32[T, B], tags: i32[T, B], h0: f32[B, H]\n"
                       "  e = embedding(tokens, V, E)\n"
                       "  enc = lstm(e, H = H, backward)\n"
                       "  dec = gru(e, H = 2*H, init = enc)\n"
                       "  g = rnn(e, H = H, init = (h0))\n"
                       "  loss = softmax(concat(dec, last(g)), K, target = tags, ignore = -1)\n"
                       "  p = probs(loss)\n"
                       "  hf = final(enc, c)\n"
                       "  output loss, p, hf\n"
                       "}\n");
  Model *md = m->model[0];
  cr_assert_eq(md->ndim, 4);
  cr_assert_eq(md->dim[1].hasdefault, 1);
  cr_assert_eq(md->dim[1].def, 8);
  cr_assert_eq(md->dim[3].hasdefault, 0);
  const MNode *n = md->node;
  cr_assert_eq(n[0].kind, M_INPUT);
  cr_assert_eq(n[0].dtype, DT_I32);
  cr_assert_eq(n[2].dtype, DT_F32);
  cr_assert_eq(n[2].shape.rank, 2);
  cr_assert_eq(n[3].kind, M_EMBEDDING);
  cr_assert_str_eq(n[3].size[1].t[0].sym, "E");
  cr_assert_eq(n[4].kind, M_CELL);
  cr_assert_str_eq(n[4].cellname, "lstm");
  cr_assert_eq(n[4].backward, 1);
  cr_assert_eq(n[4].nbind, 1);
  cr_assert_str_eq(n[4].bindname[0], "H");
  cr_assert_eq(n[5].initfrom, 4);
  cr_assert_eq(n[5].bindval[0].t[0].k, 2);
  cr_assert_eq(n[6].ninit, 1);
  cr_assert_eq(n[6].init[0], 2);
  /* nested nodes come right before their user */
  cr_assert_eq(n[7].kind, M_LAST);
  cr_assert_eq(n[8].kind, M_CONCAT);
  cr_assert_eq(n[8].name, NULL);
  cr_assert_eq(n[9].kind, M_SOFTMAX);
  cr_assert_eq(n[9].arg[0], 8);
  cr_assert_eq(n[9].target, 1);
  cr_assert_eq(n[9].hasignore, 1);
  cr_assert_eq(n[9].ignore, -1);
  cr_assert_eq(n[10].kind, M_PROBS);
  cr_assert_eq(n[11].kind, M_FINAL);
  cr_assert_str_eq(n[11].statename, "c");
  cr_assert_eq(md->noutput, 3);
  cr_assert_eq(md->output[2], 11);
  cr_assert_eq(md->outputloc[2].col, 19);
  module_free(m);
}

Test(graph, parse_shape)
{
  Module *m = bare();
  Shape s;
  cr_assert_eq(parse_shape(m, source_new(m, "<shape>", "[4*H, I + 2]"), &s), RNNC_OK);
  cr_assert_eq(s.rank, 2);
  cr_assert_eq(s.d[0].t[0].k, 4);
  cr_assert_eq(s.d[1].c, 2);
  cr_assert_eq(parse_shape(m, source_new(m, "<shape>", "[]"), &s), RNNC_OK);
  cr_assert_eq(s.rank, 0);
  cr_assert_eq(parse_shape(m, source_new(m, "<shape>", "[H] x"), &s), RNNC_ESYNTAX);
  cr_assert_eq(parse_shape(m, source_new(m, "<shape>", "[H, H, H, H]"), &s), RNNC_ESYNTAX);
  cr_assert_eq(parse_shape(m, source_new(m, "<shape>", "H"), &s), RNNC_ESYNTAX);
  cr_assert_eq(m->diags.nerror, 3);
  char *d = diag_str(m);
  cr_assert_str_eq(d, "<shape>:1:5: error: expected end of text after the shape, found 'x'\n"
                      " [H] x\n"
                      "     ^\n"
                      "<shape>:1:11: error: a shape has at most 3 dimensions\n"
                      " [H, H, H, H]\n"
                      "           ^\n"
                      "<shape>:1:1: error: expected a shape like [H] or [4*H, I], found 'H'\n"
                      " H\n"
                      " ^\n");
  free(d);
  module_free(m);
}

/* ---- exact diagnostics ---- */

static void expect_diags(const char *text, const char *want)
{
  int st;
  Module *m = parse_text(module_new(), "t.rnn", text, &st);
  cr_expect_eq(st, RNNC_ESYNTAX, "status %d for:\n%s", st, text);
  char *got = diag_str(m);
  cr_expect_str_eq(got, want, "for:\n%s", text);
  free(got);
  module_free(m);
}

Test(errors, unknown_op)
{
  expect_diags("cell c(x: [H]) state(h: [H]) {\n"
               "  h' = tanhh(x)\n"
               "  out h'\n"
               "}\n",
               "t.rnn:2:8: error: unknown op 'tanhh'\n"
               "   h' = tanhh(x)\n"
               "        ^\n");
}

Test(errors, undefined_and_duplicate)
{
  expect_diags("cell c(x: [H]) state(h: [H]) {\n"
               "  a = tanh(x)\n"
               "  a = sigmoid(x)\n"
               "  h' = a\n"
               "  out h'\n"
               "}\n"
               "cell d(x: [H]) state(h: [H]) {\n"
               "  h' = tanh(x + y)\n"
               "  out h'\n"
               "}\n",
               "t.rnn:3:3: error: duplicate definition of 'a'\n"
               "   a = sigmoid(x)\n"
               "   ^\n"
               "t.rnn:2:3: note: previous definition is here\n"
               "   a = tanh(x)\n"
               "   ^\n"
               "t.rnn:8:17: error: undefined name 'y'\n"
               "   h' = tanh(x + y)\n"
               "                 ^\n");
}

Test(errors, cycle)
{
  expect_diags("cell c(x: [H]) state(h: [H]) {\n"
               "  h' = a\n"
               "  a = tanh(b + x)\n"
               "  b = sigmoid(a)\n"
               "  out h'\n"
               "}\n",
               "t.rnn:3:3: error: cycle inside a step: a -> b -> a\n"
               "   a = tanh(b + x)\n"
               "   ^\n");
}

Test(errors, unclosed_paren_recovers_at_next_line)
{
  expect_diags("cell c(x: [H]) state(h: [H]) {\n"
               "  h' = tanh((x + h)\n"
               "  out h'\n"
               "  z = 1 +\n"
               "}\n",
               "t.rnn:2:20: error: expected ',' or ')' after arguments, found end of line\n"
               "   h' = tanh((x + h)\n"
               "                    ^\n"
               "t.rnn:4:10: error: expected an expression, found end of line\n"
               "   z = 1 +\n"
               "          ^\n");
}

Test(errors, continued_line_is_not_an_unclosed_paren)
{
  expect_diags("cell c(x: [H]) state(h: [H]) {\n"
               "  h' = tanh(x +\n"
               "            )\n"
               "  out h'\n"
               "}\n",
               "t.rnn:3:13: error: expected an expression, found ')'\n"
               "             )\n"
               "             ^\n");
}

Test(errors, several_per_run_in_source_order)
{
  expect_diags("cell c(x: [H]) state(h: [H]) {\n"
               "  a = tanh(x +)\n"
               "  b = sigmoid(x $ h)\n"
               "  h' = a\n"
               "  out h'\n"
               "}\n"
               "model m(H) {\n"
               "  input x: f32[T, B, H]\n"
               "  y = rnn(x, H = )\n"
               "  z = rnn(y, H)\n"
               "  w = last(y)\n"
               "  output w\n"
               "}\n",
               "t.rnn:2:15: error: expected an expression, found ')'\n"
               "   a = tanh(x +)\n"
               "               ^\n"
               "t.rnn:3:17: error: unexpected character '$'\n"
               "   b = sigmoid(x $ h)\n"
               "                 ^\n"
               "t.rnn:9:18: error: expected a dimension (a number, a name like H, or 4*H), found ')'\n"
               "   y = rnn(x, H = )\n"
               "                  ^\n");
}

Test(errors, model_rules)
{
  expect_diags("model m(V, H) {\n"
               "  input t: i32[T, B], t: i32[T, B]\n"
               "  loss = softmax(lstm(embedding(t, V, H), H = H), V, target = t)\n"
               "  r = rnn(t, H)\n"
               "  q = t\n"
               "  output nothing\n"
               "}\n",
               "t.rnn:2:23: error: duplicate definition of 't'\n"
               "   input t: i32[T, B], t: i32[T, B]\n"
               "                       ^\n"
               "t.rnn:2:9: note: previous definition is here\n"
               "   input t: i32[T, B], t: i32[T, B]\n"
               "         ^\n"
               "t.rnn:3:18: error: a node with parameters must be named: write NAME = lstm(...) on its own line\n"
               "   loss = softmax(lstm(embedding(t, V, H), H = H), V, target = t)\n"
               "                  ^\n"
               "t.rnn:4:14: error: 'H' is a dimension, not a node (bind a cell dimension with H = H)\n"
               "   r = rnn(t, H)\n"
               "              ^\n"
               "t.rnn:5:7: error: 'q = t' would only rename a node; a statement must build one\n"
               "   q = t\n"
               "       ^\n"
               "t.rnn:6:10: error: undefined name 'nothing'\n"
               "   output nothing\n"
               "          ^\n");
}

Test(errors, cell_rules)
{
  expect_diags("cell c(x: [H*4]) state(h: [H]) {\n"
               "}\n"
               "cell d(x: [H]) state(h: [H]) {\n"
               "  x' = tanh(x)\n"
               "  a, b = split(x, 3)\n"
               "  c = split(x, 2)[2]\n"
               "  d = split(x, 2)\n"
               "  grad x = h\n"
               "  h' = h\n"
               "}\n"
               "cell d() {\n"
               "}\n",
               "t.rnn:1:13: error: a dimension is written with its coefficient first, like 4*H\n"
               " cell c(x: [H*4]) state(h: [H]) {\n"
               "             ^\n"
               "t.rnn:4:3: error: cannot assign 'x'': 'x' is not a state\n"
               "   x' = tanh(x)\n"
               "   ^\n"
               "t.rnn:5:19: error: split into 3 parts needs 3 names, found 2\n"
               "   a, b = split(x, 3)\n"
               "                   ^\n"
               "t.rnn:6:19: error: split part 2 out of range: split(v, 2) has parts 0 to 1\n"
               "   c = split(x, 2)[2]\n"
               "                   ^\n"
               "t.rnn:7:18: error: expected '[k]' after split(v, n) (one part is split(v, n)[k]; all "
               "parts: a, b = split(v, 2)), found end of line\n"
               "   d = split(x, 2)\n"
               "                  ^\n"
               "t.rnn:8:8: error: grad of 'x': 'x' is not a parameter\n"
               "   grad x = h\n"
               "        ^\n"
               "t.rnn:11:6: error: duplicate definition of cell 'd'\n"
               " cell d() {\n"
               "      ^\n"
               "t.rnn:3:6: note: previous definition is here\n"
               " cell d(x: [H]) state(h: [H]) {\n"
               "      ^\n");
}

Test(errors, toplevel_and_unclosed_body)
{
  expect_diags("input x: f32[T, B, E]\n"
               "cell c(x: [H]) state(h: [H]) {\n"
               "  h' = x\n"
               "  out h'\n"
               "model m() {\n"
               "  output\n",
               "t.rnn:1:1: error: expected 'cell' or 'model', found 'input'\n"
               " input x: f32[T, B, E]\n"
               " ^\n"
               "t.rnn:5:1: error: expected '}' at the end of cell 'c', found 'model'\n"
               " model m() {\n"
               " ^\n"
               "t.rnn:6:9: error: expected a node name after 'output', found end of line\n"
               "   output\n"
               "         ^\n"
               "t.rnn:7:1: error: expected '}' at the end of model 'm', found end of file\n"
               " \n"
               " ^\n");
}

Test(errors, too_deep)
{
  char *text = malloc(4096);
  strcpy(text, "cell c(x: [H]) state(h: [H]) {\n  h' = ");
  for (int i = 0; i < 600; i++)
    strcat(text, "(");
  strcat(text, "x\n  out h'\n}\n");
  int st;
  Module *m = parse_text(bare(), "t.rnn", text, &st);
  cr_assert_eq(st, RNNC_ESYNTAX);
  cr_assert_eq(m->diags.nerror, 1);
  cr_assert_str_eq(m->diags.d[0].msg, "expression nested too deeply (at most 256 levels)");
  module_free(m);
  free(text);
}

/* ---- robustness: no input crashes, hangs or leaks ---- */

static int nparsed, nrejected;

/* Parse (and verify when it parses) one mutated text. */
static void survive(const char *what, const char *text)
{
  Module *m = module_new();
  int st = parse(m, source_new(m, "fuzz.rnn", text));
  if (st == RNNC_OK) {
    st = verify(m);
    cr_assert(st == RNNC_OK || st == RNNC_EVERIFY, "%s: verify returned %d", what, st);
    if (st == RNNC_OK) {
      /* whatever parses and verifies also round-trips */
      const char *why = roundtrip("fuzz.rnn", text, NULL);
      cr_assert(why == NULL, "%s: %s\n--- text:\n%s", what, why, text);
    }
    nparsed++;
  } else {
    cr_assert_eq(st, RNNC_ESYNTAX, "%s: parse returned %d", what, st);
    nrejected++;
  }
  if (st != RNNC_OK)
    cr_assert_gt(m->diags.nerror, 0, "%s: status %d without a diagnostic", what, st);
  module_free(m);
}

static uint64_t rnd(uint64_t *s)
{
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

static void mutate_file(const char *path, uint64_t seed)
{
  char *text = read_file(srcpath(path));
  cr_assert(text, "cannot read %s", path);
  size_t n = strlen(text);
  char *buf = malloc(n + 64);
  char what[512];
  /* every truncation */
  for (size_t i = 0; i < n; i++) {
    memcpy(buf, text, i);
    buf[i] = 0;
    snprintf(what, sizeof what, "%s truncated at %zu", path, i);
    survive(what, buf);
  }
  /* random flips, insertions and deletions, including bytes >= 0x80 and
   * the characters the grammar cares about */
  static const char interesting[] = "()[]{},:=+-*/@'.#\n0123456789eE_Hhx\t\x80\xff";
  uint64_t s = seed;
  for (int iter = 0; iter < 300; iter++) {
    memcpy(buf, text, n + 1);
    size_t len = n;
    int edits = 1 + (int)(rnd(&s) % 4);
    for (int e = 0; e < edits && len > 0; e++) {
      size_t at = rnd(&s) % len;
      char ch = rnd(&s) % 2 ? interesting[rnd(&s) % (sizeof interesting - 1)]
                            : (char)(1 + rnd(&s) % 255);
      switch (rnd(&s) % 3) {
      case 0:
        buf[at] = ch;
        break;
      case 1:
        memmove(buf + at + 1, buf + at, len - at + 1);
        buf[at] = ch;
        len++;
        break;
      default:
        memmove(buf + at, buf + at + 1, len - at);
        len--;
      }
    }
    snprintf(what, sizeof what, "%s mutation %d (seed %llu)", path, iter, (unsigned long long)seed);
    survive(what, buf);
  }
  free(buf);
  free(text);
}

Test(robust, mutated_inputs, .timeout = 600)
{
  nparsed = nrejected = 0;
  int total = 0;
  mutate_file("ir/prelude.rnn", 1);
  for (size_t d = 0; d < sizeof rtdirs / sizeof *rtdirs; d++) {
    int n;
    char **files = rnnfiles(rtdirs[d], &n);
    for (int i = 0; i < n; i++)
      mutate_file(files[i], 1000 + (uint64_t)total++);
    freefiles(files, n);
  }
  cr_assert_geq(total, 3);
  /* both outcomes occur: the mutations are neither all fatal nor all harmless */
  cr_assert_gt(nparsed, 100);
  cr_assert_gt(nrejected, 1000);
}

/* Repeat a piece n times between a head and a tail (malloc'ed). */
static char *repeat(const char *head, const char *piece, int n, const char *mid, const char *tail)
{
  size_t lp = strlen(piece);
  char *s = malloc(strlen(head) + lp * (size_t)n + strlen(mid) + strlen(tail) + 1);
  strcpy(s, head);
  char *p = s + strlen(s);
  for (int i = 0; i < n; i++, p += lp)
    memcpy(p, piece, lp);
  strcpy(p, mid);
  strcat(p, tail);
  return s;
}

Test(robust, deep_nesting)
{
  static const char *const pieces[] = {"(", "-", "tanh(", "split(", "concat(x, ", "[", "- -"};
  for (size_t i = 0; i < sizeof pieces / sizeof *pieces; i++)
    for (int n = 100; n <= 100000; n *= 10) {
      char *t = repeat("cell c(x: [H]) state(h: [H]) {\n  h' = ", pieces[i], n, "x", "\n  out h'\n}\n");
      char what[64];
      snprintf(what, sizeof what, "%d x '%s'", n, pieces[i]);
      survive(what, t);
      free(t);
    }
  for (int n = 100; n <= 100000; n *= 10) {
    char *t = repeat("model m(H) {\n  input x: f32[T, B, H]\n  y = sum(", "concat(", n, "x", ")\n}\n");
    survive("nested concat", t);
    free(t);
    t = repeat("model m(H) {\n  input x: f32[T, B, H]\n  y = rnn(x, H = H, init = ", "(", n, "x", ")\n}\n");
    survive("nested init", t);
    free(t);
    t = repeat("cell c(x: [", "H + ", n, "H", "]) {\n  out x\n}\n");
    survive("long dimension", t);
    free(t);
  }
  /* a long left-associative chain is a deep tree: rejected, not a stack overflow */
  char *t = repeat("cell c(x: [H]) state(h: [H]) {\n  h' = x", " + x", 100000, "", "\n  out h'\n}\n");
  int st;
  Module *m = parse_text(bare(), "t.rnn", t, &st);
  cr_assert_eq(st, RNNC_ESYNTAX);
  cr_assert_str_eq(m->diags.d[0].msg, "expression nested too deeply (at most 256 levels)");
  module_free(m);
  free(t);
}

/* 20000 equations each reading the next one: lowering orders them without
 * deep recursion, and the result is a chain in dependency order. */
Test(robust, long_forward_reference_chain)
{
  enum { N = 20000 };
  size_t cap = (size_t)N * 40 + 256;
  char *t = malloc(cap);
  size_t len = (size_t)sprintf(t, "cell c(x: [H]) state(h: [H]) {\n  h' = v0\n");
  for (int i = 0; i < N - 1; i++)
    len += (size_t)sprintf(t + len, "  v%d = tanh(v%d)\n", i, i + 1);
  len += (size_t)sprintf(t + len, "  v%d = tanh(x)\n  out h'\n}\n", N - 1);
  int st;
  Module *m = parse_text(bare(), "t.rnn", t, &st);
  cr_assert_eq(st, RNNC_OK);
  Cell *c = m->cell[0];
  cr_assert_eq(c->nnode, 2 + N);
  cr_assert(topological(m));
  cr_assert_str_eq(c->node[c->next[0]].name, "v0");
  cr_assert_eq(c->next[0], c->nnode - 1);
  module_free(m);
  /* and a cycle through all of them is found, reported once */
  t[strlen("cell c(x: [H]) state(h: [H]) {\n  h' = v0\n")] = 0;
  len = strlen(t);
  for (int i = 0; i < N; i++)
    len += (size_t)sprintf(t + len, "  v%d = tanh(v%d)\n", i, (i + 1) % N);
  strcat(t, "  out h'\n}\n");
  m = parse_text(bare(), "t.rnn", t, &st);
  cr_assert_eq(st, RNNC_ESYNTAX);
  cr_assert_eq(m->diags.nerror, 1);
  cr_assert(strncmp(m->diags.d[0].msg, "cycle inside a step: v0 -> v1 -> v2 -> ", 39) == 0, "%s",
            m->diags.d[0].msg);
  module_free(m);
  free(t);
}
