-- `onearm simulate`, run as users run it: the real binary ($ONEARM_BIN) on
-- the examples, checked through its JSON summary, its files and its exit
-- codes.
local json = require "dkjson"

local BIN = os.getenv("ONEARM_BIN") or "build/onearm"
local SRC = os.getenv("ONEARM_SOURCE_DIR") or "."

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- Run the binary; returns stdout, stderr and the exit code. vars: an
-- optional table of environment variables for the run.
local function run(args, vars)
  local err = os.tmpname()
  local cmd = { quote(BIN), "simulate" }
  for k, v in pairs(vars or {}) do table.insert(cmd, 1, k .. "=" .. quote(v)) end
  for _, a in ipairs(args) do cmd[#cmd + 1] = quote(a) end
  local p = io.popen(table.concat(cmd, " ") .. " 2>" .. quote(err))
  local out = p:read("a")
  local _, _, code = p:close()
  local f = io.open(err)
  local stderr = f:read("a")
  f:close()
  os.remove(err)
  return out, stderr, code
end

local function tmpdir()
  local path = os.tmpname()
  os.remove(path)
  return path
end

local function read(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function by_name(summary)
  local t = {}
  for _, p in ipairs(summary.policies) do t[p.name] = p end
  return t
end

describe("onearm simulate", function()
  it("shows every reels policy beating random, and writes the curves and the plot", function()
    local out_dir = tmpdir()
    local out, err, code = run { SRC .. "/examples/reels/app.lua", "--steps", "2000", "--seed",
                                 "3", "--json", "--out", out_dir }
    assert.equal(0, code, err)
    local summary = assert(json.decode(out), "not JSON: " .. out)
    local p = by_name(summary)
    assert.equal(2000, summary.steps)
    local learners = 0
    for _, row in ipairs(summary.policies) do
      if row.role == "learner" then
        learners = learners + 1
        assert.is_true(row.avg_reward > p.random.avg_reward + 0.05,
          row.name .. " does not beat random: " .. row.avg_reward)
        assert.is_true(row.regret < p.random.regret, row.name)
        assert.is_true(row.avg_reward <= p.oracle.avg_reward + 0.02, row.name)
        assert.is_true(row.decisions_per_s > 0)
      end
    end
    assert.equal(5, learners)
    assert.equal(0, p.oracle.regret)

    local csv = assert(read(out_dir .. "/curves.csv"), "no curves.csv")
    local header = csv:match("^[^\n]+")
    assert.matches("^step,", header)
    assert.truthy(header:find("linucb_regret", 1, true))
    local last = csv:match("([^\n]+)\n$")
    assert.matches("^2000,", last)
    local svg = assert(read(out_dir .. "/regret.svg"), "no regret.svg")
    assert.matches("^<svg", svg)
    assert.matches("</svg>\n$", svg)
    local _, lines = svg:gsub("<polyline", "")
    assert.equal(#summary.policies, lines)
    assert.truthy(read(out_dir .. "/summary.json"))
    os.execute("rm -rf " .. quote(out_dir))
  end)

  it("runs the reels app at scale with two-stage retrieval over the whole catalog", function()
    local out_dir = tmpdir()
    local out, err, code = run({ SRC .. "/examples/reels/app_scale.lua", "--env",
                                 SRC .. "/examples/reels/env_scale.lua", "--steps", "300",
                                 "--json", "--out", out_dir }, { REELS_VIDEOS = "20000" })
    assert.equal(0, code, err)
    local summary = assert(json.decode(out), "not JSON: " .. out)
    local p = by_name(summary)
    assert.equal(20000, summary.catalog)
    assert.equal("approximate", summary.retrieval.mode)
    assert.equal(200, summary.retrieval.n)
    -- Every decision retrieved its own shortlist from the catalog.
    assert.equal(300, p.reels.retrieval.approximate)
    assert.is_true(p.reels.retrieval.in_env_shortlist > 0)
    assert.is_true(p.reels.avg_reward > p.random.avg_reward + 0.05,
      "the learner does not beat random: " .. p.reels.avg_reward)
    assert.is_true(p.reels.regret < p.random.regret)
    assert.is_true(p.reels.avg_reward < p.oracle.avg_reward)
    os.execute("rm -rf " .. quote(out_dir))
  end)

  it("is reproducible from the seed", function()
    local args = { SRC .. "/examples/quickstart/app.lua", "--steps", "500", "--json", "--out",
                   tmpdir() }
    local a = json.decode((run(args)))
    local b = json.decode((run(args)))
    assert.equal(by_name(a).layout.avg_reward, by_name(b).layout.avg_reward)
    assert.equal(by_name(a).random.regret, by_name(b).random.regret)
    os.execute("rm -rf " .. quote(args[#args]))
  end)

  it("runs the custom Lua policies, which learn", function()
    local out_dir = tmpdir()
    local out, err, code = run { SRC .. "/examples/custom-policy/app.lua", "--steps", "1500",
                                 "--json", "--out", out_dir }
    assert.equal(0, code, err)
    local p = by_name(json.decode(out))
    for _, name in ipairs { "explore_first", "lua_ts", "lints" } do
      assert.is_true(p[name].avg_reward > p.random.avg_reward + 0.1,
        name .. " does not beat random")
    end
    os.execute("rm -rf " .. quote(out_dir))
  end)

  it("prints a table without --json", function()
    local out_dir = tmpdir()
    local out, err, code = run { SRC .. "/examples/quickstart/app.lua", "--steps", "300",
                                 "--out", out_dir }
    assert.equal(0, code, err)
    assert.matches("policy%s+role%s+avg reward%s+last quarter%s+regret%s+decisions/s", out)
    assert.matches("\nrandom%s+baseline", out)
    os.execute("rm -rf " .. quote(out_dir))
  end)

  it("exits 2 with a message on bad arguments", function()
    local cases = {
      {},
      { SRC .. "/examples/quickstart/app.lua", "--steps", "zero" },
      { SRC .. "/examples/quickstart/app.lua", "--frobnicate" },
      { SRC .. "/examples/nope/app.lua" },
      { SRC .. "/examples/quickstart/app.lua", "--env", "/nonexistent/env.lua" },
    }
    for _, args in ipairs(cases) do
      local _, err, code = run(args)
      assert.equal(2, code, table.concat(args, " "))
      assert.matches("onearm simulate: ", err)
      assert.matches("usage:", err)
    end
  end)

  it("exits 1 with file and line when a script fails", function()
    local dir = tmpdir()
    os.execute("mkdir -p " .. quote(dir))
    local f = io.open(dir .. "/app.lua", "w")
    f:write("local oa = require 'onearm'\nlocal x = nil\nreturn x.field\n")
    f:close()
    f = io.open(dir .. "/env.lua", "w")
    f:write("return { new = function() return {} end }\n")
    f:close()
    local _, err, code = run { dir .. "/app.lua", "--steps", "10", "--out", dir .. "/out" }
    assert.equal(1, code)
    assert.truthy(err:find("app.lua:3:", 1, true), err)
    os.execute("rm -rf " .. quote(dir))
  end)
end)
