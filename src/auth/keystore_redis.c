/* API keys and refresh tokens on Redis (see keystore_redis.h for the layout
 * and keystore.h for the semantics, which are those of keystore_sqlite.c).
 *
 * Every change is one Lua script (EVAL), so a reader never sees half a
 * rotation, and the reads that need a consistent snapshot (list,
 * each_active) are scripts too. Redis does not roll back a script that fails
 * half-way (only a key of ours clobbered with another type can make a
 * command fail), so the commands that can fail come first: the INCR of the
 * version, then the index. Secrets and refresh tokens are generated and
 * hashed here: only their SHA-256 in hex reaches Redis. Values stored are
 * the decimal strings computed in C (Lua numbers are doubles and print with
 * 14 digits); scripts only compare them.
 *
 * Key changes (create, rotate, revoke, update) INCR <prefix>keys:version and
 * PUBLISH on <prefix>events: they are what a gateway's keyring holds. Last
 * use times and refresh tokens change no keyring, so they bump neither (a
 * touch from every gateway every flush would make every gateway reload
 * every key, all the time).
 *
 * A revoked key's refresh tokens are not marked one by one (the layout has
 * no index from a key to its tokens): a token whose key is revoked counts as
 * revoked, which is what keystore_sqlite.c's UPDATE ... WHERE key_id amounts
 * to.
 *
 * ks_redis_ops (at the end) holds the connection: it connects lazily (a
 * Redis that is away does not fail ks_open), and reconnects a broken one
 * before the next call, at most once a second; meanwhile calls fail with
 * KS_UNAVAILABLE. */

#include "auth/keystore_redis.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "auth/keystore_backend.h"
#include "store/redis.h"
#include "util/mem.h"
#include "util/str.h"

#define KSR_REFRESH_LEAD "rt"
#define KSR_FAMILY_MAX 33 /* 16 bytes of the first token's hash in hex */
#define KSR_HEX_MAX APIKEY_HEX_MAX
/* Redis drops a refresh token (and a secret past its grace) this long after
 * it stopped being valid: a margin for clocks that disagree. */
#define KSR_EXPIRE_MARGIN_MS 3600000LL
#define KSR_TOUCH_BATCH 512

/* ---- scripts ------------------------------------------------------------ */

/* KEYS: key:<id>, keys, secret:<hash>, keysecrets:<id>, keys:version.
 * ARGV: id, created_ms, hash, prefix, channel, event, then field/value pairs. */
static const char ksr_lua_create[] =
    "if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[3]) == 1 then\n"
    "  return redis.error_reply('ERR key id or secret collision')\n"
    "end\n"
    "local v = redis.call('INCR', KEYS[5])\n"
    "redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])\n"
    "redis.call('HSET', KEYS[1], unpack(ARGV, 7))\n"
    "redis.call('HSET', KEYS[3], 'key_id', ARGV[1], 'valid_until_ms', '0', 'prefix', ARGV[4])\n"
    "redis.call('SADD', KEYS[4], ARGV[3])\n"
    "redis.call('HSET', KEYS[1], 'seq', v)\n"
    "redis.call('PUBLISH', ARGV[5], ARGV[6])\n"
    "return redis.call('HGETALL', KEYS[1])\n";

/* KEYS: key:<id>, keysecrets:<id>, secret:<new hash>, keys:version.
 * ARGV: store prefix, id, now_ms, until_ms (0: no grace), expire_at of the
 * old secrets, new hash, new visible prefix, channel, event.
 * 0 when the key is missing or revoked, else the key's fields. */
static const char ksr_lua_rotate[] =
    "local st = redis.call('HGET', KEYS[1], 'state')\n"
    "if st ~= 'active' then return 0 end\n"
    "if redis.call('EXISTS', KEYS[3]) == 1 then\n"
    "  return redis.error_reply('ERR secret collision')\n"
    "end\n"
    "redis.call('INCR', KEYS[4])\n"
    "local now, till = tonumber(ARGV[3]), tonumber(ARGV[4])\n"
    "for _, h in ipairs(redis.call('SMEMBERS', KEYS[2])) do\n"
    "  local sk = ARGV[1] .. 'secret:' .. h\n"
    "  local vu = tonumber(redis.call('HGET', sk, 'valid_until_ms') or '')\n"
    "  if vu == nil or till == 0 or (vu ~= 0 and vu <= now) then\n"
    "    redis.call('DEL', sk)\n"
    "    redis.call('SREM', KEYS[2], h)\n"
    "  elseif vu == 0 or vu > till then\n"
    "    redis.call('HSET', sk, 'valid_until_ms', ARGV[4])\n"
    "    redis.call('PEXPIREAT', sk, ARGV[5])\n"
    "  end\n"
    "end\n"
    "redis.call('HSET', KEYS[3], 'key_id', ARGV[2], 'valid_until_ms', '0', 'prefix', ARGV[7])\n"
    "redis.call('SADD', KEYS[2], ARGV[6])\n"
    "redis.call('HSET', KEYS[1], 'prefix', ARGV[7], 'rotated_until_ms', ARGV[4])\n"
    "redis.call('PUBLISH', ARGV[8], ARGV[9])\n"
    "return redis.call('HGETALL', KEYS[1])\n";

/* KEYS: key:<id>, keysecrets:<id>, keys:version.
 * ARGV: store prefix, now_ms, channel, event.
 * 0 when the key is missing, else its fields (a revoked key unchanged). */
static const char ksr_lua_revoke[] =
    "local st = redis.call('HGET', KEYS[1], 'state')\n"
    "if not st then return 0 end\n"
    "if st ~= 'revoked' then\n"
    "  redis.call('INCR', KEYS[3])\n"
    "  redis.call('HSET', KEYS[1], 'state', 'revoked', 'revoked_ms', ARGV[2],\n"
    "             'rotated_until_ms', '0')\n"
    "  for _, h in ipairs(redis.call('SMEMBERS', KEYS[2])) do\n"
    "    redis.call('DEL', ARGV[1] .. 'secret:' .. h)\n"
    "  end\n"
    "  redis.call('DEL', KEYS[2])\n"
    "  redis.call('PUBLISH', ARGV[3], ARGV[4])\n"
    "end\n"
    "return redis.call('HGETALL', KEYS[1])\n";

/* KEYS: key:<id>, keys:version.
 * ARGV: channel, event, then the field/value pairs to set.
 * 0 when the key is missing or revoked, else its fields after the change.
 * Only the fields given are written: a concurrent change to another field
 * (or a last-use time) is not undone. */
static const char ksr_lua_update[] =
    "if redis.call('HGET', KEYS[1], 'state') ~= 'active' then return 0 end\n"
    "redis.call('INCR', KEYS[2])\n"
    "if #ARGV > 2 then redis.call('HSET', KEYS[1], unpack(ARGV, 3)) end\n"
    "redis.call('PUBLISH', ARGV[1], ARGV[2])\n"
    "return redis.call('HGETALL', KEYS[1])\n";

/* KEYS: key:<id> for each id. ARGV: the times, in the same order. */
static const char ksr_lua_touch[] = "for i = 1, #KEYS do\n"
                                    "  local cur = redis.call('HGET', KEYS[i], 'last_used_ms')\n"
                                    "  if cur and (tonumber(cur) or 0) < tonumber(ARGV[i]) then\n"
                                    "    redis.call('HSET', KEYS[i], 'last_used_ms', ARGV[i])\n"
                                    "  end\n"
                                    "end\n"
                                    "return 0\n";

/* KEYS: keys. ARGV: store prefix. The fields of every key, newest first
 * (ties are ordered in C). */
static const char ksr_lua_list[] =
    "local out = {}\n"
    "for i, id in ipairs(redis.call('ZREVRANGE', KEYS[1], 0, -1)) do\n"
    "  out[i] = redis.call('HGETALL', ARGV[1] .. 'key:' .. id)\n"
    "end\n"
    "return out\n";

/* KEYS: keys. ARGV: store prefix, now_ms. For each active, unexpired key
 * with valid secrets, by id: its fields, then {hash, valid_until_ms, ...}. */
static const char ksr_lua_each_active[] =
    "local function num(v) return tonumber(v or '') or 0 end\n"
    "local now = tonumber(ARGV[2])\n"
    "local ids = redis.call('ZRANGE', KEYS[1], 0, -1)\n"
    "table.sort(ids)\n"
    "local out = {}\n"
    "for _, id in ipairs(ids) do\n"
    "  local kk = ARGV[1] .. 'key:' .. id\n"
    "  local k = redis.call('HMGET', kk, 'state', 'expires_ms')\n"
    "  local exp = num(k[2])\n"
    "  if k[1] == 'active' and (exp == 0 or exp > now) then\n"
    "    local secs = {}\n"
    "    for _, h in ipairs(redis.call('SMEMBERS', ARGV[1] .. 'keysecrets:' .. id)) do\n"
    "      local vu = redis.call('HGET', ARGV[1] .. 'secret:' .. h, 'valid_until_ms')\n"
    "      if vu and (num(vu) == 0 or num(vu) > now) then\n"
    "        secs[#secs + 1] = h\n"
    "        secs[#secs + 1] = vu\n"
    "      end\n"
    "    end\n"
    "    if #secs > 0 then\n"
    "      out[#out + 1] = redis.call('HGETALL', kk)\n"
    "      out[#out + 1] = secs\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return out\n";

/* KEYS: key:<id>, keysecrets:<id>. The key's secrets, valid or not:
 * {hash, valid_until_ms, ...}. */
static const char ksr_lua_secrets_of[] =
    "local out = {}\n"
    "for _, h in ipairs(redis.call('SMEMBERS', KEYS[2])) do\n"
    "  local vu = redis.call('HGET', ARGV[1] .. 'secret:' .. h, 'valid_until_ms')\n"
    "  if vu then\n"
    "    out[#out + 1] = h\n"
    "    out[#out + 1] = vu\n"
    "  end\n"
    "end\n"
    "return out\n";

/* KEYS: key:<id>, keys, keysecrets:<id>, keys:version.
 * ARGV: store prefix, id, created_ms, channel, event, n secrets, visible
 * prefix, then (hash, valid_until_ms, expire_at or 0) per secret, then the
 * key's field/value pairs. Replaces whatever the key had. */
static const char ksr_lua_put[] =
    "local v = redis.call('INCR', KEYS[4])\n"
    "for _, h in ipairs(redis.call('SMEMBERS', KEYS[3])) do\n"
    "  redis.call('DEL', ARGV[1] .. 'secret:' .. h)\n"
    "end\n"
    "redis.call('DEL', KEYS[1], KEYS[3])\n"
    "redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])\n"
    "local n = tonumber(ARGV[6])\n"
    "for i = 0, n - 1 do\n"
    "  local h, vu, exp = ARGV[8 + 3 * i], ARGV[9 + 3 * i], ARGV[10 + 3 * i]\n"
    "  local sk = ARGV[1] .. 'secret:' .. h\n"
    "  redis.call('HSET', sk, 'key_id', ARGV[2], 'valid_until_ms', vu, 'prefix', ARGV[7])\n"
    "  if exp ~= '0' then redis.call('PEXPIREAT', sk, exp) end\n"
    "  redis.call('SADD', KEYS[3], h)\n"
    "end\n"
    "redis.call('HSET', KEYS[1], unpack(ARGV, 8 + 3 * n))\n"
    "redis.call('HSET', KEYS[1], 'seq', v)\n"
    "redis.call('PUBLISH', ARGV[4], ARGV[5])\n"
    "return 1\n";

/* KEYS: keys:epoch. ARGV: a new epoch, kept only when there is none. */
static const char ksr_lua_epoch[] = "redis.call('SET', KEYS[1], ARGV[1], 'NX')\n"
                                    "return redis.call('GET', KEYS[1])\n";

/* KEYS: keys:epoch, keys:version. ARGV: the epoch. The version moves so
 * that every gateway looks at the store again. */
static const char ksr_lua_set_epoch[] = "redis.call('SET', KEYS[1], ARGV[1])\n"
                                        "redis.call('INCR', KEYS[2])\n"
                                        "return 1\n";

/* Stores a new refresh token; shared by issue and spend. Expects fam, kid,
 * now (strings), rk (its Redis key), hash, expires, expire_at, and the
 * store prefix in ARGV[1]. */
#define KSR_LUA_REFRESH_NEW                                                                        \
    "local function refresh_new(rk, hash, fam, kid, now, expires, expire_at)\n"                    \
    "  if redis.call('EXISTS', rk) == 1 then\n"                                                    \
    "    return redis.error_reply('ERR refresh token collision')\n"                                \
    "  end\n"                                                                                      \
    "  redis.call('HSET', rk, 'family', fam, 'key_id', kid, 'created_ms', now,\n"                  \
    "             'expires_ms', expires, 'spent_ms', '0', 'revoked', '0')\n"                       \
    "  redis.call('PEXPIREAT', rk, expire_at)\n"                                                   \
    "  local fk = ARGV[1] .. 'family:' .. fam\n"                                                   \
    "  redis.call('SADD', fk, hash)\n"                                                             \
    "  local t = redis.call('PEXPIRETIME', fk)\n"                                                  \
    "  if t < 0 or t < tonumber(expire_at) then redis.call('PEXPIREAT', fk, expire_at) end\n"      \
    "  return nil\n"                                                                               \
    "end\n"

/* KEYS: refresh:<hash>, key:<key id>.
 * ARGV: store prefix, hash, family, key id, now_ms, expires_ms, expire_at. */
static const char ksr_lua_refresh_issue[] = KSR_LUA_REFRESH_NEW
    "if redis.call('EXISTS', KEYS[2]) == 0 then\n"
    "  return redis.error_reply('ERR no key ' .. ARGV[4])\n"
    "end\n"
    "local e = refresh_new(KEYS[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7])\n"
    "if e then return e end\n"
    "return 1\n";

/* KEYS: refresh:<hash>, refresh:<successor's hash>.
 * ARGV: store prefix, now_ms, successor's hash, expires_ms, expire_at.
 * 0: invalid; 2: reused (the family is now revoked); else the key's fields
 * (spent, successor stored). The order of the checks is keystore_sqlite.c's. */
static const char ksr_lua_refresh_spend[] = KSR_LUA_REFRESH_NEW
    "local function num(v) return tonumber(v or '') or 0 end\n"
    "local t = redis.call('HMGET', KEYS[1], 'family', 'key_id', 'expires_ms', 'spent_ms',\n"
    "                     'revoked')\n"
    "if not t[1] or not t[2] then return 0 end\n"
    "local kk = ARGV[1] .. 'key:' .. t[2]\n"
    "local k = redis.call('HMGET', kk, 'state', 'expires_ms')\n"
    "if t[5] == '1' or k[1] == 'revoked' then return 0 end\n"
    "if num(t[4]) ~= 0 then\n"
    "  local fk = ARGV[1] .. 'family:' .. t[1]\n"
    "  for _, h in ipairs(redis.call('SMEMBERS', fk)) do\n"
    "    local rk = ARGV[1] .. 'refresh:' .. h\n"
    "    if redis.call('EXISTS', rk) == 1 then\n"
    "      redis.call('HSET', rk, 'revoked', '1')\n"
    "    else\n"
    "      redis.call('SREM', fk, h)\n"
    "    end\n"
    "  end\n"
    "  redis.call('HSET', KEYS[1], 'revoked', '1')\n"
    "  return 2\n"
    "end\n"
    "local now = tonumber(ARGV[2])\n"
    "local kexp = num(k[2])\n"
    "if num(t[3]) <= now or k[1] ~= 'active' or (kexp ~= 0 and kexp <= now) then return 0 end\n"
    "redis.call('HSET', KEYS[1], 'spent_ms', ARGV[2])\n"
    "local e = refresh_new(KEYS[2], ARGV[3], t[1], t[2], ARGV[2], ARGV[4], ARGV[5])\n"
    "if e then return e end\n"
    "return redis.call('HGETALL', kk)\n";

/* ---- errors ------------------------------------------------------------- */

/* ---- commands ----------------------------------------------------------- */

/* An argument vector; every argument is an owned copy. */
struct ksr_cmd {
    int n, cap;
    char **argv;
    size_t *lens;
};

/* Appends <s> (owned by <c> from now on) of length <len>. */
static void ksr_push(struct ksr_cmd *c, char *s, size_t len)
{
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 16;
        c->argv = sl_realloc(c->argv, (size_t)c->cap * sizeof(*c->argv));
        c->lens = sl_realloc(c->lens, (size_t)c->cap * sizeof(*c->lens));
    }
    c->argv[c->n] = s;
    c->lens[c->n++] = len;
}

static void ksr_add(struct ksr_cmd *c, const char *s, size_t len)
{
    ksr_push(c, sl_strndup(s, len), len);
}

static void ksr_str(struct ksr_cmd *c, const char *s)
{
    ksr_add(c, s, strlen(s));
}

static void ksr_fmt(struct ksr_cmd *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void ksr_fmt(struct ksr_cmd *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = sl_malloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    ksr_push(c, s, (size_t)n);
}

static void ksr_i64(struct ksr_cmd *c, int64_t v)
{
    ksr_fmt(c, "%" PRId64, v);
}

static void ksr_cmd_free(struct ksr_cmd *c)
{
    for (int i = 0; i < c->n; i++)
        free(c->argv[i]);
    free(c->argv);
    free(c->lens);
    memset(c, 0, sizeof(*c));
}

/* Starts "EVAL <script> <nkeys>"; the keys and arguments follow. */
static void ksr_eval(struct ksr_cmd *c, const char *script, int nkeys)
{
    ksr_str(c, "EVAL");
    ksr_str(c, script);
    ksr_i64(c, nkeys);
}

/* Sends <c> (then frees it) and returns the reply, or NULL with *<err> set
 * (the connection's error or an error reply). */
static redisReply *ksr_run(redisContext *rc, struct ksr_cmd *c, char **err)
{
    redisReply *r = NULL;
    if (!rc) {
        ks_set_err(err, "redis: no connection");
    } else {
        r = redisCommandArgv(rc, c->n, (const char **)c->argv, c->lens);
        if (!r) {
            ks_set_err(err, "redis: %s", rc->err ? rc->errstr : "no reply");
        } else if (r->type == REDIS_REPLY_ERROR) {
            ks_set_err(err, "redis: %.*s", (int)r->len, r->str ? r->str : "");
            freeReplyObject(r);
            r = NULL;
        }
    }
    ksr_cmd_free(c);
    return r;
}

static enum ks_result ksr_bad_reply(char **err, const char *what)
{
    ks_set_err(err, "redis: unexpected reply %s", what);
    return KS_ERROR;
}

/* ---- values ------------------------------------------------------------- */

static bool ksr_is_str(const redisReply *r)
{
    return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS);
}

/* A decimal integer in <s>/<len>; false when it is not one. */
static bool ksr_parse_i64(const char *s, size_t len, int64_t *out)
{
    char buf[32];
    if (len == 0 || len >= sizeof(buf))
        return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *end;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (errno || end != buf + len)
        return false;
    *out = v;
    return true;
}

static void ksr_copy(char *dst, size_t cap, const redisReply *v)
{
    size_t n = v->len < cap - 1 ? v->len : cap - 1;
    memcpy(dst, v->str, n);
    dst[n] = '\0';
}

/* A key's fields (an HGETALL array) into <k>, and its creation sequence
 * into *<seq> (may be NULL). False when it is no key. */
static bool ksr_read_key(const redisReply *r, struct ks_key *k, int64_t *seq)
{
    memset(k, 0, sizeof(*k));
    k->quota_monthly = k->quota_daily = -1;
    if (seq)
        *seq = 0;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements == 0 || r->elements % 2)
        return false;
    bool have_id = false;
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const redisReply *f = r->element[i], *v = r->element[i + 1];
        if (!ksr_is_str(f) || !ksr_is_str(v))
            return false;
        const char *name = f->str;
        struct {
            const char *name;
            char *dst;
            size_t cap;
        } strs[] = {
            {"id", k->id, sizeof(k->id)},
            {"name", k->name, sizeof(k->name)},
            {"owner", k->owner, sizeof(k->owner)},
            {"tier", k->tier, sizeof(k->tier)},
            {"scopes", k->scopes, sizeof(k->scopes)},
            {"limits", k->limits, sizeof(k->limits)},
            {"prefix", k->prefix, sizeof(k->prefix)},
            {"signing", k->signing, sizeof(k->signing)},
            {"allow_ips", k->allow_ips, sizeof(k->allow_ips)},
        };
        struct {
            const char *name;
            int64_t *dst;
        } ints[] = {
            {"quota_monthly", &k->quota_monthly},
            {"quota_daily", &k->quota_daily},
            {"expires_ms", &k->expires_ms},
            {"created_ms", &k->created_ms},
            {"last_used_ms", &k->last_used_ms},
            {"revoked_ms", &k->revoked_ms},
            {"rotated_until_ms", &k->rotated_until_ms},
        };
        bool done = false;
        for (size_t j = 0; !done && j < sizeof(strs) / sizeof(strs[0]); j++) {
            if (strcmp(name, strs[j].name) == 0) {
                ksr_copy(strs[j].dst, strs[j].cap, v);
                have_id |= j == 0;
                done = true;
            }
        }
        for (size_t j = 0; !done && j < sizeof(ints) / sizeof(ints[0]); j++) {
            if (strcmp(name, ints[j].name) == 0) {
                int64_t x;
                if (ksr_parse_i64(v->str, v->len, &x))
                    *ints[j].dst = x;
                done = true;
            }
        }
        if (done)
            continue;
        if (strcmp(name, "state") == 0) {
            k->state = v->len == 7 && memcmp(v->str, "revoked", 7) == 0 ? KS_REVOKED : KS_ACTIVE;
        } else if (strcmp(name, "seq") == 0 && seq) {
            int64_t x;
            if (ksr_parse_i64(v->str, v->len, &x))
                *seq = x;
        }
    }
    if (k->quota_monthly < 0)
        k->quota_monthly = -1;
    if (k->quota_daily < 0)
        k->quota_daily = -1;
    return have_id;
}

/* SHA-256 of <s> in hex into <hex>. */
static void ksr_hash_hex(const char *s, char hex[KSR_HEX_MAX])
{
    uint8_t h[APIKEY_HASH_LEN];
    apikey_hash(s, strlen(s), h);
    apikey_hex(h, hex);
}

/* The event of a key change, malloc'd. */
static char *ksr_event(const char *id, const char *change)
{
    json_t *doc = json_pack("{s:s, s:s, s:s}", "type", "keys", "id", id, "change", change);
    char *msg = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    return msg ? msg : sl_strdup("{\"type\":\"keys\"}");
}

/* The channel name and the event as the next two arguments. */
static void ksr_add_event(struct ksr_cmd *c, const char *prefix, const char *id, const char *change)
{
    char *msg = ksr_event(id, change);
    ksr_fmt(c, "%sevents", prefix);
    ksr_str(c, msg);
    free(msg);
}

/* ---- keys --------------------------------------------------------------- */

enum ks_result ksr_get(redisContext *rc, const char *prefix, const char *id, struct ks_key *out,
                       char **err)
{
    struct ksr_cmd c = {0};
    ksr_str(&c, "HGETALL");
    ksr_fmt(&c, "%skey:%s", prefix, id);
    redisReply *r = ksr_run(rc, &c, err);
    if (!r)
        return KS_ERROR;
    enum ks_result res = KS_OK;
    if (r->type != REDIS_REPLY_ARRAY)
        res = ksr_bad_reply(err, "reading a key");
    else if (r->elements == 0)
        res = KS_NOT_FOUND;
    else if (!ksr_read_key(r, out, NULL))
        res = ksr_bad_reply(err, "reading a key (a malformed record)");
    freeReplyObject(r);
    return res;
}

struct ksr_listed {
    struct ks_key k;
    int64_t seq;
};

static int ksr_newest_first(const void *a, const void *b)
{
    const struct ksr_listed *x = a, *y = b;
    if (x->k.created_ms != y->k.created_ms)
        return x->k.created_ms > y->k.created_ms ? -1 : 1;
    if (x->seq != y->seq)
        return x->seq > y->seq ? -1 : 1;
    return -strcmp(x->k.id, y->k.id);
}

enum ks_result ksr_list(redisContext *rc, const char *prefix, struct ks_key **out, int *n,
                        char **err)
{
    *out = NULL;
    *n = 0;
    struct ksr_cmd c = {0};
    ksr_eval(&c, ksr_lua_list, 1);
    ksr_fmt(&c, "%skeys", prefix);
    ksr_str(&c, prefix);
    redisReply *r = ksr_run(rc, &c, err);
    if (!r)
        return KS_ERROR;
    if (r->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        return ksr_bad_reply(err, "listing keys");
    }
    struct ksr_listed *l = sl_calloc(r->elements + 1, sizeof(*l));
    size_t count = 0;
    for (size_t i = 0; i < r->elements; i++) /* a hash lost from under the index: skipped */
        if (ksr_read_key(r->element[i], &l[count].k, &l[count].seq))
            count++;
    freeReplyObject(r);
    qsort(l, count, sizeof(*l), ksr_newest_first);
    struct ks_key *keys = sl_malloc((count + 1) * sizeof(*keys));
    for (size_t i = 0; i < count; i++)
        keys[i] = l[i].k;
    free(l);
    *out = keys;
    *n = (int)count;
    return KS_OK;
}

/* An EVAL reply that is 0 (KS_NOT_FOUND) or a key's fields (KS_OK). */
static enum ks_result ksr_key_reply(redisReply *r, struct ks_key *out, char **err, const char *what)
{
    enum ks_result res;
    if (r->type == REDIS_REPLY_INTEGER && r->integer == 0)
        res = KS_NOT_FOUND;
    else if (r->type == REDIS_REPLY_ARRAY && ksr_read_key(r, out, NULL))
        res = KS_OK;
    else
        res = ksr_bad_reply(err, what);
    freeReplyObject(r);
    return res;
}

enum ks_result ksr_create(redisContext *rc, const char *prefix, const struct ks_new *req,
                          int64_t now_ms, struct ks_key *out, char secret[APIKEY_SECRET_MAX],
                          char **err)
{
    secret[0] = '\0';
    const char *env;
    if (!ks_check_new(req, &env, err))
        return KS_ERROR;
    char id[APIKEY_ID_MAX];
    if (ks_new_id(req, id) < 0 || apikey_generate(env, secret) < 0) {
        OPENSSL_cleanse(secret, APIKEY_SECRET_MAX);
        secret[0] = '\0';
        ks_set_err(err, "the random number generator failed");
        return KS_ERROR;
    }
    char vprefix[APIKEY_PREFIX_MAX], hex[KSR_HEX_MAX];
    apikey_visible_prefix(secret, vprefix);
    ksr_hash_hex(secret, hex);

    struct ksr_cmd c = {0};
    ksr_eval(&c, ksr_lua_create, 5);
    ksr_fmt(&c, "%skey:%s", prefix, id);
    ksr_fmt(&c, "%skeys", prefix);
    ksr_fmt(&c, "%ssecret:%s", prefix, hex);
    ksr_fmt(&c, "%skeysecrets:%s", prefix, id);
    ksr_fmt(&c, "%skeys:version", prefix);
    ksr_str(&c, id);
    ksr_i64(&c, now_ms);
    ksr_str(&c, hex);
    ksr_str(&c, vprefix);
    ksr_add_event(&c, prefix, id, "created");
    const char *strs[][2] = {
        {"id", id},
        {"name", req->name ? req->name : ""},
        {"owner", req->owner ? req->owner : ""},
        {"tier", req->tier},
        {"scopes", req->scopes ? req->scopes : ""},
        {"limits", req->limits ? req->limits : ""},
        {"prefix", vprefix},
        {"state", "active"},
        {"signing", req->signing ? req->signing : ""},
        {"allow_ips", req->allow_ips ? req->allow_ips : ""},
    };
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
        ksr_str(&c, strs[i][0]);
        ksr_str(&c, strs[i][1]);
    }
    const struct {
        const char *name;
        int64_t v;
    } ints[] = {
        {"quota_monthly", req->quota_monthly < 0 ? -1 : req->quota_monthly},
        {"quota_daily", req->quota_daily < 0 ? -1 : req->quota_daily},
        {"expires_ms", req->expires_ms > 0 ? req->expires_ms : 0},
        {"created_ms", now_ms},
        {"last_used_ms", 0},
        {"revoked_ms", 0},
        {"rotated_until_ms", 0},
    };
    for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
        ksr_str(&c, ints[i].name);
        ksr_i64(&c, ints[i].v);
    }
    redisReply *r = ksr_run(rc, &c, err);
    enum ks_result res = r ? ksr_key_reply(r, out, err, "creating a key") : KS_ERROR;
    if (res != KS_OK) {
        if (res == KS_NOT_FOUND)
            res = ksr_bad_reply(err, "creating a key");
        OPENSSL_cleanse(secret, APIKEY_SECRET_MAX);
        secret[0] = '\0';
    }
    return res;
}

enum ks_result ksr_rotate(redisContext *rc, const char *prefix, const char *id, int64_t grace_ms,
                          int64_t now_ms, struct ks_key *out, char secret[APIKEY_SECRET_MAX],
                          char **err)
{
    secret[0] = '\0';
    if (grace_ms < 0)
        grace_ms = 0;
    /* The new secret keeps the env of the key's current one; the script
     * checks again that the key is still active. */
    struct ks_key k;
    enum ks_result res = ksr_get(rc, prefix, id, &k, err);
    if (res != KS_OK || k.state != KS_ACTIVE)
        return res == KS_ERROR ? KS_ERROR : KS_NOT_FOUND;
    char env[APIKEY_ENV_MAX + 1] = "live";
    const char *us = strncmp(k.prefix, "sk_", 3) == 0 ? strchr(k.prefix + 3, '_') : NULL;
    if (us && (size_t)(us - k.prefix - 3) <= APIKEY_ENV_MAX) {
        memcpy(env, k.prefix + 3, (size_t)(us - k.prefix - 3));
        env[us - k.prefix - 3] = '\0';
    }
    if (apikey_generate(env, secret) < 0) {
        OPENSSL_cleanse(secret, APIKEY_SECRET_MAX);
        secret[0] = '\0';
        ks_set_err(err, "the random number generator failed");
        return KS_ERROR;
    }
    char vprefix[APIKEY_PREFIX_MAX], hex[KSR_HEX_MAX];
    apikey_visible_prefix(secret, vprefix);
    ksr_hash_hex(secret, hex);
    int64_t until = grace_ms > 0 ? now_ms + grace_ms : 0;

    struct ksr_cmd c = {0};
    ksr_eval(&c, ksr_lua_rotate, 4);
    ksr_fmt(&c, "%skey:%s", prefix, id);
    ksr_fmt(&c, "%skeysecrets:%s", prefix, id);
    ksr_fmt(&c, "%ssecret:%s", prefix, hex);
    ksr_fmt(&c, "%skeys:version", prefix);
    ksr_str(&c, prefix);
    ksr_str(&c, id);
    ksr_i64(&c, now_ms);
    ksr_i64(&c, until);
    ksr_i64(&c, until + KSR_EXPIRE_MARGIN_MS);
    ksr_str(&c, hex);
    ksr_str(&c, vprefix);
    ksr_add_event(&c, prefix, id, "rotated");
    redisReply *r = ksr_run(rc, &c, err);
    res = r ? ksr_key_reply(r, out, err, "rotating a key") : KS_ERROR;
    if (res != KS_OK) {
        OPENSSL_cleanse(secret, APIKEY_SECRET_MAX);
        secret[0] = '\0';
    }
    return res;
}

enum ks_result ksr_revoke(redisContext *rc, const char *prefix, const char *id, int64_t now_ms,
                          struct ks_key *out, char **err)
{
    struct ksr_cmd c = {0};
    ksr_eval(&c, ksr_lua_revoke, 3);
    ksr_fmt(&c, "%skey:%s", prefix, id);
    ksr_fmt(&c, "%skeysecrets:%s", prefix, id);
    ksr_fmt(&c, "%skeys:version", prefix);
    ksr_str(&c, prefix);
    ksr_i64(&c, now_ms);
    ksr_add_event(&c, prefix, id, "revoked");
    redisReply *r = ksr_run(rc, &c, err);
    return r ? ksr_key_reply(r, out, err, "revoking a key") : KS_ERROR;
}

enum ks_result ksr_update(redisContext *rc, const char *prefix, const char *id,
                          const struct ks_update *u, struct ks_key *out, char **err)
{
    if (!ks_check_update(u, err))
        return KS_ERROR;
    struct ksr_cmd c = {0};
    ksr_eval(&c, ksr_lua_update, 2);
    ksr_fmt(&c, "%skey:%s", prefix, id);
    ksr_fmt(&c, "%skeys:version", prefix);
    ksr_add_event(&c, prefix, id, "updated");
    const char *strs[][2] = {
        {"name", u->name},           {"owner", u->owner},   {"tier", u->tier},
        {"scopes", u->scopes},       {"limits", u->limits}, {"signing", u->signing},
        {"allow_ips", u->allow_ips},
    };
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
        if (!strs[i][1])
            continue;
        ksr_str(&c, strs[i][0]);
        ksr_str(&c, strs[i][1]);
    }
    if (u->set_quota_monthly) {
        ksr_str(&c, "quota_monthly");
        ksr_i64(&c, u->quota_monthly);
    }
    if (u->set_quota_daily) {
        ksr_str(&c, "quota_daily");
        ksr_i64(&c, u->quota_daily);
    }
    redisReply *r = ksr_run(rc, &c, err);
    return r ? ksr_key_reply(r, out, err, "updating a key") : KS_ERROR;
}

void ksr_touch_many(redisContext *rc, const char *prefix, const char *const *ids,
                    const int64_t *when_ms, int n)
{
    /* Best effort, as in keystore_sqlite.c: a lost last-used time is not worth an
     * error path. Batches bound the script's arguments. */
    for (int at = 0; at < n; at += KSR_TOUCH_BATCH) {
        int m = n - at < KSR_TOUCH_BATCH ? n - at : KSR_TOUCH_BATCH;
        struct ksr_cmd c = {0};
        ksr_eval(&c, ksr_lua_touch, m);
        for (int i = 0; i < m; i++)
            ksr_fmt(&c, "%skey:%s", prefix, ids[at + i]);
        for (int i = 0; i < m; i++)
            ksr_i64(&c, when_ms[at + i]);
        char *err = NULL;
        redisReply *r = ksr_run(rc, &c, &err);
        freeReplyObject(r);
        free(err);
        if (!r)
            return;
    }
}

void ksr_touch(redisContext *rc, const char *prefix, const char *id, int64_t when_ms)
{
    ksr_touch_many(rc, prefix, &id, &when_ms, 1);
}

enum ks_result ksr_each_active(redisContext *rc, const char *prefix, int64_t now_ms, ks_each_fn fn,
                               void *arg, char **err)
{
    struct ksr_cmd c = {0};
    ksr_eval(&c, ksr_lua_each_active, 1);
    ksr_fmt(&c, "%skeys", prefix);
    ksr_str(&c, prefix);
    ksr_i64(&c, now_ms);
    redisReply *r = ksr_run(rc, &c, err);
    if (!r)
        return KS_ERROR;
    if (r->type != REDIS_REPLY_ARRAY || r->elements % 2) {
        freeReplyObject(r);
        return ksr_bad_reply(err, "reading active keys");
    }
    struct ks_secret *secrets = NULL;
    size_t cap = 0;
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        struct ks_key k;
        const redisReply *s = r->element[i + 1];
        if (!ksr_read_key(r->element[i], &k, NULL) || s->type != REDIS_REPLY_ARRAY)
            continue;
        if (s->elements / 2 > cap) {
            cap = s->elements / 2;
            secrets = sl_realloc(secrets, cap * sizeof(*secrets));
        }
        int n = 0;
        for (size_t j = 0; j + 1 < s->elements; j += 2) {
            const redisReply *h = s->element[j], *v = s->element[j + 1];
            if (!ksr_is_str(h) || !ksr_is_str(v) ||
                !apikey_unhex(h->str, h->len, secrets[n].hash) ||
                !ksr_parse_i64(v->str, v->len, &secrets[n].valid_until_ms))
                continue;
            n++;
        }
        if (n > 0)
            fn(&k, secrets, n, arg);
    }
    free(secrets);
    freeReplyObject(r);
    return KS_OK;
}

/* ---- refresh tokens ----------------------------------------------------- */

enum ks_result ksr_refresh_issue(redisContext *rc, const char *prefix, const char *key_id,
                                 const char *family, int64_t ttl_ms, int64_t now_ms,
                                 char token[KS_REFRESH_MAX], char **err)
{
    token[0] = '\0';
    if (apikey_generate_token(KSR_REFRESH_LEAD, token, KS_REFRESH_MAX) < 0) {
        token[0] = '\0';
        ks_set_err(err, "the random number generator failed");
        return KS_ERROR;
    }
    char hex[KSR_HEX_MAX], fam[KSR_FAMILY_MAX];
    ksr_hash_hex(token, hex);
    if (!family) { /* a new family, named after its first token */
        memcpy(fam, hex, KSR_FAMILY_MAX - 1);
        fam[KSR_FAMILY_MAX - 1] = '\0';
        family = fam;
    }
    int64_t expires = now_ms + ttl_ms;
    struct ksr_cmd c = {0};
    ksr_eval(&c, ksr_lua_refresh_issue, 2);
    ksr_fmt(&c, "%srefresh:%s", prefix, hex);
    ksr_fmt(&c, "%skey:%s", prefix, key_id);
    ksr_str(&c, prefix);
    ksr_str(&c, hex);
    ksr_str(&c, family);
    ksr_str(&c, key_id);
    ksr_i64(&c, now_ms);
    ksr_i64(&c, expires);
    ksr_i64(&c, expires + KSR_EXPIRE_MARGIN_MS);
    redisReply *r = ksr_run(rc, &c, err);
    enum ks_result res = KS_OK;
    if (!r)
        res = KS_ERROR;
    else if (r->type != REDIS_REPLY_INTEGER || r->integer != 1)
        res = ksr_bad_reply(err, "issuing a refresh token");
    freeReplyObject(r);
    if (res != KS_OK) {
        OPENSSL_cleanse(token, KS_REFRESH_MAX);
        token[0] = '\0';
    }
    return res;
}

enum ks_spend ksr_refresh_spend(redisContext *rc, const char *prefix, const char *token,
                                int64_t ttl_ms, int64_t now_ms, struct ks_key *key,
                                char next[KS_REFRESH_MAX], char **err)
{
    next[0] = '\0';
    if (!apikey_token_shape_ok(KSR_REFRESH_LEAD, token))
        return KS_SPENT_INVALID;
    /* The successor is made before it is known to be needed: the script
     * must not call back. */
    if (apikey_generate_token(KSR_REFRESH_LEAD, next, KS_REFRESH_MAX) < 0) {
        next[0] = '\0';
        ks_set_err(err, "the random number generator failed");
        return KS_SPENT_INVALID;
    }
    char hex[KSR_HEX_MAX], next_hex[KSR_HEX_MAX];
    ksr_hash_hex(token, hex);
    ksr_hash_hex(next, next_hex);
    int64_t expires = now_ms + ttl_ms;
    struct ksr_cmd c = {0};
    ksr_eval(&c, ksr_lua_refresh_spend, 2);
    ksr_fmt(&c, "%srefresh:%s", prefix, hex);
    ksr_fmt(&c, "%srefresh:%s", prefix, next_hex);
    ksr_str(&c, prefix);
    ksr_i64(&c, now_ms);
    ksr_str(&c, next_hex);
    ksr_i64(&c, expires);
    ksr_i64(&c, expires + KSR_EXPIRE_MARGIN_MS);
    redisReply *r = ksr_run(rc, &c, err);
    enum ks_spend res = KS_SPENT_INVALID;
    if (r && r->type == REDIS_REPLY_INTEGER && r->integer == 2) {
        res = KS_SPENT_REUSED;
    } else if (r && r->type == REDIS_REPLY_ARRAY) {
        struct ks_key k;
        if (ksr_read_key(r, &k, NULL)) {
            *key = k;
            res = KS_SPENT_OK;
        } else {
            ksr_bad_reply(err, "spending a refresh token");
        }
    } else if (r && !(r->type == REDIS_REPLY_INTEGER && r->integer == 0)) {
        ksr_bad_reply(err, "spending a refresh token");
    }
    freeReplyObject(r);
    if (res != KS_SPENT_OK) {
        OPENSSL_cleanse(next, KS_REFRESH_MAX);
        next[0] = '\0';
    }
    return res;
}

/* ---- import, epoch, advice --------------------------------------------- */

/* The field/value pairs of <k>, as ksr_create stores them. */
static void ksr_add_fields(struct ksr_cmd *c, const struct ks_key *k)
{
    const char *strs[][2] = {
        {"id", k->id},           {"name", k->name},
        {"owner", k->owner},     {"tier", k->tier},
        {"scopes", k->scopes},   {"limits", k->limits},
        {"prefix", k->prefix},   {"state", k->state == KS_REVOKED ? "revoked" : "active"},
        {"signing", k->signing}, {"allow_ips", k->allow_ips},
    };
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
        ksr_str(c, strs[i][0]);
        ksr_str(c, strs[i][1]);
    }
    const struct {
        const char *name;
        int64_t v;
    } ints[] = {
        {"quota_monthly", k->quota_monthly < 0 ? -1 : k->quota_monthly},
        {"quota_daily", k->quota_daily < 0 ? -1 : k->quota_daily},
        {"expires_ms", k->expires_ms},
        {"created_ms", k->created_ms},
        {"last_used_ms", k->last_used_ms},
        {"revoked_ms", k->revoked_ms},
        {"rotated_until_ms", k->rotated_until_ms},
    };
    for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
        ksr_str(c, ints[i].name);
        ksr_i64(c, ints[i].v);
    }
}

/* The secrets key <id> has in the store (valid or not) into *<out>
 * (malloc'd), *<n>. */
static enum ks_result ksr_secrets_of(redisContext *rc, const char *prefix, const char *id,
                                     struct ks_secret **out, int *n, char **err)
{
    *out = NULL;
    *n = 0;
    struct ksr_cmd c = {0};
    ksr_eval(&c, ksr_lua_secrets_of, 2);
    ksr_fmt(&c, "%skey:%s", prefix, id);
    ksr_fmt(&c, "%skeysecrets:%s", prefix, id);
    ksr_str(&c, prefix);
    redisReply *r = ksr_run(rc, &c, err);
    if (!r)
        return KS_ERROR;
    if (r->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        return ksr_bad_reply(err, "reading a key's secrets");
    }
    *out = sl_malloc((r->elements / 2 + 1) * sizeof(**out));
    for (size_t j = 0; j + 1 < r->elements; j += 2) {
        const redisReply *h = r->element[j], *v = r->element[j + 1];
        if (ksr_is_str(h) && ksr_is_str(v) && apikey_unhex(h->str, h->len, (*out)[*n].hash) &&
            ksr_parse_i64(v->str, v->len, &(*out)[*n].valid_until_ms))
            (*n)++;
    }
    freeReplyObject(r);
    return KS_OK;
}

enum ks_result ksr_put(redisContext *rc, const char *prefix, const struct ks_key *k,
                       const struct ks_secret *secrets, int n, bool force, char **err)
{
    struct ks_key cur;
    enum ks_result res = ksr_get(rc, prefix, k->id, &cur, err);
    if (res == KS_ERROR)
        return KS_ERROR;
    if (res == KS_OK) {
        struct ks_secret *have;
        int n_have;
        res = ksr_secrets_of(rc, prefix, k->id, &have, &n_have, err);
        bool same =
            res == KS_OK && ks_same_key(&cur, k) && ks_same_secrets(have, n_have, secrets, n);
        free(have);
        if (res != KS_OK)
            return res;
        if (same)
            return KS_OK;
        if (!force) {
            ks_set_err(err, "key %s exists with other data (--force replaces it)", k->id);
            return KS_CONFLICT;
        }
    }
    struct ksr_cmd c = {0};
    ksr_eval(&c, ksr_lua_put, 4);
    ksr_fmt(&c, "%skey:%s", prefix, k->id);
    ksr_fmt(&c, "%skeys", prefix);
    ksr_fmt(&c, "%skeysecrets:%s", prefix, k->id);
    ksr_fmt(&c, "%skeys:version", prefix);
    ksr_str(&c, prefix);
    ksr_str(&c, k->id);
    ksr_i64(&c, k->created_ms);
    ksr_add_event(&c, prefix, k->id, "imported");
    ksr_i64(&c, n);
    ksr_str(&c, k->prefix);
    for (int i = 0; i < n; i++) {
        char hex[KSR_HEX_MAX];
        apikey_hex(secrets[i].hash, hex);
        ksr_str(&c, hex);
        ksr_i64(&c, secrets[i].valid_until_ms);
        ksr_i64(&c,
                secrets[i].valid_until_ms ? secrets[i].valid_until_ms + KSR_EXPIRE_MARGIN_MS : 0);
    }
    ksr_add_fields(&c, k);
    redisReply *r = ksr_run(rc, &c, err);
    if (!r)
        return KS_ERROR;
    res = r->type == REDIS_REPLY_INTEGER ? KS_OK : ksr_bad_reply(err, "importing a key");
    freeReplyObject(r);
    return res;
}

enum ks_result ksr_epoch(redisContext *rc, const char *prefix, char out[KS_EPOCH_MAX], char **err)
{
    out[0] = '\0';
    uint8_t raw[16];
    char fresh[2 * sizeof(raw) + 1];
    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        ks_set_err(err, "the random number generator failed");
        return KS_ERROR;
    }
    for (size_t i = 0; i < sizeof(raw); i++)
        snprintf(fresh + 2 * i, 3, "%02x", raw[i]);
    struct ksr_cmd c = {0};
    ksr_eval(&c, ksr_lua_epoch, 1);
    ksr_fmt(&c, "%skeys:epoch", prefix);
    ksr_str(&c, fresh);
    redisReply *r = ksr_run(rc, &c, err);
    if (!r)
        return KS_ERROR;
    enum ks_result res = KS_OK;
    if (r->type == REDIS_REPLY_STRING && r->len > 0 && r->len < KS_EPOCH_MAX)
        ksr_copy(out, KS_EPOCH_MAX, r);
    else
        res = ksr_bad_reply(err, "reading the epoch");
    freeReplyObject(r);
    return res;
}

enum ks_result ksr_set_epoch(redisContext *rc, const char *prefix, const char *epoch, char **err)
{
    if (!epoch[0] || strlen(epoch) >= KS_EPOCH_MAX) {
        ks_set_err(err, "bad epoch '%s'", epoch);
        return KS_ERROR;
    }
    struct ksr_cmd c = {0};
    ksr_eval(&c, ksr_lua_set_epoch, 2);
    ksr_fmt(&c, "%skeys:epoch", prefix);
    ksr_fmt(&c, "%skeys:version", prefix);
    ksr_str(&c, epoch);
    redisReply *r = ksr_run(rc, &c, err);
    freeReplyObject(r);
    return r ? KS_OK : KS_ERROR;
}

/* CONFIG GET <name>'s value into <out>; false when CONFIG is refused
 * (renamed or disabled, as managed services do) or says nothing. */
static bool ksr_config_get(redisContext *rc, const char *name, char *out, size_t cap)
{
    redisReply *r = redisCommand(rc, "CONFIG GET %s", name);
    bool ok = r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 && ksr_is_str(r->element[1]);
    if (ok)
        ksr_copy(out, cap, r->element[1]);
    freeReplyObject(r);
    return ok;
}

char *ksr_advice(redisContext *rc, const char *prefix, const struct rds_config *conf)
{
    char aof[16], save[128];
    if (!ksr_config_get(rc, "appendonly", aof, sizeof(aof)) ||
        !ksr_config_get(rc, "save", save, sizeof(save)))
        return NULL;
    if (strcmp(aof, "no") != 0 || save[0])
        return NULL;
    redisReply *r = redisCommand(rc, "ZCARD %skeys", prefix);
    long long n = r && r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
    freeReplyObject(r);
    if (n <= 0)
        return NULL;
    char *msg = NULL;
    ks_set_err(&msg,
               "redis %s:%d persists nothing (appendonly no, save \"\") and holds %lld API "
               "key(s): a restart of Redis loses them (enable AOF or RDB; see "
               "docs/distributed.md, \"Outages and data loss\")",
               conf->host, conf->port, n);
    return msg;
}

int64_t ksr_version(redisContext *rc, const char *prefix)
{
    struct ksr_cmd c = {0};
    ksr_str(&c, "GET");
    ksr_fmt(&c, "%skeys:version", prefix);
    char *err = NULL;
    redisReply *r = ksr_run(rc, &c, &err);
    free(err);
    int64_t v = -1;
    if (r && r->type == REDIS_REPLY_NIL)
        v = 0;
    else if (r && r->type == REDIS_REPLY_STRING && !ksr_parse_i64(r->str, r->len, &v))
        v = -1; /* not a number: not a version */
    freeReplyObject(r);
    return v;
}

/* ---- the connection, and the ops --------------------------------------- */

/* Key operations run off the request path, but a request with a key the
 * keyring does not know waits for the key thread's next look: half a second
 * bounds that wait when Redis is away. */
#define KSR_TIMEOUT_MS 500
#define KSR_RETRY_MS 1000

/* A struct ks_db's state on Redis. */
struct ksr_conn {
    redisContext *rc;       /* NULL: down */
    char prefix[80];        /* of Redis keys */
    struct rds_config conf; /* to reconnect */
    int64_t retry_at_ms;    /* no reconnect before (monotonic ms) */
    char why[400];          /* why the last connection attempt failed */
};

static int64_t ksr_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Connects <c>, or remembers why not and when to try again: while Redis is
 * away, at most once a second, so that every caller in between fails at
 * once instead of waiting to connect. */
static int ksr_connect(struct ksr_conn *c)
{
    char *why = NULL;
    c->rc = rds_connect_sync(&c->conf, KSR_TIMEOUT_MS, &why);
    if (!c->rc) {
        str_copy(c->why, sizeof(c->why), why ? why : "redis: cannot connect");
        free(why);
        c->retry_at_ms = ksr_mono_ms() + KSR_RETRY_MS;
        return -1;
    }
    c->why[0] = '\0';
    return 0;
}

static int ksr_open(struct ks_db *db, const struct ks_open_opts *o, char **err)
{
    struct ksr_conn *c = sl_calloc(1, sizeof(*c));
    c->conf = o->redis;
    str_copy(c->prefix, sizeof(c->prefix), o->redis_prefix ? o->redis_prefix : "");
    /* A Redis that is away does not fail the open: a gateway must start
     * and serve on its last known keys (and the CLI say why it cannot
     * work); calls fail with KS_UNAVAILABLE until Redis answers. */
    ksr_connect(c);
    db->redis = c;
    return 0;
}

static void ksr_close(struct ks_db *db)
{
    if (db->redis) {
        redisFree(db->redis->rc);
        free(db->redis);
    }
    db->redis = NULL;
}

/* A Redis connection that broke (Redis restarted) is made again before the
 * next call; NULL when it still cannot be. */
static redisContext *ksr_live(struct ks_db *db)
{
    struct ksr_conn *c = db->redis;
    if (c->rc && c->rc->err) {
        snprintf(c->why, sizeof(c->why), "redis %.255s:%d: %.100s", c->conf.host, c->conf.port,
                 c->rc->errstr);
        redisFree(c->rc);
        c->rc = NULL;
    }
    if (!c->rc && (ksr_mono_ms() < c->retry_at_ms || ksr_connect(c) < 0))
        return NULL;
    return c->rc;
}

static enum ks_result ksr_down(struct ks_db *db, char **err)
{
    struct ksr_conn *c = db->redis;
    ks_set_err(err, "the key store (redis %s:%d) cannot be reached: %s", c->conf.host, c->conf.port,
               c->why[0] ? c->why : "not connected");
    return KS_UNAVAILABLE;
}

/* <res> of a call on <rc>: a store error that the connection broke under
 * is KS_UNAVAILABLE (Redis went away during the call). */
static enum ks_result ksr_outcome(struct ks_db *db, redisContext *rc, enum ks_result res,
                                  char **err)
{
    if (res == KS_ERROR && rc->err) {
        snprintf(db->redis->why, sizeof(db->redis->why), "%s", rc->errstr);
        return ksr_down(db, err);
    }
    return res;
}

/* The live connection of <db> into <rc>, or return KS_UNAVAILABLE. */
#define KSR_LIVE(db, rc, err)                                                                      \
    redisContext *rc = ksr_live(db);                                                               \
    if (!rc)                                                                                       \
        return ksr_down(db, err);

static int64_t ksr_op_version(struct ks_db *db)
{
    redisContext *rc = ksr_live(db);
    return rc ? ksr_version(rc, db->redis->prefix) : -1;
}

static enum ks_result ksr_op_create(struct ks_db *db, const struct ks_new *req, int64_t now_ms,
                                    struct ks_key *out, char secret[APIKEY_SECRET_MAX], char **err)
{
    KSR_LIVE(db, rc, err)
    return ksr_outcome(db, rc, ksr_create(rc, db->redis->prefix, req, now_ms, out, secret, err),
                       err);
}

static enum ks_result ksr_op_get(struct ks_db *db, const char *id, struct ks_key *out, char **err)
{
    KSR_LIVE(db, rc, err)
    return ksr_outcome(db, rc, ksr_get(rc, db->redis->prefix, id, out, err), err);
}

static enum ks_result ksr_op_list(struct ks_db *db, struct ks_key **out, int *n, char **err)
{
    KSR_LIVE(db, rc, err)
    return ksr_outcome(db, rc, ksr_list(rc, db->redis->prefix, out, n, err), err);
}

static enum ks_result ksr_op_rotate(struct ks_db *db, const char *id, int64_t grace_ms,
                                    int64_t now_ms, struct ks_key *out,
                                    char secret[APIKEY_SECRET_MAX], char **err)
{
    KSR_LIVE(db, rc, err)
    return ksr_outcome(
        db, rc, ksr_rotate(rc, db->redis->prefix, id, grace_ms, now_ms, out, secret, err), err);
}

static enum ks_result ksr_op_revoke(struct ks_db *db, const char *id, int64_t now_ms,
                                    struct ks_key *out, char **err)
{
    KSR_LIVE(db, rc, err)
    return ksr_outcome(db, rc, ksr_revoke(rc, db->redis->prefix, id, now_ms, out, err), err);
}

static enum ks_result ksr_op_update(struct ks_db *db, const char *id, const struct ks_update *u,
                                    struct ks_key *out, char **err)
{
    KSR_LIVE(db, rc, err)
    return ksr_outcome(db, rc, ksr_update(rc, db->redis->prefix, id, u, out, err), err);
}

static void ksr_op_touch_many(struct ks_db *db, const char *const *ids, const int64_t *when, int n)
{
    redisContext *rc = ksr_live(db);
    if (rc)
        ksr_touch_many(rc, db->redis->prefix, ids, when, n);
}

static enum ks_result ksr_op_each_active(struct ks_db *db, int64_t now_ms, ks_each_fn fn, void *arg,
                                         char **err)
{
    KSR_LIVE(db, rc, err)
    return ksr_outcome(db, rc, ksr_each_active(rc, db->redis->prefix, now_ms, fn, arg, err), err);
}

static enum ks_result ksr_op_refresh_issue(struct ks_db *db, const char *key_id, const char *family,
                                           int64_t ttl_ms, int64_t now_ms,
                                           char token[KS_REFRESH_MAX], char **err)
{
    KSR_LIVE(db, rc, err)
    return ksr_outcome(
        db, rc,
        ksr_refresh_issue(rc, db->redis->prefix, key_id, family, ttl_ms, now_ms, token, err), err);
}

static enum ks_spend ksr_op_refresh_spend(struct ks_db *db, const char *token, int64_t ttl_ms,
                                          int64_t now_ms, struct ks_key *key,
                                          char next[KS_REFRESH_MAX], char **err)
{
    redisContext *rc = ksr_live(db);
    if (!rc) {
        ksr_down(db, err);
        return KS_SPENT_INVALID;
    }
    return ksr_refresh_spend(rc, db->redis->prefix, token, ttl_ms, now_ms, key, next, err);
}

static enum ks_result ksr_op_put(struct ks_db *db, const struct ks_key *k,
                                 const struct ks_secret *secrets, int n, bool force, char **err)
{
    KSR_LIVE(db, rc, err)
    return ksr_outcome(db, rc, ksr_put(rc, db->redis->prefix, k, secrets, n, force, err), err);
}

static enum ks_result ksr_op_epoch(struct ks_db *db, char out[KS_EPOCH_MAX], char **err)
{
    KSR_LIVE(db, rc, err)
    return ksr_outcome(db, rc, ksr_epoch(rc, db->redis->prefix, out, err), err);
}

static enum ks_result ksr_op_set_epoch(struct ks_db *db, const char *epoch, char **err)
{
    KSR_LIVE(db, rc, err)
    return ksr_outcome(db, rc, ksr_set_epoch(rc, db->redis->prefix, epoch, err), err);
}

static char *ksr_op_advice(struct ks_db *db)
{
    redisContext *rc = ksr_live(db);
    return rc ? ksr_advice(rc, db->redis->prefix, &db->redis->conf) : NULL;
}

const struct ks_ops ks_redis_ops = {
    .remote = true,
    .open = ksr_open,
    .close = ksr_close,
    .version = ksr_op_version,
    .create = ksr_op_create,
    .get = ksr_op_get,
    .list = ksr_op_list,
    .rotate = ksr_op_rotate,
    .revoke = ksr_op_revoke,
    .update = ksr_op_update,
    .touch_many = ksr_op_touch_many,
    .each_active = ksr_op_each_active,
    .refresh_issue = ksr_op_refresh_issue,
    .refresh_spend = ksr_op_refresh_spend,
    .put = ksr_op_put,
    .epoch = ksr_op_epoch,
    .set_epoch = ksr_op_set_epoch,
    .advice = ksr_op_advice,
};
