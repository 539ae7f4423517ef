#ifndef SLUICE_ADMIN_H
#define SLUICE_ADMIN_H
/* The admin module: the admin API on admin.listen (every call needs the
 * bearer token) and its router, which serves the admin routes of every
 * module (sl_module.admin_routes). */
#include "pipeline/module.h"

/* Where a request for <method> <path> goes among <routes> (rows of every
 * module, <n_routes> tables each ending with a NULL pattern): the row, or
 * NULL with <allow> (at least 64 bytes) listing the methods the path takes
 * ("" when no pattern matches it). The {id} segment, when there is one,
 * goes to <id> (<id_cap> bytes; a longer one does not match). */
const struct sl_admin_route *admin_route_find(const struct sl_admin_route *const *routes,
                                              int n_routes, int method, const char *path, char *id,
                                              size_t id_cap, char *allow);

#endif
