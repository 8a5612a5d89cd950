/* Reading, writing and accepting on an sq_io: try the system call, wait
 * for readiness on EAGAIN, try again. */
#include "io_internal.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

static inline uint32_t seq_of(sq_io *io, bool write)
{
    return atomic_load_explicit(write ? &io->wr_seq : &io->rd_seq,
                                memory_order_acquire);
}

static size_t iov_total(const struct iovec *iov, int iovcnt)
{
    size_t n = 0;
    for (int i = 0; i < iovcnt; i++)
        n += iov[i].iov_len;
    return n;
}

/* Copies read-ahead bytes into iov; returns how many. */
static size_t take_ahead(sq_io *io, const struct iovec *iov, int iovcnt)
{
    size_t done = 0;
    for (int i = 0; i < iovcnt && io->ahead_len > 0; i++) {
        size_t n = iov[i].iov_len < io->ahead_len ? iov[i].iov_len
                                                   : io->ahead_len;
        memcpy(iov[i].iov_base, io->ahead + io->ahead_off, n);
        io->ahead_off += (uint32_t)n;
        io->ahead_len -= (uint32_t)n;
        done += n;
    }
    return done;
}

/* The read system call: recv/recvmsg on sockets (they skip the file layer
 * read/readv go through), read/readv on anything else. */
static ssize_t sys_readv(sq_io *io, const struct iovec *iov, int iovcnt)
{
    if (io->is_socket) {
        if (iovcnt == 1)
            return recv(io->fd, iov[0].iov_base, iov[0].iov_len, 0);
        struct msghdr m = {.msg_iov = (struct iovec *)iov,
                           .msg_iovlen = (size_t)iovcnt};
        return recvmsg(io->fd, &m, 0);
    }
    return iovcnt == 1 ? read(io->fd, iov[0].iov_base, iov[0].iov_len)
                       : readv(io->fd, iov, iovcnt);
}

/* Reads with fewer buffers than this may read ahead (the extra buffer
 * goes in a copy of the caller's array, on the stack). */
#define AHEAD_IOV_MAX 8

/* One read system call.  A small read on a socket also offers the kernel
 * SQ__READ_AHEAD bytes more, into io->ahead; bytes beyond the caller's
 * buffers wait there for the next read.  *drained: the call returned fewer
 * bytes than it offered, so the socket was empty after it (which a read
 * that fills the caller's buffer exactly cannot tell without the offer). */
static ssize_t read_once(sq_io *io, const struct iovec *iov, int iovcnt,
                         size_t want, bool *drained)
{
    size_t offered = want;
    ssize_t r;
    bool ahead = io->is_socket && want > 0 && want < SQ__READ_AHEAD &&
                 iovcnt < AHEAD_IOV_MAX;
    if (ahead && !io->ahead && !(io->ahead = malloc(SQ__READ_AHEAD)))
        ahead = false; /* no memory: read without it */
    if (ahead) {
        struct iovec v[AHEAD_IOV_MAX];
        memcpy(v, iov, (size_t)iovcnt * sizeof *v);
        v[iovcnt] = (struct iovec){io->ahead, SQ__READ_AHEAD};
        offered += SQ__READ_AHEAD;
        r = sys_readv(io, v, iovcnt + 1);
    } else {
        r = sys_readv(io, iov, iovcnt);
    }
    *drained = r > 0 && (size_t)r < offered;
    if (r > (ssize_t)want) {
        io->ahead_off = 0;
        io->ahead_len = (uint32_t)((size_t)r - want);
        r = (ssize_t)want;
    }
    return r;
}

/* Read hint, for sockets: a read that returned less than it offered
 * (read_once) drained the socket, and data that arrives later raises a new
 * readiness edge.  So while no edge has arrived since the draining read
 * started, the next read would only return EAGAIN: skip that system call
 * and wait at once.  This
 * saves one of the three system calls of a request/response round trip,
 * on both sides: the read-ahead above makes a read that fills a small
 * buffer exactly tell whether it drained the socket too.
 * Except at the end of the stream: once the peer's FIN (or an error) has
 * been reported, a read that drains the last bytes is followed by reads
 * that return 0 at once, and no edge will ever come again; rd_closed, set
 * by the reactor and never cleared, turns the hint off (without it a
 * reader that drained the data after the FIN waited forever: io_test's
 * stream test).  Pipes always try the read. */
static ssize_t readv_locked(sq_io *io, const struct iovec *iov, int iovcnt,
                            int64_t deadline)
{
    size_t want = iov_total(iov, iovcnt);
    if (io->ahead_len > 0 && want > 0)
        return (ssize_t)take_ahead(io, iov, iovcnt);
    for (;;) {
        uint32_t seen = seq_of(io, false);
        int rc;
        if (atomic_load_explicit(&io->rd_drained, memory_order_relaxed) ==
                seen + 1 &&
            want > 0 &&
            !atomic_load_explicit(&io->rd_closed, memory_order_relaxed)) {
            if ((rc = sq__io_wait(io, false, seen, deadline)) != 0)
                return rc;
            seen = seq_of(io, false);
        }
        bool drained;
        ssize_t r = read_once(io, iov, iovcnt, want, &drained);
        if (r >= 0) {
            atomic_store_explicit(&io->rd_drained,
                                  io->is_socket && drained ? seen + 1 : 0,
                                  memory_order_relaxed);
            return r;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;
        atomic_store_explicit(&io->rd_drained, 0, memory_order_relaxed);
        if ((rc = sq__io_wait(io, false, seen, deadline)) != 0)
            return rc;
    }
}

ssize_t sq_io_readv_until(sq_io *io, const struct iovec *iov, int iovcnt,
                          int64_t deadline)
{
    if (iovcnt < 0 || iovcnt > IOV_MAX)
        return -EINVAL;
    int rc = sq__io_enter(io, deadline);
    if (rc)
        return rc;
    ssize_t r = -EBUSY;
    if (!atomic_exchange_explicit(&io->reading, true, memory_order_acquire)) {
        r = readv_locked(io, iov, iovcnt, deadline);
        atomic_store_explicit(&io->reading, false, memory_order_release);
    }
    sq__io_unref(io);
    return r;
}

ssize_t sq_io_readv(sq_io *io, const struct iovec *iov, int iovcnt)
{
    return sq_io_readv_until(io, iov, iovcnt, SQ_FOREVER);
}

ssize_t sq_io_read_until(sq_io *io, void *buf, size_t n, int64_t deadline)
{
    struct iovec v = {.iov_base = buf, .iov_len = n};
    return sq_io_readv_until(io, &v, 1, deadline);
}

ssize_t sq_io_read(sq_io *io, void *buf, size_t n)
{
    return sq_io_read_until(io, buf, n, SQ_FOREVER);
}

static ssize_t write_once(sq_io *io, struct iovec *iov, int cnt)
{
    if (io->is_socket) {
        if (cnt == 1)
            return send(io->fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL);
        struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)cnt};
        return sendmsg(io->fd, &m, MSG_NOSIGNAL);
    }
    ssize_t r = cnt == 1 ? write(io->fd, iov[0].iov_base, iov[0].iov_len)
                         : writev(io->fd, iov, cnt);
    if (r < 0 && errno == EPIPE) {
        sq__drain_sigpipe();
        errno = EPIPE;
    }
    return r;
}

/* Writes every byte of iov (which it advances in place). */
static ssize_t write_all(sq_io *io, struct iovec *iov, int cnt,
                         int64_t deadline)
{
    size_t done = 0;
    while (cnt > 0 && iov[0].iov_len == 0) {
        iov++;
        cnt--;
    }
    while (cnt > 0) {
        uint32_t seen = seq_of(io, true);
        ssize_t r = write_once(io, iov, cnt);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            int rc = -errno;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                rc = sq__io_wait(io, true, seen, deadline);
            if (rc)
                return done > 0 ? (ssize_t)done : rc;
            continue;
        }
        done += (size_t)r;
        while (cnt > 0 && (size_t)r >= iov[0].iov_len) {
            r -= (ssize_t)iov[0].iov_len;
            iov++;
            cnt--;
        }
        if (cnt > 0) {
            iov[0].iov_base = (char *)iov[0].iov_base + r;
            iov[0].iov_len -= (size_t)r;
        }
    }
    return (ssize_t)done;
}

ssize_t sq_io_writev_until(sq_io *io, const struct iovec *iov, int iovcnt,
                           int64_t deadline)
{
    if (iovcnt < 0 || iovcnt > IOV_MAX)
        return -EINVAL;
    int rc = sq__io_enter(io, deadline);
    if (rc)
        return rc;
    struct iovec small[8], *copy = small;
    if (iovcnt > 8 && !(copy = malloc((size_t)iovcnt * sizeof *copy))) {
        sq__io_unref(io);
        return -ENOMEM;
    }
    memcpy(copy, iov, (size_t)iovcnt * sizeof *copy);
    ssize_t r = write_all(io, copy, iovcnt, deadline);
    if (copy != small)
        free(copy);
    sq__io_unref(io);
    return r;
}

ssize_t sq_io_writev(sq_io *io, const struct iovec *iov, int iovcnt)
{
    return sq_io_writev_until(io, iov, iovcnt, SQ_FOREVER);
}

ssize_t sq_io_write_until(sq_io *io, const void *buf, size_t n,
                          int64_t deadline)
{
    struct iovec v = {.iov_base = (void *)buf, .iov_len = n};
    return sq_io_writev_until(io, &v, 1, deadline);
}

ssize_t sq_io_write(sq_io *io, const void *buf, size_t n)
{
    return sq_io_write_until(io, buf, n, SQ_FOREVER);
}

int sq_io_accept_until(sq_io *l, sq_io **out, int64_t deadline)
{
    int rc = sq__io_enter(l, deadline);
    if (rc)
        return rc;
    for (;;) {
        uint32_t seen = seq_of(l, false);
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            rc = sq__io_new(l->rt, fd, out);
            if (rc)
                close(fd);
            else
                (*out)->is_socket = true;
            break;
        }
        if (errno == EINTR || errno == ECONNABORTED)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            rc = -errno;
            break;
        }
        if ((rc = sq__io_wait(l, false, seen, deadline)) != 0)
            break;
    }
    sq__io_unref(l);
    return rc;
}

int sq_io_accept(sq_io *l, sq_io **out)
{
    return sq_io_accept_until(l, out, SQ_FOREVER);
}

int sq_io_shutdown_write(sq_io *io)
{
    int rc = sq__io_enter(io, SQ_FOREVER);
    if (rc)
        return rc;
    if (io->is_socket)
        rc = shutdown(io->fd, SHUT_WR) == 0 ? 0 : -errno;
    else
        rc = -EINVAL;
    sq__io_unref(io);
    return rc;
}

uint32_t sq_io_ready_mark(const sq_io *io, int write)
{
    return atomic_load_explicit(write ? &io->wr_seq : &io->rd_seq, memory_order_acquire);
}

int sq_io_ready_wait_until(sq_io *io, int write, uint32_t mark, int64_t deadline)
{
    int rc = sq__io_enter(io, deadline);
    if (rc)
        return rc;
    rc = sq__io_wait(io, write != 0, mark, deadline);
    sq__io_unref(io);
    return rc;
}
