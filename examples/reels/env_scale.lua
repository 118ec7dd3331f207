-- Simulated reels users at scale, for two-stage ranking:
--
--   onearm simulate examples/reels/app_scale.lua --env examples/reels/env_scale.lua
--   REELS_VIDEOS=20000 onearm simulate examples/reels/app_scale.lua --env ...
--
-- The catalog is the one gen_catalog.lua writes (the same generator,
-- catalog_gen.lua: video-i here is row video-i of the CSV), one million
-- videos by default; REELS_VIDEOS sets another size, REELS_USERS the number
-- of users (default 10,000). From Lua: require("env_scale").new(seed,
-- {videos =, users =}).
--
-- The truth, in words: each user has a hidden taste, a unit vector near
-- one or two topics' directions; how much of a video they watch grows with
-- the inner product of that taste and the video's embedding, with the
-- video's engagement score, and with its length when they watch on a TV
-- (phones want short clips). The context shows `user_emb`, the platform's
-- two-tower estimate of the taste (the taste plus noise, fixed per user),
-- and the `device`. The signals (watched fraction, like, share) are noisy;
-- every draw comes from seeded onearm.rng streams, so a run is reproducible
-- from its seed.
--
-- env:candidates(t, ctx) is what a perfect retriever would shortlist: the
-- 200 videos whose embeddings best match the user's real taste, found by
-- an exact scan of a retrieval store inside the env's own engine. The
-- simulator's oracle and random baseline choose among these; learners of an
-- app that declares `retrieve` retrieve from the whole catalog themselves.
local oa = require "onearm"
local rng = require "onearm.rng"
local catalog_gen = require "catalog_gen"

local DIM, SHORTLIST = 32, 200
local TASTE_NOISE = 0.1 -- per dimension, before the taste is normalised
local ESTIMATE_NOISE = 0.12 -- per dimension: the two-tower estimate's error
local DEVICES = { "phone", "tablet", "tv", "desktop" }
local DEVICE_WEIGHTS = { 7, 1.5, 1, 1.5 }
-- Duration preference: the slope of the watched fraction in log(duration).
local DURATION_SLOPE = { phone = -0.5, tablet = -0.1, tv = 0.5, desktop = 0.1 }

local function sigmoid(z) return 1 / (1 + math.exp(-z)) end

-- A progress line on stderr when it is a terminal (inside `onearm`).
local progress = (function()
  local ok, host = pcall(require, "onearm.host")
  if not (ok and host.isatty(2)) then return function() end end
  return function(what, i, n)
    if i % 50000 ~= 0 and i ~= n then return end
    io.stderr:write(string.format("\renv_scale: %s %d / %d", what, i, n))
    if i == n then io.stderr:write("\r", string.rep(" ", 60), "\r") end
    io.stderr:flush()
  end
end)()

-- The videos (the same for every seed): their embeddings in a tensor and
-- in a retrieval store (the perfect retriever), their other fields in
-- flat lists. Built once per size and shared by every env instance.
local videos_of = {}
local function build_videos(n)
  if videos_of[n] then return videos_of[n] end
  local emb = oa.tensor(n, DIM, "f32")
  local eng = oa.engine {}
  local fs = oa.features { dim = 4, context = {}, action = {} }
  eng:add_policy("truth", { features = fs, model = oa.model.ridge { dim = fs:dim() } })
  eng:set_retrieval { field = "emb", dim = DIM, n = SHORTLIST, mode = "exact" }
  local V = { n = n, emb = emb, eng = eng, topic = {}, language = {}, duration = {},
              engagement = {}, age = {}, index = {} }
  local gen, v, rec = catalog_gen.new(DIM), {}, {}
  for i = 1, n do
    gen.next(v)
    local e = v.emb
    for j = 1, DIM do emb:set(i, j, e[j]) end
    rec.emb = e
    eng:upsert("video-" .. i, rec)
    V.topic[i], V.language[i], V.duration[i] = v.topic, v.language, v.duration
    V.engagement[i], V.age[i] = v.engagement, v.age
    progress("videos", i, n)
  end
  V.centre = gen.centre
  videos_of[n] = V
  return V
end

-- The users of a seed: taste (a list and a 1 x DIM tensor), the two-tower
-- estimate shown as `user_emb`, and a device.
local function build_users(seed, n, centre)
  local r = rng.new(rng.hash(seed, "users"))
  local users = {}
  for u = 1, n do
    local topics = { r:int(#centre) }
    if r:random() < 0.5 then topics[2] = r:int(#centre) end
    local taste, norm = {}, 0
    for j = 1, DIM do
      local x = TASTE_NOISE * r:normal()
      for k, t in ipairs(topics) do x = x + centre[t][j] * (k == 1 and 1 or 0.7) end
      taste[j], norm = x, norm + x * x
    end
    norm = math.sqrt(norm)
    local est = {}
    for j = 1, DIM do
      taste[j] = taste[j] / norm
      est[j] = taste[j] + ESTIMATE_NOISE * r:normal()
    end
    users[u] = { taste = taste, taste_t = oa.tensor({ taste }, "f32"), emb = est,
                 device = r:pick(DEVICES, DEVICE_WEIGHTS) }
  end
  return users
end

local Env = {}
Env.__index = Env

-- new(seed [, {videos =, users =}]): the world (videos, users), a stream of
-- requests and a separate stream of feedback noise, so that the requests
-- are the same whatever a policy shows.
local function new(seed, opts)
  opts = opts or {}
  local n = opts.videos or math.tointeger(tonumber(os.getenv("REELS_VIDEOS"))) or 1000000
  local n_users = opts.users or math.tointeger(tonumber(os.getenv("REELS_USERS"))) or 10000
  assert(n >= SHORTLIST, "env_scale: the catalog needs at least " .. SHORTLIST .. " videos")
  local self = setmetatable({}, Env)
  self.videos = build_videos(n)
  self.users = build_users(seed, n_users, self.videos.centre)
  self.requests = rng.new(rng.hash(seed, "requests"))
  self.noise = rng.new(rng.hash(seed, "noise"))
  return self
end

-- The catalog as a list built on demand (a million records never exist at
-- once): {id = "video-i", features = {emb, topic, language, duration,
-- engagement, age}}, the fields and values of the CSV's row.
function Env:catalog()
  local V = self.videos
  local topics = catalog_gen.TOPICS
  return setmetatable({}, {
    __len = function() return V.n end,
    __index = function(_, i)
      if math.type(i) ~= "integer" or i < 1 or i > V.n then return nil end
      return { id = "video-" .. i, features = {
        emb = V.emb:row(i):totable(), topic = topics[V.topic[i]], language = V.language[i],
        duration = V.duration[i], engagement = V.engagement[i], age = V.age[i] } }
    end,
  })
end

-- The context of request t: the user's two-tower embedding and device.
function Env:context(t)
  local u = self.requests:int(#self.users)
  local user = self.users[u]
  return { user = u, user_emb = user.emb, device = user.device }
end

-- The perfect retriever's shortlist: the 200 videos closest to the real
-- taste (an exact scan).
function Env:candidates(t, ctx)
  local user = self.users[ctx.user]
  return self.videos.eng:retrieve("truth", {}, { query = user.taste, n = SHORTLIST }).ids
end

local function index_of(id)
  local i = math.tointeger(tonumber(id:match("^video%-(%d+)$")))
  if not i then error("env_scale: unknown video '" .. tostring(id) .. "'", 3) end
  return i
end

-- The hidden model: the expected signals (a watched fraction, like and
-- share rates).
local function expected(self, ctx, id)
  local V, user = self.videos, self.users[ctx.user]
  local i = index_of(id)
  local sim = V.emb:row(i):dot(user.taste_t)
  local w = sigmoid(-1.8 + 1.2 * sim + 3.0 * (V.engagement[i] - 0.5)
                    + DURATION_SLOPE[user.device] * math.log(V.duration[i] / 30))
  return { watched = w, liked = 0.05 + 0.35 * w * w, shared = 0.01 + 0.12 * w ^ 3 }
end

-- Raw, noisy feedback: the watched fraction uniform on an interval centred
-- on its expectation (so it stays in [0, 1] with an exact mean), a like and
-- a share drawn at their rates.
function Env:signals(ctx, id, t)
  local e, r = expected(self, ctx, id), self.noise
  local half = math.min(e.watched, 1 - e.watched)
  return { watched = e.watched + half * (2 * r:random() - 1), liked = r:random() < e.liked,
           shared = r:random() < e.shared }
end

-- The noise-free expected reward: the reward hook (the app's, else the
-- weights of app_scale.lua) applied to the expected signals.
local default_reward = oa.reward.weighted { watched = 0.6, liked = 0.3, shared = 0.1 }
function Env:expected_reward(ctx, id, t, reward)
  return (reward or default_reward)(expected(self, ctx, id))
end

return { new = new }
