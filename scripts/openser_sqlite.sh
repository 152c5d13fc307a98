#!/bin/sh
# openser_sqlite.sh - the OpenSER 1.2 entry point for the sqlite database: openserdbctl with
# DBENGINE=SQLITE (see that script for the commands and settings).
DBENGINE=SQLITE ME=openser_sqlite.sh exec sh "$(dirname "$0")/openserdbctl" "$@"
