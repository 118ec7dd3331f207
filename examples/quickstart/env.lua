-- Simulated visitors for the quickstart app. An env is a table with
-- new(seed) returning an object that answers the simulator's questions;
-- everything is drawn from its own seeded PRNG, so runs are reproducible.
local rng = require "onearm.rng"

local LAYOUTS = {
  { id = "list", features = { style = "list", images = 0 } },
  { id = "grid", features = { style = "grid", images = 4 } },
  { id = "hero", features = { style = "hero", images = 1 } },
  { id = "compact", features = { style = "compact", images = 0 } },
  { id = "magazine", features = { style = "magazine", images = 6 } },
}
local DEVICES = { "mobile", "desktop" }
local SEGMENTS = { "new", "regular", "power" }

-- The hidden truth: click probability by device and segment.
local BASE = { list = 0.10, grid = 0.12, hero = 0.08, compact = 0.10, magazine = 0.07 }
local DEVICE = { mobile = { compact = 0.12, hero = 0.05 }, desktop = { grid = 0.08, magazine = 0.12 } }
local SEGMENT = { new = { hero = 0.15 }, regular = { list = 0.06 }, power = { compact = 0.10, list = 0.08 } }

local Env = {}
Env.__index = Env

local function new(seed)
  -- Separate streams: visitors are the same whatever was shown to them.
  return setmetatable({ users = rng.new(rng.hash(seed, "users")),
                        noise = rng.new(rng.hash(seed, "noise")) }, Env)
end

function Env:catalog() return LAYOUTS end

function Env:context(t)
  local r = self.users
  return { device = r:pick(DEVICES), segment = r:pick(SEGMENTS), hour = (t // 50) % 24 }
end

function Env:candidates(t, ctx)
  return { "list", "grid", "hero", "compact", "magazine" }
end

local function click_prob(ctx, id)
  return BASE[id] + (DEVICE[ctx.device][id] or 0) + (SEGMENT[ctx.segment][id] or 0)
end

function Env:signals(ctx, id, t)
  return { clicked = self.noise:random() < click_prob(ctx, id) }
end

-- Noise-free expected reward. `reward` is the app's reward hook: applied to
-- the expected signals (a click probability instead of a boolean) it gives
-- the expected reward for any linear reward.
function Env:expected_reward(ctx, id, t, reward)
  local s = { clicked = click_prob(ctx, id) }
  return reward and reward(s) or s.clicked
end

return { new = new }
