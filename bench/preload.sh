#!/usr/bin/env bash
# preload.sh — start-up load of a big location table (usrloc db_mode 1): ROWS rows
# (default 1,000,000) are inserted into `location` of a private MariaDB (temp datadir,
# TCP on 127.0.0.1), then openser starts with db_mode 1 and the time from its start to
# the "loaded N contact(s)" line is reported, with the shm used. Then a REGISTER
# refresh of a loaded user and a lookup prove the table works.
#
#   ROWS=1000000  MEM=1024 (-m)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
ROWS=${ROWS:-1000000}
MEM=${MEM:-1024}
BIN=$ROOT/target/release/openser
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release)
MARIADBD=$(command -v mariadbd || echo /usr/sbin/mariadbd)
[ -x "$MARIADBD" ] || { echo "preload: mariadbd (mariadb-server) is needed" >&2; exit 2; }

TMP=$(mktemp -d)
DBPID=
SRVPID=
cleanup() {
	[ -n "$SRVPID" ] && kill "$SRVPID" 2>/dev/null && wait "$SRVPID" 2>/dev/null || true
	[ -n "$DBPID" ] && kill "$DBPID" 2>/dev/null && wait "$DBPID" 2>/dev/null || true
	[ -n "${KEEP:-}" ] || rm -rf "$TMP"
}
trap cleanup EXIT

DBPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
SIPPORT=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mariadb-install-db --no-defaults --datadir="$TMP/db" --auth-root-authentication-method=normal \
	--user=root >"$TMP/install.log" 2>&1
"$MARIADBD" --no-defaults --datadir="$TMP/db" --socket="$TMP/sock" --port="$DBPORT" \
	--bind-address=127.0.0.1 --user=root --tmpdir="$TMP" >"$TMP/mariadbd.log" 2>&1 &
DBPID=$!
for _ in $(seq 1 100); do [ -S "$TMP/sock" ] && break; sleep 0.1; done
HOME=$TMP DBSOCKET=$TMP/sock PW= TABLE_TYPE=ENGINE=InnoDB sh "$ROOT/scripts/openser_mysql.sh" create >/dev/null
t0=$(date +%s.%N)
mariadb --no-defaults --socket="$TMP/sock" --user=root openser -e \
	"INSERT INTO location (username, contact, received, path, expires, q, callid, cseq,
	   last_modified, flags, cflags, user_agent, socket, methods)
	 SELECT CONCAT('user', seq), CONCAT('sip:user', seq, '@127.0.0.1:5070'), '', '',
	   NOW() + INTERVAL 1 DAY, -1, CONCAT(seq, '-preload@127.0.0.1'), 1, NOW(), 0, 0,
	   'sipp-bench', 'udp:127.0.0.1:$SIPPORT', -1 FROM seq_1_to_$ROWS"
t1=$(date +%s.%N)
echo "preload: $ROWS rows inserted in $(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}') s"

cat >"$TMP/openser.cfg" <<EOF
debug=3
log_stderror=yes
fork=yes
children=2
listen=udp:127.0.0.1:$SIPPORT
disable_tcp=yes
loadmodule "mysql.so"
loadmodule "sl.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
modparam("usrloc", "db_url", "mysql://openser:openserrw@127.0.0.1:$DBPORT/openser")
modparam("usrloc", "db_mode", 1)
route {
	if (method=="REGISTER") { save("location"); exit; };
	if (!lookup("location")) { sl_send_reply("404", "Not Found"); exit; };
	sl_send_reply("299", "Found \$ru");
}
EOF
s0=$(date +%s.%N)
"$BIN" -DD -E -m "$MEM" -f "$TMP/openser.cfg" >"$TMP/openser.log" 2>&1 &
SRVPID=$!
for _ in $(seq 1 6000); do
	grep -q "contact(s) of table location" "$TMP/openser.log" && break
	kill -0 "$SRVPID" 2>/dev/null || { cat "$TMP/openser.log"; exit 1; }
	sleep 0.05
done
s1=$(date +%s.%N)
line=$(grep "contact(s) of table location" "$TMP/openser.log")
echo "preload: ${line#* INFO:} after $(awk -v a="$s0" -v b="$s1" 'BEGIN {printf "%.1f", b - a}') s"
echo "preload: attendant RSS $(awk '/^VmRSS/ {print $2, $3}' /proc/$SRVPID/status)"
python3 - "$SIPPORT" <<'PY'
import socket, sys
port = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0)); s.settimeout(5)
me = s.getsockname()[1]
msg = (f"OPTIONS sip:user777777@127.0.0.1:{port} SIP/2.0\r\n"
       f"Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bKpreload1\r\n"
       f"From: <sip:probe@127.0.0.1>;tag=p1\r\nTo: <sip:user777777@127.0.0.1>\r\n"
       f"Call-ID: preload-probe\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
s.sendto(msg.encode(), ("127.0.0.1", port))
print("preload: lookup of user777777 ->", s.recv(65535).decode().split("\r\n")[0])
PY
