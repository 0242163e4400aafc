-- wrk script: POST /v1/batch with B track events per request (default 100, about 30 KB), Basic auth,
-- unique messageIds (events.lua). With a request limit (argument 5) each wrk thread stops after that
-- many 200 answers: run.sh uses this to load an exact-ish number of events.
--   wrk -t2 -c8 -d10s -s bench/batch.lua http://127.0.0.1:PORT -- RUNID WRITEKEY /v1/batch 100 [LIMIT]
package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua;" .. package.path
local ev = require("events")
local report = require("report")

local nthreads = 0
function setup(thread)
  thread:set("tid", nthreads)
  nthreads = nthreads + 1
end

local prefix, path, headers, size
local n, parts = 0, {}
function init(args)
  prefix = (args[1] or tostring(os.time())) .. "-" .. tostring(tid) .. "-"
  headers = {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Basic " .. ev.base64((args[2] or "wk_bench") .. ":"),
  }
  path = args[3] or "/v1/batch"
  size = tonumber(args[4] or "100")
  local limit = tonumber(args[5] or "0")
  if limit > 0 then
    local ok = 0
    function response(status)
      if status == 200 then ok = ok + 1 end
      if ok >= limit then wrk.thread:stop() end
    end
  end
end

function request()
  for i = 1, size do
    n = n + 1
    parts[i] = ev.event(prefix, n, true)
  end
  return wrk.format("POST", path, headers, '{"batch":[' .. table.concat(parts, ",", 1, size) .. ']}')
end

done = report.done
