# The stateful benchmark routing (openser-stateful.cfg, kamailio-stateful.cfg) in
# Python, bench/routing.lua's logic, with only KEMI names both openser-rs and
# Kamailio 5.6's app_python3 have, so that one file serves openser-python.cfg and
# kamailio-python.cfg.
import KSR


def mod_init():
    return Routing()


class Routing:
    # Kamailio's app_python3 calls it in every process (and fails without it).
    def child_init(self, rank):
        return 0

    def relay(self):
        if KSR.tm.t_relay() < 0:
            KSR.sl.sl_reply_error()

    def ksr_request_route(self, msg):
        if KSR.maxfwd.process_maxfwd(10) < 0:
            KSR.sl.send_reply(483, "Too Many Hops")
            return 1

        # in-dialog requests: follow the route set
        if not KSR.pv.is_null("$tt"):
            if KSR.rr.loose_route() > 0:
                self.relay()
                return 1
            if KSR.is_ACK():
                if KSR.tm.t_check_trans() > 0:
                    KSR.tm.t_relay()
                return 1
            KSR.sl.send_reply(404, "Not here")
            return 1

        if KSR.is_CANCEL():
            if KSR.tm.t_check_trans() > 0:
                KSR.tm.t_relay()
            return 1

        # absorb retransmissions of initial requests
        if KSR.tm.t_check_trans() == 0:
            return 1

        if KSR.is_INVITE():
            KSR.rr.record_route()
        KSR.pv.sets("$du", "sip:127.0.0.1:5070")
        self.relay()
        return 1
