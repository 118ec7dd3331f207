-- Feature spaces declared from Lua: compiled in C, visible through fs:encode.
local oa = require "onearm.core"

describe("features", function()
  it("orders fields by name within each side, so the space is deterministic", function()
    local fs = oa.features{layout = "concat", context = {b = "num", a = "num", h = "cyclic:24"},
                           action = {e = "dense:2"}}
    assert.are.equal(7, fs:dim())
    local names = {}
    for _, f in ipairs(fs:fields("context")) do names[#names + 1] = f.name .. ":" .. f.kind end
    assert.are.same({"a:num", "b:num", "h:cyclic"}, names)
    assert.are.same({{name = "e", kind = "dense", length = 2}}, fs:fields("action"))
    local row = fs:encode({a = 2, b = 3, h = 6}, {e = {5, 7}}):totable()
    -- bias, a, b, sin(2π·6/24), cos(2π·6/24), e1, e2
    assert.are.equal(1, row[1])
    assert.are.equal(2, row[2])
    assert.are.equal(3, row[3])
    assert.is_true(math.abs(row[4] - 1) < 1e-12)
    assert.is_true(math.abs(row[5]) < 1e-12)
    assert.are.equal(5, row[6])
    assert.are.equal(7, row[7])
  end)

  it("gives the same digest for the same declaration", function()
    local decl = function()
      return {dim = 64, context = {u = "cat", z = "num", a = "set"}, action = {t = "cat"},
              cross = {{"a", "t"}}}
    end
    assert.are.equal(oa.features(decl()):digest(), oa.features(decl()):digest())
    assert.are_not.equal(oa.features(decl()):digest(), oa.features{dim = 32, context = {u = "cat"}}:digest())
  end)

  it("applies numeric options (log, clip, standardize, weight)", function()
    local fs = oa.features{layout = "concat", bias = false,
                           context = {x = {kind = "num", clip = {0, 10}, mean = 2, std = 4, weight = 2}}}
    assert.are.same({2 * (10 - 2) / 4}, fs:encode({x = 100}):totable())
    local lg = oa.features{layout = "concat", bias = false, context = {x = "log"}}
    assert.is_true(math.abs(lg:encode({x = 9}):totable()[1] - math.log(10)) < 1e-12)
  end)

  it("hashes categories, sets and weighted bags into dim slots", function()
    local fs = oa.features{dim = 64, context = {tags = "set", dev = "cat"}}
    local list = fs:encode({tags = {"a", "b"}}):totable()
    local map = fs:encode({tags = {a = 1, b = 1}}):totable()
    assert.are.same(list, map)
    local sum = 0
    for _, v in ipairs(list) do sum = sum + v end
    assert.are.equal(3, sum) -- bias + two items (no collision for these two)
    local booleans = fs:encode({dev = true}):totable()
    local ones = fs:encode({dev = 1}):totable()
    assert.are.same(booleans, ones)
    -- a missing field contributes nothing; only the bias is left
    local empty = fs:encode({}):totable()
    assert.are.equal(1, empty[1])
  end)

  it("crosses context and action fields", function()
    local plain = oa.features{dim = 256, context = {u = "cat"}, action = {t = "cat"}}
    local crossed = oa.features{dim = 256, context = {u = "cat"}, action = {t = "cat"},
                                cross = {{"u", "t"}}}
    local function nnz(row)
      local n = 0
      for _, v in ipairs(row:totable()) do if v ~= 0 then n = n + 1 end end
      return n
    end
    assert.are.equal(nnz(plain:encode({u = "x"}, {t = "y"})) + 1, nnz(crossed:encode({u = "x"}, {t = "y"})))
  end)

  it("rejects bad declarations with a message naming the problem", function()
    assert.has_error(function() oa.features{dim = 8, context = {a = "foo"}} end,
      "features: context field 'a': unknown kind 'foo' (num, log, cat, set, bag, dense:N, cyclic:P)")
    assert.has_error(function() oa.features{dim = 8, context = {a = "num"}, action = {t = "cat"}, cross = {{"t", "a"}}} end,
      "features: cross 1: 't' is not a context field")
    assert.has_error(function() oa.features{dim = 8, contxt = {}} end,
      "features: declaration: unknown option 'contxt'")
    assert.has_error(function() oa.features{dim = 0} end)
    assert.has_error(function() oa.features{dim = 8, context = {e = "dense"}} end)
    assert.has_error(function() oa.features{dim = 8, context = {x = {kind = "num", clip = {1, 0}}}} end)
    assert.has_error(function() oa.features("x") end)
  end)

  it("rejects bad values with a message naming the field", function()
    local fs = oa.features{layout = "concat", context = {a = "num", tags = "set"}, action = {e = "dense:2"}}
    assert.has_error(function() fs:encode({a = 0 / 0}) end,
      "encode: context: field 'a' (num): value is NaN or infinite")
    assert.has_error(function() fs:encode({a = math.huge}) end)
    assert.has_error(function() fs:encode({a = 1}, {e = {1, 2, 3}}) end,
      "encode: action: field 'e' (dense) expects 2 numbers, got 3")
    assert.has_error(function() fs:encode({a = print}) end,
      "encode: context field 'a': expected a number, string, boolean or table, got function")
    assert.has_error(function() fs:encode({tags = {1, "a"}}) end,
      "encode: context field 'tags': item 2 is a string; a vector holds only numbers")
    assert.has_error(function() fs:encode({tags = {a = "x"}}) end)
    assert.has_error(function() fs:encode(42) end, "encode: context must be a table of fields, got number")
  end)

  it("closes once, and errors after closing", function()
    local fs = oa.features{dim = 8}
    fs:close()
    fs:close()
    assert.has_error(function() fs:dim() end)
  end)
end)
