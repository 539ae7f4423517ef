/* sluice purge: drop cached responses of a running gateway (SPEC 1, 4.4).
 * It goes through the gateway's admin API rather than touching any store
 * itself, so there is one purge path (the one fleet-wide purges will use
 * too) and the CLI needs nothing but the config file the gateway runs with:
 * admin.listen says where to call, admin.token how to authenticate. */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "conf/conf.h"
#include "util/buf.h"
#include "util/json.h"

static const char cli_purge_usage[] =
    "usage: sluice purge -c FILE (--key K | --prefix P | --pattern G | --tag T | --all)\n";

enum {
    PURGE_CONNECT_TIMEOUT_MS = 5000,
    /* Longer than any purge should take (one pass over the store), short
     * enough that a wedged gateway does not hang a deploy script forever. */
    PURGE_IO_TIMEOUT_S = 30,
    /* The answer is a small JSON object; anything much larger is not it. */
    PURGE_MAX_ANSWER = 1 << 20,
};

/* A TCP connection to <a>, or -1 with a message printed. Non-blocking only
 * for the connect, so that an address that drops SYNs fails after
 * PURGE_CONNECT_TIMEOUT_MS instead of the kernel's minutes; blocking I/O
 * with timeouts afterwards, which is all a one-shot client needs. */
static int purge_connect(const struct cfg_addr *a)
{
    int fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        cli_fail(1, "purge", NULL, "socket: %s", strerror(errno));
        return -1;
    }
    int err = 0;
    if (connect(fd, (const struct sockaddr *)&a->sa, a->sa_len) < 0) {
        if (errno != EINPROGRESS) {
            err = errno;
        } else {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            int n;
            do {
                n = poll(&pfd, 1, PURGE_CONNECT_TIMEOUT_MS);
            } while (n < 0 && errno == EINTR);
            socklen_t len = sizeof(err);
            if (n == 0)
                err = ETIMEDOUT;
            else if (n < 0)
                err = errno;
            else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                err = errno;
        }
    }
    if (err) {
        cli_fail(1, "purge", NULL, "cannot connect to the admin API at %s: %s", a->text,
                 strerror(err));
        close(fd);
        return -1;
    }
    int flags = fcntl(fd, F_GETFL);
    struct timeval tv = {.tv_sec = PURGE_IO_TIMEOUT_S};
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0) {
        cli_fail(1, "purge", NULL, "socket options: %s", strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static int purge_send_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        /* MSG_NOSIGNAL: a gateway closing on us is an error message, not SIGPIPE. */
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Reads the whole answer: the request asked for Connection: close, so the
 * end of the stream is the end of the answer. */
static int purge_read_all(int fd, struct buf *out)
{
    char chunk[4096];
    for (;;) {
        ssize_t n = recv(fd, chunk, sizeof(chunk), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            return 0;
        if (out->len + (size_t)n > PURGE_MAX_ANSWER) {
            errno = EMSGSIZE;
            return -1;
        }
        buf_append(out, chunk, (size_t)n);
    }
}

/* The value of header <name> in <head>/<len> (CRLF lines after the status
 * line), or NULL; *<vlen> its length without surrounding blanks. */
static const char *purge_header(const char *head, size_t len, const char *name, size_t *vlen)
{
    size_t nlen = strlen(name);
    const char *end = head + len;
    const char *line = memchr(head, '\n', len);
    while (line && ++line < end) {
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (!eol)
            eol = end;
        if ((size_t)(eol - line) > nlen && line[nlen] == ':' &&
            strncasecmp(line, name, nlen) == 0) {
            const char *v = line + nlen + 1, *ve = eol;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            *vlen = (size_t)(ve - v);
            return v;
        }
        line = eol;
    }
    return NULL;
}

/* Decodes a chunked body <p>/<len> into <out>; -1 when it is malformed. The
 * admin API answers with Content-Length today, but a client should not
 * break when a server legitimately changes framing. */
static int purge_dechunk(const char *p, size_t len, struct buf *out)
{
    const char *end = p + len;
    for (;;) {
        char *num_end;
        errno = 0;
        unsigned long long size = strtoull(p, &num_end, 16);
        if (num_end == p || errno != 0)
            return -1;
        const char *nl = memchr(num_end, '\n', (size_t)(end - num_end));
        if (!nl)
            return -1;
        p = nl + 1;
        if (size == 0)
            return 0;
        if (size > (unsigned long long)(end - p))
            return -1;
        buf_append(out, p, (size_t)size);
        p += size;
        if (end - p < 2 || p[0] != '\r' || p[1] != '\n')
            return -1;
        p += 2;
    }
}

/* Splits the raw answer <raw> into status and body (into <body>); -1 when it
 * is not HTTP. */
static int purge_parse_answer(const struct buf *raw, int *status, struct buf *body)
{
    const char *r = raw->data;
    size_t len = raw->len;
    if (len < 12 || strncmp(r, "HTTP/1.", 7) != 0 || r[8] != ' ')
        return -1;
    int code = 0;
    for (int i = 9; i < 12; i++) {
        if (r[i] < '0' || r[i] > '9')
            return -1;
        code = code * 10 + (r[i] - '0');
    }
    const char *sep = memmem(r, len, "\r\n\r\n", 4);
    if (!sep)
        return -1;
    size_t head_len = (size_t)(sep - r) + 2, off = head_len + 2;
    const char *b = r + off;
    size_t blen = len - off, vlen;
    const char *te = purge_header(r, head_len, "Transfer-Encoding", &vlen);
    const char *cl = purge_header(r, head_len, "Content-Length", &vlen);
    if (te && vlen >= 7 && strncasecmp(te + vlen - 7, "chunked", 7) == 0) {
        if (purge_dechunk(b, blen, body) < 0)
            return -1;
    } else {
        if (cl) {
            char *e;
            errno = 0;
            unsigned long long n = strtoull(cl, &e, 10);
            if (e == cl || errno != 0)
                return -1;
            if (n < blen)
                blen = (size_t)n;
        }
        buf_append(body, b, blen);
    }
    *status = code;
    return 0;
}

/* The N of {"purged": N} in <body>, or -1. The answer is our own server's
 * one-field object, so a scan for the field beats a JSON parser here. */
static long long purge_count(const struct buf *body)
{
    const char *p = body->len ? memmem(body->data, body->len, "\"purged\"", 8) : NULL;
    if (!p)
        return -1;
    const char *end = body->data + body->len;
    p += 8;
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == ':'))
        p++;
    if (p == end || *p < '0' || *p > '9')
        return -1;
    long long n = 0;
    while (p < end && *p >= '0' && *p <= '9' && n < (1LL << 60))
        n = n * 10 + (*p++ - '0');
    return n;
}

/* One purge call; returns the exit code. */
static int purge_call(const struct config *c, const char *json, size_t json_len)
{
    const char *token = c->admin.token;
    /* A token with a line break would split our request (a header injection
     * of our own making); the config loader has no reason to allow one. */
    if (strpbrk(token, "\r\n")) {
        cli_fail(1, "purge", NULL, "admin.token contains a line break");
        return 2;
    }

    struct buf req = {0};
    buf_appendf(&req,
                "POST /cache/purge HTTP/1.1\r\n"
                "Host: %s\r\n"
                "Authorization: Bearer %s\r\n"
                "Content-Type: application/json\r\n"
                "Content-Length: %zu\r\n"
                "Connection: close\r\n"
                "User-Agent: sluice-purge/" SLUICE_VERSION "\r\n\r\n",
                c->admin.listen.text, token, json_len);
    buf_append(&req, json, json_len);

    int rc = 1;
    struct buf raw = {0}, body = {0};
    int fd = purge_connect(&c->admin.listen);
    if (fd < 0)
        goto out;
    if (purge_send_all(fd, req.data, req.len) < 0) {
        cli_fail(1, "purge", NULL, "sending to %s: %s", c->admin.listen.text, strerror(errno));
        goto out;
    }
    if (purge_read_all(fd, &raw) < 0) {
        cli_fail(1, "purge", NULL, "reading the answer of %s: %s", c->admin.listen.text,
                 errno == EAGAIN || errno == EWOULDBLOCK ? "timed out" : strerror(errno));
        goto out;
    }
    int status;
    if (purge_parse_answer(&raw, &status, &body) < 0) {
        cli_fail(1, "purge", NULL, "%s did not answer HTTP (%zu bytes)", c->admin.listen.text,
                 raw.len);
        goto out;
    }
    if (status != 200) {
        cli_fail(1, "purge", NULL, "the gateway answered HTTP %d: %.*s", status, (int)body.len,
                 body.len ? body.data : "");
        goto out;
    }
    long long n = purge_count(&body);
    if (n < 0) {
        cli_fail(1, "purge", NULL, "unexpected answer: %.*s", (int)body.len,
                 body.len ? body.data : "");
        goto out;
    }
    printf("purged %lld\n", n);
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    buf_release(&req);
    buf_release(&raw);
    buf_release(&body);
    return rc;
}

/* Is <a>/<len> the option "--<name>"? */
static bool purge_opt_is(const char *a, size_t len, const char *name)
{
    return len == strlen(name) + 2 && strncmp(a, "--", 2) == 0 &&
           strncmp(a + 2, name, len - 2) == 0;
}

int cli_purge(int argc, char **argv)
{
    static const char *const selectors[] = {"key", "prefix", "pattern", "tag"};
    const char *file = NULL, *field = NULL, *value = NULL;
    bool all = false;

    /* By hand rather than getopt, as in cli_check: no global state. */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL, *opt = NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(cli_purge_usage, stdout);
            puts("Remove cached responses from the gateway running with FILE, through its\n"
                 "admin API (admin.listen, admin.token): by exact path and query (--key,\n"
                 "query order does not matter), path prefix, glob on path?query ('*', '?'),\n"
                 "tag, or everything. Prints \"purged N\" and exits 0; exits 1 when the\n"
                 "gateway cannot be reached or refuses, 2 on usage or config errors.");
            return 0;
        }
        if (strcmp(a, "--all") == 0) {
            if (all || field)
                return cli_fail(2, "purge", cli_purge_usage,
                                "give exactly one of --key, --prefix, "
                                "--pattern, --tag, --all");
            all = true;
            continue;
        }
        /* "-c FILE", "--opt VALUE" and "--opt=VALUE" */
        const char *eq = strncmp(a, "--", 2) == 0 ? strchr(a, '=') : NULL;
        size_t name_len = eq ? (size_t)(eq - a) : strlen(a);
        if (strcmp(a, "-c") == 0 || purge_opt_is(a, name_len, "config"))
            opt = "config";
        for (size_t k = 0; !opt && k < sizeof(selectors) / sizeof(selectors[0]); k++)
            if (purge_opt_is(a, name_len, selectors[k]))
                opt = selectors[k];
        if (!opt)
            return cli_fail(2, "purge", cli_purge_usage, "unknown argument '%s'", a);
        if (eq) {
            v = eq + 1;
        } else {
            if (i + 1 == argc)
                return cli_fail(2, "purge", cli_purge_usage, "%s needs a value", a);
            v = argv[++i];
        }
        if (strcmp(opt, "config") == 0) {
            if (file)
                return cli_fail(2, "purge", cli_purge_usage, "more than one config file given");
            file = v;
            continue;
        }
        if (all || field)
            return cli_fail(2, "purge", cli_purge_usage,
                            "give exactly one of --key, --prefix, --pattern, "
                            "--tag, --all");
        if (!v[0])
            return cli_fail(2, "purge", cli_purge_usage, "--%s needs a non-empty value", opt);
        field = opt;
        value = v;
    }
    if (!file || !file[0])
        return cli_fail(2, "purge", cli_purge_usage, "no config file given (-c FILE)");
    if (!all && !field)
        return cli_fail(2, "purge", cli_purge_usage,
                        "nothing to purge: give one of --key, --prefix, --pattern, "
                        "--tag, --all");

    struct config *c = cli_load_config(file);
    if (!c)
        return 2;
    int rc;
    if (!c->admin.enabled) {
        fprintf(stderr,
                "sluice purge: %s has no admin section (admin.listen, admin.token): there is no "
                "admin API to call\n",
                file);
        rc = 2;
    } else {
        struct buf json = {0};
        if (all) {
            buf_append_str(&json, "{\"all\": true}");
        } else {
            /* <value> is whatever the operator typed (quotes, backslashes,
             * tabs in a glob), and must reach the server intact. */
            buf_appendf(&json, "{\"%s\": \"", field);
            json_str_append(&json, value);
            buf_append_str(&json, "\"}");
        }
        rc = purge_call(c, json.data, json.len);
        buf_release(&json);
    }
    cfg_unref(c);
    return rc;
}
