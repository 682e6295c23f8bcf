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
#    scripts/bench-ingest.sh 64 12s (receiver against bare gin, one pair;
#    INGEST=0 skips it) and scripts/bench-consume.sh CONSUME_EVENTS 1000
#    (default 200000: shorter runs vary more than the 15% measured), with
#    the retention job off (the filled buckets are older than the default
#    retention, which would drop them); after each, what PostgreSQL did
#    per duplicate check or event (pg_stat_wal, pg_stat_database).
# 4. The size of events in scale_full per event (heap and indexes).
#
# The server gets PG_SETTINGS (default shared_buffers=10GB; "" for
# PostgreSQL's defaults), see below.
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
# The server is sized as one that holds 100 million events would be: the
# receiver's duplicate check probes every live bucket's key index at a
# random leaf per key, so the key indexes (74 bytes per event, 7.4 GB
# here) are its working set and must fit in memory, and are warmed
# (pg_prewarm) as steady traffic keeps them. PG_SETTINGS="" runs the
# defaults (128 MB of shared_buffers) instead.
settings=()
for kv in ${PG_SETTINGS-shared_buffers=10GB}; do settings+=(-set "$kv"); done
"$work/pgserver" -data-dir "$dir/pg" "${settings[@]}" > "$work/pg.url" 2> "$work/pg.err" & pids+=($!)
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

if [ -n "${PG_SETTINGS-x}" ]; then
  psql "$(db scale_full)" -qAtc "CREATE EXTENSION IF NOT EXISTS pg_prewarm;
SELECT 'prewarmed ' || pg_size_pretty(sum(pg_prewarm(i.indexrelid) * current_setting('block_size')::bigint)) || ' of key indexes'
FROM pg_index i JOIN pg_inherits p ON p.inhrelid = i.indrelid
WHERE p.inhparent = 'events'::regclass AND i.indisunique"
fi
consume_events=${CONSUME_EVENTS:-200000}
export HOOKSTREAM_RETENTION_JOB=false
one() {
  local name=$1
  if [ "$name" = scale_empty ]; then
    sql "DROP DATABASE IF EXISTS scale_empty WITH (FORCE)"
    sql "CREATE DATABASE scale_empty"
  fi
  echo; echo "== round $r: $name =="
  local before
  if [ "${INGEST:-1}" = 1 ]; then
    before=$(pgstats "$name")
    HOOKSTREAM_DATABASE_URL=$(db "$name") NO_SERVE=1 ROUNDS=1 scripts/bench-ingest.sh 64 12s | tee "$work/ingest.out" | grep -E "dev / bare =|duplicate check"
    delta "$before" "$(pgstats "$name")" "$(sed -n 's/.*duplicate check.*(\([0-9]*\) samples).*/\1/p' "$work/ingest.out")" "duplicate check"
  fi
  before=$(pgstats "$name")
  HOOKSTREAM_DATABASE_URL=$(db "$name") scripts/bench-consume.sh "$consume_events" 1000 | grep -E "events_per_second|claim|kafka log"
  delta "$before" "$(pgstats "$name")" "$consume_events" event
}
# pgstats is the server's WAL records, full-page images, WAL bytes and
# checkpoints so far, and database $1's blocks read (outside
# shared_buffers) and found in them; delta prints them per $4 ($3 of them).
pgstats() {
  sql "SELECT w.wal_records, w.wal_fpi, w.wal_bytes, b.checkpoints_timed + b.checkpoints_req, d.blks_read, d.blks_hit
FROM pg_stat_wal w, pg_stat_bgwriter b, pg_stat_database d WHERE d.datname = '$1'"
}
delta() {
  paste -d'|' <(tr '|' '\n' <<< "$1") <(tr '|' '\n' <<< "$2") | awk -F'|' -v n="${3:-1}" -v per="$4" '
    { d[NR] = $2 - $1 }
    END { printf "postgres per %s: %.1f WAL records, %.2f full-page images, %.0f WAL bytes, %.1f blocks read, %.1f hit; %d checkpoints\n",
      per, d[1] / n, d[2] / n, d[3] / n, d[5] / n, d[6] / n, d[4] }'
}
for r in $(seq 1 "${ROUNDS:-2}"); do
  if [ $((r % 2)) = 1 ]; then one scale_empty; one scale_full; else one scale_full; one scale_empty; fi
done
