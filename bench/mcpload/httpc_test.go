package main

import (
	"bufio"
	"net"
	"strconv"
	"strings"
	"testing"
)

// cannedServer answers each request on each connection with the next of
// replies (raw HTTP); a reply ending in "\x00" closes the connection after.
func cannedServer(t *testing.T, replies []string) endpoint {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	next := make(chan string, len(replies))
	for _, r := range replies {
		next <- r
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					n := 0
					for {
						line, err := r.ReadString('\n')
						if err != nil {
							return
						}
						if v := strings.TrimPrefix(line, "Content-Length: "); v != line {
							n, _ = strconv.Atoi(strings.TrimSpace(v))
						}
						if line == "\r\n" {
							break
						}
					}
					if _, err := r.Discard(n); err != nil {
						return
					}
					var reply string
					select {
					case reply = <-next:
					default:
						return
					}
					if reply == "CLOSE" { // close without answering
						return
					}
					if strings.HasSuffix(reply, "\x00") {
						c.Write([]byte(strings.TrimSuffix(reply, "\x00")))
						return
					}
					c.Write([]byte(reply))
				}
			}(c)
		}
	}()
	return endpoint{addr: ln.Addr().String(), path: "/mcp"}
}

const echoBody = `{"jsonrpc":"2.0","id":5,"result":{"content":[{"type":"text","text":"hi"}]}}`

func TestHTTPFramings(t *testing.T) {
	chunked := "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"10\r\n" + echoBody[:16] + "\r\n" + strconv.FormatInt(int64(len(echoBody)-16), 16) + "\r\n" + echoBody[16:] + "\r\n0\r\n\r\n"
	sse := "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n" +
		hexLen(":c\n\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n") +
		"\r\n:c\n\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n\r\n" +
		hexLen("id: 1\ndata: "+echoBody+"\n\n") + "\r\nid: 1\ndata: " + echoBody + "\n\n\r\n0\r\n\r\n"
	replies := []string{
		"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nMcp-Session-Id: s1\r\nContent-Length: " +
			strconv.Itoa(len(echoBody)) + "\r\n\r\n" + echoBody,
		chunked,
		"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n",
		sse,
		"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n" + echoBody + "\x00",
		"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
			strconv.Itoa(len(echoBody)) + "\r\n\r\n" + echoBody,
	}
	ep := cannedServer(t, replies)
	h, err := dialHTTP(ep)
	if err != nil {
		t.Fatal(err)
	}
	defer h.close()
	for i, want := range []struct {
		status  int
		sse     bool
		body    string
		session string
	}{
		{200, false, echoBody, "s1"}, {200, false, echoBody, ""}, {202, false, "", ""}, {202, false, "", ""},
		{200, true, echoBody, ""}, {200, false, echoBody, ""}, {200, false, echoBody, ""},
	} {
		resp, err := h.post([]byte(`{}`), 5)
		if err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
		if resp.status != want.status || resp.sse != want.sse || string(resp.body) != want.body || resp.session != want.session {
			t.Fatalf("reply %d: got %d %v %q %q", i, resp.status, resp.sse, resp.body, resp.session)
		}
	}
}

func hexLen(s string) string { return strconv.FormatInt(int64(len(s)), 16) }

func TestParseEndpoint(t *testing.T) {
	ep, err := parseEndpoint("http://127.0.0.1:8080/mcp")
	if err != nil || ep.addr != "127.0.0.1:8080" || ep.path != "/mcp" {
		t.Fatalf("%+v %v", ep, err)
	}
	if _, err := parseEndpoint("https://x/mcp"); err == nil {
		t.Fatal("accepted https")
	}
}

func TestRequestSentAgainWhenAKeptAliveConnectionCloses(t *testing.T) {
	ok := "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
		strconv.Itoa(len(echoBody)) + "\r\n\r\n" + echoBody
	ep := cannedServer(t, []string{ok, "CLOSE", ok, "CLOSE", "CLOSE"})
	h, err := dialHTTP(ep)
	if err != nil {
		t.Fatal(err)
	}
	defer h.close()
	before := reconnects.Load()
	for i := 0; i < 2; i++ {
		resp, err := h.post([]byte(`{}`), 5)
		if err != nil || string(resp.body) != echoBody {
			t.Fatalf("post %d: %v %q", i, err, resp.body)
		}
	}
	if got := reconnects.Load() - before; got != 1 {
		t.Fatalf("%d reconnects, expected 1", got)
	}
	// Only once: a server that closes again is an error.
	if _, err := h.post([]byte(`{}`), 5); err == nil {
		t.Fatal("no error when the server closed twice")
	}
}
