/* The sq_io handle, shared by reactor.c, io.c and net.c. */
#ifndef SQUIRREL_IO_INTERNAL_H
#define SQUIRREL_IO_INTERNAL_H

#include "internal.h"

struct sq_io {
    int fd;
    sq_runtime *rt;
    sq__spin lock;           /* reader, writer; ordering of closed */
    atomic_uint rd_seq;      /* readiness edges seen, per direction */
    atomic_uint wr_seq;
    atomic_uint rd_drained;  /* rd_seq + 1 when a short read drained it */
    atomic_bool rd_closed;   /* end of stream or error seen: sticky */
    sq__waiter *reader;      /* at most one waiting task per direction */
    sq__waiter *writer;
    atomic_int refs;         /* owner + calls in progress */
    atomic_bool closed;
    bool is_socket;
    atomic_bool reading;     /* a read call is in progress (one at a time) */
    unsigned char *ahead;    /* read-ahead bytes (sockets, small reads) */
    uint32_t ahead_off, ahead_len;
    struct sq_io *release_next;
};

/* Wraps a non-blocking fd (registers it with epoll). */
int sq__io_new(sq_runtime *rt, int fd, sq_io **out);
/* Every call on an sq_io brackets itself with enter/unref. */
int sq__io_enter(sq_io *io, int64_t deadline);
void sq__io_unref(sq_io *io);
/* Waits for a readiness edge after `seen` (0), or -EBADF, -EBUSY,
 * -ECANCELED, -ETIMEDOUT. */
int sq__io_wait(sq_io *io, bool write, uint32_t seen, int64_t deadline);
void sq__drain_sigpipe(void);

/* Size of an sq_io's read-ahead buffer: reads asking for less than this add
 * it to the system call (see io.c). */
#define SQ__READ_AHEAD 1024

#endif
