/* ir.h — every internal IR struct of rnnc, with the prototypes of each file
 * grouped under its banner. The public API is include/rnnc.h.
 *
 * Two levels:
 *   Cell   one time step of a recurrent unit: a dataflow graph of primitive ops
 *          (include/rnnc_ops.h) over per-example vectors; the batch dimension is implicit.
 *   Model  a graph of sequence-level nodes (embedding, cell application over time,
 *          concat, last, final, softmax, ...), values shaped [T, B, d], [B, d] or [].
 *
 * Every node carries the Loc of the text it came from (or of the builder call).
 * Arrays are indexed by int ids; -1 means "none".
 */
#ifndef RNNC_IR_H
#define RNNC_IR_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "rnnc.h" /* status codes RNNC_OK, ... */
#include "rnnc_aot.h" /* the plan's op (rnnc_plan_op), the AOT runtime */

/* ---- util.c ------------------------------------------------------------ */

/* An internal bug: print file:line and the message, then abort. */
#define die(...) die_(__FILE__, __LINE__, __VA_ARGS__)
_Noreturn void die_(const char *file, int line, const char *fmt, ...);
/* A user error of library code: the message (printf-style) into err (when
 * err and errlen), and status returned: `return errorf(RNNC_EINPUT, err,
 * errlen, "'%s' is empty", path);`. */
int errorf(int status, char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Arena: allocations freed together by arena_free. Out of memory aborts
 * through die(); the library has no partial-allocation recovery yet. */
typedef struct Arena Arena;
Arena *arena_new(void);
void arena_free(Arena *a); /* NULL is fine */
void *aalloc(Arena *a, size_t n); /* zeroed, aligned to 16 */
char *astrdup(Arena *a, const char *s);
char *astrndup(Arena *a, const char *s, size_t n);
char *aprintf(Arena *a, const char *fmt, ...);
/* Grow *arr (element size sz, *cap elements) so it holds at least n. */
void agrow(Arena *a, void **arr, int *cap, int n, size_t sz);
#define APUSH(a, arr, n, cap, v) \
  (agrow((a), (void **)&(arr), &(cap), (n) + 1, sizeof *(arr)), (arr)[(n)++] = (v))

/* ---- source locations and diagnostics (diag.c) ------------------------- */

typedef struct Source {
  const char *name; /* file name as given, or "<prelude>", "<builder>" */
  const char *text; /* NUL-terminated contents */
} Source;

typedef struct Loc {
  const Source *src; /* NULL when the node was made by a pass */
  int line, col;     /* 1-based */
} Loc;

enum { DIAG_ERROR, DIAG_WARNING, DIAG_NOTE };

typedef struct Diag {
  int severity;
  Loc loc;
  char *msg;
} Diag;

typedef struct Diags {
  Arena *arena;
  Diag *d;
  int n, cap;
  int nerror;
} Diags;

/* Record a diagnostic (printf-style message, no trailing newline). */
void diag(Diags *ds, int severity, Loc loc, const char *fmt, ...);
#define error_at(ds, loc, ...) diag((ds), DIAG_ERROR, (loc), __VA_ARGS__)
#define warn_at(ds, loc, ...) diag((ds), DIAG_WARNING, (loc), __VA_ARGS__)
/* Render one diagnostic as
 *   file:line:col: error: message
 *    <source line>
 *    <spaces>^
 * (the last two lines only when the location has a source). */
void diag_print(FILE *f, const Diag *d);
void diags_print(FILE *f, const Diags *ds);
/* Render into one arena string (for the library's last message). */
char *diags_string(Arena *a, const Diags *ds);

/* ---- interned names (util.c) -------------------------------------------- */

/* Interned strings compare by pointer. The table lives in the module. */
typedef struct Names Names;
Names *names_new(Arena *a);
const char *intern(Names *t, const char *s, size_t n);

/* ---- dimensions and shapes (dim.c) -------------------------------------- */

/* A dimension is a linear form c + Σ k_i·sym_i over named dimensions, e.g.
 * 4*H, I + H, 2*H. Terms are kept sorted by name (strcmp), with no zero
 * coefficient, so equal dimensions are equal structs (dim_eq). */
enum { DIM_MAXTERM = 4 };
typedef struct Dim {
  long c;
  int nterm;
  struct {
    const char *sym; /* interned */
    long k;
  } t[DIM_MAXTERM];
} Dim;

enum { SHAPE_MAXRANK = 3 };
typedef struct Shape {
  int rank; /* 0 scalar, 1 vector, 2 matrix; model values up to 3 */
  Dim d[SHAPE_MAXRANK];
} Shape;

Dim dim_const(long c);
Dim dim_sym(const char *sym);
int dim_add(Dim a, Dim b, Dim *out);      /* 0 when more than DIM_MAXTERM terms */
Dim dim_scale(Dim a, long k);
int dim_div(Dim a, long n, Dim *out);     /* 0 unless every coefficient divides */
int dim_eq(Dim a, Dim b);
int dim_isconst(Dim a);
/* Substitute sym_i -> val[i] (names[i] interned) for the listed symbols. */
int dim_subst(Dim a, int n, const char *const *names, const Dim *val, Dim *out);
char *dim_str(Arena *a, Dim d);           /* "4*H", "I + H", "2*H + 1", "0" */
char *shape_str(Arena *a, const Shape *s); /* "[4*H, I]", "[]" */
int shape_eq(const Shape *a, const Shape *b);

/* Bound values of named dimensions, for running a model. */
typedef struct Env {
  int n, cap;
  const char **sym; /* interned */
  long *val;
} Env;
void env_set(Arena *a, Env *e, const char *sym, long val);
int env_get(const Env *e, const char *sym, long *val); /* 0 when unbound */
/* Evaluate; 0 (with *bad set to the unbound symbol) when a symbol is unbound. */
int dim_eval(Dim d, const Env *e, long *out, const char **bad);

/* ---- cells --------------------------------------------------------------- */

enum {
#define X(id, sp, ar, sh, pr, ev) OP_##id,
  OPS(X)
#undef X
      NOPS
};
enum { SH_LEAF, SH_EW, SH_MATVEC, SH_MATVECT, SH_OUTER, SH_SPLIT, SH_SLICE, SH_CONCAT };

typedef struct OpInfo {
  const char *spelling;
  int arity; /* -1 variadic */
  int shape_rule;
  int prec; /* 0: call syntax */
} OpInfo;
extern const OpInfo opinfo[NOPS];      /* util.c */
int op_lookup(const char *spelling);   /* call-syntax ops only; -1 if none */

typedef struct Node {
  int op;
  const char *name; /* interned; NULL for an anonymous temporary */
  Loc loc;
  int *arg;         /* node ids */
  int narg;
  Shape shape;      /* declared (leaves) or inferred by verify */
  double cval;      /* OP_CONST */
  int k, n;         /* OP_SPLIT: part k of n */
  Dim start;        /* OP_SLICE: first element; the size is shape.d[0] */
} Node;

typedef struct Cell Cell;
struct Cell {
  const char *name; /* interned */
  Loc loc;
  int builtin;      /* from the prelude */
  Node *node;       /* in definition order: operands before users */
  int nnode, capnode;
  /* Ids into node[]. Declaration order is kept, it fixes argument order. */
  int *input, ninput, capinput;    /* OP_INPUT nodes */
  int *state, nstate, capstate;    /* OP_STATE nodes: the value at step start */
  int *next;                       /* per state: node id of its update (h'), -1 */
  int *param, nparam, capparam;    /* OP_PARAM nodes */
  int *grad;                       /* per param: node id of its gradient, or -1;
                                      only backward cells have grads */
  int *out, nout, capout;          /* output values, in order */
  Loc *outloc;                     /* per out: where `out` was written */
  Loc *nextloc;                    /* per state: where the update was written */
  /* Named dimensions of the signature, in order of first appearance in
   * inputs, states, then params (the cell's free dimensions). */
  const char **dim;
  int ndim, capdim;
  int verified;                    /* verify.c: 0 not yet, 1 ok, 2 has errors */
  Cell *primal;                    /* backward cell: the cell it differentiates */
  struct Grad *derived;            /* forward cell: its Grad, once autodiff ran */
  struct CellSched *sched;         /* schedule.c: its schedule, once scheduled */
  struct Cell *masked;             /* maskcell.c: its masked variant, once derived */
  struct Cell *unmasked;           /* a masked variant: the cell it wraps */
};

/* ---- models -------------------------------------------------------------- */

enum {
  M_INPUT,     /* input name: i32[T, B] | i32[B] | f32[T, B, I] | f32[B, H] */
  M_EMBEDDING, /* embedding(tokens, V, E): i32[T, B] -> [T, B, E]; param weight [V, E] */
  M_CELL,      /* cell(x, ..., H = d, backward, init = ...) -> [T, B, out] */
  M_CONCAT,    /* concat(a, b, ...) along the last dim */
  M_LAST,      /* last(x): [T, B, d] -> [B, d], the step t = T */
  M_FINAL,     /* final(node, state): [B, d], the state after the last step applied */
  M_SOFTMAX,   /* softmax(x, K [, target = y] [, ignore = n]): params weight [K, d],
                  bias [K]; -> probs [.., K] without target, loss [] with one */
  M_LOGITS,    /* logits(s): the affine projection of softmax node s */
  M_PROBS,     /* probs(s): the probabilities of softmax node s */
  M_SUM,       /* sum(x): [] sum of every element (a loss) */
  M_ONEHOT,    /* onehot(tokens, V): i32[T, B] | i32[B] -> f32[.., V]; no params */
  NMKIND
};
extern const char *const mkind_name[NMKIND]; /* "input", "embedding", ... */

enum { DT_F32, DT_F64, DT_I32, DT_I64 };

/* A parameter of a model node, named <node>.<name> in parameter files. */
typedef struct MParam {
  const char *name;  /* "weight", "W_ih", ...; interned */
  char *full;        /* "enc.fwd.W_ih" */
  Shape shape;       /* in model dims (cell dims substituted) */
} MParam;

typedef struct MNode {
  int kind;
  const char *name;  /* interned; NULL for an anonymous nested node */
  Loc loc;
  int *arg, narg;    /* model node ids: operands (M_CELL: the cell's inputs) */
  int dtype;         /* DT_F32 or DT_I32 */
  Shape shape;       /* inferred by verify (declared for M_INPUT) */
  int hastime;       /* shape.d[0] is the time dim (and d[1] the batch) */
  /* M_EMBEDDING, M_SOFTMAX: V/E and K as written */
  Dim size[2];
  /* M_CELL */
  const char *cellname; /* as written; resolved to cell by verify */
  Loc cellloc;
  Cell *cell;
  int nbind;            /* explicit `D = dim` bindings, as written */
  const char **bindname;
  Dim *bindval;
  Loc *bindloc;
  Dim *dimval;          /* after verify: per cell->dim[i], its value in model dims */
  int backward;         /* runs t = T..1 */
  int initfrom;         /* init = node: a cell node whose final states seed this one; -1 */
  int *init, ninit;     /* init = (a, b): per state a node id [B, d]; ninit 0: zeros */
  /* M_FINAL */
  const char *statename; int stateidx;
  /* M_SOFTMAX */
  int target;           /* node id or -1 */
  int hasignore; long ignore;
  /* parameters (embedding, cell, softmax), filled by verify */
  MParam *param; int nparam;
  /* M_CELL: `mask = m`: the last operand arg[narg-1] is the mask, an f32[T, B]
   * input (1 a real step, 0 padding), and after verify cell is the masked
   * variant of the cell named (maskcell.c), whose last input is the mask */
  int hasmask;
} MNode;

/* An f32[T, B] input: a mask, read only as a cell's `mask = m`; it gets no
 * gradient (no grad.<mask>). */
static inline int mnode_is_mask(const MNode *n)
{
  return n->kind == M_INPUT && n->dtype == DT_F32 && n->hastime && n->shape.rank == 2;
}

typedef struct MDim {
  const char *name; /* interned */
  Loc loc;
  int hasdefault;
  long def;
} MDim;

typedef struct Model {
  const char *name;
  Loc loc;
  MDim *dim; int ndim, capdim;     /* header dims */
  MNode *node; int nnode, capnode; /* definition order */
  int *output; int noutput, capoutput;
  Loc *outputloc;
  int loss;                        /* after verify: the node differentiated, or -1 */
  int verified;                    /* verify.c: 0 not yet, 1 ok, 2 has errors */
  struct ModelGrad *grad;          /* pipeline.c: its BPTT plan, once autodiff ran */
} Model;

typedef struct Module {
  Arena *arena;
  Names *names;
  Diags diags;
  Cell **cell; int ncell, capcell;   /* prelude cells first */
  Model **model; int nmodel, capmodel;
} Module;

/* ---- module.c ------------------------------------------------------------ */

/* A new module holding the prelude's cells (rnn, gru, lstm). NULL on a broken
 * prelude, which is an internal bug. */
Module *module_new(void);
void module_free(Module *m);
Cell *cell_find(Module *m, const char *name);   /* interned or not */
Model *model_find(Module *m, const char *name); /* NULL name: the only model */
Cell *cell_new(Module *m, const char *name, Loc loc);
/* Append a node to a cell; returns its id. args copied. */
int cell_add(Module *m, Cell *c, int op, const char *name, Loc loc, const int *args, int narg);
/* Declare an input, state or param leaf with its shape; returns its node id. */
int cell_decl(Module *m, Cell *c, int op, const char *name, Loc loc, const Shape *shape);
void cell_addout(Module *m, Cell *c, int node, Loc loc);
Model *model_new(Module *m, const char *name, Loc loc);
int model_add(Module *m, Model *md, int kind, const char *name, Loc loc);
Source *source_new(Module *m, const char *name, const char *text); /* copies */
extern const char prelude_text[]; /* prelude.c, generated from ir/prelude.rnn */

/* ---- frontends/lex.c ----------------------------------------------------- */

enum {
  TK_EOF, TK_NL, TK_IDENT, TK_NUM,
  TK_LPAREN, TK_RPAREN, TK_LBRACK, TK_RBRACK, TK_LBRACE, TK_RBRACE,
  TK_COMMA, TK_COLON, TK_EQ, TK_PLUS, TK_MINUS, TK_STAR, TK_SLASH, TK_AT,
  TK_BAD, /* bad characters or a number out of range; name holds the message */
};

typedef struct Token {
  int kind;
  Loc loc;
  const char *s; int len; /* the text (into the source) */
  const char *name;       /* TK_IDENT: interned, with its prime if any */
  double num;             /* TK_NUM */
  int isint;              /* TK_NUM without '.' or exponent; ival valid */
  long ival;
} Token;

/* Tokens of src ending with TK_EOF (every newline is a TK_NL; the parser
 * skips them inside brackets). Lexical errors become TK_BAD tokens that the
 * parser reports where it meets them, so messages come in source order.
 * The array lives in m's arena. */
Token *lex(Module *m, const Source *src, int *ntok);

/* ---- frontends/parse.c --------------------------------------------------- */

/* Parse text into m (cells and models appended). Errors go to m->diags; the
 * parser recovers at the next statement and reports several in one run.
 * Returns RNNC_OK or RNNC_ESYNTAX. */
int parse(Module *m, const Source *src);
/* Parse a shape such as "[4*H, I]" (the builder API uses it). */
int parse_shape(Module *m, const Source *src, Shape *out);
/* Deepest expression (tree height, a name or number being 1) that the parser
 * accepts; the printer names a subexpression rather than nest deeper. */
enum { EXPR_MAXDEPTH = 256 };

/* ---- ir/verify_cell.c, ir/verify_model.c ------------------------------- */

/* require: a parsed module. produce: shapes of every node, cell dims, resolved
 * cells and params, model->loss. Errors and warnings to m->diags.
 * Returns RNNC_OK or RNNC_EVERIFY. verify() checks every cell, then every
 * model, not yet verified (c->verified, md->verified), so calling it again
 * after adding cells or models checks only the new ones and repeats no
 * diagnostic. verify_cell / verify_model always (re)check the one given;
 * verify_model requires the cells it applies to be verified. */
int verify(Module *m);
int verify_cell(Module *m, Cell *c);
int verify_model(Module *m, Model *md);

/* ---- ir/maskcell.c ------------------------------------------------------- */

/* require: a verified cell with one out (a model applies it). produce: its
 * masked variant <cell>.masked, cached in c->masked (c->masked->unmasked = c),
 * appended to m->cell, verified: the same params, dims and states, the inputs
 * of c then `m: [1]`, and with k = step(m) (1 a real step, 0 padding)
 *   s' = k * s_new + (1 - k) * s   for every state s (s_new: c's update)
 *   out k * out_c
 * step() carries no adjoint, so the mask gets none. NULL with an error in
 * m->diags when a cell named <cell>.masked exists already. */
Cell *mask_cell(Module *m, Cell *c);

/* ---- ir/print.c ---------------------------------------------------------- */

/* Canonical text. Prelude cells are printed only with withprelude. */
void print_module(FILE *f, const Module *m, int withprelude);
void print_cell(FILE *f, const Cell *c);
void print_model(FILE *f, const Model *md);

/* ---- frontends/api.c, frontends/builder.c: the public API's context ----- */

/* The opaque rnnc_ctx of include/rnnc.h. */
struct rnnc_ctx {
  Module *m;
  char *msg;          /* the last message (malloc'ed); "" */
  Source *bsrc;       /* "<builder>": one line per builder call, for diagnostics */
  char *btext;        /* bsrc->text (malloc'ed, grows) */
  size_t blen, bcap;
  int bline;          /* builder calls so far */
  void *open;         /* the open rnnc_cell_builder or rnnc_model_builder, or NULL */
  int openkind;       /* 'c' or 'm' */
  struct rnnc_net *nets; /* api_net.c: every net compiled on it, freed ones too */
};
/* Set ctx's message (printf-style) and return code. */
int api_fail(rnnc_ctx *ctx, int code, const char *fmt, ...);
/* Render m->diags from index mark on into ctx's message, drop them from
 * m->diags, and return code. */
int api_diags(rnnc_ctx *ctx, int mark, int code);
void builder_close(rnnc_ctx *ctx); /* builder.c: free an open builder */
/* api_net.c: free every net of ctx (live or freed), for rnnc_close. */
void api_nets_close(rnnc_ctx *ctx);

/* ---- compiler/autodiff.c ------------------------------------------------- */

/* The backward step of a cell.
 *   bwd->input[0 .. nsaved-1]   per-step forward values: fwd node saved[i]
 *   bwd->input[nsaved + j]      adjoint of fwd->out[j]
 *   bwd->state[s]               adjoint of fwd state s: carried in, it is the
 *                               adjoint of the state's new value (h'); its update
 *                               bwd->next[s] is the adjoint of the old value (h)
 *   bwd->out[i]                 adjoint of fwd->input[i]
 *   bwd->param[p]               same name and shape as fwd->param[p];
 *                               bwd->grad[p] its gradient for this step and example
 *                               (summed over time and batch by the schedule), -1: zero
 */
typedef struct Grad {
  Cell *fwd, *bwd;
  int *saved, nsaved;
} Grad;

/* The BPTT plan of a model: for each node in reverse order, how its adjoint
 * flows to its operands; for cell nodes the Grad of the cell. */
typedef struct ModelGrad {
  Model *model;
  Grad **cellgrad;   /* per model node: its cell's Grad (M_CELL), else NULL */
  int *needgrad;     /* per model node: 1 when the loss depends on it through floats */
} ModelGrad;

/* require: a verified cell. produce: its Grad, the backward cell appended to
 * m->cell as an ordinary, verified cell named <cell>.backward; cached in
 * c->derived (one backward cell per cell). NULL with an error in m->diags when
 * a cell named <cell>.backward exists already. docs/ir.md, "Derivatives",
 * lists the rules. */
Grad *autodiff_cell(Module *m, Cell *c);

/* ---- compiler/bptt.c ---------------------------------------------------- */

/* require: a verified model. produce: its ModelGrad (autodiff_cell for the
 * cell of every cell node). NULL with an error in m->diags when the model has
 * no loss (md->loss < 0) or a cell cannot be differentiated. */
ModelGrad *autodiff(Module *m, Model *md);
/* The schedule, as comment lines ("# ..."), for print --after autodiff. */
void print_schedule(FILE *f, const ModelGrad *g);

/* ---- compiler/schedule.c ------------------------------------------------ */

/* Where each node of a cell runs relative to the time loop over T steps of B
 * rows (docs/ir.md, "Schedule"). S(n): n reads a state, transitively.
 *   SCHED_PRE   reads no state: before the loop, over all T*B rows at once
 *               (leaves but states are PRE: inputs, params, constants)
 *   SCHED_LOOP  reads a state and a state update reads it: per step, B rows
 *               (state leaves are LOOP: the carried value at step start)
 *   SCHED_POST  reads a state, no update reads it: after the loop, T*B rows
 *   SCHED_DEAD  nothing the step produces reads it: not computed
 * except that a matrix per row is never kept for all T*B rows (it runs where
 * it is read, and a POST reader of a LOOP one runs in LOOP when it can). */
enum { SCHED_DEAD, SCHED_PRE, SCHED_LOOP, SCHED_POST };
enum { GEMM_NONE, GEMM_TB, GEMM_B };
enum { GSUM_NONE, GSUM_GEMM, GSUM_ROWS };

typedef struct CellSched {
  const Cell *c;
  int *phase;   /* per node: SCHED_* */
  int *gemm;    /* per node: GEMM_TB one GEMM over all T*B rows (a PRE or POST
                   matvec / matvec_t with a parameter matrix and a per-row vector,
                   [T*B, n] x W^T; an outer summed into a grad, [m, T*B] x [T*B, n]);
                   GEMM_B the same in LOOP, one GEMM over the B rows of a step;
                   GEMM_NONE otherwise */
  int *store;   /* per node: 1 when a LOOP value is kept per step, [T, B, d], for
                   POST or for a grad summed after the loop */
  int *sumonly; /* per node: 1 when only summed into grads by GEMMs (an outer of
                   GEMM_TB, a + or - of such): never computed per row */
  int *gsum;    /* per param: how its grad is summed over time and batch, after
                   the loop: GSUM_GEMM by the GEMMs of its outers, GSUM_ROWS as the
                   sum of its T*B rows (a column sum), GSUM_NONE no grad line */
} CellSched;

/* require: a verified cell (its Grad made, if it is a backward cell or has
 * one). produce: its schedule, cached in c->sched. */
CellSched *schedule_cell(Module *m, Cell *c);
/* schedule_cell for every cell a model applies and, when md->grad, its
 * backward cell. Returns RNNC_OK. */
int schedule(Module *m);
/* The schedule as comment lines ("# ..."), for print --after schedule. */
void print_cellsched(FILE *f, const CellSched *s);

/* ---- compiler/pipeline.c ------------------------------------------------- */

/* The passes, in the order they run. */
enum { PASS_PARSE, PASS_VERIFY, PASS_AUTODIFF, PASS_SCHEDULE, NPASS };
extern const char *const pass_name[NPASS]; /* "parse", "verify", "autodiff", "schedule" */
int pass_lookup(const char *name);         /* -1 when there is no such pass */

/* Run the passes parse .. upto over src into m, stopping after the first pass
 * that reports an error (its diagnostics are in m->diags). autodiff
 * differentiates every model that has a loss, or only the model named only,
 * into md->grad. Returns RNNC_OK or the failing pass's status. */
int pipeline(Module *m, const Source *src, int upto, const char *only);
/* The IR as it stands after pass: canonical text and, after autodiff, each
 * differentiated model's BPTT schedule as # comments; after schedule, also
 * each scheduled cell's schedule (print_cellsched). */
void print_after(FILE *f, const Module *m, int pass, int withprelude);

/* ---- compiler/jit.c ------------------------------------------------------ */

/* LLVM handles, declared through llvm-c's own struct tags so this header
 * needs no LLVM include (they are LLVMContextRef and LLVMModuleRef). */
struct LLVMOpaqueContext;
struct LLVMOpaqueModule;

/* The in-process JIT (ORC LLJIT) for the host CPU. Functions return RNNC_OK,
 * or a status with a one-line message in err: RNNC_EVERIFY for a module that
 * fails LLVMVerifyModule (a code generator bug; the message is the
 * verifier's), RNNC_EINPUT for any other LLVM error (no native target, a
 * symbol not found), RNNC_ENOMEM. */
typedef struct Jit Jit;
int jit_new(Jit **out, char *err, size_t errlen);
void jit_free(Jit *j); /* NULL is fine; frees every module added and its code */
/* The context modules for j must be built in (owned by j). */
struct LLVMOpaqueContext *jit_context(Jit *j);
/* Verify, optimize (default<O3>, host CPU) and add mod. Takes ownership of
 * mod, even when it fails. */
int jit_add(Jit *j, struct LLVMOpaqueModule *mod, char *err, size_t errlen);
/* The address of a symbol of an added module (compiling it on first use). */
int jit_lookup(Jit *j, const char *name, uintptr_t *addr, char *err, size_t errlen);
/* jit_add for n modules, each built in a context of its own (the caller's,
 * disposed by the caller after this returns): verified, optimized and
 * compiled to machine code in n threads at once, then added. Takes
 * ownership of every module, even when it fails. */
int jit_add_parallel(Jit *j, struct LLVMOpaqueModule **mods, int n, char *err, size_t errlen);
/* A new target machine for the host CPU and its features, as the JIT's
 * optimizer uses (for compiler/emit.c); the caller disposes it. NULL with a
 * message in err when LLVM has no native target. */
struct LLVMOpaqueTargetMachine;
struct LLVMOpaqueTargetMachine *jit_host_machine(char *err, size_t errlen);

/* ---- compiler/irbuild.c: small LLVM IR building helpers ------------------ */

/* What every code generator builds with; each generator's own context struct
 * embeds one (`IRB ir;`). The helpers emit at the builder's position in fn. */
struct LLVMOpaqueBuilder;
struct LLVMOpaqueValue;
struct LLVMOpaqueType;
struct LLVMOpaqueBasicBlock;
typedef struct IRB {
  struct LLVMOpaqueContext *cx;
  struct LLVMOpaqueModule *mod;
  struct LLVMOpaqueBuilder *b;      /* owned: irb_free disposes it */
  struct LLVMOpaqueValue *fn;       /* the function being built */
  struct LLVMOpaqueBasicBlock *entry; /* its entry block (irb_alloca); NULL if unknown */
  struct LLVMOpaqueType *f32, *f64, *i1, *i32, *i64, *ptr, *voidty;
} IRB;

/* for (iv = lo; iv < hi; iv += step): the blocks irb_loop_end needs. */
typedef struct IRLoop {
  struct LLVMOpaqueBasicBlock *head, *exit;
  struct LLVMOpaqueValue *iv;
  int64_t step;
} IRLoop;

/* A builder in cx and the types, for functions added to mod. */
void irb_init(IRB *ir, struct LLVMOpaqueContext *cx, struct LLVMOpaqueModule *mod);
/* Disposes the builder. */
void irb_free(IRB *ir);
/* The vector instructions kernels may use on the target CPU:
 *   ISA_SSE2    any x86-64: the portable 4-wide path
 *   ISA_AVX2    AVX2 and FMA: 8-wide kernels, SLEEF's AVX2 functions
 *   ISA_AVX512  those and AVX-512F: the fused cell kernels' elementwise work
 *               16 wide, SLEEF's AVX-512F functions (phasegen.c)
 * The target is the host (LLVMGetHostCPUFeatures, read once) unless this
 * thread set another with irb_target_isa(level; -1: the host again), which
 * returns the previous setting (rnnc compile --cpu). */
enum { ISA_SSE2, ISA_AVX2, ISA_AVX512 };
int irb_isa(void);
int irb_target_isa(int v);
int irb_avx2_fma(void); /* irb_isa() >= ISA_AVX2 */
/* Enum attribute name (value 0) on fn at idx (LLVMAttributeFunctionIndex, or parameter i + 1). */
void irb_attr(IRB *ir, struct LLVMOpaqueValue *fn, unsigned idx, const char *name);
/* void name(pt[0..n)) in mod: nounwind, pointer parameters noalias, named after names
 * (space-separated); dies if name exists. Sets fn and entry, the builder at the entry. */
struct LLVMOpaqueValue *irb_fn(IRB *ir, const char *name, struct LLVMOpaqueType **pt, unsigned n,
                               const char *names);
/* The KernFn sym(buf, t, lo, hi, noalias scratch), nounwind, parameters named; as irb_fn. */
struct LLVMOpaqueValue *irb_kernfn(IRB *ir, const char *sym);
/* name(x) for x of type ty; name declared once per module: nounwind willreturn memory(none). */
struct LLVMOpaqueValue *irb_call1(IRB *ir, const char *name, struct LLVMOpaqueType *ty,
                                  struct LLVMOpaqueValue *x);
/* Opens for (iv = lo; iv < hi; iv += step): head and iv named name, then blocks "body" and
 * "done"; returns iv, the builder in the body. */
struct LLVMOpaqueValue *irb_loop_begin(IRB *ir, IRLoop *l, struct LLVMOpaqueValue *lo, struct LLVMOpaqueValue *hi,
                                       int64_t step, const char *name);
/* irb_loop_begin with the head block, the iv and the exit block named apart. */
struct LLVMOpaqueValue *irb_loop_named(IRB *ir, IRLoop *l, struct LLVMOpaqueValue *lo, struct LLVMOpaqueValue *hi,
                                       int64_t step, const char *head, const char *iv, const char *exit);
/* Closes l: iv + step (nsw); the latch carries !llvm.loop !{self, !{"llvm.loop.unroll.disable"}}
 * (trip counts are constants: unrolling costs compile time); the builder after the loop. */
void irb_loop_end(IRB *ir, IRLoop *l);
/* !llvm.loop !{self, !{"llvm.loop.unroll.disable"}} on the latch branch br. */
void irb_nounroll(IRB *ir, struct LLVMOpaqueValue *br);
/* A slot of type ty at the top of the entry block, where mem2reg/SROA promote it. */
struct LLVMOpaqueValue *irb_alloca(IRB *ir, struct LLVMOpaqueType *ty, const char *name);
/* Constants: i64 v, float v, double v. */
struct LLVMOpaqueValue *irb_i64(IRB *ir, int64_t v);
struct LLVMOpaqueValue *irb_f32(IRB *ir, double v);
struct LLVMOpaqueValue *irb_f64(IRB *ir, double v);
/* a + b and a·c on i64 indices, nsw. */
struct LLVMOpaqueValue *irb_add(IRB *ir, struct LLVMOpaqueValue *a, struct LLVMOpaqueValue *b);
struct LLVMOpaqueValue *irb_mulc(IRB *ir, struct LLVMOpaqueValue *a, int64_t c);
/* &p[e] for a float pointer p (inbounds), e an i64. */
struct LLVMOpaqueValue *irb_gep(IRB *ir, struct LLVMOpaqueValue *p, struct LLVMOpaqueValue *e);
/* A load of ty from p, a store of v at p, with a float's alignment (4): vectors at any element. */
struct LLVMOpaqueValue *irb_loadu(IRB *ir, struct LLVMOpaqueType *ty, struct LLVMOpaqueValue *p);
void irb_storeu(IRB *ir, struct LLVMOpaqueValue *v, struct LLVMOpaqueValue *p);
/* x in every lane of a vector of type vt (insertelement at i32 0, then a zero shuffle). */
struct LLVMOpaqueValue *irb_splat(IRB *ir, struct LLVMOpaqueType *vt, struct LLVMOpaqueValue *x);
/* Lane 0 + lane 1 + ... of a float or double vector, in that order. */
struct LLVMOpaqueValue *irb_hsum(IRB *ir, struct LLVMOpaqueValue *v);

/* ---- compiler/cellgen.c -------------------------------------------------- */

/* The ABI of a generated cell step, over nrows independent rows (examples):
 *   in[k]   the leaves, in the order c->input, c->state, c->param. An input
 *           or state is [nrows, d] row-major; a param is one tensor shared by
 *           every row, row-major as declared ([m, n] or [d] or []).
 *   out[k]  every other node (const and zeros included), in node order:
 *           [nrows, numel] row-major (numel: node_numel).
 * float32 throughout; buffers must not overlap. */
typedef void (*CellStepFn)(const float *const *in, float *const *out, int64_t nrows);
/* The number of leaves (in[]) and of computed nodes (out[]) of c. */
int cellgen_nin(const Cell *c);
int cellgen_nout(const Cell *c);
/* require: a verified cell; env binds every dim of c. produce: in a new
 * module of cx, the function `sym` computing one step of c with c's dims as
 * compile-time constants. RNNC_EINPUT (a dim unbound) or RNNC_ESHAPE (a
 * negative size, a slice past the end) with a message in err; *out NULL. */
int cellgen(struct LLVMOpaqueContext *cx, const Cell *c, const Env *env, const char *sym,
            struct LLVMOpaqueModule **out, char *err, size_t errlen);

/* ---- compiler/gemm.c ----------------------------------------------------- */

/* C[M, N] = A[M, K] · B (or +=), float32 row-major, M, N, K compile-time
 * constants. B is [K, N], or with GEMM_BT its transpose [N, K]. */
enum {
  GEMM_ACC = 1,      /* C += A · B instead of C = A · B */
  GEMM_BT = 2,       /* B is given transposed, as [N, K] */
  GEMM_PORTABLE = 4, /* 4-wide vectors and llvm.fmuladd, whatever the host has */
};
/* Floats of the scratch buffer `pack`: B packed in column panels (written
 * by sym_pack), then one block of A packed (sym_packed's scratch); enough
 * for any vector width and flags. */
size_t gemm_pack_size(int64_t M, int64_t N, int64_t K);
/* produce: in mod (built in cx), three external functions
 *   void sym(const float *A, const float *B, float *C, float *pack);
 *   void sym_pack(const float *B, float *pack);    packs B into pack
 *   void sym_packed(const float *A, float *pack, float *C);  B as packed
 * sym = sym_pack then sym_packed (C names: AOT headers can declare them).
 * pack has gemm_pack_size(M, N, K) floats (a float's alignment suffices);
 * A, B, C and pack must not overlap.
 * The summation order is fixed by M, N, K and the flags alone.
 * RNNC_ESHAPE for M, N or K < 1 or too large, with a message in err. */
int gemm_gen(struct LLVMOpaqueContext *cx, struct LLVMOpaqueModule *mod, const char *sym, int64_t M, int64_t N,
             int64_t K, int flags, char *err, size_t errlen);
/* Register block of the generated micro-kernel (rows, columns) for flags. */
void gemm_block(int flags, int *mr, int *nr);

/* ---- compiler/gemm.c: GEMMs on sub-ranges, for the model's kernels ------- */

/* C[M, N] (+)= op(A) · op(B), float32, all sizes and leading dimensions
 * compile-time constants:
 *   op(A) = A [M, K], row i at A + i·lda      (GEMM_AT: A given as [K, M], row k at A + k·lda)
 *   op(B) = B [K, N], row k at B + k·ldb      (GEMM_BT: B given as [N, K], row n at B + n·ldb)
 *   C [M, N], row i at C + i·ldc
 * Flags as for gemm_gen, plus GEMM_AT. */
enum { GEMM_AT = 8 };
typedef struct GemmSpec {
  int64_t M, N, K;
  int64_t lda, ldb, ldc;
  int flags;
} GemmSpec;
/* Panels of NR columns (the last may be partial): ceil(N / NR). */
int64_t gemm_npanels(const GemmSpec *s);
/* Floats of B packed (every panel). The packed layout depends only on N, K,
 * ldb and the flags GEMM_BT and GEMM_PORTABLE (not on M, lda, ldc, GEMM_ACC,
 * GEMM_AT): one pack of a weight serves every GEMM that differs only in those. */
size_t gemm_packsize(const GemmSpec *s);
/* Panels of op(B) that _cols packs at a time (then runs every row on them);
 * micro-tiles of rows that _rows and _colsp run over one pass of op(B). */
int64_t gemm_cols_chunk(const GemmSpec *s);
int64_t gemm_rows_chunk(void);
/* k per slice (KC): each C element is summed from 0 within a slice, and the
 * slices are added to C in increasing order. */
int64_t gemm_kslice(void);
/* Floats of per-thread scratch that _rows, _colsp, _colspa and _cols need. */
size_t gemm_scratchsize(const GemmSpec *s);
/* Floats of op(A) packed whole by _packa (all M rows, rounded up to MR, by
 * K); the rows its calls take start at multiples of gemm_apack_grain(). */
size_t gemm_apacksize(const GemmSpec *s);
int64_t gemm_apack_grain(void);
/* produce: in mod, six functions (external linkage, C ABI):
 *   void sym_pack(const float *B, float *pack, int64_t p0, int64_t p1);
 *       panels [p0, p1) of op(B) into pack (its layout is gemm.c's)
 *   void sym_rows(const float *A, const float *pack, float *C, int64_t m0, int64_t m1, float *scratch);
 *       rows [m0, m1) of C, B packed (all panels) in pack
 *   void sym_colsp(const float *A, const float *pack, float *C, int64_t p0, int64_t p1, float *scratch);
 *       the columns of panels [p0, p1) of C, every row, B packed in pack
 *   void sym_cols(const float *A, const float *B, float *C, int64_t p0, int64_t p1, float *scratch);
 *       the same, packing B itself (a KC slice of its panels at a time) in scratch
 *   void sym_packa(const float *A, float *apack, int64_t m0, int64_t m1);
 *       rows [m0, m1) of op(A) into apack (gemm_apacksize floats; m0 a
 *       multiple of gemm_apack_grain()), as _rows and _colsp pack them
 *   void sym_colspa(const float *apack, const float *pack, float *C, int64_t p0, int64_t p1, float *scratch);
 *       _colsp with op(A) packed by _packa: a step's GEMM whose chunks
 *       would each pack all of op(A) again
 * A, B and C are the matrices' origins (row 0, column 0) whatever the range.
 * A, B, C, pack and scratch must not overlap (pointers are noalias); calls on
 * disjoint ranges may run at once on one C, each with its own scratch.
 * Every element of C gets bitwise the same value from every function and every
 * range (sum in increasing k, llvm.fma on the host path): results do not
 * depend on how rows or panels are split over threads. RNNC_ESHAPE (message
 * in err) for sizes < 1, leading dimensions too small, or too large. */
int gemm_gen2(struct LLVMOpaqueContext *cx, struct LLVMOpaqueModule *mod, const char *sym, const GemmSpec *s,
              char *err, size_t errlen);

/* GEMMs shared by spec across the kernels of one compile. A model's kernels
 * ask for a GEMM function by spec, and every GEMM of one spec is generated
 * once, in the module of the first kernel that asks, whichever of the
 * compile's modules (up to four, optimized at once: compile.c) its other
 * callers are in: C2's kernels ask for 30 GEMMs of 19 specs. */
typedef struct GemmShare GemmShare;
GemmShare *gemm_share_new(Arena *a);
/* *out: the function fn of the GEMM s ("_pack", "_rows", "_colsp", "_cols",
 * "_packa" or "_colspa": gemm_gen2's) for a caller in mod, built in cx.
 * The first time s is asked for (every time with sh NULL), gemm_gen2's
 * functions are generated in mod under sym, with internal linkage (the
 * optimizer drops those nothing calls). After that, *out is the existing
 * function, declared in mod when it is defined in another module, where it
 * then has external linkage (the JIT links the modules' objects). A _pack
 * is shared by N, K, ldb, GEMM_BT and GEMM_PORTABLE alone (gemm_packsize).
 * RNNC_ESHAPE with a message in err as gemm_gen2. */
int gemm_share_fn(GemmShare *sh, struct LLVMOpaqueContext *cx, struct LLVMOpaqueModule *mod, const char *sym,
                  const GemmSpec *s, const char *fn, struct LLVMOpaqueValue **out, char *err, size_t errlen);
/* Whether the function name, defined in mod, is called from another module
 * (it must keep external linkage). */
int gemm_share_exported(const GemmShare *sh, struct LLVMOpaqueModule *mod, const char *name);

/* ---- the kernels' ABI and where values live (compiler/, runtime/exec.c) --- */

/* Every kernel the model compiler generates has this type:
 *   buf      the base pointers of the run (the plan's slots)
 *   t        the time step, for a kernel inside a time loop (else 0)
 *   [lo, hi) this thread's share of the kernel's range (rows, panels, columns,
 *            positions: each kernel says), lo < hi
 *   scratch  this thread's scratch: Plan.scratch floats, 64-byte aligned
 * A kernel computes every element of its output the same way whatever the
 * range: results do not depend on the number of threads. */
typedef rnnc_kernel KernFn; /* (buf, t, lo, hi, scratch): rnnc_aot.h */

/* Where a value lives: element e of row r at step t is
 *   (float *)buf[slot] + off + t·tstride + r·ld + e
 * (int32 for token ids and targets). ld 0: every row reads the same elements
 * (a broadcast, e.g. a zero adjoint). slot < 0: nowhere (kernel-private). */
typedef struct Addr {
  int slot;
  int64_t off, tstride, ld;
} Addr;
static inline Addr addr_none(void) { return (Addr){-1, 0, 0, 0}; }

/* ---- compiler/phasegen.c: a fused kernel for part of a cell's step ------- */

/* A kernel over rows [lo, hi) of nrows that computes the nodes of c marked in
 * mask, in node order, in blocks of rows (every node of a block before the
 * next block: values made and used in a block stay in cache).
 *   at[i]    where node i lives: every node the kernel reads that it does not
 *            compute must have a slot (leaves, values of earlier kernels); a
 *            computed node with slot < 0 is a temporary in scratch (for one
 *            block; only nodes of this kernel may read it); a split or slice
 *            of a node with storage may be given as a view of it (same slot,
 *            ld and tstride, off + start): it then costs nothing; so may an
 *            operand of a concat be given storage inside the concat's (same
 *            slot, ld and tstride, off + its offset): it is not copied. A
 *            const or zeros node needs no slot (read as its value). An
 *            elementwise node may be given its operand's Addr (in place, if
 *            of the same size); nothing else a node writes (or its acc) may
 *            overlap what it reads.
 *   acc[i]   slot >= 0: node i's value is also added (+=) there (an adjoint
 *            accumulated into an operand's), after it is computed.
 *   gemm[i]  1: node i (a matvec or matvec_t whose matrix is a parameter and
 *            vector a per-row value) is computed by GEMM rows: C[rows, m] =
 *            v[rows, n] · W^T (matvec, GEMM_BT) or v[rows, m] · W (matvec_t),
 *            with W packed (gemm_gen2's _pack, all panels) at pack[i]. Other
 *            matvecs run as loops (so does a GEMM node whose vector is a
 *            constant or has ld 0). The GEMM is the one over all nrows rows
 *            (M = nrows), run on each block's rows: a row's value does not
 *            depend on the range or the blocks. Its functions are
 *            gemm_share_fn(share, ..., sym_g<i>, ...)'s.
 * Elementwise work runs on vectors (AVX2: 8 floats; else 4) with SLEEF's
 * vector ≤ 1-ulp tanh, exp and log (sigmoid = 1 / (1 + exp(-x))), a scalar
 * tail for sizes that are not multiples of the width. */
typedef struct PhaseSpec {
  const Cell *c;
  const Env *env;        /* binds every dim of c */
  int64_t nrows;         /* rows of the range: T·B or B */
  const char *mask;      /* per node: 1 to compute it here */
  const Addr *at, *acc, *pack; /* per node */
  const char *gemm;      /* per node */
  int portable;          /* 4-wide, no AVX2 assumptions (GEMM_PORTABLE) */
  GemmShare *share;      /* the compile's GEMMs (NULL: none shared) */
} PhaseSpec;
/* produce: in mod, the kernel sym (KernFn) and what it calls; *scratch the
 * floats of per-thread scratch it needs. RNNC_EINPUT / RNNC_ESHAPE with a
 * message for an unbound dim or a bad size; mod may then hold a partial
 * function (dispose of it). */
int phasegen(struct LLVMOpaqueContext *cx, struct LLVMOpaqueModule *mod, const char *sym, const PhaseSpec *ps,
             size_t *scratch, char *err, size_t errlen);

/* ---- compiler/mkernels.c: model-level kernels (KernFn ABI) --------------- */

/* Each produces the kernel sym in mod; RNNC_OK, or RNNC_ESHAPE for a size < 1.
 * Sizes are compile-time constants; ranges are as said per kernel. */

/* on: the softmax kernels this thread generates from now on use 4-wide SSE2
 * vectors and SLEEF calls (CompileOpts.portable), off: 8-wide where the host
 * has AVX2 and FMA. Returns the previous setting; off at first. */
int mk_portable(int on);

/* GEMM as a kernel, calling the GEMM's function of gemm_share_fn(sh, ...)
 * (generated under sym.g the first time its spec is asked for):
 *   MK_PACK   range panels [0, npanels): pack op(B) from b into pack
 *   MK_ROWS   range rows [0, M): C = A·B with B packed at pack
 *   MK_COLSP  range panels: the same by columns
 *   MK_COLS   range panels: B from b, packed per thread (a weight gradient
 *             with fewer row tiles than panels: k_wgrad)
 *   MK_PACKA  range rows [0, M) in grains of gemm_apack_grain(): pack op(A)
 *             from a into pack (gemm_apacksize floats)
 *   MK_COLSPA range panels: MK_COLSP with op(A) packed by MK_PACKA at a
 * a, b, c, pack: t-strides apply (a kernel in a time loop). */
enum { MK_PACK, MK_ROWS, MK_COLSP, MK_COLS, MK_PACKA, MK_COLSPA };
int mk_gemm(struct LLVMOpaqueContext *cx, struct LLVMOpaqueModule *mod, GemmShare *sh, const char *sym,
            const GemmSpec *s, int mode, Addr a, Addr b, Addr c, Addr pack, size_t *scratch, char *err,
            size_t errlen);
/* The fewest grains of mode's range (a micro-tile's rows for MK_ROWS, a
 * panel otherwise) worth one call when the executor shares the range
 * dynamically: each call of MK_ROWS streams all of op(B), each of MK_COLSP
 * packs op(A), each of MK_COLS packs all of op(A) per chunk of op(B) it
 * packs. *flops: a grain's. */
int64_t mk_gemm_chunk(const GemmSpec *s, int mode, double *flops);
/* mode (MK_COLSP or MK_COLSPA), then C = x + C over the range's columns (x [M, N] by rows, ld
 * x.ld): a step's product and the add that is its only reader, by columns
 * (compile_cell.c, tailsum). Each element as the fused step computes it: the
 * whole product, then one add. */
int mk_colgemm_sum(struct LLVMOpaqueContext *cx, struct LLVMOpaqueModule *mod, GemmShare *sh, const char *sym,
                   const GemmSpec *s, int mode, Addr a, Addr c, Addr pack, Addr x, size_t *scratch, char *err,
                   size_t errlen);
/* range positions [0, npos): out[p, :] = weight[ids[p], :], ids int32 [npos]
 * (checked before the run), weight [V, E], out [npos, E] (ld E). */
int mk_embed(struct LLVMOpaqueContext *cx, struct LLVMOpaqueModule *mod, const char *sym, int64_t npos,
             int64_t V, int64_t E, Addr ids, Addr weight, Addr out, char *err, size_t errlen);
/* range columns [0, E): dweight[ids[p], e] += dout[p, e] for p = 0 .. npos-1
 * in order (each column by one thread: deterministic). */
int mk_embed_grad(struct LLVMOpaqueContext *cx, struct LLVMOpaqueModule *mod, const char *sym, int64_t npos,
                  int64_t V, int64_t E, Addr ids, Addr dout, Addr dweight, char *err, size_t errlen);
/* range positions [0, npos): out[p, e] = 1 where e == ids[p], else 0, for
 * e < V (ids checked before the run). */
int mk_onehot(struct LLVMOpaqueContext *cx, struct LLVMOpaqueModule *mod, const char *sym, int64_t npos,
              int64_t V, Addr ids, Addr out, char *err, size_t errlen);
/* Softmax over K classes, rows = positions, range [0, npos):
 * z [npos, K] holds x·W^T on entry; the kernel adds bias [K] in place, then
 * lse[p] = log Σ_k exp(z[p, k]) (max-shifted), probs (if probs.slot >= 0)
 * p[p, k] = exp(z[p, k] - lse[p]); with targets (tgt.slot >= 0, int32 [npos]):
 * nll[p] = lse[p] - z[p, y_p], 0 where y_p is the ignore index (hasignore).
 * With grad (dz.slot >= 0), also the loss gradient, fused:
 * dz[p, k] = (p[p, k] - [k == y_p]) · scale[0] (scale: float, written by
 * mk_xent_loss, = dloss / count), 0 on ignored rows. dz may be z (in place). */
int mk_softmax(struct LLVMOpaqueContext *cx, struct LLVMOpaqueModule *mod, const char *sym, int64_t npos,
               int64_t K, Addr z, Addr bias, Addr lse, Addr probs, Addr tgt, int hasignore, long ignore,
               Addr nll, Addr dz, Addr scale, char *err, size_t errlen);
/* One thread (range [0, 1)): count = positions whose target is not the ignore
 * index; loss[0] = Σ_p nll[p] / count in p order (0 when count is 0); scale[0]
 * = dloss[0] / count (0 when count is 0; dloss.slot < 0: 1). Needs only tgt
 * for scale (it may run before mk_softmax): nll.slot < 0 skips the loss. */
int mk_xent_loss(struct LLVMOpaqueContext *cx, struct LLVMOpaqueModule *mod, const char *sym, int64_t npos,
                 Addr tgt, int hasignore, long ignore, Addr nll, Addr loss, Addr dloss, Addr scale, char *err,
                 size_t errlen);
/* Softmax Jacobian for a probs adjoint, range [0, npos):
 * dz[p, k] += p[p, k] (dp[p, k] - Σ_j p[p, j] dp[p, j]). */
int mk_softmax_jvp(struct LLVMOpaqueContext *cx, struct LLVMOpaqueModule *mod, const char *sym, int64_t npos,
                   int64_t K, Addr probs, Addr dp, Addr dz, char *err, size_t errlen);
/* range columns [0, n): out[e] (+)= Σ_r x[r, e] over r = 0 .. nrows-1 in
 * order (acc: +=), and the same into out2 unless out2.slot < 0. A bias
 * gradient (two: an LSTM's b_ih and b_hh get the same sum). */
int mk_colsum(struct LLVMOpaqueContext *cx, struct LLVMOpaqueModule *mod, const char *sym, int64_t nrows,
              int64_t n, Addr x, Addr out, Addr out2, int acc, char *err, size_t errlen);
/* range rows [0, nrows): y[r, e] (acc: +=, else =) alpha·x[r, e] + x2[r, e]
 * for e < n; x2.slot < 0: no x2 term; x.slot < 0: x reads as 1 (y = alpha +
 * x2, a fill). Copies (concat, last), adjoint accumulation, fills. */
int mk_axpy(struct LLVMOpaqueContext *cx, struct LLVMOpaqueModule *mod, const char *sym, int64_t nrows,
            int64_t n, float alpha, Addr x, Addr x2, Addr y, int acc, char *err, size_t errlen);
/* One thread: y[0] = Σ over nrows·n elements of x in row-major order (sum node). */
int mk_sum(struct LLVMOpaqueContext *cx, struct LLVMOpaqueModule *mod, const char *sym, int64_t nrows,
           int64_t n, Addr x, Addr y, char *err, size_t errlen);
/* range rows: y[r, e] += g[0] (the sum's backward: its adjoint broadcast). */
int mk_bcast_acc(struct LLVMOpaqueContext *cx, struct LLVMOpaqueModule *mod, const char *sym, int64_t nrows,
                 int64_t n, Addr g, Addr y, char *err, size_t errlen);

/* ---- compiler/gemv.c: x·W^T for a few rows, W unpacked ------------------ */

/* range columns [0, N): C[m, n] (acc: +=, else =) Σ_k A[m, k] W[n, k] for
 * m < M, W read in place (row n at w + n·w.ld): generation's one token,
 * where packing the weights would cost more than the product. The sum order
 * depends on K and the vector width only (portable: 4-wide). */
int mk_gemv(struct LLVMOpaqueContext *cx, struct LLVMOpaqueModule *mod, const char *sym, int64_t M, int64_t N,
            int64_t K, Addr a, Addr w, Addr c, int acc, int portable, char *err, size_t errlen);

/* ---- runtime/exec.c: the plan and its executor (plain C + OpenMP) -------- */

/* A plan is the program of one run: kernel calls and time loops, executed by
 * one OpenMP team from start to end (one parallel region per run). It is data
 * (no pointers but the names), so an object file can carry it too. */
enum { PK_CALL = RNNC_PLAN_CALL, PK_LOOP = RNNC_PLAN_LOOP };
/* kind; PK_CALL: fn (index into the kernel table), range [0, n) split into
 * nthreads contiguous parts at multiples of grain (the last part ends at n;
 * parts may be empty: no call), barrier (1: every thread waits after the
 * call), chunk (> 0: when barriers fence the call, the threads take its
 * range in chunks of at least chunk grains as they come free); PK_LOOP: the
 * next nbody ops run for t = 0 .. T-1 (reverse: T-1 .. 0). The same layout
 * is the AOT object's (rnnc_aot.h). */
typedef rnnc_plan_op PlanOp;
typedef struct Plan {
  PlanOp *op; int nop, capop;
  char **fnname; int nfn, capfn; /* kernel symbols, in table order */
  size_t scratch;               /* floats per thread */
} Plan;
/* runtime/exec.c is part of librnnc_rt.a (the AOT runtime): its globals
 * are rnnc_-prefixed, as everything of that library is. */
/* The share [lo, hi) of thread tid of nth of a range n with grain g. */
void rnnc_plan_share(int64_t n, int64_t g, int tid, int nth, int64_t *lo, int64_t *hi);
/* Chunk c of a dynamically shared range of ng grains (at least chunk grains
 * each, guided for nth threads): its size in grains, its first grain in *lo;
 * 0 past the last chunk. */
int64_t rnnc_plan_chunk(int64_t ng, int64_t chunk, int nth, int64_t c, int64_t *lo);
/* Whether op k of a list ending at k1 is shared dynamically (with more than
 * one thread) when the op run before it ended with a barrier (fenced) or not:
 * a call of more than chunk grains (chunk > 0) that ends with a barrier or
 * whose next op is a barrier only. */
int rnnc_plan_dynamic(const PlanOp *op, int k, int k1, int fenced);
/* Run ops op[0 .. nop-1] with nthreads (<= 0: omp_get_max_threads());
 * fn[k] the kernel of index k (NULL: no call, the op is a barrier only).
 * Allocates nothing: thread tid's scratch is scratch + tid·per (per floats,
 * a multiple of 16; the caller gives nthreads·per floats, 64-byte aligned;
 * scratch may be NULL when per is 0). */
void rnnc_plan_exec(const PlanOp *op, int nop, const KernFn *fn, void *const *buf, float *scratch, size_t per,
                    int nthreads);
/* A profile of plan runs: per op k and thread tid (index k·nth + tid, for
 * tid < nth), the seconds in the op's calls (busy), in the barrier after it
 * (wait), and the calls (a loop's body ops: one per step, a dynamic op's:
 * one per chunk), added to what the arrays hold (the caller zeroes them:
 * nop·nth each), and the seconds of the whole runs (wall). Every thread
 * times only its own entries. */
typedef struct PlanProf {
  int nth;
  double *busy, *wait;
  int64_t *calls;
  double wall;
} PlanProf;
/* rnnc_plan_exec, profiled into prof (NULL: not profiled). */
void rnnc_plan_exec_prof(const PlanOp *op, int nop, const KernFn *fn, void *const *buf, float *scratch,
                         size_t per, int nthreads, PlanProf *prof);
/* runtime/mem.c: zeroed buffers, 64-byte aligned, those of 2 MiB or more
 * on their own mapping, 2 MiB-aligned and advised onto transparent huge
 * pages (NULL when out of memory; free with the same size); and the advice
 * alone for the whole 2 MiB pages of a caller's buffer. */
void *rnnc_mem_alloc(size_t bytes);
void rnnc_mem_free(void *p, size_t bytes);
void rnnc_mem_advise(void *p, size_t bytes);

/* ---- compiler/compile.c: a model compiled for its bound dims ------------- */

/* The named tensors of a compiled model, each with its own buffer:
 *   CT_PARAM   "<node>.<param>"              read by forward (and backward)
 *   CT_INPUT   every model input (token ids int32, features, initial states)
 *   CT_OUTPUT  every declared output (the loss of a softmax with a target: [])
 *   CT_GRAD    "grad.<node>.<param>" and "grad.<input>" (float inputs), with grad
 *   CT_STATE   "state.<node>.<state>" [B, d]: with carry, the state a cell node
 *              starts from, set to its final state by every run
 * Shapes as rnnc run / interp_run write them (names and layout identical). */
enum { CT_PARAM, CT_INPUT, CT_OUTPUT, CT_GRAD, CT_STATE };
typedef struct CTensor {
  const char *name;
  int role, dtype;       /* CT_*, DT_F32 or DT_I32 */
  int rank;
  int64_t dim[4];            /* rank <= 4 */
  int64_t numel;
  void *data;            /* numel elements, 64-byte aligned, zeroed at first */
  int slot;              /* its buf slot */
  int shared;            /* data belongs to another CModel (cmodel_share) */
} CTensor;

typedef struct CompileOpts {
  int grad;              /* compile the backward pass too (needs md->grad) */
  int carry;             /* cell states start from CT_STATE tensors and are
                            left there: a forward run continues the last one
                            (forward-direction cells only) */
  int portable;          /* generic x86-64 code (no AVX2) */
  int64_t colweight;     /* a step's GEMMs with a weight of at least this
                            many floats run by columns over the threads
                            (compile_cell.c, BIGWEIGHT); 0: the default.
                            Never changes a result's bits (tests set 1) */
  int nofold;            /* a GEMM over an embedding's rows runs over them,
                            not over its table (compile_cell.c, fold_in);
                            forward bits are the same either way */
} CompileOpts;

typedef struct CModel CModel;
/* require: m after pipeline(.., PASS_SCHEDULE, ..), md verified (with
 * o->grad, md->grad). env binds T, B and every model dim without a default.
 * produce: the model's kernels JIT-compiled for the host and its plan; every
 * tensor allocated. RNNC_EINPUT (an unbound dim, o->grad without a loss,
 * o->carry with a backward-direction cell), RNNC_ESHAPE, RNNC_ENOMEM,
 * RNNC_EVERIFY (an internal code generator error) with a message in err. */
int cmodel_compile(Module *m, Model *md, const Env *env, const CompileOpts *o, CModel **out, char *err,
                   size_t errlen);
/* The same kernels, unoptimized, in a new module of cx (for print --emit);
 * the caller owns *out. */
int cmodel_module(Module *m, Model *md, const Env *env, const CompileOpts *o, struct LLVMOpaqueContext *cx,
                  struct LLVMOpaqueModule **out, char *err, size_t errlen);
/* The kernels in a new module of cx (unoptimized; only the plans' kernels
 * external) and the CModel describing them: tensors (no data), plans, checks,
 * workspace sizes; no JIT, no buffers (rnnc compile: compiler/aot.c). The
 * caller owns both. */
int cmodel_build(Module *m, Model *md, const Env *env, const CompileOpts *o, struct LLVMOpaqueContext *cx,
                 struct LLVMOpaqueModule **mod, CModel **out, char *err, size_t errlen);
void cmodel_free(CModel *cm);    /* NULL is fine */
int cmodel_ntensor(const CModel *cm);
CTensor *cmodel_tensor(CModel *cm, int i);
CTensor *cmodel_find(CModel *cm, const char *name); /* NULL if none */
/* Point dst's parameters at src's (same names and shapes), e.g. a T = 1 model
 * for generation sharing a training model's weights. RNNC_ESHAPE on a mismatch. */
int cmodel_share_params(CModel *dst, CModel *src, char *err, size_t errlen);
/* Forward (and with grad, backward: every CT_GRAD is overwritten) on the
 * current tensors, with nthreads (<= 0: OpenMP's default). Token ids and
 * targets are checked first: RNNC_EINPUT "input 'tokens' has token id 70 at
 * [3, 1], outside [0, 65)" as the interpreter says. */
int cmodel_run(CModel *cm, int grad, int nthreads, char *err, size_t errlen);
/* cmodel_run, profiling the forward plan into fwd and the backward into bwd
 * (either NULL: not profiled; arrays of cmodel_plan's and cmodel_bplan's
 * nop ops). */
int cmodel_run_prof(CModel *cm, int grad, int nthreads, PlanProf *fwd, PlanProf *bwd, char *err, size_t errlen);
/* Zero every CT_STATE tensor. */
void cmodel_reset_state(CModel *cm);
/* Milliseconds spent generating and JIT-compiling (cmodel_compile). */
double cmodel_compile_ms(const CModel *cm);
/* Bytes of every buffer the model holds (tensors, workspace, packed weights). */
size_t cmodel_bytes(const CModel *cm);
/* The plan, for print --after schedule and tests. */
const Plan *cmodel_plan(const CModel *cm);
/* The backward plan (empty without grad). */
const Plan *cmodel_bplan(const CModel *cm);

/* ---- frontends/api_net.c: a compiled net of the public API ---------------- */

enum { NET_LIVE = 0x6c74656e, NET_DEAD = 0x6474656e }; /* "netl", "netd" */
struct rnnc_net {
  unsigned magic;   /* NET_LIVE, NET_DEAD after rnnc_net_free */
  rnnc_ctx *ctx;
  rnnc_net *next;   /* the context's list of nets, live and dead */
  CModel *cm;       /* NULL once freed */
  Model *md;
  Arena *arena;     /* env */
  Env env;          /* T, B and every header dim of md */
  int flags;        /* RNNC_GRAD, RNNC_CARRY */
  int nthreads;     /* 0: OpenMP's default */
  rnnc_net *src;    /* the net whose parameters this one shares, or NULL */
};
/* RNNC_OK when net is a live net whose shared parameters are live too; else
 * RNNC_EMISUSE, with a message when net is a freed one (a NULL or foreign
 * pointer has no context to hold one). fn names the API call. */
int api_net_check(rnnc_net *net, const char *fn);
/* Set ctx's message (printf-style) under the lock every net of a context
 * shares, and return code. */
int api_net_fail(rnnc_ctx *ctx, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* A successful call: the message becomes "" (written only when it is not). */
int api_net_ok(rnnc_ctx *ctx);
/* Bind dims into env (arena a): T and B as given (required), md's header
 * dims as given or from their defaults; RNNC_OK or a status with ctx's
 * message set ("rnnc_compile: dimension 'V' of model 'm' has no default;
 * give it in dims"). */
int api_net_bind(rnnc_ctx *ctx, Model *md, Arena *a, int ndims, const rnnc_dim *dims, Env *env);
/* md->grad (autodiff, with grad) and the cells' schedules, as pipeline()
 * leaves them; a status with ctx's message set. */
int api_net_passes(rnnc_ctx *ctx, Model *md, int grad);

/* ---- compiler/emit.c: a module as optimized LLVM IR or assembly ---------- */

/* Verify mod, optimize it in place (default<O3> for the host CPU, as jit_add
 * does) and print it to f: LLVM IR, or with asm_ the host's assembly. mod
 * stays the caller's. RNNC_EVERIFY (a module that does not verify: a code
 * generator bug), RNNC_EINPUT (no native target, an LLVM error) or RNNC_EIO
 * (f cannot be written), with a one-line message in err. */
int emit_module(struct LLVMOpaqueModule *mod, int asm_, FILE *f, char *err, size_t errlen);
/* The same for target machine tm: what is EMIT_OBJ (an object file), EMIT_ASM
 * or EMIT_LLVM; f written in binary. */
enum { EMIT_OBJ, EMIT_ASM, EMIT_LLVM };
int emit_to(struct LLVMOpaqueModule *mod, struct LLVMOpaqueTargetMachine *tm, int what, FILE *f, char *err,
            size_t errlen);

/* ---- compiler/aot.c, aot_header.c: rnnc compile ---------------------------- */

/* The CPU an object is compiled for: LLVM's CPU name and features (native:
 * the host's, as the JIT's), and the vector instructions kernels use there
 * (ISA_*; portable: ISA_SSE2, the 4-wide path). */
typedef struct AotTarget {
  char cpu[64], features[2048];
  char desc[96];         /* "x86-64-v3", "native (znver3)": in the descriptor and header */
  int isa, portable;
} AotTarget;
/* RNNC_EINPUT "unknown CPU 'x' (known: ...)" for a name not in aot.c's table;
 * NULL is "native". */
int aot_target(const char *cpu, AotTarget *t, char *err, size_t errlen);
/* One program of the object: md NULL when not compiled. env binds T, B and
 * every dim of md; o.grad for the training program, o.carry as asked
 * (o.portable is set from the target). */
typedef struct AotProg {
  Model *md;
  Env env;
  int64_t B, T;
  CompileOpts o;
} AotProg;
typedef struct AotSpec {
  Module *m;                      /* after schedule(); models verified, with grad where asked */
  AotProg prog[RNNC_AOT_NPROG];   /* forward, step, train (rnnc_aot.h) */
  const char *prefix;             /* a C identifier: <prefix>_model, <prefix>_forward, ... */
  AotTarget target;
  int emit;                       /* EMIT_OBJ, EMIT_ASM, EMIT_LLVM */
  const char *out;                /* the object (assembly, IR) */
  const char *header;             /* NULL: none */
  const char *command;            /* the command line, for the header's comment */
} AotSpec;
/* Compile every program of s into one module and write s->out (and
 * s->header). RNNC_EIO "cannot write 'x.o': No such file or directory"
 * (nothing left behind), the compiler's statuses otherwise; message in err. */
int aot_compile(const AotSpec *s, char *err, size_t errlen);
/* The header of descriptor d (rnnc_aot.h; kernels not needed) to f: the
 * parameter table as an enum, per program its io struct, workspace size
 * macro and inline functions (notes/AOT_HEADER.md's shape; docs/aot.md). */
void aot_header(FILE *f, const AotSpec *s, const rnnc_aot_model *d);

/* ---- runtime/tensor.c ---------------------------------------------------- */

enum { TENSOR_MAXRANK = 4 };
typedef struct Tensor {
  char *name;
  int dtype;                 /* DT_* */
  int rank;
  int64_t dim[TENSOR_MAXRANK];
  void *data;                /* row-major, malloc'ed, owned by the set */
} Tensor;

typedef struct TensorSet {
  Tensor *t; int n, cap;
  char **metakey, **metaval; int nmeta, capmeta; /* __metadata__ */
} TensorSet;

size_t dtype_size(int dtype);
const char *dtype_name(int dtype); /* "F32", ... */
int64_t tensor_numel(const Tensor *t);
void tset_init(TensorSet *s);
void tset_clear(TensorSet *s);    /* frees every tensor */
Tensor *tset_find(const TensorSet *s, const char *name);
/* Add a zeroed tensor (replacing one of that name); NULL when out of memory. */
Tensor *tset_add(TensorSet *s, const char *name, int dtype, int rank, const int64_t *dim);
/* Set a metadata entry (replacing that key); RNNC_OK or RNNC_ENOMEM. */
int tset_setmeta(TensorSet *s, const char *key, const char *val);
const char *tset_getmeta(const TensorSet *s, const char *key); /* NULL if absent */
/* Move every tensor and metadata entry of src into dst (replacing same names)
 * and leave src empty. RNNC_ENOMEM (both sets unchanged) or RNNC_OK. */
int tset_move(TensorSet *dst, TensorSet *src);

/* ---- runtime/safetensors.c ----------------------------------------------- */

/* Read/write a safetensors file. On failure returns RNNC_EIO or RNNC_EFORMAT
 * and writes a one-line message naming the file and the problem into err.
 * Reading adds the file's tensors and metadata to out (replacing same names)
 * only on success; on failure out is unchanged. Writing goes through a
 * temporary file (a name unique to the process and call), fsynced, renamed
 * over path, then the directory fsynced, so path is never left
 * half-written, even by a crash. docs/formats.md lists every check. */
int safetensors_read(const char *path, TensorSet *out, char *err, size_t errlen);
int safetensors_write(const char *path, const TensorSet *s, char *err, size_t errlen);

/* ---- runtime/rng.c, runtime/init.c --------------------------------------- */

typedef struct Rng { uint64_t s[4]; } Rng;  /* xoshiro256** */
void rng_seed(Rng *r, uint64_t seed);
uint64_t rng_next(Rng *r);
double rng_uniform(Rng *r);              /* [0, 1) */
double rng_normal(Rng *r);               /* N(0, 1) */
/* Fill parameters as PyTorch's default init does: embedding N(0, 1); cell
 * params U(-1/sqrt(H), 1/sqrt(H)) with H the cell's hidden size (its first
 * state's size); softmax (nn.Linear) weight and bias U(-1/sqrt(d), 1/sqrt(d))
 * with d the input size. Adds one F32 tensor per MParam to out. */
int init_params(const Model *md, const Env *env, uint64_t seed, TensorSet *out,
                char *err, size_t errlen);

/* ---- ir/bind.c: a model's dims for a run --------------------------------- */

/* require: a verified model. produce: in env (entries allocated in a), on top
 * of what it holds already (e.g. --dim bindings, never changed), the header
 * defaults, then the dims that the shapes of the inputs (each model input,
 * by node name) and params (each "<node>.<param>") determine; every tensor
 * checked against its shape. inputs or params NULL: empty. Token ids must be
 * I32 or I64, floats F32 or F64. RNNC_EINPUT ("missing input 'tokens'",
 * "dimension 'S' of input 'src' is not bound: give it a value") or
 * RNNC_ESHAPE ("input 'tokens' has shape [3], expected [T, B]", a wrong
 * dtype) with a one-line message in err; env may hold some new bindings then.
 * interp_run binds through it; so does `rnnc run --engine jit`. */
int bind_dims(Module *m, Model *md, Env *env, const TensorSet *params, const TensorSet *inputs, Arena *a,
              char *err, size_t errlen);

/* ---- ir/interp.c ---------------------------------------------------------- */

/* The reference interpreter: plain C, values kept as double. In float32 mode
 * every op's result is rounded to float, so results match a float32
 * implementation op by op; float64 mode is for gradient checks.
 *
 * Binds the model's dims from the defaults, then from inputs' and params'
 * shapes (env may carry more bindings, e.g. from the command line).
 * Writes every declared output (named after its node) into out and, with
 * wantgrad, grad.<node>.<param> for every parameter and grad.<input> for
 * every float input (feature sequences and initial states).
 * Returns RNNC_OK or RNNC_ESHAPE / RNNC_EINPUT with a one-line message. */
enum { PREC_F32, PREC_F64 };

/* Number of elements of node i's value for one example, with the cell's dims
 * bound in cenv (a matrix param counts m*n). */
long node_numel(const Cell *c, int i, const Env *cenv);
/* One step of a cell for one example. val[i] is a buffer of node_numel(c, i)
 * doubles for every node; the caller fills the leaves (input, state, param;
 * matrices row-major) and cell_eval computes every other node in order.
 * In PREC_F32 each result is rounded to float. */
void cell_eval(const Cell *c, const Env *cenv, double **val, int prec);

typedef struct InterpOpts {
  int prec;
  int wantgrad; /* needs md->loss >= 0 and g (autodiff(m, md)) */
  int wantloss; /* also write the loss under its node name without wantgrad */
} InterpOpts;
/* ir/interp_model.c. env (NULL: none) is read, not changed. Dims are bound
 * from env, then the header defaults, then the shapes of the inputs and
 * params (RNNC_ESHAPE on a mismatch, RNNC_EINPUT for a missing tensor, an
 * unbound dim, a token id or target out of range). Inputs and params may be
 * F32 or F64 (token ids and targets I32 or I64). The loss of a softmax with a
 * target is the mean cross-entropy over the positions whose target is not the
 * ignore index; when no position counts it is 0 with zero gradient. With
 * wantgrad the loss is written too. out receives tensors only on RNNC_OK. */
int interp_run(Module *m, Model *md, const ModelGrad *g, Env *env,
               const TensorSet *params, const TensorSet *inputs,
               const InterpOpts *o, TensorSet *out, char *err, size_t errlen);

/* ---- ir/gradcheck.c ------------------------------------------------------- */

/* Analytic float64 gradients of the reference interpreter against central
 * finite differences, on small sizes and random data. See gradcheck.c for
 * the sizes, the data and the definition of the error. */
typedef struct GradcheckOpts {
  int ncoord;             /* coordinates checked per tensor; 0: 16 */
  double step;            /* relative finite-difference step; 0: 1e-4 */
  double tol;             /* pass when every error <= tol; 0: 1e-6 */
  const ModelGrad *grad;  /* NULL: autodiff(m, md) */
} GradcheckOpts;

typedef struct GradcheckTensor {
  char name[128];         /* "grad.h.W_ih", "grad.feats" */
  long numel, checked;    /* elements, and how many were compared */
  long skipped;           /* drawn but not compared: the loss is not smooth
                             there (a relu or step switches near the point) */
  double maxerr;          /* the largest error over the checked elements */
  long worst;             /* its flat (row-major) index */
  double analytic, numeric; /* the two values there */
} GradcheckTensor;

typedef struct GradcheckReport {
  GradcheckTensor *t; int n; /* malloc'ed; gradcheck_report_free */
  double loss;            /* at the unperturbed point */
  double floor;           /* the error's denominator floor (see gradcheck.c) */
  double maxerr;          /* over every tensor */
  long skipped;           /* over every tensor */
  int pass;               /* maxerr <= tol */
  Env env;                /* the dims it bound (names interned in m) */
} GradcheckReport;

/* Returns RNNC_OK with the report filled (pass or not), or an error status
 * with a one-line message when the model cannot be checked. */
int gradcheck(Module *m, Model *md, const Env *env, uint64_t seed, const GradcheckOpts *o,
              GradcheckReport *r, char *err, size_t errlen);
void gradcheck_report_free(GradcheckReport *r);
/* The point gradcheck checks, for another check of the same point (rnnc
 * gradcheck's JIT check): its generator seeded from seed, and the inputs it
 * draws from it (float inputs N(0, 1); token ids and targets in the range
 * their readers accept, a quarter of a softmax's targets its ignore index),
 * float64 / int64 tensors into in. RNNC_ENOMEM with a message. */
void gradcheck_rng(Rng *rng, uint64_t seed);
int gradcheck_inputs(const Model *md, const Env *e, Rng *rng, TensorSet *in, char *err, size_t errlen);


/* ==== issue 4: training and generation (contracts; each banner's file owns
 * the implementation) ======================================================= */

/* ---- runtime/vocab.c: vocabularies ---------------------------------------- */

/* Byte level: all 256 byte values, id = byte (V = 256). Character level: the
 * distinct UTF-8 code points of the training text, sorted by code point
 * (invalid UTF-8 is an error that names the file and byte offset). Word level:
 * whitespace-separated words seen at least mincount times, sorted by
 * descending count then bytewise, with "<unk>" as id 0; other words map to it.
 * A vocabulary is saved in a checkpoint's metadata as JSON (vocab_to_json). */
enum { VOCAB_BYTE, VOCAB_CHAR, VOCAB_WORD };
typedef struct Vocab {
  int kind;
  int n;              /* ids 0 .. n-1 */
  char **tok;         /* per id: its bytes, NUL-terminated (byte level: "\x00" is "" with len 1) */
  int *len;           /* per id: byte length of tok[id] */
  int unk;            /* word level: id of "<unk>" (0); else -1 */
  void *index;        /* private lookup table */
} Vocab;
/* Build from text (the training split). RNNC_EINPUT: empty text, invalid
 * UTF-8 at character level ("<name>: invalid UTF-8 at byte 1234"), no word
 * reaching mincount. name is for messages. */
int vocab_build(Vocab *v, int kind, const char *name, const char *text, size_t len, int mincount,
                char *err, size_t errlen);
/* text -> ids (malloc'ed, *n of them). Character level: a code point not in
 * the vocabulary is RNNC_EINPUT ("<name>: character U+00E9 at byte 17 is not
 * in the vocabulary"); word level maps unknown words to <unk> and counts them
 * in *nunk (may be NULL). */
int vocab_encode(const Vocab *v, const char *name, const char *text, size_t len, int32_t **ids, size_t *n,
                 size_t *nunk, char *err, size_t errlen);
/* ids -> text, malloc'ed, NUL-terminated (word level: words joined by ' '). */
char *vocab_decode(const Vocab *v, const int32_t *ids, size_t n);
/* Word level: the id of a word, or -1. Char/byte level: of one token's bytes. */
int vocab_lookup(const Vocab *v, const char *tok, int len);
/* {"kind":"char","tokens":[...]} ; malloc'ed. */
char *vocab_to_json(const Vocab *v);
/* RNNC_EFORMAT on malformed JSON ("vocabulary: ..."). */
int vocab_from_json(Vocab *v, const char *json, char *err, size_t errlen);
/* 1 when a and b have the same kind and tokens in the same order. */
int vocab_equal(const Vocab *a, const Vocab *b);
void vocab_free(Vocab *v); /* NULL fields fine; leaves v zeroed */

/* ---- runtime/corpus.c, runtime/batch.c: data sets and batches ------------- */

/* A data set in memory: token streams or sequences of text, or numeric
 * sequences with labels (IDX). */
enum { DS_STREAM, DS_LINES, DS_IDX };
typedef struct Dataset {
  int kind;
  /* DS_STREAM: one token stream */
  int32_t *ids; size_t nids;
  /* DS_LINES: nseq sequences, sequence i is ids[off[i] .. off[i+1]) */
  size_t *off; size_t nseq;
  /* DS_IDX: nseq examples of steps x feat floats (images: 28 x 28, scaled
   * to [0, 1]), label[i] in [0, nclass) */
  float *x; int32_t *label; int steps, feat, nclass;
  /* DS_LINES from labelled text (labeled.c): lab = LAB_CLASS, label[nseq] a
   * class per sequence; LAB_TAG, tag[nids] a class per token; nclass classes.
   * lab = LAB_NONE: each line is a language model's sequence. */
  int lab; int32_t *tag;
} Dataset;
void dataset_free(Dataset *d);
/* runtime/labeled.c: labelled per-line text (docs/training.md, "Data").
 * LAB_CLASS: one example per line, "LABEL<TAB>TEXT" (blank lines skipped);
 * LAB_TAG: one token per line, "TOKEN<TAB>TAG", a blank line between
 * sequences (word-level tokens). Classes: the sorted (bytewise) distinct
 * labels / tags of the training data, saved as the JSON array "rnnc.classes".
 * Messages name the file and line: "t.txt: line 12: no tab between the label
 * and the text", "... empty text", "... empty label", "... token 'a b' has
 * white space", "t.txt: line 12: class 'x' is not in the checkpoint's
 * classes" (from: "the checkpoint's", "the training data's"). */
enum { LAB_NONE, LAB_CLASS, LAB_TAG };
typedef struct Classes {
  int n;
  char **name;        /* sorted, distinct, NUL-terminated */
} Classes;
/* The text column (LAB_CLASS: each TEXT; LAB_TAG: each TOKEN), one per line,
 * malloc'ed, NUL after *outlen bytes: what vocab_build reads. RNNC_EINPUT for
 * a malformed line or no example. */
int labeled_text(int lab, const char *name, const char *text, size_t len, char **out, size_t *outlen, char *err,
                 size_t errlen);
/* vocab_build (kind, mincount) over labeled_text's column; invalid UTF-8 is
 * reported at its line: "t.txt: line 3: invalid UTF-8 at byte 5 (...)". */
int labeled_vocab(Vocab *v, int lab, int kind, const char *name, const char *text, size_t len, int mincount,
                  char *err, size_t errlen);
int classes_build(Classes *c, int lab, const char *name, const char *text, size_t len, char *err, size_t errlen);
char *classes_to_json(const Classes *c); /* ["neg","pos"], malloc'ed */
int classes_from_json(Classes *c, const char *json, char *err, size_t errlen); /* RNNC_EFORMAT "classes: ..." */
int classes_lookup(const Classes *c, const char *s, size_t len); /* id or -1 */
void classes_free(Classes *c);
/* DS_LINES with lab set, tokens by v (LAB_TAG: v word level, one token per
 * line, unknown words <unk>), classes by c. A text that encodes to no token
 * is "line N: empty text". */
int dataset_labeled(Dataset *d, int lab, const Vocab *v, const Classes *c, const char *from, const char *name,
                    const char *text, size_t len, char *err, size_t errlen);
/* Read a whole file, malloc'ed with a NUL after the len bytes (RNNC_EIO
 * "cannot open 'x': No such file or directory"; RNNC_EINPUT "'x' is empty").
 * gzip files (by magic) are decompressed. (Not read_file: tests/testutil.h
 * has that name.) */
int data_read_file(const char *path, char **text, size_t *len, char *err, size_t errlen);
/* Text -> data set with v: DS_STREAM (the whole text) or DS_LINES (one
 * sequence per non-empty line, the newline not included). */
int dataset_text(Dataset *d, int kind, const Vocab *v, const char *name, const char *text, size_t len,
                 char *err, size_t errlen);
/* Split off the last fraction frac (0 < frac < 1) of a stream, or of the
 * sequences after a seeded shuffle, into valid. */
int dataset_split(Dataset *all, double frac, uint64_t seed, Dataset *train, Dataset *valid, char *err,
                  size_t errlen);
/* runtime/idx.c: IDX images (idx3, [N, rows, cols] unsigned bytes) and labels
 * (idx1), gzip or plain: DS_IDX with steps = rows, feat = cols, nclass = 1 +
 * the largest label. RNNC_EFORMAT for a bad magic, a size mismatch, a count
 * mismatch between the two files. */
int dataset_idx(Dataset *d, const char *images, const char *labels, char *err, size_t errlen);

/* One batch, [T, B] row-major (t major), as the model's inputs want them. */
typedef struct Batch {
  int T, B;
  int32_t *tokens;   /* [T, B] input ids (DS_STREAM, DS_LINES); pad positions 0 */
  int32_t *targets;  /* [T, B] next ids (LAB_TAG: tag ids); pad positions -1 (the softmax's ignore) */
  float *mask;       /* [T, B] 1 real step, 0 padding (DS_LINES), else NULL */
  float *x;          /* [T, B, feat] (DS_IDX) */
  int32_t *label;    /* [B] (DS_IDX, DS_LINES with LAB_CLASS); padding rows -1 */
  int64_t ntarget;   /* targets that count (not -1) / labels */
  int reset;         /* the carried state must be zeroed before this batch */
} Batch;
/* Streams: the stream cut into B contiguous parts; chunk k of an epoch is
 * steps k*T .. k*T+T-1 of each part, targets shifted by one, so a state
 * carried from chunk to chunk continues its part (truncated BPTT); an epoch
 * has (nids - 1) / B / T chunks (RNNC_EINPUT when 0: "300 tokens, fewer than B*T+1 =
 * 2049"; the caller names the data), and with shuffle each epoch starts at a
 * seeded offset in [0, T). Lines and IDX: B sequences per batch in a seeded
 * shuffled order per epoch (no shuffle: file order), each cut to T steps,
 * reset = 1; a last partial batch is padded with ignored rows. Lines with
 * LAB_CLASS: tokens[t, r] is token t of the line (all min(n, T) of them, no
 * shift), label[r] its class; LAB_TAG: targets[t, r] the token's tag. */
typedef struct Batcher {
  const Dataset *d;
  int T, B, shuffle;
  uint64_t seed;
  int64_t epoch, pos;  /* position: the next batch of this epoch */
  int64_t nbatch;      /* batches per epoch */
  size_t *perm;        /* this epoch's order (lines, IDX), or NULL */
  int64_t offset;      /* this epoch's start offset (streams) */
  int64_t span;        /* steps of each part (streams) */
  int tail;            /* steps of the last chunk when fewer than T (batcher_whole), else 0 */
  Batch b;             /* the buffers batcher_next fills */
} Batcher;
int batcher_init(Batcher *bt, const Dataset *d, int T, int B, int shuffle, uint64_t seed, char *err,
                 size_t errlen);
/* A stream for evaluation, in file order: the parts L = (nids - 1) / B steps
 * long, so every target but the last (nids - 1) % B is in one chunk. When T
 * does not divide L the last chunk (b.T) has tail = L % T steps; the rest
 * have T. RNNC_EINPUT with fewer than B + 1 tokens ("5 tokens, fewer than
 * B+1 = 9"). */
int batcher_whole(Batcher *bt, const Dataset *d, int T, int B, char *err, size_t errlen);
/* The steps of batcher_whole's last chunk when fewer than T, else 0 (also
 * when d is not a stream or is too short). */
int stream_tail(const Dataset *d, int T, int B);
/* Fill bt->b with the next batch; at the end of an epoch starts the next one
 * (epoch + 1) first. Deterministic in (seed, epoch, pos). */
const Batch *batcher_next(Batcher *bt);
/* Position for a checkpoint ("epoch pos") and back: a restored batcher yields
 * the same batches as the one saved. RNNC_EFORMAT on a malformed string. */
void batcher_tell(const Batcher *bt, char *buf, size_t len);
int batcher_seek(Batcher *bt, const char *pos, char *err, size_t errlen);
void batcher_free(Batcher *bt);

/* ---- runtime/wordvec.c: pretrained word vectors --------------------------- */

/* Fill the rows of an embedding weight [V, E] (word-level vocabulary v) from
 * a GloVe / word2vec text file ("word x1 .. xE" per line; word2vec's first
 * line "N E" is skipped) or word2vec binary ("N E\n" then per word "word "
 * and E little-endian floats); format by content, gzip read through zlib.
 * V must be v->n. Rows of words with no vector are left as they are;
 * *missing (may be NULL) counts them; a word's first vector wins. On an
 * error weight is unchanged: RNNC_EFORMAT ("g.txt:3: 'mat' has 2 values,
 * expected 3"; binary: "w.bin: truncated in vector 2 of 5 ('dog'): 5 of its
 * 12 bytes"), RNNC_ESHAPE ("g.txt:1: vectors have 50 dims, the embedding
 * 64"), RNNC_EIO; docs/training.md lists every message. */
int wordvec_load(const char *path, const Vocab *v, float *weight, int64_t V, int64_t E, int64_t *missing,
                 char *err, size_t errlen);

/* ---- compiler/optgen.c, runtime/optim.c: compiled optimizer steps --------- */

/* The numeric work of an update after backward, as JIT-compiled kernels over
 * every parameter: the gradients' global norm (fixed summation order: the
 * same for any thread count), clipping by norm (PyTorch's clip_grad_norm_:
 * scale = max_norm / (norm + 1e-6) when below 1) and by value, weight decay,
 * and the update: SGD (momentum, dampening 0, PyTorch's buffer convention),
 * Adam, AdamW (PyTorch's formulas, bias-corrected). Frozen parameters are
 * neither clipped nor updated (nor counted in the norm). */
enum { OPT_SGD, OPT_ADAM, OPT_ADAMW };
enum { LR_CONSTANT, LR_STEP, LR_COSINE };
typedef struct OptConfig {
  int kind;             /* OPT_* */
  double lr;            /* base learning rate */
  double momentum;      /* SGD */
  double beta1, beta2, eps; /* Adam(W): 0.9, 0.999, 1e-8 */
  double weight_decay;  /* SGD/Adam: added to the gradient; AdamW: decoupled */
  double clip_norm;     /* global-norm clipping; <= 0: none (the CLI's default is 5) */
  double clip_value;    /* clamp each gradient to [-v, v] first; <= 0: none */
  int sched;            /* LR_*: */
  int64_t step_size; double gamma;   /* LR_STEP: lr * gamma^(floor(step / step_size)) */
  int64_t warmup, total; double min_lr; /* LR_COSINE: linear warm-up over warmup
                           steps, then cosine from lr to min_lr at total */
} OptConfig;
typedef struct OptParam {
  const char *name;     /* "h.W_ih" */
  float *w, *g;         /* the parameter and its gradient (numel floats) */
  int64_t numel;
  int frozen;
} OptParam;
typedef struct Optim Optim;
/* Compile the kernels for these parameters (JIT); the optimizer keeps the
 * pointers (the caller keeps the buffers alive) and owns its state (zeroed).
 * RNNC_EINPUT for a bad config ("learning rate must be > 0, got -1"). */
int optim_new(const OptConfig *c, const OptParam *p, int np, Optim **out, char *err, size_t errlen);
void optim_free(Optim *o); /* NULL is fine */
/* The learning rate of step (0-based) under the schedule. */
double optim_lr(const OptConfig *c, int64_t step);
/* One update with nthreads (<= 0: OpenMP's default) on the current gradients:
 * *gnorm the global norm before clipping. A non-finite gradient changes
 * nothing and returns RNNC_EINPUT with *bad the index of the first parameter
 * (in p order) whose gradient is not finite; else *bad = -1. Steps count from
 * 0 (optim_steps). */
int optim_step(Optim *o, int nthreads, double *gnorm, int *bad, char *err, size_t errlen);
int64_t optim_steps(const Optim *o);
/* State for a checkpoint: tensors "optim.<name>.<buf>" (buf: momentum; m, v)
 * and metadata "optim.step". optim_restore checks names and shapes
 * (RNNC_EFORMAT "checkpoint has no 'optim.h.W_ih.m'"). */
int optim_save(const Optim *o, TensorSet *out);
int optim_restore(Optim *o, const TensorSet *in, char *err, size_t errlen);
/* compiler/optgen.c: the kernels optim.c runs, generated into mod (built in
 * cx) as prefix + "_sumsq", "_sgd", "_adam"; nothing JIT-specific (no
 * addresses, no triple). Each works on elements [lo, hi) of one parameter
 * (pointers to its element 0, not overlapping), lo a multiple of OPT_CHUNK,
 * hi a multiple of it or the parameter's numel, so a parameter can be split
 * over threads at chunk boundaries. clamp(g) is g clamped to [-clipv, clipv]
 * (clipv = +inf: none), d = clamp(g) * scale then (+ wd * w), float32 steps
 * as PyTorch 1.13 rounds them (docs/training.md, "Optimizers").
 *   _sumsq: part[c] = the sum of clamp(g)^2 over chunk c (in double, a fixed
 *           order), for each chunk c in the range; NaN when a g there is not
 *           finite (even when clamped)
 *   _sgd:   mode OPT_SGD_PLAIN: w += neglr * d; OPT_SGD_FIRST: buf = d,
 *           w += neglr * buf; OPT_SGD_MOMENTUM: buf = buf * momentum + d,
 *           w += neglr * buf
 *   _adam:  w *= decay (AdamW; 1 for Adam), m = m * beta1 + omb1 * d,
 *           v = v * beta2 + (omb2 * d) * d,
 *           w += (negstep * m) / (sqrt(v) / bc2sqrt + eps) */
enum { OPT_CHUNK = 4096 };
enum { OPT_SGD_PLAIN, OPT_SGD_FIRST, OPT_SGD_MOMENTUM };
/* the kernels' types, the same as an AOT object's (rnnc_aot.h) */
typedef rnnc_opt_sumsq_fn OptSumsqFn; /* (g, lo, hi, clipv, part) */
typedef rnnc_opt_sgd_fn OptSgdFn;     /* (w, g, buf, lo, hi, clipv, scale, neglr, wd, momentum, mode) */
typedef rnnc_opt_adam_fn OptAdamFn;   /* (w, g, m, v, lo, hi, clipv, scale, wd, decay, beta1, omb1, beta2,
                                          omb2, negstep, bc2sqrt, eps) */
void optgen(struct LLVMOpaqueContext *cx, struct LLVMOpaqueModule *mod, const char *prefix);
/* The three kernels, generated and compiled in a new JIT (*j: the caller
 * frees it with jit_free, after the last call of a kernel). */
typedef struct OptKernels {
  OptSumsqFn sumsq;
  OptSgdFn sgd;
  OptAdamFn adam;
} OptKernels;
int optgen_jit(Jit **j, OptKernels *k, char *err, size_t errlen);
/* runtime/optstep.c (in librnnc_rt.a, so rnnc_-prefixed): the config
 * check, the chunk tables and the step itself over memory the caller owns;
 * optim.c (the JIT's Optim) and runtime/aot_rt.c (a compiled training step)
 * run this same code, so their updates are bitwise the same.
 * Chunks: parameter i's trainable elements are cut into chunks of OPT_CHUNK
 * (the last one shorter), numbered parameter by parameter; a frozen
 * parameter has none. */
typedef struct OptStep {
  const OptConfig *c;
  int np;
  const OptParam *p;            /* [np] w, g, numel, frozen (name unused) */
  float *const *s1, *const *s2; /* [np] state: SGD's momentum buffer, Adam's m
                                   and v (NULL where the kind has none) */
  const int64_t *cfirst;        /* [np + 1] parameter i's chunks: cfirst[i] .. cfirst[i+1]-1 */
  int64_t nchunk;
  const int64_t *cstart;        /* [nchunk + 1] trainable elements before each chunk */
  double *part;                 /* [nchunk] written: each chunk's sum of squares */
  OptKernels k;
} OptStep;
/* The public config as the optimizer's (a kind or schedule out of range
 * stays as it is: rnnc_opt_check names it). */
OptConfig rnnc_opt_config(const rnnc_optim_config *c);
/* RNNC_EINPUT with the JIT's message unless c is usable ("learning rate
 * must be > 0, got -1"). */
int rnnc_opt_check(const OptConfig *c, char *err, size_t errlen);
/* The learning rate of step (0-based) under the schedule (optim_lr). */
double rnnc_opt_lr(const OptConfig *c, int64_t step);
/* The chunks of p[0 .. np-1], and their tables: cfirst [np + 1], cstart
 * [rnnc_opt_nchunk + 1]. */
int64_t rnnc_opt_nchunk(const OptParam *p, int np);
void rnnc_opt_tables(const OptParam *p, int np, int64_t *cfirst, int64_t *cstart);
/* One update at step (0-based) with nthreads (<= 0: OpenMP's default), as
 * optim_step describes: *gnorm the global norm before clipping; a
 * non-finite gradient changes nothing and returns RNNC_EINPUT with *bad
 * the first such parameter (else *bad = -1). */
int rnnc_opt_step(const OptStep *s, int64_t step, int nthreads, double *gnorm, int *bad);

/* ---- runtime/aot_rt.c: the AOT runtime (rnnc_aot.h), in librnnc_rt.a ----- */

/* RNNC_EINPUT with the interpreter's message unless every id of the int32
 * input name (id[0 .. numel-1]) is in [0, ch->bound), or is ch->ignore
 * for a target with one ("input 'tokens' has token id 70 at [3, 1],
 * outside [0, 65)"); compiler/cmodel.c checks its runs with it too. */
int rnnc_check_input(const char *name, const int32_t *id, int64_t numel, const rnnc_aot_check *ch, char *err,
                     size_t errlen);

/* ---- runtime/sample.c: sampling and beam search ---------------------------- */

/* One token from a probability row p[V]: temperature <= 0 is greedy (the
 * first largest; no draw, r may be NULL); else p^(1/temperature)
 * renormalized (computed from logs in double), restricted to the topk most
 * probable (ties: the lower id; topk <= 0: all), drawn with r (exactly one
 * rng_uniform per call). Entries <= 0 (or NaN) are never drawn. */
int sample_token(const float *p, int V, double temperature, int topk, Rng *r);
/* A beam step: given K rows' next tokens tok[K] and, per row, the row it
 * extends (parent[K]; NULL on the first call: every row starts from the same
 * state), reorder the model's carried states by parent, feed tok, and write
 * log-probabilities of the next token, logp[K, V]. Returns RNNC_OK or a
 * status (beam_search stops and returns it). */
typedef int (*BeamStepFn)(void *ctx, const int32_t *tok, const int32_t *parent, int K, float *logp);
/* Beam search of width K for length tokens after a prefix already fed (the
 * caller passes the last prefix token as first): keeps the K best partial
 * sequences by summed log-probability (lenpen > 0: divided by len^lenpen at
 * the end, as GNMT's length normalization with alpha = lenpen), ties broken
 * by lower token id then lower parent row. out[length] the best, *score its
 * summed log-probability. eos >= 0 ends a hypothesis at that token: every
 * extension of a live one by eos is a finished candidate (len counts the
 * eos), the K live ones are the best others; out is filled with eos after
 * it. f is called at most length times (not after the last step); rows past
 * the live ones (fewer than K candidates) are fillers whose logp is ignored.
 * score may be NULL. RNNC_EINPUT for V, K < 1, length < 0, first or eos
 * out of range; else RNNC_OK or f's status. */
int beam_search(BeamStepFn f, void *ctx, int V, int K, int32_t first, int length, int eos, double lenpen,
                int32_t *out, double *score);

/* ---- ir/genmodel.c: the model for generation ------------------------------ */

/* From a language model (an i32 token input read by an embedding, a softmax
 * with a target), the model that gives the next-token probabilities: the same
 * nodes and parameters, its softmax without the target (probabilities
 * [T, B, K]) as the only output, inputs no longer read dropped. Added to m as
 * "<name>_gen" (verified; RNNC_EVERIFY with a message when md is not such a
 * model: "model 'tagger' has no softmax with a target"). Precisely: the loss
 * (md->loss) is a softmax with a target over a sequence, and the nodes it
 * reads (the only ones kept, in md's order: final, last and other outputs go)
 * read exactly one input, the tokens, and run no cell backward ("cannot
 * generate with 'enc.bwd': it runs backward in time"). The output tensor is
 * named after the softmax node ("loss" [T, B, V]). Asked again for the same
 * md, returns the model made the first time. The caller runs schedule(m)
 * before cmodel_compile (with carry, T = 1, B = 1 or the beam width). Note
 * m then holds one more model: model_find(m, NULL) finds none. */
int model_for_generation(Module *m, const Model *md, Model **out, char *err, size_t errlen);

/* ---- runtime/checkpoint.c: training checkpoints ---------------------------- */

/* A checkpoint is a safetensors file: every parameter under its name, the
 * optimizer's state (optim_save), and metadata: "rnnc.model_hash" (FNV-1a 64
 * of the model's canonical text, 16 hex digits), "rnnc.step", "rnnc.rng"
 * (the training RNG state), "rnnc.data" (batcher_tell), "rnnc.vocab"
 * (vocab_to_json) and "rnnc.config" (the training options, JSON). Written by
 * safetensors_write: temporary file, fsync, rename, fsync of the directory,
 * so a crash mid-save leaves the previous checkpoint. */
uint64_t model_hash(Module *m, const Model *md);
void rng_to_string(const Rng *r, char *buf, size_t len);  /* 64 hex digits */
int rng_from_string(Rng *r, const char *s);               /* RNNC_EFORMAT */

#endif
