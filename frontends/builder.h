/* builder.h — private to builder.c, builder_cell.c and builder_model.c: the
 * helpers both builders use (builder.c). They carry b_ now that they are
 * global, so that none clashes with a program linking the library. */
#ifndef RNNC_BUILDER_H
#define RNNC_BUILDER_H

#include "ir.h"

/* Append one line (the call) to the context's "<builder>" source; its Loc. */
Loc b_call(rnnc_ctx *ctx, const char *fmt, ...);
/* A string argument as the transcript shows it: "x" (escaped as in C), or NULL. */
const char *b_q(rnnc_ctx *ctx, const char *s);
/* Ids as the transcript shows them: "{3, 5}", or NULL. */
const char *b_ids(rnnc_ctx *ctx, int n, const int *ids);
/* Clear the context's message; RNNC_OK. */
int b_ok(rnnc_ctx *ctx);
/* A name the parser reads back as the same name; else 0 with an EMISUSE
 * message naming fn. */
int b_checkname(rnnc_ctx *ctx, const char *fn, const char *name);
/* Parse a shape such as "[4*H, I]" or a dimension such as "2*H + 1" for
 * what (e.g. "parameter 'W'"); RNNC_ESYNTAX with the parser's message. */
int b_getshape(rnnc_ctx *ctx, const char *fn, const char *what, const char *text, Shape *out);
int b_getdim(rnnc_ctx *ctx, const char *fn, const char *what, const char *text, Dim *out);
/* Make room for a per-node use count of node n. */
void b_track(Arena *a, int **uses, int *cap, int n);

/* Drop the open builder's unfinished cell or model from the module and free
 * the builder (builder_cell.c, builder_model.c). */
void b_cell_drop(rnnc_cell_builder *cb);
void b_model_drop(rnnc_model_builder *mb);

#endif
