-- certloop benchmark load script for wrk 4.x: cycle through pre-built requests, count answers that
-- are not a success (status >= 300, or a body not matching the pattern), print one JSON summary line.
-- args: requests_file success_pattern mode(GET|POST) post_path token
local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  local file = args[1]
  pattern = args[2]
  local mode = args[3]
  reqs = {}
  for line in io.lines(file) do
    if mode == "GET" then
      reqs[#reqs + 1] = wrk.format("GET", line)
    else
      reqs[#reqs + 1] = wrk.format("POST", args[4], {
        ["Authorization"] = "Bearer " .. args[5], ["Content-Type"] = "application/json" }, line)
    end
  end
  counter = (id * 7919) % #reqs  -- threads start at different targets
  answered = 0
  failures = 0
end

function request()
  counter = counter % #reqs + 1
  return reqs[counter]
end

function response(status, headers, body)
  answered = answered + 1
  if status >= 300 or (pattern ~= "" and not string.find(body, pattern)) then
    failures = failures + 1
  end
end

function done(summary, latency, requests)
  local failed, counted = 0, 0
  for _, t in ipairs(threads) do
    failed = failed + t:get("failures")
    counted = counted + t:get("answered")
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, ' ..
    '"mean_us": %.1f, "failures": %d, "answered": %d, "socket_errors": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean, failed, counted,
    e.connect + e.read + e.write + e.timeout))
end
