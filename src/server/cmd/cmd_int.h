/* The command system's private header (sq_server/cmd.h is its interface;
 * docs/commands.md the manual).
 *
 *  - registry.c  commands: adding, removing, pausing, replacing, figures
 *  - call.c      one call through its stages
 *  - history.c   the ring of the last calls, redaction
 *  - builtin.c   help, history, status and the history resource
 *
 * A command (struct cmd) outlives its registration while anything holds
 * it: the system's list, the registry's tool entry (the tool's data), and
 * every call.  Its definition (struct cmd_impl) is held by the command
 * and by each call admitted with it, so a replacement or a removal
 * releases the old definition only when the last of its calls is done.
 *
 * The command's `lock` (a spin lock) guards its state, definition, the
 * list of calls in flight and their count; it is held for a few
 * instructions, never across a wait.  Waiting for a state change or for
 * the calls to drain is on `changed` (a notify), in bounded slices, since
 * a notify wakes only those already waiting.
 */
#ifndef SQ_SERVER_CMD_INT_H
#define SQ_SERVER_CMD_INT_H

#include <stdatomic.h>

#include "sq_server/cmd.h"
#include "sq_server/schema.h"
#include "srv.h"

/* A definition in force. */
typedef struct cmd_impl {
    sq_cmd_def def;            /* name/title/description point below */
    char *name, *title, *description;
    char **redact;             /* NULL-terminated copies, or NULL */
    bool redact_all;
    sq_schema *in, *out;       /* compiled; out may be NULL */
    atomic_int refs;
} cmd_impl;

enum { CMD_OPEN, CMD_PAUSED, CMD_CLOSED };

typedef struct cmd {
    sq_cmds *sys;
    char *name;
    atomic_int refs;
    sq__spin lock;
    /* Under lock: */
    int state;                 /* CMD_* */
    cmd_impl *impl;
    struct sq__list calls;     /* in flight: sq_cmd_call.link */
    size_t inflight;           /* past the gate, not yet done */
    bool aborting;             /* a drain past its deadline: abort all */
    /* Calls at once: the permits (when max_concurrent > 0). */
    sq_sem permits;
    size_t limit;
    sq_notify changed;         /* state changed, or inflight reached 0 */
    /* Figures (atomics: updated by calls without the lock). */
    atomic_ullong outcomes[SQ_CMD_NOUTCOMES];
    atomic_ullong total_ns;
    atomic_long running;       /* holding a permit (or past admission) */
    atomic_long waiting;       /* waiting for a permit or the gate */
    atomic_long high_water;    /* the most running at once */
    struct sq__link link;      /* in sys->cmds (under sys->lock) */
    bool listed;
} cmd;

typedef struct cmd_hook {
    sq_cmd_hook_fn fn;
    void *data;
} cmd_hook;

#define CMD_MAX_HOOKS 16

typedef struct cmd_history cmd_history;

/* Something that adds a member to the status (sq_cmds_status_add). */
typedef struct cmd_status_part {
    char name[32];
    json_t *(*fn)(void *data);
    void *data;
} cmd_status_part;

struct sq_cmds {
    sq_srv *srv;
    sq_cmds_opts opts;
    sq_mutex lock;             /* the list of commands */
    struct sq__list cmds;
    cmd_hook hooks[3][CMD_MAX_HOOKS]; /* pre, post, cleanup */
    size_t nhooks[3];
    cmd_history *history;
    int64_t started;           /* sq_now() at creation */
    cmd_status_part status[4];
    size_t nstatus;
};

struct sq_cmd_call {
    sq_cmds *sys;
    cmd *cmd;                  /* a reference */
    cmd_impl *impl;            /* a reference, taken at admission */
    sq_mcp_req *req;           /* NULL: a direct call */
    json_t *args;              /* borrowed */
    json_t *result;            /* owned */
    int rc;                    /* execute's SQ_MCP_* */
    int outcome;
    atomic_int stage;
    bool stages_done;          /* the stage task ended without being cancelled */
    bool has_task;             /* task is valid (under cmd->lock) */
    sq_task task;              /* the stage task */
    int64_t started, deadline;
    int64_t started_wall_ms;
    void *user;
    int err_code;              /* sq_cmd_fail's JSON-RPC code, or 0 */
    char message[512];         /* why it failed, for the result and history */
    json_t *detail;            /* extra structuredContent members (owned) */
    struct sq__link link;      /* in cmd->calls */
};

/* registry.c */
cmd *sq__cmd_ref(cmd *c);
void sq__cmd_unref(cmd *c);
cmd_impl *sq__impl_ref(cmd_impl *i);
void sq__impl_unref(cmd_impl *i);
/* The command named `name` (a reference), or NULL. */
cmd *sq__cmd_find(sq_cmds *sys, const char *name);
/* Every command (references, sorted by name) in *out (malloc'ed). */
size_t sq__cmd_all(sq_cmds *sys, cmd ***out);
/* A command's figures as JSON. */
json_t *sq__cmd_figures(cmd *c);

/* call.c: the tool handler of every command (data: the cmd). */
int sq__cmd_tool_call(sq_mcp_req *r, json_t *args, void *data, json_t **result);
/* Runs one call (both kinds): fills *result and returns the outcome and,
 * in *rc, what an MCP handler returns. */
int sq__cmd_run(cmd *c, sq_mcp_req *req, json_t *args, int64_t deadline,
                json_t **result, int *rc);

/* history.c */
cmd_history *sq__history_new(size_t size, size_t arg_bytes);
void sq__history_free(cmd_history *h);
/* Records a finished call. */
void sq__history_add(cmd_history *h, const sq_cmd_call *c);
json_t *sq__history_read(cmd_history *h, const char *name, int outcome,
                         size_t limit);
size_t sq__history_size(cmd_history *h);

/* builtin.c */
int sq__cmd_builtins(sq_cmds *sys);

#endif
