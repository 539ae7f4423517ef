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

/* The most a sealed line of head length <len> can take. */
static size_t audit_sealed_max(size_t len)
{
    return len + AUDIT_MAC_SUFFIX_LEN + 32; /* ,"seq":<20 digits>} and the newline */
}

/* Would <more> bytes after <size> pass <f>'s max_size? */
static bool audit_too_big(const struct audit_file *f, const struct stat *st, size_t more)
{
    return S_ISREG(st->st_mode) && f->max_size > 0 && st->st_size + (off_t)more > f->max_size;
}

/* Seals into <out>, after <c>, an audit.open line when <opens>, then as
 * many of <items> as fit under max_size (at least one); returns how many. */
static size_t audit_seal_some(const struct audit_file *f, const struct stat *st,
                              const struct audit_item *items, size_t n, int64_t now_us, bool opens,
                              struct audit_chain *c, struct buf *out)
{
    if (opens) {
        struct buf head = {0};
        audit_line_open_head(&head, now_us, audit_basename(f->path), c);
        audit_line_seal(out, head.data, head.len, c, f->key);
        buf_release(&head);
    }
    size_t i = 0;
    while (i < n && (i == 0 || !audit_too_big(f, st, out->len + audit_sealed_max(items[i].len)))) {
        audit_line_seal(out, items[i].head, items[i].len, c, f->key);
        i++;
    }
    return i;
}

/* One locked append of some of <items>: 0 with *<done> lines written, 1
 * to try again (rotated), -1 with *<err>. */
static int audit_append_some(struct audit_file *f, const struct audit_item *items, size_t n,
                             int64_t now_us, size_t *done, char **err)
{
    int fd;
    struct stat st;
    int rc = audit_open_locked(f, &fd, &st, err);
    if (rc != 0)
        return rc;
    struct audit_chain c;
    bool opens;
    audit_chain_at(f, fd, &st, &c, &opens);
    if (!opens)
        fstat(fd, &st); /* a cut partial line changed the size */
    if (st.st_size > 0 && audit_too_big(f, &st, audit_sealed_max(items[0].len))) {
        audit_rotate(f);
        close(fd); /* the lock goes with it; the next try opens the new file */
        return 1;
    }
    struct buf out = {0};
    *done = audit_seal_some(f, &st, items, n, now_us, opens, &c, &out);
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
    fdatasync(fd); /* best effort: /dev/full and pipes cannot */
    f->known = true;
    f->dev = st.st_dev;
    f->ino = st.st_ino;
    f->size = st.st_size + (off_t)out.len;
    f->chain = c;
    buf_release(&out);
    close(fd);
    return 0;
}

int audit_file_append(struct audit_file *f, const struct audit_item *items, size_t n,
                      int64_t now_us, size_t *written, char **err)
{
    size_t total = 0;
    int retries = 0;
    int rc = 0;
    while (total < n) {
        size_t done = 0;
        rc = audit_append_some(f, items + total, n - total, now_us, &done, err);
        if (rc < 0)
            break;
        if (rc > 0 && ++retries > AUDIT_OPEN_TRIES) {
            *err = audit_strdupf("audit: %s kept being rotated under this writer", f->path);
            rc = -1;
            break;
        }
        if (done > 0)
            retries = 0; /* a rotation between two parts of a batch is no race */
        total += done;
    }
    if (written)
        *written = total;
    return rc < 0 ? -1 : 0;
}
