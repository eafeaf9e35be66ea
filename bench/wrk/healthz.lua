-- healthz.lua - GET /healthz as fast as wrk can: the daemon's own HTTP overhead (libmicrohttpd,
-- the libuv loop, routing, the reply), with no engine work. No per-response Lua callback, so wrk
-- measures the server rather than itself.
--   wrk -t2 -c16 -d10s -s bench/wrk/healthz.lua http://127.0.0.1:PORT
package.path = package.path .. ";bench/wrk/?.lua"
local report = require("report")

wrk.method = "GET"
wrk.path = "/healthz"

function done(summary, latency, requests)
   report.result_line(summary, latency)
end
