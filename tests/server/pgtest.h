/* A PostgreSQL 15 server of the test's own (tests/server/pgtest.c): a
 * cluster made by initdb in a fresh temporary directory, run by pg_ctl as
 * an unprivileged user (`nobody` when the test runs as root), listening
 * only on a Unix socket in that directory (no TCP port at all, so two
 * tests never collide).  Debian's postgresql-15 is required (scripts/test
 * installs it); a test that cannot start the server fails, it is never
 * skipped.  Everything here waits on the blocking pool: call from tasks. */
#ifndef SQ_PGTEST_H
#define SQ_PGTEST_H

#include <stdbool.h>

typedef struct pg_server {
    char dir[64];            /* the temporary directory (data, socket, log) */
    char uri[256];           /* postgresql://... for --store */
    bool running;
} pg_server;

/* initdb and start: the server, or NULL (the test has failed). */
pg_server *pg_start(void);
/* Stops it at once (pg_ctl stop -m immediate: like a crash), starts it
 * again (crash recovery); true if it is back. */
bool pg_restart(pg_server *p);
/* Stops it at once, like a crash, and leaves it down (pg_resume starts
 * it again). */
void pg_halt(pg_server *p);
/* Starts a halted server again (crash recovery); true if it is back. */
bool pg_resume(pg_server *p);
/* Stops it and removes the directory. */
void pg_stop(pg_server *p);

#endif
