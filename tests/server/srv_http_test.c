/* Streamable HTTP, the front door and the legacy sessions: the session
 * header's rules (400, 404, DELETE), the standalone GET stream and what
 * arrives on it, MCP-Protocol-Version, DNS rebinding (Host and Origin),
 * the bearer token, keep-alive and pipelining, and malformed HTTP. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mcptest.h"

#define PING(id) "{\"jsonrpc\":\"2.0\",\"id\":" id ",\"method\":\"ping\"}"
#define PONG(id) "{\"jsonrpc\":\"2.0\",\"id\":" id ",\"result\":{}}"
#define FRONT_ERROR(code, msg)                                                    \
    "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":" #code ",\"message\":\"" \
    msg "\"}}"

/* Writes raw request bytes on a new connection and reads one response,
 * checking its status and JSON body (want NULL: no body). */
static mt_http *raw_expect(mt_server *m, const char *bytes, int status, const char *want)
{
    mt_http *h = mt_http_open(m);
    mt_http_raw(h, bytes, strlen(bytes));
    mt_resp *r = mt_http_next(h);
    CHECK(r && r->status == status);
    if (r && status != r->status)
        fprintf(stderr, "    status %d, wanted %d\n", r->status, status);
    if (r && mt_http_body(h, r)) {
        if (want)
            CHECK_JSON(r->body.buf, want);
        else
            CHECK_EQ(r->body.len, 0);
    }
    return h;
}

/* The same with a text of the caller's to free. */
static mt_http *raw_expect_free(mt_server *m, char *bytes, int status, const char *want)
{
    mt_http *h = raw_expect(m, bytes, status, want);
    free(bytes);
    return h;
}

static void post_expect(mt_server *m, const char *headers, const char *body, int status,
                        const char *want)
{
    int got_status;
    char *got = mt_post1(m, headers, body, &got_status);
    CHECK_EQ(got_status, status);
    if (want)
        CHECK_JSON(got, want);
    else
        CHECK(got == NULL);
    free(got);
}

/* ------------------------------------------------------------ sessions */

MT_TEST(initialize_gives_a_session_id)
{
    mt_server *m = mt_start();
    mt_http *h = mt_http_open(m);
    mt_http_post(h, NULL,
                 "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{"
                 "\"protocolVersion\":\"2025-06-18\",\"capabilities\":{},\"clientInfo\":"
                 "{\"name\":\"x\",\"version\":\"1\"}}}");
    mt_resp *r = mt_http_next(h);
    CHECK(r && r->status == 200);
    const char *sid = r ? mt_hdr(r, "mcp-session-id") : NULL;
    CHECK(sid != NULL);
    /* 128 random bits as hex: visible ASCII. */
    size_t n = sid ? strspn(sid, "0123456789abcdef") : 0;
    CHECK_EQ(n, 32);
    CHECK(sid && sid[n] == '\n');
    char *got = mt_http_answer(h, r);
    CHECK_JSON(got, "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"protocolVersion\":"
                    "\"2025-06-18\",\"capabilities\":{\"tools\":{\"listChanged\":true},"
                    "\"resources\":{\"subscribe\":true,\"listChanged\":true},\"prompts\":"
                    "{\"listChanged\":true},\"logging\":{},\"completions\":{}},"
                    "\"serverInfo\":{\"name\":\"squirreld\",\"title\":\"Squirrel MCP "
                    "server\",\"version\":\"0.1.0\"}}}");
    free(got);
    mt_http_close(h);
    mt_stop(m);
}

MT_TEST(request_without_session_id_is_400)
{
    mt_server *m = mt_start();
    char *sid = mt_session(m, "2025-11-25");
    post_expect(m, "MCP-Protocol-Version: 2025-11-25\r\n", PING("1"), 400,
                FRONT_ERROR(-32000, "Bad Request: Mcp-Session-Id header is required"));
    mt_http *h = raw_expect(m, "GET /mcp HTTP/1.1\r\nHost: localhost\r\nAccept: "
                               "text/event-stream\r\n\r\n",
                            400,
                            FRONT_ERROR(-32000, "Bad Request: Mcp-Session-Id header is "
                                                "required"));
    mt_http_close(h);
    free(sid);
    mt_stop(m);
}

MT_TEST(unknown_session_is_404)
{
    mt_server *m = mt_start();
    post_expect(m, "Mcp-Session-Id: 0123456789abcdef0123456789abcdef\r\n", PING("1"), 404,
                FRONT_ERROR(-32001, "Session not found"));
    mt_stop(m);
}

MT_TEST(initialize_on_a_session_is_400)
{
    mt_server *m = mt_start();
    char *sid = mt_session(m, "2025-11-25");
    char *hd = mt_sess_headers(sid, "2025-11-25");
    post_expect(m, hd,
                "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{"
                "\"protocolVersion\":\"2025-11-25\",\"capabilities\":{},\"clientInfo\":"
                "{\"name\":\"x\",\"version\":\"1\"}}}",
                400,
                "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32600,\"message\":"
                "\"Invalid Request: initialize on a session (start a new one without "
                "Mcp-Session-Id)\"}}");
    free(hd);
    free(sid);
    mt_stop(m);
}

/* DELETE ends the session: then it is unknown (404) to every method, and
 * what it had running ends: a request's POST, its GET stream. */
MT_TEST(delete_ends_the_session)
{
    mt_server *m = mt_start();
    char *sid = mt_session(m, "2025-11-25");
    char *hd = mt_sess_headers(sid, "2025-11-25");
    post_expect(m, hd, PING("1"), 200, PONG("1"));

    mt_http *call = mt_http_open(m);
    mt_http_post(call, hd, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\","
                           "\"params\":{\"name\":\"gate\"}}");
    WAIT_UNTIL(atomic_load(&m->gate_entered) == 1);
    mt_http *get = mt_http_open(m);
    mt_http_get(get, hd);
    mt_resp *g = mt_http_next(get);
    CHECK(g && g->status == 200);

    mt_http *h = mt_http_open(m);
    mt_http_delete(h, hd);
    mt_resp *r = mt_http_next(h);
    CHECK(r && r->status == 200);
    CHECK(r && mt_http_body(h, r) && r->body.len == 0);
    mt_http_close(h);

    WAIT_UNTIL(atomic_load(&m->gate_cancelled) == 1);
    r = mt_http_next(call);
    char **msgs = mt_http_msgs(call, r);
    CHECK(msgs[0] == NULL); /* the call is not answered */
    mt_msgs_free(msgs);
    mt_http_close(call);
    /* The GET stream ends. */
    mt_event ev;
    while (g && mt_sse_next(get, g, &ev))
        mt_event_free(&ev);
    CHECK(g && g->complete);
    mt_http_close(get);

    post_expect(m, hd, PING("3"), 404, FRONT_ERROR(-32001, "Session not found"));
    h = raw_expect_free(m, mt_fmt("GET /mcp HTTP/1.1\r\nHost: localhost\r\nAccept: "
                             "text/event-stream\r\n%s\r\n", hd),
                   404, FRONT_ERROR(-32001, "Session not found"));
    mt_http_close(h);
    h = raw_expect_free(m, mt_fmt("DELETE /mcp HTTP/1.1\r\nHost: localhost\r\n%s\r\n", hd), 404,
                   FRONT_ERROR(-32001, "Session not found"));
    mt_http_close(h);
    free(hd);
    free(sid);
    mt_stop(m);
}

/* --------------------------------------------------------- GET stream */

static int listed_data;
static int listed_tool(sq_mcp_req *r, json_t *args, void *data, json_t **result)
{
    (void)r;
    (void)args;
    (void)data;
    *result = sq_mcp_text_result("new");
    return SQ_MCP_OK;
}

static void add_tool(mt_server *m, const char *name)
{
    json_t *schema = json_pack("{s:s}", "type", "object");
    sq_mcp_tool_def d = {.name = name, .description = "added by a test",
                         .input_schema = schema, .call = listed_tool,
                         .data = &listed_data};
    CHECK_EQ(sq_mcp_add_tool(m->srv, &d), 0);
    json_decref(schema);
}

#define LIST_CHANGED "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}"

MT_TEST(get_stream_carries_list_changed_when_a_tool_is_added)
{
    mt_server *m = mt_start();
    char *sid = mt_session(m, "2025-11-25");
    char *hd = mt_sess_headers(sid, "2025-11-25");
    mt_http *get = mt_http_open(m);
    mt_http_get(get, hd);
    mt_resp *g = mt_http_next(get);
    CHECK(g && g->status == 200);
    CHECK(g && mt_hdr_is(g, "content-type", "text/event-stream"));
    CHECK(g && mt_hdr_is(g, "mcp-session-id", sid));
    mt_event ev;
    /* 2025-11-25: a priming event first. */
    CHECK(g && mt_sse_next(get, g, &ev));
    CHECK(ev.id && ev.data && ev.data[0] == '\0');
    mt_event_free(&ev);
    add_tool(m, "added");
    char *got = g ? mt_sse_msg(get, g) : NULL;
    CHECK_JSON(got, LIST_CHANGED);
    free(got);
    CHECK_EQ(sq_mcp_remove_tool(m->srv, "added"), 0);
    got = g ? mt_sse_msg(get, g) : NULL;
    CHECK_JSON(got, LIST_CHANGED);
    free(got);
    /* A second GET stream of the session is refused. */
    mt_http *h = raw_expect_free(m, mt_fmt("GET /mcp HTTP/1.1\r\nHost: localhost\r\nAccept: "
                                      "text/event-stream\r\n%s\r\n", hd),
                            409,
                            FRONT_ERROR(-32000, "Conflict: only one SSE stream is allowed "
                                                "per session"));
    mt_http_close(h);
    /* The stream goes on carrying changes. */
    add_tool(m, "again");
    got = mt_sse_msg(get, g);
    CHECK_JSON(got, LIST_CHANGED);
    free(got);
    mt_http_close(get);
    free(hd);
    free(sid);
    mt_stop(m);
}

MT_TEST(get_stream_of_2025_06_18_has_no_priming_event)
{
    mt_server *m = mt_start();
    char *sid = mt_session(m, "2025-06-18");
    char *hd = mt_sess_headers(sid, "2025-06-18");
    mt_http *get = mt_http_open(m);
    mt_http_get(get, hd);
    mt_resp *g = mt_http_next(get);
    CHECK(g && g->status == 200);
    /* The first event is the notification (the head came after the stream
     * was registered, so the change cannot be missed). */
    add_tool(m, "added");
    mt_event ev;
    CHECK(g && mt_sse_next(get, g, &ev));
    CHECK_JSON(ev.data, LIST_CHANGED);
    mt_event_free(&ev);
    mt_http_close(get);
    free(hd);
    free(sid);
    mt_stop(m);
}

/* ------------------------------------------------- MCP-Protocol-Version */

MT_TEST(protocol_version_header_other_than_the_sessions_is_400)
{
    mt_server *m = mt_start();
    char *sid = mt_session(m, "2025-11-25");
    char *hd = mt_fmt("Mcp-Session-Id: %s\r\nMCP-Protocol-Version: 2025-06-18\r\n", sid);
    post_expect(m, hd, PING("1"), 400,
                FRONT_ERROR(-32000, "Bad Request: MCP-Protocol-Version 2025-06-18 is not "
                                    "the session's version (2025-11-25)"));
    free(hd);
    hd = mt_fmt("Mcp-Session-Id: %s\r\nMCP-Protocol-Version: 1999-01-01\r\n", sid);
    post_expect(m, hd, PING("1"), 400,
                FRONT_ERROR(-32000, "Bad Request: MCP-Protocol-Version 1999-01-01 is not "
                                    "the session's version (2025-11-25)"));
    free(hd);
    /* Without the header, the session's version is assumed. */
    hd = mt_fmt("Mcp-Session-Id: %s\r\n", sid);
    post_expect(m, hd, PING("1"), 200, PONG("1"));
    free(hd);
    free(sid);
    mt_stop(m);
}

MT_TEST(protocol_version_header_other_than_the_envelopes_is_400_header_mismatch)
{
    mt_server *m = mt_start();
    post_expect(m, "MCP-Protocol-Version: 2025-11-25\r\nMcp-Method: tools/list\r\n",
                "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\",\"params\":{"
                MT_META "}}",
                400,
                "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32020,\"message\":"
                "\"the MCP-Protocol-Version header must equal the request's _meta "
                "protocolVersion\"}}");
    post_expect(m, "MCP-Protocol-Version: 2026-07-28\r\nMcp-Method: tools/call\r\n",
                "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\",\"params\":{"
                MT_META "}}",
                400,
                "{\"jsonrpc\":\"2.0\",\"id\":2,\"error\":{\"code\":-32020,\"message\":"
                "\"the Mcp-Method header must equal the request's method\"}}");
    /* A 2026 header and no envelope: the envelope is what is missing. */
    post_expect(m, "MCP-Protocol-Version: 2026-07-28\r\nMcp-Method: tools/list\r\n",
                "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/list\"}", 400,
                "{\"jsonrpc\":\"2.0\",\"id\":3,\"error\":{\"code\":-32602,\"message\":"
                "\"the request's params._meta is missing (2026-07-28 requests carry "
                "their protocol version and client capabilities there)\"}}");
    mt_stop(m);
}

/* A 2026-07-28 request is served on its own: a session header is
 * ignored, and none is sent back. */
MT_TEST(session_header_on_2026_request_is_ignored)
{
    mt_server *m = mt_start();
    char *mh = mt_modern_headers("tools/call", "echo");
    char *hd = mt_fmt("Mcp-Session-Id: nonsense\r\n%s", mh);
    free(mh);
    mt_http *h = mt_http_open(m);
    mt_http_post(h, hd,
                 "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{"
                 "\"name\":\"echo\",\"arguments\":{\"text\":\"t\"}," MT_META "}}");
    mt_resp *r = mt_http_next(h);
    CHECK(r && r->status == 200);
    CHECK(r && mt_hdr(r, "mcp-session-id") == NULL);
    char *got = mt_http_answer(h, r);
    CHECK(got && strstr(got, "\"text\":\"t\""));
    free(got);
    mt_http_close(h);
    free(hd);
    mt_stop(m);
}

/* ------------------------------------------------------- Host, Origin */

#define FORBIDDEN                                                                   \
    FRONT_ERROR(-32000, "Forbidden: Host or Origin not allowed (DNS rebinding "    \
                        "protection; see allowed_hosts)")

MT_TEST(host_and_origin_not_allowed_are_403_localhost_allowed)
{
    mt_server *m = mt_start();
    /* Let in, a ping without a session gets the session's 400: that is
     * how an allowed Host or Origin shows. */
    static const struct {
        const char *host, *origin;
        bool ok;
    } cases[] = {
        {"localhost:8808", NULL, true},
        {"127.0.0.1:1", NULL, true},
        {"[::1]:80", NULL, true},
        {"LOCALHOST", NULL, true},
        {"localhost", "http://localhost:3000", true},
        {"localhost", "https://127.0.0.1", true},
        {"evil.example", NULL, false},
        {"localhost.evil.example", NULL, false},
        {"127.0.0.1.nip.io:80", NULL, false},
        {"localhost", "http://evil.example", false},
        {"localhost", "http://localhost.evil.example", false},
        {"localhost", "http://localhost@evil.example", false},
        {"localhost", "null", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *req = mt_fmt("POST /mcp HTTP/1.1\r\nHost: %s\r\n%s%s%sContent-Type: "
                           "application/json\r\nContent-Length: 40\r\n\r\n"
                           "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}",
                           cases[i].host, cases[i].origin ? "Origin: " : "",
                           cases[i].origin ? cases[i].origin : "",
                           cases[i].origin ? "\r\n" : "");
        mt_http *h = raw_expect(m, req, cases[i].ok ? 400 : 403,
                                cases[i].ok ? FRONT_ERROR(-32000, "Bad Request: "
                                                                  "Mcp-Session-Id header "
                                                                  "is required")
                                            : FORBIDDEN);
        if (h->given && h->given->status != (cases[i].ok ? 400 : 403))
            fprintf(stderr, "    Host %s, Origin %s\n", cases[i].host,
                    cases[i].origin ? cases[i].origin : "-");
        mt_http_close(h);
        free(req);
    }
    mt_stop(m);
}

static void allow_example(sq_srv_config *c)
{
    c->allowed_hosts = calloc(1, sizeof(char *));
    c->allowed_hosts[0] = strdup("mcp.example");
    c->nallowed_hosts = 1;
    c->allowed_origins = calloc(1, sizeof(char *));
    c->allowed_origins[0] = strdup("https://app.example");
    c->nallowed_origins = 1;
}

MT_TEST(allowed_hosts_and_origins_from_the_config_are_allowed)
{
    sq_srv_config cfg;
    mt_config(&cfg);
    allow_example(&cfg);
    mt_server *m = mt_start_with(&cfg);
    sq_srv_config_free(&cfg);
    mt_http *h = raw_expect(m, "DELETE /mcp HTTP/1.1\r\nHost: mcp.example:443\r\nOrigin: "
                               "https://app.example\r\n\r\n",
                            400, FRONT_ERROR(-32000, "Bad Request: Mcp-Session-Id header "
                                                     "is required"));
    mt_http_close(h);
    h = raw_expect(m, "DELETE /mcp HTTP/1.1\r\nHost: mcp.example\r\nOrigin: "
                      "https://other.example\r\n\r\n",
                   403, FORBIDDEN);
    mt_http_close(h);
    h = raw_expect(m, "DELETE /mcp HTTP/1.1\r\nHost: other.example\r\n\r\n", 403, FORBIDDEN);
    mt_http_close(h);
    mt_stop(m);
}

/* ---------------------------------------------------------- the token */

static char token_path[64];

static void with_token(sq_srv_config *c)
{
    snprintf(token_path, sizeof token_path, "/tmp/mcptest-token-%d", (int)getpid());
    FILE *f = fopen(token_path, "w");
    fputs("s3cret-T0ken\n", f);
    fclose(f);
    c->token_file = strdup(token_path);
}

#define UNAUTHORIZED FRONT_ERROR(-32000, "Unauthorized")

MT_TEST(bearer_token_missing_or_wrong_is_401_right_is_accepted)
{
    sq_srv_config cfg;
    mt_config(&cfg);
    with_token(&cfg);
    mt_server *m = mt_start_with(&cfg);
    sq_srv_config_free(&cfg);
    unlink(token_path);
    static const char *const wrong[] = {
        NULL,
        "Authorization: Bearer wrong\r\n",
        "Authorization: Bearer s3cret-T0ke\r\n",
        "Authorization: Bearer s3cret-T0ken2\r\n",
        "Authorization: Basic czNjcmV0LVQwa2Vu\r\n",
        "Authorization: s3cret-T0ken\r\n",
    };
    for (size_t i = 0; i < sizeof wrong / sizeof *wrong; i++) {
        mt_http *h = mt_http_open(m);
        mt_http_post(h, wrong[i], PING("1"));
        mt_resp *r = mt_http_next(h);
        CHECK(r && r->status == 401);
        CHECK(r && mt_hdr_is(r, "www-authenticate", "Bearer realm=\"squirreld\""));
        if (r && mt_http_body(h, r))
            CHECK_JSON(r->body.buf, UNAUTHORIZED);
        mt_http_close(h);
    }
    /* The right token: the front door lets it through (initialize). */
    mt_http *h = mt_http_open(m);
    mt_http_post(h, "Authorization: Bearer s3cret-T0ken\r\n",
                 "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{"
                 "\"protocolVersion\":\"2025-11-25\",\"capabilities\":{},\"clientInfo\":"
                 "{\"name\":\"x\",\"version\":\"1\"}}}");
    mt_resp *r = mt_http_next(h);
    CHECK(r && r->status == 200);
    char *got = mt_http_answer(h, r);
    CHECK(got && strstr(got, "\"protocolVersion\":\"2025-11-25\""));
    free(got);
    mt_http_close(h);
    /* The scheme's name is case-insensitive. */
    char *hd = mt_modern_headers("tools/list", NULL);
    char *hd2 = mt_fmt("%sAuthorization: bearer s3cret-T0ken\r\n", hd);
    post_expect(m, hd2, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\",\"params\":"
                        "{\"cursor\":\"bad!\"," MT_META "}}",
                200,
                "{\"jsonrpc\":\"2.0\",\"id\":2,\"error\":{\"code\":-32602,\"message\":"
                "\"invalid cursor (cursors come from nextCursor of the same list)\"}}");
    free(hd);
    free(hd2);
    mt_stop(m);
}

/* ------------------------------------------------ keep-alive, pipelining */

MT_TEST(keep_alive_serves_many_requests_on_one_connection)
{
    mt_server *m = mt_start();
    char *sid = mt_session(m, "2025-11-25");
    char *hd = mt_sess_headers(sid, "2025-11-25");
    mt_http *h = mt_http_open(m);
    for (int i = 0; i < 200; i++) {
        char *body = mt_fmt("{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"ping\"}", i);
        char *want = mt_fmt("{\"jsonrpc\":\"2.0\",\"id\":%d,\"result\":{}}", i);
        mt_http_post(h, hd, body);
        mt_resp *r = mt_http_next(h);
        CHECK(r && r->status == 200 && r->keep_alive);
        char *got = mt_http_answer(h, r);
        CHECK_JSON(got, want);
        free(got);
        free(want);
        free(body);
    }
    mt_http_close(h);
    free(hd);
    free(sid);
    mt_stop(m);
}

/* Requests written at once are answered in their order, a slow one first
 * holding back the quick ones after it. */
MT_TEST(pipelined_requests_are_answered_in_order)
{
    mt_server *m = mt_start();
    char *sid = mt_session(m, "2025-11-25");
    char *hd = mt_sess_headers(sid, "2025-11-25");
    sq__strbuf b = SQ__STRBUF_INIT;
    const char *bodies[8];
    bodies[0] = "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"tools/call\",\"params\":"
                "{\"name\":\"gate\"}}";
    char *owned[8] = {0};
    for (int i = 1; i < 8; i++)
        bodies[i] = owned[i] = mt_fmt("{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"ping\"}", i);
    for (int i = 0; i < 8; i++)
        sq__strbuf_printf(&b, "POST /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
                              "application/json\r\nAccept: application/json, "
                              "text/event-stream\r\n%sContent-Length: %zu\r\n\r\n%s",
                          hd, strlen(bodies[i]), bodies[i]);
    mt_http *h = mt_http_open(m);
    mt_http_raw(h, b.buf, b.len);
    sq__strbuf_free(&b);
    WAIT_UNTIL(atomic_load(&m->gate_entered) == 1);
    mt_gate_open(m, 1);
    for (int i = 0; i < 8; i++) {
        mt_resp *r = mt_http_next(h);
        CHECK(r && r->status == 200);
        char *got = mt_http_answer(h, r);
        char *id = mt_fmt("%d", i);
        CHECK_ID(got, id);
        free(id);
        free(got);
    }
    for (int i = 1; i < 8; i++)
        free(owned[i]);
    mt_http_close(h);
    free(hd);
    free(sid);
    mt_stop(m);
}

/* ---------------------------------------------------------- malformed */

MT_TEST(bad_request_line_is_refused_and_closed)
{
    mt_server *m = mt_start();
    static const struct {
        const char *text;
        int status;
    } bad[] = {
        {"GARBAGE\r\n\r\n", 501}, /* a method name, but none we know */
        {"\x01\x02 / HTTP/1.1\r\n\r\n", 400},
        {"POST /mcp HTTP/9.9\r\nHost: localhost\r\n\r\n", 505},
        {"POST /mcp\r\nHost: localhost\r\n\r\n", 505},
        {"POST /mcp HTTP/1.1\r\nHost localhost\r\n\r\n", 400},
        {"POST /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nContent-Length: "
         "6\r\n\r\nhello!", 400},
        {"POST /mcp HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
         "Content-Length: 3\r\n\r\n0\r\n\r\n", 400},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        mt_http *h = mt_http_open(m);
        mt_http_raw(h, bad[i].text, strlen(bad[i].text));
        mt_resp *r = mt_http_next(h);
        CHECK(r && r->status == bad[i].status);
        if (r && r->status != bad[i].status)
            fprintf(stderr, "    %zu: status %d\n", i, r->status);
        CHECK(r && mt_hdr_is(r, "connection", "close"));
        CHECK(mt_http_expect_eof(h));
        mt_http_close(h);
    }
    mt_stop(m);
}

MT_TEST(bad_chunked_body_is_400_and_closed)
{
    mt_server *m = mt_start();
    static const char *const bad[] = {
        "POST /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
        "POST /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n2\r\n{}XX0\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        mt_http *h = mt_http_open(m);
        mt_http_raw(h, bad[i], strlen(bad[i]));
        mt_resp *r = mt_http_next(h);
        CHECK(r && r->status == 400);
        CHECK(r && mt_hdr_is(r, "connection", "close"));
        CHECK(mt_http_expect_eof(h));
        mt_http_close(h);
    }
    mt_stop(m);
}

MT_TEST(wrong_method_path_and_media_types_are_refused)
{
    mt_server *m = mt_start();
    mt_http *h = raw_expect(m, "PUT /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Length: "
                               "0\r\n\r\n",
                            405, NULL);
    CHECK(mt_hdr_is(h->given, "allow", "GET, POST, DELETE"));
    /* The connection goes on after a refusal. */
    mt_http_post(h, "Mcp-Session-Id: x\r\n", PING("1"));
    mt_resp *r = mt_http_next(h);
    CHECK(r && r->status == 404);
    mt_http_close(h);
    h = raw_expect(m, "POST /other HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n",
                   404, FRONT_ERROR(-32000, "Not Found: the endpoint is /mcp"));
    mt_http_close(h);
    h = raw_expect(m, "POST /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\n"
                      "Content-Length: 2\r\n\r\n{}",
                   415, FRONT_ERROR(-32000, "Unsupported Media Type: Content-Type must be "
                                            "application/json"));
    mt_http_close(h);
    h = raw_expect(m, "POST /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
                      "application/json\r\nAccept: text/html\r\nContent-Length: 2\r\n\r\n{}",
                   406, FRONT_ERROR(-32000, "Not Acceptable: Accept must list "
                                            "application/json and text/event-stream"));
    mt_http_close(h);
    mt_stop(m);
}

/* A request that says Connection: close is answered before the close (the
 * reader must not take the end of requests for the peer gone, which would
 * cancel a 2026-07-28 request before its answer). */
MT_TEST(connection_close_requests_are_answered)
{
    mt_server *m = mt_start();
    char *hdr = mt_modern_headers("tools/call", "echo");
    char *h2 = mt_fmt("%sConnection: close\r\n", hdr);
    int st;
    char *got = mt_post1(m, h2,
                         "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\",\"params\":"
                         "{\"name\":\"echo\",\"arguments\":{\"text\":\"bye\"}," MT_META "}}",
                         &st);
    CHECK_EQ(st, 200);
    CHECK(got && strstr(got, "\"text\":\"bye\""));
    free(got);
    free(h2);
    free(hdr);
    mt_stop(m);
}

/* A 2026-07-28 result whose content has an "error" member with a code
 * (here a context's document) is a result: HTTP 200, not the status an
 * error with that code would get (404 for -32601). */
MT_TEST(a_result_that_contains_an_error_member_is_200)
{
    sq_srv_config c;
    mt_config(&c);
    free(c.store);
    c.store = strdup("memory");
    mt_server *m = mt_start_with(&c);
    sq_srv_config_free(&c);
    const char *calls[][2] = {
        {"context_create", "{\"id\":\"e\",\"document\":{\"error\":{\"code\":-32601}}}"},
        {"context_get", "{\"id\":\"e\"}"},
    };
    for (size_t i = 0; i < 2; i++) {
        int status;
        char *ans = mt_call_modern(m, calls[i][0], calls[i][1], &status);
        CHECK_EQ(status, 200);
        /* context_get gives the document back, error member and all. */
        bool ok = ans && strstr(ans, "\"result\"") && (i == 0 || strstr(ans, "-32601"));
        if (!ok)
            fprintf(stderr, "  got %s\n", ans ? ans : "(none)");
        CHECK(ok);
        free(ans);
    }
    mt_stop(m);
}
