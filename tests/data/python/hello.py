# The guide's "Hello World" routing (etc/openser.cfg) written in Python for
# `cfgengine "python"`, in Kamailio app_python3's shape: mod_init() returns the
# handler object, whose ksr_request_route() is the request route.
import KSR as KSR

# Scanners that announce themselves in their User-Agent are dropped unanswered.
SCANNERS = (
    "friendly-scanner", "sipvicious", "sipcli", "sip-scan", "vaxsipuseragent",
    "vaxipuseragent", "sundayddr", "iwar", "sivus", "smap", "pplsip", "friendly-request",
)

# The guide compares msg:len with max_len (65535).
MAX_LEN = 65535


def mod_init():
    return Router()


class Router:
    # Kamailio's app_python3 calls it in every process (and fails without it).
    def child_init(self, rank):
        return 0

    def is_scanner(self):
        ua = KSR.pv.gete("$ua").lower()
        return any(s in ua for s in SCANNERS)

    # route[1]
    def relay(self):
        if KSR.tm.t_relay() < 0:
            KSR.sl.sl_reply_error()
        KSR.x.exit()

    def ksr_request_route(self, msg):
        if self.is_scanner():
            KSR.x.drop()

        if KSR.maxfwd.process_maxfwd(10) < 0:
            KSR.sl.send_reply(483, "Too Many Hops")
            KSR.x.exit()

        if int(KSR.pv.get("$ml")) >= MAX_LEN:
            KSR.sl.send_reply(513, "Message too big")
            KSR.x.exit()

        if not KSR.is_REGISTER():
            KSR.rr.record_route()

        if KSR.rr.loose_route() > 0:
            KSR.hdr.append("P-hint: rr-enforced\r\n")
            self.relay()

        if not KSR.is_myself_ruri():
            KSR.hdr.append("P-hint: outbound\r\n")
            self.relay()

        # uri == myself from here on
        if KSR.is_OPTIONS() and KSR.x.modf("options_reply") == 0:
            KSR.x.exit()

        if KSR.is_REGISTER():
            KSR.registrar.save("location")
            KSR.x.exit()

        if KSR.registrar.lookup("location") < 0:
            KSR.sl.send_reply(404, "Not Found")
            KSR.x.exit()
        KSR.hdr.append("P-hint: usrloc applied\r\n")

        self.relay()
        return 1
