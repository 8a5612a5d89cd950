/* Squirrel patterns layer: a sharded map, the specification's thread-safe
 * component.
 *
 * String keys to byte values, split over a power-of-two number of shards
 * by a seeded 64-bit hash; each shard is a chained hash table behind its
 * own task-aware reader-writer lock (squirrel/rwlock.h), and grows
 * (doubling) as keys arrive; it never shrinks.  Every call works from
 * tasks (waiting suspends the task) and from plain threads (waiting
 * blocks the thread), and they may share one map.
 *
 * The specification's rules it embodies:
 *  - Task-aware locks only: the shard locks are sq_rwlocks.
 *  - Never hold a lock across a wait: a shard lock is held only for
 *    in-memory work on that shard (find, link, unlink, copy a value out).
 *    No allocation, no free, no user callback and no channel send happens
 *    while a shard lock is held, and no call ever holds two shard locks.
 *  - Two-phase updates: sq_shardmap_update reads under the read lock,
 *    runs the caller's decision with no lock held, then takes the write
 *    lock and re-checks the key's version before writing (retrying on a
 *    conflict), so no update is lost.
 *  - Listeners are told after the lock is released: every change is
 *    published as an sq_shardmap_event on a broadcast channel
 *    (squirrel/broadcast.h) once the shard lock is given back.
 *
 * Values.  A value is a byte blob (any bytes, length 0 ..
 * SQ_SHARDMAP_VALUE_MAX), copied into the map by the writing calls and
 * copied out by the reading calls.  No caller ever holds a pointer into
 * the map: what get returns is the caller's own copy, so a value may be
 * replaced or deleted at any moment without anyone reading freed memory.
 * Store a string with its length (the NUL is optional: get_copy always
 * adds one after the value).
 *
 * Keys.  NUL-terminated strings of 0 .. SQ_SHARDMAP_KEY_MAX bytes
 * (without the NUL), copied in.  The limit lets every change event carry
 * the whole key; a longer key is refused with -ENAMETOOLONG.
 *
 * Versions.  Every change of a key (set, successful compare-and-set,
 * delete) is given a version: a positive number, strictly greater than
 * every earlier version of that key, never reused for that key during the
 * map's life, even across a delete and a re-insert (so a compare-and-set
 * cannot be fooled by a key deleted and set again: no ABA).  Versions are
 * the shard's change counter, not a per-key count: they rise, but not
 * always by one.  Version 0 means "absent" in the calls that compare
 * versions.
 *
 * Errors common to every call that takes a key: -EINVAL (NULL map, key or
 * needed pointer, a value pointer NULL with a non-zero length, a negative
 * deadline), -ENAMETOOLONG (key longer than SQ_SHARDMAP_KEY_MAX),
 * -EMSGSIZE (value longer than SQ_SHARDMAP_VALUE_MAX), -ENOMEM.
 *
 * Waiting and cancellation.  The calls that take a key wait for nothing
 * but the key's shard lock (held by others only for short in-memory work)
 * and, for a change with events on, the shard's publication mutex (held
 * by others only for a send; see "Change events"), both taken before
 * anything is changed.  They are cancellation points only there: a call
 * that returns -ECANCELED (the calling task was aborted) or -ETIMEDOUT
 * (the _until forms, at the absolute `deadline` on the sq_now() clock)
 * has changed nothing and published nothing.  A free lock is taken even
 * by an aborted task.  Once a change is made, the call completes its
 * publication, which does not wait and is not a cancellation point.
 *
 * Change events.  Unless the map was made with SQ_SHARDMAP_NO_EVENTS,
 * every change is sent, after the shard lock is released, as one
 * sq_shardmap_event {kind, version, key} on the map's broadcast channel
 * (capacity set at init).  Subscribers (sq_shardmap_subscribe) see every
 * event sent after they subscribed.  Guarantees:
 *  - Per key, events are published in version order, with no gap and no
 *    duplicate: a subscriber that does not lag sees exactly one event per
 *    change of the key, versions strictly increasing.  More: the events of
 *    one shard are published in the order its changes were made.  Two
 *    writers that race between releasing the shard lock and publishing
 *    are kept in order by a second, per-shard lock that is not the
 *    reader-writer lock: a FIFO publication mutex, taken under the write
 *    lock just before the change and released after the send, hand over
 *    hand.  The send happens after the write lock is released and never
 *    waits, so the publication mutex is held only for a moment; a writer
 *    that finds it held (the previous writer of the shard is still
 *    sending) spins briefly, then queues for it, holding the write lock.
 *    Lock order: always the shard lock, then its publication mutex (lock
 *    classes "sq_shardmap.shard" or opts.lock_class, and
 *    "sq_shardmap.publish"), which the run-time checks accept.
 *  - No ordering is promised between keys of different shards.
 *  - Writers never wait for subscribers.  The channel keeps the newest
 *    `events` messages; a subscriber that falls behind by more than that
 *    is told exactly how many it missed (-EOVERFLOW from sq_shardmap_recv
 *    with *missed), then continues with the oldest event still held.
 *    Events received + events reported missed == events sent while
 *    subscribed, exactly.
 *  - When a writing call returns, its event has been sent.  To follow a
 *    key without missing a change: subscribe first, then read it; every
 *    change with a version above the one read will arrive as an event
 *    (events at or below it may arrive too: skip them).
 *
 * Lifetime.  sq_shardmap_destroy must not run while any other call on the
 * map is in progress.
 */
#ifndef SQUIRREL_SHARDMAP_H
#define SQUIRREL_SHARDMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "squirrel/broadcast.h"
#include "squirrel/rwlock.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The longest key (bytes, without the NUL) and the longest value. */
#define SQ_SHARDMAP_KEY_MAX 255
#define SQ_SHARDMAP_VALUE_MAX ((size_t)1 << 30)

/* Defaults and limits of sq_shardmap_opts. */
#define SQ_SHARDMAP_DEFAULT_SHARDS 16
#define SQ_SHARDMAP_MAX_SHARDS ((size_t)1 << 16)
#define SQ_SHARDMAP_DEFAULT_EVENTS 1024

/* Flags of sq_shardmap_opts. */
#define SQ_SHARDMAP_NO_EVENTS 1u /* no change events, no broadcast channel */

typedef struct sq_shardmap_opts {
    size_t shards;   /* a power of two, 1 .. SQ_SHARDMAP_MAX_SHARDS;
                        0 = SQ_SHARDMAP_DEFAULT_SHARDS */
    size_t capacity; /* keys expected (sizes the first tables); 0 = small */
    size_t events;   /* messages the event channel keeps;
                        0 = SQ_SHARDMAP_DEFAULT_EVENTS */
    unsigned flags;  /* SQ_SHARDMAP_NO_EVENTS */
    uint64_t seed;   /* hash seed; 0 = a fresh one per map */
    const char *lock_class; /* class of the shard locks for the checks
                               (squirrel/check.h), a string that outlives
                               the map; NULL = "sq_shardmap.shard" */
} sq_shardmap_opts;

struct sq__shardmap_shard;

/* A map.  Its fields are private.  The shards are allocated (one array,
 * cache-line aligned so that two shards never share a line), and so is
 * every entry (one allocation holding the key and the value). */
typedef struct sq_shardmap {
    struct sq__shardmap_shard *_shards; /* NULL once destroyed */
    size_t _nshards;
    unsigned _shift;        /* 64 - log2(shards): shard = hash >> shift */
    bool _events_on;
    uint64_t _seed;
    sq_broadcast _events;   /* change events (if _events_on) */
} sq_shardmap;

/* The kinds of change event. */
enum {
    SQ_SHARDMAP_EV_SET = 1,    /* key set (inserted or replaced) */
    SQ_SHARDMAP_EV_DELETE = 2, /* key deleted */
};

/* A change event, as received by subscribers (fixed size: 272 bytes). */
typedef struct sq_shardmap_event {
    uint64_t version;   /* the change's version */
    uint32_t kind;      /* SQ_SHARDMAP_EV_SET or SQ_SHARDMAP_EV_DELETE */
    uint32_t key_len;   /* bytes of key, without the NUL */
    char key[SQ_SHARDMAP_KEY_MAX + 1]; /* NUL-terminated */
} sq_shardmap_event;

/* Initialises m from opts (NULL: all defaults): empty, with its event
 * channel open (unless SQ_SHARDMAP_NO_EVENTS).  Allocates the shards,
 * their first tables and the event ring (`events` * 280 bytes).  Returns
 * 0, -EINVAL (shards not a power of two or above the limit, events above
 * SQ_BROADCAST_MAX_CAPACITY) or -ENOMEM (nothing is left allocated).
 * Never waits. */
int sq_shardmap_init(sq_shardmap *m, const sq_shardmap_opts *opts);

/* Frees everything m holds.  Returns -EBUSY if a shard lock is held or
 * waited on, or a subscriber is still subscribed (nothing is freed then),
 * -EINVAL if m was already destroyed, else 0.  No other call on m may be
 * in progress.  Never waits. */
int sq_shardmap_destroy(sq_shardmap *m);

/* ---------------------------------------------------------------- reads */

/* Copies key's value into buf (cap bytes; buf may be NULL if cap is 0),
 * its length into *len and its version into *version (either may be
 * NULL), all taken under the shard's read lock, so they belong together.
 * Returns 0; -ENOENT if key is absent (*len and *version set to 0);
 * -ENOBUFS if the value is longer than cap (nothing copied to buf; *len
 * and *version are set, so the caller can retry with a larger buffer,
 * or use sq_shardmap_get_copy).  Waits only for the shard's read lock
 * (many readers share it): cancellation point there, -ECANCELED having
 * read nothing. */
int sq_shardmap_get(sq_shardmap *m, const char *key, void *buf, size_t cap,
                    size_t *len, uint64_t *version);

/* As sq_shardmap_get, giving up at `deadline` with -ETIMEDOUT. */
int sq_shardmap_get_until(sq_shardmap *m, const char *key, void *buf,
                          size_t cap, size_t *len, uint64_t *version,
                          int64_t deadline);

/* Copies key's value into memory allocated for it, stored in *out (free
 * it with free()); a NUL byte follows the value (not counted in *len),
 * so a string value can be used as one.  *len and *version may be NULL.
 * The allocation is made with no lock held: if the value grows in
 * between, the call reads again.  Returns 0, -ENOENT (*out set to NULL),
 * -ENOMEM; waits and cancellation as sq_shardmap_get (-ECANCELED: *out
 * is NULL, nothing is leaked). */
int sq_shardmap_get_copy(sq_shardmap *m, const char *key, void **out,
                         size_t *len, uint64_t *version);

/* As sq_shardmap_get_copy, giving up at `deadline` with -ETIMEDOUT. */
int sq_shardmap_get_copy_until(sq_shardmap *m, const char *key, void **out,
                               size_t *len, uint64_t *version,
                               int64_t deadline);

/* --------------------------------------------------------------- writes */

/* Sets key to the len bytes at value (inserted if absent, replaced if
 * present), and stores the change's new version in *version (may be
 * NULL).  The entry is built (and the old one freed) with no lock held;
 * the write lock covers only linking it in.  Returns 0.  Waits for the
 * shard's write lock (cancellation point: -ECANCELED, nothing changed
 * or published), then publishes the change event (see the header
 * comment). */
int sq_shardmap_set(sq_shardmap *m, const char *key, const void *value,
                    size_t len, uint64_t *version);

/* As sq_shardmap_set, giving up at `deadline` with -ETIMEDOUT. */
int sq_shardmap_set_until(sq_shardmap *m, const char *key, const void *value,
                          size_t len, uint64_t *version, int64_t deadline);

/* Compare-and-set: sets key to value only if key's version is
 * `expected` now, checked under the shard's write lock; expected 0 means
 * "only if key is absent" (an insert).  Returns:
 *   0          set; *version (may be NULL) is the new version;
 *   -EEXIST    expected was 0 and key is present;
 *   -ENOENT    expected was not 0 and key is absent;
 *   -ESTALE    key is present with a version other than expected (it was
 *              changed since the caller read it).
 * On the three mismatches nothing changes and *version is set to key's
 * version now (0 if absent), so a retry loop can read again.  Waits and
 * cancellation as sq_shardmap_set. */
int sq_shardmap_cas(sq_shardmap *m, const char *key, uint64_t expected,
                    const void *value, size_t len, uint64_t *version);

/* As sq_shardmap_cas, giving up at `deadline` with -ETIMEDOUT. */
int sq_shardmap_cas_until(sq_shardmap *m, const char *key, uint64_t expected,
                          const void *value, size_t len, uint64_t *version,
                          int64_t deadline);

/* Deletes key; *version (may be NULL) receives the version of the
 * deletion (above every earlier version of key; the delete event carries
 * it).  The entry is freed after the lock is released.  Returns 0, or
 * -ENOENT if key is absent (*version 0).  Waits and cancellation as
 * sq_shardmap_set. */
int sq_shardmap_delete(sq_shardmap *m, const char *key, uint64_t *version);

/* As sq_shardmap_delete, giving up at `deadline` with -ETIMEDOUT. */
int sq_shardmap_delete_until(sq_shardmap *m, const char *key,
                             uint64_t *version, int64_t deadline);

/* Compare-and-delete: deletes key only if its version is `expected` (not
 * 0: -EINVAL).  Returns 0 (*version: the deletion's version), -ENOENT
 * (absent), -ESTALE (another version; nothing changes, *version is the
 * version now).  Waits and cancellation as sq_shardmap_set. */
int sq_shardmap_cas_delete(sq_shardmap *m, const char *key,
                           uint64_t expected, uint64_t *version);

/* As sq_shardmap_cas_delete, giving up at `deadline` with -ETIMEDOUT. */
int sq_shardmap_cas_delete_until(sq_shardmap *m, const char *key,
                                 uint64_t expected, uint64_t *version,
                                 int64_t deadline);

/* ---------------------------------------------------- two-phase update */

/* What a decision function returns (or a negative errno to give up). */
enum {
    SQ_SHARDMAP_KEEP = 0,   /* change nothing */
    SQ_SHARDMAP_PUT = 1,    /* set the key to *new_value, *new_len */
    SQ_SHARDMAP_REMOVE = 2, /* delete the key */
};

/* A decision: given key's value as read (old, old_len: the caller's copy,
 * valid during the call; old NULL and old_version 0 if absent), decide.
 * For SQ_SHARDMAP_PUT, set *new_value and *new_len: the bytes (owned by
 * the function, e.g. a buffer in arg) are copied in before the function
 * is called again or the update returns.  It runs in the caller's task or
 * thread with no lock of the map held, so it may wait (I/O, sleep, a
 * channel), and may even call the map.  It may run several times (once
 * per attempt): it should only decide, and leave side effects to the
 * caller once the update has returned. */
typedef int (*sq_shardmap_decide_fn)(void *arg, const char *key,
                                     const void *old, size_t old_len,
                                     uint64_t old_version,
                                     const void **new_value,
                                     size_t *new_len);

/* The two-phase conditional update.  Each attempt: (1) copy key's value
 * and version under the shard's read lock and release it; (2) call
 * fn with no lock held; (3) for PUT or REMOVE, take the write lock and
 * write only if key's version is still the one fn saw (a compare-and-set,
 * so an insert when it saw the key absent).  If it is not, another
 * writer got there first: the attempt is discarded and the next one
 * starts again at (1) with what that writer wrote.  So no update is
 * lost, and every write is based on the value it replaces.
 *
 * max_attempts bounds the attempts (0: no bound; each failed attempt
 * means another writer's change succeeded, so the map as a whole always
 * makes progress, though one caller may in theory be overtaken forever).
 * Returns:
 *   0           the decision was applied (or was KEEP, or REMOVE of an
 *               absent key); *version (may be NULL): the new version,
 *               the deletion's version, or for KEEP the version fn saw
 *               (0: absent);
 *   -ESTALE     max_attempts attempts all conflicted; nothing written;
 *   < 0 from fn the first negative value fn returned, as is (nothing
 *               written by this call);
 *   -EINVAL     fn NULL, or fn returned an unknown value or PUT with a
 *               NULL *new_value and a non-zero *new_len;
 * and the common errors.  Waits for the shard's locks and for whatever fn
 * waits for.  Cancellation: -ECANCELED from a lock wait means nothing was
 * written by this call; fn sees the cancellation itself in its own
 * waits. */
int sq_shardmap_update(sq_shardmap *m, const char *key,
                       sq_shardmap_decide_fn fn, void *arg,
                       unsigned max_attempts, uint64_t *version);

/* As sq_shardmap_update, giving up at `deadline` with -ETIMEDOUT in a
 * lock wait (fn is not given the deadline: pass it in arg). */
int sq_shardmap_update_until(sq_shardmap *m, const char *key,
                             sq_shardmap_decide_fn fn, void *arg,
                             unsigned max_attempts, uint64_t *version,
                             int64_t deadline);

/* ----------------------------------------------------- size and listing */

/* The number of keys: a sum over the shards of counts kept as atomics,
 * taken without locks.  Exact when no change is in progress; during
 * changes, a value the map had at some moment in each shard (not one
 * atomic snapshot of the whole map).  Never waits. */
size_t sq_shardmap_size(sq_shardmap *m);

/* Calls fn(arg, key, value, len, version) for every key, shard by shard.
 * Each shard is copied (keys, values, versions) under its read lock into
 * a buffer of the call's own, and the lock is released before fn is
 * called for its keys: fn runs with no lock held, may wait, and may
 * change the map (the changes may or may not be seen later in the
 * iteration).  Each shard's part is a consistent snapshot of that shard,
 * taken when it is visited; the whole is not one snapshot of the map at
 * one instant (a change made during the iteration shows if its shard is
 * visited after it).  A key lives in one shard, so it is seen at most
 * once.  Order: by shard, unspecified within one.  fn returning non-zero stops
 * the iteration, and that value is returned.  Returns 0, fn's value,
 * -ENOMEM, or -ECANCELED / -ETIMEDOUT (foreach_until) from a shard lock
 * wait (the shards already visited stay visited).  Memory: one shard's
 * keys and values at a time.  Pointers passed to fn are valid during the
 * call only. */
typedef int (*sq_shardmap_foreach_fn)(void *arg, const char *key,
                                      const void *value, size_t len,
                                      uint64_t version);
int sq_shardmap_foreach(sq_shardmap *m, sq_shardmap_foreach_fn fn,
                        void *arg);
int sq_shardmap_foreach_until(sq_shardmap *m, sq_shardmap_foreach_fn fn,
                              void *arg, int64_t deadline);

/* A snapshot of the keys (shard by shard, as sq_shardmap_foreach): *out
 * receives a NULL-terminated array of *n (may be NULL) key strings, in
 * one allocation (free the array with one free()).  Returns 0, -ENOMEM,
 * -ECANCELED (*out NULL, nothing leaked).  Waits for each shard's read
 * lock in turn, holding none while it allocates. */
int sq_shardmap_keys(sq_shardmap *m, char ***out, size_t *n);

/* Figures of a map (each read without locks, not one snapshot). */
typedef struct sq_shardmap_stats {
    size_t shards;    /* shards */
    size_t size;      /* keys (as sq_shardmap_size) */
    size_t buckets;   /* hash-table slots over all shards */
    uint64_t grows;   /* table doublings since init */
    uint64_t changes; /* versions given out (sets, deletes) since init */
} sq_shardmap_stats;

/* Fills *out.  Returns 0, or -EINVAL for NULL arguments.  Never waits. */
int sq_shardmap_stats_get(sq_shardmap *m, sq_shardmap_stats *out);

/* -------------------------------------------------------- change events */

/* Subscribes rx (caller-owned, uninitialised or dropped) to m's change
 * events: rx will receive every event sent after this call.  Returns 0,
 * or -ENOTSUP if m was made with SQ_SHARDMAP_NO_EVENTS.  Never waits
 * (beyond the channel's senders' spin lock); any task or thread.  One
 * task or thread receives on rx at a time. */
int sq_shardmap_subscribe(sq_shardmap *m, sq_broadcast_rx *rx);

/* Unsubscribes rx (events not received are left behind).  Returns 0, or
 * -EINVAL if rx is not subscribed.  Not while a receive on rx is in
 * progress.  Never waits. */
int sq_shardmap_unsubscribe(sq_broadcast_rx *rx);

/* Receives rx's next event into *ev, waiting if there is none yet.
 * Returns 0; -EOVERFLOW if rx fell behind: *missed (may be NULL) is the
 * exact number of events it lost (>= 1), *ev is unspecified, and the next
 * receive continues with the oldest event still held; -EPIPE once the
 * events are closed (sq_shardmap_close_events) and rx has received
 * everything.  Cancellation point, only when it waits: -ECANCELED having
 * consumed nothing.  Never holds a lock of the map. */
int sq_shardmap_recv(sq_broadcast_rx *rx, sq_shardmap_event *ev,
                     uint64_t *missed);

/* As sq_shardmap_recv, giving up at `deadline` with -ETIMEDOUT having
 * consumed nothing. */
int sq_shardmap_recv_until(sq_broadcast_rx *rx, sq_shardmap_event *ev,
                           uint64_t *missed, int64_t deadline);

/* Receives only what is there now: as sq_shardmap_recv, or -EAGAIN
 * (nothing new).  Never waits; not a cancellation point. */
int sq_shardmap_try_recv(sq_broadcast_rx *rx, sq_shardmap_event *ev,
                         uint64_t *missed);

/* Ends the event stream: later changes are not published (the map
 * itself keeps working), and each subscriber receives what it has not
 * yet seen, then -EPIPE.  Idempotent; no effect with
 * SQ_SHARDMAP_NO_EVENTS.  Never waits. */
void sq_shardmap_close_events(sq_shardmap *m);

#ifdef __cplusplus
}
#endif

#endif
