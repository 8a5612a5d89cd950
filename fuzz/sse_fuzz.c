/* Fuzz target: server-sent events and their resumption (src/proto/sse.c;
 * the Last-Event-ID path of src/server/http.c: the streams a legacy
 * session keeps, their replay, the standalone GET stream).
 *
 * The first byte chooses:
 *  - even: the format.  The rest is id NUL event NUL data; the event
 *    sq_sse_event writes (and a comment sq_sse_comment writes of the
 *    data) is read back with the WHATWG event-stream algorithm, which
 *    must give exactly the one event, its data with line breaks as LF,
 *    its id and type with CR and LF as spaces, and nothing for the
 *    comment.
 *  - odd: resumption.  A fresh server with the conformance fixtures gets
 *    a legacy session (2025-11-25, elicitation declared) and a
 *    tools/call of test_elicitation whose SSE stream the client cuts
 *    after the server's elicitation request (event 1-1): the request
 *    waits for its answer (id "squirreld-1"), its stream is kept.  The
 *    rest of the input is then sent on a new connection, every "{SID}"
 *    in it replaced by the session's id: GETs with Last-Event-ID, the
 *    elicitation's answer, DELETE, anything. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fz.h"
#include "sq_proto/sse.h"

#define MAX_REQUESTS 6

#define REQUIRE(cond)                                                     \
    do {                                                                  \
        if (!(cond)) {                                                    \
            fprintf(stderr, "sse_fuzz: %s:%d: %s\n", __FILE__, __LINE__,  \
                    #cond);                                               \
            abort();                                                      \
        }                                                                 \
    } while (0)

/* ------------------------------------------------------------ format */

typedef struct sse_read {
    sq__strbuf data, event, id, got_data, got_event, got_id;
    int events;
    long retry;
} sse_read;

/* One line of the stream (WHATWG HTML, "Interpreting an event stream"). */
static void sse_line(sse_read *r, const char *p, size_t n)
{
    if (n == 0) {
        /* Dispatch: only an event with data counts. */
        if (r->data.len) {
            r->events++;
            sq__strbuf_reset(&r->got_data);
            sq__strbuf_add(&r->got_data, r->data.buf, r->data.len - 1);
            sq__strbuf_reset(&r->got_event);
            sq__strbuf_add(&r->got_event, r->event.buf, r->event.len);
        }
        sq__strbuf_reset(&r->data);
        sq__strbuf_reset(&r->event);
        return;
    }
    if (p[0] == ':')
        return;
    const char *colon = memchr(p, ':', n);
    size_t fl = colon ? (size_t)(colon - p) : n;
    const char *v = colon ? colon + 1 : p + n;
    size_t vl = colon ? n - fl - 1 : 0;
    if (vl && *v == ' ')
        v++, vl--;
    if (fl == 4 && memcmp(p, "data", 4) == 0) {
        sq__strbuf_add(&r->data, v, vl);
        sq__strbuf_putc(&r->data, '\n');
    } else if (fl == 5 && memcmp(p, "event", 5) == 0) {
        sq__strbuf_reset(&r->event);
        sq__strbuf_add(&r->event, v, vl);
    } else if (fl == 2 && memcmp(p, "id", 2) == 0) {
        if (!memchr(v, '\0', vl)) {
            sq__strbuf_reset(&r->got_id);
            sq__strbuf_add(&r->got_id, v, vl);
        }
    } else if (fl == 5 && memcmp(p, "retry", 5) == 0) {
        r->retry = strtol(v, NULL, 10);
    }
}

static void sse_parse(sse_read *r, const char *p, size_t n)
{
    const char *end = p + n;
    while (p < end) {
        const char *e = p;
        while (e < end && *e != '\r' && *e != '\n')
            e++;
        REQUIRE(e < end); /* every line the writer makes is ended */
        sse_line(r, p, (size_t)(e - p));
        p = e + (*e == '\r' && e + 1 < end && e[1] == '\n' ? 2 : 1);
    }
}

/* s with CR LF and lone CR as LF (what the reader joins lines with). */
static void as_lf(sq__strbuf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\r') {
            sq__strbuf_putc(b, '\n');
            if (i + 1 < n && s[i + 1] == '\n')
                i++;
        } else {
            sq__strbuf_putc(b, s[i]);
        }
    }
}

static void oneline(sq__strbuf *b, const char *s)
{
    for (; *s; s++)
        sq__strbuf_putc(b, *s == '\r' || *s == '\n' ? ' ' : *s);
}

static bool same(const sq__strbuf *a, const sq__strbuf *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->buf, b->buf, a->len) == 0);
}

static void format(const uint8_t *data, size_t n, int mode)
{
    /* id NUL event NUL data: strings cut where they end. */
    char *copy = malloc(n + 2);
    memcpy(copy, data, n);
    copy[n] = copy[n + 1] = '\0';
    const char *id = copy;
    const char *ev = id + strlen(id) + 1;
    if (ev > copy + n)
        ev = copy + n;
    const char *d = ev + strlen(ev) + 1;
    if (d > copy + n)
        d = copy + n;
    size_t dl = (size_t)(copy + n - d);
    bool with_id = mode & 2, with_ev = mode & 4;
    int64_t retry = mode & 8 ? (int64_t)(mode >> 4) * 997 : -1;

    sq__strbuf out = SQ__STRBUF_INIT;
    sq_sse_event(&out, with_id ? id : NULL, with_ev ? ev : NULL, retry, d, dl);
    REQUIRE(!out.failed);
    sse_read r = {.retry = -1};
    sse_parse(&r, out.buf, out.len);
    /* data is always there, possibly as one empty line: an event (even
     * with empty data, which the WHATWG reader dispatches as "" only if
     * there was a data line, which there is). */
    REQUIRE(r.events == 1);
    sq__strbuf want = SQ__STRBUF_INIT;
    as_lf(&want, d, dl);
    REQUIRE(same(&r.got_data, &want));
    sq__strbuf_reset(&want);
    if (with_ev)
        oneline(&want, ev);
    REQUIRE(same(&r.got_event, &want));
    sq__strbuf_reset(&want);
    if (with_id) {
        oneline(&want, id);
        REQUIRE(same(&r.got_id, &want));
    } else {
        REQUIRE(r.got_id.len == 0);
    }
    REQUIRE(r.retry == (retry >= 0 ? (long)retry : -1));

    /* A comment of the same bytes is ignored whole (and the data, as a
     * C string, is what it writes). */
    sq__strbuf_reset(&out);
    sse_read c = {.retry = -1};
    sq_sse_comment(&out, d);
    sse_parse(&c, out.buf, out.len);
    REQUIRE(c.events == 0 && c.data.len == 0 && c.got_id.len == 0);

    sq__strbuf *bufs[] = {&out, &want, &r.data, &r.event, &r.id, &r.got_data,
                          &r.got_event, &r.got_id, &c.data, &c.event, &c.id,
                          &c.got_data, &c.got_event, &c.got_id};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
        sq__strbuf_free(bufs[i]);
    free(copy);
}

/* -------------------------------------------------------- resumption */

typedef struct input {
    const uint8_t *data;
    size_t n;
} input;

static const char init_req[] =
    "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    "Accept: application/json, text/event-stream\r\nContent-Length: %zu\r\n\r\n%s";
static const char init_body[] =
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{"
    "\"protocolVersion\":\"2025-11-25\",\"capabilities\":{\"elicitation\":{}},"
    "\"clientInfo\":{\"name\":\"fuzz\",\"version\":\"1\"}}}";
static const char sess_req[] =
    "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    "Accept: application/json, text/event-stream\r\nMcp-Session-Id: %s\r\n"
    "MCP-Protocol-Version: 2025-11-25\r\nContent-Length: %zu\r\n\r\n%s";
static const char initialized_body[] =
    "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}";
static const char call_body[] =
    "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{"
    "\"name\":\"test_elicitation\",\"arguments\":{\"message\":\"who?\"}}}";

static void talk(sq_srv *s, fz_talk *t, const char *text)
{
    fz_converse(s, t, text, strlen(text));
}

static void *resume_body(void *arg)
{
    input *in = arg;
    sq_srv *s = fz_server("conformance");
    char text[1024], sid[64];
    fz_talk t = {.kind = SQ_LISTEN_HTTP, .expect = 1};
    snprintf(text, sizeof text, init_req, strlen(init_body), init_body);
    talk(s, &t, text);
    REQUIRE(fz_header(t.got.buf, t.got.len, "mcp-session-id", sid, sizeof sid));
    fz_talk_free(&t);
    t = (fz_talk){.kind = SQ_LISTEN_HTTP, .expect = 1};
    snprintf(text, sizeof text, sess_req, sid, strlen(initialized_body),
             initialized_body);
    talk(s, &t, text);
    fz_talk_free(&t);
    t = (fz_talk){.kind = SQ_LISTEN_HTTP, .until = "elicitation/create"};
    snprintf(text, sizeof text, sess_req, sid, strlen(call_body), call_body);
    talk(s, &t, text);
    REQUIRE(t.got.buf && strstr(t.got.buf, "id: 1-1\n"));
    fz_talk_free(&t);

    /* The input, with the session's id in place of each {SID}. */
    sq__strbuf b = SQ__STRBUF_INIT;
    const char *p = (const char *)in->data, *end = p + in->n;
    while (p < end) {
        const char *q = memmem(p, (size_t)(end - p), "{SID}", 5);
        if (!q) {
            sq__strbuf_add(&b, p, (size_t)(end - p));
            break;
        }
        sq__strbuf_add(&b, p, (size_t)(q - p));
        sq__strbuf_puts(&b, sid);
        p = q + 5;
    }
    size_t expect = fz_count_requests(b.buf ? b.buf : "", b.len);
    if (expect <= MAX_REQUESTS) {
        t = (fz_talk){.kind = SQ_LISTEN_HTTP, .expect = expect};
        fz_converse(s, &t, b.buf, b.len);
        fz_talk_free(&t);
    }
    sq__strbuf_free(&b);
    fz_server_free(s);
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
    if (n == 0)
        return 0;
    if ((data[0] & 1) == 0) {
        format(data + 1, n - 1, data[0]);
        return 0;
    }
    input in = {data + 1, n - 1};
    fz_run(resume_body, &in);
    return 0;
}
