-- Simulated readers of a news app for the custom-policy example: 400
-- articles in 8 sections; each reader follows 1-3 sections. A reader clicks
-- an article mostly for its section and its popularity (the app's prior
-- knows both), and a little for its length on their device.
local rng = require "onearm.rng"

local SECTIONS = { "world", "politics", "business", "tech", "science", "sports", "culture",
                   "health" }
local DEVICES = { "phone", "desktop" }
local N_ARTICLES = 400

local function sigmoid(z) return 1 / (1 + math.exp(-z)) end

local Env = {}
Env.__index = Env

local function new(seed)
  local self = setmetatable({}, Env)
  local r = rng.new(rng.hash(seed, "articles"))
  self.articles, self.by_id = {}, {}
  for i = 1, N_ARTICLES do
    local a = { id = "a" .. i, section = r:pick(SECTIONS), quality = r:normal(),
                words = math.floor(math.exp(math.log(150) + r:random() * math.log(30))) }
    -- Popularity: what the site shows, a noisy view of quality.
    a.popularity = math.floor(100 * sigmoid(a.quality + 0.5 * r:normal())) / 100
    self.articles[i], self.by_id[a.id] = a, a
  end
  self.requests = rng.new(rng.hash(seed, "requests"))
  self.noise = rng.new(rng.hash(seed, "noise"))
  return self
end

function Env:catalog()
  local out = {}
  for i, a in ipairs(self.articles) do
    out[i] = { id = a.id, features = { section = a.section, popularity = a.popularity,
                                       words = a.words } }
  end
  return out
end

function Env:context(t)
  local r = self.requests
  local follows, seen = {}, {}
  for _ = 1, r:int(3) do
    local s = r:pick(SECTIONS)
    if not seen[s] then seen[s] = true; follows[#follows + 1] = s end
  end
  return { follows = follows, device = r:pick(DEVICES) }
end

-- 10-30 fresh articles per visit.
function Env:candidates(t, ctx)
  local r = self.requests
  local out, seen = {}, {}
  local n = 9 + r:int(21)
  while #out < n do
    local a = self.articles[r:int(N_ARTICLES)]
    if not seen[a.id] then seen[a.id] = true; out[#out + 1] = a.id end
  end
  return out
end

local function click_prob(ctx, a)
  local z = -2.2 + 0.8 * a.quality
  for _, s in ipairs(ctx.follows) do
    if s == a.section then z = z + 1.6 end
  end
  local long = math.log(a.words / 600)
  z = z + (ctx.device == "phone" and -0.4 or 0.3) * long
  return sigmoid(z)
end

function Env:signals(ctx, id, t)
  return { clicked = self.noise:random() < click_prob(ctx, self.by_id[id]) }
end

function Env:expected_reward(ctx, id, t, reward)
  local s = { clicked = click_prob(ctx, self.by_id[id]) }
  return reward and reward(s) or s.clicked
end

return { new = new }
