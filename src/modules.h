#ifndef SLUICE_MODULES_H
#define SLUICE_MODULES_H
/* The modules of the gateway, one line each, in order: the order they are
 * set up in (and torn down in reverse) and the order of their stages within
 * a phase. A module reaches its ctx[] slots with its id, MOD_<name>; its
 * `const struct sl_module <name>_module` is in its own folder. Adding a
 * module is its files plus one line here (docs/hacking.md). */

#include "pipeline/module.h"

/* clang-format off */
#define SL_MODULES(X)                                                      \
    X(core)      /* pipeline/stages.c: /_sluice/health, routing */         \
    X(fleet)     /* fleet/: Redis connections, heartbeat, events */        \
    X(client_ip) /* guard/client_ip.c: the client address and identity */  \
    X(access)    /* access/: access lists (SPEC 7.1), /access */            \
    X(auth)      /* auth/: API keys, JWT, /auth/token, /keys */            \
    X(abuse)     /* abuse/: violations and bans (SPEC 7.3), /bans */        \
    X(signing)   /* signing/: request signing (SPEC 7.2) */                \
    X(graphql)   /* graphql/: GraphQL operations, caps and counters */   \
    X(limit)     /* limit/: rate limits */                                 \
    X(quota)     /* quota/: quotas (SPEC 6); config only so far */         \
    X(quota_alerts) /* quota/alert.c: alerts and their webhook */          \
    X(cache)     /* cache/: the response cache, /cache/purge */            \
    X(proxy)     /* proxy/: upstream pools and forwarding */               \
    X(usage)     /* usage/: usage metering and reports (SPEC 6.4) */       \
    X(developer) /* developer/: developer self-service (SPEC 8) */        \
    X(audit)     /* audit/: the chained audit log (SPEC 7.5) */            \
    X(admin)     /* admin/: the admin API's token, routes, /metrics */
/* clang-format on */

enum sl_module_id {
#define SL_MODULE_ID(name) MOD_##name,
    SL_MODULES(SL_MODULE_ID)
#undef SL_MODULE_ID
        SL_N_MODULES
};

#define SL_MODULE_DECL(name) extern const struct sl_module name##_module;
SL_MODULES(SL_MODULE_DECL)
#undef SL_MODULE_DECL

#endif
