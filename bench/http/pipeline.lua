-- wrk script: sends `depth` pipelined GET requests per write (TechEmpower's plaintext shape).
-- Usage: wrk -s pipeline.lua URL -- DEPTH
local depth = 16
local batch

init = function(args)
  depth = tonumber(args[1]) or depth
  local one = wrk.format("GET", "/plaintext")
  batch = string.rep(one, depth)
end

request = function()
  return batch
end
