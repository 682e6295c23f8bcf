#!/usr/bin/env bash
# Latency of the customers that are not failing while others fail (issue
# 12, BENCHMARKS.md).
#
#   scripts/bench-failing.sh [rate] [seconds] [fail-for] [customers]
#
# A destination (slowdest, 2 ms a call) answers 503 to a tenth of the
# customers (ids ending in 0) for fail-for (default 30s) after its first
# call; `hookstream dev` delivers the generic source to it (retries: 1s
# doubling to 5s, 20 attempts). Events are written straight into
# hookstream.events open loop at the rate (default 5000/s) for the seconds
# (default 60), each stamped with its own received-at. Once all are
# PROCESSED it prints received->PROCESSED p50/p99 for the healthy
# customers and for the failing ones. A failing customer must not hold up
# the others: their percentiles should look like a run without failures.
set -euo pipefail
cd "$(dirname "$0")/.."
rate=${1:-5000}
secs=${2:-60}
failfor=${3:-30s}
customers=${4:-1000}
. scripts/lib.sh
bench_setup INT
bench_build loadevents slowdest
"$work/slowdest" --addr 127.0.0.1:8097 --delay 2ms --fail-for "$failfor" > "$work/dest.out" & destpid=$!; pids+=($destpid)
bench_sources "http://127.0.0.1:8097/hook" "{max_attempts: 20, initial_backoff: 1s, max_backoff: 5s}"
HOOKSTREAM_GENERIC_SECRET=bench-secret-0123456789 HOOKSTREAM_SOURCES="$work/sources.yaml" HOOKSTREAM_LOG_LEVEL=${LOG_LEVEL:-error} \
  start_dev --data-dir "$work/data" --http-addr 127.0.0.1:8096 --kafka-listen 127.0.0.1:19096
db=$(dev_database_url)
"$work/loadevents" --brokers 127.0.0.1:19096 --database-url "$db" \
  --events $((rate * secs)) --customers "$customers" --rate "$rate"
kill -INT "$destpid"; wait "$destpid" || true
cat "$work/dest.out"
psql -X -At "$db" <<'SQL'
SELECT CASE WHEN customer_id LIKE '%0' THEN 'failing' ELSE 'healthy' END AS customers, count(*) AS events,
  round(1000 * percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM processed_at - received_at)))::text || ' ms p50',
  round(1000 * percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM processed_at - received_at)))::text || ' ms p99'
FROM events WHERE status = 'PROCESSED' GROUP BY 1 ORDER BY 1;
SQL
