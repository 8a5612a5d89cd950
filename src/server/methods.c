/* The methods (methods.h), written once for both eras: dispatch.c puts
 * each result in its era's envelope. */
#include "methods.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sq_base/base64.h"
#include "sq_server/schema.h"

static const char *param_str(sq_mcp_req *r, const char *key)
{
    return json_string_value(json_object_get(r->params, key));
}

/* The optional "cursor" param: NULL, a string, or a -32602. */
static int take_cursor(sq_mcp_req *r, const char **cursor)
{
    json_t *c = json_object_get(r->params, "cursor");
    *cursor = NULL;
    if (!c || json_is_null(c))
        return 0;
    if (!json_is_string(c))
        return sq_mcp_fail(r, SQ_RPC_INVALID_PARAMS, "cursor must be a string",
                           NULL);
    *cursor = json_string_value(c);
    return 0;
}

static int bad_cursor(sq_mcp_req *r)
{
    return sq_mcp_fail(r, SQ_RPC_INVALID_PARAMS,
                       "invalid cursor (cursors come from nextCursor of the same list)",
                       NULL);
}

/* --------------------------------------------------------- capabilities */

json_t *sq_server_caps(sq_srv *s, int era)
{
    (void)s;
    json_t *c = json_pack("{s:{s:b},s:{s:b,s:b},s:{s:b},s:{},s:{}}", "tools",
                          "listChanged", 1, "resources", "subscribe", 1,
                          "listChanged", 1, "prompts", "listChanged", 1,
                          "logging", "completions");
    if (c && era == SQ_MCP_MODERN)
        json_object_set_new(c, "extensions",
                            json_pack("{s:{}}", SQ_TASKS_EXT));
    return c;
}

json_t *sq_initialize_result(sq_srv *s, const char *asked, const char **version)
{
    /* The version asked for if served, else the newest (the client then
     * decides whether it can speak it). */
    *version = sq__legacy_version_ok(asked) ? asked : sq__legacy_versions[0];
    for (int i = 0; sq__legacy_versions[i]; i++)
        if (strcmp(*version, sq__legacy_versions[i]) == 0)
            *version = sq__legacy_versions[i]; /* the static copy */
    json_t *res = json_pack("{s:s,s:o,s:o}", "protocolVersion", *version,
                            "capabilities", sq_server_caps(s, SQ_MCP_LEGACY),
                            "serverInfo", sq_server_info(s));
    if (res && s->cfg.instructions)
        json_object_set_new(res, "instructions", json_string(s->cfg.instructions));
    return res;
}

/* ---------------------------------------------------------- utilities */

int sq_m_ping(sq_mcp_req *r, json_t **result)
{
    (void)r;
    *result = json_object();
    return SQ_MCP_OK;
}

int sq_m_set_level(sq_mcp_req *r, json_t **result)
{
    int level = sq_mcp_level_parse(param_str(r, "level"));
    if (level < 0)
        return sq_mcp_fail(r, SQ_RPC_INVALID_PARAMS,
                           "level must be one of debug, info, notice, warning, "
                           "error, critical, alert, emergency",
                           NULL);
    if (r->sess) {
        atomic_store(&r->sess->log_level, level);
        atomic_store(&r->sess->logs_asked, true);
    }
    *result = json_object();
    return SQ_MCP_OK;
}

/* ---------------------------------------------------------------- lists */

static int list_of(sq_mcp_req *r, int kind, const char *field, json_t **result)
{
    const char *cursor;
    if (take_cursor(r, &cursor))
        return SQ_MCP_ERROR;
    json_t *items = json_array();
    char *next = NULL;
    if (sq_registry_page(r->srv, kind, cursor, items, &next) != 0) {
        json_decref(items);
        return bad_cursor(r);
    }
    *result = json_pack("{s:o}", field, items);
    if (next)
        json_object_set_new(*result, "nextCursor", json_string(next));
    free(next);
    return SQ_MCP_OK;
}

int sq_m_tools_list(sq_mcp_req *r, json_t **result)
{
    return list_of(r, SQ_ENTRY_TOOL, "tools", result);
}

int sq_m_prompts_list(sq_mcp_req *r, json_t **result)
{
    return list_of(r, SQ_ENTRY_PROMPT, "prompts", result);
}

int sq_m_templates_list(sq_mcp_req *r, json_t **result)
{
    return list_of(r, SQ_ENTRY_TEMPLATE, "resourceTemplates", result);
}

/* resources/list: the registered resources, then what each template with
 * a list function has, template after template.  The cursor says where:
 * {"r": <registry cursor>} or {"t": <template>, "c": <its cursor>}, as
 * base64url of JSON. */
static char *resource_cursor(json_t *c)
{
    char *js = json_dumps(c, JSON_COMPACT);
    char *enc = js ? sq__b64_encode(js, strlen(js), true) : NULL;
    free(js);
    json_decref(c);
    return enc;
}

/* The templates that can list, in order (references in an array of
 * pointers held as integers). */
static json_t *listing_templates(sq_srv *s)
{
    json_t *all = json_array(), *out = json_array();
    char *next = NULL, *cur = NULL;
    /* Walk every page of templates (the registry has no "all" call). */
    do {
        free(cur);
        cur = next;
        next = NULL;
        json_array_clear(all);
        sq_registry_page(s, SQ_ENTRY_TEMPLATE, cur, all, &next);
        size_t i;
        json_t *d;
        json_array_foreach(all, i, d) {
            sq_entry *e = sq_registry_find(
                s, SQ_ENTRY_TEMPLATE, json_string_value(json_object_get(d, "uriTemplate")));
            if (e && e->def.tmpl.list)
                json_array_append_new(out, json_integer((intptr_t)e));
            else if (e)
                sq_entry_unref(e);
        }
    } while (next);
    free(cur);
    json_decref(all);
    return out;
}

static void unref_templates(json_t *t)
{
    size_t i;
    json_t *v;
    json_array_foreach(t, i, v)
        sq_entry_unref((sq_entry *)(intptr_t)json_integer_value(v));
    json_decref(t);
}

int sq_m_resources_list(sq_mcp_req *r, json_t **result)
{
    const char *cursor;
    if (take_cursor(r, &cursor))
        return SQ_MCP_ERROR;
    json_t *pos = NULL;
    if (cursor) {
        size_t n;
        char *js = sq__b64_decode(cursor, strlen(cursor), true, &n);
        pos = js ? json_loadb(js, n, 0, NULL) : NULL;
        free(js);
        if (!json_is_object(pos)) {
            json_decref(pos);
            return bad_cursor(r);
        }
    }
    json_t *items = json_array();
    char *next = NULL;
    const char *tmpl = json_string_value(json_object_get(pos, "t"));
    if (!tmpl) {
        const char *rc = json_string_value(json_object_get(pos, "r"));
        if (sq_registry_page(r->srv, SQ_ENTRY_RESOURCE, rc, items, &next) != 0) {
            json_decref(items);
            json_decref(pos);
            return bad_cursor(r);
        }
        if (next) {
            *result = json_pack("{s:o,s:o}", "resources", items, "nextCursor",
                                json_string(""));
            char *c = resource_cursor(json_pack("{s:s}", "r", next));
            json_object_set_new(*result, "nextCursor", json_string(c ? c : ""));
            free(c);
            free(next);
            json_decref(pos);
            return SQ_MCP_OK;
        }
    }
    /* The templates' own resources, from the one the cursor names. */
    json_t *ts = listing_templates(r->srv);
    size_t i;
    json_t *v;
    bool started = tmpl == NULL;
    int rc = SQ_MCP_OK;
    json_array_foreach(ts, i, v) {
        sq_entry *e = (sq_entry *)(intptr_t)json_integer_value(v);
        const char *inner = NULL;
        if (!started) {
            if (strcmp(e->key, tmpl) != 0)
                continue;
            started = true;
            inner = json_string_value(json_object_get(pos, "c"));
        }
        json_t *got = NULL;
        char *more = NULL;
        size_t room = r->srv->cfg.page_size ? r->srv->cfg.page_size : 100;
        int lrc = e->def.tmpl.list(r, inner, room, e->def.tmpl.data, &got, &more);
        if (lrc == SQ_MCP_ERROR) {
            rc = lrc;
            json_decref(got);
            free(more);
            break;
        }
        if (json_is_array(got))
            json_array_extend(items, got);
        json_decref(got);
        if (more) {
            next = resource_cursor(json_pack("{s:s,s:s}", "t", e->key, "c", more));
            free(more);
            break;
        }
    }
    unref_templates(ts);
    if (!started && rc == SQ_MCP_OK) {
        json_decref(items);
        json_decref(pos);
        return bad_cursor(r); /* names a template that is gone */
    }
    json_decref(pos);
    if (rc != SQ_MCP_OK) {
        json_decref(items);
        free(next);
        return rc;
    }
    *result = json_pack("{s:o}", "resources", items);
    if (next)
        json_object_set_new(*result, "nextCursor", json_string(next));
    free(next);
    return SQ_MCP_OK;
}

/* ---------------------------------------------------------------- calls */

int sq_m_tools_call(sq_mcp_req *r, json_t **result)
{
    const char *name = param_str(r, "name");
    if (!name)
        return sq_mcp_fail(r, SQ_RPC_INVALID_PARAMS, "name must be a string", NULL);
    json_t *args = json_object_get(r->params, "arguments");
    if (args && !json_is_object(args))
        return sq_mcp_fail(r, SQ_RPC_INVALID_PARAMS,
                           "arguments must be an object", NULL);
    sq_entry *e = sq_registry_find(r->srv, SQ_ENTRY_TOOL, name);
    if (!e) {
        char msg[200];
        snprintf(msg, sizeof msg, "Unknown tool: %.150s", name);
        return sq_mcp_fail(r, SQ_RPC_INVALID_PARAMS, msg, NULL);
    }
    if ((e->def.tool.flags & SQ_MCP_TASK_REQUIRED) &&
        !(r->era == SQ_MCP_MODERN && sq_mcp_client_has(r, "extensions." SQ_TASKS_EXT))) {
        sq_entry_unref(e);
        return sq_mcp_fail(r, SQ_MCP_ERR_MISSING_CAPABILITY,
                           "this tool runs only as a task: declare the "
                           SQ_TASKS_EXT " extension",
                           json_pack("{s:{s:{s:{}}}}", "requiredCapabilities",
                                     "extensions", SQ_TASKS_EXT));
    }
    json_t *empty = args ? NULL : json_object();
    sq_schema_error verr;
    if (e->schema && sq_schema_validate(e->schema, args ? args : empty, &verr) != 0) {
        /* A tool error, not a protocol error (2025-11-25, SEP-1303): the
         * model reads it and can correct its call. */
        char text[600];
        snprintf(text, sizeof text, "Invalid arguments: %s: %s (%s)",
                 verr.path[0] ? verr.path : "(the arguments)", verr.message, verr.rule);
        *result = sq_mcp_tool_error(text);
        json_object_set_new(*result, "structuredContent",
                            json_pack("{s:s,s:s,s:s,s:s}", "error", "invalid_arguments",
                                      "path", verr.path, "rule", verr.rule, "message",
                                      verr.message));
        json_decref(empty);
        sq_entry_unref(e);
        return SQ_MCP_OK;
    }
    int rc = e->def.tool.call(r, args ? args : empty, e->def.tool.data, result);
    json_decref(empty);
    sq_entry_unref(e);
    if (rc == SQ_MCP_OK && !json_is_object(*result)) {
        json_decref(*result);
        *result = NULL;
        return sq_mcp_fail(r, SQ_RPC_INTERNAL_ERROR, "the tool returned no result",
                           NULL);
    }
    return rc;
}

int sq_m_resources_read(sq_mcp_req *r, json_t **result)
{
    const char *uri = param_str(r, "uri");
    if (!uri)
        return sq_mcp_fail(r, SQ_RPC_INVALID_PARAMS, "uri must be a string", NULL);
    sq_entry *e = sq_registry_find(r->srv, SQ_ENTRY_RESOURCE, uri);
    int rc;
    if (e)
        rc = e->def.resource.read(r, uri, e->def.resource.data, result);
    else if ((e = sq_registry_match(r->srv, uri)))
        rc = e->def.tmpl.read(r, uri, e->def.tmpl.data, result);
    else
        return sq_not_found(r, "Resource", uri);
    sq_entry_unref(e);
    if (rc == SQ_MCP_OK &&
        (!json_is_object(*result) ||
         json_array_size(json_object_get(*result, "contents")) == 0)) {
        /* Never an empty read for a resource that is not there (SEP-2164):
         * a reader that finds nothing says so. */
        json_decref(*result);
        *result = NULL;
        return sq_not_found(r, "Resource", uri);
    }
    return rc;
}

int sq_m_prompts_get(sq_mcp_req *r, json_t **result)
{
    const char *name = param_str(r, "name");
    if (!name)
        return sq_mcp_fail(r, SQ_RPC_INVALID_PARAMS, "name must be a string", NULL);
    json_t *args = json_object_get(r->params, "arguments");
    if (args && !json_is_object(args))
        return sq_mcp_fail(r, SQ_RPC_INVALID_PARAMS,
                           "arguments must be an object", NULL);
    sq_entry *e = sq_registry_find(r->srv, SQ_ENTRY_PROMPT, name);
    if (!e) {
        char msg[200];
        snprintf(msg, sizeof msg, "Unknown prompt: %.150s", name);
        return sq_mcp_fail(r, SQ_RPC_INVALID_PARAMS, msg, NULL);
    }
    /* Required arguments, and every value a string. */
    size_t i;
    json_t *a;
    json_array_foreach(e->def.prompt.arguments, i, a) {
        const char *an = json_string_value(json_object_get(a, "name"));
        json_t *v = an ? json_object_get(args, an) : NULL;
        if (json_is_true(json_object_get(a, "required")) && !v) {
            char msg[200];
            snprintf(msg, sizeof msg, "Missing required argument: %.150s", an);
            sq_entry_unref(e);
            return sq_mcp_fail(r, SQ_RPC_INVALID_PARAMS, msg, NULL);
        }
    }
    const char *k;
    json_object_foreach(args, k, a) {
        if (!json_is_string(a)) {
            sq_entry_unref(e);
            return sq_mcp_fail(r, SQ_RPC_INVALID_PARAMS,
                               "prompt arguments must be strings", NULL);
        }
    }
    json_t *empty = args ? NULL : json_object();
    int rc = e->def.prompt.get(r, args ? args : empty, e->def.prompt.data, result);
    json_decref(empty);
    sq_entry_unref(e);
    return rc;
}

int sq_m_complete(sq_mcp_req *r, json_t **result)
{
    json_t *ref = json_object_get(r->params, "ref");
    json_t *arg = json_object_get(r->params, "argument");
    const char *type = json_string_value(json_object_get(ref, "type"));
    const char *an = json_string_value(json_object_get(arg, "name"));
    const char *av = json_string_value(json_object_get(arg, "value"));
    if (!type || !an || !av)
        return sq_mcp_fail(r, SQ_RPC_INVALID_PARAMS,
                           "completion needs ref.type, argument.name and argument.value",
                           NULL);
    json_t *ctx = json_object_get(json_object_get(r->params, "context"), "arguments");
    sq_entry *e = NULL;
    sq_mcp_complete_fn fn = NULL;
    void *data = NULL;
    if (strcmp(type, "ref/prompt") == 0) {
        const char *n = json_string_value(json_object_get(ref, "name"));
        e = sq_registry_find(r->srv, SQ_ENTRY_PROMPT, n);
        if (!e)
            return sq_mcp_fail(r, SQ_RPC_INVALID_PARAMS, "Unknown prompt", NULL);
        fn = e->def.prompt.complete;
        data = e->def.prompt.data;
    } else if (strcmp(type, "ref/resource") == 0) {
        const char *u = json_string_value(json_object_get(ref, "uri"));
        if (!u)
            return sq_mcp_fail(r, SQ_RPC_INVALID_PARAMS, "ref.uri must be a string",
                               NULL);
        e = sq_registry_find(r->srv, SQ_ENTRY_TEMPLATE, u);
        if (!e && !(e = sq_registry_find(r->srv, SQ_ENTRY_RESOURCE, u)))
            return sq_mcp_fail(r, SQ_RPC_INVALID_PARAMS, "Unknown resource template",
                               NULL);
        if (e->kind == SQ_ENTRY_TEMPLATE) {
            fn = e->def.tmpl.complete;
            data = e->def.tmpl.data;
        }
    } else {
        return sq_mcp_fail(r, SQ_RPC_INVALID_PARAMS,
                           "ref.type must be ref/prompt or ref/resource", NULL);
    }
    json_t *values = NULL;
    int rc = fn ? fn(r, an, av, json_is_object(ctx) ? ctx : NULL, data, &values)
                : SQ_MCP_OK;
    sq_entry_unref(e);
    if (rc != SQ_MCP_OK) {
        json_decref(values);
        return rc;
    }
    if (!json_is_array(values)) {
        json_decref(values);
        values = json_array();
    }
    size_t total = json_array_size(values);
    while (json_array_size(values) > 100)
        json_array_remove(values, json_array_size(values) - 1);
    *result = json_pack("{s:{s:o,s:I,s:b}}", "completion", "values", values,
                        "total", (json_int_t)total, "hasMore", total > 100);
    return SQ_MCP_OK;
}

/* -------------------------------------------------------- subscriptions */

int sq_m_subscribe(sq_mcp_req *r, json_t **result)
{
    const char *uri = param_str(r, "uri");
    if (!uri)
        return sq_mcp_fail(r, SQ_RPC_INVALID_PARAMS, "uri must be a string", NULL);
    sq_mutex_lock_nocancel(&r->sess->lock);
    json_object_set_new(r->sess->subs, uri, json_true());
    sq_mutex_unlock(&r->sess->lock);
    *result = json_object();
    return SQ_MCP_OK;
}

int sq_m_unsubscribe(sq_mcp_req *r, json_t **result)
{
    const char *uri = param_str(r, "uri");
    if (!uri)
        return sq_mcp_fail(r, SQ_RPC_INVALID_PARAMS, "uri must be a string", NULL);
    sq_mutex_lock_nocancel(&r->sess->lock);
    json_object_del(r->sess->subs, uri);
    sq_mutex_unlock(&r->sess->lock);
    *result = json_object();
    return SQ_MCP_OK;
}

/* --------------------------------------------------------- 2026-07-28 */

int sq_m_discover(sq_mcp_req *r, json_t **result)
{
    *result = json_pack("{s:[s],s:o}", "supportedVersions", SQ_MCP_MODERN_VERSION,
                        "capabilities", sq_server_caps(r->srv, SQ_MCP_MODERN));
    if (*result && r->srv->cfg.instructions)
        json_object_set_new(*result, "instructions",
                            json_string(r->srv->cfg.instructions));
    return SQ_MCP_OK;
}

#define META_SUB "io.modelcontextprotocol/subscriptionId"

int sq_m_listen(sq_mcp_req *r, json_t **result)
{
    json_t *f = json_object_get(r->params, "notifications");
    if (!json_is_object(f))
        return sq_mcp_fail(r, SQ_RPC_INVALID_PARAMS,
                           "notifications must be an object (the filter)", NULL);
    json_t *uris = json_object_get(f, "resourceSubscriptions");
    if (uris && !json_is_array(uris))
        return sq_mcp_fail(r, SQ_RPC_INVALID_PARAMS,
                           "resourceSubscriptions must be an array of URIs", NULL);
    json_t *tids = json_object_get(f, "taskIds");
    if (tids && !json_is_array(tids))
        return sq_mcp_fail(r, SQ_RPC_INVALID_PARAMS,
                           "taskIds must be an array of task ids", NULL);
    if (json_array_size(tids) && !sq_mcp_client_has(r, "extensions." SQ_TASKS_EXT))
        return sq_mcp_fail(r, SQ_MCP_ERR_MISSING_CAPABILITY,
                           "taskIds need the " SQ_TASKS_EXT " extension declared",
                           json_pack("{s:{s:{s:{}}}}", "requiredCapabilities",
                                     "extensions", SQ_TASKS_EXT));
    sq_listener l = {.req = r};
    l.tools = json_is_true(json_object_get(f, "toolsListChanged"));
    l.prompts = json_is_true(json_object_get(f, "promptsListChanged"));
    l.resources = json_is_true(json_object_get(f, "resourcesListChanged"));
    json_t *honoured = json_object();
    if (l.tools)
        json_object_set_new(honoured, "toolsListChanged", json_true());
    if (l.prompts)
        json_object_set_new(honoured, "promptsListChanged", json_true());
    if (l.resources)
        json_object_set_new(honoured, "resourcesListChanged", json_true());
    if (json_array_size(uris)) {
        l.uris = json_object();
        size_t i;
        json_t *u;
        json_array_foreach(uris, i, u)
            if (json_is_string(u))
                json_object_set(l.uris, json_string_value(u), json_true());
        json_object_set(honoured, "resourceSubscriptions", uris);
    }
    if (json_array_size(tids)) {
        l.task_ids = json_object();
        size_t i;
        json_t *u;
        json_array_foreach(tids, i, u)
            if (json_is_string(u))
                json_object_set(l.task_ids, json_string_value(u), json_true());
        json_object_set(honoured, "taskIds", tids);
    }
    /* The subscription's id is the listen request's id, verbatim. */
    json_t *idv = json_loads(r->id, JSON_DECODE_ANY, NULL);
    json_t *ack = json_pack("{s:{s:O},s:o}", "_meta", META_SUB, idv,
                            "notifications", honoured);
    json_decref(idv);
    sq__strbuf b = SQ__STRBUF_INIT;
    sq_rpc_write_notification(&b, "notifications/subscriptions/acknowledged", ack);
    json_decref(ack);
    /* Registered before the acknowledgement goes: nothing that happens
     * after the client reads it is missed. */
    r->listen = true;
    sq_req_no_deadline(r); /* it lasts as long as the client wants */
    sq_mutex_lock_nocancel(&r->srv->lock);
    sq__list_push_back(&r->srv->listeners, &l.link);
    sq_mutex_unlock(&r->srv->lock);
    sq_req_emit(r, b.buf, b.len);
    sq__strbuf_free(&b);

    /* Then it lasts until the client goes (cancellation) or the server
     * stops (its tasks are aborted too): both end this wait. */
    sq_notify never;
    sq_notify_init(&never);
    while (sq_notify_wait(&never) == 0)
        ;
    sq_mutex_lock_nocancel(&r->srv->lock);
    sq__list_remove(&r->srv->listeners, &l.link);
    sq_mutex_unlock(&r->srv->lock);
    json_decref(l.uris);
    json_decref(l.task_ids);
    /* A graceful end (the server stopping) answers the listen request;
     * a client that went gets nothing (its request is cancelled). */
    *result = json_pack("{s:{s:o*}}", "_meta", META_SUB,
                        json_loads(r->id, JSON_DECODE_ANY, NULL));
    return SQ_MCP_OK;
}
