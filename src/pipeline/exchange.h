#ifndef SLUICE_EXCHANGE_H
#define SLUICE_EXCHANGE_H
/* One request and its response. Created by the connection when a request's
 * headers are complete, run through the listener's stage array, and freed
 * (with its arena) when both the request has been read and the response has
 * been handed to the socket, or when the connection dies. */

#include <stdbool.h>
#include <stdint.h>

#include "conf/conf.h"
#include "util/arena.h"
#include "util/limits.h"

struct conn;
struct worker;
struct wcfg;
struct read_body;

struct sl_header {
    const char *name, *value;
    size_t name_len, value_len;
};

struct sl_headers {
    struct sl_header *v;
    int n, cap;
};

enum stage_result {
    STAGE_NEXT, /* go on with the next stage */
    STAGE_DONE, /* the stage answered (or is answering) the request */
    STAGE_WAIT, /* async work started; the stage calls exchange_resume() later */
};

/* Who is asking (SPEC 3.2): filled by the client_ip stage from the address,
 * later by API keys and JWT. Counters are keyed by <id>. */
enum identity_kind { ID_IP, ID_API_KEY, ID_JWT };

struct identity {
    enum identity_kind kind;
    char id[96];      /* "ip:203.0.113.7", "ip:2001:db8:1:2::/64", "key:...", "sub:..." */
    const char *tier; /* a tier name; "anonymous" for ID_IP */
    bool exempt;      /* no limits at all (exempt tier or role) */
    /* Set by the authentication stage; strings and limits live in the arena. */
    const char *key_id; /* the API key behind the request (directly or by a token we issued) */
    const char *label;  /* who, in the access log: a key's visible prefix, a JWT's sub */
    const char *owner;  /* the key's owner; NULL: none */
    const char *scopes; /* space-separated; NULL: none */
    const struct limit *limits; /* per-key limits replacing the tier's; n_limits 0: none */
    int n_limits;
    /* A key's own quotas replacing its tier's (SPEC 6.1); -1: the tier's. */
    int64_t quota_daily, quota_monthly;
    /* The networks the key may be used from (SPEC 7.1: allow_ips), checked
     * by the access module after authentication; n_allow_ips 0: any. */
    const struct cfg_cidr *allow_ips;
    int n_allow_ips;
};

/* What refused a request, for usage and audit (SPEC 6.4: 429s by cause). */
enum sl_refusal {
    SL_REFUSED_NONE,
    SL_REFUSED_LIMIT,
    SL_REFUSED_QUOTA,
    SL_REFUSED_BAN,
    SL_REFUSED_ACCESS, /* an access list (SPEC 7.1): 403 */
};

/* The name logs give refusal <r> ("limit", "ban"...), NULL for none. */
static inline const char *sl_refusal_name(enum sl_refusal r)
{
    switch (r) {
    case SL_REFUSED_LIMIT:
        return "limit";
    case SL_REFUSED_QUOTA:
        return "quota";
    case SL_REFUSED_BAN:
        return "ban";
    case SL_REFUSED_ACCESS:
        return "access";
    default:
        return NULL;
    }
}

struct exchange;
typedef enum stage_result (*stage_fn)(struct exchange *x);

/* A response filter sees the response of an exchange as it is produced,
 * whoever produces it (the proxy or a stage), before the sink: the cache
 * captures what it stores through one. <head> returning true means the
 * filter answered the request itself instead (after removing itself), and
 * what the producer sends next is ignored. Filters run in the order they
 * were added. */
struct response_filter {
    bool (*head)(struct exchange *x, void *arg, int status, const struct sl_headers *h,
                 int64_t content_length, bool no_body);
    void (*body)(struct exchange *x, void *arg, const char *data, size_t len);
    void (*end)(struct exchange *x, void *arg);
    void *arg;
    struct response_filter *next;
};

/* Where a response goes after the filters: the client connection
 * (net/conn.c), nowhere (a detached exchange), or a test's fake. The sink
 * also carries what a producer asks of the client side: flow control of the
 * request body and of the response. */
struct exchange_sink {
    /* <headers> are already free of hop-by-hop fields; <content_length> -1:
     * unknown length; <no_body>: HEAD, 204, 304. */
    void (*head)(struct exchange *x, int status, const struct sl_headers *headers,
                 int64_t content_length, bool no_body);
    void (*body)(struct exchange *x, const char *data, size_t len);
    void (*end)(struct exchange *x);
    /* The response cannot be completed: the client sees the connection close. */
    void (*abort)(struct exchange *x);
    /* "100 Continue" when the client asked for it. */
    void (*send_continue)(struct exchange *x);
    /* Bytes queued toward the client and not yet written. */
    size_t (*pending)(const struct exchange *x);
    /* Stop / start reading the request body. */
    void (*pause_body)(struct exchange *x);
    void (*resume_body)(struct exchange *x);
};

/* Receives request body bytes as they arrive (<len> 0 and <end> true: the
 * body is complete). Set by the stage that consumes the body (the proxy). */
typedef void (*body_sink_fn)(struct exchange *x, const char *data, size_t len, bool end);

struct body_chunk {
    struct body_chunk *next;
    size_t len;
    char data[];
};

struct exchange {
    struct arena *arena;
    struct conn *conn; /* NULL once the client has gone */
    struct worker *worker;
    struct wcfg *hold; /* the config snapshot this exchange runs on */
    const struct config *cfg;
    const stage_fn *stages;
    int n_stages, stage;
    bool admin;    /* on the admin listener: not counted as API traffic */
    bool detached; /* no client (a background refresh): freed when its response ends */
    /* The response never ends by itself (an event stream): the client's
     * half-close ends it at once, and a draining gateway ends it. */
    bool stream;

    /* Request, as parsed. Strings live in the arena. */
    int method; /* llhttp_method_t */
    const char *method_name;
    char *target; /* request-target as sent */
    size_t target_len;
    char *path; /* target without the query; NUL-terminated copy */
    size_t path_len;
    const char *query; /* after '?', or NULL */
    size_t query_len;
    int http_minor; /* 0 or 1 (major is always 1) */
    struct sl_headers req_headers;
    const char *host;
    size_t host_len;
    int64_t content_length; /* -1: none */
    bool chunked;
    bool expect_continue;
    bool client_keep_alive;
    char request_id[SL_MAX_REQUEST_ID + 1];
    char peer_ip[64];   /* the socket peer */
    int local_port;     /* the listener's port the request came in on; 0: none */
    char client_ip[64]; /* the client, after trusted proxies (client_ip stage) */
    struct identity identity;
    int64_t start_us;

    /* Request body flow: queued until a sink is set. */
    body_sink_fn body_sink;
    struct body_chunk *body_q, **body_q_tail;
    size_t body_q_bytes;
    uint64_t body_bytes;
    bool request_done;

    /* Filled by stages. */
    const struct cfg_route *route;
    struct sl_headers resp_extra; /* added to whatever response is sent */
    const char *upstream_addr;
    int upstream_tries; /* servers tried that could not be connected to */

    /* Called when the client's write queue drains below the low-water mark,
     * so a producer that paused (the proxy) can go on. */
    void (*on_client_drain)(struct exchange *x);
    struct exchange_hook *hooks;
    const struct exchange_sink *sink;
    struct response_filter *filters;
    struct read_body *read_body; /* a small request body read whole (exchange_read_body) */
    void *ctx[SL_MAX_MODULES];   /* each module's per-exchange state */

    /* Response progress. */
    int status;
    bool response_started;
    bool response_done;
    uint64_t bytes_out;
    /* Why the gateway refused the request with 429 or 403 (usage, audit). */
    enum sl_refusal refused_by;
};

typedef void (*exchange_hook_fn)(struct exchange *x, void *arg);
struct exchange_hook {
    struct exchange_hook *next;
    exchange_hook_fn fn;
    void *arg;
};

/* Run <fn>(<x>, <arg>) when <x> ends, normally or because the client went
 * away: the one place to release what a stage holds (an upstream connection,
 * a concurrency slot). Hooks run newest first. */
void exchange_on_end(struct exchange *x, exchange_hook_fn fn, void *arg);

/* Lifecycle, for the connection code: a new exchange on worker <w> whose
 * response goes to <sink> (<admin>: the admin listener's stages), holding
 * the worker's current config; exchange_free runs the end hooks, releases
 * the hold and the arena. <conn> is the sink's own pointer (may be NULL). */
struct exchange *exchange_new(struct worker *w, const struct exchange_sink *sink, struct conn *c,
                              bool admin);
void exchange_free(struct exchange *x);
/* An exchange without a client, running <stages> (e.g. the proxy alone) for
 * work of its own, such as refreshing a stale cache entry; it holds the
 * worker's current config and is freed when its response ends. */
struct exchange *exchange_new_detached(struct worker *w, const stage_fn *stages, int n_stages);
/* Request body bytes from the connection (<end>: the body is complete). */
void exchange_body_data(struct exchange *x, const char *data, size_t len, bool end);

/* Start running <x>'s stages from the first. */
void exchange_run(struct exchange *x);
/* Continue with the stage after the one that returned STAGE_WAIT. */
void exchange_resume(struct exchange *x);

/* Add a header to every response of <x> (rate-limit headers, X-Cache...).
 * <name> and <value> are copied. */
void exchange_add_header(struct exchange *x, const char *name, const char *value);
/* Like exchange_add_header, replacing a value <name> already has. */
void exchange_set_header(struct exchange *x, const char *name, const char *value);
/* The first request header named <name> (case-insensitive), or NULL. */
const struct sl_header *exchange_req_header(const struct exchange *x, const char *name);

/* Response streaming, for whoever produces a response for <x>: the
 * filters see each part, then the sink. A second head is ignored, as is
 * anything after the end. */
void exchange_send_head(struct exchange *x, int status, const struct sl_headers *headers,
                        int64_t content_length, bool no_body);
void exchange_send_body(struct exchange *x, const char *data, size_t len);
void exchange_send_end(struct exchange *x);
/* The response cannot be completed (the upstream died mid-body). */
void exchange_send_abort(struct exchange *x);
/* Client-side flow control, through the sink. */
void exchange_send_continue(struct exchange *x);
size_t exchange_pending_output(const struct exchange *x);
void exchange_pause_body(struct exchange *x);
void exchange_resume_body(struct exchange *x);

/* Add <f> to the filters of <x> (it sees what is sent from now on), or
 * remove it. <f> lives as long as it is on the list. */
void exchange_add_filter(struct exchange *x, struct response_filter *f);
void exchange_remove_filter(struct exchange *x, struct response_filter *f);

/* Answer with a complete response generated by the gateway. */
void exchange_respond(struct exchange *x, int status, const char *content_type, const char *body,
                      size_t len);
/* Answer with {"error": "<reason phrase>", "message": "<message>"}. */
void exchange_respond_error(struct exchange *x, int status, const char *message);
/* Answer with the jansson document <doc> (its reference is taken), indented,
 * with a trailing newline; 500 when it cannot be written (NULL, no memory). */
struct json_t;
void exchange_respond_json(struct exchange *x, int status, struct json_t *doc);

/* Put <len> bytes back at the front of the body queue and drop the sink: a
 * stage that read some of the body hands it on untouched. */
void exchange_requeue_body(struct exchange *x, const char *data, size_t len);

/* Reads the whole request body (at most <max> bytes, else answers 413),
 * then calls <done> with it; for small bodies a stage parses at once (admin
 * calls, token refresh). The stage returns what this returns (STAGE_WAIT). */
enum stage_result exchange_read_body(struct exchange *x, size_t max,
                                     void (*done)(struct exchange *x, const char *body,
                                                  size_t len));

/* Set the body sink and deliver what is queued. */
void exchange_set_body_sink(struct exchange *x, body_sink_fn sink);

void sl_headers_add(struct arena *a, struct sl_headers *h, const char *name, size_t name_len,
                    const char *value, size_t value_len);

/* Standard reason phrase for <status>. */
const char *http_reason(int status);

#endif
