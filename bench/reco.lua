-- wrk script: GET /v1/recommendations for a random shopper on a random popular product page, with
-- the admin key. The shoppers and products are those bench/gen_reco.awk and gen_products.awk write.
--   wrk -t2 -c32 -d10s -s bench/reco.lua http://127.0.0.1:PORT -- ADMINKEY USERS PRODUCTS
-- nginx, the baseline, answers the same requests with a static file of one such answer.
package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua;" .. package.path
local report = require("report")

local headers, users, products
local nthreads = 0
function setup(thread)
  thread:set("seed", nthreads + 1)
  nthreads = nthreads + 1
end

function init(args)
  headers = { ["Authorization"] = "Bearer " .. (args[1] or "ak_bench") }
  users = tonumber(args[2] or "1000000")
  products = tonumber(args[3] or "100000")
  math.randomseed(seed)
end

function request()
  -- The product pages people visit follow the same heavy head as the generated views.
  local p = math.floor(products * math.random() ^ 3)
  return wrk.format("GET", string.format("/v1/recommendations?user_id=user-%d&product_id=sku-%06d&limit=10",
    math.random(0, users - 1), p), headers)
end

done = report.done
