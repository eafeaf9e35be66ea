#!/usr/bin/env python3
"""test_readme.py - the README and docs/ agree with themselves, the code and a clone.

- README.md and docs/ stand on their own: no path outside the repository (../shared, DESIGN.md),
  and every relative link names a file of the repository.
- The prompt adherence the intro and the Status section state is the table's (the TTT row of
  "The embedded model"), and no stale figure is left.
- The Quick start's prompts are from the embedded model's domain (shapes and colours).
- The error list names every status of api/errors.c's table.
- api/openapi.yaml names only options `tttd serve --help` lists.

Run from the repository root (make check): TTTD_BIN names the binary (default build/tttd).
"""
import glob
import os
import re
import subprocess
import sys

failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def section(text, title):
    m = re.search(r"^## %s\n(.*?)(?=^## |\Z)" % re.escape(title), text, re.M | re.S)
    return m.group(1) if m else ""


def main():
    readme = open("README.md").read()
    docs = {p: open(p).read() for p in ["README.md"] + sorted(glob.glob("docs/**/*.md",
                                                                        recursive=True))}
    for path, text in docs.items():
        for bad in ("../shared", "/work/shared", "DESIGN.md"):
            check(bad not in text, "%s: no reference to %s" % (path, bad))
        for link in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
            if re.match(r"[a-z]+:", link):
                continue
            target = os.path.normpath(os.path.join(os.path.dirname(path), link))
            check(os.path.exists(target), "%s: the link %s names a file of the repository"
                  % (path, link))

    # Adherence: the table's TTT overall, stated in the intro and in Status, nothing else.
    row = re.search(r"^\| TTT \(`models/default`\) \|.*\*\*([0-9.]+)%\*\*", readme, re.M)
    check(row is not None, "the embedded model's table has a TTT row with an overall figure")
    figure = row.group(1) if row else "?"
    intro = readme.split("## Quick start")[0]
    status = section(readme, "Status")
    check(figure + " %" in intro, "the intro states the table's %s %%" % figure)
    check(figure + " %" in status, "Status states the table's %s %%" % figure)
    for stale in ("60 %", "85 %", "still modest", "goal is 85"):
        check(stale not in readme, "no stale adherence figure %r" % stale)

    # Quick start: prompts the embedded model can draw.
    shapes = r"circle|square|triangle|star|ring|cross|disk|donut|plus"
    colours = r"red|green|blue|yellow|orange|purple|white|black|grey"
    prompts = re.findall(r'"prompt":"([^"]*)"', section(readme, "Quick start"))
    check(len(prompts) >= 3, "the Quick start has its curl prompts (%d)" % len(prompts))
    for p in prompts:
        check(re.search(shapes, p) and re.search(colours, p),
              "Quick start prompt %r is a coloured shape" % p)

    # The error list: every status of the table.
    table = open("api/errors.c").read()
    statuses = sorted(set(re.findall(r'"[a-z_]+", (\d{3}),', table)) - {"200"})
    errors = readme[readme.find("Errors are always"):]
    errors = errors[:errors.find("An `Accept` q")]
    for st in statuses:
        check(re.search(r"\b%s\b" % st, errors), "the README's error list names %s" % st)

    # The contract names only options the daemon has.
    binary = os.environ.get("TTTD_BIN", "build/tttd")
    helptext = subprocess.run([binary, "serve", "--help"], capture_output=True, text=True).stdout
    have = set(re.findall(r"--[a-z][a-z0-9-]*", helptext))
    check(len(have) > 10, "tttd serve --help lists its options")
    for flag in sorted(set(re.findall(r"--[a-z][a-z0-9-]*", open("api/openapi.yaml").read()))):
        check(flag in have, "api/openapi.yaml's %s is an option of tttd serve" % flag)

    print("readme: %d failed" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
