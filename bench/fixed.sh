#!/usr/bin/env bash
# fixed.sh — CPU per call at fixed rates, for servers side by side in the same run.
#
# A search for the highest clean rate says nothing about a server that never passes
# (OpenSER 1.2.0 retransmits even at 50 stateful cps); CPU at a fixed rate compares
# every server. Each (scenario, rate) in FIXED is one step of the yardstick's
# run-pair.sh (no bisection) per server, REPEAT times; the report gives the median CPU
# per call (µs = proxy CPU % × 10,000 / achieved calls/s) with SIPp's failures and
# retransmissions of the median run, and the ratios to openser-rs.
#
#   FIXED="stateful:4000 register:8000"   scenario:rate pairs
#   SERVERS="openser kamailio openser12"  openser12 needs OPENSER12=/path/sbin/openser;
#                                        its cfgs (../shared/bench/openser12/) load modules from
#                                        /usr/local/lib/openser/modules: install there or symlink
#                                        the build's inst/lib/openser;
#                                        base needs BASE_BIN=/path/to/an/older/openser
#                                        (an A/B against an earlier build, same configs)
#   REPEAT=3  MAXBUFFER=262144  OUTBASE=target/bench/fixed-<date>
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
DRIVER=${BENCH_DRIVER:-$ROOT/../shared/bench/run-pair.sh}
FIXED=${FIXED:-stateful:4000 register:8000}
SERVERS=${SERVERS:-openser kamailio openser12}
REPEAT=${REPEAT:-3}
MAXBUFFER=${MAXBUFFER:-262144}
OUTBASE=${OUTBASE:-$ROOT/target/bench/fixed-$(date +%Y%m%d-%H%M%S)}
BIN=$ROOT/target/release/openser
DRIVER_DIR=$(cd "$(dirname "$DRIVER")" && pwd)
O12DIR=$DRIVER_DIR/openser12
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release)
mkdir -p "$OUTBASE/cfg"
for r in stateless stateful registrar; do
	sed "s/^listen=.*/&\nmaxbuffer=$MAXBUFFER/" "$HERE/openser-$r.cfg" >"$OUTBASE/cfg/openser-$r.cfg"
	[ -f "$DRIVER_DIR/kamailio-$r.cfg" ] &&
		sed "s/^listen=.*/&\nmaxbuffer=$MAXBUFFER/" "$DRIVER_DIR/kamailio-$r.cfg" >"$OUTBASE/cfg/kamailio-$r.cfg"
done

cmd_of() {
	case $1 in
	openser) echo "$BIN -DD -E -m 1536 -f $OUTBASE/cfg/openser-\$ROUTING.cfg" ;;
	kamailio) command -v kamailio >/dev/null && echo "kamailio -DD -E -m 1536 -f $OUTBASE/cfg/kamailio-\$ROUTING.cfg" ;;
	base) [ -x "${BASE_BIN:-}" ] && echo "$BASE_BIN -DD -E -m 1536 -f $OUTBASE/cfg/openser-\$ROUTING.cfg" ;;
	openser12) [ -x "${OPENSER12:-}" ] &&
		echo "python3 $O12DIR/subreap.py $OPENSER12 -m 1536 -f $O12DIR/openser12-\$ROUTING.cfg -P $OUTBASE/o12.pid" ;;
	esac
}

for i in $(seq 1 "$REPEAT"); do
	for s in $SERVERS; do
		cmd=$(cmd_of "$s") || { echo "fixed: $s not available, skipped" >&2; continue; }
		for fr in $FIXED; do
			sc=${fr%%:*} rate=${fr##*:}
			routing=$sc
			case $sc in register | regmem) routing=registrar ;; esac
			if [ "$s" = openser12 ] && [ ! -f "$O12DIR/openser12-$routing.cfg" ]; then
				continue # the yardstick has no OpenSER 1.2 config for this routing
			fi
			RATES=$rate REFINE=0 OUT=$OUTBASE/$s-$sc-$i "$DRIVER" "$cmd" "$sc" >/dev/null
		done
	done
done

python3 - "$OUTBASE" <<'PY'
import csv, glob, os, statistics, sys
base = sys.argv[1]
runs = {}  # (server, scenario) -> [(us, achieved, failed, retrans)]
for f in glob.glob(os.path.join(base, "*-*-*", "steps.tsv")):
    server = os.path.basename(os.path.dirname(f)).split("-")[0]
    for row in csv.DictReader(open(f), delimiter="\t"):
        ach = float(row["achieved_cps"] or 0)
        if ach <= 0:
            continue
        us = float(row["proxy_cpu"]) * 10000 / ach
        runs.setdefault((server, row["scenario"], row["rate"]), []).append(
            (us, ach, row["failed"], row["retrans"]))
print("CPU per call at fixed rates (median of runs; µs; failed/retrans of the median run)")
keys = sorted({(sc, rate) for (_, sc, rate) in runs}, key=lambda k: (k[0], int(k[1])))
for sc, rate in keys:
    line, ours = [], None
    for server in ("openser", "base", "kamailio", "openser12"):
        v = runs.get((server, sc, rate))
        if not v:
            continue
        v.sort()
        m = v[len(v) // 2]
        if server == "openser":
            ours = m[0]
        ratio = f" ({ours / m[0]:.2f}x)" if ours and server != "openser" else ""
        line.append(f"{server} {m[0]:.1f} us [{len(v)} runs, {m[1]:.0f} cps, failed {m[2]}, retrans {m[3]}]{ratio}")
    print(f"{sc}@{rate}: " + "; ".join(line))
PY
