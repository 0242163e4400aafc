-- wrk script: GET /v1/profiles/lookup?user_id=user-N for random N in [0, USERS), with the admin
-- key. The users are those bench/gen_events.awk writes (user-0 .. user-99999).
--   wrk -t2 -c32 -d10s -s bench/lookup.lua http://127.0.0.1:PORT -- ADMINKEY [USERS]
package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua;" .. package.path
local report = require("report")

local headers, users
local nthreads = 0
function setup(thread)
  thread:set("seed", nthreads + 1)
  nthreads = nthreads + 1
end

function init(args)
  headers = { ["Authorization"] = "Bearer " .. (args[1] or "ak_bench") }
  users = tonumber(args[2] or "100000")
  math.randomseed(seed)
end

function request()
  return wrk.format("GET", "/v1/profiles/lookup?user_id=user-" .. math.random(0, users - 1), headers)
end

done = report.done
