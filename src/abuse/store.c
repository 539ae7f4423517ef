/* The ban store of the configured backend (abuse/store.h). */
#include "abuse/store.h"

struct abuse_store *abuse_store_open(const struct config *c, char **err)
{
    return c->store.backend == CFG_BACKEND_REDIS ? abuse_store_redis_open(c, err)
                                                 : abuse_store_sqlite_open(c, err);
}
