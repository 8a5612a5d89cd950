/* Crash safety of the context store (docs/contexts.md, "Durability"):
 * squirreld runs as a child process on a SQLite file and is killed with
 * SIGKILL in the middle of a storm of updates, then started again on the
 * same file, over ten rounds.  After each restart every update that was
 * acknowledged is there, nothing is half-applied (each update changes two
 * members together), and versions have no gap (the version is always one
 * more than the number of updates applied).  And a file squirreld must not
 * use (corrupt, or of a newer schema) makes it exit with a clear error,
 * leaving the file alone. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mcptest.h"

enum {
    ROUNDS = 10,
    CONTEXTS = 8,
    PER_ROUND = 200,
    IN_FLIGHT = 32,
    SEQS = ROUNDS * PER_ROUND + 1,
};

typedef struct crash {
    char dir[64], spec[128];
    bool sent[SEQS], acked[SEQS];
    int next_seq;
} crash;

static mt_child *start(crash *t)
{
    const char *args[] = {"--stdio", "--store", t->spec, "--log-level", "error", NULL};
    mt_child *c = mt_spawn(args);
    mt_init(c->io, "2025-11-25");
    return c;
}

/* The next response on c (notifications skipped), parsed; NULL at the
 * end of the stream. */
static json_t *next_response(mt_conn *c)
{
    for (;;) {
        char *line = mt_next(c);
        if (!line)
            return NULL;
        json_t *j = json_loads(line, 0, NULL);
        if (!j)
            sq_test_fail(__FILE__, __LINE__, line);
        free(line);
        if (j && json_object_get(j, "id"))
            return j;
        json_decref(j);
    }
}

/* Every context as the restarted server has it: each acknowledged update
 * present, nothing else but updates that were sent, log and last agreeing,
 * the version one more than the updates applied. */
static void verify(crash *t, mt_child *c)
{
    for (int i = 0; i < CONTEXTS; i++) {
        mt_line(c->io, "{\"jsonrpc\":\"2.0\",\"id\":\"get\",\"method\":\"tools/call\",\"params\":"
                       "{\"name\":\"context_get\",\"arguments\":{\"id\":\"crash-%d\"}}}", i);
        json_t *resp = next_response(c->io);
        json_t *sc = json_object_get(json_object_get(resp, "result"), "structuredContent");
        json_t *doc = json_object_get(sc, "document");
        json_t *log = json_object_get(doc, "log");
        CHECK(json_is_array(log));
        size_t n = json_array_size(log);
        CHECK_EQ(json_integer_value(json_object_get(sc, "version")), (long long)n + 1);
        json_int_t last = n ? json_integer_value(json_array_get(log, n - 1)) : 0;
        CHECK_EQ(json_integer_value(json_object_get(doc, "last")), last);
        static bool present[SEQS];
        memset(present, 0, sizeof present);
        size_t k;
        json_t *v;
        json_array_foreach(log, k, v) {
            json_int_t s = json_integer_value(v);
            CHECK(s > 0 && s < t->next_seq && s % CONTEXTS == i);
            if (s > 0 && s < t->next_seq) {
                CHECK(t->sent[s]);
                CHECK(!present[s]);
                present[s] = true;
            }
        }
        for (int s = i; s < t->next_seq; s += CONTEXTS)
            if (s > 0 && t->acked[s] && !present[s]) {
                char m[64];
                snprintf(m, sizeof m, "acknowledged update %d of crash-%d lost", s, i);
                sq_test_fail(__FILE__, __LINE__, m);
            }
        json_decref(resp);
    }
}

/* ---------------------------------------------------------- the storm */

typedef struct storm {
    crash *t;
    mt_child *c;
    sq_sem window;
    atomic_int stop;
    int first, kill_after;
} storm;

/* Sends updates first..first+PER_ROUND-1, at most IN_FLIGHT unanswered;
 * stops when the child is gone. */
static void *sender(void *arg)
{
    storm *s = arg;
    for (int seq = s->first; seq < s->first + PER_ROUND; seq++) {
        if (sq_sem_acquire(&s->window, 1) != 0 || atomic_load(&s->stop))
            break;
        char line[320];
        int n = snprintf(line, sizeof line,
                         "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"tools/call\",\"params\":{"
                         "\"name\":\"context_update\",\"arguments\":{\"id\":\"crash-%d\","
                         "\"patch_type\":\"json\",\"patch\":["
                         "{\"op\":\"add\",\"path\":\"/log/-\",\"value\":%d},"
                         "{\"op\":\"replace\",\"path\":\"/last\",\"value\":%d}]}}}\n",
                         seq, seq % CONTEXTS, seq, seq);
        s->t->sent[seq] = true;
        /* Once the child is killed a write may fail (EPIPE): not an error. */
        if (sq_io_write(s->c->io->wr, line, (size_t)n) != n)
            break;
    }
    return NULL;
}

static void storm_round(crash *t, mt_child *c, uint32_t *rnd)
{
    storm s = {.t = t, .c = c, .first = t->next_seq,
               .kill_after = 20 + (int)(sq_test_rnd(rnd) % (PER_ROUND - 60))};
    sq_sem_init(&s.window, IN_FLIGHT);
    atomic_init(&s.stop, 0);
    sq_task st;
    CHECK_EQ(sq_spawn(&st, sender, &s, NULL), 0);
    int answers = 0;
    bool killed = false;
    json_t *resp;
    /* Every answer that comes is an acknowledgement, those written just
     * before the kill included. */
    while ((resp = next_response(c->io)) != NULL) {
        json_t *id = json_object_get(resp, "id");
        json_t *result = json_object_get(resp, "result");
        CHECK(json_is_integer(id));
        CHECK(result && !json_is_true(json_object_get(result, "isError")));
        int seq = (int)json_integer_value(id);
        if (result && seq >= s.first && seq < s.first + PER_ROUND)
            t->acked[seq] = true;
        json_decref(resp);
        answers++;
        if (!killed && answers == s.kill_after) {
            CHECK_EQ(kill(c->pid, SIGKILL), 0);
            killed = true;
        }
        sq_sem_release(&s.window, 1);
    }
    CHECK(killed);
    atomic_store(&s.stop, 1);
    sq_sem_release(&s.window, IN_FLIGHT);
    CHECK_EQ(sq_join(st, NULL), 0);
    sq_sem_destroy(&s.window);
    CHECK_EQ(mt_child_wait(c, sq_now() + MT_WAIT), 128 + SIGKILL);
    t->next_seq += PER_ROUND;
}

MT_TEST(killed_server_keeps_every_acknowledged_update)
{
    static crash t;
    memset(&t, 0, sizeof t);
    snprintf(t.dir, sizeof t.dir, "/tmp/ctx_crash-%d-XXXXXX", (int)getpid());
    CHECK(mkdtemp(t.dir) != NULL);
    snprintf(t.spec, sizeof t.spec, "sqlite:%s/ctx.db", t.dir);
    t.next_seq = 1;

    mt_child *c = start(&t);
    for (int i = 0; i < CONTEXTS; i++) {
        mt_line(c->io, "{\"jsonrpc\":\"2.0\",\"id\":\"c\",\"method\":\"tools/call\",\"params\":"
                       "{\"name\":\"context_create\",\"arguments\":{\"id\":\"crash-%d\","
                       "\"document\":{\"log\":[],\"last\":0}}}}", i);
        json_t *resp = next_response(c->io);
        CHECK(json_object_get(resp, "result") != NULL);
        json_decref(resp);
    }
    uint32_t rnd = 0x5eed1234;
    int acked = 0;
    for (int r = 0; r < ROUNDS; r++) {
        storm_round(&t, c, &rnd);
        mt_child_free(c);
        c = start(&t);
        verify(&t, c);
    }
    for (int s = 1; s < t.next_seq; s++)
        acked += t.acked[s];
    /* The kills came after at least 20 answers each round. */
    CHECK(acked >= ROUNDS * 20);
    /* A graceful end after all that. */
    mt_shut(c->io);
    while (next_response(c->io) != NULL)
        ;
    CHECK_EQ(mt_child_wait(c, sq_now() + MT_WAIT), 0);
    mt_child_free(c);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", t.dir);
    CHECK_EQ(system(cmd), 0);
}

/* ---------------------------------------------- files it must refuse */

/* squirreld on `spec` exits non-zero, saying `what` on stderr. */
static void refused(const char *spec, const char *what)
{
    const char *args[] = {"--stdio", "--store", spec, NULL};
    mt_child *c = mt_spawn(args);
    bool said = false;
    char *line;
    while ((line = mt_next(c->err)) != NULL) {
        if (strstr(line, what))
            said = true;
        free(line);
    }
    if (!said)
        sq_test_fail(__FILE__, __LINE__, what);
    int rc = mt_child_wait(c, sq_now() + MT_WAIT);
    CHECK_EQ(rc, 1);
    mt_child_free(c);
}

MT_TEST(corrupt_or_newer_store_stops_squirreld)
{
    char dir[64], path[128], spec[140];
    snprintf(dir, sizeof dir, "/tmp/ctx_crash-%d-XXXXXX", (int)getpid());
    CHECK(mkdtemp(dir) != NULL);

    snprintf(path, sizeof path, "%s/garbage.db", dir);
    FILE *f = fopen(path, "wb");
    for (int i = 0; i < 512; i++)
        fputs("garbage, not a database ", f);
    fclose(f);
    snprintf(spec, sizeof spec, "sqlite:%s", path);
    refused(spec, path);
    f = fopen(path, "rb");
    char head[32] = "";
    CHECK(fread(head, 1, 24, f) == 24);
    fclose(f);
    CHECK(memcmp(head, "garbage, not a database ", 24) == 0);

    /* A store of this version, then marked as of a newer schema (the
     * version is PRAGMA user_version, at offset 60 of the header). */
    snprintf(path, sizeof path, "%s/newer.db", dir);
    snprintf(spec, sizeof spec, "sqlite:%s", path);
    const char *args[] = {"--stdio", "--store", spec, NULL};
    mt_child *c = mt_spawn(args);
    mt_init(c->io, "2025-11-25");
    mt_line(c->io, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":"
                   "{\"name\":\"context_create\",\"arguments\":{\"id\":\"x\",\"document\":1}}}");
    json_t *resp = next_response(c->io);
    json_decref(resp);
    mt_shut(c->io);
    CHECK_EQ(mt_child_wait(c, sq_now() + MT_WAIT), 0);
    mt_child_free(c);
    f = fopen(path, "r+b");
    CHECK(f != NULL);
    unsigned char v[4] = {0, 0, 0, 42};
    CHECK_EQ(fseek(f, 60, SEEK_SET), 0);
    CHECK_EQ(fwrite(v, 1, 4, f), 4);
    fclose(f);
    refused(spec, "newer");

    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK_EQ(system(cmd), 0);
}
