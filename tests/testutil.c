/* testutil.c — helpers shared by the criterion tests. */
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

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
