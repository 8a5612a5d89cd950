/* The clock: sq_now and deadlines (squirrel/runtime.h). */
#include "internal.h"

#include <errno.h>
#include <time.h>

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
