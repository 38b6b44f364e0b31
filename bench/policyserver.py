#!/usr/bin/env python3
"""A minimal Dovecot auth policy server of the kind admins write today.

The comparison target of bench/policy.sh: Python's http.server with one
thread per connection and HTTP/1.1 keep-alive; it reads hosts.deny once
at start-up into a set of the addresses of "ALL:" and "imap:" lines and
answers {"status":-1,...} for a listed "remote", {"status":0} otherwise.

Usage: policyserver.py HOSTS_DENY [PORT_FILE]   (listens on 127.0.0.1, any port;
the port is written to PORT_FILE, or printed)
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def load(path):
    denied = set()
    with open(path) as f:
        for line in f:
            daemons, sep, clients = line.partition(":")
            if not sep or line.lstrip().startswith("#"):
                continue
            if {"ALL", "imap"} & set(daemons.replace(",", " ").split()):
                denied.update(clients.split(":")[0].replace(",", " ").split())
    return denied


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Dovecot's client expects

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            remote = json.loads(body).get("remote", "")
        except ValueError:
            self.send_error(400)
            return
        if remote in DENIED:
            reply = json.dumps({"status": -1, "msg": "Access denied."}, separators=(",", ":"))
        else:
            reply = '{"status":0}'
        out = reply.encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, format, *args):
        pass


if __name__ == "__main__":
    DENIED = load(sys.argv[1])
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    port = str(server.server_address[1])
    if len(sys.argv) > 2:
        with open(sys.argv[2], "w") as f:
            f.write(port + "\n")
    else:
        print(port, flush=True)
    server.serve_forever()
