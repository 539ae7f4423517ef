/* Quota threshold alerts: a log line until delivery lands. */
#include "quota/alert.h"

#include <stdio.h>

void quota_alert_raise(struct gateway *gw, const struct quota_alert *a)
{
    (void)gw;
    fprintf(stderr, "sluice: quota alert: %s %s %d%% (%lld of %lld)\n", a->identity,
            a->quota == QUOTA_DAILY ? "daily" : "monthly", a->threshold, (long long)a->used,
            (long long)a->limit);
}
