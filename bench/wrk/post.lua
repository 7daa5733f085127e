-- post.lua: the wrk script of Pulse's benchmarks (bench/run).
--
-- Every request is a POST of one fixed body, taken from the BENCH_BODY
-- environment variable so that wrk, the harness's probe request and the
-- fork-mode floor (bench/c/spawnloop.c) send the same bytes; without it the
-- body is 64 bytes of text.
--
-- BENCH_HEADERS adds headers to every request: one "Name: value" per line
-- (the harness sends the replica credential, X-Pulse-Replica-Auth, this way
-- when it loads a replica's published port; in the environment rather than
-- wrk's -H, so that it stays out of ps). A line without a colon stops wrk.
--
-- When the run ends, done() prints one line, "BENCHJSON " followed by a JSON
-- object, which the harness parses:
--   requests, duration_us, bytes      wrk's summary
--   errors.connect/read/write/timeout socket errors
--   errors.status                     responses with status >= 400 (wrk's rule)
--   latency_us.p50/p90/p99/max/mean   per-request latency in microseconds
-- No response() callback is defined: defining one makes wrk parse every
-- response's headers into Lua and slows the load generator down.
local body = os.getenv("BENCH_BODY")
if body == nil or body == "" then
  body = string.rep("0123456789abcdef", 4)
end

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/octet-stream"

local extra = os.getenv("BENCH_HEADERS")
if extra ~= nil then
  for line in extra:gmatch("[^\n]+") do
    local name, value = line:match("^([^:%s]+):%s*(.-)%s*$")
    if name == nil then
      error("BENCH_HEADERS: want \"Name: value\" lines, got " .. string.format("%q", line))
    end
    wrk.headers[name] = value
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
