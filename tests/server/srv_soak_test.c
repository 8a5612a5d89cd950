/* A soak: a thousand legacy HTTP sessions open at once against one
 * server, each with two calls in flight at the same moment on two
 * connections of its own (two thousand calls held by the gate until every
 * one has arrived), then a pipelined pair on one connection, then DELETE.
 * Every answer is counted and checked (none lost, none doubled), the
 * sessions are all gone at the end, and under ASan nothing leaks. */
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "mcptest.h"
#include "squirrel/barrier.h"

#define SESSIONS 1000

typedef struct soak {
    mt_server *m;
    int n;
    sq_barrier open;             /* every session is made and connected */
    atomic_int answers, deleted, sessions;
    char **sids;
} soak;

typedef struct one {
    soak *s;
    int i;
} one;

static void expect_answer(mt_http *h, soak *s, const char *want)
{
    mt_resp *r = mt_http_next(h);
    CHECK(r && r->status == 200);
    char *got = mt_http_answer(h, r);
    if (CHECK_JSON(got, want))
        atomic_fetch_add(&s->answers, 1);
    free(got);
}

static void *session_main(void *arg)
{
    one *o = arg;
    soak *s = o->s;
    int i = o->i;
    char *sid = mt_session(s->m, "2025-11-25");
    s->sids[i] = sid;
    if (sid)
        atomic_fetch_add(&s->sessions, 1);
    char *hd = mt_sess_headers(sid ? sid : "none", "2025-11-25");
    mt_http *a = mt_http_open(s->m), *b = mt_http_open(s->m);
    sq_barrier_wait(&s->open, NULL);

    /* Two calls in flight at once, on the two connections. */
    char *ga = mt_fmt("{\"jsonrpc\":\"2.0\",\"id\":\"a%d\",\"method\":\"tools/call\",\"params\":"
                      "{\"name\":\"gate\"}}", i);
    char *gb = mt_fmt("{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"tools/call\",\"params\":"
                      "{\"name\":\"gate\",\"arguments\":{}}}", i);
    mt_http_post(a, hd, ga);
    mt_http_post(b, hd, gb);
    char *wa = mt_fmt("{\"jsonrpc\":\"2.0\",\"id\":\"a%d\",\"result\":{\"content\":[{\"type\":"
                      "\"text\",\"text\":\"passed\"}]}}", i);
    char *wb = mt_fmt("{\"jsonrpc\":\"2.0\",\"id\":%d,\"result\":{\"content\":[{\"type\":"
                      "\"text\",\"text\":\"passed\"}]}}", i);
    expect_answer(a, s, wa);
    expect_answer(b, s, wb);
    free(ga);
    free(gb);
    free(wa);
    free(wb);

    /* A pipelined pair on one connection: an echo and a sleep, answered
     * in order. */
    char *e = mt_fmt("{\"jsonrpc\":\"2.0\",\"id\":\"e%d\",\"method\":\"tools/call\",\"params\":"
                     "{\"name\":\"echo\",\"arguments\":{\"text\":\"session %d\"}}}", i, i);
    char *z = mt_fmt("{\"jsonrpc\":\"2.0\",\"id\":\"z%d\",\"method\":\"tools/call\",\"params\":"
                     "{\"name\":\"sleep\",\"arguments\":{\"ms\":%d}}}", i, i % 20);
    char *both = mt_fmt("POST /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
                        "application/json\r\nAccept: application/json, text/event-stream\r\n"
                        "%sContent-Length: %zu\r\n\r\n%s"
                        "POST /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
                        "application/json\r\nAccept: application/json, text/event-stream\r\n"
                        "%sContent-Length: %zu\r\n\r\n%s",
                        hd, strlen(e), e, hd, strlen(z), z);
    mt_http_raw(a, both, strlen(both));
    char *we = mt_fmt("{\"jsonrpc\":\"2.0\",\"id\":\"e%d\",\"result\":{\"content\":[{\"type\":"
                      "\"text\",\"text\":\"session %d\"}]}}", i, i);
    char *wz = mt_fmt("{\"jsonrpc\":\"2.0\",\"id\":\"z%d\",\"result\":{\"content\":[{\"type\":"
                      "\"text\",\"text\":\"slept %d ms\"}]}}", i, i % 20);
    expect_answer(a, s, we);
    expect_answer(a, s, wz);
    free(e);
    free(z);
    free(both);
    free(we);
    free(wz);

    mt_http_delete(b, hd);
    mt_resp *r = mt_http_next(b);
    if (r && r->status == 200)
        atomic_fetch_add(&s->deleted, 1);
    mt_http_close(a);
    mt_http_close(b);
    free(hd);
    return NULL;
}

/* Enough descriptors for both ends of every connection: the soft limit
 * raised to the hard one.  Returns how many sessions fit. */
static int sessions_that_fit(void)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    /* Per session: two connections and the one of initialize, both ends. */
    rlim_t fit = (rl.rlim_cur - 64) / 6;
    if (fit < SESSIONS)
        fprintf(stderr, "    only %llu descriptors: %llu sessions\n",
                (unsigned long long)rl.rlim_cur, (unsigned long long)fit);
    return fit < SESSIONS ? (int)fit : SESSIONS;
}

MT_TEST(thousand_sessions_with_calls_in_flight_all_answered)
{
    soak s = {.n = sessions_that_fit()};
    sq_srv_config cfg;
    mt_config(&cfg);
    cfg.max_sessions = s.n;
    s.m = mt_start_with(&cfg);
    sq_srv_config_free(&cfg);
    s.sids = calloc((size_t)s.n, sizeof *s.sids);
    sq_barrier_init(&s.open, (size_t)s.n);
    one *ones = calloc((size_t)s.n, sizeof *ones);
    sq_task *t = calloc((size_t)s.n, sizeof *t);
    sq_spawn_opts so = {.name = "soak-client"};
    for (int i = 0; i < s.n; i++) {
        ones[i] = (one){&s, i};
        CHECK_EQ(sq_spawn(&t[i], session_main, &ones[i], &so), 0);
    }
    /* Every session holds two calls at the gate at the same moment. */
    WAIT_UNTIL(atomic_load(&s.m->gate_entered) == 2 * s.n);
    CHECK_EQ(atomic_load(&s.sessions), s.n);
    /* All open at once: one more is refused. */
    int status;
    char *got = mt_post1(s.m, NULL,
                         "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":"
                         "{\"protocolVersion\":\"2025-11-25\",\"capabilities\":{},"
                         "\"clientInfo\":{\"name\":\"x\",\"version\":\"1\"}}}",
                         &status);
    CHECK_EQ(status, 503);
    free(got);
    mt_gate_open(s.m, 2 * s.n);
    for (int i = 0; i < s.n; i++)
        CHECK_EQ(sq_join(t[i], NULL), 0);
    fprintf(stderr, "    %d sessions, %d answers, %d deleted\n", s.n,
            atomic_load(&s.answers), atomic_load(&s.deleted));
    CHECK_EQ(atomic_load(&s.answers), 4 * s.n);
    CHECK_EQ(atomic_load(&s.deleted), s.n);
    CHECK_EQ(atomic_load(&s.m->gate_passed), 2 * s.n);
    /* Every session is gone. */
    mt_http *h = mt_http_open(s.m);
    for (int i = 0; i < s.n; i++) {
        if (!s.sids[i])
            continue;
        char *hd = mt_sess_headers(s.sids[i], "2025-11-25");
        mt_http_post(h, hd, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}");
        mt_resp *r = mt_http_next(h);
        CHECK(r && r->status == 404);
        if (r)
            mt_http_body(h, r);
        free(hd);
        free(s.sids[i]);
    }
    mt_http_close(h);
    /* And the room they took is free again. */
    char *sid = mt_session(s.m, "2025-11-25");
    CHECK(sid != NULL);
    free(sid);
    mt_stop(s.m);
    sq_barrier_destroy(&s.open);
    free(ones);
    free(t);
    free(s.sids);
}
