-- The engine from Lua: policies, decide/learn, the catalog, Lua explorers
-- and Lua models plugged into the decision path, and every error path.
local oa = require "onearm.core"

local function space()
  return oa.features{dim = 64, context = {user = "cat"}, action = {topic = "cat"},
                     cross = {{"user", "topic"}}}
end

local function inline(...)
  local out = {}
  for _, t in ipairs{...} do out[#out + 1] = {id = t, features = {topic = t}} end
  return out
end

local function setup(explore, extra)
  local eng = oa.engine{seed = 42}
  local spec = {features = space(), model = oa.model.ridge{dim = 64}, explore = explore or "egreedy"}
  for k, v in pairs(extra or {}) do spec[k] = v end
  eng:add_policy("p", spec)
  return eng, spec.model
end

describe("engine", function()
  it("decides with probabilities summing to 1 and a valid chosen index", function()
    for _, ex in ipairs{"greedy", "egreedy", "softmax", "ucb", "thompson", "squarecb"} do
      local eng = setup(ex)
      local d = eng:decide("p", {user = "u1"}, inline("a", "b", "c"))
      local sum = 0
      for _, p in ipairs(d.probs) do sum = sum + p end
      assert.is_true(math.abs(sum - 1) < 1e-9, ex)
      assert.is_true(d.chosen >= 1 and d.chosen <= 3)
      assert.are.equal(({"a", "b", "c"})[d.chosen], d.action)
      assert.are.equal(d.probs[d.chosen], d.prob)
      assert.are.equal(3, #d.scores)
      assert.are.equal(3, #d.widths)
      assert.are.equal("string", type(d.event_id))
      assert.are.equal(ex == "thompson", d.estimated)
    end
  end)

  it("makes the same choice for the same seed and event id", function()
    local choices = {}
    for run = 1, 2 do
      local eng = setup("egreedy", {epsilon = 0.9})
      choices[run] = {}
      for i = 1, 20 do
        choices[run][i] = eng:decide("p", {user = "u"}, inline("a", "b", "c", "d"),
                                     {event_id = "ev" .. i}).chosen
      end
    end
    assert.are.same(choices[1], choices[2])
  end)

  it("learns by event id, once", function()
    local eng, m = setup("greedy")
    local d = eng:decide("p", {user = "u"}, inline("a", "b"))
    assert.are.equal(1, eng:pending())
    eng:learn(d.event_id, 1)
    assert.are.equal(0, eng:pending())
    assert.are.equal(1, m:updates())
    local st = eng:stats("p")
    assert.are.equal(1, st.decisions)
    assert.are.equal(1, st.rewards)
    assert.are.equal(1, st.avg_reward)
    assert.are.equal("ridge", st.kind)
    assert.are.equal("greedy", st.explore)
    assert.are.equal(64, st.dim)
    assert.has_error(function() eng:learn(d.event_id, 1) end)
  end)

  it("keeps no event when asked not to", function()
    local eng = setup()
    eng:decide("p", {user = "u"}, inline("a"), {keep = false})
    assert.are.equal(0, eng:pending())
  end)

  it("learns from explicit examples and prefers the rewarded action", function()
    local eng, m = setup("greedy")
    for _ = 1, 30 do
      eng:learn_example("p", {user = "u"}, {id = "b", features = {topic = "b"}}, 1, 0.5)
      eng:learn_example("p", {user = "u"}, {id = "a", features = {topic = "a"}}, 0)
    end
    assert.are.equal(60, m:updates())
    assert.are.equal("b", eng:decide("p", {user = "u"}, inline("a", "b")).action)
  end)

  it("ranks candidates from the catalog by id", function()
    local eng = setup("greedy")
    eng:upsert("v1", {topic = "cats"})
    eng:upsert("v2", {topic = "cars"})
    assert.are.equal(2, eng:catalog_count())
    for _ = 1, 20 do eng:learn_example("p", {user = "u"}, "v2", 1) end
    local d = eng:decide("p", {user = "u"}, {"v1", "v2"})
    assert.are.equal("v2", d.action)
    assert.is_true(eng:remove("v1"))
    assert.is_false(eng:remove("v1"))
    assert.has_error(function() eng:decide("p", {user = "u"}, {"v1"}) end,
      "decide: unknown action 'v1'")
  end)

  it("changes explorer parameters per policy and per decision", function()
    local eng = setup("egreedy", {epsilon = 0.2})
    assert.are.equal(0.2, eng:stats("p").params.epsilon)
    eng:set_params("p", {epsilon = 0})
    assert.are.equal(0, eng:stats("p").params.epsilon)
    local d = eng:decide("p", {user = "u"}, inline("a", "b"), {epsilon = 1})
    assert.are.same({0.5, 0.5}, d.probs)
    assert.has_error(function() eng:set_params("p", {epsilon = 2}) end)
    assert.has_error(function() eng:set_params("p", {epsilom = 0}) end, "set_params: unknown option 'epsilom'")
  end)

  it("saves and loads a policy's model", function()
    local eng, m = setup("greedy")
    for _ = 1, 5 do eng:learn_example("p", {user = "u"}, {id = "a", features = {topic = "a"}}, 1) end
    local s = eng:save_policy("p")
    local eng2, m2 = setup("greedy")
    eng2:load_policy("p", s)
    local a = eng:decide("p", {user = "u"}, inline("a", "b"))
    local b = eng2:decide("p", {user = "u"}, inline("a", "b"))
    assert.are.same(a.scores, b.scores)
    assert.are.equal(m:updates(), m2:updates())
  end)

  it("keeps a model handle usable after add_policy, and invalid after removal", function()
    local eng, m = setup("greedy")
    assert.are.equal("ridge", m:kind())
    eng:learn_example("p", {user = "u"}, {id = "a", features = {topic = "a"}}, 1)
    assert.are.equal(1, m:updates())
    assert.has_error(function() eng:add_policy("q", {features = space(), model = m}) end,
      "add_policy: the model already belongs to a policy")
    assert.are.same({"p"}, eng:policies())
    eng:remove_policy("p")
    assert.are.same({}, eng:policies())
    assert.has_error(function() m:kind() end)
    local eng2, m2 = setup()
    eng2:close()
    eng2:close()
    assert.has_error(function() m2:kind() end)
    assert.has_error(function() eng2:pending() end)
  end)

  it("keeps the engine alive while a model handle refers to it", function()
    local m
    do
      local eng
      eng, m = setup("greedy")
    end
    collectgarbage()
    collectgarbage()
    assert.are.equal(0, m:updates())
  end)

  describe("rejects bad input with no state change", function()
    it("NaN or Inf rewards", function()
      local eng, m = setup("greedy")
      local X = space():encode({user = "u"}, {topic = "a"})
      local before = m:score(X):totable()
      local d = eng:decide("p", {user = "u"}, inline("a", "b"))
      assert.has_error(function() eng:learn(d.event_id, 0 / 0) end, "learn: reward is not a finite number")
      assert.has_error(function() eng:learn(d.event_id, math.huge) end)
      assert.has_error(function() eng:learn(d.event_id, "1") end, "learn: reward must be a number, got string")
      assert.has_error(function()
        eng:learn_example("p", {user = "u"}, {id = "a", features = {topic = "a"}}, 0 / 0)
      end, "learn_example: reward is not a finite number")
      assert.are.same(before, m:score(X):totable())
      assert.are.equal(0, m:updates())
      assert.are.equal(1, eng:pending())
      eng:learn(d.event_id, 1) -- the event is still there
    end)

    it("NaN or Inf in features", function()
      local fs = oa.features{dim = 16, context = {x = "num"}, action = {y = "num"}}
      local eng = oa.engine()
      local m = oa.model.ridge{dim = 16}
      eng:add_policy("p", {features = fs, model = m})
      assert.has_error(function() eng:decide("p", {x = 0 / 0}, {{id = "a", features = {y = 1}}}) end)
      assert.matches("field 'x'", select(2, pcall(eng.decide, eng, "p", {x = 0 / 0}, {"a"})))
      assert.matches("field 'y'", select(2, pcall(eng.decide, eng, "p", {x = 1},
        {{id = "a", features = {y = math.huge}}})))
      assert.has_error(function()
        eng:learn_example("p", {x = 1}, {id = "a", features = {y = 0 / 0}}, 1)
      end)
      assert.are.equal(0, m:updates())
      assert.are.equal(0, eng:pending())
      assert.has_error(function() eng:upsert("v", {y = 0 / 0}) end)
      assert.are.equal(0, eng:catalog_count())
    end)

    it("unknown policies, actions, events and options", function()
      local eng = setup()
      assert.has_error(function() eng:decide("nope", {}, {"a"}) end, "decide: unknown policy 'nope'")
      assert.has_error(function() eng:decide("p", {user = "u"}, {"ghost"}) end, "decide: unknown action 'ghost'")
      assert.has_error(function() eng:learn("no-such-event", 1) end)
      assert.has_error(function() eng:decide("p", {user = "u"}, {}) end)
      assert.has_error(function() eng:decide("p", {user = "u"}, "a") end)
      assert.has_error(function() eng:decide("p", {user = "u"}, {true}) end)
      assert.has_error(function() eng:decide("p", {user = "u"}, {"a"}, {evnt = 1}) end,
        "decide: unknown option 'evnt'")
      assert.has_error(function() eng:decide("p", 5, {"a"}) end)
      assert.has_error(function() eng:stats("nope") end, "stats: unknown policy 'nope'")
      assert.has_error(function() eng:remove_policy("nope") end)
      assert.has_error(function() eng:learn_example("p", {}, {id = "a", features = {topic = "a"}}, 1, 2) end)
    end)

    it("bad policies and explorer parameters", function()
      local eng = oa.engine()
      assert.has_error(function() eng:add_policy("p", {features = space(), model = oa.model.ridge{dim = 64}, explore = "wild"}) end)
      assert.has_error(function() eng:add_policy("p", {features = space(), model = oa.model.ridge{dim = 64}, explore = "egreedy", epsilon = 3}) end)
      assert.has_error(function() eng:add_policy("p", {features = space(), model = oa.model.ridge{dim = 8}}) end)
      assert.has_error(function() eng:add_policy("p", {features = space()}) end,
        "add_policy: 'model' must be a model (oa.model.*)")
      local m = oa.model.ridge{dim = 64}
      assert.has_error(function() eng:add_policy("p", {features = space(), model = m, explore = "ucb", alpha = -1}) end)
      -- a failed add leaves the model with its handle
      assert.are.equal("ridge", m:kind())
      eng:add_policy("p", {features = space(), model = m})
      assert.has_error(function() eng:add_policy("p", {features = space(), model = oa.model.ridge{dim = 64}}) end,
        "add_policy: policy 'p' already exists")
      assert.has_error(function() oa.explore("ucb", {1, 2}, {0, 0}, {alpha = -1}) end)
      assert.has_error(function() oa.explore("nope", {1, 2}) end)
    end)
  end)

  describe("with Lua explorers", function()
    it("plugs a Lua function into decide", function()
      local seen
      local eng = setup(function(scores, widths, context, step)
        seen = {n = #scores, user = context.user, step = step, w = #widths}
        return {0.25, 0.75}
      end)
      local d = eng:decide("p", {user = "u9"}, inline("a", "b"))
      assert.are.same({0.25, 0.75}, d.probs)
      assert.are.same({n = 2, user = "u9", step = 0, w = 2}, seen)
      eng:learn(d.event_id, 1)
      assert.are.equal("custom", eng:stats("p").explore)
    end)

    it("surfaces an erroring explorer as a Lua error from decide", function()
      local eng = setup(function() error("explorer exploded") end)
      local ok, msg = pcall(eng.decide, eng, "p", {user = "u"}, inline("a", "b"))
      assert.is_false(ok)
      assert.matches("explorer exploded", msg)
      assert.are.equal(0, eng:pending())
    end)

    it("rejects invalid probabilities", function()
      for _, bad in ipairs{{0.5, 0.6}, {-0.5, 1.5}, {1}, {0 / 0, 1}} do
        local eng = setup(function() return bad end)
        assert.has_error(function() eng:decide("p", {user = "u"}, inline("a", "b")) end)
      end
    end)
  end)

  describe("with a Lua model", function()
    -- Per-arm ridge regression written in Lua over tensors.
    local function lua_ridge(dim, lambda)
      local ONE = oa.eye(1)
      return oa.model.lua{
        dim = dim,
        A = oa.eye(dim, lambda), b = oa.vector(dim),
        score = function(self, X)
          local L = self.A:cholesky()
          local means = X:mv(L:cholesky_solve(self.b))
          local widths = {}
          for i = 1, X.rows do
            local x = X:row(i):mm(ONE, true)
            widths[i] = math.sqrt(x:dot(L:cholesky_solve(x)))
          end
          return means, widths
        end,
        update = function(self, x, r)
          self.A:ger(1, x, x)
          self.b:axpy(r, x:mm(ONE, true))
        end,
      }
    end

    it("learns to pick the better arm through decide and learn", function()
      local fs = oa.features{layout = "concat", bias = false, action = {arm = {kind = "cat", buckets = 16}}}
      local eng = oa.engine{seed = 7}
      eng:add_policy("lua", {features = fs, model = lua_ridge(fs:dim(), 1), explore = "ucb", alpha = 0.5})
      local rng = 12345
      local function rand() rng = (rng * 1103515245 + 12345) % 2147483648; return rng / 2147483648 end
      local cands = {{id = "good", features = {arm = "good"}}, {id = "bad", features = {arm = "bad"}}}
      for _ = 1, 200 do
        local d = eng:decide("lua", {}, cands)
        local p = d.action == "good" and 0.8 or 0.3
        eng:learn(d.event_id, rand() < p and 1 or 0)
      end
      local good = 0
      for i = 1, 50 do
        if eng:decide("lua", {}, cands, {keep = false, event_id = "t" .. i}).action == "good" then good = good + 1 end
      end
      assert.is_true(good >= 45, "picked the better arm " .. good .. "/50")
      assert.are.equal(200, eng:stats("lua").rewards)
    end)

    it("surfaces a score error as a Lua error from decide", function()
      local eng = oa.engine()
      eng:add_policy("p", {features = space(), model = oa.model.lua{dim = 64,
        score = function() error("no scores today") end, update = function() end}})
      assert.matches("no scores today", select(2, pcall(eng.decide, eng, "p", {user = "u"}, inline("a"))))
    end)

    it("surfaces an update error from learn and keeps the event pending", function()
      local eng = oa.engine()
      eng:add_policy("p", {features = space(), model = oa.model.lua{dim = 64,
        score = function(_, X) local t = {} for i = 1, X.rows do t[i] = 0 end return t end,
        update = function() error("cannot learn") end}})
      local d = eng:decide("p", {user = "u"}, inline("a", "b"))
      assert.matches("cannot learn", select(2, pcall(eng.learn, eng, d.event_id, 1)))
      assert.are.equal(1, eng:pending())
    end)
  end)
end)

describe("explore", function()
  it("runs a raw explorer", function()
    local probs, chosen, est = oa.explore("greedy", {0.1, 0.9, 0.3})
    assert.are.same({0, 1, 0}, probs)
    assert.are.equal(2, chosen)
    assert.is_false(est)
    local p2 = oa.explore("egreedy", {0.1, 0.9}, nil, {epsilon = 0.5}, 1)
    assert.are.same({0.25, 0.75}, p2)
  end)
end)

describe("eng:load_catalog", function()
  local function csv(rows)
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write("id,v0,v1,v2,topic,age\n", table.concat(rows, "\n"), "\n")
    f:close()
    return path
  end

  it("upserts a CSV into the catalog and the retrieval store, or changes nothing", function()
    local eng = oa.engine{seed = 1}
    eng:add_policy("p", {features = oa.features{layout = "concat", action = {emb = "dense:3"}},
                         model = oa.model.ridge{dim = 4}, explore = "greedy"})
    eng:set_retrieval{field = "emb", dim = 3, meta = {topic = "cat", age = "num"}}
    local good = csv{"a,1,0,0,music,3", "b,0,1,0,news,5", "c,0,0,1,music,9"}
    assert.are.equal(3, eng:load_catalog(good))
    assert.are.equal(3, eng:catalog_count())
    local r = eng:retrieve("p", {}, {n = 1, query = {0, 0, 2}})
    assert.are.same({"c"}, r.ids)
    r = eng:retrieve("p", {}, {n = 3, query = {1, 1, 1}, filters = {topic = "news"}})
    assert.are.same({"b"}, r.ids)
    local bad = csv{"d,1,0,0,music,1", "e,1,x,0,news,2"}
    local ok, msg = pcall(eng.load_catalog, eng, bad)
    assert.is_false(ok)
    assert.matches("line 3: v1 is not a number", msg)
    assert.are.equal(3, eng:catalog_count())
    local short = csv{"f,1,0"}
    ok, msg = pcall(eng.load_catalog, eng, short)
    assert.is_false(ok)
    assert.matches("columns", msg)
    ok, msg = pcall(eng.load_catalog, eng, "/nonexistent/catalog.csv")
    assert.is_false(ok)
    assert.matches("nonexistent", msg)
    assert.are.equal(3, eng:catalog_count())
    os.remove(good)
    os.remove(bad)
    os.remove(short)
  end)
end)
