//! The runtime workloads (rt.*): spawning, yielding, waking, and skynet.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;

use crate::{RunResult, Summary, Workload};

const SPAWN_MANY_TASKS: usize = 10_000;
const CHAIN_DEPTH: usize = 1_000;
const YIELD_TASKS: usize = 200;
const YIELDS_PER_TASK: usize = 1_000;
const PING_PONG_ROUNDS: u64 = 1_000;
const SKYNET_LEAVES: u64 = 1_000_000;
const SKYNET_TASKS: u64 = 1_111_111;
const SKYNET_SUM: u64 = 499_999_500_000;

pub fn workloads() -> Vec<Workload> {
    vec![
        Workload::new("rt.spawn_many", SPAWN_MANY_TASKS as u64, spawn_many),
        Workload::new("rt.chained_spawn", CHAIN_DEPTH as u64, chained_spawn),
        Workload::new("rt.yield_many", (YIELD_TASKS * YIELDS_PER_TASK) as u64, yield_many),
        Workload::new("rt.ping_pong", PING_PONG_ROUNDS, ping_pong),
        Workload::new("rt.skynet", SKYNET_TASKS, skynet_run).extras(skynet_extras),
    ]
}

/// rt.spawn_many: from inside a task, spawn 10,000 tasks; each decrements a
/// shared atomic; the one that brings it to zero signals completion.
async fn spawn_many() -> RunResult {
    struct Shared {
        remaining: AtomicUsize,
        done: Notify,
    }
    let shared = Arc::new(Shared { remaining: AtomicUsize::new(SPAWN_MANY_TASKS), done: Notify::new() });

    let t0 = Instant::now();
    for _ in 0..SPAWN_MANY_TASKS {
        let shared = shared.clone();
        tokio::spawn(async move {
            if shared.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
                // notify_one stores a permit if the spawner is not waiting yet.
                shared.done.notify_one();
            }
        });
    }
    shared.done.notified().await;
    let elapsed = t0.elapsed();

    let left = shared.remaining.load(Ordering::Acquire);
    check!(left == 0, "counter is {left}, want 0");
    RunResult::timed(elapsed)
}

/// rt.chained_spawn: a task spawns the next, 1,000 deep; the last one
/// signals completion with the number of tasks in the chain.
async fn chained_spawn() -> RunResult {
    fn link(depth: usize, done: oneshot::Sender<usize>) {
        if depth == CHAIN_DEPTH {
            let _ = done.send(depth);
        } else {
            tokio::spawn(async move { link(depth + 1, done) });
        }
    }

    let (tx, rx) = oneshot::channel();
    let t0 = Instant::now();
    tokio::spawn(async move { link(1, tx) }); // this spawn and 999 more
    let depth = rx.await.expect("the chain dropped its completion sender");
    let elapsed = t0.elapsed();

    check!(depth == CHAIN_DEPTH, "chain reported depth {depth}, want {CHAIN_DEPTH}");
    RunResult::timed(elapsed)
}

/// rt.yield_many: 200 tasks each yield 1,000 times.
async fn yield_many() -> RunResult {
    let t0 = Instant::now();
    let tasks: Vec<JoinHandle<usize>> = (0..YIELD_TASKS)
        .map(|_| {
            tokio::spawn(async {
                for _ in 0..YIELDS_PER_TASK {
                    tokio::task::yield_now().await;
                }
                YIELDS_PER_TASK
            })
        })
        .collect();
    let mut yields = 0;
    for t in tasks {
        yields += t.await.unwrap();
    }
    let elapsed = t0.elapsed();

    check!(yields == YIELD_TASKS * YIELDS_PER_TASK, "{yields} yields, want {}", YIELD_TASKS * YIELDS_PER_TASK);
    RunResult::timed(elapsed)
}

/// rt.ping_pong: 1,000 rounds, one after another: spawn a task, send it a
/// value over a oneshot, it answers value + 1 over another oneshot.
async fn ping_pong() -> RunResult {
    let mut sum = 0;
    let t0 = Instant::now();
    for round in 0..PING_PONG_ROUNDS {
        let (ping_tx, ping_rx) = oneshot::channel::<u64>();
        let (pong_tx, pong_rx) = oneshot::channel::<u64>();
        tokio::spawn(async move {
            let v = ping_rx.await.expect("ping sender dropped");
            let _ = pong_tx.send(v + 1);
        });
        ping_tx.send(round).expect("ponger dropped its receiver");
        let got = pong_rx.await.expect("ponger dropped its sender");
        check!(got == round + 1, "round {round}: answer {got}, want {}", round + 1);
        sum += got;
    }
    let elapsed = t0.elapsed();

    let want = PING_PONG_ROUNDS * (PING_PONG_ROUNDS + 1) / 2;
    check!(sum == want, "sum of answers {sum}, want {want}");
    RunResult::timed(elapsed)
}

/// One node of the skynet tree, as its own task: a leaf returns its number,
/// a parent spawns its ten children and sums what they return.
fn skynet(num: u64, size: u64) -> JoinHandle<u64> {
    tokio::spawn(async move {
        if size == 1 {
            return num;
        }
        let size = size / 10;
        let children: [JoinHandle<u64>; 10] = std::array::from_fn(|i| skynet(num + i as u64 * size, size));
        let mut sum = 0;
        for child in children {
            sum += child.await.unwrap();
        }
        sum
    })
}

/// rt.skynet: a 10-ary tree of 1,111,111 tasks with 1,000,000 leaves.
async fn skynet_run() -> RunResult {
    let t0 = Instant::now();
    let sum = skynet(0, SKYNET_LEAVES).await.unwrap();
    let elapsed = t0.elapsed();

    check!(sum == SKYNET_SUM, "root got {sum}, want {SKYNET_SUM}");
    RunResult::timed(elapsed)
}

/// ru_maxrss is in KiB on Linux and is the process's peak so far; rt.skynet
/// runs early, before any workload that holds more memory.
fn skynet_extras(_: &Summary) -> Vec<(&'static str, String)> {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    check!(rc == 0, "getrusage failed: {}", std::io::Error::last_os_error());
    vec![("peak_rss_kib", ru.ru_maxrss.to_string())]
}
