#!/usr/bin/env python3
"""test_check_layers.py - tools/check_layers.py on small made-up trees: it passes a clean plan and
fails each kind of violation (an include up the layers, an include across wings the plan does not
allow, headers that include each other, sources that call each other). Part of `make layers`."""
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
TOOL = os.path.join(HERE, "..", "..", "tools", "check_layers.py")
passed = failed = 0


def tree(files):
    d = tempfile.mkdtemp(prefix="check_layers_")
    for path, text in files.items():
        os.makedirs(os.path.join(d, os.path.dirname(path)), exist_ok=True)
        with open(os.path.join(d, path), "w") as f:
            f.write(text)
    return d


def run(d, objs=False):
    args = [sys.executable, TOOL, "--root", d]
    if objs:
        out = os.path.join(d, "obj")
        for root, _, names in os.walk(d):
            for n in names:
                if n.endswith(".c") and "obj" not in root:
                    src = os.path.relpath(os.path.join(root, n), d)
                    o = os.path.join(out, src[:-2] + ".o")
                    os.makedirs(os.path.dirname(o), exist_ok=True)
                    subprocess.run(["cc", "-c", "-I", d, os.path.join(d, src), "-o", o], check=True)
        args += ["--objs", out]
    return subprocess.run(args, capture_output=True, text=True)


def expect(name, d, code, needle="", objs=False):
    global passed, failed
    r = run(d, objs)
    ok = r.returncode == code and needle in (r.stdout + r.stderr)
    print(("ok   " if ok else "FAIL ") + name)
    if not ok:
        print(r.stdout + r.stderr)
    passed += ok
    failed += not ok
    shutil.rmtree(d)


CLEAN = {
    "engine/core/log.h": "int log_x(void);\n",
    "engine/core/log.c": '#include "engine/core/log.h"\nint log_x(void) { return 1; }\n',
    "engine/io/cfg.h": '#include "engine/core/log.h"\nint cfg_x(void);\n',
    "engine/io/cfg.c": '#include "engine/io/cfg.h"\nint cfg_x(void) { return log_x(); }\n',
    "server/srv.c": '#include "engine/io/cfg.h"\nint srv_x(void);\nint srv_x(void) { return cfg_x(); }\n',
}
expect("a clean plan passes", tree(CLEAN), 0, "no circles", objs=True)
expect("an include up the layers fails", tree(dict(CLEAN, **{
    "engine/core/bad.c": '#include "server/srv.h"\n', "server/srv.h": "int srv_x(void);\n"})),
    1, "engine/core may not include server")
expect("an include across wings the plan forbids fails", tree(dict(CLEAN, **{
    "engine/text/tok.c": '#include "engine/io/cfg.h"\n'})), 1, "engine/text may not include engine/io")
expect("headers that include each other fail", tree(dict(CLEAN, **{
    "server/a.h": '#include "server/b.h"\n', "server/b.h": '#include "server/a.h"\n'})),
    1, "a circle")
expect("sources that call each other fail", tree(dict(CLEAN, **{
    "server/a.c": "int b(void);\nint a(void);\nint a(void) { return b(); }\n",
    "server/b.c": "int a(void);\nint b(void);\nint b(void) { return a(); }\n"})),
    1, "server/a -> server/b", objs=True)
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
