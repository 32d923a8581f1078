/* cli_util.c — option parsing, loading a model file, --dim bindings, one-line
 * errors and aligned tables, shared by the rnnc commands. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* ---- messages ------------------------------------------------------------- */

int user_error(const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  fputs("rnnc: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  return EXIT_USER;
}

int usage_error(const char *cmd, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "rnnc %s: ", cmd);
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\ntry 'rnnc %s --help'\n", cmd);
  va_end(ap);
  return EXIT_USAGE;
}

/* ---- options -------------------------------------------------------------- */

static int spec_index(const Opts *o, const char *name, size_t len)
{
  for (int i = 0; i < o->nspec; i++)
    if (strlen(o->spec[i].name) == len && strncmp(o->spec[i].name, name, len) == 0)
      return i;
  return -1;
}

int opts_parse(Opts *o, const char *cmd, const OptSpec *spec, int nspec, int argc, char **argv)
{
  memset(o, 0, sizeof *o);
  o->cmd = cmd;
  o->spec = spec;
  o->nspec = nspec;
  if (nspec > OPT_MAXSPEC)
    die("opts_parse: %d options is more than the table holds", nspec);
  int nomore = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (nomore || a[0] != '-' || strcmp(a, "-") == 0) {
      if (o->npos == (int)(sizeof o->pos / sizeof o->pos[0]))
        return usage_error(cmd, "too many arguments");
      o->pos[o->npos++] = a;
      continue;
    }
    if (strcmp(a, "--") == 0) {
      nomore = 1;
      continue;
    }
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      o->help = 1;
      continue;
    }
    const char *eq = strchr(a, '=');
    size_t len = eq ? (size_t)(eq - a) : strlen(a);
    int k = spec_index(o, a, len);
    if (k < 0)
      return usage_error(cmd, "unknown option '%.*s'", (int)len, a);
    const char *v = NULL;
    if (spec[k].hasarg) {
      if (eq)
        v = eq + 1;
      else if (i + 1 < argc)
        v = argv[++i];
      else
        return usage_error(cmd, "option '%s' needs a value", spec[k].name);
    } else if (eq) {
      return usage_error(cmd, "option '%s' takes no value", spec[k].name);
    }
    if (o->count[k] && !spec[k].many && spec[k].hasarg)
      return usage_error(cmd, "option '%s' given twice", spec[k].name);
    if (o->count[k] == OPT_MAXVAL)
      return usage_error(cmd, "option '%s' given too often", spec[k].name);
    o->val[k][o->count[k]++] = v;
  }
  return EXIT_OK;
}

static int spec_find(const Opts *o, const char *name)
{
  int k = spec_index(o, name, strlen(name));
  if (k < 0)
    die("option %s is not in the table of 'rnnc %s'", name, o->cmd);
  return k;
}

int opt_given(const Opts *o, const char *name)
{
  return o->count[spec_find(o, name)];
}

const char *opt_str(const Opts *o, const char *name)
{
  int k = spec_find(o, name);
  return o->count[k] ? o->val[k][o->count[k] - 1] : NULL;
}

int opts_model_path(const Opts *o, const char **path)
{
  if (o->npos == 0)
    return usage_error(o->cmd, "missing the model file (MODEL.rnn, or - for stdin)");
  if (o->npos > 1)
    return usage_error(o->cmd, "unexpected argument '%s'", o->pos[1]);
  *path = o->pos[0];
  return EXIT_OK;
}

int opts_require(const Opts *o, const char *name)
{
  if (!opt_given(o, name))
    return usage_error(o->cmd, "missing %s", name);
  return EXIT_OK;
}

int opt_u64(const Opts *o, const char *name, uint64_t def, uint64_t *out)
{
  const char *s = opt_str(o, name);
  *out = def;
  if (!s)
    return EXIT_OK;
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (!*s || *s == '-' || *s == '+' || *end || errno)
    return usage_error(o->cmd, "%s wants a non-negative integer, not '%s'", name, s);
  *out = v;
  return EXIT_OK;
}

int opt_double(const Opts *o, const char *name, double def, double lo, double *out)
{
  const char *s = opt_str(o, name);
  *out = def;
  if (!s)
    return EXIT_OK;
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (!*s || *end || errno || !isfinite(v) || v < lo)
    return usage_error(o->cmd, "%s wants a number >= %g, not '%s'", name, lo, s);
  *out = v;
  return EXIT_OK;
}

/* ---- loading a model file -------------------------------------------------- */

/* The whole of f, NUL-terminated, in *text (malloc'ed), its length in *len.
 * 0, or errno of the failed read. */
static int slurp(FILE *f, char **text, size_t *len)
{
  size_t cap = 65536, n = 0;
  char *buf = malloc(cap);
  if (!buf)
    return ENOMEM;
  for (;;) {
    if (n + 1 >= cap) {
      char *nb = realloc(buf, cap *= 2);
      if (!nb) {
        free(buf);
        return ENOMEM;
      }
      buf = nb;
    }
    size_t got = fread(buf + n, 1, cap - n - 1, f);
    n += got;
    if (got == 0) {
      if (ferror(f)) {
        int e = errno ? errno : EIO;
        free(buf);
        return e;
      }
      break;
    }
  }
  buf[n] = 0;
  *text = buf;
  *len = n;
  return 0;
}

int load_model(Loaded *ld, const char *path, int upto, const char *only)
{
  memset(ld, 0, sizeof *ld);
  ld->path = path;
  int isstdin = strcmp(path, "-") == 0;
  ld->name = isstdin ? "<stdin>" : path;
  FILE *f = isstdin ? stdin : fopen(path, "rb");
  if (!f)
    return user_error("cannot open '%s': %s", path, strerror(errno));
  char *text;
  size_t len;
  errno = 0;
  int e = slurp(f, &text, &len);
  if (!isstdin)
    fclose(f);
  if (e)
    return user_error("cannot read '%s': %s", ld->name, strerror(e));
  if (strlen(text) != len) {
    free(text);
    return user_error("'%s' is not a text file (it contains a NUL byte)", ld->name);
  }
  ld->m = module_new();
  ld->d0 = ld->m->diags.n;
  const Source *src = source_new(ld->m, ld->name, text);
  free(text);
  int from = ld->d0;
  int st = pipeline(ld->m, src, upto, only);
  print_diags_since(ld, &from);
  if (st != RNNC_OK || ld->m->diags.nerror) {
    loaded_free(ld);
    return EXIT_USER;
  }
  return EXIT_OK;
}

void loaded_free(Loaded *ld)
{
  module_free(ld->m);
  ld->m = NULL;
}

void print_diags_since(Loaded *ld, int *from)
{
  for (int i = *from; i < ld->m->diags.n; i++)
    diag_print(stderr, &ld->m->diags.d[i]);
  *from = ld->m->diags.n;
}

/* "a, b, c": the models of m. */
static char *model_list(Module *m)
{
  char *s = "";
  for (int i = 0; i < m->nmodel; i++)
    s = aprintf(m->arena, "%s%s%s", s, i ? ", " : "", m->model[i]->name);
  return s;
}

Model *pick_model(Loaded *ld, const char *name)
{
  Module *m = ld->m;
  if (name) {
    Model *md = model_find(m, name);
    if (!md) {
      if (m->nmodel == 0)
        user_error("no model '%s' in '%s': it has no model", name, ld->name);
      else
        user_error("no model '%s' in '%s' (it has: %s)", name, ld->name, model_list(m));
    }
    return md;
  }
  if (m->nmodel == 0) {
    user_error("'%s' has no model, only cells", ld->name);
    return NULL;
  }
  if (m->nmodel > 1) {
    user_error("'%s' has %d models (%s); choose one with --model NAME", ld->name, m->nmodel,
               model_list(m));
    return NULL;
  }
  return m->model[0];
}

/* Whether sym (interned) names a dimension of md: T, B, a header dimension or
 * one used in an input's shape. */
static int model_has_dim(const Model *md, const char *sym)
{
  if (strcmp(sym, "T") == 0 || strcmp(sym, "B") == 0)
    return 1;
  for (int i = 0; i < md->ndim; i++)
    if (md->dim[i].name == sym)
      return 1;
  for (int i = 0; i < md->nnode; i++) {
    const MNode *n = &md->node[i];
    if (n->kind != M_INPUT)
      continue;
    for (int k = 0; k < n->shape.rank; k++)
      for (int j = 0; j < n->shape.d[k].nterm; j++)
        if (n->shape.d[k].t[j].sym == sym)
          return 1;
  }
  return 0;
}

int parse_dims(Loaded *ld, const Model *md, const Opts *o, Env *env)
{
  int k = spec_find(o, "--dim");
  for (int i = 0; i < o->count[k]; i++) {
    const char *b = o->val[k][i];
    const char *eq = strchr(b, '=');
    const char *p = b;
    int okname = eq && eq > b && (*p == '_' || (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z'));
    for (; okname && p < eq; p++)
      okname = *p == '_' || (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
               (*p >= '0' && *p <= '9');
    char *end = NULL;
    errno = 0;
    long v = okname ? strtol(eq + 1, &end, 10) : 0;
    if (!okname || !eq[1] || *end || errno || v <= 0)
      return usage_error(o->cmd, "--dim wants NAME=N with N a positive integer, not '%s'", b);
    const char *sym = intern(ld->m->names, b, (size_t)(eq - b));
    if (!model_has_dim(md, sym))
      return user_error("model '%s' has no dimension '%s'", md->name, sym);
    env_set(ld->m->arena, env, sym, v);
  }
  return EXIT_OK;
}

void bind_defaults(Loaded *ld, const Model *md, Env *env)
{
  long v;
  for (int i = 0; i < md->ndim; i++)
    if (md->dim[i].hasdefault && !env_get(env, md->dim[i].name, &v))
      env_set(ld->m->arena, env, md->dim[i].name, md->dim[i].def);
}

/* ---- the JIT engine ---------------------------------------------------------- */

/* bind_all_dims: --dim, then T, B and the header defaults; every dim of an input or a
 * parameter must end up bound (a user error names one that is not). */
int bind_all_dims(Loaded *ld, Model *md, const Opts *o, Env *env, long defT, long defB)
{
  int st = parse_dims(ld, md, o, env);
  if (st)
    return st;
  long v;
  const char *T = intern(ld->m->names, "T", 1), *B = intern(ld->m->names, "B", 1);
  if (!env_get(env, T, &v))
    env_set(ld->m->arena, env, T, defT);
  if (!env_get(env, B, &v))
    env_set(ld->m->arena, env, B, defB);
  bind_defaults(ld, md, env);
  for (int i = 0; i < md->nnode; i++) {
    const MNode *n = &md->node[i];
    for (int p = -1; p < n->nparam; p++) {
      const Shape *s = p < 0 ? (n->kind == M_INPUT ? &n->shape : NULL) : &n->param[p].shape;
      for (int k = 0; s && k < s->rank; k++) {
        const char *bad = NULL;
        if (!dim_eval(s->d[k], env, &v, &bad))
          return user_error("dimension '%s' of %s '%s' has no value; give it with --dim %s=N", bad,
                            p < 0 ? "input" : "parameter", p < 0 ? n->name : n->param[p].full, bad);
      }
    }
  }
  return EXIT_OK;
}

int jit_prepare(Loaded *ld, Model *md, int grad)
{
  if (grad && md->loss < 0)
    return user_error("--grad: model '%s' has no loss to differentiate (a softmax with a "
                      "target, or a sum)",
                      md->name);
  if (grad && !md->grad) {
    int from = ld->m->diags.n;
    md->grad = autodiff(ld->m, md);
    print_diags_since(ld, &from);
    if (!md->grad || ld->m->diags.nerror)
      return md->grad ? EXIT_USER : user_error("cannot differentiate model '%s'", md->name);
  }
  schedule(ld->m);
  return EXIT_OK;
}

int jit_compile(Loaded *ld, Model *md, const Env *env, int grad, CModel **cm)
{
  *cm = NULL;
  int st = jit_prepare(ld, md, grad);
  if (st)
    return st;
  char err[512];
  CompileOpts co = {.grad = grad};
  if (cmodel_compile(ld->m, md, env, &co, cm, err, sizeof err) != RNNC_OK) {
    *cm = NULL;
    return user_error("%s", err);
  }
  return EXIT_OK;
}

int jit_load(CModel *cm, const TensorSet *params, const TensorSet *inputs, const char **bad, char *err,
             size_t errlen)
{
  for (int i = 0; i < cmodel_ntensor(cm); i++) {
    CTensor *c = cmodel_tensor(cm, i);
    if (c->role != CT_PARAM && c->role != CT_INPUT)
      continue;
    const Tensor *t = tset_find(c->role == CT_PARAM ? params : inputs, c->name);
    if (!t || tensor_numel(t) != c->numel)
      die("jit_load: tensor '%s' not bound as bind_dims checked it", c->name);
    for (int64_t e = 0; e < c->numel; e++) {
      if (c->dtype == DT_F32) {
        ((float *)c->data)[e] =
            t->dtype == DT_F32 ? ((const float *)t->data)[e] : (float)((const double *)t->data)[e];
        continue;
      }
      int64_t v = t->dtype == DT_I32 ? ((const int32_t *)t->data)[e] : ((const int64_t *)t->data)[e];
      if (v < INT32_MIN || v > INT32_MAX) {
        *bad = c->name;
        snprintf(err, errlen, "input '%s' has %lld at flat index %lld, outside the int32 range", c->name,
                 (long long)v, (long long)e);
        return RNNC_EINPUT;
      }
      ((int32_t *)c->data)[e] = (int32_t)v;
    }
  }
  return RNNC_OK;
}

/* Add a copy of cm's tensor name to res under the same name. */
static int put_ct(CModel *cm, const char *name, TensorSet *res, char *err, size_t errlen)
{
  const CTensor *c = cmodel_find(cm, name);
  if (!c)
    die("jit_results: the compiled model has no tensor '%s'", name);
  Tensor *t = tset_add(res, name, c->dtype, c->rank, c->dim);
  if (!t) {
    snprintf(err, errlen, "out of memory for tensor '%s'", name);
    return RNNC_ENOMEM;
  }
  memcpy(t->data, c->data, (size_t)c->numel * dtype_size(c->dtype));
  return RNNC_OK;
}

int jit_results(CModel *cm, const Model *md, int grad, TensorSet *out, char *err, size_t errlen)
{
  TensorSet res;
  tset_init(&res);
  char name[512];
  int st = RNNC_OK;
  for (int k = 0; !st && k < md->noutput; k++)
    st = put_ct(cm, md->node[md->output[k]].name, &res, err, errlen);
  for (int i = 0; !st && grad && i < md->nnode; i++) {
    const MNode *n = &md->node[i];
    for (int p = 0; !st && p < n->nparam; p++) {
      snprintf(name, sizeof name, "grad.%s", n->param[p].full);
      st = put_ct(cm, name, &res, err, errlen);
    }
    if (!st && n->kind == M_INPUT && n->dtype != DT_I32 && !mnode_is_mask(n)) {
      snprintf(name, sizeof name, "grad.%s", n->name);
      st = put_ct(cm, name, &res, err, errlen);
    }
  }
  if (!st && tset_move(out, &res) != RNNC_OK) {
    snprintf(err, errlen, "out of memory for the results");
    st = RNNC_ENOMEM;
  }
  tset_clear(&res);
  return st;
}

int opt_threads(const Opts *o, int *n)
{
  uint64_t v;
  int st = opt_u64(o, "--threads", 0, &v);
  *n = 0;
  if (st)
    return st;
  if (opt_given(o, "--threads") && (v < 1 || v > 4096))
    return usage_error(o->cmd, "--threads wants a count from 1 to 4096, not %llu", (unsigned long long)v);
  *n = (int)v;
  return EXIT_OK;
}

/* ---- aligned tables ---------------------------------------------------------- */

void table_init(Table *t, Arena *a, int ncol)
{
  if (ncol > TABLE_MAXCOL)
    die("table_init: %d columns", ncol);
  memset(t, 0, sizeof *t);
  t->a = a;
  t->ncol = ncol;
}

void table_row(Table *t, const char *const *cols)
{
  for (int i = 0; i < t->ncol; i++) {
    char *s = astrdup(t->a, cols[i] ? cols[i] : "");
    int n = t->nrow * t->ncol + i;
    APUSH(t->a, t->cell, n, t->cap, s);
  }
  t->nrow++;
}

/* Display width of a UTF-8 string: count the bytes that start a character. */
static int width(const char *s)
{
  int w = 0;
  for (; *s; s++)
    w += ((unsigned char)*s & 0xC0) != 0x80;
  return w;
}

void table_print(FILE *f, const Table *t, const char *indent)
{
  int w[TABLE_MAXCOL] = {0};
  for (int r = 0; r < t->nrow; r++)
    for (int c = 0; c < t->ncol; c++) {
      int n = width(t->cell[r * t->ncol + c]);
      if (n > w[c])
        w[c] = n;
    }
  for (int r = 0; r < t->nrow; r++) {
    /* the last non-empty column ends the line: no trailing blanks */
    int last = t->ncol - 1;
    while (last > 0 && !t->cell[r * t->ncol + last][0])
      last--;
    fputs(indent, f);
    for (int c = 0; c <= last; c++) {
      const char *s = t->cell[r * t->ncol + c];
      int pad = w[c] - width(s);
      if (t->right[c])
        fprintf(f, "%*s%s", pad, "", s);
      else
        fprintf(f, "%s%*s", s, c == last ? 0 : pad, "");
      if (c < last)
        fputs("  ", f);
    }
    fputc('\n', f);
  }
}

char *fmt_count(Arena *a, long long n)
{
  char digits[32], out[48];
  snprintf(digits, sizeof digits, "%lld", n < 0 ? -n : n);
  int len = (int)strlen(digits), k = 0;
  if (n < 0)
    out[k++] = '-';
  for (int i = 0; i < len; i++) {
    if (i && (len - i) % 3 == 0)
      out[k++] = ',';
    out[k++] = digits[i];
  }
  out[k] = 0;
  return astrdup(a, out);
}

char *fmt_dims(Arena *a, const int64_t *dim, int rank)
{
  char *s = "[";
  for (int i = 0; i < rank; i++)
    s = aprintf(a, "%s%s%lld", s, i ? ", " : "", (long long)dim[i]);
  return aprintf(a, "%s]", s);
}
