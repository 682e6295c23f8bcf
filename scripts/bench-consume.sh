#!/usr/bin/env bash
# Consumer throughput with the no-op handler (BENCHMARKS.md).
#
#   scripts/bench-consume.sh [events] [customers] [rate]
#
# With a rate the events are written open loop at that rate, each stamped
# with its own received-at, and the script also prints the percentiles of
# the time from that stamp to PROCESSED.
#
# Starts `hookstream dev` (embedded broker, private PostgreSQL with fsync on,
# receiver, consumer with concurrency 16, audit relay and sink), writes the
# events straight into hookstream.events with the receiver's headers, and
# times until PostgreSQL holds all of them PROCESSED.
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-20000}
customers=${2:-1000}
rate=${3:-}
work=$(mktemp -d /tmp/hookstream-bench-XXXXXX)
chmod 755 "$work"
cleanup() { [ -n "${devpid:-}" ] && kill -INT "$devpid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
[ -n "${KEEP:-}" ] && trap - EXIT
go build -o "$work/hookstream" ./cmd/hookstream
go build -o "$work/loadevents" ./internal/tools/loadevents
HOOKSTREAM_LOG_LEVEL=warn "$work/hookstream" dev --data-dir "$work/data" --http-addr 127.0.0.1:8096 --kafka-listen 127.0.0.1:19093 \
  > "$work/dev.out" 2> "$work/dev.err" & devpid=$!
for _ in $(seq 1 120); do grep -q "Press Ctrl-C" "$work/dev.out" 2>/dev/null && break; sleep 0.5; done
grep -q "Press Ctrl-C" "$work/dev.out" || { cat "$work/dev.err"; exit 1; }
"$work/loadevents" --brokers 127.0.0.1:19093 --database-url "$(sed -n 's/^  PostgreSQL: //p' "$work/dev.out")" \
  --events "$events" --customers "$customers" ${rate:+--rate "$rate"}
