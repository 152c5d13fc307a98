-- Helpers called from the configuration's routes (lua_run), not KEMI.

-- Seed 002's example: log a line and add the R-URI to the reply.
function my_append_hdr_ruri()
	sr.err("message to syslog from Lua\n")
	sr.hdr.append_to_reply("P-RUri: <" .. sr.pv.get("$ru") .. ">\r\n")
end

-- Write PVs the configuration reads afterwards.
function set_vars(user)
	sr.pv.sets("$var(from_lua)", "hello " .. user)
	sr.pv.seti("$avp(s:lua_count)", 42)
	sr.pv.sets("$avp(s:lua_name)", "lua-" .. user)
	sr.pv.sets("$rU", "rewritten")
	sr.pv.unset("$avp(s:gone)")
	return 1
end

-- KSR.x.modf and a false result.
function check_user(user)
	if KSR.pv.get("$rU") == user then
		KSR.x.modf("append_to_reply", "X-Modf: yes\r\n")
		return 1
	end
	return -1
end

function failing()
	error("failing on purpose")
end
