/* Deadlocks that did happen: the wait-for graph, its search and the
 * watchdog that runs it.
 *
 * The graph.  A context (task or plain thread, see context.h) that is
 * trying to take a lock (between the lock_acquire and the lock_acquired
 * or lock_abandon hooks: sq__cctx.acquiring) waits for every context that
 * holds that lock in a conflicting mode: a writer (or a mutex locker)
 * waits for every holder, a reader waits for a writer that holds the
 * lock.  A reader that finds only readers holding the lock yet waits is
 * queued behind a writer (the locks are FIFO), so it waits for each
 * writer queued on that lock, which waits in turn for the readers.  A
 * cycle in this graph is a deadlock: no context in it can go on until
 * another one in it does.  Each cycle is reported once, when first seen,
 * and forgotten once a search no longer sees it (so a deadlock that
 * comes back later is reported again).
 *
 * Found: every cycle of tasks and plain threads through task-aware locks
 * (sq_mutex, sq_rwlock) taken while the checks were on, whether its waits
 * have deadlines or not, on demand (sq_check_deadlocks), by the watchdog
 * every sq_check_config.watchdog_ns, and whenever a lock wait times out.
 *
 * Not found: waits on anything but these locks (channels, semaphores,
 * notify, joins: they have no holder), locks taken before the checks were
 * switched on (no holder is known), and a context waiting for a lock it
 * holds itself, directly or as a reader asking again for a read lock it
 * holds while a writer is queued (locks are not owner-bound: another task
 * may be about to unlock it for it, a hand-off the tests use on purpose;
 * the lock-order check is the place for recursive locking).  Two readers
 * that both ask to write the lock they share are a cycle, and found.
 * Reported wrongly: a cycle through a lock that its taker passed to a
 * task outside the cycle without declaring it (sq_check_lock_transfer),
 * which was about to unlock it; the report then names a deadlock that the
 * hand-off resolves.  Declared, the hold is in transit, charged to no
 * context, so it makes no edge.
 *
 * The watchdog thread that runs the search is in watchdog.c.
 *
 * Cost.  A search copies nothing and holds sq__check_lock for O(V + E)
 * over the waiting contexts (Tarjan's strongly connected components),
 * plus the walk of the cycles themselves, bounded by DL_MAX_STEPS.
 * Reports are made after the lock is released. */
#include "deadlock.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "squirrel/check.h"

#include "render.h"
#include "report.h"

/* Bounds on one search: cycles reported, and edges followed while
 * enumerating them (pathological graphs of many readers and writers have
 * exponentially many cycles; real deadlocks have a handful). */
#define DL_MAX_CYCLES 64
#define DL_MAX_STEPS (1 << 20)

/* ------------------------------------------------------------ the graph */

typedef struct dl_edge {
    int to;
    const sq__hold *hold; /* NULL: queued behind the writer `to` */
} dl_edge;

typedef struct dl_graph {
    int n;             /* nodes: the contexts trying to take a lock */
    sq__cctx **ctx;    /* sorted by address */
    int *first;        /* node i's edges: edge[first[i] .. first[i + 1]) */
    dl_edge *edge;
    int nedges, cap;
    int *writers;      /* nodes waiting to write-lock, sorted by lock */
    int nwriters;
} dl_graph;

static int cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) * (void *const *)a;
    uintptr_t y = (uintptr_t) * (void *const *)b;
    return x < y ? -1 : x > y;
}

static int cmp_writer(const void *a, const void *b, void *graph)
{
    const dl_graph *g = graph;
    uintptr_t x = (uintptr_t)g->ctx[*(const int *)a]->acquiring;
    uintptr_t y = (uintptr_t)g->ctx[*(const int *)b]->acquiring;
    if (x != y)
        return x < y ? -1 : 1;
    return *(const int *)a - *(const int *)b;
}

static int node_of(const dl_graph *g, const sq__cctx *c)
{
    sq__cctx **p = bsearch(&c, g->ctx, (size_t)g->n, sizeof *g->ctx, cmp_ptr);
    return p ? (int)(p - g->ctx) : -1;
}

static bool add_edge(dl_graph *g, int from, int to, const sq__hold *hold)
{
    for (int e = g->first[from]; e < g->nedges; e++)
        if (g->edge[e].to == to)
            return true; /* several read holds of one reader: one edge */
    if (g->nedges == g->cap) {
        int cap = g->cap ? 2 * g->cap : 64;
        dl_edge *e = realloc(g->edge, (size_t)cap * sizeof *e);
        if (!e)
            return false;
        g->edge = e;
        g->cap = cap;
    }
    g->edge[g->nedges++] = (dl_edge){to, hold};
    return true;
}

/* True if c is suspended in its lock wait, not merely on its way to a
 * lock it is about to get: used before trusting "a reader waits behind a
 * queued writer", the one edge that holds alone do not prove. */
static bool really_waits(const sq__cctx *c)
{
    if (!c->task || c->task == sq__task_current())
        return true; /* a thread (trusted), or the caller: its wait ended */
    return sq__task_waiting_of(c->task) !=
           NULL;
}

/* Adds the queued-behind-a-writer edges of reader node i. */
static bool add_writer_edges(dl_graph *g, int i)
{
    const void *lock = g->ctx[i]->acquiring;
    int lo = 0, hi = g->nwriters;
    while (lo < hi) { /* first writer waiting for `lock` */
        int mid = (lo + hi) / 2;
        if ((uintptr_t)g->ctx[g->writers[mid]]->acquiring < (uintptr_t)lock)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (int k = lo; k < g->nwriters; k++) {
        int w = g->writers[k];
        if (g->ctx[w]->acquiring != lock)
            break;
        if (!add_edge(g, i, w, NULL))
            return false;
    }
    return true;
}

static void graph_free(dl_graph *g)
{
    free(g->ctx);
    free(g->first);
    free(g->edge);
    free(g->writers);
}

/* Builds the graph from the contexts.  Under sq__check_lock. */
static int graph_build(dl_graph *g)
{
    memset(g, 0, sizeof *g);
    int n = 0;
    SQ__LIST_FOREACH(it, &sq__check_contexts)
        n += sq__cctx_of(it)->acquiring != NULL;
    if (n == 0)
        return 0;
    g->ctx = malloc((size_t)n * sizeof *g->ctx);
    g->first = malloc((size_t)(n + 1) * sizeof *g->first);
    g->writers = malloc((size_t)n * sizeof *g->writers);
    if (!g->ctx || !g->first || !g->writers)
        return -ENOMEM;
    SQ__LIST_FOREACH(it, &sq__check_contexts)
        if (sq__cctx_of(it)->acquiring)
            g->ctx[g->n++] = sq__cctx_of(it);
    qsort(g->ctx, (size_t)n, sizeof *g->ctx, cmp_ptr);
    for (int i = 0; i < n; i++)
        if (g->ctx[i]->acquiring_mode == SQ__LOCK_EXCL)
            g->writers[g->nwriters++] = i;
    qsort_r(g->writers, (size_t)g->nwriters, sizeof *g->writers, cmp_writer,
            g);

    for (int i = 0; i < n; i++) {
        sq__cctx *c = g->ctx[i];
        g->first[i] = g->nedges;
        bool writer_holds = false, reader_holds = false, own = false;
        for (sq__hold *h = sq__check_holds_of(c->acquiring); h; h = h->hnext) {
            if (h->lock != c->acquiring)
                continue;
            if (h->mode == SQ__LOCK_EXCL)
                writer_holds = true;
            else
                reader_holds = true;
            if (h->owner == c) {
                own = true;
                continue; /* waits for itself: see the top of the file */
            }
            if (c->acquiring_mode == SQ__LOCK_SHARED &&
                h->mode == SQ__LOCK_SHARED)
                continue; /* readers do not exclude each other */
            int j = node_of(g, h->owner);
            if (j >= 0 && !add_edge(g, i, j, h))
                return -ENOMEM;
        }
        if (c->acquiring_mode == SQ__LOCK_SHARED && reader_holds &&
            !writer_holds && !own && really_waits(c) &&
            !add_writer_edges(g, i))
            return -ENOMEM;
    }
    g->first[n] = g->nedges;
    return 0;
}

/* Tarjan's strongly connected components, without recursion (a search
 * may run on a small task stack).  Sets comp[v] to v's component, or -1
 * if v is alone in it (no self edges: then it is on no cycle). */
static int graph_components(const dl_graph *g, int *comp)
{
    int n = g->n;
    int *index = malloc((size_t)n * sizeof *index);
    int *low = malloc((size_t)n * sizeof *low);
    int *stack = malloc((size_t)n * sizeof *stack);
    int *cv = malloc((size_t)n * sizeof *cv); /* the DFS: node, next edge */
    int *ce = malloc((size_t)n * sizeof *ce);
    bool *on = calloc((size_t)n, sizeof *on);
    int rc = -ENOMEM;
    if (!index || !low || !stack || !cv || !ce || !on)
        goto out;
    for (int v = 0; v < n; v++)
        index[v] = -1;
    int next_index = 0, sp = 0, ncomp = 0;
    for (int s = 0; s < n; s++) {
        if (index[s] >= 0)
            continue;
        int depth = 0;
        cv[0] = s;
        ce[0] = g->first[s];
        index[s] = low[s] = next_index++;
        stack[sp++] = s;
        on[s] = true;
        depth = 1;
        while (depth > 0) {
            int v = cv[depth - 1];
            if (ce[depth - 1] < g->first[v + 1]) {
                int w = g->edge[ce[depth - 1]++].to;
                if (index[w] < 0) {
                    index[w] = low[w] = next_index++;
                    stack[sp++] = w;
                    on[w] = true;
                    cv[depth] = w;
                    ce[depth] = g->first[w];
                    depth++;
                } else if (on[w] && index[w] < low[v]) {
                    low[v] = index[w];
                }
                continue;
            }
            depth--;
            if (low[v] == index[v]) {
                int size = 0, top = sp;
                do {
                    on[stack[--sp]] = false;
                    size++;
                } while (stack[sp] != v);
                for (int k = sp; k < top; k++)
                    comp[stack[k]] = size > 1 ? ncomp : -1;
                ncomp++;
            }
            if (depth > 0) {
                int u = cv[depth - 1];
                if (low[v] < low[u])
                    low[u] = low[v];
            }
        }
    }
    rc = 0;
out:
    free(index);
    free(low);
    free(stack);
    free(cv);
    free(ce);
    free(on);
    return rc;
}

/* Step k of a cycle in the public form: c waits for its lock, which the
 * next step's context holds through `hold` (NULL: c is a reader queued
 * behind that context, a writer).  Borrows c's strings. */
static void step_of(const sq__cctx *c, const sq__hold *hold, int64_t now,
                    sq_check_cycle_step *step, sq_check_hold *h)
{
    *step = (sq_check_cycle_step){
        .name = c->name,
        .task_id = c->task ? c->task_id : 0,
        .spawn_site = c->spawn_site,
        .lock = c->acquiring,
        .cls = c->acquiring_cls ? c->acquiring_cls : "?",
        .shared = c->acquiring_mode == SQ__LOCK_SHARED,
        .site = c->acquiring_site ? c->acquiring_site : "?",
        .next_holds = NULL,
    };
    if (!hold)
        return;
    *h = (sq_check_hold){
        .lock = hold->lock,
        .cls = hold->cls,
        .shared = hold->mode == SQ__LOCK_SHARED,
        .site = hold->site,
        .age_ns = now - hold->since,
        .holder = hold->owner->name,
        .holder_task_id = hold->owner->task ? hold->owner->task_id : 0,
    };
    step->next_holds = h;
}

/* The elementary cycles, each once: from each node s, the cycles whose
 * smallest node is s, walking only s's component.  Each is handed to fn
 * in the public form (sq_check_cycle), borrowing the contexts' strings. */
static int graph_cycles(const dl_graph *g, const int *comp, int64_t now,
                        sq__cycle_fn *fn, void *arg)
{
    int n = g->n;
    int *pv = malloc((size_t)n * sizeof *pv); /* the path: nodes ... */
    int *pe = malloc((size_t)n * sizeof *pe); /* ... and their next edge */
    bool *on = calloc((size_t)n, sizeof *on);
    sq_check_cycle_step *steps = malloc((size_t)n * sizeof *steps);
    sq_check_hold *holds = malloc((size_t)n * sizeof *holds);
    sq__cctx **ctxs = malloc((size_t)n * sizeof *ctxs);
    int found = 0;
    long budget = DL_MAX_STEPS;
    if (!pv || !pe || !on || !steps || !holds || !ctxs) {
        found = -ENOMEM;
        goto out;
    }
    for (int s = 0; s < n && found < DL_MAX_CYCLES && budget > 0; s++) {
        if (comp[s] < 0)
            continue;
        int len = 1;
        pv[0] = s;
        pe[0] = g->first[s];
        on[s] = true;
        while (len > 0) {
            int v = pv[len - 1];
            if (pe[len - 1] >= g->first[v + 1] || budget <= 0 ||
                found >= DL_MAX_CYCLES) {
                on[v] = false;
                len--;
                continue;
            }
            budget--;
            int w = g->edge[pe[len - 1]++].to;
            if (w == s) {
                for (int k = 0; k < len; k++)
                    ctxs[k] = g->ctx[pv[k]];
                for (int k = 0; k < len; k++)
                    step_of(ctxs[k], g->edge[pe[k] - 1].hold, now, &steps[k],
                            &holds[k]);
                fn(&(sq_check_cycle){.nsteps = (size_t)len, .steps = steps},
                   ctxs, arg);
                found++;
            } else if (w > s && comp[w] == comp[s] && !on[w]) {
                pv[len] = w;
                pe[len] = g->first[w];
                on[w] = true;
                len++;
            }
        }
    }
out:
    free(pv);
    free(pe);
    free(on);
    free(steps);
    free(holds);
    free(ctxs);
    return found;
}

int sq__deadlock_each(int64_t now, sq__cycle_fn *fn, void *arg)
{
    dl_graph g;
    int rc = graph_build(&g);
    if (rc == 0 && g.n > 1) {
        int *comp = malloc((size_t)g.n * sizeof *comp);
        rc = comp ? graph_components(&g, comp) : -ENOMEM;
        if (rc == 0)
            rc = graph_cycles(&g, comp, now, fn, arg);
        free(comp);
    }
    graph_free(&g);
    return rc;
}

/* ------------------------------------------------- the cycles reported */

/* A cycle as remembered: its contexts and locks, starting at the context
 * with the lowest address (a cycle is the same whichever member a search
 * finds it from).  The task id guards against a context's memory being
 * reused by another task.  Guarded by sq__check_lock. */
typedef struct dl_member {
    const void *ctx;
    uint64_t task_id;
    const void *lock;
} dl_member;

typedef struct dl_known {
    struct dl_known *next;
    bool seen; /* by the search in progress */
    int n;
    dl_member m[];
} dl_known;

static dl_known *known;

/* Fills m[0..n) with the cycle's members, rotated to the canonical start. */
static void cycle_members(const sq_check_cycle *c, sq__cctx *const *ctx,
                          dl_member *m)
{
    size_t n = c->nsteps, first = 0;
    for (size_t k = 1; k < n; k++)
        if ((uintptr_t)ctx[k] < (uintptr_t)ctx[first])
            first = k;
    for (size_t k = 0; k < n; k++) {
        size_t x = (first + k) % n;
        m[k] = (dl_member){ctx[x], ctx[x]->task_id, c->steps[x].lock};
    }
}

/* Marks the cycle seen; true if it was known already (or cannot be
 * remembered: better one missed report than one per search forever). */
static bool known_mark(const sq_check_cycle *c, sq__cctx *const *ctx)
{
    int n = (int)c->nsteps;
    dl_known *k = malloc(sizeof *k + (size_t)n * sizeof k->m[0]);
    if (!k)
        return true;
    k->n = n;
    k->seen = true;
    cycle_members(c, ctx, k->m);
    for (dl_known *p = known; p; p = p->next)
        if (p->n == n && !memcmp(p->m, k->m, (size_t)n * sizeof k->m[0])) {
            p->seen = true;
            free(k);
            return true;
        }
    k->next = known;
    known = k;
    return false;
}

/* Forgets the cycles this search did not see, and unmarks the others. */
static void known_sweep(void)
{
    for (dl_known **p = &known; *p;) {
        dl_known *k = *p;
        if (!k->seen) {
            *p = k->next;
            free(k);
        } else {
            k->seen = false;
            p = &k->next;
        }
    }
}

/* --------------------------------------------------------- the reports */

typedef struct dl_search {
    const char *why;
    int64_t now;
    int total, fresh;
    sq__report *out;
    int nout;
} dl_search;

static void on_cycle(const sq_check_cycle *c, sq__cctx *const *ctx,
                     void *arg)
{
    dl_search *S = arg;
    S->total++;
    if (known_mark(c, ctx))
        return;
    S->fresh++;
    sq__report *r = &S->out[S->nout++];
    sq__report_init(r, SQ_CHECK_DEADLOCK);
    sq__report_add(r, "  found by: %s\n", S->why);
    sq__report_add(r,
                   "  %zu tasks or threads wait for each other in a cycle:\n"
                   "  each waits for a lock the next one holds, the last"
                   " for one the first holds\n",
                   c->nsteps);
    sq__cycle_text(&r->text, "", c);
}

/* Searches, reports the cycles not reported yet, and forgets those gone.
 * Returns the new cycles, or -ENOMEM; *total gets every cycle seen. */
static int search(const char *why, int *total)
{
    dl_search S = {.why = why, .now = sq_now()};
    S.out = malloc(DL_MAX_CYCLES * sizeof *S.out);
    if (!S.out)
        return -ENOMEM;
    pthread_mutex_lock(&sq__check_lock);
    int rc = sq__deadlock_each(S.now, on_cycle, &S);
    if (rc >= 0)
        known_sweep(); /* a failed search saw too little to forget by */
    pthread_mutex_unlock(&sq__check_lock);
    for (int i = 0; i < S.nout; i++)
        sq__report_emit(&S.out[i]);
    free(S.out);
    if (total)
        *total = S.total;
    return rc < 0 ? rc : S.fresh;
}

int sq__deadlock_search(const char *why)
{
    return search(why, NULL);
}

int sq_check_deadlocks(void)
{
#if !SQ_CHECKS
    return -ENOTSUP;
#else
    int total = 0;
    int rc = search("an on-demand search (sq_check_deadlocks)", &total);
    return rc < 0 ? rc : total;
#endif
}
