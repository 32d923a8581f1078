/* jit.c — the in-process JIT: an ORC LLJIT for the host CPU.
 * require: modules built in jit_context(j). produce: each module verified,
 * optimized with LLVMRunPasses("default<O3>") for the host CPU and its
 * features, and added to the JIT's main library, where generated code finds
 * SLEEF, libm and the OpenMP runtime (defined as absolute symbols, then any
 * symbol of the process). Code is generated when a symbol is first looked up.
 *
 * Ownership follows llvm-c: LLVMOrcLLJITAddLLVMIRModule owns the module even
 * when it fails; every LLVMErrorRef is consumed exactly once (errmsg()). */
#include <stdlib.h>
#include <string.h>

#include <llvm-c/Analysis.h>
#include <llvm-c/Core.h>
#include <llvm-c/Error.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>
#include <sleef.h>

#include "ir.h"

struct Jit {
  LLVMOrcLLJITRef lljit;
  LLVMOrcThreadSafeContextRef tsc; /* the context every module is built in */
  LLVMTargetMachineRef tm;         /* host CPU and features, for the optimizer */
};

/* Consume e into err as "what: message"; returns status. */
static int errmsg(LLVMErrorRef e, int status, const char *what, char *err, size_t errlen)
{
  char *m = LLVMGetErrorMessage(e);
  snprintf(err, errlen, "%s: %s", what, m);
  LLVMDisposeErrorMessage(m);
  return status;
}

/* Functions generated code calls by name. Defining them here makes the
 * process link them (with --as-needed a library nothing references is
 * dropped, and the JIT would then not find its symbols). */
#ifndef __AVX__
/* sleef.h declares the 8-wide (AVX2) functions only under -mavx, the 16-wide
 * (AVX-512F) ones only under -mavx512f; only their addresses are taken here,
 * so any function type will do. */
void Sleef_expf8_u10avx2(void);
void Sleef_logf8_u10avx2(void);
void Sleef_tanhf8_u10avx2(void);
#endif
#ifndef __AVX512F__
void Sleef_expf16_u10avx512f(void);
void Sleef_logf16_u10avx512f(void);
void Sleef_tanhf16_u10avx512f(void);
#endif
static const struct {
  const char *name;
  void (*addr)(void);
} runtime_syms[] = {
    {"Sleef_expf_u10", (void (*)(void))Sleef_expf_u10},
    {"Sleef_logf_u10", (void (*)(void))Sleef_logf_u10},
    {"Sleef_tanhf_u10", (void (*)(void))Sleef_tanhf_u10},
    /* phasegen.c's vectors: 4-wide (SSE2, any x86-64), 8-wide (AVX2) and
       16-wide (AVX-512F) */
    {"Sleef_expf4_u10sse2", (void (*)(void))Sleef_expf4_u10sse2},
    {"Sleef_logf4_u10sse2", (void (*)(void))Sleef_logf4_u10sse2},
    {"Sleef_tanhf4_u10sse2", (void (*)(void))Sleef_tanhf4_u10sse2},
    {"Sleef_expf8_u10avx2", (void (*)(void))Sleef_expf8_u10avx2},
    {"Sleef_logf8_u10avx2", (void (*)(void))Sleef_logf8_u10avx2},
    {"Sleef_tanhf8_u10avx2", (void (*)(void))Sleef_tanhf8_u10avx2},
    {"Sleef_expf16_u10avx512f", (void (*)(void))Sleef_expf16_u10avx512f},
    {"Sleef_logf16_u10avx512f", (void (*)(void))Sleef_logf16_u10avx512f},
    {"Sleef_tanhf16_u10avx512f", (void (*)(void))Sleef_tanhf16_u10avx512f},
};

static int define_runtime(Jit *j, char *err, size_t errlen)
{
  enum { N = sizeof runtime_syms / sizeof runtime_syms[0] };
  LLVMOrcCSymbolMapPair pairs[N];
  for (int i = 0; i < N; i++) {
    pairs[i].Name = LLVMOrcLLJITMangleAndIntern(j->lljit, runtime_syms[i].name);
    pairs[i].Sym.Address = (LLVMOrcExecutorAddress)(uintptr_t)runtime_syms[i].addr;
    pairs[i].Sym.Flags.GenericFlags = LLVMJITSymbolGenericFlagsExported | LLVMJITSymbolGenericFlagsCallable;
    pairs[i].Sym.Flags.TargetFlags = 0;
  }
  /* takes the names' references */
  LLVMOrcMaterializationUnitRef mu = LLVMOrcAbsoluteSymbols(pairs, N);
  LLVMErrorRef e = LLVMOrcJITDylibDefine(LLVMOrcLLJITGetMainJITDylib(j->lljit), mu);
  if (e) {
    LLVMOrcDisposeMaterializationUnit(mu); /* still ours on failure */
    return errmsg(e, RNNC_EINPUT, "jit: defining the runtime symbols", err, errlen);
  }
  return RNNC_OK;
}

static LLVMTargetMachineRef host_machine(char *err, size_t errlen)
{
  char *triple = LLVMGetDefaultTargetTriple();
  char *cpu = LLVMGetHostCPUName();
  char *features = LLVMGetHostCPUFeatures();
  LLVMTargetRef t = NULL;
  char *msg = NULL;
  LLVMTargetMachineRef tm = NULL;
  if (LLVMGetTargetFromTriple(triple, &t, &msg)) {
    snprintf(err, errlen, "jit: no target for %s: %s", triple, msg ? msg : "");
    LLVMDisposeMessage(msg);
  } else {
    tm = LLVMCreateTargetMachine(t, triple, cpu, features, LLVMCodeGenLevelAggressive, LLVMRelocDefault,
                                 LLVMCodeModelJITDefault);
    if (!tm)
      snprintf(err, errlen, "jit: cannot create a target machine for %s (%s)", triple, cpu);
  }
  LLVMDisposeMessage(triple);
  LLVMDisposeMessage(cpu);
  LLVMDisposeMessage(features);
  return tm;
}

LLVMTargetMachineRef jit_host_machine(char *err, size_t errlen)
{
  if (LLVMInitializeNativeTarget() || LLVMInitializeNativeAsmPrinter()) {
    snprintf(err, errlen, "jit: LLVM has no native target for this machine");
    return NULL;
  }
  return host_machine(err, errlen);
}

int jit_new(Jit **out, char *err, size_t errlen)
{
  *out = NULL;
  if (LLVMInitializeNativeTarget() || LLVMInitializeNativeAsmPrinter()) {
    snprintf(err, errlen, "jit: LLVM has no native target for this machine");
    return RNNC_EINPUT;
  }
  Jit *j = calloc(1, sizeof *j);
  if (!j)
    return snprintf(err, errlen, "jit: out of memory"), RNNC_ENOMEM;
  j->tm = host_machine(err, errlen);
  if (!j->tm) {
    free(j);
    return RNNC_EINPUT;
  }
  /* The JIT's own target machine builder detects the host the same way
   * (CPU name and features); the builder is consumed by LLVMOrcCreateLLJIT. */
  LLVMErrorRef e = LLVMOrcCreateLLJIT(&j->lljit, NULL);
  if (e) {
    LLVMDisposeTargetMachine(j->tm);
    free(j);
    return errmsg(e, RNNC_EINPUT, "jit: creating the LLJIT", err, errlen);
  }
  j->tsc = LLVMOrcCreateNewThreadSafeContext();
  LLVMOrcDefinitionGeneratorRef gen = NULL;
  e = LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(&gen, LLVMOrcLLJITGetGlobalPrefix(j->lljit),
                                                           NULL, NULL);
  if (e) {
    jit_free(j);
    return errmsg(e, RNNC_EINPUT, "jit: the process symbol generator", err, errlen);
  }
  LLVMOrcJITDylibAddGenerator(LLVMOrcLLJITGetMainJITDylib(j->lljit), gen); /* takes gen */
  int rc = define_runtime(j, err, errlen);
  if (rc != RNNC_OK) {
    jit_free(j);
    return rc;
  }
  *out = j;
  return RNNC_OK;
}

void jit_free(Jit *j)
{
  if (!j)
    return;
  if (j->lljit) {
    LLVMErrorRef e = LLVMOrcDisposeLLJIT(j->lljit);
    if (e)
      LLVMConsumeError(e); /* tearing down: nothing left to report it to */
  }
  if (j->tsc)
    LLVMOrcDisposeThreadSafeContext(j->tsc);
  if (j->tm)
    LLVMDisposeTargetMachine(j->tm);
  free(j);
}

LLVMContextRef jit_context(Jit *j) { return LLVMOrcThreadSafeContextGetContext(j->tsc); }

/* Verify mod, give it the JIT's triple and data layout, and run the O3
 * pipeline for the host CPU. mod stays the caller's. */
static int optimize(Jit *j, LLVMModuleRef mod, char *err, size_t errlen)
{
  char *msg = NULL;
  if (LLVMVerifyModule(mod, LLVMReturnStatusAction, &msg)) {
    /* a malformed module is a bug of the code generator */
    size_t n = strlen(msg), len;
    while (n > 0 && msg[n - 1] == '\n')
      msg[--n] = 0;
    snprintf(err, errlen, "jit: module '%s' does not verify: %s", LLVMGetModuleIdentifier(mod, &len), msg);
    LLVMDisposeMessage(msg);
    return RNNC_EVERIFY;
  }
  LLVMDisposeMessage(msg);
  LLVMSetTarget(mod, LLVMOrcLLJITGetTripleString(j->lljit));
  LLVMSetDataLayout(mod, LLVMOrcLLJITGetDataLayoutStr(j->lljit));
  LLVMPassBuilderOptionsRef opts = LLVMCreatePassBuilderOptions();
  LLVMErrorRef e = LLVMRunPasses(mod, "default<O3>", j->tm, opts);
  LLVMDisposePassBuilderOptions(opts);
  if (e)
    return errmsg(e, RNNC_EINPUT, "jit: optimizing", err, errlen);
  return RNNC_OK;
}

int jit_add(Jit *j, LLVMModuleRef mod, char *err, size_t errlen)
{
  int rc = optimize(j, mod, err, errlen);
  if (rc != RNNC_OK) {
    LLVMDisposeModule(mod);
    return rc;
  }
  LLVMOrcThreadSafeModuleRef tsm = LLVMOrcCreateNewThreadSafeModule(mod, j->tsc); /* takes mod */
  LLVMErrorRef e = LLVMOrcLLJITAddLLVMIRModule(j->lljit, LLVMOrcLLJITGetMainJITDylib(j->lljit), tsm);
  if (e) /* the JIT owns tsm even on failure */
    return errmsg(e, RNNC_EINPUT, "jit: adding a module", err, errlen);
  return RNNC_OK;
}

/* One module of jit_add_parallel: verified, optimized and compiled to an
 * object in memory with a target machine of its own (one per thread). */
static int compile_one(Jit *j, LLVMModuleRef mod, LLVMMemoryBufferRef *obj, char *err, size_t errlen)
{
  *obj = NULL;
  char *msg = NULL;
  if (LLVMVerifyModule(mod, LLVMReturnStatusAction, &msg)) {
    size_t n = strlen(msg), len;
    while (n > 0 && msg[n - 1] == '\n')
      msg[--n] = 0;
    snprintf(err, errlen, "jit: module '%s' does not verify: %s", LLVMGetModuleIdentifier(mod, &len), msg);
    LLVMDisposeMessage(msg);
    return RNNC_EVERIFY;
  }
  LLVMDisposeMessage(msg);
  LLVMTargetMachineRef tm = host_machine(err, errlen);
  if (!tm)
    return RNNC_EINPUT;
  LLVMSetTarget(mod, LLVMOrcLLJITGetTripleString(j->lljit));
  LLVMSetDataLayout(mod, LLVMOrcLLJITGetDataLayoutStr(j->lljit));
  LLVMPassBuilderOptionsRef opts = LLVMCreatePassBuilderOptions();
  LLVMErrorRef e = LLVMRunPasses(mod, "default<O3>", tm, opts);
  LLVMDisposePassBuilderOptions(opts);
  int rc = RNNC_OK;
  if (e) {
    rc = errmsg(e, RNNC_EINPUT, "jit: optimizing", err, errlen);
  } else if (LLVMTargetMachineEmitToMemoryBuffer(tm, mod, LLVMObjectFile, &msg, obj)) {
    snprintf(err, errlen, "jit: generating code: %s", msg ? msg : "");
    LLVMDisposeMessage(msg);
    rc = RNNC_EINPUT;
  }
  LLVMDisposeTargetMachine(tm);
  return rc;
}

int jit_add_parallel(Jit *j, LLVMModuleRef *mods, int n, char *err, size_t errlen)
{
  LLVMMemoryBufferRef *obj = calloc((size_t)n + 1, sizeof *obj);
  int *rc = calloc((size_t)n + 1, sizeof *rc);
  char (*msg)[256] = calloc((size_t)n + 1, sizeof *msg);
  if (!obj || !rc || !msg) {
    free(obj), free(rc), free(msg);
    for (int k = 0; k < n; k++)
      LLVMDisposeModule(mods[k]);
    snprintf(err, errlen, "jit: out of memory");
    return RNNC_ENOMEM;
  }
#pragma omp parallel for schedule(dynamic, 1) num_threads(n)
  for (int k = 0; k < n; k++)
    rc[k] = compile_one(j, mods[k], &obj[k], msg[k], sizeof msg[k]);
  int status = RNNC_OK;
  for (int k = 0; k < n; k++) {
    LLVMDisposeModule(mods[k]);
    if (rc[k] && !status) {
      status = rc[k];
      snprintf(err, errlen, "%s", msg[k]);
    }
  }
  for (int k = 0; k < n; k++) {
    if (!obj[k])
      continue;
    if (status) {
      LLVMDisposeMemoryBuffer(obj[k]);
      continue;
    }
    LLVMErrorRef e = LLVMOrcLLJITAddObjectFile(j->lljit, LLVMOrcLLJITGetMainJITDylib(j->lljit), obj[k]);
    if (e) /* the JIT owns the buffer even on failure */
      status = errmsg(e, RNNC_EINPUT, "jit: adding an object", err, errlen);
  }
  free(obj), free(rc), free(msg);
  return status;
}

int jit_lookup(Jit *j, const char *name, uintptr_t *addr, char *err, size_t errlen)
{
  LLVMOrcExecutorAddress a = 0;
  *addr = 0;
  LLVMErrorRef e = LLVMOrcLLJITLookup(j->lljit, &a, name);
  if (e)
    return errmsg(e, RNNC_EINPUT, "jit: looking up a symbol", err, errlen);
  *addr = (uintptr_t)a;
  return RNNC_OK;
}
