/* The alert webhook's URL and its blocking HTTP/1.1 client (quota/webhook.h). */
#include "quota/webhook.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "util/buf.h"
#include "util/clock.h"

/* ---- the URL ---------------------------------------------------------------------- */

static bool quota_url_host_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '.' || ch == '_';
}

int quota_url_parse(const char *s, struct quota_url *u, const char **why)
{
    memset(u, 0, sizeof(*u));
    const char *p;
    if (strncasecmp(s, "http://", 7) == 0) {
        p = s + 7;
        u->port = 80;
    } else if (strncasecmp(s, "https://", 8) == 0) {
        p = s + 8;
        u->tls = true;
        u->port = 443;
    } else {
        *why = "not an http:// or https:// URL";
        return -1;
    }
    size_t alen = strcspn(p, "/?#");
    const char *rest = p + alen, *host = p, *port = NULL;
    size_t hlen;
    if (memchr(p, '@', alen)) {
        *why = "a user or password in the URL is not supported (the secret signs each request)";
        return -1;
    }
    if (alen > 0 && p[0] == '[') {
        const char *close = memchr(p, ']', alen);
        if (!close) {
            *why = "an IPv6 address needs its closing ']'";
            return -1;
        }
        host = p + 1;
        hlen = (size_t)(close - host);
        if (close + 1 < rest) {
            if (close[1] != ':') {
                *why = "only a port may follow the IPv6 address";
                return -1;
            }
            port = close + 2;
        }
        u->ipv6 = true;
    } else {
        const char *colon = memchr(p, ':', alen);
        hlen = colon ? (size_t)(colon - p) : alen;
        if (colon)
            port = colon + 1;
        for (size_t i = 0; i < hlen; i++) {
            if (!quota_url_host_char(host[i])) {
                *why = "the host may have letters, digits, '-', '.' and '_' only";
                return -1;
            }
        }
    }
    if (hlen == 0) {
        *why = "no host";
        return -1;
    }
    if (hlen > QUOTA_URL_HOST_MAX) {
        *why = "the host name is too long";
        return -1;
    }
    memcpy(u->host, host, hlen);
    u->host[hlen] = '\0';
    unsigned char addr[16];
    if (u->ipv6 && inet_pton(AF_INET6, u->host, addr) != 1) {
        *why = "not an IPv6 address between '[' and ']'";
        return -1;
    }
    if (port) {
        size_t plen = (size_t)(rest - port);
        long v = 0;
        for (size_t i = 0; i < plen && v <= 65535; i++)
            v = port[i] >= '0' && port[i] <= '9' ? v * 10 + (port[i] - '0') : 65536;
        if (plen == 0 || v < 1 || v > 65535) {
            *why = "the port must be a number 1..65535";
            return -1;
        }
        u->port = (int)v;
        u->port_given = true;
    }
    if (strchr(rest, '#')) {
        *why = "a fragment (#...) is never sent to the server";
        return -1;
    }
    size_t tlen = strlen(rest);
    for (size_t i = 0; i < tlen; i++) {
        if (rest[i] <= 0x20 || rest[i] >= 0x7f) {
            *why = "the path and query may have visible ASCII characters only (percent-encode "
                   "the others)";
            return -1;
        }
    }
    if (tlen + 1 > QUOTA_URL_TARGET_MAX) {
        *why = "the path and query are too long";
        return -1;
    }
    /* "http://h" and "http://h?q" ask for "/" and "/?q" (RFC 9112 3.2.1). */
    size_t at = 0;
    if (rest[0] != '/')
        u->target[at++] = '/';
    memcpy(u->target + at, rest, tlen + 1);
    return 0;
}

/* ---- I/O with a deadline ----------------------------------------------------------- */

struct wh_io {
    int fd;
    SSL *ssl;
    int cancel_fd;
    int timeout_ms;
    int64_t deadline_ms; /* monotonic */
    char *why;
    size_t why_cap;
};

__attribute__((format(printf, 3, 4))) static int wh_why(char *why, size_t why_cap, const char *fmt,
                                                        ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, why_cap, fmt, ap);
    va_end(ap);
    return QUOTA_POST_FAILED;
}

#define wh_fail(io, ...) wh_why((io)->why, (io)->why_cap, __VA_ARGS__)

static int64_t wh_now_ms(void)
{
    return clock_mono_us() / 1000;
}

/* Waits for <events> on the socket: 1, or QUOTA_POST_FAILED at the
 * deadline, or QUOTA_POST_CANCELLED. */
static int wh_wait(struct wh_io *io, short events)
{
    for (;;) {
        int64_t left = io->deadline_ms - wh_now_ms();
        if (left <= 0)
            return wh_fail(io, "no answer within %d ms", io->timeout_ms);
        struct pollfd p[2] = {{io->fd, events, 0}, {io->cancel_fd, POLLIN, 0}};
        int n = poll(p, io->cancel_fd >= 0 ? 2 : 1, (int)left);
        if (n < 0 && errno != EINTR)
            return wh_fail(io, "poll: %s", strerror(errno));
        if (n <= 0)
            continue;
        if (io->cancel_fd >= 0 && p[1].revents)
            return QUOTA_POST_CANCELLED;
        if (p[0].revents)
            return 1;
    }
}

/* Connects to one of <u>'s addresses: 0, or a QUOTA_POST_* outcome. The
 * name lookup itself is getaddrinfo's and cannot be cut short. */
static int wh_connect(struct wh_io *io, const struct quota_url *u)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG};
    struct addrinfo *res = NULL;
    char port[8];
    snprintf(port, sizeof(port), "%d", u->port);
    int rc = getaddrinfo(u->host, port, &hints, &res);
    if (rc != 0)
        return wh_fail(io, "cannot resolve %s: %s", u->host,
                       rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
    int result = wh_fail(io, "no address for %s", u->host);
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd =
            socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            result = wh_fail(io, "socket: %s", strerror(errno));
            continue;
        }
        io->fd = fd;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            result = 0;
            break;
        }
        if (errno == EINPROGRESS) {
            result = wh_wait(io, POLLOUT);
            if (result != 1) { /* the deadline or a stop: no other address either */
                close(fd);
                io->fd = -1;
                break;
            }
            int err = 0;
            socklen_t elen = sizeof(err);
            if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) == 0 && err == 0) {
                result = 0;
                break;
            }
            errno = err;
        }
        result = wh_fail(io, "connect: %s", strerror(errno));
        close(fd);
        io->fd = -1;
    }
    freeaddrinfo(res);
    return result;
}

/* What an OpenSSL call that returned <r> wants before it is tried again:
 * 1 when the socket is ready for it, or a QUOTA_POST_* outcome. */
static int wh_tls_retry(struct wh_io *io, int r, const char *what)
{
    int e = SSL_get_error(io->ssl, r);
    if (e == SSL_ERROR_WANT_READ)
        return wh_wait(io, POLLIN);
    if (e == SSL_ERROR_WANT_WRITE)
        return wh_wait(io, POLLOUT);
    long v = SSL_get_verify_result(io->ssl);
    if (v != X509_V_OK)
        return wh_fail(io, "TLS: the server's certificate: %s", X509_verify_cert_error_string(v));
    unsigned long err = ERR_get_error();
    if (err) {
        char msg[256];
        ERR_error_string_n(err, msg, sizeof(msg));
        return wh_fail(io, "TLS %s: %s", what, msg);
    }
    if (e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SYSCALL)
        return wh_fail(io, "TLS %s: the connection was closed", what);
    return wh_fail(io, "TLS %s failed", what);
}

/* The TLS handshake, verifying the server's certificate against the
 * system's trust store and its name (or address) against <u>'s host. */
static int wh_tls(struct wh_io *io, const struct quota_url *u)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        return wh_fail(io, "TLS: cannot create a context");
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    int paths = SSL_CTX_set_default_verify_paths(ctx);
    io->ssl = paths == 1 ? SSL_new(ctx) : NULL;
    SSL_CTX_free(ctx); /* the SSL holds its own reference */
    if (!io->ssl)
        return wh_fail(io, "TLS: cannot load the system's trusted certificates");
    SSL_set_fd(io->ssl, io->fd);
    unsigned char addr[16];
    bool literal = u->ipv6 || inet_pton(AF_INET, u->host, addr) == 1;
    if (literal) {
        if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(io->ssl), u->host) != 1)
            return wh_fail(io, "TLS: bad address %s", u->host);
    } else if (SSL_set_tlsext_host_name(io->ssl, u->host) != 1 ||
               SSL_set1_host(io->ssl, u->host) != 1) {
        return wh_fail(io, "TLS: bad host name %s", u->host);
    }
    for (;;) {
        ERR_clear_error();
        int r = SSL_connect(io->ssl);
        if (r == 1)
            return 0;
        int w = wh_tls_retry(io, r, "handshake");
        if (w != 1)
            return w;
    }
}

static int wh_write_all(struct wh_io *io, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n;
        if (io->ssl) {
            ERR_clear_error();
            int r = SSL_write(io->ssl, data, len > INT32_MAX ? INT32_MAX : (int)len);
            if (r <= 0) {
                int w = wh_tls_retry(io, r, "write");
                if (w != 1)
                    return w;
                continue;
            }
            n = r;
        } else {
            n = send(io->fd, data, len, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                if (errno != EAGAIN && errno != EWOULDBLOCK)
                    return wh_fail(io, "send: %s", strerror(errno));
                int w = wh_wait(io, POLLOUT);
                if (w != 1)
                    return w;
                continue;
            }
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Up to <cap> bytes into <out>: how many (0 at the end of the stream), or a
 * QUOTA_POST_* outcome (a quota_webhook_read_fn over a struct wh_io). */
static ssize_t wh_read(void *ctx, char *out, size_t cap)
{
    struct wh_io *io = ctx;
    for (;;) {
        if (io->ssl) {
            ERR_clear_error();
            int r = SSL_read(io->ssl, out, (int)cap);
            if (r > 0)
                return r;
            if (SSL_get_error(io->ssl, r) == SSL_ERROR_ZERO_RETURN)
                return 0;
            int w = wh_tls_retry(io, r, "read");
            if (w != 1)
                return w;
            continue;
        }
        ssize_t n = recv(io->fd, out, cap, 0);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return wh_fail(io, "recv: %s", strerror(errno));
        int w = wh_wait(io, POLLIN);
        if (w != 1)
            return w;
    }
}

/* The status of the response head at <b>/<len>: 100..599, 0 while the
 * status line is incomplete, -1 when it is not HTTP/1.x. An interim 1xx
 * head is skipped once complete (*<skip>: its length; 0 otherwise). The
 * status line is "HTTP/1.<digit> <3 digits>" and then a space before the
 * reason, or the end of the line (RFC 9112 4: "HTTP/1.1 2000" is no 200). */
static int wh_status(const char *b, size_t len, size_t *skip)
{
    *skip = 0;
    const char *nl = memchr(b, '\n', len);
    if (!nl)
        return len >= 7 && memcmp(b, "HTTP/1.", 7) != 0 ? -1 : 0;
    if ((size_t)(nl - b) < 12 || memcmp(b, "HTTP/1.", 7) != 0 || b[7] < '0' || b[7] > '9' ||
        b[8] != ' ' || (b[12] != ' ' && b[12] != '\r' && b[12] != '\n'))
        return -1;
    int status = 0;
    for (int i = 9; i < 12; i++) {
        if (b[i] < '0' || b[i] > '9')
            return -1;
        status = status * 10 + (b[i] - '0');
    }
    if (status < 100 || status > 599)
        return -1;
    if (status >= 200)
        return status;
    /* An interim head ends at its first empty line, CRLF or a bare LF as
     * its status line may end (RFC 9112 2.2): looking for CRLF CRLF alone,
     * "100 Continue\n\n" ran on into the final head and skipped it too. */
    size_t rest = (size_t)(b + len - nl);
    const char *lf = memmem(nl, rest, "\n\n", 2), *crlf = memmem(nl, rest, "\n\r\n", 3);
    if (lf && (!crlf || lf < crlf))
        *skip = (size_t)(lf + 2 - b);
    else if (crlf)
        *skip = (size_t)(crlf + 3 - b);
    return 0;
}

int quota_webhook_read_status(quota_webhook_read_fn read_fn, void *ctx, char *why, size_t why_cap)
{
    char head[QUOTA_WEBHOOK_HEAD_MAX];
    size_t have = 0;
    for (;;) {
        size_t skip;
        int status = wh_status(head, have, &skip);
        if (status < 0)
            return wh_why(why, why_cap, "the answer is not HTTP/1.x");
        if (status > 0)
            return status;
        if (skip) {
            memmove(head, head + skip, have - skip);
            have -= skip;
            continue;
        }
        if (have == sizeof(head))
            return wh_why(why, why_cap, "the answer's head is longer than %d bytes",
                          QUOTA_WEBHOOK_HEAD_MAX);
        ssize_t n = read_fn(ctx, head + have, sizeof(head) - have);
        if (n == 0)
            return wh_why(why, why_cap, "the connection was closed before an answer");
        if (n < 0)
            return (int)n;
        have += (size_t)n;
    }
}

static int wh_exchange(struct wh_io *io, const struct quota_url *u, const char *signature,
                       const char *body, size_t len)
{
    int rc = wh_connect(io, u);
    if (rc == 0 && u->tls)
        rc = wh_tls(io, u);
    if (rc != 0)
        return rc;
    struct buf req = {0};
    buf_appendf(&req, "POST %s HTTP/1.1\r\nHost: %s%s%s", u->target, u->ipv6 ? "[" : "", u->host,
                u->ipv6 ? "]" : "");
    if (u->port != (u->tls ? 443 : 80))
        buf_appendf(&req, ":%d", u->port);
    buf_appendf(&req,
                "\r\nUser-Agent: sluice/%s\r\nContent-Type: application/json\r\n"
                "Content-Length: %zu\r\nX-Sluice-Signature: %s\r\nConnection: close\r\n\r\n",
                SLUICE_VERSION, len, signature);
    buf_append(&req, body, len);
    rc = wh_write_all(io, req.data, req.len);
    buf_release(&req);
    if (rc != 0)
        return rc;
    return quota_webhook_read_status(wh_read, io, io->why, io->why_cap);
}

int quota_webhook_post(const struct quota_url *u, const char *signature, const char *body,
                       size_t len, int timeout_ms, int cancel_fd, char *why, size_t why_cap)
{
    struct wh_io io = {
        .fd = -1,
        .cancel_fd = cancel_fd,
        .timeout_ms = timeout_ms,
        .deadline_ms = wh_now_ms() + timeout_ms,
        .why = why,
        .why_cap = why_cap,
    };
    why[0] = '\0';
    int rc = wh_exchange(&io, u, signature, body, len);
    if (io.ssl)
        SSL_free(io.ssl);
    if (io.fd >= 0)
        close(io.fd);
    ERR_clear_error();
    return rc;
}
