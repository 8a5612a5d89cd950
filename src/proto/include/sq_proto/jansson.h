/* The proto layer: jansson, with reference counts that are safe to share
 * between threads.
 *
 * Every file above the base layer includes this header instead of
 * <jansson.h> (scripts/check-layers fails a change that includes jansson
 * directly).  jansson's inline json_incref and json_decref read the count
 * with a plain load before updating it atomically; when a value is shared
 * between tasks on different workers (a request's params, the registry's
 * published lists) that plain load is a data race in C11 terms, and
 * ThreadSanitizer reports it.  The replacements below do the same with an
 * atomic load, and release the last reference with acquire-release order
 * so that the thread that frees a value sees every other thread's writes
 * to it.  jansson's inline setters that take a reference of their own
 * (json_object_set, json_array_append, ...) are replaced the same way.
 * Values that are modified must still not be shared: only the count is
 * made thread-safe, as in jansson.  Nothing here waits.
 */
#ifndef SQ_PROTO_JANSSON_H
#define SQ_PROTO_JANSSON_H

#include <jansson.h>
#include <stddef.h>

/* json_incref: adds a reference to j (NULL and jansson's immortal
 * singletons are left alone) and returns j. */
static inline json_t *sq__json_incref(json_t *j)
{
    if (j && __atomic_load_n(&j->refcount, __ATOMIC_RELAXED) != (size_t)-1)
        __atomic_add_fetch(&j->refcount, 1, __ATOMIC_RELAXED);
    return j;
}

/* json_decref: drops a reference to j and frees it with the last one. */
static inline void sq__json_decref(json_t *j)
{
    if (j && __atomic_load_n(&j->refcount, __ATOMIC_RELAXED) != (size_t)-1 &&
        __atomic_sub_fetch(&j->refcount, 1, __ATOMIC_ACQ_REL) == 0)
        json_delete(j);
}

/* jansson's inline setters that add a reference (json_object_set,
 * json_array_append, ...) call its own json_incref: these do the same
 * with the one above. */
static inline int sq__json_object_set(json_t *o, const char *k, json_t *v)
{
    return json_object_set_new(o, k, sq__json_incref(v));
}
static inline int sq__json_object_setn(json_t *o, const char *k, size_t n, json_t *v)
{
    return json_object_setn_new(o, k, n, sq__json_incref(v));
}
static inline int sq__json_object_set_nocheck(json_t *o, const char *k, json_t *v)
{
    return json_object_set_new_nocheck(o, k, sq__json_incref(v));
}
static inline int sq__json_array_set(json_t *a, size_t i, json_t *v)
{
    return json_array_set_new(a, i, sq__json_incref(v));
}
static inline int sq__json_array_append(json_t *a, json_t *v)
{
    return json_array_append_new(a, sq__json_incref(v));
}
static inline int sq__json_array_insert(json_t *a, size_t i, json_t *v)
{
    return json_array_insert_new(a, i, sq__json_incref(v));
}

#undef json_incref
#undef json_decref
#define json_incref sq__json_incref
#define json_decref sq__json_decref
#define json_object_set sq__json_object_set
#define json_object_setn sq__json_object_setn
#define json_object_set_nocheck sq__json_object_set_nocheck
#define json_array_set sq__json_array_set
#define json_array_append sq__json_array_append
#define json_array_insert sq__json_array_insert

#endif
