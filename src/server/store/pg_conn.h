/* One libpq connection driven by the runtime's reactor (pg_conn.c), for
 * the PostgreSQL store (postgres.c): every wait is a task's wait on the
 * connection's socket, never a thread's.  Call everything from tasks of
 * one runtime; one task uses a connection at a time. */
#ifndef SQ_STORE_PG_CONN_H
#define SQ_STORE_PG_CONN_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "squirrel/io.h"

typedef struct pg_conn {
    PGconn *c;
    sq_io *io;      /* a dup() of PQsocket (libpq keeps its own descriptor) */
    int fd;         /* PQsocket when io was made */
} pg_conn;

/* Connects with conninfo (non-blocking, PQconnectStart/PQconnectPoll),
 * giving up at deadline.  0, or -ENOTCONN (err says why), -ETIMEDOUT,
 * -ECANCELED, -ENOMEM.  On failure pc is empty. */
int pgc_connect(pg_conn *pc, const char *conninfo, int64_t deadline, char *err,
                size_t errlen);
/* Closes the connection (if any).  Never waits. */
void pgc_close(pg_conn *pc);
/* Whether the connection is there and usable. */
bool pgc_ok(const pg_conn *pc);

/* Sends a query with text parameters and waits for its one result (the
 * later ones are drained): 0 with *res (PQclear it), or -ENOTCONN (the
 * connection is lost: it is closed), -EIO (the query failed: err says
 * why), -ETIMEDOUT, -ECANCELED (then the connection is closed too: a
 * query half done cannot be resumed).  status is what a success is
 * (PGRES_TUPLES_OK or PGRES_COMMAND_OK).  nparams < 0: sql may hold several
 * statements (no parameters; the last one's result is kept). */
int pgc_query(pg_conn *pc, const char *sql, int nparams, const char *const *params,
              int status, PGresult **res, int64_t deadline, char *err, size_t errlen);

/* Whether the socket holds bytes libpq has not read yet (libpq reads a
 * buffer's worth at a time; the reactor's edges do not repeat for what is
 * already there).  Never waits. */
bool pgc_readable(const pg_conn *pc);

/* Notifications: note the mark (sq_io_ready_mark(pc->io, 0)), take in
 * what came (PQconsumeInput, PQnotifies), then wait for more: 0 once
 * something came since the mark (taken in), -ENOTCONN (lost), -ETIMEDOUT,
 * -ECANCELED. */
int pgc_wait_input(pg_conn *pc, uint32_t mark, int64_t deadline);

#endif
