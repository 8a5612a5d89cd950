/* The outgoing queue (srv.h): messages waiting for one writer.
 *
 * Producers (request tasks, the registry's notifier) push under a spin
 * lock held for a list insertion, never across a wait, and wake the
 * writer with sq_notify_one, which stores the wake-up if the writer is
 * not waiting yet: the writer takes everything there is, then waits, and
 * a push between its last take and its wait is not lost.  The byte limit
 * keeps a client that does not read from holding unbounded memory. */
#include "srv.h"
#include "events.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

sq_outq *sq_outq_new(size_t max_bytes, bool keep)
{
    sq_outq *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    q->max_bytes = max_bytes ? max_bytes : (size_t)16 << 20;
    q->keep = keep;
    q->next_seq = 1;
    sq_notify_init(&q->ready);
    atomic_init(&q->refs, 1);
    return q;
}

sq_outq *sq_outq_ref(sq_outq *q)
{
    atomic_fetch_add_explicit(&q->refs, 1, memory_order_relaxed);
    return q;
}

static void free_list(struct sq__list *l)
{
    struct sq__link *n = sq__list_take_all(l);
    while (n) {
        struct sq__link *next = n->next;
        free(sq__list_entry(n, sq_outmsg, link));
        n = next;
    }
}

void sq_outq_unref(sq_outq *q)
{
    if (!q || atomic_fetch_sub_explicit(&q->refs, 1, memory_order_acq_rel) != 1)
        return;
    free_list(&q->msgs);
    free_list(&q->kept);
    free(q);
}

int sq_outq_push(sq_outq *q, const char *text, size_t len, bool final)
{
    sq_outmsg *m = malloc(sizeof *m + len + 1);
    if (!m)
        return -ENOMEM;
    memcpy(m->text, text, len);
    m->text[len] = '\0';
    m->len = len;
    m->final = final;
    /* A stream kept in a shared store (events.h): its events go to the
     * store's writer too, but a response that comes first is answered
     * as plain JSON (no event, nothing to resume), and a text with a NUL
     * cannot be stored (nor can what follows it then). */
    bool store = q->ev && len;
    if (store && final) {
        sq__spin_lock(&q->lock);
        store = q->next_seq > 1;
        sq__spin_unlock(&q->lock);
    }
    sq_evrec *ev = store ? sq__events_rec_new(q, text, len) : NULL;
    bool kick = false;
    sq__spin_lock(&q->lock);
    int rc = 0;
    if (store && (!ev || memchr(text, '\0', len)))
        q->ev_broken = true;
    if (q->closed) {
        rc = -EPIPE;
    } else if (q->bytes + len > q->max_bytes && !final) {
        /* A final message is let through: a request is answered even
         * past the limit, so none waits forever for its response. */
        q->dropped++;
        rc = -ENOBUFS;
    } else {
        m->seq = q->next_seq++;
        q->bytes += len;
        if (final)
            q->done = true;
        sq__list_push_back(&q->msgs, &m->link);
        if (ev && !q->ev_broken) {
            kick = sq__events_put(q->ev, ev, m->seq);
            q->ev_broken = !kick;
            ev = NULL; /* the writer's now, or freed */
        }
    }
    sq__spin_unlock(&q->lock);
    free(ev);
    if (kick)
        sq__events_kick(q->ev);
    if (rc) {
        free(m);
        return rc;
    }
    sq_notify_one(&q->ready);
    return 0;
}

sq_outmsg *sq_outq_take(sq_outq *q)
{
    sq__spin_lock(&q->lock);
    struct sq__link *l = sq__list_pop_front(&q->msgs);
    sq_outmsg *m = l ? sq__list_entry(l, sq_outmsg, link) : NULL;
    if (m) {
        q->bytes -= m->len;
        if (q->keep) {
            /* Kept for a replay; the oldest go once past the limit. */
            sq__list_push_back(&q->kept, &m->link);
            q->kept_bytes += m->len;
            while (q->kept_bytes > q->max_bytes && q->kept.head != &m->link) {
                sq_outmsg *old = sq__list_entry(sq__list_pop_front(&q->kept),
                                                sq_outmsg, link);
                q->kept_bytes -= old->len;
                free(old);
            }
        }
    }
    sq__spin_unlock(&q->lock);
    return m;
}

int sq_outq_wait(sq_outq *q, int64_t deadline)
{
    sq__spin_lock(&q->lock);
    bool ready = !sq__list_empty(&q->msgs) || q->closed;
    sq__spin_unlock(&q->lock);
    if (ready)
        return 0;
    return sq_notify_wait_until(&q->ready, deadline);
}

void sq_outq_close(sq_outq *q)
{
    sq__spin_lock(&q->lock);
    q->closed = true;
    sq__spin_unlock(&q->lock);
    sq_notify_one(&q->ready);
}

bool sq_outq_is_closed(sq_outq *q)
{
    sq__spin_lock(&q->lock);
    bool c = q->closed;
    sq__spin_unlock(&q->lock);
    return c;
}

void sq_outq_kick(sq_outq *q)
{
    sq_notify_one(&q->ready);
}

void sq_outq_replay(sq_outq *q, uint64_t after,
                    void (*fn)(const sq_outmsg *m, void *arg), void *arg)
{
    sq__spin_lock(&q->lock);
    SQ__LIST_FOREACH(l, &q->kept) {
        const sq_outmsg *m = sq__list_entry(l, sq_outmsg, link);
        if (m->seq > after)
            fn(m, arg);
    }
    sq__spin_unlock(&q->lock);
}
