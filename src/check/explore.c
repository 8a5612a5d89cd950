/* sq_explore: runs a body under many seeds of the deterministic mode (the
 * scheduler's side of it is in src/runtime/sched.c). */
#include "squirrel/explore.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "sq_runtime/iface.h"

#define ENV_SEED "SQ_EXPLORE_SEED"

typedef struct explore_call {
    int (*body)(void *arg);
    void *arg;
    int rc;
} explore_call;

static void *explore_root(void *p)
{
    explore_call *c = p;
    c->rc = c->body(c->arg);
    return NULL;
}

/* SQ_EXPLORE_SEED: 0 if unset or empty, the seed, or -EINVAL. */
static int seed_from_env(uint64_t *out)
{
    const char *s = getenv(ENV_SEED);
    *out = 0;
    if (!s || !*s)
        return 0;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*s < '0' || *s > '9' || *end || errno || v == 0) {
        fprintf(stderr,
                "sq_explore: %s=%s is not a seed (a decimal number > 0)\n",
                ENV_SEED, s);
        return -EINVAL;
    }
    *out = (uint64_t)v;
    return 0;
}

/* Runs body once under `seed`: its result (>= 0 means it ran: 0 passed,
 * 1 failed) or a negative code from the runtime. */
static int run_seed(int (*body)(void *), void *arg, uint64_t seed)
{
    sq_runtime_opts o = {.workers = 1, .seed = seed};
    sq_runtime *rt;
    int rc = sq_runtime_create(&rt, &o);
    if (rc)
        return rc;
    explore_call c = {.body = body, .arg = arg, .rc = 0};
    rc = sq_runtime_block_on(rt, explore_root, &c, NULL);
    sq_runtime_destroy(rt);
    if (rc)
        return rc;
    return c.rc != 0;
}

int sq_explore(int (*body)(void *arg), void *arg, uint64_t first_seed,
               int nseeds, uint64_t *failing_seed)
{
    if (!body)
        return -EINVAL;
    if (sq_runtime_current())
        return -EPERM;
    uint64_t env;
    int rc = seed_from_env(&env);
    if (rc)
        return rc;
    if (env) {
        first_seed = env;
        nseeds = 1;
    }
    if (nseeds < 1 || first_seed == 0 ||
        first_seed - 1 > UINT64_MAX - (uint64_t)nseeds)
        return -EINVAL;
    for (int i = 0; i < nseeds; i++) {
        uint64_t seed = first_seed + (uint64_t)i;
        rc = run_seed(body, arg, seed);
        if (rc < 0)
            return rc;
        if (rc > 0) {
            fprintf(stderr,
                    "sq_explore: failure with seed %llu (rerun with "
                    "%s=%llu)\n",
                    (unsigned long long)seed, ENV_SEED,
                    (unsigned long long)seed);
            if (failing_seed)
                *failing_seed = seed;
            return SQ_EXPLORE_FAILED;
        }
    }
    return 0;
}

uint64_t sq_explore_seed(void)
{
    sq_runtime *rt = sq_runtime_current();
    return rt ? sq__runtime_seed(rt) : 0;
}
