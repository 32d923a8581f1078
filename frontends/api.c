/* api.c — the public API's context: open and close, the last message, loading
 * IR text and printing it (include/rnnc.h). The builders are in builder.c,
 * builder_cell.c and builder_model.c.
 *
 * Every call leaves the module verified: a load that fails is undone, so the
 * context stays usable after any error. Diagnostics a call produces are moved
 * from m->diags into the context's message and dropped from the module.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

static void setmsg(rnnc_ctx *ctx, char *msg)
{
  free(ctx->msg);
  ctx->msg = msg;
}

int api_fail(rnnc_ctx *ctx, int code, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  char *msg = malloc((size_t)n + 1);
  if (!msg)
    die("out of memory");
  va_start(ap, fmt);
  vsnprintf(msg, (size_t)n + 1, fmt, ap);
  va_end(ap);
  setmsg(ctx, msg);
  return code;
}

int api_diags(rnnc_ctx *ctx, int mark, int code)
{
  Diags *ds = &ctx->m->diags;
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (!f)
    die("out of memory");
  for (int i = mark; i < ds->n; i++)
    diag_print(f, &ds->d[i]);
  if (fclose(f) != 0)
    die("out of memory");
  setmsg(ctx, buf);
  ds->n = mark;
  ds->nerror = 0;
  for (int i = 0; i < ds->n; i++)
    ds->nerror += ds->d[i].severity == DIAG_ERROR;
  return code;
}

rnnc_ctx *rnnc_open(void)
{
  rnnc_ctx *ctx = calloc(1, sizeof *ctx);
  if (!ctx)
    return NULL;
  ctx->msg = calloc(1, 1);
  ctx->bcap = 256;
  ctx->btext = calloc(1, ctx->bcap);
  if (!ctx->msg || !ctx->btext) {
    free(ctx->msg);
    free(ctx->btext);
    free(ctx);
    return NULL;
  }
  ctx->m = module_new();
  ctx->bsrc = aalloc(ctx->m->arena, sizeof *ctx->bsrc);
  ctx->bsrc->name = "<builder>";
  ctx->bsrc->text = ctx->btext;
  return ctx;
}

void rnnc_close(rnnc_ctx *ctx)
{
  if (!ctx)
    return;
  api_nets_close(ctx);
  builder_close(ctx);
  module_free(ctx->m);
  free(ctx->btext);
  free(ctx->msg);
  free(ctx);
}

const char *rnnc_errmsg(rnnc_ctx *ctx)
{
  return ctx ? ctx->msg : "out of memory (no context)";
}

static int nobuilder(rnnc_ctx *ctx, const char *fn)
{
  if (!ctx->open)
    return 1;
  api_fail(ctx, RNNC_EMISUSE, "%s: a %s builder is open on this context; end it first", fn,
           ctx->openkind == 'c' ? "cell" : "model");
  return 0;
}

int rnnc_load(rnnc_ctx *ctx, const char *name, const char *text)
{
  if (!ctx)
    return RNNC_EMISUSE;
  if (!name || !text)
    return api_fail(ctx, RNNC_EMISUSE, "rnnc_load: %s is NULL", name ? "text" : "name");
  if (!nobuilder(ctx, "rnnc_load"))
    return RNNC_EMISUSE;
  Module *m = ctx->m;
  int mark = m->diags.n, ncell = m->ncell, nmodel = m->nmodel;
  int rc = parse(m, source_new(m, name, text));
  if (rc == RNNC_OK)
    rc = verify(m);
  if (rc != RNNC_OK) {
    m->ncell = ncell; /* all or nothing: drop what this text added */
    m->nmodel = nmodel;
  }
  return api_diags(ctx, mark, rc);
}

int rnnc_load_file(rnnc_ctx *ctx, const char *path)
{
  if (!ctx)
    return RNNC_EMISUSE;
  if (!path)
    return api_fail(ctx, RNNC_EMISUSE, "rnnc_load_file: path is NULL");
  FILE *f = fopen(path, "rb");
  if (!f)
    return api_fail(ctx, RNNC_EIO, "cannot open '%s': %s", path, strerror(errno));
  char *buf = NULL;
  size_t len = 0;
  FILE *mem = open_memstream(&buf, &len);
  if (!mem)
    die("out of memory");
  char chunk[65536];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
    fwrite(chunk, 1, n, mem);
  int err = ferror(f) ? errno : 0;
  fclose(f);
  if (fclose(mem) != 0)
    die("out of memory");
  if (err) {
    free(buf);
    return api_fail(ctx, RNNC_EIO, "cannot read '%s': %s", path, strerror(err));
  }
  if (memchr(buf, 0, len)) {
    free(buf);
    return api_fail(ctx, RNNC_ESYNTAX, "%s: the file contains a NUL byte; it is not IR text", path);
  }
  int rc = rnnc_load(ctx, path, buf);
  free(buf);
  return rc;
}

/* The module's text as the caller made it: without the backward cells that
 * autodiff derived for rnnc_compile (a text with them would not load back
 * into a context that compiles with gradients). */
static void print_user(FILE *f, const Module *m)
{
  Module v = *m;
  v.cell = malloc(((size_t)m->ncell + 1) * sizeof *v.cell);
  if (!v.cell)
    die("out of memory");
  v.ncell = 0;
  for (int i = 0; i < m->ncell; i++)
    if (!m->cell[i]->primal)
      v.cell[v.ncell++] = m->cell[i];
  print_module(f, &v, 0);
  free(v.cell);
}

int rnnc_print(rnnc_ctx *ctx, FILE *f)
{
  if (!ctx)
    return RNNC_EMISUSE;
  if (!f)
    return api_fail(ctx, RNNC_EMISUSE, "rnnc_print: f is NULL");
  if (!nobuilder(ctx, "rnnc_print"))
    return RNNC_EMISUSE;
  print_user(f, ctx->m);
  if (ferror(f))
    return api_fail(ctx, RNNC_EIO, "rnnc_print: writing failed: %s", strerror(errno));
  return api_fail(ctx, RNNC_OK, "");
}

int rnnc_print_string(rnnc_ctx *ctx, char **out)
{
  if (!ctx)
    return RNNC_EMISUSE;
  if (!out)
    return api_fail(ctx, RNNC_EMISUSE, "rnnc_print_string: out is NULL");
  *out = NULL;
  if (!nobuilder(ctx, "rnnc_print_string"))
    return RNNC_EMISUSE;
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (!f)
    return api_fail(ctx, RNNC_ENOMEM, "rnnc_print_string: out of memory");
  print_user(f, ctx->m);
  if (fclose(f) != 0) {
    free(buf);
    return api_fail(ctx, RNNC_ENOMEM, "rnnc_print_string: out of memory");
  }
  *out = buf;
  return api_fail(ctx, RNNC_OK, "");
}

void rnnc_free(void *p) { free(p); }
