#!/usr/bin/env python3
"""An HTTP proxy on loopback that injects S3 faults in front of a real S3 server (SeaweedFS).

Used by the fault suite. Requests are forwarded verbatim (the Host header too, so SigV4
signatures stay valid). Faults, chosen per request at the configured rates:
  error   -> answer 500, 503 or 429 with an S3 XML error body, without forwarding
  slow    -> forward after a delay (--slow-seconds)
  reset   -> close the connection without answering (after reading the request)
  truncate-> forward, then send only half of the response body and close
  cut-headers -> forward, then send the status line and part of the headers and close cleanly
             (FIN, no reset: libcurl sees a 200 with no body)
  html    -> answer 200 with an HTML page (a captive portal, a misrouted proxy), without forwarding
  flip    -> forward, with a few bytes of the response body flipped (same length, same headers)
--match limits faults to object GETs (get), object PUTs (put), listings (list) or lets any request
have one (any);
with --first-try-only a request (method and path) has a fault only the first time it is seen,
so every retry of it passes. --log-requests prints `request METHOD /path` for each request.
Outage: while the file named by --outage-file exists, every connection is reset at once.
Hold: while the file named by --hold-file exists, requests that may have a fault (--match) wait
before they are forwarded (a replica as slow as a test needs, for exactly as long as it needs).
Counters of forwarded requests and injected faults are written to --stats (JSON) on every request.

  s3_fault_proxy.py --listen 127.0.0.1:0 --upstream 127.0.0.1:8333 --port-file P \\
      --error-rate 0.1 --slow-rate 0.05 --reset-rate 0.05 --truncate-rate 0.05
"""
import argparse
import http.client
import json
import os
import random
import socket
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler

args = None
lock = threading.Lock()
stats = {"forwarded": 0, "error": 0, "slow": 0, "reset": 0, "truncate": 0, "outage": 0, "cut_headers": 0,
         "html": 0, "flip": 0, "held": 0}
seen = set()


def bump(key):
    with lock:
        stats[key] += 1
        if args.stats:
            tmp = args.stats + ".tmp"
            with open(tmp, "w") as f:
                json.dump(stats, f)
            os.replace(tmp, args.stats)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _reset(self):
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        except OSError:
            pass
        self.close_connection = True
        try:
            self.connection.close()
        except OSError:
            pass

    def _handle(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if args.log_requests:
            with lock:
                print("request %s %s" % (self.command, self.path.partition("?")[0]), flush=True)
        if args.outage_file and os.path.exists(args.outage_file):
            bump("outage")
            return self._reset()
        if not self._may_fault():
            return self._forward(body, truncate=False)
        if args.hold_file and os.path.exists(args.hold_file):
            bump("held")
            while os.path.exists(args.hold_file):
                time.sleep(0.05)
        r = random.random()
        if r < args.cut_headers_rate:
            bump("cut_headers")
            return self._forward(body, truncate=False, cut_headers=True)
        r -= args.cut_headers_rate
        if r < args.html_rate:
            bump("html")
            payload = (b"<!DOCTYPE html><html><head><title>Welcome</title></head>"
                       b"<body><h1>Please log in to continue</h1></body></html>")
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        r -= args.html_rate
        if r < args.flip_rate:
            bump("flip")
            return self._forward(body, truncate=False, flip=True)
        r -= args.flip_rate
        if r < args.error_rate:
            bump("error")
            status = random.choice([500, 503, 429])
            code = {500: "InternalError", 503: "SlowDown", 429: "SlowDown"}[status]
            payload = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>%s</Code>"
                       "<Message>injected by the fault proxy</Message></Error>" % code).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        r -= args.error_rate
        if r < args.reset_rate:
            bump("reset")
            return self._reset()
        r -= args.reset_rate
        slow = r < args.slow_rate
        r -= args.slow_rate
        truncate = (not slow) and r < args.truncate_rate
        if slow:
            bump("slow")
            time.sleep(args.slow_seconds)
        return self._forward(body, truncate=truncate)

    def _may_fault(self):
        """Whether this request may get a fault (--match, --first-try-only)."""
        path, _, query = self.path.partition("?")
        is_list = self.command == "GET" and "list-type=" in query
        if args.match == "list" and not is_list:
            return False
        if args.match == "get" and (self.command != "GET" or is_list or path.count("/") < 2):
            return False
        if args.match == "put" and (self.command != "PUT" or path.count("/") < 2):
            return False
        if args.first_try_only:
            key = (self.command, self.path)
            with lock:
                if key in seen:
                    return False
                seen.add(key)
        return True

    def _forward(self, body, truncate, cut_headers=False, flip=False):
        host, port = args.upstream.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        headers = {k: v for k, v in self.headers.items()}
        conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.endheaders()
        if body:
            conn.send(body)
        resp = conn.getresponse()
        data = resp.read()
        bump("forwarded")
        conn.close()
        if cut_headers:
            # The status line and the headers before Content-Length, the last one cut in half.
            head = "HTTP/1.1 %d %s\r\n" % (resp.status, resp.reason)
            names = [(k, v) for k, v in resp.getheaders() if k.lower() not in ("content-length", "connection")]
            head += "".join("%s: %s\r\n" % kv for kv in names[:2]) + "X-Amz-Request-"
            self.wfile.write(head.encode())
            self.wfile.flush()
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            return
        if flip and data:
            data = bytearray(data)
            for i in random.sample(range(len(data)), min(3, len(data))):
                data[i] ^= 0x5A
            data = bytes(data)
        self.send_response(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() in ("transfer-encoding", "connection", "content-length"):
                continue
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if truncate and len(data) > 1 and self.command == "GET":
            bump("truncate")
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            return self._reset()
        self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    global args
    p = argparse.ArgumentParser()
    p.add_argument("--listen", default="127.0.0.1:0")
    p.add_argument("--upstream", required=True)
    p.add_argument("--port-file")
    p.add_argument("--stats")
    p.add_argument("--outage-file")
    p.add_argument("--hold-file")
    p.add_argument("--error-rate", type=float, default=0.0)
    p.add_argument("--reset-rate", type=float, default=0.0)
    p.add_argument("--slow-rate", type=float, default=0.0)
    p.add_argument("--slow-seconds", type=float, default=2.0)
    p.add_argument("--truncate-rate", type=float, default=0.0)
    p.add_argument("--cut-headers-rate", type=float, default=0.0)
    p.add_argument("--html-rate", type=float, default=0.0)
    p.add_argument("--flip-rate", type=float, default=0.0)
    p.add_argument("--match", choices=("any", "get", "put", "list"), default="any")
    p.add_argument("--first-try-only", action="store_true")
    p.add_argument("--log-requests", action="store_true", help="print 'request METHOD /path' per request")
    p.add_argument("--seed", type=int)
    args = p.parse_args()
    if args.seed is not None:
        random.seed(args.seed)
    host, port = args.listen.rsplit(":", 1)
    if host not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("the fault proxy listens on loopback only")
    server = Server((host, int(port)), Handler)
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write(str(server.server_address[1]))
        os.replace(args.port_file + ".tmp", args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
