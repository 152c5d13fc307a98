#!/usr/bin/env bash
# callgrind_stream.sh [TRANSPORT ...] — instructions per stateful call over TCP or TLS
# (default: tls tcp), openser-rs against Kamailio 5.6, counted by callgrind: repeatable
# on a busy machine, unlike CPU time.
#
# Each server runs with one tcp receiver (tcp_children=1) under
# `valgrind --tool=callgrind` (every forked process writes its own file) twice: once
# while sipload (examples/sipload.rs, outside valgrind) places N calls at RATE over one
# connection, once idle for as long. The instructions of all the server's processes are
# summed per run; the difference divided by the calls is the cost of a call (start-up,
# shutdown and idle timers cancel out — zeroing the counters with callgrind_control
# does not reach processes asleep in epoll). The configs are stream_bench.sh's
# (openser-{tcp,tls}.cfg, kamailio-{tcp,tls}.cfg).
# Environment: N (calls, default 500), RATE (default 25), SERVERS (default
# "openser kamailio"), KAMAILIO_MEM (Kamailio's memory manager, default fm: its default
# q_malloc spends most of its instructions searching free lists under this count, see
# bench/RESULTS.md; "" for the default), OUT (default
# target/bench/callgrind-stream-<date>).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
N=${N:-500}
RATE=${RATE:-25}
SERVERS=${SERVERS:-openser kamailio}
KAMAILIO_MEM=${KAMAILIO_MEM-fm}
TRANSPORTS=${*:-tls tcp}
OUT=${OUT:-$ROOT/target/bench/callgrind-stream-$(date +%Y%m%d-%H%M%S)}
command -v valgrind >/dev/null || { echo "valgrind is needed" >&2; exit 2; }
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
(cd "$ROOT" && cargo build --release --bin openser --example sipload)
BIN=$CARGO_TARGET_DIR/release/openser
LOAD=$CARGO_TARGET_DIR/release/examples/sipload
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
PKI=$OUT/pki
mkdir -p "$PKI"
(
	cd "$PKI"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
		-keyout server.key -out server.pem -days 30 -subj /CN=127.0.0.1 \
		-addext subjectAltName=IP:127.0.0.1 2>/dev/null
)
for f in openser-tcp.cfg openser-tls.cfg kamailio-tcp.cfg kamailio-tls.cfg kamailio-tls.conf; do
	sed -e "s|@PKI@|$PKI|g" -e 's/^tcp_children=.*/tcp_children=1/' -e 's/^children=.*/children=1/' \
		"$HERE/$f" >"$PKI/$f"
done

tree_pids() {
	local p c
	for p in "$@"; do
		[ -d "/proc/$p" ] || continue
		echo "$p"
		for c in $(ps -o pid= --ppid "$p" 2>/dev/null); do tree_pids "$c"; done
	done
}
ir_of() { awk '/^summary:/ {print $2; exit} /^totals:/ {t=$2} END {if (t) print t}' "$1" | head -1; }
listening() { [ -n "$(ss -Hnlt "sport = :$1" 2>/dev/null)" ]; }

run() { # dir calls -> prints the total instructions of the server's processes
	local d=$1 calls=$2 vpid out total f ir
	mkdir -p "$d"
	valgrind --tool=callgrind --callgrind-out-file="$d/cg.%p" "${cmd[@]}" >"$d/server.log" 2>&1 &
	vpid=$!
	for _ in $(seq 1 600); do listening $port && break; sleep 0.1; done
	sleep 10 # every process up under valgrind
	if [ "$calls" -gt 0 ]; then
		out=$("$LOAD" --transport "$tr" --proxy 127.0.0.1:$port --uas 127.0.0.1:5070 \
			--cert "$PKI/server.pem" --key "$PKI/server.key" --rate "$RATE" --calls "$calls" \
			--conns 1 2>"$d/sipload.err") || true
		echo "$out" >"$d/sipload.out"
	else
		sleep $((N / RATE + 1))
	fi
	kill -TERM $vpid 2>/dev/null || true
	wait $vpid 2>/dev/null || true
	sleep 2
	total=0
	for f in "$d"/cg.*; do
		[ -f "$f" ] || continue
		ir=$(ir_of "$f")
		total=$((total + ${ir:-0}))
	done
	echo "$total"
}

for tr in $TRANSPORTS; do
	port=5060
	[ "$tr" = tls ] && port=5061
	for srv in $SERVERS; do
		if [ "$srv" = kamailio ] && ! command -v kamailio >/dev/null; then continue; fi
		case $srv in
		openser) cmd=("$BIN" -DD -E -m 512 -f "$PKI/openser-$tr.cfg") ;;
		kamailio) cmd=(kamailio -DD -E -m 512 ${KAMAILIO_MEM:+-x "$KAMAILIO_MEM"} -f "$PKI/kamailio-$tr.cfg") ;;
		esac
		busy=$(run "$OUT/$tr-$srv" "$N")
		idle=$(run "$OUT/$tr-$srv-idle" 0)
		ok=$(sed -n 's/.*ok=\([0-9]*\).*/\1/p' "$OUT/$tr-$srv/sipload.out")
		ok=${ok:-0}
		echo "$tr $srv calls=$ok instructions=$busy idle=$idle per_call=$(((busy - idle) / (ok > 0 ? ok : 1)))" |
			tee -a "$OUT/summary.txt"
	done
done
