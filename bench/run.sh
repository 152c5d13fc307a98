#!/usr/bin/env bash
# make bench: SIPp load runs against openser-rs and, when installed, Kamailio
# (Debian package), on the same machine in the same run, with equivalent configs.
# Prints each server's highest zero-failure rate per scenario and the ratio.
#
# The stepped-rate driver is the yardstick's run-pair.sh (the shared bench folder
# beside this repository, or BENCH_DRIVER=path/to/run-pair.sh), which starts the
# proxy once per step on udp:127.0.0.1:5060 and drives it with SIPp over loopback.
#
#   SCENARIOS="stateless stateful registrar register regmem"   (default: all)
#   MAXBUFFER=262144   receive buffer for both servers (compare like with like)
#   REPEAT=1           independent searches per server (the report uses the median)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
DRIVER=${BENCH_DRIVER:-$ROOT/../shared/bench/run-pair.sh}
SCENARIOS=${SCENARIOS:-stateless stateful registrar register regmem}
MAXBUFFER=${MAXBUFFER:-262144}
REPEAT=${REPEAT:-1}
OUTBASE=${OUTBASE:-$ROOT/target/bench/$(date +%Y%m%d-%H%M%S)}

if [ ! -x "$DRIVER" ]; then
	echo "bench: driver not found: $DRIVER (set BENCH_DRIVER)" >&2
	exit 2
fi
command -v sipp >/dev/null || { echo "bench: sipp (Debian sip-tester) is needed" >&2; exit 2; }
BIN=$ROOT/target/release/openser
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release)
DRIVER_DIR=$(cd "$(dirname "$DRIVER")" && pwd)
mkdir -p "$OUTBASE"

# Configs with the chosen receive buffer.
CFGDIR=$OUTBASE/cfg
mkdir -p "$CFGDIR"
for r in stateless stateful registrar; do
	sed "s/^listen=.*/&\nmaxbuffer=$MAXBUFFER/" "$HERE/openser-$r.cfg" >"$CFGDIR/openser-$r.cfg"
	if [ -f "$DRIVER_DIR/kamailio-$r.cfg" ]; then
		sed "s/^listen=.*/&\nmaxbuffer=$MAXBUFFER/" "$DRIVER_DIR/kamailio-$r.cfg" >"$CFGDIR/kamailio-$r.cfg"
	fi
done

run_one() { # name cmd repeat
	OUT=$OUTBASE/$1-$3 "$DRIVER" "$2" $SCENARIOS | tee "$OUTBASE/$1-$3.txt"
}
for i in $(seq 1 "$REPEAT"); do
	run_one openser "$BIN -DD -E -m 1536 -f $CFGDIR/openser-\$ROUTING.cfg" "$i"
	if command -v kamailio >/dev/null; then
		run_one kamailio "kamailio -DD -E -m 1536 -f $CFGDIR/kamailio-\$ROUTING.cfg" "$i"
	fi
done

python3 - "$OUTBASE" "$REPEAT" <<'PY'
import sys, statistics, os
base, rep = sys.argv[1], int(sys.argv[2])
def load(name):
    res = {}
    for i in range(1, rep + 1):
        p = os.path.join(base, f"{name}-{i}.txt")
        if not os.path.exists(p):
            continue
        for line in open(p):
            f = line.split()
            if len(f) >= 2 and f[1].replace('.', '', 1).isdigit():
                res.setdefault(f[0], []).append((float(f[1]), f[4:5]))
    return {k: statistics.median(v[0] for v in vs) for k, vs in res.items()}
o, k = load("openser"), load("kamailio")
print(f"{'scenario':12} {'openser':>10} {'kamailio':>10} {'ratio':>7}")
for s in o:
    kv = k.get(s)
    ratio = f"{o[s] / kv:.2f}" if kv else "-"
    print(f"{s:12} {o[s]:>10.0f} {kv if kv is not None else '-':>10} {ratio:>7}")
PY
