/* The watchdog thread (watchdog.c). */
#ifndef SQ_CHECK_WATCHDOG_H
#define SQ_CHECK_WATCHDOG_H

#include <stdint.h>

/* Starts, re-times or (period 0) stops the watchdog thread that runs the
 * deadlock search (sq__deadlock_search) every `period` ns.  Stopping
 * joins the thread, unless called from it (its reporter), which then
 * ends after the current search.  0 or -ENOMEM. */
int sq__watchdog_configure(int64_t period);

#endif
