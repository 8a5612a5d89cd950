/* The task dump: tasks sleeping, waiting for a mutex another task holds,
 * for a notify, a channel and a join, a running one, a plain thread
 * holding a lock and a deadlocked pair appear with the right state, wait,
 * held locks and spawn sites, as text and as JSON (parsed by python3);
 * the signal path writes the same dump and gives the signal back; the
 * dump reports nothing. */
#include "testlib.h"

#include "squirrel/check.h"
#include "squirrel/sync.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

static atomic_int reports;

static void count_report(unsigned finding, const char *text, void *arg)
{
    (void)finding, (void)arg;
    fputs(text, stderr);
    atomic_fetch_add(&reports, 1);
}

static sq_check_config saved;

/* The hooks on (so holds are known), only the deadlock finding (the tasks
 * below hold locks across waits on purpose), and no search but ours. */
static void checks_begin(void)
{
    sq_check_get_config(&saved);
    atomic_store(&reports, 0);
    sq_check_set_reporter(count_report, NULL);
    sq_check_config c = {.findings = SQ_CHECK_DEADLOCK};
    CHECK_EQ(sq_check_configure(&c), 0);
}

static void checks_end(void)
{
    CHECK_EQ(sq_check_configure(&saved), 0);
    sq_check_set_reporter(NULL, NULL);
    CHECK_EQ(atomic_load(&reports), 0);
}

static size_t indent_of(const char *line)
{
    size_t n = 0;
    while (line[n] == ' ')
        n++;
    return n;
}

/* The line of `text` that contains `start` and the lines after it that
 * are indented deeper (its details), as a malloc'ed string, or NULL. */
static char *section(const char *text, const char *start)
{
    const char *p = strstr(text, start);
    if (!p)
        return NULL;
    while (p > text && p[-1] != '\n')
        p--;
    size_t in = indent_of(p);
    const char *e = strchr(p, '\n');
    while (e && e[1] && indent_of(e + 1) > in)
        e = strchr(e + 1, '\n');
    size_t len = e ? (size_t)(e - p) + 1 : strlen(p);
    char *s = malloc(len + 1);
    memcpy(s, p, len);
    s[len] = '\0';
    return s;
}

/* The section of `task` (see section) contains every string of want
 * (NULL-terminated). */
static bool task_shows(const char *text, const char *task, const char **want)
{
    char *s = section(text, task);
    bool ok = s != NULL;
    for (; ok && *want; want++)
        ok = strstr(s, *want) != NULL;
    free(s);
    return ok;
}

/* ------------------------------------------------------- the scene */

typedef struct scene {
    sq_mutex held, dl1, dl2, tlock;
    sq_notify note;
    sq_oneshot shot;
    atomic_int holder_has, dl_ready, thread_has, thread_go;
    int lines[8];            /* spawn lines, for the sites */
    uint64_t sleeper_id;
} scene;

static void *sleeper(void *arg)
{
    (void)arg;
    sq_sleep(60 * SQ_SEC); /* until aborted */
    return NULL;
}

static void *holder(void *arg)
{
    scene *s = arg;
    CHECK_EQ(sq_mutex_lock(&s->held), 0);
    atomic_store(&s->holder_has, 1);
    CHECK_EQ(sq_notify_wait(&s->note), 0);
    CHECK_EQ(sq_mutex_unlock(&s->held), 0);
    return NULL;
}

static void *waiter(void *arg)
{
    scene *s = arg;
    CHECK_EQ(sq_mutex_lock(&s->held), 0);
    CHECK_EQ(sq_mutex_unlock(&s->held), 0);
    return NULL;
}

static void *receiver(void *arg)
{
    scene *s = arg;
    void *v = NULL;
    CHECK_EQ(sq_oneshot_recv(&s->shot, &v), 0);
    CHECK(v == s);
    return NULL;
}

static void *joiner(void *arg)
{
    sq_task *t = arg;
    CHECK_EQ(sq_join(*t, NULL), -ECANCELED);
    return NULL;
}

typedef struct dl {
    scene *s;
    sq_mutex *first, *second;
    int rc;
} dl;

static void *deadlocker(void *arg)
{
    dl *d = arg;
    CHECK_EQ(sq_mutex_lock(d->first), 0);
    atomic_fetch_add(&d->s->dl_ready, 1);
    while (atomic_load(&d->s->dl_ready) < 2)
        sq_yield();
    d->rc = sq_mutex_lock(d->second);
    if (d->rc == 0)
        sq_mutex_unlock(d->second);
    CHECK_EQ(sq_mutex_unlock(d->first), 0);
    return NULL;
}

static void *lock_thread(void *arg)
{
    scene *s = arg;
    CHECK_EQ(sq_mutex_lock(&s->tlock), 0);
    atomic_store(&s->thread_has, 1);
    while (!atomic_load(&s->thread_go))
        sched_yield();
    CHECK_EQ(sq_mutex_unlock(&s->tlock), 0);
    return NULL;
}

/* ------------------------------------------------- checking the dump */

static char site[8][256];

static void check_text(const char *text, scene *s)
{
    char join_of[64];
    snprintf(join_of, sizeof join_of, "task #%llu 'sleeper'",
             (unsigned long long)s->sleeper_id);
    CHECK(strstr(text, "squirrel task dump: process ") != NULL);
    CHECK(strstr(text, "end of the task dump\n") != NULL);
    CHECK(task_shows(text, "'root' running", (const char *[]){NULL}));
    CHECK(task_shows(text, "'sleeper' parked",
                     (const char *[]){"waits for a sleep to end", site[0],
                                      NULL}));
    CHECK(task_shows(text, "'holder' parked",
                     (const char *[]){"waits for a notify", site[1],
                                      "holds lock dump.held", NULL}));
    CHECK(task_shows(text, "'waiter' parked",
                     (const char *[]){"waits for a mutex", site[2],
                                      "wants lock dump.held",
                                      "held by task 'holder' #", NULL}));
    CHECK(task_shows(text, "'receiver' parked",
                     (const char *[]){"waits for a channel", site[3],
                                      NULL}));
    CHECK(task_shows(text, "'joiner' parked",
                     (const char *[]){"waits for a task to finish",
                                      join_of, site[4], NULL}));
    CHECK(task_shows(text, "'dl-1' parked",
                     (const char *[]){"holds lock dump.dl1",
                                      "wants lock dump.dl2",
                                      "held by task 'dl-2' #", NULL}));
    CHECK(task_shows(text, "'dl-2' parked",
                     (const char *[]){"holds lock dump.dl2",
                                      "wants lock dump.dl1", NULL}));
    CHECK(strstr(text, "threads that hold or want locks:\n") != NULL);
    CHECK(task_shows(text, "  thread ",
                     (const char *[]){"holds lock dump.thread", NULL}));
    CHECK(strstr(text, "wait-for cycles (deadlocks): 1\n  cycle 1:\n") !=
          NULL);
    const char *cycles = strstr(text, "wait-for cycles");
    CHECK(cycles && strstr(cycles, "task 'dl-1'") &&
          strstr(cycles, "task 'dl-2'") &&
          strstr(cycles, "waits for lock dump.dl1") &&
          strstr(cycles, "waits for lock dump.dl2"));
    /* The name with a quote, a backslash, bytes that are not UTF-8, one
     * character that is, and a control character. */
    CHECK(strstr(text, "'we\"ird\\\xff\xc3\xa9\x01\xf8\x80\x80' parked") !=
          NULL);
}

/* python3 parses the JSON and prints one line per task and thread; we
 * check the lines. */
static const char *const summarise =
    "import json, sys\n"
    "d = json.load(open(sys.argv[1], encoding='utf-8'))\n"
    "for r in d['runtimes']:\n"
    "  assert r['workers'] == 2 and r['runtime'].startswith('0x')\n"
    "  for t in r['tasks']:\n"
    "    w = t['waiting'] or {}\n"
    "    print('task|%s|%s|%s|%s|%s|%s|%s' % (t['name'], t['state'],\n"
    "      w.get('kind', '-'), w.get('task', '-'),\n"
    "      (t['wants'] or {}).get('class', '-') + '/' + ','.join(\n"
    "        h['holder'] for h in (t['wants'] or {}).get('held_by', [])),\n"
    "      ','.join(h['class'] + ':' + h['mode'] for h in t['holds']) or '-',\n"
    "      t['spawned_at']))\n"
    "for c in d['threads']:\n"
    "  print('thread|%s|%s' % (c['name'].split()[0],\n"
    "    ','.join(h['class'] for h in c['holds'])))\n"
    "for c in d['cycles']:\n"
    "  print('cycle|' + ','.join(sorted(s['context'].split(\"'\")[1] + '>' +\n"
    "    s['waits_for']['class'] for s in c)))\n"
    "print('complete|%s|%d' % (d['complete'], len(d['other_tasks'])))\n";

static char *run_python(const char *json)
{
    char path[] = "/tmp/sq_dump_test_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0)
        return NULL;
    CHECK_EQ(write(fd, json, strlen(json)), (long long)strlen(json));
    close(fd);
    char script[] = "/tmp/sq_dump_test_py_XXXXXX";
    fd = mkstemp(script);
    CHECK_EQ(write(fd, summarise, strlen(summarise)),
             (long long)strlen(summarise));
    close(fd);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "python3 %s %s", script, path);
    FILE *p = popen(cmd, "r");
    CHECK(p != NULL);
    char *out = calloc(1, 65536);
    size_t n = p ? fread(out, 1, 65535, p) : 0;
    out[n] = '\0';
    CHECK_EQ(p ? pclose(p) : -1, 0);
    unlink(path);
    unlink(script);
    return out;
}

static void check_json(const char *json, scene *s)
{
    char *out = run_python(json);
    if (!out)
        return;
    char want[512];
    snprintf(want, sizeof want, "task|sleeper|parked|sleep|-|-/|-|%s\n",
             site[0]);
    CHECK(strstr(out, want) != NULL);
    snprintf(want, sizeof want,
             "task|holder|parked|notify|-|-/|dump.held:exclusive|%s\n",
             site[1]);
    CHECK(strstr(out, want) != NULL);
    snprintf(want, sizeof want, "task|waiter|parked|mutex|-|dump.held/task "
             "'holder' #");
    CHECK(strstr(out, want) != NULL);
    snprintf(want, sizeof want, "task|receiver|parked|channel|-|-/|-|%s\n",
             site[3]);
    CHECK(strstr(out, want) != NULL);
    snprintf(want, sizeof want, "task|joiner|parked|join|%llu|-/|-|%s\n",
             (unsigned long long)s->sleeper_id, site[4]);
    CHECK(strstr(out, want) != NULL);
    CHECK(strstr(out, "task|dl-1|parked|mutex|-|dump.dl2/task 'dl-2' #") !=
          NULL);
    CHECK(strstr(out, "task|root|running|-|-|-/|-|") != NULL);
    CHECK(strstr(out, "task|we\"ird\\\xef\xbf\xbd\xc3\xa9\x01\xef\xbf\xbd"
                      "\xef\xbf\xbd\xef\xbf\xbd|parked|sleep|") != NULL);
    CHECK(strstr(out, "thread|thread|dump.thread\n") != NULL);
    CHECK(strstr(out, "cycle|dl-1>dump.dl2,dl-2>dump.dl1\n") != NULL);
    CHECK(strstr(out, "complete|True|0\n") != NULL);
    if (getenv("SQ_TEST_SHOW_DUMP"))
        fputs(out, stderr);
    free(out);
}

/* Reads fd until the end of a text dump, for 10 s at most. */
static char *read_dump(int fd)
{
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    buf[0] = '\0';
    int64_t end = sq_now() + 10 * SQ_SEC;
    while (!strstr(buf, "end of the task dump\n") && sq_now() < end) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 10) != 1)
            continue;
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
        buf[len] = '\0';
        if (len == cap - 1)
            buf = realloc(buf, cap *= 2);
    }
    return buf;
}

static void *scene_root(void *arg)
{
    scene *s = arg;
    sq_task t[9];
    sq_spawn_opts o = {.name = "sleeper"};
    /* Each spawn on the line its number is taken on: the spawn site. */
    s->lines[0] = __LINE__; CHECK_EQ(sq_spawn(&t[0], sleeper, s, &o), 0);
    s->sleeper_id = t[0].id;
    o.name = "holder";
    s->lines[1] = __LINE__; CHECK_EQ(sq_spawn(&t[1], holder, s, &o), 0);
    while (!atomic_load(&s->holder_has))
        sq_sleep(SQ_MSEC);
    o.name = "waiter";
    s->lines[2] = __LINE__; CHECK_EQ(sq_spawn(&t[2], waiter, s, &o), 0);
    o.name = "receiver";
    s->lines[3] = __LINE__; CHECK_EQ(sq_spawn(&t[3], receiver, s, &o), 0);
    o.name = "joiner";
    s->lines[4] = __LINE__; CHECK_EQ(sq_spawn(&t[4], joiner, &t[0], &o), 0);
    dl d1 = {s, &s->dl1, &s->dl2, 1}, d2 = {s, &s->dl2, &s->dl1, 1};
    o.name = "dl-1";
    CHECK_EQ(sq_spawn(&t[5], deadlocker, &d1, &o), 0);
    o.name = "dl-2";
    CHECK_EQ(sq_spawn(&t[6], deadlocker, &d2, &o), 0);
    o.name = "we\"ird\\\xff\xc3\xa9\x01\xf8\x80\x80";
    CHECK_EQ(sq_spawn(&t[7], sleeper, s, &o), 0);
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, lock_thread, s), 0);
    while (!atomic_load(&s->thread_has))
        sq_sleep(SQ_MSEC);
    for (int i = 0; i < 5; i++)
        snprintf(site[i], sizeof site[i], "%s:%d", __FILE__, s->lines[i]);

    /* Wait for the scene to settle: every task in its wait. */
    char *text = NULL;
    const char *settled[] = {
        "'sleeper' parked, waits", "'holder' parked, waits",
        "'waiter' parked, waits",  "'receiver' parked, waits",
        "'joiner' parked, waits",  "'dl-1' parked, waits",
        "'dl-2' parked, waits",    "\xf8\x80\x80' parked, waits"};
    for (int tries = 0; tries < 5000; tries++) {
        free(text);
        CHECK_EQ(sq_check_dump_string(false, &text), 0);
        bool all = true;
        for (size_t i = 0; all && i < sizeof settled / sizeof *settled; i++)
            all = strstr(text, settled[i]) != NULL;
        if (all && strstr(text, "wants lock dump.dl1") &&
            strstr(text, "wants lock dump.dl2") &&
            strstr(text, "wants lock dump.held"))
            break;
        sq_sleep(SQ_MSEC);
    }
    check_text(text, s);
    if (getenv("SQ_TEST_SHOW_DUMP"))
        fputs(text, stderr);
    free(text);

    char *json = NULL;
    CHECK_EQ(sq_check_dump_string(true, &json), 0);
    check_json(json, s);
    if (getenv("SQ_TEST_SHOW_DUMP"))
        fputs(json, stderr);
    free(json);

    /* The same through a file descriptor. */
    int p[2];
    CHECK_EQ(pipe(p), 0);
    CHECK_EQ(sq_check_dump(p[1], false), 0);
    text = read_dump(p[0]);
    check_text(text, s);
    free(text);

    /* And on a signal, to the descriptor given.  (SQUIRREL_CHECK in the
     * environment installs the dump on SIGQUIT at start-up: give that back
     * first, and put it back at the end.) */
    bool env_dump = getenv("SQUIRREL_CHECK") != NULL;
    CHECK_EQ(sq_check_dump_on_signal(0, -1), 0);
    struct sigaction before, after;
    sigaction(SIGQUIT, NULL, &before);
    CHECK_EQ(sq_check_dump_on_signal(SIGQUIT, p[1]), 0);
    CHECK_EQ(raise(SIGQUIT), 0);
    text = read_dump(p[0]);
    check_text(text, s);
    free(text);
    CHECK_EQ(sq_check_dump_on_signal(0, -1), 0);
    sigaction(SIGQUIT, NULL, &after);
    CHECK(after.sa_handler == before.sa_handler);
    if (env_dump)
        CHECK_EQ(sq_check_dump_on_signal(SIGQUIT, STDERR_FILENO), 0);
    close(p[0]);
    close(p[1]);

    /* Take the scene down. */
    sq_notify_one(&s->note);
    CHECK_EQ(sq_oneshot_send(&s->shot, s), 0);
    CHECK_EQ(sq_abort(t[0]), 0);
    CHECK_EQ(sq_abort(t[5]), 0);
    CHECK_EQ(sq_abort(t[7]), 0);
    for (int i = 1; i < 8; i++)
        sq_join(t[i], NULL);
    CHECK_EQ(d1.rc, -ECANCELED);
    CHECK_EQ(d2.rc, 0);
    atomic_store(&s->thread_go, 1);
    pthread_join(th, NULL);
    return NULL;
}

TEST(dump_shows_every_task_its_wait_its_locks_and_the_cycles)
{
    checks_begin();
    scene s = {.holder_has = 0};
    sq_mutex_init_named(&s.held, "dump.held");
    sq_mutex_init_named(&s.dl1, "dump.dl1");
    sq_mutex_init_named(&s.dl2, "dump.dl2");
    sq_mutex_init_named(&s.tlock, "dump.thread");
    sq_notify_init(&s.note);
    sq_oneshot_init(&s.shot);
    sq_test_run(2, scene_root, &s);
    checks_end();
}

/* ------------------------------------------------ the edges of the API */

static atomic_int usr1_seen;

static void on_usr1(int signo)
{
    (void)signo;
    atomic_fetch_add(&usr1_seen, 1);
}

TEST(dump_on_signal_gives_the_signal_back_and_rejects_bad_arguments)
{
    CHECK_EQ(sq_check_dump(-1, false), -EBADF);
    CHECK_EQ(sq_check_dump_string(false, NULL), -EINVAL);
    CHECK_EQ(sq_check_dump_on_signal(SIGKILL, 2), -EINVAL);
    CHECK_EQ(sq_check_dump_on_signal(SIGSTOP, 2), -EINVAL);
    CHECK_EQ(sq_check_dump_on_signal(-1, 2), -EINVAL);
    CHECK_EQ(sq_check_dump_on_signal(SIGUSR1, -1), -EBADF);
    CHECK_EQ(sq_check_dump_on_signal(0, -1), 0); /* nothing installed */

    struct sigaction mine = {.sa_handler = on_usr1}, old;
    sigemptyset(&mine.sa_mask);
    sigaction(SIGUSR1, &mine, &old);
    int p[2];
    CHECK_EQ(pipe(p), 0);
    for (int round = 0; round < 3; round++) {
        CHECK_EQ(sq_check_dump_on_signal(SIGUSR1, p[1]), 0);
        CHECK_EQ(sq_check_dump_on_signal(SIGUSR1, p[1]), 0); /* again: same */
        CHECK_EQ(raise(SIGUSR1), 0);
        char *text = read_dump(p[0]);
        CHECK(strstr(text, "squirrel task dump: process ") != NULL);
        CHECK(strstr(text, "0 runtimes\n") != NULL); /* none here */
        CHECK(strstr(text, "wait-for cycles (deadlocks): none\n") != NULL);
        free(text);
        CHECK_EQ(atomic_load(&usr1_seen), round);
        CHECK_EQ(sq_check_dump_on_signal(0, -1), 0);
        CHECK_EQ(raise(SIGUSR1), 0); /* our handler again */
        CHECK_EQ(atomic_load(&usr1_seen), round + 1);
    }
    /* Moving to another signal gives the first back. */
    CHECK_EQ(sq_check_dump_on_signal(SIGUSR1, p[1]), 0);
    CHECK_EQ(sq_check_dump_on_signal(SIGUSR2, p[1]), 0);
    CHECK_EQ(raise(SIGUSR1), 0);
    CHECK_EQ(atomic_load(&usr1_seen), 4);
    CHECK_EQ(sq_check_dump_on_signal(0, -1), 0);
    sigaction(SIGUSR1, &old, NULL);
    close(p[0]);
    close(p[1]);

    /* JSON without a runtime is valid too. */
    char *json = NULL;
    CHECK_EQ(sq_check_dump_string(true, &json), 0);
    char *out = run_python(json);
    CHECK(out && strstr(out, "complete|True|0\n") != NULL);
    free(out);
    free(json);
}
