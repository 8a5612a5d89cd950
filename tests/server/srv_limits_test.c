/* The server's limits, each set small: requests in flight per client and
 * in all (refused at once with -31001, and every permit comes back),
 * message size (413 on HTTP, -32600 on a stream that then goes on),
 * sessions (503), the header and body read deadlines (408, and the
 * connection is closed: a slow client cannot hold it), and the per-request
 * deadline (-31002). */
#include <stdlib.h>
#include <string.h>

#include "mcptest.h"

#define GATE(id) "{\"jsonrpc\":\"2.0\",\"id\":" id ",\"method\":\"tools/call\",\"params\":{\"name\":\"gate\"}}"
#define PASSED(id)                                                                  \
    "{\"jsonrpc\":\"2.0\",\"id\":" id ",\"result\":{\"content\":[{\"type\":\"text\"," \
    "\"text\":\"passed\"}]}}"

static mt_server *start(void (*set)(sq_srv_config *c))
{
    sq_srv_config cfg;
    mt_config(&cfg);
    set(&cfg);
    mt_server *m = mt_start_with(&cfg);
    sq_srv_config_free(&cfg);
    return m;
}

static char *busy(const char *id, int per_client, int total)
{
    return mt_fmt("{\"jsonrpc\":\"2.0\",\"id\":%s,\"error\":{\"code\":-31001,\"message\":"
                  "\"too many requests in flight (limits: %d per client, %d in all)\"}}",
                  id, per_client, total);
}

/* ------------------------------------------------- requests in flight */

static void two_per_client(sq_srv_config *c)
{
    c->max_inflight_session = 2;
}

/* A client that keeps exactly the limit in flight, sending the next
 * request as each answer comes, is never refused: a request's permit is
 * back before its answer goes. */
/* Two per client, and each request lingers after its answer (so that
 * permits given back only as it leaves would be seen missing). */
static void two_per_client_lingering(sq_srv_config *c)
{
    two_per_client(c);
    c->test_linger = 2 * SQ_MSEC;
}

MT_TEST(a_client_at_its_limit_may_send_as_each_answer_comes)
{
    mt_server *m = start(two_per_client_lingering);
    mt_conn *c = mt_tcp(m);
    mt_init(c, "2025-11-25");
    int sent = 0;
    for (; sent < 2; sent++)
        mt_line(c, "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"tools/call\",\"params\":"
                   "{\"name\":\"echo\",\"arguments\":{\"text\":\"x\"}}}", sent);
    for (int got = 0; got < 2000; got++) {
        char *a = mt_next(c);
        CHECK(a && strstr(a, "\"result\"") && !strstr(a, "-31001"));
        free(a);
        if (sent < 2000) {
            mt_line(c, "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"tools/call\",\"params\":"
                       "{\"name\":\"echo\",\"arguments\":{\"text\":\"x\"}}}", sent);
            sent++;
        }
    }
    mt_close(c);
    mt_stop(m);
}

/* Two gate calls hold both permits of the client; a third request is
 * refused at once (the gates are still closed); once they pass, both
 * permits are usable again. */
MT_TEST(inflight_per_client_limit_refuses_at_once_and_permits_come_back)
{
    mt_server *m = start(two_per_client);
    mt_conn *c = mt_stdio(m);
    mt_init(c, "2025-11-25");
    for (int round = 0; round < 3; round++) {
        mt_line(c, GATE("1"));
        mt_line(c, GATE("2"));
        WAIT_UNTIL(atomic_load(&m->gate_entered) == 2 * (round + 1));
        mt_line(c, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"ping\"}");
        char *got = mt_next(c), *want = busy("3", 2, 4096);
        CHECK_JSON(got, want);
        free(got);
        free(want);
        mt_gate_open(m, 2);
        char *a = mt_next(c), *b = mt_next(c);
        CHECK((a && b && strstr(a, "\"id\":1") && strstr(b, "\"id\":2")) ||
              (a && b && strstr(a, "\"id\":2") && strstr(b, "\"id\":1")));
        CHECK(a && strstr(a, "\"passed\""));
        CHECK(b && strstr(b, "\"passed\""));
        free(a);
        free(b);
    }
    mt_close(c);
    mt_stop(m);
}

/* The limit is per client: another connection is not refused. */
MT_TEST(inflight_per_client_limit_leaves_other_clients_alone)
{
    mt_server *m = start(two_per_client);
    mt_conn *a = mt_tcp(m), *b = mt_tcp(m);
    mt_init(a, "2025-11-25");
    mt_init(b, "2025-11-25");
    mt_line(a, GATE("1"));
    mt_line(a, GATE("2"));
    WAIT_UNTIL(atomic_load(&m->gate_entered) == 2);
    mt_line(b, "{\"jsonrpc\":\"2.0\",\"id\":\"b\",\"method\":\"ping\"}");
    char *got = mt_next(b);
    CHECK_JSON(got, "{\"jsonrpc\":\"2.0\",\"id\":\"b\",\"result\":{}}");
    free(got);
    mt_gate_open(m, 2);
    free(mt_next(a));
    free(mt_next(a));
    mt_close(a);
    mt_close(b);
    mt_stop(m);
}

static void three_in_all(sq_srv_config *c)
{
    c->max_inflight_total = 3;
}

MT_TEST(inflight_total_limit_refuses_every_client_at_once)
{
    mt_server *m = start(three_in_all);
    mt_conn *a = mt_stdio(m), *b = mt_tcp(m);
    mt_init(a, "2025-11-25");
    mt_init(b, "2025-06-18");
    mt_line(a, GATE("1"));
    mt_line(a, GATE("2"));
    mt_line(b, GATE("3"));
    WAIT_UNTIL(atomic_load(&m->gate_entered) == 3);
    for (int i = 0; i < 2; i++) {
        mt_conn *c = i ? b : a;
        mt_line(c, "{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"ping\"}");
        char *got = mt_next(c), *want = busy("9", 64, 3);
        CHECK_JSON(got, want);
        free(got);
        free(want);
    }
    /* On HTTP too, in both eras (2026-07-28: status 429). */
    char *sid = mt_session(m, "2025-11-25");
    char *hd = mt_sess_headers(sid, "2025-11-25");
    int status;
    char *got = mt_post1(m, hd, "{\"jsonrpc\":\"2.0\",\"id\":10,\"method\":\"ping\"}", &status);
    CHECK_EQ(status, 200);
    CHECK_JSON(got, "{\"jsonrpc\":\"2.0\",\"id\":10,\"error\":{\"code\":-31001,"
                    "\"message\":\"too many requests in flight\"}}");
    free(got);
    free(hd);
    hd = mt_modern_headers("tools/list", NULL);
    got = mt_post1(m, hd, "{\"jsonrpc\":\"2.0\",\"id\":11,\"method\":\"tools/list\","
                          "\"params\":{" MT_META "}}", &status);
    CHECK_EQ(status, 429);
    CHECK_JSON(got, "{\"jsonrpc\":\"2.0\",\"id\":11,\"error\":{\"code\":-31001,"
                    "\"message\":\"too many requests in flight\"}}");
    free(got);
    free(hd);
    free(sid);
    mt_gate_open(m, 3);
    got = mt_next(b);
    CHECK_JSON(got, PASSED("3"));
    free(got);
    free(mt_next(a));
    free(mt_next(a));
    /* All three permits are back. */
    mt_line(a, GATE("4"));
    mt_line(b, GATE("5"));
    mt_line(b, GATE("6"));
    WAIT_UNTIL(atomic_load(&m->gate_entered) == 6);
    mt_gate_open(m, 3);
    free(mt_next(a));
    free(mt_next(b));
    free(mt_next(b));
    mt_close(a);
    mt_close(b);
    mt_stop(m);
}

static void eight_in_all(sq_srv_config *c)
{
    c->max_inflight_total = 8;
}

typedef struct flood {
    mt_server *m;
    int conn, n;
    int answered, refused;
} flood;

/* n echo calls written at once on a connection of its own, then every
 * answer read: each id once, the echo or a refusal. */
static void *flood_main(void *arg)
{
    flood *f = arg;
    mt_conn *c = mt_tcp(f->m);
    mt_init(c, "2025-11-25");
    sq__strbuf b = SQ__STRBUF_INIT;
    for (int i = 0; i < f->n; i++)
        sq__strbuf_printf(&b, "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"tools/call\","
                              "\"params\":{\"name\":\"echo\",\"arguments\":{\"text\":"
                              "\"%d.%d\"}}}\n", i, f->conn, i);
    mt_send(c, b.buf, b.len);
    sq__strbuf_free(&b);
    char *seen = calloc((size_t)f->n, 1);
    for (int k = 0; k < f->n; k++) {
        char *line = mt_next(c);
        if (!line)
            break;
        char *id = mt_raw_id(line);
        int i = id ? atoi(id) : -1;
        CHECK(i >= 0 && i < f->n && !seen[i]);
        if (i >= 0 && i < f->n) {
            seen[i] = 1;
            char *ok = mt_fmt("{\"jsonrpc\":\"2.0\",\"id\":%d,\"result\":{\"content\":[{"
                              "\"type\":\"text\",\"text\":\"%d.%d\"}]}}", i, f->conn, i);
            char *no = busy(id, 64, 8);
            json_t *g = json_loads(line, 0, NULL), *wo = json_loads(ok, 0, NULL),
                   *wn = json_loads(no, 0, NULL);
            if (json_equal(g, wo))
                f->answered++;
            else if (json_equal(g, wn))
                f->refused++;
            else
                CHECK_JSON(line, ok);
            json_decref(g);
            json_decref(wo);
            json_decref(wn);
            free(ok);
            free(no);
        }
        free(id);
        free(line);
    }
    free(seen);
    mt_close(c);
    return NULL;
}

/* Four clients flood a server that has eight permits: each call gets one
 * answer, whole or refused; then all eight permits are usable again. */
MT_TEST(permits_come_back_after_a_storm_of_refusals)
{
    mt_server *m = start(eight_in_all);
    enum { CONNS = 4, N = 500 };
    flood f[CONNS];
    sq_task t[CONNS];
    for (int i = 0; i < CONNS; i++) {
        f[i] = (flood){.m = m, .conn = i, .n = N};
        CHECK_EQ(sq_spawn(&t[i], flood_main, &f[i], NULL), 0);
    }
    int answered = 0, refused = 0;
    for (int i = 0; i < CONNS; i++) {
        CHECK_EQ(sq_join(t[i], NULL), 0);
        CHECK_EQ(f[i].answered + f[i].refused, N);
        answered += f[i].answered;
        refused += f[i].refused;
    }
    fprintf(stderr, "    %d answered, %d refused\n", answered, refused);
    CHECK(answered > 0);
    mt_conn *c = mt_tcp(m);
    mt_init(c, "2025-11-25");
    for (int i = 0; i < 8; i++)
        mt_line(c, GATE("%d"), i);
    WAIT_UNTIL(atomic_load(&m->gate_entered) == 8);
    mt_line(c, "{\"jsonrpc\":\"2.0\",\"id\":\"x\",\"method\":\"ping\"}");
    char *got = mt_next(c), *want = busy("\"x\"", 64, 8);
    CHECK_JSON(got, want);
    free(got);
    free(want);
    mt_gate_open(m, 8);
    for (int i = 0; i < 8; i++)
        free(mt_next(c));
    mt_close(c);
    mt_stop(m);
}

/* ------------------------------------------------------- message size */

static void small_messages(sq_srv_config *c)
{
    c->max_message_bytes = 1024;
}

static char *long_echo(size_t text_len)
{
    char *text = malloc(text_len + 1);
    memset(text, 'a', text_len);
    text[text_len] = '\0';
    char *s = mt_fmt("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{"
                     "\"name\":\"echo\",\"arguments\":{\"text\":\"%s\"}}}",
                     text);
    free(text);
    return s;
}

MT_TEST(too_long_line_is_invalid_request_and_the_stream_goes_on)
{
    mt_server *m = start(small_messages);
    mt_conn *c = mt_stdio(m);
    mt_init(c, "2025-11-25");
    char *big = long_echo(5000);
    mt_line(c, "%s", big);
    free(big);
    char *got = mt_next(c);
    CHECK_JSON(got, "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32600,"
                    "\"message\":\"Invalid Request: message longer than 1024 bytes\"}}");
    free(got);
    char *fits = long_echo(900);
    mt_line(c, "%s", fits);
    free(fits);
    got = mt_next(c);
    CHECK(got && strstr(got, "\"result\""));
    free(got);
    mt_close(c);
    mt_stop(m);
}

MT_TEST(too_large_body_on_http_is_413_and_closed)
{
    mt_server *m = start(small_messages);
    char *sid = mt_session(m, "2025-11-25");
    char *hd = mt_sess_headers(sid, "2025-11-25");
    mt_http *h = mt_http_open(m);
    char *big = long_echo(5000);
    mt_http_post(h, hd, big);
    free(big);
    mt_resp *r = mt_http_next(h);
    CHECK(r && r->status == 413);
    CHECK(r && mt_hdr_is(r, "connection", "close"));
    CHECK(mt_http_expect_eof(h));
    mt_http_close(h);
    /* A chunked body past the limit: the same. */
    h = mt_http_open(m);
    sq__strbuf b = SQ__STRBUF_INIT;
    sq__strbuf_printf(&b, "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                          "application/json\r\nAccept: application/json, text/event-stream"
                          "\r\nTransfer-Encoding: chunked\r\n%s\r\n", hd);
    for (int i = 0; i < 3; i++) {
        sq__strbuf_puts(&b, "200\r\n");
        for (int k = 0; k < 0x200; k++)
            sq__strbuf_putc(&b, ' ');
        sq__strbuf_puts(&b, "\r\n");
    }
    mt_http_raw(h, b.buf, b.len);
    sq__strbuf_free(&b);
    r = mt_http_next(h);
    CHECK(r && r->status == 413);
    CHECK(mt_http_expect_eof(h));
    mt_http_close(h);
    free(hd);
    free(sid);
    mt_stop(m);
}

/* ------------------------------------------------------------ sessions */

static void two_sessions(sq_srv_config *c)
{
    c->max_sessions = 2;
}

MT_TEST(max_sessions_refuses_initialize_with_503)
{
    mt_server *m = start(two_sessions);
    char *s1 = mt_session(m, "2025-11-25"), *s2 = mt_session(m, "2025-11-25");
    int status;
    char *got = mt_post1(m, NULL,
                         "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":"
                         "{\"protocolVersion\":\"2025-11-25\",\"capabilities\":{},"
                         "\"clientInfo\":{\"name\":\"x\",\"version\":\"1\"}}}",
                         &status);
    CHECK_EQ(status, 503);
    CHECK_JSON(got, "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-31001,"
                    "\"message\":\"too many sessions (the limit is 2)\"}}");
    free(got);
    /* Ending one makes room. */
    mt_http *h = mt_http_open(m);
    char *hd = mt_sess_headers(s1, "2025-11-25");
    mt_http_delete(h, hd);
    mt_resp *r = mt_http_next(h);
    CHECK(r && r->status == 200);
    mt_http_close(h);
    free(hd);
    char *s3 = mt_session(m, "2025-11-25");
    CHECK(s3 != NULL);
    free(s1);
    free(s2);
    free(s3);
    mt_stop(m);
}

/* ---------------------------------------------------------- deadlines */

static void quick_reads(sq_srv_config *c)
{
    c->header_timeout = 200 * SQ_MSEC;
    c->body_timeout = 200 * SQ_MSEC;
}

MT_TEST(half_sent_headers_get_408_and_the_connection_closed)
{
    mt_server *m = start(quick_reads);
    mt_http *h = mt_http_open(m);
    static const char half[] = "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty";
    mt_http_raw(h, half, sizeof half - 1);
    mt_resp *r = mt_http_next(h);
    CHECK(r && r->status == 408);
    CHECK(r && mt_hdr_is(r, "connection", "close"));
    CHECK(mt_http_expect_eof(h));
    mt_http_close(h);
    mt_stop(m);
}

MT_TEST(half_sent_body_gets_408_and_the_connection_closed)
{
    mt_server *m = start(quick_reads);
    mt_http *h = mt_http_open(m);
    static const char half[] = "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                               "application/json\r\nContent-Length: 100\r\n\r\n{\"jsonrpc\"";
    mt_http_raw(h, half, sizeof half - 1);
    mt_resp *r = mt_http_next(h);
    CHECK(r && r->status == 408);
    CHECK(mt_http_expect_eof(h));
    mt_http_close(h);
    mt_stop(m);
}

/* A request that trickles in, byte by byte, within its deadline's reach
 * at each byte but not in all, is cut off all the same. */
MT_TEST(trickling_headers_get_408_by_their_total_deadline)
{
    mt_server *m = start(quick_reads);
    mt_http *h = mt_http_open(m);
    static const char req[] = "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
                              "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    bool cut = false;
    for (size_t i = 0; i < sizeof req - 1 && !cut; i++) {
        if (sq_io_write(h->io, req + i, 1) != 1)
            cut = true;
        sq_sleep(10 * SQ_MSEC);
    }
    mt_resp *r = mt_http_next(h);
    CHECK(r && r->status == 408);
    CHECK(mt_http_expect_eof(h));
    mt_http_close(h);
    mt_stop(m);
}

static void short_requests(sq_srv_config *c)
{
    c->request_timeout = 300 * SQ_MSEC;
}

#define DEADLINE(id)                                                                  \
    "{\"jsonrpc\":\"2.0\",\"id\":" id ",\"error\":{\"code\":-31002,\"message\":"      \
    "\"the request's deadline passed\"}}"

MT_TEST(request_past_its_deadline_gets_deadline_error)
{
    mt_server *m = start(short_requests);
    mt_conn *c = mt_stdio(m);
    mt_init(c, "2025-11-25");
    mt_line(c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{"
               "\"name\":\"sleep\",\"arguments\":{\"ms\":60000}}}");
    char *got = mt_next(c);
    CHECK_JSON(got, DEADLINE("1"));
    free(got);
    /* A gate call is stopped the same way; its handler sees it. */
    mt_line(c, GATE("2"));
    got = mt_next(c);
    CHECK_JSON(got, DEADLINE("2"));
    free(got);
    CHECK_EQ(atomic_load(&m->gate_cancelled), 1);
    /* Quick requests are not affected. */
    mt_line(c, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"ping\"}");
    got = mt_next(c);
    CHECK_JSON(got, "{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{}}");
    free(got);
    mt_close(c);
    mt_stop(m);
}

MT_TEST(request_past_its_deadline_on_http_gets_deadline_error)
{
    mt_server *m = start(short_requests);
    char *hd = mt_modern_headers("tools/call", "sleep");
    int status;
    char *got = mt_post1(m, hd,
                         "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{"
                         "\"name\":\"sleep\",\"arguments\":{\"ms\":60000}," MT_META "}}",
                         &status);
    CHECK_EQ(status, 200);
    CHECK_JSON(got, DEADLINE("1"));
    free(got);
    free(hd);
    char *sid = mt_session(m, "2025-11-25");
    hd = mt_sess_headers(sid, "2025-11-25");
    got = mt_post1(m, hd,
                   "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{"
                   "\"name\":\"sleep\",\"arguments\":{\"ms\":60000}}}",
                   &status);
    CHECK_EQ(status, 200);
    CHECK_JSON(got, DEADLINE("2"));
    free(got);
    free(hd);
    free(sid);
    mt_stop(m);
}
