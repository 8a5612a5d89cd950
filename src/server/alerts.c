/* Alerts (docs/monitoring.md, "Alerts"): rules from the configuration,
 * each a metric (a family of the server's registry, summed over the
 * series whose labels include the rule's), a comparison with a
 * threshold, and a duration the condition must hold before the alert
 * fires.  The ticker evaluates them (every alert_interval); a change of
 * state is logged, sent as a logging notification to the legacy sessions
 * that asked for logs (warning when it fires, notice when it resolves),
 * and published as an update of the resource squirreld://alerts (which
 * lists them).  Health is degraded while one fires (health.c).
 *
 * The rules' states are guarded by a spin lock held only to read or
 * write them; the snapshot, the logs and the notifications happen with
 * no lock held. */
#include "srv.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ALERTS_URI "squirreld://alerts"

enum { OP_GT, OP_GE, OP_LT, OP_LE };
enum { ST_OK, ST_PENDING, ST_FIRING };

struct sq_alert {
    char *name, *metric;
    json_t *labels;            /* object: label -> value, or NULL */
    int op;
    double threshold;
    int64_t for_ns;
    bool rate;                 /* compare the per-second rate */
    /* state (under a_lock) */
    int state;
    int64_t pending_since;     /* sq_now */
    int64_t firing_since_ms;   /* wall clock */
    double value;
    bool have_value;
    /* rate (the ticker only) */
    bool have_prev;
    double prev;
    int64_t prev_t;
};

static const char *const op_names[] = {">", ">=", "<", "<="};

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int read_alerts(sq_mcp_req *r, const char *uri, void *data, json_t **result)
{
    (void)data;
    json_t *a = sq_alerts_json(sq_mcp_server(r), false);
    char *text = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    if (!text)
        return sq_mcp_fail(r, -32603, "out of memory", NULL);
    *result = json_pack("{s:[{s:s,s:s,s:s}]}", "contents", "uri", uri, "mimeType",
                        "application/json", "text", text);
    free(text);
    return SQ_MCP_OK;
}

/* A duration as the configuration writes them (config.c's rules). */
static int duration_of(json_t *v, int64_t *out)
{
    if (!v) {
        *out = 0;
        return 0;
    }
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *out = json_integer_value(v) * SQ_MSEC;
        return 0;
    }
    return sq_srv_parse_duration(json_string_value(v), out);
}

int sq_alerts_load(sq_srv *s, const char *rules_json, char *err, size_t errlen)
{
    sq_mon *m = s->mon;
    json_t *rules = json_loads(rules_json, 0, NULL);
    size_t n = json_array_size(rules);
    if (!json_is_array(rules)) {
        json_decref(rules);
        snprintf(err, errlen, "alerts: must be an array of rules");
        return -EINVAL;
    }
    m->alerts = calloc(n ? n : 1, sizeof *m->alerts);
    if (!m->alerts) {
        json_decref(rules);
        return -ENOMEM;
    }
    size_t i;
    json_t *r;
    json_array_foreach(rules, i, r) {
        sq_alert *a = &m->alerts[i];
        m->nalerts = i + 1;
        const char *name = json_string_value(json_object_get(r, "name"));
        const char *metric = json_string_value(json_object_get(r, "metric"));
        json_t *th = json_object_get(r, "threshold");
        const char *op = json_string_value(json_object_get(r, "op"));
        json_t *labels = json_object_get(r, "labels");
        json_t *rate = json_object_get(r, "rate");
        int o = !op ? OP_GT : -1;
        for (int k = 0; op && k < 4; k++)
            if (strcmp(op, op_names[k]) == 0)
                o = k;
        const char *bad = !json_is_object(r)       ? "a rule must be an object"
                          : !name || !*name        ? "a rule needs a name"
                          : !metric || !*metric    ? "a rule needs a metric"
                          : !json_is_number(th)    ? "a rule needs a numeric threshold"
                          : o < 0                  ? "op must be >, >=, < or <="
                          : labels && !json_is_object(labels) ? "labels must be an object"
                          : rate && !json_is_boolean(rate)    ? "rate must be true or false"
                          : duration_of(json_object_get(r, "for"), &a->for_ns) != 0
                              ? "for must be a duration"
                              : NULL;
        const char *k;
        json_t *lv;
        json_object_foreach(labels, k, lv) {
            if (!bad && !json_is_string(lv))
                bad = "label values must be strings";
        }
        void *it = json_object_iter(r);
        for (; !bad && it; it = json_object_iter_next(r, it)) {
            const char *key = json_object_iter_key(it);
            if (strcmp(key, "name") && strcmp(key, "metric") && strcmp(key, "threshold") &&
                strcmp(key, "op") && strcmp(key, "labels") && strcmp(key, "rate") &&
                strcmp(key, "for"))
                bad = "unknown key in a rule (name, metric, labels, op, threshold, for, rate)";
        }
        if (bad) {
            snprintf(err, errlen, "alerts[%zu]: %s", i, bad);
            json_decref(rules);
            return -EINVAL;
        }
        a->name = strdup(name);
        a->metric = strdup(metric);
        a->labels = labels ? json_incref(labels) : NULL;
        a->op = o;
        a->threshold = json_number_value(th);
        a->rate = json_is_true(rate);
        if (!a->name || !a->metric) {
            json_decref(rules);
            return -ENOMEM;
        }
    }
    json_decref(rules);
    if (m->nalerts) {
        sq_mcp_resource_def d = {
            .uri = ALERTS_URI, .name = "alerts", .title = "squirreld's alerts",
            .description = "The alert rules and their states (firing, pending, ok).",
            .mime_type = "application/json", .read = read_alerts};
        int rc = sq_mcp_add_resource(s, &d);
        if (rc) {
            snprintf(err, errlen, "alerts: %s", sq_strerror(rc));
            return rc;
        }
    }
    return 0;
}

void sq_alerts_free(sq_srv *s)
{
    sq_mon *m = s->mon;
    for (size_t i = 0; i < m->nalerts; i++) {
        free(m->alerts[i].name);
        free(m->alerts[i].metric);
        json_decref(m->alerts[i].labels);
    }
    free(m->alerts);
    m->alerts = NULL;
    m->nalerts = 0;
}

/* The rule's metric in snapshot x: the sum over the matching series, or
 * NAN if the family is not there.  NAME_count and NAME_sum of a histogram
 * are its count and sum. */
static double metric_value(const sq_metrics_snapshot *x, const sq_alert *a)
{
    const sq_metric_family *f = sq_metrics_snapshot_find(x, a->metric);
    int part = 0; /* 1: _count, 2: _sum */
    if (!f) {
        size_t n = strlen(a->metric);
        char base[256];
        if (n > 6 && n < sizeof base && strcmp(a->metric + n - 6, "_count") == 0)
            part = 1, n -= 6;
        else if (n > 4 && n < sizeof base && strcmp(a->metric + n - 4, "_sum") == 0)
            part = 2, n -= 4;
        if (!part)
            return NAN;
        memcpy(base, a->metric, n);
        base[n] = '\0';
        f = sq_metrics_snapshot_find(x, base);
        if (!f || f->type != SQ_METRIC_HISTOGRAM)
            return NAN;
    }
    double sum = 0;
    for (size_t i = 0; i < f->nseries; i++) {
        const sq_metric_series *se = &f->series[i];
        bool match = true;
        const char *k;
        json_t *v;
        json_object_foreach(a->labels, k, v) {
            bool found = false;
            for (size_t j = 0; j < se->nlabels; j++)
                if (strcmp(se->labels[2 * j], k) == 0 &&
                    strcmp(se->labels[2 * j + 1], json_string_value(v)) == 0)
                    found = true;
            match &= found;
        }
        if (!match)
            continue;
        double raw = f->type == SQ_METRIC_COUNTER ? (double)se->counter
                     : f->type == SQ_METRIC_GAUGE ? (double)se->gauge
                     : part == 1                  ? (double)se->count
                                                  : (double)se->sum;
        sum += part == 1 ? raw : raw / (double)f->divisor;
    }
    return sum;
}

static bool holds(const sq_alert *a, double v)
{
    switch (a->op) {
    case OP_GT: return v > a->threshold;
    case OP_GE: return v >= a->threshold;
    case OP_LT: return v < a->threshold;
    default: return v <= a->threshold;
    }
}

typedef struct change {
    char name[128], metric[128];
    double value, threshold;
    int op;
    bool fired;
} change;

/* Sends one alert change to the legacy sessions that asked for logs. */
static void notify_sessions(sq_srv *s, const change *c)
{
    int level = c->fired ? SQ_MCP_WARNING : SQ_MCP_NOTICE;
    json_t *params = json_pack(
        "{s:s,s:s,s:{s:s,s:s,s:s,s:f,s:s,s:f}}", "level", sq_mcp_level_name(level),
        "logger", "squirreld.alerts", "data", "alert", c->name, "state",
        c->fired ? "firing" : "resolved", "metric", c->metric, "value",
        isfinite(c->value) ? c->value : 0.0, "op", op_names[c->op], "threshold",
        c->threshold);
    sq__strbuf b = SQ__STRBUF_INIT;
    sq_rpc_write_notification(&b, "notifications/message", params);
    json_decref(params);
    if (!b.failed && sq_mutex_lock(&s->lock) == 0) {
        /* Pushes never wait: the table's lock is held for the walk only. */
        SQ__LIST_FOREACH(l, &s->sessions) {
            sq_sess *x = sq__list_entry(l, sq_sess, link);
            if (atomic_load(&x->logs_asked) && atomic_load(&x->log_level) <= level)
                sq_sess_notify(x, b.buf, b.len);
        }
        sq_mutex_unlock(&s->lock);
    }
    sq__strbuf_free(&b);
}

void sq_alerts_evaluate(sq_srv *s)
{
    sq_mon *m = s->mon;
    sq_metrics_snapshot *x;
    if (sq_metrics_snapshot_take(m->reg, &x) != 0)
        return;
    int64_t now = sq_now();
    change *ch = calloc(m->nalerts, sizeof *ch);
    size_t nch = 0;
    for (size_t i = 0; ch && i < m->nalerts; i++) {
        sq_alert *a = &m->alerts[i];
        double v = metric_value(x, a);
        if (a->rate) {
            double raw = v;
            v = a->have_prev && now > a->prev_t
                    ? (raw - a->prev) * 1e9 / (double)(now - a->prev_t) : NAN;
            a->have_prev = !isnan(raw);
            a->prev = raw;
            a->prev_t = now;
        }
        bool cond = !isnan(v) && holds(a, v);
        sq__spin_lock(&m->a_lock);
        a->value = v;
        a->have_value = !isnan(v);
        int was = a->state;
        if (!cond) {
            a->state = ST_OK;
        } else if (a->state == ST_OK) {
            a->state = ST_PENDING;
            a->pending_since = now;
        }
        if (a->state == ST_PENDING && now - a->pending_since >= a->for_ns) {
            a->state = ST_FIRING;
            a->firing_since_ms = wall_ms();
        }
        bool fired = was != ST_FIRING && a->state == ST_FIRING;
        bool resolved = was == ST_FIRING && a->state != ST_FIRING;
        sq__spin_unlock(&m->a_lock);
        if (fired || resolved) {
            change *c = &ch[nch++];
            snprintf(c->name, sizeof c->name, "%s", a->name);
            snprintf(c->metric, sizeof c->metric, "%s", a->metric);
            c->value = v;
            c->threshold = a->threshold;
            c->op = a->op;
            c->fired = fired;
        }
    }
    sq_metrics_snapshot_free(x);
    for (size_t i = 0; i < nch; i++) {
        change *c = &ch[i];
        if (c->fired)
            sq_srv_log(s, SQ_MCP_WARNING, "alerts", NULL,
                       "alert %s firing: %s = %g %s %g", c->name, c->metric, c->value,
                       op_names[c->op], c->threshold);
        else
            sq_srv_log(s, SQ_MCP_NOTICE, "alerts", NULL, "alert %s resolved: %s = %g",
                       c->name, c->metric, c->value);
        notify_sessions(s, c);
    }
    if (nch)
        sq_mcp_resource_updated(s, ALERTS_URI);
    free(ch);
}

json_t *sq_alerts_json(sq_srv *s, bool firing_only)
{
    sq_mon *m = s->mon;
    json_t *arr = json_array();
    for (size_t i = 0; i < m->nalerts; i++) {
        sq_alert *a = &m->alerts[i];
        sq__spin_lock(&m->a_lock);
        int st = a->state;
        double v = a->value;
        bool hv = a->have_value;
        int64_t since = a->firing_since_ms;
        sq__spin_unlock(&m->a_lock);
        if (firing_only && st != ST_FIRING)
            continue;
        json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:f,s:b}", "name", a->name, "metric",
                              a->metric, "state",
                              st == ST_FIRING ? "firing" : st == ST_PENDING ? "pending" : "ok",
                              "op", op_names[a->op], "threshold", a->threshold, "rate",
                              a->rate);
        json_object_set_new(o, "value", hv && isfinite(v) ? json_real(v) : json_null());
        if (st == ST_FIRING)
            json_object_set_new(o, "since_ms", json_integer(since));
        if (a->labels)
            json_object_set(o, "labels", a->labels);
        json_array_append_new(arr, o);
    }
    return arr;
}

int sq_alerts_firing(sq_srv *s, char *names, size_t n)
{
    sq_mon *m = s->mon;
    int count = 0;
    size_t used = 0;
    if (n)
        names[0] = '\0';
    sq__spin_lock(&m->a_lock);
    for (size_t i = 0; i < m->nalerts; i++) {
        if (m->alerts[i].state != ST_FIRING)
            continue;
        count++;
        if (n && used < n) {
            int w = snprintf(names + used, n - used, "%s%s", count > 1 ? ", " : "",
                             m->alerts[i].name);
            used += w > 0 ? (size_t)w : 0;
        }
    }
    sq__spin_unlock(&m->a_lock);
    return count;
}
