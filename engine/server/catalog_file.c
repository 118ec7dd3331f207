/* Catalog files (CSV or a memory-mapped vector file) read row by row and
 * upserted into an engine: see catalog_file.h. */
#include "server/catalog_file.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "catalog/vectors.h"
#include "core/error.h"
#include "runtime/retrieval.h"

#define MAX_COLS     4096
#define VEC_FILE_TAG "OAVECS" /* the first bytes of a vector file (vectors.c) */

struct oa_catalog_reader {
  char path[1024];
  char vec_name[64];
  oa_field *fields;
  double *vec;
  int64_t rows, applied; /* rows read, rows upserted */
  /* CSV */
  FILE *f;
  char *line, *header;
  size_t cap;
  char **head, **cols;
  int *vcol;
  int nh, dim;
  int64_t lineno;
  double bytes;
  /* vector file */
  oa_vecstore *vs;
  int64_t row;
  float *fv;
};

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

/* Column c of the header is a vector column "v<k>": k, else -1. */
static long vector_column(const char *name) {
  char *end;
  if (name[0] != 'v') return -1;
  long k = strtol(name + 1, &end, 10);
  return *end || end == name + 1 || k < 0 || k >= MAX_COLS ? -1 : k;
}

static int open_csv(oa_catalog_reader *r, oa_error *err) {
  r->head = malloc(sizeof(char *) * MAX_COLS);
  r->cols = malloc(sizeof(char *) * MAX_COLS);
  r->vcol = malloc(sizeof(int) * MAX_COLS);
  if (!r->head || !r->cols || !r->vcol)
    return oa_error_set(err, OA_ENOMEM, "out of memory");
  if (getline(&r->line, &r->cap, r->f) < 0)
    return oa_error_set(err, OA_EFORMAT, "catalog '%s' is empty", r->path);
  r->header = strdup(r->line);
  r->nh = r->header ? split(r->header, r->head) : -1;
  if (r->nh < 1 || strcmp(r->head[0], "id"))
    return oa_error_set(err, OA_EFORMAT, "catalog '%s': the header must start with 'id'",
                        r->path);
  for (int k = 0; k < MAX_COLS; k++)
    r->vcol[k] = -1;
  for (int c = 1; c < r->nh; c++) {
    long k = vector_column(r->head[c]);
    if (k < 0) continue;
    r->vcol[k] = c;
    if (k + 1 > r->dim) r->dim = (int)k + 1;
  }
  for (int k = 0; k < r->dim; k++)
    if (r->vcol[k] < 0)
      return oa_error_set(err, OA_EFORMAT,
                          "catalog '%s': column v%d is missing (v0..v%d)", r->path, k,
                          r->dim - 1);
  r->lineno = 1;
  return 0;
}

oa_catalog_reader *oa_catalog_reader_open(const char *path, const char *vec_name,
                                          oa_error *err) {
  oa_catalog_reader *r = calloc(1, sizeof *r);
  if (!r) {
    oa_error_set(err, OA_ENOMEM, "out of memory");
    return NULL;
  }
  snprintf(r->path, sizeof r->path, "%s", path);
  snprintf(r->vec_name, sizeof r->vec_name, "%s", vec_name);
  r->fields = malloc(sizeof(oa_field) * MAX_COLS);
  r->vec = malloc(sizeof(double) * MAX_COLS);
  int rc = r->fields && r->vec ? 0 : oa_error_set(err, OA_ENOMEM, "out of memory");
  if (!rc && !(r->f = fopen(path, "r")))
    rc = oa_error_set(err, OA_EIO, "catalog '%s': %s", path, strerror(errno));
  char tag[sizeof VEC_FILE_TAG - 1] = {0};
  if (!rc) {
    struct stat st;
    r->bytes = fstat(fileno(r->f), &st) ? 0 : (double)st.st_size;
    size_t got = fread(tag, 1, sizeof tag, r->f);
    rewind(r->f);
    if (got == sizeof tag && !memcmp(tag, VEC_FILE_TAG, sizeof tag)) {
      fclose(r->f);
      r->f = NULL;
      if (!(r->vs = oa_vecstore_load_file(path, err))) {
        rc = oa_error_prefix(err, "catalog '%s'", path);
      } else {
        r->dim = oa_vecstore_config_of(r->vs)->dim;
        if (r->dim > MAX_COLS)
          rc = oa_error_set(err, OA_EFORMAT,
                            "catalog '%s': vectors of %d numbers (at most %d)", path,
                            r->dim, MAX_COLS);
        else if (!(r->fv = malloc(sizeof(float) * (size_t)r->dim)))
          rc = oa_error_set(err, OA_ENOMEM, "out of memory");
      }
    } else {
      rc = open_csv(r, err);
    }
  }
  if (rc) {
    oa_catalog_reader_close(r);
    return NULL;
  }
  return r;
}

static int next_csv(oa_catalog_reader *r, const char **id, size_t *idlen,
                    const oa_field **fields, int32_t *n, oa_error *err) {
  for (;;) {
    if (getline(&r->line, &r->cap, r->f) < 0) return 0;
    r->lineno++;
    if (r->line[0] != '\n' && r->line[0] != '\r' && r->line[0] != 0) break;
  }
  char **cols = r->cols;
  int nc = split(r->line, cols);
  if (nc != r->nh)
    return oa_error_set(err, OA_EFORMAT,
                        "catalog '%s' line %lld: %d columns, the header has %d", r->path,
                        (long long)r->lineno, nc, r->nh);
  if (!cols[0][0])
    return oa_error_set(err, OA_EFORMAT, "catalog '%s' line %lld: the id is empty",
                        r->path, (long long)r->lineno);
  int32_t nf = 0;
  for (int k = 0; k < r->dim; k++) {
    char *end;
    const char *cell = cols[r->vcol[k]];
    r->vec[k] = strtod(cell, &end);
    if (end == cell || *end)
      return oa_error_set(err, OA_EFORMAT, "catalog '%s' line %lld: v%d is not a number",
                          r->path, (long long)r->lineno, k);
  }
  if (r->dim)
    r->fields[nf++] =
        (oa_field){r->vec_name, {.type = OA_VAL_VEC, .count = r->dim, .vec = r->vec}};
  for (int c = 1; c < r->nh; c++) {
    if (!cols[c][0] || vector_column(r->head[c]) >= 0) continue;
    char *end;
    double num = strtod(cols[c], &end);
    if (end != cols[c] && !*end)
      r->fields[nf++] = (oa_field){r->head[c], {.type = OA_VAL_NUM, .num = num}};
    else
      r->fields[nf++] = (oa_field){
          r->head[c], {.type = OA_VAL_STR, .str = cols[c], .len = strlen(cols[c])}};
  }
  *id = cols[0];
  *idlen = strlen(cols[0]);
  *fields = r->fields;
  *n = nf;
  return 1;
}

static int next_vec(oa_catalog_reader *r, const char **id, size_t *idlen,
                    const oa_field **fields, int32_t *n) {
  const oa_vecstore *vs = r->vs;
  const oa_vecstore_config *cfg = oa_vecstore_config_of(vs);
  int64_t rows = oa_vecstore_rows(vs);
  while (r->row < rows && !oa_vecstore_is_live(vs, r->row))
    r->row++;
  if (r->row >= rows) return 0;
  int64_t row = r->row++;
  oa_vecstore_get(vs, row, r->fv);
  for (int32_t j = 0; j < r->dim; j++)
    r->vec[j] = r->fv[j];
  int32_t nf = 0;
  r->fields[nf++] =
      (oa_field){r->vec_name, {.type = OA_VAL_VEC, .count = r->dim, .vec = r->vec}};
  for (int32_t m = 0; m < cfg->n_meta; m++) {
    const char *name = cfg->meta[m].name;
    if (cfg->meta[m].kind == OA_META_CAT) {
      const char *s = oa_vecstore_meta_string(vs, m, oa_vecstore_meta_code(vs, row, m));
      if (s)
        r->fields[nf++] =
            (oa_field){name, {.type = OA_VAL_STR, .str = s, .len = strlen(s)}};
    } else {
      float v = oa_vecstore_meta_num(vs, row, m);
      if (!isnan(v)) r->fields[nf++] = (oa_field){name, {.type = OA_VAL_NUM, .num = v}};
    }
  }
  *id = oa_vecstore_id(vs, row);
  *idlen = strlen(*id);
  *fields = r->fields;
  *n = nf;
  return 1;
}

int oa_catalog_reader_next(oa_catalog_reader *r, const char **id, size_t *idlen,
                           const oa_field **fields, int32_t *n, oa_error *err) {
  int rc =
      r->vs ? next_vec(r, id, idlen, fields, n) : next_csv(r, id, idlen, fields, n, err);
  if (rc == 1) r->rows++;
  return rc;
}

int64_t oa_catalog_reader_rows(const oa_catalog_reader *r) {
  return r->rows;
}

int64_t oa_catalog_reader_applied(const oa_catalog_reader *r) {
  return r->applied;
}

double oa_catalog_reader_fraction(const oa_catalog_reader *r) {
  if (r->vs) {
    int64_t rows = oa_vecstore_rows(r->vs);
    return rows ? (double)r->row / (double)rows : 1;
  }
  long at = r->f ? ftell(r->f) : 0;
  return r->bytes > 0 && at > 0 ? (double)at / r->bytes : 0;
}

void oa_catalog_reader_close(oa_catalog_reader *r) {
  if (!r) return;
  if (r->f) fclose(r->f);
  oa_vecstore_free(r->vs);
  free(r->line), free(r->header), free(r->head), free(r->cols), free(r->vcol);
  free(r->fields), free(r->vec), free(r->fv);
  free(r);
}

/* The checks a row must pass before anything is upserted. */
static int check_row(const oa_catalog_reader *r, const oa_field *fields, int32_t n,
                     int32_t dim, oa_error *err) {
  if (!dim) return 0;
  for (int32_t i = 0; i < n; i++) {
    if (strcmp(fields[i].name, r->vec_name)) continue;
    const oa_value *v = &fields[i].value;
    if (v->count != dim)
      return oa_error_set(err, OA_EDIM,
                          "%d numbers in '%s'; the retrieval store expects %d", v->count,
                          r->vec_name, dim);
    for (int32_t j = 0; j < dim; j++)
      if (!isfinite((float)v->vec[j]))
        return oa_error_set(err, OA_ENUMERIC, "'%s'[%d] is not a finite float",
                            r->vec_name, j + 1);
  }
  return 0;
}

static int row_error(const oa_catalog_reader *r, const char *id, size_t len,
                     oa_error *err) {
  if (r->vs)
    return oa_error_prefix(err, "catalog '%s' action '%.*s'", r->path, (int)len, id);
  return oa_error_prefix(err, "catalog '%s' line %lld", r->path, (long long)r->lineno);
}

int oa_catalog_file_check(const char *path, const char *vec_name, int32_t dim,
                          int64_t *rows, oa_error *err) {
  oa_catalog_reader *r = oa_catalog_reader_open(path, vec_name, err);
  if (!r) return err ? err->code : OA_EIO;
  const char *id;
  size_t len;
  const oa_field *f;
  int32_t n;
  int rc;
  while ((rc = oa_catalog_reader_next(r, &id, &len, &f, &n, err)) == 1)
    if ((rc = check_row(r, f, n, dim, err))) {
      rc = row_error(r, id, len, err);
      break;
    }
  if (!rc && rows) *rows = oa_catalog_reader_rows(r);
  oa_catalog_reader_close(r);
  return rc;
}

const char *oa_catalog_file_vec_name(oa_engine *e, int32_t *dim) {
  const oa_retrieval_config *rc = oa_engine_retrieval_config(e);
  if (dim) *dim = rc ? rc->dim : 0;
  return rc ? rc->field : "embedding";
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int oa_catalog_reader_apply(oa_catalog_reader *r, oa_engine *e, int64_t max_rows,
                            uint64_t max_ns, oa_error *err) {
  uint64_t start = max_ns ? now_ns() : 0;
  oa_catalog *cat = oa_engine_catalog(e);
  for (int64_t i = 0; i < max_rows; i++) {
    const char *id;
    size_t len;
    const oa_field *f;
    int32_t n;
    int rc = oa_catalog_reader_next(r, &id, &len, &f, &n, err);
    if (rc <= 0) return rc;
    if (oa_catalog_upsert(cat, id, len, f, n, err) < 0) return row_error(r, id, len, err);
    r->applied++;
    if (max_ns && (i & 63) == 63 && now_ns() - start > max_ns) break;
  }
  return 1;
}

int oa_catalog_file_load(oa_engine *e, const char *path,
                         void (*progress)(void *ud, double fraction, int64_t rows),
                         void *ud, oa_error *err) {
  int32_t dim;
  const char *vec_name = oa_catalog_file_vec_name(e, &dim);
  int64_t total = 0;
  int rc = oa_catalog_file_check(path, vec_name, dim, &total, err);
  if (rc) return rc;
  oa_catalog_reader *r = oa_catalog_reader_open(path, vec_name, err);
  if (!r) return err ? err->code : OA_EIO;
  while ((rc = oa_catalog_reader_apply(r, e, 16384, 0, err)) == 1)
    if (progress)
      progress(ud, total ? (double)oa_catalog_reader_rows(r) / (double)total : 1,
               oa_catalog_reader_rows(r));
  if (!rc && progress) progress(ud, 1, oa_catalog_reader_rows(r));
  oa_catalog_reader_close(r);
  return rc;
}
