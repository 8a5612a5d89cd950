/* The HTTP request reader's state (private to src/proto): shared by
 * http.c, which feeds the connection's bytes to llhttp and returns
 * requests, and http_head.c, which collects what llhttp reports and
 * judges the head. */
#ifndef SQ_PROTO_HTTP_READER_H
#define SQ_PROTO_HTTP_READER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "llhttp.h"
#include "sq_base/strbuf.h"
#include "sq_proto/http.h"

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

/* llhttp's callbacks for a reader (parser.data is the reader). */
const llhttp_settings_t *sq__http_settings(void);

/* The line discipline of the head over its next n bytes: false at a bare
 * CR, a bare LF or a line starting with whitespace. */
bool sq__http_head_lines_ok(sq_http_reader *r, const char *p, size_t n);

/* Judges a complete head: 0 to read the body, or the status to fail
 * with. */
int sq__http_check_head(sq_http_reader *r);

/* True when the client waits for "100 Continue" before sending a body. */
bool sq__http_expects_continue(const sq_http_reader *r);

/* The status of an llhttp error; `at` is the byte it stopped at. */
int sq__http_status_of(const sq_http_reader *r, llhttp_errno_t e, char at);

#endif
