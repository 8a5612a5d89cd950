/* The command system (sq_server/cmd.h): the order of the stages and the
 * cleanup on success, failure, invalid arguments, refusal, timeout and
 * cancellation; the concurrency limit's exact high-water mark under a
 * storm; the history ring and its redaction; commands as MCP tools
 * (list_changed on register and remove, validation errors naming path
 * and rule, the built-ins help, history and status). */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcptest.h"
#include "sq_server/cmd.h"

/* --------------------------------------------------- stage order */

/* The stages one call went through, in order (calls are made one at a
 * time where the log is read). */
static char stage_log[256];
static sq_mutex log_lock;
static atomic_int exec_entered;

static void note(const char *what)
{
    sq_mutex_lock(&log_lock);
    size_t n = strlen(stage_log);
    snprintf(stage_log + n, sizeof stage_log - n, "%s%s", n ? " " : "", what);
    sq_mutex_unlock(&log_lock);
}

static bool log_has(const char *what)
{
    sq_mutex_lock(&log_lock);
    bool has = strstr(stage_log, what) != NULL;
    sq_mutex_unlock(&log_lock);
    return has;
}

static const char *mode_of(sq_cmd_call *c)
{
    const char *m = json_string_value(json_object_get(sq_cmd_args(c), "mode"));
    return m ? m : "?";
}

static int st_pre(sq_cmd_call *c, void *data)
{
    (void)data;
    note("pre");
    if (strcmp(mode_of(c), "refuse") == 0)
        return sq_cmd_refuse(c, "not today");
    return 0;
}

static int st_exec(sq_cmd_call *c, json_t *args, void *data, json_t **result)
{
    (void)data;
    const char *mode = json_string_value(json_object_get(args, "mode"));
    atomic_fetch_add(&exec_entered, 1);
    if (strcmp(mode, "sleep") == 0) {
        int rc = sq_sleep(60 * SQ_SEC);
        note(rc == -ECANCELED ? "exec:cancelled" : "exec:slept");
        *result = sq_mcp_text_result("slept");
        return SQ_MCP_OK;
    }
    note("exec");
    *result = strcmp(mode, "fail") == 0 ? sq_mcp_tool_error("it failed")
                                        : sq_mcp_text_result("done");
    (void)c;
    return SQ_MCP_OK;
}

static int st_post(sq_cmd_call *c, void *data)
{
    (void)data;
    char w[64];
    snprintf(w, sizeof w, "post:%s", sq_cmd_outcome_name(sq_cmd_outcome(c)));
    note(w);
    return 0;
}

static void st_cleanup(sq_cmd_call *c, void *data)
{
    (void)data;
    char w[64];
    snprintf(w, sizeof w, "cleanup:%s", sq_cmd_outcome_name(sq_cmd_outcome(c)));
    note(w);
}

static void add_stages(sq_cmds *sys)
{
    json_t *in = json_pack("{s:s,s:{s:{s:[s,s,s,s,s]}},s:[s]}", "type", "object",
                           "properties", "mode", "enum", "ok", "fail", "refuse",
                           "sleep", "other", "required", "mode");
    sq_cmd_def d = {.name = "t.stages", .description = "stages", .input_schema = in,
                    .execute = st_exec, .pre = st_pre, .post = st_post,
                    .cleanup = st_cleanup, .timeout = 200 * SQ_MSEC};
    char err[200] = "";
    CHECK_EQ(sq_cmd_add(sys, &d, err, sizeof err), 0);
    json_decref(in);
}

/* Calls t.stages with args and checks the outcome and the stage log. */
static void expect_stages(sq_cmds *sys, const char *args, int outcome, const char *log)
{
    stage_log[0] = '\0';
    json_t *a = json_loads(args, 0, NULL), *r = NULL;
    int rc = sq_cmd_invoke(sys, "t.stages", a, SQ_FOREVER, &r);
    CHECK_EQ(rc, outcome);
    CHECK_STR(stage_log, log);
    CHECK(r != NULL);
    CHECK_EQ(json_is_true(json_object_get(r, "isError")), outcome != SQ_CMD_OK);
    json_decref(a);
    json_decref(r);
}

typedef struct bg_call {
    sq_cmds *sys;
    const char *name;
    const char *args;
    int rc;
    json_t *result;
} bg_call;

static void *bg_main(void *arg)
{
    bg_call *b = arg;
    json_t *a = json_loads(b->args, 0, NULL);
    b->rc = sq_cmd_invoke(b->sys, b->name, a, SQ_FOREVER, &b->result);
    json_decref(a);
    return NULL;
}

/* t.stages's calls counted as cancelled so far. */
static json_int_t cancelled_calls(sq_cmds *sys)
{
    json_t *st = sq_cmd_stats(sys, "t.stages");
    json_int_t n = json_integer_value(
        json_object_get(json_object_get(st, "outcomes"), "cancelled"));
    json_decref(st);
    return n;
}

MT_TEST(cmd_stage_order)
{
    sq_mutex_init_named(&log_lock, "test.log");
    mt_server *m = mt_start();
    sq_cmds *sys = sq_srv_cmds(m->srv);
    add_stages(sys);
    expect_stages(sys, "{\"mode\":\"ok\"}", SQ_CMD_OK, "pre exec post:ok cleanup:ok");
    expect_stages(sys, "{\"mode\":\"fail\"}", SQ_CMD_ERROR,
                  "pre exec post:error cleanup:error");
    /* Validation comes after the pre-hooks and before execute. */
    expect_stages(sys, "{\"mode\":\"nope\"}", SQ_CMD_INVALID, "pre cleanup:invalid");
    expect_stages(sys, "{\"mode\":\"refuse\"}", SQ_CMD_REFUSED, "pre cleanup:refused");
    /* The deadline (200 ms) reaches execute's wait; no post-hook after. */
    expect_stages(sys, "{\"mode\":\"sleep\"}", SQ_CMD_TIMEOUT,
                  "pre exec:cancelled cleanup:timeout");

    /* Cancellation of the caller reaches the command's wait. */
    for (int round = 0; round < 20; round++) {
        stage_log[0] = '\0';
        atomic_store(&exec_entered, 0);
        bg_call b = {.sys = sys, .name = "t.stages", .args = "{\"mode\":\"sleep\"}"};
        sq_task t;
        CHECK_EQ(sq_spawn(&t, bg_main, &b, NULL), 0);
        WAIT_UNTIL(atomic_load(&exec_entered) == 1);
        sq_abort(t);
        sq_join(t, NULL);
        CHECK_EQ(b.rc, -ECANCELED);
        CHECK_STR(stage_log, "pre exec:cancelled cleanup:cancelled");
        json_decref(b.result);
    }

    /* A client's notifications/cancelled reaches the command's wait too,
     * and its cleanup runs. */
    mt_conn *c = mt_tcp(m);
    mt_init(c, "2025-11-25");
    stage_log[0] = '\0';
    atomic_store(&exec_entered, 0);
    mt_line(c, "{\"jsonrpc\":\"2.0\",\"id\":\"s\",\"method\":\"tools/call\",\"params\":"
               "{\"name\":\"t.stages\",\"arguments\":{\"mode\":\"sleep\"}}}");
    WAIT_UNTIL(atomic_load(&exec_entered) == 1);
    mt_line(c, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":"
               "{\"requestId\":\"s\"}}");
    WAIT_UNTIL(log_has("cleanup:"));
    CHECK_STR(stage_log, "pre exec:cancelled cleanup:cancelled");
    mt_close(c);

    /* The figures and the history saw every call (a call's outcome is
     * counted after its cleanup ran: wait for the last one). */
    WAIT_UNTIL(cancelled_calls(sys) == 21);
    json_t *st = sq_cmd_stats(sys, "t.stages");
    json_t *outs = json_object_get(st, "outcomes");
    CHECK_EQ(json_integer_value(json_object_get(outs, "ok")), 1);
    CHECK_EQ(json_integer_value(json_object_get(outs, "invalid")), 1);
    CHECK_EQ(json_integer_value(json_object_get(outs, "timeout")), 1);
    CHECK_EQ(json_integer_value(json_object_get(outs, "cancelled")), 21);
    json_decref(st);
    json_t *h = sq_cmd_history(sys, "t.stages", SQ_CMD_INVALID, 0);
    CHECK_EQ(json_array_size(h), 1);
    json_decref(h);
    CHECK_EQ(sq_cmd_remove(sys, "t.stages", sq_now() + SQ_SEC), 0);
    mt_stop(m);
    sq_mutex_destroy(&log_lock);
}

/* ------------------------------------------------ the concurrency limit */

static atomic_int running, most;

static int limited(sq_cmd_call *c, json_t *args, void *data, json_t **result)
{
    (void)c;
    (void)args;
    (void)data;
    int now = atomic_fetch_add(&running, 1) + 1;
    int hw = atomic_load(&most);
    while (now > hw && !atomic_compare_exchange_weak(&most, &hw, now))
        ;
    sq_yield();
    sq_sleep(100 * SQ_USEC);
    atomic_fetch_sub(&running, 1);
    *result = sq_mcp_text_result("ok");
    return SQ_MCP_OK;
}

enum { STORM_TASKS = 64, STORM_CALLS = 20, LIMIT = 3 };

static void *storm_main(void *arg)
{
    sq_cmds *sys = arg;
    json_t *a = json_object();
    for (int i = 0; i < STORM_CALLS; i++) {
        json_t *r = NULL;
        CHECK_EQ(sq_cmd_invoke(sys, "t.limited", a, SQ_FOREVER, &r), SQ_CMD_OK);
        json_decref(r);
    }
    json_decref(a);
    return NULL;
}

static sq_sem hold;

static int holding(sq_cmd_call *c, json_t *args, void *data, json_t **result)
{
    (void)c;
    (void)args;
    (void)data;
    atomic_fetch_add(&exec_entered, 1);
    sq_sem_acquire(&hold, 1);
    *result = sq_mcp_text_result("held");
    return SQ_MCP_OK;
}

MT_TEST(cmd_concurrency_limit)
{
    mt_server *m = mt_start();
    sq_cmds *sys = sq_srv_cmds(m->srv);
    json_t *in = json_pack("{s:s}", "type", "object");
    sq_cmd_def d = {.name = "t.limited", .description = "limited", .input_schema = in,
                    .execute = limited, .max_concurrent = LIMIT};
    CHECK_EQ(sq_cmd_add(sys, &d, NULL, 0), 0);
    sq_task t[STORM_TASKS];
    for (int i = 0; i < STORM_TASKS; i++)
        CHECK_EQ(sq_spawn(&t[i], storm_main, sys, NULL), 0);
    for (int i = 0; i < STORM_TASKS; i++)
        sq_join(t[i], NULL);
    /* Exactly the limit: never more, and reached (64 callers for 3). */
    CHECK_EQ(atomic_load(&most), LIMIT);
    json_t *st = sq_cmd_stats(sys, "t.limited");
    CHECK_EQ(json_integer_value(json_object_get(st, "high_water")), LIMIT);
    CHECK_EQ(json_integer_value(json_object_get(st, "calls")), STORM_TASKS * STORM_CALLS);
    CHECK_EQ(json_integer_value(json_object_get(json_object_get(st, "outcomes"), "ok")),
             STORM_TASKS * STORM_CALLS);
    json_decref(st);

    /* Without waiting: over the limit is busy at once. */
    sq_sem_init(&hold, 0);
    atomic_store(&exec_entered, 0);
    sq_cmd_def nw = {.name = "t.nowait", .description = "no wait", .input_schema = in,
                     .execute = holding, .max_concurrent = 2, .flags = SQ_CMD_NO_WAIT};
    CHECK_EQ(sq_cmd_add(sys, &nw, NULL, 0), 0);
    bg_call b[2];
    sq_task bt[2];
    for (int i = 0; i < 2; i++) {
        b[i] = (bg_call){.sys = sys, .name = "t.nowait", .args = "{}"};
        CHECK_EQ(sq_spawn(&bt[i], bg_main, &b[i], NULL), 0);
    }
    WAIT_UNTIL(atomic_load(&exec_entered) == 2);
    json_t *r = NULL;
    CHECK_EQ(sq_cmd_invoke(sys, "t.nowait", in, SQ_FOREVER, &r), SQ_CMD_BUSY);
    CHECK_STR(json_string_value(json_object_get(json_object_get(r, "structuredContent"),
                                                "error")), "busy");
    json_decref(r);
    sq_sem_release(&hold, 2);
    for (int i = 0; i < 2; i++) {
        sq_join(bt[i], NULL);
        CHECK_EQ(b[i].rc, SQ_CMD_OK);
        json_decref(b[i].result);
    }
    json_decref(in);
    mt_stop(m);
    sq_sem_destroy(&hold);
}

/* ------------------------------------------------------------ history */

static int echo_exec(sq_cmd_call *c, json_t *args, void *data, json_t **result)
{
    (void)c;
    (void)data;
    char *t = json_dumps(args, JSON_COMPACT);
    *result = sq_mcp_text_result(t);
    free(t);
    return SQ_MCP_OK;
}

MT_TEST(cmd_history)
{
    mt_server *m = mt_start();
    sq_cmds *sys = sq_srv_cmds(m->srv);
    json_t *in = json_pack("{s:s}", "type", "object");
    static const char *const redact[] = {"password", "/auth/token", NULL};
    sq_cmd_def d = {.name = "t.login", .description = "login", .input_schema = in,
                    .execute = echo_exec, .redact = redact};
    CHECK_EQ(sq_cmd_add(sys, &d, NULL, 0), 0);
    json_t *a = json_pack("{s:s,s:s,s:{s:s,s:s}}", "user", "ann", "password", "hunter2",
                          "auth", "token", "t0k", "kind", "bearer");
    json_t *r = NULL;
    CHECK_EQ(sq_cmd_invoke(sys, "t.login", a, SQ_FOREVER, &r), SQ_CMD_OK);
    json_decref(r);
    json_decref(a);
    json_t *h = sq_cmd_history(sys, "t.login", -1, 0);
    CHECK_EQ(json_array_size(h), 1);
    json_t *args = json_object_get(json_array_get(h, 0), "arguments");
    char *text = json_dumps(args, JSON_COMPACT | JSON_SORT_KEYS);
    CHECK_STR(text, "{\"auth\":{\"kind\":\"bearer\",\"token\":\"[redacted]\"},"
                    "\"password\":\"[redacted]\",\"user\":\"ann\"}");
    free(text);
    json_decref(h);

    /* The ring keeps the last 1,000 calls, newest first. */
    sq_cmd_def e = {.name = "t.echo", .description = "echo", .input_schema = in,
                    .execute = echo_exec};
    CHECK_EQ(sq_cmd_add(sys, &e, NULL, 0), 0);
    for (int i = 0; i < 1010; i++) {
        json_t *x = json_pack("{s:i}", "i", i);
        CHECK_EQ(sq_cmd_invoke(sys, "t.echo", x, SQ_FOREVER, &r), SQ_CMD_OK);
        json_decref(r);
        json_decref(x);
    }
    h = sq_cmd_history(sys, NULL, -1, 0);
    CHECK_EQ(json_array_size(h), 1000);
    CHECK_EQ(json_integer_value(json_object_get(json_object_get(json_array_get(h, 0),
                                                                "arguments"), "i")), 1009);
    CHECK_EQ(json_integer_value(json_object_get(json_object_get(json_array_get(h, 999),
                                                                "arguments"), "i")), 10);
    json_decref(h);
    json_decref(in);
    mt_stop(m);
}

/* ----------------------------------------------------------- over MCP */

/* The next line on c that is the response with id `id` (notifications
 * before it are checked for list_changed, counted in *changed). */
static char *answer(mt_conn *c, const char *id, int *changed)
{
    for (;;) {
        char *l = mt_next(c);
        if (!l)
            return NULL;
        if (strstr(l, "notifications/tools/list_changed")) {
            (*changed)++;
            free(l);
            continue;
        }
        char *raw = mt_raw_id(l);
        bool it = raw && strcmp(raw, id) == 0;
        free(raw);
        if (it)
            return l;
        free(l);
    }
}

MT_TEST(cmd_as_tools)
{
    mt_server *m = mt_start();
    sq_cmds *sys = sq_srv_cmds(m->srv);
    mt_conn *c = mt_tcp(m);
    mt_init(c, "2025-11-25");
    int changed = 0;
    /* Once this is answered, notifications/initialized has been read. */
    mt_line(c, "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"ping\"}");
    free(answer(c, "0", &changed));

    json_t *in = json_pack("{s:s,s:{s:{s:s,s:i}},s:[s],s:b}", "type", "object",
                           "properties", "n", "type", "integer", "maximum", 10,
                           "required", "n", "additionalProperties", 0);
    sq_cmd_def d = {.name = "t.count", .description = "counts", .input_schema = in,
                    .execute = echo_exec};
    CHECK_EQ(sq_cmd_add(sys, &d, NULL, 0), 0);
    /* list_changed comes on the session's stream. */
    int64_t until = sq_now() + MT_WAIT;
    while (changed == 0 && sq_now() < until) {
        mt_line(c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}");
        free(answer(c, "1", &changed));
    }
    CHECK_EQ(changed, 1);

    mt_line(c, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":"
               "{\"name\":\"t.count\",\"arguments\":{\"n\":11}}}");
    char *l = answer(c, "2", &changed);
    CHECK_JSON(l, "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"content\":[{\"type\":"
                  "\"text\",\"text\":\"Invalid arguments: /n: must be at most 10 "
                  "(maximum)\"}],\"isError\":true,\"structuredContent\":{\"path\":\"/n\","
                  "\"rule\":\"maximum\",\"message\":\"must be at most 10\",\"error\":"
                  "\"invalid_arguments\"}}}");
    free(l);
    mt_line(c, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\",\"params\":"
               "{\"name\":\"t.count\",\"arguments\":{}}}");
    l = answer(c, "3", &changed);
    CHECK(l && strstr(l, "\"rule\":\"required\"") && strstr(l, "\"path\":\"/n\""));
    free(l);
    mt_line(c, "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"tools/call\",\"params\":"
               "{\"name\":\"t.count\",\"arguments\":{\"n\":7}}}");
    l = answer(c, "4", &changed);
    CHECK_JSON(l, "{\"jsonrpc\":\"2.0\",\"id\":4,\"result\":{\"content\":[{\"type\":"
                  "\"text\",\"text\":\"{\\\"n\\\":7}\"}]}}");
    free(l);

    /* The built-ins. */
    mt_line(c, "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"tools/call\",\"params\":"
               "{\"name\":\"help\",\"arguments\":{\"command\":\"t.count\"}}}");
    l = answer(c, "5", &changed);
    CHECK(l && strstr(l, "\"name\":\"t.count\"") && strstr(l, "\"inputSchema\""));
    free(l);
    mt_line(c, "{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"tools/call\",\"params\":"
               "{\"name\":\"history\",\"arguments\":{\"command\":\"t.count\"}}}");
    l = answer(c, "6", &changed);
    json_t *j = l ? json_loads(l, 0, NULL) : NULL;
    json_t *ent = json_object_get(json_object_get(json_object_get(j, "result"),
                                                  "structuredContent"), "entries");
    CHECK_EQ(json_array_size(ent), 3);
    CHECK_STR(json_string_value(json_object_get(json_array_get(ent, 0), "outcome")), "ok");
    CHECK_STR(json_string_value(json_object_get(json_array_get(ent, 1), "outcome")),
              "invalid");
    json_decref(j);
    free(l);
    mt_line(c, "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\",\"params\":"
               "{\"name\":\"status\",\"arguments\":{}}}");
    l = answer(c, "7", &changed);
    CHECK(l && strstr(l, "\"t.count\"") && strstr(l, "\"high_water\""));
    free(l);
    mt_line(c, "{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"resources/read\",\"params\":"
               "{\"uri\":\"squirrel://commands/history\"}}");
    l = answer(c, "8", &changed);
    CHECK(l && strstr(l, "t.count"));
    free(l);

    /* Removing it: list_changed again, and the tool is gone. */
    CHECK_EQ(sq_cmd_remove(sys, "t.count", sq_now() + SQ_SEC), 0);
    int before = changed;
    until = sq_now() + MT_WAIT;
    while (changed == before && sq_now() < until) {
        mt_line(c, "{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"ping\"}");
        free(answer(c, "9", &changed));
    }
    mt_line(c, "{\"jsonrpc\":\"2.0\",\"id\":10,\"method\":\"tools/call\",\"params\":"
               "{\"name\":\"t.count\",\"arguments\":{\"n\":1}}}");
    l = answer(c, "10", &changed);
    CHECK(l && strstr(l, "\"error\"") && strstr(l, "t.count"));
    free(l);
    json_decref(in);
    mt_close(c);
    mt_stop(m);
}
