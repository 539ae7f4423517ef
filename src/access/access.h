#ifndef SLUICE_ACCESS_H
#define SLUICE_ACCESS_H
/* What other modules may use of the access module: its refusal, so that
 * every "address not allowed" looks and counts the same. */

#include <stdbool.h>

#include "pipeline/exchange.h"

/* Answers 403 {"error": "Forbidden", "message": "address not allowed"},
 * counted under <source> (enum acl_source, access/decide.h). */
void acl_refuse(struct exchange *x, int source);

#endif
