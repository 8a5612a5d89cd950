/* An example plugin that only registers commands (docs/plugins.md).
 *
 *   hello.greet {name, shout?}   a greeting; the arguments are validated
 *                                against the schema before it runs
 *   hello.wait  {ms}             waits ms milliseconds (a task's sleep:
 *                                the call's deadline and its client's
 *                                cancellation reach it), at most 4 at once
 *
 * Build: against the squirreld's squirrel/plugin.h and libsquirrel.so
 * (examples/plugins/CMakeLists.txt); load: squirreld --plugin hello.so. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sq_proto/jansson.h"
#include "squirrel/plugin.h"
#include "squirrel/runtime.h"

static const sq_plugin_host *host;

static json_t *text_result(const char *text, bool error)
{
    json_t *r = json_pack("{s:[{s:s,s:s}]}", "content", "type", "text", "text", text);
    if (r && error)
        json_object_set_new(r, "isError", json_true());
    return r;
}

static int greet(sq_plugin_call *c, json_t *args, void *data, json_t **result)
{
    (void)c;
    (void)data;
    const char *name = json_string_value(json_object_get(args, "name"));
    bool shout = json_is_true(json_object_get(args, "shout"));
    char text[200];
    snprintf(text, sizeof text, shout ? "HELLO, %s!" : "Hello, %s.", name);
    *result = text_result(text, false);
    json_object_set_new(*result, "structuredContent", json_pack("{s:s}", "greeting", text));
    return SQ_PLUGIN_OK;
}

static int wait_ms(sq_plugin_call *c, json_t *args, void *data, json_t **result)
{
    (void)c;
    (void)data;
    json_int_t ms = json_integer_value(json_object_get(args, "ms"));
    int rc = sq_sleep(ms * SQ_MSEC);
    char text[100];
    snprintf(text, sizeof text, "waited %lld ms", (long long)ms);
    *result = text_result(rc == 0 ? text : "interrupted", rc != 0);
    return SQ_PLUGIN_OK;
}

static int init(sq_plugin *p, const sq_plugin_host *h, void **state)
{
    (void)state;
    host = h;
    json_t *greet_in = json_pack(
        "{s:s,s:{s:{s:s,s:i,s:i},s:{s:s}},s:[s],s:b}", "type", "object",
        "properties", "name", "type", "string", "minLength", 1, "maxLength", 64,
        "shout", "type", "boolean", "required", "name", "additionalProperties", 0);
    json_t *greet_out = json_pack("{s:s,s:{s:{s:s}},s:[s]}", "type", "object",
                                  "properties", "greeting", "type", "string",
                                  "required", "greeting");
    json_t *wait_in = json_pack("{s:s,s:{s:{s:s,s:i,s:i}},s:[s],s:b}", "type",
                                "object", "properties", "ms", "type", "integer",
                                "minimum", 0, "maximum", 10000, "required", "ms",
                                "additionalProperties", 0);
    sq_plugin_command cmds[] = {
        {.size = sizeof(sq_plugin_command), .name = "hello.greet",
         .title = "Greet", .description = "Greets `name` (shouting if `shout`).",
         .input_schema = greet_in, .output_schema = greet_out, .execute = greet},
        {.size = sizeof(sq_plugin_command), .name = "hello.wait",
         .description = "Waits `ms` milliseconds, then says so.",
         .input_schema = wait_in, .execute = wait_ms, .max_concurrent = 4},
    };
    int rc = 0;
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds && rc == 0; i++)
        rc = h->add_command(p, &cmds[i]);
    json_decref(greet_in);
    json_decref(greet_out);
    json_decref(wait_in);
    if (rc == 0)
        h->log(p, SQ_PLUGIN_INFO, "ready: hello.greet, hello.wait");
    return rc;
}

SQ_PLUGIN_DEFINE(.name = "hello", .version = "1.0.0",
                 .description = "Greetings and waits: commands only",
                 .init = init);
