-- wrk script for tests/bench/serve_retrieve.sh: POST /v1/rank with
-- retrieve over the reels catalog at scale (examples/reels/app_scale.lua).
--
--   wrk -t1 -c8 -d20s --latency -s retrieve_rank.lua http://127.0.0.1:PORT -- MODE [N] [DIM]
--
-- MODE: exact | approximate; N: shortlist size (default 200); DIM: the
-- user embedding's length (default 32). Each request carries a different
-- random user embedding (precomputed bodies, so wrk's own time stays
-- small). Non-200 answers are counted and printed by done().
local N_BODIES = 1000
local bodies, next_body = {}, 1
counts = {} -- flat and global: done() reads it through thread:get

function init(args)
  local mode, n, dim = args[1] or "approximate", tonumber(args[2]) or 200, tonumber(args[3]) or 32
  math.randomseed(12345)
  for b = 1, N_BODIES do
    local q = {}
    for j = 1, dim do q[j] = string.format("%.3f", (math.random() * 2 - 1) * 0.3) end
    bodies[b] = string.format(
      '{"context":{"user_emb":[%s],"device":"phone"},"retrieve":{"n":%d,"mode":"%s"}}',
      table.concat(q, ","), n, mode)
  end
end

function request()
  local body = bodies[next_body]
  next_body = next_body % N_BODIES + 1
  return wrk.format("POST", "/v1/rank", { ["Content-Type"] = "application/json" }, body)
end

function response(status)
  local k = tostring(status)
  counts[k] = (counts[k] or 0) + 1
end

function done(summary, latency)
  local out = {}
  for _, t in ipairs(threads or {}) do
    local c = t:get("counts") or {}
    for k, v in pairs(c) do out[#out + 1] = k .. "=" .. v end
  end
  io.write(string.format("statuses %s\n", table.concat(out, " ")))
  io.write(string.format("p50_ms %.3f p99_ms %.3f rps %.0f\n", latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, summary.requests / (summary.duration / 1e6)))
end

threads = {}
function setup(thread) threads[#threads + 1] = thread end
