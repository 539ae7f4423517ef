#ifndef SLUICE_LIMITS_H
#define SLUICE_LIMITS_H
/* Every bound in one place, each with its reason. Config values that users
 * may change are validated against these. */

/* Config */
#define SL_MAX_LISTEN 16               /* listen addresses per listener kind */
#define SL_MAX_ROUTES 1024             /* routes are matched linearly, first match wins */
#define SL_MAX_UPSTREAMS 256           /* named upstream groups */
#define SL_MAX_UPSTREAM_SERVERS 64     /* servers in one group */
#define SL_MAX_METHODS 32              /* entries in one route's methods list */
#define SL_MAX_TRUSTED_PROXIES 256     /* CIDRs in server.trusted_proxies */
#define SL_MAX_TIERS 64                /* tiers are found by name, linearly, per request */
#define SL_MAX_LIMITS_PER_LIST 16      /* a request counts 2 lists: 2x <= SL_MAX_LIMIT_OPS */
#define SL_MAX_WORKERS 256             /* worker threads */
#define SL_MAX_CACHE_TAGS 16           /* a route's tags: copied into every entry it stores */
#define SL_MAX_CONFIG_ERRORS 20        /* errors reported by one load before giving up */
#define SL_MAX_CONFIG_BYTES (4u << 20) /* a config file larger than this is a mistake */

#define SL_MAX_MODULES 24       /* ctx slots per gateway, worker, snapshot and exchange */
#define SL_MAX_STAGES 32        /* stages of one listener's pipeline */
#define SL_MAX_BUILTIN_ROUTES 8 /* routes the gateway adds itself (/auth/token...) */
/* HTTP */
#define SL_MAX_HEADERS 128    /* header lines in one request or upstream response */
#define SL_MAX_REQUEST_ID 128 /* a client's X-Request-Id longer than this is replaced */
#define SL_READ_BUF 65536     /* bytes read from a socket at a time */
#define SL_MAX_CHUNK_EXT 4096 /* extensions of one chunk: nothing legitimate is longer */
/* Free read buffers a worker keeps for reuse (64 x 64 KiB = 4 MiB at most):
 * connections take one only while a request is being read, so under load a
 * few dozen are in use at a time; more than this are given back to malloc. */
#define SL_READ_POOL 64
/* Connections a worker accepts per loop iteration; the rest wait for the next
 * one (in the listen backlog; libuv holds one). Unbounded, a burst of
 * thousands is accepted in one go while reads and upstream replies on the
 * connections already open wait; 64 keeps an iteration short, and a burst of
 * 10,000 still takes only ~160 iterations. */
#define SL_ACCEPT_BATCH 64
#define SL_BODY_HIGH_WATER                                                                         \
    (256u << 10) /* queued body bytes before reading stops (backpressure)                          \
                  */
#define SL_DEFAULT_MAX_HEADER_BYTES (16u << 10)
#define SL_DEFAULT_MAX_BODY_BYTES (10u << 20)
#define SL_DRAIN_TIMEOUT_MS 30000 /* SIGTERM waits at most this for in-flight requests */

/* Rate limiting */
/* Counters one request may touch: its tier's and its route's lists (16
 * each), plus SL_MAX_GQL_COUNTS for GraphQL operations. */
#define SL_MAX_LIMIT_OPS 64

/* GraphQL (SPEC 7.4; the document bounds are graphql/parse.h's) */
#define SL_MAX_GQL_BATCH 16 /* operations in one batched request: a client's page, not a script */
/* Times one request counts against GraphQL type and operation limits (each
 * operation: its type, plus each configured name it matches), so that the
 * limit ops stay within SL_MAX_LIMIT_OPS; past it, the request is refused. */
#define SL_MAX_GQL_COUNTS 32
#define SL_MAX_GQL_OPERATION_LIMITS 32 /* graphql.operations entries: GQLP_MAX_WATCH */
#define SL_MAX_GQL_NAME 64             /* an operation name in graphql.operations */

/* The admin API's event stream (admin/events.h) */
#define SL_EVENTS_QUEUE_MAX 4096        /* events waiting for one worker's loop; more are dropped */
#define SL_EVENTS_MAX_BYTES (64u << 10) /* one event's JSON: alerts and key changes are small */
#define SL_EVENTS_MAX_CLIENTS 64        /* open streams per worker: dashboards, not a fan-out */
/* Unsent bytes of one stream: past this the client is not reading, and is
 * cut off rather than buffered for without end. */
#define SL_EVENTS_CLIENT_MAX_PENDING (1u << 20)
#define SL_EVENTS_PING_MS 15000 /* a comment line this often keeps proxies from timing out */
#define SL_EVENTS_STATS_MS 1000 /* the stats tick (SPEC 8: every second) */

/* Quota alerts raised and not yet taken by the alert thread (quota/delivery.h):
 * one per identity, quota, threshold and period, so a full queue means the
 * thread is stuck, and more would only grow memory. */
#define SL_MAX_ALERTS_QUEUED 4096

/* Metrics */
#define SL_METRIC_SERIES 4096 /* (route, status) series per worker; more fold into "other" */

/* Request signing's in-memory replay cache (signing/replay.c). A nonce
 * costs 16 bytes of table at most (8 at half load); the cache holds at most
 * SIG_REPLAY_MAX nonces per generation (32 MiB in all at the worst), one
 * key at most a quarter of them, so one runaway client cannot make every
 * other key's requests fail. Past either bound: 503, never a forgotten
 * nonce. */
#define SIG_REPLAY_MAX (1u << 20)
#define SIG_REPLAY_PER_KEY (SIG_REPLAY_MAX / 4)
#define SIG_REPLAY_KEYS 65536 /* distinct signing keys seen per generation */
/* An X-Sluice-* header value: the longest well-formed one (a 128-character
 * nonce) and blanks around it fit; a longer one is refused (431) unparsed. */
#define SIG_HEADER_MAX 256

#endif
