/* HTTP/1.1 requests, server side (sq_proto/http.h): the reader.
 *
 * llhttp does the parsing; this file feeds it the bytes of the
 * connection, keeps the deadlines and the head's byte limit, and hands
 * out complete requests.  http_head.c collects what llhttp reports and
 * enforces the rest of what llhttp leaves to its user: the other limits,
 * the versions and transfer codings we accept, and a stricter line
 * discipline for the request head.
 *
 * The parser pauses twice per request: at the end of the head (so that
 * the head's exact length is known, for its limit and for the line check,
 * and so the head is judged before any of the body is read) and at the
 * end of the message (so that one request is returned at a time; the
 * bytes after it stay buffered for the next call: pipelining).
 *
 * Everything about the request being read lives in the reader, not in the
 * caller's sq_http_request, so a read that returns -ECANCELED loses
 * nothing and the next call goes on where it stopped.
 */
#include "sq_proto/http.h"
#include "http_reader.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "squirrel/io.h"

#define DEFAULT_MAX_HEADER_BYTES ((size_t)16 * 1024)
#define DEFAULT_MAX_BODY_BYTES ((size_t)4 * 1024 * 1024)
#define DEFAULT_MAX_HEADERS 100
#define DEFAULT_HEADER_TIMEOUT (10 * SQ_SEC)
#define DEFAULT_BODY_TIMEOUT (30 * SQ_SEC)
#define DEFAULT_IDLE_TIMEOUT (60 * SQ_SEC)

/* Bytes read per system call.  The buffer only ever holds bytes llhttp
 * has not consumed yet (it copies what it reports into the request), so
 * its size bounds neither the head nor the body. */
#define READ_BUF_BYTES ((size_t)16 * 1024)
/* A body whose Content-Length is known is reserved up to this much at
 * once, so that a client announcing 4 MiB and sending nothing does not
 * get 4 MiB allocated for it. */
#define BODY_RESERVE_MAX ((size_t)64 * 1024)

static const char CONTINUE_100[] = "HTTP/1.1 100 Continue\r\n\r\n";

/* ------------------------------------------------------------ requests */

const char *sq_http_header_get(const sq_http_request *r, const char *name)
{
    for (size_t i = 0; i < r->nheaders; i++)
        if (strcasecmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    return NULL;
}

size_t sq_http_header_count(const sq_http_request *r, const char *name)
{
    size_t n = 0;
    for (size_t i = 0; i < r->nheaders; i++)
        n += strcasecmp(r->headers[i].name, name) == 0;
    return n;
}

/* A request's strings (target, path, header names and values) share one
 * allocation with its header array, which starts it; the body is its
 * own. */
void sq_http_request_free(sq_http_request *r)
{
    free(r->headers);
    free(r->body);
    memset(r, 0, sizeof *r);
}

/* -------------------------------------------------------------- limits */

static int64_t timeout_or(int64_t t, int64_t dflt)
{
    return t > 0 ? t : dflt;
}

/* now + timeout, SQ_FOREVER when that does not fit. */
static int64_t deadline_after(int64_t timeout)
{
    int64_t d;
    if (timeout == SQ_FOREVER || sq_deadline_in(timeout, &d) != 0)
        return SQ_FOREVER;
    return d;
}

int sq_http_reader_new(sq_http_reader **out, struct sq_io *io,
                       const sq_http_limits *lim)
{
    sq_http_reader *r = calloc(1, sizeof *r);
    if (!r || !(r->buf = malloc(READ_BUF_BYTES))) {
        free(r);
        return -ENOMEM;
    }
    sq_http_limits l = lim ? *lim : (sq_http_limits){0};
    r->lim.max_header_bytes = l.max_header_bytes ? l.max_header_bytes
                                                 : DEFAULT_MAX_HEADER_BYTES;
    r->lim.max_body_bytes = l.max_body_bytes ? l.max_body_bytes
                                             : DEFAULT_MAX_BODY_BYTES;
    r->lim.max_headers = l.max_headers > 0 ? l.max_headers : DEFAULT_MAX_HEADERS;
    r->lim.header_timeout = timeout_or(l.header_timeout, DEFAULT_HEADER_TIMEOUT);
    r->lim.body_timeout = timeout_or(l.body_timeout, DEFAULT_BODY_TIMEOUT);
    r->lim.idle_timeout = timeout_or(l.idle_timeout, DEFAULT_IDLE_TIMEOUT);
    r->io = io;
    llhttp_init(&r->parser, HTTP_REQUEST, sq__http_settings());
    r->parser.data = r;
    r->line_start = true;
    *out = r;
    return 0;
}

void sq_http_reader_free(sq_http_reader *r)
{
    if (!r)
        return;
    sq__strbuf_free(&r->url);
    sq__strbuf_free(&r->text);
    sq__strbuf_free(&r->body);
    free(r->hdrs);
    free(r->buf);
    free(r);
}

bool sq_http_reader_eof(const sq_http_reader *r)
{
    return r->eof;
}

void sq_http_reader_answer_continue(sq_http_reader *r, bool on)
{
    r->answer_continue = on;
}

/* Forgets the request just returned or abandoned; the parser and the
 * unparsed bytes stay. */
static void next_request(sq_http_reader *r)
{
    r->begun = r->head_started = r->headers_done = r->head_checked = false;
    r->complete = r->continue_sent = r->kick = false;
    r->fail = 0;
    r->head_bytes = r->body_raw = 0;
    r->prev_cr = r->method_done = false;
    r->method_len = 0;
    r->line_start = true;
    sq__strbuf_reset(&r->url);
    sq__strbuf_reset(&r->text);
    sq__strbuf_free(&r->body); /* its text went to the request */
    r->nhdrs = 0;
    r->hs = HS_NONE;
    r->trailer_bytes = r->ntrailers = 0;
}


/* ------------------------------------------------------------- reading */

enum { FEED_MORE = 0, FEED_DONE = 1 };

/* Runs the parser over the buffered bytes: FEED_DONE when a request is
 * complete, FEED_MORE when it needs more bytes, or a status (>= 400) to
 * fail with.  While the head is being read, llhttp is given no more than
 * the head may still take, so the head's limit is exact. */
static int feed(sq_http_reader *r)
{
    for (;;) {
        const char *data = r->buf + r->start;
        size_t avail = r->end - r->start, n = avail;
        bool head = !r->headers_done;
        if (head) {
            size_t room = r->lim.max_header_bytes - r->head_bytes;
            if (room == 0)
                return 431;
            if (n > room)
                n = room;
            if (n > 0 && !r->head_started) {
                r->head_started = true;
                r->head_deadline = deadline_after(r->lim.header_timeout);
            }
        }
        if (n == 0 && !r->kick)
            return FEED_MORE;
        r->kick = false;
        llhttp_errno_t e = llhttp_execute(&r->parser, data, n);
        size_t used = n;
        if (e != HPE_OK)
            used = (size_t)(llhttp_get_error_pos(&r->parser) - data);
        r->start += used;
        if (head) {
            r->head_bytes += used;
            if (!sq__http_head_lines_ok(r, data, used))
                return 400;
        } else {
            r->body_raw += used;
        }
        if (r->fail)
            return r->fail;
        switch (e) {
        case HPE_OK:
            if (used < avail)
                continue; /* the head is at its limit: fails above */
            return FEED_MORE;
        case HPE_PAUSED:
            llhttp_resume(&r->parser);
            if (r->complete)
                return FEED_DONE;
            if (r->headers_done && !r->head_checked) {
                int st = sq__http_check_head(r);
                if (st)
                    return st;
                r->head_checked = true;
                r->body_deadline = deadline_after(r->lim.body_timeout);
                if (r->parser.flags & F_CONTENT_LENGTH)
                    sq__strbuf_reserve(&r->body,
                                       r->parser.content_length < BODY_RESERVE_MAX
                                           ? (size_t)r->parser.content_length
                                           : BODY_RESERVE_MAX);
                r->kick = true; /* a request without body completes now */
            }
            continue;
        case HPE_PAUSED_UPGRADE:
            /* The request before asked for an upgrade, which its response
             * declined (RFC 9110 7.8 lets a server ignore Upgrade): the
             * connection goes on in HTTP/1.1. */
            llhttp_resume_after_upgrade(&r->parser);
            continue;
        default:
            return sq__http_status_of(r, e, used < n ? data[used] : '\0');
        }
    }
}

/* Moves the complete request into *req: one allocation for the header
 * array and every string, the body's own. */
static int deliver(sq_http_reader *r, sq_http_request *req)
{
    llhttp_t *p = &r->parser;
    if (r->url.failed || r->text.failed || r->body.failed)
        return -ENOMEM;
    const char *url = sq__strbuf_str(&r->url);
    size_t ulen = r->url.len, plen = strcspn(url, "?");
    size_t harr = r->nhdrs * sizeof(sq_http_header);
    size_t size = harr + ulen + 1 + plen + 1 + r->text.len + 1;
    size_t body_len = r->body.len;
    char *block = malloc(size);
    char *body = sq__strbuf_take(&r->body);
    if (!block || !body) {
        free(block);
        free(body);
        return -ENOMEM;
    }
    body[body_len] = '\0'; /* reserved but never appended to: no NUL yet */
    sq_http_header *h = (sq_http_header *)(void *)block;
    char *s = block + harr;
    req->target = memcpy(s, url, ulen + 1);
    s += ulen + 1;
    req->path = memcpy(s, url, plen);
    req->path[plen] = '\0';
    s += plen + 1;
    memcpy(s, sq__strbuf_str(&r->text), r->text.len + 1);
    for (size_t i = 0; i < r->nhdrs; i++) {
        h[i].name = s + r->hdrs[i].name;
        h[i].value = s + r->hdrs[i].value;
        h[i].value_len = r->hdrs[i].value_len;
    }
    req->headers = h;
    req->nheaders = r->nhdrs;
    snprintf(req->method, sizeof req->method, "%s",
             llhttp_method_name((llhttp_method_t)p->method));
    req->version_major = p->http_major;
    req->version_minor = p->http_minor;
    req->keep_alive = r->keep_alive;
    req->chunked = (p->flags & F_CHUNKED) != 0;
    req->body = body;
    req->body_len = body_len;
    return 1;
}

/* The deadline of the next read: waiting for a request, its head, or its
 * body. */
static int64_t read_deadline(const sq_http_reader *r, int64_t idle)
{
    if (r->headers_done)
        return r->body_deadline;
    return r->head_started ? r->head_deadline : idle;
}

/* Makes room at the end of the buffer, keeping the unparsed bytes. */
static void make_room(sq_http_reader *r)
{
    if (r->start == r->end) {
        r->start = r->end = 0;
    } else if (r->end == READ_BUF_BYTES) {
        memmove(r->buf, r->buf + r->start, r->end - r->start);
        r->end -= r->start;
        r->start = 0;
    }
}

static int give_up(sq_http_reader *r, int status, int *status_out)
{
    r->dead = status;
    *status_out = status;
    return -EPROTO;
}

/* Errors of a read that say nothing about the connection. */
static bool read_error_is_local(ssize_t n)
{
    return n == -ECANCELED || n == -EBUSY || n == -EPERM || n == -EINVAL;
}

int sq_http_read(sq_http_reader *r, sq_http_request *req, int *status_out)
{
    int ignored;
    if (!status_out)
        status_out = &ignored;
    memset(req, 0, sizeof *req);
    *status_out = 0;
    if (r->dead)
        return give_up(r, r->dead, status_out);
    if (r->done)
        return 0;
    int64_t idle = deadline_after(r->lim.idle_timeout);
    for (;;) {
        int st = feed(r);
        if (st == FEED_DONE) {
            int rc = deliver(r, req);
            if (rc < 0) {
                r->dead = 500; /* the request is lost: no going on */
                return rc;
            }
            r->done = !req->keep_alive;
            next_request(r);
            return 1;
        }
        if (st != FEED_MORE)
            return give_up(r, st, status_out);
        if (r->head_checked && !r->continue_sent && r->answer_continue &&
            r->body_raw == 0 && r->start == r->end &&
            sq__http_expects_continue(r)) {
            r->continue_sent = true;
            ssize_t w = sq_io_write(r->io, CONTINUE_100, sizeof CONTINUE_100 - 1);
            if (w < 0)
                return (int)w;
        }
        if (r->eof) {
            if (r->begun)
                return give_up(r, 400, status_out); /* cut short */
            return 0;
        }
        make_room(r);
        int64_t deadline = read_deadline(r, idle);
        ssize_t n = sq_io_read_until(r->io, r->buf + r->end,
                                     READ_BUF_BYTES - r->end, deadline);
        if (n > 0) {
            r->end += (size_t)n;
        } else if (n == 0) {
            r->eof = true;
        } else if (n == -ETIMEDOUT && sq_now() >= deadline) {
            /* Our deadline.  (An ETIMEDOUT before it is the socket's:
             * a dead TCP peer, an error of the connection, below.) */
            if (!r->head_started) {
                *status_out = 408; /* idle: nothing of a request yet */
                return 0;
            }
            return give_up(r, 408, status_out);
        } else {
            if (!read_error_is_local(n))
                r->eof = true;
            return (int)n;
        }
    }
}
