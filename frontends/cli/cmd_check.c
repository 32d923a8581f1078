/* cmd_check.c — `rnnc check MODEL.rnn`: parse and verify; print each model's
 * nodes with their types and shapes, its parameters, and the cells it uses. */
#include <string.h>

#include "cli.h"

static const OptSpec spec[] = {
    {"--model", 1, 0},
};

static void help(void)
{
  fputs("usage: rnnc check MODEL.rnn [--model NAME]\n"
        "\n"
        "Parse and verify MODEL.rnn (- reads standard input). Errors and warnings go\n"
        "to standard error as file:line:col: error: message, with the line and a caret.\n"
        "On success prints, for each model, a table of its nodes (op, type, shape,\n"
        "operands), its parameters with their shapes at the default sizes, and the\n"
        "parameters of each cell it uses.\n"
        "\n"
        "options:\n"
        "  --model NAME  show only model NAME of the file\n"
        "\n"
        "exit status: 0 the file is well formed, 1 it is not (or cannot be read), 2 bad usage\n",
        stdout);
}

static const char *dtype_str(int dt)
{
  switch (dt) {
  case DT_I32: return "i32";
  case DT_I64: return "i64";
  case DT_F64: return "f64";
  default: return "f32";
  }
}

/* A node's name, or for an anonymous one its expression: "last(h)". */
static char *label(Arena *a, const Model *md, int i)
{
  const MNode *n = &md->node[i];
  if (n->name)
    return (char *)n->name;
  char *s = aprintf(a, "%s(", n->kind == M_CELL ? n->cellname : mkind_name[n->kind]);
  for (int k = 0; k < n->narg; k++)
    s = aprintf(a, "%s%s%s", s, k ? ", " : "", label(a, md, n->arg[k]));
  if (n->kind == M_FINAL)
    s = aprintf(a, "%s, %s", s, n->statename);
  return aprintf(a, "%s)", s);
}

/* The operands of node i, by name: "x", "enc.fwd, enc.bwd". */
static char *operands(Arena *a, const Model *md, int i)
{
  const MNode *n = &md->node[i];
  char *s = "";
  for (int k = 0; k < n->narg; k++)
    s = aprintf(a, "%s%s%s", s, k ? ", " : "", label(a, md, n->arg[k]));
  return s;
}

static char *join(Arena *a, char *s, const char *t)
{
  return *s ? aprintf(a, "%s; %s", s, t) : astrdup(a, t);
}

/* What the table's last column says about node i. */
static char *notes(Arena *a, const Model *md, int i)
{
  const MNode *n = &md->node[i];
  char *s = "";
  switch (n->kind) {
  case M_EMBEDDING:
    s = aprintf(a, "ids in [0, %s), rows of size %s", dim_str(a, n->size[0]), dim_str(a, n->size[1]));
    break;
  case M_CELL: {
    if (n->cell && n->dimval) {
      char *b = "";
      for (int k = 0; k < n->cell->ndim; k++)
        b = aprintf(a, "%s%s%s = %s", b, k ? ", " : "", n->cell->dim[k], dim_str(a, n->dimval[k]));
      s = join(a, s, b);
    }
    if (n->backward)
      s = join(a, s, "backward (t = T..1)");
    if (n->initfrom >= 0)
      s = join(a, s, aprintf(a, "init = final states of %s", label(a, md, n->initfrom)));
    else if (n->ninit) {
      char *b = "init = (";
      for (int k = 0; k < n->ninit; k++)
        b = aprintf(a, "%s%s%s", b, k ? ", " : "", label(a, md, n->init[k]));
      s = join(a, s, aprintf(a, "%s)", b));
    }
    break;
  }
  case M_FINAL:
    s = aprintf(a, "state %s after the last step", n->statename);
    break;
  case M_LAST:
    s = "the step t = T";
    break;
  case M_SOFTMAX:
    s = aprintf(a, "over %s", dim_str(a, n->size[0]));
    if (n->target >= 0)
      s = aprintf(a, "%s; cross-entropy with %s", s, label(a, md, n->target));
    if (n->hasignore)
      s = aprintf(a, "%s, ignore = %ld", s, n->ignore);
    break;
  default:
    break;
  }
  if (md->loss == i)
    s = join(a, s, "the loss");
  for (int k = 0; k < md->noutput; k++)
    if (md->output[k] == i)
      s = join(a, s, "output");
  return s;
}

/* Evaluate a shape with env; NULL when a dimension is unbound. */
static char *shape_at(Arena *a, const Shape *sh, const Env *env, long long *numel)
{
  int64_t d[SHAPE_MAXRANK];
  *numel = 1;
  for (int k = 0; k < sh->rank; k++) {
    long v;
    const char *bad;
    if (!dim_eval(sh->d[k], env, &v, &bad))
      return NULL;
    d[k] = v;
    *numel *= v;
  }
  return fmt_dims(a, d, sh->rank);
}

static void show_model(Loaded *ld, const Model *md)
{
  Arena *a = ld->m->arena;
  char *hdr = "";
  for (int i = 0; i < md->ndim; i++) {
    const MDim *d = &md->dim[i];
    hdr = d->hasdefault ? aprintf(a, "%s%s%s = %ld", hdr, i ? ", " : "", d->name, d->def)
                        : aprintf(a, "%s%s%s", hdr, i ? ", " : "", d->name);
  }
  printf("model %s(%s)\n", md->name, hdr);

  Table t;
  table_init(&t, a, 6);
  table_row(&t, (const char *[]){"node", "op", "type", "shape", "from", "notes"});
  for (int i = 0; i < md->nnode; i++) {
    const MNode *n = &md->node[i];
    const char *op = n->kind == M_CELL ? n->cellname : mkind_name[n->kind];
    table_row(&t, (const char *[]){label(a, md, i), op, dtype_str(n->dtype),
                                   shape_str(a, &n->shape), operands(a, md, i), notes(a, md, i)});
  }
  table_print(stdout, &t, "  ");

  /* parameters, evaluated at the default sizes */
  Env env = {0};
  bind_defaults(ld, md, &env);
  table_init(&t, a, 4);
  t.right[3] = 1;
  table_row(&t, (const char *[]){"parameter", "shape", "at defaults", "numbers"});
  long long total = 0;
  int allbound = 1, nparam = 0;
  for (int i = 0; i < md->nnode; i++)
    for (int p = 0; p < md->node[i].nparam; p++) {
      const MParam *mp = &md->node[i].param[p];
      long long numel;
      char *at = shape_at(a, &mp->shape, &env, &numel);
      allbound &= at != NULL;
      total += at ? numel : 0;
      nparam++;
      table_row(&t, (const char *[]){mp->full, shape_str(a, &mp->shape), at ? at : "-",
                                     at ? fmt_count(a, numel) : "-"});
    }
  if (nparam) {
    printf("\n");
    table_print(stdout, &t, "  ");
    printf("  %d parameter tensors, %s numbers%s\n", nparam, fmt_count(a, total),
           allbound ? " at the default sizes" : " (counting those whose sizes have defaults)");
  }
  if (md->loss >= 0)
    printf("  loss: %s (differentiated by run --grad and gradcheck)\n", label(a, md, md->loss));
  else
    printf("  no loss: a softmax with a target, or a sum, makes one\n");
}

static void show_cell(Loaded *ld, const Cell *c)
{
  Arena *a = ld->m->arena;
  char *sig = "";
  for (int i = 0; i < c->ninput; i++) {
    const Node *n = &c->node[c->input[i]];
    sig = aprintf(a, "%s%s%s: %s", sig, i ? ", " : "", n->name, shape_str(a, &n->shape));
  }
  char *st = "";
  for (int i = 0; i < c->nstate; i++) {
    const Node *n = &c->node[c->state[i]];
    st = aprintf(a, "%s%s%s: %s", st, i ? ", " : "", n->name, shape_str(a, &n->shape));
  }
  printf("\ncell %s(%s) state(%s)%s\n", c->name, sig, st, c->builtin ? "  (built in)" : "");
  int nvalue = 0;
  for (int i = 0; i < c->nnode; i++)
    nvalue += c->node[i].op != OP_INPUT && c->node[i].op != OP_STATE && c->node[i].op != OP_PARAM;
  Table t;
  table_init(&t, a, 2);
  table_row(&t, (const char *[]){"param", "shape"});
  for (int p = 0; p < c->nparam; p++) {
    const Node *n = &c->node[c->param[p]];
    table_row(&t, (const char *[]){n->name, shape_str(a, &n->shape)});
  }
  if (c->nparam)
    table_print(stdout, &t, "  ");
  char *dims = "";
  for (int i = 0; i < c->ndim; i++)
    dims = aprintf(a, "%s%s%s", dims, i ? ", " : "", c->dim[i]);
  printf("  %d ops per step; dimensions %s\n", nvalue, *dims ? dims : "(none)");
}

/* Whether model md (NULL: any model of m) applies cell c. */
static int uses(const Module *m, const Model *md, const Cell *c)
{
  for (int k = 0; k < m->nmodel; k++) {
    const Model *x = m->model[k];
    if (md && x != md)
      continue;
    for (int i = 0; i < x->nnode; i++)
      if (x->node[i].kind == M_CELL && x->node[i].cell == c)
        return 1;
  }
  return 0;
}

int cmd_check(int argc, char **argv)
{
  Opts o;
  const char *path;
  int st = opts_parse(&o, "check", spec, sizeof spec / sizeof spec[0], argc, argv);
  if (st)
    return st;
  if (o.help) {
    help();
    return EXIT_OK;
  }
  if ((st = opts_model_path(&o, &path)))
    return st;
  Loaded ld;
  if ((st = load_model(&ld, path, PASS_VERIFY, NULL)))
    return st;
  Module *m = ld.m;
  const Model *only = NULL;
  if (opt_given(&o, "--model") && !(only = pick_model(&ld, opt_str(&o, "--model")))) {
    loaded_free(&ld);
    return EXIT_USER;
  }
  int shown = 0;
  for (int k = 0; k < m->nmodel; k++) {
    if (only && m->model[k] != only)
      continue;
    if (shown++)
      printf("\n");
    show_model(&ld, m->model[k]);
  }
  /* the user's cells, and the built-in cells the shown models apply */
  for (int i = 0; i < m->ncell; i++) {
    const Cell *c = m->cell[i];
    if (c->primal || (c->builtin && !uses(m, only, c)))
      continue;
    if (only && !uses(m, only, c))
      continue;
    show_cell(&ld, c);
  }
  int ncell = 0;
  for (int i = 0; i < m->ncell; i++)
    ncell += !m->cell[i]->builtin;
  printf("\n%s: ok (%d model%s, %d cell%s)\n", ld.name, m->nmodel, m->nmodel == 1 ? "" : "s",
         ncell, ncell == 1 ? "" : "s");
  loaded_free(&ld);
  return EXIT_OK;
}
