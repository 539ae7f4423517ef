#ifndef SLUICE_REDIS_REPLY_H
#define SLUICE_REDIS_REPLY_H
/* Reply objects for hiredis's reader that come from a free list instead of
 * malloc: hiredis's own functions allocate every reply (and each element
 * and string of it) and free it right after its callback, several mallocs
 * per rate-limit decision on a Redis store. Objects keep small strings and
 * short arrays inline; larger ones are allocated as hiredis would. Objects
 * have the redisReply layout, so readers of replies see no difference.
 * Loop-thread only, like the connection that owns the pool. */

#include <hiredis/hiredis.h>

/* Free objects kept for reuse (an object is about 180 bytes): a pipeline of
 * a few hundred small replies in flight allocates nothing once warm. */
#define RDS_REPLY_KEEP 1024u

struct rds_reply_obj;

struct rds_reply_pool {
    struct rds_reply_obj *free;
    unsigned n_free;
    unsigned long long n_allocs; /* objects that had to be malloc'ed */
};

void rds_reply_pool_init(struct rds_reply_pool *p);
/* Frees the kept objects. No reply of the pool may be alive: the readers
 * that used it are freed. */
void rds_reply_pool_dispose(struct rds_reply_pool *p);

/* Makes <reader> build its replies from <p> (which must outlive it). Its
 * replies are freed with the reader's own freeObject, as before. */
void rds_reply_use(redisReader *reader, struct rds_reply_pool *p);

#endif
