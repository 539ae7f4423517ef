#ifndef SLUICE_QUOTA_MODULE_H
#define SLUICE_QUOTA_MODULE_H
/* Inside the quota module: its process and worker state. */

#include <stdint.h>

#include "modules.h"
#include "quota/persist.h"
#include "quota/store.h"

/* gw->ctx[MOD_quota] */
struct quota_gw {
    struct quota_store *store;
    struct quota_persist *persist; /* the embedded store's write-behind; NULL on Redis */
};

/* worker->ctx[MOD_quota] */
struct quota_worker {
    /* the periods holding now, for the config they were computed for */
    const struct quota_conf *conf, *month_conf;
    struct quota_period day, month;
    uint64_t decisions[2]; /* requests with a quota: admitted, refused */
};

static inline struct quota_gw *quota_gw_of(const struct gateway *gw)
{
    return gw->ctx[MOD_quota];
}

static inline struct quota_worker *quota_worker_of(const struct worker *w)
{
    return w->ctx[MOD_quota];
}

/* Counts a request with a quota, admitted or refused. */
void quota_count(struct worker *w, bool admitted);

/* The alert thresholds (percentages, ascending) of <cfg>. */
void quota_thresholds(const struct config *cfg, const int **out, int *n);

#endif
