/* Metrics: exact totals after concurrent updates from tasks on every
 * worker and from plain threads (moved between CPUs on purpose, so that
 * one update sequence spans slots); reads consistent per metric while
 * updates run (an in-flight gauge never outside [0, writers], a
 * histogram's count, buckets and sum always the same whole observations,
 * counters never going down); name and label rules; the registry's
 * families, duplicates and unregistration; collectors; the runtime's own
 * figures; and the Prometheus text checked by real parsers: Python's
 * prometheus_client (Debian python3-prometheus-client) plus a strict
 * grammar check, and `promtool check metrics` when promtool is on PATH.
 * Every value the parser reads back is compared with the snapshot the
 * text was made from.  The update cost is measured and printed, never
 * asserted. */
#include "testlib.h"

#include "squirrel/check.h"
#include "squirrel/metrics.h"
#include "squirrel/sync.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define ITER(n) (SQ_TEST_SLOW ? ((n) + 7) / 8 : (n))

static const sq_spawn_opts small = {.stack_size = SQ_STACK_MIN};

/* ------------------------------------------------- moving between CPUs */

/* The CPUs this process may run on. */
static int cpus[CPU_SETSIZE];
static int ncpus = -1;

static void cpus_init(void)
{
    if (ncpus >= 0)
        return;
    cpu_set_t set;
    ncpus = 0;
    if (sched_getaffinity(0, sizeof set, &set) != 0)
        return;
    for (int i = 0; i < CPU_SETSIZE; i++)
        if (CPU_ISSET(i, &set))
            cpus[ncpus++] = i;
}

/* Moves the calling plain thread to the next allowed CPU (so that its
 * next update lands in another slot); a plain yield with one CPU. */
static void hop(unsigned *k)
{
    if (ncpus < 2) {
        sched_yield();
        return;
    }
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpus[++*k % (unsigned)ncpus], &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

static void unpin(void)
{
    if (ncpus < 2)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int i = 0; i < ncpus; i++)
        CPU_SET(cpus[i], &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

/* -------------------------------------------------- names and labels */

static const char *const L_ok[] = {"b", "2", "a", "1", NULL};

TEST(names_and_labels_follow_the_prometheus_rules)
{
    sq_metrics *reg;
    CHECK_EQ(sq_metrics_create(&reg), 0);
    sq_counter *c = NULL;
    sq_gauge *g = NULL;
    sq_histogram *h = NULL;
    static const char *const bad_names[] = {
        "", "1abc", "a-b", "a b", "a.b", "caf\xc3\xa9", "x{}", NULL};
    for (int i = 0; bad_names[i]; i++) {
        sq_metric_opts o = {.name = bad_names[i]};
        CHECK_EQ(sq_counter_create(&c, reg, &o), -EINVAL);
    }
    sq_metric_opts noname = {.help = "x"};
    CHECK_EQ(sq_gauge_create(&g, reg, &noname), -EINVAL);
    CHECK_EQ(sq_gauge_create(&g, reg, NULL), -EINVAL);
    CHECK_EQ(sq_gauge_create(NULL, reg, &(sq_metric_opts){.name = "g"}),
             -EINVAL);
    /* Good names: colons, underscores, digits after the first. */
    static const char *const good[] = {"a", "_x", ":y", "a:b_c9", "Z__", NULL};
    for (int i = 0; good[i]; i++) {
        sq_metric_opts o = {.name = good[i]};
        CHECK_EQ(sq_gauge_create(&g, reg, &o), 0);
    }

    static const char *const L_reserved[] = {"__name", "v", NULL};
    static const char *const L_digit[] = {"1a", "v", NULL};
    static const char *const L_dash[] = {"a-b", "v", NULL};
    static const char *const L_colon[] = {"a:b", "v", NULL};
    static const char *const L_empty[] = {"", "v", NULL};
    static const char *const L_novalue[] = {"a", NULL};
    static const char *const L_twice[] = {"a", "1", "b", "2", "a", "3", NULL};
    static const char *const L_utf8[] = {"a", "\xff\xfe", NULL};
    static const char *const L_overlong[] = {"a", "\xc0\xaf", NULL};
    static const char *const L_surrogate[] = {"a", "\xed\xa0\x80", NULL};
    static const char *const L_cut[] = {"a", "\xe2\x82", NULL};
    const char *const *bad_labels[] = {L_reserved, L_digit,  L_dash,
                                       L_colon,    L_empty,  L_novalue,
                                       L_twice,    L_utf8,   L_overlong,
                                       L_surrogate, L_cut,   NULL};
    for (int i = 0; bad_labels[i]; i++) {
        sq_metric_opts o = {.name = "lab", .labels = bad_labels[i]};
        CHECK_EQ(sq_counter_create(&c, reg, &o), -EINVAL);
    }
    const char *many[2 * SQ_METRIC_MAX_LABELS + 3];
    char names[SQ_METRIC_MAX_LABELS + 1][8];
    for (int i = 0; i <= SQ_METRIC_MAX_LABELS; i++) {
        snprintf(names[i], sizeof names[i], "l%d", i);
        many[2 * i] = names[i];
        many[2 * i + 1] = "v";
    }
    many[2 * SQ_METRIC_MAX_LABELS + 2] = NULL;
    CHECK_EQ(sq_counter_create(&c, reg,
                               &(sq_metric_opts){.name = "many", .labels = many}),
             -EINVAL);
    many[2 * SQ_METRIC_MAX_LABELS] = NULL; /* exactly the maximum */
    CHECK_EQ(sq_counter_create(&c, reg,
                               &(sq_metric_opts){.name = "many", .labels = many}),
             0);
    CHECK_EQ(sq_counter_create(&c, reg,
                               &(sq_metric_opts){.name = "badhelp",
                                                 .help = "\x80"}),
             -EINVAL);
    /* UTF-8 values, empty values, quotes and newlines are fine. */
    static const char *const L_fine[] = {
        "a", "", "b", "\"q\"\n\\", "c", "\xe2\x9c\x93 \xf0\x9f\x90\xbf", NULL};
    CHECK_EQ(sq_counter_create(&c, reg,
                               &(sq_metric_opts){.name = "fine_total",
                                                 .labels = L_fine}),
             0);

    /* Histograms: bounds strictly increasing, no "le" label. */
    static const int64_t up[] = {1, 2, 3}, flat[] = {1, 1, 2}, down[] = {2, 1};
    static const char *const L_le[] = {"le", "1", NULL};
    sq_metric_opts ho = {.name = "hist"};
    CHECK_EQ(sq_histogram_create(&h, reg, &ho, flat, 3), -EINVAL);
    CHECK_EQ(sq_histogram_create(&h, reg, &ho, down, 2), -EINVAL);
    CHECK_EQ(sq_histogram_create(&h, reg, &ho, NULL, 2), -EINVAL);
    CHECK_EQ(sq_histogram_create(&h, reg, &ho, up,
                                 SQ_HISTOGRAM_MAX_BOUNDS + 1),
             -EINVAL);
    CHECK_EQ(sq_histogram_create(
                 &h, reg, &(sq_metric_opts){.name = "hist", .labels = L_le},
                 up, 3),
             -EINVAL);
    CHECK_EQ(sq_counter_create(&c, reg,
                               &(sq_metric_opts){.name = "le_ok_total",
                                                 .labels = L_le}),
             0); /* "le" is only reserved in histograms */

    /* Duplicates and conflicts: -EEXIST. */
    sq_metric_opts a = {.name = "fam", .help = "h", .labels = L_ok};
    static const char *const L_same[] = {"a", "1", "b", "2", NULL};
    static const char *const L_other[] = {"a", "1", "b", "3", NULL};
    CHECK_EQ(sq_gauge_create(&g, reg, &a), 0);
    sq_gauge *g1 = g;
    CHECK_EQ(sq_gauge_create(&g, reg, &a), -EEXIST);
    CHECK_EQ(sq_gauge_create(&g, reg,
                             &(sq_metric_opts){.name = "fam", .help = "h",
                                               .labels = L_same}),
             -EEXIST); /* the same set, in another order */
    CHECK_EQ(sq_counter_create(&c, reg,
                               &(sq_metric_opts){.name = "fam", .help = "h",
                                                 .labels = L_other}),
             -EEXIST); /* another type */
    CHECK_EQ(sq_gauge_create(&g, reg,
                             &(sq_metric_opts){.name = "fam", .help = "x",
                                               .labels = L_other}),
             -EEXIST); /* another help */
    CHECK_EQ(sq_gauge_create(&g, reg,
                             &(sq_metric_opts){.name = "fam", .help = "h",
                                               .labels = L_other,
                                               .divisor = 10}),
             -EEXIST); /* another divisor */
    CHECK_EQ(sq_gauge_create(&g, reg,
                             &(sq_metric_opts){.name = "fam", .help = "h",
                                               .labels = L_other}),
             0); /* the same family, another series */
    CHECK_EQ(sq_gauge_create(&g, reg,
                             &(sq_metric_opts){.name = "fam", .help = "h"}),
             0); /* no labels at all is another series too */
    /* A histogram's series names against other families, both ways. */
    CHECK_EQ(sq_histogram_create(&h, reg, &(sq_metric_opts){.name = "lat"},
                                 up, 3),
             0);
    CHECK_EQ(sq_counter_create(&c, reg,
                               &(sq_metric_opts){.name = "lat_count"}),
             -EEXIST);
    CHECK_EQ(sq_gauge_create(&g, reg, &(sq_metric_opts){.name = "lat_sum"}),
             -EEXIST);
    CHECK_EQ(sq_gauge_create(&g, reg,
                             &(sq_metric_opts){.name = "lat_bucket"}),
             -EEXIST);
    CHECK_EQ(sq_gauge_create(&g, reg, &(sq_metric_opts){.name = "lat_x"}), 0);
    CHECK_EQ(sq_gauge_create(&g, reg, &(sq_metric_opts){.name = "la_sum"}), 0);
    CHECK_EQ(sq_histogram_create(&h, reg, &(sq_metric_opts){.name = "la"},
                                 up, 3),
             -EEXIST);
    CHECK_EQ(sq_histogram_create(&h, reg, &(sq_metric_opts){.name = "lat2"},
                                 NULL, 0),
             0);

    /* Unregistering frees the name; a standalone metric takes no name. */
    sq_gauge_destroy(g1);
    CHECK_EQ(sq_gauge_create(&g, reg, &a), 0);
    sq_counter *alone;
    CHECK_EQ(sq_counter_create(&alone, NULL, NULL), 0);
    sq_counter_add(alone, 5);
    CHECK_EQ(sq_counter_get(alone), 5);
    sq_counter_destroy(alone);
    sq_counter_destroy(NULL);

    /* Nothing that failed was registered: the families are exactly these. */
    sq_metrics_snapshot *s;
    CHECK_EQ(sq_metrics_snapshot_take(reg, &s), 0);
    static const char *const fams[] = {
        ":y",  "Z__", "_x",     "a",   "a:b_c9",     "fam",  "fine_total",
        "la_sum", "lat", "lat2", "lat_x", "le_ok_total", "many", NULL};
    size_t nf = 0;
    while (fams[nf])
        nf++;
    CHECK_EQ(s->nfamilies, nf);
    for (size_t i = 0; i < nf && i < s->nfamilies; i++)
        if (strcmp(s->families[i].name, fams[i]) != 0) {
            fprintf(stderr, "family %zu: %s, want %s\n", i,
                    s->families[i].name, fams[i]);
            CHECK(0);
        }
    const sq_metric_family *f = sq_metrics_snapshot_find(s, "fam");
    CHECK(f && f->nseries == 3 && f->type == SQ_METRIC_GAUGE);
    CHECK(sq_metrics_snapshot_find(s, "hist") == NULL);
    f = sq_metrics_snapshot_find(s, "lat");
    CHECK(f && f->type == SQ_METRIC_HISTOGRAM && f->series[0].nbounds == 3);
    f = sq_metrics_snapshot_find(s, "fam");
    CHECK(sq_metrics_snapshot_find(s, "nope") == NULL);
    /* Labels come sorted by name. */
    if (f) {
        int found = 0;
        for (size_t i = 0; i < f->nseries; i++)
            if (f->series[i].nlabels == 2) {
                CHECK(strcmp(f->series[i].labels[0], "a") == 0);
                CHECK(strcmp(f->series[i].labels[2], "b") == 0);
                found++;
            }
        CHECK_EQ(found, 2);
    }
    sq_metrics_snapshot_free(s);
    sq_metrics_destroy(reg); /* frees every metric still registered */
}

/* -------------------------------------------------- values, one thread */

TEST(values_follow_each_update)
{
    sq_metrics *reg;
    CHECK_EQ(sq_metrics_create(&reg), 0);
    sq_counter *c;
    sq_gauge *g;
    sq_histogram *h;
    CHECK_EQ(sq_counter_create(&c, reg, &(sq_metric_opts){.name = "c_total"}),
             0);
    CHECK_EQ(sq_gauge_create(&g, reg, &(sq_metric_opts){.name = "g"}), 0);
    static const int64_t b[] = {-10, 0, 10, 100};
    CHECK_EQ(sq_histogram_create(&h, reg, &(sq_metric_opts){.name = "h"}, b, 4),
             0);
    CHECK_EQ(sq_histogram_nbounds(h), 4);

    CHECK_EQ(sq_counter_get(c), 0);
    sq_counter_inc(c);
    sq_counter_add(c, 41);
    sq_counter_add(c, 0);
    CHECK_EQ(sq_counter_get(c), 42);

    CHECK_EQ(sq_gauge_get(g), 0);
    sq_gauge_add(g, 10);
    sq_gauge_sub(g, 25);
    CHECK_EQ(sq_gauge_get(g), -15);
    sq_gauge_inc(g);
    sq_gauge_dec(g);
    sq_gauge_dec(g);
    CHECK_EQ(sq_gauge_get(g), -16);
    sq_gauge_set(g, 1000);
    CHECK_EQ(sq_gauge_get(g), 1000);
    sq_gauge_add(g, 1);
    CHECK_EQ(sq_gauge_get(g), 1001);
    sq_gauge_set(g, INT64_MIN);
    CHECK(sq_gauge_get(g) == INT64_MIN);
    sq_gauge_set(g, INT64_MAX);
    CHECK(sq_gauge_get(g) == INT64_MAX);
    sq_gauge_set(g, -7);
    sq_gauge_set(g, -7);
    CHECK_EQ(sq_gauge_get(g), -7);

    /* le semantics: a value equal to a bound goes into that bound's
     * bucket; above the last, into +Inf. */
    static const int64_t obs[] = {-11, -10, -9, 0, 1, 10, 11, 100, 101,
                                  INT64_MIN, INT64_MAX, 5};
    uint64_t cum[5], count;
    int64_t sum;
    int64_t want_sum = 0;
    for (size_t i = 0; i < sizeof obs / sizeof *obs; i++) {
        sq_histogram_observe(h, obs[i]);
        want_sum = (int64_t)((uint64_t)want_sum + (uint64_t)obs[i]);
    }
    sq_histogram_get(h, cum, &count, &sum);
    /* <=-10: -11,-10,MIN; <=0: +(-9,0); <=10: +(1,10,5); <=100: +(11,100);
     * +Inf: +(101, MAX) */
    CHECK_EQ(cum[0], 3);
    CHECK_EQ(cum[1], 5);
    CHECK_EQ(cum[2], 8);
    CHECK_EQ(cum[3], 10);
    CHECK_EQ(cum[4], 12);
    CHECK_EQ(count, 12);
    CHECK(sum == want_sum); /* wraps in two's complement, exactly */
    sq_histogram_get(h, NULL, NULL, NULL);
    sq_histogram_get(h, NULL, &count, NULL);
    CHECK_EQ(count, 12); /* reading twice changes nothing */

    /* The snapshot says the same. */
    sq_metrics_snapshot *s;
    CHECK_EQ(sq_metrics_snapshot_take(reg, &s), 0);
    const sq_metric_family *fc = sq_metrics_snapshot_find(s, "c_total");
    const sq_metric_family *fg = sq_metrics_snapshot_find(s, "g");
    const sq_metric_family *fh = sq_metrics_snapshot_find(s, "h");
    CHECK(fc && fg && fh);
    if (fc && fg && fh) {
        CHECK_EQ(fc->series[0].counter, 42);
        CHECK_EQ(fg->series[0].gauge, -7);
        CHECK_EQ(fh->series[0].count, 12);
        CHECK_EQ(fh->series[0].nbounds, 4);
        CHECK_EQ(fh->series[0].bounds[0], -10);
        CHECK_EQ(fh->series[0].buckets[2], 8);
        CHECK(fh->series[0].sum == want_sum);
        CHECK_EQ(fh->divisor, 1);
        CHECK(strcmp(fh->help, "") == 0);
    }
    sq_metrics_snapshot_free(s);

    /* Destroyed metrics leave their family. */
    sq_gauge_destroy(g);
    CHECK_EQ(sq_metrics_snapshot_take(reg, &s), 0);
    CHECK(sq_metrics_snapshot_find(s, "g") == NULL);
    CHECK_EQ(s->nfamilies, 2);
    sq_metrics_snapshot_free(s);
    sq_metrics_destroy(reg);
}

/* ------------------------------------------- exact totals, concurrency */

#define EX_BOUNDS 5
static const int64_t ex_bounds[EX_BOUNDS] = {0, 10, 100, 1000, 1500};

typedef struct ex {
    sq_counter *c;
    sq_gauge *g;
    sq_histogram *h;
    int iters;
    atomic_int go;
} ex;

typedef struct ex_arg {
    ex *e;
    int id;
    bool thread;
} ex_arg;

static int64_t ex_value(int id, int it)
{
    return (int64_t)((id * 31 + it * 7) % 2000) - 100;
}

static void ex_work(ex *e, int id, bool thread)
{
    unsigned k = (unsigned)id;
    for (int it = 0; it < e->iters; it++) {
        sq_counter_add(e->c, (uint64_t)(id % 5 + 1));
        sq_gauge_add(e->g, id % 7 - 3);
        sq_histogram_observe(e->h, ex_value(id, it));
        if (it % 16 == 15) {
            if (thread)
                hop(&k);
            else
                sq_yield();
        }
    }
}

static void *ex_task(void *arg)
{
    ex_arg *a = arg;
    ex_work(a->e, a->id, false);
    return NULL;
}

static void *ex_thread(void *arg)
{
    ex_arg *a = arg;
    while (!atomic_load(&a->e->go))
        sched_yield();
    ex_work(a->e, a->id, true);
    unpin();
    return NULL;
}

#define EX_TASKS 48
#define EX_THREADS 3

static ex_arg ex_args[EX_TASKS + EX_THREADS];

static void *ex_root(void *arg)
{
    ex *e = arg;
    sq_task t[EX_TASKS];
    atomic_store(&e->go, 1);
    for (int i = 0; i < EX_TASKS; i++) {
        ex_args[i] = (ex_arg){.e = e, .id = i};
        CHECK_EQ(sq_spawn(&t[i], ex_task, &ex_args[i], &small), 0);
    }
    for (int i = 0; i < EX_TASKS; i++)
        CHECK_EQ(sq_join(t[i], NULL), 0);
    return NULL;
}

TEST(totals_are_exact_after_updates_from_tasks_and_threads)
{
    cpus_init();
    ex e = {.iters = ITER(4000)};
    CHECK_EQ(sq_counter_create(&e.c, NULL, NULL), 0);
    CHECK_EQ(sq_gauge_create(&e.g, NULL, NULL), 0);
    CHECK_EQ(sq_histogram_create(&e.h, NULL, NULL, ex_bounds, EX_BOUNDS), 0);
    pthread_t th[EX_THREADS];
    for (int i = 0; i < EX_THREADS; i++) {
        ex_args[EX_TASKS + i] =
            (ex_arg){.e = &e, .id = EX_TASKS + i, .thread = true};
        CHECK_EQ(pthread_create(&th[i], NULL, ex_thread,
                                &ex_args[EX_TASKS + i]),
                 0);
    }
    sq_test_run(4, ex_root, &e);
    for (int i = 0; i < EX_THREADS; i++)
        pthread_join(th[i], NULL);

    /* What it must be, computed the slow way. */
    uint64_t want_c = 0, want_b[EX_BOUNDS + 1] = {0}, want_n = 0;
    int64_t want_g = 0, want_sum = 0;
    for (int id = 0; id < EX_TASKS + EX_THREADS; id++)
        for (int it = 0; it < e.iters; it++) {
            want_c += (uint64_t)(id % 5 + 1);
            want_g += id % 7 - 3;
            int64_t v = ex_value(id, it);
            want_sum += v;
            int b = 0;
            while (b < EX_BOUNDS && v > ex_bounds[b])
                b++;
            want_b[b]++;
            want_n++;
        }
    CHECK_EQ(sq_counter_get(e.c), want_c);
    CHECK_EQ(sq_gauge_get(e.g), want_g);
    uint64_t cum[EX_BOUNDS + 1], count;
    int64_t sum;
    sq_histogram_get(e.h, cum, &count, &sum);
    CHECK_EQ(count, want_n);
    CHECK_EQ(sum, want_sum);
    uint64_t acc = 0;
    for (int b = 0; b <= EX_BOUNDS; b++) {
        acc += want_b[b];
        CHECK_EQ(cum[b], acc);
    }
    /* set, then more adds from everywhere: exact again */
    sq_gauge_set(e.g, 5);
    CHECK_EQ(sq_gauge_get(e.g), 5);
    sq_counter_destroy(e.c);
    sq_gauge_destroy(e.g);
    sq_histogram_destroy(e.h);
}

/* -------------------------------------------- consistency of each read */

/* Writers raise the in-flight gauge, observe their own value (writer w
 * observes 10w + 5, which only falls in bucket w), count once, move
 * (thread: to another CPU; task: yield, so possibly to another worker)
 * and lower the gauge.  Readers meanwhile check every read. */
#define CO_TASKS 8
#define CO_THREADS 2
#define CO_W (CO_TASKS + CO_THREADS)

typedef struct co {
    sq_metrics *reg;
    sq_counter *c;
    sq_gauge *g;
    sq_histogram *h;
    atomic_int stop;
    atomic_int started;
    atomic_llong loops;
} co;

typedef struct co_arg {
    co *c;
    int w;
    bool thread;
} co_arg;

static void co_work(co *c, int w, bool thread)
{
    unsigned k = (unsigned)w;
    atomic_fetch_add(&c->started, 1);
    long long n = 0;
    while (!atomic_load_explicit(&c->stop, memory_order_relaxed)) {
        sq_gauge_inc(c->g);
        sq_histogram_observe(c->h, 10 * w + 5);
        sq_counter_inc(c->c);
        if (thread)
            hop(&k);
        else if (n % 4 == 0)
            sq_yield();
        sq_gauge_dec(c->g);
        n++;
        if (!thread && n % 64 == 0)
            sq_yield();
    }
    atomic_fetch_add(&c->loops, n);
}

static void *co_task(void *arg)
{
    co_arg *a = arg;
    co_work(a->c, a->w, false);
    return NULL;
}

static void *co_thread(void *arg)
{
    co_arg *a = arg;
    co_work(a->c, a->w, true);
    unpin();
    return NULL;
}

typedef struct co_seen {
    uint64_t count, counter;
    uint64_t per[CO_W + 1];
} co_seen;

/* Checks one read of the histogram (non-cumulative n[w]) and the gauge;
 * returns false on the first broken rule. */
static bool co_check(co_seen *last, const uint64_t *cum, uint64_t count,
                     int64_t sum, int64_t gauge, uint64_t counter)
{
    bool ok = true;
    int64_t want_sum = 0;
    uint64_t prev = 0;
    for (int w = 0; w <= CO_W; w++) {
        uint64_t n = cum[w] - prev;
        prev = cum[w];
        if (w < CO_W)
            want_sum += (int64_t)n * (10 * w + 5);
        else if (n != 0)
            ok = false; /* nothing observed above the last bound */
        if (n < last->per[w])
            ok = false;
        last->per[w] = n;
    }
    if (count != cum[CO_W] || sum != want_sum || count < last->count)
        ok = false;
    if (gauge < 0 || gauge > CO_W)
        ok = false;
    if (counter < last->counter)
        ok = false;
    if (!ok)
        fprintf(stderr,
                "inconsistent read: count %llu (+Inf %llu) sum %lld (want "
                "%lld) gauge %lld counter %llu (last %llu)\n",
                (unsigned long long)count, (unsigned long long)cum[CO_W],
                (long long)sum, (long long)want_sum, (long long)gauge,
                (unsigned long long)counter,
                (unsigned long long)last->counter);
    last->count = count;
    last->counter = counter;
    return ok;
}

static int co_reads(co *c, int rounds)
{
    co_seen a = {0}, b = {0};
    int bad = 0;
    for (int r = 0; r < rounds; r++) {
        uint64_t cum[CO_W + 1], count;
        int64_t sum;
        /* direct reads */
        uint64_t counter = sq_counter_get(c->c);
        int64_t gauge = sq_gauge_get(c->g);
        sq_histogram_get(c->h, cum, &count, &sum);
        if (!co_check(&a, cum, count, sum, gauge, counter))
            bad++;
        /* through a snapshot of the registry */
        sq_metrics_snapshot *s;
        if (sq_metrics_snapshot_take(c->reg, &s) != 0) {
            bad++;
            continue;
        }
        const sq_metric_family *fh = sq_metrics_snapshot_find(s, "co_h");
        const sq_metric_family *fg = sq_metrics_snapshot_find(s, "co_g");
        const sq_metric_family *fc = sq_metrics_snapshot_find(s, "co_total");
        if (!fh || !fg || !fc ||
            !co_check(&b, fh->series[0].buckets, fh->series[0].count,
                      fh->series[0].sum, fg->series[0].gauge,
                      fc->series[0].counter))
            bad++;
        sq_metrics_snapshot_free(s);
        if (r % 8 == 0)
            sq_yield();
    }
    return bad;
}

static void *co_reader_task(void *arg)
{
    return (void *)(intptr_t)co_reads(arg, ITER(3000));
}

static void *co_root(void *arg)
{
    co *c = arg;
    static co_arg args[CO_TASKS];
    sq_task t[CO_TASKS], rd;
    for (int i = 0; i < CO_TASKS; i++) {
        args[i] = (co_arg){.c = c, .w = i};
        CHECK_EQ(sq_spawn(&t[i], co_task, &args[i], &small), 0);
    }
    while (atomic_load(&c->started) < CO_W)
        sq_yield();
    /* One reader task, and this one, read at the same time. */
    CHECK_EQ(sq_spawn(&rd, co_reader_task, c, NULL), 0);
    int bad = co_reads(c, ITER(3000));
    void *rbad = NULL;
    CHECK_EQ(sq_join(rd, &rbad), 0);
    atomic_store(&c->stop, 1);
    for (int i = 0; i < CO_TASKS; i++)
        CHECK_EQ(sq_join(t[i], NULL), 0);
    CHECK_EQ(bad, 0);
    CHECK_EQ((intptr_t)rbad, 0);
    return NULL;
}

TEST(reads_are_consistent_per_metric_while_updates_run)
{
    cpus_init();
    co c = {0};
    CHECK_EQ(sq_metrics_create(&c.reg), 0);
    int64_t bounds[CO_W];
    for (int w = 0; w < CO_W; w++)
        bounds[w] = 10 * (w + 1);
    CHECK_EQ(sq_counter_create(&c.c, c.reg,
                               &(sq_metric_opts){.name = "co_total"}),
             0);
    CHECK_EQ(sq_gauge_create(&c.g, c.reg, &(sq_metric_opts){.name = "co_g"}),
             0);
    CHECK_EQ(sq_histogram_create(&c.h, c.reg,
                                 &(sq_metric_opts){.name = "co_h"}, bounds,
                                 CO_W),
             0);
    pthread_t th[CO_THREADS];
    static co_arg targs[CO_THREADS];
    for (int i = 0; i < CO_THREADS; i++) {
        targs[i] = (co_arg){.c = &c, .w = CO_TASKS + i, .thread = true};
        CHECK_EQ(pthread_create(&th[i], NULL, co_thread, &targs[i]), 0);
    }
    sq_test_run(3, co_root, &c);
    atomic_store(&c.stop, 1);
    for (int i = 0; i < CO_THREADS; i++)
        pthread_join(th[i], NULL);
    /* Quiet now: everything adds up exactly. */
    long long loops = atomic_load(&c.loops);
    CHECK(loops > 0);
    CHECK_EQ(sq_gauge_get(c.g), 0);
    CHECK_EQ(sq_counter_get(c.c), loops);
    uint64_t count;
    sq_histogram_get(c.h, NULL, &count, NULL);
    CHECK_EQ(count, loops);
    fprintf(stderr, "  %lld update loops checked by concurrent reads\n",
            loops);
    sq_metrics_destroy(c.reg);
}

/* ------------------------------------------------ the real parsers */

/* The checker: a strict line grammar of the text format 0.0.4 (with the
 * histogram rules: ascending le ending in +Inf, cumulative counts, +Inf ==
 * _count), then prometheus_client's own parser.  Prints what the parser
 * read: "F family type help-hex" and "S sample labels value-bits", label
 * values as hex of their UTF-8, le and values as the bits of the double;
 * exit 1 with the reasons on stderr if the text is rejected; 77 if the
 * module is missing.  With --batch (--batch-parser-only: the parser
 * alone) it checks several texts separated by "\f\n" lines and prints
 * "i accepted" or "i rejected: why" for each. */
static const char py_check[] =
    "import sys, re, struct, math\n"
    "try:\n"
    "    from prometheus_client.parser import text_string_to_metric_families\n"
    "except ImportError:\n"
    "    sys.exit(77)\n"
    "NAME = r'[a-zA-Z_:][a-zA-Z0-9_:]*'\n"
    "LNAME = r'[a-zA-Z_][a-zA-Z0-9_]*'\n"
    "LVAL = r'\"(?:[^\"\\\\\\n]|\\\\[\\\\\"n])*\"'\n"
    "PAIR = LNAME + '=' + LVAL\n"
    "VALUE = r'(?:[+-]?(?:[0-9]+\\.?[0-9]*|\\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]Inf|NaN)'\n"
    "SAMPLE = re.compile('(' + NAME + r')(\\{(?:' + PAIR + '(?:,' + PAIR + r')*)?\\})? (' + VALUE + ')')\n"
    "HELP = re.compile('# HELP (' + NAME + r') ((?:[^\\\\\\n]|\\\\[\\\\n])*)')\n"
    "TYPE = re.compile('# TYPE (' + NAME + ') (counter|gauge|histogram)')\n"
    "\n"
    "def grammar(text):\n"
    "    errs = []\n"
    "    if text and not text.endswith('\\n'):\n"
    "        errs.append('no final newline')\n"
    "    typed, helped, hist = set(), set(), {}\n"
    "    cur = ctype = None\n"
    "    for ln in text.split('\\n')[:-1]:\n"
    "        m = TYPE.fullmatch(ln)\n"
    "        if m:\n"
    "            if m[1] in typed:\n"
    "                errs.append('TYPE twice: ' + ln)\n"
    "            typed.add(m[1])\n"
    "            cur, ctype = m[1], m[2]\n"
    "            continue\n"
    "        m = HELP.fullmatch(ln)\n"
    "        if m:\n"
    "            if m[1] in helped or m[1] in typed:\n"
    "                errs.append('HELP twice or after TYPE: ' + ln)\n"
    "            helped.add(m[1])\n"
    "            continue\n"
    "        m = SAMPLE.fullmatch(ln)\n"
    "        if not m:\n"
    "            errs.append('bad line: ' + repr(ln))\n"
    "            continue\n"
    "        name = m[1]\n"
    "        sfx = ['_bucket', '_sum', '_count'] if ctype == 'histogram' else ['']\n"
    "        if not cur or name not in [cur + s for s in sfx]:\n"
    "            errs.append('sample outside its family: ' + ln)\n"
    "        if ctype != 'histogram':\n"
    "            continue\n"
    "        labs = re.findall('(' + LNAME + ')=(' + LVAL + ')', m[2] or '')\n"
    "        h = hist.setdefault((cur, tuple(p for p in labs if p[0] != 'le')),\n"
    "                            {'b': [], 'sum': None, 'count': None})\n"
    "        v = float(m[3])\n"
    "        if name.endswith('_bucket'):\n"
    "            le = [p[1] for p in labs if p[0] == 'le']\n"
    "            if len(le) != 1:\n"
    "                errs.append('bucket without le: ' + ln)\n"
    "                continue\n"
    "            h['b'].append((float(le[0][1:-1]), v))\n"
    "        elif name.endswith('_sum'):\n"
    "            h['sum'] = v\n"
    "        else:\n"
    "            h['count'] = v\n"
    "    for key, h in hist.items():\n"
    "        b = h['b']\n"
    "        if not b or b[-1][0] != math.inf:\n"
    "            errs.append('no +Inf bucket: %r' % (key,))\n"
    "        for i in range(1, len(b)):\n"
    "            if b[i][0] <= b[i - 1][0] or b[i][1] < b[i - 1][1]:\n"
    "                errs.append('buckets not ascending and cumulative: %r' % (key,))\n"
    "        if h['sum'] is None or h['count'] is None or (b and b[-1][1] != h['count']):\n"
    "            errs.append('_sum or _count missing, or +Inf != _count: %r' % (key,))\n"
    "    return errs\n"
    "\n"
    "def bits(x):\n"
    "    return struct.pack('>d', x).hex()\n"
    "\n"
    "def parse(text):\n"
    "    out = []\n"
    "    for f in text_string_to_metric_families(text):\n"
    "        out.append('F %s %s %s' % (f.name, f.type, f.documentation.encode().hex() or '-'))\n"
    "        for s in f.samples:\n"
    "            lab = ','.join(k + '=' + (bits(float(v)) if k == 'le' else v.encode().hex())\n"
    "                           for k, v in sorted(s.labels.items()))\n"
    "            out.append('S %s %s %s' % (s.name, lab or '-', bits(s.value)))\n"
    "    return out\n"
    "\n"
    "mode = sys.argv[1] if len(sys.argv) > 1 else ''\n"
    "data = sys.stdin.buffer.read().decode('utf-8')\n"
    "if mode.startswith('--batch'):\n"
    "    for i, doc in enumerate(data.split('\\f\\n')):\n"
    "        try:\n"
    "            errs = grammar(doc) if mode == '--batch' else []\n"
    "            if errs:\n"
    "                print(i, 'rejected:', errs[0])\n"
    "                continue\n"
    "            parse(doc)\n"
    "            print(i, 'accepted')\n"
    "        except Exception as e:\n"
    "            print(i, 'rejected:', type(e).__name__, e)\n"
    "    sys.exit(0)\n"
    "errs = grammar(data)\n"
    "if errs:\n"
    "    sys.stderr.write('\\n'.join(errs) + '\\n')\n"
    "    sys.exit(1)\n"
    "print('\\n'.join(parse(data)))\n";

/* Runs argv with stdin from the file `in`, stdout into the file `outp`
 * and stderr into `errp`; returns the exit status, or -1 if it could not
 * run. */
static int run_with_files(char *const argv[], const char *in, const char *outp,
                          const char *errp)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, in, O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, outp, O_WRONLY | O_CREAT | O_TRUNC,
                                     0600);
    posix_spawn_file_actions_addopen(&fa, 2, errp, O_WRONLY | O_CREAT | O_TRUNC,
                                     0600);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        return -1;
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char tmpdir[64];

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    size_t r;
    while ((r = fread(b + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (cap - n - 1 == 0)
            b = realloc(b, cap *= 2);
    }
    b[n] = 0;
    fclose(f);
    return b;
}

static const char *python; /* the interpreter that has prometheus_client */

/* Runs the checker on text: its exit status (0: accepted), its output in
 * *out and what it said on stderr in *err (malloc'ed) for those not NULL. */
static int py_run_as(const char *interp, const char *text, char **out,
                     char **err, const char *mode)
{
    char in[96], res[96], er[96];
    snprintf(in, sizeof in, "%s/in.txt", tmpdir);
    snprintf(res, sizeof res, "%s/out.txt", tmpdir);
    snprintf(er, sizeof er, "%s/err.txt", tmpdir);
    write_file(in, text);
    char *argv[] = {(char *)interp, "-c", (char *)py_check, (char *)mode,
                    NULL};
    int st = run_with_files(argv, in, res, er);
    if (out)
        *out = read_file(res);
    if (err)
        *err = read_file(er);
    return st;
}

static int py_run(const char *interp, const char *text, char **out, char **err)
{
    return py_run_as(interp, text, out, err, NULL);
}

/* Finds a Python with prometheus_client: Debian's /usr/bin/python3 (where
 * the package installs it) first, then python3 on PATH. */
static bool parsers_init(void)
{
    if (!tmpdir[0]) {
        strcpy(tmpdir, "/tmp/sq_metrics_test_XXXXXX");
        if (!mkdtemp(tmpdir)) {
            tmpdir[0] = 0;
            CHECK(0);
            return false;
        }
    }
    if (python)
        return true;
    static const char *const cands[] = {"/usr/bin/python3", "python3", NULL};
    for (int i = 0; cands[i]; i++)
        if (py_run(cands[i], "", NULL, NULL) == 0) {
            python = cands[i];
            return true;
        }
    fprintf(stderr, "  no python3 with prometheus_client: install the Debian "
                    "package python3-prometheus-client (scripts/test does)\n");
    CHECK(0);
    return false;
}

static void parsers_cleanup(void)
{
    if (!tmpdir[0])
        return;
    char p[96];
    snprintf(p, sizeof p, "%s/in.txt", tmpdir);
    unlink(p);
    snprintf(p, sizeof p, "%s/out.txt", tmpdir);
    unlink(p);
    snprintf(p, sizeof p, "%s/err.txt", tmpdir);
    unlink(p);
    rmdir(tmpdir);
    tmpdir[0] = 0;
}

/* promtool on PATH, or NULL. */
static const char *find_promtool(void)
{
    static char path[512];
    const char *env = getenv("PATH");
    if (!env)
        return NULL;
    while (*env) {
        size_t n = strcspn(env, ":");
        if (n > 0 && n < sizeof path - 16) {
            memcpy(path, env, n);
            strcpy(path + n, "/promtool");
            if (access(path, X_OK) == 0)
                return path;
        }
        env += n;
        if (*env == ':')
            env++;
    }
    return NULL;
}

/* Expected parser output for snapshot s, built independently of the
 * renderer from the snapshot's numbers. */
typedef struct sbuf {
    char *b;
    size_t n, cap;
} sbuf;

static void sb_put(sbuf *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void sb_put(sbuf *s, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int k = vsnprintf(s->b + s->n, s->cap - s->n, fmt, ap);
        va_end(ap);
        if ((size_t)k < s->cap - s->n) {
            s->n += (size_t)k;
            return;
        }
        s->cap = s->cap * 2 + (size_t)k + 64;
        s->b = realloc(s->b, s->cap);
    }
}

static void sb_hex(sbuf *s, const char *str)
{
    for (const unsigned char *p = (const unsigned char *)str; *p; p++)
        sb_put(s, "%02x", *p);
}

static void sb_bits(sbuf *s, double x)
{
    uint64_t u;
    memcpy(&u, &x, sizeof u);
    sb_put(s, "%016llx", (unsigned long long)u);
}

static double scaled(int64_t raw, uint64_t div)
{
    return div > 1 ? (double)raw / (double)div : (double)raw;
}

static double scaledu(uint64_t raw, uint64_t div)
{
    return div > 1 ? (double)raw / (double)div : (double)raw;
}

/* " labels" of x, with le (bits) in sorted place if with_le. */
static void sb_labels(sbuf *s, const sq_metric_series *x, bool with_le,
                      double le)
{
    sb_put(s, " ");
    bool any = false, le_done = !with_le;
    for (size_t i = 0; i <= x->nlabels; i++) {
        const char *k = i < x->nlabels ? x->labels[2 * i] : NULL;
        if (!le_done && (!k || strcmp(k, "le") > 0)) {
            sb_put(s, "%sle=", any ? "," : "");
            sb_bits(s, le);
            any = true;
            le_done = true;
        }
        if (!k)
            break;
        sb_put(s, "%s%s=", any ? "," : "", k);
        sb_hex(s, x->labels[2 * i + 1]);
        any = true;
    }
    if (!any)
        sb_put(s, "-");
}

static char *expected_lines(const sq_metrics_snapshot *snap)
{
    sbuf s = {.b = malloc(256), .cap = 256};
    s.b[0] = 0;
    for (size_t i = 0; i < snap->nfamilies; i++) {
        const sq_metric_family *f = &snap->families[i];
        size_t nl = strlen(f->name);
        bool total = nl > 6 && strcmp(f->name + nl - 6, "_total") == 0;
        static const char *const tn[] = {"", "counter", "gauge", "histogram"};
        /* The parser names a counter family without _total and its
         * samples with it (OpenMetrics style). */
        if (f->type == SQ_METRIC_COUNTER && total)
            sb_put(&s, "F %.*s %s ", (int)(nl - 6), f->name, tn[f->type]);
        else
            sb_put(&s, "F %s %s ", f->name, tn[f->type]);
        if (*f->help)
            sb_hex(&s, f->help);
        else
            sb_put(&s, "-");
        sb_put(&s, "\n");
        for (size_t j = 0; j < f->nseries; j++) {
            const sq_metric_series *x = &f->series[j];
            switch (f->type) {
            case SQ_METRIC_COUNTER:
                sb_put(&s, "S %s%s", f->name, total ? "" : "_total");
                sb_labels(&s, x, false, 0);
                sb_put(&s, " ");
                sb_bits(&s, scaledu(x->counter, f->divisor));
                sb_put(&s, "\n");
                break;
            case SQ_METRIC_GAUGE:
                sb_put(&s, "S %s", f->name);
                sb_labels(&s, x, false, 0);
                sb_put(&s, " ");
                sb_bits(&s, scaled(x->gauge, f->divisor));
                sb_put(&s, "\n");
                break;
            case SQ_METRIC_HISTOGRAM:
                for (size_t b = 0; b <= x->nbounds; b++) {
                    sb_put(&s, "S %s_bucket", f->name);
                    sb_labels(&s, x, true,
                              b < x->nbounds ? scaled(x->bounds[b], f->divisor)
                                             : INFINITY);
                    sb_put(&s, " ");
                    sb_bits(&s, (double)x->buckets[b]);
                    sb_put(&s, "\n");
                }
                sb_put(&s, "S %s_sum", f->name);
                sb_labels(&s, x, false, 0);
                sb_put(&s, " ");
                sb_bits(&s, scaled(x->sum, f->divisor));
                sb_put(&s, "\nS %s_count", f->name);
                sb_labels(&s, x, false, 0);
                sb_put(&s, " ");
                sb_bits(&s, (double)x->count);
                sb_put(&s, "\n");
                break;
            }
        }
    }
    return s.b;
}

/* Prints the first differing line of two texts; true if equal. */
static bool same_text(const char *what, const char *got, const char *want)
{
    if (strcmp(got, want) == 0)
        return true;
    const char *g = got, *w = want;
    while (*g && *g == *w)
        g++, w++;
    while (g > got && g[-1] != '\n')
        g--, w--;
    fprintf(stderr, "  %s differs:\n    got:  %.*s\n    want: %.*s\n", what,
            (int)strcspn(g, "\n"), g, (int)strcspn(w, "\n"), w);
    return false;
}

/* What the parser read from text (malloc'ed), or NULL if the checker
 * rejected it (the reasons are printed). */
static char *parse_text(const char *text)
{
    char *got = NULL, *err = NULL;
    int st = py_run(python, text, &got, &err);
    if (st != 0) {
        fprintf(stderr, "  the checker rejected the text (status %d):\n%s\n",
                st, err ? err : "");
        free(got);
        got = NULL;
    }
    free(err);
    return got;
}

/* Checks text (rendered from snap) with the parsers and compares every
 * value read back; true if everything agrees. */
static bool parsed_equals(const char *text, const sq_metrics_snapshot *snap)
{
    char *got = parse_text(text);
    char *want = expected_lines(snap);
    bool ok = got && same_text("parsed samples", got, want);
    free(got);
    free(want);
    return ok;
}

/* Runs the checker in batch mode on n texts; true if it rejected each. */
static bool all_rejected(const char *const *texts, int n, const char *mode)
{
    size_t len = 1;
    for (int i = 0; i < n; i++)
        len += strlen(texts[i]) + 2;
    char *all = malloc(len), *out = NULL;
    all[0] = 0;
    for (int i = 0; i < n; i++) {
        if (i)
            strcat(all, "\f\n");
        strcat(all, texts[i]);
    }
    bool ok = py_run_as(python, all, &out, NULL, mode) == 0 && out;
    for (int i = 0; ok && i < n; i++) {
        char want[32];
        snprintf(want, sizeof want, "%d rejected: ", i);
        char *line = strstr(out, want);
        if (!line || (line != out && line[-1] != '\n')) {
            fprintf(stderr, "  %s accepted broken text %d\n", mode, i);
            ok = false;
        }
    }
    free(all);
    free(out);
    return ok;
}

static void promtool_check(const char *text)
{
    const char *pt = find_promtool();
    if (!pt) {
        fprintf(stderr, "  promtool not on PATH: that half is skipped\n");
        return;
    }
    char in[96], res[96], er[96];
    snprintf(in, sizeof in, "%s/in.txt", tmpdir);
    snprintf(res, sizeof res, "%s/out.txt", tmpdir);
    snprintf(er, sizeof er, "%s/err.txt", tmpdir);
    write_file(in, text);
    char *argv[] = {(char *)pt, "check", "metrics", NULL};
    int st = run_with_files(argv, in, res, er);
    if (st != 0) {
        char *o = read_file(res), *e = read_file(er);
        fprintf(stderr, "  promtool check metrics: status %d\n%s%s\n", st,
                o ? o : "", e ? e : "");
        free(o);
        free(e);
    } else {
        fprintf(stderr, "  promtool check metrics accepted the text\n");
    }
    CHECK_EQ(st, 0);
}

/* A collector for the rendering test: emits one family of each type. */
static void render_collect(sq_metrics_sink *k, void *arg)
{
    (void)arg;
    static const char *const L[] = {"source", "collector", NULL};
    CHECK_EQ(sq_metrics_emit_gauge(
                 k, &(sq_metric_opts){.name = "coll_gauge", .help = "From a collector.",
                                      .labels = L},
                 -3),
             0);
    static const int64_t b[] = {1, 2};
    static const uint64_t n[] = {1, 0, 4};
    CHECK_EQ(sq_metrics_emit_histogram(
                 k, &(sq_metric_opts){.name = "coll_hist_bytes", .help = "Sizes."},
                 b, 2, n, 1 + 4 * 3),
             0);
}

TEST(the_text_format_is_accepted_by_real_parsers_with_exact_values)
{
    if (!parsers_init())
        return;
    sq_metrics *reg;
    CHECK_EQ(sq_metrics_create(&reg), 0);
    static const char *const L1[] = {"method", "GET", "path",
                                     "/a\"b\\c\nd", NULL};
    static const char *const L2[] = {"path", "\xc3\xbcn\xc3\xaf\xc2\xa9 \xe2\x9c\x93",
                                     "method", "POST", NULL};
    static const char *const L3[] = {"handler", "x", NULL};
    sq_counter *c1, *c2, *c3;
    sq_gauge *g1, *g2, *g3;
    sq_histogram *h1, *h2, *h3;
    const char *help = "Requests \\ handled,\nby method and path.";
    CHECK_EQ(sq_counter_create(&c1, reg,
                               &(sq_metric_opts){.name = "http_requests_total",
                                                 .help = help, .labels = L1}),
             0);
    CHECK_EQ(sq_counter_create(&c2, reg,
                               &(sq_metric_opts){.name = "http_requests_total",
                                                 .help = help, .labels = L2}),
             0);
    CHECK_EQ(sq_counter_create(&c3, reg,
                               &(sq_metric_opts){.name = "bytes_total",
                                                 .help = "All bytes."}),
             0);
    CHECK_EQ(sq_gauge_create(&g1, reg,
                             &(sq_metric_opts){.name = "temperature_celsius",
                                               .help = "Thousandths.",
                                               .divisor = 1000}),
             0);
    CHECK_EQ(sq_gauge_create(&g2, reg,
                             &(sq_metric_opts){.name = "queue_depth",
                                               .help = "Depth \"quoted\"."}),
             0);
    CHECK_EQ(sq_gauge_create(&g3, reg,
                             &(sq_metric_opts){.name = "nohelp"}),
             0);
    static const int64_t lat[] = {1000, 5000000, 100000000, 2500000000};
    CHECK_EQ(sq_histogram_create(&h1, reg,
                                 &(sq_metric_opts){.name = "request_duration_seconds",
                                                   .help = "Latency.",
                                                   .labels = L3,
                                                   .divisor = 1000000000},
                                 lat, 4),
             0);
    CHECK_EQ(sq_histogram_create(&h2, reg,
                                 &(sq_metric_opts){.name = "payload_bytes",
                                                   .help = "Only +Inf."},
                                 NULL, 0),
             0);
    static const int64_t neg[] = {-10, 0, 10};
    CHECK_EQ(sq_histogram_create(&h3, reg,
                                 &(sq_metric_opts){.name = "delta",
                                                   .help = "Signed."},
                                 neg, 3),
             0);
    CHECK_EQ(sq_metrics_add_collector(reg, render_collect, NULL, NULL, NULL),
             0);

    sq_counter_add(c1, 7);
    sq_counter_add(c2, ((uint64_t)1 << 53) + 1); /* not exact as a double */
    sq_counter_add(c3, UINT64_MAX);
    sq_gauge_set(g1, -12345);
    sq_gauge_set(g2, 3);
    sq_gauge_set(g3, INT64_MIN);
    static const int64_t lv[] = {999, 1000, 1001, 4000000, 250000000,
                                 3000000000, 123456789};
    for (size_t i = 0; i < sizeof lv / sizeof *lv; i++)
        sq_histogram_observe(h1, lv[i]);
    sq_histogram_observe(h2, 10);
    sq_histogram_observe(h2, 20);
    for (int v = -15; v <= 15; v += 5)
        sq_histogram_observe(h3, v);

    sq_metrics_snapshot *snap;
    CHECK_EQ(sq_metrics_snapshot_take(reg, &snap), 0);
    char *text = NULL;
    size_t len = 0;
    CHECK_EQ(sq_metrics_snapshot_render_alloc(snap, &text, &len), 0);
    CHECK_EQ(strlen(text), len);
    char *got = parse_text(text), *want = expected_lines(snap);
    CHECK(got != NULL);
    CHECK(got && same_text("parsed samples", got, want));
    /* The comparison can fail: one value changed in what we expect. */
    char *p = strstr(want, "S bytes_total - ");
    CHECK(p != NULL);
    if (p && got) {
        p += strlen("S bytes_total - ") + 3;
        *p = *p == '0' ? '1' : '0';
        fprintf(stderr, "  (a mismatch is expected next)\n");
        CHECK(!same_text("parsed samples", got, want));
    }
    free(got);
    free(want);
    promtool_check(text);

    /* A few lines, exactly. */
    CHECK(strstr(text, "# HELP http_requests_total Requests \\\\ handled,\\nby "
                       "method and path.\n# TYPE http_requests_total counter\n"));
    CHECK(strstr(text, "http_requests_total{method=\"GET\",path=\"/a\\\"b\\\\c\\nd\"} 7\n"));
    CHECK(strstr(text, "http_requests_total{method=\"POST\",path=\"\xc3\xbcn"
                       "\xc3\xaf\xc2\xa9 \xe2\x9c\x93\"} 9007199254740993\n"));
    CHECK(strstr(text, "bytes_total 18446744073709551615\n"));
    CHECK(strstr(text, "temperature_celsius -12.345\n"));
    CHECK(strstr(text, "# HELP queue_depth Depth \"quoted\".\n"));
    CHECK(strstr(text, "\n# TYPE nohelp gauge\nnohelp -9223372036854775808\n"));
    CHECK(strstr(text, "request_duration_seconds_bucket{handler=\"x\",le=\"1e-06\"} 2\n"));
    CHECK(strstr(text, "request_duration_seconds_bucket{handler=\"x\",le=\"0.005\"} 4\n"));
    CHECK(strstr(text, "request_duration_seconds_bucket{handler=\"x\",le=\"0.1\"} 4\n"));
    CHECK(strstr(text, "request_duration_seconds_bucket{handler=\"x\",le=\"2.5\"} 6\n"));
    CHECK(strstr(text, "request_duration_seconds_bucket{handler=\"x\",le=\"+Inf\"} 7\n"));
    CHECK(strstr(text, "request_duration_seconds_sum{handler=\"x\"} 3.377459789\n"));
    CHECK(strstr(text, "request_duration_seconds_count{handler=\"x\"} 7\n"));
    CHECK(strstr(text, "payload_bytes_bucket{le=\"+Inf\"} 2\npayload_bytes_sum 30\n"
                       "payload_bytes_count 2\n"));
    CHECK(strstr(text, "delta_bucket{le=\"-10\"} 2\ndelta_bucket{le=\"0\"} 4\n"
                       "delta_bucket{le=\"10\"} 6\ndelta_bucket{le=\"+Inf\"} 7\n"
                       "delta_sum 0\ndelta_count 7\n"));
    CHECK(strstr(text, "coll_gauge{source=\"collector\"} -3\n"));
    CHECK(strstr(text, "coll_hist_bytes_bucket{le=\"2\"} 1\n"));

    /* Into a caller's buffer: too small, exact, and the size query. */
    char small_buf[16];
    size_t l2 = 0;
    CHECK_EQ(sq_metrics_snapshot_render(snap, small_buf, sizeof small_buf, &l2),
             -ENOSPC);
    CHECK_EQ(l2, len);
    CHECK_EQ(strlen(small_buf), sizeof small_buf - 1);
    CHECK(strncmp(small_buf, text, sizeof small_buf - 1) == 0);
    CHECK_EQ(sq_metrics_snapshot_render(snap, NULL, 0, &l2), -ENOSPC);
    CHECK_EQ(l2, len);
    char *exact = malloc(len + 1);
    CHECK_EQ(sq_metrics_snapshot_render(snap, exact, len, &l2), -ENOSPC);
    CHECK_EQ(sq_metrics_snapshot_render(snap, exact, len + 1, &l2), 0);
    CHECK(strcmp(exact, text) == 0);
    CHECK_EQ(sq_metrics_render(reg, exact, len + 1, &l2), 0);
    CHECK(strcmp(exact, text) == 0); /* nothing moved: the same text */
    free(exact);
    char *again;
    CHECK_EQ(sq_metrics_render_alloc(reg, &again, NULL), 0);
    CHECK(strcmp(again, text) == 0);
    free(again);

    /* The checker fails broken texts; prometheus_client's parser alone
     * (without the grammar in front) rejects the first two too: it is
     * really in the loop. */
    static const char *const broken[] = {
        "# TYPE x gauge\nx{a=\"b} 1\n",                      /* open quote */
        "# TYPE y gauge\ny 1.2.3\n",                         /* bad value */
        "# TYPE z gauge\nz{a=\"\\t\"} 1\n",                  /* bad escape */
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n",
        ("# TYPE h histogram\nh_bucket{le=\"1\"} 3\nh_bucket{le=\"+Inf\"} 2\n"
         "h_sum 1\nh_count 2\n"),                            /* not cumulative */
        "# TYPE g gauge\nother 1\n",                         /* outside family */
        "# TYPE g gauge\ng 1",                               /* no newline */
        "# TYPE c counter\n# TYPE c counter\nc 1\n",         /* TYPE twice */
    };
    CHECK(all_rejected(broken, (int)(sizeof broken / sizeof *broken), "--batch"));
    CHECK(all_rejected(broken, 2, "--batch-parser-only"));
    free(text);
    sq_metrics_snapshot_free(snap);
    sq_metrics_destroy(reg);
    parsers_cleanup();
}

/* --------------------------------------------------------- collectors */

typedef struct coll_state {
    int calls;
    int freed;
    int rc[9];
} coll_state;

static void coll_fn(sq_metrics_sink *k, void *arg)
{
    coll_state *st = arg;
    st->calls++;
    static const char *const A[] = {"k", "a", NULL};
    static const char *const B[] = {"k", "b", NULL};
    static const char *const C[] = {"k", "c", NULL};
    static const char *const BAD[] = {"__k", "a", NULL};
    st->rc[0] = sq_metrics_emit_counter(
        k, &(sq_metric_opts){.name = "reg_total", .labels = A}, 1);
    st->rc[1] = sq_metrics_emit_counter(
        k, &(sq_metric_opts){.name = "reg_total", .labels = B}, 2);
    st->rc[2] = sq_metrics_emit_counter( /* the same series again */
        k, &(sq_metric_opts){.name = "reg_total", .labels = A}, 3);
    st->rc[3] = sq_metrics_emit_gauge( /* another type, same name */
        k, &(sq_metric_opts){.name = "reg_total", .labels = C}, 3);
    st->rc[8] = sq_metrics_emit_counter( /* a bad label name */
        k, &(sq_metric_opts){.name = "reg_total", .labels = BAD}, 3);
    st->rc[4] = sq_metrics_emit_gauge(
        k, &(sq_metric_opts){.name = "c_gauge", .labels = BAD}, 3);
    st->rc[5] = sq_metrics_emit_gauge( /* a registered series */
        k, &(sq_metric_opts){.name = "mine"}, 3);
    st->rc[6] = sq_metrics_emit_gauge( /* joins the registered family */
        k, &(sq_metric_opts){.name = "mine", .labels = A}, 4);
    static const int64_t bd[] = {2, 1};
    static const uint64_t n[] = {0, 0, 0};
    st->rc[7] = sq_metrics_emit_histogram(
        k, &(sq_metric_opts){.name = "c_hist"}, bd, 2, n, 0);
}

static void coll_free(void *arg)
{
    ((coll_state *)arg)->freed++;
}

TEST(collectors_emit_at_snapshot_time_and_can_be_removed)
{
    sq_metrics *reg;
    CHECK_EQ(sq_metrics_create(&reg), 0);
    sq_gauge *mine;
    CHECK_EQ(sq_gauge_create(&mine, reg, &(sq_metric_opts){.name = "mine"}), 0);
    sq_gauge_set(mine, 9);
    coll_state st = {0};
    sq_metrics_collector *col;
    CHECK_EQ(sq_metrics_add_collector(NULL, coll_fn, &st, NULL, NULL),
             -EINVAL);
    CHECK_EQ(sq_metrics_add_collector(reg, NULL, &st, NULL, NULL), -EINVAL);
    CHECK_EQ(sq_metrics_add_collector(reg, coll_fn, &st, coll_free, &col), 0);
    CHECK_EQ(st.calls, 0);
    sq_metrics_snapshot *s;
    CHECK_EQ(sq_metrics_snapshot_take(reg, &s), 0);
    CHECK_EQ(st.calls, 1);
    CHECK_EQ(st.rc[0], 0);
    CHECK_EQ(st.rc[1], 0);
    CHECK_EQ(st.rc[2], -EEXIST);
    CHECK_EQ(st.rc[3], -EEXIST);
    CHECK_EQ(st.rc[8], -EINVAL);
    CHECK_EQ(st.rc[4], -EINVAL);
    CHECK_EQ(st.rc[5], -EEXIST);
    CHECK_EQ(st.rc[6], 0);
    CHECK_EQ(st.rc[7], -EINVAL);
    const sq_metric_family *f = sq_metrics_snapshot_find(s, "reg_total");
    CHECK(f && f->nseries == 2 && f->series[0].counter == 1 &&
          f->series[1].counter == 2);
    f = sq_metrics_snapshot_find(s, "mine");
    CHECK(f && f->nseries == 2 && f->series[0].gauge == 9 &&
          f->series[1].gauge == 4);
    CHECK(sq_metrics_snapshot_find(s, "c_gauge") == NULL);
    CHECK(sq_metrics_snapshot_find(s, "c_hist") == NULL);
    CHECK_EQ(s->nfamilies, 2);
    sq_metrics_snapshot_free(s);

    CHECK_EQ(sq_metrics_remove_collector(reg, col), 0);
    CHECK_EQ(st.freed, 1);
    CHECK_EQ(sq_metrics_remove_collector(reg, col), -EINVAL);
    CHECK_EQ(sq_metrics_snapshot_take(reg, &s), 0);
    CHECK_EQ(st.calls, 1); /* not called any more */
    CHECK_EQ(s->nfamilies, 1);
    sq_metrics_snapshot_free(s);

    /* The registry's destruction frees the collectors still there. */
    coll_state st2 = {0};
    CHECK_EQ(sq_metrics_add_collector(reg, coll_fn, &st2, coll_free, NULL), 0);
    sq_metrics_destroy(reg);
    CHECK_EQ(st2.freed, 1);
}

/* A collector that removes itself while it runs: free_arg waits for the
 * call to return. */
typedef struct self_rm {
    sq_metrics *reg;
    sq_metrics_collector *me;
    int freed;
    bool freed_during_call;
} self_rm;

static void self_rm_fn(sq_metrics_sink *k, void *arg)
{
    (void)k;
    self_rm *s = arg;
    CHECK_EQ(sq_metrics_remove_collector(s->reg, s->me), 0);
    s->freed_during_call = s->freed != 0;
}

static void self_rm_free(void *arg)
{
    ((self_rm *)arg)->freed++;
}

TEST(a_collector_removed_during_its_call_is_freed_after_it)
{
    self_rm s = {0};
    CHECK_EQ(sq_metrics_create(&s.reg), 0);
    CHECK_EQ(sq_metrics_add_collector(s.reg, self_rm_fn, &s, self_rm_free,
                                      &s.me),
             0);
    sq_metrics_snapshot *snap;
    CHECK_EQ(sq_metrics_snapshot_take(s.reg, &snap), 0);
    sq_metrics_snapshot_free(snap);
    CHECK(!s.freed_during_call);
    CHECK_EQ(s.freed, 1);
    sq_metrics_destroy(s.reg);
}

/* ------------------------------------------------ the runtime's figures */

#define RT_TASKS 64

typedef struct rtc {
    sq_metrics *reg;
    sq_mutex m;
    long shared;
    sq_metrics_snapshot *snap;
    sq_sync_stats before, after;
    sq_check_hold_stats hold_before;
    bool holds_measured;
    pthread_t thread;
} rtc;

/* Takes the lock 20 times, holding it a few microseconds (busy, never
 * waiting while holding it), from a task or a plain thread. */
static void *rt_worker(void *arg)
{
    rtc *r = arg;
    for (int i = 0; i < 20; i++) {
        CHECK_EQ(sq_mutex_lock(&r->m), 0);
        for (volatile int k = 0; k < 5000; k++)
            ;
        r->shared++;
        CHECK_EQ(sq_mutex_unlock(&r->m), 0);
        sq_yield();
    }
    return NULL;
}

static void *rt_root(void *arg)
{
    rtc *r = arg;
    static const char *const L[] = {"runtime", "test", NULL};
    sq_metrics_runtime_opts o = {.labels = L};
    sq_metrics_collector *col;
    static const char *const BAD[] = {"__x", "y", NULL};
    CHECK_EQ(sq_metrics_register_runtime(
                 r->reg, NULL, &(sq_metrics_runtime_opts){.labels = BAD}, NULL),
             -EINVAL);
    CHECK_EQ(sq_metrics_register_runtime(
                 r->reg, NULL, &(sq_metrics_runtime_opts){.what = 1u << 7},
                 NULL),
             -EINVAL);
    CHECK_EQ(sq_metrics_register_runtime(r->reg, sq_runtime_current(), &o,
                                         &col),
             0);
    sq_sync_stats_get(&r->before);
    sq_check_get_hold_stats(&r->hold_before);
    sq_task t[RT_TASKS];
    /* a plain thread contends too (joined after the runtime is gone) */
    CHECK_EQ(pthread_create(&r->thread, NULL, rt_worker, r), 0);
    for (int i = 0; i < RT_TASKS; i++)
        CHECK_EQ(sq_spawn(&t[i], rt_worker, r, &small), 0);
    for (int i = 0; i < RT_TASKS; i++)
        CHECK_EQ(sq_join(t[i], NULL), 0);
    CHECK_EQ(sq_metrics_snapshot_take(r->reg, &r->snap), 0);
    sq_sync_stats_get(&r->after);
    CHECK_EQ(sq_metrics_remove_collector(r->reg, col), 0);
    return NULL;
}

static const sq_metric_series *one(const sq_metrics_snapshot *s,
                                   const char *name, sq_metric_type t)
{
    const sq_metric_family *f = sq_metrics_snapshot_find(s, name);
    if (!f || f->type != t || f->nseries != 1) {
        fprintf(stderr, "  family %s missing or wrong\n", name);
        CHECK(0);
        return NULL;
    }
    return &f->series[0];
}

TEST(the_runtime_collector_exports_sane_figures)
{
    rtc r = {0};
    CHECK_EQ(sq_metrics_create(&r.reg), 0);
    sq_mutex_init(&r.m);
    /* Lock hold times are only measured while the checks are on: switch a
     * harmless one on if nothing is (SQUIRREL_CHECK may have done it). */
    sq_check_config saved, on = {.findings = SQ_CHECK_LONG_HOLD,
                                 .long_hold_ns = 60 * SQ_SEC};
    sq_check_get_config(&saved);
    if (saved.findings)
        r.holds_measured = true;
    else
        r.holds_measured = sq_check_configure(&on) == 0;
    sq_test_run(2, rt_root, &r);
    pthread_join(r.thread, NULL);
    CHECK_EQ(r.shared, (RT_TASKS + 1) * 20);
    if (!saved.findings && r.holds_measured)
        CHECK_EQ(sq_check_configure(&saved), 0);
    sq_metrics_snapshot *s = r.snap;
    CHECK(s != NULL);
    if (!s)
        return;
    const sq_metric_series *x;
    if ((x = one(s, "squirrel_runtime_workers", SQ_METRIC_GAUGE))) {
        CHECK_EQ(x->gauge, 2);
        CHECK(x->nlabels == 1 && strcmp(x->labels[0], "runtime") == 0 &&
              strcmp(x->labels[1], "test") == 0);
    }
    uint64_t spawned = 0;
    if ((x = one(s, "squirrel_tasks_spawned_total", SQ_METRIC_COUNTER))) {
        spawned = x->counter;
        if (spawned < RT_TASKS + 1)
            fprintf(stderr, "  spawned: %llu\n", (unsigned long long)spawned);
        CHECK(spawned >= RT_TASKS + 1); /* the root too */
    }
    if ((x = one(s, "squirrel_tasks_alive", SQ_METRIC_GAUGE)))
        CHECK(x->gauge >= 1 && (uint64_t)x->gauge <= spawned);
    if ((x = one(s, "squirrel_task_switches_total", SQ_METRIC_COUNTER)))
        CHECK(x->counter >= RT_TASKS); /* each task was resumed to start */
    CHECK(one(s, "squirrel_task_steals_total", SQ_METRIC_COUNTER) != NULL);
    CHECK(one(s, "squirrel_worker_parks_total", SQ_METRIC_COUNTER) != NULL);
    CHECK(one(s, "squirrel_io_handles", SQ_METRIC_GAUGE) != NULL);
    const sq_metric_family *fw = sq_metrics_snapshot_find(
        s, "squirrel_lock_wait_seconds");
    CHECK(fw && fw->divisor == 1000000000);
    if ((x = one(s, "squirrel_lock_wait_seconds", SQ_METRIC_HISTOGRAM))) {
        CHECK_EQ(x->nbounds, SQ_SYNC_WAIT_BUCKETS - 1);
        CHECK_EQ(x->bounds[0], 1000);     /* 1 us */
        CHECK_EQ(x->bounds[15], 32768000); /* 2^15 us */
        CHECK_EQ(x->count, x->buckets[x->nbounds]);
        /* between what the sync layer said before and after */
        uint64_t cb = 0, ca = 0;
        for (size_t i = 0; i <= x->nbounds; i++) {
            cb += r.before.wait_buckets[i];
            ca += r.after.wait_buckets[i];
            CHECK(cb <= x->buckets[i] && x->buckets[i] <= ca);
        }
        CHECK((uint64_t)x->sum >= r.before.wait_ns &&
              (uint64_t)x->sum <= r.after.wait_ns);
        fprintf(stderr, "  lock waits: %llu before, %llu in the snapshot\n",
                (unsigned long long)cb, (unsigned long long)x->count);
    }
    if ((x = one(s, "squirrel_lock_wait_timeouts_total", SQ_METRIC_COUNTER)))
        CHECK(x->counter >= r.before.timeouts && x->counter <= r.after.timeouts);
    if ((x = one(s, "squirrel_lock_wait_cancels_total", SQ_METRIC_COUNTER)))
        CHECK(x->counter >= r.before.cancels && x->counter <= r.after.cancels);
    if ((x = one(s, "squirrel_lock_holds_total", SQ_METRIC_COUNTER)) &&
        r.holds_measured)
        CHECK(x->counter >= r.hold_before.holds + RT_TASKS * 20); /* tasks' */
    if ((x = one(s, "squirrel_lock_hold_seconds_total", SQ_METRIC_COUNTER)) &&
        r.holds_measured)
        CHECK(x->counter > r.hold_before.hold_ns);
    CHECK(one(s, "squirrel_lock_hold_max_seconds", SQ_METRIC_GAUGE) != NULL);

    /* Rendered and parsed like any other family. */
    char *text;
    CHECK_EQ(sq_metrics_snapshot_render_alloc(s, &text, NULL), 0);
    if (parsers_init()) {
        CHECK(parsed_equals(text, s));
        promtool_check(text);
    }
    free(text);
    sq_metrics_snapshot_free(s);

    /* Without a runtime (rt NULL, a plain thread): only the process-wide
     * families. */
    CHECK_EQ(sq_metrics_register_runtime(r.reg, NULL, NULL, NULL), 0);
    CHECK_EQ(sq_metrics_snapshot_take(r.reg, &s), 0);
    CHECK(sq_metrics_snapshot_find(s, "squirrel_tasks_spawned_total") == NULL);
    CHECK(sq_metrics_snapshot_find(s, "squirrel_lock_wait_seconds") != NULL);
    CHECK(sq_metrics_snapshot_find(s, "squirrel_lock_holds_total") != NULL);
    sq_metrics_snapshot_free(s);
    sq_metrics_destroy(r.reg);
    CHECK_EQ(sq_mutex_destroy(&r.m), 0);
    parsers_cleanup();
}

/* --------------------------------------------------------- update cost */

typedef struct bench {
    sq_counter *c;
    sq_gauge *g;
    sq_histogram *h;
    _Alignas(64) _Atomic uint64_t shared;
    int which;  /* 0 counter, 1 gauge, 2 histogram, 3 a shared atomic */
    long n;
    int cpu;
    atomic_int ready;
} bench;

static void bench_loop(bench *b)
{
    switch (b->which) {
    case 0:
        for (long i = 0; i < b->n; i++)
            sq_counter_inc(b->c);
        break;
    case 1:
        for (long i = 0; i < b->n; i++)
            sq_gauge_add(b->g, 1);
        break;
    case 2:
        for (long i = 0; i < b->n; i++)
            sq_histogram_observe(b->h, i & 1023);
        break;
    default:
        for (long i = 0; i < b->n; i++)
            atomic_fetch_add_explicit(&b->shared, 1, memory_order_relaxed);
        break;
    }
}

typedef struct bench_thr {
    bench *b;
    int cpu;
} bench_thr;

static void *bench_thread(void *arg)
{
    bench_thr *t = arg;
    if (ncpus >= 2) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpus[t->cpu % ncpus], &set);
        pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    }
    atomic_fetch_add(&t->b->ready, 1);
    while (atomic_load(&t->b->ready) < 2)
        ;
    bench_loop(t->b);
    return NULL;
}

TEST(update_cost_is_printed)
{
    cpus_init();
    static bench b;
    CHECK_EQ(sq_counter_create(&b.c, NULL, NULL), 0);
    CHECK_EQ(sq_gauge_create(&b.g, NULL, NULL), 0);
    int64_t bounds[10];
    for (int i = 0; i < 10; i++)
        bounds[i] = 1 << i;
    CHECK_EQ(sq_histogram_create(&b.h, NULL, NULL, bounds, 10), 0);
    long n = SQ_TEST_SLOW ? 200000 : 4000000;
    static const char *const names[] = {"counter add", "gauge add",
                                        "histogram observe",
                                        "shared atomic add (reference)"};
    fprintf(stderr, "  update cost, ns per update (%ld updates per thread):\n",
            n);
    uint64_t want[4] = {0};
    for (int w = 0; w < 4; w++) {
        b.which = w;
        b.n = n;
        int64_t t0 = sq_now();
        bench_loop(&b);
        int64_t t1 = sq_now();
        want[w] += (uint64_t)n;
        /* two threads on two CPUs, same metric */
        double two = -1;
        if (ncpus >= 2) {
            atomic_store(&b.ready, 0);
            pthread_t th[2];
            bench_thr a[2] = {{&b, 0}, {&b, 1}};
            int64_t t2 = sq_now();
            for (int i = 0; i < 2; i++)
                pthread_create(&th[i], NULL, bench_thread, &a[i]);
            for (int i = 0; i < 2; i++)
                pthread_join(th[i], NULL);
            two = (double)(sq_now() - t2) / (double)n;
            want[w] += 2 * (uint64_t)n;
        }
        fprintf(stderr, "    %-30s 1 thread %6.2f   2 threads on 2 CPUs %6.2f\n",
                names[w], (double)(t1 - t0) / (double)n, two);
    }
    /* exact, however fast */
    CHECK_EQ(sq_counter_get(b.c), want[0]);
    CHECK_EQ(sq_gauge_get(b.g), want[1]);
    uint64_t count;
    sq_histogram_get(b.h, NULL, &count, NULL);
    CHECK_EQ(count, want[2]);
    CHECK_EQ(atomic_load(&b.shared), want[3]);
    sq_counter_destroy(b.c);
    sq_gauge_destroy(b.g);
    sq_histogram_destroy(b.h);
}
