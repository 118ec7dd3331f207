-- The custom explorer of this folder on a real data set, through
-- `onearm cbify` (supervised to bandit: one action per class, reward 1 for
-- the true label):
--
--   onearm cbify ../shared/data/digits.csv.gz --policy examples/custom-policy/cbify_digits.lua
--
-- cbify's convention: the context field `x` holds the data set's feature
-- columns (64 for digits: change the length for another data set) and the
-- action field `class` the class id. The per-action ridge (one head per
-- class) scores each class from x alone; the explorer, written in Lua,
-- explores uniformly for 200 decisions and then follows the upper
-- confidence bound.
local oa = require "onearm"
local explore_first = require "explore_first"

local space = oa.features {
  layout = "concat",
  context = { x = "dense:64" },
  action = { class = "cat" },
}

return oa.app {
  policies = {
    explore_first = oa.policy {
      features = space,
      model = oa.linucb { per_action = true, arms = 16, lambda = 0.3 },
      explore = explore_first(200, 0.3),
    },
  },
}
