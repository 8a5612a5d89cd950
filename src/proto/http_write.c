/* HTTP/1.1 responses (sq_proto/http.h): heads built in a string buffer,
 * whole responses in one writev, and streamed bodies in chunked encoding
 * (or delimited by closing, for HTTP/1.0 clients).
 *
 * Header names and values are written as given, except that CR and LF in
 * them become spaces: a value taken from a request (an id, a session)
 * can never split the head into lines of its own (response splitting).
 */
#include "sq_proto/http.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "oneline.h"
#include "sq_base/spin.h"
#include "squirrel/io.h"

const char *sq_http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 205: return "Reset Content";
    case 206: return "Partial Content";
    case 300: return "Multiple Choices";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 407: return "Proxy Authentication Required";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 425: return "Too Early";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 451: return "Unavailable For Legal Reasons";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    case 507: return "Insufficient Storage";
    case 511: return "Network Authentication Required";
    }
    switch (status / 100) {
    case 1: return "Informational";
    case 2: return "Success";
    case 3: return "Redirection";
    case 4: return "Client Error";
    case 5: return "Server Error";
    }
    return "Unknown";
}

/* ---------------------------------------------------------------- heads */

void sq_http_begin(sq__strbuf *b, int status, bool close)
{
    sq__strbuf_printf(b, "HTTP/1.1 %03d %s\r\n", status, sq_http_reason(status));
    if (close)
        sq__strbuf_puts(b, "Connection: close\r\n");
}

void sq_http_add_header(sq__strbuf *b, const char *name, const char *value)
{
    sq__add_oneline(b, name);
    sq__strbuf_puts(b, ": ");
    sq__add_oneline(b, value);
    sq__strbuf_puts(b, "\r\n");
}

void sq_http_end_headers(sq__strbuf *b, size_t len)
{
    if (len == SQ_HTTP_CHUNKED)
        sq__strbuf_puts(b, "Transfer-Encoding: chunked\r\n");
    else
        sq__strbuf_printf(b, "Content-Length: %zu\r\n", len);
    sq__strbuf_puts(b, "\r\n");
}

/* The caller's "Name: value" lines and the Content-Type. */
static void add_lines(sq__strbuf *b, const char *content_type,
                      const char *const *headers, size_t n)
{
    for (size_t i = 0; headers && i < n; i++) {
        sq__add_oneline(b, headers[i]);
        sq__strbuf_puts(b, "\r\n");
    }
    if (content_type)
        sq_http_add_header(b, "Content-Type", content_type);
}

/* Responses that never have a body, nor a Content-Length (RFC 9110 8.6:
 * 1xx and 204; a 304's length would describe another response). */
static bool bodiless(int status)
{
    return status < 200 || status == 204 || status == 304;
}

/* ---------------------------------------------------------------- writes */

/* Writes every byte of iov, or returns the error that stopped it.  A
 * short count from sq_io_writev means an error or a cancellation stopped
 * it after some bytes; writing the rest reports which (cancellation is
 * sticky, errors of the socket are too) or, if cancellation is masked,
 * finishes the job. */
static int write_all(struct sq_io *io, struct iovec *iov, int n)
{
    while (n > 0) {
        ssize_t w = sq_io_writev(io, iov, n);
        if (w < 0)
            return (int)w;
        size_t left = (size_t)w;
        while (n > 0 && left >= iov->iov_len) {
            left -= iov->iov_len;
            iov++, n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + left;
            iov->iov_len -= left;
        }
    }
    return 0;
}

int sq_http_respond(struct sq_io *io, int status, bool close,
                    const char *content_type, const char *const *headers,
                    size_t n, const void *body, size_t len)
{
    sq__strbuf b = SQ__STRBUF_INIT;
    if (bodiless(status))
        len = 0;
    sq_http_begin(&b, status, close);
    add_lines(&b, content_type, headers, n);
    if (bodiless(status))
        sq__strbuf_puts(&b, "\r\n");
    else
        sq_http_end_headers(&b, len);
    if (sq__strbuf_failed(&b)) {
        sq__strbuf_free(&b);
        return -ENOMEM;
    }
    struct iovec iov[2] = {{b.buf, b.len}, {(void *)body, len}};
    int rc = write_all(io, iov, len ? 2 : 1);
    sq__strbuf_free(&b);
    return rc;
}

/* ------------------------------------------------------------- streaming */

/* The connections whose streamed body is delimited by closing (HTTP/1.0
 * clients), so that sq_http_stream_chunk, which is given only the sq_io,
 * writes their chunks bare.  A set of pointers: stream_begin puts a
 * connection in or takes it out, stream_end and a failed write take it
 * out.  A stream abandoned without either leaves its pointer behind,
 * harmlessly: the next stream_begin on an sq_io at that address decides
 * again.  Rare (no MCP client speaks HTTP/1.0), so it is a plain array
 * under a spin lock, and the common case looks at one counter only. */
static sq__spin raw_lock;
static struct sq_io **raw_set;
static size_t raw_n, raw_cap;
static atomic_size_t raw_count;

static bool raw_has(struct sq_io *io)
{
    if (atomic_load_explicit(&raw_count, memory_order_acquire) == 0)
        return false;
    bool found = false;
    sq__spin_lock(&raw_lock);
    for (size_t i = 0; i < raw_n && !found; i++)
        found = raw_set[i] == io;
    sq__spin_unlock(&raw_lock);
    return found;
}

static void raw_remove(struct sq_io *io)
{
    if (atomic_load_explicit(&raw_count, memory_order_acquire) == 0)
        return;
    sq__spin_lock(&raw_lock);
    for (size_t i = 0; i < raw_n; i++) {
        if (raw_set[i] == io) {
            raw_set[i] = raw_set[--raw_n];
            atomic_store_explicit(&raw_count, raw_n, memory_order_release);
            break;
        }
    }
    sq__spin_unlock(&raw_lock);
}

static int raw_add(struct sq_io *io)
{
    raw_remove(io);
    sq__spin_lock(&raw_lock);
    if (raw_n == raw_cap) {
        size_t cap = raw_cap ? raw_cap * 2 : 8;
        struct sq_io **s = realloc(raw_set, cap * sizeof *s);
        if (!s) {
            sq__spin_unlock(&raw_lock);
            return -ENOMEM;
        }
        raw_set = s;
        raw_cap = cap;
    }
    raw_set[raw_n++] = io;
    atomic_store_explicit(&raw_count, raw_n, memory_order_release);
    sq__spin_unlock(&raw_lock);
    return 0;
}

int sq_http_stream_begin(struct sq_io *io, const sq_http_request *req,
                         int status, const char *content_type,
                         const char *const *headers, size_t n)
{
    /* Only the version counts (a caller may pass a request of its own
     * making, with just the version set): closing the connection after
     * the stream is the caller's decision, not written here. */
    bool http10 = req && req->version_major == 1 && req->version_minor == 0;
    sq__strbuf b = SQ__STRBUF_INIT;
    sq_http_begin(&b, status, http10);
    add_lines(&b, content_type, headers, n);
    if (!http10)
        sq__strbuf_puts(&b, "Transfer-Encoding: chunked\r\n");
    sq__strbuf_puts(&b, "\r\n");
    int rc = sq__strbuf_failed(&b) ? -ENOMEM : 0;
    if (rc == 0) {
        if (http10)
            rc = raw_add(io);
        else
            raw_remove(io);
    }
    if (rc == 0) {
        struct iovec iov = {b.buf, b.len};
        rc = write_all(io, &iov, 1);
        if (rc < 0 && http10)
            raw_remove(io);
    }
    sq__strbuf_free(&b);
    return rc;
}

int sq_http_stream_chunk(struct sq_io *io, const void *p, size_t len)
{
    if (len == 0)
        return 0;
    if (raw_has(io)) {
        struct iovec iov = {(void *)p, len};
        int rc = write_all(io, &iov, 1);
        if (rc < 0)
            raw_remove(io); /* the stream is over; io will be closed */
        return rc;
    }
    char size[24];
    int sn = snprintf(size, sizeof size, "%zx\r\n", len);
    struct iovec iov[3] = {
        {size, (size_t)sn}, {(void *)p, len}, {(void *)"\r\n", 2}};
    return write_all(io, iov, 3);
}

int sq_http_stream_end(struct sq_io *io)
{
    if (raw_has(io)) {
        raw_remove(io);
        return sq_io_shutdown_write(io); /* the end of the body */
    }
    struct iovec iov = {(void *)"0\r\n\r\n", 5};
    return write_all(io, &iov, 1);
}
