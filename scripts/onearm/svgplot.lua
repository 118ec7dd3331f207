-- A line chart as hand-written SVG: axes with "nice" ticks, one polyline per
-- series and a legend. Used for the simulator's cumulative-regret plot.
local svgplot = {}

local COLORS = { "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
                 "#e377c2", "#17becf", "#bcbd22", "#7f7f7f" }

local function escape(s)
  return (tostring(s):gsub("[<>&\"]", { ["<"] = "&lt;", [">"] = "&gt;", ["&"] = "&amp;",
                                        ['"'] = "&quot;" }))
end

-- Ticks at 1, 2 or 5 times a power of ten, about `n` of them over [0, hi].
local function ticks(hi, n)
  if hi <= 0 then return { 0 }, 1 end
  local raw = hi / n
  local p = 10 ^ math.floor(math.log(raw, 10))
  local step = p
  for _, m in ipairs { 1, 2, 5, 10 } do
    if m * p >= raw then step = m * p; break end
  end
  local out = {}
  for v = 0, hi + step * 1e-9, step do out[#out + 1] = v end
  if out[#out] < hi then out[#out + 1] = out[#out] + step end
  return out, step
end

local function label(v)
  if v == 0 then return "0" end
  if math.abs(v) >= 1e6 then return string.format("%gM", v / 1e6) end
  if math.abs(v) >= 1e3 then return string.format("%gk", v / 1e3) end
  return string.format("%g", v)
end

-- opts: { title=, xlabel=, ylabel=, x = {...}, series = { {name=, y = {...}} },
-- width=, height= } -> SVG text.
function svgplot.lines(opts)
  local W, H = opts.width or 860, opts.height or 520
  local left, right, top, bottom = 80, 190, 50, 60
  local pw, ph = W - left - right, H - top - bottom
  local x = opts.x
  local xmax, ymax = x[#x] or 1, 0
  for _, s in ipairs(opts.series) do
    for _, v in ipairs(s.y) do if v == v and v > ymax then ymax = v end end
  end
  local xt = ticks(xmax, 8)
  local yt = ticks(ymax, 6)
  xmax, ymax = math.max(xt[#xt], 1e-12), math.max(yt[#yt], 1e-12)
  local function sx(v) return left + pw * v / xmax end
  local function sy(v) return top + ph * (1 - v / ymax) end

  local o = {}
  local function add(fmt, ...) o[#o + 1] = string.format(fmt, ...) end
  add('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
      .. 'font-family="sans-serif" font-size="12">', W, H, W, H)
  add('<rect width="%d" height="%d" fill="white"/>', W, H)
  add('<text x="%d" y="28" font-size="16" font-weight="bold">%s</text>', left,
    escape(opts.title or ""))
  -- Grid and ticks.
  for _, v in ipairs(yt) do
    add('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e6e6e6"/>', left, sy(v),
      left + pw, sy(v))
    add('<text x="%.1f" y="%.1f" text-anchor="end">%s</text>', left - 8, sy(v) + 4, label(v))
  end
  for _, v in ipairs(xt) do
    add('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#333"/>', sx(v), top + ph,
      sx(v), top + ph + 5)
    add('<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>', sx(v), top + ph + 20,
      label(v))
  end
  -- Axes.
  add('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#333"/>', left, top, left, top + ph)
  add('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#333"/>', left, top + ph, left + pw,
    top + ph)
  add('<text x="%.1f" y="%d" text-anchor="middle">%s</text>', left + pw / 2, H - 15,
    escape(opts.xlabel or ""))
  add('<text transform="translate(20 %.1f) rotate(-90)" text-anchor="middle">%s</text>',
    top + ph / 2, escape(opts.ylabel or ""))
  -- Series and legend.
  for i, s in ipairs(opts.series) do
    local color = COLORS[(i - 1) % #COLORS + 1]
    local pts = {}
    for j, v in ipairs(s.y) do pts[#pts + 1] = string.format("%.1f,%.1f", sx(x[j]), sy(v)) end
    add('<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>', color,
      table.concat(pts, " "))
    local ly = top + 10 + (i - 1) * 20
    add('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="3"/>', left + pw + 15,
      ly, left + pw + 40, ly, color)
    add('<text x="%d" y="%d">%s</text>', left + pw + 47, ly + 4, escape(s.name))
  end
  add("</svg>")
  return table.concat(o, "\n") .. "\n"
end

svgplot.ticks = ticks

return svgplot
