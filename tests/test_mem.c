/* test_mem.c — runtime/mem.c: big buffers come zeroed, 2 MiB-aligned and
 * advised onto transparent huge pages (the mapping's VmFlags in
 * /proc/self/smaps has "hg"), small ones zeroed and 64-byte aligned; the
 * advice for a caller's buffer covers its whole 2 MiB pages. The advice is
 * checked where the kernel has THP (its sysfs switch exists). */
#define _DEFAULT_SOURCE
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "testutil.h"

enum { MiB = 1 << 20 };

static int have_thp(void) { return access("/sys/kernel/mm/transparent_hugepage/enabled", R_OK) == 0; }

/* Whether the mapping holding p is advised MADV_HUGEPAGE ("hg" in VmFlags). */
static int advised(const void *p)
{
  FILE *f = fopen("/proc/self/smaps", "r");
  cr_assert(f, "cannot read /proc/self/smaps");
  char line[1024];
  int in = 0, hg = -1;
  while (fgets(line, sizeof line, f)) {
    unsigned long a, b;
    if (sscanf(line, "%lx-%lx ", &a, &b) == 2 && strchr(line, '-') < strchr(line, ' ')) {
      in = (uintptr_t)p >= a && (uintptr_t)p < b;
    } else if (in && strncmp(line, "VmFlags:", 8) == 0) {
      hg = strstr(line, " hg") != NULL;
      break;
    }
  }
  fclose(f);
  cr_assert(hg >= 0, "no mapping holds %p", p);
  return hg;
}

static int zero(const unsigned char *p, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (p[i])
      return 0;
  return 1;
}

Test(mem, big_buffers_are_zeroed_aligned_and_advised)
{
  size_t n = 3 * MiB + 100;
  unsigned char *p = rnnc_mem_alloc(n);
  cr_assert(p);
  cr_assert_eq((uintptr_t)p % (2 * MiB), 0, "%p is not 2 MiB-aligned", (void *)p);
  cr_assert(zero(p, n));
  memset(p, 7, n); /* all of it writable */
  if (have_thp())
    cr_assert(advised(p + n - 1), "the buffer is not advised MADV_HUGEPAGE");
  rnnc_mem_free(p, n);
}

Test(mem, small_buffers_are_zeroed_and_64_byte_aligned)
{
  const size_t sizes[] = {0, 1, 100, 4096, 2 * MiB - 1};
  for (int k = 0; k < 5; k++) {
    unsigned char *p = rnnc_mem_alloc(sizes[k]);
    cr_assert(p);
    cr_assert_eq((uintptr_t)p % 64, 0);
    cr_assert(zero(p, sizes[k]));
    memset(p, 1, sizes[k]);
    rnnc_mem_free(p, sizes[k]);
  }
}

/* a caller's 6.5 MiB, 1 MiB past a 2 MiB boundary: the two whole pages
 * inside it are advised, the partial ones at either end are not */
Test(mem, advice_covers_a_buffers_whole_huge_pages)
{
  if (!have_thp())
    cr_skip_test("no transparent huge pages in this kernel");
  size_t len = 12 * MiB;
  char *raw = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  cr_assert(raw != MAP_FAILED);
  char *base = (char *)(((uintptr_t)raw + 2 * MiB - 1) / (2 * MiB) * (2 * MiB));
  char *p = base + MiB;
  rnnc_mem_advise(p, 6 * MiB + MiB / 2);
  cr_assert(advised(base + 2 * MiB), "the first whole page is not advised");
  cr_assert(advised(base + 4 * MiB + 5), "the last whole page is not advised");
  cr_assert(!advised(p), "the partial page at the start is advised");
  cr_assert(!advised(base + 6 * MiB), "the partial page at the end is advised");
  munmap(raw, len);
}
