/* The usage store's entry points (usage/store.h): one backend, chosen when
 * the store opens. */
#include <stdarg.h>

#include "usage/store_backend.h"
#include "util/mem.h"

void usage_set_err(char **err, const char *fmt, ...)
{
    if (!err)
        return;
    va_list ap;
    va_start(ap, fmt);
    free(*err);
    *err = sl_vstrdupf(fmt, ap);
    va_end(ap);
}

struct usage_store *usage_store_open(const struct usage_store_opts *o, char **err)
{
    *err = NULL;
    const struct usage_store_ops *ops = o->redis ? &usage_redis_ops : &usage_sqlite_ops;
    struct usage_store *s = ops->open(o, err);
    if (s)
        s->ops = ops;
    return s;
}

void usage_store_close(struct usage_store *s)
{
    if (s)
        s->ops->close(s);
}

enum usage_write_result usage_store_write(struct usage_store *s, const struct usage_table *t,
                                          const struct usage_retention *r, char **err)
{
    if (!usage_table_first(t))
        return USAGE_WRITE_OK;
    return s->ops->write(s, t, r, err);
}

int64_t usage_store_prune(struct usage_store *s, int64_t now, const struct usage_retention *r,
                          char **err)
{
    return s->ops->prune(s, now, r, err);
}

int usage_store_query(struct usage_store *s, const struct usage_query *q, usage_row_fn fn,
                      void *arg, char **err)
{
    return s->ops->query(s, q, fn, arg, err);
}
