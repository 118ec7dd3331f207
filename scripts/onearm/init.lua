-- The `onearm` module: the C core (`onearm.core`) plus the Lua standard
-- library. Every field of the core is copied here first, so `oa.tensor`,
-- `oa.engine`, `oa.model` ... are the C functions themselves; the library
-- then adds presets, policies, apps, schedules, rewards and field helpers.
local core = require "onearm.core"

local oa = {}
for k, v in pairs(core) do oa[k] = v end

-- Library names must never shadow a core name: a silent shadow would make
-- the API differ depending on load order.
local function add(name, value)
  if oa[name] ~= nil and oa[name] ~= value then
    error("onearm: library name '" .. name .. "' collides with onearm.core", 2)
  end
  oa[name] = value
end

local presets = require "onearm.presets"
for name, fn in pairs(presets.exported) do add(name, fn) end

local policy = require "onearm.policy"
add("policy", policy.new)

local app = require "onearm.app"
add("app", app.new)
add("load_app", app.load)

add("schedule", require "onearm.schedule")
add("reward", require "onearm.reward")

local features = require "onearm.features"
add("field", features.field)
add("cross", features.cross)

return oa
