/* sq_shardmap: shards of chained hash tables, each behind an sq_rwlock.
 *
 * Layout.  A key's 64-bit hash picks its shard by its top bits and its
 * bucket by its low bits (the table's size is a power of two).  An entry
 * is one allocation: header, key, NUL, value.  A shard is padded to a
 * multiple of a cache line, and the array of shards is aligned on one, so
 * that writers of different shards never write the same line.
 *
 * Nothing is allocated or freed under a shard lock.  A write builds its
 * entry first; an insert that will probably push the table past a load of
 * one also allocates the doubled bucket array first (reading the count
 * and size without the lock).  Under the write lock it links the entry in
 * (a replace swaps it for the old one) and, if the table is still the size
 * it planned for and now too full, moves the entries to the new array:
 * O(entries of the shard), pointer moves only.  If a race made the plan
 * wrong, the table grows at a later insert instead.  Old entries, old
 * arrays and unused allocations are freed after the unlock.
 *
 * Versions.  Each shard has a change counter (`clock`, under the write
 * lock): every change takes the next value as its version.  The key's
 * version is the counter at its last set; a delete takes one too, so a
 * key's versions rise through deletes and re-inserts.
 *
 * Publication order.  A writer publishes its event after the unlock, so
 * two writers of one shard could publish in the wrong order (the first is
 * preempted between its unlock and its send).  Each shard therefore has a
 * second lock, `pub` (an sq_mutex: FIFO, task-aware), that orders the
 * publications and nothing else.  A writer takes it while it holds the
 * write lock, before it changes anything, and gives it back only after
 * its send: hand over hand.  So the writers of a shard hold `pub` in the
 * order of their changes (of their versions), and each sends before the
 * next can.  The send itself happens after the write lock is released,
 * and never waits (a broadcast send does not wait for receivers), so
 * `pub` is held for a short, non-waiting moment; the only one who ever
 * waits for it is the next writer, who first spins briefly on a try-lock
 * (the send takes well under a microsecond) before queueing.  The lock
 * order is always write lock, then `pub` (class "sq_shardmap.publish"),
 * never the other way, and taking `pub` is the last thing that can fail
 * (-ECANCELED, -ETIMEDOUT) before the change, so a failure leaves
 * nothing changed.  With events off, `pub` is never used.
 *
 * Reads copy the value out under the read lock (readers share it, so a
 * long value delays writers only).  The two-phase update is built on the
 * read path and compare-and-set. */
#include "squirrel/shardmap.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define CACHELINE 64
#define MIN_BUCKETS 8
#define SPINS 64

typedef struct entry {
    struct entry *next;
    uint64_t hash;
    uint64_t version;
    size_t vlen;
    size_t klen;
    char data[]; /* key, NUL, value */
} entry;

static inline const char *entry_key(const entry *e)
{
    return e->data;
}

static inline const char *entry_value(const entry *e)
{
    return e->data + e->klen + 1;
}

typedef struct sq__shardmap_shard {
    sq_rwlock lock;
    sq_mutex pub;               /* orders the publications (events on) */
    entry **buckets;            /* under lock */
    _Atomic size_t nbuckets;    /* written under the write lock; a power
                                   of two; read without it as a hint */
    _Atomic size_t count;       /* entries; written under the write lock */
    _Atomic uint64_t clock;     /* last version given; written under the
                                   write lock */
    _Atomic uint64_t grows;     /* doublings; written under the lock */
} shard;

/* A shard takes a whole number of cache lines. */
#define SHARD_SIZE \
    ((sizeof(shard) + CACHELINE - 1) / CACHELINE * CACHELINE)

static inline shard *shard_at(sq_shardmap *m, size_t i)
{
    return (shard *)(void *)((char *)m->_shards + i * SHARD_SIZE);
}

/* --------------------------------------------------------------- hashing */

/* A 64-bit finaliser: every input bit affects every output bit. */
static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 31;
    x *= 0x7fb5d329728ea185ull;
    x ^= x >> 27;
    x *= 0x81dadef4bc2dd44dull;
    x ^= x >> 33;
    return x;
}

/* Seeded hash of a key: eight bytes at a time, each word folded in by a
 * multiply and a shift, then the finaliser.  Good spread for tables; not
 * a defence against keys chosen by someone who knows the seed. */
static uint64_t hash_key(uint64_t seed, const char *k, size_t n)
{
    const uint64_t mul = 0x9e3779b97f4a7c15ull;
    uint64_t h = seed ^ (n * mul);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, k, 8);
        h = (h ^ w) * mul;
        h ^= h >> 29;
        k += 8;
        n -= 8;
    }
    if (n) {
        uint64_t w = 0;
        memcpy(&w, k, n);
        h = (h ^ w ^ ((uint64_t)n << 59)) * mul;
        h ^= h >> 29;
    }
    return mix64(h);
}

/* -------------------------------------------------------------- helpers */

/* The key's length, or -EINVAL / -ENAMETOOLONG. */
static long key_length(const char *key)
{
    if (!key)
        return -EINVAL;
    size_t n = strnlen(key, SQ_SHARDMAP_KEY_MAX + 1);
    return n > SQ_SHARDMAP_KEY_MAX ? -ENAMETOOLONG : (long)n;
}

static int check_value(const void *value, size_t len)
{
    if (!value && len)
        return -EINVAL;
    return len > SQ_SHARDMAP_VALUE_MAX ? -EMSGSIZE : 0;
}

/* A located key: its shard and hash. */
typedef struct where {
    shard *s;
    uint64_t hash;
    size_t klen;
} where;

static int locate(sq_shardmap *m, const char *key, where *w)
{
    if (!m || !m->_shards)
        return -EINVAL;
    long n = key_length(key);
    if (n < 0)
        return (int)n;
    w->klen = (size_t)n;
    w->hash = hash_key(m->_seed, key, w->klen);
    /* shift is 64 for one shard: shifting by 64 is undefined. */
    w->s = shard_at(m, m->_shift >= 64 ? 0 : (size_t)(w->hash >> m->_shift));
    return 0;
}

/* The link that points at key's entry (or at the NULL ending its chain).
 * Under the shard's lock. */
static entry **find_link(shard *s, const where *w, const char *key)
{
    size_t mask = atomic_load_explicit(&s->nbuckets, memory_order_relaxed) - 1;
    entry **p = &s->buckets[w->hash & mask];
    for (; *p; p = &(*p)->next) {
        entry *e = *p;
        if (e->hash == w->hash && e->klen == w->klen &&
            memcmp(entry_key(e), key, w->klen) == 0)
            break;
    }
    return p;
}

static entry *make_entry(const char *key, const where *w, const void *value,
                         size_t len)
{
    entry *e = malloc(sizeof *e + w->klen + 1 + len);
    if (!e)
        return NULL;
    e->next = NULL;
    e->hash = w->hash;
    e->version = 0;
    e->vlen = len;
    e->klen = w->klen;
    memcpy(e->data, key, w->klen);
    e->data[w->klen] = '\0';
    if (len)
        memcpy(e->data + w->klen + 1, value, len);
    return e;
}

static inline int read_lock(shard *s, int64_t deadline)
{
    return sq_rwlock_read_lock_until_at(&s->lock, deadline,
                                        "sq_shardmap (read)");
}

static inline int write_lock(shard *s, int64_t deadline)
{
    return sq_rwlock_write_lock_until_at(&s->lock, deadline,
                                         "sq_shardmap (write)");
}

static inline void bump(_Atomic size_t *c, long d)
{
    /* Written only under the write lock: no read-modify-write needed. */
    size_t v = atomic_load_explicit(c, memory_order_relaxed);
    atomic_store_explicit(c, v + (size_t)d, memory_order_relaxed);
}

/* The next version of the shard.  Under the write lock. */
static inline uint64_t next_version(shard *s)
{
    uint64_t v = atomic_load_explicit(&s->clock, memory_order_relaxed) + 1;
    atomic_store_explicit(&s->clock, v, memory_order_relaxed);
    return v;
}

/* ---------------------------------------------------------- publication */

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Takes the shard's publication lock; called under the write lock, before
 * the change.  Whoever holds it is between its unlock and the end of its
 * send, which waits for nothing: spin a little before queueing. */
static int pub_lock(sq_shardmap *m, shard *s, int64_t deadline)
{
    if (!m->_events_on)
        return 0;
    for (int i = 0; i < SPINS; i++) {
        if (sq_mutex_try_lock_at(&s->pub, "sq_shardmap (publish)") == 0)
            return 0;
        cpu_relax();
    }
    return sq_mutex_lock_until_at(&s->pub, deadline, "sq_shardmap (publish)");
}

/* Sends the event of the change of version v of `key` in shard s, then
 * gives the publication lock back.  Called after the write lock has been
 * released. */
static void publish(sq_shardmap *m, shard *s, uint32_t kind, const char *key,
                    size_t klen, uint64_t v)
{
    if (!m->_events_on)
        return;
    sq_shardmap_event ev;
    memset(&ev, 0, sizeof ev);
    ev.version = v;
    ev.kind = kind;
    ev.key_len = (uint32_t)klen;
    memcpy(ev.key, key, klen);
    (void)sq_broadcast_send(&m->_events, &ev); /* -EPIPE: closed, or
                                                  nobody listens */
    sq_mutex_unlock(&s->pub);
}

/* ----------------------------------------------------------- lifecycle */

static bool is_pow2(size_t n)
{
    return n && !(n & (n - 1));
}

static size_t pow2_at_least(size_t n)
{
    size_t p = 1;
    while (p < n)
        p <<= 1;
    return p;
}

static atomic_uint_fast64_t seed_counter;

/* Frees the tables of the first n shards, then the shards. */
static void free_shards(sq_shardmap *m, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(shard_at(m, i)->buckets);
    free(m->_shards);
    m->_shards = NULL;
}

int sq_shardmap_init(sq_shardmap *m, const sq_shardmap_opts *opts)
{
    static const sq_shardmap_opts defaults;
    if (!m)
        return -EINVAL;
    if (!opts)
        opts = &defaults;
    size_t nshards = opts->shards ? opts->shards : SQ_SHARDMAP_DEFAULT_SHARDS;
    size_t events = opts->events ? opts->events : SQ_SHARDMAP_DEFAULT_EVENTS;
    if (!is_pow2(nshards) || nshards > SQ_SHARDMAP_MAX_SHARDS ||
        events > SQ_BROADCAST_MAX_CAPACITY ||
        (opts->flags & ~SQ_SHARDMAP_NO_EVENTS))
        return -EINVAL;
    size_t per_shard = opts->capacity / nshards;
    if (per_shard > ((size_t)1 << 24))
        per_shard = (size_t)1 << 24;
    size_t nbuckets = pow2_at_least(per_shard);
    if (nbuckets < MIN_BUCKETS)
        nbuckets = MIN_BUCKETS;
    bool events_on = !(opts->flags & SQ_SHARDMAP_NO_EVENTS);

    memset(m, 0, sizeof *m);
    m->_shards = aligned_alloc(CACHELINE, nshards * SHARD_SIZE);
    if (!m->_shards)
        return -ENOMEM;
    memset(m->_shards, 0, nshards * SHARD_SIZE);
    const char *cls = opts->lock_class ? opts->lock_class : "sq_shardmap.shard";
    for (size_t i = 0; i < nshards; i++) {
        shard *s = shard_at(m, i);
        sq_rwlock_init_named(&s->lock, cls);
        sq_mutex_init_named(&s->pub, "sq_shardmap.publish");
        atomic_init(&s->nbuckets, nbuckets);
        s->buckets = calloc(nbuckets, sizeof *s->buckets);
        if (!s->buckets) {
            free_shards(m, i + 1);
            return -ENOMEM;
        }
    }
    m->_nshards = nshards;
    unsigned bits = 0;
    while (((size_t)1 << bits) < nshards)
        bits++;
    m->_shift = 64 - bits;
    m->_seed = opts->seed;
    if (!m->_seed)
        m->_seed = mix64((uint64_t)sq_now() ^ (uint64_t)(uintptr_t)m ^
                         (atomic_fetch_add(&seed_counter, 1) << 40)) | 1;
    m->_events_on = events_on;
    if (events_on) {
        int rc = sq_broadcast_init(&m->_events, sizeof(sq_shardmap_event),
                                   events);
        if (rc) {
            free_shards(m, nshards);
            return rc;
        }
    }
    return 0;
}

int sq_shardmap_destroy(sq_shardmap *m)
{
    if (!m || !m->_shards)
        return -EINVAL;
    for (size_t i = 0; i < m->_nshards; i++)
        if (sq_rwlock_destroy(&shard_at(m, i)->lock) ||
            sq_mutex_destroy(&shard_at(m, i)->pub))
            return -EBUSY;
    if (m->_events_on && sq_broadcast_destroy(&m->_events))
        return -EBUSY; /* a subscriber is left: nothing freed yet */
    for (size_t i = 0; i < m->_nshards; i++) {
        shard *s = shard_at(m, i);
        size_t nb = atomic_load_explicit(&s->nbuckets, memory_order_relaxed);
        for (size_t b = 0; b < nb; b++)
            for (entry *e = s->buckets[b], *next; e; e = next) {
                next = e->next;
                free(e);
            }
    }
    free_shards(m, m->_nshards);
    return 0;
}

/* ---------------------------------------------------------------- reads */

/* Reads key under the read lock: copies the value into buf if it fits in
 * cap; always reports its length and version.  0, -ENOENT, -ENOBUFS, or a
 * lock error. */
static int read_value(shard *s, const where *w, const char *key, void *buf,
                      size_t cap, size_t *len, uint64_t *version,
                      int64_t deadline)
{
    int rc = read_lock(s, deadline);
    if (rc)
        return rc;
    entry *e = *find_link(s, w, key);
    size_t n = 0;
    uint64_t v = 0;
    if (!e) {
        rc = -ENOENT;
    } else {
        n = e->vlen;
        v = e->version;
        if (n > cap)
            rc = -ENOBUFS;
        else if (n)
            memcpy(buf, entry_value(e), n);
    }
    sq_rwlock_read_unlock(&s->lock);
    if (len)
        *len = n;
    if (version)
        *version = v;
    return rc;
}

int sq_shardmap_get_until(sq_shardmap *m, const char *key, void *buf,
                          size_t cap, size_t *len, uint64_t *version,
                          int64_t deadline)
{
    where w;
    int rc = locate(m, key, &w);
    if (rc)
        return rc;
    if ((!buf && cap) || deadline < 0)
        return -EINVAL;
    return read_value(w.s, &w, key, buf, cap, len, version, deadline);
}

int sq_shardmap_get(sq_shardmap *m, const char *key, void *buf, size_t cap,
                    size_t *len, uint64_t *version)
{
    return sq_shardmap_get_until(m, key, buf, cap, len, version, SQ_FOREVER);
}

/* A buffer that grows outside the locks: starts in `small`. */
typedef struct growbuf {
    char *p;
    size_t cap;
    char *small;
} growbuf;

static void growbuf_init(growbuf *g, char *small, size_t n)
{
    g->p = small;
    g->cap = n;
    g->small = small;
}

static int growbuf_reserve(growbuf *g, size_t n)
{
    if (n <= g->cap)
        return 0;
    size_t cap = n + n / 4 + 16;
    char *p = g->p == g->small ? malloc(cap) : realloc(g->p, cap);
    if (!p)
        return -ENOMEM;
    g->p = p;
    g->cap = cap;
    return 0;
}

static void growbuf_free(growbuf *g)
{
    if (g->p != g->small)
        free(g->p);
    g->p = g->small;
}

/* Reads key's value into g, growing g (with no lock held) until it fits;
 * g has one byte to spare after the value. */
static int read_into(shard *s, const where *w, const char *key, growbuf *g,
                     size_t *len, uint64_t *version, int64_t deadline)
{
    for (;;) {
        size_t n = 0;
        int rc = read_value(s, w, key, g->p, g->cap ? g->cap - 1 : 0, &n,
                            version, deadline);
        if (rc != -ENOBUFS) {
            *len = n;
            return rc;
        }
        rc = growbuf_reserve(g, n + 1);
        if (rc)
            return rc;
    }
}

int sq_shardmap_get_copy_until(sq_shardmap *m, const char *key, void **out,
                               size_t *len, uint64_t *version,
                               int64_t deadline)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    where w;
    int rc = locate(m, key, &w);
    if (rc)
        return rc;
    if (deadline < 0)
        return -EINVAL;
    growbuf g;
    growbuf_init(&g, NULL, 0);
    size_t n = 0;
    uint64_t v = 0;
    /* Guess a size from nothing: the first read tells the real one. */
    rc = growbuf_reserve(&g, 64);
    if (!rc)
        rc = read_into(w.s, &w, key, &g, &n, &v, deadline);
    if (len)
        *len = rc ? 0 : n;
    if (version)
        *version = rc ? 0 : v;
    if (rc) {
        growbuf_free(&g);
        return rc;
    }
    g.p[n] = '\0';
    *out = g.p;
    return 0;
}

int sq_shardmap_get_copy(sq_shardmap *m, const char *key, void **out,
                         size_t *len, uint64_t *version)
{
    return sq_shardmap_get_copy_until(m, key, out, len, version, SQ_FOREVER);
}

/* --------------------------------------------------------------- writes */

/* How a write decides. */
enum { ANY = 0, CAS = 1 };

/* If inserting one more key into s would pass a load of one, allocates
 * the doubled bucket array now (no lock held); *planned is the size it
 * was planned for. */
static entry **plan_growth(shard *s, size_t *planned)
{
    size_t nb = atomic_load_explicit(&s->nbuckets, memory_order_relaxed);
    size_t count = atomic_load_explicit(&s->count, memory_order_relaxed);
    *planned = nb;
    if (count + 1 <= nb || nb > SIZE_MAX / 2 / sizeof(entry *))
        return NULL;
    return calloc(2 * nb, sizeof(entry *)); /* NULL: grow later */
}

/* Under the write lock, after an insert: moves s's entries into `fresh`
 * (2 * planned slots) if the table is still `planned` slots and now holds
 * more keys than slots.  Returns the array no longer used (the old one or
 * fresh), for the caller to free after the unlock. */
static entry **maybe_grow(shard *s, entry **fresh, size_t planned)
{
    size_t nb = atomic_load_explicit(&s->nbuckets, memory_order_relaxed);
    if (!fresh || nb != planned ||
        atomic_load_explicit(&s->count, memory_order_relaxed) <= nb)
        return fresh;
    size_t mask = 2 * nb - 1;
    for (size_t b = 0; b < nb; b++)
        for (entry *e = s->buckets[b], *next; e; e = next) {
            next = e->next;
            entry **to = &fresh[e->hash & mask];
            e->next = *to;
            *to = e;
        }
    entry **old = s->buckets;
    s->buckets = fresh;
    atomic_store_explicit(&s->nbuckets, 2 * nb, memory_order_relaxed);
    atomic_store_explicit(&s->grows,
                          atomic_load_explicit(&s->grows,
                                               memory_order_relaxed) + 1,
                          memory_order_relaxed);
    return old;
}

/* Sets key (mode ANY), or sets it only if its version is `expected`
 * (mode CAS; 0: only if absent). */
static int write_key(sq_shardmap *m, const char *key, int mode,
                     uint64_t expected, const void *value, size_t len,
                     uint64_t *version, int64_t deadline)
{
    where w;
    int rc = locate(m, key, &w);
    if (!rc)
        rc = check_value(value, len);
    if (!rc && deadline < 0)
        rc = -EINVAL;
    if (rc)
        return rc;
    entry *e = make_entry(key, &w, value, len);
    if (!e)
        return -ENOMEM;
    shard *s = w.s;
    size_t planned;
    entry **fresh = plan_growth(s, &planned);

    rc = write_lock(s, deadline);
    if (rc) {
        free(e);
        free(fresh);
        return rc;
    }
    entry **p = find_link(s, &w, key);
    entry *old = *p;
    uint64_t v;
    if (mode == CAS && (old ? old->version != expected : expected != 0)) {
        v = old ? old->version : 0;
        rc = !old ? -ENOENT : expected == 0 ? -EEXIST : -ESTALE;
        sq_rwlock_write_unlock(&s->lock);
        free(e);
        free(fresh);
        if (version)
            *version = v;
        return rc;
    }
    rc = pub_lock(m, s, deadline); /* the last step that can fail */
    if (rc) {
        sq_rwlock_write_unlock(&s->lock);
        free(e);
        free(fresh);
        return rc;
    }
    v = e->version = next_version(s);
    if (old) {
        e->next = old->next; /* replace in place in the chain */
        *p = e;
    } else {
        *p = e; /* append at the chain's end, where find_link stopped */
        bump(&s->count, 1);
        fresh = maybe_grow(s, fresh, planned);
    }
    sq_rwlock_write_unlock(&s->lock);

    free(old);
    free(fresh);
    publish(m, s, SQ_SHARDMAP_EV_SET, key, w.klen, v);
    if (version)
        *version = v;
    return 0;
}

int sq_shardmap_set_until(sq_shardmap *m, const char *key, const void *value,
                          size_t len, uint64_t *version, int64_t deadline)
{
    return write_key(m, key, ANY, 0, value, len, version, deadline);
}

int sq_shardmap_set(sq_shardmap *m, const char *key, const void *value,
                    size_t len, uint64_t *version)
{
    return write_key(m, key, ANY, 0, value, len, version, SQ_FOREVER);
}

int sq_shardmap_cas_until(sq_shardmap *m, const char *key, uint64_t expected,
                          const void *value, size_t len, uint64_t *version,
                          int64_t deadline)
{
    return write_key(m, key, CAS, expected, value, len, version, deadline);
}

int sq_shardmap_cas(sq_shardmap *m, const char *key, uint64_t expected,
                    const void *value, size_t len, uint64_t *version)
{
    return write_key(m, key, CAS, expected, value, len, version, SQ_FOREVER);
}

/* Deletes key (mode ANY), or only if its version is `expected` (CAS). */
static int delete_key(sq_shardmap *m, const char *key, int mode,
                      uint64_t expected, uint64_t *version, int64_t deadline)
{
    where w;
    int rc = locate(m, key, &w);
    if (!rc && (deadline < 0 || (mode == CAS && expected == 0)))
        rc = -EINVAL;
    if (rc)
        return rc;
    shard *s = w.s;
    rc = write_lock(s, deadline);
    if (rc)
        return rc;
    entry **p = find_link(s, &w, key);
    entry *old = *p;
    uint64_t v = 0;
    if (!old) {
        rc = -ENOENT;
    } else if (mode == CAS && old->version != expected) {
        rc = -ESTALE;
        v = old->version;
        old = NULL;
    } else if ((rc = pub_lock(m, s, deadline)) != 0) {
        old = NULL; /* cancelled or timed out: nothing changes */
    } else {
        *p = old->next;
        bump(&s->count, -1);
        v = next_version(s);
    }
    sq_rwlock_write_unlock(&s->lock);
    if (version)
        *version = v;
    if (rc)
        return rc;
    free(old);
    publish(m, s, SQ_SHARDMAP_EV_DELETE, key, w.klen, v);
    return 0;
}

int sq_shardmap_delete_until(sq_shardmap *m, const char *key,
                             uint64_t *version, int64_t deadline)
{
    return delete_key(m, key, ANY, 0, version, deadline);
}

int sq_shardmap_delete(sq_shardmap *m, const char *key, uint64_t *version)
{
    return delete_key(m, key, ANY, 0, version, SQ_FOREVER);
}

int sq_shardmap_cas_delete_until(sq_shardmap *m, const char *key,
                                 uint64_t expected, uint64_t *version,
                                 int64_t deadline)
{
    return delete_key(m, key, CAS, expected, version, deadline);
}

int sq_shardmap_cas_delete(sq_shardmap *m, const char *key,
                           uint64_t expected, uint64_t *version)
{
    return delete_key(m, key, CAS, expected, version, SQ_FOREVER);
}

/* ---------------------------------------------------- two-phase update */

/* A conflict: the key changed between the read and the write. */
static inline bool conflict(int rc)
{
    return rc == -ESTALE || rc == -EEXIST || rc == -ENOENT;
}

int sq_shardmap_update_until(sq_shardmap *m, const char *key,
                             sq_shardmap_decide_fn fn, void *arg,
                             unsigned max_attempts, uint64_t *version,
                             int64_t deadline)
{
    where w;
    int rc = locate(m, key, &w);
    if (!rc && (!fn || deadline < 0))
        rc = -EINVAL;
    if (rc)
        return rc;
    char small[256];
    growbuf g;
    growbuf_init(&g, small, sizeof small);
    for (unsigned attempt = 0; !max_attempts || attempt < max_attempts;
         attempt++) {
        /* Phase one: read under the read lock (released on return). */
        size_t old_len;
        uint64_t old_v;
        rc = read_into(w.s, &w, key, &g, &old_len, &old_v, deadline);
        if (rc && rc != -ENOENT)
            goto out;
        bool present = rc == 0;
        /* Decide, holding nothing. */
        const void *nv = NULL;
        size_t nlen = 0;
        rc = fn(arg, key, present ? g.p : NULL, present ? old_len : 0,
                present ? old_v : 0, &nv, &nlen);
        if (rc < 0)
            goto out;
        uint64_t v = present ? old_v : 0;
        if (rc == SQ_SHARDMAP_KEEP || (rc == SQ_SHARDMAP_REMOVE && !present)) {
            rc = 0;
        } else if (rc == SQ_SHARDMAP_PUT) {
            /* Phase two: write only if still the version read. */
            if (!nv && nlen) {
                rc = -EINVAL;
                goto out;
            }
            rc = write_key(m, key, CAS, present ? old_v : 0, nv, nlen, &v,
                           deadline);
        } else if (rc == SQ_SHARDMAP_REMOVE) {
            rc = delete_key(m, key, CAS, old_v, &v, deadline);
        } else {
            rc = -EINVAL;
            goto out;
        }
        if (conflict(rc))
            continue; /* another writer was first: read it and decide */
        if (!rc && version)
            *version = v;
        goto out;
    }
    rc = -ESTALE;
out:
    growbuf_free(&g);
    return rc;
}

int sq_shardmap_update(sq_shardmap *m, const char *key,
                       sq_shardmap_decide_fn fn, void *arg,
                       unsigned max_attempts, uint64_t *version)
{
    return sq_shardmap_update_until(m, key, fn, arg, max_attempts, version,
                                    SQ_FOREVER);
}

/* ----------------------------------------------------- size and listing */

size_t sq_shardmap_size(sq_shardmap *m)
{
    size_t n = 0;
    if (!m || !m->_shards)
        return 0;
    for (size_t i = 0; i < m->_nshards; i++)
        n += atomic_load_explicit(&shard_at(m, i)->count,
                                  memory_order_relaxed);
    return n;
}

int sq_shardmap_stats_get(sq_shardmap *m, sq_shardmap_stats *out)
{
    if (!m || !m->_shards || !out)
        return -EINVAL;
    memset(out, 0, sizeof *out);
    out->shards = m->_nshards;
    for (size_t i = 0; i < m->_nshards; i++) {
        shard *s = shard_at(m, i);
        out->size += atomic_load_explicit(&s->count, memory_order_relaxed);
        out->buckets +=
            atomic_load_explicit(&s->nbuckets, memory_order_relaxed);
        out->grows += atomic_load_explicit(&s->grows, memory_order_relaxed);
        out->changes += atomic_load_explicit(&s->clock, memory_order_relaxed);
    }
    return 0;
}

/* A snapshot record: header, key, NUL, value (if copied), padded to 8. */
typedef struct record {
    uint64_t version;
    size_t vlen;
    size_t size; /* the whole record, padded */
} record;

static size_t record_size(const entry *e, bool values)
{
    size_t n = sizeof(record) + e->klen + 1 + (values ? e->vlen : 0);
    return (n + 7) & ~(size_t)7;
}

/* Copies shard s (keys, and values if `values`) into g under its read
 * lock, growing g with no lock held until it fits.  *used: the bytes of
 * records. */
static int snapshot_shard(shard *s, bool values, growbuf *g, size_t *used,
                          int64_t deadline)
{
    for (;;) {
        int rc = read_lock(s, deadline);
        if (rc)
            return rc;
        size_t need = 0;
        size_t nb = atomic_load_explicit(&s->nbuckets, memory_order_relaxed);
        for (size_t b = 0; b < nb; b++)
            for (entry *e = s->buckets[b]; e; e = e->next)
                need += record_size(e, values);
        if (need <= g->cap) {
            char *p = g->p;
            for (size_t b = 0; b < nb; b++)
                for (entry *e = s->buckets[b]; e; e = e->next) {
                    record r = {e->version, values ? e->vlen : 0,
                                record_size(e, values)};
                    memcpy(p, &r, sizeof r);
                    memcpy(p + sizeof r, e->data,
                           e->klen + 1 + (values ? e->vlen : 0));
                    p += r.size;
                }
            *used = need;
        }
        sq_rwlock_read_unlock(&s->lock);
        if (need <= g->cap)
            return 0;
        rc = growbuf_reserve(g, need);
        if (rc)
            return rc;
    }
}

int sq_shardmap_foreach_until(sq_shardmap *m, sq_shardmap_foreach_fn fn,
                              void *arg, int64_t deadline)
{
    if (!m || !m->_shards || !fn || deadline < 0)
        return -EINVAL;
    growbuf g;
    growbuf_init(&g, NULL, 0);
    int rc = 0;
    for (size_t i = 0; i < m->_nshards && !rc; i++) {
        size_t used;
        rc = snapshot_shard(shard_at(m, i), true, &g, &used, deadline);
        for (size_t off = 0; !rc && off < used;) {
            record r;
            memcpy(&r, g.p + off, sizeof r);
            const char *k = g.p + off + sizeof r;
            rc = fn(arg, k, k + strlen(k) + 1, r.vlen, r.version);
            off += r.size;
        }
    }
    growbuf_free(&g);
    return rc;
}

int sq_shardmap_foreach(sq_shardmap *m, sq_shardmap_foreach_fn fn, void *arg)
{
    return sq_shardmap_foreach_until(m, fn, arg, SQ_FOREVER);
}

int sq_shardmap_keys(sq_shardmap *m, char ***out, size_t *n)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (n)
        *n = 0;
    if (!m || !m->_shards)
        return -EINVAL;
    /* Gather the keys (NUL-separated) in `all`, then build the array. */
    growbuf g, all;
    growbuf_init(&g, NULL, 0);
    growbuf_init(&all, NULL, 0);
    size_t bytes = 0, count = 0;
    int rc = 0;
    for (size_t i = 0; i < m->_nshards && !rc; i++) {
        size_t used;
        rc = snapshot_shard(shard_at(m, i), false, &g, &used, SQ_FOREVER);
        for (size_t off = 0; !rc && off < used;) {
            record r;
            memcpy(&r, g.p + off, sizeof r);
            const char *k = g.p + off + sizeof r;
            size_t kn = strlen(k) + 1;
            rc = growbuf_reserve(&all, bytes + kn);
            if (!rc) {
                memcpy(all.p + bytes, k, kn);
                bytes += kn;
                count++;
            }
            off += r.size;
        }
    }
    growbuf_free(&g);
    char **arr = NULL;
    if (!rc) {
        arr = malloc((count + 1) * sizeof *arr + bytes);
        if (!arr)
            rc = -ENOMEM;
    }
    if (!rc) {
        char *strs = (char *)(arr + count + 1);
        if (bytes)
            memcpy(strs, all.p, bytes);
        for (size_t i = 0, off = 0; i < count; i++) {
            arr[i] = strs + off;
            off += strlen(strs + off) + 1;
        }
        arr[count] = NULL;
        *out = arr;
        if (n)
            *n = count;
    }
    growbuf_free(&all);
    return rc;
}

/* -------------------------------------------------------- change events */

int sq_shardmap_subscribe(sq_shardmap *m, sq_broadcast_rx *rx)
{
    if (!m || !m->_shards || !rx)
        return -EINVAL;
    if (!m->_events_on)
        return -ENOTSUP;
    return sq_broadcast_subscribe(&m->_events, rx);
}

int sq_shardmap_unsubscribe(sq_broadcast_rx *rx)
{
    if (!rx)
        return -EINVAL;
    return sq_broadcast_rx_drop(rx);
}

int sq_shardmap_recv_until(sq_broadcast_rx *rx, sq_shardmap_event *ev,
                           uint64_t *missed, int64_t deadline)
{
    if (!rx || !ev)
        return -EINVAL;
    return sq_broadcast_recv_until(rx, ev, missed, deadline);
}

int sq_shardmap_recv(sq_broadcast_rx *rx, sq_shardmap_event *ev,
                     uint64_t *missed)
{
    return sq_shardmap_recv_until(rx, ev, missed, SQ_FOREVER);
}

int sq_shardmap_try_recv(sq_broadcast_rx *rx, sq_shardmap_event *ev,
                         uint64_t *missed)
{
    if (!rx || !ev)
        return -EINVAL;
    return sq_broadcast_try_recv(rx, ev, missed);
}

void sq_shardmap_close_events(sq_shardmap *m)
{
    if (m && m->_shards && m->_events_on)
        sq_broadcast_close(&m->_events);
}
