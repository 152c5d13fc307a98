-- Handlers that fail: a run-time error deep in a call chain, an endless loop.

local function lookup_field(t)
	local v = t.field -- t is nil for "boom": attempt to index a nil value
	return v
end

local function deeper(t)
	local v = lookup_field(t) -- not a tail call: the traceback shows this frame
	return v
end

function ksr_request_route()
	local user = KSR.pv.get("$rU")
	if user == "boom" then
		deeper(nil)
	elseif user == "loop" then
		local n = 0
		while true do
			n = n + 1
		end
	end
	KSR.sl.send_reply(200, "Still here")
end
