package main

// Starting and stopping the server under test. The generator starts it
// itself, so it knows its PID (for RSS), sees its stderr (for the line that
// gives its URL) and notices when it dies.

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

var listenRE = regexp.MustCompile(`listening on (http://[^ ]+)`)

const (
	startTimeout = 60 * time.Second // until an HTTP server prints its URL
	stopTimeout  = 5 * time.Second  // after SIGTERM, before SIGKILL
)

type server struct {
	cmdline  string
	cmd      *exec.Cmd
	pid      int
	stdin    *os.File // stdio servers: its standard input (our end)
	stdout   *os.File // stdio servers: its standard output (our end)
	url      string   // HTTP servers: from the listening line
	exited   chan struct{}
	exitErr  error
	stopping atomic.Bool
}

// current is the server running now, stopped by fatal() before exiting.
var (
	currentMu sync.Mutex
	current   *server
)

// startServer runs cmdline with sh (exec'd, so the PID is the server's).
// A stdio server gets pipes on its standard input and output; an HTTP
// server's standard output goes where its stderr goes. Every line the
// server writes there is copied to our stderr, indented. For an HTTP server
// startServer waits for its "listening on http://..." line.
func startServer(cmdline string, stdio bool) (*server, error) {
	s := &server{cmdline: cmdline, exited: make(chan struct{})}
	s.cmd = exec.Command("/bin/sh", "-c", "exec "+cmdline)
	// If the generator is killed outright, the server goes with it.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}

	errR, errW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	var childEnds []*os.File
	childEnds = append(childEnds, errW)
	s.cmd.Stderr = errW
	if stdio {
		inR, inW, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		outR, outW, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		s.cmd.Stdin, s.cmd.Stdout = inR, outW
		s.stdin, s.stdout = inW, outR
		childEnds = append(childEnds, inR, outW)
	} else {
		s.cmd.Stdout = errW
	}
	err = s.cmd.Start()
	for _, f := range childEnds {
		f.Close()
	}
	if err != nil {
		errR.Close()
		s.closePipes()
		return nil, fmt.Errorf("starting %q: %w", cmdline, err)
	}
	s.pid = s.cmd.Process.Pid
	currentMu.Lock()
	current = s
	currentMu.Unlock()

	urlc := make(chan string, 1)
	go s.copyStderr(errR, urlc, !stdio)
	go func() {
		s.exitErr = s.cmd.Wait()
		close(s.exited)
		if !s.stopping.Load() {
			fatal("the server exited unexpectedly (%v): %s", s.exitErr, cmdline)
		}
	}()
	if stdio {
		return s, nil
	}
	select {
	case s.url = <-urlc:
		return s, nil
	case <-s.exited:
		return nil, fmt.Errorf("the server exited (%v) before printing its URL: %s", s.exitErr, cmdline)
	case <-time.After(startTimeout):
		s.stop()
		return nil, fmt.Errorf("no \"listening on http://...\" line from the server within %v: %s", startTimeout, cmdline)
	}
}

func (s *server) copyStderr(r *os.File, urlc chan<- string, wantURL bool) {
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintf(os.Stderr, "    | %s\n", line)
		if wantURL {
			if m := listenRE.FindStringSubmatch(line); m != nil {
				urlc <- m[1]
				wantURL = false
			}
		}
	}
}

func (s *server) closePipes() {
	if s.stdin != nil {
		s.stdin.Close()
	}
	if s.stdout != nil {
		s.stdout.Close()
	}
}

// stop ends the server: SIGTERM (and end of input, for stdio), then SIGKILL
// if it has not exited within stopTimeout.
func (s *server) stop() {
	if s.stopping.Swap(true) {
		<-s.exited
		return
	}
	if s.stdin != nil {
		s.stdin.Close()
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(stopTimeout):
		fmt.Fprintf(os.Stderr, "mcpload: the server did not exit within %v of SIGTERM: killed\n", stopTimeout)
		s.cmd.Process.Kill()
		<-s.exited
	}
	if s.stdout != nil {
		s.stdout.Close()
	}
	currentMu.Lock()
	if current == s {
		current = nil
	}
	currentMu.Unlock()
}

// rssKiB reads the server's resident set size (VmRSS) in KiB.
func (s *server) rssKiB() (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(s.pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest := strings.TrimPrefix(line, "VmRSS:"); rest != line {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", s.pid)
}

// userHZ is the unit of the CPU times in /proc/PID/stat (USER_HZ, 100 on
// every Linux ABI this runs on).
const userHZ = 100

// cpuNs reads the CPU time (user + system, all threads, exited ones
// included) the server has used so far, in ns; 10 ms resolution.
func (s *server) cpuNs() (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(s.pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The fields after the command name, which is in parentheses and may
	// hold spaces: state is field 3, utime 14 and stime 15.
	rest := string(b[strings.LastIndexByte(string(b), ')')+1:])
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", s.pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bad /proc/%d/stat", s.pid)
	}
	return (utime + stime) * (1e9 / userHZ), nil
}

// selfCPUNs is the CPU time the generator itself has used so far, in ns.
func selfCPUNs() int64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// fatal reports a failure, stops the server under test and exits with status 1.
// It may be called from any goroutine.
var fatalOnce sync.Once

func fatal(format string, args ...interface{}) {
	fatalOnce.Do(func() {
		fmt.Fprintf(os.Stderr, "mcpload: %s%s\n", failPrefix(), fmt.Sprintf(format, args...))
		currentMu.Lock()
		s := current
		currentMu.Unlock()
		if s != nil {
			s.stop()
		}
		os.Exit(1)
	})
	select {} // another goroutine is exiting
}
