/* A progress bar for long loads on a terminal (stderr): `onearm catalog
 * load`, `onearm serve --catalog`. Draws only when stderr is a terminal,
 * so logs and pipes stay clean, and at most ten times a second. */
#ifndef ONEARM_CORE_PROGRESS_H
#define ONEARM_CORE_PROGRESS_H

#include <stdint.h>

typedef struct oa_progress {
  int tty;
  double start, last;
} oa_progress;

void oa_progress_begin(oa_progress *p);
/* fraction in [0, 1] of the work, rows done so far. */
void oa_progress_draw(oa_progress *p, double fraction, int64_t rows);
/* Clears the bar; returns the seconds since begin. */
double oa_progress_end(oa_progress *p);

#endif
