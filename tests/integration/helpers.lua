-- Helpers for the integration specs that drive the real `onearm serve`
-- binary: files, a server started in the background on a free loopback
-- port (read from its start line), and HTTP requests with curl. Needs
-- ONEARM_BIN, curl and dkjson (lua-dkjson).
local json = require "dkjson"

local H = {}

H.json = json
H.bin = assert(os.getenv("ONEARM_BIN"), "ONEARM_BIN is not set")

function H.quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

function H.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

function H.write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

function H.sleep(s) os.execute("sleep " .. s) end

-- A fresh temporary directory.
function H.tmpdir()
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. H.quote(dir)))
  return dir
end

local Server = {}
Server.__index = Server

-- A server for app (a path) with its files in dir; not started yet.
function H.server(dir, app)
  return setmetatable({ dir = dir, app = app, log = dir .. "/server.log",
                        pidfile = dir .. "/pid", rcfile = dir .. "/rc" }, Server)
end

-- Starts the server in the background on port 0 and reads the port it
-- chose from its start line. Returns true, or nil and the log.
function Server:start(extra)
  local q = H.quote
  os.remove(self.rcfile)
  os.remove(self.log) -- a restart must not read the previous run's start line
  local cmd = string.format("%s serve %s --listen 127.0.0.1:0 --data %s %s",
    q(H.bin), q(self.app), q(self.dir .. "/var"), extra or "")
  os.execute(string.format("(%s 2>%s & echo $! > %s; wait $!; echo $? > %s) </dev/null >/dev/null 2>&1 &",
    cmd, q(self.log), q(self.pidfile), q(self.rcfile)))
  for _ = 1, 200 do
    local log = H.read(self.log) or ""
    local port = log:match("onearm serving .- on http://127%.0%.0%.1:(%d+)")
    if port then
      self.pid = tonumber(H.read(self.pidfile))
      self.url = "http://127.0.0.1:" .. port
      return true
    end
    if H.read(self.rcfile) then return nil, log end
    H.sleep(0.05)
  end
  return nil, H.read(self.log)
end

-- One request with curl: returns status, decoded body (or raw text) and
-- the raw body. headers default to a JSON content type.
function Server:request(method, path, body, headers)
  local q = H.quote
  local out, reqf = self.dir .. "/resp", self.dir .. "/req"
  local args = { "curl -s -o", q(out), "-w '%{http_code}' -X", method }
  for _, h in ipairs(headers or { "Content-Type: application/json" }) do
    args[#args + 1] = "-H " .. q(h)
  end
  if body then
    H.write(reqf, type(body) == "string" and body or json.encode(body))
    args[#args + 1] = "--data-binary @" .. q(reqf)
  end
  args[#args + 1] = q(self.url .. path)
  local p = io.popen(table.concat(args, " "))
  local status = tonumber(p:read("a"))
  p:close()
  local raw = H.read(out) or ""
  os.remove(out)
  return status, json.decode(raw) or raw, raw
end

function Server:post(path, body, headers) return self:request("POST", path, body, headers) end
function Server:get(path, headers) return self:request("GET", path, nil, headers) end

function Server:signal(name) return os.execute("kill -" .. name .. " " .. self.pid) end

-- The exit code once the process ended (waits up to `seconds`), or nil.
function Server:wait(seconds)
  for _ = 1, math.floor((seconds or 5) / 0.05) do
    local rc = H.read(self.rcfile)
    if rc then return tonumber(rc) end
    H.sleep(0.05)
  end
  return nil
end

-- SIGTERM and wait; SIGKILL if it does not stop.
function Server:stop()
  if not self.pid then return end
  self:signal("TERM")
  if not self:wait(5) then self:signal("KILL") end
  self.pid = nil
end

-- One metric's value from /metrics (the first line for that name and
-- label text), or nil.
function Server:metric(name)
  local _, _, raw = self:get("/metrics")
  for line in raw:gmatch("[^\n]+") do
    local v = line:match("^" .. name:gsub("[%%%-%.%[%]%(%)%+%*%?%^%$]", "%%%0") .. " (%S+)$")
    if v then return tonumber(v) end
  end
  return nil
end

-- ---- two-stage ranking specs ----

-- A deterministic embedding of dim numbers in [-1, 1) for item i (a small
-- LCG, no shared state).
function H.item_vec(i, dim)
  local v, s = {}, (i * 2654435761) % 4294967296
  for j = 1, dim do
    s = (s * 1103515245 + 12345) % 2147483648
    v[j] = (s / 2147483648) * 2 - 1
  end
  return v
end

function H.dot(a, b)
  local s = 0
  for j = 1, #a do s = s + a[j] * b[j] end
  return s
end

function H.set_of(list)
  local s = {}
  for _, v in ipairs(list) do s[v] = true end
  return s
end

-- The ids of a rank response's ranking, in order.
function H.ids_of(body)
  local out = {}
  for _, r in ipairs(body.ranking) do out[#out + 1] = r.id end
  return out
end

return H
