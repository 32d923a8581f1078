/* api_train.c — the public training API (include/rnnc.h, "training"): an
 * optimizer over a net's parameters (runtime/optim.c, its kernels compiled by
 * compiler/optgen.c), the training step, and checkpoints.
 *
 * A training step is the net's compiled forward + backward (one plan run),
 * then the optimizer's compiled clip + update. The loss is checked between
 * the two, so a step with a non-finite loss or gradient changes nothing.
 * Checkpoints are safetensors files (runtime/checkpoint.c): parameters under
 * their names, the optimizer's state under optim.*, carried states under
 * state.*, and metadata (docs/training.md).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

struct rnnc_optim {
  rnnc_net *net;
  OptConfig cfg;
  OptParam *p; int np;
  Optim *o;
  const float *loss;  /* the loss output of the net (a scalar) */
  TensorSet meta;     /* metadata of the checkpoint last saved or loaded */
};

/* rnnc_optim_defaults and the public config as the optimizer's
 * (rnnc_opt_config): runtime/optstep.c, shared with the AOT runtime. */

int rnnc_optim_new(rnnc_net *net, const rnnc_optim_config *c, int nfrozen, const char *const *frozen,
                   rnnc_optim **out)
{
  int st = api_net_check(net, "rnnc_optim_new");
  if (st != RNNC_OK)
    return st;
  rnnc_ctx *ctx = net->ctx;
  if (!c || !out || (nfrozen > 0 && !frozen) || nfrozen < 0)
    return api_net_fail(ctx, RNNC_EMISUSE, "rnnc_optim_new: %s", !c ? "config is NULL" : !out ? "out is NULL"
                                                                  : "bad frozen list");
  *out = NULL;
  if (!(net->flags & RNNC_GRAD))
    return api_net_fail(ctx, RNNC_EMISUSE, "rnnc_optim_new: net was compiled without RNNC_GRAD");
  if (c->kind < RNNC_SGD || c->kind > RNNC_ADAMW)
    return api_net_fail(ctx, RNNC_EINPUT, "rnnc_optim_new: unknown optimizer kind %d", c->kind);
  if (c->schedule < RNNC_LR_CONSTANT || c->schedule > RNNC_LR_COSINE)
    return api_net_fail(ctx, RNNC_EINPUT, "rnnc_optim_new: unknown schedule %d", c->schedule);
  for (int f = 0; f < nfrozen; f++) {
    const CTensor *t = frozen[f] ? cmodel_find(net->cm, frozen[f]) : NULL;
    if (!t || t->role != CT_PARAM)
      return api_net_fail(ctx, RNNC_EINPUT, "cannot freeze '%s': model '%s' has no such parameter",
                          frozen[f] ? frozen[f] : "(null)", net->md->name);
  }
  const CTensor *lt = cmodel_find(net->cm, net->md->node[net->md->loss].name);
  if (!lt || lt->numel != 1)
    die("the loss of model '%s' is not a scalar output of its net", net->md->name);

  rnnc_optim *opt = calloc(1, sizeof *opt);
  int nt = cmodel_ntensor(net->cm);
  if (opt)
    opt->p = calloc((size_t)nt, sizeof *opt->p);
  if (!opt || !opt->p) {
    free(opt);
    return api_net_fail(ctx, RNNC_ENOMEM, "rnnc_optim_new: out of memory");
  }
  for (int i = 0; i < nt; i++) {
    const CTensor *t = cmodel_tensor(net->cm, i);
    if (t->role != CT_PARAM)
      continue;
    char gname[300];
    snprintf(gname, sizeof gname, "grad.%s", t->name);
    const CTensor *g = cmodel_find(net->cm, gname);
    if (!g || g->numel != t->numel)
      die("net of model '%s' has no gradient for '%s'", net->md->name, t->name);
    int fz = 0;
    for (int f = 0; f < nfrozen; f++)
      fz |= strcmp(frozen[f], t->name) == 0;
    opt->p[opt->np++] = (OptParam){.name = t->name, .w = t->data, .g = g->data, .numel = t->numel, .frozen = fz};
  }
  opt->net = net;
  opt->cfg = rnnc_opt_config(c);
  opt->loss = lt->data;
  tset_init(&opt->meta);
  char err[1024] = "";
  if ((st = optim_new(&opt->cfg, opt->p, opt->np, &opt->o, err, sizeof err)) != RNNC_OK) {
    free(opt->p);
    free(opt);
    return api_net_fail(ctx, st, "%s", err);
  }
  *out = opt;
  return api_net_ok(ctx);
}

void rnnc_optim_free(rnnc_optim *opt)
{
  if (!opt)
    return;
  optim_free(opt->o);
  tset_clear(&opt->meta);
  free(opt->p);
  free(opt);
}

/* RNNC_OK when opt and its net can be used by fn. */
static int ocheck(rnnc_optim *opt, const char *fn)
{
  return opt ? api_net_check(opt->net, fn) : RNNC_EMISUSE;
}

int rnnc_train_step(rnnc_optim *opt, float *loss, double *gnorm)
{
  int st = ocheck(opt, "rnnc_train_step");
  if (st != RNNC_OK)
    return st;
  rnnc_net *net = opt->net;
  long step = (long)optim_steps(opt->o);
  char err[1024] = "";
  if ((st = cmodel_run(net->cm, 1, net->nthreads, err, sizeof err)) != RNNC_OK)
    return api_net_fail(net->ctx, st, "%s", err);
  float l = *opt->loss;
  if (loss)
    *loss = l;
  if (!isfinite(l))
    return api_net_fail(net->ctx, RNNC_EINPUT, "step %ld: the loss is not finite (%g)", step + 1, (double)l);
  double gn = 0;
  int bad = -1;
  st = optim_step(opt->o, net->nthreads, &gn, &bad, err, sizeof err);
  if (gnorm)
    *gnorm = gn;
  if (st != RNNC_OK && bad >= 0)
    return api_net_fail(net->ctx, st, "step %ld: the gradient of '%s' is not finite", step + 1, opt->p[bad].name);
  if (st != RNNC_OK)
    return api_net_fail(net->ctx, st, "%s", err);
  return api_net_ok(net->ctx);
}

long rnnc_optim_steps(rnnc_optim *opt)
{
  if (ocheck(opt, "rnnc_optim_steps") != RNNC_OK)
    return -1;
  return (long)optim_steps(opt->o);
}

double rnnc_optim_lr(rnnc_optim *opt)
{
  if (ocheck(opt, "rnnc_optim_lr") != RNNC_OK)
    return NAN;
  return optim_lr(&opt->cfg, optim_steps(opt->o));
}

/* ---- checkpoints ----------------------------------------------------------- */

static const char *hashstr(char buf[17], uint64_t h)
{
  snprintf(buf, 17, "%016llx", (unsigned long long)h);
  return buf;
}

/* Copy the metadata of s into opt->meta (replacing what it held). */
static int keepmeta(rnnc_optim *opt, const TensorSet *s)
{
  tset_clear(&opt->meta);
  tset_init(&opt->meta);
  for (int i = 0; i < s->nmeta; i++)
    if (tset_setmeta(&opt->meta, s->metakey[i], s->metaval[i]) != RNNC_OK)
      return RNNC_ENOMEM;
  return RNNC_OK;
}

int rnnc_checkpoint_save(rnnc_optim *opt, const char *path, int nmeta, const char *const *keyval)
{
  int st = ocheck(opt, "rnnc_checkpoint_save");
  if (st != RNNC_OK)
    return st;
  rnnc_net *net = opt->net;
  if (!path || nmeta < 0 || (nmeta > 0 && !keyval))
    return api_net_fail(net->ctx, RNNC_EMISUSE, "rnnc_checkpoint_save: %s", path ? "bad metadata" : "path is NULL");
  TensorSet ts;
  tset_init(&ts);
  for (int i = 0; st == RNNC_OK && i < cmodel_ntensor(net->cm); i++) {
    const CTensor *t = cmodel_tensor(net->cm, i);
    if (t->role != CT_PARAM && t->role != CT_STATE)
      continue;
    Tensor *x = tset_add(&ts, t->name, DT_F32, t->rank, t->dim);
    if (x)
      memcpy(x->data, t->data, (size_t)t->numel * sizeof(float));
    else
      st = RNNC_ENOMEM;
  }
  char h[17], stepbuf[32];
  snprintf(stepbuf, sizeof stepbuf, "%lld", (long long)optim_steps(opt->o));
  if (st == RNNC_OK)
    st = optim_save(opt->o, &ts);
  if (st == RNNC_OK)
    st = tset_setmeta(&ts, "model", net->md->name);
  if (st == RNNC_OK)
    st = tset_setmeta(&ts, "rnnc.model_hash", hashstr(h, model_hash(net->ctx->m, net->md)));
  if (st == RNNC_OK)
    st = tset_setmeta(&ts, "rnnc.step", stepbuf);
  for (int i = 0; st == RNNC_OK && i < nmeta; i++)
    st = keyval[2 * i] && keyval[2 * i + 1] ? tset_setmeta(&ts, keyval[2 * i], keyval[2 * i + 1]) : RNNC_EMISUSE;
  char err[1024] = "rnnc_checkpoint_save: out of memory";
  if (st == RNNC_EMISUSE)
    snprintf(err, sizeof err, "rnnc_checkpoint_save: a metadata key or value is NULL");
  if (st == RNNC_OK)
    st = safetensors_write(path, &ts, err, sizeof err);
  if (st == RNNC_OK)
    st = keepmeta(opt, &ts);
  tset_clear(&ts);
  return st == RNNC_OK ? api_net_ok(net->ctx) : api_net_fail(net->ctx, st, "%s", err);
}

/* Check that ts holds every parameter (and carried state) of the net with its
 * shape; RNNC_OK or a status with the message set. */
static int ckptcheck(rnnc_net *net, const char *path, const TensorSet *ts)
{
  for (int i = 0; i < cmodel_ntensor(net->cm); i++) {
    const CTensor *t = cmodel_tensor(net->cm, i);
    if (t->role != CT_PARAM && t->role != CT_STATE)
      continue;
    const Tensor *x = tset_find(ts, t->name);
    if (!x && t->role == CT_STATE)
      continue; /* a checkpoint of a net that carries no state: states start at zero */
    if (!x)
      return api_net_fail(net->ctx, RNNC_EINPUT, "'%s' has no tensor '%s' (a parameter of model '%s')", path,
                          t->name, net->md->name);
    if (x->dtype != DT_F32 || x->rank != t->rank ||
        memcmp(x->dim, t->dim, (size_t)t->rank * sizeof *t->dim) != 0)
      return api_net_fail(net->ctx, RNNC_ESHAPE, "tensor '%s' in '%s' does not have the net's shape and type",
                          t->name, path);
  }
  return RNNC_OK;
}

int rnnc_checkpoint_load(rnnc_optim *opt, const char *path)
{
  int st = ocheck(opt, "rnnc_checkpoint_load");
  if (st != RNNC_OK)
    return st;
  rnnc_net *net = opt->net;
  if (!path)
    return api_net_fail(net->ctx, RNNC_EMISUSE, "rnnc_checkpoint_load: path is NULL");
  TensorSet ts;
  tset_init(&ts);
  char err[1024] = "";
  if ((st = safetensors_read(path, &ts, err, sizeof err)) != RNNC_OK) {
    tset_clear(&ts);
    return api_net_fail(net->ctx, st, "%s", err);
  }
  char want[17];
  hashstr(want, model_hash(net->ctx->m, net->md));
  const char *have = tset_getmeta(&ts, "rnnc.model_hash");
  if (!have)
    st = api_net_fail(net->ctx, RNNC_EINPUT, "'%s' is not a training checkpoint (no rnnc.model_hash)", path);
  else if (strcmp(have, want) != 0)
    st = api_net_fail(net->ctx, RNNC_EINPUT, "'%s' was saved from a different model (hash %s, this model's %s)",
                      path, have, want);
  if (st == RNNC_OK)
    st = ckptcheck(net, path, &ts);
  if (st == RNNC_OK && (st = optim_restore(opt->o, &ts, err, sizeof err)) != RNNC_OK)
    api_net_fail(net->ctx, st, "%s", err);
  if (st == RNNC_OK) {
    for (int i = 0; i < cmodel_ntensor(net->cm); i++) {
      CTensor *t = cmodel_tensor(net->cm, i);
      const Tensor *x = t->role == CT_PARAM || t->role == CT_STATE ? tset_find(&ts, t->name) : NULL;
      if (x)
        memcpy(t->data, x->data, (size_t)t->numel * sizeof(float));
    }
    if (keepmeta(opt, &ts) != RNNC_OK)
      st = api_net_fail(net->ctx, RNNC_ENOMEM, "rnnc_checkpoint_load: out of memory");
  }
  tset_clear(&ts);
  return st == RNNC_OK ? api_net_ok(net->ctx) : st;
}

const char *rnnc_checkpoint_meta(rnnc_optim *opt, const char *key)
{
  if (ocheck(opt, "rnnc_checkpoint_meta") != RNNC_OK || !key)
    return NULL;
  return tset_getmeta(&opt->meta, key);
}
