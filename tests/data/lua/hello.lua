-- The guide's "Hello World" routing (etc/openser.cfg) written in Lua for
-- `cfgengine "lua"`: the same checks, replies and relaying, through the KSR API.

-- Scanners that announce themselves in their User-Agent are dropped unanswered.
local SCANNERS = {
	"friendly-scanner", "sipvicious", "sipcli", "sip-scan", "vaxsipuseragent",
	"vaxipuseragent", "sundayddr", "iwar", "sivus", "smap", "pplsip", "friendly-request",
}

-- The guide compares msg:len with max_len (65535).
MAX_LEN = 65535

local function is_scanner()
	local ua = string.lower(KSR.pv.gete("$ua"))
	for _, s in ipairs(SCANNERS) do
		if string.find(ua, s, 1, true) then
			return true
		end
	end
	return false
end

-- route[1]
local function relay()
	if KSR.tm.t_relay() < 0 then
		KSR.sl.sl_reply_error()
	end
	KSR.x.exit()
end

function ksr_request_route()
	if is_scanner() then
		KSR.x.drop()
	end

	if KSR.maxfwd.process_maxfwd(10) < 0 then
		KSR.sl.send_reply(483, "Too Many Hops")
		KSR.x.exit()
	end

	if tonumber(KSR.pv.get("$ml")) >= MAX_LEN then
		KSR.sl.send_reply(513, "Message too big")
		KSR.x.exit()
	end

	if not KSR.is_REGISTER() then
		KSR.rr.record_route()
	end

	if KSR.rr.loose_route() > 0 then
		KSR.hdr.append("P-hint: rr-enforced\r\n")
		relay()
	end

	if not KSR.is_myself_ruri() then
		KSR.hdr.append("P-hint: outbound\r\n")
		relay()
	end

	-- uri == myself from here on
	if KSR.is_OPTIONS() and KSR.x.modf("options_reply") == 0 then
		KSR.x.exit()
	end

	if KSR.is_REGISTER() then
		KSR.registrar.save("location")
		KSR.x.exit()
	end

	if KSR.registrar.lookup("location") < 0 then
		KSR.sl.send_reply(404, "Not Found")
		KSR.x.exit()
	end
	KSR.hdr.append("P-hint: usrloc applied\r\n")

	relay()
end
