// Command squirrel-peer-go is the Go peer of the Squirrel benchmark suite
// (see BENCHMARKS.md). It runs the same workloads as the project's own
// benchmarks, with GOMAXPROCS=2, and prints one JSON line per workload on
// stdout. Progress and diagnostics go to stderr.
//
// Usage: squirrel-peer-go [--runs N] [--warmup N] [--quick] [FILTER]
package main

import (
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
)

// A workload is one named benchmark. run performs one complete run, checks its
// own result and returns the timed part of it.
type workload struct {
	name string
	ops  int // operations per run; ns_per_op = elapsed / ops
	// maxRuns caps the counted runs (0: no cap), for very heavy workloads.
	maxRuns int
	run     func() (runResult, error)
	// extras, if set, adds fields to the JSON line once all runs are done.
	extras func(s summary) []field
}

// runResult is what one run reports.
type runResult struct {
	elapsed time.Duration
	// metric is an optional per-run figure (e.g. resident bytes per task);
	// the summary carries its median.
	metric float64
}

// summary holds the medians over the counted runs.
type summary struct {
	ops     int
	runs    int
	nsPerOp float64
	ms      float64
	metric  float64
	first   runResult // the first run of the workload in this process (warm-up included)
}

// field is one extra JSON field; value is already formatted as a JSON number.
type field struct {
	key, value string
}

func allWorkloads() []workload {
	var ws []workload
	ws = append(ws, rtWorkloads()...)
	ws = append(ws, netWorkloads()...)
	ws = append(ws, syncWorkloads()...)
	ws = append(ws, seedWorkloads()...)
	// Last, so that its memory does not inflate the peak RSS of others.
	ws = append(ws, idleWorkloads()...)
	return ws
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: squirrel-peer-go [--runs N] [--warmup N] [--quick] [FILTER]")
	fmt.Fprintln(os.Stderr, "workloads:")
	for _, w := range allWorkloads() {
		fmt.Fprintln(os.Stderr, "  "+w.name)
	}
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "squirrel-peer-go: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	runtime.GOMAXPROCS(2)

	runs, warmup := 5, 1
	filter := ""
	args := os.Args[1:]
	intArg := func(i *int, name string) int {
		if *i+1 >= len(args) {
			fail("%s needs a value", name)
		}
		*i++
		n, err := strconv.Atoi(args[*i])
		if err != nil || n < 0 {
			fail("%s: bad value %q", name, args[*i])
		}
		return n
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		// Accept --name=value as well as --name value.
		if strings.HasPrefix(a, "--") && strings.Contains(a, "=") {
			kv := strings.SplitN(a, "=", 2)
			args = append(args[:i], append([]string{kv[0], kv[1]}, args[i+1:]...)...)
			a = args[i]
		}
		switch a {
		case "--runs", "-runs":
			runs = intArg(&i, "--runs")
			if runs == 0 {
				fail("--runs must be at least 1")
			}
		case "--warmup", "-warmup":
			warmup = intArg(&i, "--warmup")
		case "--quick", "-quick":
			runs, warmup = 1, 0
		case "-h", "--help", "-help":
			usage()
			return
		default:
			if strings.HasPrefix(a, "-") {
				usage()
				fail("unknown option %q", a)
			}
			if filter != "" {
				fail("only one FILTER may be given (got %q and %q)", filter, a)
			}
			filter = a
		}
	}

	selected := 0
	for _, w := range allWorkloads() {
		if !matches(w.name, filter) {
			continue
		}
		selected++
		runWorkload(w, runs, warmup)
	}
	if selected == 0 {
		fail("no workload matches %q", filter)
	}
}

func runWorkload(w workload, runs, warmup int) {
	if w.maxRuns > 0 && runs > w.maxRuns {
		runs = w.maxRuns
	}
	fmt.Fprintf(os.Stderr, "%s: %d warm-up, %d runs\n", w.name, warmup, runs)

	var first runResult
	one := func(label string, i int) runResult {
		// Start every run from a collected heap, as the testing package does,
		// so that one run's garbage is not charged to the next.
		runtime.GC()
		r, err := w.run()
		if err != nil {
			fail("%s: %s %d: %v", w.name, label, i+1, err)
		}
		if first.elapsed == 0 {
			first = r
		}
		return r
	}
	for i := 0; i < warmup; i++ {
		one("warm-up", i)
	}
	results := make([]runResult, runs)
	for i := range results {
		results[i] = one("run", i)
	}

	var progress strings.Builder
	fmt.Fprintf(&progress, "%s: run ms:", w.name)
	for _, r := range results {
		fmt.Fprintf(&progress, " %.3f", float64(r.elapsed.Nanoseconds())/1e6)
	}
	fmt.Fprintln(os.Stderr, progress.String())

	s := summary{ops: w.ops, runs: runs, first: first}
	perOp := make([]float64, runs)
	wall := make([]float64, runs)
	metric := make([]float64, runs)
	for i, r := range results {
		perOp[i] = float64(r.elapsed.Nanoseconds()) / float64(w.ops)
		wall[i] = float64(r.elapsed.Nanoseconds()) / 1e6
		metric[i] = r.metric
	}
	s.nsPerOp = median(perOp)
	s.ms = median(wall)
	s.metric = median(metric)

	var b strings.Builder
	fmt.Fprintf(&b, `{"bench":%q,"peer":"go","ns_per_op":%s,"ops":%d,"runs":%d,"ms":%s`,
		w.name, fmtFloat(s.nsPerOp, 1), s.ops, s.runs, fmtFloat(s.ms, 3))
	if w.extras != nil {
		for _, f := range w.extras(s) {
			fmt.Fprintf(&b, `,%q:%s`, f.key, f.value)
		}
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
