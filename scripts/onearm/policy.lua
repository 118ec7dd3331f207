-- oa.policy: a feature space paired with a model (a preset, or a function
-- that builds a model for a dimension) and an explorer, plus optional
-- overrides. The result is a plain description; oa.load_app turns it into a
-- C policy inside an engine.
local util = require "onearm.util"
local presets = require "onearm.presets"

local policy = {}

local Policy = { __name = "onearm.policy" }
Policy.__index = Policy

function policy.is_policy(v) return getmetatable(v) == Policy end

local ALLOWED = util.set { "features", "model", "explore", "schedule", "epsilon",
                           "temperature", "alpha", "gamma", "draws" }

local function is_features(v)
  if type(v) ~= "userdata" and type(v) ~= "table" then return false end
  local ok, dim = pcall(function() return v:dim() end)
  return ok and type(dim) == "number"
end

-- spec.features: an oa.features space (required unless the model is
-- context-free); spec.model: a preset (oa.linucb{...}) or a function
-- (dim, features) -> model userdata; spec.explore: an explorer name or a
-- Lua function, overriding the preset's; spec.schedule: a per-policy
-- schedule (t -> params) that replaces the app's for this policy.
function policy.new(spec)
  local who = "oa.policy"
  if type(spec) ~= "table" then error(who .. ": expected a table", 2) end
  util.check_keys(who, spec, ALLOWED, 2)
  local model = spec.model
  if model == nil then error(who .. ": option 'model' is required", 2) end
  local d = setmetatable({ features = spec.features, params = {}, schedule = spec.schedule },
    Policy)
  if presets.is_preset(model) then
    d.model = model
    d.explore = model.explore
    for k, v in pairs(model.params) do d.params[k] = v end
  elseif util.is_callable(model) then
    d.model = model
    d.explore = "greedy"
  else
    error(who .. ": option 'model' must be a preset (oa.linucb{...}) or a function"
      .. " (dim, features) -> model", 2)
  end
  local context_free = presets.is_preset(model) and model.context_free
  if not context_free and not is_features(spec.features) then
    error(who .. ": option 'features' must be a feature space (oa.features{...})", 2)
  end
  if spec.explore ~= nil then
    if type(spec.explore) ~= "string" and not util.is_callable(spec.explore) then
      error(who .. ": option 'explore' must be an explorer name or a function", 2)
    end
    d.explore = spec.explore
  end
  for _, k in ipairs(presets.EXPLORE_PARAMS) do
    if spec[k] ~= nil then
      util.check_number(who, k, spec[k], 0, nil, 2)
      d.params[k] = spec[k]
    end
  end
  if spec.schedule ~= nil then util.check_type(who, "schedule", spec.schedule, "callable", 2) end
  return d
end

-- The names of the explorer parameters this policy's explorer reads; nil
-- means "all of them" (a Lua explorer may read any).
function policy.param_names(d)
  if type(d.explore) == "string" then return presets.PARAMS_OF[d.explore] end
  return nil
end

-- Build the model and add the policy `name` to engine `eng`.
function policy.instantiate(core, eng, name, d)
  local dim = d.features and d.features:dim() or 0
  local m
  if presets.is_preset(d.model) then
    m = presets.build(core, d.model, dim)
  else
    m = d.model(dim, d.features)
    if m == nil then error("policy '" .. name .. "': the model function returned nil", 0) end
  end
  local cfg = { features = d.features, model = m, explore = d.explore }
  for k, v in pairs(d.params) do cfg[k] = v end
  eng:add_policy(name, cfg)
  return m
end

return policy
