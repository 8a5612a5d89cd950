/* Monitoring (docs/monitoring.md): /metrics read by a real Prometheus
 * parser (Python's prometheus_client, Debian python3-prometheus-client)
 * with exact counts after a known workload; the request metrics switched
 * off; health following a component that fails and recovers; an alert
 * that fires (health degraded, a warning to the session that asked for
 * logs, the alerts resource) and resolves; the task dump and the lock
 * page naming a deliberately deadlocked pair and its cycle; the admin
 * listener and the token; and scrapes of every endpoint while requests
 * run, none of which stalls them (the suite runs with
 * SQUIRREL_CHECK=all,abort in CI: no lock is held across a wait). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mcptest.h"
#include "squirrel/blocking.h"
#include "squirrel/check.h"
#include "sq_server/monitor.h"

/* ----------------------------------------------------------- helpers */

typedef struct got {
    int status;
    char *body;
} got;

/* GET path on a new connection to port (with the headers, or NULL). */
static got http_get_port(mt_server *m, int port, const char *path, const char *headers)
{
    (void)m;
    got g = {0};
    g.body = mt_get(port, path, headers, &g.status);
    return g;
}

static got http_get(mt_server *m, const char *path)
{
    return http_get_port(m, m->http_port, path, NULL);
}

#define call mt_call_modern

static size_t call_len(const char *tool, const char *args)
{
    char *body = mt_fmt("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":"
                        "{\"name\":\"%s\",\"arguments\":%s," MT_META "}}", tool, args);
    size_t n = strlen(body);
    free(body);
    return n;
}

/* ------------------------------------------- the Prometheus parser */

/* Parses the exposition with prometheus_client's own parser and prints
 * one JSON array of [name, {labels}, value] per sample. */
static const char parse_py[] =
    "import json, sys\n"
    "from prometheus_client.parser import text_string_to_metric_families\n"
    "out = []\n"
    "for fam in text_string_to_metric_families(open(sys.argv[1]).read()):\n"
    "    for s in fam.samples:\n"
    "        out.append([s.name, s.labels, s.value])\n"
    "print(json.dumps(out))\n";

typedef struct py_job {
    const char *text;
    char *out;
    int status;
} py_job;

static void *run_parser(void *arg)
{
    py_job *j = arg;
    char path[] = "/tmp/sq-metrics-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return NULL;
    size_t n = strlen(j->text);
    bool ok = write(fd, j->text, n) == (ssize_t)n;
    close(fd);
    char script[] = "/tmp/sq-parse-XXXXXX";
    int sfd = mkstemp(script);
    ok = ok && sfd >= 0 && write(sfd, parse_py, sizeof parse_py - 1) == sizeof parse_py - 1;
    if (sfd >= 0)
        close(sfd);
    char *cmd = mt_fmt("/usr/bin/python3 %s %s", script, path);
    FILE *p = ok ? popen(cmd, "r") : NULL;
    free(cmd);
    sq__strbuf b = SQ__STRBUF_INIT;
    if (p) {
        char buf[4096];
        size_t got;
        while ((got = fread(buf, 1, sizeof buf, p)) > 0)
            sq__strbuf_add(&b, buf, got);
        j->status = pclose(p);
    } else {
        j->status = -1;
    }
    unlink(path);
    unlink(script);
    j->out = sq__strbuf_take(&b);
    return NULL;
}

/* Scrapes /metrics and parses it: the samples as a JSON array. */
static json_t *scrape(mt_server *m)
{
    got g = http_get(m, "/metrics");
    CHECK_EQ(g.status, 200);
    py_job j = {.text = g.body ? g.body : ""};
    CHECK_EQ(sq_blocking_run(run_parser, &j, NULL), 0);
    if (j.status != 0)
        fprintf(stderr, "  the parser refused the text (status %d):\n%s\n", j.status, g.body);
    CHECK_EQ(j.status, 0);
    json_t *v = j.out ? json_loads(j.out, 0, NULL) : NULL;
    CHECK(json_is_array(v));
    free(j.out);
    free(g.body);
    return v;
}

/* The value of sample `name` with exactly the labels given (pairs,
 * NULL-ended), or -1 if it is not there. */
static double sample(json_t *all, const char *name, const char *const *labels)
{
    size_t i;
    json_t *s;
    json_array_foreach(all, i, s) {
        if (strcmp(json_string_value(json_array_get(s, 0)), name) != 0)
            continue;
        json_t *l = json_array_get(s, 1);
        size_t n = 0;
        bool match = true;
        for (; labels && labels[2 * n]; n++) {
            const char *v = json_string_value(json_object_get(l, labels[2 * n]));
            match &= v && strcmp(v, labels[2 * n + 1]) == 0;
        }
        if (match && json_object_size(l) == n)
            return json_number_value(json_array_get(s, 2));
    }
    return -1;
}

/* The sum of every sample named `name`. */
static double total(json_t *all, const char *name)
{
    double sum = 0;
    size_t i;
    json_t *s;
    json_array_foreach(all, i, s) {
        if (strcmp(json_string_value(json_array_get(s, 0)), name) == 0)
            sum += json_number_value(json_array_get(s, 2));
    }
    return sum;
}

#define REQS(method, outcome) \
    sample(all, "squirreld_requests_total", \
           (const char *const[]){"method", method, "outcome", outcome, NULL})

/* ---------------------------------------------------------- /metrics */

MT_TEST(metrics_count_a_known_workload_exactly)
{
    mt_server *m = mt_start();
    char *sid = mt_session(m, "2025-06-18");
    json_t *before = scrape(m);
    double bytes0 = sample(before, "squirreld_http_received_bytes_total", NULL);
    CHECK(bytes0 > 0); /* the session's initialize */
    CHECK_EQ(total(before, "squirreld_requests_total"), 0);
    json_decref(before);

    size_t sent = 0;
    int st;
    for (int i = 0; i < 5; i++) { /* 5 tools/call, ok */
        free(call(m, "echo", "{\"text\":\"hi\"}", &st));
        CHECK_EQ(st, 200);
        sent += call_len("echo", "{\"text\":\"hi\"}");
    }
    for (int i = 0; i < 3; i++) { /* 3 tools/call, a JSON-RPC error */
        free(call(m, "no_such_tool", "{}", &st));
        sent += call_len("no_such_tool", "{}");
    }
    char *sh = mt_sess_headers(sid, "2025-06-18");
    for (int i = 0; i < 2; i++) { /* 2 unknown methods: "other", error */
        char *body = mt_fmt("{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"x/unknown\"}", 10 + i);
        free(mt_post1(m, sh, body, &st));
        CHECK_EQ(st, 200);
        sent += strlen(body);
        free(body);
    }
    for (int i = 0; i < 4; i++) { /* 4 legacy pings, ok */
        char *body = mt_fmt("{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"ping\"}", i);
        free(mt_post1(m, sh, body, &st));
        CHECK_EQ(st, 200);
        sent += strlen(body);
        free(body);
    }

    json_t *all = scrape(m);
    CHECK_EQ(REQS("tools/call", "ok"), 5);
    CHECK_EQ(REQS("tools/call", "error"), 3);
    CHECK_EQ(REQS("tools/call", "cancelled"), 0);
    CHECK_EQ(REQS("other", "error"), 2);
    CHECK_EQ(REQS("ping", "ok"), 4);
    CHECK_EQ(total(all, "squirreld_requests_total"), 14);
    /* Every method and outcome has its series (bounded: 18 x 4). */
    size_t n = 0, i;
    json_t *s;
    json_array_foreach(all, i, s)
        n += strcmp(json_string_value(json_array_get(s, 0)), "squirreld_requests_total") == 0;
    CHECK_EQ(n, 18 * 4);
    const char *const tc[] = {"method", "tools/call", NULL};
    CHECK_EQ(sample(all, "squirreld_request_duration_seconds_count", tc), 8);
    CHECK_EQ(sample(all, "squirreld_request_duration_seconds_bucket",
                    (const char *const[]){"method", "tools/call", "le", "+Inf", NULL}), 8);
    CHECK_EQ(sample(all, "squirreld_request_duration_seconds_count",
                    (const char *const[]){"method", "ping", NULL}), 4);
    CHECK_EQ(sample(all, "squirreld_http_received_bytes_total", NULL) - bytes0, (double)sent);
    CHECK_EQ(sample(all, "squirreld_sessions", NULL), 1);
    CHECK_EQ(sample(all, "squirreld_requests_rejected_total", NULL), 0);
    CHECK_EQ(sample(all, "squirreld_health", (const char *const[]){"status", "healthy", NULL}), 1);
    CHECK(sample(all, "squirrel_tasks_alive", NULL) > 0);
    CHECK(sample(all, "squirrel_task_switches_total", NULL) > 0);
    CHECK(sample(all, "squirrel_lock_wait_seconds_count", NULL) >= 0);
    json_decref(all);
    /* Nothing is in flight once every answer is in (the permits are
     * given back just after the answer: waited for, not assumed). */
    int64_t until = sq_now() + MT_WAIT;
    double inflight;
    do {
        all = scrape(m);
        inflight = sample(all, "squirreld_requests_in_flight", NULL);
        json_decref(all);
    } while (inflight != 0 && sq_now() < until);
    CHECK_EQ(inflight, 0);
    free(sh);
    free(sid);
    mt_stop(m);
}

MT_TEST(request_metrics_can_be_switched_off)
{
    sq_srv_config c;
    mt_config(&c);
    c.request_metrics = false;
    mt_server *m = mt_start_with(&c);
    sq_srv_config_free(&c);
    int st;
    for (int i = 0; i < 3; i++)
        free(call(m, "echo", "{\"text\":\"x\"}", &st));
    json_t *all = scrape(m);
    CHECK_EQ(total(all, "squirreld_requests_total"), 0);
    CHECK_EQ(sample(all, "squirreld_http_received_bytes_total", NULL), 0);
    CHECK_EQ(sample(all, "squirreld_requests_received_total", NULL), 3);
    json_decref(all);
    mt_stop(m);
}

/* The context manager's, commands' and plugins' families after a known
 * workload: exact counts. */
MT_TEST(component_metrics_count_a_known_workload_exactly)
{
    sq_srv_config c;
    mt_config(&c);
    c.store = strdup("memory");
    mt_server *m = mt_start_with(&c);
    sq_srv_config_free(&c);
    static const char *const calls[][2] = {
        {"context_create", "{\"id\":\"a\",\"document\":{}}"},
        {"context_create", "{\"id\":\"b\",\"document\":{}}"},
        {"context_update", "{\"id\":\"a\",\"patch_type\":\"merge\",\"patch\":{\"x\":1}}"},
        {"context_update", "{\"id\":\"a\",\"patch_type\":\"merge\",\"patch\":{\"x\":2}}"},
        {"context_update", "{\"id\":\"a\",\"patch_type\":\"merge\",\"patch\":{\"x\":3}}"},
        {"context_update", "{\"id\":\"b\",\"patch_type\":\"json\",\"patch\":"
                           "[{\"op\":\"add\",\"path\":\"/y\",\"value\":1}]}"},
        {"context_delete", "{\"id\":\"b\"}"},
        {"help", "{}"},
        {"help", "{}"},
        {"help", "{\"nope\":1}"},
    };
    for (size_t i = 0; i < sizeof calls / sizeof *calls; i++) {
        int st;
        char *a = call(m, calls[i][0], calls[i][1], &st);
        CHECK_EQ(st, 200);
        CHECK(a && (strstr(a, "\"isError\":true") != NULL) == (i == 9));
        if (a && i != 9 && strstr(a, "\"isError\":true"))
            fprintf(stderr, "  %s: %s\n", calls[i][0], a);
        free(a);
    }
    json_t *all = scrape(m);
#define CHANGES(kind) \
    sample(all, "squirreld_context_changes_total", (const char *const[]){"kind", kind, NULL})
    CHECK_EQ(CHANGES("create"), 2);
    CHECK_EQ(CHANGES("merge"), 3);
    CHECK_EQ(CHANGES("json"), 1);
    CHECK_EQ(CHANGES("delete"), 1);
    CHECK_EQ(CHANGES("replace"), 0);
    CHECK_EQ(CHANGES("restore"), 0);
    CHECK_EQ(CHANGES("mark"), 0);
#undef CHANGES
    /* Each change waited for its commit: one transaction each. */
    double commits = sample(all, "squirreld_context_commits_total",
                            (const char *const[]){"outcome", "ok", NULL});
    CHECK_EQ(commits, 7);
    CHECK_EQ(sample(all, "squirreld_context_commits_total",
                    (const char *const[]){"outcome", "failed", NULL}), 0);
    CHECK_EQ(sample(all, "squirreld_context_commit_batch_size_count", NULL), commits);
    CHECK_EQ(sample(all, "squirreld_context_commit_batch_size_sum", NULL), 7);
    CHECK_EQ(sample(all, "squirreld_context_commit_duration_seconds_count", NULL), commits);
    CHECK_EQ(sample(all, "squirreld_contexts", NULL), 1);
#define CMD(name, outcome)                       \
    sample(all, "squirreld_command_calls_total", \
           (const char *const[]){"command", name, "outcome", outcome, NULL})
    CHECK_EQ(CMD("help", "ok"), 2);
    CHECK_EQ(CMD("help", "invalid"), 1);
    CHECK_EQ(CMD("history", "ok"), 0);
#undef CMD
    CHECK_EQ(sample(all, "squirreld_plugins", (const char *const[]){"state", "active", NULL}), 0);
    CHECK_EQ(total(all, "squirreld_plugins"), 0);
    json_decref(all);
    mt_stop(m);
}

/* ------------------------------------------------------------ health */

static void health_is(mt_server *m, int status, const char *overall, const char *comp,
                      const char *comp_status, const char *reason)
{
    got g = http_get(m, "/health");
    CHECK_EQ(g.status, status);
    json_t *h = json_loads(g.body ? g.body : "", 0, NULL);
    CHECK_STR(json_string_value(json_object_get(h, "status")), overall);
    bool found = false;
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(h, "components"), i, c) {
        if (strcmp(json_string_value(json_object_get(c, "name")), comp) != 0)
            continue;
        found = true;
        CHECK_STR(json_string_value(json_object_get(c, "status")), comp_status);
        CHECK_STR(json_string_value(json_object_get(c, "reason")), reason);
    }
    CHECK(found);
    if (!found)
        fprintf(stderr, "  no component %s in %s\n", comp, g.body);
    json_decref(h);
    free(g.body);
}

MT_TEST(health_follows_a_failing_component_and_back)
{
    mt_server *m = mt_start();
    sq_health_component *store, *dup;
    CHECK_EQ(sq_health_register(m->srv, "store", &store), 0);
    CHECK_EQ(sq_health_register(m->srv, "store", &dup), -EEXIST);
    CHECK_EQ(sq_health_register(m->srv, "bad name", &dup), -EINVAL);
    CHECK_EQ(sq_health_register(m->srv, "server", &dup), -EEXIST);
    health_is(m, 200, "healthy", "store", "healthy", "");
    health_is(m, 200, "healthy", "server", "healthy", "");

    CHECK_EQ(sq_health_set(store, SQ_HEALTH_FAILED, "cannot commit: disk full"), 0);
    CHECK_EQ(sq_health_overall(m->srv), SQ_HEALTH_FAILED);
    health_is(m, 503, "failed", "store", "failed", "cannot commit: disk full");
    json_t *all = scrape(m);
    CHECK_EQ(sample(all, "squirreld_health", (const char *const[]){"status", "failed", NULL}), 1);
    CHECK_EQ(sample(all, "squirreld_health", (const char *const[]){"status", "healthy", NULL}), 0);
    json_decref(all);
    /* The liveness form only says the process answers. */
    got live = http_get(m, "/health/live");
    CHECK_EQ(live.status, 200);
    CHECK_JSON(live.body, "{\"status\":\"alive\"}");
    free(live.body);

    CHECK_EQ(sq_health_set(store, SQ_HEALTH_DEGRADED, "commits are slow"), 0);
    health_is(m, 200, "degraded", "store", "degraded", "commits are slow");
    CHECK_EQ(sq_health_set(store, SQ_HEALTH_HEALTHY, NULL), 0);
    health_is(m, 200, "healthy", "store", "healthy", "");
    CHECK_EQ(sq_health_set(store, 7, NULL), -EINVAL);
    sq_health_unregister(store);
    CHECK_EQ(sq_health_register(m->srv, "store", &store), 0); /* the name is free */
    sq_health_unregister(store);
    mt_stop(m);
}

/* A shell command, on the blocking pool: its exit status. */
static void *shell_main(void *arg)
{
    char **cmd = arg;
    int st = system(cmd[0]);
    cmd[1] = (char *)(intptr_t)st;
    return NULL;
}

static int shell(char *cmd)
{
    char *job[2] = {cmd, NULL};
    CHECK_EQ(sq_blocking_run(shell_main, job, NULL), 0);
    free(cmd);
    return (int)(intptr_t)job[1];
}

static bool wait_health(mt_server *m, const char *want);

/* A store that cannot commit: the SQLite file and its WAL made immutable
 * (chattr +i: even root's writes fail, also through open descriptors). */
MT_TEST(a_store_that_cannot_commit_fails_health)
{
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/srv_monitor-%d-XXXXXX", (int)getpid());
    CHECK(mkdtemp(dir) != NULL);
    sq_srv_config c;
    mt_config(&c);
    c.store = mt_fmt("sqlite:%s/ctx.db", dir);
    mt_server *m = mt_start_with(&c);
    sq_srv_config_free(&c);
    int st;
    char *a = call(m, "context_create", "{\"id\":\"a\",\"document\":{}}", &st);
    CHECK(a && !strstr(a, "\"isError\":true"));
    free(a);
    health_is(m, 200, "healthy", "store", "healthy", "");
    CHECK_EQ(shell(mt_fmt("chattr +i %s/ctx.db*", dir)), 0);
    a = call(m, "context_create", "{\"id\":\"b\",\"document\":{}}", &st);
    CHECK(a && strstr(a, "store_failed"));
    free(a);
    got g = http_get(m, "/health");
    CHECK_EQ(g.status, 503);
    CHECK(g.body && strstr(g.body, "\"name\":\"store\",\"status\":\"failed\""));
    CHECK(g.body && strstr(g.body, "the store cannot commit: "));
    free(g.body);
    json_t *all = scrape(m);
    CHECK_EQ(sample(all, "squirreld_context_commits_total",
                    (const char *const[]){"outcome", "failed", NULL}), 1);
    json_decref(all);
    /* Refused meanwhile (or tried, and failed again). */
    a = call(m, "context_create", "{\"id\":\"c\",\"document\":{}}", &st);
    CHECK(a && strstr(a, "store_failed"));
    free(a);
    /* Writable again: the writer's probe finds it (1 to 2 s after the
     * failures), health is back, and changes are taken. */
    CHECK_EQ(shell(mt_fmt("chattr -i %s/ctx.db*", dir)), 0);
    CHECK(wait_health(m, "healthy"));
    health_is(m, 200, "healthy", "store", "healthy", "");
    a = call(m, "context_create", "{\"id\":\"d\",\"document\":{\"n\":1}}", &st);
    CHECK(a && !strstr(a, "\"isError\":true"));
    free(a);
    a = call(m, "context_get", "{\"id\":\"d\"}", &st);
    CHECK(a && strstr(a, "\"n\":1"));
    free(a);
    mt_stop(m);
    CHECK_EQ(shell(mt_fmt("rm -rf %s", dir)), 0);
}

/* ------------------------------------------------------------ alerts */

/* Waits until /health's overall status is `want`. */
static bool wait_health(mt_server *m, const char *want)
{
    int64_t until = sq_now() + MT_WAIT;
    while (sq_now() < until) {
        got g = http_get(m, "/health");
        json_t *h = json_loads(g.body ? g.body : "", 0, NULL);
        bool ok = h && strcmp(json_string_value(json_object_get(h, "status")), want) == 0;
        json_decref(h);
        free(g.body);
        if (ok)
            return true;
        sq_sleep(10 * SQ_MSEC); /* between polls of a condition */
    }
    return false;
}

typedef struct gate_call {
    mt_server *m;
    int status;
} gate_call;

static void *gate_main(void *arg)
{
    gate_call *g = arg;
    free(call(g->m, "gate", "{}", &g->status));
    return NULL;
}

MT_TEST(an_alert_fires_and_resolves)
{
    sq_srv_config c;
    mt_config(&c);
    c.alerts_json = strdup("[{\"name\":\"busy\",\"metric\":\"squirreld_requests_in_flight\","
                           "\"op\":\">=\",\"threshold\":1,\"for\":\"50ms\"}]");
    c.alert_interval = 20 * SQ_MSEC;
    mt_server *m = mt_start_with(&c);
    sq_srv_config_free(&c);
    /* A legacy session that asked for logs, with its GET stream open. */
    char *sid = mt_session(m, "2025-06-18");
    char *sh = mt_sess_headers(sid, "2025-06-18");
    int st;
    free(mt_post1(m, sh, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"logging/setLevel\","
                         "\"params\":{\"level\":\"info\"}}", &st));
    CHECK_EQ(st, 200);
    mt_http *gs = mt_http_open(m);
    mt_http_get(gs, sh);
    mt_resp *stream = mt_http_next(gs);
    CHECK(stream && stream->status == 200);
    CHECK(wait_health(m, "healthy"));

    gate_call g = {.m = m};
    sq_task t;
    CHECK_EQ(sq_spawn(&t, gate_main, &g, NULL), 0);
    CHECK(wait_health(m, "degraded"));
    health_is(m, 200, "degraded", "alerts", "degraded", "firing: busy");
    char *msg = stream ? mt_sse_msg(gs, stream) : NULL;
    json_t *n = json_loads(msg ? msg : "", 0, NULL);
    CHECK_STR(json_string_value(json_object_get(n, "method")), "notifications/message");
    json_t *p = json_object_get(n, "params");
    CHECK_STR(json_string_value(json_object_get(p, "level")), "warning");
    CHECK_STR(json_string_value(json_object_get(p, "logger")), "squirreld.alerts");
    CHECK_STR(json_string_value(json_object_get(json_object_get(p, "data"), "alert")), "busy");
    CHECK_STR(json_string_value(json_object_get(json_object_get(p, "data"), "state")), "firing");
    json_decref(n);
    free(msg);
    /* Listed as a resource. */
    char *rd = mt_post1(m, sh, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"resources/read\","
                               "\"params\":{\"uri\":\"squirreld://alerts\"}}", &st);
    json_t *r = json_loads(rd ? rd : "", 0, NULL);
    const char *text = json_string_value(json_object_get(
        json_array_get(json_object_get(json_object_get(r, "result"), "contents"), 0), "text"));
    json_t *list = json_loads(text ? text : "", 0, NULL);
    CHECK_STR(json_string_value(json_object_get(json_array_get(list, 0), "state")), "firing");
    CHECK_EQ(json_number_value(json_object_get(json_array_get(list, 0), "value")), 1);
    json_decref(list);
    json_decref(r);
    free(rd);
    json_t *all = scrape(m);
    CHECK_EQ(sample(all, "squirreld_alerts_firing", NULL), 1);
    json_decref(all);

    /* The call ends: the alert resolves, health is back. */
    mt_gate_open(m, 1);
    CHECK_EQ(sq_join(t, NULL), 0);
    CHECK_EQ(g.status, 200);
    CHECK(wait_health(m, "healthy"));
    health_is(m, 200, "healthy", "alerts", "healthy", "");
    msg = stream ? mt_sse_msg(gs, stream) : NULL;
    n = json_loads(msg ? msg : "", 0, NULL);
    p = json_object_get(n, "params");
    CHECK_STR(json_string_value(json_object_get(p, "level")), "notice");
    CHECK_STR(json_string_value(json_object_get(json_object_get(p, "data"), "state")),
              "resolved");
    json_decref(n);
    free(msg);
    mt_http_close(gs);
    free(sh);
    free(sid);
    mt_stop(m);
}

MT_TEST(bad_alert_rules_are_refused)
{
    static const char *const bad[] = {
        "[{\"metric\":\"m\",\"threshold\":1}]",
        "[{\"name\":\"a\",\"threshold\":1}]",
        "[{\"name\":\"a\",\"metric\":\"m\"}]",
        "[{\"name\":\"a\",\"metric\":\"m\",\"threshold\":1,\"op\":\"!=\"}]",
        "[{\"name\":\"a\",\"metric\":\"m\",\"threshold\":1,\"for\":\"soon\"}]",
        "[{\"name\":\"a\",\"metric\":\"m\",\"threshold\":1,\"extra\":1}]",
        NULL};
    for (int i = 0; bad[i]; i++) {
        sq_srv_config c;
        mt_config(&c);
        c.alerts_json = strdup(bad[i]);
        sq_srv *s;
        char err[256] = "";
        CHECK_EQ(sq_srv_create(&s, &c, err, sizeof err), -EINVAL);
        CHECK(strncmp(err, "alerts[0]: ", 11) == 0);
        sq_srv_config_free(&c);
    }
}

/* Lock holders, waiters and cycles come from the run-time checks: a
 * build without them (SQ_CHECKS=OFF) has no such view to test. */
#if !defined(SQ_CHECKS) || SQ_CHECKS
/* ------------------------------------------------- the deadlocked pair */

static atomic_int dl_ready;

typedef struct dl {
    sq_mutex *first, *second;
} dl;

static void *deadlocker(void *arg)
{
    dl *d = arg;
    if (sq_mutex_lock(d->first) != 0)
        return NULL;
    atomic_fetch_add(&dl_ready, 1);
    while (atomic_load(&dl_ready) < 2)
        sq_yield();
    if (sq_mutex_lock(d->second) == 0) /* never: aborted while waiting */
        sq_mutex_unlock(d->second);
    sq_mutex_unlock(d->first);
    return NULL;
}

static const char *ctx_name(json_t *step)
{
    const char *s = json_string_value(json_object_get(step, "context"));
    return s ? s : "";
}

MT_TEST(the_task_dump_names_a_deadlocked_pair)
{
    /* The hooks on with the deadlock finding only and no search but the
     * dump's (which reports nothing): the pair is made on purpose. */
    sq_check_config saved;
    sq_check_get_config(&saved);
    CHECK_EQ(sq_check_configure(&(sq_check_config){.findings = SQ_CHECK_DEADLOCK}), 0);
    mt_server *m = mt_start();
    sq_mutex ledger, queue;
    sq_mutex_init_named(&ledger, "test.ledger");
    sq_mutex_init_named(&queue, "test.queue");
    atomic_store(&dl_ready, 0);
    dl a = {&ledger, &queue}, b = {&queue, &ledger};
    sq_task ta, tb;
    CHECK_EQ(sq_spawn(&ta, deadlocker, &a, &(sq_spawn_opts){.name = "payments"}), 0);
    CHECK_EQ(sq_spawn(&tb, deadlocker, &b, &(sq_spawn_opts){.name = "refunds"}), 0);

    /* /debug/tasks: polled until the cycle has closed. */
    json_t *dump = NULL, *cycle = NULL;
    int64_t until = sq_now() + MT_WAIT;
    while (sq_now() < until) {
        got g = http_get(m, "/debug/tasks");
        CHECK_EQ(g.status, 200);
        json_decref(dump);
        dump = json_loads(g.body ? g.body : "", 0, NULL);
        free(g.body);
        cycle = json_array_get(json_object_get(dump, "cycles"), 0);
        if (cycle)
            break;
        sq_sleep(5 * SQ_MSEC);
    }
    CHECK(cycle != NULL);
    CHECK_EQ(json_array_size(cycle), 2);
    bool pay = false, ref = false;
    size_t i;
    json_t *step;
    json_array_foreach(cycle, i, step) {
        const char *cls = json_string_value(
            json_object_get(json_object_get(step, "waits_for"), "class"));
        if (strstr(ctx_name(step), "'payments'")) {
            pay = true;
            CHECK_STR(cls, "test.queue");
        } else if (strstr(ctx_name(step), "'refunds'")) {
            ref = true;
            CHECK_STR(cls, "test.ledger");
        }
    }
    CHECK(pay && ref);
    /* Both tasks are in the dump, each holding one lock and wanting the
     * other. */
    int seen = 0;
    json_t *rt;
    json_array_foreach(json_object_get(dump, "runtimes"), i, rt) {
        size_t k;
        json_t *t;
        json_array_foreach(json_object_get(rt, "tasks"), k, t) {
            const char *name = json_string_value(json_object_get(t, "name"));
            if (!name || (strcmp(name, "payments") && strcmp(name, "refunds")))
                continue;
            seen++;
            CHECK_EQ(json_array_size(json_object_get(t, "holds")), 1);
            CHECK_STR(json_string_value(json_object_get(json_object_get(t, "wants"), "class")),
                      strcmp(name, "payments") == 0 ? "test.queue" : "test.ledger");
        }
    }
    CHECK_EQ(seen, 2);
    json_decref(dump);

    /* /debug/locks: both locks, each with its holder and its waiter, and
     * the cycle. */
    got g = http_get(m, "/debug/locks");
    CHECK_EQ(g.status, 200);
    json_t *lk = json_loads(g.body ? g.body : "", 0, NULL);
    CHECK(json_is_true(json_object_get(lk, "checks_on")));
    int locks = 0;
    json_t *l;
    json_array_foreach(json_object_get(lk, "locks"), i, l) {
        const char *cls = json_string_value(json_object_get(l, "class"));
        if (!cls || strncmp(cls, "test.", 5) != 0)
            continue;
        locks++;
        json_t *h = json_array_get(json_object_get(l, "holders"), 0);
        json_t *w = json_array_get(json_object_get(l, "waiters"), 0);
        const char *holder = json_string_value(json_object_get(h, "holder"));
        const char *waiter = json_string_value(json_object_get(w, "name"));
        bool is_ledger = strcmp(cls, "test.ledger") == 0;
        CHECK(holder && strstr(holder, is_ledger ? "'payments'" : "'refunds'"));
        CHECK(waiter && strstr(waiter, is_ledger ? "refunds" : "payments"));
    }
    CHECK_EQ(locks, 2);
    CHECK_EQ(json_array_size(json_object_get(lk, "cycles")), 1);
    CHECK(json_is_object(json_object_get(lk, "order_graph")));
    json_decref(lk);
    free(g.body);

    sq_abort(ta);
    sq_abort(tb);
    sq_join(ta, NULL);
    sq_join(tb, NULL);
    mt_stop(m);
    sq_mutex_destroy(&ledger);
    sq_mutex_destroy(&queue);
    CHECK_EQ(sq_check_configure(&saved), 0);
}

#endif

/* ------------------------------------------------- the admin listener */

MT_TEST(the_admin_listener_and_the_token)
{
    char path[] = "/tmp/sq-token-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0 && write(fd, "s3cret\n", 7) == 7);
    close(fd);
    sq_srv_config c;
    mt_config(&c);
    c.token_file = strdup(path);
    CHECK_EQ(sq_srv_config_add_listen(&c, SQ_LISTEN_ADMIN, "127.0.0.1:0"), 0);
    mt_server *m = mt_start_with(&c);
    sq_srv_config_free(&c);
    CHECK(m->admin_port > 0);
    /* The admin listener: the monitoring paths, with the token (header or
     * cookie); /mcp is not there. */
    got g = http_get_port(m, m->admin_port, "/health", NULL);
    CHECK_EQ(g.status, 401);
    free(g.body);
    g = http_get_port(m, m->admin_port, "/health", "Authorization: Bearer s3cret\r\n");
    CHECK_EQ(g.status, 200);
    free(g.body);
    g = http_get_port(m, m->admin_port, "/metrics", "Cookie: a=b; squirreld_token=s3cret\r\n");
    CHECK_EQ(g.status, 200);
    CHECK(g.body && strstr(g.body, "# TYPE squirreld_requests_total counter\n"));
    free(g.body);
    g = http_get_port(m, m->admin_port, "/metrics", "Cookie: squirreld_token=wrong\r\n");
    CHECK_EQ(g.status, 401);
    free(g.body);
    g = http_get_port(m, m->admin_port, "/mcp", "Authorization: Bearer s3cret\r\n");
    CHECK_EQ(g.status, 404);
    free(g.body);
    /* The console's page carries no data: served without the token. */
    g = http_get_port(m, m->admin_port, "/console", NULL);
    CHECK_EQ(g.status, 200);
    CHECK(g.body && strstr(g.body, "<script src=\"/console/console.js\""));
    free(g.body);
    g = http_get_port(m, m->admin_port, "/console/console.js", NULL);
    CHECK_EQ(g.status, 200);
    free(g.body);
    /* The MCP listener no longer serves them; the cookie is no token for
     * /mcp. */
    g = http_get_port(m, m->http_port, "/metrics", "Authorization: Bearer s3cret\r\n");
    CHECK_EQ(g.status, 404);
    free(g.body);
    int st;
    free(mt_post1(m, "Cookie: squirreld_token=s3cret\r\n",
                  "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}", &st));
    CHECK_EQ(st, 401);
    mt_stop(m);
    unlink(path);
}

/* ---------------------------------------------- scraping under load */

#define CLIENTS 4
#define CALLS 60

typedef struct load {
    mt_server *m;
    atomic_int done, answered, scrapes;
} load;

static void *client_main(void *arg)
{
    load *L = arg;
    mt_http *h = mt_http_open(L->m);
    char *hdr = mt_modern_headers("tools/call", "echo");
    for (int i = 0; i < CALLS; i++) {
        char *body = mt_fmt("{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"tools/call\",\"params\":"
                            "{\"name\":\"echo\",\"arguments\":{\"text\":\"n%d\"}," MT_META "}}",
                            i, i);
        mt_http_post(h, hdr, body);
        free(body);
        mt_resp *r = mt_http_next(h);
        char *ans = r ? mt_http_answer(h, r) : NULL;
        char *want = mt_fmt("\"text\":\"n%d\"", i);
        if (ans && strstr(ans, want))
            atomic_fetch_add(&L->answered, 1);
        free(want);
        free(ans);
    }
    free(hdr);
    mt_http_close(h);
    atomic_fetch_add(&L->done, 1);
    return NULL;
}

static void *scraper_main(void *arg)
{
    load *L = arg;
    static const char *const paths[] = {"/metrics", "/health", "/debug/tasks",
                                        "/debug/locks"};
    for (int i = 0; atomic_load(&L->done) < CLIENTS; i++) {
        got g = http_get(L->m, paths[i % 4]);
        CHECK_EQ(g.status, 200);
        free(g.body);
        atomic_fetch_add(&L->scrapes, 1);
    }
    return NULL;
}

/* A console's event stream read while the load runs: three events. */
static void *console_main(void *arg)
{
    load *L = arg;
    mt_http *h = mt_http_open(L->m);
    char *req = mt_fmt("GET /console/events?interval=200 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n",
                       L->m->http_port);
    mt_http_raw(h, req, strlen(req));
    free(req);
    mt_resp *r = mt_http_next(h);
    CHECK(r && r->status == 200);
    for (int i = 0; r && i < 3; i++) {
        mt_event ev;
        CHECK(mt_sse_next(h, r, &ev));
        json_t *st = json_loads(ev.data ? ev.data : "", 0, NULL);
        CHECK(json_is_object(json_object_get(st, "tasks")));
        CHECK(json_is_object(json_object_get(st, "health")));
        json_decref(st);
        mt_event_free(&ev);
    }
    mt_http_close(h);
    return NULL;
}

/* A lock held while its holder waits (allowed on purpose) and a task
 * waiting for it: the scrapes read them, and wait for neither. */
static sq_mutex stuck;
static sq_notify release;

static void *stuck_holder(void *arg)
{
    (void)arg;
    sq_mutex_lock(&stuck);
    sq_notify_wait(&release);
    sq_mutex_unlock(&stuck);
    return NULL;
}

static void *stuck_waiter(void *arg)
{
    (void)arg;
    if (sq_mutex_lock(&stuck) == 0)
        sq_mutex_unlock(&stuck);
    return NULL;
}

MT_TEST(scrapes_never_stall_requests)
{
    /* The stuck lock is held for the whole test on purpose: the long-hold
     * and long-wait findings are set aside meanwhile (the others, with
     * SQUIRREL_CHECK=all,abort, stay on). */
    sq_check_config saved, quiet;
    sq_check_get_config(&saved);
    quiet = saved;
    quiet.findings &= ~(unsigned)(SQ_CHECK_LONG_HOLD | SQ_CHECK_LONG_WAIT);
    int crc = sq_check_configure(&quiet);
    CHECK(crc == 0 || crc == -ENOTSUP); /* -ENOTSUP: built without checks */
    mt_server *m = mt_start();
    sq_mutex_init_named(&stuck, "test.stuck");
    sq_mutex_allow_hold_across_waits(&stuck);
    sq_notify_init(&release);
    sq_task holder, waiter;
    CHECK_EQ(sq_spawn(&holder, stuck_holder, NULL, NULL), 0);
    CHECK_EQ(sq_spawn(&waiter, stuck_waiter, NULL, NULL), 0);

    load L = {.m = m};
    sq_task c[CLIENTS], s, con;
    CHECK_EQ(sq_spawn(&s, scraper_main, &L, NULL), 0);
    CHECK_EQ(sq_spawn(&con, console_main, &L, NULL), 0);
    for (int i = 0; i < CLIENTS; i++)
        CHECK_EQ(sq_spawn(&c[i], client_main, &L, NULL), 0);
    for (int i = 0; i < CLIENTS; i++)
        sq_join(c[i], NULL);
    sq_join(s, NULL);
    sq_join(con, NULL);
    CHECK_EQ(atomic_load(&L.answered), CLIENTS * CALLS);
    CHECK(atomic_load(&L.scrapes) > 0);
    json_t *all = scrape(m);
    CHECK_EQ(REQS("tools/call", "ok"), CLIENTS * CALLS);
    json_decref(all);

    sq_notify_one(&release);
    sq_join(holder, NULL);
    sq_join(waiter, NULL);
    sq_mutex_destroy(&stuck);
    mt_stop(m);
    crc = sq_check_configure(&saved);
    CHECK(crc == 0 || crc == -ENOTSUP);
}

