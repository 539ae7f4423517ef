/* libFuzzer harness: the alert webhook's reading of the receiver's answer
 * (quota_webhook_read_status, quota/webhook.h), the receiver being
 * untrusted. The answer comes through a read callback, as from a socket.
 *
 * Input: four bytes of set-up, then the answer's bytes:
 *   [0] the most the callback returns per read (0: as much as asked);
 *   [1] how many times the answer is repeated (0 and 1: once; up to 255,
 *       so a head of hundreds of KB is a small input);
 *   [2..3] big-endian v: 0, or the callback fails once v >> 1 bytes are
 *       read (cancelled when v is odd, failed with its own reason when
 *       even), as the stop descriptor or the deadline do.
 *
 * Checked against a reference written from the head's grammar, with no
 * buffer: the outcome (a status 200..599, or which failure), and whether
 * the parser had to read past the callback's failure to decide. Also: the
 * parser never asks for more than QUOTA_WEBHOOK_HEAD_MAX bytes nor holds
 * more than that of a head (ASan checks every byte it is given room for),
 * and a failure of the callback is the outcome, its reason kept. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "quota/webhook.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define HEAD_MAX QUOTA_WEBHOOK_HEAD_MAX
#define STREAM_MAX (4u << 20)

enum ref_kind { REF_STATUS, REF_NOT_HTTP, REF_TOO_LONG, REF_CLOSED };

struct ref {
    enum ref_kind kind;
    int status;
    size_t need; /* bytes read before the outcome is known (n + 1: the end of the stream) */
    size_t head; /* where the final head starts */
};

static bool digit(char c)
{
    return c >= '0' && c <= '9';
}

/* The answer <s>/<n> as the grammar reads it: each head is a status line
 * "HTTP/1.D DDD" then SP, CR or LF, ending at the first LF; an interim one
 * (1xx) ends at its first empty line (LF LF or LF CR LF) and is skipped.
 * At most HEAD_MAX bytes of a head are held; the first 7 bytes of a head,
 * before any LF, must be "HTTP/1.". */
static struct ref reference(const char *s, size_t n)
{
    size_t pos = 0;
    for (;;) {
        struct ref r = {REF_NOT_HTTP, 0, 0, pos};
        const char *b = s + pos;
        size_t avail = n - pos < HEAD_MAX ? n - pos : HEAD_MAX;
        const char *nl = memchr(b, '\n', avail);
        size_t line = nl ? (size_t)(nl - b) : avail;
        if (line < 7 && nl) { /* too short to be a status line */
            r.need = pos + line + 1;
            return r;
        }
        if (line >= 7 && memcmp(b, "HTTP/1.", 7) != 0) {
            r.need = pos + 7;
            return r;
        }
        if (!nl) {
            r.kind = avail == HEAD_MAX ? REF_TOO_LONG : REF_CLOSED;
            r.need = avail == HEAD_MAX ? pos + HEAD_MAX : n + 1;
            return r;
        }
        r.need = pos + line + 1;
        if (line < 12 || !digit(b[7]) || b[8] != ' ' || !digit(b[9]) || !digit(b[10]) ||
            !digit(b[11]) || (b[12] != ' ' && b[12] != '\r' && b[12] != '\n'))
            return r;
        int status = (b[9] - '0') * 100 + (b[10] - '0') * 10 + (b[11] - '0');
        if (status < 100 || status > 599)
            return r;
        if (status >= 200) {
            r.kind = REF_STATUS;
            r.status = status;
            return r;
        }
        /* An interim head: up to its empty line, which must be within reach. */
        size_t end = 0;
        for (size_t i = line; i < avail && !end; i++) {
            if (b[i] != '\n')
                continue;
            if (i + 1 < avail && b[i + 1] == '\n')
                end = i + 2;
            else if (i + 2 < avail && b[i + 1] == '\r' && b[i + 2] == '\n')
                end = i + 3;
        }
        if (!end) {
            r.kind = avail == HEAD_MAX ? REF_TOO_LONG : REF_CLOSED;
            r.need = avail == HEAD_MAX ? pos + HEAD_MAX : n + 1;
            return r;
        }
        pos += end;
    }
}

struct stream {
    const char *s;
    size_t n, at;
    size_t piece;   /* 0: no limit */
    size_t fail_at; /* SIZE_MAX: never */
    int fail_with;  /* QUOTA_POST_CANCELLED or QUOTA_POST_FAILED */
    char *why;      /* the parser's <why>, which a failed read fills */
    size_t why_cap;
    bool failed; /* the callback returned fail_with */
    bool ended;  /* the callback returned 0 */
};

static const char READ_FAILED[] = "the callback's own reason";

static ssize_t stream_read(void *ctx, char *out, size_t cap)
{
    struct stream *st = ctx;
    if (st->failed || st->ended)
        FUZZ_ABORT(); /* read on after a failure or the end */
    if (cap == 0 || cap > HEAD_MAX)
        FUZZ_ABORT();
    memset(out, 0xa5, cap); /* all of <cap> is the parser's: ASan says if not */
    if (st->at == st->fail_at) {
        st->failed = true;
        if (st->fail_with == QUOTA_POST_FAILED)
            snprintf(st->why, st->why_cap, "%s", READ_FAILED);
        return st->fail_with;
    }
    size_t n = st->n - st->at;
    if (n > cap)
        n = cap;
    if (st->piece && n > st->piece)
        n = st->piece;
    if (st->fail_at != SIZE_MAX && n > st->fail_at - st->at)
        n = st->fail_at - st->at;
    if (n == 0)
        st->ended = true;
    memcpy(out, st->s + st->at, n);
    st->at += n;
    return (ssize_t)n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    size_t piece = data[0];
    size_t repeat = data[1] ? data[1] : 1;
    unsigned v = (unsigned)data[2] << 8 | data[3];
    const char *body = (const char *)data + 4;
    size_t len = size - 4;
    if (len * repeat > STREAM_MAX)
        repeat = STREAM_MAX / (len ? len : 1);
    size_t n = len * repeat;
    char *s = malloc(n ? n : 1);
    for (size_t i = 0; i < repeat; i++)
        memcpy(s + i * len, body, len);

    char *why = malloc(256);
    why[0] = '\0';
    struct stream st = {
        .s = s,
        .n = n,
        .piece = piece,
        .fail_at = v ? v >> 1 : SIZE_MAX,
        .fail_with = v & 1 ? QUOTA_POST_CANCELLED : QUOTA_POST_FAILED,
        .why = why,
        .why_cap = 256,
    };
    int rc = quota_webhook_read_status(stream_read, &st, why, 256);
    struct ref want = reference(s, n);

    if (st.failed) {
        /* The parser needed more than it had, and says what the callback said. */
        if (rc != st.fail_with || want.need <= st.fail_at)
            FUZZ_ABORT();
        if (rc == QUOTA_POST_FAILED && strcmp(why, READ_FAILED) != 0)
            FUZZ_ABORT();
    } else {
        if (want.need <= n && st.at < want.need)
            FUZZ_ABORT(); /* decided on less than it takes */
        switch (want.kind) {
        case REF_STATUS:
            if (rc != want.status || rc < 200 || rc > 599)
                FUZZ_ABORT();
            if (st.at - want.head > HEAD_MAX)
                FUZZ_ABORT(); /* more of the final head read than is held */
            break;
        case REF_NOT_HTTP:
            if (rc != QUOTA_POST_FAILED || !strstr(why, "not HTTP/1.x"))
                FUZZ_ABORT();
            break;
        case REF_TOO_LONG:
            if (rc != QUOTA_POST_FAILED || !strstr(why, "longer than 8192 bytes"))
                FUZZ_ABORT();
            break;
        case REF_CLOSED:
            if (rc != QUOTA_POST_FAILED || !st.ended || !strstr(why, "closed before an answer"))
                FUZZ_ABORT();
            break;
        }
    }
    free(why);
    free(s);
    return 0;
}
