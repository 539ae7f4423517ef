#ifndef SLUICE_TEST_HTTP_RECEIVER_H
#define SLUICE_TEST_HTTP_RECEIVER_H
/* A real HTTP/1.1 server for tests of the alert webhook: a thread that
 * listens on 127.0.0.1 (a port of its choosing, or a given one), reads
 * each request (head and Content-Length body), keeps a copy, and answers
 * with rcv->status, or never (RCV_HANG: holds the connection until the
 * receiver stops), or by closing at once (RCV_CLOSE), or with a raw text
 * (rcv->raw). With rcv_tls(), it speaks TLS with the given certificate.
 *
 * Header-only: each test is one executable. */

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ssl.h>

#define RCV_MAX_REQS 32
#define RCV_HANG 0
#define RCV_CLOSE -1

struct rcv_req {
    char head[4096];
    char body[16384];
    size_t body_len;
};

struct receiver {
    int fd, port;
    pthread_t thread;
    pthread_mutex_t lock;
    bool stop;
    int status;      /* the answer: 200, 500, RCV_HANG, RCV_CLOSE */
    const char *raw; /* when set, sent as the whole answer instead */
    SSL_CTX *tls;    /* NULL: plain HTTP */
    int n_reqs;      /* requests read whole */
    int n_conns;     /* connections accepted */
    struct rcv_req reqs[RCV_MAX_REQS];
};

static inline bool rcv_stopping(struct receiver *r)
{
    pthread_mutex_lock(&r->lock);
    bool stop = r->stop;
    pthread_mutex_unlock(&r->lock);
    return stop;
}

/* Reads into <buf> up to <cap> bytes, waiting at most 5 s. */
static inline ssize_t rcv_read(struct receiver *r, int fd, SSL *ssl, char *buf, size_t cap)
{
    struct pollfd p = {fd, POLLIN, 0};
    if (ssl && SSL_pending(ssl) > 0)
        return SSL_read(ssl, buf, (int)cap);
    if (poll(&p, 1, 5000) <= 0)
        return -1;
    return ssl ? SSL_read(ssl, buf, (int)cap) : recv(fd, buf, cap, 0);
}

static inline void rcv_write(int fd, SSL *ssl, const char *s, size_t len)
{
    if (ssl)
        SSL_write(ssl, s, (int)len);
    else if (send(fd, s, len, MSG_NOSIGNAL) < 0)
        return;
}

static inline void rcv_serve(struct receiver *r, int fd)
{
    SSL *ssl = NULL;
    if (r->tls) {
        ssl = SSL_new(r->tls);
        SSL_set_fd(ssl, fd);
        if (SSL_accept(ssl) != 1) {
            SSL_free(ssl);
            return;
        }
    }
    char buf[sizeof(((struct rcv_req *)0)->head) + sizeof(((struct rcv_req *)0)->body)];
    size_t have = 0;
    char *end = NULL;
    while (!end && have < sizeof(buf) - 1) {
        ssize_t n = rcv_read(r, fd, ssl, buf + have, sizeof(buf) - 1 - have);
        if (n <= 0)
            goto out;
        have += (size_t)n;
        buf[have] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    if (!end)
        goto out;
    size_t head_len = (size_t)(end + 4 - buf);
    const char *cl = strcasestr(buf, "\r\ncontent-length:");
    size_t want = cl ? strtoul(cl + 17, NULL, 10) : 0;
    while (have < head_len + want && have < sizeof(buf) - 1) {
        ssize_t n = rcv_read(r, fd, ssl, buf + have, sizeof(buf) - 1 - have);
        if (n <= 0)
            goto out;
        have += (size_t)n;
    }
    pthread_mutex_lock(&r->lock);
    if (r->n_reqs < RCV_MAX_REQS) {
        struct rcv_req *q = &r->reqs[r->n_reqs];
        size_t hl = head_len < sizeof(q->head) ? head_len : sizeof(q->head) - 1;
        memcpy(q->head, buf, hl);
        q->head[hl] = '\0';
        q->body_len = want < sizeof(q->body) - 1 ? want : sizeof(q->body) - 1;
        memcpy(q->body, buf + head_len, q->body_len);
        q->body[q->body_len] = '\0';
        r->n_reqs++;
    }
    int status = r->status;
    const char *raw = r->raw;
    pthread_mutex_unlock(&r->lock);
    if (raw) {
        rcv_write(fd, ssl, raw, strlen(raw));
    } else if (status == RCV_HANG) {
        while (!rcv_stopping(r)) {
            struct timespec ts = {0, 5000000};
            nanosleep(&ts, NULL);
        }
    } else if (status > 0) {
        char answer[128];
        int n = snprintf(answer, sizeof(answer),
                         "HTTP/1.1 %d Whatever\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                         status);
        rcv_write(fd, ssl, answer, (size_t)n);
    }
out:
    if (ssl) {
        SSL_shutdown(ssl);
        SSL_free(ssl);
    }
}

static inline void *rcv_main(void *arg)
{
    struct receiver *r = arg;
    while (!rcv_stopping(r)) {
        struct pollfd p = {r->fd, POLLIN, 0};
        if (poll(&p, 1, 20) <= 0)
            continue;
        int fd = accept(r->fd, NULL, NULL);
        if (fd < 0)
            continue;
        pthread_mutex_lock(&r->lock);
        r->n_conns++;
        pthread_mutex_unlock(&r->lock);
        rcv_serve(r, fd);
        close(fd);
    }
    return NULL;
}

/* Starts a receiver on 127.0.0.1:<port> (0: any) answering <status>;
 * NULL when the port cannot be bound. */
static inline struct receiver *rcv_start_tls(int port, int status, SSL_CTX *tls)
{
    struct receiver *r = calloc(1, sizeof(*r));
    pthread_mutex_init(&r->lock, NULL);
    r->status = status;
    r->tls = tls;
    r->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(r->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (bind(r->fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(r->fd, 16) != 0 ||
        getsockname(r->fd, (struct sockaddr *)&a, &len) != 0) {
        close(r->fd);
        pthread_mutex_destroy(&r->lock);
        free(r);
        return NULL;
    }
    r->port = ntohs(a.sin_port);
    pthread_create(&r->thread, NULL, rcv_main, r);
    return r;
}

static inline struct receiver *rcv_start(int port, int status)
{
    return rcv_start_tls(port, status, NULL);
}

static inline void rcv_set_status(struct receiver *r, int status)
{
    pthread_mutex_lock(&r->lock);
    r->status = status;
    pthread_mutex_unlock(&r->lock);
}

static inline int rcv_count(struct receiver *r)
{
    pthread_mutex_lock(&r->lock);
    int n = r->n_reqs;
    pthread_mutex_unlock(&r->lock);
    return n;
}

/* Waits up to 5 s for <n> requests; the count seen. */
static inline int rcv_wait(struct receiver *r, int n)
{
    for (int i = 0; i < 1000 && rcv_count(r) < n; i++) {
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    return rcv_count(r);
}

/* The value of header <name> in request <i> into <out> ("" when absent). */
static inline void rcv_header(struct receiver *r, int i, const char *name, char *out, size_t cap)
{
    out[0] = '\0';
    char want[128];
    snprintf(want, sizeof(want), "\r\n%s:", name);
    pthread_mutex_lock(&r->lock);
    const char *h = strcasestr(r->reqs[i].head, want);
    if (h) {
        h += strlen(want);
        while (*h == ' ')
            h++;
        size_t n = strcspn(h, "\r");
        snprintf(out, cap, "%.*s", (int)n, h);
    }
    pthread_mutex_unlock(&r->lock);
}

static inline void rcv_stop(struct receiver *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->lock);
    r->stop = true;
    pthread_mutex_unlock(&r->lock);
    pthread_join(r->thread, NULL);
    close(r->fd);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

#endif
