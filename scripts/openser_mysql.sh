#!/bin/sh
# openser_mysql.sh - create and maintain the OpenSER 1.2 MySQL database (mysqldb.sh).
#
# Settings come from /etc/openser/.opensermysqlrc, /usr/local/etc/openser/.opensermysqlrc
# and ~/.opensermysqlrc (sourced in that order), then from the environment:
#   DBNAME (openser), DBHOST (localhost), DBRWUSER/DBRWPW (openser/openserrw),
#   DBROUSER/DBROPW (openserro/openserro), DBROOTUSER (root), PW (root password;
#   prompted on a terminal when unset, empty = none), TABLE_TYPE (ENGINE=MyISAM),
#   DBSOCKET / DBPORT (passed to the client: a server's Unix socket or TCP port),
#   MYSQL / MYSQLDUMP (client programs).
VERSION='openser_mysql.sh 1.2 (openser-rs)'

# Settings given in the environment win over the rc files.
ENV_SETTINGS=$(env | grep -E '^(DBNAME|DBHOST|DBRWUSER|DBRWPW|DBROUSER|DBROPW|DBROOTUSER|PW|TABLE_TYPE|DBSOCKET|DBPORT|MYSQL|MYSQLDUMP)=' | sed "s/'/'\\\\''/g; s/=/='/; s/\$/'/")
for rc in /etc/openser/.opensermysqlrc /usr/local/etc/openser/.opensermysqlrc "$HOME/.opensermysqlrc"; do
	[ -f "$rc" ] && . "$rc"
done
[ -n "$ENV_SETTINGS" ] && eval "$ENV_SETTINGS"

DBNAME=${DBNAME:-openser}
DBHOST=${DBHOST:-localhost}
DBRWUSER=${DBRWUSER:-openser}
DBRWPW=${DBRWPW:-openserrw}
DBROUSER=${DBROUSER:-openserro}
DBROPW=${DBROPW:-openserro}
DBROOTUSER=${DBROOTUSER:-root}
TABLE_TYPE=${TABLE_TYPE:-ENGINE=MyISAM}
if [ -z "$MYSQL" ]; then
	if command -v mysql >/dev/null 2>&1; then MYSQL=mysql; else MYSQL=mariadb; fi
fi
if [ -z "$MYSQLDUMP" ]; then
	if command -v mysqldump >/dev/null 2>&1; then MYSQLDUMP=mysqldump; else MYSQLDUMP=mariadb-dump; fi
fi

die() { echo "ERROR: $*" >&2; exit 1; }

usage() {
	cat <<USAGE
$VERSION
usage: openser_mysql.sh <command> [args]
  create [db]      create the database (default $DBNAME), its users and the core tables
  drop             drop the database
  reinit           drop and create again
  backup           dump the database to stdout
  restore <file>   load a dump into the database
USAGE
}

# The root password: PW from the environment/rc, else asked on a terminal.
root_pw() {
	if [ -z "${PW+set}" ]; then
		if [ -t 0 ]; then
			printf 'MySQL password for %s: ' "$DBROOTUSER" >&2
			stty -echo 2>/dev/null
			read -r PW
			stty echo 2>/dev/null
			echo >&2
		else
			PW=
		fi
	fi
}

# Connection options for the client programs.
conn_opts() {
	if [ -n "$DBSOCKET" ]; then
		printf -- '--socket=%s' "$DBSOCKET"
	else
		printf -- '--host=%s' "$DBHOST"
		[ -n "$DBPORT" ] && printf -- ' --port=%s' "$DBPORT"
	fi
}

# sql [db]: run the SQL on stdin as the root user.
sql() {
	# shellcheck disable=SC2046
	MYSQL_PWD=$PW $MYSQL $(conn_opts) --user="$DBROOTUSER" ${1:+"$1"}
}

# An SQL string literal's contents: backslashes and quotes escaped.
q() { printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e "s/'/\\\\'/g"; }

# A database name must be a plain identifier (it is pasted into SQL).
check_name() {
	case "$1" in
		""|*[!A-Za-z0-9_\$]*) die "invalid database name '$1'" ;;
	esac
}

create_users() {
	hosts="%"
	[ "$DBHOST" != "%" ] && hosts="% $DBHOST"
	[ "$DBHOST" = localhost ] || hosts="$hosts localhost"
	for h in $hosts; do
		cat <<SQL
CREATE USER IF NOT EXISTS '$(q "$DBRWUSER")'@'$(q "$h")' IDENTIFIED BY '$(q "$DBRWPW")';
GRANT ALL PRIVILEGES ON \`$1\`.* TO '$(q "$DBRWUSER")'@'$(q "$h")';
CREATE USER IF NOT EXISTS '$(q "$DBROUSER")'@'$(q "$h")' IDENTIFIED BY '$(q "$DBROPW")';
GRANT SELECT ON \`$1\`.* TO '$(q "$DBROUSER")'@'$(q "$h")';
SQL
	done
	echo "FLUSH PRIVILEGES;"
}

# The core tables of OpenSER 1.2 and their version rows.
core_tables() {
	T=$TABLE_TYPE
	cat <<SQL
SET SESSION sql_mode = '';

CREATE TABLE version (
  table_name varchar(64) NOT NULL PRIMARY KEY,
  table_version smallint(5) DEFAULT '0' NOT NULL
) $T;
INSERT INTO version VALUES
  ('subscriber', 6), ('missed_calls', 3), ('location', 1004), ('aliases', 1004),
  ('grp', 2), ('re_grp', 1), ('acc', 4), ('silo', 5), ('domain', 1), ('uri', 1),
  ('trusted', 4), ('usr_preferences', 2), ('speed_dial', 2), ('dbaliases', 1),
  ('gw', 4), ('gw_grp', 1), ('lcr', 2), ('address', 3);

CREATE TABLE subscriber (
  id int(10) unsigned NOT NULL auto_increment,
  username varchar(64) NOT NULL default '',
  domain varchar(128) NOT NULL default '',
  password varchar(25) NOT NULL default '',
  first_name varchar(25) NOT NULL default '',
  last_name varchar(45) NOT NULL default '',
  email_address varchar(50) NOT NULL default '',
  datetime_created datetime NOT NULL default '0000-00-00 00:00:00',
  ha1 varchar(128) NOT NULL default '',
  ha1b varchar(128) NOT NULL default '',
  timezone varchar(128) default NULL,
  rpid varchar(128) default NULL,
  PRIMARY KEY (id),
  UNIQUE KEY user_id (username, domain),
  KEY username_id (username)
) $T;
SQL
	for t in location aliases; do
		cat <<SQL
CREATE TABLE $t (
  id int(10) unsigned NOT NULL auto_increment,
  username varchar(64) NOT NULL default '',
  domain varchar(128) NOT NULL default '',
  contact varchar(255) NOT NULL default '',
  received varchar(255) default NULL,
  path varchar(255) default NULL,
  expires datetime NOT NULL default '2020-05-28 21:32:15',
  q float(10,2) NOT NULL default '1.0',
  callid varchar(255) NOT NULL default 'Default-Call-ID',
  cseq int(11) NOT NULL default '13',
  last_modified datetime NOT NULL default '1900-01-01 00:00:00',
  flags int(11) NOT NULL default '0',
  cflags int(11) NOT NULL default '0',
  user_agent varchar(255) NOT NULL default '',
  socket varchar(128) default NULL,
  methods int(11) default NULL,
  PRIMARY KEY (id),
  KEY ${t}_user_domain_contact (username, domain, contact)
) $T;
SQL
	done
	for t in acc missed_calls; do
		cat <<SQL
CREATE TABLE $t (
  id int(10) unsigned NOT NULL auto_increment,
  method varchar(16) NOT NULL default '',
  from_tag varchar(64) NOT NULL default '',
  to_tag varchar(64) NOT NULL default '',
  callid varchar(128) NOT NULL default '',
  sip_code char(3) NOT NULL default '',
  sip_reason varchar(32) NOT NULL default '',
  time datetime NOT NULL,
  PRIMARY KEY (id),
  KEY ${t}_callid (callid)
) $T;
SQL
	done
	cat <<SQL
CREATE TABLE grp (
  id int(10) unsigned NOT NULL auto_increment,
  username varchar(64) NOT NULL default '',
  domain varchar(128) NOT NULL default '',
  grp varchar(50) NOT NULL default '',
  last_modified datetime NOT NULL default '0000-00-00 00:00:00',
  PRIMARY KEY (id),
  UNIQUE KEY account_group_idx (username, domain, grp)
) $T;

CREATE TABLE re_grp (
  id int(10) unsigned NOT NULL auto_increment,
  reg_exp varchar(128) NOT NULL default '',
  group_id int(11) NOT NULL default '0',
  PRIMARY KEY (id),
  KEY group_idx (group_id)
) $T;

CREATE TABLE domain (
  id int(10) unsigned NOT NULL auto_increment,
  domain varchar(128) NOT NULL default '',
  last_modified datetime NOT NULL default '0000-00-00 00:00:00',
  PRIMARY KEY (id),
  UNIQUE KEY domain_idx (domain)
) $T;

CREATE TABLE dbaliases (
  id int(10) unsigned NOT NULL auto_increment,
  alias_username varchar(64) NOT NULL default '',
  alias_domain varchar(128) NOT NULL default '',
  username varchar(64) NOT NULL default '',
  domain varchar(128) NOT NULL default '',
  PRIMARY KEY (id),
  UNIQUE KEY alias_idx (alias_username, alias_domain),
  KEY target_idx (username, domain)
) $T;

CREATE TABLE uri (
  id int(10) unsigned NOT NULL auto_increment,
  username varchar(64) NOT NULL default '',
  domain varchar(128) NOT NULL default '',
  uri_user varchar(50) NOT NULL default '',
  last_modified datetime NOT NULL default '0000-00-00 00:00:00',
  PRIMARY KEY (id),
  UNIQUE KEY account_idx (username, domain, uri_user)
) $T;

CREATE TABLE usr_preferences (
  id int(10) unsigned NOT NULL auto_increment,
  uuid varchar(64) NOT NULL default '',
  username varchar(64) NOT NULL default '0',
  domain varchar(128) NOT NULL default '',
  attribute varchar(32) NOT NULL default '',
  type int(11) NOT NULL default '0',
  value varchar(128) NOT NULL default '',
  last_modified timestamp NOT NULL default CURRENT_TIMESTAMP on update CURRENT_TIMESTAMP,
  PRIMARY KEY (id),
  KEY ua_idx (uuid, attribute),
  KEY uda_idx (username, domain, attribute)
) $T;

CREATE TABLE silo (
  id int(10) unsigned NOT NULL auto_increment,
  src_addr varchar(255) NOT NULL default '',
  dst_addr varchar(255) NOT NULL default '',
  username varchar(64) NOT NULL default '',
  domain varchar(128) NOT NULL default '',
  inc_time int(11) NOT NULL default '0',
  exp_time int(11) NOT NULL default '0',
  snd_time int(11) NOT NULL default '0',
  ctype varchar(32) NOT NULL default 'text/plain',
  body blob NOT NULL default '',
  PRIMARY KEY (id),
  KEY account_idx (username, domain)
) $T;

CREATE TABLE trusted (
  id int(10) unsigned NOT NULL auto_increment,
  src_ip varchar(39) NOT NULL default '',
  proto varchar(4) NOT NULL default '',
  from_pattern varchar(64) default NULL,
  tag varchar(32) default NULL,
  PRIMARY KEY (id),
  KEY ip_addr (src_ip)
) $T;

CREATE TABLE speed_dial (
  id int(10) unsigned NOT NULL auto_increment,
  username varchar(64) NOT NULL default '',
  domain varchar(128) NOT NULL default '',
  sd_username varchar(64) NOT NULL default '',
  sd_domain varchar(128) NOT NULL default '',
  new_uri varchar(192) NOT NULL default '',
  fname varchar(128) NOT NULL default '',
  lname varchar(128) NOT NULL default '',
  description varchar(64) NOT NULL default '',
  PRIMARY KEY (id),
  UNIQUE KEY speeddial_idx (username, domain, sd_domain, sd_username)
) $T;

CREATE TABLE gw (
  id int(10) unsigned NOT NULL auto_increment,
  gw_name varchar(128) NOT NULL default '',
  grp_id int(10) unsigned NOT NULL default '0',
  ip_addr varchar(15) NOT NULL default '',
  port smallint(5) unsigned default NULL,
  uri_scheme tinyint(3) unsigned default NULL,
  transport tinyint(3) unsigned default NULL,
  strip tinyint(3) unsigned default NULL,
  prefix varchar(16) default NULL,
  PRIMARY KEY (id),
  UNIQUE KEY gw_name_idx (gw_name),
  KEY grp_id_idx (grp_id)
) $T;

CREATE TABLE gw_grp (
  grp_id int(10) unsigned NOT NULL auto_increment,
  grp_name varchar(64) NOT NULL default '',
  PRIMARY KEY (grp_id)
) $T;

CREATE TABLE lcr (
  id int(10) unsigned NOT NULL auto_increment,
  prefix varchar(16) NOT NULL default '',
  from_uri varchar(128) default NULL,
  grp_id int(10) unsigned default NULL,
  priority tinyint(3) unsigned NOT NULL default '0',
  PRIMARY KEY (id),
  KEY prefix_idx (prefix),
  KEY from_uri_idx (from_uri),
  KEY grp_id_idx (grp_id)
) $T;

CREATE TABLE address (
  id int(10) unsigned NOT NULL auto_increment,
  grp smallint(5) unsigned NOT NULL default '0',
  ip_addr varchar(15) NOT NULL default '',
  mask tinyint(4) NOT NULL default '32',
  port smallint(5) unsigned NOT NULL default '0',
  PRIMARY KEY (id)
) $T;

CREATE TABLE pdt (
  id int(10) unsigned NOT NULL auto_increment,
  sdomain varchar(255) NOT NULL default '',
  prefix varchar(32) NOT NULL default '',
  domain varchar(255) NOT NULL default '',
  PRIMARY KEY (id),
  UNIQUE KEY sdomain_prefix_idx (sdomain, prefix)
) $T;
SQL
}

create() {
	db=${1:-$DBNAME}
	check_name "$db"
	root_pw
	echo "creating database $db ..."
	{
		echo "CREATE DATABASE \`$db\`;"
		create_users "$db"
	} | sql || die "creating database $db failed"
	core_tables | sql "$db" || die "creating the tables of $db failed"
	echo "core OpenSER tables created in $db"
	# 1.2 then asks whether to add the presence, extra and serweb table sets; those
	# sets are not part of this version, so there is nothing to ask.
}

drop() {
	check_name "$DBNAME"
	root_pw
	echo "DROP DATABASE \`$DBNAME\`;" | sql || die "dropping database $DBNAME failed"
	echo "database $DBNAME dropped"
}

backup() {
	check_name "$DBNAME"
	root_pw
	# shellcheck disable=SC2046
	MYSQL_PWD=$PW $MYSQLDUMP $(conn_opts) --user="$DBROOTUSER" "$DBNAME" || die "backup of $DBNAME failed"
}

restore() {
	[ -n "$1" ] || die "restore: missing dump file"
	[ -r "$1" ] || die "restore: cannot read $1"
	check_name "$DBNAME"
	root_pw
	sql "$DBNAME" < "$1" || die "restore of $DBNAME from $1 failed"
	echo "database $DBNAME restored from $1"
}

case "$1" in
	create) create "$2" ;;
	drop) drop ;;
	reinit) drop && create ;;
	backup) backup ;;
	restore) restore "$2" ;;
	presence|extra|serweb) die "the $1 table set is not supported by this version" ;;
	version) echo "$VERSION" ;;
	""|-h|--help|help) usage ;;
	*) usage >&2; exit 1 ;;
esac
