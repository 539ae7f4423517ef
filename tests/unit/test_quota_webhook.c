/* The alert webhook's URL and HTTP client (src/quota/webhook.c) against a
 * real server on loopback (http_receiver.h): what it sends, how it reads
 * the answer (interim 1xx, garbage, a close, silence), its deadline and its
 * cancellation; https with a certificate made here and trusted through
 * SSL_CERT_FILE, and refused when the name does not match or nobody
 * trusts it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <cmocka.h>

#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "http_receiver.h"
#include "quota/webhook.h"
#include "support.h"
#include "util/clock.h"

/* ---- URLs ------------------------------------------------------------------------- */

static void expect_url(const char *s, bool tls, const char *host, int port, const char *target)
{
    struct quota_url u;
    const char *why = NULL;
    if (quota_url_parse(s, &u, &why) != 0)
        fail_msg("%s: %s", s, why);
    assert_int_equal(u.tls, tls);
    assert_string_equal(u.host, host);
    assert_int_equal(u.port, port);
    assert_string_equal(u.target, target);
}

static void expect_bad_url(const char *s, const char *want)
{
    struct quota_url u;
    const char *why = NULL;
    if (quota_url_parse(s, &u, &why) == 0)
        fail_msg("accepted %s", s);
    if (!strstr(why, want))
        fail_msg("%s: '%s' does not say '%s'", s, why, want);
}

static void test_url_parse(void **state)
{
    expect_url("http://127.0.0.1:9999/alerts", false, "127.0.0.1", 9999, "/alerts");
    expect_url("https://hooks.example.com/a/b?x=1&y=2", true, "hooks.example.com", 443,
               "/a/b?x=1&y=2");
    expect_url("HTTP://Example.COM", false, "Example.COM", 80, "/");
    expect_url("http://h?q=1", false, "h", 80, "/?q=1");
    expect_url("https://[::1]:8443/x", true, "::1", 8443, "/x");
    expect_url("http://my_host.internal:65535/", false, "my_host.internal", 65535, "/");
    struct quota_url u;
    const char *why;
    assert_int_equal(quota_url_parse("https://[2001:db8::1]/", &u, &why), 0);
    assert_true(u.ipv6);
    assert_false(u.port_given);

    expect_bad_url("ftp://h/", "http:// or https://");
    expect_bad_url("127.0.0.1:9999/alerts", "http:// or https://");
    expect_bad_url("http://", "no host");
    expect_bad_url("http:///path", "no host");
    expect_bad_url("http://:80/", "no host");
    expect_bad_url("http://h:/", "port");
    expect_bad_url("http://h:0/", "port");
    expect_bad_url("http://h:65536/", "port");
    expect_bad_url("http://h:8o/", "port");
    expect_bad_url("http://h:99999999999999999999/", "port");
    expect_bad_url("http://user:pw@h/", "user or password");
    expect_bad_url("http://h/a#frag", "fragment");
    expect_bad_url("http://h/a b", "visible ASCII");
    expect_bad_url("http://h/a\tb", "visible ASCII");
    expect_bad_url("http://h/\xc3\xa9", "visible ASCII");
    expect_bad_url("http://h st/", "host may have");
    expect_bad_url("http://h%41/", "host may have");
    expect_bad_url("http://[::1/", "closing ']'");
    expect_bad_url("http://[::1]x/", "only a port");
    expect_bad_url("http://[nope]/", "IPv6");
    char long_host[300];
    memset(long_host, 'a', sizeof(long_host));
    memcpy(long_host, "http://", 7);
    long_host[sizeof(long_host) - 1] = '\0';
    expect_bad_url(long_host, "too long");
    char long_path[QUOTA_URL_TARGET_MAX + 40];
    int n = snprintf(long_path, sizeof(long_path), "http://h/");
    memset(long_path + n, 'p', sizeof(long_path) - (size_t)n - 1);
    long_path[sizeof(long_path) - 1] = '\0';
    expect_bad_url(long_path, "too long");
}

/* ---- reading the answer, without a socket ------------------------------------------ */

/* A stream for quota_webhook_read_status: <len> bytes of <text> repeated
 * (up to <total> bytes), handed out <piece> at a time (0: as much as asked). */
struct stream {
    const char *text;
    size_t len, total, at, piece, max_cap;
    int reads;
};

static ssize_t stream_read(void *ctx, char *out, size_t cap)
{
    struct stream *s = ctx;
    s->reads++;
    if (cap > s->max_cap)
        s->max_cap = cap;
    size_t n = s->total - s->at;
    if (n > cap)
        n = cap;
    if (s->piece && n > s->piece)
        n = s->piece;
    for (size_t i = 0; i < n; i++)
        out[i] = s->text[(s->at + i) % s->len];
    s->at += n;
    return (ssize_t)n;
}

/* The outcome of reading <text> <piece> bytes at a time (every piece size
 * from 1 to 7 and all at once give the same); the reason in <why>. */
static int read_status(const char *text, char *why, size_t cap)
{
    int first = 0;
    for (size_t piece = 0; piece < 8; piece++) {
        struct stream s = {text, strlen(text), strlen(text), 0, piece, 0, 0};
        why[0] = '\0';
        int status = quota_webhook_read_status(stream_read, &s, why, cap);
        if (piece == 0)
            first = status;
        else if (status != first)
            fail_msg("'%s': %d in pieces of %zu, %d at once", text, status, piece, first);
    }
    return first;
}

static void test_read_status(void **state)
{
    char why[256];
    assert_int_equal(read_status("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", why, 256), 200);
    assert_int_equal(read_status("HTTP/1.0 503 Busy\r\n", why, 256), 503);
    assert_int_equal(read_status("HTTP/1.1 204\n", why, 256), 204); /* no reason, a bare LF */
    assert_int_equal(read_status("HTTP/1.1 599 x\r\n", why, 256), 599);
    assert_int_equal(read_status("HTTP/1.1 201\r\n", why, 256), 201);
    /* The status line is enough: the rest is never waited for. */
    assert_int_equal(read_status("HTTP/1.1 202 Accepted\r\nX-Partial: ", why, 256), 202);
    /* Interim answers are skipped, however many. */
    assert_int_equal(read_status("HTTP/1.1 100 Continue\r\n\r\n"
                                 "HTTP/1.1 102 Processing\r\nX-A: 1\r\n\r\n"
                                 "HTTP/1.1 201 Created\r\n\r\n",
                                 why, 256),
                     201);
    /* An interim head may end in bare LFs too: the final head is not skipped with it. */
    assert_int_equal(read_status("HTTP/1.1 100 Continue\n\nHTTP/1.1 200 OK\r\n\r\n", why, 256),
                     200);
    assert_int_equal(
        read_status("HTTP/1.1 103 Early\nLink: </a>\n\r\nHTTP/1.1 500 x\r\n\r\n", why, 256), 500);

    static const char *const garbage[] = {
        "hello, this is not HTTP\r\n",
        "HTTP/2 200\r\n",
        "HTTP/1.1 20\r\n",
        "HTTP/1.1 2x0 OK\r\n",
        "HTTP/1.1 099 x\r\n",
        "HTTP/1.1 600 x\r\n",
        "HTTP/1.1  200 OK\r\n",
        "\r\nHTTP/1.1 200 OK\r\n",
        "HTTP/1.1 100 Continue\r\n\r\nnope\n",
        /* a status code is three digits; the version's minor one digit */
        "HTTP/1.1 2000 OK\r\n",
        "HTTP/1.1 2001\r\n",
        "HTTP/1.1 200OK\r\n",
        "HTTP/1.x 200 OK\r\n",
    };
    for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++) {
        assert_int_equal(read_status(garbage[i], why, sizeof(why)), QUOTA_POST_FAILED);
        if (!strstr(why, "not HTTP/1.x"))
            fail_msg("'%s': %s", garbage[i], why);
    }
    /* Not HTTP is known from the first 7 bytes, without waiting for a line. */
    assert_int_equal(read_status("HTTX/1.", why, sizeof(why)), QUOTA_POST_FAILED);
    assert_non_null(strstr(why, "not HTTP/1.x"));

    static const char *const cut[] = {"", "HTTP/1.1 200", "HTTP/1.1 100 Continue\r\n\r\n",
                                      "HTTP/1.1 100 Continue\r\nX: 1\r\n"};
    for (size_t i = 0; i < sizeof(cut) / sizeof(cut[0]); i++) {
        assert_int_equal(read_status(cut[i], why, sizeof(why)), QUOTA_POST_FAILED);
        assert_string_equal(why, "the connection was closed before an answer");
    }
}

/* A head of megabytes is refused after QUOTA_WEBHOOK_HEAD_MAX bytes, not
 * read to its end; so is an endless status line. */
static void test_read_status_bounded(void **state)
{
    static const char *const endless[] = {
        "HTTP/1.1 100 Continue\r\nX-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
        "HTTP/1.1 200 OK but the line never ends ",
    };
    for (size_t i = 0; i < 2; i++) {
        for (size_t piece = 0; piece < 1000; piece += 333) {
            struct stream s = {endless[i], strlen(endless[i]), 4u << 20, 0, piece, 0, 0};
            char why[256];
            assert_int_equal(quota_webhook_read_status(stream_read, &s, why, sizeof(why)),
                             QUOTA_POST_FAILED);
            assert_string_equal(why, "the answer's head is longer than 8192 bytes");
            assert_int_equal(s.at, QUOTA_WEBHOOK_HEAD_MAX);
            assert_true(s.max_cap <= QUOTA_WEBHOOK_HEAD_MAX);
        }
    }
    /* A stream of complete interim heads is read on, each one forgotten. */
    const char *one = "HTTP/1.1 100 Continue\r\n\r\n";
    struct stream s = {one, strlen(one), strlen(one) * 10000, 0, 0, 0, 0};
    char why[256];
    assert_int_equal(quota_webhook_read_status(stream_read, &s, why, sizeof(why)),
                     QUOTA_POST_FAILED);
    assert_string_equal(why, "the connection was closed before an answer");
    assert_int_equal(s.at, s.total);
}

/* What the reader says (a timeout, a cancellation) is the outcome, its
 * reason kept. */
static ssize_t failing_read(void *ctx, char *out, size_t cap)
{
    int *calls = ctx;
    if ((*calls)++ == 0) {
        memcpy(out, "HTTP/1.1 1", 10);
        return 10;
    }
    return QUOTA_POST_CANCELLED;
}

static void test_read_status_reader_fails(void **state)
{
    int calls = 0;
    char why[64] = "";
    assert_int_equal(quota_webhook_read_status(failing_read, &calls, why, sizeof(why)),
                     QUOTA_POST_CANCELLED);
    assert_int_equal(calls, 2);
    assert_string_equal(why, "");
}

/* ---- plain HTTP ----------------------------------------------------------------------- */

static const char BODY[] = "{\"type\": \"quota.threshold\", \"threshold\": 80}";

static int post(const char *url, int timeout_ms, int cancel_fd, char *why, size_t cap)
{
    struct quota_url u;
    const char *bad;
    if (quota_url_parse(url, &u, &bad) != 0)
        fail_msg("%s: %s", url, bad);
    return quota_webhook_post(&u, "t=1,v1=abc", BODY, strlen(BODY), timeout_ms, cancel_fd, why,
                              cap);
}

static void test_post_sends_the_request(void **state)
{
    struct receiver *r = rcv_start(0, 200);
    assert_non_null(r);
    char url[128], why[256], v[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/hooks/sluice?src=gw", r->port);
    assert_int_equal(post(url, 2000, -1, why, sizeof(why)), 200);
    assert_int_equal(rcv_wait(r, 1), 1);
    assert_true(strncmp(r->reqs[0].head, "POST /hooks/sluice?src=gw HTTP/1.1\r\n", 36) == 0);
    snprintf(url, sizeof(url), "127.0.0.1:%d", r->port);
    rcv_header(r, 0, "Host", v, sizeof(v));
    assert_string_equal(v, url);
    rcv_header(r, 0, "Content-Type", v, sizeof(v));
    assert_string_equal(v, "application/json");
    rcv_header(r, 0, "X-Sluice-Signature", v, sizeof(v));
    assert_string_equal(v, "t=1,v1=abc");
    rcv_header(r, 0, "Content-Length", v, sizeof(v));
    assert_int_equal(strtol(v, NULL, 10), strlen(BODY));
    assert_string_equal(r->reqs[0].body, BODY);
    rcv_stop(r);
}

static void test_post_statuses(void **state)
{
    char url[128], why[256];
    struct receiver *r = rcv_start(0, 503);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", r->port);
    assert_int_equal(post(url, 2000, -1, why, sizeof(why)), 503);

    rcv_set_status(r, 204);
    assert_int_equal(post(url, 2000, -1, why, sizeof(why)), 204);

    /* An interim answer is not the answer. */
    r->raw = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n";
    assert_int_equal(post(url, 2000, -1, why, sizeof(why)), 202);

    r->raw = "hello, this is not HTTP\r\n";
    assert_int_equal(post(url, 2000, -1, why, sizeof(why)), QUOTA_POST_FAILED);
    assert_non_null(strstr(why, "not HTTP/1.x"));

    r->raw = NULL;
    rcv_set_status(r, RCV_CLOSE);
    assert_int_equal(post(url, 2000, -1, why, sizeof(why)), QUOTA_POST_FAILED);
    assert_non_null(strstr(why, "closed before an answer"));
    rcv_stop(r);
}

static void test_post_connect_refused(void **state)
{
    char url[128], why[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", test_free_port());
    assert_int_equal(post(url, 2000, -1, why, sizeof(why)), QUOTA_POST_FAILED);
    assert_string_equal(why, "connect: Connection refused");
    assert_int_equal(post("http://no-such-host.invalid/", 2000, -1, why, sizeof(why)),
                     QUOTA_POST_FAILED);
    assert_non_null(strstr(why, "cannot resolve no-such-host.invalid"));
}

static void test_post_deadline_and_cancel(void **state)
{
    char url[128], why[256];
    struct receiver *r = rcv_start(0, RCV_HANG);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", r->port);
    int64_t t0 = clock_mono_us();
    assert_int_equal(post(url, 300, -1, why, sizeof(why)), QUOTA_POST_FAILED);
    int64_t took = clock_mono_us() - t0;
    assert_string_equal(why, "no answer within 300 ms");
    assert_true(took >= 290000 && took < 2000000);

    /* A readable cancel descriptor ends the wait at once. */
    int fd = eventfd(1, EFD_CLOEXEC);
    t0 = clock_mono_us();
    assert_int_equal(post(url, 10000, fd, why, sizeof(why)), QUOTA_POST_CANCELLED);
    assert_true(clock_mono_us() - t0 < 1000000);
    close(fd);
    rcv_stop(r);
}

/* ---- https ------------------------------------------------------------------------------ */

struct tls_fixture {
    char dir[64];
    char trusted[128]; /* PEM of the certificate the client trusts */
    EVP_PKEY *key;
    X509 *cert;
    SSL_CTX *server;
};

/* A self-signed certificate for the subjectAltName <san>, trusted by the
 * client (SSL_CERT_FILE) when <trusted>. */
static void tls_setup(struct tls_fixture *f, const char *san, bool trusted)
{
    snprintf(f->dir, sizeof(f->dir), "/tmp/sluice-tls-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    f->key = EVP_EC_gen("P-256");
    assert_non_null(f->key);
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, f->key);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"sluice test", -1,
                               -1, 0);
    X509_set_issuer_name(x, name);
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, san);
    assert_non_null(ext);
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    assert_true(X509_sign(x, f->key, EVP_sha256()) > 0);
    f->cert = x;

    /* The client trusts either this certificate or one of another key. */
    snprintf(f->trusted, sizeof(f->trusted), "%s/trusted.pem", f->dir);
    FILE *fp = fopen(f->trusted, "w");
    assert_non_null(fp);
    if (trusted) {
        PEM_write_X509(fp, x);
    } else {
        EVP_PKEY *other = EVP_EC_gen("P-256");
        X509 *y = X509_dup(x);
        X509_set_pubkey(y, other);
        X509_sign(y, other, EVP_sha256());
        PEM_write_X509(fp, y);
        X509_free(y);
        EVP_PKEY_free(other);
    }
    fclose(fp);
    setenv("SSL_CERT_FILE", f->trusted, 1);
    setenv("SSL_CERT_DIR", f->dir, 1); /* nothing else: the system's CAs do not count here */

    f->server = SSL_CTX_new(TLS_server_method());
    assert_int_equal(SSL_CTX_use_certificate(f->server, x), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(f->server, f->key), 1);
}

static void tls_teardown(struct tls_fixture *f)
{
    SSL_CTX_free(f->server);
    X509_free(f->cert);
    EVP_PKEY_free(f->key);
    unsetenv("SSL_CERT_FILE");
    unsetenv("SSL_CERT_DIR");
    test_rm_rf(f->dir);
}

static void test_https_verified(void **state)
{
    struct tls_fixture f;
    tls_setup(&f, "DNS:localhost,IP:127.0.0.1", true);
    struct receiver *r = rcv_start_tls(0, 200, f.server);
    char url[128], why[256];
    snprintf(url, sizeof(url), "https://localhost:%d/tls", r->port);
    int status = post(url, 5000, -1, why, sizeof(why));
    if (status != 200)
        fail_msg("%d: %s", status, why);
    snprintf(url, sizeof(url), "https://127.0.0.1:%d/tls", r->port);
    status = post(url, 5000, -1, why, sizeof(why));
    if (status != 200)
        fail_msg("%d: %s", status, why);
    assert_int_equal(rcv_wait(r, 2), 2);
    assert_string_equal(r->reqs[1].body, BODY);
    rcv_stop(r);
    tls_teardown(&f);
}

static void test_https_wrong_name(void **state)
{
    struct tls_fixture f;
    tls_setup(&f, "DNS:hooks.example.com", true);
    struct receiver *r = rcv_start_tls(0, 200, f.server);
    char url[128], why[256];
    snprintf(url, sizeof(url), "https://localhost:%d/", r->port);
    assert_int_equal(post(url, 5000, -1, why, sizeof(why)), QUOTA_POST_FAILED);
    assert_non_null(strstr(why, "certificate"));
    snprintf(url, sizeof(url), "https://127.0.0.1:%d/", r->port);
    assert_int_equal(post(url, 5000, -1, why, sizeof(why)), QUOTA_POST_FAILED);
    assert_non_null(strstr(why, "certificate"));
    assert_int_equal(rcv_count(r), 0);
    rcv_stop(r);
    tls_teardown(&f);
}

static void test_https_untrusted(void **state)
{
    struct tls_fixture f;
    tls_setup(&f, "DNS:localhost,IP:127.0.0.1", false);
    struct receiver *r = rcv_start_tls(0, 200, f.server);
    char url[128], why[256];
    snprintf(url, sizeof(url), "https://127.0.0.1:%d/", r->port);
    assert_int_equal(post(url, 5000, -1, why, sizeof(why)), QUOTA_POST_FAILED);
    assert_non_null(strstr(why, "certificate"));
    assert_int_equal(rcv_count(r), 0);
    /* Plain HTTP to a TLS server: garbage, not a status. */
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", r->port);
    assert_int_equal(post(url, 2000, -1, why, sizeof(why)), QUOTA_POST_FAILED);
    rcv_stop(r);
    tls_teardown(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_parse),
        cmocka_unit_test(test_read_status),
        cmocka_unit_test(test_read_status_bounded),
        cmocka_unit_test(test_read_status_reader_fails),
        cmocka_unit_test(test_post_sends_the_request),
        cmocka_unit_test(test_post_statuses),
        cmocka_unit_test(test_post_connect_refused),
        cmocka_unit_test(test_post_deadline_and_cancel),
        cmocka_unit_test(test_https_verified),
        cmocka_unit_test(test_https_wrong_name),
        cmocka_unit_test(test_https_untrusted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
