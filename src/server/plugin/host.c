/* The functions a plugin calls (squirrel/plugin.h's sq_plugin_host): thin
 * adapters from the plugin's view (sq_plugin, sq_plugin_call) to the
 * server's (sq_server/cmd.h, sq_server/mcp.h). */
#include "plugin_int.h"
#include "ctx/ctx_tools.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static const char *h_name(sq_plugin *p)
{
    return p->name;
}

static void h_log(sq_plugin *p, int level, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    char comp[96];
    snprintf(comp, sizeof comp, "plugin:%s", p->name);
    if (level < SQ_MCP_DEBUG || level >= SQ_MCP_NLEVELS)
        level = SQ_MCP_INFO;
    sq_srv_log(p->h->srv, level, comp, NULL, "%s", line);
}

static int h_add_command(sq_plugin *p, const sq_plugin_command *def)
{
    return sq__plug_add_command(p, def);
}

static int h_add_resource(sq_plugin *p, const sq_plugin_resource *def)
{
    return sq__plug_add_item(p, SQ_ENTRY_RESOURCE, def, sizeof *def,
                             offsetof(sq_plugin_resource, read) + sizeof def->read);
}

static int h_add_template(sq_plugin *p, const sq_plugin_template *def)
{
    return sq__plug_add_item(p, SQ_ENTRY_TEMPLATE, def, sizeof *def,
                             offsetof(sq_plugin_template, read) + sizeof def->read);
}

static int h_add_prompt(sq_plugin *p, const sq_plugin_prompt *def)
{
    return sq__plug_add_item(p, SQ_ENTRY_PROMPT, def, sizeof *def,
                             offsetof(sq_plugin_prompt, get) + sizeof def->get);
}

static int h_remove_command(sq_plugin *p, const char *name)
{
    return sq__plug_remove_command(p, name);
}

static int h_remove_resource(sq_plugin *p, const char *uri)
{
    return sq__plug_remove_item(p, SQ_ENTRY_RESOURCE, uri);
}

static int h_remove_template(sq_plugin *p, const char *t)
{
    return sq__plug_remove_item(p, SQ_ENTRY_TEMPLATE, t);
}

static int h_remove_prompt(sq_plugin *p, const char *name)
{
    return sq__plug_remove_item(p, SQ_ENTRY_PROMPT, name);
}

static void h_resource_updated(sq_plugin *p, const char *uri)
{
    sq_mcp_resource_updated(p->h->srv, uri);
}

static int h_progress(sq_plugin_call *c, double progress, double total,
                      const char *message)
{
    return c->req ? sq_mcp_progress(c->req, progress, total, message) : 0;
}

static int h_notify(sq_plugin_call *c, int level, json_t *data)
{
    char comp[96];
    snprintf(comp, sizeof comp, "plugin:%s", c->p->name);
    return c->req ? sq_mcp_log(c->req, level, comp, data) : 0;
}

static int h_fail(sq_plugin_call *c, int code, const char *message, json_t *data)
{
    if (c->cmd)
        return sq_cmd_fail(c->cmd, code, message, data);
    if (c->req)
        return sq_mcp_fail(c->req, code, message, data);
    json_decref(data);
    return SQ_PLUGIN_ERROR;
}

static int64_t h_deadline(sq_plugin_call *c)
{
    if (c->cmd)
        return sq_cmd_deadline(c->cmd);
    return c->req ? sq_mcp_deadline(c->req) : SQ_FOREVER;
}

static bool h_client_has(sq_plugin_call *c, const char *cap)
{
    return c->req && sq_mcp_client_has(c->req, cap);
}

static json_t *h_input(sq_plugin_call *c, const char *key)
{
    return c->req ? sq_mcp_input(c->req, key) : NULL;
}

static json_t *h_state(sq_plugin_call *c)
{
    return c->req ? sq_mcp_state(c->req) : NULL;
}

static void *h_user(sq_plugin_call *c)
{
    return c->cmd ? sq_cmd_user(c->cmd) : c->user;
}

static void h_set_user(sq_plugin_call *c, void *user)
{
    if (c->cmd)
        sq_cmd_set_user(c->cmd, user);
    else
        c->user = user;
}

static int h_refuse(sq_plugin_call *c, const char *reason)
{
    return c->cmd ? sq_cmd_refuse(c->cmd, "%s", reason ? reason : "refused") : -1;
}

static json_t *h_result(sq_plugin_call *c)
{
    return c->cmd ? sq_cmd_result(c->cmd) : NULL;
}

static const char *h_outcome(sq_plugin_call *c)
{
    return c->cmd ? sq_cmd_outcome_name(sq_cmd_outcome(c->cmd)) : "ok";
}

static int h_call_command(sq_plugin *p, const char *name, json_t *args,
                          int64_t deadline, json_t **result)
{
    int rc = sq_cmd_invoke(sq_srv_cmds(p->h->srv), name, args, deadline, result);
    return rc < 0 ? rc : 0;
}

/* ---- the context manager: the server's (NULL with --store none) */

static sq_ctx_mgr *ctx_mgr(sq_plugin *p, char *err, size_t errlen)
{
    ctx_tools *t = p->h->srv->ctx;
    if (!t) {
        snprintf(err, errlen, "the server has no context manager (it runs with --store none)");
        return NULL;
    }
    return t->mgr;
}

/* The manager's error as the sentence the plugin gets; rc is its errno. */
static int ctx_fail(int rc, const sq_ctx_err *e, char *err, size_t errlen)
{
    if (e->current_version)
        snprintf(err, errlen, "%s: %s (current version %llu)", sq_ctx_code_name(e->code),
                 e->message, (unsigned long long)e->current_version);
    else
        snprintf(err, errlen, "%s: %s", sq_ctx_code_name(e->code), e->message);
    return rc;
}

/* Who made a change, as the context's history records it. */
static void ctx_actor(sq_plugin *p, char *buf, size_t n)
{
    snprintf(buf, n, "plugin:%s", p->name);
}

static int h_ctx_get(sq_plugin *p, const char *id, json_t **document, uint64_t *version,
                     char *err, size_t errlen)
{
    sq_ctx_mgr *m = ctx_mgr(p, err, errlen);
    if (!m)
        return -ENOTSUP;
    sq_ctx_info i = {0};
    sq_ctx_err e = {0};
    int rc = sq_ctx_get(m, id, 0, &i, &e);
    if (rc)
        return ctx_fail(rc, &e, err, errlen);
    /* A copy: the manager's trees are shared and must not change. */
    json_t *d = document ? json_deep_copy(i.document) : NULL;
    if (version)
        *version = i.version;
    sq_ctx_info_clear(&i);
    if (document) {
        if (!d) {
            snprintf(err, errlen, "out of memory");
            return -ENOMEM;
        }
        *document = d;
    }
    return 0;
}

static int h_ctx_create(sq_plugin *p, const char *id, json_t *document, uint64_t *version,
                        char *err, size_t errlen)
{
    sq_ctx_mgr *m = ctx_mgr(p, err, errlen);
    if (!m)
        return -ENOTSUP;
    char actor[96];
    ctx_actor(p, actor, sizeof actor);
    sq_ctx_err e = {0};
    int rc = sq_ctx_create(m, id, document, NULL, actor, NULL, &e);
    if (rc)
        return ctx_fail(rc, &e, err, errlen);
    if (version)
        *version = 1;
    return 0;
}

static int h_ctx_patch(sq_plugin *p, const char *id, json_t *patch, uint64_t expect_version,
                       uint64_t *version, char *err, size_t errlen)
{
    sq_ctx_mgr *m = ctx_mgr(p, err, errlen);
    if (!m)
        return -ENOTSUP;
    char actor[96];
    ctx_actor(p, actor, sizeof actor);
    sq_ctx_change c = {.id = id, .kind = SQ_CTX_JSON_PATCH, .patch = patch,
                       .expected_version = expect_version, .actor = actor};
    sq_ctx_err e = {0};
    int rc = sq_ctx_update(m, &c, version, &e);
    return rc ? ctx_fail(rc, &e, err, errlen) : 0;
}

static int h_ctx_delete(sq_plugin *p, const char *id, char *err, size_t errlen)
{
    sq_ctx_mgr *m = ctx_mgr(p, err, errlen);
    if (!m)
        return -ENOTSUP;
    sq_ctx_err e = {0};
    int rc = sq_ctx_delete(m, id, 0, NULL, &e);
    return rc ? ctx_fail(rc, &e, err, errlen) : 0;
}

const sq_plugin_host sq__plugin_host = {
    .size = sizeof(sq_plugin_host),
    .abi_version = SQ_PLUGIN_ABI_VERSION,
    .server_version = "squirreld 0.1.0",
    .name = h_name,
    .log = h_log,
    .add_command = h_add_command,
    .add_resource = h_add_resource,
    .add_template = h_add_template,
    .add_prompt = h_add_prompt,
    .remove_command = h_remove_command,
    .remove_resource = h_remove_resource,
    .remove_template = h_remove_template,
    .remove_prompt = h_remove_prompt,
    .resource_updated = h_resource_updated,
    .progress = h_progress,
    .notify = h_notify,
    .fail = h_fail,
    .deadline = h_deadline,
    .client_has = h_client_has,
    .input = h_input,
    .state = h_state,
    .user = h_user,
    .set_user = h_set_user,
    .refuse = h_refuse,
    .result = h_result,
    .outcome = h_outcome,
    .call_command = h_call_command,
    .ctx_get = h_ctx_get,
    .ctx_create = h_ctx_create,
    .ctx_patch = h_ctx_patch,
    .ctx_delete = h_ctx_delete,
};
