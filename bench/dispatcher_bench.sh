#!/usr/bin/env bash
# bench/dispatcher_bench.sh — dispatcher round-robin (algorithm 4) of stateful calls
# (record_route + t_relay, loose-routed ACK/BYE) over two SIPp UASs, openser-rs against
# Kamailio 5.6's dispatcher in the same run, with the zero-failure step search of the
# shared bench run-pair.sh (its "stateful" scenario: the UAS it starts on 5070 is one
# destination; this script keeps a second one on 5072 for the whole run).
#
# The driver: CLIENT=sipload (default) is the project's own load client
# (examples/sipload.rs over UDP, UAC and both UASs in one process, the search of
# bench/stream_bench.sh); CLIENT=sipp is SIPp through run-pair.sh as below. On this
# 2-core machine SIPp's UAC and UASs take more CPU than openser-rs at 10,000 calls/s,
# so with SIPp the search stops at the machine's ceiling, not the proxy's; the lighter
# client leaves more of the machine to the proxy — to both proxies alike.
#   CLIENT=sipload: RATES (default 2000 4000 6000 8000 10000 12000 14000 16000), DUR,
#   REPEAT, CONNS, REFINE (3), GRAIN (250) as stream_bench.sh; the summary prints the
#   medians and ratios.
#
# Usage: bench/dispatcher_bench.sh           (builds the release binary first)
# Env:   RATES, DUR, MIN_CALLS, REFINE, GRAIN, OUT as run-pair.sh; REPEAT=3 searches per
#        server; KAMAILIO=0 skips Kamailio; RING_MS as run-pair.sh (also for the second UAS).
# Output: run-pair.sh's line "stateful max_cps failed retrans cpu% pss_mb" per server
#         (cpu% at the highest passing rate: CPU per call = cpu% / 100 / cps seconds).
# A quick check that everything runs: RATES=200 DUR=2 MIN_CALLS=400 REFINE=0 REPEAT=1
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ "${CLIENT:-sipload}" = sipload ]; then
	TRANSPORTS=udp DISPATCHER=1 RATES=${RATES:-"2000 4000 6000 8000 10000 12000 14000 16000"} \
		REFINE=${REFINE:-3} GRAIN=${GRAIN:-250} \
		OUTBASE=${OUT:-$ROOT/bench/results/dispatcher-sipload-$(date +%Y%m%d-%H%M%S)} \
		exec "$ROOT/bench/stream_bench.sh"
fi
PAIR=${PAIR:-$(cd "$(dirname "$0")/../.." && pwd)/shared/bench/run-pair.sh}
BENCHDIR=$(dirname "$PAIR")
command -v sipp >/dev/null || { echo "sipp (sip-tester) is needed" >&2; exit 2; }
cargo build --release --manifest-path "$ROOT/Cargo.toml" >&2
BIN=$ROOT/target/release/openser
export RATES=${RATES:-"500 1000 2000 4000 8000"}
export OUT=${OUT:-$ROOT/bench/results/dispatcher-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
LIST=$OUT/dispatcher.list
printf '1 sip:127.0.0.1:5070\n1 sip:127.0.0.1:5072\n' >"$LIST"
sed "s|@LIST@|$LIST|" "$ROOT/bench/openser-dispatcher.cfg" >"$OUT/openser-dispatcher.cfg"
sed "s|@LIST@|$LIST|" "$ROOT/bench/kamailio-dispatcher.cfg" >"$OUT/kamailio-dispatcher.cfg"

# the second destination, for the whole run (stopped by its PID on exit)
UAS2=
cleanup() { [ -n "$UAS2" ] && kill "$UAS2" 2>/dev/null; wait 2>/dev/null || true; }
trap cleanup EXIT
sipp -sf "$BENCHDIR/scenarios/uas.xml" -i 127.0.0.1 -p 5072 -d "${RING_MS:-50}" \
	-buff_size 1048576 -trace_stat -stf "$OUT/uas2.csv" -fd 1 -nostdin >"$OUT/uas2.out" 2>&1 &
UAS2=$!
sleep 0.5
kill -0 "$UAS2" 2>/dev/null || { echo "the second UAS did not start (port 5072 busy?)" >&2; exit 1; }

# REPEAT searches per server, alternating (the report takes the medians)
for i in $(seq 1 "${REPEAT:-3}"); do
	echo "== openser-rs (dispatcher), run $i ==" >&2
	OUT=$OUT/openser-$i "$PAIR" "$BIN -DD -E -m ${SHM_MB:-512} -f $OUT/openser-dispatcher.cfg" stateful |
		sed "s/^/openser-rs run$i /"
	if [ "${KAMAILIO:-1}" = 1 ] && command -v kamailio >/dev/null; then
		echo "== kamailio (dispatcher), run $i ==" >&2
		OUT=$OUT/kamailio-$i "$PAIR" "kamailio -DD -E -m 1536 -f $OUT/kamailio-dispatcher.cfg" stateful |
			sed "s/^/kamailio   run$i /"
	fi
done
# the second destination's share (round-robin: half of all calls of every step)
sleep 1.5
awk -F';' 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "IncomingCall(C)") c = i }
	END { if (c) print "second UAS (5072): " $c " calls in all steps" }' "$OUT/uas2.csv" >&2 || true
