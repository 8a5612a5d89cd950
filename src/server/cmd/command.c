/* Commands (sq_server/cmd.h): the system, adding, removing, pausing,
 * replacing, and each command's figures.  cmd_int.h says who holds what. */
#include "cmd_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How long calls get to end once aborted, before a removal or a pause
 * gives up on them (they were aborted, so only a call that never waits
 * again, or masks cancellation, is still there). */
#define ABORT_GRACE (2 * SQ_SEC)

static const char *const outcome_names[SQ_CMD_NOUTCOMES] = {
    "ok", "error", "invalid", "refused", "busy", "timeout", "cancelled",
    "unavailable", "input_required", "bad_output",
};

const char *sq_cmd_outcome_name(int o)
{
    return o >= 0 && o < SQ_CMD_NOUTCOMES ? outcome_names[o] : "unknown";
}

static void say(char *err, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void say(char *err, size_t n, const char *fmt, ...)
{
    if (!err || !n)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
}

/* -------------------------------------------------------- definitions */

cmd_impl *sq__impl_ref(cmd_impl *i)
{
    atomic_fetch_add_explicit(&i->refs, 1, memory_order_relaxed);
    return i;
}

void sq__impl_unref(cmd_impl *i)
{
    if (!i || atomic_fetch_sub_explicit(&i->refs, 1, memory_order_acq_rel) != 1)
        return;
    if (i->def.release)
        i->def.release(i->def.data);
    sq_schema_free(i->in);
    sq_schema_free(i->out);
    json_decref(i->def.input_schema);
    json_decref(i->def.output_schema);
    json_decref(i->def.annotations);
    for (char **r = i->redact; r && *r; r++)
        free(*r);
    free(i->redact);
    free(i->name);
    free(i->title);
    free(i->description);
    free(i);
}

static bool valid_name(const char *n)
{
    size_t len = n ? strlen(n) : 0;
    if (len == 0 || len > 128)
        return false;
    for (; *n; n++)
        if (!((*n >= 'a' && *n <= 'z') || (*n >= 'A' && *n <= 'Z') ||
              (*n >= '0' && *n <= '9') || *n == '_' || *n == '.' || *n == '-'))
            return false;
    return true;
}

static char *dup_or_null(const char *s, bool *oom)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *oom = true;
    return d;
}

/* A definition in force, made from def (copied, schemas compiled), or
 * NULL with the reason in err.  The caller's release is not called on
 * failure: the caller still owns def->data. */
static cmd_impl *impl_new(const sq_cmd_def *d, char *err, size_t errlen, int *rc)
{
    *rc = -EINVAL;
    if (!d || !valid_name(d->name)) {
        say(err, errlen, "a command's name is 1-128 of [A-Za-z0-9_.-]");
        return NULL;
    }
    if (!d->execute || !d->description || !json_is_object(d->input_schema) ||
        (d->output_schema && !json_is_object(d->output_schema))) {
        say(err, errlen, "command %s: needs execute, a description and an "
            "object input schema (and an object output schema, if any)", d->name);
        return NULL;
    }
    cmd_impl *i = calloc(1, sizeof *i);
    if (!i) {
        *rc = -ENOMEM;
        return NULL;
    }
    atomic_init(&i->refs, 1);
    i->def = *d;
    i->def.release = NULL; /* set once nothing can fail */
    bool oom = false;
    i->name = dup_or_null(d->name, &oom);
    i->title = dup_or_null(d->title, &oom);
    i->description = dup_or_null(d->description, &oom);
    i->def.name = i->name;
    i->def.title = i->title;
    i->def.description = i->description;
    i->def.redact = NULL;
    json_incref(d->input_schema);
    json_incref(d->output_schema);
    json_incref(d->annotations);
    size_t n = 0;
    while (d->redact && d->redact[n])
        n++;
    if (n) {
        i->redact = calloc(n + 1, sizeof *i->redact);
        oom |= !i->redact;
        for (size_t k = 0; i->redact && k < n; k++) {
            i->redact[k] = dup_or_null(d->redact[k], &oom);
            if (strcmp(d->redact[k], "*") == 0)
                i->redact_all = true;
        }
    }
    if (oom) {
        sq__impl_unref(i);
        *rc = -ENOMEM;
        return NULL;
    }
    char why[256];
    if (!(i->in = sq_schema_compile(d->input_schema, why, sizeof why))) {
        say(err, errlen, "command %s: input schema refused: %s", d->name, why);
        sq__impl_unref(i);
        return NULL;
    }
    if (d->output_schema &&
        !(i->out = sq_schema_compile(d->output_schema, why, sizeof why))) {
        say(err, errlen, "command %s: output schema refused: %s", d->name, why);
        sq__impl_unref(i);
        return NULL;
    }
    i->def.release = d->release;
    *rc = 0;
    return i;
}

/* ----------------------------------------------------------- commands */

cmd *sq__cmd_ref(cmd *c)
{
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    return c;
}

void sq__cmd_unref(cmd *c)
{
    if (!c || atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1)
        return;
    /* Nobody holds it: no call, no tool entry, no list.  Its definition
     * went with its removal (or the system's end). */
    sq__impl_unref(c->impl);
    sq_sem_destroy(&c->permits);
    free(c->name);
    free(c);
}

static void tool_release(void *data)
{
    sq__cmd_unref(data);
}

/* The tool that stands for command c with definition i. */
static int add_tool(cmd *c, const cmd_impl *i)
{
    sq_mcp_tool_def t = {
        .name = c->name,
        .title = i->title,
        .description = i->description,
        .input_schema = i->def.input_schema,
        .output_schema = i->def.output_schema,
        .annotations = i->def.annotations,
        /* The command validates in its own stage, after the pre-hooks. */
        .flags = i->def.tool_flags & ~(unsigned)SQ_MCP_VALIDATE,
        .call = sq__cmd_tool_call,
        .data = sq__cmd_ref(c),
        .release = tool_release,
    };
    int rc = sq_mcp_add_tool(c->sys->srv, &t);
    /* The registry calls release for an entry it made but did not keep
     * (-EEXIST); on its other failures (a bad definition, no memory) it
     * made none, and the reference is still ours. */
    if (rc && rc != -EEXIST)
        sq__cmd_unref(c);
    return rc;
}

static void init_limit(cmd *c, size_t limit)
{
    c->limit = limit;
    sq_sem_init(&c->permits, limit ? limit : 0);
}

int sq_cmd_add(sq_cmds *sys, const sq_cmd_def *def, char *err, size_t errlen)
{
    int rc;
    cmd_impl *i = impl_new(def, err, errlen, &rc);
    if (!i)
        return rc;
    cmd *c = calloc(1, sizeof *c);
    if (!c || !(c->name = strdup(def->name))) {
        free(c);
        i->def.release = NULL; /* the caller keeps its data on failure */
        sq__impl_unref(i);
        return -ENOMEM;
    }
    c->sys = sys;
    atomic_init(&c->refs, 1); /* the system's list */
    c->state = (def->flags & SQ_CMD_START_PAUSED) ? CMD_PAUSED : CMD_OPEN;
    c->impl = i;
    init_limit(c, def->max_concurrent);
    sq_notify_init(&c->changed);
    if ((rc = add_tool(c, i)) != 0) {
        if (rc == -EEXIST)
            say(err, errlen, "a tool named %s exists already", def->name);
        i->def.release = NULL;
        sq__cmd_unref(c);
        return rc;
    }
    sq_mutex_lock_nocancel(&sys->lock);
    sq__list_push_back(&sys->cmds, &c->link);
    c->listed = true;
    sq_mutex_unlock(&sys->lock);
    return 0;
}

cmd *sq__cmd_find(sq_cmds *sys, const char *name)
{
    cmd *found = NULL;
    if (!name)
        return NULL;
    sq_mutex_lock_nocancel(&sys->lock);
    SQ__LIST_FOREACH(l, &sys->cmds) {
        cmd *c = sq__list_entry(l, cmd, link);
        if (strcmp(c->name, name) == 0) {
            found = sq__cmd_ref(c);
            break;
        }
    }
    sq_mutex_unlock(&sys->lock);
    return found;
}

static int by_name(const void *a, const void *b)
{
    return strcmp((*(cmd *const *)a)->name, (*(cmd *const *)b)->name);
}

size_t sq__cmd_all(sq_cmds *sys, cmd ***out)
{
    sq_mutex_lock_nocancel(&sys->lock);
    size_t n = 0;
    SQ__LIST_FOREACH(l, &sys->cmds)
        n++;
    cmd **v = malloc((n ? n : 1) * sizeof *v);
    size_t k = 0;
    if (v) {
        SQ__LIST_FOREACH(l, &sys->cmds)
            v[k++] = sq__cmd_ref(sq__list_entry(l, cmd, link));
    }
    sq_mutex_unlock(&sys->lock);
    if (v)
        qsort(v, k, sizeof *v, by_name);
    *out = v;
    return k;
}

/* Waits until no call of c is in flight.  At `deadline` the calls still
 * running are aborted (and those waiting for a permit turned away);
 * ABORT_GRACE later it gives up: -ETIMEDOUT.  Cancellation masked. */
static int drain(cmd *c, int64_t deadline)
{
    bool aborted = false;
    int64_t hard = SQ_FOREVER;
    for (;;) {
        sq__spin_lock(&c->lock);
        size_t n = c->inflight;
        sq__spin_unlock(&c->lock);
        if (n == 0)
            return 0;
        int64_t now = sq_now();
        if (now >= deadline && !aborted) {
            aborted = true;
            hard = now + ABORT_GRACE;
            sq__spin_lock(&c->lock);
            c->aborting = true;
            SQ__LIST_FOREACH(l, &c->calls) {
                sq_cmd_call *k = sq__list_entry(l, sq_cmd_call, link);
                if (k->has_task)
                    sq_abort(k->task);
            }
            sq__spin_unlock(&c->lock);
            if (c->limit)
                sq_sem_close(&c->permits);
        }
        if (aborted && now >= hard)
            return -ETIMEDOUT;
        int64_t until = now + 50 * SQ_MSEC;
        int64_t bound = aborted ? hard : deadline;
        sq_notify_wait_until(&c->changed, until < bound ? until : bound);
    }
}

/* After a drain that aborted: the permits were closed; with nothing in
 * flight they can be made anew. */
static void reopen_limit(cmd *c, size_t limit)
{
    sq__spin_lock(&c->lock);
    bool redo = c->aborting || c->limit != limit;
    c->aborting = false;
    sq__spin_unlock(&c->lock);
    if (redo) {
        sq_sem_destroy(&c->permits);
        init_limit(c, limit);
    }
}

static void unlist(sq_cmds *sys, cmd *c)
{
    bool was = false;
    sq_mutex_lock_nocancel(&sys->lock);
    if (c->listed) {
        sq__list_remove(&sys->cmds, &c->link);
        c->listed = false;
        was = true;
    }
    sq_mutex_unlock(&sys->lock);
    if (was)
        sq__cmd_unref(c);
}

int sq_cmd_remove(sq_cmds *sys, const char *name, int64_t deadline)
{
    cmd *c = sq__cmd_find(sys, name);
    if (!c)
        return -ENOENT;
    sq__spin_lock(&c->lock);
    bool closed = c->state == CMD_CLOSED;
    c->state = CMD_CLOSED;
    sq__spin_unlock(&c->lock);
    if (closed) {
        sq__cmd_unref(c);
        return -ENOENT;
    }
    sq_notify_all(&c->changed); /* calls waiting at a pause: refused now */
    sq_cancel_mask();
    sq_mcp_remove_tool(sys->srv, c->name);
    int rc = drain(c, deadline);
    unlist(sys, c);
    /* The definition goes now (its release runs here) unless calls that
     * would not end still hold it: then it goes with the last of them. */
    sq__spin_lock(&c->lock);
    cmd_impl *i = c->impl;
    c->impl = NULL;
    sq__spin_unlock(&c->lock);
    sq__impl_unref(i);
    sq_cancel_unmask();
    sq__cmd_unref(c);
    return rc;
}

int sq_cmd_pause(sq_cmds *sys, const char *name, int64_t deadline)
{
    cmd *c = sq__cmd_find(sys, name);
    if (!c)
        return -ENOENT;
    sq__spin_lock(&c->lock);
    int rc = c->state == CMD_OPEN ? 0 : c->state == CMD_PAUSED ? -EALREADY : -ENOENT;
    if (rc == 0)
        c->state = CMD_PAUSED;
    sq__spin_unlock(&c->lock);
    if (rc == 0) {
        sq_cancel_mask();
        rc = drain(c, deadline);
        sq_cancel_unmask();
    }
    sq__cmd_unref(c);
    return rc;
}

/* Do two definitions list the same tool? */
static bool same_tool(const cmd_impl *a, const cmd_impl *b)
{
    const char *ta = a->title ? a->title : "", *tb = b->title ? b->title : "";
    return strcmp(ta, tb) == 0 && strcmp(a->description, b->description) == 0 &&
           json_equal(a->def.input_schema, b->def.input_schema) &&
           (a->def.output_schema == b->def.output_schema ||
            json_equal(a->def.output_schema, b->def.output_schema)) &&
           (a->def.annotations == b->def.annotations ||
            json_equal(a->def.annotations, b->def.annotations)) &&
           a->def.tool_flags == b->def.tool_flags;
}

int sq_cmd_replace(sq_cmds *sys, const sq_cmd_def *def, char *err, size_t errlen)
{
    int rc;
    cmd_impl *i = impl_new(def, err, errlen, &rc);
    if (!i)
        return rc;
    cmd *c = sq__cmd_find(sys, def->name);
    if (!c) {
        i->def.release = NULL;
        sq__impl_unref(i);
        return -ENOENT;
    }
    sq__spin_lock(&c->lock);
    rc = c->state != CMD_PAUSED || c->inflight ? -EBUSY : 0;
    cmd_impl *old = rc ? NULL : c->impl;
    if (rc == 0)
        c->impl = i;
    sq__spin_unlock(&c->lock);
    if (rc) {
        say(err, errlen, "command %s is not paused with nothing in flight", def->name);
        i->def.release = NULL;
        sq__impl_unref(i);
        sq__cmd_unref(c);
        return rc;
    }
    reopen_limit(c, def->max_concurrent);
    if (!same_tool(old, i)) {
        /* The listing changes: the tool is made anew (clients hear
         * list_changed twice; a call in between finds no tool). */
        sq_mcp_remove_tool(sys->srv, c->name);
        if ((rc = add_tool(c, i)) != 0)
            say(err, errlen, "command %s: its tool could not be listed again", c->name);
    }
    sq__impl_unref(old);
    sq__cmd_unref(c);
    return rc;
}

int sq_cmd_stub(sq_cmds *sys, const char *name, sq_cmd_exec_fn fn)
{
    cmd *c = sq__cmd_find(sys, name);
    if (!c)
        return -ENOENT;
    sq__spin_lock(&c->lock);
    int rc = c->state != CMD_PAUSED || c->inflight || !c->impl ? -EBUSY : 0;
    cmd_impl *old = rc ? NULL : sq__impl_ref(c->impl);
    sq__spin_unlock(&c->lock);
    if (rc) {
        sq__cmd_unref(c);
        return rc;
    }
    sq_cmd_def d = old->def;
    d.execute = fn;
    d.pre = d.post = NULL;
    d.cleanup = NULL;
    d.data = NULL;
    d.release = NULL;
    d.redact = (const char *const *)old->redact;
    cmd_impl *i = impl_new(&d, NULL, 0, &rc);
    if (i) {
        sq__spin_lock(&c->lock);
        rc = c->state != CMD_PAUSED || c->inflight || c->impl != old ? -EBUSY : 0;
        if (rc == 0) {
            c->impl = i;
            sq__impl_unref(old); /* the command's reference */
        }
        sq__spin_unlock(&c->lock);
        if (rc)
            sq__impl_unref(i);
    }
    sq__impl_unref(old); /* ours: the last, so old's release runs here */
    sq__cmd_unref(c);
    return rc;
}

int sq_cmd_resume(sq_cmds *sys, const char *name)
{
    cmd *c = sq__cmd_find(sys, name);
    if (!c)
        return -ENOENT;
    size_t limit = 0;
    sq__spin_lock(&c->lock);
    int rc = c->state == CMD_PAUSED ? 0 : c->state == CMD_OPEN ? 0 : -ENOENT;
    bool was_paused = c->state == CMD_PAUSED;
    if (c->impl)
        limit = c->impl->def.max_concurrent;
    sq__spin_unlock(&c->lock);
    if (was_paused) {
        reopen_limit(c, limit);
        sq__spin_lock(&c->lock);
        if (c->state == CMD_PAUSED)
            c->state = CMD_OPEN;
        sq__spin_unlock(&c->lock);
        sq_notify_all(&c->changed);
    }
    sq__cmd_unref(c);
    return rc;
}

/* ------------------------------------------------------------ figures */

json_t *sq__cmd_figures(cmd *c)
{
    json_t *outs = json_object();
    uint64_t calls = 0;
    for (int k = 0; k < SQ_CMD_NOUTCOMES; k++) {
        uint64_t v = atomic_load(&c->outcomes[k]);
        calls += v;
        json_object_set_new(outs, outcome_names[k], json_integer((json_int_t)v));
    }
    sq__spin_lock(&c->lock);
    int state = c->state;
    size_t inflight = c->inflight;
    int64_t timeout = c->impl ? c->impl->def.timeout : 0;
    sq__spin_unlock(&c->lock);
    if (!timeout)
        timeout = c->sys->opts.default_timeout;
    uint64_t total = atomic_load(&c->total_ns);
    return json_pack("{s:s,s:I,s:o,s:I,s:I,s:I,s:I,s:I,s:f,s:f}", "state",
                     state == CMD_OPEN ? "open" : state == CMD_PAUSED ? "paused" : "removed",
                     "calls", (json_int_t)calls, "outcomes", outs,
                     "in_flight", (json_int_t)inflight,
                     "running", (json_int_t)atomic_load(&c->running),
                     "waiting", (json_int_t)atomic_load(&c->waiting),
                     "high_water", (json_int_t)atomic_load(&c->high_water),
                     "max_concurrent", (json_int_t)c->limit,
                     "timeout_ms", (double)timeout / 1e6,
                     "mean_ms", calls ? (double)total / (double)calls / 1e6 : 0.0);
}

json_t *sq_cmd_stats(sq_cmds *sys, const char *name)
{
    if (name) {
        cmd *c = sq__cmd_find(sys, name);
        json_t *f = c ? sq__cmd_figures(c) : NULL;
        sq__cmd_unref(c);
        return f;
    }
    cmd **all;
    size_t n = sq__cmd_all(sys, &all);
    json_t *o = json_object();
    for (size_t k = 0; k < n; k++) {
        json_object_set_new(o, all[k]->name, sq__cmd_figures(all[k]));
        sq__cmd_unref(all[k]);
    }
    free(all);
    return o;
}

/* ------------------------------------------------------------- system */

int sq_cmds_create(sq_cmds **out, sq_srv *s, const sq_cmds_opts *o)
{
    *out = NULL;
    sq_cmds *sys = calloc(1, sizeof *sys);
    if (!sys)
        return -ENOMEM;
    if (o)
        sys->opts = *o;
    if (!sys->opts.history_size)
        sys->opts.history_size = 1000;
    if (!sys->opts.history_arg_bytes)
        sys->opts.history_arg_bytes = 4096;
    sys->srv = s;
    sys->started = sq_now();
    sq_mutex_init_named(&sys->lock, "cmd.table");
    sys->history = sq__history_new(sys->opts.history_size, sys->opts.history_arg_bytes);
    if (!sys->history) {
        sq_cmds_destroy(sys);
        return -ENOMEM;
    }
    int rc = sq__cmd_builtins(sys);
    if (rc) {
        sq_cmds_destroy(sys);
        return rc;
    }
    *out = sys;
    return 0;
}

void sq_cmds_destroy(sq_cmds *sys)
{
    if (!sys)
        return;
    /* The server is stopped: no call is in flight.  Each command's tool
     * entry may still hold it (until the registry goes): it is closed
     * and its definition released here. */
    for (;;) {
        sq_mutex_lock_nocancel(&sys->lock);
        struct sq__link *l = sys->cmds.head;
        cmd *c = l ? sq__list_entry(l, cmd, link) : NULL;
        if (c) {
            sq__list_remove(&sys->cmds, l);
            c->listed = false;
        }
        sq_mutex_unlock(&sys->lock);
        if (!c)
            break;
        sq__spin_lock(&c->lock);
        c->state = CMD_CLOSED;
        cmd_impl *i = c->impl;
        c->impl = NULL;
        sq__spin_unlock(&c->lock);
        sq__impl_unref(i);
        sq__cmd_unref(c);
    }
    sq__history_free(sys->history);
    sq_mutex_destroy(&sys->lock);
    free(sys);
}

sq_cmds *sq_srv_cmds(sq_srv *s)
{
    return s ? s->cmds : NULL;
}

sq_srv *sq_cmds_server(sq_cmds *sys)
{
    return sys->srv;
}

int sq_cmd_hook_add(sq_cmds *sys, int stage, sq_cmd_hook_fn fn, void *data)
{
    int k = stage == SQ_CMD_STAGE_PRE ? 0 : stage == SQ_CMD_STAGE_POST ? 1
          : stage == SQ_CMD_STAGE_CLEANUP ? 2 : -1;
    if (k < 0 || !fn)
        return -EINVAL;
    if (sys->nhooks[k] == CMD_MAX_HOOKS)
        return -ENOSPC;
    sys->hooks[k][sys->nhooks[k]++] = (cmd_hook){fn, data};
    return 0;
}

int sq_cmds_status_add(sq_cmds *sys, const char *name, json_t *(*fn)(void *),
                       void *data)
{
    size_t cap = sizeof sys->status / sizeof *sys->status;
    if (!name || !fn || strlen(name) >= sizeof sys->status[0].name)
        return -EINVAL;
    if (sys->nstatus == cap)
        return -ENOSPC;
    cmd_status_part *p = &sys->status[sys->nstatus++];
    snprintf(p->name, sizeof p->name, "%s", name);
    p->fn = fn;
    p->data = data;
    return 0;
}
