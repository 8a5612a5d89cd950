/* The PostgreSQL store's event streams (store.h, events_*; the table
 * squirrel_events of pg_schema.h; docs/postgres.md, "The load balancer"):
 * the events of legacy-era SSE streams, kept so that a client can resume
 * a stream on another instance than the one that made it.
 *
 * A batch is one statement (one transaction, one round trip): its events
 * as a JSON array (each event's data as a JSON string, so the text comes
 * back byte for byte), inserted with ON CONFLICT DO NOTHING (a batch sent
 * again after a lost answer changes nothing), and the deletion of the
 * sessions that ended, whose events in the same batch are not inserted. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg_store.h"

#define WRITE_SQL                                                                         \
    "WITH gone AS (DELETE FROM squirrel_events WHERE session = ANY($2::text[]) "         \
    "RETURNING 1), "                                                                      \
    "ins AS (INSERT INTO squirrel_events (session, stream, seq, data) "                   \
    "SELECT e->>'s', (e->>'n')::bigint, (e->>'q')::bigint, e->>'d' "                     \
    "FROM json_array_elements($1::json) AS e WHERE NOT ((e->>'s') = ANY($2::text[])) "   \
    "ON CONFLICT DO NOTHING RETURNING 1) "                                                \
    "SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM gone)"

int sq__pg_events_write(sq_store *st, const sq_store_event *evs, size_t n,
                        const char *const *gone, size_t ngone, char *err, size_t errlen)
{
    sq__strbuf b, g;
    sq__strbuf_init(&b);
    sq__strbuf_init(&g);
    sq__strbuf_putc(&b, '[');
    for (size_t i = 0; i < n; i++) {
        const sq_store_event *e = &evs[i];
        sq__strbuf_puts(&b, i ? ",{\"s\":" : "{\"s\":");
        sq__pg_json_str(&b, e->session, strlen(e->session));
        sq__strbuf_printf(&b, ",\"n\":%" PRIu64 ",\"q\":%" PRIu64 ",\"d\":", e->stream,
                          e->seq);
        sq__pg_json_str(&b, e->data, e->len);
        sq__strbuf_putc(&b, '}');
    }
    sq__strbuf_putc(&b, ']');
    /* A text[] literal: every element quoted, " and \ escaped. */
    sq__strbuf_putc(&g, '{');
    for (size_t i = 0; i < ngone; i++) {
        if (i)
            sq__strbuf_putc(&g, ',');
        sq__strbuf_putc(&g, '"');
        for (const char *c = gone[i]; *c; c++) {
            if (*c == '"' || *c == '\\')
                sq__strbuf_putc(&g, '\\');
            sq__strbuf_putc(&g, *c);
        }
        sq__strbuf_putc(&g, '"');
    }
    sq__strbuf_putc(&g, '}');
    int rc;
    if (sq__strbuf_failed(&b) || sq__strbuf_failed(&g)) {
        if (err && errlen)
            snprintf(err, errlen, "out of memory");
        rc = -ENOMEM;
    } else {
        const char *p[] = {sq__strbuf_str(&b), sq__strbuf_str(&g)};
        PGresult *r;
        rc = sq__pg_query(st, WRITE_SQL, 2, p, PGRES_TUPLES_OK, &r, err, errlen, true);
        if (rc == 0)
            PQclear(r);
    }
    sq__strbuf_free(&b);
    sq__strbuf_free(&g);
    return rc;
}

int sq__pg_events_prune(sq_store *st, int64_t older_ms, uint64_t *deleted)
{
    char ms[24];
    snprintf(ms, sizeof ms, "%" PRId64, older_ms < 0 ? 0 : older_ms);
    const char *p[] = {ms};
    PGresult *r;
    *deleted = 0;
    int rc = sq__pg_query(st,
                          "DELETE FROM squirrel_events WHERE at < now() - $1::bigint * "
                          "interval '1 millisecond'",
                          1, p, PGRES_COMMAND_OK, &r, NULL, 0, true);
    if (rc == 0) {
        *deleted = strtoull(PQcmdTuples(r), NULL, 10);
        PQclear(r);
    }
    return rc;
}

int sq__pg_events_read(sq_store *st, const char *session, uint64_t stream, uint64_t after,
                       sq_store_event_fn fn, void *arg)
{
    if (stream > INT64_MAX || after > INT64_MAX)
        return -ENOENT; /* no such number is ever stored */
    char n[24], a[24];
    snprintf(n, sizeof n, "%" PRIu64, stream);
    snprintf(a, sizeof a, "%" PRIu64, after);
    const char *p[] = {session, n, a};
    PGresult *r;
    /* The events after `after`, and a row of seq -1 if there are earlier
     * ones (the stream is known even when nothing follows). */
    int rc = sq__pg_query(st,
                          "SELECT seq, data FROM squirrel_events WHERE session = $1 AND "
                          "stream = $2::bigint AND seq > $3::bigint "
                          "UNION ALL SELECT -1, NULL WHERE EXISTS (SELECT 1 FROM "
                          "squirrel_events WHERE session = $1 AND stream = $2::bigint "
                          "AND seq <= $3::bigint) ORDER BY 1",
                          3, p, PGRES_TUPLES_OK, &r, NULL, 0, true);
    if (rc)
        return rc;
    int rows = PQntuples(r);
    if (rows == 0)
        rc = -ENOENT;
    for (int i = 0; i < rows && rc == 0; i++) {
        long long seq = strtoll(PQgetvalue(r, i, 0), NULL, 10);
        if (seq < 0)
            continue;
        sq_store_event e = {.session = session, .stream = stream, .seq = (uint64_t)seq,
                            .data = PQgetvalue(r, i, 1), .len = (size_t)PQgetlength(r, i, 1)};
        rc = fn(arg, &e);
        if (rc > 0)
            rc = 0;
    }
    PQclear(r);
    return rc;
}
