/* The run-time access-list store (access/store.h).
 *
 * SQLite: table access_entries in <data_dir>/sluice.db, created when
 * missing (the module's own table; the core schema does not know it).
 *
 * Redis, under the configured prefix P:
 *   P access          hash: id -> "list\tcreated_ms\texpires_ms\tcidr\tnote"
 *   P access:seq      the last id handed out (INCR)
 *   P access:ver      bumped (INCR) after every change; gateways poll it */
#include "access/store.h"

#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/db.h"
#include "store/redis.h"
#include "util/mem.h"
#include "util/str.h"

#define ACL_REDIS_TIMEOUT_MS 1000

struct acl_store {
    sqlite3 *db;      /* memory backend */
    redisContext *rc; /* redis backend: NULL while down */
    bool redis;
    struct rds_config conf;
    char key[128], seq[140], ver[140];
    uint64_t local_ver; /* SQLite: only this gateway writes */
};

static const char acl_sql_create[] =
    "CREATE TABLE IF NOT EXISTS access_entries ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT, list TEXT NOT NULL, cidr TEXT NOT NULL,"
    " note TEXT NOT NULL DEFAULT '', created_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL)";

struct acl_store *acl_store_open(const struct config *c, char **err)
{
    struct acl_store *s = sl_calloc(1, sizeof *s);
    if (c->store.backend == CFG_BACKEND_REDIS) {
        s->redis = true;
        s->conf = c->store.redis.conn;
        const char *p = c->store.redis.prefix ? c->store.redis.prefix : "sluice:";
        snprintf(s->key, sizeof s->key, "%saccess", p);
        snprintf(s->seq, sizeof s->seq, "%s:seq", s->key);
        snprintf(s->ver, sizeof s->ver, "%s:ver", s->key);
        return s;
    }
    s->db = db_open(c->store.data_dir, err);
    if (!s->db) {
        free(s);
        return NULL;
    }
    char *msg = NULL;
    if (sqlite3_exec(s->db, acl_sql_create, NULL, NULL, &msg) != SQLITE_OK) {
        if (asprintf(err, "access: %s", msg ? msg : "cannot create the table") < 0)
            *err = NULL;
        sqlite3_free(msg);
        acl_store_close(s);
        return NULL;
    }
    return s;
}

void acl_store_close(struct acl_store *s)
{
    if (!s)
        return;
    if (s->db)
        db_close(s->db);
    if (s->rc)
        redisFree(s->rc);
    free(s);
}

/* ---- SQLite ------------------------------------------------------------ */

static int acl_sql_fail(struct acl_store *s, sqlite3_stmt *st, char *why, size_t cap)
{
    snprintf(why, cap, "access store: %s", sqlite3_errmsg(s->db));
    sqlite3_finalize(st);
    return -1;
}

static int acl_sql_load(struct acl_store *s, struct acl_entry **out, int *n, char *why, size_t cap)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT id, list, cidr, note, created_ms, expires_ms FROM "
                           "access_entries ORDER BY id",
                           -1, &st, NULL) != SQLITE_OK)
        return acl_sql_fail(s, st, why, cap);
    int len = 0, alloc = 16;
    struct acl_entry *v = sl_malloc((size_t)alloc * sizeof *v);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (len == alloc) {
            alloc *= 2;
            v = sl_realloc(v, (size_t)alloc * sizeof *v);
        }
        const char *note = (const char *)sqlite3_column_text(st, 3);
        if (acl_entry_set(&v[len], sqlite3_column_int64(st, 0),
                          (const char *)sqlite3_column_text(st, 1),
                          (const char *)sqlite3_column_text(st, 2), note,
                          sqlite3_column_int64(st, 4), sqlite3_column_int64(st, 5)))
            len++;
    }
    if (rc != SQLITE_DONE) {
        free(v);
        return acl_sql_fail(s, st, why, cap);
    }
    sqlite3_finalize(st);
    *out = v;
    *n = len;
    return 0;
}

static int acl_sql_add(struct acl_store *s, struct acl_entry *e, char *why, size_t cap)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db,
                           "INSERT INTO access_entries (list, cidr, note, created_ms, "
                           "expires_ms) VALUES (?, ?, ?, ?, ?)",
                           -1, &st, NULL) != SQLITE_OK)
        return acl_sql_fail(s, st, why, cap);
    sqlite3_bind_text(st, 1, acl_list_name(e->list), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, e->cidr, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, e->note, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, e->created_ms);
    sqlite3_bind_int64(st, 5, e->expires_ms);
    if (sqlite3_step(st) != SQLITE_DONE)
        return acl_sql_fail(s, st, why, cap);
    sqlite3_finalize(st);
    e->id = sqlite3_last_insert_rowid(s->db);
    s->local_ver++;
    return 0;
}

static int acl_sql_delete(struct acl_store *s, int64_t id, char *why, size_t cap)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, "DELETE FROM access_entries WHERE id = ?", -1, &st, NULL) !=
        SQLITE_OK)
        return acl_sql_fail(s, st, why, cap);
    sqlite3_bind_int64(st, 1, id);
    if (sqlite3_step(st) != SQLITE_DONE)
        return acl_sql_fail(s, st, why, cap);
    sqlite3_finalize(st);
    s->local_ver++;
    return sqlite3_changes(s->db) > 0;
}

/* ---- Redis ------------------------------------------------------------- */

/* The live connection, made again after it broke; NULL with <why>. */
static redisContext *acl_redis_live(struct acl_store *s, char *why, size_t cap)
{
    if (s->rc && s->rc->err) {
        redisFree(s->rc);
        s->rc = NULL;
    }
    if (s->rc)
        return s->rc;
    char *err = NULL;
    s->rc = rds_connect_sync(&s->conf, ACL_REDIS_TIMEOUT_MS, &err);
    if (!s->rc)
        snprintf(why, cap, "%s", err ? err : "redis: cannot connect");
    free(err);
    return s->rc;
}

/* The reply of a command on the live connection; NULL with <why>. */
static redisReply *acl_redis_call(struct acl_store *s, char *why, size_t cap, const char *fmt, ...)
{
    redisContext *rc = acl_redis_live(s, why, cap);
    if (!rc)
        return NULL;
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(rc, fmt, ap);
    va_end(ap);
    if (!r) {
        snprintf(why, cap, "redis: %s", rc->errstr);
        return NULL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(why, cap, "redis: %.*s", (int)r->len, r->str);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

/* "list\tcreated\texpires\tcidr\tnote" into <e>; false when malformed. */
static bool acl_redis_decode(int64_t id, const char *v, struct acl_entry *e)
{
    char list[8], cidr[ACL_CIDR_TEXT];
    long long created, expires;
    int off = 0;
    if (sscanf(v, "%7[a-z]\t%lld\t%lld\t%63[^\t]\t%n", list, &created, &expires, cidr, &off) < 4 ||
        off == 0)
        return false;
    return acl_entry_set(e, id, list, cidr, v + off, created, expires);
}

static int acl_redis_load(struct acl_store *s, struct acl_entry **out, int *n, char *why,
                          size_t cap)
{
    redisReply *r = acl_redis_call(s, why, cap, "HGETALL %s", s->key);
    if (!r)
        return -1;
    size_t pairs = r->type == REDIS_REPLY_ARRAY ? r->elements / 2 : 0;
    struct acl_entry *v = sl_malloc((pairs ? pairs : 1) * sizeof *v);
    int len = 0;
    for (size_t i = 0; i < pairs; i++) {
        const redisReply *k = r->element[2 * i], *val = r->element[2 * i + 1];
        if (k->type == REDIS_REPLY_STRING && val->type == REDIS_REPLY_STRING &&
            acl_redis_decode(strtoll(k->str, NULL, 10), val->str, &v[len]))
            len++;
    }
    freeReplyObject(r);
    *out = v;
    *n = len;
    return 0;
}

/* A change and the version bump that tells the fleet about it, in one
 * script: a gateway never sees the one without the other, whatever breaks
 * in between. KEYS: the hash, the sequence, the version. */
static const char acl_lua_add[] = "local id = redis.call('INCR', KEYS[2])\n"
                                  "redis.call('HSET', KEYS[1], id, ARGV[1])\n"
                                  "redis.call('INCR', KEYS[3])\n"
                                  "return id\n";
/* ARGV: the id. 1 removed, 0 none. */
static const char acl_lua_delete[] = "local n = redis.call('HDEL', KEYS[1], ARGV[1])\n"
                                     "if n > 0 then redis.call('INCR', KEYS[3]) end\n"
                                     "return n\n";

static int acl_redis_add(struct acl_store *s, struct acl_entry *e, char *why, size_t cap)
{
    char val[ACL_CIDR_TEXT + ACL_NOTE_MAX + 64];
    int len = snprintf(val, sizeof val, "%s\t%" PRId64 "\t%" PRId64 "\t%s\t%s",
                       acl_list_name(e->list), e->created_ms, e->expires_ms, e->cidr, e->note);
    redisReply *r = acl_redis_call(s, why, cap, "EVAL %s 3 %s %s %s %b", acl_lua_add, s->key,
                                   s->seq, s->ver, val, (size_t)len);
    if (!r)
        return -1;
    bool ok = r->type == REDIS_REPLY_INTEGER;
    e->id = ok ? r->integer : 0;
    freeReplyObject(r);
    if (!ok)
        snprintf(why, cap, "redis: unexpected reply to an access-list write");
    return ok ? 0 : -1;
}

static int acl_redis_delete(struct acl_store *s, int64_t id, char *why, size_t cap)
{
    char f[24];
    snprintf(f, sizeof f, "%" PRId64, id);
    redisReply *r = acl_redis_call(s, why, cap, "EVAL %s 3 %s %s %s %s", acl_lua_delete, s->key,
                                   s->seq, s->ver, f);
    if (!r)
        return -1;
    bool gone = r->type == REDIS_REPLY_INTEGER && r->integer > 0;
    freeReplyObject(r);
    return gone;
}

/* ---- dispatch ---------------------------------------------------------- */

int acl_store_load(struct acl_store *s, struct acl_entry **out, int *n, char *why, size_t cap)
{
    return s->redis ? acl_redis_load(s, out, n, why, cap) : acl_sql_load(s, out, n, why, cap);
}

int acl_store_add(struct acl_store *s, struct acl_entry *e, char *why, size_t cap)
{
    return s->redis ? acl_redis_add(s, e, why, cap) : acl_sql_add(s, e, why, cap);
}

int acl_store_delete(struct acl_store *s, int64_t id, char *why, size_t cap)
{
    return s->redis ? acl_redis_delete(s, id, why, cap) : acl_sql_delete(s, id, why, cap);
}

int acl_store_version(struct acl_store *s, uint64_t *v)
{
    if (!s->redis) {
        *v = s->local_ver;
        return 0;
    }
    char why[200];
    redisReply *r = acl_redis_call(s, why, sizeof why, "GET %s", s->ver);
    if (!r)
        return -1;
    *v = r->type == REDIS_REPLY_STRING ? strtoull(r->str, NULL, 10) : 0;
    freeReplyObject(r);
    return 0;
}
