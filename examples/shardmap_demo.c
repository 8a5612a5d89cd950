/* The sharded map: eight tasks count page views in a shared map with the
 * two-phase update (read, decide with no lock held, write only if nobody
 * changed the key meanwhile), while a listener task follows every change
 * through the map's events, told after the shard lock is released.
 * Checks its own results: exit 0 when every view is counted once. */
#include <stdio.h>
#include <string.h>

#include "squirrel/shardmap.h"

#define WORKERS 8
#define VIEWS 1000
static const char *pages[] = {"/home", "/about", "/blog"};

/* The decision: the page's count plus one (a missing page counts 0). */
static int add_one(void *arg, const char *key, const void *old, size_t len,
                   uint64_t version, const void **new_value, size_t *new_len)
{
    (void)key, (void)version;
    long *next = arg;
    *next = 1;
    if (old && len == sizeof *next) {
        memcpy(next, old, sizeof *next);
        ++*next;
    }
    *new_value = next;
    *new_len = sizeof *next;
    return SQ_SHARDMAP_PUT;
}

static void *worker(void *arg)
{
    sq_shardmap *map = arg;
    for (int i = 0; i < VIEWS; i++) {
        long next; /* the decision's output, copied in by the map */
        if (sq_shardmap_update(map, pages[i % 3], add_one, &next, 0, NULL))
            return (void *)1;
    }
    return NULL;
}

typedef struct listener {
    sq_broadcast_rx rx;
    long events;
    uint64_t last[3]; /* the last version seen per page */
    int out_of_order;
} listener;

static void *follow(void *arg)
{
    listener *l = arg;
    sq_shardmap_event ev;
    uint64_t missed = 0;
    int rc;
    while ((rc = sq_shardmap_recv(&l->rx, &ev, &missed)) != -EPIPE) {
        if (rc == -EOVERFLOW) { /* fell behind: told how many it missed */
            printf("listener missed %llu events\n", (unsigned long long)missed);
            continue;
        }
        for (int p = 0; p < 3; p++)
            if (strcmp(ev.key, pages[p]) == 0) {
                l->out_of_order += ev.version <= l->last[p];
                l->last[p] = ev.version;
            }
        l->events++;
    }
    sq_shardmap_unsubscribe(&l->rx);
    return NULL;
}

static void *demo(void *arg)
{
    (void)arg;
    sq_shardmap map;
    sq_shardmap_opts opts = {.events = 4 * WORKERS * VIEWS};
    if (sq_shardmap_init(&map, &opts))
        return (void *)1;
    static listener l; /* subscribe before the first change */
    sq_shardmap_subscribe(&map, &l.rx);
    sq_task lt, t[WORKERS];
    sq_spawn(&lt, follow, &l, NULL);
    for (int i = 0; i < WORKERS; i++)
        sq_spawn(&t[i], worker, &map, NULL);
    int failed = 0;
    for (int i = 0; i < WORKERS; i++) {
        void *res;
        sq_join(t[i], &res);
        failed |= res != NULL;
    }
    sq_shardmap_close_events(&map); /* the listener drains, then stops */
    sq_join(lt, NULL);

    long total = 0;
    for (int p = 0; p < 3; p++) {
        long n = 0;
        sq_shardmap_get(&map, pages[p], &n, sizeof n, NULL, NULL);
        printf("%-7s %ld views\n", pages[p], n);
        total += n;
    }
    printf("%ld views counted, %ld events heard, %d out of order\n", total,
           l.events, l.out_of_order);
    failed |= total != WORKERS * VIEWS || l.events != total ||
              l.out_of_order != 0 || sq_shardmap_destroy(&map) != 0;
    return (void *)(intptr_t)failed;
}

int main(void)
{
    void *failed = (void *)1;
    if (sq_run(demo, NULL, NULL, &failed) != 0 || failed)
        return 1;
    return 0;
}
