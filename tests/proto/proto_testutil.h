/* Helpers of the proto tests: connected socket pairs through sq_io, and
 * HTTP responses parsed back with llhttp.  Header-only (each test file is
 * its own program). */
#ifndef SQ_PROTO_TESTUTIL_H
#define SQ_PROTO_TESTUTIL_H

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "llhttp.h"
#include "sq_base/strbuf.h"
#include "squirrel/io.h"
#include "testlib.h"

/* A test body run as the root task of a two-worker runtime. */
#define TASK_TEST(name)                                                \
    static void name##_body(void);                                     \
    static void *name##_task(void *arg)                                \
    {                                                                  \
        (void)arg;                                                     \
        name##_body();                                                 \
        return NULL;                                                   \
    }                                                                  \
    TEST(name) { sq_test_run(2, name##_task, NULL); }                  \
    static void name##_body(void)

/* Both ends of a connected Unix stream socket pair. */
typedef struct conn {
    sq_io *srv, *cli;
} conn;

static inline void conn_open(conn *c)
{
    int fds[2];
    c->srv = c->cli = NULL;
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    CHECK_EQ(sq_io_adopt(&c->srv, fds[0]), 0);
    CHECK_EQ(sq_io_adopt(&c->cli, fds[1]), 0);
}

static inline void conn_close(conn *c)
{
    if (c->srv)
        sq_io_close(c->srv);
    if (c->cli)
        sq_io_close(c->cli);
    c->srv = c->cli = NULL;
}

static inline void send_bytes(sq_io *io, const void *p, size_t n)
{
    CHECK_EQ(sq_io_write(io, p, n), (long long)n);
}

static inline void send_str(sq_io *io, const char *s)
{
    send_bytes(io, s, strlen(s));
}

/* Bytes waiting in the kernel to be read from io's socket. */
static inline int pending(sq_io *io)
{
    int n = 0;
    ioctl(sq_io_fd(io), FIONREAD, &n);
    return n;
}

/* Reads io to the end of the stream into b. */
static inline void read_all(sq_io *io, sq__strbuf *b)
{
    char buf[4096];
    for (;;) {
        ssize_t n = sq_io_read(io, buf, sizeof buf);
        CHECK(n >= 0);
        if (n <= 0)
            return;
        sq__strbuf_add(b, buf, (size_t)n);
    }
}

/* Reads exactly n bytes of io into buf (false at an early end). */
static inline bool read_exact(sq_io *io, char *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = sq_io_read(io, buf + got, n - got);
        if (r <= 0)
            return false;
        got += (size_t)r;
    }
    return true;
}

/* ------------------------------------------- responses, parsed by llhttp */

#define MAX_PARSED 128

typedef struct parsed {
    int n; /* complete responses */
    int status[MAX_PARSED];
    bool keep_alive[MAX_PARSED], chunked[MAX_PARSED], has_length[MAX_PARSED];
    sq__strbuf body[MAX_PARSED];
    sq__strbuf head[MAX_PARSED]; /* "name: value\n" per header, as sent */
    bool in_value;
} parsed;

static inline parsed *parsed_of(llhttp_t *p)
{
    return p->data;
}

static inline int pr_field(llhttp_t *p, const char *at, size_t n)
{
    parsed *r = parsed_of(p);
    if (r->n >= MAX_PARSED)
        return -1;
    if (r->in_value)
        sq__strbuf_putc(&r->head[r->n], '\n');
    r->in_value = false;
    sq__strbuf_add(&r->head[r->n], at, n);
    return 0;
}

static inline int pr_value(llhttp_t *p, const char *at, size_t n)
{
    parsed *r = parsed_of(p);
    if (!r->in_value)
        sq__strbuf_puts(&r->head[r->n], ": ");
    r->in_value = true;
    sq__strbuf_add(&r->head[r->n], at, n);
    return 0;
}

static inline int pr_headers_complete(llhttp_t *p)
{
    parsed *r = parsed_of(p);
    if (r->in_value)
        sq__strbuf_putc(&r->head[r->n], '\n');
    r->in_value = false;
    r->status[r->n] = p->status_code;
    r->chunked[r->n] = (p->flags & F_CHUNKED) != 0;
    r->has_length[r->n] = (p->flags & F_CONTENT_LENGTH) != 0;
    return 0;
}

static inline int pr_body(llhttp_t *p, const char *at, size_t n)
{
    parsed *r = parsed_of(p);
    sq__strbuf_add(&r->body[r->n], at, n);
    return 0;
}

static inline int pr_message_complete(llhttp_t *p)
{
    parsed *r = parsed_of(p);
    r->keep_alive[r->n] = llhttp_should_keep_alive(p);
    if (!r->body[r->n].buf)
        sq__strbuf_puts(&r->body[r->n], "");
    r->n++;
    return 0;
}

/* Parses the bytes of a connection's responses (the whole stream: a body
 * delimited by closing ends at len).  Returns llhttp's verdict, HPE_OK
 * when every byte made sense. */
static inline llhttp_errno_t parse_responses(const char *bytes, size_t len,
                                             parsed *out)
{
    llhttp_settings_t s; /* outlives the parser, which is local too */
    llhttp_settings_init(&s);
    s.on_header_field = pr_field;
    s.on_header_value = pr_value;
    s.on_headers_complete = pr_headers_complete;
    s.on_body = pr_body;
    s.on_message_complete = pr_message_complete;
    memset(out, 0, sizeof *out);
    llhttp_t p;
    llhttp_init(&p, HTTP_RESPONSE, &s);
    p.data = out;
    llhttp_errno_t e = llhttp_execute(&p, bytes, len);
    if (e == HPE_OK)
        e = llhttp_finish(&p);
    return e;
}

static inline void parsed_free(parsed *r)
{
    for (int i = 0; i < MAX_PARSED; i++) {
        sq__strbuf_free(&r->body[i]);
        sq__strbuf_free(&r->head[i]);
    }
}

#endif
