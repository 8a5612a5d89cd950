/* The stream transports (stdio, TCP) as a client uses them: answers come
 * as each request ends, not in the order sent; a client that shuts down
 * its sending side still gets every answer; a client that vanishes in the
 * middle of a response harms neither the server nor its other clients
 * (and, under ASan, leaks nothing). */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "mcptest.h"

#define GATE(id) "{\"jsonrpc\":\"2.0\",\"id\":" id ",\"method\":\"tools/call\",\"params\":{\"name\":\"gate\"}}"
#define PASSED(id)                                                                  \
    "{\"jsonrpc\":\"2.0\",\"id\":" id ",\"result\":{\"content\":[{\"type\":\"text\"," \
    "\"text\":\"passed\"}]}}"
#define ECHO(id, text)                                                           \
    "{\"jsonrpc\":\"2.0\",\"id\":" id ",\"method\":\"tools/call\",\"params\":{"   \
    "\"name\":\"echo\",\"arguments\":{\"text\":\"" text "\"}}}"
#define ECHOED(id, text)                                                          \
    "{\"jsonrpc\":\"2.0\",\"id\":" id ",\"result\":{\"content\":[{\"type\":"     \
    "\"text\",\"text\":\"" text "\"}]}}"

/* ------------------------------------------------------- out of order */

static void slow_then_fast(mt_server *m, mt_conn *c)
{
    mt_init(c, "2025-11-25");
    mt_line(c, GATE("\"slow\""));
    WAIT_UNTIL(atomic_load(&m->gate_entered) == 1);
    mt_line(c, ECHO("\"fast\"", "quick"));
    char *got = mt_next(c);
    CHECK_JSON(got, ECHOED("\"fast\"", "quick"));
    free(got);
    mt_gate_open(m, 1);
    got = mt_next(c);
    CHECK_JSON(got, PASSED("\"slow\""));
    free(got);
}

MT_TEST(slow_call_then_fast_echo_on_stdio_answers_the_echo_first)
{
    mt_server *m = mt_start();
    mt_conn *c = mt_stdio(m);
    slow_then_fast(m, c);
    mt_close(c);
    mt_stop(m);
}

MT_TEST(slow_call_then_fast_echo_on_tcp_answers_the_echo_first)
{
    mt_server *m = mt_start();
    mt_conn *c = mt_tcp(m);
    slow_then_fast(m, c);
    mt_close(c);
    mt_stop(m);
}

/* With the bench's sleep: a minute-long sleep, then an echo, whose answer
 * comes first; the sleep is then cancelled (the test does not wait). */
MT_TEST(sleep_then_echo_on_tcp_answers_the_echo_first)
{
    mt_server *m = mt_start();
    mt_conn *c = mt_tcp(m);
    mt_init(c, "2025-11-25");
    mt_line(c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{"
               "\"name\":\"sleep\",\"arguments\":{\"ms\":60000}}}");
    mt_line(c, ECHO("2", "first"));
    char *got = mt_next(c);
    CHECK_JSON(got, ECHOED("2", "first"));
    free(got);
    mt_line(c, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":"
               "{\"requestId\":1}}");
    mt_shut(c);
    CHECK(mt_expect_eof(c));
    mt_close(c);
    mt_stop(m);
}

/* ---------------------------------------------------------- half-closed */

/* Many requests, some slow, then the end of what the client sends: every
 * one is answered, then the server ends the stream. */
static void answers_after_shutdown(mt_conn *c, bool modern)
{
    enum { N = 60 };
    if (!modern)
        mt_init(c, "2025-11-25");
    for (int i = 0; i < N; i++) {
        if (i % 3 == 0)
            mt_line(c, "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"tools/call\",\"params\":{"
                       "\"name\":\"sleep\",\"arguments\":{\"ms\":%d}%s%s}}",
                    i, 5 * (i % 7), modern ? "," : "", modern ? MT_META : "");
        else
            mt_line(c, "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"tools/call\",\"params\":{"
                       "\"name\":\"echo\",\"arguments\":{\"text\":\"e%d\"}%s%s}}",
                    i, i, modern ? "," : "", modern ? MT_META : "");
    }
    mt_shut(c);
    char seen[N] = {0};
    char *line;
    int n = 0;
    while ((line = mt_next(c))) {
        char *id = mt_raw_id(line);
        int i = id ? atoi(id) : -1;
        CHECK(i >= 0 && i < N && !seen[i]);
        if (i >= 0 && i < N) {
            seen[i] = 1;
            char *want = i % 3 == 0 ? mt_fmt("slept %d ms", 5 * (i % 7)) : mt_fmt("e%d", i);
            CHECK(strstr(line, want) != NULL);
            free(want);
        }
        free(id);
        free(line);
        n++;
    }
    CHECK(c->eof);
    CHECK_EQ(n, N);
}

MT_TEST(half_closed_tcp_client_gets_every_answer)
{
    mt_server *m = mt_start();
    mt_conn *c = mt_tcp(m);
    answers_after_shutdown(c, false);
    mt_close(c);
    mt_stop(m);
}

MT_TEST(half_closed_tcp_client_gets_every_2026_answer)
{
    mt_server *m = mt_start();
    mt_conn *c = mt_tcp(m);
    answers_after_shutdown(c, true);
    mt_close(c);
    mt_stop(m);
}

MT_TEST(closed_stdin_gets_every_answer)
{
    mt_server *m = mt_start();
    mt_conn *c = mt_stdio(m);
    answers_after_shutdown(c, false);
    mt_close(c);
    mt_stop(m);
}

MT_TEST(half_closed_unix_client_gets_every_answer)
{
    mt_server *m = mt_start();
    mt_conn *c = mt_unix(m);
    answers_after_shutdown(c, false);
    mt_close(c);
    mt_stop(m);
}

/* ------------------------------------------------------------ vanished */

typedef struct bystander {
    mt_server *m;
    atomic_bool stop;
    int answered;
} bystander;

/* Another client, calling all along: every call answered. */
static void *bystander_main(void *arg)
{
    bystander *b = arg;
    mt_conn *c = mt_tcp(b->m);
    mt_init(c, "2025-11-25");
    for (int i = 0; !atomic_load(&b->stop); i++) {
        mt_line(c, "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"tools/call\",\"params\":{"
                   "\"name\":\"echo\",\"arguments\":{\"text\":\"b%d\"}}}", i, i);
        char *got = mt_next(c);
        char *want = mt_fmt(ECHOED("%d", "b%d"), i, i);
        CHECK_JSON(got, want);
        free(want);
        free(got);
        b->answered++;
    }
    mt_close(c);
    return NULL;
}

/* Clients ask for 1 and 2 MB answers and go after the first bytes of them
 * (closing, or resetting the connection), over and over, while another
 * client calls: it is always answered, and the server still serves new
 * clients afterwards. */
MT_TEST(vanishing_clients_mid_response_harm_nobody)
{
    mt_server *m = mt_start();
    bystander b = {.m = m};
    sq_task t;
    CHECK_EQ(sq_spawn(&t, bystander_main, &b, NULL), 0);
    for (int round = 0; round < 10; round++) {
        mt_conn *c = round % 2 ? mt_tcp(m) : mt_unix(m);
        mt_init(c, "2025-11-25");
        for (int k = 0; k < 3; k++)
            mt_line(c, "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"tools/call\","
                       "\"params\":{\"name\":\"blob\",\"arguments\":{\"n\":1000000}}}", k);
        char buf[1024];
        CHECK(sq_io_read(c->rd, buf, sizeof buf) > 0); /* the answer has begun */
        if (round % 4 == 3) {
            /* An abortive close: the server's next write fails at once. */
            struct linger lg = {1, 0};
            setsockopt(sq_io_fd(c->rd), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        }
        mt_close(c);
    }
    /* HTTP clients too, in both eras, going mid-body. */
    char *sid = mt_session(m, "2025-11-25");
    char *hd = mt_sess_headers(sid, "2025-11-25");
    char *mhd = mt_modern_headers("tools/call", "blob");
    for (int round = 0; round < 6; round++) {
        mt_http *h = mt_http_open(m);
        if (round % 2)
            mt_http_post(h, mhd, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\","
                                 "\"params\":{\"name\":\"blob\",\"arguments\":{\"n\":2000000},"
                                 MT_META "}}");
        else
            mt_http_post(h, hd, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\","
                                "\"params\":{\"name\":\"blob\",\"arguments\":{\"n\":2000000}}}");
        mt_resp *r = mt_http_next(h);
        CHECK(r && r->status == 200);
        mt_http_close(h);
    }
    free(mhd);
    atomic_store(&b.stop, true);
    CHECK_EQ(sq_join(t, NULL), 0);
    CHECK(b.answered > 0);
    /* A new client is served. */
    int status;
    char *got = mt_post1(m, hd, ECHO("\"after\"", "fine"), &status);
    CHECK_EQ(status, 200);
    CHECK_JSON(got, ECHOED("\"after\"", "fine"));
    free(got);
    free(hd);
    free(sid);
    mt_stop(m);
}

/* A legacy HTTP client that goes in the middle of an event stream does
 * not cancel its call (legacy: a disconnection is not a cancellation):
 * the call runs to its end, and the session goes on. */
MT_TEST(legacy_http_client_gone_mid_stream_does_not_cancel)
{
    mt_server *m = mt_start();
    char *sid = mt_session(m, "2025-11-25");
    char *hd = mt_sess_headers(sid, "2025-11-25");
    mt_http *h = mt_http_open(m);
    mt_http_post(h, hd, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{"
                        "\"name\":\"gate\",\"_meta\":{\"progressToken\":1}}}");
    WAIT_UNTIL(atomic_load(&m->gate_entered) == 1);
    mt_http_close(h);
    mt_gate_open(m, 1);
    WAIT_UNTIL(atomic_load(&m->gate_passed) == 1);
    CHECK_EQ(atomic_load(&m->gate_cancelled), 0);
    int status;
    char *got = mt_post1(m, hd, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}", &status);
    CHECK_EQ(status, 200);
    CHECK_JSON(got, "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}}");
    free(got);
    free(hd);
    free(sid);
    mt_stop(m);
}
