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
/* Run `rnnc <args>` (the built binary, RNNC_BINARY; args printf-style, shell
 * quoting is the caller's); stdout and stderr together into *out. Returns
 * the exit status (or -1). */
int rnnc_cmd(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A fresh directory /tmp/rnnc-<tag>-XXXXXX for a suite's tests: call
 * tmpdir_make from the suite's .init and give tmpdir_remove as its .fini,
 * which deletes the directory, its files and its subdirectories' files. */
void tmpdir_make(const char *tag);
void tmpdir_remove(void);
/* The directory, and <the directory>/name in a static buffer rotated over 8 calls. */
const char *tmp_dir(void);
const char *tmp_path(const char *name);
/* Write n bytes to path; the test fails when that does not work. */
void write_bytes(const char *path, const void *p, size_t n);
/* "T=5 B=3 H=1" into env (added to what it holds; names interned in m). */
void env_parse(Module *m, const char *dims, Env *env);
/* Parse and verify a file into a new module; NULL on error (diags printed). */
Module *load_module(const char *path);
#endif
