-- wrk script: one Segment track event per request (POST /v1/track by default), Basic auth with the
-- write key, a unique messageId per request (events.lua). The same script drives nginx's
-- `return 204` baseline, so both servers see the same requests and the same client cost.
--   wrk -t2 -c32 -d10s -s bench/track.lua http://127.0.0.1:PORT -- RUNID WRITEKEY [/v1/track]
package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua;" .. package.path
local ev = require("events")
local report = require("report")

local nthreads = 0
function setup(thread)
  thread:set("tid", nthreads)
  nthreads = nthreads + 1
end

local prefix, path, headers
local n = 0
function init(args)
  prefix = (args[1] or tostring(os.time())) .. "-" .. tostring(tid) .. "-"
  headers = {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Basic " .. ev.base64((args[2] or "wk_bench") .. ":"),
  }
  path = args[3] or "/v1/track"
end

function request()
  n = n + 1
  return wrk.format("POST", path, headers, ev.event(prefix, n, false))
end

done = report.done
