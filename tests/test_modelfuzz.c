/* test_modelfuzz.c — a differential fuzzer of the model compiler
 * (compiler/compile.c and the code generators under it): random valid cells
 * (tests/test_cellfuzz.c's generator: random graphs of the primitive ops over
 * dims D0, D1, D2 in {1, 2, 3, 5, 7, 9, 13, 17}), each wrapped in a random
 * model, compiled with gradients (cmodel_compile, cmodel_run) against the
 * reference interpreter (interp_run, PREC_F32), forward and backward.
 *
 * The model around cell fz (inputs in0, in1 as the cell has them):
 *  - each cell input an f32[T, B, d] input, or (the first, sometimes) an
 *    embedding(tok0, V, d) of i32 token ids, V in {2, 5, 17};
 *  - one application c1 = fz(.., D0 = D0, ..), forward or backward; its
 *    states start at zero or (sometimes) at init = (h0, ..), f32[B, d] inputs;
 *    in three models of ten it is masked (mask = m, an f32[T, B] input, a
 *    step real where m > 0: random padding anywhere), and so is each other
 *    application of such a model with chance 0.6;
 *  - then one of: nothing; a second layer (c2 = fz(c1, ..) when the cell's
 *    out has its first input's size, else over p1 = softmax(c1, d) — the
 *    probabilities — with the other inputs as they were), in either
 *    direction, its states sometimes from init = c1; both directions
 *    (cb = fz(.., backward), top = concat(c1, cb));
 *  - the loss: sum(top), softmax(top, K, target = y [, ignore = -1]),
 *    sum(last(top)), softmax(last(top), K, target = yb) or
 *    sum(concat(last(top), final(c1, s))), K in {1, 2, 3, 5, 17}; sometimes
 *    a second output (c1, probs(loss), final(c1, s0)).
 * T is random in 1..5, B cycles through 1, 2, 3, 5, 17 (B >= 16: row-split
 * steps, B < 16 column-split GEMMs, B < 4 the gemv path); odd cases compile
 * with CompileOpts.colweight = 1, so every step GEMM runs by columns, in a
 * kernel of its own before the fused step or after it (compile_cell.c). Parameters are
 * init_params' (seeded), float inputs uniform in [-1, 1) (the generator's
 * bounds assume leaves there), token ids uniform in their embedding's range,
 * targets in their softmax's classes (one in four -1 where ignore = -1).
 *
 * The checks, per case (the model's text, the seed and the case number are
 * printed on any failure; RNNC_MODELFUZZ_SEED=S RNNC_MODELFUZZ_CASE=k reruns
 * case k):
 *  1. every tensor the interpreter writes (outputs, the loss, every
 *     grad.<node>.<param> and grad.<float input>) has a compiled counterpart
 *     of the same name, dtype and shape, and the compiled model has no output
 *     or gradient the interpreter lacks;
 *  2. each agrees within TOL = 1e-5 norm-wise, max|jit - ref| / max|ref|
 *     (test_jit_model.c's and test_parity.c's measure), ref the interpreter
 *     in float32. A tensor over TOL from it passes only when it is within
 *     max(TOL, COND * e32) = max(1e-5, 10 e32) of the interpreter in float64
 *     (rounded to float32), e32 the float32 interpreter's own error against
 *     float64. Why: both sides round every elementwise op to float32 in the
 *     same order, but the interpreter sums every reduction (matvec, softmax
 *     over K, the column sums of parameter gradients over T*B rows) in double
 *     and rounds once, while the compiled code sums in float32 in its own
 *     order: n roundings where the interpreter has one. Where a tensor is ill
 *     conditioned (its terms cancel: a softmax layer's bias gradient sums to
 *     0 over the classes; gradients of 1e-8 through two stacked cells) e32
 *     measures how much it amplifies float32 rounding, and n roundings of
 *     that size grow like sqrt(n) e32 (a random walk), n <= T*B = 85 rows or
 *     48 terms in a cell: sqrt(85) = 9.2 < COND. In absolute terms the rule
 *     is max|jit - f64| <= 10 max|interp32 - f64|: the compiled values' error
 *     at most ten times the float32 interpreter's. That also covers a tensor
 *     that is 0 in exact arithmetic (a loss that does not depend on it: the
 *     sum of a softmax's probabilities), where both float32 values are
 *     rounding noise and e32 is large. Measured over 800 campaign cases
 *     (seeds 7, 11, 12, 13): 9 tensors of 3 cases were over TOL from float32
 *     with no bug, their compiled error against float64 1.25 to 5.2 times e32
 *     (e32 2.7e-6 to 7.7e-5 where a softmax's backward cancels, 5e7 to 1.6e8
 *     for an exactly-0 gradient); the closest under TOL (7.2e-6 to 9.4e-6
 *     apart, 2-element gradients) 2.2 to 5.5 times. The 60 CI cases never
 *     need the rule (worst 3.5e-6). A wrong value (a dropped term, a wrong
 *     index) is off by far more than 10 rounding errors, and the self-test's
 *     2e-5 must fail both references. Last, a tensor that is 0 in exact
 *     arithmetic because two equal terms cancel (a softmax's probabilities
 *     summed; the same step's value reached by two paths) can come out as
 *     exactly 0 on one side, by the symmetric rounding of a double sum, and
 *     as float32 rounding noise of its terms on the other, which e32 does
 *     not see (seed 45 case 10: interpreter 0, compiled 1.4e-8 from terms
 *     of 1; seed 43 case 17: interpreter 1.3e-13 from double sums, compiled
 *     0). Such a tensor passes when the reference and the compiled values
 *     are both at most NOISE = COND * FLT_EPSILON (1.2e-6) times the case's
 *     largest reference value: zero at the case's scale. A tensor above that
 *     keeps the 1e-5 relative check;
 *  3. runs on 1 and 3 threads give memcmp-identical outputs and gradients;
 *  4. a forward-only run (2 threads) gives the outputs within TOL;
 *  5. every fourth case is also compiled without gradients: its outputs
 *     within TOL, on 1 and 3 threads bitwise the same, no gradient tensors.
 * A case whose reference is not finite (a random cell can square a state
 * every step) is counted as skipped; CI requires at most one in five.
 *
 * CI runs RNNC_MODELFUZZ_CASES (default 60, 8 under sanitizers: 20 had
 * missed two gradient bugs that 150-case campaigns found in 3 and 1 cases) from
 * seed RNNC_MODELFUZZ_SEED (default 20261127); cells of at most
 * RNNC_FUZZ_STMTS (default 10) statements. RNNC_MODELFUZZ_VERBOSE=1 prints a
 * line per case (its worst tensor), 2 also the model. The self-test below
 * shows that an output or a gradient off by 2e-5, or one bit on 3 threads,
 * fails.
 */
#define CELLFUZZ_GENERATOR_ONLY
#include "test_cellfuzz.c" /* the cell generator: rs, mix, rint_, chance, gencell, kseen */

#include <float.h>

#define TOL 1e-5
#define COND 10 /* float32 sums against one rounding: sqrt(85) < 10 (see the top) */
#define NOISE (COND * FLT_EPSILON) /* of a case's largest value: float32 rounding noise (see the top) */

static const long bchoice[] = {1, 2, 3, 5, 17};
static const long kchoice[] = {1, 2, 3, 5, 17};
static const long vchoice[] = {2, 5, 17};

/* What the model generator made (coverage, counted over a run). */
enum { F_EMB, F_INIT, F_BACKWARD, F_STACK_DIRECT, F_STACK_PROBS, F_INIT_NODE, F_BIDIR, F_SUM, F_SOFTMAX,
       F_SUM_LAST, F_SOFTMAX_LAST, F_SUM_FINAL, F_IGNORE, F_EXTRA_OUT, F_MASK, F_B16, F_B4, F_BSMALL, F_NOGRAD, NF };
static const char *const fname[NF] = {"embedding", "init list", "backward", "stacked direct", "stacked on probs",
                                      "init = node", "bidirectional", "sum", "softmax", "sum(last)",
                                      "softmax(last)", "sum(final)", "ignore", "second output", "mask", "B >= 16",
                                      "4 <= B < 16", "B < 4", "compiled without gradients"};
static long fseen[NF];
static long envlong(const char *name, long def)
{
  const char *s = getenv(name);
  return s && *s ? strtol(s, NULL, 0) : def;
}

static double cond_worst; /* the largest compiled / interpreted error against float64 passed by COND */
static long zeroes;       /* tensors passed as numerically zero at their case's scale (NOISE) */

typedef struct MCtx {
  uint64_t seed;
  int kase;
  int fails, skipped, cases;
  long tensors;       /* tensors compared */
  double worst;       /* worst norm-wise error over every tensor */
  int worst_case;     /* ... in this case */
  int rescued;        /* tensors over TOL from the float32 reference, within it from float64 */
  char worst_name[64]; /* ... of this tensor */
  int quiet;
  const char *text;   /* the model being checked */
  /* the self-test: after the honest checks, perturbed copies must fail */
  int selftest, caught_out, caught_grad, caught_thread;
} MCtx;

static void mreport(MCtx *x, const char *fmt, ...)
{
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  x->fails++;
  if (x->quiet)
    return;
  cr_log_error("modelfuzz: seed %llu case %d: %s\nrerun: RNNC_MODELFUZZ_SEED=%llu RNNC_MODELFUZZ_CASE=%d\n%s",
               (unsigned long long)x->seed, x->kase, msg, (unsigned long long)x->seed, x->kase,
               x->text ? x->text : "");
}

/* ---- the model generator ---- */

/* The generated cell as the model generator needs it. */
typedef struct CellInfo {
  int nin, nst;
  Dm in[2], st[3], out;
  char binds[128]; /* ", D0 = D0, D2 = D2": the cell's dims */
  char header[128]; /* "D0 = 3, D2 = 17" */
} CellInfo;

/* Inputs, states and out of the cell g made (text: its text; c: it parsed). */
static void cellinfo(const Gen *g, const char *text, const Cell *c, int nst, CellInfo *ci)
{
  memset(ci, 0, sizeof *ci);
  ci->nst = nst;
  for (int i = 0; i < g->nv; i++)
    if (g->v[i].leaf && g->v[i].name[0] == 'x')
      ci->in[ci->nin++] = g->v[i].d;
    else if (g->v[i].leaf && g->v[i].name[0] == 's')
      ci->st[atoi(g->v[i].name + 1)] = g->v[i].d;
  const char *o = strstr(text, "\n  out ");
  cr_assert(o, "no out line in\n%s", text);
  o += 7;
  if (strncmp(o, "tanh(", 5) == 0)
    o += 5;
  size_t n = strcspn(o, ")\n");
  int found = 0;
  for (int i = 0; i < g->nv && !found; i++)
    if (strlen(g->v[i].name) == n && strncmp(g->v[i].name, o, n) == 0) {
      ci->out = g->v[i].d;
      found = 1;
    }
  cr_assert(found, "the out of\n%s", text);
  for (int i = 0; i < c->ndim; i++) {
    const char *d = c->dim[i];
    cr_assert(d[0] == 'D' && d[1] >= '0' && d[1] < '0' + NSYM && !d[2], "cell dim '%s'", d);
    snprintf(ci->binds + strlen(ci->binds), sizeof ci->binds - strlen(ci->binds), ", %s = %s", d, d);
    snprintf(ci->header + strlen(ci->header), sizeof ci->header - strlen(ci->header), "%s%s = %ld",
             i ? ", " : "", d, g->dv[d[1] - '0']);
  }
}

/* The cell's inputs as model operands ("in0, in1"); first: the first one's
 * replacement ("c1" or "p1"), or NULL. */
static void operands(const CellInfo *ci, const char *first, char *out, size_t cap)
{
  out[0] = 0;
  for (int i = 0; i < ci->nin; i++)
    snprintf(out + strlen(out), cap - strlen(out), "%s%s", i ? ", " : "",
             i == 0 && first ? first : (i == 0 ? "in0" : "in1"));
}

/* A model around the cell (text cell), as described at the top. */
static char *genmodel(const char *cell, const CellInfo *ci, int *feat)
{
  Buf b = {0};
  char ds[64], ops[64], t[64];
  bprintf(&b, "%s\nmodel fzm(%s) {\n", cell, ci->header);
  for (int i = 0; i < ci->nin; i++)
    if (i == 0 && chance(0.25)) {
      feat[F_EMB] = 1;
      bprintf(&b, "  input tok0: i32[T, B]\n  in0 = embedding(tok0, %ld, %s)\n", vchoice[rint_(3)],
              dm_str(ci->in[0], ds));
    } else {
      bprintf(&b, "  input in%d: f32[T, B, %s]\n", i, dm_str(ci->in[i], ds));
    }
  const char *mask = chance(0.3) ? ", mask = m" : "";
  if (*mask) {
    feat[F_MASK] = 1;
    bprintf(&b, "  input m: f32[T, B]\n");
  }
  char init[64] = "";
  if (chance(0.35)) {
    feat[F_INIT] = 1;
    strcpy(init, ", init = (");
    for (int s = 0; s < ci->nst; s++) {
      bprintf(&b, "  input h%d: f32[B, %s]\n", s, dm_str(ci->st[s], ds));
      snprintf(init + strlen(init), sizeof init - strlen(init), "%sh%d", s ? ", " : "", s);
    }
    strcat(init, ")");
  }
  operands(ci, NULL, ops, sizeof ops);
  int back = chance(0.4);
  feat[F_BACKWARD] |= back;
  bprintf(&b, "  c1 = fz(%s%s%s%s%s)\n", ops, ci->binds, back ? ", backward" : "", init, mask);
  const char *top = "c1";
  int canstack = dm_eq(ci->out, ci->in[0]); /* c1 can be the first input of c2 */
  switch (canstack && chance(0.5) ? 1 : rint_(3)) {
  case 0: break;
  case 1: { /* stacked */
    int direct = canstack && chance(0.8);
    if (!direct)
      bprintf(&b, "  p1 = softmax(c1, %s)\n", dm_str(ci->in[0], ds));
    feat[direct ? F_STACK_DIRECT : F_STACK_PROBS] = 1;
    operands(ci, direct ? "c1" : "p1", ops, sizeof ops);
    int back2 = chance(0.4), fromc1 = chance(0.4);
    feat[F_BACKWARD] |= back2;
    feat[F_INIT_NODE] |= fromc1;
    bprintf(&b, "  c2 = fz(%s%s%s%s%s)\n", ops, ci->binds, back2 ? ", backward" : "", fromc1 ? ", init = c1" : "",
            chance(0.6) ? mask : "");
    top = "c2";
    break;
  }
  case 2: /* both directions */
    feat[F_BIDIR] = 1;
    bprintf(&b, "  cb = fz(%s%s%s%s)\n", ops, ci->binds, back ? "" : ", backward", chance(0.6) ? mask : "");
    bprintf(&b, "  top = concat(c1, cb)\n");
    top = "top";
    break;
  }
  long K = kchoice[rint_(5)];
  int ignore = chance(0.3);
  const char *extra = NULL;
  switch (rint_(5)) {
  case 0: feat[F_SUM] = 1; bprintf(&b, "  loss = sum(%s)\n", top); break;
  case 1:
    feat[F_SOFTMAX] = 1;
    feat[F_IGNORE] |= ignore;
    bprintf(&b, "  input y: i32[T, B]\n  loss = softmax(%s, %ld, target = y%s)\n", top, K, ignore ? ", ignore = -1" : "");
    if (chance(0.4)) {
      bprintf(&b, "  pr = probs(loss)\n");
      extra = "pr";
    }
    break;
  case 2: feat[F_SUM_LAST] = 1; bprintf(&b, "  loss = sum(last(%s))\n", top); break;
  case 3:
    feat[F_SOFTMAX_LAST] = 1;
    feat[F_IGNORE] |= ignore;
    bprintf(&b, "  input yb: i32[B]\n  loss = softmax(last(%s), %ld, target = yb%s)\n", top, K,
            ignore ? ", ignore = -1" : "");
    break;
  default:
    feat[F_SUM_FINAL] = 1;
    snprintf(t, sizeof t, "s%d", rint_(ci->nst));
    bprintf(&b, "  loss = sum(concat(last(%s), final(c1, %s)))\n", top, t);
    break;
  }
  if (!extra && chance(0.3)) {
    if (chance(0.5)) {
      extra = "c1";
    } else {
      bprintf(&b, "  fs = final(c1, s0)\n");
      extra = "fs";
    }
  }
  feat[F_EXTRA_OUT] |= extra != NULL;
  bprintf(&b, "  output loss%s%s\n}\n", extra ? ", " : "", extra ? extra : "");
  return b.s;
}

/* ---- comparing (as tests/test_jit_model.c) ---- */

/* max_i |a_i|; NaN when a has a NaN. */
static double maxabs(const float *a, int64_t n)
{
  double m = 0;
  for (int64_t i = 0; i < n; i++) {
    if (isnan(a[i]))
      return NAN;
    m = fmax(m, fabs((double)a[i]));
  }
  return m;
}

/* max_i |a_i - b_i| / max(max_i |b_i|, FLT_MIN); NaN when either has a NaN. */
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

/* Every tensor of ref (outputs only with outonly) against cm's of that name,
 * the error of each the smaller of those against ref and (where ref's is
 * over TOL and alt is given) against alt, the float64 reference rounded; a
 * message per failing tensor into msg, *rescued counts the tensors alt
 * passed. Returns the worst error (INFINITY: missing, another dtype, shape or
 * role, or an extra compiled tensor). */
static double compare(CModel *cm, const TensorSet *ref, const TensorSet *alt, int outonly, char *msg, size_t cap,
                      int *n, const char **worstname, int *rescued)
{
  double worst = 0, scale = 0; /* the largest reference value compared */
  *n = 0;
  for (int i = 0; i < ref->n; i++)
    if (ref->t[i].dtype == DT_F32 && !(outonly && strncmp(ref->t[i].name, "grad.", 5) == 0))
      scale = fmax(scale, maxabs(ref->t[i].data, tensor_numel(&ref->t[i])));
  for (int i = 0; i < ref->n; i++) {
    const Tensor *t = &ref->t[i];
    if (outonly && strncmp(t->name, "grad.", 5) == 0)
      continue;
    const CTensor *c = cmodel_find(cm, t->name);
    ++*n;
    if (!c || c->dtype != t->dtype || !same_shape(c, t) || (c->role != CT_OUTPUT && c->role != CT_GRAD)) {
      snprintf(msg + strlen(msg), cap - strlen(msg), "  %s: %s\n", t->name,
               !c ? "not in the compiled model" : "another dtype, shape or role in the compiled model");
      worst = INFINITY;
      continue;
    }
    int64_t w = 0;
    double r = t->dtype == DT_I32 ? (memcmp(c->data, t->data, (size_t)c->numel * 4) ? INFINITY : 0)
                                  : rel_error(c->data, t->data, c->numel, &w);
    const Tensor *a = alt && !(r <= TOL) && t->dtype == DT_F32 ? tset_find(alt, t->name) : NULL;
    double r64 = NAN, i64 = NAN; /* compiled and interpreted (float32) against float64 */
    int64_t w64 = 0;
    if (a) {
      i64 = rel_error(t->data, a->data, c->numel, &w64);
      r64 = rel_error(c->data, a->data, c->numel, &w64);
      if (r64 <= fmax(TOL, COND * i64)) { /* see the top */
        if (envlong("RNNC_MODELFUZZ_VERBOSE", 0))
          fprintf(stderr, "modelfuzz: %s: %.3g from float32; from float64 %.3g, %.2f times the float32 "
                          "interpreter's %.3g\n", t->name, r, r64, r64 / i64, i64);
        r = fmin(r64, TOL);
        ++*rescued;
        cond_worst = fmax(cond_worst, r64 / i64);
      }
    }
    if (!(r <= TOL) && t->dtype == DT_F32 && maxabs(t->data, c->numel) <= NOISE * scale &&
        maxabs(c->data, c->numel) <= NOISE * scale) { /* both zero at the case's scale: see the top */
      if (envlong("RNNC_MODELFUZZ_VERBOSE", 0))
        fprintf(stderr, "modelfuzz: %s: %.3g from float32; reference and compiled values both below %.3g, "
                        "float32 noise at the case's largest value %.3g\n", t->name, r, NOISE * scale, scale);
      r = TOL;
      zeroes++;
    }
    if (!(r <= TOL))
      snprintf(msg + strlen(msg), cap - strlen(msg),
               "  %s [%lld elements]: rel %.3g (worst [%lld]: jit %.9g, interp %.9g); against float64 %.3g "
               "(the interpreter in float32: %.3g)\n",
               t->name, (long long)c->numel, r, (long long)w,
               t->dtype == DT_F32 ? (double)((const float *)c->data)[w] : 0.0,
               t->dtype == DT_F32 ? (double)((const float *)t->data)[w] : 0.0, r64, i64);
    if (!(r <= worst)) {
      worst = r;
      *worstname = t->name;
    }
  }
  for (int i = 0; i < cmodel_ntensor(cm); i++) {
    const CTensor *c = cmodel_tensor(cm, i);
    if ((c->role == CT_OUTPUT || (c->role == CT_GRAD && !outonly)) && !tset_find(ref, c->name)) {
      snprintf(msg + strlen(msg), cap - strlen(msg), "  %s: compiled, but the interpreter writes no such tensor\n",
               c->name);
      worst = INFINITY;
    }
  }
  return worst;
}

/* The outputs and gradients of cm, concatenated (for the thread check). */
static unsigned char *snapshot(CModel *cm, size_t *bytes)
{
  size_t n = 0;
  for (int i = 0; i < cmodel_ntensor(cm); i++) {
    const CTensor *c = cmodel_tensor(cm, i);
    if (c->role == CT_OUTPUT || c->role == CT_GRAD)
      n += (size_t)c->numel * 4;
  }
  unsigned char *s = malloc(n + 1), *p = s;
  cr_assert(s);
  for (int i = 0; i < cmodel_ntensor(cm); i++) {
    const CTensor *c = cmodel_tensor(cm, i);
    if (c->role == CT_OUTPUT || c->role == CT_GRAD) {
      memcpy(p, c->data, (size_t)c->numel * 4);
      p += (size_t)c->numel * 4;
    }
  }
  *bytes = n;
  return s;
}

/* ---- one case ---- */

/* Inputs as described at the top, from rng. */
static void make_inputs(const Model *md, const Env *env, Rng *rng, TensorSet *in)
{
  for (int i = 0; i < md->nnode; i++) {
    const MNode *n = &md->node[i];
    if (n->kind != M_INPUT)
      continue;
    int64_t dim[TENSOR_MAXRANK];
    for (int k = 0; k < n->shape.rank; k++) {
      long v = 0;
      cr_assert(dim_eval(n->shape.d[k], env, &v, NULL));
      dim[k] = v;
    }
    Tensor *t = tset_add(in, n->name, n->dtype, n->shape.rank, dim);
    cr_assert_not_null(t);
    int64_t ne = tensor_numel(t);
    if (n->dtype != DT_I32) {
      for (int64_t k = 0; k < ne; k++)
        ((float *)t->data)[k] = (float)uni();
      continue;
    }
    long hi = -1;
    int hasignore = 0;
    for (int j = 0; j < md->nnode; j++) {
      const MNode *u = &md->node[j];
      long v = -1;
      if ((u->kind == M_EMBEDDING && u->arg[0] == i) || (u->kind == M_SOFTMAX && u->target == i))
        cr_assert(dim_eval(u->size[0], env, &v, NULL));
      if (u->kind == M_SOFTMAX && u->target == i)
        hasignore |= u->hasignore;
      if (v >= 0 && (hi < 0 || v < hi))
        hi = v;
    }
    cr_assert(hi > 0, "input '%s' is read by no embedding or softmax", n->name);
    for (int64_t k = 0; k < ne; k++) {
      long v = (long)(rng_uniform(rng) * (double)hi);
      if (hasignore && k > 0 && rng_uniform(rng) < 0.25)
        v = -1;
      ((int32_t *)t->data)[k] = (int32_t)v;
    }
  }
}

static int all_finite(const TensorSet *s)
{
  for (int i = 0; i < s->n; i++)
    if (s->t[i].dtype == DT_F32)
      for (int64_t k = 0; k < tensor_numel(&s->t[i]); k++)
        if (!isfinite(((const float *)s->t[i].data)[k]) || fabsf(((const float *)s->t[i].data)[k]) > 1e30f)
          return 0;
  return 1;
}

/* Perturb the largest element of cm's tensors with role (the largest value
 * of any: a tensor at the case's noise level passes as zero, see the top)
 * by a relative 2e-5 (1e-30 when all are 0). */
static void perturb(CModel *cm, int role)
{
  float *best = NULL, mx = 0;
  for (int i = 0; i < cmodel_ntensor(cm); i++) {
    CTensor *c = cmodel_tensor(cm, i);
    if (c->role != role || c->dtype != DT_F32)
      continue;
    float *d = c->data;
    for (int64_t k = 0; k < c->numel; k++)
      if (!best || fabsf(d[k]) > mx) {
        mx = fabsf(d[k]);
        best = &d[k];
      }
  }
  if (best)
    *best += mx > 0 ? 2e-5f * mx : 1e-30f;
}

/* The interpreter's float64 results, rounded to float32, into alt. */
static void make_alt(Module *m, Model *md, const Env *env, const TensorSet *params, const TensorSet *inputs,
                     TensorSet *alt)
{
  TensorSet r64;
  char err[512] = "";
  tset_init(&r64);
  InterpOpts io = {.prec = PREC_F64, .wantgrad = 1};
  Env e = *env;
  cr_assert_eq(interp_run(m, md, md->grad, &e, params, inputs, &io, &r64, err, sizeof err), RNNC_OK, "%s", err);
  for (int i = 0; i < r64.n; i++) {
    const Tensor *b = &r64.t[i];
    if (b->dtype != DT_F64 && b->dtype != DT_F32)
      continue;
    Tensor *t = tset_add(alt, b->name, DT_F32, b->rank, b->dim);
    cr_assert(t);
    for (int64_t k = 0; k < tensor_numel(b); k++)
      ((float *)t->data)[k] =
          b->dtype == DT_F64 ? (float)((const double *)b->data)[k] : ((const float *)b->data)[k];
  }
  tset_clear(&r64);
}

/* md compiled (with gradients or not; colweight: CompileOpts'), params and
 * inputs copied in; NULL (reported) on an error. */
static CModel *compile_in(MCtx *x, Module *m, Model *md, const Env *env, int grad, int64_t colweight,
                          const TensorSet *params, const TensorSet *inputs)
{
  char err[512] = "";
  CModel *cm = NULL;
  CompileOpts co = {.grad = grad, .colweight = colweight};
  if (cmodel_compile(m, md, env, &co, &cm, err, sizeof err) != RNNC_OK) {
    mreport(x, "cmodel_compile (%s gradients): %s", grad ? "with" : "without", err);
    return NULL;
  }
  for (int i = 0; i < cmodel_ntensor(cm); i++) {
    CTensor *c = cmodel_tensor(cm, i);
    if (c->role == CT_GRAD && !grad) {
      mreport(x, "compiled without gradients, but has '%s'", c->name);
      cmodel_free(cm);
      return NULL;
    }
    if (c->role != CT_PARAM && c->role != CT_INPUT)
      continue;
    const Tensor *t = tset_find(c->role == CT_PARAM ? params : inputs, c->name);
    if (!t || t->dtype != c->dtype || !same_shape(c, t)) {
      mreport(x, "compiled tensor '%s' is no parameter or input of its dtype and shape", c->name);
      cmodel_free(cm);
      return NULL;
    }
    memcpy(c->data, t->data, (size_t)c->numel * 4);
  }
  return cm;
}

/* Case kase from the generator's state rs: every check of the top; a
 * failure is reported (counted in x) and ends the case. */
static void run_case(MCtx *x, long kase)
{
  Gen *g = calloc(1, sizeof *g);
  cr_assert(g);
  int nst, feat[NF] = {0};
  char *cell = gencell(g, &nst);
  char *text = NULL, err[512] = "", msg[8192] = "";
  Module *m0 = module_new(), *m = NULL;
  TensorSet params, inputs, ref, alt;
  tset_init(&alt);
  tset_init(&params);
  tset_init(&inputs);
  tset_init(&ref);
  CModel *cm = NULL;
  x->text = cell;
  x->kase = (int)kase;
  x->cases++;
  for (int k = 0; k < NK; k++)
    kseen[k] += g->opcount[k];
  if (parse(m0, source_new(m0, "<modelfuzz cell>", cell)) != RNNC_OK || verify(m0) != RNNC_OK) {
    mreport(x, "the generated cell does not parse and verify (a generator bug):\n%s",
            diags_string(m0->arena, &m0->diags));
    goto done;
  }
  CellInfo ci;
  cellinfo(g, cell, cell_find(m0, "fz"), nst, &ci);
  text = genmodel(cell, &ci, feat);
  long T = 1 + rint_(5), B = bchoice[kase % 5];
  feat[B >= 16 ? F_B16 : B >= 4 ? F_B4 : F_BSMALL] = 1;
  char *full = malloc(strlen(text) + 64);
  cr_assert(full);
  sprintf(full, "# T = %ld, B = %ld\n%s", T, B, text);
  free(text);
  text = full;
  x->text = text;
  m = module_new();
  if (parse(m, source_new(m, "<modelfuzz>", text)) != RNNC_OK || verify(m) != RNNC_OK) {
    mreport(x, "the generated model does not parse and verify (a generator bug):\n%s",
            diags_string(m->arena, &m->diags));
    goto done;
  }
  Model *md = model_find(m, "fzm");
  cr_assert(md);
  Env env = {0};
  env_set(m->arena, &env, intern(m->names, "T", 1), T);
  env_set(m->arena, &env, intern(m->names, "B", 1), B);
  for (int d = 0; d < NSYM; d++) {
    char nm[8];
    snprintf(nm, sizeof nm, "D%d", d);
    env_set(m->arena, &env, intern(m->names, nm, strlen(nm)), g->dv[d]);
  }
  md->grad = autodiff(m, md);
  if (!md->grad || schedule(m) != RNNC_OK) {
    mreport(x, "autodiff or schedule failed:\n%s", diags_string(m->arena, &m->diags));
    goto done;
  }
  uint64_t pseed = mix(&rs);
  if (init_params(md, &env, pseed, &params, err, sizeof err) != RNNC_OK) {
    mreport(x, "init_params: %s", err);
    goto done;
  }
  Rng rng;
  rng_seed(&rng, pseed ^ 0x5eed);
  make_inputs(md, &env, &rng, &inputs);
  InterpOpts io = {.prec = PREC_F32, .wantgrad = 1};
  Env env2 = env;
  if (interp_run(m, md, md->grad, &env2, &params, &inputs, &io, &ref, err, sizeof err) != RNNC_OK) {
    mreport(x, "interp_run: %s", err);
    goto done;
  }
  if (!all_finite(&ref)) {
    x->skipped++;
    goto done;
  }
  cm = compile_in(x, m, md, &env, 1, kase % 2, &params, &inputs);
  if (!cm)
    goto done;
  if (cmodel_run(cm, 1, 1, err, sizeof err) != RNNC_OK) {
    mreport(x, "cmodel_run (1 thread): %s", err);
    goto done;
  }
  int n;
  const char *wn = "";
  double w = compare(cm, &ref, NULL, 0, msg, sizeof msg, &n, &wn, &x->rescued);
  if (!(w <= TOL) && isfinite(w)) { /* the second reference: see the top */
    make_alt(m, md, &env, &params, &inputs, &alt);
    msg[0] = 0;
    w = compare(cm, &ref, &alt, 0, msg, sizeof msg, &n, &wn, &x->rescued);
  }
  x->tensors += n;
  if (!(w <= x->worst)) {
    x->worst = w;
    x->worst_case = (int)kase;
    snprintf(x->worst_name, sizeof x->worst_name, "%s", wn);
  }
  if (envlong("RNNC_MODELFUZZ_VERBOSE", 0)) /* 2: with the model's text */
    fprintf(stderr, "modelfuzz: case %ld (T = %ld, B = %ld): %d tensors, worst %.3g (%s)\n%s", kase, T, B, n, w, wn,
            envlong("RNNC_MODELFUZZ_VERBOSE", 0) > 1 ? text : "");
  if (!(w <= TOL) || n != ref.n) {
    mreport(x, "compiled vs interpreted (T = %ld, B = %ld, 1 thread), %d of %d tensors compared:\n%s", T, B, n,
            ref.n, msg);
    goto done;
  }
  size_t bytes, bytes3;
  unsigned char *s1 = snapshot(cm, &bytes);
  if (cmodel_run(cm, 1, 3, err, sizeof err) != RNNC_OK) {
    free(s1);
    mreport(x, "cmodel_run (3 threads): %s", err);
    goto done;
  }
  unsigned char *s3 = snapshot(cm, &bytes3);
  if (x->selftest) { /* one flipped bit on 3 threads */
    s3[0] ^= 1;
    x->caught_thread += memcmp(s1, s3, bytes) != 0;
    s3[0] ^= 1;
  }
  int same = bytes == bytes3 && memcmp(s1, s3, bytes) == 0;
  free(s1);
  free(s3);
  if (!same) {
    mreport(x, "outputs or gradients on 3 threads differ from 1 thread (T = %ld, B = %ld)", T, B);
    goto done;
  }
  if (cmodel_run(cm, 0, 2, err, sizeof err) != RNNC_OK) {
    mreport(x, "cmodel_run (forward only): %s", err);
    goto done;
  }
  msg[0] = 0;
  w = compare(cm, &ref, alt.n ? &alt : NULL, 1, msg, sizeof msg, &n, &wn, &x->rescued);
  if (!(w <= TOL)) {
    mreport(x, "forward only (T = %ld, B = %ld, 2 threads):\n%s", T, B, msg);
    goto done;
  }
  if (kase % 4 == 3 && !x->selftest) { /* compiled without gradients: the outputs, 1 and 3 threads the same */
    cmodel_free(cm);
    cm = compile_in(x, m, md, &env, 0, kase % 2, &params, &inputs);
    if (!cm)
      goto done;
    if (cmodel_run(cm, 0, 1, err, sizeof err) != RNNC_OK) {
      mreport(x, "cmodel_run (without gradients): %s", err);
      goto done;
    }
    msg[0] = 0;
    w = compare(cm, &ref, alt.n ? &alt : NULL, 1, msg, sizeof msg, &n, &wn, &x->rescued);
    s1 = snapshot(cm, &bytes);
    same = cmodel_run(cm, 0, 3, err, sizeof err) == RNNC_OK;
    s3 = snapshot(cm, &bytes3);
    same = same && bytes == bytes3 && memcmp(s1, s3, bytes) == 0;
    free(s1);
    free(s3);
    if (!(w <= TOL) || !same) {
      mreport(x, "compiled without gradients (T = %ld, B = %ld): %s\n%s", T, B,
              same ? "" : "3 threads differ from 1 or failed", msg);
      goto done;
    }
    feat[F_NOGRAD] = 1;
  }
  if (x->selftest) { /* perturbed outputs, then gradients, must fail against both references */
    if (!alt.n)
      make_alt(m, md, &env, &params, &inputs, &alt);
    cr_assert_eq(cmodel_run(cm, 1, 1, err, sizeof err), RNNC_OK, "%s", err);
    perturb(cm, CT_OUTPUT);
    x->caught_out += !(compare(cm, &ref, alt.n ? &alt : NULL, 0, msg, sizeof msg, &n, &wn, &x->rescued) <= TOL);
    cr_assert_eq(cmodel_run(cm, 1, 1, err, sizeof err), RNNC_OK, "%s", err);
    perturb(cm, CT_GRAD);
    x->caught_grad += !(compare(cm, &ref, alt.n ? &alt : NULL, 0, msg, sizeof msg, &n, &wn, &x->rescued) <= TOL);
  }
  for (int f = 0; f < NF; f++)
    fseen[f] += feat[f];
done:
  cmodel_free(cm);
  tset_clear(&params);
  tset_clear(&inputs);
  tset_clear(&ref);
  tset_clear(&alt);
  if (m)
    module_free(m);
  module_free(m0);
  free(text);
  free(cell);
  free(g);
  x->text = NULL;
}

static void seed_case(uint64_t seed, long k)
{
  uint64_t s = seed ^ ((uint64_t)k * 0x2545f4914f6cdd1du);
  rs = mix(&s);
}

Test(modelfuzz, random_cells_in_random_models_compiled_vs_interpreted_forward_and_backward, .timeout = 900)
{
  long ncase = envlong("RNNC_MODELFUZZ_CASES", FUZZ_SANITIZED ? 8 : 60);
  long only = envlong("RNNC_MODELFUZZ_CASE", -1);
  uint64_t seed = (uint64_t)envlong("RNNC_MODELFUZZ_SEED", 20261127);
  maxstmt = envlong("RNNC_FUZZ_STMTS", 10);
  cr_assert(maxstmt >= 3, "RNNC_FUZZ_STMTS >= 3");
  MCtx x = {.seed = seed};
  long first = only >= 0 ? only : 0, last = only >= 0 ? only + 1 : ncase;
  for (long k = first; k < last; k++) {
    seed_case(seed, k);
    run_case(&x, k);
  }
  char cov[1024] = "", ops[1024] = "";
  for (int f = 0; f < NF; f++)
    snprintf(cov + strlen(cov), sizeof cov - strlen(cov), " %s:%ld", fname[f], fseen[f]);
  for (int k = 0; k < NK; k++)
    snprintf(ops + strlen(ops), sizeof ops - strlen(ops), " %s:%ld", kname[k], kseen[k]);
  cr_log_info("modelfuzz: seed %llu, %ld cases, %d failed, %d skipped (reference not finite); %ld tensors "
              "compared (%d passed against float64 by the conditioning rule, at most %.2f times the float32 "
              "interpreter's error; %ld as zero at their case's scale), worst norm-wise error %.3g (case %d, %s; "
              "tolerance %g)",
              (unsigned long long)seed, last - first, x.fails, x.skipped, x.tensors, x.rescued, cond_worst, zeroes,
              x.worst, x.worst_case, x.worst_name, TOL);
  cr_log_info("modelfuzz: models made:%s", cov);
  cr_log_info("modelfuzz: cell statements made:%s", ops);
  cr_assert_eq(x.fails, 0, "%d of %ld cases failed (see the log above)", x.fails, last - first);
  cr_assert(x.skipped * 5 <= last - first, "%d of %ld cases skipped", x.skipped, last - first);
  if (only < 0 && ncase >= 20)
    for (int f = 0; f < NF; f++)
      cr_expect(fseen[f] > 0, "no case made a model with '%s'", fname[f]);
}

/* The checks are not vacuous: the largest output or gradient element off by
 * a relative 2e-5, or one bit of a 3-thread result, fails each of the first
 * cases; unperturbed they pass. */
Test(modelfuzz, the_checks_catch_small_errors, .timeout = 300)
{
  MCtx x = {.seed = 1, .selftest = 1};
  for (long k = 0; k < 3; k++) {
    seed_case(1, k);
    run_case(&x, k);
  }
  cr_assert_eq(x.fails, 0);
  cr_assert_eq(x.skipped, 0);
  cr_assert_eq(x.caught_out, 3, "%d of 3 cases caught an output off by 2e-5", x.caught_out);
  cr_assert_eq(x.caught_grad, 3, "%d of 3 cases caught a gradient off by 2e-5", x.caught_grad);
  cr_assert_eq(x.caught_thread, 3, "%d of 3 cases caught a bit flipped on 3 threads", x.caught_thread);
}
