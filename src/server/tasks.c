/* Tasks: the 2026-07-28 era's extension io.modelcontextprotocol/tasks
 * (SEP-2663).  A tools/call whose handler calls sq_mcp_task_start is
 * answered at once with a CreateTaskResult; the handler goes on in the
 * request's own Squirrel task, and what it returns becomes the task's
 * outcome, read with tasks/get.  An input request of the handler parks
 * the task in input_required until tasks/update brings every answer;
 * tasks/cancel aborts the Squirrel task (its waits return -ECANCELED) and
 * the task ends cancelled.  Tasks are kept in memory, by an unguessable
 * id (128 random bits), until their time to live ends; docs/server.md,
 * "Tasks", says what survives what. */
#include "methods.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define TTL_MS 3600000     /* an hour */
#define POLL_MS 200

enum { T_WORKING, T_INPUT, T_COMPLETED, T_FAILED, T_CANCELLED };
static const char *const status_names[] = {"working", "input_required",
                                           "completed", "failed", "cancelled"};

struct sq_taskrec {
    char id[33];
    sq_srv *srv;
    /* Under srv->task_lock: */
    int status;
    int64_t created_ms, updated_ms;  /* wall clock */
    int64_t expires;                 /* sq_now() */
    json_t *result, *error;
    json_t *inputs;                  /* outstanding input requests */
    json_t *answers;                 /* answers so far */
    bool cancel;                     /* tasks/cancel asked */
    sq_mcp_req *req;                 /* running: its request (a reference) */
    sq_notify resume;                /* the handler's wait for answers */
    atomic_int refs;
};

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static json_t *iso_time(int64_t ms)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    char buf[80];
    snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, (int)(ms % 1000));
    return json_string(buf);
}

static sq_taskrec *rec_ref(sq_taskrec *t)
{
    atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
    return t;
}

static void rec_unref(sq_taskrec *t)
{
    if (!t || atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) != 1)
        return;
    json_decref(t->result);
    json_decref(t->error);
    json_decref(t->inputs);
    json_decref(t->answers);
    if (t->req)
        sq_req_unref(t->req);
    free(t);
}

static bool terminal(int status)
{
    return status >= T_COMPLETED;
}

/* The Task object (under task_lock): the fields every form shares. */
static json_t *task_json(const sq_taskrec *t)
{
    return json_pack("{s:s,s:s,s:o,s:o,s:I,s:i}", "taskId", t->id, "status",
                     status_names[t->status], "createdAt", iso_time(t->created_ms),
                     "lastUpdatedAt", iso_time(t->updated_ms), "ttlMs",
                     (json_int_t)TTL_MS, "pollIntervalMs", POLL_MS);
}

/* The detailed form of tasks/get and notifications/tasks (under lock). */
static json_t *detailed(const sq_taskrec *t)
{
    json_t *j = task_json(t);
    if (t->status == T_COMPLETED && t->result)
        json_object_set(j, "result", t->result);
    else if (t->status == T_FAILED && t->error)
        json_object_set(j, "error", t->error);
    else if (t->status == T_INPUT && t->inputs) {
        /* What is still unanswered (a partial tasks/update leaves the
         * rest outstanding). */
        json_t *left = json_object();
        const char *k;
        json_t *v;
        json_object_foreach(t->inputs, k, v)
            if (!json_object_get(t->answers, k))
                json_object_set(left, k, v);
        json_object_set_new(j, "inputRequests", left);
    }
    return j;
}

/* Tells the listeners that asked for this task (subscriptions/listen with
 * taskIds) its new state.  Called without task_lock. */
static void announce(sq_taskrec *t)
{
    sq_srv *s = t->srv;
    sq_mutex_lock_nocancel(&s->task_lock);
    json_t *body = detailed(t);
    sq_mutex_unlock(&s->task_lock);
    sq_mutex_lock_nocancel(&s->lock);
    SQ__LIST_FOREACH(l, &s->listeners) {
        sq_listener *x = sq__list_entry(l, sq_listener, link);
        if (x->task_ids && json_object_get(x->task_ids, t->id)) {
            json_t *p = json_deep_copy(body);
            json_t *id = json_loads(x->req->id, JSON_DECODE_ANY, NULL);
            json_object_set_new(p, "_meta",
                                json_pack("{s:o}", "io.modelcontextprotocol/subscriptionId", id));
            sq__strbuf b = SQ__STRBUF_INIT;
            sq_rpc_write_notification(&b, "notifications/tasks", p);
            json_decref(p);
            if (!b.failed)
                sq_req_emit(x->req, b.buf, b.len);
            sq__strbuf_free(&b);
        }
    }
    sq_mutex_unlock(&s->lock);
    json_decref(body);
}

/* -------------------------------------------------- becoming a task */

int sq_mcp_task_start(sq_mcp_req *r)
{
    if (r->taskrec)
        return -EALREADY;
    if (r->era != SQ_MCP_MODERN || strcmp(r->method, "tools/call") != 0 ||
        !sq_mcp_client_has(r, "extensions." SQ_TASKS_EXT))
        return -ENOTSUP;
    sq_srv *s = r->srv;
    sq_taskrec *t = calloc(1, sizeof *t);
    unsigned char rnd[16];
    if (!t || getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
        free(t);
        return -ENOMEM;
    }
    for (int i = 0; i < 16; i++)
        snprintf(t->id + 2 * i, 3, "%02x", rnd[i]);
    t->srv = s;
    t->status = T_WORKING;
    t->created_ms = t->updated_ms = wall_ms();
    t->expires = sq_now() + (int64_t)TTL_MS * SQ_MSEC;
    t->req = sq_req_ref(r);
    sq_notify_init(&t->resume);
    atomic_init(&t->refs, 1);
    /* Durable first: the task is findable before its id is sent. */
    sq_mutex_lock_nocancel(&s->task_lock);
    json_object_set_new(s->tasks_by_id, t->id, json_integer((intptr_t)t));
    json_t *create = task_json(t);
    sq_mutex_unlock(&s->task_lock);
    r->taskrec = rec_ref(t);
    /* It outlives its client's connection and the request deadline. */
    sq_req_no_deadline(r);
    sq_req_detach_tracker(r);
    json_object_set_new(create, "resultType", json_string("task"));
    sq__strbuf b = SQ__STRBUF_INIT;
    sq_rpc_write_result(&b, r->id, create);
    json_decref(create);
    if (!b.failed)
        sq_req_finish(r, b.buf, b.len);
    sq__strbuf_free(&b);
    return 0;
}

void sq_task_settle(sq_mcp_req *r, int rc, json_t *result)
{
    sq_taskrec *t = r->taskrec;
    sq_srv *s = r->srv;
    sq_mutex_lock_nocancel(&s->task_lock);
    if (!terminal(t->status)) {
        if (t->cancel || (sq_cancelled() && rc != SQ_MCP_OK)) {
            t->status = T_CANCELLED;
        } else if (rc == SQ_MCP_OK && result) {
            /* Completed covers a tool's own failure (isError) too. */
            t->status = T_COMPLETED;
            t->result = json_incref(result);
        } else {
            t->status = T_FAILED;
            t->error = json_pack("{s:i,s:s}", "code",
                                 r->err_msg ? r->err_code : SQ_RPC_INTERNAL_ERROR,
                                 "message", r->err_msg ? r->err_msg : "internal error");
            if (r->err_data)
                json_object_set(t->error, "data", r->err_data);
        }
        t->updated_ms = wall_ms();
        json_decref(t->inputs);
        t->inputs = NULL;
    }
    sq_mcp_req *req = t->req;
    t->req = NULL;
    sq_mutex_unlock(&s->task_lock);
    announce(t);
    if (req)
        sq_req_unref(req);
}

int sq_task_wait_input(sq_mcp_req *r, json_t *ask)
{
    sq_taskrec *t = r->taskrec;
    sq_srv *s = r->srv;
    sq_mutex_lock_nocancel(&s->task_lock);
    json_decref(t->inputs);
    t->inputs = json_incref(json_object_get(ask, "inputRequests"));
    json_decref(t->answers);
    t->answers = json_object();
    t->status = T_INPUT;
    t->updated_ms = wall_ms();
    sq_mutex_unlock(&s->task_lock);
    announce(t);
    for (;;) {
        sq_mutex_lock_nocancel(&s->task_lock);
        bool all = json_object_size(t->answers) == json_object_size(t->inputs);
        bool cancel = t->cancel;
        json_t *answers = all ? json_incref(t->answers) : NULL;
        if (all) {
            json_decref(t->inputs);
            t->inputs = NULL;
            t->status = T_WORKING;
            t->updated_ms = wall_ms();
        }
        sq_mutex_unlock(&s->task_lock);
        if (cancel)
            return -ECANCELED;
        if (all) {
            announce(t);
            json_decref(r->inputs);
            r->inputs = answers;
            json_decref(r->state);
            r->state = json_incref(json_object_get(ask, "state"));
            return 0;
        }
        if (sq_notify_wait(&t->resume) == -ECANCELED)
            return -ECANCELED;
    }
}

/* ------------------------------------------------------------ methods */

/* The task named by params.taskId, if the request may see it. */
static sq_taskrec *find(sq_mcp_req *r, int *rc)
{
    *rc = SQ_MCP_OK;
    if (!sq_mcp_client_has(r, "extensions." SQ_TASKS_EXT)) {
        *rc = sq_mcp_fail(r, SQ_MCP_ERR_MISSING_CAPABILITY,
                          "tasks need the " SQ_TASKS_EXT " extension declared",
                          json_pack("{s:{s:{s:{}}}}", "requiredCapabilities",
                                    "extensions", SQ_TASKS_EXT));
        return NULL;
    }
    const char *id = json_string_value(json_object_get(r->params, "taskId"));
    sq_srv *s = r->srv;
    sq_taskrec *t = NULL;
    if (id) {
        sq_mutex_lock_nocancel(&s->task_lock);
        json_t *v = json_object_get(s->tasks_by_id, id);
        t = v ? rec_ref((sq_taskrec *)(intptr_t)json_integer_value(v)) : NULL;
        sq_mutex_unlock(&s->task_lock);
    }
    if (!t)
        *rc = sq_mcp_fail(r, SQ_RPC_INVALID_PARAMS, "unknown or expired taskId", NULL);
    return t;
}

int sq_m_tasks_get(sq_mcp_req *r, json_t **result)
{
    int rc;
    sq_taskrec *t = find(r, &rc);
    if (!t)
        return rc;
    sq_mutex_lock_nocancel(&r->srv->task_lock);
    *result = detailed(t);
    sq_mutex_unlock(&r->srv->task_lock);
    rec_unref(t);
    return SQ_MCP_OK;
}

int sq_m_tasks_update(sq_mcp_req *r, json_t **result)
{
    json_t *in = json_object_get(r->params, "inputResponses");
    if (!json_is_object(in))
        return sq_mcp_fail(r, SQ_RPC_INVALID_PARAMS,
                           "inputResponses must be an object", NULL);
    int rc;
    sq_taskrec *t = find(r, &rc);
    if (!t)
        return rc;
    bool wake = false;
    sq_mutex_lock_nocancel(&r->srv->task_lock);
    if (t->status == T_INPUT) {
        /* Only answers to requests outstanding now count; others (old,
         * unknown, already answered) are ignored. */
        const char *k;
        json_t *v;
        json_object_foreach(in, k, v) {
            if (json_object_get(t->inputs, k) && !json_object_get(t->answers, k))
                json_object_set(t->answers, k, v);
        }
        wake = json_object_size(t->answers) == json_object_size(t->inputs);
    }
    sq_mutex_unlock(&r->srv->task_lock);
    if (wake)
        sq_notify_one(&t->resume);
    rec_unref(t);
    *result = json_object();
    return SQ_MCP_OK;
}

int sq_m_tasks_cancel(sq_mcp_req *r, json_t **result)
{
    int rc;
    sq_taskrec *t = find(r, &rc);
    if (!t)
        return rc;
    sq_mutex_lock_nocancel(&r->srv->task_lock);
    bool running = !terminal(t->status);
    if (running)
        t->cancel = true;
    sq_mcp_req *req = running && t->req ? sq_req_ref(t->req) : NULL;
    sq_mutex_unlock(&r->srv->task_lock);
    if (req) {
        /* Cooperative: the handler's waits return -ECANCELED, and the
         * task ends cancelled as its handler returns. */
        sq__spin_lock(&req->lock);
        if (req->has_task)
            sq_abort(req->task);
        sq__spin_unlock(&req->lock);
        sq_notify_one(&t->resume);
        sq_req_unref(req);
    }
    rec_unref(t);
    *result = json_object();
    return SQ_MCP_OK;
}

/* -------------------------------------------------------------- expiry */

void sq_tasks_expire(sq_srv *s)
{
    int64_t now = sq_now();
    sq_taskrec *gone[64];
    int n = 0;
    sq_mutex_lock_nocancel(&s->task_lock);
    const char *k;
    json_t *v;
    void *tmp;
    json_object_foreach_safe(s->tasks_by_id, tmp, k, v) {
        sq_taskrec *t = (sq_taskrec *)(intptr_t)json_integer_value(v);
        if (n < 64 && t->expires <= now) {
            gone[n++] = t; /* the table's reference */
            if (!terminal(t->status))
                t->cancel = true;
            json_object_del(s->tasks_by_id, k);
        }
    }
    sq_mutex_unlock(&s->task_lock);
    for (int i = 0; i < n; i++) {
        sq_taskrec *t = gone[i];
        sq_mutex_lock_nocancel(&s->task_lock);
        sq_mcp_req *req = t->req ? sq_req_ref(t->req) : NULL;
        sq_mutex_unlock(&s->task_lock);
        if (req) {
            sq__spin_lock(&req->lock);
            if (req->has_task)
                sq_abort(req->task);
            sq__spin_unlock(&req->lock);
            sq_notify_one(&t->resume);
            sq_req_unref(req);
        }
        rec_unref(t);
    }
}

void sq_tasks_free(sq_srv *s)
{
    const char *k;
    json_t *v;
    json_object_foreach(s->tasks_by_id, k, v)
        rec_unref((sq_taskrec *)(intptr_t)json_integer_value(v));
    json_decref(s->tasks_by_id);
    s->tasks_by_id = NULL;
}
