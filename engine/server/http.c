/* The HTTP/1.1 layer: connections, parsing (http_parser), limits, output
 * batching and graceful stop. See http.h for the contract.
 *
 * Connection life: accept -> reading/parsing -> (handler -> response
 * appended to `out`) * n -> flush -> ... -> close. Responses produced while a
 * write is in flight accumulate in `out` and go out together when it
 * completes, so a connection never has more than one uv_write pending and
 * pipelined responses leave in request order.
 *
 * Closing after a final response (error, `Connection: close`, stop) is a
 * "lingering close": shut down our side, then keep reading and discarding
 * until the peer closes or a short timer fires. Closing at once while the
 * client is still sending would make the kernel reset the connection and
 * the client could lose the very response that explains the close (413). */
#include "server/http.h"

#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "server/json.h"

#define READ_BUF_SIZE  (64 * 1024)
#define OUT_HIGH_WATER (1024 * 1024) /* stop reading while more than this is unsent */
#define LINGER_MS      2000

/* Headers the API cares about; everything else is parsed and skipped. */
enum { H_NONE = -1, H_CONTENT_TYPE, H_AUTHORIZATION, H_ADMIN_TOKEN, H_EXPECT, H_COUNT };
static const char *const header_names[H_COUNT] = {"content-type", "authorization",
                                                  "x-admin-token", "expect"};

typedef struct span {
  size_t off, len;
} span;

typedef struct conn {
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_write_t write_req;
  uv_shutdown_t shutdown_req;
  oa_http_server *server;
  struct conn *prev, *next;
  http_parser parser;

  /* request being parsed; spans index into req */
  oa_buf req;
  span url, headers[H_COUNT], body;
  int cur_header;      /* header whose value is being read, or H_NONE */
  int in_value;        /* the last callback was a header value */
  char field[32];      /* name of the header being read (lower case) */
  size_t field_len;    /* may exceed sizeof field: then it matches nothing */
  size_t header_bytes; /* url + header names and values so far */
  int error_status;    /* set by a callback: answer this and close */
  const char *error_code, *error_message;

  oa_buf body_out; /* the handler's response body */
  oa_buf out;      /* responses not yet handed to uv_write */
  oa_buf wbuf;     /* bytes of the write in flight */

  /* a deferred request (oa_http_defer): the request as the handler saw it,
   * its response, and the bytes read after it (pipelined requests), parsed
   * once it is answered */
  oa_http_request dreq;
  oa_http_response dres;
  oa_buf stash, stash_parse;

  uint64_t last_active;    /* loop time of the last byte in or out */
  unsigned url_done : 1;   /* the url is NUL-terminated */
  unsigned in_message : 1; /* between message begin and complete */
  unsigned writing : 1;    /* a uv_write is in flight */
  unsigned reading : 1;    /* uv_read_start is active */
  unsigned finishing : 1;  /* no more requests: close once `out` is written */
  unsigned lingering : 1;  /* shut down; discarding input until EOF */
  unsigned closing : 1;    /* uv_close called */
  unsigned deferred : 1;   /* a request awaits oa_http_deferred_finish */
  unsigned released : 1;   /* handles closed while deferred: free at finish */
  int pending_closes;      /* handles whose close callback has not run */
} conn;

struct oa_http_server {
  uv_loop_t *loop;
  uv_tcp_t listener;
  int listening, listener_open, stopping;
  oa_http_config cfg;
  oa_http_handler handler;
  void *ud;
  http_parser_settings settings;
  conn *conns; /* doubly linked */
  oa_http_stats stats;
  int port;
  void (*done)(oa_http_server *, void *);
  void *done_ud;
  int done_called;
  char read_buf[READ_BUF_SIZE]; /* shared: every read is parsed before the next */
};

oa_http_config oa_http_config_defaults(void) {
  oa_http_config c = {16 * 1024, 1024 * 1024, 1024, 30000};
  return c;
}

/* ---- small helpers ---- */

static void buf_puts(oa_buf *b, const char *s) {
  oa_buf_put(b, s, strlen(s));
}

void oa_http_error_body(oa_buf *out, const char *code, const char *message) {
  buf_puts(out, "{\"error\":{\"code\":");
  oa_json_put_str(out, code, strlen(code));
  buf_puts(out, ",\"message\":");
  oa_json_put_str(out, message, strlen(message));
  buf_puts(out, "}}");
}

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

long oa_http_unescape(const char *src, size_t len, char *out, size_t cap) {
  size_t o = 0;
  for (size_t i = 0; i < len; i++) {
    int c = (unsigned char)src[i];
    if (c == '%') {
      if (len - i < 3) return -1;
      int h = hexval((unsigned char)src[i + 1]), l = hexval((unsigned char)src[i + 2]);
      if (h < 0 || l < 0) return -1;
      c = h * 16 + l;
      if (c == 0) return -1;
      i += 2;
    }
    if (o + 1 >= cap) return -1;
    out[o++] = (char)c;
  }
  if (o >= cap) return -1;
  out[o] = 0;
  return (long)o;
}

/* Decimal digits of v appended to b, without going through printf (this
 * runs for every response). */
static void buf_putu(oa_buf *b, uint64_t v) {
  char tmp[24];
  int i = sizeof tmp;
  do {
    tmp[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  oa_buf_put(b, tmp + i, sizeof tmp - (size_t)i);
}

/* ---- closing ---- */

static void maybe_done(oa_http_server *s) {
  if (s->stopping && !s->listener_open && !s->conns && !s->done_called) {
    s->done_called = 1;
    if (s->done) s->done(s, s->done_ud);
  }
}

/* Unlinks and frees a connection whose handles are closed. */
static void conn_free(conn *c) {
  oa_http_server *s = c->server;
  if (c->prev)
    c->prev->next = c->next;
  else
    s->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  s->stats.active--;
  oa_buf_free(&c->req);
  oa_buf_free(&c->body_out);
  oa_buf_free(&c->out);
  oa_buf_free(&c->wbuf);
  oa_buf_free(&c->stash);
  oa_buf_free(&c->stash_parse);
  free(c);
  maybe_done(s);
}

static void on_conn_closed(uv_handle_t *h) {
  conn *c = h->data;
  if (--c->pending_closes > 0) return;
  if (c->deferred) { /* the deferred handle still points here */
    c->released = 1;
    return;
  }
  conn_free(c);
}

/* Closes both handles; the connection is freed when both callbacks ran.
 * A write or shutdown in flight gets its callback (UV_ECANCELED) first. */
static void conn_close(conn *c) {
  if (c->closing) return;
  c->closing = 1;
  c->pending_closes = 2;
  uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
  uv_close((uv_handle_t *)&c->timer, on_conn_closed);
}

static void on_timer(uv_timer_t *t);

/* The idle timer does not restart on every read (a heap operation per
 * request); it fires at the deadline computed from the last activity and
 * re-arms itself for the remainder when there was activity since. */
static uint64_t conn_limit_ms(const conn *c) {
  return c->lingering ? LINGER_MS : c->server->cfg.idle_timeout_ms;
}

static void on_timer(uv_timer_t *t) {
  conn *c = t->data;
  uint64_t now = uv_now(c->server->loop), limit = conn_limit_ms(c);
  uint64_t idle = now - c->last_active;
  if (c->deferred) idle = 0; /* waiting for our own answer is not idleness */
  if (idle < limit) {
    uv_timer_start(&c->timer, on_timer, limit - idle, 0);
    return;
  }
  if (!c->lingering) c->server->stats.timeouts++;
  conn_close(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  conn *c = h->data;
  buf->base = c->server->read_buf;
  buf->len = READ_BUF_SIZE;
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

static void start_reading(conn *c) {
  if (c->reading || c->closing) return;
  if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read)) {
    conn_close(c);
    return;
  }
  c->reading = 1;
}

static void stop_reading(conn *c) {
  if (!c->reading) return;
  uv_read_stop((uv_stream_t *)&c->tcp);
  c->reading = 0;
}

static void on_shutdown(uv_shutdown_t *r, int status) {
  conn *c = r->data;
  if (status && !c->closing) conn_close(c);
}

/* Our side is done: send FIN, then discard input until the peer closes or
 * LINGER_MS pass (see the header comment). */
static void linger(conn *c) {
  if (c->lingering || c->closing) return;
  c->lingering = 1;
  if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown)) {
    conn_close(c);
    return;
  }
  start_reading(c);
  c->last_active = uv_now(c->server->loop);
  uv_timer_start(&c->timer, on_timer, LINGER_MS, 0);
}

/* ---- writing ---- */

static void flush(conn *c);

static void on_write(uv_write_t *req, int status) {
  conn *c = req->data;
  c->writing = 0;
  c->wbuf.len = 0;
  if (c->closing) return;
  if (status) {
    conn_close(c);
    return;
  }
  c->last_active = uv_now(c->server->loop);
  flush(c);
  /* Reading stopped for backpressure resumes once the backlog is out. */
  if (!c->writing && !c->finishing && !c->lingering && !c->deferred) start_reading(c);
}

/* Hands everything in `out` to one uv_write, unless one is in flight (its
 * callback flushes again). With nothing left to send, a finishing
 * connection moves on to its lingering close. */
static void flush(conn *c) {
  if (c->writing || c->closing) return;
  if (c->out.failed) { /* out of memory while composing: give up on this peer */
    conn_close(c);
    return;
  }
  if (c->out.len == 0) {
    if (c->finishing) linger(c);
    return;
  }
  oa_buf t = c->wbuf;
  c->wbuf = c->out;
  c->out = t;
  c->out.len = 0;
  uv_buf_t b = uv_buf_init((char *)c->wbuf.data, (unsigned)c->wbuf.len);
  if (uv_write(&c->write_req, (uv_stream_t *)&c->tcp, &b, 1, on_write)) {
    conn_close(c);
    return;
  }
  c->writing = 1;
}

static void append_response(conn *c, int status, const char *ctype, const oa_buf *body,
                            int close) {
  oa_buf *o = &c->out;
  buf_puts(o, "HTTP/1.1 ");
  buf_putu(o, (uint64_t)status);
  buf_puts(o, " ");
  buf_puts(o, http_status_str((enum http_status)status));
  buf_puts(o, "\r\nContent-Type: ");
  buf_puts(o, ctype);
  buf_puts(o, "\r\nContent-Length: ");
  buf_putu(o, body->len);
  if (close)
    buf_puts(o, "\r\nConnection: close");
  else if (c->parser.http_minor == 0)
    buf_puts(o, "\r\nConnection: keep-alive");
  buf_puts(o, "\r\n\r\n");
  oa_buf_put(o, body->data, body->len);
}

/* An error found by this layer: answered, then the connection finishes. */
static void append_error(conn *c, int status, const char *code, const char *message) {
  c->server->stats.protocol_errors++;
  c->body_out.len = 0;
  oa_http_error_body(&c->body_out, code, message);
  append_response(c, status, "application/json", &c->body_out, 1);
  c->finishing = 1;
}

/* ---- parsing ---- */

static int fail(conn *c, int status, const char *code, const char *message) {
  c->error_status = status;
  c->error_code = code;
  c->error_message = message;
  return -1;
}

static int count_header_bytes(conn *c, size_t n) {
  c->header_bytes += n;
  if (c->header_bytes > c->server->cfg.max_header_bytes)
    return fail(c, 431, "HeadersTooLarge",
                "request line and headers exceed the size limit");
  return 0;
}

/* NUL-terminate the piece that just ended (url or a header value) so the
 * handler gets C strings. */
static void end_piece(conn *c) {
  oa_buf_put(&c->req, "", 1);
}

static int on_message_begin(http_parser *p) {
  conn *c = p->data;
  c->req.len = 0;
  c->url = c->body = (span){0, 0};
  for (int i = 0; i < H_COUNT; i++)
    c->headers[i] = (span){0, 0};
  c->cur_header = H_NONE;
  c->in_value = 0;
  c->url_done = 0;
  c->field_len = 0;
  c->header_bytes = 0;
  c->in_message = 1;
  return 0;
}

static int on_url(http_parser *p, const char *at, size_t n) {
  conn *c = p->data;
  if (count_header_bytes(c, n)) return -1;
  if (c->url.len == 0) c->url.off = c->req.len;
  oa_buf_put(&c->req, at, n);
  c->url.len += n;
  return 0;
}

static void end_url(conn *c) {
  if (c->url_done) return;
  c->url_done = 1;
  end_piece(c);
}

static int on_header_field(http_parser *p, const char *at, size_t n) {
  conn *c = p->data;
  if (count_header_bytes(c, n)) return -1;
  end_url(c);
  if (c->in_value) { /* a new field starts: close the previous value */
    if (c->cur_header != H_NONE) end_piece(c);
    c->in_value = 0;
    c->field_len = 0;
  }
  for (size_t i = 0; i < n; i++, c->field_len++)
    if (c->field_len < sizeof c->field) {
      char ch = at[i];
      c->field[c->field_len] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
    }
  return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n) {
  conn *c = p->data;
  if (count_header_bytes(c, n)) return -1;
  if (!c->in_value) { /* first chunk of this value: which header is it? */
    c->in_value = 1;
    c->cur_header = H_NONE;
    for (int i = 0; i < H_COUNT; i++)
      if (c->field_len == strlen(header_names[i]) &&
          !memcmp(c->field, header_names[i], c->field_len)) {
        c->cur_header = i;
        c->headers[i] = (span){c->req.len, 0}; /* a repeated header: the last wins */
        break;
      }
  }
  if (c->cur_header != H_NONE) {
    oa_buf_put(&c->req, at, n);
    c->headers[c->cur_header].len += n;
  }
  return 0;
}

static int ascii_ieq(const char *a, size_t alen, const char *b) {
  size_t blen = strlen(b);
  if (alen != blen) return 0;
  for (size_t i = 0; i < alen; i++) {
    int x = (unsigned char)a[i], y = (unsigned char)b[i];
    if (x >= 'A' && x <= 'Z') x += 32;
    if (x != y) return 0;
  }
  return 1;
}

static int on_headers_complete(http_parser *p) {
  conn *c = p->data;
  oa_http_server *s = c->server;
  end_url(c);
  if (c->in_value && c->cur_header != H_NONE) end_piece(c);
  c->in_value = 0;
  if ((p->flags & F_CONTENTLENGTH) && p->content_length > s->cfg.max_body_bytes)
    return fail(c, 413, "PayloadTooLarge", "request body exceeds the size limit");
  span e = c->headers[H_EXPECT];
  if (e.len) {
    if (!ascii_ieq((const char *)c->req.data + e.off, e.len, "100-continue"))
      return fail(c, 417, "ExpectationFailed",
                  "only 'Expect: 100-continue' is supported");
    if (p->http_major == 1 && p->http_minor >= 1)
      buf_puts(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
  }
  c->body.off = c->req.len;
  return 0;
}

static int on_body(http_parser *p, const char *at, size_t n) {
  conn *c = p->data;
  if (c->body.len + n > c->server->cfg.max_body_bytes) /* chunked bodies end up here */
    return fail(c, 413, "PayloadTooLarge", "request body exceeds the size limit");
  oa_buf_put(&c->req, at, n);
  c->body.len += n;
  return 0;
}

static const char *piece(const conn *c, span sp, size_t *len) {
  *len = sp.len;
  return sp.len ? (const char *)c->req.data + sp.off : "";
}

static oa_http_response fresh_response(conn *c) {
  c->body_out.len = 0;
  c->body_out.failed = 0;
  oa_http_response res = {200, "application/json", &c->body_out, 0, c, 0};
  return res;
}

/* Queues the response to rq (its body is in body_out). */
static void respond(conn *c, const oa_http_request *rq, oa_http_response *res) {
  if (c->body_out.failed) {
    c->body_out.len = 0;
    c->body_out.failed = 0;
    oa_http_error_body(&c->body_out, "Unavailable", "out of memory for the response");
    res->status = 503;
    res->content_type = "application/json";
  }
  int close = res->close || !rq->keep_alive || c->server->stopping;
  append_response(c, res->status,
                  res->content_type ? res->content_type : "application/json",
                  &c->body_out, close);
  if (close) {
    c->finishing = 1;
    http_parser_pause(&c->parser, 1); /* whatever follows in this read is not handled */
  }
}

static int on_message_complete(http_parser *p) {
  conn *c = p->data;
  oa_http_server *s = c->server;
  end_piece(c); /* terminates the body (or an empty one) */
  c->in_message = 0;
  if (c->req.failed) return fail(c, 503, "Unavailable", "out of memory for the request");

  oa_http_request rq;
  memset(&rq, 0, sizeof rq);
  rq.method = (int)p->method;
  rq.method_name = http_method_str((enum http_method)p->method);
  char *url = (char *)c->req.data + c->url.off;
  char *q = memchr(url, '?', c->url.len);
  rq.path = url;
  rq.path_len = q ? (size_t)(q - url) : c->url.len;
  if (q) {
    *q = 0;
    rq.query = q + 1;
    rq.query_len = c->url.len - rq.path_len - 1;
  } else {
    rq.query = "";
  }
  rq.content_type = piece(c, c->headers[H_CONTENT_TYPE], &rq.content_type_len);
  rq.authorization = piece(c, c->headers[H_AUTHORIZATION], &rq.authorization_len);
  rq.admin_token = piece(c, c->headers[H_ADMIN_TOKEN], &rq.admin_token_len);
  rq.body = (const char *)c->req.data + c->body.off;
  rq.body_len = c->body.len;
  rq.keep_alive = http_should_keep_alive(p) && !s->stopping;

  oa_http_response res = fresh_response(c);
  s->stats.requests++;
  s->handler(s->ud, &rq, &res);
  if (res.deferred_) {
    /* Answered later: keep the request, parse nothing more until then. */
    c->deferred = 1;
    c->dreq = rq;
    c->dres = fresh_response(c);
    http_parser_pause(p, 1);
    return 0;
  }
  respond(c, &rq, &res);
  return 0;
}

/* Parses one read's bytes; every complete request is answered into `out`,
 * which is flushed once at the end. */
static void process(conn *c, const char *data, size_t len) {
  size_t used = http_parser_execute(&c->parser, &c->server->settings, data, len);
  enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
  if (c->deferred) {
    /* Paused on a deferred request: keep the rest for later. */
    if (used < len) oa_buf_put(&c->stash, data + used, len - used);
    if (c->stash.failed) {
      c->stash.failed = 0;
      c->stash.len = 0;
      c->finishing = 1; /* cannot keep the pipelined requests: end after this one */
    }
  } else if (c->error_status) {
    append_error(c, c->error_status, c->error_code, c->error_message);
  } else if (e == HPE_HEADER_OVERFLOW) {
    append_error(c, 431, "HeadersTooLarge",
                 "request line and headers exceed the size limit");
  } else if (e != HPE_OK && e != HPE_PAUSED) {
    append_error(c, 400, "BadRequest", http_errno_description(e));
  } else if (c->parser.upgrade) {
    append_error(c, 400, "BadRequest", "protocol upgrades are not supported");
  }
  flush(c);
  if (!c->lingering &&
      (c->finishing || c->deferred || c->out.len + c->wbuf.len > OUT_HIGH_WATER))
    stop_reading(c);
}

/* ---- deferred responses ---- */

oa_http_deferred *oa_http_defer(oa_http_response *res) {
  res->deferred_ = 1;
  return (oa_http_deferred *)res->conn_;
}

const oa_http_request *oa_http_deferred_request(oa_http_deferred *d) {
  return &((conn *)d)->dreq;
}

oa_http_response *oa_http_deferred_response(oa_http_deferred *d) {
  return &((conn *)d)->dres;
}

void oa_http_deferred_finish(oa_http_deferred *d) {
  conn *c = (conn *)d;
  c->deferred = 0;
  if (c->released) { /* the connection closed meanwhile */
    conn_free(c);
    return;
  }
  if (c->closing) return; /* on_conn_closed frees it */
  respond(c, &c->dreq, &c->dres);
  c->last_active = uv_now(c->server->loop);
  if (c->finishing) {
    flush(c);
    return;
  }
  /* Go on with the requests that arrived behind this one. */
  http_parser_pause(&c->parser, 0);
  oa_buf t = c->stash_parse;
  c->stash_parse = c->stash;
  c->stash = t;
  c->stash.len = 0;
  if (c->stash_parse.len)
    process(c, (const char *)c->stash_parse.data, c->stash_parse.len);
  else
    flush(c);
  c->stash_parse.len = 0;
  if (!c->closing && !c->deferred && !c->finishing && !c->lingering &&
      c->out.len + c->wbuf.len <= OUT_HIGH_WATER)
    start_reading(c);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  conn *c = st->data;
  if (c->closing || nread == 0) return;
  if (nread < 0) {
    /* The peer is gone or done sending. Responses still queued are sent
     * when the peer only half-closed (EOF); anything else closes now. */
    stop_reading(c);
    if (nread == UV_EOF && !c->lingering && (c->writing || c->out.len)) {
      c->finishing = 1;
      return;
    }
    conn_close(c);
    return;
  }
  c->last_active = uv_now(c->server->loop);
  if (c->lingering || c->finishing) return; /* discarded */
  process(c, buf->base, (size_t)nread);
}

/* ---- accepting ---- */

static void on_connection(uv_stream_t *l, int status) {
  oa_http_server *s = l->data;
  if (status < 0 || s->stopping) return;
  conn *c = calloc(1, sizeof *c);
  if (!c) return; /* libuv stops accepting until the next call; memory may return */
  c->server = s;
  uv_tcp_init(s->loop, &c->tcp);
  uv_timer_init(s->loop, &c->timer);
  c->tcp.data = c->timer.data = c->write_req.data = c->shutdown_req.data = c;
  c->next = s->conns;
  if (s->conns) s->conns->prev = c;
  s->conns = c;
  s->stats.active++;
  if (uv_accept(l, (uv_stream_t *)&c->tcp)) {
    conn_close(c);
    return;
  }
  s->stats.accepted++;
  uv_tcp_nodelay(&c->tcp, 1);
  http_parser_init(&c->parser, HTTP_REQUEST);
  c->parser.data = c;
  c->last_active = uv_now(s->loop);
  uv_timer_start(&c->timer, on_timer, s->cfg.idle_timeout_ms, 0);
  if (s->stats.active > s->cfg.max_connections) {
    s->stats.rejected++;
    append_error(c, 503, "Unavailable", "too many open connections");
    flush(c);
    return;
  }
  start_reading(c);
}

/* ---- server ---- */

oa_http_server *oa_http_server_new(uv_loop_t *loop, const oa_http_config *cfg,
                                   oa_http_handler handler, void *ud, oa_error *err) {
  oa_http_config d = oa_http_config_defaults();
  if (cfg) {
    if (cfg->max_header_bytes) d.max_header_bytes = cfg->max_header_bytes;
    if (cfg->max_body_bytes) d.max_body_bytes = cfg->max_body_bytes;
    if (cfg->max_connections > 0) d.max_connections = cfg->max_connections;
    if (cfg->idle_timeout_ms) d.idle_timeout_ms = cfg->idle_timeout_ms;
  }
  if (!loop || !handler) {
    oa_error_set(err, OA_EINVAL, "an HTTP server needs a loop and a handler");
    return NULL;
  }
  oa_http_server *s = calloc(1, sizeof *s);
  if (!s) {
    oa_error_set(err, OA_ENOMEM, "out of memory");
    return NULL;
  }
  s->loop = loop;
  s->cfg = d;
  s->handler = handler;
  s->ud = ud;
  s->settings.on_message_begin = on_message_begin;
  s->settings.on_url = on_url;
  s->settings.on_header_field = on_header_field;
  s->settings.on_header_value = on_header_value;
  s->settings.on_headers_complete = on_headers_complete;
  s->settings.on_body = on_body;
  s->settings.on_message_complete = on_message_complete;
  return s;
}

static void on_listener_closed(uv_handle_t *h) {
  oa_http_server *s = h->data;
  s->listener_open = 0;
  maybe_done(s);
}

int oa_http_server_listen(oa_http_server *s, const char *host, int port, oa_error *err) {
  struct sockaddr_storage addr;
  if (s->listener_open || s->stopping)
    return oa_error_set(err, OA_ESTATE, "the server is already listening or stopping");
  if (port < 0 || port > 65535) return oa_error_set(err, OA_EINVAL, "bad port %d", port);
  if (uv_ip4_addr(host, port, (struct sockaddr_in *)&addr) &&
      uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr))
    return oa_error_set(err, OA_EINVAL, "'%s' is not an IPv4 or IPv6 address", host);
  int rc = uv_tcp_init(s->loop, &s->listener);
  if (rc) return oa_error_set(err, OA_EIO, "listen: %s", uv_strerror(rc));
  s->listener.data = s;
  s->listener_open = 1;
  rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&addr, 0);
  if (!rc) rc = uv_listen((uv_stream_t *)&s->listener, 511, on_connection);
  if (rc) {
    /* The handle closes on the loop's next turn; oa_http_server_stop
     * reports when. */
    uv_close((uv_handle_t *)&s->listener, on_listener_closed);
    return oa_error_set(err, OA_EIO, "cannot listen on %s:%d: %s", host, port,
                        uv_strerror(rc));
  }
  struct sockaddr_storage bound;
  int len = sizeof bound;
  s->port = port;
  if (!uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &len))
    s->port = bound.ss_family == AF_INET6
                  ? ntohs(((struct sockaddr_in6 *)&bound)->sin6_port)
                  : ntohs(((struct sockaddr_in *)&bound)->sin_port);
  s->listening = 1;
  return 0;
}

int oa_http_server_port(const oa_http_server *s) {
  return s->port;
}

oa_http_stats oa_http_server_stats(const oa_http_server *s) {
  return s->stats;
}

void oa_http_server_stop(oa_http_server *s, void (*done)(oa_http_server *s, void *ud),
                         void *ud) {
  if (s->stopping) return;
  s->stopping = 1;
  s->done = done;
  s->done_ud = ud;
  if (s->listener_open && !uv_is_closing((uv_handle_t *)&s->listener))
    uv_close((uv_handle_t *)&s->listener, on_listener_closed);
  for (conn *c = s->conns; c; c = c->next) {
    if (c->closing || c->lingering || c->finishing) continue;
    if (c->in_message) continue; /* answered with Connection: close when complete */
    if (c->deferred) {           /* answered with Connection: close when finished */
      c->finishing = 1;
      continue;
    }
    if (!c->writing && c->out.len == 0) {
      conn_close(c); /* idle keep-alive connection */
    } else {
      c->finishing = 1; /* send what is queued, then close */
      stop_reading(c);
    }
  }
  maybe_done(s);
}

void oa_http_server_free(oa_http_server *s) {
  free(s);
}
