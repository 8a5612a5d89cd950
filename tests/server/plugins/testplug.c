/* The tests' plugin (tests/server/plugin_test.c), built several times
 * with different definitions (tests/CMakeLists.txt):
 *   TP_NAME          the plugin's name; its command <name>.ping answers it
 *   TP_DEPS          its dependencies: "a", "b",  (each followed by a comma)
 *   TP_FAIL_START    start fails (-EIO)
 *   TP_HANG_START_MS start waits this long with cancellation masked (a
 *                    callback that does not notice its abort: abandoned)
 *   TP_SLOW_START    start waits a minute, cancellably (aborted)
 *   TP_ABI           the descriptor claims this ABI version
 *   TP_NO_DESC       no descriptor at all
 *   TP_MISSING_SYMBOL  init calls a function nothing defines
 *   TP_LOCKORDER     commands lo.ab and lo.ba take two locks in opposite
 *                    orders (the checks report the inversion) */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sq_proto/jansson.h"
#include "squirrel/plugin.h"
#include "squirrel/runtime.h"
#include "squirrel/sync.h"

#ifndef TP_DEPS
#define TP_DEPS
#endif

static json_t *text(const char *t)
{
    return json_pack("{s:[{s:s,s:s}]}", "content", "type", "text", "text", t);
}

static int ping(sq_plugin_call *c, json_t *args, void *data, json_t **result)
{
    (void)c;
    (void)args;
    (void)data;
    *result = text(TP_NAME);
    return SQ_PLUGIN_OK;
}

#ifdef TP_LOCKORDER
static sq_mutex lock_a, lock_b;

static int take(sq_mutex *first, sq_mutex *second, json_t **result)
{
    sq_mutex_lock(first);
    sq_mutex_lock(second);
    sq_mutex_unlock(second);
    sq_mutex_unlock(first);
    *result = text("taken");
    return SQ_PLUGIN_OK;
}

static int ab(sq_plugin_call *c, json_t *args, void *data, json_t **result)
{
    (void)c;
    (void)args;
    (void)data;
    return take(&lock_a, &lock_b, result);
}

static int ba(sq_plugin_call *c, json_t *args, void *data, json_t **result)
{
    (void)c;
    (void)args;
    (void)data;
    return take(&lock_b, &lock_a, result);
}
#endif

#ifdef TP_MISSING_SYMBOL
extern int sq_test_no_such_function(void);
#endif

static int init(sq_plugin *p, const sq_plugin_host *h, void **state)
{
    (void)state;
#ifdef TP_MISSING_SYMBOL
    if (sq_test_no_such_function())
        return -EINVAL;
#endif
    json_t *in = json_pack("{s:s}", "type", "object");
    sq_plugin_command cmd = {.size = sizeof cmd, .name = TP_NAME ".ping",
                             .description = "Answers the plugin's name.",
                             .input_schema = in, .execute = ping};
    int rc = h->add_command(p, &cmd);
#ifdef TP_LOCKORDER
    sq_mutex_init_named(&lock_a, "tp.lock_a");
    sq_mutex_init_named(&lock_b, "tp.lock_b");
    sq_plugin_command c1 = {.size = sizeof c1, .name = "lo.ab", .description = "a, b",
                            .input_schema = in, .execute = ab};
    sq_plugin_command c2 = {.size = sizeof c2, .name = "lo.ba", .description = "b, a",
                            .input_schema = in, .execute = ba};
    if (rc == 0)
        rc = h->add_command(p, &c1);
    if (rc == 0)
        rc = h->add_command(p, &c2);
#endif
    json_decref(in);
    return rc;
}

static int start(sq_plugin *p, void *state)
{
    (void)p;
    (void)state;
#ifdef TP_FAIL_START
    return -EIO;
#endif
#ifdef TP_HANG_START_MS
    sq_cancel_mask();
    sq_sleep(TP_HANG_START_MS * SQ_MSEC);
    sq_cancel_unmask();
#endif
#ifdef TP_SLOW_START
    if (sq_sleep(60 * SQ_SEC) == -ECANCELED)
        return -ECANCELED;
#endif
    return 0;
}

#ifndef TP_NO_DESC
static const char *const deps[] = {TP_DEPS NULL};
#ifdef TP_ABI
__attribute__((visibility("default"))) const sq_plugin_desc sq_plugin_descriptor = {
    .abi_version = TP_ABI, .size = sizeof(sq_plugin_desc), .name = TP_NAME,
    .version = "0", .depends = deps, .init = init, .start = start};
#else
SQ_PLUGIN_DEFINE(.name = TP_NAME, .version = "0", .depends = deps, .init = init,
                 .start = start);
#endif
#else
/* Exported, but not the descriptor; the callbacks stay reachable. */
__attribute__((visibility("default"))) void *not_a_plugin[] = {(void *)init,
                                                               (void *)start};
#endif
