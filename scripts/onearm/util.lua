-- Small helpers shared by the standard library: option checking with
-- errors that name the bad key, and shallow copies.
local util = {}

-- Sorted keys of a table, so that error messages and iteration orders are
-- the same on every run.
function util.sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  return keys
end

function util.copy(t)
  local c = {}
  for k, v in pairs(t or {}) do c[k] = v end
  return c
end

-- Raise "<who>: unknown option 'k' (expected one of ...)" for the first key
-- of opts that `allowed` (a set) does not list. `level` points the error
-- at the caller's caller, where the typo is.
function util.check_keys(who, opts, allowed, level)
  for _, k in ipairs(util.sorted_keys(opts)) do
    if not allowed[k] then
      local names = util.sorted_keys(allowed)
      error(string.format("%s: unknown option '%s' (expected one of: %s)", who,
        tostring(k), table.concat(names, ", ")), (level or 2) + 1)
    end
  end
end

function util.set(list)
  local s = {}
  for _, v in ipairs(list) do s[v] = true end
  return s
end

-- Type check of one option: `kind` is a Lua type name, or "callable"
-- (a function, or a table/userdata with __call).
function util.is_callable(v)
  if type(v) == "function" then return true end
  local mt = getmetatable(v)
  return type(mt) == "table" and mt.__call ~= nil
end

function util.check_type(who, key, v, kind, level)
  local ok
  if kind == "callable" then ok = util.is_callable(v) else ok = type(v) == kind end
  if not ok then
    error(string.format("%s: option '%s' must be a %s, got %s", who, key,
      kind == "callable" and "function" or kind, type(v)), (level or 2) + 1)
  end
end

function util.check_number(who, key, v, lo, hi, level)
  if type(v) ~= "number" or v ~= v or (lo and v < lo) or (hi and v > hi) then
    local range = ""
    if lo and hi then range = string.format(" in [%g, %g]", lo, hi)
    elseif lo then range = string.format(" >= %g", lo) end
    error(string.format("%s: option '%s' must be a number%s, got %s", who, key, range,
      tostring(v)), (level or 2) + 1)
  end
end

return util
