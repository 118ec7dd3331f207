/* Snapshots: see snapshot.h for the file format and the guarantees. */
#include "runtime/snapshot.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "core/error.h"
#include "runtime/events.h"
#include "runtime/policy_internal.h"
#include "runtime/retrieval_internal.h"

#define SNAPSHOT_MAGIC   "ONEARMSS"
#define SNAPSHOT_VERSION 2
#define HEADER_BYTES     (8 + 4 + 8 + 8)
#define SIDECAR_PREFIX   "state."
#define SIDECAR_SUFFIX   ".oav"

/* The payload, in order: its head (tag, app version), the retrieval
 * section's length and bytes, the catalog, and its tail (policies, pending
 * events). A job builds the head and the tail on the loop thread and keeps
 * a view of the catalog and a frozen retrieval store, which the writer
 * serialises on another thread: the loop thread never copies the catalog's
 * records or the store's vectors. */
struct oa_snapshot_job {
  oa_buf head, tail;
  oa_catalog_view *catalog;
  oa__retrieval_snap *retr;
};

static void put_head(const char *app_version, oa_buf *out) {
  oa_buf_put_header(out, "SNAP", SNAPSHOT_VERSION);
  oa_buf_put_str(out, app_version ? app_version : "");
}

static int put_tail(oa_engine *e, oa_buf *out, oa_error *err) {
  int32_t n = oa_engine_policy_count(e);
  oa_buf_put_u32(out, (uint32_t)n);
  for (int32_t i = 0; i < n; i++) {
    oa_policy *p = oa_engine_policy_at(e, i);
    oa_buf state;
    oa_buf_init(&state);
    int rc = oa__policy_save(p, &state, err);
    if (!rc && state.failed) rc = oa_error_set(err, OA_ENOMEM, "out of memory");
    if (!rc) {
      oa_buf_put_str(out, oa_policy_name(p));
      oa_buf_put_u64(out, state.len);
      oa_buf_put(out, state.data, state.len);
    }
    oa_buf_free(&state);
    if (rc) return oa_error_prefix(err, "policy '%s'", oa_policy_name(p));
  }
  if (oa__events_save(oa__engine_events(e), out))
    return oa_error_set(err, OA_ENOMEM, "out of memory while saving events");
  return out->failed ? oa_error_set(err, OA_ENOMEM, "out of memory") : 0;
}

static int write_all(int fd, const void *p, size_t n) {
  const char *c = p;
  while (n) {
    ssize_t w = write(fd, c, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    c += w;
    n -= (size_t)w;
  }
  return 0;
}

static int fsync_dir(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY);
  if (fd < 0) return -1;
  int rc = fsync(fd);
  close(fd);
  return rc;
}

int oa_snapshot_build(oa_engine *e, const char *app_version, oa_buf *out, oa_error *err) {
  oa_buf_init(out);
  put_head(app_version, out);
  oa_buf_put_u64(out, 0); /* no retrieval section */
  int rc = oa_catalog_save(oa_engine_catalog(e), out)
               ? oa_error_set(err, OA_ENOMEM, "out of memory while saving the catalog")
               : put_tail(e, out, err);
  if (rc) oa_buf_free(out);
  return rc;
}

/* The payload is written in pieces (a section spliced in without copying
 * the rest); the checksum runs over them in order. */
typedef struct piece {
  const void *data;
  size_t len;
  /* or, when set, a catalog view streamed in chunks (too big to hold) */
  const oa_catalog_view *catalog;
} piece;

/* Where the payload goes: the file, and the running checksum and length. */
typedef struct sink {
  int fd;
  XXH64_state_t *hs;
  uint64_t len;
} sink;

static int emit(void *s_, const void *p, size_t n) {
  sink *s = s_;
  XXH64_update(s->hs, p, n);
  s->len += n;
  return write_all(s->fd, p, n) ? OA_EIO : 0;
}

#define STREAM_CHUNK ((size_t)4 << 20)

static int ensure_dir(const char *dir, oa_error *err) {
  if (mkdir(dir, 0755) && errno != EEXIST)
    return oa_error_set(err, OA_EIO, "cannot create data directory '%s': %s", dir,
                        strerror(errno));
  return 0;
}

static int write_pieces(const char *dir, const piece *pc, int n, oa_error *err) {
  int rc = ensure_dir(dir, err);
  if (rc) return rc;
  char tmp[4096], cur[4096], prev[4096];
  snprintf(tmp, sizeof tmp, "%s/%s.tmp", dir, OA_SNAPSHOT_FILE);
  snprintf(cur, sizeof cur, "%s/%s", dir, OA_SNAPSHOT_FILE);
  snprintf(prev, sizeof prev, "%s/%s", dir, OA_SNAPSHOT_PREV);
  /* One pass: a blank header, the payload (checksummed as it goes), then
   * the header with the payload's length and checksum. */
  uint8_t header[HEADER_BYTES] = {0};
  uint32_t version = SNAPSHOT_VERSION;
  sink out = {open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644),
              XXH64_createState(), 0};
  if (!out.hs) {
    if (out.fd >= 0) close(out.fd);
    unlink(tmp);
    return oa_error_set(err, OA_ENOMEM, "out of memory");
  }
  XXH64_reset(out.hs, 0);
  int ok = out.fd >= 0 && !write_all(out.fd, header, sizeof header);
  int oom = 0;
  for (int i = 0; ok && i < n; i++) {
    int r = pc[i].catalog
                ? oa_catalog_view_stream(pc[i].catalog, STREAM_CHUNK, emit, &out)
                : emit(&out, pc[i].data, pc[i].len);
    oom = r == OA_ENOMEM;
    ok = !r;
  }
  uint64_t sum = XXH64_digest(out.hs);
  XXH64_freeState(out.hs);
  memcpy(header, SNAPSHOT_MAGIC, 8);
  memcpy(header + 8, &version, 4);
  memcpy(header + 12, &out.len, 8);
  memcpy(header + 20, &sum, 8);
  ok = ok && pwrite(out.fd, header, sizeof header, 0) == (ssize_t)sizeof header;
  ok = ok && !fsync(out.fd);
  int saved_errno = errno;
  if (out.fd >= 0) ok = !close(out.fd) && ok;
  if (!ok) {
    unlink(tmp);
    if (oom)
      return oa_error_set(err, OA_ENOMEM, "out of memory writing snapshot '%s'", tmp);
    return oa_error_set(err, OA_EIO, "cannot write snapshot '%s': %s", tmp,
                        strerror(saved_errno));
  }
  /* Keep the last good snapshot as the fallback, then swap the new one in. */
  if (access(cur, F_OK) == 0 && rename(cur, prev))
    return oa_error_set(err, OA_EIO, "cannot keep the previous snapshot: %s",
                        strerror(errno));
  if (rename(tmp, cur))
    return oa_error_set(err, OA_EIO, "cannot install snapshot '%s': %s", cur,
                        strerror(errno));
  fsync_dir(dir);
  return 0;
}

/* The sidecar a snapshot file references, from the start of its payload
 * (unverified: enough to know which files to keep). 0 and name, or -1. */
static int sidecar_of(const char *path, char *name, size_t cap) {
  uint8_t head[HEADER_BYTES + 8192];
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  size_t got = fread(head, 1, sizeof head, f);
  fclose(f);
  if (got < HEADER_BYTES || memcmp(head, SNAPSHOT_MAGIC, 8)) return -1;
  oa_reader in;
  oa_reader_init(&in, head + HEADER_BYTES, got - HEADER_BYTES);
  uint32_t version = 0;
  char app[4096];
  if (oa_read_header(&in, "SNAP", SNAPSHOT_VERSION, &version, NULL) || version < 2)
    return -1;
  oa_read_str(&in, app, sizeof app);
  uint64_t n = oa_read_u64(&in);
  if (in.failed || !n) return -1;
  oa_reader sec;
  oa_reader_init(&sec, in.data + in.pos,
                 n < in.len - in.pos ? (size_t)n : in.len - in.pos);
  return oa__retrieval_section_file(&sec, name, cap);
}

/* Deletes the sidecars (and leftover temporary ones) that neither the
 * snapshot nor the previous one references. */
static void clean_sidecars(const char *dir) {
  char keep[2][256] = {"", ""}, path[4096];
  const char *names[2] = {OA_SNAPSHOT_FILE, OA_SNAPSHOT_PREV};
  for (int i = 0; i < 2; i++) {
    snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    if (sidecar_of(path, keep[i], sizeof keep[i])) keep[i][0] = 0;
  }
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *de;
  while ((de = readdir(d))) {
    const char *nm = de->d_name;
    if (strncmp(nm, SIDECAR_PREFIX, strlen(SIDECAR_PREFIX)) ||
        !strstr(nm, SIDECAR_SUFFIX) || !strcmp(nm, keep[0]) || !strcmp(nm, keep[1]))
      continue;
    snprintf(path, sizeof path, "%s/%s", dir, nm);
    unlink(path);
  }
  closedir(d);
}

int oa_snapshot_write_file(const char *dir, const oa_buf *payload, oa_error *err) {
  piece pc = {payload->data, payload->len, NULL};
  int rc = write_pieces(dir, &pc, 1, err);
  if (!rc) clean_sidecars(dir);
  return rc;
}

oa_snapshot_job *oa_snapshot_begin(oa_engine *e, const char *app_version, oa_error *err) {
  oa_snapshot_job *job = calloc(1, sizeof *job);
  if (!job) {
    oa_error_set(err, OA_ENOMEM, "out of memory");
    return NULL;
  }
  oa_buf_init(&job->head);
  oa_buf_init(&job->tail);
  put_head(app_version, &job->head);
  int rc = job->head.failed ? oa_error_set(err, OA_ENOMEM, "out of memory")
                            : put_tail(e, &job->tail, err);
  if (!rc && !(job->catalog = oa_catalog_view_begin(oa_engine_catalog(e))))
    rc = oa_error_set(err, OA_ENOMEM, "out of memory for a view of the catalog");
  if (rc) {
    oa_buf_free(&job->head);
    oa_buf_free(&job->tail);
    free(job);
    return NULL;
  }
  job->retr = oa__retrieval_snap_begin(e);
  return job;
}

/* A sidecar name no file in dir has: state.<time in ns, hex>.oav. */
static void sidecar_name(const char *dir, char *name, size_t cap) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  uint64_t t = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
  char path[4096];
  do {
    snprintf(name, cap, SIDECAR_PREFIX "%016llx" SIDECAR_SUFFIX, (unsigned long long)t++);
    snprintf(path, sizeof path, "%s/%s", dir, name);
  } while (access(path, F_OK) == 0);
}

int oa_snapshot_job_write(oa_snapshot_job *job, const char *dir, oa_error *err) {
  int rc = ensure_dir(dir, err);
  if (rc) return rc;
  oa_buf section;
  char name[64] = "";
  oa_buf_init(&section);
  if (job->retr) {
    oa_error serr;
    sidecar_name(dir, name, sizeof name);
    if (oa__retrieval_snap_write(job->retr, dir, name, &section, &serr)) {
      fprintf(stderr, "onearm: snapshot: the retrieval sidecar is left out: %s\n",
              serr.message);
      name[0] = 0;
    }
  }
  uint64_t n = section.len;
  piece pc[5] = {{job->head.data, job->head.len, NULL},
                 {&n, 8, NULL},
                 {section.data, section.len, NULL},
                 {NULL, 0, job->catalog},
                 {job->tail.data, job->tail.len, NULL}};
  rc = write_pieces(dir, pc, 5, err);
  oa_buf_free(&section);
  if (rc && name[0]) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    unlink(path);
  }
  if (!rc) clean_sidecars(dir);
  return rc;
}

void oa_snapshot_end(oa_engine *e, oa_snapshot_job *job) {
  if (!job) return;
  oa__retrieval_snap_end(e, job->retr);
  oa_catalog_view_end(job->catalog);
  oa_buf_free(&job->head);
  oa_buf_free(&job->tail);
  free(job);
}

int oa_snapshot_save(oa_engine *e, const char *dir, const char *app_version,
                     oa_error *err) {
  oa_snapshot_job *job = oa_snapshot_begin(e, app_version, err);
  if (!job) return err ? err->code : OA_ENOMEM;
  int rc = oa_snapshot_job_write(job, dir, err);
  oa_snapshot_end(e, job);
  return rc;
}

/* Reads and verifies one snapshot file; the payload is malloc'ed. */
static int read_verified(const char *path, uint8_t **payload, size_t *len,
                         oa_error *err) {
  FILE *f = fopen(path, "rb");
  if (!f) return oa_error_set(err, OA_ENOTFOUND, "%s: %s", path, strerror(errno));
  uint8_t header[HEADER_BYTES];
  uint32_t version;
  uint64_t n, sum;
  int rc = 0;
  *payload = NULL;
  if (fread(header, 1, sizeof header, f) != sizeof header) {
    rc = oa_error_set(err, OA_EFORMAT, "%s: truncated header", path);
    goto done;
  }
  memcpy(&version, header + 8, 4);
  memcpy(&n, header + 12, 8);
  memcpy(&sum, header + 20, 8);
  if (memcmp(header, SNAPSHOT_MAGIC, 8)) {
    rc = oa_error_set(err, OA_EFORMAT, "%s: not an onearm snapshot", path);
    goto done;
  }
  if (version == 0 || version > SNAPSHOT_VERSION) {
    rc = oa_error_set(err, OA_EFORMAT, "%s: format version %u is not supported", path,
                      version);
    goto done;
  }
  if (n > ((uint64_t)1 << 40) || !(*payload = malloc(n ? n : 1))) {
    rc = oa_error_set(err, OA_EFORMAT, "%s: implausible payload size %llu", path,
                      (unsigned long long)n);
    goto done;
  }
  if (fread(*payload, 1, n, f) != n) {
    rc = oa_error_set(err, OA_EFORMAT, "%s: truncated (expected %llu payload bytes)",
                      path, (unsigned long long)n);
    goto done;
  }
  if (XXH64(*payload, n, 0) != sum) {
    rc = oa_error_set(err, OA_EFORMAT, "%s: checksum mismatch (corrupt file)", path);
    goto done;
  }
  *len = n;
done:
  fclose(f);
  if (rc) {
    free(*payload);
    *payload = NULL;
  }
  return rc;
}

/* Applies a verified payload. Policies are loaded one by one with a backup
 * of each, so a refused policy rolls every earlier one back. */
static int apply(oa_engine *e, const char *dir, const uint8_t *data, size_t len,
                 oa_snapshot_report *rep, oa_error *err) {
  oa_reader in, section;
  uint32_t version = 0;
  oa_reader_init(&in, data, len);
  oa_reader_init(&section, NULL, 0);
  int rc = oa_read_header(&in, "SNAP", SNAPSHOT_VERSION, &version, err);
  if (rc) return rc;
  oa_read_str(&in, rep->app_version, sizeof rep->app_version);
  if (version >= 2) {
    uint64_t n = oa_read_u64(&in);
    if (in.failed || n > in.len - in.pos)
      return oa_error_set(err, OA_EFORMAT, "truncated retrieval section");
    oa_reader_init(&section, in.data + in.pos, (size_t)n);
    in.pos += (size_t)n;
  }
  oa_catalog *cat = oa_catalog_load(&in, err);
  if (!cat) return err ? err->code : OA_EFORMAT;
  uint32_t n = oa_read_u32(&in);
  int32_t np = oa_engine_policy_count(e);
  oa_buf *backup = calloc((size_t)np + 1, sizeof *backup);
  int *loaded = calloc((size_t)np + 1, sizeof *loaded);
  if (!backup || !loaded) {
    rc = oa_error_set(err, OA_ENOMEM, "out of memory");
    goto fail;
  }
  for (uint32_t i = 0; i < n && !rc; i++) {
    char name[OA_MAX_NAME];
    oa_read_str(&in, name, sizeof name);
    uint64_t blob = oa_read_u64(&in);
    if (in.failed || blob > in.len - in.pos) {
      rc = oa_error_set(err, OA_EFORMAT, "truncated policy section");
      break;
    }
    oa_reader pin;
    oa_reader_init(&pin, in.data + in.pos, (size_t)blob);
    in.pos += (size_t)blob;
    int32_t k = 0;
    while (k < np && strcmp(oa_policy_name(oa_engine_policy_at(e, k)), name))
      k++;
    if (k == np) {
      rep->policies_skipped++;
      continue;
    }
    oa_policy *p = oa_engine_policy_at(e, k);
    oa_buf_init(&backup[k]);
    if ((rc = oa__policy_save(p, &backup[k], err))) break;
    int lrc = oa__policy_load(p, &pin, err);
    if (lrc == 0) {
      loaded[k] = 1;
      rep->policies_restored++;
    } else if (oa_policy_reset_allowed(p)) {
      rep->policies_reset++;
    } else {
      rc = lrc;
    }
  }
  if (rc) goto fail;
  rep->retrieval_adopted = oa__retrieval_restore(
      e, cat, &section, dir, rep->retrieval_problem, sizeof rep->retrieval_problem);
  cat = NULL;
  if (rep->retrieval_problem[0])
    fprintf(stderr, "onearm: retrieval: %s; the store is rebuilt from the catalog\n",
            rep->retrieval_problem);
  rep->actions = oa_catalog_count(oa_engine_catalog(e));
  rc = oa__events_load(oa__engine_events(e), &in, &rep->events_restored,
                       &rep->events_skipped, err);
  goto done;
fail:
  for (int32_t k = 0; k < np && backup; k++) {
    if (!loaded[k]) continue;
    oa_reader back;
    oa_reader_init(&back, backup[k].data, backup[k].len);
    oa__policy_load(oa_engine_policy_at(e, k), &back, NULL);
  }
  rep->policies_restored = 0;
done:
  for (int32_t k = 0; k < np && backup; k++)
    oa_buf_free(&backup[k]);
  free(backup);
  free(loaded);
  oa_catalog_free(cat);
  return rc;
}

int oa_snapshot_restore(oa_engine *e, const char *dir, oa_snapshot_report *rep,
                        oa_error *err) {
  memset(rep, 0, sizeof *rep);
  const char *names[2] = {OA_SNAPSHOT_FILE, OA_SNAPSHOT_PREV};
  for (int i = 0; i < 2; i++) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    uint8_t *payload = NULL;
    size_t len = 0;
    oa_error local = {0};
    int rc = read_verified(path, &payload, &len, &local);
    if (rc == OA_ENOTFOUND && i == 0 && access(path, F_OK) != 0) continue;
    if (rc) {
      if (i == 0) {
        snprintf(rep->problem, sizeof rep->problem, "%s", local.message);
        continue;
      }
      if (rc == OA_ENOTFOUND && !rep->problem[0]) return 0; /* no snapshot at all */
      return oa_error_set(err, OA_EFORMAT, "no usable snapshot in '%s': %s%s%s", dir,
                          rep->problem, rep->problem[0] ? "; " : "", local.message);
    }
    rc = apply(e, dir, payload, len, rep, err);
    free(payload);
    if (rc) return rc;
    snprintf(rep->file, sizeof rep->file, "%s", path);
    rep->used_previous = i == 1;
    return 0;
  }
  return 0;
}
