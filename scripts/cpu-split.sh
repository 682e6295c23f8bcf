#!/usr/bin/env bash
# CPU seconds used by each command name during the next SECONDS seconds,
# from /proc/*/stat (utime+stime), busiest first.
#   scripts/cpu-split.sh 8      # run it while a benchmark is loading the system
set -euo pipefail
secs=${1:-8}
snap() {
  for p in /proc/[0-9]*; do
    awk -v pid="${p#/proc/}" '{print pid, $2, $14+$15}' "$p/stat" 2>/dev/null || true
  done | sort
}
a=$(mktemp); b=$(mktemp); trap 'rm -f "$a" "$b"' EXIT
snap > "$a"; sleep "$secs"; snap > "$b"
join "$a" "$b" | awk -v hz="$(getconf CLK_TCK)" '{d=$5-$3; if (d>0) c[$2]+=d} END {for (k in c) printf "%.2fs %s\n", c[k]/hz, k}' | sort -rn | head -8
