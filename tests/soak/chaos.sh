#!/bin/sh
# The long chaos run of issue 18 (`make soak`): SIPp stateful calls at CHAOS_RATE
# calls/s plus REGISTER refreshes from CHAOS_USERS users for CHAOS_SECS seconds, a
# random worker (UDP receiver, timer, tcp receiver) SIGKILLed every 2 s. It is the
# in-suite test respawn::chaos_calls_and_registrations_survive_killed_workers with the
# long parameters, built with the release profile (the debug build does not keep up
# with 1,000 calls/s on a small machine). Asserts the same things: >= 99.9 % of calls
# complete, the ul_dump set before == after, inuse_transactions 0 and shm back to idle;
# prints the figures (lines starting with "chaos:").
set -e
cd "$(dirname "$0")/../.."
: "${CHAOS_SECS:=60}" "${CHAOS_RATE:=1000}" "${CHAOS_USERS:=1000}" "${CHAOS_SHM_MB:=256}"
export CHAOS_SECS CHAOS_RATE CHAOS_USERS CHAOS_SHM_MB CI="${CI:-true}"
exec ${CARGO:-cargo} test --release -p openser --test tests -- \
	--nocapture --exact \
	it::respawn::chaos_calls_and_registrations_survive_killed_workers
