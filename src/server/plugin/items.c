/* What a plugin registers (plugin_int.h): its commands go to the command
 * system (sq_server/cmd.h) with small functions in front that hand the
 * plugin its own view of the call; its resources, templates and prompts
 * go to the registry behind a wrapper that counts the calls in the
 * plugin's code, so that removing them can wait for those calls to end
 * before the plugin's release runs and its code is unloaded. */
#include "plugin_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ commands */

static sq_plugin_call call_of(plug_cmd *w, sq_cmd_call *c)
{
    return (sq_plugin_call){.p = w->p, .cmd = c, .req = sq_cmd_req(c)};
}

static int t_exec(sq_cmd_call *c, json_t *args, void *data, json_t **result)
{
    plug_cmd *w = data;
    sq_plugin_call pc = call_of(w, c);
    return w->def.execute(&pc, args, w->def.data, result);
}

static int t_pre(sq_cmd_call *c, void *data)
{
    plug_cmd *w = data;
    sq_plugin_call pc = call_of(w, c);
    return w->def.pre(&pc, w->def.data);
}

static int t_post(sq_cmd_call *c, void *data)
{
    plug_cmd *w = data;
    sq_plugin_call pc = call_of(w, c);
    return w->def.post(&pc, w->def.data);
}

static void t_cleanup(sq_cmd_call *c, void *data)
{
    plug_cmd *w = data;
    sq_plugin_call pc = call_of(w, c);
    w->def.cleanup(&pc, w->def.data);
}

static void t_release(void *data)
{
    plug_cmd *w = data;
    if (w->def.release)
        w->def.release(w->def.data);
    free(w);
}

/* What a reloading plugin's commands run meanwhile: nothing, since they
 * are paused; a call that got past the pause is told. */
static int t_parked(sq_cmd_call *c, json_t *args, void *data, json_t **result)
{
    (void)args;
    (void)data;
    char msg[200];
    snprintf(msg, sizeof msg, "command %s: its plugin is being reloaded",
             sq_cmd_name(c));
    *result = sq_mcp_tool_error(msg);
    return SQ_MCP_OK;
}

static plug_name *find_name(sq_plugin *p, const char *name)
{
    SQ__LIST_FOREACH(l, &p->cmds) {
        plug_name *n = sq__list_entry(l, plug_name, link);
        if (strcmp(n->name, name) == 0)
            return n;
    }
    return NULL;
}

static bool refusing(sq_plugin *p)
{
    int st = sq__plug_state(p);
    return st == SQ_PLUGIN_SHUTTING_DOWN || st == SQ_PLUGIN_DISABLED ||
           st == SQ_PLUGIN_FAILED;
}

int sq__plug_add_command(sq_plugin *p, const sq_plugin_command *def)
{
    if (!def || def->size < offsetof(sq_plugin_command, cleanup) + sizeof def->cleanup)
        return -EINVAL;
    if (refusing(p))
        return -ESHUTDOWN;
    plug_cmd *w = calloc(1, sizeof *w);
    if (!w)
        return -ENOMEM;
    w->p = p;
    memcpy(&w->def, def, def->size < sizeof w->def ? def->size : sizeof w->def);
    const sq_plugin_command *d = &w->def;
    sq_cmd_def cd = {
        .name = d->name,
        .title = d->title,
        .description = d->description,
        .input_schema = d->input_schema,
        .output_schema = d->output_schema,
        .annotations = d->annotations,
        .tool_flags = (d->flags & SQ_PLUGIN_CMD_HIDDEN) ? SQ_MCP_HIDDEN : 0,
        .flags = ((d->flags & SQ_PLUGIN_CMD_NO_WAIT) ? SQ_CMD_NO_WAIT : 0) |
                 ((d->flags & SQ_PLUGIN_CMD_NO_HISTORY) ? SQ_CMD_NO_HISTORY : 0),
        .execute = d->execute ? t_exec : NULL,
        .pre = d->pre ? t_pre : NULL,
        .post = d->post ? t_post : NULL,
        .cleanup = d->cleanup ? t_cleanup : NULL,
        .data = w,
        .release = t_release,
        .max_concurrent = d->max_concurrent,
        .timeout = d->timeout_ns > 0 ? d->timeout_ns : 0,
        .redact = d->redact,
    };
    sq_cmds *sys = sq_srv_cmds(p->h->srv);
    char err[300] = "";
    sq_mutex_lock_nocancel(&p->h->lock);
    plug_name *n = d->name ? find_name(p, d->name) : NULL;
    bool again = n && atomic_load(&p->reloading) && !n->fresh;
    if (n && !again) {
        sq_mutex_unlock(&p->h->lock);
        free(w);
        sq_srv_log(p->h->srv, SQ_MCP_WARNING, "plugin", NULL,
                   "plugin %s: command %s registered twice", p->name, def->name);
        return -EEXIST;
    }
    /* Calls wait until the plugin is active. */
    if (sq__plug_state(p) != SQ_PLUGIN_ACTIVE)
        cd.flags |= SQ_CMD_START_PAUSED;
    sq_mutex_unlock(&p->h->lock);
    int rc = again ? sq_cmd_replace(sys, &cd, err, sizeof err)
                   : sq_cmd_add(sys, &cd, err, sizeof err);
    if (rc) {
        free(w); /* the command system did not keep it: data stays the plugin's */
        sq_srv_log(p->h->srv, SQ_MCP_WARNING, "plugin", NULL,
                   "plugin %s: command %s refused: %s", p->name,
                   def->name ? def->name : "(no name)", err[0] ? err : sq_strerror(rc));
        return rc;
    }
    sq_mutex_lock_nocancel(&p->h->lock);
    if (again) {
        n->fresh = true;
    } else if ((n = calloc(1, sizeof *n)) && (n->name = strdup(def->name))) {
        sq__list_push_back(&p->cmds, &n->link);
    } else {
        free(n);
        n = NULL;
    }
    sq_mutex_unlock(&p->h->lock);
    if (!n) { /* out of memory: it cannot be tracked, so it goes */
        sq_cmd_remove(sys, def->name, sq_now());
        return -ENOMEM;
    }
    return 0;
}

int sq__plug_remove_command(sq_plugin *p, const char *name)
{
    sq_mutex_lock_nocancel(&p->h->lock);
    plug_name *n = name ? find_name(p, name) : NULL;
    if (n)
        sq__list_remove(&p->cmds, &n->link);
    sq_mutex_unlock(&p->h->lock);
    if (!n)
        return -ENOENT;
    int rc = sq_cmd_remove(sq_srv_cmds(p->h->srv), name, sq_now() + p->h->timeout);
    if (rc == -ETIMEDOUT)
        atomic_store(&p->abandoned, true);
    free(n->name);
    free(n);
    return 0;
}

json_t *sq__plug_command_names(sq_plugin *p)
{
    json_t *a = json_array();
    sq_mutex_lock_nocancel(&p->h->lock);
    SQ__LIST_FOREACH(l, &p->cmds)
        json_array_append_new(a, json_string(sq__list_entry(l, plug_name, link)->name));
    sq_mutex_unlock(&p->h->lock);
    return a;
}

/* ------------------------------------------------ resources and prompts */

static void item_unref(void *data)
{
    plug_item *it = data;
    if (atomic_fetch_sub(&it->refs, 1) != 1)
        return;
    free(it->key);
    free(it);
}

/* Enters the plugin's code for a call of it: false once it is being
 * removed.  The count goes up before the check, and the remover marks it
 * before it waits for the count to fall (both sequentially consistent),
 * so a call either is seen by the remover or sees the mark. */
static bool item_enter(plug_item *it)
{
    atomic_fetch_add(&it->calls, 1);
    if (!atomic_load(&it->closed))
        return true;
    atomic_fetch_sub(&it->calls, 1);
    return false;
}

static int gone(sq_mcp_req *r, plug_item *it)
{
    char msg[300];
    snprintf(msg, sizeof msg, "%s: plugin %s is being stopped or reloaded", it->key,
             it->p->name);
    return sq_mcp_fail(r, -32603, msg, NULL);
}

static int t_read(sq_mcp_req *r, const char *uri, void *data, json_t **result)
{
    plug_item *it = data;
    if (!item_enter(it))
        return gone(r, it);
    sq_plugin_call pc = {.p = it->p, .req = r};
    int rc = it->kind == SQ_ENTRY_RESOURCE
                 ? it->def.res.read(&pc, uri, it->def.res.data, result)
                 : it->def.tmpl.read(&pc, uri, it->def.tmpl.data, result);
    atomic_fetch_sub(&it->calls, 1);
    return rc;
}

static int t_prompt(sq_mcp_req *r, json_t *args, void *data, json_t **result)
{
    plug_item *it = data;
    if (!item_enter(it))
        return gone(r, it);
    sq_plugin_call pc = {.p = it->p, .req = r};
    int rc = it->def.prompt.get(&pc, args, it->def.prompt.data, result);
    atomic_fetch_sub(&it->calls, 1);
    return rc;
}

int sq__plug_add_item(sq_plugin *p, int kind, const void *def, size_t size,
                      size_t min)
{
    uint32_t given = def ? *(const uint32_t *)def : 0;
    if (!def || given < min)
        return -EINVAL;
    if (refusing(p))
        return -ESHUTDOWN;
    plug_item *it = calloc(1, sizeof *it);
    if (!it)
        return -ENOMEM;
    it->p = p;
    it->kind = kind;
    memcpy(&it->def, def, given < size ? given : size);
    atomic_init(&it->refs, 2); /* the plugin's list, the registry's entry */
    int rc;
    if (kind == SQ_ENTRY_RESOURCE) {
        const sq_plugin_resource *d = &it->def.res;
        it->key = d->uri ? strdup(d->uri) : NULL;
        sq_mcp_resource_def rd = {
            .uri = d->uri, .name = d->name, .title = d->title,
            .description = d->description, .mime_type = d->mime_type,
            .read = d->read ? t_read : NULL, .data = it, .release = item_unref,
        };
        rc = it->key ? sq_mcp_add_resource(p->h->srv, &rd) : -EINVAL;
    } else if (kind == SQ_ENTRY_TEMPLATE) {
        const sq_plugin_template *d = &it->def.tmpl;
        it->key = d->uri_template ? strdup(d->uri_template) : NULL;
        sq_mcp_template_def td = {
            .uri_template = d->uri_template, .name = d->name, .title = d->title,
            .description = d->description, .mime_type = d->mime_type,
            .read = d->read ? t_read : NULL, .data = it, .release = item_unref,
        };
        rc = it->key ? sq_mcp_add_template(p->h->srv, &td) : -EINVAL;
    } else {
        const sq_plugin_prompt *d = &it->def.prompt;
        it->key = d->name ? strdup(d->name) : NULL;
        sq_mcp_prompt_def pd = {
            .name = d->name, .title = d->title, .description = d->description,
            .arguments = d->arguments, .get = d->get ? t_prompt : NULL,
            .data = it, .release = item_unref,
        };
        rc = it->key ? sq_mcp_add_prompt(p->h->srv, &pd) : -EINVAL;
    }
    if (rc) {
        /* On -EEXIST the registry released its reference already. */
        if (rc != -EEXIST)
            item_unref(it);
        item_unref(it);
        sq_srv_log(p->h->srv, SQ_MCP_WARNING, "plugin", NULL,
                   "plugin %s: %s refused: %s", p->name, it->key ? it->key : "(no name)",
                   rc == -EEXIST ? "the name is taken" : sq_strerror(rc));
        return rc;
    }
    sq_mutex_lock_nocancel(&p->h->lock);
    sq__list_push_back(&p->items, &it->link);
    sq_mutex_unlock(&p->h->lock);
    return 0;
}

static int registry_remove(sq_srv *s, plug_item *it)
{
    switch (it->kind) {
    case SQ_ENTRY_RESOURCE: return sq_mcp_remove_resource(s, it->key);
    case SQ_ENTRY_TEMPLATE: return sq_mcp_remove_template(s, it->key);
    default: return sq_mcp_remove_prompt(s, it->key);
    }
}

static void (*item_release(plug_item *it))(void *)
{
    switch (it->kind) {
    case SQ_ENTRY_RESOURCE: return it->def.res.release;
    case SQ_ENTRY_TEMPLATE: return it->def.tmpl.release;
    default: return it->def.prompt.release;
    }
}

static void *item_data(plug_item *it)
{
    switch (it->kind) {
    case SQ_ENTRY_RESOURCE: return it->def.res.data;
    case SQ_ENTRY_TEMPLATE: return it->def.tmpl.data;
    default: return it->def.prompt.data;
    }
}

/* Takes it out of the registry, waits for the calls in the plugin's code
 * to end (until deadline), then hands the plugin its data back. */
static void item_retire(plug_item *it, int64_t deadline)
{
    sq_plugin *p = it->p;
    atomic_store(&it->closed, true);
    registry_remove(p->h->srv, it);
    /* Reads and prompt calls are short: waiting for them is a poll with
     * a short sleep, bounded by the deadline. */
    while (atomic_load(&it->calls) > 0 && sq_now() < deadline)
        sq_sleep(SQ_MSEC);
    if (atomic_load(&it->calls) > 0) {
        atomic_store(&p->abandoned, true); /* a call is still in its code */
        return;
    }
    void (*rel)(void *) = item_release(it);
    if (rel)
        rel(item_data(it));
}

static plug_item *take_item(sq_plugin *p, int kind, const char *key)
{
    plug_item *found = NULL;
    sq_mutex_lock_nocancel(&p->h->lock);
    SQ__LIST_FOREACH(l, &p->items) {
        plug_item *it = sq__list_entry(l, plug_item, link);
        if ((kind < 0 || it->kind == kind) && (!key || strcmp(it->key, key) == 0)) {
            found = it;
            break;
        }
    }
    if (found)
        sq__list_remove(&p->items, &found->link);
    sq_mutex_unlock(&p->h->lock);
    return found;
}

int sq__plug_remove_item(sq_plugin *p, int kind, const char *key)
{
    plug_item *it = key ? take_item(p, kind, key) : NULL;
    if (!it)
        return -ENOENT;
    item_retire(it, sq_now() + p->h->timeout);
    item_unref(it);
    return 0;
}

static void remove_items(sq_plugin *p, int64_t deadline)
{
    plug_item *it;
    while ((it = take_item(p, -1, NULL))) {
        item_retire(it, deadline);
        item_unref(it);
    }
}

static plug_name *take_name(sq_plugin *p)
{
    sq_mutex_lock_nocancel(&p->h->lock);
    struct sq__link *l = p->cmds.head;
    if (l)
        sq__list_remove(&p->cmds, l);
    sq_mutex_unlock(&p->h->lock);
    return l ? sq__list_entry(l, plug_name, link) : NULL;
}

void sq__plug_remove_all(sq_plugin *p, int64_t deadline)
{
    sq_cmds *sys = sq_srv_cmds(p->h->srv);
    plug_name *n;
    while ((n = take_name(p))) {
        if (sq_cmd_remove(sys, n->name, deadline) == -ETIMEDOUT)
            atomic_store(&p->abandoned, true);
        free(n->name);
        free(n);
    }
    remove_items(p, deadline);
}

/* The names of p's commands, copied (for walking without the lock). */
static char **names_of(sq_plugin *p, size_t *count)
{
    sq_mutex_lock_nocancel(&p->h->lock);
    size_t n = 0;
    SQ__LIST_FOREACH(l, &p->cmds)
        n++;
    char **v = calloc(n + 1, sizeof *v);
    size_t k = 0;
    if (v) {
        SQ__LIST_FOREACH(l, &p->cmds)
            v[k++] = strdup(sq__list_entry(l, plug_name, link)->name);
    }
    sq_mutex_unlock(&p->h->lock);
    *count = k;
    return v;
}

static void free_names(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void sq__plug_park(sq_plugin *p, int64_t deadline)
{
    sq_cmds *sys = sq_srv_cmds(p->h->srv);
    size_t n;
    char **names = names_of(p, &n);
    for (size_t i = 0; names && i < n; i++) {
        if (!names[i])
            continue;
        int rc = sq_cmd_pause(sys, names[i], deadline);
        if (rc == -ETIMEDOUT)
            atomic_store(&p->abandoned, true);
        if (rc == 0 || rc == -EALREADY)
            sq_cmd_stub(sys, names[i], t_parked);
    }
    free_names(names, n);
    sq_mutex_lock_nocancel(&p->h->lock);
    SQ__LIST_FOREACH(l, &p->cmds)
        sq__list_entry(l, plug_name, link)->fresh = false;
    sq_mutex_unlock(&p->h->lock);
    remove_items(p, deadline);
}

void sq__plug_unpark(sq_plugin *p)
{
    sq_cmds *sys = sq_srv_cmds(p->h->srv);
    /* Commands the new code did not register again go (their callers,
     * waiting at the pause, are told the command was removed). */
    for (;;) {
        plug_name *stale = NULL;
        sq_mutex_lock_nocancel(&p->h->lock);
        SQ__LIST_FOREACH(l, &p->cmds) {
            plug_name *n = sq__list_entry(l, plug_name, link);
            if (!n->fresh) {
                stale = n;
                break;
            }
        }
        if (stale)
            sq__list_remove(&p->cmds, &stale->link);
        sq_mutex_unlock(&p->h->lock);
        if (!stale)
            break;
        sq_cmd_remove(sys, stale->name, sq_now());
        free(stale->name);
        free(stale);
    }
    sq__plug_resume_all(p);
}

void sq__plug_resume_all(sq_plugin *p)
{
    sq_cmds *sys = sq_srv_cmds(p->h->srv);
    size_t n;
    char **names = names_of(p, &n);
    for (size_t i = 0; names && i < n; i++)
        if (names[i])
            sq_cmd_resume(sys, names[i]);
    free_names(names, n);
}
