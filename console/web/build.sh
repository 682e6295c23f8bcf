#!/bin/sh
# Copies htmx from its npm package into console/static, reproducibly: the
# version is pinned in package.json and its integrity in package-lock.json
# (npm ci refuses a tarball that does not match). Run by
# `go generate ./console`; the copies are committed, so building and
# running hookstream needs no Node.js.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$here/package.json" "$here/package-lock.json" "$work/"
(cd "$work" && npm ci --ignore-scripts --no-audit --no-fund --silent)
pkg="$work/node_modules/htmx.org"
cp "$pkg/dist/htmx.min.js" "$here/../static/htmx.min.js"
cp "$pkg/LICENSE" "$here/../static/htmx.LICENSE"
version=$(node -p "require('$pkg/package.json').version")
sum=$(sha256sum "$here/../static/htmx.min.js" | cut -d' ' -f1)
# What the test TestHtmxIsThePinnedCopy compares the committed copy with.
printf '%s %s\n' "$version" "$sum" > "$here/htmx.sha256"
echo "console/static/htmx.min.js: htmx.org $version, sha256 $sum"
