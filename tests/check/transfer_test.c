/* A lock passed from one task to another (locked in one, unlocked in the
 * other) and declared with sq_check_lock_transfer: the sender's wait
 * while the receiver still holds it is not a lock held across a wait, and
 * the locks the sender takes meanwhile are not ordered after it (so no
 * false inversion); undeclared, both false reports happen (the checks
 * cannot know); a lock the sender really holds across a wait is still
 * reported, and so is one the receiver adopted; the calls' results. */
#include "testlib.h"

#include "squirrel/check.h"
#include "squirrel/mpsc.h"
#include "squirrel/rwlock.h"
#include "squirrel/sync.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

/* ---------------------------------------------------- the reports */

#define MAX_REPORTS 8
static struct {
    pthread_mutex_t m;
    int n[5];
    char text[MAX_REPORTS][4096];
    int ntext;
} cap = {.m = PTHREAD_MUTEX_INITIALIZER};

static int bit_index(unsigned f)
{
    for (int i = 0; i < 5; i++)
        if (f == 1u << i)
            return i;
    return 0;
}

static void capture(unsigned finding, const char *text, void *arg)
{
    (void)arg;
    if (getenv("SQ_TEST_SHOW_REPORTS"))
        fputs(text, stderr);
    pthread_mutex_lock(&cap.m);
    cap.n[bit_index(finding)]++;
    if (cap.ntext < MAX_REPORTS)
        snprintf(cap.text[cap.ntext++], sizeof cap.text[0], "%s", text);
    pthread_mutex_unlock(&cap.m);
}

static int count(unsigned finding)
{
    pthread_mutex_lock(&cap.m);
    int n = cap.n[bit_index(finding)];
    pthread_mutex_unlock(&cap.m);
    return n;
}

static sq_check_config saved;

static void begin(unsigned findings)
{
    sq_check_get_config(&saved);
    pthread_mutex_lock(&cap.m);
    memset(cap.n, 0, sizeof cap.n);
    cap.ntext = 0;
    pthread_mutex_unlock(&cap.m);
    sq_check_set_reporter(capture, NULL);
    sq_check_config c = {.findings = findings};
    CHECK_EQ(sq_check_configure(&c), 0);
    sq_check_reset_order_graph();
}

static void end(void)
{
    sq_check_set_reporter(NULL, NULL);
    CHECK_EQ(sq_check_configure(&saved), 0);
    sq_check_reset_order_graph();
}

/* ------------------------------------------------------------ helpers */

/* True if task `id` is parked in a wait of kind `wait`. */
static bool parked_in(uint64_t id, int wait)
{
    sq_check_snapshot *s;
    if (sq_check_snapshot_take(&s) != 0)
        return false;
    bool yes = false;
    for (size_t r = 0; r < s->nruntimes; r++)
        for (size_t i = 0; i < s->runtimes[r].ntasks; i++) {
            const sq_check_task *t = &s->runtimes[r].tasks[i];
            if (t->id == id)
                yes = t->state == SQ_CHECK_TASK_PARKED && t->wait == wait;
        }
    sq_check_snapshot_free(s);
    return yes;
}

/* The holds of `lock` the snapshot lists as in transit, and those it
 * charges to task `id`. */
static void holds_of(const void *lock, uint64_t id, int *transit, int *task)
{
    sq_check_snapshot *s;
    *transit = *task = 0;
    if (sq_check_snapshot_take(&s) != 0)
        return;
    for (size_t i = 0; i < s->nunowned; i++)
        if (s->unowned[i].lock == lock &&
            !strcmp(s->unowned[i].holder, "nobody (in transit)"))
            (*transit)++;
    for (size_t r = 0; r < s->nruntimes; r++)
        for (size_t i = 0; i < s->runtimes[r].ntasks; i++) {
            const sq_check_task *t = &s->runtimes[r].tasks[i];
            for (size_t k = 0; t->id == id && k < t->nholds; k++)
                *task += t->holds[k].lock == lock;
        }
    sq_check_snapshot_free(s);
}

/* ----------------------------------------- the sender's wait: a scene */

/* The sender locks `data`, passes it to the receiver over `ch` and waits
 * for the receiver's word on `done`; the receiver unlocks `data` only
 * once the sender is parked in that wait, so the lock is held (by the
 * receiver's side) all through the sender's wait. */
typedef struct pass {
    sq_mutex data;
    sq_mpsc ch;
    sq_oneshot done;
    bool declare;            /* the sender calls sq_check_lock_transfer */
    uint64_t sender;
    int transit, sender_holds;  /* as the snapshot saw them mid-wait */
} pass;

static void *sender(void *arg)
{
    pass *p = arg;
    CHECK_EQ(sq_mutex_lock(&p->data), 0);
    if (p->declare)
        CHECK_EQ(sq_check_lock_transfer(&p->data), 0);
    sq_mutex *m = &p->data;
    CHECK_EQ(sq_mpsc_send(&p->ch, &m), 0);
    void *v;
    CHECK_EQ(sq_oneshot_recv(&p->done, &v), 0); /* the lock is still held */
    return NULL;
}

static void *receiver(void *arg)
{
    pass *p = arg;
    sq_mutex *m;
    CHECK_EQ(sq_mpsc_recv(&p->ch, &m), 0);
    WAIT_UNTIL(parked_in(p->sender, SQ_CHECK_WAIT_CHANNEL));
    holds_of(m, p->sender, &p->transit, &p->sender_holds);
    CHECK_EQ(sq_mutex_unlock(m), 0);
    CHECK_EQ(sq_oneshot_send(&p->done, p), 0);
    return NULL;
}

static void *pass_root(void *arg)
{
    pass *p = arg;
    sq_spawn_opts so = {.name = "sender"}, ro = {.name = "receiver"};
    sq_task s, r;
    CHECK_EQ(sq_spawn(&s, sender, p, &so), 0);
    p->sender = s.id;
    CHECK_EQ(sq_spawn(&r, receiver, p, &ro), 0);
    CHECK_EQ(sq_join(s, NULL), 0);
    CHECK_EQ(sq_join(r, NULL), 0);
    return NULL;
}

static void run_pass(pass *p, bool declare)
{
    memset(p, 0, sizeof *p);
    p->declare = declare;
    sq_mutex_init_named(&p->data, "transfer.data");
    CHECK_EQ(sq_mpsc_init(&p->ch, sizeof(sq_mutex *), 1), 0);
    sq_oneshot_init(&p->done);
    sq_test_run(2, pass_root, p);
    CHECK_EQ(sq_mpsc_destroy(&p->ch), 0);
    CHECK_EQ(sq_mutex_destroy(&p->data), 0);
}

TEST(a_transferred_lock_is_not_held_across_the_senders_wait)
{
    begin(SQ_CHECK_HELD_ACROSS_WAIT | SQ_CHECK_LOCK_ORDER);
    pass p;
    run_pass(&p, true);
    end();
    CHECK_EQ(count(SQ_CHECK_HELD_ACROSS_WAIT), 0);
    /* Mid-wait the hold was in transit, not the sender's. */
    CHECK_EQ(p.transit, 1);
    CHECK_EQ(p.sender_holds, 0);
}

TEST(an_undeclared_hand_off_is_charged_to_the_locker_until_the_unlock)
{
    begin(SQ_CHECK_HELD_ACROSS_WAIT | SQ_CHECK_LOCK_ORDER);
    pass p;
    run_pass(&p, false);
    end();
    /* The false report the transfer exists for. */
    CHECK_EQ(count(SQ_CHECK_HELD_ACROSS_WAIT), 1);
    CHECK(strstr(cap.text[0], "task 'sender'") != NULL);
    CHECK(strstr(cap.text[0], "lock transfer.data") != NULL);
    CHECK_EQ(p.transit, 0);
    CHECK_EQ(p.sender_holds, 1);
}

/* ------------------------------------- the sender's next lock: orders */

/* The sender passes `data` on, then, while the receiver still holds it,
 * takes `other`; later a third task takes `other` then `data`, an order
 * that contradicts nothing anybody held. */
typedef struct order {
    sq_mutex data, other;
    sq_mpsc ch;
    sq_oneshot took_other;
    bool declare;
} order;

static void *order_sender(void *arg)
{
    order *o = arg;
    CHECK_EQ(sq_mutex_lock(&o->data), 0);
    if (o->declare)
        CHECK_EQ(sq_check_lock_transfer(&o->data), 0);
    sq_mutex *m = &o->data;
    CHECK_EQ(sq_mpsc_send(&o->ch, &m), 0);
    CHECK_EQ(sq_mutex_lock(&o->other), 0); /* `data` still held */
    CHECK_EQ(sq_mutex_unlock(&o->other), 0);
    CHECK_EQ(sq_oneshot_send(&o->took_other, o), 0);
    return NULL;
}

static void *order_receiver(void *arg)
{
    order *o = arg;
    sq_mutex *m;
    CHECK_EQ(sq_mpsc_recv(&o->ch, &m), 0);
    void *v;
    CHECK_EQ(sq_oneshot_recv(&o->took_other, &v), 0);
    CHECK_EQ(sq_mutex_unlock(m), 0);
    return NULL;
}

static void *other_then_data(void *arg)
{
    order *o = arg;
    CHECK_EQ(sq_mutex_lock(&o->other), 0);
    CHECK_EQ(sq_mutex_lock(&o->data), 0);
    CHECK_EQ(sq_mutex_unlock(&o->data), 0);
    CHECK_EQ(sq_mutex_unlock(&o->other), 0);
    return NULL;
}

static void *order_root(void *arg)
{
    order *o = arg;
    sq_spawn_opts so = {.name = "sender"}, ro = {.name = "receiver"},
                  to = {.name = "third"};
    sq_task s, r, t;
    CHECK_EQ(sq_spawn(&s, order_sender, o, &so), 0);
    CHECK_EQ(sq_spawn(&r, order_receiver, o, &ro), 0);
    CHECK_EQ(sq_join(s, NULL), 0);
    CHECK_EQ(sq_join(r, NULL), 0);
    sq_check_order_stats st;
    sq_check_get_order_stats(&st);
    CHECK_EQ(st.edges, o->declare ? 0 : 1); /* data -> other, if charged */
    CHECK_EQ(sq_spawn(&t, other_then_data, o, &to), 0);
    CHECK_EQ(sq_join(t, NULL), 0);
    return NULL;
}

static void run_order(bool declare)
{
    order o = {.declare = declare};
    sq_mutex_init_named(&o.data, "transfer.data");
    sq_mutex_init_named(&o.other, "transfer.other");
    CHECK_EQ(sq_mpsc_init(&o.ch, sizeof(sq_mutex *), 1), 0);
    sq_oneshot_init(&o.took_other);
    sq_test_run(2, order_root, &o);
    CHECK_EQ(sq_mpsc_destroy(&o.ch), 0);
    CHECK_EQ(sq_mutex_destroy(&o.data), 0);
    CHECK_EQ(sq_mutex_destroy(&o.other), 0);
}

TEST(a_transferred_lock_orders_nothing_the_sender_takes_next)
{
    begin(SQ_CHECK_LOCK_ORDER);
    run_order(true);
    end();
    CHECK_EQ(count(SQ_CHECK_LOCK_ORDER), 0);
}

TEST(an_undeclared_hand_off_orders_the_senders_next_lock_after_it)
{
    begin(SQ_CHECK_LOCK_ORDER);
    run_order(false);
    end();
    /* The false inversion the transfer exists for. */
    CHECK_EQ(count(SQ_CHECK_LOCK_ORDER), 1);
    CHECK(strstr(cap.text[0], "transfer.data -> transfer.other: task "
                              "'sender'") != NULL);
}

/* --------------------------------------------- real holds still count */

typedef struct real {
    sq_mutex data, own;
    sq_mpsc ch;
} real;

static void *real_sender(void *arg)
{
    real *x = arg;
    CHECK_EQ(sq_mutex_lock(&x->data), 0);
    CHECK_EQ(sq_check_lock_transfer(&x->data), 0);
    CHECK_EQ(sq_mutex_lock(&x->own), 0);
    sq_sleep(SQ_MSEC); /* holding `own`, not `data`: reported for `own` */
    CHECK_EQ(sq_mutex_unlock(&x->own), 0);
    sq_mutex *m = &x->data;
    CHECK_EQ(sq_mpsc_send(&x->ch, &m), 0);
    return NULL;
}

static void *adopter(void *arg)
{
    real *x = arg;
    sq_mutex *m;
    CHECK_EQ(sq_mpsc_recv(&x->ch, &m), 0);
    CHECK_EQ(sq_check_lock_adopt(m), 0);
    sq_sleep(SQ_MSEC); /* holding `data` now: reported for the adopter */
    CHECK_EQ(sq_mutex_unlock(m), 0);
    return NULL;
}

static void *real_root(void *arg)
{
    real *x = arg;
    sq_spawn_opts so = {.name = "sender"}, ao = {.name = "adopter"};
    sq_task s, a;
    CHECK_EQ(sq_spawn(&s, real_sender, x, &so), 0);
    CHECK_EQ(sq_join(s, NULL), 0);
    CHECK_EQ(count(SQ_CHECK_HELD_ACROSS_WAIT), 1);
    CHECK_EQ(sq_spawn(&a, adopter, x, &ao), 0);
    CHECK_EQ(sq_join(a, NULL), 0);
    return NULL;
}

TEST(holds_across_waits_of_the_sender_and_the_adopter_are_still_reported)
{
    begin(SQ_CHECK_HELD_ACROSS_WAIT);
    real x;
    sq_mutex_init_named(&x.data, "transfer.data");
    sq_mutex_init_named(&x.own, "transfer.own");
    CHECK_EQ(sq_mpsc_init(&x.ch, sizeof(sq_mutex *), 1), 0);
    sq_test_run(2, real_root, &x);
    end();
    CHECK_EQ(count(SQ_CHECK_HELD_ACROSS_WAIT), 2);
    /* The sender's: its own lock only. */
    CHECK(strstr(cap.text[0], "task 'sender'") != NULL);
    CHECK(strstr(cap.text[0], "lock transfer.own") != NULL);
    CHECK(strstr(cap.text[0], "transfer.data") == NULL);
    /* The adopter's: the lock it took over, where it was first taken. */
    CHECK(strstr(cap.text[1], "task 'adopter'") != NULL);
    CHECK(strstr(cap.text[1], "lock transfer.data") != NULL);
    CHECK(strstr(cap.text[1], "transfer_test.c:") != NULL);
    CHECK_EQ(sq_mpsc_destroy(&x.ch), 0);
    CHECK_EQ(sq_mutex_destroy(&x.data), 0);
    CHECK_EQ(sq_mutex_destroy(&x.own), 0);
}

/* ------------------------------------------------------- the results */

static void *results_root(void *arg)
{
    (void)arg;
    sq_mutex m;
    sq_rwlock l;
    sq_mutex_init_named(&m, "transfer.m");
    sq_rwlock_init_named(&l, "transfer.l");
    uint64_t me = sq_task_id();
    int transit, mine;

    CHECK_EQ(sq_check_lock_transfer(NULL), -EINVAL);
    CHECK_EQ(sq_check_lock_adopt(NULL), -EINVAL);
    CHECK_EQ(sq_check_lock_transfer(&m), -ENOENT); /* not held */
    CHECK_EQ(sq_check_lock_adopt(&m), -ENOENT);    /* not in transit */

    CHECK_EQ(sq_mutex_lock(&m), 0);
    holds_of(&m, me, &transit, &mine);
    CHECK(transit == 0 && mine == 1);
    CHECK_EQ(sq_check_lock_transfer(&m), 0);
    holds_of(&m, me, &transit, &mine);
    CHECK(transit == 1 && mine == 0);
    CHECK_EQ(sq_check_lock_transfer(&m), -ENOENT); /* given away already */
    CHECK_EQ(sq_check_lock_adopt(&m), 0);          /* taken back */
    holds_of(&m, me, &transit, &mine);
    CHECK(transit == 0 && mine == 1);
    CHECK_EQ(sq_check_lock_adopt(&m), -ENOENT);
    CHECK_EQ(sq_check_lock_transfer(&m), 0);
    CHECK_EQ(sq_mutex_unlock(&m), 0); /* unlocking ends the transit */
    holds_of(&m, me, &transit, &mine);
    CHECK(transit == 0 && mine == 0);
    CHECK_EQ(sq_check_lock_adopt(&m), -ENOENT);

    /* Read holds: one at a time. */
    CHECK_EQ(sq_rwlock_read_lock(&l), 0);
    CHECK_EQ(sq_rwlock_read_lock(&l), 0);
    CHECK_EQ(sq_check_lock_transfer(&l), 0);
    holds_of(&l, me, &transit, &mine);
    CHECK(transit == 1 && mine == 1);
    CHECK_EQ(sq_rwlock_read_unlock(&l), 0); /* ours, not the one in transit */
    holds_of(&l, me, &transit, &mine);
    CHECK(transit == 1 && mine == 0);
    CHECK_EQ(sq_rwlock_read_unlock(&l), 0);
    holds_of(&l, me, &transit, &mine);
    CHECK(transit == 0 && mine == 0);
    CHECK_EQ(sq_mutex_destroy(&m), 0);
    CHECK_EQ(sq_rwlock_destroy(&l), 0);
    return NULL;
}

TEST(transfer_and_adopt_move_one_hold_and_say_when_there_is_none)
{
    begin(SQ_CHECK_HELD_ACROSS_WAIT);
    sq_test_run(1, results_root, NULL);
    end();
    for (int i = 0; i < 5; i++)
        CHECK_EQ(cap.n[i], 0);
}
