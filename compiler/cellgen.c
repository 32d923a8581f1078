/* cellgen.c — LLVM IR for one step of a cell over a batch of rows.
 * require: a verified cell, its dims bound. produce: a module holding
 *   void sym(const float *const *in, float *const *out, int64_t nrows)
 * (the ABI is in ir.h, "compiler/cellgen.c"), with every dim a compile-time
 * constant. Each node is one loop nest over rows and elements, in node
 * order, one emitter per op kind (gen_ew, gen_matvec, ...): plain scalar
 * float32 loops that the O3 pipeline vectorizes where it can; tanh, exp and
 * log call SLEEF's scalar ≤ 1-ulp functions, sigmoid is 1 / (1 + exp(-x)).
 * Sums run in index order, as in the interpreter (ir/interp.c). Nothing here
 * is JIT-specific: the module has no triple or data layout until a back end
 * gives it one. */
#include <string.h>

#include <llvm-c/Core.h>

#include "ir.h"

typedef struct Gen {
  IRB ir;
  const Cell *c;
  long *numel;        /* per node: elements per row */
  LLVMValueRef *base; /* per node: its buffer (float *) */
  LLVMValueRef nrows;
} Gen;

static int isleaf(int op) { return op == OP_INPUT || op == OP_STATE || op == OP_PARAM; }

int cellgen_nin(const Cell *c) { return c->ninput + c->nstate + c->nparam; }

int cellgen_nout(const Cell *c)
{
  int n = 0;
  for (int i = 0; i < c->nnode; i++)
    n += !isleaf(c->node[i].op);
  return n;
}

/* ---- addressing ------------------------------------------------------------ */

/* &node[row r][e]: a param is shared by every row. */
static LLVMValueRef addr(Gen *g, int node, LLVMValueRef r, LLVMValueRef e)
{
  IRB *ir = &g->ir;
  LLVMValueRef off = e;
  if (g->c->node[node].op != OP_PARAM)
    off = LLVMBuildNSWAdd(ir->b, LLVMBuildNSWMul(ir->b, r, irb_i64(ir, g->numel[node]), ""), e, "");
  return LLVMBuildInBoundsGEP2(ir->b, ir->f32, g->base[node], &off, 1, "");
}

static LLVMValueRef load(Gen *g, int node, LLVMValueRef r, LLVMValueRef e)
{
  IRB *ir = &g->ir;
  return LLVMBuildLoad2(ir->b, ir->f32, addr(g, node, r, e), "");
}

static void store(Gen *g, LLVMValueRef v, int node, LLVMValueRef r, LLVMValueRef e)
{
  IRB *ir = &g->ir;
  LLVMBuildStore(ir->b, v, addr(g, node, r, e));
}

/* ---- one emitter per op kind ---------------------------------------------- */

/* const [] and zeros [d]: y[r, e] = value */
static void gen_fill(Gen *g, int i, double v)
{
  IRB *ir = &g->ir;
  IRLoop lr, le;
  LLVMValueRef r = irb_loop_begin(ir, &lr, irb_i64(ir, 0), g->nrows, 1, "row");
  LLVMValueRef e = irb_loop_begin(ir, &le, irb_i64(ir, 0), irb_i64(ir, g->numel[i]), 1, "e");
  store(g, irb_f32(ir, v), i, r, e);
  irb_loop_end(ir, &le);
  irb_loop_end(ir, &lr);
}

/* The scalar value of elementwise op on a (and b), float32. */
static LLVMValueRef ew(Gen *g, int op, LLVMValueRef a, LLVMValueRef b)
{
  IRB *ir = &g->ir;
  LLVMBuilderRef B = ir->b;
  switch (op) {
  case OP_ADD: return LLVMBuildFAdd(B, a, b, "");
  case OP_SUB: return LLVMBuildFSub(B, a, b, "");
  case OP_MUL: return LLVMBuildFMul(B, a, b, "");
  case OP_DIV: return LLVMBuildFDiv(B, a, b, "");
  case OP_NEG: return LLVMBuildFNeg(B, a, "");
  case OP_SIGMOID: {
    LLVMValueRef ex = irb_call1(ir, "Sleef_expf_u10", ir->f32, LLVMBuildFNeg(B, a, ""));
    return LLVMBuildFDiv(B, irb_f32(ir, 1), LLVMBuildFAdd(B, irb_f32(ir, 1), ex, ""), "");
  }
  case OP_TANH: return irb_call1(ir, "Sleef_tanhf_u10", ir->f32, a);
  case OP_EXP: return irb_call1(ir, "Sleef_expf_u10", ir->f32, a);
  case OP_LOG: return irb_call1(ir, "Sleef_logf_u10", ir->f32, a);
  case OP_RELU: /* a > 0 ? a : 0, NaN -> 0 as in C */
    return LLVMBuildSelect(B, LLVMBuildFCmp(B, LLVMRealOGT, a, irb_f32(ir, 0), ""), a, irb_f32(ir, 0), "");
  case OP_STEP:
    return LLVMBuildSelect(B, LLVMBuildFCmp(B, LLVMRealOGT, a, irb_f32(ir, 0), ""), irb_f32(ir, 1), irb_f32(ir, 0), "");
  }
  die("cellgen: op '%s' is not elementwise", opinfo[op].spelling);
}

/* y[r, e] = op(a[r, e], b[r, e]); an operand of one element is broadcast. */
static void gen_ew(Gen *g, int i)
{
  IRB *ir = &g->ir;
  const Node *nd = &g->c->node[i];
  int a = nd->arg[0], b = nd->narg == 2 ? nd->arg[1] : a;
  IRLoop lr, le;
  LLVMValueRef r = irb_loop_begin(ir, &lr, irb_i64(ir, 0), g->nrows, 1, "row");
  LLVMValueRef e = irb_loop_begin(ir, &le, irb_i64(ir, 0), irb_i64(ir, g->numel[i]), 1, "e");
  LLVMValueRef va = load(g, a, r, g->numel[a] == 1 ? irb_i64(ir, 0) : e);
  LLVMValueRef vb = nd->narg == 2 ? load(g, b, r, g->numel[b] == 1 ? irb_i64(ir, 0) : e) : NULL;
  store(g, ew(g, nd->op, va, vb), i, r, e);
  irb_loop_end(ir, &le);
  irb_loop_end(ir, &lr);
}

/* A [m, n] @ v [n] -> y [m]:      y[i] = Σ_j A[i, j] v[j]   (transposed: 0)
 * matvec_t(A [m, n], v [m]) -> y [n]: y[j] = Σ_i A[i, j] v[i] (transposed: 1)
 * The sum runs over the inner index in increasing order. */
static void gen_matvec(Gen *g, int i, int transposed)
{
  IRB *ir = &g->ir;
  const Node *nd = &g->c->node[i];
  int A = nd->arg[0], v = nd->arg[1];
  long ncol = g->numel[A] / (transposed ? g->numel[v] : g->numel[i]); /* n */
  long nout = g->numel[i], nin = g->numel[v];
  LLVMValueRef acc = irb_alloca(ir, ir->f32, "acc"); /* promoted to a register by O3 */
  IRLoop lr, lo, lk;
  LLVMValueRef r = irb_loop_begin(ir, &lr, irb_i64(ir, 0), g->nrows, 1, "row");
  LLVMValueRef o = irb_loop_begin(ir, &lo, irb_i64(ir, 0), irb_i64(ir, nout), 1, "o");
  LLVMBuildStore(ir->b, irb_f32(ir, 0), acc);
  LLVMValueRef k = irb_loop_begin(ir, &lk, irb_i64(ir, 0), irb_i64(ir, nin), 1, "k");
  /* element A[i, j]: row-major, n columns */
  LLVMValueRef ij = transposed ? LLVMBuildNSWAdd(ir->b, LLVMBuildNSWMul(ir->b, k, irb_i64(ir, ncol), ""), o, "")
                               : LLVMBuildNSWAdd(ir->b, LLVMBuildNSWMul(ir->b, o, irb_i64(ir, ncol), ""), k, "");
  LLVMValueRef prod = LLVMBuildFMul(ir->b, load(g, A, r, ij), load(g, v, r, k), "");
  LLVMBuildStore(ir->b, LLVMBuildFAdd(ir->b, LLVMBuildLoad2(ir->b, ir->f32, acc, ""), prod, ""), acc);
  irb_loop_end(ir, &lk);
  store(g, LLVMBuildLoad2(ir->b, ir->f32, acc, ""), i, r, o);
  irb_loop_end(ir, &lo);
  irb_loop_end(ir, &lr);
}

/* outer(a [m], b [n]) -> Y [m, n]: Y[i, j] = a[i] b[j] */
static void gen_outer(Gen *g, int i)
{
  IRB *ir = &g->ir;
  const Node *nd = &g->c->node[i];
  int a = nd->arg[0], b = nd->arg[1];
  IRLoop lr, li, lj;
  LLVMValueRef r = irb_loop_begin(ir, &lr, irb_i64(ir, 0), g->nrows, 1, "row");
  LLVMValueRef x = irb_loop_begin(ir, &li, irb_i64(ir, 0), irb_i64(ir, g->numel[a]), 1, "i");
  LLVMValueRef y = irb_loop_begin(ir, &lj, irb_i64(ir, 0), irb_i64(ir, g->numel[b]), 1, "j");
  LLVMValueRef e = LLVMBuildNSWAdd(ir->b, LLVMBuildNSWMul(ir->b, x, irb_i64(ir, g->numel[b]), ""), y, "");
  store(g, LLVMBuildFMul(ir->b, load(g, a, r, x), load(g, b, r, y), ""), i, r, e);
  irb_loop_end(ir, &lj);
  irb_loop_end(ir, &li);
  irb_loop_end(ir, &lr);
}

/* y[r, dst + e] = a[r, src + e] for e < n: split, slice and concat. */
static void gen_copy(Gen *g, int y, long dst, int a, long src, long n)
{
  IRB *ir = &g->ir;
  IRLoop lr, le;
  LLVMValueRef r = irb_loop_begin(ir, &lr, irb_i64(ir, 0), g->nrows, 1, "row");
  LLVMValueRef e = irb_loop_begin(ir, &le, irb_i64(ir, 0), irb_i64(ir, n), 1, "e");
  LLVMValueRef v = load(g, a, r, LLVMBuildNSWAdd(ir->b, e, irb_i64(ir, src), ""));
  store(g, v, y, r, LLVMBuildNSWAdd(ir->b, e, irb_i64(ir, dst), ""));
  irb_loop_end(ir, &le);
  irb_loop_end(ir, &lr);
}

static void gen_node(Gen *g, int i, long slicestart)
{
  const Node *nd = &g->c->node[i];
  switch (opinfo[nd->op].shape_rule) {
  case SH_LEAF:
    if (nd->op == OP_CONST)
      gen_fill(g, i, (double)(float)nd->cval);
    else if (nd->op == OP_ZEROS)
      gen_fill(g, i, 0);
    break; /* input, state, param: given */
  case SH_EW: gen_ew(g, i); break;
  case SH_MATVEC: gen_matvec(g, i, 0); break;
  case SH_MATVECT: gen_matvec(g, i, 1); break;
  case SH_OUTER: gen_outer(g, i); break;
  case SH_SPLIT: gen_copy(g, i, 0, nd->arg[0], nd->k * g->numel[i], g->numel[i]); break;
  case SH_SLICE: gen_copy(g, i, 0, nd->arg[0], slicestart, g->numel[i]); break;
  case SH_CONCAT: {
    long off = 0;
    for (int j = 0; j < nd->narg; j++) {
      gen_copy(g, i, off, nd->arg[j], 0, g->numel[nd->arg[j]]);
      off += g->numel[nd->arg[j]];
    }
    if (off != g->numel[i])
      die("cellgen: concat of %ld elements into %ld", off, g->numel[i]);
    break;
  }
  default: die("cellgen: op '%s' has no code generator", opinfo[nd->op].spelling);
  }
}

/* ---- sizes ------------------------------------------------------------------ */

/* For messages: the node's name, or its op for an anonymous node. */
static const char *nodename(Arena *a, const Node *nd)
{
  return nd->name ? aprintf(a, "node '%s'", nd->name) : aprintf(a, "an anonymous '%s'", opinfo[nd->op].spelling);
}

static int evaldim(const Cell *c, Dim d, const Env *env, long *v, char *err, size_t errlen)
{
  const char *bad = NULL;
  if (!dim_eval(d, env, v, &bad)) {
    snprintf(err, errlen, "cell '%s': dimension '%s' is not bound", c->name, bad);
    return RNNC_EINPUT;
  }
  return RNNC_OK;
}

/* numel of every node, and each slice's start; RNNC_ESHAPE on a negative
 * size or a slice past the end of its operand. */
static int sizes(Arena *a, const Cell *c, const Env *env, long *numel, long *start, char *err, size_t errlen)
{
  for (int i = 0; i < c->nnode; i++) {
    const Node *nd = &c->node[i];
    long n = 1, v;
    for (int k = 0; k < nd->shape.rank; k++) {
      int rc = evaldim(c, nd->shape.d[k], env, &v, err, errlen);
      if (rc != RNNC_OK)
        return rc;
      if (v < 0) {
        snprintf(err, errlen, "cell '%s': %s has a dimension of size %ld", c->name, nodename(a, nd), v);
        return RNNC_ESHAPE;
      }
      n *= v;
    }
    numel[i] = n;
    start[i] = 0;
    if (nd->op == OP_SLICE) {
      int rc = evaldim(c, nd->start, env, &start[i], err, errlen);
      if (rc != RNNC_OK)
        return rc;
      if (start[i] < 0 || start[i] + n > numel[nd->arg[0]]) {
        snprintf(err, errlen, "cell '%s': slice [%ld, %ld) of %s past its %ld elements", c->name, start[i],
                 start[i] + n, nodename(a, &c->node[nd->arg[0]]), numel[nd->arg[0]]);
        return RNNC_ESHAPE;
      }
    }
  }
  return RNNC_OK;
}

/* ---- the step function ------------------------------------------------------ */

int cellgen(LLVMContextRef cx, const Cell *c, const Env *env, const char *sym, LLVMModuleRef *out, char *err,
            size_t errlen)
{
  *out = NULL;
  if (c->verified != 1)
    die("cellgen: cell '%s' is not verified", c->name);
  Arena *ar = arena_new();
  long *numel = aalloc(ar, sizeof *numel * (size_t)(c->nnode + 1));
  long *start = aalloc(ar, sizeof *start * (size_t)(c->nnode + 1));
  int rc = sizes(ar, c, env, numel, start, err, errlen);
  if (rc != RNNC_OK) {
    arena_free(ar);
    return rc;
  }
  Gen g = {.c = c, .numel = numel};
  g.base = aalloc(ar, sizeof *g.base * (size_t)(c->nnode + 1));
  irb_init(&g.ir, cx, LLVMModuleCreateWithNameInContext(sym, cx));
  IRB *ir = &g.ir;

  /* The body: void sym.body(i64 nrows, ptr noalias buf...), one buffer per
   * leaf (ABI order) then per computed node, always inlined into the entry
   * point, where the noalias arguments become alias scopes: the vectorizer
   * needs no run-time overlap checks. */
  int nin = cellgen_nin(c), nbuf = nin + cellgen_nout(c);
  int *slot = aalloc(ar, sizeof *slot * (size_t)(c->nnode + 1)); /* node -> buffer */
  const int *leaves[3] = {c->input, c->state, c->param};
  int nleaves[3] = {c->ninput, c->nstate, c->nparam};
  for (int l = 0, k = 0; l < 3; l++)
    for (int j = 0; j < nleaves[l]; j++)
      slot[leaves[l][j]] = k++;
  for (int i = 0, k = nin; i < c->nnode; i++)
    if (!isleaf(c->node[i].op))
      slot[i] = k++;
  LLVMTypeRef *bt = aalloc(ar, sizeof *bt * (size_t)(nbuf + 1));
  bt[0] = ir->i64;
  for (int k = 0; k < nbuf; k++)
    bt[1 + k] = ir->ptr;
  LLVMTypeRef bodyty = LLVMFunctionType(LLVMVoidTypeInContext(cx), bt, (unsigned)nbuf + 1, 0);
  ir->fn = LLVMAddFunction(ir->mod, aprintf(ar, "%s.body", sym), bodyty);
  LLVMSetLinkage(ir->fn, LLVMInternalLinkage);
  irb_attr(ir, ir->fn, LLVMAttributeFunctionIndex, "nounwind");
  irb_attr(ir, ir->fn, LLVMAttributeFunctionIndex, "alwaysinline");
  for (int k = 0; k < nbuf; k++)
    irb_attr(ir, ir->fn, (unsigned)k + 2, "noalias");
  g.nrows = LLVMGetParam(ir->fn, 0);
  LLVMSetValueName2(g.nrows, "nrows", 5);
  for (int i = 0; i < c->nnode; i++) {
    g.base[i] = LLVMGetParam(ir->fn, (unsigned)slot[i] + 1);
    if (c->node[i].name)
      LLVMSetValueName2(g.base[i], c->node[i].name, strlen(c->node[i].name));
  }
  ir->entry = LLVMAppendBasicBlockInContext(cx, ir->fn, "entry");
  LLVMPositionBuilderAtEnd(ir->b, ir->entry);
  for (int i = 0; i < c->nnode; i++)
    gen_node(&g, i, start[i]);
  LLVMBuildRetVoid(ir->b);

  /* The entry point: void sym(ptr in, ptr out, i64 nrows) */
  LLVMTypeRef params[3] = {ir->ptr, ir->ptr, ir->i64};
  LLVMValueRef fn = LLVMAddFunction(ir->mod, sym, LLVMFunctionType(LLVMVoidTypeInContext(cx), params, 3, 0));
  irb_attr(ir, fn, LLVMAttributeFunctionIndex, "nounwind");
  LLVMValueRef in = LLVMGetParam(fn, 0), outv = LLVMGetParam(fn, 1);
  LLVMSetValueName2(in, "in", 2);
  LLVMSetValueName2(outv, "out", 3);
  LLVMSetValueName2(LLVMGetParam(fn, 2), "nrows", 5);
  LLVMPositionBuilderAtEnd(ir->b, LLVMAppendBasicBlockInContext(cx, fn, "entry"));
  LLVMValueRef *args = aalloc(ar, sizeof *args * (size_t)(nbuf + 1));
  args[0] = LLVMGetParam(fn, 2);
  for (int k = 0; k < nbuf; k++) {
    LLVMValueRef idx = irb_i64(ir, k < nin ? k : k - nin);
    LLVMValueRef p = LLVMBuildInBoundsGEP2(ir->b, ir->ptr, k < nin ? in : outv, &idx, 1, "");
    args[1 + k] = LLVMBuildLoad2(ir->b, ir->ptr, p, "");
  }
  LLVMBuildCall2(ir->b, bodyty, ir->fn, args, (unsigned)nbuf + 1, "");
  LLVMBuildRetVoid(ir->b);
  irb_free(ir);
  arena_free(ar);
  *out = ir->mod;
  return RNNC_OK;
}
