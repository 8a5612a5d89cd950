/* Legacy-era SSE streams kept in PostgreSQL (docs/postgres.md, "The load
 * balancer"; src/server/events.c): two squirreld processes on one
 * database, as behind a load balancer that lost its affinity when an
 * instance died.
 *  - A legacy session on A calls a tool whose answer is an SSE stream of
 *    progress events; the client reads some of them; once the database
 *    holds several more (the test looks at the table itself), A is
 *    killed with SIGKILL.  A GET to B with the same Mcp-Session-Id and
 *    Last-Event-ID of the last event read replays exactly the events
 *    after it that A had stored: every row of the table, in order, with
 *    the same ids and data, none twice, then the stream ends.
 *  - A stream answered in full is replayed by the other instance from
 *    its beginning, or as an empty stream when nothing follows the id;
 *    once the session is DELETEd its rows are gone from the table and
 *    the replay is 404.
 *  - A Last-Event-ID of a session nobody stored is 404, as before.
 *  - A graceful stop commits every event before squirreld exits and
 *    keeps them: a new instance replays the stream to its response. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mcptest.h"
#include "pg_conn.h"
#include "pgtest.h"

#define VERSION "2025-11-25"

/* ------------------------------------------------------------ squirreld */

typedef struct node {
    mt_child *ch;
    int port;
} node;

/* With `config` a configuration file for --config, or NULL. */
static bool node_start_with(node *n, const char *uri, const char *config)
{
    const char *args[] = {"--http", "127.0.0.1:0", "--store", uri, "--fixtures", "bench",
                          config ? "--config" : NULL, config, NULL};
    n->ch = mt_spawn(args);
    n->port = mt_child_port(n->ch, "http");
    return n->port > 0;
}

static bool node_start(node *n, const char *uri)
{
    return node_start_with(n, uri, NULL);
}

static char *session_at(node *n)
{
    mt_server fake = {.http_port = n->port};
    return mt_session(&fake, VERSION);
}

/* ------------------------------------------------------ the database */

static pg_conn db = {.fd = -1};

/* The rows of a query with the session id as $1 and the stream as $2
 * (NULL if it failed: the test fails). */
static PGresult *db_rows(const char *sql, const char *sid, long long stream)
{
    char st[24];
    snprintf(st, sizeof st, "%lld", stream);
    const char *p[] = {sid, st};
    PGresult *r = NULL;
    char err[256];
    int rc = pgc_query(&db, sql, 2, p, PGRES_TUPLES_OK, &r, sq_now() + MT_WAIT, err,
                       sizeof err);
    if (rc) {
        fprintf(stderr, "    query failed: %s\n", err);
        CHECK(!"a query of the test failed");
    }
    return r;
}

static long long db_count(const char *sid, long long stream, long long after)
{
    char sql[160];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM squirrel_events WHERE session = $1 AND "
             "($2::bigint < 0 OR stream = $2::bigint) AND seq > %lld", after);
    PGresult *r = db_rows(sql, sid, stream);
    long long n = r ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : -1;
    PQclear(r);
    return n;
}

/* Waits until the table holds `cmp` `want` rows of the session's stream
 * after seq `after` (stream -1: any stream): polled every 2 ms. */
static bool db_wait(const char *sid, long long stream, long long after, char cmp,
                    long long want)
{
    int64_t deadline = sq_now() + MT_WAIT;
    for (;;) {
        long long n = db_count(sid, stream, after);
        if (n < 0)
            return false;
        if (cmp == '=' ? n == want : n >= want)
            return true;
        if (sq_now() > deadline) {
            fprintf(stderr, "    the table has %lld rows, wanted %c %lld\n", n, cmp, want);
            CHECK(!"the table did not get there in time");
            return false;
        }
        sq_sleep(2 * SQ_MSEC);
    }
}

/* ---------------------------------------------------------------- SSE */

/* A legacy session opened on n, and a call of its sleep tool (id; steps
 * progress notifications over ms) posted on a new connection: the
 * response, the connection in *h, the session id and its header lines in
 * *sid and *hd (the caller's to free). */
static mt_resp *post_sleep(node *n, int id, int ms, int steps, char **sid, char **hd,
                           mt_http **h)
{
    *sid = session_at(n);
    *hd = mt_sess_headers(*sid, VERSION);
    *h = mt_http_at(n->port);
    char *body = mt_fmt("{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"tools/call\","
                        "\"params\":{\"name\":\"sleep\",\"arguments\":{\"ms\":%d,"
                        "\"steps\":%d},\"_meta\":{\"progressToken\":\"t\"}}}",
                        id, ms, steps);
    mt_http_post(*h, *hd, body);
    free(body);
    return mt_http_next(*h);
}

/* "<stream>-<seq>" */
static bool parse_id(const char *id, long long *stream, long long *seq)
{
    char *end;
    if (!id)
        return false;
    *stream = strtoll(id, &end, 10);
    if (*end != '-')
        return false;
    *seq = strtoll(end + 1, &end, 10);
    return *end == '\0';
}

/* GET with Last-Event-ID on a new connection to port: the response (its
 * connection in *h). */
static mt_resp *resume(int port, const char *sid, const char *last, mt_http **h)
{
    *h = mt_http_at(port);
    char *hd = mt_fmt("Mcp-Session-Id: %s\r\nMCP-Protocol-Version: " VERSION
                      "\r\nLast-Event-ID: %s\r\n",
                      sid, last);
    mt_http_get(*h, hd);
    free(hd);
    return mt_http_next(*h);
}

/* The replay on r must be exactly the table's rows of the stream after
 * `after` (ids and data), then the end of the stream. */
static void expect_replay(mt_http *h, mt_resp *r, const char *sid, long long stream,
                          long long after)
{
    CHECK(r && r->status == 200);
    if (!r || r->status != 200)
        return;
    CHECK(mt_hdr_is(r, "content-type", "text/event-stream"));
    char sql[200];
    snprintf(sql, sizeof sql,
             "SELECT seq, data FROM squirrel_events WHERE session = $1 AND stream = "
             "$2::bigint AND seq > %lld ORDER BY seq",
             after);
    PGresult *rows = db_rows(sql, sid, stream);
    int nrows = rows ? PQntuples(rows) : 0;
    mt_event ev;
    int got = 0;
    long long prev = after;
    while (mt_sse_next(h, r, &ev)) {
        long long st = -1, seq = -1;
        CHECK(parse_id(ev.id, &st, &seq));
        CHECK_EQ(st, stream);
        CHECK_EQ(seq, prev + 1); /* in order, no gap, none twice */
        prev = seq;
        CHECK(ev.event && strcmp(ev.event, "message") == 0);
        if (got < nrows) {
            CHECK_EQ(seq, strtoll(PQgetvalue(rows, got, 0), NULL, 10));
            CHECK_STR(ev.data, PQgetvalue(rows, got, 1));
        }
        got++;
        mt_event_free(&ev);
    }
    CHECK_EQ(got, nrows);
    CHECK(r->complete); /* the stream ended */
    PQclear(rows);
}

/* The progress number a progress notification carries (-1: not one). */
static double progress_of(const char *msg)
{
    json_t *j = json_loads(msg, 0, NULL);
    json_t *p = json_object_get(json_object_get(j, "params"), "progress");
    double v = json_is_number(p) ? json_number_value(p) : -1;
    json_decref(j);
    return v;
}

/* --------------------------------------------------------------- tests */

/* A stream cut short by a SIGKILL of its instance, resumed on the other. */
static void resume_after_a_kill(node *a, node *b)
{
    /* 50 progress events 200 ms apart: the answer is an SSE stream that
     * is far from its end when A dies. */
    char *sid, *hd;
    mt_http *h;
    mt_resp *r = post_sleep(a, 7, 10000, 50, &sid, &hd, &h);
    CHECK(r && r->status == 200 && mt_hdr_is(r, "content-type", "text/event-stream"));
    mt_event ev;
    long long stream = 0, seq = -1;
    /* The priming event ("<stream>-0"), then three progress events. */
    CHECK(r && mt_sse_next(h, r, &ev));
    CHECK(parse_id(ev.id, &stream, &seq) && seq == 0);
    mt_event_free(&ev);
    char *read[4] = {NULL};
    for (int i = 1; r && i <= 3; i++) {
        CHECK(mt_sse_next(h, r, &ev));
        long long st = -1;
        CHECK(parse_id(ev.id, &st, &seq));
        CHECK_EQ(st, stream);
        CHECK_EQ(seq, i);
        CHECK_EQ((int)progress_of(ev.data), i - 1);
        read[i] = ev.data;
        ev.data = NULL;
        mt_event_free(&ev);
    }
    /* What the client read was stored as it was sent. */
    CHECK(db_wait(sid, stream, 0, '>', 3));
    PGresult *rows = db_rows("SELECT seq, data FROM squirrel_events WHERE session = $1 AND "
                             "stream = $2::bigint AND seq <= 3 ORDER BY seq",
                             sid, stream);
    CHECK(rows && PQntuples(rows) == 3);
    for (int i = 0; rows && i < PQntuples(rows) && i < 3; i++)
        CHECK_STR(read[i + 1], PQgetvalue(rows, i, 1));
    PQclear(rows);
    for (int i = 1; i <= 3; i++)
        free(read[i]);
    /* Three more committed (events the client has not read), then the
     * kill: whatever A had committed by then is what B must replay. */
    CHECK(db_wait(sid, stream, 3, '>', 3));
    kill(a->ch->pid, SIGKILL);
    CHECK_EQ(mt_child_wait(a->ch, sq_now() + MT_WAIT), 128 + SIGKILL);
    mt_http_close(h);
    long long stored = db_count(sid, stream, 3);
    CHECK(stored >= 3 && stored < 50); /* the tool was far from done */
    fprintf(stderr, "streams: %lld events after %lld-3 stored when A was killed\n", stored,
            stream);

    mt_http *h2;
    char last[48];
    snprintf(last, sizeof last, "%lld-3", stream);
    r = resume(b->port, sid, last, &h2);
    expect_replay(h2, r, sid, stream, 3);
    mt_http_close(h2);
    /* The rows are A's last word: they are still exactly those. */
    CHECK_EQ(db_count(sid, stream, 3), stored);
    /* The session itself is not on B: a request there is 404. */
    mt_server fb = {.http_port = b->port};
    int status;
    char *got = mt_post1(&fb, hd, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}", &status);
    CHECK_EQ(status, 404);
    free(got);
    free(hd);
    free(sid);
}

/* A stream answered in full on A, replayed by B; DELETE on A clears it. */
/* The value of one sample line of port's /metrics ("name{labels}"), or
 * -1 if it is not there. */
static long long metric(int port, const char *sample)
{
    int status;
    char *body = mt_get(port, "/metrics", NULL, &status);
    long long v = -1;
    size_t n = strlen(sample);
    for (const char *l = body; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        if (strncmp(l, sample, n) == 0 && l[n] == ' ') {
            v = atoll(l + n + 1);
            break;
        }
    }
    free(body);
    return v;
}

static void replay_and_delete(node *a, node *b)
{
    char *sid, *hd;
    mt_http *h;
    mt_resp *r = post_sleep(a, 3, 30, 3, &sid, &hd, &h);
    CHECK(r && r->status == 200);
    char **msgs = r ? mt_http_msgs(h, r) : NULL;
    int n = 0;
    while (msgs && msgs[n])
        n++;
    CHECK_EQ(n, 4); /* three progress events and the response */
    mt_msgs_free(msgs);
    mt_http_close(h);
    /* All four stored (stream 1: the session's first), and counted so
     * in A's /metrics (its first stored events), none refused or given
     * up. */
    CHECK(db_wait(sid, 1, 0, '=', 4));
    WAIT_UNTIL(metric(a->port, "squirreld_stream_events_total{outcome=\"stored\"}") == 4);
    CHECK_EQ(metric(a->port, "squirreld_stream_events_total{outcome=\"refused\"}"), 0);
    CHECK_EQ(metric(a->port, "squirreld_stream_events_total{outcome=\"given_up\"}"), 0);
    mt_http *h2;
    r = resume(b->port, sid, "1-0", &h2);
    expect_replay(h2, r, sid, 1, 0);
    mt_http_close(h2);
    r = resume(b->port, sid, "1-2", &h2);
    expect_replay(h2, r, sid, 1, 2);
    mt_http_close(h2);
    /* Nothing after the last: an empty stream that ends. */
    r = resume(b->port, sid, "1-4", &h2);
    expect_replay(h2, r, sid, 1, 4);
    mt_http_close(h2);
    /* A stream that was never stored: 404 as before. */
    r = resume(b->port, sid, "2-0", &h2);
    CHECK(r && r->status == 404);
    mt_http_close(h2);

    h = mt_http_at(a->port);
    mt_http_delete(h, hd);
    r = mt_http_next(h);
    CHECK(r && r->status == 200);
    mt_http_close(h);
    CHECK(db_wait(sid, -1, -1, '=', 0));
    r = resume(b->port, sid, "1-0", &h2);
    CHECK(r && r->status == 404);
    mt_http_close(h2);
    free(hd);
    free(sid);
}

/* A graceful stop (SIGTERM) of B with a stream in flight: the request
 * ends within the grace period, the writer commits everything before
 * squirreld exits (0), and the session's events stay (a stop is not the
 * session's end): an instance started again replays them to the end. */
static void graceful_stop_keeps_the_stream(node *b, const char *uri)
{
    char *sid, *hd;
    mt_http *h;
    mt_resp *r = post_sleep(b, 9, 1000, 10, &sid, &hd, &h);
    CHECK(r && r->status == 200);
    mt_event ev;
    long long stream = 0, seq = -1;
    for (int i = 0; r && i <= 2; i++) { /* the priming event, two more */
        CHECK(mt_sse_next(h, r, &ev));
        CHECK(parse_id(ev.id, &stream, &seq) && seq == i);
        mt_event_free(&ev);
    }
    kill(b->ch->pid, SIGTERM);
    mt_http_close(h); /* a legacy request goes on without its client */
    CHECK_EQ(mt_child_wait(b->ch, sq_now() + MT_WAIT), 0);
    /* Ten progress events and the response, none deleted. */
    CHECK_EQ(db_count(sid, stream, 0), 11);
    node c;
    CHECK(node_start(&c, uri));
    mt_http *h2;
    char last[48];
    snprintf(last, sizeof last, "%lld-2", stream);
    r = resume(c.port, sid, last, &h2);
    expect_replay(h2, r, sid, stream, 2);
    mt_http_close(h2);
    mt_child_free(c.ch);
    free(hd);
    free(sid);
}

/* True once squirreld c logs that session sid expired (idle), within
 * MT_WAIT (its stderr is read up to that line). */
static bool expired_in_log(node *c, const char *sid)
{
    int64_t deadline = sq_now() + MT_WAIT;
    for (char *l; (l = mt_next_until(c->ch->err, deadline)) != NULL;) {
        bool hit = strstr(l, "expired (idle)") && strstr(l, sid);
        free(l);
        if (hit)
            return true;
    }
    return false;
}

/* A session that expires (session_idle 1 s) takes its stored events with
 * it, as a DELETE does.  The retention of stored events is session_idle
 * too, so the pruning may remove them first: the rows being gone says
 * nothing about the session, which is waited for in the log. */
static void expiry_deletes_the_events(const char *uri)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/pg_streams-%d.json", (int)getpid());
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f)
        return;
    fputs("{\"session_idle\": \"1s\"}\n", f);
    fclose(f);
    node c;
    CHECK(node_start_with(&c, uri, path));
    char *sid, *hd;
    mt_http *h;
    mt_resp *r = post_sleep(&c, 5, 30, 3, &sid, &hd, &h);
    CHECK(r && r->status == 200);
    mt_msgs_free(r ? mt_http_msgs(h, r) : NULL);
    mt_http_close(h);
    CHECK(db_wait(sid, 1, 0, '=', 4));
    /* Idle from now on: expired within a second or two, and its rows go. */
    CHECK(expired_in_log(&c, sid));
    CHECK(db_wait(sid, -1, -1, '=', 0));
    h = mt_http_at(c.port);
    mt_http_delete(h, hd);
    r = mt_http_next(h);
    CHECK(r && r->status == 404); /* gone already */
    mt_http_close(h);
    mt_child_free(c.ch);
    unlink(path);
    free(hd);
    free(sid);
}

static void unknown_session_is_404(node *b)
{
    static const char *const bad[] = {"1-0", "5-17", "junk", "1-", "-1", "1-2-3"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        mt_http *h;
        mt_resp *r = resume(b->port, "0123456789abcdef0123456789abcdef", bad[i], &h);
        CHECK(r && r->status == 404);
        if (r && mt_http_body(h, r))
            CHECK_JSON(r->body.buf, "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":"
                                    "{\"code\":-32001,\"message\":\"Session not found\"}}");
        mt_http_close(h);
    }
}

MT_TEST(legacy_streams_resume_on_another_instance)
{
    pg_server *pg = pg_start();
    if (!pg)
        return;
    node a, b;
    CHECK(node_start(&a, pg->uri));
    CHECK(node_start(&b, pg->uri));
    char err[256];
    CHECK_EQ(pgc_connect(&db, pg->uri, sq_now() + MT_WAIT, err, sizeof err), 0);

    unknown_session_is_404(&b);
    replay_and_delete(&a, &b);
    expiry_deletes_the_events(pg->uri);
    resume_after_a_kill(&a, &b);
    graceful_stop_keeps_the_stream(&b, pg->uri);

    pgc_close(&db);
    mt_child_free(a.ch);
    mt_child_free(b.ch);
    pg_stop(pg);
}
