#!/usr/bin/env bash
# bench/cluster_bench.sh — several openser instances behind a dispatcher front, sharing a
# MariaDB Galera cluster (issue 20, docs/scaling.md).
#
# Starts a 3-node Galera cluster on 127.0.0.1 (rsync SST, data under $OUT), then for each
# instance count N in $INSTANCES: N openser instances (usrloc db_mode 3, instance i on
# Galera node i) and one front (dispatcher round-robin, stateful). At each rate of $RATES
# it runs SIPp for $DUR seconds through the front:
#   register  one new user per REGISTER (bench/cluster_reg.xml): save() = 1 SELECT + 1 INSERT
#   refresh   the same users again (run after register): save() = 1 SELECT + 1 UPDATE
#   call      INVITE/180/200/ACK/BYE to one registered user (lookup() = 1 SELECT per INVITE)
# and prints one line per step:
#   <kind> N=<n> rate=<r> ok=<calls> failed=<f> retrans=<r> inst_ms=<CPU ms per op, all
#   instances> front_ms=<CPU ms per op, front> db_ms=<mariadbd CPU ms per op, 3 nodes,
#   minus their idle CPU over the same time> ws=<Galera write sets per op>
#   ws_bytes=<replicated bytes per op> db1_ms.. db3_ms=<each node's CPU ms per op, idle
#   included; instance i uses node i, so with N=1 node 1 originates every write set>
# then the highest passing rate (0 failed, 0 retransmissions) per kind and N.
# CPU comes from /proc/<pid>/stat (utime+stime) of every process: only meaningful on a
# quiet machine. Write sets and bytes do not depend on the load.
#
# Usage: bench/cluster_bench.sh         (builds the release binary unless BIN is set)
# Env:   INSTANCES="1 2 3"  RATES="250 500 1000 2000 4000"  DUR=10  BASE_PORT=26000
#        KINDS="register refresh call"  OUT=bench/results/cluster-<date>  BIN=path/to/openser
#        SIPP_EXTRA="-trace_err -trace_msg" (extra SIPp options of the UAS and the measured
#        runs; traces land in $OUT)
# Smoke: BIN=target/debug/openser INSTANCES="1 2" RATES=50 DUR=2 bench/cluster_bench.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
command -v sipp >/dev/null || { echo "sipp (Debian sip-tester) is needed" >&2; exit 2; }
command -v bc >/dev/null || { echo "bc is needed" >&2; exit 2; }
command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || { echo "mariadb-server is needed" >&2; exit 2; }
PATH=$PATH:/usr/sbin
PROVIDER=${PROVIDER:-/usr/lib/galera/libgalera_smm.so}
[ -f "$PROVIDER" ] || { echo "galera-4 is needed ($PROVIDER)" >&2; exit 2; }
if [ -z "${BIN:-}" ]; then
	cargo build --release --manifest-path "$ROOT/Cargo.toml" >&2
	BIN=$ROOT/target/release/openser
fi
INSTANCES=${INSTANCES:-1 2 3}
RATES=${RATES:-250 500 1000 2000 4000}
DUR=${DUR:-10}
KINDS=${KINDS:-register refresh call}
BP=${BASE_PORT:-26000}
OUT=${OUT:-$ROOT/bench/results/cluster-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
SIPP_DIR=$ROOT/tests/data/sipp

PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT

# ---------------------------------------------------------------- Galera
gport() { echo $((BP + 100 + $1)); }   # group communication
sport() { echo $((BP + 110 + $1)); }   # SQL
iport() { echo $((BP + 120 + $1)); }   # IST
tport() { echo $((BP + 130 + $1)); }   # SST
ADDR="gcomm://127.0.0.1:$(gport 1),127.0.0.1:$(gport 2),127.0.0.1:$(gport 3)"
NODE_PID=()
sq() { mariadb --no-defaults --socket="$OUT/node$1/sock" -uroot -N -B -e "$2" 2>/dev/null; }
st() { sq "$1" "SHOW STATUS LIKE '$2'" | cut -f2; }
start_node() {
	local n=$1 d=$OUT/node$1
	mkdir -p "$d/tmp"
	if [ ! -d "$d/data" ]; then
		if [ "$n" = 1 ]; then
			mariadb-install-db --no-defaults --datadir="$d/data" --tmpdir="$d/tmp" \
				--auth-root-authentication-method=normal --user=root --skip-test-db >"$d/install.log" 2>&1
		else
			mkdir -p "$d/data"
			# as root, the SST's rsync daemon runs as nobody: let it write the datadir
			[ "$(id -u)" = 0 ] && chown nobody "$d/data"
		fi
	fi
	local boot=
	[ "$n" = 1 ] && boot=--wsrep-new-cluster
	mariadbd --no-defaults --datadir="$d/data" --socket="$d/sock" --tmpdir="$d/tmp" \
		--pid-file="$d/pid" --port="$(sport "$n")" --bind-address=127.0.0.1 --user=root \
		--innodb-buffer-pool-size=64M --binlog-format=ROW --innodb-autoinc-lock-mode=2 \
		--wsrep-on=ON --wsrep-provider="$PROVIDER" --wsrep-cluster-address="$ADDR" \
		--wsrep-cluster-name=openser-bench --wsrep-node-name="node$n" \
		--wsrep-node-address="127.0.0.1:$(gport "$n")" \
		--wsrep-provider-options="gmcast.listen_addr=tcp://127.0.0.1:$(gport "$n"); ist.recv_addr=127.0.0.1:$(iport "$n"); gcache.size=128M" \
		--wsrep-sst-receive-address="127.0.0.1:$(tport "$n")" --wsrep-sst-method=rsync \
		$boot >"$d/mariadbd.log" 2>&1 &
	NODE_PID[$n]=$!
	PIDS+=($!)
	local i=0
	until [ "$(st "$n" wsrep_local_state_comment)" = Synced ]; do
		sleep 0.2
		i=$((i + 1))
		[ $i -lt 900 ] || { echo "node $n not synced; see $d/mariadbd.log" >&2; exit 1; }
		kill -0 "${NODE_PID[$n]}" 2>/dev/null || { echo "node $n died; see $d/mariadbd.log" >&2; exit 1; }
	done
}
t0=$(date +%s)
for n in 1 2 3; do start_node $n; done
echo "galera: 3 nodes synced in $(($(date +%s) - t0)) s (size $(st 1 wsrep_cluster_size))" >&2
DBSOCKET=$OUT/node1/sock PW= HOME=$OUT sh "$ROOT/scripts/openser_mysql.sh" create >"$OUT/schema.log" 2>&1

# ---------------------------------------------------------------- measurements
ticks() { # utime+stime of the given pids and all their children
	local t=0 p
	for p in "$@"; do
		for q in $p $(ps -o pid= --ppid "$p" 2>/dev/null); do
			[ -r "/proc/$q/stat" ] || continue
			t=$((t + $(sed 's/.*) //' "/proc/$q/stat" | awk '{print $12 + $13}')))
		done
	done
	echo $t
}
ws() { local s=0 n; for n in 1 2 3; do s=$((s + $(st $n "$1"))); done; echo $s; }
HZ=$(getconf CLK_TCK)
# the three servers' idle CPU (Galera keepalives, InnoDB background), subtracted below
IDLE_S=${IDLE_S:-10}
d0=$(ticks "${NODE_PID[@]}"); sleep "$IDLE_S"; d1=$(ticks "${NODE_PID[@]}")
IDLE_TPS=$(echo "($d1 - $d0) / $IDLE_S" | bc -l)
printf 'mariadbd idle: %.1f ms CPU per second (3 nodes)\n' "$(echo "$IDLE_TPS * 1000 / $HZ" | bc -l)" >&2
stat_col() { # column $2 of the last line of SIPp statistics file $1
	awk -F';' -v c="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == c) k = i } END { print (k ? $k : 0) + 0 }' "$1"
}

# ---------------------------------------------------------------- openser
inst_cfg() { # port node
	cat <<EOF
listen=udp:127.0.0.1:$1
children=4
log_stderror=yes
debug=${DEBUG:-1}
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "mysql.so"
loadmodule "maxfwd.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "rr.so"
modparam("usrloc", "db_mode", 3)
modparam("usrloc", "db_url", "mysql://openser:openserrw@127.0.0.1:$(sport "$2")/openser")
route {
    if (!mf_process_maxfwd_header("10")) { sl_send_reply("483", "Too Many Hops"); exit; }
    if (method == "OPTIONS") {
        rewriteuser("dbcheck");
        lookup("location");
        if (\$rc == -3) { sl_send_reply("503", "Location database unavailable"); exit; }
        sl_send_reply("200", "OK");
        exit;
    }
    # in-dialog requests follow the route set: the instance that relayed the INVITE
    # sees the ACK and BYE (a UAS may answer them to where the INVITE came from)
    if (loose_route()) { t_relay(); exit; }
    if (method == "REGISTER") { save("location"); exit; }
    if (method == "INVITE") {
        if (!lookup("location")) {
            if (\$rc == -3) { sl_send_reply("500", "Server Internal Error"); } else { sl_send_reply("404", "Not Found"); }
            exit;
        }
        record_route();
    }
    t_relay();
}
EOF
}
front_cfg() { # port list
	cat <<EOF
listen=udp:127.0.0.1:$1
children=4
log_stderror=yes
debug=${DEBUG:-1}
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "maxfwd.so"
loadmodule "dispatcher.so"
loadmodule "rr.so"
modparam("dispatcher", "list_file", "$2")
modparam("dispatcher", "ds_ping_interval", 0)
route {
    if (!mf_process_maxfwd_header("10")) { sl_send_reply("483", "Too Many Hops"); exit; }
    if (loose_route()) { t_relay(); exit; }
    if (method == "ACK") { t_relay(); exit; }
    if (!ds_select_dst("1", "4")) { sl_send_reply("503", "No instance"); exit; }
    if (method == "INVITE") { record_route(); }
    t_relay();
}
EOF
}
start_openser() { # name cfg-text -> pid in $LAST
	echo "$2" >"$OUT/$1.cfg"
	"$BIN" -f "$OUT/$1.cfg" -DD -E -m 256 >"$OUT/$1.log" 2>&1 &
	LAST=$!
	PIDS+=($LAST)
}
FRONT=$((BP + 1))
UASP=$((BP + 2))
# -d 50 between 180 and 200 (and -d 50 before the UAC's BYE below), as run-pair.sh's
# RING_MS/HOLD_MS: sent back to back, the two replies can be reordered by the workers of
# the two proxies on the way, and SIPp then fails the call.
# shellcheck disable=SC2086 # SIPP_EXTRA is a list of options
(cd "$OUT" && exec sipp -sf "$SIPP_DIR/uas.xml" -i 127.0.0.1 -p "$UASP" -d 50 -nostdin ${SIPP_EXTRA:-} >"$OUT/uas.out" 2>&1) &
PIDS+=($!)

SUMMARY=()
for N in $INSTANCES; do
	: >"$OUT/list-$N"
	IPIDS=()
	for i in $(seq 1 "$N"); do
		echo "1 sip:127.0.0.1:$((BP + 10 + i))" >>"$OUT/list-$N"
		start_openser "inst$i-N$N" "$(inst_cfg $((BP + 10 + i)) "$i")"
		IPIDS+=($LAST)
	done
	start_openser "front-N$N" "$(front_cfg "$FRONT" "$OUT/list-$N")"
	FPID=$LAST
	sleep 1.5
	sipp -sf "$SIPP_DIR/reg.xml" "127.0.0.1:$FRONT" -s callee -key contact_port "$UASP" \
		-i 127.0.0.1 -p $((BP + 3)) -m 1 -nostdin -timeout 10 >/dev/null 2>&1 ||
		{ echo "registering the callee failed (N=$N)" >&2; exit 1; }
	for kind in $KINDS; do
		best=0
		for r in $RATES; do
			stf=$OUT/$kind-N$N-r$r.csv
			m=$((r * DUR))
			i0=$(ticks "${IPIDS[@]}"); f0=$(ticks "$FPID"); d0=$(ticks "${NODE_PID[@]}"); s0=$(date +%s.%N)
			n0=(0 "$(ticks "${NODE_PID[1]}")" "$(ticks "${NODE_PID[2]}")" "$(ticks "${NODE_PID[3]}")")
			w0=$(ws wsrep_replicated); b0=$(ws wsrep_replicated_bytes)
			if [ "$kind" = register ] || [ "$kind" = refresh ]; then
				args=(-sf "$ROOT/bench/cluster_reg.xml" -s "n${N}r${r}u")
			else
				args=(-sf "$SIPP_DIR/uac.xml" -s callee -d 50)
			fi
			# shellcheck disable=SC2086 # SIPP_EXTRA is a list of options
			(cd "$OUT" && sipp "${args[@]}" "127.0.0.1:$FRONT" -i 127.0.0.1 -p $((BP + 4)) -r "$r" -m "$m" \
				-trace_stat -stf "$stf" -fd 1 -nostdin -timeout $((DUR + 30)) ${SIPP_EXTRA:-} >/dev/null 2>&1) || true
			i1=$(ticks "${IPIDS[@]}"); f1=$(ticks "$FPID"); d1=$(ticks "${NODE_PID[@]}"); s1=$(date +%s.%N)
			n1=(0 "$(ticks "${NODE_PID[1]}")" "$(ticks "${NODE_PID[2]}")" "$(ticks "${NODE_PID[3]}")")
			w1=$(ws wsrep_replicated); b1=$(ws wsrep_replicated_bytes)
			ok=$(stat_col "$stf" 'SuccessfulCall(C)')
			failed=$(stat_col "$stf" 'FailedCall(C)')
			retrans=$(stat_col "$stf" 'Retransmissions(C)')
			ops=$((ok > 0 ? ok : 1))
			pernode=""
			for k in 1 2 3; do
				pernode+=$(printf ' db%s_ms=%.3f' "$k" "$(echo "(${n1[$k]} - ${n0[$k]}) * 1000 / $HZ / $ops" | bc -l)")
			done
			printf '%s N=%s rate=%s ok=%s failed=%s retrans=%s inst_ms=%.3f front_ms=%.3f db_ms=%.3f ws=%.2f ws_bytes=%.0f%s\n' \
				"$kind" "$N" "$r" "$ok" "$failed" "$retrans" \
				"$(echo "($i1 - $i0) * 1000 / $HZ / $ops" | bc -l)" \
				"$(echo "($f1 - $f0) * 1000 / $HZ / $ops" | bc -l)" \
				"$(echo "($d1 - $d0 - $IDLE_TPS * ($s1 - $s0)) * 1000 / $HZ / $ops" | bc -l)" \
				"$(echo "($w1 - $w0) / $ops" | bc -l)" \
				"$(echo "($b1 - $b0) / $ops" | bc -l)" "$pernode" | tee -a "$OUT/steps.txt"
			if [ "$failed" = 0 ] && [ "$retrans" = 0 ] && [ "$ok" = "$m" ]; then best=$r; else break; fi
		done
		SUMMARY+=("$kind N=$N max_rate=$best")
	done
	for p in "${IPIDS[@]}" "$FPID"; do kill "$p" 2>/dev/null || true; done
	for p in "${IPIDS[@]}" "$FPID"; do wait "$p" 2>/dev/null || true; done
	sq 1 "DELETE FROM openser.location" || true
done
printf '%s\n' "${SUMMARY[@]}" | tee "$OUT/summary.txt"
echo "rows on the 3 nodes: $(sq 1 'SELECT COUNT(*) FROM openser.location') $(sq 2 'SELECT COUNT(*) FROM openser.location') $(sq 3 'SELECT COUNT(*) FROM openser.location')" >&2
