/* `onearm serve --catalog FILE`: a CSV of actions upserted into the
 * engine's catalog at start, so a server comes up with a million videos
 * without a million HTTP calls. One pass, one line buffer, no quoting
 * (ids and values must not contain commas): the format `onearm catalog
 * load` and examples/reels/gen_catalog.lua write. */
#include "server/catalog_csv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "runtime/retrieval.h"

#define MAX_COLS 4096

static int split(char *line, char **cols) {
  int n = 0;
  char *p = line;
  for (;;) {
    if (n == MAX_COLS) return -1;
    cols[n++] = p;
    char *c = strchr(p, ',');
    if (!c) break;
    *c = 0;
    p = c + 1;
  }
  char *end = cols[n - 1] + strlen(cols[n - 1]);
  while (end > cols[n - 1] && (end[-1] == '\n' || end[-1] == '\r'))
    *--end = 0;
  return n;
}

int oa_service_load_catalog(oa_engine *e, const char *path, oa_error *err) {
  FILE *f = fopen(path, "r");
  if (!f) return oa_error_set(err, OA_EIO, "catalog '%s': %s", path, strerror(errno));
  const oa_retrieval_config *rc = oa_engine_retrieval_config(e);
  const char *vec_name = rc ? rc->field : "embedding";
  char *line = NULL, **head = malloc(sizeof(char *) * MAX_COLS);
  char **cols = malloc(sizeof(char *) * MAX_COLS);
  char *header = NULL;
  size_t cap = 0;
  int rc_ = 0;
  int64_t lineno = 1, rows = 0;
  oa_field *fields = malloc(sizeof(oa_field) * MAX_COLS);
  double *vec = malloc(sizeof(double) * MAX_COLS);
  int *vcol = malloc(sizeof(int) * MAX_COLS);
  if (!head || !cols || !fields || !vec || !vcol) {
    rc_ = oa_error_set(err, OA_ENOMEM, "out of memory");
    goto done;
  }
  if (getline(&line, &cap, f) < 0) {
    rc_ = oa_error_set(err, OA_EFORMAT, "catalog '%s' is empty", path);
    goto done;
  }
  header = strdup(line);
  int nh = header ? split(header, head) : -1;
  if (nh < 1 || strcmp(head[0], "id")) {
    rc_ = oa_error_set(err, OA_EFORMAT, "catalog '%s': the header must start with 'id'",
                       path);
    goto done;
  }
  /* Vector columns v0..vN, by index. */
  int dim = 0;
  for (int c = 1; c < nh; c++) {
    char *end;
    if (head[c][0] != 'v') continue;
    long k = strtol(head[c] + 1, &end, 10);
    if (*end || end == head[c] + 1 || k < 0 || k >= MAX_COLS) continue;
    vcol[k] = c;
    if (k + 1 > dim) dim = (int)k + 1;
  }
  double t0 = (double)clock() / CLOCKS_PER_SEC;
  while (getline(&line, &cap, f) >= 0) {
    lineno++;
    if (line[0] == '\n' || line[0] == 0) continue;
    int n = split(line, cols);
    if (n != nh) {
      rc_ = oa_error_set(err, OA_EFORMAT,
                         "catalog '%s' line %lld: %d columns, the header has %d", path,
                         (long long)lineno, n, nh);
      goto done;
    }
    int32_t nf = 0;
    for (int k = 0; k < dim; k++) {
      char *end;
      vec[k] = strtod(cols[vcol[k]], &end);
      if (end == cols[vcol[k]] || *end) {
        rc_ = oa_error_set(err, OA_EFORMAT, "catalog '%s' line %lld: v%d is not a number",
                           path, (long long)lineno, k);
        goto done;
      }
    }
    if (dim)
      fields[nf++] = (oa_field){vec_name, {.type = OA_VAL_VEC, .count = dim, .vec = vec}};
    for (int c = 1; c < nh; c++) {
      if (!cols[c][0]) continue;
      char *end;
      if (head[c][0] == 'v' && strtol(head[c] + 1, &end, 10) >= 0 && !*end &&
          end != head[c] + 1)
        continue;
      double num = strtod(cols[c], &end);
      if (end != cols[c] && !*end)
        fields[nf++] = (oa_field){head[c], {.type = OA_VAL_NUM, .num = num}};
      else
        fields[nf++] = (oa_field){
            head[c], {.type = OA_VAL_STR, .str = cols[c], .len = strlen(cols[c])}};
    }
    int64_t slot = oa_catalog_upsert(oa_engine_catalog(e), cols[0], strlen(cols[0]),
                                     fields, nf, err);
    if (slot < 0) {
      rc_ = oa_error_prefix(err, "catalog '%s' line %lld", path, (long long)lineno);
      goto done;
    }
    rows++;
  }
  fprintf(stderr, "onearm: catalog: %lld actions from %s (%.1f s)\n", (long long)rows,
          path, (double)clock() / CLOCKS_PER_SEC - t0);
done:
  fclose(f);
  free(line), free(header), free(head), free(cols), free(fields), free(vec), free(vcol);
  return rc_;
}
