-- Reward composers: turn a table of raw signals (watched = 0.8, liked = true)
-- into the one number models learn from.
local util = require "onearm.util"

local reward = {}

-- A signal as a number: booleans count 0/1, a missing signal counts 0.
local function value(name, v)
  local t = type(v)
  if t == "number" then return v end
  if t == "boolean" then return v and 1 or 0 end
  if v == nil then return 0 end
  error(string.format("reward: signal '%s' must be a number or a boolean, got %s", name, t), 3)
end
reward.value = function(name, v) return value(name, v) end

-- weighted{ watched = 0.6, liked = 0.3, shared = 0.1 } -> function(signals)
-- returning Σ weight * value. A signal can also be given as a number (the
-- whole signal is that number): weighted{...}(0.7) is 0.7 times the sum of
-- weights, which keeps simple callers simple.
function reward.weighted(weights)
  local who = "oa.reward.weighted"
  if type(weights) ~= "table" or next(weights) == nil then
    error(who .. ": expected a table of signal weights", 2)
  end
  local names = util.sorted_keys(weights)
  for _, k in ipairs(names) do
    if type(k) ~= "string" then error(who .. ": signal names must be strings", 2) end
    util.check_number(who, k, weights[k], nil, nil, 2)
  end
  return function(signals)
    if type(signals) ~= "table" then
      error("reward: signals must be a table, got " .. type(signals), 2)
    end
    local r = 0
    for _, k in ipairs(names) do r = r + weights[k] * value(k, signals[k]) end
    return r
  end
end

-- clip(fn, lo, hi): the reward of fn, kept within [lo, hi].
function reward.clip(fn, lo, hi)
  local who = "oa.reward.clip"
  if not util.is_callable(fn) then error(who .. ": first argument must be a function", 2) end
  util.check_number(who, "lo", lo, nil, nil, 2)
  util.check_number(who, "hi", hi, lo, nil, 2)
  return function(signals)
    local r = fn(signals)
    if type(r) ~= "number" then error("reward: composed reward is not a number", 2) end
    if r < lo then return lo elseif r > hi then return hi end
    return r
  end
end

-- signal(name): the reward is one signal, as a number.
function reward.signal(name)
  if type(name) ~= "string" then error("oa.reward.signal: expected a signal name", 2) end
  return function(signals) return value(name, signals[name]) end
end

return reward
