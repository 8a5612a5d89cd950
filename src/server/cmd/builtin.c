/* The built-in commands (docs/commands.md): help (the commands and their
 * schemas), history (the last calls), status (the server and every
 * command's figures), and the resource squirrel://commands/history.
 * They are commands like any other: through every stage, in the history
 * and the figures. */
#include "cmd_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define HISTORY_URI "squirrel://commands/history"

static json_t *describe(cmd *k)
{
    sq__spin_lock(&k->lock);
    cmd_impl *i = k->impl ? sq__impl_ref(k->impl) : NULL;
    sq__spin_unlock(&k->lock);
    if (!i)
        return NULL;
    int64_t t = i->def.timeout ? i->def.timeout : k->sys->opts.default_timeout;
    json_t *d = json_pack("{s:s,s:s,s:O,s:I}", "name", k->name, "description",
                          i->description, "inputSchema", i->def.input_schema,
                          "maxConcurrent", (json_int_t)i->def.max_concurrent);
    if (d && i->title)
        json_object_set_new(d, "title", json_string(i->title));
    if (d && i->def.output_schema)
        json_object_set(d, "outputSchema", i->def.output_schema);
    if (d && t)
        json_object_set_new(d, "timeoutMs", json_real((double)t / 1e6));
    sq__impl_unref(i);
    return d;
}

/* help {command?} */
static int help(sq_cmd_call *c, json_t *args, void *data, json_t **result)
{
    (void)data;
    const char *only = json_string_value(json_object_get(args, "command"));
    cmd **all;
    size_t n = sq__cmd_all(c->sys, &all);
    json_t *list = json_array();
    sq__strbuf text = SQ__STRBUF_INIT;
    for (size_t i = 0; i < n; i++) {
        if (!only || strcmp(only, all[i]->name) == 0) {
            json_t *d = describe(all[i]);
            if (d) {
                sq__strbuf_printf(&text, "%s: %s\n", all[i]->name,
                                  json_string_value(json_object_get(d, "description")));
                json_array_append_new(list, d);
            }
        }
        sq__cmd_unref(all[i]);
    }
    free(all);
    if (only && json_array_size(list) == 0) {
        json_decref(list);
        sq__strbuf_free(&text);
        char msg[256];
        snprintf(msg, sizeof msg, "no command named %.150s (help without "
                 "arguments lists them all)", only);
        *result = sq_mcp_tool_error(msg);
        return SQ_MCP_OK;
    }
    if (only) {
        char *schema = json_dumps(json_object_get(json_array_get(list, 0), "inputSchema"),
                                  JSON_INDENT(2) | JSON_SORT_KEYS);
        sq__strbuf_printf(&text, "input schema: %s\n", schema ? schema : "?");
        free(schema);
    }
    *result = sq_mcp_text_result(text.buf ? text.buf : "");
    sq__strbuf_free(&text);
    json_object_set_new(*result, "structuredContent", json_pack("{s:o}", "commands", list));
    return SQ_MCP_OK;
}

/* history {command?, outcome?, limit?} */
static int history(sq_cmd_call *c, json_t *args, void *data, json_t **result)
{
    (void)data;
    const char *name = json_string_value(json_object_get(args, "command"));
    const char *oname = json_string_value(json_object_get(args, "outcome"));
    json_t *lim = json_object_get(args, "limit");
    int outcome = -1;
    for (int o = 0; oname && o < SQ_CMD_NOUTCOMES; o++)
        if (strcmp(oname, sq_cmd_outcome_name(o)) == 0)
            outcome = o;
    size_t limit = lim ? (size_t)json_integer_value(lim) : 50;
    json_t *entries = sq__history_read(c->sys->history, name, outcome, limit);
    sq__strbuf text = SQ__STRBUF_INIT;
    size_t i;
    json_t *e;
    json_array_foreach(entries, i, e) {
        sq__strbuf_printf(&text, "#%lld %s %s %.3f ms%s%s\n",
                          (long long)json_integer_value(json_object_get(e, "seq")),
                          json_string_value(json_object_get(e, "command")),
                          json_string_value(json_object_get(e, "outcome")),
                          json_real_value(json_object_get(e, "duration_ms")),
                          json_object_get(e, "error") ? ": " : "",
                          json_object_get(e, "error")
                              ? json_string_value(json_object_get(e, "error")) : "");
    }
    *result = sq_mcp_text_result(text.buf ? text.buf : "(no calls recorded)\n");
    sq__strbuf_free(&text);
    json_object_set_new(*result, "structuredContent", json_pack("{s:o}", "entries", entries));
    return SQ_MCP_OK;
}

/* status {} */
static int status(sq_cmd_call *c, json_t *args, void *data, json_t **result)
{
    (void)args;
    (void)data;
    sq_cmds *sys = c->sys;
    sq_srv *s = sys->srv;
    size_t total = (size_t)s->cfg.max_inflight_total;
    size_t avail = sq_sem_available(&s->inflight);
    sq_mutex_lock_nocancel(&s->lock);
    int sessions = s->nsessions;
    sq_mutex_unlock(&s->lock);
    json_t *st = json_pack(
        "{s:s,s:f,s:{s:I,s:I},s:i,s:o,s:{s:I}}", "server", s->cfg.server_name,
        "uptime_ms", (double)(sq_now() - sys->started) / 1e6, "requests", "total",
        (json_int_t)atomic_load(&s->requests_total), "in_flight",
        (json_int_t)(avail < total ? total - avail : 0), "sessions", sessions,
        "commands", sq_cmd_stats(sys, NULL), "history", "size",
        (json_int_t)sq__history_size(sys->history));
    for (size_t i = 0; st && i < sys->nstatus; i++) {
        json_t *part = sys->status[i].fn(sys->status[i].data);
        if (part)
            json_object_set_new(st, sys->status[i].name, part);
    }
    char *text = json_dumps(st, JSON_INDENT(2) | JSON_SORT_KEYS);
    *result = sq_mcp_text_result(text ? text : "");
    free(text);
    json_object_set_new(*result, "structuredContent", st);
    return SQ_MCP_OK;
}

static int read_history(sq_mcp_req *r, const char *uri, void *data, json_t **result)
{
    (void)r;
    sq_cmds *sys = data;
    json_t *doc = json_pack("{s:o}", "entries", sq__history_read(sys->history, NULL, -1, 0));
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    *result = json_pack("{s:[{s:s,s:s,s:s}]}", "contents", "uri", uri, "mimeType",
                        "application/json", "text", text ? text : "{}");
    free(text);
    return SQ_MCP_OK;
}

static json_t *outcome_enum(void)
{
    json_t *a = json_array();
    for (int o = 0; o < SQ_CMD_NOUTCOMES; o++)
        json_array_append_new(a, json_string(sq_cmd_outcome_name(o)));
    return a;
}

int sq__cmd_builtins(sq_cmds *sys)
{
    json_t *help_in = json_pack(
        "{s:s,s:{s:{s:s,s:s}},s:b}", "type", "object", "properties", "command",
        "type", "string", "description", "a command's name: only that one, with its schema",
        "additionalProperties", 0);
    json_t *help_out = json_pack(
        "{s:s,s:[s],s:{s:{s:s,s:{s:s,s:[s,s,s]}}}}", "type", "object", "required",
        "commands", "properties", "commands", "type", "array", "items", "type",
        "object", "required", "name", "description", "inputSchema");
    json_t *hist_in = json_pack(
        "{s:s,s:{s:{s:s},s:{s:o},s:{s:s,s:i,s:I}},s:b}", "type", "object",
        "properties", "command", "type", "string", "outcome", "enum", outcome_enum(),
        "limit", "type", "integer", "minimum", 1, "maximum",
        (json_int_t)sys->opts.history_size, "additionalProperties", 0);
    json_t *hist_out = json_pack("{s:s,s:[s],s:{s:{s:s}}}", "type", "object",
                                 "required", "entries", "properties", "entries",
                                 "type", "array");
    json_t *status_in = json_pack("{s:s,s:b}", "type", "object",
                                  "additionalProperties", 0);
    json_t *status_out = json_pack("{s:s,s:[s,s],s:{s:{s:s},s:{s:s}}}", "type",
                                   "object", "required", "commands", "requests",
                                   "properties", "commands", "type", "object",
                                   "requests", "type", "object");
    json_t *ro = json_pack("{s:b,s:b}", "readOnlyHint", 1, "openWorldHint", 0);
    sq_cmd_def defs[] = {
        {.name = "help", .title = "Commands",
         .description = "Lists the server's commands with their input and output "
                        "schemas and limits; with `command`, only that one.",
         .input_schema = help_in, .output_schema = help_out, .annotations = ro,
         .execute = help},
        {.name = "history", .title = "Command history",
         .description = "The most recent command calls, newest first: arguments "
                        "(redacted where a command asks), outcome, duration, error. "
                        "Filter by `command` and `outcome`; `limit` (default 50).",
         .input_schema = hist_in, .output_schema = hist_out, .annotations = ro,
         .flags = SQ_CMD_NO_HISTORY, .execute = history},
        {.name = "status", .title = "Server status",
         .description = "The server's state: uptime, requests, sessions, and each "
                        "command's figures (calls by outcome, running, waiting, "
                        "high-water mark, mean duration).",
         .input_schema = status_in, .output_schema = status_out, .annotations = ro,
         .execute = status},
    };
    int rc = 0;
    for (size_t i = 0; i < sizeof defs / sizeof *defs && rc == 0; i++)
        rc = sq_cmd_add(sys, &defs[i], NULL, 0);
    json_decref(help_in);
    json_decref(help_out);
    json_decref(hist_in);
    json_decref(hist_out);
    json_decref(status_in);
    json_decref(status_out);
    json_decref(ro);
    if (rc)
        return rc;
    sq_mcp_resource_def res = {
        .uri = HISTORY_URI,
        .name = "command-history",
        .title = "Command history",
        .description = "The most recent command calls, newest first (as the "
                       "history command gives them).",
        .mime_type = "application/json",
        .read = read_history,
        .data = sys,
    };
    return sq_mcp_add_resource(sys->srv, &res);
}
