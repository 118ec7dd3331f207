-- `onearm cbify` end to end: the real binary on a real data set, with the
-- JSON output scripts rely on, and the errors a user sees for bad input.
-- Needs ONEARM_BIN (the onearm binary) and ONEARM_DATA_DIR (the data sets).

local bin = assert(os.getenv("ONEARM_BIN"), "ONEARM_BIN is not set")
local data = assert(os.getenv("ONEARM_DATA_DIR"), "ONEARM_DATA_DIR is not set")

local function quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- Runs the binary with the given arguments; returns stdout, stderr and the
-- exit code.
local function run(...)
  local args = {}
  for i, a in ipairs({ ... }) do args[i] = quote(a) end
  local errfile = os.tmpname()
  local p = io.popen(quote(bin) .. " " .. table.concat(args, " ") .. " 2>" .. quote(errfile))
  local out = p:read("a")
  local _, _, code = p:close()
  local f = io.open(errfile)
  local err = f:read("a")
  f:close()
  os.remove(errfile)
  return out, err, code
end

-- The output is one flat JSON object of numbers and strings.
local function decode(s)
  local t = {}
  for k, v in s:gmatch('"([%w_]+)":%s*([^,}]+)') do
    t[k] = v:match('^"(.*)"$') or tonumber(v)
  end
  return t
end

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

describe("onearm cbify", function()
  local digits = data .. "/digits.csv.gz"

  it("runs a custom Lua policy from an app through the engine", function()
    local src = os.getenv("ONEARM_SOURCE_DIR") or "."
    local app = src .. "/examples/custom-policy/cbify_digits.lua"
    local out, err, code = run("cbify", digits, "--policy", app, "--json")
    assert.are.equal(0, code, err)
    local r = decode(out)
    assert.are.equal(1797, r.examples)
    assert.is_true(r.reward > 0.6, "reward " .. tostring(r.reward))
    -- an app whose feature space does not fit the data is refused clearly
    local bad = os.tmpname() .. ".lua"
    write(bad, [[
local oa = require "onearm"
local space = oa.features { layout = "concat", context = { x = "dense:3" }, action = { class = "cat" } }
return oa.app { policies = { p = oa.policy { features = space, model = oa.linucb {} } } }
]])
    local _, err2, code2 = run("cbify", digits, "--policy", bad)
    os.remove(bad)
    assert.are.equal(1, code2)
    assert.truthy(err2:match('dense:64'), err2)
  end)

  it("learns digits well above chance and prints the JSON summary", function()
    local out, err, code = run("cbify", digits, "--json", "--shuffle-seed", "1")
    assert.are.equal(0, code, err)
    assert.truthy(out:match("^%b{}%s*$"), "one JSON object: " .. out)
    local r = decode(out)
    assert.are.equal(1797, r.examples)
    assert.are.equal(10, r.actions)
    assert.is_true(r.reward > 0.6, "reward " .. tostring(r.reward))
    assert.is_true(r.seconds > 0)
    assert.is_true(r.examples_per_second > 0)
    for _, key in ipairs({ "examples", "actions", "reward", "seconds", "examples_per_second" }) do
      assert.is_not_nil(r[key], key)
    end
  end)

  it("gives the same result for the same seed and runs every preset", function()
    local a = decode((run("cbify", digits, "--json", "--policy", "squarecb", "--shuffle-seed", "7")))
    local b = decode((run("cbify", digits, "--json", "--policy", "squarecb", "--shuffle-seed", "7")))
    assert.are.equal(a.reward, b.reward)
    for _, preset in ipairs({ "linucb", "lints", "egreedy", "greedy", "logistic", "bernoulli_ts" }) do
      local out, err, code = run("cbify", digits, "--json", "--policy", preset)
      assert.are.equal(0, code, preset .. ": " .. err)
      local r = decode(out)
      assert.are.equal(preset, r.policy)
      assert.is_true(r.reward > 0.05, preset)
    end
  end)

  it("rejects a malformed file with its line number and a failing exit code", function()
    local path = os.tmpname()
    write(path, "label,a,b\n0,0.5,0.5\n1,0.5,oops\n")
    local out, err, code = run("cbify", path, "--json")
    os.remove(path)
    assert.are_not.equal(0, code)
    assert.are.equal("", out)
    assert.truthy(err:find(":3: column 3 (b): 'oops' is not a number", 1, true), err)
  end)

  it("rejects a missing file, an unknown preset and bad options", function()
    local _, err, code = run("cbify", data .. "/no-such-file.csv.gz")
    assert.are_not.equal(0, code)
    assert.truthy(err:find("no-such-file.csv.gz", 1, true), err)

    _, err, code = run("cbify", digits, "--policy", "no_such_preset")
    assert.are_not.equal(0, code)
    assert.truthy(err:find("unknown preset 'no_such_preset'", 1, true), err)

    _, err, code = run("cbify", digits, "--shuffle-seed", "x")
    assert.are_not.equal(0, code)
    assert.truthy(err:find("--shuffle-seed", 1, true), err)

    _, err, code = run("cbify")
    assert.are.equal(2, code)
    assert.truthy(err:find("usage", 1, true), err)
  end)
end)
