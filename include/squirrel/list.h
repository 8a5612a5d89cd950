/* Squirrel base layer: the intrusive doubly linked list.
 *
 * Plumbing, not API (the names have two underscores): it is in a public
 * header only because public structs of the sync layer embed a list head,
 * so their static initialisers work.  Every layer uses this one list
 * instead of a copy of its own.
 *
 * The element embeds a struct sq__link and is found from it with
 * sq__list_entry (container_of).  A list is NULL-terminated at both ends,
 * so an all-zero struct sq__list is a valid empty list (SQ__LIST_INIT).
 * Nothing here allocates, locks or waits: the owner of the list guards it.
 */
#ifndef SQUIRREL_LIST_H
#define SQUIRREL_LIST_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

struct sq__link {
    struct sq__link *next, *prev;
};

struct sq__list {
    struct sq__link *head, *tail;
};

#define SQ__LIST_INIT {NULL, NULL}

/* The element of type `type` whose member `member` is the link `l`. */
#define sq__list_entry(l, type, member) \
    ((type *)(void *)((char *)(l) - offsetof(type, member)))

static inline void sq__list_init(struct sq__list *l)
{
    l->head = l->tail = NULL;
}

static inline bool sq__list_empty(const struct sq__list *l)
{
    return l->head == NULL;
}

/* Appends n (not in any list) at the tail. */
static inline void sq__list_push_back(struct sq__list *l, struct sq__link *n)
{
    n->next = NULL;
    n->prev = l->tail;
    if (l->tail)
        l->tail->next = n;
    else
        l->head = n;
    l->tail = n;
}

/* Prepends n (not in any list) at the head. */
static inline void sq__list_push_front(struct sq__list *l, struct sq__link *n)
{
    n->prev = NULL;
    n->next = l->head;
    if (l->head)
        l->head->prev = n;
    else
        l->tail = n;
    l->head = n;
}

/* Unlinks n, which must be in l; its links are cleared. */
static inline void sq__list_remove(struct sq__list *l, struct sq__link *n)
{
    if (n->prev)
        n->prev->next = n->next;
    else
        l->head = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        l->tail = n->prev;
    n->next = n->prev = NULL;
}

/* Unlinks and returns the head, or NULL if l is empty. */
static inline struct sq__link *sq__list_pop_front(struct sq__list *l)
{
    struct sq__link *n = l->head;
    if (n)
        sq__list_remove(l, n);
    return n;
}

/* Empties l and returns its old head: the elements stay chained by
 * `next` (read each one's next before handing it on, for a woken waiter
 * may vanish at once). */
static inline struct sq__link *sq__list_take_all(struct sq__list *l)
{
    struct sq__link *n = l->head;
    l->head = l->tail = NULL;
    return n;
}

/* Iterates over the links of l, head first; the body must not unlink `it`
 * (use SQ__LIST_FOREACH_SAFE for that). */
#define SQ__LIST_FOREACH(it, l) \
    for (struct sq__link *it = (l)->head; it; it = it->next)
#define SQ__LIST_FOREACH_SAFE(it, l)                                       \
    for (struct sq__link *it = (l)->head, *it##_next = it ? it->next : NULL; \
         it; it = it##_next, it##_next = it ? it->next : NULL)

#ifdef __cplusplus
}
#endif

#endif
