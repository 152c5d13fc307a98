#!/usr/bin/env bash
# Authenticated REGISTERs per second against a database: openser-rs and, when
# installed (kamailio + kamailio-{mysql,postgres,sqlite}-modules), Kamailio, on the
# same machine in the same run, against the same private database: MariaDB or
# PostgreSQL started here on a temp datadir (TCP 127.0.0.1), or an SQLite file.
#
# One "call" = REGISTER, 401 challenge, REGISTER with digest credentials, 200
# (bench/reg_auth_bench.xml; users from a CSV, one distinct user per call). Each rate
# step runs STEP_SECS seconds against a freshly started server with an empty location
# table; a step passes with 0 failed calls, 0 retransmissions and >= 90 % of the rate
# (measured over the whole SIPp run, start and drain included).
# Prints, per server, the highest passing rate and the server's CPU at that rate.
#
#   ENGINE=mysql    mysql | pgsql | sqlite
#   DBMODE=1        usrloc db_mode for both servers (0 memory, 1 write-through)
#   RATES="..."     rates to try, ascending (default 500 1000 1500 2000 3000 4000 5000 6000)
#   STEP_SECS=15    seconds per step
#   USERS=100000    subscribers created
# Run it inside a private network namespace on a quiet machine, as bench/RESULTS.md says.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"
ROOT=$(cd "$HERE/.." && pwd)
DBMODE=${DBMODE:-1}
ENGINE=${ENGINE:-mysql}
RATES=${RATES:-500 1000 1500 2000 3000 4000 5000 6000}
STEP_SECS=${STEP_SECS:-15}
USERS=${USERS:-100000}
BIN=$ROOT/target/release/openser
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release)
command -v sipp >/dev/null || { echo "auth_bench: sipp (sip-tester) is needed" >&2; exit 2; }
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
KMODDIR=/usr/lib/x86_64-linux-gnu/kamailio/modules

case "$ENGINE" in
mysql)
	MARIADBD=$(command -v mariadbd || echo /usr/sbin/mariadbd)
	[ -x "$MARIADBD" ] || { echo "auth_bench: mariadbd (mariadb-server) is needed" >&2; exit 2; }
	mariadb-install-db --no-defaults --datadir="$TMP/db" --auth-root-authentication-method=normal \
		--user=root >"$TMP/install.log" 2>&1
	"$MARIADBD" --no-defaults --datadir="$TMP/db" --socket="$TMP/sock" --port="$DBPORT" \
		--bind-address=127.0.0.1 --user=root --tmpdir="$TMP" --max-connections=500 \
		>"$TMP/mariadbd.log" 2>&1 &
	DBPID=$!
	for _ in $(seq 1 100); do [ -S "$TMP/sock" ] && break; sleep 0.1; done
	dbq() { mariadb --no-defaults --socket="$TMP/sock" --user=root -N "$1" -e "$2"; }
	HOME=$TMP DBSOCKET=$TMP/sock PW= TABLE_TYPE=${TABLE_TYPE:-ENGINE=InnoDB} sh "$ROOT/scripts/openser_mysql.sh" create >/dev/null
	dbq openser "INSERT INTO subscriber (username, domain, password)
	     SELECT CONCAT('u', seq), '127.0.0.1', CONCAT('pw', seq) FROM seq_1_to_$USERS"
	DBURL="mysql://openser:openserrw@127.0.0.1:$DBPORT/openser"
	OMOD=mysql KMOD=db_mysql KSQL=/usr/share/kamailio/mysql
	KDBURL="mysql://openser:openserrw@127.0.0.1:$DBPORT/kamailio"
	if [ -d "$KSQL" ]; then
		dbq "" "CREATE DATABASE kamailio; GRANT ALL ON kamailio.* TO 'openser'@'%'; GRANT ALL ON kamailio.* TO 'openser'@'localhost'"
		for f in standard auth_db usrloc; do
			mariadb --no-defaults --socket="$TMP/sock" --user=root kamailio <"$KSQL/$f-create.sql"
		done
		dbq kamailio "INSERT INTO subscriber (username, domain, password)
			 SELECT CONCAT('u', seq), '127.0.0.1', CONCAT('pw', seq) FROM seq_1_to_$USERS"
	fi ;;
pgsql)
	PGBIN=$(ls -d /usr/lib/postgresql/*/bin | tail -1)
	[ -x "$PGBIN/postgres" ] || { echo "auth_bench: postgresql is needed" >&2; exit 2; }
	RUNAS=
	[ "$(id -u)" = 0 ] && RUNAS="runuser -u postgres --" && chown postgres "$TMP"
	$RUNAS "$PGBIN/initdb" -D "$TMP/db" -U postgres --auth-local=trust --auth-host=trust -E UTF8 --locale=C --no-sync >"$TMP/install.log" 2>&1
	$RUNAS "$PGBIN/postgres" -D "$TMP/db" -k "$TMP" -p "$DBPORT" -c listen_addresses=127.0.0.1 \
		-c max_connections=200 >"$TMP/postgres.log" 2>&1 &
	DBPID=$!
	for _ in $(seq 1 100); do [ -S "$TMP/.s.PGSQL.$DBPORT" ] && break; sleep 0.1; done
	dbq() { "$PGBIN/psql" -X -q -A -t -h "$TMP" -p "$DBPORT" -U postgres -d "${1:-postgres}" -c "$2"; }
	HOME=$TMP DBENGINE=PGSQL DBHOST=$TMP DBPORT=$DBPORT PW= PSQL=$PGBIN/psql sh "$ROOT/scripts/openser_postgresql.sh" create >/dev/null
	dbq openser "INSERT INTO subscriber (username, domain, password)
	     SELECT 'u' || g, '127.0.0.1', 'pw' || g FROM generate_series(1, $USERS) g"
	DBURL="postgres://openser:openserrw@127.0.0.1:$DBPORT/openser"
	OMOD=postgres KMOD=db_postgres KSQL=/usr/share/kamailio/postgres
	KDBURL="postgres://openser:openserrw@127.0.0.1:$DBPORT/kamailio"
	if [ -d "$KSQL" ]; then
		dbq "" "CREATE DATABASE kamailio OWNER openser"
		for f in standard auth_db usrloc; do
			"$PGBIN/psql" -X -q -h "$TMP" -p "$DBPORT" -U openser -d kamailio -f "$KSQL/$f-create.sql" >/dev/null
		done
		dbq kamailio "INSERT INTO subscriber (username, domain, password)
			 SELECT 'u' || g, '127.0.0.1', 'pw' || g FROM generate_series(1, $USERS) g"
	fi ;;
sqlite)
	command -v sqlite3 >/dev/null || { echo "auth_bench: sqlite3 is needed" >&2; exit 2; }
	dbq() { sqlite3 -cmd ".timeout 5000" "$TMP/$1.sqlite" "$2"; }
	HOME=$TMP DB_PATH=$TMP/openser.sqlite sh "$ROOT/scripts/openser_sqlite.sh" create >/dev/null
	dbq openser "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < $USERS)
	     INSERT INTO subscriber (username, domain, password) SELECT 'u' || n, '127.0.0.1', 'pw' || n FROM g"
	DBURL="sqlite://$TMP/openser.sqlite"
	OMOD=db_sqlite KMOD=db_sqlite KSQL=/usr/share/kamailio/db_sqlite
	KDBURL="sqlite://$TMP/kamailio.sqlite"
	if [ -d "$KSQL" ]; then
		for f in standard auth_db usrloc; do sqlite3 "$TMP/kamailio.sqlite" <"$KSQL/$f-create.sql"; done
		dbq kamailio "PRAGMA journal_mode=WAL; WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < $USERS)
		     INSERT INTO subscriber (username, domain, password) SELECT 'u' || n, '127.0.0.1', 'pw' || n FROM g" >/dev/null
	fi ;;
*) echo "auth_bench: ENGINE is mysql, pgsql or sqlite" >&2; exit 2 ;;
esac
{
	echo SEQUENTIAL
	seq 1 "$USERS" | sed 's/.*/u&;[authentication username=u& password=pw&]/'
} >"$TMP/users.csv"

run_server() { # name cmd-template
	local name=$1 tmpl=$2 best=0 best_cpu=- rate rows
	local url=$DBURL db=openser
	[ "$name" = kamailio ] && url=$KDBURL && db=kamailio
	sed "s|DBURL|$url|; s|DBMODE|$DBMODE|; s|\"mysql.so\"|\"$OMOD.so\"|; s|\"db_mysql.so\"|\"$KMOD.so\"|" \
		"$HERE/$name-auth.cfg" >"$TMP/$name.cfg"
	for rate in $RATES; do
		dbq "$db" "DELETE FROM location" >/dev/null
		reg_auth_step "$name" "$tmpl" "$rate" || exit 1
		rows=$(dbq "$db" "SELECT COUNT(*) FROM location")
		echo "  $name rate=$rate ${STEP#* } location_rows=$rows"
		if [ "${STEP%% *}" = 1 ]; then
			best=$rate
			best_cpu=$(echo "$STEP" | sed 's/.*cpu=\([0-9]*%\).*/\1/')
		else
			tail -3 "$TMP/$name.log" | sed 's/^/    log: /'
			break
		fi
	done
	echo "$name $best $best_cpu"
}

echo "== authenticated REGISTER on $ENGINE, usrloc db_mode $DBMODE, $STEP_SECS s per step"
R1=$(run_server openser "$BIN -DD -E -m 512 -f CFG" | tee /dev/stderr | tail -1)
if command -v kamailio >/dev/null && [ -e "$KMODDIR/$KMOD.so" ] && [ -d "$KSQL" ]; then
	R2=$(run_server kamailio "kamailio -DD -E -m 512 -f CFG" | tee /dev/stderr | tail -1)
	echo "$R1 / $R2" | awk '{printf "max authenticated REGISTERs/s: openser-rs %s (CPU %s), Kamailio %s (CPU %s), ratio %.2f\n", $2, $3, $6, $7, ($6 > 0 ? $2/$6 : 0)}'
else
	echo "$R1"
fi
