/* libFuzzer harness: RESP replies as the gateway reads them: hiredis's
 * reader (as store/redis.c uses it) turns the bytes into replies, each of
 * which goes to lim_lua_parse (limit/redis_script.h), the reader of the
 * limiter script's answer, with as many ops as the reply's shape names and
 * with a count that does not fit it.
 *
 * The first input byte sets how the rest is fed (in pieces of 1-31 bytes,
 * or at once: 0), so partial replies are exercised as on a socket.
 *
 * Arrays are capped at 4096 elements here: hiredis 0.14 (Debian's) has no
 * maxelements, so "*2000000000\r\n" makes it calloc 16 GB, which libFuzzer
 * reports as out-of-memory. Redis is a trusted server in our design; the
 * cap keeps the harness on the code under test. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "fuzz.h"
#include "limit/redis_script.h"
#include "quota/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_ARRAY 4096

static redisReplyObjectFunctions fns;
static void *(*default_create_array)(const redisReadTask *, int);

static void *create_array(const redisReadTask *task, int elements)
{
    if (elements > MAX_ARRAY)
        return NULL; /* the reader fails with "Out of memory" */
    return default_create_array(task, elements);
}

static redisReader *reader_new(void)
{
    if (!default_create_array) {
        redisReader *r = redisReaderCreate();
        fns = *r->fn;
        redisReaderFree(r);
        default_create_array = fns.createArray;
        fns.createArray = create_array;
    }
    return redisReaderCreateWithFunctions(&fns);
}

static void parse_reply(const redisReply *reply)
{
    struct lim_op ops[SL_MAX_LIMIT_OPS];
    memset(ops, 0, sizeof(ops));
    int fit = reply->type == REDIS_REPLY_ARRAY && reply->elements >= 2
                  ? (int)((reply->elements - 2) / 5 % (SL_MAX_LIMIT_OPS + 1))
                  : 0;
    int tries[] = {fit, fit + 1, 1, 0, SL_MAX_LIMIT_OPS};
    for (size_t t = 0; t < sizeof(tries) / sizeof(tries[0]); t++) {
        int n = tries[t] > SL_MAX_LIMIT_OPS ? SL_MAX_LIMIT_OPS : tries[t];
        bool ok = true;
        bool allowed = lim_lua_parse(reply, ops, n, NULL, &ok);
        if (allowed && !ok)
            FUZZ_ABORT(); /* allowed only from a well-formed reply */
        for (int i = 0; ok && i < n; i++) {
            const struct lim_decision *d = &ops[i].decision;
            if (d->allowed ? d->retry_after_us != 0 : d->remaining != 0)
                FUZZ_ABORT();
            if (allowed && !d->allowed)
                FUZZ_ABORT();
        }
    }
    /* with a quota: its five fields after the limits' */
    int qfit = reply->type == REDIS_REPLY_ARRAY && reply->elements >= 7
                   ? (int)((reply->elements - 7) / 5 % (SL_MAX_LIMIT_OPS + 1))
                   : 0;
    static const int thresholds[] = {80, 95, 100};
    struct quota_req q;
    memset(&q, 0, sizeof(q));
    q.limits.daily = 1000;
    q.limits.monthly = 20000;
    q.day = (struct quota_period){86400 * 10, 86400 * 11};
    q.month = (struct quota_period){86400, 86400 * 31};
    q.cost = 3;
    q.thresholds = thresholds;
    q.n_thresholds = 3;
    bool ok = true;
    bool allowed = lim_lua_parse(reply, ops, qfit, &q, &ok);
    if (allowed && (!ok || !q.decided))
        FUZZ_ABORT(); /* admitted only with the quota charged, from a good reply */
    if (ok && q.decided && q.decision.allowed != allowed && allowed)
        FUZZ_ABORT();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t piece = data[0] % 32;
    const char *in = (const char *)data + 1;
    size_t len = size - 1;
    if (piece == 0)
        piece = len ? len : 1;

    redisReader *r = reader_new();
    bool failed = false;
    for (size_t at = 0; at < len && !failed; at += piece) {
        size_t n = len - at < piece ? len - at : piece;
        if (redisReaderFeed(r, in + at, n) != REDIS_OK)
            break;
        for (;;) {
            void *reply = NULL;
            if (redisReaderGetReply(r, &reply) != REDIS_OK) {
                failed = true;
                break;
            }
            if (!reply)
                break;
            parse_reply(reply);
            freeReplyObject(reply);
        }
    }
    redisReaderFree(r);
    return 0;
}
