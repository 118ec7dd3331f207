/* Tests of the HTTP layer (engine/server/http.c) over real loopback sockets:
 * the server runs on a libuv loop in the main thread, a client thread talks
 * raw HTTP to it with blocking sockets, so every byte on the wire is the
 * test's choice (pipelining, split headers, oversized requests). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <uv.h>

#include "check.h"
#include "server/http.h"
#include "server/json.h"

static int port;
static uv_async_t stop_async;
static uv_sem_t stopped_sem; /* posted once oa_http_server_stop has been called */
static oa_http_server *server;
static atomic_int handled;
static int done_called;

/* Requests to "/later" are deferred until the client thread posts
 * release_async; then they are answered like any other. */
static uv_async_t release_async;
static oa_http_deferred *held[8];
static int n_held;

static void echo(const oa_http_request *req, oa_http_response *res) {
  oa_buf *b = res->body;
  oa_json_put_raw(b, req->method_name);
  oa_json_put_raw(b, " ");
  oa_buf_put(b, req->path, req->path_len);
  oa_json_put_raw(b, "?");
  oa_buf_put(b, req->query, req->query_len);
  oa_json_put_raw(b, " ct=");
  oa_buf_put(b, req->content_type, req->content_type_len);
  oa_json_put_raw(b, " tok=");
  oa_buf_put(b, req->admin_token, req->admin_token_len);
  oa_json_put_raw(b, " body=");
  oa_buf_put(b, req->body, req->body_len);
  res->content_type = "text/plain";
  if (req->path_len == 6 && !memcmp(req->path, "/close", 6)) res->close = 1;
  if (req->path_len == 4 && !memcmp(req->path, "/418", 4)) res->status = 418;
}

/* Echoes method, path, query and body; "/close" asks to close. */
static void handler(void *ud, const oa_http_request *req, oa_http_response *res) {
  atomic_fetch_add(&handled, 1);
  if (req->path_len == 6 && !memcmp(req->path, "/later", 6) && n_held < 8) {
    held[n_held++] = oa_http_defer(res);
    oa_buf_put(res->body, "ignored", 7);
    return;
  }
  echo(req, res);
}

static void on_release(uv_async_t *a) {
  for (int i = 0; i < n_held; i++) {
    oa_http_response *res = oa_http_deferred_response(held[i]);
    CHECK(res->body->len == 0 && res->status == 200);
    echo(oa_http_deferred_request(held[i]), res);
    oa_buf_put(res->body, " (later)", 8);
    oa_http_deferred_finish(held[i]);
  }
  n_held = 0;
}

static void on_done(oa_http_server *s, void *ud) {
  done_called++;
  uv_close((uv_handle_t *)&release_async, NULL);
}

static void on_stop(uv_async_t *a) {
  oa_http_server_stop(server, on_done, NULL);
  uv_close((uv_handle_t *)a, NULL);
  uv_sem_post(&stopped_sem);
}

/* ---- a blocking client ---- */

static int client_connect(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (connect(fd, (struct sockaddr *)&a, sizeof a)) {
    close(fd);
    return -1;
  }
  struct timeval tv = {5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

static void send_all(int fd, const char *s, size_t n) {
  while (n) {
    ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
    if (w <= 0) return;
    s += w;
    n -= (size_t)w;
  }
}

static void send_str(int fd, const char *s) {
  send_all(fd, s, strlen(s));
}

/* Reads one response (headers + Content-Length body) into out; returns
 * the status, 0 on EOF before a response, -1 on a timeout or error. */
static char pending[1 << 16];
static size_t npending;

static int read_response(int fd, char *out, size_t cap) {
  for (;;) {
    pending[npending] = 0;
    char *end = strstr(pending, "\r\n\r\n");
    if (end) {
      size_t hlen = (size_t)(end - pending) + 4;
      const char *cl = strstr(pending, "Content-Length: ");
      size_t blen = cl && cl < end ? (size_t)atol(cl + 16) : 0;
      if (npending >= hlen + blen) {
        size_t total = hlen + blen, n = total < cap - 1 ? total : cap - 1;
        memcpy(out, pending, n);
        out[n] = 0;
        memmove(pending, pending + total, npending - total);
        npending -= total;
        return atoi(out + 9);
      }
    }
    ssize_t r = recv(fd, pending + npending, sizeof pending - 1 - npending, 0);
    if (r == 0) return 0;
    if (r < 0) return -1;
    npending += (size_t)r;
  }
}

static void client_close(int fd) {
  close(fd);
  npending = 0;
}

/* 1 when the server closed the connection (EOF) within the timeout. */
static int closed_by_server(int fd) {
  char tmp[256];
  for (;;) {
    ssize_t r = recv(fd, tmp, sizeof tmp, 0);
    if (r == 0) return 1;
    if (r < 0) return 0;
  }
}

static char resp[1 << 16];

static void test_simple_and_keepalive(void) {
  int fd = client_connect();
  CHECK(fd >= 0);
  send_str(fd, "GET /healthz?x=1 HTTP/1.1\r\nHost: a\r\nX-Admin-Token: s3\r\n\r\n");
  CHECK(read_response(fd, resp, sizeof resp) == 200);
  CHECK(strstr(resp, "GET /healthz?x=1 ct= tok=s3 body=") != NULL);
  CHECK(strstr(resp, "Content-Type: text/plain") != NULL);
  CHECK(strstr(resp, "Connection: close") == NULL);
  /* same connection, a POST with a body split across writes */
  send_str(fd, "POST /v1/rank HTTP/1.1\r\nContent-Type: application/json\r\nContent-Le");
  usleep(20000);
  send_str(fd, "ngth: 7\r\n\r\n{\"a\":");
  usleep(20000);
  send_str(fd, "1}");
  CHECK(read_response(fd, resp, sizeof resp) == 200);
  CHECK(strstr(resp, "POST /v1/rank? ct=application/json tok= body={\"a\":1}") != NULL);
  client_close(fd);
}

static void test_pipelining_in_order(void) {
  int fd = client_connect();
  send_str(fd,
           "GET /1 HTTP/1.1\r\n\r\nGET /418 HTTP/1.1\r\n\r\n"
           "POST /3 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
           "GET /4 HTTP/1.1\r\n\r\n");
  CHECK(read_response(fd, resp, sizeof resp) == 200);
  CHECK(strstr(resp, "GET /1?") != NULL);
  CHECK(read_response(fd, resp, sizeof resp) == 418);
  CHECK(read_response(fd, resp, sizeof resp) == 200);
  CHECK(strstr(resp, "POST /3? ct= tok= body=abc") != NULL);
  CHECK(read_response(fd, resp, sizeof resp) == 200);
  CHECK(strstr(resp, "GET /4?") != NULL);
  client_close(fd);
}

static void test_close_requested(void) {
  int fd = client_connect();
  send_str(fd, "GET /close HTTP/1.1\r\n\r\nGET /ignored HTTP/1.1\r\n\r\n");
  CHECK(read_response(fd, resp, sizeof resp) == 200);
  CHECK(strstr(resp, "Connection: close") != NULL);
  CHECK(read_response(fd, resp, sizeof resp) == 0);
  client_close(fd);
  /* HTTP/1.0 without keep-alive closes too */
  fd = client_connect();
  send_str(fd, "GET /old HTTP/1.0\r\n\r\n");
  CHECK(read_response(fd, resp, sizeof resp) == 200);
  CHECK(closed_by_server(fd));
  client_close(fd);
}

static void test_limits(void) {
  /* body over the limit (1000 bytes in this test), declared up front */
  int fd = client_connect();
  send_str(fd, "POST /big HTTP/1.1\r\nContent-Length: 5000\r\n\r\n");
  CHECK(read_response(fd, resp, sizeof resp) == 413);
  CHECK(strstr(resp, "\"code\":\"PayloadTooLarge\"") != NULL);
  CHECK(strstr(resp, "Connection: close") != NULL);
  CHECK(closed_by_server(fd));
  client_close(fd);
  /* chunked body over the limit */
  fd = client_connect();
  send_str(fd, "POST /big HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
  char chunk[700];
  memset(chunk, 'x', sizeof chunk);
  for (int i = 0; i < 2; i++) {
    send_str(fd, "2bc\r\n");
    send_all(fd, chunk, sizeof chunk);
    send_str(fd, "\r\n");
  }
  CHECK(read_response(fd, resp, sizeof resp) == 413);
  client_close(fd);
  /* headers over the limit (2000 bytes in this test) */
  fd = client_connect();
  send_str(fd, "GET / HTTP/1.1\r\nX-Junk: ");
  char junk[3000];
  memset(junk, 'j', sizeof junk);
  send_all(fd, junk, sizeof junk);
  send_str(fd, "\r\n\r\n");
  CHECK(read_response(fd, resp, sizeof resp) == 431);
  CHECK(strstr(resp, "{\"error\":{\"code\":\"HeadersTooLarge\"") != NULL);
  client_close(fd);
  /* garbage */
  fd = client_connect();
  send_str(fd, "HELLO\r\n\r\n");
  CHECK(read_response(fd, resp, sizeof resp) == 400);
  CHECK(strstr(resp, "BadRequest") != NULL);
  client_close(fd);
}

static void test_expect_continue(void) {
  int fd = client_connect();
  send_str(fd, "POST /e HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n");
  CHECK(read_response(fd, resp, sizeof resp) == 100);
  send_str(fd, "hi");
  CHECK(read_response(fd, resp, sizeof resp) == 200);
  CHECK(strstr(resp, "body=hi") != NULL);
  client_close(fd);
}

static void test_connection_limit(void) {
  /* the limit is 3 in this test; earlier connections must be gone first */
  usleep(100000);
  int fds[3];
  for (int i = 0; i < 3; i++) {
    fds[i] = client_connect();
    send_str(fds[i], "GET /x HTTP/1.1\r\n\r\n");
    CHECK(read_response(fds[i], resp, sizeof resp) == 200);
    npending = 0;
  }
  int extra = client_connect();
  CHECK(read_response(extra, resp, sizeof resp) == 503);
  CHECK(strstr(resp, "Unavailable") != NULL);
  client_close(extra);
  for (int i = 0; i < 3; i++)
    client_close(fds[i]);
  usleep(50000); /* let the server see the closes */
}

static void test_idle_timeout(void) {
  /* idle timeout is 300 ms in this test */
  int fd = client_connect();
  send_str(fd, "GET /x HTTP/1.1\r\n\r\n");
  CHECK(read_response(fd, resp, sizeof resp) == 200);
  CHECK(closed_by_server(fd));
  client_close(fd);
}

/* Stop while a request is half sent: it completes, gets an answer with
 * Connection: close; an idle keep-alive connection is closed at once. */
/* A deferred request holds its connection's later requests (pipelined
 * behind it) but not the loop: another connection is answered meanwhile;
 * then the responses leave in request order. */
static void test_deferred_in_order(void) {
  int fd = client_connect(), other = client_connect();
  send_str(fd,
           "POST /later HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
           "GET /2 HTTP/1.1\r\n\r\nGET /later?x HTTP/1.1\r\n\r\nGET /4 HTTP/1.1\r\n\r\n");
  usleep(50000);
  send_str(other, "GET /meanwhile HTTP/1.1\r\n\r\n");
  CHECK(read_response(other, resp, sizeof resp) == 200);
  CHECK(strstr(resp, "GET /meanwhile?") != NULL);
  uv_async_send(&release_async); /* answers the first /later */
  CHECK(read_response(fd, resp, sizeof resp) == 200);
  CHECK(strstr(resp, "POST /later? ct= tok= body=abc (later)") != NULL);
  CHECK(strstr(resp, "ignored") == NULL);
  CHECK(read_response(fd, resp, sizeof resp) == 200);
  CHECK(strstr(resp, "GET /2?") != NULL);
  usleep(50000);
  uv_async_send(&release_async); /* the second one */
  CHECK(read_response(fd, resp, sizeof resp) == 200);
  CHECK(strstr(resp, "GET /later?x ct=") != NULL);
  CHECK(read_response(fd, resp, sizeof resp) == 200);
  CHECK(strstr(resp, "GET /4?") != NULL);
  client_close(fd);
  client_close(other);
}

/* The peer goes away while its request is deferred: finishing it later
 * is harmless and the server goes on. */
static void test_deferred_peer_gone(void) {
  int fd = client_connect();
  send_str(fd, "GET /later HTTP/1.1\r\n\r\n");
  usleep(50000);
  close(fd);
  usleep(50000);
  uv_async_send(&release_async);
  usleep(50000);
  fd = client_connect();
  send_str(fd, "GET /after HTTP/1.1\r\n\r\n");
  CHECK(read_response(fd, resp, sizeof resp) == 200);
  client_close(fd);
}

static void test_graceful_stop(void) {
  int idle = client_connect();
  send_str(idle, "GET /x HTTP/1.1\r\n\r\n");
  CHECK(read_response(idle, resp, sizeof resp) == 200);
  npending = 0;
  int fd = client_connect();
  send_str(fd, "POST /late HTTP/1.1\r\nContent-Length: 4\r\n\r\nab");
  int held_fd = client_connect();
  send_str(held_fd, "GET /later HTTP/1.1\r\n\r\n");
  usleep(50000);
  uv_async_send(&stop_async);
  uv_sem_wait(&stopped_sem);
  CHECK(closed_by_server(idle));
  close(idle);
  /* the deferred request is still answered, then its connection closes */
  uv_async_send(&release_async);
  CHECK(read_response(held_fd, resp, sizeof resp) == 200);
  CHECK(strstr(resp, "(later)") != NULL);
  CHECK(strstr(resp, "Connection: close") != NULL);
  CHECK(closed_by_server(held_fd));
  client_close(held_fd);
  send_str(fd, "cd");
  CHECK(read_response(fd, resp, sizeof resp) == 200);
  CHECK(strstr(resp, "body=abcd") != NULL);
  CHECK(strstr(resp, "Connection: close") != NULL);
  CHECK(closed_by_server(fd));
  client_close(fd);
  CHECK(client_connect() < 0); /* no longer listening */
}

static void client_thread(void *arg) {
  RUN(test_simple_and_keepalive);
  RUN(test_pipelining_in_order);
  RUN(test_close_requested);
  RUN(test_limits);
  RUN(test_expect_continue);
  RUN(test_connection_limit);
  RUN(test_idle_timeout);
  RUN(test_deferred_in_order);
  RUN(test_deferred_peer_gone);
  RUN(test_graceful_stop);
}

static void test_unescape(void) {
  char out[16];
  CHECK(oa_http_unescape("a%2Fb", 5, out, sizeof out) == 3 && !strcmp(out, "a/b"));
  CHECK(oa_http_unescape("a%2", 3, out, sizeof out) == -1);
  CHECK(oa_http_unescape("a%00", 4, out, sizeof out) == -1);
  CHECK(oa_http_unescape("%zz", 3, out, sizeof out) == -1);
  CHECK(oa_http_unescape("0123456789abcdefg", 17, out, sizeof out) == -1);
  oa_buf b;
  oa_buf_init(&b);
  oa_http_error_body(&b, "BadRequest", "a \"quoted\"\n\x01 thing");
  oa_buf_put(&b, "", 1);
  CHECK(!strcmp((char *)b.data, "{\"error\":{\"code\":\"BadRequest\",\"message\":"
                                "\"a \\\"quoted\\\"\\n\\u0001 thing\"}}"));
  b.len = 0;
  oa_json_put_num(&b, 0.0025);
  oa_json_put_raw(&b, " ");
  oa_json_put_num(&b, 0.1 + 0.2);
  oa_json_put_raw(&b, " ");
  oa_json_put_num(&b, -3);
  oa_buf_put(&b, "", 1);
  CHECK(!strcmp((char *)b.data, "0.0025 0.30000000000000004 -3"));
  oa_buf_free(&b);
}

int main(void) {
  RUN(test_unescape);
  uv_loop_t loop;
  uv_loop_init(&loop);
  oa_http_config cfg = {.max_header_bytes = 2000,
                        .max_body_bytes = 1000,
                        .max_connections = 3,
                        .idle_timeout_ms = 300};
  oa_error err;
  server = oa_http_server_new(&loop, &cfg, handler, NULL, &err);
  CHECK(server != NULL);
  CHECK_OK(oa_http_server_listen(server, "127.0.0.1", 0, &err));
  port = oa_http_server_port(server);
  CHECK(port > 0);
  uv_async_init(&loop, &stop_async, on_stop);
  uv_async_init(&loop, &release_async, on_release);
  uv_sem_init(&stopped_sem, 0);
  uv_thread_t t;
  uv_thread_create(&t, client_thread, NULL);
  CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
  uv_thread_join(&t);
  CHECK(done_called == 1);
  oa_http_stats st = oa_http_server_stats(server);
  CHECK(st.active == 0);
  CHECK(st.rejected == 1);
  CHECK(st.timeouts >= 1);
  oa_http_server_free(server);
  CHECK(uv_loop_close(&loop) == 0);
  uv_sem_destroy(&stopped_sem);
  return CHECK_DONE();
}
