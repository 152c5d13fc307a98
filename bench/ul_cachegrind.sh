#!/usr/bin/env bash
# ul_cachegrind.sh [N ...] — simulated cache misses per REGISTER refresh in usrloc.
#
# Runs usrloc's `tests::refresh_cost_probe` (N users with one contact each in a
# table of 2^20 slots, as the server sizes it with -m 4096; then R refreshes, each
# get_urecord + get_ucontact + update_ucontact + contacts + release_urecord, as the
# registrar's save) under callgrind's cache simulator, collecting only the refreshes.
# Prints Ir, D1mr, D1mw, DLmr, DLmw per refresh and shm bytes per contact. The cache is
# given explicitly (D1 32 KiB 8-way, LL 16 MiB 16-way): valgrind would otherwise take
# this VM's reported L3 (480 MiB), in which a million contacts never miss.
# Environment: R (20000 refreshes), OUT (target/bench/ul-cachegrind).
# Build first: cargo test -p usrloc --release --no-run
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
T=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$(ls -t "$T"/release/deps/usrloc-* | grep -v '\.d$' | head -1)
R=${R:-20000}
OUT=${OUT:-$T/bench/ul-cachegrind}
mkdir -p "$OUT"
for N in ${*:-10000 1000000}; do
	UL_PROBE_N=$N UL_PROBE_R=$R valgrind --tool=callgrind --cache-sim=yes \
		--D1=32768,8,64 --LL=16777216,16,64 --collect-atstart=no \
		--toggle-collect='*probe_refreshes*' --callgrind-out-file="$OUT/$N.out" \
		"$BIN" --exact tests::refresh_cost_probe --nocapture >"$OUT/$N.log" 2>&1
	grep "probe:" "$OUT/$N.log"
	awk -v n="$N" -v r="$R" '/Collected/ {printf "N=%s per refresh: Ir %.0f D1mr %.2f D1mw %.2f DLmr %.2f DLmw %.2f\n", n, $4/r, $8/r, $9/r, $11/r, $12/r}' "$OUT/$N.log"
done
