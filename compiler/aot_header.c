/* aot_header.c — the C header of a model compiled ahead of time.
 * require: the descriptor aot.c built (in memory; its sizes are what the
 * object holds). produce: the model's own API as text: the parameter table as
 * an enum, and per program an io struct (its inputs, then its outputs, typed
 * pointers with their shapes; a language model's step output is said to be
 * the next token's probabilities), the workspace size as a macro affine in the
 * thread count (from rnnc_aot_ws_bytes for 1 and 2 threads: the runtime's own
 * layout), and small inline functions over rnnc_aot.h. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "ir.h"

/* s as a C identifier fragment (every other character '_'), upper-cased if up. */
static void ident(FILE *f, const char *s, int up)
{
  for (; *s; s++)
    fputc(isalnum((unsigned char)*s) || *s == '_' ? (up ? toupper((unsigned char)*s) : *s) : '_', f);
}

static void shape(FILE *f, int64_t dtype, int64_t rank, const int64_t *dim)
{
  fprintf(f, "%s[", dtype == RNNC_I32 ? "i32" : "f32");
  for (int64_t r = 0; r < rank; r++)
    fprintf(f, "%s%lld", r ? ", " : "", (long long)dim[r]);
  fputc(']', f);
}

static const char *const upname[RNNC_AOT_NPROG] = {"FORWARD", "STEP", "TRAIN"};
static const char *const enumname[RNNC_AOT_NPROG] = {"RNNC_AOT_FORWARD", "RNNC_AOT_STEP", "RNNC_AOT_TRAIN"};

/* The io struct and the functions of program k. */
static void program(FILE *f, const char *P, const char *U, const rnnc_aot_model *d, int k, int nexttoken)
{
  const rnnc_aot_prog *p = d->prog[k];
  const char *n = p->name;
  if (k == RNNC_AOT_STEP)
    fprintf(f, "\n/* ---- step: one time step of B = %lld rows, the cell states carried from call\n"
               " * to call (generation) ---- */\n", (long long)p->B);
  else
    fprintf(f, "\n/* ---- %s: T = %lld steps of B = %lld rows%s%s ---- */\n", n, (long long)p->T, (long long)p->B,
            k == RNNC_AOT_TRAIN ? "; forward, backward and the optimizer's update" : "",
            p->carry ? ", the cell states carried from call to call" : "");
  fprintf(f, "#define %s_%s_B %lld\n#define %s_%s_T %lld\n", U, upname[k], (long long)p->B, U, upname[k],
          (long long)p->T);
  fprintf(f, "typedef struct %s_%s_io {\n", P, n);
  for (int pass = 0; pass < 2; pass++)
    for (int64_t i = 0; i < p->ntensor; i++) {
      const rnnc_aot_tensor *t = &p->tensor[i];
      if (t->io < 0 || (t->role == RNNC_AOT_OUTPUT) != pass)
        continue;
      fprintf(f, "  %s%s *", pass ? "" : "const ", t->dtype == RNNC_I32 ? "int32_t" : "float");
      ident(f, t->name, 0);
      fprintf(f, "; /* %s ", pass ? "output" : "input ");
      shape(f, t->dtype, t->rank, t->dim);
      fprintf(f, "%s */\n", pass && nexttoken ? ": the next token's probabilities" : "");
    }
  fprintf(f, "} %s_%s_io;\n", P, n);
  size_t a = rnnc_aot_ws_bytes(d, k, 1), b = rnnc_aot_ws_bytes(d, k, 2);
  fprintf(f, "/* the workspace: 64-byte aligned, for nthreads threads */\n");
  fprintf(f, "#define %s_%s_WS_BYTES(nthreads) ((size_t)%zu + (size_t)%zu * (size_t)(nthreads))\n", U, upname[k],
          2 * a - b, b - a);
  /* the io array: the struct's pointers in order, in a's room */
  fprintf(f, "static inline void *const *%s_%s_ioa(const %s_%s_io *io, void **a)\n{\n  if (!io)\n    return NULL;\n",
          P, n, P, n);
  int64_t j = 0;
  for (int pass = 0; pass < 2; pass++)
    for (int64_t i = 0; i < p->ntensor; i++) {
      const rnnc_aot_tensor *t = &p->tensor[i];
      if (t->io < 0 || (t->role == RNNC_AOT_OUTPUT) != pass)
        continue;
      fprintf(f, "  a[%lld] = (void *)(uintptr_t)io->", (long long)j++);
      ident(f, t->name, 0);
      fprintf(f, ";\n");
    }
  fprintf(f, "  return a;\n}\n");
  if (k != RNNC_AOT_TRAIN)
    fprintf(f,
            "static inline int %s_%s_init(void *ws, size_t bytes, int nthreads)\n"
            "{\n  return rnnc_aot_init(&%s_model, %s, ws, bytes, nthreads);\n}\n",
            P, n, P, enumname[k]);
  const char *fn = k == RNNC_AOT_TRAIN ? "backward" : n;
  fprintf(f,
          "%sstatic inline int %s_%s(void *ws, const float *params, const %s_%s_io *io)\n"
          "{\n  void *a[%lld];\n  return %s(&%s_model, %sws, params, %s_%s_ioa(io, a));\n}\n",
          k == RNNC_AOT_TRAIN ? "/* forward and backward: the gradients in the workspace (_grads) */\n" : "", P, fn, P, n,
          (long long)(p->nio ? p->nio : 1), k == RNNC_AOT_TRAIN ? "rnnc_aot_backward" : "rnnc_aot_run", P,
          k == RNNC_AOT_TRAIN ? "" : k == RNNC_AOT_STEP ? "RNNC_AOT_STEP, " : "RNNC_AOT_FORWARD, ", P, n);
  if (k == RNNC_AOT_TRAIN) {
    fprintf(f,
            "/* the optimizer's state: floats, zeroed by the caller before the first step */\n"
            "#define %s_OPT_FLOATS ((size_t)2 * %s_PARAM_FLOATS)\n"
            "/* a training workspace with optimizer c (rnnc_base.h), the parameters named in\n"
            " * frozen[0 .. nfrozen-1] kept as they are */\n"
            "static inline int %s_train_init(void *ws, size_t bytes, int nthreads, const rnnc_optim_config *c,\n"
            "                                int nfrozen, const char *const *frozen)\n"
            "{\n  int st = rnnc_aot_init(&%s_model, RNNC_AOT_TRAIN, ws, bytes, nthreads);\n"
            "  return st ? st : rnnc_aot_train_init(&%s_model, ws, c, nfrozen, frozen);\n}\n"
            "/* one step: forward, backward, clipping, the update of params and opt_state at\n"
            " * the schedule's learning rate for step (0-based); loss and gnorm may be NULL */\n"
            "static inline int %s_train_step(void *ws, float *params, float *opt_state, int64_t step,\n"
            "                                const %s_train_io *io, float *loss, double *gnorm)\n"
            "{\n  void *a[%lld];\n  return rnnc_aot_train_step(&%s_model, ws, params, opt_state, step, "
            "%s_train_ioa(io, a), loss, gnorm);\n}\n"
            "/* the gradients: %s_PARAM_FLOATS floats, the parameters' layout */\n"
            "static inline float *%s_grads(void *ws) { return rnnc_aot_grads(&%s_model, ws); }\n",
            U, U, P, P, P, P, P, (long long)(p->nio ? p->nio : 1), P, P, U, P, P);
  }
  if (p->carry)
    fprintf(f, "/* zero the carried states */\nstatic inline void %s_%s_reset(void *ws) { rnnc_aot_reset(&%s_model, ws); }\n",
            P, n, P);
}

void aot_header(FILE *f, const AotSpec *s, const rnnc_aot_model *d)
{
  const char *P = s->prefix;
  char U[256];
  size_t n = 0;
  for (; P[n] && n + 1 < sizeof U; n++)
    U[n] = (char)toupper((unsigned char)P[n]);
  U[n] = 0;
  fprintf(f, "/* %s.h — generated by rnnc %s; do not edit.\n", P, RNNC_VERSION);
  if (s->command)
    fprintf(f, " *   %s\n", s->command);
  fprintf(f,
          " * Model '%s' for CPU %s.\n"
          " * The API: rnnc_aot.h and docs/aot.md. Link:\n"
          " *   cc prog.c %s.o -lrnnc_rt -lsleef -lm -fopenmp\n"
          " *   cc prog.c %s.o $(pkg-config --cflags --libs rnnc-rt) */\n",
          d->name, d->cpu, P, P);
  fprintf(f, "#ifndef %s_H\n#define %s_H\n\n#include <rnnc_aot.h>\n\n", U, U);
  fprintf(f, "#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n");
  fprintf(f, "extern const rnnc_aot_model %s_model;\n\n", P);
  fprintf(f, "/* the parameters: one buffer of %s_PARAM_FLOATS floats; parameter i is\n"
             " * %s_model.param[i] (name, rank, dim, numel, offset in floats) */\n", U, P);
  fprintf(f, "#define %s_PARAM_FLOATS %lld\n#define %s_NPARAM %lld\nenum {\n", U, (long long)d->param_floats, U,
          (long long)d->nparam);
  for (int64_t i = 0; i < d->nparam; i++) {
    const rnnc_aot_param *q = &d->param[i];
    fprintf(f, "  %s_PARAM_", U);
    ident(f, q->name, 0);
    fprintf(f, " = %lld, /* \"%s\" ", (long long)i, q->name);
    shape(f, RNNC_F32, q->rank, q->dim);
    fprintf(f, " at %lld */\n", (long long)q->offset);
  }
  fprintf(f, "};\n");
  for (int k = 0; k < RNNC_AOT_NPROG; k++)
    if (d->prog[k])
      /* a language model's step is its next-token model (ir/genmodel.c) */
      program(f, P, U, d, k, k == RNNC_AOT_STEP && s->prog[k].md != s->prog[RNNC_AOT_FORWARD].md);
  fprintf(f, "\n/* the message of the last failure on ws */\n"
             "static inline const char *%s_message(const void *ws) { return rnnc_aot_message(ws); }\n", P);
  fprintf(f, "\n#ifdef __cplusplus\n}\n#endif\n\n#endif\n");
}
