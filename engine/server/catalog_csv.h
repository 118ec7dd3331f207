/* Bulk-loading a catalog CSV into an engine at start (onearm serve
 * --catalog FILE): see catalog_csv.c. */
#ifndef ONEARM_SERVER_CATALOG_CSV_H
#define ONEARM_SERVER_CATALOG_CSV_H

#include "runtime/engine.h"

/* Upserts every row of the CSV at path into e's catalog (so into its
 * retrieval store too). Header: `id`, then field columns; columns named
 * v0, v1, ... (in order, all of them) form one vector field named after
 * the engine's retrieval field (or "embedding" without retrieval); other
 * columns are numbers when the cell parses as one, else strings; empty
 * cells are missing. Stops at the first bad row: OA_EFORMAT or the
 * upsert's error, with the line number; rows before it stay. */
int oa_service_load_catalog(oa_engine *e, const char *path, oa_error *err);

#endif
