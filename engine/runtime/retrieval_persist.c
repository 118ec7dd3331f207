/* The retrieval store in snapshots: the vector matrix as a sidecar file
 * next to the snapshot, the IVF index inside it, and adoption of both on
 * restore instead of a rebuild from the catalog records.
 *
 * Why: a rebuild reads every catalog action's embedding, encodes it and,
 * with `build_at`, runs k-means over the whole store before the server
 * answers (a minute at a million rows). The sidecar is the vector store's
 * own file (catalog/vectors.c, ".oav"), so it loads back memory-mapped:
 * ids and metadata are read, the matrix pages come in on first use.
 *
 * The section, inside the snapshot payload (so the snapshot's checksum
 * covers it), little-endian:
 *   "RETR" v1
 *   the store's shape: str field, u32 dim, u32 format, u32 n_meta, per
 *     field str name and u32 kind (a store of another shape is not adopted)
 *   str sidecar file name (in the snapshot's directory), u64 file bytes,
 *   u64 the file's checksum (header, ids, metadata), u64 XXH3 of the
 *   matrix (the file's checksum leaves it out so it can be mapped), u64
 *   rows, u64 live rows, u64 generation
 *   u64 index bytes, then oa_ivf_save's bytes (0: no index)
 * A sidecar whose size, checksums, counts or shape differ from the section
 * is rejected with a reason and the store is rebuilt from the catalog
 * records of the same snapshot, which are always there.
 *
 * Consistency: the section is written from a frozen store (r->readers),
 * frozen on the loop thread in the same step that serialised the catalog,
 * so store and catalog records describe the same instant; changes made
 * meanwhile reach the catalog at once and the store at the thaw, as for
 * the background jobs of retrieval.c. The index is included only when no
 * other job was running (a build job ending would replace it).
 *
 * What a restore does not bring back: impression counts (as before, they
 * restart with the process) and the exact order in which rows were added;
 * the fresh pool takes row order, as a rebuild takes catalog order. */
#include "runtime/retrieval_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"

#define SECTION_TAG     "RETR"
#define SECTION_VERSION 1

struct oa__retrieval_snap {
  oa__retrieval *r;
  int with_ivf;
  oa_buf shape; /* the section's start: header and the store's shape */
};

static void put_shape(oa_buf *b, const oa_retrieval_config *c) {
  oa_buf_put_header(b, SECTION_TAG, SECTION_VERSION);
  oa_buf_put_str(b, c->field);
  oa_buf_put_u32(b, (uint32_t)c->dim);
  oa_buf_put_u32(b, (uint32_t)c->format);
  oa_buf_put_u32(b, (uint32_t)c->n_meta);
  for (int32_t i = 0; i < c->n_meta; i++) {
    oa_buf_put_str(b, c->meta[i].name);
    oa_buf_put_u32(b, (uint32_t)c->meta[i].kind);
  }
}

/* Reads what put_shape wrote into c (field into the caller's buffer). */
static int read_shape(oa_reader *in, oa_retrieval_config *c, char *field, size_t cap) {
  if (oa_read_header(in, SECTION_TAG, SECTION_VERSION, NULL, NULL)) return -1;
  memset(c, 0, sizeof *c);
  oa_read_str(in, field, cap);
  c->field = field;
  c->dim = (int32_t)oa_read_u32(in);
  c->format = (oa_vec_format)oa_read_u32(in);
  uint32_t n = oa_read_u32(in);
  if (in->failed || n > OA_VEC_MAX_META) return -1;
  c->n_meta = (int32_t)n;
  for (uint32_t i = 0; i < n; i++) {
    oa_read_str(in, c->meta[i].name, sizeof c->meta[i].name);
    c->meta[i].kind = (oa_meta_kind)oa_read_u32(in);
  }
  return in->failed ? -1 : 0;
}

/* ---- writing ---- */

oa__retrieval_snap *oa__retrieval_snap_begin(oa_engine *e) {
  oa__retrieval *r = *oa__engine_retrieval(e);
  if (!r || (r->readers && (r->resync || r->dirty.count))) return NULL;
  oa__retrieval_snap *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->r = r;
  s->with_ivf = !r->readers && r->ivf;
  oa_buf_init(&s->shape);
  put_shape(&s->shape, &r->cfg);
  if (s->shape.failed) {
    oa_buf_free(&s->shape);
    free(s);
    return NULL;
  }
  r->readers++;
  return s;
}

int oa__retrieval_snap_write(oa__retrieval_snap *s, const char *dir, const char *name,
                             oa_buf *section, oa_error *err) {
  char path[4096];
  oa_buf_init(section);
  if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
    return oa_error_set(err, OA_EINVAL, "path too long: %s/%s", dir, name);
  oa_vecfile_info info;
  int rc = oa_vecstore_save_file_ex(s->r->vs, path, &info, err);
  if (rc) return rc;
  oa_buf_put(section, s->shape.data, s->shape.len);
  oa_buf_put_str(section, name);
  oa_buf_put_u64(section, info.file_bytes);
  oa_buf_put_u64(section, info.checksum);
  oa_buf_put_u64(section, info.matrix_hash);
  oa_buf_put_u64(section, (uint64_t)info.rows);
  oa_buf_put_u64(section, (uint64_t)info.live);
  oa_buf_put_u64(section, info.generation);
  /* The index goes straight into the section; its length is patched in. */
  size_t at = section->len;
  oa_buf_put_u64(section, 0);
  if (s->with_ivf && !section->failed && !oa_ivf_save(s->r->ivf, section)) {
    uint64_t n = section->len - at - 8;
    memcpy(section->data + at, &n, 8);
  }
  if (section->failed) {
    oa_buf_free(section);
    unlink(path);
    return oa_error_set(err, OA_ENOMEM, "out of memory writing the retrieval section");
  }
  return 0;
}

void oa__retrieval_thaw(oa_engine *e, oa__retrieval *r) {
  r->readers--;
  oa__retrieval_apply_held(e, r);
}

void oa__retrieval_snap_end(oa_engine *e, oa__retrieval_snap *s) {
  if (!s) return;
  oa__retrieval_thaw(e, s->r);
  oa_buf_free(&s->shape);
  free(s);
}

/* ---- restoring ---- */

typedef struct sidecar_ref {
  char name[256];
  uint64_t bytes, checksum, matrix_hash, rows, live, generation;
} sidecar_ref;

static int read_ref(oa_reader *in, sidecar_ref *ref) {
  oa_read_str(in, ref->name, sizeof ref->name);
  ref->bytes = oa_read_u64(in);
  ref->checksum = oa_read_u64(in);
  ref->matrix_hash = oa_read_u64(in);
  ref->rows = oa_read_u64(in);
  ref->live = oa_read_u64(in);
  ref->generation = oa_read_u64(in);
  /* A plain file name in the snapshot's directory, nothing else. */
  if (in->failed || !ref->name[0] || strchr(ref->name, '/') || ref->name[0] == '.')
    return -1;
  return 0;
}

int oa__retrieval_section_file(oa_reader *section, char *name, size_t cap) {
  oa_retrieval_config c;
  char field[64];
  sidecar_ref ref;
  if (read_shape(section, &c, field, sizeof field) || read_ref(section, &ref)) return -1;
  return snprintf(name, cap, "%s", ref.name) < (int)cap ? 0 : -1;
}

/* Loads and checks the sidecar against its reference and r's shape: the
 * store, or NULL with the reason in problem. */
static oa_vecstore *load_sidecar(const oa__retrieval *r, const sidecar_ref *ref,
                                 const char *dir, char *problem, size_t cap) {
  char path[4096];
  struct stat st;
  snprintf(path, sizeof path, "%s/%s", dir, ref->name);
  if (stat(path, &st)) {
    snprintf(problem, cap, "sidecar %s is missing", ref->name);
    return NULL;
  }
  if ((uint64_t)st.st_size != ref->bytes) {
    snprintf(problem, cap, "sidecar %s has %lld bytes, the snapshot expects %llu",
             ref->name, (long long)st.st_size, (unsigned long long)ref->bytes);
    return NULL;
  }
  oa_error err;
  oa_vecstore *vs = oa_vecstore_load_file(path, &err);
  if (!vs) {
    snprintf(problem, cap, "%s", err.message);
    return NULL;
  }
  const oa_vecstore_config *vc = oa_vecstore_config_of(vs);
  oa_retrieval_config got = r->cfg;
  got.dim = vc->dim, got.format = vc->format, got.n_meta = vc->n_meta;
  memcpy(got.meta, vc->meta, sizeof got.meta);
  if (oa_vecstore_file_checksum(vs) != ref->checksum ||
      (uint64_t)oa_vecstore_rows(vs) != ref->rows ||
      (uint64_t)oa_vecstore_count(vs) != ref->live ||
      oa_vecstore_generation(vs) != ref->generation)
    snprintf(problem, cap, "sidecar %s is not the one this snapshot wrote", ref->name);
  else if (!oa_retrieval_config_same_store(&got, &r->cfg))
    snprintf(problem, cap, "sidecar %s holds a store of another shape", ref->name);
  else if (oa_vecstore_matrix_hash(vs) != ref->matrix_hash)
    snprintf(problem, cap, "sidecar %s: matrix checksum mismatch (corrupt file)",
             ref->name);
  else
    return vs;
  oa_vecstore_free(vs);
  return NULL;
}

/* The per-row state retrieval.c keeps beside the store, for an adopted
 * store: no impressions, rows added in row order, the most recent ones in
 * the fresh ring. */
static int adopt_rows(oa__retrieval *r) {
  int64_t rows = oa_vecstore_rows(r->vs);
  int64_t cap = rows > 1024 ? rows : 1024;
  r->shown = calloc((size_t)cap, sizeof *r->shown);
  r->added = calloc((size_t)cap, sizeof *r->added);
  if (!r->shown || !r->added) return OA_ENOMEM;
  r->cap = cap;
  for (int64_t row = 0; row < rows; row++) {
    if (!oa_vecstore_is_live(r->vs, row)) continue;
    r->added[row] = ++r->seq;
    r->ring_row[r->ring_head] = row;
    r->ring_seq[r->ring_head] = r->seq;
    r->ring_head = (r->ring_head + 1) % OA_RETR_RECENT;
    if (r->ring_len < OA_RETR_RECENT) r->ring_len++;
  }
  return 0;
}

/* A new retrieval state around the sidecar's store (and the section's
 * index), or NULL with the reason. */
static oa__retrieval *adopt(const oa__retrieval *r, oa_reader *in, const char *dir,
                            char *problem, size_t cap) {
  oa_retrieval_config shape;
  char field[64];
  sidecar_ref ref;
  if (read_shape(in, &shape, field, sizeof field) || read_ref(in, &ref)) {
    snprintf(problem, cap, "the retrieval section is corrupt");
    return NULL;
  }
  if (!oa_retrieval_config_same_store(&shape, &r->cfg)) {
    snprintf(problem, cap, "the app's retrieval store changed shape since the snapshot");
    return NULL;
  }
  oa_vecstore *vs = load_sidecar(r, &ref, dir, problem, cap);
  if (!vs) return NULL;
  oa_error err;
  oa__retrieval *fresh = oa__retrieval_new(&r->cfg, &err);
  if (!fresh) {
    snprintf(problem, cap, "%s", err.message);
    oa_vecstore_free(vs);
    return NULL;
  }
  oa_vecstore_free(fresh->vs);
  fresh->vs = vs;
  if (adopt_rows(fresh)) {
    snprintf(problem, cap, "out of memory");
    oa__retrieval_free(fresh);
    return NULL;
  }
  /* The index: optional; a bad one is left out (built again later). */
  uint64_t n = oa_read_u64(in);
  if (!in->failed && n && n <= in->len - in->pos) {
    oa_reader ir;
    oa_reader_init(&ir, in->data + in->pos, (size_t)n);
    fresh->ivf = oa_ivf_load(&ir, &err);
    if (fresh->ivf && (oa_ivf_dim(fresh->ivf) != r->cfg.dim ||
                       oa_ivf_count(fresh->ivf) != oa_vecstore_count(vs))) {
      oa_ivf_free(fresh->ivf);
      fresh->ivf = NULL;
    }
    if (!fresh->ivf)
      fprintf(stderr, "onearm: retrieval: the snapshot's index was left out (%s)\n",
              err.message);
  }
  fresh->exact = r->exact, fresh->approx = r->approx, fresh->builds = r->builds;
  return fresh;
}

int oa__retrieval_restore(oa_engine *e, oa_catalog *cat, oa_reader *section,
                          const char *dir, char *problem, size_t cap) {
  oa__retrieval **slot = oa__engine_retrieval(e);
  oa__retrieval *r = *slot, *fresh = NULL;
  if (cap) problem[0] = 0;
  if (r && section && section->len > 0) {
    if (r->readers)
      snprintf(problem, cap, "a background retrieval job is running");
    else
      fresh = adopt(r, section, dir, problem, cap);
  }
  if (!fresh) {
    oa_engine_replace_catalog(e, cat); /* rebuilds the store from cat */
    return 0;
  }
  /* Swap the catalog with retrieval detached (no rebuild), then attach
   * the adopted state and move the change hook to the new catalog. */
  void *ud;
  oa_catalog_hook hook = oa_catalog_get_hook(oa_engine_catalog(e), &ud);
  *slot = NULL;
  oa_engine_replace_catalog(e, cat);
  *slot = fresh;
  oa_catalog_set_hook(cat, hook, ud);
  oa__retrieval_free(r);
  return 1;
}
