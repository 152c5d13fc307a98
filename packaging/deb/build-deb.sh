#!/bin/sh
# Build the openser Debian package with dpkg-deb alone (no debhelper needed):
#   packaging/deb/build-deb.sh [BINARY] [OUTDIR]
# BINARY: the openser binary to package (default target/release/openser, as built by
# `make deb`); OUTDIR: where the .deb goes (default target/deb). Prints the .deb's
# path. DEB_MAINTAINER sets the Maintainer field, DEB_COMPRESS=gzip|xz|none (default
# xz), DEB_NOSTRIP=1 keeps the symbols.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
bin=${1:-$top/target/release/openser}
out=${2:-$top/target/deb}
[ -x "$bin" ] || { echo "build-deb: no binary $bin (make build)" >&2; exit 1; }
command -v dpkg-deb >/dev/null || { echo "build-deb: dpkg-deb is needed" >&2; exit 1; }

here=$top/packaging/deb
# DEB_MAINTAINER: "Name <address>" of whoever builds and ships the package.
maint=${DEB_MAINTAINER:-openser-rs developers <openser-rs@localhost>}
version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$top/Cargo.toml" | head -n 1)
[ -n "$version" ] || { echo "build-deb: no version in Cargo.toml" >&2; exit 1; }
debver="$version-1"
arch=$(dpkg --print-architecture)

mkdir -p "$out"
root=$(mktemp -d "$out/root.XXXXXX")
trap 'rm -rf "$root"' EXIT INT TERM
chmod 0755 "$root"
umask 022

d() { install -d "$root/$1"; }
d DEBIAN; d usr/sbin; d usr/share/openser; d etc/openser; d etc/init.d; d etc/default
d lib/systemd/system; d usr/share/man/man8; d usr/share/man/man5; d usr/share/doc/openser/examples

# The server, stripped unless DEB_NOSTRIP=1 (the release profile keeps line tables).
install -m 0755 "$bin" "$root/usr/sbin/openser"
if [ "${DEB_NOSTRIP:-0}" != 1 ] && command -v strip >/dev/null; then
	strip --strip-unneeded --remove-section=.comment --remove-section=.note "$root/usr/sbin/openser"
fi
# The scripts: installed paths instead of /usr/local.
sed -e 's|^ETCDIR=${ETCDIR:-/usr/local/etc/openser}|ETCDIR=${ETCDIR:-/etc/openser}|' \
	-e 's|^PID_FILE=${PID_FILE:-/var/run/openser.pid}|PID_FILE=${PID_FILE:-/run/openser/openser.pid}|' \
	"$top/scripts/openserctl" > "$root/usr/sbin/openserctl"
chmod 0755 "$root/usr/sbin/openserctl"
for f in openserdbctl openser_mysql.sh openser_postgresql.sh openser_sqlite.sh openser_dbtext.sh; do
	install -m 0755 "$top/scripts/$f" "$root/usr/sbin/$f"
done
install -m 0644 "$top/scripts/openserdb.schema" "$top/scripts/openserdb.awk" "$root/usr/share/openser/"

# The configuration: the sample config with the MI FIFO (openserctl's default
# /tmp/openser_fifo, as 1.2's sample), openserctlrc, /etc/default/openser.
awk '
	{ print }
	/^loadmodule "options.so"/ { print "loadmodule \"mi_fifo.so\""; lm = 1 }
	/^modparam\("rr", "enable_full_lr", 1\)/ {
		print ""
		print "# The MI FIFO of openserctl (its OSER_FIFO)."
		print "modparam(\"mi_fifo\", \"fifo_name\", \"/tmp/openser_fifo\")"
		mp = 1
	}
	END { if (!lm || !mp) { print "build-deb: etc/openser.cfg changed, cannot add mi_fifo" > "/dev/stderr"; exit 1 } }
' "$top/etc/openser.cfg" > "$root/etc/openser/openser.cfg"
chmod 0644 "$root/etc/openser/openser.cfg"
sed -f "$here/openserctlrc.sed" "$top/etc/openserctlrc" > "$root/etc/openser/openserctlrc"
chmod 0644 "$root/etc/openser/openserctlrc"
install -m 0644 "$here/openser.default" "$root/etc/default/openser"
sed -e 's|/usr/local/sbin/openser|/usr/sbin/openser|g' -e 's|/usr/local/etc/openser|/etc/openser|g' \
	-e 's|^PIDFILE=${PIDFILE:-/var/run/openser.pid}|PIDFILE=${PIDFILE:-/run/openser/openser.pid}|' \
	"$top/etc/init.d/openser" > "$root/etc/init.d/openser"
chmod 0755 "$root/etc/init.d/openser"
install -m 0644 "$here/openser.service" "$root/lib/systemd/system/openser.service"

# Man pages and documentation, compressed as policy wants.
for m in "$top"/man/*.8; do gzip -9n < "$m" > "$root/usr/share/man/man8/$(basename "$m").gz"; done
# 1.2's per-engine entry points share openserdbctl's page.
for f in openser_mysql.sh openser_postgresql.sh openser_sqlite.sh openser_dbtext.sh; do
	printf '.so man8/openserdbctl.8\n' | gzip -9n > "$root/usr/share/man/man8/$f.8.gz"
done
for m in "$top"/man/*.5; do gzip -9n < "$m" > "$root/usr/share/man/man5/$(basename "$m").gz"; done
install -m 0644 "$here/copyright" "$root/usr/share/doc/openser/copyright"
gzip -9n < "$top/README.md" > "$root/usr/share/doc/openser/README.md.gz"
gzip -9n < "$top/ARCHITECTURE.md" > "$root/usr/share/doc/openser/ARCHITECTURE.md.gz"
for f in "$top"/etc/examples/*.cfg "$top/etc/mysql-auth.cfg"; do
	install -m 0644 "$f" "$root/usr/share/doc/openser/examples/"
done
date=$(date -R -d "@${SOURCE_DATE_EPOCH:-$(git -C "$top" log -1 --format=%ct 2>/dev/null || date +%s)}")
printf 'openser (%s) unstable; urgency=medium\n\n  * Package built from the openser-rs tree.\n\n -- %s  %s\n' \
	"$debver" "$maint" "$date" | gzip -9n > "$root/usr/share/doc/openser/changelog.Debian.gz"

# Control files.
for f in postinst prerm postrm; do install -m 0755 "$here/$f" "$root/DEBIAN/$f"; done
printf '%s\n' /etc/openser/openser.cfg /etc/openser/openserctlrc /etc/default/openser /etc/init.d/openser \
	> "$root/DEBIAN/conffiles"
depends="adduser, libc6"
if command -v objdump >/dev/null; then
	libs=$(objdump -p "$root/usr/sbin/openser" | awk '/NEEDED/ { print $2 }' | tr '\n' ' ')
	case "$libs" in *libgcc_s*) depends="$depends, libgcc-s1" ;; esac
	case "$libs" in *libssl*|*libcrypto*) depends="$depends, libssl3" ;; esac
fi
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s|@VERSION@|$debver|" -e "s|@ARCH@|$arch|" -e "s|@SIZE@|$size|" -e "s|@DEPENDS@|$depends|" -e "s|@MAINTAINER@|$maint|" \
	"$here/control.in" > "$root/DEBIAN/control"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' | LC_ALL=C sort |
	xargs md5sum) > "$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/conffiles" "$root/DEBIAN/md5sums"

deb="$out/openser_${debver}_${arch}.deb"
dpkg-deb --root-owner-group -Z"${DEB_COMPRESS:-xz}" --build "$root" "$deb" >/dev/null
echo "$deb"
