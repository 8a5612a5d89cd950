package main

// The stdio transport: newline-delimited JSON-RPC over the server's
// standard input and output, one session per server process.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sync/atomic"
	"time"
)

type stdioClient struct {
	w    *bufio.Writer
	r    *bufio.Reader
	long []byte // a line longer than r's buffer
	buf  []byte // request scratch
}

func newStdioClient(s *server) *stdioClient {
	return &stdioClient{
		w: bufio.NewWriterSize(s.stdin, 64<<10),
		r: bufio.NewReaderSize(s.stdout, 64<<10),
	}
}

// readMessage returns the next message the server wrote, skipping its
// notifications. The bytes are valid until the next call.
func (c *stdioClient) readMessage() (message, []byte, error) {
	for {
		line, err := c.r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			c.long = append(c.long[:0], line...)
			for err == bufio.ErrBufferFull {
				line, err = c.r.ReadSlice('\n')
				c.long = append(c.long, line...)
			}
			line = c.long
		}
		if err != nil {
			if err == io.EOF {
				return message{}, nil, fmt.Errorf("the server closed its standard output")
			}
			return message{}, nil, err
		}
		m, err := parseMessage(line)
		if err != nil {
			return m, line, err
		}
		if m.method != nil {
			if m.idRaw != nil {
				return m, line, fmt.Errorf("the server sent a request (%s), which the generator does not answer", line)
			}
			continue // a notification (logging...): not ours to check
		}
		return m, line, nil
	}
}

// initialize opens the session: initialize, its response, then the
// initialized notification.
func (c *stdioClient) initialize(id int64) error {
	c.buf = appendInitialize(c.buf[:0], id)
	c.buf = append(c.buf, '\n')
	c.w.Write(c.buf)
	if err := c.w.Flush(); err != nil {
		return err
	}
	m, _, err := c.readMessage()
	if err != nil {
		return err
	}
	if _, err := initializeVersion(m, id); err != nil {
		return err
	}
	c.w.WriteString(initializedNote + "\n")
	return c.w.Flush()
}

// initializeVersion checks the response to initialize request id and
// returns the protocol version the server chose.
func initializeVersion(m message, id int64) (string, error) {
	if err := checkResponse(m, id); err != nil {
		return "", fmt.Errorf("initialize: %w", err)
	}
	var r struct {
		ProtocolVersion string `json:"protocolVersion"`
	}
	if err := json.Unmarshal(m.result, &r); err != nil || r.ProtocolVersion == "" {
		return "", fmt.Errorf("initialize: no protocolVersion in the result %s", m.result)
	}
	return r.ProtocolVersion, nil
}

// runSequential makes calls one at a time; lat[k] is call k's latency.
func (c *stdioClient) runSequential(base int64, k callKind, lat []int64) error {
	var want [textLen]byte
	for i := range lat {
		id := base + int64(i)
		c.buf = appendCall(c.buf[:0], id, k)
		c.buf = append(c.buf, '\n')
		t0 := time.Now()
		c.w.Write(c.buf)
		if err := c.w.Flush(); err != nil {
			return fmt.Errorf("writing to the server: %w", err)
		}
		m, _, err := c.readMessage()
		if err != nil {
			return err
		}
		lat[i] = int64(time.Since(t0))
		if err := checkResponse(m, id); err != nil {
			return err
		}
		callText(want[:], id)
		if err := checkEcho(m.result, want[:]); err != nil {
			return fmt.Errorf("request %d: %w", id, err)
		}
		progress.Add(1)
	}
	return nil
}

// runPipelined keeps depth calls in flight over the one stream; responses
// may come in any order and are matched by id. A writer goroutine sends a
// call whenever a slot is free, batching writes while slots are free.
func (c *stdioClient) runPipelined(base int64, k callKind, depth int, lat []int64) error {
	n := len(lat)
	sent := make([]int64, n) // send time of call i, ns since t0
	done := make([]bool, n)
	slots := make(chan struct{}, depth)
	for i := 0; i < depth; i++ {
		slots <- struct{}{}
	}
	t0 := time.Now()
	werr := make(chan error, 1)
	go func() {
		var buf []byte
		for i := 0; i < n; i++ {
			<-slots
			buf = appendCall(buf[:0], base+int64(i), k)
			buf = append(buf, '\n')
			atomic.StoreInt64(&sent[i], int64(time.Since(t0)))
			c.w.Write(buf)
			if len(slots) == 0 || i == n-1 {
				if err := c.w.Flush(); err != nil {
					werr <- fmt.Errorf("writing to the server: %w", err)
					return
				}
			}
		}
		werr <- nil
	}()
	var want [textLen]byte
	for got := 0; got < n; got++ {
		m, line, err := c.readMessage()
		if err != nil {
			return err
		}
		now := int64(time.Since(t0))
		i := m.id - base
		if !m.hasID || i < 0 || i >= int64(n) || done[i] {
			if m.errJSON != nil {
				return fmt.Errorf("error response %s", line)
			}
			return fmt.Errorf("a response with an unexpected or repeated id: %s", line)
		}
		done[i] = true
		lat[i] = now - atomic.LoadInt64(&sent[i])
		if err := checkResponse(m, m.id); err != nil {
			return err
		}
		callText(want[:], m.id)
		if err := checkEcho(m.result, want[:]); err != nil {
			return fmt.Errorf("request %d: %w", m.id, err)
		}
		progress.Add(1)
		slots <- struct{}{}
	}
	return <-werr
}
