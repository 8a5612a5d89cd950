/* Helpers of the HTTP reader tests: requests sent on a fresh connection
 * and read back, or refused with a status.  Header-only. */
#ifndef SQ_HTTP_TESTUTIL_H
#define SQ_HTTP_TESTUTIL_H

#include <stdio.h>
#include <string.h>

#include "proto_testutil.h"
#include "sq_proto/http.h"

/* Limits whose deadlines fail a reader that waits for bytes which never
 * come (408) instead of hanging the test; every test below sends its
 * bytes before it reads, so the deadlines never matter otherwise. */
static inline sq_http_limits quick(void)
{
    return (sq_http_limits){.header_timeout = 5 * SQ_SEC,
                            .body_timeout = 5 * SQ_SEC,
                            .idle_timeout = 5 * SQ_SEC};
}

/* A connection that has carried `text`, and a reader on it. */
static inline sq_http_reader *reader_after(conn *c, const char *text,
                                    const sq_http_limits *lim)
{
    conn_open(c);
    send_str(c->cli, text);
    sq_http_reader *r = NULL;
    CHECK_EQ(sq_http_reader_new(&r, c->srv, lim), 0);
    return r;
}

static inline void reader_done(conn *c, sq_http_reader *r)
{
    sq_http_reader_free(r);
    conn_close(c);
}

/* Sends len bytes of text on a fresh connection (closing the sending side
 * after them if `eof`) and reads one request. */
static inline int read_from(const char *text, size_t len, bool eof,
                     const sq_http_limits *lim, sq_http_request *req,
                     int *status)
{
    conn c;
    conn_open(&c);
    send_bytes(c.cli, text, len);
    if (eof)
        CHECK_EQ(sq_io_shutdown_write(c.cli), 0);
    sq_http_reader *r;
    CHECK_EQ(sq_http_reader_new(&r, c.srv, lim), 0);
    int rc = sq_http_read(r, req, status);
    reader_done(&c, r);
    return rc;
}

static inline void show(const char *text)
{
    fputs("    request: ", stderr);
    for (const char *p = text; *p; p++) {
        if (*p == '\r')
            fputs("\\r", stderr);
        else if (*p == '\n')
            fputs("\\n", stderr);
        else if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            fprintf(stderr, "\\x%02x", (unsigned char)*p);
        else
            fputc(*p, stderr);
    }
    fputc('\n', stderr);
}

/* The request in text, sent whole, is refused with `status`. */
static inline void expect_refused_with(const sq_http_limits *lim, const char *text,
                                int status)
{
    sq_http_request req;
    int st = -1;
    int rc = read_from(text, strlen(text), false, lim, &req, &st);
    if (rc != -EPROTO || st != status)
        show(text);
    CHECK_EQ(rc, -EPROTO);
    CHECK_EQ(st, status);
    sq_http_request_free(&req);
}

static inline void expect_refused(const char *text, int status)
{
    sq_http_limits lim = quick();
    expect_refused_with(&lim, text, status);
}

/* The request in text, sent whole, is read. */
static inline void expect_read_with(const sq_http_limits *lim, const char *text,
                             sq_http_request *req)
{
    int st = -1;
    int rc = read_from(text, strlen(text), false, lim, req, &st);
    if (rc != 1)
        show(text);
    CHECK_EQ(rc, 1);
    CHECK_EQ(st, 0);
}

static inline void expect_read(const char *text, sq_http_request *req)
{
    sq_http_limits lim = quick();
    expect_read_with(&lim, text, req);
}

static inline bool streq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

#endif
