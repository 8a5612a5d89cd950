/* A PostgreSQL server for a test (pgtest.h). */
#include "pgtest.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "squirrel/blocking.h"
#include "testlib.h"

#define PG_BIN "/usr/lib/postgresql/15/bin"

extern char **environ;

typedef struct run_job {
    const char *const *argv;
    int status;
} run_job;

/* Runs argv (as `nobody` when root) with output to the log; on the
 * blocking pool (waitpid blocks a thread). */
static void *run_main(void *arg)
{
    run_job *j = arg;
    j->status = -1;
    /* Looked up before fork: the child calls only what is safe there. */
    struct passwd *pw = geteuid() == 0 ? getpwnam("nobody") : NULL;
    uid_t uid = pw ? pw->pw_uid : 0;
    gid_t gid = pw ? pw->pw_gid : 0;
    if (geteuid() == 0 && !pw)
        return NULL;
    pid_t pid = fork();
    if (pid < 0)
        return NULL;
    if (pid == 0) {
        if (uid && (setgroups(0, NULL) != 0 || setgid(gid) != 0 || setuid(uid) != 0))
            _exit(126);
        /* Quiet: pg_ctl's own log (-l) says what went wrong. */
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, 0);
            dup2(null, 1);
            dup2(null, 2);
        }
        execv(j->argv[0], (char *const *)j->argv);
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    j->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return NULL;
}

static int run(const char *const *argv)
{
    run_job j = {.argv = argv};
    sq_cancel_mask();
    int rc = sq_blocking_run(run_main, &j, NULL);
    sq_cancel_unmask();
    return rc ? -1 : j.status;
}

static bool start(pg_server *p)
{
    char data[96], log[96], opts[160];
    snprintf(data, sizeof data, "%s/data", p->dir);
    snprintf(log, sizeof log, "%s/log", p->dir);
    snprintf(opts, sizeof opts,
             "-c listen_addresses='' -k %s -p 5432 -c max_connections=60 "
             "-c shared_buffers=32MB",
             p->dir);
    const char *argv[] = {PG_BIN "/pg_ctl", "-D", data, "-l", log, "-o", opts, "-w",
                          "-t", "60", "start", NULL};
    int st = run(argv);
    if (st != 0) {
        fprintf(stderr, "pgtest: pg_ctl start failed (%d); log:\n", st);
        char cmd[160];
        snprintf(cmd, sizeof cmd, "cat %s >&2", log);
        if (system(cmd) != 0)
            fprintf(stderr, "(no log)\n");
        return false;
    }
    p->running = true;
    return true;
}

static void stop(pg_server *p, const char *mode)
{
    char data[96];
    snprintf(data, sizeof data, "%s/data", p->dir);
    const char *argv[] = {PG_BIN "/pg_ctl", "-D", data, "-m", mode, "-w", "stop", NULL};
    run(argv);
    p->running = false;
}

pg_server *pg_start(void)
{
    pg_server *p = calloc(1, sizeof *p);
    snprintf(p->dir, sizeof p->dir, "/tmp/sqpg-XXXXXX");
    if (!mkdtemp(p->dir)) {
        CHECK(!"mkdtemp");
        free(p);
        return NULL;
    }
    if (geteuid() == 0) {
        struct passwd *pw = getpwnam("nobody");
        if (!pw || chown(p->dir, pw->pw_uid, pw->pw_gid) != 0) {
            CHECK(!"chown to nobody");
            free(p);
            return NULL;
        }
    }
    chmod(p->dir, 0700);
    char data[96];
    snprintf(data, sizeof data, "%s/data", p->dir);
    const char *argv[] = {PG_BIN "/initdb", "-D", data, "-U", "squirrel", "-A", "trust",
                          "-E", "UTF8", "--no-sync", "-N", NULL};
    int st = run(argv);
    if (st != 0) {
        fprintf(stderr, "pgtest: initdb failed (%d): is postgresql-15 installed?\n", st);
        CHECK(!"initdb");
        free(p);
        return NULL;
    }
    if (!start(p)) {
        CHECK(!"pg_ctl start");
        pg_stop(p);
        return NULL;
    }
    /* The socket directory, percent-encoded as a query parameter. */
    char host[128];
    size_t k = 0;
    for (const char *c = p->dir; *c && k + 4 < sizeof host; c++) {
        if (*c == '/')
            k += (size_t)snprintf(host + k, sizeof host - k, "%%2F");
        else
            host[k++] = *c;
    }
    host[k] = '\0';
    snprintf(p->uri, sizeof p->uri, "postgresql://squirrel@/postgres?host=%s&port=5432", host);
    return p;
}

bool pg_restart(pg_server *p)
{
    stop(p, "immediate");
    return start(p);
}

void pg_halt(pg_server *p)
{
    stop(p, "immediate");
}

bool pg_resume(pg_server *p)
{
    return start(p);
}

void pg_stop(pg_server *p)
{
    if (!p)
        return;
    if (p->running)
        stop(p, "immediate");
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", p->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "pgtest: could not remove %s\n", p->dir);
    free(p);
}
