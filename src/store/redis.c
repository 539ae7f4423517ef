/* One Redis connection on a libuv loop (see redis.h).
 *
 * States: IDLE (no connection; the timer is the reconnect backoff) ->
 * CONNECTING (TCP connect, then AUTH/SELECT, or SUBSCRIBE for a
 * subscriber; the timer is the deadline of all of it) -> UP (the timer is
 * the deadline of the oldest pending command) -> IDLE ..., and CLOSED from
 * any of them. One timer serves the three states because they never
 * overlap.
 *
 * hiredis 0.14 rules this file lives by:
 * - A context must not be freed from inside one of its own callbacks: the
 *   connect callback runs outside hiredis's "in callback" guard, and the
 *   disconnect and NULL-reply callbacks run while hiredis is freeing it.
 *   Our callbacks count themselves in <cb_depth>; a teardown asked for
 *   inside one parks the context in <dying> and the timer frees it at 0 ms.
 * - A NULL reply means hiredis is freeing the context: every outstanding
 *   callback gets one, then the disconnect callback (if it had connected).
 *   The context is "forgotten" then; hiredis finishes the free itself.
 * - hiredis calls a command's callback once (with the reply, or NULL when
 *   it frees the context), even when we answered the command long before
 *   (timeout, close): so a command record is freed when both hiredis is done
 *   with it and its caller has been answered, whichever comes last.
 * - Deadlines are on uv_hrtime, not uv_now: the loop's cached time can be
 *   old by the time a busy iteration sends a command, which would cut its
 *   timeout short. A timer that fires early is simply re-armed.
 * - A context's uv_poll_t is closed asynchronously when hiredis frees it
 *   (the adapter's cleanup hook): rds_close's callback waits for those
 *   closes too. We bind contexts to the loop ourselves (rds_ev_*, below).
 * - redisAsyncConnect resolves the host name synchronously (getaddrinfo):
 *   store.redis.url should name an address or a host in /etc/hosts. */

#include "store/redis.h"

#include <assert.h>
#include <ctype.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <strings.h>

#include <hiredis/async.h>

#include "store/redis_reply.h"
#include "util/mem.h"
#include "util/str.h"

#define RDS_BACKOFF_MIN_MS 50
#define RDS_BACKOFF_MAX_MS 2000
#define RDS_CONNECT_MIN_MS 1000 /* TCP connect + AUTH/SELECT: at least this, or the timeout */
#define RDS_DEFAULT_TIMEOUT_MS 1000
#define RDS_MAX_DB 1023

enum rds_state {
    RDS_ST_IDLE = 0,
    RDS_ST_CONNECTING,
    RDS_ST_UP,
    RDS_ST_CLOSED,
};

/* What on_state was last told: it hears of each change once. */
enum rds_told { RDS_TOLD_NOTHING = 0, RDS_TOLD_UP, RDS_TOLD_DOWN };

enum rds_cmd_state {
    RDS_CMD_QUEUED = 0, /* in r's FIFO, waiting for its reply */
    RDS_CMD_ANSWERING,  /* out of the FIFO, its callback running or about to */
    RDS_CMD_ANSWERED,   /* answered; waiting for hiredis to let go of it */
};

/* The privdata of one command sent with hiredis: a caller's command
 * (rds_command, rds_eval: in the FIFO until answered), or one of ours
 * (AUTH and SELECT, freed on their callback; SUBSCRIBE, called for every
 * message and freed on the NULL callback). */
struct rds_cmd {
    struct rds_cmd *prev, *next; /* FIFO links; <next> also links a list being answered */
    struct rds *r;
    enum rds_cmd_state state;
    bool hiredis_done; /* hiredis will not call back with it again */
    bool retried;      /* an EVALSHA already resent as EVAL */
    rds_reply_fn cb;
    void *arg;
    uint64_t deadline; /* rds_now() ms */
    const char *what;  /* a handshake command's name, for logs */
    /* rds_eval only: its argv, kept for the EVAL retry (the caller's args
     * die when rds_eval returns). Allocated with the record. */
    const struct rds_script *script;
    int argc;
    const char **argv;
    size_t *lens;
};

struct rds {
    uv_loop_t *loop;
    struct rds_config cfg;
    rds_state_fn on_state;
    void *arg;
    char *channel; /* subscriber: the channel; NULL for a command connection */
    rds_message_fn on_message;

    enum rds_state state;
    enum rds_told told;
    redisAsyncContext *ac;    /* the current connection (CONNECTING, UP) */
    redisAsyncContext *dying; /* a connection the timer is to free */
    int cb_depth;             /* our hiredis callbacks on the stack */
    int hs_left;              /* handshake replies still awaited */
    uv_timer_t timer;
    uint64_t due;        /* IDLE: reconnect at; CONNECTING: give up at (rds_now) */
    uint64_t backoff_ms; /* the next reconnect delay */
    uint64_t timeout_ms;
    bool connected_once;
    int handles; /* open libuv handles: the timer and the adapters' polls */
    char why[160];
    struct rds_cmd *head, *tail;   /* pending commands, oldest first */
    struct rds_reply_pool replies; /* every context's replies: no malloc per reply */

    void (*closed)(void *arg);
    void *closed_arg;

    uint64_t n_commands, n_timeouts, n_reconnects; /* __atomic, relaxed */
};

/* ---- small helpers ---- */

static uint64_t rds_now(void)
{
    return uv_hrtime() / 1000000;
}

static void rds_count(uint64_t *counter)
{
    __atomic_fetch_add(counter, 1, __ATOMIC_RELAXED);
}

/* Changes the state, asserting the change is one the machine allows. */
static void rds_set_state(struct rds *r, enum rds_state to)
{
    enum rds_state from = r->state;
    assert(to == RDS_ST_CLOSED || (from == RDS_ST_IDLE && to == RDS_ST_CONNECTING) ||
           (from == RDS_ST_CONNECTING && (to == RDS_ST_UP || to == RDS_ST_IDLE)) ||
           (from == RDS_ST_UP && to == RDS_ST_IDLE));
    assert(from != RDS_ST_CLOSED);
    (void)from;
    r->state = to;
}

static void rds_tell(struct rds *r, bool up, const char *why)
{
    enum rds_told t = up ? RDS_TOLD_UP : RDS_TOLD_DOWN;
    if (r->told == t)
        return;
    r->told = t;
    if (r->on_state)
        r->on_state(r->arg, up, why);
}

static const char *rds_ac_why(const redisAsyncContext *ac, const char *otherwise)
{
    return ac->c.err && ac->c.errstr[0] ? ac->c.errstr : otherwise;
}

static void rds_on_timer(uv_timer_t *t);

static void rds_arm(struct rds *r, uint64_t ms)
{
    uv_timer_start(&r->timer, rds_on_timer, ms, 0);
}

/* ---- the FIFO of pending commands ---- */

static void rds_fifo_push(struct rds *r, struct rds_cmd *c)
{
    c->state = RDS_CMD_QUEUED;
    c->next = NULL;
    c->prev = r->tail;
    if (r->tail)
        r->tail->next = c;
    else
        r->head = c;
    r->tail = c;
}

static void rds_fifo_remove(struct rds *r, struct rds_cmd *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        r->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        r->tail = c->prev;
    c->prev = c->next = NULL;
    c->state = RDS_CMD_ANSWERING;
}

/* Empties the FIFO into a list (linked by <next>) of commands to answer. */
static struct rds_cmd *rds_fifo_take(struct rds *r)
{
    struct rds_cmd *list = r->head;
    for (struct rds_cmd *c = list; c; c = c->next)
        c->state = RDS_CMD_ANSWERING;
    r->head = r->tail = NULL;
    return list;
}

/* Calls back the caller of <c> (state ANSWERING). A NULL callback of
 * hiredis during the call only marks it done, so <c> outlives the call. */
static void rds_answer(struct rds_cmd *c, enum rds_status st, const redisReply *reply)
{
    assert(c->state == RDS_CMD_ANSWERING);
    c->cb(c->arg, st, reply);
    if (c->hiredis_done)
        free(c);
    else
        c->state = RDS_CMD_ANSWERED;
}

/* Answers the list <c> (from rds_fifo_take): the first with <first>, the
 * others RDS_CLOSED. The records of a list are never freed by anyone else
 * while it is being answered, so <next> stays valid across the callbacks. */
static void rds_answer_all(struct rds_cmd *c, enum rds_status first)
{
    enum rds_status st = first;
    while (c) {
        struct rds_cmd *next = c->next;
        rds_answer(c, st, NULL);
        st = RDS_CLOSED;
        c = next;
    }
}

/* ---- the connection's life ---- */

/* Frees <ac> now if no hiredis callback is on the stack, otherwise from
 * the timer at once. */
static void rds_free_ac(struct rds *r, redisAsyncContext *ac)
{
    if (r->cb_depth == 0) {
        redisAsyncFree(ac);
        return;
    }
    assert(!r->dying);
    r->dying = ac;
    rds_arm(r, 0);
}

/* The connection failed (CONNECTING) or broke (UP) because of <why>: back
 * to IDLE with the next backoff, pending commands answered (the oldest
 * <head_st>, the others RDS_CLOSED) and on_state told. <ours>: we must free
 * the context; otherwise hiredis is freeing it already. */
static void rds_lost(struct rds *r, const char *why, bool ours, enum rds_status head_st)
{
    redisAsyncContext *ac = r->ac;
    snprintf(r->why, sizeof(r->why), "%s", why); /* <why> may live in <ac> */
    r->ac = NULL;
    struct rds_cmd *pending = rds_fifo_take(r);
    rds_set_state(r, RDS_ST_IDLE);
    uint64_t delay = r->backoff_ms;
    r->backoff_ms = delay * 2 < RDS_BACKOFF_MAX_MS ? delay * 2 : RDS_BACKOFF_MAX_MS;
    r->due = rds_now() + delay;
    rds_arm(r, delay);
    if (ac && ours)
        rds_free_ac(r, ac); /* the pending records are ANSWERING: they survive it */
    /* Callers may call back into us from here (rds_command gets RDS_DOWN,
     * rds_close works): nothing below depends on the state. */
    rds_tell(r, false, r->why);
    rds_answer_all(pending, head_st);
}

/* hiredis is freeing <ac> (a NULL reply, a failed connect, a disconnect). */
static void rds_forget(struct rds *r, redisAsyncContext *ac)
{
    if (ac == r->dying)
        r->dying = NULL;
    else if (ac == r->ac)
        rds_lost(r, rds_ac_why(ac, "connection lost"), false, RDS_CLOSED);
}

static void rds_up(struct rds *r)
{
    rds_set_state(r, RDS_ST_UP);
    uv_timer_stop(&r->timer);
    r->backoff_ms = RDS_BACKOFF_MIN_MS;
    rds_tell(r, true, "connected");
}

static void rds_on_sub_reply(redisAsyncContext *ac, void *reply, void *priv);

/* AUTH and SELECT are done: a subscriber subscribes, and is up once Redis
 * confirms it (messages published before that would be lost). */
static void rds_handshake_done(struct rds *r)
{
    if (!r->channel) {
        rds_up(r);
        return;
    }
    struct rds_cmd *c = sl_calloc(1, sizeof(*c));
    c->r = r;
    const char *argv[] = {"SUBSCRIBE", r->channel};
    if (redisAsyncCommandArgv(r->ac, rds_on_sub_reply, c, 2, argv, NULL) != REDIS_OK) {
        free(c);
        rds_lost(r, "cannot send SUBSCRIBE", true, RDS_CLOSED);
    }
}

static void rds_on_handshake_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    struct rds_cmd *c = priv;
    struct rds *r = c->r;
    const redisReply *rep = reply;
    char why[sizeof(r->why)];
    r->cb_depth++;
    if (!rep) {
        rds_forget(r, ac);
    } else if (ac != r->ac || r->state != RDS_ST_CONNECTING) {
        /* a connection we already gave up */
    } else if (rep->type == REDIS_REPLY_ERROR) {
        snprintf(why, sizeof(why), "%s: %s", c->what, rep->str);
        rds_lost(r, why, true, RDS_CLOSED);
    } else if (--r->hs_left == 0) {
        rds_handshake_done(r);
    }
    free(c);
    r->cb_depth--;
}

static int rds_send_handshake(struct rds *r, const char *what, int argc, const char **argv)
{
    struct rds_cmd *c = sl_calloc(1, sizeof(*c));
    c->r = r;
    c->what = what;
    if (redisAsyncCommandArgv(r->ac, rds_on_handshake_reply, c, argc, argv, NULL) != REDIS_OK) {
        free(c);
        return -1;
    }
    r->hs_left++;
    return 0;
}

/* The TCP connection is up: AUTH and SELECT, pipelined. */
static void rds_handshake(struct rds *r)
{
    const struct rds_config *cfg = &r->cfg;
    char db[24];
    r->hs_left = 0;
    if (cfg->password[0]) {
        /* AUTH [user] password: the user is Redis 6's ACL form */
        const char *argv[3] = {"AUTH"};
        int argc = 1;
        if (cfg->user[0])
            argv[argc++] = cfg->user;
        argv[argc++] = cfg->password;
        if (rds_send_handshake(r, "AUTH", argc, argv) != 0)
            goto fail;
    }
    /* A subscriber's channels do not depend on the db. */
    if (cfg->db != 0 && !r->channel) {
        str_u64(db, (uint64_t)cfg->db);
        const char *argv[] = {"SELECT", db};
        if (rds_send_handshake(r, "SELECT", 2, argv) != 0)
            goto fail;
    }
    if (r->hs_left == 0)
        rds_handshake_done(r);
    return;
fail:
    rds_lost(r, "cannot send the handshake", true, RDS_CLOSED);
}

static void rds_on_connect(const redisAsyncContext *cac, int status)
{
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    struct rds *r = ac->data;
    r->cb_depth++;
    if (status != REDIS_OK)
        rds_forget(r, ac); /* hiredis frees it when we return */
    else if (ac == r->ac && r->state == RDS_ST_CONNECTING)
        rds_handshake(r);
    r->cb_depth--;
}

static void rds_on_disconnect(const redisAsyncContext *cac, int status)
{
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    struct rds *r = ac->data;
    r->cb_depth++;
    rds_forget(r, ac);
    r->cb_depth--;
}

static void rds_maybe_closed(struct rds *r)
{
    if (r->handles > 0 || r->state != RDS_ST_CLOSED)
        return;
    void (*closed)(void *) = r->closed;
    void *arg = r->closed_arg;
    rds_reply_pool_dispose(&r->replies);
    free(r->channel);
    free(r);
    if (closed)
        closed(arg);
}

/* ---- the event-loop binding of a context ----
 *
 * hiredis's own libuv adapter (adapters/libuv.h), with two changes:
 * - libuv reports an error on the socket (POLLERR: a refused connect, a
 *   reset) as a status < 0, and stops the handle; the stock adapter ignores
 *   such a call, so a refused connect would wait for the connect timer. A
 *   read lets hiredis find the error itself (getsockopt or read fails).
 * - The poll handle's close callback counts it in <r>, so that rds_close's
 *   callback runs only once no handle of ours is left. */

struct rds_ev {
    uv_poll_t poll;
    /* Commands queued while the loop runs go out in one write just before
     * it polls again, instead of one loop iteration later when the socket
     * reports writable: a limit decision waits one iteration less. */
    uv_prepare_t flush;
    bool flushing;
    int open; /* handles of ours not yet closed */
    int events;
    redisAsyncContext *ac; /* NULL once hiredis dropped it (cleanup) */
    struct rds *r;
};

static void rds_ev_poll(uv_poll_t *h, int status, int events)
{
    struct rds_ev *ev = h->data;
    if (status < 0)
        events = UV_READABLE;
    if (ev->ac && (events & UV_READABLE))
        redisAsyncHandleRead(ev->ac);
    if (ev->ac && (events & UV_WRITABLE))
        redisAsyncHandleWrite(ev->ac);
}

static void rds_ev_update(struct rds_ev *ev, int add, int del)
{
    ev->events = (ev->events | add) & ~del;
    if (ev->events)
        uv_poll_start(&ev->poll, ev->events, rds_ev_poll);
    else
        uv_poll_stop(&ev->poll);
}

static void rds_ev_flush(uv_prepare_t *h)
{
    struct rds_ev *ev = h->data;
    uv_prepare_stop(&ev->flush);
    if (!ev->ac)
        return;
    /* What the socket does not take now, hiredis asks for again: that goes
     * to the poll (see rds_ev_add_write). */
    ev->flushing = true;
    redisAsyncHandleWrite(ev->ac);
    ev->flushing = false;
}

static void rds_ev_add_read(void *ev)
{
    rds_ev_update(ev, UV_READABLE, 0);
}

static void rds_ev_del_read(void *ev)
{
    rds_ev_update(ev, 0, UV_READABLE);
}

static void rds_ev_add_write(void *p)
{
    struct rds_ev *ev = p;
    /* Before the connection is made, writable is how the connect's outcome
     * shows; a full socket buffer is waited for the same way. */
    if (ev->ac && (ev->ac->c.flags & REDIS_CONNECTED) && !ev->flushing) {
        uv_prepare_start(&ev->flush, rds_ev_flush);
        return;
    }
    rds_ev_update(ev, UV_WRITABLE, 0);
}

static void rds_ev_del_write(void *p)
{
    struct rds_ev *ev = p;
    uv_prepare_stop(&ev->flush);
    rds_ev_update(ev, 0, UV_WRITABLE);
}

static void rds_ev_closed(uv_handle_t *h)
{
    struct rds_ev *ev = h->data;
    struct rds *r = ev->r;
    r->handles--;
    if (--ev->open == 0)
        free(ev);
    rds_maybe_closed(r);
}

/* hiredis is freeing the context: no more events for it. */
static void rds_ev_cleanup(void *privdata)
{
    struct rds_ev *ev = privdata;
    ev->ac = NULL;
    uv_close((uv_handle_t *)&ev->poll, rds_ev_closed);
    uv_close((uv_handle_t *)&ev->flush, rds_ev_closed);
}

static int rds_ev_attach(struct rds *r, redisAsyncContext *ac)
{
    struct rds_ev *ev = sl_calloc(1, sizeof(*ev));
    if (uv_poll_init(r->loop, &ev->poll, ac->c.fd) != 0) {
        free(ev);
        return -1;
    }
    uv_prepare_init(r->loop, &ev->flush);
    ev->poll.data = ev;
    ev->flush.data = ev;
    ev->ac = ac;
    ev->r = r;
    ev->open = 2;
    r->handles += 2;
    ac->ev.data = ev;
    ac->ev.addRead = rds_ev_add_read;
    ac->ev.delRead = rds_ev_del_read;
    ac->ev.addWrite = rds_ev_add_write;
    ac->ev.delWrite = rds_ev_del_write;
    ac->ev.cleanup = rds_ev_cleanup;
    return 0;
}

/* IDLE -> CONNECTING: a non-blocking connect; its outcome comes to
 * rds_on_connect, or the timer gives up on it. */
static void rds_connect(struct rds *r)
{
    char why[sizeof(r->why)];
    if (r->connected_once)
        rds_count(&r->n_reconnects);
    r->connected_once = true;
    rds_set_state(r, RDS_ST_CONNECTING);
    uint64_t limit = r->timeout_ms > RDS_CONNECT_MIN_MS ? r->timeout_ms : RDS_CONNECT_MIN_MS;
    r->due = rds_now() + limit;

    redisAsyncContext *ac = redisAsyncConnect(r->cfg.host, r->cfg.port);
    if (!ac)
        sl_fatal("out of memory");
    if (ac->err) {
        snprintf(why, sizeof(why), "connect: %s", ac->errstr);
        redisAsyncFree(ac);
        rds_lost(r, why, false, RDS_CLOSED);
        return;
    }
    ac->data = r;
    rds_reply_use(ac->c.reader, &r->replies);
    if (rds_ev_attach(r, ac) != 0) {
        redisAsyncFree(ac);
        rds_lost(r, "connect: cannot watch the socket", false, RDS_CLOSED);
        return;
    }
    r->ac = ac;
    /* Attached first: setting the connect callback arms the write event
     * that tells when the connect completed. */
    redisAsyncSetConnectCallback(ac, rds_on_connect);
    redisAsyncSetDisconnectCallback(ac, rds_on_disconnect);
    rds_arm(r, limit);
}

/* UP: answers the oldest command RDS_TIMEOUT if its deadline passed and
 * drops the connection; otherwise waits for that deadline. Deadlines grow
 * along the FIFO, so the head's is the nearest; the timer is re-armed only
 * here (not on every reply), which may make it fire before the head's
 * deadline, never after. */
static void rds_check_head(struct rds *r, uint64_t now)
{
    struct rds_cmd *c = r->head;
    if (!c)
        return;
    if (c->deadline > now) {
        rds_arm(r, c->deadline - now);
        return;
    }
    rds_count(&r->n_timeouts);
    rds_lost(r, "timeout", true, RDS_TIMEOUT);
}

static void rds_timer_closed(uv_handle_t *h)
{
    struct rds *r = h->data;
    r->handles--;
    rds_maybe_closed(r);
}

static void rds_on_timer(uv_timer_t *t)
{
    struct rds *r = t->data;
    if (r->dying) {
        redisAsyncContext *ac = r->dying;
        r->dying = NULL;
        redisAsyncFree(ac);
    }
    uint64_t now = rds_now();
    switch (r->state) {
    case RDS_ST_IDLE:
        if (now < r->due)
            rds_arm(r, r->due - now);
        else
            rds_connect(r);
        break;
    case RDS_ST_CONNECTING:
        if (now < r->due)
            rds_arm(r, r->due - now);
        else
            rds_lost(r, "connect timeout", true, RDS_CLOSED);
        break;
    case RDS_ST_UP:
        rds_check_head(r, now);
        break;
    case RDS_ST_CLOSED:
        uv_close((uv_handle_t *)t, rds_timer_closed);
        break;
    }
}

/* ---- public ---- */

static struct rds *rds_alloc(uv_loop_t *loop, const struct rds_config *c, rds_state_fn on_state,
                             void *arg)
{
    struct rds *r = sl_calloc(1, sizeof(*r));
    r->loop = loop;
    r->cfg = *c;
    r->on_state = on_state;
    r->arg = arg;
    r->timeout_ms = c->timeout_ms > 0 ? (uint64_t)c->timeout_ms : RDS_DEFAULT_TIMEOUT_MS;
    r->backoff_ms = RDS_BACKOFF_MIN_MS;
    rds_reply_pool_init(&r->replies);
    uv_timer_init(loop, &r->timer);
    r->timer.data = r;
    r->handles = 1;
    /* Not synchronously: on_state must not run before rds_new returns. */
    uv_timer_start(&r->timer, rds_on_timer, 0, 0);
    return r;
}

struct rds *rds_new(uv_loop_t *loop, const struct rds_config *c, rds_state_fn on_state,
                    void *state_arg)
{
    return rds_alloc(loop, c, on_state, state_arg);
}

struct rds *rds_subscribe(uv_loop_t *loop, const struct rds_config *c, const char *channel,
                          rds_message_fn on_message, rds_state_fn on_state, void *arg)
{
    struct rds *r = rds_alloc(loop, c, on_state, arg);
    r->channel = sl_strdup(channel);
    r->on_message = on_message;
    return r;
}

void rds_close(struct rds *r, void (*closed)(void *arg), void *arg)
{
    r->closed = closed;
    r->closed_arg = arg;
    rds_set_state(r, RDS_ST_CLOSED);
    struct rds_cmd *pending = rds_fifo_take(r);
    if (r->ac) {
        assert(!r->dying);
        r->dying = r->ac;
        r->ac = NULL;
    }
    if (r->dying && r->cb_depth > 0) {
        rds_arm(r, 0); /* rds_on_timer frees it, then closes the timer */
    } else {
        if (r->dying) {
            redisAsyncContext *ac = r->dying;
            r->dying = NULL;
            redisAsyncFree(ac);
        }
        uv_close((uv_handle_t *)&r->timer, rds_timer_closed);
    }
    rds_answer_all(pending, RDS_CLOSED);
}

bool rds_is_up(const struct rds *r)
{
    return r->state == RDS_ST_UP;
}

static void rds_on_reply(redisAsyncContext *ac, void *reply, void *priv);

/* Sends <c> (a new record, or an EVALSHA turned EVAL) on the current
 * connection and queues it; answers it RDS_DOWN if hiredis refuses. */
static void rds_send(struct rds *r, struct rds_cmd *c, int argc, const char **argv,
                     const size_t *lens)
{
    if (redisAsyncCommandArgv(r->ac, rds_on_reply, c, argc, argv, lens) != REDIS_OK) {
        c->hiredis_done = true;
        c->state = RDS_CMD_ANSWERING;
        rds_answer(c, RDS_DOWN, NULL);
        return;
    }
    rds_count(&r->n_commands);
    c->deadline = rds_now() + r->timeout_ms;
    rds_fifo_push(r, c);
    if (!uv_is_active((uv_handle_t *)&r->timer))
        rds_arm(r, r->timeout_ms);
}

/* Commands are refused unless the connection is up; a subscriber takes
 * none (it would be in subscribed mode). */
static bool rds_refuse(struct rds *r, rds_reply_fn cb, void *arg)
{
    if (r->state == RDS_ST_UP && !r->channel)
        return false;
    cb(arg, r->state == RDS_ST_CLOSED ? RDS_CLOSED : RDS_DOWN, NULL);
    return true;
}

void rds_command(struct rds *r, int argc, const char *const *argv, const size_t *lens,
                 rds_reply_fn cb, void *arg)
{
    if (rds_refuse(r, cb, arg))
        return;
    struct rds_cmd *c = sl_calloc(1, sizeof(*c));
    c->r = r;
    c->cb = cb;
    c->arg = arg;
    rds_send(r, c, argc, (const char **)argv, lens);
}

static bool rds_is_noscript(const redisReply *rep)
{
    return rep->type == REDIS_REPLY_ERROR && rep->len >= 8 && memcmp(rep->str, "NOSCRIPT", 8) == 0;
}

static void rds_on_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    struct rds_cmd *c = priv;
    struct rds *r = c->r;
    const redisReply *rep = reply;
    r->cb_depth++;
    if (c->state == RDS_CMD_QUEUED && !rep) {
        /* The first NULL reply of a context hiredis frees: answers all. */
        c->hiredis_done = true;
        rds_forget(r, ac); /* <c> is freed */
    } else if (c->state == RDS_CMD_QUEUED) {
        rds_fifo_remove(r, c);
        if (c->script && !c->retried && rds_is_noscript(rep)) {
            /* Redis lost the script (restart, SCRIPT FLUSH): EVAL loads it. */
            c->retried = true;
            c->argv[0] = "EVAL";
            c->lens[0] = 4;
            c->argv[1] = c->script->body;
            c->lens[1] = strlen(c->script->body);
            if (redisAsyncCommandArgv(ac, rds_on_reply, c, c->argc, c->argv, c->lens) == REDIS_OK) {
                rds_count(&r->n_commands);
                c->deadline = rds_now() + r->timeout_ms;
                rds_fifo_push(r, c);
                goto out;
            }
        }
        c->hiredis_done = true;
        rds_answer(c, RDS_OK, rep);
    } else {
        /* Answered already (timeout, close): a late reply or a NULL one. */
        c->hiredis_done = true;
        if (c->state == RDS_CMD_ANSWERED)
            free(c);
    }
out:
    r->cb_depth--;
}

void rds_script_init(struct rds_script *s, const char *body)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    s->body = body;
    if (EVP_Digest(body, strlen(body), md, &n, EVP_sha1(), NULL) != 1 || n != 20)
        sl_fatal("SHA-1 is not available");
    for (unsigned int i = 0; i < n; i++) {
        s->sha[2 * i] = hex[md[i] >> 4];
        s->sha[2 * i + 1] = hex[md[i] & 15];
    }
    s->sha[40] = '\0';
}

void rds_eval(struct rds *r, const struct rds_script *s, int nkeys, int nargs,
              const char *const *args, const size_t *lens, rds_reply_fn cb, void *arg)
{
    assert(nkeys >= 0 && nargs >= nkeys);
    if (rds_refuse(r, cb, arg))
        return;
    /* One block: the record, argv, lens, then the bytes of nkeys and args. */
    int argc = nargs + 3;
    size_t bytes = 24;
    for (int i = 0; i < nargs; i++)
        bytes += (lens ? lens[i] : strlen(args[i])) + 1;
    size_t size = sizeof(struct rds_cmd) + (size_t)argc * (sizeof(char *) + sizeof(size_t));
    struct rds_cmd *c = sl_calloc(1, size + bytes);
    c->r = r;
    c->cb = cb;
    c->arg = arg;
    c->script = s;
    c->argc = argc;
    c->argv = (const char **)(c + 1);
    c->lens = (size_t *)(c->argv + argc);
    char *p = (char *)(c->lens + argc);

    c->argv[0] = "EVALSHA";
    c->lens[0] = 7;
    c->argv[1] = s->sha;
    c->lens[1] = 40;
    c->argv[2] = p;
    c->lens[2] = str_u64(p, (uint64_t)nkeys);
    p += c->lens[2] + 1;
    for (int i = 0; i < nargs; i++) {
        size_t len = lens ? lens[i] : strlen(args[i]);
        memcpy(p, args[i], len);
        c->argv[3 + i] = p;
        c->lens[3 + i] = len;
        p += len + 1;
    }
    rds_send(r, c, argc, c->argv, c->lens);
}

static void rds_on_sub_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    struct rds_cmd *c = priv;
    struct rds *r = c->r;
    const redisReply *rep = reply;
    r->cb_depth++;
    if (!rep) {
        free(c);
        rds_forget(r, ac);
    } else if (ac == r->ac && rep->type == REDIS_REPLY_ARRAY && rep->elements >= 3 &&
               rep->element[0]->type == REDIS_REPLY_STRING) {
        const char *kind = rep->element[0]->str;
        const redisReply *payload = rep->element[2];
        if (strcasecmp(kind, "subscribe") == 0 && r->state == RDS_ST_CONNECTING)
            rds_up(r);
        else if (strcasecmp(kind, "message") == 0 && r->state == RDS_ST_UP &&
                 payload->type == REDIS_REPLY_STRING)
            r->on_message(r->arg, payload->str, payload->len);
    }
    r->cb_depth--;
}

void rds_get_stats(const struct rds *r, struct rds_stats *out)
{
    out->commands = __atomic_load_n(&r->n_commands, __ATOMIC_RELAXED);
    out->timeouts = __atomic_load_n(&r->n_timeouts, __ATOMIC_RELAXED);
    out->reconnects = __atomic_load_n(&r->n_reconnects, __ATOMIC_RELAXED);
}

/* ---- synchronous ---- */

static void rds_sync_fail(char **err, const struct rds_config *c, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void rds_sync_fail(char **err, const struct rds_config *c, const char *fmt, ...)
{
    if (!err)
        return;
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    size_t n = strlen(c->host) + strlen(why) + 32;
    *err = sl_malloc(n);
    snprintf(*err, n, "redis %s:%d: %s", c->host, c->port, why);
}

/* One handshake command (<what> names it in the error); false when it
 * failed, with *<err> set. */
static bool rds_sync_step(redisContext *rc, const struct rds_config *c, const char *what, int argc,
                          const char **argv, char **err)
{
    redisReply *r = redisCommandArgv(rc, argc, argv, NULL);
    bool ok = r && r->type != REDIS_REPLY_ERROR;
    if (!ok)
        rds_sync_fail(err, c, "%s: %s", what, r ? r->str : rc->errstr);
    freeReplyObject(r);
    return ok;
}

redisContext *rds_connect_sync(const struct rds_config *c, int timeout_ms, char **err)
{
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    redisContext *rc = redisConnectWithTimeout(c->host, c->port, tv);
    if (!rc || rc->err) {
        rds_sync_fail(err, c, "%s", rc ? rc->errstr : "out of memory");
        redisFree(rc);
        return NULL;
    }
    redisSetTimeout(rc, tv);
    bool ok = true;
    if (c->password[0]) {
        /* AUTH [user] password: the user is Redis 6's ACL form */
        const char *argv[3] = {"AUTH"};
        int argc = 1;
        if (c->user[0])
            argv[argc++] = c->user;
        argv[argc++] = c->password;
        ok = rds_sync_step(rc, c, "AUTH", argc, argv, err);
    }
    if (ok && c->db) {
        char db[16];
        snprintf(db, sizeof(db), "%d", c->db);
        const char *argv[] = {"SELECT", db};
        ok = rds_sync_step(rc, c, "SELECT", 2, argv, err);
    }
    if (!ok) {
        redisFree(rc);
        return NULL;
    }
    return rc;
}

/* ---- URL ---- */

static int rds_bad(const char **why, const char *msg)
{
    if (why)
        *why = msg;
    return -1;
}

/* The decimal <s>/<n> (digits only) into *<out>, at most <max>. */
static int rds_parse_uint(const char *s, size_t n, int max, int *out)
{
    long v = 0;
    if (n == 0 || n > 9)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v > max)
        return -1;
    *out = (int)v;
    return 0;
}

static int rds_hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Percent-decodes <s>/<n> into <dst> (<cap> bytes, NUL-terminated). -1 on
 * a bad escape, an escaped NUL, or when it does not fit. */
static int rds_decode(const char *s, size_t n, char *dst, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int ch = (unsigned char)s[i];
        if (ch == '%') {
            int hi = i + 2 < n ? rds_hexval(s[i + 1]) : -1;
            int lo = hi >= 0 ? rds_hexval(s[i + 2]) : -1;
            if (lo < 0 || (hi == 0 && lo == 0))
                return -1;
            ch = hi * 16 + lo;
            i += 2;
        }
        if (o + 1 >= cap)
            return -1;
        dst[o++] = (char)ch;
    }
    dst[o] = '\0';
    return 0;
}

static bool rds_host_ok(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isgraph((unsigned char)s[i]) || strchr("@/[]?#", s[i]))
            return false;
    return true;
}

int rds_parse_url(const char *url, struct rds_config *out, const char **why)
{
    static const char scheme[] = "redis://";
    struct rds_config c;
    memset(&c, 0, sizeof(c));
    c.port = 6379;

    if (strncasecmp(url, scheme, sizeof(scheme) - 1) != 0)
        return rds_bad(why, "not a redis:// URL (TLS and unix sockets are not supported)");
    const char *p = url + sizeof(scheme) - 1;
    const char *end = p + strcspn(p, "/?#");
    if (*end == '?' || *end == '#')
        return rds_bad(why, "a redis URL takes no query or fragment");

    const char *at = memrchr(p, '@', (size_t)(end - p));
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (!colon)
            return rds_bad(why, "a user needs a password (user:password@)");
        if (rds_decode(p, (size_t)(colon - p), c.user, sizeof(c.user)) != 0)
            return rds_bad(why, "bad or too long user");
        if (rds_decode(colon + 1, (size_t)(at - colon - 1), c.password, sizeof(c.password)) != 0)
            return rds_bad(why, "bad or too long password");
        if (!c.password[0])
            return rds_bad(why, "empty password");
        p = at + 1;
    }

    const char *host = p, *host_end;
    if (*p == '[') {
        host = p + 1;
        host_end = memchr(host, ']', (size_t)(end - host));
        if (!host_end)
            return rds_bad(why, "unterminated [IPv6 address]");
        p = host_end + 1;
    } else {
        host_end = memchr(p, ':', (size_t)(end - p));
        if (!host_end)
            host_end = end;
        p = host_end;
    }
    size_t host_len = (size_t)(host_end - host);
    if (!rds_host_ok(host, host_len))
        return rds_bad(why, "bad or empty host");
    if (host_len >= sizeof(c.host))
        return rds_bad(why, "host too long");
    memcpy(c.host, host, host_len);

    if (p < end) {
        if (*p != ':' || rds_parse_uint(p + 1, (size_t)(end - p - 1), 65535, &c.port) != 0 ||
            c.port == 0)
            return rds_bad(why, "bad port (1..65535)");
    }
    if (*end == '/' && end[1] && rds_parse_uint(end + 1, strlen(end + 1), RDS_MAX_DB, &c.db) != 0)
        return rds_bad(why, "bad db number (0..1023)");

    /* Everything but timeout_ms, which the URL does not carry. */
    memcpy(out->host, c.host, sizeof(c.host));
    out->port = c.port;
    out->db = c.db;
    memcpy(out->password, c.password, sizeof(c.password));
    memcpy(out->user, c.user, sizeof(c.user));
    return 0;
}
