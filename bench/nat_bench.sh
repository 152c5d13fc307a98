#!/usr/bin/env bash
# bench/nat_bench.sh — calls with offer/answer through rtpengine (control traffic only),
# CPU cost per call as callgrind instruction counts (valid on a busy machine), for
#   openser-rs + rtpengine module (ng), openser-rs + nathelper (rtpproxy protocol on
#   rtpengine's --listen-udp), and Kamailio 5.6 + its rtpengine module (ng).
# Each proxy runs under `valgrind --tool=callgrind --trace-children=yes`; SIPp's default
# uac/uas scenarios (INVITE with SDP, 200 with SDP, ACK, BYE) make CALLS calls at RATE
# cps on 127.0.0.1; a second run with no calls but the same wall time gives the idle
# cost. Instructions per call = (all processes' Ir with calls - idle Ir) / calls.
# Also: the NAT ping round at PING_CONTACTS contacts (examples/ping_round).
#
# Usage: bench/nat_bench.sh      Env: CALLS (500), RATE (10), REPEAT (3), PING_CONTACTS
# (100000), OUT, KAM_OPTS (extra Kamailio options, e.g. "-x fm": its f_malloc instead
# of the default q_malloc). Needs sipp, rtpengine, valgrind; kamailio for the yardstick.
# TIMED=1 bench/nat_bench.sh: instead, the timed max-cps/CPU comparison through
# ../shared/bench/run-pair.sh (scenario "stateful"; a quiet machine is needed).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CALLS=${CALLS:-500}
RATE=${RATE:-10}
REPEAT=${REPEAT:-3}
PING_CONTACTS=${PING_CONTACTS:-100000}
OUT=${OUT:-$ROOT/bench/results/nat-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
cargo build --release --manifest-path "$ROOT/Cargo.toml" >&2
cargo build --release --manifest-path "$ROOT/Cargo.toml" -p nathelper --example ping_round >&2
BIN=$ROOT/target/release/openser

rtpengine --config-file=none --table=-1 --foreground --log-stderr --log-level=3 \
	--interface=127.0.0.1 --listen-ng=127.0.0.1:2223 --listen-udp=127.0.0.1:22222 \
	--port-min=20000 --port-max=40000 --delete-delay=0 >"$OUT/rtpengine.log" 2>&1 &
RTPE=$!
sipp -sn uas -i 127.0.0.1 -p 5070 -nostdin >"$OUT/uas.log" 2>&1 &
UAS=$!
trap 'kill $RTPE $UAS 2>/dev/null || true' EXIT
sleep 1

# Sum of the Ir totals of every process of one callgrind run.
ir_sum() { cat "$1".* | awk '/^totals:/ {s += $2} END {print s + 0}'; }

# run NAME CALLS WALL_S CMD...: the proxy under callgrind, CALLS calls (or an idle
# wait of WALL_S when 0); prints the wall time used and leaves the Ir sum in $IR.
run() {
	local name=$1 calls=$2 wall=$3; shift 3
	rm -f "$OUT/cg-$name".*
	valgrind --tool=callgrind --trace-children=yes --callgrind-out-file="$OUT/cg-$name.%p" \
		"$@" >"$OUT/$name.log" 2>&1 &
	local pid=$!
	for _ in $(seq 1 200); do
		ss -Hlun 'sport = :5060' | grep -q . && break
		sleep 0.2
	done
	sleep 2
	if ! kill -0 $pid 2>/dev/null; then
		echo "$name: the proxy did not start:" >&2
		cat "$OUT/$name.log" >&2
		exit 1
	fi
	local t0=$(date +%s.%N)
	if [ "$calls" -gt 0 ]; then
		sipp -sn uac 127.0.0.1:5060 -i 127.0.0.1 -p 5080 -r "$RATE" -m "$calls" -nostdin \
			-timeout 600 >"$OUT/$name.uac.log" 2>&1 || echo "sipp failed for $name" >&2
	else
		sleep "$wall"
	fi
	WALL=$(echo "$(date +%s.%N) - $t0" | bc)
	kill -TERM $pid
	wait $pid || true
	IR=$(ir_sum "$OUT/cg-$name")
}

percall() { # NAME CMD...: median over REPEAT of (Ir(calls) - Ir(idle)) / CALLS
	local name=$1; shift
	local vals=()
	for i in $(seq 1 "$REPEAT"); do
		run "$name-calls-$i" "$CALLS" 0 "$@"
		local ir_calls=$IR wall=$WALL
		run "$name-idle-$i" 0 "${wall%.*}" "$@"
		local v=$(( (ir_calls - IR) / CALLS ))
		echo "$name run $i: $ir_calls Ir with $CALLS calls in ${wall%.*} s, $IR idle: $v Ir/call" >&2
		vals+=("$v")
	done
	printf '%s\n' "${vals[@]}" | sort -n | sed -n "$(( (REPEAT + 1) / 2 ))p"
}

ng_cfg=$OUT/openser-ng.cfg
rtpp_cfg=$OUT/openser-rtpp.cfg
sed -e 's/^#!ifdef NG$//; /^#!else$/,/^#!endif$/d' \
	-e 's/RELAY_OFFER/rtpengine_offer();/; s/RELAY_ANSWER/rtpengine_answer();/' \
	"$ROOT/bench/openser-rtpengine.cfg" >"$ng_cfg"
sed -e '/^#!ifdef NG$/,/^#!else$/d; /^#!endif$/d' \
	-e 's/RELAY_OFFER/force_rtp_proxy();/; s/RELAY_ANSWER/force_rtp_proxy();/' \
	"$ROOT/bench/openser-rtpengine.cfg" >"$rtpp_cfg"

if [ "${TIMED:-0}" = 1 ]; then
	# The timed comparison (needs a quiet machine): the shared run-pair.sh "stateful"
	# scenario (INVITE with SDP, 180, 200 with SDP, ACK, BYE; zero-failure steps) for
	# each proxy, the relay running as above.
	PAIR=${PAIR:-$(cd "$ROOT/.." && pwd)/shared/bench/run-pair.sh}
	export RATES=${RATES:-"250 500 1000 2000 4000"}
	OUT=$OUT/pair-ng "$PAIR" "$BIN -DD -E -f $ng_cfg" stateful | sed 's/^/openser-rs-ng   /'
	OUT=$OUT/pair-rtpp "$PAIR" "$BIN -DD -E -f $rtpp_cfg" stateful | sed 's/^/openser-rs-rtpp /'
	if command -v kamailio >/dev/null; then
		OUT=$OUT/pair-kam "$PAIR" "kamailio -DD -E -m 1536 ${KAM_OPTS:-} -f $ROOT/bench/kamailio-rtpengine.cfg" stateful |
			sed 's/^/kamailio-ng     /'
	fi
	exit 0
fi

ng=$(percall openser-ng "$BIN" -DD -E -f "$ng_cfg")
rtpp=$(percall openser-rtpp "$BIN" -DD -E -f "$rtpp_cfg")
echo "openser-rs rtpengine (ng):        $ng Ir/call"
echo "openser-rs nathelper (rtpproxy):  $rtpp Ir/call"
if command -v kamailio >/dev/null; then
	kam=$(percall kamailio kamailio -DD -E -m 256 ${KAM_OPTS:-} -f "$ROOT/bench/kamailio-rtpengine.cfg")
	echo "kamailio 5.6 rtpengine (ng):      $kam Ir/call"
	echo "ratio openser-rs ng / kamailio:   $(echo "scale=2; $ng / $kam" | bc)"
fi
"$ROOT/target/release/examples/ping_round" "$PING_CONTACTS"
valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*ping_round_once*' \
	--callgrind-out-file="$OUT/cg-ping" "$ROOT/target/release/examples/ping_round" "$PING_CONTACTS" \
	2>&1 | grep -E 'Collected' | sed "s/.*Collected : /ping round at $PING_CONTACTS contacts: Ir /"
