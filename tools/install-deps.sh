#!/bin/sh
# install-deps.sh - installs the Debian packages tttd builds and tests with, when missing.
# Non-interactive (CI has no standard input); uses sudo when not root.
set -eu

PKGS="gcc make pkg-config curl python3 libopenblas-dev libopenblas-openmp-dev libjansson-dev libcriterion-dev
libmicrohttpd-dev libuv1-dev libturbojpeg0-dev libspng-dev libcurl4-openssl-dev wrk clang
libclang-rt-14-dev"

# --reference: the packages of the PyTorch reference (tools/reference/, `make fixtures`).
[ "${1:-}" = "--reference" ] && PKGS="python3 python3-torch python3-numpy"
# --web: what `make test-web` needs: Chromium, and Debian's node and npm when there is no node at
# all (a node from elsewhere, with its own npm, is fine: playwright-core 1.65 needs node >= 20).
if [ "${1:-}" = "--web" ]; then
    PKGS="chromium"
    command -v node >/dev/null 2>&1 || PKGS="$PKGS nodejs npm"
fi

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-deps: missing packages:$missing (and no apt-get here); install them by hand" >&2
    exit 1
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing </dev/null
