#ifndef SLUICE_AUTH_H
#define SLUICE_AUTH_H
/* Identity (SPEC 5): the process-wide key service (store connection on its
 * writer thread, the keyring workers read) and the pipeline stages that
 * authenticate a request, authorize it for its route, and answer the token
 * endpoints. */

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "auth/keypatch.h"
#include "auth/keyring.h"
#include "auth/keystore.h"
#include "modules.h"
#include "store/writer.h"

/* What the writer thread last found of the key store (service.c). */
enum auth_store {
    AUTH_STORE_OK,   /* answering, with the data the keys came from */
    AUTH_STORE_DOWN, /* cannot be reached */
    AUTH_STORE_LOST, /* answering, but its epoch moved: it lost its data */
};

struct keysnap;
struct auth_ctx {
    struct ks_db db; /* the writer thread's connection to the key store */
    struct dbw *writer;
    struct keyring_holder keys;
    int default_algo;         /* atomic: limits.algorithm, for per-key limits */
    struct evp_md_st *sha256; /* fetched once: see apikey_hash_md */
    /* Writer thread only: */
    int64_t next_flush_ms;
    bool rebuild_failing;          /* the last keyring build failed */
    bool snap_failing;             /* the last snapshot write failed */
    bool advised;                  /* ks_advice was asked once the store answered */
    enum auth_store store;         /* as last seen */
    enum auth_store built;         /* what the store was when the keyring was built */
    char epoch[KS_EPOCH_MAX];      /* the epoch the known keys came from; "": none yet */
    char lost_epoch[KS_EPOCH_MAX]; /* AUTH_STORE_LOST: the store's epoch now */
    struct keysnap *known;         /* the last keys read from a sound store (or the file) */
    char *snap_path;               /* <data_dir>/keyring.snapshot; NULL: the store is local */
    /* For metrics (atomic): the store answers; it lost its data; the keyring
     * is the store's (not the snapshot's or the last known). */
    int m_store_up, m_store_lost, m_from_store;
};

/* What the authentication and authorization stages made of a request. */
enum auth_result {
    AUTH_RESULT_API_KEY,   /* identified by an API key */
    AUTH_RESULT_JWT,       /* identified by a JWT */
    AUTH_RESULT_INVALID,   /* 401: credentials sent but not valid */
    AUTH_RESULT_MISSING,   /* 401: none sent on a route that requires them */
    AUTH_RESULT_FORBIDDEN, /* 403: a scope missing */
    AUTH_RESULT_N
};

struct auth_waiter;
/* worker->ctx[MOD_auth]: this worker's view of the keys. */
struct auth_worker {
    struct keyring *keyring; /* see keyring_sync */
    uint64_t keyring_gen;
    LIST_HEAD(, auth_waiter) key_waiters; /* requests whose key is unknown, until the store says */
    bool key_recheck;                     /* a question to the store is in flight */
    uint64_t results[AUTH_RESULT_N];
};

/* gw->ctx[MOD_auth] and worker->ctx[MOD_auth]. */
static inline struct auth_ctx *auth_ctx_of(const struct gateway *gw)
{
    return gw->ctx[MOD_auth];
}
static inline struct auth_worker *auth_worker_of(const struct worker *w)
{
    return w->ctx[MOD_auth];
}

/* Opens the store under <c>'s data_dir, reads the keys, starts the writer.
 * 0, or -1 with *<err> (malloc'd). */
int auth_open(struct auth_ctx *a, const struct config *c, char **err);
/* Flushes last-use times and stops the writer; no operation may be
 * submitted any more. */
void auth_close(struct auth_ctx *a);
/* After a reload: per-key limits naming no algorithm follow the new default. */
void auth_config_changed(struct auth_ctx *a, const struct config *c);

/* One store operation on behalf of an exchange: <run> on the writer thread,
 * then <done> on the exchange's loop, unless the client went away meanwhile
 * (then the result is dropped; a write that ran stays written). Fields are
 * the inputs and outputs of the operations that use them. */
struct auth_op;
typedef void (*auth_run_fn)(struct ks_db *db, struct auth_op *op);
typedef void (*auth_done_fn)(struct exchange *x, struct auth_op *op);
struct auth_op {
    struct exchange *x; /* NULL once the exchange ended */
    int refs;           /* the exchange's and the writer's */
    struct auth_ctx *ctx;
    auth_run_fn run;
    auth_done_fn done;
    /* inputs */
    struct ks_new req;
    char *strs[6];                    /* owned copies behind req's strings, freed with the op */
    char allow_ips[KS_ALLOW_IPS_MAX]; /* behind req.allow_ips */
    struct keypatch patch;            /* an update's fields (owns its strings, freed with the op) */
    char id[APIKEY_ID_MAX];
    int64_t grace_ms, ttl_ms;
    int64_t limit; /* a caller's bound the run checks (developer: active keys per owner) */
    char token[KS_REFRESH_MAX];
    /* outputs */
    enum ks_result rc;
    int spend; /* enum ks_spend */
    struct ks_key key;
    struct ks_key *list;
    int n_list;
    char secret[APIKEY_SECRET_MAX];
    char refresh[KS_REFRESH_MAX];
    char *err;
    /* POST /keys {"signing": true}: the id the signing secret is sealed for
     * (op->req.id), the secret shown once (hex), and its sealed form. */
    char signing_id[APIKEY_ID_MAX];
    char signing[KS_SIGNING_HEX_MAX];
    char sealed[KS_SIGNING_MAX];
};
/* A zeroed operation for <x> (owned by the op machinery). */
struct auth_op *auth_op_new(struct exchange *x, auth_run_fn run, auth_done_fn done);
/* Queue it; the caller's stage returns STAGE_WAIT. */
void auth_op_submit(struct auth_op *op);
/* Give up an operation that was never submitted. */
void auth_op_cancel(struct auth_op *op);
/* Writer thread: rebuild the keyring now, after a key changed (unless the
 * store cannot be reached: the keys in force stay). */
void auth_rebuild(struct auth_ctx *a, struct ks_db *db);
/* Writer thread: look at the store (reachable? its data lost?) and rebuild
 * the keyring when it changed, or when the store came back. */
void auth_refresh(struct auth_ctx *a, struct ks_db *db);

/* Stages, in pipeline order. */
/* Reads credentials (API key headers, Authorization: Bearer <key or JWT>)
 * and sets the identity; 401 for credentials that are sent but not valid. */
enum stage_result auth_stage_authn(struct exchange *x);
/* The route's auth: required and scopes: 401 without credentials, 403
 * without a scope. */
enum stage_result auth_stage_authz(struct exchange *x);
/* POST /auth/token and /auth/refresh (SPEC 5.2), after the limit stage. */
enum stage_result auth_stage_tokens(struct exchange *x);

/* For stages that identify a caller by a key of their own (request
 * signing): worker <w>'s current keyring (kept by the worker, no
 * reference taken), and the identity of key <k> set on <x> as the API key
 * stage sets it (<kind> ID_API_KEY). */
struct keyring *auth_keyring(struct worker *w);
void auth_set_key_identity(struct exchange *x, const struct keyring_key *k,
                           enum identity_kind kind);

/* The /keys admin routes (auth/admin_keys.c). */
extern const struct sl_admin_route auth_admin_routes[];
/* For the APIs that change keys (admin/keys, developer/): a key changed
 * through this gateway as {"type": <type>, "key": {...}, "actor": <actor>}
 * on GET /events (no "actor" when NULL; never the secret), and the audit
 * line of the operation (audit/audit.h) by <actor>, answered <status>:
 * the key it acted on, its tier on create, the grace on rotate. */
void auth_key_event(struct exchange *x, const struct auth_op *op, const char *type,
                    const char *actor);
void auth_key_audit(struct exchange *x, const struct auth_op *op, const char *action,
                    const char *actor, int status);

#endif
