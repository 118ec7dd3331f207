/* `onearm simulate APP.lua [...]`: the simulator is written in Lua
 * (scripts/onearm/simulate.lua); this runs it in the CLI's Lua host. */
#include "cli/cli.h"

int cli_simulate(int argc, char **argv) {
  return oa_lua_host_run("onearm.simulate", argc - 1, argv + 1);
}
