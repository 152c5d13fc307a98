#!/usr/bin/env bash
# callgrind.sh [SCENARIO ...] — instructions per call/REGISTER, counted by callgrind
# (repeatable whatever else the machine does, unlike CPU time).
#
# The server runs as one receiver (-D -E: the attendant is the receiver; the timer is
# its child) under `valgrind --tool=callgrind --trace-children=yes`, SIPp sends N calls
# at a low rate, and the receiver's and the timer's instruction counts are divided by N.
# Scenarios: stateless, stateful (INVITE/180/200/ACK/BYE/200 via record_route +
# t_relay), lua (the stateful calls with the routing in bench/routing.lua under
# cfgengine "lua"), python (the same with bench/routing.py under cfgengine "python"), register (one new user per REGISTER), registrar (INVITEs to
# registered users). Environment: N (calls, default 2000), RATE (default 200), WARM
# (warm-up calls before the count, default 20; call scenarios), BIN (default the
# release build), SERVER (a whole command line instead of BIN …, with $CFG for the
# config: e.g. the original OpenSER), CFG_PATTERN (printf pattern of the config per
# routing, default bench/openser-%s.cfg), OUT (default target/bench/callgrind-<date>),
# HOST (the loopback address server and SIPp use, default 127.0.0.1; another one, e.g.
# 127.0.0.42, keeps the run clear of anything else on port 5060).
#   SERVER='/path/to/openser-1.2/sbin/openser -D -E -f $CFG' \
#   CFG_PATTERN=../shared/bench/openser12/openser12-%s.cfg bench/callgrind.sh stateful register
# Kamailio 5.6 (stateful: ../shared/bench/kamailio-stateful.cfg; lua and python:
# bench/kamailio-lua.cfg, bench/kamailio-python.cfg, with kamailio-lua-modules and
# kamailio-python3-modules; -x fm as in bench/RESULTS.md, its q_malloc's free-list search
# would dominate the count): KAMAILIO=1 bench/callgrind.sh stateful lua python
# (sets SERVER and CFG_PATTERN; the stateful config is taken from ../shared/bench).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SCEN=$ROOT/../shared/bench/scenarios
N=${N:-2000}
RATE=${RATE:-200}
WARM=${WARM:-20}
BIN=${BIN:-$ROOT/target/release/openser}
OUT=${OUT:-$ROOT/target/bench/callgrind-$(date +%Y%m%d-%H%M%S)}
SCENARIOS=${*:-stateless stateful register}
CFG_PATTERN=${CFG_PATTERN:-$HERE/openser-%s.cfg}
if [ -n "${KAMAILIO:-}" ]; then
	SERVER=${SERVER:-'kamailio -DD -E -m 512 -x fm -f $CFG'}
	CFG_PATTERN=$OUT/kamailio-%s.cfg
	mkdir -p "$OUT"
	for r in stateless stateful registrar; do
		[ -f "$ROOT/../shared/bench/kamailio-$r.cfg" ] && cp "$ROOT/../shared/bench/kamailio-$r.cfg" "$OUT/"
	done
	cp "$HERE/kamailio-lua.cfg" "$HERE/kamailio-python.cfg" "$OUT/"
fi
HOST=${HOST:-127.0.0.1}
command -v valgrind >/dev/null || { echo "valgrind is needed" >&2; exit 2; }
command -v sipp >/dev/null || { echo "sipp (sip-tester) is needed" >&2; exit 2; }
mkdir -p "$OUT"

users() { # file count
	seq -f 'user%g' 1 "$2" | sed '1i SEQUENTIAL' >"$1"
}

ir_of() { # callgrind file -> total Ir
	awk '/^summary:/ {print $2; exit} /^totals:/ {t=$2} END {if (t) print t}' "$1" | head -1
}

zero() { # pid log: zero the process's counters, checked: a process asleep in a system
	# call may not answer at once, and one still starting (an embedded interpreter's
	# initialisation under valgrind takes seconds) goes on counting; so the count must
	# stay near zero for 2 s of no traffic. Retried for up to a minute.
	local p=$1 log=$2 i ir out
	[ -n "$p" ] || return 0 # never callgrind_control without a pid: it would reach every run
	for i in $(seq 1 20); do
		[ -d "/proc/$p" ] || { echo "callgrind.sh: pid $p is gone (see server.log)" >&2; return 0; }
		callgrind_control -z "$p" >>"$log" 2>&1 || true
		sleep 2
		out=$(callgrind_control -e "$p" 2>&1 || true)
		ir=$(echo "$out" | awk '$1 == "Th" {s += $3} END {print s + 0}')
		echo "pid $p try $i: $ir instructions after zeroing" >>"$log"
		if echo "$out" | grep -q Totals && [ "$ir" -lt 2000000 ]; then return 0; fi
	done
	echo "callgrind.sh: the counters of pid $p could not be zeroed (start-up counted)" >&2
}

run_one() {
	local scen=$1 routing
	case $scen in
	stateless) routing=stateless ;;
	stateful) routing=stateful ;;
	lua) routing=lua ;; # stateful calls, the routing in bench/routing.lua
	python) routing=python ;; # stateful calls, the routing in bench/routing.py
	register | registrar) routing=registrar ;;
	*) echo "unknown scenario $scen" >&2; return 1 ;;
	esac
	local dir=$OUT/$scen
	mkdir -p "$dir"
	local cfg=$dir/server.cfg
	# shellcheck disable=SC2059
	if [ "$routing" = lua ]; then sed "s/127\.0\.0\.1/$HOST/g" "$HERE/routing.lua" >"$dir/routing.lua"; fi
	if [ "$routing" = python ]; then sed "s/127\.0\.0\.1/$HOST/g" "$HERE/routing.py" >"$dir/routing.py"; fi
	# The script's path written in absolute (Kamailio's app_lua/app_python3 read a
	# relative one from the working directory, not the config's).
	sed -e 's/^children=.*/children=1/' -e 's/^fork=.*/fork=no/' -e "s/127\.0\.0\.1/$HOST/g" \
		-e "s#\"load\", \"routing\.\(lua\|py\)\"#\"load\", \"$dir/routing.\1\"#" \
		"$(printf "$CFG_PATTERN" "$routing")" >"$cfg"
	local cmd
	if [ -n "${SERVER:-}" ]; then
		cmd=${SERVER//\$CFG/$cfg}
	else
		cmd="$BIN -D -E -m 512 -f $cfg"
	fi
	valgrind --tool=callgrind --trace-children=yes --callgrind-out-file="$dir/cg.%p" \
		$cmd >"$dir/server.log" 2>&1 &
	local vpid=$!
	sleep 6 # valgrind start-up
	local uas=
	if [ "$scen" = stateless ] || [ "$scen" = stateful ] || [ "$scen" = lua ] || [ "$scen" = python ] || [ "$scen" = registrar ]; then
		sipp -sf "$SCEN/uas.xml" -i $HOST -p 5070 -d 50 -nostdin </dev/null >/dev/null 2>&1 &
		uas=$!
	fi
	if [ "$scen" = registrar ]; then
		users "$dir/users.csv" "$N"
		sipp -sf "$SCEN/reg.xml" -inf "$dir/users.csv" -i $HOST -p 5072 -m "$N" -r "$RATE" \
			-nostdin $HOST:5060 >/dev/null 2>&1 || true
	fi
	# Warm-up calls (not counted): every process is through its start-up (an embedded
	# interpreter's initialisation, under valgrind, can outlast the sleep above) and the
	# per-process caches are filled as in a long run.
	case $scen in
	stateless | stateful | lua | python)
		sipp -sf "$SCEN/uac.xml" -i $HOST -p 5080 -m "$WARM" -r 10 -s bob -timeout 120s \
			-nostdin $HOST:5060 >/dev/null 2>&1 || true
		;;
	esac
	# Count only the measured calls: zero the counters of the receiver and the timer,
	# and sum only their files (not those of short-lived children gone by now, such as
	# app_python's start-up check).
	local pids
	pids="$vpid $(pgrep -P $vpid | tr '\n' ' ' || true)"
	for p in $pids; do zero "$p" "$dir/zero.log"; done
	case $scen in
	register)
		users "$dir/users.csv" "$N"
		sipp -sf "$SCEN/reg.xml" -inf "$dir/users.csv" -i $HOST -p 5072 -m "$N" -r "$RATE" \
			-nostdin -trace_stat -stf "$dir/stat.csv" $HOST:5060 >/dev/null 2>&1 || true
		;;
	registrar)
		sipp -sf "$SCEN/uac-user.xml" -inf "$dir/users.csv" -i $HOST -p 5080 -m "$N" -r "$RATE" \
			-nostdin -trace_stat -stf "$dir/stat.csv" $HOST:5060 >/dev/null 2>&1 || true
		;;
	*)
		sipp -sf "$SCEN/uac.xml" -i $HOST -p 5080 -m "$N" -r "$RATE" -s bob \
			-nostdin -trace_stat -stf "$dir/stat.csv" $HOST:5060 >/dev/null 2>&1 || true
		;;
	esac
	# the UAS this run started, by its pid (never by name: other runs may be going on)
	if [ -n "$uas" ]; then kill "$uas" 2>/dev/null || true; wait "$uas" 2>/dev/null || true; fi
	kill -TERM $vpid 2>/dev/null || true
	wait $vpid 2>/dev/null || true
	local ok
	ok=$(awk -F';' 'NR==1 {for (i=1;i<=NF;i++) if ($i=="SuccessfulCall(C)") c=i} END {print $c+0}' "$dir/stat.csv" 2>/dev/null || echo 0)
	# The receiver (the attendant) and the timer, as zeroed above.
	local files recv timer
	files=
	for p in $pids; do
		for f in "$dir/cg.$p" "$dir"/cg.$p-*; do [ -f "$f" ] && files="$files $f"; done
	done
	recv=0
	for f in $files; do
		local ir
		ir=$(ir_of "$f")
		recv=$((recv + ir))
	done
	echo "$scen calls=$ok instructions=$recv per_call=$((recv / (ok > 0 ? ok : 1)))" | tee -a "$OUT/summary.txt"
}

for s in $SCENARIOS; do
	run_one "$s"
done
