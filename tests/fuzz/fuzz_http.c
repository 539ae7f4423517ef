/* libFuzzer harness: client requests as net/conn.c reads them. The input is
 * the byte stream a client sends on one connection; it goes through the
 * real connection code (conn.c is included here, as unit tests include the
 * .c they test): llhttp in strict mode with conn.c's callbacks, the header
 * checks (obs-fold, bytes in values, duplicate Host, Content-Length with
 * Transfer-Encoding, chunked only), the target split and path
 * normalisation, body framing (Content-Length and chunked), the limits on
 * header and body bytes, pipelining, error responses and lingering close.
 *
 * The gateway around it is the unit tests' fake gateway (one worker, every
 * module started), created once. The pipeline does not run: exchange_run
 * is replaced by fuzz_stage, which answers like a stage would, by the path:
 *   /early...  429 at once, before the body (the body is left unread);
 *   /stream... a 200 head now, an unknown length (chunked), the end once
 *              the body has arrived;
 *   otherwise  200 once the whole body has been read.
 * The connection's socket is one end of a socketpair, so responses are
 * really written; the other end is drained and then closed.
 *
 * The first input byte sets the read size (1-15 bytes per read, or all at
 * once: 0), so callbacks see values and chunk sizes split across reads. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz.h"
#include "pipeline/exchange.h"

void fuzz_stage(struct exchange *x);

#define exchange_run fuzz_stage
#include "net/conn.c"
#undef exchange_run

#include "../unit/fake_gateway.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CONFIG                                                                                \
    "server:\n"                                                                                    \
    "  max_header_bytes: 2k\n"                                                                     \
    "  max_body_bytes: 1k\n"                                                                       \
    "  access_log: false\n"                                                                        \
    "upstreams: {app: {servers: [\"127.0.0.1:9\"]}}\n"                                             \
    "routes:\n"                                                                                    \
    "  - prefix: /\n"

static struct fake_gw *fx;

static void fuzz_body_sink(struct exchange *x, const char *data, size_t len, bool end)
{
    if (!end)
        return;
    if (x->response_started) {
        exchange_send_body(x, "done\n", 5);
        exchange_send_end(x);
    } else {
        exchange_respond(x, 200, "text/plain", "ok\n", 3);
    }
}

void fuzz_stage(struct exchange *x)
{
    if (x->path_len >= 6 && memcmp(x->path, "/early", 6) == 0) {
        exchange_respond(x, 429, "text/plain", "slow down\n", 10);
        return;
    }
    if (x->path_len >= 7 && memcmp(x->path, "/stream", 7) == 0) {
        exchange_send_head(x, 200, NULL, -1, false);
        exchange_send_body(x, "part\n", 5);
    }
    exchange_set_body_sink(x, fuzz_body_sink);
}

static void fuzz_teardown(void)
{
    fake_gw_free(fx);
    fx = NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fx = fake_gw_new(FUZZ_CONFIG);
    atexit(fuzz_teardown);
    return 0;
}

static void drain(int fd)
{
    char sink[4096];
    while (read(fd, sink, sizeof(sink)) > 0)
        ;
}

/* A connection on <fd> set up as conn_accept does after accept(). */
static struct conn *fuzz_conn(struct worker *w, int fd)
{
    struct conn *c = conn_new(w, CONN_PUBLIC, NULL);
    if (uv_tcp_open(&c->tcp, fd) != 0)
        FUZZ_ABORT();
    str_copy(c->peer_ip, sizeof(c->peer_ip), "203.0.113.7");
    conn_arm_timer(c, true);
    conn_start_reading(c);
    return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    struct worker *w = &fx->w;
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
        FUZZ_ABORT();
    fcntl(fds[1], F_SETFL, O_NONBLOCK);
    struct conn *c = fuzz_conn(w, fds[0]);

    size_t piece = data[0] % 16;
    const char *in = (const char *)data + 1;
    size_t len = size - 1;
    size_t at = 0;
    /* Deliver reads while the connection wants them, as libuv would; what
     * it has stopped reading (paused, or closing after an error) stays
     * unsent. */
    while (at < len && c->state != CS_CLOSING && c->reading) {
        size_t n = piece ? piece : len;
        if (n > len - at)
            n = len - at;
        uv_buf_t b; /* as libuv gets it before each read */
        conn_alloc((uv_handle_t *)&c->tcp, SL_READ_BUF, &b);
        if (b.len == 0)
            break;
        if (n > b.len)
            n = b.len;
        memcpy(b.base, in + at, n);
        at += n;
        conn_on_read((uv_stream_t *)&c->tcp, (ssize_t)n, &b);
        conn_run_dirty(w); /* the worker's uv_check */
        drain(fds[1]);
    }
    if (c->state != CS_CLOSING && c->reading) {
        conn_on_read((uv_stream_t *)&c->tcp, UV_EOF, NULL);
        conn_run_dirty(w);
    }
    if (c->state != CS_CLOSING)
        conn_close(c);
    drain(fds[1]);
    uv_run(&w->loop, UV_RUN_NOWAIT); /* the close callbacks free <c> */
    close(fds[1]);
    return 0;
}
