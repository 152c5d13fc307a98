#!/usr/bin/env bash
# reg_bench.sh: registrar throughput and memory of openser-rs.
#
# 1. REGISTERs/s at zero failures: the yardstick driver's `register` scenario (SIPp
#    scenarios/reg.xml, one distinct user per REGISTER from a CSV, stepped rates with
#    bisection, 0 failed / 0 retransmissions / >=95% of the target rate), and its
#    `regmem` scenario (PSS growth per 100,000 contacts), against bench/reg_openser.cfg.
# 2. shm bytes per contact after 100,000 registrations through save() (in-process,
#    the test it::registrar::reg_shm_bytes_per_contact with OPENSER_REG_N=100000).
#
#   SCENARIOS="register regmem"   RATES="2000 4000 8000 16000 32000"   DUR=20
#   SHM_MB=1536   OUT=target/bench/reg-<date>   BENCH_DRIVER=.../run-pair.sh
# Kamailio anchor (ANCHOR.md): 9,500-11,000 REGISTERs/s, ~1,150 bytes of shm/contact.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
DRIVER=${BENCH_DRIVER:-$(cd "$(dirname "$0")/../.." && pwd)/shared/bench/run-pair.sh}
[ -x "$DRIVER" ] || DRIVER=$ROOT/../shared/bench/run-pair.sh
SCENARIOS=${SCENARIOS:-register regmem}
SHM_MB=${SHM_MB:-1536}
export RATES=${RATES:-2000 4000 8000 16000 32000}
export DUR=${DUR:-20}
export OUT=${OUT:-$ROOT/target/bench/reg-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"

command -v sipp >/dev/null || { echo "reg_bench: sipp (Debian sip-tester) is needed" >&2; exit 2; }
(cd "$ROOT" && cargo build --release --quiet)
BIN=$ROOT/target/release/openser

echo "== shm bytes per contact (100,000 registrations through save())" >&2
(cd "$ROOT" && OPENSER_REG_N=100000 cargo test --release --quiet --test tests reg_shm_bytes_per_contact -- \
	--nocapture 2>&1) | grep 'reg_shm_bytes_per_contact:' | tee "$OUT/shm_per_contact.txt"

if [ ! -x "$DRIVER" ]; then
	echo "reg_bench: driver not found: $DRIVER (set BENCH_DRIVER)" >&2
	exit 2
fi
# The driver starts the proxy with ROUTING=registrar; every routing gets our config.
echo "== SIPp: $SCENARIOS (results in $OUT)" >&2
"$DRIVER" "$BIN -DD -E -m $SHM_MB -f $HERE/reg_openser.cfg" $SCENARIOS | tee "$OUT/reg_summary.txt"
echo "(columns: scenario max_rate failed retrans proxy_cpu% pss_MB; regmem: MB PSS per 100k contacts)" >&2
