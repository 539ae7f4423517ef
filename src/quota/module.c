/* The quota module (SPEC 6): this node's counts and their write-behind.
 * The decision itself is made by the limit stage, in one call with the
 * rate limits (quota/quota.h). */
#include "quota/module.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "obs/metrics.h"
#include "quota/conf.h"
#include "util/mem.h"

void quota_thresholds(const struct config *cfg, const int **out, int *n)
{
    const struct quota_alerts_conf *ac = quota_alerts_conf(cfg);
    *out = ac->thresholds;
    *n = ac->n_thresholds;
}

void quota_count(struct worker *w, bool admitted)
{
    struct quota_worker *qw = quota_worker_of(w);
    metrics_counter_add(&qw->decisions[admitted ? 0 : 1], 1);
}

static int quota_init_process(struct gateway *gw, char **err)
{
    struct quota_gw *g = sl_calloc(1, sizeof(*g));
    g->store = quota_store_new(quota_conf(gw->cfg)->max_identities);
    gw->ctx[MOD_quota] = g;
    if (gw->cfg->store.backend == CFG_BACKEND_MEMORY) {
        g->persist = quota_persist_start(gw, g->store, gw->cfg->store.data_dir, err);
        if (!g->persist)
            return -1;
    }
    return 0;
}

static void quota_dispose_process(struct gateway *gw)
{
    struct quota_gw *g = quota_gw_of(gw);
    if (!g)
        return;
    quota_persist_stop(g->persist);
    quota_store_free(g->store);
    free(g);
    gw->ctx[MOD_quota] = NULL;
}

static void quota_init_worker(struct worker *w)
{
    w->ctx[MOD_quota] = sl_calloc(1, sizeof(struct quota_worker));
}

static void quota_dispose_worker(struct worker *w)
{
    free(w->ctx[MOD_quota]);
}

static const uint64_t *quota_decisions_of(struct worker *w)
{
    return quota_worker_of(w)->decisions;
}

static void quota_metrics(struct gateway *gw, struct buf *out)
{
    static const char *const outcomes[] = {"admitted", "refused"};
    metrics_render_fixed(gw, out, "sluice_quota_decisions_total",
                         "Requests of identities with a quota, by outcome.", "outcome", outcomes, 2,
                         quota_decisions_of);
    struct quota_store_stats s;
    quota_store_stats(quota_gw_of(gw)->store, &s);
    metrics_render_single(out, "sluice_quota_identities", "gauge",
                          "Identities whose quota counts this node holds.", s.entries);
    metrics_render_single(out, "sluice_quota_bytes", "gauge", "Memory held by quota counts.",
                          s.bytes);
    metrics_render_single(out, "sluice_quota_untracked_total", "counter",
                          "Requests admitted uncounted because quotas.max_identities was reached.",
                          s.untracked);
}

const struct sl_module quota_module = {
    .name = "quota",
    .conf = &quota_cfg_module,
    .init_process = quota_init_process,
    .dispose_process = quota_dispose_process,
    .init_worker = quota_init_worker,
    .dispose_worker = quota_dispose_worker,
    .metrics = quota_metrics,
};
