#ifndef SLUICE_QUOTA_WEBHOOK_H
#define SLUICE_QUOTA_WEBHOOK_H
/* The alert webhook's HTTP client (SPEC 6.3): its URL, checked when the
 * config loads, and one blocking POST over HTTP/1.1, plain or TLS (the
 * server's certificate verified against the system's trust store, its name
 * against the URL's host). It runs on the alert delivery thread only, never
 * on a worker's loop, so blocking is fine; every wait is bounded by the
 * attempt's deadline and can be cut short through a file descriptor (a
 * stopping gateway does not wait for a slow receiver). */

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* A DNS name is at most 253 characters (RFC 1035); an IPv6 literal is
 * shorter. */
#define QUOTA_URL_HOST_MAX 253
/* Path and query: a webhook URL is configured, not user input, and longer
 * than this is a mistake. */
#define QUOTA_URL_TARGET_MAX 2048
/* One attempt (connect, TLS handshake, request, status line) at most this
 * long: a receiver slower than that counts as failed and is retried. */
#define QUOTA_WEBHOOK_TIMEOUT_MS 10000

struct quota_url {
    bool tls;                              /* https */
    bool ipv6;                             /* host is an IPv6 literal (bracketed in Host) */
    char host[QUOTA_URL_HOST_MAX + 1];     /* without brackets */
    int port;                              /* 80 or 443 when the URL has none */
    bool port_given;                       /* the URL names its port (then so does Host) */
    char target[QUOTA_URL_TARGET_MAX + 1]; /* path and query; "/" when the URL has no path */
};

/* Reads the http:// or https:// URL <s> into <u>: a host (a DNS name, an
 * IPv4 address or a bracketed IPv6 address), an optional port 1..65535, an
 * optional path and query of visible ASCII characters. No user:password,
 * no fragment. 0, or -1 with *<why> (a static message). */
int quota_url_parse(const char *s, struct quota_url *u, const char **why);

/* The outcomes of quota_webhook_post other than a status code. */
enum {
    QUOTA_POST_FAILED = -1,    /* no status: connect error, timeout, TLS, garbage */
    QUOTA_POST_CANCELLED = -2, /* <cancel_fd> became readable */
};

/* POSTs <body>/<len> to <u> with Content-Type: application/json and
 * X-Sluice-Signature: <signature>, then reads the response's status line.
 * Returns the status (100..599; interim 1xx responses skipped), or
 * QUOTA_POST_FAILED with a reason in <why> (<why_cap> bytes), or
 * QUOTA_POST_CANCELLED. Gives up after <timeout_ms> in all. <cancel_fd>:
 * -1 or a descriptor whose readability cancels the attempt (it is polled,
 * never read). */
int quota_webhook_post(const struct quota_url *u, const char *signature, const char *body,
                       size_t len, int timeout_ms, int cancel_fd, char *why, size_t why_cap);

/* The response is read up to its status line (past interim 1xx heads);
 * a head longer than this is not a webhook receiver's answer. */
#define QUOTA_WEBHOOK_HEAD_MAX 8192

/* Where quota_webhook_read_status gets the response: up to <cap> bytes
 * into <out>; returns how many (0 at the end of the stream), or a
 * QUOTA_POST_* outcome (then with its reason in the <why> the reader was
 * given). */
typedef ssize_t (*quota_webhook_read_fn)(void *ctx, char *out, size_t cap);

/* How quota_webhook_post reads the answer, without a socket (for the tests
 * and the fuzz harness): the status of the first head that is not an
 * interim 1xx (200..599), or QUOTA_POST_FAILED with a reason in <why>
 * (<why_cap> bytes), or the outcome <read_fn> returned. The receiver is
 * untrusted: at most QUOTA_WEBHOOK_HEAD_MAX bytes are held, and a head
 * longer than that fails. */
int quota_webhook_read_status(quota_webhook_read_fn read_fn, void *ctx, char *why, size_t why_cap);

#endif
