#!/bin/sh
# runtime-packages.sh - the Debian (or Ubuntu) packages that hold the shared libraries a binary
# links directly (its ELF NEEDED entries), one a line, sorted: what a slim runtime image must
# install to run it. The root Dockerfile's build stage runs it on build/tttd; it works on any
# machine with dpkg, ldd and readelf (binutils):
#
#     sh deploy/runtime-packages.sh build/tttd
#
# The packages are derived, not listed by hand, so the runtime stage follows the build: OpenBLAS's
# OpenMP flavour when the Makefile linked it, the t64 library names of Ubuntu 24.04, the CUDA
# libraries' packages in an nvidia/cuda image. A library that no package owns (a CUDA toolkit
# installed from a runfile, say) is named on stderr and left out: the runtime image must bring it
# itself, and the Dockerfile's `ldd` check fails the build when it does not.
set -eu

bin=${1:?usage: runtime-packages.sh BINARY}
[ -r "$bin" ] || { echo "runtime-packages: $bin: no such file" >&2; exit 1; }

needed=$(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
[ -n "$needed" ] || { echo "runtime-packages: $bin: no NEEDED entries (not a dynamic ELF?)" >&2; exit 1; }
ldd_out=$(ldd "$bin")

packages() {
    for lib in $needed; do
        path=$(printf '%s\n' "$ldd_out" | awk -v l="$lib" '$1 == l && $2 == "=>" { print $3 }')
        if [ -z "$path" ] || [ "$path" = "not" ]; then
            echo "runtime-packages: $lib: not found by ldd" >&2
            exit 1
        fi
        # dpkg knows each file under one spelling: try the path ldd gave, the fully resolved one, and
        # the other side of the /lib -> /usr/lib merge.
        pkg=""
        for p in "$path" "$(readlink -f "$path")" "/usr$path" "${path#/usr}"; do
            pkg=$(dpkg-query -S "$p" 2>/dev/null | head -n 1 | sed 's/[:,].*//') || pkg=""
            [ -n "$pkg" ] && break
        done
        if [ -n "$pkg" ]; then
            echo "$pkg"
        else
            echo "runtime-packages: $lib ($path) belongs to no package: the runtime image must have it" >&2
        fi
    done
}

# Collected first, so that a failure above is this script's exit status (a pipeline's is sort's).
list=$(packages)
printf '%s\n' "$list" | sort -u
