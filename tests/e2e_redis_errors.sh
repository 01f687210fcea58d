#!/usr/bin/env bash
# Redis failure modes under the least-privilege users of deploy/redis-acl.conf:
# a permanent error (NOPERM, OOM, READONLY) stops `fidelio run` with exit 1 and
# a message naming the command and Redis' error, instead of a reconnect loop;
# a transient one (BUSY: a long script) only pauses it. The read-only tools
# (profile, ledger) write nothing, not even the layout marker, and work on a
# real replica started with --replicaof.
source "$(dirname "$0")/lib.sh"
require kcat redis-server redis-cli python3

start_dev_kafka --partitions 2
start_redis
rcli() { redis-cli -s "$REDIS_SOCK" "$@"; }
# shellcheck disable=SC2046
produce_seeds() { sed -n "$1p" "$SOURCE_DIR/seeds/demo.jsonl" | "$FIDELIO" produce -q $(fid_opts) -t touchpoints || fail "produce"; }
profiles_stored() { [ "$(rcli --scan --pattern 'fidelio:{*}:p' | wc -l)" -ge "$1" ]; }

# expect_exit1 NAME PATTERN...: the run started as NAME exits 1 within 60 s,
# its log naming each PATTERN, and it did not loop (a handful of lines).
expect_exit1() {
    local name=$1 t0=$SECONDS rc=0
    shift
    wait_until 60 "fidelio run ($name) to exit" eval '! kill -0 $RUN_PID 2>/dev/null'
    wait "$RUN_PID" || rc=$?
    [ "$rc" -eq 1 ] || fail "$name: fidelio run exited $rc, want 1: $(tail -3 "$WORK/$name.log")"
    for p in "$@"; do
        grep -q -- "$p" "$WORK/$name.log" || fail "$name: the log does not name '$p': $(tail -3 "$WORK/$name.log")"
    done
    local lines
    lines=$(wc -l <"$WORK/$name.log")
    [ "$lines" -le 40 ] || fail "$name: $lines log lines: it looped before stopping"
    echo "    $(grep -m1 'error' "$WORK/$name.log" | cut -c1-220) ($((SECONDS - t0)) s)"
}

produce_seeds 1,40
# 1. NOPERM: a user with the run rules minus RPUSH (the apply's transaction appends the ledger)
rules=$(sed -n 's/^run: //p' "$SOURCE_DIR/deploy/redis-acl.conf")
# shellcheck disable=SC2086
rcli ACL SETUSER noeval reset on '>noeval-pw' ${rules//<prefix>/fidelio:} -rpush >/dev/null
start_run noperm --until-idle --set "redis.url=unix://noeval:noeval-pw@$REDIS_SOCK" --set consumer.group=g-noperm
expect_exit1 noperm "NOPERM" "MULTI/EXEC (apply)" "nothing was written" "retrying cannot help"
pass "NOPERM at apply stops fidelio run with exit 1 naming the command and the error"

# 2. OOM: maxmemory reached while running (noeviction, the default)
start_run oom --set consumer.group=g-oom
wait_until 60 "the first profiles" profiles_stored 5
rcli CONFIG SET maxmemory 1 >/dev/null
produce_seeds 41,60
expect_exit1 oom "OOM" "MULTI/EXEC (apply)" "nothing was written"
rcli CONFIG SET maxmemory 0 >/dev/null
pass "OOM at apply stops fidelio run with exit 1"

# 3. READONLY: the server turned into a replica while running
start_run readonly --set consumer.group=g-oom
wait_until 60 "the batch the OOM run left" profiles_stored 8
sleep 1
rcli REPLICAOF 127.0.0.1 1 >/dev/null
produce_seeds 61,80
expect_exit1 readonly "READONLY"
rcli REPLICAOF NO ONE >/dev/null
pass "READONLY at apply stops fidelio run with exit 1"

# 4. BUSY is transient: a 4-second script pauses the pipeline, which resumes
rcli CONFIG SET busy-reply-threshold 200 >/dev/null
start_run busy --set consumer.group=g-oom
wait_until 60 "the READONLY run's batch" eval 'grep -q "processed\|batch of\|assigned" "$WORK/busy.log"'
sleep 2
rcli EVAL "local t = redis.call('TIME') while true do local n = redis.call('TIME') if n[1] - t[1] >= 4 then break end end return 1" 0 >/dev/null &
PIDS+=("$!")
sleep 0.5
produce_seeds 81,100
wait_until 60 "the BUSY pause" grep -q "redis unavailable.*BUSY" "$WORK/busy.log"
wait_until 60 "the resume" grep -q "redis is back" "$WORK/busy.log"
kill -0 "$RUN_PID" 2>/dev/null || fail "fidelio run exited on BUSY: $(tail -3 "$WORK/busy.log")"
stop_run "$RUN_PID" 30
pass "BUSY (a long script) only paused fidelio run: $(grep -o 'redis is back after [0-9.]* s' "$WORK/busy.log")"

# 5. read-only tools write nothing: a fresh namespace stays empty
before=$(rcli DBSIZE)
# shellcheck disable=SC2046
"$FIDELIO" profile $(fid_opts) --set "redis.url=$REDIS_URL_RO" --set redis.key_prefix=fidelio:fresh: --all >"$WORK/fresh.out" 2>&1 \
    || fail "profile --all on an empty namespace: $(cat "$WORK/fresh.out")"
# shellcheck disable=SC2046
"$FIDELIO" ledger $(fid_opts) --set "redis.url=$REDIS_URL_RO" --set redis.key_prefix=fidelio:fresh: cust-0001 >>"$WORK/fresh.out" 2>&1 || true
[ "$(rcli DBSIZE)" -eq "$before" ] || fail "a read-only tool wrote to Redis: $(rcli --scan --pattern 'fidelio:fresh:*')"
[ "$(rcli EXISTS fidelio:fresh:layout)" -eq 0 ] || fail "profile wrote the layout marker"
pass "profile and ledger wrote nothing to an empty namespace (not even the layout marker)"

# 6. ... and work on a real replica (--replicaof), as the tools user
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
rcli CONFIG SET bind 127.0.0.1 >/dev/null
rcli CONFIG SET port "$port" >/dev/null
mkdir -p "$WORK/replica"
cp "$WORK/redis/users.acl" "$WORK/replica/users.acl"
redis-server --port 0 --unixsocket "$WORK/replica/redis.sock" --dir "$WORK/replica" --save "" --appendonly no \
    --aclfile "$WORK/replica/users.acl" --replicaof 127.0.0.1 "$port" --logfile "$WORK/replica/redis.log" &
PIDS+=("$!")
replica_synced() {
    redis-cli -s "$WORK/replica/redis.sock" INFO replication 2>/dev/null | grep -q 'master_link_status:up' &&
        [ "$(redis-cli -s "$WORK/replica/redis.sock" DBSIZE)" -eq "$(rcli DBSIZE)" ]
}
wait_until 60 "the replica to sync" replica_synced
REPLICA_URL="unix://fidelio-ro:e2e-tools-pw@$WORK/replica/redis.sock"
# shellcheck disable=SC2046
"$FIDELIO" profile $(fid_opts) --set "redis.url=$REDIS_URL_RO" --all >"$WORK/master.profiles" || fail "profile on the master"
# shellcheck disable=SC2046
"$FIDELIO" profile $(fid_opts) --set "redis.url=$REPLICA_URL" --all >"$WORK/replica.profiles" 2>"$WORK/replica.err" \
    || fail "profile on the replica: $(cat "$WORK/replica.err")"
[ -s "$WORK/replica.profiles" ] && cmp -s "$WORK/master.profiles" "$WORK/replica.profiles" \
    || fail "the replica's profiles differ from the master's"
cust=$(head -1 "$WORK/replica.profiles" | python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["customer_id"])')
# shellcheck disable=SC2046
"$FIDELIO" ledger $(fid_opts) --set "redis.url=$REPLICA_URL" "$cust" >"$WORK/replica.ledger" 2>"$WORK/replica.err" \
    || fail "ledger on the replica: $(cat "$WORK/replica.err")"
pass "profile --all ($(wc -l <"$WORK/replica.profiles") customers) and ledger work on a read-only replica"
done_ok
