#ifndef SLUICE_REDIS_H
#define SLUICE_REDIS_H
/* One asynchronous Redis connection on a libuv loop (hiredis 0.14 and its
 * libuv adapter). Commands sent while it is up are pipelined on it, so the
 * requests of one worker share one connection. Every command has a
 * deadline: Redis replies in order, so the pending commands form a FIFO and
 * one timer on its head suffices. A command that misses its deadline is
 * answered RDS_TIMEOUT at once, and the connection is dropped (a Redis that
 * is that late is not to be trusted with the next command either) and
 * re-established with capped exponential backoff. While the connection is
 * down, commands fail at once with RDS_DOWN: callers never wait for a Redis
 * that is not there. Loop-thread only. */

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* Where and how to connect: parsed from store.redis.url. */
struct rds_config {
    char host[256];
    int port;           /* default 6379 */
    int db;             /* default 0 */
    char password[256]; /* "" none; redis://:PASSWORD@host or redis://user:PASSWORD@host */
    char user[128];     /* "" none (ACL user for AUTH user password) */
    int64_t timeout_ms; /* per command */
};

/* "redis://[[user]:password@]host[:port][/db]". 0, or -1 with *<why> (static). */
int rds_parse_url(const char *url, struct rds_config *out, const char **why);

enum rds_status {
    RDS_OK = 0,  /* <reply> is the reply (it may be a Redis error reply) */
    RDS_DOWN,    /* not connected: nothing was sent */
    RDS_TIMEOUT, /* sent, not answered within the timeout */
    RDS_CLOSED,  /* the connection was lost or closed before the reply */
};

/* <reply> is valid only during the call (hiredis frees it after). */
typedef void (*rds_reply_fn)(void *arg, enum rds_status st, const redisReply *reply);
/* Called on the loop when the connection comes up (<up>) or goes down, with
 * a reason for logs. */
typedef void (*rds_state_fn)(void *arg, bool up, const char *why);

struct rds;

/* Starts connecting (and keeps reconnecting) to <c> on <loop>. After the
 * TCP connect it sends AUTH and SELECT as needed; the connection counts as
 * up once they succeed. <on_state> may be NULL. */
struct rds *rds_new(uv_loop_t *loop, const struct rds_config *c, rds_state_fn on_state,
                    void *state_arg);
/* Fails what is pending (RDS_CLOSED), disconnects, releases the handles;
 * <closed>(<arg>) runs once the libuv handles are closed (may be NULL). */
void rds_close(struct rds *r, void (*closed)(void *arg), void *arg);
bool rds_is_up(const struct rds *r);

/* Send one command (argv form, binary safe). The callback always runs
 * exactly once, possibly before this returns (RDS_DOWN). */
void rds_command(struct rds *r, int argc, const char *const *argv, const size_t *lens,
                 rds_reply_fn cb, void *arg);

/* A Lua script known by its SHA-1, sent with EVALSHA; a NOSCRIPT reply (a
 * restarted or flushed Redis) is retried once transparently with EVAL,
 * which also loads it. */
struct rds_script {
    const char *body;
    char sha[41];
};
void rds_script_init(struct rds_script *s, const char *body);
/* EVALSHA <sha> <nkeys> <args...> where <args> holds the keys then the
 * arguments. */
void rds_eval(struct rds *r, const struct rds_script *s, int nkeys, int nargs,
              const char *const *args, const size_t *lens, rds_reply_fn cb, void *arg);

/* A subscriber connection: SUBSCRIBE <channel> on every (re)connect, and
 * <on_message>(<arg>, <payload>, <len>) for each message. Close it with
 * rds_close. */
typedef void (*rds_message_fn)(void *arg, const char *payload, size_t len);
struct rds *rds_subscribe(uv_loop_t *loop, const struct rds_config *c, const char *channel,
                          rds_message_fn on_message, rds_state_fn on_state, void *arg);

/* A blocking connection, for code off the loops (the key store's thread,
 * the CLI): TCP connect, then AUTH and SELECT as <c> asks, within
 * <timeout_ms>, which stays the timeout of every later command (<c>'s own
 * timeout_ms is the loop connections'). NULL with *<err> (malloc'd,
 * "redis <host>:<port>: ...") when any step fails; <err> may be NULL. */
redisContext *rds_connect_sync(const struct rds_config *c, int timeout_ms, char **err);

/* Counters for metrics (loop-thread writes, any thread reads). */
struct rds_stats {
    uint64_t commands; /* sent to Redis */
    uint64_t timeouts;
    uint64_t reconnects;
};
void rds_get_stats(const struct rds *r, struct rds_stats *out);

#endif
