/* Squirrel base layer: compiler and platform helpers every layer uses.
 * No runtime in here: macros only. */
#ifndef SQ_BASE_COMPILER_H
#define SQ_BASE_COMPILER_H

#include <stddef.h>

/* The size of a cache line on the machines we run on (x86-64, AArch64):
 * hot shared fields get lines of their own to avoid false sharing. */
#define SQ__CACHELINE 64
#define SQ__LIKELY(x) __builtin_expect(!!(x), 1)
#define SQ__UNLIKELY(x) __builtin_expect(!!(x), 0)
#define SQ__NOINLINE __attribute__((noinline))
#define sq__container_of(p, type, member) \
    ((type *)(void *)((char *)(p) - offsetof(type, member)))
/* Thread-local storage reached without a call to __tls_get_addr, also in
 * the shared library (which is loaded with the program, or by a program
 * that already has it: plugins link the same copy). */
#define SQ__TLS _Thread_local __attribute__((tls_model("initial-exec")))

/* ------------------------------------------------------ sanitizers */
#if defined(__SANITIZE_ADDRESS__)
#define SQ__ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SQ__ASAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define SQ__TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SQ__TSAN 1
#endif
#endif

#endif
