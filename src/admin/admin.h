#ifndef SLUICE_ADMIN_H
#define SLUICE_ADMIN_H
/* The admin API on admin.listen: every call needs the bearer token. */
#include "pipeline/exchange.h"

/* 401 unless "Authorization: Bearer <admin.token>" (compared in constant time). */
enum stage_result admin_stage_auth(struct exchange *x);
/* GET /health, GET /metrics, POST /reload, POST /cache/purge, /keys...;
 * 404 otherwise. */
enum stage_result admin_stage_dispatch(struct exchange *x);

/* Reads the whole request body (at most 64 KiB, else 413), then calls
 * <done>; the caller's stage returns what this returns (STAGE_WAIT). */
enum stage_result admin_read_body(struct exchange *x,
                                  void (*done)(struct exchange *x, const char *body, size_t len));

/* /keys and /keys/{id}[/rotate] (SPEC 8), in admin/keys.c; STAGE_NEXT when
 * the path is not one of them. */
enum stage_result admin_keys(struct exchange *x);

#endif
