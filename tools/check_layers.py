#!/usr/bin/env python3
"""check_layers.py - the build's check of the floor plan (part of `make check`).

Two rules, each failing the build when broken:

1. Includes run one way. Every source file belongs to a room (a layer, or a wing of the engine),
   and each room may include headers of the rooms listed for it in ALLOWED below (and its own):
   cmd -> server -> api -> engine -> kernels; inside the engine, the root (pipeline, prompt,
   sampler) -> models -> io / text -> backend -> core. Tests and tools may include anything.

2. No two files depend on each other in a circle: no two headers include each other (through
   any chain), and no two source files use each other's functions (through any chain). The
   second is read from the object files with nm (the build folder given with --objs): file A
   depends on file B when A's object uses a symbol B's object defines, which also catches calls
   through a shared internal header that include lines alone would not show.

Usage: python3 tools/check_layers.py [--objs build/obj] [--root .]
Prints what it checked, or each violation, and exits 1 on any violation.
"""
import argparse
import os
import re
import subprocess
import sys

# room -> the rooms whose headers it may include (besides its own).
ALLOWED = {
    "cmd": {"server", "api", "engine", "engine/core", "engine/backend", "engine/io",
            "engine/text", "engine/models"},
    "server": {"api", "engine", "engine/core", "engine/backend", "engine/io", "engine/text",
               "engine/models"},
    "api": {"engine", "engine/core", "engine/backend", "engine/io", "engine/text",
            "engine/models"},
    "engine": {"engine/models", "engine/io", "engine/text", "engine/backend", "engine/core",
               "kernels", "kernels/cpu"},
    "engine/models": {"engine/io", "engine/backend", "engine/core", "kernels", "kernels/cpu"},
    "engine/io": {"engine/backend", "engine/core", "kernels", "kernels/cpu"},
    "engine/text": {"engine/core"},
    "engine/backend": {"engine/core", "kernels", "kernels/cpu", "kernels/cuda"},
    "engine/core": set(),
    "kernels": set(),
    "kernels/cpu": {"kernels"},
    "kernels/cuda": {"kernels"},
    "kernels/cuda/dev": {"kernels", "kernels/cuda", "kernels/cpu"},
}
SOURCE_DIRS = ["cmd", "server", "api", "engine", "kernels"]
EXTS = (".c", ".h", ".cu", ".cuh")
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def room_of(path):
    """The room of a repository path ('engine/models/mmdit.c' -> 'engine/models'), or None."""
    parts = path.split("/")
    if parts[0] not in SOURCE_DIRS:
        return None
    room = os.path.dirname(path)
    while room and room not in ALLOWED:
        room = os.path.dirname(room)
    return room or None


def module_of(path):
    """A file and its header are one module: 'engine/io/config.c' and '.h' -> 'engine/io/config'."""
    base, ext = os.path.splitext(path)
    return base[:-3] if base.endswith(".cu") else base


def source_files(root):
    out = []
    for top in SOURCE_DIRS:
        for d, _, names in os.walk(os.path.join(root, top)):
            for n in names:
                if n.endswith(EXTS):
                    out.append(os.path.relpath(os.path.join(d, n), root))
    return sorted(out)


def include_edges(root, files, errors):
    """Checks every include against ALLOWED; returns the header -> header edges."""
    edges = set()
    known = set(files)
    for f in files:
        with open(os.path.join(root, f), encoding="utf-8", errors="replace") as fh:
            text = fh.read()
        src_room = room_of(f)
        for inc in INCLUDE.findall(text):
            if inc not in known:
                # A header next to the file, or one made by the build (server/web_index.h).
                continue
            dst_room = room_of(inc)
            if dst_room != src_room and dst_room not in ALLOWED.get(src_room, set()):
                errors.append(f"{f}: includes {inc} ({src_room} may not include {dst_room})")
            if f.endswith((".h", ".cuh")):
                edges.add((f, inc))
    return edges


def symbol_edges(objs, root):
    """Source -> source edges from the object files' defined and undefined symbols. Objects whose
    source is gone (a build folder older than a move) are skipped."""
    defs, uses = {}, {}
    for d, _, names in os.walk(objs):
        for n in names:
            if not n.endswith(".o"):
                continue
            path = os.path.join(d, n)
            rel = os.path.relpath(path, objs)
            src = rel[:-2]  # 'engine/io/config.o' -> 'engine/io/config', '.cu.o' -> '.cu'
            if src.split("/")[0] not in SOURCE_DIRS:
                continue  # tests, generated files
            if not os.path.exists(os.path.join(root, src if src.endswith(".cu") else src + ".c")):
                continue
            mod = module_of(src)
            out = subprocess.run(["nm", path], capture_output=True, text=True, check=True).stdout
            for line in out.splitlines():
                p = line.split()
                if len(p) == 3 and p[1] in "TDBR":
                    defs[p[2]] = mod
                elif len(p) == 2 and p[0] == "U":
                    uses.setdefault(mod, set()).add(p[1])
    return {(m, defs[s]) for m, syms in uses.items() for s in syms
            if s in defs and defs[s] != m}


def circles(edges):
    """Strongly connected groups of two or more modules (Tarjan, iterative)."""
    graph = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=".")
    ap.add_argument("--objs", default=None, help="the build's object folder (build/obj)")
    args = ap.parse_args()
    errors = []
    files = source_files(args.root)
    graphs = [include_edges(args.root, files, errors)]
    if args.objs:
        if not os.path.isdir(args.objs):
            errors.append(f"{args.objs}: no such folder (build first)")
        else:
            graphs.append(symbol_edges(args.objs, args.root))
    for edges in graphs:
        for comp in circles(edges):
            ring = [(a, b) for a, b in sorted(edges) if a in comp and b in comp]
            errors.append("a circle: " + ", ".join(f"{a} -> {b}" for a, b in ring))
    if errors:
        for e in errors:
            print("check_layers: " + e, file=sys.stderr)
        print(f"check_layers: {len(errors)} violation(s)", file=sys.stderr)
        return 1
    print(f"check_layers: {len(files)} files, {sum(map(len, graphs))} dependencies: "
          f"includes run down the layers, no circles"
          + ("" if args.objs else " (includes only; --objs adds symbols)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
