-- generate.lua - POST /v1/generate with a small image of the tiny model (32x48, 2 steps, no CFG
-- pass) and Accept: image/png, collecting the Server-Timing phases of every answer so that the
-- run reports the mean of each phase and the server's overhead beyond the engine's own time:
--   overhead_ms = total - (text_encode + denoise + vae)   (queue, PNG encoding, HTTP, routing)
--   wrk -t1 -c1 -d10s -s bench/wrk/generate.lua http://127.0.0.1:PORT
-- Environment: TTTD_LOAD_BODY replaces the request body.
package.path = package.path .. ";bench/wrk/?.lua"
local report = require("report")

wrk.method = "POST"
wrk.path = "/v1/generate"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "image/png"
wrk.body = os.getenv("TTTD_LOAD_BODY") or
   '{"prompt":"a lighthouse at dawn","width":32,"height":48,"steps":2,"guidance":1,"seed":1}'

local PHASES = { "queue", "text_encode", "denoise", "vae", "encode", "total" }
local threads = {}

function setup(thread)
   threads[#threads + 1] = thread
end

-- Per thread (each has its own Lua state): sums of each phase over the answers that carried one.
sums = {}
count = 0
batch_sum = 0

function init(args)
   for _, p in ipairs(PHASES) do sums[p] = 0 end
end

function response(status, headers, body)
   local st = headers["Server-Timing"] or headers["server-timing"]
   if status ~= 200 or not st then return end
   count = count + 1
   for _, p in ipairs(PHASES) do
      local v = st:match("%f[%w_]" .. p .. ";dur=([%d%.]+)")
      if v then sums[p] = sums[p] + tonumber(v) end
   end
   local b = st:match('batch;desc="?(%d+)')
   if b then batch_sum = batch_sum + tonumber(b) end
end

function done(summary, latency, requests)
   local total = { n = 0, batch = 0 }
   for _, p in ipairs(PHASES) do total[p] = 0 end
   for _, t in ipairs(threads) do
      total.n = total.n + t:get("count")
      total.batch = total.batch + t:get("batch_sum")
      local s = t:get("sums")
      for _, p in ipairs(PHASES) do total[p] = total[p] + s[p] end
   end
   local extra = {}
   if total.n > 0 then
      for _, p in ipairs(PHASES) do
         extra[#extra + 1] = { p .. "_ms", total[p] / total.n }
      end
      local engine = (total.text_encode + total.denoise + total.vae) / total.n
      extra[#extra + 1] = { "engine_ms", engine }
      extra[#extra + 1] = { "overhead_ms", total.total / total.n - engine }
      extra[#extra + 1] = { "batch_mean", total.batch / total.n }
   end
   report.result_line(summary, latency, extra)
end
