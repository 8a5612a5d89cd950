/* HTTP/1.1 requests, server side (sq_proto/http.h): the reader.
 *
 * llhttp does the parsing; this file feeds it the bytes of the
 * connection, collects what its callbacks report into the request being
 * read, and enforces what llhttp leaves to its user: the size and count
 * limits, the deadlines, the versions and transfer codings we accept, and
 * a stricter line discipline for the request head.
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

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "llhttp.h"
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

/* Where a header stands in r->text (offsets: the text may move). */
typedef struct hdr_off {
    size_t name, value, value_len;
} hdr_off;

enum hdr_state { HS_NONE, HS_FIELD, HS_VALUE };

struct sq_http_reader {
    struct sq_io *io;
    sq_http_limits lim;
    llhttp_t parser;
    bool answer_continue; /* sq_http_reader_answer_continue */

    char *buf;            /* unparsed bytes: [start, end) */
    size_t start, end;
    bool eof;             /* the peer closed, or the connection failed */
    int dead;             /* nonzero: the status of the failure (-EPROTO) */
    bool done;            /* the last request ended the connection */

    /* The request being read. */
    bool begun;           /* llhttp saw its first byte (not a blank line) */
    bool head_started;    /* some byte of it was parsed: header deadline on */
    bool headers_done, head_checked, complete, continue_sent;
    bool kick;            /* run the parser once even without bytes */
    int fail;             /* status a callback failed with */
    size_t head_bytes;    /* of the head, parsed so far */
    size_t body_raw;      /* bytes parsed after the head (with framing) */
    bool prev_cr, line_start; /* line discipline of the head */
    bool method_done;     /* past the request line's first token, */
    size_t method_len;    /* of that many bytes */
    int64_t head_deadline, body_deadline;
    sq__strbuf url, text, body;
    hdr_off *hdrs;
    size_t nhdrs, cap_hdrs;
    enum hdr_state hs;
    size_t trailer_bytes, ntrailers;
    bool keep_alive;
};

static const llhttp_settings_t *settings(void);

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
    llhttp_init(&r->parser, HTTP_REQUEST, settings());
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

/* ----------------------------------------------------- llhttp callbacks */

static sq_http_reader *of(llhttp_t *p)
{
    return p->data;
}

/* Fails the request from a callback: the status to answer, and the value
 * that makes llhttp stop (any error; the status is what counts). */
static int fail_cb(sq_http_reader *r, int status)
{
    if (!r->fail)
        r->fail = status;
    return HPE_USER;
}

static int on_message_begin(llhttp_t *p)
{
    of(p)->begun = true;
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n)
{
    sq__strbuf_add(&of(p)->url, at, n);
    return 0;
}

/* Trailer fields (after a chunked body) are read and dropped, within the
 * head's limits. */
static int trailer_bytes(sq_http_reader *r, size_t n)
{
    r->trailer_bytes += n;
    return r->trailer_bytes > r->lim.max_header_bytes ? fail_cb(r, 431) : 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t n)
{
    sq_http_reader *r = of(p);
    if (r->headers_done)
        return trailer_bytes(r, n);
    if (r->hs != HS_FIELD) {
        if (r->nhdrs == (size_t)r->lim.max_headers)
            return fail_cb(r, 431);
        if (r->nhdrs == r->cap_hdrs) {
            size_t cap = r->cap_hdrs ? r->cap_hdrs * 2 : 16;
            hdr_off *h = realloc(r->hdrs, cap * sizeof *h);
            if (!h)
                return fail_cb(r, 500);
            r->hdrs = h;
            r->cap_hdrs = cap;
        }
        r->hdrs[r->nhdrs++] = (hdr_off){.name = r->text.len};
        r->hs = HS_FIELD;
    }
    sq__strbuf_add(&r->text, at, n);
    return 0;
}

static int on_header_field_complete(llhttp_t *p)
{
    sq_http_reader *r = of(p);
    if (r->headers_done) {
        if (++r->ntrailers > (size_t)r->lim.max_headers)
            return fail_cb(r, 431);
        return 0;
    }
    if (r->hs != HS_FIELD)
        return fail_cb(r, 400); /* a field with an empty name */
    hdr_off *h = &r->hdrs[r->nhdrs - 1];
    if (r->text.len == h->name)
        return fail_cb(r, 400);
    if (r->text.failed)
        return fail_cb(r, 500);
    for (size_t i = h->name; i < r->text.len; i++)
        if (r->text.buf[i] >= 'A' && r->text.buf[i] <= 'Z')
            r->text.buf[i] = (char)(r->text.buf[i] - 'A' + 'a');
    sq__strbuf_putc(&r->text, '\0');
    h->value = r->text.len;
    r->hs = HS_VALUE;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n)
{
    sq_http_reader *r = of(p);
    if (r->headers_done)
        return trailer_bytes(r, n);
    if (r->hs != HS_VALUE)
        return fail_cb(r, 400);
    sq__strbuf_add(&r->text, at, n);
    return 0;
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static bool is_tchar(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static int on_header_value_complete(llhttp_t *p)
{
    sq_http_reader *r = of(p);
    if (r->headers_done)
        return 0;
    if (r->hs != HS_VALUE)
        return fail_cb(r, 400);
    if (r->text.failed)
        return fail_cb(r, 500);
    hdr_off *h = &r->hdrs[r->nhdrs - 1];
    size_t a = h->value, b = r->text.len;
    while (a < b && is_ows(r->text.buf[a]))
        a++;
    while (b > a && is_ows(r->text.buf[b - 1]))
        b--;
    h->value = a;
    h->value_len = b - a;
    r->text.len = b;
    sq__strbuf_putc(&r->text, '\0');
    r->hs = HS_NONE;
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    sq_http_reader *r = of(p);
    if (r->hs != HS_NONE)
        return fail_cb(r, 400);
    r->headers_done = true;
    return HPE_PAUSED; /* judged by check_head, outside llhttp */
}

/* Chunked bodies count against the limit as each chunk is announced. */
static int on_chunk_header(llhttp_t *p)
{
    sq_http_reader *r = of(p);
    if (p->content_length > r->lim.max_body_bytes - r->body.len)
        return fail_cb(r, 413);
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n)
{
    sq_http_reader *r = of(p);
    if (n > r->lim.max_body_bytes - r->body.len)
        return fail_cb(r, 413);
    sq__strbuf_add(&r->body, at, n);
    return r->body.failed ? fail_cb(r, 500) : 0;
}

static int on_message_complete(llhttp_t *p)
{
    sq_http_reader *r = of(p);
    r->complete = true;
    /* HTTP/1.0 connections carry one request: we do not answer with the
     * "Connection: keep-alive" such a client would need to keep it. */
    r->keep_alive = llhttp_should_keep_alive(p) && p->http_major == 1 &&
                    p->http_minor >= 1;
    return HPE_PAUSED;
}

static const llhttp_settings_t *settings(void)
{
    static const llhttp_settings_t s = {
        .on_message_begin = on_message_begin,
        .on_url = on_url,
        .on_header_field = on_header_field,
        .on_header_value = on_header_value,
        .on_header_field_complete = on_header_field_complete,
        .on_header_value_complete = on_header_value_complete,
        .on_headers_complete = on_headers_complete,
        .on_chunk_header = on_chunk_header,
        .on_body = on_body,
        .on_message_complete = on_message_complete,
    };
    return &s;
}

/* ------------------------------------------------------------- the head */

/* The line discipline of the head, stricter than llhttp's: every line
 * ends with CRLF (a bare CR or a bare LF is refused: they are how header
 * injection and request smuggling split lines differently in two
 * parsers), and no line starts with whitespace (obsolete line folding,
 * which RFC 9112 lets a server refuse).  Runs over the head's bytes as
 * llhttp consumes them, so it carries its state across calls. */
static bool head_lines_ok(sq_http_reader *r, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (r->prev_cr != (c == '\n'))
            return false;
        if (r->line_start && is_ows(c))
            return false;
        if (!r->method_done) { /* the method's length, for status_of */
            if (is_tchar(c))
                r->method_len++;
            else if (r->method_len > 0 || (c != '\r' && c != '\n'))
                r->method_done = true;
        }
        r->prev_cr = c == '\r';
        r->line_start = c == '\n';
    }
    return true;
}

/* The value of every header named name, as one list: true if each of its
 * comma-separated elements is `want` (case-insensitive), counting them. */
static bool only_elements(const sq_http_reader *r, const char *name,
                          const char *want, int *count)
{
    size_t wl = strlen(want);
    *count = 0;
    for (size_t i = 0; i < r->nhdrs; i++) {
        const char *v = r->text.buf + r->hdrs[i].value;
        if (strcmp(r->text.buf + r->hdrs[i].name, name) != 0)
            continue;
        while (*v) {
            const char *e = strchr(v, ',');
            size_t len = e ? (size_t)(e - v) : strlen(v);
            const char *s = v;
            while (len && is_ows(*s))
                s++, len--;
            while (len && is_ows(s[len - 1]))
                len--;
            if (len) {
                if (len != wl || strncasecmp(s, want, wl) != 0)
                    return false;
                ++*count;
            }
            v = e ? e + 1 : v + strlen(v);
        }
    }
    return true;
}

static const char *find_header(const sq_http_reader *r, const char *name)
{
    for (size_t i = 0; i < r->nhdrs; i++)
        if (strcmp(r->text.buf + r->hdrs[i].name, name) == 0)
            return r->text.buf + r->hdrs[i].value;
    return NULL;
}

/* Judges a complete head: 0 to read the body, or the status to fail
 * with.  What llhttp accepts but we do not: versions other than 1.0 and
 * 1.1 (llhttp lets 0.9 and 2.0 through), CONNECT (we are no proxy),
 * transfer codings other than chunked (we could not decode the body),
 * Transfer-Encoding in HTTP/1.0 (RFC 9112 6.1: its framing is not to be
 * trusted), and a Content-Length over the body limit (refused before a
 * byte of the body is read). */
static int check_head(sq_http_reader *r)
{
    llhttp_t *p = &r->parser;
    if (r->text.failed || r->url.failed)
        return 500;
    if (p->http_major != 1 || p->http_minor > 1)
        return 505;
    if (p->method == HTTP_CONNECT)
        return 501;
    if (p->flags & F_TRANSFER_ENCODING) {
        int n;
        if (p->http_minor == 0)
            return 400;
        if (!only_elements(r, "transfer-encoding", "chunked", &n))
            return 501;
        if (n != 1)
            return 400;
    }
    if ((p->flags & F_CONTENT_LENGTH) &&
        p->content_length > r->lim.max_body_bytes)
        return 413;
    if (r->url.len == 0)
        return 400;
    return 0;
}

/* True when the client waits for "100 Continue" before sending a body. */
static bool expects_continue(const sq_http_reader *r)
{
    const llhttp_t *p = &r->parser;
    const char *e = find_header(r, "expect");
    bool body = (p->flags & F_CHUNKED) ||
                ((p->flags & F_CONTENT_LENGTH) && p->content_length > 0);
    return e && strcasecmp(e, "100-continue") == 0 && body &&
           p->http_minor >= 1;
}

/* The status of an llhttp error; `at` is the byte it stopped at.  llhttp
 * reports any bad request line as a bad method or version; only a
 * well-formed one we do not know is 501 or 505: a method, when llhttp
 * stopped inside a token at the start of the line, or at the space after
 * it; a version, when it read HTTP/<digit>.<digit> and the digits are
 * not 1.0 or 1.1 (anything else about the version leaves them as 1.x, or
 * 0.0 before any version was read). */
static int status_of(const sq_http_reader *r, llhttp_errno_t e, char at)
{
    const llhttp_t *p = &r->parser;
    switch (e) {
    case HPE_INVALID_METHOD:
        return is_tchar(at) || (at == ' ' && r->method_len > 0) ? 501 : 400;
    case HPE_INVALID_VERSION:
        return (p->http_major == 1 && p->http_minor <= 1) ||
                       (p->http_major == 0 && p->http_minor == 0)
                   ? 400
                   : 505;
    case HPE_PAUSED_H2_UPGRADE: /* "PRI * HTTP/2.0": the HTTP/2 preface */
        return 505;
    default:
        return 400;
    }
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
            if (!head_lines_ok(r, data, used))
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
                int st = check_head(r);
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
            return status_of(r, e, used < n ? data[used] : '\0');
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
            r->body_raw == 0 && r->start == r->end && expects_continue(r)) {
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
