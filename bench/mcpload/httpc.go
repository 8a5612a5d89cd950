package main

// A minimal HTTP/1.1 client over one net.Conn: keep-alive POSTs with
// Content-Length bodies, responses framed by Content-Length, chunked
// encoding or the end of the connection, and text/event-stream responses
// read event by event. It is the same for every server under test and
// costs little (no per-request allocation on the JSON path), so the figures
// measure the servers, not the client.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// endpoint is a parsed http://HOST:PORT/PATH URL.
type endpoint struct {
	addr string // HOST:PORT, for Dial and the Host header
	path string
}

func parseEndpoint(url string) (endpoint, error) {
	rest := strings.TrimPrefix(url, "http://")
	if rest == url {
		return endpoint{}, fmt.Errorf("not an http:// URL: %q", url)
	}
	slash := strings.IndexByte(rest, '/')
	if slash < 0 {
		return endpoint{addr: rest, path: "/"}, nil
	}
	if slash == 0 {
		return endpoint{}, fmt.Errorf("no host in %q", url)
	}
	return endpoint{addr: rest[:slash], path: rest[slash:]}, nil
}

// httpConn is one client connection. Not safe for concurrent use.
type httpConn struct {
	ep   endpoint
	conn net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
	// head is the start of every request: request line, Host, Accept,
	// Content-Type and the fixed MCP headers (version, session, method).
	head []byte
	body []byte // the last response body (reused)
	// lastSession is the last Mcp-Session-Id seen, kept so that the same id
	// on every response costs no allocation.
	lastSession string
	served      int    // responses read on the current connection
	line        []byte // scratch for SSE events
}

func dialHTTP(ep endpoint) (*httpConn, error) {
	h := &httpConn{ep: ep}
	h.setHeaders("", "", "")
	return h, h.dial()
}

func (h *httpConn) dial() error {
	c, err := net.DialTimeout("tcp", h.ep.addr, 10*time.Second)
	if err != nil {
		return err
	}
	h.conn, h.served = c, 0
	h.r = bufio.NewReaderSize(c, 16<<10)
	h.w = bufio.NewWriterSize(c, 16<<10)
	return nil
}

func (h *httpConn) close() {
	if h.conn != nil {
		h.conn.Close()
		h.conn = nil
	}
}

// setHeaders fixes the MCP headers of the requests that follow: the
// protocol version (none before initialize), the session id (none if the
// server gave none) and, for the 2026-07-28 era, the Mcp-Method and
// Mcp-Name of the (one) call a connection makes.
func (h *httpConn) setHeaders(version, session, tool string) {
	b := []byte("POST " + h.ep.path + " HTTP/1.1\r\nHost: " + h.ep.addr +
		"\r\nAccept: application/json, text/event-stream\r\nContent-Type: application/json\r\n")
	if version != "" {
		b = append(b, "MCP-Protocol-Version: "+version+"\r\n"...)
	}
	if session != "" {
		b = append(b, "Mcp-Session-Id: "+session+"\r\n"...)
	}
	if tool != "" {
		b = append(b, "Mcp-Method: tools/call\r\nMcp-Name: "+tool+"\r\n"...)
	}
	h.head = b
}

// deleteSession ends a session the way the transport defines it: DELETE
// with its Mcp-Session-Id. A server may refuse (405: clients may not end
// sessions); anything else but a 2xx is an error.
func (h *httpConn) deleteSession(version, session string) error {
	if h.conn == nil {
		if err := h.dial(); err != nil {
			return err
		}
	}
	h.w.WriteString("DELETE " + h.ep.path + " HTTP/1.1\r\nHost: " + h.ep.addr +
		"\r\nMCP-Protocol-Version: " + version + "\r\nMcp-Session-Id: " + session +
		"\r\nContent-Length: 0\r\n\r\n")
	if err := h.w.Flush(); err != nil {
		h.close()
		return fmt.Errorf("sending DELETE: %w", err)
	}
	resp, err := h.read(-1)
	if err != nil {
		h.close()
		return fmt.Errorf("DELETE of session %s: %w", session, err)
	}
	if (resp.status < 200 || resp.status > 299) && resp.status != 405 {
		return fmt.Errorf("DELETE of session %s: HTTP status %d: %s", session, resp.status, resp.body)
	}
	return nil
}

// response is what post returns. body aliases the connection's buffer: it
// is valid until the next call.
type response struct {
	status    int
	sse       bool
	session   string // Mcp-Session-Id, if any
	body      []byte // JSON: the body; SSE: the data of the matching event
	bodyBytes int
}

// post sends one request and reads its response. For a text/event-stream
// response it reads events until one carries a JSON-RPC response whose id
// is wantID (wantID < 0: the first event with data), then reads the stream
// to its end so the connection can be reused.
//
// A request on a kept-alive connection that the server closed before
// answering (no byte of a response read) is sent again once on a new
// connection, as HTTP clients do: a server may close an idle connection
// just as the next request is sent (Node.js does when its event loop lags
// past the keep-alive timeout). Such retries are counted in reconnects.
func (h *httpConn) post(body []byte, wantID int64) (response, error) {
	reused := h.conn != nil && h.served > 0
	resp, err := h.try(body, wantID)
	if err != nil && reused && errors.Is(err, errClosedBeforeResponse) {
		reconnects.Add(1)
		resp, err = h.try(body, wantID)
	}
	return resp, err
}

// reconnects counts the requests sent again by post.
var reconnects atomic.Int64

// errClosedBeforeResponse: the connection ended before any byte of a response.
var errClosedBeforeResponse = errors.New("the server closed the connection before answering")

func (h *httpConn) try(body []byte, wantID int64) (response, error) {
	if h.conn == nil {
		if err := h.dial(); err != nil {
			return response{}, err
		}
	}
	h.w.Write(h.head)
	var num [24]byte
	h.w.WriteString("Content-Length: ")
	h.w.Write(strconv.AppendInt(num[:0], int64(len(body)), 10))
	h.w.WriteString("\r\n\r\n")
	h.w.Write(body)
	if err := h.w.Flush(); err != nil {
		h.close()
		if isClosed(err) {
			err = fmt.Errorf("%w (%v)", errClosedBeforeResponse, err)
		}
		return response{}, fmt.Errorf("sending: %w", err)
	}
	resp, err := h.read(wantID)
	if err != nil {
		h.close()
		return resp, err
	}
	h.served++
	return resp, nil
}

// isClosed tells an error from a connection the peer closed or reset.
func isClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// bodyFrame says how a response body ends.
type bodyFrame struct {
	chunked bool
	length  int64 // Content-Length; -1: until the connection closes
}

func (h *httpConn) read(wantID int64) (response, error) {
	var resp response
	var frame bodyFrame
	var closeAfter bool
	for {
		line, err := h.readLine()
		if err != nil {
			if isClosed(err) && h.r.Buffered() == 0 && resp.status == 0 {
				err = fmt.Errorf("%w (%v)", errClosedBeforeResponse, err)
			}
			return resp, fmt.Errorf("reading the status line: %w", err)
		}
		if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
			return resp, fmt.Errorf("bad status line %q", line)
		}
		status, ok := parseDecimal(line[9:12])
		if !ok {
			return resp, fmt.Errorf("bad status line %q", line)
		}
		resp.status = int(status)
		closeAfter = line[7] == '0' // HTTP/1.0: no keep-alive unless asked
		frame = bodyFrame{length: -1}
		resp.sse = false
		for {
			line, err = h.readLine()
			if err != nil {
				return resp, fmt.Errorf("reading headers: %w", err)
			}
			if len(line) == 0 {
				break
			}
			colon := bytes.IndexByte(line, ':')
			if colon <= 0 {
				return resp, fmt.Errorf("bad header line %q", line)
			}
			name, value := line[:colon], bytes.TrimSpace(line[colon+1:])
			switch {
			case asciiEqualFold(name, "content-length"):
				var ok bool
				if frame.length, ok = parseDecimal(value); !ok {
					return resp, fmt.Errorf("bad Content-Length %q", value)
				}
			case asciiEqualFold(name, "transfer-encoding"):
				frame.chunked = asciiEqualFold(value, "chunked")
				if !frame.chunked {
					return resp, fmt.Errorf("unsupported Transfer-Encoding %q", value)
				}
			case asciiEqualFold(name, "content-type"):
				resp.sse = len(value) >= 17 && asciiEqualFold(value[:17], "text/event-stream")
			case asciiEqualFold(name, "mcp-session-id"):
				if string(value) != h.lastSession { // no allocation when it is the same
					h.lastSession = string(value)
				}
				resp.session = h.lastSession
			case asciiEqualFold(name, "connection"):
				if asciiEqualFold(value, "close") {
					closeAfter = true
				} else if asciiEqualFold(value, "keep-alive") {
					closeAfter = false
				}
			}
		}
		if resp.status >= 100 && resp.status < 200 {
			continue // 100 Continue and the like: the real response follows
		}
		break
	}
	if frame.chunked {
		frame.length = 0
	} else if frame.length < 0 && (resp.status == 204 || resp.status == 304) {
		frame.length = 0
	}
	if frame.length < 0 && !frame.chunked {
		closeAfter = true // the body ends with the connection
	}
	br := bodyReader{r: h.r, frame: frame}
	var err error
	if resp.sse {
		resp.body, err = h.readSSE(&br, wantID)
	} else {
		h.body, err = br.readAll(h.body[:0])
		resp.body = h.body
	}
	resp.bodyBytes = len(resp.body)
	if err != nil {
		return resp, err
	}
	if closeAfter {
		h.close()
	}
	return resp, nil
}

// readSSE reads events until the one answering wantID, then drains the rest
// of the stream (a server should end it after the response).
func (h *httpConn) readSSE(br *bodyReader, wantID int64) ([]byte, error) {
	sr := bufio.NewReaderSize(br, 4096)
	var data []byte
	var found []byte
	for {
		line, err := sr.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			h.line = append(h.line[:0], line...)
			for err == bufio.ErrBufferFull {
				line, err = sr.ReadSlice('\n')
				h.line = append(h.line, line...)
			}
			line = h.line
		}
		if err == io.EOF && len(line) == 0 {
			if found == nil {
				return nil, fmt.Errorf("event stream ended without the response to request %d", wantID)
			}
			return found, nil
		}
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("reading the event stream: %w", err)
		}
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case len(line) == 0: // end of an event
			if len(data) > 0 && found == nil {
				ev := data[:len(data)-1] // without the last '\n'
				if wantID < 0 {
					found = append([]byte(nil), ev...)
				} else if m, perr := parseMessage(ev); perr == nil && m.method == nil && m.hasID && m.id == wantID {
					found = append([]byte(nil), ev...)
				} else if perr != nil {
					return nil, fmt.Errorf("bad event data %q: %v", ev, perr)
				}
			}
			data = data[:0]
		case line[0] == ':': // comment
		case bytes.HasPrefix(line, []byte("data:")):
			v := line[5:]
			if len(v) > 0 && v[0] == ' ' {
				v = v[1:]
			}
			data = append(data, v...)
			data = append(data, '\n')
		}
	}
}

func (h *httpConn) readLine() ([]byte, error) {
	line, err := h.r.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		return nil, errors.New("header line too long")
	}
	if err != nil {
		return nil, err
	}
	return bytes.TrimRight(line, "\r\n"), nil
}

// bodyReader reads one response body off the connection's reader.
type bodyReader struct {
	r     *bufio.Reader
	frame bodyFrame
	left  int64 // bytes left in the current chunk (chunked) or body
	state int   // chunked: 0 next chunk header, 1 in a chunk, 2 done
	init  bool
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if !b.init {
		b.init = true
		if !b.frame.chunked {
			b.left = b.frame.length
		}
	}
	if !b.frame.chunked {
		if b.left == 0 {
			return 0, io.EOF
		}
		if b.left > 0 && int64(len(p)) > b.left {
			p = p[:b.left]
		}
		n, err := b.r.Read(p)
		if b.left > 0 {
			b.left -= int64(n)
			if err == io.EOF && b.left > 0 {
				err = io.ErrUnexpectedEOF
			}
		}
		return n, err
	}
	for {
		switch b.state {
		case 2:
			return 0, io.EOF
		case 0:
			line, err := b.r.ReadSlice('\n')
			if err != nil {
				return 0, unexpected(err)
			}
			line = bytes.TrimRight(line, "\r\n")
			if i := bytes.IndexByte(line, ';'); i >= 0 {
				line = line[:i]
			}
			size, err := strconv.ParseInt(string(bytes.TrimSpace(line)), 16, 64)
			if err != nil || size < 0 {
				return 0, fmt.Errorf("bad chunk size %q", line)
			}
			if size == 0 { // last chunk; skip any trailers up to the empty line
				for {
					t, err := b.r.ReadSlice('\n')
					if err != nil {
						return 0, unexpected(err)
					}
					if len(bytes.TrimRight(t, "\r\n")) == 0 {
						break
					}
				}
				b.state = 2
				return 0, io.EOF
			}
			b.left, b.state = size, 1
		case 1:
			if int64(len(p)) > b.left {
				p = p[:b.left]
			}
			n, err := b.r.Read(p)
			b.left -= int64(n)
			if b.left == 0 {
				if _, err := b.r.Discard(2); err != nil { // the chunk's CRLF
					return n, unexpected(err)
				}
				b.state = 0
			}
			if err != nil {
				return n, unexpected(err)
			}
			return n, nil
		}
	}
}

// readAll appends the whole body to dst.
func (b *bodyReader) readAll(dst []byte) ([]byte, error) {
	if !b.frame.chunked && b.frame.length >= 0 {
		n := int(b.frame.length)
		if cap(dst) < n {
			dst = make([]byte, 0, n)
		}
		dst = dst[:n]
		if _, err := io.ReadFull(b.r, dst); err != nil {
			return dst[:0], fmt.Errorf("reading the body: %w", unexpected(err))
		}
		b.init, b.left = true, 0
		return dst, nil
	}
	for {
		if cap(dst)-len(dst) < 512 {
			grown := make([]byte, len(dst), 2*cap(dst)+4096)
			copy(grown, dst)
			dst = grown
		}
		n, err := b.Read(dst[len(dst):cap(dst)])
		dst = dst[:len(dst)+n]
		if err == io.EOF {
			return dst, nil
		}
		if err != nil {
			return dst, fmt.Errorf("reading the body: %w", err)
		}
	}
}

// parseDecimal reads a non-negative decimal number of at most 18 digits.
func parseDecimal(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var v int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	return v, true
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}
