/* aot_rt.c — the runtime of models compiled ahead of time (rnnc_aot.h):
 * workspaces, runs of a program's plans, the training step.
 * require: a descriptor (rnnc_aot_model) that `rnnc compile` wrote into an
 * object, or one built in memory from a CModel (tests/test_aot_rt.c).
 * produce: the runs, in memory the caller gives; nothing allocates, prints
 * or exits, and there is no global state but a thread-local message for
 * rnnc_aot_init's failures.
 *
 * A workspace of program p for nthreads threads, every part 64-byte
 * aligned (layout() computes it; rnnc_aot_ws_bytes and rnnc_aot_init both
 * use it, and only the last part grows with the threads, so the size is
 * A + S·nthreads):
 *   Head          magic, the model, the program, nthreads, the optimizer's
 *                 config once rnnc_aot_train_init ran, the message
 *   slots         void *[2 + ntensor]: the plan's buffers (rnnc_kernel's buf)
 *   ws            ws_floats: the plan's workspace (zeroed at init)
 *   tws           tws_floats: the transient area
 *   areas         per tensor that is neither a parameter nor a parameter's
 *                 gradient, in tensor order: inputs, outputs, states,
 *                 gradients of float inputs
 *   (train)       the gradient buffer (param_floats, the parameters'
 *                 layout), the frozen flags, and the optimizer's tables:
 *                 OptParam [nparam], state pointers [nparam] x 2, cfirst
 *                 [nparam + 1], cstart and part [nchunk + 1]
 *   scratch       nthreads · per floats (per: scratch_floats rounded up to 16)
 *
 * Plain C, libm and OpenMP: part of librnnc_rt.a with exec.c and optstep.c
 * (the same plan executor and optimizer step as the JIT's). */
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ir.h"

enum { MSGLEN = 256 };
#define WS_MAGIC 0x31746e7263636e72ull /* "rnccrnt1" */

/* The workspace's header. */
typedef struct Head {
  uint64_t magic;
  const rnnc_aot_model *m;
  int32_t prog, nthreads;
  int32_t trainready; /* rnnc_aot_train_init succeeded */
  OptConfig cfg;
  char msg[MSGLEN];   /* the last failure, "" when none */
} Head;

/* Byte offsets of a workspace's parts. */
typedef struct Layout {
  size_t slots, ws, tws, area, grads, frozen, optp, s1, s2, cfirst, cstart, part, scratch, end;
  size_t per;     /* scratch floats per thread */
  int64_t nchunk; /* the optimizer's chunks with nothing frozen (the most) */
} Layout;

static _Thread_local char initmsg[MSGLEN]; /* rnnc_aot_init's failures, and a workspace that is none */

static size_t up64(size_t n) { return (n + 63) / 64 * 64; }

static const char *progname(int prog)
{
  static const char *const name[RNNC_AOT_NPROG] = {"forward", "step", "train"};
  return prog >= 0 && prog < RNNC_AOT_NPROG ? name[prog] : "?";
}

/* Whether tensor t has an area of its own in the workspace. */
static int has_area(const rnnc_aot_tensor *t)
{
  return t->role != RNNC_AOT_PARAM && !(t->role == RNNC_AOT_GRAD && t->param >= 0);
}

static size_t area_bytes(const rnnc_aot_tensor *t)
{
  size_t es = t->dtype == RNNC_F64 || t->dtype == RNNC_I64 ? 8 : 4;
  return has_area(t) ? up64((size_t)t->numel * es) : 0;
}

/* The layout of a workspace of program prog of m for nthreads threads; 0
 * when m has no such program. */
static int layout(const rnnc_aot_model *m, int prog, size_t nthreads, Layout *L)
{
  if (!m || m->abi != RNNC_AOT_ABI || prog < 0 || prog >= RNNC_AOT_NPROG || !m->prog[prog])
    return 0;
  const rnnc_aot_prog *p = m->prog[prog];
  size_t o = up64(sizeof(Head));
  memset(L, 0, sizeof *L);
  L->slots = o;
  o += up64((size_t)(2 + p->ntensor) * sizeof(void *));
  L->ws = o;
  o += up64((size_t)p->ws_floats * sizeof(float));
  L->tws = o;
  o += up64((size_t)p->tws_floats * sizeof(float));
  L->area = o;
  for (int64_t k = 0; k < p->ntensor; k++)
    o += area_bytes(&p->tensor[k]);
  if (prog == RNNC_AOT_TRAIN) {
    size_t np = (size_t)m->nparam;
    for (int64_t i = 0; i < m->nparam; i++)
      L->nchunk += (m->param[i].numel + OPT_CHUNK - 1) / OPT_CHUNK;
    L->grads = o;
    o += up64((size_t)m->param_floats * sizeof(float));
    L->frozen = o;
    o += up64(np);
    L->optp = o;
    o += up64(np * sizeof(OptParam));
    L->s1 = o;
    o += up64(np * sizeof(float *));
    L->s2 = o;
    o += up64(np * sizeof(float *));
    L->cfirst = o;
    o += up64((np + 1) * sizeof(int64_t));
    L->cstart = o;
    o += up64(((size_t)L->nchunk + 1) * sizeof(int64_t));
    L->part = o;
    o += up64(((size_t)L->nchunk + 1) * sizeof(double));
  }
  L->per = ((size_t)p->scratch_floats + 15) / 16 * 16;
  L->scratch = o;
  o += nthreads * L->per * sizeof(float);
  L->end = o;
  return 1;
}

static int failv(char *msg, int code, const char *fmt, va_list ap)
{
  vsnprintf(msg, MSGLEN, fmt, ap);
  return code;
}

/* The thread's message (no workspace to keep it), and code. */
__attribute__((format(printf, 2, 3))) static int tfail(int code, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  failv(initmsg, code, fmt, ap);
  va_end(ap);
  return code;
}

/* The workspace's message, and code. */
__attribute__((format(printf, 3, 4))) static int fail(Head *h, int code, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  failv(h->msg, code, fmt, ap);
  va_end(ap);
  return code;
}

static int ok(Head *h)
{
  h->msg[0] = 0;
  return RNNC_OK;
}

/* ws's header when ws is a workspace of m (of program prog, unless prog <
 * 0), else NULL with *st RNNC_EMISUSE and the message set (fn the call). */
static Head *head(const rnnc_aot_model *m, void *ws, int prog, const char *fn, int *st)
{
  *st = RNNC_EMISUSE;
  Head *h = ws;
  if (!ws)
    return tfail(RNNC_EMISUSE, "%s: the workspace is NULL", fn), NULL;
  if (h->magic != WS_MAGIC)
    return tfail(RNNC_EMISUSE, "%s: not a workspace (rnnc_aot_init makes one)", fn), NULL;
  if (m && m != h->m && strcmp(m->name, h->m->name) == 0)
    return fail(h, RNNC_EMISUSE, "%s: the workspace was made for another descriptor of model '%s'", fn,
                m->name),
           NULL;
  if (m != h->m)
    return fail(h, RNNC_EMISUSE, "%s: the workspace was made for model '%s', not %s%s%s", fn, h->m->name,
                m ? "'" : "", m ? m->name : "NULL", m ? "'" : ""),
           NULL;
  if (prog >= 0 && h->prog != prog)
    return fail(h, RNNC_EMISUSE, "%s: the workspace was made for program '%s', not '%s'", fn, progname(h->prog),
                progname(prog)),
           NULL;
  *st = RNNC_OK;
  return h;
}

/* The layout of a workspace rnnc_aot_init made (so m has the program). */
static Layout hlayout(const Head *h)
{
  Layout L;
  (void)layout(h->m, h->prog, (size_t)h->nthreads, &L);
  return L;
}

/* ---- the integer inputs' check ----------------------------------------------------- */

int rnnc_check_input(const char *name, const int32_t *id, int64_t numel, const rnnc_aot_check *ch, char *err,
                     size_t errlen)
{
  for (int64_t p = 0; p < numel; p++) {
    long long x = id[p];
    if (ch->target && ch->hasignore && x == ch->ignore)
      continue;
    if (x >= 0 && x < ch->bound)
      continue;
    char pos[64], ign[64] = "";
    if (ch->hastime)
      snprintf(pos, sizeof pos, "[%lld, %lld]", (long long)(p / ch->B), (long long)(p % ch->B));
    else
      snprintf(pos, sizeof pos, "[%lld]", (long long)p);
    if (ch->target && ch->hasignore)
      snprintf(ign, sizeof ign, " and not the ignore index %lld", (long long)ch->ignore);
    snprintf(err, errlen, "input '%s' has %s %lld at %s, outside [0, %lld)%s", name,
             ch->target ? "target" : "token id", x, pos, (long long)ch->bound, ign);
    return RNNC_EINPUT;
  }
  return RNNC_OK;
}

/* ---- workspaces ----------------------------------------------------------------------- */

size_t rnnc_aot_ws_bytes(const rnnc_aot_model *m, int prog, int nthreads)
{
  Layout L;
  return layout(m, prog, nthreads > 0 ? (size_t)nthreads : 0, &L) ? L.end : 0;
}

int rnnc_aot_init(const rnnc_aot_model *m, int prog, void *ws, size_t bytes, int nthreads)
{
  if (!m)
    return tfail(RNNC_EMISUSE, "rnnc_aot_init: the model is NULL");
  if (m->abi != RNNC_AOT_ABI)
    return tfail(RNNC_EMISUSE, "model '%s' was compiled for AOT ABI %lld, this runtime is ABI %d", m->name,
                 (long long)m->abi, RNNC_AOT_ABI);
  if (prog < 0 || prog >= RNNC_AOT_NPROG)
    return tfail(RNNC_EMISUSE, "rnnc_aot_init: no program %d (RNNC_AOT_FORWARD, _STEP or _TRAIN)", prog);
  if (!m->prog[prog])
    return tfail(RNNC_EMISUSE, "model '%s' was compiled without program '%s'%s", m->name, progname(prog),
                 prog == RNNC_AOT_TRAIN ? " (rnnc compile --train)" : "");
  if (!ws)
    return tfail(RNNC_EMISUSE, "rnnc_aot_init: the workspace is NULL");
  if ((uintptr_t)ws % 64)
    return tfail(RNNC_EMISUSE, "rnnc_aot_init: the workspace is not 64-byte aligned");
  int nth = nthreads > 0 ? nthreads : omp_get_max_threads();
  Layout L;
  layout(m, prog, (size_t)nth, &L);
  if (bytes < L.end)
    return tfail(RNNC_EMISUSE, "workspace of %zu bytes; program '%s' with %d thread%s needs %zu", bytes,
                 progname(prog), nth, nth == 1 ? "" : "s", L.end);
  rnnc_mem_advise(ws, L.end); /* before the first touch: huge pages where it was untouched */
  memset(ws, 0, L.end);
  Head *h = ws;
  h->magic = WS_MAGIC;
  h->m = m;
  h->prog = prog;
  h->nthreads = nth;
  initmsg[0] = 0;
  return RNNC_OK;
}

const char *rnnc_aot_message(const void *ws)
{
  const Head *h = ws;
  return h && h->magic == WS_MAGIC ? h->msg : initmsg;
}

/* Fill the slots of ws for a run: parameters from params, inputs and
 * outputs from io where given, else their areas; the gradients of
 * parameters in the gradient buffer. */
static void **fill(const Head *h, const Layout *L, const float *params, void *const *io)
{
  const rnnc_aot_model *m = h->m;
  const rnnc_aot_prog *p = m->prog[h->prog];
  char *base = (char *)h;
  void **slot = (void **)(base + L->slots);
  slot[0] = base + L->ws;
  slot[1] = base + L->tws;
  size_t area = L->area;
  for (int64_t k = 0; k < p->ntensor; k++) {
    const rnnc_aot_tensor *t = &p->tensor[k];
    void *at = base + area;
    area += area_bytes(t);
    if (t->role == RNNC_AOT_PARAM)
      at = (void *)(params + m->param[t->param].offset);
    else if (t->role == RNNC_AOT_GRAD && t->param >= 0)
      at = (float *)(base + L->grads) + m->param[t->param].offset;
    else if (io && t->io >= 0 && io[t->io])
      at = io[t->io];
    slot[2 + k] = at;
  }
  return slot;
}

/* Fill the slots, check the integer inputs, run the forward plan, and with
 * back the backward plan. */
static int run(Head *h, const float *params, void *const *io, int back, const char *fn)
{
  const rnnc_aot_model *m = h->m;
  const rnnc_aot_prog *p = m->prog[h->prog];
  if (!params && m->nparam > 0)
    return fail(h, RNNC_EMISUSE, "%s: params is NULL", fn);
  Layout L = hlayout(h);
  void **slot = fill(h, &L, params, io);
  for (int64_t c = 0; c < p->ncheck; c++) {
    const rnnc_aot_check *ch = &p->check[c];
    const rnnc_aot_tensor *t = &p->tensor[ch->tensor];
    int st = rnnc_check_input(t->name, slot[2 + ch->tensor], t->numel, ch, h->msg, MSGLEN);
    if (st)
      return st;
  }
  float *scratch = L.per ? (float *)((char *)h + L.scratch) : NULL;
  rnnc_plan_exec(p->op, (int)p->nop, p->fn, slot, scratch, L.per, h->nthreads);
  if (back)
    rnnc_plan_exec(p->bop, (int)p->nbop, p->bfn, slot, scratch, L.per, h->nthreads);
  return RNNC_OK;
}

int rnnc_aot_run(const rnnc_aot_model *m, int prog, void *ws, const float *params, void *const *io)
{
  int st;
  if (prog < 0 || prog >= RNNC_AOT_NPROG)
    return m && ws && ((Head *)ws)->magic == WS_MAGIC
               ? fail(ws, RNNC_EMISUSE, "rnnc_aot_run: no program %d (RNNC_AOT_FORWARD, _STEP or _TRAIN)", prog)
               : tfail(RNNC_EMISUSE, "rnnc_aot_run: no program %d (RNNC_AOT_FORWARD, _STEP or _TRAIN)", prog);
  Head *h = head(m, ws, prog, "rnnc_aot_run", &st);
  if (!h)
    return st;
  st = run(h, params, io, 0, "rnnc_aot_run");
  return st ? st : ok(h);
}

int rnnc_aot_backward(const rnnc_aot_model *m, void *ws, const float *params, void *const *io)
{
  int st;
  Head *h = head(m, ws, RNNC_AOT_TRAIN, "rnnc_aot_backward", &st);
  if (!h)
    return st;
  st = run(h, params, io, 1, "rnnc_aot_backward");
  return st ? st : ok(h);
}

void rnnc_aot_reset(const rnnc_aot_model *m, void *ws)
{
  int st;
  Head *h = head(m, ws, -1, "rnnc_aot_reset", &st);
  if (!h)
    return;
  const rnnc_aot_prog *p = m->prog[h->prog];
  Layout L = hlayout(h);
  size_t area = L.area;
  for (int64_t k = 0; k < p->ntensor; k++) {
    if (p->tensor[k].role == RNNC_AOT_STATE)
      memset((char *)h + area, 0, area_bytes(&p->tensor[k]));
    area += area_bytes(&p->tensor[k]);
  }
}

float *rnnc_aot_grads(const rnnc_aot_model *m, void *ws)
{
  int st;
  Head *h = head(m, ws, RNNC_AOT_TRAIN, "rnnc_aot_grads", &st);
  if (!h)
    return NULL;
  Layout L = hlayout(h);
  return (float *)((char *)h + L.grads);
}

void *rnnc_aot_area(const rnnc_aot_model *m, void *ws, const char *name)
{
  int st;
  Head *h = head(m, ws, -1, "rnnc_aot_area", &st);
  if (!h || !name)
    return NULL;
  const rnnc_aot_prog *p = m->prog[h->prog];
  Layout L = hlayout(h);
  size_t area = L.area;
  for (int64_t k = 0; k < p->ntensor; k++) {
    const rnnc_aot_tensor *t = &p->tensor[k];
    if (strcmp(t->name, name) == 0) {
      if (t->role == RNNC_AOT_PARAM)
        return NULL;
      if (t->role == RNNC_AOT_GRAD && t->param >= 0)
        return (float *)((char *)h + L.grads) + m->param[t->param].offset;
      return (char *)h + area;
    }
    area += area_bytes(t);
  }
  return NULL;
}

/* ---- the training step ------------------------------------------------------------------ */

size_t rnnc_aot_opt_floats(const rnnc_aot_model *m) { return m ? 2 * (size_t)m->param_floats : 0; }

int rnnc_aot_train_init(const rnnc_aot_model *m, void *ws, const rnnc_optim_config *c, int nfrozen,
                        const char *const *frozen)
{
  int st;
  Head *h = head(m, ws, RNNC_AOT_TRAIN, "rnnc_aot_train_init", &st);
  if (!h)
    return st;
  if (!c)
    return fail(h, RNNC_EMISUSE, "rnnc_aot_train_init: the config is NULL");
  if (nfrozen < 0 || (nfrozen > 0 && !frozen))
    return fail(h, RNNC_EMISUSE, "rnnc_aot_train_init: bad frozen list");
  const rnnc_aot_prog *p = m->prog[RNNC_AOT_TRAIN];
  if (!m->opt_sumsq || !m->opt_sgd || !m->opt_adam || p->loss < 0 || p->loss >= p->ntensor)
    return fail(h, RNNC_EMISUSE, "model '%s' has no %s", m->name,
                p->loss < 0 || p->loss >= p->ntensor ? "loss tensor" : "optimizer kernels");
  OptConfig cfg = rnnc_opt_config(c);
  if ((st = rnnc_opt_check(&cfg, h->msg, MSGLEN)) != RNNC_OK)
    return st;
  for (int f = 0; f < nfrozen; f++) {
    int64_t i = 0;
    while (frozen[f] && i < m->nparam && strcmp(m->param[i].name, frozen[f]) != 0)
      i++;
    if (!frozen[f] || i == m->nparam)
      return fail(h, RNNC_EINPUT, "cannot freeze '%s': model '%s' has no such parameter",
                  frozen[f] ? frozen[f] : "(null)", m->name);
  }
  /* checked: now change the workspace */
  Layout L = hlayout(h);
  char *base = (char *)h, *fz = base + L.frozen;
  OptParam *op = (OptParam *)(base + L.optp);
  for (int64_t i = 0; i < m->nparam; i++) {
    fz[i] = 0;
    for (int f = 0; f < nfrozen; f++)
      fz[i] |= strcmp(m->param[i].name, frozen[f]) == 0;
    op[i] = (OptParam){.name = m->param[i].name, .numel = m->param[i].numel, .frozen = fz[i]};
  }
  rnnc_opt_tables(op, (int)m->nparam, (int64_t *)(base + L.cfirst), (int64_t *)(base + L.cstart));
  h->cfg = cfg;
  h->trainready = 1;
  return ok(h);
}

int rnnc_aot_train_step(const rnnc_aot_model *m, void *ws, float *params, float *opt_state, int64_t step,
                        void *const *io, float *loss, double *gnorm)
{
  int st;
  Head *h = head(m, ws, RNNC_AOT_TRAIN, "rnnc_aot_train_step", &st);
  if (!h)
    return st;
  if (!h->trainready)
    return fail(h, RNNC_EMISUSE, "rnnc_aot_train_step: the workspace has no optimizer (rnnc_aot_train_init)");
  if (!opt_state && m->param_floats > 0)
    return fail(h, RNNC_EMISUSE, "rnnc_aot_train_step: opt_state is NULL");
  if (step < 0)
    return fail(h, RNNC_EMISUSE, "rnnc_aot_train_step: step %lld < 0", (long long)step);
  if ((st = run(h, params, io, 1, "rnnc_aot_train_step")) != RNNC_OK)
    return st;
  const rnnc_aot_prog *p = m->prog[RNNC_AOT_TRAIN];
  Layout L = hlayout(h);
  char *base = (char *)h;
  void **slot = (void **)(base + L.slots);
  float l = *(const float *)slot[2 + p->loss];
  if (loss)
    *loss = l;
  if (!isfinite(l))
    return fail(h, RNNC_EINPUT, "step %lld: the loss is not finite (%g)", (long long)step + 1, (double)l);
  OptParam *op = (OptParam *)(base + L.optp);
  float **s1 = (float **)(base + L.s1), **s2 = (float **)(base + L.s2);
  float *grads = (float *)(base + L.grads);
  for (int64_t i = 0; i < m->nparam; i++) {
    int64_t off = m->param[i].offset;
    op[i].w = params + off;
    op[i].g = grads + off;
    s1[i] = opt_state + off;
    s2[i] = opt_state + m->param_floats + off;
  }
  const int64_t *cfirst = (const int64_t *)(base + L.cfirst);
  OptStep s = {.c = &h->cfg, .np = (int)m->nparam, .p = op, .s1 = s1, .s2 = s2, .cfirst = cfirst,
               .nchunk = cfirst[m->nparam], .cstart = (const int64_t *)(base + L.cstart),
               .part = (double *)(base + L.part),
               .k = {.sumsq = m->opt_sumsq, .sgd = m->opt_sgd, .adam = m->opt_adam}};
  double gn = 0;
  int bad = -1;
  st = rnnc_opt_step(&s, step, h->nthreads, &gn, &bad);
  if (gnorm)
    *gnorm = gn;
  if (st != RNNC_OK)
    return fail(h, st, "step %lld: the gradient of '%s' is not finite", (long long)step + 1, m->param[bad].name);
  return ok(h);
}
