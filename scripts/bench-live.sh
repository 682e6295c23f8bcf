#!/usr/bin/env bash
# The whole pipeline under live traffic (BENCHMARKS.md, issue 19): requests
# arrive while the consumer, the audit relay and the sink run.
#
#   scripts/bench-live.sh [duration] [customers] [connections]
#   SPLIT=1 scripts/bench-live.sh      # the consumer in its own process
#   RATE=2000 scripts/bench-live.sh    # open loop at RATE instead of closed
#
# First the ceiling: `hookstream bench` against a bare gin 202 handler, same
# connections and customers, in the same run. Then `hookstream dev`
# (embedded broker, private PostgreSQL with fsync on, receiver, consumer,
# relay, sink; with SPLIT=1 `dev --consume=false` plus `hookstream consume`)
# gets the same load, each request a new signed `generic` event. Once the
# load ends it waits until every accepted event is PROCESSED (`--verify`)
# and prints: accepted req/s, end-to-end events/s (accepted events over the
# time from the first request to the last PROCESSED), 202->PROCESSED
# p50/p99, and PostgreSQL commits per event of the consumer's batch path
# (hookstream_consumer_batch_events).
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-20s}
customers=${2:-5000}
conns=${3:-64}

. scripts/lib.sh
bench_setup TERM
bench_build baregin
secret=bench-secret-0123456789
"$work/baregin" -addr 127.0.0.1:8087 & ginpid=$!; pids+=($ginpid)
for _ in $(seq 1 40); do curl -s -o /dev/null http://127.0.0.1:8087/ && break; sleep 0.25; done
"$work/hookstream" bench --target http://127.0.0.1:8087 --secret "$secret" --duration "$dur" --customers "$customers" \
  --concurrency "$conns" ${RATE:+--rate "$RATE"} --json > "$work/ceiling.json" 2>/dev/null
kill -TERM "$ginpid" 2>/dev/null || true

metrics=127.0.0.1:8098
if [ -n "${SPLIT:-}" ]; then
  HOOKSTREAM_GENERIC_SECRET=$secret HOOKSTREAM_LOG_LEVEL=warn \
    start_dev --consume=false --data-dir "$work/data" --http-addr 127.0.0.1:8088 --kafka-listen 127.0.0.1:19095
  HOOKSTREAM_DATABASE_URL=$(dev_database_url) HOOKSTREAM_KAFKA_BROKERS=127.0.0.1:19095 HOOKSTREAM_LOG_LEVEL=warn \
    "$work/hookstream" consume --http-addr "$metrics" > "$work/consume.out" 2> "$work/consume.err" & pids+=($!)
  for _ in $(seq 1 60); do curl -sf "http://$metrics/readyz" >/dev/null && break; sleep 0.5; done
else
  HOOKSTREAM_GENERIC_SECRET=$secret HOOKSTREAM_LOG_LEVEL=warn \
    start_dev --data-dir "$work/data" --http-addr 127.0.0.1:8088 --kafka-listen 127.0.0.1:19095
  metrics=127.0.0.1:8088
fi
export HOOKSTREAM_DATABASE_URL=$(dev_database_url) HOOKSTREAM_KAFKA_BROKERS=127.0.0.1:19095
"$work/hookstream" bench --target http://127.0.0.1:8088 --secret "$secret" --duration "$dur" --customers "$customers" \
  --concurrency "$conns" ${RATE:+--rate "$RATE"} --verify --json > "$work/bench.json" 2> "$work/bench.err" || true
curl -s "http://$metrics/metrics" > "$work/metrics.txt"
psql -X -At -F ' ' "$HOOKSTREAM_DATABASE_URL" -c \
  "SELECT count(*), extract(epoch FROM max(processed_at) - min(received_at)) FROM events WHERE status = 'PROCESSED'" > "$work/window.txt"
python3 - "$work/ceiling.json" "$work/bench.json" "$work/metrics.txt" "$work/window.txt" <<'PY'
import json, re, sys
c, b = (json.load(open(f)) for f in sys.argv[1:3])
m = open(sys.argv[3]).read()
def metric(name):
    return sum(float(v) for v in re.findall(r'^' + name + r'(?:\{[^}]*\})? (\S+)$', m, re.M))
n, secs = open(sys.argv[4]).read().split()
n, secs = int(n), float(secs)
commits, evs = metric('hookstream_consumer_batch_events_count'), metric('hookstream_consumer_batch_events_sum')
ceil = c["requests_per_second"]
acc = b["status_counts"].get("202", 0) / b["seconds"]
e2e = n / secs if secs > 0 else 0
v = b.get("verify", {})
print("ceiling (bare gin 202): %.0f req/s" % ceil)
print("accepted: %.0f req/s (%.3fx ceiling), p99 %.1f ms" % (acc, acc / ceil, b["latency_ms"]["p99"]))
print("end to end: %d events PROCESSED in %.1f s = %.0f events/s (%.3fx ceiling)" % (n, secs, e2e, e2e / ceil))
print("202->PROCESSED: p50 %s ms, p99 %s ms; verify ok=%s" % (v.get("end_to_end_ms", {}).get("p50"), v.get("end_to_end_ms", {}).get("p99"), v.get("ok")))
print("consumer batch transactions: %.0f for %.0f events = %.1f events per commit" % (commits, evs, evs / commits if commits else 0))
PY
