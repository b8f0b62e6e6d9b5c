#!/bin/sh
# Run the test suites and add their counts into one closing line,
# "N passed, N failed". usage: run-tests.sh BUILD_DIR [lua|c|all]
# The Lua specs run against BUILD_DIR's packer CLI and Lua module.
BUILD=${1:-build}
WHICH=${2:-all}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD_ABS=$(cd "$BUILD" && pwd)
passed=0
failed=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

if [ "$WHICH" != c ]; then
    export PACKER_BIN="$BUILD_ABS/packer"
    export PACKER_LUA_DIR="$ROOT/lua"
    export LUA_CPATH="$BUILD_ABS/lua/?.so;;"
    export LUA_PATH="$ROOT/lua/?.lua;$ROOT/spec/?.lua;;"
    preload=""
    if [ "${PACKER_SANITIZE:-}" = asan ]; then
        # the module is sanitized: the stock interpreter needs the runtime first
        preload=$(gcc -print-file-name=libasan.so)
        export ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0"
    fi
    (cd "$ROOT" && LD_PRELOAD="$preload" lua5.4 /usr/bin/busted -o TAP spec/) >"$log" 2>&1
    grep -E '^(not ok|# )' "$log" | head -50
    p=$(grep -c '^ok ' "$log")
    f=$(grep -c '^not ok ' "$log")
    if [ "$p" -eq 0 ] && [ "$f" -eq 0 ]; then
        cat "$log"
        f=1
    fi
    echo "lua specs: $p passed, $f failed"
    passed=$((passed + p))
    failed=$((failed + f))
fi

if [ "$WHICH" != lua ]; then
    for t in "$BUILD_ABS"/tests/test_*; do
        [ -x "$t" ] || continue
        name=$(basename "$t")
        out=$(cd "$ROOT" && PACKER_BIN="$BUILD_ABS/packer" "$t" 2>&1)
        rc=$?
        line=$(printf '%s\n' "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -1)
        if [ -z "$line" ]; then
            printf '%s\n' "$out" | tail -20
            echo "$name: crashed (exit $rc)"
            failed=$((failed + 1))
            continue
        fi
        p=${line%% passed*}
        f=${line#*passed, }
        f=${f%% failed*}
        [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
        [ "$f" -ne 0 ] && printf '%s\n' "$out" | grep -v -E '^[0-9]+ passed' | tail -30
        echo "$name: $p passed, $f failed"
        passed=$((passed + p))
        failed=$((failed + f))
    done
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
