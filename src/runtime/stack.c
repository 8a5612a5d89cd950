/* Task stacks: mmap'd with a PROT_NONE guard page below, committed lazily
 * by the kernel as they are touched, pooled for reuse.
 *
 * Pooling: each worker keeps up to 64 stacks of the runtime's default size,
 * and the runtime up to 1024 more; stacks of other sizes are unmapped on
 * release.  munmap is expensive in a threaded process (it shoots down TLB
 * entries on every core), so the pools are generous; the cost is that a
 * pooled stack keeps the pages its last task touched.
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

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define SQ__VALGRIND 1
#endif
#endif

#define WORKER_CACHE_MAX 64
#define POOL_MAX 1024

static size_t page_size(void)
{
    static size_t ps;
    if (!ps)
        ps = (size_t)sysconf(_SC_PAGESIZE);
    return ps;
}

static int stack_map(size_t size, sq__stack **out)
{
    size_t ps = page_size();
    size = (size + ps - 1) & ~(ps - 1);
    char *m = mmap(NULL, size + ps, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK,
                   -1, 0);
    if (m == MAP_FAILED)
        return -ENOMEM;
    if (mprotect(m, ps, PROT_NONE) != 0) {
        munmap(m, size + ps);
        return -ENOMEM;
    }
    /* The descriptor lives at the top of the stack itself: no allocation. */
    sq__stack *s = (sq__stack *)(m + ps + size) - 1;
    s->base = m + ps;
    s->size = size - sizeof *s;
    s->next = NULL;
#ifdef SQ__VALGRIND
    VALGRIND_STACK_REGISTER(s->base, (char *)s->base + s->size);
#endif
    *out = s;
    return 0;
}

static void stack_unmap(sq__stack *s)
{
    size_t ps = page_size();
    char *m = (char *)s->base - ps;
    size_t total = (size_t)((char *)(s + 1) - m);
    munmap(m, total);
}

static size_t rounded(size_t size)
{
    size_t ps = page_size();
    return ((size + ps - 1) & ~(ps - 1)) - sizeof(sq__stack);
}

int sq__stack_get(sq_runtime *rt, sq__worker *w, size_t size, sq__stack **out)
{
    if (size == rt->stack_size) {
        if (w->stack_cache) {
            *out = w->stack_cache;
            w->stack_cache = (*out)->next;
            w->stack_cache_n--;
            return 0;
        }
        if (rt->stack_pool) {
            pthread_mutex_lock(&rt->pool_lock);
            sq__stack *s = rt->stack_pool;
            if (s) {
                rt->stack_pool = s->next;
                rt->stack_pool_n--;
            }
            pthread_mutex_unlock(&rt->pool_lock);
            if (s) {
                *out = s;
                return 0;
            }
        }
    }
    return stack_map(size, out);
}

void sq__stack_put(sq_runtime *rt, sq__worker *w, sq__stack *s)
{
    if (s->size == rounded(rt->stack_size)) {
        if (w && w->stack_cache_n < WORKER_CACHE_MAX) {
            s->next = w->stack_cache;
            w->stack_cache = s;
            w->stack_cache_n++;
            return;
        }
        pthread_mutex_lock(&rt->pool_lock);
        if (rt->stack_pool_n < POOL_MAX) {
            s->next = rt->stack_pool;
            rt->stack_pool = s;
            rt->stack_pool_n++;
            s = NULL;
        }
        pthread_mutex_unlock(&rt->pool_lock);
        if (!s)
            return;
    }
    stack_unmap(s);
}

void sq__stack_pool_free(sq_runtime *rt)
{
    for (int i = 0; i < rt->nworkers; i++) {
        sq__worker *w = &rt->workers[i];
        while (w->stack_cache) {
            sq__stack *s = w->stack_cache;
            w->stack_cache = s->next;
            stack_unmap(s);
        }
        w->stack_cache_n = 0;
    }
    while (rt->stack_pool) {
        sq__stack *s = rt->stack_pool;
        rt->stack_pool = s->next;
        stack_unmap(s);
    }
    rt->stack_pool_n = 0;
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
