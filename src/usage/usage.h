#ifndef SLUICE_USAGE_H
#define SLUICE_USAGE_H
/* The usage module's entry for other modules that answer with a usage
 * report of their own choosing (GET /developer/usage: the caller's keys
 * only). */

#include "pipeline/exchange.h"
#include "usage/report.h"

/* Answers <x> with report <r> (resolved: usage_report_resolve), run on the
 * usage thread after what is pending was written, as GET /usage answers:
 * 200 with the report, 400 or 503 with a JSON error. Takes <r>'s contents
 * (<r> is left empty); the caller's stage returns STAGE_WAIT. */
void usage_respond(struct exchange *x, struct usage_report *r);

#endif
