-- The Lua twin of src/limit/algo.c (ARCHITECTURE.md "one algorithm, two
-- homes"): decides every limit of one request and consumes them all or not
-- at all, as lim_store_apply does in memory. Any change to algo.c must be
-- made here too, and tests/unit/test_lua_twin.c run.
--
-- KEYS[i]  the counter of limit i: "<prefix><scope>:<limit>:{<identity>}"
-- ARGV[1]  now in microseconds, or "" to read Redis TIME (production; the
--          argument exists for tests)
-- ARGV[2]  the request's cost
-- ARGV[3]  the request's lease id ("" when it has no concurrency limit)
-- ARGV[4]  how long a lease lasts, in microseconds: a gateway that dies
--          without releasing loses its slots only this long
-- ARGV[5 + 4(i-1) ...]  limit i: algorithm (enum lim_algorithm), count,
--          window_us, burst
--
-- With a quota (SPEC 6.2; quota/decide.c is its C twin), its key comes
-- after the limits' keys ("<prefix>q:{<identity>}", a hash {ds, du, ms,
-- mu}: the start and count of the day and of the month), and five more
-- arguments after the limits': daily, monthly (0: none), the day's and the
-- month's start (unix seconds, from the gateway's calendar), and when the
-- key expires (unix seconds; a TTL from the script's clock). A quota that
-- would be exceeded refuses the request whatever the limits say (as
-- quota_store_decide, which asks the quota first); otherwise it is charged
-- only when every limit allowed.
--
-- Returns {allowed, now_us, then per limit: allowed, limit, remaining,
-- reset_us, retry_after_us}: the fields of struct lim_decision; with a
-- quota, then {verdict (1 admitted, 0 refused by it, -1 not charged: a
-- limit refused), ds, du, ms, mu} after the request (zeros for -1).
--
-- State: per counter, its struct lim_state {t, n, p} as a 24-byte string,
-- three little-endian doubles (struct.pack('<ddd')), written with
-- SET ... PX: one GET and one SET per counter, and no decimal to parse or
-- print; doubles hold the state's integers exactly. For concurrency, a
-- sorted set of lease members "<lease>:<k>" scored by their expiry. Every
-- key written gets a TTL, so Redis memory stays bounded. (Counters were
-- hashes {t, n, p} before; one left by an older version is still read, and
-- becomes a string on its next write.)
--
-- Lua numbers are doubles. algo.c keeps every value an exact integer below
-- 2^53 and every division a floor of integers. For integers |a| < 2^53 and
-- b >= 1 the double quotient a / b, rounded to nearest, never reaches the
-- next integer up (that takes |a| >= 2^53), so Lua 5.1's a % b, which is
-- a - floor(a / b) * b, is the exact floored remainder and
-- (a - a % b) / b the exact floored quotient: each decision here is the C
-- one bit for bit.
--
-- Speed: the whole body runs on every EVALSHA, so the common path defines
-- no function and builds no table beyond the reply (and, for several
-- limits, one table of working state), divides with % instead of calling
-- math.floor, and compares the usual small arguments as strings before
-- converting them.

-- Scripts that read TIME and then write must replicate their effects; the
-- default from Redis 5 on, and required before (3.2 to 4).
local redis = redis
if redis.replicate_commands then
    redis.replicate_commands()
end

-- Constants (algo.c): FIXED_WINDOW 1, SLIDING_WINDOW 2, TOKEN_BUCKET 3,
-- CONCURRENCY 4; a window is at least 1 ms and at most 2^44 us; a count or
-- burst above 2^32 - 1 counts as 2^32 - 1; tau at most 2^52 us.
local MAX_WINDOW_US = 17592186044416 -- 2^44
local MAX_TAU_US = 4503599627370496 -- 2^52
local U32_MAX = 4294967295
-- Redis drops a key by its own millisecond clock. A state past its expiry
-- already reads as fresh through its own timestamps (as in algo.c), so
-- keeping the key a second longer changes no decision; it only keeps Redis
-- from dropping a state a hair early (rounding, the time between calls).
local TTL_SLACK_MS = 1000

local call, tonumber = redis.call, tonumber
local KEYS, ARGV = KEYS, ARGV

-- ---- arguments ----------------------------------------------------------

local nk = #KEYS
local qk = false -- the quota's key
if nk > 0 and #ARGV == 4 * nk + 5 then
    nk = nk - 1
    qk = KEYS[nk + 1]
elseif #ARGV ~= 4 + 4 * nk then
    return redis.error_reply('sluice: expected ' .. (4 + 4 * nk) .. ' arguments for ' .. nk ..
                             ' keys, got ' .. #ARGV)
end

-- An integer argument: v % 1 ~= 0 for fractions, NaN and infinities alike.
local now = ARGV[1]
if now == '' then
    local tm = call('TIME')
    now = tm[1] * 1000000 + tm[2]
else
    local v = tonumber(now)
    if v == nil or v % 1 ~= 0 then
        error('sluice: bad now: ' .. tostring(now))
    end
    now = v
end
local cost = ARGV[2]
if cost == '1' then
    cost = 1
else
    cost = tonumber(cost)
end
if cost == nil or cost % 1 ~= 0 then
    error('sluice: bad cost: ' .. tostring(ARGV[2]))
end
local lease = ARGV[3]
local lease_ttl = ARGV[4]
if lease_ttl == '0' then
    lease_ttl = 0
else
    lease_ttl = tonumber(lease_ttl)
end
if lease_ttl == nil or lease_ttl % 1 ~= 0 then
    error('sluice: bad lease ttl: ' .. tostring(ARGV[4]))
end
if cost < 0 then
    return redis.error_reply('sluice: negative cost')
end

-- ---- read and decide, limit by limit ------------------------------------
--
-- Nothing is written before every argument is checked and every limit
-- decided: a bad argument is an error reply that changed nothing, and a
-- denied request consumes nothing anywhere. Each key has one working copy
-- of its state (repeated keys share it, as in lim_store_apply): for one
-- limit the locals t, n, p; for several, G holds per limit i, from
-- 6(i-1)+1: the slot (first limit of its key), the expiry offset (see the
-- write), and for a slot t, n, p and the held leases (false: not a sorted
-- set).

if nk == 0 and not qk then
    return {1, now}
end
local reply, G
if nk == 1 then
    reply = {1, now, 0, 0, 0, 0, 0}
elseif nk == 2 then
    reply = {1, now, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
    G = {false, false, false, false, false, false, false, false, false, false, false, false}
else
    reply = {1, now}
    G = {}
end
local t, n, p = 0, 0, 0 -- the state of limit i's key
local off = 0 -- limit i's expiry: t + off; false for concurrency
local held = false -- limit i's key is a sorted set of <held> live leases
local any_lease = false

for i = 1, nk do
    local a = 4 * i
    local alg = ARGV[a + 1]
    if alg == '2' then
        alg = 2
    elseif alg == '3' then
        alg = 3
    else
        alg = tonumber(alg)
    end
    if alg == nil or alg % 1 ~= 0 then
        error('sluice: bad algorithm: ' .. tostring(ARGV[a + 1]))
    end
    local count = tonumber(ARGV[a + 2])
    if count == nil or count % 1 ~= 0 then
        error('sluice: bad count: ' .. tostring(ARGV[a + 2]))
    end
    local w = tonumber(ARGV[a + 3])
    if w == nil or w % 1 ~= 0 then
        error('sluice: bad window: ' .. tostring(ARGV[a + 3]))
    end
    local burst = ARGV[a + 4]
    if burst == '0' then
        burst = 0
    else
        burst = tonumber(burst)
    end
    if burst == nil or burst % 1 ~= 0 then
        error('sluice: bad burst: ' .. tostring(ARGV[a + 4]))
    end
    if count < 0 or burst < 0 then
        return redis.error_reply('sluice: negative count or burst')
    end
    if alg == 4 and (lease == '' or lease_ttl <= 0) then
        return redis.error_reply('sluice: a concurrency limit needs a lease and a lease ttl')
    end

    -- The key's state: the working copy, or read now.
    local k = KEYS[i]
    local slot = i
    for j = 1, i - 1 do
        if KEYS[j] == k then
            slot = j -- the first limit of a key is its slot
            break
        end
    end
    local g = 6 * slot - 6
    if slot ~= i then
        t, n, p, held = G[g + 3], G[g + 4], G[g + 5], G[g + 6]
    elseif alg == 4 then
        -- The live leases (the expired ones are dropped at the write: a
        -- gateway that died holds nothing).
        held = call('ZCOUNT', k, '(' .. string.format('%.0f', now), '+inf')
        t, n, p = 0, held, 0
        any_lease = true
    else
        held = false
        t, n, p = 0, 0, 0
        local v = redis.pcall('GET', k)
        if v then
            if v.err then -- (on a string: string.err, nil)
                -- WRONGTYPE: a hash {t, n, p} from an older version.
                v = call('HMGET', k, 't', 'n', 'p')
                t, n, p = tonumber(v[1]) or 0, tonumber(v[2]) or 0, tonumber(v[3]) or 0
            else
                t, n, p = struct.unpack('<ddd', v)
            end
        end
    end

    if count > U32_MAX then
        count = U32_MAX
    end
    if w < 1000 then
        w = 1000
    elseif w > MAX_WINDOW_US then
        w = MAX_WINDOW_US
    end
    local ok, limit, remaining, reset, retry = 0, count, 0, 0, 0

    if alg == 1 then
        -- lim_fixed
        off = w
        local start = now - now % w
        reset = start + w - now
        local m = 0
        if t == start then
            m = n
        end
        if m + cost > count then
            retry = reset
        else
            m = m + cost
            t, n = start, m
            ok, remaining = 1, count - m
        end
    elseif alg == 3 then
        -- lim_gcra
        off = 0
        local t_us = w
        if count > 0 then
            t_us = (w - w % count) / count
        end
        if t_us < 1 then
            t_us = 1
        end
        local b = count
        if burst > 0 then
            b = burst
            if b > U32_MAX then
                b = U32_MAX
            end
        end
        local bmax = (MAX_TAU_US - MAX_TAU_US % t_us) / t_us
        if b > bmax then
            b = bmax
        end
        limit = b
        local tat = now
        if t > now then
            tat = t
        end
        if count == 0 or cost > b then
            retry, reset = w, tat - now
        else
            local tau = t_us * b
            local new_tat = tat + t_us * cost
            local allow_at = new_tat - tau
            if now < allow_at then
                retry, reset = allow_at - now, tat - now
            else
                t = new_tat
                local x = tau - (new_tat - now)
                ok, remaining, reset = 1, (x - x % t_us) / t_us, new_tat - now
            end
        end
    elseif alg == 4 then
        -- lim_concurrency
        off = false
        if n + cost > count then
            retry = 1000000
        else
            n = n + cost
            ok, remaining = 1, count - n
        end
    else
        -- lim_sliding: SLIDING_WINDOW, and the default (0) or anything
        -- unknown, as algo.c.
        off = 2 * w
        local start = now - now % w
        local m, q = 0, 0 -- this window's count and the previous one's
        if t == start then
            m, q = n, p
        elseif t == start - w then
            q = n
        end
        local w_ms = (w - w % 1000) / 1000
        local e_ms = now - start
        e_ms = (e_ms - e_ms % 1000) / 1000
        local x = (w_ms - e_ms) * 1000
        local estimate_pm = q * ((x - x % w_ms) / w_ms) + m * 1000
        if estimate_pm + cost * 1000 <= count * 1000 then
            m = m + cost
            t, n, p = start, m, q
            x = count * 1000 - estimate_pm - cost * 1000
            ok, remaining = 1, (x - x % 1000) / 1000
        elseif cost > count then
            retry = w
        else
            -- lim_sw_first_ms on this window (previous count q, budget
            -- (count - m - cost) per mille), then on the next (previous
            -- count m, budget (count - cost)), else two windows on.
            local e_last = (w - 1 - (w - 1) % 1000) / 1000
            local at = start + 2 * w
            local base, prev, budget = start, q, (count - m - cost) * 1000
            for _ = 1, 2 do
                local e = -1
                if budget >= 0 then
                    e = 0
                    if prev ~= 0 then
                        local r = (budget - budget % prev) / prev
                        if r < 1000 then
                            x = (r + 1) * w_ms - 1
                            e = w_ms - (x - x % 1000) / 1000
                            if e < 0 then
                                e = 0
                            end
                            if e > e_last then
                                e = -1
                            end
                        end
                    end
                end
                if e >= 0 then
                    at = base + e * 1000
                    break
                end
                base, prev, budget = start + w, m, (count - cost) * 1000
            end
            retry = at - now
        end
        if m > 0 then
            reset = start + 2 * w - now
        elseif q > 0 then
            reset = start + w - now
        end
    end

    if ok == 0 then
        reply[1] = 0
    end
    local r = 5 * i - 2
    reply[r], reply[r + 1], reply[r + 2], reply[r + 3], reply[r + 4] =
        ok, limit, remaining, reset, retry
    if G then
        G[6 * i - 5], G[6 * i - 4] = slot, off
        G[g + 3], G[g + 4], G[g + 5], G[g + 6] = t, n, p, held
    end
end

local format = string.format

-- ---- the quota, when every limit allowed ----------------------------------

if qk then
    local b = 4 + 4 * nk
    local qd, qm, qds, qms, qexp = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2]),
        tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4]), tonumber(ARGV[b + 5])
    if qd == nil or qm == nil or qds == nil or qms == nil or qexp == nil or qd % 1 ~= 0 or
        qm % 1 ~= 0 or qds % 1 ~= 0 or qms % 1 ~= 0 or qexp % 1 ~= 0 then
        error('sluice: bad quota arguments')
    end
    local r = 2 + 5 * nk
    local s = call('HMGET', qk, 'ds', 'du', 'ms', 'mu')
    local ds, du = tonumber(s[1]) or 0, tonumber(s[2]) or 0
    local ms, mu = tonumber(s[3]) or 0, tonumber(s[4]) or 0
    -- a newer period resets; never back to an older one (a gateway whose
    -- clock is behind counts into the newer)
    if ds < qds then
        ds, du = qds, 0
    end
    if ms < qms then
        ms, mu = qms, 0
    end
    local verdict = -1
    if (qd > 0 and du + cost > qd) or (qm > 0 and mu + cost > qm) then
        -- refused by the quota whatever the limits said (as quota_store_decide)
        reply[1] = 0
        verdict = 0
    elseif reply[1] == 1 then
        du, mu = du + cost, mu + cost
        call('HSET', qk, 'ds', format('%d', ds), 'du', format('%d', du), 'ms',
             format('%d', ms), 'mu', format('%d', mu))
        -- relative to the script's clock, as every other TTL here
        local ttl = qexp - (now - now % 1000000) / 1000000
        if ttl < 1 then
            ttl = 1
        end
        call('EXPIRE', qk, format('%d', ttl))
        verdict = 1
    end
    if verdict == -1 then
        ds, du, ms, mu = 0, 0, 0, 0
    end
    reply[r + 1], reply[r + 2], reply[r + 3], reply[r + 4], reply[r + 5] =
        verdict, ds, du, ms, mu
end

-- ---- write back, all of them --------------------------------------------

-- TTLs: the milliseconds from now to the key's expiry (algo.c's
-- lim_expiry), rounded up, plus the slack.

-- Drops the expired leases of sorted set <k>; when allowed, adds this
-- request's slots, members <lease>:1 .. <lease>:<n - held> (more than the
-- cost when several limits share the key), numbered as release.lua numbers
-- them, and sets the key's TTL to its latest lease. Made only when needed.
local leases
if any_lease then
    leases = function(k, n, held, allowed)
        call('ZREMRANGEBYSCORE', k, '-inf', format('%.0f', now))
        if not allowed then
            return
        end
        local CHUNK = 1000 -- members per ZADD: unpack has a stack bound
        local score = format('%.0f', now + lease_ttl)
        local added = n - held
        local j = 1
        while j <= added do
            local args = {}
            local last = math.min(j + CHUNK - 1, added)
            for m = j, last do
                args[#args + 1] = score
                args[#args + 1] = lease .. ':' .. m
            end
            call('ZADD', k, unpack(args))
            j = last + 1
        end
        local top = call('ZRANGE', k, -1, -1, 'WITHSCORES')
        if top[2] ~= nil then
            local x = tonumber(top[2]) - now + 999
            local ms = (x - x % 1000) / 1000
            if ms < 0 then
                ms = 0
            end
            call('PEXPIRE', k, ms + TTL_SLACK_MS)
        end
    end
end

local allowed = reply[1] == 1
if not allowed and not any_lease then
    -- A denied request consumes nothing anywhere.
    return reply
end

if nk == 1 then
    if held then
        leases(KEYS[1], n, held, allowed)
        return reply
    end
    -- Not a sorted set, so not a concurrency limit: off is a number.
    local x = t + off - now + 999
    local ms = (x - x % 1000) / 1000
    if ms < 0 then
        ms = 0
    end
    call('SET', KEYS[1], struct.pack('<ddd', t, n, p), 'PX', format('%d', ms + TTL_SLACK_MS))
    return reply
end

for j = 1, nk do
    local g = 6 * j - 6
    if G[g + 1] == j then
        t, n, p, held = G[g + 3], G[g + 4], G[g + 5], G[g + 6]
        if held then
            leases(KEYS[j], n, held, allowed)
        elseif allowed then
            -- The latest expiry over the limits counted under the key.
            local expiry
            for i = j, nk do
                local h = 6 * i - 6
                if G[h + 1] == j then
                    -- A concurrency limit counted under a key that is no
                    -- sorted set holds it a lease long.
                    local x
                    off = G[h + 2]
                    if off then
                        x = t + off
                    elseif n == 0 then
                        x = 0
                    else
                        x = now + lease_ttl
                    end
                    if expiry == nil or x > expiry then
                        expiry = x
                    end
                end
            end
            local x = expiry - now + 999
            local ms = (x - x % 1000) / 1000
            if ms < 0 then
                ms = 0
            end
            call('SET', KEYS[j], struct.pack('<ddd', t, n, p), 'PX',
                 format('%d', ms + TTL_SLACK_MS))
        end
    end
end
return reply
