/* Task stacks: mmap'd with a PROT_NONE guard page below, committed lazily
 * by the kernel as they are touched, pooled for reuse.
 *
 * Pooling: stacks are mapped 64 at a time per size class and never
 * unmapped before the runtime is destroyed; freed stacks go to a per-worker
 * cache (256 per class) and then to a shared pool.  munmap is expensive in
 * a threaded process (it shoots down TLB entries on every core), and
 * reusing a stack whose top pages are already committed saves page faults.
 * The cost is that the pool keeps the pages its stacks' last tasks touched
 * until the runtime is destroyed: the high-water mark of live tasks, not
 * the current count, sets the memory held for stacks.
 *
 * Each stack costs two kernel memory mappings (the guard and the stack), so
 * more than about 32,000 live tasks need vm.max_map_count raised (see
 * docs/runtime.md); past the limit, task start fails with -ENOMEM.
 *
 * A stack overflow hits the guard page; the SIGSEGV handler (on an
 * alternate signal stack per worker) recognises the address and reports
 * the task's name and id on stderr before the process dies.
 */
#include "internal.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
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

/* Stack sizes are rounded up to a power of two from 16 KiB (a size
 * class); only address space is rounded, pages are committed as touched. */
#define CLASS_MIN_SHIFT 14
#define WORKER_CACHE_MAX 256 /* per class; the rest goes to the shared pool */
#define CHUNK_STACKS 64

static size_t page_size(void)
{
    static size_t ps;
    if (!ps)
        ps = (size_t)sysconf(_SC_PAGESIZE);
    return ps;
}

/* The class of a request is the power of two that holds it; the stack's
 * 48-byte descriptor takes the top of that span, so the usable size is the
 * span minus 48 bytes (documented with SQ_STACK_MIN). */
static int size_class(size_t size)
{
    int c = 0;
    while (((size_t)1 << (c + CLASS_MIN_SHIFT)) < size)
        c++;
    return c < SQ__STACK_CLASSES ? c : -1;
}

static void stack_init(sq__stack *s, char *base, size_t span, int cls)
{
    s->base = base;
    s->size = span - sizeof *s;
    s->cls = cls;
    s->next = NULL;
#ifdef SQ__VALGRIND
    s->vg_id = VALGRIND_STACK_REGISTER(s->base, (char *)s->base + s->size);
#endif
}

/* Maps CHUNK_STACKS stacks of one class in a single mapping, each with a
 * guard page below it, and returns them as a list.  Chunks are only
 * unmapped when the runtime is destroyed: unmapping stacks one by one costs
 * a TLB shoot-down on every core each time. */
static sq__stack *chunk_map(sq_runtime *rt, int cls)
{
    size_t ps = page_size();
    size_t span = (size_t)1 << (cls + CLASS_MIN_SHIFT);
    size_t slot = span + ps;
    size_t total = slot * CHUNK_STACKS;
    if (rt->nchunks == rt->chunks_cap) {
        size_t cap = rt->chunks_cap ? rt->chunks_cap * 2 : 64;
        struct sq__chunk *n = realloc(rt->chunks, cap * sizeof *n);
        if (!n)
            return NULL;
        rt->chunks = n;
        rt->chunks_cap = cap;
    }
    char *m = mmap(NULL, total, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK,
                   -1, 0);
    if (m == MAP_FAILED)
        return NULL;
    sq__stack *list = NULL;
    for (int i = CHUNK_STACKS - 1; i >= 0; i--) {
        char *guard = m + (size_t)i * slot;
        if (mprotect(guard, ps, PROT_NONE) != 0) {
            munmap(m, total); /* typically vm.max_map_count reached */
            return NULL;
        }
    }
    for (int i = CHUNK_STACKS - 1; i >= 0; i--) {
        char *base = m + (size_t)i * slot + ps;
        sq__stack *s = (sq__stack *)(base + span) - 1;
        stack_init(s, base, span, cls);
        s->next = list;
        list = s;
    }
    rt->chunks[rt->nchunks].addr = m;
    rt->chunks[rt->nchunks].len = total;
    rt->nchunks++;
    return list;
}

/* Stacks too large for a class get a mapping of their own. */
static int stack_map_single(size_t size, sq__stack **out)
{
    size_t ps = page_size();
    size = (size + sizeof(sq__stack) + ps - 1) & ~(ps - 1);
    char *m = mmap(NULL, size + ps, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK,
                   -1, 0);
    if (m == MAP_FAILED)
        return -ENOMEM;
    if (mprotect(m, ps, PROT_NONE) != 0) {
        munmap(m, size + ps);
        return -ENOMEM;
    }
    sq__stack *s = (sq__stack *)(m + ps + size) - 1;
    stack_init(s, m + ps, size, -1);
    *out = s;
    return 0;
}

static void stack_unmap_single(sq__stack *s)
{
    char *m = (char *)s->base - page_size();
#ifdef SQ__VALGRIND
    VALGRIND_STACK_DEREGISTER(s->vg_id);
#endif
    munmap(m, (size_t)((char *)(s + 1) - m));
}

int sq__stack_get(sq_runtime *rt, sq__worker *w, size_t size, sq__stack **out)
{
    int cls = size_class(size);
    if (cls < 0) {
        int rc = stack_map_single(size, out);
#ifdef SQ__ASAN
        if (rc == 0) /* the range may carry poison from an older mapping */
            ASAN_UNPOISON_MEMORY_REGION((*out)->base, (*out)->size);
#endif
        return rc;
    }
    sq__stack *s = w->stack_cache[cls];
    if (!s) {
        /* Refill from the shared pool (a batch), or map a new chunk. */
        pthread_mutex_lock(&rt->pool_lock);
        s = rt->stack_pool[cls];
        if (s) {
            sq__stack *last = s;
            int n = 1;
            while (n < CHUNK_STACKS && last->next) {
                last = last->next;
                n++;
            }
            rt->stack_pool[cls] = last->next;
            last->next = NULL;
            w->stack_cache_n[cls] += n;
        } else if ((s = chunk_map(rt, cls))) {
            w->stack_cache_n[cls] += CHUNK_STACKS;
        }
        pthread_mutex_unlock(&rt->pool_lock);
        if (!s)
            return -ENOMEM;
    }
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

void sq__stack_put(sq_runtime *rt, sq__worker *w, sq__stack *s)
{
    int cls = s->cls;
    if (cls < 0) {
        stack_unmap_single(s);
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
    for (size_t i = 0; i < rt->nchunks; i++)
        munmap(rt->chunks[i].addr, rt->chunks[i].len);
    free(rt->chunks);
    rt->chunks = NULL;
    rt->nchunks = rt->chunks_cap = 0;
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

/* Async-signal-safe: only write(2) and thread-local reads. */
static void on_fault(int sig, siginfo_t *si, void *uctx)
{
    sq__worker *w = sq__worker_current();
    sq__task *t = w ? w->cur : NULL;
    char *addr = si->si_addr;
    if (t && t->stack) {
        char *guard = (char *)t->stack->base - page_size();
        /* Anything in or just below the guard page is an overflow: a big
         * frame can jump past the page. */
        if (addr >= guard - 64 * 1024 && addr < (char *)t->stack->base) {
            char msg[256];
            size_t n = 0;
            char num[24];
            put(msg, &n, "squirrel: stack overflow in task '", 34);
            put(msg, &n, t->name, strlen(t->name));
            put(msg, &n, "' (id ", 6);
            put(msg, &n, num, fmt_u64(num, atomic_load(&t->id)));
            put(msg, &n, ", stack ", 8);
            put(msg, &n, num, fmt_u64(num, t->stack_size));
            put(msg, &n, " bytes)\n", 8);
            ssize_t r = write(2, msg, n);
            (void)r;
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
