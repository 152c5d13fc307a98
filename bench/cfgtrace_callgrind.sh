#!/usr/bin/env bash
# cfgtrace_callgrind.sh — the cost of the debugger's per-action hook, in instructions
# per call counted by callgrind (stateless scenario of callgrind.sh): the stateless
# config as is (no trace points in the script at all), then with `debugger` loaded
# and cfgtrace 0 (a trace point before every action, the hook returning at once),
# then with cfgtrace 1 at a log level above `debug` (every action formats nothing but
# checks the level). Processes are stopped by their PIDs only.
# Environment: VARIANTS (default "plain debugger_off debugger_quiet"; `plain` alone
# for a build without the debugger, the baseline), N (calls, default 2000), RATE (default 200), BIN (default the release
# build), HOST (default 127.0.0.57: a loopback address of its own), OUT.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SCEN=$ROOT/../shared/bench/scenarios
N=${N:-2000}
RATE=${RATE:-200}
BIN=${BIN:-$ROOT/target/release/openser}
HOST=${HOST:-127.0.0.57}
OUT=${OUT:-$ROOT/target/bench/cfgtrace-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"

ir_of() { awk '/^summary:/ {print $2; exit} /^totals:/ {t=$2} END {if (t) print t}' "$1" | head -1; }

variant() { # name extra-config-lines
	local dir=$OUT/$1
	mkdir -p "$dir"
	sed -e 's/^children=.*/children=1/' -e 's/^fork=.*/fork=no/' -e "s/127\.0\.0\.1/$HOST/g" \
		-e "s|^loadmodule \"maxfwd.so\"|loadmodule \"maxfwd.so\"\n$2|" \
		"$HERE/openser-stateless.cfg" >"$dir/server.cfg"
	valgrind --tool=callgrind --trace-children=yes --callgrind-out-file="$dir/cg.%p" \
		"$BIN" -D -E -m 512 -f "$dir/server.cfg" >"$dir/server.log" 2>&1 &
	local vpid=$!
	sleep 6
	sipp -sf "$SCEN/uas.xml" -i "$HOST" -p 5070 -nostdin >/dev/null 2>&1 &
	local upid=$!
	sleep 1
	for p in $vpid $(pgrep -P $vpid || true); do callgrind_control -z "$p" >/dev/null 2>&1 || true; done
	sipp -sf "$SCEN/uac.xml" -i "$HOST" -p 5080 -m "$N" -r "$RATE" -s bob \
		-nostdin -trace_stat -stf "$dir/stat.csv" "$HOST:5060" >/dev/null 2>&1 || true
	kill -TERM "$upid" 2>/dev/null || true
	kill -TERM "$vpid" 2>/dev/null || true
	wait "$vpid" 2>/dev/null || true
	wait "$upid" 2>/dev/null || true
	local ok total=0 f
	ok=$(awk -F';' 'NR==1 {for (i=1;i<=NF;i++) if ($i=="SuccessfulCall(C)") c=i} END {print $c+0}' "$dir/stat.csv" 2>/dev/null || echo 0)
	for f in "$dir"/cg.*; do total=$((total + $(ir_of "$f"))); done
	echo "$1 calls=$ok instructions=$total per_call=$((total / (ok > 0 ? ok : 1)))" | tee -a "$OUT/summary.txt"
}

for v in ${VARIANTS:-plain debugger_off debugger_quiet}; do
	case $v in
	plain) variant plain "" ;;
	debugger_off) variant debugger_off 'loadmodule "debugger.so"\nmodparam("debugger", "cfgtrace", 0)' ;;
	debugger_quiet) variant debugger_quiet 'loadmodule "debugger.so"\nmodparam("debugger", "cfgtrace", 1)\nmodparam("debugger", "log_level", 4)' ;;
	*) echo "unknown variant $v" >&2 ;;
	esac
done
