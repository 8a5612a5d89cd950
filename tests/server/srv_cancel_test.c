/* Cancellation: a request cancelled by its client is never answered, and
 * its handler sees the cancellation; on the stream transports and legacy
 * HTTP by notifications/cancelled, on 2026-07-28 HTTP by closing the
 * response's connection.  A storm of calls each cancelled at a random
 * moment: each gets its whole answer or none, never one after the cancel
 * was processed, and no permit is lost.
 *
 * "Never answered" is shown without waiting for time to pass: on a stream,
 * a ping sent after the cancellation is answered after anything the
 * cancelled request could still send (one queue, in order), and at end of
 * input the server answers every request still running before it closes
 * its output, so reading to the end sees every answer there will be. */
#include <stdlib.h>
#include <string.h>

#include "mcptest.h"

#define SLEEP_CALL(id, ms, meta)                                                   \
    "{\"jsonrpc\":\"2.0\",\"id\":" id ",\"method\":\"tools/call\",\"params\":{"     \
    "\"name\":\"sleep\",\"arguments\":{\"ms\":" #ms "}" meta "}}"
#define GATE_CALL(id, meta)                                                        \
    "{\"jsonrpc\":\"2.0\",\"id\":" id ",\"method\":\"tools/call\",\"params\":{"     \
    "\"name\":\"gate\"" meta "}}"
#define CANCEL(id)                                                                 \
    "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":{"      \
    "\"requestId\":" id ",\"reason\":\"test\"}}"
#define M "," MT_META

/* Reads to the end of the stream: no line may carry `id`; `ids_seen`
 * other answers are counted. */
static int drain_without(mt_conn *c, const char *id)
{
    int n = 0;
    char *line;
    while ((line = mt_next(c))) {
        char *got = mt_raw_id(line);
        if (got && strcmp(got, id) == 0) {
            char *m = mt_fmt("an answer to cancelled request %s: %s", id, line);
            sq_test_fail(__FILE__, __LINE__, m);
            free(m);
        }
        free(got);
        free(line);
        n++;
    }
    return n;
}

/* A sleep of 2 s is cancelled; the ping after it is answered; at end of
 * input nothing more comes (without the cancellation its answer would,
 * the server answering running requests before it ends). */
static void cancel_on_stream(mt_conn *c, bool modern)
{
    if (modern)
        mt_line(c, SLEEP_CALL("\"s\"", 2000, M));
    else
        mt_line(c, SLEEP_CALL("\"s\"", 2000, ""));
    mt_line(c, CANCEL("\"s\""));
    if (modern)
        mt_line(c, "{\"jsonrpc\":\"2.0\",\"id\":\"p\",\"method\":\"tools/list\","
                   "\"params\":{\"cursor\":\"x\"" M "}}");
    else
        mt_line(c, "{\"jsonrpc\":\"2.0\",\"id\":\"p\",\"method\":\"ping\"}");
    char *got = mt_next(c);
    CHECK_ID(got, "\"p\"");
    free(got);
    mt_shut(c);
    CHECK_EQ(drain_without(c, "\"s\""), 0);
}

MT_TEST(cancelled_call_on_stdio_is_never_answered)
{
    mt_server *m = mt_start();
    mt_conn *c = mt_stdio(m);
    mt_init(c, "2025-11-25");
    cancel_on_stream(c, false);
    mt_close(c);
    mt_stop(m);
}

MT_TEST(cancelled_2026_call_on_stdio_is_never_answered)
{
    mt_server *m = mt_start();
    mt_conn *c = mt_stdio(m);
    cancel_on_stream(c, true);
    mt_close(c);
    mt_stop(m);
}

MT_TEST(cancelled_call_on_tcp_is_never_answered)
{
    mt_server *m = mt_start();
    mt_conn *c = mt_tcp(m);
    mt_init(c, "2025-06-18");
    cancel_on_stream(c, false);
    mt_close(c);
    mt_stop(m);
}

/* The handler itself sees the cancellation (its wait ends with
 * -ECANCELED), and its error is not sent either. */
MT_TEST(cancelled_call_on_stream_stops_its_handler)
{
    mt_server *m = mt_start();
    mt_conn *c = mt_tcp(m);
    mt_init(c, "2025-11-25");
    mt_line(c, GATE_CALL("7", ""));
    WAIT_UNTIL(atomic_load(&m->gate_entered) == 1);
    mt_line(c, CANCEL("7"));
    WAIT_UNTIL(atomic_load(&m->gate_cancelled) == 1);
    mt_line(c, "{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"ping\"}");
    char *got = mt_next(c);
    CHECK_JSON(got, "{\"jsonrpc\":\"2.0\",\"id\":8,\"result\":{}}");
    free(got);
    mt_shut(c);
    CHECK_EQ(drain_without(c, "7"), 0);
    CHECK_EQ(atomic_load(&m->gate_passed), 0);
    mt_close(c);
    mt_stop(m);
}

/* A cancellation names its request by id, whichever spelling: the string
 * "\u0041" is the id "A". */
MT_TEST(cancellation_matches_ids_by_value)
{
    mt_server *m = mt_start();
    mt_conn *c = mt_tcp(m);
    mt_init(c, "2025-11-25");
    mt_line(c, GATE_CALL("\"\\u0041\"", ""));
    WAIT_UNTIL(atomic_load(&m->gate_entered) == 1);
    mt_line(c, CANCEL("\"A\""));
    WAIT_UNTIL(atomic_load(&m->gate_cancelled) == 1);
    mt_shut(c);
    CHECK_EQ(drain_without(c, "\"\\u0041\""), 0);
    mt_close(c);
    mt_stop(m);
}

/* Legacy HTTP: the cancellation is POSTed on another connection (202);
 * the cancelled request's own POST then ends with no JSON-RPC answer,
 * and its connection serves the next request. */
MT_TEST(cancelled_call_on_legacy_http_is_never_answered)
{
    mt_server *m = mt_start();
    char *sid = mt_session(m, "2025-11-25");
    char *hd = mt_sess_headers(sid, "2025-11-25");
    mt_http *h = mt_http_open(m);
    mt_http_post(h, hd, GATE_CALL("\"g\"", ""));
    WAIT_UNTIL(atomic_load(&m->gate_entered) == 1);

    mt_http *h2 = mt_http_open(m);
    mt_http_post(h2, hd, CANCEL("\"g\""));
    mt_resp *r2 = mt_http_next(h2);
    CHECK(r2 && r2->status == 202);
    mt_http_close(h2);
    WAIT_UNTIL(atomic_load(&m->gate_cancelled) == 1);

    mt_resp *r = mt_http_next(h);
    char **msgs = mt_http_msgs(h, r);
    CHECK(msgs[0] == NULL); /* no answer in it, whatever its form */
    mt_msgs_free(msgs);
    CHECK(r && r->keep_alive);
    mt_http_post(h, hd, "{\"jsonrpc\":\"2.0\",\"id\":\"next\",\"method\":\"ping\"}");
    r = mt_http_next(h);
    char *got = mt_http_answer(h, r);
    CHECK_JSON(got, "{\"jsonrpc\":\"2.0\",\"id\":\"next\",\"result\":{}}");
    free(got);
    CHECK_EQ(atomic_load(&m->gate_passed), 0);
    mt_http_close(h);
    free(hd);
    free(sid);
    mt_stop(m);
}

/* 2026-07-28 HTTP: closing the connection of a call's response cancels
 * the call (its handler sees it); the server goes on serving, and the
 * cancelled call never completes (a later gate call is the one that
 * takes the permit given). */
MT_TEST(closing_2026_http_response_cancels_the_call)
{
    mt_server *m = mt_start();
    char *hd = mt_modern_headers("tools/call", "gate");
    mt_http *h = mt_http_open(m);
    mt_http_post(h, hd, GATE_CALL("1", M));
    WAIT_UNTIL(atomic_load(&m->gate_entered) == 1);
    mt_http_close(h);
    WAIT_UNTIL(atomic_load(&m->gate_cancelled) == 1);

    h = mt_http_open(m);
    mt_http_post(h, hd, GATE_CALL("2", M));
    WAIT_UNTIL(atomic_load(&m->gate_entered) == 2);
    mt_gate_open(m, 1);
    mt_resp *r = mt_http_next(h);
    CHECK(r && r->status == 200);
    char *got = mt_http_answer(h, r);
    CHECK_JSON(got, "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"content\":[{\"type\":"
                    "\"text\",\"text\":\"passed\"}],\"resultType\":\"complete\",\"_meta\":{"
                    "\"io.modelcontextprotocol/serverInfo\":{\"name\":\"squirreld\","
                    "\"title\":\"Squirrel MCP server\",\"version\":\"0.1.0\"}}}}");
    free(got);
    CHECK_EQ(atomic_load(&m->gate_passed), 1);
    CHECK_EQ(atomic_load(&m->gate_cancelled), 1);
    mt_http_close(h);
    free(hd);
    mt_stop(m);
}

/* The same with the bench's sleep tool: with one permit in all, the next
 * call is admitted long before the minute-long sleep would have ended,
 * so the sleep was cancelled and gave its permit back. */
MT_TEST(closing_2026_http_response_cancels_sleep_and_frees_its_permit)
{
    sq_srv_config cfg;
    mt_config(&cfg);
    cfg.max_inflight_total = 1;
    mt_server *m = mt_start_with(&cfg);
    sq_srv_config_free(&cfg);
    char *hd = mt_modern_headers("tools/call", "sleep");
    mt_http *h = mt_http_open(m);
    mt_http_post(h, hd, SLEEP_CALL("1", 60000, M));
    /* The sleep holds the only permit: an echo is refused. */
    char *ehd = mt_modern_headers("tools/call", "echo");
    static const char echo[] = "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\","
                               "\"params\":{\"name\":\"echo\",\"arguments\":{\"text\":\"t\"}"
                               M "}}";
    int status = 0;
    char *got = NULL;
    for (int64_t until = sq_now() + MT_WAIT; status != 429 && sq_now() < until;) {
        free(got);
        got = mt_post1(m, ehd, echo, &status);
    }
    CHECK_EQ(status, 429);
    CHECK_JSON(got, "{\"jsonrpc\":\"2.0\",\"id\":2,\"error\":{\"code\":-31001,"
                    "\"message\":\"too many requests in flight\"}}");
    free(got);
    got = NULL;
    mt_http_close(h);
    /* Now the echo gets through, well within the sleep's minute. */
    for (int64_t until = sq_now() + MT_WAIT; status != 200 && sq_now() < until;) {
        free(got);
        got = mt_post1(m, ehd, echo, &status);
    }
    CHECK_EQ(status, 200);
    CHECK(got && strstr(got, "\"result\""));
    free(got);
    free(ehd);
    free(hd);
    mt_stop(m);
}

/* ------------------------------------------------------------ the storm */

typedef struct storm {
    mt_conn *c;
    int n;
    bool modern;
    /* Filled by the reader: where each answer came (line number, 0: none). */
    int *call_at, *ping_at, *calls_answered;
    int busy;                   /* answers that were refusals */
    bool done;
} storm;

static void *storm_reader(void *arg)
{
    storm *s = arg;
    int seen = 0, pings = 0;
    while (pings < s->n) {
        char *line = mt_next(s->c);
        if (!line)
            break;
        seen++;
        char *id = mt_raw_id(line);
        if (id && id[0] == '"' && id[1] == 'p') {
            int i = atoi(id + 2);
            if (i >= 0 && i < s->n) {
                CHECK_EQ(s->ping_at[i], 0);
                s->ping_at[i] = seen;
                pings++;
            }
        } else if (id) {
            int i = atoi(id);
            if (i >= 0 && i < s->n) {
                s->calls_answered[i]++;
                s->call_at[i] = seen;
                /* An answer is whole: the sleep's own result. */
                json_t *j = json_loads(line, 0, NULL);
                const char *text = json_string_value(json_object_get(
                    json_array_get(json_object_get(json_object_get(j, "result"), "content"), 0),
                    "text"));
                /* Refused at once (the limit is small) is whole too. */
                json_t *code = json_object_get(json_object_get(j, "error"), "code");
                bool busy = json_integer_value(code) == -31001;
                s->busy += busy;
                if (!busy && (!text || strncmp(text, "slept ", 6) != 0)) {
                    char *msg = mt_fmt("not a sleep's answer: %s", line);
                    sq_test_fail(__FILE__, __LINE__, msg);
                    free(msg);
                }
                json_decref(j);
            }
        }
        free(id);
        free(line);
    }
    s->done = true;
    return NULL;
}

/* Sends a gate call and a quick request after it: the gate call is
 * admitted if no answer to it comes before the quick one's (a refusal is
 * sent at once, by the reader, before it reads on).  Tries again while
 * refused, until MT_WAIT. */
static bool admit_gate(mt_conn *c, bool modern, int i)
{
    for (int64_t until = sq_now() + MT_WAIT, try = 0; sq_now() < until; try++) {
        mt_line(c, "{\"jsonrpc\":\"2.0\",\"id\":\"g%d.%lld\",\"method\":\"tools/call\","
                   "\"params\":{\"name\":\"gate\"%s}}", i, (long long)try, modern ? M : "");
        if (modern)
            mt_line(c, "{\"jsonrpc\":\"2.0\",\"id\":\"q\",\"method\":\"tools/list\","
                       "\"params\":{\"cursor\":\"x\"" M "}}");
        else
            mt_line(c, "{\"jsonrpc\":\"2.0\",\"id\":\"q\",\"method\":\"ping\"}");
        bool refused = false;
        for (;;) {
            char *line = mt_next(c);
            char *id = mt_raw_id(line);
            bool quick = id && strcmp(id, "\"q\"") == 0;
            refused |= id && id[1] == 'g';
            free(id);
            free(line);
            if (quick || !line)
                break;
        }
        if (!refused)
            return true;
        sq_sleep(SQ_MSEC);
    }
    return false;
}

static void run_storm(mt_server *m, mt_conn *c, bool modern, int n)
{
    storm s = {.c = c, .n = n, .modern = modern};
    s.call_at = calloc((size_t)n, sizeof(int));
    s.ping_at = calloc((size_t)n, sizeof(int));
    s.calls_answered = calloc((size_t)n, sizeof(int));
    sq_task reader;
    CHECK_EQ(sq_spawn(&reader, storm_reader, &s, NULL), 0);
    uint32_t rnd = 0x9e3779b9u;
    for (int i = 0; i < n; i++) {
        int ms = (int)(sq_test_rnd(&rnd) % 3);
        mt_line(c,
                "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"tools/call\",\"params\":{"
                "\"name\":\"sleep\",\"arguments\":{\"ms\":%d}%s}}",
                i, ms, modern ? M : "");
        /* A random moment: before it starts, while it sleeps, after. */
        uint32_t wait = sq_test_rnd(&rnd) % 4000;
        if (wait > 500)
            sq_sleep((int64_t)wait * SQ_USEC);
        mt_line(c, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\","
                   "\"params\":{\"requestId\":%d}}", i);
        if (modern)
            mt_line(c, "{\"jsonrpc\":\"2.0\",\"id\":\"p%d\",\"method\":\"tools/list\","
                       "\"params\":{\"cursor\":\"x\"" M "}}", i);
        else
            mt_line(c, "{\"jsonrpc\":\"2.0\",\"id\":\"p%d\",\"method\":\"ping\"}", i);
    }
    CHECK_EQ(sq_join_until(reader, NULL, sq_now() + 4 * MT_WAIT), 0);
    int answered = 0;
    for (int i = 0; i < n; i++) {
        CHECK(s.calls_answered[i] <= 1);
        CHECK(s.ping_at[i] > 0);
        /* An answer, if any, was sent before the cancellation was
         * processed, hence before the ping that followed it. */
        if (s.calls_answered[i]) {
            answered++;
            if (s.call_at[i] > s.ping_at[i]) {
                char *msg = mt_fmt("call %d answered after its cancellation (line %d, "
                                   "ping at %d)", i, s.call_at[i], s.ping_at[i]);
                sq_test_fail(__FILE__, __LINE__, msg);
                free(msg);
            }
        }
    }
    fprintf(stderr, "    %d of %d calls answered before their cancellation (%d of them "
            "refused: too many in flight)\n", answered, n, s.busy);
    CHECK(answered - s.busy < n); /* some were cancelled while in flight */
    /* No permit was lost: the whole per-client limit is usable.  Calls of
     * the storm may still be ending, so a gate call refused meanwhile is
     * sent again (each ends once its task sees the cancellation). */
    int limit = sq_srv_config_of(m->srv)->max_inflight_session;
    for (int i = 0; i < limit; i++)
        CHECK(admit_gate(c, modern, i));
    WAIT_UNTIL(atomic_load(&m->gate_entered) == limit);
    mt_line(c, "{\"jsonrpc\":\"2.0\",\"id\":\"over\",\"method\":\"tools/call\",\"params\":{"
               "\"name\":\"gate\"%s}}", modern ? M : "");
    char *got = mt_next(c);
    char *want = mt_fmt("{\"jsonrpc\":\"2.0\",\"id\":\"over\",\"error\":{\"code\":-31001,"
                        "\"message\":\"too many requests in flight (limits: %d per client, "
                        "%d in all)\"}}",
                        limit, sq_srv_config_of(m->srv)->max_inflight_total);
    CHECK_JSON(got, want);
    free(got);
    free(want);
    mt_gate_open(m, limit);
    for (int i = 0; i < limit; i++) {
        got = mt_next(c);
        CHECK(got && strstr(got, "\"passed\""));
        free(got);
    }
    free(s.call_at);
    free(s.ping_at);
    free(s.calls_answered);
}

static mt_server *storm_server(void)
{
    sq_srv_config cfg;
    mt_config(&cfg);
    cfg.max_inflight_session = 64;
    mt_server *m = mt_start_with(&cfg);
    sq_srv_config_free(&cfg);
    return m;
}

MT_TEST(cancel_storm_on_tcp_answers_each_call_whole_or_never)
{
    mt_server *m = storm_server();
    mt_conn *c = mt_tcp(m);
    mt_init(c, "2025-11-25");
    run_storm(m, c, false, SQ_TEST_SLOW ? 300 : 1000);
    mt_close(c);
    mt_stop(m);
}

MT_TEST(cancel_storm_on_stdio_2026_answers_each_call_whole_or_never)
{
    mt_server *m = storm_server();
    mt_conn *c = mt_stdio(m);
    run_storm(m, c, true, SQ_TEST_SLOW ? 300 : 1000);
    mt_close(c);
    mt_stop(m);
}
