/* Legacy SSE streams in a shared store (events.h): the writer task and
 * the replay.
 *
 * Producers (sq_outq_push, under the pushed queue's lock, and session
 * ends) append to one list under a spin lock held for the append only;
 * the lock is a leaf (nothing is taken under it), so taking it under a
 * queue's lock is safe, and it keeps each stream's events in seq order.
 * The writer takes what is there (up to EV_BATCH events) and commits it
 * with one call of the store (one round trip); a batch that fails is
 * tried again, whole and first, with backoff, while the list fills up to
 * EV_MAX_BYTES (then new events are refused, and their streams stop
 * being stored).  A batch the database keeps refusing (not a lost
 * connection: the statement fails) for EV_REFUSED_FOR is dropped, and
 * its streams are listed as lost: their later events are refused too,
 * so that what is stored of a stream never has a gap.  The writer also
 * prunes events older than the retention, every EV_PRUNE_EVERY at
 * most. */
#include "events.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sq_proto/jansson.h"
#include "sq_proto/sse.h"
#include "store/store.h"

/* The writer's list holds at most this much data. */
#define EV_MAX_BYTES ((size_t)32 << 20)
/* A batch is at most this many events, or this much data. */
#define EV_BATCH 512
#define EV_BATCH_BYTES ((size_t)4 << 20)
#define EV_BACKOFF_MIN (50 * SQ_MSEC)
#define EV_BACKOFF_MAX (2 * SQ_SEC)
/* A batch the database refuses (not a lost connection) is tried for this
 * long, then dropped (counted, logged; its streams are lost). */
#define EV_REFUSED_FOR (30 * SQ_SEC)
/* At most this many lost streams are remembered; past it, nothing more
 * is stored by this instance. */
#define EV_LOST_MAX 65536
#define EV_PRUNE_EVERY (60 * SQ_SEC)
/* The retention when sessions never expire (session_idle 0). */
#define EV_RETAIN_DEFAULT (30 * 60 * SQ_SEC)

struct sq_evrec {
    struct sq__link link;
    char session[40];
    uint64_t stream, seq;
    bool gone;                  /* not an event: the session ended */
    size_t len;
    char data[];
};

struct sq_events {
    sq_srv *srv;
    sq_store *store;
    sq__spin lock;              /* list, bytes, closed, lost */
    struct sq__list list;
    size_t bytes;               /* data in the list and in the batch */
    bool closed;                /* stopped: puts are refused */
    json_t *lost;               /* "session/stream" -> true: not stored */
    atomic_bool stopping;
    sq_notify wake;
    sq_task writer;
    bool started;
    int64_t retain;             /* ns */
    atomic_ullong stored, dropped, failed;
};

bool sq_events_counts(sq_srv *s, uint64_t *stored, uint64_t *refused, uint64_t *given_up)
{
    sq_events *ev = s->events;
    if (!ev)
        return false;
    *stored = atomic_load(&ev->stored);
    *refused = atomic_load(&ev->dropped);
    *given_up = atomic_load(&ev->failed);
    return true;
}

/* ------------------------------------------------------------ producers */

sq_evrec *sq__events_rec_new(const sq_outq *q, const char *text, size_t len)
{
    sq_evrec *r = malloc(sizeof *r + len + 1);
    if (!r)
        return NULL;
    memset(r, 0, sizeof *r);
    memcpy(r->session, q->ev_session, sizeof r->session);
    r->stream = q->ev_stream;
    r->len = len;
    memcpy(r->data, text, len);
    r->data[len] = '\0';
    return r;
}

static void lost_key(char *key, size_t n, const sq_evrec *r)
{
    snprintf(key, n, "%s/%llu", r->session, (unsigned long long)r->stream);
}

static bool put(sq_events *ev, sq_evrec *r, bool wake)
{
    bool ok;
    char key[64];
    sq__spin_lock(&ev->lock);
    ok = !ev->closed && (r->gone || ev->bytes + r->len <= EV_MAX_BYTES);
    if (ok && !r->gone && json_object_size(ev->lost)) {
        lost_key(key, sizeof key, r);
        ok = json_object_get(ev->lost, key) == NULL;
    }
    if (ok) {
        ev->bytes += r->len;
        sq__list_push_back(&ev->list, &r->link);
    }
    sq__spin_unlock(&ev->lock);
    if (!ok) {
        free(r);
        atomic_fetch_add(&ev->dropped, 1);
        return false;
    }
    if (wake)
        sq_notify_one(&ev->wake);
    return true;
}

bool sq__events_put(sq_events *ev, sq_evrec *rec, uint64_t seq)
{
    rec->seq = seq;
    return put(ev, rec, false);
}

void sq__events_kick(sq_events *ev)
{
    sq_notify_one(&ev->wake);
}

void sq_events_attach(sq_srv *s, sq_outq *q, const char *session, uint64_t stream)
{
    if (!s->events)
        return;
    snprintf(q->ev_session, sizeof q->ev_session, "%s", session);
    q->ev_stream = stream;
    q->ev = s->events;
}

void sq_events_session_ended(sq_srv *s, const char *session)
{
    if (!s->events || !session[0])
        return;
    sq_evrec *r = calloc(1, sizeof *r + 1);
    if (!r)
        return; /* its events go with the retention */
    snprintf(r->session, sizeof r->session, "%s", session);
    r->gone = true;
    put(s->events, r, true);
}

/* --------------------------------------------------------------- writer */

typedef struct write_job {
    sq_events *ev;
    sq_store_event *evs;
    size_t n;
    const char **gone;
    size_t ngone;
    char err[256];
    int rc;
    bool prune;
    uint64_t pruned;
} write_job;

static void *write_main(void *arg)
{
    write_job *j = arg;
    sq_store *st = j->ev->store;
    if (j->prune)
        j->rc = st->vt->events_prune(st, j->ev->retain / SQ_MSEC, &j->pruned);
    else
        j->rc = st->vt->events_write(st, j->evs, j->n, j->gone, j->ngone, j->err,
                                     sizeof j->err);
    return NULL;
}

/* Takes the next batch off the list into b (in order). */
static size_t take_batch(sq_events *ev, struct sq__list *b)
{
    size_t n = 0, bytes = 0;
    sq__spin_lock(&ev->lock);
    while (n < EV_BATCH && bytes < EV_BATCH_BYTES) {
        struct sq__link *l = sq__list_pop_front(&ev->list);
        if (!l)
            break;
        sq__list_push_back(b, l);
        bytes += sq__list_entry(l, sq_evrec, link)->len;
        n++;
    }
    sq__spin_unlock(&ev->lock);
    return n;
}

/* One commit of the batch b (n records): 0 or the store's error. */
static int commit(sq_events *ev, struct sq__list *b, size_t n, char *err, size_t errlen)
{
    write_job j = {.ev = ev};
    j.evs = calloc(n, sizeof *j.evs);
    j.gone = calloc(n, sizeof *j.gone);
    if (!j.evs || !j.gone) {
        free(j.evs);
        free(j.gone);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    sq__spin_lock(&ev->lock);
    bool any_lost = json_object_size(ev->lost) > 0;
    sq__spin_unlock(&ev->lock);
    SQ__LIST_FOREACH(l, b) {
        sq_evrec *r = sq__list_entry(l, sq_evrec, link);
        if (r->gone) {
            j.gone[j.ngone++] = r->session;
            continue;
        }
        if (any_lost) {
            /* Queued before its stream was lost: not stored either. */
            char key[64];
            lost_key(key, sizeof key, r);
            sq__spin_lock(&ev->lock);
            bool skip = json_object_get(ev->lost, key) != NULL;
            sq__spin_unlock(&ev->lock);
            if (skip)
                continue;
        }
        j.evs[j.n++] = (sq_store_event){.session = r->session, .stream = r->stream,
                                        .seq = r->seq, .data = r->data, .len = r->len};
    }
    int rc = sq_store_run(ev->store, write_main, &j);
    if (rc == 0)
        rc = j.rc;
    if (rc)
        snprintf(err, errlen, "%s", j.err[0] ? j.err : sq_strerror(rc));
    else
        atomic_fetch_add(&ev->stored, j.n);
    free(j.evs);
    free(j.gone);
    return rc;
}

/* Frees the batch b and takes its data off the writer's count.  `lost`:
 * it was not stored, so its streams are lost; else the lost streams of
 * the sessions it ended are forgotten. */
static void batch_done(sq_events *ev, struct sq__list *b, bool lost)
{
    size_t bytes = 0, n = 0;
    struct sq__link *l = sq__list_take_all(b);
    while (l) {
        struct sq__link *next = l->next;
        sq_evrec *r = sq__list_entry(l, sq_evrec, link);
        bytes += r->len;
        n += !r->gone;
        char key[64];
        sq__spin_lock(&ev->lock);
        if (lost && !r->gone) {
            lost_key(key, sizeof key, r);
            if (json_object_size(ev->lost) >= EV_LOST_MAX)
                ev->closed = true;
            else
                json_object_set_new(ev->lost, key, json_true());
        } else if (!lost && r->gone && json_object_size(ev->lost)) {
            size_t k = strlen(r->session);
            const char *name;
            json_t *v, *tmp;
            json_object_foreach_safe(ev->lost, tmp, name, v) {
                if (strncmp(name, r->session, k) == 0 && name[k] == '/')
                    json_object_del(ev->lost, name);
            }
        }
        sq__spin_unlock(&ev->lock);
        free(r);
        l = next;
    }
    sq__spin_lock(&ev->lock);
    ev->bytes -= bytes;
    sq__spin_unlock(&ev->lock);
    if (lost)
        atomic_fetch_add(&ev->failed, n);
}

static void *writer_main(void *arg)
{
    sq_events *ev = arg;
    struct sq__list batch;
    sq__list_init(&batch);
    size_t n = 0;
    int64_t backoff = EV_BACKOFF_MIN;
    int64_t refused_since = 0;   /* the batch's first refusal, or 0 */
    int64_t every = ev->retain / 2 < EV_PRUNE_EVERY ? ev->retain / 2 : EV_PRUNE_EVERY;
    if (every < SQ_SEC)
        every = SQ_SEC;
    int64_t next_prune = sq_now() + every;
    for (;;) {
        bool stopping = atomic_load(&ev->stopping);
        if (n == 0)
            n = take_batch(ev, &batch);
        if (n == 0) {
            if (stopping)
                break;
            if (sq_now() >= next_prune) {
                write_job j = {.ev = ev, .prune = true};
                if (sq_store_run(ev->store, write_main, &j) == 0 && j.rc == 0 && j.pruned)
                    sq_srv_log(ev->srv, SQ_MCP_DEBUG, "events", NULL,
                               "pruned %llu stored stream events past the retention",
                               (unsigned long long)j.pruned);
                next_prune = sq_now() + every;
                continue;
            }
            if (sq_notify_wait_until(&ev->wake, next_prune) == -ECANCELED)
                break;
            continue;
        }
        char err[256];
        int rc = commit(ev, &batch, n, err, sizeof err);
        if (rc == 0) {
            batch_done(ev, &batch, false);
            n = 0;
            backoff = EV_BACKOFF_MIN;
            refused_since = 0;
            continue;
        }
        /* -EIO: the database refused the batch itself (it may again). */
        if (rc == -EIO && !refused_since)
            refused_since = sq_now();
        if (stopping || rc == -ECANCELED || rc == -ENOMEM ||
            (refused_since && sq_now() - refused_since >= EV_REFUSED_FOR)) {
            sq_srv_log(ev->srv, SQ_MCP_WARNING, "events", NULL,
                       "%zu stream events not stored (their streams no longer are): %s",
                       n, err);
            batch_done(ev, &batch, true);
            n = 0;
            refused_since = 0;
            continue;
        }
        /* Tried again after a pause (a stop cuts it short). */
        int64_t until = sq_now() + backoff;
        while (!atomic_load(&ev->stopping) && sq_now() < until)
            sq_notify_wait_until(&ev->wake, until);
        backoff = backoff * 2 > EV_BACKOFF_MAX ? EV_BACKOFF_MAX : backoff * 2;
    }
    /* What is left (a stop after a failure): not stored. */
    sq__spin_lock(&ev->lock);
    ev->closed = true;
    sq__spin_unlock(&ev->lock);
    for (;;) {
        struct sq__list rest;
        sq__list_init(&rest);
        if (take_batch(ev, &rest) == 0)
            break;
        batch_done(ev, &rest, true);
    }
    if (n)
        batch_done(ev, &batch, true);
    return NULL;
}

int sq_events_start(sq_srv *s, char *err, size_t errlen)
{
    sq_store *st = sq_ctx_srv_store(s);
    if (!sq_store_keeps_events(st))
        return 0;
    sq_events *ev = calloc(1, sizeof *ev);
    if (!ev) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    ev->srv = s;
    ev->store = st;
    ev->lost = json_object();
    if (!ev->lost) {
        free(ev);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    sq__list_init(&ev->list);
    sq_notify_init(&ev->wake);
    ev->retain = s->cfg.session_idle > 0 ? s->cfg.session_idle : EV_RETAIN_DEFAULT;
    sq_spawn_opts so = {.name = "events-writer"};
    int rc = sq_spawn(&ev->writer, writer_main, ev, &so);
    if (rc) {
        snprintf(err, errlen, "cannot start the stream events' writer: %s", sq_strerror(rc));
        json_decref(ev->lost);
        free(ev);
        return rc;
    }
    ev->started = true;
    s->events = ev;
    return 0;
}

void sq_events_stop(sq_srv *s)
{
    sq_events *ev = s->events;
    if (!ev || !ev->started)
        return;
    sq_cancel_mask();
    atomic_store(&ev->stopping, true);
    sq_notify_one(&ev->wake);
    sq_join(ev->writer, NULL);
    ev->started = false;
    sq_cancel_unmask();
}

void sq_events_free(sq_srv *s)
{
    sq_events *ev = s->events;
    if (!ev)
        return;
    s->events = NULL;
    struct sq__link *l = sq__list_take_all(&ev->list);
    while (l) {
        struct sq__link *next = l->next;
        free(sq__list_entry(l, sq_evrec, link));
        l = next;
    }
    json_decref(ev->lost);
    free(ev);
}

/* --------------------------------------------------------------- replay */

typedef struct replay_job {
    sq_store *st;
    const char *session;
    uint64_t stream, after;
    uint64_t next;              /* the seq the next event must have */
    sq__strbuf *sse;
    int rc;
} replay_job;

/* Events are replayed only while their seqs follow on from `after`: the
 * retention prunes a stream's oldest events first, and a replay that
 * skipped the pruned ones would hide that they were missed. */
static int replay_row(void *arg, const sq_store_event *e)
{
    replay_job *j = arg;
    if (e->seq != j->next)
        return -ERANGE;
    j->next++;
    char id[48];
    snprintf(id, sizeof id, "%llu-%llu", (unsigned long long)e->stream,
             (unsigned long long)e->seq);
    sq_sse_event(j->sse, id, "message", -1, e->data, e->len);
    return sq__strbuf_failed(j->sse) ? -ENOMEM : 0;
}

static void *replay_main(void *arg)
{
    replay_job *j = arg;
    j->rc = j->st->vt->events_read(j->st, j->session, j->stream, j->after, replay_row, j);
    return NULL;
}

/* Whether id is one squirreld makes (sess_new: 32 lower-case hex). */
static bool session_id_ok(const char *id)
{
    size_t n = 0;
    for (; id[n]; n++)
        if (!((id[n] >= '0' && id[n] <= '9') || (id[n] >= 'a' && id[n] <= 'f')))
            return false;
    return n == 32;
}

int sq_events_replay(sq_srv *s, const char *session, uint64_t stream, uint64_t after,
                     sq__strbuf *sse)
{
    if (!s->events || !session_id_ok(session))
        return -ENOENT;
    replay_job j = {.st = s->events->store, .session = session, .stream = stream,
                    .after = after, .next = after + 1, .sse = sse};
    int rc = sq_store_run(j.st, replay_main, &j);
    if (rc == 0)
        rc = j.rc;
    /* The events right after `after` are gone: nothing to resume from. */
    if (rc == -ERANGE)
        rc = j.next == after + 1 ? -ENOENT : 0;
    return rc;
}
