//! scale.idle_tasks.nN: how fast N tasks that then sit idle can be started, and
//! how much resident memory each one costs.
//!
//! From inside a task, spawn N tasks that each count themselves started and
//! then wait on a shared Notify until released. The clock runs from the
//! first spawn until all N have started (ns per spawn). Resident memory is
//! sampled just before the first spawn and once all have started; the
//! difference over N is rss_per_task_b. Then all are released, and the run
//! waits until every one has finished.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Notify;

use crate::{RunResult, Summary, Workload};

const SIZES: [usize; 3] = [10_000, 100_000, 1_000_000];

pub fn workloads() -> Vec<Workload> {
    SIZES
        .iter()
        .map(|&n| {
            Workload::new(format!("scale.idle_tasks.n{n}"), n as u64, move || idle_tasks(n))
                .heavy()
                .extras(idle_extras)
        })
        .collect()
}

/// Resident memory of the process now, in bytes (/proc/self/statm).
fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_else(|e| panic!("/proc/self/statm: {e}"));
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|f| f.parse().ok())
        .unwrap_or_else(|| panic!("cannot parse /proc/self/statm: {statm:?}"));
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * page as usize
}

struct Shared {
    n: usize,
    started: AtomicUsize,
    finished: AtomicUsize,
    all_started: Notify,
    release: Notify,
    all_finished: Notify,
}

async fn idle_tasks(n: usize) -> RunResult {
    let shared = Arc::new(Shared {
        n,
        started: AtomicUsize::new(0),
        finished: AtomicUsize::new(0),
        all_started: Notify::new(),
        release: Notify::new(),
        all_finished: Notify::new(),
    });
    // Give back what earlier runs freed, so the baseline is honest and this
    // run's tasks must take fresh pages rather than reuse retained ones.
    // SAFETY: malloc_trim has no preconditions.
    unsafe { libc::malloc_trim(0) };

    let before = resident_bytes();
    let t0 = Instant::now();
    for _ in 0..n {
        let shared = shared.clone();
        tokio::spawn(async move {
            // Registered before counting itself started, so the release
            // (notify_waiters) cannot be missed even if it comes before
            // this future is first polled.
            let released = shared.release.notified();
            if shared.started.fetch_add(1, Ordering::AcqRel) + 1 == shared.n {
                shared.all_started.notify_one();
            }
            released.await;
            if shared.finished.fetch_add(1, Ordering::AcqRel) + 1 == shared.n {
                shared.all_finished.notify_one();
            }
        });
    }
    shared.all_started.notified().await;
    let elapsed = t0.elapsed();
    let after = resident_bytes();

    shared.release.notify_waiters();
    shared.all_finished.notified().await;

    let started = shared.started.load(Ordering::Acquire);
    let finished = shared.finished.load(Ordering::Acquire);
    check!(started == n, "{started} tasks started, want {n}");
    check!(finished == n, "{finished} tasks finished, want {n}");
    let per_task = after.saturating_sub(before) as f64 / n as f64;
    eprintln!(
        "  scale.idle_tasks.n{n}: {:.3} ms to start, resident {} -> {} KiB ({per_task:.1} B/task)",
        elapsed.as_secs_f64() * 1e3,
        before / 1024,
        after / 1024
    );
    RunResult { elapsed, metric: per_task }
}

fn idle_extras(s: &Summary) -> Vec<(&'static str, String)> {
    vec![
        ("rss_per_task_b", format!("{:.1}", s.median_metric())),
        // The first run in the process, the one most certain to take every
        // task's memory afresh from the kernel (malloc_trim cannot give back
        // every freed page, so later runs may reuse some).
        ("rss_per_task_b_first", format!("{:.1}", s.first.metric)),
    ]
}
