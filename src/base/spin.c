/* Spin lock slow path and futex wrappers (sq_base/spin.h). */
#include "sq_base/spin.h"

#include <linux/futex.h>
#include <sched.h>
#include <stddef.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifdef SQ__TSAN
atomic_int sq__fence_word;
#endif

void sq__spin_lock_slow(sq__spin *l)
{
    for (unsigned spins = 0;;) {
        while (atomic_load_explicit(&l->v, memory_order_relaxed)) {
            if (spins++ < 64)
                sq__cpu_relax();
            else
                sched_yield(); /* the holder may have been preempted */
        }
        if (!atomic_exchange_explicit(&l->v, 1, memory_order_acquire))
            return;
    }
}

void sq__futex_wait(atomic_uint *addr, unsigned expected, int64_t deadline)
{
    struct timespec ts, *tsp = NULL;
    if (deadline != INT64_MAX) {
        ts.tv_sec = deadline / 1000000000;
        ts.tv_nsec = deadline % 1000000000;
        tsp = &ts;
    }
    /* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC time. */
    syscall(SYS_futex, (unsigned *)addr, FUTEX_WAIT_BITSET_PRIVATE, expected,
            tsp, NULL, FUTEX_BITSET_MATCH_ANY);
}

void sq__futex_wake(atomic_uint *addr, int n)
{
    syscall(SYS_futex, (unsigned *)addr, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}
