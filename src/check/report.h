/* The check layer's reports: how a finding's text reads and where it goes.
 *
 * A report is a text built in the base layer's string buffer
 * (sq_base/strbuf.h) and handed, in one piece, to the reporter set with
 * sq_check_set_reporter (or written to stderr).  These helpers know
 * nothing of contexts, holds or graphs: callers pass plain fields, so
 * every other file of src/check may use them and they use none of those
 * files.  The same line formats serve the task dump's text.  Nothing here
 * takes sq__check_lock: reports are built under it and emitted after it
 * is released.
 */
#ifndef SQ_CHECK_REPORT_H
#define SQ_CHECK_REPORT_H

#include <stdbool.h>
#include <stdint.h>

#include "sq_base/strbuf.h"

typedef struct sq__report {
    unsigned finding;  /* its SQ_CHECK_* bit */
    sq__strbuf text;   /* cut short, not lost, if memory runs out */
} sq__report;

/* Starts r with the title line "squirrel check: <finding>". */
void sq__report_init(sq__report *r, unsigned finding);
void sq__report_add(sq__report *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Appends the calling thread's stack (function names when the program
 * is linked with -rdynamic), skipping `skip` innermost frames. */
void sq__report_backtrace(sq__report *r, int skip);
/* Counts the finding, hands the text to the reporter, frees it, and
 * aborts if the finding is in abort_on.  Call with no check lock held:
 * the reporter may call into Squirrel. */
void sq__report_emit(sq__report *r);
/* The findings that abort the process after their report. */
void sq__report_configure(unsigned abort_on);

/* ------------------------------------------------ lines of text */

/* A duration: "<n> ns", "<n> us" or "<n> ms". */
void sq__put_age(sq__strbuf *b, int64_t ns);
/* A task or thread: its name and, if known, " (spawned at <site>)". */
void sq__put_who(sq__strbuf *b, const char *name, const char *spawn_site);
/* "<indent><what> <lock|read lock> <cls> (<lock>) taken at <site>, <age>
 * ago\n": one held lock. */
void sq__put_hold(sq__strbuf *b, const char *indent, const char *what,
                  bool shared, const char *cls, const void *lock,
                  const char *site, int64_t age_ns);

/* "lock" or "read lock" (text); "exclusive" or "shared" (JSON). */
static inline const char *sq__mode_text(bool shared)
{
    return shared ? "read lock" : "lock";
}
static inline const char *sq__mode_key(bool shared)
{
    return shared ? "shared" : "exclusive";
}

/* The public kind of wait (SQ_CHECK_WAIT_*) of a waiter's kind (enum
 * sq__wait_kind); and for a public kind a short key ("mutex", "sleep",
 * ...) for JSON and sq_check_wait_kind_name, and words for text ("a
 * mutex").  Out of range: "other" and "something". */
int sq__wait_public(int kind);
const char *sq__wait_key(int wait);
const char *sq__wait_text(int wait);

#endif
