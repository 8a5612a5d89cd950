/* Switching the checks on and off: sq_check_configure, SQUIRREL_CHECK's
 * syntax (sq_check_parse), and the constructor that reads the variable
 * before main.  What is configured lives where it is used: the findings
 * and thresholds with the hooks (hooks.c), abort_on with the reports
 * (report.c), the period with the watchdog (watchdog.c). */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "squirrel/check.h"
#include "squirrel/error.h"
#include "sq_runtime/iface.h" /* SQ_CHECKS */

#include "hooks.h"
#include "report.h"
#include "watchdog.h"

/* The configuration in force, for sq_check_get_config; the lock also
 * keeps two sq_check_configure calls from interleaving their parts. */
static pthread_mutex_t cfg_lock = PTHREAD_MUTEX_INITIALIZER;
static sq_check_config applied;

int sq_check_configure(const sq_check_config *c)
{
#if !SQ_CHECKS
    (void)c;
    return -ENOTSUP;
#else
    if (!c || (c->findings & ~SQ_CHECK_ALL) || (c->abort_on & ~SQ_CHECK_ALL) ||
        c->long_hold_ns < 0 || c->long_wait_ns < 0 || c->watchdog_ns < 0)
        return -EINVAL;
    sq_check_config n = *c;
    if (n.long_hold_ns == 0)
        n.long_hold_ns = SQ_SEC;
    if (n.long_wait_ns == 0)
        n.long_wait_ns = 10 * SQ_SEC;
    pthread_mutex_lock(&cfg_lock);
    applied = n;
    sq__report_configure(n.abort_on);
    sq__hooks_configure(&n);
    pthread_mutex_unlock(&cfg_lock);
    /* Outside cfg_lock: stopping the watchdog joins its thread, whose
     * reporter may be calling sq_check_get_config. */
    return sq__watchdog_configure(
        (n.findings & SQ_CHECK_DEADLOCK) ? n.watchdog_ns : 0);
#endif
}

void sq_check_get_config(sq_check_config *out)
{
    pthread_mutex_lock(&cfg_lock);
    *out = applied;
    pthread_mutex_unlock(&cfg_lock);
}

/* "<number><unit>" into ns. */
static int parse_time(const char *s, size_t len, int64_t *out)
{
    char buf[32];
    if (len == 0 || len >= sizeof buf)
        return -EINVAL;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *end;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (errno || end == buf || v < 0)
        return -EINVAL;
    int64_t unit;
    if (!strcmp(end, "ns"))
        unit = 1;
    else if (!strcmp(end, "us"))
        unit = SQ_USEC;
    else if (!strcmp(end, "ms"))
        unit = SQ_MSEC;
    else if (!strcmp(end, "s"))
        unit = SQ_SEC;
    else
        return -EINVAL;
    if (v > INT64_MAX / unit)
        return -EINVAL;
    *out = v * unit;
    return 0;
}

int sq_check_parse(const char *spec, sq_check_config *out)
{
    if (!spec || !out)
        return -EINVAL;
    sq_check_config c = {0};
    bool abort_all = false;
    const char *p = spec;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        while (len && isspace((unsigned char)*p)) {
            p++;
            len--;
        }
        while (len && isspace((unsigned char)p[len - 1]))
            len--;
#define IS(word) (len == sizeof word - 1 && !memcmp(p, word, len))
#define HAS(word) (len > sizeof word - 1 && !memcmp(p, word, sizeof word - 1))
        if (len == 0)
            ;
        else if (IS("all"))
            c.findings |= SQ_CHECK_ALL;
        else if (IS("order"))
            c.findings |= SQ_CHECK_LOCK_ORDER;
        else if (IS("held"))
            c.findings |= SQ_CHECK_HELD_ACROSS_WAIT;
        else if (IS("long-hold"))
            c.findings |= SQ_CHECK_LONG_HOLD;
        else if (IS("long-wait"))
            c.findings |= SQ_CHECK_LONG_WAIT;
        else if (IS("deadlock"))
            c.findings |= SQ_CHECK_DEADLOCK;
        else if (IS("abort"))
            abort_all = true;
        else if (HAS("hold=")) {
            if (parse_time(p + 5, len - 5, &c.long_hold_ns))
                return -EINVAL;
        } else if (HAS("wait=")) {
            if (parse_time(p + 5, len - 5, &c.long_wait_ns))
                return -EINVAL;
        } else if (HAS("watchdog=")) {
            if (parse_time(p + 9, len - 9, &c.watchdog_ns))
                return -EINVAL;
        } else {
            return -EINVAL;
        }
#undef IS
#undef HAS
        p += len;
        while (*p && *p != ',')
            p++;
        if (*p == ',')
            p++;
    }
    if (abort_all)
        c.abort_on = c.findings;
    *out = c;
    return 0;
}

/* Reads SQUIRREL_CHECK before main.  The library's link interface forces
 * this object in (-u sq__check_autoinit, see CMakeLists.txt), so every
 * program built with Squirrel honours the variable. */
void sq__check_autoinit(void) __attribute__((constructor));
void sq__check_autoinit(void)
{
    const char *spec = getenv("SQUIRREL_CHECK");
    if (!spec || !*spec)
        return;
    sq_check_config c;
    int rc = sq_check_parse(spec, &c);
    if (rc == 0)
        rc = sq_check_configure(&c);
    /* And the task dump on SIGQUIT (Ctrl-\), as the JVM and Go do. */
    if (rc == 0 && c.findings)
        rc = sq_check_dump_on_signal(SIGQUIT, STDERR_FILENO);
    if (rc) {
        fprintf(stderr, "squirrel: SQUIRREL_CHECK=\"%s\": %s; checks off\n",
                spec, rc == -EINVAL ? "not understood (see docs/checks.md)"
                                    : sq_strerror(rc));
    }
}
