#!/usr/bin/env bash
# Authenticated REGISTERs per second with RADIUS: openser-rs's auth_radius and, when
# installed (kamailio + kamailio-radius-modules), Kamailio 5.6's auth_radius (radcli),
# on the same machine in the same run, against one FreeRADIUS started here (its own
# raddb in a temp dir, loopback ports, the digest module, USERS users with
# Cleartext-Password).
#
# One "call" = REGISTER, 401 challenge, REGISTER with digest credentials (checked by
# FreeRADIUS), 200 (bench/reg_auth_bench.xml; one distinct user per call); usrloc in
# memory. Each rate step runs STEP_SECS seconds against a freshly started server; a
# step passes with 0 failed calls, 0 retransmissions and >= 90 % of the rate. Prints,
# per server, the highest passing rate, the server's CPU there and its CPU time per
# registration (and FreeRADIUS's).
#
#   RATES="..."     rates to try, ascending (default 250 500 1000 1500 2000 3000 4000)
#   STEP_SECS=15    seconds per step
#   USERS=20000     subscribers in FreeRADIUS's users file
#   RUNS=3          runs per server (medians reported)
#   BIN=...         the openser binary (default target/release/openser, built if missing)
#   CALLGRIND=1     instead of the timed steps: instructions per registration, counted by
#                   callgrind (valid on a busy machine), each server as one process
#                   (fork=no) under valgrind, N registrations (default 500) at RATE/s
#                   (default 50); the counters are zeroed after start-up and 20
#                   warm-up registrations
# Run it inside a private network namespace on a quiet machine, as bench/RESULTS.md says.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"
ROOT=$(cd "$HERE/.." && pwd)
RATES=${RATES:-250 500 1000 1500 2000 3000 4000}
STEP_SECS=${STEP_SECS:-15}
USERS=${USERS:-20000}
RUNS=${RUNS:-3}
BIN=${BIN:-$ROOT/target/release/openser}
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release)
command -v sipp >/dev/null || { echo "radius_bench: sipp (sip-tester) is needed" >&2; exit 2; }
FR=$(command -v freeradius || echo /usr/sbin/freeradius)
[ -x "$FR" ] || { echo "radius_bench: freeradius is needed" >&2; exit 2; }
TMP=$(mktemp -d)
FRPID=
SRVPID=
cleanup() {
	[ -n "$SRVPID" ] && kill "$SRVPID" 2>/dev/null && wait "$SRVPID" 2>/dev/null || true
	[ -n "$FRPID" ] && kill "$FRPID" 2>/dev/null && wait "$FRPID" 2>/dev/null || true
	[ -n "${KEEP:-}" ] || rm -rf "$TMP"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
AUTHPORT=$(free_port)
ACCTPORT=$(free_port)
SECRET=benchsecret
KMODDIR=/usr/lib/x86_64-linux-gnu/kamailio/modules

# --- FreeRADIUS: a minimal raddb (no debug output, a thread pool)
mkdir -p "$TMP/raddb"
cat >"$TMP/raddb/radiusd.conf" <<CONF
prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = /var
sbindir = /usr/sbin
logdir = $TMP/raddb
raddbdir = $TMP/raddb
radacctdir = $TMP/raddb
name = freeradius
confdir = $TMP/raddb
modconfdir = $TMP/raddb
run_dir = $TMP/raddb
db_dir = $TMP/raddb
libdir = /usr/lib/freeradius
pidfile = $TMP/raddb/radiusd.pid
max_request_time = 5
cleanup_delay = 0
max_requests = 65536
hostname_lookups = no
proxy_requests = no
log {
	destination = files
	file = $TMP/raddb/radius.log
	auth = no
}
security {
	allow_core_dumps = no
	max_attributes = 200
	reject_delay = 0
	status_server = no
}
thread pool {
	start_servers = 8
	max_servers = 32
	min_spare_servers = 4
	max_spare_servers = 16
	max_requests_per_server = 0
}
client local {
	ipaddr = 127.0.0.1
	secret = $SECRET
}
modules {
	digest {
	}
	files {
		filename = $TMP/raddb/users
	}
}
server default {
	listen {
		type = auth
		ipaddr = 127.0.0.1
		port = $AUTHPORT
	}
	listen {
		type = acct
		ipaddr = 127.0.0.1
		port = $ACCTPORT
	}
	authorize {
		files
		digest
	}
	authenticate {
		Auth-Type digest {
			digest
		}
	}
}
CONF
cat >"$TMP/raddb/dictionary" <<'DICT'
ATTRIBUTE	Sip-URI-User	208	string
ATTRIBUTE	SIP-AVP	225	string
DICT
seq 1 "$USERS" | sed 's/.*/"u&@127.0.0.1" Cleartext-Password := "pw&"/' >"$TMP/raddb/users"
"$FR" -f -d "$TMP/raddb" -l "$TMP/raddb/radius.log" &
FRPID=$!
sleep 2
kill -0 "$FRPID" 2>/dev/null || { echo "freeradius did not start" >&2; cat "$TMP/raddb/radius.log" >&2; exit 1; }

# --- client configurations: ours (built-in dictionary) and radcli's for Kamailio
echo "127.0.0.1 $SECRET" >"$TMP/servers"
cat >"$TMP/openser-radiusclient.conf" <<CONF
authserver 127.0.0.1:$AUTHPORT
acctserver 127.0.0.1:$ACCTPORT
servers $TMP/servers
radius_timeout 5
radius_retries 1
CONF
KDICT=
for d in /etc/kamailio/dictionary.kamailio /usr/share/kamailio/dictionary.kamailio \
	/usr/share/doc/kamailio-radius-modules/examples/dictionary.kamailio; do
	[ -r "$d" ] && KDICT=$d && break
done
{
	echo "\$INCLUDE /etc/radcli/dictionary"
	# radcli's draft-sterman digest attributes (Digest-Response, Digest-Attributes …)
	echo "\$INCLUDE /etc/radcli/dictionary.sip"
	[ -n "$KDICT" ] && echo "\$INCLUDE $KDICT"
	# commented out in Kamailio's dictionary, needed by its auth_radius
	printf 'VALUE\tService-Type\tSip-Session\t15\n'
} >"$TMP/kamailio-dictionary"
cat >"$TMP/kamailio-radiusclient.conf" <<CONF
nas-identifier bench
authserver 127.0.0.1:$AUTHPORT:$SECRET
acctserver 127.0.0.1:$ACCTPORT:$SECRET
servers $TMP/servers
dictionary $TMP/kamailio-dictionary
radius_timeout 5
radius_retries 1
radius_deadtime 0
bindaddr *
CONF

{
	echo SEQUENTIAL
	seq 1 "$USERS" | sed 's/.*/u&;[authentication username=u& password=pw&]/'
} >"$TMP/users.csv"

run_server() { # name cmd-template
	local name=$1 tmpl=$2 best=0 best_cpu=- best_per=- best_fr=- rate
	sed "s|RADCONF|$TMP/$name-radiusclient.conf|" "$HERE/$name-radius.cfg" >"$TMP/$name.cfg"
	for rate in $RATES; do
		reg_auth_step "$name" "$tmpl" "$rate" freeradius "$FRPID" || { kill $$; exit 1; }
		echo "  $name rate=$rate ${STEP#* }" >&2
		if [ "${STEP%% *}" = 1 ]; then
			best=$rate
			best_cpu=$(echo "$STEP" | sed 's/.*cpu=\([0-9]*\)%.*/\1/')
			best_per=$(echo "$STEP" | sed 's/.* per_reg=\([0-9]*\)us.*/\1/')
			best_fr=$(echo "$STEP" | sed 's/.*freeradius_per_reg=\([0-9]*\)us.*/\1/')
		else
			tail -3 "$TMP/$name.log" | sed 's/^/    log: /' >&2
			break
		fi
	done
	echo "$best $best_cpu $best_per $best_fr"
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR ? a[int((NR+1)/2)] : 0)}'; }

bench() { # name cmd-template → "rate cpu per_reg fr_per_reg" medians of RUNS
	local name=$1 tmpl=$2 i out=()
	for i in $(seq 1 "$RUNS"); do
		out+=("$(run_server "$name" "$tmpl")")
		echo "$name run $i: ${out[-1]}" >&2
	done
	local r c p f
	r=$(printf '%s\n' "${out[@]}" | awk '{print $1}' | median)
	c=$(printf '%s\n' "${out[@]}" | awk '{print $2}' | median)
	p=$(printf '%s\n' "${out[@]}" | awk '{print $3}' | median)
	f=$(printf '%s\n' "${out[@]}" | awk '{print $4}' | median)
	echo "$r $c $p $f"
}

ir_of() { # callgrind file -> total Ir
	awk '/^summary:/ {print $2; exit} /^totals:/ {t=$2} END {if (t) print t}' "$1" | head -1
}

callgrind_server() { # name cmd-template -> "registrations instructions per_registration"
	local name=$1 tmpl=$2 n=${N:-500} rate=${RATE:-50}
	sed -e "s|RADCONF|$TMP/$name-radiusclient.conf|" -e 's/^children=.*/children=1/' \
		-e 's/^fork=.*/fork=no/' "$HERE/$name-radius.cfg" >"$TMP/$name-cg.cfg"
	wait_free || { echo "127.0.0.1:5060 stays busy" >&2; return 1; }
	# shellcheck disable=SC2086
	valgrind --tool=callgrind --trace-children=yes --callgrind-out-file="$TMP/cg-$name.%p" \
		${tmpl//CFG/$TMP/$name-cg.cfg} >"$TMP/$name-cg.log" 2>&1 &
	local vpid=$! p
	sleep 8
	wait_bound || { echo "$name did not start under valgrind" >&2; cat "$TMP/$name-cg.log" >&2; return 1; }
	# Warm-up (valgrind translates code on first use), then the counters are zeroed.
	sipp -sf "$HERE/reg_auth_bench.xml" 127.0.0.1:5060 -inf "$TMP/users.csv" \
		-i 127.0.0.1 -p 15061 -r 5 -m 20 -nostdin >/dev/null 2>&1 || true
	for p in $vpid $(pgrep -P $vpid || true); do callgrind_control -z "$p" >/dev/null 2>&1 || true; done
	sipp -sf "$HERE/reg_auth_bench.xml" 127.0.0.1:5060 -inf "$TMP/users.csv" \
		-i 127.0.0.1 -p 15061 -r "$rate" -m "$n" -nostdin \
		-trace_stat -stf "$TMP/$name-cg.csv" >/dev/null 2>&1 || true
	# Dump the counts now (a shutdown under valgrind has been seen to hang), then stop.
	local pids
	pids="$vpid $(pgrep -P "$vpid" || true)"
	for p in $pids; do callgrind_control -d "$p" >/dev/null 2>&1 || true; done
	kill -TERM "$vpid" 2>/dev/null || true
	for _ in $(seq 1 100); do kill -0 "$vpid" 2>/dev/null || break; sleep 0.2; done
	# shellcheck disable=SC2086
	kill -KILL $pids 2>/dev/null || true
	wait "$vpid" 2>/dev/null || true
	local ok total=0 f
	ok=$(awk -F';' 'NR==1 {for (i=1;i<=NF;i++) if ($i=="SuccessfulCall(C)") c=i} END {print $c+0}' "$TMP/$name-cg.csv" 2>/dev/null || echo 0)
	for f in "$TMP"/cg-"$name".*; do
		local ir
		ir=$(ir_of "$f" 2>/dev/null || true)
		total=$((total + ${ir:-0}))
	done
	echo "$ok $total $((total / (ok > 0 ? ok : 1)))"
}

if [ -n "${CALLGRIND:-}" ]; then
	command -v valgrind >/dev/null || { echo "radius_bench: valgrind is needed" >&2; exit 2; }
	echo "== instructions per authenticated REGISTER with RADIUS (callgrind, ${N:-500} registrations)"
	C1=$(callgrind_server openser "$BIN -D -E -m 256 -f CFG")
	echo "openser-rs: registrations, instructions, per registration: $C1"
	if command -v kamailio >/dev/null && [ -e "$KMODDIR/auth_radius.so" ]; then
		C2=$(callgrind_server kamailio "kamailio -D -E -m 256 -f CFG")
		echo "Kamailio:   registrations, instructions, per registration: $C2"
		echo "$C1 $C2" | awk '{printf "ratio openser-rs/Kamailio instructions per registration: %.2f\n", ($6 > 0 ? $3/$6 : 0)}'
	fi
	exit 0
fi

echo "== authenticated REGISTER with RADIUS (FreeRADIUS digest), $STEP_SECS s per step, $RUNS runs"
R1=$(bench openser "$BIN -DD -E -m 256 -f CFG")
echo "openser-rs: max $(echo "$R1" | awk '{print $1}') REGISTERs/s, CPU $(echo "$R1" | awk '{print $2}')%, $(echo "$R1" | awk '{print $3}') us CPU per registration (FreeRADIUS $(echo "$R1" | awk '{print $4}') us)"
if command -v kamailio >/dev/null && [ -e "$KMODDIR/auth_radius.so" ]; then
	R2=$(bench kamailio "kamailio -DD -E -m 256 -f CFG")
	echo "Kamailio:   max $(echo "$R2" | awk '{print $1}') REGISTERs/s, CPU $(echo "$R2" | awk '{print $2}')%, $(echo "$R2" | awk '{print $3}') us CPU per registration (FreeRADIUS $(echo "$R2" | awk '{print $4}') us)"
	echo "$R1 $R2" | awk '{printf "ratios openser-rs/Kamailio: rate %.2f, CPU per registration %.2f\n", ($5 > 0 ? $1/$5 : 0), ($7 > 0 ? $3/$7 : 0)}'
else
	echo "(Kamailio's auth_radius not installed: apt-get install kamailio-radius-modules)"
fi
