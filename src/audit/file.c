/* Appending to the audit log under flock (audit/file.h). */
#include "audit/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/mem.h"

/* An append gives up when the file is rotated under it this many times. */
#define AUDIT_OPEN_TRIES 8

/* The window read from a file's end to find its last line. */
#define AUDIT_TAIL_MAX (2 * AUDIT_LINE_MAX + 2)

static char *audit_strdupf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *audit_strdupf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = sl_vstrdupf(fmt, ap);
    va_end(ap);
    return s;
}

static char *audit_errf(const char *what, const char *path)
{
    return audit_strdupf("audit: %s %s: %s", what, path, strerror(errno));
}

/* The last complete line of <fd> (size <size>) into <c>. A partial last
 * line (a crash in the middle of a write) is cut off first: it has no mac
 * that could ever check. 0, or -1 when no line parses. */
static int audit_fd_tail(int fd, off_t size, struct audit_chain *c)
{
    size_t want = size < AUDIT_TAIL_MAX ? (size_t)size : AUDIT_TAIL_MAX;
    char *win = sl_malloc(want + 1);
    ssize_t got = pread(fd, win, want, size - (off_t)want);
    int rc = -1;
    if (got != (ssize_t)want)
        goto out;
    size_t end = want;
    if (end > 0 && win[end - 1] != '\n') {
        while (end > 0 && win[end - 1] != '\n')
            end--;
        if (end == 0 && (off_t)want < size)
            goto out; /* a "line" longer than any of ours: leave it to verify */
        if (ftruncate(fd, size - (off_t)(want - end)) < 0)
            goto out;
    }
    if (end == 0)
        goto out;
    size_t start = end - 1;
    while (start > 0 && win[start - 1] != '\n')
        start--;
    struct audit_line l;
    if (audit_line_parse(win + start, end - 1 - start, &l))
        goto out;
    memcpy(c->mac, l.mac, sizeof(c->mac));
    c->seq = l.seq;
    rc = 0;
out:
    free(win);
    return rc;
}

int audit_file_tail(const char *path, struct audit_chain *c)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat st;
    int rc = fstat(fd, &st) == 0 && st.st_size > 0 ? audit_fd_tail(fd, st.st_size, c) : -1;
    close(fd);
    return rc;
}

/* Renames <path> to <path>.1, <path>.1 to <path>.2 ..., dropping
 * <path>.<keep>. Under the lock of <path>. */
static void audit_rotate(const struct audit_file *f)
{
    size_t cap = strlen(f->path) + 16;
    char *from = sl_malloc(cap), *to = sl_malloc(cap);
    for (int i = f->keep - 1; i >= 1; i--) {
        snprintf(from, cap, "%s.%d", f->path, i);
        snprintf(to, cap, "%s.%d", f->path, i + 1);
        rename(from, to); /* ENOENT: fewer files so far */
    }
    snprintf(to, cap, "%s.1", f->path);
    rename(f->path, to);
    free(from);
    free(to);
}

/* Where the chain stands for an append to <fd> (<st>); sets *<opens> when
 * the lines must start with an audit.open line (a new file). */
static void audit_chain_at(struct audit_file *f, int fd, const struct stat *st,
                           struct audit_chain *c, bool *opens)
{
    *opens = false;
    if (st->st_size == 0) {
        size_t cap = strlen(f->path) + 4;
        char *prev = sl_malloc(cap);
        snprintf(prev, cap, "%s.1", f->path);
        if (audit_file_tail(prev, c) < 0)
            audit_chain_init(c);
        free(prev);
        *opens = true;
        return;
    }
    if (f->known && f->dev == st->st_dev && f->ino == st->st_ino && f->size == st->st_size) {
        *c = f->chain;
        return;
    }
    if (audit_fd_tail(fd, st->st_size, c) < 0) {
        /* The last line is not ours: start over, and verify says where. */
        audit_chain_init(c);
        *opens = true;
    }
}

static const char *audit_basename(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

static int audit_write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = EIO;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Opens <f>'s file and locks it, making sure the lock is on the file now
 * at the path (another process may rotate it in between). -1 on failure
 * (*err set), 0 with *<fd> locked, 1: try again. */
static int audit_open_locked(struct audit_file *f, int *fd, struct stat *st, char **err)
{
    *fd = open(f->path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (*fd < 0) {
        *err = audit_errf("cannot open", f->path);
        return -1;
    }
    while (flock(*fd, LOCK_EX) < 0) {
        if (errno != EINTR) {
            *err = audit_errf("cannot lock", f->path);
            close(*fd);
            return -1;
        }
    }
    struct stat at;
    if (fstat(*fd, st) < 0 || stat(f->path, &at) < 0 || at.st_ino != st->st_ino ||
        at.st_dev != st->st_dev) {
        close(*fd);
        return 1;
    }
    return 0;
}

/* Seals <items> after <c> (an audit.open line first when <opens>) into <out>. */
static void audit_seal_all(const struct audit_file *f, const struct audit_item *items, size_t n,
                           int64_t now_us, bool opens, struct audit_chain *c, struct buf *out)
{
    if (opens) {
        struct buf head = {0};
        audit_line_open_head(&head, now_us, audit_basename(f->path), c);
        audit_line_seal(out, head.data, head.len, c, f->key);
        buf_release(&head);
    }
    for (size_t i = 0; i < n; i++)
        audit_line_seal(out, items[i].head, items[i].len, c, f->key);
}

int audit_file_append(struct audit_file *f, const struct audit_item *items, size_t n,
                      int64_t now_us, char **err)
{
    for (int tries = 0; tries < AUDIT_OPEN_TRIES; tries++) {
        int fd;
        struct stat st;
        int rc = audit_open_locked(f, &fd, &st, err);
        if (rc < 0)
            return -1;
        if (rc > 0)
            continue;
        struct audit_chain c;
        bool opens;
        audit_chain_at(f, fd, &st, &c, &opens);
        if (!opens)
            fstat(fd, &st); /* a cut partial line changed the size */
        size_t estimate = 0;
        for (size_t i = 0; i < n; i++)
            estimate += items[i].len + AUDIT_MAC_SUFFIX_LEN + 32;
        if (S_ISREG(st.st_mode) && f->max_size > 0 && st.st_size > 0 &&
            st.st_size + (off_t)estimate > f->max_size) {
            audit_rotate(f);
            close(fd); /* the lock goes with it; the next try opens the new file */
            continue;
        }
        struct buf out = {0};
        audit_seal_all(f, items, n, now_us, opens, &c, &out);
        if (audit_write_all(fd, out.data, out.len) < 0) {
            *err = audit_errf("cannot write", f->path);
            if (S_ISREG(st.st_mode) && ftruncate(fd, st.st_size) < 0) {
                /* Half a line stays; the next append cuts it (audit_fd_tail). */
            }
            f->known = false;
            buf_release(&out);
            close(fd);
            return -1;
        }
        fdatasync(fd); /* best effort: /dev/null and pipes cannot */
        f->known = true;
        f->dev = st.st_dev;
        f->ino = st.st_ino;
        f->size = st.st_size + (off_t)out.len;
        f->chain = c;
        buf_release(&out);
        close(fd);
        return 0;
    }
    *err = audit_strdupf("audit: %s kept being rotated under this writer", f->path);
    return -1;
}
