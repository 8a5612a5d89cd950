/* Squirrel sync layer, private plumbing (not an API): the list of
 * receivers waiting for a change of state, shared by squirrel/broadcast.h
 * and squirrel/watch.h.  Its fields are private; src/sync/waitlist.c
 * explains how it works. */
#ifndef SQUIRREL_WAITLIST_H
#define SQUIRREL_WAITLIST_H

#include "squirrel/sync.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sq__waitlist {
    atomic_int _lock;           /* spin lock over the fields below */
    atomic_uint _count;         /* listeners queued (read without the lock) */
    uint64_t _epoch;            /* bumped each time a waker takes the list */
    struct sq__list _listeners; /* the queued listeners, newest first */
} sq__waitlist;

#ifdef __cplusplus
}
#endif

#endif
