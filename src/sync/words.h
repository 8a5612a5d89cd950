/* Copies between plain memory and arrays of 64-bit atomic words: how
 * broadcast and watch store messages that readers copy out while a
 * sender may be overwriting them (a seqlock).  Each word is one atomic
 * access, release on store and acquire on load (plain moves on x86-64),
 * so a torn copy is never a data race: the reader detects it afterwards
 * through the slot's stamp or the sequence word (a load that reads a
 * newer writer's word also sees that writer's "writing" mark, which the
 * writer stored before its first word). */
#ifndef SQUIRREL_SYNC_WORDS_H
#define SQUIRREL_SYNC_WORDS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Words needed for `size` bytes. */
static inline size_t sq__words_for(size_t size)
{
    return (size + 7) / 8;
}

static inline void sq__words_store(_Atomic uint64_t *dst, const void *src,
                                   size_t size)
{
    const unsigned char *s = src;
    for (; size >= 8; size -= 8, s += 8, dst++) {
        uint64_t w;
        memcpy(&w, s, 8);
        atomic_store_explicit(dst, w, memory_order_release);
    }
    if (size) {
        uint64_t w = 0;
        memcpy(&w, s, size);
        atomic_store_explicit(dst, w, memory_order_release);
    }
}

static inline void sq__words_load(void *dst, _Atomic uint64_t *src,
                                  size_t size)
{
    unsigned char *d = dst;
    for (; size >= 8; size -= 8, d += 8, src++) {
        uint64_t w = atomic_load_explicit(src, memory_order_acquire);
        memcpy(d, &w, 8);
    }
    if (size) {
        uint64_t w = atomic_load_explicit(src, memory_order_acquire);
        memcpy(d, &w, size);
    }
}

#endif
