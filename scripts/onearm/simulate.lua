-- `onearm simulate APP.lua [--env ENV.lua] [--steps N] [--seed S] [--out DIR]
-- [--json]`: runs every policy of an app against simulated users, side by
-- side with a uniform-random baseline and the oracle (the env's true best
-- action), and reports average reward, regret and speed.
--
-- Every policy gets its own engine (no shared state) and its own instance
-- of the env, all seeded identically, and all see the same stream of users
-- and candidate sets: one reference env draws each step's context and
-- candidates, and each policy's env only draws that policy's feedback noise.
--
-- Two-stage apps (an app that declares `retrieve`): every learner's engine
-- gets the retrieval store with the catalog, and each decision retrieves
-- its shortlist from the whole catalog (the app's retrieve defaults) and
-- ranks it, as `onearm serve` does; env:candidates is then the shortlist a
-- perfect retriever would give (the env knows the truth). The random
-- baseline and the oracle still choose among env:candidates, so regret is
-- measured against the best of the env's shortlist (a perfect retriever
-- followed by a perfect ranker); a learner's choice outside that shortlist
-- is valued by env:expected_reward as usual, and can beat it. The app's
-- filter hook works on candidate lists and is not applied to retrieval.
local oa = require "onearm"
local rng = require "onearm.rng"
local report = require "onearm.report"
local svgplot = require "onearm.svgplot"

local simulate = {}

local USAGE = [[
usage: onearm simulate APP.lua [--env ENV.lua] [--steps N] [--seed S] [--out DIR] [--json]
                               [--policy NAME]... [--every K]

  --env ENV.lua   the simulated users (default: env.lua next to the app)
  --steps N       decisions per policy (default 10000)
  --seed S        seed of the users, the candidates and the engines (default 1)
  --out DIR       where curves.csv, regret.svg and summary.json go (default ./out)
  --json          print the summary as JSON instead of a table
  --policy NAME   run only this policy (repeatable; default: all of the app's)
  --every K       record the learning curves every K steps (default steps/200)
]]

-- The host module exists inside the `onearm` binary; under a plain lua5.4
-- (tests) fall back to what the standard library offers.
local host = (function()
  local ok, h = pcall(require, "onearm.host")
  if ok then return h end
  return {
    isatty = function() return false end,
    clock = os.clock,
    mkdir = function(path)
      local q = "'" .. path:gsub("'", "'\\''") .. "'"
      local ok2 = os.execute("mkdir -p " .. q)
      if ok2 then return true end
      return nil, path .. ": cannot create directory"
    end,
  }
end)()

local function usage_error(msg)
  io.stderr:write("onearm simulate: ", msg, "\n", USAGE)
  return nil, msg
end

local function dirname(path) return path:match("^(.*)[/\\]") or "." end

local function file_exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

-- Parse argv into options; nil after printing a message on a usage error.
function simulate.parse_args(argv)
  local o = { steps = 10000, seed = 1, out = "out", json = false }
  local i = 1
  local function value(flag)
    i = i + 1
    if argv[i] == nil then return nil end
    return argv[i]
  end
  local function integer(flag, v, lo)
    local n = math.tointeger(tonumber(v))
    if n == nil or n < lo then return nil end
    return n
  end
  while i <= #argv do
    local a = argv[i]
    local flag, inline = a:match("^(%-%-[%w-]+)=(.*)$")
    if flag then a = flag end
    local function arg()
      if inline then return inline end
      return value(a)
    end
    if a == "-h" or a == "--help" then
      o.help = true
    elseif a == "--json" then
      o.json = true
    elseif a == "--env" or a == "--out" or a == "--policy" then
      local v = arg()
      if v == nil or v == "" then return usage_error(a .. " needs a value") end
      if a == "--policy" then
        o.policies = o.policies or {}
        o.policies[#o.policies + 1] = v
      else
        o[a:sub(3)] = v
      end
    elseif a == "--steps" or a == "--seed" or a == "--every" then
      local v = arg()
      local n = integer(a, v, a == "--seed" and math.mininteger or 1)
      if n == nil then
        return usage_error(string.format("%s needs an integer%s, got '%s'", a,
          a == "--seed" and "" or " >= 1", tostring(v)))
      end
      o[a:sub(3)] = n
    elseif a:sub(1, 1) == "-" and a ~= "-" then
      return usage_error("unknown option '" .. a .. "'")
    elseif o.app == nil then
      o.app = a
    else
      return usage_error("unexpected argument '" .. a .. "'")
    end
    i = i + 1
  end
  if o.help then return o end
  if not o.app then return usage_error("missing APP.lua") end
  if not file_exists(o.app) then return usage_error("cannot open app '" .. o.app .. "'") end
  o.env = o.env or (dirname(o.app) .. "/env.lua")
  if not file_exists(o.env) then return usage_error("cannot open env '" .. o.env .. "'") end
  return o
end

-- Load the env script: it returns { new = function(seed) ... end }. It runs
-- as ordinary Lua (it is the test harness, not a served app), and can
-- require modules from its own folder.
local function load_env(path)
  local dir = dirname(path)
  local saved = package.path
  package.path = dir .. "/?.lua;" .. dir .. "/?/init.lua;" .. package.path
  local chunk, err = loadfile(path, "t")
  if not chunk then error(err, 0) end
  local ok, m = pcall(chunk)
  package.path = saved
  if not ok then error(m, 0) end
  if type(m) ~= "table" or type(m.new) ~= "function" then
    error(path .. ": the env must return a table with new(seed)", 0)
  end
  return m
end

local function check_env(path, env)
  for _, k in ipairs { "context", "candidates", "signals", "expected_reward", "catalog" } do
    if type(env[k]) ~= "function" then
      error(string.format("%s: env:%s is missing", path, k), 0)
    end
  end
end

-- One running policy (or baseline): its env instance and its tallies.
local function new_runner(name, role)
  return { name = name, role = role, sum = 0, last = 0, regret = 0, seconds = 0, n = 0,
           avg = {}, reg = {} }
end

-- A progress bar on stderr: returns function(t, done) for t in 1..total.
local function progress_bar(total, label)
  local width, shown = 30, -1
  label = label or "step"
  return function(t, done)
    local pct = math.floor(100 * t / total)
    if pct == shown and not done then return end
    shown = pct
    local fill = math.floor(width * t / total)
    io.stderr:write(string.format("\r[%s%s] %3d%%  %s %d/%d", string.rep("#", fill),
      string.rep(".", width - fill), pct, label, t, total))
    if done then io.stderr:write("\r", string.rep(" ", width + 40), "\r") end
    io.stderr:flush()
  end
end

-- Upsert the env's catalog (a list, or anything with # and [i]) into an
-- engine; loading(i, n) reports progress every 4096 items and at the end.
local function load_catalog(eng, catalog, loading)
  local n = #catalog
  for i = 1, n do
    local item = catalog[i]
    eng:upsert(item.id, item.features)
    if loading and (i % 4096 == 0 or i == n) then loading(i, n) end
  end
end

-- Run a simulation. opts: app, env, steps, seed, every, policies, progress
-- (a function(t, done) or nil), loading (a function(label) returning a
-- function(i, n) for the catalog loads, or nil). Returns the summary table
-- and the curves.
function simulate.run(opts)
  local T, seed = opts.steps, opts.seed
  local every = opts.every or math.max(1, T // 200)
  local quarter_start = T - T // 4 -- the last quarter is steps (quarter_start, T]
  local started = host.clock()
  local ref = oa.load_app(opts.app, nil, { only = {} })
  local Env = load_env(opts.env)
  local ref_env = Env.new(seed)
  check_env(opts.env, ref_env)
  local catalog = ref_env:catalog()
  local names = opts.policies or ref.declared
  local retrieve = ref.retrieve -- two-stage: learners retrieve from the catalog

  -- Each learner: its own copy of the app (hooks and closures included),
  -- its own engine and its own env instance for feedback noise.
  local runners = {}
  for _, name in ipairs(names) do
    local a = oa.load_app(opts.app, oa.engine { seed = seed }, { only = { name } })
    load_catalog(a.engine, catalog, opts.loading and opts.loading("catalog -> " .. name))
    -- Build the approximate index now, not inside the first decision.
    if retrieve and retrieve.mode == "approximate" and #catalog > 0 then
      local shown = opts.loading and opts.loading("index -> " .. name)
      if shown then shown(0, 1) end
      a.engine:build_index()
      if shown then shown(1, 1) end
    end
    local r = new_runner(name, "learner")
    r.app, r.eng, r.env = a, a.engine, Env.new(seed)
    r.schedule = a.policy_specs[name].schedule or a.schedule
    runners[#runners + 1] = r
  end
  local random = new_runner("random", "baseline")
  random.env, random.rng = Env.new(seed), rng.new(rng.hash(seed, "random"))
  local oracle = new_runner("oracle", "oracle")
  oracle.env = Env.new(seed)
  local all = {}
  for _, r in ipairs(runners) do all[#all + 1] = r end
  all[#all + 1] = random
  all[#all + 1] = oracle

  local load_seconds = host.clock() - started
  local reward_of = function(s) return ref:compose(s) end
  local steps_out = {}
  local expected = {}

  local function tally(r, reward, exp_chosen, best, t)
    r.sum = r.sum + reward
    if t > quarter_start then r.last = r.last + reward end
    r.regret = r.regret + (best - exp_chosen)
    r.n = r.n + 1
  end

  for t = 1, T do
    local ctx = ref_env:context(t)
    local cands = ref_env:candidates(t, ctx)
    if type(cands) ~= "table" or #cands == 0 then
      error(string.format("%s: env:candidates returned no candidates at step %d", opts.env, t), 0)
    end
    -- Noise-free value of every candidate, for the oracle and for regret.
    local best, best_i = -math.huge, 1
    for i, id in ipairs(cands) do
      local e = ref_env:expected_reward(ctx, id, t, reward_of)
      expected[id] = e
      if e > best then best, best_i = e, i end
    end

    for _, r in ipairs(runners) do
      local name, a, eng = r.name, r.app, r.eng
      local c0 = host.clock()
      if r.schedule then
        local p = a:params_at(name, t - 1)
        if p then eng:set_params(name, p) end
      end
      local c = a:prepare(ctx)
      local d
      if retrieve then
        d = eng:decide(name, c, { retrieve = {} })
      else
        local list = cands
        if a.filter then list = a.filter(c, cands) end
        d = eng:decide(name, c, list)
      end
      local c1 = host.clock()
      local s = r.env:signals(ctx, d.action, t)
      local c2 = host.clock()
      local reward = a:compose(s)
      eng:learn(d.event_id, reward)
      r.seconds = r.seconds + (c1 - c0) + (host.clock() - c2)
      local e = expected[d.action]
      if e then
        r.in_shortlist = (r.in_shortlist or 0) + 1
      else -- retrieved from outside the env's shortlist
        e = ref_env:expected_reward(ctx, d.action, t, reward_of)
      end
      tally(r, reward, e, best, t)
    end

    local pick = cands[random.rng:int(#cands)]
    tally(random, reward_of(random.env:signals(ctx, pick, t)), expected[pick], best, t)
    local top = cands[best_i]
    tally(oracle, reward_of(oracle.env:signals(ctx, top, t)), best, best, t)
    for _, id in ipairs(cands) do expected[id] = nil end

    if t % every == 0 or t == T then
      steps_out[#steps_out + 1] = t
      for _, r in ipairs(all) do
        r.avg[#r.avg + 1] = r.sum / t
        r.reg[#r.reg + 1] = r.regret
      end
    end
    if opts.progress then opts.progress(t, false) end
  end
  if opts.progress then opts.progress(T, true) end

  local summary = { app = opts.app, env = opts.env, steps = T, seed = seed,
                    version = ref.version, seconds = host.clock() - started,
                    load_seconds = load_seconds, catalog = #catalog, policies = {} }
  if retrieve then
    summary.retrieval = { field = retrieve.field, n = retrieve.n or 100,
                          mode = retrieve.mode or "exact", nprobe = retrieve.nprobe }
  end
  local curves = { steps = steps_out, series = {} }
  local last_n = T - quarter_start
  for _, r in ipairs(all) do
    local row = { name = r.name, role = r.role, avg_reward = r.sum / T,
                  avg_reward_last_quarter = last_n > 0 and r.last / last_n or r.sum / T,
                  regret = r.regret }
    if r.role == "learner" then
      row.decisions_per_s = r.seconds > 0 and T / r.seconds or nil
      row.kind = r.eng:stats(r.name).kind
      if retrieve then
        local st = r.eng:retrieval_stats()
        row.retrieval = { exact = st.exact, approximate = st.approximate,
                          fresh_picks = st.fresh_picks,
                          seconds = st.exact_seconds + st.approximate_seconds,
                          in_env_shortlist = (r.in_shortlist or 0) / T }
      end
    end
    summary.policies[#summary.policies + 1] = row
    curves.series[#curves.series + 1] = { name = r.name, avg = r.avg, regret = r.reg }
  end
  return summary, curves
end

local function write_file(path, text)
  local f, err = io.open(path, "wb")
  if not f then error("cannot write " .. tostring(err), 0) end
  f:write(text)
  f:close()
end

-- Write curves.csv, regret.svg and summary.json into dir.
function simulate.write_outputs(dir, summary, curves)
  local ok, err = host.mkdir(dir)
  if not ok then error("--out: " .. tostring(err), 0) end
  summary.csv = dir .. "/curves.csv"
  summary.svg = dir .. "/regret.svg"
  write_file(summary.csv, report.csv(curves))
  local series = {}
  for _, s in ipairs(curves.series) do series[#series + 1] = { name = s.name, y = s.regret } end
  write_file(summary.svg, svgplot.lines {
    title = "Cumulative regret vs the oracle: " .. summary.app,
    xlabel = "step", ylabel = "cumulative regret", x = curves.steps, series = series,
  })
  write_file(dir .. "/summary.json", report.json(summary) .. "\n")
end

function simulate.main(argv)
  local opts = simulate.parse_args(argv)
  if not opts then return 2 end
  if opts.help then
    io.stdout:write(USAGE)
    return 0
  end
  if host.isatty(2) then
    opts.progress = progress_bar(opts.steps)
    opts.loading = function(label)
      local bar
      return function(i, n)
        bar = bar or progress_bar(n, label)
        bar(i, i == n)
      end
    end
  end
  local summary, curves = simulate.run(opts)
  simulate.write_outputs(opts.out, summary, curves)
  if opts.json then
    io.stdout:write(report.json(summary), "\n")
  else
    io.stdout:write(report.table(summary))
    io.stdout:write(string.format("\ncatalog: %d items, ready in %.1f s", summary.catalog,
      summary.load_seconds))
    local rt = summary.retrieval
    if rt then
      io.stdout:write(string.format("\nretrieval: two-stage, %s, n %d (learners retrieve " ..
        "from the catalog; random and oracle use the env's shortlist)", rt.mode, rt.n))
    end
    io.stdout:write(string.format("\ncurves: %s\nplot:   %s\n", summary.csv, summary.svg))
  end
  return 0
end

return simulate
