/* A host program built against an installed onearm (pkg-config or CMake):
 * it loads an app, keeps its catalog (actions and a catalog file), decides
 * and rewards in process. */
#include <onearm.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  oa_service_config cfg;
  oa_service_config_defaults(&cfg);
  cfg.app_path = argv[1];
  cfg.data_dir = argv[2];
  oa_error err = {0};
  oa_service *s = oa_service_new(&cfg, &err);
  if (!s) {
    fprintf(stderr, "host: %s\n", err.message);
    return 1;
  }
  /* the catalog in process: an action in, used by id, then out */
  oa_field gift[1] = {{"kind", {.type = OA_VAL_STR, .str = "bundle", .len = 6}}};
  if (oa_service_upsert_action(s, "gift", gift, 1, &err)) {
    fprintf(stderr, "host: upsert: %s\n", err.message);
    return 1;
  }
  oa_candidate by_id[1] = {{"gift", NULL, 0}};
  oa_result g;
  if (oa_service_decide(s, NULL, NULL, NULL, 0, by_id, 1, &g, &err) ||
      oa_service_remove_action(s, "gift", &err)) {
    fprintf(stderr, "host: catalog: %s\n", err.message);
    return 1;
  }
  if (oa_service_remove_action(s, "gift", &err) != OA_ENOTFOUND ||
      oa_service_decide(s, NULL, NULL, NULL, 0, by_id, 1, &g, &err) == 0) {
    fprintf(stderr, "host: a removed action is still there\n");
    return 1;
  }
  /* a catalog file in process; a bad one changes nothing */
  char path[4096];
  snprintf(path, sizeof path, "%s/catalog.csv", argv[2]);
  FILE *f = fopen(path, "w");
  if (!f) return 1;
  fputs("id,kind\nbox,bundle\npack,bundle\n", f);
  fclose(f);
  oa_candidate box[1] = {{"box", NULL, 0}}, late[1] = {{"late", NULL, 0}};
  if (oa_service_load_catalog(s, path, &err) ||
      oa_service_decide(s, NULL, NULL, NULL, 0, box, 1, &g, &err)) {
    fprintf(stderr, "host: catalog file: %s\n", err.message);
    return 1;
  }
  f = fopen(path, "w");
  if (!f) return 1;
  fputs("id,kind\nlate,bundle\nbroken\n", f);
  fclose(f);
  if (oa_service_load_catalog(s, path, &err) != OA_EFORMAT ||
      !strstr(err.message, "line 3") ||
      oa_service_decide(s, NULL, NULL, NULL, 0, late, 1, &g, &err) == 0) {
    fprintf(stderr, "host: a bad catalog file was not refused whole\n");
    return 1;
  }
  if (oa_service_snapshot(s, &err)) {
    fprintf(stderr, "host: snapshot: %s\n", err.message);
    return 1;
  }
  oa_field ctx[1] = {{"spend_tier", {.type = OA_VAL_STR, .str = "whale", .len = 5}}};
  oa_field offer[1] = {{"kind", {.type = OA_VAL_STR, .str = "cosmetic", .len = 8}}};
  oa_candidate cands[2] = {{"skins", offer, 1}, {"coins", offer, 1}};
  oa_result r;
  int rc = oa_service_decide(s, NULL, NULL, ctx, 1, cands, 2, &r, &err) ||
           oa_service_reward(s, r.event_id, 1, &err);
  if (rc)
    fprintf(stderr, "host: %s\n", err.message);
  else
    printf("decided %s with probability %.3f\n", r.chosen_id, r.probs[r.chosen]);
  oa_service_free(s);
  return rc ? 1 : 0;
}
