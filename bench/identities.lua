-- bench/identities.lua: every request from one of 1,048,576 client
-- addresses (10.0.0.0/12), named in X-Forwarded-For to a gateway that
-- trusts 127.0.0.1: the limit store then holds a counter per address, far
-- more than the CPU caches hold, so most decisions miss them. Used by
-- bench/cpu_ab.py's limit_1m scenario (wrk -s). IDENTITIES_FILL=1 sends
-- the addresses in order (one pass fills the store); otherwise at random.
local n = 1048576
local fill = os.getenv("IDENTITIES_FILL") == "1"
local next_addr = 0
math.randomseed(os.time())

request = function()
    local a
    if fill then
        a = next_addr % n
        next_addr = next_addr + 1
    else
        a = math.random(0, n - 1)
    end
    local ip = string.format("10.%d.%d.%d", math.floor(a / 65536), math.floor(a / 256) % 256,
                             a % 256)
    return wrk.format("GET", "/", {["X-Forwarded-For"] = ip})
end
