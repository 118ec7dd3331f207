/* A game server that embeds onearm: its own libuv loop, a game tick that
 * decides which shop offer each visiting player sees, and purchases fed
 * back as rewards, all in process through onearm.h (no HTTP, no JSON).
 * With --listen it also exposes onearm's HTTP API on the same loop.
 *
 * The players are simulated: each has a level, a spend tier and a region,
 * and a hidden taste for offer kinds. The program prints the purchase rate
 * over the first and last quarter of the run and exits non-zero if the
 * engine did not learn to do better than showing offers at random.
 *
 * usage: game-server [--ticks N] [--data DIR] [--listen HOST:PORT] [--app PATH] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "onearm.h"

#define OFFERS 4
static const char *offer_ids[OFFERS] = {"coins", "skins", "xp_boost", "starter"};
static const char *offer_kinds[OFFERS] = {"currency", "cosmetic", "booster", "bundle"};
static const double offer_price[OFFERS] = {4.99, 9.99, 2.99, 0.99};
static const char *tiers[3] = {"free", "minnow", "whale"};
static const char *regions[3] = {"eu", "na", "asia"};

/* Hidden purchase probability of offer o for a player of tier t, region r. */
static double buy_probability(int t, int r, int o) {
  static const double by_tier[3][OFFERS] = {
      {0.02, 0.01, 0.05, 0.30}, {0.10, 0.05, 0.25, 0.08}, {0.20, 0.45, 0.10, 0.02}};
  double p = by_tier[t][o];
  if (r == 2 && o == 1) p *= 1.5; /* cosmetics sell better in asia */
  return p > 1 ? 1 : p;
}

typedef struct game {
  uv_loop_t loop;
  uv_timer_t tick;
  oa_service *service;
  long ticks, done;
  unsigned long long rng;
  double bought_first, bought_last, random_expected;
  int failed;
} game;

static double uniform(game *g) {
  g->rng = g->rng * 6364136223846793005ULL + 1442695040888963407ULL;
  return (double)(g->rng >> 11) * 0x1.0p-53;
}

static void on_stopped(oa_service *s, void *ud) {
  (void)s, (void)ud;
}

static void on_tick(uv_timer_t *t) {
  game *g = t->data;
  for (int k = 0; k < 50 && g->done < g->ticks; k++, g->done++) {
    int tier = (int)(uniform(g) * 3), region = (int)(uniform(g) * 3);
    double level = 1 + floor(uniform(g) * 60);
    oa_field ctx[4] = {
        {"level", {.type = OA_VAL_NUM, .num = level}},
        {"spend_tier",
         {.type = OA_VAL_STR, .str = tiers[tier], .len = strlen(tiers[tier])}},
        {"region",
         {.type = OA_VAL_STR, .str = regions[region], .len = strlen(regions[region])}},
        {"hour", {.type = OA_VAL_NUM, .num = (double)(g->done % 24)}},
    };
    oa_candidate cands[OFFERS];
    for (int o = 0; o < OFFERS; o++)
      cands[o] = (oa_candidate){offer_ids[o], NULL, 0};
    oa_result r;
    oa_error err;
    if (oa_service_decide(g->service, "shop", NULL, ctx, 4, cands, OFFERS, &r, &err)) {
      fprintf(stderr, "game-server: decide: %s\n", err.message);
      g->failed = 1;
      g->done = g->ticks;
      break;
    }
    double bought = uniform(g) < buy_probability(tier, region, r.chosen) ? 1 : 0;
    if (oa_service_reward(g->service, r.event_id, bought, &err)) {
      fprintf(stderr, "game-server: reward: %s\n", err.message);
      g->failed = 1;
    }
    double avg = 0;
    for (int o = 0; o < OFFERS; o++)
      avg += buy_probability(tier, region, o) / OFFERS;
    g->random_expected += avg;
    if (g->done < g->ticks / 4) g->bought_first += bought;
    if (g->done >= g->ticks - g->ticks / 4) g->bought_last += bought;
  }
  if (g->done >= g->ticks) {
    uv_timer_stop(&g->tick);
    uv_close((uv_handle_t *)&g->tick, NULL);
    oa_service_stop(g->service, on_stopped, g);
  }
}

int main(int argc, char **argv) {
  game g;
  memset(&g, 0, sizeof g);
  g.ticks = 20000;
  g.rng = 42;
  oa_service_config cfg;
  oa_service_config_defaults(&cfg);
  cfg.app_path = ONEARM_GAME_APP;
  cfg.data_dir = "./var/game-server";
  cfg.snapshot_interval = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--ticks"))
      g.ticks = atol(argv[i + 1]);
    else if (!strcmp(argv[i], "--data"))
      cfg.data_dir = argv[i + 1];
    else if (!strcmp(argv[i], "--listen"))
      cfg.listen = argv[i + 1];
    else if (!strcmp(argv[i], "--app"))
      cfg.app_path = argv[i + 1];
    else {
      fprintf(stderr,
              "usage: game-server [--ticks N] [--data DIR] [--listen HOST:PORT]\n");
      return 2;
    }
  }
  oa_error err = {0};
  g.service = oa_service_new(&cfg, &err);
  if (!g.service) {
    fprintf(stderr, "game-server: %s\n", err.message);
    return 1;
  }
  for (int o = 0; o < OFFERS; o++) {
    oa_field f[2] = {
        {"kind",
         {.type = OA_VAL_STR, .str = offer_kinds[o], .len = strlen(offer_kinds[o])}},
        {"price", {.type = OA_VAL_NUM, .num = offer_price[o]}}};
    if (oa_service_upsert_action(g.service, offer_ids[o], f, 2, &err)) {
      fprintf(stderr, "game-server: %s\n", err.message);
      return 1;
    }
  }
  uv_loop_init(&g.loop);
  if (oa_service_start(g.service, &g.loop, &err)) {
    fprintf(stderr, "game-server: %s\n", err.message);
    return 1;
  }
  if (cfg.listen)
    fprintf(stderr, "game-server: onearm API on port %d\n", oa_service_port(g.service));
  uv_timer_init(&g.loop, &g.tick);
  g.tick.data = &g;
  uv_timer_start(&g.tick, on_tick, 1, 1);
  uv_run(&g.loop, UV_RUN_DEFAULT);
  uv_loop_close(&g.loop);
  oa_service_free(g.service);

  double quarter = (double)(g.ticks / 4);
  double first = g.bought_first / quarter, last = g.bought_last / quarter;
  double random = g.random_expected / (double)g.ticks;
  printf("purchase rate: first quarter %.3f, last quarter %.3f, random offers %.3f\n",
         first, last, random);
  if (g.failed) return 1;
  if (last < random * 1.3) {
    fprintf(stderr, "game-server: the engine did not learn (%.3f vs random %.3f)\n", last,
            random);
    return 1;
  }
  return 0;
}
