/* The Lua bindings as the rest of the library sees them: open the
 * `onearm.core` module in a state, and hand an engine that C owns to Lua.
 *
 * C owns state, Lua owns logic (DESIGN.md §4): a server or host creates the
 * engine, and every Lua state that programs it (the app, and the one built
 * aside on a reload) holds it as a *borrowed* `onearm.engine` userdata. A
 * borrowed userdata never frees the engine: its __gc and close only detach
 * the Lua side, so a Lua state can be closed at any time without losing
 * learned state. An *owned* userdata (what `oa.engine{}` makes) frees its
 * engine when collected or closed. */
#ifndef ONEARM_LUA_PUBLIC_H
#define ONEARM_LUA_PUBLIC_H

#include <lua.h>

#include "runtime/engine.h"
#include "explore/explore.h"

/* [-0, +1, e] the `onearm.core` module table (as `require` would load it). */
int luaopen_onearm_core(lua_State *L);

/* [-0, +1, m] Pushes an `onearm.engine` userdata for e. owned = 1: the
 * userdata frees e when collected or closed; owned = 0 (borrowed): the
 * caller keeps e alive for as long as the state uses it, and collecting or
 * closing the userdata leaves e untouched. Registers the module's
 * metatables in L first when `onearm.core` was not opened yet. */
void oa_lua_push_engine(lua_State *L, oa_engine *e, int owned);

/* [-0, +0, v] The engine behind the `onearm.engine` userdata at idx; raises
 * an error for another value or a closed engine. */
oa_engine *oa_lua_check_engine(lua_State *L, int idx);

/* [-0, +1, m] Pushes explorer parameters as a table {epsilon, temperature,
 * alpha, gamma, draws}. */
void oa_lua_push_params(lua_State *L, const oa_explore_params *p);

#endif
