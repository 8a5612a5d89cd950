/* The channel workloads sync.mpsc_bounded and sync.mpsc_unbounded of
 * shared/BENCHMARKS.md, on squirrel/mpsc.h.
 *
 * As in the peers (bench/peers/go/sync.go, bench/peers/tokio/src/sync.rs):
 * 5 producer tasks send 100,000 messages each; a message is a 64-bit word,
 * producer << 32 | sequence; the consumer (this run's root task, as in
 * tokio) receives until end of stream and checks that every producer's
 * sequence arrives in order and complete.  Each producer is a registered
 * sender (sq_mpsc_sender_add, the clone of tokio's tx.clone()) and drops
 * itself when done; the root drops the initial sender after spawning them
 * (tokio's drop(tx)), so the receiver sees end of stream after the last
 * message.  The timed part runs from before the spawns to end of stream. */
#include "bench.h"

#include "squirrel/mpsc.h"

#define MPSC_PRODUCERS 5
#define MPSC_PER_PRODUCER 100000
#define MPSC_BOUNDED_CAPACITY 1024

typedef struct mpsc_producer {
    sq_mpsc *ch;
    uint64_t p;
} mpsc_producer;

static void *mpsc_produce(void *arg)
{
    mpsc_producer *pr = arg;
    sq_mpsc *ch = pr->ch;
    uint64_t p = pr->p;
    for (uint64_t seq = 0; seq < MPSC_PER_PRODUCER; seq++) {
        uint64_t m = p << 32 | seq;
        int rc = sq_mpsc_send(ch, &m);
        if (rc)
            bench_fail("producer %llu: sq_mpsc_send: %s (%d)",
                       (unsigned long long)p, sq_strerror(rc), rc);
    }
    bench_check(sq_mpsc_sender_drop(ch), "sq_mpsc_sender_drop");
    return NULL;
}

static void mpsc_run(const bench_workload *w, bench_run *out)
{
    sq_mpsc ch;
    bench_check(sq_mpsc_init(&ch, sizeof(uint64_t), (size_t)w->param),
                "sq_mpsc_init");
    mpsc_producer pr[MPSC_PRODUCERS];
    uint64_t next[MPSC_PRODUCERS] = {0};
    uint64_t received = 0;

    int64_t t0 = sq_now();
    for (uint64_t p = 0; p < MPSC_PRODUCERS; p++) {
        pr[p] = (mpsc_producer){.ch = &ch, .p = p};
        bench_check(sq_mpsc_sender_add(&ch), "sq_mpsc_sender_add");
        bench_check(sq_spawn(NULL, mpsc_produce, &pr[p], NULL), "sq_spawn");
    }
    bench_check(sq_mpsc_sender_drop(&ch), "sq_mpsc_sender_drop");
    for (;;) {
        uint64_t m;
        int rc = sq_mpsc_recv(&ch, &m);
        if (rc == -EPIPE)
            break; /* every producer has dropped its sender */
        bench_check(rc, "sq_mpsc_recv");
        uint64_t p = m >> 32, seq = m & 0xffffffffu;
        if (p >= MPSC_PRODUCERS)
            bench_fail("message from unknown producer %llu",
                       (unsigned long long)p);
        if (seq != next[p])
            bench_fail("producer %llu: got sequence %llu, want %llu",
                       (unsigned long long)p, (unsigned long long)seq,
                       (unsigned long long)next[p]);
        next[p]++;
        received++;
    }
    out->ns = sq_now() - t0;

    if (received != (uint64_t)MPSC_PRODUCERS * MPSC_PER_PRODUCER)
        bench_fail("received %llu messages, want %llu",
                   (unsigned long long)received,
                   (unsigned long long)MPSC_PRODUCERS * MPSC_PER_PRODUCER);
    for (int p = 0; p < MPSC_PRODUCERS; p++)
        if (next[p] != MPSC_PER_PRODUCER)
            bench_fail("producer %d: %llu messages, want %d", p,
                       (unsigned long long)next[p], MPSC_PER_PRODUCER);
    bench_check(sq_mpsc_destroy(&ch), "sq_mpsc_destroy");
}

const bench_workload bench_mpsc_workloads[] = {
    {.name = "sync.mpsc_bounded",
     .ops = (uint64_t)MPSC_PRODUCERS * MPSC_PER_PRODUCER,
     .param = MPSC_BOUNDED_CAPACITY,
     .run = mpsc_run},
    {.name = "sync.mpsc_unbounded",
     .ops = (uint64_t)MPSC_PRODUCERS * MPSC_PER_PRODUCER,
     .param = 0,
     .run = mpsc_run},
    {.name = NULL},
};
