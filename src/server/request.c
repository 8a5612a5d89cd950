/* A request's life (srv.h): created by a transport, run as a task of its
 * own, answered once, or cancelled, after which nothing is sent for it.
 *
 * The state moves RUNNING -> DONE (answered) or RUNNING -> CANCELLED,
 * under the request's spin lock together with the push of the message,
 * so a cancellation processed before the response means no response, and
 * a response queued before the cancellation is sent (the race the
 * specification allows).  The spin lock is held for the state check and
 * a list insertion only. */
#include "srv.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

char *sq_id_key(json_t *id)
{
    if (!json_is_string(id) && !json_is_integer(id))
        return NULL;
    return json_dumps(id, JSON_COMPACT | JSON_ENCODE_ANY);
}

sq_mcp_req *sq_req_new(sq_srv *s, sq_rpc_msg *m, int era, const char *version,
                       json_t *caps, sq_outq *out)
{
    sq_mcp_req *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->srv = s;
    r->era = era;
    snprintf(r->version, sizeof r->version, "%s", version);
    r->caps = json_incref(caps ? caps : json_object());
    if (!caps)
        json_decref(r->caps); /* the new object's own reference */
    r->log_level = -1;
    r->method = strdup(m->method ? m->method : "");
    /* The whole message is held, not only its params: jansson frees a
     * message's members inside its own delete, which is not ordered after
     * this request's reads on another worker; holding the message makes
     * the last reference (and the free) this request's or ordered by our
     * reference counting (sq_proto/jansson.h). */
    r->msg = json_incref(m->json);
    r->params = m->params && json_is_object(m->params) ? json_incref(m->params)
                                                       : json_object();
    r->id = m->id;
    m->id = NULL;
    r->key = sq_id_key(json_object_get(m->json, "id"));
    json_t *meta = json_object_get(r->params, "_meta");
    json_t *tok = json_object_get(meta, "progressToken");
    if (json_is_string(tok) || json_is_integer(tok))
        r->progress_token = json_incref(tok);
    r->last_progress = -INFINITY;
    atomic_init(&r->phase, SQ_REQ_RUNNING);
    r->out = sq_outq_ref(out);
    r->deadline = SQ_FOREVER;
    int64_t t = s->cfg.request_timeout;
    if (t > 0 && t < SQ_FOREVER - sq_now())
        r->deadline = sq_now() + t;
    r->dl_slot = -1;
    atomic_init(&r->refs, 1);
    if (!r->method || !r->params) {
        sq_req_unref(r);
        return NULL;
    }
    return r;
}

sq_mcp_req *sq_req_ref(sq_mcp_req *r)
{
    atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed);
    return r;
}

void sq_req_unref(sq_mcp_req *r)
{
    if (!r || atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) != 1)
        return;
    if (r->sess)
        sq_sess_unref(r->sess);
    /* params._meta may be shared with the connection's _meta cache and
     * its other messages (sq_proto/jsonrpc.h): held across the message's
     * release and dropped last, so that its final reference is dropped
     * here, ordered, not inside jansson's delete of the message. */
    json_t *meta = json_incref(json_object_get(r->params, "_meta"));
    json_decref(r->caps);
    json_decref(r->params);
    json_decref(r->progress_token);
    json_decref(r->msg);
    json_decref(r->inputs);
    json_decref(r->state);
    json_decref(r->err_data);
    json_decref(meta);
    free(r->err_msg);
    free(r->method);
    free(r->id);
    free(r->key);
    sq_outq_unref(r->out);
    if (r->trk)
        sq_tracker_unref(r->trk);
    if (r->batch)
        sq_batch_unref(r->batch);
    free(r);
}

int sq_req_emit(sq_mcp_req *r, const char *text, size_t len)
{
    sq__spin_lock(&r->lock);
    int rc = atomic_load_explicit(&r->phase, memory_order_relaxed) == SQ_REQ_RUNNING
                 ? sq_outq_push(r->out, text, len, false)
                 : -ECANCELED;
    sq__spin_unlock(&r->lock);
    return rc;
}

bool sq_req_finish(sq_mcp_req *r, const char *text, size_t len)
{
    bool sent = false;
    sq__spin_lock(&r->lock);
    if (atomic_load_explicit(&r->phase, memory_order_relaxed) == SQ_REQ_RUNNING) {
        atomic_store_explicit(&r->phase, SQ_REQ_DONE, memory_order_release);
        if (r->batch)
            sq_batch_add(r->batch, text, text ? len : 0);
        else if (text && len)
            sq_outq_push(r->out, text, len, true);
        sent = text && len;
    }
    sq__spin_unlock(&r->lock);
    return sent;
}

void sq_req_cancel(sq_mcp_req *r)
{
    sq__spin_lock(&r->lock);
    if (atomic_load_explicit(&r->phase, memory_order_relaxed) == SQ_REQ_RUNNING) {
        atomic_store_explicit(&r->phase, SQ_REQ_CANCELLED, memory_order_release);
        if (r->batch) /* the batch's array goes without it */
            sq_batch_add(r->batch, NULL, 0);
        else /* an empty end: nothing is sent for it, but whoever waits
              * for its end (an HTTP response) stops waiting */
            sq_outq_push(r->out, "", 0, true);
    }
    /* The task's handle is used under the lock: the task detaches it
     * under the same lock as it ends.  A task that has not begun is not
     * aborted (it would never run, and never end the request): it sees
     * the state as it begins. */
    if (r->has_task && r->started)
        sq_abort(r->task);
    sq__spin_unlock(&r->lock);
}

/* ------------------------------------------------------- the trackers */

sq_tracker *sq_tracker_new(int permits)
{
    sq_tracker *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    sq_mutex_init_named(&t->lock, "server.tracker");
    sq_sem_init(&t->inflight, permits > 0 ? (size_t)permits : 64);
    sq_notify_init(&t->empty);
    atomic_init(&t->refs, 1);
    return t;
}

sq_tracker *sq_tracker_ref(sq_tracker *t)
{
    atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
    return t;
}

void sq_tracker_unref(sq_tracker *t)
{
    if (!t || atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) != 1)
        return;
    sq_mutex_destroy(&t->lock);
    sq_sem_destroy(&t->inflight);
    free(t);
}

int sq_tracker_admit(sq_tracker *t, sq_mcp_req *r)
{
    if (sq_sem_try_acquire(&r->srv->inflight, 1) != 0) {
        sq_mon_req_rejected(r->srv);
        return SQ_MCP_ERR_BUSY;
    }
    if (sq_sem_try_acquire(&t->inflight, 1) != 0) {
        sq_sem_release(&r->srv->inflight, 1);
        sq_mon_req_rejected(r->srv);
        return SQ_MCP_ERR_BUSY;
    }
    int rc = 0;
    sq_mutex_lock_nocancel(&t->lock);
    /* O(n) over at most max_inflight_session requests: ids are checked
     * for reuse, which the specification forbids while in flight.  A
     * request already answered (or cancelled) is no longer in flight for
     * its client, even if its task has not yet left the list: a client
     * may reuse the id as soon as it has the answer. */
    SQ__LIST_FOREACH(l, &t->reqs) {
        sq_mcp_req *o = sq__list_entry(l, sq_mcp_req, link);
        if (o->key && r->key && strcmp(o->key, r->key) == 0 &&
            atomic_load_explicit(&o->phase, memory_order_acquire) == SQ_REQ_RUNNING) {
            rc = -EEXIST;
            break;
        }
    }
    if (rc == 0) {
        sq__list_push_back(&t->reqs, &r->link);
        t->count++;
        r->trk = sq_tracker_ref(t);
    }
    sq_mutex_unlock(&t->lock);
    if (rc) {
        sq_sem_release(&t->inflight, 1);
        sq_sem_release(&r->srv->inflight, 1);
    }
    return rc;
}

/* Gives r's in-flight permits back: just before its answer is sent, so
 * that a client that has the answer may send another request at once
 * without finding the limit still counting this one.  Only r's own task
 * calls it. */
static void tracker_release_permits(sq_mcp_req *r)
{
    if (!r->trk || r->permits_given_back)
        return;
    r->permits_given_back = true;
    sq_sem_release(&r->trk->inflight, 1);
    sq_sem_release(&r->srv->inflight, 1);
}

/* Unlists r and gives its permits back (at its end, after its answer, or
 * when it becomes a task).  Only r's own task calls it. */
static void tracker_leave(sq_mcp_req *r)
{
    sq_tracker *t = r->trk;
    if (!t || r->trk_left)
        return;
    r->trk_left = true;
    sq_mutex_lock_nocancel(&t->lock);
    sq__list_remove(&t->reqs, &r->link);
    bool empty = --t->count == 0;
    sq_mutex_unlock(&t->lock);
    if (empty)
        sq_notify_all(&t->empty);
    tracker_release_permits(r);
}

void sq_tracker_cancel(sq_tracker *t, const char *key)
{
    /* Cancelling only marks and aborts: no wait, so it is done under the
     * list's lock, and the request cannot leave meanwhile. */
    sq_mutex_lock_nocancel(&t->lock);
    SQ__LIST_FOREACH(l, &t->reqs) {
        sq_mcp_req *r = sq__list_entry(l, sq_mcp_req, link);
        if (!key || (r->key && strcmp(r->key, key) == 0))
            sq_req_cancel(r);
    }
    sq_mutex_unlock(&t->lock);
}

size_t sq_tracker_count(sq_tracker *t)
{
    sq_mutex_lock_nocancel(&t->lock);
    size_t n = t->count;
    sq_mutex_unlock(&t->lock);
    return n;
}

void sq_tracker_cancel_listens(sq_tracker *t)
{
    sq_mutex_lock_nocancel(&t->lock);
    SQ__LIST_FOREACH(l, &t->reqs) {
        sq_mcp_req *r = sq__list_entry(l, sq_mcp_req, link);
        if (r->listen)
            sq_req_cancel(r);
    }
    sq_mutex_unlock(&t->lock);
}

int sq_tracker_wait_empty(sq_tracker *t, int64_t deadline)
{
    for (;;) {
        if (sq_tracker_count(t) == 0)
            return 0;
        /* notify_all wakes only who waits now: a drop to 0 between the
         * count and the wait would be missed, so the wait is bounded and
         * the count looked at again. */
        int64_t d = sq_now() + 50 * SQ_MSEC;
        int rc = sq_notify_wait_until(&t->empty, d < deadline ? d : deadline);
        if (rc == -ECANCELED)
            return rc;
        if (rc == -ETIMEDOUT && sq_now() >= deadline)
            return sq_tracker_count(t) == 0 ? 0 : -ETIMEDOUT;
    }
}

/* ------------------------------------------------------- the deadlines */

/* The wheel: slot = deadline in seconds mod SQ_DL_SLOTS.  The reaper
 * looks at the slots whose second has come, once a quarter second, and
 * aborts the requests there whose deadline passed (the others are a
 * wheel's turn or more away and stay).  O(1) to add and remove. */
static void deadline_add(sq_mcp_req *r)
{
    if (r->deadline == SQ_FOREVER)
        return;
    sq_srv *s = r->srv;
    int slot = (int)((r->deadline / SQ_SEC) % SQ_DL_SLOTS);
    sq__spin_lock(&s->dl_lock);
    sq__list_push_back(&s->dl_wheel[slot], &r->dl_link);
    r->dl_slot = slot;
    sq__spin_unlock(&s->dl_lock);
}

static void deadline_remove(sq_mcp_req *r)
{
    sq_srv *s = r->srv;
    sq__spin_lock(&s->dl_lock);
    if (r->dl_slot >= 0) {
        sq__list_remove(&s->dl_wheel[r->dl_slot], &r->dl_link);
        r->dl_slot = -1;
    }
    sq__spin_unlock(&s->dl_lock);
}

void sq_req_detach_tracker(sq_mcp_req *r)
{
    tracker_leave(r);
}

void sq_req_no_deadline(sq_mcp_req *r)
{
    deadline_remove(r);
    r->deadline = SQ_FOREVER;
}

void *sq_req_reaper_main(void *arg)
{
    sq_srv *s = arg;
    int64_t swept = sq_now() / SQ_SEC - 1; /* seconds swept up to */
    int64_t last_expiry = 0;
    for (;;) {
        int rc = sq_notify_wait_until(&s->dl_stop, sq_now() + 250 * SQ_MSEC);
        if (rc == 0 || rc == -ECANCELED)
            break; /* told to stop */
        int64_t now = sq_now(), sec = now / SQ_SEC;
        if (sec - swept > SQ_DL_SLOTS)
            swept = sec - SQ_DL_SLOTS;
        for (int64_t x = swept + 1; x <= sec; x++) {
            int slot = (int)(x % SQ_DL_SLOTS);
            sq__spin_lock(&s->dl_lock);
            SQ__LIST_FOREACH_SAFE(l, &s->dl_wheel[slot]) {
                sq_mcp_req *r = sq__list_entry(l, sq_mcp_req, dl_link);
                if (r->deadline > now)
                    continue;
                sq__list_remove(&s->dl_wheel[slot], &r->dl_link);
                r->dl_slot = -1;
                /* Aborting does not wait; the request answers for
                 * itself (SQ_MCP_ERR_DEADLINE) as its task ends. */
                sq__spin_lock(&r->lock);
                if (r->has_task && r->started)
                    sq_abort(r->task);
                sq__spin_unlock(&r->lock);
            }
            sq__spin_unlock(&s->dl_lock);
        }
        swept = sec - 1; /* this second may still get requests due in it */
        if (sec != last_expiry) {
            last_expiry = sec;
            sq_srv_expire_sessions(s);
            sq_tasks_expire(s);
        }
    }
    return NULL;
}

/* ------------------------------------------------------------ the task */

static void *req_main(void *arg)
{
    sq_mcp_req *r = arg;
    sq__strbuf b = SQ__STRBUF_INIT;
    /* Cancelled or past its deadline before it began (it was not aborted
     * then: see sq_req_cancel): it ends without running. */
    sq__spin_lock(&r->lock);
    r->started = true;
    bool run = atomic_load_explicit(&r->phase, memory_order_relaxed) == SQ_REQ_RUNNING;
    sq__spin_unlock(&r->lock);
    bool late = sq_now() >= r->deadline;
    if (run && !late)
        sq_dispatch(r, &b);
    if (sq__strbuf_failed(&b)) {
        sq__strbuf_reset(&b);
        sq_req_error_text(r, &b, SQ_RPC_INTERNAL_ERROR, "out of memory", NULL);
    }
    if ((sq_cancelled() || late) && sq_now() >= r->deadline) {
        /* Aborted by its deadline (not by its client): say so. */
        sq__strbuf_reset(&b);
        sq_req_error_text(r, &b, SQ_MCP_ERR_DEADLINE,
                          "the request's deadline passed", NULL);
    }
    /* Counted before the answer goes, so that a client that has its
     * answer finds it counted (the outcome is the one decided now: a
     * cancellation that races with the answer is counted as answered). */
    bool deadline = (sq_cancelled() || late) && sq_now() >= r->deadline;
    int phase = atomic_load_explicit(&r->phase, memory_order_relaxed);
    sq_mon_req_end(r, deadline                      ? SQ_OUT_DEADLINE
                      : phase == SQ_REQ_CANCELLED ? SQ_OUT_CANCELLED
                      : r->failed                 ? SQ_OUT_ERROR
                                                  : SQ_OUT_OK);
    tracker_release_permits(r);
    sq_req_finish(r, b.buf, b.len);
    sq__strbuf_free(&b);
    if (r->srv->cfg.test_linger)
        sq_sleep(r->srv->cfg.test_linger);
    deadline_remove(r);
    tracker_leave(r);
    /* Done with the handle: detach it under the lock cancellers use. */
    sq__spin_lock(&r->lock);
    r->has_task = false;
    sq_detach(r->task);
    sq__spin_unlock(&r->lock);
    sq_req_unref(r);
    return NULL;
}

int sq_req_start(sq_mcp_req *r)
{
    sq_spawn_opts o = {.stack_size = 0, .name = "mcp-request"};
    sq_req_ref(r); /* the task's */
    deadline_add(r);
    sq_mon_req_begin(r);
    sq__spin_lock(&r->lock);
    int rc = sq_spawn(&r->task, req_main, r, &o);
    r->has_task = rc == 0;
    sq__spin_unlock(&r->lock);
    if (rc) {
        sq_mon_req_end(r, SQ_OUT_CANCELLED);
        deadline_remove(r);
        sq_req_unref(r);
    }
    return rc;
}
