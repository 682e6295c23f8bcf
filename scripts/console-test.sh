#!/usr/bin/env bash
# Browser tests of the operator console (console/e2e): playwright-core,
# pinned in console/e2e/package-lock.json, drives Debian's Chromium against
# a `hookstream dev` built from this tree. Installs Chromium when missing
# (as root, with apt-get) and the npm packages with `npm ci` into
# console/e2e/node_modules (ignored by git). Screenshots go to docs/console/
# (SCREENSHOT_DIR=... elsewhere, SCREENSHOT_DIR= for none).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "console-test: /usr/bin/chromium is missing: apt-get install chromium" >&2
    exit 1
  fi
fi
command -v npm >/dev/null || { echo "console-test: npm is missing (apt-get install npm)" >&2; exit 1; }

(cd console/e2e && npm ci --ignore-scripts --no-audit --no-fund --silent)

bin=$(mktemp -d)/hookstream
trap 'rm -rf "$(dirname "$bin")"' EXIT
go build -o "$bin" ./cmd/hookstream

export HOOKSTREAM_BIN="$bin"
export SCREENSHOT_DIR="${SCREENSHOT_DIR-$root/docs/console}"
cd console/e2e
node --test --test-concurrency=1 console.test.mjs
