/* mem.c — big buffers on transparent huge pages.
 * require: nothing. produce: zeroed buffers for the compiled model and its
 * threads' scratch, and the advice for a caller's workspace.
 *
 * The kernels stream matrices of tens of MiB (C5's packed weights are 16
 * MiB, its gate activations 13 MiB): with 4 KiB pages every 4 KiB of them
 * costs a TLB miss and a page walk, and the L2 TLB (2048 entries on Zen 3)
 * covers 8 MiB. On 2 MiB pages a C5 training step takes 0.95x the time,
 * C2's 0.98x (bench/README.md). Linux gives them where asked (THP in
 * "madvise" mode, Debian's default): a buffer of 2 MiB or more is mapped on
 * its own, 2 MiB-aligned, and advised MADV_HUGEPAGE. The mapping comes as
 * zero pages that a kernel's first write faults in, so nothing is spent
 * zeroing what a run overwrites. Elsewhere, or when the advice is refused,
 * the buffers are what calloc gives, and everything runs the same.
 *
 * Part of librnnc_rt.a (an AOT object's runtime): plain C, rnnc_-prefixed. */
#define _DEFAULT_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

#if defined(__linux__)
#include <sys/mman.h>
#define HUGE_PAGES 1
#endif

enum { HUGE = 2 << 20 };

void rnnc_mem_advise(void *p, size_t bytes)
{
#ifdef HUGE_PAGES
  uintptr_t a = ((uintptr_t)p + HUGE - 1) / HUGE * HUGE, b = ((uintptr_t)p + bytes) / HUGE * HUGE;
  if (b > a)
    (void)madvise((void *)a, b - a, MADV_HUGEPAGE);
#else
  (void)p, (void)bytes;
#endif
}

void *rnnc_mem_alloc(size_t bytes)
{
  if (bytes == 0)
    bytes = 64;
#ifdef HUGE_PAGES
  if (bytes >= HUGE) {
    size_t len = (bytes + HUGE - 1) / HUGE * HUGE;
    /* room to align: len + HUGE, the ends beyond the aligned part unmapped */
    char *raw = mmap(NULL, len + HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED)
      return NULL;
    char *p = (char *)(((uintptr_t)raw + HUGE - 1) / HUGE * HUGE);
    if (p > raw)
      munmap(raw, (size_t)(p - raw));
    if (raw + len + HUGE > p + len)
      munmap(p + len, (size_t)(raw + len + HUGE - (p + len)));
    (void)madvise(p, len, MADV_HUGEPAGE);
    return p;
  }
#endif
  void *p = aligned_alloc(64, (bytes + 63) / 64 * 64);
  if (p)
    memset(p, 0, (bytes + 63) / 64 * 64);
  return p;
}

void rnnc_mem_free(void *p, size_t bytes)
{
  if (!p)
    return;
#ifdef HUGE_PAGES
  if (bytes >= HUGE) {
    munmap(p, (bytes + HUGE - 1) / HUGE * HUGE);
    return;
  }
#endif
  (void)bytes;
  free(p);
}
