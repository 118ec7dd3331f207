-- Reels: pick the next short video for a user, learn from how much of it
-- they watched, whether they liked it and whether they shared it.
--
--   onearm simulate examples/reels/app.lua      (simulated users: env.lua)
--
-- Several policies run side by side so the simulator can compare them.
local oa = require "onearm"

local context = {
  age = oa.field.num { mean = 35, std = 15 },
  gender = "cat",
  location = "cat",
  interests = "set",
  device = "cat",
  hour = "cyclic:24",
  activity = oa.field.log(),
  session = oa.field.log(),
}
-- No `creator` field: the engagement score already summarises a creator's
-- quality, and a 300-way categorical would crowd the hashed space.
local action = {
  topic = "cat",
  duration = oa.field.log(),
  engagement = "num",
  language = "cat",
  audio = "cat",
}
-- What a user likes depends on who they are AND what the video is: the
-- crosses give a linear model those interactions.
local cross = oa.cross(
  { "interests", "topic" },  -- topics the user follows
  { "location", "language" }, -- a language spoken where they live
  { "device", "duration" },   -- short clips on phones, long ones on TVs
  { "session", "duration" },  -- long sessions want shorter clips
  { "hour", "topic" },        -- news in the morning, gaming at night
  { "age", "topic" }
)

-- Linear models: every field and cross hashed into one 256-wide row.
local space = oa.features { dim = 256, context = context, action = action, cross = cross }

-- Neural models: one block per field and per cross, concatenated.
local concat = oa.features { layout = "concat", context = context, action = action, cross = cross }

return oa.app {
  policies = {
    egreedy = oa.policy { features = space, model = oa.egreedy { epsilon = 0.05 } },
    linucb = oa.policy { features = space, model = oa.linucb { alpha = 0.5 } },
    lints = oa.policy { features = space, model = oa.lints { v = 0.1, draws = 16 } },
    neural = oa.policy { features = concat,
                         model = oa.neural { hidden = { 64, 32 }, epsilon = 0.05, lr = 3e-3 } },
    neural_linear = oa.policy { features = concat,
                                model = oa.neural_linear { hidden = { 64, 32 }, lr = 3e-3,
                                                           v = 0.1, draws = 16 } },
  },

  -- Most of the value is in watching; likes and shares are rarer and
  -- stronger signals.
  reward = oa.reward.weighted { watched = 0.6, liked = 0.3, shared = 0.1 },

  -- Explore more while the models know little: the UCB bonus and ε decay
  -- as 1/√(1 + t/2000) to a floor. Each policy takes the keys its explorer
  -- reads (ε-greedy: epsilon; LinUCB: alpha).
  schedule = oa.schedule.decay {
    alpha = { start = 0.5, floor = 0.1, scale = 2000 },
    epsilon = { start = 0.1, floor = 0.02, scale = 2000 },
  },

  reward_wait = 30,
  default_reward = 0,
}
