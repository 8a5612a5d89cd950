/* Malformed and wrong messages get the JSON-RPC error the specification
 * names, with the id when it can be read and null when it cannot, on the
 * stream transports and on HTTP (with its status); and a bad message
 * never closes a stream connection: the next good one is answered. */
#include <stdlib.h>
#include <string.h>

#include "mcptest.h"

#define PARSE_ERROR                                                         \
    "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32700,\"message\":" \
    "\"Parse error: not one JSON value\"}}"
#define BATCH_REFUSED                                                        \
    "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32600,\"message\":" \
    "\"Invalid Request: batches exist only in protocol version 2025-03-26\"}}"

/* Sends `line` (as it is, then a newline), expects `want`, then checks
 * that the connection still answers. */
static void expect_answer(mt_conn *c, const char *line, const char *want)
{
    mt_send(c, line, strlen(line));
    mt_send(c, "\n", 1);
    char *got = mt_next(c);
    CHECK_JSON(got, want);
    free(got);
    mt_line(c, "{\"jsonrpc\":\"2.0\",\"id\":\"after\",\"method\":\"ping\"}");
    got = mt_next(c);
    CHECK_JSON(got, "{\"jsonrpc\":\"2.0\",\"id\":\"after\",\"result\":{}}");
    free(got);
}

/* A fresh server and stdio connection, initialized at `version` (NULL:
 * not initialized). */
static mt_server *srv;
static mt_conn *open_stdio(const char *version)
{
    srv = mt_start();
    mt_conn *c = mt_stdio(srv);
    if (version)
        mt_init(c, version);
    return c;
}

static void done(mt_conn *c)
{
    mt_close(c);
    mt_stop(srv);
}

/* ----------------------------------------------------------- -32700 */

MT_TEST(garbage_line_is_parse_error_and_stream_goes_on)
{
    mt_conn *c = open_stdio("2025-11-25");
    expect_answer(c, "garbage", PARSE_ERROR);
    expect_answer(c, "{]", PARSE_ERROR);
    expect_answer(c, "\"just a string", PARSE_ERROR);
    done(c);
}

MT_TEST(truncated_json_line_is_parse_error_and_stream_goes_on)
{
    mt_conn *c = open_stdio("2025-11-25");
    expect_answer(c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"pi", PARSE_ERROR);
    expect_answer(c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"", PARSE_ERROR);
    done(c);
}

MT_TEST(invalid_utf8_line_is_parse_error_and_stream_goes_on)
{
    mt_conn *c = open_stdio("2025-11-25");
    expect_answer(c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":"
                     "{\"x\":\"\xff\xfe\"}}",
                  PARSE_ERROR);
    /* An overlong encoding of '/' and a lone surrogate in UTF-8. */
    expect_answer(c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":"
                     "{\"x\":\"\xc0\xaf\"}}",
                  PARSE_ERROR);
    expect_answer(c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":"
                     "{\"x\":\"\xed\xa0\x80\"}}",
                  PARSE_ERROR);
    done(c);
}

MT_TEST(duplicate_keys_are_parse_error)
{
    mt_conn *c = open_stdio("2025-11-25");
    expect_answer(c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"id\":2,\"method\":\"ping\"}",
                  PARSE_ERROR);
    done(c);
}

/* ----------------------------------------------------------- -32600 */

MT_TEST(wrong_jsonrpc_version_is_invalid_request_with_its_id)
{
    mt_conn *c = open_stdio("2025-11-25");
    expect_answer(c, "{\"jsonrpc\":\"1.0\",\"id\":7,\"method\":\"ping\"}",
                  "{\"jsonrpc\":\"2.0\",\"id\":7,\"error\":{\"code\":-32600,"
                  "\"message\":\"\\\"jsonrpc\\\" must be \\\"2.0\\\"\"}}");
    expect_answer(c, "{\"id\":\"x\",\"method\":\"ping\"}",
                  "{\"jsonrpc\":\"2.0\",\"id\":\"x\",\"error\":{\"code\":-32600,"
                  "\"message\":\"\\\"jsonrpc\\\" must be \\\"2.0\\\"\"}}");
    done(c);
}

MT_TEST(null_id_is_invalid_request)
{
    mt_conn *c = open_stdio("2025-11-25");
    expect_answer(c, "{\"jsonrpc\":\"2.0\",\"id\":null,\"method\":\"ping\"}",
                  "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32600,"
                  "\"message\":\"\\\"id\\\" must be a string or an integer\"}}");
    done(c);
}

MT_TEST(non_object_message_is_invalid_request)
{
    mt_conn *c = open_stdio("2025-11-25");
    expect_answer(c, "42",
                  "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32600,"
                  "\"message\":\"Invalid Request: not a JSON-RPC message\"}}");
    expect_answer(c, "{\"jsonrpc\":\"2.0\",\"id\":3}",
                  "{\"jsonrpc\":\"2.0\",\"id\":3,\"error\":{\"code\":-32600,"
                  "\"message\":\"a response must have exactly one of \\\"result\\\" "
                  "and \\\"error\\\"\"}}");
    done(c);
}

MT_TEST(empty_batch_is_one_invalid_request)
{
    mt_conn *c = open_stdio("2025-03-26");
    expect_answer(c, "[]",
                  "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32600,"
                  "\"message\":\"Invalid Request: an empty batch\"}}");
    done(c);
}

MT_TEST(batch_in_2025_11_25_session_is_invalid_request)
{
    mt_conn *c = open_stdio("2025-11-25");
    expect_answer(c, "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}]", BATCH_REFUSED);
    done(c);
}

MT_TEST(batch_in_2025_06_18_session_is_invalid_request)
{
    mt_conn *c = open_stdio("2025-06-18");
    expect_answer(c, "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}]", BATCH_REFUSED);
    done(c);
}

MT_TEST(batch_before_initialize_is_invalid_request)
{
    mt_conn *c = open_stdio(NULL);
    expect_answer(c, "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}]", BATCH_REFUSED);
    done(c);
}

MT_TEST(batch_of_2026_requests_is_invalid_request_even_in_2025_03_26_session)
{
    mt_conn *c = open_stdio("2025-03-26");
    expect_answer(c,
                  "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\",\"params\":{"
                  MT_META "}}]",
                  BATCH_REFUSED);
    done(c);
}

MT_TEST(request_before_initialize_is_refused_but_ping_answered)
{
    mt_conn *c = open_stdio(NULL);
    expect_answer(c, "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"tools/list\"}",
                  "{\"jsonrpc\":\"2.0\",\"id\":5,\"error\":{\"code\":-31004,\"message\":"
                  "\"not initialized: send initialize first (or the 2026-07-28 "
                  "envelope in _meta)\"}}");
    done(c);
}

MT_TEST(second_initialize_on_a_stream_is_invalid_request)
{
    mt_conn *c = open_stdio("2025-11-25");
    expect_answer(c,
                  "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"initialize\",\"params\":{"
                  "\"protocolVersion\":\"2025-11-25\",\"capabilities\":{},"
                  "\"clientInfo\":{\"name\":\"x\",\"version\":\"1\"}}}",
                  "{\"jsonrpc\":\"2.0\",\"id\":2,\"error\":{\"code\":-32600,\"message\":"
                  "\"this connection is initialized already\"}}");
    done(c);
}

/* ----------------------------------------------------------- -32601 */

MT_TEST(unknown_method_is_method_not_found_in_both_eras)
{
    mt_conn *c = open_stdio("2025-11-25");
    expect_answer(c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"no/such\"}",
                  "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32601,"
                  "\"message\":\"Method not found: no/such\"}}");
    expect_answer(c, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"no/such\",\"params\":{"
                     MT_META "}}",
                  "{\"jsonrpc\":\"2.0\",\"id\":2,\"error\":{\"code\":-32601,"
                  "\"message\":\"Method not found: no/such\"}}");
    done(c);
}

MT_TEST(legacy_methods_are_method_not_found_in_2026_era_on_stdio)
{
    static const char *const removed[] = {"ping", "logging/setLevel",
                                          "resources/subscribe",
                                          "resources/unsubscribe"};
    mt_conn *c = open_stdio(NULL);
    for (size_t i = 0; i < sizeof removed / sizeof *removed; i++) {
        char *line = mt_fmt("{\"jsonrpc\":\"2.0\",\"id\":%zu,\"method\":\"%s\",\"params\":"
                            "{" MT_META "}}",
                            i, removed[i]);
        char *want = mt_fmt("{\"jsonrpc\":\"2.0\",\"id\":%zu,\"error\":{\"code\":-32601,"
                            "\"message\":\"Method not found: %s\"}}",
                            i, removed[i]);
        expect_answer(c, line, want);
        free(line);
        free(want);
    }
    done(c);
}

MT_TEST(legacy_methods_are_404_method_not_found_in_2026_era_on_http)
{
    static const char *const removed[] = {"ping", "logging/setLevel",
                                          "resources/subscribe",
                                          "resources/unsubscribe", "initialize",
                                          "tasks/result", "no/such"};
    mt_server *m = mt_start();
    for (size_t i = 0; i < sizeof removed / sizeof *removed; i++) {
        /* tasks/ methods name their task in Mcp-Name (checked first). */
        bool task = strncmp(removed[i], "tasks/", 6) == 0;
        char *hd = mt_modern_headers(removed[i], task ? "t1" : NULL);
        char *body = mt_fmt("{\"jsonrpc\":\"2.0\",\"id\":%zu,\"method\":\"%s\",\"params\":"
                            "{%s" MT_META "}}",
                            i, removed[i], task ? "\"taskId\":\"t1\"," : "");
        char *want = mt_fmt("{\"jsonrpc\":\"2.0\",\"id\":%zu,\"error\":{\"code\":-32601,"
                            "\"message\":\"Method not found: %s\"}}",
                            i, removed[i]);
        int status;
        char *got = mt_post1(m, hd, body, &status);
        CHECK_EQ(status, 404);
        CHECK_JSON(got, want);
        free(got);
        free(want);
        free(body);
        free(hd);
    }
    mt_stop(m);
}

MT_TEST(unknown_method_on_legacy_http_is_200_method_not_found)
{
    mt_server *m = mt_start();
    char *sid = mt_session(m, "2025-11-25");
    char *hd = mt_sess_headers(sid, "2025-11-25");
    int status;
    char *got = mt_post1(m, hd, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"no/such\"}", &status);
    CHECK_EQ(status, 200);
    CHECK_JSON(got, "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32601,"
                    "\"message\":\"Method not found: no/such\"}}");
    free(got);
    free(hd);
    free(sid);
    mt_stop(m);
}

/* ----------------------------------------------------------- -32602 */

MT_TEST(bad_params_are_invalid_params)
{
    mt_conn *c = open_stdio("2025-11-25");
    expect_answer(c,
                  "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":"
                  "{\"name\":\"echo\",\"arguments\":\"text\"}}",
                  "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32602,"
                  "\"message\":\"arguments must be an object\"}}");
    expect_answer(c,
                  "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":"
                  "{\"arguments\":{}}}",
                  "{\"jsonrpc\":\"2.0\",\"id\":2,\"error\":{\"code\":-32602,"
                  "\"message\":\"name must be a string\"}}");
    expect_answer(c,
                  "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\",\"params\":"
                  "{\"name\":\"echo\",\"arguments\":{\"text\":5}}}",
                  "{\"jsonrpc\":\"2.0\",\"id\":3,\"error\":{\"code\":-32602,"
                  "\"message\":\"text must be a string\"}}");
    expect_answer(c,
                  "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"logging/setLevel\","
                  "\"params\":{\"level\":\"loud\"}}",
                  "{\"jsonrpc\":\"2.0\",\"id\":4,\"error\":{\"code\":-32602,"
                  "\"message\":\"level must be one of debug, info, notice, warning, "
                  "error, critical, alert, emergency\"}}");
    done(c);
}

MT_TEST(unknown_tool_is_invalid_params)
{
    mt_conn *c = open_stdio("2025-11-25");
    expect_answer(c,
                  "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":"
                  "{\"name\":\"nope\",\"arguments\":{}}}",
                  "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32602,"
                  "\"message\":\"Unknown tool: nope\"}}");
    done(c);
}

MT_TEST(bad_cursor_is_invalid_params)
{
    static const char *const lists[] = {"tools/list", "prompts/list", "resources/list",
                                        "resources/templates/list"};
    mt_conn *c = open_stdio("2025-11-25");
    for (size_t i = 0; i < sizeof lists / sizeof *lists; i++) {
        char *line = mt_fmt("{\"jsonrpc\":\"2.0\",\"id\":%zu,\"method\":\"%s\","
                            "\"params\":{\"cursor\":\"bogus!\"}}",
                            i, lists[i]);
        char *want = mt_fmt("{\"jsonrpc\":\"2.0\",\"id\":%zu,\"error\":{\"code\":-32602,"
                            "\"message\":\"invalid cursor (cursors come from nextCursor "
                            "of the same list)\"}}",
                            i);
        expect_answer(c, line, want);
        free(line);
        free(want);
    }
    expect_answer(c,
                  "{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"tools/list\","
                  "\"params\":{\"cursor\":5}}",
                  "{\"jsonrpc\":\"2.0\",\"id\":9,\"error\":{\"code\":-32602,"
                  "\"message\":\"cursor must be a string\"}}");
    done(c);
}

/* ------------------------------------------------------ notifications */

/* Notifications are never answered, not even bad ones; a response nobody
 * waits for is dropped: the next answer on the stream is the ping's. */
MT_TEST(notifications_and_stray_responses_get_no_answer)
{
    mt_conn *c = open_stdio("2025-11-25");
    mt_line(c, "{\"jsonrpc\":\"2.0\",\"method\":\"no/such/notification\"}");
    mt_line(c, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\","
               "\"params\":{\"requestId\":\"nobody\"}}");
    mt_line(c, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\"}");
    mt_line(c, "{\"jsonrpc\":\"2.0\",\"id\":\"stray\",\"result\":{}}");
    mt_line(c, "{\"jsonrpc\":\"2.0\",\"id\":\"p\",\"method\":\"ping\"}");
    char *got = mt_next(c);
    CHECK_JSON(got, "{\"jsonrpc\":\"2.0\",\"id\":\"p\",\"result\":{}}");
    free(got);
    done(c);
}

/* ------------------------------------------------------------ HTTP */

static void post_expect(mt_server *m, const char *headers, const char *body,
                        int status, const char *want)
{
    int got_status;
    char *got = mt_post1(m, headers, body, &got_status);
    CHECK_EQ(got_status, status);
    CHECK_JSON(got, want);
    free(got);
}

MT_TEST(parse_errors_on_http_are_400)
{
    mt_server *m = mt_start();
    char *sid = mt_session(m, "2025-11-25");
    char *hd = mt_sess_headers(sid, "2025-11-25");
    post_expect(m, hd, "garbage", 400, PARSE_ERROR);
    post_expect(m, hd, "{\"jsonrpc\":\"2.0\",\"id\":1,", 400, PARSE_ERROR);
    post_expect(m, hd, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\"}", 400, PARSE_ERROR);
    post_expect(m, NULL, "garbage", 400, PARSE_ERROR);
    free(hd);
    free(sid);
    mt_stop(m);
}

MT_TEST(invalid_requests_on_http_are_400)
{
    mt_server *m = mt_start();
    char *sid = mt_session(m, "2025-11-25");
    char *hd = mt_sess_headers(sid, "2025-11-25");
    post_expect(m, hd, "{\"jsonrpc\":\"1.0\",\"id\":7,\"method\":\"ping\"}", 400,
                "{\"jsonrpc\":\"2.0\",\"id\":7,\"error\":{\"code\":-32600,"
                "\"message\":\"\\\"jsonrpc\\\" must be \\\"2.0\\\"\"}}");
    post_expect(m, hd, "{\"jsonrpc\":\"2.0\",\"id\":null,\"method\":\"ping\"}", 400,
                "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32600,"
                "\"message\":\"\\\"id\\\" must be a string or an integer\"}}");
    post_expect(m, hd, "[]", 400,
                "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32600,"
                "\"message\":\"Invalid Request: an empty batch\"}}");
    post_expect(m, hd, "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}]", 400,
                BATCH_REFUSED);
    free(hd);
    free(sid);
    sid = mt_session(m, "2025-06-18");
    hd = mt_sess_headers(sid, "2025-06-18");
    post_expect(m, hd, "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}]", 400,
                BATCH_REFUSED);
    free(hd);
    free(sid);
    hd = mt_modern_headers("tools/list", NULL);
    post_expect(m, hd,
                "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\",\"params\":{"
                MT_META "}}]",
                400,
                "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32600,"
                "\"message\":\"Invalid Request: 2026-07-28 requests are never batched\"}}");
    free(hd);
    mt_stop(m);
}

MT_TEST(invalid_params_on_http_are_200_in_both_eras)
{
    mt_server *m = mt_start();
    char *sid = mt_session(m, "2025-11-25");
    char *hd = mt_sess_headers(sid, "2025-11-25");
    post_expect(m, hd,
                "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\","
                "\"params\":{\"cursor\":\"bogus!\"}}",
                200,
                "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32602,"
                "\"message\":\"invalid cursor (cursors come from nextCursor of the "
                "same list)\"}}");
    free(hd);
    free(sid);
    hd = mt_modern_headers("tools/list", NULL);
    post_expect(m, hd,
                "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\","
                "\"params\":{\"cursor\":\"bogus!\"," MT_META "}}",
                200,
                "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32602,"
                "\"message\":\"invalid cursor (cursors come from nextCursor of the "
                "same list)\"}}");
    free(hd);
    mt_stop(m);
}

/* Every kind of bad line in a row on one TCP connection, then a good
 * request: answered, each in turn. */
MT_TEST(bad_messages_never_close_a_tcp_connection)
{
    mt_server *m = mt_start();
    mt_conn *c = mt_tcp(m);
    mt_init(c, "2025-11-25");
    static const char *const bad[] = {
        "garbage", "{\"jsonrpc\":\"2.0\",", "\xff\xfe", "[]", "42",
        "{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"ping\"}",
        "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}]",
        "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"no/such\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        mt_line(c, "%s", bad[i]);
    mt_line(c, "{\"jsonrpc\":\"2.0\",\"id\":\"good\",\"method\":\"tools/call\",\"params\":"
               "{\"name\":\"echo\",\"arguments\":{\"text\":\"still here\"}}}");
    /* The answers made by request tasks (the unknown method, the echo)
     * may come in either order; the reader's own come in order. */
    int errors = 0, good = 0;
    for (size_t i = 0; i <= sizeof bad / sizeof *bad; i++) {
        char *got = mt_next(c);
        char *id = mt_raw_id(got);
        if (id && strcmp(id, "\"good\"") == 0) {
            good++;
            CHECK_JSON(got, "{\"jsonrpc\":\"2.0\",\"id\":\"good\",\"result\":{\"content\":"
                            "[{\"type\":\"text\",\"text\":\"still here\"}]}}");
        } else {
            errors += got && strstr(got, "\"error\":{\"code\":-32") != NULL;
        }
        free(id);
        free(got);
    }
    CHECK_EQ(errors, (long long)(sizeof bad / sizeof *bad));
    CHECK_EQ(good, 1);
    mt_close(c);
    mt_stop(m);
}
