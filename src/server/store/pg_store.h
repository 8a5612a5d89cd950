/* What the PostgreSQL store's files share (postgres.c: the store, its
 * pool and queries; pg_events.c: the event streams' table). */
#ifndef SQ_STORE_PG_STORE_H
#define SQ_STORE_PG_STORE_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

#include "sq_base/strbuf.h"
#include "store.h"

/* One query on a connection of st's pool (params as text): 0 with *res
 * (PQclear it), or -ENOTCONN (the database does not answer; fails at
 * once while it is known to be away), -ETIMEDOUT (no connection free
 * within 5 s), -EIO (the query failed), -ECANCELED; err says what (may
 * be NULL).  `retry`: a query found on a lost connection is sent once
 * more on a new one (reads; and writes that are harmless twice).  Waits
 * as a task (the connection's socket on the reactor); call it from a
 * task with cancellation masked (a query abandoned half way closes its
 * connection). */
int sq__pg_query(sq_store *st, const char *sql, int nparams, const char *const *params,
                 int status, PGresult **res, char *err, size_t errlen, bool retry);

/* s as a JSON string (quotes and escapes) appended to b.  Never waits. */
void sq__pg_json_str(sq__strbuf *b, const char *s, size_t len);

/* pg_events.c: the vtable's event stream functions (store.h). */
int sq__pg_events_write(sq_store *st, const sq_store_event *evs, size_t n,
                        const char *const *gone, size_t ngone, char *err, size_t errlen);
int sq__pg_events_prune(sq_store *st, int64_t older_ms, uint64_t *deleted);
int sq__pg_events_read(sq_store *st, const char *session, uint64_t stream, uint64_t after,
                       sq_store_event_fn fn, void *arg);

#endif
