/* The wait-for-a-change list of broadcast and watch (waitlist.c explains
 * the protocol).  A 64-bit state word of the channel changes whenever a
 * receiver may have something new (a message, a version, a close); a
 * receiver with nothing to do waits until the word changes, and the party
 * that changed it wakes every waiter. */
#ifndef SQUIRREL_SYNC_WAITLIST_H
#define SQUIRREL_SYNC_WAITLIST_H

#include "squirrel/waitlist.h"

#include "core.h"

void sq__waitlist_init(sq__waitlist *wl);

/* Waits while (*word & mask) == expected.  Returns 0 when the word has
 * changed or a waker woke the caller (possibly spuriously: the caller
 * looks again and may call back), -ETIMEDOUT at `deadline`, -ECANCELED
 * if the calling task is aborted.  A wake-up that races with the timeout
 * or the cancellation wins (0).  The word must be changed with a seq_cst
 * read-modify-write (an exchange where a store would do) followed by
 * sq__waitlist_wake.  The C11 model orders a seq_cst store before the
 * seq_cst load in sq__waitlist_wake, but qemu-user's AArch64 emulation
 * does not (stlr then ldar, on an x86 host): waiters were lost there.  An
 * exchange costs the same as a seq_cst store on x86 (both are xchg). */
int sq__waitlist_wait(sq__waitlist *wl, _Atomic uint64_t *word, uint64_t mask,
                      uint64_t expected, int64_t deadline);

/* Wakes every queued waiter; cheap (one load) when nobody waits.  Call it
 * after the seq_cst read-modify-write of the word. */
void sq__waitlist_wake(sq__waitlist *wl);

/* For a caller that must change the word and take the waiters under the
 * list's lock (close): takes every queued waiter off the list and returns
 * them, to be woken with sq__waitlist_release after unlocking. */
struct sq__link *sq__waitlist_take_locked(sq__waitlist *wl);
void sq__waitlist_release(struct sq__link *l);

/* Number of waiters queued now (a snapshot). */
unsigned sq__waitlist_count(sq__waitlist *wl);

static inline sq__spin *sq__waitlist_lock(sq__waitlist *wl)
{
    return (sq__spin *)(void *)&wl->_lock;
}

#endif
