#ifndef SLUICE_QUOTA_ALERT_H
#define SLUICE_QUOTA_ALERT_H
/* Quota threshold alerts (SPEC 6.3). Placeholder until delivery lands. */

#include <stdint.h>

#include "pipeline/gateway.h"
#include "quota/period.h"

struct quota_alert {
    const char *identity;
    const char *key_id, *owner;
    enum quota_span quota;
    int threshold;
    int64_t used, limit, period_start, period_end;
};

void quota_alert_raise(struct gateway *gw, const struct quota_alert *a);

#endif
