/* The `onearm` command: dispatches to one subcommand per file in cli/. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static const struct {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *help;
} commands[] = {
    {"version", cli_version, "print the version"},
    {"simulate", cli_simulate, "run an app against simulated users"},
    {"cbify", cli_cbify,
     "evaluate a policy on a multiclass data set (supervised to bandit)"},
    {"serve", cli_serve, "serve an app over HTTP"},
    {"catalog", cli_catalog, "vector catalogs: load from CSV, describe a file"},
};

static void usage(FILE *out) {
  fprintf(out, "usage: onearm COMMAND [ARGS]\n\ncommands:\n");
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].help);
}

int main(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (!strcmp(argv[1], "serve")) cli_use_huge_pages(argv);
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
  fprintf(stderr, "onearm: unknown command '%s'\n", argv[1]);
  usage(stderr);
  return 2;
}

int cli_version(int argc, char **argv) {
  printf("onearm %s\n", ONEARM_VERSION);
  return 0;
}
