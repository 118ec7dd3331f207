-- Reels at scale: two-stage ranking over a catalog of a million videos
-- (examples/reels/gen_catalog.lua). Retrieval shortlists the 200 videos
-- whose embedding best matches the user's embedding (a two-tower query:
-- the context field `user_emb`), keeping 5% of the shortlist for fresh,
-- rarely shown videos; the policy then ranks and explores among them.
--
--   lua5.4 examples/reels/gen_catalog.lua 1000000 /tmp/reels.csv
--   onearm serve examples/reels/app_scale.lua --catalog /tmp/reels.csv
--
-- Requests: POST /v1/rank {"context": {"user_emb": [32 numbers], "device":
-- "phone"}, "retrieve": {"n": 200, "mode": "approximate", "filters":
-- {"age": {"max": 7}}}} (every retrieve key is optional: the defaults
-- below apply).
local oa = require "onearm"

local DIM = 32

-- The ranking stage: the user's and the video's embeddings side by side
-- plus the video's topic and engagement, one block each (concat layout).
local space = oa.features {
  layout = "concat",
  context = { user_emb = "dense:" .. DIM, device = "cat" },
  action = { emb = "dense:" .. DIM, topic = "cat", engagement = "num" },
}

return oa.app {
  policies = {
    reels = oa.policy { features = space, model = oa.egreedy { epsilon = 0.05 } },
  },
  reward = oa.reward.weighted { watched = 0.6, liked = 0.3, shared = 0.1 },
  retrieve = {
    field = "emb", dim = DIM,
    meta = { topic = "cat", language = "cat", age = "num" },
    query = "user_emb",       -- the two-tower query: the user's embedding
    n = 200, mode = "approximate", nprobe = 96,
    fresh_share = 0.05,
    build_at = 10000,         -- build the IVF index at start on big catalogs
    index = "i8",             -- compact lists, exact re-ranking
  },
  reward_wait = 30,
}
