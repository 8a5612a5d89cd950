package main

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func rtWorkloads() []workload {
	return []workload{
		{name: "rt.spawn_many", ops: spawnManyTasks, run: spawnMany},
		{name: "rt.chained_spawn", ops: chainDepth, run: chainedSpawn},
		{name: "rt.yield_many", ops: yieldTasks * yieldsPerTask, run: yieldMany},
		{name: "rt.ping_pong", ops: pingPongRounds, run: pingPong},
		{name: "rt.skynet", ops: skynetTasks, run: skynetRun, extras: skynetExtras},
	}
}

// rt.spawn_many: from inside a task, spawn 10,000 tasks; each decrements a
// shared atomic; the one that reaches zero signals completion.
const spawnManyTasks = 10_000

func spawnMany() (runResult, error) {
	var remaining atomic.Int64
	remaining.Store(spawnManyTasks)
	done := make(chan struct{})

	t0 := time.Now()
	// The main goroutine is an ordinary goroutine on one of the two Ps, so
	// it is "inside a task" already.
	// One closure shared by every spawn, so a spawn allocates nothing but
	// the goroutine itself.
	task := func() {
		if remaining.Add(-1) == 0 {
			close(done)
		}
	}
	for i := 0; i < spawnManyTasks; i++ {
		go task()
	}
	<-done
	el := time.Since(t0)

	if n := remaining.Load(); n != 0 {
		return runResult{}, fmt.Errorf("counter is %d, want 0", n)
	}
	return runResult{elapsed: el}, nil
}

// rt.chained_spawn: a task spawns the next, 1,000 deep; the last one signals.
const chainDepth = 1_000

func chain(left int, done chan<- int) {
	if left == 0 {
		done <- chainDepth
		return
	}
	go chain(left-1, done)
}

func chainedSpawn() (runResult, error) {
	done := make(chan int, 1)
	t0 := time.Now()
	go chain(chainDepth-1, done) // this spawn plus 999 more: 1,000 spawns
	n := <-done
	el := time.Since(t0)
	if n != chainDepth {
		return runResult{}, fmt.Errorf("chain reported %d, want %d", n, chainDepth)
	}
	return runResult{elapsed: el}, nil
}

// rt.yield_many: 200 tasks each yield 1,000 times.
const (
	yieldTasks    = 200
	yieldsPerTask = 1_000
)

func yieldMany() (runResult, error) {
	var yields atomic.Int64
	var wg sync.WaitGroup
	wg.Add(yieldTasks)
	t0 := time.Now()
	task := func() {
		n := 0
		for ; n < yieldsPerTask; n++ {
			runtime.Gosched()
		}
		yields.Add(int64(n))
		wg.Done()
	}
	for i := 0; i < yieldTasks; i++ {
		go task()
	}
	wg.Wait()
	el := time.Since(t0)
	if n := yields.Load(); n != yieldTasks*yieldsPerTask {
		return runResult{}, fmt.Errorf("%d yields, want %d", n, yieldTasks*yieldsPerTask)
	}
	return runResult{elapsed: el}, nil
}

// rt.ping_pong: 1,000 rounds, one after another: spawn a task, send it a value
// over a oneshot, it answers over another oneshot. Go's oneshot is a channel
// of capacity 1 made for the single use, so neither send ever blocks.
const pingPongRounds = 1_000

func ponger(ping <-chan int, pong chan<- int) {
	pong <- <-ping + 1
}

func pingPong() (runResult, error) {
	sum := 0
	t0 := time.Now()
	for r := 0; r < pingPongRounds; r++ {
		ping, pong := make(chan int, 1), make(chan int, 1)
		go ponger(ping, pong)
		ping <- r
		got := <-pong
		if got != r+1 {
			return runResult{}, fmt.Errorf("round %d: answer %d, want %d", r, got, r+1)
		}
		sum += got
	}
	el := time.Since(t0)
	if want := pingPongRounds * (pingPongRounds + 1) / 2; sum != want {
		return runResult{}, fmt.Errorf("sum of answers %d, want %d", sum, want)
	}
	return runResult{elapsed: el}, nil
}

// rt.skynet: a 10-ary tree of goroutines with 1,000,000 leaves (1,111,111
// goroutines in all); leaf i returns i; parents sum their children.
const (
	skynetLeaves = 1_000_000
	skynetTasks  = 1_111_111
	skynetSum    = 499_999_500_000
)

func skynet(out chan<- int64, num, size int64) {
	if size == 1 {
		out <- num
		return
	}
	// Buffered for all ten children, so none of them blocks on its parent.
	sums := make(chan int64, 10)
	size /= 10
	for i := int64(0); i < 10; i++ {
		go skynet(sums, num+i*size, size)
	}
	var sum int64
	for i := 0; i < 10; i++ {
		sum += <-sums
	}
	out <- sum
}

func skynetRun() (runResult, error) {
	out := make(chan int64, 1)
	t0 := time.Now()
	go skynet(out, 0, skynetLeaves)
	sum := <-out
	el := time.Since(t0)
	if sum != skynetSum {
		return runResult{}, fmt.Errorf("root got %d, want %d", sum, int64(skynetSum))
	}
	return runResult{elapsed: el}, nil
}

func skynetExtras(summary) []field {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		fail("rt.skynet: getrusage: %v", err)
	}
	// ru_maxrss is in KiB on Linux, and is the process's peak so far.
	return []field{{"peak_rss_kib", fmt.Sprint(ru.Maxrss)}}
}
