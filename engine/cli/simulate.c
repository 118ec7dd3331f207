/* `onearm simulate APP.lua [...]`: the simulator is written in Lua
 * (scripts/onearm/simulate.lua); this runs it in the CLI's Lua host. */
#include <cblas.h>
#include <stdlib.h>

#include "cli/cli.h"

int cli_simulate(int argc, char **argv) {
  /* A simulation is a long series of small matrix products, one decision at
   * a time: BLAS threads only add wake-up costs there, so run on one
   * unless the user asked otherwise. */
  if (getenv("OPENBLAS_NUM_THREADS") == NULL) openblas_set_num_threads(1);
  return oa_lua_host_run("onearm.simulate", argc - 1, argv + 1);
}
