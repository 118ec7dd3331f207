-- The game server's app: which offer to show a player in the shop, now.
-- The C host (main.c) embeds onearm, makes one decision per shop visit and
-- reports a purchase (reward 1) or not (0).
local oa = require "onearm"

local space = oa.features {
  dim = 64,
  context = { level = "log", spend_tier = "cat", region = "cat", hour = "cyclic:24" },
  action = { kind = "cat", price = "log" },
  cross = { { "spend_tier", "kind" }, { "region", "kind" }, { "spend_tier", "price" } },
}

return oa.app {
  policies = {
    shop = oa.policy { features = space, model = oa.linucb { alpha = 0.5 } },
  },
  reward_wait = 5, -- a purchase that comes later than this is not counted
  default_reward = 0,
}
