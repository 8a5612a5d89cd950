/* What clients see of the plugin host: the resource squirrel://plugins
 * (every plugin with its state, and the recent transitions) and, when the
 * configuration allows it, the command plugin_admin (list, load, unload,
 * reload). */
#include "plugin_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PLUGINS_URI "squirrel://plugins"

static json_t *iso_ms(int64_t ms)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    char buf[64];
    snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (int)(ms % 1000));
    return json_string(buf);
}

json_t *sq_plugins_describe(sq_plugins *h)
{
    json_t *list = json_array(), *trans = json_array();
    /* The command names are read after the lock (they take it). */
    sq_plugin *v[256];
    size_t n = 0;
    sq_mutex_lock_nocancel(&h->lock);
    SQ__LIST_FOREACH(l, &h->plugins) {
        sq_plugin *p = sq__list_entry(l, sq_plugin, link);
        json_t *deps = json_array();
        for (char **d = p->depends; d && *d; d++)
            json_array_append_new(deps, json_string(*d));
        json_t *o = json_pack("{s:s,s:s,s:s,s:o}", "name", p->name, "file", p->file,
                              "state", sq_plugin_state_name(atomic_load(&p->st)),
                              "depends", deps);
        if (p->version)
            json_object_set_new(o, "version", json_string(p->version));
        if (p->reason[0])
            json_object_set_new(o, "reason", json_string(p->reason));
        if (atomic_load(&p->abandoned))
            json_object_set_new(o, "abandoned", json_true());
        json_array_append_new(list, o);
        if (n < 256)
            v[n++] = p;
    }
    uint64_t newest = h->next_trans - 1;
    uint64_t oldest = newest >= PLUG_TRANSITIONS ? newest - PLUG_TRANSITIONS + 1 : 1;
    for (uint64_t s = oldest; s <= newest && s > 0; s++) {
        const plug_transition *t = &h->trans[(s - 1) % PLUG_TRANSITIONS];
        json_t *o = json_pack("{s:I,s:s,s:s,s:s,s:o}", "seq", (json_int_t)t->seq,
                              "plugin", t->plugin, "from", sq_plugin_state_name(t->from),
                              "to", sq_plugin_state_name(t->to), "at", iso_ms(t->at_ms));
        if (t->reason[0])
            json_object_set_new(o, "reason", json_string(t->reason));
        json_array_append_new(trans, o);
    }
    sq_mutex_unlock(&h->lock);
    /* Records are never freed while the server runs, so p stays valid. */
    for (size_t i = 0; i < n; i++)
        json_object_set_new(json_array_get(list, i), "commands",
                            sq__plug_command_names(v[i]));
    return json_pack("{s:o,s:o}", "plugins", list, "transitions", trans);
}

void sq__plug_notify(sq_plugins *h)
{
    sq_mcp_resource_updated(h->srv, PLUGINS_URI);
}

static int read_plugins(sq_mcp_req *r, const char *uri, void *data, json_t **result)
{
    (void)r;
    json_t *doc = sq_plugins_describe(data);
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    *result = json_pack("{s:[{s:s,s:s,s:s}]}", "contents", "uri", uri, "mimeType",
                        "application/json", "text", text ? text : "{}");
    free(text);
    return SQ_MCP_OK;
}

/* plugin_admin {action, file?, name?} */
static int admin(sq_cmd_call *c, json_t *args, void *data, json_t **result)
{
    sq_plugins *h = data;
    const char *action = json_string_value(json_object_get(args, "action"));
    const char *file = json_string_value(json_object_get(args, "file"));
    const char *name = json_string_value(json_object_get(args, "name"));
    char err[600] = "";
    int rc = 0;
    if (strcmp(action, "load") == 0) {
        rc = file ? sq_plugins_load(h, file, err, sizeof err) : -EINVAL;
        if (!file)
            snprintf(err, sizeof err, "load needs `file`");
    } else if (strcmp(action, "unload") == 0 || strcmp(action, "reload") == 0) {
        if (!name) {
            rc = -EINVAL;
            snprintf(err, sizeof err, "%s needs `name`", action);
        } else {
            rc = action[0] == 'u' ? sq_plugins_unload(h, name, err, sizeof err)
                                  : sq_plugins_reload(h, name, err, sizeof err);
        }
    }
    (void)c;
    json_t *doc = sq_plugins_describe(h);
    if (rc) {
        *result = sq_mcp_tool_error(err[0] ? err : sq_strerror(rc));
        json_object_set_new(doc, "error", json_string(err));
    } else {
        char text[300];
        snprintf(text, sizeof text, "%s: done", action);
        *result = sq_mcp_text_result(strcmp(action, "list") == 0 ? "plugins listed" : text);
    }
    json_object_set_new(*result, "structuredContent", doc);
    return SQ_MCP_OK;
}

int sq__plug_admin_register(sq_plugins *h)
{
    sq_mcp_resource_def res = {
        .uri = PLUGINS_URI,
        .name = "plugins",
        .title = "Plugins",
        .description = "Every plugin the server was asked to load: its state "
                       "(registered, initializing, active, shutting down, disabled, "
                       "failed), why, its dependencies and commands; and the recent "
                       "state transitions.",
        .mime_type = "application/json",
        .read = read_plugins,
        .data = h,
    };
    int rc = sq_mcp_add_resource(h->srv, &res);
    if (rc || !sq_srv_config_of(h->srv)->plugin_admin)
        return rc;
    json_t *in = json_pack(
        "{s:s,s:{s:{s:s,s:[s,s,s,s]},s:{s:s,s:i},s:{s:s,s:i}},s:[s],s:b}", "type",
        "object", "properties", "action", "type", "string", "enum", "list", "load",
        "unload", "reload", "file", "type", "string", "minLength", 1, "name", "type",
        "string", "minLength", 1, "required", "action", "additionalProperties", 0);
    sq_cmd_def d = {
        .name = "plugin_admin",
        .title = "Plugin administration",
        .description = "Loads a plugin from a file on the server (`file`), or unloads or "
                       "reloads a loaded one (`name`), while the server runs; `list` "
                       "shows them.  Plugins are trusted code running inside the server.",
        .input_schema = in,
        .execute = admin,
        .data = h,
    };
    rc = sq_cmd_add(sq_srv_cmds(h->srv), &d, NULL, 0);
    json_decref(in);
    return rc;
}
