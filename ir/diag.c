/* diag.c — diagnostics: file:line:col: severity: message, the line and a caret. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

static const char *const sevname[] = {"error", "warning", "note"};

void diag(Diags *ds, int severity, Loc loc, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  char *msg = aalloc(ds->arena, (size_t)n + 1);
  va_start(ap, fmt);
  vsnprintf(msg, (size_t)n + 1, fmt, ap);
  va_end(ap);
  Diag d = {severity, loc, msg};
  APUSH(ds->arena, ds->d, ds->n, ds->cap, d);
  if (severity == DIAG_ERROR)
    ds->nerror++;
}

/* The text of line `line` of src (without its newline), and its length. */
static const char *srcline(const Source *src, int line, int *len)
{
  const char *p = src->text;
  for (int l = 1; l < line && *p; p++)
    if (*p == '\n')
      l++;
  const char *e = strchr(p, '\n');
  *len = e ? (int)(e - p) : (int)strlen(p);
  return p;
}

void diag_print(FILE *f, const Diag *d)
{
  if (!d->loc.src) {
    fprintf(f, "%s: %s\n", sevname[d->severity], d->msg);
    return;
  }
  fprintf(f, "%s:%d:%d: %s: %s\n", d->loc.src->name, d->loc.line, d->loc.col,
          sevname[d->severity], d->msg);
  int len;
  const char *p = srcline(d->loc.src, d->loc.line, &len);
  fprintf(f, " %.*s\n ", len, p);
  /* keep tabs so the caret lines up under the same column */
  for (int i = 0; i < d->loc.col - 1 && i < len; i++)
    fputc(p[i] == '\t' ? '\t' : ' ', f);
  fputs("^\n", f);
}

void diags_print(FILE *f, const Diags *ds)
{
  for (int i = 0; i < ds->n; i++)
    diag_print(f, &ds->d[i]);
}

char *diags_string(Arena *a, const Diags *ds)
{
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (!f)
    die("out of memory");
  diags_print(f, ds);
  fclose(f);
  char *s = astrndup(a, buf, len);
  free(buf);
  return s;
}
