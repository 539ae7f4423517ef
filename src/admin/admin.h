#ifndef SLUICE_ADMIN_H
#define SLUICE_ADMIN_H
/* The admin API on admin.listen: every call needs the bearer token. */
#include "pipeline/exchange.h"

/* 401 unless "Authorization: Bearer <admin.token>" (compared in constant time). */
enum stage_result admin_stage_auth(struct exchange *x);
/* GET /health, GET /metrics, POST /reload; 404 otherwise. */
enum stage_result admin_stage_dispatch(struct exchange *x);

#endif
