-- Apps: oa.app validates an app description; oa.load_app runs an app file in
-- a sandboxed environment and builds every policy it declares inside an
-- engine.
local util = require "onearm.util"
local policy = require "onearm.policy"

local app = {}

local App = { __name = "onearm.app" }
App.__index = App

local ALLOWED = util.set { "name", "policies", "reward", "schedule", "context", "filter",
                           "reward_wait", "default_reward", "combine", "close", "reset",
                           "remove", "retrieve" }
local COMBINE = util.set { "sum", "first", "last", "max" }
local CLOSE = util.set { "first", "deadline", "activation" }

local function fail(msg) error("oa.app: " .. msg, 3) end

-- Two-stage ranking (README "Two-stage ranking"): retrieve = { field =
-- <action embedding>, dim =, format =, meta = {name = "cat"|"num"}, query =
-- <context field> | function(ctx) -> vector, n =, mode =, nprobe =,
-- fresh_share =, build_at =, index =, rebuild_staleness = }.
local RETRIEVE = util.set { "field", "dim", "format", "meta", "query", "n", "mode", "nprobe",
                            "fresh_share", "build_at", "index", "rebuild_staleness" }
-- The context key a query function's vector travels under (the server
-- reads it from the prepared context).
app.QUERY_KEY = "_retrieve_query"

local function check_retrieve(r)
  local function bad(msg) error("oa.app: 'retrieve': " .. msg, 4) end
  if type(r) ~= "table" then bad("must be a table") end
  for _, k in ipairs(util.sorted_keys(r)) do
    if not RETRIEVE[k] then
      bad(string.format("unknown key '%s' (expected one of: %s)", tostring(k),
        table.concat(util.sorted_keys(RETRIEVE), ", ")))
    end
  end
  if type(r.field) ~= "string" or r.field == "" then bad("'field' must name the action embedding") end
  if math.type(r.dim) ~= "integer" or r.dim < 1 then bad("'dim' must be a positive integer") end
  if r.query ~= nil and type(r.query) ~= "string" and not util.is_callable(r.query) then
    bad("'query' must be a context field name or a function(ctx) -> vector")
  end
  if r.n ~= nil and (math.type(r.n) ~= "integer" or r.n < 1 or r.n > 4096) then
    bad("'n' must be an integer in 1..4096")
  end
  if r.mode ~= nil and r.mode ~= "exact" and r.mode ~= "approximate" then
    bad("'mode' must be \"exact\" or \"approximate\"")
  end
  if r.fresh_share ~= nil and (type(r.fresh_share) ~= "number" or r.fresh_share < 0
      or r.fresh_share >= 1) then
    bad("'fresh_share' must be a number in [0, 1)")
  end
  if r.meta ~= nil and type(r.meta) ~= "table" then bad("'meta' must be {name = \"cat\"|\"num\"}") end
end

local function check_hook(spec, key)
  if spec[key] ~= nil and not util.is_callable(spec[key]) then
    fail(string.format("'%s' must be a function, got %s", key, type(spec[key])))
  end
end

-- The default reward hook: a signal that is already a number, or a table
-- with a numeric `reward` field.
local function default_reward_hook(signals)
  if type(signals) == "number" then return signals end
  if type(signals) == "table" and type(signals.reward) == "number" then return signals.reward end
  error("reward: the app has no reward hook and the signals are neither a number nor"
    .. " a table with a numeric 'reward'", 2)
end

-- Validate and normalise an app description (see API.md). Errors name the
-- bad key: "oa.app: policy 'reels': ...".
function app.new(spec)
  if type(spec) ~= "table" then fail("expected a table") end
  for _, k in ipairs(util.sorted_keys(spec)) do
    if not ALLOWED[k] then
      fail(string.format("unknown key '%s' (expected one of: %s)", tostring(k),
        table.concat(util.sorted_keys(ALLOWED), ", ")))
    end
  end
  if type(spec.policies) ~= "table" or next(spec.policies) == nil then
    fail("'policies' must be a non-empty table of name = oa.policy{...}")
  end
  for _, name in ipairs(util.sorted_keys(spec.policies)) do
    if type(name) ~= "string" or not name:match("^[%w_%-%.]+$") or #name > 63 then
      fail(string.format("policy name '%s' must be 1-63 letters, digits, '_', '-' or '.'",
        tostring(name)))
    end
    if not policy.is_policy(spec.policies[name]) then
      fail(string.format("policy '%s' must be made with oa.policy{...}", name))
    end
  end
  for _, k in ipairs { "reward", "schedule", "context", "filter" } do check_hook(spec, k) end
  if spec.retrieve ~= nil then check_retrieve(spec.retrieve) end
  if spec.reward_wait ~= nil and (type(spec.reward_wait) ~= "number" or spec.reward_wait < 0) then
    fail("'reward_wait' must be a number of seconds >= 0")
  end
  if spec.default_reward ~= nil and (type(spec.default_reward) ~= "number"
      or spec.default_reward ~= spec.default_reward) then
    fail("'default_reward' must be a number")
  end
  local c = spec.combine
  if c ~= nil and not COMBINE[c] and not util.is_callable(c) then
    fail("'combine' must be one of sum, first, last, max or a function")
  end
  if spec.close ~= nil and not CLOSE[spec.close] then
    fail("'close' must be one of first, deadline, activation")
  end
  if spec.reset ~= nil then
    if type(spec.reset) ~= "table" then fail("'reset' must be a list of policy names") end
    for _, n in ipairs(spec.reset) do
      if spec.policies[n] == nil then fail("'reset' names unknown policy '" .. tostring(n) .. "'") end
    end
  end
  if spec.remove ~= nil then
    if type(spec.remove) ~= "table" then fail("'remove' must be a list of policy names") end
    for _, n in ipairs(spec.remove) do
      if type(n) ~= "string" then fail("'remove' must be a list of policy names") end
      if spec.policies[n] ~= nil then
        fail("'remove' names policy '" .. n .. "', which the app still declares")
      end
    end
  end
  local a = setmetatable(util.copy(spec), App)
  a.reward = a.reward or default_reward_hook
  a.reward_wait = a.reward_wait or 30
  a.default_reward = a.default_reward or 0
  a.combine = a.combine or "sum"
  a.close = a.close or "first"
  if a.retrieve and util.is_callable(a.retrieve.query) then
    -- A Lua query hook runs with the context hook, once per request.
    local ctx_hook, query = a.context, a.retrieve.query
    a.context = function(ctx)
      local c = ctx_hook and ctx_hook(ctx) or ctx
      if type(c) == "table" then c[app.QUERY_KEY] = query(c) end
      return c
    end
  end
  a.policy_specs = spec.policies
  a.policies = util.sorted_keys(spec.policies)
  a.declared = a.policies
  return a
end

function app.is_app(v) return getmetatable(v) == App end

-- The composed reward for a table of signals: always a finite number.
function App:compose(signals)
  local r = self.reward(signals)
  if type(r) ~= "number" or r ~= r or r == math.huge or r == -math.huge then
    error("reward: the reward hook returned " .. tostring(r) .. ", expected a finite number", 2)
  end
  return r
end

-- A scripted combination of several rewards for one event: remembers every
-- report of event `id` and returns combine(values so far); the host hands
-- that to the engine, which keeps the last value it got when the event
-- closes. Entries older than ttl seconds (now is a monotonic clock) are
-- dropped as the table grows, so events that closed are forgotten.
function App:combine_reward(id, value, now, ttl)
  local p = rawget(self, "_pending")
  if not p then
    p = { n = 0, limit = 1024, items = {} }
    rawset(self, "_pending", p)
  end
  local e = p.items[id]
  if not e then
    if p.n >= p.limit then
      local n = 0
      for k, v in pairs(p.items) do
        if now - v.t > ttl then p.items[k] = nil else n = n + 1 end
      end
      p.n, p.limit = n, math.max(1024, 2 * n)
    end
    e = { t = now, values = {} }
    p.items[id] = e
    p.n = p.n + 1
  end
  e.values[#e.values + 1] = value
  local r = self.combine({ table.unpack(e.values) })
  if type(r) ~= "number" or r ~= r or r == math.huge or r == -math.huge then
    error("combine: the combine function returned " .. tostring(r)
      .. ", expected a finite number", 2)
  end
  return r
end

-- The explorer parameters policy `name` should use at t: its own schedule,
-- else the app's, restricted to the keys its explorer reads. nil when there
-- is no schedule.
function App:params_at(name, t)
  local d = self.policy_specs[name]
  local fn = d.schedule or self.schedule
  if not fn then return nil end
  local p = fn(t)
  if p == nil then return nil end
  if type(p) ~= "table" then
    error("schedule: expected a params table, got " .. type(p), 2)
  end
  local names = policy.param_names(d)
  if not names then return p end
  local out, any = {}, false
  for _, k in ipairs(names) do
    if p[k] ~= nil then out[k], any = p[k], true end
  end
  return any and out or nil
end

-- The context as the policies see it: the app's context hook (run once per
-- request) applied to a copy of the raw context.
function App:prepare(ctx)
  if not self.context then return ctx end
  local c = self.context(util.copy(ctx))
  if type(c) ~= "table" then
    error("context hook: expected a table, got " .. type(c), 2)
  end
  return c
end

-- FNV-1a, 64 bits, over the source text: a cheap version tag that changes
-- whenever the app's text does. Lua 5.4 integers wrap on overflow, which
-- is exactly the modular multiplication FNV needs.
function app.hash(s)
  local h = -3750763034362895579 -- 0xcbf29ce484222325 as a signed integer
  local prime = 1099511628211
  for i = 1, #s, 64 do
    local bytes = { s:byte(i, math.min(i + 63, #s)) }
    for j = 1, #bytes do h = (h ~ bytes[j]) * prime end
  end
  return string.format("%016x", h)
end

local function dirname(path)
  return path:match("^(.*)[/\\]") or "."
end

-- Where this file lives: scripts/onearm/app.lua -> scripts.
local function scripts_dir()
  local src = debug.getinfo(1, "S").source
  if src:sub(1, 1) == "@" then return dirname(dirname(src:sub(2))) end
  return "."
end

-- The globals an app sees: the pure parts of the standard library, copied
-- so that an app cannot change them for the host. No io, no os beyond the
-- clock, no debug, no load of bytecode, no dofile/loadfile, no string.dump;
-- getmetatable hides the string metatable (whose __index is the host's
-- string table).
local function sandbox(require_fn)
  local env = {}
  for _, k in ipairs { "assert", "error", "ipairs", "next", "pairs", "pcall", "select",
                       "tonumber", "tostring", "type", "xpcall", "rawequal", "rawget",
                       "rawset", "rawlen", "setmetatable", "print", "_VERSION" } do
    env[k] = _G[k]
  end
  for _, lib in ipairs { "string", "table", "math", "utf8", "coroutine" } do
    env[lib] = util.copy(_G[lib])
  end
  env.string.dump = nil
  env.getmetatable = function(v)
    if type(v) == "string" then return nil end
    return getmetatable(v)
  end
  env.os = { time = os.time, clock = os.clock, date = os.date, difftime = os.difftime }
  env.load = function(chunk, name, mode, e)
    return load(chunk, name, "t", e == nil and env or e)
  end
  env.require = require_fn
  env._G = env
  return env
end

local function read_file(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local s = f:read("a")
  f:close()
  return s
end

-- The onearm modules an app may require: the ones without side effects on
-- the host. (onearm.app itself reads files, onearm.simulate writes them.)
local LIBRARY = util.set { "onearm", "onearm.core", "onearm.features", "onearm.reward",
                           "onearm.schedule", "onearm.presets", "onearm.policy",
                           "onearm.util", "onearm.rng" }

-- The `onearm` table an app sees: a copy (the app cannot change the host's),
-- without load_app (an app does not load other apps' files).
local function app_onearm()
  local oa = util.copy(require "onearm")
  oa.load_app = function() error("oa.load_app is not available inside an app", 2) end
  return oa
end

-- A `require` for one app: the onearm library comes from the host; any
-- other module is a dotted name searched in the app's folder, then in
-- scripts/, and runs in the app's sandbox. `sources` collects the files
-- loaded (for the version hash and the file watcher).
local function app_require(env, path_template, sources)
  local loaded = {}
  return function(name)
    if type(name) ~= "string" then error("require: module name must be a string", 2) end
    if name == "onearm" or name:match("^onearm%.") then
      if not LIBRARY[name] then
        error("require: module '" .. name .. "' is not available inside an app", 2)
      end
      if name == "onearm" then
        loaded.onearm = loaded.onearm or app_onearm()
        return loaded.onearm
      end
      return require(name)
    end
    if name == "" or name:find("[^%w_%-%.]") or name:find("..", 1, true)
        or name:sub(1, 1) == "." or name:sub(-1) == "." then
      error("require: '" .. name .. "' is not a module name (dotted names inside the"
        .. " app's folder or scripts/ only)", 2)
    end
    if loaded[name] ~= nil then return loaded[name] end
    local file, err = package.searchpath(name, path_template)
    if not file then error("module '" .. name .. "' not found:" .. err, 2) end
    local src = assert(read_file(file))
    local chunk, cerr = load(src, "@" .. file, "t", env)
    if not chunk then error(cerr, 0) end
    sources[#sources + 1] = { file = file, src = src }
    local m = chunk(name, file)
    if m == nil then m = true end
    loaded[name] = m
    return m
  end
end

-- An error raised by `return oa.app{...}` has no position: the app's chunk
-- made a tail call, so its frame is gone. Point at the first line that
-- assigns the key the message names, else at the file.
local function locate(path, src, msg)
  msg = tostring(msg)
  if msg:match("^[^\n]-:%d+: ") then return msg end
  local key = msg:match("'([%w_]+)'")
  if key then
    local n = 0
    for line in (src .. "\n"):gmatch("(.-)\r?\n") do
      n = n + 1
      if line:match("%f[%w_]" .. key .. "%f[^%w_]%s*=") then
        return string.format("%s:%d: %s", path, n, msg)
      end
    end
  end
  return path .. ": " .. msg
end

-- oa.load_app(path [, engine [, opts]]): run the app file, validate what it
-- returns and add its policies to `engine` (a new oa.engine{} when nil).
-- opts.only = { names } adds only those policies (the simulator gives each
-- policy its own engine). Returns the app with .engine, .policies (names),
-- .version (hash of the source text), .path and the hooks.
function app.load(path, engine, opts)
  local core = require "onearm.core"
  if type(path) ~= "string" then error("oa.load_app: expected a file path", 2) end
  local src, err = read_file(path)
  if not src then error("oa.load_app: cannot read app: " .. tostring(err), 2) end
  local dir = dirname(path)
  local scripts = scripts_dir()
  local template = table.concat({ dir .. "/?.lua", dir .. "/?/init.lua",
                                  scripts .. "/?.lua", scripts .. "/?/init.lua" }, ";")
  local env = sandbox(nil)
  local sources = {}
  env.require = app_require(env, template, sources)
  local chunk, cerr = load(src, "@" .. path, "t", env)
  if not chunk then error(cerr, 0) end
  local ok, result = pcall(chunk)
  if ok and not app.is_app(result) then
    if type(result) ~= "table" then
      error(path .. ": the app must return oa.app{...}, got " .. type(result), 0)
    end
    ok, result = pcall(app.new, result)
  end
  if not ok then error(locate(path, src, result), 0) end
  local a = result
  -- The version covers the app file and every module it required while
  -- loading; files lists them for a watcher (a module first required later,
  -- from a hook, is in neither).
  local all, files = { src }, { path }
  for _, m in ipairs(sources) do
    all[#all + 1] = m.src
    files[#files + 1] = m.file
  end
  a.path, a.dir, a.version = path, dir, app.hash(table.concat(all, "\0"))
  a.files = files
  a.engine = engine or core.engine {}
  local names = a.policies
  if opts and opts.only then
    names = {}
    for _, n in ipairs(opts.only) do
      if not a.policy_specs[n] then error("oa.load_app: no policy '" .. n .. "' in " .. path, 2) end
      names[#names + 1] = n
    end
  end
  for _, name in ipairs(names) do
    local ok, perr = pcall(policy.instantiate, core, a.engine, name, a.policy_specs[name])
    if not ok then error(string.format("%s: policy '%s': %s", path, name, tostring(perr)), 0) end
  end
  if a.retrieve then
    local r, opts = a.retrieve, {}
    for k, v in pairs(r) do opts[k] = v end
    if util.is_callable(r.query) then opts.query = app.QUERY_KEY end
    local ok, rerr = pcall(a.engine.set_retrieval, a.engine, opts)
    if not ok then error(string.format("%s: retrieve: %s", path, tostring(rerr)), 0) end
  end
  a.declared = a.policies -- every policy the app declares
  a.policies = names      -- the ones built into a.engine
  return a
end

return app
