/* testutil.h — helpers shared by the criterion tests. */
#ifndef RNNC_TESTUTIL_H
#define RNNC_TESTUTIL_H
#include "ir.h"

/* RNNC_SOURCE_DIR "/" rel, in a static buffer rotated over 8 calls. */
const char *srcpath(const char *rel);
/* The whole file, malloc'ed and NUL-terminated; NULL when unreadable. */
char *read_file(const char *path);
/* Run a shell command; stdout and stderr together into *out (malloc'ed).
 * Returns the exit status (or -1). */
int run_cmd(const char *cmd, char **out);
/* Parse and verify a file into a new module; NULL on error (diags printed). */
Module *load_module(const char *path);
#endif
