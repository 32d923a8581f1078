/* test_errors.c — golden diagnostics. Every tests/errors/NAME.rnn (named after
 * the rule it breaks) is parsed and verified in process; the diagnostics,
 * rendered as `file:line:col: error: message`, the line and a caret, must
 * equal tests/errors/NAME.err byte for byte. A golden with an error expects
 * parse or verify to fail; one with only warnings expects both to succeed.
 *
 * RNNC_UPDATE_GOLDEN=1 rewrites every .err from the current output: review
 * each change by hand (right message, right place) before committing.
 */
#include <criterion/criterion.h>
#include <glob.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

enum { MIN_GOLDENS = 40 };

/* Parse and verify one file named rel (relative to the source root, so the
 * diagnostics name it that way); the rendered diagnostics, malloc'ed. */
static char *diagnose(const char *rel, int *status)
{
  char *text = read_file(srcpath(rel));
  cr_assert(text, "cannot read %s", rel);
  Module *m = module_new();
  const Source *src = source_new(m, rel, text);
  free(text);
  *status = parse(m, src);
  if (*status == RNNC_OK)
    *status = verify(m);
  char *s = strdup(diags_string(m->arena, &m->diags));
  module_free(m);
  return s;
}

static int write_file(const char *path, const char *s)
{
  FILE *f = fopen(path, "wb");
  if (!f)
    return 0;
  int ok = fputs(s, f) >= 0;
  return fclose(f) == 0 && ok;
}

/* The .rnn files under tests/errors, relative to the source root, sorted. */
static size_t goldens(glob_t *g)
{
  size_t skip = strlen(RNNC_SOURCE_DIR) + 1;
  int r = glob(srcpath("tests/errors/*.rnn"), 0, NULL, g);
  cr_assert(r == 0 || r == GLOB_NOMATCH);
  for (size_t i = 0; i < g->gl_pathc; i++)
    memmove(g->gl_pathv[i], g->gl_pathv[i] + skip, strlen(g->gl_pathv[i] + skip) + 1);
  return g->gl_pathc;
}

Test(errors, at_least_40_goldens)
{
  glob_t g;
  size_t n = goldens(&g);
  size_t nerr = 0;
  for (size_t i = 0; i < n; i++) {
    char errpath[4096];
    snprintf(errpath, sizeof errpath, "%.*s.err", (int)strlen(g.gl_pathv[i]) - 4, g.gl_pathv[i]);
    char *e = read_file(srcpath(errpath));
    nerr += e != NULL;
    free(e);
  }
  globfree(&g);
  cr_assert_geq(n, MIN_GOLDENS, "only %zu golden files", n);
  cr_assert_eq(nerr, n, "%zu of %zu .rnn files have no .err", n - nerr, n);
}

Test(errors, goldens)
{
  int update = getenv("RNNC_UPDATE_GOLDEN") && *getenv("RNNC_UPDATE_GOLDEN") == '1';
  glob_t g;
  size_t n = goldens(&g), nfail = 0;
  for (size_t i = 0; i < n; i++) {
    const char *rel = g.gl_pathv[i];
    char errrel[4096];
    snprintf(errrel, sizeof errrel, "%.*s.err", (int)strlen(rel) - 4, rel);
    int status;
    char *got = diagnose(rel, &status);
    if (update && !write_file(srcpath(errrel), got))
      cr_log_error("cannot write %s", errrel);
    char *want = read_file(srcpath(errrel));
    const char *why = NULL;
    if (!want)
      why = "no golden file";
    else if (!*want)
      why = "the golden is empty: a malformed file must produce a diagnostic";
    else if (strcmp(got, want) != 0)
      why = "the diagnostics differ";
    else if (strstr(want, ": error: ") ? status == RNNC_OK : status != RNNC_OK)
      why = strstr(want, ": error: ") ? "errors were reported but the status is RNNC_OK"
                                      : "only warnings, but the status is an error";
    if (why) {
      nfail++;
      fprintf(stderr, "FAIL %s: %s (status %d)\n--- expected %s\n%s--- actual\n%s--- end\n", rel,
              why, status, errrel, want ? want : "", got);
    }
    free(got);
    free(want);
  }
  globfree(&g);
  cr_assert_eq(nfail, 0, "%zu of %zu golden files fail (details on stderr)", nfail, n);
}

/* A second verify() of a module reports nothing new: verified cells and
 * models are skipped, so a golden's warning is not repeated. */
Test(errors, verify_twice_repeats_nothing)
{
  const char *rel = "tests/errors/unused_param.rnn";
  char *text = read_file(srcpath(rel));
  cr_assert(text);
  Module *m = module_new();
  const Source *src = source_new(m, rel, text);
  free(text);
  cr_assert_eq(parse(m, src), RNNC_OK);
  cr_assert_eq(verify(m), RNNC_OK);
  int n = m->diags.n;
  cr_assert_eq(n, 1);
  cr_assert_eq(m->diags.d[0].severity, DIAG_WARNING);
  cr_assert_eq(verify(m), RNNC_OK);
  cr_assert_eq(m->diags.n, n);
  module_free(m);
}
