-- Exact scans of a large store leave the event loop: through the real
-- server, a catalog just over the offload threshold (17,000 x 64 float32,
-- 4.35 MB) is scanned on the thread pool while the loop answers other
-- requests. Ranks agree with brute force; ranks running concurrently with
-- upserts and removals all succeed, and once they are done no removed id
-- comes back and the new item is found. Needs ONEARM_BIN, curl and dkjson.
local H = dofile((os.getenv("ONEARM_SOURCE_DIR") or ".") .. "/tests/integration/helpers.lua")

local DIM, ITEMS = 64, 17000

local function vec(i) return H.item_vec(i, DIM) end
local dot, set_of, ids_of = H.dot, H.set_of, H.ids_of

-- The ids of the top n items for q, leaving out the ids in gone.
local function top(q, n, gone)
  local all = {}
  for i = 0, ITEMS - 1 do
    local id = "v" .. i
    if not (gone and gone[id]) then all[#all + 1] = { id = id, s = dot(q, vec(i)) } end
  end
  table.sort(all, function(a, b) return a.s > b.s end)
  local out = {}
  for k = 1, n do out[k] = all[k].id end
  return out
end

local function rank_body(q, n)
  return (H.json.encode({ retrieve = { query = q, mode = "exact", __n = n } })
    :gsub('"__n":', '"n":'))
end

describe("exact retrieval off the event loop", function()
  local dir, server

  setup(function()
    dir = H.tmpdir()
    H.write(dir .. "/app.lua", string.format([[
local oa = require "onearm"
local space = oa.features { layout = "concat", action = { emb = "dense:%d" } }
return oa.app {
  policies = { p = oa.policy { features = space, model = oa.egreedy { epsilon = 0.1 } } },
  retrieve = { field = "emb", dim = %d, n = 20, mode = "exact" },
}
]], DIM, DIM))
    local rows = {}
    local head = { "id" }
    for j = 0, DIM - 1 do head[#head + 1] = "v" .. j end
    rows[1] = table.concat(head, ",")
    for i = 0, ITEMS - 1 do
      local v = vec(i)
      for j = 1, DIM do v[j] = string.format("%.6f", v[j]) end
      rows[#rows + 1] = "v" .. i .. "," .. table.concat(v, ",")
    end
    H.write(dir .. "/catalog.csv", table.concat(rows, "\n") .. "\n")
    server = H.server(dir, dir .. "/app.lua")
    local ok, log = server:start("--snapshot-every 0 --no-watch --catalog " ..
      H.quote(dir .. "/catalog.csv"))
    assert(ok, log)
  end)

  teardown(function()
    if server then server:stop() end
    os.execute("rm -rf " .. H.quote(dir))
  end)

  it("scans on the thread pool and ranks the exact top n", function()
    local before = server:metric("onearm_retrieval_offloaded") or 0
    local q = vec(123456)
    local status, body = server:post("/v1/rank", rank_body(q, 10))
    assert.are.equal(200, status, H.json.encode(body))
    assert.are.same(set_of(top(q, 10)), set_of(ids_of(body)))
    assert.are.equal(before + 1, server:metric("onearm_retrieval_offloaded"))
    assert.are.equal(ITEMS, server:metric("onearm_retrieval_items"))
  end)

  it("ranks while the catalog changes, and never returns a removed id afterwards", function()
    local q = vec(777)
    local best = top(q, 30)
    H.write(dir .. "/rank.json", rank_body(q, 20))
    local strong = {}
    for j = 1, DIM do strong[j] = q[j] * 10 end
    H.write(dir .. "/strong.json", H.json.encode({ features = { emb = strong } }))
    -- 12 ranks in parallel, and meanwhile (another process) the 30 best
    -- items are removed one by one and a better one is added.
    local url, d = server.url, H.quote(dir)
    local script = {
      "cd " .. d,
      "for k in $(seq 1 12); do curl -s -o rank$k.out -w '%{http_code}' -X POST " ..
        "-H 'Content-Type: application/json' --data-binary @rank.json " ..
        url .. "/v1/rank > rank$k.code & done",
      "(",
    }
    for _, id in ipairs(best) do
      script[#script + 1] = "curl -s -o /dev/null -w '%{http_code}\\n' -X DELETE " ..
        url .. "/v1/actions/" .. id .. " >> changes.code"
    end
    script[#script + 1] = "curl -s -o /dev/null -w '%{http_code}\\n' -X PUT " ..
      "-H 'Content-Type: application/json' --data-binary @strong.json " ..
      url .. "/v1/actions/strong >> changes.code"
    script[#script + 1] = ") & wait"
    assert.is_true(os.execute(table.concat(script, "\n")))
    for k = 1, 12 do
      assert.are.equal("200", H.read(dir .. "/rank" .. k .. ".code"))
      local body = H.json.decode(H.read(dir .. "/rank" .. k .. ".out"))
      -- A shortlist drops the ids removed while its scan ran, so it may
      -- come back shorter than asked (retrieval.h).
      assert.is_true(#body.ranking >= 1 and #body.ranking <= 20)
      for _, id in ipairs(ids_of(body)) do
        assert.truthy(id == "strong" or id:match("^v%d+$"), id)
      end
    end
    for code in H.read(dir .. "/changes.code"):gmatch("%d+") do
      assert.is_true(code == "204" or code == "200" or code == "201", code)
    end
    -- Every change has reached the store: the best 30 are gone and the
    -- strong item leads.
    local status, body = server:post("/v1/rank", rank_body(q, 20))
    assert.are.equal(200, status, H.json.encode(body))
    local got = set_of(ids_of(body))
    for _, id in ipairs(best) do assert.is_nil(got[id], id) end
    assert.is_true(got.strong)
    local want = top(q, 19, set_of(best))
    want[#want + 1] = "strong"
    assert.are.same(set_of(want), got)
    assert.are.equal(ITEMS - 30 + 1, server:metric("onearm_retrieval_items"))
  end)

  it("applies catalog changes between batches under a steady stream of scans", function()
    H.write(dir .. "/rank.json", rank_body(vec(31337), 20))
    -- one curl keeping 16 ranks in flight, back to back (stopped below)
    local cfg = { "parallel", "parallel-max = 16", "silent",
                  'header = "Content-Type: application/json"',
                  'data-binary = "@' .. dir .. '/rank.json"' }
    for _ = 1, 30000 do
      cfg[#cfg + 1] = 'url = "' .. server.url .. '/v1/rank"'
      cfg[#cfg + 1] = 'output = "/dev/null"'
    end
    H.write(dir .. "/stream.cfg", table.concat(cfg, "\n") .. "\n")
    os.execute("curl --config " .. H.quote(dir .. "/stream.cfg") .. " >/dev/null 2>&1 &")
    H.sleep(0.3)
    local before = server:metric("onearm_retrieval_items")
    local fresh = {}
    for j = 1, DIM do fresh[j] = 0.01 * j end
    local status = server:request("PUT", "/v1/actions/during", { features = { emb = fresh } })
    assert.is_true(status == 200 or status == 201, tostring(status))
    -- the store has it well before the stream ends
    local seen
    for _ = 1, 20 do
      seen = server:metric("onearm_retrieval_items")
      if seen == before + 1 then break end
      H.sleep(0.05)
    end
    assert.are.equal(before + 1, seen)
    local offloaded = server:metric("onearm_retrieval_offloaded")
    H.sleep(0.3)
    assert.is_true(server:metric("onearm_retrieval_offloaded") > offloaded) -- still streaming
    os.execute("pkill -f " .. H.quote(dir .. "/stream.cfg"))
  end)
end)
