#include "net/worker.h"

#include <errno.h>
#include <signal.h>
#include <sys/random.h>
#include <unistd.h>

#include "net/conn.h"
#include "obs/accesslog.h"
#include "obs/metrics.h"
#include "pipeline/module.h"
#include "util/clock.h"
#include "util/mem.h"

/* Pending connections the kernel may queue per listener. */
#define LISTEN_BACKLOG 4096

/* ---- modules ------------------------------------------------------------------ */

/* Take up the gateway's newest config if it changed since we last looked. */
static void worker_sync_config(struct worker *w)
{
    struct gateway *gw = w->gw;
    pthread_mutex_lock(&gw->lock);
    if (gw->gen == w->cfg_gen) {
        pthread_mutex_unlock(&gw->lock);
        return;
    }
    struct config *cfg = gw->cfg;
    cfg_ref(cfg);
    w->cfg_gen = gw->gen;
    pthread_mutex_unlock(&gw->lock);
    struct wcfg *old = w->cur;
    w->cur = wcfg_new(w, cfg);
    metrics_forget_routes(w->metrics);
    wcfg_retire(old);
}

/* ---- shutdown ----------------------------------------------------------------- */

/* Every connection is gone: close the worker's own handles so uv_run returns. */
static void worker_stop(struct worker *w)
{
    if (w->stopped)
        return;
    w->stopped = true;
    accesslog_flush(w);
    worker_close_handle(w, (uv_handle_t *)&w->wake);
    worker_close_handle(w, (uv_handle_t *)&w->check);
    worker_close_handle(w, (uv_handle_t *)&w->prepare);
    worker_close_handle(w, (uv_handle_t *)&w->drain_timer);
    SL_EACH_MODULE(true, stop_worker, w);
    wcfg_retire(w->cur); /* closes idle upstream connections */
    w->cur = NULL;
}

void worker_conn_closed(struct worker *w)
{
    if (w->draining && w->n_conns == 0)
        worker_stop(w);
}

static void worker_on_drain_timeout(uv_timer_t *t)
{
    struct worker *w = t->data;
    while (w->conns)
        conn_close(w->conns);
}

/* SIGTERM: stop accepting, let in-flight requests finish (each connection
 * closes after its current response), force the rest after drain_ms. */
static void worker_start_drain(struct worker *w)
{
    if (w->draining)
        return;
    w->draining = true;
    w->n_deferred = 0; /* closing a listener closes the connection libuv holds for it */
    for (int i = 0; i < w->n_listeners; i++)
        worker_close_handle(w, (uv_handle_t *)&w->listeners[i]);
    if (w->admin_fd >= 0)
        worker_close_handle(w, (uv_handle_t *)&w->admin);
    struct conn *c = w->conns;
    while (c) {
        struct conn *next = conn_next(c);
        conn_close_when_idle(c);
        c = next;
    }
    if (w->n_conns == 0) {
        worker_stop(w);
        return;
    }
    w->drain_timer.data = w;
    uv_timer_start(&w->drain_timer, worker_on_drain_timeout,
                   (uint64_t)w->cur->cfg->server.timeouts.drain_ms, 0);
}

/* ---- loop callbacks ------------------------------------------------------------- */

static void worker_on_wake(uv_async_t *a)
{
    struct worker *w = a->data;
    if (w->stopped)
        return;
    worker_sync_config(w);
    if (__atomic_load_n(&w->gw->draining, __ATOMIC_ACQUIRE))
        worker_start_drain(w);
}

static void worker_on_check(uv_check_t *c)
{
    struct worker *w = c->data;
    conn_run_dirty(w);
    accesslog_flush(w);
}

static void worker_accept(struct worker *w, uv_stream_t *server)
{
    w->accepted++;
    conn_accept(w, server, server == (uv_stream_t *)&w->admin ? CONN_ADMIN : CONN_PUBLIC);
}

/* A new loop iteration: a new batch of accepts, starting with the listeners
 * deferred in the last one. uv_accept re-arms each (see below). */
static void worker_accept_deferred(struct worker *w)
{
    w->accepted = 0;
    int n = w->n_deferred;
    w->n_deferred = 0;
    for (int i = 0; i < n; i++)
        worker_accept(w, w->deferred[i]);
}

/* Work marked in timer or close callbacks must not wait for the next I/O
 * event: run it before the loop blocks in poll. */
static void worker_on_prepare(uv_prepare_t *p)
{
    struct worker *w = p->data;
    worker_accept_deferred(w);
    conn_run_dirty(w);
    accesslog_flush(w);
}

/* libuv calls this once per pending connection, in a loop, until accept(2)
 * would block. Past SL_ACCEPT_BATCH in one iteration we return without
 * uv_accept: libuv then keeps that connection and stops watching the
 * listener until uv_accept is called, which the next iteration's prepare
 * does. Reads and upstream replies of the connections already accepted are
 * handled in between, so a burst is taken in slices rather than all at once. */
static void worker_on_connection(uv_stream_t *server, int status)
{
    struct worker *w = server->data;
    if (status < 0 || w->draining)
        return;
    if (w->accepted >= SL_ACCEPT_BATCH) {
        w->deferred[w->n_deferred++] = server;
        metrics_accept_deferred(w->metrics);
        return;
    }
    worker_accept(w, server);
}

static int worker_open_listener(struct worker *w, uv_tcp_t *t, int fd)
{
    uv_tcp_init(&w->loop, t);
    t->data = w;
    int rc = uv_tcp_open(t, fd);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)t, LISTEN_BACKLOG, worker_on_connection);
    return rc;
}

static void worker_main(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < w->n_listeners; i++)
        if (worker_open_listener(w, &w->listeners[i], w->listen_fds[i]) != 0)
            fprintf(stderr, "sluice: worker %d cannot listen on fd %d\n", w->id, w->listen_fds[i]);
    if (w->admin_fd >= 0 && worker_open_listener(w, &w->admin, w->admin_fd) != 0)
        fprintf(stderr, "sluice: cannot open the admin listener\n");
    SL_EACH_MODULE(false, start_worker, w);
    /* A drain requested before we were listening would otherwise be missed. */
    worker_on_wake(&w->wake);
    uv_run(&w->loop, UV_RUN_DEFAULT);
}

static void worker_init(struct worker *w, struct gateway *gw, int id, struct config *cfg)
{
    w->id = id;
    w->gw = gw;
    uv_loop_init(&w->loop);
    uv_async_init(&w->loop, &w->wake, worker_on_wake);
    w->wake.data = w;
    uv_check_init(&w->loop, &w->check);
    w->check.data = w;
    uv_check_start(&w->check, worker_on_check);
    uv_prepare_init(&w->loop, &w->prepare);
    w->prepare.data = w;
    uv_prepare_start(&w->prepare, worker_on_prepare);
    uv_timer_init(&w->loop, &w->drain_timer);
    w->metrics = metrics_new();
    cfg_ref(cfg);
    w->cur = wcfg_new(w, cfg);
    w->cfg_gen = gw->gen;
    if (getrandom(&w->rid_state, sizeof(w->rid_state), 0) != sizeof(w->rid_state))
        w->rid_state = (uint64_t)clock_wall_us();
    w->rid_state ^= (uint64_t)id << 56;
    SL_EACH_MODULE(false, init_worker, w);
}

static void worker_release(struct worker *w)
{
    SL_EACH_MODULE(true, dispose_worker, w);
    uv_loop_close(&w->loop);
    conn_worker_release(w);
    arena_pool_clear(&w->arenas);
    metrics_free(w->metrics);
    buf_release(&w->log);
}

/* ---- the gateway ---------------------------------------------------------------- */

/* A listening socket bound to <a>; SO_REUSEPORT lets every worker have its
 * own, so the kernel spreads connections without a shared accept lock. */
static int gw_bind(const struct cfg_addr *a, bool reuseport, const char **why)
{
    int fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        *why = strerror(errno);
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (reuseport)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&a->sa, a->sa_len) != 0 ||
        listen(fd, LISTEN_BACKLOG) != 0) {
        *why = strerror(errno);
        close(fd);
        return -1;
    }
    return fd;
}

static int gw_open_sockets(struct gateway *gw)
{
    const struct config *cfg = gw->cfg;
    const char *why = NULL;
    for (int i = 0; i < gw->n_workers; i++) {
        struct worker *w = &gw->workers[i];
        for (int l = 0; l < cfg->server.n_listen; l++) {
            int fd = gw_bind(&cfg->server.listen[l], true, &why);
            if (fd < 0) {
                fprintf(stderr, "sluice: cannot listen on %s: %s\n", cfg->server.listen[l].text,
                        why);
                return -1;
            }
            w->listen_fds[w->n_listeners++] = fd;
        }
    }
    if (cfg->admin.enabled) {
        int fd = gw_bind(&cfg->admin.listen, false, &why);
        if (fd < 0) {
            fprintf(stderr, "sluice: cannot listen on %s (admin): %s\n", cfg->admin.listen.text,
                    why);
            return -1;
        }
        gw->workers[0].admin_fd = fd;
    }
    return 0;
}

/* The sockets gw_open_sockets opened, when the gateway stops before its
 * workers took them. */
static void gw_close_sockets(struct gateway *gw)
{
    for (int i = 0; i < gw->n_workers; i++) {
        struct worker *w = &gw->workers[i];
        for (int l = 0; l < w->n_listeners; l++)
            close(w->listen_fds[l]);
        w->n_listeners = 0;
        if (w->admin_fd >= 0)
            close(w->admin_fd);
        w->admin_fd = -1;
    }
}

static void gw_wake_workers(struct gateway *gw)
{
    for (int i = 0; i < gw->n_workers; i++)
        uv_async_send(&gw->workers[i].wake);
}

/* Each line of <warnings> as "sluice: reload: <line>". */
static void gw_print_warnings(const struct buf *warnings)
{
    const char *p = warnings->data, *end = p + warnings->len;
    while (p && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        fprintf(stderr, "sluice: reload: %.*s\n", (int)len, p);
        p += len + 1;
    }
}

int gw_reload(struct gateway *gw, char **err)
{
    struct config *cfg = cfg_load(gw->config_path, err);
    if (!cfg)
        return -1;
    pthread_mutex_lock(&gw->lock);
    const struct config *old = gw->cfg;
    struct buf warnings = {0};
    cfg_restart_changes(old, cfg, &warnings);
    SL_EACH_MODULE(false, on_reload, gw, old, cfg, &warnings);
    struct config *prev = gw->cfg;
    gw->cfg = cfg;
    gw->gen++;
    pthread_mutex_unlock(&gw->lock);
    gw_print_warnings(&warnings);
    buf_release(&warnings);
    cfg_unref(prev);
    gw_wake_workers(gw);
    return 0;
}

struct gw_signals {
    struct gateway *gw;
    uv_signal_t hup, term, intr;
};

static void gw_on_signal(uv_signal_t *s, int signum)
{
    struct gw_signals *sig = s->data;
    struct gateway *gw = sig->gw;
    if (signum == SIGHUP) {
        char *err = NULL;
        if (gw_reload(gw, &err) == 0) {
            fprintf(stderr, "sluice: configuration reloaded from %s\n", gw->config_path);
        } else {
            fprintf(stderr, "sluice: reload failed, keeping the running configuration:\n%s\n", err);
            free(err);
        }
        return;
    }
    fprintf(stderr, "sluice: %s received, draining\n", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    __atomic_store_n(&gw->draining, 1, __ATOMIC_RELEASE);
    gw_wake_workers(gw);
    uv_close((uv_handle_t *)&sig->hup, NULL);
    uv_close((uv_handle_t *)&sig->term, NULL);
    uv_close((uv_handle_t *)&sig->intr, NULL);
}

static void gw_release(struct gateway *gw)
{
    free(gw->workers);
    cfg_unref(gw->cfg);
    pthread_mutex_destroy(&gw->lock);
    free(gw->config_path);
}

int gw_serve(const char *path)
{
    char *err = NULL;
    struct config *cfg = cfg_load(path, &err);
    if (!cfg) {
        fprintf(stderr, "%s\n", err);
        free(err);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct gateway gw = {0};
    gw.config_path = sl_strdup(path);
    pthread_mutex_init(&gw.lock, NULL);
    gw.cfg = cfg;
    gw.gen = 1;
    gw.started_wall_us = clock_wall_us();
    gw.n_workers = cfg->server.workers;
    gw.workers = sl_calloc((size_t)gw.n_workers, sizeof(struct worker));
    for (int i = 0; i < gw.n_workers; i++)
        gw.workers[i].admin_fd = -1;
    /* First: an address in use is the likeliest failure, and nothing needs
     * undoing yet but the sockets themselves. */
    if (gw_open_sockets(&gw) != 0) {
        gw_close_sockets(&gw);
        gw_release(&gw);
        return 1;
    }
    pipeline_build(&gw.pipelines[0], &gw.pipelines[1]);
    int n_mods, started = 0;
    const struct sl_module *const *mods = sl_module_list(&n_mods);
    for (; started < n_mods; started++) {
        if (mods[started]->init_process && mods[started]->init_process(&gw, &err) != 0) {
            fprintf(stderr, "sluice: %s\n", err);
            free(err);
            for (int m = started - 1; m >= 0; m--)
                if (mods[m]->dispose_process)
                    mods[m]->dispose_process(&gw);
            gw_close_sockets(&gw);
            gw_release(&gw);
            return 1;
        }
    }
    for (int i = 0; i < gw.n_workers; i++)
        worker_init(&gw.workers[i], &gw, i, cfg);

    uv_loop_t main_loop;
    uv_loop_init(&main_loop);
    struct gw_signals sig = {.gw = &gw};
    uv_signal_t *handles[] = {&sig.hup, &sig.term, &sig.intr};
    int signums[] = {SIGHUP, SIGTERM, SIGINT};
    for (int i = 0; i < 3; i++) {
        uv_signal_init(&main_loop, handles[i]);
        handles[i]->data = &sig;
        uv_signal_start(handles[i], gw_on_signal, signums[i]);
    }
    for (int i = 0; i < gw.n_workers; i++)
        uv_thread_create(&gw.workers[i].thread, worker_main, &gw.workers[i]);
    fprintf(stderr, "sluice %s: %d worker(s) on", SLUICE_VERSION, gw.n_workers);
    for (int l = 0; l < cfg->server.n_listen; l++)
        fprintf(stderr, " %s", cfg->server.listen[l].text);
    if (cfg->admin.enabled)
        fprintf(stderr, ", admin on %s", cfg->admin.listen.text);
    fprintf(stderr, "\n");

    uv_run(&main_loop, UV_RUN_DEFAULT);
    for (int i = 0; i < gw.n_workers; i++)
        uv_thread_join(&gw.workers[i].thread);
    for (int i = 0; i < gw.n_workers; i++)
        worker_release(&gw.workers[i]);
    uv_loop_close(&main_loop);
    for (int m = n_mods - 1; m >= 0; m--)
        if (mods[m]->dispose_process)
            mods[m]->dispose_process(&gw);
    gw_release(&gw);
    fprintf(stderr, "sluice: stopped\n");
    return 0;
}
