#!/bin/sh
# openser_postgresql.sh - the OpenSER 1.2 entry point for the postgresql database: openserdbctl with
# DBENGINE=PGSQL (see that script for the commands and settings).
DBENGINE=PGSQL ME=openser_postgresql.sh exec sh "$(dirname "$0")/openserdbctl" "$@"
