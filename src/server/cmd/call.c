/* One call of a command through its stages (sq_server/cmd.h):
 *
 *   the caller's task            the call's stage task
 *   ----------------             ---------------------
 *   gate (open? paused: wait)
 *   admit (a permit)
 *   spawn  ------------------->  pre, validate, execute, post, output
 *   join until the deadline      (aborted at the deadline or when the
 *                                 caller is cancelled)
 *   cleanup (masked)
 *   figures, history
 *
 * The stage task works on the call, which lives on the caller's stack:
 * the caller joins it on every path, so the call outlives it, and the
 * join orders everything it wrote before the caller reads it. */
#include "cmd_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---------------------------------------------------------- accessors */

sq_mcp_req *sq_cmd_req(sq_cmd_call *c) { return c->req; }
const char *sq_cmd_name(const sq_cmd_call *c) { return c->cmd->name; }
json_t *sq_cmd_args(sq_cmd_call *c) { return c->args; }
int sq_cmd_stage(const sq_cmd_call *c) { return atomic_load(&c->stage); }
int sq_cmd_outcome(const sq_cmd_call *c) { return c->outcome; }
json_t *sq_cmd_result(sq_cmd_call *c) { return c->result; }
int64_t sq_cmd_deadline(const sq_cmd_call *c) { return c->deadline; }
void *sq_cmd_user(const sq_cmd_call *c) { return c->user; }
void sq_cmd_set_user(sq_cmd_call *c, void *user) { c->user = user; }

void sq_cmd_set_result(sq_cmd_call *c, json_t *result)
{
    json_decref(c->result);
    c->result = result;
}

int sq_cmd_refuse(sq_cmd_call *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->message, sizeof c->message, fmt, ap);
    va_end(ap);
    return -1;
}

int sq_cmd_fail(sq_cmd_call *c, int code, const char *message, json_t *data)
{
    c->err_code = code;
    snprintf(c->message, sizeof c->message, "%s", message ? message : "failed");
    if (c->req)
        return sq_mcp_fail(c->req, code, message, data);
    json_decref(data);
    return SQ_MCP_ERROR;
}

/* ------------------------------------------------------------- stages */

static void set_outcome(sq_cmd_call *c, int outcome, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_outcome(sq_cmd_call *c, int outcome, const char *fmt, ...)
{
    c->outcome = outcome;
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->message, sizeof c->message, fmt, ap);
        va_end(ap);
    }
}

static bool is_error_result(json_t *r)
{
    return json_is_true(json_object_get(r, "isError"));
}

/* The text of the first content item of a result, if it has one. */
static const char *result_text(json_t *r)
{
    return json_string_value(
        json_object_get(json_array_get(json_object_get(r, "content"), 0), "text"));
}

static bool run_hooks(sq_cmd_call *c, int k, sq_cmd_hook_fn own, void *data,
                      bool own_first)
{
    const sq_cmds *sys = c->sys;
    if (own_first && own && own(c, data) != 0)
        return false;
    for (size_t i = 0; i < sys->nhooks[k]; i++)
        if (sys->hooks[k][i].fn(c, sys->hooks[k][i].data) != 0)
            return false;
    if (!own_first && own && own(c, data) != 0)
        return false;
    return true;
}

static void stage_execute(sq_cmd_call *c)
{
    const cmd_impl *i = c->impl;
    atomic_store(&c->stage, SQ_CMD_STAGE_EXECUTE);
    c->rc = i->def.execute(c, c->args, i->def.data, &c->result);
    if (c->rc == SQ_MCP_INPUT_REQUIRED) {
        set_outcome(c, SQ_CMD_INPUT_REQUIRED, NULL);
    } else if (c->rc == SQ_MCP_ERROR) {
        if (!c->message[0] && c->req && c->req->err_msg)
            snprintf(c->message, sizeof c->message, "%s", c->req->err_msg);
        set_outcome(c, SQ_CMD_ERROR, c->message[0] ? NULL : "the command failed");
        json_decref(c->result);
        c->result = NULL;
    } else if (c->rc != SQ_MCP_OK || !json_is_object(c->result)) {
        c->rc = SQ_MCP_OK;
        json_decref(c->result);
        c->result = NULL;
        set_outcome(c, SQ_CMD_ERROR, "the command returned no result");
    } else if (is_error_result(c->result)) {
        const char *t = result_text(c->result);
        set_outcome(c, SQ_CMD_ERROR, "%s", t ? t : "the command reported an error");
    } else {
        set_outcome(c, SQ_CMD_OK, NULL);
    }
}

/* A result that claims success is checked against the output schema. */
static void stage_output(sq_cmd_call *c)
{
    const cmd_impl *i = c->impl;
    if (!i->out || c->outcome != SQ_CMD_OK || !c->result || is_error_result(c->result))
        return;
    json_t *sc = json_object_get(c->result, "structuredContent");
    sq_schema_error e;
    if (!sc) {
        set_outcome(c, SQ_CMD_BAD_OUTPUT,
                    "the command's result has no structuredContent, which its "
                    "output schema requires");
        c->detail = json_pack("{s:s,s:s}", "path", "", "rule", "structuredContent");
    } else if (sq_schema_validate(i->out, sc, &e) != 0) {
        set_outcome(c, SQ_CMD_BAD_OUTPUT,
                    "the command's result does not conform to its output schema: "
                    "%s: %s (%s)", e.path[0] ? e.path : "(the result)", e.message, e.rule);
        c->detail = json_pack("{s:s,s:s}", "path", e.path, "rule", e.rule);
    }
}

static void *stages_main(void *arg)
{
    sq_cmd_call *c = arg;
    const cmd_impl *i = c->impl;
    atomic_store(&c->stage, SQ_CMD_STAGE_PRE);
    if (!run_hooks(c, 0, i->def.pre, i->def.data, false)) {
        set_outcome(c, SQ_CMD_REFUSED, c->message[0] ? NULL : "refused by a pre-hook");
        goto done;
    }
    atomic_store(&c->stage, SQ_CMD_STAGE_VALIDATE);
    sq_schema_error e;
    if (sq_schema_validate(i->in, c->args, &e) != 0) {
        /* The same words as the server's own validation (methods.c). */
        set_outcome(c, SQ_CMD_INVALID, "Invalid arguments: %s: %s (%s)",
                    e.path[0] ? e.path : "(the arguments)", e.message, e.rule);
        c->detail = json_pack("{s:s,s:s,s:s}", "path", e.path, "rule", e.rule,
                              "message", e.message);
        goto done;
    }
    stage_execute(c);
    /* Past the deadline or cancelled: what execute made is dropped
     * (run_stages says why), and the post-hooks do not run. */
    if (sq_cancelled())
        goto done;
    atomic_store(&c->stage, SQ_CMD_STAGE_POST);
    if (c->outcome != SQ_CMD_INPUT_REQUIRED) {
        c->message[0] = c->outcome == SQ_CMD_OK ? '\0' : c->message[0];
        if (!run_hooks(c, 1, i->def.post, i->def.data, true)) {
            set_outcome(c, SQ_CMD_ERROR, c->message[0] ? NULL : "failed in a post-hook");
            if (c->rc == SQ_MCP_OK) {
                json_decref(c->result);
                c->result = NULL;
            }
        }
        stage_output(c);
    }
done:
    c->stages_done = !sq_cancelled();
    return NULL;
}

/* ------------------------------------------------------------ the gate */

/* Lets the call in, waiting while the command is paused: 0 (c->impl
 * set, the call listed), -ENOENT (removed), -ETIMEDOUT, -ECANCELED. */
static int gate_enter(cmd *k, sq_cmd_call *c, int64_t deadline)
{
    for (;;) {
        sq__spin_lock(&k->lock);
        int state = k->state;
        if (state == CMD_OPEN) {
            k->inflight++;
            c->impl = sq__impl_ref(k->impl);
            sq__list_push_back(&k->calls, &c->link);
        }
        sq__spin_unlock(&k->lock);
        if (state == CMD_OPEN)
            return 0;
        if (state == CMD_CLOSED)
            return -ENOENT;
        /* Paused: a state change is signalled, but only to waiters
         * already there, so the wait is in slices. */
        int64_t now = sq_now();
        if (now >= deadline)
            return -ETIMEDOUT;
        int64_t until = now + 20 * SQ_MSEC;
        int rc = sq_notify_wait_until(&k->changed, until < deadline ? until : deadline);
        if (rc == -ECANCELED)
            return rc;
    }
}

static void gate_leave(cmd *k, sq_cmd_call *c)
{
    sq__spin_lock(&k->lock);
    sq__list_remove(&k->calls, &c->link);
    bool last = --k->inflight == 0;
    sq__spin_unlock(&k->lock);
    if (last)
        sq_notify_all(&k->changed);
}

/* ------------------------------------------------------------- running */

static void raise_high_water(cmd *k)
{
    long now = atomic_fetch_add(&k->running, 1) + 1;
    long hw = atomic_load(&k->high_water);
    while (now > hw && !atomic_compare_exchange_weak(&k->high_water, &hw, now))
        ;
}

/* Takes a permit: 0, or the outcome that stops the call. */
static int admit(cmd *k, sq_cmd_call *c)
{
    if (!k->limit)
        return 0;
    const cmd_impl *i = c->impl;
    int rc = (i->def.flags & SQ_CMD_NO_WAIT)
                 ? sq_sem_try_acquire(&k->permits, 1)
                 : sq_sem_acquire_until(&k->permits, 1, c->deadline);
    if (rc == 0)
        return 0;
    if (rc == -ECANCELED) {
        set_outcome(c, SQ_CMD_CANCELLED, "the call was cancelled");
        return -1;
    }
    if (rc == -ESHUTDOWN) {
        set_outcome(c, SQ_CMD_UNAVAILABLE, "command %s is being removed", k->name);
        return -1;
    }
    set_outcome(c, SQ_CMD_BUSY,
                "command %s is busy: %zu calls at once, all taken%s", k->name,
                k->limit, (i->def.flags & SQ_CMD_NO_WAIT) ? ""
                          : ", and none was free before the call's deadline");
    return -1;
}

/* Runs the stage task and waits for it until the deadline; the caller's
 * cancellation and the deadline both abort it, and it is always joined. */
static void run_stages(cmd *k, sq_cmd_call *c)
{
    char name[32];
    snprintf(name, sizeof name, "cmd:%s", k->name);
    sq_spawn_opts o = {.name = name};
    sq_task t;
    int rc = sq_spawn(&t, stages_main, c, &o);
    if (rc) {
        set_outcome(c, SQ_CMD_ERROR, "the call could not start: %s", sq_strerror(rc));
        return;
    }
    sq__spin_lock(&k->lock);
    c->task = t;
    c->has_task = true;
    if (k->aborting) /* a drain gave up on the calls in flight */
        sq_abort(t);
    sq__spin_unlock(&k->lock);
    rc = sq_join_until(t, NULL, c->deadline);
    if (rc == -ETIMEDOUT || (rc == -ECANCELED && sq_cancelled())) {
        sq_abort(t);
        sq_cancel_mask();
        sq_join(t, NULL);
        sq_cancel_unmask();
    }
    sq__spin_lock(&k->lock);
    c->has_task = false;
    sq__spin_unlock(&k->lock);
    if (c->stages_done)
        return;
    /* It did not finish on its own: whatever it produced is dropped. */
    json_decref(c->result);
    c->result = NULL;
    json_decref(c->detail);
    c->detail = NULL;
    c->rc = SQ_MCP_OK;
    if (sq_cancelled() && sq_now() < c->deadline)
        set_outcome(c, SQ_CMD_CANCELLED, "the call was cancelled");
    else if (k->aborting && sq_now() < c->deadline)
        set_outcome(c, SQ_CMD_UNAVAILABLE,
                    "command %s is being removed: the call was aborted", k->name);
    else
        set_outcome(c, SQ_CMD_TIMEOUT, "command %s did not finish within its "
                    "deadline (%.0f ms)", k->name,
                    (double)(c->deadline - c->started) / 1e6);
}

static void run_cleanup(sq_cmd_call *c)
{
    const cmd_impl *i = c->impl;
    const sq_cmds *sys = c->sys;
    atomic_store(&c->stage, SQ_CMD_STAGE_CLEANUP);
    sq_cancel_mask();
    if (i->def.cleanup)
        i->def.cleanup(c, i->def.data);
    for (size_t h = 0; h < sys->nhooks[2]; h++)
        ((sq_cmd_cleanup_fn)(void (*)(void))sys->hooks[2][h].fn)(c, sys->hooks[2][h].data);
    sq_cancel_unmask();
}

/* The result every outcome but a passed-through one gets: a tool error
 * whose structuredContent says what happened. */
static json_t *failure_result(sq_cmd_call *c)
{
    json_t *r = sq_mcp_tool_error(c->message[0] ? c->message
                                                : sq_cmd_outcome_name(c->outcome));
    const char *kind = c->outcome == SQ_CMD_INVALID ? "invalid_arguments"
                                                    : sq_cmd_outcome_name(c->outcome);
    json_t *sc = c->detail ? json_incref(c->detail) : json_object();
    json_object_set_new(sc, "error", json_string(kind));
    if (!json_object_get(sc, "message"))
        json_object_set_new(sc, "message", json_string(c->message));
    if (c->err_code)
        json_object_set_new(sc, "code", json_integer(c->err_code));
    json_object_set_new(r, "structuredContent", sc);
    return r;
}

int sq__cmd_run(cmd *k, sq_mcp_req *req, json_t *args, int64_t deadline,
                json_t **result, int *rcp)
{
    sq_cmd_call c = {.sys = k->sys, .cmd = k, .req = req, .args = args};
    atomic_init(&c.stage, SQ_CMD_STAGE_ADMIT);
    c.started = sq_now();
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    c.started_wall_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    c.deadline = deadline;
    c.outcome = SQ_CMD_OK;

    atomic_fetch_add(&k->waiting, 1);
    int rc = gate_enter(k, &c, deadline);
    bool admitted = false;
    if (rc == 0) {
        int64_t t = c.impl->def.timeout ? c.impl->def.timeout : k->sys->opts.default_timeout;
        if (t > 0 && t < SQ_FOREVER - c.started && c.started + t < c.deadline)
            c.deadline = c.started + t;
        admitted = admit(k, &c) == 0;
    } else if (rc == -ECANCELED) {
        set_outcome(&c, SQ_CMD_CANCELLED, "the call was cancelled");
    } else {
        set_outcome(&c, SQ_CMD_UNAVAILABLE,
                    rc == -ENOENT ? "command %s was removed"
                                  : "command %s is paused (its plugin is being "
                                    "reloaded) and did not come back before the "
                                    "call's deadline",
                    k->name);
    }
    atomic_fetch_sub(&k->waiting, 1);
    if (admitted) {
        raise_high_water(k);
        run_stages(k, &c);
    }
    if (rc == 0) {
        /* Cleanup runs for every call let in, whatever happened since. */
        run_cleanup(&c);
        if (admitted) {
            atomic_fetch_sub(&k->running, 1);
            if (k->limit)
                sq_sem_release(&k->permits, 1);
        }
    }
    atomic_store(&c.stage, SQ_CMD_STAGE_DONE);

    *rcp = SQ_MCP_OK;
    bool passed = c.outcome == SQ_CMD_OK || c.outcome == SQ_CMD_INPUT_REQUIRED ||
                  (c.outcome == SQ_CMD_ERROR && c.result);
    if (passed) {
        *result = c.result;
        *rcp = c.rc;
    } else if (c.outcome == SQ_CMD_ERROR && c.rc == SQ_MCP_ERROR && req) {
        *result = NULL; /* the request's error is set (sq_cmd_fail) */
        *rcp = SQ_MCP_ERROR;
    } else {
        json_decref(c.result);
        *result = failure_result(&c);
    }
    c.result = NULL;
    atomic_fetch_add(&k->outcomes[c.outcome], 1);
    atomic_fetch_add(&k->total_ns, (unsigned long long)(sq_now() - c.started));
    if (!c.impl || !(c.impl->def.flags & SQ_CMD_NO_HISTORY))
        sq__history_add(k->sys->history, &c);
    json_decref(c.detail);
    if (rc == 0) {
        /* The definition's reference goes before the call leaves: once
         * a drain sees no call in flight, nothing of the definition (a
         * plugin's code among it) may be used any more. */
        sq__impl_unref(c.impl);
        gate_leave(k, &c);
    }
    return c.outcome;
}

int sq__cmd_tool_call(sq_mcp_req *r, json_t *args, void *data, json_t **result)
{
    int rc;
    sq__cmd_run(data, r, args, r->deadline, result, &rc);
    return rc;
}

int sq_cmd_invoke(sq_cmds *sys, const char *name, json_t *args, int64_t deadline,
                json_t **result)
{
    *result = NULL;
    cmd *k = sq__cmd_find(sys, name);
    if (!k)
        return -ENOENT;
    json_t *empty = args ? NULL : json_object();
    int rc;
    int outcome = sq__cmd_run(k, NULL, args ? args : empty, deadline, result, &rc);
    json_decref(empty);
    sq__cmd_unref(k);
    if (!*result)
        return -ENOMEM;
    return outcome == SQ_CMD_CANCELLED && sq_cancelled() ? -ECANCELED : outcome;
}
