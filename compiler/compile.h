/* compile.h — private to the model compiler (compile.c, compile_cell.c,
 * compile_model.c, cmodel.c): one compilation's state. compile.c describes
 * the layout of memory and the plan. */
#ifndef RNNC_COMPILE_H
#define RNNC_COMPILE_H

#include <llvm-c/Core.h>

#include "ir.h"

/* An integer input checked before every run (token ids, targets). */
typedef struct Check {
  int tensor;        /* index into CModel.t */
  int64_t bound;     /* ids must be in [0, bound) */
  int target;        /* 1: a target (message says so; ignore index allowed) */
  int hasignore;
  long ignore;
  int hastime;       /* [T, B] (positions written [t, b]) or [B] */
  int64_t B;
} Check;

/* A copy done by the host after a run (a cell's final state into its carried
 * state tensor happens in the plan; these are outputs kept in workspace). */
struct CModel {
  CTensor *t; int nt, capt;
  Plan plan;
  int nslot;          /* SLOT_WS, SLOT_TMP, then SLOT_TENSOR0 + k: tensor k */
  void **buf;         /* nslot */
  float *ws;          /* the workspace (rnnc_mem_alloc) */
  float *tws;         /* the transient area (slot 1) */
  size_t twsfloats;
  size_t wsfloats;
  float *scratch;     /* the threads' scratch, kept between runs (cmodel_run) */
  size_t scratchbytes;
  KernFn *fn;         /* plan.nfn */
  Plan bplan;         /* the backward plan (grad): run after plan */
  KernFn *bfn;
  struct Jit *jit;
  Check *check; int ncheck, capcheck;
  int grad, carry;
  double compile_ms;
  Arena *a;           /* names */
};
/* Free a tensor's data (rnnc_mem_alloc'd, numel·4 bytes). */
void ctensor_free(CTensor *t);

/* Per model node. Values and adjoints are [npos, d] row-major, ld d ("rows
 * form": row r at off + r*ld); int32 for token ids and targets. */
typedef struct MV {
  int64_t T, B, npos, d;   /* T 0: no time axis */
  Addr val, adj;           /* adj.slot < 0: none */
  /* M_CELL */
  Env cenv;
  Addr *hs;                /* per state: [(T+1), B, d_s], slot 0 .. T */
  Addr *dhs;               /* per state: the adjoints; with dseq [(T+1), B, d_s]
                              like hs, else [2, B, d_s]: the adjoint of the
                              update (of the final state before the loop, of
                              the initial state after it), of the old state */
  char *dseq;              /* per state: the backward cell reads the state's
                              adjoint outside the loop: every step's is kept */
  int64_t *sd;             /* per state: d_s */
  Addr *fsa;               /* per node of the forward cell: its storage (rows form) */
  /* M_SOFTMAX */
  int64_t K;
  Addr z, dz, lse, nll, probs, scale;
  int fused;               /* dz computed with the forward pass */
  /* M_EMBEDDING, M_SOFTMAX: the weight packed for x·W^T and for dz·W */
  Addr packbt, packn;
} MV;

typedef struct Comp {
  Module *m;
  Model *md;
  const ModelGrad *g;
  const CompileOpts *o;
  const Env *env;
  Arena *a;
  LLVMContextRef cx;       /* where the next kernel goes (ksym picks it) */
  LLVMModuleRef mod;
  LLVMContextRef cxs[4];   /* the modules, compiled in parallel */
  LLVMModuleRef mods[4];
  int nmod;
  GemmShare *share;       /* the GEMMs generated so far, by spec */
  CModel *cm;
  MV *v;
  int *order;             /* model nodes, each after its operands */
  size_t ws;              /* workspace floats so far */
  size_t tws, twsmax;     /* transient floats of the current node, the most */
  Plan *p;                /* the plan being built (forward, then backward) */
  size_t scratch;         /* the largest per-thread scratch */
  int nk;                 /* kernels made */
  char *err;
  size_t errlen;
} Comp;

/* compile.c */
int comp_fail(Comp *C, int code, const char *fmt, ...);
/* n floats of workspace (64-byte aligned), zeroed before the first run. */
Addr ws_alloc(Comp *C, int64_t n, int64_t ld);
/* n floats of the transient area (slot 1): only the current node's kernels
 * use them (nothing another node reads), so every node reuses the same
 * area; not zeroed. node_begin starts a node. */
Addr ws_tmp(Comp *C, int64_t n, int64_t ld);
void node_begin(Comp *C);
/* Slots: 0 the workspace, 1 the transient area, k + 2 tensor k. */
enum { SLOT_WS = 0, SLOT_TMP = 1, SLOT_TENSOR0 = 2 };
/* A fresh kernel symbol "k<n>_<what>". */
const char *ksym(Comp *C, const char *what);
/* Append a call of kernel sym over [0, n) split at grain, and a barrier;
 * static shares (chunk 0). */
void plan_call(Comp *C, const char *sym, int64_t n, int64_t grain, int barrier);
/* Let the executor share the last call dynamically (runtime/exec.c) when
 * it is worth it: work (FLOPs, or the like) of one grain; chunk the grains
 * one call of its kernel should take a multiple of (its blocks). Any
 * grain-aligned share gives the same results (the kernels' contract), so
 * only the cost decides: a call of under DYN_MINOP in all stays static (a
 * chunk's atomic and the calls would show), a chunk is at least DYN_MINCHUNK
 * (rounded up to a multiple of chunk). */
enum { DYN_MINOP = 1 << 23, DYN_MINCHUNK = 1 << 20 };
void plan_chunk(Comp *C, int64_t chunk, double work);
/* plan_chunk for a GEMM kernel of mode (mk_gemm_chunk). */
void plan_gemm_chunk(Comp *C, const GemmSpec *gs, int mode);
/* Begin a time loop (returns its op index) and close it. */
int plan_loop(Comp *C, int64_t T, int reverse);
void plan_endloop(Comp *C, int at);
/* Track a kernel's scratch need. */
void need_scratch(Comp *C, size_t floats);
/* Kernels for common moves (mk_axpy): y (acc: +=, else =) x over rows. */
int k_copy(Comp *C, int64_t rows, int64_t n, Addr x, Addr y, int acc, float alpha, int barrier);
int k_fill(Comp *C, int64_t rows, int64_t n, Addr y, float value, int barrier);
/* A weight packed for a GEMM: pack kernel appended; returns the pack. */
int k_pack(Comp *C, Addr w, int64_t N, int64_t K, int64_t ldb, int bt, Addr *pack);
/* dst [M, N] (+ with acc)= op(A)·B summed over K rows, op(A) = a^T (a [K, M],
 * B b [K, N]): a weight gradient. By rows of dst when it has as many row
 * tiles as panels (op(B) packed in slices of K), else by panels; shared
 * dynamically; ends with a barrier. */
int k_wgrad(Comp *C, const char *sym, int64_t M, int64_t N, int64_t K, Addr a, Addr b, Addr dst, int acc);
/* The value of a model dim. */
int comp_mdim(Comp *C, Dim d, int64_t *out);
int comp_flags(const Comp *C); /* GEMM_PORTABLE or 0 */
/* Addr in a time loop: rows form plus tstride B*ld. */
Addr at_step(Addr a, int64_t B);

/* compile_cell.c: where the adjoint of cell node v's final states (added by
 * their readers before its backward runs) and of its initial states (after)
 * are */
Addr dhs_final(const Comp *C, int node, int s);
Addr dhs_initial(const Comp *C, int node, int s);
/* compile_cell.c: a cell node's forward kernels, and its backward ones */
int cell_forward(Comp *C, int i);
int cell_backward(Comp *C, int i);
/* An embedding's rows x = weight[ids] that a GEMM over them can take from the
 * table instead (compile_cell.c: W·x as (weight·W)[ids], the adjoint's and
 * the weight gradient's sums grouped by id). */
typedef struct EmbedFold {
  int64_t V;
  Addr ids, weight, grad; /* grad.slot < 0: no gradient */
} EmbedFold;
/* compile_model.c: whether model node a is an embedding of `rows` positions
 * with at most half as many table rows (then *f), unless
 * CompileOpts.nofold. */
int embed_fold(Comp *C, int a, int64_t rows, EmbedFold *f);
/* compile_model.c: every other node kind */
int node_forward(Comp *C, int i);
int node_backward(Comp *C, int i);

#endif
