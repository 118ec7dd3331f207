-- A small deterministic PRNG for simulations (splitmix64 on Lua 5.4
-- integers): the same seed gives the same stream on every platform and
-- Lua build, which math.random does not promise.
local rng = {}

local Rng = { __name = "onearm.rng" }
Rng.__index = Rng

local GOLDEN = 0x9e3779b97f4a7c15 -- hex literals wrap to signed 64-bit integers
local M1, M2 = 0xbf58476d1ce4e5b9, 0x94d049bb133111eb

local function mix(z)
  z = (z ~ (z >> 30)) * M1
  z = (z ~ (z >> 27)) * M2
  return z ~ (z >> 31)
end

-- Mix any number of integers (or strings) into one 64-bit seed: for
-- independent, reproducible streams per entity (user 17's tastes).
function rng.hash(...)
  local h = 0x5851f42d4c957f2d
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    if type(v) == "string" then
      for j = 1, #v do h = mix(h + v:byte(j) + GOLDEN) end
    else
      h = mix(h + math.tointeger(math.floor(v)) + GOLDEN)
    end
  end
  return h
end

function rng.new(seed)
  return setmetatable({ s = mix(math.tointeger(math.floor(seed or 0)) + GOLDEN) }, Rng)
end

-- The next raw 64-bit integer.
function Rng:next()
  local s = self.s + GOLDEN
  self.s = s
  return mix(s)
end

-- Uniform in [0, 1), 53 bits.
function Rng:random()
  return ((self:next() >> 11) * 0x1p-53)
end

-- Uniform integer in [1, n].
function Rng:int(n)
  return math.floor(self:random() * n) + 1
end

-- Uniform in [lo, hi).
function Rng:uniform(lo, hi)
  return lo + (hi - lo) * self:random()
end

-- Standard normal (Box-Muller; one of the pair is dropped for simplicity).
function Rng:normal()
  local u = self:random()
  if u < 1e-300 then u = 1e-300 end
  return math.sqrt(-2 * math.log(u)) * math.cos(2 * math.pi * self:random())
end

function Rng:bernoulli(p)
  return self:random() < p
end

-- An element of a list, uniformly; or by weights when given (same length).
function Rng:pick(list, weights)
  if not weights then return list[self:int(#list)] end
  local total = 0
  for i = 1, #weights do total = total + weights[i] end
  local u = self:random() * total
  for i = 1, #weights do
    u = u - weights[i]
    if u < 0 then return list[i] end
  end
  return list[#list]
end

-- An independent stream derived from this one and a label.
function Rng:fork(label)
  return rng.new(rng.hash(self:next(), label or 0))
end

return rng
