/* The server's own metrics (mon.h): requests by method and outcome,
 * latency per method, requests in flight and sessions, bytes, dropped
 * notifications, the runtime's figures; the list of requests in flight;
 * a five-minute history of one-second samples; the ticker task that
 * takes those samples and evaluates the alerts.
 *
 * Label values are bounded by construction: the method label is one of
 * the fixed names below or "other", the outcome one of four. */
#include "srv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *const sq_mon_methods[SQ_MON_NMETHODS] = {
    "ping", "logging/setLevel", "tools/list", "tools/call", "resources/list",
    "resources/templates/list", "resources/read", "resources/subscribe",
    "resources/unsubscribe", "prompts/list", "prompts/get",
    "completion/complete", "server/discover", "subscriptions/listen",
    "tasks/get", "tasks/update", "tasks/cancel", "other",
};
const char *const sq_mon_outcomes[SQ_OUT_N] = {"ok", "error", "cancelled",
                                               "deadline"};

/* Latency bounds (ns, exported in seconds): 100 us to 60 s. */
static const int64_t lat_bounds[] = {
    100 * SQ_USEC, 250 * SQ_USEC, 500 * SQ_USEC, SQ_MSEC, 2500 * SQ_USEC,
    5 * SQ_MSEC, 10 * SQ_MSEC, 25 * SQ_MSEC, 50 * SQ_MSEC, 100 * SQ_MSEC,
    250 * SQ_MSEC, 500 * SQ_MSEC, SQ_SEC, 2500 * SQ_MSEC, 5 * SQ_SEC,
    10 * SQ_SEC, 30 * SQ_SEC, 60 * SQ_SEC,
};
#define NLAT (sizeof lat_bounds / sizeof *lat_bounds)

static int method_index(const char *m)
{
    for (int i = 0; i < SQ_MON_NMETHODS - 1; i++)
        if (strcmp(sq_mon_methods[i], m) == 0)
            return i;
    return SQ_MON_NMETHODS - 1;
}

int64_t sq_mon_inflight(sq_srv *s)
{
    return (int64_t)s->cfg.max_inflight_total - (int64_t)sq_sem_available(&s->inflight);
}

int sq_mon_sessions(sq_srv *s)
{
    if (sq_mutex_lock(&s->lock) != 0)
        return 0; /* cancelled while waiting */
    int n = s->nsessions;
    sq_mutex_unlock(&s->lock);
    return n;
}

/* Figures the server keeps anyway, read at each scrape (no cost on the
 * request path). */
static void collect_server(sq_metrics_sink *k, void *arg)
{
    sq_srv *s = arg;
    sq_mon *m = s->mon;
    sq_metrics_emit_gauge(k, &(sq_metric_opts){
        .name = "squirreld_requests_in_flight",
        .help = "Requests being handled now (every transport)."}, sq_mon_inflight(s));
    sq_metrics_emit_gauge(k, &(sq_metric_opts){
        .name = "squirreld_sessions", .help = "Legacy-era sessions open now."},
        sq_mon_sessions(s));
    sq_metrics_emit_counter(k, &(sq_metric_opts){
        .name = "squirreld_requests_received_total",
        .help = "Requests received (admitted or not), every transport."},
        (uint64_t)atomic_load(&s->requests_total));
    sq_metrics_emit_counter(k, &(sq_metric_opts){
        .name = "squirreld_notifications_dropped_total",
        .help = "Notifications dropped because a client's queue was full."},
        (uint64_t)atomic_load(&s->dropped));
    sq__mon_components(k, s);
    char names[8];
    int firing = sq_alerts_firing(s, names, 0);
    sq_metrics_emit_gauge(k, &(sq_metric_opts){
        .name = "squirreld_alerts_firing", .help = "Alert rules firing now."}, firing);
    int overall = sq_health_overall(s);
    for (int st = SQ_HEALTH_HEALTHY; st <= SQ_HEALTH_FAILED; st++) {
        const char *lab[] = {"status", sq_health_name(st), NULL};
        sq_metrics_emit_gauge(k, &(sq_metric_opts){
            .name = "squirreld_health",
            .help = "The overall health: 1 for the current status, 0 for the others.",
            .labels = lab}, overall == st);
    }
    sq_metrics_emit_gauge(k, &(sq_metric_opts){
        .name = "squirreld_uptime_seconds", .help = "Time since the server started.",
        .divisor = SQ_SEC}, sq_now() - m->started);
}

int sq_mon_create(sq_srv *s, char *err, size_t errlen)
{
    sq_mon *m = calloc(1, sizeof *m);
    if (!m)
        return -ENOMEM;
    s->mon = m;
    m->srv = s;
    m->started = sq_now();
    m->requests_on = s->cfg.request_metrics;
    m->alert_interval = s->cfg.alert_interval > 0 ? s->cfg.alert_interval : SQ_SEC;
    m->last_buckets = calloc(NLAT + 1, sizeof *m->last_buckets);
    int rc = m->last_buckets ? sq_metrics_create(&m->reg) : -ENOMEM;
    for (int i = 0; rc == 0 && i < SQ_MON_NMETHODS; i++) {
        for (int o = 0; rc == 0 && o < SQ_OUT_N; o++) {
            const char *lab[] = {"method", sq_mon_methods[i], "outcome",
                                 sq_mon_outcomes[o], NULL};
            rc = sq_counter_create(&m->req[i][o], m->reg, &(sq_metric_opts){
                .name = "squirreld_requests_total",
                .help = "Requests handled, by method and outcome (ok, error: a "
                        "JSON-RPC error, cancelled: by the client, deadline).",
                .labels = lab});
        }
        const char *lab[] = {"method", sq_mon_methods[i], NULL};
        if (rc == 0)
            rc = sq_histogram_create(&m->lat[i], m->reg, &(sq_metric_opts){
                .name = "squirreld_request_duration_seconds",
                .help = "Time from a request's start to its answer, by method.",
                .labels = lab, .divisor = SQ_SEC}, lat_bounds, NLAT);
    }
    if (rc == 0)
        rc = sq_counter_create(&m->rejected, m->reg, &(sq_metric_opts){
            .name = "squirreld_requests_rejected_total",
            .help = "Requests refused at once: a limit on requests in flight."});
    if (rc == 0)
        rc = sq_counter_create(&m->bytes_in, m->reg, &(sq_metric_opts){
            .name = "squirreld_http_received_bytes_total",
            .help = "HTTP request bodies received."});
    if (rc == 0)
        rc = sq_counter_create(&m->bytes_out, m->reg, &(sq_metric_opts){
            .name = "squirreld_http_sent_bytes_total",
            .help = "HTTP response bodies sent (JSON answers and stream chunks)."});
    if (rc == 0)
        rc = sq_metrics_register_runtime(m->reg, s->rt, NULL, &m->rt_col);
    if (rc == 0)
        rc = sq_metrics_add_collector(m->reg, collect_server, s, NULL, &m->srv_col);
    if (rc == 0 && s->cfg.alerts_json)
        rc = sq_alerts_load(s, s->cfg.alerts_json, err, errlen);
    else if (rc)
        snprintf(err, errlen, "monitoring: %s", sq_strerror(rc));
    return rc;
}

void sq_mon_destroy(sq_srv *s)
{
    sq_mon *m = s->mon;
    if (!m)
        return;
    sq_alerts_free(s);
    sq_health_free_all(s);
    if (m->reg) {
        if (m->rt_col)
            sq_metrics_remove_collector(m->reg, m->rt_col);
        sq_metrics_destroy(m->reg);
    }
    free(m->last_buckets);
    free(m);
    s->mon = NULL;
}

sq_metrics *sq_srv_metrics(sq_srv *s)
{
    return s->mon->reg;
}

/* ------------------------------------------------------ the request path */

void sq_mon_req_begin(sq_mcp_req *r)
{
    sq_mon *m = r->srv->mon;
    r->started_at = sq_now();
    if (!m->requests_on)
        return;
    sq__spin_lock(&m->fl_lock);
    sq__list_push_back(&m->flight, &r->mon_link);
    r->mon_listed = true;
    sq__spin_unlock(&m->fl_lock);
}

void sq_mon_req_end(sq_mcp_req *r, int outcome)
{
    sq_mon *m = r->srv->mon;
    int64_t took = sq_now() - r->started_at;
    if (m->requests_on) {
        int i = method_index(r->method);
        sq_counter_inc(m->req[i][outcome]);
        sq_histogram_observe(m->lat[i], took);
        sq__spin_lock(&m->fl_lock);
        if (r->mon_listed) {
            sq__list_remove(&m->flight, &r->mon_link);
            r->mon_listed = false;
        }
        sq__spin_unlock(&m->fl_lock);
    }
    if (r->srv->cfg.log_level <= SQ_MCP_DEBUG)
        sq_srv_log(r->srv, SQ_MCP_DEBUG, "request", r->id, "%s %s in %.3f ms",
                   r->method, sq_mon_outcomes[outcome], (double)took / 1e6);
}

void sq_mon_req_rejected(sq_srv *s)
{
    if (s->mon->requests_on)
        sq_counter_inc(s->mon->rejected);
}

void sq_mon_bytes(sq_srv *s, size_t in, size_t out)
{
    if (!s->mon->requests_on)
        return;
    if (in)
        sq_counter_add(s->mon->bytes_in, in);
    if (out)
        sq_counter_add(s->mon->bytes_out, out);
}

void sq_mon_flight_json(sq_srv *s, json_t *arr, size_t max, size_t *total)
{
    sq_mon *m = s->mon;
    /* Copied under the spin lock into plain fields (no allocation there),
     * turned into JSON after. */
    typedef struct fl { char method[40], id[40], sess[12]; int64_t age; } fl;
    fl *v = max ? calloc(max, sizeof *v) : NULL;
    size_t n = 0, all = 0;
    int64_t now = sq_now();
    sq__spin_lock(&m->fl_lock);
    SQ__LIST_FOREACH(l, &m->flight) {
        sq_mcp_req *r = sq__list_entry(l, sq_mcp_req, mon_link);
        if (v && n < max) {
            snprintf(v[n].method, sizeof v[n].method, "%s", r->method);
            snprintf(v[n].id, sizeof v[n].id, "%s", r->id ? r->id : "");
            snprintf(v[n].sess, sizeof v[n].sess, "%.8s", r->sess ? r->sess->id : "");
            v[n].age = now - r->started_at;
            n++;
        }
        all++;
    }
    sq__spin_unlock(&m->fl_lock);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, json_pack("{s:s,s:s,s:s,s:I}", "method", v[i].method,
                                             "id", v[i].id, "session", v[i].sess,
                                             "age_ms", (json_int_t)(v[i].age / SQ_MSEC)));
    free(v);
    if (total)
        *total = all;
}

/* ------------------------------------------------------------ history */

/* The upper bound (us) of the bucket where the q-quantile falls. */
static uint32_t quantile_us(const uint64_t *b, uint64_t count, double q)
{
    if (count == 0)
        return 0;
    uint64_t want = (uint64_t)((double)count * q + 0.999999), seen = 0;
    for (size_t i = 0; i <= NLAT; i++) {
        seen += b[i];
        if (seen >= want)
            return i < NLAT ? (uint32_t)(lat_bounds[i] / SQ_USEC)
                            : (uint32_t)(lat_bounds[NLAT - 1] / SQ_USEC);
    }
    return 0;
}

static void take_sample(sq_srv *s)
{
    sq_mon *m = s->mon;
    uint64_t total = 0, errors = 0;
    uint64_t merged[NLAT + 1] = {0}, cum[NLAT + 1];
    if (m->requests_on) {
        for (int i = 0; i < SQ_MON_NMETHODS; i++) {
            for (int o = 0; o < SQ_OUT_N; o++) {
                uint64_t c = sq_counter_get(m->req[i][o]);
                total += c;
                if (o != SQ_OUT_OK)
                    errors += c;
            }
            uint64_t count;
            sq_histogram_get(m->lat[i], cum, &count, NULL);
            /* cumulative -> per bucket */
            for (size_t b = 0; b <= NLAT; b++)
                merged[b] += cum[b] - (b ? cum[b - 1] : 0);
        }
    }
    uint64_t delta[NLAT + 1], dn = 0;
    for (size_t b = 0; b <= NLAT; b++) {
        delta[b] = merged[b] - m->last_buckets[b];
        dn += delta[b];
        m->last_buckets[b] = merged[b];
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    sq_mon_sample x = {
        .t_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000,
        .requests = (uint32_t)(total - m->last_requests),
        .errors = (uint32_t)(errors - m->last_errors),
        .p50_us = quantile_us(delta, dn, 0.5),
        .p99_us = quantile_us(delta, dn, 0.99),
        .inflight = (int32_t)sq_mon_inflight(s),
    };
    m->last_requests = total;
    m->last_errors = errors;
    sq__spin_lock(&m->hist_lock);
    m->hist[m->hist_head] = x;
    m->hist_head = (m->hist_head + 1) % SQ_MON_HISTORY;
    if (m->hist_n < SQ_MON_HISTORY)
        m->hist_n++;
    sq__spin_unlock(&m->hist_lock);
}

void sq_mon_history_json(sq_srv *s, json_t *arr, size_t max)
{
    sq_mon *m = s->mon;
    sq_mon_sample *v = malloc(SQ_MON_HISTORY * sizeof *v);
    if (!v)
        return;
    sq__spin_lock(&m->hist_lock);
    size_t n = m->hist_n < max ? m->hist_n : max;
    for (size_t i = 0; i < n; i++)
        v[i] = m->hist[(m->hist_head + SQ_MON_HISTORY - n + i) % SQ_MON_HISTORY];
    sq__spin_unlock(&m->hist_lock);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, json_pack("[I,I,I,I,I,I]", (json_int_t)v[i].t_ms,
                                             (json_int_t)v[i].requests,
                                             (json_int_t)v[i].errors,
                                             (json_int_t)v[i].p50_us,
                                             (json_int_t)v[i].p99_us,
                                             (json_int_t)v[i].inflight));
    free(v);
}

/* ------------------------------------------------------------ the ticker */

static void *ticker_main(void *arg)
{
    sq_srv *s = arg;
    sq_mon *m = s->mon;
    int64_t next_sample = sq_now() + SQ_SEC;
    take_sample(s); /* the baseline */
    for (;;) {
        int64_t step = m->alert_interval < SQ_SEC ? m->alert_interval : SQ_SEC;
        if (sq_sleep(step) != 0)
            break; /* the server stops */
        if (m->nalerts)
            sq_alerts_evaluate(s);
        if (sq_now() >= next_sample) {
            take_sample(s);
            next_sample += SQ_SEC;
            if (next_sample < sq_now())
                next_sample = sq_now() + SQ_SEC;
        }
    }
    return NULL;
}

int sq_mon_start(sq_srv *s)
{
    sq_spawn_opts o = {.name = "monitor"};
    return sq_group_spawn(s->tasks, ticker_main, s, &o, NULL);
}
