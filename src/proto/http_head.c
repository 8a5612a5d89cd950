/* The head of an HTTP request (src/proto/http_reader.h): llhttp's
 * callbacks collect the request line and the header fields into the
 * reader, counting them against the limits; then the complete head is
 * judged (what llhttp accepts and we do not), and llhttp's errors are
 * mapped to statuses.  docs/proto.md has the table.
 */
#include "http_reader.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

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

const llhttp_settings_t *sq__http_settings(void)
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
bool sq__http_head_lines_ok(sq_http_reader *r, const char *p, size_t n)
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
int sq__http_check_head(sq_http_reader *r)
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
bool sq__http_expects_continue(const sq_http_reader *r)
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
int sq__http_status_of(const sq_http_reader *r, llhttp_errno_t e, char at)
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
