-- events.lua: what the wrk scripts share. Builds Segment track events of about 300 bytes
-- (userId, event "Product Viewed", messageId, properties with product_id/price/name/category/currency,
-- context.library and context.ip) with a messageId that is unique across wrk threads and runs:
--   "<run>-<thread>-<counter>"
-- <run> is the first script argument (run.sh passes a fresh one per measurement), <thread> is the wrk
-- thread number handed out in setup(), <counter> counts the events this thread built. So deduplication
-- never turns a request into a no-op.
--
-- Script arguments (after "--" on the wrk command line):
--   1 run id, 2 write key, 3 path ("/v1/track" or "/v1/batch"), 4 events per batch,
--   5 requests per thread before the thread stops (0 = run for the whole duration)
local M = {}

local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
function M.base64(s)
  return ((s:gsub(".", function(x)
    local r, b = "", x:byte()
    for i = 8, 1, -1 do r = r .. (b % 2 ^ i - b % 2 ^ (i - 1) > 0 and "1" or "0") end
    return r
  end) .. "0000"):gsub("%d%d%d?%d?%d?%d?", function(x)
    if #x < 6 then return "" end
    local c = 0
    for i = 1, 6 do c = c + (x:sub(i, i) == "1" and 2 ^ (6 - i) or 0) end
    return b64chars:sub(c + 1, c + 1)
  end) .. ({ "", "==", "=" })[#s % 3 + 1])
end

local names = { "Organic Cotton T-Shirt", "Merino Wool Sweater", "Canvas Sneakers", "Leather Belt",
                "Linen Shirt", "Denim Jacket", "Wool Beanie", "Running Shorts" }
local cats = { "Apparel", "Knitwear", "Footwear", "Accessories", "Apparel", "Outerwear",
               "Accessories", "Sportswear" }

-- One event; with_type adds "type":"track" (needed inside a batch).
local fmt = '{%s"userId":"user-%d","event":"Product Viewed","messageId":"%s%d",' ..
  '"properties":{"product_id":"sku-%05d","price":%d.99,"name":"%s","category":"%s","currency":"USD"},' ..
  '"context":{"library":{"name":"analytics.js","version":"4.1.0"},"ip":"203.0.113.%d"}}'
function M.event(prefix, i, with_type)
  local p = i % 5000
  local k = p % 8 + 1
  return string.format(fmt, with_type and '"type":"track",' or "", (i * 7919) % 100000, prefix, i,
    p, 9 + p % 90, names[k], cats[k], i % 250 + 1)
end

return M
