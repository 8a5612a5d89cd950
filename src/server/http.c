/* MCP over Streamable HTTP, both eras on one endpoint (/mcp).
 *
 * A connection has two tasks: a reader that parses requests (proto/http)
 * and queues them, and a handler (the connection's own task) that answers
 * them in order, which is what HTTP/1.1 keep-alive and pipelining need.
 * The reader seeing the peer go tells the handler, which, while it waits
 * for a request's messages, learns of it at once: in the 2026-07-28 era
 * closing the response stream cancels the request; in the legacy era it
 * does not (the request goes on, its messages are kept for a resumption
 * with Last-Event-ID).
 *
 * Each request's messages (related notifications, our requests to the
 * client, then the response) come through its own outgoing queue: the
 * response alone is sent as JSON; anything before it makes the answer an
 * SSE stream.  docs/server.md, "HTTP", lists every status the front door
 * gives and why. */
#include "methods.h"
#include "events.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "squirrel/mpsc.h"
#include "sq_base/base64.h"
#include "sq_proto/http.h"
#include "sq_proto/sse.h"

#define KEEPALIVE (15 * SQ_SEC)  /* SSE comment on an idle stream */
#define RETRY_MS 1000            /* SSE retry: the client's reconnect delay */

typedef struct hconn {
    sq_srv *srv;
    sq_io *io;
    sq_http_reader *rd;
    sq_mpsc reqs;                /* sq_http_request * from the reader */
    atomic_bool gone;            /* the peer closed or failed */
    atomic_bool busy;            /* the handler is answering a request */
    sq__spin lock;
    sq_outq *watching;           /* the queue the handler waits on */
    sq_tracker *trk;             /* 2026-07-28 requests of this connection */
    int status;                  /* the reader's error status, if any */
    bool admin;                  /* the admin listener: monitoring only */
    sq_rpc_meta_cache meta;      /* the handler's: the peer's envelopes */
    sq_era_memo memo;            /* the handler's: its last valid one */
} hconn;

/* ------------------------------------------------------------ the reader */

static void *reader_main(void *arg)
{
    hconn *c = arg;
    bool last = false;           /* a request said Connection: close */
    for (;;) {
        sq_http_request *req = calloc(1, sizeof *req);
        int status = 0;
        int rc = req ? sq_http_read(c->rd, req, &status) : -ENOMEM;
        if (rc == 0 && last) {
            /* No request follows a Connection: close, but the peer is
             * still there, waiting for its answer: it has gone when it
             * closes its side (what cancels a 2026-07-28 stream), so the
             * rest of what it sends is read and dropped until then. */
            free(req);
            char sink[512];
            while (sq_io_read(c->io, sink, sizeof sink) > 0)
                ;
            break;
        }
        if (rc == 1) {
            last = !req->keep_alive;
            if (sq_mpsc_send(&c->reqs, &req) != 0) {
                sq_http_request_free(req);
                free(req);
                break;
            }
            continue;
        }
        free(req);
        /* Idle past idle_timeout: the connection ends, unless an answer
         * is being streamed on it (a GET stream, a listen). */
        if (rc == 0 && status == 408 && atomic_load(&c->busy))
            continue;
        if (rc == -EPROTO)
            c->status = status; /* read by the handler after the close */
        break;
    }
    atomic_store(&c->gone, true);
    sq__spin_lock(&c->lock);
    if (c->watching)
        sq_outq_kick(c->watching);
    sq__spin_unlock(&c->lock);
    sq_mpsc_close(&c->reqs);
    return NULL;
}

static void watch(hconn *c, sq_outq *q)
{
    sq__spin_lock(&c->lock);
    c->watching = q;
    sq__spin_unlock(&c->lock);
}

/* ------------------------------------------------------------- answers */

static int respond_json(hconn *c, int status, const char *body, size_t len,
                        const char *session, bool close)
{
    char sh[80];
    const char *hdr[2];
    size_t n = 0;
    if (session) {
        snprintf(sh, sizeof sh, "Mcp-Session-Id: %s", session);
        hdr[n++] = sh;
    }
    sq_mon_bytes(c->srv, 0, len);
    return sq_http_respond(c->io, status, close, len ? "application/json" : NULL,
                           hdr, n, body, len);
}

/* An error answer from the front door: a JSON-RPC error with `raw_id`
 * (NULL: null) and an HTTP status. */
static int respond_error(hconn *c, int status, const char *raw_id, int code,
                         const char *msg, json_t *data)
{
    sq__strbuf b = SQ__STRBUF_INIT;
    sq_rpc_write_error(&b, raw_id, code, msg, data);
    json_decref(data);
    int rc = respond_json(c, status, b.buf, b.len, NULL, false);
    sq__strbuf_free(&b);
    return rc;
}

static int respond_plain(hconn *c, int status, const char *extra)
{
    const char *hdr[1] = {extra};
    return sq_http_respond(c->io, status, false, NULL, hdr, extra ? 1 : 0, NULL, 0);
}

/* The HTTP status of a 2026-07-28 answer carrying a JSON-RPC error. */
static int modern_status(const sq_outmsg *m)
{
    if (!m->final)
        return 200;
    /* The top-level member is whichever comes first: the id before it
     * holds no unescaped quote, and a result may well contain an "error"
     * member of its own (a document, structured content): an error
     * counts only before the first "result". */
    const char *r = strstr(m->text, "\"result\":");
    const char *e = memmem(m->text, r ? (size_t)(r - m->text) : m->len,
                           "\"error\":{\"code\":", 16);
    if (!e)
        return 200;
    int code = atoi(e + 16);
    switch (code) {
    case SQ_MCP_ERR_HEADER_MISMATCH:
    case SQ_MCP_ERR_MISSING_CAPABILITY:
    case SQ_MCP_ERR_UNSUPPORTED_VERSION:
        return 400;
    case SQ_RPC_METHOD_NOT_FOUND:
        return 404;
    default:
        return 200;
    }
}

typedef struct stream_opts {
    int era;
    const char *session;         /* Mcp-Session-Id to send back */
    uint64_t stream;             /* legacy: the SSE stream's number */
    bool prime;                  /* legacy 2025-11-25: a priming event */
    sq_mcp_req *req;             /* cancelled if the peer goes (modern) */
} stream_opts;

static void sse_event_of(sq__strbuf *b, const stream_opts *o, const sq_outmsg *m)
{
    char id[48];
    if (o->era == SQ_MCP_LEGACY && o->stream) {
        snprintf(id, sizeof id, "%llu-%llu", (unsigned long long)o->stream,
                 (unsigned long long)m->seq);
        sq_sse_event(b, id, "message", -1, m->text, m->len);
    } else {
        sq_sse_event(b, NULL, "message", -1, m->text, m->len);
    }
}

/* Sends what a request's queue carries: JSON if its response comes
 * first, else an SSE stream up to and including the response.  Returns
 * 0 when answered, -EPIPE when the peer went first, or a write error. */
static int send_answer(hconn *c, sq_outq *q, const stream_opts *o, bool *close)
{
    bool sse = false;
    int rc = 0;
    int64_t idle_until = sq_now() + KEEPALIVE;
    watch(c, q);
    sq__strbuf b = SQ__STRBUF_INIT;
    for (;;) {
        sq_outmsg *m = sq_outq_take(q);
        if (!m) {
            if (atomic_load(&c->gone)) {
                rc = -EPIPE;
                break;
            }
            if (sse && sq_now() >= idle_until) {
                sq__strbuf_reset(&b);
                sq_sse_comment(&b, "keep-alive");
                if ((rc = sq_http_stream_chunk(c->io, b.buf, b.len)) != 0)
                    break;
                idle_until = sq_now() + KEEPALIVE;
            }
            int w = sq_outq_wait(q, sse ? idle_until : SQ_FOREVER);
            if (w == -ECANCELED) {
                rc = w;
                break;
            }
            continue;
        }
        bool final = m->final;
        if (!sse && final) {
            /* The response alone: plain JSON (an empty final: nothing to
             * answer, a batch of notifications). */
            int status = o->era == SQ_MCP_MODERN ? modern_status(m) : 200;
            if (m->len)
                rc = respond_json(c, status, m->text, m->len, o->session, false);
            else
                rc = respond_plain(c, 202, NULL);
            if (!q->keep)
                free(m);
            break;
        }
        if (!sse) {
            const char *hdr[3] = {"Cache-Control: no-cache",
                                  "X-Accel-Buffering: no", NULL};
            char sh[80];
            size_t n = 2;
            if (o->session) {
                snprintf(sh, sizeof sh, "Mcp-Session-Id: %s", o->session);
                hdr[n++] = sh;
            }
            sq_http_request fake = {.version_major = 1, .version_minor = 1};
            rc = sq_http_stream_begin(c->io, &fake, 200, "text/event-stream", hdr, n);
            sse = true;
            if (rc == 0 && o->prime) {
                /* The priming event: an id to resume from, no data. */
                char id[48];
                snprintf(id, sizeof id, "%llu-0", (unsigned long long)o->stream);
                sq__strbuf_reset(&b);
                sq_sse_event(&b, id, NULL, RETRY_MS, "", 0);
                rc = sq_http_stream_chunk(c->io, b.buf, b.len);
            }
        }
        if (rc == 0 && m->len) {
            sq__strbuf_reset(&b);
            sse_event_of(&b, o, m);
            sq_mon_bytes(c->srv, 0, b.len);
            rc = sq_http_stream_chunk(c->io, b.buf, b.len);
        }
        if (!q->keep)
            free(m);
        idle_until = sq_now() + KEEPALIVE;
        if (rc)
            break;
        if (final) {
            rc = sq_http_stream_end(c->io);
            break;
        }
    }
    watch(c, NULL);
    sq__strbuf_free(&b);
    if (rc == -EPIPE && o->era == SQ_MCP_MODERN && o->req)
        sq_req_cancel(o->req); /* closing the stream cancels (2026-07-28) */
    if (rc)
        *close = true;
    return rc;
}

/* ------------------------------------------------------ the front door */

static bool host_allowed(sq_srv *s, const char *host, bool origin)
{
    if (!host)
        return !origin; /* no Origin: not a browser; no Host: HTTP/1.0 */
    const char *h = host;
    if (origin) {
        const char *p = strstr(h, "://");
        if (!p)
            return false;
        h = p + 3;
    }
    /* The host part, without the port. */
    size_t n;
    if (*h == '[') {
        const char *e = strchr(h, ']');
        if (!e)
            return false;
        n = (size_t)(e - h) + 1;
    } else {
        n = strcspn(h, ":/");
    }
    static const char *const local[] = {"localhost", "127.0.0.1", "[::1]"};
    for (size_t i = 0; i < 3; i++)
        if (strlen(local[i]) == n && strncasecmp(h, local[i], n) == 0)
            return true;
    char **list = origin ? s->cfg.allowed_origins : s->cfg.allowed_hosts;
    size_t cnt = origin ? s->cfg.nallowed_origins : s->cfg.nallowed_hosts;
    for (size_t i = 0; i < cnt; i++) {
        if (strcmp(list[i], "*") == 0)
            return true;
        if (origin ? strcasecmp(list[i], host) == 0
                   : (strlen(list[i]) == n && strncasecmp(h, list[i], n) == 0))
            return true;
    }
    return false;
}

/* Compares a token with the server's in constant time (for its length). */
static bool token_is(sq_srv *s, const char *t, size_t n)
{
    unsigned char diff = n != s->token_len;
    for (size_t i = 0; i < s->token_len; i++)
        diff |= (unsigned char)(s->token[i] ^ (i < n ? t[i] : 0));
    return diff == 0;
}

static int hexdigit(char c)
{
    return c >= '0' && c <= '9' ? c - '0'
         : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* The cookie squirreld_token's value in a Cookie header, or NULL (*n
 * its length). */
static const char *cookie_token(const char *h, size_t *n)
{
    static const char name[] = "squirreld_token=";
    for (const char *p = h; p && *p;) {
        while (*p == ' ' || *p == ';')
            p++;
        size_t len = strcspn(p, ";");
        if (strncmp(p, name, sizeof name - 1) == 0) {
            *n = len - (sizeof name - 1);
            return p + sizeof name - 1;
        }
        p += len;
    }
    return NULL;
}

bool sq_http_authorized(sq_srv *s, const sq_http_request *req, bool allow_cookie)
{
    if (!s->token)
        return true;
    const char *a = sq_http_header_get(req, "authorization");
    if (a && strncasecmp(a, "Bearer ", 7) == 0)
        return token_is(s, a + 7, strlen(a + 7));
    size_t n;
    const char *t = allow_cookie ? cookie_token(sq_http_header_get(req, "cookie"), &n)
                                 : NULL;
    if (!t || n > 1024)
        return false;
    /* The page sets it with encodeURIComponent: percent-decoded. */
    char dec[1024];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int hi, lo;
        if (t[i] == '%' && i + 2 < n &&
            (hi = hexdigit(t[i + 1])) >= 0 && (lo = hexdigit(t[i + 2])) >= 0) {
            dec[k++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            dec[k++] = t[i];
        }
    }
    return token_is(s, dec, k);
}

static bool media_is(const char *v, const char *type)
{
    size_t n = strlen(type);
    return v && strncasecmp(v, type, n) == 0 && (v[n] == '\0' || v[n] == ';' ||
                                                  v[n] == ' ');
}

static bool accepts(const char *accept, const char *type)
{
    if (!accept)
        return true;
    return strstr(accept, type) || strstr(accept, "*/*");
}

/* An MCP header's value, decoded from its =?base64?...?= form if so
 * (malloc'ed), or NULL if absent or undecodable (*bad set then). */
static char *mcp_header(const sq_http_request *req, const char *name, bool *bad)
{
    const char *v = sq_http_header_get(req, name);
    *bad = false;
    if (!v)
        return NULL;
    size_t n = strlen(v);
    if (n >= 12 && strncmp(v, "=?base64?", 9) == 0 &&
        strcmp(v + n - 2, "?=") == 0) {
        size_t len;
        char *d = sq__b64_decode(v + 9, n - 11, false, &len);
        if (!d || strlen(d) != len) {
            free(d);
            *bad = true;
            return NULL;
        }
        return d;
    }
    return strdup(v);
}

/* True if header `name` is there and its value (decoded) is `want`.  The
 * plain form, the common one, is compared where it lies. */
static bool mcp_header_is(const sq_http_request *req, const char *name, const char *want)
{
    const char *v = sq_http_header_get(req, name);
    if (!v)
        return false;
    if (strncmp(v, "=?base64?", 9) != 0)
        return strcmp(v, want) == 0;
    bool bad;
    char *d = mcp_header(req, name, &bad);
    bool same = d && strcmp(d, want) == 0;
    free(d);
    return same;
}

/* The body field the Mcp-Name header must match, for a method. */
static const char *name_field(const char *method)
{
    if (strcmp(method, "tools/call") == 0 || strcmp(method, "prompts/get") == 0)
        return "name";
    if (strcmp(method, "resources/read") == 0)
        return "uri";
    if (strcmp(method, "tasks/get") == 0 || strcmp(method, "tasks/update") == 0 ||
        strcmp(method, "tasks/cancel") == 0)
        return "taskId";
    return NULL;
}

/* The x-mcp-header properties of a tool's input schema (SEP-2243): for
 * each argument that the schema marks with "x-mcp-header": NAME and the
 * call gives (not null), the header Mcp-Param-NAME must be there, decode,
 * and equal the argument (integers compared as numbers, booleans as
 * "true"/"false").  0 if all agree, else -1. */
static int check_param_headers(sq_srv *s, const sq_http_request *req,
                               json_t *params)
{
    if (!atomic_load(&s->param_headers))
        return 0; /* no tool has such arguments: nothing to look up */
    const char *tool = json_string_value(json_object_get(params, "name"));
    sq_entry *e = tool ? sq_registry_find(s, SQ_ENTRY_TOOL, tool) : NULL;
    if (!e)
        return 0; /* an unknown tool is the method's own error */
    json_t *args = json_object_get(params, "arguments");
    json_t *props = json_object_get(e->def.tool.input_schema, "properties");
    int rc = 0;
    const char *k;
    json_t *p;
    json_object_foreach(props, k, p) {
        const char *name = json_string_value(json_object_get(p, "x-mcp-header"));
        json_t *v = json_object_get(args, k);
        if (!name || !v || json_is_null(v))
            continue;
        char hname[160];
        snprintf(hname, sizeof hname, "mcp-param-%s", name);
        bool bad;
        char *h = mcp_header(req, hname, &bad);
        bool ok = h != NULL;
        if (ok && json_is_string(v)) {
            ok = strcmp(h, json_string_value(v)) == 0;
        } else if (ok && json_is_integer(v)) {
            char *end;
            long long x = strtoll(h, &end, 10);
            ok = *h && *end == '\0' && x == json_integer_value(v);
        } else if (ok && json_is_real(v)) {
            char *end;
            double x = strtod(h, &end);
            ok = *h && *end == '\0' && x == json_real_value(v);
        } else if (ok && json_is_boolean(v)) {
            ok = strcmp(h, json_is_true(v) ? "true" : "false") == 0;
        } else {
            ok = false;
        }
        free(h);
        if (!ok) {
            rc = -1;
            break;
        }
    }
    sq_entry_unref(e);
    return rc;
}

/* ---------------------------------------------------- 2026-07-28 POSTs */

/* A 2026-07-28 request m; hv is its MCP-Protocol-Version header (NULL if
 * none). */
static int modern_post(hconn *c, const sq_http_request *req, const char *hv,
                       sq_rpc_msg *m, bool *close)
{
    sq_srv *s = c->srv;
    const char *version;
    json_t *caps, *data;
    const char *why;
    int level;
    int code = sq_era_envelope(m->params, &c->meta, &c->memo, &version, &caps, &level,
                               &why, &data);
    if (code == SQ_RPC_INVALID_PARAMS)
        return respond_error(c, 400, m->id, code, why, data);
    if (!hv || !version || strcmp(hv, version) != 0) {
        json_decref(data);
        return respond_error(c, 400, m->id, SQ_MCP_ERR_HEADER_MISMATCH,
                             "the MCP-Protocol-Version header must equal the "
                             "request's _meta protocolVersion",
                             NULL);
    }
    if (code)
        return respond_error(c, 400, m->id, code, why, data);
    if (m->kind == SQ_RPC_NOTIFICATION)
        return respond_plain(c, 202, NULL); /* cancelling is closing, here */

    if (!mcp_header_is(req, "mcp-method", m->method))
        return respond_error(c, 400, m->id, SQ_MCP_ERR_HEADER_MISMATCH,
                             "the Mcp-Method header must equal the request's method",
                             NULL);
    const char *field = name_field(m->method);
    if (field) {
        const char *bn = json_string_value(json_object_get(m->params, field));
        if (!bn || !mcp_header_is(req, "mcp-name", bn))
            return respond_error(c, 400, m->id, SQ_MCP_ERR_HEADER_MISMATCH,
                                 "the Mcp-Name header must equal the request's "
                                 "name, uri or taskId",
                                 NULL);
    }
    if (strcmp(m->method, "tools/call") == 0 &&
        check_param_headers(s, req, m->params) != 0)
        return respond_error(c, 400, m->id, SQ_MCP_ERR_HEADER_MISMATCH,
                             "an Mcp-Param-* header is missing, malformed, or "
                             "differs from its argument",
                             NULL);
    if (!sq_method_exists(m->method, SQ_MCP_MODERN)) {
        char msg[200];
        snprintf(msg, sizeof msg, "Method not found: %.150s", m->method);
        return respond_error(c, 404, m->id, SQ_RPC_METHOD_NOT_FOUND, msg, NULL);
    }
    if (atomic_load(&s->stopping))
        return respond_error(c, 503, m->id, SQ_MCP_ERR_SHUTDOWN,
                             "the server is stopping", NULL);
    sq_outq *q = sq_outq_new(s->cfg.out_queue_bytes, false);
    sq_mcp_req *r = q ? sq_req_new(s, m, SQ_MCP_MODERN, version, caps, q) : NULL;
    if (!r) {
        sq_outq_unref(q);
        return respond_error(c, 500, NULL, SQ_RPC_INTERNAL_ERROR, "out of memory", NULL);
    }
    r->log_level = level;
    int rc = sq_tracker_admit(c->trk, r);
    if (rc == 0 && (rc = sq_req_start(r)) != 0) {
        sq_req_cancel(r);
        rc = -ESHUTDOWN;
    }
    atomic_fetch_add(&s->requests_total, 1);
    if (rc) {
        int st = rc == SQ_MCP_ERR_BUSY ? 429 : rc == -EEXIST ? 400 : 503;
        rc = respond_error(c, st, r->id,
                           rc == SQ_MCP_ERR_BUSY ? SQ_MCP_ERR_BUSY
                           : rc == -EEXIST      ? SQ_RPC_INVALID_REQUEST
                                                : SQ_MCP_ERR_SHUTDOWN,
                           rc == SQ_MCP_ERR_BUSY ? "too many requests in flight"
                           : rc == -EEXIST      ? "a request with this id is in flight already"
                                                : "the request could not be started",
                           NULL);
    } else {
        stream_opts o = {.era = SQ_MCP_MODERN, .req = r};
        rc = send_answer(c, q, &o, close);
    }
    sq_req_unref(r);
    sq_outq_unref(q);
    return rc;
}

/* ---------------------------------------------------------- legacy POSTs */

static sq_sess *session_of(hconn *c, const sq_http_request *req, int *status)
{
    const char *id = sq_http_header_get(req, "mcp-session-id");
    if (!id) {
        *status = 400;
        return NULL;
    }
    sq_srv *s = c->srv;
    sq_mutex_lock_nocancel(&s->lock);
    json_t *v = json_object_get(s->by_id, id);
    sq_sess *x = v ? sq_sess_ref((sq_sess *)(intptr_t)json_integer_value(v)) : NULL;
    sq_mutex_unlock(&s->lock);
    if (!x)
        *status = 404;
    else
        atomic_store(&x->last_used, sq_now());
    return x;
}

static int session_error(hconn *c, int status)
{
    return status == 400
               ? respond_error(c, 400, NULL, -32000,
                               "Bad Request: Mcp-Session-Id header is required", NULL)
               : respond_error(c, 404, NULL, -32001, "Session not found", NULL);
}

static int initialize(hconn *c, const sq_http_request *req, sq_rpc_msg *m)
{
    sq_srv *s = c->srv;
    if (sq_http_header_get(req, "mcp-session-id"))
        return respond_error(c, 400, m->id, SQ_RPC_INVALID_REQUEST,
                             "Invalid Request: initialize on a session (start a "
                             "new one without Mcp-Session-Id)",
                             NULL);
    json_t *p = m->params;
    json_t *ver = json_object_get(p, "protocolVersion");
    json_t *caps = json_object_get(p, "capabilities");
    json_t *info = json_object_get(p, "clientInfo");
    if (!json_is_string(ver) || !json_is_object(caps) || !json_is_object(info))
        return respond_error(c, 200, m->id, SQ_RPC_INVALID_PARAMS,
                             "initialize needs protocolVersion (a string), "
                             "capabilities and clientInfo (objects)",
                             NULL);
    sq_sess *x = sq_sess_new(s, true);
    const char *version;
    json_t *res = x ? sq_initialize_result(s, json_string_value(ver), &version) : NULL;
    if (!res) {
        sq_sess_unref(x);
        return respond_error(c, 500, m->id, SQ_RPC_INTERNAL_ERROR, "out of memory", NULL);
    }
    snprintf(x->version, sizeof x->version, "%s", version);
    x->caps = json_incref(caps);
    x->client_info = json_incref(info);
    bool full;
    sq_mutex_lock_nocancel(&s->lock);
    full = s->nsessions >= s->cfg.max_sessions;
    if (!full) {
        sq__list_push_back(&s->sessions, &x->link);
        s->nsessions++;
        json_object_set_new(s->by_id, x->id, json_integer((intptr_t)x));
        sq_sess_ref(x); /* the table's */
    }
    sq_mutex_unlock(&s->lock);
    int rc;
    if (full) {
        char msg[96];
        snprintf(msg, sizeof msg, "too many sessions (the limit is %d)",
                 s->cfg.max_sessions);
        rc = respond_error(c, 503, m->id, SQ_MCP_ERR_BUSY, msg, NULL);
    } else {
        sq__strbuf b = SQ__STRBUF_INIT;
        sq_rpc_write_result(&b, m->id, res);
        rc = respond_json(c, 200, b.buf, b.len, x->id, false);
        sq__strbuf_free(&b);
    }
    json_decref(res);
    sq_sess_unref(x);
    return rc;
}

/* Registers q as the session's next SSE stream (kept for resuming; and
 * in a shared store, events.h) and returns its number.  The caller holds
 * x->lock; q is not shared yet. */
static uint64_t stream_register_locked(sq_sess *x, sq_outq *q)
{
    char key[24];
    uint64_t n = ++x->next_stream;
    snprintf(key, sizeof key, "%llu", (unsigned long long)n);
    sq_events_attach(x->srv, q, x->id, n);
    json_object_set_new(x->streams, key, json_integer((intptr_t)sq_outq_ref(q)));
    return n;
}

/* The same, taking the lock. */
static void stream_register(sq_sess *x, sq_outq *q, uint64_t *n)
{
    sq_mutex_lock_nocancel(&x->lock);
    *n = stream_register_locked(x, q);
    sq_mutex_unlock(&x->lock);
}

static void stream_forget(sq_sess *x, uint64_t n)
{
    char key[24];
    snprintf(key, sizeof key, "%llu", (unsigned long long)n);
    sq_mutex_lock_nocancel(&x->lock);
    json_t *v = json_object_get(x->streams, key);
    sq_outq *q = v ? (sq_outq *)(intptr_t)json_integer_value(v) : NULL;
    json_object_del(x->streams, key);
    sq_mutex_unlock(&x->lock);
    sq_outq_unref(q);
}

static int legacy_post(hconn *c, const sq_http_request *req, sq_rpc_parsed *p,
                       bool *close)
{
    sq_srv *s = c->srv;
    sq_rpc_msg *m = &p->msgs[0];
    if (!p->batch && m->kind == SQ_RPC_REQUEST && strcmp(m->method, "initialize") == 0)
        return initialize(c, req, m);
    int status;
    sq_sess *x = session_of(c, req, &status);
    if (!x)
        return session_error(c, status);
    int rc;
    const char *hv = sq_http_header_get(req, "mcp-protocol-version");
    if (hv && strcmp(hv, x->version) != 0) {
        char msg[160];
        snprintf(msg, sizeof msg,
                 "Bad Request: MCP-Protocol-Version %.40s is not the session's "
                 "version (%s)", hv, x->version);
        rc = respond_error(c, 400, NULL, -32000, msg, NULL);
        goto done;
    }
    if (p->batch && strcmp(x->version, "2025-03-26") != 0) {
        rc = respond_error(c, 400, NULL, SQ_RPC_INVALID_REQUEST,
                           "Invalid Request: batches exist only in protocol "
                           "version 2025-03-26",
                           NULL);
        goto done;
    }
    /* Notifications and responses first: they are handled here. */
    int nreq = 0;
    for (size_t i = 0; i < p->n; i++) {
        sq_rpc_msg *e = &p->msgs[i];
        if (e->kind == SQ_RPC_RESPONSE) {
            sq_sess_deliver(x, e);
        } else if (e->kind == SQ_RPC_NOTIFICATION) {
            if (strcmp(e->method, "notifications/initialized") == 0) {
                atomic_store(&x->initialized, true);
            } else if (strcmp(e->method, "notifications/cancelled") == 0) {
                char *key = sq_id_key(json_object_get(e->params, "requestId"));
                if (key)
                    sq_tracker_cancel(x->trk, key);
                free(key);
            }
        } else {
            nreq++;
        }
    }
    if (nreq == 0) {
        rc = respond_plain(c, 202, NULL);
        goto done;
    }
    /* The requests: their messages go through one queue, kept as SSE
     * stream n of the session for a resumption. */
    sq_outq *q = sq_outq_new(s->cfg.out_queue_bytes, true);
    if (!q) {
        rc = respond_error(c, 500, NULL, SQ_RPC_INTERNAL_ERROR, "out of memory", NULL);
        goto done;
    }
    uint64_t n;
    stream_register(x, q, &n);
    sq_batch *batch = p->batch ? sq_batch_new(q, nreq) : NULL;
    for (size_t i = 0; i < p->n; i++) {
        sq_rpc_msg *e = &p->msgs[i];
        if (e->kind == SQ_RPC_INVALID || (e->kind == SQ_RPC_REQUEST &&
                                          strcmp(e->method, "initialize") == 0)) {
            sq__strbuf b = SQ__STRBUF_INIT;
            sq_rpc_write_error(&b, e->id, SQ_RPC_INVALID_REQUEST,
                               e->kind == SQ_RPC_INVALID ? e->why
                               : "initialize must not be part of a batch", NULL);
            if (batch)
                sq_batch_add(batch, b.buf, b.len);
            else
                sq_outq_push(q, b.buf, b.len, true);
            sq__strbuf_free(&b);
            continue;
        }
        if (e->kind != SQ_RPC_REQUEST)
            continue;
        sq_mcp_req *r = sq_req_new(s, e, SQ_MCP_LEGACY, x->version, x->caps, q);
        int arc = r ? 0 : -ENOMEM;
        if (r) {
            r->sess = sq_sess_ref(x);
            if (batch) {
                atomic_fetch_add(&batch->refs, 1);
                r->batch = batch;
            }
            arc = atomic_load(&s->stopping) ? -ESHUTDOWN : sq_tracker_admit(x->trk, r);
            if (arc == 0 && sq_req_start(r) != 0) {
                sq_req_cancel(r);
                arc = 0; /* cancelled: its batch slot is filled */
            }
            atomic_fetch_add(&s->requests_total, 1);
        }
        if (arc) {
            sq__strbuf b = SQ__STRBUF_INIT;
            sq_rpc_write_error(&b, r ? r->id : e->id,
                               arc == SQ_MCP_ERR_BUSY ? SQ_MCP_ERR_BUSY
                               : arc == -EEXIST      ? SQ_RPC_INVALID_REQUEST
                                                     : SQ_MCP_ERR_SHUTDOWN,
                               arc == SQ_MCP_ERR_BUSY ? "too many requests in flight"
                               : arc == -EEXIST ? "a request with this id is in flight already"
                                                : "the request could not be started",
                               NULL);
            if (r && r->batch) {
                r->batch = NULL;
                sq_batch_add(batch, b.buf, b.len);
                sq_batch_unref(batch);
            } else if (batch) {
                sq_batch_add(batch, b.buf, b.len);
            } else {
                sq_outq_push(q, b.buf, b.len, true);
            }
            sq__strbuf_free(&b);
        }
        sq_req_unref(r);
    }
    if (batch)
        sq_batch_unref(batch);
    stream_opts o = {.era = SQ_MCP_LEGACY, .session = x->id, .stream = n,
                     .prime = strcmp(x->version, "2025-11-25") >= 0};
    rc = send_answer(c, q, &o, close);
    /* Answered in full: nothing to resume.  Cut short: kept for a GET
     * with Last-Event-ID (until the session ends). */
    if (rc == 0)
        stream_forget(x, n);
    sq_outq_unref(q);
done:
    sq_sess_unref(x);
    return rc;
}

/* ----------------------------------------------------------------- GET */

typedef struct replay_ctx {
    sq__strbuf b;
    uint64_t stream;
    bool final;
} replay_ctx;

static void replay_one(const sq_outmsg *m, void *arg)
{
    replay_ctx *x = arg;
    char id[48];
    snprintf(id, sizeof id, "%llu-%llu", (unsigned long long)x->stream,
             (unsigned long long)m->seq);
    if (m->len)
        sq_sse_event(&x->b, id, "message", -1, m->text, m->len);
    x->final |= m->final;
}

/* A GET with Last-Event-ID for a session this instance does not have:
 * the stream's events kept in a shared store (events.h) after that id,
 * replayed with their ids, then the end of the stream.  Nothing stored
 * for that stream (or no such store): 404 session not found, as
 * without one. */
static int stored_replay(hconn *c, const sq_http_request *req)
{
    const char *sid = sq_http_header_get(req, "mcp-session-id");
    const char *last = sq_http_header_get(req, "last-event-id");
    char *end;
    uint64_t n = strtoull(last, &end, 10);
    uint64_t after = 0;
    bool ok = end != last && *end == '-' && end[1] >= '0' && end[1] <= '9';
    if (ok) {
        after = strtoull(end + 1, &end, 10);
        ok = *end == '\0';
    }
    if (!ok || !c->srv->events)
        return session_error(c, 404);
    sq__strbuf b = SQ__STRBUF_INIT;
    int rc = sq_events_replay(c->srv, sid, n, after, &b);
    if (rc == -ENOENT) {
        sq__strbuf_free(&b);
        return session_error(c, 404);
    }
    if (rc) {
        sq__strbuf_free(&b);
        char msg[160];
        snprintf(msg, sizeof msg, "Service Unavailable: the stored events of this "
                 "session cannot be read now (%s)", sq_strerror(rc));
        return respond_error(c, 503, NULL, -32000, msg, NULL);
    }
    const char *hdr[3] = {"Cache-Control: no-cache", "X-Accel-Buffering: no", NULL};
    char sh[80];
    snprintf(sh, sizeof sh, "Mcp-Session-Id: %s", sid);
    hdr[2] = sh;
    rc = sq_http_stream_begin(c->io, req, 200, "text/event-stream", hdr, 3);
    if (rc == 0 && b.len) {
        sq_mon_bytes(c->srv, 0, b.len);
        rc = sq_http_stream_chunk(c->io, b.buf, b.len);
    }
    if (rc == 0)
        rc = sq_http_stream_end(c->io);
    sq__strbuf_free(&b);
    return rc;
}

static int legacy_get(hconn *c, const sq_http_request *req, bool *close)
{
    const char *accept = sq_http_header_get(req, "accept");
    if (accept && !strstr(accept, "text/event-stream"))
        return respond_error(c, 406, NULL, -32000,
                             "Not Acceptable: GET needs Accept: text/event-stream",
                             NULL);
    int status;
    sq_sess *x = session_of(c, req, &status);
    if (!x && status == 404 && sq_http_header_get(req, "last-event-id"))
        return stored_replay(c, req);
    if (!x)
        return session_error(c, status);
    int rc;
    const char *last = sq_http_header_get(req, "last-event-id");
    sq_outq *q = NULL;
    uint64_t n = 0, after = 0;
    bool standalone = !last;
    if (last) {
        /* "<stream>-<seq>": that stream's messages after seq, then its
         * live ones (a stream whose request is still running). */
        char *end;
        n = strtoull(last, &end, 10);
        after = *end == '-' ? strtoull(end + 1, &end, 10) : 0;
        char key[24];
        snprintf(key, sizeof key, "%llu", (unsigned long long)n);
        sq_mutex_lock_nocancel(&x->lock);
        json_t *v = json_object_get(x->streams, key);
        q = v && *end == '\0' ? sq_outq_ref((sq_outq *)(intptr_t)json_integer_value(v))
                              : NULL;
        sq_mutex_unlock(&x->lock);
        if (!q) {
            rc = respond_error(c, 400, NULL, -32000,
                               "Bad Request: unknown Last-Event-ID", NULL);
            goto done;
        }
        standalone = q == x->unsolicited;
    } else {
        sq_mutex_lock_nocancel(&x->lock);
        bool busy = x->unsolicited != NULL;
        if (!busy) {
            q = sq_outq_new(c->srv->cfg.out_queue_bytes, true);
            if (q)
                n = stream_register_locked(x, q);
            x->unsolicited = q ? sq_outq_ref(q) : NULL;
        }
        sq_mutex_unlock(&x->lock);
        if (busy) {
            rc = respond_error(c, 409, NULL, -32000,
                               "Conflict: only one SSE stream is allowed per session",
                               NULL);
            goto done;
        }
        if (!q) {
            rc = respond_error(c, 500, NULL, SQ_RPC_INTERNAL_ERROR, "out of memory", NULL);
            goto done;
        }
    }
    const char *hdr[3] = {"Cache-Control: no-cache", "X-Accel-Buffering: no", NULL};
    char sh[80];
    snprintf(sh, sizeof sh, "Mcp-Session-Id: %s", x->id);
    hdr[2] = sh;
    rc = sq_http_stream_begin(c->io, req, 200, "text/event-stream", hdr, 3);
    replay_ctx rx = {.b = SQ__STRBUF_INIT, .stream = n};
    if (rc == 0 && last) {
        sq_outq_replay(q, after, replay_one, &rx);
        if (rx.b.len)
            rc = sq_http_stream_chunk(c->io, rx.b.buf, rx.b.len);
    } else if (rc == 0 && strcmp(x->version, "2025-11-25") >= 0) {
        sq__strbuf_reset(&rx.b);
        char id[48];
        snprintf(id, sizeof id, "%llu-0", (unsigned long long)n);
        sq_sse_event(&rx.b, id, NULL, RETRY_MS, "", 0);
        rc = sq_http_stream_chunk(c->io, rx.b.buf, rx.b.len);
    }
    sq__strbuf_free(&rx.b);
    if (rc == 0 && rx.final) {
        rc = sq_http_stream_end(c->io); /* its response was replayed */
    } else if (rc == 0) {
        /* Live: what comes next on this stream, until the peer goes, the
         * session ends or (a request's stream) its response is sent. */
        stream_opts o = {.era = SQ_MCP_LEGACY, .session = x->id, .stream = n};
        int64_t idle_until = sq_now() + KEEPALIVE;
        watch(c, q);
        sq__strbuf b = SQ__STRBUF_INIT;
        for (;;) {
            sq_outmsg *m = sq_outq_take(q);
            if (m) {
                bool final = m->final;
                sq__strbuf_reset(&b);
                if (m->len)
                    sse_event_of(&b, &o, m);
                rc = b.len ? sq_http_stream_chunk(c->io, b.buf, b.len) : 0;
                idle_until = sq_now() + KEEPALIVE;
                if (rc || (final && !standalone))
                    break;
                continue;
            }
            if (atomic_load(&c->gone)) {
                rc = -EPIPE;
                break;
            }
            if (sq_outq_is_closed(q))
                break; /* the session ended: the stream ends, in good order */
            if (sq_now() >= idle_until) {
                sq__strbuf_reset(&b);
                sq_sse_comment(&b, "keep-alive");
                if ((rc = sq_http_stream_chunk(c->io, b.buf, b.len)) != 0)
                    break;
                idle_until = sq_now() + KEEPALIVE;
            }
            if (sq_outq_wait(q, idle_until) == -ECANCELED) {
                rc = -ECANCELED;
                break;
            }
        }
        watch(c, NULL);
        sq__strbuf_free(&b);
        if (rc == 0)
            rc = sq_http_stream_end(c->io);
        else
            *close = true;
    } else {
        *close = true;
    }
    if (standalone && !last) {
        /* The standalone stream ends with this GET: notifications wait
         * for the next one (they are dropped meanwhile). */
        sq_mutex_lock_nocancel(&x->lock);
        if (x->unsolicited == q) {
            x->unsolicited = NULL;
            sq_outq_unref(q);
        }
        sq_mutex_unlock(&x->lock);
        stream_forget(x, n);
    }
    sq_outq_unref(q);
done:
    sq_sess_unref(x);
    return rc;
}

/* ----------------------------------------------------------- a request */

static int handle(hconn *c, sq_http_request *req, bool *close)
{
    sq_srv *s = c->srv;
    if (!host_allowed(s, sq_http_header_get(req, "host"), false) ||
        (sq_http_header_get(req, "origin") &&
         !host_allowed(s, sq_http_header_get(req, "origin"), true))) {
        char msg[160];
        snprintf(msg, sizeof msg, "Forbidden: Host or Origin not allowed "
                 "(DNS rebinding protection; see allowed_hosts)");
        return respond_error(c, 403, NULL, -32000, msg, NULL);
    }
    /* The monitoring endpoints: on the admin listener when there is one,
     * else here (admin.c checks the same token). */
    if (c->admin || (!s->has_admin && strcmp(req->path, "/mcp") != 0)) {
        int rc = sq_admin_serve(s, c->io, req, close, &c->gone);
        if (rc != -ENOENT)
            return rc;
        return respond_error(c, 404, NULL, -32000,
                             c->admin ? "Not Found: this is the admin listener "
                                        "(/metrics, /health, /debug/tasks, /debug/locks, "
                                        "/console)"
                                      : "Not Found: the endpoint is /mcp",
                             NULL);
    }
    if (strcmp(req->path, "/mcp") != 0)
        return respond_error(c, 404, NULL, -32000, "Not Found: the endpoint is /mcp",
                             NULL);
    if (!sq_http_authorized(s, req, false)) {
        const char *hdr[1] = {"WWW-Authenticate: Bearer realm=\"squirreld\""};
        static const char body[] = "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":"
                                   "{\"code\":-32000,\"message\":\"Unauthorized\"}}";
        return sq_http_respond(c->io, 401, false, "application/json", hdr, 1, body,
                               sizeof body - 1);
    }
    if (strcmp(req->method, "GET") == 0)
        return legacy_get(c, req, close);
    if (strcmp(req->method, "DELETE") == 0) {
        int status;
        sq_sess *x = session_of(c, req, &status);
        if (!x)
            return session_error(c, status);
        sq_sess_end(x);
        sq_sess_unref(x);
        return respond_plain(c, 200, NULL);
    }
    if (strcmp(req->method, "POST") != 0)
        return respond_plain(c, 405, "Allow: GET, POST, DELETE");

    sq_mon_bytes(s, req->body_len, 0);
    if (!media_is(sq_http_header_get(req, "content-type"), "application/json"))
        return respond_error(c, 415, NULL, -32000,
                             "Unsupported Media Type: Content-Type must be "
                             "application/json",
                             NULL);
    const char *accept = sq_http_header_get(req, "accept");
    if (!accepts(accept, "application/json") && !accepts(accept, "text/event-stream"))
        return respond_error(c, 406, NULL, -32000,
                             "Not Acceptable: Accept must list application/json "
                             "and text/event-stream",
                             NULL);
    sq_rpc_parsed p;
    int rc = sq_rpc_parse_cached(req->body, req->body_len, &c->meta, &p);
    if (rc == SQ_RPC_PARSE_ERROR)
        return respond_error(c, 400, NULL, rc, "Parse error: not one JSON value", NULL);
    if (rc == SQ_RPC_INVALID_REQUEST)
        return respond_error(c, 400, NULL, rc, "Invalid Request: not a JSON-RPC message",
                             NULL);
    if (rc)
        return respond_error(c, 500, NULL, SQ_RPC_INTERNAL_ERROR, "out of memory", NULL);
    if (p.batch && p.n == 0) {
        rc = respond_error(c, 400, NULL, SQ_RPC_INVALID_REQUEST,
                           "Invalid Request: an empty batch", NULL);
        goto out;
    }
    bool modern = false;
    for (size_t i = 0; i < p.n; i++)
        modern |= p.msgs[i].kind != SQ_RPC_INVALID &&
                  sq_era_claims_modern(p.msgs[i].params, &c->memo);
    if (p.batch && modern) {
        rc = respond_error(c, 400, NULL, SQ_RPC_INVALID_REQUEST,
                           "Invalid Request: 2026-07-28 requests are never batched",
                           NULL);
        goto out;
    }
    sq_rpc_msg *m = &p.msgs[0];
    if (!p.batch && m->kind == SQ_RPC_INVALID) {
        rc = respond_error(c, 400, m->id, SQ_RPC_INVALID_REQUEST, m->why, NULL);
        goto out;
    }
    /* Which era: the body's claim decides; without one, a request that
     * names no session and a 2026 version in its header is a 2026
     * request missing its envelope (answered so). */
    const char *hv = sq_http_header_get(req, "mcp-protocol-version");
    if (!modern && !p.batch && !sq_http_header_get(req, "mcp-session-id") && hv &&
        !sq__legacy_version_ok(hv) && strcmp(hv, "2024-11-05") != 0 &&
        m->kind != SQ_RPC_RESPONSE)
        modern = true;
    if (modern)
        rc = m->kind == SQ_RPC_RESPONSE
                 ? respond_error(c, 400, m->id, SQ_RPC_INVALID_REQUEST,
                                 "2026-07-28 clients send no responses", NULL)
                 : modern_post(c, req, hv, m, close);
    else
        rc = legacy_post(c, req, &p, close);
out:
    sq_rpc_parsed_free(&p);
    return rc;
}

/* ---------------------------------------------------------- connection */

void sq_serve_http_conn(sq_srv *s, sq_io *io, bool admin)
{
    hconn c = {.srv = s, .io = io, .admin = admin};
    sq_http_limits lim = {
        .max_body_bytes = s->cfg.max_message_bytes,
        .header_timeout = s->cfg.header_timeout,
        .body_timeout = s->cfg.body_timeout,
        .idle_timeout = s->cfg.idle_timeout,
    };
    c.trk = sq_tracker_new(s->cfg.max_inflight_session);
    if (!c.trk || sq_http_reader_new(&c.rd, io, &lim) != 0 ||
        sq_mpsc_init(&c.reqs, sizeof(sq_http_request *), 8) != 0) {
        if (c.rd)
            sq_http_reader_free(c.rd);
        sq_tracker_unref(c.trk);
        sq_io_close(io);
        return;
    }
    sq_task reader;
    sq_spawn_opts ro = {.name = "http-reader"};
    if (sq_spawn(&reader, reader_main, &c, &ro) != 0) {
        sq_mpsc_destroy(&c.reqs);
        sq_http_reader_free(c.rd);
        sq_tracker_unref(c.trk);
        sq_io_close(io);
        return;
    }
    for (;;) {
        sq_http_request *req;
        if (sq_mpsc_recv(&c.reqs, &req) != 0)
            break; /* the reader is done: peer gone, error, or stopping */
        bool close = !req->keep_alive;
        atomic_store(&c.busy, true);
        int rc = handle(&c, req, &close);
        atomic_store(&c.busy, false);
        sq_http_request_free(req);
        free(req);
        if (rc || close || sq_cancelled())
            break;
    }
    sq_cancel_mask();
    sq_abort(reader);
    sq_join(reader, NULL);
    /* A malformed, too large or too slow request ends the connection
     * with its status (the reader stopped reading at it). */
    if (c.status)
        sq_http_respond(io, c.status, true, NULL, NULL, 0, NULL, 0);
    /* 2026-07-28 requests of this connection end with it. */
    sq_tracker_cancel(c.trk, NULL);
    sq_tracker_wait_empty(c.trk, SQ_FOREVER);
    sq_cancel_unmask();
    sq_http_request *left;
    while (sq_mpsc_try_recv(&c.reqs, &left) == 0) {
        sq_http_request_free(left);
        free(left);
    }
    sq_mpsc_destroy(&c.reqs);
    sq_http_reader_free(c.rd);
    sq_rpc_meta_cache_clear(&c.meta);
    sq_tracker_unref(c.trk);
    sq_io_close(io);
}
