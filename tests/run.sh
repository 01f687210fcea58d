#!/usr/bin/env bash
# Run every test suite (unit, then end-to-end) in an ASan+UBSan build in
# ./build-asan. This is the README's test command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=build-asan
if [ -f "$dir/build.ninja" ]; then
  meson setup --reconfigure "$dir" >/dev/null
else
  meson setup "$dir" -Db_sanitize=address,undefined -Db_lundef=false >/dev/null
fi
meson compile -C "$dir"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
meson test -C "$dir" --print-errorlogs "$@"
# meson's summary counts suites; print the plain closing line too.
python3 - "$dir/meson-logs/testlog.json" <<'PY'
import json, sys
passed = failed = skipped = 0
for line in open(sys.argv[1]):
    r = json.loads(line)["result"]
    if r == "OK":
        passed += 1
    elif r == "SKIP":
        skipped += 1
    else:
        failed += 1
print(f"{passed} passed, {failed} failed, {skipped} skipped")
sys.exit(1 if failed else 0)
PY
