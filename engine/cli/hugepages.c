/* Transparent huge pages for the server's heap.
 *
 * A server with a large catalog touches, per request, a few hundred
 * catalog records, compiled feature parts and hash slots scattered over
 * a heap of gigabytes; with 4 KiB pages nearly every one of those touches
 * misses the TLB as well as the cache. glibc (2.35 and later) backs
 * malloc's heap with transparent huge pages when the tunable
 * glibc.malloc.hugetlb=1 is set, but tunables are read only when the
 * process starts, so `onearm serve` re-executes itself once with it set.
 * Measured on the 1M-video reels catalog (tests/bench/serve_retrieve.sh):
 * approximate two-stage ranks went from 2.1-2.3 ms to 1.7 ms at the median.
 *
 * Skipped when the tunable is already set (the re-executed process, or a
 * user's own choice), when ONEARM_HUGEPAGES=0, or when the kernel has THP
 * off; if the re-exec fails, the server simply runs without it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

#define TUNABLE "glibc.malloc.hugetlb=1"

static int thp_available(void) {
  FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
  if (!f) return 0;
  char line[128] = {0};
  int ok = fgets(line, sizeof line, f) && !strstr(line, "[never]");
  fclose(f);
  return ok;
}

void cli_use_huge_pages(char **argv) {
  const char *off = getenv("ONEARM_HUGEPAGES");
  if (off && !strcmp(off, "0")) return;
  const char *cur = getenv("GLIBC_TUNABLES");
  if (cur && strstr(cur, "glibc.malloc.hugetlb")) return;
  if (!thp_available()) return;
  char value[1024];
  int n = cur && cur[0] ? snprintf(value, sizeof value, "%s:%s", cur, TUNABLE)
                        : snprintf(value, sizeof value, "%s", TUNABLE);
  if (n < 0 || (size_t)n >= sizeof value) return;
  if (setenv("GLIBC_TUNABLES", value, 1)) return;
  fflush(NULL);
  execv("/proc/self/exe", argv);
  /* Still here: run as we are. */
}
