/* The registry of tools, resources, resource templates and prompts
 * (sq_server/mcp.h), on the patterns layer's shared state: each version
 * is an immutable set of sorted arrays of entries, so a lookup or a list
 * reads a snapshot without any lock held while it works, and a change
 * makes the next version (copy on write) under the state's update lock.
 * Entries are reference-counted and shared by the versions that hold
 * them; a call holds a reference to its entry, so a removal never pulls
 * a tool from under a call in flight.  list_changed goes out after the
 * change is committed and the lock released (sq_srv_list_changed). */
#include "srv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "squirrel/state.h"
#include "sq_base/base64.h"
#include "sq_server/schema.h"

typedef struct reg_value {
    sq_entry **items[SQ_ENTRY_NKINDS];
    size_t n[SQ_ENTRY_NKINDS];
} reg_value;

struct sq_registry {
    sq_state state;
};

static sq_entry *entry_ref(sq_entry *e)
{
    atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
    return e;
}

static void (*release_of(sq_entry *e))(void *)
{
    switch (e->kind) {
    case SQ_ENTRY_TOOL: return e->def.tool.release;
    case SQ_ENTRY_RESOURCE: return e->def.resource.release;
    case SQ_ENTRY_TEMPLATE: return e->def.tmpl.release;
    default: return e->def.prompt.release;
    }
}

static void *data_of(sq_entry *e)
{
    switch (e->kind) {
    case SQ_ENTRY_TOOL: return e->def.tool.data;
    case SQ_ENTRY_RESOURCE: return e->def.resource.data;
    case SQ_ENTRY_TEMPLATE: return e->def.tmpl.data;
    default: return e->def.prompt.data;
    }
}

void sq_entry_unref(sq_entry *e)
{
    if (!e || atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) != 1)
        return;
    void (*rel)(void *) = release_of(e);
    if (rel)
        rel(data_of(e));
    if (e->kind == SQ_ENTRY_TOOL) {
        json_decref(e->def.tool.input_schema);
        json_decref(e->def.tool.output_schema);
        json_decref(e->def.tool.annotations);
    } else if (e->kind == SQ_ENTRY_PROMPT) {
        json_decref(e->def.prompt.arguments);
    }
    sq_schema_free(e->schema);
    json_decref(e->desc);
    free(e->key);
    free(e);
}

static void value_destroy(void *v, void *user)
{
    (void)user;
    reg_value *r = v;
    for (int k = 0; k < SQ_ENTRY_NKINDS; k++) {
        for (size_t i = 0; i < r->n[k]; i++)
            sq_entry_unref(r->items[k][i]);
        free(r->items[k]);
    }
    free(r);
}

static int value_copy(const void *src, void **dst, void *user)
{
    (void)user;
    const reg_value *s = src;
    reg_value *d = calloc(1, sizeof *d);
    if (!d)
        return -ENOMEM;
    for (int k = 0; k < SQ_ENTRY_NKINDS; k++) {
        /* One spare slot: the change that made the copy may add one. */
        d->items[k] = malloc((s->n[k] + 1) * sizeof *d->items[k]);
        if (!d->items[k]) {
            value_destroy(d, NULL);
            return -ENOMEM;
        }
        for (size_t i = 0; i < s->n[k]; i++)
            d->items[k][i] = entry_ref(s->items[k][i]);
        d->n[k] = s->n[k];
    }
    *dst = d;
    return 0;
}

sq_registry *sq__registry_new(void)
{
    sq_registry *g = calloc(1, sizeof *g);
    reg_value *v = calloc(1, sizeof *v);
    if (!g || !v) {
        free(g);
        free(v);
        return NULL;
    }
    sq_state_ops ops = {.destroy = value_destroy, .copy = value_copy};
    if (sq_state_init(&g->state, v, &ops) != 0) {
        free(g);
        free(v);
        return NULL;
    }
    return g;
}

void sq__registry_free(sq_registry *g)
{
    if (!g)
        return;
    sq_state_destroy(&g->state);
    free(g);
}

/* Binary search: the index of key in items, or where it would go. */
static size_t find_index(sq_entry *const *items, size_t n, const char *key,
                         bool *found)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(items[mid]->key, key);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

/* ------------------------------------------------------------ changes */

typedef struct change {
    sq_entry *add;       /* to insert (the change's reference) */
    int kind;
    const char *remove;  /* key to remove */
    int rc;
} change;

static bool need(const void *cur, void *arg)
{
    const reg_value *v = cur;
    change *c = arg;
    bool found;
    int k = c->kind;
    find_index(v->items[k], v->n[k], c->add ? c->add->key : c->remove, &found);
    c->rc = c->add ? (found ? -EEXIST : 0) : (found ? 0 : -ENOENT);
    return c->rc == 0;
}

static int modify(void *value, void *arg)
{
    reg_value *v = value;
    change *c = arg;
    int k = c->kind;
    bool found;
    size_t i = find_index(v->items[k], v->n[k],
                          c->add ? c->add->key : c->remove, &found);
    if (c->add) {
        memmove(v->items[k] + i + 1, v->items[k] + i,
                (v->n[k] - i) * sizeof *v->items[k]);
        v->items[k][i] = entry_ref(c->add);
        v->n[k]++;
    } else {
        sq_entry *gone = v->items[k][i];
        memmove(v->items[k] + i, v->items[k] + i + 1,
                (v->n[k] - i - 1) * sizeof *v->items[k]);
        v->n[k]--;
        sq_entry_unref(gone);
    }
    return 0;
}

static int apply(sq_srv *s, change *c)
{
    /* 1: changed; 0: need() said no (c->rc says why); else an error. */
    int rc = sq_state_change_until(&s->reg->state, need, NULL, modify, c,
                                   SQ_FOREVER, NULL);
    if (rc == 1) {
        sq_srv_list_changed(s, c->kind); /* the lock is released by now */
        return 0;
    }
    return rc == 0 ? c->rc : rc;
}

/* --------------------------------------------------------- descriptions */

static bool valid_tool_name(const char *n)
{
    size_t len = n ? strlen(n) : 0;
    if (len == 0 || len > 128)
        return false;
    for (const char *p = n; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              (*p >= '0' && *p <= '9') || *p == '_' || *p == '.' || *p == '-'))
            return false;
    return true;
}

static void set_str(json_t *o, const char *k, const char *v)
{
    if (v)
        json_object_set_new(o, k, json_string(v));
}

static sq_entry *entry_new(int kind, const char *key)
{
    sq_entry *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->kind = kind;
    e->key = strdup(key);
    e->desc = json_object();
    atomic_init(&e->refs, 1);
    if (!e->key || !e->desc) {
        sq_entry_unref(e);
        return NULL;
    }
    return e;
}

static int add_entry(sq_srv *s, sq_entry *e)
{
    change c = {.add = e, .kind = e->kind};
    int rc = apply(s, &c);
    sq_entry_unref(e); /* the registry holds its own now */
    return rc;
}

int sq_mcp_add_tool(sq_srv *s, const sq_mcp_tool_def *d)
{
    if (!d || !valid_tool_name(d->name) || !d->call || !d->description ||
        !json_is_object(d->input_schema) ||
        (d->output_schema && !json_is_object(d->output_schema)))
        return -EINVAL;
    sq_entry *e = entry_new(SQ_ENTRY_TOOL, d->name);
    if (!e)
        return -ENOMEM;
    e->def.tool = *d;
    e->def.tool.name = e->key;
    /* Strings of the definition are the caller's: keep copies in desc. */
    set_str(e->desc, "name", d->name);
    set_str(e->desc, "title", d->title);
    set_str(e->desc, "description", d->description);
    e->def.tool.title = NULL;
    e->def.tool.description = NULL;
    json_object_set(e->desc, "inputSchema", d->input_schema);
    json_incref(d->input_schema);
    if (d->output_schema) {
        json_object_set(e->desc, "outputSchema", d->output_schema);
        json_incref(d->output_schema);
    }
    if (d->annotations) {
        json_object_set(e->desc, "annotations", d->annotations);
        json_incref(d->annotations);
    }
    const char *k;
    json_t *prop;
    json_object_foreach(json_object_get(d->input_schema, "properties"), k, prop) {
        if (json_object_get(prop, "x-mcp-header"))
            atomic_store(&s->param_headers, true);
    }
    if (d->flags & SQ_MCP_VALIDATE) {
        char err[256];
        if (!(e->schema = sq_schema_compile(d->input_schema, err, sizeof err))) {
            sq_srv_log(s, SQ_MCP_ERROR_LEVEL, "registry", NULL,
                       "tool %s: input schema refused: %s", d->name, err);
            sq_entry_unref(e);
            return -EINVAL;
        }
    }
    return add_entry(s, e);
}

int sq_mcp_add_resource(sq_srv *s, const sq_mcp_resource_def *d)
{
    if (!d || !d->uri || !*d->uri || !d->name || !d->read)
        return -EINVAL;
    sq_entry *e = entry_new(SQ_ENTRY_RESOURCE, d->uri);
    if (!e)
        return -ENOMEM;
    e->def.resource = *d;
    e->def.resource.uri = e->key;
    set_str(e->desc, "uri", d->uri);
    set_str(e->desc, "name", d->name);
    set_str(e->desc, "title", d->title);
    set_str(e->desc, "description", d->description);
    set_str(e->desc, "mimeType", d->mime_type);
    e->def.resource.name = e->def.resource.title = NULL;
    e->def.resource.description = e->def.resource.mime_type = NULL;
    return add_entry(s, e);
}

int sq_mcp_add_template(sq_srv *s, const sq_mcp_template_def *d)
{
    if (!d || !d->uri_template || !*d->uri_template || !d->name || !d->read)
        return -EINVAL;
    sq_entry *e = entry_new(SQ_ENTRY_TEMPLATE, d->uri_template);
    if (!e)
        return -ENOMEM;
    e->def.tmpl = *d;
    e->def.tmpl.uri_template = e->key;
    set_str(e->desc, "uriTemplate", d->uri_template);
    set_str(e->desc, "name", d->name);
    set_str(e->desc, "title", d->title);
    set_str(e->desc, "description", d->description);
    set_str(e->desc, "mimeType", d->mime_type);
    e->def.tmpl.name = e->def.tmpl.title = NULL;
    e->def.tmpl.description = e->def.tmpl.mime_type = NULL;
    return add_entry(s, e);
}

int sq_mcp_add_prompt(sq_srv *s, const sq_mcp_prompt_def *d)
{
    if (!d || !d->name || !*d->name || !d->get || !d->description ||
        (d->arguments && !json_is_array(d->arguments)))
        return -EINVAL;
    sq_entry *e = entry_new(SQ_ENTRY_PROMPT, d->name);
    if (!e)
        return -ENOMEM;
    e->def.prompt = *d;
    e->def.prompt.name = e->key;
    set_str(e->desc, "name", d->name);
    set_str(e->desc, "title", d->title);
    set_str(e->desc, "description", d->description);
    e->def.prompt.title = e->def.prompt.description = NULL;
    if (d->arguments) {
        json_object_set(e->desc, "arguments", d->arguments);
        json_incref(d->arguments);
    }
    return add_entry(s, e);
}

static int remove_entry(sq_srv *s, int kind, const char *key)
{
    if (!key)
        return -EINVAL;
    change c = {.kind = kind, .remove = key};
    return apply(s, &c);
}

int sq_mcp_remove_tool(sq_srv *s, const char *n) { return remove_entry(s, SQ_ENTRY_TOOL, n); }
int sq_mcp_remove_resource(sq_srv *s, const char *u) { return remove_entry(s, SQ_ENTRY_RESOURCE, u); }
int sq_mcp_remove_template(sq_srv *s, const char *t) { return remove_entry(s, SQ_ENTRY_TEMPLATE, t); }
int sq_mcp_remove_prompt(sq_srv *s, const char *n) { return remove_entry(s, SQ_ENTRY_PROMPT, n); }

/* ------------------------------------------------------------- reading */

sq_entry *sq_registry_find(sq_srv *s, int kind, const char *key)
{
    sq_state_snap *snap;
    if (!key || sq_state_read(&s->reg->state, &snap) != 0)
        return NULL;
    const reg_value *v = sq_state_snap_value(snap);
    bool found;
    size_t i = find_index(v->items[kind], v->n[kind], key, &found);
    sq_entry *e = found ? entry_ref(v->items[kind][i]) : NULL;
    sq_state_snap_release(snap);
    return e;
}

bool sq_registry_has(sq_srv *s, int kind)
{
    sq_state_snap *snap;
    if (sq_state_read(&s->reg->state, &snap) != 0)
        return false;
    const reg_value *v = sq_state_snap_value(snap);
    bool has = v->n[kind] > 0;
    sq_state_snap_release(snap);
    return has;
}

/* Does uri match template t ({name} expressions match one or more
 * characters other than '/', and {+name} anything)? */
static bool template_matches(const char *t, const char *uri)
{
    while (*t) {
        if (*t == '{') {
            const char *close = strchr(t, '}');
            if (!close)
                return false;
            bool reserved = t[1] == '+';
            t = close + 1;
            /* The expression ends where the template's next literal
             * character occurs (or at the end of the URI). */
            const char *u0 = uri;
            while (*uri && *uri != *t && (reserved || *uri != '/'))
                uri++;
            if (uri == u0)
                return false;
            continue;
        }
        if (*t++ != *uri++)
            return false;
    }
    return *uri == '\0';
}

sq_entry *sq_registry_match(sq_srv *s, const char *uri)
{
    sq_state_snap *snap;
    if (!uri || sq_state_read(&s->reg->state, &snap) != 0)
        return NULL;
    const reg_value *v = sq_state_snap_value(snap);
    sq_entry *e = NULL;
    for (size_t i = 0; i < v->n[SQ_ENTRY_TEMPLATE] && !e; i++)
        if (template_matches(v->items[SQ_ENTRY_TEMPLATE][i]->key, uri))
            e = entry_ref(v->items[SQ_ENTRY_TEMPLATE][i]);
    sq_state_snap_release(snap);
    return e;
}

static bool hidden(const sq_entry *e)
{
    return e->kind == SQ_ENTRY_TOOL && (e->def.tool.flags & SQ_MCP_HIDDEN);
}

int sq_registry_page(sq_srv *s, int kind, const char *cursor, json_t *items,
                     char **next)
{
    *next = NULL;
    char *after = NULL;
    if (cursor) {
        /* A cursor is the key of the last entry of the previous page,
         * base64url: it stays valid across changes (the page goes on after
         * that key) and on every instance. */
        size_t n;
        after = sq__b64_decode(cursor, strlen(cursor), true, &n);
        if (!after || strlen(after) != n) {
            free(after);
            return -EINVAL;
        }
    }
    sq_state_snap *snap;
    int rc = sq_state_read(&s->reg->state, &snap);
    if (rc) {
        free(after);
        return rc;
    }
    const reg_value *v = sq_state_snap_value(snap);
    bool found;
    size_t i = after ? find_index(v->items[kind], v->n[kind], after, &found) : 0;
    if (after && found)
        i++;
    size_t page = s->cfg.page_size ? s->cfg.page_size : 100, taken = 0;
    const char *last = NULL;
    for (; i < v->n[kind] && taken < page; i++) {
        sq_entry *e = v->items[kind][i];
        if (hidden(e))
            continue;
        json_array_append(items, e->desc);
        last = e->key;
        taken++;
    }
    /* More after this page?  (Hidden ones do not count.) */
    bool more = false;
    for (size_t j = i; j < v->n[kind] && !more; j++)
        more = !hidden(v->items[kind][j]);
    if (more && last)
        *next = sq__b64_encode(last, strlen(last), true);
    sq_state_snap_release(snap);
    free(after);
    return 0;
}
