/* An example plugin that depends on another (docs/plugins.md): it starts
 * only once `hello` is active, and stops before it.
 *
 *   greeter.greet_all {names: [..]}  greets each name through hello's
 *                                    command hello.greet (through all
 *                                    its stages: validation, limits,
 *                                    history)
 *   greeter.count  (a resource, squirrel://greeter/count)  how many
 *                                    greetings it made */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sq_proto/jansson.h"
#include "squirrel/plugin.h"
#include "squirrel/runtime.h"

typedef struct greeter {
    const sq_plugin_host *host;
    sq_plugin *self;
    atomic_long greeted;
} greeter;

static int greet_all(sq_plugin_call *c, json_t *args, void *data, json_t **result)
{
    greeter *g = data;
    const sq_plugin_host *h = g->host;
    json_t *names = json_object_get(args, "names");
    json_t *out = json_array();
    size_t i;
    json_t *name;
    json_array_foreach(names, i, name) {
        json_t *a = json_pack("{s:O}", "name", name), *r = NULL;
        int rc = h->call_command(g->self, "hello.greet", a, h->deadline(c), &r);
        json_decref(a);
        if (rc != 0 || json_is_true(json_object_get(r, "isError"))) {
            json_decref(r);
            json_decref(out);
            return h->fail(c, -32603, "hello.greet failed", NULL);
        }
        json_array_append(out, json_object_get(json_object_get(r, "structuredContent"),
                                               "greeting"));
        json_decref(r);
        atomic_fetch_add(&g->greeted, 1);
    }
    char *text = json_dumps(out, JSON_COMPACT);
    *result = json_pack("{s:[{s:s,s:s}],s:{s:o}}", "content", "type", "text", "text",
                        text ? text : "[]", "structuredContent", "greetings", out);
    free(text);
    return SQ_PLUGIN_OK;
}

static int read_count(sq_plugin_call *c, const char *uri, void *data, json_t **result)
{
    (void)c;
    greeter *g = data;
    char text[64];
    snprintf(text, sizeof text, "%ld", atomic_load(&g->greeted));
    *result = json_pack("{s:[{s:s,s:s,s:s}]}", "contents", "uri", uri, "mimeType",
                        "text/plain", "text", text);
    return SQ_PLUGIN_OK;
}

static int init(sq_plugin *p, const sq_plugin_host *h, void **state)
{
    greeter *g = calloc(1, sizeof *g);
    if (!g)
        return -ENOMEM;
    g->host = h;
    g->self = p;
    *state = g;
    json_t *in = json_pack("{s:s,s:{s:{s:s,s:{s:s},s:i,s:i}},s:[s]}", "type", "object",
                           "properties", "names", "type", "array", "items", "type",
                           "string", "minItems", 1, "maxItems", 16, "required", "names");
    sq_plugin_command cmd = {
        .size = sizeof cmd, .name = "greeter.greet_all",
        .description = "Greets every name in `names`, through hello.greet.",
        .input_schema = in, .execute = greet_all, .data = g,
    };
    sq_plugin_resource res = {
        .size = sizeof res, .uri = "squirrel://greeter/count", .name = "greeter-count",
        .description = "How many greetings greeter made.", .mime_type = "text/plain",
        .read = read_count, .data = g,
    };
    int rc = h->add_command(p, &cmd);
    if (rc == 0)
        rc = h->add_resource(p, &res);
    json_decref(in);
    if (rc) /* destroy is not called after a failed init */
        free(g);
    return rc;
}

static void destroy(sq_plugin *p, void *state)
{
    (void)p;
    free(state);
}

static const char *const deps[] = {"hello", NULL};

SQ_PLUGIN_DEFINE(.name = "greeter", .version = "1.0.0",
                 .description = "Greets many at once, through the hello plugin",
                 .depends = deps, .init = init, .destroy = destroy);
