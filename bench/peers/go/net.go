package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

func netWorkloads() []workload {
	return []workload{
		{name: "net.echo", ops: echoConns * echoRounds, run: echoRun, extras: echoExtras},
	}
}

// net.echo: an echo server on 127.0.0.1 and 100 client connections in the same
// process; each client sends a 64-byte message and waits for its echo, 2,000
// times. Go's idiom: one goroutine per connection on each side, blocking
// reads and writes over the runtime's netpoller.
//
// The clock covers the round trips only: the 100 connections are made first,
// then every client starts at once.
const (
	echoConns  = 100
	echoRounds = 2_000
	echoMsg    = 64
)

// echoConn is the server side: write back whatever arrives, until EOF.
func echoConn(c *net.TCPConn, wg *sync.WaitGroup) {
	defer wg.Done()
	defer c.Close()
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// fillMsg makes message r of client id: distinct for every client and round,
// so a misrouted or stale echo is caught.
func fillMsg(msg []byte, id, r int) {
	binary.LittleEndian.PutUint32(msg[0:], uint32(id))
	binary.LittleEndian.PutUint32(msg[4:], uint32(r))
	for j := 8; j < len(msg); j++ {
		msg[j] = byte(id*31 + r*7 + j)
	}
}

func echoClient(c *net.TCPConn, id int, start <-chan struct{}) error {
	msg := make([]byte, echoMsg)
	got := make([]byte, echoMsg)
	<-start
	for r := 0; r < echoRounds; r++ {
		fillMsg(msg, id, r)
		if _, err := c.Write(msg); err != nil {
			return fmt.Errorf("client %d round %d: write: %w", id, r, err)
		}
		if _, err := io.ReadFull(c, got); err != nil {
			return fmt.Errorf("client %d round %d: read: %w", id, r, err)
		}
		if !bytes.Equal(got, msg) {
			return fmt.Errorf("client %d round %d: echo differs from message", id, r)
		}
	}
	return nil
}

func echoRun() (runResult, error) {
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return runResult{}, err
	}
	// The accept loop runs until the listener is closed; acceptDone then
	// carries its first error, if any.
	var servers sync.WaitGroup
	acceptDone := make(chan error, 1)
	go func() {
		var first error
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				if first == nil && !errors.Is(err, net.ErrClosed) {
					first = err
				}
				acceptDone <- first
				return
			}
			if err := c.SetNoDelay(true); err != nil { // Go's default; explicit
				if first == nil {
					first = err
				}
				c.Close()
				continue
			}
			servers.Add(1)
			go echoConn(c, &servers)
		}
	}()

	conns := make([]*net.TCPConn, echoConns)
	for i := range conns {
		c, err := net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
		if err != nil {
			return runResult{}, fmt.Errorf("dial: %w", err)
		}
		if err := c.SetNoDelay(true); err != nil { // Go's default; explicit
			return runResult{}, err
		}
		conns[i] = c
	}

	start := make(chan struct{})
	errs := make(chan error, echoConns)
	var clients sync.WaitGroup
	clients.Add(echoConns)
	for i, c := range conns {
		go func(c *net.TCPConn, id int) {
			defer clients.Done()
			if err := echoClient(c, id, start); err != nil {
				errs <- err
			}
		}(c, i)
	}
	t0 := time.Now()
	close(start)
	clients.Wait()
	el := time.Since(t0)

	for _, c := range conns {
		c.Close()
	}
	ln.Close()
	acceptErr := <-acceptDone // the accept loop has ended: no more servers.Add
	servers.Wait()
	close(errs)
	for err := range errs {
		return runResult{}, err
	}
	if acceptErr != nil {
		return runResult{}, fmt.Errorf("accept: %w", acceptErr)
	}
	return runResult{elapsed: el}, nil
}

func echoExtras(s summary) []field {
	return []field{{"rtt_per_sec", fmtFloat(float64(s.ops)/(s.ms/1e3), 0)}}
}
