#!/usr/bin/python3
"""The cost of monitoring squirreld (docs/benchmarks.md, "Monitoring").

usage: bench/monitor.py SQUIRRELD [MCPLOAD]

1. Scrapes with many tasks alive: squirreld --fixtures monitor, then
   monitor_idle starts N idle tasks (N = 0 and 10,000), and each endpoint
   is fetched over one kept-alive connection: /metrics 200 times,
   /debug/tasks, /debug/locks and one /console/events frame 20 times each.
   Prints the median and 90th percentile time per fetch and the size.
2. With MCPLOAD (bench/mcpload built): the mcp.http.c32 row with the
   request metrics on and off (--no-request-metrics), alternating, five
   rounds of --runs 3 each, and the median of each side.
One JSON object per line on stdout.
"""
import http.client
import json
import re
import select
import statistics
import subprocess
import sys
import time


def start(squirreld, *flags):
    p = subprocess.Popen([squirreld, "--http", "127.0.0.1:0", "--fixtures", "monitor", *flags],
                         stderr=subprocess.PIPE)
    line = b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        r, _, _ = select.select([p.stderr], [], [], 1)
        if r:
            line += p.stderr.read1(4096)
            m = re.search(rb"listening on http://127\.0\.0\.1:(\d+)/mcp", line)
            if m:
                return p, int(m.group(1))
    sys.exit("squirreld did not start")


def call(port, name, args):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": name, "arguments": args, "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {}}}})
    c.request("POST", "/mcp", body, {
        "Content-Type": "application/json", "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": name})
    r = c.getresponse()
    out = json.loads(r.read())
    c.close()
    if "result" not in out:
        sys.exit("%s: %s" % (name, out))


def fetch_times(port, path, n):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    times, size = [], 0
    for _ in range(n):
        t0 = time.perf_counter()
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
        times.append(time.perf_counter() - t0)
        size = len(body)
        if r.status != 200:
            sys.exit("%s: %d" % (path, r.status))
    c.close()
    return times, size


def frame_times(port, n):
    times, size = [], 0
    for _ in range(n):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        t0 = time.perf_counter()
        c.request("GET", "/console/events")
        r = c.getresponse()
        buf = b""
        while b"\n\n" not in buf:
            buf += r.read1(65536)
        times.append(time.perf_counter() - t0)
        size = buf.index(b"\n\n")
        c.close()
    return times, size


def report(what, tasks, times, size):
    times = sorted(times)
    print(json.dumps({"bench": what, "tasks_idle": tasks, "fetches": len(times),
                      "median_ms": round(statistics.median(times) * 1e3, 3),
                      "p90_ms": round(times[int(len(times) * 0.9) - 1] * 1e3, 3),
                      "bytes": size}), flush=True)


def scrapes(squirreld):
    for n in (0, 10000):
        p, port = start(squirreld)
        try:
            if n:
                call(port, "monitor_idle", {"n": n})
            report("/metrics", n, *fetch_times(port, "/metrics", 200))
            report("/debug/tasks", n, *fetch_times(port, "/debug/tasks", 20))
            report("/debug/locks", n, *fetch_times(port, "/debug/locks", 20))
            report("/console/events (first frame)", n, *frame_times(port, 20))
        finally:
            p.kill()
            p.wait()


def mcp_rows(squirreld, mcpload):
    sides = {"on": [], "off": []}
    cpu = {"on": [], "off": []}
    for rnd in range(5):
        for side in ("on", "off") if rnd % 2 == 0 else ("off", "on"):
            cmd = "%s --http 127.0.0.1:0 --fixtures bench%s" % (
                squirreld, " --no-request-metrics" if side == "off" else "")
            out = subprocess.run([mcpload, "--peer", "squirrel-metrics-" + side, "--http-cmd",
                                  cmd, "--runs", "3", "mcp.http.c32$"],
                                 capture_output=True, text=True)
            for line in out.stdout.splitlines():
                row = json.loads(line)
                print(json.dumps(row), flush=True)
                sides[side].append(row["ns_per_op"])
                cpu[side].append(row.get("server_cpu_ns_per_op", 0))
    on, off = statistics.median(sides["on"]), statistics.median(sides["off"])
    con, coff = statistics.median(cpu["on"]), statistics.median(cpu["off"])
    # The server's CPU time per call depends less on what else runs on a
    # shared machine than the elapsed time does.
    print(json.dumps({"bench": "mcp.http.c32 request metrics", "on_ns_per_call": on,
                      "off_ns_per_call": off, "cost_percent": round((on - off) / off * 100, 2),
                      "on_server_cpu_ns": con, "off_server_cpu_ns": coff,
                      "cpu_cost_percent": round((con - coff) / coff * 100, 2)}), flush=True)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    scrapes(sys.argv[1])
    if len(sys.argv) > 2:
        mcp_rows(sys.argv[1], sys.argv[2])
