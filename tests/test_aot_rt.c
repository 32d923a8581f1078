/* test_aot_rt.c — the runtime of models compiled ahead of time
 * (runtime/aot_rt.c, librnnc_rt.a) on descriptors built in memory.
 *
 * A model is JIT-compiled (cmodel_compile) and its descriptor filled here
 * from the CModel the way compiler/aot.c fills it as constants in an object:
 * the same plans, kernel tables, tensors, checks and sizes, the parameters
 * packed into one buffer at offsets rounded to 16 floats, and the optimizer's
 * kernels from optgen_jit. The runtime then runs that descriptor, and
 *  - forward runs (states carried over two calls, then reset) give outputs
 *    bitwise equal to cmodel_run's, with io entries given and left NULL;
 *  - the training program's backward gives the loss, the outputs and every
 *    gradient bitwise equal to cmodel_run's with gradients;
 *  - 5 training steps (Adam with a frozen parameter, clipping and a cosine
 *    schedule; SGD with momentum and clipping by value) leave parameters,
 *    losses and norms bitwise equal to the JIT's optimizer (optim_step) on
 *    the same model, on 1 and 2 threads;
 *  - a step program (T = 1, carried states) run token by token gives the
 *    states the forward program leaves after the whole sequence, within a
 *    tolerance (different T: different GEMM shapes);
 *  - the size of a workspace is A + S·nthreads, and every misuse gives its
 *    status and exact message: a bad ABI, a missing program, a workspace too
 *    small (the byte counts), unaligned or NULL, the wrong program, a token
 *    id or target out of range (the JIT's message), an unknown frozen name,
 *    a bad config, a non-finite loss or gradient (nothing changes);
 *  - librnnc_rt.a defines only rnnc_-prefixed symbols and needs only libc,
 *    libm and libgomp (nm).
 */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../compiler/compile.h"
#include "testutil.h"

/* ---- a model, compiled for up to three programs, and its descriptor -------------- */

typedef struct Prog {
  CModel *cm;
  rnnc_aot_prog p;
  rnnc_aot_tensor *t;
  rnnc_aot_check *ch;
} Prog;

typedef struct Fix {
  Module *m;
  Model *md;
  Prog prog[RNNC_AOT_NPROG];
  rnnc_aot_param *param;
  float *params;         /* the descriptor's parameter buffer, param_floats */
  rnnc_aot_model model;
  Jit *ojit;             /* the optimizer's kernels */
  OptKernels ok;
} Fix;

static void *xcalloc(size_t n, size_t s)
{
  void *p = calloc(n ? n : 1, s);
  cr_assert_not_null(p);
  return p;
}

/* Fill prog's descriptor from its CModel (param: the model's table). */
static void describe(Fix *f, Prog *g, int which)
{
  CModel *cm = g->cm;
  int nt = cmodel_ntensor(cm);
  g->t = xcalloc((size_t)nt, sizeof *g->t);
  int nio = 0;
  for (int pass = 0; pass < 2; pass++) /* inputs, then outputs */
    for (int k = 0; k < nt; k++)
      if (cm->t[k].role == (pass ? CT_OUTPUT : CT_INPUT))
        g->t[k].io = nio++;
  for (int k = 0; k < nt; k++) {
    const CTensor *x = &cm->t[k];
    cr_assert_eq(x->slot, SLOT_TENSOR0 + k);
    rnnc_aot_tensor *t = &g->t[k];
    t->name = x->name;
    t->role = x->role; /* CT_* are RNNC_AOT_* */
    t->dtype = x->dtype == DT_I32 ? RNNC_I32 : RNNC_F32;
    t->rank = x->rank;
    memcpy(t->dim, x->dim, sizeof t->dim);
    t->numel = x->numel;
    t->param = -1;
    if (x->role != CT_INPUT && x->role != CT_OUTPUT)
      t->io = -1;
    const char *pn = x->role == CT_PARAM ? x->name : x->role == CT_GRAD ? x->name + 5 : NULL;
    for (int64_t i = 0; pn && i < f->model.nparam; i++)
      if (strcmp(f->param[i].name, pn) == 0)
        t->param = i;
    if (x->role == CT_PARAM)
      cr_assert_geq(t->param, 0, "parameter '%s' not in the table", x->name);
  }
  g->ch = xcalloc((size_t)cm->ncheck, sizeof *g->ch);
  for (int c = 0; c < cm->ncheck; c++) {
    const Check *k = &cm->check[c];
    g->ch[c] = (rnnc_aot_check){.tensor = k->tensor, .bound = k->bound, .target = k->target,
                                .hasignore = k->hasignore, .ignore = k->ignore, .hastime = k->hastime, .B = k->B};
  }
  static const char *const name[] = {"forward", "step", "train"};
  g->p = (rnnc_aot_prog){.name = name[which], .B = 0, .T = 0, .carry = cm->carry, .nop = cm->plan.nop,
                         .op = cm->plan.op, .fn = cm->fn, .ntensor = nt, .tensor = g->t,
                         .ncheck = cm->ncheck, .check = g->ch, .nio = nio, .loss = -1,
                         .ws_floats = (int64_t)cm->wsfloats, .tws_floats = (int64_t)cm->twsfloats,
                         .scratch_floats = (int64_t)cm->plan.scratch};
  if (which == RNNC_AOT_TRAIN) {
    g->p.nbop = cm->bplan.nop;
    g->p.bop = cm->bplan.op;
    g->p.bfn = cm->bfn;
    const CTensor *lt = cmodel_find(cm, f->md->node[f->md->loss].name);
    cr_assert_not_null(lt);
    g->p.loss = lt - cm->t;
  }
  f->model.prog[which] = &g->p;
}

/* Copy the descriptor's parameters into every CModel's. */
static void sync_params(Fix *f)
{
  for (int w = 0; w < RNNC_AOT_NPROG; w++)
    for (int k = 0; f->prog[w].cm && k < cmodel_ntensor(f->prog[w].cm); k++) {
      CTensor *x = &f->prog[w].cm->t[k];
      for (int64_t i = 0; x->role == CT_PARAM && i < f->model.nparam; i++)
        if (strcmp(f->param[i].name, x->name) == 0)
          memcpy(x->data, f->params + f->param[i].offset, (size_t)x->numel * sizeof(float));
    }
}

/* The model of path with dims; its programs: forward (dims, carried;
 * unless train is 2), train (dims, with gradients, carried; train 1 or 2)
 * and step (stepdims, carried) where asked. Parameters from init_params
 * (seed 7) in the descriptor's buffer and in every CModel. */
static void fix_new(Fix *f, const char *path, const char *dims, const char *stepdims, int train)
{
  char err[512] = "";
  memset(f, 0, sizeof *f);
  char *text = read_file(srcpath(path));
  cr_assert_not_null(text);
  f->m = module_new();
  const Source *src = source_new(f->m, path, text);
  free(text);
  cr_assert_eq(pipeline(f->m, src, PASS_SCHEDULE, NULL), RNNC_OK, "%s does not compile", path);
  f->md = model_find(f->m, NULL);
  cr_assert_not_null(f->md);
  const char *pdims[RNNC_AOT_NPROG] = {train == 2 ? NULL : dims, stepdims, train ? dims : NULL};
  for (int w = 0; w < RNNC_AOT_NPROG; w++) {
    if (!pdims[w])
      continue;
    Env env = {0};
    env_parse(f->m, pdims[w], &env);
    CompileOpts co = {.grad = w == RNNC_AOT_TRAIN, .carry = 1};
    int st = cmodel_compile(f->m, f->md, &env, &co, &f->prog[w].cm, err, sizeof err);
    cr_assert_eq(st, RNNC_OK, "%s: cmodel_compile: %s", path, err);
    if (!f->param) { /* the parameter table, from the first */
      TensorSet ps;
      tset_init(&ps);
      cr_assert_eq(init_params(f->md, &env, 7, &ps, err, sizeof err), RNNC_OK, "%s", err);
      CModel *cm = f->prog[w].cm;
      f->param = xcalloc((size_t)cmodel_ntensor(cm), sizeof *f->param);
      int64_t off = 0;
      for (int k = 0; k < cmodel_ntensor(cm); k++) {
        const CTensor *x = &cm->t[k];
        if (x->role != CT_PARAM)
          continue;
        rnnc_aot_param *q = &f->param[f->model.nparam++];
        *q = (rnnc_aot_param){.name = x->name, .rank = x->rank, .numel = x->numel, .offset = off};
        memcpy(q->dim, x->dim, sizeof q->dim);
        off += (x->numel + 15) / 16 * 16;
      }
      f->model.param_floats = off;
      f->params = aligned_alloc(64, (size_t)(off ? off : 16) * sizeof(float));
      memset(f->params, 0, (size_t)(off ? off : 16) * sizeof(float));
      for (int64_t i = 0; i < f->model.nparam; i++) {
        const Tensor *t = tset_find(&ps, f->param[i].name);
        cr_assert_not_null(t);
        memcpy(f->params + f->param[i].offset, t->data, (size_t)f->param[i].numel * sizeof(float));
      }
      tset_clear(&ps);
    }
  }
  sync_params(f);
  f->model.abi = RNNC_AOT_ABI;
  f->model.name = f->md->name;
  f->model.cpu = "native (the JIT's)";
  f->model.param = f->param;
  for (int w = 0; w < RNNC_AOT_NPROG; w++)
    if (f->prog[w].cm)
      describe(f, &f->prog[w], w);
  if (train) {
    cr_assert_eq(optgen_jit(&f->ojit, &f->ok, err, sizeof err), RNNC_OK, "%s", err);
    f->model.opt_sumsq = f->ok.sumsq;
    f->model.opt_sgd = f->ok.sgd;
    f->model.opt_adam = f->ok.adam;
  }
}

static void fix_free(Fix *f)
{
  for (int w = 0; w < RNNC_AOT_NPROG; w++) {
    cmodel_free(f->prog[w].cm);
    free(f->prog[w].t);
    free(f->prog[w].ch);
  }
  jit_free(f->ojit);
  free(f->param);
  free(f->params);
  module_free(f->m);
}

/* A zeroed workspace of program w for nthreads (aligned_alloc'ed). */
static void *ws_new(Fix *f, int w, int nthreads)
{
  size_t n = rnnc_aot_ws_bytes(&f->model, w, nthreads);
  cr_assert_gt(n, 0);
  void *ws = aligned_alloc(64, (n + 63) / 64 * 64);
  cr_assert_not_null(ws);
  int st = rnnc_aot_init(&f->model, w, ws, n, nthreads);
  cr_assert_eq(st, RNNC_OK, "rnnc_aot_init: %s", rnnc_aot_message(NULL));
  cr_assert_str_eq(rnnc_aot_message(ws), "");
  return ws;
}

/* Inputs for program w's CModel: token ids and targets uniform in their
 * check's bound (seeded), float inputs in [-1, 1). */
static void set_inputs(Fix *f, int w, unsigned seed)
{
  CModel *cm = f->prog[w].cm;
  srand(seed);
  for (int k = 0; k < cmodel_ntensor(cm); k++) {
    CTensor *x = &cm->t[k];
    if (x->role != CT_INPUT)
      continue;
    int64_t bound = 0;
    for (int c = 0; c < cm->ncheck; c++)
      if (cm->check[c].tensor == k && (bound == 0 || cm->check[c].bound < bound))
        bound = cm->check[c].bound;
    for (int64_t e = 0; e < x->numel; e++) {
      if (x->dtype == DT_I32)
        ((int32_t *)x->data)[e] = (int32_t)(rand() % bound);
      else
        ((float *)x->data)[e] = (float)rand() / (float)RAND_MAX * 2 - 1;
    }
  }
}

/* The io array of program w: inputs from the CModel's tensors; outputs in
 * out[] (allocated here, numel each) unless nullout, then NULL. */
static void make_io(Fix *f, int w, void **io, float **out, int nullout)
{
  const Prog *g = &f->prog[w];
  for (int64_t k = 0; k < g->p.ntensor; k++) {
    const rnnc_aot_tensor *t = &g->t[k];
    if (t->role == RNNC_AOT_INPUT)
      io[t->io] = g->cm->t[k].data;
    if (t->role == RNNC_AOT_OUTPUT) {
      out[t->io] = nullout ? NULL : xcalloc((size_t)t->numel, sizeof(float));
      io[t->io] = out[t->io];
    }
  }
}

/* Tensor k of program w as the runtime left it: its io entry or its area. */
static const void *aot_data(Fix *f, int w, void *ws, void *const *io, int64_t k)
{
  const rnnc_aot_tensor *t = &f->prog[w].t[k];
  if (t->io >= 0 && io && io[t->io])
    return io[t->io];
  if (t->role == RNNC_AOT_GRAD && t->param >= 0)
    return rnnc_aot_grads(&f->model, ws) + f->param[t->param].offset;
  const void *p = rnnc_aot_area(&f->model, ws, t->name);
  cr_assert_not_null(p, "no area for '%s'", t->name);
  return p;
}

/* Every tensor of roles (bit per role) of program w: the runtime's equals
 * the CModel's bitwise. */
static void same(Fix *f, int w, void *ws, void *const *io, unsigned roles, const char *what)
{
  CModel *cm = f->prog[w].cm;
  int n = 0;
  for (int64_t k = 0; k < f->prog[w].p.ntensor; k++) {
    const CTensor *x = &cm->t[k];
    if (!(roles >> x->role & 1))
      continue;
    const void *a = aot_data(f, w, ws, io, k);
    cr_assert(memcmp(a, x->data, (size_t)x->numel * 4) == 0, "%s: '%s' differs (%g vs %g first)", what, x->name,
              (double)((const float *)a)[0], (double)((const float *)x->data)[0]);
    n++;
  }
  cr_assert_gt(n, 0, "%s: nothing compared", what);
}

#define ROLE(r) (1u << (r))

static const char *LM = "tests/models/lstm_lm.rnn";
static const char *LMDIMS = "T=6 B=4 V=11 E=32 H=40"; /* W_ih 160x32: 2 optimizer chunks */

/* ---- forward ---------------------------------------------------------------------------------- */

Test(aot_rt, forward_carries_states_like_the_jit)
{
  Fix f;
  fix_new(&f, LM, LMDIMS, NULL, 0);
  set_inputs(&f, RNNC_AOT_FORWARD, 1);
  for (int nth = 1; nth <= 2; nth++) {
    cmodel_reset_state(f.prog[0].cm);
    void *ws = ws_new(&f, RNNC_AOT_FORWARD, nth);
    void *io[8] = {0};
    float *out[8] = {0};
    make_io(&f, RNNC_AOT_FORWARD, io, out, nth == 2); /* 2 threads: outputs in the workspace */
    char err[256];
    for (int run = 0; run < 3; run++) {
      if (run == 2) { /* the states start from zero again */
        rnnc_aot_reset(&f.model, ws);
        cmodel_reset_state(f.prog[0].cm);
      }
      cr_assert_eq(cmodel_run(f.prog[0].cm, 0, 2, err, sizeof err), RNNC_OK, "%s", err);
      cr_assert_eq(rnnc_aot_run(&f.model, RNNC_AOT_FORWARD, ws, f.params, io), RNNC_OK, "%s", rnnc_aot_message(ws));
      same(&f, RNNC_AOT_FORWARD, ws, io, ROLE(CT_OUTPUT) | ROLE(CT_STATE), "forward");
    }
    for (int i = 0; i < 8; i++)
      free(out[i]);
    free(ws);
  }
  fix_free(&f);
}

/* The step program (T = 1) fed the sequence token by token carries the
 * states to where one forward run over it leaves them. */
Test(aot_rt, step_by_step_reaches_the_forward_states)
{
  Fix f;
  fix_new(&f, LM, LMDIMS, "T=1 B=4 V=11 E=32 H=40", 0);
  set_inputs(&f, RNNC_AOT_FORWARD, 3);
  void *fw = ws_new(&f, RNNC_AOT_FORWARD, 2), *sw = ws_new(&f, RNNC_AOT_STEP, 2);
  void *fio[8] = {0}, *sio[8] = {0};
  float *fout[8] = {0}, *sout[8] = {0};
  make_io(&f, RNNC_AOT_FORWARD, fio, fout, 1);
  make_io(&f, RNNC_AOT_STEP, sio, sout, 1);
  cr_assert_eq(rnnc_aot_run(&f.model, RNNC_AOT_FORWARD, fw, f.params, fio), RNNC_OK, "%s", rnnc_aot_message(fw));
  const CTensor *tok = cmodel_find(f.prog[0].cm, "tokens"), *tgt = cmodel_find(f.prog[0].cm, "targets");
  cr_assert(tok && tgt);
  int64_t B = 4;
  for (int t = 0; t < 6; t++) {
    sio[f.prog[1].t[cmodel_find(f.prog[1].cm, "tokens") - f.prog[1].cm->t].io] = (int32_t *)tok->data + t * B;
    sio[f.prog[1].t[cmodel_find(f.prog[1].cm, "targets") - f.prog[1].cm->t].io] = (int32_t *)tgt->data + t * B;
    cr_assert_eq(rnnc_aot_run(&f.model, RNNC_AOT_STEP, sw, f.params, sio), RNNC_OK, "%s", rnnc_aot_message(sw));
  }
  const char *names[] = {"state.h.h", "state.h.c", "h_T", "c_T"};
  for (int i = 0; i < 4; i++) {
    const float *a = rnnc_aot_area(&f.model, fw, names[i]), *b = rnnc_aot_area(&f.model, sw, names[i]);
    cr_assert(a && b, "no '%s'", names[i]);
    double d = 0, mx = 0;
    for (int e = 0; e < 4 * 40; e++) {
      d = fmax(d, fabs((double)a[e] - b[e]));
      mx = fmax(mx, fabs((double)a[e]));
    }
    cr_assert(mx > 0.01 && d <= 1e-5 * mx, "'%s': step by step differs by %g (max %g)", names[i], d, mx);
  }
  free(fw);
  free(sw);
  fix_free(&f);
}

/* ---- backward and training ------------------------------------------------------------------- */

Test(aot_rt, backward_gives_the_jits_gradients)
{
  Fix f;
  fix_new(&f, LM, LMDIMS, NULL, 2);
  set_inputs(&f, RNNC_AOT_TRAIN, 2);
  for (int nth = 1; nth <= 2; nth++) {
    cmodel_reset_state(f.prog[2].cm);
    void *ws = ws_new(&f, RNNC_AOT_TRAIN, nth);
    void *io[8] = {0};
    float *out[8] = {0};
    make_io(&f, RNNC_AOT_TRAIN, io, out, nth == 1);
    char err[256];
    for (int run = 0; run < 2; run++) {
      cr_assert_eq(cmodel_run(f.prog[2].cm, 1, 2, err, sizeof err), RNNC_OK, "%s", err);
      cr_assert_eq(rnnc_aot_backward(&f.model, ws, f.params, io), RNNC_OK, "%s", rnnc_aot_message(ws));
      same(&f, RNNC_AOT_TRAIN, ws, io, ROLE(CT_OUTPUT) | ROLE(CT_GRAD) | ROLE(CT_STATE), "backward");
    }
    /* a parameter's gradient by name is its place in the gradient buffer */
    int64_t i = 0;
    while (i < f.model.nparam && strcmp(f.param[i].name, "h.W_hh") != 0)
      i++;
    cr_assert_lt(i, f.model.nparam);
    cr_assert_eq(rnnc_aot_area(&f.model, ws, "grad.h.W_hh"), rnnc_aot_grads(&f.model, ws) + f.param[i].offset);
    cr_assert_null(rnnc_aot_area(&f.model, ws, "h.W_hh"));
    cr_assert_null(rnnc_aot_area(&f.model, ws, "nothing"));
    for (int i = 0; i < 8; i++)
      free(out[i]);
    free(ws);
  }
  fix_free(&f);
}

/* The JIT's training step on f's train CModel: cmodel_run with gradients,
 * the loss check, optim_step (as rnnc_train_step). */
static int jit_step(Fix *f, Optim *o, float *loss, double *gnorm, int *bad)
{
  CModel *cm = f->prog[2].cm;
  char err[256];
  cr_assert_eq(cmodel_run(cm, 1, 2, err, sizeof err), RNNC_OK, "%s", err);
  *loss = *(const float *)cm->t[f->prog[2].p.loss].data;
  *bad = -1;
  if (!isfinite(*loss))
    return RNNC_EINPUT;
  return optim_step(o, 2, gnorm, bad, err, sizeof err);
}

/* An Optim over the train CModel's parameters (frozen as named). */
static Optim *jit_optim(Fix *f, const rnnc_optim_config *c, int nfrozen, const char *const *frozen)
{
  CModel *cm = f->prog[2].cm;
  OptParam p[16];
  int np = 0;
  for (int k = 0; k < cmodel_ntensor(cm); k++) {
    const CTensor *x = &cm->t[k];
    if (x->role != CT_PARAM)
      continue;
    char gname[256];
    snprintf(gname, sizeof gname, "grad.%s", x->name);
    const CTensor *g = cmodel_find(cm, gname);
    cr_assert_not_null(g);
    int fz = 0;
    for (int i = 0; i < nfrozen; i++)
      fz |= strcmp(frozen[i], x->name) == 0;
    cr_assert_lt(np, 16);
    p[np++] = (OptParam){.name = x->name, .w = x->data, .g = g->data, .numel = x->numel, .frozen = fz};
  }
  OptConfig oc = rnnc_opt_config(c);
  Optim *o = NULL;
  char err[256];
  cr_assert_eq(optim_new(&oc, p, np, &o, err, sizeof err), RNNC_OK, "%s", err);
  return o;
}

/* Parameters of the descriptor's buffer equal the train CModel's bitwise. */
static void same_params(Fix *f, const char *what, int step)
{
  CModel *cm = f->prog[2].cm;
  for (int64_t i = 0; i < f->model.nparam; i++) {
    const CTensor *x = cmodel_find(cm, f->param[i].name);
    cr_assert(memcmp(f->params + f->param[i].offset, x->data, (size_t)x->numel * 4) == 0,
              "%s, step %d: '%s' differs", what, step, x->name);
  }
}

/* 5 steps of the JIT's optimizer and of the runtime's on 1, then 2
 * threads, from the same start: bitwise the same. */
static void train_case(const rnnc_optim_config *c, int nfrozen, const char *const *frozen, const char *what)
{
  Fix f;
  fix_new(&f, LM, LMDIMS, NULL, 2);
  set_inputs(&f, RNNC_AOT_TRAIN, 5);
  size_t pb = (size_t)f.model.param_floats * sizeof(float);
  float *p0 = malloc(pb);
  memcpy(p0, f.params, pb);
  size_t nopt = rnnc_aot_opt_floats(&f.model);
  cr_assert_eq(nopt, 2 * (size_t)f.model.param_floats);
  for (int nth = 1; nth <= 2; nth++) {
    memcpy(f.params, p0, pb); /* the same start */
    sync_params(&f);
    cmodel_reset_state(f.prog[2].cm);
    Optim *o = jit_optim(&f, c, nfrozen, frozen);
    void *ws = ws_new(&f, RNNC_AOT_TRAIN, nth);
    cr_assert_eq(rnnc_aot_train_init(&f.model, ws, c, nfrozen, frozen), RNNC_OK, "%s", rnnc_aot_message(ws));
    float *opt = xcalloc(nopt, sizeof(float));
    void *io[8] = {0};
    float *out[8] = {0};
    make_io(&f, RNNC_AOT_TRAIN, io, out, nth == 2);
    for (int s = 0; s < 5; s++) {
      float jl, al;
      double jn = 0, an = 0;
      int bad;
      cr_assert_eq(jit_step(&f, o, &jl, &jn, &bad), RNNC_OK);
      int st = rnnc_aot_train_step(&f.model, ws, f.params, opt, s, io, &al, &an);
      cr_assert_eq(st, RNNC_OK, "%s: %s", what, rnnc_aot_message(ws));
      cr_assert(memcmp(&jl, &al, sizeof jl) == 0, "%s, step %d: loss %.9g vs %.9g", what, s, jl, al);
      cr_assert(memcmp(&jn, &an, sizeof jn) == 0, "%s, step %d: gnorm %.17g vs %.17g", what, s, jn, an);
      cr_assert(jn > 0 && isfinite(jn));
      same_params(&f, what, s);
    }
    /* frozen parameters kept their values, the others did not */
    for (int64_t i = 0; i < f.model.nparam; i++) {
      int fz = 0;
      for (int k = 0; k < nfrozen; k++)
        fz |= strcmp(frozen[k], f.param[i].name) == 0;
      size_t n = (size_t)f.param[i].numel * sizeof(float);
      int kept = memcmp(p0 + f.param[i].offset, f.params + f.param[i].offset, n) == 0;
      cr_assert_eq(kept, fz, "%s: '%s' %s", what, f.param[i].name, fz ? "changed, frozen" : "did not change");
    }
    free(opt);
    for (int i = 0; i < 8; i++)
      free(out[i]);
    free(ws);
    optim_free(o);
  }
  free(p0);
  fix_free(&f);
}

Test(aot_rt, adam_steps_equal_the_jits)
{
  rnnc_optim_config c;
  rnnc_optim_defaults(&c, RNNC_ADAMW);
  c.lr = 0.01;
  c.clip_norm = 0.5;
  c.schedule = RNNC_LR_COSINE;
  c.warmup = 2;
  c.total = 10;
  c.min_lr = 0.001;
  const char *frozen[] = {"x.weight"};
  train_case(&c, 1, frozen, "adamw");
}

Test(aot_rt, sgd_steps_equal_the_jits)
{
  rnnc_optim_config c;
  rnnc_optim_defaults(&c, RNNC_SGD);
  c.momentum = 0.9;
  c.clip_value = 0.01;
  c.weight_decay = 1e-3;
  train_case(&c, 0, NULL, "sgd");
}

/* ---- sizes and misuse ------------------------------------------------------------------------- */

Test(aot_rt, workspace_size_is_affine_in_threads)
{
  Fix f;
  fix_new(&f, LM, LMDIMS, NULL, 1);
  for (int w = 0; w < RNNC_AOT_NPROG; w++) {
    if (!f.model.prog[w]) {
      cr_assert_eq(rnnc_aot_ws_bytes(&f.model, w, 1), 0);
      continue;
    }
    size_t a = rnnc_aot_ws_bytes(&f.model, w, 0), b = rnnc_aot_ws_bytes(&f.model, w, 1);
    size_t s = b - a;
    cr_assert(a > 0 && s > 0 && s % 64 == 0 && a % 64 == 0, "A %zu, S %zu", a, s);
    for (int n = 2; n <= 5; n++)
      cr_assert_eq(rnnc_aot_ws_bytes(&f.model, w, n), a + s * (size_t)n);
    /* what the JIT allocates, at least */
    const CModel *cm = f.prog[w].cm;
    cr_assert_geq(a, (cm->wsfloats + cm->twsfloats) * 4);
    cr_assert_eq(s, (cm->plan.scratch + 15) / 16 * 16 * 4);
  }
  cr_assert_eq(rnnc_aot_ws_bytes(&f.model, 7, 1), 0);
  cr_assert_eq(rnnc_aot_ws_bytes(NULL, 0, 1), 0);
  fix_free(&f);
}

Test(aot_rt, init_misuse_messages)
{
  Fix f;
  fix_new(&f, LM, LMDIMS, NULL, 0);
  size_t need = rnnc_aot_ws_bytes(&f.model, RNNC_AOT_FORWARD, 2);
  char *ws = aligned_alloc(64, need + 64);
  rnnc_aot_model bad = f.model;
  bad.abi = RNNC_AOT_ABI + 1;
  cr_assert_eq(rnnc_aot_init(&bad, RNNC_AOT_FORWARD, ws, need, 2), RNNC_EMISUSE);
  cr_assert_str_eq(rnnc_aot_message(NULL), "model 'lstm_lm' was compiled for AOT ABI 2, this runtime is ABI 1");
  cr_assert_eq(rnnc_aot_init(&f.model, RNNC_AOT_TRAIN, ws, need, 2), RNNC_EMISUSE);
  cr_assert_str_eq(rnnc_aot_message(NULL),
                   "model 'lstm_lm' was compiled without program 'train' (rnnc compile --train)");
  cr_assert_eq(rnnc_aot_init(&f.model, RNNC_AOT_STEP, ws, need, 2), RNNC_EMISUSE);
  cr_assert_str_eq(rnnc_aot_message(NULL), "model 'lstm_lm' was compiled without program 'step'");
  cr_assert_eq(rnnc_aot_init(&f.model, 3, ws, need, 2), RNNC_EMISUSE);
  cr_assert_str_eq(rnnc_aot_message(NULL), "rnnc_aot_init: no program 3 (RNNC_AOT_FORWARD, _STEP or _TRAIN)");
  cr_assert_eq(rnnc_aot_init(&f.model, RNNC_AOT_FORWARD, NULL, need, 2), RNNC_EMISUSE);
  cr_assert_str_eq(rnnc_aot_message(NULL), "rnnc_aot_init: the workspace is NULL");
  cr_assert_eq(rnnc_aot_init(&f.model, RNNC_AOT_FORWARD, ws + 16, need, 2), RNNC_EMISUSE);
  cr_assert_str_eq(rnnc_aot_message(NULL), "rnnc_aot_init: the workspace is not 64-byte aligned");
  cr_assert_eq(rnnc_aot_init(&f.model, RNNC_AOT_FORWARD, ws, need - 1, 2), RNNC_EMISUSE);
  char want[128];
  snprintf(want, sizeof want, "workspace of %zu bytes; program 'forward' with 2 threads needs %zu", need - 1, need);
  cr_assert_str_eq(rnnc_aot_message(NULL), want);
  size_t need1 = rnnc_aot_ws_bytes(&f.model, RNNC_AOT_FORWARD, 1);
  cr_assert_eq(rnnc_aot_init(&f.model, RNNC_AOT_FORWARD, ws, 1000, 1), RNNC_EMISUSE);
  snprintf(want, sizeof want, "workspace of 1000 bytes; program 'forward' with 1 thread needs %zu", need1);
  cr_assert_str_eq(rnnc_aot_message(NULL), want);
  /* a failed init leaves no workspace: its message is the thread's */
  cr_assert_str_eq(rnnc_aot_message(ws), want);
  /* exactly enough is enough, and a success clears the thread's message */
  memset(ws, 0xff, need);
  cr_assert_eq(rnnc_aot_init(&f.model, RNNC_AOT_FORWARD, ws, need, 2), RNNC_OK);
  cr_assert_str_eq(rnnc_aot_message(NULL), "");
  /* ... and zeroes the workspace after its header */
  for (size_t i = 512; i < need; i++)
    cr_assert_eq(ws[i], 0, "byte %zu", i);
  /* a workspace of another model, or none */
  rnnc_aot_model other = f.model;
  other.name = "other";
  cr_assert_eq(rnnc_aot_run(&other, RNNC_AOT_FORWARD, ws, f.params, NULL), RNNC_EMISUSE);
  cr_assert_str_eq(rnnc_aot_message(ws), "rnnc_aot_run: the workspace was made for model 'lstm_lm', not 'other'");
  char junk[256] __attribute__((aligned(64))) = {0};
  cr_assert_eq(rnnc_aot_run(&f.model, RNNC_AOT_FORWARD, junk, f.params, NULL), RNNC_EMISUSE);
  cr_assert_str_eq(rnnc_aot_message(NULL), "rnnc_aot_run: not a workspace (rnnc_aot_init makes one)");
  cr_assert_eq(rnnc_aot_run(&f.model, RNNC_AOT_FORWARD, NULL, f.params, NULL), RNNC_EMISUSE);
  cr_assert_str_eq(rnnc_aot_message(NULL), "rnnc_aot_run: the workspace is NULL");
  cr_assert_eq(rnnc_aot_run(&f.model, RNNC_AOT_FORWARD, ws, NULL, NULL), RNNC_EMISUSE);
  cr_assert_str_eq(rnnc_aot_message(ws), "rnnc_aot_run: params is NULL");
  /* the wrong program */
  cr_assert_eq(rnnc_aot_run(&f.model, RNNC_AOT_STEP, ws, f.params, NULL), RNNC_EMISUSE);
  cr_assert_str_eq(rnnc_aot_message(ws), "rnnc_aot_run: the workspace was made for program 'forward', not 'step'");
  cr_assert_eq(rnnc_aot_run(&f.model, 7, ws, f.params, NULL), RNNC_EMISUSE);
  cr_assert_str_eq(rnnc_aot_message(ws), "rnnc_aot_run: no program 7 (RNNC_AOT_FORWARD, _STEP or _TRAIN)");
  cr_assert_eq(rnnc_aot_backward(&f.model, ws, f.params, NULL), RNNC_EMISUSE);
  cr_assert_str_eq(rnnc_aot_message(ws), "rnnc_aot_backward: the workspace was made for program 'forward', not 'train'");
  cr_assert_null(rnnc_aot_grads(&f.model, ws));
  rnnc_optim_config c;
  rnnc_optim_defaults(&c, RNNC_SGD);
  cr_assert_eq(rnnc_aot_train_init(&f.model, ws, &c, 0, NULL), RNNC_EMISUSE);
  cr_assert_str_eq(rnnc_aot_message(ws),
                   "rnnc_aot_train_init: the workspace was made for program 'forward', not 'train'");
  /* a success clears the workspace's message */
  set_inputs(&f, RNNC_AOT_FORWARD, 1);
  void *io[8] = {0};
  float *out[8] = {0};
  make_io(&f, RNNC_AOT_FORWARD, io, out, 1);
  cr_assert_eq(rnnc_aot_run(&f.model, RNNC_AOT_FORWARD, ws, f.params, io), RNNC_OK);
  cr_assert_str_eq(rnnc_aot_message(ws), "");
  free(ws);
  fix_free(&f);
}

/* Token ids and targets out of range: the JIT's message, and the run does
 * not happen (the outputs keep their values). */
Test(aot_rt, inputs_out_of_range)
{
  Fix f;
  fix_new(&f, LM, LMDIMS, NULL, 0);
  set_inputs(&f, RNNC_AOT_FORWARD, 1);
  CModel *cm = f.prog[0].cm;
  void *ws = ws_new(&f, RNNC_AOT_FORWARD, 2);
  void *io[8] = {0};
  float *out[8] = {0};
  make_io(&f, RNNC_AOT_FORWARD, io, out, 1);
  int32_t *tok = cmodel_find(cm, "tokens")->data, *tgt = cmodel_find(cm, "targets")->data;
  char err[256];
  int32_t keep = tok[3 * 4 + 1];
  tok[3 * 4 + 1] = 70;
  cr_assert_eq(rnnc_aot_run(&f.model, RNNC_AOT_FORWARD, ws, f.params, io), RNNC_EINPUT);
  cr_assert_str_eq(rnnc_aot_message(ws), "input 'tokens' has token id 70 at [3, 1], outside [0, 11)");
  cr_assert_eq(cmodel_run(cm, 0, 1, err, sizeof err), RNNC_EINPUT);
  cr_assert_str_eq(err, rnnc_aot_message(ws));
  const float *loss = rnnc_aot_area(&f.model, ws, "loss");
  cr_assert_not_null(loss);
  cr_assert_eq(*loss, 0.0f, "the run happened");
  tok[3 * 4 + 1] = keep;
  tgt[5 * 4 + 3] = -1;
  cr_assert_eq(rnnc_aot_run(&f.model, RNNC_AOT_FORWARD, ws, f.params, io), RNNC_EINPUT);
  cr_assert_str_eq(rnnc_aot_message(ws), "input 'targets' has target -1 at [5, 3], outside [0, 11)");
  cr_assert_eq(cmodel_run(cm, 0, 1, err, sizeof err), RNNC_EINPUT);
  cr_assert_str_eq(err, rnnc_aot_message(ws));
  tgt[5 * 4 + 3] = 0;
  cr_assert_eq(rnnc_aot_run(&f.model, RNNC_AOT_FORWARD, ws, f.params, io), RNNC_OK);
  cr_assert(*loss > 0);
  free(ws);
  fix_free(&f);
}

Test(aot_rt, train_misuse_messages)
{
  Fix f;
  fix_new(&f, LM, LMDIMS, NULL, 2);
  set_inputs(&f, RNNC_AOT_TRAIN, 1);
  void *ws = ws_new(&f, RNNC_AOT_TRAIN, 2);
  float *opt = xcalloc(rnnc_aot_opt_floats(&f.model), sizeof(float));
  void *io[8] = {0};
  float *out[8] = {0};
  make_io(&f, RNNC_AOT_TRAIN, io, out, 1);
  cr_assert_eq(rnnc_aot_train_step(&f.model, ws, f.params, opt, 0, io, NULL, NULL), RNNC_EMISUSE);
  cr_assert_str_eq(rnnc_aot_message(ws),
                   "rnnc_aot_train_step: the workspace has no optimizer (rnnc_aot_train_init)");
  rnnc_optim_config c;
  rnnc_optim_defaults(&c, RNNC_ADAM);
  const char *frozen[] = {"x.weight", "h.nope"};
  cr_assert_eq(rnnc_aot_train_init(&f.model, ws, &c, 2, frozen), RNNC_EINPUT);
  cr_assert_str_eq(rnnc_aot_message(ws), "cannot freeze 'h.nope': model 'lstm_lm' has no such parameter");
  c.lr = -1;
  cr_assert_eq(rnnc_aot_train_init(&f.model, ws, &c, 0, NULL), RNNC_EINPUT);
  cr_assert_str_eq(rnnc_aot_message(ws), "learning rate must be > 0, got -1");
  rnnc_optim_defaults(&c, RNNC_ADAM);
  c.kind = 7;
  cr_assert_eq(rnnc_aot_train_init(&f.model, ws, &c, 0, NULL), RNNC_EINPUT);
  cr_assert_str_eq(rnnc_aot_message(ws), "unknown optimizer kind 7");
  rnnc_optim_defaults(&c, RNNC_ADAM);
  c.schedule = RNNC_LR_COSINE;
  c.total = 0;
  cr_assert_eq(rnnc_aot_train_init(&f.model, ws, &c, 0, NULL), RNNC_EINPUT);
  cr_assert_str_eq(rnnc_aot_message(ws), "cosine schedule needs total steps > warmup (0), got 0");
  cr_assert_eq(rnnc_aot_train_init(&f.model, ws, NULL, 0, NULL), RNNC_EMISUSE);
  cr_assert_str_eq(rnnc_aot_message(ws), "rnnc_aot_train_init: the config is NULL");
  rnnc_optim_defaults(&c, RNNC_ADAM);
  rnnc_aot_model nokern = f.model;
  nokern.opt_adam = NULL;
  cr_assert_eq(rnnc_aot_train_init(&nokern, ws, &c, 0, NULL), RNNC_EMISUSE);
  cr_assert_str_eq(rnnc_aot_message(ws),
                   "rnnc_aot_train_init: the workspace was made for another descriptor of model 'lstm_lm'");
  void *ws2 = aligned_alloc(64, rnnc_aot_ws_bytes(&nokern, RNNC_AOT_TRAIN, 1));
  cr_assert_eq(rnnc_aot_init(&nokern, RNNC_AOT_TRAIN, ws2, rnnc_aot_ws_bytes(&nokern, RNNC_AOT_TRAIN, 1), 1),
               RNNC_OK);
  cr_assert_eq(rnnc_aot_train_init(&nokern, ws2, &c, 0, NULL), RNNC_EMISUSE);
  cr_assert_str_eq(rnnc_aot_message(ws2), "model 'lstm_lm' has no optimizer kernels");
  free(ws2);
  /* failures left no optimizer behind */
  cr_assert_eq(rnnc_aot_train_step(&f.model, ws, f.params, opt, 0, io, NULL, NULL), RNNC_EMISUSE);
  rnnc_optim_defaults(&c, RNNC_ADAM);
  cr_assert_eq(rnnc_aot_train_init(&f.model, ws, &c, 0, NULL), RNNC_OK);
  cr_assert_str_eq(rnnc_aot_message(ws), "");
  cr_assert_eq(rnnc_aot_train_step(&f.model, ws, f.params, NULL, 0, io, NULL, NULL), RNNC_EMISUSE);
  cr_assert_str_eq(rnnc_aot_message(ws), "rnnc_aot_train_step: opt_state is NULL");
  cr_assert_eq(rnnc_aot_train_step(&f.model, ws, f.params, opt, -1, io, NULL, NULL), RNNC_EMISUSE);
  cr_assert_str_eq(rnnc_aot_message(ws), "rnnc_aot_train_step: step -1 < 0");
  float loss = 0;
  double gn = 0;
  cr_assert_eq(rnnc_aot_train_step(&f.model, ws, f.params, opt, 0, io, &loss, &gn), RNNC_OK);
  cr_assert(loss > 0 && gn > 0);
  /* a NaN weight: the loss is NaN, and nothing changes */
  size_t pb = (size_t)f.model.param_floats * 4, ob = rnnc_aot_opt_floats(&f.model) * 4;
  const rnnc_aot_param *bias = NULL;
  for (int64_t i = 0; i < f.model.nparam; i++)
    if (strcmp(f.param[i].name, "loss.bias") == 0)
      bias = &f.param[i];
  cr_assert_not_null(bias);
  f.params[bias->offset + 2] = NAN;
  float *p0 = malloc(pb), *o0 = malloc(ob);
  memcpy(p0, f.params, pb);
  memcpy(o0, opt, ob);
  cr_assert_eq(rnnc_aot_train_step(&f.model, ws, f.params, opt, 11, io, &loss, NULL), RNNC_EINPUT);
  cr_assert_str_eq(rnnc_aot_message(ws), "step 12: the loss is not finite (nan)");
  cr_assert(isnan(loss));
  cr_assert(memcmp(p0, f.params, pb) == 0 && memcmp(o0, opt, ob) == 0, "a failed step changed something");
  free(p0);
  free(o0);
  free(opt);
  free(ws);
  fix_free(&f);
}

/* A feature of FLT_MAX with zero weights: the loss (a sum of GRU outputs)
 * stays finite but the gradient of h.W_ih overflows. The step changes
 * nothing and says which parameter; the JIT's optimizer says the same. */
Test(aot_rt, non_finite_gradient)
{
  Fix f;
  fix_new(&f, "tests/models/sum_loss.rnn", "T=3 B=2 I=3 H=4", NULL, 2);
  CModel *cm = f.prog[2].cm;
  set_inputs(&f, RNNC_AOT_TRAIN, 1);
  float *x = cmodel_find(cm, "x")->data;
  for (int r = 0; r < 3 * 2; r++)
    x[r * 3] = 3e38f; /* feature 0 */
  const rnnc_aot_param *w = &f.param[0];
  cr_assert_str_eq(w->name, "h.W_ih");
  CTensor *jw = cmodel_find(cm, "h.W_ih");
  for (int r = 0; r < 12; r++)
    f.params[w->offset + r * 3] = ((float *)jw->data)[r * 3] = 0;
  void *ws = ws_new(&f, RNNC_AOT_TRAIN, 2);
  rnnc_optim_config c;
  rnnc_optim_defaults(&c, RNNC_SGD);
  cr_assert_eq(rnnc_aot_train_init(&f.model, ws, &c, 0, NULL), RNNC_OK);
  float *opt = xcalloc(rnnc_aot_opt_floats(&f.model), sizeof(float));
  void *io[8] = {0};
  float *out[8] = {0};
  make_io(&f, RNNC_AOT_TRAIN, io, out, 1);
  size_t pb = (size_t)f.model.param_floats * 4;
  float *p0 = malloc(pb);
  memcpy(p0, f.params, pb);
  float loss;
  double gn = 0;
  cr_assert_eq(rnnc_aot_train_step(&f.model, ws, f.params, opt, 0, io, &loss, &gn), RNNC_EINPUT);
  cr_assert_str_eq(rnnc_aot_message(ws), "step 1: the gradient of 'h.W_ih' is not finite");
  cr_assert(isfinite(loss) && !isfinite(gn), "loss %g, gnorm %g", loss, gn);
  cr_assert(memcmp(p0, f.params, pb) == 0, "a failed step changed the parameters");
  Optim *o = jit_optim(&f, &c, 0, NULL);
  float jl;
  double jn;
  int bad;
  cr_assert_eq(jit_step(&f, o, &jl, &jn, &bad), RNNC_EINPUT);
  cr_assert_eq(bad, 0);
  cr_assert(memcmp(&jl, &loss, sizeof jl) == 0);
  optim_free(o);
  free(p0);
  free(opt);
  free(ws);
  fix_free(&f);
}

/* ---- the library's symbols ---------------------------------------------------------------------- */

Test(aot_rt, runtime_library_needs_only_libc_libm_libgomp)
{
  char cmd[1024], *out = NULL;
  snprintf(cmd, sizeof cmd, "nm -A '%s'", RNNC_RT_LIB);
  cr_assert_eq(run_cmd(cmd, &out), 0, "%s", out ? out : "");
  void *libc = dlopen("libc.so.6", RTLD_NOW), *libm = dlopen("libm.so.6", RTLD_NOW);
  cr_assert(libc && libm);
  enum { MAXSYM = 4096 };
  static char type[MAXSYM];
  static const char *sym[MAXSYM];
  int n = 0;
  for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
    char *sp = strrchr(line, ' ');
    if (!sp || sp - line < 2 || sp[-2] != ' ')
      continue; /* not a symbol */
    cr_assert_lt(n, MAXSYM);
    type[n] = sp[-1];
    sym[n++] = sp + 1;
  }
  int ndef = 0, nundef = 0, aot = 0;
  for (int i = 0; i < n; i++) {
    const char *s = sym[i];
    cr_assert(strncmp(s, "LLVM", 4) != 0 && strncmp(s, "json_", 5) != 0, "librnnc_rt.a refers to %s", s);
    int san = strncmp(s, "__asan", 6) == 0 || strncmp(s, "__ubsan", 7) == 0 || strncmp(s, "__odr_asan", 10) == 0;
    if (type[i] == 'U') {
      nundef++;
      int ok = strncmp(s, "GOMP_", 5) == 0 || strncmp(s, "omp_", 4) == 0 || strcmp(s, "_GLOBAL_OFFSET_TABLE_") == 0 ||
               san || dlsym(libc, s) || dlsym(libm, s);
      for (int j = 0; j < n && !ok; j++) /* or the library's own */
        ok = type[j] == 'T' && strcmp(sym[j], s) == 0;
      cr_assert(ok, "librnnc_rt.a needs '%s', which is not in libc, libm, libgomp or itself", s);
    } else if (type[i] >= 'A' && type[i] <= 'Z' && type[i] != 'W' && type[i] != 'V') {
      ndef++;
      cr_assert(strncmp(s, "rnnc_", 5) == 0 || san,
                "librnnc_rt.a defines '%s', not rnnc_-prefixed: it could clash with a user's", s);
      aot += strncmp(s, "rnnc_aot_", 9) == 0;
    }
  }
  cr_assert_eq(aot, 11, "rnnc_aot_* defined: %d", aot);
  cr_assert_gt(nundef, 0);
  cr_assert_gt(ndef, 11);
  dlclose(libc);
  dlclose(libm);
  free(out);
}
