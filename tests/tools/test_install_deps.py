#!/usr/bin/env python3
"""test_install_deps.py - tools/install-deps.sh and the make targets over it.

`make deps` (what `make run` needs) installs no test-only package; `make deps-test` adds them and
is what `make test`, the sanitizers, fuzzing, `make load` and `.ci/run` use; every apt-get call
waits for the dpkg lock (-o DPkg::Lock::Timeout=N) instead of failing when another apt runs.
The script runs for real against a fake apt-get, dpkg-query and id on PATH (nothing installed,
root), which record what would be installed.

Run from the repository root (make check). Standard library only.
"""
import os
import re
import subprocess
import sys
import tempfile

TEST_ONLY = {"libcriterion-dev", "libcurl4-openssl-dev", "wrk", "clang", "libclang-rt-14-dev"}
RUNTIME = {"gcc", "make", "pkg-config", "python3", "libjansson-dev", "libmicrohttpd-dev",
           "libuv1-dev", "libturbojpeg0-dev", "libspng-dev", "libopenblas-openmp-dev"}

failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def run_script(*args):
    """The script with fakes first on PATH: returns (its output, the apt-get calls)."""
    with tempfile.TemporaryDirectory() as tmp:
        log = os.path.join(tmp, "apt.log")
        fakes = {
            "dpkg-query": "#!/bin/sh\nexit 1\n",  # nothing is installed
            "id": "#!/bin/sh\necho 0\n",          # root: no sudo
            "apt-get": "#!/bin/sh\necho \"$*\" >> %s\n" % log,
        }
        for name, text in fakes.items():
            path = os.path.join(tmp, name)
            with open(path, "w") as f:
                f.write(text)
            os.chmod(path, 0o755)
        env = dict(os.environ, PATH=tmp + os.pathsep + os.environ["PATH"])
        out = subprocess.run(["sh", "tools/install-deps.sh"] + list(args), env=env,
                             capture_output=True, text=True, check=True).stdout
        calls = open(log).read().splitlines() if os.path.exists(log) else []
    return out, calls


def installed(calls):
    pkgs = set()
    for c in calls:
        if " install " in " " + c + " ":
            pkgs |= {w for w in c.split() if not w.startswith("-") and w not in ("install",)}
    return pkgs


def main():
    out, calls = run_script()
    pkgs = installed(calls)
    check(RUNTIME <= pkgs, "make deps installs the build's packages (missing: %s)"
          % sorted(RUNTIME - pkgs))
    check(not (TEST_ONLY & pkgs), "make deps installs no test-only package (got %s)"
          % sorted(TEST_ONLY & pkgs))
    check(len(calls) == 2 and all(re.search(r"-o DPkg::Lock::Timeout=\d+", c) for c in calls),
          "every apt-get call waits for the dpkg lock: %s" % calls)

    out, calls = run_script("--test")
    pkgs = installed(calls)
    check((RUNTIME | TEST_ONLY) <= pkgs, "make deps-test installs both sets (missing: %s)"
          % sorted((RUNTIME | TEST_ONLY) - pkgs))
    check(all("DPkg::Lock::Timeout=" in c for c in calls), "deps-test's apt-get waits too")

    listed = set(run_script("--list")[0].split())
    check(listed and not (TEST_ONLY & listed) and RUNTIME <= listed, "--list: the runtime set")
    listed = set(run_script("--test", "--list")[0].split())
    check((RUNTIME | TEST_ONLY) <= listed, "--test --list: both sets")

    mk = open("Makefile").read()
    rule = lambda t: re.search(r"^%s:(.*)$" % re.escape(t), mk, re.M)
    check(rule("deps-test") is not None and "install-deps.sh --test" in mk,
          "Makefile: deps-test runs install-deps.sh --test")
    check(rule("run") and rule("run").group(1).split() == ["deps"], "Makefile: run needs deps only")
    for t in ("test", "asan", "ubsan", "tsan", "fuzz", "load"):
        r = rule(t)
        check(r and "deps-test" in r.group(1).split(), "Makefile: %s needs deps-test" % t)
    ci = open(".ci/run").read()
    check(re.search(r"^make deps-test\b", ci, re.M) is not None, ".ci/run installs deps-test")

    print("install_deps: %d failed" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
