/* Request buffering (proxy/buffer.h). */
#include "proxy/buffer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "modules.h"
#include "proxy/conf.h"
#include "store/db.h"
#include "util/buf.h"
#include "util/mem.h"

struct px_body {
    struct buf mem; /* the first request_buffer_memory bytes */
    int fd;         /* the rest, in an unlinked temp file; -1: none */
    uint64_t size;  /* all of it */
    uint64_t sent;  /* px_body_next's position */
    bool failed;
    void (*done)(struct exchange *x);
    px_body_tap_fn tap; /* NULL: none */
    void *tap_arg;
};

/* Buffered bodies, by exchange: found through the exchange's end hooks'
 * argument; one pointer per exchange is kept in the proxy's per-exchange
 * state by the caller. */
static struct px_body *px_body_new(void)
{
    struct px_body *b = sl_calloc(1, sizeof(*b));
    b->fd = -1;
    return b;
}

static void px_body_free(struct exchange *x, void *arg)
{
    struct px_body *b = arg;
    buf_release(&b->mem);
    if (b->fd >= 0)
        close(b->fd);
    free(b);
}

bool px_body_wanted(const struct exchange *x)
{
    bool has_body = x->content_length > 0 || x->chunked;
    if (!has_body)
        return false;
    const struct px_route_conf *rc = px_route_conf(x->route);
    enum cfg_buffering mode = rc ? rc->buffering : x->cfg->server.request_buffering;
    return mode == CFG_BUFFER_ON || (mode == CFG_BUFFER_AUTO && x->chunked);
}

/* An unlinked temp file under <dir>: nothing to clean up on any path. */
static int px_body_tmpfile(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/.sluice-body-XXXXXX", dir);
    int fd = mkstemp(path);
    if (fd < 0)
        return -1;
    unlink(path);
    return fd;
}

int px_body_check_dir(const char *dir, char **err)
{
    int fd = db_mkdirs(dir) == 0 ? px_body_tmpfile(dir) : -1;
    if (fd >= 0) {
        close(fd);
        return 0;
    }
    char msg[512];
    snprintf(msg, sizeof(msg),
             "cannot make temp files for request buffering in %s: %s (store.data_dir must be "
             "writable)",
             dir, strerror(errno));
    *err = sl_strdup(msg);
    return -1;
}

/* Blocking writes to the page cache: a few microseconds per 64 KiB, the
 * same choice as nginx's client_body_temp_path. */
static bool px_body_spill(struct px_body *b, const struct exchange *x, const char *data, size_t len)
{
    if (b->fd < 0) {
        b->fd = px_body_tmpfile(x->cfg->store.data_dir);
        if (b->fd < 0)
            return false;
    }
    while (len) {
        ssize_t n = write(b->fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        data += n;
        len -= (size_t)n;
    }
    return true;
}

static void px_body_sink(struct exchange *x, const char *data, size_t len, bool end)
{
    struct px_body *b = px_body_of(x);
    if (b->failed)
        return;
    if (len) {
        uint64_t room = x->cfg->server.request_buffer_memory > b->mem.len
                            ? x->cfg->server.request_buffer_memory - b->mem.len
                            : 0;
        size_t in_mem = b->fd < 0 ? (len < room ? len : (size_t)room) : 0;
        buf_append(&b->mem, data, in_mem);
        if (len > in_mem && !px_body_spill(b, x, data + in_mem, len - in_mem)) {
            b->failed = true;
            exchange_respond_error(x, 500, "the request body could not be buffered");
            return;
        }
        b->size += len;
        if (b->tap)
            b->tap(b->tap_arg, data, len);
    }
    if (!end)
        return;
    x->content_length = (int64_t)b->size;
    x->chunked = false;
    b->done(x);
}

struct px_body *px_body_of(const struct exchange *x)
{
    return x->ctx[MOD_proxy] ? *(struct px_body **)x->ctx[MOD_proxy] : NULL;
}

void px_body_read(struct exchange *x, void (*done)(struct exchange *x))
{
    px_body_read_tapped(x, done, NULL, NULL);
}

void px_body_read_tapped(struct exchange *x, void (*done)(struct exchange *x), px_body_tap_fn tap,
                         void *arg)
{
    struct px_body *b = px_body_new();
    b->done = done;
    b->tap = tap;
    b->tap_arg = arg;
    /* The proxy's per-exchange state starts with this pointer; before the
     * proxy's stage ran (a stage reads the body first), a slot for just the
     * pointer, which the proxy's stage takes over. */
    if (!x->ctx[MOD_proxy])
        x->ctx[MOD_proxy] = arena_calloc(x->arena, sizeof(struct px_body *));
    *(struct px_body **)x->ctx[MOD_proxy] = b;
    exchange_on_end(x, px_body_free, b);
    exchange_set_body_sink(x, px_body_sink);
}

ssize_t px_body_next(struct px_body *b, char *out, size_t cap)
{
    if (b->sent < b->mem.len) {
        size_t n = b->mem.len - (size_t)b->sent;
        n = n < cap ? n : cap;
        memcpy(out, b->mem.data + b->sent, n);
        b->sent += n;
        return (ssize_t)n;
    }
    if (b->sent >= b->size)
        return 0;
    ssize_t n;
    do
        n = pread(b->fd, out, cap, (off_t)(b->sent - b->mem.len));
    while (n < 0 && errno == EINTR);
    if (n <= 0)
        return -1;
    b->sent += (uint64_t)n;
    return n;
}

void px_body_rewind(struct px_body *b)
{
    b->sent = 0;
}
