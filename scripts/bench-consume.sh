#!/usr/bin/env bash
# Consumer throughput with the no-op handler (BENCHMARKS.md).
#
#   scripts/bench-consume.sh [events] [customers] [rate]
#   KAFKA=cluster scripts/bench-consume.sh ...   on 3-node Apache Kafka
#   HOOKSTREAM_DATABASE_URL=... scripts/bench-consume.sh   on that database
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
. scripts/lib.sh
bench_setup INT
bench_build loadevents
bench_kafka 19093
HOOKSTREAM_LOG_LEVEL=warn start_dev --data-dir "$work/data" --http-addr 127.0.0.1:8096 "${dev_kafka_args[@]}"
"$work/loadevents" --brokers "$brokers" --database-url "$(dev_database_url)" \
  --events "$events" --customers "$customers" ${rate:+--rate "$rate"}
echo "claim (hookstream_consumer_claim_seconds): $(quantiles http://127.0.0.1:8096/metrics hookstream_consumer_claim_seconds)"
if [ "${KAFKA:-kfake}" = kfake ]; then
  echo "kafka log on disk per event (kfake, every topic): $(du -sb "$work/data/kafka" | awk -v n="$events" '{printf "%.0f bytes", $1 / n}')"
fi
