/* onearm: a contextual-bandit engine in C, programmed in Lua 5.4.
 *
 * This is the one header a host includes. Conventions:
 * - Functions return 0 (OA_OK) or a negative OA_E* code and, when given a
 *   non-NULL oa_error, fill it with a human-readable message.
 *   Constructors return NULL and fill the error.
 * - The caller owns what it passes in; the engine copies what it keeps.
 *   Pointers the engine returns are borrowed and stay valid as stated on
 *   each function.
 * - No function runs or closes a libuv loop it was given. */
#ifndef ONEARM_H
#define ONEARM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Errors ---- */

#define OA_OK        0
#define OA_EINVAL    (-1)  /* bad argument or input (wrong type, bad value) */
#define OA_ENOMEM    (-2)  /* allocation failed */
#define OA_EDIM      (-3)  /* dimension or shape mismatch */
#define OA_ENOTFOUND (-4)  /* unknown policy, action, event */
#define OA_ENUMERIC  (-5)  /* NaN or Inf, or a matrix that is not positive definite */
#define OA_EFORMAT   (-6)  /* corrupt, truncated or incompatible serialized data */
#define OA_EIO       (-7)  /* file or socket error */
#define OA_ESTATE    (-8)  /* the object is not in a state that allows this (closed event) */
#define OA_ESCRIPT   (-9)  /* a Lua script failed */
#define OA_EEXIST    (-10) /* already exists */
#define OA_ELIMIT    (-11) /* a configured limit was reached (table full, budget) */

typedef struct oa_error {
  int code;
  char message[512];
} oa_error;

/* A short static description of a code ("invalid argument"). */
const char *oa_strerror(int code);

/* ---- Values: what a context or an action's field holds ---- */

typedef enum oa_value_type {
  OA_VAL_NONE = 0, /* missing: contributes nothing */
  OA_VAL_NUM,      /* a number (booleans are 0/1) */
  OA_VAL_STR,      /* a string (categorical value) */
  OA_VAL_LIST,     /* a list of strings (a set or bag), optionally weighted */
  OA_VAL_VEC       /* a dense array of numbers (an embedding) */
} oa_value_type;

/* A borrowed view of one field value; nothing here is freed by the engine. */
typedef struct oa_value {
  oa_value_type type;
  double num;               /* OA_VAL_NUM */
  const char *str;          /* OA_VAL_STR */
  size_t len;               /* OA_VAL_STR length */
  int32_t count;            /* OA_VAL_LIST and OA_VAL_VEC length */
  const char *const *strs;  /* OA_VAL_LIST items */
  const size_t *lens;       /* OA_VAL_LIST item lengths */
  const double *weights;    /* OA_VAL_LIST weights, NULL = all 1 */
  const double *vec;        /* OA_VAL_VEC */
} oa_value;

/* A named field; a record is an array of them. */
typedef struct oa_field {
  const char *name;
  oa_value value;
} oa_field;

/* ---- Embedding: a service (engine + app + HTTP) on the host's loop ----
 *
 * A host program that already runs libuv (a game or app server) embeds
 * onearm through an oa_service: it loads a Lua app, restores the engine's
 * state from the data directory, and registers its handles (HTTP listener,
 * event-expiry, snapshot and log timers, a reload trigger, file watchers)
 * on the loop the host passes in. It never runs or closes that loop, and
 * closes its own handles in oa_service_stop, calling back when done.
 * Decisions and rewards can be made in process (no HTTP, no JSON) with
 * oa_service_decide / oa_service_reward, on the loop's thread. */

struct uv_loop_s;

typedef struct oa_service oa_service;

typedef struct oa_service_config {
  const char *app_path;        /* the app's Lua file (required) */
  const char *data_dir;        /* snapshots and the decision log; NULL: "./var" */
  const char *listen;          /* "HOST:PORT" for HTTP (port 0: any); NULL: no HTTP */
  const char *admin_token;     /* NULL: admin routes open on loopback only */
  double snapshot_interval;    /* seconds between snapshots (0: only at stop); default 60 */
  size_t log_rotate_bytes;     /* decision log rotation size; 0: 64 MiB */
  int decision_log;            /* 1 (default): write the decision log */
  int watch_files;             /* 1 (default): reload when the app's files change */
  int restore;                 /* 1 (default): restore the snapshot at start */
  size_t max_body_bytes;       /* 0: 1 MiB */
  int max_connections;         /* 0: the HTTP layer's default */
  double idle_timeout;         /* seconds; 0: the HTTP layer's default */
  size_t lua_memory_bytes;     /* per Lua state; 0: 256 MiB */
  int64_t lua_instructions;    /* per hook call; 0: 10 million */
  uint64_t seed;               /* decision randomness and event ids */
  const char *catalog_path;    /* NULL, or a catalog file upserted at start (after the
                                  restore), as oa_service_load_catalog */
} oa_service_config;

void oa_service_config_defaults(oa_service_config *cfg);
/* Loads the app and restores state. NULL + err when the app fails to load
 * or the snapshot cannot be used (err names the file and the problem). */
oa_service *oa_service_new(const oa_service_config *cfg, oa_error *err);
/* Registers the service's handles on loop and starts listening. */
int oa_service_start(oa_service *s, struct uv_loop_s *loop, oa_error *err);
/* The HTTP port actually bound (after start), or -1 without HTTP. */
int oa_service_port(const oa_service *s);
/* Asks for a reload of the app; safe from any thread and from signal
 * handlers' loop callbacks. The reload runs on the loop thread. */
int oa_service_request_reload(oa_service *s);
/* Reloads now (loop thread); 0 or the reason it was refused. */
int oa_service_reload(oa_service *s, oa_error *err);
/* Writes a snapshot now (loop thread, synchronous). */
int oa_service_snapshot(oa_service *s, oa_error *err);

/* One candidate of an in-process decision: features inline, or NULL to
 * use the catalog's action with that id. */
typedef struct oa_candidate {
  const char *id;
  const oa_field *features;
  int32_t n_features;
} oa_candidate;

/* The outcome of a decision; probs/chosen_id are valid until the next
 * decision of the same policy. */
typedef struct oa_result {
  char event_id[128];
  int32_t chosen; /* index into the candidates */
  const char *chosen_id;
  int32_t n;
  const double *probs;
} oa_result;

/* Decide for one context among candidates with policy (NULL: the app's
 * first); event_id NULL: a new one. The event waits for its reward. */
int oa_service_decide(oa_service *s, const char *policy, const char *event_id,
                      const oa_field *context, int32_t n_context, const oa_candidate *cands,
                      int32_t n, oa_result *out, oa_error *err);
/* Two-stage decision (README "Two-stage ranking"): retrieve the top n
 * catalog actions for the context (or the given query vector) with the
 * app's retrieval settings, then decide among them. out->n and probs are
 * over the shortlist; out->chosen_id stays valid until the next catalog
 * change or decision. */
typedef struct oa_retrieve_options {
  int32_t n;                        /* 0: the app's default */
  int approximate;                  /* 1: the IVF index; 0: exact scan */
  int32_t nprobe;                   /* 0: the app's default */
  const float *query;               /* NULL: from the context or the policy */
  int32_t query_dim;
  double fresh_share;               /* < 0: the app's default */
  const char *const *exclude;       /* ids never to retrieve */
  int32_t n_exclude;
  const char *const *equal_fields;  /* metadata filters field == value */
  const char *const *equal_values;
  int32_t n_equal;
} oa_retrieve_options;
int oa_service_decide_retrieve(oa_service *s, const char *policy, const char *event_id,
                               const oa_field *context, int32_t n_context,
                               const oa_retrieve_options *opt, oa_result *out,
                               oa_error *err);
/* A reward for an event (combined and closed as the app says). */
int oa_service_reward(oa_service *s, const char *event_id, double value, oa_error *err);
/* Bulk-loads a catalog file on this thread (the loop's, once started): a
 * CSV (header `id,<fields...>`; columns v0..vN form the app's retrieval
 * embedding field, numeric cells are numbers, the others strings) or a
 * vector file written by `onearm catalog load`. The whole file is checked
 * first (format, vector length, finite values): on any problem nothing
 * changes and err names the file and line. Then every row is upserted. */
int oa_service_load_catalog(oa_service *s, const char *path, oa_error *err);
/* Catalog maintenance in process. */
int oa_service_upsert_action(oa_service *s, const char *id, const oa_field *features,
                             int32_t n, oa_error *err);
int oa_service_remove_action(oa_service *s, const char *id, oa_error *err);

/* Stops gracefully: stop accepting, finish requests in flight, close every
 * pending handle, write a final snapshot and flush the log; then done(s,
 * ud) runs on the loop thread. The host keeps running its loop until then. */
void oa_service_stop(oa_service *s, void (*done)(oa_service *s, void *ud), void *ud);
/* Frees a stopped (or never started) service. */
void oa_service_free(oa_service *s);

#ifdef __cplusplus
}
#endif

#endif
