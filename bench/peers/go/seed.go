package main

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// seed.lock_contention.cN: a component holding a map of strings behind a
// reader-writer lock; 100,000 operations, each spawned as its own goroutine
// that first takes a permit from a semaphore of N permits (a buffered channel
// of N slots). Operation i writes key-(i%100) = value-i when i is even and
// reads key-(i%100) when i is odd: even operations write even keys and odd
// ones read odd keys, so every read misses.
const (
	seedOps  = 100_000
	seedKeys = 100
)

func seedWorkloads() []workload {
	var ws []workload
	for _, n := range []int{1, 2, 4, 8, 16, 32} {
		n := n
		ws = append(ws, workload{
			name: "seed.lock_contention.c" + strconv.Itoa(n),
			ops:  seedOps,
			run:  func() (runResult, error) { return seedRun(n) },
		})
	}
	return ws
}

// store is the component under test.
type store struct {
	mu     sync.RWMutex
	m      map[string]string
	writes int
}

func (s *store) set(k, v string) {
	s.mu.Lock()
	s.m[k] = v
	s.writes++
	s.mu.Unlock()
}

func (s *store) get(k string) (string, bool) {
	s.mu.RLock()
	v, ok := s.m[k]
	s.mu.RUnlock()
	return v, ok
}

func seedRun(permits int) (runResult, error) {
	s := &store{m: make(map[string]string)}
	sem := make(chan struct{}, permits)
	var hits atomic.Int64 // reads that found a key: there must be none
	var wg sync.WaitGroup
	wg.Add(seedOps)
	op := func(i int) {
		sem <- struct{}{}
		key := "key-" + strconv.Itoa(i%seedKeys)
		if i%2 == 0 {
			s.set(key, "value-"+strconv.Itoa(i))
		} else if _, ok := s.get(key); ok {
			hits.Add(1)
		}
		<-sem
		wg.Done()
	}
	t0 := time.Now()
	for i := 0; i < seedOps; i++ {
		go op(i)
	}
	wg.Wait()
	el := time.Since(t0)

	if s.writes != seedOps/2 {
		return runResult{}, fmt.Errorf("%d writes, want %d", s.writes, seedOps/2)
	}
	if n := hits.Load(); n != 0 {
		return runResult{}, fmt.Errorf("%d reads found a key; every read should miss", n)
	}
	if len(s.m) != seedKeys/2 {
		return runResult{}, fmt.Errorf("map holds %d keys, want %d", len(s.m), seedKeys/2)
	}
	for k := 0; k < seedKeys; k++ {
		key := "key-" + strconv.Itoa(k)
		v, ok := s.m[key]
		if k%2 == 1 {
			if ok {
				return runResult{}, fmt.Errorf("odd key %s exists", key)
			}
			continue
		}
		if !ok {
			return runResult{}, fmt.Errorf("even key %s is missing", key)
		}
		i, err := strconv.Atoi(strings.TrimPrefix(v, "value-"))
		if err != nil || !strings.HasPrefix(v, "value-") || i < 0 || i >= seedOps || i%2 != 0 || i%seedKeys != k {
			return runResult{}, fmt.Errorf("%s = %q, want value-i with i even and i%%%d == %d", key, v, seedKeys, k)
		}
	}
	return runResult{elapsed: el}, nil
}
