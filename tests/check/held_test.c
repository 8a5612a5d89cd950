/* The findings the hooks make themselves (src/check/hooks.c): a lock held
 * across a wait, long holds and long waits (at their thresholds, not
 * below), locks marked as allowed to be held across waits, and
 * SQUIRREL_CHECK's syntax.  Each test captures the reports, and restores
 * the configuration after. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "squirrel/check.h"
#include "squirrel/mpsc.h"
#include "squirrel/rwlock.h"
#include "squirrel/sync.h"
#include "testlib.h"

typedef struct captured {
    int n[5];
    char text[8][4096]; /* the first 8 reports */
    int ntext;
} captured;

static captured cap;
static atomic_int reports; /* what the root can poll while tasks run */

static int bit_index(unsigned f)
{
    for (int i = 0; i < 5; i++)
        if (f == 1u << i)
            return i;
    return 0;
}

static void capture(unsigned finding, const char *text, void *arg)
{
    (void)arg;
    cap.n[bit_index(finding)]++;
    atomic_fetch_add(&reports, 1);
    if (cap.ntext < 8)
        snprintf(cap.text[cap.ntext++], sizeof cap.text[0], "%s", text);
}

static sq_check_config saved;

static void begin(const sq_check_config *c)
{
    sq_check_get_config(&saved);
    memset(&cap, 0, sizeof cap);
    sq_check_set_reporter(capture, NULL);
    CHECK_EQ(sq_check_configure(c), 0);
}

static void end(void)
{
    CHECK_EQ(sq_check_configure(&saved), 0);
    sq_check_set_reporter(NULL, NULL);
}

/* ---------------------------------------------- held across a wait */

static sq_mutex guard;
static sq_rwlock table;
static char guard_site[64], table_site[64];

static void *sleeper(void *arg)
{
    (void)arg;
    sq_mutex_lock(&guard); snprintf(guard_site, sizeof guard_site, "%s", SQ_SITE);
    sq_sleep(SQ_MSEC); /* reported: a sleep while holding `guard` */
    sq_mutex_unlock(&guard);
    return NULL;
}

static void *channel_waiter(void *arg)
{
    sq_mpsc *ch = arg;
    sq_rwlock_read_lock(&table); snprintf(table_site, sizeof table_site, "%s", SQ_SITE);
    int v;
    int rc = sq_mpsc_recv(ch, &v); /* reported: a channel under a read lock */
    sq_rwlock_read_unlock(&table);
    return (void *)(intptr_t)(rc == 0 ? v : rc);
}

static void *nester(void *arg)
{
    (void)arg;
    /* Waiting for a second lock while holding one is nesting: the order
     * check's business, not a held-across-wait finding. */
    sq_mutex_lock(&guard);
    sq_rwlock_write_lock(&table);
    sq_rwlock_write_unlock(&table);
    sq_mutex_unlock(&guard);
    return NULL;
}

static void *held_root(void *arg)
{
    (void)arg;
    sq_spawn_opts so = {.name = "sleeper"}, co = {.name = "reader"},
                  no = {.name = "nester"};
    sq_task t;
    CHECK_EQ(sq_spawn(&t, sleeper, NULL, &so), 0);
    CHECK_EQ(sq_join(t, NULL), 0);

    sq_mpsc ch;
    CHECK_EQ(sq_mpsc_init(&ch, sizeof(int), 4), 0);
    int before = atomic_load(&reports);
    CHECK_EQ(sq_spawn(&t, channel_waiter, &ch, &co), 0);
    /* The report comes as the reader starts to wait: send after it. */
    for (int i = 0; i < 5000 && atomic_load(&reports) == before; i++)
        sq_sleep(SQ_MSEC);
    int v = 42;
    CHECK_EQ(sq_mpsc_send(&ch, &v), 0);
    void *r;
    CHECK_EQ(sq_join(t, &r), 0);
    CHECK_EQ((intptr_t)r, 42);
    CHECK_EQ(sq_mpsc_sender_drop(&ch), 0);
    CHECK_EQ(sq_mpsc_destroy(&ch), 0);

    /* Hold the table from here so the nester must wait for it. */
    CHECK_EQ(sq_rwlock_write_lock(&table), 0);
    CHECK_EQ(sq_spawn(&t, nester, NULL, &no), 0);
    while (sq_mutex_try_lock(&guard) == 0) { /* until the nester has it */
        sq_mutex_unlock(&guard);
        sq_yield();
    }
    sq_rwlock_write_unlock(&table);
    CHECK_EQ(sq_join(t, NULL), 0);
    return NULL;
}

TEST(held_across_wait_names_the_task_the_lock_and_the_wait)
{
    sq_mutex_init_named(&guard, "guard");
    sq_rwlock_init_named(&table, "table");
    sq_check_config c = {.findings = SQ_CHECK_HELD_ACROSS_WAIT};
    begin(&c);
    sq_test_run(2, held_root, NULL);
    end();
    CHECK_EQ(cap.n[bit_index(SQ_CHECK_HELD_ACROSS_WAIT)], 2);
    CHECK_EQ(cap.ntext, 2);
    /* The sleep under the mutex. */
    CHECK(strstr(cap.text[0], "lock held across a wait") != NULL);
    CHECK(strstr(cap.text[0], "task 'sleeper'") != NULL);
    CHECK(strstr(cap.text[0], "waits for a sleep") != NULL);
    CHECK(strstr(cap.text[0], "lock guard") != NULL);
    CHECK(strstr(cap.text[0], guard_site) != NULL);
    CHECK(strstr(cap.text[0], "where it waits:") != NULL);
    /* The channel under the read lock. */
    CHECK(strstr(cap.text[1], "task 'reader'") != NULL);
    CHECK(strstr(cap.text[1], "waits for a channel") != NULL);
    CHECK(strstr(cap.text[1], "read lock table") != NULL);
    CHECK(strstr(cap.text[1], table_site) != NULL);
}

static void *allowed_sleeper(void *arg)
{
    sq_mutex *m = arg;
    sq_mutex_lock(m);
    sq_sleep(SQ_MSEC);
    sq_mutex_unlock(m);
    return NULL;
}

TEST(a_lock_allowed_to_be_held_across_waits_is_not_reported)
{
    sq_mutex m;
    sq_mutex_init_named(&m, "connection-writes");
    sq_mutex_allow_hold_across_waits(&m);
    sq_check_config c = {.findings = SQ_CHECK_ALL};
    begin(&c);
    sq_test_run(2, allowed_sleeper, &m);
    end();
    for (int i = 0; i < 5; i++)
        CHECK_EQ(cap.n[i], 0);
    CHECK_EQ(sq_mutex_destroy(&m), 0);
}

/* --------------------------------------------- long holds and waits */

typedef struct hold_job {
    sq_mutex m;
    int64_t hold_ns;
    /* How long the hold (or the wait) took at most, as seen from around
     * the calls: on a loaded machine a short one may still pass the
     * threshold, and then a report is right. */
    int64_t took_ns;
} hold_job;

static void *holder(void *arg)
{
    hold_job *j = arg;
    int64_t t0 = sq_now();
    sq_mutex_lock(&j->m);
    int64_t until = sq_now() + j->hold_ns;
    while (sq_now() < until) /* busy: holding without waiting */
        ;
    sq_mutex_unlock(&j->m);
    j->took_ns = sq_now() - t0;
    return NULL;
}

TEST(long_hold_is_reported_at_the_threshold_and_not_below)
{
    /* Threshold 20 ms: a 2 ms hold is not reported, a 40 ms one is. */
    sq_check_config c = {.findings = SQ_CHECK_LONG_HOLD,
                         .long_hold_ns = 20 * SQ_MSEC};
    begin(&c);
    hold_job j;
    sq_mutex_init_named(&j.m, "slow-section");
    j.hold_ns = 2 * SQ_MSEC;
    sq_test_run(2, holder, &j);
    int below = cap.n[bit_index(SQ_CHECK_LONG_HOLD)];
    if (j.took_ns <= 20 * SQ_MSEC) /* (else the machine held it longer) */
        CHECK_EQ(below, 0);
    j.hold_ns = 40 * SQ_MSEC;
    sq_test_run(2, holder, &j);
    end();
    CHECK_EQ(cap.n[bit_index(SQ_CHECK_LONG_HOLD)], below + 1);
    CHECK(strstr(cap.text[0], "lock held too long") != NULL);
    CHECK(strstr(cap.text[0], "slow-section") != NULL);
    CHECK(strstr(cap.text[0], "held_test.c:") != NULL);
    CHECK(strstr(cap.text[0], "threshold 20 ms") != NULL);
    CHECK_EQ(sq_mutex_destroy(&j.m), 0);
}

static void *waiter_of(void *arg)
{
    hold_job *j = arg;
    int64_t t0 = sq_now();
    sq_mutex_lock(&j->m);
    j->took_ns = sq_now() - t0;
    sq_mutex_unlock(&j->m);
    return NULL;
}

static void *long_wait_root(void *arg)
{
    hold_job *j = arg;
    /* The root holds the lock (marked: it sleeps with it on purpose) for
     * j->hold_ns while a task waits for it. */
    sq_mutex_lock(&j->m);
    sq_task t;
    sq_spawn_opts o = {.name = "patient"};
    CHECK_EQ(sq_spawn(&t, waiter_of, j, &o), 0);
    sq_sleep(j->hold_ns);
    sq_mutex_unlock(&j->m);
    CHECK_EQ(sq_join(t, NULL), 0);
    return NULL;
}

TEST(long_wait_is_reported_at_the_threshold_and_not_below)
{
    sq_check_config c = {.findings = SQ_CHECK_LONG_WAIT,
                         .long_wait_ns = 20 * SQ_MSEC};
    begin(&c);
    hold_job j;
    sq_mutex_init_named(&j.m, "busy-lock");
    sq_mutex_allow_hold_across_waits(&j.m);
    j.hold_ns = 2 * SQ_MSEC;
    sq_test_run(2, long_wait_root, &j);
    int below = cap.n[bit_index(SQ_CHECK_LONG_WAIT)];
    if (j.took_ns <= 20 * SQ_MSEC) /* (else the machine made it longer) */
        CHECK_EQ(below, 0);
    j.hold_ns = 60 * SQ_MSEC;
    sq_test_run(2, long_wait_root, &j);
    end();
    CHECK_EQ(cap.n[bit_index(SQ_CHECK_LONG_WAIT)], below + 1);
    CHECK(strstr(cap.text[0], "wait too long") != NULL);
    CHECK(strstr(cap.text[0], "task 'patient'") != NULL);
    CHECK(strstr(cap.text[0], "waited for a mutex") != NULL);
    CHECK_EQ(sq_mutex_destroy(&j.m), 0);
}

/* ------------------------------------------------------ configuration */

TEST(squirrel_check_syntax)
{
    sq_check_config c;
    CHECK_EQ(sq_check_parse("all", &c), 0);
    CHECK_EQ(c.findings, SQ_CHECK_ALL);
    CHECK_EQ(c.abort_on, 0);
    CHECK_EQ(sq_check_parse(" order , held,abort ", &c), 0);
    CHECK_EQ(c.findings, SQ_CHECK_LOCK_ORDER | SQ_CHECK_HELD_ACROSS_WAIT);
    CHECK_EQ(c.abort_on, c.findings);
    CHECK_EQ(sq_check_parse("long-hold,hold=50ms,wait=2s,watchdog=250us", &c),
             0);
    CHECK_EQ(c.findings, SQ_CHECK_LONG_HOLD);
    CHECK_EQ(c.long_hold_ns, 50 * SQ_MSEC);
    CHECK_EQ(c.long_wait_ns, 2 * SQ_SEC);
    CHECK_EQ(c.watchdog_ns, 250 * SQ_USEC);
    CHECK_EQ(sq_check_parse("long-wait,deadlock,hold=7ns", &c), 0);
    CHECK_EQ(c.findings, SQ_CHECK_LONG_WAIT | SQ_CHECK_DEADLOCK);
    CHECK_EQ(c.long_hold_ns, 7);
    CHECK_EQ(sq_check_parse("", &c), 0);
    CHECK_EQ(c.findings, 0);
    CHECK_EQ(sq_check_parse("orders", &c), -EINVAL);
    CHECK_EQ(sq_check_parse("hold=5", &c), -EINVAL);
    CHECK_EQ(sq_check_parse("hold=-5ms", &c), -EINVAL);
    CHECK_EQ(sq_check_parse("wait=99999999999999999s", &c), -EINVAL);
    CHECK_EQ(sq_check_parse(NULL, &c), -EINVAL);

    sq_check_config bad = {.findings = 1u << 9};
    CHECK_EQ(sq_check_configure(&bad), -EINVAL);
    bad = (sq_check_config){.findings = SQ_CHECK_LONG_HOLD,
                            .long_hold_ns = -1};
    CHECK_EQ(sq_check_configure(&bad), -EINVAL);
    CHECK_EQ(sq_check_configure(NULL), -EINVAL);
}
