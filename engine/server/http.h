/* The HTTP/1.1 layer of the server: listens on a caller-supplied libuv loop,
 * parses requests with http_parser (Debian's libhttp-parser), and hands each
 * complete request to one handler callback that fills a response.
 *
 * What it does for every caller, so the API layer never has to:
 * - keep-alive and pipelining: requests on one connection are handled in
 *   the order they arrive and their responses are written in that order;
 *   responses produced from one read are written with a single uv_write;
 * - limits: header bytes (431), body bytes (413, checked against
 *   Content-Length before the body arrives and while a chunked body
 *   streams), open connections (503 and close), idle time (close);
 * - `Expect: 100-continue`, answered only when the body will be accepted;
 * - errors it detects itself get the API's JSON error body;
 * - graceful stop: stop accepting, let requests already started finish,
 *   close idle connections, report when every handle is closed.
 *
 * The handler runs synchronously on the loop thread and must not block.
 * Work that would (a large exact retrieval scan) can answer later: the
 * handler calls oa_http_defer, starts the work elsewhere and, back on the
 * loop thread, fills the response and calls oa_http_deferred_finish.
 * Meanwhile the loop serves every other connection; this connection keeps
 * its request (every pointer in it stays valid) and reads nothing more,
 * so requests pipelined behind the deferred one wait and responses still
 * leave in request order.
 * Memory: per connection, the request buffer, the response body buffer and
 * two output buffers are reused across requests, so a steady stream of
 * requests allocates nothing in this layer.
 *
 * Ownership: the caller owns the loop and must keep it alive until the stop
 * callback has run. This layer never runs or closes the loop. */
#ifndef ONEARM_SERVER_HTTP_H
#define ONEARM_SERVER_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/buf.h"
#include "onearm.h"

typedef struct oa_http_server oa_http_server;

typedef struct oa_http_config {
  size_t max_header_bytes;  /* request line + headers; default 16 KiB (431 beyond) */
  size_t max_body_bytes;    /* default 1 MiB (413 beyond) */
  int32_t max_connections;  /* default 1024 (503 beyond) */
  uint64_t idle_timeout_ms; /* no bytes in or out for this long: close; default 30 s */
} oa_http_config;

/* The defaults above. */
oa_http_config oa_http_config_defaults(void);

/* One request, valid during the handler call only: every pointer borrows
 * the connection's request buffer. Strings are NUL-terminated and also have
 * an explicit length; absent headers are "" with length 0. */
typedef struct oa_http_request {
  int method;              /* enum http_method (HTTP_GET, HTTP_POST, ...) */
  const char *method_name; /* "GET", ... */
  const char *path;        /* raw (still percent-encoded), starts with '/' normally */
  size_t path_len;
  const char *query; /* after '?', without it */
  size_t query_len;
  const char *content_type;
  size_t content_type_len;
  const char *authorization; /* the Authorization header */
  size_t authorization_len;
  const char *admin_token; /* the X-Admin-Token header */
  size_t admin_token_len;
  const char *body; /* NUL-terminated for convenience (the NUL is not counted) */
  size_t body_len;
  int keep_alive; /* the connection stays open after this response */
} oa_http_request;

/* What the handler fills. `body` is the connection's reusable buffer, empty
 * on entry: append to it (oa_buf_put). status defaults to 200 and
 * content_type to "application/json"; content_type must outlive the call
 * (a string literal in practice). */
typedef struct oa_http_response {
  int status;
  const char *content_type;
  oa_buf *body;
  int close;     /* set to 1 to close the connection after this response */
  void *conn_;   /* private: the connection (for oa_http_defer) */
  int deferred_; /* private: set by oa_http_defer */
} oa_http_response;

/* Answer later (see the header comment). Call it at most once, inside the
 * handler, with the handler's res; what the handler put in res is ignored.
 * The handle stays valid until oa_http_deferred_finish, which must be
 * called exactly once, on the loop thread, even when the peer has gone
 * (the response is then dropped) or the server is stopping (it waits for
 * deferred requests, whose responses close their connections). */
typedef struct oa_http_deferred oa_http_deferred;
oa_http_deferred *oa_http_defer(oa_http_response *res);
/* The request, as the handler saw it. */
const oa_http_request *oa_http_deferred_request(oa_http_deferred *d);
/* The response to fill: status 200, content type JSON and an empty body
 * on entry, as for a handler. */
oa_http_response *oa_http_deferred_response(oa_http_deferred *d);
/* Sends the response and lets the connection go on with its next request. */
void oa_http_deferred_finish(oa_http_deferred *d);

typedef void (*oa_http_handler)(void *ud, const oa_http_request *req,
                                oa_http_response *res);

/* Counters for /metrics. */
typedef struct oa_http_stats {
  uint64_t accepted;        /* connections accepted */
  uint64_t rejected;        /* connections refused with 503 (limit) */
  uint64_t requests;        /* requests handed to the handler */
  uint64_t protocol_errors; /* malformed requests and limit violations answered here */
  uint64_t timeouts;        /* connections closed for idleness */
  int32_t active;           /* connections open now */
} oa_http_stats;

/* A server on `loop` (borrowed). cfg NULL: defaults. NULL + err on failure. */
oa_http_server *oa_http_server_new(uv_loop_t *loop, const oa_http_config *cfg,
                                   oa_http_handler handler, void *ud, oa_error *err);

/* Bind and listen on host (an IPv4 or IPv6 literal) and port (0: the system
 * picks one; oa_http_server_port tells which). OA_EIO with the reason. */
int oa_http_server_listen(oa_http_server *s, const char *host, int port, oa_error *err);
int oa_http_server_port(const oa_http_server *s);

oa_http_stats oa_http_server_stats(const oa_http_server *s);

/* Graceful stop: closes the listener, closes idle connections at once, and
 * lets connections with a request in progress or a response still being
 * written finish that exchange (answered with `Connection: close`) before
 * closing them. `done` (may be NULL) runs once every handle of the server
 * is closed; after that, and only then, the server may be freed. Calling
 * stop twice is harmless (the second call is ignored). */
void oa_http_server_stop(oa_http_server *s, void (*done)(oa_http_server *s, void *ud),
                         void *ud);

/* Frees a server that never listened or whose stop callback has run. */
void oa_http_server_free(oa_http_server *s);

/* Percent-decodes src[0..len) into out (cap bytes, NUL-terminated); '+' is
 * kept as is (paths, not forms). Returns the decoded length, or -1 for a
 * malformed escape, an encoded NUL, or a result that does not fit. */
long oa_http_unescape(const char *src, size_t len, char *out, size_t cap);

/* Appends the API's JSON error body {"error":{"code":...,"message":...}}
 * to out, escaping the message. Used by this layer for its own errors and
 * by the API layer. */
void oa_http_error_body(oa_buf *out, const char *code, const char *message);

#endif
