#!/usr/bin/env bash
# bench/production_bench.sh — etc/examples/production.cfg against Kamailio 5.6 running
# the same logic (bench/kamailio-production.cfg, kamailio-mysql-modules), on the same
# private MariaDB in the same run.
#
# One call (bench/prod_uac.xml): a subscriber of our domain calls another one who is
# registered (USERS location rows preloaded, contacts at a SIPp UAS on 127.0.0.1:5070):
# INVITE, 407, ACK, INVITE with digest credentials (auth_db: a subscriber query),
# is_from_local/is_uri_host_local (domain, cached), allow_trusted (cached), pike,
# sip_trace (tracing off), check_from, avp_db_load of the callee's preferences (a
# usr_preferences query), lookup, t_relay; 100/180/200, ACK and BYE through the
# record-route. pike's density is raised to DENSITY on both (SIPp is one source).
#
# Default: CPU cost per call as callgrind instruction counts (valid on a busy
# machine): each proxy with its whole process tree under
# `valgrind --tool=callgrind --trace-children=yes`, CALLS calls at RATE cps, minus an
# idle run of the same length; median of REPEAT.
# TIMED=1: rate steps (RATES, STEP_SECS each, fresh server per step); a step passes
# with no failed call and >= 90 % of the rate; prints each server's highest passing
# calls/s and its CPU there. Needs a quiet machine.
#
# Env: USERS (1000), CALLS (500), RATE (20), REPEAT (3), DENSITY (1000000), RATES
# ("100 200 400 800 1200 1600 2000 3000"), STEP_SECS (15), OUT. Needs sipp, mariadbd,
# valgrind (default mode), kamailio + kamailio-mysql-modules for the comparison.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
USERS=${USERS:-1000}
CALLS=${CALLS:-500}
RATE=${RATE:-20}
REPEAT=${REPEAT:-3}
DENSITY=${DENSITY:-1000000}
RATES=${RATES:-100 200 400 800 1200 1600 2000 3000}
STEP_SECS=${STEP_SECS:-15}
OUT=${OUT:-$ROOT/target/bench/production-$(date +%Y%m%d-%H%M%S)}
BIN=$ROOT/target/release/openser
KSQL=/usr/share/kamailio/mysql
mkdir -p "$OUT"
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release)
command -v sipp >/dev/null || { echo "production_bench: sipp is needed" >&2; exit 2; }
MARIADBD=$(command -v mariadbd || echo /usr/sbin/mariadbd)
[ -x "$MARIADBD" ] || { echo "production_bench: mariadbd (mariadb-server) is needed" >&2; exit 2; }
TMP=$(mktemp -d)
DBPID= SRVPID= UASPID=
cleanup() {
	for p in $SRVPID $UASPID $DBPID; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
	rm -rf "$TMP"
}
trap cleanup EXIT

# --- the database: openser's tables and Kamailio's, the same rows in both ---
DBPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mariadb-install-db --no-defaults --datadir="$TMP/db" --auth-root-authentication-method=normal \
	--user=root >"$OUT/install.log" 2>&1
"$MARIADBD" --no-defaults --datadir="$TMP/db" --socket="$TMP/sock" --port="$DBPORT" \
	--bind-address=127.0.0.1 --user=root --tmpdir="$TMP" --max-connections=500 \
	>"$OUT/mariadbd.log" 2>&1 &
DBPID=$!
for _ in $(seq 1 100); do [ -S "$TMP/sock" ] && break; sleep 0.1; done
dbq() { mariadb --no-defaults --socket="$TMP/sock" --user=root -N "$1" -e "$2"; }
HOME=$TMP DBSOCKET=$TMP/sock PW= sh "$ROOT/scripts/openser_mysql.sh" create >/dev/null
DBURL="mysql://openser:openserrw@127.0.0.1:$DBPORT/openser"
KDBURL="mysql://openser:openserrw@127.0.0.1:$DBPORT/kamailio"
D=127.0.0.1
fill() { # db: the rows both servers use
	dbq "$1" "INSERT INTO subscriber (username, domain, password)
		SELECT CONCAT('u', seq), '$D', CONCAT('pw', seq) FROM seq_1_to_$USERS;
	INSERT INTO domain (domain) VALUES ('$D');
	INSERT INTO grp (username, domain, grp) SELECT CONCAT('u', seq), '$D', 'pstn' FROM seq_1_to_$USERS;
	INSERT INTO trusted (src_ip, proto, from_pattern, tag) VALUES ('10.0.0.10', 'udp', NULL, 'gw');
	INSERT INTO usr_preferences (uuid, username, domain, attribute, type, value)
		SELECT '', CONCAT('u', seq), '$D', 'lang', 0, 'en' FROM seq_1_to_$USERS;"
}
fill openser
dbq openser "INSERT INTO location (username, domain, contact, expires, q, callid, cseq, flags, cflags, user_agent, socket, methods)
	SELECT CONCAT('u', seq), '', CONCAT('sip:u', seq, '@127.0.0.1:5070'), '2037-01-01 00:00:00', 1.0,
	CONCAT('c', seq), 1, 0, 0, 'bench', '', NULL FROM seq_1_to_$USERS"
HAVE_KAM=
if command -v kamailio >/dev/null && [ -d "$KSQL" ]; then
	HAVE_KAM=1
	dbq "" "CREATE DATABASE kamailio; GRANT ALL ON kamailio.* TO 'openser'@'%'; GRANT ALL ON kamailio.* TO 'openser'@'localhost'"
	for f in standard auth_db usrloc domain group avpops permissions siptrace uri_db; do
		mariadb --no-defaults --socket="$TMP/sock" --user=root kamailio <"$KSQL/$f-create.sql"
	done
	fill kamailio
	dbq kamailio "INSERT INTO location (ruid, username, domain, contact, expires, q, callid, cseq, flags, cflags, user_agent)
		SELECT CONCAT('r', seq), CONCAT('u', seq), NULL, CONCAT('sip:u', seq, '@127.0.0.1:5070'), '2037-01-01 00:00:00', 1.0,
		CONCAT('c', seq), 1, 0, 0, 'bench' FROM seq_1_to_$USERS"
fi
{
	echo RANDOM
	for i in $(seq 1 "$USERS"); do
		j=$(( (i % USERS) + 1 ))
		echo "u$i;[authentication username=u$i password=pw$i];u$j"
	done
} >"$OUT/calls.csv"

# --- the two configurations ---
sed -e "s|mysql://openser:openserrw@localhost/openser|$DBURL|" \
	-e "s|\"reqs_density_per_unit\", 30|\"reqs_density_per_unit\", $DENSITY|" \
	-e "s|\"/tmp/openser_fifo\"|\"$TMP/openser_fifo\"|" \
	"$ROOT/etc/examples/production.cfg" >"$OUT/openser.cfg"
sed -e "s|DBURL|$KDBURL|g; s|DENSITY|$DENSITY|; s|\"GW\"|\"10.0.0.10:5060\"|; s|\"LNP\"|\"/bin/false\"|" \
	"$HERE/kamailio-production.cfg" >"$OUT/kamailio.cfg"
# one receiver for the instruction counts
sed -e 's/^children=.*/children=1/' "$OUT/openser.cfg" >"$OUT/openser-1.cfg"
sed -e 's/^children=.*/children=1/' "$OUT/kamailio.cfg" >"$OUT/kamailio-1.cfg"

sipp -sf "$ROOT/tests/data/sipp/uas.xml" -i 127.0.0.1 -p 5070 -nostdin >"$OUT/uas.log" 2>&1 &
UASPID=$!

wait_bound() {
	for _ in $(seq 1 200); do
		ss -Hlun 'sport = :5060' | grep -q . && return 0
		sleep 0.1
	done
	return 1
}

calls() { # n rate stat-file
	sipp -sf "$HERE/prod_uac.xml" 127.0.0.1:5060 -inf "$OUT/calls.csv" -i 127.0.0.1 -p 5080 \
		-r "$2" -m "$1" -l $(($2 * 4 + 10)) -nostdin -timeout 600 -trace_stat -stf "$3" \
		>/dev/null 2>&1 || true
}

col() { # stat-file column
	awk -F';' -v c="$2" 'NR==1 {for (i=1;i<=NF;i++) if ($i==c) k=i} END {print $k+0}' "$1"
}

if [ "${TIMED:-0}" != 1 ]; then
	command -v valgrind >/dev/null || { echo "production_bench: valgrind is needed" >&2; exit 2; }
	ir_sum() { cat "$1".* | awk '/^totals:/ {s += $2} END {print s + 0}'; }
	run() { # name calls wall cmd...
		local name=$1 n=$2 wall=$3; shift 3
		rm -f "$OUT/cg-$name".*
		valgrind --tool=callgrind --trace-children=yes --callgrind-out-file="$OUT/cg-$name.%p" \
			"$@" >"$OUT/$name.log" 2>&1 &
		SRVPID=$!
		wait_bound || { echo "$name did not start" >&2; cat "$OUT/$name.log" >&2; exit 1; }
		sleep 3
		local t0
		t0=$(date +%s.%N)
		if [ "$n" -gt 0 ]; then
			calls "$n" "$RATE" "$OUT/$name.csv"
			OKCALLS=$(col "$OUT/$name.csv" 'SuccessfulCall(C)')
		else
			sleep "$wall"
		fi
		WALL=$(echo "$(date +%s.%N) - $t0" | bc)
		kill -TERM $SRVPID; wait $SRVPID 2>/dev/null || true; SRVPID=
		IR=$(ir_sum "$OUT/cg-$name")
	}
	percall() { # name cmd...
		local name=$1; shift
		local vals=()
		for i in $(seq 1 "$REPEAT"); do
			run "$name-calls-$i" "$CALLS" 0 "$@"
			local ir=$IR wall=$WALL ok=$OKCALLS
			[ "$ok" = "$CALLS" ] || echo "$name run $i: only $ok of $CALLS calls succeeded" >&2
			run "$name-idle-$i" 0 "${wall%.*}" "$@"
			local v=$(( (ir - IR) / (ok > 0 ? ok : 1) ))
			echo "$name run $i: $ir Ir with $ok calls in ${wall%.*} s, $IR idle: $v Ir/call" >&2
			vals+=("$v")
		done
		printf '%s\n' "${vals[@]}" | sort -n | sed -n "$(( (REPEAT + 1) / 2 ))p"
	}
	o=$(percall openser "$BIN" -DD -E -m 512 -f "$OUT/openser-1.cfg")
	echo "openser-rs production.cfg:        $o Ir/call" | tee "$OUT/summary.txt"
	if [ -n "$HAVE_KAM" ]; then
		k=$(percall kamailio kamailio -DD -E -m 512 -f "$OUT/kamailio-1.cfg")
		echo "kamailio 5.6 same logic:          $k Ir/call" | tee -a "$OUT/summary.txt"
		echo "ratio kamailio / openser-rs:      $(echo "scale=2; $k / $o" | bc)" | tee -a "$OUT/summary.txt"
	fi
	exit 0
fi

# --- TIMED=1: highest passing rate and CPU ---
cpu_ticks() {
	local t=0 p
	for p in $1 $(pgrep -P "$1" || true); do
		[ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
	done
	echo "$t"
}
steps() { # name cmd...
	local name=$1 best=0 best_cpu=- rate; shift
	for rate in $RATES; do
		"$@" >"$OUT/$name-$rate.log" 2>&1 &
		SRVPID=$!
		wait_bound || { echo "$name did not start" >&2; cat "$OUT/$name-$rate.log" >&2; exit 1; }
		sleep 1
		local n=$((rate * STEP_SECS)) t0 t1 c0 c1 stf=$OUT/$name-$rate.csv
		c0=$(cpu_ticks $SRVPID); t0=$(date +%s.%N)
		calls "$n" "$rate" "$stf"
		t1=$(date +%s.%N); c1=$(cpu_ticks $SRVPID)
		kill -TERM $SRVPID; wait $SRVPID 2>/dev/null || true; SRVPID=
		local ok failed
		ok=$(col "$stf" 'SuccessfulCall(C)'); failed=$(col "$stf" 'FailedCall(C)')
		local line
		line=$(echo "$ok $failed $n $rate $t0 $t1 $c0 $c1" | awk '{w=$6-$5; a=$1/w; cpu=($8-$7)/w; p=($1==$3 && $2==0 && a>=0.9*$4); printf "%d achieved=%.0fcps cpu=%.0f%% ok=%d failed=%d", p, a, cpu, $1, $2}')
		echo "  $name rate=$rate ${line#* }" >&2
		if [ "${line%% *}" = 1 ]; then best=$rate; best_cpu=$(echo "$line" | sed 's/.*cpu=\([0-9]*%\).*/\1/'); else break; fi
	done
	echo "$best $best_cpu"
}
o=$(steps openser "$BIN" -DD -E -m 512 -f "$OUT/openser.cfg")
echo "openser-rs production.cfg: max $o calls/s (CPU)" | tee "$OUT/summary.txt"
if [ -n "$HAVE_KAM" ]; then
	k=$(steps kamailio kamailio -DD -E -m 512 -f "$OUT/kamailio.cfg")
	echo "kamailio 5.6 same logic:   max $k calls/s (CPU)" | tee -a "$OUT/summary.txt"
	echo "$o $k" | awk '{printf "ratio openser-rs / kamailio: %.2f\n", ($3 > 0 ? $1 / $3 : 0)}' | tee -a "$OUT/summary.txt"
fi
