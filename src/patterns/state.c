/* The shared state manager (squirrel/state.h).
 *
 * Pieces.
 *  - Snapshots: malloc'd, reference-counted (value, version).  Each keeps
 *    its own copy of the destroy callback, so it may outlive the state.
 *  - _update (sq_mutex): serialises updates and registrations; the user's
 *    functions run under it.  _cur_lock (sq_rwlock): readers take a read
 *    lock only to count a reference to _cur; the update swaps _cur under
 *    the write lock.  Lock order: _update, then _cur_lock.  Nothing else
 *    of the state is a lock, and no lock is held across a wait.
 *  - The listener list is copy-on-write (struct sq__state_set, counted):
 *    replaced under _update; an updater takes a reference to the list of
 *    the moment it commits (under _update), so the list it delivers to is
 *    exactly the listeners registered before its version.
 *  - Delivery order, the "turn": every snapshot made by an update has a
 *    semaphore `turn` (0 permits) and a `next` pointer.  Under _update the
 *    updater of version v links its snapshot into next of version v-1's
 *    snapshot by a CAS from NULL; if v-1's delivery has already finished
 *    (next == DONE) the CAS fails and v may deliver at once, else v waits
 *    on its own turn.  The deliverer of v-1, when done, swaps DONE into
 *    its next and releases the turn of whatever was linked there.  So the
 *    deliveries run one after another in version order, and nobody holds
 *    a lock while delivering (or while waiting for a turn).  The
 *    successor's snapshot is alive when the predecessor releases its
 *    turn: its updater holds a reference until after its own turn.
 *  - A listener: a ring of snapshot references under a small sq_mutex
 *    (never held across a wait), an sq_notify "items" the receiver waits
 *    on, an sq_notify "space" a WAIT deliverer waits on.  There is only
 *    one deliverer at a time (the turn) and one receiver.  Both check the
 *    ring under the lock and wait on the notify after unlocking; a
 *    notify_one sent in between is stored, so no wake-up is lost, and a
 *    stale stored one only costs one more look.
 *  - Cancellation: from the moment an update holds _update, the task's
 *    cancellation is masked (a committed update must be published and
 *    delivered) except around the wait for room in a WAIT listener, whose
 *    -ECANCELED counts as "time ran out".
 */
#include "squirrel/state.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct sq_state_snap {
    atomic_size_t refs;
    uint64_t version;
    void *value;
    void (*destroy)(void *value, void *user);
    void *user;
    sq_sem turn;                         /* delivery turn (see above) */
    _Atomic(struct sq_state_snap *) next; /* successor, or DONE */
};

/* next of a snapshot whose delivery is finished (or that has none). */
static struct sq_state_snap done_mark;
#define DONE (&done_mark)

struct sq_state_listener {
    atomic_size_t refs;      /* the list's and the receiver's */
    sq_mutex lock;           /* over the ring and `closed` */
    sq_notify items;         /* the receiver waits here */
    sq_notify space;         /* a WAIT deliverer waits here */
    sq_state_snap **ring;
    size_t cap, head, len;
    sq_state_full on_full;
    int64_t wait_ns;
    uint64_t from;           /* versions <= from are not for it */
    atomic_bool gone;        /* the receiver unlistened */
    atomic_bool disconnected; /* cut off by its policy */
    bool closed;             /* the state was destroyed */
    _Atomic uint64_t dropped;
};

struct sq__state_set {
    atomic_size_t refs;
    size_t n;
    sq_state_listener *l[];
};

/* ------------------------------------------------------------ helpers */

/* Masks the calling task's cancellation; false outside a task (where
 * nothing is cancelled anyway). */
static bool mask(void)
{
    return sq_cancel_mask() == 0;
}

static void unmask(bool masked)
{
    if (masked)
        sq_cancel_unmask();
}

/* Takes one of our internal locks (a mutex, the current value's write
 * lock, a delivery turn) with `call`, a lock call without a deadline, and
 * returns holding it: the calling task's cancellation is masked around it
 * (masks nest, so callers that mask already may use it too), which leaves
 * the call no way to fail.  The holds of these locks are short, and a
 * committed update must be published whatever happens to its task.  A
 * macro, so that each lock call keeps its own site for the checks. */
#define TAKE_NOCANCEL(call)                                            \
    do {                                                               \
        bool masked_ = mask();                                         \
        while ((call) != 0)                                            \
            ; /* not reached: cancellation is masked, no deadline */   \
        unmask(masked_);                                               \
    } while (0)

static int64_t deadline_after(int64_t ns)
{
    if (ns == SQ_FOREVER)
        return SQ_FOREVER;
    int64_t now = sq_now();
    return ns > SQ_FOREVER - now ? SQ_FOREVER : now + ns;
}

/* ---------------------------------------------------------- snapshots */

static void snap_setup(sq_state_snap *s, const sq_state_ops *ops,
                       uint64_t version, void *value, size_t refs)
{
    atomic_init(&s->refs, refs);
    s->version = version;
    s->value = value;
    s->destroy = ops->destroy;
    s->user = ops->user;
    sq_sem_init(&s->turn, 0);
    atomic_init(&s->next, NULL);
}

const void *sq_state_snap_value(const sq_state_snap *s)
{
    return s->value;
}

uint64_t sq_state_snap_version(const sq_state_snap *s)
{
    return s->version;
}

sq_state_snap *sq_state_snap_ref(sq_state_snap *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

void sq_state_snap_release(sq_state_snap *s)
{
    if (!s)
        return;
    if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    if (s->destroy)
        s->destroy(s->value, s->user);
    free(s);
}

/* ---------------------------------------------------------- listeners */

static void listener_unref(sq_state_listener *l)
{
    if (atomic_fetch_sub_explicit(&l->refs, 1, memory_order_acq_rel) != 1)
        return;
    /* Normally empty (unlisten drained it); be safe. */
    for (size_t i = 0; i < l->len; i++)
        sq_state_snap_release(l->ring[(l->head + i) % l->cap]);
    free(l->ring);
    free(l);
}

static bool listener_dead(sq_state_listener *l)
{
    return atomic_load_explicit(&l->gone, memory_order_relaxed) ||
           atomic_load_explicit(&l->disconnected, memory_order_relaxed);
}

static void set_unref(struct sq__state_set *set)
{
    if (!set ||
        atomic_fetch_sub_explicit(&set->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < set->n; i++)
        listener_unref(set->l[i]);
    free(set);
}

/* Under _update: a new list of the live listeners of the current one, plus
 * `add` if not NULL.  Returns 0 and the list to release after unlocking in
 * *old (NULL if the list was not replaced), or -ENOMEM (nothing changed;
 * for a prune alone that is not an error: the dead ones go next time). */
static int set_rebuild_locked(sq_state *st, sq_state_listener *add,
                              struct sq__state_set **old)
{
    struct sq__state_set *cur = st->_set;
    size_t n = cur ? cur->n : 0, live = 0;
    *old = NULL;
    for (size_t i = 0; i < n; i++)
        live += !listener_dead(cur->l[i]);
    if (live == n && !add)
        return 0;
    size_t m = live + (add != NULL);
    struct sq__state_set *ns = NULL;
    if (m) {
        ns = malloc(sizeof *ns + m * sizeof ns->l[0]);
        if (!ns)
            return -ENOMEM;
        atomic_init(&ns->refs, 1);
        ns->n = 0;
        for (size_t i = 0; i < n; i++) {
            sq_state_listener *l = cur->l[i];
            if (listener_dead(l))
                continue;
            atomic_fetch_add_explicit(&l->refs, 1, memory_order_relaxed);
            ns->l[ns->n++] = l;
        }
        if (add)
            ns->l[ns->n++] = add; /* the caller's reference for the list */
    }
    st->_set = ns;
    atomic_store_explicit(&st->_nlisteners, m, memory_order_relaxed);
    *old = cur;
    return 0;
}

/* Deliverer side: queues s in l according to l's policy.  Cancellation is
 * masked by the caller. */
static void listener_send(sq_state_listener *l, sq_state_snap *s)
{
    int64_t deadline = -1;
    bool timed_out = false;
    sq_state_snap *drop = NULL;
    TAKE_NOCANCEL(sq_mutex_lock(&l->lock));
    for (;;) {
        if (l->closed || listener_dead(l))
            break;
        if (l->len < l->cap) {
            l->ring[(l->head + l->len) % l->cap] = sq_state_snap_ref(s);
            l->len++;
            break;
        }
        if (l->on_full == SQ_STATE_DROP_OLDEST) {
            drop = l->ring[l->head];
            l->ring[l->head] = sq_state_snap_ref(s);
            l->head = (l->head + 1) % l->cap;
            atomic_fetch_add_explicit(&l->dropped, 1, memory_order_relaxed);
            break;
        }
        if (l->on_full == SQ_STATE_DISCONNECT || l->wait_ns == 0 ||
            timed_out) {
            atomic_store_explicit(&l->disconnected, true,
                                  memory_order_relaxed);
            break;
        }
        /* SQ_STATE_WAIT: wait for room without holding anything. */
        if (deadline < 0)
            deadline = deadline_after(l->wait_ns);
        sq_mutex_unlock(&l->lock);
        sq_cancel_unmask(); /* harmless -EPERM on a plain thread */
        int rc = sq_notify_wait_until(&l->space, deadline);
        sq_cancel_mask();
        TAKE_NOCANCEL(sq_mutex_lock(&l->lock));
        if (rc != 0)
            timed_out = true; /* one more look: room may have just come */
    }
    sq_mutex_unlock(&l->lock);
    sq_notify_one(&l->items);
    sq_state_snap_release(drop);
}

/* ------------------------------------------------------------ the state */

static const sq_state_ops no_ops = {NULL, NULL, NULL};

int sq_state_init(sq_state *st, void *initial, const sq_state_ops *ops)
{
    if (!st)
        return -EINVAL;
    if (!ops)
        ops = &no_ops;
    sq_state_snap *s = malloc(sizeof *s);
    if (!s)
        return -ENOMEM;
    snap_setup(s, ops, 0, initial, 1);
    atomic_store_explicit(&s->next, DONE, memory_order_relaxed);
    sq_mutex_init_named(&st->_update, "sq_state.update");
    sq_rwlock_init_named(&st->_cur_lock, "sq_state.current");
    st->_cur = s;
    atomic_init(&st->_version, 0);
    st->_set = NULL;
    atomic_init(&st->_nlisteners, 0);
    atomic_init(&st->_busy, 0);
    st->_ops = *ops;
    return 0;
}

int sq_state_destroy(sq_state *st)
{
    if (!st)
        return -EINVAL;
    if (atomic_load_explicit(&st->_busy, memory_order_acquire) != 0 ||
        sq_mutex_destroy(&st->_update) != 0 ||
        sq_rwlock_destroy(&st->_cur_lock) != 0)
        return -EBUSY;
    struct sq__state_set *set = st->_set;
    for (size_t i = 0; set && i < set->n; i++) {
        sq_state_listener *l = set->l[i];
        TAKE_NOCANCEL(sq_mutex_lock(&l->lock));
        l->closed = true;
        sq_mutex_unlock(&l->lock);
        sq_notify_one(&l->items);
    }
    st->_set = NULL;
    atomic_store_explicit(&st->_nlisteners, 0, memory_order_relaxed);
    set_unref(set);
    sq_state_snap_release(st->_cur);
    st->_cur = NULL;
    return 0;
}

uint64_t sq_state_version(sq_state *st)
{
    return atomic_load_explicit(&st->_version, memory_order_acquire);
}

size_t sq_state_listener_count(sq_state *st)
{
    return atomic_load_explicit(&st->_nlisteners, memory_order_relaxed);
}

/* ------------------------------------------------------------- reading */

static int read_until(sq_state *st, sq_state_snap **out, int64_t deadline)
{
    int rc = sq_rwlock_read_lock_until(&st->_cur_lock, deadline);
    if (rc)
        return rc;
    sq_state_snap *s = sq_state_snap_ref(st->_cur);
    sq_rwlock_read_unlock(&st->_cur_lock);
    *out = s;
    return 0;
}

int sq_state_read(sq_state *st, sq_state_snap **out)
{
    if (!st || !out)
        return -EINVAL;
    return read_until(st, out, SQ_FOREVER);
}

int sq_state_read_copy(sq_state *st, void **out, uint64_t *version)
{
    if (!st || !out)
        return -EINVAL;
    if (!st->_ops.copy)
        return -ENOTSUP;
    sq_state_snap *s;
    int rc = read_until(st, &s, SQ_FOREVER);
    if (rc)
        return rc;
    void *copy = NULL;
    rc = st->_ops.copy(s->value, &copy, st->_ops.user);
    if (rc >= 0) {
        rc = 0;
        *out = copy;
        if (version)
            *version = s->version;
    }
    sq_state_snap_release(s);
    return rc;
}

/* ------------------------------------------------------------ updating */

/* After the commit of s (version v), with `set` the listeners of the
 * moment: wait for v-1's delivery to finish if it has not, deliver v,
 * pass the turn to v+1.  Cancellation is masked by the caller. */
static void deliver(sq_state_snap *s, bool wait_turn,
                    struct sq__state_set *set)
{
    if (wait_turn)
        TAKE_NOCANCEL(sq_sem_acquire(&s->turn, 1));
    for (size_t i = 0; set && i < set->n; i++) {
        sq_state_listener *l = set->l[i];
        if (s->version > l->from && !listener_dead(l))
            listener_send(l, s);
    }
    sq_state_snap *next = atomic_exchange_explicit(&s->next, DONE,
                                                   memory_order_acq_rel);
    if (next)
        sq_sem_release(&next->turn, 1);
}

int sq_state_change_until(sq_state *st, sq_state_need_fn need,
                          sq_state_update_fn update, sq_state_modify_fn modify,
                          void *arg, int64_t deadline, uint64_t *version)
{
    if (!st || !update == !modify || deadline < 0)
        return -EINVAL;
    if (modify && !st->_ops.copy)
        return -ENOTSUP;

    /* Phase one: decide on a snapshot, without the update lock. */
    if (need) {
        sq_state_snap *s;
        int rc = read_until(st, &s, deadline);
        if (rc)
            return rc;
        bool needed = need(s->value, arg);
        uint64_t v = s->version;
        sq_state_snap_release(s);
        if (!needed) {
            if (version)
                *version = v;
            return 0;
        }
    }

    /* Phase two, under the update lock.  The snapshot is allocated first,
     * so nothing can fail once the function has succeeded. */
    sq_state_snap *ns = malloc(sizeof *ns);
    if (!ns)
        return -ENOMEM;
    atomic_fetch_add_explicit(&st->_busy, 1, memory_order_relaxed);
    int rc = sq_mutex_lock_until(&st->_update, deadline);
    if (rc) {
        free(ns);
        atomic_fetch_sub_explicit(&st->_busy, 1, memory_order_release);
        return rc;
    }
    bool masked = mask();
    sq_state_snap *cur = st->_cur; /* stable while we hold _update */
    void *value = NULL, *discard = NULL;
    bool not_needed = false;
    if (need && !need(cur->value, arg)) {
        rc = 0;
        not_needed = true;
    } else if (update) {
        rc = update(cur->value, &value, arg);
        if (rc >= 0 && value == cur->value && st->_ops.destroy)
            rc = -EINVAL;
    } else {
        rc = st->_ops.copy(cur->value, &value, st->_ops.user);
        if (rc >= 0) {
            rc = modify(value, arg);
            if (rc < 0)
                discard = value;
        }
    }
    if (rc < 0 || not_needed) {
        uint64_t v = cur->version;
        sq_mutex_unlock(&st->_update);
        unmask(masked);
        free(ns);
        if (discard && st->_ops.destroy)
            st->_ops.destroy(discard, st->_ops.user);
        atomic_fetch_sub_explicit(&st->_busy, 1, memory_order_release);
        if (rc < 0)
            return rc;
        if (version)
            *version = v;
        return 0;
    }

    /* Commit: the state's reference and ours (until our delivery ends). */
    uint64_t v = cur->version + 1;
    snap_setup(ns, &st->_ops, v, value, 2);
    sq_state_snap *expect = NULL;
    bool wait_turn = atomic_compare_exchange_strong_explicit(
        &cur->next, &expect, ns, memory_order_acq_rel, memory_order_acquire);
    struct sq__state_set *old_set;
    set_rebuild_locked(st, NULL, &old_set); /* drop dead listeners */
    struct sq__state_set *set = st->_set;
    if (set)
        atomic_fetch_add_explicit(&set->refs, 1, memory_order_relaxed);
    TAKE_NOCANCEL(sq_rwlock_write_lock(&st->_cur_lock));
    st->_cur = ns;
    atomic_store_explicit(&st->_version, v, memory_order_release);
    sq_rwlock_write_unlock(&st->_cur_lock);
    sq_mutex_unlock(&st->_update);

    sq_state_snap_release(cur); /* the state's reference to the old one */
    set_unref(old_set);
    deliver(ns, wait_turn, set);
    set_unref(set);
    sq_state_snap_release(ns);
    unmask(masked);
    atomic_fetch_sub_explicit(&st->_busy, 1, memory_order_release);
    if (version)
        *version = v;
    return 1;
}

int sq_state_update(sq_state *st, sq_state_update_fn fn, void *arg,
                    uint64_t *version)
{
    int rc = sq_state_change_until(st, NULL, fn, NULL, arg, SQ_FOREVER,
                                   version);
    return rc > 0 ? 0 : rc;
}

int sq_state_modify(sq_state *st, sq_state_modify_fn fn, void *arg,
                    uint64_t *version)
{
    int rc = sq_state_change_until(st, NULL, NULL, fn, arg, SQ_FOREVER,
                                   version);
    return rc > 0 ? 0 : rc;
}

int sq_state_update_if(sq_state *st, sq_state_need_fn need,
                       sq_state_update_fn fn, void *arg, uint64_t *version)
{
    return sq_state_change_until(st, need, fn, NULL, arg, SQ_FOREVER,
                                 version);
}

int sq_state_modify_if(sq_state *st, sq_state_need_fn need,
                       sq_state_modify_fn fn, void *arg, uint64_t *version)
{
    return sq_state_change_until(st, need, NULL, fn, arg, SQ_FOREVER,
                                 version);
}

/* ----------------------------------------------------------- listening */

int sq_state_listen(sq_state *st, const sq_state_listen_opts *opts,
                    sq_state_listener **out, sq_state_snap **start)
{
    static const sq_state_listen_opts defaults = SQ_STATE_LISTEN_DEFAULT;
    if (!st || !out)
        return -EINVAL;
    if (!opts)
        opts = &defaults;
    size_t cap = opts->capacity ? opts->capacity : 16;
    if (cap > SQ_STATE_MAX_CAPACITY || opts->wait_ns < 0 ||
        (opts->on_full != SQ_STATE_WAIT &&
         opts->on_full != SQ_STATE_DROP_OLDEST &&
         opts->on_full != SQ_STATE_DISCONNECT))
        return -EINVAL;
    sq_state_listener *l = calloc(1, sizeof *l);
    sq_state_snap **ring = malloc(cap * sizeof *ring);
    if (!l || !ring) {
        free(l);
        free(ring);
        return -ENOMEM;
    }
    atomic_init(&l->refs, 2); /* the list's and the receiver's */
    sq_mutex_init_named(&l->lock, "sq_state.listener");
    sq_notify_init(&l->items);
    sq_notify_init(&l->space);
    l->ring = ring;
    l->cap = cap;
    l->on_full = opts->on_full;
    l->wait_ns = opts->wait_ns;
    atomic_init(&l->gone, false);
    atomic_init(&l->disconnected, false);
    atomic_init(&l->dropped, 0);

    atomic_fetch_add_explicit(&st->_busy, 1, memory_order_relaxed);
    int rc = sq_mutex_lock(&st->_update);
    if (rc == 0) {
        struct sq__state_set *old;
        rc = set_rebuild_locked(st, l, &old);
        if (rc == 0) {
            l->from = st->_cur->version;
            if (start)
                *start = sq_state_snap_ref(st->_cur);
        }
        sq_mutex_unlock(&st->_update);
        if (rc == 0)
            set_unref(old);
    }
    atomic_fetch_sub_explicit(&st->_busy, 1, memory_order_release);
    if (rc) {
        free(ring);
        free(l);
        return rc;
    }
    *out = l;
    return 0;
}

/* Under l->lock: takes the oldest queued notification, or returns the
 * reason there is none (-EAGAIN: none yet). */
static int take_locked(sq_state_listener *l, sq_state_snap **out)
{
    if (l->len) {
        *out = l->ring[l->head];
        l->head = (l->head + 1) % l->cap;
        l->len--;
        return 0;
    }
    if (atomic_load_explicit(&l->disconnected, memory_order_relaxed))
        return -ECONNRESET;
    if (l->closed || atomic_load_explicit(&l->gone, memory_order_relaxed))
        return -EPIPE;
    return -EAGAIN;
}

int sq_state_recv_until(sq_state_listener *l, sq_state_snap **out,
                        int64_t deadline)
{
    if (!l || !out || deadline < 0)
        return -EINVAL;
    for (;;) {
        int rc = sq_mutex_lock_until(&l->lock, deadline);
        if (rc)
            return rc;
        rc = take_locked(l, out);
        sq_mutex_unlock(&l->lock);
        if (rc == 0) {
            if (l->on_full == SQ_STATE_WAIT)
                sq_notify_one(&l->space);
            return 0;
        }
        if (rc != -EAGAIN)
            return rc;
        rc = sq_notify_wait_until(&l->items, deadline);
        if (rc)
            return rc; /* nothing consumed: a late arrival stays queued */
    }
}

int sq_state_recv(sq_state_listener *l, sq_state_snap **out)
{
    return sq_state_recv_until(l, out, SQ_FOREVER);
}

int sq_state_try_recv(sq_state_listener *l, sq_state_snap **out)
{
    if (!l || !out)
        return -EINVAL;
    if (sq_mutex_try_lock(&l->lock) != 0)
        return -EAGAIN;
    int rc = take_locked(l, out);
    sq_mutex_unlock(&l->lock);
    if (rc == 0 && l->on_full == SQ_STATE_WAIT)
        sq_notify_one(&l->space);
    return rc;
}

uint64_t sq_state_listener_dropped(sq_state_listener *l)
{
    return atomic_load_explicit(&l->dropped, memory_order_relaxed);
}

bool sq_state_listener_disconnected(sq_state_listener *l)
{
    return atomic_load_explicit(&l->disconnected, memory_order_relaxed);
}

void sq_state_unlisten(sq_state_listener *l)
{
    if (!l)
        return;
    TAKE_NOCANCEL(sq_mutex_lock(&l->lock));
    atomic_store_explicit(&l->gone, true, memory_order_relaxed);
    size_t head = l->head, len = l->len;
    l->len = 0;
    sq_mutex_unlock(&l->lock);
    /* No deliverer queues anything once `gone` is set (they look under the
     * lock), so the slots taken out above are ours: release them (and run
     * the destroy callbacks) without the lock. */
    for (size_t i = 0; i < len; i++)
        sq_state_snap_release(l->ring[(head + i) % l->cap]);
    sq_notify_one(&l->space); /* a WAIT deliverer stops waiting */
    listener_unref(l);
}
