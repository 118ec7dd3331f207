-- Linear Thompson sampling written in Lua over onearm's tensors: the
-- arithmetic (Cholesky factors, matrix products) runs in C, the Lua code
-- only says what to compute. The posterior over the weights θ is
-- N(A⁻¹b, v² A⁻¹), starting from a prior N(μ0, A0⁻¹) given by the app.
local oa = require "onearm"
local rng = require "onearm.rng"

local M = {}

-- Recompute the cached posterior after updates: mean θ = A⁻¹b (d x 1),
-- covariance factor C with C Cᵀ = A⁻¹ (for draws) and A⁻¹ itself (for
-- widths). d is small (tens), so a full refactor per update is cheap.
local function refresh(self)
  if not self.dirty then return end
  local Ainv = self.A:cholesky():cholesky_solve(self.I)
  self.Ainv = Ainv
  self.theta = Ainv:mm(self.b, false, true)
  self.C = Ainv:cholesky()
  self.dirty = false
end

-- Means X θ and widths sqrt(xᵢᵀ A⁻¹ xᵢ) for the n candidate rows of X.
local function score(self, X)
  refresh(self)
  local means = X:mm(self.theta)
  local XA = X:mm(self.Ainv)
  local widths = {}
  for i = 1, X.rows do widths[i] = math.sqrt(math.max(0, XA:row(i):dot(X:row(i)))) end
  return means, widths
end

-- `draws` posterior samples θ̃ = θ + v C z, scored on every row: a draws x n
-- tensor (draw-major, as the engine expects).
local function sample(self, X, draws)
  refresh(self)
  local d, r = self.dim, self.rng
  local z = {}
  for i = 1, d do
    local row = {}
    for k = 1, draws do row[k] = r:normal() end
    z[i] = row
  end
  local thetas = self.C:mm(oa.tensor(z)):scale(self.v)          -- d x draws
  thetas:ger(1, self.theta, oa.vector(draws):fill(1))            -- + θ in every column
  return thetas:mm(X, true, true)                                -- draws x n
end

-- One observation: A += x xᵀ, b += r x. x is a 1 x d row.
local function update(self, x, reward)
  self.A:ger(1, x, x)
  self.b:axpy(reward, x)
  self.dirty = true
end

-- new{dim=, prior_mean = 1 x d tensor, prior_precision = d x d tensor, v=, seed=}
-- -> an oa.model.lua. The prior enters as pseudo-observations: A = A0 and
-- b = μ0ᵀ A0, so the posterior mean starts at μ0.
function M.new(opts)
  local d = opts.dim
  local A0 = opts.prior_precision or oa.eye(d)
  local mu0 = opts.prior_mean or oa.tensor(1, d)
  local self = {
    dim = d, v = opts.v or 0.3, rng = rng.new(opts.seed or 0),
    A = A0:copy(), b = mu0:mm(A0), I = oa.eye(d), dirty = true,
    score = score, sample = sample, update = update,
  }
  return oa.model.lua(self)
end

return M
