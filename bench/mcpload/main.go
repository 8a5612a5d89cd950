// Command mcpload is the load generator of the mcp.* benchmarks
// (shared/BENCHMARKS.md). It starts the server under test itself, once per
// workload, drives it over stdio or Streamable HTTP the same way whatever
// the server is, checks every response, and prints one JSON line per
// workload on stdout. Progress, notes and the server's own output go to
// stderr.
//
// Usage:
//
//	mcpload --peer NAME [--http-cmd CMD] [--stdio-cmd CMD]
//	        [--stateless-cmd CMD | --no-stateless]
//	        [--runs N] [--warmup N] [--quick] [--max-calls N] [FILTER]
package main

import (
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

type mode int

const (
	modeStdio    mode = iota // one session over the server's stdin/stdout
	modeHTTP                 // conns connections, each with its own session (or none: stateless)
	modeSessions             // open calls sessions; a fresh server every run
)

// A workload is one row of the mcp table.
type workload struct {
	name     string
	mode     mode
	conns    int // HTTP connections
	inflight int // stdio: calls in flight
	calls    int // operations per run (sessions, for modeSessions)
	kind     callKind
}

var workloads = []workload{
	{name: "mcp.stdio.c1", mode: modeStdio, conns: 1, inflight: 1, calls: 20_000},
	{name: "mcp.stdio.c64", mode: modeStdio, conns: 1, inflight: 64, calls: 100_000},
	{name: "mcp.http.c1", mode: modeHTTP, conns: 1, inflight: 1, calls: 20_000},
	{name: "mcp.http.c32", mode: modeHTTP, conns: 32, inflight: 1, calls: 100_000},
	{name: "mcp.http_stateless.c32", mode: modeHTTP, conns: 32, inflight: 1, calls: 100_000,
		kind: callKind{stateless: true}},
	{name: "mcp.validated.c32", mode: modeHTTP, conns: 32, inflight: 1, calls: 100_000,
		kind: callKind{validated: true}},
	{name: "mcp.sessions.n1000", mode: modeSessions, conns: 32, inflight: 1, calls: 1_000},
}

type config struct {
	peer         string
	httpCmd      string
	stdioCmd     string
	statelessCmd string
	noStateless  bool
	runs, warmup int
	maxCalls     int // caps every workload's count (smoke tests)
}

// runResult is what one run reports.
type runResult struct {
	elapsed   time.Duration
	p99       int64   // ns, over this run's calls
	metric    float64 // sessions: resident bytes per session
	rssBefore int64   // sessions: server VmRSS (KiB) before and after
	rssAfter  int64
	// CPU time the server and the generator used during the timed part
	// (ns; -1: unknown): on a loaded machine, a figure that depends less
	// on what else runs than the elapsed time does.
	serverCPU int64
	clientCPU int64
}

// cpuMeter measures the CPU time the server and the generator use between
// start and stop.
type cpuMeter struct {
	srv            *server
	server, client int64
}

func (m *cpuMeter) start() {
	m.client = selfCPUNs()
	var err error
	if m.server, err = m.srv.cpuNs(); err != nil {
		m.server = -1
	}
}

func (m *cpuMeter) stop(r *runResult) {
	r.clientCPU = selfCPUNs() - m.client
	r.serverCPU = -1
	if now, err := m.srv.cpuNs(); err == nil && m.server >= 0 {
		r.serverCPU = now - m.server
	}
}

// progress counts completed calls; the watchdog fails the run if it stops
// moving while busy is set.
var (
	progress   atomic.Int64
	busy       atomic.Bool
	failPrefix = func() string { return "" }
)

const stallTimeout = 60 * time.Second

func usage() {
	fmt.Fprint(os.Stderr, `usage: mcpload --peer NAME [--http-cmd CMD] [--stdio-cmd CMD]
               [--stateless-cmd CMD | --no-stateless]
               [--runs N] [--warmup N] [--quick] [--max-calls N] [FILTER]
  --peer NAME          the name printed in the "peer" field
  --http-cmd CMD       starts the server over Streamable HTTP on 127.0.0.1,
                       port 0; it must print "listening on http://..." on stderr
  --stdio-cmd CMD      starts the server over stdio (none: stdio rows skipped)
  --stateless-cmd CMD  the HTTP server for mcp.http_stateless.c32 (default: --http-cmd)
  --no-stateless       the peer does not speak 2026-07-28: that row is skipped
  --runs N             counted runs per workload (default 5)
  --warmup N           warm-up runs per workload (default 1)
  --quick              1 run, no warm-up
  --max-calls N        at most N calls (sessions) per run: a smoke test, not
                       a measurement (ops in the output says how many)
  FILTER               the workloads whose name contains it ('NAME$': exactly NAME)
Commands are run with /bin/sh -c 'exec CMD'.
workloads:
`)
	for _, w := range workloads {
		fmt.Fprintln(os.Stderr, "  "+w.name)
	}
}

func die(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "mcpload: "+format+"\n", args...)
	os.Exit(2)
}

func main() {
	cfg := config{runs: 5, warmup: 1}
	filter := ""
	args := os.Args[1:]
	strArg := func(i *int, name string) string {
		if *i+1 >= len(args) {
			die("%s needs a value", name)
		}
		*i++
		return args[*i]
	}
	intArg := func(i *int, name string) int {
		v := strArg(i, name)
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			die("%s: bad value %q", name, v)
		}
		return n
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if strings.HasPrefix(a, "--") && strings.Contains(a, "=") {
			kv := strings.SplitN(a, "=", 2)
			args = append(args[:i], append([]string{kv[0], kv[1]}, args[i+1:]...)...)
			a = args[i]
		}
		switch a {
		case "--peer":
			cfg.peer = strArg(&i, a)
		case "--http-cmd":
			cfg.httpCmd = strArg(&i, a)
		case "--stdio-cmd":
			cfg.stdioCmd = strArg(&i, a)
		case "--stateless-cmd":
			cfg.statelessCmd = strArg(&i, a)
		case "--no-stateless":
			cfg.noStateless = true
		case "--runs":
			if cfg.runs = intArg(&i, a); cfg.runs == 0 {
				die("--runs must be at least 1")
			}
		case "--warmup":
			cfg.warmup = intArg(&i, a)
		case "--quick":
			cfg.runs, cfg.warmup = 1, 0
		case "--max-calls":
			if cfg.maxCalls = intArg(&i, a); cfg.maxCalls == 0 {
				die("--max-calls must be at least 1")
			}
		case "-h", "--help":
			usage()
			return
		default:
			if strings.HasPrefix(a, "-") {
				usage()
				die("unknown option %q", a)
			}
			if filter != "" {
				die("only one FILTER may be given (got %q and %q)", filter, a)
			}
			filter = a
		}
	}
	if cfg.peer == "" {
		usage()
		die("--peer is required")
	}
	if cfg.httpCmd == "" && cfg.stdioCmd == "" {
		die("give at least one of --http-cmd and --stdio-cmd")
	}
	if cfg.statelessCmd == "" {
		cfg.statelessCmd = cfg.httpCmd
	}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sig
		fatal("stopped by %v", s)
	}()
	go watchdog()

	selected := 0
	for _, w := range workloads {
		if !matches(w.name, filter) {
			continue
		}
		selected++
		if cfg.maxCalls > 0 && w.calls > cfg.maxCalls {
			w.calls = cfg.maxCalls
		}
		if cmd, why := serverFor(w, cfg); cmd == "" {
			fmt.Fprintf(os.Stderr, "mcpload: %s %s: skipped (%s)\n", cfg.peer, w.name, why)
		} else {
			runWorkload(w, cfg, cmd)
		}
	}
	if selected == 0 {
		die("no workload matches %q", filter)
	}
}

// serverFor returns the command serving w, or "" and why there is none.
func serverFor(w workload, cfg config) (string, string) {
	switch {
	case w.mode == modeStdio:
		return cfg.stdioCmd, "no stdio server (--stdio-cmd)"
	case w.kind.stateless && cfg.noStateless:
		return "", "the peer does not speak the 2026-07-28 stateless era"
	case w.kind.stateless:
		return cfg.statelessCmd, "no HTTP server (--http-cmd)"
	}
	return cfg.httpCmd, "no HTTP server (--http-cmd)"
}

func watchdog() {
	last, since := progress.Load(), time.Now()
	for range time.Tick(time.Second) {
		p := progress.Load()
		if p != last || !busy.Load() {
			last, since = p, time.Now()
			continue
		}
		if time.Since(since) > stallTimeout {
			fatal("no response for %v (the server is stuck or too slow)", stallTimeout)
		}
	}
}

// runWorkload runs w's warm-up and counted runs against a server started
// from cmd and prints its JSON line.
func runWorkload(w workload, cfg config, cmd string) {
	failPrefix = func() string { return cfg.peer + " " + w.name + ": " }
	fmt.Fprintf(os.Stderr, "mcpload: %s %s: %d warm-up, %d runs\n", cfg.peer, w.name, cfg.warmup, cfg.runs)
	busy.Store(true)
	reconnects.Store(0)
	var ids int64 // JSON-RPC ids: unique over the whole workload
	reserve := func(n int) int64 { return atomic.AddInt64(&ids, int64(n)) - int64(n) + 1 }

	var run func() (runResult, error)
	var srv *server
	var err error
	switch w.mode {
	case modeStdio:
		if srv, err = startServer(cmd, true); err != nil {
			fatal("%v", err)
		}
		c := newStdioClient(srv)
		if err := c.initialize(reserve(1)); err != nil {
			fatal("%v", err)
		}
		run = func() (runResult, error) {
			lat := make([]int64, w.calls)
			base := reserve(w.calls)
			cpu := cpuMeter{srv: srv}
			cpu.start()
			t0 := time.Now()
			var err error
			if w.inflight > 1 {
				err = c.runPipelined(base, w.kind, w.inflight, lat)
			} else {
				err = c.runSequential(base, w.kind, lat)
			}
			r := runResult{elapsed: time.Since(t0)}
			cpu.stop(&r)
			r.p99 = p99(lat)
			return r, err
		}
	case modeHTTP:
		if srv, err = startServer(cmd, false); err != nil {
			fatal("%v", err)
		}
		conns, err := dialConns(srv.url, w.conns)
		if err != nil {
			fatal("%v", err)
		}
		defer closeConns(conns)
		run = func() (runResult, error) {
			// Every run opens its own sessions (untimed) and ends them
			// after (DELETE), so that state a server keeps per session is
			// not carried from one run to the next: the v1 TypeScript SDK
			// keeps an entry per request until its session closes in JSON
			// response mode, and over 6 runs of 100,000 calls it would
			// run out of heap.
			sessions, err := beginSessions(conns, w.kind, &ids)
			if err != nil {
				return runResult{}, err
			}
			lat := make([]int64, w.calls)
			cpu := cpuMeter{srv: srv}
			cpu.start()
			elapsed, err := runHTTPCalls(conns, reserve(w.calls), w.kind, lat)
			if err != nil {
				return runResult{}, err
			}
			r := runResult{elapsed: elapsed}
			cpu.stop(&r)
			r.p99 = p99(lat)
			if err := endSessions(conns, sessions); err != nil {
				return runResult{}, err
			}
			return r, nil
		}
	case modeSessions:
		run = func() (runResult, error) { return sessionsRun(w, cmd, &ids) }
	}

	one := func(label string, i int) runResult {
		// Every run starts from a collected heap, so that one run's
		// garbage is not charged to the next.
		runtime.GC()
		r, err := run()
		if err != nil {
			fatal("%s %d: %v", label, i+1, err)
		}
		return r
	}
	for i := 0; i < cfg.warmup; i++ {
		one("warm-up", i)
	}
	results := make([]runResult, cfg.runs)
	for i := range results {
		results[i] = one("run", i)
	}
	var serverRSS int64 = -1
	if srv != nil {
		serverRSS, _ = srv.rssKiB()
		srv.stop()
	}
	busy.Store(false)
	printResult(w, cfg, results, serverRSS)
}

// sessionsRun is one run of mcp.sessions.n1000 on a fresh server (RSS
// before and after must belong to these sessions alone): connect, read
// RSS, open the sessions, read RSS, then check each session still answers.
func sessionsRun(w workload, cmd string, ids *int64) (runResult, error) {
	srv, err := startServer(cmd, false)
	if err != nil {
		return runResult{}, err
	}
	defer srv.stop()
	conns, err := dialConns(srv.url, w.conns)
	if err != nil {
		return runResult{}, err
	}
	defer closeConns(conns)
	var r runResult
	if r.rssBefore, err = srv.rssKiB(); err != nil {
		return r, err
	}
	lat := make([]int64, w.calls)
	cpu := cpuMeter{srv: srv}
	cpu.start()
	elapsed, sessions, version, err := openSessions(conns, ids, lat)
	if err != nil {
		return r, err
	}
	cpu.stop(&r)
	if r.rssAfter, err = srv.rssKiB(); err != nil {
		return r, err
	}
	if err := checkSessions(conns, sessions, version, ids); err != nil {
		return r, err
	}
	r.elapsed, r.p99 = elapsed, p99(lat)
	r.metric = float64(r.rssAfter-r.rssBefore) * 1024 / float64(w.calls)
	return r, nil
}

// p99 is the 99th percentile (nearest rank) of the latencies, in ns.
func p99(lat []int64) int64 {
	if len(lat) == 0 {
		return 0
	}
	s := append([]int64(nil), lat...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	k := (len(s)*99 + 99) / 100 // ceil(0.99 n)
	return s[k-1]
}

// printResult prints the JSON line: medians over the counted runs; p99 and
// the RSS figures before/after are those of the median run (by time; the
// lower middle one for an even count).
func printResult(w workload, cfg config, results []runResult, serverRSS int64) {
	n := len(results)
	perOp := make([]float64, n)
	wall := make([]float64, n)
	metric := make([]float64, n)
	var serverCPU, clientCPU []float64
	var progressLine strings.Builder
	fmt.Fprintf(&progressLine, "mcpload: %s %s: run ms:", cfg.peer, w.name)
	for i, r := range results {
		perOp[i] = float64(r.elapsed.Nanoseconds()) / float64(w.calls)
		wall[i] = float64(r.elapsed.Nanoseconds()) / 1e6
		metric[i] = r.metric
		if r.serverCPU >= 0 {
			serverCPU = append(serverCPU, float64(r.serverCPU)/float64(w.calls))
		}
		clientCPU = append(clientCPU, float64(r.clientCPU)/float64(w.calls))
		fmt.Fprintf(&progressLine, " %.3f", wall[i])
	}
	fmt.Fprintln(os.Stderr, progressLine.String())
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return results[order[a]].elapsed < results[order[b]].elapsed })
	mid := results[order[(n-1)/2]]

	var b strings.Builder
	fmt.Fprintf(&b, `{"bench":%q,"peer":%q,"ns_per_op":%s,"ops":%d,"runs":%d,"ms":%s,"p99_ns":%d`,
		w.name, cfg.peer, fmtFloat(median(perOp), 1), w.calls, n, fmtFloat(median(wall), 3), mid.p99)
	if w.mode == modeSessions {
		fmt.Fprintf(&b, `,"rss_per_session_b":%s,"rss_before_kib":%d,"rss_after_kib":%d`,
			fmtFloat(median(metric), 0), mid.rssBefore, mid.rssAfter)
	} else if serverRSS >= 0 {
		fmt.Fprintf(&b, `,"server_rss_kib":%d`, serverRSS)
	}
	if len(serverCPU) == n {
		fmt.Fprintf(&b, `,"server_cpu_ns_per_op":%s`, fmtFloat(median(serverCPU), 0))
	}
	fmt.Fprintf(&b, `,"client_cpu_ns_per_op":%s`, fmtFloat(median(clientCPU), 0))
	if n := reconnects.Load(); n > 0 {
		// Requests sent again because the server closed a kept-alive
		// connection without answering (see httpConn.post).
		fmt.Fprintf(&b, `,"reconnects":%d`, n)
		fmt.Fprintf(os.Stderr, "mcpload: %s %s: the server closed a kept-alive connection before answering %d times (requests sent again)\n",
			cfg.peer, w.name, n)
	}
	b.WriteString("}\n")
	os.Stdout.WriteString(b.String())
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func fmtFloat(x float64, prec int) string {
	return strconv.FormatFloat(x, 'f', prec, 64)
}

// matches reports whether a workload name is selected by the filter: a
// substring match, or an exact one when the filter ends in '$'.
func matches(name, filter string) bool {
	if strings.HasSuffix(filter, "$") {
		return name == strings.TrimSuffix(filter, "$")
	}
	return strings.Contains(name, filter)
}
