#!/usr/bin/env python3
"""MI clients for the tests: runs each (command, args) of a JSON list over mi_datagram
(UDP, or a Unix datagram socket) and over mi_xmlrpc, and prints the answers as JSON.

usage: mi_clients.py DGRAM XMLRPC_URL < requests
  DGRAM: udp:HOST:PORT or unix:PATH:CLIENT_PATH ("-" to skip); XMLRPC_URL ("-" to skip)
  requests: one a line, command and arguments separated by \x1f; a command written
  "!cmd" is asked over XML-RPC only
answers, each ended by \x1e: datagram text \x1f "ok" or "fault CODE" \x1f XML-RPC text
"""
import os
import socket
import sys
import xmlrpc.client


def dgram_call(spec, cmd, args):
    req = ":%s:\n" % cmd + "".join(a + "\n" for a in args)
    if spec.startswith("udp:"):
        host, port = spec[4:].rsplit(":", 1)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        dst = (host, int(port))
    else:
        path, client = spec[5:].split(":", 1)
        if os.path.exists(client):
            os.unlink(client)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.bind(client)
        dst = path
    s.settimeout(20)
    s.sendto(req.encode(), dst)
    out = b""
    # a long reply comes in several datagrams; it ends with an empty line
    while not out.endswith(b"\n\n"):
        out += s.recv(65536)
    s.close()
    return out.decode()


def xmlrpc_call(url, cmd, args):
    proxy = xmlrpc.client.ServerProxy(url)
    try:
        return {"ok": getattr(proxy, cmd)(*args)}
    except xmlrpc.client.Fault as f:
        return {"fault": [f.faultCode, f.faultString]}


def main():
    dgram, url = sys.argv[1], sys.argv[2]
    for line in sys.stdin.read().split("\n"):
        if not line:
            continue
        cmd, *args = line.split("\x1f")
        xml_only = cmd.startswith("!")
        cmd = cmd.lstrip("!")
        try:
            d = dgram_call(dgram, cmd, args) if dgram != "-" and not xml_only else ""
        except OSError as e:
            sys.exit("datagram %s: %s" % (cmd, e))
        x = xmlrpc_call(url, cmd, args) if url != "-" else {"ok": ""}
        if "ok" in x:
            kind, text = "ok", x["ok"]
        else:
            kind, text = "fault %d" % x["fault"][0], x["fault"][1]
        sys.stdout.write(d + "\x1f" + kind + "\x1f" + text + "\x1e")


main()
