/* A libpq connection on the runtime's reactor (pg_conn.h).
 *
 * libpq owns its socket and does its own reads and writes; the runtime
 * only tells when the socket is ready.  So the socket is dup()ed and the
 * copy adopted by an sq_io, which is used for nothing but readiness
 * (sq_io_ready_mark / sq_io_ready_wait_until: note the edges, let libpq
 * try, wait only if no edge came since).  libpq may change sockets while
 * it connects (another address of the host): the copy follows. */
#include "pg_conn.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "squirrel/runtime.h"

/* The longest a wait for the socket goes without looking at it again. */
#define PG_POLL_STEP SQ_SEC

/* libpq's message without its trailing newline. */
static void say_pq(char *err, size_t errlen, const char *what, const char *msg)
{
    if (!err || !errlen)
        return;
    snprintf(err, errlen, "%s: %s", what, msg && *msg ? msg : "unknown error");
    size_t n = strlen(err);
    while (n && (err[n - 1] == '\n' || err[n - 1] == ' '))
        err[--n] = '\0';
}

static void ignore_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

void pgc_close(pg_conn *pc)
{
    if (pc->io)
        sq_io_close(pc->io);
    if (pc->c)
        PQfinish(pc->c);
    pc->io = NULL;
    pc->c = NULL;
    pc->fd = -1;
}

bool pgc_ok(const pg_conn *pc)
{
    return pc->c && pc->io && PQstatus(pc->c) == CONNECTION_OK;
}

/* Makes pc->io follow libpq's current socket. */
static int follow_socket(pg_conn *pc)
{
    int fd = PQsocket(pc->c);
    if (fd < 0)
        return -ENOTCONN;
    if (pc->io && fd == pc->fd) {
        /* The same number may be a new socket (libpq closed the old one
         * and opened another, which got the number back): compare what
         * the descriptors are, not their numbers. */
        struct stat a, b;
        if (fstat(fd, &a) == 0 && fstat(sq_io_fd(pc->io), &b) == 0 && a.st_ino == b.st_ino &&
            a.st_dev == b.st_dev)
            return 0;
    }
    if (pc->io)
        sq_io_close(pc->io);
    pc->io = NULL;
    int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (copy < 0)
        return -errno;
    int rc = sq_io_adopt(&pc->io, copy);
    if (rc) {
        close(copy);
        return rc;
    }
    pc->fd = fd;
    return 0;
}

int pgc_connect(pg_conn *pc, const char *conninfo, int64_t deadline, char *err,
                size_t errlen)
{
    pc->io = NULL;
    pc->fd = -1;
    pc->c = PQconnectStart(conninfo);
    if (!pc->c) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    if (PQstatus(pc->c) == CONNECTION_BAD) {
        say_pq(err, errlen, "cannot connect to PostgreSQL", PQerrorMessage(pc->c));
        pgc_close(pc);
        return -ENOTCONN;
    }
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    int rc = 0;
    for (;;) {
        if ((rc = follow_socket(pc)) != 0)
            break;
        if (st == PGRES_POLLING_OK)
            break;
        bool write = st == PGRES_POLLING_WRITING;
        uint32_t mark = sq_io_ready_mark(pc->io, write);
        st = PQconnectPoll(pc->c);
        if (st == PGRES_POLLING_FAILED) {
            rc = -ENOTCONN;
            break;
        }
        if (st == PGRES_POLLING_OK)
            continue;
        if ((rc = follow_socket(pc)) != 0)
            break;
        if (pc->fd == PQsocket(pc->c) &&
            (rc = sq_io_ready_wait_until(pc->io, st == PGRES_POLLING_WRITING, mark,
                                         deadline)) != 0)
            break;
    }
    if (rc == 0 && PQsetnonblocking(pc->c, 1) != 0)
        rc = -ENOTCONN;
    if (rc == 0) /* notices ("already exists, skipping") are not errors */
        PQsetNoticeProcessor(pc->c, ignore_notice, NULL);
    if (rc) {
        if (rc == -ENOTCONN)
            say_pq(err, errlen, "cannot connect to PostgreSQL", PQerrorMessage(pc->c));
        else
            snprintf(err, errlen, "cannot connect to PostgreSQL: %s", sq_strerror(rc));
        pgc_close(pc);
    }
    return rc;
}

/* Sends what libpq holds: 0, -ENOTCONN, a wait's error. */
static int flush(pg_conn *pc, int64_t deadline)
{
    for (;;) {
        uint32_t mark = sq_io_ready_mark(pc->io, 1);
        int r = PQflush(pc->c);
        if (r == 0)
            return 0;
        if (r < 0)
            return -ENOTCONN;
        /* The server may be answering while we write (a notice): take
         * that in so that neither side waits for the other forever. */
        if (!PQconsumeInput(pc->c))
            return -ENOTCONN;
        int64_t step = sq_now() + 20 * SQ_MSEC;
        int rc = sq_io_ready_wait_until(pc->io, 1, mark, step < deadline ? step : deadline);
        if (rc == -ETIMEDOUT && step < deadline)
            continue;
        if (rc)
            return rc;
    }
}

bool pgc_readable(const pg_conn *pc)
{
    struct pollfd p = {.fd = PQsocket(pc->c), .events = POLLIN};
    return p.fd >= 0 && poll(&p, 1, 0) > 0;
}

/* The next result, waiting for it (NULL at the end): 0 or an error. */
static int next_result(pg_conn *pc, PGresult **out, int64_t deadline)
{
    for (;;) {
        uint32_t mark = sq_io_ready_mark(pc->io, 0);
        if (!PQconsumeInput(pc->c))
            return -ENOTCONN;
        if (!PQisBusy(pc->c)) {
            *out = PQgetResult(pc->c);
            return 0;
        }
        /* libpq reads a buffer's worth, not until the socket is empty, and
         * the reactor's readiness is edge-triggered: a large result whose
         * rest already waits in the socket raises no new edge (the server
         * waits for us to read).  So read on while there is something. */
        if (pgc_readable(pc))
            continue;
        /* In steps: should an edge ever be missed, the socket is looked
         * at again within PG_POLL_STEP anyway. */
        int64_t step = sq_now() + PG_POLL_STEP;
        int rc = sq_io_ready_wait_until(pc->io, 0, mark, step < deadline ? step : deadline);
        if (rc == -ETIMEDOUT && step < deadline)
            continue;
        if (rc)
            return rc;
    }
}

int pgc_query(pg_conn *pc, const char *sql, int nparams, const char *const *params,
              int status, PGresult **res, int64_t deadline, char *err, size_t errlen)
{
    *res = NULL;
    if (!pgc_ok(pc)) {
        snprintf(err, errlen, "the connection to PostgreSQL is lost");
        pgc_close(pc);
        return -ENOTCONN;
    }
    int rc = 0;
    if (nparams < 0 ? !PQsendQuery(pc->c, sql)
                    : !PQsendQueryParams(pc->c, sql, nparams, NULL, params, NULL, NULL, 0))
        rc = -ENOTCONN;
    if (rc == 0)
        rc = flush(pc, deadline);
    PGresult *first = NULL, *r = NULL;
    while (rc == 0) {
        if ((rc = next_result(pc, &r, deadline)) != 0 || !r)
            break;
        /* The last result is the one kept (several statements: an error
         * ends the list). */
        PQclear(first);
        first = r;
    }
    if (rc) {
        if (rc == -ENOTCONN || PQstatus(pc->c) == CONNECTION_BAD)
            say_pq(err, errlen, "the connection to PostgreSQL is lost", PQerrorMessage(pc->c));
        else
            snprintf(err, errlen, "PostgreSQL query: %s", sq_strerror(rc));
        PQclear(first);
        pgc_close(pc);
        return rc == -ECANCELED || rc == -ETIMEDOUT ? rc : -ENOTCONN;
    }
    if (!first || PQresultStatus(first) != (ExecStatusType)status) {
        if (PQstatus(pc->c) == CONNECTION_BAD) {
            say_pq(err, errlen, "the connection to PostgreSQL is lost", PQerrorMessage(pc->c));
            PQclear(first);
            pgc_close(pc);
            return -ENOTCONN;
        }
        say_pq(err, errlen, "PostgreSQL",
               first ? PQresultErrorMessage(first) : PQerrorMessage(pc->c));
        PQclear(first);
        return -EIO;
    }
    *res = first;
    return 0;
}

int pgc_wait_input(pg_conn *pc, uint32_t mark, int64_t deadline)
{
    if (!pgc_ok(pc))
        return -ENOTCONN;
    int64_t step = sq_now() + PG_POLL_STEP;
    int rc = sq_io_ready_wait_until(pc->io, 0, mark, step < deadline ? step : deadline);
    if (rc == -ETIMEDOUT && step < deadline)
        rc = 0; /* look again (the caller loops) */
    if (rc)
        return rc;
    return PQconsumeInput(pc->c) ? 0 : -ENOTCONN;
}
