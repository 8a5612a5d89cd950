package main

import (
	"bytes"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// scale.idle_tasks.nN: spawn N goroutines that each count themselves started and
// then block on a shared channel until it is closed. The clock runs from the
// first spawn until all N have started (ns_per_op is ns per spawn); resident
// memory is sampled just before spawning and once all have started.
func idleWorkloads() []workload {
	var ws []workload
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		n := n
		ws = append(ws, workload{
			name:    "scale.idle_tasks.n" + strconv.Itoa(n),
			ops:     n,
			maxRuns: 3,
			run:     func() (runResult, error) { return idleRun(n) },
			extras: func(s summary) []field {
				return []field{
					{"rss_per_task_b", fmtFloat(s.metric, 1)},
					// The first run in the process (warm-up included) is
					// the only one that allocates every goroutine's
					// descriptor afresh: later runs reuse the runtime's
					// free list of dead goroutines.
					{"rss_per_task_b_first", fmtFloat(s.first.metric, 1)},
				}
			},
		})
	}
	return ws
}

// residentBytes reads the resident set size from /proc/self/statm.
func residentBytes() (int64, error) {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, err
	}
	f := bytes.Fields(b)
	if len(f) < 2 {
		return 0, fmt.Errorf("/proc/self/statm: unexpected %q", b)
	}
	pages, err := strconv.ParseInt(string(f[1]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("/proc/self/statm: %v", err)
	}
	return pages * int64(os.Getpagesize()), nil
}

// idleReleaseMemory makes every run start by handing the memory freed by
// earlier runs back to the kernel, so that this run's goroutine stacks show up
// in the resident set again instead of landing on pages that are already
// resident (which would make rss_per_task_b about 0 after the first run).
// The price is that every run pays the first-touch page faults of its stacks,
// as a fresh process would; with false, later runs reuse resident memory and
// spawn much faster, but measure no memory.
const idleReleaseMemory = true

func idleRun(n int) (runResult, error) {
	if idleReleaseMemory {
		debug.FreeOSMemory()
	}

	var (
		started    atomic.Int64
		wg         sync.WaitGroup
		gate       = make(chan struct{})
		allStarted = make(chan struct{})
	)
	wg.Add(n)
	task := func() {
		if started.Add(1) == int64(n) {
			close(allStarted)
		}
		<-gate
		wg.Done()
	}

	before, err := residentBytes()
	if err != nil {
		return runResult{}, err
	}
	t0 := time.Now()
	for i := 0; i < n; i++ {
		go task()
	}
	<-allStarted
	el := time.Since(t0)
	after, err := residentBytes()
	if err != nil {
		return runResult{}, err
	}

	close(gate)
	wg.Wait()
	if s := started.Load(); s != int64(n) {
		return runResult{}, fmt.Errorf("%d goroutines started, want %d", s, n)
	}
	return runResult{elapsed: el, metric: float64(after-before) / float64(n)}, nil
}
