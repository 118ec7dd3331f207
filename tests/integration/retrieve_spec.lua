-- Two-stage ranking through the real server: POST /v1/rank with
-- `retrieve` over a small catalog (exact and approximate, filters,
-- excluded ids, fresh share, a Lua query function), bad input answered
-- with 400 and a clear message, catalog upserts and removals between
-- ranks, the decision log listing exactly the shortlist, and the
-- retrieval metrics. Needs ONEARM_BIN, curl and dkjson.
local H = dofile((os.getenv("ONEARM_SOURCE_DIR") or ".") .. "/tests/integration/helpers.lua")

local DIM = 8

-- A JSON object even when empty or with an `n` key (dkjson would make
-- both arrays).
-- (dkjson also takes any table with an `n` key for an array: retrieve
-- tables spell it __n, renamed after encoding by post.)
local function obj(t) return setmetatable(t, { __jsontype = "object" }) end

local function post(server, path, t)
  local body = type(t) == "string" and t or (H.json.encode(t):gsub('"__n":', '"n":'))
  return server:post(path, body)
end
local TOPICS = { "music", "news", "sports", "comedy" }

local function vec(i) return H.item_vec(i, DIM) end
local dot, set_of, ids_of = H.dot, H.set_of, H.ids_of

local ITEMS = 400

local function item(i)
  return { id = "v" .. i, features = { emb = vec(i), topic = TOPICS[i % 4 + 1], age = i % 30 } }
end

-- The exact top n ids for query q among items that pass keep.
local function top(q, n, keep, gone)
  local all = {}
  for i = 0, ITEMS - 1 do
    if (not keep or keep(i)) and not (gone and gone["v" .. i]) then
      all[#all + 1] = { id = "v" .. i, s = dot(q, vec(i)) }
    end
  end
  table.sort(all, function(a, b) return a.s > b.s end)
  local out = {}
  for k = 1, math.min(n, #all) do out[k] = all[k].id end
  return out
end

describe("two-stage ranking over HTTP", function()
  local dir, server

  setup(function()
    dir = H.tmpdir()
    H.write(dir .. "/app.lua", string.format([[
local oa = require "onearm"
local space = oa.features {
  layout = "concat",
  context = { user = "dense:%d", device = "cat" },
  action = { emb = "dense:%d", topic = "cat" },
}
return oa.app {
  policies = {
    twotower = oa.policy { features = space, model = oa.egreedy { epsilon = 0.1 } },
  },
  retrieve = { field = "emb", dim = %d, meta = { topic = "cat", age = "num" },
               query = "user", n = 20, mode = "exact" },
}
]], DIM, DIM, DIM))
    server = H.server(dir, dir .. "/app.lua")
    local ok, log = server:start("--snapshot-every 0 --no-watch")
    assert(ok, log)
    local up = {}
    for i = 0, ITEMS - 1 do up[#up + 1] = item(i) end
    local status, body = server:post("/v1/actions:batch", { upsert = up })
    assert(status == 200 or status == 204, H.json.encode(body))
  end)

  teardown(function()
    if server then server:stop() end
    os.execute("rm -rf " .. H.quote(dir))
  end)

  it("ranks exactly the exact top n for the context's user embedding", function()
    local q = vec(9001)
    local status, body = post(server, "/v1/rank", { context = { user = q },
                                                   retrieve = obj { __n = 15 } })
    assert.are.equal(200, status, H.json.encode(body))
    assert.are.equal(15, #body.ranking)
    assert.are.same(set_of(top(q, 15)), set_of(ids_of(body)))
    assert.are.same({ n = 15, mode = "exact", fresh = 0 }, body.retrieved)
    local sum = 0
    for _, r in ipairs(body.ranking) do sum = sum + r.probability end
    assert.is_true(math.abs(sum - 1) < 1e-9)
  end)

  it("uses the app's default n and an explicit query vector", function()
    local q = vec(77)
    local status, body = post(server, "/v1/rank", { retrieve = obj { query = q } })
    assert.are.equal(200, status, H.json.encode(body))
    assert.are.same(set_of(top(q, 20)), set_of(ids_of(body)))
  end)

  it("applies filters and excluded actions", function()
    local q = vec(5)
    local keep = function(i) return TOPICS[i % 4 + 1] == "music" and i % 30 >= 3 and i % 30 <= 12 end
    local best = top(q, 3, keep)
    local status, body = post(server, "/v1/rank", {
      context = { user = q }, excludedActions = { best[1], "unknown-id" },
      retrieve = obj { __n = 10, filters = { topic = "music", age = { min = 3, max = 12 } } },
    })
    assert.are.equal(200, status, H.json.encode(body))
    assert.are.same(set_of(top(q, 10, keep, { [best[1]] = true })), set_of(ids_of(body)))
    status, body = post(server, "/v1/rank", { context = { user = q },
      retrieve = obj { __n = 10, filters = { topic = { "news", "sports" }, age = { 0, 5 } } } })
    assert.are.equal(200, status, H.json.encode(body))
    for _, id in ipairs(ids_of(body)) do
      local i = tonumber(id:sub(2))
      assert.is_true((i % 4 == 1 or i % 4 == 2) and i % 30 <= 5)
    end
  end)

  it("retrieves approximately from an index that agrees with exact at full probe", function()
    local q = vec(31337)
    local status, body = post(server, "/v1/rank", { context = { user = q },
      retrieve = obj { __n = 10, mode = "approximate", nprobe = 100000 } })
    assert.are.equal(200, status, H.json.encode(body))
    assert.are.equal("approximate", body.retrieved.mode)
    assert.are.same(set_of(top(q, 10)), set_of(ids_of(body)))
    -- the default probe count finds most of them
    status, body = post(server, "/v1/rank", { context = { user = q },
      retrieve = obj { __n = 10, mode = "approximate" } })
    assert.are.equal(200, status)
    local want, hit = set_of(top(q, 10)), 0
    for _, id in ipairs(ids_of(body)) do if want[id] then hit = hit + 1 end end
    assert.is_true(hit >= 8)
  end)

  it("reserves a share of the shortlist for fresh items", function()
    local q = vec(12)
    local status, body = post(server, "/v1/rank", { context = { user = q },
      retrieve = obj { __n = 20, freshShare = 0.1 } })
    assert.are.equal(200, status, H.json.encode(body))
    assert.are.equal(2, body.retrieved.fresh)
    assert.are.equal(20, #body.ranking)
  end)

  it("answers bad input with 400 and a clear message", function()
    local q = vec(1)
    local cases = {
      { { context = { user = q }, retrieve = obj { __n = 0 } }, "retrieve.n must be 1 to 4096" },
      { { context = { user = q }, retrieve = obj { __n = -5 } }, "retrieve.n must be 1 to 4096" },
      { { context = { user = q }, retrieve = obj { __n = 5000 } }, "retrieve.n must be 1 to 4096" },
      { { retrieve = obj { query = { 1, 2, 3 } } }, "has 3 numbers" },
      { { context = { user = { 1, 2 } }, retrieve = obj {} }, "has 2 numbers" },
      { { retrieve = obj { query = { 1, 2, 3, 4, 5, 6, 7, "x" } } }, "finite number" },
      { { context = { user = q }, retrieve = obj { mode = "fast" } }, "exact\" or \"approximate" },
      { { context = { user = q }, retrieve = obj { filters = { colour = "red" } } },
        "not a declared retrieval field" },
      { { context = { user = q }, retrieve = obj { filters = { topic = 3 } } }, "a string or an array" },
      { { context = { user = q }, retrieve = obj { nope = 1 } }, "unknown key 'nope'" },
      { { context = { user = q }, retrieve = obj {}, candidates = { "v1" } }, "not both" },
      { { context = { user = q }, retrieve = obj { filters = { topic = "never" } } },
        "no eligible action" },
      { { context = { user = q }, retrieve = obj { freshShare = 1 } }, "freshShare" },
    }
    for _, c in ipairs(cases) do
      local status, body = post(server, "/v1/rank", c[1])
      assert.are.equal(400, status, H.json.encode(c[1]))
      assert.truthy(body.error.message:find(c[2], 1, true), body.error.message)
    end
    -- a NaN cannot be written in JSON; a huge number does not fit a float
    local status, body = post(server, "/v1/rank",
      '{"retrieve":{"query":[1e300,0,0,0,0,0,0,0]}}')
    assert.are.equal(400, status)
    assert.truthy(body.error.message:find("finite", 1, true))
    -- a catalog action with the wrong dimension is refused, nothing changes
    status, body = server:request("PUT", "/v1/actions/bad", { features = { emb = { 1, 2 } } })
    assert.are.equal(400, status)
    assert.truthy(body.error.message:find("expects 8", 1, true), body.error.message)
  end)

  it("follows upserts and removals between ranks", function()
    local q = vec(4040)
    local gone = {}
    for round = 1, 5 do
      local best = top(q, 3, nil, gone)
      -- remove the current best, add a new item that points along q
      local status = server:request("DELETE", "/v1/actions/" .. best[1])
      assert.are.equal(204, status)
      gone[best[1]] = true
      local strong = {}
      for j = 1, DIM do strong[j] = q[j] * 10 end
      status = server:request("PUT", "/v1/actions/new" .. round,
        { features = { emb = strong, topic = "music", age = 1 } })
      assert.is_true(status == 200 or status == 201 or status == 204)
      for _, mode in ipairs { "exact", "approximate" } do
        local st, body = post(server, "/v1/rank", { context = { user = q },
          retrieve = obj { __n = 10, mode = mode, nprobe = 100000 } })
        assert.are.equal(200, st, H.json.encode(body))
        local got = set_of(ids_of(body))
        assert.is_nil(got[best[1]])
        for k = 1, round do assert.is_true(got["new" .. k], mode .. " round " .. round) end
      end
    end
  end)

  it("logs the shortlist with the decision and reports retrieval metrics", function()
    local status, body = post(server, "/v1/rank", { eventId = "retr-log-1",
      context = { user = vec(3) }, retrieve = obj { __n = 7 } })
    assert.are.equal(200, status)
    server:post("/v1/events/retr-log-1/reward", { value = 1 })
    H.sleep(1.3) -- the log flushes once a second
    local log = ""
    local p = io.popen("cat " .. H.quote(dir .. "/var") .. "/decisions*.jsonl 2>/dev/null")
    log = p:read("a")
    p:close()
    local line = log:match("[^\n]*retr%-log%-1[^\n]*")
    assert.truthy(line, log)
    local ev = H.json.decode(line)
    local logged = {}
    for _, a in ipairs(ev.c._multi) do logged[#logged + 1] = a.id end
    assert.are.same(set_of(ids_of(body)), set_of(logged))
    assert.are.equal(7, #logged)
    assert.is_true(server:metric("onearm_retrieval_items") >= ITEMS)
    assert.is_true(server:metric('onearm_retrieval_seconds_count{mode="exact"}') > 0)
    assert.is_not_nil(server:metric("onearm_retrieval_recall"))
  end)
end)

describe("a Lua query function", function()
  it("computes the query from the context through the app", function()
    local dir = H.tmpdir()
    H.write(dir .. "/app.lua", string.format([[
local oa = require "onearm"
local space = oa.features { dim = 32, context = { axis = "num" }, action = { topic = "cat" } }
return oa.app {
  policies = { p = oa.policy { features = space, model = oa.egreedy {} } },
  retrieve = { field = "emb", dim = %d, n = 5,
               query = function(ctx)
                 local q = {}
                 for j = 1, %d do q[j] = (j == ctx.axis) and 1 or 0 end
                 return q
               end },
}
]], DIM, DIM))
    local server = H.server(dir, dir .. "/app.lua")
    assert(server:start("--snapshot-every 0 --no-watch"))
    local up = {}
    for i = 0, 99 do up[#up + 1] = { id = "v" .. i, features = { emb = vec(i) } } end
    server:post("/v1/actions:batch", { upsert = up })
    local status, body = post(server, "/v1/rank", { context = { axis = 3 }, retrieve = obj {} })
    server:stop()
    os.execute("rm -rf " .. H.quote(dir))
    assert.are.equal(200, status, H.json.encode(body))
    local best, bid = -math.huge, nil
    for i = 0, 99 do
      if vec(i)[3] > best then best, bid = vec(i)[3], "v" .. i end
    end
    assert.truthy(set_of(ids_of(body))[bid])
  end)
end)
