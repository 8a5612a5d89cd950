/* The watchdog: a thread that searches the wait-for graph for deadlocks
 * (deadlock.c) every sq_check_config.watchdog_ns. */
#include "watchdog.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "deadlock.h"

/* One watchdog thread at most.  wd_gen names the thread that should be
 * running: a thread whose generation is no longer current ends, so a
 * stop never has to wait for the thread while holding wd_lock, and a
 * stop from inside the watchdog (its reporter reconfiguring the checks)
 * detaches instead of joining itself.  The thread runs with every signal
 * blocked, so signals go to the program's own threads. */
static pthread_mutex_t wd_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wd_cond;
static pthread_once_t wd_once = PTHREAD_ONCE_INIT;
static bool wd_running;
static pthread_t wd_thread;
static int64_t wd_period;
static uint64_t wd_gen;

static void wd_init(void)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC); /* sq_now()'s clock */
    pthread_cond_init(&wd_cond, &a);
    pthread_condattr_destroy(&a);
}

static void *wd_main(void *arg)
{
    uint64_t gen = (uintptr_t)arg;
    pthread_mutex_lock(&wd_lock);
    while (wd_gen == gen) {
        int64_t period = wd_period;
        int64_t deadline = sq_now();
        deadline = deadline > INT64_MAX - period ? INT64_MAX
                                                 : deadline + period;
        struct timespec ts = {.tv_sec = deadline / SQ_SEC,
                              .tv_nsec = deadline % SQ_SEC};
        while (wd_gen == gen && wd_period == period && sq_now() < deadline)
            pthread_cond_timedwait(&wd_cond, &wd_lock, &ts);
        if (wd_gen != gen || wd_period != period)
            continue; /* stopped, or re-timed: start a new period */
        pthread_mutex_unlock(&wd_lock);
        sq__deadlock_search("the watchdog");
        pthread_mutex_lock(&wd_lock);
    }
    pthread_mutex_unlock(&wd_lock);
    return NULL;
}

int sq__watchdog_configure(int64_t period)
{
    pthread_once(&wd_once, wd_init);
    pthread_mutex_lock(&wd_lock);
    if (period > 0) {
        wd_period = period;
        if (wd_running) { /* re-time */
            pthread_cond_broadcast(&wd_cond);
            pthread_mutex_unlock(&wd_lock);
            return 0;
        }
        uint64_t gen = ++wd_gen;
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        int rc = pthread_create(&wd_thread, NULL, wd_main,
                                (void *)(uintptr_t)gen);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        wd_running = rc == 0;
        pthread_mutex_unlock(&wd_lock);
        return rc == 0 ? 0 : -ENOMEM;
    }
    if (!wd_running) {
        pthread_mutex_unlock(&wd_lock);
        return 0;
    }
    wd_running = false;
    wd_gen++;
    pthread_t t = wd_thread;
    pthread_cond_broadcast(&wd_cond);
    pthread_mutex_unlock(&wd_lock);
    if (pthread_equal(t, pthread_self()))
        pthread_detach(t); /* from the watchdog's own reporter */
    else
        pthread_join(t, NULL);
    return 0;
}
