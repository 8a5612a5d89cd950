//! The synchronisation workloads (sync.*), on tokio::sync's task-aware
//! primitives.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot, Mutex, RwLock, Semaphore};
use tokio::task::JoinHandle;

use crate::{RunResult, Summary, Workload};

const UNCONTENDED_OPS: u64 = 1_000_000;
const CONTENDED_TASKS: u64 = 32;
const CONTENDED_OPS_PER_TASK: u64 = 10_000;
const RW_TASKS: usize = 32;
const RW_OPS_PER_TASK: usize = 10_000;
const RW_SLOTS: usize = 16;
const SEM_TASKS: usize = 6;
const SEM_PERMITS: usize = 5;
const SEM_OPS_PER_TASK: usize = 10_000;
const PRODUCERS: u64 = 5;
const PER_PRODUCER: u64 = 100_000;
const BOUNDED_CAPACITY: usize = 1_024;
const ONESHOTS: u64 = 100_000;

pub fn workloads() -> Vec<Workload> {
    vec![
        Workload::new("sync.mutex_uncontended", UNCONTENDED_OPS, mutex_uncontended),
        Workload::new("sync.mutex_contended", CONTENDED_TASKS * CONTENDED_OPS_PER_TASK, mutex_contended),
        Workload::new("sync.rwlock_read_heavy", (RW_TASKS * RW_OPS_PER_TASK) as u64, rwlock_read_heavy),
        Workload::new("sync.semaphore_contended", (SEM_TASKS * SEM_OPS_PER_TASK) as u64, semaphore_contended)
            .extras(semaphore_extras),
        Workload::new("sync.mpsc_bounded", PRODUCERS * PER_PRODUCER, mpsc_bounded),
        Workload::new("sync.mpsc_unbounded", PRODUCERS * PER_PRODUCER, mpsc_unbounded),
        Workload::new("sync.oneshot", ONESHOTS, oneshot_run),
    ]
}

/// sync.mutex_uncontended: one task locks, increments, unlocks, 1,000,000
/// times.
async fn mutex_uncontended() -> RunResult {
    let counter = Mutex::new(0u64);
    let t0 = Instant::now();
    for _ in 0..UNCONTENDED_OPS {
        *counter.lock().await += 1;
    }
    let elapsed = t0.elapsed();

    let n = *counter.lock().await;
    check!(n == UNCONTENDED_OPS, "counter is {n}, want {UNCONTENDED_OPS}");
    RunResult::timed(elapsed)
}

/// sync.mutex_contended: 32 tasks each lock, increment a shared counter,
/// unlock, 10,000 times.
async fn mutex_contended() -> RunResult {
    let counter = Arc::new(Mutex::new(0u64));
    let t0 = Instant::now();
    let tasks: Vec<JoinHandle<()>> = (0..CONTENDED_TASKS)
        .map(|_| {
            let counter = counter.clone();
            tokio::spawn(async move {
                for _ in 0..CONTENDED_OPS_PER_TASK {
                    *counter.lock().await += 1;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = t0.elapsed();

    let n = *counter.lock().await;
    let want = CONTENDED_TASKS * CONTENDED_OPS_PER_TASK;
    check!(n == want, "counter is {n}, want {want}");
    RunResult::timed(elapsed)
}

/// sync.rwlock_read_heavy: 32 tasks, 10,000 operations each; 9 in 10 read
/// the shared array of 16 integers under the read lock (summing it, and
/// checking it is not torn), 1 in 10 bump all of them under the write lock.
async fn rwlock_read_heavy() -> RunResult {
    let slots = Arc::new(RwLock::new([0u64; RW_SLOTS]));
    let t0 = Instant::now();
    let tasks: Vec<JoinHandle<usize>> = (0..RW_TASKS)
        .map(|t| {
            let slots = slots.clone();
            tokio::spawn(async move {
                let mut writes = 0;
                for op in 0..RW_OPS_PER_TASK {
                    // Staggered by task, so writes do not all line up.
                    if (op + t) % 10 == 0 {
                        let mut s = slots.write().await;
                        for x in s.iter_mut() {
                            *x += 1;
                        }
                        writes += 1;
                    } else {
                        let s = slots.read().await;
                        let sum: u64 = s.iter().sum();
                        check!(sum == s[0] * RW_SLOTS as u64, "torn read: {:?}", *s);
                    }
                }
                writes
            })
        })
        .collect();
    let mut writes = 0;
    for t in tasks {
        writes += t.await.unwrap();
    }
    let elapsed = t0.elapsed();

    let want = RW_TASKS * RW_OPS_PER_TASK / 10;
    check!(writes == want, "{writes} writes, want {want}");
    let s = *slots.read().await;
    check!(s.iter().all(|&x| x == want as u64), "final state {s:?}, want every slot {want}");
    RunResult::timed(elapsed)
}

/// sync.semaphore_contended: 6 tasks share a semaphore of 5 permits; each
/// acquires, yields once while holding its permit, and releases, 10,000
/// times. An atomic count of holders checks that at most 5 ever hold one.
async fn semaphore_contended() -> RunResult {
    struct Shared {
        sem: Semaphore,
        holders: AtomicUsize,
        high_water: AtomicUsize,
    }
    let shared = Arc::new(Shared {
        sem: Semaphore::new(SEM_PERMITS),
        holders: AtomicUsize::new(0),
        high_water: AtomicUsize::new(0),
    });

    let t0 = Instant::now();
    let tasks: Vec<JoinHandle<()>> = (0..SEM_TASKS)
        .map(|_| {
            let shared = shared.clone();
            tokio::spawn(async move {
                for _ in 0..SEM_OPS_PER_TASK {
                    let permit = shared.sem.acquire().await.unwrap();
                    let holders = shared.holders.fetch_add(1, Ordering::AcqRel) + 1;
                    shared.high_water.fetch_max(holders, Ordering::AcqRel);
                    check!(holders <= SEM_PERMITS, "{holders} tasks hold a permit, at most {SEM_PERMITS} may");
                    tokio::task::yield_now().await;
                    shared.holders.fetch_sub(1, Ordering::AcqRel);
                    drop(permit);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = t0.elapsed();

    let high = shared.high_water.load(Ordering::Acquire);
    check!(high <= SEM_PERMITS, "high-water mark {high}, at most {SEM_PERMITS}");
    check!(shared.sem.available_permits() == SEM_PERMITS, "permits lost: {} available", shared.sem.available_permits());
    RunResult { elapsed, metric: high as f64 }
}

fn semaphore_extras(s: &Summary) -> Vec<(&'static str, String)> {
    let high = s.results.iter().map(|r| r.metric as usize).max().unwrap_or(0);
    vec![("max_holders", high.to_string())]
}

/// A message carries its producer in the high half and its sequence number
/// in the low half.
fn message(producer: u64, seq: u64) -> u64 {
    producer << 32 | seq
}

/// The consumer's check: every producer's messages arrive in order, and all
/// of them arrive.
struct SequenceCheck {
    next: [u64; PRODUCERS as usize],
    received: u64,
}

impl SequenceCheck {
    fn new() -> SequenceCheck {
        SequenceCheck { next: [0; PRODUCERS as usize], received: 0 }
    }

    #[inline]
    fn receive(&mut self, m: u64) {
        let (producer, seq) = ((m >> 32) as usize, m & 0xffff_ffff);
        check!(producer < PRODUCERS as usize, "message from unknown producer {producer}");
        check!(seq == self.next[producer], "producer {producer}: got seq {seq}, want {}", self.next[producer]);
        self.next[producer] += 1;
        self.received += 1;
    }

    fn finish(&self) {
        let want = PRODUCERS * PER_PRODUCER;
        check!(self.received == want, "received {} messages, want {want}", self.received);
        check!(self.next.iter().all(|&n| n == PER_PRODUCER), "per-producer counts {:?}", self.next);
    }
}

/// sync.mpsc_bounded: 5 producers send 100,000 messages each into a channel
/// of capacity 1,024; this task receives all 500,000.
async fn mpsc_bounded() -> RunResult {
    let (tx, mut rx) = mpsc::channel::<u64>(BOUNDED_CAPACITY);
    let mut check = SequenceCheck::new();
    let t0 = Instant::now();
    for p in 0..PRODUCERS {
        let tx = tx.clone();
        tokio::spawn(async move {
            for seq in 0..PER_PRODUCER {
                tx.send(message(p, seq)).await.expect("consumer dropped its receiver");
            }
        });
    }
    drop(tx);
    while let Some(m) = rx.recv().await {
        check.receive(m);
    }
    let elapsed = t0.elapsed();

    check.finish();
    RunResult::timed(elapsed)
}

/// sync.mpsc_unbounded: the same with an unbounded channel.
async fn mpsc_unbounded() -> RunResult {
    let (tx, mut rx) = mpsc::unbounded_channel::<u64>();
    let mut check = SequenceCheck::new();
    let t0 = Instant::now();
    for p in 0..PRODUCERS {
        let tx = tx.clone();
        tokio::spawn(async move {
            for seq in 0..PER_PRODUCER {
                tx.send(message(p, seq)).expect("consumer dropped its receiver");
            }
        });
    }
    drop(tx);
    while let Some(m) = rx.recv().await {
        check.receive(m);
    }
    let elapsed = t0.elapsed();

    check.finish();
    RunResult::timed(elapsed)
}

/// sync.oneshot: 100,000 times, one after another: create a oneshot, send on
/// it from a freshly spawned task, receive in this one.
async fn oneshot_run() -> RunResult {
    let mut sum = 0;
    let t0 = Instant::now();
    for i in 0..ONESHOTS {
        let (tx, rx) = oneshot::channel::<u64>();
        tokio::spawn(async move {
            let _ = tx.send(i);
        });
        let got = rx.await.expect("sender dropped without sending");
        check!(got == i, "oneshot {i}: received {got}");
        sum += got;
    }
    let elapsed = t0.elapsed();

    let want = ONESHOTS * (ONESHOTS - 1) / 2;
    check!(sum == want, "sum {sum}, want {want}");
    RunResult::timed(elapsed)
}
