/* The PostgreSQL store's schema and its migrations (postgres.c).
 *
 * squirrel_schema holds one row: the schema version.  migrations[i] takes
 * version i to i + 1; append a step for every change (never edit a
 * released one) and raise SQ_STORE_PG_SCHEMA in store.h.  Each step runs
 * in one transaction that holds an advisory lock, so two squirreld
 * starting at once on an empty database do not both create it.
 *
 * squirrel_commit(ops, origin) is the group commit: one call, one
 * transaction, one round trip for a whole batch.  ops is a JSON array of
 * the batch's operations; each one's precondition is checked by the
 * database:
 *   create    the id is free (INSERT ... ON CONFLICT DO NOTHING);
 *   put       the stored version is the one before (a conditional
 *             UPDATE on the version: two instances never both win);
 *   delete    likewise;
 *   snapshot  the context is there at that version or later, the name
 *             is free;
 *   recovery  the context is there at that version or later.
 * An operation that fails it is skipped with every later one of the same
 * id, and its index returned; the rest commits.  Every change that
 * commits is announced with pg_notify('squirrel_ctx', 'ORIGIN VERSION
 * ID'), delivered to every listening instance when (and only if) the
 * transaction commits; VERSION is 0 for a snapshot or recovery point.
 * Documents and metadata are kept as the text the instance made (json,
 * not jsonb: member order and numbers exactly as written).
 *
 * squirrel_events (step 1 -> 2) keeps the events of legacy-era SSE
 * streams that a client may resume on another instance (pg_events.c,
 * docs/postgres.md "The load balancer"): one row per event, by session
 * id, stream number and sequence number, with the event's data (the
 * JSON-RPC message's text) and when it was stored (`at`, the database's
 * clock: retention prunes by it, squirrel_events_at). */
#ifndef SQ_STORE_PG_SCHEMA_H
#define SQ_STORE_PG_SCHEMA_H

#define PG_CHANNEL "squirrel_ctx"

static const char *const pg_migrations[] = {
    /* 0 -> 1 */
    "CREATE TABLE squirrel_contexts ("
    "  id text COLLATE \"C\" PRIMARY KEY,"
    "  created_at bigint NOT NULL,"
    "  version bigint NOT NULL);"
    "CREATE TABLE squirrel_versions ("
    "  id text COLLATE \"C\" NOT NULL,"
    "  version bigint NOT NULL,"
    "  at bigint NOT NULL,"
    "  kind int NOT NULL,"
    "  actor text NOT NULL,"
    "  meta text NOT NULL,"
    "  doc text NOT NULL,"
    "  PRIMARY KEY (id, version));"
    "CREATE TABLE squirrel_snapshots ("
    "  id text COLLATE \"C\" NOT NULL,"
    "  name text COLLATE \"C\" NOT NULL,"
    "  version bigint NOT NULL,"
    "  at bigint NOT NULL,"
    "  doc text NOT NULL,"
    "  PRIMARY KEY (id, name));"
    "CREATE TABLE squirrel_recovery ("
    "  id text COLLATE \"C\" NOT NULL,"
    "  version bigint NOT NULL,"
    "  at bigint NOT NULL,"
    "  reason text NOT NULL,"
    "  doc text NOT NULL,"
    "  PRIMARY KEY (id, version));"
    "CREATE FUNCTION squirrel_commit(ops json, origin text) RETURNS int[]"
    " LANGUAGE plpgsql AS $fn$\n"
    "DECLARE\n"
    "  o json; i int := 0; n int; _id text; _v bigint; _t bigint;\n"
    "  stale int[] := '{}'; bad text[] := '{}';\n"
    "BEGIN\n"
    "  FOR o IN SELECT value FROM json_array_elements(ops) LOOP\n"
    "    _id := o->>'i'; _v := (o->>'v')::bigint; _t := (o->>'t')::bigint; n := 0;\n"
    "    IF NOT (_id = ANY(bad)) THEN\n"
    "      CASE (o->>'o')::int\n"
    "      WHEN 1 THEN\n"
    "        INSERT INTO squirrel_contexts VALUES (_id, _t, 1) ON CONFLICT DO NOTHING;\n"
    "        GET DIAGNOSTICS n = ROW_COUNT;\n"
    "        IF n = 1 THEN\n"
    "          INSERT INTO squirrel_versions VALUES (_id, 1, _t, (o->>'k')::int, o->>'a',\n"
    "            (o->'m')::text, (o->'d')::text);\n"
    "        END IF;\n"
    "      WHEN 2 THEN\n"
    "        UPDATE squirrel_contexts SET version = _v WHERE id = _id AND version = _v - 1;\n"
    "        GET DIAGNOSTICS n = ROW_COUNT;\n"
    "        IF n = 1 THEN\n"
    "          INSERT INTO squirrel_versions VALUES (_id, _v, _t, (o->>'k')::int, o->>'a',\n"
    "            (o->'m')::text, (o->'d')::text);\n"
    "          IF (o->>'p')::bigint > 1 THEN\n"
    "            DELETE FROM squirrel_versions WHERE id = _id AND version < (o->>'p')::bigint;\n"
    "          END IF;\n"
    "        END IF;\n"
    "      WHEN 3 THEN\n"
    "        DELETE FROM squirrel_contexts WHERE id = _id AND version = _v - 1;\n"
    "        GET DIAGNOSTICS n = ROW_COUNT;\n"
    "        IF n = 1 THEN\n"
    "          DELETE FROM squirrel_versions WHERE id = _id;\n"
    "          DELETE FROM squirrel_snapshots WHERE id = _id;\n"
    "          DELETE FROM squirrel_recovery WHERE id = _id;\n"
    "        END IF;\n"
    "      WHEN 4 THEN\n"
    "        INSERT INTO squirrel_snapshots SELECT _id, o->>'n', _v, _t, (o->'d')::text\n"
    "          WHERE EXISTS (SELECT 1 FROM squirrel_contexts WHERE id = _id AND version >= _v)\n"
    "          ON CONFLICT DO NOTHING;\n"
    "        GET DIAGNOSTICS n = ROW_COUNT;\n"
    "        _v := 0;\n"
    "      WHEN 5 THEN\n"
    "        INSERT INTO squirrel_recovery SELECT _id, _v, _t, o->>'r', (o->'d')::text\n"
    "          WHERE EXISTS (SELECT 1 FROM squirrel_contexts WHERE id = _id AND version >= _v)\n"
    "          ON CONFLICT (id, version) DO UPDATE SET at = EXCLUDED.at,\n"
    "            reason = EXCLUDED.reason, doc = EXCLUDED.doc;\n"
    "        GET DIAGNOSTICS n = ROW_COUNT;\n"
    "        IF n = 1 AND (o->>'K')::int > 0 THEN\n"
    "          DELETE FROM squirrel_recovery WHERE id = _id AND version NOT IN\n"
    "            (SELECT version FROM squirrel_recovery WHERE id = _id\n"
    "             ORDER BY version DESC LIMIT (o->>'K')::int);\n"
    "        END IF;\n"
    "        _v := 0;\n"
    "      ELSE\n"
    "        n := 0;\n"
    "      END CASE;\n"
    "    END IF;\n"
    "    IF n = 0 THEN\n"
    "      stale := stale || i; bad := bad || _id;\n"
    "    ELSE\n"
    "      PERFORM pg_notify('" PG_CHANNEL "', origin || ' ' || _v || ' ' || _id);\n"
    "    END IF;\n"
    "    i := i + 1;\n"
    "  END LOOP;\n"
    "  RETURN stale;\n"
    "END\n"
    "$fn$;",
    /* 1 -> 2 */
    "CREATE TABLE squirrel_events ("
    "  session text COLLATE \"C\" NOT NULL,"
    "  stream bigint NOT NULL,"
    "  seq bigint NOT NULL,"
    "  at timestamptz NOT NULL DEFAULT now(),"
    "  data text NOT NULL,"
    "  PRIMARY KEY (session, stream, seq));"
    "CREATE INDEX squirrel_events_at ON squirrel_events (at);",
};

#endif
