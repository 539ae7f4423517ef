/* The alert thread: log, outbox, webhook (quota/delivery.h). */
#include "quota/delivery.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "quota/outbox.h"
#include "quota/signature.h"
#include "quota/webhook.h"
#include "store/db.h"
#include "util/clock.h"
#include "util/limits.h"
#include "util/mem.h"

/* The longest the thread sleeps without looking at the config and the
 * clock again; also the wait after the outbox could not be read or
 * opened. */
#define QUOTA_DELIVERY_IDLE_S 60

struct quota_pending {
    struct quota_pending *next;
    char *id;
    size_t len;
    char body[]; /* NUL-terminated */
};

struct quota_delivery {
    pthread_t thread;
    pthread_mutex_t lock; /* guards head..stats */
    struct quota_pending *head, **tail;
    unsigned queued;
    bool stop;
    uint64_t dropped_unlogged;
    struct quota_delivery_stats stats;
    int wake_fd; /* eventfd: an alert queued, a kick, the stop */
    int stop_fd; /* eventfd written by the stop only: cuts a POST short */

    /* The thread's own. */
    sqlite3 *db;         /* the outbox; NULL until a webhook needs it */
    int64_t db_retry_at; /* after a failed open */
    char *data_dir;
    quota_target_fn target;
    void *target_arg;
    int64_t (*now)(void *arg);
    void *now_arg;
    int timeout_ms;
    FILE *log;
};

static int64_t dlv_now(struct quota_delivery *d)
{
    return d->now ? d->now(d->now_arg) : clock_wall_us() / 1000000;
}

static void dlv_signal(int fd)
{
    uint64_t one = 1;
    /* EAGAIN: the counter is full, so the reader wakes anyway. */
    ssize_t n = write(fd, &one, sizeof(one));
    (void)n;
}

static void dlv_count(struct quota_delivery *d, uint64_t *field)
{
    pthread_mutex_lock(&d->lock);
    (*field)++;
    pthread_mutex_unlock(&d->lock);
}

__attribute__((format(printf, 2, 3))) static void dlv_log(struct quota_delivery *d, const char *fmt,
                                                          ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(d->log, fmt, ap);
    va_end(ap);
    fflush(d->log);
}

static sqlite3 *dlv_open(const char *data_dir, char **err)
{
    sqlite3 *db = db_open(data_dir, err);
    if (db && quota_outbox_init(db, err) != 0) {
        db_close(db);
        db = NULL;
    }
    return db;
}

/* The outbox, opened when first needed (a webhook added by a reload). */
static bool dlv_ensure_db(struct quota_delivery *d, int64_t now)
{
    if (d->db)
        return true;
    if (now < d->db_retry_at)
        return false;
    char *err = NULL;
    d->db = dlv_open(d->data_dir, &err);
    if (!d->db) {
        dlv_log(d, "sluice: alert outbox: %s (alerts are logged, not sent; trying again in %d s)\n",
                err, QUOTA_DELIVERY_IDLE_S);
        free(err);
        d->db_retry_at = now + QUOTA_DELIVERY_IDLE_S;
        return false;
    }
    return true;
}

/* Takes what workers queued: logs each alert and, with <store>, puts it
 * in the outbox. Returns whether the thread is to stop (then the queue was
 * taken after the stop was asked for, so nothing raised before is lost). */
static bool dlv_drain_queue(struct quota_delivery *d, bool store)
{
    pthread_mutex_lock(&d->lock);
    struct quota_pending *p = d->head;
    d->head = NULL;
    d->tail = &d->head;
    d->queued = 0;
    bool stop = d->stop;
    uint64_t dropped = d->dropped_unlogged;
    d->dropped_unlogged = 0;
    pthread_mutex_unlock(&d->lock);
    if (dropped)
        dlv_log(d, "sluice: %llu alert(s) dropped: the alert queue was full\n",
                (unsigned long long)dropped);
    int64_t now = dlv_now(d);
    while (p) {
        struct quota_pending *next = p->next;
        dlv_log(d, "sluice: alert: %s\n", p->body);
        dlv_count(d, &d->stats.raised);
        if (store) {
            int rc = quota_outbox_add(d->db, p->id, p->body, now);
            if (rc == 1)
                dlv_count(d, &d->stats.stored);
            else if (rc < 0)
                dlv_log(d, "sluice: alert %s: cannot store it in the outbox: %s\n", p->id,
                        sqlite3_errmsg(d->db));
        }
        free(p->id);
        free(p);
        p = next;
    }
    return stop;
}

/* One attempt of outbox item <it>. false when stopping cut it short. */
static bool dlv_attempt(struct quota_delivery *d, const struct quota_url *u, const char *secret,
                        struct quota_outbox_item *it)
{
    size_t len = strlen(it->body);
    char sig[QUOTA_SIGNATURE_MAX], why[320];
    quota_signature(secret, strlen(secret), dlv_now(d), it->body, len, sig);
    int status =
        quota_webhook_post(u, sig, it->body, len, d->timeout_ms, d->stop_fd, why, sizeof(why));
    if (status == QUOTA_POST_CANCELLED)
        return false; /* still in the outbox: the next start sends it */
    if (status >= 200 && status <= 299) {
        if (quota_outbox_delivered(d->db, it->id) < 0)
            dlv_log(d, "sluice: alert %s: delivered, but the outbox cannot forget it: %s\n", it->id,
                    sqlite3_errmsg(d->db));
        dlv_count(d, &d->stats.delivered);
        return true;
    }
    if (status > 0)
        snprintf(why, sizeof(why), "the webhook answered %d", status);
    int gone = quota_outbox_failed(d->db, it->id, dlv_now(d));
    if (gone == 1) {
        dlv_log(d, "sluice: alert %s: given up after %d attempts in 24 hours: %s\n", it->id,
                it->attempts + 1, why);
    } else if (gone == 0) {
        dlv_log(d, "sluice: alert %s: webhook attempt %d failed: %s (next in %lld s)\n", it->id,
                it->attempts + 1, why, (long long)quota_outbox_backoff(it->attempts + 1));
    } else {
        dlv_log(d, "sluice: alert %s: webhook attempt %d failed: %s; the outbox: %s\n", it->id,
                it->attempts + 1, why, sqlite3_errmsg(d->db));
    }
    /* Counted after the log line: a test waiting on a count finds the line. */
    dlv_count(d, &d->stats.failed);
    if (gone == 1)
        dlv_count(d, &d->stats.given_up);
    return true;
}

/* Sends what is due to <url>, one at a time; returns when the next is due
 * (INT64_MAX: nothing left, or stopping). */
static int64_t dlv_send_due(struct quota_delivery *d, const char *url, const char *secret)
{
    struct quota_url u;
    const char *why;
    if (quota_url_parse(url, &u, &why) != 0) { /* the config checked it: not reached */
        dlv_log(d, "sluice: alert webhook: %s\n", why);
        return INT64_MAX;
    }
    for (;;) {
        /* Alerts raised meanwhile are logged and stored before the next
         * attempt, not after the whole round. */
        if (dlv_drain_queue(d, true))
            return INT64_MAX;
        int64_t now = dlv_now(d);
        struct quota_outbox_item it = {0};
        int rc = quota_outbox_next_due(d->db, now, &it);
        if (rc == 0)
            return quota_outbox_next_time(d->db);
        if (rc < 0) {
            dlv_log(d, "sluice: alert outbox: %s\n", sqlite3_errmsg(d->db));
            return now + QUOTA_DELIVERY_IDLE_S;
        }
        bool done = dlv_attempt(d, &u, secret, &it);
        quota_outbox_item_free(&it);
        if (!done)
            return INT64_MAX;
    }
}

/* Sleeps until <next> (UTC seconds), a wake-up, or QUOTA_DELIVERY_IDLE_S. */
static void dlv_sleep(struct quota_delivery *d, int64_t next)
{
    int64_t ms = QUOTA_DELIVERY_IDLE_S * 1000;
    if (next != INT64_MAX) {
        int64_t wait = (next - dlv_now(d)) * 1000;
        if (wait < ms)
            ms = wait < 0 ? 0 : wait;
    }
    struct pollfd p = {d->wake_fd, POLLIN, 0};
    if (poll(&p, 1, (int)ms) > 0) {
        uint64_t v;
        ssize_t n = read(d->wake_fd, &v, sizeof(v));
        (void)n;
    }
}

static void *dlv_main(void *arg)
{
    struct quota_delivery *d = arg;
    /* Signals are the main thread's (the gateway's uv_signal handles); a
     * peer that closes a TLS connection raises SIGPIPE in OpenSSL's
     * write(2), which must not kill the process. */
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    for (;;) {
        char *url = NULL, *secret = NULL;
        bool webhook = d->target(d->target_arg, &url, &secret);
        bool store = webhook && dlv_ensure_db(d, dlv_now(d));
        bool stop = dlv_drain_queue(d, store);
        int64_t next = INT64_MAX;
        if (!stop && store)
            next = dlv_send_due(d, url, secret);
        if (webhook && !store)
            next = d->db_retry_at;
        free(url);
        free(secret);
        if (stop)
            break;
        dlv_sleep(d, next);
    }
    return NULL;
}

struct quota_delivery *quota_delivery_start(const struct quota_delivery_opts *o, char **err)
{
    struct quota_delivery *d = sl_calloc(1, sizeof(*d));
    char *url = NULL, *secret = NULL;
    pthread_mutex_init(&d->lock, NULL);
    d->tail = &d->head;
    d->data_dir = sl_strdup(o->data_dir);
    d->target = o->target;
    d->target_arg = o->target_arg;
    d->now = o->now;
    d->now_arg = o->now_arg;
    d->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : QUOTA_WEBHOOK_TIMEOUT_MS;
    d->log = o->log ? o->log : stderr;
    d->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    d->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (d->wake_fd < 0 || d->stop_fd < 0) {
        *err = sl_strdup("the alert thread: cannot create an eventfd");
        goto fail;
    }
    if (d->target(d->target_arg, &url, &secret)) {
        free(url);
        free(secret);
        d->db = dlv_open(d->data_dir, err);
        if (!d->db)
            goto fail;
    }
    if (pthread_create(&d->thread, NULL, dlv_main, d) != 0) {
        *err = sl_strdup("cannot start the alert thread");
        goto fail;
    }
    return d;
fail:
    if (d->db)
        db_close(d->db);
    if (d->wake_fd >= 0)
        close(d->wake_fd);
    if (d->stop_fd >= 0)
        close(d->stop_fd);
    pthread_mutex_destroy(&d->lock);
    free(d->data_dir);
    free(d);
    return NULL;
}

void quota_delivery_push(struct quota_delivery *d, const char *id, const char *body, size_t len)
{
    struct quota_pending *p = sl_malloc(sizeof(*p) + len + 1);
    p->next = NULL;
    p->id = sl_strdup(id);
    p->len = len;
    memcpy(p->body, body, len);
    p->body[len] = '\0';
    pthread_mutex_lock(&d->lock);
    bool queued = !d->stop && d->queued < SL_MAX_ALERTS_QUEUED;
    if (queued) {
        *d->tail = p;
        d->tail = &p->next;
        d->queued++;
    } else {
        d->stats.dropped++;
        d->dropped_unlogged++;
    }
    pthread_mutex_unlock(&d->lock);
    if (!queued) {
        free(p->id);
        free(p);
    }
    dlv_signal(d->wake_fd);
}

void quota_delivery_kick(struct quota_delivery *d)
{
    dlv_signal(d->wake_fd);
}

void quota_delivery_stats(struct quota_delivery *d, struct quota_delivery_stats *out)
{
    pthread_mutex_lock(&d->lock);
    *out = d->stats;
    pthread_mutex_unlock(&d->lock);
}

void quota_delivery_stop(struct quota_delivery *d)
{
    pthread_mutex_lock(&d->lock);
    __atomic_store_n(&d->stop, true, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&d->lock);
    dlv_signal(d->stop_fd);
    dlv_signal(d->wake_fd);
    pthread_join(d->thread, NULL);
    if (d->db)
        db_close(d->db);
    close(d->wake_fd);
    close(d->stop_fd);
    pthread_mutex_destroy(&d->lock);
    free(d->data_dir);
    free(d);
}
