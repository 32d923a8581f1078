/* aot.c — ahead-of-time compilation: a model's programs in one object file.
 * require: m after schedule(), each program's model verified (with grad: its
 * md->grad) and its env binding T, B and every model dim (frontends/api_aot.c).
 * produce: one LLVM module holding, per program (forward, step, train), the
 * kernels of cmodel_build — the JIT's own code generator — their plans as
 * constant tables, the optimizer's kernels (optgen) with the training step,
 * and the descriptor <prefix>_model (rnnc_aot.h) that ties them together; it
 * is optimized (default<O3>) and written for the target CPU as an object
 * (position independent), assembly or LLVM IR; and the header (aot_header.c).
 *
 * Nothing in the object refers to the compiler: kernels take every address
 * from their buffer table, plans are data, and the runtime that walks them is
 * librnnc_rt.a (runtime/exec.c, aot_rt.c, optstep.c). The object's only
 * undefined symbols are SLEEF's and libc's.
 *
 * The same code on the same CPU gives the same bits: for --cpu native the
 * target machine is the JIT's (host CPU name and features) and the kernels
 * are generated with the host's vector width, so an object computes bitwise
 * what the JIT does. */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/Core.h>
#include <llvm-c/Linker.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>

#include "compile.h"

/* ---- the target CPU --------------------------------------------------------- */

/* CPUs rnnc compile knows, and the vector instructions kernels may use there
 * (ISA_*, irb_isa). */
static const struct {
  const char *name;
  int isa;
} cpus[] = {
    {"x86-64", ISA_SSE2},          {"x86-64-v2", ISA_SSE2},       {"x86-64-v3", ISA_AVX2},
    {"x86-64-v4", ISA_AVX512},     {"nehalem", ISA_SSE2},         {"westmere", ISA_SSE2},
    {"sandybridge", ISA_SSE2},     {"ivybridge", ISA_SSE2},       {"haswell", ISA_AVX2},
    {"broadwell", ISA_AVX2},       {"skylake", ISA_AVX2},         {"skylake-avx512", ISA_AVX512},
    {"cascadelake", ISA_AVX512},   {"cooperlake", ISA_AVX512},    {"cannonlake", ISA_AVX512},
    {"icelake-client", ISA_AVX512}, {"icelake-server", ISA_AVX512}, {"tigerlake", ISA_AVX512},
    {"rocketlake", ISA_AVX512},    {"alderlake", ISA_AVX2},       {"raptorlake", ISA_AVX2},
    {"meteorlake", ISA_AVX2},      {"sapphirerapids", ISA_AVX512}, {"emeraldrapids", ISA_AVX512},
    {"graniterapids", ISA_AVX512}, {"btver2", ISA_SSE2},          {"bdver4", ISA_AVX2},
    {"znver1", ISA_AVX2},          {"znver2", ISA_AVX2},          {"znver3", ISA_AVX2},
    {"znver4", ISA_AVX512},
};

int aot_target(const char *cpu, AotTarget *t, char *err, size_t errlen)
{
  memset(t, 0, sizeof *t);
  if (!cpu || !strcmp(cpu, "native")) {
    char *name = LLVMGetHostCPUName(), *features = LLVMGetHostCPUFeatures();
    snprintf(t->cpu, sizeof t->cpu, "%s", name);
    snprintf(t->features, sizeof t->features, "%s", features);
    snprintf(t->desc, sizeof t->desc, "native (%s)", name);
    LLVMDisposeMessage(name);
    LLVMDisposeMessage(features);
    t->isa = irb_isa();
    t->portable = t->isa == ISA_SSE2;
    return RNNC_OK;
  }
  for (size_t k = 0; k < sizeof cpus / sizeof cpus[0]; k++)
    if (!strcmp(cpu, cpus[k].name)) {
      snprintf(t->cpu, sizeof t->cpu, "%s", cpu);
      snprintf(t->desc, sizeof t->desc, "%s", cpu);
      t->isa = cpus[k].isa;
      t->portable = t->isa == ISA_SSE2;
      return RNNC_OK;
    }
  snprintf(err, errlen,
           "unknown CPU '%s' (known: native, x86-64, x86-64-v2, x86-64-v3, x86-64-v4, and LLVM's x86 CPU names "
           "such as haswell, skylake, znver3)",
           cpu);
  return RNNC_EINPUT;
}

/* A target machine for t: position-independent code (a PIE or a shared
 * library may link the object). */
static LLVMTargetMachineRef target_machine(const AotTarget *t, char *err, size_t errlen)
{
  if (LLVMInitializeNativeTarget() || LLVMInitializeNativeAsmPrinter()) {
    snprintf(err, errlen, "LLVM has no native target for this machine");
    return NULL;
  }
  char *triple = LLVMGetDefaultTargetTriple();
  LLVMTargetRef target = NULL;
  char *msg = NULL;
  LLVMTargetMachineRef tm = NULL;
  if (LLVMGetTargetFromTriple(triple, &target, &msg))
    snprintf(err, errlen, "no target for %s: %s", triple, msg ? msg : "");
  else if (!(tm = LLVMCreateTargetMachine(target, triple, t->cpu, t->features, LLVMCodeGenLevelAggressive,
                                          LLVMRelocPIC, LLVMCodeModelDefault)))
    snprintf(err, errlen, "cannot create a target machine for %s (%s)", triple, t->cpu);
  LLVMDisposeMessage(msg);
  LLVMDisposeMessage(triple);
  return tm;
}

/* ---- the descriptor as LLVM constants ------------------------------------------ */

typedef struct A {
  LLVMContextRef cx;
  LLVMModuleRef mod;
  LLVMTypeRef i32, i64, ptr;
  LLVMTypeRef op, param, tensor, check, prog, model; /* rnnc_aot.h's structs */
  const char *prefix;
  int nglob;
} A;

static LLVMValueRef c64(A *a, int64_t v) { return LLVMConstInt(a->i64, (unsigned long long)v, 1); }
static LLVMValueRef c32(A *a, int32_t v) { return LLVMConstInt(a->i32, (unsigned long long)(int64_t)v, 1); }

/* A private constant global holding init; its address. */
static LLVMValueRef global(A *a, LLVMValueRef init, const char *what)
{
  char name[128];
  snprintf(name, sizeof name, "%s.%s.%d", a->prefix, what, a->nglob++);
  LLVMValueRef g = LLVMAddGlobal(a->mod, LLVMTypeOf(init), name);
  LLVMSetInitializer(g, init);
  LLVMSetGlobalConstant(g, 1);
  LLVMSetLinkage(g, LLVMPrivateLinkage);
  LLVMSetUnnamedAddress(g, LLVMGlobalUnnamedAddr);
  return g;
}

static LLVMValueRef cstr(A *a, const char *s)
{
  if (!s)
    return LLVMConstNull(a->ptr);
  return global(a, LLVMConstStringInContext(a->cx, s, (unsigned)strlen(s), 0), "str");
}

/* An array of n elements of type elt in a global; NULL for none. */
static LLVMValueRef carray(A *a, LLVMTypeRef elt, LLVMValueRef *v, int64_t n, const char *what)
{
  if (n == 0)
    return LLVMConstNull(a->ptr);
  return global(a, LLVMConstArray2(elt, v, (uint64_t)n), what);
}

static LLVMValueRef cstruct(A *a, LLVMValueRef *v, unsigned n)
{
  return LLVMConstStructInContext(a->cx, v, n, 0);
}

static LLVMValueRef cdims(A *a, const int64_t *dim)
{
  LLVMValueRef v[4];
  for (int k = 0; k < 4; k++)
    v[k] = c64(a, dim[k]);
  return LLVMConstArray2(a->i64, v, 4);
}

/* The struct types, and a check that LLVM lays them out as the C compiler
 * that built rnnc does (the runtime reads them as C structs). */
static void types(A *a, LLVMTargetMachineRef tm)
{
  LLVMContextRef cx = a->cx;
  a->i32 = LLVMInt32TypeInContext(cx);
  a->i64 = LLVMInt64TypeInContext(cx);
  a->ptr = LLVMPointerTypeInContext(cx, 0);
  LLVMTypeRef d4 = LLVMArrayType2(a->i64, 4);
  LLVMTypeRef i32 = a->i32, i64 = a->i64, ptr = a->ptr;
  LLVMTypeRef op[] = {i32, i32, i64, i64, i32, i32, i64, i32, i32};
  LLVMTypeRef param[] = {ptr, i64, d4, i64, i64};
  LLVMTypeRef tensor[] = {ptr, i64, i64, i64, d4, i64, i64, i64};
  LLVMTypeRef check[] = {i64, i64, i64, i64, i64, i64, i64};
  LLVMTypeRef prog[] = {ptr, i64, i64, i64, i64, i64, ptr, ptr, ptr, ptr,
                        i64, ptr, i64, ptr, i64, i64, i64, i64, i64};
  LLVMTypeRef model[] = {i64, ptr, ptr, i64, ptr, i64, LLVMArrayType2(ptr, RNNC_AOT_NPROG), ptr, ptr, ptr};
#define T(f, arr) a->f = LLVMStructTypeInContext(cx, arr, sizeof arr / sizeof arr[0], 0)
  T(op, op);
  T(param, param);
  T(tensor, tensor);
  T(check, check);
  T(prog, prog);
  T(model, model);
#undef T
  LLVMTargetDataRef td = LLVMCreateTargetDataLayout(tm);
#define AT(ty, i, ctype, field)                                                                                \
  if (LLVMOffsetOfElement(td, a->ty, i) != offsetof(ctype, field))                                             \
    die("aot: " #ctype "." #field " lies at %zu in C, %llu in LLVM", offsetof(ctype, field),                   \
        (unsigned long long)LLVMOffsetOfElement(td, a->ty, i));
#define SIZE(ty, ctype)                                                                                        \
  if (LLVMABISizeOfType(td, a->ty) != sizeof(ctype))                                                           \
    die("aot: " #ctype " has %zu bytes in C, %llu in LLVM", sizeof(ctype),                                     \
        (unsigned long long)LLVMABISizeOfType(td, a->ty));
  AT(op, 2, rnnc_plan_op, n) AT(op, 4, rnnc_plan_op, barrier) AT(op, 5, rnnc_plan_op, chunk)
  AT(op, 6, rnnc_plan_op, T) AT(op, 8, rnnc_plan_op, nbody) SIZE(op, rnnc_plan_op)
  AT(param, 4, rnnc_aot_param, offset) SIZE(param, rnnc_aot_param)
  AT(tensor, 7, rnnc_aot_tensor, io) SIZE(tensor, rnnc_aot_tensor)
  SIZE(check, rnnc_aot_check)
  AT(prog, 6, rnnc_aot_prog, op) AT(prog, 11, rnnc_aot_prog, tensor) AT(prog, 18, rnnc_aot_prog, scratch_floats)
  SIZE(prog, rnnc_aot_prog)
  AT(model, 6, rnnc_aot_model, prog) AT(model, 9, rnnc_aot_model, opt_adam) SIZE(model, rnnc_aot_model)
#undef AT
#undef SIZE
  LLVMDisposeTargetData(td);
}

/* A plan's kernel table: the functions (renamed) of names; "barrier" (a
 * range of 0: never called) is the no-op kernel. */
static LLVMValueRef kernels(A *a, char **names, int n, LLVMValueRef nop)
{
  LLVMValueRef *v = malloc(sizeof *v * ((size_t)n + 1));
  if (!v)
    die("out of memory");
  for (int k = 0; k < n; k++) {
    LLVMValueRef f = strcmp(names[k], "barrier") ? LLVMGetNamedFunction(a->mod, names[k]) : nop;
    if (!f)
      die("aot: kernel '%s' is not in the module", names[k]);
    v[k] = f;
  }
  LLVMValueRef t = carray(a, a->ptr, v, n, "kernels");
  free(v);
  return t;
}

static LLVMValueRef ops(A *a, const rnnc_plan_op *op, int64_t n)
{
  LLVMValueRef *v = malloc(sizeof *v * ((size_t)n + 1));
  if (!v)
    die("out of memory");
  for (int64_t k = 0; k < n; k++) {
    const rnnc_plan_op *o = &op[k];
    LLVMValueRef f[] = {c32(a, o->kind), c32(a, o->fn),      c64(a, o->n),       c64(a, o->grain),
                        c32(a, o->barrier), c32(a, o->chunk), c64(a, o->T), c32(a, o->reverse), c32(a, o->nbody)};
    v[k] = cstruct(a, f, 9);
  }
  LLVMValueRef t = carray(a, a->op, v, n, "plan");
  free(v);
  return t;
}

static LLVMValueRef prog(A *a, const rnnc_aot_prog *p, char **fn, int nfn, char **bfn, int nbfn, LLVMValueRef nop)
{
  LLVMValueRef *tv = malloc(sizeof *tv * ((size_t)p->ntensor + 1));
  LLVMValueRef *cv = malloc(sizeof *cv * ((size_t)p->ncheck + 1));
  if (!tv || !cv)
    die("out of memory");
  for (int64_t k = 0; k < p->ntensor; k++) {
    const rnnc_aot_tensor *t = &p->tensor[k];
    LLVMValueRef f[] = {cstr(a, t->name), c64(a, t->role),  c64(a, t->dtype), c64(a, t->rank),
                        cdims(a, t->dim), c64(a, t->numel), c64(a, t->param), c64(a, t->io)};
    tv[k] = cstruct(a, f, 8);
  }
  for (int64_t k = 0; k < p->ncheck; k++) {
    const rnnc_aot_check *c = &p->check[k];
    LLVMValueRef f[] = {c64(a, c->tensor), c64(a, c->bound),   c64(a, c->target), c64(a, c->hasignore),
                        c64(a, c->ignore), c64(a, c->hastime), c64(a, c->B)};
    cv[k] = cstruct(a, f, 7);
  }
  LLVMValueRef f[] = {cstr(a, p->name),
                      c64(a, p->B),
                      c64(a, p->T),
                      c64(a, p->carry),
                      c64(a, p->nop),
                      c64(a, p->nbop),
                      ops(a, p->op, p->nop),
                      ops(a, p->bop, p->nbop),
                      kernels(a, fn, nfn, nop),
                      kernels(a, bfn, nbfn, nop),
                      c64(a, p->ntensor),
                      carray(a, a->tensor, tv, p->ntensor, "tensors"),
                      c64(a, p->ncheck),
                      carray(a, a->check, cv, p->ncheck, "checks"),
                      c64(a, p->nio),
                      c64(a, p->loss),
                      c64(a, p->ws_floats),
                      c64(a, p->tws_floats),
                      c64(a, p->scratch_floats)};
  free(tv);
  free(cv);
  return global(a, cstruct(a, f, sizeof f / sizeof f[0]), "prog");
}

/* ---- the programs ------------------------------------------------------------- */

static const char *const progname[RNNC_AOT_NPROG] = {"forward", "step", "train"};

/* The in-memory descriptor of program k from its CModel; parameters by name
 * into d's table (the first program's parameters make it). */
static int describe(Arena *ar, CModel *cm, int k, const AotProg *ap, rnnc_aot_model *d, const Model *md,
                    char *err, size_t errlen)
{
  rnnc_aot_prog *p = aalloc(ar, sizeof *p);
  memset(p, 0, sizeof *p);
  p->name = progname[k];
  p->B = ap->B, p->T = ap->T;
  p->carry = ap->o.carry;
  p->ntensor = cm->nt;
  rnnc_aot_tensor *t = aalloc(ar, sizeof *t * ((size_t)cm->nt + 1));
  if (!d->param) { /* the parameter table: this program's parameters in tensor order */
    int np = 0;
    for (int i = 0; i < cm->nt; i++)
      np += cm->t[i].role == CT_PARAM;
    rnnc_aot_param *pa = aalloc(ar, sizeof *pa * ((size_t)np + 1));
    int64_t off = 0;
    np = 0;
    for (int i = 0; i < cm->nt; i++) {
      const CTensor *c = &cm->t[i];
      if (c->role != CT_PARAM)
        continue;
      rnnc_aot_param *q = &pa[np++];
      memset(q, 0, sizeof *q);
      q->name = astrdup(ar, c->name);
      q->rank = c->rank;
      for (int r = 0; r < c->rank; r++)
        q->dim[r] = c->dim[r];
      q->numel = c->numel;
      q->offset = off;
      off += (c->numel + 15) / 16 * 16;
    }
    d->param = pa;
    d->nparam = np;
    d->param_floats = off;
  }
  int64_t nio = 0;
  for (int pass = 0; pass < 2; pass++) /* io: inputs, then outputs */
    for (int i = 0; i < cm->nt; i++)
      if (cm->t[i].role == (pass ? CT_OUTPUT : CT_INPUT))
        t[i].io = nio++;
  for (int i = 0; i < cm->nt; i++) {
    const CTensor *c = &cm->t[i];
    rnnc_aot_tensor *q = &t[i];
    int64_t io = c->role == CT_INPUT || c->role == CT_OUTPUT ? q->io : -1;
    memset(q, 0, sizeof *q);
    q->name = astrdup(ar, c->name);
    q->role = c->role;
    q->dtype = c->dtype == DT_I32 ? RNNC_I32 : RNNC_F32;
    q->rank = c->rank;
    for (int r = 0; r < c->rank; r++)
      q->dim[r] = c->dim[r];
    q->numel = c->numel;
    q->io = io;
    q->param = -1;
    const char *pname = c->role == CT_PARAM ? c->name : c->role == CT_GRAD && !strncmp(c->name, "grad.", 5) ? c->name + 5 : NULL;
    for (int64_t j = 0; pname && j < d->nparam; j++)
      if (!strcmp(d->param[j].name, pname))
        q->param = j;
    if (c->role == CT_PARAM && q->param < 0) {
      snprintf(err, errlen, "program '%s' of model '%s' has a parameter '%s' the forward pass lacks", p->name,
               md->name, c->name);
      return RNNC_EINPUT;
    }
    if (q->param >= 0 && d->param[q->param].numel != c->numel)
      die("aot: parameter '%s' has %lld elements in '%s', %lld in the table", c->name, (long long)c->numel,
          p->name, (long long)d->param[q->param].numel);
  }
  p->tensor = t;
  p->nio = nio;
  p->loss = -1;
  if (ap->o.grad)
    for (int i = 0; i < cm->nt; i++)
      if (cm->t[i].role == CT_OUTPUT && !strcmp(cm->t[i].name, md->node[md->loss].name))
        p->loss = i;
  if (ap->o.grad && p->loss < 0)
    die("aot: the loss of model '%s' is not an output of its training program", md->name);
  rnnc_aot_check *ch = aalloc(ar, sizeof *ch * ((size_t)cm->ncheck + 1));
  for (int i = 0; i < cm->ncheck; i++) {
    const Check *c = &cm->check[i];
    ch[i] = (rnnc_aot_check){c->tensor, c->bound, c->target, c->hasignore, c->ignore, c->hastime, c->B};
  }
  p->check = ch;
  p->ncheck = cm->ncheck;
  p->op = cm->plan.op;
  p->nop = cm->plan.nop;
  p->bop = cm->bplan.op;
  p->nbop = cm->bplan.nop;
  p->ws_floats = (int64_t)cm->wsfloats;
  p->tws_floats = (int64_t)cm->twsfloats;
  p->scratch_floats = (int64_t)cm->plan.scratch;
  d->prog[k] = p;
  return RNNC_OK;
}

/* Rename plan p's kernels in mod to "<prefix>.<prog>.<name>" (kernels of
 * different programs share names) and keep the new names in p->fnname. */
static void rename_kernels(Arena *ar, LLVMModuleRef mod, Plan *p, const char *prefix, const char *prog)
{
  for (int k = 0; k < p->nfn; k++) {
    if (!strcmp(p->fnname[k], "barrier"))
      continue;
    const char *nn = aprintf(ar, "%s.%s.%s", prefix, prog, p->fnname[k]);
    LLVMValueRef f = LLVMGetNamedFunction(mod, p->fnname[k]);
    if (f) /* a kernel called twice in a plan is renamed once */
      LLVMSetValueName2(f, nn, strlen(nn));
    p->fnname[k] = (char *)nn;
  }
}

/* void nop(ptr, i64, i64, i64, ptr): the barrier's kernel. */
static LLVMValueRef nop_kernel(A *a)
{
  LLVMTypeRef pt[] = {a->ptr, a->i64, a->i64, a->i64, a->ptr};
  char name[128];
  snprintf(name, sizeof name, "%s.nop", a->prefix);
  LLVMValueRef f = LLVMAddFunction(a->mod, name, LLVMFunctionType(LLVMVoidTypeInContext(a->cx), pt, 5, 0));
  LLVMSetLinkage(f, LLVMInternalLinkage);
  LLVMBuilderRef b = LLVMCreateBuilderInContext(a->cx);
  LLVMPositionBuilderAtEnd(b, LLVMAppendBasicBlockInContext(a->cx, f, "entry"));
  LLVMBuildRetVoid(b);
  LLVMDisposeBuilder(b);
  return f;
}

/* The descriptor <prefix>_model, external; every kernel internal. */
static void model_global(A *a, const rnnc_aot_model *d, CModel *const *cm, const AotSpec *s, int train)
{
  LLVMValueRef nop = nop_kernel(a);
  LLVMValueRef pv[RNNC_AOT_NPROG];
  for (int k = 0; k < RNNC_AOT_NPROG; k++)
    pv[k] = d->prog[k] ? prog(a, d->prog[k], cm[k]->plan.fnname, cm[k]->plan.nfn, cm[k]->bplan.fnname,
                              cm[k]->bplan.nfn, nop)
                       : LLVMConstNull(a->ptr);
  LLVMValueRef *par = malloc(sizeof *par * ((size_t)d->nparam + 1));
  if (!par)
    die("out of memory");
  for (int64_t k = 0; k < d->nparam; k++) {
    const rnnc_aot_param *q = &d->param[k];
    LLVMValueRef f[] = {cstr(a, q->name), c64(a, q->rank), cdims(a, q->dim), c64(a, q->numel), c64(a, q->offset)};
    par[k] = cstruct(a, f, 5);
  }
  LLVMValueRef opt[3];
  static const char *const optk[3] = {"_sumsq", "_sgd", "_adam"};
  for (int k = 0; k < 3; k++) {
    char name[128];
    snprintf(name, sizeof name, "%s.opt%s", s->prefix, optk[k]);
    opt[k] = train ? LLVMGetNamedFunction(a->mod, name) : LLVMConstNull(a->ptr);
    if (!opt[k])
      die("aot: no optimizer kernel '%s'", name);
  }
  LLVMValueRef f[] = {c64(a, RNNC_AOT_ABI),
                      cstr(a, d->name),
                      cstr(a, d->cpu),
                      c64(a, d->nparam),
                      carray(a, a->param, par, d->nparam, "params"),
                      c64(a, d->param_floats),
                      LLVMConstArray2(a->ptr, pv, RNNC_AOT_NPROG),
                      opt[0],
                      opt[1],
                      opt[2]};
  free(par);
  char name[160];
  snprintf(name, sizeof name, "%s_model", s->prefix);
  LLVMValueRef init = cstruct(a, f, sizeof f / sizeof f[0]);
  LLVMValueRef g = LLVMAddGlobal(a->mod, LLVMTypeOf(init), name);
  LLVMSetInitializer(g, init);
  LLVMSetGlobalConstant(g, 1);
  LLVMSetAlignment(g, 16);
  /* only the descriptor is reached from outside */
  for (LLVMValueRef fn = LLVMGetFirstFunction(a->mod); fn; fn = LLVMGetNextFunction(fn))
    if (!LLVMIsDeclaration(fn))
      LLVMSetLinkage(fn, LLVMInternalLinkage);
}

/* Write the module as s->emit asks to s->out. */
static int write_module(LLVMModuleRef mod, LLVMTargetMachineRef tm, const AotSpec *s, char *err, size_t errlen)
{
  FILE *f = fopen(s->out, "wb");
  if (!f) {
    snprintf(err, errlen, "cannot write '%s': %s", s->out, strerror(errno));
    return RNNC_EIO;
  }
  int st = emit_to(mod, tm, s->emit, f, err, errlen);
  if (fclose(f) != 0 && st == RNNC_OK) {
    snprintf(err, errlen, "cannot write '%s': %s", s->out, strerror(errno));
    st = RNNC_EIO;
  }
  if (st != RNNC_OK)
    remove(s->out);
  return st;
}

static int write_header(const AotSpec *s, const rnnc_aot_model *d, char *err, size_t errlen)
{
  FILE *f = fopen(s->header, "w");
  if (!f) {
    snprintf(err, errlen, "cannot write '%s': %s", s->header, strerror(errno));
    return RNNC_EIO;
  }
  aot_header(f, s, d);
  int bad = ferror(f);
  if (fclose(f) != 0 || bad) {
    snprintf(err, errlen, "cannot write '%s': %s", s->header, strerror(errno));
    remove(s->header);
    return RNNC_EIO;
  }
  return RNNC_OK;
}

int aot_compile(const AotSpec *s, char *err, size_t errlen)
{
  LLVMTargetMachineRef tm = target_machine(&s->target, err, errlen);
  if (!tm)
    return RNNC_EINPUT;
  Arena *ar = arena_new();
  LLVMContextRef cx = LLVMContextCreate();
  A a = {.cx = cx, .prefix = s->prefix};
  a.mod = LLVMModuleCreateWithNameInContext(s->prefix, cx);
  types(&a, tm);
  rnnc_aot_model d = {.abi = RNNC_AOT_ABI, .cpu = s->target.desc};
  CModel *cm[RNNC_AOT_NPROG] = {0};
  int old = irb_target_isa(s->target.isa);
  int st = RNNC_OK, train = 0;
  for (int k = 0; k < RNNC_AOT_NPROG && st == RNNC_OK; k++) {
    const AotProg *ap = &s->prog[k];
    if (!ap->md)
      continue;
    CompileOpts o = ap->o;
    o.portable = s->target.portable;
    LLVMModuleRef mod;
    st = cmodel_build(s->m, ap->md, &ap->env, &o, cx, &mod, &cm[k], err, errlen);
    if (st == RNNC_OK) {
      rename_kernels(ar, mod, &cm[k]->plan, s->prefix, progname[k]);
      rename_kernels(ar, mod, &cm[k]->bplan, s->prefix, progname[k]);
      if (LLVMLinkModules2(a.mod, mod)) /* consumes mod */
        die("aot: linking program '%s' failed", progname[k]);
      if (!d.name)
        d.name = ap->md->name;
      st = describe(ar, cm[k], k, ap, &d, ap->md, err, errlen);
      train |= o.grad;
    }
  }
  irb_target_isa(old);
  if (st == RNNC_OK && train)
    optgen(cx, a.mod, aprintf(ar, "%s.opt", s->prefix));
  if (st == RNNC_OK) {
    model_global(&a, &d, cm, s, train);
    st = write_module(a.mod, tm, s, err, errlen);
  }
  if (st == RNNC_OK && s->header && (st = write_header(s, &d, err, errlen)) != RNNC_OK)
    remove(s->out); /* both files or neither */
  LLVMDisposeModule(a.mod);
  LLVMContextDispose(cx);
  LLVMDisposeTargetMachine(tm);
  for (int k = 0; k < RNNC_AOT_NPROG; k++)
    cmodel_free(cm[k]);
  arena_free(ar);
  return st;
}
