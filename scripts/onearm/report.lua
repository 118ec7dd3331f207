-- Simulation reports: the summary table, JSON and the learning-curve CSV.
local report = {}

-- JSON for the plain data a summary holds (tables with string keys or
-- lists, strings, numbers, booleans). Keys are sorted so output is stable.
local function encode(v, out)
  local t = type(v)
  if t == "nil" then
    out[#out + 1] = "null"
  elseif t == "boolean" then
    out[#out + 1] = tostring(v)
  elseif t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then
      out[#out + 1] = "null"
    elseif math.type(v) == "integer" then
      out[#out + 1] = string.format("%d", v)
    else
      out[#out + 1] = string.format("%.17g", v)
    end
  elseif t == "string" then
    out[#out + 1] = '"' .. v:gsub('[%c"\\]', function(c)
      local named = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\t"] = "\\t",
                      ["\r"] = "\\r" }
      return named[c] or string.format("\\u%04x", c:byte())
    end) .. '"'
  elseif t == "table" then
    if #v > 0 or next(v) == nil then
      out[#out + 1] = "["
      for i = 1, #v do
        if i > 1 then out[#out + 1] = "," end
        encode(v[i], out)
      end
      out[#out + 1] = "]"
    else
      local keys = {}
      for k in pairs(v) do keys[#keys + 1] = tostring(k) end
      table.sort(keys)
      out[#out + 1] = "{"
      for i, k in ipairs(keys) do
        if i > 1 then out[#out + 1] = "," end
        encode(k, out)
        out[#out + 1] = ":"
        encode(v[k], out)
      end
      out[#out + 1] = "}"
    end
  else
    error("json: cannot encode a " .. t)
  end
end

function report.json(v)
  local out = {}
  encode(v, out)
  return table.concat(out)
end

local function fmt_rate(r)
  if r == nil then return "-" end
  if r >= 1e6 then return string.format("%.1fM", r / 1e6) end
  if r >= 1e4 then return string.format("%.0fk", r / 1e3) end
  return string.format("%.0f", r)
end

-- The summary as an aligned text table.
function report.table(summary)
  local lines = {}
  local rows = { { "policy", "role", "avg reward", "last quarter", "regret", "decisions/s" } }
  for _, p in ipairs(summary.policies) do
    rows[#rows + 1] = { p.name, p.role, string.format("%.4f", p.avg_reward),
                        string.format("%.4f", p.avg_reward_last_quarter),
                        string.format("%.1f", p.regret), fmt_rate(p.decisions_per_s) }
  end
  local widths = {}
  for _, r in ipairs(rows) do
    for i, c in ipairs(r) do widths[i] = math.max(widths[i] or 0, #c) end
  end
  lines[#lines + 1] = string.format("app %s (version %s), env %s", summary.app,
    summary.version, summary.env)
  lines[#lines + 1] = string.format("%d steps, seed %d, %.1f s", summary.steps, summary.seed,
    summary.seconds)
  lines[#lines + 1] = ""
  for n, r in ipairs(rows) do
    local cells = {}
    for i, c in ipairs(r) do
      -- Names left-aligned, numbers right-aligned.
      cells[i] = i <= 2 and c .. string.rep(" ", widths[i] - #c)
                 or string.rep(" ", widths[i] - #c) .. c
    end
    lines[#lines + 1] = table.concat(cells, "  ")
    if n == 1 then
      local rule = {}
      for i = 1, #widths do rule[i] = string.rep("-", widths[i]) end
      lines[#lines + 1] = table.concat(rule, "  ")
    end
  end
  return table.concat(lines, "\n") .. "\n"
end

-- curves: { steps = {...}, series = { {name=, avg = {...}, regret = {...}} } }
function report.csv(curves)
  local head = { "step" }
  for _, s in ipairs(curves.series) do
    head[#head + 1] = s.name .. "_avg_reward"
    head[#head + 1] = s.name .. "_regret"
  end
  local lines = { table.concat(head, ",") }
  for i, step in ipairs(curves.steps) do
    local row = { tostring(step) }
    for _, s in ipairs(curves.series) do
      row[#row + 1] = string.format("%.6g", s.avg[i])
      row[#row + 1] = string.format("%.6g", s.regret[i])
    end
    lines[#lines + 1] = table.concat(row, ",")
  end
  return table.concat(lines, "\n") .. "\n"
end

return report
