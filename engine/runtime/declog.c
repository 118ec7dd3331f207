/* The decision log (see declog.h for the line format). */
#include "runtime/declog.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/buf.h"
#include "core/error.h"

struct oa_declog {
  char dir[3072];
  char path[4096];
  FILE *f;
  size_t bytes, rotate_bytes;
  oa_buf line; /* reused for every line */
};

static int open_file(oa_declog *log, oa_error *err) {
  log->f = fopen(log->path, "ab");
  if (!log->f)
    return oa_error_set(err, OA_EIO, "cannot open decision log '%s': %s", log->path,
                        strerror(errno));
  struct stat st;
  log->bytes = fstat(fileno(log->f), &st) == 0 ? (size_t)st.st_size : 0;
  return 0;
}

oa_declog *oa_declog_open(const char *dir, size_t rotate_bytes, oa_error *err) {
  if (strlen(dir) >= sizeof((oa_declog *)0)->dir) {
    oa_error_set(err, OA_EINVAL, "data directory path too long");
    return NULL;
  }
  if (mkdir(dir, 0755) && errno != EEXIST) {
    oa_error_set(err, OA_EIO, "cannot create '%s': %s", dir, strerror(errno));
    return NULL;
  }
  oa_declog *log = calloc(1, sizeof *log);
  if (!log) {
    oa_error_set(err, OA_ENOMEM, "out of memory");
    return NULL;
  }
  snprintf(log->dir, sizeof log->dir, "%s", dir);
  snprintf(log->path, sizeof log->path, "%s/decisions.jsonl", dir);
  log->rotate_bytes = rotate_bytes ? rotate_bytes : (size_t)64 << 20;
  oa_buf_init(&log->line);
  if (open_file(log, err)) {
    free(log);
    return NULL;
  }
  return log;
}

const char *oa_declog_path(const oa_declog *log) {
  return log->path;
}

static void put_text(oa_buf *b, const char *s) {
  oa_buf_put(b, s, strlen(s));
}

/* A JSON string literal; control characters are escaped, other bytes pass
 * through (ids and names are UTF-8 by contract). */
static void put_json_string(oa_buf *b, const char *s) {
  oa_buf_put(b, "\"", 1);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      char esc[2] = {'\\', (char)c};
      oa_buf_put(b, esc, 2);
    } else if (c < 0x20) {
      char esc[8];
      snprintf(esc, sizeof esc, "\\u%04x", c);
      put_text(b, esc);
    } else {
      oa_buf_put(b, s, 1);
    }
  }
  oa_buf_put(b, "\"", 1);
}

/* Integers (indexes, counts, 0/1 rewards) skip printf: half the numbers of
 * a line. Other values keep 17 significant digits (round-trip exact). */
static void put_number(oa_buf *b, double v) {
  char num[32];
  if (v == 0) v = 0; /* no "-0" */
  if (v == floor(v) && fabs(v) < 1e15) {
    long long i = (long long)v;
    char *end = num + sizeof num, *p = end;
    unsigned long long u = i < 0 ? 0ULL - (unsigned long long)i : (unsigned long long)i;
    do {
      *--p = (char)('0' + u % 10);
      u /= 10;
    } while (u);
    if (i < 0) *--p = '-';
    oa_buf_put(b, p, (size_t)(end - p));
    return;
  }
  snprintf(num, sizeof num, "%.17g", v);
  put_text(b, num);
}

static void put_timestamp(oa_buf *b, double unix_seconds) {
  time_t secs = (time_t)unix_seconds;
  int ms = (int)((unix_seconds - (double)secs) * 1000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  char ts[48];
  snprintf(ts, sizeof ts, "\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\"", tm.tm_year + 1900,
           tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
  put_text(b, ts);
}

/* `c`: the attached context JSON object (which should carry `_multi`), or
 * one built from the candidate ids. */
static void put_context(oa_buf *b, const oa_closed_event *ev) {
  if (ev->context_json && ev->context_json[0] == '{') {
    put_text(b, ev->context_json);
    return;
  }
  put_text(b, "{\"_multi\":[");
  for (int32_t i = 0; i < ev->n; i++) {
    if (i) oa_buf_put(b, ",", 1);
    put_text(b, "{\"id\":");
    put_json_string(b, ev->ids[i]);
    oa_buf_put(b, "}", 1);
  }
  put_text(b, "]}");
}

static void format_line(oa_buf *b, const oa_closed_event *ev, const char *app_version,
                        double wall_now) {
  double p_chosen = ev->n > 0 ? ev->probs[ev->chosen] : 1;
  put_text(b, "{\"_label_cost\":");
  put_number(b, -ev->reward);
  put_text(b, ",\"_label_probability\":");
  put_number(b, p_chosen);
  put_text(b, ",\"_label_Action\":");
  put_number(b, ev->chosen + 1);
  put_text(b, ",\"_labelIndex\":");
  put_number(b, ev->chosen);
  put_text(b, ",\"Timestamp\":");
  put_timestamp(b, wall_now - (ev->closed - ev->opened));
  put_text(b, ",\"Version\":\"1\",\"EventId\":");
  put_json_string(b, ev->event_id);
  put_text(b, ",\"a\":[");
  put_number(b, ev->chosen + 1);
  for (int32_t i = 0; i < ev->n; i++)
    if (i != ev->chosen) {
      oa_buf_put(b, ",", 1);
      put_number(b, i + 1);
    }
  put_text(b, "],\"c\":");
  put_context(b, ev);
  put_text(b, ",\"p\":[");
  put_number(b, p_chosen);
  for (int32_t i = 0; i < ev->n; i++)
    if (i != ev->chosen) {
      oa_buf_put(b, ",", 1);
      put_number(b, ev->probs[i]);
    }
  put_text(b, "],\"policy\":");
  put_json_string(b, ev->policy);
  put_text(b, ",\"appVersion\":");
  put_json_string(b, app_version ? app_version : "");
  if (ev->signals_json) {
    put_text(b, ",\"signals\":");
    put_text(b, ev->signals_json);
  }
  put_text(b, ",\"rewards\":");
  put_number(b, ev->rewards);
  put_text(b, ev->defaulted ? ",\"defaulted\":true" : ",\"defaulted\":false");
  put_text(b, ev->activated ? ",\"activated\":true" : ",\"activated\":false");
  put_text(b, ev->learned ? ",\"learned\":true}\n" : ",\"learned\":false}\n");
}

static int rotate(oa_declog *log, double wall_now, oa_error *err) {
  if (fclose(log->f))
    return oa_error_set(err, OA_EIO, "cannot close '%s': %s", log->path, strerror(errno));
  log->f = NULL;
  char rotated[4096 + 32];
  snprintf(rotated, sizeof rotated, "%s/decisions-%lld.jsonl", log->dir,
           (long long)(wall_now * 1000));
  if (rename(log->path, rotated))
    return oa_error_set(err, OA_EIO, "cannot rotate '%s': %s", log->path,
                        strerror(errno));
  return open_file(log, err);
}

int oa_declog_write(oa_declog *log, const oa_closed_event *ev, const char *app_version,
                    double wall_now, oa_error *err) {
  if (!log->f) {
    int rc = open_file(log, err);
    if (rc) return rc;
  }
  log->line.len = 0;
  format_line(&log->line, ev, app_version, wall_now);
  if (log->line.failed) {
    log->line.failed = 0;
    return oa_error_set(err, OA_ENOMEM, "out of memory for a decision log line");
  }
  if (fwrite(log->line.data, 1, log->line.len, log->f) != log->line.len)
    return oa_error_set(err, OA_EIO, "cannot write '%s': %s", log->path, strerror(errno));
  log->bytes += log->line.len;
  if (log->bytes >= log->rotate_bytes) return rotate(log, wall_now, err);
  return 0;
}

int oa_declog_flush(oa_declog *log, oa_error *err) {
  if (log->f && fflush(log->f))
    return oa_error_set(err, OA_EIO, "cannot write '%s': %s", log->path, strerror(errno));
  return 0;
}

void oa_declog_close(oa_declog *log) {
  if (!log) return;
  if (log->f) fclose(log->f);
  oa_buf_free(&log->line);
  free(log);
}
