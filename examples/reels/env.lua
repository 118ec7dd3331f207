-- Simulated reels users for `onearm simulate examples/reels/app.lua`.
--
-- A population of users and a catalog of a few thousand short videos, with
-- a hidden "true" preference model that the app's policies must discover
-- from feedback alone. Everything is drawn from seeded PRNG streams
-- (onearm.rng, not math.random), so a run is reproducible from its seed.
--
-- The truth, in words: a user mostly watches topics they are interested
-- in, in a language spoken where they live; phones and long sessions want
-- short clips, TVs want long ones; news and finance do better in the
-- morning, gaming and comedy at night; young users like gaming and dance,
-- older ones news and cooking; good creators keep people watching. On top
-- of that each user has hidden tastes no feature reveals, and topic
-- popularity drifts slowly over time. The signals are a watched fraction in
-- [0, 1], a like and a share, all noisy.
local rng = require "onearm.rng"

local N_USERS, N_VIDEOS, N_CREATORS = 5000, 3000, 300
local MIN_CANDIDATES, MAX_CANDIDATES = 20, 100
local STEPS_PER_HOUR = 200 -- simulated clock: 20000 steps are about four days
local DRIFT_PERIOD = 40000 -- steps for a full cycle of topic popularity

local TOPICS = { "comedy", "music", "dance", "sports", "gaming", "cooking", "travel",
                 "fashion", "beauty", "tech", "science", "pets", "fitness", "diy", "news",
                 "education", "art", "cars", "finance", "nature" }

-- Where users live: the languages spoken there and the UTC offset.
local LOCATIONS = {
  { name = "us", langs = { en = true }, tz = -5, weight = 5 },
  { name = "uk", langs = { en = true }, tz = 0, weight = 2 },
  { name = "br", langs = { pt = true }, tz = -3, weight = 3 },
  { name = "mx", langs = { es = true }, tz = -6, weight = 2 },
  { name = "es", langs = { es = true }, tz = 1, weight = 1 },
  { name = "fr", langs = { fr = true }, tz = 1, weight = 1 },
  { name = "de", langs = { de = true, en = true }, tz = 1, weight = 1 },
  { name = "in", langs = { hi = true, en = true }, tz = 5, weight = 4 },
  { name = "jp", langs = { ja = true }, tz = 9, weight = 2 },
  { name = "ng", langs = { en = true }, tz = 1, weight = 1 },
}
local LANGUAGES = { "en", "pt", "es", "fr", "de", "hi", "ja" }
local LANGUAGE_WEIGHTS = { 8, 3, 3, 1, 1, 3, 2 }
local DEVICES = { "phone", "tablet", "tv", "desktop" }
local DEVICE_WEIGHTS = { 7, 1.5, 1, 1.5 }
local AUDIO = { "music", "speech", "ambient", "voiceover" }
local GENDERS = { "f", "m", "x" }

-- Duration preference: the slope of the watched fraction in log(duration).
local DURATION_SLOPE = { phone = -0.55, tablet = -0.1, tv = 0.5, desktop = 0.1 }

-- Hour-of-day peaks (local time) for topics with a daily rhythm.
local TOPIC_PEAK = { news = 8, finance = 9, education = 14, cooking = 18, gaming = 23,
                     comedy = 22, music = 20, fitness = 7, sports = 20, dance = 21 }
-- Age slope per topic (per 20 years above 35).
local AGE_SLOPE = { gaming = -0.6, dance = -0.5, fashion = -0.3, beauty = -0.2, news = 0.5,
                    cooking = 0.4, finance = 0.4, cars = 0.2, nature = 0.3, music = -0.2 }

local function sigmoid(z) return 1 / (1 + math.exp(-z)) end

-- The world is built from the seed once; users and videos never change.
local function build_world(seed)
  local r = rng.new(rng.hash(seed, "world"))
  local topic_popularity = {}
  for i = 1, #TOPICS do topic_popularity[i] = 0.5 + r:random() end
  local loc_weights = {}
  for i, l in ipairs(LOCATIONS) do loc_weights[i] = l.weight end

  local users = {}
  for u = 1, N_USERS do
    local loc = r:pick(LOCATIONS, loc_weights)
    local interests, set = {}, {}
    local k = 2 + r:int(4) - 1 -- 2..5 interests
    while #interests < k do
      local tp = r:pick(TOPICS, topic_popularity)
      if not set[tp] then set[tp] = true; interests[#interests + 1] = tp end
    end
    table.sort(interests)
    -- Hidden tastes: what no feature shows.
    local taste = {}
    for _, tp in ipairs(TOPICS) do taste[tp] = 0.35 * r:normal() end
    users[u] = {
      id = u, age = math.floor(13 + 52 * r:random() ^ 1.6), gender = r:pick(GENDERS),
      location = loc, interests = interests, interest_set = set,
      device = r:pick(DEVICES, DEVICE_WEIGHTS), activity_rate = 5 + 60 * r:random() ^ 2,
      taste = taste, weight = 1 / (u ^ 0.6), -- a few heavy users, a long tail
    }
  end

  local creators = {}
  for c = 1, N_CREATORS do
    creators[c] = { id = "c" .. c, topic = r:pick(TOPICS, topic_popularity),
                    language = r:pick(LANGUAGES, LANGUAGE_WEIGHTS), quality = r:normal() }
  end

  local videos, by_id, by_topic = {}, {}, {}
  for _, tp in ipairs(TOPICS) do by_topic[tp] = {} end
  for v = 1, N_VIDEOS do
    local c = creators[r:int(N_CREATORS)]
    local topic = r:random() < 0.8 and c.topic or r:pick(TOPICS)
    local duration = math.floor(math.exp(math.log(6) + r:random() * math.log(180 / 6)))
    local video = {
      id = "v" .. v, creator = c, topic = topic, duration = duration,
      language = r:random() < 0.9 and c.language or r:pick(LANGUAGES),
      audio = r:pick(AUDIO), quality = c.quality + 0.5 * r:normal(),
    }
    -- The engagement score the platform shows: a noisy view of quality.
    video.engagement = math.floor(1000 * sigmoid(0.8 * video.quality + 0.6 * r:normal())) / 1000
    videos[v], by_id[video.id] = video, video
    local list = by_topic[topic]
    list[#list + 1] = video
  end

  local user_weights = {}
  for u = 1, N_USERS do user_weights[u] = users[u].weight end
  return { users = users, user_weights = user_weights, videos = videos, by_id = by_id,
           by_topic = by_topic }
end

local Env = {}
Env.__index = Env

-- new(seed): the world, a stream of requests (users, moments, candidate
-- sets) and a separate stream of feedback noise, so that the requests are
-- the same whatever a policy shows.
local function new(seed)
  local self = setmetatable({}, Env)
  self.world = build_world(seed)
  self.requests = rng.new(rng.hash(seed, "requests"))
  self.noise = rng.new(rng.hash(seed, "noise"))
  -- Cumulative user weights, for drawing users by activity in O(log n).
  local cum, total = {}, 0
  for u, w in ipairs(self.world.user_weights) do total = total + w; cum[u] = total end
  self.cum, self.total = cum, total
  self.drift_phase = {}
  local r = rng.new(rng.hash(seed, "drift"))
  for _, tp in ipairs(TOPICS) do self.drift_phase[tp] = 2 * math.pi * r:random() end
  return self
end

function Env:catalog()
  local out = {}
  for i, v in ipairs(self.world.videos) do
    out[i] = { id = v.id, features = { topic = v.topic, creator = v.creator.id,
      duration = v.duration, engagement = v.engagement, language = v.language,
      audio = v.audio } }
  end
  return out
end

local function draw_user(self)
  local u = self.requests:random() * self.total
  local lo, hi = 1, #self.cum
  while lo < hi do
    local mid = (lo + hi) // 2
    if self.cum[mid] < u then lo = mid + 1 else hi = mid end
  end
  return self.world.users[lo]
end

-- The context of request t: the user's profile and the moment.
function Env:context(t)
  local r = self.requests
  local user = draw_user(self)
  local utc_hour = (t // STEPS_PER_HOUR) % 24
  local hour = (utc_hour + user.location.tz) % 24 + r:random()
  return {
    user = user.id, -- not a feature: the env's own key back to the user
    age = user.age, gender = user.gender, location = user.location.name,
    interests = user.interests, device = user.device, hour = hour,
    activity = math.floor(user.activity_rate * (0.5 + r:random())),
    session = math.floor(-8 * math.log(1 - r:random())), -- minutes so far
  }
end

-- 20-100 candidates: about half from the user's interests (what a
-- retrieval stage would propose), the rest from the whole catalog.
function Env:candidates(t, ctx)
  local r, w = self.requests, self.world
  local user = w.users[ctx.user]
  local n = MIN_CANDIDATES + r:int(MAX_CANDIDATES - MIN_CANDIDATES + 1) - 1
  local out, seen = {}, {}
  while #out < n do
    local v
    if r:random() < 0.5 then
      local list = w.by_topic[user.interests[r:int(#user.interests)]]
      v = list[r:int(#list)]
    else
      v = w.videos[r:int(#w.videos)]
    end
    if not seen[v.id] then seen[v.id] = true; out[#out + 1] = v.id end
  end
  return out
end

-- The hidden model: expected watched fraction, like and share rates.
local function truth(self, ctx, id, t)
  local user, video = self.world.users[ctx.user], self.world.by_id[id]
  local topic = video.topic
  local z = -0.9
  if user.interest_set[topic] then z = z + 1.3 end
  z = z + user.taste[topic]
  z = z + (user.location.langs[video.language] and 0.5 or -1.0)
  local ld = math.log(video.duration / 30)
  z = z + DURATION_SLOPE[user.device] * ld - 0.15 * (ctx.session / 10) * ld
  local peak = TOPIC_PEAK[topic]
  if peak then z = z + 0.45 * math.cos(2 * math.pi * (ctx.hour - peak) / 24) end
  z = z + (AGE_SLOPE[topic] or 0) * (user.age - 35) / 20
  z = z + 0.35 * video.quality
  z = z + 0.25 * math.sin(2 * math.pi * t / DRIFT_PERIOD + self.drift_phase[topic])
  local watched = sigmoid(z)
  local like = 0.05 + 0.35 * watched * watched
  local share = 0.01 + 0.12 * watched * watched * watched
  if topic == "comedy" or topic == "pets" then share = share * 2 end
  return watched, like, share
end

-- Raw, noisy feedback. The watched fraction is uniform on an interval
-- centred on its expectation, so it stays in [0, 1] and its mean is exact.
function Env:signals(ctx, id, t)
  local m, like, share = truth(self, ctx, id, t)
  local half = math.min(m, 1 - m)
  local r = self.noise
  local watched = m - half + 2 * half * r:random()
  return { watched = watched, liked = r:random() < like, shared = r:random() < share }
end

-- The noise-free expected reward: the app's reward hook applied to the
-- expected signals (rates instead of booleans), which is exact for a
-- weighted-sum reward.
function Env:expected_reward(ctx, id, t, reward)
  local m, like, share = truth(self, ctx, id, t)
  local s = { watched = m, liked = like, shared = share }
  if reward then return reward(s) end
  return 0.6 * m + 0.3 * like + 0.1 * share
end

return { new = new }
