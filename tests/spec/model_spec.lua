-- Models from Lua: every built-in family through oa.model.*, and a model
-- written in Lua over tensor operations.
local oa = require "onearm.core"

local function rows(n, d, seed)
  local X = oa.tensor(n, d)
  local s = seed or 1
  for i = 1, n do
    for j = 1, d do
      s = (s * 1103515245 + 12345) % 2147483648
      X:set(i, j, (s / 2147483648) - 0.5)
    end
  end
  return X
end

local function same_scores(m1, m2, X, arms)
  local a1, w1 = m1:score(X, arms)
  local a2, w2 = m2:score(X, arms)
  assert.are.same(a1:totable(), a2:totable())
  assert.are.same(w1:totable(), w2:totable())
end

-- constructor, args to score/update (arms) and fresh-copy constructor
local families = {
  ridge = function() return oa.model.ridge{dim = 4, lambda = 1} end,
  disjoint_ridge = function() return oa.model.disjoint_ridge{dim = 4, arms = 3} end,
  logistic = function() return oa.model.logistic{dim = 4} end,
  mlp = function() return oa.model.mlp{dim = 4, hidden = {8}, batch = 4, seed = 3} end,
  neural_linear = function() return oa.model.mlp{dim = 4, hidden = {8}, batch = 4, neural_linear = true, seed = 3} end,
  reinforce = function() return oa.model.reinforce{dim = 4} end,
  bernoulli_ts = function() return oa.model.bernoulli_ts{arms = 3} end,
  ucb1 = function() return oa.model.ucb1{arms = 3} end,
}

describe("model", function()
  for name, make in pairs(families) do
    it(name .. " scores, updates, and round-trips through save/load", function()
      local m = make()
      local d = m:dim()
      local per_arm = m:arms() > 0
      local X = rows(3, d, 7)
      local arms = per_arm and {1, 2, 3} or nil
      local means, widths = m:score(X, arms)
      assert.are.equal(3, means.rows)
      assert.are.equal(3, widths.rows)
      m:update(X, {1, 0, 1}, {0.5, 0.5, 0.5}, arms)
      m:update(X, {0, 1, 1}, nil, arms)
      assert.are.equal(6, m:updates())
      assert.is_true(m:size() > 0)
      local s = m:save()
      local fresh = make()
      fresh:load(s)
      same_scores(m, fresh, X, arms)
      assert.are.equal(6, fresh:updates())
    end)
  end

  it("learns the sign of a linear reward with ridge", function()
    local m = oa.model.ridge{dim = 2}
    local X = oa.tensor{{1, 0}, {0, 1}}
    for _ = 1, 20 do m:update(X, {1, -1}) end
    local means = m:score(X):totable()
    assert.is_true(means[1] > 0.9 and means[2] < -0.9)
  end)

  it("reads and sets hyper-parameters", function()
    local m = oa.model.ridge{dim = 2, forget = 0.99}
    assert.are.equal(0.99, m:get("forget"))
    m:set("forget", 0.5)
    assert.are.equal(0.5, m:get("forget"))
    assert.has_error(function() m:set("nope", 1) end)
    assert.has_error(function() m:set("forget", 0 / 0) end)
  end)

  it("rejects NaN and Inf in updates and leaves the model unchanged", function()
    local m = oa.model.ridge{dim = 2}
    local X = oa.tensor{{1, 0}, {0, 1}}
    m:update(X, {1, 0})
    local before = m:score(X):totable()
    local bad = oa.tensor{{1, 0}, {0 / 0, 1}}
    assert.has_error(function() m:update(bad, {1, 1}) end, "update: row 2 of X contains NaN or Inf")
    assert.has_error(function() m:update(X, {1, math.huge}) end, "update: reward 2 is not a finite number")
    assert.has_error(function() m:update(X, {1, 0 / 0}) end)
    assert.has_error(function() m:update(X, {1, 1}, {0, 1}) end)
    assert.has_error(function() m:score(bad) end, "score: row 2 of X contains NaN or Inf")
    assert.are.same(before, m:score(X):totable())
    assert.are.equal(2, m:updates())
  end)

  it("rejects wrong types and dimensions with clear messages", function()
    local m = oa.model.ridge{dim = 3}
    assert.has_error(function() m:score(oa.tensor(2, 2)) end,
      "score: X has 2 columns, the ridge model expects 3 features per row")
    assert.has_error(function() m:score("x") end)
    assert.has_error(function() m:update(oa.tensor(2, 3), {1}) end, "update: rewards: expected 2 numbers, got 1")
    assert.has_error(function() m:load("garbage") end)
    assert.has_error(function() oa.model.ridge{dim = 3, lamda = 1} end, "model.ridge: unknown option 'lamda'")
    assert.has_error(function() oa.model.ridge{} end)
    assert.has_error(function() oa.model.ridge{dim = 2.5} end, "model.ridge: 'dim' must be an integer, got number")
    assert.has_error(function() oa.model.mlp{dim = 2, output = "tanh"} end)
    local dj = oa.model.disjoint_ridge{dim = 2, arms = 2}
    assert.has_error(function() dj:score(oa.tensor(1, 2)) end, "score: the disjoint_ridge model needs an arm per row")
    assert.has_error(function() dj:score(oa.tensor(1, 2), {3}) end)
    assert.has_error(function() m:score(oa.tensor(1, 3), {1}) end)
    -- a saved ridge of another dimension does not load
    assert.has_error(function() m:load(oa.model.ridge{dim = 2}:save()) end)
  end)

  it("accepts one row given as a dim x 1 vector", function()
    local m = oa.model.ridge{dim = 3}
    local means = m:score(oa.vector{1, 2, 3})
    assert.are.equal(1, means.rows)
  end)

  describe("written in Lua", function()
    -- Ridge regression built from tensor operations: A = λI + Σ x xᵀ, b = Σ r x.
    local ONE = oa.eye(1)
    local function lua_ridge(dim)
      return oa.model.lua{
        dim = dim,
        A = oa.eye(dim), b = oa.vector(dim),
        score = function(self, X)
          local theta = self.A:cholesky():cholesky_solve(self.b)
          return X:mv(theta)
        end,
        update = function(self, x, r)
          self.A:ger(1, x, x)
          self.b:axpy(r, x:mm(ONE, true)) -- x is a 1 x dim row; b is dim x 1
        end,
        save = function(self)
          local out = {}
          for _, v in ipairs(self.b:totable()) do out[#out + 1] = string.format("%.17g", v) end
          for _, r in ipairs(self.A:totable()) do
            for _, v in ipairs(r) do out[#out + 1] = string.format("%.17g", v) end
          end
          return table.concat(out, ",")
        end,
        load = function(self, s)
          local v = {}
          for x in s:gmatch("[^,]+") do v[#v + 1] = tonumber(x) end
          for i = 1, dim do self.b[i] = v[i] end
          for i = 1, dim do for j = 1, dim do self.A:set(i, j, v[dim + (i - 1) * dim + j]) end end
        end,
      }
    end

    it("scores and learns through tensor operations, and saves its state", function()
      local m = lua_ridge(2)
      local X = oa.tensor{{1, 0}, {0, 1}}
      for _ = 1, 20 do m:update(X, {1, 0}) end
      local means = m:score(X):totable()
      assert.is_true(means[1] > 0.9 and math.abs(means[2]) < 0.1)
      assert.are.equal("lua", m:kind())
      assert.are.equal(40, m:updates())
      local copy = lua_ridge(2)
      copy:load(m:save())
      same_scores(m, copy, X)
      assert.are.equal(40, copy:updates())
    end)

    it("needs save and load functions to be saved", function()
      local m = oa.model.lua{dim = 1, score = function() return {0} end, update = function() end}
      assert.matches("'save' is not a function", select(2, pcall(m.save, m)))
    end)

    it("gets a row view that dies when the call returns", function()
      local kept
      local m = oa.model.lua{dim = 2,
        score = function(self, X) kept = X; return {X:get(1, 1)} end,
        update = function() end}
      local means = m:score(oa.tensor{{5, 6}})
      assert.are.equal(5, means[1])
      assert.has_error(function() kept:get(1, 1) end)
      assert.matches("no longer valid", select(2, pcall(kept.get, kept, 1, 1)))
    end)

    it("turns a Lua error into a Lua error from score or update", function()
      local m = oa.model.lua{dim = 1,
        score = function() error("score broke") end,
        update = function() error("update broke") end}
      assert.has_error(function() m:score(oa.tensor(1, 1)) end)
      assert.matches("score broke", select(2, pcall(m.score, m, oa.tensor(1, 1))))
      assert.matches("update broke", select(2, pcall(m.update, m, oa.tensor(1, 1), {1})))
    end)

    it("validates what the score function returns", function()
      local m = oa.model.lua{dim = 1, score = function(_, X) return {1, 2, 3} end, update = function() end}
      assert.matches("expected 1 numbers, got 3", select(2, pcall(m.score, m, oa.tensor(1, 1))))
      local nan = oa.model.lua{dim = 1, score = function() return {0 / 0} end, update = function() end}
      assert.matches("must be finite", select(2, pcall(nan.score, nan, oa.tensor(1, 1))))
      assert.has_error(function() oa.model.lua{dim = 1, score = 1, update = function() end} end,
        "model.lua: 'score' must be a function")
    end)

    it("reads and sets parameters on self", function()
      local m = oa.model.lua{dim = 1, score = function() return {0} end, update = function() end, alpha = 2}
      assert.are.equal(2, m:get("alpha"))
      m:set("alpha", 3)
      assert.are.equal(3, m:get("alpha"))
    end)
  end)
end)
