/* The keyring snapshot (see keysnap.h): records and secret hashes in
 * memory, and their JSON lines on disk. The file is written whole and
 * renamed into place, so a reader (a gateway starting while Redis is away)
 * sees the previous snapshot or the new one, never half of one. */
#include "auth/keysnap.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <jansson.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/db.h"
#include "util/mem.h"
#include "util/str.h"

#define KEYSNAP_FORMAT "sluice-keyring"
#define KEYSNAP_VERSION 1

/* A one-line error into *<err> (malloc'd, replacing what it held). */
static void keysnap_err(char **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void keysnap_err(char **err, const char *fmt, ...)
{
    free(*err);
    va_list ap;
    va_start(ap, fmt);
    *err = sl_vstrdupf(fmt, ap);
    va_end(ap);
}

struct keysnap_entry {
    struct ks_key key;
    struct ks_secret *secrets;
    int n;
};

struct keysnap {
    struct keysnap_entry *keys;
    int n, cap;
    char epoch[KS_EPOCH_MAX];
    int64_t written_ms;
};

struct keysnap *keysnap_new(void)
{
    return sl_calloc(1, sizeof(struct keysnap));
}

void keysnap_free(struct keysnap *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->n; i++)
        free(s->keys[i].secrets);
    free(s->keys);
    free(s);
}

void keysnap_add(const struct ks_key *k, const struct ks_secret *secrets, int n, void *arg)
{
    struct keysnap *s = arg;
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 16;
        s->keys = sl_realloc(s->keys, (size_t)s->cap * sizeof(*s->keys));
    }
    struct keysnap_entry *e = &s->keys[s->n++];
    e->key = *k;
    e->n = n;
    e->secrets = sl_malloc((size_t)(n + 1) * sizeof(*e->secrets));
    memcpy(e->secrets, secrets, (size_t)n * sizeof(*secrets));
}

int keysnap_count(const struct keysnap *s)
{
    return s->n;
}

const char *keysnap_epoch(const struct keysnap *s)
{
    return s->epoch;
}

void keysnap_set_epoch(struct keysnap *s, const char *epoch)
{
    str_copy(s->epoch, sizeof(s->epoch), epoch ? epoch : "");
}

int64_t keysnap_written_ms(const struct keysnap *s)
{
    return s->written_ms;
}

void keysnap_each(const struct keysnap *s, int64_t now_ms, ks_each_fn fn, void *arg)
{
    struct ks_secret *valid = NULL;
    int cap = 0;
    for (int i = 0; i < s->n; i++) {
        const struct keysnap_entry *e = &s->keys[i];
        if (e->key.state != KS_ACTIVE || (e->key.expires_ms && e->key.expires_ms <= now_ms))
            continue;
        if (e->n > cap) {
            cap = e->n;
            valid = sl_realloc(valid, (size_t)cap * sizeof(*valid));
        }
        int n = 0;
        for (int j = 0; j < e->n; j++)
            if (!e->secrets[j].valid_until_ms || e->secrets[j].valid_until_ms > now_ms)
                valid[n++] = e->secrets[j];
        if (n > 0)
            fn(&e->key, valid, n, arg);
    }
    free(valid);
}

void keysnap_merge(struct keysnap *into, const struct keysnap *from)
{
    int before = into->n; /* the keys of <from> need not be compared with each other */
    for (int i = 0; i < from->n; i++) {
        const struct keysnap_entry *e = &from->keys[i];
        bool have = false;
        for (int j = 0; j < before && !have; j++)
            have = strcmp(into->keys[j].key.id, e->key.id) == 0;
        if (!have)
            keysnap_add(&e->key, e->secrets, e->n, into);
    }
}

int keysnap_path(const char *data_dir, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s/%s", data_dir, KEYSNAP_FILE);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* ---- writing ------------------------------------------------------------- */

static json_t *keysnap_key_json(const struct keysnap_entry *e)
{
    const struct ks_key *k = &e->key;
    json_t *secrets = json_array();
    for (int i = 0; i < e->n; i++) {
        char hex[APIKEY_HEX_MAX];
        apikey_hex(e->secrets[i].hash, hex);
        json_array_append_new(secrets, json_pack("{s:s, s:I}", "sha256", hex, "valid_until_ms",
                                                 (json_int_t)e->secrets[i].valid_until_ms));
    }
    json_t *key = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:s}", "id", k->id,
        "name", k->name, "owner", k->owner, "tier", k->tier, "scopes", k->scopes, "limits",
        k->limits, "prefix", k->prefix, "quota_monthly", (json_int_t)k->quota_monthly,
        "quota_daily", (json_int_t)k->quota_daily, "expires_ms", (json_int_t)k->expires_ms,
        "created_ms", (json_int_t)k->created_ms, "last_used_ms", (json_int_t)k->last_used_ms,
        "revoked_ms", (json_int_t)k->revoked_ms, "rotated_until_ms",
        (json_int_t)k->rotated_until_ms, "state", k->state == KS_REVOKED ? "revoked" : "active");
    /* Sealed (util/seal.h), so the file holds no usable secret; absent for
     * a key that cannot sign, as in snapshots written before signing. */
    if (k->signing[0])
        json_object_set_new(key, "signing", json_string(k->signing));
    json_object_set_new(key, "allow_ips", json_string(k->allow_ips));
    return json_pack("{s:o, s:o}", "key", key, "secrets", secrets);
}

/* One JSON value and a newline to <f>; 0 or -1. */
static int keysnap_put_line(FILE *f, json_t *doc)
{
    int rc = doc && json_dumpf(doc, f, JSON_COMPACT) == 0 && fputc('\n', f) != EOF ? 0 : -1;
    json_decref(doc);
    return rc;
}

int keysnap_dump(const struct keysnap *s, FILE *f, int64_t now_ms)
{
    json_t *head =
        json_pack("{s:s, s:i, s:I, s:s, s:i}", "format", KEYSNAP_FORMAT, "version", KEYSNAP_VERSION,
                  "written_ms", (json_int_t)now_ms, "epoch", s->epoch, "keys", s->n);
    if (keysnap_put_line(f, head) < 0)
        return -1;
    for (int i = 0; i < s->n; i++)
        if (keysnap_put_line(f, keysnap_key_json(&s->keys[i])) < 0)
            return -1;
    return fflush(f) == 0 ? 0 : -1;
}

int keysnap_write(const struct keysnap *s, const char *path, int64_t now_ms, char **err)
{
    char dir[4096], tmp[4200];
    const char *slash = strrchr(path, '/');
    size_t dlen = slash ? (size_t)(slash - path) : 0;
    if (dlen >= sizeof(dir) ||
        (size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= sizeof(tmp)) {
        keysnap_err(err, "%s: path too long", path);
        return -1;
    }
    memcpy(dir, path, dlen);
    dir[dlen] = '\0';
    if (dlen && db_mkdirs(dir) < 0) {
        keysnap_err(err, "%s: cannot create the directory: %s", dir, strerror(errno));
        return -1;
    }
    /* 0600 from the start: the hashes are no secrets, but who holds the
     * file knows every key id, tier and owner. */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        keysnap_err(err, "%s: %s", tmp, strerror(errno));
        return -1;
    }
    FILE *f = fdopen(fd, "w");
    if (!f) {
        keysnap_err(err, "%s: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        return -1;
    }
    /* fchmod: a leftover temporary file keeps its old mode through O_TRUNC. */
    bool ok = fchmod(fd, 0600) == 0 && keysnap_dump(s, f, now_ms) == 0 && fsync(fd) == 0;
    int saved = errno;
    if (fclose(f) != 0 && ok) {
        ok = false;
        saved = errno;
    }
    if (!ok || rename(tmp, path) < 0) {
        keysnap_err(err, "%s: %s", ok ? path : tmp, strerror(ok ? errno : saved));
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* ---- reading ------------------------------------------------------------- */

/* String field <name> of <o> into <dst> (<cap> bytes); false when absent,
 * not a string, or too long. */
static bool keysnap_str(const json_t *o, const char *name, char *dst, size_t cap)
{
    const json_t *v = json_object_get(o, name);
    if (!json_is_string(v) || json_string_length(v) >= cap)
        return false;
    memcpy(dst, json_string_value(v), json_string_length(v) + 1);
    return true;
}

static bool keysnap_int(const json_t *o, const char *name, int64_t *dst)
{
    const json_t *v = json_object_get(o, name);
    if (!json_is_integer(v))
        return false;
    *dst = (int64_t)json_integer_value(v);
    return true;
}

/* One key line into <e> (secrets malloc'd); NULL, or what is wrong. */
static const char *keysnap_parse_key(const json_t *doc, struct keysnap_entry *e)
{
    memset(e, 0, sizeof(*e));
    const json_t *o = json_object_get(doc, "key"), *secrets = json_object_get(doc, "secrets");
    if (!json_is_object(o) || !json_is_array(secrets))
        return "not {\"key\": {...}, \"secrets\": [...]}";
    struct ks_key *k = &e->key;
    char state[16];
    if (!keysnap_str(o, "id", k->id, sizeof(k->id)) || !k->id[0] ||
        !keysnap_str(o, "tier", k->tier, sizeof(k->tier)) || !k->tier[0] ||
        !keysnap_str(o, "name", k->name, sizeof(k->name)) ||
        !keysnap_str(o, "owner", k->owner, sizeof(k->owner)) ||
        !keysnap_str(o, "scopes", k->scopes, sizeof(k->scopes)) ||
        !keysnap_str(o, "limits", k->limits, sizeof(k->limits)) ||
        !keysnap_str(o, "prefix", k->prefix, sizeof(k->prefix)) ||
        !keysnap_str(o, "state", state, sizeof(state)))
        return "a string field of the key is missing, empty or too long";
    if (!keysnap_int(o, "quota_monthly", &k->quota_monthly) ||
        !keysnap_int(o, "quota_daily", &k->quota_daily) ||
        !keysnap_int(o, "expires_ms", &k->expires_ms) ||
        !keysnap_int(o, "created_ms", &k->created_ms) ||
        !keysnap_int(o, "last_used_ms", &k->last_used_ms) ||
        !keysnap_int(o, "revoked_ms", &k->revoked_ms) ||
        !keysnap_int(o, "rotated_until_ms", &k->rotated_until_ms))
        return "a number field of the key is missing";
    /* Absent from snapshots written before keys had allow_ips. */
    if (json_object_get(o, "allow_ips") &&
        !keysnap_str(o, "allow_ips", k->allow_ips, sizeof(k->allow_ips)))
        return "allow_ips is not a string or too long";
    if (strcmp(state, "active") == 0)
        k->state = KS_ACTIVE;
    else if (strcmp(state, "revoked") == 0)
        k->state = KS_REVOKED;
    else
        return "state is neither active nor revoked";
    if (json_object_get(o, "signing") && !keysnap_str(o, "signing", k->signing, sizeof(k->signing)))
        return "signing is not a sealed secret";
    size_t n = json_array_size(secrets);
    if (n > KEYSNAP_SECRETS_MAX)
        return "too many secrets";
    e->secrets = sl_malloc((n + 1) * sizeof(*e->secrets));
    for (size_t i = 0; i < n; i++) {
        const json_t *s = json_array_get(secrets, i);
        const json_t *h = json_object_get(s, "sha256");
        if (!json_is_string(h) ||
            !apikey_unhex(json_string_value(h), json_string_length(h), e->secrets[i].hash) ||
            !keysnap_int(s, "valid_until_ms", &e->secrets[i].valid_until_ms))
            return "a secret is not {\"sha256\": \"<64 hex digits>\", \"valid_until_ms\": N}";
    }
    e->n = (int)n;
    return NULL;
}

int keysnap_read(const char *path, struct keysnap **out, char **err)
{
    *out = NULL;
    FILE *f = fopen(path, "re");
    if (!f) {
        if (errno == ENOENT)
            return 1;
        keysnap_err(err, "%s: %s", path, strerror(errno));
        return -1;
    }
    struct keysnap *s = keysnap_new();
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long lineno = 0;
    const char *why = NULL;
    bool head = false;
    while (!why && (len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if (len > KEYSNAP_LINE_MAX) {
            why = "line too long";
            break;
        }
        if (len <= 1 && (len == 0 || line[0] == '\n'))
            continue;
        json_t *doc = json_loadb(line, (size_t)len, 0, NULL);
        if (!json_is_object(doc)) {
            why = "not a JSON object";
        } else if (!head) {
            const json_t *fmt = json_object_get(doc, "format");
            const json_t *ver = json_object_get(doc, "version");
            if (!json_is_string(fmt) || strcmp(json_string_value(fmt), KEYSNAP_FORMAT) != 0)
                why = "not a sluice keyring snapshot (no \"format\": \"" KEYSNAP_FORMAT "\")";
            else if (!json_is_integer(ver) || json_integer_value(ver) != KEYSNAP_VERSION)
                why = "a snapshot version this sluice cannot read";
            else if (!keysnap_str(doc, "epoch", s->epoch, sizeof(s->epoch)) ||
                     !keysnap_int(doc, "written_ms", &s->written_ms))
                why = "no epoch or written_ms";
            head = true;
        } else if (s->n >= KEYSNAP_KEYS_MAX) {
            why = "too many keys";
        } else {
            struct keysnap_entry e;
            why = keysnap_parse_key(doc, &e);
            if (!why)
                keysnap_add(&e.key, e.secrets, e.n, s);
            free(e.secrets);
        }
        json_decref(doc);
    }
    bool read_error = ferror(f);
    free(line);
    fclose(f);
    if (!why && read_error)
        why = "read error";
    if (!why && !head)
        why = "empty file";
    if (why) {
        keysnap_err(err, "%s:%ld: %s", path, lineno, why);
        keysnap_free(s);
        return -1;
    }
    *out = s;
    return 0;
}
