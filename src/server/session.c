/* Legacy sessions (srv.h): the state initialize creates and every later
 * request of that client shares; our own requests to the client
 * (sampling, elicitation, roots) and their answers. */
#include "srv.h"
#include "events.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

sq_sess *sq_sess_new(sq_srv *s, bool http)
{
    sq_sess *x = calloc(1, sizeof *x);
    if (!x)
        return NULL;
    x->srv = s;
    x->http = http;
    atomic_init(&x->log_level, SQ_MCP_INFO);
    atomic_init(&x->last_used, sq_now());
    x->created = sq_now();
    x->trk = sq_tracker_new(s->cfg.max_inflight_session);
    x->pending = json_object();
    x->subs = json_object();
    x->streams = json_object();
    sq_mutex_init_named(&x->lock, "server.session");
    atomic_init(&x->refs, 1);
    if (!x->trk || !x->pending || !x->subs || !x->streams) {
        sq_sess_unref(x);
        return NULL;
    }
    if (http) {
        /* 128 bits from the kernel's random source, as hex: visible
         * ASCII, unguessable. */
        unsigned char r[16];
        if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
            sq_sess_unref(x);
            return NULL;
        }
        for (int i = 0; i < 16; i++)
            snprintf(x->id + 2 * i, 3, "%02x", r[i]);
    }
    return x;
}

sq_sess *sq_sess_ref(sq_sess *x)
{
    atomic_fetch_add_explicit(&x->refs, 1, memory_order_relaxed);
    return x;
}

/* A pending request of ours: the slot its answer goes to. */
typedef struct ask_slot {
    sq_oneshot answer;          /* json_t * (a reference) */
} ask_slot;

static void fail_pending(json_t *pending)
{
    const char *k;
    json_t *v;
    json_object_foreach(pending, k, v) {
        ask_slot *slot = (ask_slot *)(intptr_t)json_integer_value(v);
        sq_oneshot_close_send(&slot->answer);
    }
    json_object_clear(pending);
}

void sq_sess_unref(sq_sess *x)
{
    if (!x || atomic_fetch_sub_explicit(&x->refs, 1, memory_order_acq_rel) != 1)
        return;
    if (x->pending)
        fail_pending(x->pending);
    json_decref(x->pending);
    json_decref(x->subs);
    const char *k;
    json_t *v;
    json_object_foreach(x->streams, k, v)
        sq_outq_unref((sq_outq *)(intptr_t)json_integer_value(v));
    json_decref(x->streams);
    json_decref(x->caps);
    json_decref(x->client_info);
    if (x->unsolicited)
        sq_outq_unref(x->unsolicited);
    if (x->trk)
        sq_tracker_unref(x->trk);
    sq_mutex_destroy(&x->lock);
    free(x);
}

void sq_sess_end(sq_sess *x)
{
    if (atomic_exchange(&x->ended, true))
        return;
    sq_srv *s = x->srv;
    sq_mutex_lock_nocancel(&s->lock);
    if (x->link.next || x->link.prev || s->sessions.head == &x->link) {
        sq__list_remove(&s->sessions, &x->link);
        s->nsessions--;
        if (x->id[0])
            json_object_del(s->by_id, x->id);
    }
    sq_mutex_unlock(&s->lock);
    sq_tracker_cancel(x->trk, NULL);
    /* Its streams' stored events go too (a DELETE, an expiry); not when
     * the server stops: they stay for a resumption on another instance
     * (until the retention prunes them). */
    if (x->http && !atomic_load(&s->stopping))
        sq_events_session_ended(s, x->id);
    sq_mutex_lock_nocancel(&x->lock);
    fail_pending(x->pending);
    sq_outq *q = x->unsolicited;
    x->unsolicited = NULL;
    sq_mutex_unlock(&x->lock);
    if (q) {
        sq_outq_close(q);
        sq_outq_unref(q);
    }
    sq_sess_unref(x); /* the server table's reference */
}

void sq_sess_deliver(sq_sess *x, sq_rpc_msg *m)
{
    char *key = sq_id_key(json_object_get(m->json, "id"));
    if (!key)
        return;
    /* The send happens under the lock: an asker that gives up takes the
     * lock before its slot (on its stack) goes, so no send can reach a
     * slot that is gone.  A oneshot send never waits. */
    sq_mutex_lock_nocancel(&x->lock);
    json_t *v = json_object_get(x->pending, key);
    ask_slot *slot = v ? (ask_slot *)(intptr_t)json_integer_value(v) : NULL;
    if (slot) {
        json_object_del(x->pending, key);
        /* The whole message goes over: the asker reads result or error. */
        json_t *msg = json_incref(m->json);
        if (sq_oneshot_send(&slot->answer, msg) != 0)
            json_decref(msg);
    }
    sq_mutex_unlock(&x->lock);
    free(key);
}

int sq_sess_ask(sq_sess *x, sq_mcp_req *r, const char *method, json_t *params,
                json_t **result)
{
    *result = NULL;
    ask_slot slot;
    sq_oneshot_init(&slot.answer);
    char id[48];
    sq_mutex_lock_nocancel(&x->lock);
    snprintf(id, sizeof id, "\"squirreld-%llu\"",
             (unsigned long long)++x->next_client_id);
    int rc = json_object_set_new(x->pending, id, json_integer((intptr_t)&slot));
    sq_mutex_unlock(&x->lock);
    if (rc)
        return -ENOMEM;

    sq__strbuf b = SQ__STRBUF_INIT;
    sq_rpc_write_request(&b, id, method, params);
    rc = b.failed ? -ENOMEM : sq_req_emit(r, b.buf, b.len);
    sq__strbuf_free(&b);
    void *got = NULL;
    if (rc == 0)
        rc = sq_oneshot_recv_until(&slot.answer, &got, r->deadline);
    if (rc != 0) {
        /* Given up: take the slot back (unless a deliverer has it now,
         * in which case its send fails or its value is dropped below). */
        sq_mutex_lock_nocancel(&x->lock);
        json_object_del(x->pending, id);
        sq_mutex_unlock(&x->lock);
        sq_oneshot_close_recv(&slot.answer);
        if (sq_oneshot_recv_until(&slot.answer, &got, 0) == 0)
            json_decref(got);
        return rc == -EPIPE ? -ECONNRESET : rc;
    }
    json_t *msg = got;
    json_t *res = json_object_get(msg, "result");
    if (res) {
        *result = json_incref(res);
        json_decref(msg);
        return 0;
    }
    *result = json_incref(json_object_get(msg, "error"));
    json_decref(msg);
    return -EPROTO;
}

void sq_sess_notify(sq_sess *x, const char *text, size_t len)
{
    sq_mutex_lock_nocancel(&x->lock);
    sq_outq *q = x->unsolicited ? sq_outq_ref(x->unsolicited) : NULL;
    sq_mutex_unlock(&x->lock);
    if (!q)
        return; /* no stream to carry it (HTTP without a GET stream) */
    if (sq_outq_push(q, text, len, false) == -ENOBUFS)
        atomic_fetch_add(&x->srv->dropped, 1);
    sq_outq_unref(q);
}
