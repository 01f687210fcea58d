# lib.sh - shared helpers of the end-to-end tests (sourced).
# Exit 77 (skip) only when a required binary is missing; anything else that
# goes wrong is a failure.
set -euo pipefail

FIDELIO=${FIDELIO:?set by meson: path of the fidelio binary}
SOURCE_DIR=${SOURCE_DIR:?set by meson: source tree}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fidelio-e2e.XXXXXX")
# `fidelio run` serves HTTP on 127.0.0.1:9464 by default: tests running several
# instances (or beside other work on this machine) turn it off unless they
# choose a free port themselves (--set http.port=N wins over the environment).
export FIDELIO_HTTP_PORT=${FIDELIO_HTTP_PORT:-0}
PIDS=()

# The broker the pipeline tests run against: "mock" (`fidelio dev-kafka`, the
# default) or "kafka" (a real Apache Kafka from tests/kafka/broker.sh; meson's
# suite 'kafka' runs the same scripts with it).
BROKER=${E2E_BROKER:-mock}
KAFKA_DIR=""

cleanup() {
    [ -n "$KAFKA_DIR" ] && kafka_stop "$KAFKA_DIR"
    # TERM then CONT: a process a test froze with SIGSTOP sees the TERM only
    # once thawed (else the wait below never returns and the suite hangs).
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; kill -CONT "$p" 2>/dev/null || true; done
    # Whatever has not stopped after 30 s is killed: cleanup never hangs.
    # (its output goes to /dev/null: a leftover sleep must not hold the test's
    # stdout open, or the runner waits for it)
    ( sleep 30; for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done ) >/dev/null 2>&1 </dev/null &
    local killer=$!
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    kill "$killer" 2>/dev/null || true
    wait "$killer" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    for f in "$WORK"/*.log "$WORK"/redis/redis.log "$WORK"/kafka/node*/broker.log; do
        [ -f "$f" ] && { echo "--- last lines of $(basename "$f")" >&2; tail -5 "$f" >&2; }
    done
    exit 1
}
PASSED=0
pass() { PASSED=$((PASSED + 1)); echo "ok - $*"; }
# done_ok: the closing line every runner understands.
done_ok() { echo "$PASSED passed, 0 failed"; }

require() {
    for b in "$@"; do
        command -v "$b" >/dev/null 2>&1 || { echo "SKIP: $b not installed"; exit 77; }
    done
}

# start_dev_kafka [ARGS...]: start `fidelio dev-kafka` and set BOOTSTRAP and DEVKAFKA_PID.
start_dev_kafka() {
    "$FIDELIO" dev-kafka --bootstrap-file "$WORK/bootstrap" "$@" >"$WORK/dev-kafka.out" 2>"$WORK/dev-kafka.err" &
    DEVKAFKA_PID=$!
    PIDS+=("$DEVKAFKA_PID")
    for _ in $(seq 100); do
        [ -s "$WORK/bootstrap" ] && break
        kill -0 "$DEVKAFKA_PID" 2>/dev/null || fail "dev-kafka exited: $(cat "$WORK/dev-kafka.err")"
        sleep 0.1
    done
    [ -s "$WORK/bootstrap" ] || fail "dev-kafka wrote no bootstrap file"
    BOOTSTRAP=$(cat "$WORK/bootstrap")
}

# start_kafka [--partitions N] [--nodes N] [broker.sh start options...]: a real
# Apache Kafka in $WORK/kafka with Fidelio's five topics created (N partitions
# each, default 1; replication = nodes, at most 3); sets BOOTSTRAP, KAFKA_DIR.
start_kafka() {
    local parts=1 opts=()
    while [ $# -gt 0 ]; do
        case $1 in
            --partitions) parts=$2; shift 2 ;;
            *) opts+=("$1"); shift ;;
        esac
    done
    require java kcat python3
    # shellcheck source=kafka/broker.sh
    source "$SOURCE_DIR/tests/kafka/broker.sh"
    KAFKA_DIR="$WORK/kafka"
    kafka_start "$KAFKA_DIR" "${opts[@]}" >/dev/null || fail "the Kafka broker did not start"
    BOOTSTRAP=$(cat "$KAFKA_DIR/bootstrap")
    if [ "$(cat "$KAFKA_DIR/protocol")" != PLAINTEXT ]; then
        # every kcat and fidelio command of the test acts as the admin unless it
        # says otherwise (the command line wins over the environment)
        export KCAT_CONFIG="$KAFKA_DIR/kcat.conf"
        export FIDELIO_KAFKA_SECURITY_PROTOCOL
        FIDELIO_KAFKA_SECURITY_PROTOCOL=$(cat "$KAFKA_DIR/protocol")
        if [ "${FIDELIO_KAFKA_SECURITY_PROTOCOL#SASL}" != "$FIDELIO_KAFKA_SECURITY_PROTOCOL" ]; then
            export FIDELIO_KAFKA_SASL_MECHANISMS=PLAIN
            export FIDELIO_KAFKA_SASL_USERNAME=admin FIDELIO_KAFKA_SASL_PASSWORD=admin-secret
        fi
        [ -f "$KAFKA_DIR/tls/ca.pem" ] && export FIDELIO_KAFKA_SSL_CA_LOCATION="$KAFKA_DIR/tls/ca.pem"
    fi
    kafka_topics "$KAFKA_DIR" touchpoints:"$parts" fidelio-credits:"$parts" rewards:"$parts" \
        stage-changes:"$parts" touchpoints-dlq:"$parts" || fail "could not create the topics"
}

# start_broker [--partitions N] [--nodes N]: the broker of this run ($BROKER):
# the mock (topics auto-created with N partitions) or a real Kafka (topics created).
start_broker() {
    if [ "$BROKER" = kafka ]; then
        start_kafka "$@"
        return
    fi
    local args=()
    while [ $# -gt 0 ]; do
        case $1 in
            --nodes) args+=(--brokers "$2"); shift 2 ;;
            *) args+=("$1"); shift ;;
        esac
    done
    start_dev_kafka "${args[@]}"
}

# normalise FILE: JSON lines -> sorted canonical lines (epoch-ms times, attributes present).
normalise() {
    python3 - "$1" <<'PY'
import json, sys
from datetime import datetime
out = []
for line in open(sys.argv[1]):
    if not line.strip():
        continue
    e = json.loads(line)
    t = e.get("occurred_at")
    if isinstance(t, str):
        e["occurred_at"] = int(datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp() * 1000)
    e.setdefault("attributes", {})
    out.append(json.dumps(e, sort_keys=True))
for l in sorted(out):
    print(l)
PY
}

# acl_line ROLE USER PASSWORD "PREFIX...": an ACL file line for USER with the
# rules of ROLE in deploy/redis-acl.conf, its key pattern ~<prefix>* given
# once per prefix (a test that also runs a what-if namespace grants both).
acl_line() {
    local rules keys="" p
    rules=$(sed -n "s/^$1: //p" "$SOURCE_DIR/deploy/redis-acl.conf")
    [ -n "$rules" ] || fail "deploy/redis-acl.conf has no role $1"
    for p in $4; do keys="$keys ~$p*"; done
    echo "user $2 on >$3 ${rules//\~<prefix>\*/${keys# }}"
}

# start_redis [aof]: a private redis-server on a unix socket under $WORK/redis;
# sets REDIS_URL, REDIS_URL_RO, REDIS_SOCK, REDIS_PID and REDIS_ARGS (to
# restart the same server). With "aof": appendonly, fsync on every write.
# Fidelio connects as the least-privilege users of deploy/redis-acl.conf for
# the key prefixes in $REDIS_PREFIXES (default "fidelio:"; an ACL file, so a
# restart keeps them):
# REDIS_URL is the "run" user, REDIS_URL_RO the "tools" user (profile,
# ledger). The default user stays open on the socket for the test's own
# redis-cli pokes.
start_redis() {
    mkdir -p "$WORK/redis"
    local persist=(--save "" --appendonly no)
    [ "${1:-}" = aof ] && persist=(--save "" --appendonly yes --appendfsync always)
    REDIS_SOCK="$WORK/redis/redis.sock"
    local prefixes=${REDIS_PREFIXES:-fidelio:}
    { acl_line run fidelio e2e-run-pw "$prefixes"; acl_line tools fidelio-ro e2e-tools-pw "$prefixes"; } >"$WORK/redis/users.acl"
    REDIS_ARGS=(--port 0 --unixsocket "$REDIS_SOCK" --dir "$WORK/redis" "${persist[@]}"
        --aclfile "$WORK/redis/users.acl" --logfile "$WORK/redis/redis.log")
    redis-server "${REDIS_ARGS[@]}" &
    REDIS_PID=$!
    PIDS+=("$REDIS_PID")
    REDIS_URL="unix://fidelio:e2e-run-pw@$REDIS_SOCK"
    REDIS_URL_RO="unix://fidelio-ro:e2e-tools-pw@$REDIS_SOCK"
    for _ in $(seq 100); do
        redis-cli -s "$REDIS_SOCK" ping >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    fail "redis-server did not start: $(tail -5 "$WORK/redis/redis.log")"
}

# Options every fidelio command of a pipeline test gets (consumer settings
# the mock cluster needs to rebalance quickly; see DESIGN.md).
fid_opts() {
    echo "-b $BOOTSTRAP --set redis.url=$REDIS_URL --set kafka.session.timeout.ms=6000 --set kafka.heartbeat.interval.ms=500 --set log.level=info"
}

# fid_ro_opts: fid_opts for the read-only tools (profile, ledger, report,
# dashboard, check --namespace): Redis as the "tools" ACL user.
fid_ro_opts() { echo "$(fid_opts) --set redis.url=$REDIS_URL_RO"; }

# count TOPIC: messages in a topic.
count() { kcat -b "$BOOTSTRAP" -C -t "$1" -e -q -f 'x\n' 2>/dev/null | wc -l; }

# output_ids: every distinct reward and stage-change id on the output topics.
output_ids() {
    { "$FIDELIO" consume -b "$BOOTSTRAP" -t rewards -e; "$FIDELIO" consume -b "$BOOTSTRAP" -t stage-changes -e; } 2>/dev/null \
        | grep -o '"\(reward\|change\)_id":"[^"]*"' | sort -u
}

# ids_of FILE: distinct output ids in a JSON-lines file of outputs.
ids_of() { grep -o '"\(reward\|change\)_id":"[^"]*"' "$1" | sort -u; }

# wait_until SECONDS DESCRIPTION COMMAND...: poll until COMMAND succeeds.
wait_until() {
    local limit=$1 what=$2
    shift 2
    local end=$((SECONDS + limit))
    until "$@"; do
        [ "$SECONDS" -lt "$end" ] || fail "timed out after ${limit}s waiting for $what"
        sleep 0.25
    done
}

# at_least N TOPIC: the topic holds at least N messages.
at_least() { [ "$(count "$2")" -ge "$1" ]; }

# start_run NAME [ARGS...]: `fidelio run` in the background, log in $WORK/NAME.log; sets RUN_PID.
start_run() {
    local name=$1
    shift
    # shellcheck disable=SC2046
    "$FIDELIO" run $(fid_opts) "$@" >"$WORK/$name.log" 2>&1 &
    RUN_PID=$!
    PIDS+=("$RUN_PID")
}

# stop_run PID LIMIT: SIGTERM and require exit 0 within LIMIT seconds.
stop_run() {
    local pid=$1 limit=$2 t0=$SECONDS
    kill -TERM "$pid"
    local rc=0
    wait "$pid" || rc=$?
    [ "$rc" -eq 0 ] || fail "fidelio run exited $rc on SIGTERM"
    [ $((SECONDS - t0)) -le "$limit" ] || fail "fidelio run took $((SECONDS - t0))s to stop (limit ${limit}s)"
}

# same_profiles EXPECTED.jsonl: Redis profiles of the customers in EXPECTED equal it.
same_profiles() {
    # shellcheck disable=SC2046
    "$FIDELIO" profile $(fid_ro_opts) --all 2>/dev/null >"$WORK/profiles.now" || true
    python3 - "$1" "$WORK/profiles.now" <<'PY'
import json, sys
want = {json.loads(l)["customer_id"]: l.strip() for l in open(sys.argv[1])}
got = {json.loads(l)["customer_id"]: l.strip() for l in open(sys.argv[2])}
bad = [c for c in want if got.get(c) != want[c]]
extra = [c for c in got if c not in want]
if bad or extra:
    print(f"{len(bad)} profiles differ, {len(extra)} unexpected", file=sys.stderr)
    for c in bad[:3]:
        print(f"  {c}\n   want {want[c]}\n   got  {got.get(c)}", file=sys.stderr)
    sys.exit(1)
PY
}

# end_offsets TOPIC...: the sum of the topics' partition end offsets, asked of
# the broker without reading a message: the number of messages written (with
# transactions, commit/abort markers count too). Fast enough to poll.
end_offsets() {
    local t p parts=() n out
    for _ in $(seq 120); do   # a leader may be moving (broker restarts): ask again
        parts=()
        for t in "$@"; do
            n=$(kcat -b "$BOOTSTRAP" -L -t "$t" 2>/dev/null | grep -c '^    partition ') || true
            for p in $(seq 0 $((n - 1))); do parts+=(-t "$t:$p:-1"); done
        done
        if [ ${#parts[@]} -gt 0 ] && out=$(kcat -b "$BOOTSTRAP" -Q "${parts[@]}" 2>/dev/null) \
            && [ "$(grep -c ' offset ' <<<"$out")" -eq $((${#parts[@]} / 2)) ]; then
            awk '{s += $NF} END {print s + 0}' <<<"$out"
            return 0
        fi
        sleep 0.5
    done
    fail "no end offsets of $* from the broker for 60 s"
}

# outputs_total: messages written to rewards + stage-changes; outputs_at_least N.
outputs_total() { end_offsets rewards stage-changes; }
outputs_at_least() { [ "$(outputs_total)" -ge "$1" ]; }

# prepare_stream N CUSTOMERS: generate N events (gen_events.py), compute the
# expected profiles and output ids with `fidelio simulate`, produce the events.
# Sets EXPECTED_IDS (count) and files $WORK/expected.{profiles,ids}.
prepare_stream() {
    python3 "$SOURCE_DIR/tests/gen_events.py" "$1" "$2" >"$WORK/events.jsonl"
    "$FIDELIO" simulate "$WORK/events.jsonl" --profiles "$WORK/expected.profiles" >"$WORK/expected.outputs" 2>/dev/null \
        || fail "simulate failed"
    ids_of "$WORK/expected.outputs" >"$WORK/expected.ids"
    EXPECTED_IDS=$(wc -l <"$WORK/expected.ids")
    # shellcheck disable=SC2046
    "$FIDELIO" produce -q $(fid_opts) -t touchpoints "$WORK/events.jsonl" || fail "produce failed"
}

# check_final: every expected output id is on the topics and no other; the
# profiles equal simulate's (a profile applied twice would differ).
check_final() {
    output_ids >"$WORK/ids.now"
    local missing extra
    missing=$(comm -23 "$WORK/expected.ids" "$WORK/ids.now" | wc -l)
    extra=$(comm -13 "$WORK/expected.ids" "$WORK/ids.now" | wc -l)
    [ "$missing" -eq 0 ] && [ "$extra" -eq 0 ] || fail "$missing expected output ids missing, $extra unexpected"
    same_profiles "$WORK/expected.profiles" || fail "profiles differ from simulate's"
}

# mid_stream WHAT: fail unless outputs are still missing (WHAT happened before
# the stream was processed): a fault injected after the end would test nothing.
mid_stream() {
    local n
    n=$(outputs_total)
    [ "$n" -lt "$EXPECTED_IDS" ] || fail "$1 came after the whole stream was processed ($n outputs)"
}

# unique_outputs_at_least N: N distinct output ids are on the topics.
unique_outputs_at_least() { [ "$(output_ids | wc -l)" -ge "$1" ]; }
