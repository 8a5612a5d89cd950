/* The stream transports: newline-delimited JSON-RPC over stdio, a Unix
 * socket or TCP.  One connection is one client: a reader (the calling
 * task) parses messages and starts a task per request, never waiting for
 * one; a writer task drains the connection's outgoing queue.  Legacy
 * messages share the connection's one session (made by initialize); a
 * message that carries the 2026-07-28 envelope is served on its own. */
#include "methods.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sq_proto/lines.h"

typedef struct sconn {
    sq_srv *srv;
    sq_io *in, *out;
    sq_outq *q;
    sq_sess *sess;          /* the legacy session, once initialized */
    sq_tracker *trk;        /* 2026-07-28 requests */
    sq_task writer;
    sq_rpc_meta_cache meta;  /* the reader's: the peer's envelopes */
    sq_era_memo memo;        /* the reader's: its last valid one */
} sconn;

/* ------------------------------------------------------------ writing */

static void *writer_main(void *arg)
{
    sconn *c = arg;
    struct iovec iov[64];
    sq_outmsg *msgs[32];
    for (;;) {
        /* Closed seen before taking: then an empty take means empty for
         * good (no push succeeds after the close). */
        bool closed = sq_outq_is_closed(c->q);
        int n = 0;
        sq_outmsg *m;
        while (n < 32 && (m = sq_outq_take(c->q)))
            if (m->len)
                msgs[n++] = m;
            else
                free(m);
        if (n == 0) {
            if (closed)
                break;
            if (sq_outq_wait(c->q, SQ_FOREVER) == -ECANCELED)
                break;
            continue;
        }
        for (int i = 0; i < n; i++) {
            iov[2 * i] = (struct iovec){msgs[i]->text, msgs[i]->len};
            iov[2 * i + 1] = (struct iovec){"\n", 1};
        }
        ssize_t total = 0, want = 0;
        for (int i = 0; i < n; i++)
            want += (ssize_t)msgs[i]->len + 1;
        /* writev may be partial: go on from where it stopped. */
        struct iovec *v = iov;
        int cnt = 2 * n;
        while (total < want) {
            ssize_t w = sq_io_writev(c->out, v, cnt);
            if (w <= 0) {
                total = -1;
                break;
            }
            total += w;
            while (cnt && (size_t)w >= v->iov_len) {
                w -= (ssize_t)v->iov_len;
                v++;
                cnt--;
            }
            if (cnt) {
                v->iov_base = (char *)v->iov_base + w;
                v->iov_len -= (size_t)w;
            }
        }
        for (int i = 0; i < n; i++)
            free(msgs[i]);
        if (total < 0) {
            /* The peer is gone: nothing more can be written. */
            sq_outq_close(c->q);
            while ((m = sq_outq_take(c->q)))
                free(m);
            break;
        }
    }
    return NULL;
}

/* Queues an answer made here (not by a request task). */
static void reply(sconn *c, sq__strbuf *b)
{
    if (b->len && !b->failed)
        sq_outq_push(c->q, b->buf, b->len, false);
    sq__strbuf_reset(b);
}

static void reply_error(sconn *c, sq_batch *batch, const char *raw_id, int code,
                        const char *msg, json_t *data)
{
    sq__strbuf b = SQ__STRBUF_INIT;
    sq_rpc_write_error(&b, raw_id, code, msg, data);
    if (batch)
        sq_batch_add(batch, b.buf, b.len);
    else
        reply(c, &b);
    sq__strbuf_free(&b);
    json_decref(data);
}

static void reply_result(sconn *c, sq_batch *batch, const char *raw_id,
                         json_t *res)
{
    sq__strbuf b = SQ__STRBUF_INIT;
    sq_rpc_write_result(&b, raw_id, res);
    if (batch)
        sq_batch_add(batch, b.buf, b.len);
    else
        reply(c, &b);
    sq__strbuf_free(&b);
    json_decref(res);
}

/* ------------------------------------------------------------ messages */

static void initialize(sconn *c, sq_rpc_msg *m, sq_batch *batch)
{
    json_t *p = m->params;
    json_t *ver = json_object_get(p, "protocolVersion");
    json_t *caps = json_object_get(p, "capabilities");
    json_t *info = json_object_get(p, "clientInfo");
    if (!json_is_string(ver) || !json_is_object(caps) || !json_is_object(info)) {
        reply_error(c, batch, m->id, SQ_RPC_INVALID_PARAMS,
                    "initialize needs protocolVersion (a string), capabilities "
                    "and clientInfo (objects)",
                    NULL);
        return;
    }
    if (c->sess) {
        reply_error(c, batch, m->id, SQ_RPC_INVALID_REQUEST,
                    "this connection is initialized already", NULL);
        return;
    }
    if (batch) {
        reply_error(c, batch, m->id, SQ_RPC_INVALID_REQUEST,
                    "initialize must not be part of a batch", NULL);
        return;
    }
    sq_sess *x = sq_sess_new(c->srv, false);
    const char *version;
    json_t *res = x ? sq_initialize_result(c->srv, json_string_value(ver), &version)
                    : NULL;
    if (!res) {
        sq_sess_unref(x);
        reply_error(c, batch, m->id, SQ_RPC_INTERNAL_ERROR, "out of memory", NULL);
        return;
    }
    snprintf(x->version, sizeof x->version, "%s", version);
    x->caps = json_incref(caps);
    x->client_info = json_incref(info);
    x->unsolicited = sq_outq_ref(c->q);
    sq_srv *s = c->srv;
    sq_mutex_lock_nocancel(&s->lock);
    sq__list_push_back(&s->sessions, &x->link);
    s->nsessions++;
    sq_sess_ref(x); /* the server table's */
    sq_mutex_unlock(&s->lock);
    c->sess = x;
    reply_result(c, batch, m->id, res);
}

static void notification(sconn *c, sq_rpc_msg *m)
{
    if (strcmp(m->method, "notifications/initialized") == 0) {
        if (c->sess)
            atomic_store(&c->sess->initialized, true);
    } else if (strcmp(m->method, "notifications/cancelled") == 0) {
        char *key = sq_id_key(json_object_get(m->params, "requestId"));
        if (key) {
            if (c->sess)
                sq_tracker_cancel(c->sess->trk, key);
            sq_tracker_cancel(c->trk, key);
        }
        free(key);
    }
    /* Others (progress from the client, roots/list_changed) need no
     * action: notifications are never answered. */
}

static void request(sconn *c, sq_rpc_msg *m, sq_batch *batch)
{
    sq_srv *s = c->srv;
    bool modern = sq_era_claims_modern(m->params, &c->memo);
    if (!modern && strcmp(m->method, "initialize") == 0) {
        initialize(c, m, batch);
        return;
    }
    const char *version;
    json_t *caps;
    sq_tracker *trk;
    int level = -1;
    if (modern) {
        const char *why;
        json_t *data;
        int code = sq_era_envelope(m->params, &c->meta, &c->memo, &version, &caps, &level,
                                   &why, &data);
        if (code) {
            reply_error(c, batch, m->id, code, why, data);
            return;
        }
        trk = c->trk;
    } else if (!c->sess) {
        if (strcmp(m->method, "ping") == 0) { /* allowed before initialize */
            reply_result(c, batch, m->id, json_object());
            return;
        }
        reply_error(c, batch, m->id, SQ_MCP_ERR_NOT_INITIALIZED,
                    "not initialized: send initialize first (or the "
                    "2026-07-28 envelope in _meta)",
                    NULL);
        return;
    } else {
        version = c->sess->version;
        caps = c->sess->caps;
        trk = c->sess->trk;
    }
    if (atomic_load(&s->stopping)) {
        reply_error(c, batch, m->id, SQ_MCP_ERR_SHUTDOWN, "the server is stopping",
                    NULL);
        return;
    }
    sq_mcp_req *r = sq_req_new(s, m, modern ? SQ_MCP_MODERN : SQ_MCP_LEGACY,
                               version, caps, c->q);
    if (!r) {
        reply_error(c, batch, m->id, SQ_RPC_INTERNAL_ERROR, "out of memory", NULL);
        return;
    }
    r->log_level = level; /* 2026-07-28: the request's own (-1: none) */
    if (!modern) {
        r->sess = sq_sess_ref(c->sess);
        atomic_store(&c->sess->last_used, sq_now());
    }
    if (batch) {
        atomic_fetch_add(&batch->refs, 1);
        r->batch = batch;
    }
    int rc = sq_tracker_admit(trk, r);
    if (rc == 0)
        rc = sq_req_start(r);
    if (rc) {
        /* Not started: answered here (the batch, if any, through r). */
        r->batch = NULL;
        char msg[160];
        if (rc == SQ_MCP_ERR_BUSY)
            snprintf(msg, sizeof msg, "too many requests in flight (limits: %d per "
                     "client, %d in all)", s->cfg.max_inflight_session,
                     s->cfg.max_inflight_total);
        else
            snprintf(msg, sizeof msg, "%s", rc == -EEXIST
                     ? "a request with this id is in flight already"
                     : "the request could not be started");
        int code = rc == SQ_MCP_ERR_BUSY ? SQ_MCP_ERR_BUSY
                   : rc == -EEXIST       ? SQ_RPC_INVALID_REQUEST
                                         : SQ_MCP_ERR_SHUTDOWN;
        if (r->trk) { /* admitted, then the spawn failed: leave */
            sq_mutex_lock_nocancel(&trk->lock);
            sq__list_remove(&trk->reqs, &r->link);
            trk->count--;
            sq_mutex_unlock(&trk->lock);
            sq_sem_release(&trk->inflight, 1);
            sq_sem_release(&s->inflight, 1);
        }
        reply_error(c, batch, r->id, code, msg, NULL);
        if (batch)
            sq_batch_unref(batch);
    }
    sq_req_unref(r);
    atomic_fetch_add(&s->requests_total, 1);
}

static void message(sconn *c, sq_rpc_msg *m, sq_batch *batch)
{
    switch (m->kind) {
    case SQ_RPC_INVALID:
        reply_error(c, batch, m->id, SQ_RPC_INVALID_REQUEST, m->why, NULL);
        break;
    case SQ_RPC_RESPONSE:
        if (c->sess)
            sq_sess_deliver(c->sess, m);
        break;
    case SQ_RPC_NOTIFICATION:
        notification(c, m);
        break;
    case SQ_RPC_REQUEST:
        request(c, m, batch);
        break;
    }
}

/* Elements of a batch that are answered: requests and invalid ones. */
static int answered(sq_rpc_parsed *p)
{
    int n = 0;
    for (size_t i = 0; i < p->n; i++)
        n += p->msgs[i].kind == SQ_RPC_REQUEST || p->msgs[i].kind == SQ_RPC_INVALID;
    return n;
}

static void line(sconn *c, const char *text, size_t len)
{
    sq_rpc_parsed p;
    int rc = sq_rpc_parse_cached(text, len, &c->meta, &p);
    if (rc == SQ_RPC_PARSE_ERROR || rc == SQ_RPC_INVALID_REQUEST) {
        reply_error(c, NULL, NULL, rc,
                    rc == SQ_RPC_PARSE_ERROR ? "Parse error: not one JSON value"
                                             : "Invalid Request: not a JSON-RPC message",
                    NULL);
        return;
    }
    if (rc) {
        reply_error(c, NULL, NULL, SQ_RPC_INTERNAL_ERROR, "out of memory", NULL);
        return;
    }
    if (!p.batch) {
        message(c, &p.msgs[0], NULL);
    } else if (p.n == 0) {
        reply_error(c, NULL, NULL, SQ_RPC_INVALID_REQUEST,
                    "Invalid Request: an empty batch", NULL);
    } else {
        bool modern = false;
        for (size_t i = 0; i < p.n; i++)
            modern |= p.msgs[i].kind != SQ_RPC_INVALID &&
                      sq_era_claims_modern(p.msgs[i].params, NULL);
        if (modern || !c->sess || strcmp(c->sess->version, "2025-03-26") != 0) {
            reply_error(c, NULL, NULL, SQ_RPC_INVALID_REQUEST,
                        "Invalid Request: batches exist only in protocol "
                        "version 2025-03-26",
                        NULL);
        } else {
            int n = answered(&p);
            sq_batch *b = n ? sq_batch_new(c->q, n) : NULL;
            for (size_t i = 0; i < p.n; i++)
                message(c, &p.msgs[i], b);
            if (b)
                sq_batch_unref(b);
        }
    }
    sq_rpc_parsed_free(&p);
}

static bool blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
            return false;
    return true;
}

/* ---------------------------------------------------------- connection */

void sq_serve_stream_conn(sq_srv *s, sq_io *in, bool is_stdio, sq_io *out)
{
    (void)is_stdio;
    sconn c = {.srv = s, .in = in, .out = out ? out : in};
    c.q = sq_outq_new(s->cfg.out_queue_bytes, false);
    c.trk = sq_tracker_new(s->cfg.max_inflight_session);
    sq_lines *lines = NULL;
    if (!c.q || !c.trk || sq_lines_new(&lines, in, s->cfg.max_message_bytes) != 0)
        goto out;
    sq_spawn_opts wo = {.name = "mcp-writer"};
    if (sq_spawn(&c.writer, writer_main, &c, &wo) != 0)
        goto out;
    for (;;) {
        char *text;
        size_t len;
        int rc = sq_lines_read(lines, &text, &len, SQ_FOREVER);
        if (rc == -EMSGSIZE) {
            char msg[96];
            snprintf(msg, sizeof msg, "Invalid Request: message longer than %zu bytes",
                     s->cfg.max_message_bytes);
            reply_error(&c, NULL, NULL, SQ_RPC_INVALID_REQUEST, msg, NULL);
            continue;
        }
        if (rc <= 0 || sq_outq_is_closed(c.q))
            break; /* end of input, the server stopping, or the peer gone */
        if (!blank(text, len))
            line(&c, text, len);
    }
    /* End of input: requests still running finish and are answered (a
     * client may close its side after its last request); subscriptions
     * end.  Then the writer drains the queue and stops. */
    sq_cancel_mask();
    sq_tracker_cancel_listens(c.trk);
    if (c.sess)
        sq_tracker_cancel_listens(c.sess->trk);
    int64_t until = sq_now() + s->cfg.grace;
    sq_tracker_wait_empty(c.trk, until);
    if (c.sess)
        sq_tracker_wait_empty(c.sess->trk, until);
    sq_tracker_cancel(c.trk, NULL);
    if (c.sess)
        sq_sess_end(c.sess);
    sq_tracker_wait_empty(c.trk, SQ_FOREVER);
    sq_outq_close(c.q);
    sq_join(c.writer, NULL);
    sq_cancel_unmask();
out:
    if (lines)
        sq_lines_free(lines);
    if (c.sess)
        sq_sess_unref(c.sess);
    sq_tracker_unref(c.trk);
    sq_outq_unref(c.q);
    sq_rpc_meta_cache_clear(&c.meta);
}
