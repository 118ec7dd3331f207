-- An explorer written in Lua: uniform exploration for the first `first`
-- decisions, then greedy on the upper confidence bound mean + alpha * width.
-- The engine calls it with the candidates' scores and widths (tables of n
-- numbers) and records the probabilities it returns as the propensities,
-- so they must be exact: ties share the mass.
return function(first, alpha)
  return function(scores, widths, context, step)
    local n = #scores
    local probs = {}
    if step < first then
      for i = 1, n do probs[i] = 1 / n end
      return probs
    end
    local best, ties = -math.huge, 0
    local ucb = {}
    for i = 1, n do
      ucb[i] = scores[i] + alpha * (widths[i] or 0)
      if ucb[i] > best then best, ties = ucb[i], 1 elseif ucb[i] == best then ties = ties + 1 end
    end
    for i = 1, n do probs[i] = ucb[i] == best and 1 / ties or 0 end
    return probs
  end
end
