# bench/lib.sh — helpers sourced by the bench scripts (not run on its own).
#
# The rate step of the authenticated-REGISTER benchmarks (auth_bench.sh,
# radius_bench.sh): the caller sets HERE (this folder), TMP (its temp dir) and
# STEP_SECS, has written the users CSV to $TMP/users.csv and the server's
# configuration to $TMP/<name>.cfg.
# shellcheck shell=bash

cpu_ticks() { # pid -> total utime+stime (clock ticks) of the process and its children
	local t=0 p
	for p in $1 $(pgrep -P "$1" || true); do
		[ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
	done
	echo "$t"
}

udp5060_free() { # 127.0.0.1:5060/udp can be bound
	python3 -c 'import socket; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(("127.0.0.1",5060))' 2>/dev/null
}

wait_bound() { # a server holds 127.0.0.1:5060/udp (10 s at most)
	for _ in $(seq 1 100); do
		udp5060_free || return 0
		sleep 0.1
	done
	return 1
}

wait_free() { # the previous server's processes are gone from 5060 (10 s at most)
	for _ in $(seq 1 100); do
		udp5060_free && return 0
		sleep 0.1
	done
	return 1
}

# reg_auth_step NAME TMPL RATE [OTHER OTHER_PID]
#
# One rate step: starts the server from the command template TMPL (CFG stands for
# $TMP/NAME.cfg, its output goes to $TMP/NAME.log), sends RATE * STEP_SECS calls of
# bench/reg_auth_bench.xml at RATE/s with SIPp, stops the server and judges the step:
# it passes with every call successful, no failed call, no retransmission and an
# achieved rate (over the whole SIPp run) of at least 90 % of RATE. OTHER_PID is a
# helper process (e.g. FreeRADIUS) whose CPU per registration is reported as well.
# Sets STEP to "PASS ok=.. failed=.. retrans=.. achieved=N/s cpu=N% per_reg=Nus
# [OTHER_per_reg=Nus]" with PASS 1 or 0, and SRVPID while the server runs. Returns 1,
# after printing why, when 5060 stays busy, the server does not start or SIPp left no
# statistics.
reg_auth_step() {
	local name=$1 tmpl=$2 rate=$3 other=${4:-} opid=${5:-}
	local calls=$((rate * STEP_SECS)) t0 t1 c0 c1 f0=0 f1=0 stf=$TMP/$name-$rate.csv
	wait_free || { echo "127.0.0.1:5060 stays busy" >&2; return 1; }
	# shellcheck disable=SC2086
	${tmpl//CFG/$TMP/$name.cfg} >"$TMP/$name.log" 2>&1 &
	SRVPID=$!
	wait_bound || { echo "$name did not start" >&2; cat "$TMP/$name.log" >&2; return 1; }
	sleep 0.5
	c0=$(cpu_ticks "$SRVPID")
	[ -n "$opid" ] && f0=$(cpu_ticks "$opid")
	t0=$(date +%s.%N)
	sipp -sf "$HERE/reg_auth_bench.xml" 127.0.0.1:5060 -inf "$TMP/users.csv" \
		-i 127.0.0.1 -p 15061 -r "$rate" -m "$calls" -l $((rate * 4)) \
		-trace_stat -stf "$stf" -fd 1 -bg >/dev/null 2>&1 || true
	# -bg returns at once; wait for SIPp to finish the calls.
	while pgrep -f "sipp -sf $HERE/reg_auth_bench.xml" >/dev/null; do sleep 0.2; done
	t1=$(date +%s.%N)
	c1=$(cpu_ticks "$SRVPID")
	[ -n "$opid" ] && f1=$(cpu_ticks "$opid")
	kill "$SRVPID"
	wait "$SRVPID" 2>/dev/null || true
	SRVPID=
	# shellcheck disable=SC2034 # read by the caller
	STEP=$(python3 - "$stf" "$rate" "$calls" "$t0" "$t1" "$c0" "$c1" "$f0" "$f1" "$other" <<'PY'
import sys
stf, rate, calls, t0, t1, c0, c1, f0, f1, other = sys.argv[1:]
rows = [l.split(';') for l in open(stf).read().splitlines() if l.strip()]
h, last = rows[0], rows[-1]
col = lambda n: int(last[h.index(n)])
ok, failed, retrans = col('SuccessfulCall(C)'), col('FailedCall(C)'), col('Retransmissions(C)')
wall = float(t1) - float(t0)
achieved = ok / wall if wall > 0 else 0
cpu = (int(c1) - int(c0)) / 100.0 / wall * 100 if wall > 0 else 0
per = (int(c1) - int(c0)) * 10.0 / ok * 1000 if ok else 0     # microseconds per registration
passed = ok == int(calls) and failed == 0 and retrans == 0 and achieved >= 0.9 * int(rate)
line = f"{1 if passed else 0} ok={ok} failed={failed} retrans={retrans} achieved={achieved:.0f}/s cpu={cpu:.0f}% per_reg={per:.0f}us"
if other:
    frper = (int(f1) - int(f0)) * 10.0 / ok * 1000 if ok else 0
    line += f" {other}_per_reg={frper:.0f}us"
print(line)
PY
) || { echo "$name rate=$rate: no SIPp statistics in $stf" >&2; return 1; }
}
