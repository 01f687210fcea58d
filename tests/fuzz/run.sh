#!/usr/bin/env bash
# Fuzz Fidelio's input paths with libFuzzer under ASan + UBSan + LeakSanitizer:
#   avro     one Kafka message: Avro decoder + validation + JSON/Avro re-encoding
#   json     one JSON line: JSON-lines decoder + validation + Avro round trip
#   config   the YAML configuration file (config_load + the printed configuration)
#   program  the rule program (loader + `check` summary + the engine over a fixed stream)
#
#   bash tests/fuzz/run.sh [HARNESS...]          # each for FUZZ_SECONDS (default 60) s
#   FUZZ_SECONDS=3600 bash tests/fuzz/run.sh avro    # a longer local run of one harness
#
# Each run starts from tests/fuzz/corpus/HARNESS (seeds and regression inputs,
# all replayed first) copied to a temporary directory: the source tree is never
# written. Fails on any crash, leak, timeout or sanitizer report; the input that
# did it is kept in build-fuzz/artifacts/ and the command to replay it printed.
# CI runs this through the `fuzz` suite of tests/run.sh. Builds with clang in
# ./build-fuzz; exits 77 (skip) only when clang is not installed.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
command -v clang >/dev/null 2>&1 || { echo "SKIP: clang not installed"; exit 77; }
secs=${FUZZ_SECONDS:-60}
dir=build-fuzz
harnesses=("$@")
[ ${#harnesses[@]} -gt 0 ] || harnesses=(avro json config program)

if [ -f "$dir/build.ninja" ]; then
    meson setup --reconfigure "$dir" >/dev/null
else
    CC=clang meson setup "$dir" -Dfuzzing=true -Dtests=false -Db_sanitize=address,undefined -Db_lundef=false \
        >/dev/null
fi
meson compile -C "$dir" $(printf 'fuzz_%s ' "${harnesses[@]}") >/dev/null

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:allocator_may_return_null=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
work=$(mktemp -d "${TMPDIR:-/tmp}/fidelio-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
failed=0
for h in "${harnesses[@]}"; do
    [ -d "tests/fuzz/corpus/$h" ] || { echo "fuzz: no corpus for '$h'"; exit 2; }
    mkdir -p "$work/$h/corpus" "$dir/artifacts"
    cp -r "tests/fuzz/corpus/$h/." "$work/$h/corpus/"
    seeds=$(ls "$work/$h/corpus" | wc -l)
    rc=0
    "$dir/tests/fuzz/fuzz_$h" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 -artifact_prefix="$root/$dir/artifacts/$h-" "$work/$h/corpus" >"$work/$h/log" 2>&1 || rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$h/log")
    if [ "$rc" -ne 0 ] || grep -qE "runtime error|ERROR: (Address|Leak|UndefinedBehavior)Sanitizer" "$work/$h/log"; then
        failed=1
        echo "FAIL: fuzz_$h (exit $rc after ${runs:-?} runs):"
        grep -E "ERROR|runtime error|SUMMARY|==[0-9]+==|#[0-9]+ 0x|Test unit written" "$work/$h/log" | head -40
        echo "replay: $dir/tests/fuzz/fuzz_$h $dir/artifacts/$h-<file above>"
    else
        echo "ok - fuzz_$h: ${runs:-?} inputs in ${secs} s from $seeds seeds, no crash, leak or sanitizer report"
    fi
done
exit $failed
