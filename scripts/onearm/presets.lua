-- Policy presets: one function per well-known algorithm, each returning a
-- model description (which C model to build, with which options, and which
-- explorer with which parameters). `oa.policy` pairs one with a feature
-- space; `oa.load_app` builds the model once the feature dimension is known.
local util = require "onearm.util"

local presets = { exported = {} }

-- Marks tables made here, so that oa.policy can tell a preset from a typo.
local Preset = {}
Preset.__index = Preset
Preset.__name = "onearm.preset"

function presets.is_preset(v) return getmetatable(v) == Preset end

-- Explorer parameters every preset accepts as overrides.
local EXPLORE_PARAMS = { "epsilon", "temperature", "alpha", "gamma", "draws" }
presets.EXPLORE_PARAMS = EXPLORE_PARAMS

-- The explorer parameters each built-in explorer reads; schedules only set
-- these, so one app-wide schedule can serve policies with different
-- explorers.
presets.PARAMS_OF = {
  greedy = {},
  egreedy = { "epsilon" },
  softmax = { "temperature" },
  ucb = { "alpha" },
  thompson = { "draws" },
  squarecb = { "gamma" },
}

-- def: { model = C constructor name, options = { name = default } (model
-- options; nil defaults are left to C), explore = default explorer,
-- params = { name = default }, per_action = name of the disjoint model or
-- nil, context_free = true when the model takes no feature dimension }.
local function define(name, def)
  local allowed = { explore = true, per_action = def.per_action ~= nil,
                    arms = def.per_action ~= nil or nil }
  for k in pairs(def.options) do allowed[k] = true end
  for _, k in ipairs(EXPLORE_PARAMS) do
    -- A model option of the same name (bernoulli_ts's alpha prior) wins.
    if def.options[k] == nil then allowed[k] = true end
  end
  for k in pairs(def.extra or {}) do allowed[k] = true end

  local function make(opts)
    opts = opts or {}
    local who = "oa." .. name
    if type(opts) ~= "table" then error(who .. ": expected an options table", 2) end
    util.check_keys(who, opts, allowed, 2)
    local d = setmetatable({ preset = name, model = def.model, options = {},
                             explore = opts.explore or def.explore, params = {},
                             context_free = def.context_free or false }, Preset)
    if opts.per_action then
      d.model = def.per_action
      d.options.arms = opts.arms or 1024
    end
    for k, default in pairs(def.options) do
      local v = opts[k]
      if v == nil then v = default end
      d.options[k] = v
    end
    for k, default in pairs(def.params) do d.params[k] = default end
    for _, k in ipairs(EXPLORE_PARAMS) do
      if def.options[k] == nil and opts[k] ~= nil then d.params[k] = opts[k] end
    end
    if def.finish then def.finish(d, opts) end
    if type(d.explore) ~= "string" and not util.is_callable(d.explore) then
      error(who .. ": option 'explore' must be an explorer name or a function", 2)
    end
    return d
  end
  presets.exported[name] = make
end

local RIDGE = { lambda = 1, forget = 1, refactor_every = false }

-- Ridge options: refactor_every is left to C unless given.
local function ridge(extra)
  local o = util.copy(RIDGE)
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

-- `false` defaults mean "not set": C picks its own default.
local function drop_unset(d)
  for k, v in pairs(d.options) do
    if v == false then d.options[k] = nil end
  end
end

define("linucb", { model = "ridge", per_action = "disjoint_ridge", options = ridge(),
                   explore = "ucb", params = { alpha = 1 }, finish = drop_unset })
define("lints", { model = "ridge", per_action = "disjoint_ridge", options = ridge { v = 0.5 },
                  explore = "thompson", params = { draws = 64 }, finish = drop_unset })
define("egreedy", { model = "ridge", per_action = "disjoint_ridge", options = ridge(),
                    explore = "egreedy", params = { epsilon = 0.05 }, finish = drop_unset })
define("squarecb", { model = "ridge", per_action = "disjoint_ridge", options = ridge(),
                     explore = "squarecb", params = { gamma = 100 }, finish = drop_unset })

local MLP = { hidden = { 64, 32 }, output = "linear", lr = 1e-3, batch = 32, replay = 10000,
              train_every = 1, steps = 1, l2 = 0, seed = 0, forget = 1 }

-- The per-preset copy of `hidden`, so that editing one policy's layer list
-- never changes another's.
local function finish_mlp(neural_linear)
  return function(d)
    local h = {}
    for i, v in ipairs(d.options.hidden) do h[i] = v end
    d.options.hidden = h
    d.options.neural_linear = neural_linear
  end
end

define("neural", { model = "mlp", options = MLP, explore = "egreedy",
                   params = { epsilon = 0.05 }, finish = finish_mlp(false) })
do
  local o = util.copy(MLP)
  o.lambda, o.v = 1, 0.5
  define("neural_linear", { model = "mlp", options = o, explore = "thompson",
                            params = { draws = 32 }, finish = finish_mlp(true) })
end

-- REINFORCE learns a softmax policy: its explorer must use the model's own
-- temperature, so one option sets both.
define("reinforce", {
  model = "reinforce",
  options = { lr = 0.05, baseline_decay = 0.99, l2 = 0, temperature = 1 },
  explore = "softmax", params = {},
  finish = function(d) d.params.temperature = d.options.temperature end,
})

define("logistic", { model = "logistic", options = { lambda = 1, forget = 1, lr = 0.1 },
                     explore = "ucb", params = { alpha = 0.5 } })

-- Context-free models: `arms` is required (the number of distinct actions).
local function need_arms(name)
  return function(d)
    if type(d.options.arms) ~= "number" or d.options.arms < 1 then
      error("oa." .. name .. ": option 'arms' (number of actions, >= 1) is required", 3)
    end
  end
end
define("bernoulli_ts", { model = "bernoulli_ts", context_free = true,
                         options = { arms = false, alpha = 1, beta = 1, forget = 1 },
                         explore = "thompson", params = { draws = 64 },
                         finish = need_arms("bernoulli_ts") })
define("ucb1", { model = "ucb1", context_free = true, options = { arms = false, forget = 1 },
                 explore = "ucb", params = { alpha = 1 }, finish = need_arms("ucb1") })

-- A model written in Lua (oa.model.lua): the hooks are passed through; the
-- model is built with the feature space's dim at load time. State kept in
-- closures is per app load, hence per engine.
define("lua_model", {
  model = "lua",
  options = { score = false, update = false, sample = false, save = false, load = false,
              arms = false },
  explore = "greedy", params = {},
  finish = function(d)
    drop_unset(d)
    if not util.is_callable(d.options.score) or not util.is_callable(d.options.update) then
      error("oa.lua_model: options 'score' and 'update' (functions) are required", 3)
    end
  end,
})

-- Build the C model for a preset and a feature dimension.
function presets.build(core, d, dim)
  local ctor = core.model and core.model[d.model]
  if not ctor then error("onearm.core has no model '" .. d.model .. "'", 2) end
  local o = util.copy(d.options)
  if not d.context_free then o.dim = dim end
  return ctor(o)
end

return presets
