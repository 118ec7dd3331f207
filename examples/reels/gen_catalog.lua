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

-- The generator lives next to this script (catalog_gen.lua), shared with
-- the simulated users of env_scale.lua.
local dir = (arg[0] or ""):match("^(.*)[/\\]") or "."
package.path = dir .. "/?.lua;" .. package.path
local catalog_gen = require "catalog_gen"

local f = assert(io.open(OUT, "w"))
local head = { "id" }
for j = 0, DIM - 1 do head[#head + 1] = "v" .. j end
for _, k in ipairs { "topic", "language", "duration", "engagement", "age" } do head[#head + 1] = k end
f:write(table.concat(head, ","), "\n")
local fmt = string.format
local TOPICS = catalog_gen.TOPICS
local gen, v, row = catalog_gen.new(DIM), {}, {}
for i = 1, N do
  gen.next(v)
  local emb = v.emb
  row[1] = fmt("video-%d", i)
  for j = 1, DIM do row[j + 1] = fmt("%.3f", emb[j]) end
  row[DIM + 2] = TOPICS[v.topic]
  row[DIM + 3] = v.language
  row[DIM + 4] = fmt("%d", v.duration)
  row[DIM + 5] = fmt("%.3f", v.engagement)
  row[DIM + 6] = fmt("%d", v.age)
  f:write(table.concat(row, ",", 1, DIM + 6), "\n")
  if i % 100000 == 0 then io.stderr:write(fmt("\r%d / %d", i, N)) end
end
f:close()
io.stderr:write(fmt("\rwrote %d videos (dim %d) to %s\n", N, DIM, OUT))
