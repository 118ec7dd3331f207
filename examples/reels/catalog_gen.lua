-- The deterministic video generator behind the reels catalog at scale,
-- shared by gen_catalog.lua (the CSV for `onearm serve --catalog`) and
-- env_scale.lua (the simulated users of `onearm simulate`), so both see the
-- same videos: video i of a generator is the CSV's row `video-i`.
--
--   local gen = require("catalog_gen").new(32)
--   local v = {}
--   for i = 1, n do gen.next(v) ... end
--
-- A video's embedding is its topic's unit direction plus its own noise
-- (0.35 per dimension), so users who like a topic find its videos by
-- inner product. next(v) fills v with: topic (index into TOPICS), emb (a
-- list of dim numbers, the same table every call), language, duration
-- (seconds, 5..179), engagement (in [0, 1)) and age (days since upload).
local M = {}

M.TOPICS = { "comedy", "music", "dance", "sports", "gaming", "cooking", "travel",
             "fashion", "beauty", "tech", "science", "pets", "fitness", "diy", "news",
             "education", "art", "cars", "finance", "nature" }
M.LANGUAGES = { "en", "en", "en", "pt", "es", "es", "fr", "de", "hi", "ja" }

local sqrt, log, cos, floor, pi = math.sqrt, math.log, math.cos, math.floor, math.pi

-- new(dim): a generator at its first video, with fields dim, centre (the
-- topics' unit directions) and next. A small, fast xorshift PRNG on Lua
-- integers, always from the same state: the same dim gives the same videos.
function M.new(dim)
  local state = 0x2545F4914F6CDD1D
  local function rand()
    state = state ~ (state << 13)
    state = state ~ (state >> 7)
    state = state ~ (state << 17)
    return ((state >> 11) & 0xFFFFFFFFFFFFF) / 0x10000000000000
  end
  local function normal()
    local u, v = rand(), rand()
    return sqrt(-2 * log(u + 1e-300)) * cos(2 * pi * v)
  end
  local topics, langs = M.TOPICS, M.LANGUAGES
  local centre = {}
  for t = 1, #topics do
    local c, norm = {}, 0
    for j = 1, dim do c[j] = normal(); norm = norm + c[j] * c[j] end
    norm = sqrt(norm)
    for j = 1, dim do c[j] = c[j] / norm end
    centre[t] = c
  end
  -- The next video into v (fields listed above); returns v.
  local function next_video(v)
    local t = 1 + floor(rand() * #topics)
    local c, emb = centre[t], v.emb or {}
    for j = 1, dim do emb[j] = c[j] + 0.35 * normal() end
    v.topic, v.emb = t, emb
    v.language = langs[1 + floor(rand() * #langs)]
    v.duration = 5 + floor(rand() * 175)
    v.engagement = rand()
    v.age = floor(-30 * log(rand() + 1e-12))
    return v
  end
  return { dim = dim, centre = centre, next = next_video }
end

return M
