#!/usr/bin/env python3
"""test_deploy.py - the files of deploy/ (and the root Dockerfile and .dockerignore) against the
tttd they deploy.

    TTTD_BIN=build/tttd python3 tests/deploy/test_deploy.py      (make check runs it; ~5 s)

Options: every --flag in deploy/ and the Dockerfile is one of `tttd serve --help` (those that
follow `serve` in a command must be; any other must be tttd's or a known flag of another tool,
FOREIGN_FLAGS), every TTTD_* variable is one of its environment variables, and every value that
they assign to a TTTD_* variable (tttd.env, the compose files, the Kubernetes ConfigMap and
container env, commented examples included) parses.
Metrics: a real `tttd serve` on a random loopback port with the tiny test model answers one
generation, then its /metrics scrape must hold every series and label value that alerts.yml
(and every rule file prometheus.yml names) selects; it must stop on SIGTERM with status 0.
Defaults: the Dockerfile's EXPOSE and HEALTHCHECK, the compose port mappings, Prometheus' and
nginx's upstream ports, nginx's body limit and read timeout, the systemd stop timeout and
compose's stop grace period against the defaults that `--help` prints.
Kubernetes (deploy/k8s/): the pod's environment as kubelet would build it (ConfigMaps, env,
service links) parses; the container port, the probes (readiness GET /readyz, liveness
GET /healthz, answered by the real server), the Service, the ServiceMonitor and the scrape
annotations reach tttd's port; terminationGracePeriodSeconds outlasts the preStop sleep, the
drain and the cancel grace; the pod runs as non-root on a read-only root file system; the API
keys come from a Secret.

Standard library only: the compose and Prometheus facts are read line by line, the Kubernetes
manifests with tests/contract/yaml_subset.py. Ends with "N passed, N failed"; the exit status is
1 when anything failed.
"""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DEPLOY = os.path.join(ROOT, "deploy")
sys.path.insert(0, os.path.join(ROOT, "tests", "contract"))
import yaml_subset  # noqa: E402  (the YAML reader of the contract test)

# The image's files live at the root (DESIGN.md section 1), the rest of the deployment in deploy/.
ROOT_FILES = ("Dockerfile", ".dockerignore")
MODEL = "tests/fixtures/tiny_model"
CANCEL_GRACE_S = 5  # server/serve.c CANCEL_GRACE_MS: after the drain, cancelation may take this

# Flags of other programs that deploy/ uses (docker, compose, Prometheus, useradd, apt-get, curl,
# systemctl...). A flag that is neither tttd's nor listed here fails: a misspelt tttd flag in
# prose or in another tool's command line does not slip through.
FOREIGN_FLAGS = {
    # docker build / run / compose, Dockerfile instructions
    "--build-arg", "--gpus", "--rm", "--build", "--profile", "--from", "--chmod", "--interval",
    "--timeout", "--start-period", "--retries", "--detach", "--name", "--env-file", "--volume",
    "--publish", "--tag", "--file", "--follow",
    # Prometheus and promtool
    "--config.file", "--storage.tsdb.path", "--storage.tsdb.retention.time",
    "--web.enable-lifecycle",
    # apt-get, useradd, install, curl, systemctl, nginx
    "--no-install-recommends", "--system", "--user-group", "--uid", "--home-dir",
    "--no-create-home", "--shell", "--now", "--data", "--include", "--no-buffer",
    "--fail", "--silent", "--show-error", "--header", "--output",
    # kubectl
    "--from-file", "--from-literal", "--namespace",
}
# TTTD_* variables that deploy/ may name and that are no `tttd serve` option.
NON_OPTION_VARS = {"TTTD_BIN"}  # the binary the tests run
# Series that Prometheus itself makes for every target.
PROMETHEUS_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped",
                     "scrape_samples_post_metric_relabeling", "scrape_series_added"}
TARGET_LABELS = {"job", "instance"}  # added by Prometheus, not by tttd


class Results:
    def __init__(self):
        self.passed = self.failed = self.skipped = 0

    def check(self, cond, what, detail=""):
        if cond:
            self.passed += 1
            print("ok   " + what)
        else:
            self.failed += 1
            print("FAIL " + what + (": " + detail if detail else ""))
        return cond

    def skip(self, what, why):
        self.skipped += 1
        print("skip %s (%s)" % (what, why))


R = Results()


# ---- reading files ----

def read(rel):
    path = os.path.join(ROOT, rel)
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError):
        return None


def deploy_files():
    """Every text file under deploy/, as repository-relative paths."""
    out = []
    for dirpath, dirnames, filenames in os.walk(DEPLOY):
        dirnames.sort()
        for name in sorted(filenames):
            rel = os.path.relpath(os.path.join(dirpath, name), ROOT)
            if read(rel) is not None:
                out.append(rel)
    return out


def logical_lines(text):
    """Lines with backslash continuations joined (shell, Dockerfile)."""
    out, cur = [], ""
    for line in text.split("\n"):
        stripped = line.rstrip()
        if stripped.endswith("\\"):
            cur += stripped[:-1] + " "
        else:
            out.append(cur + line)
            cur = ""
    if cur:
        out.append(cur)
    return out


def size_bytes(text):
    """'1M', '1m', '512k', '1048576' -> bytes (binary units, as tttd and nginx count)."""
    m = re.fullmatch(r"\s*(\d+)\s*([kKmMgG]?)(?:i?[bB])?\s*", text)
    if not m:
        return None
    return int(m.group(1)) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[m.group(2).lower()]


def duration_s(text, bare_unit=1.0):
    """'40s', '1m30s', '660s', '45', '600000ms' -> seconds; a bare number is in bare_unit s."""
    text = text.strip().strip("\"'")
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text) * bare_unit
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*(ms|us|h|m|s|d|min|sec)", text)
    if not parts or "".join(a + b for a, b in parts) != re.sub(r"\s+", "", text):
        return None
    unit = {"us": 1e-6, "ms": 1e-3, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
    return sum(float(a) * unit[b] for a, b in parts)


# ---- tttd serve --help ----

def parse_help(text):
    """(flags, env vars, defaults by flag name) from `tttd serve --help`."""
    flags, envs, defaults = set(), set(re.findall(r"\bTTTD_[A-Z0-9_]+\b", text)), {}
    blocks = re.split(r"\n(?=  --)", text)
    for block in blocks:
        m = re.match(r"\s*--(\[no-\])?([a-z0-9][a-z0-9-]*)", block)
        if not m:
            continue
        name = m.group(2)
        flags.add("--" + name)
        if m.group(1):
            flags.add("--no-" + name)
        d = re.search(r"\[default ([^;\]]+)", " ".join(block.split()))
        if d:
            defaults[name] = d.group(1).strip()
    return flags, envs, defaults


# ---- dockerignore ----

def dockerignore_rules(text):
    rules = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        neg = line.startswith("!")
        pat = os.path.normpath(line[1:].strip() if neg else line).lstrip("/")
        rules.append((neg, pat))
    return rules


def _pattern_regex(pat):
    out, i = "", 0
    while i < len(pat):
        if pat.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pat.startswith("**", i):
            out += ".*"
            i += 2
        elif pat[i] == "*":
            out += "[^/]*"
            i += 1
        elif pat[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pat[i])
            i += 1
    return re.compile(out + "$")


def dockerignored(rules, path):
    """Whether the build context leaves out path (a pattern matching a parent folder counts;
    the last matching rule wins, as Docker decides)."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:k]) for k in range(1, len(parts) + 1)]
    excluded = False
    for neg, pat in rules:
        rx = _pattern_regex(pat)
        if any(rx.match(p) for p in prefixes):
            excluded = not neg
    return excluded


# ---- YAML, line by line ----

def yaml_block(text, key_path):
    """The lines of the mapping under key_path (e.g. ["services", "tttd"]) in a YAML file
    written in block style, or None."""
    lines = text.split("\n")
    start, indent = 0, -1
    for key in key_path:
        found, child = None, None
        for i in range(start, len(lines)):
            line = lines[i]
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            ind = len(line) - len(line.lstrip())
            if ind <= indent:
                break
            child = ind if child is None else child
            m = re.match(r"\s*(['\"]?)([^'\":]+)\1\s*:(\s|$)", line)
            if ind == child and m and m.group(2) == key:
                found = (i, ind)
                break
        if not found:
            return None
        start, indent = found[0] + 1, found[1]
    block = []
    for line in lines[start:]:
        if line.strip() and not line.lstrip().startswith("#"):
            if len(line) - len(line.lstrip()) <= indent:
                break
        block.append(line)
    return block


def yaml_list(block, key):
    """The scalar items of `key:` (block or flow list) inside a block of lines."""
    if block is None:
        return []
    text = "\n".join(block)
    m = re.search(r"^(\s*)%s:[ \t]*\[(.*?)\]" % re.escape(key), text, re.M | re.S)
    if m:
        return [unquote(x) for x in m.group(2).split(",") if x.strip()]
    m = re.search(r"^(\s*)%s:[ \t]*\n((?:\1[ \t]*-.*\n?|\s*#.*\n?)+)" % re.escape(key), text, re.M)
    if not m:
        return []
    items = re.findall(r"^\s*-\s*(.+?)\s*$", m.group(2), re.M)
    return [unquote(x) for x in items if not x.startswith("#")]


def yaml_scalar(block, key):
    if block is None:
        return None
    for line in block:
        m = re.match(r"\s*%s:\s*(.+?)\s*$" % re.escape(key), line)
        if m and not line.lstrip().startswith("#"):
            return unquote(m.group(1))
    return None


def unquote(s):
    s = s.strip()
    s = re.sub(r"\s+#.*$", "", s) if not s.startswith(("'", '"')) else s
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"":
        return s[1:-1]
    return s


def yaml_exprs(text):
    """[(alert or record name, PromQL expression)] of a Prometheus rule file."""
    lines = text.split("\n")
    out, name = [], None
    i = 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"^(\s*)(?:-\s+)?(alert|record):\s*(.+?)\s*$", line)
        if m:
            name = unquote(m.group(3))
        m = re.match(r"^(\s*)((?:-\s+)?)expr:\s*(.*?)\s*$", line)
        if not m:
            i += 1
            continue
        key_indent = len(m.group(1)) + len(m.group(2))
        value = m.group(3)
        body = []
        i += 1
        while i < len(lines):
            nxt = lines[i]
            if nxt.strip() and len(nxt) - len(nxt.lstrip()) <= key_indent:
                break
            body.append(nxt.strip())
            i += 1
        if re.fullmatch(r"[|>][-+]?", value):
            expr = "\n".join(body)
        else:
            expr = " ".join([value] + [b for b in body if b])
            if expr[:1] in "'\"":
                expr = unquote(expr)
        out.append((name, expr.strip()))
    return out


# ---- PromQL ----

AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
                "bottomk", "topk", "quantile", "limitk", "limit_ratio"}
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
WORD_OPERATORS = {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"}
_TOKEN = re.compile(r"""(?P<space>\s+)|(?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
    |(?P<range>\[[^\]]*\])|(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?[smhdwy]*)
    |(?P<id>[a-zA-Z_:][a-zA-Z0-9_:]*)|(?P<op>.)""", re.X | re.S)
_MATCHER = re.compile(r"""([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*
                         ("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')""", re.X)


def promql_selectors(expr):
    """[(metric name or None, [(label, op, value)])] of every vector selector in expr."""
    toks = [(m.lastgroup, m.group()) for m in _TOKEN.finditer(expr) if m.lastgroup != "space"]
    out, i = [], 0
    while i < len(toks):
        kind, text = toks[i]
        nxt = toks[i + 1][1] if i + 1 < len(toks) else ""
        if kind == "id" and text in GROUPING:
            i += 1
            if nxt == "(":
                while i < len(toks) and toks[i][1] != ")":
                    i += 1
            i += 1
            continue
        if kind == "id" and (text in AGGREGATIONS or text in WORD_OPERATORS or nxt == "("):
            i += 1
            continue
        if (kind == "id") or (kind == "op" and text == "{"):
            name = text if kind == "id" else None
            j = i + 1 if kind == "id" else i
            matchers = []
            if j < len(toks) and toks[j][1] == "{":
                depth_text = []
                j += 1
                while j < len(toks) and toks[j][1] != "}":
                    depth_text.append(toks[j][1])
                    j += 1
                inner = " ".join(depth_text)
                for lab, op, val in _MATCHER.findall(inner):
                    matchers.append((lab, op, json.loads(val) if val[0] == '"' else val[1:-1]))
                j += 1
            for lab, op, val in matchers:
                if lab == "__name__" and op == "=":
                    name = val
            out.append((name, matchers))
            i = j
            continue
        i += 1
    return out


# ---- the Prometheus text format ----

def parse_exposition(text):
    """(valid series names, {sample name: [label dicts]}) of a /metrics answer."""
    types, samples = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            parts = line.split()
            if len(parts) >= 4:
                types[parts[2]] = parts[3]
        elif line and not line.startswith("#"):
            m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+\S+", line)
            if m:
                labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"',
                                         m.group(2) or ""))
                samples.setdefault(m.group(1), []).append(labels)
    names = set(samples)
    for fam, typ in types.items():
        if typ == "histogram":
            names |= {fam + "_bucket", fam + "_sum", fam + "_count"}
        elif typ == "summary":
            names |= {fam, fam + "_sum", fam + "_count"}
        else:
            names.add(fam)
    return names, samples, set(types)


# ---- the server ----

class Server:
    """`$TTTD_BIN serve --host 127.0.0.1 --port 0 --model default=tests/fixtures/tiny_model`."""

    def __init__(self, binary):
        self.log = tempfile.NamedTemporaryFile(prefix="tttd_deploy_", suffix=".log", delete=False)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TTTD_")}
        cmd = [binary, "serve", "--host", "127.0.0.1", "--port", "0",
               "--model", "default=" + MODEL, "--log-level", "warn"]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.port = None
        deadline = time.monotonic() + 60
        while self.port is None:
            out = self.output()
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)\n", out)
            if m:
                self.port = int(m.group(1))
            elif self.proc.poll() is not None:
                raise RuntimeError("tttd exited (%s) before listening:\n%s"
                                   % (self.proc.returncode, out))
            elif time.monotonic() > deadline:
                raise RuntimeError("tttd did not listen within 60 s:\n" + out)
            else:
                time.sleep(0.02)
        while self.request("GET", "/readyz")[0] != 200:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("tttd was not ready within 60 s:\n" + self.output())
            time.sleep(0.02)

    def output(self):
        with open(self.log.name, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def request(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            data = json.dumps(body).encode() if body is not None else None
            h = dict(headers or {})
            if data is not None:
                h["Content-Type"] = "application/json"
            conn.request(method, path, body=data, headers=h)
            r = conn.getresponse()
            return r.status, r.read()
        except OSError as e:
            return 0, str(e).encode()
        finally:
            conn.close()

    def stop(self, timeout):
        """SIGTERM; the exit status, or None when it had to be killed."""
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    return self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
                    return None
            return self.proc.returncode
        finally:
            os.unlink(self.log.name)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---- the checks ----

def check_options(binary, files, flags, envs):
    for rel in files:
        text = read(rel)
        # Flags that follow `serve` in a command must be tttd's.
        serve_flags = set()
        for line in logical_lines(text):
            for m in re.finditer(r"(?<![\w-])serve(?![\w-])", line):
                rest = re.split(r"\]|;|&&|\|\||\||`|\)|\s#", line[m.end():])[0]
                for f in re.finditer(r"(?<![\w-])--(\[no-\])?([A-Za-z][A-Za-z0-9_.-]*)", rest):
                    name = f.group(2).rstrip(".-_")
                    serve_flags.add(name)
                    if f.group(1):
                        serve_flags.add("no-" + name)
        bad = sorted("--" + n for n in serve_flags if "--" + n not in flags)
        R.check(not bad, "%s: the flags given to `tttd serve` are in its --help" % rel,
                ", ".join(bad))
        # Every other flag: tttd's or a known one of another tool.
        other = set()
        for f in re.finditer(r"(?<![\w-])--(\[no-\])?([A-Za-z][A-Za-z0-9_.-]*)", text):
            name = "--" + f.group(2).rstrip(".-_")
            other.add(name)
            if f.group(1):
                other.add("--no-" + f.group(2).rstrip(".-_"))
        bad = sorted(n for n in other if n not in flags and n not in FOREIGN_FLAGS)
        R.check(not bad, "%s: every --flag is tttd's or a known flag of another tool" % rel,
                "unknown: " + ", ".join(bad))
        used = set(re.findall(r"\bTTTD_[A-Z0-9_]+\b", text))
        bad = sorted(v for v in used if v not in envs and v not in NON_OPTION_VARS)
        R.check(not bad, "%s: every TTTD_* variable is one of tttd serve's" % rel, ", ".join(bad))

    # The values deploy/ assigns (commented examples too) must parse.
    for rel in files:
        if rel.endswith(".md"):
            continue
        assigned = {}
        for m in re.finditer(r"\b(TTTD_[A-Z0-9_]+)(?:=|:[ \t]+)(\"[^\"\n]*\"|'[^'\n]*'|[^\s#\"']+)",
                             read(rel)):
            if m.group(1) not in NON_OPTION_VARS:
                value = m.group(2)
                if value[:1] not in "'\"":
                    value = value.rstrip(").,;:`")  # prose around an example
                assigned[m.group(1)] = unquote(value)
        if not assigned:
            continue
        ok, detail = values_accepted(binary, assigned)
        R.check(ok, "%s: tttd accepts the values of its %d TTTD_* assignments (%s)"
                % (rel, len(assigned), ", ".join(sorted(assigned))), detail)


def values_accepted(binary, variables):
    """Whether `tttd serve` accepts these variables as its environment: (ok, detail). The
    environment is read before the flags, so a run with them and one bad flag fails on the flag
    when, and only when, every value was accepted: nothing is loaded or listened on."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TTTD_")}
    env.update(variables)
    p = subprocess.run([binary, "serve", "--port", "65536"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=60)
    ok = p.returncode == 2 and "--port" in p.stderr and "from TTTD_" not in p.stderr
    return ok, "status %d: %s" % (p.returncode, p.stderr.strip())


def check_rules_against_scrape(rule_files, names, samples, jobs):
    for rel in rule_files:
        text = read(rel)
        if not R.check(text is not None, "%s exists" % rel):
            continue
        exprs = yaml_exprs(text)
        n_alerts = len(re.findall(r"^\s*-?\s*(?:alert|record):", text, re.M))
        R.check(exprs and len(exprs) == n_alerts,
                "%s: every one of its %d rules has an expr" % (rel, n_alerts),
                "%d exprs for %d rules" % (len(exprs), n_alerts))
        for name, expr in exprs:
            sels = promql_selectors(expr)
            problems = []
            if not sels:
                problems.append("no series selected")
            for metric, matchers in sels:
                if metric is None:
                    problems.append("a selector without a metric name")
                    continue
                if metric in PROMETHEUS_SERIES:
                    pass
                elif metric not in names:
                    problems.append("%s is not in the scrape" % metric)
                    continue
                for lab, op, val in matchers:
                    if lab == "job":
                        if op == "=" and val not in jobs:
                            problems.append('job="%s" is no job_name of prometheus.yml' % val)
                        continue
                    if lab in TARGET_LABELS or lab == "__name__" or metric in PROMETHEUS_SERIES:
                        continue
                    seen = [d for d in samples.get(metric, []) if lab in d]
                    if not seen:
                        problems.append("%s has no label %s" % (metric, lab))
                    elif op == "=" and val not in {d[lab] for d in seen}:
                        problems.append('%s{%s="%s"}: the scrape has %s only' % (
                            metric, lab, val, sorted({d[lab] for d in seen})))
            R.check(not problems, "%s: %s selects series that tttd exports" % (rel, name),
                    "; ".join(problems))


# ---- Kubernetes ----

K8S = os.path.join(DEPLOY, "k8s")
FALSE_WORDS = ("false", "0", "no", "off")  # the false words of a CMD_ARG_BOOL option (cmd/args.c)
CLUSTER_IP = "10.96.0.10"  # any address: what a service link carries


def dig(obj, *keys, default=None):
    for k in keys:
        if isinstance(obj, dict) and k in obj:
            obj = obj[k]
        else:
            return default
    return obj


def k8s_manifests():
    """{repository-relative path: object} of deploy/k8s/*.yaml, one object a file."""
    out = {}
    names = sorted(os.listdir(K8S)) if os.path.isdir(K8S) else []
    for name in names:
        if not name.endswith((".yaml", ".yml")):
            continue
        rel = "deploy/k8s/" + name
        try:
            doc = yaml_subset.load(read(rel) or "")
        except yaml_subset.YamlError as e:
            R.check(False, "%s parses" % rel, str(e))
            continue
        ok = isinstance(doc, dict) and doc.get("apiVersion") and doc.get("kind")
        if R.check(ok, "%s: one object with apiVersion and kind (%s)"
                   % (rel, doc.get("kind") if isinstance(doc, dict) else type(doc).__name__)):
            out[rel] = doc
    return out


def service_link_vars(svc, ip=CLUSTER_IP):
    """The variables kubelet gives every pod started after the Service exists (its "service
    links", unless the pod says enableServiceLinks: false): NAME_SERVICE_HOST, NAME_SERVICE_PORT,
    NAME_SERVICE_PORT_<PORT NAME>, and the Docker-link style NAME_PORT=tcp://IP:PORT and
    NAME_PORT_<PORT>_<PROTO>[_PROTO|_PORT|_ADDR]."""
    name = str(dig(svc, "metadata", "name", default="")).upper().replace("-", "_")
    ports = dig(svc, "spec", "ports", default=None) or []
    if not name or not ports or dig(svc, "spec", "clusterIP") == "None":
        return {}
    env = {name + "_SERVICE_HOST": ip, name + "_SERVICE_PORT": str(ports[0].get("port"))}
    for p in ports:
        proto = str(p.get("protocol", "TCP"))
        if p.get("name"):
            env["%s_SERVICE_PORT_%s" % (name, p["name"].upper().replace("-", "_"))] = str(p["port"])
        pre = "%s_PORT_%s_%s" % (name, p.get("port"), proto)
        env[pre] = "%s://%s:%s" % (proto.lower(), ip, p.get("port"))
        env.update({pre + "_PROTO": proto.lower(), pre + "_PORT": str(p.get("port")),
                    pre + "_ADDR": ip})
    env[name + "_PORT"] = "%s://%s:%s" % (str(ports[0].get("protocol", "TCP")).lower(), ip,
                                          ports[0].get("port"))
    return env


def check_k8s(binary, port, drain, jobs, image_uid):
    """deploy/k8s/ against tttd; returns the paths its probes ask, for the real server."""
    docs = k8s_manifests()
    if not R.check(docs, "deploy/k8s/ holds Kubernetes manifests"):
        return []
    by_kind = {}
    for rel, d in docs.items():
        by_kind.setdefault(d["kind"], []).append((rel, d))

    for rel, d in by_kind.get("Kustomization", []):
        res = d.get("resources") or []
        missing = [r for r in res if not os.path.exists(os.path.join(K8S, r))]
        R.check(res and not missing, "%s: its resources exist" % rel, str(missing or res))
        kinds = {dig(docs, "deploy/k8s/" + r, "kind") for r in res}
        R.check({"ConfigMap", "Deployment", "Service"} <= kinds,
                "%s: applies the ConfigMap, the Deployment and the Service" % rel,
                str(sorted(k for k in kinds if k)))

    # Kubernetes refuses ConfigMap data, env values and annotations that are not strings.
    configmaps = {}
    for rel, d in by_kind.get("ConfigMap", []):
        data = d.get("data") or {}
        bad = sorted(k for k, v in data.items() if not isinstance(v, str))
        R.check(not bad, "%s: every value is a string (quoted)" % rel, ", ".join(bad))
        configmaps[dig(d, "metadata", "name")] = {k: str(v) for k, v in data.items()}

    deps = by_kind.get("Deployment", [])
    if not R.check(len(deps) == 1, "deploy/k8s/: one Deployment", "%d" % len(deps)):
        return []
    rel, dep = deps[0]
    pod = dig(dep, "spec", "template", "spec", default={}) or {}
    labels = dig(dep, "spec", "template", "metadata", "labels", default={}) or {}
    containers = pod.get("containers") or []
    c = next((x for x in containers if x.get("name") == "tttd"), None)
    if not R.check(c is not None, "%s: a container named tttd" % rel):
        return []
    sel = dig(dep, "spec", "selector", "matchLabels", default={}) or {}
    R.check(sel and sel.items() <= labels.items(), "%s: its selector matches its pods" % rel)

    # The environment as kubelet builds it: service links, then envFrom, then env.
    services = by_kind.get("Service", [])
    links = pod.get("enableServiceLinks", True) is not False
    link_env = {}
    for _, s in services:
        link_env.update(service_link_vars(s))
    env = dict(link_env) if links else {}
    secret_vars = set()
    for src in c.get("envFrom") or []:
        name = dig(src, "configMapRef", "name")
        if name is None:
            continue  # a secretRef: its values are not here
        if R.check(name in configmaps,
                   "%s: envFrom's ConfigMap %s is in deploy/k8s/" % (rel, name)):
            env.update({src.get("prefix", "") + k: v for k, v in configmaps[name].items()})
    bad_values = []
    for e in c.get("env") or []:
        name = e.get("name")
        if "value" in e:
            if not isinstance(e["value"], str):
                bad_values.append(name)
            env[name] = str(e["value"])
        elif dig(e, "valueFrom", "configMapKeyRef"):
            ref = dig(e, "valueFrom", "configMapKeyRef")
            env[name] = configmaps.get(ref.get("name"), {}).get(ref.get("key"), "")
        else:
            env.pop(name, None)
            if dig(e, "valueFrom", "secretKeyRef"):
                secret_vars.add(name)
    R.check(not bad_values, "%s: every env value is a string (quoted)" % rel, ", ".join(bad_values))
    tttd_env = {k: v for k, v in env.items() if k.startswith("TTTD_")}
    ok, detail = values_accepted(binary, tttd_env)
    R.check(ok, "%s: tttd accepts the pod's environment (%d TTTD_* variables, service links %s)"
            % (rel, len(tttd_env), "on" if links else "off"), detail)
    # A Service named tttd links TTTD_PORT=tcp://IP:PORT into every later pod, which tttd reads
    # as --port: the pod must not rely on the ConfigMap overriding it.
    if link_env:
        ok, detail = values_accepted(binary, {k: v for k, v in link_env.items()
                                              if k.startswith("TTTD_")})
        R.check(not links or ok,
                "%s: enableServiceLinks: false, or tttd accepts its Services' link variables "
                "(TTTD_PORT=%s)" % (rel, link_env.get("TTTD_PORT")), detail)

    # Listening: the image's `serve --host 0.0.0.0` unless the manifest replaces it.
    argv = [str(x) for x in (c.get("command") or []) + (c.get("args") or [])]
    if argv:
        line = " ".join(argv)
        R.check("serve" in argv and (re.search(r"--host\W+(0\.0\.0\.0|::)(\s|$)", line) or
                                     env.get("TTTD_HOST") in ("0.0.0.0", "::")),
                "%s: the container runs tttd serve on every address" % rel, line)
    tp = env.get("TTTD_PORT", "")
    pod_port = int(tp) if tp.isdigit() else port
    cports = {p.get("name"): p.get("containerPort") for p in c.get("ports") or []}

    def reaches(p):
        return (cports.get(p) if isinstance(p, str) else p) == pod_port
    R.check(pod_port in cports.values(), "%s: containerPort %d is tttd's port%s" % (
        rel, pod_port, " (its default)" if pod_port == port else ""), str(cports))

    # Probes: readiness on /readyz, liveness on /healthz (answered while the models load), without
    # a key.
    probe_paths = []
    for kind, want in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz"),
                       ("startupProbe", None)):
        get = dig(c, kind, "httpGet")
        if want is None and kind not in c:
            continue
        if not R.check(get, "%s: %s is an HTTP GET" % (rel, kind)):
            continue
        path = get.get("path")
        R.check(path == want if want else path in ("/healthz", "/readyz"),
                "%s: %s asks GET %s" % (rel, kind, want or "/healthz or /readyz"), str(path))
        R.check(reaches(get.get("port")) and get.get("scheme", "HTTP") == "HTTP",
                "%s: %s's port %s is tttd's %d" % (rel, kind, get.get("port"), pod_port))
        probe_paths.append(path)
    R.check(env.get("TTTD_PUBLIC_HEALTH", "true").lower() not in FALSE_WORDS,
            "%s: the probes need no key (TTTD_PUBLIC_HEALTH is not false)" % rel)

    # Stopping: preStop sleep, then SIGTERM, the drain and the cancel grace, before the SIGKILL.
    pod_drain = duration_s(env["TTTD_DRAIN_TIMEOUT"], 1.0) if "TTTD_DRAIN_TIMEOUT" in env \
        else drain
    pre = dig(c, "lifecycle", "preStop", default={}) or {}
    cmd = [str(x) for x in dig(pre, "exec", "command", default=[]) or []]
    pre_s = None
    if dig(pre, "sleep", "seconds") is not None:
        pre_s = float(dig(pre, "sleep", "seconds"))
    elif len(cmd) == 2 and os.path.basename(cmd[0]) == "sleep":
        pre_s = duration_s(cmd[1], 1.0)
    R.check(pre_s, "%s: a preStop sleep lets the endpoint removal spread before SIGTERM" % rel,
            str(pre))
    grace = pod.get("terminationGracePeriodSeconds", 30)
    R.check(pod_drain is not None and grace > (pre_s or 0) + pod_drain + CANCEL_GRACE_S,
            "%s: terminationGracePeriodSeconds (%s) outlasts the preStop sleep (%gs) + the drain "
            "(%gs) + %ds" % (rel, grace, pre_s or 0, pod_drain or 0, CANCEL_GRACE_S))

    # Security: non-root, read-only root file system, no privileges.
    psc, csc = pod.get("securityContext") or {}, c.get("securityContext") or {}

    def sc(key):
        return csc.get(key, psc.get(key))
    R.check(sc("runAsNonRoot") is True and sc("runAsUser") in (None, image_uid),
            "%s: runs as non-root (the image's user %s)" % (rel, image_uid),
            "runAsNonRoot %s, runAsUser %s" % (sc("runAsNonRoot"), sc("runAsUser")))
    R.check(csc.get("readOnlyRootFilesystem") is True, "%s: read-only root file system" % rel)
    R.check(csc.get("allowPrivilegeEscalation") is False and csc.get("privileged") is not True
            and "ALL" in (dig(csc, "capabilities", "drop", default=[]) or []),
            "%s: no privilege escalation, every capability dropped" % rel)

    res = c.get("resources") or {}
    R.check(dig(res, "requests", "cpu") and dig(res, "requests", "memory") and
            dig(res, "limits", "memory"),
            "%s: requests CPU and memory, limits memory" % rel, str(res))
    R.check("nvidia.com/gpu" in (read(rel) or ""),
            "%s: gives the GPU variant (nvidia.com/gpu)" % rel)

    # API keys from a Secret, never written in the manifests.
    mounts = {m.get("name"): m for m in c.get("volumeMounts") or []}
    volumes = {v.get("name"): v for v in pod.get("volumes") or []}
    keyfile = env.get("TTTD_API_KEY_FILE")
    from_secret = "TTTD_API_KEY" in secret_vars
    if keyfile:
        for name, m in mounts.items():
            mp = str(m.get("mountPath", "")).rstrip("/")
            inside = keyfile == mp or keyfile.startswith(mp + "/")
            if inside and "secret" in volumes.get(name, {}):
                from_secret = True
    R.check(from_secret, "%s: the API keys come from a Secret (TTTD_API_KEY_FILE in a secret "
            "volume, or TTTD_API_KEY from a secretKeyRef)" % rel, "TTTD_API_KEY_FILE %s" % keyfile)
    R.check("TTTD_API_KEY" not in env, "%s: no API key is written in the manifests" % rel)

    # The Services, the ServiceMonitor and the scrape annotations reach tttd's port.
    svc_ports = {}
    for srel, s in services:
        ssel = dig(s, "spec", "selector", default={}) or {}
        R.check(ssel and ssel.items() <= labels.items(), "%s: selects the pods of %s" % (srel, rel))
        for p in dig(s, "spec", "ports", default=[]) or []:
            target = p.get("targetPort", p.get("port"))
            R.check(reaches(target), "%s: port %s (target %s) reaches tttd's port %d"
                    % (srel, p.get("port"), target, pod_port))
            svc_ports.setdefault(dig(s, "metadata", "name"), set()).add(p.get("name"))
    for mrel, m in by_kind.get("ServiceMonitor", []):
        msel = dig(m, "spec", "selector", "matchLabels", default={}) or {}
        hits = [s for _, s in services if msel and
                msel.items() <= (dig(s, "metadata", "labels", default={}) or {}).items()]
        if not R.check(hits, "%s: selects a Service of deploy/k8s/" % mrel):
            continue
        sname = dig(hits[0], "metadata", "name")
        for ep in dig(m, "spec", "endpoints", default=[]) or []:
            R.check(ep.get("port") in svc_ports.get(sname, set()) and
                    ep.get("path", "/metrics") == "/metrics",
                    "%s: scrapes the Service's port %s at %s" % (mrel, ep.get("port"),
                                                                  ep.get("path", "/metrics")))
        job = sname if not dig(m, "spec", "jobLabel") else None
        R.check(job in jobs, "%s: its job label (%s, the Service's name) is the job that "
                "alerts.yml selects (%s)" % (mrel, job, ", ".join(sorted(jobs))))
    ann = dig(dep, "spec", "template", "metadata", "annotations", default={}) or {}
    R.check(all(isinstance(v, str) for v in ann.values()),
            "%s: every pod annotation is a string (quoted)" % rel)
    if str(ann.get("prometheus.io/scrape")) == "true":
        R.check(str(ann.get("prometheus.io/port")) == str(pod_port) and
                ann.get("prometheus.io/path", "/metrics") == "/metrics",
                "%s: the prometheus.io annotations scrape port %d at /metrics" % (rel, pod_port),
                str(ann))
    for hrel, h in by_kind.get("HorizontalPodAutoscaler", []):
        ref = dig(h, "spec", "scaleTargetRef", default={}) or {}
        R.check(ref.get("kind") == "Deployment" and ref.get("name") == dig(dep, "metadata", "name"),
                "%s: scales the Deployment of %s" % (hrel, rel))
        lo, hi = dig(h, "spec", "minReplicas", default=1), dig(h, "spec", "maxReplicas")
        R.check(isinstance(hi, int) and lo <= hi, "%s: minReplicas <= maxReplicas" % hrel)
    return probe_paths


def main():
    binary = os.environ.get("TTTD_BIN") or "build/tttd"
    binary = os.path.abspath(binary)
    if not os.access(binary, os.X_OK):
        print("FAIL %s is missing: build it first (make BUILD=... %s)" % (binary, binary))
        print("0 passed, 1 failed")
        return 1

    p = subprocess.run([binary, "serve", "--help"], capture_output=True, text=True, timeout=60)
    R.check(p.returncode == 0, "tttd serve --help exits 0", "status %d" % p.returncode)
    flags, envs, defaults = parse_help(p.stdout)
    for name in ("port", "max-body", "drain-timeout", "request-timeout-ms"):
        R.check(name in defaults, "--help gives the default of --%s" % name)
    port = int(defaults.get("port", "8080"))
    drain = duration_s(defaults.get("drain-timeout", "30"), 1.0)
    req_timeout = duration_s(defaults.get("request-timeout-ms", "600000"), 0.001)
    max_body = size_bytes(defaults.get("max-body", "1M"))

    files = deploy_files() + [f for f in ROOT_FILES if read(f) is not None]
    for need in ROOT_FILES + ("deploy/docker-compose.yml", "deploy/nginx.conf",
                              "deploy/tttd.service", "deploy/prometheus.yml", "deploy/alerts.yml",
                              "deploy/k8s/deployment.yaml", "deploy/k8s/service.yaml",
                              "deploy/k8s/configmap.yaml", "deploy/README.md"):
        R.check(need in files, need + " exists")
    # One image, built from the root Dockerfile (DESIGN.md section 1), and named so everywhere.
    extra = sorted(f for f in files if re.search(r"(^|/)(Dockerfile|[^/]*\.dockerignore)$", f)
                   and f not in ROOT_FILES)
    R.check(not extra, "the only Dockerfile and .dockerignore are the root's", ", ".join(extra))
    stale = [rel for rel in files + ["README.md"] if "deploy/Dockerfile" in (read(rel) or "")]
    R.check(not stale, "deploy/, the Dockerfile and README.md name the root Dockerfile, not "
            "deploy/Dockerfile", ", ".join(stale))

    check_options(binary, files, flags, envs)

    # Drain timeout in force for the systemd unit: tttd.env's, else the default.
    env_text = read("deploy/tttd.env") or ""
    m = re.search(r"^TTTD_DRAIN_TIMEOUT=(\S+)", env_text, re.M)
    unit_drain = duration_s(m.group(1), 1.0) if m else drain

    # ---- Dockerfile ----
    df = read("Dockerfile") or ""
    instr = [ln.strip() for ln in logical_lines(df)
             if ln.strip() and not ln.lstrip().startswith("#")]
    froms = [ln for ln in instr if ln.upper().startswith("FROM ")]
    R.check(len(froms) >= 2, "Dockerfile: a build stage and a runtime stage",
            "%d FROM" % len(froms))
    final = instr[instr.index(froms[-1]):] if froms else instr
    exposed = set()
    for ln in final:
        if ln.upper().startswith("EXPOSE "):
            exposed |= {int(x.split("/")[0]) for x in ln.split()[1:] if x.split("/")[0].isdigit()}
    R.check(exposed == {port}, "Dockerfile: EXPOSE %d, tttd's default port" % port,
            "EXPOSE %s" % sorted(exposed))
    hc = [ln for ln in final if ln.upper().startswith("HEALTHCHECK ")]
    hc_paths = []
    if R.check(len(hc) == 1, "Dockerfile: one HEALTHCHECK"):
        cmd = hc[0].split("CMD", 1)[-1]
        hc_paths = re.findall(r"(?<![\w.-])(/[A-Za-z0-9._~-]+)(?![\w/.-])", cmd)
        hc_ports = {int(x) for x in re.findall(r"(?:localhost|127\.0\.0\.1|\]):(\d+)", cmd)}
        R.check(hc_paths == ["/healthz"], "Dockerfile: HEALTHCHECK asks GET /healthz (liveness)",
                "paths %s" % hc_paths)
        R.check(hc_ports <= {port}, "Dockerfile: HEALTHCHECK's port is %d" % port,
                "ports %s" % sorted(hc_ports))
    hs = read("deploy/healthcheck.sh")
    if hs is not None:
        m = re.search(r"TTTD_PORT:-(\d+)", hs)
        R.check(m and int(m.group(1)) == port,
                "healthcheck.sh: its port is TTTD_PORT's, default %d" % port)
    users = [ln.split()[1] for ln in final
             if ln.upper().startswith("USER ") and len(ln.split()) > 1]
    R.check(users and users[-1].split(":")[0] not in ("root", "0"),
            "Dockerfile: the runtime stage runs as a user other than root", "USER %s" % users)
    cmdline = " ".join(ln for ln in final if ln.upper().startswith(("CMD ", "ENTRYPOINT ")))
    R.check(re.search(r"serve", cmdline) and re.search(r"--host\W+0\.0\.0\.0", cmdline),
            "Dockerfile: runs `tttd serve --host 0.0.0.0`", cmdline)
    stops = [ln.split()[1] for ln in final if ln.upper().startswith("STOPSIGNAL ")]
    R.check(not stops or stops[-1] in ("SIGTERM", "15"), "Dockerfile: stops with SIGTERM",
            str(stops))
    # The build context keeps what the COPY instructions take.
    di = read(".dockerignore")
    if di is not None:
        rules = dockerignore_rules(di)
        for ln in instr:
            if not ln.upper().startswith("COPY ") or "--from" in ln:
                continue
            args = [a for a in ln.split()[1:] if not a.startswith("--")]
            for src in args[:-1]:
                src = src.rstrip("/")
                if src in (".", "./"):
                    missing = [s for s in ("Makefile", "engine", "server", "cmd", "api", "kernels")
                               if dockerignored(rules, s)]
                else:
                    full = os.path.join(ROOT, src)
                    paths = [src]
                    if os.path.isdir(full):
                        paths = [os.path.relpath(os.path.join(d, f), ROOT)
                                 for d, _, fs in os.walk(full) for f in fs]
                    missing = [s for s in paths if dockerignored(rules, s)]
                    if not os.path.exists(full):
                        missing = [src + " (no such path)"]
                R.check(not missing, "Dockerfile: COPY %s finds its files in the context" % src,
                        "left out by .dockerignore: %s" % missing[:5])
        R.check(dockerignored(rules, "build/tttd") and dockerignored(rules, ".git/HEAD"),
                ".dockerignore leaves out build/ and .git/")

    # ---- compose ----
    compose = read("deploy/docker-compose.yml") or ""
    services = yaml_block(compose, ["services"]) or []
    body = [ln for ln in services if ln.strip() and not ln.lstrip().startswith("#")]
    child = min((len(ln) - len(ln.lstrip()) for ln in body), default=0)
    service_names = {m.group(1) for m in (re.match(r"^ {%d}([A-Za-z0-9_.-]+):\s*$" % child, ln)
                                          for ln in body) if m}
    R.check("tttd" in service_names, "docker-compose.yml: a tttd service", str(service_names))
    for rel in [f for f in files if re.search(r"docker-compose[^/]*\.ya?ml$", f)]:
        svc = yaml_block(read(rel), ["services", "tttd"])
        if svc is None:
            continue
        svc_port = port
        env_port = re.search(r"TTTD_PORT[:=]\s*[\"']?(\d+)", "\n".join(
            ln for ln in svc if not ln.lstrip().startswith("#")))
        if env_port:
            svc_port = int(env_port.group(1))
        for item in yaml_list(svc, "ports"):
            container = item.split("/")[0].split(":")[-1]
            R.check(container.isdigit() and int(container) == svc_port,
                    "%s: tttd's port mapping %s reaches its port %d" % (rel, item, svc_port))
        # The image it builds: context relative to the compose file, dockerfile to the context.
        build = yaml_block(read(rel), ["services", "tttd", "build"])
        context = yaml_scalar(build, "context") if build else yaml_scalar(svc, "build")
        dockerfile = yaml_scalar(build, "dockerfile") if build else None
        if context or dockerfile:
            ctx = os.path.normpath(os.path.join(os.path.dirname(os.path.join(ROOT, rel)),
                                                context or "."))
            built = os.path.normpath(os.path.join(ctx, dockerfile or "Dockerfile"))
            R.check(ctx == ROOT and built == os.path.join(ROOT, "Dockerfile"),
                    "%s: builds the root Dockerfile with the repository as context" % rel,
                    "context %s, dockerfile %s" % (os.path.relpath(ctx, ROOT),
                                                   os.path.relpath(built, ROOT)))
        grace = yaml_scalar(svc, "stop_grace_period")
        if rel.endswith("docker-compose.yml"):
            g = duration_s(grace or "10s")
            R.check(g is not None and g > drain + CANCEL_GRACE_S,
                    "%s: stop_grace_period (%s) outlasts the drain (%gs) + %ds" % (
                        rel, grace or "default 10s", drain, CANCEL_GRACE_S))
        for vol in yaml_list(yaml_block(read(rel), ["services", "prometheus"]) or [], "volumes") + \
                yaml_list(yaml_block(read(rel), ["services", "nginx"]) or [], "volumes"):
            src = vol.split(":")[0]
            if src.startswith("./"):
                R.check(os.path.exists(os.path.join(DEPLOY, src)),
                        "%s: the mounted %s exists in deploy/" % (rel, src))
    gpu = [f for f in files if re.search(r"docker-compose[^/]*\.ya?ml$", f) and
           re.search(r"driver:\s*nvidia", read(f))]
    R.check(any(re.search(r"reservations:\s*\n\s*devices:", read(f)) for f in gpu),
            "a compose file reserves NVIDIA GPUs (deploy.resources.reservations.devices)")

    # ---- Prometheus ----
    prom = read("deploy/prometheus.yml") or ""
    prom_live = "\n".join(ln for ln in prom.split("\n") if not ln.lstrip().startswith("#"))
    jobs = set(re.findall(r"job_name:\s*['\"]?([A-Za-z0-9_.-]+)", prom))
    R.check(jobs, "prometheus.yml: a scrape job", "no job_name")
    targets = re.findall(r"['\"]([A-Za-z0-9_.-]+):(\d+)['\"]", prom_live)
    for host, p_ in targets:
        if host in service_names and host != "tttd":
            continue
        R.check(int(p_) == port and (host in service_names or host in ("127.0.0.1", "localhost")),
                "prometheus.yml: target %s:%s is tttd on its port %d" % (host, p_, port))
    rule_files = []
    for item in yaml_list(prom.split("\n"), "rule_files"):
        rel = "deploy/" + os.path.basename(item)
        rule_files.append(rel)
    R.check("deploy/alerts.yml" in rule_files, "prometheus.yml loads alerts.yml", str(rule_files))

    # ---- Kubernetes ----
    image_uid = users[-1].split(":")[0] if users else None
    probe_paths = check_k8s(binary, port, drain, jobs,
                            int(image_uid) if image_uid and image_uid.isdigit() else image_uid)

    # ---- nginx ----
    ngx = read("deploy/nginx.conf") or ""
    m = re.search(r"^\s*client_max_body_size\s+(\S+);", ngx, re.M)
    R.check(m and size_bytes(m.group(1)) == max_body,
            "nginx.conf: client_max_body_size is tttd's --max-body (%s)" % defaults.get("max-body"),
            m.group(1) if m else "not set")
    m = re.search(r"^\s*proxy_read_timeout\s+(\S+);", ngx, re.M)
    t = duration_s(m.group(1)) if m else None
    R.check(t is not None and t > req_timeout,
            "nginx.conf: proxy_read_timeout outlasts --request-timeout-ms (%gs)" % req_timeout,
            m.group(1) if m else "not set (nginx's default is 60 s)")
    # The location nginx picks for /v1/generate: an exact one, else the longest prefix.
    exact = prefix = None
    for lm in re.finditer(r"location\s+(=\s*|\^~\s+)?(/\S*)\s*\{([^}]*)\}", ngx):
        mod, path, body_ = (lm.group(1) or "").strip(), lm.group(2), lm.group(3)
        if mod == "=" and path == "/v1/generate":
            exact = (path, body_)
        elif mod != "=" and "/v1/generate".startswith(path):
            if prefix is None or len(path) > len(prefix[0]):
                prefix = (path, body_)
    gen_loc = exact or prefix
    R.check(gen_loc and re.search(r"proxy_buffering\s+off", gen_loc[1]),
            "nginx.conf: the location of /v1/generate (SSE) has proxy_buffering off",
            gen_loc[0] if gen_loc else "no location")
    R.check(re.search(r"proxy_set_header\s+X-Request-Id\s", ngx, re.I),
            "nginx.conf: passes X-Request-Id upstream")
    for host, p_ in re.findall(r"^\s*server\s+([A-Za-z0-9_.-]+):(\d+)", ngx, re.M):
        R.check(int(p_) == port and (host in service_names or host in ("127.0.0.1", "localhost")),
                "nginx.conf: upstream %s:%s is tttd on its port %d" % (host, p_, port))

    # ---- systemd ----
    unit = read("deploy/tttd.service") or ""

    def unit_key(key):
        vals = re.findall(r"^%s=(.*)$" % key, unit, re.M)
        return vals[-1].strip() if vals else None
    ts = unit_key("TimeoutStopSec")
    t = duration_s(ts or "90s")
    R.check(t is not None and t > unit_drain + CANCEL_GRACE_S,
            "tttd.service: TimeoutStopSec (%s) outlasts the drain (%gs) + %ds"
            % (ts, unit_drain, CANCEL_GRACE_S))
    R.check(unit_key("KillSignal") in (None, "SIGTERM", "TERM", "15"),
            "tttd.service: stops with SIGTERM")
    R.check(unit_key("EnvironmentFile") is not None, "tttd.service: has an EnvironmentFile")
    R.check(re.search(r"tttd\s+serve\b", unit_key("ExecStart") or ""),
            "tttd.service: ExecStart runs tttd serve")
    R.check((unit_key("User") or "root") != "root" or unit_key("DynamicUser") == "yes",
            "tttd.service: not root")
    R.check(unit_key("NoNewPrivileges") == "yes" and
            unit_key("ProtectSystem") in ("strict", "full"),
            "tttd.service: hardened (NoNewPrivileges, ProtectSystem)")

    # ---- runtime packages ----
    if shutil.which("dpkg-query") and shutil.which("readelf") and os.path.exists(
            os.path.join(DEPLOY, "runtime-packages.sh")):
        p = subprocess.run(["sh", os.path.join(DEPLOY, "runtime-packages.sh"), binary],
                           capture_output=True, text=True, timeout=60)
        pkgs = p.stdout.split()
        R.check(p.returncode == 0 and any(x.startswith("libmicrohttpd") for x in pkgs),
                "runtime-packages.sh names the packages of tttd's libraries (%s)" % " ".join(pkgs),
                "status %d: %s" % (p.returncode, p.stderr.strip()))
    else:
        R.skip("runtime-packages.sh", "no dpkg-query or readelf here")

    # ---- a real server ----
    try:
        srv = Server(binary)
    except RuntimeError as e:
        R.check(False, "tttd serve starts with %s and becomes ready" % MODEL, str(e))
        return finish()
    try:
        R.check(True, "tttd serve starts with %s and becomes ready (port %d)" % (MODEL, srv.port))
        for path in sorted(set(hc_paths + probe_paths)):
            st, _ = srv.request("GET", path)
            R.check(st == 200, "GET %s (the HEALTHCHECK, the Kubernetes probes) answers 200"
                    % path, "status %d" % st)
        if hs is not None and shutil.which("bash"):
            script = os.path.join(DEPLOY, "healthcheck.sh")
            env = dict(os.environ, TTTD_PORT=str(srv.port))
            rc = subprocess.run(["bash", script, "/healthz"], env=env, timeout=30).returncode
            R.check(rc == 0, "healthcheck.sh reports a live server healthy", "status %d" % rc)
            rc = subprocess.run(["bash", script, "/no-such-route"], env=env, timeout=30).returncode
            R.check(rc != 0, "healthcheck.sh reports a 404 unhealthy")
            env["TTTD_PORT"] = str(closed_port())
            rc = subprocess.run(["bash", script], env=env, timeout=30).returncode
            R.check(rc != 0, "healthcheck.sh reports a closed port unhealthy")
        elif hs is not None:
            R.skip("healthcheck.sh against the server", "no bash here")
        st, body = srv.request("POST", "/v1/generate",
                               {"prompt": "a red circle", "width": 32, "height": 48, "steps": 2,
                                "guidance": 1}, {"Accept": "application/json"})
        R.check(st == 200, "one generation answers 200", "%d %r" % (st, body[:200]))
        st, body = srv.request("GET", "/metrics")
        R.check(st == 200, "GET /metrics answers 200", "status %d" % st)
        names, samples, families = parse_exposition(body.decode("utf-8", "replace"))
        R.check(len(names) > 10, "the scrape has tttd's metrics (%d series names)" % len(names))
        check_rules_against_scrape(rule_files or ["deploy/alerts.yml"], names, samples, jobs)
        # Every tttd_* word anywhere in deploy/ (the README's too).
        for rel in files:
            words = set(re.findall(r"(?<![\w$./-])tttd_[a-z0-9_]+", read(rel)))
            bad = sorted(w for w in words if w not in names and w not in families)
            if words:
                R.check(not bad, "%s: its tttd_* names are metrics of the scrape" % rel,
                        ", ".join(bad))
    finally:
        t0 = time.monotonic()
        rc = srv.stop(drain + CANCEL_GRACE_S + 10)
        R.check(rc == 0, "SIGTERM stops tttd with status 0 (in %.1f s)" % (time.monotonic() - t0),
                "status %s" % rc)
    return finish()


def finish():
    tail = ", %d skipped" % R.skipped if R.skipped else ""
    print("%d passed, %d failed%s" % (R.passed, R.failed, tail))
    return 1 if R.failed else 0


if __name__ == "__main__":
    sys.exit(main())
