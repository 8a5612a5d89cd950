/* The lock-order check (SQ_CHECK_LOCK_ORDER): an inversion is reported
 * once, before any deadlock, naming both classes, every site and the
 * tasks or threads; a longer cycle names its path; consistent orders,
 * repeated by many tasks and threads, report nothing and are validated
 * once per chain; trylocks add no order; two locks of one class nested are
 * reported; the graph stops at its bounds and says so once; the graph
 * handed out (sq_check_order_graph_take) lists every class and order with
 * its sites and first taker. */
#include "testlib.h"

#include "squirrel/check.h"
#include "squirrel/rwlock.h"
#include "squirrel/sync.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

/* ---------------------------------------------------- capturing reports */

#define MAX_REPORTS 16
static pthread_mutex_t rep_lock = PTHREAD_MUTEX_INITIALIZER;
static char *reports[MAX_REPORTS];
static int nreports; /* lock-order reports, even past MAX_REPORTS */
static int nother;   /* reports of any other finding (must stay 0) */
static sq_check_config saved;

static void capture(unsigned finding, const char *text, void *arg)
{
    (void)arg;
    pthread_mutex_lock(&rep_lock);
    if (finding != SQ_CHECK_LOCK_ORDER) {
        nother++;
        fprintf(stderr, "unexpected report:\n%s", text);
    } else {
        if (getenv("SQ_TEST_SHOW_REPORTS")) /* to read them */
            fputs(text, stderr);
        if (nreports < MAX_REPORTS)
            reports[nreports] = strdup(text);
        nreports++;
    }
    pthread_mutex_unlock(&rep_lock);
}

static int report_count(void)
{
    pthread_mutex_lock(&rep_lock);
    int n = nreports;
    pthread_mutex_unlock(&rep_lock);
    return n;
}

static void forget_reports(void)
{
    pthread_mutex_lock(&rep_lock);
    for (int i = 0; i < MAX_REPORTS; i++) {
        free(reports[i]);
        reports[i] = NULL;
    }
    nreports = nother = 0;
    pthread_mutex_unlock(&rep_lock);
}

/* The order check alone, reports captured, a fresh graph. */
static void begin(void)
{
    sq_check_get_config(&saved);
    sq_check_config c = {.findings = SQ_CHECK_LOCK_ORDER};
    CHECK_EQ(sq_check_configure(&c), 0);
    sq_check_set_reporter(capture, NULL);
    sq_check_reset_order_graph();
    forget_reports();
}

/* Restores what begin changed (the reporter to stderr). */
static void end(void)
{
    CHECK_EQ(nother, 0);
    sq_check_set_reporter(NULL, NULL);
    CHECK_EQ(sq_check_configure(&saved), 0);
    sq_check_reset_order_graph();
    forget_reports();
}

/* Checks that report i contains s. */
static void check_has(int i, const char *s, int line)
{
    const char *r = i < MAX_REPORTS ? reports[i] : NULL;
    if (!r || !strstr(r, s)) {
        char m[512];
        snprintf(m, sizeof m, "report %d lacks \"%s\" (checked at line %d)",
                 i, s, line);
        sq_test_fail(__FILE__, __LINE__, m);
        if (r)
            fprintf(stderr, "the report:\n%s", r);
    }
}
#define HAS(i, s) check_has((i), (s), __LINE__)

static sq_check_order_stats stats(void)
{
    sq_check_order_stats s;
    sq_check_get_order_stats(&s);
    return s;
}

/* Where each lock call was made: the SQ_SITE of the call, taken on the
 * same line as the call. */
typedef struct sites {
    const char *a, *b, *c;
} sites;

typedef struct locks {
    sq_mutex a, b, c;
    sites s[8];  /* per step */
    int step;
} locks;

static void init_locks(locks *l)
{
    memset(l, 0, sizeof *l);
    CHECK_EQ(sq_mutex_init_named(&l->a, "A"), 0);
    CHECK_EQ(sq_mutex_init_named(&l->b, "B"), 0);
    CHECK_EQ(sq_mutex_init_named(&l->c, "C"), 0);
}

/* Each runs one order, records its sites in l->s[l->step] and releases. */
static void *take_ab(void *arg)
{
    locks *l = arg;
    sites *s = &l->s[l->step];
    CHECK_EQ(sq_mutex_lock(&l->a), 0); s->a = SQ_SITE;
    CHECK_EQ(sq_mutex_lock(&l->b), 0); s->b = SQ_SITE;
    CHECK_EQ(sq_mutex_unlock(&l->b), 0);
    CHECK_EQ(sq_mutex_unlock(&l->a), 0);
    return NULL;
}

static void *take_ba(void *arg)
{
    locks *l = arg;
    sites *s = &l->s[l->step];
    CHECK_EQ(sq_mutex_lock(&l->b), 0); s->b = SQ_SITE;
    CHECK_EQ(sq_mutex_lock(&l->a), 0); s->a = SQ_SITE;
    CHECK_EQ(sq_mutex_unlock(&l->a), 0);
    CHECK_EQ(sq_mutex_unlock(&l->b), 0);
    return NULL;
}

static void *take_bc(void *arg)
{
    locks *l = arg;
    sites *s = &l->s[l->step];
    CHECK_EQ(sq_mutex_lock(&l->b), 0); s->b = SQ_SITE;
    CHECK_EQ(sq_mutex_lock(&l->c), 0); s->c = SQ_SITE;
    CHECK_EQ(sq_mutex_unlock(&l->c), 0);
    CHECK_EQ(sq_mutex_unlock(&l->b), 0);
    return NULL;
}

static void *take_ca(void *arg)
{
    locks *l = arg;
    sites *s = &l->s[l->step];
    CHECK_EQ(sq_mutex_lock(&l->c), 0); s->c = SQ_SITE;
    CHECK_EQ(sq_mutex_lock(&l->a), 0); s->a = SQ_SITE;
    CHECK_EQ(sq_mutex_unlock(&l->a), 0);
    CHECK_EQ(sq_mutex_unlock(&l->c), 0);
    return NULL;
}

static void *take_ac(void *arg)
{
    locks *l = arg;
    sites *s = &l->s[l->step];
    CHECK_EQ(sq_mutex_lock(&l->a), 0); s->a = SQ_SITE;
    CHECK_EQ(sq_mutex_lock(&l->c), 0); s->c = SQ_SITE;
    CHECK_EQ(sq_mutex_unlock(&l->c), 0);
    CHECK_EQ(sq_mutex_unlock(&l->a), 0);
    return NULL;
}

/* Runs fn(l) as a task named `name` and waits for it to finish. */
static void run_task(const char *name, sq_task_fn fn, locks *l)
{
    sq_spawn_opts o = {.name = name};
    sq_task t;
    CHECK_EQ(sq_spawn(&t, fn, l, &o), 0);
    CHECK_EQ(sq_join(t, NULL), 0);
    l->step++;
}

/* -------------------------------------------------- two-class inversion */

static void *inversion_root(void *arg)
{
    (void)arg;
    locks l;
    init_locks(&l);
    run_task("first", take_ab, &l);   /* step 0: A then B */
    CHECK_EQ(report_count(), 0);
    run_task("second", take_ba, &l);  /* step 1: B then A, no deadlock */
    CHECK_EQ(report_count(), 1);
    HAS(0, "lock order inversion");
    HAS(0, "task 'second'");
    HAS(0, "takes lock A");
    HAS(0, "while holding lock B");
    HAS(0, l.s[1].a); /* where the second task takes A */
    HAS(0, l.s[1].b); /* where it took B */
    HAS(0, "A -> B: task 'first'");
    HAS(0, l.s[0].a); /* the earlier order: where A was taken first */
    HAS(0, l.s[0].b); /* and B while holding it */
    HAS(0, "spawned at ");
    /* Both orders again, by other tasks: the pair is reported once. */
    run_task("third", take_ba, &l);
    run_task("fourth", take_ab, &l);
    run_task("fifth", take_ba, &l);
    CHECK_EQ(report_count(), 1);
    sq_check_order_stats st = stats();
    CHECK_EQ(st.classes, 2);
    CHECK_EQ(st.edges, 2);
    CHECK(!st.full);
    CHECK_EQ(sq_mutex_destroy(&l.a), 0);
    CHECK_EQ(sq_mutex_destroy(&l.b), 0);
    return NULL;
}

TEST(two_class_inversion_is_reported_once_before_any_deadlock)
{
    begin();
    uint64_t before = sq_check_count(SQ_CHECK_LOCK_ORDER);
    sq_test_run(2, inversion_root, NULL);
    CHECK_EQ(sq_check_count(SQ_CHECK_LOCK_ORDER) - before, 1);
    end();
}

/* After a reset the same inversion is reported again. */
static void *reset_root(void *arg)
{
    (void)arg;
    locks l;
    init_locks(&l);
    run_task("ab", take_ab, &l);
    run_task("ba", take_ba, &l);
    CHECK_EQ(report_count(), 1);
    sq_check_reset_order_graph();
    sq_check_order_stats st = stats();
    CHECK_EQ(st.classes, 0);
    CHECK_EQ(st.edges, 0);
    CHECK_EQ(st.chains, 0);
    run_task("ba", take_ba, &l);
    CHECK_EQ(report_count(), 1);
    run_task("ab", take_ab, &l);
    CHECK_EQ(report_count(), 2);
    HAS(1, "takes lock B");
    HAS(1, "while holding lock A");
    HAS(1, "B -> A: task 'ba'");
    return NULL;
}

TEST(reset_forgets_the_graph)
{
    begin();
    sq_test_run(1, reset_root, NULL);
    end();
}

/* ----------------------------------------------------- the graph itself */

/* The edge from class `from` to class `to` in g, or NULL. */
static const sq_check_order_edge *edge_of(const sq_check_order_graph *g,
                                          const char *from, const char *to)
{
    for (size_t i = 0; i < g->nedges; i++) {
        const sq_check_order_edge *e = &g->edges[i];
        if (!strcmp(g->classes[e->from].name, from) &&
            !strcmp(g->classes[e->to].name, to))
            return e;
    }
    return NULL;
}

static void check_edge(const sq_check_order_graph *g, const char *from,
                       const char *to, const char *from_site,
                       const char *to_site, const char *by, bool reported)
{
    const sq_check_order_edge *e = edge_of(g, from, to);
    CHECK(e != NULL);
    if (!e)
        return;
    CHECK(!e->from_shared && !e->to_shared);
    CHECK(!strcmp(e->from_site, from_site));
    CHECK(!strcmp(e->to_site, to_site));
    CHECK(strstr(e->first_by, by) != NULL);
    CHECK(e->first_by_spawn_site &&
          strstr(e->first_by_spawn_site, "lockdep_test.c:") != NULL);
    CHECK_EQ(e->reported, reported);
}

static void *graph_root(void *arg)
{
    (void)arg;
    locks l;
    init_locks(&l);
    run_task("first", take_ab, &l);   /* A -> B */
    run_task("second", take_bc, &l);  /* B -> C */
    run_task("third", take_ca, &l);   /* C -> A closes A -> B -> C -> A */
    CHECK_EQ(report_count(), 1);

    sq_check_order_graph *g;
    CHECK_EQ(sq_check_order_graph_take(&g), 0);
    CHECK_EQ(g->nclasses, 3);
    CHECK_EQ(g->nedges, 3);
    CHECK_EQ(g->stats.classes, 3);
    CHECK_EQ(g->stats.edges, 3);
    CHECK(!g->stats.full);
    for (size_t i = 0; i < g->nedges; i++)
        CHECK(g->edges[i].from < g->nclasses && g->edges[i].to < g->nclasses);
    check_edge(g, "A", "B", l.s[0].a, l.s[0].b, "task 'first'", false);
    check_edge(g, "B", "C", l.s[1].b, l.s[1].c, "task 'second'", false);
    check_edge(g, "C", "A", l.s[2].c, l.s[2].a, "task 'third'", true);
    CHECK(edge_of(g, "A", "C") == NULL);

    char *json = NULL;
    CHECK_EQ(sq_check_order_graph_json(g, &json), 0);
    CHECK(json && strstr(json, "{\"name\": \"A\"}") != NULL);
    CHECK(json && strstr(json, "{\"from\": \"C\", \"to\": \"A\", "
                               "\"from_mode\": \"exclusive\"") != NULL);
    CHECK(json && strstr(json, "\"reported\": true}") != NULL);
    CHECK(json && strstr(json, "\"stats\": {\"classes\": 3, "
                               "\"edges\": 3,") != NULL);
    free(json);
    sq_check_order_graph_free(g);

    /* A copy: a reset does not touch it, and the next one is empty. */
    CHECK_EQ(sq_check_order_graph_take(&g), 0);
    sq_check_reset_order_graph();
    CHECK_EQ(g->nedges, 3);
    CHECK(!strcmp(g->classes[g->edges[0].from].name, "A"));
    sq_check_order_graph_free(g);
    CHECK_EQ(sq_check_order_graph_take(&g), 0);
    CHECK_EQ(g->nclasses, 0);
    CHECK_EQ(g->nedges, 0);
    sq_check_order_graph_free(g);
    return NULL;
}

TEST(order_graph_lists_classes_and_orders_with_sites_and_takers)
{
    begin();
    sq_test_run(2, graph_root, NULL);
    end();
    CHECK_EQ(sq_check_order_graph_take(NULL), -EINVAL);
    CHECK_EQ(sq_check_order_graph_json(NULL, NULL), -EINVAL);
    sq_check_order_graph_free(NULL);
}

/* ------------------------------------------------------ three-class cycle */

static void *cycle_root(void *arg)
{
    (void)arg;
    locks l;
    init_locks(&l);
    run_task("t-ab", take_ab, &l); /* step 0 */
    run_task("t-bc", take_bc, &l); /* step 1 */
    CHECK_EQ(report_count(), 0);   /* A -> B -> C: consistent so far */
    run_task("t-ca", take_ca, &l); /* step 2: C then A closes the cycle */
    CHECK_EQ(report_count(), 1);
    HAS(0, "task 't-ca'");
    HAS(0, "takes lock A");
    HAS(0, "while holding lock C");
    HAS(0, l.s[2].a);
    HAS(0, l.s[2].c);
    HAS(0, "A -> B: task 't-ab'");
    HAS(0, l.s[0].a);
    HAS(0, l.s[0].b);
    HAS(0, "B -> C: task 't-bc'");
    HAS(0, l.s[1].b);
    HAS(0, l.s[1].c);
    /* The path is listed in order: A -> B before B -> C. */
    const char *r = reports[0];
    CHECK(r && strstr(r, "A -> B") && strstr(r, "B -> C") &&
          strstr(r, "A -> B") < strstr(r, "B -> C"));
    run_task("t-ca", take_ca, &l);
    run_task("t-ab", take_ab, &l);
    CHECK_EQ(report_count(), 1);
    /* A then C directly: a new order, the reverse of C -> A, but that
     * pair of classes was just reported: once is enough. */
    run_task("t-ac", take_ac, &l);
    CHECK_EQ(report_count(), 1);
    CHECK_EQ(stats().edges, 4);
    return NULL;
}

TEST(three_class_cycle_is_reported_with_its_path)
{
    begin();
    sq_test_run(2, cycle_root, NULL);
    end();
}

/* ----------------------------------------------- consistent orders: quiet */

#define QUIET_TASKS 8
#define QUIET_THREADS 2
#define QUIET_ITERS (SQ_TEST_SLOW ? 1000 : 10000)

typedef struct quiet {
    sq_mutex a, b, c;
    long inside; /* protected by a */
    atomic_long rounds;
} quiet;

/* One round: A, B, C nested, then A, C: three ordered lock calls. */
static void quiet_round(quiet *q)
{
    CHECK_EQ(sq_mutex_lock(&q->a), 0);
    q->inside++;
    CHECK_EQ(sq_mutex_lock(&q->b), 0);
    CHECK_EQ(sq_mutex_lock(&q->c), 0);
    CHECK_EQ(sq_mutex_unlock(&q->c), 0);
    CHECK_EQ(sq_mutex_unlock(&q->b), 0);
    CHECK_EQ(sq_mutex_unlock(&q->a), 0);
    CHECK_EQ(sq_mutex_lock(&q->a), 0);
    CHECK_EQ(sq_mutex_lock(&q->c), 0);
    q->inside++;
    CHECK_EQ(sq_mutex_unlock(&q->c), 0);
    CHECK_EQ(sq_mutex_unlock(&q->a), 0);
    atomic_fetch_add(&q->rounds, 1);
}

static void *quiet_task(void *arg)
{
    for (int i = 0; i < QUIET_ITERS; i++) {
        quiet_round(arg);
        if (i % 64 == 0)
            sq_yield();
    }
    return NULL;
}

static void *quiet_thread(void *arg)
{
    for (int i = 0; i < QUIET_ITERS; i++)
        quiet_round(arg);
    return NULL;
}

static void *quiet_root(void *arg)
{
    quiet *q = arg;
    sq_task t[QUIET_TASKS];
    for (int i = 0; i < QUIET_TASKS; i++)
        CHECK_EQ(sq_spawn(&t[i], quiet_task, q, NULL), 0);
    for (int i = 0; i < QUIET_TASKS; i++)
        CHECK_EQ(sq_join(t[i], NULL), 0);
    return NULL;
}

TEST(consistent_orders_report_nothing_and_validate_each_chain_once)
{
    begin();
    quiet q = {.inside = 0};
    sq_mutex_init_named(&q.a, "qA");
    sq_mutex_init_named(&q.b, "qB");
    sq_mutex_init_named(&q.c, "qC");
    pthread_t th[QUIET_THREADS];
    for (int i = 0; i < QUIET_THREADS; i++)
        CHECK_EQ(pthread_create(&th[i], NULL, quiet_thread, &q), 0);
    sq_test_run(2, quiet_root, &q);
    for (int i = 0; i < QUIET_THREADS; i++)
        CHECK_EQ(pthread_join(th[i], NULL), 0);
    long rounds = (long)(QUIET_TASKS + QUIET_THREADS) * QUIET_ITERS;
    CHECK_EQ(atomic_load(&q.rounds), rounds);
    CHECK_EQ(q.inside, 2 * rounds);
    CHECK_EQ(report_count(), 0);
    sq_check_order_stats st = stats();
    CHECK_EQ(st.classes, 3);
    CHECK_EQ(st.edges, 3); /* qA -> qB, qA -> qC, qB -> qC */
    /* Three chains ([qA] qB, [qB qA] qC, [qA] qC), each validated once;
     * every other lock call taken while holding found its chain cached. */
    CHECK_EQ(st.validations, 3);
    CHECK_EQ(st.chains, 3);
    CHECK_EQ(st.cached, 3 * rounds - 3);
    end();
}

/* ------------------------------------------------------------- trylocks */

static void *try_inversion_task(void *arg)
{
    locks *l = arg;
    CHECK_EQ(sq_mutex_lock(&l->b), 0);
    CHECK_EQ(sq_mutex_try_lock(&l->a), 0);  /* B then A, but a try */
    /* Held after a try, A orders what is taken next: A -> C, B -> C. */
    CHECK_EQ(sq_mutex_lock(&l->c), 0);
    CHECK_EQ(sq_mutex_unlock(&l->c), 0);
    CHECK_EQ(sq_mutex_unlock(&l->a), 0);
    CHECK_EQ(sq_mutex_unlock(&l->b), 0);
    return NULL;
}

static void *try_busy_task(void *arg)
{
    locks *l = arg;
    CHECK_EQ(sq_mutex_lock(&l->b), 0);
    CHECK_EQ(sq_mutex_try_lock(&l->a), -EBUSY); /* held by the root */
    CHECK_EQ(sq_mutex_unlock(&l->b), 0);
    return NULL;
}

static void *trylock_root(void *arg)
{
    (void)arg;
    locks l;
    init_locks(&l);
    run_task("ab", take_ab, &l);
    CHECK_EQ(stats().edges, 1);
    run_task("try", try_inversion_task, &l);
    CHECK_EQ(report_count(), 0);
    CHECK_EQ(stats().edges, 3); /* A -> B, B -> C, A -> C; no B -> A */
    CHECK_EQ(sq_mutex_lock(&l.a), 0);
    run_task("busy", try_busy_task, &l);
    CHECK_EQ(sq_mutex_unlock(&l.a), 0);
    CHECK_EQ(report_count(), 0);
    CHECK_EQ(stats().edges, 3);
    /* The same inversion with a blocking call is reported. */
    run_task("ba", take_ba, &l);
    CHECK_EQ(report_count(), 1);
    HAS(0, "task 'ba'");
    return NULL;
}

TEST(trylocks_add_no_order_and_are_not_reported)
{
    begin();
    sq_test_run(2, trylock_root, NULL);
    end();
}

/* ------------------------------------------------------ same-class nesting */

typedef struct same {
    sq_mutex m[2];
    sq_mutex self;
    const char *s0, *s1, *s2;
} same;

static void *same_class_task(void *arg)
{
    same *x = arg;
    CHECK_EQ(sq_mutex_lock(&x->m[0]), 0); x->s0 = SQ_SITE;
    CHECK_EQ(sq_mutex_lock(&x->m[1]), 0); x->s1 = SQ_SITE;
    CHECK_EQ(sq_mutex_unlock(&x->m[1]), 0);
    CHECK_EQ(sq_mutex_unlock(&x->m[0]), 0);
    /* The other way round: the same pair of classes, not reported again. */
    CHECK_EQ(sq_mutex_lock(&x->m[1]), 0);
    CHECK_EQ(sq_mutex_lock(&x->m[0]), 0);
    CHECK_EQ(sq_mutex_unlock(&x->m[0]), 0);
    CHECK_EQ(sq_mutex_unlock(&x->m[1]), 0);
    return NULL;
}

/* The very same lock again is left to the deadlock check (locks are not
 * owner-bound: it may wait for a hand-off), as is a read lock re-read. */
static void *same_lock_task(void *arg)
{
    same *x = arg;
    CHECK_EQ(sq_mutex_lock(&x->self), 0);
    CHECK_EQ(sq_mutex_lock_until(&x->self, sq_now() + SQ_MSEC), -ETIMEDOUT);
    CHECK_EQ(sq_mutex_unlock(&x->self), 0);
    return NULL;
}

/* Holding the very lock does not hide another of its class. */
static void *same_lock_then_class_task(void *arg)
{
    same *x = arg;
    CHECK_EQ(sq_mutex_lock(&x->m[0]), 0);
    CHECK_EQ(sq_mutex_lock_until(&x->m[0], sq_now() + SQ_MSEC), -ETIMEDOUT);
    CHECK_EQ(sq_mutex_lock(&x->m[1]), 0); x->s2 = SQ_SITE;
    CHECK_EQ(sq_mutex_unlock(&x->m[1]), 0);
    CHECK_EQ(sq_mutex_unlock(&x->m[0]), 0);
    return NULL;
}

static void *same_root(void *arg)
{
    same *x = arg;
    sq_spawn_opts o = {.name = "nester"};
    sq_task t;
    CHECK_EQ(sq_spawn(&t, same_lock_task, x, &o), 0);
    CHECK_EQ(sq_join(t, NULL), 0);
    CHECK_EQ(report_count(), 0);
    CHECK_EQ(sq_spawn(&t, same_lock_then_class_task, x, &o), 0);
    CHECK_EQ(sq_join(t, NULL), 0);
    CHECK_EQ(report_count(), 1);
    HAS(0, "task 'nester'");
    HAS(0, "takes lock S");
    HAS(0, "while holding lock S");
    HAS(0, "same class S");
    HAS(0, x->s2);
    sq_check_reset_order_graph();
    CHECK_EQ(sq_spawn(&t, same_class_task, x, &o), 0);
    CHECK_EQ(sq_join(t, NULL), 0);
    CHECK_EQ(report_count(), 2);
    HAS(1, x->s0);
    HAS(1, x->s1);
    HAS(1, "same class S");
    return NULL;
}

TEST(nesting_two_locks_of_one_class_is_reported)
{
    begin();
    same x;
    memset(&x, 0, sizeof x);
    sq_mutex_init_named(&x.m[0], "S");
    sq_mutex_init_named(&x.m[1], "S");
    sq_mutex_init_named(&x.self, "self");
    sq_test_run(1, same_root, &x);
    end();
}

/* ----------------------------------------------------------- plain threads */

typedef struct thread_arg {
    locks *l;
    sq_task_fn fn;
    long tid;
} thread_arg;

static void *thread_body(void *arg)
{
    thread_arg *a = arg;
    a->tid = (long)gettid();
    a->fn(a->l);
    return NULL;
}

static void run_thread(sq_task_fn fn, locks *l, long *tid)
{
    thread_arg a = {.l = l, .fn = fn};
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, thread_body, &a), 0);
    CHECK_EQ(pthread_join(th, NULL), 0);
    *tid = a.tid;
    l->step++;
}

TEST(plain_threads_and_tasks_are_checked_alike)
{
    begin();
    locks l;
    init_locks(&l);
    long t0, t1;
    run_thread(take_ab, &l, &t0);
    CHECK_EQ(report_count(), 0);
    run_thread(take_ba, &l, &t1);
    CHECK_EQ(report_count(), 1);
    char name[64];
    snprintf(name, sizeof name, "thread %ld\n", t1);
    HAS(0, name);
    snprintf(name, sizeof name, "A -> B: thread %ld ", t0);
    HAS(0, name);
    HAS(0, l.s[0].a);
    HAS(0, l.s[0].b);
    HAS(0, l.s[1].a);
    HAS(0, l.s[1].b);
    /* B -> C by a thread, then C -> A by a task: the cycle A -> B -> C
     * -> A across threads and tasks.  B then A again, in a task: a pair
     * reported already, quiet. */
    run_thread(take_bc, &l, &t0);
    CHECK_EQ(report_count(), 1);
    sq_test_run(1, take_ba, &l);
    l.step++;
    CHECK_EQ(report_count(), 1);
    sq_test_run(1, take_ca, &l);
    CHECK_EQ(report_count(), 2);
    HAS(1, "task '");
    HAS(1, "takes lock A");
    HAS(1, "while holding lock C");
    snprintf(name, sizeof name, "B -> C: thread %ld ", t0);
    HAS(1, name);
    end();
}

/* ------------------------------------------------------------ class names */

/* Classes are compared by their text and the graph keeps copies: locks
 * whose names are other strings with the same text are of the same
 * classes, and the first names may be gone by the time of the report. */
TEST(classes_are_names_compared_by_text_and_copied)
{
    begin();
    char *nx = strdup("X"), *ny = strdup("Y");
    sq_mutex x, y;
    sq_mutex_init_named(&x, nx);
    sq_mutex_init_named(&y, ny);
    CHECK_EQ(sq_mutex_lock(&x), 0);
    CHECK_EQ(sq_mutex_lock(&y), 0);
    CHECK_EQ(sq_mutex_unlock(&y), 0);
    CHECK_EQ(sq_mutex_unlock(&x), 0);
    CHECK_EQ(sq_mutex_destroy(&x), 0);
    CHECK_EQ(sq_mutex_destroy(&y), 0);
    free(nx);
    free(ny);
    char bx[8], by[8];
    snprintf(bx, sizeof bx, "%s", "X");
    snprintf(by, sizeof by, "%s", "Y");
    sq_mutex_init_named(&x, bx);
    sq_mutex_init_named(&y, by);
    CHECK_EQ(sq_mutex_lock(&y), 0);
    CHECK_EQ(sq_mutex_lock(&x), 0);
    CHECK_EQ(sq_mutex_unlock(&x), 0);
    CHECK_EQ(sq_mutex_unlock(&y), 0);
    CHECK_EQ(report_count(), 1);
    HAS(0, "takes lock X");
    HAS(0, "while holding lock Y");
    HAS(0, "X -> Y");
    CHECK_EQ(stats().classes, 2);
    end();
}

/* --------------------------------------------------------------- rwlocks */

typedef struct rw {
    sq_rwlock r1, r2;
    const char *s[4];
} rw;

static void *read_12(void *arg)
{
    rw *x = arg;
    CHECK_EQ(sq_rwlock_read_lock(&x->r1), 0); x->s[0] = SQ_SITE;
    CHECK_EQ(sq_rwlock_read_lock(&x->r2), 0); x->s[1] = SQ_SITE;
    CHECK_EQ(sq_rwlock_read_unlock(&x->r2), 0);
    CHECK_EQ(sq_rwlock_read_unlock(&x->r1), 0);
    return NULL;
}

static void *read_21(void *arg)
{
    rw *x = arg;
    CHECK_EQ(sq_rwlock_read_lock(&x->r2), 0); x->s[2] = SQ_SITE;
    CHECK_EQ(sq_rwlock_read_lock(&x->r1), 0); x->s[3] = SQ_SITE;
    CHECK_EQ(sq_rwlock_read_unlock(&x->r1), 0);
    CHECK_EQ(sq_rwlock_read_unlock(&x->r2), 0);
    return NULL;
}

static void *write_21(void *arg)
{
    rw *x = arg;
    CHECK_EQ(sq_rwlock_write_lock(&x->r2), 0);
    CHECK_EQ(sq_rwlock_write_lock(&x->r1), 0);
    CHECK_EQ(sq_rwlock_write_unlock(&x->r1), 0);
    CHECK_EQ(sq_rwlock_write_unlock(&x->r2), 0);
    return NULL;
}

static void *rw_root(void *arg)
{
    rw *x = arg;
    sq_task t;
    CHECK_EQ(sq_spawn(&t, read_12, x, NULL), 0);
    CHECK_EQ(sq_join(t, NULL), 0);
    CHECK_EQ(report_count(), 0);
    /* A read-read inversion: with a fair lock, writers queued on both
     * make it a deadlock, so it is reported like any other. */
    CHECK_EQ(sq_spawn(&t, read_21, x, NULL), 0);
    CHECK_EQ(sq_join(t, NULL), 0);
    CHECK_EQ(report_count(), 1);
    HAS(0, "takes read lock R1");
    HAS(0, "while holding read lock R2");
    HAS(0, "R1 -> R2");
    for (int i = 0; i < 4; i++)
        HAS(0, x->s[i]);
    /* Write locks in the same inverted order: the same pair, quiet. */
    CHECK_EQ(sq_spawn(&t, write_21, x, NULL), 0);
    CHECK_EQ(sq_join(t, NULL), 0);
    CHECK_EQ(report_count(), 1);
    return NULL;
}

TEST(reader_writer_locks_are_ordered_in_both_modes)
{
    begin();
    rw x;
    memset(&x, 0, sizeof x);
    sq_rwlock_init_named(&x.r1, "R1");
    sq_rwlock_init_named(&x.r2, "R2");
    sq_test_run(2, rw_root, &x);
    CHECK_EQ(sq_rwlock_destroy(&x.r1), 0);
    CHECK_EQ(sq_rwlock_destroy(&x.r2), 0);
    end();
}

/* ---------------------------------------------------------------- bounds */

/* Runs fn with stderr going to a temporary file; returns how many times
 * `needle` was written there. */
static int count_on_stderr(void (*fn)(void), const char *needle)
{
    fflush(stderr);
    FILE *tmp = tmpfile();
    CHECK(tmp != NULL);
    if (!tmp)
        return -1;
    int saved_fd = dup(STDERR_FILENO);
    dup2(fileno(tmp), STDERR_FILENO);
    fn();
    fflush(stderr);
    dup2(saved_fd, STDERR_FILENO);
    close(saved_fd);
    rewind(tmp);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, tmp);
    buf[n] = '\0';
    fclose(tmp);
    int count = 0;
    for (const char *p = buf; (p = strstr(p, needle)); p++)
        count++;
    return count;
}

#define MANY_CLASSES 4100
static char class_names[MANY_CLASSES][16];
static sq_mutex many[MANY_CLASSES];

/* One lock held, 4099 others taken under it: 4100 classes, 4099 orders. */
static void fill_classes(void)
{
    for (int i = 0; i < MANY_CLASSES; i++) {
        snprintf(class_names[i], sizeof class_names[i], "class-%d", i);
        sq_mutex_init_named(&many[i], class_names[i]);
    }
    CHECK_EQ(sq_mutex_lock(&many[0]), 0);
    for (int i = 1; i < MANY_CLASSES; i++) {
        CHECK_EQ(sq_mutex_lock(&many[i]), 0);
        CHECK_EQ(sq_mutex_unlock(&many[i]), 0);
    }
    CHECK_EQ(sq_mutex_unlock(&many[0]), 0);
}

/* 129 classes each held while 128 others are taken: 16512 orders. */
static void fill_edges(void)
{
    for (int i = 0; i < 129; i++) {
        CHECK_EQ(sq_mutex_lock(&many[i]), 0);
        for (int j = 129; j < 129 + 128; j++) {
            CHECK_EQ(sq_mutex_lock(&many[j]), 0);
            CHECK_EQ(sq_mutex_unlock(&many[j]), 0);
        }
        CHECK_EQ(sq_mutex_unlock(&many[i]), 0);
    }
}

TEST(the_graph_stops_at_its_bounds_and_says_so_once)
{
    begin();
    const char *full = "lock-order graph is full";
    CHECK_EQ(count_on_stderr(fill_classes, full), 1);
    sq_check_order_stats st = stats();
    CHECK_EQ(st.classes, 4096);
    CHECK_EQ(st.edges, 4095);
    CHECK(st.full);
    CHECK_EQ(count_on_stderr(fill_classes, full), 0); /* said once */
    CHECK_EQ(stats().classes, 4096);
    sq_check_reset_order_graph();
    CHECK(!stats().full);
    CHECK_EQ(count_on_stderr(fill_edges, full), 1);
    st = stats();
    CHECK_EQ(st.classes, 129 + 128);
    CHECK_EQ(st.edges, 16384);
    CHECK(st.full);
    CHECK_EQ(st.validations, 129 * 128);
    CHECK_EQ(report_count(), 0);
    end();
}
