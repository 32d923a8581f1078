/* compile_model.c — the kernels of the model nodes that are not cells:
 * embedding, onehot, concat, last, final, softmax (with its views logits and
 * probs) and sum, forward and backward. Values and adjoints are in rows form
 * (compile.c); each kernel is followed by a barrier unless the next kernel
 * reads nothing it writes. The semantics are the interpreter's
 * (ir/interp_forward.c, ir/interp_backward.c). */
#include <string.h>

#include "compile.h"

static int check_ids(Comp *C, int input, int64_t bound, int target, const MNode *sm)
{
  CModel *cm = C->cm;
  const MNode *in = &C->md->node[input];
  int t = -1;
  for (int k = 0; k < cm->nt; k++)
    if (cm->t[k].role == CT_INPUT && strcmp(cm->t[k].name, in->name) == 0)
      t = k;
  if (t < 0)
    die("compile: integer operand '%s' is not an input", in->name ? in->name : "?");
  Check ch = {.tensor = t, .bound = bound, .target = target, .hastime = in->hastime, .B = C->v[input].B};
  if (sm && sm->hasignore) {
    ch.hasignore = 1;
    ch.ignore = sm->ignore;
  }
  APUSH(cm->a, cm->check, cm->ncheck, cm->capcheck, ch);
  return RNNC_OK;
}

static int param_tensor(Comp *C, const MNode *n, const char *pname, int64_t ld, Addr *a)
{
  for (int p = 0; p < n->nparam; p++)
    if (strcmp(n->param[p].name, pname) == 0) {
      for (int k = 0; k < C->cm->nt; k++)
        if (C->cm->t[k].role == CT_PARAM && strcmp(C->cm->t[k].name, n->param[p].full) == 0) {
          *a = (Addr){C->cm->t[k].slot, 0, 0, ld};
          return RNNC_OK;
        }
    }
  die("compile: node '%s' has no parameter '%s'", n->name ? n->name : "?", pname);
}

static int grad_tensor(Comp *C, const MNode *n, const char *pname, int64_t ld, Addr *a)
{
  for (int p = 0; p < n->nparam; p++)
    if (strcmp(n->param[p].name, pname) == 0) {
      const char *gname = aprintf(C->a, "grad.%s", n->param[p].full);
      for (int k = 0; k < C->cm->nt; k++)
        if (C->cm->t[k].role == CT_GRAD && strcmp(C->cm->t[k].name, gname) == 0) {
          *a = (Addr){C->cm->t[k].slot, 0, 0, ld};
          return RNNC_OK;
        }
    }
  die("compile: node '%s' has no gradient for '%s'", n->name ? n->name : "?", pname);
}

/* Does a logits view read softmax node i (then dz cannot overwrite z)? */
static int has_view(const Model *md, int i, int kind)
{
  for (int j = 0; j < md->nnode; j++)
    if (md->node[j].kind == kind && md->node[j].arg[0] == i)
      return 1;
  return 0;
}

static Addr adj_alloc(Comp *C, MV *v)
{
  return C->o->grad ? ws_alloc(C, v->npos * v->d, v->d) : addr_none();
}

/* ---- forward ------------------------------------------------------------- */

static int fwd_embedding(Comp *C, int i)
{
  const MNode *n = &C->md->node[i];
  MV *v = &C->v[i];
  int64_t V;
  int st = comp_mdim(C, n->size[0], &V);
  if (st)
    return st;
  Addr W;
  param_tensor(C, n, "weight", v->d, &W);
  check_ids(C, n->arg[0], V, 0, NULL);
  v->val = ws_alloc(C, v->npos * v->d, v->d);
  v->adj = adj_alloc(C, v);
  const char *s = ksym(C, "embed");
  if ((st = mk_embed(C->cx, C->mod, s, v->npos, V, v->d, C->v[n->arg[0]].val, W, v->val, C->err, C->errlen)))
    return st;
  plan_call(C, s, v->npos, 1, 1);
  return RNNC_OK;
}

int embed_fold(Comp *C, int a, int64_t rows, EmbedFold *f)
{
  const MNode *n = &C->md->node[a];
  const MV *v = &C->v[a];
  int64_t V;
  if (C->o->nofold || n->kind != M_EMBEDDING || v->npos != rows || comp_mdim(C, n->size[0], &V) != RNNC_OK ||
      2 * V > rows)
    return 0;
  *f = (EmbedFold){.V = V, .ids = C->v[n->arg[0]].val, .grad = addr_none()};
  param_tensor(C, n, "weight", v->d, &f->weight);
  for (int p = 0; C->o->grad && p < n->nparam; p++)
    if (strcmp(n->param[p].name, "weight") == 0) {
      const char *gname = aprintf(C->a, "grad.%s", n->param[p].full);
      for (int k = 0; k < C->cm->nt; k++)
        if (C->cm->t[k].role == CT_GRAD && strcmp(C->cm->t[k].name, gname) == 0)
          f->grad = (Addr){C->cm->t[k].slot, 0, 0, v->d};
    }
  return 1;
}

/* onehot(tokens, V): rows of zeros with a one at the token id; no adjoint
 * (a function of token ids: a cell reading it skips its input's adjoint) */
static int fwd_onehot(Comp *C, int i)
{
  const MNode *n = &C->md->node[i];
  MV *v = &C->v[i];
  check_ids(C, n->arg[0], v->d, 0, NULL);
  v->val = ws_alloc(C, v->npos * v->d, v->d);
  v->adj = addr_none();
  const char *s = ksym(C, "onehot");
  int st = mk_onehot(C->cx, C->mod, s, v->npos, v->d, C->v[n->arg[0]].val, v->val, C->err, C->errlen);
  if (!st)
    plan_call(C, s, v->npos, 1, 1);
  return st;
}

static int fwd_concat(Comp *C, int i)
{
  const MNode *n = &C->md->node[i];
  MV *v = &C->v[i];
  v->val = ws_alloc(C, v->npos * v->d, v->d);
  v->adj = adj_alloc(C, v);
  int64_t off = 0;
  for (int j = 0; j < n->narg; j++) {
    const MV *a = &C->v[n->arg[j]];
    Addr y = v->val;
    y.off += off;
    int st = k_copy(C, v->npos, a->d, a->val, y, 0, 1, j == n->narg - 1);
    if (st)
      return st;
    off += a->d;
  }
  if (off != v->d)
    die("compile: concat of %lld into %lld", (long long)off, (long long)v->d);
  return RNNC_OK;
}

/* last(x): the rows of step T-1, a view. */
static int fwd_last(Comp *C, int i)
{
  MV *v = &C->v[i];
  const MV *a = &C->v[C->md->node[i].arg[0]];
  v->val = a->val;
  v->val.off += (a->T - 1) * a->B * a->val.ld;
  v->adj = adj_alloc(C, v);
  return RNNC_OK;
}

/* final(node, s): the slot of state s after the last step, a view. */
static int fwd_final(Comp *C, int i)
{
  const MNode *n = &C->md->node[i];
  MV *v = &C->v[i];
  const MV *a = &C->v[n->arg[0]];
  int s = n->stateidx;
  v->val = a->hs[s];
  if (!C->md->node[n->arg[0]].backward)
    v->val.off += a->T * a->B * a->sd[s];
  v->adj = adj_alloc(C, v);
  return RNNC_OK;
}

static int fwd_softmax(Comp *C, int i)
{
  Model *md = C->md;
  const MNode *n = &md->node[i];
  MV *v = &C->v[i];
  const MV *x = &C->v[n->arg[0]];
  int st = comp_mdim(C, n->size[0], &v->K);
  if (st)
    return st;
  int64_t K = v->K, d = x->d, np = x->npos;
  Addr W, bias;
  param_tensor(C, n, "weight", d, &W);
  param_tensor(C, n, "bias", 0, &bias);
  int wantgrad = C->o->grad && (!C->g->needgrad || C->g->needgrad[i]);
  if (wantgrad && n->target >= 0 && i != md->loss)
    return comp_fail(C, RNNC_EINPUT,
                     "model '%s': the JIT differentiates a softmax with a target only as the model's loss; "
                     "'%s' is not (use --engine interp)", md->name, n->name ? n->name : "softmax");
  v->z = ws_alloc(C, np * K, K);
  v->lse = ws_alloc(C, np, 1);
  v->probs = n->target < 0 || has_view(md, i, M_PROBS) ? ws_alloc(C, np * K, K) : addr_none();
  v->nll = v->scale = addr_none();
  Addr tgt = addr_none();
  v->fused = wantgrad && n->target >= 0;
  if (wantgrad)
    v->dz = v->fused && !has_view(md, i, M_LOGITS) ? v->z : ws_alloc(C, np * K, K);
  else
    v->dz = addr_none();
  if (n->target >= 0) {
    tgt = C->v[n->target].val;
    check_ids(C, n->target, K, 1, n);
    v->nll = ws_alloc(C, np, 1);
    v->scale = ws_alloc(C, 1, 0);
    v->val = ws_alloc(C, 1, 1);
  } else {
    v->val = v->probs;
  }
  v->adj = n->target >= 0 ? addr_none() : adj_alloc(C, v);
  if (n->target >= 0 && wantgrad) {
    v->adj = ws_alloc(C, 1, 1); /* the loss's adjoint: 1 (the root) */
  }

  /* x·W^T, with W packed once; for a token or two, W read where it is */
  const char *s;
  if (np < 4) {
    s = ksym(C, "logits_gemv");
    if ((st = mk_gemv(C->cx, C->mod, s, np, K, d, x->val, W, v->z, 0, C->o->portable, C->err, C->errlen)))
      return st;
    plan_call(C, s, K, 8, 0);
  } else {
    if ((st = k_pack(C, W, K, d, d, 1, &v->packbt)))
      return st;
    plan_call(C, "barrier", 0, 1, 1);
    GemmSpec gs = {.M = np, .N = K, .K = d, .lda = x->val.ld, .ldb = d, .ldc = K, .flags = GEMM_BT | comp_flags(C)};
    s = ksym(C, "logits");
    size_t scr = 0;
    if ((st = mk_gemm(C->cx, C->mod, C->share, s, &gs, MK_ROWS, x->val, W, v->z, v->packbt, &scr, C->err, C->errlen)))
      return st;
    need_scratch(C, scr);
    plan_call(C, s, np, 6, 0);
    plan_gemm_chunk(C, &gs, MK_ROWS);
  }
  if (v->fused) { /* scale = 1 / count, before the fused kernel reads it */
    s = ksym(C, "xent_scale");
    if ((st = mk_xent_loss(C->cx, C->mod, s, np, tgt, n->hasignore, n->ignore, addr_none(), addr_none(),
                           addr_none(), v->scale, C->err, C->errlen)))
      return st;
    plan_call(C, s, 1, 1, 0);
  }
  plan_call(C, "barrier", 0, 1, 1);
  s = ksym(C, "softmax");
  if ((st = mk_softmax(C->cx, C->mod, s, np, K, v->z, bias, v->lse, v->probs, tgt, n->hasignore, n->ignore, v->nll,
                       v->fused ? v->dz : addr_none(), v->scale, C->err, C->errlen)))
    return st;
  plan_call(C, s, np, 1, 1);
  if (n->target >= 0) {
    s = ksym(C, "xent_loss");
    if ((st = mk_xent_loss(C->cx, C->mod, s, np, tgt, n->hasignore, n->ignore, v->nll, v->val, addr_none(),
                           v->scale, C->err, C->errlen)))
      return st;
    plan_call(C, s, 1, 1, 1);
  }
  return RNNC_OK;
}

static int fwd_sum(Comp *C, int i)
{
  MV *v = &C->v[i];
  const MV *a = &C->v[C->md->node[i].arg[0]];
  v->val = ws_alloc(C, 1, 1);
  v->adj = adj_alloc(C, v);
  const char *s = ksym(C, "sum");
  int st = mk_sum(C->cx, C->mod, s, a->npos, a->d, a->val, v->val, C->err, C->errlen);
  if (!st)
    plan_call(C, s, 1, 1, 1);
  return st;
}

int node_forward(Comp *C, int i)
{
  const MNode *n = &C->md->node[i];
  MV *v = &C->v[i];
  switch (n->kind) {
  case M_INPUT: return RNNC_OK; /* in its tensor (compile.c) */
  case M_EMBEDDING: return fwd_embedding(C, i);
  case M_ONEHOT: return fwd_onehot(C, i);
  case M_CONCAT: return fwd_concat(C, i);
  case M_LAST: return fwd_last(C, i);
  case M_FINAL: return fwd_final(C, i);
  case M_SOFTMAX: return fwd_softmax(C, i);
  case M_LOGITS:
    v->val = C->v[n->arg[0]].z;
    v->adj = C->o->grad ? C->v[n->arg[0]].dz : addr_none(); /* added into dz directly */
    return RNNC_OK;
  case M_PROBS:
    v->val = C->v[n->arg[0]].probs;
    v->adj = adj_alloc(C, v);
    return RNNC_OK;
  case M_SUM: return fwd_sum(C, i);
  default: die("compile: node kind %d", n->kind);
  }
}

/* ---- backward ------------------------------------------------------------- */

static int bwd_embedding(Comp *C, int i)
{
  const MNode *n = &C->md->node[i];
  MV *v = &C->v[i];
  int64_t V;
  int st = comp_mdim(C, n->size[0], &V);
  if (st)
    return st;
  Addr dW;
  grad_tensor(C, n, "weight", v->d, &dW);
  const char *s = ksym(C, "embed_grad");
  if ((st = mk_embed_grad(C->cx, C->mod, s, v->npos, V, v->d, C->v[n->arg[0]].val, v->adj, dW, C->err,
                          C->errlen)))
    return st;
  plan_call(C, s, v->d, 1, 1);
  return RNNC_OK;
}

static int bwd_concat(Comp *C, int i)
{
  const MNode *n = &C->md->node[i];
  MV *v = &C->v[i];
  int64_t off = 0;
  for (int j = 0; j < n->narg; j++) {
    const MV *a = &C->v[n->arg[j]];
    Addr x = v->adj;
    x.off += off;
    int st = a->adj.slot >= 0 ? k_copy(C, v->npos, a->d, x, a->adj, 1, 1, 1) : RNNC_OK;
    if (st)
      return st;
    off += a->d;
  }
  return RNNC_OK;
}

static int bwd_softmax(Comp *C, int i)
{
  const MNode *n = &C->md->node[i];
  MV *v = &C->v[i];
  const MV *x = &C->v[n->arg[0]];
  int64_t K = v->K, d = x->d, np = x->npos;
  Addr W, dW, db;
  param_tensor(C, n, "weight", d, &W);
  grad_tensor(C, n, "weight", d, &dW);
  grad_tensor(C, n, "bias", 0, &db);
  int st;
  const char *s;
  if (!v->fused && n->target >= 0)
    die("compile: softmax '%s' with a target and no fused gradient", n->name ? n->name : "?");
  if (n->target < 0) { /* probs adjoint through the Jacobian */
    s = ksym(C, "softmax_jvp");
    if ((st = mk_softmax_jvp(C->cx, C->mod, s, np, K, v->probs, v->adj, v->dz, C->err, C->errlen)))
      return st;
    plan_call(C, s, np, 1, 1);
  }
  size_t scr = 0;
  if (x->adj.slot >= 0) { /* dx += dz·W */
    if ((st = k_pack(C, W, d, K, d, 0, &v->packn)))
      return st;
    plan_call(C, "barrier", 0, 1, 1);
    GemmSpec gs = {.M = np, .N = d, .K = K, .lda = K, .ldb = d, .ldc = x->adj.ld, .flags = GEMM_ACC | comp_flags(C)};
    s = ksym(C, "softmax_dx");
    if ((st = mk_gemm(C->cx, C->mod, C->share, s, &gs, MK_ROWS, v->dz, W, x->adj, v->packn, &scr, C->err, C->errlen)))
      return st;
    need_scratch(C, scr);
    plan_call(C, s, np, 6, 1);
    plan_gemm_chunk(C, &gs, MK_ROWS);
  }
  /* dW += dz^T·x, db += Σ_p dz[p] */
  if ((st = k_wgrad(C, ksym(C, "softmax_dW"), K, d, np, v->dz, x->val, dW, 1)))
    return st;
  s = ksym(C, "softmax_db");
  if ((st = mk_colsum(C->cx, C->mod, s, np, K, v->dz, db, addr_none(), 1, C->err, C->errlen)))
    return st;
  plan_call(C, s, K, 8, 1);
  return RNNC_OK;
}

int node_backward(Comp *C, int i)
{
  const MNode *n = &C->md->node[i];
  MV *v = &C->v[i];
  switch (n->kind) {
  case M_INPUT: return RNNC_OK; /* its adjoint is its gradient tensor */
  case M_ONEHOT: return RNNC_OK; /* no adjoint */
  case M_EMBEDDING: return bwd_embedding(C, i);
  case M_CONCAT: return bwd_concat(C, i);
  case M_LAST: {
    MV *a = &C->v[n->arg[0]];
    if (a->adj.slot < 0)
      return RNNC_OK;
    Addr y = a->adj;
    y.off += (a->T - 1) * a->B * a->adj.ld;
    return k_copy(C, v->npos, v->d, v->adj, y, 1, 1, 1);
  }
  case M_FINAL: /* into the adjoint of the cell node's final state */
    return k_copy(C, v->npos, v->d, v->adj, dhs_final(C, n->arg[0], n->stateidx), 1, 1, 1);
  case M_SOFTMAX: return bwd_softmax(C, i);
  case M_LOGITS: return RNNC_OK; /* its adjoint is the softmax's dz */
  case M_PROBS: return RNNC_OK;  /* the softmax reads its adjoint */
  case M_SUM: {
    MV *a = &C->v[n->arg[0]];
    if (a->adj.slot < 0)
      return RNNC_OK;
    const char *s = ksym(C, "sum_grad");
    int st = mk_bcast_acc(C->cx, C->mod, s, a->npos, a->d, v->adj, a->adj, C->err, C->errlen);
    if (!st)
      plan_call(C, s, a->npos, 1, 1);
    return st;
  }
  default: die("compile: node kind %d", n->kind);
  }
}
