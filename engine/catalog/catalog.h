/* The action catalog: every action the engine knows, by id, with its raw
 * fields. Fields are stored as given (an owned deep copy of an oa_field
 * array), not as feature vectors, because each policy has its own feature
 * space: a policy compiles a catalog action with oa_features_bind +
 * oa_features_compile and caches the result keyed by (slot, version).
 *
 * Slots: an action lives in a slot (an index >= 0) from its first upsert
 * until it is removed; a removed slot is reused by a later new id. Each
 * upsert gives the slot a new version, unique across every catalog in the
 * process (a process-wide counter), so a cache keyed by (slot, version) is
 * never fooled by an update, a removed-then-reused slot, or a catalog that
 * replaced another one (after a load). Version 0 means "no action here".
 *
 * Memory: one allocation per action holds its id, its field array and
 * every string, list and vector it points to. At scale that is about 900
 * bytes for a reels action (6 fields, a 32-number embedding): the oa_field
 * array (80 bytes a field) is half of it, the embedding as doubles (256
 * bytes) a quarter; the retrieval store's float copy of the embedding is
 * 128 more. Measured at 10 million actions: 11.7 GiB resident, of which
 * the store is under 2. The embedding stays in the catalog as doubles
 * because policies compile features from these fields (oa_value.vec is a
 * double array, and the ranking stage of app_scale.lua uses the
 * embedding); dropping it or narrowing it to float would save at most a
 * quarter and change the features policies see.
 *
 * Threading: none; one thread at a time (the loop thread). */
#ifndef ONEARM_CATALOG_CATALOG_H
#define ONEARM_CATALOG_CATALOG_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "onearm.h"

#define OA_CATALOG_MAX_ID     256       /* bytes in an action id */
#define OA_CATALOG_MAX_FIELDS 1024      /* fields per action */
#define OA_CATALOG_MAX_NAME   255       /* bytes in a field name */
#define OA_CATALOG_MAX_ITEMS  (1 << 20) /* items in a list, numbers in a vector */

typedef struct oa_catalog oa_catalog;

/* An empty catalog, owned by the caller (oa_catalog_free). NULL + err on
 * allocation failure. */
oa_catalog *oa_catalog_new(oa_error *err);
void oa_catalog_free(oa_catalog *cat); /* NULL is fine */

/* Insert the action `id` (idlen bytes, any bytes but not empty, at most
 * OA_CATALOG_MAX_ID) or replace all of its fields. The fields are deep
 * copied; the caller's buffers may be freed on return. Field names must be
 * non-empty NUL-terminated strings, unique within the action; NUM, VEC and
 * list weights must be finite (else OA_ENUMERIC naming the field). A list
 * with lens == NULL uses strlen of each item. Returns the slot (>= 0), or a
 * negative OA_E* code with err filled and the catalog unchanged. */
int64_t oa_catalog_upsert(oa_catalog *cat, const char *id, size_t idlen,
                          const oa_field *fields, int32_t n, oa_error *err);

/* Remove an action: 0, or OA_ENOTFOUND. Its slot is freed for reuse and
 * pointers returned for it become invalid. */
int oa_catalog_remove(oa_catalog *cat, const char *id, size_t idlen);

/* The slot of an action, or -1. */
int64_t oa_catalog_find(const oa_catalog *cat, const char *id, size_t idlen);
/* A hint before looking up n ids (lens NULL: NUL-terminated): starts
 * loading their hash slots, keys and records, so that the lookups that
 * follow overlap their cache misses instead of taking them one by one
 * (a shortlist of hundreds of ids scattered over a large catalog). */
void oa_catalog_prefetch(const oa_catalog *cat, const char *const *ids,
                         const size_t *lens, int32_t n);

/* Accessors for a live slot. Returned pointers are borrowed and stay valid
 * until that slot is upserted again or removed, or the catalog is freed.
 * For a free or out-of-range slot: id and fields return NULL (n = 0, len =
 * 0) and version returns 0. */
const char *oa_catalog_id(const oa_catalog *cat, int64_t slot,
                          size_t *len); /* NUL-terminated */
const oa_field *oa_catalog_fields(const oa_catalog *cat, int64_t slot, int32_t *n);
uint64_t oa_catalog_version(const oa_catalog *cat, int64_t slot);

/* Live actions. */
int64_t oa_catalog_count(const oa_catalog *cat);
/* One past the highest slot ever used: the size a per-slot cache needs. */
int64_t oa_catalog_slots(const oa_catalog *cat);
/* Iterate live slots in increasing order: start with slot = -1; returns the
 * next live slot after `slot`, or -1 at the end. Removing the current slot
 * during iteration is fine. */
int64_t oa_catalog_next(const oa_catalog *cat, int64_t slot);

/* Append every live action (in slot order) to out, tagged and versioned.
 * 0, or OA_ENOMEM when out failed to grow. */
int oa_catalog_save(const oa_catalog *cat, oa_buf *out);

/* A frozen view of the catalog, to serialise it on another thread while
 * the loop thread goes on changing the catalog (snapshots): _begin lists
 * the live actions (24 bytes each, in an array kept for the next view; the
 * records themselves are shared),
 * and until the view ends, records that an upsert replaces or a removal
 * drops are kept rather than freed. _begin and _end on the thread that
 * changes the catalog; _save (the same bytes oa_catalog_save would have
 * written at _begin) from any thread, while the view is open. The
 * catalog must outlive its views. NULL from _begin: out of memory. */
typedef struct oa_catalog_view oa_catalog_view;
oa_catalog_view *oa_catalog_view_begin(oa_catalog *cat);
int oa_catalog_view_save(const oa_catalog_view *v, oa_buf *out);
/* The same bytes in pieces of about chunk bytes, each handed to
 * emit(sink, bytes, n) as it is made (a snapshot writes them straight to
 * its file, never holding the whole catalog in memory); a nonzero return
 * from emit stops it and is returned. 0, or that code, or OA_ENOMEM. */
int oa_catalog_view_stream(const oa_catalog_view *v, size_t chunk,
                           int (*emit)(void *sink, const void *p, size_t n), void *sink);
void oa_catalog_view_end(oa_catalog_view *v);
/* Read what oa_catalog_save wrote into a new catalog (slots renumbered from
 * 0 in saved order, fresh versions). Every action is validated as by
 * upsert. NULL + err (OA_EFORMAT for truncated or corrupt data) and nothing
 * allocated on failure. */
oa_catalog *oa_catalog_load(oa_reader *in, oa_error *err);

/* Approximate heap bytes held by the catalog. */
size_t oa_catalog_size_bytes(const oa_catalog *cat);

/* ---- Change hook (an addition, for indexes derived from the catalog) ----
 *
 * One hook per catalog (NULL clears it). It runs on every upsert after the
 * action was validated and before the catalog changes, with the new
 * fields: returning an error refuses the upsert (it fails with that error
 * and the catalog stays unchanged). It runs after every successful remove
 * with fields == NULL and n == -1. If an upsert fails after its hook ran
 * (out of memory while adding a new id), the hook runs again as a remove,
 * so a derived index stays in step. Threading: the hook runs on the
 * caller's thread, inside the catalog call. */
typedef int (*oa_catalog_hook)(void *ud, const char *id, size_t idlen,
                               const oa_field *fields, int32_t n, oa_error *err);
void oa_catalog_set_hook(oa_catalog *cat, oa_catalog_hook hook, void *ud);
/* The hook and its ud (NULL when none), so it can move to a catalog that
 * replaces this one, or be called to replay a change. */
oa_catalog_hook oa_catalog_get_hook(const oa_catalog *cat, void **ud);

#endif
