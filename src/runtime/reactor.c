/* The I/O reactor: epoll, the driver that polls it and fires timers, and
 * the waiting half of every sq_io call.
 *
 * Descriptors are registered once, edge-triggered, for both directions.
 * Each sq_io counts the readiness events it has seen per direction; a call
 * notes the count, tries the system call, and on EAGAIN waits only if no
 * event arrived since it noted the count, so an edge is never missed.
 *
 * The driver is not a thread of its own: a parked worker sleeps in
 * epoll_wait holding driver_lock, and busy workers poll it without waiting
 * every 61 ticks.  A woken task is pushed on the polling worker's queue.
 *
 * Closing: an sq_io is reference-counted by the calls using it, so the fd
 * is closed only when no call is inside a system call on it.  Its memory
 * is freed by the driver at its next poll, after the descriptor has left
 * the epoll set, so a stale event in a batch never points at freed memory.
 */
#include "io_internal.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int sq__driver_init(sq_runtime *rt)
{
    rt->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (rt->epfd < 0)
        return -errno;
    rt->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (rt->evfd < 0) {
        int e = -errno;
        close(rt->epfd);
        return e;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(rt->epfd, EPOLL_CTL_ADD, rt->evfd, &ev) != 0) {
        int e = -errno;
        close(rt->evfd);
        close(rt->epfd);
        return e;
    }
    atomic_store(&rt->driver_until, INT64_MAX);
    atomic_store(&rt->timer_next, INT64_MAX);
    return 0;
}

static void release_pending(sq_runtime *rt)
{
    sq_io *list = atomic_exchange(&rt->io_release, NULL);
    while (list) {
        sq_io *next = list->release_next;
        free(list->ahead);
        free(list);
        list = next;
    }
}

void sq__driver_free(sq_runtime *rt)
{
    release_pending(rt);
    close(rt->evfd);
    close(rt->epfd);
}

void sq__driver_wake(sq_runtime *rt)
{
    uint64_t one = 1;
    ssize_t r = write(rt->evfd, &one, sizeof one);
    (void)r; /* EAGAIN means the counter is already non-zero: awake */
}

static void dispatch(sq_io *io, uint32_t events)
{
    sq__spin_lock(&io->lock);
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        atomic_store_explicit(&io->rd_closed, true, memory_order_relaxed);
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        atomic_fetch_add_explicit(&io->rd_seq, 1, memory_order_release);
        if (io->reader) {
            sq__waiter_wake(io->reader);
            io->reader = NULL;
        }
    }
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) {
        atomic_fetch_add_explicit(&io->wr_seq, 1, memory_order_release);
        if (io->writer) {
            sq__waiter_wake(io->writer);
            io->writer = NULL;
        }
    }
    sq__spin_unlock(&io->lock);
}

static int epoll_wait_ns(int epfd, struct epoll_event *evs, int n,
                         int64_t timeout)
{
    /* epoll_pwait2 (ns timeouts) through syscall(2) when the kernel has it;
     * not under ThreadSanitizer, which models the happens-before from
     * epoll_ctl's registration to epoll_wait's return only for calls it
     * intercepts (it reported races on a handle's fields otherwise).  The
     * watcher's deadlines (sched.c) make the timed path a common one. */
#if defined(SYS_epoll_pwait2) && !defined(SQ__TSAN)
    static atomic_int no_pwait2;
    if (timeout > 0 && !atomic_load_explicit(&no_pwait2, memory_order_relaxed)) {
        struct timespec ts = {.tv_sec = timeout / SQ_SEC,
                              .tv_nsec = timeout % SQ_SEC};
        int r = (int)syscall(SYS_epoll_pwait2, epfd, evs, n, &ts, NULL, 0);
        if (r >= 0 || errno != ENOSYS)
            return r;
        atomic_store(&no_pwait2, 1);
    }
#endif
    int ms;
    if (timeout < 0)
        ms = -1;
    else if (timeout > (int64_t)INT32_MAX * SQ_MSEC)
        ms = INT32_MAX;
    else
        ms = (int)((timeout + SQ_MSEC - 1) / SQ_MSEC); /* never early */
    return epoll_wait(epfd, evs, n, ms);
}

/* timeout < 0: wait until the next timer or cap, whichever is first. */
static void driver_poll(sq_runtime *rt, int64_t timeout, int64_t cap)
{
    struct epoll_event evs[128];
    release_pending(rt);
    if (timeout < 0) {
        int64_t until = atomic_load(&rt->timer_next);
        if (cap < until)
            until = cap;
        atomic_store(&rt->driver_until, until);
        sq__fence();
        int64_t again = atomic_load(&rt->timer_next);
        if (again < until)
            until = again;
        if (until != INT64_MAX) {
            int64_t now = sq_now();
            timeout = until > now ? until - now : 0;
        }
    }
    /* A poll that must not wait, with no handle registered, can only find
     * driver wake-ups, which are for a parked driver: skip the system
     * call (workers busy with pure computation poll every 61 ticks). */
    int n = 0;
    if (timeout != 0 ||
        atomic_load_explicit(&rt->io_live, memory_order_relaxed) != 0)
        n = epoll_wait_ns(rt->epfd, evs, 128, timeout);
    atomic_store(&rt->driver_until, INT64_MAX);
    for (int i = 0; i < n; i++) {
        if (evs[i].data.ptr == NULL) {
            uint64_t v;
            ssize_t r = read(rt->evfd, &v, sizeof v);
            (void)r;
            continue;
        }
        dispatch(evs[i].data.ptr, evs[i].events);
    }
    sq__timers_fire(rt, sq_now());
}

void sq__driver_poll(sq_runtime *rt, int64_t timeout)
{
    driver_poll(rt, timeout, INT64_MAX);
}

void sq__driver_poll_until(sq_runtime *rt, int64_t deadline)
{
    driver_poll(rt, -1, deadline == SQ_FOREVER ? INT64_MAX : deadline);
}

/* ------------------------------------------------------- sq_io core */

int sq__io_new(sq_runtime *rt, int fd, sq_io **out)
{
    sq_io *io = calloc(1, sizeof *io);
    if (!io)
        return -ENOMEM;
    io->fd = fd;
    io->rt = rt;
    atomic_store(&io->refs, 1);
    struct epoll_event ev = {
        .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
        .data.ptr = io};
    if (epoll_ctl(rt->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        int e = -errno;
        free(io);
        return e;
    }
    atomic_fetch_add_explicit(&rt->io_live, 1, memory_order_relaxed);
    *out = io;
    return 0;
}

void sq__io_unref(sq_io *io)
{
    if (atomic_fetch_sub_explicit(&io->refs, 1, memory_order_acq_rel) != 1)
        return;
    sq_runtime *rt = io->rt;
    epoll_ctl(rt->epfd, EPOLL_CTL_DEL, io->fd, NULL);
    atomic_fetch_sub_explicit(&rt->io_live, 1, memory_order_relaxed);
    close(io->fd);
    /* Lock-free push; the driver takes the whole list with one exchange. */
    io->release_next = atomic_load(&rt->io_release);
    while (!atomic_compare_exchange_weak(&rt->io_release, &io->release_next,
                                         io)) {
    }
}

int sq__io_enter(sq_io *io, int64_t deadline)
{
    if (!io || deadline < 0)
        return -EINVAL;
    sq__task *t = sq__task_current();
    if (!t || t->rt != io->rt)
        return -EPERM;
    atomic_fetch_add_explicit(&io->refs, 1, memory_order_relaxed);
    if (atomic_load_explicit(&io->closed, memory_order_acquire)) {
        sq__io_unref(io);
        return -EBADF;
    }
    return 0;
}

int sq__io_wait(sq_io *io, bool write, uint32_t seen, int64_t deadline)
{
    sq__waiter w;
    sq__waiter_init_for(&w, SQ__WAIT_IO, io);
    sq__waiter **slot = write ? &io->writer : &io->reader;
    atomic_uint *seq = write ? &io->wr_seq : &io->rd_seq;
    sq__spin_lock(&io->lock);
    if (atomic_load(&io->closed)) {
        sq__spin_unlock(&io->lock);
        return -EBADF;
    }
    if (atomic_load(seq) != seen) {
        sq__spin_unlock(&io->lock);
        return 0; /* an edge arrived since the attempt: try again */
    }
    if (*slot) {
        sq__spin_unlock(&io->lock);
        return -EBUSY;
    }
    *slot = &w;
    sq__spin_unlock(&io->lock);
    int rc = sq__waiter_wait(&w, deadline, true);
    sq__spin_lock(&io->lock);
    if (*slot == &w)
        *slot = NULL;
    if (atomic_load(&io->closed))
        rc = -EBADF;
    sq__spin_unlock(&io->lock);
    return rc;
}

void sq_io_close(sq_io *io)
{
    if (!io)
        return;
    sq__spin_lock(&io->lock);
    atomic_store(&io->closed, true);
    if (io->reader)
        sq__waiter_wake(io->reader);
    if (io->writer)
        sq__waiter_wake(io->writer);
    io->reader = io->writer = NULL;
    sq__spin_unlock(&io->lock);
    sq__io_unref(io);
}

int sq_io_fd(const sq_io *io)
{
    return io ? io->fd : -EINVAL;
}

/* Worker threads block SIGPIPE, so a write to a closed pipe returns EPIPE;
 * the signal left pending on the thread is consumed here. */
void sq__drain_sigpipe(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    struct timespec zero = {0, 0};
    while (sigtimedwait(&set, NULL, &zero) > 0) {
    }
}
