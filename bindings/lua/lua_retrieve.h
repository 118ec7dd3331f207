/* Two-stage ranking for Lua: see lua_retrieve.c. */
#ifndef ONEARM_LUA_RETRIEVE_H
#define ONEARM_LUA_RETRIEVE_H

#include "lua_onearm.h"
#include "onearm_lua.h"
#include "runtime/engine.h"

/* [-0, +0, e] The retrieve table at idx as a request (arena memory); the
 * context at ctx_idx is passed to a query function. Raises on bad input
 * or when e has no retrieval. */
oa_retrieve_request *oa__lua_retrieve_request(lua_State *L, int idx, int ctx_idx,
                                              oa_engine *e, oa_lua_arena *a,
                                              const char *fn);
int oa__lua_set_retrieval(lua_State *L);
int oa__lua_retrieve(lua_State *L);
int oa__lua_build_index(lua_State *L);
/* eng:load_catalog(path) -> rows upserted from a catalog file. */
int oa__lua_load_catalog(lua_State *L);
int oa__lua_retrieval_stats(lua_State *L);

#endif
