/* HTTP/1.1 responses: heads built piece by piece, whole responses and
 * streamed ones, checked byte for byte and parsed back with llhttp. */
#include <string.h>

#include "proto_testutil.h"
#include "sq_proto/http.h"

static bool streq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

/* What respond (or a stream) wrote: the client end read to its end. */
static void written(conn *c, sq__strbuf *out)
{
    CHECK_EQ(sq_io_shutdown_write(c->srv), 0);
    read_all(c->cli, out);
}

static void expect_bytes(const sq__strbuf *got, const char *want)
{
    if (!streq(sq__strbuf_str(got), want)) {
        fprintf(stderr, "    got:\n%s\n    want:\n%s\n", sq__strbuf_str(got), want);
        CHECK(!"bytes differ");
    }
}

TEST(reasons_are_named_for_every_status)
{
    CHECK(streq(sq_http_reason(200), "OK"));
    CHECK(streq(sq_http_reason(202), "Accepted"));
    CHECK(streq(sq_http_reason(404), "Not Found"));
    CHECK(streq(sq_http_reason(405), "Method Not Allowed"));
    CHECK(streq(sq_http_reason(408), "Request Timeout"));
    CHECK(streq(sq_http_reason(413), "Content Too Large"));
    CHECK(streq(sq_http_reason(431), "Request Header Fields Too Large"));
    CHECK(streq(sq_http_reason(505), "HTTP Version Not Supported"));
    CHECK(streq(sq_http_reason(299), "Success"));
    CHECK(streq(sq_http_reason(42), "Unknown"));
    for (int s = 100; s < 600; s++) {
        const char *r = sq_http_reason(s);
        CHECK(r && r[0] && !strpbrk(r, "\r\n"));
    }
}

TEST(a_head_is_built_piece_by_piece)
{
    sq__strbuf b = SQ__STRBUF_INIT;
    sq_http_begin(&b, 201, false);
    sq_http_add_header(&b, "Location", "/x");
    sq_http_end_headers(&b, 12);
    expect_bytes(&b, "HTTP/1.1 201 Created\r\nLocation: /x\r\n"
                     "Content-Length: 12\r\n\r\n");
    sq__strbuf_reset(&b);
    sq_http_begin(&b, 200, true);
    sq_http_end_headers(&b, SQ_HTTP_CHUNKED);
    expect_bytes(&b, "HTTP/1.1 200 OK\r\nConnection: close\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n");
    sq__strbuf_free(&b);
}

/* A value taken from a request must not start a header line (or the body)
 * of its own: response splitting. */
TEST(cr_and_lf_in_names_and_values_cannot_split_the_head)
{
    sq__strbuf b = SQ__STRBUF_INIT;
    sq_http_begin(&b, 200, false);
    sq_http_add_header(&b, "X-Id", "a\r\nSet-Cookie: evil\r\n\r\n<html>");
    sq_http_add_header(&b, "X\nY", "z");
    sq_http_end_headers(&b, 0);
    expect_bytes(&b, "HTTP/1.1 200 OK\r\n"
                     "X-Id: a  Set-Cookie: evil    <html>\r\n"
                     "X Y: z\r\n"
                     "Content-Length: 0\r\n\r\n");
    sq__strbuf_free(&b);
}

TASK_TEST(respond_writes_status_headers_type_and_body)
{
    conn c;
    conn_open(&c);
    const char *hs[] = {"Mcp-Session-Id: abc", "Cache-Control: no-store"};
    CHECK_EQ(sq_http_respond(c.srv, 200, false, "application/json", hs, 2,
                             "{\"ok\":true}", 11), 0);
    sq__strbuf out = SQ__STRBUF_INIT;
    written(&c, &out);
    expect_bytes(&out, "HTTP/1.1 200 OK\r\n"
                       "Mcp-Session-Id: abc\r\n"
                       "Cache-Control: no-store\r\n"
                       "Content-Type: application/json\r\n"
                       "Content-Length: 11\r\n\r\n"
                       "{\"ok\":true}");
    sq__strbuf_free(&out);
    conn_close(&c);
}

typedef struct collect {
    sq_io *from;
    sq__strbuf *into;
} collect;

static void *collector(void *arg)
{
    collect *c = arg;
    read_all(c->from, c->into);
    return NULL;
}

TASK_TEST(responses_parse_back_with_llhttp)
{
    conn c;
    conn_open(&c);
    static char big[200000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)('A' + i % 23);
    sq__strbuf out = SQ__STRBUF_INIT;
    collect col = {c.cli, &out};
    sq_task t;
    CHECK_EQ(sq_spawn(&t, collector, &col, NULL), 0);
    CHECK_EQ(sq_http_respond(c.srv, 404, false, "text/plain", NULL, 0,
                             "no such thing", 13), 0);
    CHECK_EQ(sq_http_respond(c.srv, 202, false, NULL, NULL, 0, NULL, 0), 0);
    CHECK_EQ(sq_http_respond(c.srv, 204, false, NULL, NULL, 0, "ignored", 7), 0);
    CHECK_EQ(sq_http_respond(c.srv, 304, false, NULL, NULL, 0, NULL, 0), 0);
    /* bigger than the socket's buffer: respond waits for the reader */
    CHECK_EQ(sq_http_respond(c.srv, 200, true, "application/octet-stream",
                             NULL, 0, big, sizeof big), 0);
    CHECK_EQ(sq_io_shutdown_write(c.srv), 0);
    CHECK_EQ(sq_join(t, NULL), 0);
    parsed *p = malloc(sizeof *p);
    CHECK_EQ(parse_responses(out.buf, out.len, p), HPE_OK);
    CHECK_EQ(p->n, 5);
    CHECK_EQ(p->status[0], 404);
    CHECK(streq(sq__strbuf_str(&p->body[0]), "no such thing"));
    CHECK(strstr(sq__strbuf_str(&p->head[0]), "Content-Type: text/plain\n"));
    CHECK(p->keep_alive[0]);
    CHECK_EQ(p->status[1], 202);
    CHECK(p->has_length[1]);
    CHECK_EQ(p->body[1].len, 0);
    CHECK_EQ(p->status[2], 204);
    CHECK(!p->has_length[2]);
    CHECK_EQ(p->body[2].len, 0);
    CHECK_EQ(p->status[3], 304);
    CHECK(!p->has_length[3]);
    CHECK_EQ(p->status[4], 200);
    CHECK(!p->keep_alive[4]);
    CHECK(strstr(sq__strbuf_str(&p->head[4]), "Connection: close\n"));
    CHECK_EQ(p->body[4].len, sizeof big);
    CHECK(p->body[4].buf && memcmp(p->body[4].buf, big, sizeof big) == 0);
    parsed_free(p);
    free(p);
    sq__strbuf_free(&out);
    conn_close(&c);
}

TASK_TEST(respond_to_a_closed_peer_is_an_error_not_a_signal)
{
    conn c;
    conn_open(&c);
    sq_io_close(c.cli);
    c.cli = NULL;
    int rc = sq_http_respond(c.srv, 200, false, NULL, NULL, 0, "x", 1);
    CHECK(rc == -EPIPE || rc == -ECONNRESET);
    conn_close(&c);
}

static sq_http_request request_of(int minor, bool keep_alive)
{
    sq_http_request r = {.version_major = 1, .version_minor = minor,
                         .keep_alive = keep_alive};
    return r;
}

TASK_TEST(a_stream_is_written_in_chunks)
{
    conn c;
    conn_open(&c);
    sq_http_request req = request_of(1, true);
    const char *hs[] = {"Cache-Control: no-cache"};
    CHECK_EQ(sq_http_stream_begin(c.srv, &req, 200, "text/event-stream", hs, 1), 0);
    CHECK_EQ(sq_http_stream_chunk(c.srv, "data: 1\n\n", 9), 0);
    CHECK_EQ(sq_http_stream_chunk(c.srv, "", 0), 0); /* nothing, not the end */
    CHECK_EQ(sq_http_stream_chunk(c.srv, "0123456789abcdefg", 17), 0);
    CHECK_EQ(sq_http_stream_end(c.srv), 0);
    sq__strbuf out = SQ__STRBUF_INIT;
    written(&c, &out);
    expect_bytes(&out, "HTTP/1.1 200 OK\r\n"
                       "Cache-Control: no-cache\r\n"
                       "Content-Type: text/event-stream\r\n"
                       "Transfer-Encoding: chunked\r\n\r\n"
                       "9\r\ndata: 1\n\n\r\n"
                       "11\r\n0123456789abcdefg\r\n"
                       "0\r\n\r\n");
    sq__strbuf_free(&out);
    conn_close(&c);
}

TASK_TEST(streams_parse_back_with_llhttp)
{
    conn c;
    conn_open(&c);
    sq_http_request req = request_of(1, true);
    sq__strbuf want = SQ__STRBUF_INIT;
    CHECK_EQ(sq_http_stream_begin(c.srv, &req, 200, "text/plain", NULL, 0), 0);
    for (int i = 0; i < 200; i++) {
        char chunk[64];
        int n = snprintf(chunk, sizeof chunk, "chunk %d;\r\n", i);
        sq__strbuf_add(&want, chunk, (size_t)n);
        CHECK_EQ(sq_http_stream_chunk(c.srv, chunk, (size_t)n), 0);
    }
    CHECK_EQ(sq_http_stream_end(c.srv), 0);
    /* and the connection goes on: a second response after the stream */
    CHECK_EQ(sq_http_respond(c.srv, 200, false, NULL, NULL, 0, "next", 4), 0);
    sq__strbuf out = SQ__STRBUF_INIT;
    written(&c, &out);
    parsed *p = malloc(sizeof *p);
    CHECK_EQ(parse_responses(out.buf, out.len, p), HPE_OK);
    CHECK_EQ(p->n, 2);
    CHECK(p->chunked[0]);
    CHECK(p->keep_alive[0]);
    CHECK(streq(sq__strbuf_str(&p->body[0]), sq__strbuf_str(&want)));
    CHECK(streq(sq__strbuf_str(&p->body[1]), "next"));
    parsed_free(p);
    free(p);
    sq__strbuf_free(&want);
    sq__strbuf_free(&out);
    conn_close(&c);
}

/* Only the version of the request counts: a request made up by the
 * caller, with nothing but its version, gets a plain chunked stream. */
TASK_TEST(a_stream_depends_only_on_the_request_version)
{
    conn c;
    conn_open(&c);
    sq_http_request made_up = {.version_major = 1, .version_minor = 1};
    CHECK_EQ(sq_http_stream_begin(c.srv, &made_up, 200, NULL, NULL, 0), 0);
    CHECK_EQ(sq_http_stream_chunk(c.srv, "x", 1), 0);
    CHECK_EQ(sq_http_stream_end(c.srv), 0);
    CHECK_EQ(sq_http_stream_begin(c.srv, NULL, 200, NULL, NULL, 0), 0);
    CHECK_EQ(sq_http_stream_end(c.srv), 0);
    sq__strbuf out = SQ__STRBUF_INIT;
    written(&c, &out);
    expect_bytes(&out, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "1\r\nx\r\n0\r\n\r\n"
                       "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "0\r\n\r\n");
    sq__strbuf_free(&out);
    conn_close(&c);
}

/* HTTP/1.0 has no chunked encoding: the body runs to the end of the
 * connection, and stream_end ends it. */
TASK_TEST(a_stream_for_http10_is_delimited_by_closing)
{
    conn c, other;
    conn_open(&c);
    conn_open(&other);
    sq_http_request old = request_of(0, false), cur = request_of(1, true);
    CHECK_EQ(sq_http_stream_begin(c.srv, &old, 200, "text/plain", NULL, 0), 0);
    /* another connection streaming at the same time is chunked */
    CHECK_EQ(sq_http_stream_begin(other.srv, &cur, 200, NULL, NULL, 0), 0);
    CHECK_EQ(sq_http_stream_chunk(c.srv, "hello ", 6), 0);
    CHECK_EQ(sq_http_stream_chunk(other.srv, "ab", 2), 0);
    CHECK_EQ(sq_http_stream_chunk(c.srv, "world", 5), 0);
    CHECK_EQ(sq_http_stream_end(c.srv), 0);
    CHECK_EQ(sq_http_stream_end(other.srv), 0);
    sq__strbuf out = SQ__STRBUF_INIT;
    read_all(c.cli, &out); /* ends: stream_end shut the write side */
    expect_bytes(&out, "HTTP/1.1 200 OK\r\nConnection: close\r\n"
                       "Content-Type: text/plain\r\n\r\nhello world");
    parsed *p = malloc(sizeof *p);
    CHECK_EQ(parse_responses(out.buf, out.len, p), HPE_OK);
    CHECK_EQ(p->n, 1);
    CHECK(!p->chunked[0]);
    CHECK(streq(sq__strbuf_str(&p->body[0]), "hello world"));
    parsed_free(p);
    free(p);
    sq__strbuf_reset(&out);
    written(&other, &out);
    expect_bytes(&out, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "2\r\nab\r\n0\r\n\r\n");
    sq__strbuf_free(&out);
    conn_close(&c);
    conn_close(&other);
}

/* The same sq_io, later streaming to an HTTP/1.1 client, is chunked
 * again: stream_begin decides for each stream. */
TASK_TEST(each_stream_begin_decides_its_framing)
{
    conn c;
    conn_open(&c);
    sq_http_request old = request_of(0, false), cur = request_of(1, true);
    CHECK_EQ(sq_http_stream_begin(c.srv, &old, 200, NULL, NULL, 0), 0);
    CHECK_EQ(sq_http_stream_begin(c.srv, &cur, 200, NULL, NULL, 0), 0);
    CHECK_EQ(sq_http_stream_chunk(c.srv, "ab", 2), 0);
    CHECK_EQ(sq_http_stream_end(c.srv), 0);
    sq__strbuf out = SQ__STRBUF_INIT;
    written(&c, &out);
    CHECK(strstr(sq__strbuf_str(&out), "\r\n\r\n2\r\nab\r\n0\r\n\r\n") != NULL);
    sq__strbuf_free(&out);
    conn_close(&c);
}
