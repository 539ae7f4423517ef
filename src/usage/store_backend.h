#ifndef SLUICE_USAGE_STORE_BACKEND_H
#define SLUICE_USAGE_STORE_BACKEND_H
/* Private to src/usage/store*.c: what a usage store backend provides; each
 * entry has the semantics of its usage_store_* function (usage/store.h). */

#include "usage/store.h"

struct usage_store_ops {
    struct usage_store *(*open)(const struct usage_store_opts *o, char **err);
    void (*close)(struct usage_store *s);
    enum usage_write_result (*write)(struct usage_store *s, const struct usage_table *t,
                                     const struct usage_retention *r, char **err);
    int64_t (*prune)(struct usage_store *s, int64_t now, const struct usage_retention *r,
                     char **err);
    int (*query)(struct usage_store *s, const struct usage_query *q, usage_row_fn fn, void *arg,
                 char **err);
};

/* Every backend's struct starts with this. */
struct usage_store {
    const struct usage_store_ops *ops;
};

extern const struct usage_store_ops usage_sqlite_ops; /* store_sqlite.c */
extern const struct usage_store_ops usage_redis_ops;  /* store_redis.c */

/* A malloc'd one-line error into *<err> (replacing what it held). */
void usage_set_err(char **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
