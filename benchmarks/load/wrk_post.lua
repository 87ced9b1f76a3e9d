-- wrk script of benchmarks/load/wrk.py: POST one body (the file $WRK_BODY, Content-Type $WRK_CONTENT_TYPE) on every
-- connection, count answers outside 2xx, and in done() print one line "WRK_JSON {...}" with the run's counts, its
-- latency percentiles and $WRK_CDF_POINTS points of its latency CDF (microseconds), for the Python side to parse.

local file = assert(io.open(os.getenv("WRK_BODY"), "rb"))
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = os.getenv("WRK_CONTENT_TYPE") or "application/json"

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  non2xx = 0 -- a global of this thread's Lua state: done() reads it with thread:get
end

function response(status, headers, body)
  -- wrk's own errors.status counts only status > 399; a 1xx or 3xx answer is no prediction either
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
end

-- The CDF's percentile levels: 0 and then 1 - 10^-x for x up to 5 (99.999), so the tail gets as many points as
-- the body, as on the report's stretched axis.
local function levels(n)
  local out = {}
  for k = 0, n - 2 do
    out[#out + 1] = 100 * (1 - 10 ^ (-5 * k / (n - 2)))
  end
  out[#out + 1] = 100
  return out
end

function done(summary, latency, requests)
  local non = 0
  for _, thread in ipairs(threads) do
    non = non + (tonumber(thread:get("non2xx")) or 0)
  end
  local e = summary.errors
  local cdf = {}
  for _, p in ipairs(levels(tonumber(os.getenv("WRK_CDF_POINTS")) or 200)) do
    -- wrk's percentile(100) falls past its last bucket and answers 0: the maximum is that point
    local us = p >= 100 and latency.max or latency:percentile(p)
    cdf[#cdf + 1] = string.format("[%d,%.6f]", us, p)
  end
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d,' ..
    '"status_over_399":%d,"non2xx":%d,"min_us":%d,"max_us":%d,"mean_us":%.3f,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"cdf":[%s]}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.timeout,
    e.status, non, latency.min, latency.max, latency.mean,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    table.concat(cdf, ",")))
end
