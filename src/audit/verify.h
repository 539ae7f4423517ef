#ifndef SLUICE_AUDIT_VERIFY_H
#define SLUICE_AUDIT_VERIFY_H
/* `sluice audit verify`: checks audit files as one chain. */
#include "util/buf.h"

enum audit_verdict {
    AUDIT_INTACT = 0,   /* every line checks */
    AUDIT_TAMPERED = 1, /* the first bad line is named */
    AUDIT_UNREADABLE = 2,
};

/* Checks the <n> files <paths>, oldest first (audit.log.2 audit.log.1
 * audit.log), as one chain under <key>. Appends to <msg> "ok: N lines", or
 * "FILE:LINE: why" for the first line that does not check (edited, missing
 * lines before it, out of order, truncated, a chain break between files),
 * or why a file cannot be read. */
enum audit_verdict audit_verify(const char *const *paths, int n, const unsigned char key[32],
                                struct buf *msg);

#endif
