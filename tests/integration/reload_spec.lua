-- Hot reload, limits and the sandbox of `onearm serve`, end to end: the
-- real binary, an app file rewritten between steps, reloads by the admin
-- route, SIGHUP and file changes; runaway and hungry hooks; escapes from
-- the sandbox. One server for the whole spec, steps in order.
local H = dofile((os.getenv("ONEARM_SOURCE_DIR") or ".") .. "/tests/integration/helpers.lua")

local dir = H.tmpdir()
local app = dir .. "/app.lua"
local TOKEN = { "Content-Type: application/json", "Authorization: Bearer tok" }

-- The app's source with a few knobs: dim of the feature space, LinUCB alpha,
-- the reward wait (short, so that no event of a step is still open in the
-- next one), extra app keys (Lua text) and top-level statements.
local function source(o)
  o = o or {}
  return string.format([[
local oa = require "onearm"
%s
local space = oa.features {
  dim = %d,
  context = { device = "cat", n = "num" },
  action = { style = "cat" },
  cross = { { "device", "style" } },
}
return oa.app {
  policies = { layout = oa.policy { features = space, model = oa.linucb { alpha = %s } } },
  reward = function(s)
    if s.loop then while true do end end
    return s.clicked or 0
  end,
  context = function(c)
    if c.loop then while true do end end
    if c.sneaky then while true do pcall(function() while true do end end) end end
    if c.big then local s = string.rep("x", 300 * 1024 * 1024) end
    c.n = 1
    return c
  end,
  reward_wait = %s,
  %s
}
]], o.top or "", o.dim or 64, o.alpha or 1, o.wait or 1, o.extra or "")
end

local candidates = {
  { id = "a", features = { style = "compact" } },
  { id = "b", features = { style = "big" } },
}

local srv = H.server(dir, app)

local function rank(ctx)
  return srv:post("/v1/rank", { context = ctx or { device = "phone" }, actions = candidates })
end

local function policy()
  local _, body = srv:get("/v1/policies/layout")
  return body
end

local function version()
  local _, body = srv:get("/healthz")
  return body.appVersion
end

local function reload()
  return srv:post("/v1/admin/reload", nil, TOKEN)
end

-- Rewrite the app and reload it through the admin route.
local function deploy(o)
  H.write(app, source(o))
  return reload()
end

-- Wait until f() is true (polling), up to `seconds`.
local function eventually(f, seconds)
  for _ = 1, math.floor((seconds or 3) / 0.05) do
    if f() then return true end
    H.sleep(0.05)
  end
  return f()
end

describe("onearm serve reload", function()
  H.write(app, source())
  local started, why = srv:start("--admin-token tok")
  if not started then
    it("starts", function() error("the server did not start:\n" .. tostring(why)) end)
    return
  end
  teardown(function() srv:stop() end)

  it("puts the app version in responses and runs the schedule", function()
    H.write(app, source { extra = "schedule = function(t) return { alpha = 0.25 } end," })
    local status, body = reload()
    assert.equals(200, status, H.json.encode(body))
    local s, r = rank()
    assert.equals(200, s)
    assert.matches("^%x+$", r.appVersion)
    assert.equals(r.appVersion, version())
    assert.equals(0.25, policy().parameters.alpha)
    local s2, rw = srv:post("/v1/events/" .. r.eventId .. "/reward", { signals = { clicked = 1 } })
    assert.equals(200, s2)
    assert.equals(r.appVersion, rw.appVersion)
  end)

  it("keeps learned state across an admin reload while a client keeps ranking", function()
    for _ = 1, 5 do assert.equals(200, (rank())) end
    local before = policy().decisions
    local v0 = version()
    -- A client ranking in the background during the reload.
    local codes = dir .. "/codes"
    local body = dir .. "/rankbody"
    H.write(body, H.json.encode { context = { device = "tv" }, actions = candidates })
    os.execute(string.format(
      "(for i in $(seq 1 60); do curl -s -o /dev/null -w '%%{http_code}\\n' -X POST "
      .. "-H 'Content-Type: application/json' --data-binary @%s %s/v1/rank; done > %s; "
      .. "echo done >> %s) &", H.quote(body), srv.url, H.quote(codes), H.quote(codes)))
    H.sleep(0.1)
    local status, res = deploy { alpha = 2 }
    assert.equals(200, status, H.json.encode(res))
    assert.is_true(res.reloaded)
    assert.not_equals(v0, res.appVersion)
    assert.is_true(eventually(function()
      return (H.read(codes) or ""):find("done", 1, true) ~= nil
    end, 20))
    local n = 0
    for code in H.read(codes):gmatch("(%d+)\n") do
      assert.equals("200", code)
      n = n + 1
    end
    assert.equals(60, n)
    local p = policy()
    assert.equals(2, p.parameters.alpha)
    assert.is_true(p.decisions >= before + 60, "decisions continue: " .. p.decisions)
  end)

  it("keeps the old app serving when the new one is broken, with file and line", function()
    local v = version()
    local failures = srv:metric("onearm_app_reload_failures_total") or 0
    local status, res = deploy { top = "local x = = 1" }
    assert.equals(422, status)
    assert.equals("ReloadFailed", res.error.code)
    assert.matches("app%.lua:2:", res.error.message)
    assert.equals(200, (rank()))
    assert.equals(v, version())
    assert.is_true(srv:metric("onearm_app_reload_failures_total") > failures)
    -- a runtime error in the app's body points at its line too
    status, res = deploy { top = "\n\nlocal y = nil + 1" }
    assert.equals(422, status)
    assert.matches("app%.lua:4:", res.error.message)
    assert.equals(v, version())
  end)

  it("refuses a shape change unless the app declares a reset", function()
    assert.equals(200, (deploy { alpha = 2 }))
    local before = policy().decisions
    assert.is_true(before > 0)
    local status, res = deploy { dim = 128 }
    assert.equals(422, status)
    assert.matches("policy 'layout' changed shape %(dim 64 → 128%); declare reset = {'layout'}",
      res.error.message)
    assert.equals(before, policy().decisions)
    assert.equals(64, policy().dimensions)
    status, res = deploy { dim = 128, extra = "reset = { 'layout' }," }
    assert.equals(200, status, H.json.encode(res))
    local p = policy()
    assert.equals(128, p.dimensions)
    assert.equals(0, p.decisions)
    assert.equals(200, (rank()))
  end)

  it("reloads on SIGHUP", function()
    H.sleep(0.3) -- let the file watcher's reload of the last write pass
    local reloads = srv:metric("onearm_app_reloads_total")
    assert.truthy(srv:signal("HUP"))
    assert.is_true(eventually(function()
      return srv:metric("onearm_app_reloads_total") == reloads + 1
    end))
    assert.matches("SIGHUP, reloading", H.read(srv.log))
    assert.equals(200, (rank()))
  end)

  it("reloads when the app's file changes", function()
    local v = version()
    H.write(app, source { dim = 128, alpha = 3, extra = "reset = { 'layout' }," })
    assert.is_true(eventually(function() return version() ~= v end, 5))
    assert.equals(3, policy().parameters.alpha)
  end)

  it("combines several rewards with the app's function", function()
    assert.equals(200, (deploy { dim = 128, extra = [[
      reset = { 'layout' }, close = "deadline",
      combine = function(values) return #values end,]] }))
    H.sleep(0.3) -- the file watcher reloads this write too; the values live in the state
    local before = policy()
    local _, r = rank()
    for _ = 1, 3 do
      assert.equals(200, (srv:post("/v1/events/" .. r.eventId .. "/reward", { value = 1 })))
    end
    -- events still pending from earlier steps close too (with the default
    -- reward, 0): only the sum tells this event's reward
    assert.is_true(eventually(function() return policy().rewards >= before.rewards + 1 end, 8))
    H.sleep(1.2)
    local p = policy()
    local sum = p.averageReward * p.rewards
    local prev = (before.averageReward or 0) * before.rewards
    assert.near(3, sum - prev, 1e-6)
  end)

  it("answers a runaway hook with a 500 and keeps serving", function()
    assert.equals(200, (deploy { dim = 128, extra = "reset = { 'layout' }," }))
    local status, res = rank { loop = true }
    assert.equals(500, status)
    assert.equals("ScriptError", res.error.code)
    assert.matches("app%.lua:%d+: instruction budget exceeded", res.error.message)
    assert.equals(200, (rank()))
    status, res = rank { sneaky = true } -- catching the error with pcall does not help
    assert.equals(500, status)
    assert.matches("instruction budget exceeded", res.error.message)
    status, res = rank { big = true }
    assert.equals(500, status)
    assert.matches("memory limit exceeded", res.error.message)
    local _, r = rank()
    status, res = srv:post("/v1/events/" .. r.eventId .. "/reward", { signals = { loop = true } })
    assert.equals(500, status)
    assert.matches("instruction budget exceeded", res.error.message)
    -- the event is still open: a good reward is taken
    assert.equals(200, (srv:post("/v1/events/" .. r.eventId .. "/reward",
      { signals = { clicked = 1 } })))
    assert.is_true(srv:metric("onearm_app_budget_errors_total") >= 3)
    assert.is_true(srv:metric("onearm_app_memory_errors_total") >= 1)
  end)

  it("refuses sandbox escapes", function()
    local v = version()
    local escapes = {
      { "local f = io.open('/etc/passwd')", "global 'io'" },
      { "os.execute('touch " .. dir .. "/pwned')", "field 'execute'" },
      { "require 'secret'", "module 'secret' not found" },
      { "require '../secret'", "is not a module name" },
      { "require 'onearm.simulate'", "not available inside an app" },
      { "load(string.dump(print))", "field 'dump'" },
      { "debug.getinfo(1)", "global 'debug'" },
      { "require('onearm').load_app('/etc/passwd')", "not available inside an app" },
    }
    H.write(dir .. "/../secret.lua", "return 1")
    for _, e in ipairs(escapes) do
      local status, res = deploy { dim = 128, top = e[1], extra = "reset = { 'layout' }," }
      assert.equals(422, status, e[1])
      assert.matches(e[2], res.error.message, 1, true)
    end
    os.remove(dir .. "/../secret.lua")
    assert.is_nil(H.read(dir .. "/pwned"))
    assert.equals(v, version())
    assert.equals(200, (rank()))
  end)

  it("needs the admin token for a reload", function()
    local status = srv:post("/v1/admin/reload", nil)
    assert.equals(401, status)
  end)
end)
