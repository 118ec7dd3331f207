/* `onearm catalog load|info`: bulk-load action vectors from CSV into the
 * binary vector file (.oav, documented in catalog/vectors.c) that the
 * server maps at start-up, and describe such a file. The work is in
 * catalog/vectors.c; this file reads arguments and draws the progress bar
 * (stderr, only when it is a terminal, so logs and pipes stay clean). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "catalog/vectors.h"
#include "cli/cli.h"
#include "core/error.h"
#include "core/progress.h"

static void catalog_usage(FILE *out) {
  fprintf(out,
          "usage: onearm catalog load FILE.csv --dim D [--format f32|f16|i8]\n"
          "                           [--meta name:cat,age:num,...] --out FILE.oav\n"
          "       onearm catalog info FILE.oav\n"
          "\n"
          "load: FILE.csv has a header line 'id,v0,...,v{D-1}' then optional metadata\n"
          "  columns; those named in --meta are kept (cat: a string such as a topic or\n"
          "  language, num: a number such as an age), others are ignored. Plain CSV, no\n"
          "  quoting: ids must not contain commas. A later line with the same id\n"
          "  replaces the earlier one. Formats: f32 (4 bytes a value), f16 (2), i8 (1,\n"
          "  plus a scale per row). The output is written only when every line loads.\n"
          "info: prints the header of a vector file.\n");
}

/* The vector store reports rows and bytes; the bar takes a fraction. */
static void draw_progress(void *ud, int64_t rows, int64_t done, int64_t total) {
  oa_progress_draw(ud, total > 0 ? (double)done / (double)total : 1, rows);
}

/* "name:cat,age:num" into cfg->meta. */
static int parse_meta(const char *spec, oa_vecstore_config *cfg) {
  char *copy = strdup(spec), *save = NULL;
  if (!copy) return -1;
  for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    char *colon = strchr(tok, ':');
    if (!colon || colon == tok || cfg->n_meta == OA_VEC_MAX_META ||
        (size_t)(colon - tok) >= sizeof cfg->meta[0].name) {
      fprintf(stderr,
              "onearm catalog: bad --meta entry '%s' (want name:cat or name:num, at most "
              "%d)\n",
              tok, OA_VEC_MAX_META);
      free(copy);
      return -1;
    }
    *colon = 0;
    oa_meta_spec *m = &cfg->meta[cfg->n_meta++];
    snprintf(m->name, sizeof m->name, "%s", tok);
    if (!strcmp(colon + 1, "cat"))
      m->kind = OA_META_CAT;
    else if (!strcmp(colon + 1, "num"))
      m->kind = OA_META_NUM;
    else {
      fprintf(stderr, "onearm catalog: --meta %s: kind must be cat or num, got '%s'\n",
              tok, colon + 1);
      free(copy);
      return -1;
    }
  }
  free(copy);
  return 0;
}

static int catalog_load(int argc, char **argv) {
  const char *in = NULL, *out = NULL, *meta = NULL;
  oa_vecstore_config cfg = {.dim = 0, .format = OA_VEC_F32};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--dim") || !strcmp(a, "--format") || !strcmp(a, "--meta") ||
        !strcmp(a, "--out")) {
      if (!val) {
        fprintf(stderr, "onearm catalog load: %s needs a value\n", a);
        return 2;
      }
      i++;
      if (!strcmp(a, "--dim")) {
        char *end;
        errno = 0;
        long d = strtol(val, &end, 10);
        if (*end || end == val || errno || d <= 0 || d > (1 << 20)) {
          fprintf(stderr,
                  "onearm catalog load: --dim needs a positive integer, got '%s'\n", val);
          return 2;
        }
        cfg.dim = (int32_t)d;
      } else if (!strcmp(a, "--format")) {
        if (oa_vec_format_parse(val, &cfg.format)) {
          fprintf(stderr, "onearm catalog load: --format is f32, f16 or i8, got '%s'\n",
                  val);
          return 2;
        }
      } else if (!strcmp(a, "--meta")) {
        meta = val;
      } else {
        out = val;
      }
    } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      catalog_usage(stdout);
      return 0;
    } else if (a[0] == '-' || in) {
      fprintf(stderr, "onearm catalog load: unexpected argument '%s'\n", a);
      return 2;
    } else {
      in = a;
    }
  }
  if (!in || !out || !cfg.dim) {
    fprintf(stderr, "onearm catalog load: needs FILE.csv, --dim and --out\n");
    catalog_usage(stderr);
    return 2;
  }
  if (meta && parse_meta(meta, &cfg)) return 2;
  oa_error err = {0};
  oa_vecstore *vs = oa_vecstore_new(&cfg, &err);
  if (!vs) {
    fprintf(stderr, "onearm catalog load: %s\n", err.message);
    return 2;
  }
  oa_progress bar;
  oa_progress_begin(&bar);
  int rc = oa_vecstore_load_csv(vs, in, draw_progress, &bar, &err);
  double load_s = oa_progress_end(&bar);
  if (rc) {
    fprintf(stderr, "onearm catalog load: %s (nothing written)\n", err.message);
    oa_vecstore_free(vs);
    return 1;
  }
  oa_progress_begin(&bar); /* times the write */
  if (oa_vecstore_save_file(vs, out, &err)) {
    fprintf(stderr, "onearm catalog load: %s\n", err.message);
    oa_vecstore_free(vs);
    return 1;
  }
  printf("%s: %lld actions, dim %d, %s, %.1f MB in memory; loaded in %.2f s, written in "
         "%.2f s\n",
         out, (long long)oa_vecstore_count(vs), cfg.dim, oa_vec_format_name(cfg.format),
         oa_vecstore_size_bytes(vs) / 1e6, load_s, oa_progress_end(&bar));
  oa_vecstore_free(vs);
  return 0;
}

static int catalog_info(int argc, char **argv) {
  if (argc != 2) {
    catalog_usage(stderr);
    return 2;
  }
  oa_vecfile_info info;
  oa_error err = {0};
  if (oa_vecstore_file_info(argv[1], &info, &err)) {
    fprintf(stderr, "onearm catalog info: %s\n", err.message);
    return 1;
  }
  printf("file        %s\n", argv[1]);
  printf("version     %u\n", info.version);
  printf("dim         %d\n", info.config.dim);
  printf("format      %s (%zu bytes a row)\n", oa_vec_format_name(info.config.format),
         oa_vec_row_stride(info.config.dim, info.config.format));
  printf("actions     %lld (%lld rows, %lld holes)\n", (long long)info.live,
         (long long)info.rows, (long long)(info.rows - info.live));
  printf("generation  %llu\n", (unsigned long long)info.generation);
  printf("metadata   ");
  if (!info.config.n_meta) printf(" none");
  for (int f = 0; f < info.config.n_meta; f++)
    printf(" %s:%s", info.config.meta[f].name,
           info.config.meta[f].kind == OA_META_CAT ? "cat" : "num");
  printf("\n");
  printf("sections    ids %.1f MB, metadata %.1f MB, matrix %.1f MB at offset %llu%s\n",
         info.ids_bytes / 1e6, info.meta_bytes / 1e6, info.matrix_bytes / 1e6,
         (unsigned long long)info.matrix_offset,
         info.matrix_offset % 4096 ? " (read on load)" : " (mapped on load)");
  printf("file size   %.1f MB\n", info.file_bytes / 1e6);
  return 0;
}

int cli_catalog(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
    catalog_usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (!strcmp(argv[1], "load")) return catalog_load(argc - 1, argv + 1);
  if (!strcmp(argv[1], "info")) return catalog_info(argc - 1, argv + 1);
  fprintf(stderr, "onearm catalog: unknown subcommand '%s'\n", argv[1]);
  catalog_usage(stderr);
  return 2;
}
