/* Subcommands of the `onearm` CLI: each takes (argc, argv) with argv[0] the
 * subcommand's name and returns the process exit code (0 ok, 1 failure,
 * 2 usage error). */
#ifndef ONEARM_CLI_H
#define ONEARM_CLI_H

int cli_version(int argc, char **argv);

#endif
