-- bench/upload.lua: every request a chunked POST of 16 KiB in four 4 KiB
-- chunks, as a streaming client sends an upload of unknown length. Used by
-- the "upload" scenario of bench/run.sh (wrk -s).
local piece = string.rep("x", 4096)
local chunk = string.format("%x\r\n%s\r\n", #piece, piece)
local req = "POST / HTTP/1.1\r\nHost: bench\r\nTransfer-Encoding: chunked\r\n\r\n" ..
    chunk:rep(4) .. "0\r\n\r\n"

request = function()
    return req
end
