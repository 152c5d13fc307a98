#!/usr/bin/env bash
# bench/tm_stateful.sh — stateful proxy benchmark (record_route + t_relay, one SIPp UAS,
# loose-routed ACK/BYE) at stepped rates with the zero-failure criterion of
# the shared bench run-pair.sh (max(10,000, DUR s) calls per step; a step passes with
# 0 failed calls, 0 retransmissions, 0 unexpected messages).
#
# Usage: bench/tm_stateful.sh            (builds the release binary first)
# Env:   RATES, DUR, REFINE, GRAIN, OUT  as run-pair.sh; KAMAILIO=1 also runs Kamailio
#        with the yardstick config in the same run for the ratio.
# Output: run-pair.sh's line "stateful max_cps failed retrans cpu% pss_mb" per server,
#         plus shm figures (SIGUSR1 dump of the proxy at the end of each step).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PAIR=${PAIR:-$(cd "$(dirname "$0")/../.." && pwd)/shared/bench/run-pair.sh}
BENCHDIR=$(dirname "$PAIR")
cargo build --release --manifest-path "$ROOT/Cargo.toml" >&2
BIN=$ROOT/target/release/openser
export RATES=${RATES:-"500 1000 2000 4000 8000"}
export OUT=${OUT:-$ROOT/bench/results/tm-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
# shm statistics at the end of every step: SIGUSR1 makes the attendant dump shm at
# memlog level into the proxy log (collected by run-pair.sh under the step folder).
# (The receiving process on 5060 is found by port; children dump the shared heap too.)
export STATS_CMD=${STATS_CMD:-"p=\$(ss -Hlunp 'sport = :5060' | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2); [ -n \"\$p\" ] && kill -USR1 \$p; sleep 0.3"}
echo "== openser-rs (tm) ==" >&2
# shm: ~3.5 KiB per transaction, 2 transactions per call held for wt_timer (5 s) after
# completion: ~35 KiB per cps, plus the 1 MiB hash table.
SHM_MB=${SHM_MB:-512}
"$PAIR" "$BIN -DD -E -m $SHM_MB -f $ROOT/bench/tm_stateful.cfg" stateful | sed 's/^/openser-rs /'
if [ "${KAMAILIO:-0}" = 1 ] && command -v kamailio >/dev/null; then
	echo "== kamailio ==" >&2
	OUT=$OUT/kamailio "$PAIR" "kamailio -DD -E -m 1536 -f $BENCHDIR/kamailio-stateful.cfg" stateful | sed 's/^/kamailio   /'
fi
# shm per transaction from the last passing step's dumps (max used over transactions).
for f in "$OUT"/stateful-*/proxy.log; do
	[ -s "$f" ] || continue
	printf '%s: ' "$(basename "$(dirname "$f")")"
	grep -E ' used= |max used' "$f" | tail -2 | tr '\n' ' '
	echo
done
