/* builder_model.c — the model builder (rnnc_model_begin .. rnnc_model_end):
 * dims, inputs and nodes, verified and kept at rnnc_model_end. */
#include <stdlib.h>
#include <string.h>

#include "builder.h"

struct rnnc_model_builder {
  rnnc_ctx *ctx;
  Model *md;
  int *uses, capuses; /* per node */
};

static int mname_taken(rnnc_model_builder *mb, const char *fn, const char *name)
{
  Model *md = mb->md;
  for (int i = 0; i < md->nnode; i++)
    if (md->node[i].name && strcmp(md->node[i].name, name) == 0) {
      api_fail(mb->ctx, RNNC_EMISUSE, "%s: duplicate definition of '%s' in model '%s'", fn, name,
               md->name);
      return 1;
    }
  return 0;
}

/* A new node name. Nodes with parameters (needname) must be named. */
static int newnode(rnnc_model_builder *mb, const char *fn, const char *name, const char *needname)
{
  if (!name && !needname)
    return 1;
  if (!name)
    return api_fail(mb->ctx, RNNC_EMISUSE,
                    "%s: %s node has parameters (named <node>.<param>) and needs a name", fn,
                    needname),
           0;
  if (!b_checkname(mb->ctx, fn, name))
    return 0;
  if (strcmp(name, "backward") == 0)
    return api_fail(mb->ctx, RNNC_EMISUSE, "%s: 'backward' is a keyword and cannot name a node", fn),
           0;
  return !mname_taken(mb, fn, name);
}

/* Model operands: as useargs for cells. */
static int usenodes(rnnc_model_builder *mb, const char *fn, int n, const rnnc_node *args)
{
  Model *md = mb->md;
  if (n > 0 && !args)
    return api_fail(mb->ctx, RNNC_EMISUSE, "%s: the operands are NULL", fn), 0;
  for (int i = 0; i < n; i++) {
    int a = args[i];
    if (a < 0 || a >= md->nnode)
      return api_fail(mb->ctx, RNNC_EMISUSE, "%s: %d is not a node of model '%s'", fn, a, md->name), 0;
    int again = 0;
    for (int j = 0; j < i; j++)
      again += args[j] == a;
    if (!md->node[a].name && mb->uses[a] + again > 0)
      return api_fail(mb->ctx, RNNC_EMISUSE,
                      "%s: node %d has no name and is already used; name it to use it twice", fn, a),
             0;
  }
  for (int i = 0; i < n; i++)
    mb->uses[args[i]]++;
  return 1;
}

static int addmnode(rnnc_model_builder *mb, int kind, const char *name, Loc loc, int narg,
                    const int *args)
{
  Module *m = mb->ctx->m;
  int id = model_add(m, mb->md, kind, name, loc);
  MNode *n = &mb->md->node[id];
  n->narg = narg;
  if (narg) {
    n->arg = aalloc(m->arena, (size_t)narg * sizeof *n->arg);
    memcpy(n->arg, args, (size_t)narg * sizeof *n->arg);
  }
  b_track(m->arena, &mb->uses, &mb->capuses, id);
  return id;
}

int rnnc_model_begin(rnnc_ctx *ctx, const char *name, rnnc_model_builder **mb)
{
  if (!ctx)
    return RNNC_EMISUSE;
  Loc loc = b_call(ctx, "rnnc_model_begin(%s)", b_q(ctx, name));
  const char *fn = "rnnc_model_begin";
  if (!mb)
    return api_fail(ctx, RNNC_EMISUSE, "%s: mb is NULL", fn);
  *mb = NULL;
  if (ctx->open)
    return api_fail(ctx, RNNC_EMISUSE, "%s: a %s builder is already open on this context", fn,
                    ctx->openkind == 'c' ? "cell" : "model");
  if (!b_checkname(ctx, fn, name))
    return RNNC_EMISUSE;
  if (model_find(ctx->m, name))
    return api_fail(ctx, RNNC_EMISUSE, "%s: duplicate definition of model '%s'", fn, name);
  rnnc_model_builder *b = calloc(1, sizeof *b);
  if (!b)
    return api_fail(ctx, RNNC_ENOMEM, "%s: out of memory", fn);
  b->ctx = ctx;
  b->md = model_new(ctx->m, name, loc);
  ctx->open = b;
  ctx->openkind = 'm';
  *mb = b;
  return b_ok(ctx);
}

int rnnc_model_dim(rnnc_model_builder *mb, const char *name, long def)
{
  if (!mb)
    return RNNC_EMISUSE;
  rnnc_ctx *ctx = mb->ctx;
  Model *md = mb->md;
  const char *fn = "rnnc_model_dim";
  Loc loc = b_call(ctx, "rnnc_model_dim(%s, %ld)", b_q(ctx, name), def);
  if (!b_checkname(ctx, fn, name))
    return RNNC_EMISUSE;
  for (int i = 0; i < md->ndim; i++)
    if (strcmp(md->dim[i].name, name) == 0)
      return api_fail(ctx, RNNC_EMISUSE, "%s: duplicate definition of dimension '%s'", fn, name);
  if (def <= 0 && def != RNNC_NODEFAULT)
    return api_fail(ctx, RNNC_EMISUSE,
                    "%s: the default of dimension '%s' must be positive (or RNNC_NODEFAULT), got %ld",
                    fn, name, def);
  MDim d = {intern(ctx->m->names, name, strlen(name)), loc, def != RNNC_NODEFAULT,
            def != RNNC_NODEFAULT ? def : 0};
  APUSH(ctx->m->arena, md->dim, md->ndim, md->capdim, d);
  return b_ok(ctx);
}

int rnnc_model_input(rnnc_model_builder *mb, const char *name, int dtype, const char *shape,
                     rnnc_node *n)
{
  if (!mb)
    return RNNC_EMISUSE;
  rnnc_ctx *ctx = mb->ctx;
  const char *fn = "rnnc_model_input";
  Loc loc = b_call(ctx, "rnnc_model_input(%s, %s, %s)", b_q(ctx, name),
                   dtype == RNNC_I32 ? "RNNC_I32" : dtype == RNNC_F32 ? "RNNC_F32" : "?",
                   b_q(ctx, shape));
  if (!n)
    return api_fail(ctx, RNNC_EMISUSE, "%s: n is NULL", fn);
  if (!newnode(mb, fn, name, "an input"))
    return RNNC_EMISUSE;
  if (dtype != RNNC_I32 && dtype != RNNC_F32)
    return api_fail(ctx, RNNC_EMISUSE, "%s: the type of input '%s' must be RNNC_I32 or RNNC_F32",
                    fn, name);
  Shape s;
  int rc = b_getshape(ctx, fn, aprintf(ctx->m->arena, "input '%s'", name), shape, &s);
  if (rc != RNNC_OK)
    return rc;
  *n = addmnode(mb, M_INPUT, name, loc, 0, NULL);
  mb->md->node[*n].dtype = dtype;
  mb->md->node[*n].shape = s;
  return b_ok(ctx);
}

int rnnc_embedding(rnnc_model_builder *mb, const char *name, rnnc_node tokens, const char *vocab,
                   const char *size, rnnc_node *n)
{
  if (!mb)
    return RNNC_EMISUSE;
  rnnc_ctx *ctx = mb->ctx;
  const char *fn = "rnnc_embedding";
  Loc loc = b_call(ctx, "rnnc_embedding(%s, %d, %s, %s)", b_q(ctx, name), tokens, b_q(ctx, vocab),
                   b_q(ctx, size));
  if (!n)
    return api_fail(ctx, RNNC_EMISUSE, "%s: n is NULL", fn);
  Dim v, e;
  int rc;
  if (!newnode(mb, fn, name, "an embedding"))
    return RNNC_EMISUSE;
  if ((rc = b_getdim(ctx, fn, "the vocabulary", vocab, &v)) != RNNC_OK ||
      (rc = b_getdim(ctx, fn, "the embedding size", size, &e)) != RNNC_OK)
    return rc;
  if (!usenodes(mb, fn, 1, &tokens))
    return RNNC_EMISUSE;
  *n = addmnode(mb, M_EMBEDDING, name, loc, 1, &tokens);
  mb->md->node[*n].size[0] = v;
  mb->md->node[*n].size[1] = e;
  return b_ok(ctx);
}

/* Parse bindings "H = 128, I = 2*E" into n (none for NULL or blanks). */
static int getbinds(rnnc_model_builder *mb, const char *fn, const char *bind, MNode *n, Loc loc)
{
  rnnc_ctx *ctx = mb->ctx;
  Module *m = ctx->m;
  n->nbind = 0;
  if (!bind || bind[strspn(bind, " \t")] == 0)
    return RNNC_OK;
  int cap = 0;
  for (const char *p = bind;; p++) {
    const char *e = p + strcspn(p, ",");
    const char *eq = memchr(p, '=', (size_t)(e - p));
    const char *s = p, *t = eq ? eq : e;
    while (s < t && (*s == ' ' || *s == '\t'))
      s++;
    while (t > s && (t[-1] == ' ' || t[-1] == '\t'))
      t--;
    if (!eq || s == t)
      return api_fail(ctx, RNNC_ESYNTAX, "%s: bad binding \"%.*s\" in \"%s\": write NAME = dim",
                      fn, (int)(e - p), p, bind);
    char *name = astrndup(m->arena, s, (size_t)(t - s));
    if (!b_checkname(ctx, fn, name))
      return RNNC_EMISUSE;
    for (int b = 0; b < n->nbind; b++)
      if (strcmp(n->bindname[b], name) == 0)
        return api_fail(ctx, RNNC_EMISUSE, "%s: '%s' is bound twice in \"%s\"", fn, name, bind);
    Dim d;
    int rc = b_getdim(ctx, fn, aprintf(m->arena, "'%s'", name),
                      astrndup(m->arena, eq + 1, (size_t)(e - eq - 1)), &d);
    if (rc != RNNC_OK)
      return rc;
    int c2 = cap, c3 = cap;
    agrow(m->arena, (void **)&n->bindname, &cap, n->nbind + 1, sizeof *n->bindname);
    agrow(m->arena, (void **)&n->bindval, &c2, n->nbind + 1, sizeof *n->bindval);
    agrow(m->arena, (void **)&n->bindloc, &c3, n->nbind + 1, sizeof *n->bindloc);
    n->bindname[n->nbind] = intern(m->names, name, strlen(name));
    n->bindval[n->nbind] = d;
    n->bindloc[n->nbind] = loc;
    n->nbind++;
    if (!*e)
      return RNNC_OK;
    p = e;
  }
}

int rnnc_apply(rnnc_model_builder *mb, const char *name, const char *cell, int nin,
               const rnnc_node *in, const char *bind, int flags, rnnc_node *n)
{
  if (!mb)
    return RNNC_EMISUSE;
  rnnc_ctx *ctx = mb->ctx;
  Module *m = ctx->m;
  const char *fn = "rnnc_apply";
  Loc loc = b_call(ctx, "rnnc_apply(%s, %s, %s, %s, %d)", b_q(ctx, name), b_q(ctx, cell),
                   b_ids(ctx, nin > 0 ? nin : 0, in), b_q(ctx, bind), flags);
  if (!n)
    return api_fail(ctx, RNNC_EMISUSE, "%s: n is NULL", fn);
  if (!newnode(mb, fn, name, "a cell"))
    return RNNC_EMISUSE;
  if (!cell)
    return api_fail(ctx, RNNC_EMISUSE, "%s: cell is NULL", fn);
  if (!cell_find(m, cell))
    return api_fail(ctx, RNNC_EMISUSE, "%s: unknown cell '%s'", fn, cell);
  if (flags & ~RNNC_BACKWARD)
    return api_fail(ctx, RNNC_EMISUSE, "%s: unknown flags %#x", fn, (unsigned)(flags & ~RNNC_BACKWARD));
  if (nin < 1)
    return api_fail(ctx, RNNC_EMISUSE, "%s: a cell needs at least one input, got %d", fn, nin);
  MNode tmp = {0};
  int rc = getbinds(mb, fn, bind, &tmp, loc);
  if (rc != RNNC_OK)
    return rc;
  if (!usenodes(mb, fn, nin, in))
    return RNNC_EMISUSE;
  *n = addmnode(mb, M_CELL, name, loc, nin, in);
  MNode *nd = &mb->md->node[*n];
  nd->cellname = intern(m->names, cell, strlen(cell));
  nd->cellloc = loc;
  nd->nbind = tmp.nbind;
  nd->bindname = tmp.bindname;
  nd->bindval = tmp.bindval;
  nd->bindloc = tmp.bindloc;
  nd->backward = (flags & RNNC_BACKWARD) != 0;
  return b_ok(ctx);
}

/* Node n of this builder, of kind kind, for fn's first argument. */
static MNode *thenode(rnnc_model_builder *mb, const char *fn, rnnc_node n, int kind)
{
  Model *md = mb->md;
  if (n < 0 || n >= md->nnode)
    return api_fail(mb->ctx, RNNC_EMISUSE, "%s: %d is not a node of model '%s'", fn, n, md->name),
           NULL;
  if (md->node[n].kind != kind)
    return api_fail(mb->ctx, RNNC_EMISUSE, "%s: node %d ('%s') is not a %s node", fn, n,
                    md->node[n].name ? md->node[n].name : mkind_name[md->node[n].kind],
                    mkind_name[kind]),
           NULL;
  return &md->node[n];
}

/* Operands made after their user n are refused: the graph reads in order. */
static int before(rnnc_model_builder *mb, const char *fn, rnnc_node n, int cnt, const rnnc_node *a)
{
  for (int i = 0; i < cnt; i++)
    if (a && a[i] >= n && a[i] < mb->md->nnode)
      return api_fail(mb->ctx, RNNC_EMISUSE, "%s: node %d is not made before node %d; make it first",
                      fn, a[i], n),
             0;
  return 1;
}

int rnnc_apply_init(rnnc_model_builder *mb, rnnc_node n, int ninit, const rnnc_node *init)
{
  if (!mb)
    return RNNC_EMISUSE;
  rnnc_ctx *ctx = mb->ctx;
  const char *fn = "rnnc_apply_init";
  b_call(ctx, "rnnc_apply_init(%d, %s)", n, b_ids(ctx, ninit > 0 ? ninit : 0, init));
  MNode *nd = thenode(mb, fn, n, M_CELL);
  if (!nd)
    return RNNC_EMISUSE;
  if (nd->ninit || nd->initfrom >= 0)
    return api_fail(ctx, RNNC_EMISUSE, "%s: '%s' already has an initial state", fn, nd->name);
  if (ninit < 1)
    return api_fail(ctx, RNNC_EMISUSE, "%s: init needs one node per state, got %d", fn, ninit);
  if (!before(mb, fn, n, ninit, init) || !usenodes(mb, fn, ninit, init))
    return RNNC_EMISUSE;
  nd->init = aalloc(ctx->m->arena, (size_t)ninit * sizeof *nd->init);
  memcpy(nd->init, init, (size_t)ninit * sizeof *nd->init);
  nd->ninit = ninit;
  return b_ok(ctx);
}

int rnnc_apply_init_from(rnnc_model_builder *mb, rnnc_node n, rnnc_node from)
{
  if (!mb)
    return RNNC_EMISUSE;
  rnnc_ctx *ctx = mb->ctx;
  const char *fn = "rnnc_apply_init_from";
  b_call(ctx, "rnnc_apply_init_from(%d, %d)", n, from);
  MNode *nd = thenode(mb, fn, n, M_CELL);
  if (!nd)
    return RNNC_EMISUSE;
  if (nd->ninit || nd->initfrom >= 0)
    return api_fail(ctx, RNNC_EMISUSE, "%s: '%s' already has an initial state", fn, nd->name);
  if (!before(mb, fn, n, 1, &from) || !thenode(mb, fn, from, M_CELL) ||
      !usenodes(mb, fn, 1, &from))
    return RNNC_EMISUSE;
  nd->initfrom = from;
  return b_ok(ctx);
}

int rnnc_apply_mask(rnnc_model_builder *mb, rnnc_node n, rnnc_node mask)
{
  if (!mb)
    return RNNC_EMISUSE;
  rnnc_ctx *ctx = mb->ctx;
  const char *fn = "rnnc_apply_mask";
  b_call(ctx, "rnnc_apply_mask(%d, %d)", n, mask);
  MNode *nd = thenode(mb, fn, n, M_CELL);
  if (!nd)
    return RNNC_EMISUSE;
  if (nd->hasmask)
    return api_fail(ctx, RNNC_EMISUSE, "%s: '%s' already has a mask", fn, nd->name);
  if (!before(mb, fn, n, 1, &mask) || !usenodes(mb, fn, 1, &mask))
    return RNNC_EMISUSE;
  Module *m = ctx->m;
  nd = &mb->md->node[n];
  int *arg = aalloc(m->arena, (size_t)(nd->narg + 1) * sizeof *arg);
  if (nd->narg)
    memcpy(arg, nd->arg, (size_t)nd->narg * sizeof *arg);
  arg[nd->narg++] = mask; /* the mask is the last operand */
  nd->arg = arg;
  nd->hasmask = 1;
  return b_ok(ctx);
}

int rnnc_onehot(rnnc_model_builder *mb, const char *name, rnnc_node tokens, const char *vocab, rnnc_node *n)
{
  if (!mb)
    return RNNC_EMISUSE;
  rnnc_ctx *ctx = mb->ctx;
  const char *fn = "rnnc_onehot";
  Loc loc = b_call(ctx, "rnnc_onehot(%s, %d, %s)", b_q(ctx, name), tokens, b_q(ctx, vocab));
  if (!n)
    return api_fail(ctx, RNNC_EMISUSE, "%s: n is NULL", fn);
  Dim v;
  int rc;
  if (!newnode(mb, fn, name, NULL))
    return RNNC_EMISUSE;
  if ((rc = b_getdim(ctx, fn, "the vocabulary", vocab, &v)) != RNNC_OK)
    return rc;
  if (!usenodes(mb, fn, 1, &tokens))
    return RNNC_EMISUSE;
  *n = addmnode(mb, M_ONEHOT, name, loc, 1, &tokens);
  mb->md->node[*n].size[0] = v;
  return b_ok(ctx);
}

/* A node with operands and no other field: concat, last, logits, probs, sum. */
static int simple(rnnc_model_builder *mb, const char *fn, int kind, const char *name, int nargs,
                  const rnnc_node *args, rnnc_node *n)
{
  if (!mb)
    return RNNC_EMISUSE;
  rnnc_ctx *ctx = mb->ctx;
  Loc loc = b_call(ctx, "%s(%s, %s)", fn, b_q(ctx, name), b_ids(ctx, nargs > 0 ? nargs : 0, args));
  if (!n)
    return api_fail(ctx, RNNC_EMISUSE, "%s: n is NULL", fn);
  if (kind == M_CONCAT && nargs < 2)
    return api_fail(ctx, RNNC_EMISUSE, "%s: 'concat' takes at least 2 operands, got %d", fn, nargs);
  if (!newnode(mb, fn, name, NULL) || !usenodes(mb, fn, nargs, args))
    return RNNC_EMISUSE;
  *n = addmnode(mb, kind, name, loc, nargs, args);
  return b_ok(ctx);
}

int rnnc_concat(rnnc_model_builder *mb, const char *name, int nargs, const rnnc_node *args,
                rnnc_node *n)
{
  return simple(mb, "rnnc_concat", M_CONCAT, name, nargs, args, n);
}

int rnnc_last(rnnc_model_builder *mb, const char *name, rnnc_node x, rnnc_node *n)
{
  return simple(mb, "rnnc_last", M_LAST, name, 1, &x, n);
}

int rnnc_logits(rnnc_model_builder *mb, const char *name, rnnc_node s, rnnc_node *n)
{
  return simple(mb, "rnnc_logits", M_LOGITS, name, 1, &s, n);
}

int rnnc_probs(rnnc_model_builder *mb, const char *name, rnnc_node s, rnnc_node *n)
{
  return simple(mb, "rnnc_probs", M_PROBS, name, 1, &s, n);
}

int rnnc_sum(rnnc_model_builder *mb, const char *name, rnnc_node x, rnnc_node *n)
{
  return simple(mb, "rnnc_sum", M_SUM, name, 1, &x, n);
}

int rnnc_final(rnnc_model_builder *mb, const char *name, rnnc_node cellnode, const char *state,
               rnnc_node *n)
{
  if (!mb)
    return RNNC_EMISUSE;
  rnnc_ctx *ctx = mb->ctx;
  const char *fn = "rnnc_final";
  Loc loc = b_call(ctx, "rnnc_final(%s, %d, %s)", b_q(ctx, name), cellnode, b_q(ctx, state));
  if (!n)
    return api_fail(ctx, RNNC_EMISUSE, "%s: n is NULL", fn);
  if (!newnode(mb, fn, name, NULL) || !thenode(mb, fn, cellnode, M_CELL) ||
      !b_checkname(ctx, fn, state) || !usenodes(mb, fn, 1, &cellnode))
    return RNNC_EMISUSE;
  *n = addmnode(mb, M_FINAL, name, loc, 1, &cellnode);
  mb->md->node[*n].statename = intern(ctx->m->names, state, strlen(state));
  return b_ok(ctx);
}

int rnnc_softmax(rnnc_model_builder *mb, const char *name, rnnc_node x, const char *classes,
                 rnnc_node target, rnnc_node *n)
{
  if (!mb)
    return RNNC_EMISUSE;
  rnnc_ctx *ctx = mb->ctx;
  const char *fn = "rnnc_softmax";
  Loc loc = b_call(ctx, "rnnc_softmax(%s, %d, %s, %d)", b_q(ctx, name), x, b_q(ctx, classes),
                   target);
  if (!n)
    return api_fail(ctx, RNNC_EMISUSE, "%s: n is NULL", fn);
  if (!newnode(mb, fn, name, "a softmax"))
    return RNNC_EMISUSE;
  Dim k;
  int rc = b_getdim(ctx, fn, "the number of classes", classes, &k);
  if (rc != RNNC_OK)
    return rc;
  rnnc_node args[2] = {x, target};
  if (!usenodes(mb, fn, target == -1 ? 1 : 2, args))
    return RNNC_EMISUSE;
  *n = addmnode(mb, M_SOFTMAX, name, loc, 1, &x);
  mb->md->node[*n].size[0] = k;
  mb->md->node[*n].target = target;
  return b_ok(ctx);
}

int rnnc_softmax_ignore(rnnc_model_builder *mb, rnnc_node n, long index)
{
  if (!mb)
    return RNNC_EMISUSE;
  rnnc_ctx *ctx = mb->ctx;
  b_call(ctx, "rnnc_softmax_ignore(%d, %ld)", n, index);
  MNode *nd = thenode(mb, "rnnc_softmax_ignore", n, M_SOFTMAX);
  if (!nd)
    return RNNC_EMISUSE;
  nd->hasignore = 1;
  nd->ignore = index;
  return b_ok(ctx);
}

int rnnc_model_output(rnnc_model_builder *mb, rnnc_node n)
{
  if (!mb)
    return RNNC_EMISUSE;
  rnnc_ctx *ctx = mb->ctx;
  Model *md = mb->md;
  const char *fn = "rnnc_model_output";
  Loc loc = b_call(ctx, "rnnc_model_output(%d)", n);
  if (n < 0 || n >= md->nnode)
    return api_fail(ctx, RNNC_EMISUSE, "%s: %d is not a node of model '%s'", fn, n, md->name);
  if (!md->node[n].name)
    return api_fail(ctx, RNNC_EMISUSE, "%s: node %d ('%s') has no name; an output must be named",
                    fn, n, mkind_name[md->node[n].kind]);
  for (int i = 0; i < md->noutput; i++)
    if (md->output[i] == n)
      return api_fail(ctx, RNNC_EMISUSE, "%s: '%s' is already an output", fn, md->node[n].name);
  int cap = md->capoutput;
  agrow(ctx->m->arena, (void **)&md->outputloc, &cap, md->noutput + 1, sizeof *md->outputloc);
  md->outputloc[md->noutput] = loc;
  APUSH(ctx->m->arena, md->output, md->noutput, md->capoutput, n);
  mb->uses[n]++;
  return b_ok(ctx);
}

void b_model_drop(rnnc_model_builder *mb)
{
  Module *m = mb->ctx->m;
  if (m->nmodel == 0 || m->model[m->nmodel - 1] != mb->md)
    die("builder: model '%s' is not the module's last", mb->md->name);
  m->nmodel--;
  mb->ctx->open = NULL;
  free(mb);
}

int rnnc_model_end(rnnc_model_builder *mb)
{
  if (!mb)
    return RNNC_EMISUSE;
  rnnc_ctx *ctx = mb->ctx;
  Model *md = mb->md;
  b_call(ctx, "rnnc_model_end()");
  for (int i = 0; i < md->nnode; i++)
    if (!md->node[i].name && mb->uses[i] == 0) {
      const char *what = mkind_name[md->node[i].kind];
      b_model_drop(mb);
      return api_fail(ctx, RNNC_EMISUSE,
                      "rnnc_model_end: node %d ('%s') of model '%s' has no name and is never used",
                      i, what, md->name);
    }
  int mark = ctx->m->diags.n;
  int rc = verify_model(ctx->m, md);
  if (rc != RNNC_OK) {
    b_model_drop(mb);
    return api_diags(ctx, mark, rc);
  }
  ctx->open = NULL;
  free(mb);
  return api_diags(ctx, mark, RNNC_OK);
}
