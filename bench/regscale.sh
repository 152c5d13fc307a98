#!/usr/bin/env bash
# regscale.sh [openser|kamailio|base ...] — registrar cost as the location table grows.
#
# For each server: one instance per table size (SIZES, default 10000 100000 1000000),
# each loaded with SIZE users (one contact each, pointing at the SIPp UAS); then, going
# round the sizes, measure at fixed rates the CPU per REGISTER (re-registrations of the
# loaded users) and per call to a registered user (lookup + record_route + t_relay,
# INVITE/180/200/ACK/BYE).
# The figure to watch is the cost at 1M against the cost at 10k. Configs:
# bench/openser-registrar.cfg and the yardstick's kamailio-registrar.cfg.
#
# Environment: SIZES, LOAD_RATE (8000/s), REG_RATE (4000/s), INV_RATE (1000 cps), DUR
# (20 s per measurement), REPS (3 measurements of each kind per size, alternating;
# the line gives their median and, in brackets, all of them), MEM (-m, 4096: Kamailio
# keeps ~1.1 KiB per contact), BIN, BASE_BIN (the server `base`: an older openser-rs
# binary, same config, for an A/B in the same run), OUT (target/bench/regscale-<date>). Loopback
# only; SIPp UAS on 5070, the instances on 5060, 5061, ...
#
# Noise: this benchmark runs in a small VM whose host does not report steal time; the
# same measurement moves by up to ±25 % between runs minutes apart (both servers alike),
# while nothing else runs in the guest. Hence the sizes are measured in turn (20 s
# each, round after round) rather than one size after the other: a slow spell of the
# host then lands on every size. Compare sizes within a run, take medians of the REPS
# measurements and of several runs, and look at the minima too (noise only ever adds
# CPU time). The instances of all sizes are up at once: -m MEM each (shm is touched
# only as used: ~0.3 GB for openser-rs at 1M, ~1.1 GB for Kamailio).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SHARED=$ROOT/../shared/bench
SCEN=$SHARED/scenarios
SIZES=${SIZES:-10000 100000 1000000}
LOAD_RATE=${LOAD_RATE:-8000}
REG_RATE=${REG_RATE:-4000}
INV_RATE=${INV_RATE:-1000}
DUR=${DUR:-20}
REPS=${REPS:-3}
MEM=${MEM:-4096}
BIN=${BIN:-$ROOT/target/release/openser}
OUT=${OUT:-$ROOT/target/bench/regscale-$(date +%Y%m%d-%H%M%S)}
SERVERS=${*:-openser kamailio}
mkdir -p "$OUT"

tree_pids() {
	local p
	for p in "$@"; do
		echo "$p"
		tree_pids $(ps -o pid= --ppid "$p" 2>/dev/null)
	done
}
ticks() { # pid -> "user_ticks sys_ticks minor_faults" of its process tree
	local p
	for p in $(tree_pids "$1"); do
		awk '{ sub(/^.*\) /, ""); print $12, $13, $8 }' "/proc/$p/stat" 2>/dev/null
	done | awk '{ u += $1; s += $2; f += $3 } END { print u + 0, s + 0, f + 0 }'
}
hz=$(getconf CLK_TCK)
ok_of() {
	awk -F';' 'NR==1 {for (i=1;i<=NF;i++) {if ($i=="SuccessfulCall(C)") s=i; if ($i=="FailedCall(C)") f=i; if ($i=="Retransmissions(C)") r=i}} END {print $s+0, $f+0, $r+0}' "$1"
}

users_csv() { # file count [offset]
	seq -f 'user%g' $((${3:-0} + 1)) $((${3:-0} + $2)) | sed '1i SEQUENTIAL' >"$1"
}

cost() { # pid dir scenario-file rate count csv label port
	# -> "ok fail retrans us_per_op user_us sys_us faults_per_op"
	local u0 s0 f0 u1 s1 f1 ok fail retr
	read -r u0 s0 f0 < <(ticks "$1")
	sipp -sf "$3" -inf "$6" -i 127.0.0.1 -p 5080 -m "$5" -r "$4" -d 50 -nostdin \
		-trace_stat -stf "$2/$7.csv" "127.0.0.1:$8" >"$2/$7.out" 2>&1
	read -r u1 s1 f1 < <(ticks "$1")
	read -r ok fail retr < <(ok_of "$2/$7.csv")
	awk -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v f=$((f1 - f0)) -v hz="$hz" -v n="$ok" -v fl="$fail" -v r="$retr" \
		'BEGIN { k = (n > 0) ? 1e6 / hz / n : 0
			printf "%d %d %d %.1f %.1f %.1f %.2f", n, fl, r, (u + s) * k, u * k, s * k, (n > 0) ? f / n : 0 }'
}

# cost lines -> "ok fail retrans median_us [us us ...]" (sums, median; the user/sys
# split and the page faults per operation stay in the .runs files)
agg() {
	awk '{ ok += $1; f += $2; r += $3; u[NR] = $4 }
		END { n = NR; for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (u[j] < u[i]) { t = u[i]; u[i] = u[j]; u[j] = t }
			m = (n % 2) ? u[(n + 1) / 2] : (u[n / 2] + u[n / 2 + 1]) / 2
			printf "%d %d %d %.1f [", ok, f, r, m; for (i = 1; i <= n; i++) printf "%s%s", u[i], (i < n) ? " " : "]" }'
}

# Every instance runs at once: one per server and table size, each on its own port
# (5060, 5061, ...; Kamailio's ctl on 2046, 2047, ...), each loaded first; then the
# measurements go round the instances (REGISTERs at every instance, calls at every
# instance, REPS times), so a drift of the host's speed during the run hits every size
# and server alike instead of the one measured last. An instance waiting its turn is
# idle (its timer only; not counted: the CPU is that of the measured instance's
# process tree).
sipp -sf "$SCEN/uas.xml" -i 127.0.0.1 -p 5070 -d 50 -nostdin >/dev/null 2>&1 &
uas=$!
declare -A pid_of port_of loaded_of
insts=()
i=0
for s in $SERVERS; do
	case $s in
	openser | base)
		bin=$BIN
		[ "$s" = base ] && bin=${BASE_BIN:-}
		[ -x "$bin" ] || { echo "$s: no binary ${bin:-(BASE_BIN unset)}" >&2; continue; }
		;;
	kamailio) command -v kamailio >/dev/null || { echo "kamailio not installed" >&2; continue; } ;;
	*) echo "unknown server $s" >&2; continue ;;
	esac
	for size in $SIZES; do
		in=$s-$size
		d=$OUT/$in
		mkdir -p "$d"
		port=$((5060 + i))
		case $s in
		kamailio)
			sed "s/^listen=.*/listen=udp:127.0.0.1:$port/; s/udp:127.0.0.1:2046/udp:127.0.0.1:$((2046 + i))/" \
				"$SHARED/kamailio-registrar.cfg" >"$d/server.cfg"
			kamailio -DD -E -m "$MEM" -f "$d/server.cfg" >"$d/server.log" 2>&1 &
			;;
		*)
			sed "s/^listen=.*/listen=udp:127.0.0.1:$port/" "$HERE/openser-registrar.cfg" >"$d/server.cfg"
			$bin -DD -E -m "$MEM" -f "$d/server.cfg" >"$d/server.log" 2>&1 &
			;;
		esac
		pid_of[$in]=$!
		port_of[$in]=$port
		sleep 3
		users_csv "$d/users.csv" "$size"
		sipp -sf "$SCEN/reg.xml" -inf "$d/users.csv" -i 127.0.0.1 -p 5081 -m "$size" \
			-r "$LOAD_RATE" -nostdin -trace_stat -stf "$d/load.csv" "127.0.0.1:$port" >"$d/load.out" 2>&1
		read -r loaded lfail lretr < <(ok_of "$d/load.csv")
		loaded_of[$in]="$loaded/$size (failed $lfail)"
		: >"$d/reg.runs"
		: >"$d/inv.runs"
		insts+=("$in")
		i=$((i + 1))
	done
done
# REG_RATE * DUR re-registrations; SIPp cycles through the users file, so a small table
# is refreshed several times over (same work: a refresh of an existing binding) and
# every size is measured on the same number of REGISTERs.
nreg=$((REG_RATE * DUR))
for k in $(seq 1 "$REPS"); do
	for in in "${insts[@]}"; do
		d=$OUT/$in
		cost "${pid_of[$in]}" "$d" "$SCEN/reg.xml" "$REG_RATE" "$nreg" "$d/users.csv" "reg$k" "${port_of[$in]}" >>"$d/reg.runs"
		echo >>"$d/reg.runs"
	done
	for in in "${insts[@]}"; do
		d=$OUT/$in
		cost "${pid_of[$in]}" "$d" "$SCEN/uac-user.xml" "$INV_RATE" $((INV_RATE * DUR)) "$d/users.csv" "inv$k" "${port_of[$in]}" >>"$d/inv.runs"
		echo >>"$d/inv.runs"
	done
done
for in in "${insts[@]}"; do
	d=$OUT/$in
	reg=$(agg <"$d/reg.runs")
	inv=$(agg <"$d/inv.runs")
	echo "${in%-*} size=${in##*-} loaded=${loaded_of[$in]} register[ok fail retrans us/op]=$reg invite[ok fail retrans us/call]=$inv" |
		tee -a "$OUT/summary.txt"
	kill "${pid_of[$in]}" 2>/dev/null
	wait "${pid_of[$in]}" 2>/dev/null
done
kill "$uas" 2>/dev/null
wait "$uas" 2>/dev/null
# Per round, each size against the first size of the same server (REGISTER): the
# pairing that cancels drift best.
echo "REGISTER per round, against the first size:" | tee -a "$OUT/summary.txt"
first=${SIZES%% *}
for in in "${insts[@]}"; do
	srv=${in%-*}
	[ "${in##*-}" = "$first" ] && continue
	paste -d' ' <(awk 'NF {print $4}' "$OUT/$srv-$first/reg.runs") <(awk 'NF {print $4}' "$OUT/$in/reg.runs") |
		awk -v n="$in" '{ r = r sprintf(" %+.0f%%", 100 * ($2 / $1 - 1)) } END { print "  " n ":" r }' |
		tee -a "$OUT/summary.txt"
done
