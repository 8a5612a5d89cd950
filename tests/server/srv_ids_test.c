/* Request ids come back exactly as sent, byte for byte: strings with
 * every kind of escape (never re-encoded), integers past 2^53 (which a
 * double would round), negative ones, the extremes of 64 bits; in results
 * and in errors, in both protocol eras, on every transport. */
#include <stdlib.h>
#include <string.h>

#include "mcptest.h"

/* Ids as JSON text. */
static const char *const ids[] = {
    "\"a\\\"b\\\\c\\/\\u00e9\\ud83d\\ude00\\n\\t\\u0041\"",
    "\"caf\xc3\xa9 \xf0\x9f\x90\xbf\"", /* raw UTF-8, not escaped */
    "\"\"",
    "9007199254740993",
    "-9007199254740993",
    "-1",
    "0",
    "9223372036854775807",
    "-9223372036854775808",
};
#define NIDS (sizeof ids / sizeof *ids)

#define SERVER_INFO                                                           \
    "{\"name\":\"squirreld\",\"title\":\"Squirrel MCP server\",\"version\":\"0.1.0\"}"

static char *echo_request(const char *id, bool modern)
{
    return mt_fmt("{\"jsonrpc\":\"2.0\",\"id\":%s,\"method\":\"tools/call\",\"params\":"
                  "{\"name\":\"echo\",\"arguments\":{\"text\":\"hello\"}%s%s}}",
                  id, modern ? "," : "", modern ? MT_META : "");
}

static char *echo_answer(const char *id, bool modern)
{
    return mt_fmt("{\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":{\"content\":[{\"type\":"
                  "\"text\",\"text\":\"hello\"}]%s}}",
                  id,
                  modern ? ",\"resultType\":\"complete\",\"_meta\":{"
                           "\"io.modelcontextprotocol/serverInfo\":" SERVER_INFO "}"
                         : "");
}

/* An error answered by the method (an unknown tool): the id again. */
static char *bad_request(const char *id, bool modern)
{
    return mt_fmt("{\"jsonrpc\":\"2.0\",\"id\":%s,\"method\":\"tools/call\",\"params\":"
                  "{\"name\":\"no-such-tool\"%s%s}}",
                  id, modern ? "," : "", modern ? MT_META : "");
}

static char *bad_answer(const char *id)
{
    return mt_fmt("{\"jsonrpc\":\"2.0\",\"id\":%s,\"error\":{\"code\":-32602,"
                  "\"message\":\"Unknown tool: no-such-tool\"}}",
                  id);
}

/* Every id, in a result and in an error, on a stream connection. */
static void over_stream(mt_conn *c, bool modern)
{
    if (!modern)
        mt_init(c, "2025-11-25");
    for (size_t i = 0; i < NIDS; i++) {
        char *req = echo_request(ids[i], modern);
        mt_line(c, "%s", req);
        char *got = mt_next(c), *want = echo_answer(ids[i], modern);
        CHECK_JSON(got, want);
        CHECK_ID(got, ids[i]);
        free(got);
        free(want);
        free(req);
        req = bad_request(ids[i], modern);
        mt_line(c, "%s", req);
        got = mt_next(c);
        want = bad_answer(ids[i]);
        CHECK_JSON(got, want);
        CHECK_ID(got, ids[i]);
        free(got);
        free(want);
        free(req);
    }
}

MT_TEST(id_echoed_exactly_on_stdio_legacy)
{
    mt_server *m = mt_start();
    mt_conn *c = mt_stdio(m);
    over_stream(c, false);
    mt_close(c);
    mt_stop(m);
}

MT_TEST(id_echoed_exactly_on_stdio_2026)
{
    mt_server *m = mt_start();
    mt_conn *c = mt_stdio(m);
    over_stream(c, true);
    mt_close(c);
    mt_stop(m);
}

MT_TEST(id_echoed_exactly_on_tcp_legacy)
{
    mt_server *m = mt_start();
    mt_conn *c = mt_tcp(m);
    over_stream(c, false);
    mt_close(c);
    mt_stop(m);
}

MT_TEST(id_echoed_exactly_on_tcp_2026)
{
    mt_server *m = mt_start();
    mt_conn *c = mt_tcp(m);
    over_stream(c, true);
    mt_close(c);
    mt_stop(m);
}

MT_TEST(id_echoed_exactly_on_unix_socket)
{
    mt_server *m = mt_start();
    mt_conn *c = mt_unix(m);
    over_stream(c, false);
    over_stream(c, true);
    mt_close(c);
    mt_stop(m);
}

/* An id may be used again as soon as its answer has come, even before
 * the request's task has left the server's books: many times in a row,
 * never "in flight already". */
static void reuse_at_once(mt_conn *c, bool modern)
{
    if (!modern)
        mt_init(c, "2025-11-25");
    char *req = echo_request("7", modern), *want = echo_answer("7", modern);
    for (int i = 0; i < 500; i++) {
        mt_line(c, "%s", req);
        char *got = mt_next(c);
        CHECK_JSON(got, want);
        free(got);
    }
    free(req);
    free(want);
}

MT_TEST(id_reused_as_soon_as_answered)
{
    /* Each request lingers after its answer, still listed: an id must be
     * free again once answered, not once its request has left. */
    sq_srv_config cfg;
    mt_config(&cfg);
    cfg.test_linger = 20 * SQ_MSEC;
    mt_server *m = mt_start_with(&cfg);
    sq_srv_config_free(&cfg);
    for (int modern = 0; modern < 2; modern++) {
        mt_conn *c = mt_tcp(m);
        reuse_at_once(c, modern);
        mt_close(c);
    }
    mt_stop(m);
}

/* POSTs body and checks the one answer: status, JSON and raw id. */
static void post_expect(mt_server *m, const char *headers, const char *body,
                        int status, const char *want, const char *id)
{
    int got_status;
    char *got = mt_post1(m, headers, body, &got_status);
    CHECK_EQ(got_status, status);
    CHECK_JSON(got, want);
    CHECK_ID(got, id);
    free(got);
}

MT_TEST(id_echoed_exactly_on_http_legacy)
{
    mt_server *m = mt_start();
    char *sid = mt_session(m, "2025-11-25");
    char *hd = mt_sess_headers(sid, "2025-11-25");
    for (size_t i = 0; i < NIDS; i++) {
        char *req = echo_request(ids[i], false), *want = echo_answer(ids[i], false);
        post_expect(m, hd, req, 200, want, ids[i]);
        free(req);
        free(want);
        req = bad_request(ids[i], false);
        want = bad_answer(ids[i]);
        post_expect(m, hd, req, 200, want, ids[i]);
        free(req);
        free(want);
    }
    free(hd);
    free(sid);
    mt_stop(m);
}

MT_TEST(id_echoed_exactly_on_http_2026)
{
    mt_server *m = mt_start();
    for (size_t i = 0; i < NIDS; i++) {
        char *hd = mt_modern_headers("tools/call", "echo");
        char *req = echo_request(ids[i], true), *want = echo_answer(ids[i], true);
        post_expect(m, hd, req, 200, want, ids[i]);
        free(hd);
        free(req);
        free(want);
        hd = mt_modern_headers("tools/call", "no-such-tool");
        req = bad_request(ids[i], true);
        want = bad_answer(ids[i]);
        post_expect(m, hd, req, 200, want, ids[i]);
        free(hd);
        free(req);
        free(want);
    }
    mt_stop(m);
}

/* The initialize answer and ping (answered before the session exists)
 * keep their ids too. */
MT_TEST(id_echoed_exactly_by_ping_before_initialize)
{
    mt_server *m = mt_start();
    mt_conn *c = mt_stdio(m);
    for (size_t i = 0; i < NIDS; i++) {
        mt_line(c, "{\"jsonrpc\":\"2.0\",\"id\":%s,\"method\":\"ping\"}", ids[i]);
        char *got = mt_next(c);
        char *want = mt_fmt("{\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":{}}", ids[i]);
        CHECK_JSON(got, want);
        CHECK_ID(got, ids[i]);
        free(got);
        free(want);
    }
    mt_close(c);
    mt_stop(m);
}
