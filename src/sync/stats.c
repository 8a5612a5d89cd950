/* sq_sync_stats: lock waits counted per CPU.
 *
 * Only acquisitions that queue are counted (core.c calls sq__sync_stat_wait
 * after the wait): they already cost a suspension, so the count adds a
 * clock read and a few relaxed additions to a cache line of the CPU the
 * waiter runs on.  A thread moved to another CPU halfway through simply
 * adds the rest to that CPU's line: the additions are atomic, the totals
 * exact. */
#include "core.h"

#include <errno.h>
#include <sched.h>
#include <string.h>

#define SLOTS 64 /* CPUs beyond share slots, still exactly */

typedef struct {
    _Alignas(64) _Atomic uint64_t waits;
    _Atomic uint64_t wait_ns, timeouts, cancels;
    _Atomic uint64_t buckets[SQ_SYNC_WAIT_BUCKETS];
} slot;

static slot slots[SLOTS];

static unsigned bucket_of(uint64_t ns)
{
    uint64_t us = ns / 1000;
    unsigned b = 0;
    while (b < SQ_SYNC_WAIT_BUCKETS - 1 && us >= (1ull << b))
        b++;
    return b;
}

void sq__sync_stat_wait(int64_t started, int rc)
{
    int cpu = sched_getcpu();
    slot *s = &slots[(unsigned)(cpu < 0 ? 0 : cpu) % SLOTS];
    int64_t ns = sq_now() - started;
    uint64_t d = ns > 0 ? (uint64_t)ns : 0;
    atomic_fetch_add_explicit(&s->waits, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->wait_ns, d, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->buckets[bucket_of(d)], 1,
                              memory_order_relaxed);
    if (rc == -ETIMEDOUT)
        atomic_fetch_add_explicit(&s->timeouts, 1, memory_order_relaxed);
    else if (rc == -ECANCELED)
        atomic_fetch_add_explicit(&s->cancels, 1, memory_order_relaxed);
}

void sq_sync_stats_get(sq_sync_stats *out)
{
    memset(out, 0, sizeof *out);
    for (int i = 0; i < SLOTS; i++) {
        slot *s = &slots[i];
        out->waits += atomic_load_explicit(&s->waits, memory_order_relaxed);
        out->wait_ns +=
            atomic_load_explicit(&s->wait_ns, memory_order_relaxed);
        out->timeouts +=
            atomic_load_explicit(&s->timeouts, memory_order_relaxed);
        out->cancels +=
            atomic_load_explicit(&s->cancels, memory_order_relaxed);
        for (int b = 0; b < SQ_SYNC_WAIT_BUCKETS; b++)
            out->wait_buckets[b] +=
                atomic_load_explicit(&s->buckets[b], memory_order_relaxed);
    }
}
