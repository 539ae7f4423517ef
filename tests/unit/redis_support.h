#ifndef SLUICE_TEST_REDIS_SUPPORT_H
#define SLUICE_TEST_REDIS_SUPPORT_H
/* A real redis-server for a unit test, and a blocking hiredis connection to
 * it (support.h spawns it). Header-only: each test is one executable. */

#include <stdbool.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "support.h"

static inline void test_sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* A connection to 127.0.0.1:<port> with 2 s timeouts, or NULL. */
static inline redisContext *test_redis_connect(int port)
{
    struct timeval tv = {.tv_sec = 2, .tv_usec = 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (!c || c->err) {
        redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    return c;
}

/* Spawns redis-server on a free port (into <*port>, <*pid>) and returns a
 * connection once it answers PING (up to 5 s), or NULL (the server then
 * killed). */
static inline redisContext *test_redis_start(int *port, pid_t *pid)
{
    *pid = -1;
    if ((*port = test_free_port()) < 0 || (*pid = test_redis_spawn(*port, NULL)) < 0)
        return NULL;
    for (int i = 0; i < 500; i++) {
        redisContext *c = test_redis_connect(*port);
        redisReply *r = c ? redisCommand(c, "PING") : NULL;
        bool ok = r && r->type == REDIS_REPLY_STATUS;
        freeReplyObject(r);
        if (ok)
            return c;
        redisFree(c);
        test_sleep_ms(10);
    }
    fprintf(stderr, "redis-server on port %d did not start\n", *port);
    test_redis_kill(*pid);
    *pid = -1;
    return NULL;
}

#endif
