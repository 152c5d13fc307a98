# openserdb.awk - generate one engine's DDL for one table set from openserdb.schema.
#   awk -v engine=mysql|pgsql|sqlite|dbtext -v set=core -v tabletype='ENGINE=MyISAM' \
#       -f openserdb.awk openserdb.schema
# SQL engines: CREATE TABLE/INDEX statements and the version rows. dbtext: one
# "@@ table" line followed by the table file's header line, per table, then
# "@@@ versions" and rows "name:version"; "@@+ table column(type) default" adds a
# column to an existing table.
function q(id) {
	if (engine == "mysql") return "`" id "`"
	return "\"" id "\""
}
function idxname(t, n) {
	if (engine == "mysql" || index(n, t "_") == 1) return n
	return t "_" n
}
function cols(list,   a, n, i, s) {
	n = split(list, a, ",")
	s = ""
	for (i = 1; i <= n; i++) s = s (i > 1 ? ", " : "") q(a[i])
	return s
}
function deflt(type, d) {
	if (d == "-" || d == "NULL") return d
	if (type == "datetime" && d ~ /^'0000-00-00/ && engine == "pgsql") return "'1900-01-01 00:00:01'"
	if (type == "blob" && engine == "pgsql") return "''::bytea"
	return d
}
function sqltype(type,   n) {
	n = type; sub(/^[a-z0-9_]*:/, "", n)
	if (engine == "mysql") {
		if (type == "auto") return "int(10) unsigned NOT NULL auto_increment"
		if (type == "int") return "int(11)"
		if (type == "uint") return "int(10) unsigned"
		if (type == "smallint") return "smallint(5)"
		if (type == "usmallint") return "smallint(5) unsigned"
		if (type == "tinyint") return "tinyint(4)"
		if (type == "utinyint") return "tinyint(3) unsigned"
		if (type ~ /^str:/) return "varchar(" n ")"
		if (type ~ /^char:/) return "char(" n ")"
		if (type == "float10_2") return "float(10,2)"
		if (type == "stamp") return "timestamp"
		return type
	}
	if (engine == "pgsql") {
		if (type == "auto") return "SERIAL PRIMARY KEY"
		if (type == "int") return "INTEGER"
		if (type == "uint") return "BIGINT"
		if (type ~ /smallint|tinyint/) return "SMALLINT"
		if (type ~ /^str:/) return "VARCHAR(" n ")"
		if (type ~ /^char:/) return "CHAR(" n ")"
		if (type == "text") return "TEXT"
		if (type == "blob") return "BYTEA"
		if (type == "datetime" || type == "stamp") return "TIMESTAMP WITHOUT TIME ZONE"
		if (type ~ /^float/) return "REAL"
	}
	if (engine == "sqlite") {
		if (type == "auto") return "INTEGER PRIMARY KEY AUTOINCREMENT"
		if (type ~ /int$/) return "INTEGER"
		if (type ~ /^str:/) return "VARCHAR(" n ")"
		if (type ~ /^char:/) return "CHAR(" n ")"
		if (type == "text") return "TEXT"
		if (type == "blob") return "BLOB"
		if (type == "datetime" || type == "stamp") return "DATETIME"
		if (type ~ /^float/) return "REAL"
	}
	if (engine == "dbtext") {
		if (type ~ /int$/ || type == "auto") return "int"
		if (type == "datetime" || type == "stamp") return "datetime"
		if (type ~ /^float/) return "double"
		return "str"
	}
	print "openserdb.awk: unknown type " type > "/dev/stderr"
	exit 2
}
# One column definition (fields of the C/X line).
function coldef(name, type, nul, d,   s) {
	if (engine == "dbtext") {
		s = name "(" sqltype(type)
		if (type == "auto") s = s ",auto"
		else if (nul == "null") s = s ",null"
		return s ")"
	}
	s = q(name) " " sqltype(type)
	if (type == "auto") return s
	if (type == "stamp") {
		if (engine == "mysql") return s " NOT NULL default CURRENT_TIMESTAMP on update CURRENT_TIMESTAMP"
		if (engine == "sqlite") return s " NOT NULL DEFAULT (datetime('now','localtime'))"
		return s " NOT NULL DEFAULT LOCALTIMESTAMP(0)"
	}
	if (nul == "nn") s = s " NOT NULL"
	d = deflt(type, d)
	if (d != "-") s = s " DEFAULT " d
	return s
}
function close_table() {
	if (tbl == "") return
	if (engine == "dbtext") {
		print "@@ " tbl
		print body
	} else {
		if (engine == "mysql") {
			if (auto != "") body = body ",\n  PRIMARY KEY (" q(auto) ")"
			if (pk != "") body = body ",\n  PRIMARY KEY (" cols(pk) ")"
			body = body mykeys
			print "CREATE TABLE " q(tbl) " (\n" body "\n) " tabletype ";"
		} else {
			if (pk != "") body = body ",\n  PRIMARY KEY (" cols(pk) ")"
			print "CREATE TABLE " q(tbl) " (\n" body "\n);"
			printf "%s", idx
		}
	}
	tbl = ""
}
function add_line(s) {
	if (engine == "dbtext") body = body (body == "" ? "" : " ") s
	else body = body (body == "" ? "  " : ",\n  ") s
}
/^#/ || NF == 0 { next }
$1 == "S" { close_table(); inset = ($2 == set); next }
!inset { next }
$1 == "T" {
	close_table()
	tbl = $2; body = ""; idx = ""; mykeys = ""; pk = ""; auto = ""
	if ($3 != "-") versions[++nv] = tbl ":" $3
	next
}
$1 == "C" {
	d = $0; sub(/^C +[^ ]+ +[^ ]+ +[^ ]+ */, "", d)
	if ($3 == "auto") auto = $2
	add_line(coldef($2, $3, $4, d))
	next
}
$1 == "P" { pk = $2; next }
$1 == "U" || $1 == "K" {
	if (engine == "dbtext") next
	if (engine == "mysql") mykeys = mykeys ",\n  " ($1 == "U" ? "UNIQUE KEY " : "KEY ") q($2) " (" cols($3) ")"
	else idx = idx "CREATE " ($1 == "U" ? "UNIQUE " : "") "INDEX " q(idxname(tbl, $2)) " ON " q(tbl) " (" cols($3) ");\n"
	next
}
$1 == "A" { close_table(); alter = $2; next }
$1 == "X" {
	d = $0; sub(/^X +[^ ]+ +[^ ]+ +[^ ]+ */, "", d)
	if (engine == "dbtext") { dv = d; gsub(/^'|'$/, "", dv); if (dv == "-" || dv == "NULL") dv = ""; if ($3 == "datetime") dv = "0"; print "@@+ " alter " " coldef($2, $3, $4, d) " " dv; next }
	print "ALTER TABLE " q(alter) " ADD COLUMN " coldef($2, $3, $4, d) ";"
	next
}
END {
	close_table()
	if (engine == "dbtext") {
		print "@@@ versions"
		for (i = 1; i <= nv; i++) print versions[i]
	} else {
		for (i = 1; i <= nv; i++) {
			split(versions[i], v, ":")
			print "INSERT INTO " q("version") " (" q("table_name") ", " q("table_version") ") VALUES ('" v[1] "', " v[2] ");"
		}
	}
}
