-- wrk script: count the answers that are not 2xx by the release that sent them
-- (the sample app's X-Release header; "none" when the proxy answered itself, e.g. 502),
-- and print them when wrk stops as lines "non-2xx <release> <count>". Its arguments
-- (wrk ... URL -- ARG...):
--   progress  print one byte 0x1e (ASCII's record separator, which wrk's report never
--             holds) per answer as it comes, so a caller can count answers while wrk runs;
--   pace=MS   wait MS milliseconds before each request on a connection (without it,
--             each connection sends its next request as soon as an answer comes);
--   samples=PATH
--             time every request and write one line per answer to PATH when wrk stops:
--             "<sent, unix seconds> <latency ms> <status> <release>". wrk's Lua calls
--             name no connection, so a request is paired with its answer by thread:
--             run it with one connection per thread (-tN -cN).
local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

-- The wall clock with microseconds (LuaJIT's ffi: wrk's Lua has no such clock).
local function clock()
   local ffi = require("ffi")
   ffi.cdef([[
      typedef struct { long tv_sec; long tv_nsec; } melk_timespec;
      int clock_gettime(int clk_id, melk_timespec *tp);
   ]])
   local now = ffi.new("melk_timespec")
   return function()
      ffi.C.clock_gettime(0, now) -- CLOCK_REALTIME: the test servers' clock too
      return tonumber(now.tv_sec) + tonumber(now.tv_nsec) / 1e9
   end
end

function init(args)
   bad = {}
   for _, arg in ipairs(args) do
      if arg == "progress" then
         progress = true
      end
      local ms = tonumber(arg:match("^pace=(%d+)$"))
      if ms then
         -- defined only when asked: wrk then delays each request by what it returns
         delay = function() return ms end
      end
      local path = arg:match("^samples=(.+)$")
      if path then
         samples_path = path
         samples = {}
         local now = clock()
         -- defined only when asked: wrk then asks for each request as it sends it
         request = function()
            sent = now()
            return wrk.format()
         end
         timed = function(status, headers)
            local release = headers["X-Release"] or "none"
            samples[#samples + 1] =
               string.format("%.6f %.3f %d %s", sent, (now() - sent) * 1000, status, release)
         end
      end
   end
end

function response(status, headers, body)
   if progress then
      io.write("\30")
      io.flush()
   end
   if timed then
      timed(status, headers)
   end
   if status < 200 or status > 299 then
      local release = headers["X-Release"] or "none"
      bad[release] = (bad[release] or 0) + 1
   end
end

function done(summary, latency, requests)
   local totals = {}
   local out = nil
   for _, thread in ipairs(threads) do
      for release, count in pairs(thread:get("bad")) do
         totals[release] = (totals[release] or 0) + count
      end
      local path = thread:get("samples_path")
      if path then
         out = out or assert(io.open(path, "w"))
         for _, line in ipairs(thread:get("samples")) do
            out:write(line, "\n")
         end
      end
   end
   if out then
      out:close()
   end
   for release, count in pairs(totals) do
      io.write(string.format("non-2xx %s %d\n", release, count))
   end
end
