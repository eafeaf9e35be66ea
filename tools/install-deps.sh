#!/bin/sh
# install-deps.sh - installs the Debian packages tttd builds with (and, with --test, tests with),
# when missing. Non-interactive (CI has no standard input); uses sudo when not root; waits for
# another apt or dpkg that holds the lock (up to LOCK_TIMEOUT seconds) instead of failing.
#   install-deps.sh            what `make run` needs: the compiler and the libraries tttd links
#   install-deps.sh --test     those plus the test-only packages (`make deps-test`, `make test`)
#   install-deps.sh --reference / --web   the PyTorch reference's / the page test's packages
#   --list (last)              print the package list instead of installing anything
set -eu

RUN_PKGS="gcc make pkg-config python3 libopenblas-dev libopenblas-openmp-dev libjansson-dev
libmicrohttpd-dev libuv1-dev libturbojpeg0-dev libspng-dev"
# The unit tests (Criterion, libcurl), `make load` (wrk), the fuzz targets and sanitizers (clang and
# its runtime), the shell tests (curl): some 200 MB that serving needs none of.
TEST_PKGS="curl libcriterion-dev libcurl4-openssl-dev wrk clang libclang-rt-14-dev"
LOCK_TIMEOUT="${LOCK_TIMEOUT:-120}"

PKGS="$RUN_PKGS"
[ "${1:-}" = "--test" ] && PKGS="$RUN_PKGS $TEST_PKGS"
# --reference: the packages of the PyTorch reference (tools/reference/, `make fixtures`).
[ "${1:-}" = "--reference" ] && PKGS="python3 python3-torch python3-numpy"
# --web: what `make test-web` needs: Chromium, and Debian's node and npm when there is no node at
# all (a node from elsewhere, with its own npm, is fine: playwright-core 1.65 needs node >= 20).
if [ "${1:-}" = "--web" ]; then
    PKGS="chromium"
    command -v node >/dev/null 2>&1 || PKGS="$PKGS nodejs npm"
fi
if [ "${2:-${1:-}}" = "--list" ]; then
    # shellcheck disable=SC2086
    echo $PKGS
    exit 0
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
$SUDO apt-get -o DPkg::Lock::Timeout="$LOCK_TIMEOUT" update -qq
# shellcheck disable=SC2086
$SUDO apt-get -o DPkg::Lock::Timeout="$LOCK_TIMEOUT" install -y -qq --no-install-recommends \
    $missing </dev/null
