#!/bin/sh
# bench.sh - the registry benchmarks behind `make bench` (benchmarks, never
# tests: nothing here passes or fails on timing). usage: bench.sh BUILD_DIR
#
# For each size N (default 100 and 100000): generate a workspace with
# scripts/gen-workspace.lua (deterministic, --small-files), `packer init`
# it, register every asset root through the CLI (find | xargs -n 5000
# packer register, timed), then run BUILD_DIR/bench_registry on it. Prints
# the machine and one compact table; the last line compares the mutation
# latency of the largest N with the smallest (target: at most 3x).
#
# Workspaces live in BUILD_DIR/bench and are removed at the end unless
# PACKER_BENCH_KEEP=1. Tunables: PACKER_BENCH_SIZES ("100 100000"),
# PACKER_BENCH_TOGGLES (200), PACKER_BENCH_SECONDS (3), PACKER_BENCH_READERS (2).
set -eu
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD_ABS=$(cd "$ROOT/$BUILD" && pwd)
P="$BUILD_ABS/packer"
BENCH="$BUILD_ABS/bench_registry"
DIR="$BUILD_ABS/bench"
SIZES=${PACKER_BENCH_SIZES:-"100 100000"}
TOGGLES=${PACKER_BENCH_TOGGLES:-200}
SECS=${PACKER_BENCH_SECONDS:-3}
READERS=${PACKER_BENCH_READERS:-2}
BATCH=5000

for f in "$P" "$BENCH"; do
    [ -x "$f" ] || { echo "bench: $f is missing (run: make BUILD=$BUILD bench)" >&2; exit 2; }
done
rm -rf "$DIR"
mkdir -p "$DIR"
[ "${PACKER_BENCH_KEEP:-0}" = 1 ] || trap 'rm -rf "$DIR"' EXIT

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
# value of key $2 in the result file of size $1
get() { sed -n "s/^$2=//p" "$DIR/result-$1.txt"; }

machine() {
    cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
    mem=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
    echo "machine: $(nproc) CPUs, ${cpu:-unknown CPU}, $mem RAM, Linux $(uname -r)"
    fs=$(df -T "$DIR" 2>/dev/null | awk 'NR == 2 { print $2 }')
    echo "bench dir: $DIR (${fs:-$(stat -f -c %T "$DIR")} filesystem)"
}

# Generate, init and register a workspace of $1 assets; run the benchmark.
run_size() {
    n=$1
    ws="$DIR/ws-$n"
    out="$DIR/result-$n.txt"
    echo "N=$n: generating..." >&2
    t=$(now)
    lua5.4 "$ROOT/scripts/gen-workspace.lua" --count "$n" --seed 1 --small-files "$ws" >&2
    echo "generate_s=$(elapsed "$t")" >"$out"
    "$P" -C "$ws" init --name "bench-$n" >/dev/null
    echo "N=$n: registering (xargs -n $BATCH packer register)..." >&2
    t=$(now)
    (cd "$ws" && find assets -name asset.json | sed 's|/asset.json$||' | sort |
        xargs -n "$BATCH" "$P" register >/dev/null)
    s=$(elapsed "$t")
    {
        echo "register_s=$s"
        echo "register_calls=$(((n + BATCH - 1) / BATCH))"
        awk -v n="$n" -v s="$s" 'BEGIN { printf "register_per_s=%.0f\n", n / s }'
    } >>"$out"
    echo "N=$n: bench_registry..." >&2
    "$BENCH" "$ws" --toggles "$TOGGLES" --seconds "$SECS" --readers "$READERS" >>"$out"
    [ "$(get "$n" assets)" = "$n" ] || { echo "bench: expected $n assets in $ws" >&2; exit 1; }
}

# One table row: label, key, then the value for each size.
row() {
    printf '%-36s' "$1"
    for n in $SIZES; do printf '%14s' "$(get "$n" "$2")"; done
    printf '\n'
}

table() {
    printf '%-36s' "assets (N)"
    for n in $SIZES; do printf '%14s' "$n"; done
    printf '\n'
    row "generate workspace (s)" generate_s
    row "register via CLI (s)" register_s
    row "  packer register calls" register_calls
    row "  assets registered per s" register_per_s
    row "toggle include/exclude median (ms)" toggle_median_ms
    row "toggle include/exclude p95 (ms)" toggle_p95_ms
    row "toggle include/exclude mean (ms)" toggle_mean_ms
    row "list_assets (calls/s)" list_calls_per_s
    row "  writer commits/s meanwhile" list_writer_commits_per_s
    row "get_asset_details (calls/s)" details_calls_per_s
    row "  writer commits/s meanwhile" details_writer_commits_per_s
}

ratio() {
    first=${SIZES%% *}
    last=${SIZES##* }
    [ "$first" != "$last" ] || return 0
    awk -v a="$(get "$first" toggle_median_ms)" -v b="$(get "$last" toggle_median_ms)" \
        -v c="$(get "$first" toggle_p95_ms)" -v d="$(get "$last" toggle_p95_ms)" \
        -v f="$first" -v l="$last" 'BEGIN {
            printf "mutation latency N=%s / N=%s: median %.2fx, p95 %.2fx (target <= 3x)\n",
                l, f, b / a, d / c }'
}

for n in $SIZES; do run_size "$n"; done
echo
echo "packer registry benchmarks ($(date -u +%Y-%m-%d))"
machine
echo "inputs: gen-workspace.lua --small-files --seed 1; $TOGGLES toggles, each a durable"
echo "commit; reads: $READERS reader threads x ${SECS}s per service, one writer toggling"
echo
table
echo
ratio
