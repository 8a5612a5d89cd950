/* Task groups (join sets): structured concurrency over sq_spawn.
 *
 * The group owns each member's join handle.  Members finish into a FIFO
 * of completed tasks; sq_group_next reaps from it in completion order.
 * Lock order: a member's own lock is never held while the group lock is
 * taken (task_finish releases it first), so cancel_all may abort members
 * while holding the group lock.
 */
#include "internal.h"

#include <stdlib.h>

struct sq_group {
    sq_runtime *rt;
    sq__spin lock;
    struct sq__list members;    /* unreaped, linked by grp_link */
    sq__task *done_head, *done_tail; /* finished, unreaped, by qnext */
    size_t count;
    sq__waiter *waiter;
};

int sq_group_create_in(sq_runtime *rt, sq_group **out)
{
    if (!rt || !out)
        return -EINVAL;
    sq_group *g = calloc(1, sizeof *g);
    if (!g)
        return -ENOMEM;
    g->rt = rt;
    *out = g;
    return 0;
}

int sq_group_create(sq_group **out)
{
    sq_runtime *rt = sq_runtime_current();
    if (!rt)
        return -EPERM;
    return sq_group_create_in(rt, out);
}

int(sq_group_spawn)(sq_group *g, sq_task_fn fn, void *arg,
                    const sq_spawn_opts *opts, uint64_t *id_out)
{
    return sq_group_spawn_at(g, fn, arg, opts, id_out, NULL);
}

int sq_group_spawn_at(sq_group *g, sq_task_fn fn, void *arg,
                      const sq_spawn_opts *opts, uint64_t *id_out,
                      const char *site)
{
    if (!g)
        return -EINVAL;
    sq__worker *w = sq__worker_current();
    sq__task *t;
    int rc = sq__spawn_in(g->rt, w && w->rt == g->rt ? w : NULL, &t, fn, arg,
                          opts, true, site);
    if (rc)
        return rc;
    t->group = g;
    sq__spin_lock(&g->lock);
    sq__list_push_front(&g->members, &t->grp_link);
    g->count++;
    sq__spin_unlock(&g->lock);
    if (id_out)
        *id_out = atomic_load(&t->id);
    sq__sched_push_new(g->rt, t);
    return 0;
}

/* Called by a member as it finishes (not under its own lock). */
void sq__group_member_done(sq_group *g, sq__task *t)
{
    sq__spin_lock(&g->lock);
    t->qnext = NULL;
    if (g->done_tail)
        g->done_tail->qnext = t;
    else
        g->done_head = t;
    g->done_tail = t;
    sq__waiter *w = g->waiter;
    g->waiter = NULL;
    if (w)
        sq__waiter_wake(w);
    sq__spin_unlock(&g->lock);
}

/* Removes the first finished member.  Called with g->lock held. */
static sq__task *take_done(sq_group *g)
{
    sq__task *t = g->done_head;
    g->done_head = t->qnext;
    if (!g->done_head)
        g->done_tail = NULL;
    sq__list_remove(&g->members, &t->grp_link);
    g->count--;
    return t;
}

int sq_group_reap_until(sq_group *g, uint64_t *id_out, void **result,
                        int *status_out, int64_t deadline)
{
    if (!g || deadline < 0)
        return -EINVAL;
    sq__spin_lock(&g->lock);
    while (!g->done_head) {
        if (g->count == 0) {
            sq__spin_unlock(&g->lock);
            return -ENOENT;
        }
        if (g->waiter) {
            sq__spin_unlock(&g->lock);
            return -EBUSY;
        }
        sq__waiter w;
        sq__waiter_init_for(&w, SQ__WAIT_GROUP, g);
        g->waiter = &w;
        sq__spin_unlock(&g->lock);
        int rc = sq__waiter_wait(&w, deadline, true);
        sq__spin_lock(&g->lock);
        if (g->waiter == &w)
            g->waiter = NULL;
        if (rc) {
            /* The caller's own -ECANCELED or -ETIMEDOUT: nothing reaped,
             * even if a member finished meanwhile (the next call gets it). */
            sq__spin_unlock(&g->lock);
            return rc;
        }
    }
    sq__task *t = take_done(g);
    sq__spin_unlock(&g->lock);

    sq__spin_lock(&t->lock);
    t->handle = SQ__H_CONSUMED;
    uint64_t id = atomic_load(&t->id);
    void *res = t->result;
    int status = t->status;
    sq__spin_unlock(&t->lock);
    sq__task_release(t);
    if (id_out)
        *id_out = id;
    if (result)
        *result = res;
    if (status_out)
        *status_out = status;
    return 0;
}

int sq_group_reap(sq_group *g, uint64_t *id_out, void **result,
                  int *status_out)
{
    return sq_group_reap_until(g, id_out, result, status_out, SQ_FOREVER);
}

int sq_group_next_until(sq_group *g, uint64_t *id_out, void **result,
                        int64_t deadline)
{
    int status = 0;
    int rc = sq_group_reap_until(g, id_out, result, &status, deadline);
    return rc ? rc : status;
}

int sq_group_next(sq_group *g, uint64_t *id_out, void **result)
{
    return sq_group_next_until(g, id_out, result, SQ_FOREVER);
}

size_t sq_group_size(sq_group *g)
{
    sq__spin_lock(&g->lock);
    size_t n = g->count;
    sq__spin_unlock(&g->lock);
    return n;
}

void sq_group_cancel_all(sq_group *g)
{
    sq__spin_lock(&g->lock);
    SQ__LIST_FOREACH(l, &g->members)
        sq__task_abort(sq__task_of_link(l, grp_link));
    sq__spin_unlock(&g->lock);
}

int sq_group_wait_all(sq_group *g)
{
    for (;;) {
        /* Members' own outcomes are dropped; an error is the caller's
         * (its abort, -EBUSY, -EINVAL).  Not sq_group_next plus
         * sq_cancelled(): that is true for a masked caller too, whose
         * -ECANCELED can only be a member's. */
        int rc = sq_group_reap(g, NULL, NULL, NULL);
        if (rc == -ENOENT)
            return 0;
        if (rc)
            return rc;
    }
}

void sq_group_destroy(sq_group *g)
{
    if (!g)
        return;
    bool masked = sq_cancel_mask() == 0;
    sq_group_cancel_all(g);
    int rc;
    while ((rc = sq_group_reap(g, NULL, NULL, NULL)) != -ENOENT)
        if (rc == -EBUSY)
            sq_yield(); /* another task is reaping: let it */
    if (masked)
        sq_cancel_unmask();
    free(g);
}
