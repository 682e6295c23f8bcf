#!/usr/bin/env bash
# One run of the randomized fault schedule (TestFaultSchedule in
# cmd/hookstream/schedule_test.go) on a 3-node Apache Kafka cluster of its
# own: the receiver, three consume members, PostgreSQL and an HTTP
# destination, under load, through faults drawn from SEED, then the
# verifier. RELIABILITY.md says what it injects and records the runs.
#
#   scripts/fault-schedule.sh [SEED [DURATION [RATE]]]
#
# SEED       the schedule; default a random one (printed). The same seed
#            draws the same faults at the same times.
# DURATION   how long faults are injected (Go duration); default 10m.
#            Setting up, settling and verifying add a few minutes.
# RATE       requests per second; default 80.
#
# The whole log goes to $FAULT_LOG_DIR (default /tmp)/fault-schedule-SEED-TIME.log;
# the summary, and every violation, are printed. Exit status 0 means the
# run came out clean. Needs Java 17+ and Maven (Apache Kafka comes from
# Maven Central, once) and PostgreSQL's binaries, as CI installs them.
set -euo pipefail
cd "$(dirname "$0")/.."
seed="${1:-$(((RANDOM << 15) | RANDOM))}"
duration="${2:-10m}"
rate="${3:-80}"
log="${FAULT_LOG_DIR:-/tmp}/fault-schedule-$seed-$(date +%Y%m%dT%H%M%S).log"
echo "fault schedule: seed $seed, $duration of faults, $rate requests/s; log $log"
rc=0
HOOKSTREAM_TEST_KAFKA=apache HOOKSTREAM_SCHEDULE_SEED="$seed" HOOKSTREAM_SCHEDULE_DURATION="$duration" \
  HOOKSTREAM_SCHEDULE_RATE="$rate" go test -count=1 -v -timeout 4h -run '^TestFaultSchedule$' ./cmd/hookstream \
  >"$log" 2>&1 || rc=$?
grep -E 'VIOLATION|schedule seed|load stopped|settled|audit verify|^(--- |FAIL|ok|panic)' "$log" | cut -c1-400 | head -60 || true
exit "$rc"
