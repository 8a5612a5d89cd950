#!/usr/bin/python3
"""The console in a real browser, and squirreld-top on the same scene.

usage: run.py SQUIRRELD SQUIRRELD_TOP SCREENSHOT.png

Starts squirreld with a bearer token and the monitor fixtures, calls
monitor_scene (a task holding the lock fixture.contended while it waits
for ever, two tasks queued for it, a task stuck on a notify) and
monitor_health (the component "fixture" degraded), then opens /console in
headless Chromium (Debian's chromium) driven over the DevTools protocol on
a pipe (--remote-debugging-pipe: no network port, no library).  The page
asks for the token; the test types it in as a person would, and then
waits (every condition with a deadline, no fixed sleeps) until the DOM
shows the holder, both waiters, the stuck task, the degraded component,
and a live connection; then it saves a screenshot.  Last, squirreld-top
--once must show the same scene.  Exits 0 on success, 1 with the reason.
"""
import base64
import fcntl
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

DEADLINE = time.monotonic() + 90
TOKEN = "console-test-token-%d" % os.getpid()


def fail(why):
    print("console test: FAILED: " + why, file=sys.stderr)
    sys.exit(1)


def left():
    return DEADLINE - time.monotonic()


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    fail("no chromium on PATH (Debian's chromium; scripts/test installs it)")


def start_server(binary, tmp):
    tok = os.path.join(tmp, "token")
    with open(tok, "w") as f:
        f.write(TOKEN + "\n")
    env = dict(os.environ)
    # Locks are known to the checks only while they are on: deadlock alone
    # reports nothing here (no search runs).  A run with all,abort keeps it
    # (the fixture's holder is allowed to hold across its wait).
    env.setdefault("SQUIRREL_CHECK", "deadlock")
    # An alert that fires while a request is in flight (the test keeps one
    # running): the page must list it.
    cfg = os.path.join(tmp, "config.json")
    with open(cfg, "w") as f:
        json.dump({"alert_interval": "200ms", "alerts": [
            {"name": "requests_waiting", "metric": "squirreld_requests_in_flight",
             "op": ">=", "threshold": 1, "for": "1s"},
            {"name": "errors", "metric": "squirreld_requests_total",
             "labels": {"outcome": "error"}, "rate": True, "threshold": 5}]}, f)
    p = subprocess.Popen([binary, "--config", cfg, "--http", "127.0.0.1:0", "--fixtures",
                          "monitor", "--token-file", tok], stderr=subprocess.PIPE, env=env)
    line = b""
    while left() > 0:
        r, _, _ = select.select([p.stderr], [], [], left())
        if not r:
            break
        c = os.read(p.stderr.fileno(), 1)
        if not c:
            fail("squirreld ended before listening")
        line += c
        m = re.search(rb"listening on http://127\.0\.0\.1:(\d+)/mcp\n", line)
        if m:
            # Keep draining its stderr so that it never blocks on a full pipe.
            fl = fcntl.fcntl(p.stderr.fileno(), fcntl.F_GETFL)
            fcntl.fcntl(p.stderr.fileno(), fcntl.F_SETFL, fl | os.O_NONBLOCK)
            return p, int(m.group(1)), tok
    fail("squirreld did not say where it listens")


def legacy_session(port):
    """A legacy session (initialize, then notifications/initialized)."""
    def post(body, sid=None):
        h = {"Content-Type": "application/json",
             "Accept": "application/json, text/event-stream",
             "Authorization": "Bearer " + TOKEN}
        if sid:
            h["Mcp-Session-Id"] = sid
            h["MCP-Protocol-Version"] = "2025-06-18"
        req = urllib.request.Request("http://127.0.0.1:%d/mcp" % port,
                                     data=json.dumps(body).encode(), headers=h)
        with urllib.request.urlopen(req, timeout=max(1, left())) as r:
            r.read()
            return r.headers.get("Mcp-Session-Id")
    sid = post({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "console-test", "version": "1"}}})
    post({"jsonrpc": "2.0", "method": "notifications/initialized"}, sid)
    return sid


def call_tool(port, name, args):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": name, "arguments": args, "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {}}}}).encode()
    req = urllib.request.Request("http://127.0.0.1:%d/mcp" % port, data=body, headers={
        "Content-Type": "application/json", "Accept": "application/json, text/event-stream",
        "Authorization": "Bearer " + TOKEN, "MCP-Protocol-Version": "2026-07-28",
        "Mcp-Method": "tools/call", "Mcp-Name": name})
    with urllib.request.urlopen(req, timeout=max(1, left())) as r:
        res = json.loads(r.read())
    if "result" not in res or res["result"].get("isError"):
        fail("tool %s: %s" % (name, res))


class Browser:
    """Chromium with the DevTools protocol on fds 3 (to it) and 4 (from it)."""

    def __init__(self, tmp):
        to_r, to_w = os.pipe()
        from_r, from_w = os.pipe()
        # Out of the way of 3 and 4, which the child gets.
        self.to_r = fcntl.fcntl(to_r, fcntl.F_DUPFD, 20)
        self.from_w = fcntl.fcntl(from_w, fcntl.F_DUPFD, 20)
        os.close(to_r)
        os.close(from_w)
        self.w, self.r = to_w, from_r

        def child():
            os.dup2(self.to_r, 3)
            os.dup2(self.from_w, 4)

        self.p = subprocess.Popen(
            [find_chromium(), "--headless=new", "--no-sandbox", "--disable-gpu",
             "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
             "--disable-extensions", "--remote-debugging-pipe",
             "--user-data-dir=" + os.path.join(tmp, "profile"), "about:blank"],
            preexec_fn=child, pass_fds=(3, 4), stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(tmp, "chromium.log"), "w"))
        os.close(self.to_r)
        os.close(self.from_w)
        self.buf = b""
        self.next_id = 0
        self.session = None

    def send(self, method, params=None, session=True):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        os.write(self.w, json.dumps(msg).encode() + b"\0")
        want = self.next_id
        while True:
            while b"\0" not in self.buf:
                if left() <= 0:
                    fail("Chromium did not answer %s in time" % method)
                r, _, _ = select.select([self.r], [], [], left())
                if not r:
                    continue
                chunk = os.read(self.r, 1 << 20)
                if not chunk:
                    fail("Chromium went away (see chromium.log)")
                self.buf += chunk
            raw, self.buf = self.buf.split(b"\0", 1)
            m = json.loads(raw)
            if m.get("id") == want:
                if "error" in m:
                    fail("%s: %s" % (method, m["error"]))
                return m.get("result", {})

    def open(self):
        t = self.send("Target.createTarget", {"url": "about:blank"}, session=False)
        a = self.send("Target.attachToTarget", {"targetId": t["targetId"], "flatten": True},
                      session=False)
        self.session = a["sessionId"]
        self.send("Page.enable")
        self.send("Runtime.enable")
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": 1440, "height": 1300, "deviceScaleFactor": 1, "mobile": False})

    def eval(self, expr):
        r = self.send("Runtime.evaluate", {"expression": expr, "returnByValue": True,
                                           "awaitPromise": True})
        if "exceptionDetails" in r:
            fail("page script failed: %s" % r["exceptionDetails"])
        return r["result"].get("value")

    def wait_for(self, what, expr):
        while left() > 0:
            if self.eval(expr):
                return
            time.sleep(0.1)  # polling the page, not waiting for time to pass
        fail("the page never showed " + what)

    def close(self):
        try:
            self.send("Browser.close", session=False)
            self.p.wait(timeout=10)
        except Exception:
            self.p.kill()
            self.p.wait()


def main():
    if len(sys.argv) != 4:
        fail("usage: run.py SQUIRRELD SQUIRRELD_TOP SCREENSHOT")
    squirreld, top, shot = sys.argv[1:]
    tmp = tempfile.mkdtemp(prefix="sq-console-")
    server, port, tokfile = start_server(squirreld, tmp)
    browser = None
    try:
        call_tool(port, "monitor_scene", {})
        call_tool(port, "monitor_health", {"status": "degraded",
                                           "reason": "a test says so"})
        for i in range(20):  # something for the charts
            call_tool(port, "echo", {"text": "hello %d" % i})
        legacy_session(port)
        # A request in flight for the rest of the test (the server is
        # killed at the end, which ends it).
        def in_flight():
            try:
                call_tool(port, "sleep", {"ms": 600000})
            except OSError:
                pass  # the server was killed: the end of the test
        threading.Thread(target=in_flight, daemon=True).start()

        browser = Browser(tmp)
        browser.open()
        url = "http://127.0.0.1:%d/console" % port
        browser.send("Page.navigate", {"url": url})
        # Auth is on: the page asks for the token, which goes in as typed.
        browser.wait_for("the token form",
                         "!!document.querySelector('#login') && "
                         "!document.querySelector('#login').hidden")
        browser.eval("document.querySelector('#token').value = %s;"
                     "document.querySelector('#login-form').requestSubmit(); true"
                     % json.dumps(TOKEN))
        browser.wait_for("a live connection",
                         "document.querySelector('#conn').textContent === 'live'")
        browser.wait_for("the holder of fixture.contended",
                         "!!document.querySelector('#lock-graph "
                         ".lock[data-class=\"fixture.contended\"]') && "
                         "[...document.querySelectorAll('#lock-graph .task.holder')]"
                         ".some(e => e.dataset.name.includes(\"'fixture-holder'\"))")
        browser.wait_for("both waiters of fixture.contended",
                         "[...document.querySelectorAll('#lock-graph .task.waiter')]"
                         ".filter(e => e.dataset.name.startsWith('fixture-waiter')).length"
                         " === 2")
        browser.wait_for("the waiters in the task table, waiting for the lock",
                         "[...document.querySelectorAll('#tasks-table tbody tr')]"
                         ".filter(r => r.dataset.name === 'fixture-waiter' && "
                         "r.dataset.wait === 'mutex' && "
                         "r.textContent.includes('fixture.contended')).length === 2")
        browser.wait_for("the stuck task",
                         "!!document.querySelector('#tasks-table tr[data-name=\"fixture-stuck\"]"
                         "[data-wait=\"notify\"]')")
        browser.wait_for("the degraded component and overall status",
                         "document.querySelector('#health').textContent === 'degraded' && "
                         "document.querySelector('#health-table tr[data-component=\"fixture\"]')"
                         ".textContent.includes('a test says so')")
        browser.wait_for("the request in flight",
                         "[...document.querySelectorAll('#requests-table tbody tr')]"
                         ".some(r => r.textContent.startsWith('tools/call'))")
        browser.wait_for("the session",
                         "document.querySelectorAll('#sessions-table tbody tr').length === 1")
        browser.wait_for("the firing alert",
                         "!!document.querySelector('#alerts [data-alert=\"requests_waiting\"]"
                         "[data-state=\"firing\"]') && "
                         "!!document.querySelector('#alerts [data-alert=\"errors\"]"
                         "[data-state=\"ok\"]')")
        browser.wait_for("the requests in the chart",
                         "document.querySelectorAll('#chart-rate polyline').length > 0")
        png = base64.b64decode(browser.send("Page.captureScreenshot",
                                            {"format": "png",
                                             "captureBeyondViewport": True})["data"])
        if png[:8] != b"\x89PNG\r\n\x1a\n":
            fail("the screenshot is not a PNG")
        with open(shot, "wb") as f:
            f.write(png)
        print("console test: the page shows the scene; screenshot in " + shot)

        # The terminal view of the same scene.
        out = subprocess.run([top, "--once", "--token-file", tokfile,
                              "http://127.0.0.1:%d/mcp" % port], capture_output=True,
                             text=True, timeout=max(1, left()))
        if out.returncode != 0:
            fail("squirreld-top: %d %s" % (out.returncode, out.stderr))
        for want in ("fixture.contended  held by task 'fixture-holder'", "waiting: fixture-waiter",
                     "fixture-stuck", "fixture degraded: a test says so", "health degraded",
                     "ALERT requests_waiting firing", "tools/call", "SESSIONS 1"):
            if want not in out.stdout:
                fail("squirreld-top does not show %r:\n%s" % (want, out.stdout))
        bad = subprocess.run([top, "--once", "http://127.0.0.1:%d/" % port],
                             capture_output=True, text=True, timeout=max(1, left()))
        if bad.returncode != 1 or "401" not in bad.stderr:
            fail("squirreld-top without the token: %d %s" % (bad.returncode, bad.stderr))
        print("console test: squirreld-top shows the scene")
    finally:
        if browser:
            browser.close()
        # The scene never ends by itself (a holder that waits for ever):
        # killed, not stopped.
        server.send_signal(signal.SIGKILL)
        server.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
