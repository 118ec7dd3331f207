-- The Lua standard library (scripts/onearm/): schedules, reward composers,
-- presets, policies, app validation and loading, field helpers.
local oa = require "onearm"

local function tmpdir()
  local path = os.tmpname()
  os.remove(path)
  assert(os.execute("mkdir -p '" .. path .. "'"))
  return path
end

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

local function space()
  return oa.features { dim = 32, context = { device = "cat" }, action = { topic = "cat" },
                       cross = { { "device", "topic" } } }
end

describe("oa.schedule", function()
  it("constant returns the same values, in a fresh table each time", function()
    local s = oa.schedule.constant { epsilon = 0.1 }
    local a = s(0)
    a.epsilon = 9
    assert.same({ epsilon = 0.1 }, s(1000))
  end)

  it("decay follows start / sqrt(1 + t / scale) down to the floor", function()
    local s = oa.schedule.decay { alpha = { start = 1, floor = 0.2, scale = 100 } }
    assert.near(1, s(0).alpha, 1e-12)
    assert.near(0.5, s(300).alpha, 1e-12) -- 1 / sqrt(4)
    assert.near(0.2, s(1e9).alpha, 1e-12)
  end)

  it("decay keeps plain numbers constant", function()
    local s = oa.schedule.decay { epsilon = 0.05 }
    assert.equal(0.05, s(0).epsilon)
    assert.equal(0.05, s(1e6).epsilon)
  end)

  it("step switches at each bound and holds the last entry after it", function()
    local s = oa.schedule.step { { 10, { epsilon = 0.3 } }, { 100, { epsilon = 0.1 } } }
    assert.equal(0.3, s(0).epsilon)
    assert.equal(0.3, s(9).epsilon)
    assert.equal(0.1, s(10).epsilon)
    assert.equal(0.1, s(5000).epsilon)
  end)

  it("warmup uses its first params, then the second schedule from t - n", function()
    local s = oa.schedule.warmup(50, { epsilon = 1 },
      oa.schedule.decay { epsilon = { start = 0.4, floor = 0, scale = 10 } })
    assert.equal(1, s(49).epsilon)
    assert.near(0.4, s(50).epsilon, 1e-12)
    assert.near(0.2, s(80).epsilon, 1e-12)
  end)

  it("rejects bad specs with the name of the bad entry", function()
    assert.error_matches(function() oa.schedule.step { { 10, { epsilon = "x" } } } end,
      "param 'epsilon' must be a number")
    assert.error_matches(function() oa.schedule.step { { 10, {} }, { 5, {} } } end,
      "entry 2: until_t must increase")
    assert.error_matches(function() oa.schedule.decay { alpha = { strat = 1 } } end,
      "unknown option 'strat'")
  end)
end)

describe("oa.reward", function()
  it("weighted sums signals with booleans as 0/1 and missing ones as 0", function()
    local r = oa.reward.weighted { watched = 0.6, liked = 0.3, shared = 0.1 }
    assert.near(0.6 * 0.5 + 0.3, r { watched = 0.5, liked = true, shared = false }, 1e-12)
    assert.near(0.1, r { shared = true }, 1e-12)
    assert.equal(0, r {})
  end)

  it("weighted names a signal of the wrong type", function()
    local r = oa.reward.weighted { liked = 1 }
    assert.error_matches(function() r { liked = "yes" } end, "signal 'liked'")
  end)

  it("clip keeps the reward within bounds", function()
    local r = oa.reward.clip(oa.reward.weighted { watched = 2 }, 0, 1)
    assert.equal(1, r { watched = 0.9 })
    assert.equal(0.5, r { watched = 0.25 })
    assert.equal(0, r { watched = -3 })
  end)

  it("signal picks one signal", function()
    assert.equal(1, oa.reward.signal "clicked" { clicked = true })
  end)
end)

describe("presets", function()
  it("linucb is a ridge model with the ucb explorer", function()
    local p = oa.linucb { alpha = 2, forget = 0.99 }
    assert.equal("ridge", p.model)
    assert.equal("ucb", p.explore)
    assert.equal(2, p.params.alpha)
    assert.equal(0.99, p.options.forget)
    assert.equal(1, p.options.lambda)
  end)

  it("per_action selects the disjoint ridge model", function()
    local p = oa.lints { per_action = true, arms = 10 }
    assert.equal("disjoint_ridge", p.model)
    assert.equal(10, p.options.arms)
    assert.equal("thompson", p.explore)
  end)

  it("every preset has a model and an explorer", function()
    local made = {
      oa.linucb(), oa.lints(), oa.egreedy(), oa.squarecb(), oa.neural(), oa.neural_linear(),
      oa.reinforce(), oa.logistic(), oa.bernoulli_ts { arms = 3 }, oa.ucb1 { arms = 3 },
    }
    for _, p in ipairs(made) do
      assert.is_string(p.model)
      assert.is_string(p.explore)
    end
    assert.is_true(oa.neural_linear().options.neural_linear)
    assert.is_false(oa.neural().options.neural_linear)
  end)

  it("every preset builds a policy that decides and learns in a real engine", function()
    local policy = require "onearm.policy"
    local made = {
      linucb = oa.linucb(), lints = oa.lints(), egreedy = oa.egreedy(), squarecb = oa.squarecb(),
      disjoint = oa.linucb { per_action = true, arms = 8 }, neural = oa.neural(),
      neural_linear = oa.neural_linear(), reinforce = oa.reinforce(), logistic = oa.logistic(),
      bernoulli_ts = oa.bernoulli_ts { arms = 4 }, ucb1 = oa.ucb1 { arms = 4 },
    }
    local cands = { { id = "x", features = { topic = "a" } }, { id = "y", features = { topic = "b" } } }
    for name, preset in pairs(made) do
      local eng = oa.engine {}
      policy.instantiate(oa, eng, name, oa.policy { features = space(), model = preset })
      for _ = 1, 3 do
        local d = eng:decide(name, { device = "phone" }, cands)
        eng:learn(d.event_id, 1)
      end
      assert.equal(3, eng:stats(name).decisions, name)
    end
  end)

  it("reinforce's explorer uses the model's temperature", function()
    local p = oa.reinforce { temperature = 0.5 }
    assert.equal("softmax", p.explore)
    assert.equal(0.5, p.params.temperature)
    assert.equal(0.5, p.options.temperature)
  end)

  it("names an unknown option", function()
    assert.error_matches(function() oa.linucb { alhpa = 1 } end, "oa.linucb: unknown option 'alhpa'")
  end)

  it("context-free presets need arms", function()
    assert.error_matches(function() oa.ucb1 {} end, "'arms'")
  end)
end)

describe("oa.policy", function()
  it("pairs a feature space with a preset and takes overrides", function()
    local p = oa.policy { features = space(), model = oa.egreedy(), epsilon = 0.2 }
    assert.equal("egreedy", p.explore)
    assert.equal(0.2, p.params.epsilon)
  end)

  it("needs a model and a feature space", function()
    assert.error_matches(function() oa.policy { features = space() } end, "'model' is required")
    assert.error_matches(function() oa.policy { model = oa.linucb() } end, "'features'")
    assert.error_matches(function() oa.policy { features = space(), model = "linucb" } end,
      "must be a preset")
  end)
end)

describe("oa.app", function()
  local function valid()
    return { policies = { p = oa.policy { features = space(), model = oa.linucb() } } }
  end

  it("fills defaults", function()
    local a = oa.app(valid())
    assert.same({ "p" }, a.policies)
    assert.equal(0, a.default_reward)
    assert.equal("sum", a.combine)
    assert.equal(0.25, a:compose { reward = 0.25 })
  end)

  it("names an unknown key", function()
    local spec = valid()
    spec.rewrd = function() return 0 end
    assert.error_matches(function() oa.app(spec) end, "unknown key 'rewrd'")
  end)

  it("names a policy that was not made with oa.policy", function()
    assert.error_matches(function() oa.app { policies = { bad = { model = 1 } } } end,
      "policy 'bad' must be made with oa.policy")
  end)

  it("rejects bad hooks and settings by name", function()
    local cases = {
      { "reward", 1, "'reward' must be a function" },
      { "schedule", "x", "'schedule' must be a function" },
      { "reward_wait", -1, "'reward_wait'" },
      { "default_reward", "0", "'default_reward'" },
      { "combine", "avg", "'combine'" },
    }
    for _, c in ipairs(cases) do
      local spec = valid()
      spec[c[1]] = c[2]
      assert.error_matches(function() oa.app(spec) end, c[3], nil, true)
    end
    assert.error_matches(function() oa.app { policies = {} } end, "'policies'")
  end)

  it("gives each policy only the schedule keys its explorer reads", function()
    local a = oa.app {
      policies = { u = oa.policy { features = space(), model = oa.linucb() },
                   e = oa.policy { features = space(), model = oa.egreedy() } },
      schedule = oa.schedule.constant { alpha = 0.3, epsilon = 0.1 },
    }
    assert.same({ alpha = 0.3 }, a:params_at("u", 0))
    assert.same({ epsilon = 0.1 }, a:params_at("e", 0))
  end)

  it("rejects a reward hook that returns no number", function()
    local spec = valid()
    spec.reward = function() return 0 / 0 end
    assert.error_matches(function() oa.app(spec):compose {} end, "finite number")
  end)
end)

describe("oa.load_app", function()
  it("runs the app in a sandbox, requires from its folder and builds the policies", function()
    local dir = tmpdir()
    write(dir .. "/helper.lua", "return { weight = 0.5, io = io }\n")
    write(dir .. "/app.lua", [[
      local oa = require "onearm"
      local helper = require "helper"
      assert(io == nil and os.execute == nil, "sandbox leaks")
      local fs = oa.features { dim = 16, context = { a = "cat" }, action = { b = "cat" } }
      return oa.app {
        policies = { one = oa.policy { features = fs, model = oa.linucb() },
                     two = oa.policy { features = fs, model = oa.egreedy() } },
        reward = oa.reward.weighted { clicked = helper.weight },
      }
    ]])
    local a = oa.load_app(dir .. "/app.lua")
    assert.same({ "one", "two" }, a.policies)
    assert.same({ "one", "two" }, a.engine:policies())
    assert.matches("^%x+$", a.version)
    assert.equal(0.5, a:compose { clicked = true })
    local d = a.engine:decide("one", { a = "x" }, { { id = "v1", features = { b = "y" } },
                                                     { id = "v2", features = { b = "z" } } })
    assert.is_string(d.event_id)
  end)

  it("builds only the policies asked for, in the engine given", function()
    local dir = tmpdir()
    write(dir .. "/app.lua", [[
      local oa = require "onearm"
      local fs = oa.features { dim = 16, context = { a = "cat" }, action = { b = "cat" } }
      return oa.app { policies = { one = oa.policy { features = fs, model = oa.linucb() },
                                   two = oa.policy { features = fs, model = oa.linucb() } } }
    ]])
    local eng = oa.engine { seed = 3 }
    local a = oa.load_app(dir .. "/app.lua", eng, { only = { "two" } })
    assert.equal(eng, a.engine)
    assert.same({ "two" }, eng:policies())
    assert.same({ "one", "two" }, a.declared)
  end)

  it("reports a script error with file and line", function()
    local dir = tmpdir()
    write(dir .. "/app.lua", "local oa = require 'onearm'\n\nreturn oa.app { polices = {} }\n")
    -- (luassert strips positions from error messages, so look at the raw one)
    local ok, err = pcall(oa.load_app, dir .. "/app.lua")
    assert.is_false(ok)
    assert.matches("app.lua:3: oa.app: unknown key 'polices'", err, 1, true)
  end)

  it("hashes the source text", function()
    local app = require "onearm.app"
    assert.equal(app.hash("abc"), app.hash("abc"))
    assert.not_equal(app.hash("abc"), app.hash("abd"))
    assert.equal("cbf29ce484222325", app.hash("")) -- FNV-1a 64 offset basis
  end)
end)

describe("field helpers", function()
  it("expand to the table form of oa.features", function()
    assert.same({ kind = "num", log = true }, oa.field.log())
    assert.same({ kind = "cyclic", period = 24 }, oa.field.cyclic(24))
    assert.same({ kind = "dense", length = 8 }, oa.field.dense(8))
    assert.same({ { "a", "b" }, { "c", "d" } }, oa.cross({ "a", "b" }, { "c", "d" }))
    local fs = oa.features { dim = 16, context = { h = oa.field.cyclic(24),
                                                    n = oa.field.num { clip = { 0, 1 } } },
                             action = { d = oa.field.log() } }
    assert.equal(16, fs:dim())
  end)

  it("name a bad option", function()
    assert.error_matches(function() oa.field.num { lgo = true } end, "unknown option 'lgo'")
  end)
end)

describe("onearm.rng", function()
  it("is deterministic from its seed", function()
    local rng = require "onearm.rng"
    local a, b = rng.new(42), rng.new(42)
    for _ = 1, 100 do assert.equal(a:random(), b:random()) end
    local x = a:random()
    assert.is_true(x >= 0 and x < 1)
  end)
end)
