#!/bin/sh
# bench.sh - the benchmarks behind `make bench` (benchmarks, never tests:
# nothing here passes or fails on timing). usage: bench.sh BUILD_DIR
#
# Sections (PACKER_BENCH_SECTIONS, default all: registry build doctor observe serve):
#
# registry: for each size N (default 100 and 100000): generate a workspace
# with scripts/gen-workspace.lua (deterministic, --small-files), `packer
# init` it, register every asset root through the CLI (find | xargs -n 5000
# packer register, timed), then run BUILD_DIR/bench_registry on it. The
# last line compares the mutation latency of the largest N with the
# smallest (target: at most 3x).
#
# build: for each size N (default 10000 and 100000) a full-size workspace
# (gen-workspace.lua without --small-files: mostly 1-64 KiB inputs, ~1% of
# 256 KiB-4 MiB, ~5% duplicates; about 52 KiB per asset), registered, then
# measured side by side under the same warm page cache (nothing is evicted;
# a `sync` precedes every timed run; the contenders take turns):
#   - full build: `packer build --clean` vs `tar cf ARCHIVE <the same
#     inputs>; sync ARCHIVE` (target: ratio <= 1.5). Both replace their
#     previous output; tar truncates it first, while packer keeps it whole
#     until the new one is durable, so a third row times tar doing that too
#     (tar cf ARCHIVE.new; sync; mv over ARCHIVE; sync the directory);
#   - no-op build: a second `packer build` vs a no-op `ninja` over a
#     build.ninja with one `cp $in $out` edge per input, already built
#     (target: ratio <= 1.0). To spare 100,000 process spawns the ninja
#     state is seeded (outputs copied, .ninja_log written by
#     scripts/bench_build.lua); ninja must then say "no work to do", else
#     it really builds once;
#   - memory: one raw input of 1 MiB and of PACKER_BENCH_BIG_MIB (1024)
#     MiB, deterministic bytes (bench_build.lua bigfile): peak RSS of
#     `packer build --clean`, and of the same with --verify (target:
#     bounded independently of the input size).
# doctor: for each size N (PACKER_BENCH_DOCTOR_SIZES, default 10000 and
# 100000) a full-size workspace as for build, registered; side by side under
# a warm page cache: `packer doctor --workspace` (every built-in rule, the
# duplicate search among them) vs `jdupes -r -q` and `rmlint -o fdupes`
# finding duplicates among the same files (goal: faster than both), and a
# plain `packer doctor` (registered world only), warm. jdupes and rmlint are
# bench-only Debian packages, installed like ninja. The number of duplicate
# groups each found is printed as a sanity check.
# serve: a workspace of PACKER_BENCH_SERVE_SIZE (1000) assets (--small-files),
# registered; BUILD_DIR/bench_serve times list_assets (whole registry) and
# get_asset_details round trips over `packer serve` from one sequential
# client, beside packer_call + packer_response_json in process, for
# PACKER_BENCH_SECONDS each (calls/s, median and p99 latency).
# observe: for each size N (PACKER_BENCH_OBSERVE_SIZES, default 10000 and
# 100000) a --small-files workspace, registered; BUILD_DIR/bench_observe on
# it with the observer on: at the smallest N the latency from a write of
# an input to its asset_changed event (PACKER_BENCH_WRITES, 200 writes,
# one at a time) and process CPU over PACKER_BENCH_IDLE (60) seconds at
# rest; at every N the reconcile after another process's commit (5 CLI
# include/exclude runs) beside a cold `packer list` (a fresh process,
# warm page cache; goal: reconcile at most equal).
# Times are medians of PACKER_BENCH_RUNS (3) runs: hyperfine when present,
# else `date +%s.%N` around each command. ninja (ninja-build) and
# /usr/bin/time (time) are bench-only: installed with apt-get as root,
# otherwise the command is printed and the rows needing them are skipped.
#
# Workspaces live in BUILD_DIR/bench and are removed as soon as measured
# unless PACKER_BENCH_KEEP=1. Tunables: PACKER_BENCH_SIZES ("100 100000"),
# PACKER_BENCH_TOGGLES (200), PACKER_BENCH_SECONDS (3), PACKER_BENCH_READERS
# (2), PACKER_BENCH_BUILD_SIZES ("10000 100000"), PACKER_BENCH_RUNS (3),
# PACKER_BENCH_BIG_MIB (1024), PACKER_BENCH_DOCTOR_SIZES ("10000 100000"),
# PACKER_BENCH_SECTIONS ("registry build doctor observe serve"),
# PACKER_BENCH_OBSERVE_SIZES ("10000 100000"), PACKER_BENCH_WRITES (200),
# PACKER_BENCH_IDLE (60).
# Disk: the build section needs about 4x the inputs (the inputs, the pack
# and the archive, the last two twice while replaced): ~21 GB at N=100000;
# a size that does not fit in the free space is skipped with a note. The
# whole `make bench` takes about 7 minutes on 2 CPUs, most of it at N=100000.
set -eu
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD_ABS=$(cd "$ROOT/$BUILD" && pwd)
P="$BUILD_ABS/packer"
BENCH="$BUILD_ABS/bench_registry"
DIR="$BUILD_ABS/bench"
SECTIONS=${PACKER_BENCH_SECTIONS:-"registry build doctor observe serve"}
OBSERVE_SIZES=${PACKER_BENCH_OBSERVE_SIZES:-"10000 100000"}
WRITES=${PACKER_BENCH_WRITES:-200}
IDLE=${PACKER_BENCH_IDLE:-60}
OBS="$BUILD_ABS/bench_observe"
DOCTOR_SIZES=${PACKER_BENCH_DOCTOR_SIZES:-"10000 100000"}
SIZES=${PACKER_BENCH_SIZES:-"100 100000"}
TOGGLES=${PACKER_BENCH_TOGGLES:-200}
SECS=${PACKER_BENCH_SECONDS:-3}
READERS=${PACKER_BENCH_READERS:-2}
BUILD_SIZES=${PACKER_BENCH_BUILD_SIZES:-"10000 100000"}
RUNS=${PACKER_BENCH_RUNS:-3}
BIG_MIB=${PACKER_BENCH_BIG_MIB:-1024}
KEEP=${PACKER_BENCH_KEEP:-0}
SERVE_SIZE=${PACKER_BENCH_SERVE_SIZE:-1000}
BATCH=5000
GEN="$ROOT/scripts/gen-workspace.lua"
BB="$ROOT/scripts/bench_build.lua"
TIME=/usr/bin/time

for f in "$P" "$BENCH" "$OBS"; do
    [ -x "$f" ] || { echo "bench: $f is missing (run: make BUILD=$BUILD bench)" >&2; exit 2; }
done
rm -rf "$DIR"
mkdir -p "$DIR"
[ "$KEEP" = 1 ] || trap 'rm -rf "$DIR"' EXIT

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
# value of key $2 in the result file of size $1
get() { sed -n "s/^$2=//p" "$DIR/result-$1.txt"; }
has() { command -v "$1" >/dev/null 2>&1; }
section() { case " $SECTIONS " in *" $1 "*) return 0 ;; esac; return 1; }
drop() { [ "$KEEP" = 1 ] || rm -rf "$@"; }
# Register every asset root of workspace $1, $BATCH paths per packer call.
register_roots() {
    (cd "$1" && find assets -name asset.json | sed 's|/asset.json$||' | sort |
        xargs -n "$BATCH" "$P" register >/dev/null)
}

machine() {
    cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
    mem=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
    echo "machine: $(nproc) CPUs, ${cpu:-unknown CPU}, $mem RAM, Linux $(uname -r)"
    fs=$(df -T "$DIR" 2>/dev/null | awk 'NR == 2 { print $2 }')
    opts=$(findmnt -n -o OPTIONS -T "$DIR" 2>/dev/null || true)
    echo "bench dir: $DIR (${fs:-$(stat -f -c %T "$DIR")} filesystem${opts:+, $opts})"
}

# Make command $1 available from Debian package $2, for the benchmarks only:
# apt-get as root, otherwise print the command; 1 if still missing.
need() {
    has "$1" && return 0
    if [ "$(id -u)" -eq 0 ] && has apt-get; then
        echo "bench: installing $2 (benchmarks only)" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q --no-install-recommends "$2" >/dev/null 2>&1 ||
            { apt-get update -q >/dev/null 2>&1 &&
                apt-get install -y -q --no-install-recommends "$2" >/dev/null 2>&1; } || true
    fi
    has "$1" && return 0
    echo "bench: $1 is missing, skipping what needs it; run: sudo apt-get install -y $2" >&2
    return 1
}

# ---------------------------------------------------------------- registry

# Generate, init and register a workspace of $1 assets; run the benchmark.
run_size() {
    n=$1
    ws="$DIR/ws-$n"
    out="$DIR/result-$n.txt"
    echo "N=$n: generating..." >&2
    t=$(now)
    lua5.4 "$GEN" --count "$n" --seed 1 --small-files "$ws" >&2
    echo "generate_s=$(elapsed "$t")" >"$out"
    "$P" -C "$ws" init --name "bench-$n" >/dev/null
    echo "N=$n: registering (xargs -n $BATCH packer register)..." >&2
    t=$(now)
    register_roots "$ws"
    s=$(elapsed "$t")
    {
        echo "register_s=$s"
        echo "register_calls=$(((n + BATCH - 1) / BATCH))"
        awk -v n="$n" -v s="$s" 'BEGIN { printf "register_per_s=%.0f\n", n / s }'
    } >>"$out"
    echo "N=$n: bench_registry..." >&2
    "$BENCH" "$ws" --toggles "$TOGGLES" --seconds "$SECS" --readers "$READERS" >>"$out"
    [ "$(get "$n" assets)" = "$n" ] || { echo "bench: expected $n assets in $ws" >&2; exit 1; }
    drop "$ws"
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

registry_report() {
    echo "registry (gen-workspace.lua --small-files --seed 1; $TOGGLES toggles, each a durable"
    echo "commit; reads: $READERS reader threads x ${SECS}s per service, one writer toggling)"
    echo
    table
    echo
    ratio
}

# ------------------------------------------------------------------- build

# Median of the numbers in file $1, one a line.
median() {
    sort -n "$1" | awk '{ v[NR] = $1 } END {
        if (NR == 0) exit 1
        if (NR % 2) printf "%.3f\n", v[(NR + 1) / 2]
        else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# Seconds taken by the shell command $1 (run in this shell, stdout dropped).
timed() {
    t=$(now)
    eval "$1" >/dev/null || { echo "bench: failed: $1" >&2; exit 1; }
    elapsed3 "$t"
}
elapsed3() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f\n", b - a }'; }

# race KEY CMD [KEY CMD]...: run the shell commands RUNS times each, taking
# turns, a sync before each run; record their medians as KEYs in $RES.
race() {
    if has hyperfine; then # one command at a time: hyperfine does not take turns
        while [ $# -ge 2 ]; do
            hyperfine --runs "$RUNS" --prepare sync --style none \
                --export-csv "$DIR/hf.csv" -n "$1" "$2" >/dev/null
            echo "$1=$(awk -F, 'NR == 2 { printf "%.3f", $4 }' "$DIR/hf.csv")" >>"$RES"
            shift 2
        done
        return
    fi
    race_r=0
    while [ "$race_r" -lt "$RUNS" ]; do
        race_k=""
        for race_x in "$@"; do
            if [ -z "$race_k" ]; then
                race_k=$race_x
                [ "$race_r" -gt 0 ] || : >"$DIR/race-$race_k"
                continue
            fi
            sync
            timed "$race_x" >>"$DIR/race-$race_k"
            race_k=""
        done
        race_r=$((race_r + 1))
    done
    race_k=""
    for race_x in "$@"; do
        if [ -z "$race_k" ]; then
            race_k=$race_x
            echo "$race_k=$(median "$DIR/race-$race_k")" >>"$RES"
        else
            race_k=""
        fi
    done
}

# Field $2 of the totals in the build report of workspace $1.
total() {
    sed -n '/"totals"/,/}/p' "$1/.packer/build-report.json" |
        sed -n "s/^ *\"$2\": *\\([0-9.]*\\).*/\\1/p"
}
up_to_date() { grep -q '"up_to_date": true' "$1/.packer/build-report.json"; }

# Free KiB in the bench directory's filesystem.
free_kib() { df -Pk "$DIR" | awk 'NR == 2 { print $4 }'; }

# Full build vs tar + sync, no-op build vs ninja, for a workspace of $1 assets.
run_build_size() {
    n=$1
    d="$DIR/build-$n"
    ws="$d/ws"
    RES="$DIR/result-build-$n.txt"
    : >"$RES"
    # inputs ~52 KiB per asset; peak: the inputs, the pack and the archive,
    # each twice while it is replaced atomically
    want=$((n * 52 * 4 + n * 16 + 1048576))
    if [ "$(free_kib)" -lt "$want" ]; then
        echo "bench: N=$n needs ~$((want / 1048576)) GiB free in $DIR; skipped" >&2
        echo "skipped=no disk space" >>"$RES"
        return 0
    fi
    mkdir -p "$d"
    echo "build N=$n: generating full-size inputs..." >&2
    t=$(now)
    msg=$(lua5.4 "$GEN" --count "$n" --seed 1 "$ws")
    echo "$msg" >&2
    echo "generate_s=$(elapsed "$t")" >>"$RES"
    echo "inputs_mib=$(echo "$msg" | sed -n 's/.*: \([0-9.]*\) MiB of inputs.*/\1/p')" >>"$RES"
    "$P" -C "$ws" init --name "bench-build-$n" >/dev/null
    register_roots "$ws"
    (cd "$ws" && find assets -name data.bin | sort) >"$d/inputs.txt"

    echo "build N=$n: full build vs tar + sync ($RUNS runs each)..." >&2
    "$P" -C "$ws" build >/dev/null # warm-up: page cache, an output to replace
    tar cf "$d/archive.tar" -C "$ws" -T "$d/inputs.txt" # warm-up
    arch="$d/archive.tar"
    tarc="tar cf \"$arch\" -C \"$ws\" -T \"$d/inputs.txt\" && sync \"$arch\""
    tarn="tar cf \"$arch.new\" -C \"$ws\" -T \"$d/inputs.txt\" && sync \"$arch.new\""
    race full_packer_s "\"$P\" -C \"$ws\" build --clean" \
        full_tar_s "$tarc" \
        full_tar_atomic_s "$tarn && mv -f \"$arch.new\" \"$arch\" && sync \"$d\""
    echo "full_misses=$(total "$ws" misses)" >>"$RES"
    echo "pack_mib=$(du -m "$ws/build/assets.pack" | cut -f1)" >>"$RES"
    rm -f "$arch" "$arch.new"

    echo "build N=$n: no-op build vs ninja no-op..." >&2
    "$P" -C "$ws" build >/dev/null # after --clean: let the stat index settle
    if need ninja ninja-build; then
        seed_ninja "$d"
        race noop_packer_s "\"$P\" -C \"$ws\" build" noop_ninja_s "ninja -C \"$d/ninja\""
    else
        race noop_packer_s "\"$P\" -C \"$ws\" build" skipped_s ":"
    fi
    echo "noop_hits=$(total "$ws" hits)" >>"$RES"
    up_to_date "$ws" && echo "noop_up_to_date=yes" >>"$RES" || echo "noop_up_to_date=no" >>"$RES"
    drop "$d"
}

# Give $1/ninja the state one `ninja` run over its build.ninja leaves (see
# bench_build.lua); check that ninja agrees, else let it really build.
seed_ninja() {
    nd="$1/ninja"
    mkdir -p "$nd/out"
    (cd "$1/ws" && xargs cp --parents -t "$nd/out" <"$1/inputs.txt")
    (cd "$nd" && find out -type f -printf '%T@ %p\n') >"$1/mtimes.txt"
    lua5.4 "$BB" ninja "$nd" "$1/ws" "$1/inputs.txt" "$1/mtimes.txt"
    if ninja -C "$nd" | grep -q "no work to do"; then
        echo "ninja_seeded=yes" >>"$RES"
    else
        echo "bench: ninja did not accept the seeded log; it built once for real" >&2
        echo "ninja_seeded=no" >>"$RES"
    fi
    ninja -C "$nd" | grep -q "no work to do" ||
        { echo "bench: ninja is not up to date" >&2; exit 1; }
}

# "SECONDS PEAK_KIB" of the command $@ (stdout dropped): /usr/bin/time, else
# VmHWM of the process polled every 10 ms.
peak() {
    if [ -x "$TIME" ]; then
        "$TIME" -f '%e %M' -o "$DIR/time.txt" "$@" >/dev/null
        cat "$DIR/time.txt"
        return
    fi
    t=$(now)
    "$@" >/dev/null &
    pid=$!
    hwm=0
    while v=$(sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$pid/status" 2>/dev/null) &&
        [ -n "$v" ]; do
        [ "$v" -gt "$hwm" ] && hwm=$v
        sleep 0.01
    done
    wait "$pid"
    echo "$(elapsed3 "$t") $hwm"
}

# One raw asset of $1 MiB: build --clean time and peak RSS, with and without --verify.
run_mem() {
    mib=$1
    ws="$DIR/mem-$mib"
    RES="$DIR/result-mem-$mib.txt"
    : >"$RES"
    want=$((mib * 1024 * 3 + 1048576))
    if [ "$(free_kib)" -lt "$want" ]; then
        echo "bench: a $mib MiB input needs ~$((want / 1048576)) GiB free in $DIR; skipped" >&2
        return 0
    fi
    echo "memory: one raw input of $mib MiB..." >&2
    mkdir -p "$ws/assets/in"
    lua5.4 "$BB" bigfile "$ws/assets/in/data.bin" "$mib"
    echo '{"kind": "raw", "inputs": ["data.bin"]}' >"$ws/assets/in/asset.json"
    "$P" -C "$ws" init --name "bench-mem-$mib" >/dev/null
    "$P" -C "$ws" register assets/in >/dev/null
    sync
    peak "$P" -C "$ws" build --clean >"$DIR/peak.txt"
    read -r secs kib <"$DIR/peak.txt"
    echo "build_s=$secs" >>"$RES"
    echo "rss_mib=$(awk -v k="$kib" 'BEGIN { printf "%.1f", k / 1024 }')" >>"$RES"
    sync
    peak "$P" -C "$ws" build --clean --verify >"$DIR/peak.txt"
    read -r secs kib <"$DIR/peak.txt"
    echo "verify_s=$secs" >>"$RES"
    echo "verify_rss_mib=$(awk -v k="$kib" 'BEGIN { printf "%.1f", k / 1024 }')" >>"$RES"
    drop "$ws"
}

bget() { sed -n "s/^$2=//p" "$DIR/result-build-$1.txt" | tail -1; }
mget() { sed -n "s/^$2=//p" "$DIR/result-mem-$1.txt" | tail -1; }
div() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "-";
    else printf "%.2fx\n", a / b }'; }
mibps() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "-";
    else printf "%.0f\n", a / b }'; }

brow() {
    printf '%-40s' "$1"
    shift
    for n in $BUILD_SIZES; do printf '%12s' "$("$@" "$n")"; done
    printf '\n'
}
bkey() { v=$(bget "$2" "$1"); echo "${v:--}"; }
full_ratio() { div "$(bget "$1" full_packer_s)" "$(bget "$1" full_tar_s)"; }
full_atomic_ratio() { div "$(bget "$1" full_packer_s)" "$(bget "$1" full_tar_atomic_s)"; }
noop_ratio() { div "$(bget "$1" noop_packer_s)" "$(bget "$1" noop_ninja_s)"; }
packer_mibps() { mibps "$(bget "$1" inputs_mib)" "$(bget "$1" full_packer_s)"; }
tar_mibps() { mibps "$(bget "$1" inputs_mib)" "$(bget "$1" full_tar_s)"; }
ident() { echo "$1"; }

mrow() {
    printf '%-40s' "$1"
    for mib in 1 $BIG_MIB; do
        v=$(mget "$mib" "$2")
        printf '%12s' "${v:--}"
    done
    printf '\n'
}

build_report() {
    echo "build (gen-workspace.lua --seed 1, full-size inputs; median of $RUNS runs taking turns,"
    echo "warm page cache, a sync before each run; tar: tar cf + sync ARCHIVE, or into ARCHIVE.new"
    echo "then mv over ARCHIVE, as packer replaces its output; ninja: one cp edge per input, no-op)"
    echo
    brow "assets (N)" ident
    brow "inputs (MiB)" bkey inputs_mib
    brow "pack (MiB)" bkey pack_mib
    brow "generate workspace (s)" bkey generate_s
    brow "full: packer build --clean (s)" bkey full_packer_s
    brow "full: tar cf + sync (s)" bkey full_tar_s
    brow "full: tar cf new + sync + mv (s)" bkey full_tar_atomic_s
    brow "  packer / tar (target <= 1.5x)" full_ratio
    brow "  packer / tar + mv" full_atomic_ratio
    brow "  packer MiB/s" packer_mibps
    brow "  tar MiB/s" tar_mibps
    brow "  packer cache misses" bkey full_misses
    brow "no-op: packer build (s)" bkey noop_packer_s
    brow "no-op: ninja (s)" bkey noop_ninja_s
    brow "  packer / ninja (target <= 1.0x)" noop_ratio
    brow "  packer cache hits" bkey noop_hits
    brow "  packer outputs up to date" bkey noop_up_to_date
    brow "  ninja state seeded" bkey ninja_seeded
    echo
    printf '%-40s%12s%12s\n' "one raw input (MiB)" 1 "$BIG_MIB"
    mrow "build --clean (s)" build_s
    mrow "  peak RSS (MiB)" rss_mib
    mrow "build --clean --verify (s)" verify_s
    mrow "  peak RSS (MiB)" verify_rss_mib
    awk -v a="$(mget 1 rss_mib)" -v b="$(mget "$BIG_MIB" rss_mib)" \
        -v c="$(mget 1 verify_rss_mib)" -v d="$(mget "$BIG_MIB" verify_rss_mib)" \
        -v m="$BIG_MIB" 'BEGIN { if (a == "" || b == "") exit
            printf "peak RSS %s MiB input / 1 MiB input: build %.2fx, build --verify %.2fx",
                m, b / a, d / c
            print " (target: bounded, ~1x)" }'
}

# ------------------------------------------------------------------ doctor

# doctor --workspace vs jdupes and rmlint, plain doctor; workspace of $1 assets.
run_doctor_size() {
    n=$1
    d="$DIR/doctor-$n"
    ws="$d/ws"
    RES="$DIR/result-doctor-$n.txt"
    : >"$RES"
    want=$((n * 52 * 2 + 1048576))
    if [ "$(free_kib)" -lt "$want" ]; then
        echo "bench: doctor N=$n needs ~$((want / 1048576)) GiB free in $DIR; skipped" >&2
        return 0
    fi
    mkdir -p "$d"
    echo "doctor N=$n: generating full-size inputs..." >&2
    lua5.4 "$GEN" --count "$n" --seed 1 "$ws" >/dev/null
    "$P" -C "$ws" init --name "bench-doctor-$n" >/dev/null
    register_roots "$ws"
    echo "doctor N=$n: doctor --workspace vs jdupes vs rmlint ($RUNS runs each)..." >&2
    "$P" -C "$ws" --json doctor --workspace >"$d/doctor.json" # warm-up, and its groups
    echo "packer_groups=$(grep -c '"code": "duplicate_content"' "$d/doctor.json")" >>"$RES"
    set -- doctor_ws_s "\"$P\" -C \"$ws\" doctor --workspace"
    if need jdupes jdupes; then
        jdupes -r -q "$ws/assets" >"$d/jdupes.txt"
        echo "jdupes_groups=$(awk 'NF == 0 { g++ } END { print g + 0 }' "$d/jdupes.txt")" >>"$RES"
        set -- "$@" jdupes_s "jdupes -r -q \"$ws/assets\""
    fi
    if need rmlint rmlint; then
        (cd "$d" && rmlint -o fdupes:"$d/rmlint.txt" "$ws/assets" >/dev/null 2>&1) || true
        echo "rmlint_groups=$(awk 'NF == 0 { g++ } END { print g + 0 }' "$d/rmlint.txt")" >>"$RES"
        set -- "$@" rmlint_s "cd \"$d\" && rmlint -o fdupes:/dev/null \"$ws/assets\""
    fi
    race "$@"
    race doctor_s "\"$P\" -C \"$ws\" doctor"
    drop "$d"
}

dget() { sed -n "s/^$2=//p" "$DIR/result-doctor-$1.txt" | tail -1; }
drow() {
    printf '%-40s' "$1"
    shift
    for n in $DOCTOR_SIZES; do printf '%12s' "$("$@" "$n")"; done
    printf '\n'
}
dkey() { v=$(dget "$2" "$1"); echo "${v:--}"; }
jd_ratio() { div "$(dget "$1" doctor_ws_s)" "$(dget "$1" jdupes_s)"; }
rm_ratio() { div "$(dget "$1" doctor_ws_s)" "$(dget "$1" rmlint_s)"; }

doctor_report() {
    echo "doctor (gen-workspace.lua --seed 1, full-size inputs, all registered; median of $RUNS"
    echo "runs taking turns, warm page cache; doctor --workspace runs every built-in rule)"
    echo
    drow "assets (N)" ident
    drow "doctor --workspace (s)" dkey doctor_ws_s
    drow "jdupes -r (s)" dkey jdupes_s
    drow "rmlint (s)" dkey rmlint_s
    drow "  doctor --workspace / jdupes" jd_ratio
    drow "  doctor --workspace / rmlint" rm_ratio
    drow "duplicate groups: packer" dkey packer_groups
    drow "duplicate groups: jdupes" dkey jdupes_groups
    drow "duplicate groups: rmlint" dkey rmlint_groups
    drow "plain doctor, warm (s)" dkey doctor_s
}

# ------------------------------------------------------------------- serve

run_serve() {
    ws="$DIR/serve-$SERVE_SIZE"
    echo "serve: N=$SERVE_SIZE: generating, registering, bench_serve..." >&2
    lua5.4 "$GEN" --count "$SERVE_SIZE" --seed 1 --small-files "$ws" >&2
    "$P" -C "$ws" init --name "bench-serve" >/dev/null
    register_roots "$ws"
    "$BUILD_ABS/bench_serve" "$ws" "$P" --seconds "$SECS" >"$DIR/result-serve.txt"
    drop "$ws"
}

sget() { sed -n "s/^$1=//p" "$DIR/result-serve.txt"; }

serve_report() {
    echo "serve (gen-workspace.lua --small-files --seed 1, $(sget assets) assets; one client,"
    echo "sequential request/response over pipes, ${SECS}s per row; in process: packer_call +"
    echo "packer_response_json on one thread, what serve does per request)"
    echo
    printf '%-28s%12s%12s%12s%12s\n' "" "calls/s" "p50 (us)" "p99 (us)" "bytes"
    for k in inproc_list serve_list inproc_details serve_details; do
        printf '%-28s%12s%12s%12s%12s\n' "$k" "$(sget "${k}_per_s")" "$(sget "${k}_p50_us")" \
            "$(sget "${k}_p99_us")" "$(sget "${k}_bytes")"
    done
    awk -v a="$(sget inproc_list_per_s)" -v b="$(sget serve_list_per_s)" \
        -v c="$(sget inproc_details_per_s)" -v d="$(sget serve_details_per_s)" 'BEGIN {
            printf "serve / in process: list_assets %.2fx, get_asset_details %.2fx the calls/s\n",
                b / a, d / c }'
}

if section serve; then
    [ -x "$BUILD_ABS/bench_serve" ] ||
        { echo "bench: $BUILD_ABS/bench_serve is missing (run: make bench)" >&2; exit 2; }
    run_serve
fi
# ------------------------------------------------------------------ observe

# A registered --small-files workspace of $1 assets; bench_observe on it
# (latency and idle only at size $2), then cold `packer list` runs.
run_observe_size() {
    n=$1
    ws="$DIR/obs-$n"
    out="$DIR/result-obs-$n.txt"
    echo "observe N=$n: generating and registering..." >&2
    lua5.4 "$GEN" --count "$n" --seed 1 --small-files "$ws" >&2
    "$P" -C "$ws" init --name "obs-$n" >/dev/null
    register_roots "$ws"
    w=0 i=0
    [ "$n" = "$2" ] && w=$WRITES i=$IDLE
    echo "observe N=$n: bench_observe (writes $w, idle ${i}s, 5 reconciles)..." >&2
    "$OBS" "$ws" --writes "$w" --idle "$i" --reconciles 5 --packer "$P" >"$out"
    : >"$DIR/list-$n.txt"
    for _ in $(seq "$RUNS"); do
        t=$(now)
        "$P" -C "$ws" --json list >/dev/null
        elapsed "$t" >>"$DIR/list-$n.txt"
    done
    echo "cold_list_ms=$(median "$DIR/list-$n.txt" | awk '{ printf "%.0f", $1 * 1000 }')" >>"$out"
    drop "$ws"
}

oget() { sed -n "s/^$2=//p" "$DIR/result-obs-$1.txt"; }

orow() {
    printf '%-40s' "$1"
    for n in $OBSERVE_SIZES; do printf '%12s' "$(oget "$n" "$2")"; done
    printf '\n'
}

observe_report() {
    echo "observe (gen-workspace.lua --small-files --seed 1, registered; observer on;"
    echo "writes one at a time; reconcile after a CLI include/exclude, median of 5;"
    echo "cold list: a fresh \`packer --json list\` process, median of $RUNS, warm page cache)"
    echo
    printf '%-40s' "assets (N)"
    for n in $OBSERVE_SIZES; do printf '%12s' "$n"; done
    printf '\n'
    orow "observer start: walk + watches (ms)" observe_start_ms
    orow "write -> asset_changed median (ms)" write_to_event_median_ms
    orow "write -> asset_changed p99 (ms)" write_to_event_p99_ms
    orow "  events measured" write_to_event_count
    orow "idle CPU over the idle run (ms)" idle_cpu_ms
    orow "  idle seconds" idle_seconds
    orow "reconcile alone, median (ms)" reconcile_median_ms
    orow "other commit -> in service, median (ms)" commit_to_healthy_median_ms
    orow "cold packer list (ms)" cold_list_ms
}

if section registry; then
    for n in $SIZES; do run_size "$n"; done
fi
if section build; then
    [ -x "$TIME" ] || need "$TIME" time || true
    for n in $BUILD_SIZES; do run_build_size "$n"; done
    for mib in 1 $BIG_MIB; do run_mem "$mib"; done
fi
if section doctor; then
    for n in $DOCTOR_SIZES; do run_doctor_size "$n"; done
fi
if section observe; then
    first=${OBSERVE_SIZES%% *}
    for n in $OBSERVE_SIZES; do run_observe_size "$n" "$first"; done
fi
echo
echo "packer benchmarks ($(date -u +%Y-%m-%d))"
machine
if section registry; then
    echo
    registry_report
fi
if section build; then
    echo
    build_report
fi
if section doctor; then
    echo
    doctor_report
fi
if section serve; then
    echo
    serve_report
fi
if section observe; then
    echo
    observe_report
fi
