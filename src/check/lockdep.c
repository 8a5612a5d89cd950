/* The lock-order graph: the idea of Linux lockdep, on lock classes.
 *
 * What it finds (finding SQ_CHECK_LOCK_ORDER):
 *  - Two lock classes taken in opposite orders, directly (A then B here,
 *    B then A there) or through a longer cycle (A->B, B->C, then C->A),
 *    by any tasks or threads, at any times: it is reported when the order
 *    that closes the cycle is first about to be taken, before the lock is
 *    waited for, so before any deadlock happens.  The report names the
 *    task or thread, the lock it holds and the one it takes (class,
 *    address, site), and each order of the earlier path with the sites
 *    and the task of the first time that order was seen.
 *  - A lock taken while the same task or thread holds another lock of the
 *    same class: two locks of one class nested (two tasks doing so in
 *    opposite orders deadlock; so does one task against itself, if they
 *    are the same two locks in the other order), reported as the cycle
 *    A -> A.
 *  - Read locks count like write locks: our reader-writer lock is fair (a
 *    queued writer stops new readers), so a read-read inversion can
 *    deadlock too.
 * What it does not find:
 *  - Trylocks: a try cannot wait, so it adds no order and is not checked
 *    (as in Linux lockdep).  A lock taken by a try and then held does
 *    order the locks taken after it.
 *  - Orders it has not seen: only what runs is checked, so a cycle whose
 *    two halves never ran in the process is not found.
 *  - Cycles through anything but task-aware locks (a lock waiting for a
 *    channel, a join, a semaphore, a condition): the held-across-wait
 *    check covers waits while holding a lock, not this graph.
 *  - The very same lock taken again by its holder.  Locks are not
 *    owner-bound: taking a lock one holds may be waiting for the task it
 *    was handed to to give it back.  If nobody will, that is a deadlock
 *    that happens at once, which the wait-for graph leaves out too (for
 *    the same reason, see deadlock.c); the task dump shows it as a task
 *    waiting for a lock it holds.  This includes a read lock taken again
 *    while held for reading (it deadlocks only if a writer queues in
 *    between, so it may go unnoticed).
 *  - Locks passed to another task without sq_check_lock_transfer: a lock
 *    is charged to whoever took it until somebody unlocks it, so a task
 *    that passes a held lock on undeclared and then takes another orders
 *    the two (a false report, and a false inversion later).  Declared, the
 *    hold is in transit (context.c) and orders nothing.
 *  - Locks of one class that are always nested in one fixed order (say by
 *    address) are reported as same-class nesting: give them distinct
 *    classes (sq_mutex_init_named).  There are no nesting annotations.
 *  - Classes and orders past the bounds (MAX_CLASSES, MAX_EDGES): then a
 *    line on stderr says the graph is full, once, and new classes and
 *    orders are ignored (so are the cycles they would close).
 * Each pair of classes is reported once per process (or graph reset).
 *
 * Cost.  Each distinct chain of held classes followed by the class taken
 * (a 64-bit hash of the sequence) is validated once and then remembered;
 * a chain seen before costs hashing the held classes' names and one table
 * probe.  Everything runs under sq__check_lock.  Validation adds an edge
 * from each held class to the new one and, for each edge that is new,
 * searches the graph breadth-first for a path back (bounded by the number
 * of classes: each is visited once; the search's arrays are static, not
 * on the caller's stack, which may be a small task stack).  An order that
 * closes a cycle is recorded too, so later cycles through it are found.
 * Two chains whose 64-bit hashes collide would share one validation: a
 * risk we take, as Linux does.  Past CHAIN_MAX chains new ones are
 * validated every time (exact, only slower).  The tables are static
 * arrays of fixed size (untouched pages cost nothing); the names and
 * sites an edge remembers are copied once into an interned string table,
 * since the strings the locks pass need only outlive the lock or the
 * hold. */
#include "lockdep.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "squirrel/check.h"

#include "arena.h"

#define MAX_CLASSES 4096
#define MAX_EDGES 16384
#define CLASS_SLOTS (2 * MAX_CLASSES) /* open addressing, powers of 2 */
#define EDGE_SLOTS (2 * MAX_EDGES)
#define CHAIN_SLOTS 65536
#define CHAIN_MAX (CHAIN_SLOTS / 4 * 3) /* then chains are not cached */
#define STR_SLOTS 131072 /* > MAX_CLASSES + 4 * MAX_EDGES, below 3/4 */

typedef struct lclass {
    const char *name; /* interned */
    uint64_t hash;
    int32_t out;      /* first edge from this class, or -1 */
} lclass;

/* The order from -> to: `to` taken while `from` was held, first seen by
 * task or thread `who`. */
typedef struct ledge {
    int32_t from, to;
    int32_t next_out;      /* next edge from the same class */
    bool reported;         /* its pair of classes has been reported */
    int from_mode, to_mode;
    const char *from_site; /* where `from` was taken (interned) */
    const char *to_site;   /* where `to` was taken */
    const char *who;       /* the context's name */
    const char *spawn_site; /* its spawn site, or NULL */
} ledge;

static lclass classes[MAX_CLASSES];
static int32_t nclasses;
static ledge edges[MAX_EDGES];
static int32_t nedges;
static int32_t class_slot[CLASS_SLOTS]; /* class index + 1; 0 = empty */
static int32_t edge_slot[EDGE_SLOTS];   /* edge index + 1; 0 = empty */
static uint64_t chain_slot[CHAIN_SLOTS]; /* chain hash; 0 = empty */
static size_t nchains;
static char *str_slot[STR_SLOTS];
static size_t nstrs;
static bool full, full_told;
static uint64_t validations, cached;

/* Breadth-first search state (one search at a time: under the lock). */
static uint32_t mark[MAX_CLASSES], mark_gen;
static int32_t via[MAX_CLASSES]; /* the edge that reached each class */
static int32_t queue[MAX_CLASSES];
static int32_t path[MAX_CLASSES]; /* the path found (not on a task stack) */

static const char unknown[] = "?";

/* ------------------------------------------------------------- hashing */

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

static uint64_t str_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ull;
    }
    return mix(h);
}

/* ------------------------------------------------------------- strings */

/* A copy of s that lives until the graph is reset, shared by equal
 * strings; `unknown` if the table or memory is exhausted, NULL for NULL. */
static const char *intern(const char *s)
{
    if (!s)
        return NULL;
    size_t i = str_hash(s) & (STR_SLOTS - 1);
    for (; str_slot[i]; i = (i + 1) & (STR_SLOTS - 1))
        if (!strcmp(str_slot[i], s))
            return str_slot[i];
    if (nstrs >= STR_SLOTS / 4 * 3)
        return unknown;
    char *c = strdup(s);
    if (!c)
        return unknown;
    str_slot[i] = c;
    nstrs++;
    return c;
}

/* --------------------------------------------------------------- graph */

static void tell_full(void)
{
    full = true;
    if (full_told)
        return;
    full_told = true;
    fprintf(stderr,
            "squirrel check: the lock-order graph is full (%d classes, %d "
            "orders at most); new lock classes and orders are not checked\n",
            MAX_CLASSES, MAX_EDGES);
}

/* The class named `name` (hash h), added if new: its index, or -1 if the
 * graph has no room for it. */
static int32_t class_get(const char *name, uint64_t h)
{
    size_t i = h & (CLASS_SLOTS - 1);
    for (; class_slot[i]; i = (i + 1) & (CLASS_SLOTS - 1)) {
        lclass *c = &classes[class_slot[i] - 1];
        if (c->hash == h && !strcmp(c->name, name))
            return class_slot[i] - 1;
    }
    const char *copy = nclasses < MAX_CLASSES ? intern(name) : NULL;
    if (!copy || copy == unknown) {
        tell_full();
        return -1;
    }
    int32_t n = nclasses++;
    classes[n] = (lclass){.name = copy, .hash = h, .out = -1};
    class_slot[i] = n + 1;
    return n;
}

static size_t edge_bucket(int32_t from, int32_t to)
{
    return mix(((uint64_t)(uint32_t)from << 32) | (uint32_t)to) &
           (EDGE_SLOTS - 1);
}

/* The edge from -> to, or -1. */
static int32_t edge_find(int32_t from, int32_t to)
{
    for (size_t i = edge_bucket(from, to); edge_slot[i];
         i = (i + 1) & (EDGE_SLOTS - 1)) {
        ledge *e = &edges[edge_slot[i] - 1];
        if (e->from == from && e->to == to)
            return edge_slot[i] - 1;
    }
    return -1;
}

/* Records from -> to (known to be new), first seen with `h` held and
 * `to` taken by ctx at `site`: its index, or -1 if the graph is full. */
static int32_t edge_add(int32_t from, int32_t to, const sq__hold *h,
                        const sq__cctx *ctx, int mode, const char *site)
{
    if (nedges >= MAX_EDGES) {
        tell_full();
        return -1;
    }
    size_t i = edge_bucket(from, to);
    while (edge_slot[i])
        i = (i + 1) & (EDGE_SLOTS - 1);
    int32_t n = nedges++;
    edges[n] = (ledge){
        .from = from,
        .to = to,
        .next_out = classes[from].out,
        .from_mode = h->mode,
        .to_mode = mode,
        .from_site = intern(h->site),
        .to_site = intern(site),
        .who = intern(ctx->name),
        .spawn_site = intern(ctx->spawn_site),
    };
    classes[from].out = n;
    edge_slot[i] = n + 1;
    return n;
}

/* Searches breadth-first for a path from -> ... -> to; if there is one,
 * stores its edges in path[] (first edge first) and returns their count,
 * else returns 0.  Each class is visited at most once. */
static int path_find(int32_t from, int32_t to)
{
    if (++mark_gen == 0) {
        memset(mark, 0, sizeof mark);
        mark_gen = 1;
    }
    int head = 0, tail = 0;
    queue[tail++] = from;
    mark[from] = mark_gen;
    via[from] = -1;
    while (head < tail) {
        int32_t c = queue[head++];
        for (int32_t e = classes[c].out; e >= 0; e = edges[e].next_out) {
            int32_t d = edges[e].to;
            if (mark[d] == mark_gen)
                continue;
            mark[d] = mark_gen;
            via[d] = e;
            if (d == to) {
                int n = 0;
                for (int32_t x = d; via[x] >= 0; x = edges[via[x]].from)
                    n++;
                int k = n;
                for (int32_t x = d; via[x] >= 0; x = edges[via[x]].from)
                    path[--k] = via[x];
                return n;
            }
            queue[tail++] = d;
        }
    }
    return 0;
}

/* ------------------------------------------------------------- chains */

/* True if the chain was validated before; else remembers it (if there is
 * room) and returns false. */
static bool chain_seen(uint64_t h)
{
    if (h == 0)
        h = 1;
    size_t i = h & (CHAIN_SLOTS - 1);
    for (; chain_slot[i]; i = (i + 1) & (CHAIN_SLOTS - 1))
        if (chain_slot[i] == h)
            return true;
    if (nchains < CHAIN_MAX) {
        chain_slot[i] = h;
        nchains++;
    }
    return false;
}

/* ------------------------------------------------------------- reports */

/* Starts the report: who takes what.  Returns NULL if out of memory. */
static sq__report *report_start(const sq__cctx *ctx, const void *lock,
                                const char *cls, int mode, const char *site)
{
    sq__report *r = malloc(sizeof *r);
    if (!r)
        return NULL;
    sq__report_init(r, SQ_CHECK_LOCK_ORDER);
    sq__report_add(r, "  ");
    sq__put_who(&r->text, ctx->name, ctx->spawn_site);
    sq__report_add(r, "\n  takes %s %s (%p) at %s\n",
                   sq__mode_text(mode == SQ__LOCK_SHARED), cls, lock, site);
    return r;
}

static void report_hold(sq__report *r, const sq__hold *h, int64_t now)
{
    sq__put_hold(&r->text, "  ", "while holding", h->mode == SQ__LOCK_SHARED,
                 h->cls, h->lock, h->site, now - h->since);
}

static void add_edge(sq__report *r, const ledge *e)
{
    sq__report_add(r, "    %s -> %s: ", classes[e->from].name,
                   classes[e->to].name);
    sq__put_who(&r->text, e->who ? e->who : "?", e->spawn_site);
    sq__report_add(r, " took %s %s at %s while holding %s %s taken at %s\n",
                   sq__mode_text(e->to_mode == SQ__LOCK_SHARED),
                   classes[e->to].name, e->to_site,
                   sq__mode_text(e->from_mode == SQ__LOCK_SHARED),
                   classes[e->from].name, e->from_site);
}

/* ---------------------------------------------------------- validation */

sq__report *sq__lockdep_acquire(sq__cctx *ctx, const void *lock,
                                const char *cls, int mode, const char *site,
                                bool trylock)
{
    if (trylock || !ctx->holds)
        return NULL; /* cannot wait / orders nothing */
    uint64_t hnew = str_hash(cls);
    uint64_t chain = 0x9e3779b97f4a7c15ull;
    for (const sq__hold *h = ctx->holds; h; h = h->cnext) {
        /* A hold of the very lock taken is left out below: mark it, so
         * the chain differs from one with another lock of its class. */
        uint64_t same = h->lock == lock ? 0x5bd1e995ull : 0;
        chain = mix(chain ^ str_hash(h->cls) ^ same) + 0x632be59bd9b4e019ull;
    }
    chain = mix(chain ^ hnew);
    if (chain_seen(chain)) {
        cached++;
        return NULL;
    }
    validations++;
    int32_t to = class_get(cls, hnew);
    if (to < 0)
        return NULL;
    sq__report *r = NULL;
    int64_t now = sq_now();
    for (const sq__hold *h = ctx->holds; h; h = h->cnext) {
        if (h->lock == lock)
            continue; /* taken again: a hand-off wait or a real deadlock */
        int32_t from = class_get(h->cls, str_hash(h->cls));
        if (from < 0 || edge_find(from, to) >= 0)
            continue; /* an order seen before: validated then */
        int32_t e = edge_add(from, to, h, ctx, mode, site);
        if (e < 0)
            continue;
        if (from == to) {
            /* Same-class nesting: the edge A -> A, new, so the first. */
            edges[e].reported = true;
            if (!r)
                r = report_start(ctx, lock, cls, mode, site);
            if (!r)
                continue;
            report_hold(r, h, now);
            sq__report_add(r, "  another lock of the same class %s: two "
                              "tasks or threads nesting two locks of one "
                              "class in opposite orders wait for each other "
                              "forever (give them distinct classes if they "
                              "are always taken in one order)\n",
                           cls);
            continue;
        }
        int32_t back = edge_find(to, from);
        if (back >= 0 && edges[back].reported)
            continue; /* this pair of classes was reported already */
        int n = path_find(to, from);
        if (n == 0)
            continue;
        edges[e].reported = true;
        if (!r)
            r = report_start(ctx, lock, cls, mode, site);
        if (!r)
            continue;
        report_hold(r, h, now);
        sq__report_add(r, "  but %s was taken before %s elsewhere (the "
                          "earlier order):\n", cls, h->cls);
        for (int i = 0; i < n; i++)
            add_edge(r, &edges[path[i]]);
        sq__report_add(r, "  two tasks or threads, each in one of these "
                          "orders, can wait for each other forever\n");
    }
    if (r) {
        sq__report_add(r, "  where it takes %s:\n", cls);
        sq__report_backtrace(r, 1);
    }
    return r;
}

/* ------------------------------------------------------------- the API */

void sq_check_get_order_stats(sq_check_order_stats *out)
{
    pthread_mutex_lock(&sq__check_lock);
    *out = (sq_check_order_stats){
        .classes = (size_t)nclasses,
        .edges = (size_t)nedges,
        .chains = nchains,
        .validations = validations,
        .cached = cached,
        .full = full,
    };
    pthread_mutex_unlock(&sq__check_lock);
}

void sq_check_reset_order_graph(void)
{
    pthread_mutex_lock(&sq__check_lock);
    for (size_t i = 0; i < STR_SLOTS && nstrs; i++)
        if (str_slot[i]) {
            free(str_slot[i]);
            str_slot[i] = NULL;
            nstrs--;
        }
    nclasses = nedges = 0;
    memset(class_slot, 0, sizeof class_slot);
    memset(edge_slot, 0, sizeof edge_slot);
    memset(chain_slot, 0, sizeof chain_slot);
    nchains = 0;
    full = full_told = false;
    validations = cached = 0;
    pthread_mutex_unlock(&sq__check_lock);
}

typedef struct owned_graph {
    sq_check_order_graph pub; /* first: the caller's pointer is to it */
    sq__arena arena;
} owned_graph;

int sq_check_order_graph_take(sq_check_order_graph **out)
{
#if !SQ_CHECKS
    if (out)
        *out = NULL;
    return out ? -ENOTSUP : -EINVAL;
#else
    if (!out)
        return -EINVAL;
    owned_graph *o = calloc(1, sizeof *o);
    *out = NULL;
    if (!o)
        return -ENOMEM;
    sq__arena *a = &o->arena;
    sq_check_order_graph *g = &o->pub;
    pthread_mutex_lock(&sq__check_lock);
    sq_check_order_class *cl =
        sq__arena_array(a, (size_t)nclasses, sizeof *cl);
    sq_check_order_edge *ed = sq__arena_array(a, (size_t)nedges, sizeof *ed);
    for (int32_t i = 0; cl && i < nclasses; i++)
        cl[i].name = sq__arena_str(a, classes[i].name);
    for (int32_t i = 0; ed && i < nedges; i++) {
        const ledge *e = &edges[i];
        ed[i] = (sq_check_order_edge){
            .from = (size_t)e->from,
            .to = (size_t)e->to,
            .from_shared = e->from_mode == SQ__LOCK_SHARED,
            .to_shared = e->to_mode == SQ__LOCK_SHARED,
            .from_site = sq__arena_str(a, e->from_site),
            .to_site = sq__arena_str(a, e->to_site),
            .first_by = sq__arena_str(a, e->who ? e->who : unknown),
            .first_by_spawn_site = sq__arena_str(a, e->spawn_site),
            .reported = e->reported,
        };
    }
    g->stats = (sq_check_order_stats){
        .classes = (size_t)nclasses,
        .edges = (size_t)nedges,
        .chains = nchains,
        .validations = validations,
        .cached = cached,
        .full = full,
    };
    pthread_mutex_unlock(&sq__check_lock);
    if (a->failed) {
        sq_check_order_graph_free(g);
        return -ENOMEM;
    }
    g->classes = cl;
    g->nclasses = g->stats.classes;
    g->edges = ed;
    g->nedges = g->stats.edges;
    *out = g;
    return 0;
#endif
}

void sq_check_order_graph_free(sq_check_order_graph *g)
{
    if (!g)
        return;
    owned_graph *o = (owned_graph *)(void *)g;
    sq__arena_free(&o->arena);
    free(o);
}
