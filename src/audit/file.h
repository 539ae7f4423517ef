#ifndef SLUICE_AUDIT_FILE_H
#define SLUICE_AUDIT_FILE_H
/* Appending to the audit log, from the gateway's audit thread and from the
 * command line at the same time. Every append takes flock(LOCK_EX) on the
 * file, finds where the chain stands (its own memory when the file is
 * exactly as it left it: same inode, same size; else the file's last line,
 * or for an empty file the last line of <path>.1), rotates by size, seals
 * and appends its lines, and lets go. A write that fails is undone
 * (ftruncate to the old size), so the file never ends in half a line. */
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "audit/line.h"
#include "audit/queue.h"

struct audit_file {
    const char *path;         /* borrowed */
    int64_t max_size;         /* rotate before a write would pass it; 0: never */
    int keep;                 /* rotated files kept: <path>.1 ... <path>.<keep> */
    const unsigned char *key; /* 32 bytes, borrowed */
    /* The file as this appender left it. */
    bool known;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct audit_chain chain;
};

/* Appends the lines <items> (<n> heads, still owned by the caller) at
 * <now_us>, rotating between two lines where the file would pass
 * max_size (a file holds at least one line). Sets *<written> (may be NULL)
 * to how many lines were written: the first ones. 0, or -1 with *<err>
 * malloc'd when some were not. */
int audit_file_append(struct audit_file *f, const struct audit_item *items, size_t n,
                      int64_t now_us, size_t *written, char **err);

/* Where the chain of the file at <path> stands after its last line; -1
 * when it has none that parses. */
int audit_file_tail(const char *path, struct audit_chain *c);

#endif
