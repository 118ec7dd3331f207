#include "runtime/scripts_dir.h"

#include <stdlib.h>
#include <unistd.h>

const char *oa_scripts_dir(void) {
  const char *env = getenv("ONEARM_SCRIPTS");
  if (env && *env) return env;
  if (access(ONEARM_SCRIPTS_DIR "/onearm/init.lua", R_OK) == 0) return ONEARM_SCRIPTS_DIR;
  return ONEARM_INSTALL_SCRIPTS_DIR;
}
