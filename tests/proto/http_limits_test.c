/* The limits and deadlines of sq_http_read, each with its status: head
 * bytes and fields (431), body (413), idle (0 and 408), head and body
 * slower than their deadlines (408). */
#include <stdatomic.h>

#include "http_testutil.h"

/* ---------------------------------------------------------------- limits */

/* A request whose head (request line to the blank line) is n bytes. */
static void head_of(size_t n, sq__strbuf *b)
{
    const char *start = "GET / HTTP/1.1\r\nX: ";
    size_t fixed = strlen(start) + 4; /* and "\r\n\r\n" */
    sq__strbuf_puts(b, start);
    for (size_t i = fixed; i < n; i++)
        sq__strbuf_putc(b, 'v');
    sq__strbuf_puts(b, "\r\n\r\n");
}

TASK_TEST(a_head_at_the_byte_limit_is_read_and_one_byte_more_is_431)
{
    sq_http_limits lim = quick();
    lim.max_header_bytes = 700;
    sq__strbuf b = SQ__STRBUF_INIT;
    head_of(700, &b);
    CHECK_EQ(b.len, 700);
    sq_http_request req;
    expect_read_with(&lim, b.buf, &req);
    CHECK_EQ(strlen(req.headers[0].value), 700 - strlen("GET / HTTP/1.1\r\nX: ") - 4);
    sq_http_request_free(&req);
    sq__strbuf_reset(&b);
    head_of(701, &b);
    expect_refused_with(&lim, b.buf, 431);
    sq__strbuf_free(&b);
}

TASK_TEST(a_request_line_over_the_byte_limit_is_431)
{
    sq_http_limits lim = quick();
    lim.max_header_bytes = 64;
    expect_refused_with(&lim, "GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                              "aaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\n\r\n", 431);
}

TASK_TEST(a_head_over_the_default_16k_is_431)
{
    sq__strbuf b = SQ__STRBUF_INIT;
    head_of(16 * 1024 + 1, &b);
    expect_refused(b.buf, 431);
    sq__strbuf_reset(&b);
    head_of(16 * 1024, &b);
    sq_http_request req;
    expect_read(b.buf, &req);
    sq_http_request_free(&req);
    sq__strbuf_free(&b);
}

TASK_TEST(more_headers_than_the_limit_is_431)
{
    sq_http_limits lim = quick();
    lim.max_headers = 4;
    sq_http_request req;
    expect_read_with(&lim, "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n",
                     &req);
    CHECK_EQ(req.nheaders, 4);
    sq_http_request_free(&req);
    expect_refused_with(&lim, "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n"
                              "E: 5\r\n\r\n", 431);
}

TASK_TEST(a_body_at_the_limit_is_read)
{
    sq_http_limits lim = quick();
    lim.max_body_bytes = 10;
    sq_http_request req;
    expect_read_with(&lim, "POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n"
                           "0123456789", &req);
    CHECK_EQ(req.body_len, 10);
    sq_http_request_free(&req);
    expect_read_with(&lim, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                           "6\r\n012345\r\n4\r\n6789\r\n0\r\n\r\n", &req);
    CHECK(streq(req.body, "0123456789"));
    sq_http_request_free(&req);
}

/* The body is never sent: a reader that waited for it would fail with
 * 408 at the body deadline, not 413. */
TASK_TEST(a_content_length_over_the_limit_is_413_before_the_body)
{
    sq_http_limits lim = quick();
    lim.max_body_bytes = 10;
    expect_refused_with(&lim, "POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n", 413);
    expect_refused("POST / HTTP/1.1\r\nContent-Length: 4194305\r\n\r\n", 413);
}

TASK_TEST(a_chunked_body_over_the_limit_is_413)
{
    sq_http_limits lim = quick();
    lim.max_body_bytes = 10;
    expect_refused_with(&lim, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                              "6\r\n012345\r\n5\r\n", 413);
    /* announced over the limit: refused before its data */
    expect_refused_with(&lim, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                              "fffffff\r\n", 413);
}

TASK_TEST(trailers_over_the_head_limits_are_431)
{
    sq_http_limits lim = quick();
    lim.max_headers = 2;
    expect_refused_with(&lim, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                              "0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", 431);
}

/* ------------------------------------------------------------- deadlines */

TASK_TEST(an_idle_connection_returns_0_with_408)
{
    conn c;
    conn_open(&c);
    sq_http_limits lim = {.idle_timeout = 50 * SQ_MSEC};
    sq_http_reader *r;
    CHECK_EQ(sq_http_reader_new(&r, c.srv, &lim), 0);
    sq_http_request req;
    int st = -1;
    int64_t t0 = sq_now();
    CHECK_EQ(sq_http_read(r, &req, &st), 0);
    CHECK(sq_now() - t0 >= 50 * SQ_MSEC);
    CHECK_EQ(st, 408);
    CHECK(!sq_http_reader_eof(r));
    /* still usable: a request that comes later is read */
    send_str(c.cli, "GET / HTTP/1.1\r\n\r\n");
    CHECK_EQ(sq_http_read(r, &req, &st), 1);
    sq_http_request_free(&req);
    reader_done(&c, r);
}

static void expect_timeout(const char *text, sq_http_limits lim, int64_t least)
{
    conn c;
    sq_http_reader *r = reader_after(&c, text, &lim);
    sq_http_request req;
    int st = -1;
    int64_t t0 = sq_now();
    CHECK_EQ(sq_http_read(r, &req, &st), -EPROTO);
    CHECK(sq_now() - t0 >= least);
    CHECK_EQ(st, 408);
    reader_done(&c, r);
}

TASK_TEST(a_head_slower_than_the_header_timeout_is_408)
{
    expect_timeout("GET / HTTP/1.1\r\nHost: x\r\n",
                   (sq_http_limits){.header_timeout = 60 * SQ_MSEC}, 60 * SQ_MSEC);
}

TASK_TEST(a_body_slower_than_the_body_timeout_is_408)
{
    expect_timeout("POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc",
                   (sq_http_limits){.body_timeout = 60 * SQ_MSEC}, 60 * SQ_MSEC);
    expect_timeout("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab",
                   (sq_http_limits){.body_timeout = 60 * SQ_MSEC}, 60 * SQ_MSEC);
}

typedef struct trickle {
    sq_io *to;
    atomic_int sent;
} trickle;

/* Sends a head that never ends, a byte every few milliseconds, until the
 * reader gives up and the connection goes. */
static void *trickle_writer(void *arg)
{
    trickle *t = arg;
    if (sq_io_write(t->to, "GET / HTTP/1.1\r\nX: ", 19) != 19)
        return NULL;
    while (sq_io_write(t->to, "v", 1) == 1 && atomic_load(&t->sent) < 100000) {
        atomic_fetch_add(&t->sent, 1);
        sq_sleep(5 * SQ_MSEC);
    }
    return NULL;
}

TASK_TEST(a_head_trickling_in_fails_at_the_header_deadline)
{
    conn c;
    conn_open(&c);
    trickle t = {c.cli, 0};
    sq_task w;
    CHECK_EQ(sq_spawn(&w, trickle_writer, &t, NULL), 0);
    sq_http_limits lim = {.header_timeout = 100 * SQ_MSEC};
    sq_http_reader *r;
    CHECK_EQ(sq_http_reader_new(&r, c.srv, &lim), 0);
    sq_http_request req;
    int st = -1;
    int64_t t0 = sq_now();
    CHECK_EQ(sq_http_read(r, &req, &st), -EPROTO);
    CHECK_EQ(st, 408);
    CHECK(sq_now() - t0 >= 100 * SQ_MSEC);
    CHECK(atomic_load(&t.sent) > 0); /* bytes kept coming; no help */
    sq_http_reader_free(r);
    sq_io_close(c.srv);
    c.srv = NULL;
    CHECK_EQ(sq_join(w, NULL), 0);
    conn_close(&c);
}
