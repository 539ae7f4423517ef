/* libFuzzer harness: the audit line reader of `sluice audit verify`
 * (audit_line_parse, audit_line_mac_ok; audit/line.h). Input: one line of
 * an audit file as anyone with write access to it could leave it.
 *
 * A line that is accepted has a seq >= 1, a mac of 64 lower-case hex
 * digits, and when it opens a file a prev of the same form; checking its
 * mac never crashes. And the other way round: a line the writer seals with
 * the input as its actor and target (cut at a NUL) is always accepted,
 * as seq 1, with the mac the chain moved on to, which checks. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/line.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const unsigned char key[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};

static bool is_mac(const char *s)
{
    if (strlen(s) != AUDIT_MAC_HEX)
        return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}

static void read_side(const char *line, size_t len)
{
    struct audit_line l;
    if (audit_line_parse(line, len, &l))
        return;
    if (l.seq < 1 || !is_mac(l.mac) || (l.opens && !is_mac(l.prev)))
        FUZZ_ABORT();
    char zeros[AUDIT_MAC_HEX + 1];
    memset(zeros, '0', AUDIT_MAC_HEX);
    zeros[AUDIT_MAC_HEX] = '\0';
    (void)audit_line_mac_ok(line, len, zeros, key);
}

static void write_side(const char *field)
{
    struct buf head = {0}, out = {0};
    audit_line_head(&head, 1767225600123456LL, field, "fuzz", field, "ok", "local");
    struct audit_chain c;
    audit_chain_init(&c);
    char zeros[AUDIT_MAC_HEX + 1];
    memcpy(zeros, c.mac, sizeof(zeros));
    audit_line_seal(&out, head.data, head.len, &c, key);
    if (out.len < 2 || out.data[out.len - 1] != '\n' || memchr(out.data, '\n', out.len - 1))
        FUZZ_ABORT(); /* one line, whatever the fields hold */
    struct audit_line l;
    if (audit_line_parse(out.data, out.len - 1, &l) || l.seq != 1 || l.opens ||
        memcmp(l.mac, c.mac, AUDIT_MAC_HEX) != 0 ||
        !audit_line_mac_ok(out.data, out.len - 1, zeros, key))
        FUZZ_ABORT();
    buf_release(&head);
    buf_release(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 2 * AUDIT_LINE_MAX)
        return 0;
    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';
    read_side(s, size);
    write_side(s);
    free(s);
    return 0;
}
