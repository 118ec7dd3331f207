-- The serving benchmark's app (tests/bench/serve_bench.sh): the reels
-- feature space of examples/reels/app.lua hashed to 64 dimensions, one
-- LinUCB policy, and the reels reward and schedule. d = 64 is the size the
-- serving targets are stated for; examples/reels/app.lua (dim 256, five
-- policies for the simulator) keeps its own defaults.
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
local action = {
  topic = "cat",
  duration = oa.field.log(),
  engagement = "num",
  language = "cat",
  audio = "cat",
}
local cross = oa.cross(
  { "interests", "topic" },
  { "location", "language" },
  { "device", "duration" },
  { "session", "duration" },
  { "hour", "topic" },
  { "age", "topic" }
)

local space = oa.features { dim = 64, context = context, action = action, cross = cross }

return oa.app {
  policies = {
    linucb = oa.policy { features = space, model = oa.linucb { alpha = 0.5 } },
  },
  reward = oa.reward.weighted { watched = 0.6, liked = 0.3, shared = 0.1 },
  schedule = oa.schedule.decay {
    alpha = { start = 0.5, floor = 0.1, scale = 2000 },
    epsilon = { start = 0.1, floor = 0.02, scale = 2000 },
  },
  reward_wait = 30,
  default_reward = 0,
}
