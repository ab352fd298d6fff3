-- wrk script: count the answers that are not 2xx by the release that sent them
-- (the sample app's X-Release header; "none" when the proxy answered itself, e.g. 502),
-- and print them when wrk stops as lines "non-2xx <release> <count>". Its arguments
-- (wrk ... URL -- ARG...):
--   progress  print one byte 0x1e (ASCII's record separator, which wrk's report never
--             holds) per answer as it comes, so a caller can count answers while wrk runs;
--   pace=MS   wait MS milliseconds before each request on a connection (without it,
--             each connection sends its next request as soon as an answer comes).
local threads = {}

function setup(thread)
   table.insert(threads, thread)
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
   end
end

function response(status, headers, body)
   if progress then
      io.write("\30")
      io.flush()
   end
   if status < 200 or status > 299 then
      local release = headers["X-Release"] or "none"
      bad[release] = (bad[release] or 0) + 1
   end
end

function done(summary, latency, requests)
   local totals = {}
   for _, thread in ipairs(threads) do
      for release, count in pairs(thread:get("bad")) do
         totals[release] = (totals[release] or 0) + count
      end
   end
   for release, count in pairs(totals) do
      io.write(string.format("non-2xx %s %d\n", release, count))
   end
end
