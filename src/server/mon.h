/* Monitoring inside the server (docs/monitoring.md): the private part of
 * monitor.c (metrics, requests in flight, history), health.c (components),
 * alerts.c (rules) and admin.c (the HTTP endpoints and the console).
 *
 * The rules, as they apply here: request-path updates are lock-free
 * metric updates plus one spin-locked list insertion and removal (the
 * requests in flight, for the console); everything else (scrapes, the
 * console's events, alert evaluation) reads copies and never holds a lock
 * across a wait, so no scrape can stall a request. */
#ifndef SQ_SERVER_MON_H
#define SQ_SERVER_MON_H

#include "squirrel/metrics.h"
#include "sq_server/monitor.h"

struct sq_http_request;

/* The methods counted under their own label; any other is "other". */
#define SQ_MON_NMETHODS 18
extern const char *const sq_mon_methods[SQ_MON_NMETHODS];
enum { SQ_OUT_OK, SQ_OUT_ERROR, SQ_OUT_CANCELLED, SQ_OUT_DEADLINE, SQ_OUT_N };
extern const char *const sq_mon_outcomes[SQ_OUT_N];

/* One second of history (the console's charts, squirreld-top). */
typedef struct sq_mon_sample {
    int64_t t_ms;              /* wall clock, ms since the epoch */
    uint32_t requests, errors; /* finished in that second */
    uint32_t p50_us, p99_us;   /* latency (bucket upper bounds) */
    int32_t inflight;
} sq_mon_sample;
#define SQ_MON_HISTORY 300     /* five minutes */

typedef struct sq_alert sq_alert;

typedef struct sq_mon {
    sq_srv *srv;
    sq_metrics *reg;
    bool requests_on;          /* request metrics (config request_metrics) */
    int64_t started;           /* sq_now at creation */
    sq_counter *req[SQ_MON_NMETHODS][SQ_OUT_N];
    sq_histogram *lat[SQ_MON_NMETHODS];
    sq_counter *rejected, *bytes_in, *bytes_out;
    sq_metrics_collector *rt_col, *srv_col;
    /* Requests in flight (sq_mcp_req.mon_link), for the console. */
    sq__spin fl_lock;
    struct sq__list flight;
    /* Health components (health.c). */
    sq__spin h_lock;
    struct sq__list comps;
    /* Alerts (alerts.c). */
    sq__spin a_lock;
    sq_alert *alerts;
    size_t nalerts;
    int64_t alert_interval;
    /* History: a ring of one-second samples, newest at head - 1. */
    sq__spin hist_lock;
    sq_mon_sample hist[SQ_MON_HISTORY];
    size_t hist_n, hist_head;
    uint64_t last_requests, last_errors;
    uint64_t *last_buckets;    /* merged latency buckets at the last sample */
} sq_mon;

/* mon_components.c: the context manager's, commands' and plugins'
 * figures, emitted by the server's collector at each scrape. */
void sq__mon_components(sq_metrics_sink *k, sq_srv *s);

/* monitor.c */
int sq_mon_create(sq_srv *s, char *err, size_t errlen);
/* Starts the ticker (history, alerts) in the server's task group. */
int sq_mon_start(sq_srv *s);
void sq_mon_destroy(sq_srv *s);
/* A request begins (its task is about to start) and ends (its answer is
 * queued or dropped).  Never wait. */
void sq_mon_req_begin(sq_mcp_req *r);
void sq_mon_req_end(sq_mcp_req *r, int outcome);
/* A request refused at admission (a limit on requests in flight). */
void sq_mon_req_rejected(sq_srv *s);
/* Bytes of HTTP bodies received and sent. */
void sq_mon_bytes(sq_srv *s, size_t in, size_t out);
/* Appends the requests in flight as JSON objects to `arr` (at most max,
 * oldest first), and the total count into *total.  Never waits long. */
void sq_mon_flight_json(sq_srv *s, json_t *arr, size_t max, size_t *total);
/* Appends the history (oldest first, at most max samples) to arr as
 * [t_ms, requests, errors, p50_us, p99_us, inflight]. */
void sq_mon_history_json(sq_srv *s, json_t *arr, size_t max);
/* Requests in flight now (the server's semaphore). */
int64_t sq_mon_inflight(sq_srv *s);
int sq_mon_sessions(sq_srv *s);

/* health.c */
/* {"status", "components": [{"name", "status", "reason"}]}: every
 * registered component and the built-in ones (server, alerts). */
json_t *sq_health_json(sq_srv *s, int *overall);
void sq_health_free_all(sq_srv *s);

/* alerts.c */
/* Reads the rules of the configuration: 0, or -EINVAL with err set. */
int sq_alerts_load(sq_srv *s, const char *rules_json, char *err, size_t errlen);
/* Evaluates every rule against a snapshot of the metrics: fires and
 * resolves (logs, notifications, resource updates after the locks). */
void sq_alerts_evaluate(sq_srv *s);
/* The alerts as JSON (an array: name, metric, state, value, threshold,
 * since_ms); firing ones only if `firing_only`. */
json_t *sq_alerts_json(sq_srv *s, bool firing_only);
/* How many fire now, and (if names) their names, comma-separated. */
int sq_alerts_firing(sq_srv *s, char *names, size_t n);
void sq_alerts_free(sq_srv *s);

/* admin.c: serves a monitoring path (/metrics, /health, /health/live,
 * /debug/tasks, /debug/locks, /console, /console/events): 0 or a write
 * error when it did, -ENOENT when the path is not one of them.  The
 * console's event stream runs until the peer goes (*gone) or the server
 * stops. */
int sq_admin_serve(sq_srv *s, sq_io *io, const struct sq_http_request *req,
                   bool *close, atomic_bool *gone);
/* The bearer token check shared with /mcp (http.c); with allow_cookie,
 * a cookie squirreld_token=<token> is accepted too (the console's
 * read-only GETs: a browser cannot set headers on a page load or an
 * EventSource). */
bool sq_http_authorized(sq_srv *s, const struct sq_http_request *req,
                        bool allow_cookie);

#include "mon_assets.h"

#endif
