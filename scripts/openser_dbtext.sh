#!/bin/sh
# openser_dbtext.sh - the OpenSER 1.2 entry point for the dbtext database: openserdbctl with
# DBENGINE=DBTEXT (see that script for the commands and settings).
DBENGINE=DBTEXT ME=openser_dbtext.sh exec sh "$(dirname "$0")/openserdbctl" "$@"
