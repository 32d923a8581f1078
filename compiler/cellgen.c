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
#include <llvm-c/DebugInfo.h> /* LLVMTemporaryMDNode */

#include "ir.h"

typedef struct Gen {
  LLVMContextRef cx;
  LLVMModuleRef mod;
  LLVMBuilderRef b;
  LLVMValueRef fn;
  LLVMBasicBlockRef entry;
  LLVMTypeRef f32, i64, ptr;
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

static void addattr(LLVMContextRef cx, LLVMValueRef fn, unsigned idx, const char *name)
{
  LLVMAddAttributeAtIndex(fn, idx, LLVMCreateEnumAttribute(cx, LLVMGetEnumAttributeKindForName(name, strlen(name)), 0));
}

static LLVMValueRef ci64(Gen *g, long v) { return LLVMConstInt(g->i64, (unsigned long long)v, 1); }
static LLVMValueRef cf32(Gen *g, double v) { return LLVMConstReal(g->f32, v); }

/* ---- loops --------------------------------------------------------------- */

/* for (iv = 0; iv < n; iv++) { body }: loop_begin returns iv and leaves the
 * builder in the body; loop_end closes the body and continues after it. */
typedef struct Loop {
  LLVMBasicBlockRef head, exit;
  LLVMValueRef iv;
} Loop;

static LLVMValueRef loop_begin(Gen *g, Loop *l, LLVMValueRef n, const char *name)
{
  LLVMBasicBlockRef pre = LLVMGetInsertBlock(g->b);
  l->head = LLVMAppendBasicBlockInContext(g->cx, g->fn, name);
  LLVMBasicBlockRef body = LLVMAppendBasicBlockInContext(g->cx, g->fn, "body");
  l->exit = LLVMAppendBasicBlockInContext(g->cx, g->fn, "done");
  LLVMBuildBr(g->b, l->head);
  LLVMPositionBuilderAtEnd(g->b, l->head);
  l->iv = LLVMBuildPhi(g->b, g->i64, name);
  LLVMValueRef zero = ci64(g, 0);
  LLVMAddIncoming(l->iv, &zero, &pre, 1);
  LLVMBuildCondBr(g->b, LLVMBuildICmp(g->b, LLVMIntSLT, l->iv, n, ""), body, l->exit);
  LLVMPositionBuilderAtEnd(g->b, body);
  return l->iv;
}

static void loop_end(Gen *g, Loop *l)
{
  LLVMValueRef next = LLVMBuildNSWAdd(g->b, l->iv, ci64(g, 1), "");
  LLVMBasicBlockRef latch = LLVMGetInsertBlock(g->b);
  LLVMValueRef br = LLVMBuildBr(g->b, l->head);
  LLVMAddIncoming(l->iv, &next, &latch, 1);
  /* !llvm.loop !{self, !{"llvm.loop.unroll.disable"}}: trip counts are
   * constants, and fully unrolled nests cost compile time for no gain */
  LLVMMetadataRef self = LLVMTemporaryMDNode(g->cx, NULL, 0);
  LLVMMetadataRef s = LLVMMDStringInContext2(g->cx, "llvm.loop.unroll.disable", 24);
  LLVMMetadataRef ops[2] = {self, LLVMMDNodeInContext2(g->cx, &s, 1)};
  LLVMMetadataRef md = LLVMMDNodeInContext2(g->cx, ops, 2);
  LLVMMetadataReplaceAllUsesWith(self, md);
  LLVMSetMetadata(br, LLVMGetMDKindIDInContext(g->cx, "llvm.loop", 9), LLVMMetadataAsValue(g->cx, md));
  LLVMPositionBuilderAtEnd(g->b, l->exit);
}

/* ---- addressing ------------------------------------------------------------ */

/* &node[row r][e]: a param is shared by every row. */
static LLVMValueRef addr(Gen *g, int node, LLVMValueRef r, LLVMValueRef e)
{
  LLVMValueRef off = e;
  if (g->c->node[node].op != OP_PARAM)
    off = LLVMBuildNSWAdd(g->b, LLVMBuildNSWMul(g->b, r, ci64(g, g->numel[node]), ""), e, "");
  return LLVMBuildInBoundsGEP2(g->b, g->f32, g->base[node], &off, 1, "");
}

static LLVMValueRef load(Gen *g, int node, LLVMValueRef r, LLVMValueRef e)
{
  return LLVMBuildLoad2(g->b, g->f32, addr(g, node, r, e), "");
}

static void store(Gen *g, LLVMValueRef v, int node, LLVMValueRef r, LLVMValueRef e)
{
  LLVMBuildStore(g->b, v, addr(g, node, r, e));
}

/* float name(float), declared once per module (readnone: SLEEF is pure). */
static LLVMValueRef call1(Gen *g, const char *name, LLVMValueRef x)
{
  LLVMTypeRef ft = LLVMFunctionType(g->f32, &g->f32, 1, 0);
  LLVMValueRef f = LLVMGetNamedFunction(g->mod, name);
  if (!f) {
    f = LLVMAddFunction(g->mod, name, ft);
    addattr(g->cx, f, LLVMAttributeFunctionIndex, "nounwind");
    addattr(g->cx, f, LLVMAttributeFunctionIndex, "willreturn");
    addattr(g->cx, f, LLVMAttributeFunctionIndex, "memory"); /* 0: memory(none) */
  }
  return LLVMBuildCall2(g->b, ft, f, &x, 1, "");
}

/* A float slot in the entry block, where mem2reg/SROA promote it. */
static LLVMValueRef entry_alloca(Gen *g, const char *name)
{
  LLVMBuilderRef eb = LLVMCreateBuilderInContext(g->cx);
  LLVMValueRef first = LLVMGetFirstInstruction(g->entry);
  if (first)
    LLVMPositionBuilderBefore(eb, first);
  else
    LLVMPositionBuilderAtEnd(eb, g->entry);
  LLVMValueRef a = LLVMBuildAlloca(eb, g->f32, name);
  LLVMDisposeBuilder(eb);
  return a;
}

/* ---- one emitter per op kind ---------------------------------------------- */

/* const [] and zeros [d]: y[r, e] = value */
static void gen_fill(Gen *g, int i, double v)
{
  Loop lr, le;
  LLVMValueRef r = loop_begin(g, &lr, g->nrows, "row");
  LLVMValueRef e = loop_begin(g, &le, ci64(g, g->numel[i]), "e");
  store(g, cf32(g, v), i, r, e);
  loop_end(g, &le);
  loop_end(g, &lr);
}

/* The scalar value of elementwise op on a (and b), float32. */
static LLVMValueRef ew(Gen *g, int op, LLVMValueRef a, LLVMValueRef b)
{
  LLVMBuilderRef B = g->b;
  switch (op) {
  case OP_ADD: return LLVMBuildFAdd(B, a, b, "");
  case OP_SUB: return LLVMBuildFSub(B, a, b, "");
  case OP_MUL: return LLVMBuildFMul(B, a, b, "");
  case OP_DIV: return LLVMBuildFDiv(B, a, b, "");
  case OP_NEG: return LLVMBuildFNeg(B, a, "");
  case OP_SIGMOID: {
    LLVMValueRef ex = call1(g, "Sleef_expf_u10", LLVMBuildFNeg(B, a, ""));
    return LLVMBuildFDiv(B, cf32(g, 1), LLVMBuildFAdd(B, cf32(g, 1), ex, ""), "");
  }
  case OP_TANH: return call1(g, "Sleef_tanhf_u10", a);
  case OP_EXP: return call1(g, "Sleef_expf_u10", a);
  case OP_LOG: return call1(g, "Sleef_logf_u10", a);
  case OP_RELU: /* a > 0 ? a : 0, NaN -> 0 as in C */
    return LLVMBuildSelect(B, LLVMBuildFCmp(B, LLVMRealOGT, a, cf32(g, 0), ""), a, cf32(g, 0), "");
  case OP_STEP:
    return LLVMBuildSelect(B, LLVMBuildFCmp(B, LLVMRealOGT, a, cf32(g, 0), ""), cf32(g, 1), cf32(g, 0), "");
  }
  die("cellgen: op '%s' is not elementwise", opinfo[op].spelling);
}

/* y[r, e] = op(a[r, e], b[r, e]); an operand of one element is broadcast. */
static void gen_ew(Gen *g, int i)
{
  const Node *nd = &g->c->node[i];
  int a = nd->arg[0], b = nd->narg == 2 ? nd->arg[1] : a;
  Loop lr, le;
  LLVMValueRef r = loop_begin(g, &lr, g->nrows, "row");
  LLVMValueRef e = loop_begin(g, &le, ci64(g, g->numel[i]), "e");
  LLVMValueRef va = load(g, a, r, g->numel[a] == 1 ? ci64(g, 0) : e);
  LLVMValueRef vb = nd->narg == 2 ? load(g, b, r, g->numel[b] == 1 ? ci64(g, 0) : e) : NULL;
  store(g, ew(g, nd->op, va, vb), i, r, e);
  loop_end(g, &le);
  loop_end(g, &lr);
}

/* A [m, n] @ v [n] -> y [m]:      y[i] = Σ_j A[i, j] v[j]   (transposed: 0)
 * matvec_t(A [m, n], v [m]) -> y [n]: y[j] = Σ_i A[i, j] v[i] (transposed: 1)
 * The sum runs over the inner index in increasing order. */
static void gen_matvec(Gen *g, int i, int transposed)
{
  const Node *nd = &g->c->node[i];
  int A = nd->arg[0], v = nd->arg[1];
  long ncol = g->numel[A] / (transposed ? g->numel[v] : g->numel[i]); /* n */
  long nout = g->numel[i], nin = g->numel[v];
  LLVMValueRef acc = entry_alloca(g, "acc"); /* promoted to a register by O3 */
  Loop lr, lo, lk;
  LLVMValueRef r = loop_begin(g, &lr, g->nrows, "row");
  LLVMValueRef o = loop_begin(g, &lo, ci64(g, nout), "o");
  LLVMBuildStore(g->b, cf32(g, 0), acc);
  LLVMValueRef k = loop_begin(g, &lk, ci64(g, nin), "k");
  /* element A[i, j]: row-major, n columns */
  LLVMValueRef ij = transposed ? LLVMBuildNSWAdd(g->b, LLVMBuildNSWMul(g->b, k, ci64(g, ncol), ""), o, "")
                               : LLVMBuildNSWAdd(g->b, LLVMBuildNSWMul(g->b, o, ci64(g, ncol), ""), k, "");
  LLVMValueRef prod = LLVMBuildFMul(g->b, load(g, A, r, ij), load(g, v, r, k), "");
  LLVMBuildStore(g->b, LLVMBuildFAdd(g->b, LLVMBuildLoad2(g->b, g->f32, acc, ""), prod, ""), acc);
  loop_end(g, &lk);
  store(g, LLVMBuildLoad2(g->b, g->f32, acc, ""), i, r, o);
  loop_end(g, &lo);
  loop_end(g, &lr);
}

/* outer(a [m], b [n]) -> Y [m, n]: Y[i, j] = a[i] b[j] */
static void gen_outer(Gen *g, int i)
{
  const Node *nd = &g->c->node[i];
  int a = nd->arg[0], b = nd->arg[1];
  Loop lr, li, lj;
  LLVMValueRef r = loop_begin(g, &lr, g->nrows, "row");
  LLVMValueRef x = loop_begin(g, &li, ci64(g, g->numel[a]), "i");
  LLVMValueRef y = loop_begin(g, &lj, ci64(g, g->numel[b]), "j");
  LLVMValueRef e = LLVMBuildNSWAdd(g->b, LLVMBuildNSWMul(g->b, x, ci64(g, g->numel[b]), ""), y, "");
  store(g, LLVMBuildFMul(g->b, load(g, a, r, x), load(g, b, r, y), ""), i, r, e);
  loop_end(g, &lj);
  loop_end(g, &li);
  loop_end(g, &lr);
}

/* y[r, dst + e] = a[r, src + e] for e < n: split, slice and concat. */
static void gen_copy(Gen *g, int y, long dst, int a, long src, long n)
{
  Loop lr, le;
  LLVMValueRef r = loop_begin(g, &lr, g->nrows, "row");
  LLVMValueRef e = loop_begin(g, &le, ci64(g, n), "e");
  LLVMValueRef v = load(g, a, r, LLVMBuildNSWAdd(g->b, e, ci64(g, src), ""));
  store(g, v, y, r, LLVMBuildNSWAdd(g->b, e, ci64(g, dst), ""));
  loop_end(g, &le);
  loop_end(g, &lr);
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
  Gen g = {.cx = cx, .c = c, .numel = numel};
  g.base = aalloc(ar, sizeof *g.base * (size_t)(c->nnode + 1));
  g.mod = LLVMModuleCreateWithNameInContext(sym, cx);
  g.b = LLVMCreateBuilderInContext(cx);
  g.f32 = LLVMFloatTypeInContext(cx);
  g.i64 = LLVMInt64TypeInContext(cx);
  g.ptr = LLVMPointerTypeInContext(cx, 0);

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
  bt[0] = g.i64;
  for (int k = 0; k < nbuf; k++)
    bt[1 + k] = g.ptr;
  LLVMTypeRef bodyty = LLVMFunctionType(LLVMVoidTypeInContext(cx), bt, (unsigned)nbuf + 1, 0);
  g.fn = LLVMAddFunction(g.mod, aprintf(ar, "%s.body", sym), bodyty);
  LLVMSetLinkage(g.fn, LLVMInternalLinkage);
  addattr(cx, g.fn, LLVMAttributeFunctionIndex, "nounwind");
  addattr(cx, g.fn, LLVMAttributeFunctionIndex, "alwaysinline");
  for (int k = 0; k < nbuf; k++)
    addattr(cx, g.fn, (unsigned)k + 2, "noalias");
  g.nrows = LLVMGetParam(g.fn, 0);
  LLVMSetValueName2(g.nrows, "nrows", 5);
  for (int i = 0; i < c->nnode; i++) {
    g.base[i] = LLVMGetParam(g.fn, (unsigned)slot[i] + 1);
    if (c->node[i].name)
      LLVMSetValueName2(g.base[i], c->node[i].name, strlen(c->node[i].name));
  }
  g.entry = LLVMAppendBasicBlockInContext(cx, g.fn, "entry");
  LLVMPositionBuilderAtEnd(g.b, g.entry);
  for (int i = 0; i < c->nnode; i++)
    gen_node(&g, i, start[i]);
  LLVMBuildRetVoid(g.b);

  /* The entry point: void sym(ptr in, ptr out, i64 nrows) */
  LLVMTypeRef params[3] = {g.ptr, g.ptr, g.i64};
  LLVMValueRef fn = LLVMAddFunction(g.mod, sym, LLVMFunctionType(LLVMVoidTypeInContext(cx), params, 3, 0));
  addattr(cx, fn, LLVMAttributeFunctionIndex, "nounwind");
  LLVMValueRef in = LLVMGetParam(fn, 0), outv = LLVMGetParam(fn, 1);
  LLVMSetValueName2(in, "in", 2);
  LLVMSetValueName2(outv, "out", 3);
  LLVMSetValueName2(LLVMGetParam(fn, 2), "nrows", 5);
  LLVMPositionBuilderAtEnd(g.b, LLVMAppendBasicBlockInContext(cx, fn, "entry"));
  LLVMValueRef *args = aalloc(ar, sizeof *args * (size_t)(nbuf + 1));
  args[0] = LLVMGetParam(fn, 2);
  for (int k = 0; k < nbuf; k++) {
    LLVMValueRef idx = ci64(&g, k < nin ? k : k - nin);
    LLVMValueRef p = LLVMBuildInBoundsGEP2(g.b, g.ptr, k < nin ? in : outv, &idx, 1, "");
    args[1 + k] = LLVMBuildLoad2(g.b, g.ptr, p, "");
  }
  LLVMBuildCall2(g.b, bodyty, g.fn, args, (unsigned)nbuf + 1, "");
  LLVMBuildRetVoid(g.b);
  LLVMDisposeBuilder(g.b);
  arena_free(ar);
  *out = g.mod;
  return RNNC_OK;
}
