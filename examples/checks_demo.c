/* The run-time checks at work: this program makes two classic mistakes on
 * purpose, and the checks report both on stderr as they happen.
 *
 *  1. Two tasks take the same two locks in opposite orders, one after the
 *     other: nothing deadlocks in this run, but it could in another.  The
 *     lock-order check reports it when the second order is first taken.
 *  2. A task sleeps while holding a lock: every other task that needs the
 *     lock waits for the sleep too.  Reported as a lock held across a wait.
 *
 * The checks are switched on here with sq_check_configure; any program can
 * instead be run with SQUIRREL_CHECK=all in its environment.  Exits 0 if
 * both findings were reported, 1 otherwise (it is also a test). */
#include <stdio.h>

#include "squirrel/check.h"
#include "squirrel/sync.h"

static sq_mutex accounts, audit_log;

static void *transfer(void *arg)
{
    (void)arg;
    sq_mutex_lock(&accounts);
    sq_mutex_lock(&audit_log); /* accounts, then audit_log */
    sq_mutex_unlock(&audit_log);
    sq_mutex_unlock(&accounts);
    return NULL;
}

static void *report(void *arg)
{
    (void)arg;
    sq_mutex_lock(&audit_log);
    sq_mutex_lock(&accounts); /* audit_log, then accounts: inverted */
    sq_mutex_unlock(&accounts);
    sq_mutex_unlock(&audit_log);
    return NULL;
}

static void *slow_update(void *arg)
{
    (void)arg;
    sq_mutex_lock(&accounts);
    sq_sleep(SQ_MSEC); /* holding the lock while waiting */
    sq_mutex_unlock(&accounts);
    return NULL;
}

static void *root(void *arg)
{
    (void)arg;
    sq_spawn_opts o1 = {.name = "transfer"}, o2 = {.name = "report"},
                  o3 = {.name = "slow_update"};
    sq_task t;
    sq_spawn(&t, transfer, NULL, &o1);
    sq_join(t, NULL);
    sq_spawn(&t, report, NULL, &o2);
    sq_join(t, NULL);
    sq_spawn(&t, slow_update, NULL, &o3);
    sq_join(t, NULL);
    return NULL;
}

int main(void)
{
    sq_mutex_init_named(&accounts, "accounts");
    sq_mutex_init_named(&audit_log, "audit_log");
    sq_check_config cfg = {.findings = SQ_CHECK_ALL};
    if (sq_check_configure(&cfg) != 0)
        return 1;
    if (sq_run(root, NULL, NULL, NULL) != 0)
        return 1;
    uint64_t order = sq_check_count(SQ_CHECK_LOCK_ORDER);
    uint64_t held = sq_check_count(SQ_CHECK_HELD_ACROSS_WAIT);
    printf("reported: %llu lock-order inversion(s), %llu lock(s) held "
           "across a wait\n",
           (unsigned long long)order, (unsigned long long)held);
    return order == 1 && held == 1 ? 0 : 1;
}
