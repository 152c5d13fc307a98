#!/usr/bin/env bash
# inflight.sh [openser|kamailio ...] — the cost of transactions in flight.
#
# For each server: CPU per stateful call at a fixed rate with the transaction table
# empty, then again with FILL INVITE transactions held ringing (routed to a UAS that
# answers 180 and never 200; fr_inv_timer 600 s), and the proxy's CPU while idle in
# both states (what its timer costs). Configs: bench/openser-inflight.cfg,
# bench/kamailio-inflight.cfg (the stateful configs plus the "ring" route).
#
# The filling SIPp gives up on an INVITE whose 180 has not come in 10 s (-recv_timeout):
# a 180 lost in a full receive buffer would otherwise keep it waiting for ever (SIPp
# does not retransmit an INVITE that has had its 100). "filled" counts the 180s.
#
# Environment: FILL (200000), FILL_RATE (4000/s), RATE (1000 cps), DUR (20 s of
# calls per measurement), IDLE (10 s), MEM (-m, 4096: Kamailio keeps ~15 KiB per
# transaction), BIN (the release build), OUT (target/bench/inflight-<date>).
# Loopback only; SIPp on 5070 (UAS), 5072 (ringing UAS), 5080/5082 (UACs).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SCEN=$ROOT/../shared/bench/scenarios
FILL=${FILL:-200000}
FILL_RATE=${FILL_RATE:-4000}
RATE=${RATE:-1000}
DUR=${DUR:-20}
IDLE=${IDLE:-10}
MEM=${MEM:-4096}
BIN=${BIN:-$ROOT/target/release/openser}
OUT=${OUT:-$ROOT/target/bench/inflight-$(date +%Y%m%d-%H%M%S)}
SERVERS=${*:-openser kamailio}
mkdir -p "$OUT"

tree_pids() {
	local p
	for p in "$@"; do
		echo "$p"
		tree_pids $(ps -o pid= --ppid "$p" 2>/dev/null)
	done
}
ticks() { # user+system ticks of the proxy's process tree
	local t=0 p v
	for p in $(tree_pids "$1"); do
		v=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$p/stat" 2>/dev/null) || continue
		t=$((t + ${v:-0}))
	done
	echo "$t"
}
hz=$(getconf CLK_TCK)

calls() { # dir rate count: normal calls; prints "successful failed"
	sipp -sf "$SCEN/uac.xml" -s bob -i 127.0.0.1 -p 5080 -m "$3" -r "$2" -d 50 -nostdin \
		-trace_stat -stf "$1/uac.csv" 127.0.0.1:5060 >"$1/uac.out" 2>&1
	awk -F';' 'NR==1 {for (i=1;i<=NF;i++) {if ($i=="SuccessfulCall(C)") s=i; if ($i=="FailedCall(C)") f=i}} END {print $s+0, $f+0}' "$1/uac.csv"
}

measure() { # name pid label: CPU per call at RATE, and idle CPU
	local d=$OUT/$1/$3 t0 t1 ok fail n=$((RATE * DUR))
	mkdir -p "$d"
	t0=$(ticks "$2"); sleep "$IDLE"; t1=$(ticks "$2")
	local idle
	idle=$(awk -v t=$((t1 - t0)) -v hz="$hz" -v s="$IDLE" 'BEGIN {printf "%.1f", 100 * t / hz / s}')
	t0=$(ticks "$2")
	read -r ok fail < <(calls "$d" "$RATE" "$n")
	t1=$(ticks "$2")
	local per
	per=$(awk -v t=$((t1 - t0)) -v hz="$hz" -v n="$ok" 'BEGIN {printf "%.1f", (n > 0) ? 1e6 * t / hz / n : 0}')
	echo "$1 $3 idle_cpu=${idle}% calls=$ok failed=$fail cpu_per_call=${per}us" | tee -a "$OUT/summary.txt"
}

for s in $SERVERS; do
	case $s in
	openser) cmd="$BIN -DD -E -m $MEM -f $HERE/openser-inflight.cfg" ;;
	kamailio) command -v kamailio >/dev/null || { echo "kamailio not installed" >&2; continue; }
		cmd="kamailio -DD -E -m $MEM -f $HERE/kamailio-inflight.cfg" ;;
	*) echo "unknown server $s" >&2; continue ;;
	esac
	mkdir -p "$OUT/$s"
	sipp -sf "$SCEN/uas.xml" -i 127.0.0.1 -p 5070 -d 50 -nostdin >/dev/null 2>&1 &
	uas=$!
	sipp -sf "$HERE/scenarios/ring_uas.xml" -i 127.0.0.1 -p 5072 -nostdin >/dev/null 2>&1 &
	ruas=$!
	$cmd >"$OUT/$s/server.log" 2>&1 &
	pid=$!
	sleep 3
	measure "$s" "$pid" empty
	sipp -sf "$HERE/scenarios/ring_uac.xml" -i 127.0.0.1 -p 5082 -m "$FILL" -r "$FILL_RATE" \
		-nostdin -recv_timeout 10000 -trace_stat -stf "$OUT/$s/fill.csv" 127.0.0.1:5060 >"$OUT/$s/fill.out" 2>&1
	filled=$(awk -F';' 'NR==1 {for (i=1;i<=NF;i++) if ($i=="SuccessfulCall(C)") c=i} END {print $c+0}' "$OUT/$s/fill.csv")
	echo "$s filled=$filled ringing transactions" | tee -a "$OUT/summary.txt"
	measure "$s" "$pid" full
	kill "$pid" "$uas" "$ruas" 2>/dev/null
	wait "$pid" 2>/dev/null
	sleep 1
done
cat "$OUT/summary.txt"
