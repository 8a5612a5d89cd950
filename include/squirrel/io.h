/* Squirrel runtime layer: non-blocking I/O on sockets and pipes.
 *
 * An sq_io wraps a non-blocking file descriptor registered with the
 * runtime's epoll reactor.  Calls that would block suspend the calling task
 * until the descriptor is ready.  Every waiting call has an _until form
 * taking an absolute deadline (-ETIMEDOUT when it passes; -EINVAL if
 * negative) and is a cancellation point (-ECANCELED).
 *
 * Cancel safety: a read or accept that returns -ECANCELED or -ETIMEDOUT
 * consumed nothing.  A write that returns -ECANCELED/-ETIMEDOUT may have
 * written part of the buffer: the write calls return the number of bytes
 * written when that is > 0, and the error only when nothing was written.
 *
 * At most one task may read and one may wait to write on an sq_io at a
 * time (a second concurrent reader, or a second waiting writer, gets
 * -EBUSY).  All calls must be made from tasks of the runtime that created
 * the sq_io (-EPERM otherwise).
 * Reads return the byte count, 0 at end of stream, or a negative errno.
 */
#ifndef SQUIRREL_IO_H
#define SQUIRREL_IO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sq_io sq_io;

/* Takes ownership of fd (made non-blocking and close-on-exec) and registers
 * it.  -EBADF for a bad fd, -EPERM outside a runtime, -ENOMEM.  On failure
 * fd is left open and untouched. */
int sq_io_adopt(sq_io **out, int fd);

/* The underlying descriptor (still owned by io).  Reads through io may
 * read ahead (a read of under 1 KB on a socket takes up to 1 KB more from
 * the kernel, kept in io for the next reads), so once io has been read,
 * read the socket only through io. */
int sq_io_fd(const sq_io *io);

/* Closes io: tasks waiting on it return -EBADF, later calls on this handle
 * are undefined (it is freed once no call is using it).  Never waits. */
void sq_io_close(sq_io *io);

/* TCP.  host is a numeric IPv4/IPv6 address or NULL (any / loopback for
 * connect); port 0 lets the kernel choose (see sq_io_local_port). */
int sq_tcp_listen(sq_io **out, const char *host, int port, int backlog);
int sq_tcp_connect(sq_io **out, const char *host, int port);
int sq_tcp_connect_until(sq_io **out, const char *host, int port,
                         int64_t deadline);
/* Sets TCP_NODELAY (on != 0) on a connected TCP sq_io. */
int sq_tcp_nodelay(sq_io *io, int on);
/* Port a listening or connected socket is bound to (> 0), or -errno. */
int sq_io_local_port(const sq_io *io);

/* Unix-domain stream sockets.  listen unlinks nothing: a stale socket file
 * gives -EADDRINUSE. */
int sq_unix_listen(sq_io **out, const char *path, int backlog);
int sq_unix_connect(sq_io **out, const char *path);

/* Accepts one connection (the new sq_io is non-blocking, close-on-exec). */
int sq_io_accept(sq_io *listener, sq_io **out);
int sq_io_accept_until(sq_io *listener, sq_io **out, int64_t deadline);

/* A pipe: ends[0] reads, ends[1] writes. */
int sq_pipe(sq_io *ends[2]);

/* Reads up to n bytes (waits until at least one is available).  Bytes
 * already read ahead into io (see sq_io_fd) are returned first, at once,
 * even past the deadline, and a read returns either read-ahead bytes or
 * newly received ones, never both.  -EBUSY if another task is reading io.
 * Cancel safe: -ECANCELED/-ETIMEDOUT consumed nothing. */
ssize_t sq_io_read(sq_io *io, void *buf, size_t n);
ssize_t sq_io_read_until(sq_io *io, void *buf, size_t n, int64_t deadline);
ssize_t sq_io_readv(sq_io *io, const struct iovec *iov, int iovcnt);
ssize_t sq_io_readv_until(sq_io *io, const struct iovec *iov, int iovcnt,
                          int64_t deadline);

/* Writes all n bytes (waiting as needed) and returns n, or a short count
 * when an error, cancellation or deadline stops it after a partial write,
 * or a negative errno if nothing was written (-EPIPE when the peer is
 * gone; SIGPIPE is never raised). */
ssize_t sq_io_write(sq_io *io, const void *buf, size_t n);
ssize_t sq_io_write_until(sq_io *io, const void *buf, size_t n,
                          int64_t deadline);
ssize_t sq_io_writev(sq_io *io, const struct iovec *iov, int iovcnt);
ssize_t sq_io_writev_until(sq_io *io, const struct iovec *iov, int iovcnt,
                           int64_t deadline);

/* Readiness of a descriptor that a library reads and writes itself (a
 * database client's socket, say: adopt a dup() of it, so that the library
 * keeps its own descriptor).  The pattern, which never misses an edge:
 *     uint32_t mark = sq_io_ready_mark(io, write);
 *     ...the library's non-blocking read or write, which stops at EAGAIN...
 *     sq_io_ready_wait_until(io, write, mark, deadline);
 * sq_io_ready_mark notes how many readiness edges of one direction (write
 * != 0: writable; 0: readable) io has seen; sq_io_ready_wait_until returns
 * 0 at once if one came since `mark`, else waits for the next.  It may
 * return 0 with nothing to do (an edge is not a promise of bytes): try
 * again.  -ETIMEDOUT, -ECANCELED (a cancellation point), -EBADF (io
 * closed), -EBUSY (another task already waits on that direction of io),
 * -EPERM (not a task of io's runtime).  Never touches the descriptor. */
uint32_t sq_io_ready_mark(const sq_io *io, int write);
int sq_io_ready_wait_until(sq_io *io, int write, uint32_t mark, int64_t deadline);

/* Shuts down the write side (the peer reads end of stream). */
int sq_io_shutdown_write(sq_io *io);

#ifdef __cplusplus
}
#endif

#endif
