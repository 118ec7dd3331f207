-- The smallest complete onearm app: pick one of a few article layouts for
-- each visitor and learn which one each kind of visitor clicks.
--
--   onearm simulate examples/quickstart/app.lua
--
-- runs it against the simulated visitors in env.lua next to this file.
local oa = require "onearm"

-- What the engine knows about a visitor (context) and about a layout
-- (action). Each `cross` pairs one context field with one action field, so
-- a linear model can learn "mobile visitors like compact layouts".
local space = oa.features {
  dim = 64,
  context = { device = "cat", segment = "cat", hour = "cyclic:24" },
  action = { style = "cat", images = "num" },
  cross = { { "device", "style" }, { "segment", "style" }, { "segment", "images" } },
}

return oa.app {
  policies = {
    -- LinUCB: ridge regression on the features above, exploring by the
    -- upper confidence bound.
    layout = oa.policy { features = space, model = oa.linucb { alpha = 1 } },
  },
  -- Raw feedback is { clicked = true/false }; the reward is 1 for a click.
  reward = oa.reward.weighted { clicked = 1 },
  -- Explore more at first, less later (alpha from 1 down to 0.2).
  schedule = oa.schedule.decay { alpha = { start = 1, floor = 0.2, scale = 500 } },
}
