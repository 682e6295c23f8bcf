#!/usr/bin/env bash
# A real Apache Kafka cluster on loopback, without Docker: N KRaft nodes,
# each a combined broker and controller, run from Maven artifacts.
#
#   kafka-cluster.sh up DIR [N]   create (or bring back) the cluster in DIR,
#                                 N nodes (default 3); returns once every node
#                                 serves and the controller quorum has a
#                                 leader; the LAST line of stdout is the
#                                 bootstrap list 127.0.0.1:p1,127.0.0.1:p2,…
#   kafka-cluster.sh kill DIR ID  SIGKILL node ID (1-based); returns once it is gone
#   kafka-cluster.sh start DIR ID start node ID again with its data; returns
#                                 once it serves (last line: the bootstrap list)
#   kafka-cluster.sh down DIR     stop every node (SIGTERM, then SIGKILL after
#                                 KAFKA_CLUSTER_STOP_TIMEOUT); data stays in DIR
#   kafka-cluster.sh status DIR   each node running or not; last line: bootstrap
#   kafka-cluster.sh resolve      only resolve Kafka into the cache (CI does
#                                 it first); prints the directory of its jars
#   kafka-cluster.sh cluster-id   print a new cluster id (what `up` gives a
#                                 new cluster)
#
# The broker is org.apache.kafka:kafka_2.13 at KAFKA_CLUSTER_VERSION (pinned
# below), resolved with the machine's Maven into a cache outside the
# repository (KAFKA_CLUSTER_CACHE, default
# ${XDG_CACHE_HOME:-~/.cache}/hookstream/kafka-<version>), reused when
# present. Nothing but Maven artifacts is downloaded.
#
# DIR holds everything of the cluster: cluster.env (its id and ports),
# node-I/server.properties, node-I/data, node-I/server.log (the node's log,
# appended across restarts) and node-I/pid. Ports are free 127.0.0.1 ports
# below the kernel's ephemeral range, fixed when the cluster is created so
# that a restarted node is found where it was; a registry under TMPDIR
# keeps two clusters created at the same time from picking the same ones.
#
# Environment:
#   KAFKA_CLUSTER_VERSION       Apache Kafka version (default below)
#   KAFKA_CLUSTER_CACHE         where the resolved jars go
#   KAFKA_CLUSTER_HEAP          -Xmx of each node (default 384m: three nodes,
#                               PostgreSQL, hookstream and the tests share
#                               2 cores and 24 GiB)
#   KAFKA_CLUSTER_JVM_OPTS      more JVM options for each node
#   KAFKA_CLUSTER_CONFIG        more server.properties lines for new clusters
#   KAFKA_CLUSTER_TIMEOUT       seconds `up`/`start` wait for readiness (180)
#   KAFKA_CLUSTER_STOP_TIMEOUT  seconds `down` waits before SIGKILL (30)
#   JAVA_HOME                   the JVM (default: java on PATH; 17 or newer)
set -euo pipefail

# 4.3.1: the newest patch release of the newest Kafka line that has one (a
# .0 release carries the new line's first bugs), and its jars are served
# by Maven Central here.
KAFKA_VERSION=${KAFKA_CLUSTER_VERSION:-4.3.1}
CACHE=${KAFKA_CLUSTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hookstream/kafka-$KAFKA_VERSION}
HEAP=${KAFKA_CLUSTER_HEAP:-384m}
TIMEOUT=${KAFKA_CLUSTER_TIMEOUT:-180}
STOP_TIMEOUT=${KAFKA_CLUSTER_STOP_TIMEOUT:-30}
JAVA=${JAVA_HOME:+$JAVA_HOME/bin/}java
DEPENDENCY_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.8.1
REGISTRY=${TMPDIR:-/tmp}/hookstream-kafka-ports

say() { echo "kafka-cluster: $*" >&2; }
die() { say "$*"; exit 1; }

usage() {
  sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# resolve puts the broker's runtime jars in $CACHE/libs, once: a marker file
# says the copy is complete, and a lock lets concurrent callers wait for the
# one resolving instead of racing it.
resolve() {
  [ -f "$CACHE/libs/.complete" ] && return
  command -v mvn >/dev/null || die "Maven (mvn) is needed to resolve org.apache.kafka:kafka_2.13:$KAFKA_VERSION"
  mkdir -p "$CACHE"
  exec 8>"$CACHE/.lock"
  flock 8
  if [ ! -f "$CACHE/libs/.complete" ]; then
    say "resolving Apache Kafka $KAFKA_VERSION with Maven into $CACHE"
    write_pom >"$CACHE/pom.xml"
    rm -rf "$CACHE/libs.tmp"
    if ! mvn -B -q -f "$CACHE/pom.xml" "$DEPENDENCY_PLUGIN:copy-dependencies" \
      -DoutputDirectory="$CACHE/libs.tmp" -DincludeScope=runtime >"$CACHE/mvn.log" 2>&1; then
      tail -n 40 "$CACHE/mvn.log" >&2
      die "Maven could not resolve Apache Kafka $KAFKA_VERSION (log: $CACHE/mvn.log)"
    fi
    touch "$CACHE/libs.tmp/.complete"
    rm -rf "$CACHE/libs"
    mv "$CACHE/libs.tmp" "$CACHE/libs"
  fi
  exec 8>&-
}

# The broker (kafka_2.13), the quorum tool (kafka-tools, without Connect,
# which it drags in for commands not used here) and a binding that sends
# Kafka's SLF4J 1.7 logging to the Log4j 2 it already ships.
write_pom() {
  cat <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.hookstream</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>$KAFKA_VERSION</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$KAFKA_VERSION</version>
      <exclusions>
        <exclusion><groupId>org.apache.kafka</groupId><artifactId>connect-runtime</artifactId></exclusion>
      </exclusions>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>2.25.4</version>
    </dependency>
  </dependencies>
</project>
EOF
}

check_java() {
  command -v "$JAVA" >/dev/null || die "no JVM: $JAVA not found (Java 17 or newer; set JAVA_HOME)"
  local v
  v=$("$JAVA" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n 1)
  [ -n "$v" ] && [ "$v" -ge 17 ] || die "Apache Kafka $KAFKA_VERSION needs Java 17 or newer; $JAVA is ${v:-unknown}"
}

# alloc_ports COUNT prints COUNT ports nobody listens on and no other
# cluster of this machine has taken. They are below the ephemeral range, so
# an outgoing connection never holds one when a killed node comes back.
alloc_ports() {
  local count=$1 lo hi listening taken chosen=() p
  read -r lo _ </proc/sys/net/ipv4/ip_local_port_range
  hi=$((lo - 1))
  lo=$((hi - 12000))
  exec 9>>"$REGISTRY.lock"
  flock 9
  touch "$REGISTRY"
  # Forget the ports of clusters whose directory is gone.
  awk '{ if (system("test -d \"" $2 "\"") == 0) print }' "$REGISTRY" >"$REGISTRY.new"
  mv "$REGISTRY.new" "$REGISTRY"
  listening=" $(ss -Htln | awk '{ n = split($4, a, ":"); printf "%s ", a[n] }')"
  taken=" $(awk '{ printf "%s ", $1 }' "$REGISTRY")"
  while [ "${#chosen[@]}" -lt "$count" ]; do
    p=$((lo + (RANDOM * 32768 + RANDOM) % (hi - lo + 1)))
    case "$listening$taken ${chosen[*]} " in *" $p "*) continue ;; esac
    chosen+=("$p")
    echo "$p $DIR" >>"$REGISTRY"
  done
  exec 9>&-
  echo "${chosen[*]}"
}

load_env() {
  [ -f "$DIR/cluster.env" ] || die "$DIR has no cluster (run: $0 up $DIR)"
  # shellcheck source=/dev/null
  . "$DIR/cluster.env"
  read -r -a BROKER_PORTS <<<"$BROKER_PORTS_LIST"
  read -r -a CONTROLLER_PORTS <<<"$CONTROLLER_PORTS_LIST"
}

bootstrap() {
  local out=() p
  for p in "${BROKER_PORTS[@]}"; do out+=("127.0.0.1:$p"); done
  (IFS=,; echo "${out[*]}")
}

controllers() {
  local out=() p
  for p in "${CONTROLLER_PORTS[@]}"; do out+=("127.0.0.1:$p"); done
  (IFS=,; echo "${out[*]}")
}

# node_pid ID prints the pid of node ID and succeeds only while that process
# is alive and is that node (a recycled pid is someone else; a zombie is dead).
node_pid() {
  local f="$DIR/node-$1/pid" pid state
  [ -f "$f" ] || return 1
  pid=$(cat "$f")
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$DIR/node-$1/server.properties" || return 1
  state=$(sed 's/^.*) \(.\).*/\1/' "/proc/$pid/stat" 2>/dev/null) || return 1
  [ "$state" != Z ] || return 1
  echo "$pid"
}

write_config() {
  local id=$1 n=$2 rf=$(( $2 < 3 ? $2 : 3 )) voters=() i
  local isr=$(( rf < 2 ? rf : 2 ))
  for i in $(seq 1 "$n"); do voters+=("$i@127.0.0.1:${CONTROLLER_PORTS[i-1]}"); done
  mkdir -p "$DIR/node-$id/data"
  cat >"$DIR/node-$id/server.properties" <<EOF
process.roles=broker,controller
node.id=$id
controller.quorum.voters=$(IFS=,; echo "${voters[*]}")
listeners=PLAINTEXT://127.0.0.1:${BROKER_PORTS[id-1]},CONTROLLER://127.0.0.1:${CONTROLLER_PORTS[id-1]}
advertised.listeners=PLAINTEXT://127.0.0.1:${BROKER_PORTS[id-1]}
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$DIR/node-$id/data
# Like production: topics are created on purpose, never by a typo.
auto.create.topics.enable=false
num.partitions=1
default.replication.factor=$rf
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=12
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
transaction.state.log.num.partitions=12
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
# Tests start consumer groups by the hundred; no 3 s wait for each.
group.initial.rebalance.delay.ms=0
# The cleaner's default 128 MiB buffer would take a third of the heap.
log.cleaner.dedupe.buffer.size=33554432
${KAFKA_CLUSTER_CONFIG:-}
EOF
}

write_log_configs() {
  cat >"$DIR/log4j2.properties" <<'EOF'
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.state.name = state.change.logger
logger.state.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
EOF
  cat >"$DIR/tools-log4j2.properties" <<'EOF'
status = warn
appender.err.type = Console
appender.err.name = ERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = ERR
EOF
}

kafka_tool() {
  local cls=$1
  shift
  "$JAVA" -Xmx128m -XX:TieredStopAtLevel=1 \
    -Dlog4j2.configurationFile="$DIR/tools-log4j2.properties" \
    -cp "$CACHE/libs/*" "$cls" "$@"
}

format_node() {
  kafka_tool kafka.tools.StorageTool format -t "$CLUSTER_ID" \
    -c "$DIR/node-$1/server.properties" >"$DIR/node-$1/format.log" 2>&1 ||
    { cat "$DIR/node-$1/format.log" >&2; return 1; }
}

# start_node ID launches node ID in its own session (a Ctrl-C meant for the
# caller does not reach it) with no descriptor of ours: a caller reading
# our stdout must see it close when we exit.
start_node() {
  local id=$1 nd="$DIR/node-$1"
  if node_pid "$id" >/dev/null; then
    return 1
  fi
  touch "$nd/server.log"
  stat -c %s "$nd/server.log" >"$nd/log-offset"
  # shellcheck disable=SC2086,SC2016
  setsid sh -c 'echo $$ >"$1"; shift; exec "$@"' sh "$nd/pid" \
    "$JAVA" -Xms128m "-Xmx$HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExitOnOutOfMemoryError \
    -Djava.awt.headless=true -Dlog4j2.configurationFile="$DIR/log4j2.properties" \
    -Dkafka.logs.dir="$nd" ${KAFKA_CLUSTER_JVM_OPTS:-} \
    -cp "$CACHE/libs/*" kafka.Kafka "$nd/server.properties" \
    </dev/null >>"$nd/server.log" 2>&1 7>&- 8>&- 9>&- &
  # The pid file is written by the child; wait for it (it is instant).
  local i
  for i in $(seq 1 100); do
    node_pid "$id" >/dev/null && return 0
    sleep 0.05
  done
  die "node $id did not start; its log: $nd/server.log"
}

# wait_ready ID DEADLINE: the node logged that it started (a broker does so
# only once the controller has unfenced it) since its last launch.
wait_ready() {
  local id=$1 deadline=$2 nd="$DIR/node-$1" off
  off=$(cat "$nd/log-offset")
  while :; do
    if tail -c +$((off + 1)) "$nd/server.log" | grep -F 'Kafka Server started' >/dev/null; then
      return 0
    fi
    if ! node_pid "$id" >/dev/null; then
      tail -c +$((off + 1)) "$nd/server.log" | tail -n 30 >&2
      die "node $id exited while starting; its log: $nd/server.log"
    fi
    [ "$SECONDS" -lt "$deadline" ] || die "node $id not ready after ${TIMEOUT}s; its log: $nd/server.log"
    sleep 0.3
  done
}

# wait_quorum DEADLINE: the controllers agree on a leader, asked the way an
# operator would (kafka-metadata-quorum describe --status).
wait_quorum() {
  local deadline=$1 out leader
  while :; do
    out=$(kafka_tool org.apache.kafka.tools.MetadataQuorumCommand \
      --bootstrap-controller "$(controllers)" describe --status 2>&1) || true
    leader=$(echo "$out" | sed -n 's/^LeaderId:[[:space:]]*\(-\{0,1\}[0-9]*\).*/\1/p')
    if [ -n "$leader" ] && [ "$leader" -ge 0 ]; then
      say "controller quorum leader: node $leader"
      return 0
    fi
    [ "$SECONDS" -lt "$deadline" ] || { echo "$out" >&2; die "no controller quorum leader after ${TIMEOUT}s"; }
    sleep 0.5
  done
}

node_ids() { seq 1 "$NODES"; }

check_id() {
  case "$1" in '' | *[!0-9]*) die "node id must be a number, got '$1'" ;; esac
  [ "$1" -ge 1 ] && [ "$1" -le "$NODES" ] || die "node id $1: the cluster in $DIR has nodes 1 to $NODES"
}

lock_dir() {
  exec 7>"$DIR/.lock"
  flock 7
}

cmd_up() {
  local n=${1:-}
  if [ -n "$n" ]; then
    case "$n" in *[!0-9]*) die "N must be a number, got '$n'" ;; esac
    [ "$n" -ge 1 ] && [ "$n" -le 9 ] || die "N must be between 1 and 9, got $n"
  fi
  mkdir -p "$DIR"
  lock_dir
  check_java
  resolve
  local deadline=$((SECONDS + TIMEOUT)) id started=()
  if [ -f "$DIR/cluster.env" ]; then
    load_env
    [ -z "$n" ] || [ "$n" = "$NODES" ] || die "$DIR already has a cluster of $NODES nodes, not $n"
  else
    create "${n:-3}"
  fi
  for id in $(node_ids); do
    start_node "$id" && started+=("$id")
  done
  if [ "${#started[@]}" -eq 0 ]; then
    say "the cluster in $DIR is already up ($NODES nodes)"
  else
    say "starting node(s) ${started[*]} of $NODES in $DIR"
    for id in "${started[@]}"; do wait_ready "$id" "$deadline"; done
  fi
  wait_quorum "$deadline"
  bootstrap
}

# cluster_id is a Kafka cluster id: 16 random bytes, URL-safe base64
# without padding, drawn again while it starts with "-" (as Kafka's own
# Uuid.randomUuid does): kafka-storage reads "-t -AbC..." as a missing
# argument followed by an option, and one cluster in 64 failed to format.
cluster_id() {
  local id
  while :; do
    id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | cut -c 1-22)
    case "$id" in -*) ;; *) printf '%s\n' "$id"; return ;; esac
  done
}

create() {
  NODES=$1
  local ports id pids=() pid
  read -r -a ports <<<"$(alloc_ports $((2 * NODES)))"
  BROKER_PORTS=("${ports[@]:0:NODES}")
  CONTROLLER_PORTS=("${ports[@]:NODES}")
  CLUSTER_ID=$(cluster_id)
  write_log_configs
  for id in $(node_ids); do write_config "$id" "$NODES"; done
  # One JVM per node, in parallel: formatting is mostly JVM start-up.
  for id in $(node_ids); do
    format_node "$id" &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || die "formatting the nodes' storage failed"; done
  # Written last: a DIR with cluster.env is a formatted cluster.
  cat >"$DIR/cluster.env.tmp" <<EOF
NODES=$NODES
CLUSTER_ID=$CLUSTER_ID
KAFKA_VERSION=$KAFKA_VERSION
BROKER_PORTS_LIST="${BROKER_PORTS[*]}"
CONTROLLER_PORTS_LIST="${CONTROLLER_PORTS[*]}"
EOF
  mv "$DIR/cluster.env.tmp" "$DIR/cluster.env"
}

# wait_gone ID DEADLINE
wait_gone() {
  while node_pid "$1" >/dev/null; do
    [ "$SECONDS" -lt "$2" ] || return 1
    sleep 0.1
  done
}

cmd_kill() {
  lock_dir
  load_env
  check_id "$1"
  local pid
  pid=$(node_pid "$1") || die "node $1 is not running"
  kill -KILL "$pid"
  wait_gone "$1" $((SECONDS + 30)) || die "node $1 (pid $pid) survived SIGKILL"
  say "node $1 killed"
}

cmd_start() {
  lock_dir
  load_env
  check_id "$1"
  check_java
  resolve
  start_node "$1" || die "node $1 is already running"
  wait_ready "$1" $((SECONDS + TIMEOUT))
  say "node $1 started"
  bootstrap
}

# cmd_down signals every node at once: stopped one by one, the last of a
# three-node quorum would wait for a majority that is already gone.
cmd_down() {
  lock_dir
  load_env
  local id pid stopping=() deadline=$((SECONDS + STOP_TIMEOUT))
  for id in $(node_ids); do
    if pid=$(node_pid "$id"); then
      kill -TERM "$pid" 2>/dev/null || true
      stopping+=("$id")
    fi
  done
  [ "${#stopping[@]}" -gt 0 ] || { say "no node of $DIR is running"; return 0; }
  for id in "${stopping[@]}"; do
    if ! wait_gone "$id" "$deadline"; then
      pid=$(node_pid "$id") && kill -KILL "$pid" 2>/dev/null
      say "node $id did not stop within ${STOP_TIMEOUT}s: killed"
      wait_gone "$id" $((SECONDS + 30)) || die "node $id survived SIGKILL"
    fi
  done
  say "stopped node(s) ${stopping[*]}; data kept in $DIR"
}

cmd_status() {
  load_env
  local id pid
  for id in $(node_ids); do
    if pid=$(node_pid "$id"); then
      echo "node $id: running (pid $pid) on 127.0.0.1:${BROKER_PORTS[id-1]}"
    else
      echo "node $id: stopped (127.0.0.1:${BROKER_PORTS[id-1]})"
    fi
  done
  bootstrap
}

main() {
  if [ "${1:-}" = cluster-id ] && [ $# -eq 1 ]; then
    cluster_id
    return
  fi
  if [ "${1:-}" = resolve ] && [ $# -eq 1 ]; then
    check_java
    resolve
    echo "$CACHE/libs"
    return
  fi
  [ $# -ge 2 ] || usage
  local cmd=$1
  DIR=$2
  shift 2
  case "$cmd" in
    up) [ $# -le 1 ] || usage ;;
    kill | start) [ $# -eq 1 ] || usage ;;
    down | status) [ $# -eq 0 ] || usage ;;
    *) usage ;;
  esac
  [ "$cmd" = up ] || [ -d "$DIR" ] || die "no directory $DIR"
  mkdir -p "$DIR"
  # Absolute: the path goes into the configs and is how a node is recognised.
  DIR=$(cd "$DIR" && pwd -P)
  "cmd_$cmd" "$@"
}

main "$@"
