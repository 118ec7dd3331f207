-- Durable state through the real `onearm serve`: learned state, the catalog
-- and pending events survive a stop and a restart; the decision log holds
-- one DSJSON line per closed event; a truncated snapshot is detected and
-- the previous good one is used; a corrupt one without a fallback stops the
-- server with a clear message instead of loading garbage.
local H = dofile((os.getenv("ONEARM_SOURCE_DIR") or ".") .. "/tests/integration/helpers.lua")
local json = require "dkjson"

local dir = H.tmpdir()
local app = dir .. "/app.lua"
local JSON = { "Content-Type: application/json" }

H.write(app, [[
local oa = require "onearm"
local space = oa.features {
  dim = 32,
  context = { device = "cat" },
  action = { style = "cat" },
  cross = { { "device", "style" } },
}
return oa.app {
  policies = { layout = oa.policy { features = space, model = oa.linucb { alpha = 0.5 } } },
  reward = function(s) return s.clicked and 1 or 0 end,
  reward_wait = 600,
  close = "first",
}
]])

local function rank(server, event_id)
  return server:post("/v1/rank", json.encode {
    eventId = event_id,
    context = { device = "mobile" },
    candidates = { "a", "b" },
  }, JSON)
end

describe("onearm serve state", function()
  local server = H.server(dir, app)
  local decisions_before
  after_each(function()
    if server.pid and not H.read(server.rcfile) then server:stop() end
  end)

  it("learns, then writes a snapshot and the decision log when stopped", function()
    assert(server:start("--snapshot-every 0 --no-watch"))
    for _, id in ipairs { "a", "b" } do
      local status = server:request("PUT", "/v1/actions/" .. id,
        json.encode { features = { style = id == "a" and "compact" or "hero" } }, JSON)
      assert.are.equal(201, status)
    end
    for i = 1, 40 do
      local status, body = rank(server, "e" .. i)
      assert.are.equal(200, status)
      local s = server:post("/v1/events/e" .. i .. "/reward",
        json.encode { signals = { clicked = body.chosen == "b" } }, JSON)
      assert.are.equal(true, s == 200 or s == 204)
    end
    local status = rank(server, "left-pending")
    assert.are.equal(200, status)
    local _, policy = server:get("/v1/policies/layout")
    decisions_before = policy.decisions
    assert.are.equal(41, decisions_before)
    assert.are.equal(0, server:signal("TERM") and 0 or 1)
    assert.are.equal(0, server:wait(10))
    assert.is_truthy(H.read(dir .. "/var/state.oas"))
    local lines = 0
    for line in io.lines(dir .. "/var/decisions.jsonl") do
      local rec = json.decode(line)
      assert.is_number(rec._label_probability)
      assert.is_number(rec._label_cost)
      assert.are.equal("layout", rec.policy)
      assert.is_truthy(rec.EventId:match("^e%d+$"))
      assert.are.equal("mobile", rec.c.device)
      assert.are.equal(2, #rec.c._multi)
      assert.are.equal("a", rec.c._multi[1].id)
      assert.is_boolean(rec.signals[1].clicked)
      lines = lines + 1
    end
    assert.are.equal(40, lines)
  end)

  it("restores learned state, the catalog and pending events on restart", function()
    assert(server:start("--snapshot-every 0 --no-watch"))
    local _, policy = server:get("/v1/policies/layout")
    assert.are.equal(decisions_before, policy.decisions)
    assert.are.equal(200, (rank(server, "after-restart")))
    local status = server:post("/v1/events/left-pending/reward",
      json.encode { value = 1 }, JSON)
    assert.are.equal(true, status == 200 or status == 204)
    assert.are.equal(409, (server:post("/v1/events/left-pending/reward",
      json.encode { value = 1 }, JSON)))
    server:signal("TERM")
    assert.are.equal(0, server:wait(10))
  end)

  it("falls back to the previous snapshot when the newest is truncated", function()
    local path = dir .. "/var/state.oas"
    local data = H.read(path)
    H.write(path, data:sub(1, #data - 7))
    assert(server:start("--snapshot-every 0 --no-watch"))
    local log = H.read(server.log)
    assert.is_truthy(log:match("unusable") and log:match("truncated"))
    local _, policy = server:get("/v1/policies/layout")
    assert.are.equal(decisions_before, policy.decisions) -- the first run's snapshot
    server:signal("TERM")
    assert.are.equal(0, server:wait(10))
  end)

  it("refuses to start on corrupt snapshots with no good fallback", function()
    for _, name in ipairs { "state.oas", "state.prev.oas" } do
      local path = dir .. "/var/" .. name
      local data = H.read(path)
      H.write(path, data:sub(1, 40) .. "garbage" .. data:sub(48))
    end
    local ok, log = server:start("--snapshot-every 0 --no-watch")
    assert.is_nil(ok)
    assert.is_truthy(log:match("checksum"))
    assert.are.equal(1, server:wait(10))
  end)
end)

-- The retrieval store at scale is part of the snapshot: its matrix is a
-- sidecar file next to state.oas (memory-mapped back) and its index is in
-- the snapshot, so a restart adopts both instead of rebuilding them; a
-- corrupt or missing sidecar falls back to rebuilding from the catalog
-- records, with the same answers either way.
describe("onearm serve retrieval state", function()
  local rdir = H.tmpdir()
  local rapp = rdir .. "/app.lua"
  H.write(rapp, [[
local oa = require "onearm"
local space = oa.features { dim = 32, context = { device = "cat" }, action = { topic = "cat" } }
return oa.app {
  policies = { p = oa.policy { features = space, model = oa.egreedy { epsilon = 0.1 } } },
  reward = function(s) return s.clicked and 1 or 0 end,
  retrieve = { field = "emb", dim = 4, meta = { topic = "cat" }, n = 10, mode = "exact",
               build_at = 10, fresh_share = 0 },
}
]])
  local server = H.server(rdir, rapp)
  local var = rdir .. "/var"
  local before
  after_each(function()
    if server.pid and not H.read(server.rcfile) then server:stop() end
  end)

  local function sidecar()
    local p = io.popen("ls " .. H.quote(var) .. " | grep '^state\\..*\\.oav$'")
    local names = {}
    for line in p:lines() do names[#names + 1] = line end
    p:close()
    return names
  end

  local function shortlist(mode)
    local status, body = server:post("/v1/rank", json.encode {
      context = { device = "phone" },
      retrieve = { n = 10, mode = mode or "exact", query = { 0.5, -1, 0.25, 2 } },
    }, JSON)
    assert.are.equal(200, status)
    local ids = {}
    for _, r in ipairs(body.ranking) do ids[#ids + 1] = r.id end
    table.sort(ids)
    return table.concat(ids, " ")
  end

  local function restart()
    assert(server:start("--snapshot-every 0 --no-watch"))
    return H.read(server.log)
  end

  local function stop()
    server:signal("TERM")
    assert.are.equal(0, server:wait(10))
  end

  it("writes the store as a sidecar next to the snapshot", function()
    assert(server:start("--snapshot-every 0 --no-watch"))
    local upsert = {}
    for i = 1, 60 do
      local a = i * 0.7
      upsert[i] = { id = "v" .. i, features = {
        emb = { math.sin(a), math.cos(a), math.sin(2 * a), math.cos(3 * a) },
        topic = i % 2 == 0 and "music" or "news" } }
    end
    local status = server:post("/v1/actions:batch", json.encode { upsert = upsert, remove = {} }, JSON)
    assert.are.equal(200, status)
    before = shortlist()
    stop()
    assert.are.equal(1, #sidecar())
  end)

  it("adopts the sidecar and the index at restart: same top-N, no rebuild", function()
    local log = restart()
    assert.is_falsy(log:match("rebuilt"))
    assert.are.equal(before, shortlist())
    assert.are.equal(0, server:metric("onearm_retrieval_index_builds"))
    assert.are.equal(60, server:metric("onearm_retrieval_items"))
    shortlist("approximate")
    -- Bad input changes nothing: a wrong-length embedding is refused.
    local status = server:post("/v1/actions:batch", json.encode {
      upsert = { { id = "bad", features = { emb = { 1, 2 }, topic = "news" } } }, remove = {} }, JSON)
    assert.are.equal(400, status)
    assert.are.equal(before, shortlist())
    assert.are.equal(60, server:metric("onearm_retrieval_items"))
    stop()
    assert.are.equal(2, #sidecar()) -- the snapshot's and the previous one's
  end)

  it("rebuilds from the catalog when the sidecar is corrupt", function()
    for _, name in ipairs(sidecar()) do
      local path = var .. "/" .. name
      local data = H.read(path)
      local at = #data - 200
      H.write(path, data:sub(1, at - 1) .. string.char((data:byte(at) + 1) % 256) .. data:sub(at + 1))
    end
    local log = restart()
    assert.is_truthy(log:match("matrix checksum") and log:match("rebuilt from the catalog"))
    assert.are.equal(before, shortlist())
    assert.are.equal(60, server:metric("onearm_retrieval_items"))
    stop()
  end)

  it("rebuilds from the catalog when the sidecar is missing", function()
    for _, name in ipairs(sidecar()) do os.remove(var .. "/" .. name) end
    local log = restart()
    assert.is_truthy(log:match("missing") and log:match("rebuilt from the catalog"))
    assert.are.equal(before, shortlist())
    stop()
    assert.are.equal(1, #sidecar())
  end)

  it("carries the store in periodic snapshots: a crash restores it from the last one", function()
    assert(server:start("--snapshot-every 1 --no-watch"))
    -- a change after the last snapshot at stop, kept by the next periodic one
    local status = server:request("DELETE", "/v1/actions/v7")
    assert.are.equal(204, status)
    local expected = shortlist()
    H.sleep(2.5)
    server:signal("KILL") -- no final snapshot
    server:wait(5)
    server.pid = nil
    local log = restart()
    assert.is_falsy(log:match("rebuilt"), log)
    assert.are.equal(expected, shortlist())
    assert.are.equal(59, server:metric("onearm_retrieval_items"))
    assert.are.equal(0, server:metric("onearm_retrieval_index_builds")) -- adopted
    stop()
  end)
end)
