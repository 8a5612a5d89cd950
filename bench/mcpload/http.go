package main

// The Streamable HTTP workloads: sessions opened per connection (legacy
// era) or none (2026-07-28 era), then calls, each connection one at a time.

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// httpSession opens a legacy-era session on h: initialize (no session
// header yet), then the initialized notification, which must get 202. From
// then on h sends the negotiated version and the session id (if the server
// gave one). Returns the session id ("" if none) and the version.
func httpSession(h *httpConn, id int64) (string, string, error) {
	h.setHeaders("", "", "")
	req := appendInitialize(nil, id)
	resp, err := h.post(req, id)
	if err != nil {
		return "", "", fmt.Errorf("initialize: %w", err)
	}
	if resp.status != 200 {
		return "", "", fmt.Errorf("initialize: HTTP status %d: %s", resp.status, resp.body)
	}
	m, err := parseMessage(resp.body)
	if err != nil {
		return "", "", fmt.Errorf("initialize: %w", err)
	}
	version, err := initializeVersion(m, id)
	if err != nil {
		return "", "", err
	}
	session := resp.session
	h.setHeaders(version, session, "")
	resp, err = h.post([]byte(initializedNote), -1)
	if err != nil {
		return "", "", fmt.Errorf("notifications/initialized: %w", err)
	}
	if resp.status != 202 {
		return "", "", fmt.Errorf("notifications/initialized: HTTP status %d (expected 202): %s", resp.status, resp.body)
	}
	return session, version, nil
}

// httpCall makes call id on h and checks its response.
func httpCall(h *httpConn, buf []byte, id int64, k callKind) ([]byte, error) {
	buf = appendCall(buf[:0], id, k)
	resp, err := h.post(buf, id)
	if err != nil {
		return buf, fmt.Errorf("request %d: %w", id, err)
	}
	if resp.status != 200 {
		return buf, fmt.Errorf("request %d: HTTP status %d: %s", id, resp.status, resp.body)
	}
	m, err := parseMessage(resp.body)
	if err != nil {
		return buf, fmt.Errorf("request %d: %w", id, err)
	}
	if err := checkResponse(m, id); err != nil {
		return buf, err
	}
	var want [textLen]byte
	callText(want[:], id)
	if err := checkEcho(m.result, want[:]); err != nil {
		return buf, fmt.Errorf("request %d: %w", id, err)
	}
	return buf, nil
}

// dialConns opens n connections to the server.
func dialConns(url string, n int) ([]*httpConn, error) {
	ep, err := parseEndpoint(url)
	if err != nil {
		return nil, err
	}
	conns := make([]*httpConn, n)
	for i := range conns {
		if conns[i], err = dialHTTP(ep); err != nil {
			closeConns(conns)
			return nil, fmt.Errorf("connecting to %s: %w", ep.addr, err)
		}
	}
	return conns, nil
}

func closeConns(conns []*httpConn) {
	for _, h := range conns {
		if h != nil {
			h.close()
		}
	}
}

// connSession is the session a connection sends its calls in.
type connSession struct {
	id, version string
}

// beginSessions readies each connection for calls of kind k: in the legacy
// era it opens a session on each; in the 2026-07-28 era there is none, and
// every request carries the version, method and tool name.
func beginSessions(conns []*httpConn, k callKind, ids *int64) ([]connSession, error) {
	sessions := make([]connSession, len(conns))
	for i, h := range conns {
		if k.stateless {
			h.setHeaders(statelessVersion, "", k.tool())
			continue
		}
		sid, version, err := httpSession(h, atomic.AddInt64(ids, 1))
		if err != nil {
			return nil, err
		}
		sessions[i] = connSession{sid, version}
	}
	return sessions, nil
}

// endSessions closes the sessions beginSessions opened (those the server
// gave an id), so that what they hold is released before the next run.
func endSessions(conns []*httpConn, sessions []connSession) error {
	for i, h := range conns {
		if s := sessions[i]; s.id != "" {
			if err := h.deleteSession(s.version, s.id); err != nil {
				return err
			}
		}
	}
	return nil
}

// runHTTPCalls makes len(lat) calls over conns, each connection one call at
// a time, taking the next call from a shared counter so that all finish
// together; lat[i] is call i's latency. Returns the elapsed time.
func runHTTPCalls(conns []*httpConn, base int64, k callKind, lat []int64) (time.Duration, error) {
	var next int64 = -1
	var wg sync.WaitGroup
	errs := make(chan error, len(conns))
	start := make(chan struct{})
	for _, h := range conns {
		wg.Add(1)
		go func(h *httpConn) {
			defer wg.Done()
			buf := make([]byte, 0, 512)
			<-start
			for {
				i := atomic.AddInt64(&next, 1)
				if i >= int64(len(lat)) {
					return
				}
				t0 := time.Now()
				var err error
				buf, err = httpCall(h, buf, base+i, k)
				if err != nil {
					errs <- err
					return
				}
				lat[i] = int64(time.Since(t0))
				progress.Add(1)
			}
		}(h)
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	elapsed := time.Since(t0)
	select {
	case err := <-errs:
		return elapsed, err
	default:
		return elapsed, nil
	}
}

// openSessions opens len(lat) sessions over conns (each connection one
// session at a time: initialize, then initialized); lat[i] is the time
// session i took to open. Returns the elapsed time, the session ids and
// the negotiated protocol version.
func openSessions(conns []*httpConn, ids *int64, lat []int64) (time.Duration, []string, string, error) {
	sessions := make([]string, len(lat))
	var version atomic.Value
	var next int64 = -1
	var wg sync.WaitGroup
	errs := make(chan error, len(conns))
	start := make(chan struct{})
	for _, h := range conns {
		wg.Add(1)
		go func(h *httpConn) {
			defer wg.Done()
			<-start
			for {
				i := atomic.AddInt64(&next, 1)
				if i >= int64(len(lat)) {
					return
				}
				t0 := time.Now()
				sid, v, err := httpSession(h, atomic.AddInt64(ids, 1))
				if err != nil {
					errs <- fmt.Errorf("session %d: %w", i, err)
					return
				}
				lat[i] = int64(time.Since(t0))
				sessions[i] = sid
				version.Store(v)
				progress.Add(1)
			}
		}(h)
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	elapsed := time.Since(t0)
	select {
	case err := <-errs:
		return elapsed, nil, "", err
	default:
	}
	return elapsed, sessions, version.Load().(string), nil
}

// checkSessions makes one echo call in each session (they must all still
// be open), spread over conns.
func checkSessions(conns []*httpConn, sessions []string, version string, ids *int64) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(conns))
	for c, h := range conns {
		wg.Add(1)
		go func(c int, h *httpConn) {
			defer wg.Done()
			var buf []byte
			for i := c; i < len(sessions); i += len(conns) {
				h.setHeaders(version, sessions[i], "")
				var err error
				if buf, err = httpCall(h, buf, atomic.AddInt64(ids, 1), callKind{}); err != nil {
					errs <- fmt.Errorf("session %d (%s) after all were opened: %w", i, sessions[i], err)
					return
				}
			}
		}(c, h)
	}
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}
