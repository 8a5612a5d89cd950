/* HTTP/1.1 requests read with sq_http_read: their parts, keep-alive and
 * pipelining, chunked bodies, reads of any size, end of stream,
 * cancellation, 100-continue.  Limits and deadlines are in
 * http_limits_test.c, refusals of malformed requests in
 * http_malformed_test.c. */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "http_testutil.h"

/* ------------------------------------------------------------ the parts */

TASK_TEST(a_request_is_read_with_all_its_parts)
{
    sq_http_request req;
    expect_read("POST /mcp/v1?session=7&x HTTP/1.1\r\n"
                "Host: 127.0.0.1\r\n"
                "Content-Type: application/json\r\n"
                "Content-Length: 11\r\n"
                "\r\n"
                "{\"a\":\"b\\n\"}", &req);
    CHECK(streq(req.method, "POST"));
    CHECK(streq(req.target, "/mcp/v1?session=7&x"));
    CHECK(streq(req.path, "/mcp/v1"));
    CHECK_EQ(req.version_major, 1);
    CHECK_EQ(req.version_minor, 1);
    CHECK(req.keep_alive);
    CHECK(!req.chunked);
    CHECK_EQ(req.nheaders, 3);
    CHECK(streq(sq_http_header_get(&req, "content-type"), "application/json"));
    CHECK(streq(sq_http_header_get(&req, "HOST"), "127.0.0.1"));
    CHECK_EQ(req.body_len, 11);
    CHECK(streq(req.body, "{\"a\":\"b\\n\"}"));
    sq_http_request_free(&req);
    CHECK(req.body == NULL && req.headers == NULL && req.nheaders == 0);
    sq_http_request_free(&req); /* a zeroed request: harmless */
}

TASK_TEST(a_request_without_body_has_an_empty_terminated_body)
{
    sq_http_request req;
    expect_read("GET / HTTP/1.1\r\n\r\n", &req);
    CHECK(streq(req.method, "GET"));
    CHECK(streq(req.path, "/"));
    CHECK_EQ(req.nheaders, 0);
    CHECK(req.body && req.body[0] == '\0');
    CHECK_EQ(req.body_len, 0);
    CHECK(sq_http_header_get(&req, "host") == NULL);
    sq_http_request_free(&req);
}

TASK_TEST(a_zero_content_length_gives_an_empty_terminated_body)
{
    for (int i = 0; i < 20; i++) {
        sq_http_request req;
        expect_read("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", &req);
        CHECK(req.body && req.body[0] == '\0');
        CHECK_EQ(req.body_len, 0);
        sq_http_request_free(&req);
    }
}

TASK_TEST(a_body_may_hold_any_byte)
{
    char text[256];
    int n = snprintf(text, sizeof text,
                     "PUT /bin HTTP/1.1\r\nContent-Length: 6\r\n\r\n");
    memcpy(text + n, "a\0\r\n\xff" "b", 6);
    sq_http_limits lim = quick();
    sq_http_request req;
    int st;
    CHECK_EQ(read_from(text, (size_t)n + 6, false, &lim, &req, &st), 1);
    CHECK_EQ(req.body_len, 6);
    CHECK(memcmp(req.body, "a\0\r\n\xff" "b", 7) == 0); /* and its NUL */
    sq_http_request_free(&req);
}

TASK_TEST(header_names_are_lowercased_and_values_trimmed)
{
    sq_http_request req;
    expect_read("GET / HTTP/1.1\r\n"
                "X-MiXed-CASE:  \t value with  inner \t space \t \r\n"
                "Empty:\r\n"
                "Blank: \t \r\n"
                "\r\n", &req);
    CHECK_EQ(req.nheaders, 3);
    CHECK(streq(req.headers[0].name, "x-mixed-case"));
    CHECK(streq(req.headers[0].value, "value with  inner \t space"));
    CHECK_EQ(req.headers[0].value_len, strlen("value with  inner \t space"));
    CHECK(streq(req.headers[1].name, "empty"));
    CHECK(streq(req.headers[1].value, ""));
    CHECK_EQ(req.headers[1].value_len, 0);
    CHECK(streq(req.headers[2].value, ""));
    sq_http_request_free(&req);
}

TASK_TEST(repeated_headers_are_kept_in_order)
{
    sq_http_request req;
    expect_read("GET / HTTP/1.1\r\nAccept: 1\r\nB: x\r\naccept: 2\r\n"
                "ACCEPT: 3\r\n\r\n", &req);
    CHECK_EQ(req.nheaders, 4);
    CHECK_EQ(sq_http_header_count(&req, "Accept"), 3);
    CHECK_EQ(sq_http_header_count(&req, "b"), 1);
    CHECK_EQ(sq_http_header_count(&req, "c"), 0);
    CHECK(streq(sq_http_header_get(&req, "accept"), "1"));
    CHECK(streq(req.headers[2].value, "2"));
    CHECK(streq(req.headers[3].value, "3"));
    sq_http_request_free(&req);
}

TASK_TEST(blank_lines_before_a_request_are_skipped)
{
    sq_http_request req;
    expect_read("\r\n\r\nGET /after HTTP/1.1\r\n\r\n", &req);
    CHECK(streq(req.target, "/after"));
    sq_http_request_free(&req);
}

TASK_TEST(asterisk_and_absolute_targets_are_kept_as_sent)
{
    sq_http_request req;
    expect_read("OPTIONS * HTTP/1.1\r\n\r\n", &req);
    CHECK(streq(req.method, "OPTIONS"));
    CHECK(streq(req.target, "*"));
    CHECK(streq(req.path, "*"));
    sq_http_request_free(&req);
    expect_read("GET http://h:1/p?q HTTP/1.1\r\n\r\n", &req);
    CHECK(streq(req.target, "http://h:1/p?q"));
    CHECK(streq(req.path, "http://h:1/p"));
    sq_http_request_free(&req);
}

/* -------------------------------------------- keep-alive and pipelining */

enum { PIPELINED = 100 };

/* Request i of the pipelining test: GETs, bodies with a Content-Length
 * and chunked bodies in turn; the last asks to close. */
static void pipelined_body(int i, sq__strbuf *b)
{
    int len = i % 3 == 0 ? 0 : i * 37 % 500 + 1;
    for (int j = 0; j < len; j++)
        sq__strbuf_putc(b, (char)('a' + (i + j) % 26));
}

static void pipelined_request(int i, sq__strbuf *out)
{
    sq__strbuf body = SQ__STRBUF_INIT;
    pipelined_body(i, &body);
    const char *close = i == PIPELINED - 1 ? "Connection: close\r\n" : "";
    if (i % 3 == 0) {
        sq__strbuf_printf(out, "GET /r/%d HTTP/1.1\r\nX-Seq: %d\r\n%s\r\n", i,
                          i, close);
    } else if (i % 3 == 1) {
        sq__strbuf_printf(out, "POST /r/%d HTTP/1.1\r\nX-Seq: %d\r\n%s"
                          "Content-Length: %zu\r\n\r\n", i, i, close, body.len);
        sq__strbuf_add(out, sq__strbuf_str(&body), body.len);
    } else {
        sq__strbuf_printf(out, "POST /r/%d HTTP/1.1\r\nX-Seq: %d\r\n%s"
                          "Transfer-Encoding: chunked\r\n\r\n", i, i, close);
        for (size_t at = 0; at < body.len; at += 100) {
            size_t n = body.len - at < 100 ? body.len - at : 100;
            sq__strbuf_printf(out, "%zx\r\n", n);
            sq__strbuf_add(out, body.buf + at, n);
            sq__strbuf_puts(out, "\r\n");
        }
        sq__strbuf_puts(out, "0\r\n\r\n");
    }
    sq__strbuf_free(&body);
}

static int pipelined_ok;

/* Reads every request, checks it is the next one, and echoes its body. */
static void *pipelined_server(void *arg)
{
    sq_io *l = arg, *c;
    CHECK_EQ(sq_io_accept(l, &c), 0);
    sq_http_reader *r;
    CHECK_EQ(sq_http_reader_new(&r, c, NULL), 0);
    for (int i = 0;; i++) {
        sq_http_request req;
        int st;
        int rc = sq_http_read(r, &req, &st);
        if (rc != 1) {
            CHECK_EQ(rc, 0);
            CHECK_EQ(i, PIPELINED);
            break;
        }
        char seq[16], path[32];
        snprintf(seq, sizeof seq, "%d", i);
        snprintf(path, sizeof path, "/r/%d", i);
        sq__strbuf want = SQ__STRBUF_INIT;
        pipelined_body(i, &want);
        bool ok = streq(sq_http_header_get(&req, "x-seq"), seq) &&
                  streq(req.path, path) && req.body_len == want.len &&
                  memcmp(req.body, sq__strbuf_str(&want), want.len) == 0 &&
                  req.chunked == (i % 3 == 2) &&
                  req.keep_alive == (i != PIPELINED - 1);
        CHECK(ok);
        pipelined_ok += ok;
        sq__strbuf_free(&want);
        char h[32];
        snprintf(h, sizeof h, "X-Seq: %d", i);
        const char *hs[] = {h};
        CHECK_EQ(sq_http_respond(c, 200, !req.keep_alive, "text/plain", hs, 1,
                                 req.body, req.body_len), 0);
        sq_http_request_free(&req);
    }
    sq_http_reader_free(r);
    sq_io_close(c);
    return NULL;
}

TASK_TEST(pipelined_requests_on_one_connection_come_back_in_order)
{
    sq_io *l, *c;
    CHECK_EQ(sq_tcp_listen(&l, "127.0.0.1", 0, 4), 0);
    sq_task server;
    pipelined_ok = 0;
    CHECK_EQ(sq_spawn(&server, pipelined_server, l, NULL), 0);
    CHECK_EQ(sq_tcp_connect(&c, "127.0.0.1", sq_io_local_port(l)), 0);
    sq__strbuf all = SQ__STRBUF_INIT;
    for (int i = 0; i < PIPELINED; i++)
        pipelined_request(i, &all);
    send_bytes(c, all.buf, all.len); /* one write: 100 requests */
    sq__strbuf in = SQ__STRBUF_INIT;
    read_all(c, &in);
    CHECK_EQ(sq_join(server, NULL), 0);
    CHECK_EQ(pipelined_ok, PIPELINED);

    parsed *p = malloc(sizeof *p);
    CHECK_EQ(parse_responses(in.buf, in.len, p), HPE_OK);
    CHECK_EQ(p->n, PIPELINED);
    for (int i = 0; i < p->n; i++) {
        sq__strbuf want = SQ__STRBUF_INIT;
        char seq[32];
        pipelined_body(i, &want);
        snprintf(seq, sizeof seq, "X-Seq: %d\n", i);
        CHECK_EQ(p->status[i], 200);
        CHECK(strstr(sq__strbuf_str(&p->head[i]), seq) != NULL);
        CHECK(strcmp(sq__strbuf_str(&p->body[i]), sq__strbuf_str(&want)) == 0);
        sq__strbuf_free(&want);
    }
    CHECK(!p->keep_alive[PIPELINED - 1]);
    parsed_free(p);
    free(p);
    sq__strbuf_free(&all);
    sq__strbuf_free(&in);
    sq_io_close(c);
    sq_io_close(l);
}

TASK_TEST(a_kept_alive_connection_serves_one_request_after_another)
{
    conn c;
    conn_open(&c);
    sq_http_reader *r;
    CHECK_EQ(sq_http_reader_new(&r, c.srv, NULL), 0);
    for (int i = 0; i < 10; i++) {
        char text[128], want[16];
        snprintf(text, sizeof text,
                 "POST /k HTTP/1.1\r\nContent-Length: %d\r\n\r\n%d",
                 1, i);
        send_str(c.cli, text);
        sq_http_request req;
        int st;
        CHECK_EQ(sq_http_read(r, &req, &st), 1);
        snprintf(want, sizeof want, "%d", i);
        CHECK(streq(req.body, want));
        CHECK(req.keep_alive);
        CHECK_EQ(sq_http_respond(c.srv, 204, false, NULL, NULL, 0, NULL, 0), 0);
        sq_http_request_free(&req);
        char resp[64];
        const char *expect = "HTTP/1.1 204 No Content\r\n\r\n";
        CHECK(read_exact(c.cli, resp, strlen(expect)));
        CHECK(memcmp(resp, expect, strlen(expect)) == 0);
    }
    CHECK(!sq_http_reader_eof(r));
    reader_done(&c, r);
}

TASK_TEST(a_connection_close_request_is_the_last)
{
    conn c;
    sq_http_reader *r = reader_after(
        &c, "GET /1 HTTP/1.1\r\nConnection: close\r\n\r\nGET /2 HTTP/1.1\r\n\r\n",
        NULL);
    sq_http_request req;
    int st;
    CHECK_EQ(sq_http_read(r, &req, &st), 1);
    CHECK(streq(req.target, "/1"));
    CHECK(!req.keep_alive);
    sq_http_request_free(&req);
    CHECK_EQ(sq_http_read(r, &req, &st), 0);
    CHECK_EQ(st, 0);
    CHECK_EQ(sq_http_read(r, &req, &st), 0);
    reader_done(&c, r);
}

TASK_TEST(an_http10_request_is_never_kept_alive)
{
    sq_http_request req;
    expect_read("GET / HTTP/1.0\r\n\r\n", &req);
    CHECK_EQ(req.version_minor, 0);
    CHECK(!req.keep_alive);
    sq_http_request_free(&req);
    expect_read("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &req);
    CHECK(!req.keep_alive);
    sq_http_request_free(&req);
}

TASK_TEST(a_chunked_body_with_extensions_and_trailers_is_joined)
{
    conn c;
    sq_http_reader *r = reader_after(
        &c, "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
            "5;name=val\r\nhello\r\n"
            "1;flag\r\n \r\n"
            "5;q=\"quoted\"\r\nworld\r\n"
            "2;a;b=2\r\n!!\r\n"
            "1;a=\"1\";b=\"2\"\r\n?\r\n"
            "0\r\nX-Trailer: t\r\nX-Other: u\r\n\r\n"
            "GET /next HTTP/1.1\r\n\r\n",
        NULL);
    sq_http_request req;
    int st;
    CHECK_EQ(sq_http_read(r, &req, &st), 1);
    CHECK(req.chunked);
    CHECK(streq(req.body, "hello world!!?"));
    CHECK_EQ(req.body_len, 14);
    CHECK_EQ(req.nheaders, 1); /* trailers are dropped */
    CHECK(sq_http_header_get(&req, "x-trailer") == NULL);
    sq_http_request_free(&req);
    CHECK_EQ(sq_http_read(r, &req, &st), 1);
    CHECK(streq(req.target, "/next"));
    sq_http_request_free(&req);
    reader_done(&c, r);
}

TASK_TEST(an_upgrade_request_is_read_as_plain_http)
{
    conn c;
    sq_http_reader *r = reader_after(
        &c, "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
            "POST /after HTTP/1.1\r\nContent-Length: 2\r\n\r\nok",
        NULL);
    sq_http_request req;
    int st;
    CHECK_EQ(sq_http_read(r, &req, &st), 1);
    CHECK(streq(req.target, "/ws"));
    sq_http_request_free(&req);
    CHECK_EQ(sq_http_read(r, &req, &st), 1);
    CHECK(streq(req.target, "/after"));
    CHECK(streq(req.body, "ok"));
    sq_http_request_free(&req);
    reader_done(&c, r);
}

/* ------------------------------------------------------ reads of any size */

typedef struct dribble {
    sq_io *to, *reader_end;
    const char *text;
} dribble;

/* Writes one byte at a time, each once the one before has been read off
 * the socket, so that every read of the reader returns one byte. */
static void *dribble_writer(void *arg)
{
    dribble *d = arg;
    for (const char *p = d->text; *p; p++) {
        WAIT_UNTIL(pending(d->reader_end) == 0);
        send_bytes(d->to, p, 1);
    }
    return NULL;
}

TASK_TEST(a_request_delivered_one_byte_at_a_time_is_read_whole)
{
    conn c;
    conn_open(&c);
    dribble d = {c.cli, c.srv,
                 "POST /slow?q=1 HTTP/1.1\r\nHost: h\r\nA: 1\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n"
                 "3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n"
                 "PUT /two HTTP/1.1\r\nContent-Length: 4\r\n\r\nwxyz"};
    sq_task w;
    CHECK_EQ(sq_spawn(&w, dribble_writer, &d, NULL), 0);
    sq_http_reader *r;
    CHECK_EQ(sq_http_reader_new(&r, c.srv, NULL), 0);
    sq_http_request req;
    int st;
    CHECK_EQ(sq_http_read(r, &req, &st), 1);
    CHECK(streq(req.target, "/slow?q=1"));
    CHECK(streq(sq_http_header_get(&req, "a"), "1"));
    CHECK(streq(req.body, "abcde"));
    sq_http_request_free(&req);
    CHECK_EQ(sq_http_read(r, &req, &st), 1);
    CHECK(streq(req.method, "PUT"));
    CHECK(streq(req.body, "wxyz"));
    sq_http_request_free(&req);
    CHECK_EQ(sq_join(w, NULL), 0);
    reader_done(&c, r);
}

/* ------------------------------------------------------- end of stream */

TASK_TEST(end_of_stream_between_requests_returns_0)
{
    conn c;
    sq_http_reader *r = reader_after(&c, "GET / HTTP/1.1\r\n\r\n\r\n", NULL);
    CHECK_EQ(sq_io_shutdown_write(c.cli), 0);
    CHECK(!sq_http_reader_eof(r));
    sq_http_request req;
    int st;
    CHECK_EQ(sq_http_read(r, &req, &st), 1);
    sq_http_request_free(&req);
    CHECK_EQ(sq_http_read(r, &req, &st), 0);
    CHECK_EQ(st, 0);
    CHECK(sq_http_reader_eof(r));
    CHECK_EQ(sq_http_read(r, &req, &st), 0);
    reader_done(&c, r);
}

TASK_TEST(requests_before_the_end_of_stream_are_all_returned)
{
    conn c;
    sq_http_reader *r = reader_after(
        &c, "GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n", NULL);
    CHECK_EQ(sq_io_shutdown_write(c.cli), 0);
    WAIT_UNTIL(pending(c.srv) > 0);
    sq_http_request req;
    int st;
    CHECK_EQ(sq_http_read(r, &req, &st), 1);
    CHECK(streq(req.target, "/1"));
    sq_http_request_free(&req);
    CHECK_EQ(sq_http_read(r, &req, &st), 1);
    CHECK(streq(req.target, "/2"));
    sq_http_request_free(&req);
    CHECK_EQ(sq_http_read(r, &req, &st), 0);
    CHECK(sq_http_reader_eof(r));
    reader_done(&c, r);
}

static void expect_cut_short(const char *text)
{
    sq_http_limits lim = quick();
    sq_http_request req;
    int st = -1;
    CHECK_EQ(read_from(text, strlen(text), true, &lim, &req, &st), -EPROTO);
    CHECK_EQ(st, 400);
}

TASK_TEST(end_of_stream_inside_the_head_is_400)
{
    expect_cut_short("GET / HTTP/1.1\r\nHost: a");
    expect_cut_short("G");
}

TASK_TEST(end_of_stream_inside_the_body_is_400)
{
    expect_cut_short("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nabc");
    expect_cut_short("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "3\r\nabc\r\n");
}

/* -------------------------------------------------------- cancellation */

typedef struct partial {
    sq_http_reader *r;
    int rc;
    atomic_bool waiting;
} partial;

static void *partial_reader(void *arg)
{
    partial *p = arg;
    sq_http_request req;
    int st;
    atomic_store(&p->waiting, true);
    p->rc = sq_http_read(p->r, &req, &st);
    sq_http_request_free(&req);
    return NULL;
}

TASK_TEST(a_cancelled_read_keeps_the_partial_request)
{
    conn c;
    conn_open(&c);
    sq_http_reader *r;
    CHECK_EQ(sq_http_reader_new(&r, c.srv, NULL), 0);
    partial p = {r, 1, false};
    sq_task t;
    send_str(c.cli, "POST /part HTTP/1.1\r\nContent-Length: 6\r\nX-A: 1");
    CHECK_EQ(sq_spawn(&t, partial_reader, &p, NULL), 0);
    WAIT_UNTIL(atomic_load(&p.waiting) && pending(c.srv) == 0);
    CHECK_EQ(sq_abort(t), 0);
    sq_join(t, NULL);
    CHECK_EQ(p.rc, -ECANCELED);
    send_str(c.cli, "b\r\n\r\nabc");
    send_str(c.cli, "def");
    sq_http_request req;
    int st;
    CHECK_EQ(sq_http_read(r, &req, &st), 1);
    CHECK(streq(req.path, "/part"));
    CHECK(streq(sq_http_header_get(&req, "x-a"), "1b"));
    CHECK(streq(req.body, "abcdef"));
    sq_http_request_free(&req);
    reader_done(&c, r);
}

/* ---------------------------------------------------- 100-continue */

typedef struct continued {
    sq_http_reader *r;
    int rc;
    char body[16];
} continued;

static void *continue_reader(void *arg)
{
    continued *x = arg;
    sq_http_request req;
    int st;
    x->rc = sq_http_read(x->r, &req, &st);
    if (x->rc == 1)
        snprintf(x->body, sizeof x->body, "%s", req.body);
    sq_http_request_free(&req);
    return NULL;
}

TASK_TEST(expect_100_continue_is_answered_when_asked_to)
{
    conn c;
    conn_open(&c);
    continued x = {0};
    CHECK_EQ(sq_http_reader_new(&x.r, c.srv, NULL), 0);
    sq_http_reader_answer_continue(x.r, true);
    sq_task t;
    CHECK_EQ(sq_spawn(&t, continue_reader, &x, NULL), 0);
    send_str(c.cli, "POST / HTTP/1.1\r\nExpect: 100-Continue\r\n"
                    "Content-Length: 5\r\n\r\n");
    const char *want = "HTTP/1.1 100 Continue\r\n\r\n";
    char got[64];
    CHECK(read_exact(c.cli, got, strlen(want)));
    CHECK(memcmp(got, want, strlen(want)) == 0);
    send_str(c.cli, "hello");
    CHECK_EQ(sq_join(t, NULL), 0);
    CHECK_EQ(x.rc, 1);
    CHECK(streq(x.body, "hello"));
    sq_http_reader_free(x.r);
    conn_close(&c);
}

TASK_TEST(expect_100_continue_gets_nothing_once_the_body_is_there)
{
    conn c;
    conn_open(&c);
    sq_http_reader *r;
    CHECK_EQ(sq_http_reader_new(&r, c.srv, NULL), 0);
    sq_http_reader_answer_continue(r, true);
    send_str(c.cli, "POST / HTTP/1.1\r\nExpect: 100-continue\r\n"
                    "Content-Length: 5\r\n\r\nhello");
    sq_http_request req;
    int st;
    CHECK_EQ(sq_http_read(r, &req, &st), 1);
    sq_http_request_free(&req);
    CHECK_EQ(pending(c.cli), 0);
    reader_done(&c, r);
}

TASK_TEST(expect_100_continue_is_not_answered_by_default)
{
    conn c;
    conn_open(&c);
    continued x = {0};
    CHECK_EQ(sq_http_reader_new(&x.r, c.srv, NULL), 0);
    sq_task t;
    CHECK_EQ(sq_spawn(&t, continue_reader, &x, NULL), 0);
    send_str(c.cli, "POST / HTTP/1.1\r\nExpect: 100-continue\r\n"
                    "Content-Length: 5\r\n\r\n");
    WAIT_UNTIL(pending(c.srv) == 0); /* the reader has taken the head */
    send_str(c.cli, "hello");
    CHECK_EQ(sq_join(t, NULL), 0);
    CHECK_EQ(x.rc, 1);
    CHECK_EQ(pending(c.cli), 0);
    sq_http_reader_free(x.r);
    conn_close(&c);
}

TASK_TEST(a_refused_head_gets_its_status_instead_of_100)
{
    conn c;
    conn_open(&c);
    sq_http_limits lim = {.max_body_bytes = 4};
    sq_http_reader *r;
    CHECK_EQ(sq_http_reader_new(&r, c.srv, &lim), 0);
    sq_http_reader_answer_continue(r, true);
    send_str(c.cli, "POST / HTTP/1.1\r\nExpect: 100-continue\r\n"
                    "Content-Length: 5\r\n\r\n");
    sq_http_request req;
    int st;
    CHECK_EQ(sq_http_read(r, &req, &st), -EPROTO);
    CHECK_EQ(st, 413);
    CHECK_EQ(pending(c.cli), 0);
    reader_done(&c, r);
}
