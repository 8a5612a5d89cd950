/* Progress: a call that carries a progressToken gets its
 * notifications/progress, in order, with the token as sent, before its
 * response (on HTTP, on the request's own event stream); a call without a
 * token gets none (on HTTP, a plain JSON answer). */
#include <stdlib.h>
#include <string.h>

#include "mcptest.h"

#define SERVER_INFO                                                           \
    "{\"name\":\"squirreld\",\"title\":\"Squirrel MCP server\",\"version\":\"0.1.0\"}"
#define MODERN_RESULT_TAIL                                                    \
    ",\"resultType\":\"complete\",\"_meta\":{\"io.modelcontextprotocol/serverInfo\":" \
    SERVER_INFO "}"

static char *sleep_call(const char *id, const char *token, bool modern)
{
    sq__strbuf meta = SQ__STRBUF_INIT;
    if (token || modern) {
        sq__strbuf_puts(&meta, ",\"_meta\":{");
        if (token)
            sq__strbuf_printf(&meta, "\"progressToken\":%s%s", token, modern ? "," : "");
        if (modern)
            sq__strbuf_puts(&meta, "\"io.modelcontextprotocol/protocolVersion\":"
                                   "\"2026-07-28\",\"io.modelcontextprotocol/"
                                   "clientCapabilities\":{}");
        sq__strbuf_putc(&meta, '}');
    }
    char *s = mt_fmt("{\"jsonrpc\":\"2.0\",\"id\":%s,\"method\":\"tools/call\",\"params\":{"
                     "\"name\":\"sleep\",\"arguments\":{\"ms\":30,\"steps\":3}%s}}",
                     id, sq__strbuf_str(&meta));
    sq__strbuf_free(&meta);
    return s;
}

/* The i-th report (from 1) of a sleep in three parts: made as each part
 * begins, it counts the parts done before it (0, 1, 2 of 3). */
static char *progress(const char *token, int i)
{
    return mt_fmt("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":"
                  "{\"progressToken\":%s,\"progress\":%d.0,\"total\":3.0}}",
                  token, i - 1);
}

static char *slept(const char *id, bool modern)
{
    return mt_fmt("{\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":{\"content\":[{\"type\":"
                  "\"text\",\"text\":\"slept 30 ms\"}]%s}}",
                  id, modern ? MODERN_RESULT_TAIL : "");
}

/* The next three lines are the progress of `token`, in order, then the
 * answer to id. */
static void expect_progress_then_answer(mt_conn *c, const char *token, const char *id,
                                        bool modern)
{
    for (int i = 1; i <= 3; i++) {
        char *got = mt_next(c), *want = progress(token, i);
        CHECK_JSON(got, want);
        free(got);
        free(want);
    }
    char *got = mt_next(c), *want = slept(id, modern);
    CHECK_JSON(got, want);
    CHECK_ID(got, id);
    free(got);
    free(want);
}

MT_TEST(progress_on_stdio_comes_in_order_before_the_response)
{
    mt_server *m = mt_start();
    mt_conn *c = mt_stdio(m);
    mt_init(c, "2025-11-25");
    char *req = sleep_call("1", "\"tok\\u00e9\"", false);
    mt_line(c, "%s", req);
    free(req);
    expect_progress_then_answer(c, "\"tok\\u00e9\"", "1", false);
    req = sleep_call("2", "-9007199254740993", false);
    mt_line(c, "%s", req);
    free(req);
    expect_progress_then_answer(c, "-9007199254740993", "2", false);
    mt_close(c);
    mt_stop(m);
}

MT_TEST(progress_on_stdio_2026_comes_in_order_before_the_response)
{
    mt_server *m = mt_start();
    mt_conn *c = mt_stdio(m);
    char *req = sleep_call("\"x\"", "7", true);
    mt_line(c, "%s", req);
    free(req);
    expect_progress_then_answer(c, "7", "\"x\"", true);
    mt_close(c);
    mt_stop(m);
}

MT_TEST(no_progress_without_a_token_on_stdio)
{
    mt_server *m = mt_start();
    mt_conn *c = mt_tcp(m);
    mt_init(c, "2025-11-25");
    char *req = sleep_call("1", NULL, false);
    mt_line(c, "%s", req);
    free(req);
    char *got = mt_next(c), *want = slept("1", false);
    CHECK_JSON(got, want);
    free(got);
    free(want);
    /* Nothing else came, nor comes later: the end follows. */
    mt_shut(c);
    CHECK(mt_expect_eof(c));
    mt_close(c);
    mt_stop(m);
}

/* Checks an answer on HTTP: an event stream of three progress events and
 * the response (after a priming event for 2025-11-25). */
static void expect_sse_progress(mt_http *h, const char *token, const char *id, bool modern,
                                bool primed)
{
    mt_resp *r = mt_http_next(h);
    if (!r)
        return;
    CHECK_EQ(r->status, 200);
    CHECK(mt_hdr_is(r, "content-type", "text/event-stream"));
    CHECK(mt_hdr_is(r, "cache-control", "no-cache"));
    mt_event ev;
    if (primed) {
        /* An id to resume from, a retry, no data. */
        CHECK(mt_sse_next(h, r, &ev));
        CHECK(ev.id && ev.id[0]);
        CHECK(ev.data && ev.data[0] == '\0');
        CHECK_EQ(ev.retry, 1000);
        mt_event_free(&ev);
    }
    for (int i = 1; i <= 4; i++) {
        CHECK(mt_sse_next(h, r, &ev));
        char *want = i <= 3 ? progress(token, i) : slept(id, modern);
        CHECK_JSON(ev.data, want);
        CHECK(modern ? ev.id == NULL : ev.id != NULL); /* 2026: no event ids */
        free(want);
        mt_event_free(&ev);
    }
    CHECK(!mt_sse_next(h, r, &ev)); /* the stream ends with the response */
    CHECK(r->complete);
}

MT_TEST(progress_on_legacy_http_streams_before_the_response)
{
    mt_server *m = mt_start();
    char *sid = mt_session(m, "2025-11-25");
    char *hd = mt_sess_headers(sid, "2025-11-25");
    mt_http *h = mt_http_open(m);
    char *req = sleep_call("1", "\"t\"", false);
    mt_http_post(h, hd, req);
    free(req);
    expect_sse_progress(h, "\"t\"", "1", false, true);
    mt_http_close(h);
    free(hd);
    free(sid);
    /* 2025-06-18 streams have no priming event. */
    sid = mt_session(m, "2025-06-18");
    hd = mt_sess_headers(sid, "2025-06-18");
    h = mt_http_open(m);
    req = sleep_call("2", "5", false);
    mt_http_post(h, hd, req);
    free(req);
    expect_sse_progress(h, "5", "2", false, false);
    mt_http_close(h);
    free(hd);
    free(sid);
    mt_stop(m);
}

MT_TEST(progress_on_2026_http_streams_before_the_response)
{
    mt_server *m = mt_start();
    char *hd = mt_modern_headers("tools/call", "sleep");
    mt_http *h = mt_http_open(m);
    char *req = sleep_call("\"a\"", "\"t\"", true);
    mt_http_post(h, hd, req);
    free(req);
    expect_sse_progress(h, "\"t\"", "\"a\"", true, false);
    mt_http_close(h);
    free(hd);
    mt_stop(m);
}

MT_TEST(no_progress_without_a_token_on_http_is_plain_json)
{
    mt_server *m = mt_start();
    char *sid = mt_session(m, "2025-11-25");
    char *hd = mt_sess_headers(sid, "2025-11-25");
    mt_http *h = mt_http_open(m);
    char *req = sleep_call("1", NULL, false);
    mt_http_post(h, hd, req);
    free(req);
    mt_resp *r = mt_http_next(h);
    CHECK(r && r->status == 200);
    CHECK(mt_hdr_is(r, "content-type", "application/json"));
    CHECK(mt_http_body(h, r));
    char *want = slept("1", false);
    CHECK_JSON(r->body.buf, want);
    free(want);
    mt_http_close(h);
    free(hd);
    free(sid);
    mt_stop(m);
}
