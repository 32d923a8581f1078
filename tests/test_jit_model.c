/* test_jit_model.c — whole models compiled (compiler/compile.c, the jit
 * engine of `rnnc run`) against the reference interpreter.
 *
 * Per case (a model file or text, and its sizes): parameters as `rnnc init`
 * makes them (init_params, seeded), inputs drawn the same way (token ids
 * uniform in the range of the embedding that reads them, targets in their
 * softmax's classes with about one in four set to the ignore index where
 * there is one, float inputs N(0, 1)); the interpreter in float32
 * (interp_run, PREC_F32, gradients on) gives the reference. The model is
 * compiled with gradients and run:
 *
 *  - every tensor the interpreter writes (declared outputs, the loss, every
 *    grad.<node>.<param> and grad.<input>) has a compiled counterpart of the
 *    same name, dtype and shape, and the compiled model has no output or
 *    gradient the interpreter lacks;
 *  - each agrees within JIT_TOL = 1e-5 norm-wise, max|jit - ref| / max|ref|
 *    (test_parity.c's measure, argued there);
 *  - runs on 1, 2 and 3 threads give memcmp-identical outputs and gradients
 *    (which also shows that a run overwrites its gradients);
 *  - a forward-only run of the same model gives the same outputs within the
 *    tolerance, and a model compiled without gradients too (on 1 and 3
 *    threads, bitwise the same).
 *
 * The cases: every model of examples/ (a test fails when one is added there
 * and not here), every model of tests/models/, every PyTorch fixture of
 * tests/fixtures/ (their own parameters and inputs; the compiled model is also
 * held to PyTorch's values within 1e-5, as the interpreter is in
 * test_parity.c), and edge shapes: B = 1, T = 1, H = 1, V = 2, sizes that are
 * not multiples of the vector width, sizes across the GEMM's register blocks.
 * Also: token ids and targets out of range give the interpreter's message,
 * and a changed parameter is noticed.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <llvm-c/Core.h>

#include "testutil.h"

#define JIT_TOL 1e-5

/* ---- comparing ------------------------------------------------------------- */

/* max_i |a_i - b_i| / max(max_i |b_i|, FLT_MIN); NaN when either has a NaN.
 * *worst: the index of the largest difference. */
static double rel_error(const float *a, const float *b, int64_t n, int64_t *worst)
{
  double maxdiff = 0, maxref = 0;
  *worst = 0;
  for (int64_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - (double)b[i]);
    if (isnan(d))
      return NAN;
    if (d > maxdiff) {
      maxdiff = d;
      *worst = i;
    }
    maxref = fmax(maxref, fabs((double)b[i]));
  }
  return maxdiff / fmax(maxref, FLT_MIN);
}

static int same_shape(const CTensor *c, const Tensor *t)
{
  if (c->rank != t->rank)
    return 0;
  for (int k = 0; k < c->rank; k++)
    if (c->dim[k] != t->dim[k])
      return 0;
  return 1;
}

/* Every tensor of ref against cm's of the same name (outputs only with
 * outonly); prints a line per tensor that fails (every one when verbose).
 * Returns the worst error, INFINITY when a tensor is missing or its dtype or
 * shape differ; *n counts the tensors compared. */
static double compare(const char *tag, CModel *cm, const TensorSet *ref, const Model *md, int outonly,
                      int verbose, int *n)
{
  double worst = 0;
  *n = 0;
  for (int i = 0; i < ref->n; i++) {
    const Tensor *t = &ref->t[i];
    if (outonly && strncmp(t->name, "grad.", 5) == 0)
      continue;
    const CTensor *c = cmodel_find(cm, t->name);
    ++*n;
    if (!c || c->dtype != t->dtype || !same_shape(c, t) || (c->role != CT_OUTPUT && c->role != CT_GRAD)) {
      fprintf(stderr, "%s: %s: %s\n", tag, t->name,
              !c ? "not in the compiled model" : "another dtype, shape or role in the compiled model");
      worst = INFINITY;
      continue;
    }
    double r;
    int64_t w = 0;
    if (t->dtype == DT_I32)
      r = memcmp(c->data, t->data, (size_t)c->numel * 4) ? INFINITY : 0;
    else
      r = rel_error(c->data, t->data, c->numel, &w);
    if (verbose || !(r <= JIT_TOL))
      fprintf(stderr, "%s: %-20s rel %.2e%s (worst [%lld]: jit %.9g, interp %.9g)\n", tag, t->name, r,
              r <= JIT_TOL ? "" : "  FAIL", (long long)w,
              t->dtype == DT_F32 ? ((const float *)c->data)[w] : 0.0,
              t->dtype == DT_F32 ? ((const float *)t->data)[w] : 0.0);
    worst = !(r <= worst) ? r : worst;
  }
  /* nothing compiled that the interpreter does not write */
  for (int i = 0; i < cmodel_ntensor(cm); i++) {
    const CTensor *c = cmodel_tensor(cm, i);
    if ((c->role == CT_OUTPUT || (c->role == CT_GRAD && !outonly)) && !tset_find(ref, c->name)) {
      fprintf(stderr, "%s: %s: compiled, but the interpreter writes no such tensor\n", tag, c->name);
      worst = INFINITY;
    }
  }
  (void)md;
  return worst;
}

/* ---- one case ------------------------------------------------------------------ */

typedef struct Case {
  char tag[128];
  Module *m;
  Model *md;
  Env env;
  TensorSet params, inputs, ref;
} Case;

static Module *load_text(const char *name, const char *text)
{
  Module *m = module_new();
  const Source *src = source_new(m, name, text);
  if (parse(m, src) != RNNC_OK || verify(m) != RNNC_OK) {
    diags_print(stderr, &m->diags);
    module_free(m);
    return NULL;
  }
  return m;
}

/* Bind the header defaults env leaves unbound; every dim of an input or a
 * parameter must then be bound. */
static void bind_all(Case *c)
{
  long v;
  for (int i = 0; i < c->md->ndim; i++)
    if (c->md->dim[i].hasdefault && !env_get(&c->env, c->md->dim[i].name, &v))
      env_set(c->m->arena, &c->env, c->md->dim[i].name, c->md->dim[i].def);
  for (int i = 0; i < c->md->nnode; i++) {
    const MNode *n = &c->md->node[i];
    for (int p = -1; p < n->nparam; p++) {
      const Shape *s = p < 0 ? (n->kind == M_INPUT ? &n->shape : NULL) : &n->param[p].shape;
      for (int k = 0; s && k < s->rank; k++) {
        const char *bad = NULL;
        cr_assert(dim_eval(s->d[k], &c->env, &v, &bad), "%s: dim '%s' unbound", c->tag, bad);
      }
    }
  }
}

/* Random inputs as described at the top (I32 ids, F32 floats). */
static void make_inputs(Case *c, uint64_t seed)
{
  Rng rng;
  rng_seed(&rng, seed * 7919 + 1);
  const Model *md = c->md;
  for (int i = 0; i < md->nnode; i++) {
    const MNode *n = &md->node[i];
    if (n->kind != M_INPUT)
      continue;
    int64_t dim[TENSOR_MAXRANK];
    for (int k = 0; k < n->shape.rank; k++) {
      long v = 0;
      dim_eval(n->shape.d[k], &c->env, &v, NULL);
      dim[k] = v;
    }
    Tensor *t = tset_add(&c->inputs, n->name, n->dtype == DT_I32 ? DT_I32 : DT_F32, n->shape.rank, dim);
    cr_assert_not_null(t);
    int64_t ne = tensor_numel(t);
    if (n->dtype != DT_I32) {
      for (int64_t k = 0; k < ne; k++)
        ((float *)t->data)[k] = (float)rng_normal(&rng);
      continue;
    }
    long hi = -1, ignore = 0;
    int hasignore = 0;
    for (int j = 0; j < md->nnode; j++) {
      const MNode *u = &md->node[j];
      long v = -1;
      if ((u->kind == M_EMBEDDING || u->kind == M_ONEHOT) && u->arg[0] == i)
        dim_eval(u->size[0], &c->env, &v, NULL);
      if (u->kind == M_SOFTMAX && u->target == i) {
        dim_eval(u->size[0], &c->env, &v, NULL);
        hasignore |= u->hasignore;
        ignore = u->hasignore ? u->ignore : ignore;
      }
      if (v >= 0 && (hi < 0 || v < hi))
        hi = v;
    }
    cr_assert(hi > 0, "%s: input '%s' is read by no embedding or softmax", c->tag, n->name);
    for (int64_t k = 0; k < ne; k++) {
      long v = (long)(rng_uniform(&rng) * (double)hi);
      if (hasignore && k > 0 && rng_uniform(&rng) < 0.25)
        v = ignore;
      ((int32_t *)t->data)[k] = (int32_t)v;
    }
  }
}

/* Differentiate and schedule the model, then the reference run. */
static void case_ref(Case *c)
{
  char err[512] = "";
  c->md->grad = autodiff(c->m, c->md);
  if (!c->md->grad)
    diags_print(stderr, &c->m->diags);
  cr_assert_not_null(c->md->grad, "%s: autodiff failed", c->tag);
  cr_assert_eq(schedule(c->m), RNNC_OK);
  InterpOpts io = {.prec = PREC_F32, .wantgrad = 1};
  int st = interp_run(c->m, c->md, c->md->grad, &c->env, &c->params, &c->inputs, &io, &c->ref, err,
                      sizeof err);
  cr_assert_eq(st, RNNC_OK, "%s: interp_run: %s", c->tag, err);
}

/* A case from a file (examples/..., tests/models/...) or from text, with
 * dims ("T=5 B=3 ...") over the header's defaults; random point from seed. */
static void case_new(Case *c, const char *tag, const char *path, const char *text, const char *dims,
                     uint64_t seed)
{
  char err[512] = "";
  memset(c, 0, sizeof *c);
  snprintf(c->tag, sizeof c->tag, "%s", tag);
  tset_init(&c->params);
  tset_init(&c->inputs);
  tset_init(&c->ref);
  c->m = path ? load_module(srcpath(path)) : load_text(tag, text);
  cr_assert_not_null(c->m, "%s does not parse and verify", tag);
  c->md = model_find(c->m, NULL);
  cr_assert_not_null(c->md, "%s: not exactly one model", tag);
  env_parse(c->m, dims, &c->env);
  bind_all(c);
  cr_assert_eq(init_params(c->md, &c->env, seed, &c->params, err, sizeof err), RNNC_OK, "%s", err);
  make_inputs(c, seed);
  case_ref(c);
}

static void case_free(Case *c)
{
  tset_clear(&c->params);
  tset_clear(&c->inputs);
  tset_clear(&c->ref);
  module_free(c->m);
}

static double now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Compile c's model with options co and copy the parameters and inputs in. */
static CModel *case_compile_with(Case *c, const CompileOpts *co)
{
  char err[512] = "";
  CModel *cm = NULL;
  int st = cmodel_compile(c->m, c->md, &c->env, co, &cm, err, sizeof err);
  cr_assert_eq(st, RNNC_OK, "%s: cmodel_compile: %s", c->tag, err);
  for (int i = 0; i < cmodel_ntensor(cm); i++) {
    CTensor *x = cmodel_tensor(cm, i);
    if (x->role != CT_PARAM && x->role != CT_INPUT)
      continue;
    const Tensor *t = tset_find(x->role == CT_PARAM ? &c->params : &c->inputs, x->name);
    cr_assert_not_null(t, "%s: compiled tensor '%s' is no parameter or input", c->tag, x->name);
    cr_assert(t->dtype == x->dtype && same_shape(x, t), "%s: '%s' has another dtype or shape", c->tag,
              x->name);
    memcpy(x->data, t->data, (size_t)x->numel * dtype_size(x->dtype));
  }
  return cm;
}

/* ... with gradients or not, the default options. */
static CModel *case_compile(Case *c, int grad) { return case_compile_with(c, &(CompileOpts){.grad = grad}); }

static void run(Case *c, CModel *cm, int grad, int nthreads)
{
  char err[512] = "";
  int st = cmodel_run(cm, grad, nthreads, err, sizeof err);
  cr_assert_eq(st, RNNC_OK, "%s: cmodel_run (%d threads): %s", c->tag, nthreads, err);
}

/* A copy of every output (and with grad every gradient) of cm. */
typedef struct Snap {
  int n;
  char **name;
  void **data;
  size_t *bytes;
} Snap;

static void snap_take(CModel *cm, int grad, Snap *s)
{
  memset(s, 0, sizeof *s);
  int nt = cmodel_ntensor(cm);
  s->name = calloc((size_t)nt + 1, sizeof *s->name);
  s->data = calloc((size_t)nt + 1, sizeof *s->data);
  s->bytes = calloc((size_t)nt + 1, sizeof *s->bytes);
  for (int i = 0; i < nt; i++) {
    const CTensor *x = cmodel_tensor(cm, i);
    if (x->role != CT_OUTPUT && !(grad && x->role == CT_GRAD))
      continue;
    s->name[s->n] = strdup(x->name);
    s->bytes[s->n] = (size_t)x->numel * dtype_size(x->dtype);
    s->data[s->n] = malloc(s->bytes[s->n] + 1);
    memcpy(s->data[s->n], x->data, s->bytes[s->n]);
    s->n++;
  }
}

/* Every tensor of s bitwise equal to cm's now. */
static void snap_expect_same(const char *tag, CModel *cm, const Snap *s, int nthreads)
{
  for (int i = 0; i < s->n; i++) {
    const CTensor *x = cmodel_find(cm, s->name[i]);
    cr_assert_not_null(x);
    int same = memcmp(x->data, s->data[i], s->bytes[i]) == 0;
    cr_expect(same, "%s: %s on %d threads differs from 1 thread", tag, s->name[i], nthreads);
  }
}

static void snap_free(Snap *s)
{
  for (int i = 0; i < s->n; i++) {
    free(s->name[i]);
    free(s->data[i]);
  }
  free(s->name);
  free(s->data);
  free(s->bytes);
}

/* The whole check of a case, as described at the top. forward: also compile
 * it without gradients. keep: the model compiled with gradients, after a run
 * with them on 2 threads (else it is freed). */
/* Every output and gradient of cm (after a run) within JIT_TOL of the
 * interpreter's (c->ref); returns the worst relative error. */
static double expect_as_interp(const char *tag, Case *c, CModel *cm)
{
  int n;
  double worst = compare(tag, cm, &c->ref, c->md, 0, 0, &n);
  cr_expect(n == c->ref.n, "%s: compared %d of %d tensors", tag, n, c->ref.n);
  cr_expect(worst <= JIT_TOL, "%s: relative error %.3g > %g", tag, worst, JIT_TOL);
  return worst;
}

static void check_case(Case *c, int forward, CModel **keep)
{
  double t0 = now_ms();
  CModel *cm = case_compile(c, 1);
  double t1 = now_ms();
  run(c, cm, 1, 1);
  double worst = expect_as_interp(c->tag, c, cm);

  Snap s;
  snap_take(cm, 1, &s);
  for (int nth = 2; nth <= 3; nth++) {
    run(c, cm, 1, nth);
    snap_expect_same(c->tag, cm, &s, nth);
  }
  snap_free(&s);
  /* forward only, on the model compiled with gradients */
  int nf;
  run(c, cm, 0, 2);
  double wf = compare(c->tag, cm, &c->ref, c->md, 1, 0, &nf);
  cr_expect(wf <= JIT_TOL, "%s: forward only: relative error %.3g > %g", c->tag, wf, JIT_TOL);
  if (keep) {
    run(c, cm, 1, 2);
    *keep = cm;
  } else {
    cmodel_free(cm);
  }

  double wf2 = 0, t2 = now_ms(), t3 = t2;
  if (forward) {
    cm = case_compile(c, 0);
    t3 = now_ms();
    run(c, cm, 0, 1);
    wf2 = compare(c->tag, cm, &c->ref, c->md, 1, 0, &nf);
    cr_expect(wf2 <= JIT_TOL, "%s: compiled without gradients: relative error %.3g > %g", c->tag, wf2,
              JIT_TOL);
    for (int i = 0; i < cmodel_ntensor(cm); i++)
      cr_expect(cmodel_tensor(cm, i)->role != CT_GRAD, "%s: a gradient compiled without grad", c->tag);
    snap_take(cm, 0, &s);
    run(c, cm, 0, 3);
    snap_expect_same(c->tag, cm, &s, 3);
    snap_free(&s);
    cmodel_free(cm);
  }
  fprintf(stderr, "jit %-28s %2d tensors, max rel err %.2e (forward %.2e%s); compile %4.0f ms%s\n", c->tag,
          c->ref.n, worst, wf, forward ? aprintf(c->m->arena, ", no-grad build %.2e", wf2) : "", t1 - t0,
          forward ? aprintf(c->m->arena, " + %.0f ms", t3 - t2) : "");
}

/* ---- every example, every test model ---------------------------------------------- */

/* The examples and the sizes they run at: T = 5, B = 3, the header's defaults. */
static const char *const example_list[] = {
    "bilstm_tagger", "charlm",      "charlm_gru",  "charlm_lstm",    "charlm_rnn",  "concat_cell",
    "deepbench_lstm", "fashion_lstm", "features_lstm", "gru_classifier", "indrnn", "lstm2_lm",
    "mgu",           "peephole_lstm", "seq2seq",     "text_classifier",
};

/* forward: also compile it without gradients (a few models of each kind of
 * output: JIT compiles are the test's cost). */
static void example(const char *name, int forward)
{
  Case c;
  char path[256];
  snprintf(path, sizeof path, "examples/%s.rnn", name);
  case_new(&c, name, path, NULL, strcmp(name, "seq2seq") == 0 ? "T=5 B=3 S=4" : "T=5 B=3", 1);
  check_case(&c, forward, NULL);
  case_free(&c);
}

Test(jit_model, every_example_is_listed)
{
  DIR *d = opendir(srcpath("examples"));
  cr_assert(d);
  struct dirent *e;
  int n = 0;
  while ((e = readdir(d))) {
    size_t len = strlen(e->d_name);
    if (len < 5 || strcmp(e->d_name + len - 4, ".rnn") != 0)
      continue;
    n++;
    int found = 0;
    for (size_t k = 0; k < sizeof example_list / sizeof example_list[0]; k++)
      found |= strlen(example_list[k]) == len - 4 && strncmp(example_list[k], e->d_name, len - 4) == 0;
    cr_expect(found, "examples/%s has no jit_model test: add it to example_list", e->d_name);
  }
  closedir(d);
  cr_expect_eq(n, (int)(sizeof example_list / sizeof example_list[0]));
}

Test(jit_model, example_bilstm_tagger) { example("bilstm_tagger", 1); }
Test(jit_model, example_charlm) { example("charlm", 1); }
Test(jit_model, example_charlm_gru) { example("charlm_gru", 0); }
Test(jit_model, example_charlm_lstm) { example("charlm_lstm", 1); }
Test(jit_model, example_charlm_rnn) { example("charlm_rnn", 0); }
Test(jit_model, example_concat_cell) { example("concat_cell", 0); }
Test(jit_model, example_deepbench_lstm) { example("deepbench_lstm", 0); }
Test(jit_model, example_fashion_lstm) { example("fashion_lstm", 1); }
Test(jit_model, example_features_lstm) { example("features_lstm", 1); }
Test(jit_model, example_gru_classifier) { example("gru_classifier", 1); }
Test(jit_model, example_indrnn) { example("indrnn", 0); }
Test(jit_model, example_lstm2_lm) { example("lstm2_lm", 0); }
Test(jit_model, example_mgu) { example("mgu", 0); }
Test(jit_model, example_peephole_lstm) { example("peephole_lstm", 0); }
Test(jit_model, example_seq2seq) { example("seq2seq", 1); }
Test(jit_model, example_text_classifier) { example("text_classifier", 1); }

/* tests/models/: small models, allops among them (every op through a model). */
Test(jit_model, every_test_model, .timeout = 600)
{
  DIR *d = opendir(srcpath("tests/models"));
  cr_assert(d);
  struct dirent *e;
  char path[512];
  int n = 0;
  while ((e = readdir(d))) {
    size_t len = strlen(e->d_name);
    if (len < 5 || strcmp(e->d_name + len - 4, ".rnn") != 0)
      continue;
    /* the examples' models at other sizes: covered there */
    static const char *const dup[] = {"bilstm_tagger.rnn", "gru_classifier.rnn", "lstm2_lm.rnn",
                                      "seq2seq.rnn"};
    int isdup = 0;
    for (size_t k = 0; k < sizeof dup / sizeof dup[0]; k++)
      isdup |= strcmp(e->d_name, dup[k]) == 0;
    n++;
    if (isdup)
      continue;
    /* B = 2: the step's GEMMs read unpacked weights (gemv); B = 4: by
     * columns into a one-step home (test_modelfuzz found a view of one read
     * as a sequence: view_of_step_product.rnn) */
    for (int B = 2; B <= 4; B += 2) {
      Case c;
      char dims[32], tag[300];
      snprintf(path, sizeof path, "tests/models/%s", e->d_name);
      snprintf(dims, sizeof dims, "T=4 B=%d%s", B, strstr(e->d_name, "seq2seq") ? " S=3" : "");
      snprintf(tag, sizeof tag, "%s B=%d", e->d_name, B);
      case_new(&c, tag, path, NULL, dims, 2);
      check_case(&c, 0, NULL);
      case_free(&c);
    }
  }
  closedir(d);
  cr_expect_geq(n, 11, "only %d models in tests/models", n);
}

/* ---- the PyTorch fixtures ------------------------------------------------------- */

static void fixture(const char *name)
{
  char rel[256], err[512];
  Case c;
  memset(&c, 0, sizeof c);
  snprintf(c.tag, sizeof c.tag, "fixture %s", name);
  tset_init(&c.params);
  tset_init(&c.inputs);
  tset_init(&c.ref);
  snprintf(rel, sizeof rel, "tests/fixtures/%s.rnn", name);
  c.m = load_module(srcpath(rel));
  cr_assert_not_null(c.m);
  c.md = model_find(c.m, NULL);
  TensorSet expected;
  tset_init(&expected);
  static const char *const kind[] = {"params", "inputs", "expected"};
  TensorSet *set[] = {&c.params, &c.inputs, &expected};
  for (int i = 0; i < 3; i++) {
    snprintf(rel, sizeof rel, "tests/fixtures/%s.%s.safetensors", name, kind[i]);
    cr_assert_eq(safetensors_read(srcpath(rel), set[i], err, sizeof err), RNNC_OK, "%s", err);
  }
  cr_assert_eq(bind_dims(c.m, c.md, &c.env, &c.params, &c.inputs, c.m->arena, err, sizeof err), RNNC_OK,
               "%s", err);
  case_ref(&c);
  CModel *cm;
  check_case(&c, 0, &cm);

  /* and PyTorch's values: every tensor of the expected file */
  for (int i = 0; i < expected.n; i++) {
    const Tensor *t = &expected.t[i];
    const CTensor *x = cmodel_find(cm, t->name);
    cr_assert(x && x->dtype == DT_F32 && t->dtype == DT_F32 && same_shape(x, t), "%s: %s", c.tag, t->name);
    int64_t w;
    double r = rel_error(x->data, t->data, x->numel, &w);
    cr_expect(r <= JIT_TOL, "%s: %s: jit vs PyTorch rel %.3g > %g (worst [%lld]: %.9g vs %.9g)", c.tag, t->name,
              r, JIT_TOL, (long long)w, ((const float *)x->data)[w], ((const float *)t->data)[w]);
  }
  cmodel_free(cm);
  tset_clear(&expected);
  case_free(&c);
}

Test(jit_model, fixture_rnn) { fixture("rnn"); }
Test(jit_model, fixture_lstm2) { fixture("lstm2"); }
Test(jit_model, fixture_gru) { fixture("gru"); }
Test(jit_model, fixture_bilstm) { fixture("bilstm"); }

/* ---- edge shapes ------------------------------------------------------------------ */

static const char lm_text[] = "model lm(V, E, H) {\n"
                              "  input tokens: i32[T, B], targets: i32[T, B]\n"
                              "  x = embedding(tokens, V, E)\n"
                              "  h = CELL(x, H = H)\n"
                              "  loss = softmax(h, V, target = targets)\n"
                              "  output loss, h\n"
                              "}\n";

/* lm_text with CELL replaced by cell, at dims, from seed. */
static void lm(const char *cell, const char *dims, int forward, uint64_t seed)
{
  char text[1024], tag[128];
  const char *p = strstr(lm_text, "CELL");
  snprintf(text, sizeof text, "%.*s%s%s", (int)(p - lm_text), lm_text, cell, p + 4);
  snprintf(tag, sizeof tag, "%s %s", cell, dims);
  Case c;
  case_new(&c, tag, NULL, text, dims, seed);
  check_case(&c, forward, NULL);
  case_free(&c);
}

/* Everything 1 but the vocabulary, at its smallest. With V = 2 and H = 1 the
 * state's adjoint is dz_0 (w_0 - w_1) (the two logit adjoints cancel), so
 * float32 loses |w| / |w_0 - w_1| in relative accuracy whoever computes it;
 * the interpreter sums in double and does not. Seed 3 draws for gru's
 * loss.weight -0.76891 and -0.76987 (1.3e-4 apart, relative): seed 4 does
 * not come that close. */
Test(jit_model, edge_all_ones)
{
  lm("lstm", "V=2 E=1 H=1 T=1 B=1", 1, 3);
  lm("gru", "V=2 E=1 H=1 T=1 B=1", 0, 4);
  lm("rnn", "V=2 E=1 H=1 T=1 B=1", 0, 3);
}

/* One of B, T, H at 1, the others not. */
Test(jit_model, edge_one_dim_at_one)
{
  lm("lstm", "V=5 E=3 H=6 T=4 B=1", 0, 3);
  lm("gru", "V=5 E=3 H=6 T=1 B=4", 0, 3);
  lm("rnn", "V=5 E=3 H=1 T=4 B=3", 0, 3);
  lm("lstm", "V=2 E=7 H=5 T=3 B=2", 0, 3);
}

/* Sizes that are not multiples of the vector width (4 or 8), around it and
 * across the GEMM's register blocks (6 rows, 8 or 16 columns). */
Test(jit_model, edge_odd_sizes)
{
  lm("lstm", "V=7 E=9 H=17 T=3 B=5", 1, 3);
  lm("gru", "V=13 E=15 H=9 T=2 B=7", 0, 3);
  lm("rnn", "V=3 E=33 H=31 T=3 B=13", 0, 3);
  lm("gru", "V=17 E=8 H=16 T=2 B=6", 0, 3);
}

/* A longer sequence: float32 rounding over 64 steps of BPTT stays within the
 * tolerance (about 6e-7 measured). */
Test(jit_model, long_sequence)
{
  lm("lstm", "V=20 E=16 H=64 T=64 B=4", 0, 7);
  lm("gru", "V=20 E=16 H=64 T=64 B=4", 0, 7);
}

/* The example models at edge sizes: bidirectional, many-to-one, seq2seq,
 * float inputs with initial states, a sum loss, custom cells. */
Test(jit_model, edge_examples)
{
  static const struct {
    const char *file, *dims;
  } cases[] = {
      {"bilstm_tagger", "T=1 B=1 H=1 V=2 K=2"}, {"gru_classifier", "T=3 B=1 H=1 K=2"},
      {"seq2seq", "S=1 T=1 B=1 H=1"},            {"seq2seq", "S=3 T=1 B=2 H=3"},
      {"features_lstm", "T=1 B=1 I=1 H=1 K=2"},  {"deepbench_lstm", "T=2 B=1 I=1 H=13"},
      {"mgu", "T=1 B=2 H=1"},                    {"indrnn", "T=3 B=1 H=1"},
      {"peephole_lstm", "T=2 B=3 H=5 E=7"},      {"concat_cell", "T=1 B=1 H=1 E=1"},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    char path[256], tag[128];
    snprintf(path, sizeof path, "examples/%s.rnn", cases[k].file);
    snprintf(tag, sizeof tag, "%s %s", cases[k].file, cases[k].dims);
    Case c;
    case_new(&c, tag, path, NULL, cases[k].dims, 4);
    check_case(&c, 0, NULL);
    case_free(&c);
  }
}

/* ---- a step's GEMMs by columns -------------------------------------------------- */

/* Kernels in cm's plans (forward and backward) whose symbol contains what. */
static int plan_kernels(const CModel *cm, const char *what)
{
  int n = 0;
  for (int b = 0; b < 2; b++) {
    const Plan *p = b ? cmodel_bplan(cm) : cmodel_plan(cm);
    for (int k = 0; k < p->nfn; k++)
      n += strstr(p->fnname[k], what) != NULL;
  }
  return n;
}

/* CompileOpts.colweight = 1: every GEMM of a step runs by columns over the
 * threads in a kernel of its own — before the step's fused kernel when its
 * vector comes from the step before (forward's W_hh·h), after it when the
 * step computes the vector and nothing else in the step reads the product
 * (backward's d_h' = W_hhᵀ·d_gates) — where by default, at B >= 16 rows and
 * weights under 8 MiB, they run by rows inside the fused kernel. At 16 rows
 * or more, the step's rows of each such GEMM's vector are packed once before
 * it (packa) and the GEMM runs on the pack. By rows or by columns, the GEMM
 * sums each element in the same order: within JIT_TOL of the interpreter,
 * and memcmp-equal to the default build on 1, 2 and 3 threads. ncol: the
 * column GEMMs the plan must have; npack: the packs of their vectors (one
 * per vector and step). */
static void by_columns(const char *name, const char *dims, int ncol, int npack)
{
  Case c;
  char path[256], tag[160];
  snprintf(path, sizeof path, strchr(name, '/') ? "%s.rnn" : "examples/%s.rnn", name);
  snprintf(tag, sizeof tag, "%s %s by columns", name, dims);
  case_new(&c, tag, path, NULL, dims, 5);
  CModel *rows = case_compile(&c, 1), *cols = case_compile_with(&c, &(CompileOpts){.grad = 1, .colweight = 1});
  cr_assert_eq(plan_kernels(rows, "colgemm"), 0, "%s: the default build has a column GEMM", tag);
  cr_assert_eq(plan_kernels(cols, "colgemm"), ncol, "%s: %d column GEMMs, expected %d", tag,
               plan_kernels(cols, "colgemm"), ncol);
  cr_assert_eq(plan_kernels(cols, "packa"), npack, "%s: %d packs of a step's vector, expected %d", tag,
               plan_kernels(cols, "packa"), npack);
  run(&c, rows, 1, 1);
  Snap s;
  snap_take(rows, 1, &s);
  for (int nth = 1; nth <= 3; nth++) {
    run(&c, cols, 1, nth);
    snap_expect_same(tag, cols, &s, nth);
  }
  expect_as_interp(tag, &c, cols);
  snap_free(&s);
  cmodel_free(rows);
  cmodel_free(cols);
  case_free(&c);
}

Test(jit_model, step_gemms_by_columns)
{
  by_columns("charlm", "T=4 B=17", 4, 4); /* 2 LSTMs: W_hh·h, W_hhᵀ·d_gates */
  /* GRU: W_hh·h; backward d_h' = d_h_next·z + W_hhᵀ·d_gh, the add with the GEMM */
  by_columns("charlm_gru", "T=3 B=16", 2, 2);
  /* 2 MGUs: U_f·h, and backward d_h' = ... + U_fᵀ·d_f_pre with its add;
   * U_h·(f⊙h) and U_hᵀ·d_n_pre, read by products, stay in the step */
  by_columns("mgu", "T=3 B=19 H=9", 4, 4);
  /* masked: d_h' = d_h·pad + W_hhᵀ·d_gates, the add with the GEMM */
  by_columns("bilstm_tagger", "T=3 B=17 H=5 V=7 K=3", 4, 4);
  by_columns("tests/models/bilstm_tagger", "T=3 B=17 H=5 V=7 K=3", 4, 4); /* unmasked, both directions */
  /* U·s, V·s, one pack of s for both; backward d_s' = Uᵀ·d_u + Vᵀ·d_v: an
   * add of two products, which stay in the step */
  by_columns("tests/models/sum_of_two_products", "T=3 B=17", 2, 1);
  by_columns("deepbench_lstm", "T=2 B=18 I=3 H=13", 2, 2);               /* C5's model: float inputs, a sum loss */
  by_columns("seq2seq", "S=2 T=3 B=16 H=6", 4, 4);       /* a decoder started from the encoder */
}

/* ---- GEMMs shared by spec ----------------------------------------------------- */

/* Functions defined in c's model's module (cmodel_module: the AOT path's one
 * module, before optimization) whose name ends with suffix. */
/* An embedding's rows, x = weight[ids], read by a GEMM over all T·B rows
 * with V <= T·B / 2 (compile_cell.c, fold_gemm): forward W·x is the table
 * weight·Wᵀ gathered by ids, backward the adjoint's GEMM and the weight
 * gradient run over the V rows of d summed by id. Forward outputs
 * memcmp-equal to CompileOpts.nofold's (the same sums); every gradient
 * within JIT_TOL of the interpreter; 1, 2 and 3 threads the same bits.
 * ngather: the gathers the plans must have (one per GEMM over an
 * embedding's rows), nscatter: the sums by id (one per backward cell). */
static void folded(const char *name, const char *dims, int ngather, int nscatter)
{
  Case c;
  char path[256], tag[160];
  snprintf(path, sizeof path, "examples/%s.rnn", name);
  snprintf(tag, sizeof tag, "%s %s folded", name, dims);
  case_new(&c, tag, path, NULL, dims, 7);
  CModel *plain = case_compile_with(&c, &(CompileOpts){.grad = 1, .nofold = 1}), *fold = case_compile(&c, 1);
  cr_assert_eq(plan_kernels(plain, "gather") + plan_kernels(plain, "scatter"), 0, "%s: nofold has a fold", tag);
  cr_assert_eq(plan_kernels(fold, "gather"), ngather, "%s: %d gathers, expected %d", tag,
               plan_kernels(fold, "gather"), ngather);
  cr_assert_eq(plan_kernels(fold, "scatter"), nscatter, "%s: %d sums by id, expected %d", tag,
               plan_kernels(fold, "scatter"), nscatter);
  run(&c, plain, 1, 2);
  Snap out, all;
  snap_take(plain, 0, &out);
  char otag[200];
  snprintf(otag, sizeof otag, "%s, outputs against nofold's", tag);
  for (int nth = 1; nth <= 3; nth++) {
    run(&c, fold, 1, nth);
    snap_expect_same(otag, fold, &out, nth);
    if (nth == 1)
      snap_take(fold, 1, &all);
    snap_expect_same(tag, fold, &all, nth);
  }
  expect_as_interp(tag, &c, fold);
  snap_free(&out);
  snap_free(&all);
  cmodel_free(plain);
  cmodel_free(fold);
  case_free(&c);
}

Test(jit_model, embedding_rows_from_the_table)
{
  folded("charlm_lstm", "T=6 B=5 V=11", 1, 1);  /* V = 11 <= 30 / 2: W_ih·x and its adjoint */
  folded("charlm_lstm", "T=6 B=5 V=16", 0, 0);  /* 16 > 15: over the rows */
  folded("charlm", "T=4 B=8 V=9", 1, 1);        /* layer 2 reads layer 1's rows: no fold */
  /* two cells (both directions) with two GEMMs of x each; the adjoint of x,
   * W_fᵀ·d_f + W_hᵀ·d_n, is an add of two GEMMs: over the rows */
  folded("mgu", "T=5 B=4 V=7", 4, 4);
  folded("charlm_gru", "T=7 B=3 V=5", 1, 1);
  /* two masked LSTMs read x: both add S·W_ih into the embedding's gradient */
  folded("bilstm_tagger", "T=5 B=4 V=9 H=5 K=3", 2, 2);
}

static int gemm_defs(Case *c, const char *suffix)
{
  char err[512] = "";
  LLVMContextRef cx = LLVMContextCreate();
  LLVMModuleRef mod;
  int st = cmodel_module(c->m, c->md, &c->env, &(CompileOpts){.grad = 1}, cx, &mod, err, sizeof err);
  cr_assert_eq(st, RNNC_OK, "%s: cmodel_module: %s", c->tag, err);
  int n = 0;
  size_t ls = strlen(suffix), len;
  for (LLVMValueRef f = LLVMGetFirstFunction(mod); f; f = LLVMGetNextFunction(f)) {
    const char *name = LLVMGetValueName2(f, &len);
    n += !LLVMIsDeclaration(f) && len >= ls && strcmp(name + len - ls, suffix) == 0;
  }
  LLVMDisposeModule(mod);
  LLVMContextDispose(cx);
  return n;
}

/* Every GEMM of one spec is generated once per compile (gemm_share_fn): a
 * second LSTM layer of the first's sizes (E = H) adds no GEMM — its input
 * projection, forward and backward steps, input gradient and weight
 * gradients have the first layer's specs, and its weights' packs the first's
 * layouts. Each generated GEMM defines one _rows; each pack kernel's is a GEMM
 * of its own. V = 31 is over half the 48 rows: the first layer's GEMMs run
 * over the embedding's rows, not its table (embed_fold), as the second's. */
Test(jit_model, gemms_shared_by_spec)
{
  static const char one[] = "model one(V = 31, E = 24, H = 24) {\n"
                            "  input tokens: i32[T, B], targets: i32[T, B]\n"
                            "  x = embedding(tokens, V, E)\n"
                            "  h1 = lstm(x, H = H)\n"
                            "  loss = softmax(h1, V, target = targets)\n"
                            "  output loss\n"
                            "}\n";
  Case c1, c2;
  case_new(&c1, "one layer", NULL, one, "T=3 B=16", 5);
  case_new(&c2, "charlm", "examples/charlm.rnn", NULL, "V=31 E=24 H=24 T=3 B=16", 5);
  int rows1 = gemm_defs(&c1, "_rows"), rows2 = gemm_defs(&c2, "_rows");
  cr_assert_gt(rows1, 4, "one LSTM layer: %d GEMMs", rows1);
  cr_assert_eq(rows2, rows1, "two LSTM layers of one size: %d GEMMs, one layer %d", rows2, rows1);
  /* the same model, its layers unlike (E != H): they share no spec but the
   * recurrent weights' */
  Case c3;
  case_new(&c3, "charlm E != H", "examples/charlm.rnn", NULL, "V=31 E=20 H=24 T=3 B=16", 5);
  int rows3 = gemm_defs(&c3, "_rows");
  cr_assert_gt(rows3, rows1, "two LSTM layers, E != H: %d GEMMs, one layer %d", rows3, rows1);
  /* and the shared functions compute the same: JIT (two modules, calls
   * across them) against the interpreter */
  check_case(&c2, 0, NULL);
  case_free(&c1);
  case_free(&c2);
  case_free(&c3);
}

/* Ops of plan ops [k0, k1) that the executor shares dynamically (at the
 * first step of a loop, and at the others), inloop: those inside a loop. */
static int dynamic_ops(const PlanOp *op, int k0, int k1, int *fenced, int *inloop)
{
  int n = 0;
  for (int k = k0; k < k1; k++) {
    if (op[k].kind == PK_LOOP) {
      int in = *fenced && op[k + op[k].nbody].barrier;
      int sub = dynamic_ops(op, k + 1, k + 1 + op[k].nbody, &in, inloop);
      n += sub;
      *inloop += sub;
      *fenced = in;
      k += op[k].nbody;
      continue;
    }
    n += rnnc_plan_dynamic(op, k, k1, *fenced);
    *fenced = op[k].barrier;
  }
  return n;
}

/* Big enough for dynamic shares (the executor hands out chunks as threads
 * come free): C5's model at I = 256, H = 512, B = 24, T = 6, its hoisted
 * GEMMs and, with colweight 1, its step GEMMs by columns. Within JIT_TOL of
 * the interpreter, and memcmp-equal on 1, 2 and 3 threads, by rows or by
 * columns. */
Test(jit_model, dynamic_shares)
{
  Case c;
  case_new(&c, "deepbench_lstm dynamic", "examples/deepbench_lstm.rnn", NULL, "T=6 B=24 I=256 H=512", 5);
  CModel *rows = case_compile(&c, 1), *cols = case_compile_with(&c, &(CompileOpts){.grad = 1, .colweight = 1});
  int fenced = 1, inloop = 0;
  int nf = dynamic_ops(cmodel_plan(rows)->op, 0, cmodel_plan(rows)->nop, &fenced, &inloop);
  fenced = 1;
  int nb = dynamic_ops(cmodel_bplan(rows)->op, 0, cmodel_bplan(rows)->nop, &fenced, &inloop);
  cr_assert(nf >= 1 && nb >= 1, "dynamic ops: %d forward, %d backward", nf, nb);
  fenced = 1, inloop = 0;
  dynamic_ops(cmodel_plan(cols)->op, 0, cmodel_plan(cols)->nop, &fenced, &inloop);
  fenced = 1;
  dynamic_ops(cmodel_bplan(cols)->op, 0, cmodel_bplan(cols)->nop, &fenced, &inloop);
  cr_assert_eq(inloop, 2, "by columns: %d dynamic step GEMMs, not 2", inloop);
  run(&c, rows, 1, 1);
  Snap s;
  snap_take(rows, 1, &s);
  for (int nth = 1; nth <= 3; nth++) {
    run(&c, rows, 1, nth);
    snap_expect_same(c.tag, rows, &s, nth);
    run(&c, cols, 1, nth);
    snap_expect_same(c.tag, cols, &s, nth);
  }
  int n;
  double worst = compare(c.tag, rows, &c.ref, c.md, 0, 0, &n);
  cr_expect(n == c.ref.n && worst <= JIT_TOL, "%s: %d of %d tensors, relative error %.3g", c.tag, n, c.ref.n,
            worst);
  snap_free(&s);
  cmodel_free(rows);
  cmodel_free(cols);
  case_free(&c);
}

/* Weight gradients over more than one slice of the T·B rows (k_wgrad packs
 * h and the softmax's input 1024 rows at a time): 2080 rows are two slices
 * in a plan loop and a rest of 32. Within JIT_TOL of the interpreter (which
 * sums in double), memcmp-equal on 1, 2 and 3 threads; the backward plan has
 * the slice loops: W_hh's and the softmax's, besides the time loop (W_ih's
 * gradient sums over the embedding's 11 table rows: embed_fold). */
Test(jit_model, weight_gradient_slices)
{
  Case c;
  CModel *keep = NULL;
  char text[1024];
  const char *p = strstr(lm_text, "CELL");
  snprintf(text, sizeof text, "%.*slstm%s", (int)(p - lm_text), lm_text, p + 4);
  case_new(&c, "lstm wgrad slices", NULL, text, "V=11 E=8 H=12 T=65 B=32", 9);
  check_case(&c, 0, &keep);
  const Plan *b = cmodel_bplan(keep);
  int loops = 0, slices = 0;
  for (int k = 0; k < b->nop; k++)
    if (b->op[k].kind == PK_LOOP) {
      loops++;
      slices += b->op[k].T == 2;
    }
  cr_expect(loops == 3 && slices == 2, "backward plan: %d loops, %d of 2 slices", loops, slices);
  cmodel_free(keep);
  case_free(&c);
}

/* ---- errors and sensitivity -------------------------------------------------------- */

/* A token id or a target out of range: cmodel_run says what interp_run says,
 * with and without the backward pass; after the good value is back, it runs. */
static void bad_ids(const char *file, const char *const *input, const int32_t *bad, int n)
{
  char path[256];
  snprintf(path, sizeof path, "examples/%s.rnn", file);
  Case c;
  case_new(&c, file, path, NULL, "T=5 B=3", 5);
  CModel *cm = case_compile(&c, 1);
  for (int k = 0; k < n; k++) {
    char ierr[512] = "", jerr[512] = "";
    Tensor *t = tset_find(&c.inputs, input[k]);
    CTensor *x = cmodel_find(cm, input[k]);
    cr_assert(t && x && x->numel == tensor_numel(t));
    int64_t e = tensor_numel(t) - 2;
    int32_t good = ((int32_t *)t->data)[e];
    ((int32_t *)t->data)[e] = ((int32_t *)x->data)[e] = bad[k];
    TensorSet out;
    tset_init(&out);
    InterpOpts io = {.prec = PREC_F32};
    int ist = interp_run(c.m, c.md, NULL, &c.env, &c.params, &c.inputs, &io, &out, ierr, sizeof ierr);
    cr_expect_eq(ist, RNNC_EINPUT, "%s: the interpreter took %s = %d", file, input[k], bad[k]);
    for (int grad = 0; grad <= 1; grad++) {
      int jst = cmodel_run(cm, grad, 2, jerr, sizeof jerr);
      cr_expect_eq(jst, RNNC_EINPUT, "%s: cmodel_run took %s = %d", file, input[k], bad[k]);
      cr_expect_str_eq(jerr, ierr, "%s", file);
    }
    ((int32_t *)t->data)[e] = ((int32_t *)x->data)[e] = good;
    run(&c, cm, 1, 2);
    tset_clear(&out);
  }
  cmodel_free(cm);
  case_free(&c);
}

Test(jit_model, ids_out_of_range_as_the_interpreter_says)
{
  bad_ids("charlm_rnn", (const char *const[]){"tokens", "tokens", "targets", "targets"},
          (const int32_t[]){70, -1, 65, -100}, 4);
  /* an ignore index (-1) in the message */
  bad_ids("bilstm_tagger", (const char *const[]){"tags", "tags", "words"}, (const int32_t[]){7, -2, 50}, 3);
  /* targets [B] without a time axis */
  bad_ids("gru_classifier", (const char *const[]){"labels"}, (const int32_t[]){5}, 1);
}

/* The comparison notices a changed parameter: W_hh[0, 0] of the compiled
 * copy moved by 0.05 moves the outputs and gradients past the tolerance. */
Test(jit_model, changed_parameter_is_noticed)
{
  Case c;
  int n;
  case_new(&c, "charlm_lstm", "examples/charlm_lstm.rnn", NULL, "T=5 B=3 H=16", 6);
  CModel *cm = case_compile(&c, 1);
  ((float *)cmodel_find(cm, "h.W_hh")->data)[0] += 0.05f;
  run(&c, cm, 1, 2);
  fprintf(stderr, "(the failures below are expected: h.W_hh[0, 0] was changed)\n");
  double worst = compare("changed", cm, &c.ref, c.md, 0, 1, &n);
  cr_expect(worst > 10 * JIT_TOL, "a changed parameter went unnoticed: rel %.3g", worst);
  double out = compare("changed", cm, &c.ref, c.md, 1, 0, &n);
  cr_expect(out > JIT_TOL, "a changed parameter left the outputs within tolerance: rel %.3g", out);
  cmodel_free(cm);
  case_free(&c);
}
