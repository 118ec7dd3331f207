-- Exploration schedules: functions t -> params table, where t is the number
-- of decisions the policy made before this one (0 on the first). The
-- engine applies the table with eng:set_params; keys a policy's explorer
-- does not read are ignored for that policy.
local util = require "onearm.util"

local schedule = {}

-- A fresh table on every call: a hook that edits its result must not
-- change the next one.
local function resolve(p, t)
  if util.is_callable(p) then return p(t) end
  return util.copy(p)
end

local function check_params(who, params)
  if type(params) ~= "table" then error(who .. ": expected a params table", 3) end
  for k, v in pairs(params) do
    if type(v) ~= "number" or v ~= v then
      error(string.format("%s: param '%s' must be a number, got %s", who, tostring(k),
        tostring(v)), 3)
    end
  end
end

-- The same parameters at every t.
function schedule.constant(params)
  check_params("oa.schedule.constant", params)
  return function(t) return util.copy(params) end
end

-- Each parameter decays as start / sqrt(1 + t / scale), never below floor:
-- decay{ alpha = { start = 1, floor = 0.1, scale = 1000 } }. A plain number
-- is a constant.
function schedule.decay(spec)
  local who = "oa.schedule.decay"
  if type(spec) ~= "table" then error(who .. ": expected a table", 2) end
  local curves = {}
  for _, k in ipairs(util.sorted_keys(spec)) do
    local c = spec[k]
    if type(c) == "number" then
      curves[k] = { start = c, floor = c, scale = 1 }
    elseif type(c) == "table" then
      util.check_keys(who .. " '" .. k .. "'", c, util.set { "start", "floor", "scale" }, 2)
      local start, floor, scale = c.start or 1, c.floor or 0, c.scale or 1000
      util.check_number(who, k .. ".start", start, nil, nil, 2)
      util.check_number(who, k .. ".floor", floor, nil, nil, 2)
      util.check_number(who, k .. ".scale", scale, 1e-12, nil, 2)
      curves[k] = { start = start, floor = floor, scale = scale }
    else
      error(who .. ": param '" .. tostring(k) .. "' must be a number or {start=, floor=, scale=}", 2)
    end
  end
  return function(t)
    local out = {}
    for k, c in pairs(curves) do
      out[k] = math.max(c.floor, c.start / math.sqrt(1 + t / c.scale))
    end
    return out
  end
end

-- Piecewise constant: step{ {1000, {epsilon = 0.2}}, {5000, {epsilon = 0.1}},
-- {math.huge, {epsilon = 0.02}} } uses the params of the first entry whose
-- bound is above t; past the last bound the last entry holds.
function schedule.step(steps)
  local who = "oa.schedule.step"
  if type(steps) ~= "table" or #steps == 0 then
    error(who .. ": expected a list of {until_t, params}", 2)
  end
  local prev = -math.huge
  for i, s in ipairs(steps) do
    if type(s) ~= "table" or type(s[1]) ~= "number" or type(s[2]) ~= "table" then
      error(string.format("%s: entry %d must be {until_t, params}", who, i), 2)
    end
    if s[1] <= prev then
      error(string.format("%s: entry %d: until_t must increase", who, i), 2)
    end
    check_params(who, s[2])
    prev = s[1]
  end
  return function(t)
    for _, s in ipairs(steps) do
      if t < s[1] then return util.copy(s[2]) end
    end
    return util.copy(steps[#steps][2])
  end
end

-- `during` for the first n decisions, then `after`. Either may be a params
-- table or a schedule; `after` is called with t - n, so a decay starts
-- fresh when the warm-up ends.
function schedule.warmup(n, during, after)
  local who = "oa.schedule.warmup"
  util.check_number(who, "n", n, 0, nil, 2)
  for key, p in pairs { during = during, after = after } do
    if not util.is_callable(p) and type(p) ~= "table" then
      error(who .. ": '" .. key .. "' must be a params table or a schedule", 2)
    end
  end
  return function(t)
    if t < n then return resolve(during, t) end
    return resolve(after, t - n)
  end
end

return schedule
