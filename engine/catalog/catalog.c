/* The action catalog: id -> slot (core/strmap), and per slot one allocation
 * holding the action's id and a deep copy of its fields. Keeping raw fields
 * (not feature vectors) lets every policy compile the same action with its
 * own feature space; versions tell policies when their cached compilation
 * is stale. See catalog.h for the contract. */
#include "catalog/catalog.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "core/error.h"
#include "core/strmap.h"

#define CAT_TAG     "OACT"
#define CAT_VERSION 1u
#define MAX_STR     (1u << 24) /* bytes in one string value or list item */

typedef struct cat_entry {
  char *block; /* owned; NULL = free slot */
  size_t bytes;
  const char *id; /* into block */
  size_t idlen;
  oa_field *fields; /* into block */
  int32_t n;
  uint64_t version;
  int64_t next_free; /* free list link while the slot is free */
} cat_entry;

/* What a view keeps of a live action: enough to serialise it. */
typedef struct view_entry {
  const char *id;
  const oa_field *fields;
  uint32_t idlen;
  int32_t n;
} view_entry;

struct oa_catalog {
  cat_entry *e;
  int64_t cap, used; /* used: slots ever handed out */
  int64_t count;
  int64_t free_head; /* -1: none */
  oa_strmap ids;     /* id -> slot */
  size_t bytes;      /* sum of the blocks */
  oa_catalog_hook hook;
  void *hook_ud;
  /* open views (oa_catalog_view_begin): blocks replaced or removed while
   * any is open wait here, since a view may still be reading them */
  int views;
  char **retired;
  size_t n_retired, cap_retired;
  /* a view's entry array, kept for the next view: allocating it afresh
   * each time costs page faults on the loop thread */
  view_entry *spare;
  int64_t spare_cap;
};

struct oa_catalog_view {
  oa_catalog *cat;
  view_entry *e; /* the live actions at _begin, in slot order */
  int64_t count, cap;
};

/* Process-wide so versions never repeat across catalogs (see catalog.h). */
static uint64_t next_version;

static uint64_t new_version(void) {
  return __atomic_add_fetch(&next_version, 1, __ATOMIC_RELAXED);
}

oa_catalog *oa_catalog_new(oa_error *err) {
  oa_catalog *cat = calloc(1, sizeof *cat);
  if (!cat) {
    oa_error_set(err, OA_ENOMEM, "out of memory");
    return NULL;
  }
  cat->free_head = -1;
  oa_strmap_init(&cat->ids);
  return cat;
}

static void free_retired(oa_catalog *cat) {
  for (size_t i = 0; i < cat->n_retired; i++)
    free(cat->retired[i]);
  free(cat->retired);
  cat->retired = NULL;
  cat->n_retired = cat->cap_retired = 0;
}

/* A block leaves the catalog: freed, or kept while a view may read it. */
static void release_block(oa_catalog *cat, char *block) {
  if (!cat->views) {
    free(block);
    return;
  }
  if (cat->n_retired == cat->cap_retired) {
    size_t cap = cat->cap_retired ? 2 * cat->cap_retired : 64;
    char **r = realloc(cat->retired, sizeof *r * cap);
    if (!r)
      return; /* out of memory: the block leaks rather than be freed under a reader */
    cat->retired = r;
    cat->cap_retired = cap;
  }
  cat->retired[cat->n_retired++] = block;
}

void oa_catalog_free(oa_catalog *cat) {
  if (!cat) return;
  for (int64_t s = 0; s < cat->used; s++)
    free(cat->e[s].block);
  free_retired(cat);
  free(cat->spare);
  free(cat->e);
  oa_strmap_free(&cat->ids);
  free(cat);
}

/* ---- Validation and packing ---- */

static int validate(const char *id, size_t idlen, const oa_field *fields, int32_t n,
                    oa_error *err) {
  if (!id || idlen == 0)
    return oa_error_set(err, OA_EINVAL, "an action id must not be empty");
  if (idlen > OA_CATALOG_MAX_ID)
    return oa_error_set(err, OA_EINVAL, "action id is %zu bytes; the limit is %d", idlen,
                        OA_CATALOG_MAX_ID);
  if (n < 0 || n > OA_CATALOG_MAX_FIELDS || (n > 0 && !fields))
    return oa_error_set(err, OA_EINVAL, "an action has 0 to %d fields, got %d",
                        OA_CATALOG_MAX_FIELDS, (int)n);
  for (int32_t i = 0; i < n; i++) {
    const char *nm = fields[i].name;
    const oa_value *v = &fields[i].value;
    if (!nm || !nm[0])
      return oa_error_set(err, OA_EINVAL, "field %d has no name", (int)i);
    size_t nl = strlen(nm);
    if (nl > OA_CATALOG_MAX_NAME)
      return oa_error_set(err, OA_EINVAL, "field name '%.40s...' is longer than %d bytes",
                          nm, OA_CATALOG_MAX_NAME);
    for (int32_t j = 0; j < i; j++)
      if (!strcmp(fields[j].name, nm))
        return oa_error_set(err, OA_EINVAL, "field '%s' is given twice", nm);
    switch (v->type) {
    case OA_VAL_NONE:
      break;
    case OA_VAL_NUM:
      if (!isfinite(v->num))
        return oa_error_set(err, OA_ENUMERIC, "field '%s': number is NaN or infinite",
                            nm);
      break;
    case OA_VAL_STR:
      if (!v->str && v->len)
        return oa_error_set(err, OA_EINVAL, "field '%s': no string", nm);
      if (v->len > MAX_STR)
        return oa_error_set(err, OA_EINVAL, "field '%s': string longer than %u bytes", nm,
                            MAX_STR);
      break;
    case OA_VAL_LIST:
      if (v->count < 0 || v->count > OA_CATALOG_MAX_ITEMS || (v->count > 0 && !v->strs))
        return oa_error_set(err, OA_EINVAL,
                            "field '%s': a list has 0 to %d items, got %d", nm,
                            OA_CATALOG_MAX_ITEMS, (int)v->count);
      for (int32_t k = 0; k < v->count; k++) {
        size_t len = v->lens ? v->lens[k] : v->strs[k] ? strlen(v->strs[k]) : 0;
        if (!v->strs[k] && len)
          return oa_error_set(err, OA_EINVAL, "field '%s': list item %d is missing", nm,
                              (int)k);
        if (len > MAX_STR)
          return oa_error_set(err, OA_EINVAL,
                              "field '%s': list item %d is longer than %u bytes", nm,
                              (int)k, MAX_STR);
      }
      if (v->weights && !oa_all_finite(v->weights, v->count))
        return oa_error_set(err, OA_ENUMERIC, "field '%s': a weight is NaN or infinite",
                            nm);
      break;
    case OA_VAL_VEC:
      if (v->count < 0 || v->count > OA_CATALOG_MAX_ITEMS || (v->count > 0 && !v->vec))
        return oa_error_set(err, OA_EINVAL,
                            "field '%s': a vector has 0 to %d numbers, got %d", nm,
                            OA_CATALOG_MAX_ITEMS, (int)v->count);
      if (!oa_all_finite(v->vec, v->count))
        return oa_error_set(err, OA_ENUMERIC, "field '%s': vector holds NaN or infinity",
                            nm);
      break;
    default:
      return oa_error_set(err, OA_EINVAL, "field '%s': unknown value type %d", nm,
                          v->type);
    }
  }
  return 0;
}

/* A bump allocator over one block. With base == NULL it only measures, so
 * the same code sizes the block and then fills it. */
typedef struct packer {
  char *base;
  size_t pos;
} packer;

static void *take(packer *p, size_t n, size_t align) {
  p->pos = (p->pos + align - 1) & ~(align - 1);
  void *r = p->base ? p->base + p->pos : NULL;
  p->pos += n;
  return r;
}

static char *take_str(packer *p, const char *s, size_t n) {
  char *d = take(p, n + 1, 1);
  if (d) {
    if (n) memcpy(d, s, n);
    d[n] = 0;
  }
  return d;
}

/* Lay out (and, with a base, copy) an id and its fields. */
static void pack(packer *p, const char *id, size_t idlen, const oa_field *fields,
                 int32_t n, const char **out_id, oa_field **out_fields) {
  oa_field *fl = take(p, sizeof *fl * (size_t)n, _Alignof(oa_field));
  const char *idc = take_str(p, id, idlen);
  if (p->base) {
    *out_id = idc;
    *out_fields = fl;
  }
  for (int32_t i = 0; i < n; i++) {
    const oa_value *v = &fields[i].value;
    const char *nm = take_str(p, fields[i].name, strlen(fields[i].name));
    oa_value c = {.type = v->type};
    switch (v->type) {
    case OA_VAL_NUM:
      c.num = v->num;
      break;
    case OA_VAL_STR:
      c.str = take_str(p, v->str, v->len);
      c.len = v->len;
      break;
    case OA_VAL_LIST: {
      int32_t m = v->count;
      const char **strs = take(p, sizeof *strs * (size_t)m, _Alignof(char *));
      size_t *lens = take(p, sizeof *lens * (size_t)m, _Alignof(size_t));
      double *w = v->weights ? take(p, sizeof *w * (size_t)m, _Alignof(double)) : NULL;
      for (int32_t k = 0; k < m; k++) {
        size_t len = v->lens ? v->lens[k] : v->strs[k] ? strlen(v->strs[k]) : 0;
        const char *s = take_str(p, v->strs[k], len);
        if (p->base) {
          strs[k] = s;
          lens[k] = len;
        }
      }
      if (w && m) memcpy(w, v->weights, sizeof *w * (size_t)m);
      c.count = m;
      c.strs = strs;
      c.lens = lens;
      c.weights = w;
      break;
    }
    case OA_VAL_VEC: {
      double *d = take(p, sizeof *d * (size_t)v->count, _Alignof(double));
      if (d && v->count) memcpy(d, v->vec, sizeof *d * (size_t)v->count);
      c.count = v->count;
      c.vec = d;
      break;
    }
    default:
      break;
    }
    if (p->base) fl[i] = (oa_field){.name = nm, .value = c};
  }
}

/* ---- Upsert, remove, lookups ---- */

void oa_catalog_set_hook(oa_catalog *cat, oa_catalog_hook hook, void *ud) {
  cat->hook = hook;
  cat->hook_ud = ud;
}

oa_catalog_hook oa_catalog_get_hook(const oa_catalog *cat, void **ud) {
  if (ud) *ud = cat->hook_ud;
  return cat->hook;
}

/* An upsert failed after its hook accepted it: tell the hook what the
 * catalog still holds for the id (only new ids reach here: nothing). */
static void hook_undo(oa_catalog *cat, const char *id, size_t idlen) {
  if (cat->hook) cat->hook(cat->hook_ud, id, idlen, NULL, -1, NULL);
}

int64_t oa_catalog_upsert(oa_catalog *cat, const char *id, size_t idlen,
                          const oa_field *fields, int32_t n, oa_error *err) {
  int rc = validate(id, idlen, fields, n, err);
  if (rc) return rc;
  packer p = {NULL, 0};
  pack(&p, id, idlen, fields, n, NULL, NULL);
  size_t bytes = p.pos ? p.pos : 1;
  char *block = malloc(bytes);
  if (!block)
    return oa_error_set(err, OA_ENOMEM, "out of memory for action '%.*s'", (int)idlen,
                        id);
  p = (packer){block, 0};
  const char *idc = NULL;
  oa_field *fl = NULL;
  pack(&p, id, idlen, fields, n, &idc, &fl);
  if (cat->hook && (rc = cat->hook(cat->hook_ud, id, idlen, fields, n, err))) {
    free(block);
    return rc;
  }

  int64_t slot;
  if (oa_strmap_get(&cat->ids, id, idlen, &slot)) {
    cat_entry *e = &cat->e[slot];
    cat->bytes -= e->bytes;
    release_block(cat, e->block);
  } else {
    if (cat->free_head < 0 && cat->used == cat->cap) {
      int64_t cap = cat->cap ? cat->cap * 2 : 64;
      cat_entry *ne = realloc(cat->e, sizeof *ne * (size_t)cap);
      if (!ne) {
        free(block);
        hook_undo(cat, id, idlen);
        return oa_error_set(err, OA_ENOMEM, "out of memory");
      }
      cat->e = ne;
      cat->cap = cap;
    }
    slot = cat->free_head >= 0 ? cat->free_head : cat->used;
    if (oa_strmap_put(&cat->ids, id, idlen, slot)) {
      free(block);
      hook_undo(cat, id, idlen);
      return oa_error_set(err, OA_ENOMEM, "out of memory");
    }
    if (slot == cat->free_head)
      cat->free_head = cat->e[slot].next_free;
    else
      cat->used++;
    cat->count++;
  }
  cat->e[slot] = (cat_entry){.block = block,
                             .bytes = bytes,
                             .id = idc,
                             .idlen = idlen,
                             .fields = fl,
                             .n = n,
                             .version = new_version(),
                             .next_free = -1};
  cat->bytes += bytes;
  return slot;
}

int oa_catalog_remove(oa_catalog *cat, const char *id, size_t idlen) {
  int64_t slot;
  if (!id || !oa_strmap_get(&cat->ids, id, idlen, &slot)) return OA_ENOTFOUND;
  oa_strmap_del(&cat->ids, id, idlen);
  cat_entry *e = &cat->e[slot];
  cat->bytes -= e->bytes;
  release_block(cat, e->block);
  *e = (cat_entry){.next_free = cat->free_head};
  cat->free_head = slot;
  cat->count--;
  if (cat->hook) cat->hook(cat->hook_ud, id, idlen, NULL, -1, NULL);
  return 0;
}

void oa_catalog_prefetch(const oa_catalog *cat, const char *const *ids,
                         const size_t *lens, int32_t n) {
  const oa_strmap *m = &cat->ids;
  if (!m->cap) return;
  size_t mask = m->cap - 1;
  /* In groups: first every home slot, then, with the slots in cache, each
   * key and record (a slot holds its key's hash and value: no compare
   * needed). */
  enum { GROUP = 256 };
  uint64_t h[GROUP];
  for (int32_t g = 0; g < n; g += GROUP) {
    int32_t k = n - g < GROUP ? n - g : GROUP;
    for (int32_t i = 0; i < k; i++) {
      const char *id = ids[g + i];
      h[i] = oa_hash_bytes(id, lens ? lens[g + i] : strlen(id), 0);
      __builtin_prefetch(&m->slots[h[i] & mask]);
    }
    for (int32_t i = 0; i < k; i++) {
      const oa_strmap_entry *e = &m->slots[h[i] & mask];
      if (!e->key || e->hash != h[i]) continue; /* collided: the lookup will probe */
      __builtin_prefetch(e->key);
      if (e->value >= 0 && e->value < cat->used) __builtin_prefetch(&cat->e[e->value]);
    }
  }
}

int64_t oa_catalog_find(const oa_catalog *cat, const char *id, size_t idlen) {
  int64_t slot;
  if (!id || !oa_strmap_get(&cat->ids, id, idlen, &slot)) return -1;
  return slot;
}

static const cat_entry *live(const oa_catalog *cat, int64_t slot) {
  if (slot < 0 || slot >= cat->used || !cat->e[slot].block) return NULL;
  return &cat->e[slot];
}

const char *oa_catalog_id(const oa_catalog *cat, int64_t slot, size_t *len) {
  const cat_entry *e = live(cat, slot);
  if (len) *len = e ? e->idlen : 0;
  return e ? e->id : NULL;
}

const oa_field *oa_catalog_fields(const oa_catalog *cat, int64_t slot, int32_t *n) {
  const cat_entry *e = live(cat, slot);
  if (n) *n = e ? e->n : 0;
  return e ? e->fields : NULL;
}

uint64_t oa_catalog_version(const oa_catalog *cat, int64_t slot) {
  const cat_entry *e = live(cat, slot);
  return e ? e->version : 0;
}

int64_t oa_catalog_count(const oa_catalog *cat) {
  return cat->count;
}
int64_t oa_catalog_slots(const oa_catalog *cat) {
  return cat->used;
}

int64_t oa_catalog_next(const oa_catalog *cat, int64_t slot) {
  for (int64_t s = slot < 0 ? 0 : slot + 1; s < cat->used; s++)
    if (cat->e[s].block) return s;
  return -1;
}

size_t oa_catalog_size_bytes(const oa_catalog *cat) {
  return sizeof *cat + cat->bytes + sizeof *cat->e * (size_t)cat->cap +
         sizeof(oa_strmap_entry) * cat->ids.cap + cat->ids.count * 16;
}

/* ---- Save / load ----
 * "OACT" v1, u64 count, then per action: id (u32 length + bytes), u32
 * field count, per field: name (u32 + bytes), u32 type and its payload
 * (NUM f64; STR u32 + bytes; LIST u32 count, u32 weighted, items as u32 +
 * bytes, weights as f64; VEC u32 count, f64s). A trailing u64 xxHash3 of
 * everything after the header catches corruption a length check cannot. */

static void put_bytes(oa_buf *b, const char *s, size_t n) {
  oa_buf_put_u32(b, (uint32_t)n);
  oa_buf_put(b, s, n);
}

/* One action's record in the saved form. */
static void put_record(oa_buf *out, const char *id, size_t idlen, const oa_field *fields,
                       int32_t n) {
  put_bytes(out, id, idlen);
  oa_buf_put_u32(out, (uint32_t)n);
  for (int32_t i = 0; i < n; i++) {
    const oa_value *v = &fields[i].value;
    put_bytes(out, fields[i].name, strlen(fields[i].name));
    oa_buf_put_u32(out, (uint32_t)v->type);
    switch (v->type) {
    case OA_VAL_NUM:
      oa_buf_put_f64(out, v->num);
      break;
    case OA_VAL_STR:
      put_bytes(out, v->str, v->len);
      break;
    case OA_VAL_LIST:
      oa_buf_put_u32(out, (uint32_t)v->count);
      oa_buf_put_u32(out, v->weights != NULL);
      for (int32_t k = 0; k < v->count; k++)
        put_bytes(out, v->strs[k], v->lens[k]);
      if (v->weights) oa_buf_put(out, v->weights, sizeof(double) * (size_t)v->count);
      break;
    case OA_VAL_VEC:
      oa_buf_put_u32(out, (uint32_t)v->count);
      oa_buf_put(out, v->vec, sizeof(double) * (size_t)v->count);
      break;
    default:
      break;
    }
  }
}

/* The saved form: header, count, records, then a hash of count and
 * records. _begin returns where the hashed part starts. */
static size_t save_begin(oa_buf *out, int64_t count) {
  oa_buf_put_header(out, CAT_TAG, CAT_VERSION);
  size_t start = out->len;
  oa_buf_put_u64(out, (uint64_t)count);
  return start;
}

static int save_end(oa_buf *out, size_t start) {
  if (!out->failed)
    oa_buf_put_u64(out, oa_hash_bytes(out->data + start, out->len - start, 0));
  return out->failed ? OA_ENOMEM : 0;
}

int oa_catalog_save(const oa_catalog *cat, oa_buf *out) {
  size_t start = save_begin(out, cat->count);
  for (int64_t s = oa_catalog_next(cat, -1); s >= 0; s = oa_catalog_next(cat, s)) {
    const cat_entry *e = &cat->e[s];
    put_record(out, e->id, e->idlen, e->fields, e->n);
  }
  return save_end(out, start);
}

oa_catalog_view *oa_catalog_view_begin(oa_catalog *cat) {
  oa_catalog_view *v = calloc(1, sizeof *v);
  if (!v) return NULL;
  if (cat->spare) { /* taken; a second view at once gets its own */
    v->e = cat->spare, v->cap = cat->spare_cap;
    cat->spare = NULL, cat->spare_cap = 0;
  }
  if (v->cap < cat->count) {
    int64_t cap = cat->count + cat->count / 4 + 64;
    view_entry *e = realloc(v->e, sizeof *e * (size_t)cap);
    if (!e) {
      free(v->e);
      free(v);
      return NULL;
    }
    v->e = e, v->cap = cap;
  }
  for (int64_t s = 0; s < cat->used; s++) {
    const cat_entry *c = &cat->e[s];
    if (c->block)
      v->e[v->count++] = (view_entry){c->id, c->fields, (uint32_t)c->idlen, c->n};
  }
  v->cat = cat;
  cat->views++;
  return v;
}

int oa_catalog_view_stream(const oa_catalog_view *v, size_t chunk,
                           int (*emit)(void *sink, const void *p, size_t n), void *sink) {
  XXH3_state_t *st = XXH3_createState();
  oa_buf b;
  oa_buf_init(&b);
  int rc = st ? 0 : OA_ENOMEM;
  /* The header is not hashed; the count and the records are. */
  if (!rc) {
    size_t start = save_begin(&b, v->count);
    XXH3_64bits_reset_withSeed(st, 0);
    XXH3_64bits_update(st, b.data + start, b.len - start);
    rc = b.failed ? OA_ENOMEM : emit(sink, b.data, b.len);
  }
  for (int64_t i = 0; !rc && i < v->count; i++) {
    if (i == 0) b.len = 0;
    put_record(&b, v->e[i].id, v->e[i].idlen, v->e[i].fields, v->e[i].n);
    if (b.len >= chunk || i + 1 == v->count) {
      XXH3_64bits_update(st, b.data, b.len);
      rc = b.failed ? OA_ENOMEM : emit(sink, b.data, b.len);
      b.len = 0;
    }
  }
  if (!rc) {
    b.len = 0;
    oa_buf_put_u64(&b, XXH3_64bits_digest(st));
    rc = b.failed ? OA_ENOMEM : emit(sink, b.data, b.len);
  }
  XXH3_freeState(st);
  oa_buf_free(&b);
  return rc;
}

static int append(void *sink, const void *p, size_t n) {
  oa_buf_put(sink, p, n);
  return ((oa_buf *)sink)->failed ? OA_ENOMEM : 0;
}

int oa_catalog_view_save(const oa_catalog_view *v, oa_buf *out) {
  return oa_catalog_view_stream(v, (size_t)1 << 20, append, out);
}

void oa_catalog_view_end(oa_catalog_view *v) {
  if (!v) return;
  oa_catalog *cat = v->cat;
  if (!cat->spare) {
    cat->spare = v->e, cat->spare_cap = v->cap;
  } else {
    free(v->e);
  }
  free(v);
  if (--cat->views == 0) free_retired(cat);
}

/* A length-prefixed byte run, borrowed from the reader's data. */
static const char *read_bytes(oa_reader *r, uint32_t *len, uint32_t max) {
  uint32_t n = oa_read_u32(r);
  if (r->failed || n > max || n > r->len - r->pos) {
    r->failed = 1;
    *len = 0;
    return NULL;
  }
  const char *s = (const char *)r->data + r->pos;
  r->pos += n;
  *len = n;
  return s;
}

static size_t remaining(const oa_reader *r) {
  return r->failed ? 0 : r->len - r->pos;
}

/* Parse one action's fields into fl, with arrays from the packer (measure
 * with base == NULL, then fill). Strings stay in the reader's data (they
 * carry lengths); names are copied to get their terminating NUL. */
static int parse_fields(oa_reader *r, packer *p, oa_field *fl, uint32_t n) {
  for (uint32_t i = 0; i < n; i++) {
    uint32_t nl;
    const char *nm = read_bytes(r, &nl, OA_CATALOG_MAX_NAME);
    char *name = take_str(p, nm ? nm : "", nl);
    oa_value v = {.type = (oa_value_type)oa_read_u32(r)};
    switch (v.type) {
    case OA_VAL_NONE:
      break;
    case OA_VAL_NUM:
      v.num = oa_read_f64(r);
      break;
    case OA_VAL_STR: {
      uint32_t len;
      v.str = read_bytes(r, &len, MAX_STR);
      v.len = len;
      break;
    }
    case OA_VAL_LIST: {
      uint32_t m = oa_read_u32(r), weighted = oa_read_u32(r);
      if (m > OA_CATALOG_MAX_ITEMS || m > remaining(r) / 4 || weighted > 1) return -1;
      const char **strs = take(p, sizeof *strs * m, _Alignof(char *));
      size_t *lens = take(p, sizeof *lens * m, _Alignof(size_t));
      double *w = weighted ? take(p, sizeof *w * m, _Alignof(double)) : NULL;
      for (uint32_t k = 0; k < m; k++) {
        uint32_t len;
        const char *s = read_bytes(r, &len, MAX_STR);
        if (p->base) {
          strs[k] = s ? s : "";
          lens[k] = len;
        }
      }
      if (weighted && m > remaining(r) / 8) return -1;
      for (uint32_t k = 0; weighted && k < m; k++) {
        double x = oa_read_f64(r);
        if (w) w[k] = x;
      }
      v.count = (int32_t)m;
      v.strs = strs;
      v.lens = lens;
      v.weights = weighted ? w : NULL;
      break;
    }
    case OA_VAL_VEC: {
      uint32_t m = oa_read_u32(r);
      if (m > OA_CATALOG_MAX_ITEMS || m > remaining(r) / 8) return -1;
      double *d = take(p, sizeof *d * m, _Alignof(double));
      for (uint32_t k = 0; k < m; k++) {
        double x = oa_read_f64(r);
        if (d) d[k] = x;
      }
      v.count = (int32_t)m;
      v.vec = d;
      break;
    }
    default:
      return -1;
    }
    if (r->failed) return -1;
    if (fl) fl[i] = (oa_field){.name = name, .value = v};
  }
  return 0;
}

oa_catalog *oa_catalog_load(oa_reader *in, oa_error *err) {
  if (oa_read_header(in, CAT_TAG, CAT_VERSION, NULL, err)) return NULL;
  size_t start = in->pos;
  uint64_t count = oa_read_u64(in);
  if (in->failed || count > remaining(in) / 8) {
    oa_error_set(err, OA_EFORMAT, "catalog data is truncated or corrupt");
    return NULL;
  }
  oa_catalog *cat = oa_catalog_new(err);
  if (!cat) return NULL;
  oa_field *fl = NULL;
  char *arena = NULL;
  for (uint64_t a = 0; a < count; a++) {
    uint32_t idlen;
    const char *id = read_bytes(in, &idlen, OA_CATALOG_MAX_ID);
    uint32_t n = oa_read_u32(in);
    if (in->failed || n > OA_CATALOG_MAX_FIELDS) goto corrupt;
    /* Measure on a copy of the reader, then parse for real into the arena. */
    oa_reader probe = *in;
    packer p = {NULL, 0};
    if (parse_fields(&probe, &p, NULL, n)) goto corrupt;
    free(arena);
    free(fl);
    arena = malloc(p.pos ? p.pos : 1);
    fl = malloc(sizeof *fl * (n ? n : 1));
    if (!arena || !fl) {
      oa_error_set(err, OA_ENOMEM, "out of memory");
      goto fail;
    }
    p = (packer){arena, 0};
    if (parse_fields(in, &p, fl, n)) goto corrupt;
    if (oa_catalog_find(cat, id, idlen) >= 0) {
      oa_error_set(err, OA_EFORMAT, "catalog data holds action '%.*s' twice", (int)idlen,
                   id);
      goto fail;
    }
    int64_t rc = oa_catalog_upsert(cat, id, idlen, fl, (int32_t)n, err);
    if (rc < 0) {
      if (err && rc != OA_ENOMEM) err->code = OA_EFORMAT;
      oa_error_prefix(err, "stored action '%.*s'", (int)idlen, id);
      goto fail;
    }
  }
  {
    uint64_t want = oa_hash_bytes(in->data + start, in->pos - start, 0);
    uint64_t got = oa_read_u64(in);
    if (in->failed) goto corrupt;
    if (got != want) {
      oa_error_set(err, OA_EFORMAT, "catalog data is corrupt (checksum mismatch)");
      goto fail;
    }
  }
  free(arena);
  free(fl);
  return cat;
corrupt:
  oa_error_set(err, OA_EFORMAT, "catalog data is truncated or corrupt");
fail:
  free(arena);
  free(fl);
  oa_catalog_free(cat);
  return NULL;
}
