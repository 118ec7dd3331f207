-- Field spec shorthands for oa.features: oa.field.num{log = true} instead of
-- {kind = "num", log = true}, oa.field.cyclic(24) instead of "cyclic:24",
-- and oa.cross{"interests", "topic"}, {"location", "language"}.
local util = require "onearm.util"

local features = { field = {} }
local field = features.field

local NUM = util.set { "log", "clip", "mean", "std", "weight" }

-- num{log=, clip={lo, hi}, mean=, std=, weight=}: a numeric field.
function field.num(opts)
  opts = opts or {}
  util.check_keys("oa.field.num", opts, NUM, 2)
  if opts.clip ~= nil and (type(opts.clip) ~= "table" or type(opts.clip[1]) ~= "number"
      or type(opts.clip[2]) ~= "number" or opts.clip[1] > opts.clip[2]) then
    error("oa.field.num: option 'clip' must be {lo, hi} with lo <= hi", 2)
  end
  local f = util.copy(opts)
  f.kind = "num"
  return f
end

-- log(opts): a numeric field on a log scale (durations, counts).
function field.log(opts)
  local f = field.num(opts)
  f.log = true
  return f
end

local function simple(kind, allowed)
  return function(opts)
    opts = opts or {}
    util.check_keys("oa.field." .. kind, opts, allowed, 2)
    local f = util.copy(opts)
    f.kind = kind
    return f
  end
end

field.cat = simple("cat", util.set { "buckets", "weight" })
field.set = simple("set", util.set { "buckets", "weight", "normalize" })

-- dense(n): an embedding of n numbers.
function field.dense(n, opts)
  util.check_number("oa.field.dense", "n", n, 1, nil, 2)
  local f = util.copy(opts)
  f.kind, f.length = "dense", n
  return f
end

-- cyclic(period): a position on a circle (hour of day: 24).
function field.cyclic(period, opts)
  util.check_number("oa.field.cyclic", "period", period, 1e-12, nil, 2)
  local f = util.copy(opts)
  f.kind, f.period = "cyclic", period
  return f
end

-- cross({"a", "b"}, {"c", "d"}, ...) or cross{"a", "b"}: a list of crosses
-- for the `cross` key of oa.features, checked for shape early.
function features.cross(...)
  local args = { ... }
  if #args == 1 and type(args[1]) == "table" and type(args[1][1]) == "string" then
    args = { args[1] }
  end
  local out = {}
  for i, c in ipairs(args) do
    if type(c) ~= "table" or type(c[1]) ~= "string" or type(c[2]) ~= "string" then
      error(string.format("oa.cross: cross %d must be {context_field, action_field}", i), 2)
    end
    out[i] = { c[1], c[2] }
  end
  return out
end

return features
