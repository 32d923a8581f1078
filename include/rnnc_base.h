/* rnnc_base.h — what the compiler's API (rnnc.h) and the runtime of models
 * compiled ahead of time (rnnc_aot.h) share: status codes, element types,
 * and the optimizer's configuration. Plain C; no other rnnc header needed. */
#ifndef RNNC_BASE_H
#define RNNC_BASE_H

#ifdef __cplusplus
extern "C" {
#endif

enum {
  RNNC_OK = 0,
  RNNC_ENOMEM,   /* out of memory */
  RNNC_EIO,      /* a file could not be read or written */
  RNNC_ESYNTAX,  /* the model text does not parse */
  RNNC_EVERIFY,  /* the model parses but is not well formed */
  RNNC_EFORMAT,  /* a malformed tensor file */
  RNNC_ESHAPE,   /* a tensor has the wrong shape or type for the model */
  RNNC_EINPUT,   /* a missing tensor or a bad value (a token id out of range) */
  RNNC_EMISUSE,  /* the API was called wrongly */
};

/* Element types of tensors and model inputs. */
enum { RNNC_F32, RNNC_F64, RNNC_I32, RNNC_I64 };

/* ---- the optimizer's configuration ----------------------------------------
 * The JIT's rnnc_optim_new (rnnc.h) and a compiled training step
 * (rnnc_aot_train_init, rnnc_aot.h) take the same configuration and compute
 * the same update: PyTorch 1.13's torch.optim after clip_grad_value_ and
 * clip_grad_norm_. */
enum { RNNC_SGD, RNNC_ADAM, RNNC_ADAMW };                 /* rnnc_optim_config.kind */
enum { RNNC_LR_CONSTANT, RNNC_LR_STEP, RNNC_LR_COSINE };  /* rnnc_optim_config.schedule */
typedef struct rnnc_optim_config {
  int kind;             /* RNNC_SGD, RNNC_ADAM or RNNC_ADAMW */
  double lr;            /* the base learning rate */
  double momentum;      /* SGD (PyTorch's convention) */
  double beta1, beta2, eps; /* Adam, AdamW */
  double weight_decay;  /* SGD, Adam: added to the gradient; AdamW: decoupled */
  double clip_norm;     /* clip the gradients' global norm to this; <= 0: no clipping */
  double clip_value;    /* clamp every gradient to [-v, v] first; <= 0: no clamping */
  int schedule;         /* RNNC_LR_*: */
  long step_size; double gamma;          /* STEP: lr * gamma^floor(step / step_size) */
  long warmup, total; double min_lr;     /* COSINE: linear warm-up over warmup steps,
                                            then cosine from lr down to min_lr at total */
} rnnc_optim_config;
/* kind's defaults (PyTorch's): SGD lr 0.1, momentum 0; Adam and AdamW lr 1e-3,
 * betas 0.9 and 0.999, eps 1e-8, AdamW weight decay 0.01; clip_norm 5; a
 * constant schedule. */
void rnnc_optim_defaults(rnnc_optim_config *c, int kind);

#ifdef __cplusplus
}
#endif

#endif
