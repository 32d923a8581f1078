/* rnnc.h — the public C API of rnnc.
 *
 * Conventions (as SQLite and Lua): handles are opaque; every function that can
 * fail returns an int status, RNNC_OK (0) on success; the message of the last
 * failure is kept on the context (rnnc_errmsg). Results come back through
 * parameters marked OUT. The library never prints and never exits.
 *
 * A context (rnnc_ctx) holds one module: the built-in cells rnn, gru and lstm,
 * then every cell and model loaded from IR text (rnnc_load) or built from C
 * (the cell and model builders below). Everything the context hands out lives
 * until rnnc_close, except where a function says otherwise.
 *
 * A call that fails changes nothing: the module is as it was before the call,
 * and an open builder can go on being used.
 */
#ifndef RNNC_H
#define RNNC_H

#include <stdio.h>
#include <stddef.h>
#include <stdint.h>

#include "rnnc_base.h"
#include "rnnc_ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- contexts ------------------------------------------------------------ */

typedef struct rnnc_ctx rnnc_ctx;

/* A new context holding the built-in cells; NULL when out of memory.
 * Free it with rnnc_close. */
rnnc_ctx *rnnc_open(void);
/* Free the context, its module and any builder still open on it (the builder's
 * handle is then invalid). NULL is fine. */
void rnnc_close(rnnc_ctx *ctx);
/* The message of the last failed call on ctx. After a call that succeeded:
 * "", or the warnings of a load or builder end (an unused parameter), rendered
 * like errors. For text that does not parse or verify, the rendered diagnostics
 * ("file:line:col: error: message", the source line and a caret, one or more,
 * each line ending in '\n'). The string belongs to ctx and stays valid until
 * the next call on ctx. */
const char *rnnc_errmsg(rnnc_ctx *ctx);

/* Parse and verify IR text (docs/ir.md) into the context's module; name is the
 * file name its diagnostics show. All or nothing: on an error no cell or model
 * of the text is kept. Returns RNNC_OK, RNNC_ESYNTAX or RNNC_EVERIFY. */
int rnnc_load(rnnc_ctx *ctx, const char *name, const char *text);
/* rnnc_load of a file's contents; RNNC_EIO when it cannot be read. */
int rnnc_load_file(rnnc_ctx *ctx, const char *path);

/* The canonical text of the module's cells and models (not the built-in
 * cells), in the order they were added. RNNC_EMISUSE while a builder is open;
 * RNNC_EIO when writing to f fails. */
int rnnc_print(rnnc_ctx *ctx, FILE *f);
/* The same text in a new NUL-terminated string (*out, freed with rnnc_free). */
int rnnc_print_string(rnnc_ctx *ctx, char **out /* OUT */);
/* Free memory the library handed out to the caller. NULL is fine. */
void rnnc_free(void *p);

/* ---- building a cell from C ---------------------------------------------
 *
 * The builder makes the same graph the text makes. Values are int ids; a value
 * made with a NULL name is an anonymous temporary (printed inline, as in
 * `sigmoid(W @ x + b)`), and may be used only once: name it to use it twice.
 * Shapes and dimensions are strings in the IR's syntax: "[4*H, I]", "H + 1".
 * A value named like "h'" is not allowed; rnnc_cell_update sets a state's new
 * value. Shapes are checked when the cell ends (rnnc_cell_end), with
 * diagnostics that point at the builder call ("<builder>:LINE:1", LINE the
 * number of the builder call on this context, the call shown below it).
 *
 *   rnnc_cell_builder *cb;
 *   rnnc_value x, h, W, U, b, xh, hh, s, hn;
 *   rnnc_cell_begin(ctx, "elman", &cb);
 *   rnnc_cell_input(cb, "x", "[I]", &x);
 *   rnnc_cell_state(cb, "h", "[H]", &h);
 *   rnnc_cell_param(cb, "W", "[H, I]", &W); ... U, b
 *   rnnc_op(cb, RNNC_OP_MATVEC, NULL, 2, (rnnc_value[]){W, x}, &xh);
 *   ...
 *   rnnc_op(cb, RNNC_OP_TANH, NULL, 1, &s, &hn);
 *   rnnc_cell_update(cb, "h", hn);            // h' = tanh(...)
 *   rnnc_cell_out(cb, hn);                    // out h'
 *   rnnc_cell_end(cb);
 */

typedef struct rnnc_cell_builder rnnc_cell_builder;
typedef int rnnc_value;

/* The primitive ops: RNNC_OP_ADD, RNNC_OP_TANH, ..., one per row of the op
 * table (rnnc_ops.h, which gives each op's spelling, arity and shape rule).
 * The leaves RNNC_OP_INPUT, _STATE, _PARAM, _CONST and _ZEROS are made by
 * rnnc_cell_input/state/param, rnnc_const and rnnc_zeros, and RNNC_OP_SPLIT
 * and _SLICE by rnnc_split and rnnc_slice, not by rnnc_op. */
enum {
#define RNNC_X(id, sp, ar, sh, pr, ev) RNNC_OP_##id,
  OPS(RNNC_X)
#undef RNNC_X
  RNNC_NOPS
};

/* Start a cell. A context has at most one open builder (cell or model) at a
 * time. On success *cb is valid until rnnc_cell_end or rnnc_close. */
int rnnc_cell_begin(rnnc_ctx *ctx, const char *name, rnnc_cell_builder **cb /* OUT */);
/* Declare the cell's inputs, states and parameters, in signature order. */
int rnnc_cell_input(rnnc_cell_builder *cb, const char *name, const char *shape, rnnc_value *v /* OUT */);
int rnnc_cell_state(rnnc_cell_builder *cb, const char *name, const char *shape, rnnc_value *v /* OUT */);
int rnnc_cell_param(rnnc_cell_builder *cb, const char *name, const char *shape, rnnc_value *v /* OUT */);
/* A value computed by op from nargs operands (the op's arity; two or more for
 * RNNC_OP_CONCAT). name may be NULL. */
int rnnc_op(rnnc_cell_builder *cb, int op, const char *name, int nargs, const rnnc_value *args,
            rnnc_value *v /* OUT */);
/* A scalar constant. */
int rnnc_const(rnnc_cell_builder *cb, const char *name, double x, rnnc_value *v /* OUT */);
/* A vector of zeros: shape such as "[H]". */
int rnnc_zeros(rnnc_cell_builder *cb, const char *name, const char *shape, rnnc_value *v /* OUT */);
/* `a, b, c = split(v, n)`: the n equal parts of v, named names[0..n-1] (all
 * given), their ids in parts[0..n-1]. */
int rnnc_split(rnnc_cell_builder *cb, rnnc_value v, int n, const char *const *names,
               rnnc_value *parts /* OUT: n ids */);
/* `split(v, n)[k]`: one part of v; name may be NULL. */
int rnnc_split_part(rnnc_cell_builder *cb, const char *name, rnnc_value v, int n, int k,
                    rnnc_value *part /* OUT */);
/* `slice(v, start, size)`: dimensions as strings, e.g. "H", "2*H". */
int rnnc_slice(rnnc_cell_builder *cb, const char *name, rnnc_value v, const char *start,
               const char *size, rnnc_value *part /* OUT */);
/* `h' = v`: v becomes the new value of the state named state. An anonymous v
 * takes the name "h'". Each state is updated once. */
int rnnc_cell_update(rnnc_cell_builder *cb, const char *state, rnnc_value v);
/* `out v`: the cell's output. */
int rnnc_cell_out(rnnc_cell_builder *cb, rnnc_value v);
/* Verify the cell and add it to the module. Frees cb, even on error; on error
 * the cell is not added (RNNC_EVERIFY, the diagnostics in rnnc_errmsg). */
int rnnc_cell_end(rnnc_cell_builder *cb);

/* ---- building a model from C --------------------------------------------
 *
 * Model nodes are int ids. A node made with a NULL name is anonymous, printed
 * inline (`softmax(concat(fw, bw), K)`) and used once; nodes with parameters
 * (embedding, cell application, softmax) need a name, since their parameters
 * are named <node>.<param>. The model is verified when it ends.
 *
 *   rnnc_model_builder *mb;
 *   rnnc_node tok, tgt, x, h, loss;
 *   rnnc_model_begin(ctx, "charlm", &mb);
 *   rnnc_model_dim(mb, "V", RNNC_NODEFAULT);
 *   rnnc_model_dim(mb, "H", 128);
 *   rnnc_model_input(mb, "tokens", RNNC_I32, "[T, B]", &tok);
 *   ...
 *   rnnc_embedding(mb, "x", tok, "V", "64", &x);
 *   rnnc_apply(mb, "h", "lstm", 1, &x, "H = H", 0, &h);
 *   rnnc_softmax(mb, "loss", h, "V", tgt, &loss);
 *   rnnc_model_output(mb, loss);
 *   rnnc_model_end(mb);
 */

typedef struct rnnc_model_builder rnnc_model_builder;
typedef int rnnc_node;

#define RNNC_NODEFAULT (-1L) /* rnnc_model_dim: the dimension has no default */
enum { RNNC_BACKWARD = 1 };  /* rnnc_apply flags: run t = T..1 */

/* Start a model (at most one open builder per context). On success *mb is
 * valid until rnnc_model_end or rnnc_close. */
int rnnc_model_begin(rnnc_ctx *ctx, const char *name, rnnc_model_builder **mb /* OUT */);
/* A named dimension of the model's header, with a default value (> 0) or
 * RNNC_NODEFAULT. */
int rnnc_model_dim(rnnc_model_builder *mb, const char *name, long def);
/* `input name: i32[T, B]`: dtype RNNC_I32 or RNNC_F32, shape a string. */
int rnnc_model_input(rnnc_model_builder *mb, const char *name, int dtype, const char *shape,
                     rnnc_node *n /* OUT */);
/* `name = embedding(tokens, V, E)`. */
int rnnc_embedding(rnnc_model_builder *mb, const char *name, rnnc_node tokens, const char *vocab,
                   const char *size, rnnc_node *n /* OUT */);
/* `name = cell(in..., bindings, backward)`: the cell applied over time.
 * bind is NULL or the bindings as in the IR: "H = 128, I = 2*E".
 * flags: 0 or RNNC_BACKWARD. The initial state is zero unless set next. */
int rnnc_apply(rnnc_model_builder *mb, const char *name, const char *cell, int nin,
               const rnnc_node *in, const char *bind, int flags, rnnc_node *n /* OUT */);
/* `init = (a, b)`: the initial state of cell node n, one node [B, d] per state. */
int rnnc_apply_init(rnnc_model_builder *mb, rnnc_node n, int ninit, const rnnc_node *init);
/* `init = enc`: the final states of cell node from seed cell node n. */
int rnnc_apply_init_from(rnnc_model_builder *mb, rnnc_node n, rnnc_node from);
/* `mask = m`: cell node n runs masked by m, an f32 [T, B] input (1 a real
 * step, 0 padding: the states are kept and the output is 0). */
int rnnc_apply_mask(rnnc_model_builder *mb, rnnc_node n, rnnc_node mask);
/* `name = onehot(tokens, V)`: token ids as one-hot rows [.., V], no parameters. */
int rnnc_onehot(rnnc_model_builder *mb, const char *name, rnnc_node tokens, const char *vocab,
                rnnc_node *n /* OUT */);
/* `concat(a, b, ...)` along the last dimension. */
int rnnc_concat(rnnc_model_builder *mb, const char *name, int nargs, const rnnc_node *args,
                rnnc_node *n /* OUT */);
/* `last(x)`: the step t = T of a sequence. */
int rnnc_last(rnnc_model_builder *mb, const char *name, rnnc_node x, rnnc_node *n /* OUT */);
/* `final(cellnode, state)`: a state after the last step. */
int rnnc_final(rnnc_model_builder *mb, const char *name, rnnc_node cellnode, const char *state,
               rnnc_node *n /* OUT */);
/* `softmax(x, K, target = y)`: target -1 for none (probabilities), else the
 * loss (mean cross-entropy) against target. */
int rnnc_softmax(rnnc_model_builder *mb, const char *name, rnnc_node x, const char *classes,
                 rnnc_node target, rnnc_node *n /* OUT */);
/* `ignore = index`: softmax node n skips targets equal to index (padding). */
int rnnc_softmax_ignore(rnnc_model_builder *mb, rnnc_node n, long index);
/* `logits(s)`, `probs(s)`: of softmax node s. `sum(x)`: all elements. */
int rnnc_logits(rnnc_model_builder *mb, const char *name, rnnc_node s, rnnc_node *n /* OUT */);
int rnnc_probs(rnnc_model_builder *mb, const char *name, rnnc_node s, rnnc_node *n /* OUT */);
int rnnc_sum(rnnc_model_builder *mb, const char *name, rnnc_node x, rnnc_node *n /* OUT */);
/* `output n`: declare a named node an output. */
int rnnc_model_output(rnnc_model_builder *mb, rnnc_node n);
/* Verify the model and add it to the module. Frees mb, even on error; on error
 * the model is not added (RNNC_EVERIFY, the diagnostics in rnnc_errmsg). */
int rnnc_model_end(rnnc_model_builder *mb);

/* ---- compiling and running a model (JIT) ----------------------------------
 *
 * rnnc_compile turns a model of the context into machine code for this CPU
 * (LLVM, in process) for fixed dimensions, and allocates every tensor the
 * model reads or writes. Tensors are then read and written by name:
 *   "<node>.<param>"        parameters (float32), e.g. "enc.W_ih"
 *   "<input>"               inputs: token ids and targets int32 [T, B], features
 *                           float32 [T, B, d], initial states [B, d]
 *   "<output>"              declared outputs (a loss is a scalar, shape [])
 *   "grad.<node>.<param>"   with RNNC_GRAD: gradients of the loss, and
 *   "grad.<input>"          of float inputs, written by rnnc_forward_backward
 *   "state.<node>.<state>"  with RNNC_CARRY: the state each cell node starts
 *                           from; every run leaves its final state there
 * Names and shapes are those of `rnnc run` (docs/cli.md). A net owns its
 * buffers; pointers from rnnc_data stay valid until rnnc_net_free. A net is
 * used by one thread at a time; two nets can run at once. Errors return a
 * status and set the context's message (rnnc_errmsg).
 *
 *   rnnc_net *net;
 *   rnnc_dim dims[] = {{"T", 64}, {"B", 32}};
 *   rnnc_compile(ctx, "charlm", 2, dims, RNNC_GRAD, &net);
 *   rnnc_init_params(net, 1);
 *   rnnc_set(net, "tokens", ids, sizeof ids);   // and "targets"
 *   rnnc_forward_backward(net);
 *   float loss; rnnc_get(net, "loss", &loss, sizeof loss);
 *   const float *g = rnnc_data(net, "grad.enc.W_ih");
 *   rnnc_net_free(net);
 */
typedef struct rnnc_net rnnc_net;
typedef struct rnnc_dim {
  const char *name; /* "T", "B" or a dimension of the model's header */
  long value;
} rnnc_dim;
enum {
  RNNC_GRAD = 1,  /* also compile the backward pass (the model needs a loss) */
  RNNC_CARRY = 2, /* cell states carried from run to run (state.* tensors):
                     compile with T = 1 for a single step (generation) */
};
/* Compile model (the last model of that name loaded or built) with dims
 * bound (T and B must be; header defaults apply otherwise) and flags.
 * RNNC_EINPUT for an unknown model or an unbound dim, RNNC_EMISUSE while a
 * builder is open, RNNC_ESHAPE for a dim < 1. On success *out is the net,
 * freed with rnnc_net_free (before rnnc_close). */
int rnnc_compile(rnnc_ctx *ctx, const char *model, int ndims, const rnnc_dim *dims, int flags,
                 rnnc_net **out /* OUT */);
/* Free a net and its buffers; NULL is fine. A freed net's small header is
 * kept, marked freed, until rnnc_close (in every build), so using the net
 * again returns RNNC_EMISUSE ("rnnc_forward: net used after rnnc_net_free").
 * rnnc_close frees the nets still live. */
void rnnc_net_free(rnnc_net *net);
/* The number of tensors (-1 for a bad net), and the name of tensor i (valid
 * until the net is freed; NULL out of range). */
int rnnc_tensor_count(rnnc_net *net);
const char *rnnc_tensor_name(rnnc_net *net, int i);
/* Type (RNNC_F32 or RNNC_I32), rank and dims (up to 4) of a tensor, each OUT
 * may be NULL; RNNC_EINPUT when there is none of that name. */
int rnnc_tensor_shape(rnnc_net *net, const char *name, int *dtype /* OUT */, int *rank /* OUT */,
                      int64_t dim[4] /* OUT */);
/* Copy bytes into / out of a tensor; bytes must be its exact size
 * (RNNC_ESHAPE otherwise, with both sizes in the message). */
int rnnc_set(rnnc_net *net, const char *name, const void *data, size_t bytes);
int rnnc_get(rnnc_net *net, const char *name, void *data /* OUT */, size_t bytes);
/* The tensor's buffer itself (owned by the net), or NULL (message set). */
void *rnnc_data(rnnc_net *net, const char *name);
/* Parameters: PyTorch's default initialization from seed; from / to a
 * safetensors file (every parameter, by name, shapes checked). */
int rnnc_init_params(rnnc_net *net, uint64_t seed);
int rnnc_load_params(rnnc_net *net, const char *path);
int rnnc_save_params(rnnc_net *net, const char *path);
/* dst's parameters become src's (same model and parameter shapes): a T = 1
 * RNNC_CARRY net for generation shares a training net's weights.
 * src must outlive dst. */
int rnnc_share_params(rnnc_net *dst, rnnc_net *src);
/* Threads of the runs (default: OpenMP's, OMP_NUM_THREADS). Results are
 * bitwise the same for any number. */
int rnnc_set_threads(rnnc_net *net, int nthreads);
/* The forward pass over T steps: outputs (and with RNNC_CARRY, states). */
int rnnc_forward(rnnc_net *net);
/* Forward, then backward: every grad.* tensor (needs RNNC_GRAD). */
int rnnc_forward_backward(rnnc_net *net);
/* Zero the carried states (RNNC_CARRY). */
int rnnc_reset_state(rnnc_net *net);
/* Milliseconds rnnc_compile spent generating and compiling code (-1 for a bad net). */
double rnnc_compile_ms(rnnc_net *net);

/* ---- training (JIT) -------------------------------------------------------
 *
 * An optimizer updates the parameters of a net compiled with RNNC_GRAD. The
 * whole step runs as compiled code: forward, backward, the gradients' global
 * norm and clipping, the update. Results are bitwise the same for any number
 * of threads (the net's, rnnc_set_threads).
 *
 *   rnnc_optim_config c;
 *   rnnc_optim_defaults(&c, RNNC_ADAM);
 *   c.lr = 2e-3;
 *   rnnc_optim *opt;
 *   rnnc_optim_new(net, &c, 0, NULL, &opt);
 *   for (...) {
 *     rnnc_set(net, "tokens", ...); rnnc_set(net, "targets", ...);
 *     float loss; rnnc_train_step(opt, &loss, NULL);
 *   }
 *   rnnc_checkpoint_save(opt, "ckpt.safetensors", 0, NULL);
 *   rnnc_optim_free(opt);
 */
typedef struct rnnc_optim rnnc_optim;
/* rnnc_optim_config, RNNC_SGD .., rnnc_optim_defaults: rnnc_base.h. */
/* An optimizer over every parameter of net (compiled with RNNC_GRAD) except
 * the nfrozen ones named in frozen (e.g. "x.weight": pretrained vectors kept
 * as they are). Compiles its kernels; its state (momentum, moments) starts at
 * zero. RNNC_EINPUT for a bad config or an unknown frozen name. net must
 * outlive the optimizer. */
int rnnc_optim_new(rnnc_net *net, const rnnc_optim_config *c, int nfrozen, const char *const *frozen,
                   rnnc_optim **out /* OUT */);
void rnnc_optim_free(rnnc_optim *opt); /* NULL is fine */
/* One training step on the net's current inputs: forward, backward, clipping
 * and the update at the schedule's learning rate for this step. loss and
 * gnorm (the global norm before clipping) may be NULL. A loss or gradient
 * that is not finite changes no parameter and returns RNNC_EINPUT: "step 12:
 * the loss is not finite" / "step 12: the gradient of 'h.W_ih' is not finite". */
int rnnc_train_step(rnnc_optim *opt, float *loss /* OUT */, double *gnorm /* OUT */);
/* Steps taken (restored by rnnc_checkpoint_load), and the learning rate the
 * next step uses. */
long rnnc_optim_steps(rnnc_optim *opt);
double rnnc_optim_lr(rnnc_optim *opt);
/* A checkpoint (safetensors): the parameters, the optimizer's state, the
 * net's carried states (RNNC_CARRY), the step, a hash of the model, and
 * nmeta key/value pairs of the caller's own metadata (keyval[2i] the key,
 * keyval[2i + 1] the value). Written to a temporary file, synced and renamed:
 * a crash leaves the previous file whole. */
int rnnc_checkpoint_save(rnnc_optim *opt, const char *path, int nmeta, const char *const *keyval);
/* Restore all of that. RNNC_EINPUT when the checkpoint is of another model
 * ("'c.safetensors' was saved from a different model (hash 1f.. vs 3a..)"),
 * RNNC_EFORMAT / RNNC_EIO for a bad or missing file; nothing changes then. */
int rnnc_checkpoint_load(rnnc_optim *opt, const char *path);
/* A metadata value of the checkpoint last loaded or saved by opt, or NULL
 * (valid until the next checkpoint call on opt). */
const char *rnnc_checkpoint_meta(rnnc_optim *opt, const char *key);

/* ---- generation and evaluation (JIT) --------------------------------------
 *
 * A generator runs a language model (token ids in, a softmax with a target
 * over the next token) one token at a time: the model's next-token
 * probabilities compiled for T = 1 with the states carried, for one row and
 * for width rows (beam search).
 *
 *   rnnc_generator *g;
 *   rnnc_generator_new(ctx, "charlm", 1, (rnnc_dim[]){{"V", 96}}, 4, &g);
 *   rnnc_generator_load_params(g, "ckpt.safetensors");
 *   int32_t out[100];
 *   rnnc_generate(g, prefix, nprefix, 100, 0.8, 0, 42, out);
 *   rnnc_generator_free(g);
 */
typedef struct rnnc_generator rnnc_generator;
/* dims: the model's header dims (T and B are not given: the generator binds
 * them); width >= 1: the most beams rnnc_beam_search may use. RNNC_EINPUT
 * when the model is not a language model or runs a cell backward in time. */
int rnnc_generator_new(rnnc_ctx *ctx, const char *model, int ndims, const rnnc_dim *dims, int width,
                       rnnc_generator **out /* OUT */);
void rnnc_generator_free(rnnc_generator *g); /* NULL is fine */
/* Parameters from a file (a checkpoint is fine), or shared with a net of the
 * same model (which must outlive the generator). */
int rnnc_generator_load_params(rnnc_generator *g, const char *path);
int rnnc_generator_share_params(rnnc_generator *g, rnnc_net *src);
int rnnc_generator_threads(rnnc_generator *g, int nthreads);
/* From a zero state, feed prefix[0 .. n-1] (n >= 1), then draw length tokens
 * into out: temperature 0 greedy, else from p^(1/temperature) restricted to
 * the topk most probable (topk <= 0: all), random draws from seed. */
int rnnc_generate(rnnc_generator *g, const int32_t *prefix, int n, int length, double temperature, int topk,
                  uint64_t seed, int32_t *out /* OUT: length */);
/* Beam search of width (<= the generator's) for length tokens after prefix:
 * the most probable continuation (summed log-probability; with lenpen > 0
 * divided by length^lenpen), ending early at eos (< 0: none; out is then
 * filled with eos). *score (may be NULL): its summed log-probability. */
int rnnc_beam_search(rnnc_generator *g, const int32_t *prefix, int n, int length, int width, double lenpen,
                     int eos, int32_t *out /* OUT: length */, double *score /* OUT */);
/* The log-probability (natural log) of ids[1 .. n-1], each given the ones
 * before it, from a zero state: a sentence's score, the product of its
 * conditionals. n >= 2. */
int rnnc_log_prob(rnnc_generator *g, const int32_t *ids, int n, double *logp /* OUT */);

#ifdef __cplusplus
}
#endif
#endif
