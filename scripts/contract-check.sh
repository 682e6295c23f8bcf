#!/usr/bin/env bash
# The HTTP contract checked by outside tools (issue 15): `hookstream dev`
# (embedded broker, private PostgreSQL) on free ports, then
#
#   1. @redocly/cli lint, recommended rules plus redocly.yaml, of the
#      /openapi.json it serves;
#   2. schemathesis against the receiver's listener (every route but the
#      admin API and /metrics), then against the admin listener (every
#      route but the webhooks; the admin API with the token), from that same
#      /openapi.json: valid and invalid inputs, checking no 5xx and that
#      every status, Content-Type, header and body is one the document
#      declares. dev has a source per signature scheme and an unsigned one
#      (scripts/contract/sources.yaml); scripts/contract/schemathesis_hooks.py
#      spreads the webhooks over them and signs most of generic's, so that
#      they get past the signature check.
#
# Exit status 0 means no finding. The tools are installed once into
# $HOOKSTREAM_TOOLS_DIR (default ${XDG_CACHE_HOME:-~/.cache}/hookstream/tools),
# from npm and PyPI, and reused. Needs Go, Node.js (npm), Python 3 (venv)
# and PostgreSQL's server binaries.
#
#   CONTRACT_MAX_EXAMPLES  test cases per operation and phase (default 200)
#   CONTRACT_SEED          schemathesis seed (default a random one, printed)
#   KEEP=1                 keep the work directory (dev's log, the reports)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

REDOCLY_VERSION=2.77.0
SCHEMATHESIS_VERSION=4.32.5
tools=${HOOKSTREAM_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/hookstream/tools}
max_examples=${CONTRACT_MAX_EXAMPLES:-200}
seed=${CONTRACT_SEED:-$(((RANDOM << 15) | RANDOM))}
checks=not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance

say() { printf 'contract: %s\n' "$*"; }

# @redocly/cli 2.x wants Node.js 20.19+ (22.12+ on 22); Debian 12's own
# nodejs is 18, so say so rather than fail obscurely in the middle.
if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 ? (a === 21 || (a === 22 && b < 12) ? 1 : 0) : (a === 20 && b >= 19 ? 0 : 1))' 2>/dev/null; then
  say "needs Node.js 20.19+ or 22.12+ for @redocly/cli $REDOCLY_VERSION; found $(node --version 2>/dev/null || echo none)" >&2
  exit 2
fi
redocly=$tools/redocly-$REDOCLY_VERSION/node_modules/.bin/redocly
if [ ! -x "$redocly" ]; then
  say "installing @redocly/cli $REDOCLY_VERSION into $tools (npm)"
  npm install --silent --no-audit --no-fund --prefix "$tools/redocly-$REDOCLY_VERSION" "@redocly/cli@$REDOCLY_VERSION" >/dev/null
fi
venv=$tools/schemathesis-$SCHEMATHESIS_VERSION
if [ ! -x "$venv/bin/st" ]; then
  say "installing schemathesis $SCHEMATHESIS_VERSION into $venv (PyPI)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

work=$(mktemp -d /tmp/hookstream-contract-XXXXXX)
chmod 755 "$work" # dev run as root hands PostgreSQL's part to the postgres user
devpid=
cleanup() {
  if [ -n "$devpid" ]; then
    kill -INT "$devpid" 2>/dev/null || true
    wait "$devpid" 2>/dev/null || true
  fi
  if [ -n "${KEEP:-}" ]; then say "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
http_addr=127.0.0.1:$(free_port)
admin_addr=127.0.0.1:$(free_port)
kafka_addr=127.0.0.1:$(free_port)
token=$(python3 -c 'import secrets; print(secrets.token_hex(24))')
secret=$(python3 -c 'import secrets; print("contract_" + secrets.token_hex(24))')

say "building hookstream; starting hookstream dev (receiver $http_addr, admin $admin_addr, broker $kafka_addr, data $work/data)"
go build -o "$work/hookstream" ./cmd/hookstream
HOOKSTREAM_ADMIN_TOKEN=$token HOOKSTREAM_GENERIC_SECRET=$secret \
  "$work/hookstream" dev --sources scripts/contract/sources.yaml --data-dir "$work/data" --http-addr "$http_addr" \
  --admin-addr "$admin_addr" --kafka-listen "$kafka_addr" >"$work/dev.log" 2>&1 &
devpid=$!
for _ in $(seq 1 240); do
  grep -q "Press Ctrl-C" "$work/dev.log" 2>/dev/null && break
  kill -0 "$devpid" 2>/dev/null || break
  sleep 0.5
done
if ! grep -q "Press Ctrl-C" "$work/dev.log"; then
  say "hookstream dev did not start:"; cat "$work/dev.log"; exit 1
fi

findings=()
curl -fsS "http://$http_addr/openapi.json" -o "$work/openapi.json"

say "1. redocly lint (recommended rules, redocly.yaml) of http://$http_addr/openapi.json"
if ! NO_UPDATE_NOTIFIER=1 "$redocly" lint --config redocly.yaml --format=stylish "$work/openapi.json" 2>&1 |
  grep -v '[║╔╚]'; then
  findings+=("redocly lint")
fi

run_schemathesis() {
  local name=$1 base=$2
  shift 2
  say "schemathesis, $name: $base, $max_examples examples per operation and phase, seed $seed"
  # From $work: schemathesis keeps a cache (.schemathesis) in its directory.
  if ! (cd "$work" && PYTHONPATH=$repo/scripts/contract SCHEMATHESIS_HOOKS=schemathesis_hooks HOOKSTREAM_CONTRACT_SECRET=$secret \
    "$venv/bin/st" --config-file "$repo/scripts/contract/schemathesis.toml" run "$work/openapi.json" \
    --url "$base" --checks "$checks" --max-examples "$max_examples" --seed "$seed" --workers 2 \
    --report junit,har --report-dir "$work/reports-$name" "$@"); then
    findings+=("schemathesis $name")
  fi
}

say "2. schemathesis against the receiver"
run_schemathesis receiver "http://$http_addr" --exclude-path-regex '^/(admin/|metrics$)'
say "3. schemathesis against the admin API"
run_schemathesis admin "http://$admin_addr" --exclude-path-regex '^/webhooks/' \
  --header "Authorization: Bearer $token"

if [ "${#findings[@]}" -gt 0 ]; then
  say "FAILED: ${findings[*]} (rerun with CONTRACT_SEED=$seed; KEEP=1 keeps dev's log)"
  exit 1
fi
say "passed (seed $seed)"
