/* Malformed requests are refused with the status docs/proto.md gives:
 * bad request lines, headers and chunks, header injection and request
 * smuggling (400), unknown methods and codings (501), versions (505). */
#include "http_testutil.h"

/* --------------------------------------------------- malformed requests */

TASK_TEST(a_bad_request_line_is_400)
{
    expect_refused("GET\r\n\r\n", 400);
    expect_refused("GET/ HTTP/1.1\r\n\r\n", 400);
    expect_refused(" GET / HTTP/1.1\r\n\r\n", 400);
    expect_refused("\x16\x03\x01\x02", 400); /* a TLS client hello */
    expect_refused("GET / HTTP/1.1 extra\r\n\r\n", 400);
    expect_refused("GET /a b HTTP/1.1\r\n\r\n", 400);
    expect_refused("GET / FTP/1.1\r\n\r\n", 400);
    expect_refused("GET /\x01 HTTP/1.1\r\n\r\n", 400);
}

TASK_TEST(a_bad_header_is_400)
{
    expect_refused("GET / HTTP/1.1\r\nX : a\r\n\r\n", 400);  /* space before ':' */
    expect_refused("GET / HTTP/1.1\r\nX Y: a\r\n\r\n", 400);
    expect_refused("GET / HTTP/1.1\r\n: a\r\n\r\n", 400);    /* no name */
    expect_refused("GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400);
    expect_refused("GET / HTTP/1.1\r\nX: a\x01z\r\n\r\n", 400);
    expect_refused("GET / HTTP/1.1\r\nX: \x7f\r\n\r\n", 400);
    expect_refused("GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n", 400);
    expect_refused("GET / HTTP/1.1\r\n X: a\r\n\r\n", 400);
}

TASK_TEST(a_bad_chunk_is_400)
{
    const char *head = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    const char *bodies[] = {
        "zz\r\nabc\r\n0\r\n\r\n",              /* not hexadecimal */
        "-3\r\nabc\r\n0\r\n\r\n",
        "3 ;a\r\nabc\r\n0\r\n\r\n",            /* space in the size line */
        "1ffffffffffffffff\r\nabc\r\n0\r\n\r\n", /* overflows */
        "3\r\nabcXX0\r\n\r\n",                 /* data not followed by CRLF */
        "3\r\nabc0\r\n\r\n",
        "3\nabc\r\n0\r\n\r\n",                 /* bare LF after the size */
        "\r\nabc\r\n0\r\n\r\n",                /* no size */
    };
    for (size_t i = 0; i < sizeof bodies / sizeof *bodies; i++) {
        char text[256];
        snprintf(text, sizeof text, "%s%s", head, bodies[i]);
        sq_http_limits lim = quick();
        lim.max_body_bytes = (size_t)1 << 62; /* the overflow is the error */
        expect_refused_with(&lim, text, 400);
    }
}

/* A bare CR or LF would let two parsers disagree on where a header line
 * ends: the text after it would be a header to one (injection) and part
 * of a value to the other. */
TASK_TEST(a_bare_cr_or_lf_in_the_head_is_400)
{
    expect_refused("GET / HTTP/1.1\r\nX: a\rInjected: b\r\n\r\n", 400);
    expect_refused("GET / HTTP/1.1\r\nX: a\nInjected: b\r\n\r\n", 400);
    expect_refused("GET / HTTP/1.1\nX: a\r\n\r\n", 400);
    expect_refused("GET / HTTP/1.1\r\nX: a\n\r\n", 400);
    expect_refused("GET / HTTP/1.1\r\nX: a\r\n\n", 400);
    expect_refused("GET / HTTP/1.1\n\n", 400);
    expect_refused("GET / HTTP/1.1\r\r\n\r\n", 400);
    expect_refused("GET /\r HTTP/1.1\r\n\r\n", 400);
}

TASK_TEST(content_length_with_transfer_encoding_is_400)
{
    expect_refused("POST / HTTP/1.1\r\nContent-Length: 3\r\n"
                   "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 400);
    expect_refused("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
                   "Content-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 400);
}

TASK_TEST(duplicate_content_length_is_400)
{
    expect_refused("POST / HTTP/1.1\r\nContent-Length: 3\r\n"
                   "Content-Length: 4\r\n\r\nabcd", 400);
    expect_refused("POST / HTTP/1.1\r\nContent-Length: 3\r\n"
                   "Content-Length: 3\r\n\r\nabc", 400);
    expect_refused("POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\nabc", 400);
}

TASK_TEST(a_bad_content_length_is_400)
{
    expect_refused("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400);
    expect_refused("POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\nab", 400);
    expect_refused("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
                   400);
}

TASK_TEST(transfer_encoding_not_ending_in_chunked_is_400)
{
    expect_refused("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400);
    expect_refused("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"
                   "0\r\n\r\n", 400);
    expect_refused("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
                   "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400);
}

TASK_TEST(an_unknown_transfer_coding_is_501)
{
    expect_refused("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                   "3\r\nabc\r\n0\r\n\r\n", 501);
    expect_refused("POST / HTTP/1.1\r\nTransfer-Encoding: x\r\n"
                   "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501);
}

TASK_TEST(transfer_encoding_in_http10_is_400)
{
    expect_refused("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "3\r\nabc\r\n0\r\n\r\n", 400);
}

TASK_TEST(an_unknown_method_is_501)
{
    expect_refused("FOO / HTTP/1.1\r\n\r\n", 501);
    expect_refused("get / HTTP/1.1\r\n\r\n", 501);
    expect_refused("POS / HTTP/1.1\r\n\r\n", 501);
    expect_refused("GETX / HTTP/1.1\r\n\r\n", 501);
}

TASK_TEST(connect_is_501)
{
    expect_refused("CONNECT example.org:443 HTTP/1.1\r\n\r\n", 501);
}

TASK_TEST(an_unsupported_version_is_505)
{
    expect_refused("GET / HTTP/1.2\r\n\r\n", 505);
    expect_refused("GET / HTTP/2.0\r\n\r\n", 505);
    expect_refused("GET / HTTP/0.9\r\n\r\n", 505);
    expect_refused("GET /\r\n\r\n", 505); /* an HTTP/0.9 request line */
    expect_refused("GET / HTTP/3.0\r\n\r\n", 505);
    expect_refused("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505);
}

TASK_TEST(a_failed_reader_keeps_failing_with_the_same_status)
{
    conn c;
    sq_http_reader *r =
        reader_after(&c, "GET / HTTP/1.1\r\nX : y\r\n\r\nGET / HTTP/1.1\r\n\r\n", NULL);
    sq_http_request req;
    int st = -1;
    CHECK_EQ(sq_http_read(r, &req, &st), -EPROTO);
    CHECK_EQ(st, 400);
    st = -1;
    CHECK_EQ(sq_http_read(r, &req, &st), -EPROTO);
    CHECK_EQ(st, 400);
    CHECK_EQ(sq_http_read(r, &req, NULL), -EPROTO); /* status_out NULL */
    reader_done(&c, r);
}
