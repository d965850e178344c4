#!/usr/bin/env bash
# Install Debian packages for the start-*.sh scripts, which name only the
# missing ones (naming an installed package to apt-get would upgrade it).
# Needs root; no recommends (Swift's would pull in 165 packages); waits up
# to 300 s for another apt to let go of its locks.
#   usage: apt-install.sh CALLER PACKAGE...   (CALLER prefixes the messages)
set -euo pipefail
who=$1; shift
die() { echo "$who: ERROR: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "missing packages $* and we are not root"
echo "$who: installing from Debian: $*" >&2
export DEBIAN_FRONTEND=noninteractive
apt=(apt-get -q -o DPkg::Lock::Timeout=300)
"${apt[@]}" update >&2 || die "apt-get update failed"
"${apt[@]}" install -y --no-install-recommends "$@" >&2 || die "apt-get install $* failed"
