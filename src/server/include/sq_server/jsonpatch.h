/* squirreld's server layer: JSON Pointer (RFC 6901), JSON Patch (RFC 6902)
 * and JSON Merge Patch (RFC 7396) over jansson values, and the difference
 * of two values as a JSON Patch.  The context manager changes documents
 * with them (docs/contexts.md); they are public because any component
 * (a command, a plugin) that keeps JSON may want them.
 *
 * Values are never changed in place: every function reads its inputs and
 * builds a new value, so a document that other tasks are reading (an
 * immutable published version) can be patched.  The merge patch shares
 * the target's untouched subtrees with its result (jansson reference
 * counts); JSON Patch works on a private deep copy.  None of them waits;
 * each is safe from any task or thread as long as nobody changes the
 * inputs meanwhile.
 *
 * Numbers: jansson keeps integers (json_int_t) and reals (double) apart;
 * equality here (sq_json_equal, the "test" operation) compares them by
 * value, as RFC 6902 asks (1 equals 1.0).
 */
#ifndef SQ_SERVER_JSONPATCH_H
#define SQ_SERVER_JSONPATCH_H

#include "sq_proto/jansson.h"
#include <stdbool.h>
#include <stddef.h>

/* Why a patch failed. */
typedef struct sq_jpatch_err {
    /* The index of the operation that failed, or -1 (the patch as a
     * whole: not an array, too large a result). */
    long op;
    /* A short reason: "malformed" (not an operation: a missing or bad
     * member, an unknown op, a bad pointer), "path_not_found" (the target
     * or its parent does not exist, an index out of range), "test_failed"
     * (a test operation's value differs), "move_into_child" (a move
     * into the value's own child), "too_large" (the result passed
     * max_bytes). */
    const char *reason;
    char message[200];  /* for people: which member, which path */
} sq_jpatch_err;

/* RFC 6902 equality: same type and value, numbers by value (an integer
 * equals a real of the same value), objects with the same members
 * (order ignored), arrays element by element.  Never waits. */
bool sq_json_equal(const json_t *a, const json_t *b);

/* Resolves the RFC 6901 pointer `ptr` in doc: 0 with *out the value
 * (borrowed), -EINVAL (not a pointer: it must be "" or start with '/',
 * and '~' may only be followed by '0' or '1'), -ENOENT (no such member
 * or index; "-" names no element).  Never waits. */
int sq_json_pointer_get(const json_t *doc, const char *ptr, json_t **out);

/* Appends to buf (cap bytes, NUL-terminated, truncated if needed) the
 * pointer token of key (RFC 6901: '~' as "~0", '/' as "~1").  Returns the
 * length the whole token needs.  Never waits. */
size_t sq_json_pointer_escape(const char *key, char *buf, size_t cap);

/* RFC 7396: the result of merging `patch` into `target` (target may be
 * NULL: no value).  A non-object patch replaces the target; an object
 * patch sets its members recursively, removing those it sets to null.
 * *out is a new reference (which may share untouched subtrees of target).
 * Returns 0 or -ENOMEM.  Never waits. */
int sq_json_merge_patch(const json_t *target, const json_t *patch,
                        json_t **out);

/* RFC 6902: applies the operations of `patch` (an array of objects:
 * add, remove, replace, move, copy, test) to a copy of doc, one after
 * another, and stores the result in *out (a new reference).  All or
 * nothing: if any operation fails, *out is NULL and doc is as it was.
 * max_bytes > 0 bounds the result (its compact JSON text, checked after
 * every operation that can grow it beyond what the patch itself holds:
 * copy), so that a short patch cannot build a huge document.
 * Returns 0; -EINVAL (malformed), -ENOENT (path_not_found,
 * move_into_child), -EDOM (test_failed), -EFBIG (too_large), -ENOMEM; err
 * (may be NULL) says which operation and why.  Never waits. */
int sq_json_patch_apply(const json_t *doc, const json_t *patch,
                        size_t max_bytes, json_t **out, sq_jpatch_err *err);

/* The difference from `from` to `to` as an RFC 6902 patch (a new array):
 * applying it to `from` gives a value equal to `to` (sq_json_equal).
 * Objects are compared member by member, arrays index by index (elements
 * added or removed at the end; a whole array is replaced when that is
 * shorter), anything else replaced.  Not minimal, always correct.  NULL
 * if out of memory.  Never waits. */
json_t *sq_json_diff(const json_t *from, const json_t *to);

/* The length of v's compact JSON text (what json_dumps with
 * JSON_COMPACT writes), counting no further than `cap` + 1 when cap > 0
 * (so a bound can be checked without walking a huge value).  Never
 * waits. */
size_t sq_json_text_size(const json_t *v, size_t cap);

#endif
