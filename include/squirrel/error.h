/* Squirrel: error codes.
 *
 * Every Squirrel call that can fail returns an int: 0 (or a non-negative
 * count) on success, a negative errno value on failure, e.g. -ETIMEDOUT,
 * -ECANCELED.  Library code never aborts on a caller's mistake; it returns
 * one of these.
 */
#ifndef SQUIRREL_ERROR_H
#define SQUIRREL_ERROR_H

#include <errno.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Returns a static, human-readable description of a Squirrel return code
 * (negative errno value) or of 0.  Never fails, never waits; any other
 * negative errno value gets the C library's description, and codes that
 * are not errno values give "unknown error".  Thread-safe. */
const char *sq_strerror(int code);

#ifdef __cplusplus
}
#endif

#endif
