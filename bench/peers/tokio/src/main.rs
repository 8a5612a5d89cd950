//! squirrel-peer-tokio: the tokio peer of the Squirrel benchmark suite.
//!
//! It runs the workloads defined in shared/BENCHMARKS.md on a tokio
//! multi-threaded runtime with two workers and prints one JSON line per
//! workload on stdout. Progress and diagnostics go to stderr.
//!
//! Usage: squirrel-peer-tokio [--runs N] [--warmup N] [--quick] [FILTER]
//!
//! Every run checks its own result; a wrong result (or any panic anywhere,
//! including inside a spawned task) prints a message to stderr and exits
//! with status 1.

use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use tokio::runtime::Runtime;

/// Fails the current run with a message unless `cond` holds.
macro_rules! check {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            panic!("check failed: {}", format!($($arg)+));
        }
    };
}

mod idle;
mod net;
mod rt;
mod seed;
mod sync;

/// What one run reports: the timed part of it, and an optional per-run
/// figure (for example resident bytes per task) that the workload's extras
/// may summarise.
#[derive(Clone, Copy, Debug)]
pub struct RunResult {
    pub elapsed: Duration,
    pub metric: f64,
}

impl RunResult {
    pub fn timed(elapsed: Duration) -> RunResult {
        RunResult { elapsed, metric: 0.0 }
    }
}

/// The body of one run: a future spawned on the runtime, so that it runs
/// inside a task on a worker thread (spawns from there go to the worker's
/// local queue, as in real tokio programs).
type RunFn = Box<dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = RunResult> + Send>>>;

/// Extra JSON fields, computed once all counted runs are done: (key, value
/// already formatted as a JSON number).
type ExtrasFn = Box<dyn Fn(&Summary) -> Vec<(&'static str, String)>>;

pub struct Workload {
    pub name: String,
    /// Operations per run: ns_per_op = run time / ops.
    pub ops: u64,
    /// Cap on the counted runs, and no warm-up, for very heavy workloads.
    pub heavy: bool,
    pub run: RunFn,
    pub extras: Option<ExtrasFn>,
}

impl Workload {
    pub fn new<F, Fut>(name: impl Into<String>, ops: u64, run: F) -> Workload
    where
        F: Fn() -> Fut + 'static,
        Fut: std::future::Future<Output = RunResult> + Send + 'static,
    {
        Workload {
            name: name.into(),
            ops,
            heavy: false,
            run: Box::new(move || Box::pin(run())),
            extras: None,
        }
    }

    pub fn heavy(mut self) -> Workload {
        self.heavy = true;
        self
    }

    pub fn extras(mut self, f: impl Fn(&Summary) -> Vec<(&'static str, String)> + 'static) -> Workload {
        self.extras = Some(Box::new(f));
        self
    }
}

/// Medians over the counted runs, and the runs themselves.
pub struct Summary {
    pub ops: u64,
    pub runs: usize,
    pub ns_per_op: f64,
    pub ms: f64,
    pub results: Vec<RunResult>,
    /// The first run of the workload in this process, warm-up included.
    pub first: RunResult,
}

impl Summary {
    pub fn median_metric(&self) -> f64 {
        median(self.results.iter().map(|r| r.metric).collect())
    }
}

/// Counted runs of a heavy workload are capped at this.
const HEAVY_MAX_RUNS: usize = 3;

fn all_workloads() -> Vec<Workload> {
    let mut ws = Vec::new();
    ws.extend(rt::workloads());
    ws.extend(net::workloads());
    ws.extend(sync::workloads());
    ws.extend(seed::workloads());
    // Last, so that their memory does not inflate rt.skynet's peak RSS.
    ws.extend(idle::workloads());
    ws
}

/// The workload being run, for the failure message.
static CURRENT: Mutex<String> = Mutex::new(String::new());

fn fail(msg: &str) -> ! {
    eprintln!("squirrel-peer-tokio: {msg}");
    std::process::exit(1);
}

fn usage() {
    eprintln!("usage: squirrel-peer-tokio [--runs N] [--warmup N] [--quick] [FILTER]");
    eprintln!("workloads:");
    for w in all_workloads() {
        eprintln!("  {}", w.name);
    }
}

struct Options {
    runs: usize,
    warmup: usize,
    filter: String,
}

fn parse_args() -> Options {
    let mut opts = Options { runs: 5, warmup: 1, filter: String::new() };
    let mut args: Vec<String> = Vec::new();
    // Accept --name=value as well as --name value.
    for a in std::env::args().skip(1) {
        match a.split_once('=') {
            Some((k, v)) if a.starts_with("--") => {
                args.push(k.to_string());
                args.push(v.to_string());
            }
            _ => args.push(a),
        }
    }
    let mut it = args.into_iter();
    let number = |it: &mut std::vec::IntoIter<String>, name: &str| -> usize {
        match it.next() {
            None => fail(&format!("{name} needs a value")),
            Some(v) => v.parse().unwrap_or_else(|_| fail(&format!("{name}: bad value {v:?}"))),
        }
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--runs" | "-runs" => {
                opts.runs = number(&mut it, "--runs");
                if opts.runs == 0 {
                    fail("--runs must be at least 1");
                }
            }
            "--warmup" | "-warmup" => opts.warmup = number(&mut it, "--warmup"),
            "--quick" | "-quick" => {
                opts.runs = 1;
                opts.warmup = 0;
            }
            "-h" | "--help" | "-help" => {
                usage();
                std::process::exit(0);
            }
            _ if a.starts_with('-') => {
                usage();
                fail(&format!("unknown option {a:?}"));
            }
            _ if !opts.filter.is_empty() => {
                fail(&format!("only one FILTER may be given (got {:?} and {a:?})", opts.filter))
            }
            _ => opts.filter = a,
        }
    }
    opts
}

/// The runtime every workload uses: tokio's multi-threaded scheduler with
/// two workers, all drivers (I/O, time) enabled, everything else default.
fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(&format!("cannot build the tokio runtime: {e}")))
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

fn run_workload(w: &Workload, opts: &Options) {
    *CURRENT.lock().unwrap() = w.name.clone();
    let (runs, warmup) = if w.heavy {
        (opts.runs.min(HEAVY_MAX_RUNS), 0)
    } else {
        (opts.runs, opts.warmup)
    };
    eprintln!("{}: {} warm-up, {} runs", w.name, warmup, runs);

    // A fresh runtime per workload, so that no workload inherits another's
    // queues, timers or worker state.
    let rt = runtime();
    let one = || rt.block_on(rt.spawn((w.run)())).unwrap_or_else(|e| fail(&format!("{}: {e}", w.name)));
    let warmups: Vec<RunResult> = (0..warmup).map(|_| one()).collect();
    let results: Vec<RunResult> = (0..runs).map(|_| one()).collect();
    drop(rt);
    let first = warmups.first().copied().unwrap_or(results[0]);

    let ns = |r: &RunResult| r.elapsed.as_nanos() as f64;
    let s = Summary {
        ops: w.ops,
        runs,
        ns_per_op: median(results.iter().map(|r| ns(r) / w.ops as f64).collect()),
        ms: median(results.iter().map(|r| ns(r) / 1e6).collect()),
        results,
        first,
    };
    let mut line = format!(
        r#"{{"bench":"{}","peer":"tokio","ns_per_op":{:.1},"ops":{},"runs":{},"ms":{:.3}"#,
        w.name, s.ns_per_op, s.ops, s.runs, s.ms
    );
    if let Some(extras) = &w.extras {
        for (k, v) in extras(&s) {
            line.push_str(&format!(r#","{k}":{v}"#));
        }
    }
    line.push('}');
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").and_then(|_| out.flush()).unwrap_or_else(|e| fail(&format!("stdout: {e}")));
}

fn main() {
    // A panic anywhere (a failed check, in any task) ends the process with a
    // clear message and status 1: a task that dies silently would otherwise
    // leave its run waiting forever.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        let name = CURRENT.lock().map(|n| n.clone()).unwrap_or_default();
        fail(&format!("{name}: FAILED"));
    }));

    let opts = parse_args();
    let mut selected = 0;
    for w in all_workloads().iter().filter(|w| matches(&w.name, &opts.filter)) {
        selected += 1;
        run_workload(w, &opts);
    }
    if selected == 0 {
        fail(&format!("no workload matches {:?}", opts.filter));
    }
}

/// A workload is selected by a substring of its name, or by its exact name
/// when the filter ends in '$'.
fn matches(name: &str, filter: &str) -> bool {
    match filter.strip_suffix('$') {
        Some(exact) => name == exact,
        None => name.contains(filter),
    }
}
