-- Gives back the concurrency slots of one allowed request (see apply.lua):
-- KEYS are the request's concurrency counters, in the order apply.lua got
-- them (a key may repeat); ARGV[1] = the request's lease id, ARGV[2] = its
-- cost. Removes members <lease>:1 .. <lease>:<cost> of each key, numbering
-- on across repeats of a key as apply.lua does. A lease already expired or
-- released is simply not there. Returns the number of slots given back.

local lease = ARGV[1]
local cost = tonumber(ARGV[2])
if #ARGV ~= 2 or lease == nil or lease == '' or cost == nil or cost < 0 or
    cost ~= math.floor(cost) then
    return redis.error_reply('sluice: release takes a lease id and a cost')
end

local CHUNK = 1000 -- members per ZREM: unpack has a stack bound
local numbered = {}
local removed = 0
for i = 1, #KEYS do
    local k = KEYS[i]
    local from = numbered[k] or 0
    numbered[k] = from + cost
    local j = from + 1
    while j <= from + cost do
        local members = {}
        local last = math.min(j + CHUNK - 1, from + cost)
        for m = j, last do
            members[#members + 1] = lease .. ':' .. m
        end
        removed = removed + redis.call('ZREM', k, unpack(members))
        j = last + 1
    end
end
return removed
