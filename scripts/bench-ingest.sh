#!/usr/bin/env bash
# Receiver throughput against its ceiling, in one run (BENCHMARKS.md).
#
#   scripts/bench-ingest.sh [connections] [duration]
#   ROUNDS=5 scripts/bench-ingest.sh 64 12s
#   KAFKA=cluster scripts/bench-ingest.sh ...   on 3-node Apache Kafka
#   TRACING=0.01 scripts/bench-ingest.sh ...    the receiver traces 1% of requests
#   NO_SERVE=1 scripts/bench-ingest.sh ...      without the standalone receiver's runs
#   HOOKSTREAM_DATABASE_URL=... scripts/bench-ingest.sh   on that database
#
# 1. a bare gin handler that reads the body and answers 202 (the ceiling);
# 2. `hookstream dev` (embedded broker, private PostgreSQL) taking the same
#    1 KiB signed generic event: signature, schema, ids, duplicate check,
#    produce with acks=all, audit record, 202.
# Both are loaded by wrk on this machine with the same connections and
# duration. Every wrk request carries the same event id: the receiver does
# the same work for each (no consumer runs, so the duplicate check finds
# nothing and each request is produced), which keeps wrk's Lua out of the
# measurement.
set -euo pipefail
cd "$(dirname "$0")/.."
conns=${1:-64}
dur=${2:-20s}
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }

. scripts/lib.sh
bench_setup TERM
bench_build baregin slowdest

# TRACING=RATIO: the receivers (dev and serve) trace, sampling RATIO of the
# requests (parentbased_traceidratio; the requests carry no traceparent),
# and export OTLP/HTTP to a stand-in collector that reads each export and
# answers 200 (slowdest with no delay): what tracing costs the receiver,
# not what a collector costs the machine.
if [ -n "${TRACING:-}" ]; then
  "$work/slowdest" -addr 127.0.0.1:8094 -delay 0 > /dev/null & pids+=($!)
  export OTEL_TRACES_EXPORTER=otlp OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:8094 \
    OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=$TRACING
  echo "tracing: sampling $TRACING of requests, OTLP/HTTP to a stand-in collector"
fi

bench_request
echo "body: ${#body} bytes, connections: $conns, duration: $dur"

"$work/baregin" -addr 127.0.0.1:8099 & pids+=($!)
bench_kafka 19092
HOOKSTREAM_GENERIC_SECRET=$secret HOOKSTREAM_LOG_LEVEL=warn \
  start_dev --consume=false --data-dir "$work/data" --http-addr 127.0.0.1:8098 "${dev_kafka_args[@]}"

check=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' -H "X-Signature: $sig" --data-binary "$body" http://127.0.0.1:8098/webhooks/generic)
[ "$check" = 202 ] || { echo "receiver answered $check, not 202" >&2; exit 1; }

# A standalone receiver on the same broker and database, to show the
# receiver's own memory (dev's RSS includes kfake, which keeps the log in
# memory and so grows with every record).
dburl=$(dev_database_url)
HOOKSTREAM_GENERIC_SECRET=$secret HOOKSTREAM_LOG_LEVEL=warn HOOKSTREAM_KAFKA_BROKERS=$brokers \
  HOOKSTREAM_DATABASE_URL=$dburl HOOKSTREAM_SOURCES=sources.example.yaml \
  "$work/hookstream" serve --http-addr 127.0.0.1:8097 > "$work/serve.out" 2> "$work/serve.err" & servepid=$!; pids+=($servepid)
for _ in $(seq 1 60); do curl -sf http://127.0.0.1:8097/readyz >/dev/null && break; sleep 0.5; done

rss() { awk '/VmRSS/{print $2" kB"}' /proc/"$1"/status; }
load() { wrk -t2 -c"$conns" -d"$dur" --latency -s "$work/post.lua" "$1"; }

# The machine's speed drifts by 10-20% over minutes, and the ceiling with
# it, so the two are measured in alternation (ROUNDS pairs, default 3; the
# order within a pair alternates too, so that a steady drift favours
# neither) and the ratio of each pair is printed, then their median.
rps() { awk '/Requests\/sec/{print $2}'; }
bare() {
  echo; echo "== round $r: bare gin 202 (ceiling) =="
  load http://127.0.0.1:8099/webhooks/generic | tee "$work/bare.txt"
}
dev() {
  echo; echo "== round $r: hookstream dev, full receiver path =="
  load http://127.0.0.1:8098/webhooks/generic | tee "$work/dev.txt"
}
ratios=()
for r in $(seq 1 "${ROUNDS:-3}"); do
  if [ $((r % 2)) = 1 ]; then bare; dev; else dev; bare; fi
  ratios+=("$(awk -v d="$(rps < "$work/dev.txt")" -v b="$(rps < "$work/bare.txt")" 'BEGIN{printf "%.1f", 100*d/b}')")
  echo "round $r: dev / bare = ${ratios[-1]}%"
done
echo; echo "dev / bare per round: ${ratios[*]} (%); median $(printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}')%"
echo "duplicate check (hookstream_ingest_duplicate_check_duration_seconds): $(quantiles http://127.0.0.1:8098/metrics hookstream_ingest_duplicate_check_duration_seconds)"
if [ -n "${NO_SERVE:-}" ]; then exit 0; fi
echo; echo "== hookstream serve (same broker and database), three runs back to back =="
echo "serve RSS before: $(rss $servepid)"
for i in 1 2 3; do
  load http://127.0.0.1:8097/webhooks/generic | grep -E 'Requests/sec|  99%|Non-2xx'
  echo "serve RSS after run $i: $(rss $servepid)"
done
