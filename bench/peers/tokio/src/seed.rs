//! seed.lock_contention.cN: the seed's lock-contention test. A component
//! holds a map of strings behind an async reader-writer lock; 100,000
//! operations, each spawned as its own task that first takes a permit from
//! a semaphore of N permits. Operation i writes key-(i%100) = value-i when i
//! is even, and reads key-(i%100) when i is odd (so reads always miss).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{RwLock, Semaphore};
use tokio::task::JoinHandle;

use crate::{RunResult, Workload};

const OPS: usize = 100_000;
const KEYS: usize = 100;
const CONCURRENCY: [usize; 6] = [1, 2, 4, 8, 16, 32];

pub fn workloads() -> Vec<Workload> {
    CONCURRENCY
        .iter()
        .map(|&n| Workload::new(format!("seed.lock_contention.c{n}"), OPS as u64, move || lock_contention(n)))
        .collect()
}

/// The component under test: a map of strings behind an async RwLock.
struct Component {
    map: RwLock<HashMap<String, String>>,
}

impl Component {
    async fn write(&self, key: String, value: String) {
        self.map.write().await.insert(key, value);
    }

    async fn read(&self, key: &str) -> Option<String> {
        self.map.read().await.get(key).cloned()
    }
}

/// What one operation did, for the check.
#[derive(Clone, Copy, PartialEq)]
enum Outcome {
    Wrote,
    ReadHit,
    ReadMiss,
}

async fn lock_contention(permits: usize) -> RunResult {
    let component = Arc::new(Component { map: RwLock::new(HashMap::new()) });
    let sem = Arc::new(Semaphore::new(permits));

    let t0 = Instant::now();
    let ops: Vec<JoinHandle<Outcome>> = (0..OPS)
        .map(|i| {
            let component = component.clone();
            let sem = sem.clone();
            tokio::spawn(async move {
                let _permit = sem.acquire().await.unwrap();
                let key = format!("key-{}", i % KEYS);
                if i % 2 == 0 {
                    component.write(key, format!("value-{i}")).await;
                    Outcome::Wrote
                } else if component.read(&key).await.is_some() {
                    Outcome::ReadHit
                } else {
                    Outcome::ReadMiss
                }
            })
        })
        .collect();
    let (mut writes, mut hits) = (0, 0);
    for op in ops {
        match op.await.unwrap() {
            Outcome::Wrote => writes += 1,
            Outcome::ReadHit => hits += 1,
            Outcome::ReadMiss => {}
        }
    }
    let elapsed = t0.elapsed();

    check!(writes == OPS / 2, "{writes} writes, want {}", OPS / 2);
    check!(hits == 0, "{hits} reads found a key; odd keys are never written");
    check!(sem.available_permits() == permits, "permits lost: {} of {permits} available", sem.available_permits());
    let map = component.map.read().await;
    check!(map.len() == KEYS / 2, "map holds {} keys, want {}", map.len(), KEYS / 2);
    for k in 0..KEYS {
        let value = map.get(&format!("key-{k}"));
        if k % 2 == 1 {
            check!(value.is_none(), "odd key key-{k} exists");
            continue;
        }
        // Writers race, so any even i with i % 100 == k may have won.
        let value = value.unwrap_or_else(|| panic!("check failed: key-{k} missing"));
        let i: usize = value
            .strip_prefix("value-")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("check failed: key-{k} holds {value:?}"));
        check!(i < OPS && i % 2 == 0 && i % KEYS == k, "key-{k} holds {value:?}");
    }
    RunResult::timed(elapsed)
}
