/* Squirrel base layer: spin lock, fences and futexes, the thread-level
 * primitives under the runtime.  No runtime in here: they work in any
 * thread and never suspend a task (they may block or spin the thread, as
 * each says). */
#ifndef SQ_BASE_SPIN_H
#define SQ_BASE_SPIN_H

#include <stdatomic.h>
#include <stdint.h>

#include "sq_base/compiler.h"

/* A test-and-test-and-set lock for critical sections of a few dozen
 * instructions that never wait (queue links, wake-up hand-offs).  Spinning
 * is bounded by the holder's short section; after 64 spins it yields the
 * thread so an OS-preempted holder can finish.  All-zero is unlocked. */
typedef struct { atomic_int v; } sq__spin;
void sq__spin_lock_slow(sq__spin *l);
static inline void sq__spin_lock(sq__spin *l)
{
    if (SQ__LIKELY(!atomic_exchange_explicit(&l->v, 1, memory_order_acquire)))
        return;
    sq__spin_lock_slow(l);
}
static inline void sq__spin_unlock(sq__spin *l)
{
    atomic_store_explicit(&l->v, 0, memory_order_release);
}
static inline void sq__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* A sequentially consistent fence.  ThreadSanitizer does not model fences
 * (gcc refuses them under -fsanitize=thread), so there it is a seq_cst
 * read-modify-write of one shared word, which TSan does understand. */
#ifdef SQ__TSAN
extern atomic_int sq__fence_word;
#define sq__fence() atomic_fetch_add(&sq__fence_word, 0)
#else
#define sq__fence() atomic_thread_fence(memory_order_seq_cst)
#endif

/* Blocks the thread while *addr == expected, until woken or until the
 * absolute CLOCK_MONOTONIC deadline in ns (INT64_MAX: none).  May return
 * spuriously; callers loop on their own condition. */
void sq__futex_wait(atomic_uint *addr, unsigned expected, int64_t deadline);
/* Wakes up to n threads blocked in sq__futex_wait on addr. */
void sq__futex_wake(atomic_uint *addr, int n);

#endif
