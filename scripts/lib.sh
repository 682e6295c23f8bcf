# Shared by the bench-*.sh scripts: source it after `cd` to the repository.
#
#   bench_setup TERM|INT   a work directory ($work) removed on exit, after
#                          the processes in $pids get that signal (KEEP=1
#                          keeps the directory and the processes)
#   bench_build TOOL...    build hookstream and internal/tools/TOOL into $work
#   start_dev ARGS...      `hookstream dev ARGS...` in the background (with
#                          the caller's environment prefix), $devpid set,
#                          returns once it is ready; dev.out/dev.err in $work
#   dev_database_url       the private PostgreSQL URL dev printed, with the
#                          password (which dev prints redacted) from its file;
#                          HOOKSTREAM_DATABASE_URL when set (dev uses it)
#   quantiles URL METRIC   p50 and p99 of a Prometheus histogram scraped
#                          from URL (linear within a bucket), in ms
#   bench_sources URL [RETRY]  $work/sources.yaml: the generic source (secret
#                          in HOOKSTREAM_GENERIC_SECRET) delivering to URL,
#                          with RETRY as its retry policy (a YAML flow map)
#   bench_kafka PORT       the broker: $brokers, and $dev_kafka_args for
#                          start_dev. By default dev's embedded kfake on
#                          127.0.0.1:PORT; with KAFKA=cluster a 3-node
#                          Apache Kafka cluster (scripts/kafka-cluster.sh)
#                          under $work, stopped on exit, which dev uses
#                          through HOOKSTREAM_KAFKA_BROKERS
#   bench_request          the receiver benchmarks' request: a 798-byte
#                          generic event signed with $secret (bench-secret-0123456789),
#                          as $body and $sig, and $work/post.lua for wrk

bench_setup() {
  bench_signal=$1
  work=$(mktemp -d /tmp/hookstream-bench-XXXXXX)
  chmod 755 "$work"
  pids=()
  trap bench_cleanup EXIT
  if [ -n "${KEEP:-}" ]; then trap - EXIT; fi
}

bench_cleanup() {
  for p in "${pids[@]}"; do kill -"$bench_signal" "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -d "$work/kafka" ]; then scripts/kafka-cluster.sh down "$work/kafka" >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}

bench_kafka() {
  case "${KAFKA:-kfake}" in
    kfake)
      brokers=127.0.0.1:$1
      dev_kafka_args=(--kafka-listen "$brokers")
      ;;
    cluster)
      echo "starting a 3-node Apache Kafka cluster (scripts/kafka-cluster.sh) ..."
      brokers=$(scripts/kafka-cluster.sh up "$work/kafka" 3 | tail -1)
      export HOOKSTREAM_KAFKA_BROKERS=$brokers
      dev_kafka_args=()
      ;;
    *) echo "KAFKA=${KAFKA}: want kfake or cluster" >&2; exit 2 ;;
  esac
  echo "kafka: ${KAFKA:-kfake} at $brokers"
}

bench_build() {
  go build -o "$work/hookstream" ./cmd/hookstream
  for tool in "$@"; do go build -o "$work/$tool" "./internal/tools/$tool"; done
}

start_dev() {
  "$work/hookstream" dev "$@" > "$work/dev.out" 2> "$work/dev.err" &
  devpid=$!
  pids+=("$devpid")
  for _ in $(seq 1 120); do grep -q "Press Ctrl-C" "$work/dev.out" 2>/dev/null && break; sleep 0.5; done
  grep -q "Press Ctrl-C" "$work/dev.out" || { cat "$work/dev.err"; exit 1; }
}

# dev prints the URL with its password redacted and the file that holds it:
#   PostgreSQL: postgres://postgres:REDACTED@127.0.0.1:PORT/postgres (password in FILE)
dev_database_url() {
  if [ -n "${HOOKSTREAM_DATABASE_URL:-}" ]; then printf '%s\n' "$HOOKSTREAM_DATABASE_URL"; return; fi
  local line url file
  line=$(sed -n 's/^  PostgreSQL: //p' "$work/dev.out")
  url=${line%% (password in *}
  file=${line##* (password in }
  file=${file%)}
  if [ "$file" != "$line" ] && [ -r "$file" ]; then
    url=${url/REDACTED/$(cat "$file")}
  fi
  printf '%s\n' "$url"
}

bench_sources() {
  cat > "$work/sources.yaml" <<YAML
sources:
  - name: generic
    scheme: hmac-sha256
    secrets: ["env:HOOKSTREAM_GENERIC_SECRET"]
    event_id: {pointer: /event_id}
    customer_id: {pointer: /customer_id}
    event_type: {pointer: /event_type}
    destination: {url: "$1", timeout: 5s}
${2:+    retry: $2}
YAML
}

bench_request() {
  secret=bench-secret-0123456789
  local payload
  payload=$(head -c 700 /dev/zero | tr '\0' 'x')
  body="{\"event_id\":\"evt_bench\",\"customer_id\":\"cus_bench\",\"event_type\":\"bench.event\",\"payload\":{\"pad\":\"$payload\"}}"
  sig=$(printf '%s' "$body" | openssl dgst -sha256 -hmac "$secret" -r | cut -d' ' -f1)
  cat > "$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body = [[$body]]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Signature"] = "$sig"
LUA
}

quantiles() {
  curl -sf "$1" | awk -v m="$2_bucket" '
    index($0, m "{") == 1 {
      le = $0; sub(/.*le="/, "", le); sub(/".*/, "", le)
      n++; bound[n] = (le == "+Inf") ? -1 : le + 0; count[n] = $NF + 0
    }
    function q(p,   target, i, lo, prev) {
      target = p * count[n]; prev = 0; lo = 0
      for (i = 1; i <= n; i++) {
        if (count[i] >= target) {
          if (bound[i] < 0) return "> " lo * 1000
          return sprintf("%.2f", 1000 * (lo + (bound[i] - lo) * (target - prev) / (count[i] - prev + 1e-12)))
        }
        prev = count[i]; lo = bound[i]
      }
    }
    END { if (n == 0 || count[n] == 0) { print "no samples"; exit } printf "p50 %s ms, p99 %s ms (%d samples)\n", q(0.5), q(0.99), count[n] }'
}
