#include "obs/accesslog.h"

#include <errno.h>
#include <time.h>
#include <unistd.h>

#include "pipeline/gateway.h"
#include "pipeline/exchange.h"
#include "util/clock.h"

/* Past this, a line is written at once rather than at the end of the iteration. */
#define ACCESSLOG_BATCH (64u << 10)

/* Appends <s>/<len> with quotes, backslashes and control bytes escaped, so a
 * client cannot forge log lines. */
static void accesslog_quoted(struct buf *b, const char *s, size_t len)
{
    buf_append(b, "\"", 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\' || ch < 0x20 || ch >= 0x7f)
            buf_appendf(b, "\\x%02X", ch);
        else
            buf_append(b, &s[i], 1);
    }
    buf_append(b, "\"", 1);
}

static void accesslog_header(struct buf *b, const struct exchange *x, const char *name)
{
    const struct sl_header *h = exchange_req_header(x, name);
    if (h)
        accesslog_quoted(b, h->value, h->value_len > 512 ? 512 : h->value_len);
    else
        buf_append_str(b, "\"-\"");
}

static const char *accesslog_time(struct worker *w)
{
    int64_t sec = clock_wall_us() / 1000000;
    if (sec != w->log_sec) {
        time_t t = (time_t)sec;
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(w->log_time, sizeof(w->log_time), "%d/%b/%Y:%H:%M:%S +0000", &tm);
        w->log_sec = sec;
    }
    return w->log_time;
}

static const char *accesslog_refusal(enum sl_refusal r)
{
    const char *name = sl_refusal_name(r);
    return name ? name : "-";
}

void accesslog_exchange(struct worker *w, const struct exchange *x)
{
    if (!x->cfg->server.access_log)
        return;
    struct buf *b = &w->log;
    double secs = (double)(clock_mono_us() - x->start_us) / 1e6;
    /* The identity goes where the combined format has the remote user. */
    buf_appendf(b, "%s - %s [%s] \"%s ", x->client_ip[0] ? x->client_ip : "-",
                x->identity.label ? x->identity.label : "-", accesslog_time(w),
                x->method_name ? x->method_name : "-");
    if (x->target) {
        size_t len = x->target_len > 2048 ? 2048 : x->target_len;
        struct buf t = {0};
        accesslog_quoted(&t, x->target, len);
        buf_append(b, t.data + 1, t.len - 2); /* inside the request quotes already */
        buf_release(&t);
    } else {
        buf_append(b, "-", 1);
    }
    buf_appendf(b, " HTTP/1.%d\" %d %llu ", x->http_minor, x->status,
                (unsigned long long)x->bytes_out);
    accesslog_header(b, x, "referer");
    buf_append(b, " ", 1);
    accesslog_header(b, x, "user-agent");
    buf_appendf(b, " rt=%.3f rid=%s route=%s upstream=%s", secs,
                x->request_id[0] ? x->request_id : "-", x->route ? x->route->path : "-",
                x->upstream_addr ? x->upstream_addr : "-");
    /* Why the gateway refused it: a 403 of a ban and one of an access list
     * look alike otherwise. */
    if (x->refused_by != SL_REFUSED_NONE)
        buf_appendf(b, " refused=%s", accesslog_refusal(x->refused_by));
    buf_append(b, "\n", 1);
    if (b->len >= ACCESSLOG_BATCH)
        accesslog_flush(w);
}

void accesslog_flush(struct worker *w)
{
    size_t off = 0;
    while (off < w->log.len) {
        ssize_t n = write(STDOUT_FILENO, w->log.data + off, w->log.len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* stdout gone: losing log lines beats stalling requests */
        off += (size_t)n;
    }
    w->log.len = 0;
}
