/* Lock-free metrics: per-CPU slots, phase flips for consistent reads, the
 * registry, snapshots and collectors.  (Rendering: metrics_text.c; the
 * runtime's collector: metrics_runtime.c.)
 *
 * Slots.  A metric owns one slot per CPU slot index (the CPU count rounded
 * up to a power of two, at most 256), each slot starting on its own 64-byte
 * line.  An update adds to the slot of sched_getcpu() (glibc 2.35+ reads
 * it from the rseq area, a couple of ns).  A thread that migrates between
 * sched_getcpu and its additions just adds to another CPU's line: the
 * additions are atomic, so nothing is lost; it only costs that line a
 * transfer.
 *
 * Counters are one word per slot; the read is the sum of the slots.  A
 * counter only goes up, so the sum is always between the values before
 * and after the read, and successive reads never go down (coherence).
 *
 * Gauges and histograms need more: a gauge raised in one slot and lowered
 * in another (its task moved in between) could be summed as "lowered but
 * not raised", a value it never had; a histogram's bucket and sum could
 * disagree.  So their updates are phased.  A slot holds, per phase p of
 * two, an `active[p]` count and the values `val[p][0..k)`.  An update:
 *     p = phase; active[p]++ (seq_cst); if phase != p: active[p]--, retry;
 *     val[p][...] += ... ; active[p]-- (release)
 * A reader (one at a time per metric: its rlock) flips `phase`
 * (seq_cst), waits for active[old] == 0 in every slot, then folds
 * val[old] of every slot into its accumulator and zeroes them.  By the
 * store/load pattern of Dekker's algorithm (both sides seq_cst), an update
 * either sees the new phase (and retries in it) or is seen active by the
 * reader (which waits for it).  The updates folded are exactly those whose
 * second phase load read the old phase, i.e. came before the flip in the
 * single order of seq_cst operations, which extends happens-before: a
 * consistent cut.  val[old] is zero again before the next flip, which
 * only a reader holding the rlock makes, so nobody else writes it.
 *
 * Gauge set.  sq_gauge_set(v) adds v - (the current raw sum) to its slot.
 * The raw sum is the accumulator plus val[0] and val[1] of every slot; a
 * reader's fold moves amounts between them, so `cseq` (a sequence count,
 * odd while a fold runs) lets set retry a read that overlapped a fold.
 * The value additions of gauges are release and set's reads acquire, so
 * an update that set saw is ordered before set's own update.
 */
#include "squirrel/metrics.h"
#include "squirrel/sync.h"
#include "sq_base/compiler.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LINE 64
#define MAX_SLOTS 256

#if defined(__GNUC__)
#define LIKELY(x) __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define LIKELY(x) (x)
#define UNLIKELY(x) (x)
#endif

/* ------------------------------------------------------------- slots */

static unsigned slot_mask;
static pthread_once_t slot_once = PTHREAD_ONCE_INIT;

static void slot_init(void)
{
    long n = sysconf(_SC_NPROCESSORS_CONF);
    if (n < 1)
        n = 1;
    if (n > MAX_SLOTS)
        n = MAX_SLOTS;
    unsigned p = 1;
    while (p < (unsigned long)n)
        p <<= 1;
    slot_mask = p - 1;
}

/* Without a working sched_getcpu, each thread keeps one slot of its own
 * choosing (round robin over threads). */
static SQ__TLS unsigned fallback_slot;
static atomic_uint fallback_next;

static inline unsigned my_slot(unsigned mask)
{
    int cpu = sched_getcpu();
    if (UNLIKELY(cpu < 0)) {
        if (!fallback_slot)
            fallback_slot = atomic_fetch_add_explicit(
                                &fallback_next, 1, memory_order_relaxed) +
                            1;
        return fallback_slot & mask;
    }
    return (unsigned)cpu & mask;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}

/* Spins a little, then gives the CPU away: what we wait for is a few
 * instructions of another thread, unless that thread was preempted. */
static void backoff(unsigned *n)
{
    if (++*n < 64)
        cpu_relax();
    else
        sched_yield();
}

/* ------------------------------------------------------------ metrics */

typedef struct family family;

/* The common part of every metric.  The first line (64 bytes on LP64)
 * holds what updates read: written at creation, and phase, cseq, gacc by
 * readers, so it only moves between CPUs when the metric is read. */
typedef struct metric {
    unsigned char *slots;     /* (mask + 1) * stride bytes, line-aligned */
    size_t stride;            /* bytes per slot, a multiple of LINE */
    unsigned mask;            /* slot index mask */
    _Atomic unsigned phase;   /* gauges, histograms: the phase (0, 1) */
    size_t k;                 /* words per phase in a slot */
    size_t nbounds;           /* histograms */
    int64_t *bounds;
    _Atomic uint64_t cseq;    /* gauges: odd while a fold runs */
    _Atomic uint64_t gacc;    /* gauges: the folded raw value */

    /* cold */
    sq_metric_type type;
    sq_metrics *reg;          /* NULL when standalone */
    family *fam;
    char *name, *help;
    const char **labels;      /* 2 * nlabels, sorted by name */
    size_t nlabels;
    uint64_t divisor;
    void *strs;               /* the allocation holding the strings */
    sq_mutex rlock;           /* readers of a phased metric take turns */
    uint64_t *acc;            /* histograms: folded buckets and sum */
} metric;

struct sq_counter {
    metric m;
};
struct sq_gauge {
    metric m;
};
struct sq_histogram {
    metric m;
};

static inline _Atomic uint64_t *slot_at(const metric *m, unsigned i)
{
    return (_Atomic uint64_t *)(m->slots + (size_t)i * m->stride);
}

/* Phased slot layout (in words): active[0], active[1], val[0][k],
 * val[1][k]. */
static inline _Atomic uint64_t *val_of(const metric *m, _Atomic uint64_t *s,
                                       unsigned p)
{
    return s + 2 + (size_t)p * m->k;
}

static inline _Atomic uint64_t *enter(const metric *m, unsigned *pp)
{
    _Atomic uint64_t *s = slot_at(m, my_slot(m->mask));
    unsigned p = atomic_load_explicit(&m->phase, memory_order_relaxed);
    for (;;) {
        atomic_fetch_add_explicit(&s[p], 1, memory_order_seq_cst);
        unsigned q = atomic_load_explicit(&m->phase, memory_order_seq_cst);
        if (LIKELY(q == p))
            break;
        atomic_fetch_sub_explicit(&s[p], 1, memory_order_relaxed);
        p = q;
    }
    *pp = p;
    return s;
}

static inline void leave(_Atomic uint64_t *s, unsigned p)
{
    atomic_fetch_sub_explicit(&s[p], 1, memory_order_release);
}

/* Locks l with the caller's cancellation masked, so that the lock is
 * always taken (for calls that must complete). */
static bool lock_masked(sq_mutex *l)
{
    bool masked = sq_cancel_mask() == 0;
    sq_mutex_lock_nocancel(l);
    return masked;
}

static void unlock_masked(sq_mutex *l, bool masked)
{
    sq_mutex_unlock(l);
    if (masked)
        sq_cancel_unmask();
}

/* Flips m's phase, waits for the updates of the old phase and adds their
 * values into delta[0..k).  The caller holds m->rlock and zeroes the old
 * phase afterwards (zero_old), so that it may first publish delta. */
static unsigned fold(metric *m, uint64_t *delta)
{
    unsigned p = atomic_load_explicit(&m->phase, memory_order_relaxed);
    atomic_store_explicit(&m->phase, p ^ 1u, memory_order_seq_cst);
    /* Redundant in C11 (a seq_cst store is not reordered with a later
     * seq_cst load), but qemu-user on x86 emulates AArch64's stlr + ldar
     * without the fence between them, and the test then loses updates
     * (1 run in 8 without it, 0 in 16 with it).  Readers only: cheap. */
    atomic_thread_fence(memory_order_seq_cst);
    memset(delta, 0, m->k * sizeof *delta);
    for (unsigned i = 0; i <= m->mask; i++) {
        _Atomic uint64_t *s = slot_at(m, i);
        unsigned n = 0;
        while (atomic_load_explicit(&s[p], memory_order_seq_cst) != 0)
            backoff(&n);
        _Atomic uint64_t *v = val_of(m, s, p);
        for (size_t j = 0; j < m->k; j++)
            delta[j] += atomic_load_explicit(&v[j], memory_order_relaxed);
    }
    return p;
}

static void zero_old(metric *m, unsigned p)
{
    for (unsigned i = 0; i <= m->mask; i++) {
        _Atomic uint64_t *v = val_of(m, slot_at(m, i), p);
        for (size_t j = 0; j < m->k; j++)
            atomic_store_explicit(&v[j], 0, memory_order_relaxed);
    }
}

static int64_t gauge_read_locked(metric *m)
{
    uint64_t d;
    unsigned p = fold(m, &d);
    uint64_t q = atomic_load_explicit(&m->cseq, memory_order_relaxed);
    atomic_store_explicit(&m->cseq, q + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    uint64_t acc = atomic_load_explicit(&m->gacc, memory_order_relaxed) + d;
    atomic_store_explicit(&m->gacc, acc, memory_order_relaxed);
    zero_old(m, p);
    atomic_store_explicit(&m->cseq, q + 2, memory_order_release);
    return (int64_t)acc;
}

/* Folds a histogram into m->acc and copies it out: cumulative buckets,
 * count, sum. */
static void hist_read_locked(metric *m, uint64_t *buckets, uint64_t *count,
                             int64_t *sum)
{
    uint64_t delta[SQ_HISTOGRAM_MAX_BOUNDS + 2];
    unsigned p = fold(m, delta);
    zero_old(m, p);
    for (size_t j = 0; j < m->k; j++)
        m->acc[j] += delta[j];
    uint64_t c = 0;
    for (size_t j = 0; j <= m->nbounds; j++) {
        c += m->acc[j];
        if (buckets)
            buckets[j] = c;
    }
    if (count)
        *count = c;
    if (sum)
        *sum = (int64_t)m->acc[m->nbounds + 1];
}

/* ------------------------------------------------ names and labels */

static bool is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool valid_metric_name(const char *s)
{
    if (!s || !(is_alpha(*s) || *s == ':'))
        return false;
    for (s++; *s; s++)
        if (!(is_alpha(*s) || is_digit(*s) || *s == ':'))
            return false;
    return true;
}

static bool valid_label_name(const char *s)
{
    if (!s || !is_alpha(*s) || (s[0] == '_' && s[1] == '_'))
        return false;
    for (s++; *s; s++)
        if (!(is_alpha(*s) || is_digit(*s)))
            return false;
    return true;
}

/* Well-formed UTF-8: no overlong forms, surrogates or code points past
 * U+10FFFF. */
static bool valid_utf8(const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    while (*s) {
        unsigned c = *s++;
        if (c < 0x80)
            continue;
        unsigned n, min, cp;
        if ((c & 0xe0) == 0xc0)
            n = 1, min = 0x80, cp = c & 0x1f;
        else if ((c & 0xf0) == 0xe0)
            n = 2, min = 0x800, cp = c & 0x0f;
        else if ((c & 0xf8) == 0xf0)
            n = 3, min = 0x10000, cp = c & 0x07;
        else
            return false;
        for (unsigned i = 0; i < n; i++) {
            if ((*s & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (*s++ & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
    }
    return true;
}

/* A checked description, pointing into the caller's strings. */
typedef struct desc {
    const char *name, *help;
    uint64_t divisor;
    size_t nlabels;
    const char *lab[2 * SQ_METRIC_MAX_LABELS]; /* sorted by name */
} desc;

static int desc_parse(desc *d, const sq_metric_opts *o, sq_metric_type type)
{
    if (!o || !valid_metric_name(o->name))
        return -EINVAL;
    d->name = o->name;
    d->help = o->help ? o->help : "";
    if (!valid_utf8(d->help))
        return -EINVAL;
    d->divisor = o->divisor ? o->divisor : 1;
    d->nlabels = 0;
    if (o->labels) {
        for (size_t i = 0; o->labels[2 * i]; i++) {
            const char *k = o->labels[2 * i], *v = o->labels[2 * i + 1];
            if (i == SQ_METRIC_MAX_LABELS || !v || !valid_label_name(k) ||
                !valid_utf8(v))
                return -EINVAL;
            if (type == SQ_METRIC_HISTOGRAM && strcmp(k, "le") == 0)
                return -EINVAL;
            /* insertion into the sorted pairs */
            size_t j = d->nlabels;
            while (j > 0 && strcmp(d->lab[2 * (j - 1)], k) > 0) {
                d->lab[2 * j] = d->lab[2 * (j - 1)];
                d->lab[2 * j + 1] = d->lab[2 * (j - 1) + 1];
                j--;
            }
            if (j > 0 && strcmp(d->lab[2 * (j - 1)], k) == 0)
                return -EINVAL;
            d->lab[2 * j] = k;
            d->lab[2 * j + 1] = v;
            d->nlabels++;
        }
    }
    return 0;
}

/* For metrics_runtime.c: checks a label array as registration would. */
int sq__metrics_check_labels(const char *const *labels);
int sq__metrics_check_labels(const char *const *labels)
{
    desc d;
    sq_metric_opts o = {.name = "x", .labels = labels};
    return desc_parse(&d, &o, SQ_METRIC_GAUGE);
}

static bool same_labels(const char *const *a, size_t na, const char *const *b,
                        size_t nb)
{
    if (na != nb)
        return false;
    for (size_t i = 0; i < 2 * na; i++)
        if (strcmp(a[i], b[i]) != 0)
            return false;
    return true;
}

static int check_bounds(const int64_t *bounds, size_t n)
{
    if (n > SQ_HISTOGRAM_MAX_BOUNDS || (n > 0 && !bounds))
        return -EINVAL;
    for (size_t i = 1; i < n; i++)
        if (bounds[i] <= bounds[i - 1])
            return -EINVAL;
    return 0;
}

/* ------------------------------------------- families: shared rules */

/* Sorted arrays of pointers to structs that start with their name. */
typedef struct named {
    const char *name;
} named;

static size_t lower_bound(void *const *arr, size_t n, const char *name)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(((const named *)arr[mid])->name, name) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void *find_named(void *const *arr, size_t n, const char *name)
{
    size_t i = lower_bound(arr, n, name);
    return i < n && strcmp(((const named *)arr[i])->name, name) == 0 ? arr[i]
                                                                      : NULL;
}

static int insert_at(void ***arr, size_t *n, size_t *cap, size_t at, void *x)
{
    if (*n == *cap) {
        size_t nc = *cap ? 2 * *cap : 16;
        void **na = realloc(*arr, nc * sizeof *na);
        if (!na)
            return -ENOMEM;
        *arr = na;
        *cap = nc;
    }
    memmove(*arr + at + 1, *arr + at, (*n - at) * sizeof **arr);
    (*arr)[at] = x;
    (*n)++;
    return 0;
}

static void remove_at(void **arr, size_t *n, size_t at)
{
    memmove(arr + at, arr + at + 1, (*n - at - 1) * sizeof *arr);
    (*n)--;
}

/* Gives the type of a family in a sorted array (registry or snapshot). */
typedef sq_metric_type (*type_of_fn)(const void *fam);

static const char *const hist_suffix[3] = {"_bucket", "_sum", "_count"};

/* Compares the string a with b (its first blen bytes) followed by c. */
static int cmp_join(const char *a, const char *b, size_t blen, const char *c)
{
    int r = strncmp(a, b, blen);
    if (r)
        return r;
    if (strlen(a) < blen)
        return -1;
    return strcmp(a + blen, c);
}

/* The element of arr (sorted, elements start with their name) named
 * b[0..blen) followed by c, or NULL. */
static const void *find_join(void *const *arr, size_t n, const char *b,
                             size_t blen, const char *c)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const named *x = arr[mid];
        int r = cmp_join(x->name, b, blen, c);
        if (r == 0)
            return x;
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* -EEXIST if a new family (name, type) would produce a series name that
 * another family in arr produces: a histogram's name_bucket, name_sum,
 * name_count against a family of that name, either way round. */
static int check_clash(void *const *arr, size_t n, type_of_fn type_of,
                       const char *name, sq_metric_type type)
{
    size_t len = strlen(name);
    for (int i = 0; i < 3; i++) {
        size_t sl = strlen(hist_suffix[i]);
        if (type == SQ_METRIC_HISTOGRAM &&
            find_join(arr, n, name, len, hist_suffix[i]))
            return -EEXIST;
        if (len > sl && strcmp(name + len - sl, hist_suffix[i]) == 0) {
            const void *f = find_join(arr, n, name, len - sl, "");
            if (f && type_of(f) == SQ_METRIC_HISTOGRAM)
                return -EEXIST;
        }
    }
    return 0;
}

/* ----------------------------------------------------------- registry */

struct family {
    char *name;               /* first: named */
    sq_metric_type type;
    char *help;
    uint64_t divisor;
    metric **series;
    size_t n, cap;
};

struct sq_metrics_collector {
    sq_metrics_collector *next;
    sq_metrics_collect_fn fn;
    void *arg;
    void (*free_arg)(void *);
    atomic_int refs;          /* the registry's (while listed) + calls */
};

struct sq_metrics {
    sq_mutex lock;            /* the lists below; never held by updates */
    family **fams;            /* sorted by name */
    size_t nfams, capfams;
    sq_metrics_collector *colls, *colls_tail;
};

int sq_metrics_create(sq_metrics **out)
{
    if (!out)
        return -EINVAL;
    sq_metrics *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    sq_mutex_init_named(&r->lock, "sq_metrics.registry");
    *out = r;
    return 0;
}

static void metric_free(metric *m);

static void collector_unref(sq_metrics_collector *c)
{
    if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1) {
        if (c->free_arg)
            c->free_arg(c->arg);
        free(c);
    }
}

void sq_metrics_destroy(sq_metrics *reg)
{
    if (!reg)
        return;
    for (size_t i = 0; i < reg->nfams; i++) {
        family *f = reg->fams[i];
        for (size_t j = 0; j < f->n; j++) {
            f->series[j]->reg = NULL;
            metric_free(f->series[j]);
        }
        free(f->series);
        free(f->name);
        free(f->help);
        free(f);
    }
    free(reg->fams);
    for (sq_metrics_collector *c = reg->colls, *next; c; c = next) {
        next = c->next;
        collector_unref(c);
    }
    free(reg);
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

static sq_metric_type family_type(const void *f)
{
    return ((const family *)f)->type;
}

/* Adds m to reg; under reg->lock. */
static int registry_add(sq_metrics *reg, metric *m)
{
    family *f = find_named((void *const *)reg->fams, reg->nfams, m->name);
    if (f) {
        if (f->type != m->type || strcmp(f->help, m->help) != 0 ||
            f->divisor != m->divisor)
            return -EEXIST;
        for (size_t i = 0; i < f->n; i++)
            if (same_labels((const char *const *)f->series[i]->labels,
                            f->series[i]->nlabels,
                            (const char *const *)m->labels, m->nlabels))
                return -EEXIST;
    } else {
        int rc = check_clash((void *const *)reg->fams, reg->nfams,
                             family_type, m->name, m->type);
        if (rc)
            return rc;
        f = calloc(1, sizeof *f);
        if (!f)
            return -ENOMEM;
        f->name = dup_str(m->name);
        f->help = dup_str(m->help);
        f->type = m->type;
        f->divisor = m->divisor;
        size_t at = lower_bound((void *const *)reg->fams, reg->nfams, m->name);
        if (!f->name || !f->help ||
            insert_at((void ***)&reg->fams, &reg->nfams, &reg->capfams, at,
                      f) != 0) {
            free(f->name);
            free(f->help);
            free(f);
            return -ENOMEM;
        }
    }
    if (f->n == f->cap) {
        size_t nc = f->cap ? 2 * f->cap : 4;
        metric **ns = realloc(f->series, nc * sizeof *ns);
        if (!ns) {
            if (f->n == 0) { /* just created: take it out again */
                remove_at((void **)reg->fams, &reg->nfams,
                          lower_bound((void *const *)reg->fams, reg->nfams,
                                      m->name));
                free(f->name);
                free(f->help);
                free(f);
            }
            return -ENOMEM;
        }
        f->series = ns;
        f->cap = nc;
    }
    f->series[f->n++] = m;
    m->fam = f;
    m->reg = reg;
    return 0;
}

/* Takes m out of its registry; under reg->lock. */
static void registry_remove(sq_metrics *reg, metric *m)
{
    family *f = m->fam;
    for (size_t i = 0; i < f->n; i++)
        if (f->series[i] == m) {
            memmove(f->series + i, f->series + i + 1,
                    (f->n - i - 1) * sizeof *f->series);
            f->n--;
            break;
        }
    if (f->n == 0) {
        size_t at = lower_bound((void *const *)reg->fams, reg->nfams, f->name);
        remove_at((void **)reg->fams, &reg->nfams, at);
        free(f->series);
        free(f->name);
        free(f->help);
        free(f);
    }
    m->fam = NULL;
    m->reg = NULL;
}

/* ----------------------------------------------- creating, destroying */

static void metric_free(metric *m)
{
    if (!m)
        return;
    sq_mutex_destroy(&m->rlock);
    free(m->slots);
    free(m->bounds);
    free(m->acc);
    free(m->strs);
    free(m);
}

/* Copies name, help and labels of d into one allocation owned by m. */
static int metric_set_strings(metric *m, const desc *d)
{
    size_t sz = 2 * d->nlabels * sizeof(char *);
    sz += strlen(d->name) + 1 + strlen(d->help) + 1;
    for (size_t i = 0; i < 2 * d->nlabels; i++)
        sz += strlen(d->lab[i]) + 1;
    char *p = malloc(sz);
    if (!p)
        return -ENOMEM;
    m->strs = p;
    m->labels = (const char **)(void *)p;
    p += 2 * d->nlabels * sizeof(char *);
    size_t n;
    m->name = p;
    n = strlen(d->name) + 1;
    memcpy(p, d->name, n);
    p += n;
    m->help = p;
    n = strlen(d->help) + 1;
    memcpy(p, d->help, n);
    p += n;
    for (size_t i = 0; i < 2 * d->nlabels; i++) {
        m->labels[i] = p;
        n = strlen(d->lab[i]) + 1;
        memcpy(p, d->lab[i], n);
        p += n;
    }
    m->nlabels = d->nlabels;
    m->divisor = d->divisor;
    return 0;
}

static int metric_create(metric **out, sq_metrics *reg,
                         const sq_metric_opts *o, sq_metric_type type,
                         const int64_t *bounds, size_t nbounds)
{
    if (!out)
        return -EINVAL;
    desc d;
    int rc;
    if (reg) {
        if ((rc = desc_parse(&d, o, type)) != 0)
            return rc;
    } else { /* standalone: no name, only the divisor counts */
        memset(&d, 0, sizeof d);
        d.name = "";
        d.help = "";
        d.divisor = o && o->divisor ? o->divisor : 1;
    }
    if (type == SQ_METRIC_HISTOGRAM && (rc = check_bounds(bounds, nbounds)))
        return rc;
    pthread_once(&slot_once, slot_init);

    metric *m = aligned_alloc(LINE, (sizeof *m + LINE - 1) / LINE * LINE);
    if (!m)
        return -ENOMEM;
    memset(m, 0, sizeof *m);
    m->type = type;
    m->mask = slot_mask;
    switch (type) {
    case SQ_METRIC_COUNTER:
        m->k = 0;
        m->stride = LINE;
        break;
    case SQ_METRIC_GAUGE:
        m->k = 1;
        m->stride = LINE;
        break;
    default:
        m->k = nbounds + 2; /* buckets (with +Inf), sum */
        m->stride = ((2 + 2 * m->k) * 8 + LINE - 1) / LINE * LINE;
        break;
    }
    sq_mutex_init_named(&m->rlock, "sq_metrics.reader");
    rc = -ENOMEM;
    size_t bytes = (size_t)(m->mask + 1) * m->stride;
    m->slots = aligned_alloc(LINE, bytes);
    if (!m->slots)
        goto fail;
    memset(m->slots, 0, bytes);
    if (type == SQ_METRIC_HISTOGRAM) {
        m->nbounds = nbounds;
        m->acc = calloc(m->k, sizeof *m->acc);
        m->bounds = malloc((nbounds ? nbounds : 1) * sizeof *m->bounds);
        if (!m->acc || !m->bounds)
            goto fail;
        if (nbounds)
            memcpy(m->bounds, bounds, nbounds * sizeof *bounds);
    }
    if ((rc = metric_set_strings(m, &d)) != 0)
        goto fail;
    if (reg) {
        if ((rc = sq_mutex_lock(&reg->lock)) != 0)
            goto fail;
        rc = registry_add(reg, m);
        sq_mutex_unlock(&reg->lock);
        if (rc)
            goto fail;
    }
    *out = m;
    return 0;
fail:
    metric_free(m);
    return rc;
}

static void metric_destroy(metric *m)
{
    if (!m)
        return;
    sq_metrics *reg = m->reg;
    if (reg) {
        bool masked = lock_masked(&reg->lock);
        registry_remove(reg, m);
        unlock_masked(&reg->lock, masked);
    }
    metric_free(m);
}

int sq_counter_create(sq_counter **out, sq_metrics *reg,
                      const sq_metric_opts *o)
{
    return metric_create((metric **)out, reg, o, SQ_METRIC_COUNTER, NULL, 0);
}

int sq_gauge_create(sq_gauge **out, sq_metrics *reg, const sq_metric_opts *o)
{
    return metric_create((metric **)out, reg, o, SQ_METRIC_GAUGE, NULL, 0);
}

int sq_histogram_create(sq_histogram **out, sq_metrics *reg,
                        const sq_metric_opts *o, const int64_t *bounds,
                        size_t nbounds)
{
    return metric_create((metric **)out, reg, o, SQ_METRIC_HISTOGRAM, bounds,
                         nbounds);
}

void sq_counter_destroy(sq_counter *c)
{
    metric_destroy(c ? &c->m : NULL);
}

void sq_gauge_destroy(sq_gauge *g)
{
    metric_destroy(g ? &g->m : NULL);
}

void sq_histogram_destroy(sq_histogram *h)
{
    metric_destroy(h ? &h->m : NULL);
}

/* ------------------------------------------------------------ updates */

void sq_counter_add(sq_counter *c, uint64_t n)
{
    atomic_fetch_add_explicit(slot_at(&c->m, my_slot(c->m.mask)), n,
                              memory_order_relaxed);
}

void sq_counter_inc(sq_counter *c)
{
    sq_counter_add(c, 1);
}

uint64_t sq_counter_get(const sq_counter *c)
{
    uint64_t sum = 0;
    for (unsigned i = 0; i <= c->m.mask; i++)
        sum += atomic_load_explicit(slot_at(&c->m, i), memory_order_relaxed);
    return sum;
}

void sq_gauge_add(sq_gauge *g, int64_t d)
{
    unsigned p;
    _Atomic uint64_t *s = enter(&g->m, &p);
    atomic_fetch_add_explicit(val_of(&g->m, s, p), (uint64_t)d,
                              memory_order_release);
    leave(s, p);
}

void sq_gauge_sub(sq_gauge *g, int64_t d)
{
    sq_gauge_add(g, (int64_t)(0 - (uint64_t)d));
}

void sq_gauge_inc(sq_gauge *g)
{
    sq_gauge_add(g, 1);
}

void sq_gauge_dec(sq_gauge *g)
{
    sq_gauge_add(g, -1);
}

void sq_gauge_set(sq_gauge *g, int64_t v)
{
    metric *m = &g->m;
    uint64_t raw;
    unsigned n = 0;
    for (;;) {
        uint64_t q = atomic_load_explicit(&m->cseq, memory_order_acquire);
        if (q & 1) {
            backoff(&n);
            continue;
        }
        raw = atomic_load_explicit(&m->gacc, memory_order_relaxed);
        for (unsigned i = 0; i <= m->mask; i++) {
            _Atomic uint64_t *s = slot_at(m, i);
            raw += atomic_load_explicit(val_of(m, s, 0), memory_order_acquire);
            raw += atomic_load_explicit(val_of(m, s, 1), memory_order_acquire);
        }
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&m->cseq, memory_order_relaxed) == q)
            break;
    }
    sq_gauge_add(g, (int64_t)((uint64_t)v - raw));
}

int64_t sq_gauge_get(sq_gauge *g)
{
    bool masked = lock_masked(&g->m.rlock);
    int64_t v = gauge_read_locked(&g->m);
    unlock_masked(&g->m.rlock, masked);
    return v;
}

void sq_histogram_observe(sq_histogram *h, int64_t v)
{
    metric *m = &h->m;
    size_t lo = 0, hi = m->nbounds; /* first bound >= v, or nbounds */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (m->bounds[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    unsigned p;
    _Atomic uint64_t *s = enter(m, &p);
    _Atomic uint64_t *val = val_of(m, s, p);
    atomic_fetch_add_explicit(&val[lo], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&val[m->nbounds + 1], (uint64_t)v,
                              memory_order_relaxed);
    leave(s, p);
}

size_t sq_histogram_nbounds(const sq_histogram *h)
{
    return h->m.nbounds;
}

void sq_histogram_get(sq_histogram *h, uint64_t *buckets, uint64_t *count,
                      int64_t *sum)
{
    bool masked = lock_masked(&h->m.rlock);
    hist_read_locked(&h->m, buckets, count, sum);
    unlock_masked(&h->m.rlock, masked);
}

/* ---------------------------------------------------------- snapshots */

/* A bump allocator for a snapshot's strings and arrays. */
typedef struct chunk {
    struct chunk *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
} chunk;

typedef struct sfam {
    sq_metric_family pub;     /* pub.name first: named; series below */
    sq_metric_series *series;
    size_t cap;
} sfam;

typedef struct snap {
    sq_metrics_snapshot pub;
    sfam **fams;              /* sorted by name */
    size_t nfams, capfams;
    chunk *chunks;
    sq_metric_family *out;
} snap;

struct sq_metrics_sink {
    snap *s;
};

static void *arena_alloc(snap *s, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    chunk *c = s->chunks;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > 8192 ? n : 8192;
        c = malloc(sizeof *c + cap);
        if (!c)
            return NULL;
        c->next = s->chunks;
        c->used = 0;
        c->cap = cap;
        s->chunks = c;
    }
    void *p = c->data + c->used;
    c->used += n;
    return p;
}

static const char *arena_str(snap *s, const char *str)
{
    size_t n = strlen(str) + 1;
    char *d = arena_alloc(s, n);
    if (d)
        memcpy(d, str, n);
    return d;
}

void sq_metrics_snapshot_free(sq_metrics_snapshot *ps)
{
    if (!ps)
        return;
    snap *s = (snap *)ps;
    for (size_t i = 0; i < s->nfams; i++) {
        free(s->fams[i]->series);
        free(s->fams[i]);
    }
    free(s->fams);
    free(s->out);
    for (chunk *c = s->chunks, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    free(s);
}

static sq_metric_type sfam_type(const void *f)
{
    return ((const sfam *)f)->pub.type;
}

/* A new series in s for d (type t), with its labels copied: joins the
 * family of its name or starts it.  check_dups: look for the same label
 * set (emitted series; registered ones were checked at registration). */
static int snap_add(snap *s, const desc *d, sq_metric_type t, bool check_dups,
                    sq_metric_series **out)
{
    sfam *f = find_named((void *const *)s->fams, s->nfams, d->name);
    if (f) {
        if (f->pub.type != t || strcmp(f->pub.help, d->help) != 0 ||
            f->pub.divisor != d->divisor)
            return -EEXIST;
        if (check_dups)
            for (size_t i = 0; i < f->pub.nseries; i++)
                if (same_labels(f->series[i].labels, f->series[i].nlabels,
                                d->lab, d->nlabels))
                    return -EEXIST;
    } else {
        int rc = check_clash((void *const *)s->fams, s->nfams, sfam_type,
                             d->name, t);
        if (rc)
            return rc;
        f = calloc(1, sizeof *f);
        if (!f)
            return -ENOMEM;
        f->pub.name = arena_str(s, d->name);
        f->pub.help = arena_str(s, d->help);
        f->pub.type = t;
        f->pub.divisor = d->divisor;
        size_t at = lower_bound((void *const *)s->fams, s->nfams, d->name);
        if (!f->pub.name || !f->pub.help ||
            insert_at((void ***)&s->fams, &s->nfams, &s->capfams, at, f)) {
            free(f);
            return -ENOMEM;
        }
    }
    if (f->pub.nseries == f->cap) {
        size_t nc = f->cap ? 2 * f->cap : 4;
        sq_metric_series *ns = realloc(f->series, nc * sizeof *ns);
        if (!ns)
            return -ENOMEM; /* an empty family is left: harmless */
        f->series = ns;
        f->cap = nc;
    }
    const char **lab = NULL;
    if (d->nlabels) {
        lab = arena_alloc(s, 2 * d->nlabels * sizeof *lab);
        if (!lab)
            return -ENOMEM;
        for (size_t i = 0; i < 2 * d->nlabels; i++)
            if (!(lab[i] = arena_str(s, d->lab[i])))
                return -ENOMEM;
    }
    sq_metric_series *x = &f->series[f->pub.nseries++];
    memset(x, 0, sizeof *x);
    x->labels = lab;
    x->nlabels = d->nlabels;
    *out = x;
    return 0;
}

/* Room for a histogram's arrays in s. */
static int snap_hist_arrays(snap *s, sq_metric_series *x, const int64_t *bounds,
                            size_t nbounds)
{
    int64_t *b = arena_alloc(s, (nbounds ? nbounds : 1) * sizeof *b);
    uint64_t *c = arena_alloc(s, (nbounds + 1) * sizeof *c);
    if (!b || !c)
        return -ENOMEM;
    if (nbounds)
        memcpy(b, bounds, nbounds * sizeof *b);
    x->nbounds = nbounds;
    x->bounds = b;
    x->buckets = c;
    return 0;
}

static void metric_desc(const metric *m, desc *d)
{
    d->name = m->name;
    d->help = m->help;
    d->divisor = m->divisor;
    d->nlabels = m->nlabels;
    memcpy(d->lab, m->labels, 2 * m->nlabels * sizeof *d->lab);
}

/* Reads registered metric m into s; under the registry's lock. */
static int snap_metric(snap *s, metric *m)
{
    desc d;
    metric_desc(m, &d);
    sq_metric_series *x;
    int rc = snap_add(s, &d, m->type, false, &x);
    if (rc)
        return rc;
    switch (m->type) {
    case SQ_METRIC_COUNTER:
        x->counter = sq_counter_get((sq_counter *)m);
        break;
    case SQ_METRIC_GAUGE:
        x->gauge = sq_gauge_get((sq_gauge *)m);
        break;
    default:
        if ((rc = snap_hist_arrays(s, x, m->bounds, m->nbounds)) != 0)
            return rc;
        sq_histogram_get((sq_histogram *)m, (uint64_t *)x->buckets, &x->count,
                         &x->sum);
        break;
    }
    return 0;
}

int sq_metrics_snapshot_take(sq_metrics *reg, sq_metrics_snapshot **out)
{
    if (!reg || !out)
        return -EINVAL;
    snap *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    int rc = sq_mutex_lock(&reg->lock);
    if (rc) {
        free(s);
        return rc;
    }
    for (size_t i = 0; i < reg->nfams && rc == 0; i++)
        for (size_t j = 0; j < reg->fams[i]->n && rc == 0; j++)
            rc = snap_metric(s, reg->fams[i]->series[j]);
    /* The collectors, called without the lock: take a reference to each. */
    size_t nc = 0;
    for (sq_metrics_collector *c = reg->colls; c; c = c->next)
        nc++;
    sq_metrics_collector **cs = NULL;
    if (rc == 0 && nc) {
        cs = malloc(nc * sizeof *cs);
        if (!cs)
            rc = -ENOMEM;
        else {
            size_t i = 0;
            for (sq_metrics_collector *c = reg->colls; c; c = c->next) {
                atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
                cs[i++] = c;
            }
        }
    }
    sq_mutex_unlock(&reg->lock);
    if (rc) {
        sq_metrics_snapshot_free(&s->pub);
        return rc;
    }
    sq_metrics_sink sink = {.s = s};
    for (size_t i = 0; i < nc; i++) {
        cs[i]->fn(&sink, cs[i]->arg);
        collector_unref(cs[i]);
    }
    free(cs);
    /* The public array of families. */
    s->out = calloc(s->nfams ? s->nfams : 1, sizeof *s->out);
    if (!s->out) {
        sq_metrics_snapshot_free(&s->pub);
        return -ENOMEM;
    }
    size_t n = 0;
    for (size_t i = 0; i < s->nfams; i++) {
        if (s->fams[i]->pub.nseries == 0)
            continue; /* left empty by an emit that ran out of memory */
        s->out[n] = s->fams[i]->pub;
        s->out[n].series = s->fams[i]->series;
        n++;
    }
    s->pub.nfamilies = n;
    s->pub.families = s->out;
    *out = &s->pub;
    return 0;
}

const sq_metric_family *sq_metrics_snapshot_find(const sq_metrics_snapshot *s,
                                                 const char *name)
{
    if (!s || !name)
        return NULL;
    size_t lo = 0, hi = s->nfamilies;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(s->families[mid].name, name);
        if (c == 0)
            return &s->families[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* --------------------------------------------------------- collectors */

int sq_metrics_add_collector(sq_metrics *reg, sq_metrics_collect_fn fn,
                             void *arg, void (*free_arg)(void *),
                             sq_metrics_collector **out)
{
    if (!reg || !fn)
        return -EINVAL;
    sq_metrics_collector *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->fn = fn;
    c->arg = arg;
    c->free_arg = free_arg;
    atomic_init(&c->refs, 1);
    int rc = sq_mutex_lock(&reg->lock);
    if (rc) {
        free(c);
        return rc;
    }
    if (reg->colls_tail)
        reg->colls_tail->next = c;
    else
        reg->colls = c;
    reg->colls_tail = c;
    sq_mutex_unlock(&reg->lock);
    if (out)
        *out = c;
    return 0;
}

int sq_metrics_remove_collector(sq_metrics *reg, sq_metrics_collector *c)
{
    if (!reg || !c)
        return -EINVAL;
    bool masked = lock_masked(&reg->lock);
    sq_metrics_collector *prev = NULL, *x = reg->colls;
    while (x && x != c) {
        prev = x;
        x = x->next;
    }
    if (x) {
        if (prev)
            prev->next = x->next;
        else
            reg->colls = x->next;
        if (reg->colls_tail == x)
            reg->colls_tail = prev;
    }
    unlock_masked(&reg->lock, masked);
    if (!x)
        return -EINVAL;
    collector_unref(c);
    return 0;
}

int sq_metrics_emit_counter(sq_metrics_sink *sink, const sq_metric_opts *o,
                            uint64_t value)
{
    desc d;
    sq_metric_series *x;
    int rc;
    if (!sink || (rc = desc_parse(&d, o, SQ_METRIC_COUNTER)) != 0)
        return -EINVAL;
    if ((rc = snap_add(sink->s, &d, SQ_METRIC_COUNTER, true, &x)) != 0)
        return rc;
    x->counter = value;
    return 0;
}

int sq_metrics_emit_gauge(sq_metrics_sink *sink, const sq_metric_opts *o,
                          int64_t value)
{
    desc d;
    sq_metric_series *x;
    int rc;
    if (!sink || (rc = desc_parse(&d, o, SQ_METRIC_GAUGE)) != 0)
        return -EINVAL;
    if ((rc = snap_add(sink->s, &d, SQ_METRIC_GAUGE, true, &x)) != 0)
        return rc;
    x->gauge = value;
    return 0;
}

int sq_metrics_emit_histogram(sq_metrics_sink *sink, const sq_metric_opts *o,
                              const int64_t *bounds, size_t nbounds,
                              const uint64_t *buckets, int64_t sum)
{
    desc d;
    sq_metric_series *x;
    int rc;
    if (!sink || !buckets || check_bounds(bounds, nbounds) != 0 ||
        desc_parse(&d, o, SQ_METRIC_HISTOGRAM) != 0)
        return -EINVAL;
    if ((rc = snap_add(sink->s, &d, SQ_METRIC_HISTOGRAM, true, &x)) != 0)
        return rc;
    if ((rc = snap_hist_arrays(sink->s, x, bounds, nbounds)) != 0) {
        /* keep the family's series array consistent: drop the series */
        sfam *f = find_named((void *const *)sink->s->fams, sink->s->nfams,
                             d.name);
        f->pub.nseries--;
        return rc;
    }
    uint64_t c = 0;
    for (size_t i = 0; i <= nbounds; i++)
        ((uint64_t *)x->buckets)[i] = c += buckets[i];
    x->count = c;
    x->sum = sum;
    return 0;
}
