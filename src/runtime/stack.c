/* Task stacks: carved from large mappings, a guard below each, committed as
 * they are touched, pooled for reuse.
 *
 * Layout.  The stacks of one size class (a power of two from 16 KiB) are
 * carved from regions, anonymous mappings that grow per class (one batch
 * of slots first, doubling up to REGION_SPAN_MAX).  A slot is a guard page
 * followed by the stack; the stack's descriptor sits at its top.  Workers
 * carve a batch of slots at a time and keep freed stacks in a cache of
 * their own (WORKER_CACHE_MAX per class), the rest in a shared pool.
 * Nothing is unmapped before the runtime is destroyed: munmap shoots down
 * TLB entries on every core, and a reused stack's top page is already
 * resident.  So the high-water mark of live tasks, not the current count,
 * sets the memory held for stacks.
 *
 * The guard below each stack, best first:
 *  - a guard marker (MADV_GUARD_INSTALL, Linux 6.13+): it faults like a
 *    PROT_NONE page but lives in the page tables, so a region stays one
 *    kernel mapping however many stacks it holds;
 *  - a PROT_NONE page (mprotect), which splits the region's mapping in
 *    two, against vm.max_map_count (65,530 by default, raised only by
 *    root).  Used while the page guards of the process stay within a
 *    quarter of that limit, and always for the lowest slot of a region;
 *  - past that budget, a canary: CANARY_BYTES of a known pattern just below
 *    the stack, checked whenever the task switches out.  It catches an
 *    overflow late (at the next switch) and only if the overflow wrote
 *    over it, and it costs one more resident page per stack.  A runaway
 *    recursion still stops at the region's lowest guard page, and the
 *    fault handler reports it by the stack pointer.
 * SQUIRREL_STACK_GUARD=pages or =canary forces the second or the third
 * (tests use it; Valgrind knows PROT_NONE pages but not guard markers).
 *
 * First touch.  A stack's top page is written when the stack is made (its
 * descriptor) and by every task that runs on it.  In a
 * VM a page fault can cost far more than the kernel's work for the page
 * (15-25 us measured on the benchmark machine, where populating costs about
 * 1 us), so a new batch's top pages are populated with one
 * MADV_POPULATE_WRITE call (process_madvise with one range per stack,
 * Linux 6.15+; one madvise per stack before that).  See docs/runtime.md
 * for the figures.
 *
 * Overflow.  The SIGSEGV handler (on an alternate signal stack per worker)
 * reports a fault in or just below the running task's guard, or with the
 * stack pointer below its stack, naming the task, and the process dies of
 * SIGSEGV.  A smashed canary is reported the same way, then abort().
 */
#include "internal.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <ucontext.h>
#include <unistd.h>

#ifdef SQ__ASAN
#include <sanitizer/asan_interface.h>
#endif

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define SQ__VALGRIND 1
#endif
#endif

/* Not in every libc's headers yet (glibc 2.36 has none of the guard ones). */
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif
/* PIDFD_SELF_THREAD (Linux 6.15+): process_madvise on our own memory
 * without opening a pidfd (which a forked child would inherit, still
 * naming its parent). */
#define SELF_PIDFD (-10000)

/* Stack sizes are rounded up to a power of two from 16 KiB (a size
 * class); only address space is rounded, pages are committed as touched. */
#define CLASS_MIN_SHIFT 14
#define WORKER_CACHE_MAX 256 /* per class; the rest goes to the shared pool */
#define BATCH_MAX 64         /* slots carved, guarded and populated at once */
#define BATCH_SPAN_MAX ((size_t)64 << 20)    /* ... fewer for big classes */
#define REGION_SPAN_MAX ((size_t)256 << 20)  /* regions grow up to this */
#define CANARY_BYTES 64                      /* one cache line */
#define CANARY_WORD UINT64_C(0x5371a5c0ffee57ac)

/* rt->stack_guard: 0 until the first stack reads SQUIRREL_STACK_GUARD. */
enum { MODE_AUTO = 1, MODE_PAGES, MODE_CANARY };

static size_t page_size(void)
{
    static atomic_size_t cached; /* workers may ask first at the same time */
    size_t ps = atomic_load_explicit(&cached, memory_order_relaxed);
    if (!ps) {
        ps = (size_t)sysconf(_SC_PAGESIZE);
        atomic_store_explicit(&cached, ps, memory_order_relaxed);
    }
    return ps;
}

/* The class of a request is the power of two that holds it; the stack's
 * descriptor takes the top of that span, so the usable size is the span
 * minus sizeof(sq__stack) (documented with SQ_STACK_MIN). */
static int size_class(size_t size)
{
    int c = 0;
    while (((size_t)1 << (c + CLASS_MIN_SHIFT)) < size)
        c++;
    return c < SQ__STACK_CLASSES ? c : -1;
}

/* Slots per batch: BATCH_MAX, fewer when that much address space would be
 * more than BATCH_SPAN_MAX (a batch of 512 MiB stacks is one stack). */
static int batch_slots(size_t slot)
{
    size_t n = BATCH_SPAN_MAX / slot;
    return n >= BATCH_MAX ? BATCH_MAX : n ? (int)n : 1;
}

/* rt's guard mode, read from the environment when rt makes its first
 * stack (two workers may both read it: they find the same). */
static int guard_mode(sq_runtime *rt)
{
    int m = atomic_load_explicit(&rt->stack_guard, memory_order_relaxed);
    if (m)
        return m;
    const char *s = getenv("SQUIRREL_STACK_GUARD");
    m = s && strcmp(s, "pages") == 0    ? MODE_PAGES
        : s && strcmp(s, "canary") == 0 ? MODE_CANARY
                                        : MODE_AUTO;
    atomic_store_explicit(&rt->stack_guard, m, memory_order_relaxed);
    return m;
}

/* ----------------------------------------------- advice on many ranges */

/* process_madvise on our own memory: 0 not tried yet, 1 works, -1 not
 * (kernels before 6.15, Valgrind, seccomp filters). */
static atomic_int pmadvise_state;

/* Gives `advice` to the n ranges of iov: in one process_madvise call where
 * the kernel allows it, else one madvise per range.  Returns how many
 * leading ranges got it (n when all did). */
static int advise(const struct iovec *iov, int n, int advice)
{
#ifdef SYS_process_madvise
    int st = atomic_load_explicit(&pmadvise_state, memory_order_relaxed);
#ifdef SQ__VALGRIND
    if (st == 0 && RUNNING_ON_VALGRIND) { /* it warns of an unknown call */
        st = -1;
        atomic_store_explicit(&pmadvise_state, st, memory_order_relaxed);
    }
#endif
    if (st >= 0) {
        size_t total = 0;
        for (int i = 0; i < n; i++)
            total += iov[i].iov_len;
        long r = syscall(SYS_process_madvise, SELF_PIDFD, iov, (size_t)n,
                         advice, 0u);
        if (r == (long)total) {
            atomic_store_explicit(&pmadvise_state, 1, memory_order_relaxed);
            return n;
        }
    }
#endif
    /* Every advice used here may be given twice, so after a failed or
     * partial call the ranges are simply advised again, one by one. */
    int done = 0;
    while (done < n &&
           madvise(iov[done].iov_base, iov[done].iov_len, advice) == 0)
        done++;
#ifdef SYS_process_madvise
    if (done == n && st == 0) /* madvise can, process_madvise cannot */
        atomic_store_explicit(&pmadvise_state, -1, memory_order_relaxed);
#endif
    return done;
}

/* ------------------------------------------------------------- guards */

/* Guard markers: 0 not probed, 1 they work, -1 they do not. */
static atomic_int markers_state;
/* PROT_NONE guard pages of every runtime, and the budget for them (a
 * quarter of vm.max_map_count; each one may add two mappings). */
static atomic_long page_guards;
static atomic_long page_guard_budget;

static bool markers_work(void)
{
    int st = atomic_load_explicit(&markers_state, memory_order_relaxed);
    if (st)
        return st > 0;
    size_t ps = page_size();
    char *p = mmap(NULL, ps, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    st = -1;
    if (p != MAP_FAILED) {
        /* An emulator (qemu-user) may accept the advice and do nothing:
         * only trust it if the page really faults now, which populating
         * it reports as EFAULT. */
        if (madvise(p, ps, MADV_GUARD_INSTALL) == 0 &&
            madvise(p, ps, MADV_POPULATE_READ) != 0 && errno == EFAULT)
            st = 1;
        munmap(p, ps);
    }
    atomic_store_explicit(&markers_state, st, memory_order_relaxed);
    return st > 0;
}

static long page_budget(void)
{
    long b = atomic_load_explicit(&page_guard_budget, memory_order_relaxed);
    if (b)
        return b;
    long max = 65530; /* the kernel's default */
    int fd = open("/proc/sys/vm/max_map_count", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        char buf[32];
        ssize_t n = read(fd, buf, sizeof buf - 1);
        if (n > 0) {
            buf[n] = 0;
            long v = strtol(buf, NULL, 10);
            if (v > 0)
                max = v;
        }
        close(fd);
    }
    b = max / 4 > 0 ? max / 4 : 1;
    atomic_store_explicit(&page_guard_budget, b, memory_order_relaxed);
    return b;
}

/* Makes the page at p a PROT_NONE guard if `force` or the budget allows. */
static bool page_guard(sq_runtime *rt, char *p, bool force)
{
    long before = atomic_fetch_add(&page_guards, 1);
    if ((force || before < page_budget()) &&
        mprotect(p, page_size(), PROT_NONE) == 0) {
        atomic_fetch_add_explicit(&rt->page_guards, 1, memory_order_relaxed);
        return true;
    }
    atomic_fetch_sub(&page_guards, 1);
    return false;
}

static void page_guards_release(sq_runtime *rt, long n)
{
    atomic_fetch_sub(&page_guards, n);
    atomic_fetch_sub_explicit(&rt->page_guards, n, memory_order_relaxed);
}

/* Puts a guard in the guard page of each of the n slots from p (`slot`
 * bytes apart) and writes each one's kind (SQ__GUARD_*) to kind[]: guard
 * markers where the kernel has them, else PROT_NONE pages (always for the
 * lowest slot of a region; for the others while the budget lasts), else
 * canaries (written later, with the descriptors). */
static void guard_batch(sq_runtime *rt, char *p, int n, size_t slot,
                        bool region_start, uint8_t *kind)
{
    size_t ps = page_size();
    int i = 0;
    int mode = guard_mode(rt);
    if (mode == MODE_AUTO && markers_work()) {
        struct iovec iov[BATCH_MAX];
        for (int j = 0; j < n; j++)
            iov[j] = (struct iovec){.iov_base = p + (size_t)j * slot,
                                    .iov_len = ps};
        /* Fails only for a locked mapping (mlockall): the rest falls
         * back. */
        for (int done = advise(iov, n, MADV_GUARD_INSTALL); i < done; i++)
            kind[i] = SQ__GUARD_MARKER;
    }
    for (; i < n; i++) {
        bool lowest = region_start && i == 0;
        bool want = lowest || mode != MODE_CANARY;
        bool force = lowest || mode == MODE_PAGES;
        kind[i] = want && page_guard(rt, p + (size_t)i * slot, force)
                      ? SQ__GUARD_PAGE
                      : SQ__GUARD_CANARY;
    }
}

static uint64_t *canary_of(sq__stack *s)
{
    return (uint64_t *)((char *)s->base - CANARY_BYTES);
}

static void canary_write(sq__stack *s)
{
    uint64_t *c = canary_of(s);
    for (size_t i = 0; i < CANARY_BYTES / sizeof *c; i++)
        c[i] = CANARY_WORD;
}

static bool canary_intact(const uint64_t *c)
{
    uint64_t diff = 0;
    for (size_t i = 0; i < CANARY_BYTES / sizeof *c; i++)
        diff |= c[i] ^ CANARY_WORD;
    return diff == 0;
}

/* -------------------------------------------------------------- slots */

static void stack_init(sq__stack *s, char *base, size_t span, int cls,
                       uint8_t guard)
{
    s->base = base;
    s->size = span - sizeof *s;
    s->cls = cls;
    s->guard = guard;
    s->next = NULL;
#ifdef SQ__VALGRIND
    s->vg_id = VALGRIND_STACK_REGISTER(s->base, (char *)s->base + s->size);
#endif
    if (guard == SQ__GUARD_CANARY)
        canary_write(s);
}

/* Reserves up to *n consecutive slots of class cls (*n is lowered to what
 * the current region has left) and returns the first; maps a new region,
 * twice the size of the last, when the current one is used up.  Caller
 * holds pool_lock. */
static char *carve(sq_runtime *rt, int cls, size_t slot, int *n,
                   bool *region_start)
{
    struct sq__carve *c = &rt->carve[cls];
    if (c->left == 0) {
        size_t slots = c->grow ? c->grow : (size_t)*n;
        if (rt->nregions == rt->regions_cap) {
            size_t cap = rt->regions_cap ? rt->regions_cap * 2 : 64;
            struct sq__region *r = realloc(rt->regions, cap * sizeof *r);
            if (!r)
                return NULL;
            rt->regions = r;
            rt->regions_cap = cap;
        }
        char *m = mmap(NULL, slots * slot, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK,
                       -1, 0);
        if (m == MAP_FAILED)
            return NULL;
        rt->regions[rt->nregions].addr = m;
        rt->regions[rt->nregions].len = slots * slot;
        rt->nregions++;
        c->next = m;
        c->left = slots;
        size_t max = REGION_SPAN_MAX / slot;
        if (max < (size_t)*n)
            max = (size_t)*n;
        c->grow = slots * 2 < max ? slots * 2 : max;
        *region_start = true;
    }
    if ((size_t)*n > c->left)
        *n = (int)c->left;
    char *p = c->next;
    c->next += (size_t)*n * slot;
    c->left -= (size_t)*n;
    return p;
}

/* Makes stacks of the n slots from p (class cls; the caller owns them):
 * guards, then the top pages (and canary pages) populated in one call,
 * then the descriptors.  Returns them as a list, lowest address first. */
static sq__stack *batch_init(sq_runtime *rt, int cls, char *p, int n,
                             bool region_start)
{
    size_t ps = page_size();
    size_t span = (size_t)1 << (cls + CLASS_MIN_SHIFT);
    size_t slot = span + ps;
    uint8_t kind[BATCH_MAX];
    guard_batch(rt, p, n, slot, region_start, kind);
    /* One page fault per stack costs far more than this in a VM; on bare
     * metal the two are about even.  A failure (kernels before 5.14, out
     * of memory) leaves the pages to be faulted in as before. */
    struct iovec iov[2 * BATCH_MAX];
    int k = 0;
    for (int i = 0; i < n; i++) {
        char *slot_p = p + (size_t)i * slot;
        if (kind[i] == SQ__GUARD_CANARY)
            iov[k++] = (struct iovec){.iov_base = slot_p, .iov_len = ps};
        iov[k++] = (struct iovec){.iov_base = slot_p + slot - ps,
                                  .iov_len = ps};
    }
    (void)advise(iov, k, MADV_POPULATE_WRITE);
    sq__stack *list = NULL;
    for (int i = n - 1; i >= 0; i--) {
        char *base = p + (size_t)i * slot + ps;
        sq__stack *s = (sq__stack *)(base + span) - 1;
        stack_init(s, base, span, cls, kind[i]);
        s->next = list;
        list = s;
    }
    return list;
}

/* Stacks too large for a class get a mapping of their own, with a guard
 * marker or a PROT_NONE page (outside the budget: there are few). */
static int stack_map_single(sq_runtime *rt, size_t size, sq__stack **out)
{
    size_t ps = page_size();
    size = (size + sizeof(sq__stack) + ps - 1) & ~(ps - 1);
    char *m = mmap(NULL, size + ps, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK,
                   -1, 0);
    if (m == MAP_FAILED)
        return -ENOMEM;
    uint8_t kind;
    guard_batch(rt, m, 1, size + ps, true, &kind);
    sq__stack *s = (sq__stack *)(m + ps + size) - 1;
    stack_init(s, m + ps, size, -1, kind);
    *out = s;
    return 0;
}

static void stack_unmap_single(sq_runtime *rt, sq__stack *s)
{
    char *m = (char *)s->base - page_size();
#ifdef SQ__VALGRIND
    VALGRIND_STACK_DEREGISTER(s->vg_id);
#endif
    if (s->guard == SQ__GUARD_PAGE)
        page_guards_release(rt, 1);
    munmap(m, (size_t)((char *)(s + 1) - m));
}

/* Fills w's cache for class cls: a batch from the shared pool, or a new
 * batch of slots. */
static int cache_refill(sq_runtime *rt, sq__worker *w, int cls)
{
    size_t slot = ((size_t)1 << (cls + CLASS_MIN_SHIFT)) + page_size();
    int n = batch_slots(slot);
    bool region_start = false;
    pthread_mutex_lock(&rt->pool_lock);
    sq__stack *s = rt->stack_pool[cls];
    if (s) {
        sq__stack *last = s;
        int got = 1;
        while (got < BATCH_MAX && last->next) {
            last = last->next;
            got++;
        }
        rt->stack_pool[cls] = last->next;
        last->next = NULL;
        pthread_mutex_unlock(&rt->pool_lock);
        w->stack_cache[cls] = s;
        w->stack_cache_n[cls] += got;
        return 0;
    }
    char *p = carve(rt, cls, slot, &n, &region_start);
    pthread_mutex_unlock(&rt->pool_lock);
    if (!p)
        return -ENOMEM;
    /* Outside the lock: the slots are ours, and this makes system calls. */
    w->stack_cache[cls] = batch_init(rt, cls, p, n, region_start);
    w->stack_cache_n[cls] += n;
    return 0;
}

int sq__stack_get(sq_runtime *rt, sq__worker *w, size_t size, sq__stack **out)
{
    int cls = size_class(size);
    if (cls < 0) {
        int rc = stack_map_single(rt, size, out);
#ifdef SQ__ASAN
        if (rc == 0) /* the range may carry poison from an older mapping */
            ASAN_UNPOISON_MEMORY_REGION((*out)->base, (*out)->size);
#endif
        return rc;
    }
    if (!w->stack_cache[cls]) {
        int rc = cache_refill(rt, w, cls);
        if (rc)
            return rc;
    }
    sq__stack *s = w->stack_cache[cls];
    w->stack_cache[cls] = s->next;
    w->stack_cache_n[cls]--;
#ifdef SQ__ASAN
    /* The last task on this stack may have left redzone poison behind
     * (frames that never return, such as its final switch). */
    ASAN_UNPOISON_MEMORY_REGION(s->base, s->size);
#endif
    *out = s;
    return 0;
}

uint64_t *sq__stack_canary(sq__stack *s)
{
    return s->guard == SQ__GUARD_CANARY ? canary_of(s) : NULL;
}

void sq__stack_put(sq_runtime *rt, sq__worker *w, sq__stack *s)
{
    int cls = s->cls;
    if (cls < 0) {
        stack_unmap_single(rt, s);
        return;
    }
    if (w && w->stack_cache_n[cls] < WORKER_CACHE_MAX) {
        s->next = w->stack_cache[cls];
        w->stack_cache[cls] = s;
        w->stack_cache_n[cls]++;
        return;
    }
    pthread_mutex_lock(&rt->pool_lock);
    s->next = rt->stack_pool[cls];
    rt->stack_pool[cls] = s;
    pthread_mutex_unlock(&rt->pool_lock);
}

void sq__stack_pool_free(sq_runtime *rt)
{
    for (size_t i = 0; i < rt->nregions; i++)
        munmap(rt->regions[i].addr, rt->regions[i].len);
    free(rt->regions);
    rt->regions = NULL;
    rt->nregions = rt->regions_cap = 0;
    page_guards_release(rt, atomic_load(&rt->page_guards));
    memset(rt->carve, 0, sizeof rt->carve);
    for (int c = 0; c < SQ__STACK_CLASSES; c++) {
        rt->stack_pool[c] = NULL;
        for (int i = 0; i < rt->nworkers; i++) {
            rt->workers[i].stack_cache[c] = NULL;
            rt->workers[i].stack_cache_n[c] = 0;
        }
    }
}

/* ------------------------------------------------- overflow reporting */

static struct sigaction old_segv, old_bus;
static pthread_mutex_t handler_lock = PTHREAD_MUTEX_INITIALIZER;
static int handler_users;

static size_t fmt_u64(char *buf, uint64_t v)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    return n;
}

static void put(char *buf, size_t *at, const char *s, size_t n)
{
    if (*at + n > 255)
        n = 255 - *at;
    memcpy(buf + *at, s, n);
    *at += n;
}

/* Writes "squirrel: stack overflow in task 'NAME' (id N, stack S
 * bytes)WHY\n" to stderr.  Async-signal-safe. */
static void report_overflow(sq__task *t, const char *why)
{
    char msg[256];
    size_t n = 0;
    char num[24];
    put(msg, &n, "squirrel: stack overflow in task '", 34);
    put(msg, &n, t->name, strlen(t->name));
    put(msg, &n, "' (id ", 6);
    put(msg, &n, num, fmt_u64(num, atomic_load(&t->id)));
    put(msg, &n, ", stack ", 8);
    put(msg, &n, num, fmt_u64(num, t->stack_size));
    put(msg, &n, " bytes)", 7);
    put(msg, &n, why, strlen(why));
    put(msg, &n, "\n", 1);
    ssize_t r = write(2, msg, n);
    (void)r;
}

void sq__stack_canary_check(sq__task *t)
{
    if (canary_intact(t->canary))
        return;
    report_overflow(t, ": the canary below the stack was overwritten");
    abort();
}

/* The stack pointer of the interrupted code, or NULL where unknown. */
static char *fault_sp(void *uctx)
{
    ucontext_t *uc = uctx;
#if defined(__x86_64__)
    return (char *)uc->uc_mcontext.gregs[REG_RSP];
#elif defined(__aarch64__)
    return (char *)uc->uc_mcontext.sp;
#else
    (void)uc;
    return NULL;
#endif
}

/* Async-signal-safe: only write(2) and thread-local reads. */
static void on_fault(int sig, siginfo_t *si, void *uctx)
{
    sq__worker *w = sq__worker_current();
    sq__task *t = w ? w->cur : NULL;
    char *addr = si->si_addr;
    if (t && t->stack) {
        char *base = t->stack->base;
        char *guard = base - page_size();
        char *sp = fault_sp(uctx);
        /* Anything in or just below the guard page is an overflow: a big
         * frame can jump past the page.  So is any fault while the stack
         * pointer is below the stack: an overflow past a canary runs down
         * through the stacks below until it hits a guard, at the latest
         * the one at the bottom of its region. */
        if ((addr >= guard - 64 * 1024 && addr < base) ||
            (sp && sp < base &&
             (size_t)(base - sp) <= REGION_SPAN_MAX + 64 * 1024)) {
            report_overflow(t, "");
            signal(sig, SIG_DFL);
            return; /* the faulting access repeats and kills the process */
        }
    }
    struct sigaction *old = sig == SIGSEGV ? &old_segv : &old_bus;
    if (old->sa_flags & SA_SIGINFO) {
        old->sa_sigaction(sig, si, uctx);
    } else if (old->sa_handler != SIG_IGN && old->sa_handler != SIG_DFL) {
        old->sa_handler(sig);
    } else {
        signal(sig, SIG_DFL);
    }
}

void sq__overflow_handler_install(sq__worker *w)
{
    size_t sz = 64 * 1024;
    w->altstack = malloc(sz);
    if (w->altstack) {
        stack_t ss = {.ss_sp = w->altstack, .ss_size = sz, .ss_flags = 0};
        sigaltstack(&ss, NULL);
    }
    pthread_mutex_lock(&handler_lock);
    if (handler_users++ == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_fault;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGSEGV, &sa, &old_segv);
        sigaction(SIGBUS, &sa, &old_bus);
    }
    pthread_mutex_unlock(&handler_lock);
}

void sq__overflow_handler_remove(sq__worker *w)
{
    pthread_mutex_lock(&handler_lock);
    if (--handler_users == 0) {
        sigaction(SIGSEGV, &old_segv, NULL);
        sigaction(SIGBUS, &old_bus, NULL);
    }
    pthread_mutex_unlock(&handler_lock);
    stack_t ss = {.ss_sp = NULL, .ss_size = 0, .ss_flags = SS_DISABLE};
    sigaltstack(&ss, NULL);
    free(w->altstack);
    w->altstack = NULL;
}
