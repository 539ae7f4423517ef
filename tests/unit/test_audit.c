/* The audit log (src/audit): the line format and its mac chain against a
 * vector computed in Python (docs/protection.md), verify finding edited,
 * deleted, reordered and truncated lines, two writers sharing a file,
 * rotation by size, the bounded queue dropping and counting, and the
 * config section. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "audit/conf.h"
#include "audit/file.h"
#include "audit/line.h"
#include "audit/queue.h"
#include "audit/verify.h"
#include "conf/conf.h"
#include "support.h"

/* 2026-01-01T00:00:00.123456Z */
#define T0 1767225600123456LL

static unsigned char test_key[32];

static int setup_key(void **state)
{
    for (int i = 0; i < 32; i++)
        test_key[i] = (unsigned char)i;
    return 0;
}

static void head_of(struct buf *b, const char *target)
{
    audit_line_head(b, T0, "admin-api", "key.create", target, "ok", "127.0.0.1");
}

/* ---- the line ---------------------------------------------------------------------- */

static void test_time(void **state)
{
    char t[32];
    audit_time(T0, t);
    assert_string_equal(t, "2026-01-01T00:00:00.123Z");
    audit_time(0, t);
    assert_string_equal(t, "1970-01-01T00:00:00.000Z");
}

static void test_known_vector(void **state)
{
    /* hmac.new(bytes(range(32)), b"0"*64 + line_without_mac, sha256), and
     * the second line chained from the first's mac. */
    struct buf head = {0}, out = {0};
    head_of(&head, "key_1");
    struct audit_chain c;
    audit_chain_init(&c);
    audit_line_seal(&out, head.data, head.len, &c, test_key);
    audit_line_seal(&out, head.data, head.len, &c, test_key);
    buf_append(&out, "", 1);
    assert_string_equal(
        out.data,
        "{\"time\":\"2026-01-01T00:00:00.123Z\",\"actor\":\"admin-api\",\"action\":\"key.create\","
        "\"target\":\"key_1\",\"result\":\"ok\",\"client\":\"127.0.0.1\",\"seq\":1,"
        "\"mac\":\"006d10a71d6660435c8980ce9a0eac0c38f5cfd82d756a67d8c4ea82ef136c89\"}\n"
        "{\"time\":\"2026-01-01T00:00:00.123Z\",\"actor\":\"admin-api\",\"action\":\"key.create\","
        "\"target\":\"key_1\",\"result\":\"ok\",\"client\":\"127.0.0.1\",\"seq\":2,"
        "\"mac\":\"5eb59e8236b7eb598c374c4246890a6f0dc6ea5d388f29978191d0503db101b9\"}\n");
    assert_int_equal(c.seq, 2);
    assert_string_equal(c.mac, "5eb59e8236b7eb598c374c4246890a6f0dc6ea5d388f29978191d0503db101b9");
    buf_release(&head);
    buf_release(&out);
}

static void test_fields_escaped_and_parsed(void **state)
{
    struct buf head = {0}, out = {0};
    audit_line_head(&head, T0, "cli:a\"b", "key.update", "line\nbreak", NULL, "local");
    struct audit_chain c;
    audit_chain_init(&c);
    audit_line_seal(&out, head.data, head.len, &c, test_key);
    assert_null(memchr(out.data, '\n', out.len - 1)); /* one line, whatever the fields hold */
    buf_append(&out, "", 1);
    out.len--;
    assert_non_null(strstr(out.data, "\"target\":\"line\\u000abreak\""));
    assert_non_null(strstr(out.data, "\"result\":\"\""));
    struct audit_line l;
    assert_null(audit_line_parse(out.data, out.len - 1, &l));
    assert_int_equal(l.seq, 1);
    assert_false(l.opens);
    assert_memory_equal(l.mac, c.mac, AUDIT_MAC_HEX);
    char zeros[AUDIT_MAC_HEX + 1];
    memset(zeros, '0', AUDIT_MAC_HEX);
    zeros[AUDIT_MAC_HEX] = '\0';
    assert_true(audit_line_mac_ok(out.data, out.len - 1, zeros, test_key));
    assert_false(audit_line_mac_ok(out.data, out.len - 1, c.mac, test_key));
    /* Not lines of ours. */
    assert_non_null(audit_line_parse("{}", 2, &l));
    assert_non_null(audit_line_parse(out.data, out.len - 3, &l));
    buf_release(&head);
    buf_release(&out);
}

/* The worst a client can send as a path (every byte escaped to \u00XX)
 * still makes a line verify reads back. */
static void test_longest_fields_still_parse(void **state)
{
    char field[AUDIT_FIELD_MAX * 2 + 1];
    memset(field, 0x01, sizeof(field) - 1);
    field[sizeof(field) - 1] = '\0';
    struct buf head = {0}, out = {0};
    audit_line_head(&head, T0, field, field, field, field, field);
    struct audit_chain c;
    audit_chain_init(&c);
    audit_line_seal(&out, head.data, head.len, &c, test_key);
    assert_true(out.len > 6 * AUDIT_FIELD_MAX * 5);
    struct audit_line l;
    assert_null(audit_line_parse(out.data, out.len - 1, &l));
    buf_release(&head);
    buf_release(&out);
}

/* ---- files ------------------------------------------------------------------------- */

struct tdir {
    char dir[64];
    char path[128];
};

static void tdir_make(struct tdir *t)
{
    snprintf(t->dir, sizeof(t->dir), "/tmp/sluice-audit-XXXXXX");
    assert_non_null(mkdtemp(t->dir));
    snprintf(t->path, sizeof(t->path), "%s/audit.log", t->dir);
}

static void tdir_remove(struct tdir *t)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", t->dir);
    assert_int_equal(system(cmd), 0);
}

/* Appends one line per target of <targets> through <f>. */
static void append_lines(struct audit_file *f, int n, const char *prefix)
{
    for (int i = 0; i < n; i++) {
        char target[64];
        snprintf(target, sizeof(target), "%s%d", prefix, i);
        struct buf head = {0};
        head_of(&head, target);
        struct audit_item item = {head.data, head.len};
        char *err = NULL;
        assert_int_equal(audit_file_append(f, &item, 1, T0, NULL, &err), 0);
        buf_release(&head);
    }
}

static char *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    char *data = calloc(1, 1 << 20);
    *len = fread(data, 1, (1 << 20) - 1, fp);
    fclose(fp);
    return data;
}

static void spit(const char *path, const char *data, size_t len)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, len, fp), len);
    fclose(fp);
}

/* Start of line <n> (1-based) of <data>. */
static char *line_at(char *data, int n)
{
    char *p = data;
    for (int i = 1; i < n; i++)
        p = strchr(p, '\n') + 1;
    return p;
}

static enum audit_verdict verify1(const char *path, char *msg, size_t cap)
{
    struct buf m = {0};
    const char *paths[] = {path};
    enum audit_verdict v = audit_verify(paths, 1, test_key, &m);
    buf_append(&m, "", 1);
    snprintf(msg, cap, "%s", m.data);
    buf_release(&m);
    return v;
}

static void assert_verdict(const char *path, enum audit_verdict want, const char *starts)
{
    char msg[512], prefix[512];
    enum audit_verdict got = verify1(path, msg, sizeof(msg));
    snprintf(prefix, sizeof(prefix), "%s", starts);
    if (got != want || strncmp(msg, prefix, strlen(prefix)) != 0)
        fail_msg("verify %s: %d \"%s\", wanted %d \"%s...\"", path, got, msg, want, prefix);
}

static void new_log(struct tdir *t, struct audit_file *f)
{
    tdir_make(t);
    *f = (struct audit_file){.path = t->path, .keep = 3, .key = test_key};
    append_lines(f, 5, "key_");
}

static void test_verify_intact(void **state)
{
    struct tdir t;
    struct audit_file f;
    new_log(&t, &f);
    assert_verdict(t.path, AUDIT_INTACT, "ok: 6 lines"); /* audit.open and 5 */
    size_t len;
    char *data = slurp(t.path, &len);
    assert_non_null(strstr(data, "\"action\":\"audit.open\""));
    free(data);
    /* The wrong key: the first line does not check. */
    test_key[0] ^= 1;
    char want[256];
    snprintf(want, sizeof(want), "%s:1: edited", t.path);
    assert_verdict(t.path, AUDIT_TAMPERED, want);
    test_key[0] ^= 1;
    tdir_remove(&t);
}

static void test_verify_edit(void **state)
{
    struct tdir t;
    struct audit_file f;
    new_log(&t, &f);
    size_t len;
    char *data = slurp(t.path, &len);
    char *target = strstr(line_at(data, 3), "key_1");
    target[4] = '9'; /* key_1 -> key_9 */
    spit(t.path, data, len);
    char want[256];
    snprintf(want, sizeof(want), "%s:3: edited: its mac does not match", t.path);
    assert_verdict(t.path, AUDIT_TAMPERED, want);
    free(data);
    tdir_remove(&t);
}

static void test_verify_delete(void **state)
{
    struct tdir t;
    struct audit_file f;
    new_log(&t, &f);
    size_t len;
    char *data = slurp(t.path, &len);
    char *l3 = line_at(data, 3), *l4 = line_at(data, 4);
    memmove(l3, l4, len - (size_t)(l4 - data));
    spit(t.path, data, len - (size_t)(l4 - l3));
    char want[256];
    snprintf(want, sizeof(want), "%s:3: 1 line(s) missing before this one (seq 4 follows 2)",
             t.path);
    assert_verdict(t.path, AUDIT_TAMPERED, want);
    /* Deleting the first line: the chain's start is gone. */
    data = realloc(data, 1 << 20);
    len = len - (size_t)(l4 - l3);
    char *l2 = line_at(data, 2);
    spit(t.path, l2, len - (size_t)(l2 - data));
    snprintf(want, sizeof(want), "%s:1: the chain's start is missing", t.path);
    assert_verdict(t.path, AUDIT_TAMPERED, want);
    free(data);
    tdir_remove(&t);
}

static void test_verify_reorder(void **state)
{
    struct tdir t;
    struct audit_file f;
    new_log(&t, &f);
    size_t len;
    char *orig = slurp(t.path, &len);
    char *data = malloc(len);
    memcpy(data, orig, len);
    char *l3 = line_at(data, 3), *l4 = line_at(data, 4), *l5 = line_at(data, 5);
    size_t n3 = (size_t)(l4 - l3), n4 = (size_t)(l5 - l4);
    memcpy(l3, line_at(orig, 4), n4);
    memcpy(l3 + n4, line_at(orig, 3), n3);
    spit(t.path, data, len);
    char want[256];
    snprintf(want, sizeof(want), "%s:3: 1 line(s) missing", t.path); /* seq 4 where 3 was due */
    assert_verdict(t.path, AUDIT_TAMPERED, want);
    /* A line repeated: out of order. */
    size_t head = (size_t)(line_at(orig, 4) - orig);
    memcpy(data, orig, head);
    memcpy(data + head, line_at(orig, 3), n3);
    spit(t.path, data, head + n3);
    snprintf(want, sizeof(want), "%s:4: out of order (seq 3 after 3)", t.path);
    assert_verdict(t.path, AUDIT_TAMPERED, want);
    free(data);
    free(orig);
    tdir_remove(&t);
}

static void test_verify_truncated(void **state)
{
    struct tdir t;
    struct audit_file f;
    new_log(&t, &f);
    size_t len;
    char *data = slurp(t.path, &len);
    spit(t.path, data, len - 20);
    char want[256];
    snprintf(want, sizeof(want), "%s:6: truncated", t.path);
    assert_verdict(t.path, AUDIT_TAMPERED, want);
    /* The next append cuts the half line off (it can never check) and goes on. */
    f.known = false;
    append_lines(&f, 1, "after_");
    assert_verdict(t.path, AUDIT_INTACT, "ok: 6 lines");
    free(data);
    tdir_remove(&t);
}

/* The CLI and the gateway append to one file, each with its own memory of
 * where the chain stood: each sees the other's lines (size changed) and
 * follows them. */
static void test_two_writers(void **state)
{
    struct tdir t;
    tdir_make(&t);
    struct audit_file a = {.path = t.path, .keep = 3, .key = test_key};
    struct audit_file b = a;
    for (int i = 0; i < 5; i++) {
        append_lines(&a, 2, "gw_");
        append_lines(&b, 1, "cli_");
    }
    assert_verdict(t.path, AUDIT_INTACT, "ok: 16 lines");
    tdir_remove(&t);
}

static void test_rotation(void **state)
{
    struct tdir t;
    tdir_make(&t);
    struct audit_file f = {.path = t.path, .max_size = 1024, .keep = 2, .key = test_key};
    append_lines(&f, 40, "key_"); /* ~230 bytes a line: 4 a file */
    char p1[160], p2[160], p3[160];
    snprintf(p1, sizeof(p1), "%s.1", t.path);
    snprintf(p2, sizeof(p2), "%s.2", t.path);
    snprintf(p3, sizeof(p3), "%s.3", t.path);
    struct stat st;
    assert_int_equal(stat(p1, &st), 0);
    assert_true(st.st_size <= 1024);
    assert_int_equal(stat(p2, &st), 0);
    assert_int_equal(stat(p3, &st), -1); /* keep: 2 */
    assert_int_equal(stat(t.path, &st), 0);
    assert_true(st.st_size <= 1024);

    struct buf m = {0};
    const char *all[] = {p2, p1, t.path};
    assert_int_equal(audit_verify(all, 3, test_key, &m), AUDIT_INTACT);
    buf_release(&m);
    /* Each file alone checks from its audit.open line. */
    assert_verdict(p1, AUDIT_INTACT, "ok: ");
    /* A file left out between two: the chain breaks at the next one. */
    const char *gap[] = {p2, t.path};
    assert_int_equal(audit_verify(gap, 2, test_key, &m), AUDIT_TAMPERED);
    buf_append(&m, "", 1);
    char want[256];
    snprintf(want, sizeof(want), "%s:1: chain break", t.path);
    assert_true(strncmp(m.data, want, strlen(want)) == 0);
    buf_release(&m);
    tdir_remove(&t);
}

/* One batch bigger than max_size (the audit thread's, under load) is
 * split between files at line boundaries, not written past the bound. */
static void test_rotation_within_a_batch(void **state)
{
    struct tdir t;
    tdir_make(&t);
    struct audit_file f = {.path = t.path, .max_size = 1024, .keep = 9, .key = test_key};
    struct audit_item items[20];
    struct buf heads[20];
    for (int i = 0; i < 20; i++) {
        heads[i] = (struct buf){0};
        head_of(&heads[i], "key_batch");
        items[i] = (struct audit_item){heads[i].data, heads[i].len};
    }
    size_t written = 0;
    char *err = NULL;
    assert_int_equal(audit_file_append(&f, items, 20, T0, &written, &err), 0);
    assert_int_equal(written, 20);
    const char *paths[10];
    char names[10][160];
    int n = 0;
    for (int i = 9; i >= 1; i--) {
        snprintf(names[n], sizeof(names[n]), "%s.%d", t.path, i);
        struct stat st;
        if (stat(names[n], &st) == 0) {
            assert_true(st.st_size <= 1024);
            paths[n] = names[n];
            n++;
        }
    }
    assert_true(n >= 4); /* ~230 bytes a line, 20 lines, plus an audit.open line a file */
    paths[n++] = t.path;
    struct buf m = {0};
    assert_int_equal(audit_verify(paths, n, test_key, &m), AUDIT_INTACT);
    buf_release(&m);
    for (int i = 0; i < 20; i++)
        buf_release(&heads[i]);
    tdir_remove(&t);
}

static void test_write_error_leaves_no_half_line(void **state)
{
    struct audit_file f = {.path = "/dev/full", .keep = 1, .key = test_key};
    struct buf head = {0};
    head_of(&head, "key_1");
    struct audit_item item = {head.data, head.len};
    char *err = NULL;
    assert_int_equal(audit_file_append(&f, &item, 1, T0, NULL, &err), -1);
    assert_non_null(strstr(err, "No space left on device"));
    free(err);
    buf_release(&head);
}

/* ---- the queue --------------------------------------------------------------------- */

static void test_queue_full_drops(void **state)
{
    struct audit_queue *q = audit_queue_new(2);
    assert_true(audit_queue_push(q, "a", 1));
    assert_true(audit_queue_push(q, "bb", 2));
    assert_false(audit_queue_push(q, "c", 1)); /* full: dropped, not waited for */
    assert_int_equal(audit_queue_dropped(q), 1);
    struct audit_item items[4];
    assert_int_equal(audit_queue_take(q, items, 4, 0), 2);
    assert_string_equal(items[0].head, "a");
    assert_int_equal(items[1].len, 2);
    free(items[0].head);
    free(items[1].head);
    assert_int_equal(audit_queue_take(q, items, 4, 1), 0); /* empty: returns after the wait */
    assert_true(audit_queue_push(q, "d", 1));
    audit_queue_close(q);
    assert_false(audit_queue_push(q, "e", 1)); /* closed */
    assert_int_equal(audit_queue_dropped(q), 2);
    assert_true(audit_queue_closed(q));
    audit_queue_free(q); /* frees "d" */
}

/* ---- config ------------------------------------------------------------------------ */

#define UPSTREAM "upstreams:\n  app: {servers: [\"127.0.0.1:8000\"]}\n"
#define HEXKEY "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

static struct config *load(const char *yaml, char **err)
{
    return cfg_load_string(yaml, strlen(yaml), "/etc/sluice/t.yaml", NULL, NULL, err);
}

static void test_config(void **state)
{
    char *err = NULL;
    struct config *c = load(UPSTREAM "audit: {key: \"" HEXKEY "\", max_size: 2k, keep: 3}\n", &err);
    assert_non_null(c);
    const struct audit_conf *ac = audit_conf(c);
    assert_string_equal(ac->path, "/etc/sluice/./var/audit.log");
    assert_int_equal(ac->max_size, 2048);
    assert_int_equal(ac->keep, 3);
    assert_false(ac->requests);
    assert_memory_equal(ac->key.bytes, test_key, 32);
    cfg_unref(c);

    /* The store's key stands in. */
    c = load(UPSTREAM "store: {encryption_key: \"" HEXKEY "\"}\naudit: {path: /var/log/a.log}\n",
             &err);
    assert_non_null(c);
    assert_string_equal(audit_conf(c)->path, "/var/log/a.log");
    assert_memory_equal(audit_conf(c)->key.bytes, test_key, 32);
    cfg_unref(c);

    /* No section, or off: no audit log. */
    c = load(UPSTREAM "audit: off\n", &err);
    assert_non_null(c);
    assert_null(audit_conf(c)->path);
    cfg_unref(c);
    c = load(UPSTREAM, &err);
    assert_null(audit_conf(c)->path);
    cfg_unref(c);

    assert_null(load(UPSTREAM "audit: {requests: true}\n", &err));
    assert_string_equal(err, "/etc/sluice/t.yaml:3: audit: needs audit.key or "
                             "store.encryption_key (32 bytes as 64 hex digits or base64, e.g. "
                             "from `openssl rand -base64 32`) to chain its lines");
    free(err);
    err = NULL;
    assert_null(load(UPSTREAM "audit: {key: \"" HEXKEY "\", keep: 0}\n", &err));
    assert_non_null(strstr(err, "keep"));
    free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_time),
        cmocka_unit_test(test_known_vector),
        cmocka_unit_test(test_fields_escaped_and_parsed),
        cmocka_unit_test(test_longest_fields_still_parse),
        cmocka_unit_test(test_verify_intact),
        cmocka_unit_test(test_verify_edit),
        cmocka_unit_test(test_verify_delete),
        cmocka_unit_test(test_verify_reorder),
        cmocka_unit_test(test_verify_truncated),
        cmocka_unit_test(test_two_writers),
        cmocka_unit_test(test_rotation),
        cmocka_unit_test(test_rotation_within_a_batch),
        cmocka_unit_test(test_write_error_leaves_no_half_line),
        cmocka_unit_test(test_queue_full_drops),
        cmocka_unit_test(test_config),
    };
    return cmocka_run_group_tests(tests, setup_key, NULL);
}
