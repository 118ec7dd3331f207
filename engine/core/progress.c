/* The terminal progress bar: see progress.h. */
#include "core/progress.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

#define WIDTH 40

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void oa_progress_begin(oa_progress *p) {
  p->tty = isatty(STDERR_FILENO);
  p->start = now_seconds();
  p->last = 0;
}

void oa_progress_draw(oa_progress *p, double fraction, int64_t rows) {
  if (!p->tty) return;
  double t = now_seconds();
  if (t - p->last < 0.1 && fraction < 1) return;
  p->last = t;
  if (fraction < 0) fraction = 0;
  if (fraction > 1) fraction = 1;
  char bar[WIDTH + 1];
  int fill = (int)(fraction * WIDTH);
  for (int i = 0; i < WIDTH; i++)
    bar[i] = i < fill ? '#' : '.';
  bar[WIDTH] = 0;
  double el = t - p->start;
  fprintf(stderr, "\r[%s] %5.1f%%  %lld rows  %.0f rows/s ", bar, fraction * 100,
          (long long)rows, el > 0 ? (double)rows / el : 0.0);
  fflush(stderr);
}

double oa_progress_end(oa_progress *p) {
  if (p->tty) fprintf(stderr, "\r%*s\r", WIDTH + 50, "");
  return now_seconds() - p->start;
}
