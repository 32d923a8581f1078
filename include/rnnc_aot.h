/* rnnc_aot.h — the runtime of models compiled ahead of time.
 *
 * `rnnc compile MODEL.rnn -o m.o --header m.h --prefix P` writes an object
 * holding the model's kernels, its plans and a descriptor (P_model), and a
 * header that is the model's own C API: the parameter table, the sizes of the
 * buffers the caller provides, and inline functions P_forward, P_step,
 * P_train_step ... over the calls below. The object needs this runtime
 * (librnnc_rt.a: plain C and OpenMP), SLEEF, libm and libgomp:
 *
 *   cc prog.c m.o -lrnnc_rt -lsleef -lm -fopenmp
 *   cc prog.c m.o $(pkg-config --cflags --libs rnnc-rt)
 *
 * Memory is the caller's. A workspace (its size from rnnc_aot_ws_bytes or
 * the header's P_..._WS_BYTES) holds everything of one program (forward,
 * step or train) but the parameters and the optimizer's state: the plan's
 * buffers, the carried states, the gradients, each thread's scratch, and an
 * area for every input and output, used when the caller's io entry for it is
 * NULL. No global state: two workspaces can run at once from two threads.
 * Every function returns a status (rnnc_base.h); the workspace keeps a
 * one-line message of the last failure (rnnc_aot_message). Nothing prints,
 * nothing exits, nothing allocates.
 *
 * The descriptor types below are the format of the object's data: rnnc
 * writes them, this runtime reads them; RNNC_AOT_ABI changes when they do.
 */
#ifndef RNNC_AOT_H
#define RNNC_AOT_H

#include <stddef.h>
#include <stdint.h>

#include "rnnc_base.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RNNC_AOT_ABI 1

/* ---- the object's data ----------------------------------------------------- */

/* A generated kernel: buf the plan's slots (0 the workspace, 1 the transient
 * area, 2 + k tensor k of the program), t the time step, [lo, hi) this
 * thread's share of its range, scratch this thread's scratch. */
typedef void (*rnnc_kernel)(void *const *buf, int64_t t, int64_t lo, int64_t hi, float *scratch);

/* One op of a plan (the compiler's PlanOp, the same layout). */
enum { RNNC_PLAN_CALL, RNNC_PLAN_LOOP };
typedef struct rnnc_plan_op {
  int32_t kind;        /* RNNC_PLAN_CALL or RNNC_PLAN_LOOP */
  int32_t fn;          /* CALL: index into the kernel table */
  int64_t n, grain;    /* CALL: range [0, n) split over the threads at multiples of grain */
  int32_t barrier;     /* CALL: 1: every thread waits after the call */
  int32_t chunk;       /* CALL: > 0: between barriers, the threads may take the range
                          dynamically, in chunks of at least this many grains;
                          0: static shares only (runtime/exec.c). It fills what was
                          padding, 0 in objects written before it. */
  int64_t T;           /* LOOP: the next nbody ops run for t = 0 .. T-1 */
  int32_t reverse, nbody; /* LOOP: reverse: t = T-1 .. 0 */
} rnnc_plan_op;

/* A parameter: floats [offset, offset + numel) of the parameter buffer
 * (offset a multiple of 16: 64 bytes). */
typedef struct rnnc_aot_param {
  const char *name;    /* "<node>.<param>", as in rnnc's checkpoints */
  int64_t rank, dim[4], numel, offset;
} rnnc_aot_param;

/* A tensor of a program. role as the compiler's CT_*: */
enum { RNNC_AOT_PARAM, RNNC_AOT_INPUT, RNNC_AOT_OUTPUT, RNNC_AOT_GRAD, RNNC_AOT_STATE };
typedef struct rnnc_aot_tensor {
  const char *name;    /* "h.W_ih", "tokens", "loss", "grad.h.W_ih", "state.h.c" */
  int64_t role;        /* RNNC_AOT_* */
  int64_t dtype;       /* RNNC_F32 or RNNC_I32 */
  int64_t rank, dim[4], numel;
  int64_t param;       /* PARAM, and the GRAD of a parameter: index into the
                          model's parameter table (the gradient then lies in the
                          workspace's gradient buffer at the parameter's offset);
                          else -1 */
  int64_t io;          /* INPUT, OUTPUT: index in the program's io array; else -1 */
} rnnc_aot_tensor;

/* An integer input checked before a run: ids in [0, bound) (a target may also
 * be the ignore index); the compiler's Check. */
typedef struct rnnc_aot_check {
  int64_t tensor, bound, target, hasignore, ignore, hastime, B;
} rnnc_aot_check;

/* A program: forward over T steps, one step with carried states, or the
 * training step (forward then backward). */
enum { RNNC_AOT_FORWARD, RNNC_AOT_STEP, RNNC_AOT_TRAIN, RNNC_AOT_NPROG };
typedef struct rnnc_aot_prog {
  const char *name;                /* "forward", "step", "train" */
  int64_t B, T;
  int64_t carry;                   /* 1: cells start from the STATE tensors and leave their final states there */
  int64_t nop, nbop;               /* the forward plan, the backward plan (train; else 0) */
  const rnnc_plan_op *op, *bop;
  const rnnc_kernel *fn, *bfn;     /* their kernel tables */
  int64_t ntensor;
  const rnnc_aot_tensor *tensor;   /* slot 2 + k is tensor k */
  int64_t ncheck;
  const rnnc_aot_check *check;
  int64_t nio;                     /* the io array's length: inputs, then outputs, in tensor order */
  int64_t loss;                    /* the tensor of the loss (train), else -1 */
  int64_t ws_floats, tws_floats;   /* the plan's workspace (zeroed at init) and transient area */
  int64_t scratch_floats;          /* per thread */
} rnnc_aot_prog;

/* The optimizer's kernels (compiler/optgen.c), for the training step. */
typedef void (*rnnc_opt_sumsq_fn)(const float *g, int64_t lo, int64_t hi, float clipv, double *part);
typedef void (*rnnc_opt_sgd_fn)(float *w, const float *g, float *buf, int64_t lo, int64_t hi, float clipv,
                                float scale, float neglr, float wd, float momentum, int32_t mode);
typedef void (*rnnc_opt_adam_fn)(float *w, const float *g, float *m, float *v, int64_t lo, int64_t hi,
                                 float clipv, float scale, float wd, float decay, float beta1, float omb1,
                                 float beta2, float omb2, float negstep, float bc2sqrt, float eps);

typedef struct rnnc_aot_model {
  int64_t abi;                     /* RNNC_AOT_ABI */
  const char *name;                /* the model's name in its IR */
  const char *cpu;                 /* what it was compiled for: "x86-64-v3", "native (znver3)" */
  int64_t nparam;
  const rnnc_aot_param *param;
  int64_t param_floats;            /* the parameter buffer's length */
  const rnnc_aot_prog *prog[RNNC_AOT_NPROG]; /* NULL: not compiled */
  rnnc_opt_sumsq_fn opt_sumsq;     /* with the training step; else NULL */
  rnnc_opt_sgd_fn opt_sgd;
  rnnc_opt_adam_fn opt_adam;
} rnnc_aot_model;

/* ---- running a program --------------------------------------------------------- */

/* Bytes of a workspace for program prog (RNNC_AOT_*) run by nthreads threads
 * (>= 1); 0 when m has no such program. The size is A + S·nthreads, and
 * nthreads 0 gives A. */
size_t rnnc_aot_ws_bytes(const rnnc_aot_model *m, int prog, int nthreads);
/* Make ws (bytes long, 64-byte aligned) a zeroed workspace of program prog
 * for nthreads threads (<= 0: omp_get_max_threads()). RNNC_EMISUSE when m's
 * ABI is not this runtime's, m has no such program, ws is NULL or not
 * 64-byte aligned, or bytes is too small ("workspace of 1000 bytes; program
 * 'forward' with 2 threads needs 52224"); the message is then
 * rnnc_aot_message(NULL) (kept per thread: there may be no workspace). */
int rnnc_aot_init(const rnnc_aot_model *m, int prog, void *ws, size_t bytes, int nthreads);
/* The message of the last failure on ws ("" when none); for a failed
 * rnnc_aot_init (which may have no workspace to write to), its message is
 * rnnc_aot_message(NULL), kept per thread. */
const char *rnnc_aot_message(const void *ws);
/* Run the program's forward plan (after checking its integer inputs: "input
 * 'tokens' has token id 70 at [3, 1], outside [0, 65)", RNNC_EINPUT).
 * params: the parameter buffer (m->param_floats floats). io: the program's
 * nio pointers (inputs, then outputs, in tensor order: the header's io
 * struct); io may be NULL, and any entry may be NULL: that tensor then lives
 * in the workspace (zeroed at init; a carried state, a mask of ones set once,
 * outputs read later with rnnc_aot_area). prog (RNNC_AOT_*) must be the
 * program ws was initialized for: the io array is that program's
 * (RNNC_EMISUSE "rnnc_aot_run: the workspace was made for program 'step',
 * not 'forward'"). On a training workspace it runs the forward pass only. */
int rnnc_aot_run(const rnnc_aot_model *m, int prog, void *ws, const float *params, void *const *io);
/* The training program's forward and backward plans: the gradients of every
 * parameter are left in rnnc_aot_grads(ws). */
int rnnc_aot_backward(const rnnc_aot_model *m, void *ws, const float *params, void *const *io);
/* Zero the carried states (STATE tensors) of ws. */
void rnnc_aot_reset(const rnnc_aot_model *m, void *ws);
/* The workspace's gradient buffer (train): the parameters' layout
 * (m->param_floats floats, parameter i at m->param[i].offset). NULL for
 * another program. */
float *rnnc_aot_grads(const rnnc_aot_model *m, void *ws);
/* A tensor's area in the workspace by name (inputs and outputs whose io entry
 * was NULL, states, gradients of float inputs; a parameter's gradient: its
 * place in rnnc_aot_grads); NULL when the program has no such tensor or it
 * is a parameter. */
void *rnnc_aot_area(const rnnc_aot_model *m, void *ws, const char *name);

/* ---- the training step ------------------------------------------------------------ */

/* Check c (the JIT's messages: "learning rate must be > 0, got -1") and keep
 * it in ws (a training workspace), with the parameters named in frozen[0 ..
 * nfrozen-1] left out of clipping and updates (RNNC_EINPUT for an unknown
 * name). Needed once before rnnc_aot_train_step. */
int rnnc_aot_train_init(const rnnc_aot_model *m, void *ws, const rnnc_optim_config *c, int nfrozen,
                        const char *const *frozen);
/* Floats of the optimizer's state buffer: 2 * m->param_floats (SGD's
 * momentum buffer at the parameters' offsets; Adam's m there and v at
 * param_floats + the offsets). Zeroed by the caller before the first step. */
size_t rnnc_aot_opt_floats(const rnnc_aot_model *m);
/* One training step: forward, backward, the gradients' global norm and
 * clipping, the update of params and opt_state at the schedule's learning
 * rate for step (0-based: the count of steps taken before, as rnnc train's).
 * *loss (may be NULL) the loss, *gnorm (may be NULL) the norm before
 * clipping. A loss or gradient that is not finite changes nothing and
 * returns RNNC_EINPUT: "step 12: the loss is not finite (nan)", "step 12:
 * the gradient of 'h.W_ih' is not finite" — the JIT's rnnc_train_step,
 * bitwise the same update when compiled for the same CPU. */
int rnnc_aot_train_step(const rnnc_aot_model *m, void *ws, float *params, float *opt_state, int64_t step,
                        void *const *io, float *loss, double *gnorm);

#ifdef __cplusplus
}
#endif

#endif
