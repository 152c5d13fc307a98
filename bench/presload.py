#!/usr/bin/env python3
"""NOTIFY fan-out load for bench/presence_bench.sh.

One UDP socket on 127.0.0.1 plays every watcher and publisher: WATCHERS SUBSCRIBEs
(Expires 3600) spread over PRESENTITIES presentities, each NOTIFY answered 200 at
once; then one PUBLISH per presentity as fast as the socket takes them, and the time
until every watcher has received the NOTIFY carrying its presentity's new document.
The server's CPU time (user + system of its process and its children, from /proc) is
read before the burst and when the last NOTIFY arrived.

Usage: presload.py SERVER_PID [host:port] [presentities] [watchers]
Prints one line: `presence pres=N watchers=M notifies=K secs=S cpu_s=C
cpu_us_per_notify=U retrans=R` (secs: first PUBLISH to last NOTIFY).
"""

import os
import socket
import sys
import time


def cpu_of_tree(pid):
    """utime + stime (seconds) of `pid` and every process whose parent chain leads to it."""
    hz = os.sysconf("SC_CLK_TCK")
    procs = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        rest = st[st.rfind(")") + 2:].split()
        procs[int(d)] = (int(rest[1]), int(rest[11]) + int(rest[12]))
    total = 0
    for p, (ppid, ticks) in procs.items():
        q = p
        for _ in range(8):
            if q == pid:
                total += ticks
                break
            q = procs.get(q, (0, 0))[0]
            if q == 0:
                break
    return total / hz


def header(msg, name):
    for line in msg.split("\r\n")[1:]:
        if not line:
            break
        n, _, v = line.partition(":")
        if n.strip().lower() == name.lower():
            return v.strip()
    return None


def main():
    pid = int(sys.argv[1])
    host, port = (sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1:5060").rsplit(":", 1)
    npres = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    nwatch = int(sys.argv[4]) if len(sys.argv) > 4 else 10000
    srv = (host, int(port))
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
    s.bind(("127.0.0.1", 0))
    me = s.getsockname()[1]
    seen = set()
    state = {"sub_ok": 0, "notifies": 0, "fresh": 0, "retrans": 0, "pub_ok": 0, "pub_retx": 0}
    # PUBLISHes not answered yet: Call-ID -> [message, next send time, interval]; a UAC
    # retransmits them (T1 = 0.5 s doubling to 4 s), so a datagram lost in a full
    # receive buffer delays a PUBLISH instead of losing it
    pending = {}

    def handle(data, frm):
        m = data.decode("utf-8", "replace")
        if m.startswith("NOTIFY "):
            ok = "SIP/2.0 200 OK\r\n"
            for h in ("Via", "From", "To", "Call-ID", "CSeq"):
                v = header(m, h)
                if v:
                    ok += f"{h}: {v}\r\n"
            ok += "Content-Length: 0\r\n\r\n"
            s.sendto(ok.encode(), frm)
            key = (header(m, "Call-ID"), header(m, "CSeq"))
            if key in seen:
                state["retrans"] += 1
                return
            seen.add(key)
            state["notifies"] += 1
            if "burst-note" in m:
                state["fresh"] += 1
        elif m.startswith("SIP/2.0 2"):
            cseq = header(m, "CSeq") or ""
            if cseq.endswith("SUBSCRIBE"):
                state["sub_ok"] += 1
            elif cseq.endswith("PUBLISH"):
                if pending.pop(header(m, "Call-ID"), None) is not None:
                    state["pub_ok"] += 1

    def retransmit():
        now = time.time()
        for cid, e in pending.items():
            if e[1] <= now:
                s.sendto(e[0], srv)
                state["pub_retx"] += 1
                e[2] = min(e[2] * 2, 4.0)
                e[1] = now + e[2]

    def pump(until, deadline):
        s.settimeout(0.2)
        while not until() and time.time() < deadline:
            retransmit()
            try:
                data, frm = s.recvfrom(65536)
            except socket.timeout:
                continue
            handle(data, frm)
        s.settimeout(0)
        try:
            while True:
                data, frm = s.recvfrom(65536)
                handle(data, frm)
        except (BlockingIOError, socket.timeout):
            pass

    # phase 1: the subscriptions, at most 50 unanswered at a time
    for i in range(nwatch):
        p = i % npres
        msg = (
            f"SUBSCRIBE sip:p{p}@127.0.0.1 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bKs{i}\r\n"
            f"From: <sip:w{i}@127.0.0.1>;tag=w{i}\r\n"
            f"To: <sip:p{p}@127.0.0.1>\r\n"
            f"Call-ID: sub-{i}-{me}\r\nCSeq: 1 SUBSCRIBE\r\nMax-Forwards: 70\r\n"
            f"Contact: <sip:w{i}@127.0.0.1:{me}>\r\nEvent: presence\r\nExpires: 3600\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        s.sendto(msg.encode(), srv)
        if i % 50 == 49:
            pump(lambda: state["sub_ok"] >= i + 1 - 10, time.time() + 10)
    pump(lambda: state["sub_ok"] >= nwatch and state["notifies"] >= nwatch, time.time() + 60)
    if state["sub_ok"] < nwatch:
        print(f"only {state['sub_ok']} of {nwatch} subscriptions accepted", file=sys.stderr)
        sys.exit(1)
    time.sleep(1.0)
    pump(lambda: False, time.time() + 0.5)

    # phase 2: the PUBLISH burst
    cpu0 = cpu_of_tree(pid)
    t0 = time.time()
    for p in range(npres):
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="pres:p{p}@127.0.0.1">'
            f'<tuple id="t{p}"><status><basic>open</basic></status><note>burst-note</note></tuple>'
            "</presence>\n"
        )
        msg = (
            f"PUBLISH sip:p{p}@127.0.0.1 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bKp{p}\r\n"
            f"From: <sip:p{p}@127.0.0.1>;tag=p{p}\r\nTo: <sip:p{p}@127.0.0.1>\r\n"
            f"Call-ID: pub-{p}-{me}\r\nCSeq: 1 PUBLISH\r\nMax-Forwards: 70\r\n"
            "Event: presence\r\nExpires: 3600\r\nContent-Type: application/pidf+xml\r\n"
            f"Content-Length: {len(body)}\r\n\r\n{body}"
        )
        s.sendto(msg.encode(), srv)
        pending[f"pub-{p}-{me}"] = [msg.encode(), time.time() + 0.5, 0.5]
        if p % 20 == 19:
            pump(lambda: True, time.time())
    pump(lambda: state["fresh"] >= nwatch, time.time() + 120)
    t1 = time.time()
    cpu1 = cpu_of_tree(pid)
    n = state["fresh"]
    per = (cpu1 - cpu0) / n * 1e6 if n else 0
    print(
        f"presence pres={npres} watchers={nwatch} notifies={n} secs={t1 - t0:.3f} "
        f"cpu_s={cpu1 - cpu0:.3f} cpu_us_per_notify={per:.1f} retrans={state['retrans']} "
        f"publish_ok={state['pub_ok']} publish_retransmissions={state['pub_retx']}"
    )
    if n < nwatch:
        sys.exit(1)


if __name__ == "__main__":
    main()
