/* Catalog files: bulk-loading actions into an engine from a file, for
 * `onearm serve --catalog FILE`, the admin route POST /v1/actions:load and
 * oa_service_load_catalog (onearm.h).
 *
 * Two formats, told apart by the file's first bytes:
 * - CSV with a header: `id`, then field columns. Columns named v0, v1, ...
 *   (all of them, in order) form one vector field named after the
 *   engine's retrieval field (or "embedding" without retrieval); other
 *   columns are numbers when the cell parses as one, else strings; empty
 *   cells are missing. No quoting: ids and values must not contain commas
 *   (the format `onearm catalog load` and examples/reels/gen_catalog.lua
 *   use).
 * - A vector file (.oav, written by `onearm catalog load`, documented in
 *   catalog/vectors.c), memory-mapped: each live row becomes an action
 *   whose vector field holds the row and whose metadata columns become
 *   fields (categorical as strings, numeric as numbers, missing left out).
 *
 * Loading is all or nothing for the file's own errors: the whole file is
 * checked first (every row parses, every vector has the retrieval store's
 * length and finite values), and only then are the rows upserted. */
#ifndef ONEARM_SERVER_CATALOG_FILE_H
#define ONEARM_SERVER_CATALOG_FILE_H

#include "runtime/engine.h"

/* Reads a catalog file row by row. */
typedef struct oa_catalog_reader oa_catalog_reader;

/* Opens path; vec_name names the vector field the rows get. NULL + err
 * (OA_EIO: cannot open; OA_EFORMAT: a bad header or vector file). */
oa_catalog_reader *oa_catalog_reader_open(const char *path, const char *vec_name,
                                          oa_error *err);
/* The next row: 1 with its id and fields (borrowed until the next call),
 * 0 at the end, or an error (OA_EFORMAT with the line number). */
int oa_catalog_reader_next(oa_catalog_reader *r, const char **id, size_t *idlen,
                           const oa_field **fields, int32_t *n, oa_error *err);
/* Upserts up to max_rows more rows into e's catalog, stopping early once
 * max_ns nanoseconds have passed (0: no time limit): 1 while rows remain,
 * 0 at the end, or an error naming the line (CSV) or action (vector file). */
int oa_catalog_reader_apply(oa_catalog_reader *r, oa_engine *e, int64_t max_rows,
                            uint64_t max_ns, oa_error *err);
/* Rows read so far, rows upserted so far (by _apply), and how far into
 * the file (a fraction in [0, 1]). */
int64_t oa_catalog_reader_rows(const oa_catalog_reader *r);
int64_t oa_catalog_reader_applied(const oa_catalog_reader *r);
double oa_catalog_reader_fraction(const oa_catalog_reader *r);
void oa_catalog_reader_close(oa_catalog_reader *r);

/* Checks every row of path against e's retrieval config (vector length,
 * finite values) without changing anything; *rows gets the count. Reads
 * only the file and the config given, so it may run on any thread with a
 * copy of the config (dim 0: no retrieval). */
int oa_catalog_file_check(const char *path, const char *vec_name, int32_t dim,
                          int64_t *rows, oa_error *err);

/* Checks, then upserts every row of path into e's catalog (so into its
 * retrieval store too), on this thread. progress (may be NULL) is called
 * now and then with the fraction done. */
int oa_catalog_file_load(oa_engine *e, const char *path,
                         void (*progress)(void *ud, double fraction, int64_t rows),
                         void *ud, oa_error *err);

/* The vector field's name and length for e's catalog files. */
const char *oa_catalog_file_vec_name(oa_engine *e, int32_t *dim);

#endif
