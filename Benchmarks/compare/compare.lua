-- wrk script for Benchmarks/run.sh.
--
-- Always: done() prints one machine-readable "CMP_RESULT key=value …" line (requests, rate,
-- latency percentiles, wrk socket errors by kind, non-2xx).
-- With CMP_TRACK=1 in the environment: response() also counts statuses and the "pid" of each
-- JSON answer (which generation served it), and with CMP_TIMELINE=path it writes one line
-- "<bucket start, unix ms> <pid> <count>" per 100 ms bucket and pid to that file (non-2xx answers
-- are logged with pid "status<code>"). Without CMP_TRACK no response() is defined, so wrk does not
-- parse bodies: the steady-state numbers measure the servers, not this script.
--
-- wrk runs one Lua state per thread: counters are per thread; done() (main state) sums them with
-- thread:get(), which copies tables between states.

local threads = {}
local track = os.getenv("CMP_TRACK") == "1"
local timeline_path = os.getenv("CMP_TIMELINE")

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   statuses = {}   -- status code -> count
   pids = {}       -- pid (string) -> count
   timeline = {}   -- "bucket pid" -> count
end

if track then
   local ffi = require("ffi")
   ffi.cdef[[
      typedef struct { long tv_sec; long tv_usec; } cmp_timeval;
      int gettimeofday(cmp_timeval *tv, void *tz);
   ]]
   local tv = ffi.new("cmp_timeval")
   local with_timeline = timeline_path ~= nil and timeline_path ~= ""

   function response(status, headers, body)
      statuses[status] = (statuses[status] or 0) + 1
      local pid = body and string.match(body, '"pid"%s*:%s*(%d+)')
      if pid then pids[pid] = (pids[pid] or 0) + 1 end
      if with_timeline then
         ffi.C.gettimeofday(tv, nil)
         local bucket = tonumber(tv.tv_sec) * 10 + math.floor(tonumber(tv.tv_usec) / 100000)
         local key
         if status >= 200 and status < 300 then
            key = bucket .. " " .. (pid or "nopid")
         else
            key = bucket .. " status" .. status
         end
         timeline[key] = (timeline[key] or 0) + 1
      end
   end
end

function done(summary, latency, requests)
   local all_statuses, all_pids, all_timeline = {}, {}, {}
   for _, thread in ipairs(threads) do
      for k, n in pairs(thread:get("statuses") or {}) do all_statuses[k] = (all_statuses[k] or 0) + n end
      for k, n in pairs(thread:get("pids") or {}) do all_pids[k] = (all_pids[k] or 0) + n end
      for k, n in pairs(thread:get("timeline") or {}) do all_timeline[k] = (all_timeline[k] or 0) + n end
   end

   local non2xx = 0
   local status_list = {}
   for status, n in pairs(all_statuses) do
      if status < 200 or status > 299 then non2xx = non2xx + n end
      table.insert(status_list, status .. ":" .. n)
   end
   table.sort(status_list)
   if not track then non2xx = summary.errors.status end   -- wrk's own count (status > 399)

   local pid_list = {}
   for pid, n in pairs(all_pids) do table.insert(pid_list, pid .. ":" .. n) end
   table.sort(pid_list)

   local e = summary.errors
   local seconds = summary.duration / 1e6
   io.write(string.format(
      "CMP_RESULT requests=%d duration_s=%.3f rps=%.1f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f connect=%d read=%d write=%d timeout=%d non2xx=%d pids=%d\n",
      summary.requests, seconds, summary.requests / seconds,
      latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
      e.connect, e.read, e.write, e.timeout, non2xx, #pid_list))
   io.write("CMP_STATUSES " .. table.concat(status_list, " ") .. "\n")
   io.write("CMP_PIDS " .. table.concat(pid_list, " ") .. "\n")

   if timeline_path and timeline_path ~= "" then
      local f = assert(io.open(timeline_path, "w"))
      local keys = {}
      for k in pairs(all_timeline) do table.insert(keys, k) end
      table.sort(keys)
      for _, k in ipairs(keys) do
         local bucket, pid = string.match(k, "^(%d+) (.+)$")
         f:write(string.format("%d %s %d\n", tonumber(bucket) * 100, pid, all_timeline[k]))
      end
      f:close()
   end
end
