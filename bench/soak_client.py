#!/usr/bin/env python3
"""soak_client.py - the mixed load of bench/soak.sh, with Python 3's standard library only.

Drives a running tttd at a fixed concurrency: normal JSON generations, Accept: image/png,
"stream": true (Server-Sent Events), a stream canceled with DELETE /v1/jobs/{id}, a client that
hangs up mid-stream, bad input of several kinds (each must be answered 4xx), the OpenAI route
/v1/images/generations, and GET /healthz, /readyz, /metrics. First a warm-up, then a quiet moment
in which the server's RSS and open fds are read from /proc (the start figures), then the load for
the given time, then another quiet moment (the end figures).

It prints the requests by kind and status, RSS and fds at start and end, and exits 1 naming each
broken bar: any 5xx, any valid request left unanswered (no answer within --timeout, or the
connection dropped), a wrong answer to a valid request, RSS growth over --rss-growth percent, or
more open fds at the end than at the start.
"""
import argparse
import collections
import http.client
import json
import os
import threading
import time

# The tiny shapes keep an ASan build busy without making each request long.
SMALL = {"width": 32, "height": 32, "steps": 2, "guidance": 1}
SLOW = {"width": 32, "height": 32, "steps": 400, "guidance": 1}  # long enough to be canceled

# Bad input: (what, method, path, body, headers); each must be answered 4xx.
BAD = [
    ("bad_json", "POST", "/v1/generate", b"{\"prompt\": ", {"Content-Type": "application/json"}),
    ("no_prompt", "POST", "/v1/generate", b"{\"steps\": 2}", {"Content-Type": "application/json"}),
    ("bad_type", "POST", "/v1/generate", b"{\"prompt\": 5}", {"Content-Type": "application/json"}),
    ("bad_size", "POST", "/v1/generate", b"{\"prompt\": \"x\", \"width\": 33}",
     {"Content-Type": "application/json"}),
    ("too_many_steps", "POST", "/v1/generate", b"{\"prompt\": \"x\", \"steps\": 99999999}",
     {"Content-Type": "application/json"}),
    ("not_json", "POST", "/v1/generate", b"prompt=x", {"Content-Type": "text/plain"}),
    ("huge_body", "POST", "/v1/generate", b"{\"prompt\": \"" + b"a" * (2 << 20) + b"\"}",
     {"Content-Type": "application/json"}),
    ("no_route", "GET", "/v1/nothing", None, {}),
    ("no_job", "DELETE", "/v1/jobs/no-such-job", None, {}),
    ("bad_openai", "POST", "/v1/images/generations", b"{\"prompt\": \"x\", \"size\": \"7x7\"}",
     {"Content-Type": "application/json"}),
]

KINDS = ["normal", "png", "stream", "cancel", "disconnect", "bad", "openai", "health"]


class Unanswered(Exception):
    pass


class Load:
    def __init__(self, args):
        self.args = args
        host, port = args.url.split("//", 1)[1].rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.lock = threading.Lock()
        self.counts = collections.Counter()  # (kind, status) -> n
        self.failures = []  # one line each, the first few are printed
        self.n_fail = collections.Counter()
        self.seq = 0
        self.rounds = collections.Counter()  # per kind, to go round BAD and the health routes

    def conn(self):
        return http.client.HTTPConnection(self.host, self.port, timeout=self.args.timeout)

    def note(self, kind, status, problem=None):
        with self.lock:
            self.counts[(kind, status)] += 1
            if problem:
                self.n_fail[problem.split(":")[0]] += 1
                if len(self.failures) < 20:
                    self.failures.append(f"{kind}: {problem}")

    def next_id(self):
        with self.lock:
            self.seq += 1
            return f"soak-{os.getpid()}-{self.seq}"

    def request(self, method, path, body=None, headers=None):
        """One request on its own connection: (status, headers, body). Raises Unanswered."""
        c = self.conn()
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            data = r.read()
            return r.status, r, data
        except (OSError, http.client.HTTPException) as e:
            raise Unanswered(f"{method} {path}: {type(e).__name__}: {e}") from e
        finally:
            c.close()

    def gen_body(self, extra=None, **kw):
        b = dict(SMALL, prompt=f"soak {self.seq}", **kw)
        if extra:
            b.update(extra)
        return json.dumps(b).encode()

    def check_status(self, kind, status, want=200, problem=None):
        """Notes a valid request's answer: 5xx is a failure, so is anything else unexpected."""
        if status >= 500:
            problem = problem or f"5xx: status {status}"
        elif status != want and status != 429:  # 429: the queue was full, an honest answer
            problem = problem or f"wrong answer: status {status}, expected {want}"
        self.note(kind, status, problem)

    # ---- the kinds of request ----

    def do_normal(self):
        st, _, data = self.request("POST", "/v1/generate", self.gen_body(),
                                   {"Content-Type": "application/json"})
        problem = None
        if st == 200:
            try:
                if not json.loads(data)["images"]:
                    problem = "wrong answer: no image"
            except (ValueError, KeyError) as e:
                problem = f"wrong answer: {e}"
        self.check_status("normal", st, problem=problem)

    def do_png(self):
        st, _, data = self.request("POST", "/v1/generate", self.gen_body(),
                                   {"Content-Type": "application/json", "Accept": "image/png"})
        problem = "wrong answer: not a PNG" if st == 200 and data[:4] != b"\x89PNG" else None
        self.check_status("png", st, problem=problem)

    def open_stream(self, extra, job_id):
        c = self.conn()
        try:
            c.request("POST", "/v1/generate", body=self.gen_body(extra, stream=True),
                      headers={"Content-Type": "application/json", "X-Request-Id": job_id})
            return c, c.getresponse()
        except (OSError, http.client.HTTPException) as e:
            c.close()
            raise Unanswered(f"stream: {type(e).__name__}: {e}") from e

    @staticmethod
    def events(r):
        """Yields the event names of a Server-Sent Events response until it ends."""
        for raw in iter(r.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if line.startswith("event: "):
                yield line[7:]

    def do_stream(self):
        c, r = self.open_stream(None, self.next_id())
        try:
            if r.status != 200:
                r.read()
                return self.check_status("stream", r.status)
            names = list(self.events(r))
        except (OSError, http.client.HTTPException) as e:
            raise Unanswered(f"stream: {type(e).__name__}: {e}") from e
        finally:
            c.close()
        ok = names and names[-1] == "done" and "image" in names
        self.check_status("stream", 200, problem=None if ok else f"wrong answer: events {names}")

    def do_cancel(self):
        job = self.next_id()
        c, r = self.open_stream(SLOW, job)
        try:
            if r.status != 200:
                r.read()
                return self.check_status("cancel", r.status)
            ev = self.events(r)
            next(ev, None)  # queued or progress: the job is registered
            st, _, _ = self.request("DELETE", f"/v1/jobs/{job}")
            # 200: canceled; 409: it had already finished (a race the client may lose).
            self.check_status("cancel", st, want=200 if st != 409 else 409)
            names = list(ev)
        except (OSError, http.client.HTTPException) as e:
            raise Unanswered(f"cancel: {type(e).__name__}: {e}") from e
        finally:
            c.close()
        if st == 200 and (not names or names[-1] != "error"):
            self.note("cancel_stream_end", 0, f"wrong answer: events after DELETE {names}")

    def do_disconnect(self):
        c, r = self.open_stream(SLOW, self.next_id())
        try:
            for name in self.events(r):
                if name == "progress":
                    break
            self.note("disconnect", r.status, None if r.status < 500 else f"5xx: {r.status}")
        except (OSError, http.client.HTTPException) as e:
            raise Unanswered(f"disconnect: {type(e).__name__}: {e}") from e
        finally:
            c.close()  # hang up mid-stream: the server cancels the job

    def do_bad(self):
        with self.lock:
            what, method, path, body, headers = BAD[self.rounds["bad"] % len(BAD)]
            self.rounds["bad"] += 1
        try:
            st, _, _ = self.request(method, path, body, headers)
        except Unanswered:
            # The server may close after answering 413 before the whole body was sent.
            if what != "huge_body":
                raise
            st = 413
        problem = None if 400 <= st < 500 else f"{'5xx' if st >= 500 else 'wrong answer'}: {what} got {st}"
        self.note(f"bad:{what}", st, problem)

    def do_openai(self):
        body = json.dumps({"prompt": "soak openai", "size": "32x32",
                           "response_format": "b64_json"}).encode()
        st, _, data = self.request("POST", "/v1/images/generations", body,
                                   {"Content-Type": "application/json"})
        problem = None
        if st == 200:
            try:
                if not json.loads(data)["data"][0]["b64_json"]:
                    problem = "wrong answer: no b64_json"
            except (ValueError, KeyError, IndexError) as e:
                problem = f"wrong answer: {e}"
        self.check_status("openai", st, problem=problem)

    def do_health(self):
        with self.lock:
            path = ["/healthz", "/readyz", "/metrics"][self.rounds["health"] % 3]
            self.rounds["health"] += 1
        st, _, _ = self.request("GET", path)
        self.check_status("health" + path, st)

    # ---- the runners ----

    def one(self, kind):
        try:
            getattr(self, "do_" + kind)()
        except Unanswered as e:
            self.note(kind, 0, f"unanswered: {e}")
        except Exception as e:  # a broken answer must not stop the soak
            self.note(kind, -1, f"wrong answer: {type(e).__name__}: {e}")

    def run(self, seconds):
        stop = time.monotonic() + seconds

        def loop(i):
            k = i
            while time.monotonic() < stop:
                self.one(KINDS[k % len(KINDS)])
                k += 1

        threads = [threading.Thread(target=loop, args=(i,)) for i in range(self.args.concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


def proc_figures(pid):
    """The server's resident set (KiB) and open fds, from /proc."""
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def quiet_figures(pid, settle):
    """Waits until the fd count holds still (the last connections closed), then reads both."""
    time.sleep(settle)
    last = proc_figures(pid)
    for _ in range(20):
        time.sleep(0.5)
        now = proc_figures(pid)
        if now[1] == last[1]:
            return now
        last = now
    return last


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", required=True, help="http://127.0.0.1:PORT")
    ap.add_argument("--pid", type=int, required=True, help="the server's process id")
    ap.add_argument("--seconds", type=float, required=True, help="how long the load runs")
    ap.add_argument("--warmup", type=float, default=30, help="warm-up seconds before the start figures")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--timeout", type=float, default=120, help="seconds before a request counts as unanswered")
    ap.add_argument("--rss-growth", type=float, default=10, help="percent of RSS growth allowed")
    args = ap.parse_args()

    load = Load(args)
    load.run(args.warmup)
    load.counts.clear()
    rss0, fd0 = quiet_figures(args.pid, 1.0)
    print(f"start (after {args.warmup:.0f} s of warm-up): RSS {rss0 / 1024:.1f} MiB, {fd0} open fds",
          flush=True)
    t0 = time.monotonic()
    load.run(args.seconds)
    elapsed = time.monotonic() - t0
    rss1, fd1 = quiet_figures(args.pid, 1.0)

    total = sum(load.counts.values())
    print(f"\n{total} requests in {elapsed:.0f} s at concurrency {args.concurrency} "
          f"({total / max(elapsed, 1e-9):.1f}/s), by kind and status:")
    for (kind, st), n in sorted(load.counts.items(), key=lambda x: (x[0][0], x[0][1])):
        print(f"  {kind:28s} {st if st > 0 else 'none':>5}  {n}")
    by_status = collections.Counter()
    for (_, st), n in load.counts.items():
        by_status[st] += n
    print("by status: " + ", ".join(f"{st if st > 0 else 'none'}: {n}" for st, n in sorted(by_status.items())))
    growth = 100.0 * (rss1 - rss0) / rss0 if rss0 else 0.0
    print(f"end:   RSS {rss1 / 1024:.1f} MiB ({growth:+.1f} %), {fd1} open fds ({fd1 - fd0:+d})")

    bad = []
    if load.failures:
        print("problems (first %d):" % len(load.failures))
        for f in load.failures:
            print("  " + f)
    for what, n in sorted(load.n_fail.items()):  # the warm-up's problems count too
        bad.append(f"{n} {what}")
    if growth > args.rss_growth:
        bad.append(f"RSS grew {growth:.1f} % (> {args.rss_growth:g} %)")
    if fd1 > fd0:
        bad.append(f"{fd1 - fd0} more open fds at the end than at the start")
    if bad:
        print("FAIL: " + "; ".join(bad))
        return 1
    print("client: ok")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
