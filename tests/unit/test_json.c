/* The JSON string escaper (src/util/json.c): what is escaped, what passes
 * as is, and that any bytes at all come out as a string jansson accepts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <jansson.h>

#include "util/json.h"

/* <in>/<len> escaped must be exactly <want>. */
static void expect_n(const char *in, size_t len, const char *want)
{
    struct buf b = {0};
    buf_append(&b, "x", 1); /* appends: what was there stays */
    json_str_append_n(&b, in, len);
    buf_append(&b, "", 1);
    assert_string_equal(b.data + 1, want);
    assert_int_equal(b.data[0], 'x');
    buf_release(&b);
}

static void expect(const char *in, const char *want)
{
    expect_n(in, strlen(in), want);
    struct buf b = {0};
    json_str_append(&b, in);
    assert_int_equal(b.len, strlen(want));
    if (b.len)
        assert_memory_equal(b.data, want, b.len);
    buf_release(&b);
}

/* The value jansson reads back from "<escaped>"; the caller frees it. */
static char *parse_back(const char *in, size_t len, size_t *out_len)
{
    struct buf b = {0};
    buf_append(&b, "\"", 1);
    json_str_append_n(&b, in, len);
    buf_append(&b, "\"", 1);
    json_error_t err;
    json_t *j = json_loadb(b.data, b.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    if (!j)
        fail_msg("jansson refused %.*s: %s", (int)b.len, b.data, err.text);
    assert_true(json_is_string(j));
    *out_len = json_string_length(j);
    char *s = malloc(*out_len + 1);
    memcpy(s, json_string_value(j), *out_len + 1);
    json_decref(j);
    buf_release(&b);
    return s;
}

static void test_plain_text_unchanged(void **state)
{
    expect("", "");
    expect("hello, world", "hello, world");
    expect("/api/*/v1?x=1&y=2 {}[]:,'", "/api/*/v1?x=1&y=2 {}[]:,'");
    expect("~", "~");
}

static void test_quotes_and_backslashes(void **state)
{
    expect("\"", "\\\"");
    expect("\\", "\\\\");
    expect("/origin/\"odd\\key", "/origin/\\\"odd\\\\key");
    expect("/", "/"); /* may be escaped in JSON; need not be */
}

static void test_control_bytes_and_del(void **state)
{
    expect("\t", "\\u0009");
    expect("a\nb\r", "a\\u000ab\\u000d");
    expect("\x01\x1f", "\\u0001\\u001f");
    expect("\x7f", "\\u007f");
    expect_n("a\0b", 3, "a\\u0000b");
    expect(" ", " "); /* 0x20 is the first plain byte */
}

static void test_valid_utf8_as_is(void **state)
{
    expect("caf\xc3\xa9", "caf\xc3\xa9");             /* U+00E9 */
    expect("\xc2\x80", "\xc2\x80");                   /* U+0080, first of 2 bytes */
    expect("\xdf\xbf", "\xdf\xbf");                   /* U+07FF */
    expect("\xe0\xa0\x80", "\xe0\xa0\x80");           /* U+0800 */
    expect("\xe2\x82\xac 5", "\xe2\x82\xac 5");       /* U+20AC */
    expect("\xed\x9f\xbf", "\xed\x9f\xbf");           /* U+D7FF, below the surrogates */
    expect("\xee\x80\x80", "\xee\x80\x80");           /* U+E000, above them */
    expect("\xef\xbf\xbf", "\xef\xbf\xbf");           /* U+FFFF */
    expect("\xf0\x90\x80\x80", "\xf0\x90\x80\x80");   /* U+10000 */
    expect("\xf0\x9f\x98\x80!", "\xf0\x9f\x98\x80!"); /* U+1F600 */
    expect("\xf4\x8f\xbf\xbf", "\xf4\x8f\xbf\xbf");   /* U+10FFFF */
    expect("\xe2\x80\xa8", "\xe2\x80\xa8");           /* U+2028: valid JSON as is */
    expect("\"\xc3\xa9\"", "\\\"\xc3\xa9\\\"");
}

static void test_invalid_utf8_replaced(void **state)
{
    expect("\x80", "\\ufffd"); /* a lone continuation byte */
    expect("a\xbf"
           "b",
           "a\\ufffdb");
    expect("\xc3", "\\ufffd");                       /* cut at the end */
    expect("\xc3(", "\\ufffd(");                     /* cut by ASCII */
    expect("\xe2\x82", "\\ufffd\\ufffd");            /* each byte of a cut sequence */
    expect("\xc0\xaf", "\\ufffd\\ufffd");            /* overlong '/' */
    expect("\xc1\xbf", "\\ufffd\\ufffd");            /* overlong */
    expect("\xe0\x80\xaf", "\\ufffd\\ufffd\\ufffd"); /* overlong, 3 bytes */
    expect("\xf0\x80\x80\xaf", "\\ufffd\\ufffd\\ufffd\\ufffd");
    expect("\xed\xa0\x80", "\\ufffd\\ufffd\\ufffd");            /* U+D800, a surrogate */
    expect("\xf4\x90\x80\x80", "\\ufffd\\ufffd\\ufffd\\ufffd"); /* above U+10FFFF */
    expect("\xf5\x80\x80\x80", "\\ufffd\\ufffd\\ufffd\\ufffd");
    expect("\xff\xfe", "\\ufffd\\ufffd");
    expect("\xe9t\xe9", "\\ufffdt\\ufffd"); /* Latin-1 */
}

/* Every single byte, then random byte strings: jansson must read back a
 * string, equal to the input whenever the input was valid UTF-8. */
static void test_any_bytes_make_valid_json(void **state)
{
    for (int c = 0; c < 256; c++) {
        char in[1] = {(char)c};
        size_t n;
        char *back = parse_back(in, 1, &n);
        if (c < 0x80) {
            assert_int_equal(n, 1);
            assert_int_equal((unsigned char)back[0], c);
        } else {
            assert_string_equal(back, "\xef\xbf\xbd"); /* U+FFFD */
        }
        free(back);
    }
    uint64_t seed = UINT64_C(0x2545f4914f6cdd1d);
    for (int round = 0; round < 3000; round++) {
        char in[64];
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        size_t len = (size_t)(seed % sizeof(in));
        for (size_t i = 0; i < len; i++) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            /* mostly high bytes, so that some valid sequences turn up */
            in[i] = (char)(seed % 5 ? 0x80 | (seed >> 8 & 0x7f) : seed >> 8 & 0x7f);
        }
        size_t n;
        char *back = parse_back(in, len, &n);
        /* jansson validates UTF-8 too: if it takes the input (with nothing
         * in it that JSON would read as an escape or refuse), the escaper
         * must have left it as it was */
        bool special = false;
        for (size_t i = 0; i < len; i++)
            special |= in[i] == '"' || in[i] == '\\' || (unsigned char)in[i] < 0x20;
        if (special) {
            free(back);
            continue;
        }
        json_error_t err;
        char quoted[70];
        quoted[0] = '"';
        memcpy(quoted + 1, in, len);
        quoted[len + 1] = '"';
        json_t *raw = json_loadb(quoted, len + 2, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
        if (raw) {
            assert_int_equal(n, json_string_length(raw));
            assert_memory_equal(back, json_string_value(raw), n);
            json_decref(raw);
        }
        free(back);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_text_unchanged),
        cmocka_unit_test(test_quotes_and_backslashes),
        cmocka_unit_test(test_control_bytes_and_del),
        cmocka_unit_test(test_valid_utf8_as_is),
        cmocka_unit_test(test_invalid_utf8_replaced),
        cmocka_unit_test(test_any_bytes_make_valid_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
