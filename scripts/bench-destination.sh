#!/usr/bin/env bash
# Consumer throughput with a slow HTTP destination (BENCHMARKS.md).
#
#   scripts/bench-destination.sh [events] [customers] [delay]
#
# Starts a destination that answers 200 after the delay (default 20ms),
# `hookstream dev` with the generic source delivering to it (embedded
# broker with 12 partitions, private PostgreSQL, consume's defaults:
# --concurrency 128 destination calls at once over all the member's
# partitions, --batch-wait 20ms, calls made outside any transaction),
# writes the events straight into hookstream.events and times until all
# are PROCESSED; the destination prints its peak calls in flight. One
# partition processing one event at a time would manage 1/delay events/s,
# so 12 partitions x 50/s = 600 events/s is what per-customer concurrency
# has to beat.
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-20000}
customers=${2:-1000}
delay=${3:-20ms}
. scripts/lib.sh
bench_setup INT
bench_build loadevents slowdest
"$work/slowdest" --addr 127.0.0.1:8095 --delay "$delay" > "$work/dest.out" & destpid=$!; pids+=($destpid)
bench_sources "http://127.0.0.1:8095/hook"
HOOKSTREAM_GENERIC_SECRET=bench-secret-0123456789 HOOKSTREAM_SOURCES="$work/sources.yaml" HOOKSTREAM_LOG_LEVEL=warn \
  start_dev --data-dir "$work/data" --http-addr 127.0.0.1:8096 --kafka-listen 127.0.0.1:19093
"$work/loadevents" --brokers 127.0.0.1:19093 --database-url "$(dev_database_url)" \
  --events "$events" --customers "$customers"
kill -INT "$destpid"; wait "$destpid" || true
cat "$work/dest.out"
