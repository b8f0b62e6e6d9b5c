#!/bin/sh
# The demo: copy examples/demo to BUILD/demo and drive the packer CLI over
# it the way a user would. usage: demo.sh BUILD_DIR
set -eu
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
P="$ROOT/$BUILD/packer"
WS="$ROOT/$BUILD/demo"
rm -rf "$WS"
cp -r "$ROOT/examples/demo" "$WS"
run() {
    echo
    echo "\$ packer $*"
    "$P" -C "$WS" "$@" || echo "(exit $?)"
}
run init --name demo
run register assets/sprites/hero assets/sprites/enemy assets/ui/strings assets/config/game \
    assets/scripts/ai
run register assets/music/theme --kind raw --exclude
run list
run show sprites/hero
run exclude sprites/enemy
run include assets/music/theme
run --json list --excluded
run remove sprites/enemy --delete-files
run doctor
run doctor --workspace --fix
run status
echo
echo "demo workspace: $WS (events in $WS/events.jsonl)"
"$P" -C "$WS" --events "$WS/events.jsonl" status >/dev/null
