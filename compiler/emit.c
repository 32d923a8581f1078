/* emit.c — a module's code: its LLVM IR after the optimizer, assembly or an
 * object file for a target machine (rnnc print --emit llvm|asm: the host's;
 * rnnc compile: the --cpu's).
 * require: a module that verifies (the model compiler's, cmodel_module).
 * produce: the text on f; the module is optimized in place (default<O3> for
 * the host CPU and its features, as jit_add does), so what is printed is
 * what the JIT runs. */
#include <string.h>

#include <llvm-c/Analysis.h>
#include <llvm-c/Core.h>
#include <llvm-c/Error.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>

#include "ir.h"

/* msg without its trailing newlines into err as "what: msg"; disposes msg. */
static int fail(char *msg, int status, const char *what, char *err, size_t errlen)
{
  size_t n = msg ? strlen(msg) : 0;
  while (n > 0 && msg[n - 1] == '\n')
    msg[--n] = 0;
  snprintf(err, errlen, "%s: %s", what, msg ? msg : "");
  LLVMDisposeMessage(msg);
  return status;
}

/* Verify, give mod the host's triple and data layout, and run default<O3>. */
static int optimize(LLVMModuleRef mod, LLVMTargetMachineRef tm, char *err, size_t errlen)
{
  char *msg = NULL;
  if (LLVMVerifyModule(mod, LLVMReturnStatusAction, &msg))
    return fail(msg, RNNC_EVERIFY, "emit: the module does not verify", err, errlen);
  LLVMDisposeMessage(msg);
  char *triple = LLVMGetTargetMachineTriple(tm);
  LLVMSetTarget(mod, triple);
  LLVMDisposeMessage(triple);
  LLVMTargetDataRef td = LLVMCreateTargetDataLayout(tm);
  char *layout = LLVMCopyStringRepOfTargetData(td);
  LLVMSetDataLayout(mod, layout);
  LLVMDisposeMessage(layout);
  LLVMDisposeTargetData(td);
  LLVMPassBuilderOptionsRef opts = LLVMCreatePassBuilderOptions();
  LLVMErrorRef e = LLVMRunPasses(mod, "default<O3>", tm, opts);
  LLVMDisposePassBuilderOptions(opts);
  if (e)
    return fail(LLVMGetErrorMessage(e), RNNC_EINPUT, "emit: optimizing", err, errlen);
  return RNNC_OK;
}

int emit_to(LLVMModuleRef mod, LLVMTargetMachineRef tm, int what, FILE *f, char *err, size_t errlen)
{
  static const char *const kind[] = {"object code", "assembly", "LLVM IR"};
  int st = optimize(mod, tm, err, errlen);
  if (st == RNNC_OK && what == EMIT_LLVM) {
    char *text = LLVMPrintModuleToString(mod);
    fputs(text, f);
    LLVMDisposeMessage(text);
  } else if (st == RNNC_OK) {
    char *msg = NULL;
    LLVMMemoryBufferRef buf = NULL;
    if (LLVMTargetMachineEmitToMemoryBuffer(tm, mod, what == EMIT_ASM ? LLVMAssemblyFile : LLVMObjectFile, &msg,
                                            &buf)) {
      st = fail(msg, RNNC_EINPUT, what == EMIT_ASM ? "emit: generating assembly" : "emit: generating code", err,
                errlen);
    } else {
      LLVMDisposeMessage(msg);
      fwrite(LLVMGetBufferStart(buf), 1, LLVMGetBufferSize(buf), f);
      LLVMDisposeMemoryBuffer(buf);
    }
  }
  if (st == RNNC_OK && (fflush(f) != 0 || ferror(f))) {
    snprintf(err, errlen, "emit: cannot write the %s", kind[what]);
    st = RNNC_EIO;
  }
  return st;
}

int emit_module(LLVMModuleRef mod, int asm_, FILE *f, char *err, size_t errlen)
{
  LLVMTargetMachineRef tm = jit_host_machine(err, errlen);
  if (!tm)
    return RNNC_EINPUT;
  int st = emit_to(mod, tm, asm_ ? EMIT_ASM : EMIT_LLVM, f, err, errlen);
  LLVMDisposeTargetMachine(tm);
  return st;
}
