/* A bump allocator for the structures the check layer hands out
 * (sq_check_snapshot, sq_check_order_graph): they are built in one go
 * under sq__check_lock and freed in one call, so their arrays and
 * strings come from a few large blocks instead of one malloc each.
 * Not thread-safe (one builder); never waits. */
#ifndef SQ_CHECK_ARENA_H
#define SQ_CHECK_ARENA_H

#include <stdbool.h>
#include <stddef.h>

typedef struct sq__arena {
    struct sq__arena_block *head; /* the block being filled */
    bool failed;                  /* an allocation failed */
} sq__arena;

#define SQ__ARENA_INIT {NULL, false}

/* n objects of `size` bytes, zeroed and aligned for any type; NULL (and
 * the arena failed) if memory runs out, or for n == 0 (not a failure). */
void *sq__arena_array(sq__arena *a, size_t n, size_t size);
/* A copy of s; NULL for NULL; "?" (and the arena failed) if memory runs
 * out, so a string field is never NULL by accident. */
const char *sq__arena_str(sq__arena *a, const char *s);
/* Frees every block. */
void sq__arena_free(sq__arena *a);

#endif
