/* The context_* tools as clients see them in tools/list (names, input
 * and output schemas, annotations), the resource template, and the
 * component's start, stop and end (srv.h), which the server calls. */
#include "ctx_tools.h"
#include "ctx_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ID "{\"type\":\"string\",\"pattern\":\"^[A-Za-z0-9][A-Za-z0-9._:~-]{0,127}$\"}"
#define VERSION "{\"type\":\"integer\",\"minimum\":1}"
#define TIME "{\"type\":\"string\",\"format\":\"date-time\"}"
#define ACTOR "\"actor\":{\"type\":\"string\",\"description\":\"Who makes the change " \
              "(recorded in the history; default: the client's name).\"}"
#define CURSOR "\"cursor\":{\"type\":\"string\",\"description\":\"next_cursor of the " \
               "previous page.\"}"
#define LIMIT "\"limit\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":1000}"
#define ANY "{\"description\":\"Any JSON value.\"}"

typedef struct tool_def {
    const char *name, *title, *description;
    const char *input;      /* JSON text: the input schema */
    const char *output;     /* JSON text: the success properties */
    const char *required;   /* JSON text: the success's required members */
    bool read_only, destructive, idempotent;
} tool_def;

static const tool_def defs[] = {
    {"context_create", "Create a context",
     "Creates a context: a named JSON document (version 1) with optional metadata. "
     "Fails with already_exists if the id is taken.",
     "{\"type\":\"object\",\"properties\":{\"id\":" ID ",\"document\":" ANY
     ",\"metadata\":{\"type\":\"object\"}," ACTOR "},\"required\":[\"id\",\"document\"]}",
     "\"id\":" ID ",\"version\":" VERSION ",\"created_at\":" TIME ",\"updated_at\":" TIME,
     "[\"id\",\"version\"]", false, false, false},
    {"context_get", "Read a context",
     "Reads a context: its newest version, or an older one still in the history "
     "(version), a named snapshot (snapshot) or a recovery point (recovery_point).",
     "{\"type\":\"object\",\"properties\":{\"id\":" ID ",\"version\":" VERSION
     ",\"snapshot\":{\"type\":\"string\"},\"recovery_point\":" VERSION "},\"required\":[\"id\"]}",
     "\"id\":" ID ",\"version\":" VERSION ",\"document\":" ANY
     ",\"metadata\":{\"type\":[\"object\",\"null\"]},\"created_at\":" TIME
     ",\"updated_at\":" TIME ",\"kind\":{\"type\":\"string\"},\"snapshot\":{\"type\":\"string\"},"
     "\"recovery_point\":" VERSION,
     "[\"id\",\"version\",\"document\",\"created_at\",\"updated_at\"]", true, false, true},
    {"context_update", "Change a context",
     "Changes a context's document, making its next version: patch_type replace (patch "
     "is the new document), merge (RFC 7396 JSON Merge Patch) or json (RFC 6902 JSON "
     "Patch, an array of operations). With expected_version, nothing changes unless the "
     "context is at that version (version_mismatch, with current_version). A patch that "
     "fails changes nothing. Optional metadata replaces the metadata.",
     "{\"type\":\"object\",\"properties\":{\"id\":" ID ",\"patch_type\":{\"type\":\"string\","
     "\"enum\":[\"replace\",\"merge\",\"json\"]},\"patch\":" ANY ",\"expected_version\":" VERSION
     ",\"metadata\":{\"type\":\"object\"}," ACTOR "},"
     "\"required\":[\"id\",\"patch_type\",\"patch\"]}",
     "\"id\":" ID ",\"version\":" VERSION, "[\"id\",\"version\"]", false, false, false},
    {"context_delete", "Delete a context",
     "Deletes a context with its history, snapshots and recovery points (if it is at "
     "expected_version, when given).",
     "{\"type\":\"object\",\"properties\":{\"id\":" ID ",\"expected_version\":" VERSION "},"
     "\"required\":[\"id\"]}",
     "\"id\":" ID ",\"deleted\":{\"type\":\"boolean\"},\"version\":" VERSION,
     "[\"id\",\"deleted\",\"version\"]", false, true, false},
    {"context_list", "List contexts",
     "Lists contexts in id order, a page at a time (cursor: next_cursor of the previous "
     "page), optionally only those whose id starts with prefix.",
     "{\"type\":\"object\",\"properties\":{\"prefix\":{\"type\":\"string\"}," CURSOR "," LIMIT "}}",
     "\"contexts\":{\"type\":\"array\",\"items\":{\"type\":\"object\",\"properties\":{\"id\":" ID
     ",\"version\":" VERSION ",\"created_at\":" TIME ",\"updated_at\":" TIME
     ",\"metadata\":{\"type\":\"object\"}}}},\"next_cursor\":{\"type\":\"string\"}",
     "[\"contexts\"]", true, false, true},
    {"context_snapshot", "Snapshot a context",
     "Keeps a named, immutable copy of the newest version (or of version, if still in the "
     "history); or, with recovery_point: true and no name, takes a recovery point of the "
     "newest version now.",
     "{\"type\":\"object\",\"properties\":{\"id\":" ID ",\"name\":{\"type\":\"string\","
     "\"pattern\":\"^[A-Za-z0-9][A-Za-z0-9._:~-]{0,63}$\"},\"version\":" VERSION
     ",\"recovery_point\":{\"type\":\"boolean\"}},\"required\":[\"id\"]}",
     "\"id\":" ID ",\"name\":{\"type\":\"string\"},\"version\":" VERSION
     ",\"recovery_point\":" VERSION,
     "[\"id\",\"version\"]", false, false, false},
    {"context_snapshots", "List snapshots and recovery points",
     "Lists a context's named snapshots and its recovery points (the newest few are kept).",
     "{\"type\":\"object\",\"properties\":{\"id\":" ID "},\"required\":[\"id\"]}",
     "\"id\":" ID ",\"snapshots\":{\"type\":\"array\"},\"recovery_points\":{\"type\":\"array\"}",
     "[\"id\",\"snapshots\",\"recovery_points\"]", true, false, true},
    {"context_restore", "Restore a context",
     "Restores a context's document from a snapshot or a recovery point, as a new version "
     "(history is never rewritten).",
     "{\"type\":\"object\",\"properties\":{\"id\":" ID ",\"snapshot\":{\"type\":\"string\"},"
     "\"recovery_point\":" VERSION ",\"expected_version\":" VERSION "," ACTOR "},"
     "\"required\":[\"id\"]}",
     "\"id\":" ID ",\"version\":" VERSION ",\"restored_from\":{\"type\":\"object\"}",
     "[\"id\",\"version\"]", false, false, false},
    {"context_history", "A context's history",
     "The versions of a context still kept (the history depth), newest first, with when, "
     "what kind of change and by whom; a page at a time.",
     "{\"type\":\"object\",\"properties\":{\"id\":" ID "," CURSOR "," LIMIT "},"
     "\"required\":[\"id\"]}",
     "\"id\":" ID ",\"versions\":{\"type\":\"array\",\"items\":{\"type\":\"object\","
     "\"properties\":{\"version\":" VERSION ",\"at\":" TIME ",\"kind\":{\"type\":\"string\"},"
     "\"by\":{\"type\":\"string\"}}}},\"next_cursor\":{\"type\":\"string\"}",
     "[\"id\",\"versions\"]", true, false, true},
    {"context_diff", "Difference between versions",
     "The difference from version `from` to version `to` of a context, as an RFC 6902 "
     "JSON Patch.",
     "{\"type\":\"object\",\"properties\":{\"id\":" ID ",\"from\":" VERSION ",\"to\":" VERSION
     "},\"required\":[\"id\",\"from\",\"to\"]}",
     "\"id\":" ID ",\"from\":" VERSION ",\"to\":" VERSION ",\"patch\":{\"type\":\"array\"}",
     "[\"id\",\"from\",\"to\",\"patch\"]", true, false, true},
    {"context_watch", "Wait for a change",
     "Waits until the context has a version after after_version (at most timeout_ms), "
     "sending progress notifications every progress_ms (default 1000) while it waits; "
     "cancellable. Returns the version reached, or timed_out: true.",
     "{\"type\":\"object\",\"properties\":{\"id\":" ID ",\"after_version\":{\"type\":"
     "\"integer\",\"minimum\":0},\"timeout_ms\":{\"type\":\"integer\",\"minimum\":0},"
     "\"progress_ms\":{\"type\":\"integer\",\"minimum\":10}},"
     "\"required\":[\"id\",\"after_version\"]}",
     "\"id\":" ID ",\"version\":{\"type\":\"integer\"},\"timed_out\":{\"type\":\"boolean\"}",
     "[\"id\",\"version\",\"timed_out\"]", true, false, true},
};

/* The output schema: the success's members and the error's, either
 * (a tool error carries structured content too, and clients validate it
 * against this schema). */
static json_t *output_schema(const tool_def *d)
{
    char *text = NULL;
    if (asprintf(&text,
                 "{\"type\":\"object\",\"properties\":{%s,"
                 "\"error\":{\"type\":\"string\"},\"message\":{\"type\":\"string\"},"
                 "\"current_version\":{\"type\":\"integer\"},"
                 "\"oldest_version\":{\"type\":\"integer\"},\"op\":{\"type\":\"integer\"},"
                 "\"limit\":{\"type\":\"integer\"}},"
                 "\"anyOf\":[{\"required\":%s},{\"required\":[\"error\",\"message\"]}]}",
                 d->output, d->required) < 0)
        return NULL;
    json_error_t je;
    json_t *s = json_loads(text, 0, &je);
    free(text);
    return s;
}

static void store_health(void *arg, bool ok, const char *why)
{
    ctx_tools *t = arg;
    if (ok) {
        sq_health_set(t->health, SQ_HEALTH_HEALTHY, NULL);
        return;
    }
    char reason[SQ_HEALTH_REASON_MAX];
    snprintf(reason, sizeof reason, "the store cannot commit: %s", why);
    sq_health_set(t->health, SQ_HEALTH_FAILED, reason);
}

int sq_ctx_srv_start(sq_srv *s, char *err, size_t errlen)
{
    const sq_srv_config *c = &s->cfg;
    if (!c->store || strcmp(c->store, "none") == 0)
        return 0;
    ctx_tools *t = calloc(1, sizeof *t);
    if (!t) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    t->srv = s;
    t->page = c->page_size ? c->page_size : 100;
    sq_ctx_opts o = {
        .store = c->store,
        .max_contexts = c->contexts.max_contexts,
        .max_document_bytes = c->contexts.max_document_bytes,
        .max_metadata_bytes = c->contexts.max_metadata_bytes,
        .max_snapshots = c->contexts.max_snapshots,
        .history_depth = c->contexts.history_depth,
        .recovery_every = c->contexts.recovery_every,
        .recovery_keep = c->contexts.recovery_keep,
        .on_change = ctx_resource.on_change,
        .on_list_changed = ctx_resource.on_list_changed,
        .on_store_health = store_health,
        .arg = t,
    };
    char why[400];
    int rc = sq_health_register(s, "store", &t->health);
    if (rc) {
        snprintf(err, errlen, "store health: %s", sq_strerror(rc));
        free(t);
        return rc;
    }
    rc = sq_ctx_open(&t->mgr, &o, why, sizeof why);
    if (rc) {
        snprintf(err, errlen, "store %s: %s", c->store, why);
        sq_health_unregister(t->health);
        free(t);
        return rc;
    }
    s->ctx = t;
    for (size_t i = 0; rc == 0 && i < sizeof defs / sizeof *defs; i++) {
        const tool_def *d = &defs[i];
        json_error_t je;
        json_t *in = json_loads(d->input, 0, &je), *out = output_schema(d);
        json_t *ann = json_pack("{s:b,s:b,s:b,s:b}", "readOnlyHint", d->read_only,
                                "destructiveHint", d->destructive, "idempotentHint",
                                d->idempotent, "openWorldHint", 0);
        sq_mcp_tool_fn fn = NULL;
        for (const ctx_tool_fn *f = ctx_tool_fns; f->name; f++)
            if (strcmp(f->name, d->name) == 0)
                fn = f->fn;
        sq_mcp_tool_def td = {.name = d->name, .title = d->title, .description = d->description,
                              .input_schema = in, .output_schema = out, .annotations = ann,
                              .call = fn, .data = t};
        rc = in && out && ann && fn ? sq_mcp_add_tool(s, &td) : -ENOMEM;
        json_decref(in);
        json_decref(out);
        json_decref(ann);
    }
    if (rc == 0) {
        sq_mcp_template_def td = {
            .uri_template = "squirrel://context/{id}",
            .name = "context",
            .title = "Context",
            .description = "A context of the context manager: its newest document "
                           "(application/json).",
            .mime_type = "application/json",
            .read = ctx_resource.read,
            .list = ctx_resource.list,
            .complete = ctx_resource.complete,
            .data = t,
        };
        rc = sq_mcp_add_template(s, &td);
    }
    if (rc)
        snprintf(err, errlen, "registering the context tools: %s", sq_strerror(rc));
    return rc;
}

struct sq_store *sq_ctx_srv_store(sq_srv *s)
{
    return s->ctx ? sq__ctx_store(s->ctx->mgr) : NULL;
}

void sq_ctx_srv_stop(sq_srv *s)
{
    if (s->ctx)
        sq_ctx_stop(s->ctx->mgr);
}

void sq_ctx_srv_free(sq_srv *s)
{
    if (!s->ctx)
        return;
    sq_ctx_close(s->ctx->mgr);
    sq_health_unregister(s->ctx->health);
    free(s->ctx);
    s->ctx = NULL;
}
