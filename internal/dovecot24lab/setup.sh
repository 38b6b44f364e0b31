#!/bin/sh
# setup.sh - builds the Debian 13 (trixie) root with Dovecot 2.4 that the
# tests of internal/dovecot24lab run, at DIR (default
# /var/tmp/tcpwrapd-trixie-dovecot24), from the Debian mirror this machine's
# apt sources name. Root required.
#
#   internal/dovecot24lab/setup.sh [DIR]
#
# What it does to the machine: runs `debootstrap --variant=minbase` of trixie with dovecot-core,
# dovecot-imapd, dovecot-pop3d, dovecot-submissiond and dovecot-managesieved
# into DIR.partial (about 90 s and 300 MB the first time) and renames it to
# DIR when complete. Nothing outside DIR is written (no mount is left, no
# service is started: debootstrap runs package scripts inside the root, where
# no init system runs). A second run finds DIR complete and does nothing;
# concurrent runs wait for each other (flock on DIR.lock). Remove the root
# with: rm -rf DIR
set -eu
DIR=${1:-/var/tmp/tcpwrapd-trixie-dovecot24}
PKGS=dovecot-core,dovecot-imapd,dovecot-pop3d,dovecot-submissiond,dovecot-managesieved

done_already() { [ -x "$DIR/usr/sbin/dovecot" ] && [ -f "$DIR/.tcpwrapd-root-complete" ]; }
if done_already; then
	echo "$DIR: dovecot $(chroot "$DIR" dovecot --version)"
	exit 0
fi
[ "$(id -u)" = 0 ] || { echo "setup.sh: must run as root (debootstrap, chroot)" >&2; exit 1; }

mkdir -p "$(dirname "$DIR")"
exec 9>"$DIR.lock"
flock 9
if done_already; then # built by a concurrent run while we waited
	echo "$DIR: dovecot $(chroot "$DIR" dovecot --version)"
	exit 0
fi

command -v debootstrap >/dev/null || {
	echo "setup.sh: debootstrap is not installed (apt-get install debootstrap; CI=true .ci/run does)" >&2
	exit 1
}
MIRROR=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
[ -n "$MIRROR" ] || MIRROR=$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
[ -n "$MIRROR" ] || MIRROR=http://deb.debian.org/debian

# A previous run that died part way leaves DIR.partial (or a DIR without the
# marker): start again from nothing. debootstrap mounts proc and sys inside
# the target while it runs and unmounts them; be sure nothing is left.
for d in "$DIR.partial" "$DIR"; do
	for m in proc sys dev/pts dev; do
		mountpoint -q "$d/$m" 2>/dev/null && umount -l "$d/$m" || true
	done
	rm -rf "$d"
done
start=$(date +%s)
debootstrap --variant=minbase --include="$PKGS" trixie "$DIR.partial" "$MIRROR" >"$DIR.log" 2>&1 || {
	echo "setup.sh: debootstrap failed; the last lines of $DIR.log:" >&2
	tail -n 20 "$DIR.log" >&2
	exit 1
}
for m in proc sys dev/pts dev; do
	mountpoint -q "$DIR.partial/$m" 2>/dev/null && umount -l "$DIR.partial/$m" || true
done
# Trim what no test needs (apt lists and downloaded packages).
rm -rf "$DIR.partial/var/cache/apt/archives/"*.deb "$DIR.partial/var/lib/apt/lists/"*
chroot "$DIR.partial" dovecot --version >/dev/null
touch "$DIR.partial/.tcpwrapd-root-complete"
mv "$DIR.partial" "$DIR"
echo "$DIR: dovecot $(chroot "$DIR" dovecot --version) (built in $(( $(date +%s) - start )) s)"
