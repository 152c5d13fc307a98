#!/usr/bin/env bash
# bench/presence_bench.sh — NOTIFY fan-out: 10,000 watchers subscribed to 1,000
# presentities (10 each, all active), then a burst of one PUBLISH per presentity; the
# time and the server's CPU (user + system of all its processes) until every watcher
# got the NOTIFY with the new document. openser-rs (openser-presence.cfg) against
# Kamailio 5.6's presence + presence_xml (kamailio-presence.cfg; packages kamailio,
# kamailio-presence-modules, kamailio-mysql-modules), in the same run, on one private
# MariaDB (databases openser and kamailio, their presence tables emptied before each
# run), REPEAT times each, alternating; each run gets a fresh server. The load client
# is bench/presload.py (one UDP socket, every NOTIFY answered at once).
#
# Usage: bench/presence_bench.sh           (builds the release binary first)
# Env:   REPEAT (3), PRES (1000), WATCHERS (10000), KAMAILIO=0 skips Kamailio,
#        OUT (results directory), BIN (an openser binary: no release build).
# Output: per run `<server> runN presence pres=… notifies=… secs=… cpu_s=…
#         cpu_us_per_notify=…`, then the medians and the ratios (Kamailio / openser-rs).
# Timed runs need a quiet machine (the CPU figures are the servers' own; secs includes
# the client). A quick check that everything runs: PRES=100 WATCHERS=1000 REPEAT=1
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
REPEAT=${REPEAT:-3}
PRES=${PRES:-1000}
WATCHERS=${WATCHERS:-10000}
OUT=${OUT:-$ROOT/bench/results/presence-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
KSQL=/usr/share/kamailio/mysql
MARIADBD=$(command -v mariadbd || echo /usr/sbin/mariadbd)
[ -x "$MARIADBD" ] || { echo "presence_bench: mariadbd (mariadb-server) is needed" >&2; exit 2; }
if [ -z "${BIN:-}" ]; then
	cargo build --release --manifest-path "$ROOT/Cargo.toml" >&2
	BIN=$ROOT/target/release/openser
fi

TMP=$(mktemp -d)
DBPID= SRV=
cleanup() {
	for p in $SRV $DBPID; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
	rm -rf "$TMP"
}
trap cleanup EXIT

# --- the database ---
DBPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mariadb-install-db --no-defaults --datadir="$TMP/db" --auth-root-authentication-method=normal \
	--user=root >"$OUT/install.log" 2>&1
"$MARIADBD" --no-defaults --datadir="$TMP/db" --socket="$TMP/sock" --port="$DBPORT" \
	--bind-address=127.0.0.1 --user=root --tmpdir="$TMP" --max-connections=200 \
	>"$OUT/mariadbd.log" 2>&1 &
DBPID=$!
for _ in $(seq 1 100); do [ -S "$TMP/sock" ] && break; sleep 0.1; done
dbq() { mariadb --no-defaults --socket="$TMP/sock" --user=root -N "$1" -e "$2"; }
HOME=$TMP DBSOCKET=$TMP/sock PW= sh "$ROOT/scripts/openser_mysql.sh" create >/dev/null
HOME=$TMP DBSOCKET=$TMP/sock PW= sh "$ROOT/scripts/openser_mysql.sh" presence >/dev/null
DBURL="mysql://openser:openserrw@127.0.0.1:$DBPORT/openser"
KDBURL="mysql://openser:openserrw@127.0.0.1:$DBPORT/kamailio"
HAVE_KAM=
if [ "${KAMAILIO:-1}" = 1 ] && command -v kamailio >/dev/null; then
	[ -f "$KSQL/presence-create.sql" ] || { echo "kamailio-mysql-modules is needed ($KSQL)" >&2; exit 2; }
	HAVE_KAM=1
	dbq "" "CREATE DATABASE kamailio; GRANT ALL ON kamailio.* TO 'openser'@'%'; GRANT ALL ON kamailio.* TO 'openser'@'localhost'"
	for f in standard presence; do
		mariadb --no-defaults --socket="$TMP/sock" --user=root kamailio <"$KSQL/$f-create.sql"
	done
fi
sed "s|@DBURL@|$DBURL|" "$ROOT/bench/openser-presence.cfg" >"$OUT/openser-presence.cfg"
sed "s|@DBURL@|$KDBURL|g" "$ROOT/bench/kamailio-presence.cfg" >"$OUT/kamailio-presence.cfg"

# run NAME DB CMD...: empty DB's presence tables, start the server, wait for port
# 5060, drive it, stop it by its PID
run() {
	name=$1 db=$2; shift 2
	dbq "$db" "DELETE FROM presentity; DELETE FROM active_watchers; DELETE FROM watchers"
	"$@" >"$OUT/$name.log" 2>&1 &
	SRV=$!
	for _ in $(seq 1 100); do
		ss -lun 2>/dev/null | grep -q '127.0.0.1:5060 ' && break
		sleep 0.1
	done
	sleep 0.5
	python3 "$ROOT/bench/presload.py" "$SRV" 127.0.0.1:5060 "$PRES" "$WATCHERS" | sed "s/^/$name /" || echo "$name FAILED"
	kill "$SRV" 2>/dev/null || true
	wait "$SRV" 2>/dev/null || true
	SRV=
	sleep 1
}

for i in $(seq 1 "$REPEAT"); do
	echo "== openser-rs, run $i ==" >&2
	run "openser-rs run$i" openser "$BIN" -DD -E -m 256 -f "$OUT/openser-presence.cfg"
	if [ -n "$HAVE_KAM" ]; then
		echo "== kamailio, run $i ==" >&2
		run "kamailio run$i" kamailio kamailio -DD -E -m 256 -f "$OUT/kamailio-presence.cfg"
	fi
done | tee "$OUT/results.txt"

# medians and ratios
awk '
	function med(a, n,   i, j, t) {
		for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
		return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
	}
	/ presence / {
		srv = $1
		for (i = 1; i <= NF; i++) {
			split($i, kv, "=")
			if (kv[1] == "secs") s[srv, ++ns[srv]] = kv[2]
			if (kv[1] == "cpu_s") c[srv, ++nc[srv]] = kv[2]
		}
	}
	END {
		for (srv in ns) {
			delete a; for (i = 1; i <= ns[srv]; i++) a[i] = s[srv, i]; ms[srv] = med(a, ns[srv])
			delete a; for (i = 1; i <= nc[srv]; i++) a[i] = c[srv, i]; mc[srv] = med(a, nc[srv])
			printf "%s: median secs %.3f, median cpu_s %.3f\n", srv, ms[srv], mc[srv]
		}
		if (("openser-rs" in ms) && ("kamailio" in ms) && ms["openser-rs"] > 0 && mc["openser-rs"] > 0)
			printf "ratio kamailio/openser-rs: time %.2f, cpu %.2f\n", ms["kamailio"] / ms["openser-rs"], mc["kamailio"] / mc["openser-rs"]
	}' "$OUT/results.txt" | tee "$OUT/summary.txt"
