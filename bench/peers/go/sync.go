package main

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

func syncWorkloads() []workload {
	return []workload{
		{name: "sync.mutex_uncontended", ops: uncontendedOps, run: mutexUncontended},
		{name: "sync.mutex_contended", ops: contendedTasks * contendedOps, run: mutexContended},
		{name: "sync.rwlock_read_heavy", ops: rwTasks * rwOps, run: rwlockReadHeavy},
		{name: "sync.semaphore_contended", ops: semTasks * semOps, run: semaphoreContended, extras: semExtras},
		{name: "sync.mpsc_bounded", ops: mpscProducers * mpscPerProducer, run: mpscBounded},
		{name: "sync.mpsc_unbounded", ops: mpscProducers * mpscPerProducer, run: mpscUnbounded},
		{name: "sync.oneshot", ops: oneshotOps, run: oneshotRun},
	}
}

// counter is a shared integer behind a mutex.
type counter struct {
	mu sync.Mutex
	n  int
}

// sync.mutex_uncontended: one task: lock, increment, unlock, 1,000,000 times.
const uncontendedOps = 1_000_000

func mutexUncontended() (runResult, error) {
	c := new(counter)
	t0 := time.Now()
	for i := 0; i < uncontendedOps; i++ {
		c.mu.Lock()
		c.n++
		c.mu.Unlock()
	}
	el := time.Since(t0)
	if c.n != uncontendedOps {
		return runResult{}, fmt.Errorf("counter is %d, want %d", c.n, uncontendedOps)
	}
	return runResult{elapsed: el}, nil
}

// sync.mutex_contended: 32 tasks each lock, increment, unlock 10,000 times.
const (
	contendedTasks = 32
	contendedOps   = 10_000
)

func mutexContended() (runResult, error) {
	c := new(counter)
	var wg sync.WaitGroup
	wg.Add(contendedTasks)
	task := func() {
		for i := 0; i < contendedOps; i++ {
			c.mu.Lock()
			c.n++
			c.mu.Unlock()
		}
		wg.Done()
	}
	t0 := time.Now()
	for i := 0; i < contendedTasks; i++ {
		go task()
	}
	wg.Wait()
	el := time.Since(t0)
	if c.n != contendedTasks*contendedOps {
		return runResult{}, fmt.Errorf("counter is %d, want %d", c.n, contendedTasks*contendedOps)
	}
	return runResult{elapsed: el}, nil
}

// sync.rwlock_read_heavy: 32 tasks, 10,000 ops each; op j of a task takes the
// write lock and bumps all 16 integers when j%10 == 0, otherwise takes a read
// lock and reads all 16 (which must then all be equal).
const (
	rwTasks = 32
	rwOps   = 10_000
	rwWidth = 16
)

func rwlockReadHeavy() (runResult, error) {
	var (
		mu     sync.RWMutex
		shared [rwWidth]int64
		writes atomic.Int64
		torn   atomic.Int64 // reads that saw unequal values
		wg     sync.WaitGroup
	)
	wg.Add(rwTasks)
	task := func() {
		w, bad := int64(0), int64(0)
		for j := 0; j < rwOps; j++ {
			if j%10 == 0 {
				mu.Lock()
				for k := range shared {
					shared[k]++
				}
				mu.Unlock()
				w++
				continue
			}
			mu.RLock()
			first := shared[0]
			for k := 1; k < rwWidth; k++ {
				if shared[k] != first {
					bad++
				}
			}
			mu.RUnlock()
		}
		writes.Add(w)
		torn.Add(bad)
		wg.Done()
	}
	t0 := time.Now()
	for i := 0; i < rwTasks; i++ {
		go task()
	}
	wg.Wait()
	el := time.Since(t0)

	if n := torn.Load(); n != 0 {
		return runResult{}, fmt.Errorf("%d reads saw a half-written array", n)
	}
	w := writes.Load()
	if w != rwTasks*rwOps/10 {
		return runResult{}, fmt.Errorf("%d writes, want %d", w, rwTasks*rwOps/10)
	}
	for k, v := range shared {
		if v != w {
			return runResult{}, fmt.Errorf("slot %d is %d, want %d (the number of writes)", k, v, w)
		}
	}
	return runResult{elapsed: el}, nil
}

// sync.semaphore_contended: 6 tasks share a semaphore of 5 permits (Go's
// idiom: a buffered channel of 5 slots; a send takes a permit, a receive
// gives it back). Each acquires, yields once while holding, and releases,
// 10,000 times. The holders are counted, with their high-water mark.
const (
	semTasks   = 6
	semOps     = 10_000
	semPermits = 5
)

var semHighWater int64 // high-water mark of the last run, for the extras

func semaphoreContended() (runResult, error) {
	var (
		sem      = make(chan struct{}, semPermits)
		holders  atomic.Int64
		high     atomic.Int64
		acquired atomic.Int64
		wg       sync.WaitGroup
	)
	wg.Add(semTasks)
	task := func() {
		for i := 0; i < semOps; i++ {
			sem <- struct{}{}
			h := holders.Add(1)
			for {
				m := high.Load()
				if h <= m || high.CompareAndSwap(m, h) {
					break
				}
			}
			runtime.Gosched()
			holders.Add(-1)
			<-sem
		}
		acquired.Add(semOps)
		wg.Done()
	}
	t0 := time.Now()
	for i := 0; i < semTasks; i++ {
		go task()
	}
	wg.Wait()
	el := time.Since(t0)

	semHighWater = high.Load()
	if semHighWater > semPermits {
		return runResult{}, fmt.Errorf("%d tasks held a permit at once, limit %d", semHighWater, semPermits)
	}
	if n := acquired.Load(); n != semTasks*semOps {
		return runResult{}, fmt.Errorf("%d acquisitions, want %d", n, semTasks*semOps)
	}
	if h := holders.Load(); h != 0 {
		return runResult{}, fmt.Errorf("%d holders left at the end", h)
	}
	return runResult{elapsed: el}, nil
}

func semExtras(summary) []field {
	return []field{{"max_holders", fmt.Sprint(semHighWater)}}
}

// sync.mpsc_*: 5 producers send 100,000 messages each; one consumer receives
// all 500,000 and checks that each producer's sequence arrives in order.
// A message is producer<<32 | sequence.
const (
	mpscProducers   = 5
	mpscPerProducer = 100_000
)

// mpscCheck records message m in next, the sequence expected from each
// producer, and reports a message out of order.
func mpscCheck(next *[mpscProducers]uint64, m uint64) error {
	p, s := m>>32, m&(1<<32-1)
	if p >= mpscProducers {
		return fmt.Errorf("message from unknown producer %d", p)
	}
	if s != next[p] {
		return fmt.Errorf("producer %d: got sequence %d, want %d", p, s, next[p])
	}
	next[p]++
	return nil
}

// mpscRun times one run: it starts the producers, each running produce(p),
// and the consumer, which must return the error of the first bad message.
// The channel operations stay inside produce and consume, so that no
// indirect call is made per message.
func mpscRun(produce func(p uint64), consume func() error) (runResult, error) {
	result := make(chan error, 1)
	t0 := time.Now()
	for p := 0; p < mpscProducers; p++ {
		go produce(uint64(p))
	}
	go func() { result <- consume() }()
	err := <-result
	el := time.Since(t0)
	return runResult{elapsed: el}, err
}

func mpscBounded() (runResult, error) {
	ch := make(chan uint64, 1024)
	return mpscRun(
		func(p uint64) {
			for s := uint64(0); s < mpscPerProducer; s++ {
				ch <- p<<32 | s
			}
		},
		func() error {
			var next [mpscProducers]uint64
			for i := 0; i < mpscProducers*mpscPerProducer; i++ {
				if err := mpscCheck(&next, <-ch); err != nil {
					return err
				}
			}
			return nil
		})
}

func mpscUnbounded() (runResult, error) {
	q := newUnbounded[uint64]()
	return mpscRun(
		func(p uint64) {
			for s := uint64(0); s < mpscPerProducer; s++ {
				q.Send(p<<32 | s)
			}
		},
		func() error {
			var next [mpscProducers]uint64
			for i := 0; i < mpscProducers*mpscPerProducer; i++ {
				if err := mpscCheck(&next, q.Recv()); err != nil {
					return err
				}
			}
			return nil
		})
}

// unbounded is a multi-producer, single-consumer FIFO with no capacity limit;
// Go has no such channel built in.
//
// Of the two usual designs, this is the mutex-protected slice with a wake-up
// channel, not the forwarding goroutine (in-channel -> goroutine with a slice
// buffer -> out-channel). The forwarder costs two channel hand-offs and a
// goroutine hop per message, and its out-channel serialises the consumer on
// it. Here a send is one short critical section (an append), and the
// consumer takes everything queued in a single lock acquisition by swapping
// buffers, then hands items out without locking. The wake-up channel is
// touched only when the consumer has actually gone to sleep on an empty
// queue. Send never blocks.
type unbounded[T any] struct {
	mu      sync.Mutex
	items   []T  // queued by producers; guarded by mu
	waiting bool // the consumer is (about to be) asleep on wake; guarded by mu
	wake    chan struct{}

	// Consumer side only.
	batch []T
	next  int
}

func newUnbounded[T any]() *unbounded[T] {
	return &unbounded[T]{wake: make(chan struct{}, 1)}
}

// Send queues v; safe for any number of goroutines.
func (q *unbounded[T]) Send(v T) {
	q.mu.Lock()
	q.items = append(q.items, v)
	wake := q.waiting
	q.waiting = false
	q.mu.Unlock()
	if wake {
		q.wake <- struct{}{} // capacity 1 and at most one pending: never blocks
	}
}

// Recv returns the oldest item, waiting for one if the queue is empty. Only
// one goroutine may receive.
func (q *unbounded[T]) Recv() T {
	for q.next == len(q.batch) {
		q.mu.Lock()
		if len(q.items) == 0 {
			q.waiting = true
			q.mu.Unlock()
			<-q.wake
			continue
		}
		// Take the whole queue; producers refill the spent batch's array.
		q.batch, q.items = q.items, q.batch[:0]
		q.next = 0
		q.mu.Unlock()
	}
	v := q.batch[q.next]
	q.next++
	return v
}

// sync.oneshot: create a oneshot (a channel of capacity 1), send on it from
// one task, receive in another; 100,000 times, one after another.
const oneshotOps = 100_000

func oneshotSend(ch chan<- int, v int) { ch <- v }

func oneshotRun() (runResult, error) {
	sum := 0
	t0 := time.Now()
	for i := 0; i < oneshotOps; i++ {
		ch := make(chan int, 1)
		go oneshotSend(ch, i)
		v := <-ch
		if v != i {
			return runResult{}, fmt.Errorf("op %d: received %d", i, v)
		}
		sum += v
	}
	el := time.Since(t0)
	if want := oneshotOps * (oneshotOps - 1) / 2; sum != want {
		return runResult{}, fmt.Errorf("sum %d, want %d", sum, want)
	}
	return runResult{elapsed: el}, nil
}
