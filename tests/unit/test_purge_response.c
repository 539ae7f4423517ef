/* The answer parsing of `sluice purge` (src/cli/purge.c): llhttp in
 * response mode over Content-Length, chunked and close-delimited bodies,
 * 1xx before the answer, the bounds, and malformed answers. Each answer is
 * fed whole, split at every offset, and byte by byte: a socket may cut it
 * anywhere. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

/* The source itself, to reach its static functions (as h2o's t/00unit
 * does); cli_purge then comes from here rather than from sluice_core. */
#include "cli/purge.c"

/* Feeds <raw>/<len> to a fresh parser in pieces cut at <cuts> (sorted
 * offsets, <n_cuts> of them), then the end of the stream if it still needs
 * one. Returns what the last call returned; *<a> is left for checks. */
static int feed_cut(struct purge_answer *a, const char *raw, size_t len, const size_t *cuts,
                    size_t n_cuts)
{
    purge_answer_init(a);
    size_t from = 0;
    int r = 0;
    for (size_t i = 0; i <= n_cuts && r == 0; i++) {
        size_t to = i < n_cuts ? cuts[i] : len;
        r = purge_answer_feed(a, raw + from, to - from);
        from = to;
    }
    if (r == 0)
        r = purge_answer_end(a);
    return r;
}

/* <raw> must parse to <status> and <body>, however it is cut. <needs_end>:
 * only the end of the stream completes it (a close-delimited body). */
static void expect_answer(const char *raw, int status, const char *body, bool needs_end)
{
    size_t len = strlen(raw);
    struct purge_answer a;

    /* whole, and whether the end of the stream is needed */
    purge_answer_init(&a);
    assert_int_equal(purge_answer_feed(&a, raw, len), needs_end ? 0 : 1);
    assert_int_equal(purge_answer_end(&a), 1);
    assert_int_equal(a.status, status);
    assert_int_equal(a.body.len, strlen(body));
    if (a.body.len)
        assert_memory_equal(a.body.data, body, a.body.len);
    purge_answer_release(&a);

    /* in two pieces, at every offset */
    for (size_t cut = 0; cut <= len; cut++) {
        assert_int_equal(feed_cut(&a, raw, len, &cut, 1), 1);
        assert_int_equal(a.status, status);
        assert_int_equal(a.body.len, strlen(body));
        if (a.body.len)
            assert_memory_equal(a.body.data, body, a.body.len);
        purge_answer_release(&a);
    }

    /* byte by byte */
    purge_answer_init(&a);
    int r = 0;
    for (size_t i = 0; i < len && r == 0; i++)
        r = purge_answer_feed(&a, raw + i, 1);
    if (r == 0)
        r = purge_answer_end(&a);
    assert_int_equal(r, 1);
    assert_int_equal(a.status, status);
    assert_int_equal(a.body.len, strlen(body));
    purge_answer_release(&a);
}

/* <raw>/<len> must be refused, whole and cut at every offset, with a reason
 * containing <why>. */
static void expect_refused_n(const char *raw, size_t len, const char *why)
{
    struct purge_answer a;
    for (size_t cut = 0; cut <= len; cut++) {
        int r = feed_cut(&a, raw, len, &cut, 1);
        if (r != -1)
            fail_msg("accepted when cut at %zu: %s", cut, raw);
        assert_non_null(a.why);
        if (!strstr(a.why, why))
            fail_msg("cut at %zu: reason '%s', expected '%s'", cut, a.why, why);
        /* and it stays refused */
        assert_int_equal(purge_answer_feed(&a, "x", 1), -1);
        assert_int_equal(purge_answer_end(&a), -1);
        purge_answer_release(&a);
    }
}

static void expect_refused(const char *raw, const char *why)
{
    expect_refused_n(raw, strlen(raw), why);
}

static void test_content_length(void **state)
{
    expect_answer("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                  "Content-Length: 14\r\nCache-Control: no-store\r\n\r\n{\"purged\": 3}\n",
                  200, "{\"purged\": 3}\n", false);
    /* what follows the answer is ignored */
    expect_answer("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}HTTP/1.1 500 Oops\r\n\r\n", 200,
                  "{}", false);
    expect_answer("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", 200, "", false);
    expect_answer("HTTP/1.0 401 Unauthorized\r\nContent-Length: 16\r\n\r\n{\"error\": \"no\"}\n",
                  401, "{\"error\": \"no\"}\n", false);
}

static void test_chunked(void **state)
{
    expect_answer("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "5\r\n{\"pur\r\n9\r\nged\": 7}\n\r\n0\r\n\r\n",
                  200, "{\"purged\": 7}\n", false);
    /* upper-case hex, an extension, a trailer */
    expect_answer("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
                  "A;name=value\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\n",
                  200, "0123456789", false);
    expect_answer("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 200, "", false);
}

static void test_close_delimited(void **state)
{
    expect_answer("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{\"purged\": 1}", 200,
                  "{\"purged\": 1}", true);
    expect_answer("HTTP/1.0 200 OK\r\n\r\n{\"purged\": 12}\n", 200, "{\"purged\": 12}\n", true);
    expect_answer("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", 200, "", true);
}

static void test_no_body_statuses_and_1xx(void **state)
{
    expect_answer("HTTP/1.1 204 No Content\r\n\r\n", 204, "", false);
    expect_answer("HTTP/1.1 304 Not Modified\r\n\r\n", 304, "", false);
    /* 1xx before the answer: skipped */
    expect_answer("HTTP/1.1 100 Continue\r\n\r\n"
                  "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                  "HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n{\"purged\": 2}",
                  200, "{\"purged\": 2}", false);
}

static void test_not_http(void **state)
{
    expect_refused("SSH-2.0-OpenSSH_9.2\r\n", "Expected HTTP/");
    expect_refused("HTTP/1.1 20 OK\r\n\r\n", "invalid status code");
    expect_refused("HTTP/1.1 000 OK\r\n\r\n", "invalid status code");
    expect_refused("HTTP/1.1 2000 OK\r\n\r\n", "overflow");
    expect_refused("HTTP/1.1 200 OK\nContent-Length: 0\n\n", ""); /* bare LF */
    expect_refused("HTTP/1.1 200 OK\r\nContent Length: 1\r\n\r\nx", "");
    /* not the HTTP the request asked for */
    expect_refused("HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n"
                   "Connection: upgrade\r\n\r\n",
                   "");
    expect_refused("GET / HTTP/1.1\r\nHost: x\r\n\r\n", "Expected HTTP/");
    static const char nul[] = "HTTP/1.1 200 OK\r\nX: a\0b\r\n\r\n";
    expect_refused_n(nul, sizeof(nul) - 1, "");
}

static void test_bad_framing(void **state)
{
    expect_refused("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
                   "Duplicate Content-Length");
    expect_refused("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "");
    expect_refused("HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n", "");
    expect_refused("HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n", "");
    expect_refused("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "");
    expect_refused("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "2\r\nabc\r\n0\r\n\r\n",
                   "");
    expect_refused("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                   "Content-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
                   "can't be present with Transfer-Encoding");
}

static void test_cut_short(void **state)
{
    const char *closed = "closed in the middle";
    expect_refused("HTTP/1.1 200 OK\r\nContent-Length: 14\r\n\r\n{\"purged\": 3}", closed);
    expect_refused("HTTP/1.1 200 OK\r\nContent-Le", closed);
    expect_refused("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", closed);
    expect_refused("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n", closed);
    expect_refused("HTTP/1.1 100 Continue\r\n\r\n", closed);
    expect_refused("", "without an answer");
}

static void test_bounds(void **state)
{
    struct buf raw = {0};
    struct purge_answer a;

    /* a body of exactly PURGE_MAX_BODY bytes is read, one more is not */
    for (int extra = 0; extra <= 1; extra++) {
        size_t n = PURGE_MAX_BODY + (size_t)extra;
        for (int framing = 0; framing < 3; framing++) {
            raw.len = 0;
            if (framing == 0)
                buf_appendf(&raw, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", n);
            else if (framing == 1)
                buf_appendf(&raw, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
            else
                buf_appendf(&raw, "HTTP/1.1 200 OK\r\n\r\n");
            for (size_t i = 0; i < n; i += 1000) {
                size_t k = n - i < 1000 ? n - i : 1000;
                if (framing == 1)
                    buf_appendf(&raw, "%zx\r\n", k);
                buf_reserve(&raw, k);
                memset(raw.data + raw.len, 'a', k);
                raw.len += k;
                if (framing == 1)
                    buf_append_str(&raw, "\r\n");
            }
            if (framing == 1)
                buf_append_str(&raw, "0\r\n\r\n");
            purge_answer_init(&a);
            int r = purge_answer_feed(&a, raw.data, raw.len);
            if (r == 0)
                r = purge_answer_end(&a);
            if (extra) {
                assert_int_equal(r, -1);
                assert_non_null(strstr(a.why, "larger than 64 KiB"));
            } else {
                assert_int_equal(r, 1);
                assert_int_equal(a.body.len, n);
            }
            purge_answer_release(&a);
        }
    }

    /* header lines without end: cut off at PURGE_MAX_ANSWER bytes */
    purge_answer_init(&a);
    int r = purge_answer_feed(&a, "HTTP/1.1 200 OK\r\n", 17);
    static const char line[] = "X-Filler: 0123456789012345678901234567890123456789\r\n";
    while (r == 0)
        r = purge_answer_feed(&a, line, sizeof(line) - 1);
    assert_int_equal(r, -1);
    assert_non_null(strstr(a.why, "larger than 1 MiB"));
    assert_true(a.seen <= PURGE_MAX_ANSWER);
    purge_answer_release(&a);
    buf_release(&raw);
}

static void test_count(void **state)
{
    static const struct {
        const char *body;
        long long n;
    } cases[] = {
        {"{\"purged\": 3}\n", 3},
        {"{\"purged\":0}", 0},
        {"{\"purged\": 118, \"fleet\": true}\n", 118},
        {"{\"error\": \"x\"}", -1},
        {"{\"purged\": -1}", -1},
        {"", -1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct buf b = {0};
        buf_append_str(&b, cases[i].body);
        assert_int_equal(purge_count(&b), cases[i].n);
        buf_release(&b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_content_length),  cmocka_unit_test(test_chunked),
        cmocka_unit_test(test_close_delimited), cmocka_unit_test(test_no_body_statuses_and_1xx),
        cmocka_unit_test(test_not_http),        cmocka_unit_test(test_bad_framing),
        cmocka_unit_test(test_cut_short),       cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_count),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
