-- Bulk catalog loads through the real binaries: POST /v1/actions:load
-- with a CSV and with a vector file made by `onearm catalog load`, bad
-- files refused with the line at fault and nothing changed, and
-- `onearm serve --catalog` starting from a vector file. Needs ONEARM_BIN,
-- curl and dkjson.
local H = dofile((os.getenv("ONEARM_SOURCE_DIR") or ".") .. "/tests/integration/helpers.lua")

local DIM, ITEMS = 8, 300
local TOPICS = { "music", "news", "sports", "comedy" }

local function vec(i) return H.item_vec(i, DIM) end

-- A catalog CSV of ITEMS rows with ids prefix..i; edit(i, cells) may
-- change a row's cells (vector cells first, then topic and age).
local function write_csv(path, prefix, dim, edit)
  local head = { "id" }
  for j = 0, dim - 1 do head[#head + 1] = "v" .. j end
  head[#head + 1] = "topic"
  head[#head + 1] = "age"
  local lines = { table.concat(head, ",") }
  for i = 0, ITEMS - 1 do
    local v, cells = vec(i), {}
    for j = 1, dim do cells[j] = string.format("%.6f", v[j]) end
    cells[#cells + 1] = TOPICS[i % 4 + 1]
    cells[#cells + 1] = tostring(i % 30)
    if edit then edit(i, cells) end
    lines[#lines + 1] = prefix .. i .. "," .. table.concat(cells, ",")
  end
  H.write(path, table.concat(lines, "\n") .. "\n")
end

local APP = string.format([[
local oa = require "onearm"
local space = oa.features { layout = "concat", action = { emb = "dense:%d", topic = "cat" } }
return oa.app {
  policies = { p = oa.policy { features = space, model = oa.egreedy { epsilon = 0.1 } } },
  retrieve = { field = "emb", dim = %d, meta = { topic = "cat", age = "num" },
               n = 10, mode = "exact" },
}
]], DIM, DIM)

local function rank(server, q, filters)
  local body = { retrieve = { query = q, mode = "exact", filters = filters } }
  local status, out = server:post("/v1/rank", body)
  assert.are.equal(200, status, H.json.encode(out))
  return H.set_of(H.ids_of(out))
end

describe("catalog files", function()
  local dir, server

  setup(function()
    dir = H.tmpdir()
    H.write(dir .. "/app.lua", APP)
    server = H.server(dir, dir .. "/app.lua")
    assert(server:start("--snapshot-every 0 --no-watch"))
  end)

  teardown(function()
    if server then server:stop() end
    os.execute("rm -rf " .. H.quote(dir))
  end)

  local function actions() return server:metric("onearm_retrieval_items") end

  it("loads a CSV through the API, metadata included", function()
    write_csv(dir .. "/a.csv", "c", DIM)
    local status, body = server:post("/v1/actions:load", { path = dir .. "/a.csv" })
    assert.are.equal(200, status, H.json.encode(body))
    assert.are.equal(ITEMS, body.loaded)
    assert.are.equal(ITEMS, body.actions)
    assert.are.equal(ITEMS, actions())
    assert.is_true(rank(server, vec(5)).c5)
    -- a topic filter keeps only music videos (i % 4 == 0)
    for id in pairs(rank(server, vec(5), { topic = "music" })) do
      assert.are.equal(0, tonumber(id:sub(2)) % 4, id)
    end
  end)

  it("loads a vector file made by `onearm catalog load`", function()
    write_csv(dir .. "/b.csv", "o", DIM)
    local cmd = string.format("%s catalog load %s --dim %d --meta topic:cat,age:num --out %s 2>&1",
      H.quote(H.bin), H.quote(dir .. "/b.csv"), DIM, H.quote(dir .. "/b.oav"))
    local p = io.popen(cmd)
    local out = p:read("a")
    assert.is_true(p:close(), out)
    local status, body = server:post("/v1/actions:load", { path = dir .. "/b.oav" })
    assert.are.equal(200, status, H.json.encode(body))
    assert.are.equal(ITEMS, body.loaded)
    assert.are.equal(2 * ITEMS, actions())
    local got = rank(server, vec(7), { age = { 7, 7 } })
    assert.is_true(got.o7 and got.c7)
    for id in pairs(got) do assert.are.equal(7, tonumber(id:sub(2)) % 30, id) end
  end)

  it("refuses a bad file with the line at fault and changes nothing", function()
    local cases = {
      { function(i, cells) if i == 2 then table.remove(cells) end end, "line 4" },
      { function(i, cells) if i == 5 then cells[3] = "abc" end end, "v2 is not a number" },
      { function(i, cells) if i == 9 then cells[1] = "1e300" end end, "finite" },
    }
    for k, c in ipairs(cases) do
      local path = dir .. "/bad" .. k .. ".csv"
      write_csv(path, "bad", DIM, c[1])
      local status, body = server:post("/v1/actions:load", { path = path })
      assert.are.equal(400, status, H.json.encode(body))
      assert.truthy(body.error.message:find(c[2], 1, true), body.error.message)
      assert.are.equal(2 * ITEMS, actions())
    end
    write_csv(dir .. "/short.csv", "short", DIM - 2)
    local status, body = server:post("/v1/actions:load", { path = dir .. "/short.csv" })
    assert.are.equal(400, status)
    assert.truthy(body.error.message:find("expects " .. DIM, 1, true), body.error.message)
    status, body = server:post("/v1/actions:load", { path = dir .. "/missing.csv" })
    assert.are.equal(400, status)
    assert.truthy(body.error.message:find("missing.csv", 1, true), body.error.message)
    status, body = server:post("/v1/actions:load", { file = "x" })
    assert.are.equal(400, status)
    assert.truthy(body.error.message:find("'path'", 1, true), body.error.message)
    assert.are.equal(2 * ITEMS, actions())
  end)

  it("starts a server from a vector file", function()
    local dir2 = H.tmpdir()
    local other = H.server(dir2, dir .. "/app.lua")
    local ok, log = other:start("--snapshot-every 0 --no-watch --catalog " ..
      H.quote(dir .. "/b.oav"))
    assert(ok, log)
    local n = other:metric("onearm_retrieval_items")
    local got = rank(other, vec(11))
    other:stop()
    assert.are.equal(ITEMS, n)
    assert.is_true(got.o11)
    local text = H.read(other.log) or ""
    os.execute("rm -rf " .. H.quote(dir2))
    assert.truthy(text:find(ITEMS .. " actions from", 1, true), text)
  end)
end)
