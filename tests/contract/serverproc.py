"""serverproc.py - a `tttd serve` child process on a random loopback port and a small HTTP client
for it (http.client), for the contract test. Standard library only.
"""
import http.client
import json
import os
import select
import signal
import socket
import subprocess
import tempfile
import threading
import time

MODEL = "tests/fixtures/tiny_model"


class Server:
    """`$TTTD_BIN serve --host 127.0.0.1 --port 0 --model default=MODEL *args`."""

    def __init__(self, *args, binary=None):
        self.binary = binary or os.environ.get("TTTD_BIN") or "build/tttd"
        if not os.access(self.binary, os.X_OK):
            raise SystemExit("contract: %s is missing: build it first" % self.binary)
        self.log = tempfile.NamedTemporaryFile(prefix="tttd_contract_", suffix=".log", delete=False)
        cmd = [self.binary, "serve", "--host", "127.0.0.1", "--port", "0",
               "--model", "default=" + MODEL] + list(args)
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        self.port = None
        deadline = time.monotonic() + 60
        while self.port is None:
            text = self.output()
            at = text.find("listening on 127.0.0.1:")
            if at >= 0 and "\n" in text[at:]:
                self.port = int(text[at + len("listening on 127.0.0.1:"):].split()[0])
            elif self.proc.poll() is not None:
                raise RuntimeError("the server exited (%s) before listening:\n%s"
                                   % (self.proc.returncode, text))
            elif time.monotonic() > deadline:
                self.proc.kill()
                raise RuntimeError("the server did not start within 60 s:\n" + text)
            else:
                time.sleep(0.01)
        # Listening comes before the workers have loaded the model: wait for /readyz.
        headers = {}
        if "--api-key" in args:
            headers["Authorization"] = "Bearer " + args[list(args).index("--api-key") + 1]
        while self.request("GET", "/readyz", headers=headers).status != 200:
            if time.monotonic() > deadline:
                self.proc.kill()
                raise RuntimeError("the server was not ready within 60 s:\n" + self.output())
            time.sleep(0.01)

    def output(self):
        with open(self.log.name, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self):
        """SIGTERM and wait; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        os.unlink(self.log.name)
        return self.proc.returncode

    def request(self, method, path, body=None, headers=None, timeout=60):
        """One request on a new connection; returns a Response."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        h = dict(headers or {})
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        if body is not None:
            h.setdefault("Content-Type", "application/json")
        if body is not None and len(body) > 65536:
            return self._request_large(method, path, body, h, timeout)
        try:
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            data = r.read()
            return Response(r.status, r.getheaders(), data)
        finally:
            conn.close()

    def _request_large(self, method, path, body, headers, timeout):
        """A request whose body the server may refuse (413) before reading it all: the answer
        is read as soon as it comes, and the server closing the connection on the rest of the
        body is no error (http.client would insist on sending everything first)."""
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        try:
            head = "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n" % (
                method, path, len(body))
            head += "".join("%s: %s\r\n" % kv for kv in headers.items()) + "\r\n"
            sock.sendall(head.encode())
            sent = 0
            try:
                while sent < len(body):
                    readable, writable, _ = select.select([sock], [sock], [], timeout)
                    if readable:
                        break  # the answer has come: stop sending
                    if writable:
                        sent += sock.send(body[sent:sent + 65536])
            except (BrokenPipeError, ConnectionResetError):
                pass
            r = http.client.HTTPResponse(sock, method=method)
            r.begin()
            return Response(r.status, r.getheaders(), r.read())
        finally:
            sock.close()

    def background(self, method, path, body=None, headers=None):
        """A request on its own thread, its body readable while it streams."""
        return Background(self, method, path, body, headers)


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = [(k.lower(), v) for k, v in headers]
        self.body = body

    def header(self, name):
        for k, v in self.headers:
            if k == name.lower():
                return v
        return None

    def media_type(self):
        return (self.header("content-type") or "").split(";")[0].strip().lower()

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<%d %s %r>" % (self.status, self.media_type(), self.body[:200])


class Background:
    """A streamed request read chunk by chunk on a thread."""

    def __init__(self, server, method, path, body, headers):
        self.chunks = []
        self.lock = threading.Lock()
        self.status = None
        self.headers = []
        self.closed = False
        self.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        h = dict(headers or {})
        h.setdefault("Content-Type", "application/json")
        data = json.dumps(body).encode() if body is not None else None
        self.conn.request(method, path, body=data, headers=h)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        try:
            r = self.conn.getresponse()
            self.status, self.headers = r.status, [(k.lower(), v) for k, v in r.getheaders()]
            while True:
                chunk = r.read1(65536)
                if not chunk:
                    break
                with self.lock:
                    self.chunks.append(chunk)
        except OSError:
            pass
        finally:
            self.closed = True

    def text(self):
        with self.lock:
            return b"".join(self.chunks).decode("utf-8", "replace")

    def wait_for(self, needle, timeout=20):
        deadline = time.monotonic() + timeout
        while needle not in self.text():
            if time.monotonic() > deadline or (self.closed and needle not in self.text()):
                raise AssertionError("never saw %r in the stream: %r" % (needle, self.text()[:400]))
            time.sleep(0.005)
        return self.text()

    def finish(self, timeout=30):
        self.thread.join(timeout)
        self.conn.close()
        return Response(self.status or 0, self.headers, self.text().encode())


def parse_sse(text):
    """[(event name, data string)] of a text/event-stream body; comments are skipped."""
    events, name, data = [], "message", []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if line == "":
            if data:
                events.append((name, "\n".join(data)))
            name, data = "message", []
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
    return events
