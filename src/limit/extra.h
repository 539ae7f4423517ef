#ifndef SLUICE_LIMIT_EXTRA_H
#define SLUICE_LIMIT_EXTRA_H
/* Counters of a request beyond its tier's and its route's, asked for by a
 * stage that runs before the limit stage: the GraphQL module's type and
 * operation limits (SPEC 7.4). They are decided with the others, all or
 * nothing, in the same store call (memory or the Redis script), and a
 * refusal names what the stage says it counted (SPEC 3.5 `graphql`). The
 * limit module never reads a request body itself. */
#include "limit/limit.h"

struct exchange;

struct lim_extra {
    const struct limit *limit; /* the config's; LIM_DEFAULT: limits.algorithm */
    const char *scope;     /* the counter's scope in its key, e.g. "g:=/graphql/:op:tokenAuth" */
    unsigned times;        /* how often this request counts (>= 1): operations of a batch */
    const char *type;      /* a refusal by this counter names this type ... */
    const char *operation; /* ... and operation */
};

struct lim_extras {
    const struct lim_extra *v;
    int n;
    /* What a refusal by another limit (the route's) names; NULL: nothing. */
    const char *type, *operation;
};

/* Ask the limit stage of <x> to count <e> too. <e> and what it points to
 * must live as long as <x> (its arena, or the config). */
void lim_set_extras(struct exchange *x, const struct lim_extras *e);

#endif
