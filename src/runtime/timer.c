/* Timers: one 4-ary min-heap per runtime, ordered by deadline.
 *
 * Every deadline (sleep, join, I/O, lock) arms the timer embedded in the
 * waiting task, and most are disarmed before they fire, so both arm and
 * disarm must be cheap: O(log n) with a shallow 4-ary heap and no
 * allocation (the heap array grows by doubling and is never shrunk).  The
 * heap is guarded by a spin lock: critical sections are a few dozen
 * instructions.  A timing wheel would make arm/disarm O(1) at the cost of
 * coarser resolution; the heap keeps nanosecond deadlines exact.
 *
 * Firing happens in the driver (sq__driver_poll), which sleeps in epoll
 * until the earliest deadline.  Arming a deadline earlier than the one the
 * driver sleeps to wakes it so it can shorten its sleep.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>

static inline void heap_set(sq_runtime *rt, uint32_t i, sq__timer *tm)
{
    rt->heap[i] = tm;
    tm->index = i;
}

static void sift_up(sq_runtime *rt, uint32_t i)
{
    sq__timer *tm = rt->heap[i];
    while (i > 0) {
        uint32_t parent = (i - 1) / 4;
        if (rt->heap[parent]->deadline <= tm->deadline)
            break;
        heap_set(rt, i, rt->heap[parent]);
        i = parent;
    }
    heap_set(rt, i, tm);
}

static void sift_down(sq_runtime *rt, uint32_t i)
{
    sq__timer *tm = rt->heap[i];
    for (;;) {
        uint32_t c = 4 * i + 1, best = i;
        int64_t bd = tm->deadline;
        for (uint32_t k = c; k < c + 4 && k < rt->heap_len; k++)
            if (rt->heap[k]->deadline < bd) {
                best = k;
                bd = rt->heap[k]->deadline;
            }
        if (best == i)
            break;
        heap_set(rt, i, rt->heap[best]);
        i = best;
    }
    heap_set(rt, i, tm);
}

static void heap_remove(sq_runtime *rt, uint32_t i)
{
    sq__timer *last = rt->heap[--rt->heap_len];
    rt->heap[i]->index = SQ__TIMER_IDLE;
    if (i == rt->heap_len)
        return;
    heap_set(rt, i, last);
    if (i > 0 && rt->heap[(i - 1) / 4]->deadline > last->deadline)
        sift_up(rt, i);
    else
        sift_down(rt, i);
}

static void publish_next(sq_runtime *rt)
{
    atomic_store(&rt->timer_next,
                 rt->heap_len ? rt->heap[0]->deadline : INT64_MAX);
}

int sq__timer_arm(sq_runtime *rt, sq__timer *tm, int64_t deadline)
{
    sq__spin_lock(&rt->timer_lock);
    if (rt->heap_len == rt->heap_cap) {
        uint32_t cap = rt->heap_cap ? rt->heap_cap * 2 : 1024;
        sq__timer **h = realloc(rt->heap, cap * sizeof *h);
        if (!h) {
            sq__spin_unlock(&rt->timer_lock);
            return -ENOMEM;
        }
        rt->heap = h;
        rt->heap_cap = cap;
    }
    tm->deadline = deadline;
    rt->heap[rt->heap_len] = tm;
    sift_up(rt, rt->heap_len++);
    bool earliest = rt->heap[0] == tm;
    if (earliest)
        publish_next(rt);
    sq__spin_unlock(&rt->timer_lock);
    if (earliest) {
        sq__fence();
        if (deadline < atomic_load(&rt->driver_until))
            sq__driver_wake(rt);
    }
    return 0;
}

void sq__timer_disarm(sq_runtime *rt, sq__timer *tm)
{
    sq__spin_lock(&rt->timer_lock);
    if (tm->index != SQ__TIMER_IDLE) {
        bool was_first = tm->index == 0;
        heap_remove(rt, tm->index);
        if (was_first)
            publish_next(rt);
    }
    sq__spin_unlock(&rt->timer_lock);
}

void sq__timers_fire(sq_runtime *rt, int64_t now)
{
    if (atomic_load_explicit(&rt->timer_next, memory_order_relaxed) > now)
        return;
    sq__spin_lock(&rt->timer_lock);
    while (rt->heap_len && rt->heap[0]->deadline <= now) {
        sq__timer *tm = rt->heap[0];
        heap_remove(rt, 0);
        /* Woken under the lock: the task disarms under this lock before
         * its wait returns, so it cannot be gone yet. */
        sq__task_wake(tm->task);
    }
    publish_next(rt);
    sq__spin_unlock(&rt->timer_lock);
}

void sq__timers_free(sq_runtime *rt)
{
    free(rt->heap);
    rt->heap = NULL;
    rt->heap_len = rt->heap_cap = 0;
}
