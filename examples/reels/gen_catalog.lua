-- Generates a reels catalog at scale for two-stage ranking: N videos with
-- an embedding each (DIM numbers), as the CSV `onearm serve --catalog`
-- (and `onearm catalog load`) reads:
--
--   lua5.4 examples/reels/gen_catalog.lua [N=1000000] [OUT=reels_catalog.csv] [DIM=32]
--
-- Columns: id, v0..v{DIM-1}, topic, language, duration, engagement, age.
-- A video's embedding is its topic's direction plus its own noise, so
-- users who like a topic find its videos by inner product; `age` is days
-- since upload (for filters such as {age = {0, 7}}). Deterministic: the
-- same N and DIM give the same file.
local N = tonumber(arg[1]) or 1000000
local OUT = arg[2] or "reels_catalog.csv"
local DIM = tonumber(arg[3]) or 32

local TOPICS = { "comedy", "music", "dance", "sports", "gaming", "cooking", "travel",
                 "fashion", "beauty", "tech", "science", "pets", "fitness", "diy", "news",
                 "education", "art", "cars", "finance", "nature" }
local LANGUAGES = { "en", "en", "en", "pt", "es", "es", "fr", "de", "hi", "ja" }

-- A small, fast PRNG (xorshift-style on Lua integers) for reproducibility.
local state = 0x2545F4914F6CDD1D
local function rand()
  state = state ~ (state << 13)
  state = state ~ (state >> 7)
  state = state ~ (state << 17)
  return ((state >> 11) & 0xFFFFFFFFFFFFF) / 0x10000000000000
end
local function normal()
  local u, v = rand(), rand()
  return math.sqrt(-2 * math.log(u + 1e-300)) * math.cos(2 * math.pi * v)
end

-- One unit direction per topic.
local centre = {}
for t = 1, #TOPICS do
  local c, norm = {}, 0
  for j = 1, DIM do c[j] = normal(); norm = norm + c[j] * c[j] end
  norm = math.sqrt(norm)
  for j = 1, DIM do c[j] = c[j] / norm end
  centre[t] = c
end

local f = assert(io.open(OUT, "w"))
local head = { "id" }
for j = 0, DIM - 1 do head[#head + 1] = "v" .. j end
for _, k in ipairs { "topic", "language", "duration", "engagement", "age" } do head[#head + 1] = k end
f:write(table.concat(head, ","), "\n")
local fmt = string.format
local row = {}
for i = 1, N do
  local t = 1 + math.floor(rand() * #TOPICS)
  local c = centre[t]
  row[1] = fmt("video-%d", i)
  for j = 1, DIM do row[j + 1] = fmt("%.3f", c[j] + 0.35 * normal()) end
  row[DIM + 2] = TOPICS[t]
  row[DIM + 3] = LANGUAGES[1 + math.floor(rand() * #LANGUAGES)]
  row[DIM + 4] = fmt("%d", 5 + math.floor(rand() * 175))
  row[DIM + 5] = fmt("%.3f", rand())
  row[DIM + 6] = fmt("%d", math.floor(-30 * math.log(rand() + 1e-12)))
  f:write(table.concat(row, ",", 1, DIM + 6), "\n")
  if i % 100000 == 0 then io.stderr:write(fmt("\r%d / %d", i, N)) end
end
f:close()
io.stderr:write(fmt("\rwrote %d videos (dim %d) to %s\n", N, DIM, OUT))
