#!/usr/bin/env bash
# bench/dialog_bench.sh — stateful calls with dialog tracking and a profile check
# (issue 22): openser-rs with bench/openser-dialog.cfg against Kamailio 5.6 with
# bench/kamailio-dialog.cfg (its dialog module), the yardstick's run-pair.sh
# `stateful` search (INVITE/100/180/200/ACK/BYE/200, record-routed, highest rate with
# 0 failed calls and 0 retransmissions), alternating the two servers REPEAT times.
# Prints each search's line, then the medians, CPU per call at the highest rate, and
# the ratios. Every call creates a dialog, adds it to the caller's profile and checks
# the profile's size before relaying; the ACK confirms it, the BYE deletes it.
#
# Env: REPEAT=3  OUT=target/bench/dialog-<date>  BIN=target/release/openser
#      MAXBUFFER=262144  BENCH_DRIVER=path/to/run-pair.sh; RATES, DUR, REFINE, GRAIN
#      go to run-pair.sh (smoke: RATES=200 DUR=2 MIN_CALLS=200 REFINE=0 REPEAT=1).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
DRIVER=${BENCH_DRIVER:-$ROOT/../shared/bench/run-pair.sh}
REPEAT=${REPEAT:-3}
MAXBUFFER=${MAXBUFFER:-262144}
OUT=${OUT:-$ROOT/target/bench/dialog-$(date +%Y%m%d-%H%M%S)}
BIN=${BIN:-$ROOT/target/release/openser}
[ -x "$DRIVER" ] || { echo "dialog_bench: driver not found: $DRIVER (set BENCH_DRIVER)" >&2; exit 2; }
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release)
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
for s in openser kamailio; do
	sed "s/^listen=.*/&\nmaxbuffer=$MAXBUFFER/" "$HERE/$s-dialog.cfg" >"$OUT/$s-dialog.cfg"
done
SERVERS=openser
command -v kamailio >/dev/null && SERVERS="openser kamailio"
for i in $(seq 1 "$REPEAT"); do
	for s in $SERVERS; do
		case $s in
		openser) cmd="$BIN -DD -E -m 256 -f $OUT/openser-dialog.cfg" ;;
		kamailio) cmd="kamailio -DD -E -m 256 -M 32 -f $OUT/kamailio-dialog.cfg" ;;
		esac
		OUT=$OUT/$s-$i "$DRIVER" "$cmd" stateful | sed "s/^stateful/dialog/" | tee -a "$OUT/$s.txt"
	done
done
python3 - "$OUT" $SERVERS <<'PY'
import sys, statistics, os
base, servers = sys.argv[1], sys.argv[2:]
res = {}
for s in servers:
    rows = []
    for line in open(os.path.join(base, f"{s}.txt")):
        f = line.split()
        if len(f) >= 5 and f[0] == "dialog" and float(f[1]) > 0:
            rows.append((float(f[1]), float(f[4]) * 10000 / float(f[1])))
    if rows:
        res[s] = (statistics.median(r for r, _ in rows), statistics.median(c for _, c in rows),
                  [r for r, _ in rows])
for s, (r, c, all_) in res.items():
    print(f"{s}: dialog calls {r:.0f}/s (median of {all_}), {c:.0f} us CPU per call")
if "openser" in res and "kamailio" in res:
    o, k = res["openser"], res["kamailio"]
    print(f"ratio openser/kamailio: {o[0] / k[0]:.2f}x calls/s, {o[1] / k[1]:.2f}x CPU per call")
PY
