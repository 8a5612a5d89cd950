/* The proto layer: HTTP/1.1, server side, over sq_io.
 *
 * Requests are parsed with llhttp (Debian's node-llhttp sources, compiled
 * into the build); nothing here knows about MCP.  One task reads a
 * connection's requests (sq_http_read), any task writes its responses
 * (sq_http_write_* / sq_http_stream_*: one writer at a time per
 * connection, which the caller ensures).  Keep-alive and pipelining: the
 * reader keeps the bytes of a request that arrived early, and the next
 * sq_http_read returns it.
 */
#ifndef SQ_PROTO_HTTP_H
#define SQ_PROTO_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "squirrel/runtime.h"
#include "sq_base/strbuf.h"

/* ------------------------------------------------------------ requests */

typedef struct sq_http_header {
    char *name;      /* lower-cased, NUL-terminated */
    char *value;     /* NUL-terminated, surrounding whitespace trimmed */
    size_t value_len;
} sq_http_header;

typedef struct sq_http_request {
    char method[16];        /* "GET", "POST", ... as sent */
    char *target;           /* the request-target, as sent */
    char *path;             /* target up to '?' (NUL-terminated copy) */
    int version_major, version_minor;
    bool keep_alive;        /* the connection may carry another request */
    sq_http_header *headers;
    size_t nheaders;
    char *body;             /* NUL-terminated (the NUL is not counted) */
    size_t body_len;
    bool chunked;           /* the body came with chunked encoding */
} sq_http_request;

/* The value of the first header named `name` (any case), or NULL. */
const char *sq_http_header_get(const sq_http_request *r, const char *name);
/* How many headers are named `name` (any case). */
size_t sq_http_header_count(const sq_http_request *r, const char *name);
/* Frees what a successful sq_http_read put into r and zeroes it.  Safe
 * on a zeroed request. */
void sq_http_request_free(sq_http_request *r);

typedef struct sq_http_limits {
    size_t max_header_bytes; /* request line + headers; 0 = 16 KiB (431) */
    size_t max_body_bytes;   /* 0 = 4 MiB (413) */
    int max_headers;         /* 0 = 100 (431) */
    int64_t header_timeout;  /* first byte to end of headers; 0 = 10 s */
    int64_t body_timeout;    /* end of headers to end of body; 0 = 30 s */
    int64_t idle_timeout;    /* waiting for a request's first byte;
                              * 0 = 60 s, SQ_FOREVER = none */
} sq_http_limits;

typedef struct sq_http_reader sq_http_reader;

/* A reader of the requests arriving on io (not owned: closing io is the
 * caller's business).  lim may be NULL (defaults).  -ENOMEM.  Never
 * waits. */
int sq_http_reader_new(sq_http_reader **out, struct sq_io *io,
                       const sq_http_limits *lim);
void sq_http_reader_free(sq_http_reader *r);

/* Reads the next request into *req (zeroed first).  Returns:
 *   1  a request (free it with sq_http_request_free);
 *   0  the peer closed the connection between requests (or went idle
 *      past idle_timeout, which *status_out reports as 408);
 *  -EPROTO  a malformed, too large or too slow request: *status_out is
 *      the status to answer before closing (400, 408, 413, 431, 501,
 *      505), and the connection cannot be read further;
 *  -ECANCELED, -ECONNRESET and other negative errno values of the read.
 * Waits for bytes (a cancellation point); the deadlines of lim apply.
 * Cancel safe: after -ECANCELED the part of a request already read stays
 * in the reader, and the next call goes on with it (its deadlines as
 * they were).  After -EPROTO every call returns -EPROTO with the same
 * status; after a request with keep_alive false, every call returns 0.
 * HTTP/1.0 requests always have keep_alive false (one request per
 * connection).  status_out may be NULL. */
int sq_http_read(sq_http_reader *r, sq_http_request *req, int *status_out);

/* Extension: when on, sq_http_read itself answers "Expect: 100-continue"
 * (HTTP/1.1, a body announced and none of it received yet, the head
 * accepted) by writing "HTTP/1.1 100 Continue" on io before it waits for
 * the body, so that clients such as curl do not wait a second before
 * sending it.  Off by default: only turn it on when no other task writes
 * on io while sq_http_read runs (a server that answers each request
 * before reading the next), since an interim response written in the
 * middle of another, or before an earlier response, breaks the stream.
 * A head refused (413, ...) gets no 100: the client reads the refusal.
 * Never waits. */
void sq_http_reader_answer_continue(sq_http_reader *r, bool on);

/* True once the peer has closed its side or the connection failed (as
 * seen by the last read).  Never waits. */
bool sq_http_reader_eof(const sq_http_reader *r);

/* ----------------------------------------------------------- responses */

/* The reason phrase of a status ("OK", "Not Found", ...). */
const char *sq_http_reason(int status);

/* Starts a response in b: the status line and the standard headers
 * (Date is omitted; Connection: close when `close`).  Then add headers
 * with sq_http_add_header and end with sq_http_end_headers (which adds
 * Content-Length for a body of `len` bytes, or Transfer-Encoding:
 * chunked when len is SQ_HTTP_CHUNKED).  Never waits. */
#define SQ_HTTP_CHUNKED ((size_t)-1)
void sq_http_begin(sq__strbuf *b, int status, bool close);
void sq_http_add_header(sq__strbuf *b, const char *name, const char *value);
void sq_http_end_headers(sq__strbuf *b, size_t len);

/* Writes a whole response: status, headers ("Name: value" pairs in
 * `headers`, n of them, may be NULL: n strings, each one whole header
 * line such as "Mcp-Session-Id: abc", without CRLF), Content-Type (NULL:
 * none) and body.  1xx, 204 and 304 responses get neither body nor
 * Content-Length.  CR and LF inside names and values (here and in
 * sq_http_add_header) are written as spaces: a value can never start a
 * header line of its own.  -ENOMEM if the head cannot be built.
 * Returns 0 or a negative errno (-EPIPE, -ECONNRESET, -ECANCELED...).
 * Waits for the socket (a cancellation point; a write cut short by
 * cancellation leaves the connection unusable). */
int sq_http_respond(struct sq_io *io, int status, bool close,
                    const char *content_type, const char *const *headers,
                    size_t n, const void *body, size_t len);

/* A streamed (chunked) response: begin writes the head with
 * Transfer-Encoding: chunked (HTTP/1.1; for HTTP/1.0 the body is
 * delimited by closing, and `close` is forced), chunk writes one chunk
 * (nothing for len 0), end writes the last chunk.  0 or a negative errno.
 * Each waits for the socket (a cancellation point).  `headers` as for
 * sq_http_respond.  Only req's version is read (NULL: HTTP/1.1); for
 * HTTP/1.1 the head has no Connection header (add "Connection: close" to
 * `headers` to announce a close).  For HTTP/1.0, end shuts down the
 * write side of io (the end of the body); the caller closes io after. */
int sq_http_stream_begin(struct sq_io *io, const sq_http_request *req,
                         int status, const char *content_type,
                         const char *const *headers, size_t n);
int sq_http_stream_chunk(struct sq_io *io, const void *p, size_t len);
int sq_http_stream_end(struct sq_io *io);

#endif
