/* testutil.c — helpers shared by the criterion tests. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

const char *srcpath(const char *rel)
{
  static char buf[8][4096];
  static int k;
  char *p = buf[k++ & 7];
  snprintf(p, sizeof buf[0], "%s/%s", RNNC_SOURCE_DIR, rel);
  return p;
}

char *read_file(const char *path)
{
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  char *buf = NULL;
  size_t len = 0, cap = 0, n;
  char chunk[65536];
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
    if (len + n + 1 > cap) {
      cap = 2 * (len + n + 1);
      buf = realloc(buf, cap);
    }
    memcpy(buf + len, chunk, n);
    len += n;
  }
  fclose(f);
  if (!buf)
    buf = calloc(1, 1);
  buf[len] = 0;
  return buf;
}

int run_cmd(const char *cmd, char **out)
{
  char *full = malloc(strlen(cmd) + 16);
  sprintf(full, "(%s) 2>&1", cmd);
  FILE *p = popen(full, "r");
  free(full);
  if (!p)
    return -1;
  char *buf = NULL;
  size_t len = 0, cap = 0, n;
  char chunk[65536];
  while ((n = fread(chunk, 1, sizeof chunk, p)) > 0) {
    if (len + n + 1 > cap) {
      cap = 2 * (len + n + 1);
      buf = realloc(buf, cap);
    }
    memcpy(buf + len, chunk, n);
    len += n;
  }
  if (!buf)
    buf = calloc(1, 1);
  buf[len] = 0;
  int st = pclose(p);
  if (out)
    *out = buf;
  else
    free(buf);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int rnnc_cmd(char **out, const char *fmt, ...)
{
  char args[8192], cmd[8400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(args, sizeof args, fmt, ap);
  va_end(ap);
  snprintf(cmd, sizeof cmd, "'%s' %s", RNNC_BINARY, args);
  return run_cmd(cmd, out);
}

Module *load_module(const char *path)
{
  char *text = read_file(path);
  if (!text)
    return NULL;
  Module *m = module_new();
  const Source *src = source_new(m, path, text);
  free(text);
  if (parse(m, src) != RNNC_OK || verify(m) != RNNC_OK) {
    diags_print(stderr, &m->diags);
    module_free(m);
    return NULL;
  }
  return m;
}

static char tmpdir[256];

void tmpdir_make(const char *tag)
{
  snprintf(tmpdir, sizeof tmpdir, "/tmp/rnnc-%s-XXXXXX", tag);
  cr_assert_not_null(mkdtemp(tmpdir), "cannot make %s", tmpdir);
}

/* Remove path's files (and, at depth 0, its subdirectories' files), then path. */
static void rmtree(const char *path, int depth)
{
  DIR *d = opendir(path);
  if (!d)
    return;
  struct dirent *e;
  char p[1024];
  while ((e = readdir(d))) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
      continue;
    snprintf(p, sizeof p, "%s/%s", path, e->d_name);
    if (unlink(p) != 0 && depth == 0)
      rmtree(p, 1);
  }
  closedir(d);
  rmdir(path);
}

void tmpdir_remove(void)
{
  if (tmpdir[0])
    rmtree(tmpdir, 0);
}

const char *tmp_dir(void) { return tmpdir; }

const char *tmp_path(const char *name)
{
  static char buf[8][512];
  static int k;
  char *p = buf[k++ & 7];
  snprintf(p, sizeof buf[0], "%s/%s", tmpdir, name);
  return p;
}

void write_bytes(const char *path, const void *p, size_t n)
{
  FILE *f = fopen(path, "wb");
  cr_assert_not_null(f, "cannot write %s", path);
  cr_assert_eq(fwrite(p, 1, n, f), n);
  cr_assert_eq(fclose(f), 0);
}

void env_parse(Module *m, const char *dims, Env *env)
{
  const char *p = dims;
  while (p && *p) {
    while (*p == ' ')
      p++;
    const char *eq = strchr(p, '=');
    cr_assert(eq, "bad dims '%s'", dims);
    char *end;
    long v = strtol(eq + 1, &end, 10);
    env_set(m->arena, env, intern(m->names, p, (size_t)(eq - p)), v);
    p = end;
  }
}
