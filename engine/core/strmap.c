#include "core/strmap.h"
#include "onearm.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

uint64_t oa_hash_bytes(const void *p, size_t n, uint64_t seed) {
  return XXH3_64bits_withSeed(p, n, seed);
}

void oa_strmap_init(oa_strmap *m) { memset(m, 0, sizeof *m); }

void oa_strmap_free(oa_strmap *m) {
  for (size_t i = 0; i < m->cap; i++) free(m->slots[i].key);
  free(m->slots);
  memset(m, 0, sizeof *m);
}

static oa_strmap_entry *find(const oa_strmap *m, const char *key, size_t keylen, uint64_t h) {
  if (!m->cap) return NULL;
  size_t mask = m->cap - 1;
  for (size_t i = h & mask;; i = (i + 1) & mask) {
    oa_strmap_entry *e = &m->slots[i];
    if (!e->key && !e->tombstone) return NULL;
    if (e->key && e->hash == h && e->keylen == keylen && memcmp(e->key, key, keylen) == 0)
      return e;
  }
}

int oa_strmap_get(const oa_strmap *m, const char *key, size_t keylen, int64_t *value) {
  oa_strmap_entry *e = find(m, key, keylen, oa_hash_bytes(key, keylen, 0));
  if (!e) return 0;
  if (value) *value = e->value;
  return 1;
}

static int grow(oa_strmap *m) {
  size_t cap = m->cap ? m->cap * 2 : 16;
  if (m->count * 4 < m->cap) cap = m->cap; /* mostly tombstones: rehash in place */
  oa_strmap_entry *slots = calloc(cap, sizeof *slots);
  if (!slots) return OA_ENOMEM;
  for (size_t i = 0; i < m->cap; i++) {
    oa_strmap_entry *e = &m->slots[i];
    if (!e->key) continue;
    size_t j = e->hash & (cap - 1);
    while (slots[j].key) j = (j + 1) & (cap - 1);
    slots[j] = *e;
    slots[j].tombstone = 0;
  }
  free(m->slots);
  m->slots = slots;
  m->cap = cap;
  m->used = m->count;
  return 0;
}

int oa_strmap_put(oa_strmap *m, const char *key, size_t keylen, int64_t value) {
  uint64_t h = oa_hash_bytes(key, keylen, 0);
  oa_strmap_entry *e = find(m, key, keylen, h);
  if (e) {
    e->value = value;
    return 0;
  }
  if ((m->used + 1) * 4 > m->cap * 3 && grow(m)) return OA_ENOMEM;
  char *copy = malloc(keylen + 1);
  if (!copy) return OA_ENOMEM;
  memcpy(copy, key, keylen);
  copy[keylen] = 0;
  size_t mask = m->cap - 1, i = h & mask;
  while (m->slots[i].key) i = (i + 1) & mask;
  if (!m->slots[i].tombstone) m->used++;
  m->slots[i] = (oa_strmap_entry){copy, keylen, h, value, 0};
  m->count++;
  return 0;
}

int oa_strmap_del(oa_strmap *m, const char *key, size_t keylen) {
  oa_strmap_entry *e = find(m, key, keylen, oa_hash_bytes(key, keylen, 0));
  if (!e) return 0;
  free(e->key);
  e->key = NULL;
  e->tombstone = 1;
  m->count--;
  return 1;
}

int oa_strmap_next(const oa_strmap *m, size_t *pos, const char **key, size_t *keylen,
                   int64_t *value) {
  while (*pos < m->cap) {
    const oa_strmap_entry *e = &m->slots[(*pos)++];
    if (!e->key) continue;
    if (key) *key = e->key;
    if (keylen) *keylen = e->keylen;
    if (value) *value = e->value;
    return 1;
  }
  return 0;
}
