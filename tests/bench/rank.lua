-- wrk script for tests/bench/serve_bench.sh: POST /v1/rank with varied
-- reels contexts and 20 random catalog candidates per request.
--
--   wrk -t1 -c16 -d20s --latency -s rank.lua http://127.0.0.1:PORT -- CATALOG [REWARD_FRACTION]
--
-- CATALOG: how many actions the catalog holds (ids v1..vN). With
-- REWARD_FRACTION > 0 (default 0), that fraction of the requests are
-- reward POSTs (/v1/events/{id}/reward with raw signals) for event ids taken
-- from earlier rank responses; wrk's latency figures then mix both kinds.
-- Statuses are counted per kind from the response bodies and printed by
-- done() as "statuses rank 200=N ... reward 200=N ...".
local N_BODIES = 2000

local TOPICS = { "comedy", "music", "dance", "sports", "gaming", "cooking", "travel",
                 "fashion", "beauty", "tech", "science", "pets", "fitness", "diy", "news",
                 "education", "art", "cars", "finance", "nature" }
local LOCATIONS = { "us", "uk", "br", "mx", "es", "fr", "de", "in", "jp", "ng" }
local DEVICES = { "phone", "phone", "phone", "phone", "tablet", "tv", "desktop" }
local GENDERS = { "f", "m", "x" }

local catalog, reward_fraction = 3000, 0
local bodies, next_body = {}, 1
-- Event ids waiting for a reward: a ring of the most recent ones (older
-- ones are overwritten, so a reward never targets an event the full table
-- has already evicted, which would be a 409).
local RING = 64
local pending, npending, pnext = {}, 0, 0
-- "kind status" -> count; global and flat because done() reads it through
-- thread:get, which copies flat tables only (nested ones crash wrk 4.1)
counts = {}

local function pick(t) return t[math.random(#t)] end

local function context_json()
  local interests, seen = {}, {}
  for _ = 1, math.random(1, 4) do
    local t = pick(TOPICS)
    if not seen[t] then
      seen[t] = true
      interests[#interests + 1] = '"' .. t .. '"'
    end
  end
  return string.format(
    '{"age":%d,"gender":"%s","location":"%s","interests":[%s],"device":"%s",' ..
      '"hour":%d,"activity":%.3f,"session":%.2f}',
    math.random(13, 75), pick(GENDERS), pick(LOCATIONS), table.concat(interests, ","),
    pick(DEVICES), math.random(0, 23), math.random() * 50, math.random() * 600)
end

local function rank_body()
  local ids, seen = {}, {}
  while #ids < 20 do
    local k = math.random(catalog)
    if not seen[k] then
      seen[k] = true
      ids[#ids + 1] = '"v' .. k .. '"'
    end
  end
  return '{"context":' .. context_json() .. ',"candidates":[' .. table.concat(ids, ",") .. ']}'
end

function init(args)
  catalog = tonumber(args[1]) or catalog
  reward_fraction = tonumber(args[2]) or 0
  math.randomseed(12345 + (id or 0))
  for i = 1, N_BODIES do bodies[i] = rank_body() end
end

local rank_headers = { ["Content-Type"] = "application/json" }

function request()
  if npending > 0 and math.random() < reward_fraction then
    pnext = (pnext - 1) % RING -- the newest
    local ev = pending[pnext + 1]
    npending = npending - 1
    local body = string.format('{"signals":{"watched":%.2f,"liked":%d,"shared":%d}}',
      math.random(), math.random(0, 1), math.random(0, 9) == 0 and 1 or 0)
    return wrk.format("POST", "/v1/events/" .. ev .. "/reward", rank_headers, body)
  end
  local body = bodies[next_body]
  next_body = next_body % N_BODIES + 1
  return wrk.format("POST", "/v1/rank", rank_headers, body)
end

function response(status, headers, body)
  local kind = "other"
  if body:find('"ranking"', 1, true) then
    kind = "rank"
    if reward_fraction > 0 then
      local ev = body:match('"eventId":"([^"]+)"')
      if ev then
        pending[pnext + 1] = ev
        pnext = (pnext + 1) % RING
        if npending < RING then npending = npending + 1 end
      end
    end
  elseif body:find('"reward"', 1, true) then
    kind = "reward"
  end
  local key = kind .. " " .. status
  counts[key] = (counts[key] or 0) + 1
end

local threads = {}
function setup(thread) threads[#threads + 1] = thread end

function done(summary, latency, requests)
  local merged, keys = {}, {}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("counts")) do
      if not merged[k] then keys[#keys + 1] = k end
      merged[k] = (merged[k] or 0) + v
    end
  end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do parts[#parts + 1] = k:gsub(" ", ":") .. "=" .. merged[k] end
  io.write("statuses ", table.concat(parts, " "), "\n")
end
