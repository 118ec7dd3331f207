/* Subcommands of the `onearm` CLI: each takes (argc, argv) with argv[0] the
 * subcommand's name and returns the process exit code (0 ok, 1 failure,
 * 2 usage error). */
#ifndef ONEARM_CLI_H
#define ONEARM_CLI_H

int cli_version(int argc, char **argv);
int cli_simulate(int argc, char **argv);
int cli_cbify(int argc, char **argv);
int cli_serve(int argc, char **argv);
int cli_catalog(int argc, char **argv);

/* For long-running servers: re-executes the process (argv as given to
 * main) with malloc's heap on transparent huge pages, or returns when
 * that is not possible or not wanted (hugepages.c). */
void cli_use_huge_pages(char **argv);

/* Runs require(module).main(args) in a new Lua state (lua_host.c), args
 * being argv[0..argc). Returns main's integer result (0 when it returns
 * nothing), or 1 after printing the error and a traceback to stderr. */
int oa_lua_host_run(const char *module, int argc, char **argv);

#endif
