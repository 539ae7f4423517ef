#ifndef SLUICE_CLIENT_IP_H
#define SLUICE_CLIENT_IP_H
/* Who the client is, by address (SPEC 3.2): the socket peer, or, when the
 * peer is a trusted proxy, the rightmost X-Forwarded-For address that is not
 * itself trusted. A spoofed X-Forwarded-For from anyone else changes nothing. */

#include <stdbool.h>
#include <stddef.h>

#include "conf/conf.h"
#include "pipeline/exchange.h"

/* Is the textual address <ip> inside one of <cidrs>? */
bool cip_in_cidrs(const char *ip, const struct cfg_cidr *cidrs, int n);

/* The client address of a request from <peer> carrying headers <h>, into
 * <out> (>= 64 bytes). */
void cip_resolve(const struct cfg_server *srv, const char *peer, const struct sl_headers *h,
                 char *out, size_t outlen);

/* The limiter identity of address <ip>: "ip:203.0.113.7", or for IPv6 the
 * network of <ipv6_prefix> bits, "ip:2001:db8:1:2::/64", so one host cannot
 * dodge its limits by walking its /64. Into <out> (>= 64 bytes). */
void cip_identity(const char *ip, int ipv6_prefix, char *out, size_t outlen);

#endif
