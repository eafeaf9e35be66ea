#!/usr/bin/env python3
"""test_openapi_contract.py - api/openapi.yaml against a running `tttd serve`, both ways.

The file to the server: every operation (path + method) is called in each way that gives one of
its declared statuses; every answer's status must be declared for that operation, its body must
match the declared schema for its media type (required fields, types, bounds, no undeclared
fields where the schema says additionalProperties: false; each Server-Sent Event's data against
the event's schema), and its declared required headers must be there. Every declared status of
every operation must have been seen. Every field of each request body is sent once with a valid
value (the server must accept it) and, where the schema bounds it, once out of bounds (422 naming
the field; on the OpenAI route 400 with `param` naming it); an undeclared field is refused so.

The server to the file: every method on every declared path that the file does not declare
answers 405 with an Allow header listing exactly the declared ones, and every other route the
server's sources mention, plus a list of likely ones, answers 404.

Run from the repository root (make check, make contract): TTTD_BIN names the binary
(default build/tttd). Standard library only: the YAML is read by tests/contract/yaml_subset.py.
"""
import glob
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import schema as js  # noqa: E402
import yaml_subset  # noqa: E402
from serverproc import Server, parse_sse  # noqa: E402

SPEC_PATH = "api/openapi.yaml"
METHODS = ("get", "post", "put", "delete", "patch")
SMALL = {"width": 32, "height": 48, "steps": 2, "guidance": 1}
SLOW = {"prompt": "slow", "width": 32, "height": 48, "steps": 5000, "guidance": 1,
        "timeout_ms": 30000, "stream": True}
KEY = "contract-key"

# Declared statuses that a client cannot provoke on purpose, with the reason; everything else
# declared must be seen.
UNREACHABLE = {
    ("post", "/v1/generate", "500"): "an engine failure",
    ("post", "/v1/images/generations", "500"): "an engine failure",
    ("post", "/v1/generate", "503"): "model loading (the tiny model loads before the server "
                                     "listens)",
    ("post", "/v1/images/generations", "503"): "model loading",
    ("post", "/sdapi/v1/txt2img", "500"): "an engine failure",
    ("post", "/sdapi/v1/txt2img", "503"): "model loading (and the draining server may close "
                                          "its socket first)",
    ("post", "/sdapi/v1/txt2img", "504"): "--request-timeout-ms only (A1111 has no timeout "
                                          "field); /v1/generate's 504 is the same path",
}


class Contract:
    def __init__(self, spec):
        self.spec = spec
        self.failures = []
        self.checks = 0
        self.seen = set()  # (method, template, status)

    def fail(self, what):
        self.failures.append(what)
        print("FAIL " + what)

    def ok(self, cond, what):
        self.checks += 1
        if not cond:
            self.fail(what)
        return cond

    # ---- the spec itself ----

    def operations(self):
        for template, item in self.spec["paths"].items():
            for method in METHODS:
                if method in item:
                    yield method, template, js.deref(self.spec, item[method])

    def operation(self, method, template):
        item = self.spec["paths"].get(template, {})
        op = item.get(method)
        return js.deref(self.spec, op) if op else None

    def check_spec(self):
        self.ok(str(self.spec.get("openapi", "")).startswith("3.1"), "openapi: 3.1.x")

        def walk(node, where):
            if isinstance(node, dict):
                if "$ref" in node:
                    try:
                        js.resolve(self.spec, node["$ref"])
                    except ValueError as e:
                        self.fail("%s: %s" % (where, e))
                for k, v in node.items():
                    walk(v, where + "/" + str(k))
            elif isinstance(node, list):
                for i, v in enumerate(node):
                    walk(v, "%s[%d]" % (where, i))
        walk(self.spec, "#")
        for method, template, op in self.operations():
            self.ok(op.get("responses"), "%s %s declares responses" % (method.upper(), template))

    # ---- answers against the spec ----

    def template_of(self, path):
        path = path.split("?")[0]
        for template in self.spec["paths"]:
            pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
            if re.match(pattern, path):
                return template
        return None

    def response_spec(self, op, status):
        responses = op.get("responses", {})
        for key in (str(status), "%dXX" % (status // 100), "default"):
            if key in responses:
                return key, js.deref(self.spec, responses[key])
        return None, None

    def check(self, method, path, r, label=""):
        """One answer of method path against the operation's declared responses."""
        method = method.lower()
        template = self.template_of(path)
        what = "%s %s%s -> %d" % (method.upper(), path, " (" + label + ")" if label else "",
                                  r.status)
        op = self.operation(method, template) if template else None
        if not self.ok(op is not None, "%s: an operation of the file" % what):
            return
        key, resp = self.response_spec(op, r.status)
        if not self.ok(resp is not None, "%s: status declared for %s %s (body %r)"
                       % (what, method.upper(), template, r.body[:200])):
            return
        self.seen.add((method, template, key))
        for name, h in resp.get("headers", {}).items():
            h = js.deref(self.spec, h)
            value = r.header(name)
            if h.get("required"):
                self.ok(value is not None, "%s: required header %s" % (what, name))
            if value is not None and "schema" in h:
                sch = js.deref(self.spec, h["schema"])
                v = value
                if sch.get("type") == "integer" and re.match(r"^-?\d+$", value):
                    v = int(value)
                errs = js.validate(v, sch, self.spec, "header " + name)
                self.ok(not errs, "%s: %s" % (what, "; ".join(errs)))
        content = resp.get("content")
        if not content:
            self.ok(len(r.body) == 0, "%s: no content declared, body %r" % (what, r.body[:100]))
            return
        media = r.media_type()
        if not self.ok(media in content, "%s: media type %r declared (%s)"
                       % (what, media, ", ".join(content))):
            return
        media_spec = js.deref(self.spec, content[media])
        sch = media_spec.get("schema", {})
        if media == "application/json":
            try:
                body = r.json()
            except ValueError as e:
                self.fail("%s: body is not JSON: %s" % (what, e))
                return
            errs = js.validate(body, sch, self.spec)
            self.ok(not errs, "%s: body against the schema: %s" % (what, "; ".join(errs[:8])))
        elif media == "text/event-stream":
            self.check_events(what, r.body.decode("utf-8", "replace"), media_spec)
        elif media == "image/png":
            self.ok(r.body[:8] == b"\x89PNG\r\n\x1a\n", "%s: PNG bytes" % what)
        elif media == "image/jpeg":
            self.ok(r.body[:3] == b"\xff\xd8\xff", "%s: JPEG bytes" % what)
        elif media.startswith("text/"):
            self.ok(len(r.body) > 0, "%s: a body" % what)
            if sch and sch.get("type") == "string":
                errs = js.validate(r.body.decode("utf-8", "replace"), sch, self.spec)
                self.ok(not errs, "%s: %s" % (what, "; ".join(errs)))

    def event_schemas(self, media_spec):
        """{event name: schema} of a text/event-stream: the media type's x-tttd-sse-events (or
        x-events), or its
        itemSchema (OpenAPI 3.2 style: oneOf of {event: const, data: schema})."""
        events = media_spec.get("x-tttd-sse-events") or media_spec.get("x-events")
        if events:
            return {name: js.deref(self.spec, s) for name, s in events.items()}
        item = media_spec.get("itemSchema")
        out = {}
        if item:
            for alt in js.deref(self.spec, item).get("oneOf", []):
                alt = js.deref(self.spec, alt)
                ev = alt.get("properties", {}).get("event", {})
                data = alt.get("properties", {}).get("data", {})
                name = ev.get("const") or (ev.get("enum") or [None])[0]
                if name:
                    out[name] = data.get("contentSchema", data)
        return out

    def check_events(self, what, text, media_spec):
        schemas = self.event_schemas(media_spec)
        if not self.ok(schemas, "%s: the stream's events are described (x-tttd-sse-events or itemSchema)"
                       % what):
            return
        events = parse_sse(text)
        self.ok(events, "%s: at least one event" % what)
        for name, data in events:
            if not self.ok(name in schemas, "%s: event %r declared (%s)"
                           % (what, name, ", ".join(schemas))):
                continue
            try:
                value = json.loads(data)
            except ValueError:
                self.fail("%s: event %s data is not JSON: %r" % (what, name, data[:100]))
                continue
            errs = js.validate(value, schemas[name], self.spec, "event " + name)
            self.ok(not errs, "%s: %s" % (what, "; ".join(errs[:8])))
            self.seen.add(("event", name, ""))


def body_schema(c, method, template):
    op = c.operation(method, template)
    rb = js.deref(c.spec, op.get("requestBody", {}))
    media = rb.get("content", {}).get("application/json", {})
    return js.deref(c.spec, media.get("schema", {}))


def valid_value(name, sch, spec):
    """A value of sch the tiny model serves quickly (small sizes, few steps)."""
    sch = js.deref(spec, sch)
    quick = {"width": 32, "height": 48, "steps": 2, "n": 1, "timeout_ms": 60000,
             "size": "32x48", "stream": False, "preview_every": 1, "model": "default",
             "prompt": "a red cube", "guidance": 1}
    if name in quick:
        return quick[name]
    if "const" in sch:
        return sch["const"]
    if "enum" in sch:
        return next(v for v in sch["enum"] if v is not None)
    if "default" in sch and sch["default"] is not None:
        return sch["default"]
    if "example" in sch:
        return sch["example"]
    t = sch.get("type")
    t = [x for x in t if x != "null"][0] if isinstance(t, list) else t
    if t == "integer":
        return int(sch.get("minimum", 1))
    if t == "number":
        return sch.get("minimum", 1.0)
    if t == "boolean":
        return False
    if t == "string":
        return "x"
    for alt in sch.get("oneOf", []) + sch.get("anyOf", []):
        return valid_value(name, alt, spec)
    raise ValueError("no valid value known for field %s" % name)


def bad_values(sch, spec):
    """Values of the right type out of sch's bounds (each must give 422)."""
    sch = js.deref(spec, sch)
    out = []
    t = sch.get("type")
    t = [x for x in t if x != "null"][0] if isinstance(t, list) else t
    if t in ("integer", "number"):
        if "maximum" in sch and abs(sch["maximum"]) < 2 ** 53:
            out.append(sch["maximum"] + 1)
        if "minimum" in sch and abs(sch["minimum"]) < 2 ** 53:
            out.append(sch["minimum"] - 1)
        if "multipleOf" in sch and "minimum" in sch:
            out.append(sch["minimum"] + sch["multipleOf"] // 2 if t == "integer"
                       else sch["minimum"] + sch["multipleOf"] / 2)
    if t == "string" and "enum" in sch:
        out.append("not-one-of-the-enum")
    if t == "string" and "maxLength" in sch and sch["maxLength"] < 100000:
        out.append("x" * (sch["maxLength"] + 1))
    return out


def check_fields(c, srv, method, template, base, invalid=422):
    """Every field of the body once valid, once out of bounds; an unknown field refused: 422 on
    tttd's routes, 400 with `param` naming the field on OpenAI's (invalid=400)."""
    sch = body_schema(c, method, template)

    def names(r, name):
        err = r.json()["error"]
        if invalid == 400:
            c.ok(err.get("param") == name, "the 400's param is %s: %r" % (name, err.get("param")))
        return name in err["message"]
    props = sch.get("properties", {})
    c.ok(sch.get("additionalProperties") is False,
         "%s %s: the body schema says additionalProperties: false" % (method.upper(), template))
    for name, psch in props.items():
        value = valid_value(name, psch, c.spec)
        body = dict(base)
        body[name] = value
        if name == "stream" and value:
            body["stream"] = False
        r = srv.request(method.upper(), template, body)
        c.ok(r.status == 200, "%s %s with %s=%r: 200 (got %d %r)"
             % (method.upper(), template, name, value, r.status, r.body[:200]))
        c.check(method, template, r, "field " + name)
        for bad in bad_values(psch, c.spec):
            body = dict(base)
            body[name] = bad
            r = srv.request(method.upper(), template, body)
            c.check(method, template, r, "bad " + name)
            if c.ok(r.status == invalid, "%s %s with %s=%r: %d (got %d)"
                    % (method.upper(), template, name, str(bad)[:40], invalid, r.status)):
                c.ok(names(r, name), "the %d message names %s: %r" % (invalid, name, r.body[:200]))
    body = dict(base)
    body["no_such_field"] = 1
    r = srv.request(method.upper(), template, body)
    c.check(method, template, r, "unknown field")
    if c.ok(r.status == invalid, "%s %s with an unknown field: %d (got %d)"
            % (method.upper(), template, invalid, r.status)):
        c.ok(names(r, "no_such_field"), "the %d names the unknown field" % invalid)
    for name in sch.get("required", []):
        body = {k: v for k, v in base.items() if k != name}
        r = srv.request(method.upper(), template, body)
        c.check(method, template, r, "missing " + name)
        if c.ok(r.status == invalid, "%s %s without %s: %d (got %d)"
                % (method.upper(), template, name, invalid, r.status)):
            names(r, name)


def job_id_of_stream(bg):
    text = bg.wait_for("event: queued")
    while True:
        for name, data in parse_sse(text):
            if name == "queued":
                return json.loads(data)["id"]
        time.sleep(0.005)
        text = bg.text()


GEN, IMG = "/v1/generate", "/v1/images/generations"
NATIVE = dict(SMALL, prompt="a red cube", seed=1)
OPENAI = {"prompt": "a red cube", "size": "32x48", "steps": 2, "guidance": 1}
TOO_LARGE = "x" * (2 << 20)  # over the default --max-body (1 MiB)
TXT, OPTS = "/sdapi/v1/txt2img", "/sdapi/v1/options"
A1111 = dict(prompt="a red cube", width=32, height=48, steps=2, cfg_scale=1, seed=-1,
             batch_size=2, n_iter=1, sampler_name="Euler", styles=[], restore_faces=False)


def scenarios_a1111(c, srv):
    """AUTOMATIC1111's routes: each answer, its errors."""
    for path in ("/sdapi/v1/sd-models", "/sdapi/v1/samplers", "/sdapi/v1/progress", OPTS):
        c.check("get", path, srv.request("GET", path))
    c.check("post", TXT, srv.request("POST", TXT, A1111), "images")
    c.check("post", TXT, srv.request("POST", TXT, "{\"prompt\": "), "bad JSON")
    c.check("post", TXT, srv.request("POST", TXT, dict(A1111, sampler_name="DDIM")), "sampler")
    c.check("post", TXT, srv.request("POST", TXT, TOO_LARGE), "413")
    c.check("post", TXT, srv.request("POST", TXT, "{}", {"Content-Type": "application/xml"}),
            "415")
    c.check("post", "/sdapi/v1/img2img", srv.request("POST", "/sdapi/v1/img2img",
                                                     {"init_images": ["x"]}), "unsupported")
    c.check("post", "/sdapi/v1/img2img", srv.request("POST", "/sdapi/v1/img2img", TOO_LARGE),
            "413")
    c.check("post", OPTS, srv.request("POST", OPTS, {"sd_model_checkpoint": "default",
                                                     "samples_format": "png"}), "set")
    c.check("post", OPTS, srv.request("POST", OPTS, {"sd_model_checkpoint": "nope"}), "model")
    c.check("post", OPTS, srv.request("POST", OPTS, {"sd_model_checkpoint": 1}), "type")
    c.check("post", OPTS, srv.request("POST", OPTS, "[1"), "bad JSON")
    c.check("post", OPTS, srv.request("POST", OPTS, TOO_LARGE), "413")
    c.check("post", OPTS, srv.request("POST", OPTS, "{}", {"Content-Type": "application/xml"}),
            "415")


def scenarios_plain(c, srv):
    """A server with the default options: every answer that needs no particular state, then
    every field of both request bodies (the bounds in the file are the defaults')."""
    for path in ("/", "/healthz", "/readyz", "/metrics", "/v1/models"):
        c.check("get", path, srv.request("GET", path))
    # POST /v1/generate in each of its answers.
    c.check("post", GEN, srv.request("POST", GEN, NATIVE), "json")
    c.check("post", GEN, srv.request("POST", GEN, dict(NATIVE, n=2)), "json n=2")
    c.check("post", GEN, srv.request("POST", GEN, NATIVE, {"Accept": "image/png"}), "png")
    c.check("post", GEN, srv.request("POST", GEN, dict(NATIVE, format="jpeg"),
                                     {"Accept": "image/jpeg"}), "jpeg")
    r = srv.request("POST", GEN, dict(NATIVE, stream=True, preview_every=1))
    c.check("post", GEN, r, "stream")
    for ev in ("queued", "progress", "preview", "image", "done"):
        c.ok(("event", ev, "") in c.seen, "the stream had a %s event" % ev)
    for path, body in ((GEN, NATIVE), (IMG, OPENAI)):
        c.check("post", path, srv.request("POST", path, "{\"prompt\": "), "bad JSON")
        c.check("post", path, srv.request("POST", path, dict(body, model="nope")), "no model")
        c.check("post", path, srv.request("POST", path, TOO_LARGE), "413")
        c.check("post", path, srv.request("POST", path, "{}",
                                          {"Content-Type": "application/xml"}), "415")
        c.check("post", path, srv.request("POST", path, dict(body, steps=100, timeout_ms=1)),
                "timeout")
    c.check("post", GEN, srv.request("POST", GEN, NATIVE, {"Accept": "text/html"}), "406")
    c.check("post", IMG, srv.request("POST", IMG, OPENAI), "b64_json")
    c.check("post", IMG, srv.request("POST", IMG, dict(OPENAI, response_format="url")), "url")
    # Jobs: a finished one, an unknown one.
    job = srv.request("POST", GEN, NATIVE).json()["id"]
    c.check("get", "/v1/jobs/" + job, srv.request("GET", "/v1/jobs/" + job), "done")
    c.check("delete", "/v1/jobs/" + job, srv.request("DELETE", "/v1/jobs/" + job), "finished")
    c.check("get", "/v1/jobs/nope", srv.request("GET", "/v1/jobs/nope"), "unknown")
    c.check("delete", "/v1/jobs/nope", srv.request("DELETE", "/v1/jobs/nope"), "unknown")

    check_fields(c, srv, "post", GEN, NATIVE)
    check_fields(c, srv, "post", IMG, OPENAI, invalid=400)
    scenarios_a1111(c, srv)


def scenarios_guard(c, srv):
    """Every operation refuses a malformed Host (400), a Host the server does not answer to
    (421) and, for POST and DELETE, a web page of another origin (403)."""
    for method, template, op in c.operations():
        path = template.replace("{id}", "job_0")
        body = {"prompt": "x"} if method == "post" else None
        c.check(method, path, srv.request(method.upper(), path, body, {"Host": "a:b:c"}),
                "malformed Host")
        c.check(method, path, srv.request(method.upper(), path, body,
                                          {"Host": "rebound.example"}), "foreign Host")
        if method in ("post", "delete"):
            c.check(method, path, srv.request(method.upper(), path, body,
                                              {"Origin": "http://evil.example"}), "foreign Origin")


def scenarios_queue(c, srv):
    """One worker, batches of one, a queue of one image: running, queued and canceled jobs, the
    queue full, /readyz over its mark."""
    a = srv.background("POST", GEN, SLOW)
    id_a = job_id_of_stream(a)
    a.wait_for("event: progress")
    b = srv.background("POST", GEN, SLOW)
    id_b = job_id_of_stream(b)
    c.check("get", "/v1/jobs/" + id_a, srv.request("GET", "/v1/jobs/" + id_a), "running")
    c.check("get", "/v1/jobs/" + id_b, srv.request("GET", "/v1/jobs/" + id_b), "queued")
    c.check("post", GEN, srv.request("POST", GEN, NATIVE), "queue full")
    c.check("post", IMG, srv.request("POST", IMG, OPENAI), "queue full")
    c.check("post", TXT, srv.request("POST", TXT, dict(A1111, batch_size=1)), "queue full")
    r = srv.request("GET", "/sdapi/v1/progress")
    c.check("get", "/sdapi/v1/progress", r, "running")
    c.ok(r.json()["state"]["job_count"] == 2, "progress: 2 jobs (running and queued)")
    c.check("get", "/readyz", srv.request("GET", "/readyz"), "overloaded")
    c.check("delete", "/v1/jobs/" + id_b, srv.request("DELETE", "/v1/jobs/" + id_b), "queued")
    c.check("delete", "/v1/jobs/" + id_a, srv.request("DELETE", "/v1/jobs/" + id_a), "running")
    c.check("post", GEN, b.finish(), "stream canceled while queued")
    c.check("post", GEN, a.finish(), "stream canceled while running")
    c.check("get", "/v1/jobs/" + id_a, srv.request("GET", "/v1/jobs/" + id_a), "canceled")
    # A plain request canceled by DELETE: its client named the id (X-Request-Id) beforehand.
    for path, body in ((GEN, dict(SLOW, stream=False, timeout_ms=10000)),
                       (IMG, dict(OPENAI, steps=5000, timeout_ms=10000)),
                       (TXT, dict(A1111, batch_size=1, steps=5000))):
        rid = "contract-cancel" + path.replace("/", "-")
        p = srv.background("POST", path, body, {"X-Request-Id": rid})
        deadline = time.monotonic() + 5
        while srv.request("GET", "/v1/jobs/" + rid).status != 200 and time.monotonic() < deadline:
            time.sleep(0.01)
        c.check("delete", "/v1/jobs/" + rid, srv.request("DELETE", "/v1/jobs/" + rid), "plain")
        c.check("post", path, p.finish(), "canceled by DELETE")


def scenarios_keyed(c, srv):
    """--api-key with nothing public: 401 from every operation without the key."""
    auth = {"Authorization": "Bearer " + KEY}
    for method, template, op in c.operations():
        path = template.replace("{id}", "job_0")
        body = {"prompt": "x"} if method == "post" else None
        c.check(method, path, srv.request(method.upper(), path, body), "no key")
        c.check(method, path, srv.request(method.upper(), path, body,
                                          {"Authorization": "Bearer wrong"}), "wrong key")
    r = srv.request("GET", "/v1/models", None, auth)
    c.ok(r.status == 200, "with the key: 200")


def scenarios_draining(c, binary):
    """503 shutting_down: a request that arrives while SIGTERM drains a running job."""
    srv = Server("--max-steps", "10000", "--drain-timeout", "3s", binary=binary)
    try:
        gen = "/v1/generate"
        a = srv.background("POST", gen, SLOW)
        a.wait_for("event: progress")
        srv.proc.send_signal(15)
        time.sleep(0.2)
        for path, body in ((gen, dict(SMALL, prompt="late")),
                           (TXT, {"prompt": "late", "width": 32, "height": 48}),
                           ("/v1/images/generations", {"prompt": "late", "size": "32x48"})):
            try:
                c.check("post", path, srv.request("POST", path, body, timeout=10), "draining")
            except OSError:
                pass  # the listening socket may already be closed: that is allowed too
        a.finish()
    finally:
        # The 5000-step job outlasts the 3-s drain and is canceled: exit status 3, not 0.
        c.ok(srv.stop() == 3, "the draining server exits 3 (its running job outlasted the drain)")


def probe_routes(c, srv):
    """The server answers no route the file does not declare."""
    paths = c.spec["paths"]
    for template, item in paths.items():
        path = template.replace("{id}", "job_0")
        declared = {m.upper() for m in METHODS if m in item}
        for m in METHODS:
            if m in item:
                continue
            r = srv.request(m.upper(), path, "{}" if m in ("post", "put", "patch") else None)
            if c.ok(r.status == 405, "%s %s (not in the file): 405 (got %d)"
                    % (m.upper(), path, r.status)):
                allow = {x.strip() for x in (r.header("allow") or "").split(",") if x.strip()}
                allow -= {"HEAD", "OPTIONS"}
                c.ok(allow == declared, "%s %s: Allow %s = the file's %s"
                     % (m.upper(), path, sorted(allow), sorted(declared)))
    # Routes the sources mention, and likely ones, must be 404 unless declared.
    candidates = {"/v1", "/v1/", "/v1/jobs", "/v1/images", "/v1/images/edits",
                  "/v1/images/variations", "/v1/completions", "/v1/generate/x", "/healthz/x",
                  "/openapi.yaml", "/openapi.json", "/docs", "/index.html", "/favicon.ico",
                  "/v1/models/default", "/debug", "/status", "/api", "//healthz"}
    for src in glob.glob("server/*.c") + glob.glob("api/*.c"):
        with open(src, encoding="utf-8", errors="replace") as f:
            for lit in re.findall(r'"(/[A-Za-z0-9_./{}-]*)"', f.read()):
                candidates.add(lit.replace("{id}", "job_0"))
    for path in sorted(candidates):
        if c.template_of(path):
            continue
        for m in ("GET", "POST"):
            r = srv.request(m, path, "{}" if m == "POST" else None)
            c.ok(r.status == 404, "%s %s (not in the file): 404 (got %d)" % (m, path, r.status))


def main():
    t0 = time.monotonic()
    spec = yaml_subset.load_file(SPEC_PATH)
    c = Contract(spec)
    c.check_spec()
    binary = os.environ.get("TTTD_BIN") or "build/tttd"
    runs = (
        ((), lambda srv: (scenarios_plain(c, srv), scenarios_guard(c, srv),
                          probe_routes(c, srv))),
        (("--max-steps", "10000", "--workers", "1", "--max-batch", "1", "--max-queue", "1",
          "--max-n", "1", "--readyz-queue-mark", "1"), lambda srv: scenarios_queue(c, srv)),
        (("--api-key", KEY, "--no-public-health", "--no-public-metrics"),
         lambda srv: scenarios_keyed(c, srv)),
    )
    for args, run in runs:
        srv = Server(*args, binary=binary)
        try:
            run(srv)
        finally:
            c.ok(srv.stop() == 0, "the server (%s) exits 0 on SIGTERM" % " ".join(args))
    scenarios_draining(c, binary)

    for method, template, op in c.operations():
        for status in op.get("responses", {}):
            key = (method, template, str(status))
            if key in c.seen or key in UNREACHABLE:
                continue
            c.fail("%s %s: declared status %s never answered by the server"
                   % (method.upper(), template, status))
    print("contract: %d checks, %d failed, %.1f s (%s)"
          % (c.checks, len(c.failures), time.monotonic() - t0, SPEC_PATH))
    return 1 if c.failures else 0


if __name__ == "__main__":
    sys.exit(main())
