-- Delayed rewards through the real `onearm serve`: events wait for their
-- rewards until the app's deadline, combine several reports, close with the
-- default reward when none came, refuse rewards after they closed; and the
-- server shrugs off clients that stop mid-request or hang up half-way.
local H = dofile((os.getenv("ONEARM_SOURCE_DIR") or ".") .. "/tests/integration/helpers.lua")
local json = require "dkjson"

local dir = H.tmpdir()
local app = dir .. "/app.lua"
local JSON = { "Content-Type: application/json" }

H.write(app, [[
local oa = require "onearm"
local space = oa.features { dim = 16, context = { device = "cat" }, action = { style = "cat" } }
return oa.app {
  policies = { p = oa.policy { features = space, model = oa.linucb { alpha = 0.5 } } },
  reward = function(s) return s.watched or 0 end,
  close = "deadline", reward_wait = 1, combine = "max", default_reward = -0.5,
}
]])

local function rank(server, id)
  return server:post("/v1/rank", json.encode {
    eventId = id, context = { device = "tv" },
    actions = { { id = "a", features = { style = "x" } }, { id = "b", features = { style = "y" } } },
  }, JSON)
end

describe("delayed rewards", function()
  local server = H.server(dir, app)
  setup(function() assert(server:start("--no-watch --snapshot-every 0")) end)
  teardown(function() server:stop() end)

  it("combines the rewards that arrive before the deadline, then learns once", function()
    assert.are.equal(200, (rank(server, "late-1")))
    for _, w in ipairs { 0.2, 0.9, 0.4 } do
      local status = server:post("/v1/events/late-1/reward", json.encode { signals = { watched = w } }, JSON)
      assert.are.equal(200, status)
    end
    local _, before = server:get("/v1/policies/p")
    assert.are.equal(0, before.rewards) -- still waiting for more
    H.sleep(1.6)
    local _, after = server:get("/v1/policies/p")
    assert.are.equal(1, after.rewards)
    assert.is_true(math.abs(after.averageReward - 0.9) < 1e-9) -- the max of the three
    local status, body = server:post("/v1/events/late-1/reward", json.encode { value = 1 }, JSON)
    assert.are.equal(409, status)
    assert.truthy(body.error.message:match("closed"))
  end)

  it("closes an event nobody rewarded with the default reward", function()
    assert.are.equal(200, (rank(server, "silent-1")))
    H.sleep(1.6)
    local _, p = server:get("/v1/policies/p")
    assert.are.equal(2, p.rewards)
    assert.is_true(math.abs(p.averageReward - (0.9 - 0.5) / 2) < 1e-9)
    assert.is_true(server:metric("onearm_events_defaulted_total") >= 1)
  end)

  it("keeps serving when clients stall or hang up mid-request", function()
    local port = server.url:match(":(%d+)$")
    -- a client that sends half a body and hangs up, one that sends only headers and stalls
    os.execute(string.format([[bash -c 'exec 3<>/dev/tcp/127.0.0.1/%s; printf "POST /v1/rank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{\"context\":" >&3; exec 3>&-' ]], port))
    os.execute(string.format([[bash -c 'exec 3<>/dev/tcp/127.0.0.1/%s; printf "POST /v1/rank HTTP/1.1\r\nHost: x\r\n" >&3; sleep 2' &]], port))
    for i = 1, 5 do assert.are.equal(200, (rank(server, "after-" .. i))) end
    local status = server:get("/healthz")
    assert.are.equal(200, status)
  end)
end)
