#!/usr/bin/env bash
# End to end at a fixed rate (BENCHMARKS.md): signed webhooks through the
# receiver, processed by a separate consumer process, verified.
#
#   scripts/bench-e2e.sh [rate] [duration] [customers]
#   BENCH_ARGS="--duplicates 0.05 --bad 0.02" scripts/bench-e2e.sh 3000 30s
#
# First the ceiling: the same `hookstream bench` (closed loop, 256
# connections, 10 s) against a bare gin handler that reads the body and
# answers 202, in the same run. Then it starts `hookstream dev --consume=false` (embedded broker, private
# PostgreSQL with fsync on, the receiver) and `hookstream consume` as its
# own process, then runs `hookstream bench --rate R --verify --json`
# (open loop) against the receiver. While the load runs it samples the
# resident memory of each process once a second and prints the peak:
# dev (broker + receiver; kfake keeps the whole log in memory, so it grows
# with every record), consume, bench, and PostgreSQL (proportional set
# size summed over its processes, so shared buffers count once).
set -euo pipefail
cd "$(dirname "$0")/.."
rate=${1:-5000}
dur=${2:-30s}
customers=${3:-1000}

. scripts/lib.sh
bench_setup TERM
bench_build baregin
secret=bench-secret-0123456789
"$work/baregin" -addr 127.0.0.1:8087 & ginpid=$!; pids+=($ginpid)
for _ in $(seq 1 40); do curl -s -o /dev/null http://127.0.0.1:8087/ && break; sleep 0.25; done
"$work/hookstream" bench --target http://127.0.0.1:8087 --secret "$secret" --duration 10s --customers "$customers" \
  --concurrency 256 --json > "$work/ceiling.json" 2>/dev/null
kill -TERM "$ginpid" 2>/dev/null || true
HOOKSTREAM_GENERIC_SECRET=$secret HOOKSTREAM_LOG_LEVEL=warn \
  start_dev --consume=false --data-dir "$work/data" --http-addr 127.0.0.1:8088 --kafka-listen 127.0.0.1:19094
export HOOKSTREAM_DATABASE_URL=$(dev_database_url)
export HOOKSTREAM_KAFKA_BROKERS=127.0.0.1:19094
HOOKSTREAM_LOG_LEVEL=warn "$work/hookstream" consume --http-addr 127.0.0.1:8089 \
  > "$work/consume.out" 2> "$work/consume.err" & conspid=$!; pids+=($conspid)
for _ in $(seq 1 60); do curl -sf http://127.0.0.1:8089/readyz >/dev/null && break; sleep 0.5; done

"$work/hookstream" bench --target http://127.0.0.1:8088 --secret "$secret" --rate "$rate" --duration "$dur" \
  --customers "$customers" --concurrency 256 --verify --json ${BENCH_ARGS:-} > "$work/bench.json" 2> "$work/bench.err" & benchpid=$!

kb() { awk '/VmRSS/{print $2}' /proc/"$1"/status 2>/dev/null || echo 0; }
pgmain=$(pgrep -u postgres -f -- "-D $work" | head -1 || true)
pgtree() {
  local t=0
  [ -n "$pgmain" ] || { echo 0; return; }
  for p in $pgmain $(pgrep -P "$pgmain" || true); do
    t=$((t + $(awk '/^Pss:/{print $2}' /proc/$p/smaps_rollup 2>/dev/null || echo 0)))
  done
  echo $t
}
peak_dev=0 peak_cons=0 peak_bench=0 peak_pg=0
while kill -0 "$benchpid" 2>/dev/null; do
  d=$(kb $devpid) c=$(kb $conspid) b=$(kb $benchpid) g=$(pgtree)
  [ "$d" -gt "$peak_dev" ] && peak_dev=$d
  [ "$c" -gt "$peak_cons" ] && peak_cons=$c
  [ "$b" -gt "$peak_bench" ] && peak_bench=$b
  [ "$g" -gt "$peak_pg" ] && peak_pg=$g
  sleep 1
done
wait "$benchpid" || true
echo "ceiling (bare gin 202, closed loop): $(cat "$work/ceiling.json")"
echo "hookstream at $rate/s: $(cat "$work/bench.json")"
python3 - "$work/ceiling.json" "$work/bench.json" <<'PY'
import json, sys
c, b = (json.load(open(f)) for f in sys.argv[1:3])
print("achieved %.0f req/s = %.1f%% of the bare gin ceiling (%.0f req/s, p99 %.1f ms)" % (
    b["requests_per_second"], 100 * b["requests_per_second"] / c["requests_per_second"], c["requests_per_second"], c["latency_ms"]["p99"]))
PY
echo "peak memory: dev (broker+receiver) RSS $((peak_dev/1024)) MB, consume RSS $((peak_cons/1024)) MB, bench RSS $((peak_bench/1024)) MB, PostgreSQL PSS $((peak_pg/1024)) MB"
