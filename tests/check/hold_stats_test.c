/* sq_check_get_hold_stats: every measured release counted, and the time
 * each lock was held summed and bounded. */
#include <string.h>

#include "squirrel/check.h"
#include "squirrel/rwlock.h"
#include "squirrel/sync.h"
#include "testlib.h"

static sq_mutex m;
static sq_rwlock rw;

static void *holder(void *arg)
{
    (void)arg;
    for (int i = 0; i < 100; i++) {
        CHECK_EQ(sq_mutex_lock(&m), 0);
        sq_mutex_unlock(&m);
        CHECK_EQ(sq_rwlock_read_lock(&rw), 0);
        sq_rwlock_read_unlock(&rw);
    }
    return NULL;
}

static void *root(void *arg)
{
    (void)arg;
    CHECK_EQ(sq_mutex_init(&m), 0);
    CHECK_EQ(sq_rwlock_init(&rw), 0);
    sq_check_hold_stats a, b;
    sq_check_get_hold_stats(&a);

    /* 8 tasks x 100 x 2 short holds, then one long one. */
    sq_task t[8];
    for (int i = 0; i < 8; i++)
        CHECK_EQ(sq_spawn(&t[i], holder, NULL, NULL), 0);
    for (int i = 0; i < 8; i++)
        CHECK_EQ(sq_join(t[i], NULL), 0);
    CHECK_EQ(sq_mutex_lock(&m), 0);
    int64_t t0 = sq_now();
    while (sq_now() - t0 < 3 * SQ_MSEC)
        ; /* hold it 3 ms without waiting */
    sq_mutex_unlock(&m);

    sq_check_get_hold_stats(&b);
    CHECK_EQ(b.holds - a.holds, 8 * 100 * 2 + 1);
    CHECK(b.max_hold_ns >= 3 * SQ_MSEC);
    CHECK(b.hold_ns - a.hold_ns >= 3 * SQ_MSEC);
    CHECK_EQ(sq_mutex_destroy(&m), 0);
    CHECK_EQ(sq_rwlock_destroy(&rw), 0);
    return (void *)1;
}

TEST(holds_measured_while_checks_on)
{
    sq_check_config saved, c;
    sq_check_get_config(&saved);
    memset(&c, 0, sizeof c);
    c.findings = SQ_CHECK_LOCK_ORDER;
    CHECK_EQ(sq_check_configure(&c), 0);
    CHECK(sq_test_run(2, root, NULL) == (void *)1);
    CHECK_EQ(sq_check_configure(&saved), 0);
}
