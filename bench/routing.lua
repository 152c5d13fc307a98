-- The stateful benchmark routing (openser-stateful.cfg, kamailio-stateful.cfg) in
-- Lua, with only KEMI names both openser-rs and Kamailio 5.6 have, so that one file
-- serves openser-lua.cfg and kamailio-lua.cfg.

local function relay()
	if KSR.tm.t_relay() < 0 then
		KSR.sl.sl_reply_error()
	end
end

function ksr_request_route()
	if KSR.maxfwd.process_maxfwd(10) < 0 then
		KSR.sl.send_reply(483, "Too Many Hops")
		return 1
	end

	-- in-dialog requests: follow the route set
	if not KSR.pv.is_null("$tt") then
		if KSR.rr.loose_route() > 0 then
			relay()
			return 1
		end
		if KSR.is_ACK() then
			if KSR.tm.t_check_trans() > 0 then
				KSR.tm.t_relay()
			end
			return 1
		end
		KSR.sl.send_reply(404, "Not here")
		return 1
	end

	if KSR.is_CANCEL() then
		if KSR.tm.t_check_trans() > 0 then
			KSR.tm.t_relay()
		end
		return 1
	end

	-- absorb retransmissions of initial requests
	if KSR.tm.t_check_trans() == 0 then
		return 1
	end

	if KSR.is_INVITE() then
		KSR.rr.record_route()
	end
	KSR.pv.sets("$du", "sip:127.0.0.1:5070")
	relay()
	return 1
end
