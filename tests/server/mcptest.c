/* The server tests' library (mcptest.h). */
#include "mcptest.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* ------------------------------------------------------- comparisons */

char *mt_fmt(const char *fmt, ...)
{
    va_list ap;
    sq__strbuf b = SQ__STRBUF_INIT;
    va_start(ap, fmt);
    sq__strbuf_vprintf(&b, fmt, ap);
    va_end(ap);
    return sq__strbuf_take(&b);
}

static void report(const char *file, int line, const char *what, const char *got,
                   const char *want)
{
    char *m = mt_fmt("%s\n      got:  %s\n      want: %s", what, got ? got : "(nothing)",
                     want ? want : "(nothing)");
    sq_test_fail(file, line, m);
    free(m);
}

bool mt_json_eq(const char *got, const char *want, const char *file, int line)
{
    json_error_t e;
    json_t *w = json_loads(want, JSON_DECODE_ANY, &e);
    if (!w) {
        report(file, line, "the expected text is not JSON", got, want);
        return false;
    }
    json_t *g = got ? json_loads(got, JSON_DECODE_ANY, &e) : NULL;
    bool ok = g && json_equal(g, w);
    if (!ok)
        report(file, line, g ? "JSON differs" : "not JSON", got, want);
    json_decref(g);
    json_decref(w);
    return ok;
}

bool mt_json_set_eq(const char *got, const char *want, const char *file, int line)
{
    json_t *w = json_loads(want, 0, NULL);
    json_t *g = got ? json_loads(got, 0, NULL) : NULL;
    bool ok = json_is_array(w) && json_is_array(g) &&
              json_array_size(w) == json_array_size(g);
    if (!json_is_array(w))
        report(file, line, "the expected text is not a JSON array", got, want);
    /* Each wanted element takes the first equal one not taken yet. */
    size_t n = json_array_size(g);
    bool *taken = calloc(n + 1, sizeof *taken);
    for (size_t i = 0; ok && i < json_array_size(w); i++) {
        bool found = false;
        for (size_t j = 0; j < n && !found; j++)
            if (!taken[j] && json_equal(json_array_get(w, i), json_array_get(g, j)))
                found = taken[j] = true;
        ok = found;
    }
    free(taken);
    if (!ok && json_is_array(w))
        report(file, line, "JSON arrays differ (in any order)", got, want);
    json_decref(g);
    json_decref(w);
    return ok;
}

bool mt_str_eq(const char *got, const char *want, const char *file, int line)
{
    bool ok = got && want && strcmp(got, want) == 0;
    if (!ok)
        report(file, line, "strings differ", got, want);
    return ok;
}

/* A scanner of JSON text, written apart from the server's own (a test
 * must not share the code it checks). */
static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}

static const char *skip_value(const char *p)
{
    p = skip_ws(p);
    if (*p == '"') {
        for (p++; *p && *p != '"'; p++)
            if (*p == '\\' && p[1])
                p++;
        return *p ? p + 1 : p;
    }
    if (*p == '{' || *p == '[') {
        int depth = 0;
        for (; *p; p++) {
            if (*p == '"') {
                p = skip_value(p) - 1;
            } else if (*p == '{' || *p == '[') {
                depth++;
            } else if (*p == '}' || *p == ']') {
                if (--depth == 0)
                    return p + 1;
            }
        }
        return p;
    }
    while (*p && !strchr(",}] \t\r\n", *p))
        p++;
    return p;
}

char *mt_raw_id(const char *msg)
{
    if (!msg)
        return NULL;
    const char *p = skip_ws(msg);
    if (*p != '{')
        return NULL;
    p++;
    for (;;) {
        p = skip_ws(p);
        if (*p != '"')
            return NULL;
        const char *k = p;
        p = skip_value(p);
        bool is_id = p - k == 4 && strncmp(k, "\"id\"", 4) == 0;
        p = skip_ws(p);
        if (*p != ':')
            return NULL;
        const char *v = skip_ws(p + 1);
        p = skip_value(v);
        if (is_id)
            return strndup(v, (size_t)(p - v));
        p = skip_ws(p);
        if (*p != ',')
            return NULL;
        p++;
    }
}

bool mt_id_is(const char *msg, const char *raw, const char *file, int line)
{
    char *id = mt_raw_id(msg);
    bool ok = id && strcmp(id, raw) == 0;
    if (!ok) {
        char *w = mt_fmt("id %s in a message", raw);
        report(file, line, w, msg, raw);
        free(w);
    }
    free(id);
    return ok;
}

/* ------------------------------------------------- the server in process */

/* gate {}: waits for a permit of m->gate. */
static int gate_tool(sq_mcp_req *r, json_t *args, void *data, json_t **result)
{
    (void)args;
    mt_server *m = data;
    atomic_fetch_add(&m->gate_entered, 1);
    int rc = sq_sem_acquire(&m->gate, 1);
    if (rc) {
        atomic_fetch_add(&m->gate_cancelled, 1);
        return sq_mcp_fail(r, -32603, "gate: cancelled", NULL);
    }
    atomic_fetch_add(&m->gate_passed, 1);
    *result = sq_mcp_text_result("passed");
    return SQ_MCP_OK;
}

/* blob {n}: n bytes of 'x' as one text item. */
static int blob_tool(sq_mcp_req *r, json_t *args, void *data, json_t **result)
{
    (void)data;
    json_int_t n = json_integer_value(json_object_get(args, "n"));
    if (n < 0 || n > (64 << 20))
        return sq_mcp_fail(r, -32602, "n out of range", NULL);
    char *text = malloc((size_t)n + 1);
    memset(text, 'x', (size_t)n);
    text[n] = '\0';
    *result = sq_mcp_text_result(text);
    free(text);
    return SQ_MCP_OK;
}

static atomic_int unix_seq;

void mt_config(sq_srv_config *c)
{
    sq_srv_config_init(c);
    c->fixtures = strdup("bench");
    c->log_level = SQ_MCP_ERROR_LEVEL; /* the tests' own noise is expected */
    sq_srv_config_add_listen(c, SQ_LISTEN_HTTP, "127.0.0.1:0");
    sq_srv_config_add_listen(c, SQ_LISTEN_TCP, "127.0.0.1:0");
    char path[108];
    snprintf(path, sizeof path, "/tmp/mcptest-%d-%d.sock", (int)getpid(),
             atomic_fetch_add(&unix_seq, 1));
    sq_srv_config_add_listen(c, SQ_LISTEN_UNIX, path);
}

static int port_of(const char *url)
{
    const char *colon = strrchr(url, ':');
    return colon ? atoi(colon + 1) : -1;
}

mt_server *mt_start_with(const sq_srv_config *c)
{
    mt_server *m = calloc(1, sizeof *m);
    sq_sem_init(&m->gate, 0);
    char err[256];
    int rc = sq_srv_create(&m->srv, c, err, sizeof err);
    if (rc) {
        sq_test_fail(__FILE__, __LINE__, err);
        abort();
    }
    json_t *none = json_pack("{s:s}", "type", "object");
    sq_mcp_tool_def gate = {.name = "gate",
                            .description = "Waits until the test lets it through.",
                            .input_schema = none,
                            .call = gate_tool,
                            .data = m};
    sq_mcp_tool_def blob = {.name = "blob",
                            .description = "n bytes of text.",
                            .input_schema = none,
                            .call = blob_tool};
    CHECK_EQ(sq_mcp_add_tool(m->srv, &gate), 0);
    CHECK_EQ(sq_mcp_add_tool(m->srv, &blob), 0);
    json_decref(none);
    for (size_t i = 0; i < c->nlisten; i++) {
        char *url = NULL;
        rc = sq_srv_listen(m->srv, &c->listen[i], &url);
        CHECK_EQ(rc, 0);
        if (rc)
            abort();
        if (c->listen[i].kind == SQ_LISTEN_HTTP)
            m->http_port = port_of(url);
        else if (c->listen[i].kind == SQ_LISTEN_TCP)
            m->tcp_port = port_of(url);
        else if (c->listen[i].kind == SQ_LISTEN_ADMIN)
            m->admin_port = port_of(url);
        else
            snprintf(m->unix_path, sizeof m->unix_path, "%s", c->listen[i].address);
        free(url);
    }
    return m;
}

mt_server *mt_start(void)
{
    sq_srv_config c;
    mt_config(&c);
    mt_server *m = mt_start_with(&c);
    sq_srv_config_free(&c);
    return m;
}

void mt_stop(mt_server *m)
{
    CHECK_EQ(sq_srv_stop(m->srv, 0), 0);
    sq_srv_destroy(m->srv);
    if (m->unix_path[0])
        unlink(m->unix_path);
    sq_sem_destroy(&m->gate);
    free(m);
}

void mt_gate_open(mt_server *m, int n)
{
    sq_sem_release(&m->gate, (size_t)n);
}

/* ------------------------------------------ newline-delimited clients */

mt_conn *mt_conn_of(sq_io *rd, sq_io *wr)
{
    mt_conn *c = calloc(1, sizeof *c);
    c->rd = rd;
    c->wr = wr;
    return c;
}

mt_conn *mt_tcp(mt_server *m)
{
    sq_io *io = NULL;
    CHECK_EQ(sq_tcp_connect(&io, "127.0.0.1", m->tcp_port), 0);
    sq_tcp_nodelay(io, 1); /* each line goes when written, as a client's would */
    return mt_conn_of(io, io);
}

mt_conn *mt_unix(mt_server *m)
{
    sq_io *io = NULL;
    CHECK_EQ(sq_unix_connect(&io, m->unix_path), 0);
    return mt_conn_of(io, io);
}

typedef struct stdio_arg {
    sq_srv *srv;
    int in, out;
} stdio_arg;

static void *serve_stdio(void *arg)
{
    stdio_arg a = *(stdio_arg *)arg;
    free(arg);
    CHECK_EQ(sq_srv_serve_stdio(a.srv, a.in, a.out), 0);
    return NULL;
}

mt_conn *mt_stdio(mt_server *m)
{
    int in[2], out[2];
    CHECK_EQ(pipe2(in, O_CLOEXEC), 0);
    CHECK_EQ(pipe2(out, O_CLOEXEC), 0);
    sq_io *rd, *wr;
    CHECK_EQ(sq_io_adopt(&wr, in[1]), 0);
    CHECK_EQ(sq_io_adopt(&rd, out[0]), 0);
    mt_conn *c = mt_conn_of(rd, wr);
    stdio_arg *a = malloc(sizeof *a);
    *a = (stdio_arg){m->srv, in[0], out[1]};
    sq_spawn_opts o = {.name = "test-stdio"};
    CHECK_EQ(sq_spawn(&c->serve, serve_stdio, a, &o), 0);
    c->serving = true;
    return c;
}

void mt_send(mt_conn *c, const char *bytes, size_t n)
{
    CHECK_EQ(sq_io_write(c->wr, bytes, n), (long long)n);
}

void mt_line(mt_conn *c, const char *fmt, ...)
{
    va_list ap;
    sq__strbuf b = SQ__STRBUF_INIT;
    va_start(ap, fmt);
    sq__strbuf_vprintf(&b, fmt, ap);
    va_end(ap);
    sq__strbuf_putc(&b, '\n');
    mt_send(c, b.buf, b.len);
    sq__strbuf_free(&b);
}

char *mt_next_until(mt_conn *c, int64_t deadline)
{
    for (;;) {
        const char *start = sq__strbuf_str(&c->in) + c->off;
        const char *nl = memchr(start, '\n', c->in.len - c->off);
        if (nl) {
            char *line = strndup(start, (size_t)(nl - start));
            c->off += (size_t)(nl - start) + 1;
            if (c->off > 65536) { /* drop what was read */
                memmove(c->in.buf, c->in.buf + c->off, c->in.len - c->off);
                c->in.len -= c->off;
                c->off = 0;
            }
            return line;
        }
        if (c->eof)
            return NULL;
        char buf[65536];
        ssize_t n = sq_io_read_until(c->rd, buf, sizeof buf, deadline);
        if (n == -ETIMEDOUT)
            return NULL;
        if (n <= 0) {
            c->eof = true;
            continue;
        }
        sq__strbuf_add(&c->in, buf, (size_t)n);
    }
}

char *mt_next(mt_conn *c)
{
    char *line = mt_next_until(c, sq_now() + MT_WAIT);
    if (!line && !c->eof)
        sq_test_fail(__FILE__, __LINE__, "no line from the server in time");
    return line;
}

bool mt_expect_eof(mt_conn *c)
{
    char *line = mt_next(c);
    if (line) {
        report(__FILE__, __LINE__, "a line where the end was expected", line, "(end)");
        free(line);
        return false;
    }
    return c->eof;
}

void mt_shut(mt_conn *c)
{
    if (c->rd == c->wr) {
        CHECK_EQ(sq_io_shutdown_write(c->wr), 0);
    } else if (c->wr) {
        sq_io_close(c->wr);
        c->wr = NULL;
    }
}

void mt_close(mt_conn *c)
{
    if (!c)
        return;
    if (c->wr && c->wr != c->rd)
        sq_io_close(c->wr);
    if (c->serving) {
        /* The server's stdio ends at end of input (and answers what is
         * still running first): read its output meanwhile. */
        char buf[4096];
        while (sq_io_read_until(c->rd, buf, sizeof buf, sq_now() + MT_WAIT) > 0)
            ;
        CHECK_EQ(sq_join_until(c->serve, NULL, sq_now() + MT_WAIT), 0);
    }
    sq_io_close(c->rd);
    sq__strbuf_free(&c->in);
    free(c);
}

void mt_init(mt_conn *c, const char *version)
{
    mt_line(c,
            "{\"jsonrpc\":\"2.0\",\"id\":\"init\",\"method\":\"initialize\","
            "\"params\":{\"protocolVersion\":\"%s\",\"capabilities\":{},"
            "\"clientInfo\":{\"name\":\"mcptest\",\"version\":\"1\"}}}",
            version);
    char *got = mt_next(c);
    CHECK_ID(got, "\"init\"");
    json_t *j = got ? json_loads(got, 0, NULL) : NULL;
    const char *v = json_string_value(
        json_object_get(json_object_get(j, "result"), "protocolVersion"));
    CHECK_STR(v, version);
    json_decref(j);
    free(got);
    mt_line(c, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}");
}

/* ---------------------------------------------------------------- HTTP */

static mt_http *http_of(llhttp_t *p)
{
    return p->data;
}

static int on_begin(llhttp_t *p)
{
    mt_http *h = http_of(p);
    mt_resp *r = calloc(1, sizeof *r);
    if (h->last)
        h->last->next = r;
    else
        h->first = r;
    h->last = h->cur = r;
    h->in_value = false;
    return 0;
}

static int on_field(llhttp_t *p, const char *at, size_t n)
{
    mt_http *h = http_of(p);
    if (h->in_value)
        sq__strbuf_putc(&h->cur->head, '\n');
    h->in_value = false;
    for (size_t i = 0; i < n; i++)
        sq__strbuf_putc(&h->cur->head, (char)tolower((unsigned char)at[i]));
    return 0;
}

static int on_value(llhttp_t *p, const char *at, size_t n)
{
    mt_http *h = http_of(p);
    if (!h->in_value)
        sq__strbuf_puts(&h->cur->head, ": ");
    h->in_value = true;
    sq__strbuf_add(&h->cur->head, at, n);
    return 0;
}

static int on_headers(llhttp_t *p)
{
    mt_http *h = http_of(p);
    if (h->in_value)
        sq__strbuf_putc(&h->cur->head, '\n');
    h->in_value = false;
    h->cur->status = p->status_code;
    h->cur->headed = true;
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n)
{
    sq__strbuf_add(&http_of(p)->cur->body, at, n);
    return 0;
}

static int on_complete(llhttp_t *p)
{
    mt_http *h = http_of(p);
    h->cur->complete = true;
    h->cur->keep_alive = llhttp_should_keep_alive(p);
    if (!h->cur->body.buf)
        sq__strbuf_puts(&h->cur->body, "");
    return 0;
}

mt_http *mt_http_open(mt_server *m)
{
    return mt_http_at(m->http_port);
}

mt_http *mt_http_at(int port)
{
    mt_http *h = calloc(1, sizeof *h);
    h->port = port;
    CHECK_EQ(sq_tcp_connect(&h->io, "127.0.0.1", port), 0);
    sq_tcp_nodelay(h->io, 1);
    llhttp_settings_init(&h->settings);
    h->settings.on_message_begin = on_begin;
    h->settings.on_header_field = on_field;
    h->settings.on_header_value = on_value;
    h->settings.on_headers_complete = on_headers;
    h->settings.on_body = on_body;
    h->settings.on_message_complete = on_complete;
    llhttp_init(&h->parser, HTTP_RESPONSE, &h->settings);
    h->parser.data = h;
    return h;
}

void mt_http_close(mt_http *h)
{
    if (!h)
        return;
    sq_io_close(h->io);
    for (mt_resp *r = h->first, *n; r; r = n) {
        n = r->next;
        sq__strbuf_free(&r->head);
        sq__strbuf_free(&r->body);
        free(r);
    }
    free(h);
}

void mt_http_raw(mt_http *h, const char *bytes, size_t n)
{
    CHECK_EQ(sq_io_write(h->io, bytes, n), (long long)n);
}

static void request(mt_http *h, const char *method, const char *headers,
                    const char *body)
{
    sq__strbuf b = SQ__STRBUF_INIT;
    sq__strbuf_printf(&b, "%s /mcp HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n", method, h->port);
    if (body)
        sq__strbuf_printf(&b,
                          "Content-Type: application/json\r\n"
                          "Accept: application/json, text/event-stream\r\n"
                          "Content-Length: %zu\r\n",
                          strlen(body));
    else if (strcmp(method, "GET") == 0)
        sq__strbuf_puts(&b, "Accept: text/event-stream\r\n");
    if (headers)
        sq__strbuf_puts(&b, headers);
    sq__strbuf_puts(&b, "\r\n");
    if (body)
        sq__strbuf_puts(&b, body);
    mt_http_raw(h, b.buf, b.len);
    sq__strbuf_free(&b);
}

void mt_http_post(mt_http *h, const char *headers, const char *body)
{
    request(h, "POST", headers, body);
}

void mt_http_get(mt_http *h, const char *headers)
{
    request(h, "GET", headers, NULL);
}

void mt_http_delete(mt_http *h, const char *headers)
{
    request(h, "DELETE", headers, NULL);
}

/* Reads once and parses what came: 1, 0 at end of stream, -ETIMEDOUT. */
static int http_fill(mt_http *h, int64_t deadline)
{
    if (h->eof)
        return 0;
    char buf[65536];
    ssize_t n = sq_io_read_until(h->io, buf, sizeof buf, deadline);
    if (n == -ETIMEDOUT)
        return (int)n;
    if (n <= 0) {
        h->eof = true;
        if (!h->failed && llhttp_finish(&h->parser) != HPE_OK) {
            h->failed = true;
            sq_test_fail(__FILE__, __LINE__, llhttp_get_error_reason(&h->parser));
        }
        return 0;
    }
    if (h->failed)
        return 1;
    llhttp_errno_t e = llhttp_execute(&h->parser, buf, (size_t)n);
    if (e != HPE_OK) {
        h->failed = true;
        char *m = mt_fmt("the server's bytes are not HTTP: %s (%s)", llhttp_errno_name(e),
                         llhttp_get_error_reason(&h->parser));
        sq_test_fail(__FILE__, __LINE__, m);
        free(m);
    }
    return 1;
}

mt_resp *mt_http_next(mt_http *h)
{
    int64_t deadline = sq_now() + MT_WAIT;
    for (;;) {
        mt_resp *r = h->given ? h->given->next : h->first;
        if (r && r->headed) {
            h->given = r;
            return r;
        }
        if (http_fill(h, deadline) <= 0) {
            sq_test_fail(__FILE__, __LINE__, h->eof ? "the server closed instead of answering"
                                                    : "no answer from the server in time");
            return NULL;
        }
    }
}

bool mt_http_body(mt_http *h, mt_resp *r)
{
    int64_t deadline = sq_now() + MT_WAIT;
    while (r && !r->complete)
        if (http_fill(h, deadline) <= 0)
            break;
    if (!r || !r->complete)
        sq_test_fail(__FILE__, __LINE__, "the body did not come whole");
    return r && r->complete;
}

char *mt_hdr(const mt_resp *r, const char *name)
{
    size_t n = strlen(name);
    const char *p = sq__strbuf_str(&r->head);
    while (*p) {
        if (strncmp(p, name, n) == 0 && p[n] == ':')
            return (char *)p + n + 2;
        p = strchr(p, '\n');
        if (!p)
            break;
        p++;
    }
    return NULL;
}

bool mt_hdr_is(const mt_resp *r, const char *name, const char *want)
{
    const char *v = r ? mt_hdr(r, name) : NULL;
    if (!v)
        return false;
    size_t n = strcspn(v, "\n");
    return strlen(want) == n && strncmp(v, want, n) == 0;
}

bool mt_http_expect_eof(mt_http *h)
{
    int64_t deadline = sq_now() + MT_WAIT;
    for (;;) {
        mt_resp *r = h->given ? h->given->next : h->first;
        if (r) {
            report(__FILE__, __LINE__, "a response where the end was expected",
                   sq__strbuf_str(&r->head), "(end)");
            return false;
        }
        int rc = http_fill(h, deadline);
        if (rc == 0)
            return true;
        if (rc < 0) {
            sq_test_fail(__FILE__, __LINE__, "the server did not close in time");
            return false;
        }
    }
}

void mt_event_free(mt_event *ev)
{
    free(ev->id);
    free(ev->event);
    free(ev->data);
    memset(ev, 0, sizeof *ev);
}

/* Parses the event at r->sse_off if it is whole (lines ended by LF, CR or
 * CRLF; the blank line ends it). */
static bool sse_parse(mt_resp *r, mt_event *ev)
{
    memset(ev, 0, sizeof *ev);
    ev->retry = -1;
    const char *base = sq__strbuf_str(&r->body);
    size_t len = r->body.len, off = r->sse_off;
    bool any = false;
    sq__strbuf data = SQ__STRBUF_INIT;
    bool has_data = false;
    while (off < len) {
        size_t e = off;
        while (e < len && base[e] != '\n' && base[e] != '\r')
            e++;
        if (e == len)
            break; /* the line is not whole yet */
        size_t next = e + 1;
        if (base[e] == '\r') {
            if (e + 1 == len && !r->complete)
                break; /* a CR that may be a CRLF's */
            if (e + 1 < len && base[e + 1] == '\n')
                next++;
        }
        const char *line = base + off;
        size_t n = e - off;
        off = next;
        if (n == 0) {
            if (!any)
                continue;
            r->sse_off = off;
            if (has_data)
                ev->data = sq__strbuf_take(&data);
            return true;
        }
        if (line[0] == ':')
            continue;
        const char *colon = memchr(line, ':', n);
        size_t fn = colon ? (size_t)(colon - line) : n;
        const char *v = colon ? colon + 1 : line + n;
        if (colon && v < line + n && *v == ' ')
            v++;
        size_t vn = (size_t)(line + n - v);
        any = true;
        if (fn == 4 && strncmp(line, "data", 4) == 0) {
            if (has_data)
                sq__strbuf_putc(&data, '\n');
            sq__strbuf_add(&data, v, vn);
            if (!data.buf)
                sq__strbuf_puts(&data, "");
            has_data = true;
        } else if (fn == 2 && strncmp(line, "id", 2) == 0) {
            free(ev->id);
            ev->id = strndup(v, vn);
        } else if (fn == 5 && strncmp(line, "event", 5) == 0) {
            free(ev->event);
            ev->event = strndup(v, vn);
        } else if (fn == 5 && strncmp(line, "retry", 5) == 0) {
            ev->retry = atol(v);
        }
    }
    sq__strbuf_free(&data);
    mt_event_free(ev);
    return false;
}

bool mt_sse_next(mt_http *h, mt_resp *r, mt_event *ev)
{
    int64_t deadline = sq_now() + MT_WAIT;
    for (;;) {
        if (sse_parse(r, ev))
            return true;
        if (r->complete)
            return false;
        if (http_fill(h, deadline) <= 0) {
            sq_test_fail(__FILE__, __LINE__, "no event from the server in time");
            return false;
        }
    }
}

char *mt_sse_msg(mt_http *h, mt_resp *r)
{
    mt_event ev;
    while (mt_sse_next(h, r, &ev)) {
        if (ev.data && ev.data[0]) {
            char *d = ev.data;
            ev.data = NULL;
            mt_event_free(&ev);
            return d;
        }
        mt_event_free(&ev);
    }
    return NULL;
}

void mt_msgs_free(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

char **mt_http_msgs(mt_http *h, mt_resp *r)
{
    size_t n = 0;
    char **v = calloc(1, sizeof *v);
    if (!r)
        return v;
    if (mt_hdr_is(r, "content-type", "text/event-stream")) {
        char *m;
        while ((m = mt_sse_msg(h, r))) {
            v = realloc(v, (n + 2) * sizeof *v);
            v[n++] = m;
            v[n] = NULL;
        }
        if (!r->complete)
            mt_http_body(h, r);
    } else if (mt_http_body(h, r) && r->body.len) {
        v = realloc(v, 2 * sizeof *v);
        v[0] = strdup(r->body.buf);
        v[1] = NULL;
    }
    return v;
}

char *mt_http_answer(mt_http *h, mt_resp *r)
{
    char **v = mt_http_msgs(h, r);
    size_t n = 0;
    while (v[n])
        n++;
    char *last = n ? v[n - 1] : NULL;
    if (n)
        v[n - 1] = NULL;
    mt_msgs_free(v);
    return last;
}

char *mt_post1(mt_server *m, const char *headers, const char *body, int *status)
{
    return mt_post_at(m->http_port, headers, body, status);
}

char *mt_post_at(int port, const char *headers, const char *body, int *status)
{
    mt_http *h = mt_http_at(port);
    mt_http_post(h, headers, body);
    mt_resp *r = mt_http_next(h);
    if (status)
        *status = r ? r->status : -1;
    char *a = mt_http_answer(h, r);
    mt_http_close(h);
    return a;
}

char *mt_sess_headers(const char *sid, const char *version)
{
    return mt_fmt("Mcp-Session-Id: %s\r\nMCP-Protocol-Version: %s\r\n", sid, version);
}

char *mt_modern_headers(const char *method, const char *name)
{
    return name ? mt_fmt("MCP-Protocol-Version: 2026-07-28\r\nMcp-Method: %s\r\n"
                         "Mcp-Name: %s\r\n",
                         method, name)
                : mt_fmt("MCP-Protocol-Version: 2026-07-28\r\nMcp-Method: %s\r\n", method);
}

char *mt_session(mt_server *m, const char *version)
{
    mt_http *h = mt_http_open(m);
    char *body = mt_fmt("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":"
                        "{\"protocolVersion\":\"%s\",\"capabilities\":{},\"clientInfo\":"
                        "{\"name\":\"mcptest\",\"version\":\"1\"}}}",
                        version);
    mt_http_post(h, NULL, body);
    free(body);
    mt_resp *r = mt_http_next(h);
    char *sid = NULL;
    if (r && r->status == 200 && mt_hdr(r, "mcp-session-id")) {
        const char *v = mt_hdr(r, "mcp-session-id");
        sid = strndup(v, strcspn(v, "\n"));
    }
    CHECK(sid != NULL);
    char *a = mt_http_answer(h, r);
    free(a);
    if (sid) {
        char *hd = mt_sess_headers(sid, version);
        mt_http_post(h, hd, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}");
        free(hd);
        r = mt_http_next(h);
        CHECK(r && r->status == 202);
        if (r)
            mt_http_body(h, r);
    }
    mt_http_close(h);
    return sid;
}

/* ----------------------------------------------------- squirreld itself */

mt_child *mt_spawn(const char *const *args)
{
    return mt_spawn_env(args, NULL);
}

mt_child *mt_spawn_env(const char *const *args, const char *const *env)
{
    int in[2], out[2], err[2];
    CHECK_EQ(pipe2(in, O_CLOEXEC), 0);
    CHECK_EQ(pipe2(out, O_CLOEXEC), 0);
    CHECK_EQ(pipe2(err, O_CLOEXEC), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, err[1], 2);
    /* The runtime's threads block no signals the child should see, but a
     * test may: the child starts with none blocked and default actions. */
    posix_spawnattr_t at;
    posix_spawnattr_init(&at);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &all);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    /* "--store memory" first (a later --store in args wins): without it
     * squirreld keeps contexts in squirreld.db in its working directory,
     * which tests running at the same time would share (and the second
     * would be refused: one squirreld per store). */
    const char *argv[34] = {SQUIRRELD_PATH, "--store", "memory"};
    size_t n = 3;
    for (; args[n - 3] && n < 33; n++)
        argv[n] = args[n - 3];
    argv[n] = NULL;
    /* The environment, with env's entries in place of those they name. */
    size_t ne = 0, na = 0;
    while (environ[ne])
        ne++;
    while (env && env[na])
        na++;
    char **envp = calloc(ne + na + 1, sizeof *envp);
    size_t k = 0;
    for (size_t i = 0; i < ne; i++) {
        bool replaced = false;
        for (size_t j = 0; j < na && !replaced; j++) {
            size_t n = strcspn(env[j], "=") + 1;
            replaced = strncmp(environ[i], env[j], n) == 0;
        }
        if (!replaced)
            envp[k++] = environ[i];
    }
    for (size_t j = 0; j < na; j++)
        envp[k++] = (char *)env[j];
    envp[k] = NULL;
    mt_child *c = calloc(1, sizeof *c);
    int rc = posix_spawn(&c->pid, SQUIRRELD_PATH, &fa, &at, (char *const *)argv, envp);
    free(envp);
    CHECK_EQ(rc, 0);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    close(in[0]);
    close(out[1]);
    close(err[1]);
    sq_io *w, *r, *e;
    CHECK_EQ(sq_io_adopt(&w, in[1]), 0);
    CHECK_EQ(sq_io_adopt(&r, out[0]), 0);
    CHECK_EQ(sq_io_adopt(&e, err[0]), 0);
    c->io = mt_conn_of(r, w);
    c->err = mt_conn_of(e, e);
    return c;
}

int mt_child_port(mt_child *c, const char *scheme)
{
    char *want = mt_fmt("listening on %s://", scheme);
    int port = 0;
    for (char *l; !port && (l = mt_next(c->err)) != NULL; free(l)) {
        const char *u = strstr(l, want);
        const char *colon = u ? strchr(u + strlen(want), ':') : NULL;
        port = colon ? atoi(colon + 1) : 0;
    }
    free(want);
    return port;
}

int mt_child_wait(mt_child *c, int64_t deadline)
{
    /* A child's exit cannot be waited for through the reactor (a pidfd is
     * not readable with read(2)): look, then sleep a little, until it has
     * exited or the deadline. */
    while (!c->reaped) {
        pid_t p = waitpid(c->pid, &c->status, WNOHANG);
        if (p == c->pid) {
            c->reaped = true;
            break;
        }
        if (sq_now() >= deadline) {
            kill(c->pid, SIGKILL);
            waitpid(c->pid, &c->status, 0);
            c->reaped = true;
            return -1;
        }
        sq_sleep(2 * SQ_MSEC);
    }
    if (WIFEXITED(c->status))
        return WEXITSTATUS(c->status);
    return 128 + WTERMSIG(c->status);
}

/* A child that ended by itself with a failure (a sanitizer's report, a
 * check's abort) while the test still counted on it: the end of what it
 * wrote on stderr, which says why (a test only sees a connection close). */
static void report_child_death(mt_child *c)
{
    int st = c->status;
    if ((WIFEXITED(st) && WEXITSTATUS(st) == 0) ||
        (WIFSIGNALED(st) && (WTERMSIG(st) == SIGKILL || WTERMSIG(st) == SIGTERM)))
        return;
    enum { KEEP = 60 };
    char *last[KEEP] = {0};
    size_t n = 0;
    int64_t deadline = sq_now() + 5 * SQ_SEC;
    for (char *l; (l = mt_next_until(c->err, deadline)) != NULL; n++) {
        free(last[n % KEEP]);
        last[n % KEEP] = l;
    }
    fprintf(stderr, "    squirreld (pid %d) had ended by itself (%s %d); the last %zu "
                    "lines of its stderr:\n",
            (int)c->pid, WIFEXITED(st) ? "exit code" : "signal",
            WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), n < KEEP ? n : (size_t)KEEP);
    for (size_t i = n > KEEP ? n - KEEP : 0; i < n; i++) {
        fprintf(stderr, "    | %s\n", last[i % KEEP]);
        free(last[i % KEEP]);
    }
}

void mt_child_free(mt_child *c)
{
    if (!c)
        return;
    if (!c->reaped) {
        if (waitpid(c->pid, &c->status, WNOHANG) == c->pid) {
            c->reaped = true;
            report_child_death(c);
        } else {
            kill(c->pid, SIGKILL);
            waitpid(c->pid, &c->status, 0);
        }
    }
    if (c->io->wr)
        sq_io_close(c->io->wr);
    c->io->wr = NULL;
    mt_close(c->io);
    c->err->wr = NULL;
    mt_close(c->err);
    free(c);
}

char *mt_get(int port, const char *path, const char *headers, int *status)
{
    mt_http *h = mt_http_at(port);
    char *req = mt_fmt("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%sContent-Length: 0\r\n\r\n",
                       path, port, headers ? headers : "");
    mt_http_raw(h, req, strlen(req));
    free(req);
    char *body = NULL;
    *status = 0;
    mt_resp *r = mt_http_next(h);
    if (r && mt_http_body(h, r)) {
        *status = r->status;
        body = strdup(r->body.buf ? r->body.buf : "");
    }
    mt_http_close(h);
    return body;
}

char *mt_call_modern(mt_server *m, const char *tool, const char *args, int *status)
{
    char *body = mt_fmt("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":"
                        "{\"name\":\"%s\",\"arguments\":%s," MT_META "}}", tool, args);
    char *hdr = mt_modern_headers("tools/call", tool);
    int st;
    char *ans = mt_post1(m, hdr, body, status ? status : &st);
    free(hdr);
    free(body);
    return ans;
}
