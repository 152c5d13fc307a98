#!/usr/bin/env bash
# make bench: SIPp load runs against openser-rs and, when installed, Kamailio
# (Debian package), on the same machine in the same run, with equivalent configs.
# Prints each server's highest zero-failure rate per scenario and the ratio.
#
# The stepped-rate driver is the yardstick's run-pair.sh (the shared bench folder
# beside this repository, or BENCH_DRIVER=path/to/run-pair.sh), which starts the
# proxy once per step on udp:127.0.0.1:5060 and drives it with SIPp over loopback.
#
#   SCENARIOS="stateless stateful lua python registrar register regmem inflight regscale tcp
#              tls dispatcher cluster dialog"
#                      (default: all; inflight and regscale are bench/inflight.sh and
#                      bench/regscale.sh, fixed-rate costs at scale, not searches; tcp
#                      and tls are stateful calls over TCP and TLS, bench/stream_bench.sh
#                      with its own client, sipload — Kamailio's TLS needs the Debian
#                      package kamailio-tls-modules; dispatcher is bench/dispatcher_bench.sh,
#                      round-robin over two UASs driven by sipload over UDP; cluster is
#                      bench/cluster_bench.sh, 1–3 instances behind a dispatcher front on
#                      a 3-node Galera cluster, openser-rs only: CPU per operation; lua is
#                      the stateful search with the routing in Lua, bench/routing.lua under
#                      cfgengine "lua" for both servers — Kamailio's needs the Debian
#                      package kamailio-lua-modules — reported as the row `lua`, with its
#                      CPU per call against the native `stateful` row; python is the
#                      same with bench/routing.py under cfgengine "python" (Kamailio's
#                      app_python3: kamailio-python3-modules), the row `python`; dialog is
#                      bench/dialog_bench.sh, stateful calls tracked by the dialog module
#                      with a per-caller profile check, both servers)
#   MAXBUFFER=262144   receive buffer for both servers (compare like with like)
#   REPEAT=3           independent searches per server (the report uses the median)
#   REG_RATES="4000 8000 16000 24000 32000 48000 64000"   the register search's steps
#                      (REGISTERs are cheap: the yardstick's default top, 16000, is
#                      reached by both servers)
#   OPENSER12=/path/to/openser-1.2/sbin/openser   also measure the original OpenSER
#                      1.2.0 (../shared/bench/openser12/). It retransmits stateful calls
#                      even at 50 cps, so a search says nothing about it: bench/fixed.sh
#                      gives CPU per call at fixed rates (FIXED, default stateful:4000
#                      register:8000) for openser-rs, Kamailio and it, REPEAT times.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
DRIVER=${BENCH_DRIVER:-$ROOT/../shared/bench/run-pair.sh}
SCENARIOS=${SCENARIOS:-stateless stateful lua python registrar register regmem inflight regscale tcp tls dispatcher cluster dialog}
MAXBUFFER=${MAXBUFFER:-262144}
REPEAT=${REPEAT:-3}
REG_RATES=${REG_RATES:-4000 8000 16000 24000 32000 48000 64000}
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

# The searches of run-pair.sh, and the scale scripts, from SCENARIOS.
PAIR=
LANGS=
SCALE=
STREAM=
OWN=
for s in $SCENARIOS; do
	case $s in
	inflight | regscale) SCALE="$SCALE $s" ;;
	tcp | tls) STREAM="$STREAM $s" ;;
	dispatcher | cluster | dialog) OWN="$OWN $s" ;;
	lua | python) LANGS="$LANGS $s" ;;
	*) PAIR="$PAIR $s" ;;
	esac
done
# The register search has its own steps (REG_RATES); the others use the yardstick's.
SEARCH=
REG=
for s in $PAIR; do
	case $s in
	register) REG=register ;;
	*) SEARCH="$SEARCH $s" ;;
	esac
done

run_one() { # name cmd repeat: one search per scenario, lines collected in name-repeat.txt
	: >"$OUTBASE/$1-$3.txt"
	if [ -n "$SEARCH" ]; then
		OUT=$OUTBASE/$1-$3 "$DRIVER" "$2" $SEARCH | tee -a "$OUTBASE/$1-$3.txt"
	fi
	if [ -n "$REG" ]; then
		RATES=$REG_RATES OUT=$OUTBASE/$1-$3-register "$DRIVER" "$2" register | tee -a "$OUTBASE/$1-$3.txt"
	fi
}
if [ -n "$PAIR" ]; then
	for i in $(seq 1 "$REPEAT"); do
		run_one openser "$BIN -DD -E -m 1536 -f $CFGDIR/openser-\$ROUTING.cfg" "$i"
		if command -v kamailio >/dev/null; then
			run_one kamailio "kamailio -DD -E -m 1536 -f $CFGDIR/kamailio-\$ROUTING.cfg" "$i"
		fi
	done
fi
# Lua and Python routing: the stateful search with openser-<lang>.cfg /
# kamailio-<lang>.cfg, one routing.<ext> for both (absolute path written in), lines
# renamed after the language.
for lang in $LANGS; do
	case $lang in
	lua) ext=lua kmod=app_lua kpkg=kamailio-lua-modules ;;
	python) ext=py kmod=app_python3 kpkg=kamailio-python3-modules ;;
	esac
	cp "$HERE/routing.$ext" "$CFGDIR/routing.$ext"
	for r in openser kamailio; do
		sed -e "s/^listen=.*/&\nmaxbuffer=$MAXBUFFER/" \
			-e "s|\"load\", \"routing.$ext\"|\"load\", \"$CFGDIR/routing.$ext\"|" \
			"$HERE/$r-$lang.cfg" >"$CFGDIR/$r-$lang.cfg"
	done
	KLANG=
	if command -v kamailio >/dev/null && [ -f /usr/lib/x86_64-linux-gnu/kamailio/modules/$kmod.so ]; then
		KLANG=1
	fi
	for i in $(seq 1 "$REPEAT"); do
		OUT=$OUTBASE/openser-$lang-$i "$DRIVER" "$BIN -DD -E -m 1536 -f $CFGDIR/openser-$lang.cfg" stateful |
			sed "s/^stateful /$lang /" | tee -a "$OUTBASE/openser-$i.txt"
		if [ -n "$KLANG" ]; then
			OUT=$OUTBASE/kamailio-$lang-$i "$DRIVER" "kamailio -DD -E -m 1536 -f $CFGDIR/kamailio-$lang.cfg" stateful |
				sed "s/^stateful /$lang /" | tee -a "$OUTBASE/kamailio-$i.txt"
		else
			echo "bench: $kpkg not installed, $lang routing measured for openser-rs only" >&2
		fi
	done
done
if [ -n "${OPENSER12:-}" ] && [ -x "$OPENSER12" ]; then
	OUTBASE=$OUTBASE/fixed REPEAT=$REPEAT MAXBUFFER=$MAXBUFFER SERVERS="openser kamailio openser12" \
		"$HERE/fixed.sh" | tee "$OUTBASE/fixed.txt"
fi
for s in $SCALE; do
	for i in $(seq 1 "$REPEAT"); do
		OUT=$OUTBASE/$s-$i "$HERE/$s.sh" openser kamailio | tee "$OUTBASE/$s-$i.txt"
	done
done

if [ -n "$STREAM" ]; then
	TRANSPORTS="$STREAM" REPEAT=$REPEAT OUTBASE=$OUTBASE/stream "$HERE/stream_bench.sh" | tee "$OUTBASE/stream.txt"
fi
# the scripts with their own search and report (medians and ratios printed by each)
for s in $OWN; do
	REPEAT=$REPEAT OUT=$OUTBASE/$s "$HERE/${s}_bench.sh" | tee "$OUTBASE/$s.txt"
done

python3 - "$OUTBASE" "$REPEAT" <<'PY'
import sys, statistics, os
base, rep = sys.argv[1], int(sys.argv[2])
def load(name):
    """scenario -> (median max rate, median CPU per op in us at that rate)"""
    res = {}
    for i in range(1, rep + 1):
        p = os.path.join(base, f"{name}-{i}.txt")
        if not os.path.exists(p):
            continue
        for line in open(p):
            f = line.split()
            if len(f) >= 5 and f[1].replace('.', '', 1).isdigit() and f[1] != "0":
                try:
                    cpu = float(f[4])
                except ValueError:
                    cpu = float("nan")
                res.setdefault(f[0], []).append((float(f[1]), cpu * 10000 / float(f[1])))
    return {k: (statistics.median(r for r, _ in vs), statistics.median(c for _, c in vs))
            for k, vs in res.items()}
servers = [("openser", load("openser")), ("kamailio", load("kamailio"))]
o = servers[0][1]
print(f"medians of {rep} searches; rate = max 0-failure rate, us = CPU per call at it")
print(f"{'scenario':10} " + " ".join(f"{n + ' rate':>15} {'us':>6}" for n, _ in servers)
      + "   rate ratios   us ratios")
for s in o:
    cols, rr, ur = [], [], []
    for n, d in servers:
        v = d.get(s)
        cols.append(f"{v[0]:>15.0f} {v[1]:>6.1f}" if v else f"{'-':>15} {'-':>6}")
        if v and n != "openser":
            rr.append(f"{o[s][0] / v[0]:.2f}x {n}")
            ur.append(f"{o[s][1] / v[1]:.2f}x {n}")
    print(f"{s:10} " + " ".join(cols) + "   " + ", ".join(rr) + "   " + ", ".join(ur))
for n, d in servers:
    for lang, title in (("lua", "Lua"), ("python", "Python")):
        if lang in d and "stateful" in d:
            print(f"{n}: {title} routing / native cfg, CPU per call {d[lang][1] / d['stateful'][1]:.2f}x, "
                  f"rate {d[lang][0] / d['stateful'][0]:.2f}x")
PY
