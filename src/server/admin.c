/* The monitoring endpoints (docs/monitoring.md): /metrics, /health,
 * /health/live, /debug/tasks, /debug/locks, and the console (/console,
 * its files, and /console/events, a server-sent event stream of the
 * state the page shows).
 *
 * Every answer is built from copies: a metrics snapshot, a check-layer
 * snapshot (which never waits as a task), the lock-order graph, the
 * monitor's lists copied under their spin locks.  Nothing here holds a
 * lock while it writes to the socket, so a slow scraper or a console
 * that stops reading stalls nobody but itself.
 *
 * Auth: the same bearer token as /mcp; these read-only GETs also accept
 * it from the cookie squirreld_token (a browser cannot put a header on a
 * page load or an EventSource).  The console's static files carry no
 * data and are served without it, so that the page can ask for it. */
#include "srv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "squirrel/check.h"
#include "sq_proto/http.h"
#include "sq_proto/sse.h"

#define MAX_LIST 300      /* tasks, sessions, requests listed per event */

static int send_text(sq_io *io, int status, const char *type, const char *body,
                     size_t len, const char *const *hdr, size_t nhdr)
{
    return sq_http_respond(io, status, false, type, hdr, nhdr, body, len);
}

static int send_json(sq_io *io, int status, json_t *v)
{
    char *text = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    if (!text)
        return send_text(io, 500, "application/json",
                         "{\"error\":\"out of memory\"}", 25, NULL, 0);
    static const char *const hdr[] = {"Cache-Control: no-store"};
    int rc = send_text(io, status, "application/json", text, strlen(text), hdr, 1);
    free(text);
    return rc;
}

/* ------------------------------------------------------- the snapshot */

static char *addr_of(const void *p, char *buf, size_t n)
{
    snprintf(buf, n, "%p", p);
    return buf;
}

static json_t *hold_json(const sq_check_hold *h)
{
    return json_pack("{s:s?,s:I,s:s,s:s?,s:I}", "holder", h->holder, "task_id",
                     (json_int_t)h->holder_task_id, "mode", h->shared ? "shared" : "exclusive",
                     "site", h->site, "age_ms", (json_int_t)(h->age_ns / SQ_MSEC));
}

/* The lock entry of `lock` in `locks` (address -> entry), made if new. */
static json_t *lock_entry(json_t *locks, const void *lock, const char *cls)
{
    char a[32];
    addr_of(lock, a, sizeof a);
    json_t *e = json_object_get(locks, a);
    if (!e) {
        e = json_pack("{s:s,s:s?,s:[],s:[]}", "lock", a, "class", cls, "holders",
                      "waiters");
        json_object_set_new(locks, a, e);
    }
    return e;
}

static void add_holds(json_t *locks, const sq_check_hold *h, size_t n)
{
    for (size_t i = 0; i < n; i++)
        json_array_append_new(json_object_get(lock_entry(locks, h[i].lock, h[i].cls),
                                              "holders"),
                              hold_json(&h[i]));
}

static void add_want(json_t *locks, const sq_check_want *w, const char *name,
                     uint64_t id, int64_t waited_ns)
{
    if (!w)
        return;
    json_t *e = lock_entry(locks, w->lock, w->cls);
    json_array_append_new(json_object_get(e, "waiters"),
                          json_pack("{s:s,s:I,s:s,s:s?,s:I}", "name", name, "task_id",
                                    (json_int_t)id, "mode",
                                    w->shared ? "shared" : "exclusive", "site", w->site,
                                    "for_ms", (json_int_t)(waited_ns < 0 ? -1
                                                           : waited_ns / SQ_MSEC)));
    /* A holder the task list may not show (a thread, a task of another
     * runtime) is still named through the want's own view of it. */
    if (json_array_size(json_object_get(e, "holders")) == 0)
        add_holds(locks, w->holders, w->nholders);
}

/* Every lock the snapshot knows, with its holders and waiters: an array
 * sorted with the most waited-for first. */
static json_t *locks_json(const sq_check_snapshot *x)
{
    json_t *locks = json_object();
    for (size_t r = 0; r < x->nruntimes; r++) {
        for (size_t i = 0; i < x->runtimes[r].ntasks; i++) {
            const sq_check_task *t = &x->runtimes[r].tasks[i];
            add_holds(locks, t->holds, t->nholds);
        }
    }
    for (size_t i = 0; i < x->nthreads; i++)
        add_holds(locks, x->threads[i].holds, x->threads[i].nholds);
    for (size_t i = 0; i < x->nother_tasks; i++)
        add_holds(locks, x->other_tasks[i].holds, x->other_tasks[i].nholds);
    add_holds(locks, x->unowned, x->nunowned);
    for (size_t r = 0; r < x->nruntimes; r++) {
        for (size_t i = 0; i < x->runtimes[r].ntasks; i++) {
            const sq_check_task *t = &x->runtimes[r].tasks[i];
            char name[160];
            snprintf(name, sizeof name, "%s #%llu", t->name ? t->name : "?",
                     (unsigned long long)t->id);
            add_want(locks, t->wants, name, t->id, t->waited_ns);
        }
    }
    for (size_t i = 0; i < x->nthreads; i++)
        add_want(locks, x->threads[i].wants, x->threads[i].name, 0, -1);
    for (size_t i = 0; i < x->nother_tasks; i++)
        add_want(locks, x->other_tasks[i].wants, x->other_tasks[i].name,
                 x->other_tasks[i].task_id, -1);
    json_t *arr = json_array();
    const char *k;
    json_t *v;
    /* Waited-for locks first, then the rest. */
    for (int pass = 0; pass < 2; pass++)
        json_object_foreach(locks, k, v) {
            bool waited = json_array_size(json_object_get(v, "waiters")) > 0;
            if (waited == (pass == 0))
                json_array_append(arr, v);
        }
    json_decref(locks);
    return arr;
}

static json_t *cycles_json(const sq_check_snapshot *x)
{
    json_t *arr = json_array();
    for (size_t c = 0; c < x->ncycles; c++) {
        json_t *steps = json_array();
        for (size_t i = 0; i < x->cycles[c].nsteps; i++) {
            const sq_check_cycle_step *st = &x->cycles[c].steps[i];
            char a[32];
            json_array_append_new(steps, json_pack("{s:s,s:I,s:s,s:s?,s:s?}", "name",
                                                   st->name, "task_id",
                                                   (json_int_t)st->task_id, "lock",
                                                   addr_of(st->lock, a, sizeof a), "class",
                                                   st->cls, "site", st->site));
        }
        json_array_append_new(arr, steps);
    }
    return arr;
}

static int task_rank(const sq_check_task *t)
{
    return (t->wants ? 4 : 0) + (t->nholds ? 2 : 0) + (t->state == SQ_CHECK_TASK_PARKED);
}

static int by_interest(const void *a, const void *b)
{
    const sq_check_task *x = *(const sq_check_task *const *)a;
    const sq_check_task *y = *(const sq_check_task *const *)b;
    int d = task_rank(y) - task_rank(x);
    if (d)
        return d;
    return x->waited_ns < y->waited_ns ? 1 : x->waited_ns > y->waited_ns ? -1
         : x->id < y->id ? -1 : x->id > y->id;
}

/* The console's view of the tasks: counts by state and by wait, and the
 * MAX_LIST most interesting (waiting for a lock, holding one, waiting
 * longest). */
static json_t *tasks_json(const sq_check_snapshot *x)
{
    size_t total = 0;
    for (size_t r = 0; r < x->nruntimes; r++)
        total += x->runtimes[r].ntasks;
    const sq_check_task **v = malloc((total ? total : 1) * sizeof *v);
    json_t *states = json_object(), *waits = json_object();
    size_t n = 0;
    for (size_t r = 0; r < x->nruntimes; r++) {
        for (size_t i = 0; i < x->runtimes[r].ntasks; i++) {
            const sq_check_task *t = &x->runtimes[r].tasks[i];
            if (v)
                v[n++] = t;
            const char *st = sq_check_task_state_name(t->state);
            json_object_set_new(states, st, json_integer(
                json_integer_value(json_object_get(states, st)) + 1));
            if (t->wait != SQ_CHECK_WAIT_NONE) {
                const char *w = sq_check_wait_kind_name(t->wait);
                json_object_set_new(waits, w, json_integer(
                    json_integer_value(json_object_get(waits, w)) + 1));
            }
        }
    }
    if (v)
        qsort(v, n, sizeof *v, by_interest);
    json_t *list = json_array();
    for (size_t i = 0; i < n && i < MAX_LIST; i++) {
        const sq_check_task *t = v[i];
        json_t *holds = json_array();
        for (size_t k = 0; k < t->nholds; k++)
            json_array_append_new(holds, json_pack("{s:s?,s:I}", "class", t->holds[k].cls,
                                                   "age_ms",
                                                   (json_int_t)(t->holds[k].age_ns / SQ_MSEC)));
        json_t *o = json_pack("{s:I,s:s?,s:s,s:s,s:I,s:o}", "id", (json_int_t)t->id,
                              "name", t->name,
                              "state", sq_check_task_state_name(t->state), "wait",
                              sq_check_wait_kind_name(t->wait), "for_ms",
                              (json_int_t)(t->waited_ns < 0 ? -1 : t->waited_ns / SQ_MSEC),
                              "holds", holds);
        if (t->wants)
            json_object_set_new(o, "wants", json_pack("{s:s?,s:s}", "class", t->wants->cls,
                                                      "mode", t->wants->shared
                                                                  ? "shared" : "exclusive"));
        if (t->spawn_site)
            json_object_set_new(o, "spawned_at", json_string(t->spawn_site));
        json_array_append_new(list, o);
    }
    free(v);
    return json_pack("{s:I,s:o,s:o,s:o}", "total", (json_int_t)total, "states", states,
                     "waits", waits, "list", list);
}

/* --------------------------------------------------------- /debug/locks */

static json_t *debug_locks(void)
{
    json_t *out = json_object();
    sq_check_config cfg;
    sq_check_get_config(&cfg);
    json_object_set_new(out, "checks_on", json_boolean(cfg.findings != 0));
    sq_check_order_graph *g;
    int rc = sq_check_order_graph_take(&g);
    if (rc == 0) {
        char *text = NULL;
        json_t *gj = sq_check_order_graph_json(g, &text) == 0
                         ? json_loads(text, 0, NULL) : NULL;
        free(text);
        sq_check_order_graph_free(g);
        json_object_set_new(out, "order_graph", gj ? gj : json_null());
    } else {
        json_object_set_new(out, "order_graph", json_null());
    }
    sq_check_hold_stats hs;
    sq_check_get_hold_stats(&hs);
    json_object_set_new(out, "holds", json_pack("{s:I,s:f,s:f}", "count",
                                                (json_int_t)hs.holds, "seconds_total",
                                                (double)hs.hold_ns / 1e9, "max_seconds",
                                                (double)hs.max_hold_ns / 1e9));
    sq_sync_stats ss;
    sq_sync_stats_get(&ss);
    json_t *buckets = json_array();
    for (int i = 0; i < SQ_SYNC_WAIT_BUCKETS; i++)
        json_array_append_new(buckets, json_pack("{s:I,s:I}", "below_us",
                                                 (json_int_t)1 << i, "count",
                                                 (json_int_t)ss.wait_buckets[i]));
    json_object_set_new(out, "waits", json_pack("{s:I,s:f,s:I,s:I,s:o}", "count",
                                                (json_int_t)ss.waits, "seconds_total",
                                                (double)ss.wait_ns / 1e9, "timeouts",
                                                (json_int_t)ss.timeouts, "cancels",
                                                (json_int_t)ss.cancels, "buckets", buckets));
    sq_check_snapshot *x;
    if (sq_check_snapshot_take(&x) == 0) {
        json_object_set_new(out, "locks", locks_json(x));
        json_object_set_new(out, "cycles", cycles_json(x));
        sq_check_snapshot_free(x);
    }
    return out;
}

/* ------------------------------------------------------------ console */

static json_t *sessions_json(sq_srv *s)
{
    json_t *arr = json_array();
    typedef struct ss { char id[12], version[16]; int64_t age, idle; size_t inflight; } ss;
    ss *v = calloc(MAX_LIST, sizeof *v);
    size_t n = 0;
    int64_t now = sq_now();
    if (v && sq_mutex_lock(&s->lock) == 0) {
        SQ__LIST_FOREACH(l, &s->sessions) {
            sq_sess *x = sq__list_entry(l, sq_sess, link);
            if (n >= MAX_LIST)
                break;
            snprintf(v[n].id, sizeof v[n].id, "%.8s", x->id[0] ? x->id : "stream");
            snprintf(v[n].version, sizeof v[n].version, "%s", x->version);
            v[n].age = now - x->created;
            v[n].idle = now - atomic_load(&x->last_used);
            v[n].inflight = (size_t)s->cfg.max_inflight_session -
                            sq_sem_available(&x->trk->inflight);
            n++;
        }
        sq_mutex_unlock(&s->lock);
    }
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, json_pack("{s:s,s:s,s:I,s:I,s:I}", "id", v[i].id,
                                             "version", v[i].version, "age_s",
                                             (json_int_t)(v[i].age / SQ_SEC), "idle_s",
                                             (json_int_t)(v[i].idle / SQ_SEC), "in_flight",
                                             (json_int_t)v[i].inflight));
    free(v);
    return arr;
}

/* Figures of the other components (context manager, plugins, commands):
 * every series of the families whose names say so, as name, labels,
 * value; the console lists them as they come. */
static json_t *sources_json(sq_srv *s)
{
    static const char *const prefixes[] = {"squirreld_context", "squirreld_plugin",
                                           "squirreld_command"};
    json_t *arr = json_array();
    sq_metrics_snapshot *x;
    if (sq_metrics_snapshot_take(s->mon->reg, &x) != 0)
        return arr;
    for (size_t f = 0; f < x->nfamilies; f++) {
        const sq_metric_family *fam = &x->families[f];
        bool want = false;
        for (size_t p = 0; p < 3; p++)
            want |= strncmp(fam->name, prefixes[p], strlen(prefixes[p])) == 0;
        for (size_t i = 0; want && i < fam->nseries && json_array_size(arr) < MAX_LIST; i++) {
            const sq_metric_series *se = &fam->series[i];
            json_t *labels = json_object();
            for (size_t k = 0; k < se->nlabels; k++)
                json_object_set_new(labels, se->labels[2 * k],
                                    json_string(se->labels[2 * k + 1]));
            double v = fam->type == SQ_METRIC_COUNTER ? (double)se->counter
                       : fam->type == SQ_METRIC_GAUGE ? (double)se->gauge
                                                      : (double)se->count;
            if (fam->type != SQ_METRIC_HISTOGRAM)
                v /= (double)fam->divisor;
            json_array_append_new(arr, json_pack("{s:s,s:s,s:o,s:f}", "name", fam->name,
                                                 "type", fam->type == SQ_METRIC_COUNTER
                                                             ? "counter"
                                                         : fam->type == SQ_METRIC_GAUGE
                                                             ? "gauge" : "histogram",
                                                 "labels", labels, "value", v));
        }
    }
    sq_metrics_snapshot_free(x);
    return arr;
}

/* The task snapshot's part of the console's state, kept between events:
 * a snapshot costs a system call per waiting task (some 20 us each), so
 * with many tasks it is taken again only after 20 times its own cost
 * (at most 5% of a core per console), not at every event. */
typedef struct snap_cache {
    json_t *tasks, *locks, *cycles;
    int64_t next;               /* sq_now when it is taken again */
    int64_t taken_at;
} snap_cache;

static void snap_refresh(snap_cache *c)
{
    int64_t t0 = sq_now();
    if (c->tasks && t0 < c->next)
        return;
    sq_check_snapshot *x;
    if (sq_check_snapshot_take(&x) != 0)
        return;
    json_decref(c->tasks);
    json_decref(c->locks);
    json_decref(c->cycles);
    c->tasks = tasks_json(x);
    c->locks = locks_json(x);
    c->cycles = cycles_json(x);
    sq_check_snapshot_free(x);
    int64_t took = sq_now() - t0;
    c->taken_at = t0;
    c->next = t0 + 20 * took;
}

static void snap_free(snap_cache *c)
{
    json_decref(c->tasks);
    json_decref(c->locks);
    json_decref(c->cycles);
}

/* Everything the console shows, as one JSON object (docs/monitoring.md,
 * "The console's events"). */
static json_t *console_state(sq_srv *s, bool first, snap_cache *sc)
{
    json_t *o = json_object();
    int overall;
    json_object_set_new(o, "server", json_pack("{s:s,s:s,s:I,s:I,s:I,s:I}", "name",
                                               s->cfg.server_name, "version", "0.1.0",
                                               "uptime_s",
                                               (json_int_t)((sq_now() - s->mon->started) /
                                                            SQ_SEC),
                                               "requests_total",
                                               (json_int_t)atomic_load(&s->requests_total),
                                               "in_flight", (json_int_t)sq_mon_inflight(s),
                                               "sessions",
                                               (json_int_t)sq_mon_sessions(s)));
    json_object_set_new(o, "health", sq_health_json(s, &overall));
    json_t *hist = json_array();
    sq_mon_history_json(s, hist, first ? SQ_MON_HISTORY : 2);
    json_object_set_new(o, "history", hist);
    json_object_set_new(o, "first", json_boolean(first));
    json_object_set_new(o, "request_metrics", json_boolean(s->mon->requests_on));
    json_t *fl = json_array();
    size_t nfl = 0;
    sq_mon_flight_json(s, fl, MAX_LIST, &nfl);
    json_object_set_new(o, "requests", json_pack("{s:I,s:o}", "total", (json_int_t)nfl,
                                                 "list", fl));
    json_object_set_new(o, "sessions", sessions_json(s));
    json_object_set_new(o, "alerts", sq_alerts_json(s, false));
    json_object_set_new(o, "sources", sources_json(s));
    sq_check_config cfg;
    sq_check_get_config(&cfg);
    json_object_set_new(o, "checks_on", json_boolean(cfg.findings != 0));
    snap_refresh(sc);
    if (sc->tasks) {
        json_object_set(o, "tasks", sc->tasks);
        json_object_set(o, "locks", sc->locks);
        json_object_set(o, "cycles", sc->cycles);
        json_object_set_new(o, "tasks_age_ms",
                            json_integer((sq_now() - sc->taken_at) / SQ_MSEC));
    }
    return o;
}

/* The period of the event stream: ?interval=MS (200 ms to 10 s), else
 * one second. */
static int64_t interval_of(const sq_http_request *req)
{
    const char *q = req->target ? strchr(req->target, '?') : NULL;
    long ms = 1000;
    /* The parameter named exactly "interval" (not "xinterval"). */
    for (const char *p = q; p && *p; p = strchr(p + 1, '&'))
        if (strncmp(p + 1, "interval=", 9) == 0)
            ms = strtol(p + 10, NULL, 10);
    if (ms < 200)
        ms = 200;
    if (ms > 10000)
        ms = 10000;
    return ms * SQ_MSEC;
}

static int console_events(sq_srv *s, sq_io *io, const sq_http_request *req,
                          bool *close, atomic_bool *gone)
{
    static const char *const hdr[] = {"Cache-Control: no-store", "X-Accel-Buffering: no"};
    int rc = sq_http_stream_begin(io, req, 200, "text/event-stream", hdr, 2);
    int64_t period = interval_of(req);
    sq__strbuf b = SQ__STRBUF_INIT;
    snap_cache sc = {0};
    for (bool first = true; rc == 0; first = false) {
        json_t *st = console_state(s, first, &sc);
        char *text = json_dumps(st, JSON_COMPACT);
        json_decref(st);
        sq__strbuf_reset(&b);
        if (text)
            sq_sse_event(&b, NULL, NULL, first ? 2000 : -1, text, strlen(text));
        free(text);
        if (b.failed || (rc = sq_http_stream_chunk(io, b.buf, b.len)) != 0)
            break;
        /* Until the next event: woken early only to see the peer gone. */
        int64_t until = sq_now() + period;
        while (rc == 0 && sq_now() < until) {
            if (atomic_load(gone))
                rc = -EPIPE;
            else if (sq_sleep(100 * SQ_MSEC) != 0)
                rc = -ECANCELED;
        }
    }
    sq__strbuf_free(&b);
    snap_free(&sc);
    *close = true;
    return rc == -ECANCELED || rc == -EPIPE ? 0 : rc;
}

static const char *type_of(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (dot && strcmp(dot, ".html") == 0)
        return "text/html; charset=utf-8";
    if (dot && strcmp(dot, ".js") == 0)
        return "text/javascript; charset=utf-8";
    if (dot && strcmp(dot, ".css") == 0)
        return "text/css; charset=utf-8";
    if (dot && strcmp(dot, ".svg") == 0)
        return "image/svg+xml";
    return "application/octet-stream";
}

static int console_file(sq_io *io, const char *name)
{
    for (size_t i = 0; i < sq__console_nassets; i++) {
        const sq_console_asset *a = &sq__console_assets[i];
        if (strcmp(a->name, name) != 0)
            continue;
        /* Everything comes from here: no inline code, nothing fetched
         * from elsewhere. */
        static const char csp[] = "Content-Security-Policy: default-src 'self'; "
                                  "img-src 'self' data:; frame-ancestors 'none'";
        static const char *const hdr[] = {csp, "X-Content-Type-Options: nosniff",
                                          "Cache-Control: no-cache"};
        return send_text(io, 200, type_of(a->name), (const char *)a->data, a->len, hdr, 3);
    }
    return -ENOENT;
}

/* ------------------------------------------------------------ serving */

int sq_admin_serve(sq_srv *s, sq_io *io, const sq_http_request *req, bool *close,
                   atomic_bool *gone)
{
    const char *p = req->path;
    bool console = strcmp(p, "/console") == 0 || strcmp(p, "/console/") == 0;
    bool asset = !console && strncmp(p, "/console/", 9) == 0 &&
                 strcmp(p, "/console/events") != 0;
    bool known = console || asset || strcmp(p, "/metrics") == 0 ||
                 strcmp(p, "/health") == 0 || strcmp(p, "/health/live") == 0 ||
                 strcmp(p, "/debug/tasks") == 0 || strcmp(p, "/debug/locks") == 0 ||
                 strcmp(p, "/console/events") == 0;
    if (!known)
        return -ENOENT;
    if (strcmp(req->method, "GET") != 0) {
        static const char *const hdr[] = {"Allow: GET"};
        return send_text(io, 405, NULL, NULL, 0, hdr, 1);
    }
    if (console || asset) {
        int rc = console_file(io, console ? "index.html" : p + 9);
        return rc == -ENOENT ? send_json(io, 404, json_pack("{s:s}", "error",
                                                             "no such console file"))
                             : rc;
    }
    if (!sq_http_authorized(s, req, true)) {
        static const char *const hdr[] = {"WWW-Authenticate: Bearer realm=\"squirreld\""};
        static const char body[] = "{\"error\":\"Unauthorized\"}";
        return send_text(io, 401, "application/json", body, sizeof body - 1, hdr, 1);
    }
    if (strcmp(p, "/metrics") == 0) {
        char *text;
        size_t len;
        int rc = sq_metrics_render_alloc(s->mon->reg, &text, &len);
        if (rc)
            return send_json(io, 500, json_pack("{s:s}", "error", sq_strerror(rc)));
        rc = send_text(io, 200, "text/plain; version=0.0.4; charset=utf-8", text, len,
                       NULL, 0);
        free(text);
        return rc;
    }
    if (strcmp(p, "/health/live") == 0)
        return send_json(io, 200, json_pack("{s:s}", "status", "alive"));
    if (strcmp(p, "/health") == 0) {
        int overall;
        json_t *h = sq_health_json(s, &overall);
        return send_json(io, overall == SQ_HEALTH_FAILED ? 503 : 200, h);
    }
    if (strcmp(p, "/debug/tasks") == 0) {
        sq_check_snapshot *x;
        char *text = NULL;
        int rc = sq_check_snapshot_take(&x);
        if (rc == 0) {
            rc = sq_check_snapshot_json(x, &text);
            sq_check_snapshot_free(x);
        }
        if (rc)
            return send_json(io, 500, json_pack("{s:s}", "error", sq_strerror(rc)));
        static const char *const hdr[] = {"Cache-Control: no-store"};
        rc = send_text(io, 200, "application/json", text, strlen(text), hdr, 1);
        free(text);
        return rc;
    }
    if (strcmp(p, "/debug/locks") == 0)
        return send_json(io, 200, debug_locks());
    return console_events(s, io, req, close, gone);
}
