package main

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestCallTextDiffersPerCall(t *testing.T) {
	seen := map[string]bool{}
	var b [textLen]byte
	for id := int64(0); id < 20000; id++ {
		callText(b[:], id)
		s := string(b[:])
		if seen[s] {
			t.Fatalf("id %d repeats a text: %q", id, s)
		}
		seen[s] = true
		for _, c := range s {
			if !strings.ContainsRune(alphabet+"-", c) {
				t.Fatalf("id %d: unexpected character in %q", id, s)
			}
		}
	}
}

func TestAppendCallIsTheRequestWeMean(t *testing.T) {
	for _, k := range []callKind{{}, {validated: true}, {stateless: true}} {
		b := appendCall(nil, 1234, k)
		var req struct {
			JSONRPC string `json:"jsonrpc"`
			ID      int64  `json:"id"`
			Method  string `json:"method"`
			Params  struct {
				Name      string                 `json:"name"`
				Arguments map[string]interface{} `json:"arguments"`
				Meta      map[string]interface{} `json:"_meta"`
			} `json:"params"`
		}
		if err := json.Unmarshal(b, &req); err != nil {
			t.Fatalf("%+v: %v: %s", k, err, b)
		}
		var want [textLen]byte
		callText(want[:], 1234)
		if req.JSONRPC != "2.0" || req.ID != 1234 || req.Method != "tools/call" ||
			req.Params.Name != k.tool() || req.Params.Arguments["text"] != string(want[:]) {
			t.Fatalf("%+v: wrong request %s", k, b)
		}
		if k.validated && (req.Params.Arguments["count"] != float64(1234%1001) ||
			req.Params.Arguments["mode"] != modes[1234%3] || len(req.Params.Arguments) != 3) {
			t.Fatalf("wrong validated arguments %s", b)
		}
		if k.stateless != (req.Params.Meta["io.modelcontextprotocol/protocolVersion"] == statelessVersion) {
			t.Fatalf("%+v: wrong _meta %s", k, b)
		}
	}
}

func check(msg string, id int64, text string) error {
	m, err := parseMessage([]byte(msg))
	if err != nil {
		return err
	}
	if err := checkResponse(m, id); err != nil {
		return err
	}
	return checkEcho(m.result, []byte(text))
}

func TestResponseChecks(t *testing.T) {
	good := []string{
		`{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"abc"}]}}`,
		` { "result" : { "content" : [ { "text" : "abc" , "type" : "text" } ] , "isError" : false } , "jsonrpc" : "2.0" , "id" : 7 } `,
		`{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"a\u0062c"}],"resultType":"complete","_meta":{"x":[1,-2.5e3,null,true]}}}`,
	}
	for _, g := range good {
		if err := check(g, 7, "abc"); err != nil {
			t.Errorf("rejected %s: %v", g, err)
		}
	}
	bad := []string{
		`{"jsonrpc":"2.0","id":8,"result":{"content":[{"type":"text","text":"abc"}]}}`,
		`{"jsonrpc":"2.0","id":"7","result":{"content":[{"type":"text","text":"abc"}]}}`,
		`{"jsonrpc":"2.0","id":7,"error":{"code":-32602,"message":"no"}}`,
		`{"jsonrpc":"2.0","id":7}`,
		`{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"abd"}]}}`,
		`{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"image","text":"abc"}]}}`,
		`{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"abc"},{"type":"text","text":"abc"}]}}`,
		`{"jsonrpc":"2.0","id":7,"result":{"content":[]}}`,
		`{"jsonrpc":"2.0","id":7,"result":{}}`,
		`{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"abc"}],"isError":true}}`,
		`{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"abc"}],"resultType":"input_required"}}`,
		`{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"abc"}]}`,
		`{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"abc"}]}}x`,
		`[{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"abc"}]}}]`,
		`{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"abc"}],"x":01}}`,
	}
	for _, b := range bad {
		if err := check(b, 7, "abc"); err == nil {
			t.Errorf("accepted %s", b)
		}
	}
}

func TestNotificationsAreRecognised(t *testing.T) {
	m, err := parseMessage([]byte(`{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info"}}`))
	if err != nil || m.method == nil || m.idRaw != nil {
		t.Fatalf("%+v %v", m, err)
	}
}

func TestCheckingAResponseDoesNotAllocate(t *testing.T) {
	var text [textLen]byte
	callText(text[:], 99)
	resp := []byte(`{"result":{"content":[{"type":"text","text":"` + string(text[:]) + `"}]},"jsonrpc":"2.0","id":99}`)
	req := make([]byte, 0, 512)
	allocs := testing.AllocsPerRun(100, func() {
		req = appendCall(req[:0], 99, callKind{validated: true, stateless: true})
		m, err := parseMessage(resp)
		if err != nil || checkResponse(m, 99) != nil || checkEcho(m.result, text[:]) != nil {
			t.Fatal("rejected")
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per call", allocs)
	}
}
