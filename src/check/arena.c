/* The bump allocator of arena.h. */
#include "arena.h"

#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct sq__arena_block {
    struct sq__arena_block *next;
    size_t used, cap;
    alignas(max_align_t) unsigned char data[];
} sq__arena_block;

#define BLOCK_MIN 16384

void *sq__arena_array(sq__arena *a, size_t n, size_t size)
{
    if (n == 0)
        return NULL;
    if (size && n > (SIZE_MAX - BLOCK_MIN) / size) {
        a->failed = true;
        return NULL;
    }
    size_t len = (n * size + alignof(max_align_t) - 1) &
                 ~(alignof(max_align_t) - 1);
    sq__arena_block *b = a->head;
    if (!b || b->cap - b->used < len) {
        size_t cap = len > BLOCK_MIN ? len : BLOCK_MIN;
        b = malloc(sizeof *b + cap);
        if (!b) {
            a->failed = true;
            return NULL;
        }
        b->used = 0;
        b->cap = cap;
        b->next = a->head;
        a->head = b;
    }
    void *p = b->data + b->used;
    b->used += len;
    memset(p, 0, len);
    return p;
}

const char *sq__arena_str(sq__arena *a, const char *s)
{
    if (!s)
        return NULL;
    size_t len = strlen(s) + 1;
    char *c = sq__arena_array(a, len, 1);
    if (!c)
        return "?";
    memcpy(c, s, len);
    return c;
}

void sq__arena_free(sq__arena *a)
{
    while (a->head) {
        sq__arena_block *b = a->head;
        a->head = b->next;
        free(b);
    }
    a->failed = false;
}
