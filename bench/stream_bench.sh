#!/usr/bin/env bash
# TCP and TLS stateful calls against openser-rs and Kamailio 5.6 (Debian packages
# kamailio and kamailio-tls-modules), same machine, same client, equivalent configs
# (openser-{tcp,tls}.cfg, kamailio-{tcp,tls}.cfg, kamailio-tls.conf); with
# TRANSPORTS=udp DISPATCHER=1 the dispatcher round-robin over two UASs instead
# (openser-dispatcher.cfg, kamailio-dispatcher.cfg; see bench/dispatcher_bench.sh).
#
# The client is examples/sipload.rs (Debian's SIPp has no TLS): one process with the
# UAS on 127.0.0.1:5070 (and :5072 for the dispatcher) and a UAC over CONNS connections
# (UDP: sockets) to the proxy, calls
# INVITE/180/200/ACK/BYE/200 record-routed through the proxy's tm. For each transport
# and server, REPEAT searches over RATES find the highest rate at which every call
# completes (and the achieved rate is >= 95% of it); the proxy's CPU (user+system of
# its process tree, from /proc) at that rate is reported as % of a core and as
# microseconds per call. Medians of the REPEAT searches and the openser/kamailio ratios
# are printed last.
#
#   TRANSPORTS="tcp tls"  SERVERS="openser kamailio"  REPEAT=3
#   RATES="250 500 1000 2000 4000 8000"  DUR=10 (seconds of calls per step)
#   CONNS=4 (UAC connections)  OUTBASE=target/bench/stream-<date>
#   REFINE=0 bisection steps after the first failing rate, down to GRAIN=250 cps
#
# Timed runs need a quiet machine. A short check that everything works:
#   REPEAT=1 RATES="200" DUR=3 bench/stream_bench.sh
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
TRANSPORTS=${TRANSPORTS:-tcp tls}
SERVERS=${SERVERS:-openser kamailio}
REPEAT=${REPEAT:-3}
RATES=${RATES:-250 500 1000 2000 4000 8000}
DUR=${DUR:-10}
CONNS=${CONNS:-4}
DISPATCHER=${DISPATCHER:-0}
REFINE=${REFINE:-0}
GRAIN=${GRAIN:-250}
OUTBASE=${OUTBASE:-$ROOT/target/bench/stream-$(date +%Y%m%d-%H%M%S)}
HZ=$(getconf CLK_TCK)

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
(cd "$ROOT" && cargo build --release --bin openser --example sipload)
BIN=$CARGO_TARGET_DIR/release/openser
LOAD=$CARGO_TARGET_DIR/release/examples/sipload
mkdir -p "$OUTBASE"
OUTBASE=$(cd "$OUTBASE" && pwd)

# A throwaway PKI (the servers do not verify certificates in this benchmark).
PKI=$OUTBASE/pki
mkdir -p "$PKI"
if [ ! -s "$PKI/server.pem" ]; then
	(
		cd "$PKI"
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
			-keyout server.key -out server.pem -days 30 -subj /CN=127.0.0.1 \
			-addext subjectAltName=IP:127.0.0.1 2>/dev/null
	)
fi
for f in openser-tcp.cfg openser-tls.cfg kamailio-tcp.cfg kamailio-tls.cfg kamailio-tls.conf; do
	sed "s|@PKI@|$PKI|g" "$HERE/$f" >"$PKI/$f"
done
UAS=(--uas 127.0.0.1:5070)
if [ "$DISPATCHER" = 1 ]; then
	printf '1 sip:127.0.0.1:5070\n1 sip:127.0.0.1:5072\n' >"$PKI/dispatcher.list"
	for s in openser kamailio; do
		sed "s|@LIST@|$PKI/dispatcher.list|" "$HERE/$s-dispatcher.cfg" >"$PKI/$s-udp.cfg"
	done
	UAS+=(--uas 127.0.0.1:5072)
fi

tree_pids() {
	local p c
	for p in "$@"; do
		[ -d "/proc/$p" ] || continue
		echo "$p"
		for c in $(ps -o pid= --ppid "$p" 2>/dev/null); do tree_pids "$c"; done
	done
}
cpu_ticks() {
	local t=0 p v
	for p in "$@"; do
		v=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$p/stat" 2>/dev/null) || continue
		t=$((t + ${v:-0}))
	done
	echo "$t"
}
listening() { [ -n "$(ss -Hnltu "sport = :$1" 2>/dev/null)" ]; }
stop_tree() { # pid: TERM, then KILL what is left of the processes we started
	local pid=$1 pids i p
	pids=$(tree_pids "$pid")
	kill -TERM "$pid" 2>/dev/null || true
	for i in $(seq 1 100); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	for p in $pids; do kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null; done
	wait "$pid" 2>/dev/null || true
}

# step server transport rate dir -> sets PASS, CPU (% of a core), USPC (us per call)
step() {
	local srv=$1 tr=$2 rate=$3 d=$4 port=5060 cfg cmd n pid t0 t1 out rc wall ok cps
	[ "$tr" = tls ] && port=5061
	mkdir -p "$d"
	cfg=$PKI/$srv-$tr.cfg
	case $srv in
	openser) cmd=("$BIN" -DD -E -m 1536 -f "$cfg") ;;
	kamailio) cmd=(kamailio -DD -E -m 1536 -f "$cfg") ;;
	esac
	for _ in $(seq 1 100); do listening $port || break; sleep 0.1; done
	"${cmd[@]}" >"$d/proxy.log" 2>&1 &
	pid=$!
	for _ in $(seq 1 150); do listening $port && break; sleep 0.1; done
	sleep 3 # let the workers finish starting (Kamailio initialises TLS in each)
	n=$((rate * DUR))
	t0=$(cpu_ticks $(tree_pids $pid))
	rc=0
	out=$("$LOAD" --transport "$tr" --proxy 127.0.0.1:$port "${UAS[@]}" \
		--cert "$PKI/server.pem" --key "$PKI/server.key" --rate "$rate" --calls "$n" \
		--conns "$CONNS" 2>"$d/sipload.err") || rc=$?
	t1=$(cpu_ticks $(tree_pids $pid))
	stop_tree $pid
	echo "$out" >"$d/sipload.out"
	wall=$(echo "$out" | sed -n 's/.*wall=\([0-9.]*\).*/\1/p')
	ok=$(echo "$out" | sed -n 's/.*ok=\([0-9]*\).*/\1/p')
	cps=$(echo "$out" | sed -n 's/.*cps=\([0-9]*\).*/\1/p')
	PASS=0
	if [ "$rc" = 0 ] && [ "${ok:-0}" = "$n" ] && [ "${cps:-0}" -ge $((rate * 95 / 100)) ]; then PASS=1; fi
	CPU=$(awk -v t=$((t1 - t0)) -v hz="$HZ" -v w="${wall:-0}" 'BEGIN { printf "%.0f", (w > 0) ? 100 * t / hz / w : 0 }')
	USPC=$(awk -v t=$((t1 - t0)) -v hz="$HZ" -v n="${ok:-0}" 'BEGIN { printf "%.0f", (n > 0) ? 1e6 * t / hz / n : 0 }')
	echo "  $srv $tr rate=$rate pass=$PASS $out proxy_cpu=${CPU}% us_per_call=$USPC" >&2
}

SUMMARY=$OUTBASE/summary.tsv
printf 'transport\tserver\trepeat\tmax_cps\tcpu_pct\tus_per_call\n' >"$SUMMARY"
for tr in $TRANSPORTS; do
	for srv in $SERVERS; do
		if [ "$srv" = kamailio ] && ! command -v kamailio >/dev/null; then
			echo "kamailio not installed: apt-get install -y kamailio kamailio-tls-modules" >&2
			continue
		fi
		for rep in $(seq 1 "$REPEAT"); do
			best=0 bcpu=- buspc=- fail=
			for rate in $RATES; do
				step "$srv" "$tr" "$rate" "$OUTBASE/$tr-$srv-$rep-$rate"
				[ "$PASS" = 1 ] || { fail=$rate; break; }
				best=$rate bcpu=$CPU buspc=$USPC
			done
			# bisection between the last passing and the first failing step
			for _ in $(seq 1 "$REFINE"); do
				[ -n "$fail" ] && [ $((fail - best)) -gt "$GRAIN" ] || break
				rate=$(((best + fail) / 2 / GRAIN * GRAIN))
				[ "$rate" -gt "$best" ] || break
				step "$srv" "$tr" "$rate" "$OUTBASE/$tr-$srv-$rep-$rate"
				if [ "$PASS" = 1 ]; then best=$rate bcpu=$CPU buspc=$USPC; else fail=$rate; fi
			done
			printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$tr" "$srv" "$rep" "$best" "$bcpu" "$buspc" >>"$SUMMARY"
		done
	done
done

echo "results in $OUTBASE"
# medians and ratios
awk -F'\t' 'NR > 1 { k = $1 " " $2; n[k]++; r[k, n[k]] = $4; u[k, n[k]] = $6 }
	function med(a, k, c,   i, j, t, v) { for (i = 1; i <= c; i++) v[i] = a[k, i] + 0
		for (i = 1; i <= c; i++) for (j = i + 1; j <= c; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
		return v[int((c + 1) / 2)] }
	END { for (k in n) { mr[k] = med(r, k, n[k]); mu[k] = med(u, k, n[k])
			printf "%s: median max %d cps, %d us CPU per call at that rate (%d searches)\n", k, mr[k], mu[k], n[k] }
		split("tcp tls udp", ts, " ")
		for (i in ts) { o = ts[i] " openser"; q = ts[i] " kamailio"
			if ((o in mr) && (q in mr) && mr[q] > 0 && mu[q] > 0)
				printf "%s: openser/kamailio calls/s %.2fx, CPU per call %.2fx\n", ts[i], mr[o] / mr[q], mu[o] / mu[q] } }' "$SUMMARY" | sort
