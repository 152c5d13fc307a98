#!/usr/bin/env bash
# bench/dns_bench.sh — stateful calls (record_route + t_relay, loose-routed ACK/BYE,
# bench/openser-stateful.cfg) routed to the SIPp UAS by an SRV name with the DNS cache
# warm ($du = "sip:uas.bench": _sip._udp.uas.bench → uas.bench:5070 → 127.0.0.1),
# against the same calls routed by numeric IP ($du = "sip:127.0.0.1:5070"), in the same
# run. A throwaway dnsmasq serves the records (TTL 1 h, so the cache stays warm) on
# 127.0.0.1:$DNS_PORT and is stopped by its PID on exit; the server reads it through
# its own resolv.conf (the dns_resolv_conf global).
#
# Usage: bench/dns_bench.sh              timed: run-pair.sh's zero-failure step search,
#                                        REPEAT (3) searches per routing, alternating
#        MODE=callgrind bench/dns_bench.sh   instructions per call (bench/callgrind.sh,
#                                        N calls, default 2000) for both routings
# Env:   RATES, DUR, MIN_CALLS, REFINE, GRAIN, OUT as run-pair.sh; DNS_PORT (5353).
# A quick check that everything runs: RATES=200 DUR=2 MIN_CALLS=400 REFINE=0 REPEAT=1
#   or MODE=callgrind N=200 RATE=100 (HOST=127.0.0.42 keeps callgrind.sh off port 5060 of 127.0.0.1)
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PAIR=${PAIR:-$(cd "$(dirname "$0")/../.." && pwd)/shared/bench/run-pair.sh}
command -v sipp >/dev/null || { echo "sipp (sip-tester) is needed" >&2; exit 2; }
command -v dnsmasq >/dev/null || { echo "dnsmasq is needed" >&2; exit 2; }
cargo build --release --manifest-path "$ROOT/Cargo.toml" >&2
BIN=$ROOT/target/release/openser
DNS_PORT=${DNS_PORT:-5353}
export RATES=${RATES:-"500 1000 2000 4000 8000"}
export OUT=${OUT:-$ROOT/bench/results/dns-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

DNSMASQ=
cleanup() { [ -n "$DNSMASQ" ] && kill "$DNSMASQ" 2>/dev/null; wait 2>/dev/null || true; }
trap cleanup EXIT
dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts --user=root \
	--bind-interfaces --listen-address=127.0.0.1 --port="$DNS_PORT" --local=/bench/ \
	--local-ttl=3600 --srv-host=_sip._udp.uas.bench,uas.bench,5070,0,0 \
	--host-record=uas.bench,"${HOST:-127.0.0.1}" >"$OUT/dnsmasq.log" 2>&1 &
DNSMASQ=$!
sleep 0.5
kill -0 "$DNSMASQ" 2>/dev/null || { echo "dnsmasq did not start (port $DNS_PORT busy?)" >&2; exit 1; }
printf 'nameserver 127.0.0.1#%s\noptions timeout:2 attempts:2\n' "$DNS_PORT" >"$OUT/resolv.conf"

mkdir -p "$OUT/numeric" "$OUT/srv"
cp "$ROOT/bench/openser-stateful.cfg" "$OUT/numeric/openser-stateful.cfg"
sed -e "s|^dns=no|dns=no\ndns_resolv_conf=\"$OUT/resolv.conf\"|" \
	-e 's|\$du = "sip:127.0.0.1:5070";|$du = "sip:uas.bench";|' \
	"$ROOT/bench/openser-stateful.cfg" >"$OUT/srv/openser-stateful.cfg"
grep -q 'sip:uas.bench' "$OUT/srv/openser-stateful.cfg" || { echo "could not make the SRV config" >&2; exit 1; }

if [ "${MODE:-timed}" = callgrind ]; then
	for r in srv numeric; do
		echo "== callgrind, $r ==" >&2
		pattern=$OUT/$r/openser-%s.cfg
		OUT=$OUT/cg-$r CFG_PATTERN=$pattern "$ROOT/bench/callgrind.sh" stateful |
			sed "s/^/$r /"
	done
	exit 0
fi

for i in $(seq 1 "${REPEAT:-3}"); do
	for r in srv numeric; do
		echo "== openser-rs ($r), run $i ==" >&2
		OUT=$OUT/$r-$i "$PAIR" "$BIN -DD -E -m ${SHM_MB:-512} -f $OUT/$r/openser-stateful.cfg" stateful |
			sed "s/^/$r run$i /"
	done
done
