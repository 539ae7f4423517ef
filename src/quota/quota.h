#ifndef SLUICE_QUOTA_H
#define SLUICE_QUOTA_H
/* The quota module's side of a request (SPEC 6.1, 6.2). A quota is decided
 * in the same all-or-nothing call as the request's rate limits (the memory
 * store's locks, or the one Redis script), so the limit stage makes that
 * call: it asks quota_request() for the quota before, and quota_answer()
 * after. Neither refusal consumes the other. */

#include "pipeline/exchange.h"
#include "quota/store.h"
#include "util/buf.h"

struct gateway;

/* The quota of <x>'s identity on its route, with the periods holding now,
 * in <x>'s arena; NULL when none applies (no quota for its tier or key, or
 * an exempt identity). The limit stage does not ask on a route with
 * `limits: off`. */
struct quota_req *quota_request(struct exchange *x);

/* This node's quota counts: the embedded store, and on_failure: local. */
struct quota_store *quota_store_of(const struct gateway *gw);

/* Redis could not decide (on_failure: local): each of the <fleet_size>
 * gateways counts its share of the quota alone. */
void quota_share(struct quota_req *q, unsigned fleet_size);

/* The Redis script's quota verdict: <status> 1 admitted (<after> holds the
 * counts with this request), 0 refused by the quota (<after> the counts),
 * -1 not asked (the limits refused first). Fills q's decision as the memory
 * store would have. */
void quota_from_remote(struct quota_req *q, int status, const struct quota_usage *after);

/* After the decision, for a request the rate limits did not refuse: a
 * refused quota answers 429 (STAGE_DONE); an admitted one adds the
 * X-Quota-* headers, raises the alerts of the thresholds it crossed, and
 * returns STAGE_NEXT. */
enum stage_result quota_answer(struct exchange *x, struct quota_req *q);

/* The quota's items of the IETF RateLimit-Policy and RateLimit fields
 * ("daily-quota";q=1000;w=86400), each after a ", " when <policy> or
 * <state> already holds items. */
void quota_ietf_items(const struct quota_req *q, struct buf *policy, struct buf *state);

#endif
