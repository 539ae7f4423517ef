/* Unit tests of src/store/redis_reply.c with hiredis's real reader: every
 * reply type reads as hiredis's own objects would (integers, status, error,
 * bulk and nil strings, nil and empty arrays, nested arrays, strings and
 * arrays past the inline room), a reply fed a byte at a time, a protocol
 * error in the middle of an array (no leak: ASan in `make test`), and
 * that a warm pool allocates nothing for the replies of a pipeline. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "store/redis_reply.h"

struct fixture {
    struct rds_reply_pool pool;
    redisReader *reader;
};

static int setup(void **state)
{
    static struct fixture f;
    rds_reply_pool_init(&f.pool);
    f.reader = redisReaderCreate();
    rds_reply_use(f.reader, &f.pool);
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    redisReaderFree(f->reader);
    rds_reply_pool_dispose(&f->pool);
    return 0;
}

/* Feeds <resp> and returns the one reply it holds. */
static redisReply *read_one(struct fixture *f, const char *resp, size_t len)
{
    assert_int_equal(redisReaderFeed(f->reader, resp, len), REDIS_OK);
    void *reply = NULL;
    assert_int_equal(redisReaderGetReply(f->reader, &reply), REDIS_OK);
    assert_non_null(reply);
    return reply;
}

static void release(struct fixture *f, redisReply *r)
{
    f->reader->fn->freeObject(r);
}

static void test_scalars(void **state)
{
    struct fixture *f = *state;
    redisReply *r = read_one(f, ":-42\r\n", 6);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    assert_int_equal(r->integer, -42);
    release(f, r);

    r = read_one(f, "+OK\r\n", 5);
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    assert_string_equal(r->str, "OK");
    assert_int_equal(r->len, 2);
    release(f, r);

    r = read_one(f, "-NOSCRIPT No matching script\r\n", 30);
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    assert_string_equal(r->str, "NOSCRIPT No matching script");
    release(f, r);

    r = read_one(f, "$-1\r\n", 5);
    assert_int_equal(r->type, REDIS_REPLY_NIL);
    release(f, r);

    /* Binary safe: a NUL inside, length kept. */
    r = read_one(f, "$3\r\na\0b\r\n", 9);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_int_equal(r->len, 3);
    assert_memory_equal(r->str, "a\0b", 4);
    release(f, r);
}

static void test_long_string(void **state)
{
    struct fixture *f = *state;
    char big[5000], resp[5100];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (char)('a' + i % 26);
    int n = snprintf(resp, sizeof(resp), "$%zu\r\n", sizeof(big));
    memcpy(resp + n, big, sizeof(big));
    memcpy(resp + n + sizeof(big), "\r\n", 2);
    redisReply *r = read_one(f, resp, (size_t)n + sizeof(big) + 2);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_int_equal(r->len, sizeof(big));
    assert_memory_equal(r->str, big, sizeof(big));
    assert_int_equal(r->str[sizeof(big)], '\0');
    release(f, r);
}

static void test_arrays(void **state)
{
    struct fixture *f = *state;
    /* The limit script's shape: integers, a nested array, a nil. */
    static const char resp[] = "*4\r\n:1\r\n:99\r\n*2\r\n$5\r\nhello\r\n$-1\r\n*-1\r\n";
    redisReply *r = read_one(f, resp, sizeof(resp) - 1);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 4);
    assert_int_equal(r->element[0]->integer, 1);
    assert_int_equal(r->element[1]->integer, 99);
    assert_int_equal(r->element[2]->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->element[2]->elements, 2);
    assert_string_equal(r->element[2]->element[0]->str, "hello");
    assert_int_equal(r->element[2]->element[1]->type, REDIS_REPLY_NIL);
    assert_int_equal(r->element[3]->type, REDIS_REPLY_NIL);
    release(f, r);

    r = read_one(f, "*0\r\n", 4);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 0);
    release(f, r);

    /* Past the inline room: 100 elements. */
    char many[1024];
    size_t n = (size_t)snprintf(many, sizeof(many), "*100\r\n");
    for (int i = 0; i < 100; i++)
        n += (size_t)snprintf(many + n, sizeof(many) - n, ":%d\r\n", i);
    r = read_one(f, many, n);
    assert_int_equal(r->elements, 100);
    for (int i = 0; i < 100; i++)
        assert_int_equal(r->element[i]->integer, i);
    release(f, r);
}

static void test_byte_at_a_time(void **state)
{
    struct fixture *f = *state;
    static const char resp[] = "*3\r\n:7\r\n$11\r\nhello world\r\n+QUEUED\r\n";
    void *reply = NULL;
    for (size_t i = 0; i < sizeof(resp) - 1; i++) {
        assert_null(reply);
        assert_int_equal(redisReaderFeed(f->reader, resp + i, 1), REDIS_OK);
        assert_int_equal(redisReaderGetReply(f->reader, &reply), REDIS_OK);
    }
    redisReply *r = reply;
    assert_non_null(r);
    assert_int_equal(r->elements, 3);
    assert_int_equal(r->element[0]->integer, 7);
    assert_string_equal(r->element[1]->str, "hello world");
    assert_string_equal(r->element[2]->str, "QUEUED");
    release(f, r);
}

/* A protocol error halfway through an array: the reader frees what it
 * read (ASan would report a leak or a double free). */
static void test_protocol_error(void **state)
{
    struct fixture *f = *state;
    static const char resp[] = "*3\r\n:1\r\n$5\r\nhello\r\n!bad\r\n";
    assert_int_equal(redisReaderFeed(f->reader, resp, sizeof(resp) - 1), REDIS_OK);
    void *reply = NULL;
    assert_int_equal(redisReaderGetReply(f->reader, &reply), REDIS_ERR);
    assert_null(reply);
    /* The reader is spent after an error: a new one for the teardown. */
    redisReaderFree(f->reader);
    f->reader = redisReaderCreate();
    rds_reply_use(f->reader, &f->pool);
}

/* A warm pool: 10,000 replies of a pipeline (64 in flight) cost no malloc. */
static void test_no_alloc_when_warm(void **state)
{
    struct fixture *f = *state;
    static const char one[] = "*5\r\n:1\r\n:100\r\n:99\r\n:0\r\n$2\r\nok\r\n";
    redisReply *held[64];
    unsigned long long before = 0;
    for (int round = 0; round < 10000 / 64; round++) {
        if (round == 1)
            before = f->pool.n_allocs;
        for (int i = 0; i < 64; i++)
            held[i] = read_one(f, one, sizeof(one) - 1);
        for (int i = 0; i < 64; i++) {
            assert_int_equal(held[i]->element[2]->integer, 99);
            release(f, held[i]);
        }
    }
    assert_true(before > 0);
    assert_int_equal(f->pool.n_allocs, before);
    assert_true(f->pool.n_free <= RDS_REPLY_KEEP);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_scalars, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_string, setup, teardown),
        cmocka_unit_test_setup_teardown(test_arrays, setup, teardown),
        cmocka_unit_test_setup_teardown(test_byte_at_a_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_protocol_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_alloc_when_warm, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
