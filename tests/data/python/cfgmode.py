# Methods called from the configuration's routes (python_exec), not KEMI.
import KSR


class Helpers:
    # Write PVs the configuration reads afterwards.
    def set_vars(self, msg, user):
        KSR.pv.sets("$var(from_py)", "hello " + user)
        KSR.pv.seti("$avp(s:py_count)", 42)
        KSR.pv.sets("$avp(s:py_name)", "py-" + user)
        KSR.pv.sets("$rU", "rewritten")
        KSR.pv.unset("$avp(s:gone)")
        return 1

    # Log a line and add the R-URI and the method to the reply.
    def append_ruri(self, msg):
        KSR.err("message to syslog from Python\n")
        KSR.hdr.append_to_reply("P-RUri: <" + KSR.pv.get("$ru") + ">\r\n")
        KSR.hdr.append_to_reply("P-Method: " + msg.getMethod() + "\r\n")
        return 1

    # KSR.x.modf and a false result.
    def check_user(self, msg, user):
        if KSR.pv.get("$rU") == user:
            KSR.x.modf("append_to_reply", "X-Modf: yes\r\n")
            return 1
        return -1

    def failing(self, msg):
        raise ValueError("failing on purpose")


def mod_init():
    return Helpers()
