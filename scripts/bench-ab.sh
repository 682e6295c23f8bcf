#!/usr/bin/env bash
# Two builds of the receiver against each other, in alternation (BENCHMARKS.md).
#
#   scripts/bench-ab.sh BIN_A BIN_B [rounds] [duration]
#   A_ENV='GOMAXPROCS=4' scripts/bench-ab.sh bin/old bin/new 4 10s
#
# Builds nothing: BIN_A and BIN_B are hookstream binaries (for example
# `git stash; go build -o /tmp/hs-old ./cmd/hookstream; git stash pop`).
# Each gets its own `dev --consume=false` (embedded broker, private
# PostgreSQL), A_ENV and B_ENV are added to their environments. Then wrk
# (64 connections) loads them in turn, A B, B A, A B, ... so that a drift
# of the machine's speed favours neither, and the script prints each run's
# req/s and p99 and each side's mean.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n 2,12p "$0" >&2; exit 2; }
bin_a=$(realpath "$1"); bin_b=$(realpath "$2"); rounds=${3:-4}; dur=${4:-10s}
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }

. scripts/lib.sh
bench_setup TERM

bench_request

start() { # side binary env http-port kafka-port
  env HOOKSTREAM_GENERIC_SECRET=$secret HOOKSTREAM_LOG_LEVEL=warn $3 \
    "$2" dev --consume=false --data-dir "$work/$1" --http-addr "127.0.0.1:$4" --kafka-listen "127.0.0.1:$5" \
    > "$work/$1.out" 2> "$work/$1.err" &
  pids+=($!)
  for _ in $(seq 1 120); do grep -q "Press Ctrl-C" "$work/$1.out" 2>/dev/null && return; sleep 0.5; done
  cat "$work/$1.err" >&2; exit 1
}
start A "$bin_a" "${A_ENV:-}" 8101 19101
start B "$bin_b" "${B_ENV:-}" 8102 19102

run() { wrk -t2 -c64 -d"$dur" --latency -s "$work/post.lua" "http://127.0.0.1:$1/webhooks/generic" | awk '/Requests\/sec/{r=$2} / 99%/{p=$2} END{print r, p}'; }
run 8101 > /dev/null; run 8102 > /dev/null # warm up both
for i in $(seq 1 "$rounds"); do
  if [ $((i % 2)) = 1 ]; then order="A B"; else order="B A"; fi
  for side in $order; do
    port=8101; [ "$side" = B ] && port=8102
    echo "round $i $side $(run $port)"
  done
done | tee "$work/results"
awk '{s[$3]+=$4; n[$3]++} END{for (k in s) printf "%s mean %.0f req/s\n", k, s[k]/n[k]}' "$work/results" | sort
