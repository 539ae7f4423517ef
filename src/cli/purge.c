/* sluice purge: drop cached responses of a running gateway (SPEC 1, 4.4).
 * It goes through the gateway's admin API rather than touching any store
 * itself, so there is one purge path (the one fleet-wide purges will use
 * too) and the CLI needs nothing but the config file the gateway runs with:
 * admin.listen says where to call, admin.token how to authenticate. */

#include <errno.h>
#include <fcntl.h>
#include <llhttp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <string.h>
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
    /* The answer is a small JSON object (or a short JSON error); a body
     * much larger is not it. */
    PURGE_MAX_BODY = 64 << 10,
    /* All the bytes of the answer, head and chunk framing included: a peer
     * that sends header lines or chunk extensions without end is cut off
     * here, since the parser keeps no count of its own. (The error texts
     * name both sizes.) */
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

/* The admin API's answer, parsed by llhttp as it arrives. Bytes after the
 * first final (non-1xx) response are ignored: the request asked for
 * Connection: close, and nothing else can follow. */
struct purge_answer {
    llhttp_t parser;
    size_t seen;        /* bytes fed, against PURGE_MAX_ANSWER */
    int status;         /* the final response's status, once its head is in */
    struct buf body;    /* the final response's body, de-chunked */
    bool informational; /* the response being parsed is a 1xx */
    bool complete;      /* the final response is in, body and all */
    const char *why;    /* why purge_answer_feed/_end returned -1 (static text) */
};

static int purge_on_headers_complete(llhttp_t *p)
{
    struct purge_answer *a = p->data;
    int status = llhttp_get_status_code(p);
    /* llhttp takes "HTTP/1.1 20 OK" as status 20 (it bounds the code at
     * 999 only), which would pass for a 1xx below. */
    if (status < 100) {
        a->why = "invalid status code";
        return HPE_USER;
    }
    /* A 100 or 103 may come before the answer (llhttp knows they have no
     * body); the answer is the response after them. */
    a->informational = status < 200;
    if (!a->informational)
        a->status = status;
    return 0;
}

static int purge_on_body(llhttp_t *p, const char *at, size_t len)
{
    struct purge_answer *a = p->data;
    if (len > PURGE_MAX_BODY - a->body.len) {
        a->why = "the body is larger than 64 KiB";
        return HPE_USER;
    }
    buf_append(&a->body, at, len);
    return 0;
}

static int purge_on_message_complete(llhttp_t *p)
{
    struct purge_answer *a = p->data;
    if (a->informational) {
        a->informational = false;
        return 0;
    }
    a->complete = true;
    return HPE_PAUSED; /* stop here: llhttp_execute returns at once */
}

static const llhttp_settings_t purge_settings = {
    .on_headers_complete = purge_on_headers_complete,
    .on_body = purge_on_body,
    .on_message_complete = purge_on_message_complete,
};

static void purge_answer_init(struct purge_answer *a)
{
    memset(a, 0, sizeof(*a));
    llhttp_init(&a->parser, HTTP_RESPONSE, &purge_settings);
    a->parser.data = a;
}

static void purge_answer_release(struct purge_answer *a)
{
    buf_release(&a->body);
}

/* Parses the next <len> bytes of the answer, at <data>, into <a>. Returns 1
 * once the answer is complete (whatever is fed after it is ignored), 0 when
 * more bytes are needed, -1 when it is not an HTTP response or is too large,
 * with the reason in a->why; after -1, every call returns -1. Framing is
 * llhttp's: Content-Length, chunked, or until purge_answer_end. */
static int purge_answer_feed(struct purge_answer *a, const char *data, size_t len)
{
    if (a->complete)
        return 1;
    if (a->why)
        return -1;
    if (len > PURGE_MAX_ANSWER - a->seen) {
        a->why = "the answer is larger than 1 MiB";
        return -1;
    }
    a->seen += len;
    llhttp_errno_t err = llhttp_execute(&a->parser, data, len);
    if (a->complete)
        return 1;
    if (err == HPE_OK)
        return 0;
    /* A reason of ours (from a callback), else llhttp's. */
    if (!a->why)
        a->why = llhttp_get_error_reason(&a->parser);
    if (!a->why || !*a->why)
        a->why = llhttp_errno_name(err);
    return -1;
}

/* The peer closed the connection: ends an answer whose body runs until the
 * close. Returns 1 when <a> is complete, else -1 with the reason in a->why. */
static int purge_answer_end(struct purge_answer *a)
{
    if (a->complete)
        return 1;
    if (a->why)
        return -1;
    if (a->seen == 0) {
        a->why = "the connection was closed without an answer";
        return -1;
    }
    llhttp_errno_t err = llhttp_finish(&a->parser);
    if (a->complete)
        return 1;
    /* HPE_INVALID_EOF_STATE, or HPE_OK between a 1xx and the answer. */
    a->why = err == HPE_OK || err == HPE_INVALID_EOF_STATE
                 ? "the connection was closed in the middle of the answer"
                 : llhttp_get_error_reason(&a->parser);
    return -1;
}

/* Reads and parses the answer on <fd> into <a>: 0 once it is complete; -1
 * with errno set when reading fails (EAGAIN: the timeout), or with errno 0
 * and a->why when the answer is not one. */
static int purge_read_answer(int fd, struct purge_answer *a)
{
    char chunk[4096];
    for (;;) {
        ssize_t n = recv(fd, chunk, sizeof(chunk), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        int r = n == 0 ? purge_answer_end(a) : purge_answer_feed(a, chunk, (size_t)n);
        if (r != 0) {
            errno = 0;
            return r > 0 ? 0 : -1;
        }
    }
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
    struct purge_answer answer;
    purge_answer_init(&answer);
    const struct buf *body = &answer.body;
    int fd = purge_connect(&c->admin.listen);
    if (fd < 0)
        goto out;
    if (purge_send_all(fd, req.data, req.len) < 0) {
        cli_fail(1, "purge", NULL, "sending to %s: %s", c->admin.listen.text, strerror(errno));
        goto out;
    }
    if (purge_read_answer(fd, &answer) < 0) {
        if (errno)
            cli_fail(1, "purge", NULL, "reading the answer of %s: %s", c->admin.listen.text,
                     errno == EAGAIN || errno == EWOULDBLOCK ? "timed out" : strerror(errno));
        else
            cli_fail(1, "purge", NULL, "bad answer from %s (%zu bytes read): %s",
                     c->admin.listen.text, answer.seen, answer.why);
        goto out;
    }
    if (answer.status != 200) {
        cli_fail(1, "purge", NULL, "the gateway answered HTTP %d: %.*s", answer.status,
                 (int)body->len, body->len ? body->data : "");
        goto out;
    }
    long long n = purge_count(body);
    if (n < 0) {
        cli_fail(1, "purge", NULL, "unexpected answer: %.*s", (int)body->len,
                 body->len ? body->data : "");
        goto out;
    }
    printf("purged %lld\n", n);
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    buf_release(&req);
    purge_answer_release(&answer);
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
