/* JSON-RPC batches in a 2025-03-26 session (the only version that has
 * them), on stdio and on HTTP: one array holding a response per request,
 * nothing at all (HTTP 202) for a batch of notifications, and an invalid
 * element answered by an error inside the array. */
#include <stdlib.h>
#include <string.h>

#include "mcptest.h"

#define PING(id) "{\"jsonrpc\":\"2.0\",\"id\":" id ",\"method\":\"ping\"}"
#define PONG(id) "{\"jsonrpc\":\"2.0\",\"id\":" id ",\"result\":{}}"
#define ECHO(id, text)                                                           \
    "{\"jsonrpc\":\"2.0\",\"id\":" id ",\"method\":\"tools/call\",\"params\":{"   \
    "\"name\":\"echo\",\"arguments\":{\"text\":\"" text "\"}}}"
#define ECHOED(id, text)                                                          \
    "{\"jsonrpc\":\"2.0\",\"id\":" id ",\"result\":{\"content\":[{\"type\":"     \
    "\"text\",\"text\":\"" text "\"}]}}"
#define NOTE "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/roots/list_changed\"}"

/* The requests of the batch in each test, and what comes back. */
#define MIXED "[" PING("1") "," NOTE "," ECHO("\"two\"", "b") "," PING("-3") "]"
#define MIXED_ANSWER "[" PONG("1") "," ECHOED("\"two\"", "b") "," PONG("-3") "]"
#define INVALID                                                              \
    "[" PING("1") ",{\"jsonrpc\":\"2.0\",\"foo\":1},42,{\"jsonrpc\":\"1.0\",\"id\":\"v\",\"method\":\"ping\"}]"
#define INVALID_ANSWER                                                       \
    "[" PONG("1") ",{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32600,"   \
    "\"message\":\"a message needs a \\\"method\\\", or an \\\"id\\\" and a result\"}},"   \
    "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32600,"                  \
    "\"message\":\"a message must be a JSON object\"}},"                            \
    "{\"jsonrpc\":\"2.0\",\"id\":\"v\",\"error\":{\"code\":-32600,"                 \
    "\"message\":\"\\\"jsonrpc\\\" must be \\\"2.0\\\"\"}}]"

MT_TEST(batch_on_stdio_gets_one_array_of_responses)
{
    mt_server *m = mt_start();
    mt_conn *c = mt_stdio(m);
    mt_init(c, "2025-03-26");
    mt_line(c, "%s", MIXED);
    char *got = mt_next(c);
    CHECK(got && got[0] == '['); /* one line, one array */
    CHECK_JSON_SET(got, MIXED_ANSWER);
    free(got);
    mt_close(c);
    mt_stop(m);
}

MT_TEST(batch_of_notifications_on_stdio_gets_nothing)
{
    mt_server *m = mt_start();
    mt_conn *c = mt_stdio(m);
    mt_init(c, "2025-03-26");
    mt_line(c, "[" NOTE "," NOTE ",{\"jsonrpc\":\"2.0\",\"id\":\"stray\",\"result\":{}}]");
    mt_line(c, PING("\"next\""));
    char *got = mt_next(c);
    CHECK_JSON(got, PONG("\"next\""));
    free(got);
    mt_shut(c);
    CHECK(mt_expect_eof(c));
    mt_close(c);
    mt_stop(m);
}

MT_TEST(invalid_batch_element_on_stdio_gets_its_error_in_the_array)
{
    mt_server *m = mt_start();
    mt_conn *c = mt_stdio(m);
    mt_init(c, "2025-03-26");
    mt_line(c, "%s", INVALID);
    char *got = mt_next(c);
    CHECK_JSON_SET(got, INVALID_ANSWER);
    free(got);
    mt_close(c);
    mt_stop(m);
}

/* Requests of a batch run at once, like any others: a slow one does not
 * hold back the array's other answers' work, and the array waits for
 * all (the gate lets the slow one through only after the fast ones ran). */
MT_TEST(batch_on_stdio_waits_for_its_slowest_request)
{
    mt_server *m = mt_start();
    mt_conn *c = mt_stdio(m);
    mt_init(c, "2025-03-26");
    mt_line(c, "[{\"jsonrpc\":\"2.0\",\"id\":\"g\",\"method\":\"tools/call\",\"params\":"
               "{\"name\":\"gate\"}}," ECHO("\"e\"", "fast") "]");
    WAIT_UNTIL(atomic_load(&m->gate_entered) == 1);
    /* Nothing yet: the array is not whole.  A ping overtakes it. */
    mt_line(c, PING("\"p\""));
    char *got = mt_next(c);
    CHECK_JSON(got, PONG("\"p\""));
    free(got);
    mt_gate_open(m, 1);
    got = mt_next(c);
    CHECK_JSON_SET(got, "[" ECHOED("\"e\"", "fast") ",{\"jsonrpc\":\"2.0\",\"id\":\"g\","
                        "\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"passed\"}]}}]");
    free(got);
    mt_close(c);
    mt_stop(m);
}

static void post_batch(mt_server *m, const char *sid, const char *body, int status,
                       const char *want)
{
    char *hd = mt_sess_headers(sid, "2025-03-26");
    mt_http *h = mt_http_open(m);
    mt_http_post(h, hd, body);
    mt_resp *r = mt_http_next(h);
    CHECK(r && r->status == status);
    if (r && mt_http_body(h, r)) {
        if (want) {
            CHECK(mt_hdr_is(r, "content-type", "application/json"));
            CHECK_JSON_SET(r->body.buf, want);
        } else {
            CHECK_EQ(r->body.len, 0);
        }
    }
    mt_http_close(h);
    free(hd);
}

MT_TEST(batch_on_http_gets_one_array_of_responses)
{
    mt_server *m = mt_start();
    char *sid = mt_session(m, "2025-03-26");
    post_batch(m, sid, MIXED, 200, MIXED_ANSWER);
    free(sid);
    mt_stop(m);
}

MT_TEST(batch_of_notifications_on_http_is_202_with_nothing)
{
    mt_server *m = mt_start();
    char *sid = mt_session(m, "2025-03-26");
    post_batch(m, sid, "[" NOTE "," NOTE "]", 202, NULL);
    free(sid);
    mt_stop(m);
}

MT_TEST(invalid_batch_element_on_http_gets_its_error_in_the_array)
{
    mt_server *m = mt_start();
    char *sid = mt_session(m, "2025-03-26");
    post_batch(m, sid, INVALID, 200, INVALID_ANSWER);
    free(sid);
    mt_stop(m);
}

MT_TEST(initialize_in_a_batch_on_http_gets_its_error_in_the_array)
{
    mt_server *m = mt_start();
    char *sid = mt_session(m, "2025-03-26");
    post_batch(m, sid,
               "[" PING("1") ",{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"initialize\","
               "\"params\":{\"protocolVersion\":\"2025-03-26\",\"capabilities\":{},"
               "\"clientInfo\":{\"name\":\"x\",\"version\":\"1\"}}}]",
               200,
               "[" PONG("1") ",{\"jsonrpc\":\"2.0\",\"id\":2,\"error\":{\"code\":-32600,"
               "\"message\":\"initialize must not be part of a batch\"}}]");
    free(sid);
    mt_stop(m);
}
