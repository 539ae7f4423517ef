#ifndef SLUICE_REDIS_SCRIPT_H
#define SLUICE_REDIS_SCRIPT_H
/* The Lua twin of the limit algorithms (ARCHITECTURE.md "one algorithm, two
 * homes"): src/limit/lua/apply.lua runs in Redis the same arithmetic as
 * algo.c, over all limits of one request at once, all or nothing, with
 * Redis TIME as the clock. This module holds the scripts (embedded at build
 * time) and turns ops into script arguments and the reply into decisions;
 * the connection is store/redis.h's. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "limit/mem_store.h"
#include "quota/store.h"
#include "util/limits.h"

/* The scripts' source text. */
extern const char lim_lua_apply[];
extern const char lim_lua_release[];

/* Arguments of one apply call: KEYS then ARGV, as rds_eval takes them.
 * Strings point into <buf> or into <ops>' keys; they stay valid as long as
 * both do. */
#define LIM_LUA_MAX_ARGS (SL_MAX_LIMIT_OPS * 5 + 16)
struct lim_lua_call {
    int nkeys, nargs;
    const char *args[LIM_LUA_MAX_ARGS];
    size_t lens[LIM_LUA_MAX_ARGS];
    char buf[LIM_LUA_MAX_ARGS * 24];
    size_t used;
};

/* Room for the Redis keys of one request's ops: a prefix (<= 64), the scope
 * and limit text, and an identity (< 96), each escaped at most 3x; a route
 * path too long to fit makes lim_lua_build fail, and the request falls to
 * on_failure rather than being counted under a cut key. */
#define LIM_LUA_KEYS_MAX ((SL_MAX_LIMIT_OPS + 1) * 400)

/* The call for <ops>/<n> with weight <cost>, and the quota <q> (NULL:
 * none; its key "<prefix>q:{<identity>}" comes last). Keys are
 * "<prefix><op key>" where the op key's identity part is wrapped in a
 * {hash tag}; they are built into <keybuf> (<keycap> bytes). <now_us> < 0: the script reads
 * Redis TIME (production); otherwise it uses <now_us> (tests). <lease> names
 * this request's concurrency leases ("" when it holds none); <lease_ttl_us>
 * bounds how long a crashed gateway's leases last. Returns 0, or -1 when
 * <keybuf> is too small. */
int lim_lua_build(struct lim_lua_call *call, const char *prefix, const struct lim_op *ops, int n,
                  uint32_t cost, const struct quota_req *q, int64_t now_us, const char *lease,
                  int64_t lease_ttl_us, char *keybuf, size_t keycap);

/* Fills every op's decision, and <q>'s (NULL: the call had none), from the
 * script's reply; true when the request was allowed. -1 (as *<ok> false)
 * when the reply does not have the shape the script returns (an error
 * reply, a script from another version). */
bool lim_lua_parse(const redisReply *reply, struct lim_op *ops, int n, struct quota_req *q,
                   bool *ok);

/* Arguments of the release call for the concurrency ops among <ops> of a
 * request of weight <cost> that was allowed under <lease> (nkeys 0: nothing
 * to release). Returns 0, or -1 when <keybuf> is too small. */
int lim_lua_build_release(struct lim_lua_call *call, const char *prefix, const struct lim_op *ops,
                          int n, uint32_t cost, const char *lease, char *keybuf, size_t keycap);

#endif
