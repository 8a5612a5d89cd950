/* The context manager through MCP (docs/contexts.md, "Tools"): the
 * context_* tools and the resource template squirrel://context/{id}.
 *
 * Every tool answers with structuredContent and a text block holding the
 * same JSON.  A failed precondition (an unknown id, a version mismatch, a
 * patch that does not apply, a bad argument) is a tool error (isError)
 * whose structured content names it: {"error": "version_mismatch",
 * "message": ..., "current_version": N}; protocol errors are left to
 * what is wrong with the request itself. */
#include "ctx_tools.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sq_base/base64.h"

/* --------------------------------------------------------------- results */

/* {content: [text of sc], structuredContent: sc}; takes sc over. */
static json_t *result_of(json_t *sc, bool is_error)
{
    char *text = sc ? json_dumps(sc, JSON_COMPACT) : NULL;
    json_t *r = text ? json_pack("{s:[{s:s,s:s}],s:o}", "content", "type", "text", "text",
                                 text, "structuredContent", sc)
                     : NULL;
    free(text);
    if (!r) {
        json_decref(sc);
        return sq_mcp_tool_error("out of memory");
    }
    if (is_error)
        json_object_set_new(r, "isError", json_true());
    return r;
}

static int ok(json_t **result, json_t *sc)
{
    *result = result_of(sc, false);
    return SQ_MCP_OK;
}

/* A tool error from the manager's error. */
static int failed(json_t **result, const sq_ctx_err *e)
{
    json_t *sc = json_pack("{s:s,s:s}", "error", sq_ctx_code_name(e->code), "message",
                           e->message);
    if (sc && (e->code == SQ_CTX_VERSION_MISMATCH || e->code == SQ_CTX_ALREADY_EXISTS ||
               e->code == SQ_CTX_VERSION_UNAVAILABLE))
        json_object_set_new(sc, "current_version", json_integer((json_int_t)e->current_version));
    if (sc && e->code == SQ_CTX_VERSION_UNAVAILABLE)
        json_object_set_new(sc, "oldest_version", json_integer((json_int_t)e->oldest_version));
    if (sc && e->op >= 0 && (e->code == SQ_CTX_INVALID_PATCH || e->code == SQ_CTX_PATCH_FAILED ||
                             e->code == SQ_CTX_TEST_FAILED || e->code == SQ_CTX_TOO_LARGE))
        json_object_set_new(sc, "op", json_integer(e->op));
    if (sc && e->limit)
        json_object_set_new(sc, "limit", json_integer((json_int_t)e->limit));
    *result = result_of(sc, true);
    return SQ_MCP_OK;
}

static int bad_arg(json_t **result, const char *fmt, const char *what)
{
    sq_ctx_err e = {.code = SQ_CTX_INVALID_ARGUMENT, .op = -1};
    snprintf(e.message, sizeof e.message, fmt, what);
    return failed(result, &e);
}

/* ------------------------------------------------------------- arguments */

/* A required string argument, or NULL (and *result set to the error). */
static const char *need_str(json_t *args, const char *key, json_t **result)
{
    json_t *v = json_object_get(args, key);
    if (!json_is_string(v)) {
        bad_arg(result, "\"%s\" must be a string", key);
        return NULL;
    }
    return json_string_value(v);
}

/* An optional version argument (an integer >= 1, or absent: 0).  false
 * (with *result set) if it is there and wrong. */
static bool opt_version(json_t *args, const char *key, uint64_t *out, json_t **result)
{
    json_t *v = json_object_get(args, key);
    *out = 0;
    if (!v || json_is_null(v))
        return true;
    if (!json_is_integer(v) || json_integer_value(v) < 1) {
        bad_arg(result, "\"%s\" must be an integer >= 1", key);
        return false;
    }
    *out = (uint64_t)json_integer_value(v);
    return true;
}

/* An optional string argument: true with *out (NULL when absent). */
static bool opt_str(json_t *args, const char *key, const char **out, json_t **result)
{
    json_t *v = json_object_get(args, key);
    *out = NULL;
    if (!v || json_is_null(v))
        return true;
    if (!json_is_string(v)) {
        bad_arg(result, "\"%s\" must be a string", key);
        return false;
    }
    *out = json_string_value(v);
    return true;
}

/* Who makes a change: the "actor" argument, else the client's name. */
static const char *actor_of(sq_mcp_req *r, json_t *args)
{
    const char *a = json_string_value(json_object_get(args, "actor"));
    if (a)
        return a;
    if (r && r->sess && r->sess->client_info)
        a = json_string_value(json_object_get(r->sess->client_info, "name"));
    return a ? a : "";
}

static json_t *time_json(int64_t ms)
{
    char t[40];
    sq_ctx_time_text(ms, t, sizeof t);
    return json_string(t);
}

/* A cursor is the text it continues after, base64url: opaque to clients,
 * valid across changes and instances. */
static char *cursor_out(const char *s)
{
    return sq__b64_encode(s, strlen(s), true);
}

static bool cursor_in(json_t *args, char **out, json_t **result)
{
    const char *c;
    *out = NULL;
    if (!opt_str(args, "cursor", &c, result))
        return false;
    if (!c)
        return true;
    size_t n;
    *out = sq__b64_decode(c, strlen(c), true, &n);
    if (!*out || strlen(*out) != n) {
        free(*out);
        *out = NULL;
        bad_arg(result, "\"%s\" is not a cursor this tool gave", "cursor");
        return false;
    }
    return true;
}

/* ------------------------------------------------------------------ tools */

static int t_create(sq_mcp_req *r, json_t *args, void *data, json_t **result)
{
    ctx_tools *t = data;
    const char *id = need_str(args, "id", result);
    if (!id)
        return SQ_MCP_OK;
    json_t *doc = json_object_get(args, "document");
    json_t *meta = json_object_get(args, "metadata");
    if (!doc)
        return bad_arg(result, "\"%s\" is required", "document");
    if (json_is_null(meta))
        meta = NULL;
    sq_ctx_err e;
    int64_t created;
    if (sq_ctx_create(t->mgr, id, doc, meta, actor_of(r, args), &created, &e) != 0)
        return failed(result, &e);
    return ok(result, json_pack("{s:s,s:i,s:o,s:o}", "id", id, "version", 1, "created_at",
                                time_json(created), "updated_at", time_json(created)));
}

/* The answer holds copies of the document and metadata, not references
 * to the published version's trees: jansson releases a container's
 * members inside libjansson, whose reference counting ThreadSanitizer
 * cannot see, so a tree shared with the writer must only be released
 * through sq_proto/jansson.h (sq_ctx_info_clear), never as a member. */
static json_t *info_json(const char *id, const sq_ctx_info *i)
{
    return json_pack("{s:s,s:I,s:o,s:o?,s:o,s:o,s:s}", "id", id, "version",
                     (json_int_t)i->version, "document", json_deep_copy(i->document),
                     "metadata", i->metadata ? json_deep_copy(i->metadata) : NULL,
                     "created_at", time_json(i->created_at), "updated_at",
                     time_json(i->updated_at), "kind", sq_ctx_kind_name(i->kind));
}

static int t_get(sq_mcp_req *r, json_t *args, void *data, json_t **result)
{
    (void)r;
    ctx_tools *t = data;
    const char *id = need_str(args, "id", result), *snap;
    uint64_t version, rp;
    if (!id || !opt_version(args, "version", &version, result) ||
        !opt_str(args, "snapshot", &snap, result) ||
        !opt_version(args, "recovery_point", &rp, result))
        return SQ_MCP_OK;
    if ((version != 0) + (snap != NULL) + (rp != 0) > 1)
        return bad_arg(result, "give at most one of version, snapshot, %s", "recovery_point");
    sq_ctx_info i;
    sq_ctx_err e;
    int rc = snap || rp ? sq_ctx_get_mark(t->mgr, id, snap, rp, &i, &e)
                        : sq_ctx_get(t->mgr, id, version, &i, &e);
    if (rc)
        return failed(result, &e);
    json_t *sc = info_json(id, &i);
    if (sc && snap)
        json_object_set_new(sc, "snapshot", json_string(snap));
    if (sc && rp)
        json_object_set_new(sc, "recovery_point", json_integer((json_int_t)rp));
    if (sc && (snap || rp)) {
        json_object_del(sc, "kind");
        json_object_del(sc, "metadata");
    }
    sq_ctx_info_clear(&i);
    return ok(result, sc);
}

static int t_update(sq_mcp_req *r, json_t *args, void *data, json_t **result)
{
    ctx_tools *t = data;
    const char *id = need_str(args, "id", result), *type;
    uint64_t expected;
    if (!id || !(type = need_str(args, "patch_type", result)) ||
        !opt_version(args, "expected_version", &expected, result))
        return SQ_MCP_OK;
    int kind = strcmp(type, "replace") == 0 ? SQ_CTX_REPLACE
               : strcmp(type, "merge") == 0 ? SQ_CTX_MERGE
               : strcmp(type, "json") == 0  ? SQ_CTX_JSON_PATCH
                                            : 0;
    if (!kind)
        return bad_arg(result, "\"patch_type\" must be replace, merge or json, not \"%.40s\"",
                       type);
    json_t *patch = json_object_get(args, "patch");
    if (!patch)
        return bad_arg(result, "\"%s\" is required", "patch");
    json_t *meta = json_object_get(args, "metadata");
    sq_ctx_change c = {.id = id, .kind = kind, .patch = patch, .expected_version = expected,
                       .metadata = json_is_null(meta) ? NULL : meta,
                       .actor = actor_of(r, args)};
    uint64_t v;
    sq_ctx_err e;
    if (sq_ctx_update(t->mgr, &c, &v, &e) != 0)
        return failed(result, &e);
    return ok(result, json_pack("{s:s,s:I}", "id", id, "version", (json_int_t)v));
}

static int t_delete(sq_mcp_req *r, json_t *args, void *data, json_t **result)
{
    (void)r;
    ctx_tools *t = data;
    const char *id = need_str(args, "id", result);
    uint64_t expected, last;
    if (!id || !opt_version(args, "expected_version", &expected, result))
        return SQ_MCP_OK;
    sq_ctx_err e;
    if (sq_ctx_delete(t->mgr, id, expected, &last, &e) != 0)
        return failed(result, &e);
    return ok(result, json_pack("{s:s,s:b,s:I}", "id", id, "deleted", 1, "version",
                                (json_int_t)last));
}

static int t_list(sq_mcp_req *r, json_t *args, void *data, json_t **result)
{
    (void)r;
    ctx_tools *t = data;
    const char *prefix;
    char *after;
    json_t *lim = json_object_get(args, "limit");
    if (!opt_str(args, "prefix", &prefix, result) || !cursor_in(args, &after, result))
        return SQ_MCP_OK;
    if (lim && (!json_is_integer(lim) || json_integer_value(lim) < 1 ||
                json_integer_value(lim) > 1000)) {
        free(after);
        return bad_arg(result, "\"%s\" must be an integer in 1..1000", "limit");
    }
    size_t page = lim ? (size_t)json_integer_value(lim) : t->page;
    json_t *items;
    char *next;
    sq_ctx_err e;
    int rc = sq_ctx_list(t->mgr, prefix, after, page, &items, &next, &e);
    free(after);
    if (rc)
        return failed(result, &e);
    json_t *sc = json_pack("{s:o}", "contexts", items);
    if (sc && next) {
        char *c = cursor_out(next);
        json_object_set_new(sc, "next_cursor", c ? json_string(c) : json_null());
        free(c);
    }
    free(next);
    return ok(result, sc);
}

static int t_snapshot(sq_mcp_req *r, json_t *args, void *data, json_t **result)
{
    (void)r;
    ctx_tools *t = data;
    const char *id = need_str(args, "id", result), *name;
    uint64_t version;
    json_t *rpv = json_object_get(args, "recovery_point");
    if (!id || !opt_str(args, "name", &name, result) ||
        !opt_version(args, "version", &version, result))
        return SQ_MCP_OK;
    bool rp = json_is_true(rpv);
    if (rpv && !json_is_boolean(rpv))
        return bad_arg(result, "\"%s\" must be a boolean", "recovery_point");
    if ((name != NULL) == rp)
        return bad_arg(result, "give a snapshot \"name\", or \"%s\": true", "recovery_point");
    sq_ctx_err e;
    uint64_t kept;
    if (rp) {
        if (version)
            return bad_arg(result, "a recovery point is of the newest version (no \"%s\")",
                           "version");
        if (sq_ctx_recovery_point(t->mgr, id, &kept, &e) != 0)
            return failed(result, &e);
        return ok(result, json_pack("{s:s,s:I,s:I}", "id", id, "recovery_point",
                                    (json_int_t)kept, "version", (json_int_t)kept));
    }
    if (sq_ctx_snapshot(t->mgr, id, name, version, &kept, &e) != 0)
        return failed(result, &e);
    return ok(result, json_pack("{s:s,s:s,s:I}", "id", id, "name", name, "version",
                                (json_int_t)kept));
}

static int t_snapshots(sq_mcp_req *r, json_t *args, void *data, json_t **result)
{
    (void)r;
    ctx_tools *t = data;
    const char *id = need_str(args, "id", result);
    if (!id)
        return SQ_MCP_OK;
    json_t *s, *rp;
    sq_ctx_err e;
    if (sq_ctx_marks(t->mgr, id, &s, &rp, &e) != 0)
        return failed(result, &e);
    return ok(result, json_pack("{s:s,s:o,s:o}", "id", id, "snapshots", s, "recovery_points", rp));
}

static int t_restore(sq_mcp_req *r, json_t *args, void *data, json_t **result)
{
    ctx_tools *t = data;
    const char *id = need_str(args, "id", result), *snap;
    uint64_t rp, expected, v;
    if (!id || !opt_str(args, "snapshot", &snap, result) ||
        !opt_version(args, "recovery_point", &rp, result) ||
        !opt_version(args, "expected_version", &expected, result))
        return SQ_MCP_OK;
    if ((snap != NULL) == (rp != 0))
        return bad_arg(result, "give exactly one of \"snapshot\" and \"%s\"", "recovery_point");
    sq_ctx_err e;
    if (sq_ctx_restore(t->mgr, id, snap, rp, expected, actor_of(r, args), &v, &e) != 0)
        return failed(result, &e);
    json_t *from = snap ? json_pack("{s:s}", "snapshot", snap)
                        : json_pack("{s:I}", "recovery_point", (json_int_t)rp);
    return ok(result, json_pack("{s:s,s:I,s:o}", "id", id, "version", (json_int_t)v,
                                "restored_from", from));
}

static int t_history(sq_mcp_req *r, json_t *args, void *data, json_t **result)
{
    (void)r;
    ctx_tools *t = data;
    const char *id = need_str(args, "id", result);
    char *cur;
    if (!id || !cursor_in(args, &cur, result))
        return SQ_MCP_OK;
    uint64_t before = 0;
    if (cur) {
        char *end;
        before = strtoull(cur, &end, 10);
        bool good = *cur && !*end && before > 0;
        free(cur);
        if (!good)
            return bad_arg(result, "\"%s\" is not a cursor this tool gave", "cursor");
    }
    json_t *lim = json_object_get(args, "limit");
    if (lim && (!json_is_integer(lim) || json_integer_value(lim) < 1 ||
                json_integer_value(lim) > 1000))
        return bad_arg(result, "\"%s\" must be an integer in 1..1000", "limit");
    size_t page = lim ? (size_t)json_integer_value(lim) : t->page;
    json_t *entries;
    uint64_t next;
    sq_ctx_err e;
    if (sq_ctx_history(t->mgr, id, before, page, &entries, &next, &e) != 0)
        return failed(result, &e);
    json_t *sc = json_pack("{s:s,s:o}", "id", id, "versions", entries);
    if (sc && next) {
        char num[24];
        snprintf(num, sizeof num, "%llu", (unsigned long long)next);
        char *c = cursor_out(num);
        json_object_set_new(sc, "next_cursor", c ? json_string(c) : json_null());
        free(c);
    }
    return ok(result, sc);
}

static int t_diff(sq_mcp_req *r, json_t *args, void *data, json_t **result)
{
    (void)r;
    ctx_tools *t = data;
    const char *id = need_str(args, "id", result);
    uint64_t from, to;
    if (!id || !opt_version(args, "from", &from, result) || !opt_version(args, "to", &to, result))
        return SQ_MCP_OK;
    if (!from || !to)
        return bad_arg(result, "\"from\" and \"to\" are %s", "required");
    json_t *patch;
    sq_ctx_err e;
    if (sq_ctx_diff(t->mgr, id, from, to, &patch, &e) != 0)
        return failed(result, &e);
    return ok(result, json_pack("{s:s,s:I,s:I,s:o}", "id", id, "from", (json_int_t)from, "to",
                                (json_int_t)to, "patch", patch));
}

/* context_watch: waits (holding nothing) on the context's listener until
 * a version after after_version is durable, sending a progress
 * notification every progress_ms while it waits.  Cancelled with its
 * request: the wait returns -ECANCELED and the listener goes. */
static int t_watch(sq_mcp_req *r, json_t *args, void *data, json_t **result)
{
    ctx_tools *t = data;
    const char *id = need_str(args, "id", result);
    json_t *after_j = json_object_get(args, "after_version");
    json_t *to_j = json_object_get(args, "timeout_ms");
    json_t *pr_j = json_object_get(args, "progress_ms");
    if (!id)
        return SQ_MCP_OK;
    if (!json_is_integer(after_j) || json_integer_value(after_j) < 0)
        return bad_arg(result, "\"%s\" must be an integer >= 0", "after_version");
    if (to_j && !json_is_null(to_j) &&
        (!json_is_integer(to_j) || json_integer_value(to_j) < 0))
        return bad_arg(result, "\"%s\" must be an integer >= 0", "timeout_ms");
    if (pr_j && (!json_is_integer(pr_j) || json_integer_value(pr_j) < 10))
        return bad_arg(result, "\"%s\" must be an integer >= 10", "progress_ms");
    uint64_t after = (uint64_t)json_integer_value(after_j);
    bool has_timeout = json_is_integer(to_j);
    int64_t timeout = has_timeout ? json_integer_value(to_j) * SQ_MSEC : 0;
    int64_t every = pr_j ? json_integer_value(pr_j) * SQ_MSEC : SQ_SEC;
    sq_ctx_listener *l;
    uint64_t v;
    sq_ctx_err e;
    if (sq_ctx_listen(t->mgr, id, &(sq_ctx_listen_opts){.capacity = 4}, &l, &v, &e) != 0)
        return failed(result, &e);
    int64_t start = sq_now();
    int64_t deadline = has_timeout ? start + timeout : SQ_FOREVER;
    int64_t tick = start + every;
    bool deleted = false, timed_out = false;
    int rc = 0;
    while (v <= after) {
        int64_t until = tick < deadline ? tick : deadline;
        rc = sq_ctx_next(l, until, &v, &deleted);
        if (rc == 0 && deleted)
            break;
        if (rc == -ETIMEDOUT && until == deadline) {
            timed_out = true;
            break;
        }
        if (rc == -ETIMEDOUT) {
            char msg[96];
            snprintf(msg, sizeof msg, "waiting for a version after %llu (now %llu)",
                     (unsigned long long)after, (unsigned long long)v);
            int64_t now = sq_now();
            sq_mcp_progress(r, (double)(now - start) / SQ_MSEC,
                            has_timeout ? (double)timeout / SQ_MSEC : -1, msg);
            tick = now + every;
            continue;
        }
        if (rc)
            break;
    }
    sq_ctx_unlisten(l);
    if (deleted) {
        e = (sq_ctx_err){.code = SQ_CTX_NOT_FOUND, .op = -1};
        snprintf(e.message, sizeof e.message, "context \"%s\" was deleted", id);
        return failed(result, &e);
    }
    if (rc && rc != -ETIMEDOUT) {
        e = (sq_ctx_err){.code = rc == -ECANCELED ? SQ_CTX_CANCELLED : SQ_CTX_STOPPING, .op = -1};
        snprintf(e.message, sizeof e.message, "%s", sq_strerror(rc));
        return failed(result, &e);
    }
    return ok(result, json_pack("{s:s,s:I,s:b}", "id", id, "version", (json_int_t)v,
                                "timed_out", timed_out));
}

/* --------------------------------------------------------------- resources */

#define URI_PREFIX "squirrel://context/"

static int r_read(sq_mcp_req *r, const char *uri, void *data, json_t **result)
{
    (void)r;
    ctx_tools *t = data;
    const char *id = strncmp(uri, URI_PREFIX, strlen(URI_PREFIX)) == 0
                         ? uri + strlen(URI_PREFIX) : "";
    sq_ctx_info i;
    /* Not there (or not an id): no contents, which the server answers as
     * "resource not found" in the request's era. */
    if (sq_ctx_get(t->mgr, id, 0, &i, NULL) != 0) {
        *result = json_pack("{s:[]}", "contents");
        return SQ_MCP_OK;
    }
    char *text = json_dumps(i.document, JSON_COMPACT | JSON_ENCODE_ANY);
    *result = json_pack("{s:[{s:s,s:s,s:s,s:{s:I}}]}", "contents", "uri", uri, "mimeType",
                        "application/json", "text", text ? text : "null", "_meta",
                        CTX_META_VERSION, (json_int_t)i.version);
    free(text);
    sq_ctx_info_clear(&i);
    return SQ_MCP_OK;
}

static int r_list(sq_mcp_req *r, const char *cursor, size_t limit, void *data, json_t **items,
                  char **next)
{
    (void)r;
    ctx_tools *t = data;
    json_t *page;
    sq_ctx_err e;
    *items = NULL;
    *next = NULL;
    if (sq_ctx_list(t->mgr, NULL, cursor, limit, &page, next, &e) != 0)
        return sq_mcp_fail(r, SQ_RPC_INTERNAL_ERROR, e.message, NULL);
    json_t *out = json_array();
    size_t i;
    json_t *it;
    json_array_foreach(page, i, it) {
        const char *id = json_string_value(json_object_get(it, "id"));
        char uri[sizeof URI_PREFIX + SQ_CTX_ID_MAX];
        snprintf(uri, sizeof uri, URI_PREFIX "%s", id);
        json_array_append_new(out, json_pack("{s:s,s:s,s:s,s:{s:O}}", "uri", uri, "name", id,
                                             "mimeType", "application/json", "annotations",
                                             "lastModified",
                                             json_object_get(it, "updated_at")));
    }
    json_decref(page);
    *items = out;
    return SQ_MCP_OK;
}

typedef struct complete_arg {
    json_t *values;
    const char *prefix;
} complete_arg;

static int r_complete(sq_mcp_req *r, const char *name, const char *value, json_t *context,
                      void *data, json_t **values)
{
    (void)r;
    (void)context;
    ctx_tools *t = data;
    *values = json_array();
    if (strcmp(name, "id") != 0)
        return SQ_MCP_OK;
    json_t *page;
    char *next;
    if (sq_ctx_list(t->mgr, value, NULL, 100, &page, &next, NULL) == 0) {
        size_t i;
        json_t *it;
        json_array_foreach(page, i, it)
            json_array_append(*values, json_object_get(it, "id"));
        json_decref(page);
        free(next);
    }
    return SQ_MCP_OK;
}

/* ---------------------------------------------------------- notifications */

static void on_change(void *arg, const sq_ctx_event *ev)
{
    ctx_tools *t = arg;
    char uri[sizeof URI_PREFIX + SQ_CTX_ID_MAX];
    snprintf(uri, sizeof uri, URI_PREFIX "%s", ev->id);
    json_t *meta = json_pack("{s:I,s:s}", CTX_META_VERSION, (json_int_t)ev->version,
                             CTX_META_KIND, sq_ctx_kind_name(ev->deleted ? SQ_CTX_DELETE
                                                                        : ev->kind));
    sq_mcp_resource_updated_meta(t->srv, uri, meta);
    json_decref(meta);
}

static void on_list_changed(void *arg)
{
    ctx_tools *t = arg;
    sq_mcp_resources_list_changed(t->srv);
}

/* ------------------------------------------------------------- the table */

const ctx_tool_fn ctx_tool_fns[] = {
    {"context_create", t_create},     {"context_get", t_get},
    {"context_update", t_update},     {"context_delete", t_delete},
    {"context_list", t_list},         {"context_snapshot", t_snapshot},
    {"context_snapshots", t_snapshots}, {"context_restore", t_restore},
    {"context_history", t_history},   {"context_diff", t_diff},
    {"context_watch", t_watch},       {NULL, NULL},
};

const ctx_resource_fns ctx_resource = {r_read, r_list, r_complete, on_change, on_list_changed};
