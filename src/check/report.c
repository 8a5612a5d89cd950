/* The reports of the run-time checks (report.h): their text, the
 * reporter they go to, their counts and the abort that may follow. */
#include "report.h"

#include <execinfo.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "squirrel/check.h"
#include "sq_runtime/iface.h"

#define NFINDINGS 5

/* Where reports go; a lock of its own, so that emitting a report needs
 * no lock of the checks' state. */
static pthread_mutex_t report_lock = PTHREAD_MUTEX_INITIALIZER;
static sq_check_reporter reporter;
static void *reporter_arg;
static atomic_uint abort_on;
static _Atomic uint64_t counts[NFINDINGS];

static int finding_index(unsigned f)
{
    for (int i = 0; i < NFINDINGS; i++)
        if (f == 1u << i)
            return i;
    return 0;
}

static const char *finding_name(unsigned f)
{
    switch (f) {
    case SQ_CHECK_LOCK_ORDER: return "lock order inversion";
    case SQ_CHECK_HELD_ACROSS_WAIT: return "lock held across a wait";
    case SQ_CHECK_LONG_HOLD: return "lock held too long";
    case SQ_CHECK_LONG_WAIT: return "wait too long";
    case SQ_CHECK_DEADLOCK: return "deadlock";
    }
    return "finding";
}

void sq__report_init(sq__report *r, unsigned finding)
{
    r->finding = finding;
    sq__strbuf_init(&r->text);
    sq__report_add(r, "squirrel check: %s\n", finding_name(finding));
}

void sq__report_add(sq__report *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sq__strbuf_vprintf(&r->text, fmt, ap);
    va_end(ap);
}

void sq__report_backtrace(sq__report *r, int skip)
{
    void *frames[24];
    int n = backtrace(frames, 24);
    char **names = backtrace_symbols(frames, n);
    for (int i = skip + 1; i < n; i++) {
        if (names)
            sq__report_add(r, "      %s\n", names[i]);
        else
            sq__report_add(r, "      %p\n", frames[i]);
    }
    free(names);
}

void sq__report_configure(unsigned findings)
{
    atomic_store(&abort_on, findings);
}

void sq__report_emit(sq__report *r)
{
    atomic_fetch_add(&counts[finding_index(r->finding)], 1);
    /* A text cut short by a lack of memory is still sent: what it has. */
    const char *text = r->text.buf ? r->text.buf
                                   : "squirrel check: (no memory)\n";
    pthread_mutex_lock(&report_lock);
    sq_check_reporter fn = reporter;
    void *arg = reporter_arg;
    pthread_mutex_unlock(&report_lock);
    bool abort_now = (atomic_load(&abort_on) & r->finding) != 0;
    if (fn) {
        fn(r->finding, text, arg);
    } else {
        /* One write, so reports from several threads do not interleave. */
        size_t len = strlen(text);
        while (len) {
            ssize_t w = write(STDERR_FILENO, text, len);
            if (w <= 0)
                break;
            text += w;
            len -= (size_t)w;
        }
    }
    sq__strbuf_free(&r->text);
    if (abort_now)
        abort();
}

void sq_check_set_reporter(sq_check_reporter fn, void *arg)
{
    pthread_mutex_lock(&report_lock);
    reporter = fn;
    reporter_arg = arg;
    pthread_mutex_unlock(&report_lock);
}

uint64_t sq_check_count(unsigned findings)
{
    uint64_t n = 0;
    for (int i = 0; i < NFINDINGS; i++)
        if (findings & (1u << i))
            n += atomic_load(&counts[i]);
    return n;
}

/* ------------------------------------------------------ lines of text */

void sq__put_age(sq__strbuf *b, int64_t ns)
{
    if (ns < 10 * SQ_USEC)
        sq__strbuf_printf(b, "%lld ns", (long long)ns);
    else if (ns < 10 * SQ_MSEC)
        sq__strbuf_printf(b, "%lld us", (long long)(ns / SQ_USEC));
    else
        sq__strbuf_printf(b, "%lld ms", (long long)(ns / SQ_MSEC));
}

void sq__put_who(sq__strbuf *b, const char *name, const char *spawn_site)
{
    sq__strbuf_puts(b, name);
    if (spawn_site)
        sq__strbuf_printf(b, " (spawned at %s)", spawn_site);
}

void sq__put_hold(sq__strbuf *b, const char *indent, const char *what,
                  bool shared, const char *cls, const void *lock,
                  const char *site, int64_t age_ns)
{
    sq__strbuf_printf(b, "%s%s %s %s (%p) taken at %s, ", indent, what,
                      sq__mode_text(shared), cls, lock, site);
    sq__put_age(b, age_ns);
    sq__strbuf_puts(b, " ago\n");
}

static const struct {
    int kind;                /* enum sq__wait_kind, for sq__wait_public */
    const char *key, *text;
} waits[] = {
    [SQ_CHECK_WAIT_NONE] = {-1, "none", "nothing"},
    [SQ_CHECK_WAIT_UNKNOWN] = {-1, "unknown", "something"},
    [SQ_CHECK_WAIT_OTHER] = {SQ__WAIT_OTHER, "other", "something"},
    [SQ_CHECK_WAIT_MUTEX] = {SQ__WAIT_MUTEX, "mutex", "a mutex"},
    [SQ_CHECK_WAIT_RWLOCK] = {SQ__WAIT_RWLOCK, "rwlock",
                              "a reader-writer lock"},
    [SQ_CHECK_WAIT_SEMAPHORE] = {SQ__WAIT_SEM, "semaphore", "a semaphore"},
    [SQ_CHECK_WAIT_NOTIFY] = {SQ__WAIT_NOTIFY, "notify", "a notify"},
    [SQ_CHECK_WAIT_CHANNEL] = {SQ__WAIT_CHANNEL, "channel", "a channel"},
    [SQ_CHECK_WAIT_BARRIER] = {SQ__WAIT_BARRIER, "barrier", "a barrier"},
    [SQ_CHECK_WAIT_ONCE] = {SQ__WAIT_ONCE, "once", "a once initialisation"},
    [SQ_CHECK_WAIT_SLEEP] = {SQ__WAIT_SLEEP, "sleep", "a sleep to end"},
    [SQ_CHECK_WAIT_IO] = {SQ__WAIT_IO, "io", "I/O"},
    [SQ_CHECK_WAIT_JOIN] = {SQ__WAIT_JOIN, "join", "a task to finish"},
    [SQ_CHECK_WAIT_GROUP] = {SQ__WAIT_GROUP, "group", "a task group member"},
    [SQ_CHECK_WAIT_BLOCKING] = {SQ__WAIT_BLOCKING, "blocking",
                                "a blocking-pool job"},
};
#define NWAITS (int)(sizeof waits / sizeof *waits)
/* Every kind of the runtime has a public one (the two before OTHER are
 * the snapshot's own). */
_Static_assert(NWAITS == SQ__WAIT_NKINDS + 2, "a wait kind has no name");

int sq__wait_public(int kind)
{
    for (int i = SQ_CHECK_WAIT_OTHER; i < NWAITS; i++)
        if (waits[i].kind == kind)
            return i;
    return SQ_CHECK_WAIT_OTHER;
}

const char *sq__wait_key(int wait)
{
    return wait >= 0 && wait < NWAITS ? waits[wait].key : "other";
}

const char *sq__wait_text(int wait)
{
    return wait >= 0 && wait < NWAITS ? waits[wait].text : "something";
}

const char *sq_check_wait_kind_name(int wait)
{
    return wait >= 0 && wait < NWAITS ? waits[wait].key : "?";
}

const char *sq_check_task_state_name(int state)
{
    static const char *const names[] = {"queued", "running", "parked",
                                        "done"};
    return state >= 0 && state < 4 ? names[state] : "?";
}
