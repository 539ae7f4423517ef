/* The signing module (SPEC 7.2): on a route with `signing`, a request is
 * let on only when X-Sluice-Signature is the HMAC-SHA256, under the
 * signing secret of the key in X-Sluice-Key, of its canonical string
 * (signing/sig.h), its timestamp is within the route's skew, and its nonce
 * was not used before by that key (the replay cache: in memory, or in Redis
 * with store.backend redis so that a fleet shares it). The signing key then
 * identifies the caller, as an API key would.
 *
 * A body is read whole first (the proxy's request buffering: memory, then a
 * temp file) and hashed as it arrives, so the upstream sees no byte of a
 * request before its signature is verified; the proxy then sends it from
 * that buffer. Every refusal is a 401 naming the reason; a full replay cache
 * or, with on_failure deny, an unreachable Redis is a 503. */
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "auth/auth.h"
#include "fleet/fleet.h"
#include "obs/metrics.h"
#include "proxy/buffer.h"
#include "signing/conf.h"
#include "signing/sig.h"
#include "store/redis.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/mem.h"
#include "util/seal.h"

/* What became of the signed requests: sluice_signing_requests_total{result}. */
enum sig_count {
    SIG_C_OK,
    SIG_C_MISSING,
    SIG_C_MALFORMED,
    SIG_C_UNKNOWN_KEY,
    SIG_C_NO_SECRET,
    SIG_C_SKEW,
    SIG_C_BAD_SIGNATURE,
    SIG_C_REPLAY,
    SIG_C_CACHE_FULL,
    SIG_C_STORE_DOWN,
    SIG_C_UNDECRYPTABLE,
    SIG_C_N
};
static const char *const sig_count_names[SIG_C_N] = {
    "ok",           "missing",       "malformed", "unknown_key",       "no_secret",
    "skew",         "bad_signature", "replay",    "replay_cache_full", "store_unavailable",
    "undecryptable"};

/* worker->ctx[MOD_signing]: this worker's counters (it alone writes them). */
struct sig_worker {
    uint64_t counts[SIG_C_N];
};

/* x->ctx[MOD_signing]: a signed request on its way through the stage. */
struct sig_x {
    struct sig_headers h;          /* points into the request's headers (the arena) */
    struct keyring *kr;            /* a reference, so that <key> outlives a keyring change */
    const struct keyring_key *key; /* the signing key, in <kr> */
    EVP_MD_CTX *md;                /* the body's SHA-256 so far; NULL without a body */
};

/* A SET NX in Redis on behalf of an exchange that may end first. */
struct sig_remote {
    struct exchange *x; /* NULL once the exchange ended */
    int refs;
};

static struct sig_replay *sig_replay_of(const struct gateway *gw)
{
    return gw->ctx[MOD_signing];
}

static void sig_count(struct exchange *x, enum sig_count c)
{
    struct sig_worker *sw = x->worker->ctx[MOD_signing];
    metrics_counter_add(&sw->counts[c], 1);
}

static enum stage_result sig_refuse(struct exchange *x, enum sig_count c, int status,
                                    const char *message)
{
    sig_count(x, c);
    if (status == 401)
        exchange_add_header(x, "WWW-Authenticate", "Sluice-HMAC-SHA256 realm=\"sluice\"");
    else if (status == 503)
        exchange_add_header(x, "Retry-After", "1");
    exchange_respond_error(x, status, message);
    return STAGE_DONE;
}

/* Continue the pipeline from an asynchronous step with <res>. */
static void sig_then(struct exchange *x, enum stage_result res)
{
    if (res == STAGE_NEXT)
        exchange_resume(x);
}

static void sig_x_release(struct exchange *x, void *arg)
{
    struct sig_x *s = arg;
    EVP_MD_CTX_free(s->md);
    s->md = NULL;
    if (s->kr)
        keyring_unref(s->kr);
    s->kr = NULL;
}

/* ---- the decision's last steps ------------------------------------------------ */

static enum stage_result sig_accept(struct exchange *x, struct sig_x *s)
{
    sig_count(x, SIG_C_OK);
    keyring_touch((struct keyring_key *)s->key, clock_wall_us() / 1000);
    auth_set_key_identity(x, s->key, ID_API_KEY);
    return STAGE_NEXT;
}

static int64_t sig_window_us(const struct exchange *x)
{
    /* A timestamp is good from now - skew to now + skew: a nonce must be
     * remembered that long after it was seen. */
    return 2 * sig_route_conf(x->route)->skew_ms * 1000;
}

static enum stage_result sig_replay_memory(struct exchange *x, struct sig_x *s)
{
    switch (sig_replay_check(sig_replay_of(x->worker->gw), s->h.key_id, s->h.key_id_len, s->h.nonce,
                             s->h.nonce_len, clock_mono_us(), sig_window_us(x))) {
    case SIG_REPLAY_NEW:
        return sig_accept(x, s);
    case SIG_REPLAY_SEEN:
        return sig_refuse(x, SIG_C_REPLAY, 401, "nonce already used");
    default:
        return sig_refuse(x, SIG_C_CACHE_FULL, 503,
                          "the replay cache is full: try again, or sign fewer requests per key");
    }
}

/* Redis could not say (down, late, a wrong answer): store.redis.on_failure
 * says what happens instead, as for the limits. */
static enum stage_result sig_replay_fallback(struct exchange *x, struct sig_x *s)
{
    if (x->cfg->store.redis.on_failure == CFG_FAIL_DENY)
        return sig_refuse(x, SIG_C_STORE_DOWN, 503, "the replay cache store is unavailable");
    return sig_replay_memory(x, s); /* allow and local: this gateway's own memory */
}

static void sig_remote_unref(struct sig_remote *r)
{
    if (--r->refs == 0)
        free(r);
}

static void sig_remote_gone(struct exchange *x, void *arg)
{
    struct sig_remote *r = arg;
    r->x = NULL;
    sig_remote_unref(r);
}

static void sig_remote_reply(void *arg, enum rds_status st, const redisReply *reply)
{
    struct sig_remote *r = arg;
    struct exchange *x = r->x;
    if (x) {
        struct sig_x *s = x->ctx[MOD_signing];
        enum stage_result res;
        if (st == RDS_OK && reply->type == REDIS_REPLY_STATUS)
            res = sig_accept(x, s); /* OK: set, the nonce is new */
        else if (st == RDS_OK && reply->type == REDIS_REPLY_NIL)
            res = sig_refuse(x, SIG_C_REPLAY, 401, "nonce already used");
        else
            res = sig_replay_fallback(x, s);
        sig_then(x, res);
    }
    sig_remote_unref(r);
}

/* SET <prefix>n:{<key>}:<nonce> 1 NX PX <window>: one atomic "first use?"
 * for the whole fleet; the hash tag keeps a key's nonces on one Cluster
 * slot. */
static enum stage_result sig_replay(struct exchange *x, struct sig_x *s)
{
    struct worker *w = x->worker;
    struct fleet *f = fleet_of(w->gw);
    if (!f)
        return sig_replay_memory(x, s);
    struct rds *redis = fleet_redis(w);
    if (!redis || !rds_is_up(redis))
        return sig_replay_fallback(x, s);
    struct buf key = {0};
    buf_appendf(&key, "%sn:{%.*s}:%.*s", fleet_prefix(f), (int)s->h.key_id_len, s->h.key_id,
                (int)s->h.nonce_len, s->h.nonce);
    char px[24];
    snprintf(px, sizeof(px), "%lld", (long long)(sig_window_us(x) / 1000));
    const char *argv[] = {"SET", key.data, "1", "NX", "PX", px};
    size_t lens[] = {3, key.len, 1, 2, 2, strlen(px)};
    struct sig_remote *r = sl_calloc(1, sizeof(*r));
    r->x = x;
    r->refs = 2;
    exchange_on_end(x, sig_remote_gone, r);
    rds_command(redis, 6, argv, lens, sig_remote_reply, r); /* copies the arguments */
    buf_release(&key);
    return STAGE_WAIT; /* the reply resumes the exchange, possibly already */
}

/* The signature over the canonical string with body digest <body_hex>,
 * then the nonce. The secret is decrypted for this comparison only. */
static enum stage_result sig_verify(struct exchange *x, struct sig_x *s, const char *body_hex)
{
    uint8_t secret[SEAL_PLAIN_MAX];
    size_t n = 0;
    if (seal_open(x->cfg->store.encryption_key.bytes, s->key->id, s->key->signing, secret,
                  sizeof(secret), &n) < 0 ||
        n != SIG_SECRET_LEN)
        return sig_refuse(x, SIG_C_UNDECRYPTABLE, 500,
                          "the key's signing secret cannot be decrypted (was "
                          "store.encryption_key changed?)");
    struct buf canon = {0};
    sig_canonical(&canon, x->method_name, x->path, x->path_len, x->query, x->query_len, &s->h,
                  body_hex);
    bool ok = sig_mac_ok(secret, canon.data, canon.len, s->h.mac);
    OPENSSL_cleanse(secret, sizeof(secret));
    buf_release(&canon);
    if (!ok)
        return sig_refuse(x, SIG_C_BAD_SIGNATURE, 401, "bad signature");
    return sig_replay(x, s);
}

/* ---- the body --------------------------------------------------------------- */

static void sig_body_tap(void *arg, const char *data, size_t len)
{
    struct sig_x *s = arg;
    EVP_DigestUpdate(s->md, data, len);
}

static void sig_body_done(struct exchange *x)
{
    struct sig_x *s = x->ctx[MOD_signing];
    uint8_t digest[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    char hex[65];
    EVP_DigestFinal_ex(s->md, digest, &n);
    sig_hex(digest, 32, hex);
    sig_then(x, sig_verify(x, s, hex));
}

/* ---- the stage ---------------------------------------------------------------- */

static const char *sig_header(const struct exchange *x, const char *name, size_t *len)
{
    const struct sl_header *h = exchange_req_header(x, name);
    *len = h ? h->value_len : 0;
    return h ? h->value : NULL;
}

static enum stage_result sig_stage(struct exchange *x)
{
    const struct sig_route_conf *rc = sig_route_conf(x->route);
    if (!rc || !rc->enabled)
        return STAGE_NEXT;
    struct sig_x *s = arena_calloc(x->arena, sizeof(*s));
    size_t kl, tl, nl, sl;
    const char *k = sig_header(x, "x-sluice-key", &kl),
               *t = sig_header(x, "x-sluice-timestamp", &tl),
               *n = sig_header(x, "x-sluice-nonce", &nl),
               *sg = sig_header(x, "x-sluice-signature", &sl);
    const char *why;
    enum sig_parse_result pr = sig_parse(k, kl, t, tl, n, nl, sg, sl, &s->h, &why);
    if (pr == SIG_PARSE_MISSING) {
        if (!rc->required)
            return STAGE_NEXT; /* signing optional: an unsigned request goes on as it is */
        return sig_refuse(x, SIG_C_MISSING, 401, "signature required");
    }
    if (pr != SIG_PARSE_OK) {
        char msg[160];
        snprintf(msg, sizeof(msg), "malformed signature header: %s", why);
        return sig_refuse(x, SIG_C_MALFORMED, 401, msg);
    }

    int64_t now_ms = clock_wall_us() / 1000;
    char id[SIG_KEY_ID_MAX + 1];
    memcpy(id, s->h.key_id, s->h.key_id_len);
    id[s->h.key_id_len] = '\0';
    struct keyring *kr = auth_keyring(x->worker);
    const struct keyring_key *key = keyring_find_id(kr, id, now_ms);
    if (!key)
        return sig_refuse(x, SIG_C_UNKNOWN_KEY, 401, "unknown signing key");
    if (!key->signing[0])
        return sig_refuse(x, SIG_C_NO_SECRET, 401, "this key has no signing secret");
    int64_t off = s->h.ts * 1000 - now_ms;
    if (off > rc->skew_ms || -off > rc->skew_ms)
        return sig_refuse(x, SIG_C_SKEW, 401, "timestamp outside the allowed skew");

    keyring_ref(kr);
    s->kr = kr;
    s->key = key;
    x->ctx[MOD_signing] = s;
    exchange_on_end(x, sig_x_release, s);
    if (x->content_length <= 0 && !x->chunked)
        return sig_verify(x, s, sig_empty_body_hex);
    s->md = EVP_MD_CTX_new();
    if (!s->md || EVP_DigestInit_ex(s->md, EVP_sha256(), NULL) != 1)
        return sig_refuse(x, SIG_C_MALFORMED, 500, "cannot hash the request body");
    exchange_send_continue(x);
    px_body_read_tapped(x, sig_body_done, sig_body_tap, s);
    return STAGE_WAIT;
}

/* ---- the module ------------------------------------------------------------------ */

static int sig_init_process(struct gateway *gw, char **err)
{
    /* Its tables are made on first use: nothing is spent without signing. */
    gw->ctx[MOD_signing] = sig_replay_new();
    return 0;
}

static void sig_dispose_process(struct gateway *gw)
{
    sig_replay_free(sig_replay_of(gw));
}

static void sig_init_worker(struct worker *w)
{
    w->ctx[MOD_signing] = sl_calloc(1, sizeof(struct sig_worker));
}

static void sig_dispose_worker(struct worker *w)
{
    free(w->ctx[MOD_signing]);
}

static const uint64_t *sig_counts_of(struct worker *w)
{
    return ((struct sig_worker *)w->ctx[MOD_signing])->counts;
}

static void sig_metrics(struct gateway *gw, struct buf *out)
{
    metrics_render_fixed(gw, out, "sluice_signing_requests_total",
                         "Requests on signing routes, by what became of their signature.", "result",
                         sig_count_names, SIG_C_N, sig_counts_of);
}

static const struct sl_stage sig_stages[] = {
    {SL_PHASE_AUTHN, false, sig_stage},
};

const struct sl_module signing_module = {
    .name = "signing",
    .conf = &sig_cfg_module,
    .init_process = sig_init_process,
    .dispose_process = sig_dispose_process,
    .init_worker = sig_init_worker,
    .dispose_worker = sig_dispose_worker,
    .stages = sig_stages,
    .n_stages = 1,
    .metrics = sig_metrics,
};
