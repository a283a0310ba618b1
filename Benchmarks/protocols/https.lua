-- wrk script for Benchmarks/protocols/h2-tls.sh: counts every response's status and the "pid" of each
-- JSON answer (which generation served it). done() prints one machine-readable line:
--   WRK_RESULT requests=N non2xx=N connect=N read=N write=N timeout=N pids=N statuses=CODE:N,…
-- (requests: wrk's own count of responses; connect/read/write/timeout: wrk's socket errors.)
--
-- wrk runs one Lua state per thread: counters are per thread; done() (main state) sums them with
-- thread:get(), which copies tables between states.

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   statuses = {}   -- status code -> count
   pids = {}       -- pid (string) -> count
end

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
   local pid = body and string.match(body, '"pid"%s*:%s*(%d+)')
   if pid then pids[pid] = (pids[pid] or 0) + 1 end
end

function done(summary, latency, requests)
   local all_statuses, all_pids = {}, {}
   for _, thread in ipairs(threads) do
      for k, n in pairs(thread:get("statuses") or {}) do all_statuses[k] = (all_statuses[k] or 0) + n end
      for k, n in pairs(thread:get("pids") or {}) do all_pids[k] = (all_pids[k] or 0) + n end
   end
   local non2xx, status_list = 0, {}
   for status, n in pairs(all_statuses) do
      if status < 200 or status > 299 then non2xx = non2xx + n end
      table.insert(status_list, status .. ":" .. n)
   end
   table.sort(status_list)
   local npids = 0
   for _ in pairs(all_pids) do npids = npids + 1 end
   local e = summary.errors
   io.write(string.format(
      "WRK_RESULT requests=%d non2xx=%d connect=%d read=%d write=%d timeout=%d pids=%d rps=%.0f p99_ms=%.1f max_ms=%.1f statuses=%s\n",
      summary.requests, non2xx, e.connect, e.read, e.write, e.timeout, npids,
      summary.requests / (summary.duration / 1e6), latency:percentile(99) / 1000, latency.max / 1000,
      #status_list > 0 and table.concat(status_list, ",") or "-"))
end
