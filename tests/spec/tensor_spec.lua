-- The tensor type of onearm.core: construction, indexing, views and the
-- BLAS-backed operations, checked against hand-computed results.
local oa = require "onearm.core"

local function near(a, b, tol) return math.abs(a - b) <= (tol or 1e-12) end

describe("tensor", function()
  it("builds from shapes and nested tables", function()
    local t = oa.tensor(2, 3)
    assert.are.equal(2, t.rows)
    assert.are.equal(3, t.cols)
    assert.are.equal("f64", t.dtype)
    assert.are.equal(6, #t)
    assert.are.equal(0, t:get(2, 3))
    local A = oa.tensor{{1, 2}, {3, 4}}
    assert.are.same({{1, 2}, {3, 4}}, A:totable())
    local v = oa.vector{1, 2, 3}
    assert.are.equal(3, v.rows)
    assert.are.equal(1, v.cols)
    assert.are.equal(2, v[2])
    v[2] = 5
    assert.are.same({1, 5, 3}, v:totable())
    assert.are.equal("f32", oa.tensor(1, 1, "f32").dtype)
    assert.are.same({{2, 0}, {0, 2}}, oa.eye(2, 2):totable())
  end)

  it("gets, sets, fills and copies", function()
    local t = oa.tensor(2, 2)
    t:set(1, 2, 7)
    assert.are.equal(7, t:get(1, 2))
    local c = t:copy()
    t:fill(1)
    assert.are.same({{0, 7}, {0, 0}}, c:totable())
    assert.are.same({{1, 1}, {1, 1}}, t:totable())
    assert.matches("tensor 2x2 f64", tostring(t))
  end)

  it("multiplies a matrix by a vector through BLAS", function()
    local A = oa.tensor{{1, 2, 3}, {4, 5, 6}}
    assert.are.same({14, 32}, A:mv(oa.vector{1, 2, 3}):totable())
    assert.are.same({9, 12, 15}, A:mv(oa.vector{1, 2}, true):totable())
    local y = oa.vector{1, 1}
    oa.gemv(2, A, oa.vector{1, 0, 0}, 10, y)
    assert.are.same({12, 18}, y:totable())
  end)

  it("multiplies matrices, with transposes", function()
    local A = oa.tensor{{1, 2}, {3, 4}}
    local B = oa.tensor{{5, 6}, {7, 8}}
    assert.are.same({{19, 22}, {43, 50}}, A:mm(B):totable())
    assert.are.same({{26, 30}, {38, 44}}, A:mm(B, true):totable())
    assert.are.same({{17, 23}, {39, 53}}, A:mm(B, false, true):totable())
    local C = oa.tensor{{1, 1}, {1, 1}}
    oa.gemm(1, A, B, -1, C)
    assert.are.same({{18, 21}, {42, 49}}, C:totable())
  end)

  it("computes dot, axpy, ger and scale", function()
    local x, y = oa.vector{1, 2, 3}, oa.vector{4, 5, 6}
    assert.are.equal(32, x:dot(y))
    y:axpy(2, x)
    assert.are.same({6, 9, 12}, y:totable())
    local A = oa.tensor(2, 3)
    A:ger(2, oa.vector{1, 2}, oa.vector{1, 0, 1})
    assert.are.same({{2, 0, 2}, {4, 0, 4}}, A:totable())
    A:scale(0.5)
    assert.are.same({{1, 0, 1}, {2, 0, 2}}, A:totable())
  end)

  it("factors a positive definite matrix and solves with the factor", function()
    local S = oa.tensor{{4, 2}, {2, 3}}
    local L = S:cholesky()
    assert.is_true(near(2, L:get(1, 1)))
    assert.is_true(near(1, L:get(2, 1)))
    assert.is_true(near(math.sqrt(2), L:get(2, 2)))
    assert.are.equal(0, L:get(1, 2))
    assert.are.same({{4, 2}, {2, 3}}, S:totable()) -- unchanged
    local x = L:cholesky_solve(oa.vector{1, 2})
    -- [4 2; 2 3] x = [1; 2]  ->  x = [-1/8; 3/4]
    assert.is_true(near(-0.125, x[1]))
    assert.is_true(near(0.75, x[2]))
    assert.has_error(function() oa.tensor{{1, 2}, {2, 1}}:cholesky() end,
      "cholesky: cholesky: matrix is not positive definite")
  end)

  it("returns views that write through and keep their parent alive", function()
    local A = oa.tensor{{1, 2, 3}, {4, 5, 6}}
    local r = A:row(2)
    assert.are.same({4, 5, 6}, r:totable())
    r[1] = 40
    assert.are.equal(40, A:get(2, 1))
    local s = A:slice(1, 2, 2, 2)
    assert.are.same({{2, 3}, {5, 6}}, s:totable())
    A = nil
    collectgarbage()
    collectgarbage()
    assert.are.same({40, 5, 6}, r:totable())
  end)

  it("makes views of a closed tensor fail instead of reading freed memory", function()
    local A = oa.tensor{{1, 2}, {3, 4}}
    local r = A:row(1)
    A:close()
    assert.has_error(function() r:totable() end)
    assert.has_error(function() A:get(1, 1) end)
    A:close() -- idempotent
  end)

  it("frees storage when a to-be-closed variable goes out of scope", function()
    local keep
    do
      local t <close> = oa.tensor(2, 2)
      keep = t
    end
    assert.matches("closed", tostring(keep))
  end)

  it("rejects wrong types, indexes and shapes with clear messages", function()
    local A = oa.tensor(2, 3)
    assert.has_error(function() A:get(3, 1) end, "bad argument #1 to 'get' (row 3 out of 1..2)")
    assert.has_error(function() A:mv(oa.vector{1, 2}) end,
      "mv: gemv: product of a 2 x 3 matrix times a vector of 2 into 2")
    assert.has_error(function() A:mm(oa.tensor(2, 2)) end)
    assert.has_error(function() oa.tensor{{1, 2}, {3}} end)
    assert.has_error(function() oa.tensor{{1, "x"}} end, "tensor: element [1][2]: expected a number, got string")
    assert.has_error(function() A:dot("x") end)
    assert.has_error(function() A:axpy(1, oa.tensor(3, 2)) end)
    assert.has_error(function() A[1] = 2 end)
    assert.has_error(function() oa.tensor(-1, 2) end)
    assert.has_error(function() oa.tensor(2, 2, "f16") end)
    assert.has_error(function() oa.tensor(2, 2, "f32"):mv(oa.vector{1, 2}) end)
  end)

  it("accepts NaN as scratch data", function()
    local t = oa.vector{1, 2}
    t[1] = 0 / 0
    assert.is_true(t[1] ~= t[1])
  end)
end)
