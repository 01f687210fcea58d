#!/usr/bin/env bash
# broker.sh - a real Apache Kafka (KRaft) on loopback for tests and benchmarks.
#
# The broker is the Maven artifact org.apache.kafka:kafka_2.13 (version in
# tests/kafka/pom.xml) run with Java 17; its jars are copied once by Maven into
# $FIDELIO_KAFKA_CACHE (default ~/.cache/fidelio/kafka-<version>/libs) and
# reused. Each node is a combined broker + controller, storage formatted in the
# given directory, free 127.0.0.1 ports, auto.create.topics.enable=false, a small
# heap, and group settings that make tests quick (no initial rebalance delay).
#
# As a command:
#   broker.sh jars                       fetch the jars if missing; print the libs dir
#   broker.sh start DIR [OPTIONS]        start a cluster in DIR (created); prints the
#                                        bootstrap servers; returns when it is ready
#       --nodes N     N combined nodes (default 1); with 3: topics RF 3, min.insync.replicas=2
#       --sasl        SASL (PLAIN and SCRAM-SHA-256) and ACLs (StandardAuthorizer, no
#                     access without an ACL); super user admin/admin-secret;
#                     DIR/admin.properties for the Java tools
#       --tls         TLS on the client listener (SASL_SSL with --sasl, else SSL); a
#                     self-signed certificate for 127.0.0.1, its PEM in DIR/tls/ca.pem
#       --user NAME:PASSWORD   an extra user for PLAIN and SCRAM (repeatable; with --sasl)
#   Note: librdkafka < 2.6.1 (Debian 12 has 2.0.2) cannot log in with SCRAM to Kafka
#   4.x (it repeats the client nonce; Kafka 4 checks it strictly): use PLAIN over TLS.
#   broker.sh topics DIR NAME[:PARTITIONS[:KEY=VALUE,...]] ...   create topics (replication =
#                                        nodes, max 3), with topic configs if given
#   broker.sh acl DIR ARGS...            org.apache.kafka.tools.AclCommand as admin (--sasl)
#   broker.sh stop DIR                   stop every node (SIGTERM, then SIGKILL after 30 s)
#   broker.sh stop-node DIR N / start-node DIR N    stop / restart node N (1-based)
#   broker.sh kill-node DIR N            SIGKILL node N (a crash: no controlled shutdown)
#   broker.sh tool DIR CLASS ARGS...     any Kafka tool class with --bootstrap-server
#                                        and (with --sasl) the admin client config added
#
# Sourced (`source tests/kafka/broker.sh`): the same as functions kafka_jars,
# kafka_start, kafka_topics, kafka_acl, kafka_stop, kafka_stop_node,
# kafka_start_node, kafka_kill_node, kafka_wait_ready DIR [SECONDS], kafka_tool;
# kafka_start sets KAFKA_BOOTSTRAP.
#
# Files in DIR: bootstrap (host:port,...), nodeN/{server.properties,data,pid,broker.log},
# nodes (count), protocol (security.protocol of the client listener),
# admin.properties (Java client settings of the admin), kcat.conf (the same for
# librdkafka clients: kcat -F DIR/kcat.conf), tls/ca.pem (with --tls).
# Environment: FIDELIO_KAFKA_CACHE (jars dir), KAFKA_HEAP (default -Xmx384m -Xms128m),
# KAFKA_JIT (the broker's JIT flags; default -XX:TieredStopAtLevel=1: C1 only, a quick
# start for the tests; bench/run.sh sets it empty: the full JIT of a production broker).
# Exit codes: 0 ok, 1 failure (the broker log's tail is printed), 2 usage.

KAFKA_TOOLS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$KAFKA_TOOLS_DIR/pom.xml")
KAFKA_LIBS=${FIDELIO_KAFKA_CACHE:-$HOME/.cache/fidelio/kafka-$KAFKA_VERSION/libs}
KAFKA_HEAP=${KAFKA_HEAP:--Xmx384m -Xms128m}
KAFKA_JIT=${KAFKA_JIT--XX:TieredStopAtLevel=1}

_kafka_err() { echo "broker.sh: $*" >&2; }

# kafka_jars: copy the broker's jars into the cache unless they are there; print the dir.
kafka_jars() {
    if [ ! -f "$KAFKA_LIBS/.complete" ]; then
        command -v mvn >/dev/null || { _kafka_err "mvn not installed (apt-get install maven)"; return 1; }
        rm -rf "$KAFKA_LIBS"
        mvn -q -B -f "$KAFKA_TOOLS_DIR/pom.xml" dependency:copy-dependencies \
            -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIBS" >"${TMPDIR:-/tmp}/fidelio-kafka-mvn.log" 2>&1 \
            || { tail -20 "${TMPDIR:-/tmp}/fidelio-kafka-mvn.log" >&2; _kafka_err "mvn could not fetch the Kafka $KAFKA_VERSION jars"; return 1; }
        touch "$KAFKA_LIBS/.complete"
    fi
    echo "$KAFKA_LIBS"
}

# _kafka_java CLASS ARGS...: a Kafka class in the foreground on the cached class path.
_kafka_java() {
    java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto \
        -Dlog4j2.configurationFile="$KAFKA_TOOLS_DIR/log4j2-tools.properties" \
        -cp "$KAFKA_LIBS/*" "$@"
}

# _kafka_free_port: a TCP port free on 127.0.0.1 now.
_kafka_free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# _kafka_uuid: a random Kafka cluster id (16 bytes, URL-safe base64, no padding).
_kafka_uuid() {
    python3 -c 'import base64,os; print(base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("="))'
}

# _kafka_write_config DIR N NODES SASL TLS USERS: nodeN/server.properties.
# USERS: "name:password ..." (PLAIN users besides admin).
_kafka_write_config() {
    local dir=$1 n=$2 nodes=$3 sasl=$4 tls=$5 users=$6
    local node="$dir/node$n"
    local port cport voters="" i u rf=$(( nodes < 3 ? nodes : 3 ))
    port=$(cat "$dir/node$n/port")
    cport=$(cat "$dir/node$n/cport")
    for i in $(seq "$nodes"); do
        voters+="${voters:+,}$i@127.0.0.1:$(cat "$dir/node$i/cport")"
    done
    cat >"$node/server.properties" <<EOF
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$voters
listeners=CLIENT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=CLIENT://127.0.0.1:$port
listener.security.protocol.map=CLIENT:$(cat "$dir/protocol"),CONTROLLER:PLAINTEXT
inter.broker.listener.name=CLIENT
controller.listener.names=CONTROLLER
log.dirs=$node/data
auto.create.topics.enable=false
num.partitions=1
default.replication.factor=$rf
min.insync.replicas=$(( rf > 1 ? 2 : 1 ))
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$(( rf > 1 ? 2 : 1 ))
transaction.state.log.num.partitions=4
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=2000
transaction.abort.timed.out.transaction.cleanup.interval.ms=2000
transaction.remove.expired.transaction.cleanup.interval.ms=10000
log.segment.bytes=67108864
log.retention.check.interval.ms=600000
num.network.threads=2
num.io.threads=2
background.threads=2
num.replica.fetchers=1
unclean.leader.election.enable=false
replica.lag.time.max.ms=5000
broker.heartbeat.interval.ms=1000
broker.session.timeout.ms=4000
controlled.shutdown.enable=true
EOF
    if [ "$sasl" = 1 ]; then
        local plain="org.apache.kafka.common.security.plain.PlainLoginModule required username=\"admin\" password=\"admin-secret\" user_admin=\"admin-secret\""
        for u in $users; do plain+=" user_${u%%:*}=\"${u#*:}\""; done
        cat >>"$node/server.properties" <<EOF
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256
sasl.mechanism.inter.broker.protocol=PLAIN
listener.name.client.plain.sasl.jaas.config=$plain;
listener.name.client.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:admin;User:ANONYMOUS
allow.everyone.if.no.acl.found=false
EOF
    fi
    if [ "$tls" = 1 ]; then
        cat >>"$node/server.properties" <<EOF
ssl.keystore.type=PKCS12
ssl.keystore.location=$dir/tls/broker.p12
ssl.keystore.password=changeit
ssl.key.password=changeit
ssl.truststore.type=PEM
ssl.truststore.location=$dir/tls/ca.pem
ssl.endpoint.identification.algorithm=
EOF
    fi
}

# kafka_start_node DIR N: start node N of the cluster in DIR (formatted already).
kafka_start_node() {
    local dir=$1 n=$2 node="$1/node$2"
    # shellcheck disable=SC2086
    java $KAFKA_HEAP -XX:+UseSerialGC $KAFKA_JIT -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$KAFKA_TOOLS_DIR/log4j2-broker.properties" \
        -Dkafka.logs.dir="$node" \
        -cp "$KAFKA_LIBS/*" kafka.Kafka "$node/server.properties" \
        >>"$node/broker.log" 2>&1 </dev/null &
    echo $! >"$node/pid"
    disown $! 2>/dev/null || true  # no "Killed" notice from the shell when a test kills it
}

# kafka_stop_node DIR N: SIGTERM node N, SIGKILL after 30 s; waits until it is gone.
kafka_stop_node() {
    local node="$1/node$2" pid
    [ -f "$node/pid" ] || return 0
    pid=$(cat "$node/pid")
    kill -TERM "$pid" 2>/dev/null || { rm -f "$node/pid"; return 0; }
    for _ in $(seq 300); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    rm -f "$node/pid"
}

# kafka_kill_node DIR N: SIGKILL node N and wait until it is gone.
kafka_kill_node() {
    local node="$1/node$2" pid
    [ -f "$node/pid" ] || return 0
    pid=$(cat "$node/pid")
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    rm -f "$node/pid"
}

# kafka_stop DIR: stop every node of the cluster in DIR.
kafka_stop() {
    local dir=$1 n
    [ -f "$dir/nodes" ] || return 0
    for n in $(seq "$(cat "$dir/nodes")"); do
        [ -f "$dir/node$n/pid" ] && kill -TERM "$(cat "$dir/node$n/pid")" 2>/dev/null
    done
    for n in $(seq "$(cat "$dir/nodes")"); do kafka_stop_node "$dir" "$n"; done
}

# _kafka_client_args DIR: --command-config for the tools (security settings of the admin).
_kafka_client_args() {
    echo "--command-config $1/admin.properties"
}

# kafka_wait_ready DIR [SECONDS]: every running node answers metadata with all
# brokers registered (kcat -L through the node's own port).
kafka_wait_ready() {
    local dir=$1 limit=${2:-120} nodes n end
    nodes=$(cat "$dir/nodes")
    end=$((SECONDS + limit))
    for n in $(seq "$nodes"); do
        [ -f "$dir/node$n/pid" ] || continue
        until [ "$(kcat -b "127.0.0.1:$(cat "$dir/node$n/port")" -F "$dir/kcat.conf" -L -m 5 2>/dev/null \
                | grep -c '^  broker [0-9]* at')" -ge "$(ls "$dir"/node*/pid | wc -l)" ]; do
            if ! kill -0 "$(cat "$dir/node$n/pid")" 2>/dev/null; then
                _kafka_err "node $n exited; last lines of $dir/node$n/broker.log:"
                tail -20 "$dir/node$n/broker.log" >&2
                return 1
            fi
            if [ "$SECONDS" -ge "$end" ]; then
                _kafka_err "node $n not ready after ${limit}s; last lines of its log:"
                tail -20 "$dir/node$n/broker.log" >&2
                return 1
            fi
            sleep 0.3
        done
    done
}

# _kafka_tls DIR: a self-signed key pair for 127.0.0.1/localhost (DIR/tls).
_kafka_tls() {
    local dir=$1
    mkdir -p "$dir/tls"
    keytool -genkeypair -alias broker -keyalg RSA -keysize 2048 -validity 30 \
        -dname CN=localhost -ext SAN=IP:127.0.0.1,DNS:localhost \
        -keystore "$dir/tls/broker.p12" -storetype PKCS12 -storepass changeit -keypass changeit \
        >"$dir/tls/keytool.log" 2>&1 \
        && keytool -exportcert -rfc -alias broker -keystore "$dir/tls/broker.p12" -storepass changeit \
        >"$dir/tls/ca.pem" 2>>"$dir/tls/keytool.log" \
        || { _kafka_err "keytool failed: $(tail -3 "$dir/tls/keytool.log")"; return 1; }
}

# _kafka_client_files DIR SASL TLS: admin.properties (Java) and kcat.conf (librdkafka).
_kafka_client_files() {
    local dir=$1 sasl=$2 tls=$3
    local proto
    proto=$(cat "$dir/protocol")
    {
        echo "security.protocol=$proto"
        [ "$sasl" = 1 ] && echo "sasl.mechanism=PLAIN" && echo 'sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="admin-secret";'
        [ "$tls" = 1 ] && echo "ssl.truststore.type=PEM" && echo "ssl.truststore.location=$dir/tls/ca.pem"
    } >"$dir/admin.properties"
    {
        echo "security.protocol=${proto,,}"
        [ "$sasl" = 1 ] && printf '%s\n' sasl.mechanism=PLAIN sasl.username=admin sasl.password=admin-secret
        [ "$tls" = 1 ] && echo "ssl.ca.location=$dir/tls/ca.pem"
    } >"$dir/kcat.conf"
    return 0
}

# kafka_start DIR [--nodes N] [--sasl] [--tls] [--user NAME:PASSWORD]...: format and
# start a cluster; sets KAFKA_BOOTSTRAP and prints it.
kafka_start() {
    local dir=$1 nodes=1 sasl=0 tls=0 users=() n
    shift || { _kafka_err "usage: start DIR [--nodes N] [--sasl] [--tls] [--user NAME:PASSWORD]"; return 2; }
    while [ $# -gt 0 ]; do
        case $1 in
            --nodes) nodes=$2; shift 2 ;;
            --sasl) sasl=1; shift ;;
            --tls) tls=1; shift ;;
            --user) users+=("$2"); shift 2 ;;
            *) _kafka_err "unknown option $1"; return 2 ;;
        esac
    done
    command -v java >/dev/null || { _kafka_err "java not installed (apt-get install default-jdk-headless)"; return 1; }
    kafka_jars >/dev/null || return 1
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    echo "$nodes" >"$dir/nodes"
    local proto=PLAINTEXT
    [ "$sasl" = 1 ] && proto=SASL_PLAINTEXT
    [ "$tls" = 1 ] && proto=SSL
    [ "$sasl$tls" = 11 ] && proto=SASL_SSL
    echo "$proto" >"$dir/protocol"
    [ "$tls" = 1 ] && { _kafka_tls "$dir" || return 1; }
    _kafka_client_files "$dir" "$sasl" "$tls"
    for n in $(seq "$nodes"); do
        mkdir -p "$dir/node$n"
        _kafka_free_port >"$dir/node$n/port"
        _kafka_free_port >"$dir/node$n/cport"
    done
    local cluster_id scram=() u
    cluster_id=$(_kafka_uuid)
    if [ "$sasl" = 1 ]; then
        scram=(--add-scram 'SCRAM-SHA-256=[name="admin",password="admin-secret"]')
        for u in "${users[@]}"; do
            scram+=(--add-scram "SCRAM-SHA-256=[name=\"${u%%:*}\",password=\"${u#*:}\"]")
        done
    fi
    for n in $(seq "$nodes"); do
        _kafka_write_config "$dir" "$n" "$nodes" "$sasl" "$tls" "${users[*]}"
        _kafka_java kafka.tools.StorageTool format --cluster-id="$cluster_id" -c "$dir/node$n/server.properties" \
            "${scram[@]}" >"$dir/node$n/format.log" 2>&1 \
            || { _kafka_err "format failed: $(tail -5 "$dir/node$n/format.log")"; return 1; }
    done
    for n in $(seq "$nodes"); do kafka_start_node "$dir" "$n"; done
    KAFKA_BOOTSTRAP=$(for n in $(seq "$nodes"); do echo "127.0.0.1:$(cat "$dir/node$n/port")"; done | paste -sd, -)
    echo "$KAFKA_BOOTSTRAP" >"$dir/bootstrap"
    kafka_wait_ready "$dir" 180 || { kafka_stop "$dir"; return 1; }
    echo "$KAFKA_BOOTSTRAP"
}

# kafka_tool DIR CLASS ARGS...: a Kafka tool class against the cluster in DIR.
kafka_tool() {
    local dir=$1 cls=$2
    shift 2
    # shellcheck disable=SC2046
    _kafka_java "$cls" --bootstrap-server "$(cat "$dir/bootstrap")" $(_kafka_client_args "$dir") "$@"
}

# kafka_topics DIR NAME[:PARTITIONS]...: create topics (one JVM for all of them).
kafka_topics() {
    local dir=$1 nodes rf
    shift
    nodes=$(cat "$dir/nodes")
    rf=$(( nodes < 3 ? nodes : 3 ))
    # shellcheck disable=SC2046
    _kafka_java -Dfidelio.rf="$rf" "$KAFKA_TOOLS_DIR/CreateTopics.java" "$(cat "$dir/bootstrap")" \
        "${dir}/admin.properties" "$@"
}

# kafka_acl DIR ARGS...: AclCommand as the admin (needs --sasl).
kafka_acl() {
    local dir=$1
    shift
    kafka_tool "$dir" org.apache.kafka.tools.AclCommand "$@"
}

# Run as a command (not sourced).
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -uo pipefail
    cmd=${1:-}
    shift || true
    case $cmd in
        jars) kafka_jars ;;
        start) kafka_start "$@" ;;
        stop) [ $# -eq 1 ] || { _kafka_err "usage: stop DIR"; exit 2; }; kafka_stop "$1" ;;
        stop-node) kafka_stop_node "$1" "$2" ;;
        start-node) kafka_start_node "$1" "$2" && kafka_wait_ready "$1" 180 ;;
        kill-node) kafka_kill_node "$1" "$2" ;;
        topics) kafka_topics "$@" ;;
        acl) kafka_acl "$@" ;;
        tool) kafka_tool "$@" ;;
        *) sed -n '2,/^$/s/^# \{0,1\}//p' "$0" >&2; exit 2 ;;
    esac
fi
