#!/bin/sh
# openser_mysql.sh - the OpenSER 1.2 entry point for the mysql database: openserdbctl with
# DBENGINE=MYSQL (see that script for the commands and settings).
DBENGINE=MYSQL ME=openser_mysql.sh exec sh "$(dirname "$0")/openserdbctl" "$@"
