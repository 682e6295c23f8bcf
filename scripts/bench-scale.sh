#!/usr/bin/env bash
# The receiver and the consumer on a database of 100 million events, beside
# the same runs on an empty one, in one session (BENCHMARKS.md, issue 16).
#
#   scripts/bench-scale.sh [events] [days]     defaults 100000000 30
#   ROUNDS=2 SCALE_DIR=/var/tmp/scale scripts/bench-scale.sh
#
# 1. A private PostgreSQL (internal/tools/pgserver, as dev's) in SCALE_DIR
#    (default ~/.cache/hookstream/scale), kept between runs. Its database
#    scale_full holds EVENTS PROCESSED events over DAYS days, in buckets of
#    DAYS/2 days (the retention job's period for a retention of DAYS, the
#    shortest that keeps them all), written in bulk by
#    internal/tools/fillevents (not through HTTP), once: it is filled again
#    only when EVENTS, DAYS or BUCKET_DAYS change.
# 2. scale_empty: a database created anew for each run.
# 3. ROUNDS (default 2) rounds, the order alternating: on each database,
#    scripts/bench-ingest.sh 64 12s (receiver against bare gin, one pair)
#    and scripts/bench-consume.sh 40000 1000, with the retention job off
#    (the filled buckets are older than the default retention, which would
#    drop them).
# 4. The size of events in scale_full per event (heap and indexes).
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-100000000}
days=${2:-30}
bucket_days=${BUCKET_DAYS:-$(( days / 2 > 0 ? days / 2 : 1 ))}
dir=${SCALE_DIR:-$HOME/.cache/hookstream/scale}
mkdir -p "$dir"
. scripts/lib.sh
bench_setup TERM
bench_build pgserver fillevents
"$work/pgserver" -data-dir "$dir/pg" > "$work/pg.url" 2> "$work/pg.err" & pids+=($!)
for _ in $(seq 1 120); do [ -s "$work/pg.url" ] && break; sleep 0.5; done
[ -s "$work/pg.url" ] || { cat "$work/pg.err"; exit 1; }
base=$(head -1 "$work/pg.url")
db() { printf '%s\n' "$base" | sed "s#/postgres\([?]\|\$\)#/$1\1#"; }
sql() { psql "$base" -qAtc "$1"; }

want="$events/$days/$bucket_days"
if [ "$(psql "$(db scale_full)" -qAtc 'SELECT note FROM scale_fill' 2>/dev/null || true)" != "$want" ]; then
  echo "filling scale_full with $events events over $days days (once; kept in $dir) ..."
  sql "DROP DATABASE IF EXISTS scale_full WITH (FORCE)"
  sql "CREATE DATABASE scale_full"
  "$work/hookstream" migrate --database-url "$(db scale_full)"
  "$work/fillevents" --database-url "$(db scale_full)" --events "$events" --days "$days" --bucket-days "$bucket_days"
  psql "$(db scale_full)" -qc "CREATE TABLE scale_fill (note text); INSERT INTO scale_fill VALUES ('$want')"
fi
psql "$(db scale_full)" -qAtc "SELECT 'scale_full: ' || sum(c.reltuples)::bigint || ' events in ' || count(*) || ' partitions, '
  || pg_size_pretty(sum(pg_total_relation_size(c.oid))) || ', '
  || round(sum(pg_total_relation_size(c.oid)) / greatest(sum(c.reltuples), 1)) || ' bytes per event (heap ' ||
  round(sum(pg_relation_size(c.oid)) / greatest(sum(c.reltuples), 1)) || ', indexes ' ||
  round(sum(pg_indexes_size(c.oid)) / greatest(sum(c.reltuples), 1)) || ')'
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'events'::regclass"

export HOOKSTREAM_RETENTION_JOB=false
one() {
  local name=$1
  if [ "$name" = scale_empty ]; then
    sql "DROP DATABASE IF EXISTS scale_empty WITH (FORCE)"
    sql "CREATE DATABASE scale_empty"
  fi
  echo; echo "== round $r: $name =="
  HOOKSTREAM_DATABASE_URL=$(db "$name") NO_SERVE=1 ROUNDS=1 scripts/bench-ingest.sh 64 12s | grep -E "dev / bare =|duplicate check"
  HOOKSTREAM_DATABASE_URL=$(db "$name") scripts/bench-consume.sh 40000 1000 | grep -E "events_per_second|claim|kafka log"
}
for r in $(seq 1 "${ROUNDS:-2}"); do
  if [ $((r % 2)) = 1 ]; then one scale_empty; one scale_full; else one scale_full; one scale_empty; fi
done
