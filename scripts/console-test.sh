#!/usr/bin/env bash
# Browser tests of the operator console (console/e2e) against a
# `hookstream dev` built from this tree: playwright-core drives Debian's
# Chromium through the full set (console.test.mjs), and puppeteer-core
# drives Debian's firefox-esr over WebDriver BiDi through a smoke set and
# the phone-width check (firefox.test.mjs); both are pinned in
# console/e2e/package-lock.json and neither downloads a browser. Installs
# the browsers when missing (as root, with apt-get) and the npm packages
# with `npm ci` into console/e2e/node_modules (ignored by git).
# Screenshots (Chromium's) go to docs/console/ (SCREENSHOT_DIR=...
# elsewhere, SCREENSHOT_DIR= for none).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

# install_browser PACKAGE: Debian's build, the one the tests drive.
install_browser() {
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null
  else
    echo "console-test: /usr/bin/$1 is missing: apt-get install $1" >&2
    exit 1
  fi
}
[ -x /usr/bin/chromium ] || install_browser chromium
[ -x /usr/bin/firefox-esr ] || install_browser firefox-esr
command -v npm >/dev/null || { echo "console-test: npm is missing (apt-get install npm)" >&2; exit 1; }

# --ignore-scripts: no package's install step runs (none may fetch a
# browser); the tests launch /usr/bin/chromium and /usr/bin/firefox-esr.
(cd console/e2e && npm ci --ignore-scripts --no-audit --no-fund --silent)

bin=$(mktemp -d)/hookstream
trap 'rm -rf "$(dirname "$bin")"' EXIT
go build -o "$bin" ./cmd/hookstream

export HOOKSTREAM_BIN="$bin"
export SCREENSHOT_DIR="${SCREENSHOT_DIR-$root/docs/console}"
cd console/e2e
node --test --test-concurrency=1 console.test.mjs firefox.test.mjs
