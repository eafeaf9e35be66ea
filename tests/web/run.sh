#!/bin/sh
# run.sh - `make test-web`: the headless Chromium test of the page at GET / (test_page.mjs).
# Installs what is missing first: Debian's chromium (and node/npm when there is no node), then
# playwright-core from package-lock.json into tests/web/node_modules (npm ci). Run from the
# repository root:  sh tests/web/run.sh [TTTD_BIN] [OUT_DIR]
set -eu

BIN=${1:-build/tttd}
OUT=${2:-build/web}

if [ ! -x /usr/bin/chromium ] || ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    sh tools/install-deps.sh --web
fi
if [ ! -f tests/web/node_modules/playwright-core/package.json ]; then
    (cd tests/web && npm ci --no-audit --no-fund --loglevel=error)
fi
mkdir -p "$OUT"
exec node tests/web/test_page.mjs "$BIN" "$OUT"
