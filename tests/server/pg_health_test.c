/* squirreld on PostgreSQL loses its database and gets it back
 * (docs/postgres.md, docs/monitoring.md): while the database is down,
 * changes fail fast with store_failed and /health is 503 with the store
 * component failed; once it is back, the instance reconnects by itself,
 * /health is 200 again, and what was acknowledged before is still there. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcptest.h"
#include "pgtest.h"

/* The store component's status in /health, and the HTTP status. */
static char *store_health(mt_server *m, int *status)
{
    char *body = mt_get(m->http_port, "/health", NULL, status);
    json_t *h = json_loads(body ? body : "", 0, NULL);
    free(body);
    char *st = NULL;
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(h, "components"), i, c) {
        if (strcmp(json_string_value(json_object_get(c, "name")), "store") == 0)
            st = strdup(json_string_value(json_object_get(c, "status")));
    }
    json_decref(h);
    return st ? st : strdup("(none)");
}

/* Waits (polling: the writer looks at the database every second) until
 * the store component is `want` and /health answers `http`. */
static bool wait_store(mt_server *m, const char *want, int http)
{
    int64_t until = sq_now() + MT_WAIT;
    while (sq_now() < until) {
        int status;
        char *st = store_health(m, &status);
        bool ok = strcmp(st, want) == 0 && status == http;
        free(st);
        if (ok)
            return true;
        sq_sleep(20 * SQ_MSEC); /* between polls of a condition */
    }
    return false;
}

MT_TEST(health_fails_while_the_database_is_away_and_recovers)
{
    pg_server *pg = pg_start();
    CHECK(pg != NULL);
    if (!pg)
        return;
    sq_srv_config c;
    mt_config(&c);
    free(c.store);
    c.store = strdup(pg->uri);
    mt_server *m = mt_start_with(&c);
    sq_srv_config_free(&c);

    char *a = mt_call_modern(m, "context_create", "{\"id\":\"kept\",\"document\":{\"n\":7}}", NULL);
    CHECK(a && !strstr(a, "\"isError\":true"));
    free(a);
    CHECK(wait_store(m, "healthy", 200));

    pg_halt(pg);
    /* Fails fast, with the store's error, not a hang. */
    int64_t t0 = sq_now();
    a = mt_call_modern(m, "context_create", "{\"id\":\"lost\",\"document\":{}}", NULL);
    CHECK(a && strstr(a, "store_failed"));
    CHECK(sq_now() - t0 < MT_WAIT);
    free(a);
    CHECK(wait_store(m, "failed", 503));

    CHECK(pg_resume(pg));
    CHECK(wait_store(m, "healthy", 200));
    /* Changes are taken again (the reconnect may lag /health by a
     * moment: tried until one goes through), and what was acknowledged
     * before the loss is there. */
    bool made = false;
    for (int64_t until = sq_now() + MT_WAIT; !made && sq_now() < until;) {
        a = mt_call_modern(m, "context_create", "{\"id\":\"after\",\"document\":{\"n\":1}}", NULL);
        made = a && !strstr(a, "\"isError\":true");
        free(a);
        if (!made)
            sq_sleep(20 * SQ_MSEC); /* between tries of a condition */
    }
    CHECK(made);
    a = mt_call_modern(m, "context_get", "{\"id\":\"kept\"}", NULL);
    CHECK(a && strstr(a, "\"n\":7"));
    free(a);
    mt_stop(m);
    pg_stop(pg);
}


