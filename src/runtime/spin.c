/* Spin lock slow path and futex wrappers. */
#include "internal.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
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

/* Blocks the thread while *addr == expected, until woken or until the
 * absolute monotonic deadline (SQ_FOREVER = none).  May return spuriously;
 * callers loop. */
void sq__futex_wait(atomic_uint *addr, unsigned expected, int64_t deadline)
{
    struct timespec ts, *tsp = NULL;
    if (deadline != SQ_FOREVER) {
        ts.tv_sec = deadline / SQ_SEC;
        ts.tv_nsec = deadline % SQ_SEC;
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

int64_t sq_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * SQ_SEC + ts.tv_nsec;
}

int sq_deadline_in(int64_t timeout_ns, int64_t *out)
{
    if (timeout_ns < 0)
        return -EINVAL;
    if (timeout_ns == SQ_FOREVER) {
        *out = SQ_FOREVER;
        return 0;
    }
    int64_t now = sq_now();
    if (timeout_ns > INT64_MAX - 1 - now)
        return -EOVERFLOW;
    *out = now + timeout_ns;
    return 0;
}
