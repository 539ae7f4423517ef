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
-- Returns {allowed, now_us, then per limit: allowed, limit, remaining,
-- reset_us, retry_after_us}: the fields of struct lim_decision.
--
-- State: a hash {t, n, p} per counter (struct lim_state); for concurrency a
-- sorted set of lease members "<lease>:<k>" scored by their expiry. Every
-- key written gets a TTL, so Redis memory stays bounded.
--
-- Lua numbers are doubles. algo.c keeps every value an exact integer below
-- 2^53 and every division a floor; idiv below floors exactly, so each
-- decision here is the C one bit for bit.

-- Scripts that read TIME and then write must replicate their effects; the
-- default from Redis 5 on, and required before (3.2 to 4).
if redis.replicate_commands then
    redis.replicate_commands()
end

local FIXED_WINDOW, SLIDING_WINDOW, TOKEN_BUCKET, CONCURRENCY = 1, 2, 3, 4

local SECOND_US = 1000000
local MS_US = 1000
local MAX_WINDOW_US = 17592186044416 -- 2^44
local MAX_TAU_US = 4503599627370496 -- 2^52
local U32_MAX = 4294967295
-- Redis drops a key by its own millisecond clock. A state past its expiry
-- already reads as fresh through its own timestamps (as in algo.c), so
-- keeping the key a second longer changes no decision; it only keeps Redis
-- from dropping a state a hair early (rounding, the time between calls).
local TTL_SLACK_MS = 1000
local CHUNK = 1000 -- members per ZADD/ZREM: unpack has a stack bound

-- floor(a / b) of integers, b > 0: the float quotient corrected, exact for
-- |a|, b < 2^53.
local function idiv(a, b)
    local q = math.floor(a / b)
    local r = a - q * b
    while r < 0 do
        q = q - 1
        r = r + b
    end
    while r >= b do
        q = q + 1
        r = r - b
    end
    return q
end

-- An argument that must be an integer; <what> names it in the error.
local function int_arg(s, what)
    local v = tonumber(s)
    if v == nil or v ~= math.floor(v) or v ~= v or v == math.huge or v == -math.huge then
        error('sluice: bad ' .. what .. ': ' .. tostring(s))
    end
    return v
end

-- A number as Redis should store it: all digits, no exponent.
local function fmt(x)
    return string.format('%.0f', x)
end

local function lim_window(l)
    if l.window_us < MS_US then
        return MS_US
    end
    if l.window_us > MAX_WINDOW_US then
        return MAX_WINDOW_US
    end
    return l.window_us
end

local function lim_count(l)
    if l.count > U32_MAX then
        return U32_MAX
    end
    return l.count
end

-- Floored, like algo.c's lim_window_start.
local function window_start(now, w)
    return now - (now - idiv(now, w) * w)
end

local function decision(limit)
    return {allowed = false, limit = limit, remaining = 0, reset_us = 0, retry_after_us = 0}
end

local function lim_fixed(l, s, now, cost)
    local w, count = lim_window(l), lim_count(l)
    local start = window_start(now, w)
    local d = decision(count)
    d.reset_us = start + w - now
    local n = 0
    if s.t == start then
        n = s.n
    end
    if n + cost > count then
        d.retry_after_us = start + w - now
        return d
    end
    n = n + cost
    s.t = start
    s.n = n
    d.allowed = true
    d.remaining = count - n
    return d
end

local function sw_weight(w_ms, e_ms)
    return idiv((w_ms - e_ms) * 1000, w_ms)
end

local function sw_first_ms(w_ms, e_last, p, budget)
    if budget < 0 then
        return -1
    end
    if p == 0 then
        return 0
    end
    local q = idiv(budget, p)
    if q >= 1000 then
        return 0
    end
    local e = w_ms - idiv((q + 1) * w_ms - 1, 1000)
    if e < 0 then
        e = 0
    end
    if e <= e_last then
        return e
    end
    return -1
end

local function lim_sliding(l, s, now, cost)
    local w, count = lim_window(l), lim_count(l)
    local start = window_start(now, w)
    local n, p
    if s.t == start then
        n, p = s.n, s.p
    elseif s.t == start - w then
        n, p = 0, s.n
    else
        n, p = 0, 0
    end

    local w_ms = idiv(w, MS_US)
    local e_ms = idiv(now - start, MS_US)
    local estimate_pm = p * sw_weight(w_ms, e_ms) + n * 1000
    local d = decision(count)

    if estimate_pm + cost * 1000 <= count * 1000 then
        n = n + cost
        s.t = start
        s.n = n
        s.p = p
        d.allowed = true
        d.remaining = idiv(count * 1000 - estimate_pm - cost * 1000, 1000)
    elseif cost > count then
        d.retry_after_us = w
    else
        local e_last = idiv(w - 1, MS_US)
        local at
        local e = sw_first_ms(w_ms, e_last, p, (count - n - cost) * 1000)
        if e >= 0 then
            at = start + e * MS_US
        else
            e = sw_first_ms(w_ms, e_last, n, (count - cost) * 1000)
            if e >= 0 then
                at = start + w + e * MS_US
            else
                at = start + 2 * w
            end
        end
        d.retry_after_us = at - now
    end

    local full_at
    if n > 0 then
        full_at = start + 2 * w
    elseif p > 0 then
        full_at = start + w
    else
        full_at = now
    end
    d.reset_us = full_at - now
    return d
end

local function lim_gcra(l, s, now, cost)
    local w, count = lim_window(l), lim_count(l)
    local t_us = w
    if count > 0 then
        t_us = idiv(w, count)
    end
    if t_us < 1 then
        t_us = 1
    end
    local b = count
    if l.burst > 0 then
        b = l.burst
        if b > U32_MAX then
            b = U32_MAX
        end
    end
    if b > idiv(MAX_TAU_US, t_us) then
        b = idiv(MAX_TAU_US, t_us)
    end
    local d = decision(b)
    local tat = now
    if s.t > now then
        tat = s.t
    end

    if count == 0 or cost > b then
        d.retry_after_us = w
        d.reset_us = tat - now
        return d
    end

    local tau = t_us * b
    local new_tat = tat + t_us * cost
    local allow_at = new_tat - tau
    if now < allow_at then
        d.retry_after_us = allow_at - now
        d.reset_us = tat - now
        return d
    end
    s.t = new_tat
    d.allowed = true
    d.remaining = idiv(tau - (new_tat - now), t_us)
    d.reset_us = new_tat - now
    return d
end

local function lim_concurrency(l, s, cost)
    local count = lim_count(l)
    local n = s.n
    local d = decision(count)
    if n + cost > count then
        d.retry_after_us = SECOND_US
        return d
    end
    n = n + cost
    s.n = n
    d.allowed = true
    d.remaining = count - n
    return d
end

local function lim_apply(l, s, now, cost)
    if l.algorithm == FIXED_WINDOW then
        return lim_fixed(l, s, now, cost)
    elseif l.algorithm == TOKEN_BUCKET then
        return lim_gcra(l, s, now, cost)
    elseif l.algorithm == CONCURRENCY then
        return lim_concurrency(l, s, cost)
    end
    -- SLIDING_WINDOW, and the default (0) or anything unknown, as algo.c.
    return lim_sliding(l, s, now, cost)
end

-- algo.c's lim_expiry; nil for "never" (concurrency slots held).
local function lim_expiry(l, s)
    if l.algorithm == FIXED_WINDOW then
        return s.t + lim_window(l)
    elseif l.algorithm == TOKEN_BUCKET then
        return s.t
    elseif l.algorithm == CONCURRENCY then
        if s.n == 0 then
            return 0
        end
        return nil
    end
    return s.t + 2 * lim_window(l)
end

-- Milliseconds from <now> to <at> (both in us), rounded up, plus the slack.
local function ttl_ms(at, now)
    local ms = idiv(at - now + MS_US - 1, MS_US)
    if ms < 0 then
        ms = 0
    end
    return ms + TTL_SLACK_MS
end

-- ---- arguments ----------------------------------------------------------

local n_limits = #KEYS
if #ARGV ~= 4 + 4 * n_limits then
    return redis.error_reply('sluice: expected ' .. (4 + 4 * n_limits) .. ' arguments for ' ..
                             n_limits .. ' keys, got ' .. #ARGV)
end

local now
if ARGV[1] == '' then
    local t = redis.call('TIME')
    now = tonumber(t[1]) * SECOND_US + tonumber(t[2])
else
    now = int_arg(ARGV[1], 'now')
end
local cost = int_arg(ARGV[2], 'cost')
local lease = ARGV[3]
local lease_ttl = int_arg(ARGV[4], 'lease ttl')
if cost < 0 then
    return redis.error_reply('sluice: negative cost')
end

local limits = {}
for i = 1, n_limits do
    local a = 4 + 4 * (i - 1)
    local l = {
        algorithm = int_arg(ARGV[a + 1], 'algorithm'),
        count = int_arg(ARGV[a + 2], 'count'),
        window_us = int_arg(ARGV[a + 3], 'window'),
        burst = int_arg(ARGV[a + 4], 'burst'),
    }
    if l.count < 0 or l.burst < 0 then
        return redis.error_reply('sluice: negative count or burst')
    end
    if l.algorithm == CONCURRENCY and (lease == '' or lease_ttl <= 0) then
        return redis.error_reply('sluice: a concurrency limit needs a lease and a lease ttl')
    end
    limits[i] = l
end

-- ---- read: one working copy per key (repeated keys share it) -----------

local states, keys = {}, {}
for i = 1, n_limits do
    local k = KEYS[i]
    if states[k] == nil then
        local s
        if limits[i].algorithm == CONCURRENCY then
            -- Expired leases first: a gateway that died holds nothing.
            redis.call('ZREMRANGEBYSCORE', k, '-inf', fmt(now))
            local held = redis.call('ZCARD', k)
            s = {t = 0, n = held, p = 0, leases = true, held = held}
        else
            local v = redis.call('HMGET', k, 't', 'n', 'p')
            s = {t = tonumber(v[1]) or 0, n = tonumber(v[2]) or 0, p = tonumber(v[3]) or 0}
        end
        states[k] = s
        keys[#keys + 1] = k
    end
end

-- ---- decide, on the copies ----------------------------------------------

local reply = {0, now}
local allowed = true
for i = 1, n_limits do
    local d = lim_apply(limits[i], states[KEYS[i]], now, cost)
    if not d.allowed then
        allowed = false
    end
    local r = #reply
    reply[r + 1] = d.allowed and 1 or 0
    reply[r + 2] = d.limit
    reply[r + 3] = d.remaining
    reply[r + 4] = d.reset_us
    reply[r + 5] = d.retry_after_us
end
if not allowed then
    -- A denied request consumes nothing anywhere.
    return reply
end
reply[1] = 1

-- ---- write back, all of them --------------------------------------------

-- The expiry of a key: the latest over the limits counted under it.
local expiry = {}
for i = 1, n_limits do
    local k = KEYS[i]
    local x = lim_expiry(limits[i], states[k])
    if x == nil then
        x = now + lease_ttl -- a hash holding slots: bounded all the same
    end
    if expiry[k] == nil or x > expiry[k] then
        expiry[k] = x
    end
end

for _, k in ipairs(keys) do
    local s = states[k]
    if s.leases then
        -- This request's slots: members <lease>:1 .. <lease>:<added> (more
        -- than the cost when several limits share the key), numbered as
        -- release.lua numbers them.
        local score = fmt(now + lease_ttl)
        local added = s.n - s.held
        local j = 1
        while j <= added do
            local args = {}
            local last = math.min(j + CHUNK - 1, added)
            for m = j, last do
                args[#args + 1] = score
                args[#args + 1] = lease .. ':' .. m
            end
            redis.call('ZADD', k, unpack(args))
            j = last + 1
        end
        local top = redis.call('ZRANGE', k, -1, -1, 'WITHSCORES')
        if top[2] ~= nil then
            redis.call('PEXPIRE', k, ttl_ms(tonumber(top[2]), now))
        end
    else
        redis.call('HSET', k, 't', fmt(s.t), 'n', fmt(s.n), 'p', fmt(s.p))
        redis.call('PEXPIRE', k, ttl_ms(expiry[k], now))
    end
end
return reply
