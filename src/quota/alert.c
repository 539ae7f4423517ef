/* Quota threshold alerts and the module that delivers them (quota/alert.h). */
#include "quota/alert.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "admin/events.h"
#include "modules.h"
#include "quota/conf.h"
#include "quota/delivery.h"
#include "util/json.h"
#include "util/mem.h"

const char *quota_span_name(enum quota_span s)
{
    return s == QUOTA_DAILY ? "daily" : "monthly";
}

void quota_alert_id(const struct quota_alert *a, char out[QUOTA_ALERT_ID_LEN + 1])
{
    struct buf b = {0};
    buf_appendf(&b, "%s|%s|%d|%lld", a->identity, quota_span_name(a->quota), a->threshold,
                (long long)a->period_start);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned md_len = 0;
    if (EVP_Digest(b.data, b.len, md, &md_len, EVP_sha256(), NULL) != 1)
        sl_fatal("sluice: SHA-256 failed\n"); /* OpenSSL out of memory */
    buf_release(&b);
    for (int i = 0; i < QUOTA_ALERT_ID_LEN / 2; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* "<name>": "<s>" or "<name>": null. */
static void quota_alert_str(struct buf *out, const char *name, const char *s)
{
    buf_appendf(out, ", \"%s\": ", name);
    if (!s) {
        buf_append_str(out, "null");
        return;
    }
    buf_append(out, "\"", 1);
    json_str_append(out, s);
    buf_append(out, "\"", 1);
}

void quota_alert_body(const struct quota_alert *a, const char *id, struct buf *out)
{
    buf_append_str(out, "{\"type\": \"quota.threshold\"");
    quota_alert_str(out, "identity", a->identity);
    quota_alert_str(out, "key_id", a->key_id);
    quota_alert_str(out, "owner", a->owner);
    buf_appendf(out,
                ", \"quota\": \"%s\", \"threshold\": %d, \"used\": %lld, \"limit\": %lld, "
                "\"period_start\": %lld, \"period_end\": %lld, \"id\": \"%s\"}",
                quota_span_name(a->quota), a->threshold, (long long)a->used, (long long)a->limit,
                (long long)a->period_start, (long long)a->period_end, id);
}

/* ---- the module ----------------------------------------------------------------------- */

/* gw->ctx[MOD_quota_alerts]. */
struct quota_alerts {
    struct quota_delivery *delivery;
};

void quota_alert_raise(struct gateway *gw, const struct quota_alert *a)
{
    char id[QUOTA_ALERT_ID_LEN + 1];
    quota_alert_id(a, id);
    struct buf body = {0};
    quota_alert_body(a, id, &body);
    events_publish(gw, "quota.threshold", body.data, body.len);
    struct quota_alerts *qa = gw->ctx[MOD_quota_alerts];
    if (qa)
        quota_delivery_push(qa->delivery, id, body.data, body.len);
    buf_release(&body);
}

/* The delivery thread's quota_target_fn: the webhook of the config in
 * force now. */
static bool quota_alerts_target(void *arg, char **url, char **secret)
{
    struct gateway *gw = arg;
    pthread_mutex_lock(&gw->lock);
    struct config *cfg = gw->cfg;
    cfg_ref(cfg);
    pthread_mutex_unlock(&gw->lock);
    const struct quota_alerts_conf *qc = quota_alerts_conf(cfg);
    bool have = qc->webhook != NULL;
    if (have) {
        *url = sl_strdup(qc->webhook);
        *secret = sl_strdup(qc->secret);
    }
    cfg_unref(cfg);
    return have;
}

static int quota_alerts_init_process(struct gateway *gw, char **err)
{
    struct quota_delivery_opts o = {
        .data_dir = gw->cfg->store.data_dir,
        .target = quota_alerts_target,
        .target_arg = gw,
    };
    struct quota_delivery *d = quota_delivery_start(&o, err);
    if (!d)
        return -1;
    struct quota_alerts *qa = sl_calloc(1, sizeof(*qa));
    qa->delivery = d;
    gw->ctx[MOD_quota_alerts] = qa;
    return 0;
}

static void quota_alerts_dispose_process(struct gateway *gw)
{
    struct quota_alerts *qa = gw->ctx[MOD_quota_alerts];
    if (!qa)
        return;
    quota_delivery_stop(qa->delivery);
    free(qa);
    gw->ctx[MOD_quota_alerts] = NULL;
}

/* A reload may add, change or remove the webhook: the thread looks now. */
static void quota_alerts_on_reload(struct gateway *gw, const struct config *old,
                                   const struct config *cfg, struct buf *warnings)
{
    struct quota_alerts *qa = gw->ctx[MOD_quota_alerts];
    if (qa)
        quota_delivery_kick(qa->delivery);
}

static void quota_alerts_metrics(struct gateway *gw, struct buf *out)
{
    struct quota_alerts *qa = gw->ctx[MOD_quota_alerts];
    if (!qa)
        return;
    struct quota_delivery_stats s;
    quota_delivery_stats(qa->delivery, &s);
    buf_appendf(out,
                "# HELP sluice_quota_alerts_total Quota alerts raised by this gateway (logged), "
                "or dropped when the alert queue was full.\n"
                "# TYPE sluice_quota_alerts_total counter\n"
                "sluice_quota_alerts_total{result=\"raised\"} %llu\n"
                "sluice_quota_alerts_total{result=\"dropped\"} %llu\n",
                (unsigned long long)s.raised, (unsigned long long)s.dropped);
    buf_appendf(out,
                "# HELP sluice_alert_webhooks_total Alert webhook outcomes: delivered (2xx), "
                "failed attempts (retried), given up after 24 hours.\n"
                "# TYPE sluice_alert_webhooks_total counter\n"
                "sluice_alert_webhooks_total{result=\"delivered\"} %llu\n"
                "sluice_alert_webhooks_total{result=\"failed\"} %llu\n"
                "sluice_alert_webhooks_total{result=\"given_up\"} %llu\n",
                (unsigned long long)s.delivered, (unsigned long long)s.failed,
                (unsigned long long)s.given_up);
}

const struct sl_module quota_alerts_module = {
    .name = "quota_alerts",
    .init_process = quota_alerts_init_process,
    .dispose_process = quota_alerts_dispose_process,
    .on_reload = quota_alerts_on_reload,
    .metrics = quota_alerts_metrics,
};
