/* builder.c — the C builder API (include/rnnc.h): cells and models made by
 * calls instead of text, into the same IR the parser makes. The cell builder
 * is builder_cell.c, the model builder builder_model.c; this file holds what
 * both share: the public constants checked against the IR's, the "<builder>"
 * transcript, the checks of names, shapes and dimensions, and builder_close.
 *
 * require: an open context. produce: a verified cell or model appended to the
 * context's module at rnnc_cell_end / rnnc_model_end.
 *
 * Each call checks at once what needs no shapes (names, ids, arity, the syntax
 * of shape strings, single use of anonymous values) and fails with no effect;
 * shapes are checked by the verifier when the cell or model ends. Every node's
 * Loc is its builder call: line n of the context's "<builder>" source, which
 * is a transcript of the builder calls, so diagnostics show the call.
 */
#include <assert.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "builder.h"

/* The public RNNC_OP_* and the internal OP_* come from one table (rnnc_ops.h);
 * the dtypes are two lists, kept equal here. */
static_assert((int)RNNC_F32 == (int)DT_F32 && (int)RNNC_F64 == (int)DT_F64 &&
                  (int)RNNC_I32 == (int)DT_I32 && (int)RNNC_I64 == (int)DT_I64,
              "RNNC_ dtypes differ from DT_");

/* ---- the transcript, names, shapes ---------------------------------------- */

/* Append one line (the call) to the context's "<builder>" source; its Loc. */
Loc b_call(rnnc_ctx *ctx, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (ctx->blen + (size_t)n + 2 > ctx->bcap) {
    size_t cap = 2 * (ctx->blen + (size_t)n + 2);
    char *p = realloc(ctx->btext, cap);
    if (!p)
      die("out of memory");
    ctx->btext = p;
    ctx->bcap = cap;
    ctx->bsrc->text = p;
  }
  va_start(ap, fmt);
  vsnprintf(ctx->btext + ctx->blen, (size_t)n + 1, fmt, ap);
  va_end(ap);
  ctx->blen += (size_t)n;
  ctx->btext[ctx->blen++] = '\n';
  ctx->btext[ctx->blen] = 0;
  return (Loc){ctx->bsrc, ++ctx->bline, 1};
}

/* A string argument as the transcript shows it: "x", or NULL; escaped as in C,
 * so that each call stays one line. */
const char *b_q(rnnc_ctx *ctx, const char *s)
{
  if (!s)
    return "NULL";
  char *r = aalloc(ctx->m->arena, 4 * strlen(s) + 3), *p = r;
  *p++ = '"';
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\')
      p += sprintf(p, "\\%c", ch);
    else if (ch < 0x20 || ch == 0x7f)
      p += sprintf(p, "\\%03o", ch);
    else
      *p++ = (char)ch;
  }
  *p++ = '"';
  *p = 0;
  return r;
}

/* Ids as the transcript shows them: "{3, 5}". */
const char *b_ids(rnnc_ctx *ctx, int n, const int *ids)
{
  if (!ids)
    return "NULL";
  char *s = "{";
  for (int i = 0; i < n; i++)
    s = aprintf(ctx->m->arena, "%s%s%d", s, i ? ", " : "", ids[i]);
  return aprintf(ctx->m->arena, "%s}", s);
}

int b_ok(rnnc_ctx *ctx) { return api_fail(ctx, RNNC_OK, ""); }

static int isid0(int ch) { return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_'; }
static int isid(int ch) { return isid0(ch) || (ch >= '0' && ch <= '9'); }

/* A name the parser reads back as the same name (docs/ir.md, lexical
 * structure): letters, digits and '_', parts joined by single dots, no
 * trailing '; else an EMISUSE message naming fn. */
int b_checkname(rnnc_ctx *ctx, const char *fn, const char *name)
{
  if (!name || !*name)
    return api_fail(ctx, RNNC_EMISUSE, "%s: a name is required", fn), 0;
  const char *p = name;
  int good = isid0((unsigned char)*p);
  while (good && *p) {
    while (isid((unsigned char)*p))
      p++;
    if (*p == '.')
      good = isid((unsigned char)*++p);
    else if (*p)
      good = 0;
  }
  if (!good && strcmp(p, "'") == 0)
    return api_fail(ctx, RNNC_EMISUSE,
                    "%s: '%s' cannot end in ''' (rnnc_cell_update sets a state's new value)", fn,
                    name),
           0;
  if (!good)
    return api_fail(ctx, RNNC_EMISUSE, "%s: '%s' is not a valid name", fn, name), 0;
  return 1;
}

/* Parse a shape string such as "[4*H, I]" for what (e.g. "parameter 'W'");
 * RNNC_ESYNTAX with the parser's message on an error. */
int b_getshape(rnnc_ctx *ctx, const char *fn, const char *what, const char *text, Shape *out)
{
  if (!text)
    return api_fail(ctx, RNNC_EMISUSE, "%s: the shape of %s is NULL", fn, what);
  Module *m = ctx->m;
  int mark = m->diags.n;
  int rc = parse_shape(m, source_new(m, "<shape>", text), out);
  if (rc == RNNC_OK)
    return api_diags(ctx, mark, RNNC_OK);
  const Diag *d = mark < m->diags.n ? &m->diags.d[mark] : NULL;
  char *msg = d ? aprintf(m->arena, "%s (column %d)", d->msg, d->loc.col) : "syntax error";
  api_diags(ctx, mark, rc);
  return api_fail(ctx, RNNC_ESYNTAX, "%s: bad shape \"%s\" for %s: %s", fn, text, what, msg);
}

/* Parse one dimension such as "2*H + 1". */
int b_getdim(rnnc_ctx *ctx, const char *fn, const char *what, const char *text, Dim *out)
{
  if (!text)
    return api_fail(ctx, RNNC_EMISUSE, "%s: %s is NULL", fn, what);
  Module *m = ctx->m;
  int mark = m->diags.n;
  Shape s;
  int rc = parse_shape(m, source_new(m, "<dim>", aprintf(m->arena, "[%s]", text)), &s);
  const Diag *d = mark < m->diags.n ? &m->diags.d[mark] : NULL;
  char *msg = rc != RNNC_OK && d ? aprintf(m->arena, ": %s (column %d)", d->msg, d->loc.col - 1)
                                 : "";
  api_diags(ctx, mark, rc);
  if (rc != RNNC_OK || s.rank != 1)
    return api_fail(ctx, RNNC_ESYNTAX, "%s: bad dimension \"%s\" for %s%s", fn, text, what, msg);
  *out = s.d[0];
  return RNNC_OK;
}

/* Make room for a per-node use count of node n. */
void b_track(Arena *a, int **uses, int *cap, int n)
{
  agrow(a, (void **)uses, cap, n + 1, sizeof **uses);
  (*uses)[n] = 0;
}

/* ---- closing ------------------------------------------------------------- */

void builder_close(rnnc_ctx *ctx)
{
  if (!ctx->open)
    return;
  if (ctx->openkind == 'c')
    b_cell_drop(ctx->open);
  else
    b_model_drop(ctx->open);
}
