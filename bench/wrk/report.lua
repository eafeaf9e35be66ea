-- report.lua - shared by the tttd wrk scripts: at the end of a run, one machine-readable line
--   RESULT {"requests":N,"errors":N,"non2xx":N,"seconds":S,"rps":R,"p50_ms":..,"p90_ms":..,"p99_ms":..,"mean_ms":..}
-- that bench/load.sh turns into a table row. wrk's own text summary is printed as usual above it.
local M = {}

function M.result_line(summary, latency, extra)
   local secs = summary.duration / 1e6
   local e = summary.errors
   local fields = {
      string.format('"requests":%d', summary.requests),
      string.format('"errors":%d', e.connect + e.read + e.write + e.timeout),
      string.format('"non2xx":%d', e.status),
      string.format('"seconds":%.3f', secs),
      string.format('"rps":%.1f', summary.requests / secs),
      string.format('"mean_ms":%.3f', latency.mean / 1e3),
      string.format('"p50_ms":%.3f', latency:percentile(50) / 1e3),
      string.format('"p90_ms":%.3f', latency:percentile(90) / 1e3),
      string.format('"p99_ms":%.3f', latency:percentile(99) / 1e3),
   }
   for _, kv in ipairs(extra or {}) do
      fields[#fields + 1] = string.format('"%s":%.3f', kv[1], kv[2])
   end
   io.write("RESULT {" .. table.concat(fields, ",") .. "}\n")
end

return M
