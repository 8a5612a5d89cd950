/* metrics_demo: lock-free metrics in a task-based program.
 *
 * 200 request tasks, spread over the workers, count themselves (a counter
 * per status), track the work in flight (a gauge) and time themselves (a
 * histogram in nanoseconds, exported in seconds).  None of these updates
 * takes a lock or writes a cache line another worker writes.  The
 * runtime's own figures are exported through the same registry, and the
 * whole registry is rendered in the Prometheus text format, as a /metrics
 * endpoint would serve it.  Exits 0 if the numbers add up. */
#include <squirrel/metrics.h>
#include <squirrel/runtime.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REQUESTS 200

typedef struct app {
    sq_counter *ok, *failed;
    sq_gauge *in_flight;
    sq_histogram *latency;
} app;

typedef struct request {
    app *app;
    int id;
} request;

static void *handle(void *arg)
{
    request *r = arg;
    int64_t start = sq_now();
    sq_gauge_inc(r->app->in_flight);
    sq_sleep(100 * SQ_USEC); /* the work: waits, never holding a lock */
    sq_gauge_dec(r->app->in_flight);
    sq_histogram_observe(r->app->latency, sq_now() - start);
    sq_counter_inc(r->id % 10 == 0 ? r->app->failed : r->app->ok);
    return NULL;
}

static void *serve(void *arg)
{
    sq_metrics *reg = arg;
    app a;
    static const char *const ok[] = {"status", "ok", NULL};
    static const char *const failed[] = {"status", "failed", NULL};
    sq_metric_opts req_ok = {.name = "demo_requests_total",
                             .help = "Requests handled, by status.",
                             .labels = ok};
    sq_metric_opts req_failed = req_ok; /* the same family, another series */
    req_failed.labels = failed;
    sq_metric_opts inf = {.name = "demo_requests_in_flight",
                          .help = "Requests being handled now."};
    sq_metric_opts lat = {.name = "demo_request_duration_seconds",
                          .help = "Time to handle a request.",
                          .divisor = SQ_SEC}; /* observed in ns */
    static const int64_t bounds[] = {200 * SQ_USEC, SQ_MSEC, 10 * SQ_MSEC,
                                     100 * SQ_MSEC};
    if (sq_counter_create(&a.ok, reg, &req_ok) != 0 ||
        sq_counter_create(&a.failed, reg, &req_failed) != 0 ||
        sq_gauge_create(&a.in_flight, reg, &inf) != 0 ||
        sq_histogram_create(&a.latency, reg, &lat, bounds, 4) != 0)
        return "cannot register the metrics";
    sq_metrics_collector *runtime_figures;
    if (sq_metrics_register_runtime(reg, sq_runtime_current(), NULL,
                                    &runtime_figures) != 0)
        return "cannot register the runtime's figures";

    static request reqs[REQUESTS];
    sq_task tasks[REQUESTS];
    for (int i = 0; i < REQUESTS; i++) {
        reqs[i] = (request){.app = &a, .id = i};
        if (sq_spawn(&tasks[i], handle, &reqs[i], NULL) != 0)
            return "cannot spawn";
    }
    for (int i = 0; i < REQUESTS; i++)
        sq_join(tasks[i], NULL);

    char *text;
    if (sq_metrics_render_alloc(reg, &text, NULL) != 0)
        return "cannot render";
    fputs(text, stdout);
    uint64_t count;
    sq_histogram_get(a.latency, NULL, &count, NULL);
    const char *bad = NULL;
    if (!strstr(text, "demo_requests_total{status=\"ok\"} 180\n") ||
        !strstr(text, "demo_requests_total{status=\"failed\"} 20\n") ||
        !strstr(text, "demo_requests_in_flight 0\n") ||
        !strstr(text, "demo_request_duration_seconds_count 200\n") ||
        !strstr(text, "# TYPE squirrel_tasks_spawned_total counter\n") ||
        count != REQUESTS)
        bad = "the figures do not add up";
    free(text);
    /* The runtime goes away after this task: stop exporting it first. */
    sq_metrics_remove_collector(reg, runtime_figures);
    return (void *)bad;
}

int main(void)
{
    sq_metrics *reg;
    if (sq_metrics_create(&reg) != 0)
        return 1;
    void *err = NULL;
    int rc = sq_run(serve, reg, NULL, &err);
    sq_metrics_destroy(reg); /* frees the metrics registered in it */
    if (rc != 0 || err) {
        fprintf(stderr, "metrics_demo: %s\n", err ? (char *)err : "sq_run failed");
        return 1;
    }
    return 0;
}
