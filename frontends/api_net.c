/* api_net.c — the public JIT API (include/rnnc.h, "compiling and running a
 * model"): a net is a model of the context compiled for bound dims (a CModel,
 * compiler/compile.c) with the tensors it reads and writes, by name.
 *
 * A net header is small and lives on its context's list. rnnc_net_free frees
 * the compiled code and every buffer at once, but keeps the header, marked
 * dead, until rnnc_close: every call checks the header's magic first, so a
 * freed net used again is RNNC_EMISUSE with a message instead of a crash (in
 * every build, so the tests check it). Errors go to the context's message,
 * which every net of the context shares; a lock keeps two nets running on
 * two threads from replacing it at the same time.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

/* ---- messages ------------------------------------------------------------ */

static pthread_mutex_t msglock = PTHREAD_MUTEX_INITIALIZER;

int api_net_fail(rnnc_ctx *ctx, int code, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  char *msg = malloc((size_t)n + 1);
  if (!msg)
    die("out of memory");
  va_start(ap, fmt);
  vsnprintf(msg, (size_t)n + 1, fmt, ap);
  va_end(ap);
  pthread_mutex_lock(&msglock);
  api_fail(ctx, code, "%s", msg);
  pthread_mutex_unlock(&msglock);
  free(msg);
  return code;
}

int api_net_ok(rnnc_ctx *ctx)
{
  pthread_mutex_lock(&msglock);
  if (ctx->msg[0])
    api_fail(ctx, RNNC_OK, "");
  pthread_mutex_unlock(&msglock);
  return RNNC_OK;
}

int api_net_check(rnnc_net *net, const char *fn)
{
  if (!net || (net->magic != NET_LIVE && net->magic != NET_DEAD))
    return RNNC_EMISUSE;
  if (net->magic == NET_DEAD)
    return api_net_fail(net->ctx, RNNC_EMISUSE, "%s: net used after rnnc_net_free", fn);
  for (const rnnc_net *s = net->src; s; s = s->src)
    if (s->magic != NET_LIVE)
      return api_net_fail(net->ctx, RNNC_EMISUSE,
                  "%s: the net whose parameters this net shares (rnnc_share_params) was freed", fn);
  return RNNC_OK;
}

/* "[512, 64]", "[]" into buf. */
static const char *dimstr(char *buf, size_t len, int rank, const int64_t *dim)
{
  size_t n = (size_t)snprintf(buf, len, "[");
  for (int i = 0; i < rank && n < len; i++)
    n += (size_t)snprintf(buf + n, len - n, "%s%lld", i ? ", " : "", (long long)dim[i]);
  if (n < len)
    snprintf(buf + n, len - n, "]");
  return buf;
}

/* The tensor of that name, or NULL with the message set (RNNC_EINPUT). */
static CTensor *find(rnnc_net *net, const char *fn, const char *name)
{
  if (!name) {
    api_net_fail(net->ctx, RNNC_EMISUSE, "%s: name is NULL", fn);
    return NULL;
  }
  CTensor *t = cmodel_find(net->cm, name);
  if (t)
    return t;
  if (strncmp(name, "grad.", 5) == 0 && !(net->flags & RNNC_GRAD))
    api_net_fail(net->ctx, RNNC_EINPUT, "net has no tensor '%s' (compiled without RNNC_GRAD: no grad.*)", name);
  else if (strncmp(name, "state.", 6) == 0 && !(net->flags & RNNC_CARRY))
    api_net_fail(net->ctx, RNNC_EINPUT, "net has no tensor '%s' (compiled without RNNC_CARRY: no state.*)",
         name);
  else
    api_net_fail(net->ctx, RNNC_EINPUT, "net has no tensor '%s'", name);
  return NULL;
}

static size_t tbytes(const CTensor *t) { return (size_t)t->numel * dtype_size(t->dtype); }

/* ---- compiling ----------------------------------------------------------- */

/* The last model of that name in m, or NULL. */
static Model *lastmodel(Module *m, const char *name)
{
  for (int i = m->nmodel - 1; i >= 0; i--)
    if (strcmp(m->model[i]->name, name) == 0)
      return m->model[i];
  return NULL;
}

/* Bind dims into env: T and B as given (required), the model's header dims
 * as given or from their defaults. RNNC_OK or a status with the message set. */
int api_net_bind(rnnc_ctx *ctx, Model *md, Arena *a, int ndims, const rnnc_dim *dims, Env *env)
{
  Module *m = ctx->m;
  const char *T = intern(m->names, "T", 1), *B = intern(m->names, "B", 1);
  for (int i = 0; i < ndims; i++) {
    const char *name = dims[i].name, *sym = NULL;
    if (!name)
      return api_net_fail(ctx, RNNC_EMISUSE, "rnnc_compile: dims[%d].name is NULL", i);
    if (strcmp(name, "T") == 0 || strcmp(name, "B") == 0)
      sym = name[0] == 'T' ? T : B;
    for (int k = 0; !sym && k < md->ndim; k++)
      if (strcmp(md->dim[k].name, name) == 0)
        sym = md->dim[k].name;
    if (!sym)
      return api_net_fail(ctx, RNNC_EINPUT, "model '%s' has no dimension '%s'", md->name, name);
    long v;
    if (env_get(env, sym, &v))
      return api_net_fail(ctx, RNNC_EINPUT, "rnnc_compile: dimension '%s' is bound twice", name);
    if (dims[i].value < 1)
      return api_net_fail(ctx, RNNC_ESHAPE, "rnnc_compile: dimension %s = %ld; it must be at least 1", name,
                  dims[i].value);
    env_set(a, env, sym, dims[i].value);
  }
  long v;
  if (!env_get(env, T, &v) || !env_get(env, B, &v))
    return api_net_fail(ctx, RNNC_EINPUT, "rnnc_compile: dimension '%s' is not bound; give it in dims",
                env_get(env, T, &v) ? "B" : "T");
  for (int k = 0; k < md->ndim; k++) {
    const MDim *d = &md->dim[k];
    if (env_get(env, d->name, &v))
      continue;
    if (!d->hasdefault)
      return api_net_fail(ctx, RNNC_EINPUT,
                  "rnnc_compile: dimension '%s' of model '%s' has no default; give it in dims",
                  d->name, md->name);
    env_set(a, env, d->name, d->def);
  }
  return RNNC_OK;
}

/* require: md verified. produce: md->grad (autodiff) and the schedules of
 * the cells md applies, as pipeline() leaves them. A forward cell scheduled
 * before its backward cell existed is scheduled again: what backward saves
 * changes its schedule. */
int api_net_passes(rnnc_ctx *ctx, Model *md, int grad)
{
  Module *m = ctx->m;
  if (grad && !md->grad) {
    if (md->loss < 0)
      return api_net_fail(ctx, RNNC_EINPUT,
                  "rnnc_compile: RNNC_GRAD: model '%s' has no loss to differentiate (a softmax "
                  "with a target, or a sum)",
                  md->name);
    char *had = calloc((size_t)md->nnode + 1, 1);
    if (!had)
      return api_net_fail(ctx, RNNC_ENOMEM, "rnnc_compile: out of memory");
    for (int i = 0; i < md->nnode; i++)
      had[i] = md->node[i].kind == M_CELL && md->node[i].cell->derived;
    int mark = m->diags.n;
    md->grad = autodiff(m, md);
    if (!md->grad) {
      free(had);
      pthread_mutex_lock(&msglock);
      int st = api_diags(ctx, mark, RNNC_EVERIFY);
      pthread_mutex_unlock(&msglock);
      return st;
    }
    m->diags.n = mark; /* warnings of autodiff, if any, are not the caller's */
    for (int i = 0; i < md->nnode; i++)
      if (md->node[i].kind == M_CELL && !had[i])
        md->node[i].cell->sched = NULL; /* the old one stays in the arena */
    free(had);
  }
  return schedule(m) == RNNC_OK ? RNNC_OK : api_net_fail(ctx, RNNC_EVERIFY, "rnnc_compile: schedule failed");
}

int rnnc_compile(rnnc_ctx *ctx, const char *model, int ndims, const rnnc_dim *dims, int flags,
                 rnnc_net **out)
{
  if (!ctx)
    return RNNC_EMISUSE;
  if (!out)
    return api_net_fail(ctx, RNNC_EMISUSE, "rnnc_compile: out is NULL");
  *out = NULL;
  if (!model)
    return api_net_fail(ctx, RNNC_EMISUSE, "rnnc_compile: model is NULL");
  if (ndims < 0 || (ndims > 0 && !dims))
    return api_net_fail(ctx, RNNC_EMISUSE, "rnnc_compile: %s", ndims < 0 ? "ndims < 0" : "dims is NULL");
  if (flags & ~(RNNC_GRAD | RNNC_CARRY))
    return api_net_fail(ctx, RNNC_EMISUSE, "rnnc_compile: unknown flags 0x%x", (unsigned)flags);
  if (ctx->open)
    return api_net_fail(ctx, RNNC_EMISUSE, "rnnc_compile: a %s builder is open on this context; end it first",
                ctx->openkind == 'c' ? "cell" : "model");
  Model *md = lastmodel(ctx->m, model);
  if (!md)
    return api_net_fail(ctx, RNNC_EINPUT, "rnnc_compile: no model '%s' in this context", model);
  if (md->verified != 1)
    die("model '%s' in the context is not verified", md->name);

  Arena *a = arena_new();
  Env env = {0};
  int st = api_net_bind(ctx, md, a, ndims, dims, &env);
  if (st == RNNC_OK)
    st = api_net_passes(ctx, md, flags & RNNC_GRAD);
  CModel *cm = NULL;
  if (st == RNNC_OK) {
    CompileOpts o = {.grad = !!(flags & RNNC_GRAD), .carry = !!(flags & RNNC_CARRY)};
    char err[1024] = "";
    st = cmodel_compile(ctx->m, md, &env, &o, &cm, err, sizeof err);
    if (st != RNNC_OK)
      api_net_fail(ctx, st, "%s", err[0] ? err : "rnnc_compile: compiling failed");
  }
  rnnc_net *net = st == RNNC_OK ? calloc(1, sizeof *net) : NULL;
  if (st == RNNC_OK && !net)
    st = api_net_fail(ctx, RNNC_ENOMEM, "rnnc_compile: out of memory");
  if (st != RNNC_OK) {
    cmodel_free(cm);
    arena_free(a);
    return st;
  }
  *net = (rnnc_net){.magic = NET_LIVE, .ctx = ctx, .next = ctx->nets, .cm = cm, .md = md,
                    .arena = a, .env = env, .flags = flags};
  ctx->nets = net;
  *out = net;
  return api_net_ok(ctx);
}

void rnnc_net_free(rnnc_net *net)
{
  if (!net || (net->magic != NET_LIVE && net->magic != NET_DEAD))
    return;
  if (net->magic == NET_DEAD) {
    api_net_fail(net->ctx, RNNC_EMISUSE, "rnnc_net_free: net freed twice");
    return;
  }
  cmodel_free(net->cm);
  arena_free(net->arena);
  net->cm = NULL;
  net->arena = NULL;
  net->env = (Env){0};
  net->magic = NET_DEAD; /* the header stays on ctx->nets until rnnc_close */
}

void api_nets_close(rnnc_ctx *ctx)
{
  while (ctx->nets) {
    rnnc_net *net = ctx->nets;
    ctx->nets = net->next;
    if (net->magic == NET_LIVE) {
      cmodel_free(net->cm);
      arena_free(net->arena);
    }
    net->magic = 0;
    free(net);
  }
}

/* ---- tensors ------------------------------------------------------------- */

int rnnc_tensor_count(rnnc_net *net)
{
  if (api_net_check(net, "rnnc_tensor_count") != RNNC_OK)
    return -1;
  api_net_ok(net->ctx);
  return cmodel_ntensor(net->cm);
}

const char *rnnc_tensor_name(rnnc_net *net, int i)
{
  if (api_net_check(net, "rnnc_tensor_name") != RNNC_OK)
    return NULL;
  int n = cmodel_ntensor(net->cm);
  if (i < 0 || i >= n) {
    api_net_fail(net->ctx, RNNC_EINPUT, "rnnc_tensor_name: index %d is outside [0, %d)", i, n);
    return NULL;
  }
  api_net_ok(net->ctx);
  return cmodel_tensor(net->cm, i)->name;
}

int rnnc_tensor_shape(rnnc_net *net, const char *name, int *dtype, int *rank, int64_t dim[4])
{
  int st = api_net_check(net, "rnnc_tensor_shape");
  if (st != RNNC_OK)
    return st;
  const CTensor *t = find(net, "rnnc_tensor_shape", name);
  if (!t)
    return name ? RNNC_EINPUT : RNNC_EMISUSE;
  if (dtype)
    *dtype = t->dtype == DT_I32 ? RNNC_I32 : RNNC_F32;
  if (rank)
    *rank = t->rank;
  for (int i = 0; dim && i < 4; i++)
    dim[i] = i < t->rank ? t->dim[i] : 0;
  return api_net_ok(net->ctx);
}

/* The tensor for a copy of bytes in or out (fn: the caller), or NULL with the
 * message set and *st the status. */
static CTensor *copyable(rnnc_net *net, const char *fn, const char *name, const void *data, size_t bytes,
                         int *st)
{
  if ((*st = api_net_check(net, fn)) != RNNC_OK)
    return NULL;
  CTensor *t = find(net, fn, name);
  if (!t) {
    *st = name ? RNNC_EINPUT : RNNC_EMISUSE;
    return NULL;
  }
  if (bytes != tbytes(t)) {
    *st = api_net_fail(net->ctx, RNNC_ESHAPE, "tensor '%s' is %zu bytes, got %zu", name, tbytes(t), bytes);
    return NULL;
  }
  if (!data) {
    *st = api_net_fail(net->ctx, RNNC_EMISUSE, "%s: data is NULL", fn);
    return NULL;
  }
  return t;
}

int rnnc_set(rnnc_net *net, const char *name, const void *data, size_t bytes)
{
  int st;
  CTensor *t = copyable(net, "rnnc_set", name, data, bytes, &st);
  if (!t)
    return st;
  memcpy(t->data, data, bytes);
  return api_net_ok(net->ctx);
}

int rnnc_get(rnnc_net *net, const char *name, void *data, size_t bytes)
{
  int st;
  CTensor *t = copyable(net, "rnnc_get", name, data, bytes, &st);
  if (!t)
    return st;
  memcpy(data, t->data, bytes);
  return api_net_ok(net->ctx);
}

void *rnnc_data(rnnc_net *net, const char *name)
{
  if (api_net_check(net, "rnnc_data") != RNNC_OK)
    return NULL;
  CTensor *t = find(net, "rnnc_data", name);
  if (!t)
    return NULL;
  api_net_ok(net->ctx);
  return t->data;
}

/* ---- parameters ---------------------------------------------------------- */

int rnnc_init_params(rnnc_net *net, uint64_t seed)
{
  int st = api_net_check(net, "rnnc_init_params");
  if (st != RNNC_OK)
    return st;
  TensorSet ts;
  tset_init(&ts);
  char err[1024] = "";
  if ((st = init_params(net->md, &net->env, seed, &ts, err, sizeof err)) != RNNC_OK) {
    tset_clear(&ts);
    return api_net_fail(net->ctx, st, "%s", err);
  }
  int n = 0;
  for (int i = 0; i < ts.n; i++) {
    const Tensor *x = &ts.t[i];
    CTensor *t = cmodel_find(net->cm, x->name);
    if (!t || t->role != CT_PARAM || t->numel != tensor_numel(x) || x->dtype != DT_F32)
      die("init_params made '%s', which the compiled model has not as a float32 parameter of "
          "that size", x->name);
    memcpy(t->data, x->data, tbytes(t));
    n++;
  }
  for (int i = 0; i < cmodel_ntensor(net->cm); i++)
    n -= cmodel_tensor(net->cm, i)->role == CT_PARAM;
  if (n != 0)
    die("init_params and the compiled model disagree on the parameters of '%s'", net->md->name);
  tset_clear(&ts);
  return api_net_ok(net->ctx);
}

int rnnc_load_params(rnnc_net *net, const char *path)
{
  int st = api_net_check(net, "rnnc_load_params");
  if (st != RNNC_OK)
    return st;
  if (!path)
    return api_net_fail(net->ctx, RNNC_EMISUSE, "rnnc_load_params: path is NULL");
  TensorSet ts;
  tset_init(&ts);
  char err[1024] = "";
  if ((st = safetensors_read(path, &ts, err, sizeof err)) != RNNC_OK) {
    tset_clear(&ts);
    return api_net_fail(net->ctx, st, "%s", err);
  }
  /* check every parameter before copying any: a failed call changes nothing */
  int nt = cmodel_ntensor(net->cm);
  for (int pass = 0; pass < 2; pass++)
    for (int i = 0; i < nt; i++) {
      CTensor *t = cmodel_tensor(net->cm, i);
      if (t->role != CT_PARAM)
        continue;
      const Tensor *x = tset_find(&ts, t->name);
      char a[128], b[128];
      if (!x)
        st = api_net_fail(net->ctx, RNNC_EINPUT, "'%s' has no tensor '%s' (a parameter of model '%s')", path,
                  t->name, net->md->name);
      else if (x->dtype != DT_F32 && x->dtype != DT_F64)
        st = api_net_fail(net->ctx, RNNC_ESHAPE, "parameter '%s' in '%s' is %s; it must be F32 or F64",
                  t->name, path, dtype_name(x->dtype));
      else if (x->rank != t->rank || memcmp(x->dim, t->dim, (size_t)t->rank * sizeof *t->dim) != 0)
        st = api_net_fail(net->ctx, RNNC_ESHAPE, "parameter '%s' is %s in the net but %s in '%s'", t->name,
                  dimstr(a, sizeof a, t->rank, t->dim), dimstr(b, sizeof b, x->rank, x->dim), path);
      if (st != RNNC_OK) {
        tset_clear(&ts);
        return st;
      }
      if (pass == 0)
        continue;
      float *d = t->data;
      if (x->dtype == DT_F32)
        memcpy(d, x->data, tbytes(t));
      else
        for (int64_t e = 0; e < t->numel; e++)
          d[e] = (float)((const double *)x->data)[e];
    }
  tset_clear(&ts);
  return api_net_ok(net->ctx);
}

int rnnc_save_params(rnnc_net *net, const char *path)
{
  int st = api_net_check(net, "rnnc_save_params");
  if (st != RNNC_OK)
    return st;
  if (!path)
    return api_net_fail(net->ctx, RNNC_EMISUSE, "rnnc_save_params: path is NULL");
  TensorSet ts;
  tset_init(&ts);
  for (int i = 0; st == RNNC_OK && i < cmodel_ntensor(net->cm); i++) {
    const CTensor *t = cmodel_tensor(net->cm, i);
    if (t->role != CT_PARAM)
      continue;
    Tensor *x = tset_add(&ts, t->name, DT_F32, t->rank, t->dim);
    if (x)
      memcpy(x->data, t->data, tbytes(t));
    else
      st = RNNC_ENOMEM;
  }
  if (st == RNNC_OK)
    st = tset_setmeta(&ts, "model", net->md->name);
  char err[1024] = "rnnc_save_params: out of memory";
  if (st == RNNC_OK)
    st = safetensors_write(path, &ts, err, sizeof err);
  tset_clear(&ts);
  return st == RNNC_OK ? api_net_ok(net->ctx) : api_net_fail(net->ctx, st, "%s", err);
}

int rnnc_share_params(rnnc_net *dst, rnnc_net *src)
{
  int st = api_net_check(dst, "rnnc_share_params");
  if (st != RNNC_OK)
    return st;
  if (!src)
    return api_net_fail(dst->ctx, RNNC_EMISUSE, "rnnc_share_params: src is NULL");
  if (src->magic != NET_LIVE && src->magic != NET_DEAD)
    return api_net_fail(dst->ctx, RNNC_EMISUSE, "rnnc_share_params: src is not a net");
  if (src->magic == NET_DEAD)
    return api_net_fail(dst->ctx, RNNC_EMISUSE, "rnnc_share_params: src used after rnnc_net_free");
  for (const rnnc_net *s = src; s; s = s->src)
    if (s == dst)
      return api_net_fail(dst->ctx, RNNC_EMISUSE, "rnnc_share_params: %s",
                  src == dst ? "dst and src are the same net" : "src shares dst's parameters already");
  for (const rnnc_net *s = src->src; s; s = s->src)
    if (s->magic != NET_LIVE)
      return api_net_fail(dst->ctx, RNNC_EMISUSE,
                  "rnnc_share_params: the net whose parameters src shares was freed");
  char err[1024] = "";
  if ((st = cmodel_share_params(dst->cm, src->cm, err, sizeof err)) != RNNC_OK)
    return api_net_fail(dst->ctx, st, "%s", err);
  dst->src = src;
  return api_net_ok(dst->ctx);
}

/* ---- running ------------------------------------------------------------- */

int rnnc_set_threads(rnnc_net *net, int nthreads)
{
  int st = api_net_check(net, "rnnc_set_threads");
  if (st != RNNC_OK)
    return st;
  if (nthreads < 0)
    return api_net_fail(net->ctx, RNNC_EMISUSE,
                "rnnc_set_threads: nthreads is %d; give 1 or more (0: OpenMP's default)", nthreads);
  net->nthreads = nthreads;
  return api_net_ok(net->ctx);
}

static int run(rnnc_net *net, const char *fn, int grad)
{
  int st = api_net_check(net, fn);
  if (st != RNNC_OK)
    return st;
  if (grad && !(net->flags & RNNC_GRAD))
    return api_net_fail(net->ctx, RNNC_EMISUSE, "%s: net was compiled without RNNC_GRAD", fn);
  char err[1024] = "";
  if ((st = cmodel_run(net->cm, grad, net->nthreads, err, sizeof err)) != RNNC_OK)
    return api_net_fail(net->ctx, st, "%s", err);
  return api_net_ok(net->ctx);
}

int rnnc_forward(rnnc_net *net) { return run(net, "rnnc_forward", 0); }

int rnnc_forward_backward(rnnc_net *net) { return run(net, "rnnc_forward_backward", 1); }

int rnnc_reset_state(rnnc_net *net)
{
  int st = api_net_check(net, "rnnc_reset_state");
  if (st != RNNC_OK)
    return st;
  if (!(net->flags & RNNC_CARRY))
    return api_net_fail(net->ctx, RNNC_EMISUSE, "rnnc_reset_state: net was compiled without RNNC_CARRY");
  cmodel_reset_state(net->cm);
  return api_net_ok(net->ctx);
}

double rnnc_compile_ms(rnnc_net *net)
{
  if (api_net_check(net, "rnnc_compile_ms") != RNNC_OK)
    return -1;
  api_net_ok(net->ctx);
  return cmodel_compile_ms(net->cm);
}
