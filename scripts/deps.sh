#!/bin/sh
# Install what packer needs from Debian packages, only what is missing.
# As root: apt-get. Otherwise: print the exact command and exit non-zero.
set -eu
PKGS="build-essential pkg-config liblua5.4-dev lua5.4 lua-filesystem lua-busted libcjson-dev libxxhash-dev libreadline-dev"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "packer: missing packages:$missing" >&2
    echo "run: sudo apt-get install -y$missing" >&2
    exit 1
fi
echo "packer: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
# a broken extra source (an unsigned security mirror, say) must not stop
# installing from the lists that did update
apt-get update -q >/dev/null ||
    echo "packer: apt-get update reported errors; installing from the lists at hand" >&2
apt-get install -y -q --no-install-recommends $missing >/dev/null
