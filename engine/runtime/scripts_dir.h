/* Where the Lua standard library (scripts/onearm/...) lives. */
#ifndef ONEARM_RUNTIME_SCRIPTS_DIR_H
#define ONEARM_RUNTIME_SCRIPTS_DIR_H

/* $ONEARM_SCRIPTS when set; else the source tree's scripts/ when it still
 * exists (a build used in place); else the installed copy
 * (PREFIX/share/onearm/scripts). Static storage. */
const char *oa_scripts_dir(void);

#endif
