/* An example plugin that uses the context manager (docs/plugins.md,
 * docs/contexts.md): named counters kept in a context, so that clients
 * read them with context_get and subscribe to squirrel://context/{id}.
 *
 *   tally.add   {id, key, by?}   adds `by` (default 1) to counter `key`
 *                                of context `id` (created as {} if it is
 *                                not there); answers {id, key, value,
 *                                version}
 *   tally.reset {id}             deletes context `id`
 *
 * The addition is a read, then a JSON Patch applied only if the context
 * is still at the version read (compare-and-set): when another call
 * changed it in between, it reads again.  So concurrent adds are never
 * lost.  A server started with --store none has no context manager: the
 * commands then fail with that reason.
 *
 * Build: against the squirreld's squirrel/plugin.h and libsquirrel.so
 * (examples/plugins/CMakeLists.txt); load: squirreld --store memory
 * --plugin tally.so. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "sq_proto/jansson.h"
#include "squirrel/plugin.h"

static const sq_plugin_host *host;

static json_t *text_result(const char *text, bool error)
{
    json_t *r = json_pack("{s:[{s:s,s:s}]}", "content", "type", "text", "text", text);
    if (r && error)
        json_object_set_new(r, "isError", json_true());
    return r;
}

/* JSON Pointer escaping of one key ("~" -> "~0", "/" -> "~1"). */
static void pointer(char *out, size_t n, const char *key)
{
    size_t o = 0;
    if (o + 1 < n)
        out[o++] = '/';
    for (const char *k = key; *k && o + 3 < n; k++) {
        if (*k == '~' || *k == '/') {
            out[o++] = '~';
            out[o++] = *k == '~' ? '0' : '1';
        } else {
            out[o++] = *k;
        }
    }
    out[o] = '\0';
}

static int add(sq_plugin_call *c, json_t *args, void *data, json_t **result)
{
    sq_plugin *p = data;
    (void)c;
    const char *id = json_string_value(json_object_get(args, "id"));
    const char *key = json_string_value(json_object_get(args, "key"));
    json_t *byv = json_object_get(args, "by");
    json_int_t by = byv ? json_integer_value(byv) : 1;
    char err[300], path[300];
    pointer(path, sizeof path, key);
    for (int tries = 0; tries < 100; tries++) {
        json_t *doc = NULL;
        uint64_t version = 0;
        int rc = host->ctx_get(p, id, &doc, &version, err, sizeof err);
        if (rc == -ENOENT) {
            json_t *empty = json_object();
            rc = host->ctx_create(p, id, empty, &version, err, sizeof err);
            json_decref(empty);
            if (rc == -EEXIST)
                continue; /* another call created it: read that */
            if (rc == 0)
                doc = json_object();
        }
        if (rc) {
            *result = text_result(err, true);
            return SQ_PLUGIN_OK;
        }
        if (!json_is_object(doc)) {
            json_decref(doc);
            *result = text_result("the context's document is not an object", true);
            return SQ_PLUGIN_OK;
        }
        json_int_t value = json_integer_value(json_object_get(doc, key)) + by;
        json_decref(doc);
        json_t *patch = json_pack("[{s:s,s:s,s:I}]", "op", "add", "path", path,
                                  "value", (json_int_t)value);
        uint64_t made = 0;
        rc = patch ? host->ctx_patch(p, id, patch, version, &made, err, sizeof err)
                   : -ENOMEM;
        json_decref(patch);
        if (rc == -ESTALE)
            continue; /* changed since it was read: again */
        if (rc) {
            *result = text_result(rc == -ENOMEM ? "out of memory" : err, true);
            return SQ_PLUGIN_OK;
        }
        char text[400];
        snprintf(text, sizeof text, "%s.%s = %lld (version %llu)", id, key,
                 (long long)value, (unsigned long long)made);
        *result = text_result(text, false);
        json_object_set_new(*result, "structuredContent",
                            json_pack("{s:s,s:s,s:I,s:I}", "id", id, "key", key, "value",
                                      (json_int_t)value, "version", (json_int_t)made));
        return SQ_PLUGIN_OK;
    }
    *result = text_result("too much contention: gave up after 100 tries", true);
    return SQ_PLUGIN_OK;
}

static int reset(sq_plugin_call *c, json_t *args, void *data, json_t **result)
{
    sq_plugin *p = data;
    (void)c;
    const char *id = json_string_value(json_object_get(args, "id"));
    char err[300];
    int rc = host->ctx_delete(p, id, err, sizeof err);
    *result = text_result(rc == 0 ? "deleted" : err, rc != 0);
    return SQ_PLUGIN_OK;
}

static int init(sq_plugin *p, const sq_plugin_host *h, void **state)
{
    (void)state;
    host = h;
    if (!SQ_PLUGIN_HOST_HAS(h, ctx_delete)) {
        h->log(p, SQ_PLUGIN_ERROR_LEVEL, "this host has no context manager API");
        return -ENOTSUP;
    }
    json_t *add_in = json_pack(
        "{s:s,s:{s:{s:s,s:i},s:{s:s,s:i,s:i},s:{s:s}},s:[s,s],s:b}", "type", "object",
        "properties", "id", "type", "string", "minLength", 1, "key", "type", "string",
        "minLength", 1, "maxLength", 64, "by", "type", "integer", "required", "id", "key",
        "additionalProperties", 0);
    json_t *reset_in = json_pack("{s:s,s:{s:{s:s,s:i}},s:[s],s:b}", "type", "object",
                                 "properties", "id", "type", "string", "minLength", 1,
                                 "required", "id", "additionalProperties", 0);
    sq_plugin_command cmds[] = {
        {.size = sizeof(sq_plugin_command), .name = "tally.add", .title = "Add to a counter",
         .description = "Adds `by` (default 1) to counter `key` of context `id`.",
         .input_schema = add_in, .execute = add, .data = p},
        {.size = sizeof(sq_plugin_command), .name = "tally.reset",
         .description = "Deletes context `id` and its counters.",
         .input_schema = reset_in, .execute = reset, .data = p},
    };
    int rc = add_in && reset_in ? 0 : -ENOMEM;
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds && rc == 0; i++)
        rc = h->add_command(p, &cmds[i]);
    json_decref(add_in);
    json_decref(reset_in);
    return rc;
}

SQ_PLUGIN_DEFINE(.name = "tally", .version = "1.0.0",
                 .description = "Counters kept in contexts: uses the context manager",
                 .init = init);
