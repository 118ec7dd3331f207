-- Custom policies written in Lua, next to a built-in one:
--
--   explore_first  the built-in ridge model with an explorer written in Lua
--                  (uniform for 300 decisions, then the upper confidence bound)
--   lua_ts         a whole model written in Lua: linear Thompson sampling over
--                  tensor ops, with an informative prior (explore_first.lua,
--                  linear_ts.lua next to this file)
--   lints          the built-in linear Thompson sampling with a flat prior
--
--   onearm simulate examples/custom-policy/app.lua
local oa = require "onearm"
local explore_first = require "explore_first"
local linear_ts = require "linear_ts"

local SECTIONS = { "world", "politics", "business", "tech", "science", "sports", "culture",
                   "health" }

local space = oa.features {
  dim = 64,
  context = { follows = "set", device = "cat" },
  action = { section = "cat", popularity = "num", words = "log" },
  cross = { { "follows", "section" }, { "device", "words" } },
}

-- The prior, in words: readers click articles in the sections they follow,
-- and popular articles. In numbers: a direction in feature space for each
-- belief, found by encoding examples and subtracting (so it holds whatever
-- indexes the hashing picked), with a prior mean along it and extra
-- precision (confidence) along it; every other direction gets the flat
-- prior N(0, 1).
local function prior(fs, dim)
  local function phi(ctx, act) return fs:encode(ctx, act) end
  -- The popularity feature alone: φ(∅, pop=1) − φ(∅, pop=0).
  local popular = phi({}, { popularity = 1 }):axpy(-1, phi({}, { popularity = 0 }))
  local mean = popular:copy():scale(0.3)
  local precision = oa.eye(dim)
  precision:ger(5, popular, popular)
  -- The follows × section cross for each section, by inclusion-exclusion:
  -- φ(x, a) − φ(x, ∅) − φ(∅, a) + φ(∅, ∅).
  for _, s in ipairs(SECTIONS) do
    local x, a = { follows = { s } }, { section = s }
    local cross = phi(x, a):axpy(-1, phi(x, nil)):axpy(-1, phi({}, a)):axpy(1, phi({}, nil))
    mean:axpy(0.3, cross)
    precision:ger(5, cross, cross)
  end
  return mean, precision
end

return oa.app {
  policies = {
    explore_first = oa.policy {
      features = space,
      model = oa.linucb { lambda = 1 },
      explore = explore_first(300, 0.3),
    },
    lua_ts = oa.policy {
      features = space,
      model = function(dim, fs)
        local mean, precision = prior(fs, dim)
        return linear_ts.new { dim = dim, prior_mean = mean, prior_precision = precision,
                               v = 0.2, seed = 7 }
      end,
      explore = "thompson", draws = 16,
    },
    lints = oa.policy { features = space, model = oa.lints { v = 0.2, draws = 16 } },
  },
  reward = oa.reward.weighted { clicked = 1 },
}
