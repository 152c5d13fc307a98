# Handlers that fail: an exception deep in a call chain, an endless loop, and one
# that swallows exceptions (KSR.x.exit still ends it).
import KSR


def lookup_field(d):
    return d["field"]  # d is None for "boom": TypeError


def deeper(d):
    v = lookup_field(d)
    return v


class Handler:
    def ksr_request_route(self, msg):
        user = KSR.pv.get("$rU")
        if user == "boom":
            deeper(None)
        elif user == "loop":
            n = 0
            while True:
                n += 1
        elif user == "swallow":
            try:
                KSR.sl.send_reply(200, "Exited")
                KSR.x.exit()
            except Exception:
                pass
            KSR.sl.send_reply(500, "exit was swallowed")
            return 1
        KSR.sl.send_reply(200, "Still here")
        return 1


def mod_init():
    return Handler()
