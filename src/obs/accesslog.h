#ifndef SLUICE_ACCESSLOG_H
#define SLUICE_ACCESSLOG_H
/* The access log: one line per request on stdout, nginx "combined" first so
 * existing tools parse it, then sluice's own fields. Lines are batched per
 * worker and written once per loop iteration (accesslog_flush). */

struct worker;
struct exchange;

void accesslog_exchange(struct worker *w, const struct exchange *x);
void accesslog_flush(struct worker *w);

#endif
