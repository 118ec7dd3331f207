/* A string → int64 hash map (open addressing, linear probing, xxHash3).
 * Keys are copied into the map; values are caller-defined (slots, indexes).
 * Used for action ids, policy names and event ids. */
#ifndef ONEARM_CORE_STRMAP_H
#define ONEARM_CORE_STRMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct oa_strmap_entry {
  char *key; /* owned; NULL = empty slot */
  size_t keylen;
  uint64_t hash;
  int64_t value;
  int tombstone;
} oa_strmap_entry;

typedef struct oa_strmap {
  oa_strmap_entry *slots;
  size_t cap;   /* power of two */
  size_t count; /* live keys */
  size_t used;  /* live + tombstones */
} oa_strmap;

void oa_strmap_init(oa_strmap *m);
void oa_strmap_free(oa_strmap *m);
uint64_t oa_hash_bytes(const void *p, size_t n, uint64_t seed);
/* 1 and *value when found, else 0. */
int oa_strmap_get(const oa_strmap *m, const char *key, size_t keylen, int64_t *value);
/* Insert or replace; 0, or OA_ENOMEM (map unchanged). */
int oa_strmap_put(oa_strmap *m, const char *key, size_t keylen, int64_t value);
/* 1 when removed, 0 when absent. */
int oa_strmap_del(oa_strmap *m, const char *key, size_t keylen);
/* Iterate: start with *pos = 0; returns 0 at the end. The key stays valid
 * until the map is changed. */
int oa_strmap_next(const oa_strmap *m, size_t *pos, const char **key, size_t *keylen,
                   int64_t *value);

#endif
