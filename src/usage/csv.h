#ifndef SLUICE_USAGE_CSV_H
#define SLUICE_USAGE_CSV_H
/* CSV as RFC 4180 writes it, for usage reports: records end with CRLF; a
 * field holding a comma, a double quote, CR or LF is enclosed in double
 * quotes, with each double quote inside doubled; other fields are written
 * as they are. Pure. */

#include <stdbool.h>
#include <stddef.h>

#include "util/buf.h"

/* Appends field <s>/<len> to <b>, after a comma unless it is the record's
 * <first>. */
void usage_csv_field(struct buf *b, const char *s, size_t len, bool first);
/* usage_csv_field of a C string. */
void usage_csv_str(struct buf *b, const char *s, bool first);
/* Ends the record. */
void usage_csv_end(struct buf *b);

#endif
