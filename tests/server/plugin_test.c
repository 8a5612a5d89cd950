/* Plugins (sq_server/plugins.h, squirrel/plugin.h), in squirreld itself
 * (a child process: plugins link the shared libsquirrel.so, which the
 * in-process tests do not use): dependency order with a diamond, a cycle
 * and a missing dependency; failing, slow and hanging starts; loads
 * refused (ABI mismatch, no descriptor, a bad descriptor, a missing
 * symbol) with the server still serving; a plugin's lock-order inversion
 * reported by the checks; and unload, load and reload through
 * plugin_admin while 64 clients call the plugins' commands. */
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mcptest.h"

#define PLUGIN(name) SQ_PLUGIN_DIR "/" name ".so"

typedef struct child {
    mt_child *c;
    mt_server addr;      /* only http_port is used */
    sq__strbuf log;      /* its stderr so far */
    char cfg[600];       /* a config file, or "" */
} child;

/* Reads the child's stderr until a line contains `what` (true), or it
 * ends or the wait passes (false). */
static bool log_until(child *k, const char *what)
{
    if (k->log.buf && strstr(k->log.buf, what))
        return true;
    int64_t until = sq_now() + MT_WAIT;
    char *l;
    while ((l = mt_next_until(k->c->err, until))) {
        sq__strbuf_printf(&k->log, "%s\n", l);
        bool hit = strstr(l, what) != NULL;
        free(l);
        if (hit)
            return true;
    }
    return false;
}

/* squirreld on 127.0.0.1:0 with args (NULL-terminated) and, if cfg is
 * not NULL, a config file with that JSON text. */
static child *start(const char *cfg, const char *const *env, const char *const *args)
{
    child *k = calloc(1, sizeof *k);
    const char *argv[32] = {"--http", "127.0.0.1:0"};
    size_t n = 2;
    if (cfg) {
        /* Beside the plugins: the file's relative paths are from there. */
        snprintf(k->cfg, sizeof k->cfg, SQ_PLUGIN_DIR "/test-config-%d-XXXXXX",
                 (int)getpid());
        int fd = mkstemp(k->cfg);
        CHECK(fd >= 0);
        CHECK_EQ(write(fd, cfg, strlen(cfg)), (long long)strlen(cfg));
        close(fd);
        argv[n++] = "--config";
        argv[n++] = k->cfg;
    }
    for (size_t i = 0; args[i] && n < 30; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    k->c = mt_spawn_env(argv, env);
    CHECK(log_until(k, "listening on http://127.0.0.1:"));
    const char *url = k->log.buf ? strstr(k->log.buf, "http://127.0.0.1:") : NULL;
    k->addr.http_port = url ? atoi(url + strlen("http://127.0.0.1:")) : 0;
    CHECK(k->addr.http_port > 0);
    return k;
}

/* SIGTERM, and the exit status. */
static int stop(child *k)
{
    kill(k->c->pid, SIGTERM);
    log_until(k, "\n\n"); /* reads the rest of stderr, to its end */
    int status = mt_child_wait(k->c, sq_now() + MT_WAIT);
    if (k->cfg[0])
        unlink(k->cfg);
    mt_child_free(k->c);
    sq__strbuf_free(&k->log);
    free(k);
    return status;
}

/* A 2026-07-28 request on a connection of its own: the answer. */
static char *rpc(child *k, const char *method, const char *name, const char *params)
{
    char *hd = mt_modern_headers(method, name);
    char *body = mt_fmt("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"%s\",\"params\":"
                        "{%s%s" MT_META "}}",
                        method, params ? params : "", params ? "," : "");
    char *a = mt_post1(&k->addr, hd, body, NULL);
    free(hd);
    free(body);
    return a;
}

static char *call(child *k, const char *tool, const char *args)
{
    char *p = mt_fmt("\"name\":\"%s\",\"arguments\":%s", tool, args);
    char *a = rpc(k, "tools/call", tool, p);
    free(p);
    return a;
}

/* squirrel://plugins, parsed. */
static json_t *plugins(child *k)
{
    char *a = rpc(k, "resources/read", "squirrel://plugins",
                  "\"uri\":\"squirrel://plugins\"");
    json_t *j = a ? json_loads(a, 0, NULL) : NULL;
    free(a);
    const char *text = json_string_value(json_object_get(
        json_array_get(json_object_get(json_object_get(j, "result"), "contents"), 0),
        "text"));
    json_t *doc = text ? json_loads(text, 0, NULL) : NULL;
    json_decref(j);
    CHECK(doc != NULL);
    return doc;
}

static json_t *plugin_rec(json_t *doc, const char *name)
{
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(doc, "plugins"), i, p)
        if (strcmp(json_string_value(json_object_get(p, "name")), name) == 0)
            return p;
    return NULL;
}

/* Checks plugin `name`'s state, and that its reason contains `why`. */
static void expect(json_t *doc, const char *name, const char *state, const char *why,
                   int line)
{
    json_t *p = plugin_rec(doc, name);
    const char *st = json_string_value(json_object_get(p, "state"));
    const char *re = json_string_value(json_object_get(p, "reason"));
    if (!p || !st || strcmp(st, state) != 0 || (why && (!re || !strstr(re, why)))) {
        char msg[900];
        snprintf(msg, sizeof msg, "plugin %s: state %s (want %s), reason \"%s\" (want "
                 "\"%s\")", name, st ? st : "(none)", state, re ? re : "", why ? why : "");
        sq_test_fail(__FILE__, line, msg);
    }
}
#define EXPECT(doc, name, state, why) expect((doc), (name), (state), (why), __LINE__)

/* The seq of plugin `name`'s transition to `to`. */
static long long seq_of(json_t *doc, const char *name, const char *to)
{
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(doc, "transitions"), i, t)
        if (strcmp(json_string_value(json_object_get(t, "plugin")), name) == 0 &&
            strcmp(json_string_value(json_object_get(t, "to")), to) == 0)
            return json_integer_value(json_object_get(t, "seq"));
    return -1;
}

/* Where `what` first appears in the child's log (-1 if not). */
static long at(child *k, const char *what)
{
    const char *p = k->log.buf ? strstr(k->log.buf, what) : NULL;
    return p ? (long)(p - k->log.buf) : -1;
}

static bool answer_has(const char *a, const char *what)
{
    return a && strstr(a, what);
}

/* ------------------------------------------------------------- tests */

MT_TEST(plugin_diamond_order)
{
    /* Given in the wrong order: the host starts them in dependency order. */
    const char *args[] = {"--plugin", PLUGIN("tp_top"), "--plugin", PLUGIN("tp_left"),
                          "--plugin", PLUGIN("tp_right"), "--plugin", PLUGIN("tp_base"),
                          NULL};
    child *k = start(NULL, NULL, args);
    json_t *doc = plugins(k);
    const char *names[] = {"base", "left", "right", "top"};
    for (int i = 0; i < 4; i++)
        EXPECT(doc, names[i], "active", NULL);
    long long base = seq_of(doc, "base", "active"), left = seq_of(doc, "left", "active"),
              right = seq_of(doc, "right", "active"), top = seq_of(doc, "top", "active");
    CHECK(base > 0 && base < left && base < right && left < top && right < top);
    /* top needs left and right: its init sees them active. */
    CHECK(seq_of(doc, "left", "active") < seq_of(doc, "top", "initializing"));
    json_decref(doc);
    char *a = call(k, "top.ping", "{}");
    CHECK(answer_has(a, "\"text\":\"top\""));
    free(a);
    /* Stopping: the reverse order. */
    kill(k->c->pid, SIGTERM);
    CHECK(log_until(k, "plugin base: shutting down -> disabled"));
    long stop_top = at(k, "plugin top: active -> shutting down");
    long stop_left = at(k, "plugin left: active -> shutting down");
    long stop_right = at(k, "plugin right: active -> shutting down");
    long stop_base = at(k, "plugin base: active -> shutting down");
    CHECK(stop_top >= 0 && stop_top < stop_left && stop_top < stop_right);
    CHECK(stop_left < stop_base && stop_right < stop_base);
    CHECK_EQ(stop(k), 0);
}

MT_TEST(plugin_cycle_and_missing)
{
    const char *args[] = {"--plugin", PLUGIN("tp_one"), "--plugin", PLUGIN("tp_two"),
                          "--plugin", PLUGIN("tp_needs_one"), "--plugin",
                          PLUGIN("tp_needs_ghost"), "--plugin", PLUGIN("hello"), NULL};
    child *k = start(NULL, NULL, args);
    json_t *doc = plugins(k);
    EXPECT(doc, "one", "failed", "dependency cycle: one -> two -> one");
    EXPECT(doc, "two", "failed", "dependency cycle: one -> two -> one");
    EXPECT(doc, "needs_one", "failed", "its dependency one failed");
    EXPECT(doc, "needs_ghost", "failed",
           "missing dependency: needs_ghost depends on ghost, which is not loaded");
    EXPECT(doc, "hello", "active", NULL);
    json_decref(doc);
    /* The others run; the failed ones' commands are not there. */
    char *a = call(k, "hello.greet", "{\"name\":\"Ann\"}");
    CHECK(answer_has(a, "Hello, Ann."));
    free(a);
    a = call(k, "one.ping", "{}");
    CHECK(answer_has(a, "Unknown tool: one.ping"));
    free(a);
    CHECK_EQ(stop(k), 0);
}

MT_TEST(plugin_failures)
{
    const char *args[] = {"--plugin", PLUGIN("tp_fails"), "--plugin",
                          PLUGIN("tp_needs_fails"), "--plugin", PLUGIN("tp_hangs"),
                          "--plugin", PLUGIN("tp_slow"), "--plugin", PLUGIN("tp_badabi"),
                          "--plugin", PLUGIN("tp_nodesc"), "--plugin",
                          PLUGIN("tp_badname"), "--plugin", PLUGIN("tp_missing"),
                          "--plugin", PLUGIN("hello"), NULL};
    child *k = start("{\"plugin_timeout\": \"300ms\"}", NULL, args);
    json_t *doc = plugins(k);
    EXPECT(doc, "fails", "failed", "start failed: ");
    EXPECT(doc, "needs_fails", "failed", "its dependency fails failed: start failed");
    EXPECT(doc, "hangs", "failed",
           "start did not return within its deadline (300 ms) nor when aborted: abandoned");
    CHECK(json_is_true(json_object_get(plugin_rec(doc, "hangs"), "abandoned")));
    EXPECT(doc, "slow", "failed", "start did not return within its deadline (300 ms): aborted");
    EXPECT(doc, "tp_badabi.so", "failed",
           "ABI version mismatch: the plugin was built for plugin ABI 2.0, this server "
           "has 1.0");
    EXPECT(doc, "tp_nodesc.so", "failed",
           "not a plugin: it does not export the symbol sq_plugin_descriptor");
    EXPECT(doc, "tp_badname.so", "failed",
           "bad descriptor: the name must be 1-64 of [a-z0-9_-]");
    EXPECT(doc, "tp_missing.so", "failed", "undefined symbol: sq_test_no_such_function");
    EXPECT(doc, "hello", "active", NULL);
    json_decref(doc);
    /* The server goes on serving, the good plugin among the rest. */
    char *a = call(k, "hello.greet", "{\"name\":\"Bo\",\"shout\":true}");
    CHECK(answer_has(a, "HELLO, Bo!"));
    free(a);
    a = call(k, "fails.ping", "{}");
    CHECK(answer_has(a, "Unknown tool: fails.ping"));
    free(a);
    CHECK_EQ(stop(k), 0);
}

#if !defined(SQ_CHECKS) || SQ_CHECKS
MT_TEST(plugin_lock_order_reported)
{
    /* The plugin's locks are the server's runtime's: the checks see them. */
    const char *env[] = {"SQUIRREL_CHECK=order", NULL};
    const char *args[] = {NULL};
    /* Loaded from the config file, by a path relative to it. */
    child *k = start("{\"plugins\": [\"tp_lockorder.so\"]}", env, args);
    char *a = call(k, "lo.ab", "{}");
    CHECK(answer_has(a, "taken"));
    free(a);
    a = call(k, "lo.ba", "{}");
    CHECK(answer_has(a, "taken"));
    free(a);
    CHECK(log_until(k, "lock order inversion"));
    CHECK(log_until(k, "tp.lock_b"));
    CHECK(at(k, "tp.lock_a") >= 0);
    CHECK_EQ(stop(k), 0);
}
#endif

/* --------------------------------------------- reload under 64 clients */

enum { CLIENTS = 64 };

typedef struct storm {
    child *k;
    atomic_bool stop;
    atomic_long sent, ok, refused;
    atomic_int bad;
    char *sids[CLIENTS];
} storm;

typedef struct client {
    storm *s;
    int i;
} client;

/* A clear refusal: the command was removed or paused past the call's
 * deadline (a tool error saying so), or it is not there (Unknown tool). */
static bool refusal(const char *a)
{
    return answer_has(a, "\"error\":\"unavailable\"") ||
           answer_has(a, "Unknown tool: hello.") || answer_has(a, "Unknown tool: greeter.") ||
           answer_has(a, "hello.greet failed");
}

static void *client_main(void *arg)
{
    client *c = arg;
    storm *s = c->s;
    char *hd = mt_sess_headers(s->sids[c->i], "2025-11-25");
    mt_http *h = mt_http_open(&s->k->addr);
    for (long n = 0; !atomic_load(&s->stop); n++) {
        char *body = (c->i + n) % 2
            ? mt_fmt("{\"jsonrpc\":\"2.0\",\"id\":%ld,\"method\":\"tools/call\",\"params\":"
                     "{\"name\":\"hello.wait\",\"arguments\":{\"ms\":2}}}", n)
            : mt_fmt("{\"jsonrpc\":\"2.0\",\"id\":%ld,\"method\":\"tools/call\",\"params\":"
                     "{\"name\":\"greeter.greet_all\",\"arguments\":{\"names\":[\"x\"]}}}", n);
        mt_http_post(h, hd, body);
        free(body);
        atomic_fetch_add(&s->sent, 1);
        mt_resp *r = mt_http_next(h);
        char *a = mt_http_answer(h, r);
        if (answer_has(a, "\"waited 2 ms\"") || answer_has(a, "\"greetings\":[\"Hello, x.\"]"))
            atomic_fetch_add(&s->ok, 1);
        else if (refusal(a))
            atomic_fetch_add(&s->refused, 1);
        else if (atomic_fetch_add(&s->bad, 1) < 3)
            fprintf(stderr, "client %d: unexpected answer: %s\n", c->i, a ? a : "(none)");
        free(a);
        if (!a)
            break; /* lost: counted as bad */
    }
    mt_http_close(h);
    free(hd);
    return NULL;
}

/* An admin action; the answer must say it was done. */
static void admin(child *k, const char *args, bool want_ok)
{
    char *a = call(k, "plugin_admin", args);
    bool ok = a && !strstr(a, "\"isError\":true") && strstr(a, ": done");
    if (ok != want_ok) {
        char msg[600];
        snprintf(msg, sizeof msg, "plugin_admin %s: %s", args, a ? a : "(no answer)");
        sq_test_fail(__FILE__, __LINE__, msg);
    }
    free(a);
}

/* Waits until the clients have made `more` more calls succeed. */
static void progress(storm *s, long more)
{
    long from = atomic_load(&s->ok);
    WAIT_UNTIL(atomic_load(&s->ok) >= from + more || atomic_load(&s->bad) > 0);
}

MT_TEST(plugin_reload_under_load)
{
    const char *args[] = {"--plugin", PLUGIN("hello"), "--plugin", PLUGIN("greeter"), NULL};
    storm *s = calloc(1, sizeof *s);
    s->k = start("{\"plugin_admin\": true, \"plugin_timeout\": \"10s\"}", NULL, args);
    for (int i = 0; i < CLIENTS; i++)
        s->sids[i] = mt_session(&s->k->addr, "2025-11-25");
    client cl[CLIENTS];
    sq_task t[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        cl[i] = (client){.s = s, .i = i};
        CHECK_EQ(sq_spawn(&t[i], client_main, &cl[i], NULL), 0);
    }
    progress(s, CLIENTS);
    /* Reloads: calls wait for the new code, none is refused. */
    for (int r = 0; r < 3; r++) {
        admin(s->k, "{\"action\":\"reload\",\"name\":\"hello\"}", true);
        progress(s, CLIENTS);
        admin(s->k, "{\"action\":\"reload\",\"name\":\"greeter\"}", true);
        progress(s, CLIENTS);
    }
    long refused_by_reloads = atomic_load(&s->refused);
    /* hello is needed by greeter: refused, with the reason. */
    char *a = call(s->k, "plugin_admin", "{\"action\":\"unload\",\"name\":\"hello\"}");
    CHECK(answer_has(a, "plugin hello is needed by greeter: unload those first"));
    free(a);
    /* Unloads: calls in flight finish, new ones are refused clearly. */
    admin(s->k, "{\"action\":\"unload\",\"name\":\"greeter\"}", true);
    admin(s->k, "{\"action\":\"unload\",\"name\":\"hello\"}", true);
    long refused = atomic_load(&s->refused);
    WAIT_UNTIL(atomic_load(&s->refused) >= refused + CLIENTS || atomic_load(&s->bad) > 0);
    admin(s->k, "{\"action\":\"load\",\"file\":\"" PLUGIN("hello") "\"}", true);
    admin(s->k, "{\"action\":\"load\",\"file\":\"" PLUGIN("greeter") "\"}", true);
    progress(s, CLIENTS);
    atomic_store(&s->stop, true);
    for (int i = 0; i < CLIENTS; i++)
        sq_join(t[i], NULL);
    fprintf(stderr, "plugin_reload_under_load: %ld calls: %ld completed, %ld refused\n",
            atomic_load(&s->sent), atomic_load(&s->ok), atomic_load(&s->refused));
    /* Every call answered: completed, or refused with a clear error. */
    CHECK_EQ(atomic_load(&s->bad), 0);
    CHECK_EQ(atomic_load(&s->sent), atomic_load(&s->ok) + atomic_load(&s->refused));
    CHECK_EQ(refused_by_reloads, 0);
    /* No session was dropped: each still answers. */
    for (int i = 0; i < CLIENTS; i++) {
        char *hd = mt_sess_headers(s->sids[i], "2025-11-25");
        char *ans = mt_post1(&s->k->addr, hd,
                             "{\"jsonrpc\":\"2.0\",\"id\":\"p\",\"method\":\"ping\"}", NULL);
        CHECK_JSON(ans, "{\"jsonrpc\":\"2.0\",\"id\":\"p\",\"result\":{}}");
        free(ans);
        free(hd);
        free(s->sids[i]);
    }
    json_t *doc = plugins(s->k);
    EXPECT(doc, "hello", "active", NULL);
    EXPECT(doc, "greeter", "active", NULL);
    CHECK(seq_of(doc, "hello", "disabled") > 0);
    json_decref(doc);
    CHECK_EQ(stop(s->k), 0);
    free(s);
}

/* ---- the context manager through the host API (examples/plugins/tally.c) */

typedef struct adder {
    child *k;
    int n;
    atomic_int failed;
} adder;

static void *adder_main(void *arg)
{
    adder *a = arg;
    for (int i = 0; i < a->n; i++) {
        char *ans = call(a->k, "tally.add", "{\"id\":\"plug.tally\",\"key\":\"hits\"}");
        if (!ans || !answer_has(ans, "\"key\":\"hits\"") || answer_has(ans, "\"isError\":true"))
            atomic_fetch_add(&a->failed, 1);
        free(ans);
    }
    return NULL;
}

/* structuredContent of a tools/call answer (a new reference), or NULL. */
static json_t *structured(const char *ans)
{
    json_t *j = ans ? json_loads(ans, 0, NULL) : NULL;
    json_t *sc = json_incref(json_object_get(json_object_get(j, "result"), "structuredContent"));
    json_decref(j);
    return sc;
}

MT_TEST(plugin_uses_contexts)
{
    const char *args[] = {"--store", "memory", "--plugin", PLUGIN("tally"), NULL};
    child *k = start(NULL, NULL, args);
    json_t *doc = plugins(k);
    EXPECT(doc, "tally", "active", NULL);
    json_decref(doc);
    /* The first add creates the context (version 1) and patches it (2). */
    char *a = call(k, "tally.add", "{\"id\":\"plug.tally\",\"key\":\"a/b\",\"by\":5}");
    json_t *sc = structured(a);
    CHECK_EQ(json_integer_value(json_object_get(sc, "value")), 5);
    CHECK_EQ(json_integer_value(json_object_get(sc, "version")), 2);
    json_decref(sc);
    free(a);
    /* Concurrent adds: compare-and-set, none lost. */
    enum { ADDERS = 4, EACH = 5 };
    adder ad = {.k = k, .n = EACH};
    sq_task t[ADDERS];
    for (int i = 0; i < ADDERS; i++)
        CHECK_EQ(sq_spawn(&t[i], adder_main, &ad, NULL), 0);
    for (int i = 0; i < ADDERS; i++)
        sq_join(t[i], NULL);
    CHECK_EQ(atomic_load(&ad.failed), 0);
    /* A client reads what the plugin's command changed. */
    a = call(k, "context_get", "{\"id\":\"plug.tally\"}");
    sc = structured(a);
    json_t *d = json_object_get(sc, "document");
    CHECK_EQ(json_integer_value(json_object_get(d, "hits")), ADDERS * EACH);
    CHECK_EQ(json_integer_value(json_object_get(d, "a/b")), 5);
    CHECK_EQ(json_integer_value(json_object_get(sc, "version")), 2 + ADDERS * EACH);
    json_decref(sc);
    free(a);
    /* The history names the plugin as the one who changed it. */
    a = call(k, "context_history", "{\"id\":\"plug.tally\",\"limit\":1}");
    CHECK(answer_has(a, "plugin:tally"));
    free(a);
    a = call(k, "tally.reset", "{\"id\":\"plug.tally\"}");
    CHECK(answer_has(a, "deleted"));
    free(a);
    a = call(k, "context_get", "{\"id\":\"plug.tally\"}");
    CHECK(answer_has(a, "not_found"));
    free(a);
    a = call(k, "tally.reset", "{\"id\":\"plug.tally\"}");
    CHECK(answer_has(a, "not_found: "));
    CHECK(answer_has(a, "\"isError\":true"));
    free(a);
    CHECK_EQ(stop(k), 0);
}

MT_TEST(plugin_contexts_without_store)
{
    const char *args[] = {"--store", "none", "--plugin", PLUGIN("tally"), NULL};
    child *k = start(NULL, NULL, args);
    char *a = call(k, "tally.add", "{\"id\":\"x\",\"key\":\"hits\"}");
    CHECK(answer_has(a, "the server has no context manager (it runs with --store none)"));
    CHECK(answer_has(a, "\"isError\":true"));
    free(a);
    CHECK_EQ(stop(k), 0);
}

/* ---- health: the "plugins" component (docs/monitoring.md) */

/* GET /health: the status code, and the body parsed in *doc. */
static int health(child *k, json_t **doc)
{
    mt_http *h = mt_http_open(&k->addr);
    char *req = mt_fmt("GET /health HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Length: 0\r\n\r\n",
                       k->addr.http_port);
    mt_http_raw(h, req, strlen(req));
    free(req);
    int status = 0;
    *doc = NULL;
    mt_resp *r = mt_http_next(h);
    if (r && mt_http_body(h, r)) {
        status = r->status;
        *doc = json_loads(r->body.buf ? r->body.buf : "", 0, NULL);
    }
    mt_http_close(h);
    return status;
}

/* The status and reason of component `name` in a /health document. */
static void component(json_t *doc, const char *name, const char **status, const char **reason)
{
    size_t i;
    json_t *c;
    *status = *reason = NULL;
    json_array_foreach(json_object_get(doc, "components"), i, c) {
        if (strcmp(json_string_value(json_object_get(c, "name")), name) == 0) {
            *status = json_string_value(json_object_get(c, "status"));
            *reason = json_string_value(json_object_get(c, "reason"));
        }
    }
}

MT_TEST(plugin_failed_turns_health_degraded)
{
    const char *args[] = {"--plugin", PLUGIN("tp_fails"), "--plugin", PLUGIN("hello"), NULL};
    child *k = start("{\"plugin_admin\": true}", NULL, args);
    json_t *doc = plugins(k);
    EXPECT(doc, "fails", "failed", "start failed: ");
    json_decref(doc);
    const char *st, *why;
    CHECK_EQ(health(k, &doc), 200);
    CHECK_STR(json_string_value(json_object_get(doc, "status")), "degraded");
    component(doc, "plugins", &st, &why);
    CHECK_STR(st, "degraded");
    CHECK_STR(why, "failed: fails");
    json_decref(doc);
    /* Unloaded: nothing is failed any more. */
    admin(k, "{\"action\":\"unload\",\"name\":\"fails\"}", true);
    CHECK_EQ(health(k, &doc), 200);
    CHECK_STR(json_string_value(json_object_get(doc, "status")), "healthy");
    component(doc, "plugins", &st, &why);
    CHECK_STR(st, "healthy");
    json_decref(doc);
    CHECK_EQ(stop(k), 0);
}
