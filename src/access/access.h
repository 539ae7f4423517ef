#ifndef SLUICE_ACCESS_H
#define SLUICE_ACCESS_H
/* What other modules use of the access module: the refusal, for a key's
 * allow_ips (auth/stage.c). */

#include <stdbool.h>

#include "access/trie.h"
#include "pipeline/exchange.h"

/* Answers 403 {"error": "Forbidden", "message": "address not allowed"},
 * counted under <source> (enum acl_source, access/decide.h). */
void acl_refuse(struct exchange *x, int source);
/* Is the text address <ip> inside a network of <t>? */
bool acl_addr_in(const char *ip, const struct acl_trie *t);

#endif
