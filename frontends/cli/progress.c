/* progress.c — what `rnnc train` shows while it runs: on a terminal, one
 * status line redrawn in place (a bar when the length of the run is known,
 * step, epoch, loss, tokens/s, ETA), with other lines printed above it; when
 * stdout is not a terminal, plain log lines every N steps. Also the metrics
 * file: one JSON object per line. */
#include <stdarg.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

double now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void progress_init(Progress *p, FILE *f, int quiet, int64_t logevery)
{
  memset(p, 0, sizeof *p);
  p->f = f;
  p->quiet = quiet;
  p->tty = !quiet && isatty(fileno(f));
  p->logevery = logevery > 0 ? logevery : 100;
}

/* "1:05" or "1:02:05". */
static void hms(char *buf, size_t len, double s)
{
  long t = s < 0 ? 0 : (long)(s + 0.5);
  if (t >= 3600)
    snprintf(buf, len, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
  else
    snprintf(buf, len, "%ld:%02ld", t / 60, t % 60);
}

/* Erase the status line, if one is shown. */
static void clear(Progress *p)
{
  if (p->shown) {
    fputs("\r\033[K", p->f);
    p->shown = 0;
  }
}

void progress_step(Progress *p, const ProgressInfo *in)
{
  if (p->quiet)
    return;
  double t = now_s();
  char eta[32] = "", el[32];
  hms(el, sizeof el, in->elapsed);
  if (in->frac > 0 && in->frac <= 1) {
    char r[24];
    hms(r, sizeof r, in->elapsed * (1 - in->frac) / in->frac);
    snprintf(eta, sizeof eta, "  ETA %s", r);
  }
  if (p->tty) {
    if (t - p->drawn < 0.1 && in->frac < 1)
      return;
    p->drawn = t;
    char bar[32] = "";
    if (in->frac > 0) {
      int w = 20, k = (int)(in->frac * w + 0.5);
      if (k > w)
        k = w;
      bar[0] = '[';
      for (int i = 0; i < w; i++)
        bar[1 + i] = i < k ? '#' : '.';
      memcpy(bar + 1 + w, "] ", 3);
    }
    fprintf(p->f, "\r\033[K%sstep %lld  epoch %lld  loss %.4f  %.0f %s  %s%s", bar, (long long)in->step,
            (long long)in->epoch, in->loss, in->tokps, in->unit, el, eta);
    fflush(p->f);
    p->shown = 1;
  } else if (in->step % p->logevery == 0) {
    fprintf(p->f, "step %lld  epoch %lld  loss %.4f  lr %.3g  %.0f %s  %s%s\n", (long long)in->step,
            (long long)in->epoch, in->loss, in->lr, in->tokps, in->unit, el, eta);
    fflush(p->f);
  }
}

void progress_line(Progress *p, const char *fmt, ...)
{
  if (p->quiet)
    return;
  clear(p);
  va_list ap;
  va_start(ap, fmt);
  vfprintf(p->f, fmt, ap);
  va_end(ap);
  fputc('\n', p->f);
  fflush(p->f);
}

void progress_done(Progress *p)
{
  if (p->shown) {
    fputc('\n', p->f);
    p->shown = 0;
  }
  fflush(p->f);
}
