-- wrk script for Benchmarks/upgrade-under-load.sh.
-- Counts the status of every response and the "pid" of every JSON answer, so that the summary
-- shows which worker generations served. wrk runs one Lua state per thread: the counters below are
-- per thread, and done() (which runs in the main state) aggregates them through thread:get().

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   statuses = {}   -- status code -> count
   pids = {}       -- pid (string) -> count
   responses = 0
   nopid = 0       -- 2xx answers without a pid in the body
end

function response(status, headers, body)
   responses = responses + 1
   statuses[status] = (statuses[status] or 0) + 1
   local pid = body and string.match(body, '"pid"%s*:%s*(%d+)')
   if pid then
      pids[pid] = (pids[pid] or 0) + 1
   elseif status >= 200 and status < 300 then
      nopid = nopid + 1
   end
end

function done(summary, latency, requests)
   local all_statuses, all_pids = {}, {}
   local total_responses, total_nopid = 0, 0
   for _, thread in ipairs(threads) do
      total_responses = total_responses + (thread:get("responses") or 0)
      total_nopid = total_nopid + (thread:get("nopid") or 0)
      for status, n in pairs(thread:get("statuses") or {}) do
         all_statuses[status] = (all_statuses[status] or 0) + n
      end
      for pid, n in pairs(thread:get("pids") or {}) do
         all_pids[pid] = (all_pids[pid] or 0) + n
      end
   end

   local non2xx = 0
   local status_list = {}
   for status, n in pairs(all_statuses) do
      if status < 200 or status > 299 then non2xx = non2xx + n end
      table.insert(status_list, status .. ":" .. n)
   end
   table.sort(status_list)

   local pid_list, distinct = {}, 0
   for pid, n in pairs(all_pids) do
      distinct = distinct + 1
      table.insert(pid_list, { pid = tonumber(pid), n = n })
   end
   table.sort(pid_list, function(a, b) return a.pid < b.pid end)
   local pid_text = {}
   for _, p in ipairs(pid_list) do table.insert(pid_text, p.pid .. ":" .. p.n) end

   local e = summary.errors
   local seconds = summary.duration / 1e6
   -- One machine-readable line, parsed by upgrade-under-load.sh.
   io.write(string.format(
      "BATON_RESULT requests=%d responses=%d duration_s=%.3f rps=%.1f connect=%d read=%d write=%d timeout=%d status=%d non2xx=%d nopid=%d pids=%d p50_ms=%.2f p99_ms=%.2f max_ms=%.2f\n",
      summary.requests, total_responses, seconds, summary.requests / seconds,
      e.connect, e.read, e.write, e.timeout, e.status, non2xx, total_nopid, distinct,
      latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
   io.write("BATON_STATUSES " .. table.concat(status_list, " ") .. "\n")
   io.write("BATON_PIDS " .. table.concat(pid_text, " ") .. "\n")
end
