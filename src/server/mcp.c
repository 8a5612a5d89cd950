/* The handler's view of a request (sq_server/mcp.h). */
#include "srv.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const level_names[SQ_MCP_NLEVELS] = {
    "debug", "info", "notice", "warning", "error", "critical", "alert",
    "emergency",
};

const char *sq_mcp_level_name(int level)
{
    return level >= 0 && level < SQ_MCP_NLEVELS ? level_names[level] : "info";
}

int sq_mcp_level_parse(const char *name)
{
    for (int i = 0; name && i < SQ_MCP_NLEVELS; i++)
        if (strcmp(name, level_names[i]) == 0)
            return i;
    return -1;
}

sq_srv *sq_mcp_server(const sq_mcp_req *r) { return r->srv; }
int sq_mcp_era(const sq_mcp_req *r) { return r->era; }
const char *sq_mcp_version(const sq_mcp_req *r) { return r->version; }
json_t *sq_mcp_client_caps(const sq_mcp_req *r) { return r->caps; }
const char *sq_mcp_method(const sq_mcp_req *r) { return r->method; }
json_t *sq_mcp_params(const sq_mcp_req *r) { return r->params; }
int64_t sq_mcp_deadline(const sq_mcp_req *r) { return r->deadline; }

const char *sq_mcp_session_id(const sq_mcp_req *r)
{
    return r->sess && r->sess->id[0] ? r->sess->id : NULL;
}

bool sq_mcp_client_has(const sq_mcp_req *r, const char *cap)
{
    /* "extensions.<id>": the id is the rest, dots and all. */
    if (strncmp(cap, "extensions.", 11) == 0)
        return json_is_object(json_object_get(
            json_object_get(r->caps, "extensions"), cap + 11));
    json_t *v = r->caps;
    char part[64];
    for (const char *p = cap; v && *p;) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        if (n >= sizeof part)
            return false;
        memcpy(part, p, n);
        part[n] = '\0';
        v = json_object_get(v, part);
        p += n + (dot ? 1 : 0);
    }
    return v && !json_is_false(v) && !json_is_null(v);
}

int sq_mcp_progress(sq_mcp_req *r, double progress, double total,
                    const char *message)
{
    if (!r->progress_token)
        return 0;
    if (!(progress > r->last_progress))
        return -EINVAL;
    r->last_progress = progress;
    json_t *p = json_pack("{s:O,s:f}", "progressToken", r->progress_token,
                          "progress", progress);
    if (!p)
        return -ENOMEM;
    if (total >= 0)
        json_object_set_new(p, "total", json_real(total));
    if (message)
        json_object_set_new(p, "message", json_string(message));
    sq__strbuf b = SQ__STRBUF_INIT;
    sq_rpc_write_notification(&b, "notifications/progress", p);
    json_decref(p);
    int rc = b.failed ? -ENOMEM : sq_req_emit(r, b.buf, b.len);
    sq__strbuf_free(&b);
    return rc;
}

int sq_mcp_log(sq_mcp_req *r, int level, const char *logger, json_t *data)
{
    int min = r->era == SQ_MCP_LEGACY && r->sess
                  ? atomic_load(&r->sess->log_level)
                  : r->log_level;
    if (min < 0 || level < min)
        return 0;
    json_t *p = json_pack("{s:s,s:O}", "level", sq_mcp_level_name(level),
                          "data", data ? data : json_null());
    if (!p)
        return -ENOMEM;
    if (logger)
        json_object_set_new(p, "logger", json_string(logger));
    sq__strbuf b = SQ__STRBUF_INIT;
    sq_rpc_write_notification(&b, "notifications/message", p);
    json_decref(p);
    int rc = b.failed ? -ENOMEM : sq_req_emit(r, b.buf, b.len);
    sq__strbuf_free(&b);
    return rc;
}

json_t *sq_mcp_input(const sq_mcp_req *r, const char *key)
{
    return json_object_get(r->inputs, key);
}

json_t *sq_mcp_state(const sq_mcp_req *r)
{
    return r->state;
}

int sq_mcp_fail(sq_mcp_req *r, int code, const char *message, json_t *data)
{
    r->err_code = code;
    free(r->err_msg);
    r->err_msg = strdup(message ? message : "error");
    json_decref(r->err_data);
    r->err_data = data;
    return SQ_MCP_ERROR;
}

json_t *sq_mcp_text_result(const char *text)
{
    return json_pack("{s:[{s:s,s:s}]}", "content", "type", "text", "text",
                     text ? text : "");
}

json_t *sq_mcp_tool_error(const char *text)
{
    json_t *r = sq_mcp_text_result(text);
    if (r)
        json_object_set_new(r, "isError", json_true());
    return r;
}

/* ---------------------------------------------------------- batches */

sq_batch *sq_batch_new(sq_outq *out, int n)
{
    sq_batch *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->pending = n;
    b->out = sq_outq_ref(out);
    atomic_init(&b->refs, 1);
    return b;
}

void sq_batch_add(sq_batch *b, const char *text, size_t len)
{
    bool last;
    sq__spin_lock(&b->lock);
    if (text && len) {
        sq__strbuf_putc(&b->text, b->any ? ',' : '[');
        sq__strbuf_add(&b->text, text, len);
        b->any = true;
    }
    last = --b->pending == 0;
    sq__spin_unlock(&b->lock);
    if (last && b->any) {
        /* Every response is in: the array goes out as one message. */
        sq__strbuf_putc(&b->text, ']');
        if (!b->text.failed)
            sq_outq_push(b->out, b->text.buf, b->text.len, true);
    } else if (last) {
        sq_outq_push(b->out, "", 0, true); /* nothing to answer */
    }
}

void sq_batch_unref(sq_batch *b)
{
    if (!b || atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) != 1)
        return;
    sq__strbuf_free(&b->text);
    sq_outq_unref(b->out);
    free(b);
}
