package main

// Building the requests the generator sends and checking the responses it
// gets, without encoding/json on the hot path: every server is driven by the
// same client, so the client should cost as little as it can. The scanner
// below still checks what it reads (structure, id, content) and fails on
// anything it does not expect.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

const (
	legacyVersion    = "2025-11-25"
	statelessVersion = "2026-07-28"
	textLen          = 64
)

// statelessMeta is the per-request envelope of the 2026-07-28 era.
const statelessMeta = `"_meta":{"io.modelcontextprotocol/protocolVersion":"` + statelessVersion +
	`","io.modelcontextprotocol/clientCapabilities":{}}`

var modes = [3]string{"fast", "safe", "full"}

const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// callText fills dst (textLen bytes) with the text sent in call id: 64
// letters and digits, different for every id (it starts with the id itself,
// so two calls never share a text), the rest from a hash of the id. It can
// be recomputed from the id, so pipelined calls need not remember it.
func callText(dst []byte, id int64) {
	n := 0
	for v := uint64(id); ; v /= 62 {
		dst[n] = alphabet[v%62]
		n++
		if v < 62 {
			break
		}
	}
	dst[n] = '-'
	n++
	x := uint64(id)*0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019
	for ; n < textLen; n++ {
		x ^= x >> 31
		x *= 0xBF58476D1CE4E5B9
		x ^= x >> 27
		dst[n] = alphabet[(x>>33)%62]
	}
}

// callKind says which tool a workload calls and in which era.
type callKind struct {
	validated bool // echo_validated with count and mode, else echo
	stateless bool // 2026-07-28: the _meta envelope on every request
}

func (k callKind) tool() string {
	if k.validated {
		return "echo_validated"
	}
	return "echo"
}

// appendCall appends the tools/call request with the given id to buf.
func appendCall(buf []byte, id int64, k callKind) []byte {
	buf = append(buf, `{"jsonrpc":"2.0","id":`...)
	buf = strconv.AppendInt(buf, id, 10)
	buf = append(buf, `,"method":"tools/call","params":{"name":"`...)
	buf = append(buf, k.tool()...)
	buf = append(buf, `","arguments":{"text":"`...)
	n := len(buf)
	buf = append(buf, make([]byte, textLen)...)
	callText(buf[n:], id)
	buf = append(buf, '"')
	if k.validated {
		buf = append(buf, `,"count":`...)
		buf = strconv.AppendInt(buf, id%1001, 10)
		buf = append(buf, `,"mode":"`...)
		buf = append(buf, modes[id%3]...)
		buf = append(buf, '"')
	}
	buf = append(buf, '}')
	if k.stateless {
		buf = append(buf, ',')
		buf = append(buf, statelessMeta...)
	}
	return append(buf, "}}"...)
}

func appendInitialize(buf []byte, id int64) []byte {
	buf = append(buf, `{"jsonrpc":"2.0","id":`...)
	buf = strconv.AppendInt(buf, id, 10)
	return append(buf, `,"method":"initialize","params":{"protocolVersion":"`+legacyVersion+
		`","capabilities":{},"clientInfo":{"name":"mcpload","version":"1.0.0"}}}`...)
}

const initializedNote = `{"jsonrpc":"2.0","method":"notifications/initialized"}`

// message is one JSON-RPC message as scanned: the spans of its result or
// error (raw JSON) and its id when the id is an integer.
type message struct {
	hasID   bool
	id      int64
	idRaw   []byte // the id as written (for messages)
	method  []byte // non-nil: a request or notification from the server
	result  []byte
	errJSON []byte
}

// parseMessage scans one JSON-RPC message (an object; a batch is an error).
func parseMessage(b []byte) (message, error) {
	var m message
	s := scanner{b: b}
	s.ws()
	if !s.eat('{') {
		return m, s.fail("a JSON-RPC message must be an object")
	}
	s.ws()
	if s.eat('}') {
		return m, s.fail("empty object")
	}
	for {
		key, ok := s.str()
		if !ok || !s.colon() {
			return m, s.fail("bad member")
		}
		start := s.i
		switch string(key) {
		case "id":
			if !s.skip() {
				return m, s.fail("bad id")
			}
			m.idRaw = b[start:s.i]
			m.id, m.hasID = parseID(m.idRaw)
		case "method":
			v, ok := s.str()
			if !ok {
				return m, s.fail("bad method")
			}
			m.method = v
		default:
			if !s.skip() {
				return m, s.fail("bad value")
			}
			switch string(key) {
			case "result":
				m.result = b[start:s.i]
			case "error":
				m.errJSON = b[start:s.i]
			}
		}
		s.ws()
		if s.eat('}') {
			break
		}
		if !s.eat(',') {
			return m, s.fail("expected , or }")
		}
		s.ws()
	}
	s.ws()
	if s.i != len(b) {
		return m, s.fail("trailing data")
	}
	return m, nil
}

// checkResponse checks that m answers request id with a result (not an error).
func checkResponse(m message, id int64) error {
	if m.errJSON != nil {
		return fmt.Errorf("request %d: error response %s", id, m.errJSON)
	}
	if !m.hasID || m.id != id {
		return fmt.Errorf("expected the response to request %d, got id %s", id, orNone(m.idRaw))
	}
	if m.result == nil {
		return fmt.Errorf("request %d: response has neither result nor error", id)
	}
	return nil
}

// checkEcho checks a tools/call result: exactly one content item
// {"type":"text","text":want}, not an error result, and (2026-07-28 era)
// resultType "complete" if it is there. Other members are allowed.
func checkEcho(result []byte, want []byte) error {
	s := scanner{b: result}
	s.ws()
	if !s.eat('{') {
		return errors.New("result is not an object")
	}
	items := -1
	s.ws()
	if !s.eat('}') {
		for {
			key, ok := s.str()
			if !ok || !s.colon() {
				return s.fail("bad member in result")
			}
			switch string(key) {
			case "content":
				n, err := checkContent(&s, want)
				if err != nil {
					return err
				}
				items = n
			case "isError":
				start := s.i
				if !s.skip() {
					return s.fail("bad isError")
				}
				if v := string(result[start:s.i]); v != "false" {
					return fmt.Errorf("tool error result: %s", result)
				}
			case "resultType":
				v, ok := s.str()
				if !ok || string(v) != "complete" {
					return fmt.Errorf("resultType is not \"complete\": %s", result)
				}
			default:
				if !s.skip() {
					return s.fail("bad value in result")
				}
			}
			s.ws()
			if s.eat('}') {
				break
			}
			if !s.eat(',') {
				return s.fail("expected , or } in result")
			}
			s.ws()
		}
	}
	if items != 1 {
		return fmt.Errorf("expected one content item, got %s", result)
	}
	return nil
}

// checkContent reads the content array, checking each item; returns the count.
func checkContent(s *scanner, want []byte) (int, error) {
	s.ws()
	if !s.eat('[') {
		return 0, s.fail("content is not an array")
	}
	n := 0
	s.ws()
	if s.eat(']') {
		return 0, nil
	}
	for {
		if err := checkTextItem(s, want); err != nil {
			return 0, err
		}
		n++
		s.ws()
		if s.eat(']') {
			return n, nil
		}
		if !s.eat(',') {
			return 0, s.fail("expected , or ] in content")
		}
		s.ws()
	}
}

func checkTextItem(s *scanner, want []byte) error {
	start := s.i
	if !s.eat('{') {
		return s.fail("content item is not an object")
	}
	var typ, text []byte
	var textEsc bool
	s.ws()
	if !s.eat('}') {
		for {
			key, ok := s.str()
			if !ok || !s.colon() {
				return s.fail("bad member in content item")
			}
			switch string(key) {
			case "type":
				if typ, ok = s.str(); !ok {
					return s.fail("bad type")
				}
			case "text":
				ts := s.i
				if text, ok = s.str(); !ok {
					return s.fail("bad text")
				}
				if bytes.IndexByte(text, '\\') >= 0 {
					text, textEsc = s.b[ts:s.i], true
				}
			default:
				if !s.skip() {
					return s.fail("bad value in content item")
				}
			}
			s.ws()
			if s.eat('}') {
				break
			}
			if !s.eat(',') {
				return s.fail("expected , or } in content item")
			}
			s.ws()
		}
	}
	if string(typ) != "text" {
		return fmt.Errorf("content item is not text: %s", s.b[start:s.i])
	}
	if textEsc { // rare: decode the escapes properly
		var t string
		if err := json.Unmarshal(text, &t); err != nil {
			return fmt.Errorf("bad text %s: %v", text, err)
		}
		text = []byte(t)
	}
	if !bytes.Equal(text, want) {
		return fmt.Errorf("echo mismatch: sent %q, got %q", want, text)
	}
	return nil
}

func orNone(b []byte) string {
	if b == nil {
		return "(none)"
	}
	return string(b)
}

// scanner is a minimal JSON reader over b: it validates the grammar of what
// it skips (strictly enough to catch a torn or garbled message) but does not
// decode numbers or escapes.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) fail(what string) error {
	lo, hi := s.i-40, s.i+40
	if lo < 0 {
		lo = 0
	}
	if hi > len(s.b) {
		hi = len(s.b)
	}
	return fmt.Errorf("malformed JSON at byte %d (%s): ...%s...", s.i, what, s.b[lo:hi])
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\r', '\n':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) eat(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

func (s *scanner) colon() bool {
	s.ws()
	if !s.eat(':') {
		return false
	}
	s.ws()
	return true
}

// str reads a string and returns its raw contents (escapes not decoded).
func (s *scanner) str() ([]byte, bool) {
	if !s.eat('"') {
		return nil, false
	}
	start := s.i
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			return s.b[start : s.i-1], true
		case c == '\\':
			s.i += 2
		case c < 0x20:
			return nil, false
		default:
			s.i++
		}
	}
	return nil, false
}

// skip reads any JSON value.
func (s *scanner) skip() bool {
	return s.value(0)
}

func (s *scanner) value(depth int) bool {
	if depth > 64 || s.i >= len(s.b) {
		return false
	}
	switch c := s.b[s.i]; {
	case c == '"':
		_, ok := s.str()
		return ok
	case c == '{':
		s.i++
		s.ws()
		if s.eat('}') {
			return true
		}
		for {
			if _, ok := s.str(); !ok || !s.colon() || !s.value(depth+1) {
				return false
			}
			s.ws()
			if s.eat('}') {
				return true
			}
			if !s.eat(',') {
				return false
			}
			s.ws()
		}
	case c == '[':
		s.i++
		s.ws()
		if s.eat(']') {
			return true
		}
		for {
			if !s.value(depth + 1) {
				return false
			}
			s.ws()
			if s.eat(']') {
				return true
			}
			if !s.eat(',') {
				return false
			}
			s.ws()
		}
	case c == 't':
		return s.lit("true")
	case c == 'f':
		return s.lit("false")
	case c == 'n':
		return s.lit("null")
	case c == '-' || (c >= '0' && c <= '9'):
		return s.number()
	}
	return false
}

// number reads -?int(.digits)?([eE][+-]?digits)?
func (s *scanner) number() bool {
	s.eat('-')
	if s.eat('0') {
		// no more integer digits after a leading 0
	} else if s.digits() == 0 {
		return false
	}
	if s.eat('.') && s.digits() == 0 {
		return false
	}
	if s.eat('e') || s.eat('E') {
		if !s.eat('+') {
			s.eat('-')
		}
		if s.digits() == 0 {
			return false
		}
	}
	return true
}

func (s *scanner) digits() int {
	n := 0
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
		n++
	}
	return n
}

// parseID decodes an id written as a plain non-negative integer (the ids
// the generator sends); anything else is no match.
func parseID(b []byte) (int64, bool) {
	return parseDecimal(b)
}

func (s *scanner) lit(w string) bool {
	if len(s.b)-s.i >= len(w) && string(s.b[s.i:s.i+len(w)]) == w {
		s.i += len(w)
		return true
	}
	return false
}
