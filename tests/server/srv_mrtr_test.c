/* A multi-round-trip request (2026-07-28: input_required with a signed
 * requestState) is stateless on the server: any instance that shares the
 * HMAC key (`state_key` in the configuration file) continues what another
 * started.  Two squirreld processes on 127.0.0.1 with one config file: a
 * two-round tool call started on the first is continued on the second and
 * finished on the first again; a tampered state is refused by both, and
 * a third process with a key of its own refuses even a good one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mcptest.h"

#define KEY "8f1c2a9e4b7d60315e2f9a8c7b6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d"
#define TOOL "test_input_required_result_multi_round"
#define MODERN_META                                                           \
    "\"_meta\":{\"io.modelcontextprotocol/protocolVersion\":\"2026-07-28\","  \
    "\"io.modelcontextprotocol/clientCapabilities\":{\"elicitation\":{}}}"

/* A config file holding `json` (a path to unlink, malloc'ed). */
static char *config_file(const char *json)
{
    char *path = strdup("/tmp/sq-mrtr-XXXXXX");
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    size_t n = strlen(json);
    CHECK_EQ(write(fd, json, n), (ssize_t)n);
    close(fd);
    return path;
}

static mt_child *start(const char *config, int *port)
{
    const char *const args[] = {"--http", "127.0.0.1:0", "--fixtures", "conformance",
                                "--config", config, NULL};
    mt_child *c = mt_spawn(args);
    *port = mt_child_port(c, "http");
    if (*port <= 0)
        sq_test_fail(__FILE__, __LINE__, "no \"listening on http://127.0.0.1:PORT\" line");
    return c;
}

/* One tools/call round of TOOL on `port`: `extra` is more members of
 * params (inputResponses, requestState) or "".  The answer's JSON. */
static json_t *round_on(int port, const char *extra, int *status)
{
    char *body = mt_fmt("{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\","
                        "\"params\":{\"name\":\"" TOOL "\",\"arguments\":{}%s%s,"
                        MODERN_META "}}",
                        *extra ? "," : "", extra);
    char *hdr = mt_modern_headers("tools/call", TOOL);
    char *got = mt_post_at(port, hdr, body, status);
    json_t *j = got ? json_loads(got, 0, NULL) : NULL;
    if (!j)
        sq_test_fail(__FILE__, __LINE__, got ? got : "(no answer)");
    free(got);
    free(hdr);
    free(body);
    return j;
}

/* The requestState of an input_required result asking for `key`
 * (malloc'ed), or NULL (the test fails). */
static char *asked(json_t *answer, const char *key)
{
    json_t *res = json_object_get(answer, "result");
    CHECK_STR(json_string_value(json_object_get(res, "resultType")), "input_required");
    CHECK(json_object_get(json_object_get(res, "inputRequests"), key) != NULL);
    const char *st = json_string_value(json_object_get(res, "requestState"));
    CHECK(st != NULL);
    return st ? strdup(st) : NULL;
}

static char *answers(const char *key, const char *field, const char *value,
                     const char *state)
{
    return mt_fmt("\"inputResponses\":{\"%s\":{\"action\":\"accept\",\"content\":"
                  "{\"%s\":\"%s\"}}},\"requestState\":\"%s\"",
                  key, field, value, state);
}

/* A refusal: the JSON-RPC error -32602 (a state that fails any check
 * gets one opaque error), HTTP 200. */
static void refused(int port, const char *extra)
{
    int status = 0;
    json_t *j = round_on(port, extra, &status);
    CHECK_EQ(status, 200);
    json_t *err = json_object_get(j, "error");
    CHECK_EQ(json_integer_value(json_object_get(err, "code")), -32602);
    CHECK(json_object_get(j, "result") == NULL);
    json_decref(j);
}

/* s with the character at i changed (to another of the base64url
 * alphabet, so only the signature check can tell). */
static char *flip(const char *s, size_t i)
{
    char *t = strdup(s);
    t[i] = t[i] == 'A' ? 'B' : 'A';
    return t;
}

MT_TEST(a_request_started_on_one_instance_finishes_on_another)
{
    char *config = config_file("{\"state_key\":\"" KEY "\"}");
    int pa, pb;
    mt_child *a = start(config, &pa), *b = start(config, &pb);
    CHECK(pa != pb);

    /* Round 1 on A: it asks for a name. */
    int status = 0;
    json_t *j = round_on(pa, "", &status);
    CHECK_EQ(status, 200);
    char *s1 = asked(j, "user_name");
    json_decref(j);

    /* Round 2 on B, with A's state: B asks for the colour. */
    char *x = answers("user_name", "name", "Ada", s1);
    j = round_on(pb, x, &status);
    free(x);
    CHECK_EQ(status, 200);
    char *s2 = asked(j, "favorite_color");
    json_decref(j);

    /* Round 3 on A, with B's state: done, with what each round gave. */
    x = answers("favorite_color", "color", "green", s2);
    j = round_on(pa, x, &status);
    free(x);
    CHECK_EQ(status, 200);
    json_t *res = json_object_get(j, "result");
    CHECK_STR(json_string_value(json_object_get(res, "resultType")), "complete");
    const char *text = json_string_value(
        json_object_get(json_array_get(json_object_get(res, "content"), 0), "text"));
    CHECK_STR(text, "Multi-round complete for Ada, who likes green");
    json_decref(j);

    /* Tampered: a byte of the payload, of the signature, the signature
     * cut, the version changed: both instances refuse each. */
    size_t n = strlen(s2);
    const char *dot = strrchr(s2, '.');
    char *bad[] = {flip(s2, 5), flip(s2, n - 3), strndup(s2, (size_t)(dot - s2)),
                   mt_fmt("v2%s", s2 + 2)};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        x = answers("favorite_color", "color", "green", bad[i]);
        refused(pa, x);
        refused(pb, x);
        free(x);
        free(bad[i]);
    }
    /* A good state of another round is no state of this one's answers:
     * round 1's state with round 2's answer asks again, it is not
     * confused with round 2 (the state, not the answer, says where the
     * request stands). */
    x = answers("favorite_color", "color", "green", s1);
    j = round_on(pb, x, &status);
    free(x);
    char *again = asked(j, "user_name");
    free(again);
    json_decref(j);

    /* A third instance with a key of its own refuses a good state. */
    char *other = config_file("{\"state_key\":\"" "00112233445566778899aabbccddeeff"
                              "00112233445566778899aabbccddeeff" "\"}");
    int pc;
    mt_child *c = start(other, &pc);
    x = answers("favorite_color", "color", "green", s2);
    refused(pc, x);
    /* ... which the instances that share the key still accept. */
    j = round_on(pb, x, &status);
    CHECK_STR(json_string_value(json_object_get(json_object_get(j, "result"), "resultType")),
              "complete");
    json_decref(j);
    free(x);

    free(s1);
    free(s2);
    mt_child_free(a);
    mt_child_free(b);
    mt_child_free(c);
    unlink(config);
    unlink(other);
    free(config);
    free(other);
}

/* A state_key that is not 64 hexadecimal digits is refused at start:
 * instances would not share what the operator meant them to. */
MT_TEST(a_bad_state_key_is_refused_at_start)
{
    char *config = config_file("{\"state_key\":\"abc\"}");
    const char *const args[] = {"--http", "127.0.0.1:0", "--config", config, NULL};
    mt_child *c = mt_spawn(args);
    CHECK(mt_child_wait(c, sq_now() + MT_WAIT) != 0);
    bool said = false;
    char *line;
    while ((line = mt_next(c->err))) {
        said |= strstr(line, "state_key") != NULL;
        free(line);
    }
    CHECK(said);
    mt_child_free(c);
    unlink(config);
    free(config);
}
