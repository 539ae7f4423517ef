#ifndef SLUICE_WORKER_H
#define SLUICE_WORKER_H
/* Worker threads (one libuv loop each, SO_REUSEPORT listeners) and the
 * gateway process that owns them, the config snapshot and reloads. The
 * structures are pipeline/gateway.h's. */

#include "pipeline/gateway.h"

/* Run the gateway on the config at <path> until SIGTERM/SIGINT; the exit code. */
int gw_serve(const char *path);

/* Load the config file again and switch every worker to it. 0, or -1 with
 * *<err> (malloc'd "FILE:LINE: message" lines) and the old config kept.
 * Warnings about settings that wait for a restart go to stderr. */
int gw_reload(struct gateway *gw, char **err);

/* Called by conn.c when a connection closes; lets a draining worker stop. */
void worker_conn_closed(struct worker *w);

#endif
